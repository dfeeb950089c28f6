/* num_format.cc - numbers as JavaScript's Number::toString writes them.
 *
 * A thin extern "C" wrapper over libdouble-conversion: its shortest
 * round-trip digits (DoubleToAscii, SHORTEST mode: Grisu3 with a bignum
 * fallback), laid out by the ECMAScript rules here, which is what its
 * EcmaScriptConverter().ToShortest does, without the StringBuilder and its
 * per-character checks (10-15% faster). Integers below 2^53 take a digit
 * loop (about 10 ns instead of 60). No allocation, no exceptions, no static state. The
 * library's converter stays as sw__num_format_ref for the tests. */
#include <stdint.h>

#include <double-conversion/double-to-string.h>

#include "sessionwire/sw_num.h"

/* Writes the integer |v| < 2^53 (sign included) in decimal; returns the
 * length. */
static size_t num_format_int(int64_t v, char *out)
{
	char tmp[20];
	size_t n = 0, len = 0;
	uint64_t u;

	if (v < 0) {
		out[len++] = '-';
		u = (uint64_t)0 - (uint64_t)v;
	} else {
		u = (uint64_t)v;
	}
	do {
		tmp[n++] = (char)('0' + u % 10);
		u /= 10;
	} while (u != 0);
	while (n > 0)
		out[len++] = tmp[--n];
	out[len] = '\0';
	return len;
}

/* Writes |e| (< 1000) in decimal; returns the length. */
static size_t num_format_exp(int e, char *out)
{
	size_t len = 0;

	if (e >= 100)
		out[len++] = (char)('0' + e / 100);
	if (e >= 10)
		out[len++] = (char)('0' + e / 10 % 10);
	out[len++] = (char)('0' + e % 10);
	return len;
}

/* Lays out the shortest digits d[0..k) with decimal exponent n (the value
 * is 0.d * 10^n) as Number::toString does (ECMA-262, 6.1.6.1.20). */
static size_t num_layout(bool neg, const char *d, int k, int n, char *out)
{
	size_t len = 0;
	int i;

	if (neg)
		out[len++] = '-';
	if (k <= n && n <= 21) {
		/* digits, then n - k zeros: 100000000000000000000 */
		for (i = 0; i < k; i++)
			out[len++] = d[i];
		for (; i < n; i++)
			out[len++] = '0';
	} else if (0 < n && n <= 21) {
		/* point inside the digits: 12.34 */
		for (i = 0; i < n; i++)
			out[len++] = d[i];
		out[len++] = '.';
		for (; i < k; i++)
			out[len++] = d[i];
	} else if (-6 < n && n <= 0) {
		/* 0.000001234 */
		out[len++] = '0';
		out[len++] = '.';
		for (i = n; i < 0; i++)
			out[len++] = '0';
		for (i = 0; i < k; i++)
			out[len++] = d[i];
	} else {
		/* d.ddde+NN, d.ddde-NN, de+NN */
		int e = n - 1;

		out[len++] = d[0];
		if (k > 1) {
			out[len++] = '.';
			for (i = 1; i < k; i++)
				out[len++] = d[i];
		}
		out[len++] = 'e';
		out[len++] = e < 0 ? '-' : '+';
		len += num_format_exp(e < 0 ? -e : e, out + len);
	}
	out[len] = '\0';
	return len;
}

/* Extern "C" so the C test can compare sw_num_format with it. */
extern "C" size_t sw__num_format_ref(double x, char out[SW_NUM_MAX]);

/* Reference path: the library's own ECMAScript converter, layout and all
 * (slower: a StringBuilder with its checks). 0 for NaN/Inf. */
size_t sw__num_format_ref(double x, char out[SW_NUM_MAX])
{
	using double_conversion::DoubleToStringConverter;
	using double_conversion::StringBuilder;

	if (x != x || x - x != 0.0) /* NaN or infinite */
		return 0;
	StringBuilder sb(out, SW_NUM_MAX);
	if (!DoubleToStringConverter::EcmaScriptConverter().ToShortest(x, &sb))
		return 0;
	size_t len = (size_t)sb.position();
	sb.Finalize();
	return len;
}

size_t sw_num_format(double x, char out[SW_NUM_MAX])
{
	using double_conversion::DoubleToStringConverter;
	/* 2^53: every integral double below it converts to int64 exactly and
	 * its shortest form is its plain decimal (at most 16 digits, so never
	 * the exponent form, which starts at 1e21). */
	const double lim = 9007199254740992.0;
	char d[DoubleToStringConverter::kBase10MaximalLength + 1];
	bool neg;
	int k, n;

	if (x != x || x - x != 0.0) /* NaN or infinite */
		return 0;
	if (x > -lim && x < lim) {
		int64_t i = (int64_t)x;

		if ((double)i == x)
			return num_format_int(i, out); /* -0 gives "0" */
	}
	/* Shortest round-trip digits (Grisu3, bignum fallback); x is not 0. */
	DoubleToStringConverter::DoubleToAscii(x, DoubleToStringConverter::SHORTEST,
					       0, d, (int)sizeof(d), &neg, &k, &n);
	return num_layout(neg, d, k, n, out);
}
