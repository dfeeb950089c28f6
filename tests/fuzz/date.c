/* date.c - fuzz target: RFC 3339 date-times (untrusted JSON dates).
 *
 *  - sw_date_parse of the input: on success the milliseconds lie in
 *    0000-9999, sw_date_format writes 24 characters that parse back to the
 *    same milliseconds, and an input already in toISOString form comes
 *    back byte for byte; on failure there is a reason;
 *  - the first 8 bytes as milliseconds: sw_date_format writes them iff
 *    they lie in 0000-9999, the text parses back to them, and its fields
 *    agree with glibc's gmtime_r (an independent calendar).
 */
#include <time.h>

#include "fuzz.h"

/* Formats ms and checks the round trip and the fields against gmtime_r. */
static void dt_format(int64_t ms)
{
	char out[SW_DATE_LEN + 1], ref[96];
	const char *why = NULL;
	int64_t back = 0, sec, frac;
	struct tm tm;
	time_t t;
	size_t n;

	memset(out, 0x55, sizeof(out));
	n = sw_date_format(ms, out);
	if (ms < SW_DATE_MIN_MS || ms > SW_DATE_MAX_MS) {
		SW_FUZZ_CHECK(n == 0);
		return;
	}
	if (!SW_FUZZ_CHECK(n == SW_DATE_LEN && out[SW_DATE_LEN] == '\0'))
		return;
	if (SW_FUZZ_CHECK(sw_date_parse(out, n, &back, &why) == SW_OK))
		SW_FUZZ_CHECK(back == ms);
	/* floor division: before 1970 the milliseconds round down */
	sec = ms / 1000;
	frac = ms % 1000;
	if (frac < 0) {
		frac += 1000;
		sec--;
	}
	t = (time_t)sec;
	if (gmtime_r(&t, &tm) == NULL)
		return;
	snprintf(ref, sizeof(ref), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
		 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		 tm.tm_min, tm.tm_sec, (int)frac);
	if (!SW_FUZZ_CHECK(strcmp(out, ref) == 0))
		fprintf(stderr, "ms %lld: %s, gmtime_r %s\n", (long long)ms,
			out, ref);
}

int SW_FUZZ_ENTRY(date)(const uint8_t *data, size_t size)
{
	const char *why = NULL;
	char out[SW_DATE_LEN + 1];
	int64_t ms = 0, back = 0;
	uint64_t raw;
	sw_status st;

	st = sw_date_parse((const char *)data, size, &ms, &why);
	if (st != SW_OK) {
		SW_FUZZ_CHECK(st == SW_EDATE && why != NULL && *why != '\0');
	} else if (SW_FUZZ_CHECK(ms >= SW_DATE_MIN_MS &&
				 ms <= SW_DATE_MAX_MS)) {
		if (SW_FUZZ_CHECK(sw_date_format(ms, out) == SW_DATE_LEN) &&
		    SW_FUZZ_CHECK(sw_date_parse(out, SW_DATE_LEN, &back,
						NULL) == SW_OK)) {
			SW_FUZZ_CHECK(back == ms);
			/* canonical input: exactly toISOString's form */
			if (size == SW_DATE_LEN && data[10] == 'T' &&
			    data[19] == '.' && data[23] == 'Z')
				SW_FUZZ_CHECK(!memcmp(out, data, SW_DATE_LEN));
		}
		dt_format(ms);
	}
	if (size >= 8) {
		memcpy(&raw, data, 8);
		dt_format((int64_t)raw);
		/* and the same bits folded into the valid range */
		dt_format(SW_DATE_MIN_MS +
			  (int64_t)(raw % (uint64_t)(SW_DATE_MAX_MS -
						     SW_DATE_MIN_MS + 1)));
	}
	return 0;
}
