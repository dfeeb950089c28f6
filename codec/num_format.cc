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
#include <string.h>

#include <double-conversion/double-to-string.h>

#include "sessionwire/sw_num.h"

/* "00" "01" ... "99": two digits per division. */
static const char digit_pairs[201] =
	"00010203040506070809101112131415161718192021222324252627282930313233"
	"34353637383940414243444546474849505152535455565758596061626364656667"
	"68697071727374757677787980818283848586878889909192939495969798"
	"99";

/* Writes u in decimal (no NUL); returns the length (1-20). */
static size_t put_u64(uint64_t u, char *out)
{
	char tmp[20];
	size_t n = sizeof(tmp);

	while (u >= 100) {
		unsigned r = (unsigned)(u % 100);

		u /= 100;
		n -= 2;
		memcpy(tmp + n, digit_pairs + 2 * r, 2);
	}
	if (u >= 10) {
		n -= 2;
		memcpy(tmp + n, digit_pairs + 2 * u, 2);
	} else {
		tmp[--n] = (char)('0' + u);
	}
	memcpy(out, tmp + n, sizeof(tmp) - n);
	return sizeof(tmp) - n;
}

/* Writes the integer |v| < 2^53 (sign included) in decimal; returns the
 * length. */
static size_t num_format_int(int64_t v, char *out)
{
	size_t len = 0;
	uint64_t u;

	if (v < 0) {
		out[len++] = '-';
		u = (uint64_t)0 - (uint64_t)v;
	} else {
		u = (uint64_t)v;
	}
	len += put_u64(u, out + len);
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

/* 10^s, exact as doubles for s <= 22. */
static const double p10[23] = {
	1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
	1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22
};

/* The shortest digits of a finite, non-integral x when it is a decimal of
 * at most 15 significant digits (most costs and durations): writes them to
 * d, sets *k and *n (value 0.d * 10^n) and returns true; false otherwise
 * (then the caller takes the general path).
 *
 * Why this is exactly Number::toString's choice: we take the s for which
 * t = |x| * 10^s is in [10^14, 10^15) (or s = 22), round it to m and keep
 * m only if fl(m / 10^s) == |x|. m and 10^s are exact doubles, so the
 * IEEE division is the correctly rounded (ties to even) value of the
 * decimal D = m * 10^-s: D reads back as x. Distinct decimals of at most
 * 15 significant digits are distinct doubles (15 = DBL_DIG: 10^15 < 2^52,
 * and |x| >= 10^-22 is far from the subnormals), so D is the only decimal
 * of at most 15 digits that reads back as x: no shorter one exists and
 * none of the same length ties with it. Hence its digits, trailing zeros
 * stripped, are the k of ECMA-262 6.1.6.1.20 and D the unique s*10^(n-k).
 * Nothing is decided by the rounding of t: m counts only after the exact
 * division check, and any miss falls back to Grisu (misses are rare: a
 * D of at most 15 digits puts t within 0.2 of the integer m). */
static bool num_short_dec(double x, char *d, int *k, int *n)
{
	double a = x < 0 ? -x : x, t;
	char tmp[20];
	uint64_t m;
	int s, len;

	uint64_t bits;
	int e2;

	if (!(a < 1e14) || !(a >= 1e-22))
		return false;
	/* s from the binary exponent: 2^e2 <= a < 2^(e2+1), and
	 * floor(e2 * log10(2)) is within one of floor(log10(a)); then at
	 * most one step each way (s only picks which m is tried) */
	memcpy(&bits, &a, sizeof(bits));
	e2 = (int)(bits >> 52) - 1023;
	s = 14 - (e2 >= 0 ? e2 * 78913 >> 18 : -((-e2 * 78913 + 262143) >> 18));
	if (s > 22)
		s = 22;
	t = a * p10[s];
	if (t >= 1e15 && s > 1)
		t = a * p10[--s];
	else if (t < 1e14 && s < 22)
		t = a * p10[++s];
	m = (uint64_t)(t + 0.5);
	if (m == 0 || m > 999999999999999u || (double)m / p10[s] != a)
		return false;
	while (m % 10000 == 0) {
		m /= 10000;
		s -= 4;
	}
	while (m % 10 == 0) {
		m /= 10;
		s--;
	}
	if (s < 1)
		return false; /* cannot happen for non-integral x; be safe */
	len = (int)put_u64(m, tmp);
	memcpy(d, tmp, (size_t)len);
	*k = len;
	*n = len - s;
	return true;
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
	if (num_short_dec(x, d, &k, &n))
		return num_layout(x < 0, d, k, n, out);
	/* Shortest round-trip digits (Grisu3, bignum fallback); x is not 0. */
	DoubleToStringConverter::DoubleToAscii(x, DoubleToStringConverter::SHORTEST,
					       0, d, (int)sizeof(d), &neg, &k, &n);
	return num_layout(neg, d, k, n, out);
}
