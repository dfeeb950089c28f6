/* sw_pb.h - the compact protobuf form (proto/sessionwire.proto, Session).
 *
 * The encoder needs no heap and writes into a caller buffer; it picks the
 * compact forms by itself and falls back to plain ones when a compact form
 * would not be exact. The decoder is strict: it rejects truncation, wrong
 * wire types, overlong varints, lengths past the end, unknown fields, two
 * forms of one field, invalid UTF-8 and inputs over the limits, naming the
 * field path and the byte offset.
 *
 * Paths: "#<number>(<name>)" per level, joined by ".", with "[i]" for the
 * i-th item of a repeated field: "#6(billing).9(total_cost_double)" is
 * field 9 inside field 6 (the short form "#6.9" of sw_status.h with the
 * .proto names added), "#9(tags)[3]" the fourth tag, "#29" an unknown
 * field. "" is the whole input. The offset is where the field's tag starts
 * (for bad UTF-8: the bad byte; for truncation inside a nested message:
 * the tag that does not fit).
 */
#ifndef SESSIONWIRE_SW_PB_H
#define SESSIONWIRE_SW_PB_H

#include <stddef.h>
#include <stdint.h>

#include "sw_buf.h"
#include "sw_status.h"
#include "sw_update.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bytes a varint of n takes (n < 2^35). */
#define SW_PB_VARINT_SIZE(n)                                                  \
	((n) < 128u ? 1u : (n) < 16384u ? 2u : (n) < 2097152u ? 3u           \
	 : (n) < 268435456u ? 4u : 5u)
/* Worst case of one string field of up to n bytes (two-byte tag). */
#define SW_PB_STR_MAX(n) (2u + SW_PB_VARINT_SIZE(n) + (n))
/* Worst-case encoded size of an update whose strings are at most max_str
 * bytes, with at most n_contacts contact ids and n_tags tags: a buffer of
 * this size never fails with SW_EBUFSZ. A compile-time constant. */
#define SW_PB_MAX_SIZE(max_str, n_contacts, n_tags)                           \
	(4u * SW_PB_STR_MAX(max_str) /* _id, external, workspace, project */ \
	 + 2u * 10u                  /* duration, traces_count */            \
	 + 2u * (2u + 3u * 9u)       /* billing, usage */                    \
	 + 2u * 9u + 2u              /* started_at, updated_at, flags */     \
	 + ((n_contacts) + (n_tags)) * SW_PB_STR_MAX(max_str))

/* Switches for the compact forms, to measure what each one buys. */
enum sw_pb_plain {
	SW_PB_PLAIN_ULID = 1u << 0,     /* ids as text, not 16 bytes */
	SW_PB_PLAIN_UUID = 1u << 1,
	SW_PB_PLAIN_ULID_TIME = 1u << 2, /* no 10-byte ULIDs */
	SW_PB_PLAIN_INT = 1u << 3,      /* no varint integers */
	SW_PB_PLAIN_DEC = 1u << 4,      /* no decimals */
	SW_PB_PLAIN_TOTAL = 1u << 5,    /* always send totals */
	SW_PB_PLAIN_DATE_DELTA = 1u << 6 /* updated_at absolute */
};

/* Encodes u (checked as by sw_update_check with default limits) into
 * buf[0..cap). On success *len is the size. buf may be NULL with cap 0 to
 * compute the size only. No heap allocation, ever. On SW_EBUFSZ nothing
 * was written past cap and *len is the size needed. */
SW_CHECK sw_status sw_pb_encode(const sw_update *u, uint8_t *buf, size_t cap,
				size_t *len, sw_error *err);
/* The same with some compact forms turned off (SW_PB_PLAIN_* bits). */
SW_CHECK sw_status sw_pb_encode_ex(const sw_update *u, unsigned plain,
				   uint8_t *buf, size_t cap, size_t *len,
				   sw_error *err);

/* Decodes a Session message. On success *out is one heap block (free with
 * sw_update_free) that does not alias buf; on failure *out is NULL. */
SW_CHECK sw_status sw_pb_decode(const uint8_t *buf, size_t len,
				const sw_parse_opts *opts, sw_update **out,
				sw_error *err);

/* Appends a readable dump of a Session message to out, one line per
 * field: offset, field number and name, wire type, length, the raw value
 * and what it means (the compact form named; billing/usage indented).
 * Never crashes on garbage: it stops at the first problem, writes it as a
 * last "!!" line and returns its status (err filled as by sw_pb_decode),
 * or the buffer's SW_ETOOBIG/SW_EBUFSZ. */
SW_CHECK sw_status sw_pb_inspect(const uint8_t *buf, size_t len, sw_buf *out,
				 sw_error *err);

#ifdef __cplusplus
}
#endif
#endif
