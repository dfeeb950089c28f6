/* utf8.c - strict UTF-8 validation (device-safe). */
#include <string.h>

#include "sw_internal.h"

size_t sw__utf8_check(const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0;

	while (i < n) {
		unsigned c = s[i];
		size_t need;
		unsigned lo = 0x80, hi = 0xBF;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xC2 && c <= 0xDF) {
			need = 1;
		} else if (c >= 0xE0 && c <= 0xEF) {
			need = 2;
			if (c == 0xE0)
				lo = 0xA0; /* no overlongs */
			else if (c == 0xED)
				hi = 0x9F; /* no surrogates */
		} else if (c >= 0xF0 && c <= 0xF4) {
			need = 3;
			if (c == 0xF0)
				lo = 0x90;
			else if (c == 0xF4)
				hi = 0x8F; /* nothing past U+10FFFF */
		} else {
			return i;
		}
		if (n - i - 1 < need)
			return i;
		if (s[i + 1] < lo || s[i + 1] > hi)
			return i;
		for (size_t k = 2; k <= need; k++)
			if ((s[i + k] & 0xC0) != 0x80)
				return i;
		i += need + 1;
	}
	return n;
}

size_t sw__utf8_check_fast(const char *s, size_t n)
{
	size_t i = 0;
	uint64_t v;

	while (n - i >= 8) {
		memcpy(&v, s + i, 8);
		if (v & (uint64_t)0x8080808080808080u)
			break;
		i += 8;
	}
	while (i < n && (unsigned char)s[i] < 0x80)
		i++;
	if (i == n)
		return n;
	return i + sw__utf8_check(s + i, n - i);
}
