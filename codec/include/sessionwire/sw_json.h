/* sw_json.h - the API's JSON body, both ways. */
#ifndef SESSIONWIRE_SW_JSON_H
#define SESSIONWIRE_SW_JSON_H

#include <stdbool.h>
#include <stddef.h>

#include "sw_buf.h"
#include "sw_status.h"
#include "sw_update.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Parses a JSON body (docs/wire-format.md 2.2): wire or SDK name per key,
 * strict types, dates normalised to UTC milliseconds, UTF-8 checked,
 * limits enforced.
 * json need not be NUL-terminated. On success *out is one heap block
 * (free with sw_update_free); on failure *out is NULL and err names the
 * field path and the problem. */
SW_CHECK sw_status sw_json_parse(const char *json, size_t len,
				 const sw_parse_opts *opts, sw_update **out,
				 sw_error *err);

typedef enum sw_names { SW_NAMES_WIRE = 0, SW_NAMES_SDK = 1 } sw_names;

typedef struct sw_write_opts {
	sw_names names; /* wire names ("external_id", default) or SDK names */
	bool pretty;    /* JSON.stringify(x, null, 2) layout instead of compact */
} sw_write_opts;

/* Appends u as canonical JSON (docs/wire-format.md 2.1: byte-identical to
 * the official SDK in the default compact wire-name form) to out. opts
 * NULL: defaults. Fails with SW_ERANGE on a non-finite number, SW_EDATE on
 * a date outside 0000-9999, or the buffer's SW_ETOOBIG/SW_EBUFSZ; out is
 * then restored to its length before the call. Strings are not
 * re-validated: pass updates from a parser/decoder or checked with
 * sw_update_check. */
SW_CHECK sw_status sw_json_write(const sw_update *u, const sw_write_opts *opts,
				 sw_buf *out, sw_error *err);

#ifdef __cplusplus
}
#endif
#endif
