/* test_date.c - sw_date_parse and sw_date_format against
 * docs/wire-format.md and JavaScript's toISOString. */
#include <CUnit/CUnit.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sessionwire/sw_date.h"
#include "testutil.h"

/* Parses exactly len bytes from a heap copy of that size, so a read past
 * the end shows up under ASan and valgrind. */
static sw_status parse_exact(const char *s, size_t len, int64_t *ms,
			     const char **why)
{
	char *copy = malloc(len ? len : 1);
	sw_status st;

	if (copy == NULL)
		return SW_ENOMEM;
	memcpy(copy, s, len);
	st = sw_date_parse(copy, len, ms, why);
	free(copy);
	return st;
}

/* Expected values checked with node: new Date(in).getTime(), toISOString. */
static const struct {
	const char *in;
	int64_t ms;
	const char *iso;
} good[] = {
	{ "1970-01-01T00:00:00Z", 0, "1970-01-01T00:00:00.000Z" },
	{ "1970-01-01T00:00:00.000Z", 0, "1970-01-01T00:00:00.000Z" },
	{ "2024-02-29T12:34:56.789Z", 1709210096789LL, "2024-02-29T12:34:56.789Z" },
	{ "2024-02-29T12:34:56.7Z", 1709210096700LL, "2024-02-29T12:34:56.700Z" },
	{ "2024-02-29T12:34:56.78Z", 1709210096780LL, "2024-02-29T12:34:56.780Z" },
	/* extra fraction digits are truncated, not rounded */
	{ "2024-02-29T12:34:56.78999999Z", 1709210096789LL, "2024-02-29T12:34:56.789Z" },
	{ "2024-02-29T12:34:56.78999999999999999999999999999999999999999999999999999999999Z",
	  1709210096789LL, "2024-02-29T12:34:56.789Z" },
	/* offsets, both forms, both signs */
	{ "2024-03-01T00:30:00+01:00", 1709249400000LL, "2024-02-29T23:30:00.000Z" },
	{ "2024-03-01T00:30:00+0100", 1709249400000LL, "2024-02-29T23:30:00.000Z" },
	{ "2023-12-31T23:00:00-01:00", 1704067200000LL, "2024-01-01T00:00:00.000Z" },
	{ "2023-12-31T23:00:00-0130", 1704069000000LL, "2024-01-01T00:30:00.000Z" },
	{ "2024-01-01T00:00:00+00:59", 1704063660000LL, "2023-12-31T23:01:00.000Z" },
	{ "2020-06-15T12:00:00-00:00", 1592222400000LL, "2020-06-15T12:00:00.000Z" },
	{ "2020-06-15T12:00:00.5+23:59", 1592136060500LL, "2020-06-14T12:01:00.500Z" },
	/* around 1970: floor division */
	{ "1969-12-31T23:59:59.999Z", -1, "1969-12-31T23:59:59.999Z" },
	{ "1970-01-01T00:59:59.999+01:00", -1, "1969-12-31T23:59:59.999Z" },
	/* leap days: 400-year rule, year 0000 is leap */
	{ "2000-02-29T00:00:00Z", 951782400000LL, "2000-02-29T00:00:00.000Z" },
	{ "1600-02-29T23:59:59Z", -11670912001000LL, "1600-02-29T23:59:59.000Z" },
	{ "0400-02-29T00:00:00Z", -49539340800000LL, "0400-02-29T00:00:00.000Z" },
	{ "1900-03-01T00:00:00Z", -2203891200000LL, "1900-03-01T00:00:00.000Z" },
	{ "0000-02-29T00:00:00Z", -62162121600000LL, "0000-02-29T00:00:00.000Z" },
	{ "0000-03-01T00:00:00Z", -62162035200000LL, "0000-03-01T00:00:00.000Z" },
	{ "0099-12-31T23:59:59.999Z", -59011459200001LL, "0099-12-31T23:59:59.999Z" },
	/* the ends of the range, also reached through an offset */
	{ "0000-01-01T00:00:00Z", SW_DATE_MIN_MS, "0000-01-01T00:00:00.000Z" },
	{ "0000-01-01T01:00:00+01:00", SW_DATE_MIN_MS, "0000-01-01T00:00:00.000Z" },
	{ "0001-01-01T00:00:00+23:59", -62135683140000LL, "0000-12-31T00:01:00.000Z" },
	{ "9999-12-31T23:59:59.999Z", SW_DATE_MAX_MS, "9999-12-31T23:59:59.999Z" },
	{ "9999-12-31T23:59:59.9999999Z", SW_DATE_MAX_MS, "9999-12-31T23:59:59.999Z" },
	{ "9999-12-31T22:59:59.999-01:00", SW_DATE_MAX_MS, "9999-12-31T23:59:59.999Z" },
};

static void parse_accepts_good_inputs(void)
{
	size_t i;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		int64_t ms = 12345;
		const char *why = NULL;
		char out[SW_DATE_LEN + 1];
		sw_status st = parse_exact(good[i].in, strlen(good[i].in), &ms,
					   &why);

		if (st != SW_OK || ms != good[i].ms)
			fprintf(stderr, "\n  \"%s\": status %d ms %lld (%s)",
				good[i].in, st, (long long)ms, why ? why : "");
		CU_ASSERT_EQUAL(st, SW_OK);
		CU_ASSERT_EQUAL(ms, good[i].ms);
		CU_ASSERT_EQUAL(sw_date_format(ms, out), SW_DATE_LEN);
		CU_ASSERT_STRING_EQUAL(out, good[i].iso);
	}
}

#define W_YEAR "expected a 4-digit year (YYYY-MM-DD)"
#define W_ZONE "missing time zone: expected Z, +HH:MM or -HH:MM after the time"
#define W_ZONE_BAD "expected Z, +HH:MM or -HH:MM after the time"
#define W_RANGE "date-time in UTC is outside 0000-01-01T00:00:00.000Z to 9999-12-31T23:59:59.999Z"

static const struct {
	const char *in;
	size_t len; /* 0: strlen(in) */
	const char *why;
} bad[] = {
	{ "", 0, W_YEAR },
	{ "24-01-01T00:00:00Z", 0, W_YEAR },
	{ "+2024-01-01T00:00:00Z", 0, W_YEAR },
	{ "-0001-01-01T00:00:00Z", 0, W_YEAR },
	{ "\xef\xbc\x92""024-01-01T00:00:00Z", 0, W_YEAR }, /* fullwidth 2 */
	{ "2024/01/01T00:00:00Z", 0, "expected '-' after the year" },
	{ "2024-1-01T00:00:00Z", 0, "expected a 2-digit month" },
	{ "2024-00-01T00:00:00Z", 0, "month must be 01 to 12" },
	{ "2024-13-01T00:00:00Z", 0, "month must be 01 to 12" },
	{ "2024-01_01T00:00:00Z", 0, "expected '-' after the month" },
	{ "2024-01-1T00:00:00Z", 0, "expected a 2-digit day" },
	{ "2024-01-00T00:00:00Z", 0, "day 00 is not allowed" },
	{ "2024-01-32T00:00:00Z", 0, "day is past the end of the month" },
	{ "2024-04-31T00:00:00Z", 0, "day is past the end of the month" },
	{ "2024-02-30T00:00:00Z", 0, "day is past the end of the month" },
	{ "2023-02-29T00:00:00Z", 0, "February 29 in a year that is not a leap year" },
	{ "1900-02-29T00:00:00Z", 0, "February 29 in a year that is not a leap year" },
	{ "2024-01-01", 0, "expected 'T' between date and time" },
	{ "2024-01-01 00:00:00Z", 0, "expected 'T' between date and time" },
	{ "2024-01-01t00:00:00Z", 0, "expected uppercase 'T' between date and time, found lowercase 't'" },
	{ "2024-01-01T0a:00:00Z", 0, "expected a 2-digit hour" },
	{ "2024-01-01T24:00:00Z", 0, "hour 24 is not allowed" },
	{ "2024-01-01T25:00:00Z", 0, "hour must be 00 to 23" },
	{ "2024-01-01T00-00:00Z", 0, "expected ':' after the hour" },
	{ "2024-01-01T00:6:00Z", 0, "expected a 2-digit minute" },
	{ "2024-01-01T23:60:00Z", 0, "minute must be 00 to 59" },
	{ "2024-01-01T00:00Z", 0, "expected ':' after the minute (seconds are required)" },
	{ "2024-01-01T00:00:0Z", 0, "expected a 2-digit second" },
	{ "2024-01-01T23:59:60Z", 0, "second 60 (leap second) is not allowed" },
	{ "2024-01-01T23:59:61Z", 0, "second must be 00 to 59" },
	{ "2024-01-01T00:00:00.Z", 0, "expected at least one digit after '.'" },
	{ "2024-01-01T00:00:00,5Z", 0, W_ZONE_BAD },
	{ "2024-01-01T00:00:00", 0, W_ZONE },
	{ "2024-01-01T00:00:00.123", 0, W_ZONE },
	{ "2024-01-01T00:00:00 Z", 0, W_ZONE_BAD },
	{ "2024-01-01T00:00:00.12a4Z", 0, W_ZONE_BAD },
	{ "2024-01-01T00:00:00UTC", 0, W_ZONE_BAD },
	{ "2024-01-01T00:00:00z", 0, "expected uppercase 'Z' for UTC, found lowercase 'z'" },
	{ "2024-01-01T00:00:00+01", 0, "offset has hours only: expected +HH:MM or +HHMM" },
	{ "2024-01-01T00:00:00-05", 0, "offset has hours only: expected +HH:MM or +HHMM" },
	{ "2024-01-01T00:00:00+1:00", 0, "expected a 2-digit offset hour after the sign" },
	{ "2024-01-01T00:00:00+", 0, "expected a 2-digit offset hour after the sign" },
	{ "2024-01-01T00:00:00+01:", 0, "expected a 2-digit offset minute" },
	{ "2024-01-01T00:00:00+01:0", 0, "expected a 2-digit offset minute" },
	{ "2024-01-01T00:00:00+010", 0, "expected a 2-digit offset minute" },
	{ "2024-01-01T00:00:00+24:00", 0, "offset hour must be 00 to 23" },
	{ "2024-01-01T00:00:00+01:60", 0, "offset minute must be 00 to 59" },
	{ "2024-01-01T00:00:00ZZ", 0, "unexpected bytes after the time zone" },
	{ "2024-01-01T00:00:00Z ", 0, "unexpected bytes after the time zone" },
	{ "2024-01-01T00:00:00+01:00:00", 0, "unexpected bytes after the time zone" },
	{ "2024-01-01T00:00:00+0100Z", 0, "unexpected bytes after the time zone" },
	/* explicit length: an embedded NUL is a byte like any other */
	{ "2024-01-01T00:00:00Z\0", 21, "unexpected bytes after the time zone" },
	{ "2024-01-01T00:00:00\0Z", 21, W_ZONE_BAD },
	/* in range locally, out of range in UTC */
	{ "0000-01-01T00:00:00+00:01", 0, W_RANGE },
	{ "0000-01-01T00:59:59.999+01:00", 0, W_RANGE },
	{ "9999-12-31T23:59:59.999-00:01", 0, W_RANGE },
	{ "9999-12-31T23:00:00-01:00", 0, W_RANGE },
};

static void parse_rejects_bad_inputs_saying_why(void)
{
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		size_t len = bad[i].len ? bad[i].len : strlen(bad[i].in);
		int64_t ms = 777;
		const char *why = NULL;
		sw_status st = parse_exact(bad[i].in, len, &ms, &why);

		if (st != SW_EDATE || why == NULL || strcmp(why, bad[i].why))
			fprintf(stderr, "\n  \"%s\": status %d why \"%s\"",
				bad[i].in, st, why ? why : "(null)");
		CU_ASSERT_EQUAL(st, SW_EDATE);
		CU_ASSERT_PTR_NOT_NULL_FATAL(why);
		CU_ASSERT_STRING_EQUAL(why, bad[i].why);
		CU_ASSERT_EQUAL(ms, 777); /* untouched on failure */
		/* why is optional */
		CU_ASSERT_EQUAL(parse_exact(bad[i].in, len, &ms, NULL), SW_EDATE);
	}
}

/* Every proper prefix of a valid date-time is an error, and the length is
 * honoured (bytes past len are never looked at). */
static void parse_honours_explicit_length(void)
{
	static const char *full[] = {
		"2024-02-29T12:34:56.789+05:30",
		"2024-02-29T12:34:56-0530",
		"1969-12-31T23:59:59.123456Z",
	};
	size_t i, n;
	int64_t ms;

	for (i = 0; i < sizeof(full) / sizeof(full[0]); i++) {
		size_t len = strlen(full[i]);

		for (n = 0; n < len; n++)
			CU_ASSERT_EQUAL(parse_exact(full[i], n, &ms, NULL), SW_EDATE);
		CU_ASSERT_EQUAL(parse_exact(full[i], len, &ms, NULL), SW_OK);
	}
	/* A valid date followed by garbage the length excludes. */
	CU_ASSERT_EQUAL(sw_date_parse("1970-01-01T00:00:00.001Zgarbage", 24,
				      &ms, NULL), SW_OK);
	CU_ASSERT_EQUAL(ms, 1);
}

static void parse_rejects_null_arguments(void)
{
	int64_t ms;
	const char *why = NULL;

	CU_ASSERT_EQUAL(sw_date_parse("1970-01-01T00:00:00Z", 20, NULL, &why),
			SW_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(why);
	CU_ASSERT_EQUAL(sw_date_parse(NULL, 20, &ms, NULL), SW_EINVAL);
	CU_ASSERT_EQUAL(sw_date_parse(NULL, 0, &ms, NULL), SW_EDATE);
}

static void format_rejects_out_of_range(void)
{
	static const int64_t t[] = { SW_DATE_MIN_MS - 1, SW_DATE_MAX_MS + 1,
				     INT64_MIN, INT64_MAX,
				     -62167219200000LL * 2 };
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		char out[SW_DATE_LEN + 1];

		memset(out, 'X', sizeof(out));
		CU_ASSERT_EQUAL(sw_date_format(t[i], out), 0);
		CU_ASSERT_EQUAL(out[0], 'X'); /* nothing written */
	}
}

/* Every line of tests/data/js_dates.tsv (made by gen_js_dates.js): format
 * gives JavaScript's toISOString, and parsing that gives the ms back. */
static void format_and_parse_match_javascript_table(void)
{
	char path[512];
	char *data, *line, *next;
	long n = 0, bad_fmt = 0, bad_parse = 0, malformed = 0;

	snprintf(path, sizeof(path), "%s/js_dates.tsv", tu_data_dir);
	data = tu_read_file(path, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(data);
	for (line = data; *line != '\0'; line = next) {
		char out[SW_DATE_LEN + 1], *tab, *end;
		char *nl = strchr(line, '\n');
		long long want;
		int64_t ms = 0;

		next = nl ? nl + 1 : line + strlen(line);
		if (nl)
			*nl = '\0';
		tab = strchr(line, '\t');
		want = strtoll(line, &end, 10);
		if (tab == NULL || end != tab || strlen(tab + 1) != SW_DATE_LEN) {
			malformed++;
			continue;
		}
		n++;
		if (sw_date_format(want, out) != SW_DATE_LEN ||
		    strcmp(out, tab + 1) != 0) {
			if (bad_fmt++ < 5)
				fprintf(stderr, "\n  format %lld: got %s want %s",
					want, out, tab + 1);
		}
		if (sw_date_parse(tab + 1, SW_DATE_LEN, &ms, NULL) != SW_OK ||
		    ms != want) {
			if (bad_parse++ < 5)
				fprintf(stderr, "\n  parse %s: got %lld want %lld",
					tab + 1, (long long)ms, want);
		}
	}
	free(data);
	CU_ASSERT_EQUAL(malformed, 0);
	CU_ASSERT(n >= 5000);
	CU_ASSERT_EQUAL(bad_fmt, 0);
	CU_ASSERT_EQUAL(bad_parse, 0);
}

/* Format then parse is the identity on random ms over the whole range. */
static void format_parse_round_trip_random(void)
{
	uint64_t s = 0x64617465ULL;
	const uint64_t span = (uint64_t)(SW_DATE_MAX_MS - SW_DATE_MIN_MS) + 1;
	long i, bad_rt = 0, count = tu_quick ? 20000 : 200000;

	for (i = 0; i < count; i++) {
		uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
		int64_t ms, back = 0;
		char out[SW_DATE_LEN + 1];

		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
		z ^= z >> 31;
		ms = SW_DATE_MIN_MS + (int64_t)(z % span);
		if (sw_date_format(ms, out) != SW_DATE_LEN ||
		    sw_date_parse(out, SW_DATE_LEN, &back, NULL) != SW_OK ||
		    back != ms)
			bad_rt++;
	}
	CU_ASSERT_EQUAL(bad_rt, 0);
}

int init_date_tests(void)
{
	CU_pSuite s = CU_add_suite("date", NULL, NULL);

	if (s == NULL)
		return -1;
	CU_add_test(s, "parse_accepts_good_inputs", parse_accepts_good_inputs);
	CU_add_test(s, "parse_rejects_bad_inputs_saying_why", parse_rejects_bad_inputs_saying_why);
	CU_add_test(s, "parse_honours_explicit_length", parse_honours_explicit_length);
	CU_add_test(s, "parse_rejects_null_arguments", parse_rejects_null_arguments);
	CU_add_test(s, "format_rejects_out_of_range", format_rejects_out_of_range);
	CU_add_test(s, "format_and_parse_match_javascript_table", format_and_parse_match_javascript_table);
	CU_add_test(s, "format_parse_round_trip_random", format_parse_round_trip_random);
	return 0;
}
