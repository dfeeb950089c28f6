/* num_format.cc - numbers as JavaScript's Number::toString writes them.
 *
 * A thin extern "C" wrapper over libdouble-conversion's ECMAScript
 * converter (shortest round-trip digits, JS notation rules), with a fast
 * path for integers below 2^53. No allocation, no exceptions, no globals
 * with constructors: the converter is a function-local static of the
 * library. */
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

/* Extern "C" so the C test can compare the fast path with the slow one. */
extern "C" size_t sw__num_format_slow(double x, char out[SW_NUM_MAX]);

/* The double-conversion path for every finite double; 0 for NaN/Inf. */
size_t sw__num_format_slow(double x, char out[SW_NUM_MAX])
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
	/* 2^53: every integral double below it converts to int64 exactly and
	 * its shortest form is its plain decimal (at most 16 digits, so never
	 * the exponent form, which starts at 1e21). */
	const double lim = 9007199254740992.0;

	if (x > -lim && x < lim) {
		int64_t i = (int64_t)x;

		if ((double)i == x)
			return num_format_int(i, out); /* -0 gives "0" */
	}
	return sw__num_format_slow(x, out);
}
