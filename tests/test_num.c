/* test_num.c - sw_num_format against JavaScript's String(x). */
#include <CUnit/CUnit.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sessionwire/sw_num.h"
#include "testutil.h"

/* Reference: double-conversion's own EcmaScriptConverter().ToShortest,
 * without our integer fast path and digit layout (num_format.cc). */
size_t sw__num_format_ref(double x, char out[SW_NUM_MAX]);

/* splitmix64, seeded per test so every run checks the same doubles. */
static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static double from_bits(uint64_t b)
{
	double x;

	memcpy(&x, &b, sizeof(x));
	return x;
}

static uint64_t to_bits(double x)
{
	uint64_t b;

	memcpy(&b, &x, sizeof(b));
	return b;
}

/* Parses exactly 16 hex digits; 0 on anything else. */
static int parse_hex16(const char *s, uint64_t *out)
{
	uint64_t v = 0;
	int i;

	for (i = 0; i < 16; i++) {
		char c = s[i];
		unsigned d;

		if (c >= '0' && c <= '9')
			d = (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			d = (unsigned)(c - 'a' + 10);
		else
			return 0;
		v = v << 4 | d;
	}
	*out = v;
	return 1;
}

static void format_matches_spec_examples(void)
{
	static const struct {
		double x;
		const char *js;
	} t[] = {
		{ 0.0, "0" },
		{ -0.0, "0" },
		{ 1.0, "1" },
		{ -1.5, "-1.5" },
		{ 1e20, "100000000000000000000" },
		{ 1e21, "1e+21" },
		{ 0.000001, "0.000001" },
		{ 1e-7, "1e-7" },
		{ 1.5e-7, "1.5e-7" },
		{ 9.5e-7, "9.5e-7" },
		{ 5e-324, "5e-324" },
		{ 1.7976931348623157e308, "1.7976931348623157e+308" },
		{ 0.1 + 0.2, "0.30000000000000004" },
		{ 18446744073709551616.0, "18446744073709552000" },
		{ 9007199254740991.0, "9007199254740991" },
		{ -9007199254740992.0, "-9007199254740992" },
		{ 123e-20, "1.23e-18" },
		{ -0.0000012345678901234567, "-0.0000012345678901234567" },
	};
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		char out[SW_NUM_MAX];
		size_t n = sw_num_format(t[i].x, out);

		CU_ASSERT_EQUAL(n, strlen(t[i].js));
		CU_ASSERT_STRING_EQUAL(out, t[i].js);
	}
}

/* Every line of tests/data/js_numbers.tsv (made by gen_js_numbers.js). */
static void format_matches_javascript_table(void)
{
	char path[512];
	char *data, *line, *next;
	size_t len;
	long n = 0, bad = 0, malformed = 0;

	snprintf(path, sizeof(path), "%s/js_numbers.tsv", tu_data_dir);
	data = tu_read_file(path, &len);
	CU_ASSERT_PTR_NOT_NULL_FATAL(data);
	for (line = data; *line != '\0'; line = next) {
		char out[SW_NUM_MAX];
		uint64_t bits;
		size_t w;
		char *nl = strchr(line, '\n');

		next = nl ? nl + 1 : line + strlen(line);
		if (nl)
			*nl = '\0';
		if (strlen(line) < 18 || line[16] != '\t' ||
		    !parse_hex16(line, &bits)) {
			malformed++;
			continue;
		}
		n++;
		w = sw_num_format(from_bits(bits), out);
		if (w != strlen(line + 17) || strcmp(out, line + 17) != 0) {
			if (bad++ < 5)
				fprintf(stderr, "\n  %s: got \"%s\", want \"%s\"",
					line, w ? out : "", line + 17);
		}
	}
	free(data);
	CU_ASSERT_EQUAL(malformed, 0);
	CU_ASSERT(n >= 40000);
	CU_ASSERT_EQUAL(bad, 0);
}

/* Checks one finite x: round trip through strtod, length, notation.
 * Returns 1 when all is well. */
static int check_round_trip(double x)
{
	char out[SW_NUM_MAX];
	size_t n = sw_num_format(x, out);
	double back, ax = fabs(x);
	int want_exp = x != 0 && (ax < 1e-6 || ax >= 1e21);

	if (n == 0 || n >= SW_NUM_MAX || strlen(out) != n)
		return 0;
	back = strtod(out, NULL);
	if (x == 0) /* -0 is written "0" */
		return strcmp(out, "0") == 0;
	if (to_bits(back) != to_bits(x))
		return 0;
	return (strchr(out, 'e') != NULL) == want_exp;
}

/* Random bit patterns and random short decimals: format then strtod must
 * give back the same bits. */
static void format_round_trips_random_doubles(void)
{
	uint64_t s = 0x6e756d5f72747269ULL;
	long i, count = tu_quick ? 200000 : 2000000, bad = 0, done = 0;
	static const double p10[] = { 1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7,
				      1e8, 1e9, 1e10, 1e11, 1e12 };

	for (i = 0; i < count; i++) {
		uint64_t r = rng_next(&s);
		double x;

		if (i % 2 == 0) {
			x = from_bits(r);
			if (!isfinite(x))
				continue;
		} else {
			/* A "cost": an integer over a power of ten. */
			x = (double)(r >> (r & 31)) / p10[(r >> 40) % 13];
		}
		done++;
		if (!check_round_trip(x) && bad++ < 5) {
			char out[SW_NUM_MAX] = "";

			sw_num_format(x, out);
			fprintf(stderr, "\n  %016llx -> \"%s\"",
				(unsigned long long)to_bits(x), out);
		}
	}
	CU_ASSERT(done > count * 9 / 10);
	CU_ASSERT_EQUAL(bad, 0);
}

static void format_rejects_nan_and_infinity(void)
{
	static const double t[] = { NAN, -NAN, INFINITY, -INFINITY };
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		char out[SW_NUM_MAX];

		memset(out, 'X', sizeof(out));
		CU_ASSERT_EQUAL(sw_num_format(t[i], out), 0);
		CU_ASSERT_EQUAL(out[0], 'X'); /* nothing written */
		CU_ASSERT_EQUAL(sw__num_format_ref(t[i], out), 0);
		CU_ASSERT_EQUAL(out[0], 'X');
	}
	/* Also the NaNs with payloads. */
	{
		char out[SW_NUM_MAX] = "X";

		CU_ASSERT_EQUAL(sw_num_format(from_bits(0x7ff0000000000001ULL), out), 0);
		CU_ASSERT_EQUAL(sw_num_format(from_bits(0xfff8000000000123ULL), out), 0);
		CU_ASSERT_STRING_EQUAL(out, "X");
	}
}

/* Integers below 2^53 take the fast path, everything else our layout of
 * the shortest digits: both must give the library converter's text. */
static void format_agrees_with_library_converter(void)
{
	static const double edge[] = {
		0.0, -0.0, 1, -1, 9, 10, 99, 100, 2147483647.0, 2147483648.0,
		-2147483648.0, 4294967296.0, 1e15, 1e16 - 1, 1e16,
		9007199254740991.0, -9007199254740991.0, 9007199254740992.0,
		-9007199254740992.0, 9007199254740994.0, 0.5, -0.5,
		9007199254740991.5 /* not representable: rounds to an integer */,
		4503599627370495.5, 1e21, 1e-7, 1e-6, 9.99e-7, 123456.789e300,
	};
	uint64_t s = 0x66617374ULL;
	long i, bad_int = 0, bad_any = 0, count = tu_quick ? 20000 : 200000;
	size_t k;

	for (k = 0; k < sizeof(edge) / sizeof(edge[0]); k++) {
		char a[SW_NUM_MAX], b[SW_NUM_MAX];
		size_t na = sw_num_format(edge[k], a);
		size_t nb = sw__num_format_ref(edge[k], b);

		CU_ASSERT_EQUAL(na, nb);
		CU_ASSERT_STRING_EQUAL(a, b);
	}
	for (i = 0; i < count; i++) {
		uint64_t r = rng_next(&s);
		int64_t v = (int64_t)(r >> (11 + (r & 63) % 53));
		double x = (r & 64) ? -(double)v : (double)v;
		char a[SW_NUM_MAX], b[SW_NUM_MAX];
		size_t na = sw_num_format(x, a);
		size_t nb = sw__num_format_ref(x, b);

		if (na != nb || strcmp(a, b) != 0)
			bad_int++;
		x = from_bits(rng_next(&s));
		if (!isfinite(x))
			continue;
		na = sw_num_format(x, a);
		nb = sw__num_format_ref(x, b);
		if (na != nb || strcmp(a, b) != 0)
			bad_any++;
	}
	CU_ASSERT_EQUAL(bad_int, 0);
	CU_ASSERT_EQUAL(bad_any, 0);
}

int init_num_tests(void)
{
	CU_pSuite s = CU_add_suite("num", NULL, NULL);

	if (s == NULL)
		return -1;
	CU_add_test(s, "format_matches_spec_examples", format_matches_spec_examples);
	CU_add_test(s, "format_matches_javascript_table", format_matches_javascript_table);
	CU_add_test(s, "format_round_trips_random_doubles", format_round_trips_random_doubles);
	CU_add_test(s, "format_rejects_nan_and_infinity", format_rejects_nan_and_infinity);
	CU_add_test(s, "format_agrees_with_library_converter", format_agrees_with_library_converter);
	return 0;
}
