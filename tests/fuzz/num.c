/* num.c - fuzz target: numbers as JavaScript writes them, and as the JSON
 * parser reads them back.
 *
 * Every 8 bytes of the input are one double x (host byte order):
 *  - sw_num_format writes nothing for NaN and infinities; else a NUL-
 *    terminated text shorter than SW_NUM_MAX that strtod reads back to
 *    the same bits (-0 is written "0"), in exponent form exactly when
 *    |x| < 1e-6 or |x| >= 1e21 (ECMAScript Number::toString);
 *  - {"duration":<text>} parses to the same double and writes back the
 *    same text (the writer and the parser agree).
 * Inputs of fewer than 8 bytes are padded with zeroes.
 */
#include <math.h>

#include "fuzz.h"

/* The JSON parser reads text back to y and the writer gives text again. */
static void num_json(const char *text, double y)
{
	char json[SW_NUM_MAX + 16];
	sw_update *u = NULL;
	sw_buf out;
	sw_error e;
	sw_status st;
	int len;

	len = snprintf(json, sizeof(json), "{\"duration\":%s}", text);
	if (!SW_FUZZ_CHECK(len > 0 && (size_t)len < sizeof(json)))
		return;
	sw_error_clear(&e);
	st = sw_json_parse(json, (size_t)len, NULL, &u, &e);
	if (!SW_FUZZ_CHECK(st == SW_OK)) {
		fprintf(stderr, "parse %s: %s %s\n", json, sw_errname(st),
			e.message);
		return;
	}
	SW_FUZZ_CHECK((u->has & SW_F_DURATION) &&
		      !memcmp(&u->duration, &y, sizeof(y)));
	sw_buf_init(&out, 0, NULL);
	if (SW_FUZZ_CHECK(sw_json_write(u, NULL, &out, NULL) == SW_OK))
		SW_FUZZ_CHECK(out.len == (size_t)len &&
			      !memcmp(out.data, json, out.len));
	sw_buf_free(&out);
	sw_update_free(u);
}

/* All the checks for one double. */
static void num_one(double x)
{
	char out[SW_NUM_MAX + 8];
	double y, ax = fabs(x);
	bool expo;
	char *end;
	size_t n;

	memset(out, 0x55, sizeof(out));
	n = sw_num_format(x, out);
	if (!isfinite(x)) {
		SW_FUZZ_CHECK(n == 0);
		return;
	}
	if (!SW_FUZZ_CHECK(n > 0 && n < SW_NUM_MAX && out[n] == '\0' &&
			   strlen(out) == n))
		return;
	y = strtod(out, &end);
	SW_FUZZ_CHECK(end == out + n);
	if (x == 0) {
		SW_FUZZ_CHECK(!strcmp(out, "0"));
	} else if (!SW_FUZZ_CHECK(!memcmp(&x, &y, sizeof(x)))) {
		fprintf(stderr, "%a written %s reads %a\n", x, out, y);
		return;
	}
	expo = strchr(out, 'e') != NULL;
	if (!SW_FUZZ_CHECK(expo == (x != 0 && (ax < 1e-6 || ax >= 1e21))))
		fprintf(stderr, "%a written %s\n", x, out);
	num_json(out, y);
}

int SW_FUZZ_ENTRY(num)(const uint8_t *data, size_t size)
{
	uint8_t tail[8] = { 0 };
	size_t i;
	double x;

	for (i = 0; i + 8 <= size && i < 8 * 64; i += 8) {
		memcpy(&x, data + i, 8);
		num_one(x);
	}
	if (i < size && i < 8 * 64) {
		memcpy(tail, data + i, size - i);
		memcpy(&x, tail, 8);
		num_one(x);
	}
	if (size == 0)
		num_one(0.0);
	return 0;
}
