/* pb_wire.h - protobuf wire helpers and the Session field table, shared by
 * pb_encode.c, pb_decode.c, pb_inspect.c and pb_compact.c. Device-safe:
 * no heap, no stdio. Not installed. */
#ifndef SW_PB_WIRE_H
#define SW_PB_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "sw_internal.h"

/* ==== Wire types ==== */
enum sw__pb_wt {
	SW__PB_WT_VARINT = 0,
	SW__PB_WT_I64 = 1,
	SW__PB_WT_LEN = 2,
	SW__PB_WT_SGROUP = 3,
	SW__PB_WT_EGROUP = 4,
	SW__PB_WT_I32 = 5
};

/* ==== The field table ====
 * One entry per field of Session, Billing and Usage, indexed by field
 * number - 1 (checked against the protobuf-c descriptor by test_pb.c).
 * `slot` says which value the field carries: for Session the SW_FIELD_MAP
 * bit (SW__PB_SLOT_FLAGS for flags), for Billing/Usage SW_IN/OUT/TOTAL. */
enum sw__pb_form {
	SW__PB_ULID = 0,   /* bytes: 16 raw bytes, or 10 with started_at */
	SW__PB_UUID = 1,   /* bytes: 16 raw bytes */
	SW__PB_TEXT = 2,   /* string (ids and tags) */
	SW__PB_INT = 3,    /* sint64 number */
	SW__PB_DEC = 4,    /* uint64 decimal */
	SW__PB_DOUBLE = 5, /* double number */
	SW__PB_MS = 6,     /* sint64 milliseconds */
	SW__PB_DELTA = 7,  /* sint64 milliseconds after started_at */
	SW__PB_FLAGS = 8,  /* uint32 Flag bits */
	SW__PB_MSG = 9     /* nested Billing or Usage */
};

#define SW__PB_SLOT_FLAGS 12

typedef struct sw__pb_field {
	uint8_t num;      /* field number */
	uint8_t form;     /* enum sw__pb_form */
	uint8_t slot;     /* which value */
	uint8_t repeated; /* 1 for contact_ids_* and tags */
	const char *name; /* as in the .proto */
} sw__pb_field;

typedef struct sw__pb_msg {
	const char *name; /* "Session" */
	const sw__pb_field *fields;
	size_t n_fields;
} sw__pb_msg;

extern const sw__pb_msg sw__pb_session;
extern const sw__pb_msg sw__pb_billing;
extern const sw__pb_msg sw__pb_usage;

/* Flag bits (enum Flag). */
#define SW__PB_FLAG_CONTACT_IDS_EMPTY 1u
#define SW__PB_FLAG_TAGS_EMPTY 2u
#define SW__PB_FLAG_PROJECT_ID_NULL 4u
#define SW__PB_FLAG_UPDATED_AT_IS_END 8u
#define SW__PB_FLAG_ALL 15u

/* The entry for field number num, or NULL when m has none (inline: the
 * decoders call it for every field). */
static inline const sw__pb_field *sw__pb_field_by_num(const sw__pb_msg *m,
						      uint32_t num)
{
	if (num == 0 || num > m->n_fields)
		return NULL;
	return &m->fields[num - 1];
}

/* The field number carrying slot in form, or 0 when there is none. */
unsigned sw__pb_field_num(const sw__pb_msg *m, unsigned slot, unsigned form);

/* The wire type a field of this form uses: two bits per form, forms
 * 0-9 (ULID UUID TEXT INT DEC DOUBLE MS DELTA FLAGS MSG); anything else
 * is bytes. */
static inline unsigned sw__pb_form_wt(unsigned form)
{
	const uint32_t wts = (uint32_t)SW__PB_WT_LEN << (2 * SW__PB_ULID) |
			     (uint32_t)SW__PB_WT_LEN << (2 * SW__PB_UUID) |
			     (uint32_t)SW__PB_WT_LEN << (2 * SW__PB_TEXT) |
			     (uint32_t)SW__PB_WT_I64 << (2 * SW__PB_DOUBLE) |
			     (uint32_t)SW__PB_WT_LEN << (2 * SW__PB_MSG);

	return form <= SW__PB_MSG ? (wts >> (2 * form)) & 3 : SW__PB_WT_LEN;
}
/* A short name of a wire type ("varint", "bytes", ...). */
const char *sw__pb_wt_name(unsigned wt);

/* ==== Numbers ==== */

/* A number in its chosen form. */
typedef struct sw__pb_num {
	unsigned form; /* SW__PB_INT, SW__PB_DEC or SW__PB_DOUBLE */
	uint64_t v;    /* INT: zigzag; DEC: the packed code; DOUBLE: the bits */
	size_t size;   /* bytes of the value (without the tag) */
} sw__pb_num;

/* Picks the smallest exact form of the finite number x (ties: int, dec,
 * double), honouring SW_PB_PLAIN_INT / SW_PB_PLAIN_DEC in plain. */
void sw__pb_num_choose(double x, unsigned plain, sw__pb_num *out);
/* The value of an *_int varint; false when it is out of range (-2^63, or
 * not exactly a double). */
bool sw__pb_int_value(uint64_t zz, double *x);
/* The value of a *_dec code; false when s is 0 or over 22 or |m| > 2^53. */
bool sw__pb_dec_value(uint64_t code, double *x);

/* ==== Varints ==== */

/* sint64 zigzag: 0, -1, 1, -2 ... -> 0, 1, 2, 3 ... */
static inline uint64_t sw__pb_zigzag(int64_t v)
{
	/* all ones for a negative v, without right-shifting a negative
	 * value (implementation-defined) */
	return ((uint64_t)v << 1) ^ ((uint64_t)0 - ((uint64_t)v >> 63));
}

/* The inverse of sw__pb_zigzag. */
static inline int64_t sw__pb_unzigzag(uint64_t v)
{
	return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
}

/* Bytes the varint of v takes (1-10). */
static inline size_t sw__pb_varint_len(uint64_t v)
{
	size_t n = 1;

	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

/* Writes v at p (room for 10 bytes) and returns the bytes written. */
static inline size_t sw__pb_varint_put(uint8_t *p, uint64_t v)
{
	size_t n = 0;

	while (v >= 0x80) {
		p[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (uint8_t)v;
	return n;
}

/* Reads a varint from p[0..n). SW_OK and *used on success; SW_ETRUNC when
 * the bytes end inside it; SW_EWIRE when it is longer than 10 bytes or its
 * 10th byte is over 1 (more than 64 bits). */
static inline sw_status sw__pb_varint_get(const uint8_t *p, size_t n,
					  uint64_t *v, size_t *used)
{
	uint64_t r = 0;
	size_t i;

	if (n > 0 && p[0] < 0x80) { /* most tags and small values */
		*v = p[0];
		*used = 1;
		return SW_OK;
	}
	for (i = 0; i < 10; i++) {
		if (i >= n)
			return SW_ETRUNC;
		if (i == 9 && p[i] > 1)
			return SW_EWIRE;
		r |= (uint64_t)(p[i] & 0x7f) << (7 * i);
		if (!(p[i] & 0x80)) {
			*v = r;
			*used = i + 1;
			return SW_OK;
		}
	}
	return SW_EWIRE;
}

/* Reads 8 little-endian bytes (a fixed64 / double). */
static inline uint64_t sw__pb_le64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	v = __builtin_bswap64(v);
#endif
	return v;
}

#endif
