/* sw_date.h - RFC 3339 date-times as the API uses them. */
#ifndef SESSIONWIRE_SW_DATE_H
#define SESSIONWIRE_SW_DATE_H

#include <stddef.h>
#include <stdint.h>

#include "sw_status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SW_DATE_LEN 24 /* "YYYY-MM-DDTHH:MM:SS.sssZ" */
#define SW_DATE_MIN_MS (-62167219200000LL) /* 0000-01-01T00:00:00.000Z */
#define SW_DATE_MAX_MS (253402300799999LL) /* 9999-12-31T23:59:59.999Z */

/* Parses YYYY-MM-DDTHH:MM:SS[.d+](Z|+HH:MM|-HH:MM|+HHMM|-HHMM) into UTC
 * milliseconds since 1970 (fraction digits past the third are truncated).
 * On failure returns SW_EDATE and, if why is non-NULL, sets *why to a
 * static message ("hour 24 is not allowed", ...). The UTC result must
 * also lie in 0000-9999. */
SW_CHECK sw_status sw_date_parse(const char *s, size_t len, int64_t *ms,
				 const char **why);

/* Writes ms as JavaScript's toISOString ("1969-12-31T23:59:59.999Z"),
 * NUL-terminated. Returns SW_DATE_LEN, or 0 when ms is outside
 * SW_DATE_MIN_MS..SW_DATE_MAX_MS (nothing written). */
size_t sw_date_format(int64_t ms, char out[SW_DATE_LEN + 1]);

#ifdef __cplusplus
}
#endif
#endif
