/* test_id.c - canonical ULIDs and UUIDs as 16 raw bytes. */
#include <CUnit/CUnit.h>
#include <stdlib.h>
#include <string.h>

#include "../codec/sw_internal.h"
#include "testutil.h"

/* A small seeded PRNG (xorshift64*), so failures replay. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rng(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 2685821657736338717ull;
}

static void id_parse_good_table(void)
{
	static const struct {
		const char *s;
		sw_id_kind kind;
		const char *hex;
	} t[] = {
		{ "00000000000000000000000000", SW_ID_ULID,
		  "00000000000000000000000000000000" },
		{ "7ZZZZZZZZZZZZZZZZZZZZZZZZZ", SW_ID_ULID,
		  "ffffffffffffffffffffffffffffffff" },
		/* the ULID spec's example: time 1469918176385 */
		{ "01ARYZ6S41TSV4RRFFQ69G5FAV", SW_ID_ULID,
		  "01563df36481d6764c61efb99302bd5b" },
		{ "01J42CMDHMMCH68TYCT6BXFB8V", SW_ID_ULID, NULL },
		{ "00000000-0000-0000-0000-000000000000", SW_ID_UUID,
		  "00000000000000000000000000000000" },
		{ "123e4567-e89b-12d3-a456-426614174000", SW_ID_UUID,
		  "123e4567e89b12d3a456426614174000" },
		{ "ffffffff-ffff-ffff-ffff-ffffffffffff", SW_ID_UUID,
		  "ffffffffffffffffffffffffffffffff" },
	};
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		uint8_t raw[16];
		char back[SW_UUID_LEN];
		size_t n = strlen(t[i].s);

		CU_ASSERT_EQUAL(sw_id_parse(t[i].s, n, raw), t[i].kind);
		if (t[i].hex != NULL) {
			char *h = tu_hex(raw, 16);

			CU_ASSERT_STRING_EQUAL(h, t[i].hex);
			free(h);
		}
		if (t[i].kind == SW_ID_ULID)
			sw_ulid_format(raw, back);
		else
			sw_uuid_format(raw, back);
		CU_ASSERT_EQUAL(memcmp(back, t[i].s, n), 0);
	}
}

static void id_parse_bad_table_is_text(void)
{
	static const char *const t[] = {
		"",
		"8ZZZZZZZZZZZZZZZZZZZZZZZZZ",  /* first char over 7: 130 bits */
		"ZZZZZZZZZZZZZZZZZZZZZZZZZZ",
		"01arYZ6S41TSV4RRFFQ69G5FAV",  /* lowercase */
		"01ARYZ6S41TSV4RRFFQ69G5FAI",  /* I is not Crockford */
		"01ARYZ6S41TSV4RRFFQ69G5FAL",
		"01ARYZ6S41TSV4RRFFQ69G5FAO",
		"01ARYZ6S41TSV4RRFFQ69G5FAU",
		"01ARYZ6S41TSV4RRFFQ69G5FA",   /* 25 chars */
		"01ARYZ6S41TSV4RRFFQ69G5FAVX", /* 27 chars */
		"01ARYZ6S41TSV4RRFFQ69G5FA-",
		"123E4567-E89B-12D3-A456-426614174000", /* uppercase */
		"123e4567-e89b-12d3-a456-42661417400",  /* short */
		"123e4567-e89b-12d3-a456-4266141740000",
		"123e4567e89b-12d3-a456-4266141740000", /* dash moved */
		"123e4567-e89b-12d3-a456_426614174000",
		"123e4567-e89b-12d3-a456-42661417400g",
		"{23e4567-e89b-12d3-a456-426614174000",
		"123e4567e89b12d3a456426614174000",     /* no dashes */
		"dev-a8346607363a",
	};
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		uint8_t raw[16];

		memset(raw, 0xAA, sizeof(raw));
		CU_ASSERT_EQUAL(sw_id_parse(t[i], strlen(t[i]), raw), SW_ID_TEXT);
		CU_ASSERT_EQUAL(raw[0], 0xAA); /* left alone */
		CU_ASSERT_EQUAL(raw[15], 0xAA);
	}
	CU_ASSERT_EQUAL(sw_id_parse(NULL, 0, NULL), SW_ID_TEXT);
}

static void id_ulid_with_nul_inside_is_text(void)
{
	char s[SW_ULID_LEN];
	uint8_t raw[16];

	memcpy(s, "01ARYZ6S41TSV4RRFFQ69G5FAV", SW_ULID_LEN);
	s[5] = '\0';
	CU_ASSERT_EQUAL(sw_id_parse(s, SW_ULID_LEN, raw), SW_ID_TEXT);
}

static void id_random_bytes_round_trip(void)
{
	int i, n = tu_quick ? 2000 : 100000;

	for (i = 0; i < n; i++) {
		uint8_t raw[16], back[16];
		char text[SW_UUID_LEN];
		uint64_t a = rng(), b = rng();
		int k;

		for (k = 0; k < 8; k++) {
			raw[k] = (uint8_t)(a >> (8 * k));
			raw[8 + k] = (uint8_t)(b >> (8 * k));
		}
		sw_ulid_format(raw, text);
		CU_ASSERT_TRUE_FATAL(text[0] >= '0' && text[0] <= '7');
		CU_ASSERT_EQUAL_FATAL(sw_id_parse(text, SW_ULID_LEN, back),
				      SW_ID_ULID);
		CU_ASSERT_EQUAL_FATAL(memcmp(raw, back, 16), 0);
		sw_uuid_format(raw, text);
		CU_ASSERT_EQUAL_FATAL(sw_id_parse(text, SW_UUID_LEN, back),
				      SW_ID_UUID);
		CU_ASSERT_EQUAL_FATAL(memcmp(raw, back, 16), 0);
	}
}

static void id_ulid_time_is_first_48_bits(void)
{
	uint8_t raw[16];

	CU_ASSERT_EQUAL(sw_id_parse("01ARYZ6S41TSV4RRFFQ69G5FAV", 26, raw),
			SW_ID_ULID);
	CU_ASSERT_EQUAL(sw_ulid_time(raw), 1469918176385ull);
	CU_ASSERT_EQUAL(sw_id_parse("7ZZZZZZZZZZZZZZZZZZZZZZZZZ", 26, raw),
			SW_ID_ULID);
	CU_ASSERT_EQUAL(sw_ulid_time(raw), (1ull << 48) - 1);
	CU_ASSERT_EQUAL(sw_id_parse("00000000000000000000000000", 26, raw),
			SW_ID_ULID);
	CU_ASSERT_EQUAL(sw_ulid_time(raw), 0);
	/* a ULID made in 2025 */
	CU_ASSERT_EQUAL(sw_id_parse("01JW73WQT0CMVGG0ZCNGTE8ZRG", 26, raw),
			SW_ID_ULID);
	CU_ASSERT_EQUAL(sw_ulid_time(raw), 1748290658112ull);
}

int init_id_tests(void)
{
	CU_pSuite s = CU_add_suite("id", NULL, NULL);

	if (s == NULL)
		return -1;
	CU_add_test(s, "id_parse_good_table", id_parse_good_table);
	CU_add_test(s, "id_parse_bad_table_is_text", id_parse_bad_table_is_text);
	CU_add_test(s, "id_ulid_with_nul_inside_is_text", id_ulid_with_nul_inside_is_text);
	CU_add_test(s, "id_random_bytes_round_trip", id_random_bytes_round_trip);
	CU_add_test(s, "id_ulid_time_is_first_48_bits", id_ulid_time_is_first_48_bits);
	return 0;
}
