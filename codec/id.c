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

/* The value of a canonical (uppercase) Crockford character, or -1. */
static int ulid_digit(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c < 'A' || c > 'Z' || c == 'I' || c == 'L' || c == 'O' || c == 'U')
		return -1;
	/* letters in order, skipping I, L, O and U */
	return 10 + (c - 'A') - (c > 'I') - (c > 'L') - (c > 'O') - (c > 'U');
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

/* Bit k (0 = most significant) of the 130-bit ULID stream: two leading
 * zero bits, then the 128 bits of raw. */
static unsigned ulid_bit(const uint8_t raw[16], int k)
{
	k -= 2;
	if (k < 0)
		return 0;
	return (raw[k >> 3] >> (7 - (k & 7))) & 1u;
}

/* Parses a canonical ULID into raw; false if s is not one. */
static bool ulid_parse(const char *s, uint8_t raw[16])
{
	uint8_t r[16] = { 0 };
	int i, b;

	for (i = 0; i < SW_ULID_LEN; i++) {
		int v = ulid_digit((unsigned char)s[i]);

		if (v < 0)
			return false;
		for (b = 0; b < 5; b++) {
			int k = i * 5 + b - 2;
			unsigned bit = ((unsigned)v >> (4 - b)) & 1u;

			if (k < 0) {
				if (bit)
					return false; /* first char over 7 */
				continue;
			}
			r[k >> 3] |= (uint8_t)(bit << (7 - (k & 7)));
		}
	}
	memcpy(raw, r, 16);
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

void sw_ulid_format(const uint8_t raw[16], char out[SW_ULID_LEN])
{
	int i, b;

	for (i = 0; i < SW_ULID_LEN; i++) {
		unsigned v = 0;

		for (b = 0; b < 5; b++)
			v = v << 1 | ulid_bit(raw, i * 5 + b);
		out[i] = crockford[v];
	}
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
