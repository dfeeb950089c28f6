/* id.c - canonical ULIDs and UUIDs as 16 raw bytes (device-safe: no heap,
 * no stdio).
 *
 * A ULID is 26 characters of Crockford base32 (uppercase, no I L O U)
 * holding 130 bits whose top two are zero (so the first character is 0-7):
 * the 128 bits of raw[] in big-endian order, the first 48 of which are a
 * millisecond timestamp. A UUID is 8-4-4-4-12 lowercase hex. Anything else,
 * including lowercase ULIDs and uppercase UUIDs, is plain text: formatting
 * the raw bytes must give back exactly the input.
 */
#include <string.h>

#include "sw_internal.h"

static const char crockford[33] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
static const char hexdigits[17] = "0123456789abcdef";

/* The value of each byte as a canonical (uppercase) Crockford character;
 * 0xff for the rest, I L O U included (so an OR of values is over 31
 * once any byte is not a digit). */
static const unsigned char ulid_val[256] = {
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	0xff, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 0xff, 0x12, 0x13, 0xff, 0x14, 0x15, 0xff,
	0x16, 0x17, 0x18, 0x19, 0x1a, 0xff, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0xff, 0xff, 0xff, 0xff, 0xff,
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
};

/* The 60 bits of 12 characters at u; *bad gets bits over 31 when one is
 * not a Crockford digit. */
static uint64_t ulid_get12(const unsigned char *u, unsigned *bad)
{
	uint64_t x = 0;
	unsigned v, b = 0;
	int i;

	for (i = 0; i < 12; i++) {
		v = ulid_val[u[i]];
		b |= v;
		x = x << 5 | v; /* garbage when b says so: then unused */
	}
	*bad |= b;
	return x;
}

/* The value of a lowercase hex digit, or -1. */
static int hex_digit(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Parses a canonical ULID into raw; false if s is not one. The 26
 * characters are a 130-bit big-endian number kept in two 64-bit halves
 * (no __int128: this also builds for 32-bit microcontrollers). */
static bool ulid_parse(const char *s, uint8_t raw[16])
{
	const unsigned char *u = (const unsigned char *)s;
	uint64_t top, mid, low, hi, lo;
	unsigned v0, v1, bad = 0;
	int i;

	v0 = ulid_val[u[0]];
	v1 = ulid_val[u[1]];
	if (v0 > 7 || v1 > 31)
		return false; /* first over 7: more than 128 bits */
	/* 2 + 12 + 12 characters: bits 127-120, 119-60 and 59-0 */
	top = (uint64_t)v0 << 5 | v1;
	mid = ulid_get12(u + 2, &bad);
	low = ulid_get12(u + 14, &bad);
	if (bad > 31)
		return false;
	hi = top << 56 | mid >> 4;
	lo = mid << 60 | low;
	for (i = 0; i < 8; i++) {
		raw[i] = (uint8_t)(hi >> (56 - 8 * i));
		raw[8 + i] = (uint8_t)(lo >> (56 - 8 * i));
	}
	return true;
}

/* Parses a canonical lowercase UUID into raw; false if s is not one. */
static bool uuid_parse(const char *s, uint8_t raw[16])
{
	uint8_t r[16];
	int i, n = 0;

	for (i = 0; i < SW_UUID_LEN;) {
		int hi, lo;

		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return false;
			i++;
			continue;
		}
		hi = hex_digit((unsigned char)s[i]);
		lo = hex_digit((unsigned char)s[i + 1]);
		if (hi < 0 || lo < 0)
			return false;
		r[n++] = (uint8_t)(hi << 4 | lo);
		i += 2;
	}
	memcpy(raw, r, 16);
	return true;
}

sw_id_kind sw_id_parse(const char *s, size_t len, uint8_t raw[16])
{
	if (s == NULL)
		return SW_ID_TEXT;
	if (len == SW_ULID_LEN && ulid_parse(s, raw))
		return SW_ID_ULID;
	if (len == SW_UUID_LEN && uuid_parse(s, raw))
		return SW_ID_UUID;
	return SW_ID_TEXT;
}

/* Loads 8 bytes as a big-endian number. */
static uint64_t be64(const uint8_t *p)
{
	uint64_t v;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	memcpy(&v, p, sizeof(v));
	v = __builtin_bswap64(v);
#else
	int i;

	v = 0;
	for (i = 0; i < 8; i++)
		v = v << 8 | p[i];
#endif
	return v;
}

/* Writes the 12 characters of the 60 bits of v (highest first). */
static void ulid_put12(uint64_t v, char *out)
{
	int i;

	for (i = 0; i < 12; i++)
		out[i] = crockford[(v >> (55 - 5 * i)) & 31];
}

/* The 130 bits in three independent pieces (2 + 12 + 12 characters)
 * rather than one 128-bit shift per character. */
void sw_ulid_format(const uint8_t raw[16], char out[SW_ULID_LEN])
{
	const uint64_t mask60 = ((uint64_t)1 << 60) - 1;
	uint64_t hi = be64(raw), lo = be64(raw + 8);

	out[0] = crockford[hi >> 61];
	out[1] = crockford[(hi >> 56) & 31];
	ulid_put12((hi << 4 | lo >> 60) & mask60, out + 2);
	ulid_put12(lo & mask60, out + 14);
}

void sw_uuid_format(const uint8_t raw[16], char out[SW_UUID_LEN])
{
	int i, o = 0;

	for (i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[o++] = '-';
		out[o++] = hexdigits[raw[i] >> 4];
		out[o++] = hexdigits[raw[i] & 15];
	}
}

uint64_t sw_ulid_time(const uint8_t raw[16])
{
	uint64_t t = 0;
	int i;

	for (i = 0; i < 6; i++)
		t = t << 8 | raw[i];
	return t;
}
