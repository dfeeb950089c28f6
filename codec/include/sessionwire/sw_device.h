/* sw_device.h - the lean device encoder: one update, field by field, into
 * a caller buffer.
 *
 * The same bytes as sw_pb_encode gives for the same update (the same
 * compact forms, field order and flags), in a fraction of the code:
 * no heap, no stdio, no strings (errors are a status code and a field),
 * and no floating point unless a number is given as a double
 * (sw_dev_number, sw_dev_trio_number: only those link the double code).
 * Non-integral costs need no double either: give them as integers at a
 * decimal scale (sw_dev_trio_dec: 4341 at scale 7 is 0.0004341).
 *
 *	sw_dev w;
 *	size_t len;
 *
 *	sw_dev_begin(&w, buf, sizeof(buf));
 *	sw_dev_time(&w, SW_DEV_STARTED_AT, t0);    (first: see below)
 *	sw_dev_id(&w, SW_DEV_EXTERNAL_ID, "dev-a8346607363a", 16);
 *	sw_dev_count(&w, SW_DEV_DURATION, 1358072);
 *	sw_dev_trio(&w, SW_DEV_USAGE, 2894, 987, 3881);
 *	sw_dev_time(&w, SW_DEV_UPDATED_AT, t0 + 1358072);
 *	if (sw_dev_end(&w, &len) != SW_OK)
 *		... w.status, w.field say what failed ...
 *
 * Calls may come in any order, each field at most once. Every call checks
 * its value as sw_update_check does with the default limits (UTF-8,
 * strings up to 64 KiB, up to 4096 list items, finite numbers, dates in
 * 0000-9999); the first error sticks, later calls do nothing, and
 * sw_dev_end returns it. Strings are copied into buf at once (they need
 * not outlive the call, and must not lie inside buf).
 *
 * Set started_at first: a ULID whose time equals it then goes out as its
 * 10 random bytes at once. Set after the ids, the result is the same, but
 * those ULIDs hold 16 bytes until sw_dev_end cuts them, so buf needs 6
 * more bytes per such ULID meanwhile. A buffer of
 * SW_PB_MAX_SIZE(max_str, n_contacts, n_tags) never fails either way.
 */
#ifndef SESSIONWIRE_SW_DEVICE_H
#define SESSIONWIRE_SW_DEVICE_H

#include <stddef.h>
#include <stdint.h>

#include "sw_status.h"
#include "sw_update.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The fields: the bits of SW_FIELD_MAP (sw_field_wire_name(f) names
 * one on a host). */
typedef enum sw_dev_field {
	SW_DEV_ID = 0,
	SW_DEV_EXTERNAL_ID = 1,
	SW_DEV_DURATION = 2,
	SW_DEV_CONTACT_IDS = 3,
	SW_DEV_BILLING = 4,
	SW_DEV_USAGE = 5,
	SW_DEV_TRACES_COUNT = 6,
	SW_DEV_TAGS = 7,
	SW_DEV_WORKSPACE_ID = 8,
	SW_DEV_PROJECT_ID = 9,
	SW_DEV_STARTED_AT = 10,
	SW_DEV_UPDATED_AT = 11
} sw_dev_field;

/* Largest magnitude sw_dev_count and sw_dev_trio take: 2^53 (every
 * integer up to it is exactly a double). Beyond: sw_dev_number. */
#define SW_DEV_MAX_COUNT ((int64_t)1 << 53)

/* The writer. Read status and field after a failure; the rest is
 * private. */
typedef struct sw_dev {
	sw_status status; /* the first error, SW_OK while all is well */
	int field;        /* its sw_dev_field; -1: none, or the flags or
			     sw_dev_end itself */
	uint8_t *buf;
	size_t cap, pos;
	uint16_t has;     /* fields given (1 << sw_dev_field) */
	uint8_t flags;    /* Flag bits of the message */
	uint8_t n;        /* chunks */
	uint8_t dur_int;  /* duration integral, |d| < 2^53: dur holds it */
	int64_t dur, started_at, updated_at;
	/* The fields written so far, sorted by field number, in buf order. */
	struct {
		size_t off;
		uint8_t num;
		uint8_t ulid; /* ULIDs of 16 bytes that started_at may cut */
	} chunk[13];
} sw_dev;

/* Starts an update in buf[0..cap) (buf may be NULL only with cap 0:
 * every field then fails with SW_EBUFSZ). */
void sw_dev_begin(sw_dev *w, uint8_t *buf, size_t cap);

/* _id, external_id, workspace_id or project_id (else SW_EINVAL): a
 * canonical ULID or UUID goes out as raw bytes, anything else as text. */
void sw_dev_id(sw_dev *w, sw_dev_field f, const char *s, size_t len);
/* project_id: null. */
void sw_dev_project_id_null(sw_dev *w);

/* duration or traces_count, an integer with |n| <= SW_DEV_MAX_COUNT
 * (else SW_ERANGE). No floating point. */
void sw_dev_count(sw_dev *w, sw_dev_field f, int64_t n);
/* duration or traces_count, any finite double (else SW_ERANGE). Links
 * the double arithmetic of the compact number forms. */
void sw_dev_number(sw_dev *w, sw_dev_field f, double x);

/* The total of sw_dev_trio and sw_dev_trio_dec that is in + out as
 * doubles add them (as the SDK makes totals): the message leaves it out,
 * and nothing needs to work it out. */
#define SW_DEV_SUM INT64_MIN

/* billing (input, output, total cost) or usage (prompt, completion,
 * total tokens), integers as for sw_dev_count; total may be SW_DEV_SUM.
 * The total is left out of the message when it equals in + out as
 * doubles add. No floating point. */
void sw_dev_trio(sw_dev *w, sw_dev_field f, int64_t in, int64_t out,
		 int64_t total);
/* The same with any finite doubles (costs in dollars). Links the double
 * arithmetic. */
void sw_dev_trio_number(sw_dev *w, sw_dev_field f, double in, double out,
			double total);

/* Decimals: m / 10^scale as IEEE double division (4341 at scale 7 is
 * the JSON number 0.0004341), |m| < SW_DEV_DEC_LIMIT, scale 0-15 (else
 * SW_ERANGE). Costs in integer units of 10^-scale dollars without
 * floating point: the choice of form and the total-is-the-sum rule are
 * worked out in integers, exactly as the doubles would give them. */
#define SW_DEV_DEC_LIMIT ((int64_t)1 << 49)
/* duration or traces_count. */
void sw_dev_dec(sw_dev *w, sw_dev_field f, int64_t m, unsigned scale);
/* billing or usage: in, out and total (or SW_DEV_SUM: 0.0004341 +
 * 0.009 is 0.009434099999999999 as doubles add, not 0.0094341) at one
 * scale. */
void sw_dev_trio_dec(sw_dev *w, sw_dev_field f, int64_t in, int64_t out,
		     int64_t total, unsigned scale);

/* contact_ids (all ULIDs or all UUIDs: raw bytes; else text) or tags:
 * n items, none is fine ([]). */
void sw_dev_list(sw_dev *w, sw_dev_field f, const sw_str *items, size_t n);

/* started_at or updated_at, milliseconds since 1970 (0000-9999, else
 * SW_EDATE). */
void sw_dev_time(sw_dev *w, sw_dev_field f, int64_t ms);

/* Finishes the message (once: later calls fail with SW_EINVAL). SW_OK
 * and *len its size; else the first error (w->field names the field:
 * SW_EBUFSZ when buf is too small, SW_EDUP for a field given twice,
 * SW_EINVAL for a field the call does not take or a NULL string with a
 * length, SW_ETOOBIG, SW_EUTF8, SW_ERANGE, SW_EDATE for values
 * sw_pb_encode rejects alike) and *len 0. */
SW_CHECK sw_status sw_dev_end(sw_dev *w, size_t *len);

#ifdef __cplusplus
}
#endif
#endif
