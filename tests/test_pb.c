/* test_pb.c - the compact Session protobuf: encoder, decoder, inspector.
 *
 * protobuf-c (generated from proto/sessionwire.proto) is the reference:
 * our bytes must unpack to the same values, protobuf-c's bytes must decode
 * to the same update, and our field table must match its descriptor. */
#include <CUnit/CUnit.h>
#include <malloc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../codec/pb_wire.h"
#include "sessionwire.pb-c.h"
#include "testutil.h"

typedef Sessionwire__V1__Session PbSession;
typedef Sessionwire__V1__Billing PbBilling;
typedef Sessionwire__V1__Usage PbUsage;

/* ==== Helpers ==== */

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;

static uint64_t rng(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 2685821657736338717ull;
}

static unsigned rnd(unsigned n)
{
	return (unsigned)(rng() % n);
}

static bool same_double(double a, double b)
{
	return memcmp(&a, &b, sizeof(a)) == 0;
}

/* Encodes u (plain bits) into a malloc'd buffer; checks that the size
 * query agrees. NULL on failure. */
static uint8_t *encode(const sw_update *u, unsigned plain, size_t *len)
{
	size_t need = 0, got = 0;
	sw_error e;
	uint8_t *buf;

	sw_error_clear(&e);
	if (sw_pb_encode_ex(u, plain, NULL, 0, &need, &e) != SW_OK) {
		fprintf(stderr, "encode size: %s %s: %s\n", sw_errname(e.code),
			e.path, e.message);
		return NULL;
	}
	buf = malloc(need + 1);
	if (buf == NULL)
		return NULL;
	if (sw_pb_encode_ex(u, plain, buf, need, &got, &e) != SW_OK ||
	    got != need) {
		fprintf(stderr, "encode: %s %s: %s\n", sw_errname(e.code),
			e.path, e.message);
		free(buf);
		return NULL;
	}
	*len = got;
	return buf;
}

/* Encode, decode, compare; returns the encoded size (0 on failure). */
static size_t round_trip(const sw_update *u, unsigned plain)
{
	tu_failalloc fa = { -1, 0, 0 };
	sw_alloc a = tu_failalloc_hook(&fa);
	sw_parse_opts o = { .alloc = &a };
	sw_update *back = NULL;
	size_t len = 0;
	uint8_t *buf = encode(u, plain, &len);
	sw_error e;
	sw_status st;

	CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
	sw_error_clear(&e);
	st = sw_pb_decode(buf, len, &o, &back, &e);
	if (st != SW_OK)
		fprintf(stderr, "decode (plain %#x): %s at %zu %s: %s\n", plain,
			sw_errname(st), e.offset, e.path, e.message);
	CU_ASSERT_EQUAL_FATAL(st, SW_OK);
	CU_ASSERT_TRUE(sw_update_equal(u, back));
	CU_ASSERT_EQUAL(fa.calls, 1); /* exactly one allocation */
	sw_update_free(back);
	CU_ASSERT_EQUAL(fa.live, 0);
	free(buf);
	return len;
}

static PbSession *pbc_unpack(const uint8_t *buf, size_t len)
{
	return sessionwire__v1__session__unpack(NULL, len, buf);
}

/* ==== Hand-built updates covering every form ==== */

static const char ULID_A[] = "01J42CMDHMMCH68TYCT6BXFB8V";
static const char ULID_B[] = "01JM5C45HMMN30GQ4PJW4YK1YD";
static const char UUID_A[] = "123e4567-e89b-12d3-a456-426614174000";
static const char UUID_B[] = "f47ac10b-58cc-4372-a567-0e02b2c3d479";
static const char NUL_STR[] = "a\0b\0";

static const sw_str contacts_ulid[] = { { ULID_A, 26 }, { ULID_B, 26 } };
static const sw_str contacts_uuid[] = { { UUID_A, 36 }, { UUID_B, 36 } };
static const sw_str contacts_mixed[] = { { ULID_A, 26 }, { UUID_A, 36 },
					 { "plain", 5 } };
static const sw_str tags_some[] = { { "device", 6 }, { "fw:1.4.2", 8 },
				    { NUL_STR, 4 }, { "", 0 },
				    { "\xe2\x82\xac\xf0\x9f\x98\x80", 7 } };

#define N_CASES 22

/* Fills u with hand-built case i. */
static void make_case(int i, sw_update *u)
{
	uint8_t raw[16];
	int64_t t;

	sw_update_init(u);
	switch (i) {
	case 0: /* empty */
		break;
	case 1: /* typical device update */
		sw_update_set_external_id(u, "dev-a8346607363a", 16);
		sw_update_set_duration(u, 1358072);
		sw_update_set_billing(u, 0.0004341, 0.009, 0.009434099999999999);
		sw_update_set_usage(u, 2894, 987, 3881);
		sw_update_set_traces_count(u, 171);
		sw_update_set_workspace_id(u, ULID_A, 26);
		sw_update_set_project_id(u, ULID_B, 26);
		sw_update_set_started_at(u, 1748282246708);
		sw_update_set_updated_at(u, 1748283604780);
		break;
	case 2: /* -0 everywhere, 0.1 + 0.2 total */
		sw_update_set_duration(u, -0.0);
		sw_update_set_traces_count(u, -0.0);
		sw_update_set_billing(u, 0.1, 0.2, 0.1 + 0.2);
		sw_update_set_usage(u, -0.0, 0.0, 0.0); /* -0 + 0 = 0 */
		break;
	case 3: /* extreme doubles */
		sw_update_set_duration(u, 5e-324);
		sw_update_set_traces_count(u, 1.7976931348623157e+308);
		sw_update_set_billing(u, 1e21, 9223372036854775808.0,
				      -9223372036854775808.0);
		sw_update_set_usage(u, 9007199254740992.0, -9007199254740992.0,
				    9007199254740993.0 * 2);
		break;
	case 4: /* costs as price times tokens, totals not the sum */
		sw_update_set_billing(u, 3598 * 1e-6, 1911 * 1e-5, 0.5);
		sw_update_set_usage(u, 1e-7, 1.5e-7, 123.456);
		break;
	case 5: /* strings with U+0000, text ids */
		sw_update_set_id(u, NUL_STR, 4);
		sw_update_set_external_id(u, "", 0);
		sw_update_set_workspace_id(u, "01j42cmdhmmch68tyct6bxfb8v", 26);
		sw_update_set_project_id(u, "123E4567-E89B-12D3-A456-426614174000",
					 36);
		sw_update_set_tags(u, tags_some, 5);
		break;
	case 6: /* empty lists, null project id, totals equal but not bitwise */
		sw_update_set_contact_ids(u, NULL, 0);
		sw_update_set_tags(u, NULL, 0);
		sw_update_set_project_id_null(u);
		sw_update_set_billing(u, 0.0, 0.0, -0.0);
		sw_update_set_usage(u, -0.0, -0.0, 0.0);
		break;
	case 7: /* dates 0000 and 9999, updated before started */
		sw_update_set_started_at(u, SW_DATE_MAX_MS);
		sw_update_set_updated_at(u, SW_DATE_MIN_MS);
		break;
	case 8:
		sw_update_set_started_at(u, SW_DATE_MIN_MS);
		sw_update_set_updated_at(u, SW_DATE_MAX_MS);
		sw_update_set_duration(u, 1.5);
		break;
	case 9: /* ULIDs whose time is started_at: 10 bytes */
		CU_ASSERT_EQUAL(sw_id_parse(ULID_A, 26, raw), SW_ID_ULID);
		t = (int64_t)sw_ulid_time(raw);
		sw_update_set_id(u, ULID_A, 26);
		sw_update_set_workspace_id(u, ULID_B, 26); /* other time */
		sw_update_set_contact_ids(u, contacts_ulid, 2);
		sw_update_set_started_at(u, t);
		sw_update_set_duration(u, 60000);
		sw_update_set_updated_at(u, t + 60000); /* IS_END */
		break;
	case 10: /* UUIDs everywhere */
		sw_update_set_id(u, UUID_A, 36);
		sw_update_set_external_id(u, UUID_B, 36);
		sw_update_set_workspace_id(u, UUID_A, 36);
		sw_update_set_project_id(u, UUID_B, 36);
		sw_update_set_contact_ids(u, contacts_uuid, 2);
		break;
	case 11: /* mixed contact forms: text for all */
		sw_update_set_contact_ids(u, contacts_mixed, 3);
		sw_update_set_external_id(u, ULID_A, 26);
		break;
	case 12: /* updated_at delta, negative started */
		sw_update_set_started_at(u, -1);
		sw_update_set_updated_at(u, 5);
		sw_update_set_id(u, ULID_A, 26); /* started < 0: 16 bytes */
		break;
	case 13: /* IS_END impossible: duration not integral */
		sw_update_set_started_at(u, 1000);
		sw_update_set_duration(u, 0.5);
		sw_update_set_updated_at(u, 1000);
		break;
	case 14: /* duration 2^53: integral but too big for IS_END */
		sw_update_set_started_at(u, 0);
		sw_update_set_duration(u, 9007199254740992.0);
		sw_update_set_updated_at(u, 0);
		break;
	case 15: /* integers up to 2^53 and negative */
		sw_update_set_duration(u, 9007199254740991.0);
		sw_update_set_traces_count(u, -12345);
		sw_update_set_usage(u, 1e15, 1e18, 1e15 + 1e18);
		break;
	case 16: /* started_at at 9999-12-31 with a ULID of that time */
		{
			static char ulid_max[SW_ULID_LEN];

			memset(raw, 0x5a, sizeof(raw));
			for (t = 0; t < 6; t++)
				raw[t] = (uint8_t)((uint64_t)SW_DATE_MAX_MS >>
						   (40 - 8 * t));
			sw_ulid_format(raw, ulid_max);
			sw_update_set_id(u, ulid_max, SW_ULID_LEN);
			sw_update_set_started_at(u, SW_DATE_MAX_MS);
		}
		break;
	case 17: /* project id null plus IS_END with negative duration */
		sw_update_set_project_id_null(u);
		sw_update_set_started_at(u, 10000);
		sw_update_set_duration(u, -2500);
		sw_update_set_updated_at(u, 7500);
		break;
	case 18: /* updated_at without started_at */
		sw_update_set_updated_at(u, 1748283604780);
		sw_update_set_duration(u, 5);
		break;
	case 19: /* a subnormal-ish and denormal total */
		sw_update_set_billing(u, 2.2250738585072014e-308, 5e-324,
				      2.2250738585072014e-308 + 5e-324);
		break;
	case 20: /* every id is a ULID with time, started 0 */
		sw_update_set_id(u, "00000000000000000000000000", 26);
		sw_update_set_external_id(u, "0000000000ZZZZZZZZZZZZZZZZ", 26);
		sw_update_set_started_at(u, 0);
		break;
	default: /* a session with everything */
		sw_update_set_id(u, ULID_A, 26);
		sw_update_set_external_id(u, "ext", 3);
		sw_update_set_duration(u, 12.25);
		sw_update_set_contact_ids(u, contacts_mixed, 3);
		sw_update_set_billing(u, 1, 2, 3);
		sw_update_set_usage(u, 1, 2, 4);
		sw_update_set_traces_count(u, 0);
		sw_update_set_tags(u, tags_some, 2);
		sw_update_set_workspace_id(u, UUID_A, 36);
		sw_update_set_project_id(u, "p", 1);
		sw_update_set_started_at(u, 0);
		sw_update_set_updated_at(u, 1);
		break;
	}
}

static const unsigned plains[] = {
	0, SW_PB_PLAIN_ULID, SW_PB_PLAIN_UUID, SW_PB_PLAIN_ULID_TIME,
	SW_PB_PLAIN_INT, SW_PB_PLAIN_DEC, SW_PB_PLAIN_TOTAL,
	SW_PB_PLAIN_DATE_DELTA, SW_PB_PLAIN_INT | SW_PB_PLAIN_DEC, 127
};

static void pb_round_trip_every_case_and_plain_switch(void)
{
	size_t k;
	int i;

	for (i = 0; i < N_CASES; i++) {
		sw_update u;

		make_case(i, &u);
		for (k = 0; k < sizeof(plains) / sizeof(plains[0]); k++)
			round_trip(&u, plains[k]);
	}
}

/* The compact forms are smaller than the plain ones where they apply. */
static void pb_compact_forms_pay(void)
{
	sw_update u;
	size_t full, plain;

	make_case(1, &u);
	full = round_trip(&u, 0);
	plain = round_trip(&u, 127);
	printf("\n    typical update: %zu B compact, %zu B all-plain ", full,
	       plain);
	CU_ASSERT_TRUE(full < plain);
	CU_ASSERT_EQUAL(full, 88); /* JSON: 377 bytes */
	make_case(9, &u);
	/* _id and the first contact carry started_at as their time */
	CU_ASSERT_EQUAL(round_trip(&u, 0) + 6 * 2,
			round_trip(&u, SW_PB_PLAIN_ULID_TIME));
}

/* Unpacks our encoding of u with protobuf-c (caller frees). */
static PbSession *encode_unpacked(const sw_update *u, unsigned plain)
{
	size_t len = 0;
	uint8_t *buf = encode(u, plain, &len);
	PbSession *p;

	if (buf == NULL)
		return NULL;
	p = pbc_unpack(buf, len);
	free(buf);
	return p;
}

/* The encoder picks the forms the schema describes (seen by protobuf-c). */
static void pb_encoder_picks_expected_forms(void)
{
	sw_update u;
	PbSession *p;

	make_case(1, &u);
	p = encode_unpacked(&u, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	CU_ASSERT_EQUAL(p->id_case, 0);
	CU_ASSERT_EQUAL(p->external_id_case,
			SESSIONWIRE__V1__SESSION__EXTERNAL_ID_EXTERNAL_ID_TEXT);
	CU_ASSERT_EQUAL(p->duration_case,
			SESSIONWIRE__V1__SESSION__DURATION_DURATION_INT);
	CU_ASSERT_EQUAL(p->billing->input_cost_case,
			SESSIONWIRE__V1__BILLING__INPUT_COST_INPUT_COST_DEC);
	CU_ASSERT_EQUAL(p->billing->output_cost_case,
			SESSIONWIRE__V1__BILLING__OUTPUT_COST_OUTPUT_COST_DEC);
	CU_ASSERT_EQUAL(p->billing->total_cost_case, 0);
	CU_ASSERT_EQUAL(p->usage->prompt_tokens_case,
			SESSIONWIRE__V1__USAGE__PROMPT_TOKENS_PROMPT_TOKENS_INT);
	CU_ASSERT_EQUAL(p->usage->total_tokens_case, 0);
	CU_ASSERT_EQUAL(p->workspace_id_case,
			SESSIONWIRE__V1__SESSION__WORKSPACE_ID_WORKSPACE_ID_ULID);
	CU_ASSERT_EQUAL(p->workspace_id_ulid.len, 16);
	CU_ASSERT_EQUAL(p->updated_at_case, 0);
	CU_ASSERT_TRUE(p->has_flags && p->flags == 8);
	sessionwire__v1__session__free_unpacked(p, NULL);

	/* plain switches: totals sent, updated_at absolute, no flags */
	p = encode_unpacked(&u, SW_PB_PLAIN_TOTAL | SW_PB_PLAIN_DATE_DELTA |
				       SW_PB_PLAIN_ULID | SW_PB_PLAIN_DEC);
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	CU_ASSERT_EQUAL(p->billing->total_cost_case,
			SESSIONWIRE__V1__BILLING__TOTAL_COST_TOTAL_COST_DOUBLE);
	CU_ASSERT_EQUAL(p->usage->total_tokens_case,
			SESSIONWIRE__V1__USAGE__TOTAL_TOKENS_TOTAL_TOKENS_INT);
	CU_ASSERT_EQUAL(p->updated_at_case,
			SESSIONWIRE__V1__SESSION__UPDATED_AT_UPDATED_AT_MS);
	CU_ASSERT_EQUAL(p->workspace_id_case,
			SESSIONWIRE__V1__SESSION__WORKSPACE_ID_WORKSPACE_ID_TEXT);
	CU_ASSERT_FALSE(p->has_flags);
	sessionwire__v1__session__free_unpacked(p, NULL);

	make_case(9, &u); /* ULIDs with started_at's time: 10 bytes */
	p = encode_unpacked(&u, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	CU_ASSERT_EQUAL(p->id_case, SESSIONWIRE__V1__SESSION__ID_ID_ULID);
	CU_ASSERT_EQUAL(p->id_ulid.len, 10);
	CU_ASSERT_EQUAL(p->workspace_id_ulid.len, 16);
	CU_ASSERT_EQUAL_FATAL(p->n_contact_ids_ulid, 2);
	CU_ASSERT_EQUAL(p->contact_ids_ulid[0].len, 10);
	CU_ASSERT_EQUAL(p->contact_ids_ulid[1].len, 16);
	sessionwire__v1__session__free_unpacked(p, NULL);

	make_case(10, &u); /* UUIDs */
	p = encode_unpacked(&u, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	CU_ASSERT_EQUAL(p->id_case, SESSIONWIRE__V1__SESSION__ID_ID_UUID);
	CU_ASSERT_EQUAL(p->project_id_case,
			SESSIONWIRE__V1__SESSION__PROJECT_ID_PROJECT_ID_UUID);
	CU_ASSERT_EQUAL(p->n_contact_ids_uuid, 2);
	sessionwire__v1__session__free_unpacked(p, NULL);

	make_case(11, &u); /* mixed contacts: all text */
	p = encode_unpacked(&u, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	CU_ASSERT_EQUAL(p->n_contact_ids_text, 3);
	CU_ASSERT_EQUAL(p->n_contact_ids_ulid + p->n_contact_ids_uuid, 0);
	CU_ASSERT_EQUAL(p->external_id_ulid.len, 16); /* no started_at */
	sessionwire__v1__session__free_unpacked(p, NULL);

	make_case(6, &u); /* flags only; -0 totals sent */
	p = encode_unpacked(&u, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	CU_ASSERT_TRUE(p->has_flags && p->flags == 7);
	CU_ASSERT_EQUAL(p->billing->total_cost_case,
			SESSIONWIRE__V1__BILLING__TOTAL_COST_TOTAL_COST_DOUBLE);
	CU_ASSERT_EQUAL(p->usage->total_tokens_case,
			SESSIONWIRE__V1__USAGE__TOTAL_TOKENS_TOTAL_TOKENS_INT);
	sessionwire__v1__session__free_unpacked(p, NULL);

	make_case(2, &u); /* -0 as a double; 0.1 + 0.2 total left out */
	p = encode_unpacked(&u, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	CU_ASSERT_EQUAL(p->duration_case,
			SESSIONWIRE__V1__SESSION__DURATION_DURATION_DOUBLE);
	CU_ASSERT_EQUAL(p->billing->total_cost_case, 0);
	sessionwire__v1__session__free_unpacked(p, NULL);

	make_case(7, &u); /* the delta would be longer than the date */
	p = encode_unpacked(&u, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	CU_ASSERT_EQUAL(p->updated_at_case,
			SESSIONWIRE__V1__SESSION__UPDATED_AT_UPDATED_AT_MS);
	sessionwire__v1__session__free_unpacked(p, NULL);

	make_case(13, &u); /* duration 0.5: no IS_END; delta 0 is shorter */
	p = encode_unpacked(&u, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	CU_ASSERT_EQUAL(p->duration_case,
			SESSIONWIRE__V1__SESSION__DURATION_DURATION_DEC);
	CU_ASSERT_EQUAL(p->updated_at_case,
			SESSIONWIRE__V1__SESSION__UPDATED_AT_UPDATED_AT_DELTA);
	CU_ASSERT_FALSE(p->has_flags);
	sessionwire__v1__session__free_unpacked(p, NULL);
}

/* The worst case of every field stays within SW_PB_MAX_SIZE. */
static void pb_worst_case_fits_sw_pb_max_size(void)
{
	static char big[6][100];
	static sw_str items[6];
	sw_update u;
	size_t len = 0, i, n;

	for (n = 0; n <= 90; n += 30) {
		for (i = 0; i < 6; i++) {
			memset(big[i], 'x', n);
			items[i] = (sw_str){ big[i], n };
		}
		sw_update_init(&u);
		sw_update_set_id(&u, big[0], n);
		sw_update_set_external_id(&u, big[1], n);
		sw_update_set_workspace_id(&u, big[2], n);
		sw_update_set_project_id(&u, big[3], n);
		sw_update_set_duration(&u, 0.1 + 0.2);
		sw_update_set_traces_count(&u, 1e300);
		sw_update_set_billing(&u, 1e300, 3e300, 1.5);
		sw_update_set_usage(&u, 5e-324, -1e-300, -0.0);
		sw_update_set_contact_ids(&u, items, 6);
		sw_update_set_tags(&u, items, 6);
		sw_update_set_started_at(&u, SW_DATE_MAX_MS);
		sw_update_set_updated_at(&u, SW_DATE_MIN_MS);
		CU_ASSERT_EQUAL_FATAL(sw_pb_encode(&u, NULL, 0, &len, NULL), SW_OK);
		CU_ASSERT_TRUE(len <= SW_PB_MAX_SIZE(n, 6, 6));
		CU_ASSERT_TRUE(len + 24 >= SW_PB_MAX_SIZE(n, 6, 6)); /* tight */
	}
}

/* ==== Number forms ==== */

static void pb_number_form_table(void)
{
	static const struct {
		double x;
		unsigned form, plain;
		int mode; /* dec only: 0 or 1; -1 don't care */
	} t[] = {
		{ 0, SW__PB_INT, 0, -1 },
		{ -0.0, SW__PB_DOUBLE, 0, -1 },
		{ 1358072, SW__PB_INT, 0, -1 },
		{ -1, SW__PB_INT, 0, -1 },
		{ 9007199254740992.0, SW__PB_INT, 0, -1 },
		{ 1e18, SW__PB_DOUBLE, 0, -1 },        /* 9-byte varint */
		{ 4611686018427387904.0, SW__PB_DOUBLE, 0, -1 },
		{ 9223372036854775808.0, SW__PB_DOUBLE, 0, -1 },
		{ 1e21, SW__PB_DOUBLE, 0, -1 },
		{ 5e-324, SW__PB_DOUBLE, 0, -1 },
		{ 1.7976931348623157e+308, SW__PB_DOUBLE, 0, -1 },
		{ 0.0004341, SW__PB_DEC, 0, 0 },
		{ 0.009, SW__PB_DEC, 0, 0 },
		{ 3598 * 1e-6, SW__PB_DEC, 0, 1 }, /* 0.0035979999999999996 */
		{ 1911 * 1e-5, SW__PB_DEC, 0, -1 },
		{ 123.456, SW__PB_DEC, 0, 0 },
		{ 1e-7, SW__PB_DEC, 0, -1 },
		{ 0.5, SW__PB_DEC, 0, 0 },
		{ 0.1, SW__PB_DEC, 0, 0 },
		{ 3.141592653589793, SW__PB_DOUBLE, 0, -1 }, /* m > 2^53? no: 8 bytes */
		{ 5, SW__PB_DEC, SW_PB_PLAIN_INT, 0 },
		{ 5, SW__PB_DOUBLE, SW_PB_PLAIN_INT | SW_PB_PLAIN_DEC, -1 },
		{ 0.5, SW__PB_DOUBLE, SW_PB_PLAIN_DEC, -1 },
	};
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		sw__pb_num n;
		double back = NAN;

		sw__pb_num_choose(t[i].x, t[i].plain, &n);
		if (n.form != t[i].form)
			fprintf(stderr, "number row %zu (%.17g): form %u\n", i,
				t[i].x, n.form);
		CU_ASSERT_EQUAL(n.form, t[i].form);
		if (n.form == SW__PB_DEC) {
			CU_ASSERT_TRUE(sw__pb_dec_value(n.v, &back));
			if (t[i].mode >= 0)
				CU_ASSERT_EQUAL((int)(n.v >> 5 & 1), t[i].mode);
		} else if (n.form == SW__PB_INT) {
			CU_ASSERT_TRUE(sw__pb_int_value(n.v, &back));
			CU_ASSERT_EQUAL(n.size, sw__pb_varint_len(n.v));
		} else {
			memcpy(&back, &n.v, 8);
			CU_ASSERT_EQUAL(n.size, 8);
		}
		CU_ASSERT_TRUE(same_double(back, t[i].x));
	}
}

/* Random finite doubles of every kind always come back exactly. */
static void pb_number_forms_are_exact_on_random_doubles(void)
{
	int i, n = tu_quick ? 20000 : 300000;
	unsigned counts[6] = { 0 };

	for (i = 0; i < n; i++) {
		double x, back = NAN;
		uint64_t bits = rng();
		sw__pb_num f;

		switch (i % 4) {
		case 0:
			memcpy(&x, &bits, 8);
			if (!isfinite(x))
				continue;
			break;
		case 1: /* k / 10^s */
			x = (double)(int64_t)(bits % 100000000) /
			    pow(10, (double)(rnd(12) + 1));
			break;
		case 2: /* k * 1e-s */
			x = (double)(bits % 1000000) * pow(10, -(double)(rnd(9) + 1));
			break;
		default:
			x = (double)(int64_t)bits / (double)(1u << rnd(20));
			break;
		}
		sw__pb_num_choose(x, 0, &f);
		counts[f.form - SW__PB_INT]++;
		if (f.form == SW__PB_DEC) {
			CU_ASSERT_TRUE_FATAL(sw__pb_dec_value(f.v, &back));
		} else if (f.form == SW__PB_INT) {
			CU_ASSERT_TRUE_FATAL(sw__pb_int_value(f.v, &back));
		} else {
			memcpy(&back, &f.v, 8);
		}
		CU_ASSERT_TRUE_FATAL(same_double(back, x));
		CU_ASSERT_TRUE_FATAL(f.size <= 8);
	}
	CU_ASSERT_TRUE(counts[0] > 0 && counts[1] > 0 && counts[2] > 0);
}

/* ==== The field table against protobuf-c's descriptor ==== */

static ProtobufCType form_type(unsigned form)
{
	switch (form) {
	case SW__PB_ULID:
	case SW__PB_UUID:
		return PROTOBUF_C_TYPE_BYTES;
	case SW__PB_TEXT:
		return PROTOBUF_C_TYPE_STRING;
	case SW__PB_INT:
	case SW__PB_MS:
	case SW__PB_DELTA:
		return PROTOBUF_C_TYPE_SINT64;
	case SW__PB_DEC:
		return PROTOBUF_C_TYPE_UINT64;
	case SW__PB_DOUBLE:
		return PROTOBUF_C_TYPE_DOUBLE;
	case SW__PB_FLAGS:
		return PROTOBUF_C_TYPE_UINT32;
	default:
		return PROTOBUF_C_TYPE_MESSAGE;
	}
}

static void check_table(const sw__pb_msg *m, const ProtobufCMessageDescriptor *d)
{
	unsigned i, j;

	CU_ASSERT_EQUAL_FATAL(m->n_fields, d->n_fields);
	for (i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *fd = &d->fields[i];
		const sw__pb_field *f = sw__pb_field_by_num(m, fd->id);

		CU_ASSERT_PTR_NOT_NULL_FATAL(f);
		CU_ASSERT_EQUAL(f->num, fd->id);
		CU_ASSERT_STRING_EQUAL(f->name, fd->name);
		CU_ASSERT_EQUAL(form_type(f->form), fd->type);
		CU_ASSERT_EQUAL(f->repeated,
				fd->label == PROTOBUF_C_LABEL_REPEATED);
		CU_ASSERT_EQUAL(sw__pb_form_wt(f->form),
				fd->type == PROTOBUF_C_TYPE_DOUBLE ? 1u
				: fd->type == PROTOBUF_C_TYPE_BYTES ||
				  fd->type == PROTOBUF_C_TYPE_STRING ||
				  fd->type == PROTOBUF_C_TYPE_MESSAGE ? 2u : 0u);
		if (fd->type == PROTOBUF_C_TYPE_MESSAGE)
			CU_ASSERT_PTR_EQUAL(fd->descriptor,
					    f->slot == 4
					    ? &sessionwire__v1__billing__descriptor
					    : &sessionwire__v1__usage__descriptor);
		/* one oneof in the schema <=> one value slot in the table */
		for (j = 0; j < d->n_fields; j++) {
			const ProtobufCFieldDescriptor *gd = &d->fields[j];
			const sw__pb_field *g = sw__pb_field_by_num(m, gd->id);
			bool same_oneof = (fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
					  (gd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
					  fd->quantifier_offset ==
						  gd->quantifier_offset;

			if (i == j || f->repeated || g->repeated)
				continue;
			CU_ASSERT_EQUAL(same_oneof, f->slot == g->slot);
		}
	}
}

static void pb_field_table_matches_protobuf_c_descriptor(void)
{
	check_table(&sw__pb_session, &sessionwire__v1__session__descriptor);
	check_table(&sw__pb_billing, &sessionwire__v1__billing__descriptor);
	check_table(&sw__pb_usage, &sessionwire__v1__usage__descriptor);
	/* the Flag enum */
	CU_ASSERT_EQUAL(SESSIONWIRE__V1__FLAG__FLAG_CONTACT_IDS_EMPTY,
			SW__PB_FLAG_CONTACT_IDS_EMPTY);
	CU_ASSERT_EQUAL(SESSIONWIRE__V1__FLAG__FLAG_TAGS_EMPTY,
			SW__PB_FLAG_TAGS_EMPTY);
	CU_ASSERT_EQUAL(SESSIONWIRE__V1__FLAG__FLAG_PROJECT_ID_NULL,
			SW__PB_FLAG_PROJECT_ID_NULL);
	CU_ASSERT_EQUAL(SESSIONWIRE__V1__FLAG__FLAG_UPDATED_AT_IS_END,
			SW__PB_FLAG_UPDATED_AT_IS_END);
	CU_ASSERT_EQUAL(sessionwire__v1__flag__descriptor.n_values, 5);
}

/* ==== protobuf-c as the reference ==== */

/* Storage for the text a reference conversion makes. */
typedef struct ref_store {
	char ids[4][40];
	char contacts[64][40];
	sw_str contact_strs[64];
	sw_str tag_strs[64];
} ref_store;

/* Independent of pb_compact.c: the value of a *_dec code. */
static double ref_dec(uint64_t code, bool *ok)
{
	static const double p10[] = { 1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7,
				      1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14,
				      1e15, 1e16, 1e17, 1e18, 1e19, 1e20,
				      1e21, 1e22 };
	static const double n10[] = { 1, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6,
				      1e-7, 1e-8, 1e-9, 1e-10, 1e-11, 1e-12,
				      1e-13, 1e-14, 1e-15, 1e-16, 1e-17,
				      1e-18, 1e-19, 1e-20, 1e-21, 1e-22 };
	unsigned s = (unsigned)(code & 31);
	uint64_t zz = code >> 6;
	int64_t m = (int64_t)(zz >> 1) * ((zz & 1) ? -1 : 1) - (int64_t)(zz & 1);

	*ok = s >= 1 && s <= 22 && llabs(m) <= (1ll << 53);
	if (!*ok)
		return 0;
	return (code & 32) ? (double)m * n10[s] : (double)m / p10[s];
}

/* The text of an id in some form (16 or 10 bytes, or text). */
static sw_str ref_id(int kind, const ProtobufCBinaryData *b, const char *text,
		     int64_t started, char *out)
{
	uint8_t raw[16];
	int i;

	if (kind == 0) { /* ulid */
		if (b->len == 10) {
			for (i = 0; i < 6; i++)
				raw[i] = (uint8_t)((uint64_t)started >> (40 - 8 * i));
			memcpy(raw + 6, b->data, 10);
		} else {
			memcpy(raw, b->data, 16);
		}
		sw_ulid_format(raw, out);
		return (sw_str){ out, 26 };
	}
	if (kind == 1) {
		sw_uuid_format(b->data, out);
		return (sw_str){ out, 36 };
	}
	return (sw_str){ text, strlen(text) };
}

static void ref_trio(int in_case, double in_d, int64_t in_i, uint64_t in_u,
		     double *out)
{
	bool ok = true;

	if (in_case == 0)
		*out = (double)in_i;
	else if (in_case == 1)
		*out = ref_dec(in_u, &ok);
	else
		*out = in_d;
	CU_ASSERT_TRUE(ok);
}

/* Converts a protobuf-c Session to an sw_update (the reference decoder);
 * strings point into p or rs. */
static void ref_from_pbc(const PbSession *p, ref_store *rs, sw_update *u)
{
	int64_t st = p->has_started_at ? p->started_at : 0;
	size_t i;
	bool ok = true;

	sw_update_init(u);
	if (p->has_started_at)
		sw_update_set_started_at(u, p->started_at);
#define ID(field, FIELD, setter, k)                                           \
	switch (p->field##_case) {                                            \
	case SESSIONWIRE__V1__SESSION__##FIELD##_##FIELD##_ULID:              \
		u->field = ref_id(0, &p->field##_ulid, NULL, st, rs->ids[k]); \
		u->has |= setter;                                             \
		break;                                                        \
	case SESSIONWIRE__V1__SESSION__##FIELD##_##FIELD##_UUID:              \
		u->field = ref_id(1, &p->field##_uuid, NULL, st, rs->ids[k]); \
		u->has |= setter;                                             \
		break;                                                        \
	case SESSIONWIRE__V1__SESSION__##FIELD##_##FIELD##_TEXT:              \
		u->field = ref_id(2, NULL, p->field##_text, st, rs->ids[k]);  \
		u->has |= setter;                                             \
		break;                                                        \
	default:                                                              \
		break;                                                        \
	}
	ID(id, ID, SW_F_ID, 0)
	ID(external_id, EXTERNAL_ID, SW_F_EXTERNAL_ID, 1)
	ID(workspace_id, WORKSPACE_ID, SW_F_WORKSPACE_ID, 2)
	ID(project_id, PROJECT_ID, SW_F_PROJECT_ID, 3)
#undef ID
#define NUM(field, FIELD, bit)                                                \
	switch (p->field##_case) {                                            \
	case SESSIONWIRE__V1__SESSION__##FIELD##_##FIELD##_INT:               \
		u->field = (double)p->field##_int;                            \
		u->has |= bit;                                                \
		break;                                                        \
	case SESSIONWIRE__V1__SESSION__##FIELD##_##FIELD##_DEC:               \
		u->field = ref_dec(p->field##_dec, &ok);                      \
		CU_ASSERT_TRUE(ok);                                           \
		u->has |= bit;                                                \
		break;                                                        \
	case SESSIONWIRE__V1__SESSION__##FIELD##_##FIELD##_DOUBLE:            \
		u->field = p->field##_double;                                 \
		u->has |= bit;                                                \
		break;                                                        \
	default:                                                              \
		break;                                                        \
	}
	NUM(duration, DURATION, SW_F_DURATION)
	NUM(traces_count, TRACES_COUNT, SW_F_TRACES_COUNT)
#undef NUM
	if (p->billing != NULL) {
		const PbBilling *b = p->billing;

		ref_trio(b->input_cost_case - 1, b->input_cost_double,
			 b->input_cost_int, b->input_cost_dec, &u->billing[0]);
		ref_trio(b->output_cost_case - 4, b->output_cost_double,
			 b->output_cost_int, b->output_cost_dec, &u->billing[1]);
		if (b->total_cost_case)
			ref_trio(b->total_cost_case - 7, b->total_cost_double,
				 b->total_cost_int, b->total_cost_dec,
				 &u->billing[2]);
		else
			u->billing[2] = u->billing[0] + u->billing[1];
		u->has |= SW_F_BILLING;
	}
	if (p->usage != NULL) {
		const PbUsage *b = p->usage;

		ref_trio(b->prompt_tokens_case - 1, b->prompt_tokens_double,
			 b->prompt_tokens_int, b->prompt_tokens_dec, &u->usage[0]);
		ref_trio(b->completion_tokens_case - 4,
			 b->completion_tokens_double, b->completion_tokens_int,
			 b->completion_tokens_dec, &u->usage[1]);
		if (b->total_tokens_case)
			ref_trio(b->total_tokens_case - 7,
				 b->total_tokens_double, b->total_tokens_int,
				 b->total_tokens_dec, &u->usage[2]);
		else
			u->usage[2] = u->usage[0] + u->usage[1];
		u->has |= SW_F_USAGE;
	}
	for (i = 0; i < p->n_contact_ids_ulid && i < 64; i++)
		rs->contact_strs[i] = ref_id(0, &p->contact_ids_ulid[i], NULL,
					     st, rs->contacts[i]);
	for (i = 0; i < p->n_contact_ids_uuid && i < 64; i++)
		rs->contact_strs[i] = ref_id(1, &p->contact_ids_uuid[i], NULL,
					     st, rs->contacts[i]);
	for (i = 0; i < p->n_contact_ids_text && i < 64; i++)
		rs->contact_strs[i] = ref_id(2, NULL, p->contact_ids_text[i],
					     st, rs->contacts[i]);
	i = p->n_contact_ids_ulid + p->n_contact_ids_uuid + p->n_contact_ids_text;
	if (i || (p->has_flags && (p->flags & 1)))
		sw_update_set_contact_ids(u, rs->contact_strs, i);
	for (i = 0; i < p->n_tags && i < 64; i++)
		rs->tag_strs[i] = (sw_str){ p->tags[i], strlen(p->tags[i]) };
	if (p->n_tags || (p->has_flags && (p->flags & 2)))
		sw_update_set_tags(u, rs->tag_strs, p->n_tags);
	if (p->has_flags && (p->flags & 4))
		sw_update_set_project_id_null(u);
	if (p->has_flags && (p->flags & 8))
		sw_update_set_updated_at(u, st + (int64_t)u->duration);
	if (p->updated_at_case == SESSIONWIRE__V1__SESSION__UPDATED_AT_UPDATED_AT_MS)
		sw_update_set_updated_at(u, p->updated_at_ms);
	if (p->updated_at_case ==
	    SESSIONWIRE__V1__SESSION__UPDATED_AT_UPDATED_AT_DELTA)
		sw_update_set_updated_at(u, st + p->updated_at_delta);
}

/* ==== Random updates ==== */

typedef struct rnd_store {
	char text[40][80];
	int n_text;
	sw_str contacts[6];
	sw_str tags[5];
} rnd_store;

/* A random valid UTF-8 string without U+0000 (protobuf-c strings are
 * NUL-terminated). */
static sw_str rnd_text(rnd_store *s)
{
	static const char *const pieces[] = { "a", "Z", "0", "-", " ", "\"",
					      "\\", "\x7f", "\xc3\xa9",
					      "\xe2\x82\xac", "\xe2\x80\xa8",
					      "\xf0\x9f\x98\x80", "\n" };
	char *p = s->text[s->n_text++ % 40];
	size_t n = 0, k, len = rnd(12);

	for (k = 0; k < len; k++) {
		const char *q = pieces[rnd(sizeof(pieces) / sizeof(pieces[0]))];
		size_t m = strlen(q);

		memcpy(p + n, q, m);
		n += m;
	}
	p[n] = '\0';
	return (sw_str){ p, n };
}

/* A random id: ULID (maybe with time t), UUID or text. */
static sw_str rnd_id(rnd_store *s, bool has_t, int64_t t)
{
	char *p = s->text[s->n_text++ % 40];
	uint8_t raw[16];
	uint64_t a = rng(), b = rng();
	int k;

	for (k = 0; k < 8; k++) {
		raw[k] = (uint8_t)(a >> (8 * k));
		raw[8 + k] = (uint8_t)(b >> (8 * k));
	}
	switch (rnd(5)) {
	case 0:
		if (has_t && t >= 0 && t < ((int64_t)1 << 48))
			for (k = 0; k < 6; k++)
				raw[k] = (uint8_t)((uint64_t)t >> (40 - 8 * k));
		/* fall through */
	case 1:
		sw_ulid_format(raw, p);
		p[26] = '\0';
		return (sw_str){ p, 26 };
	case 2:
		sw_uuid_format(raw, p);
		p[36] = '\0';
		return (sw_str){ p, 36 };
	default:
		return rnd_text(s);
	}
}

static double rnd_num(void)
{
	static const double special[] = {
		0, -0.0, 1, -1, 0.1 + 0.2, 5e-324, 1.7976931348623157e+308,
		1e21, 9223372036854775808.0, -9223372036854775808.0,
		9007199254740992.0, 9007199254740993.0, 0.0004341, 0.009,
		3598 * 1e-6, 1911 * 1e-5, 1e-7, 1.5e-7, 123.456, 1358072
	};
	uint64_t bits;
	double x;

	switch (rnd(5)) {
	case 0:
		return special[rnd(sizeof(special) / sizeof(special[0]))];
	case 1:
		return (double)(int64_t)(rng() % 10000000) - 5000000;
	case 2:
		return (double)rnd(100000) * pow(10, -(double)(rnd(8) + 1));
	case 3:
		return (double)rnd(100000) / pow(10, (double)(rnd(8) + 1));
	default:
		do {
			bits = rng();
			memcpy(&x, &bits, 8);
		} while (!isfinite(x));
		return x;
	}
}

static int64_t rnd_date(void)
{
	switch (rnd(3)) {
	case 0:
		return 1700000000000 + (int64_t)(rng() % 100000000000);
	case 1:
		return SW_DATE_MIN_MS +
		       (int64_t)(rng() % (uint64_t)(SW_DATE_MAX_MS -
						    SW_DATE_MIN_MS + 1));
	default:
		return rnd(2) ? SW_DATE_MIN_MS : SW_DATE_MAX_MS;
	}
}

/* A random valid update. */
static void rnd_update(sw_update *u, rnd_store *s)
{
	int64_t t = rnd_date();
	bool has_t = rnd(10) < 7;
	size_t i, n;
	int kind;

	s->n_text = 0;
	sw_update_init(u);
	if (has_t)
		sw_update_set_started_at(u, t);
	if (rnd(2)) {
		sw_str x = rnd_id(s, has_t, t);

		sw_update_set_id(u, x.ptr, x.len);
	}
	if (rnd(2)) {
		sw_str x = rnd_id(s, has_t, t);

		sw_update_set_external_id(u, x.ptr, x.len);
	}
	if (rnd(2)) {
		sw_str x = rnd_id(s, has_t, t);

		sw_update_set_workspace_id(u, x.ptr, x.len);
	}
	if (rnd(3) == 0) {
		sw_update_set_project_id_null(u);
	} else if (rnd(2)) {
		sw_str x = rnd_id(s, has_t, t);

		sw_update_set_project_id(u, x.ptr, x.len);
	}
	if (rnd(3)) {
		if (rnd(2))
			sw_update_set_duration(u, (double)(int64_t)(rng() % 10000000));
		else
			sw_update_set_duration(u, rnd_num());
	}
	if (rnd(2))
		sw_update_set_traces_count(u, rnd_num());
	if (rnd(2)) {
		double a = rnd_num(), b = rnd_num();

		sw_update_set_billing(u, a, b,
				      rnd(2) && isfinite(a + b) ? a + b : rnd_num());
	}
	if (rnd(2)) {
		double a = rnd_num(), b = rnd_num();

		sw_update_set_usage(u, a, b,
				    rnd(2) && isfinite(a + b) ? a + b : rnd_num());
	}
	if (rnd(2)) {
		n = rnd(6);
		kind = (int)rnd(4);
		for (i = 0; i < n; i++) {
			sw_str x = rnd_id(s, has_t, t);

			if (kind < 3) { /* same kind for all, mostly */
				char *p = s->text[s->n_text++ % 40];
				uint8_t raw[16];
				int k;

				for (k = 0; k < 16; k++)
					raw[k] = (uint8_t)rng();
				if (kind == 0) {
					sw_ulid_format(raw, p);
					x = (sw_str){ p, 26 };
				} else if (kind == 1) {
					sw_uuid_format(raw, p);
					x = (sw_str){ p, 36 };
				}
			}
			s->contacts[i] = x;
		}
		sw_update_set_contact_ids(u, s->contacts, n);
	}
	if (rnd(2)) {
		n = rnd(5);
		for (i = 0; i < n; i++)
			s->tags[i] = rnd_text(s);
		sw_update_set_tags(u, s->tags, n);
	}
	if (rnd(3)) {
		int64_t v = rnd_date();

		if (has_t && rnd(2)) { /* near started_at, maybe its end */
			v = t + (int64_t)(rng() % 5000000);
			if (u->has & SW_F_DURATION && rnd(2) &&
			    u->duration == floor(u->duration) &&
			    fabs(u->duration) < 1e12)
				v = t + (int64_t)u->duration;
			if (v > SW_DATE_MAX_MS || v < SW_DATE_MIN_MS)
				v = t;
		}
		sw_update_set_updated_at(u, v);
	}
}

/* Our bytes, unpacked by protobuf-c, are the same update; packed again
 * by protobuf-c, they are the same bytes. */
static void pb_encoder_output_unpacks_with_protobuf_c(void)
{
	int i, n = tu_quick ? 100 : 500;

	for (i = 0; i < n + N_CASES; i++) {
		static rnd_store s;
		static ref_store rs;
		sw_update u, ref;
		size_t len = 0, len2;
		uint8_t *buf, *buf2;
		PbSession *p;

		if (i < N_CASES) {
			make_case(i, &u);
			if (i == 5)
				continue; /* U+0000 in strings: not for protobuf-c */
		} else {
			rnd_update(&u, &s);
		}
		buf = encode(&u, i % 7 == 3 ? 127 : 0, &len);
		CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
		p = pbc_unpack(buf, len);
		CU_ASSERT_PTR_NOT_NULL_FATAL(p);
		ref_from_pbc(p, &rs, &ref);
		if (!sw_update_equal(&u, &ref))
			fprintf(stderr, "protobuf-c reads case %d differently\n", i);
		CU_ASSERT_TRUE(sw_update_equal(&u, &ref));
		len2 = sessionwire__v1__session__get_packed_size(p);
		CU_ASSERT_EQUAL(len2, len);
		buf2 = malloc(len2 + 1);
		CU_ASSERT_EQUAL(sessionwire__v1__session__pack(p, buf2), len2);
		CU_ASSERT_TRUE(len2 == len && memcmp(buf, buf2, len) == 0);
		free(buf2);
		sessionwire__v1__session__free_unpacked(p, NULL);
		free(buf);
	}
}

/* Fills a protobuf-c id oneof with a random valid form of s. */
static int pbc_id_form(const sw_str *s, bool short_ok, int64_t t,
		       ProtobufCBinaryData *bin, uint8_t raw[16])
{
	sw_id_kind k = sw_id_parse(s->ptr, s->len, raw);

	if (k != SW_ID_TEXT && rnd(4) == 0)
		return 2; /* the text form of a ULID/UUID is valid too */
	if (k == SW_ID_ULID) {
		bin->data = raw;
		bin->len = 16;
		if (short_ok && sw_ulid_time(raw) == (uint64_t)t && rnd(2)) {
			bin->data = raw + 6;
			bin->len = 10;
		}
		return 0;
	}
	if (k == SW_ID_UUID) {
		bin->data = raw;
		bin->len = 16;
		return 1;
	}
	return 2;
}

/* Picks a random valid number form of x: 0 int, 1 dec, 2 double. */
static int pbc_num_form(double x, int64_t *i, uint64_t *d)
{
	sw__pb_num n;

	if (x == floor(x) && fabs(x) < 9007199254740992.0 &&
	    !same_double(x, -0.0) && rnd(2)) {
		*i = (int64_t)x;
		return 0;
	}
	sw__pb_num_choose(x, SW_PB_PLAIN_INT, &n);
	if (n.form == SW__PB_DEC && rnd(2)) {
		*d = n.v;
		return 1;
	}
	return 2;
}

/* Storage of one protobuf-c Session built by hand. */
typedef struct pbc_build {
	PbSession p;
	PbBilling b;
	PbUsage us;
	uint8_t raw[4][16];
	uint8_t craw[6][16];
	ProtobufCBinaryData cbin[6];
	char *ctext[6];
	char *tags[5];
	char idtext[4][80];
	char ctextbuf[6][80];
} pbc_build;

static char *cstr(const sw_str *s, char *buf)
{
	memcpy(buf, s->ptr, s->len);
	buf[s->len] = '\0';
	return buf;
}

/* Builds a protobuf-c Session for u with random valid forms. */
static void pbc_from_update(const sw_update *u, pbc_build *x)
{
	static const PbSession init = SESSIONWIRE__V1__SESSION__INIT;
	static const PbBilling binit = SESSIONWIRE__V1__BILLING__INIT;
	static const PbUsage uinit = SESSIONWIRE__V1__USAGE__INIT;
	PbSession *p = &x->p;
	bool short_ok = (u->has & SW_F_STARTED_AT) && u->started_at >= 0 &&
			u->started_at < ((int64_t)1 << 48);
	int64_t t = u->started_at;
	uint32_t flags = 0;
	size_t i;
	int f, ulids = 0, uuids = 0;
	int64_t iv = 0;
	uint64_t dv = 0;

	*p = init;
	x->b = binit;
	x->us = uinit;
#define ID(field, FIELD, bit, k)                                              \
	if (u->has & bit && !(bit == SW_F_PROJECT_ID && u->project_id_null)) { \
		f = pbc_id_form(&u->field, short_ok, t, &p->field##_ulid,     \
				x->raw[k]);                                   \
		if (f == 1)                                                   \
			p->field##_uuid = p->field##_ulid;                    \
		if (f == 2)                                                   \
			p->field##_text = cstr(&u->field, x->idtext[k]);      \
		p->field##_case = f == 0 ? SESSIONWIRE__V1__SESSION__##FIELD##_##FIELD##_ULID \
				  : f == 1 ? SESSIONWIRE__V1__SESSION__##FIELD##_##FIELD##_UUID \
					   : SESSIONWIRE__V1__SESSION__##FIELD##_##FIELD##_TEXT; \
	}
	ID(id, ID, SW_F_ID, 0)
	ID(external_id, EXTERNAL_ID, SW_F_EXTERNAL_ID, 1)
	ID(workspace_id, WORKSPACE_ID, SW_F_WORKSPACE_ID, 2)
	ID(project_id, PROJECT_ID, SW_F_PROJECT_ID, 3)
#undef ID
	if (u->has & SW_F_PROJECT_ID && u->project_id_null)
		flags |= 4;
#define NUM(field, FIELD, bit)                                                \
	if (u->has & bit) {                                                   \
		f = pbc_num_form(u->field, &iv, &dv);                         \
		p->field##_case = f == 0 ? SESSIONWIRE__V1__SESSION__##FIELD##_##FIELD##_INT \
				  : f == 1 ? SESSIONWIRE__V1__SESSION__##FIELD##_##FIELD##_DEC \
					   : SESSIONWIRE__V1__SESSION__##FIELD##_##FIELD##_DOUBLE; \
		if (f == 0)                                                   \
			p->field##_int = iv;                                  \
		else if (f == 1)                                              \
			p->field##_dec = dv;                                  \
		else                                                          \
			p->field##_double = u->field;                         \
	}
	NUM(duration, DURATION, SW_F_DURATION)
	NUM(traces_count, TRACES_COUNT, SW_F_TRACES_COUNT)
#undef NUM
#define TRIO(obj, arr, a, b, c)                                          \
	f = pbc_num_form(u->arr[0], &iv, &dv);                                \
	if (f == 0) { obj.a##_int = iv; } else if (f == 1) { obj.a##_dec = dv; } \
	else { obj.a##_double = u->arr[0]; }                                  \
	obj.a##_case = (__typeof__(obj.a##_case))(1 + f);                     \
	f = pbc_num_form(u->arr[1], &iv, &dv);                                \
	if (f == 0) { obj.b##_int = iv; } else if (f == 1) { obj.b##_dec = dv; } \
	else { obj.b##_double = u->arr[1]; }                                  \
	obj.b##_case = (__typeof__(obj.b##_case))(4 + f);                     \
	if (!same_double(u->arr[0] + u->arr[1], u->arr[2]) || rnd(2)) {      \
		f = pbc_num_form(u->arr[2], &iv, &dv);                        \
		if (f == 0) { obj.c##_int = iv; } else if (f == 1) { obj.c##_dec = dv; } \
		else { obj.c##_double = u->arr[2]; }                          \
		obj.c##_case = (__typeof__(obj.c##_case))(7 + f);             \
	}
	if (u->has & SW_F_BILLING) {
		TRIO(x->b, billing, input_cost, output_cost, total_cost)
		p->billing = &x->b;
	}
	if (u->has & SW_F_USAGE) {
		TRIO(x->us, usage, prompt_tokens, completion_tokens,
		     total_tokens)
		p->usage = &x->us;
	}
#undef TRIO
	if (u->has & SW_F_CONTACT_IDS) {
		if (u->n_contact_ids == 0)
			flags |= 1;
		for (i = 0; i < u->n_contact_ids; i++) {
			sw_id_kind k = sw_id_parse(u->contact_ids[i].ptr,
						   u->contact_ids[i].len,
						   x->craw[i]);

			ulids += k == SW_ID_ULID;
			uuids += k == SW_ID_UUID;
		}
		f = rnd(3) == 0 ? 2
		    : (size_t)ulids == u->n_contact_ids ? 0
		    : (size_t)uuids == u->n_contact_ids ? 1 : 2;
		for (i = 0; i < u->n_contact_ids; i++) {
			x->cbin[i].data = x->craw[i];
			x->cbin[i].len = 16;
			if (f == 0 && short_ok &&
			    sw_ulid_time(x->craw[i]) == (uint64_t)t && rnd(2)) {
				x->cbin[i].data = x->craw[i] + 6;
				x->cbin[i].len = 10;
			}
			x->ctext[i] = cstr(&u->contact_ids[i], x->ctextbuf[i]);
		}
		if (f == 0) {
			p->n_contact_ids_ulid = u->n_contact_ids;
			p->contact_ids_ulid = x->cbin;
		} else if (f == 1) {
			p->n_contact_ids_uuid = u->n_contact_ids;
			p->contact_ids_uuid = x->cbin;
		} else {
			p->n_contact_ids_text = u->n_contact_ids;
			p->contact_ids_text = x->ctext;
		}
	}
	if (u->has & SW_F_TAGS) {
		if (u->n_tags == 0)
			flags |= 2;
		for (i = 0; i < u->n_tags; i++)
			x->tags[i] = (char *)(uintptr_t)u->tags[i].ptr; /* NUL-terminated */
		p->n_tags = u->n_tags;
		p->tags = x->tags;
	}
	if (u->has & SW_F_STARTED_AT) {
		p->has_started_at = 1;
		p->started_at = t;
	}
	if (u->has & SW_F_UPDATED_AT) {
		double d = u->duration;

		if (u->has & SW_F_STARTED_AT && u->has & SW_F_DURATION &&
		    d == floor(d) && fabs(d) < 9007199254740992.0 &&
		    u->updated_at == t + (int64_t)d && rnd(2)) {
			flags |= 8;
		} else if (u->has & SW_F_STARTED_AT && rnd(2)) {
			p->updated_at_case =
				SESSIONWIRE__V1__SESSION__UPDATED_AT_UPDATED_AT_DELTA;
			p->updated_at_delta = u->updated_at - t;
		} else {
			p->updated_at_case =
				SESSIONWIRE__V1__SESSION__UPDATED_AT_UPDATED_AT_MS;
			p->updated_at_ms = u->updated_at;
		}
	}
	if (flags) {
		p->has_flags = 1;
		p->flags = flags;
	}
}

/* protobuf-c's bytes, in random valid forms, decode to the same update. */
static void pb_decoder_reads_protobuf_c_output(void)
{
	int i, n = tu_quick ? 100 : 500;

	for (i = 0; i < n; i++) {
		static rnd_store s;
		static pbc_build x;
		sw_update u, *back = NULL;
		size_t len;
		uint8_t *buf;
		sw_error e;
		sw_status st;

		rnd_update(&u, &s);
		pbc_from_update(&u, &x);
		len = sessionwire__v1__session__get_packed_size(&x.p);
		buf = malloc(len + 1);
		CU_ASSERT_EQUAL_FATAL(sessionwire__v1__session__pack(&x.p, buf),
				      len);
		sw_error_clear(&e);
		st = sw_pb_decode(buf, len, NULL, &back, &e);
		if (st != SW_OK)
			fprintf(stderr, "decode of protobuf-c bytes %d: %s at %zu %s: %s\n",
				i, sw_errname(st), e.offset, e.path, e.message);
		CU_ASSERT_EQUAL(st, SW_OK);
		if (st == SW_OK) {
			if (!sw_update_equal(&u, back))
				fprintf(stderr, "protobuf-c bytes %d decode differently\n", i);
			CU_ASSERT_TRUE(sw_update_equal(&u, back));
		}
		sw_update_free(back);
		free(buf);
	}
}

/* Random round trips through our own encoder and decoder, every plain
 * switch. */
static void pb_random_updates_round_trip(void)
{
	int i, n = tu_quick ? 200 : 2000;

	for (i = 0; i < n; i++) {
		static rnd_store s;
		sw_update u;

		rnd_update(&u, &s);
		round_trip(&u, plains[i % (sizeof(plains) / sizeof(plains[0]))]);
	}
}

/* ==== Encoder: buffers, heap ==== */

static void pb_encode_into_small_buffers_fails_cleanly(void)
{
	sw_update u;
	uint8_t want[512], buf[512 + 32];
	size_t need = 0, got, cap, k;
	sw_error e;
	int c;

	for (c = 0; c < N_CASES; c++) {
		make_case(c, &u);
		CU_ASSERT_EQUAL_FATAL(sw_pb_encode(&u, NULL, 0, &need, NULL), SW_OK);
		CU_ASSERT_TRUE_FATAL(need <= sizeof(want));
		CU_ASSERT_EQUAL_FATAL(sw_pb_encode(&u, want, need, &got, NULL), SW_OK);
		CU_ASSERT_EQUAL(got, need);
		for (cap = 0; cap < need; cap++) {
			memset(buf, 0xA5, sizeof(buf));
			sw_error_clear(&e);
			got = 12345;
			CU_ASSERT_EQUAL(sw_pb_encode(&u, buf, cap, &got, &e),
					SW_EBUFSZ);
			CU_ASSERT_EQUAL(e.code, SW_EBUFSZ);
			CU_ASSERT_EQUAL(got, need); /* says what it needs */
			for (k = cap; k < sizeof(buf); k++)
				if (buf[k] != 0xA5)
					break;
			CU_ASSERT_EQUAL(k, sizeof(buf)); /* nothing past cap */
		}
		memset(buf, 0xA5, sizeof(buf));
		CU_ASSERT_EQUAL(sw_pb_encode(&u, buf, need, &got, NULL), SW_OK);
		CU_ASSERT_EQUAL(memcmp(buf, want, need), 0);
		CU_ASSERT_EQUAL(buf[need], 0xA5);
	}
}

static void pb_encode_fits_the_compile_time_bound(void)
{
	static uint8_t buf[SW_PB_MAX_SIZE(80, 6, 5)];
	int i, n = tu_quick ? 200 : 3000;

	for (i = 0; i < n; i++) {
		static rnd_store s;
		sw_update u;
		size_t len;

		rnd_update(&u, &s);
		CU_ASSERT_EQUAL_FATAL(sw_pb_encode_ex(&u, plains[i % 10], buf,
						      sizeof(buf), &len, NULL),
				      SW_OK);
	}
}

static void pb_encode_rejects_invalid_updates(void)
{
	static const sw_str bad_tags[] = { { "ok", 2 }, { "\xc3", 1 } };
	sw_update u;
	sw_error e;
	size_t len;
	uint8_t buf[64];

	sw_update_init(&u);
	sw_update_set_duration(&u, NAN);
	sw_error_clear(&e);
	CU_ASSERT_EQUAL(sw_pb_encode(&u, buf, sizeof(buf), &len, &e), SW_ERANGE);
	CU_ASSERT_STRING_EQUAL(e.path, "duration");
	sw_update_init(&u);
	sw_update_set_billing(&u, 1, INFINITY, 2);
	CU_ASSERT_EQUAL(sw_pb_encode(&u, buf, sizeof(buf), &len, NULL), SW_ERANGE);
	sw_update_init(&u);
	sw_update_set_tags(&u, bad_tags, 2);
	CU_ASSERT_EQUAL(sw_pb_encode(&u, buf, sizeof(buf), &len, NULL), SW_EUTF8);
	sw_update_init(&u);
	sw_update_set_updated_at(&u, SW_DATE_MAX_MS + 1);
	CU_ASSERT_EQUAL(sw_pb_encode(&u, buf, sizeof(buf), &len, NULL), SW_EDATE);
	sw_update_init(&u);
	CU_ASSERT_EQUAL(sw_pb_encode(&u, NULL, 5, &len, NULL), SW_EINVAL);
	CU_ASSERT_EQUAL(sw_pb_encode(&u, buf, 5, NULL, NULL), SW_EINVAL);
	CU_ASSERT_EQUAL(sw_pb_encode(&u, NULL, 0, &len, NULL), SW_OK);
	CU_ASSERT_EQUAL(len, 0);
}

/* The encoder's objects call nothing that allocates or prints. */
static void check_object_symbols(const char *obj)
{
	static const char *const allowed[] = {
		"sw_", "memcpy", "memset", "memcmp", "llround", "floor",
		"fabs", "__", "_GLOBAL_OFFSET_TABLE_", NULL
	};
	char exe[4096], cmd[8192], line[256];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	char *slash;
	FILE *f;
	int count = 0;

	CU_ASSERT_TRUE_FATAL(n > 0);
	exe[n] = '\0';
	slash = strrchr(exe, '/');
	CU_ASSERT_PTR_NOT_NULL_FATAL(slash);
	*slash = '\0';
	snprintf(cmd, sizeof(cmd), "nm -u '%s/codec/%s' 2>/dev/null", exe, obj);
	f = popen(cmd, "r");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	while (fgets(line, sizeof(line), f) != NULL) {
		char *sym = strrchr(line, ' ');
		int k;
		bool ok = false;

		sym = sym ? sym + 1 : line;
		sym[strcspn(sym, "\n")] = '\0';
		for (k = 0; allowed[k] != NULL; k++)
			ok = ok || strncmp(sym, allowed[k], strlen(allowed[k])) == 0;
		if (!ok)
			fprintf(stderr, "%s calls %s\n", obj, sym);
		CU_ASSERT_TRUE(ok);
		count++;
	}
	CU_ASSERT_EQUAL(pclose(f), 0);
	CU_ASSERT_TRUE(count > 0 || strcmp(obj, "id.o") == 0);
}

static void pb_encode_uses_no_heap(void)
{
	struct mallinfo2 before, after;
	uint8_t buf[1024];
	sw_update u;
	size_t len;
	int i, c, bad = 0;

	/* statically: no malloc/free/printf in the device objects */
	check_object_symbols("pb_encode.o");
	check_object_symbols("pb_compact.o");
	check_object_symbols("id.o");
	/* dynamically: the heap does not move while encoding */
	before = mallinfo2();
	for (i = 0; i < 50; i++)
		for (c = 0; c < N_CASES; c++) {
			make_case(c, &u);
			bad += sw_pb_encode_ex(&u, (unsigned)i & 127, buf,
					       sizeof(buf), &len, NULL) != SW_OK;
		}
	after = mallinfo2();
	CU_ASSERT_EQUAL(bad, 0); /* after mallinfo2: CUnit allocates */
	CU_ASSERT_EQUAL(before.uordblks, after.uordblks);
	CU_ASSERT_EQUAL(before.hblkhd, after.hblkhd);
	CU_ASSERT_EQUAL(before.arena, after.arena);
}

/* ==== Decoder: truncation, allocation, bad input ==== */

/* Offsets where a top-level field starts (test-side walker). */
static size_t field_starts(const uint8_t *b, size_t len, size_t *out)
{
	size_t pos = 0, n = 0, used;
	uint64_t tag, v;

	while (pos < len) {
		out[n++] = pos;
		if (sw__pb_varint_get(b + pos, len - pos, &tag, &used) != SW_OK)
			break;
		pos += used;
		if ((tag & 7) == 1) {
			pos += 8;
		} else {
			if (sw__pb_varint_get(b + pos, len - pos, &v, &used) != SW_OK)
				break;
			pos += used + ((tag & 7) == 2 ? v : 0);
		}
	}
	out[n++] = len;
	return n;
}

static void pb_decode_truncated_input_at_every_length(void)
{
	int c;

	for (c = 0; c < N_CASES; c++) {
		tu_failalloc fa = { -1, 0, 0 };
		sw_alloc a = tu_failalloc_hook(&fa);
		sw_parse_opts o = { .alloc = &a };
		size_t len = 0, cut, starts[128], ns, k;
		sw_update u;
		uint8_t *buf;

		make_case(c, &u);
		buf = encode(&u, SW_PB_PLAIN_ULID_TIME, &len);
		CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
		ns = field_starts(buf, len, starts);
		for (cut = 0; cut < len; cut++) {
			uint8_t *copy = malloc(cut + 1); /* exact size for ASan */
			sw_update *out = (sw_update *)&u;
			sw_error e;
			sw_status st;
			bool boundary = false;

			memcpy(copy, buf, cut);
			for (k = 0; k < ns; k++)
				boundary = boundary || starts[k] == cut;
			sw_error_clear(&e);
			st = sw_pb_decode(copy, cut, &o, &out, &e);
			if (boundary) {
				CU_ASSERT_EQUAL(st, SW_OK);
			} else {
				CU_ASSERT_EQUAL(st, SW_ETRUNC);
				CU_ASSERT_EQUAL(e.code, SW_ETRUNC);
				CU_ASSERT_TRUE(e.offset < cut);
				CU_ASSERT_PTR_NULL(out);
			}
			sw_update_free(out);
			CU_ASSERT_EQUAL(fa.live, 0);
			free(copy);
		}
		free(buf);
	}
}

static void pb_decode_allocation_failure_is_clean(void)
{
	tu_failalloc fa = { 0, 0, 0 };
	sw_alloc a = tu_failalloc_hook(&fa);
	sw_parse_opts o = { .alloc = &a };
	sw_update u, *out = NULL;
	size_t len = 0;
	uint8_t *buf;
	sw_error e;

	make_case(21, &u);
	buf = encode(&u, 0, &len);
	CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
	sw_error_clear(&e);
	CU_ASSERT_EQUAL(sw_pb_decode(buf, len, &o, &out, &e), SW_ENOMEM);
	CU_ASSERT_EQUAL(e.code, SW_ENOMEM);
	CU_ASSERT_PTR_NULL(out);
	CU_ASSERT_EQUAL(fa.calls, 1);
	CU_ASSERT_EQUAL(fa.live, 0);
	fa.fail_at = -1;
	CU_ASSERT_EQUAL(sw_pb_decode(buf, len, &o, &out, NULL), SW_OK);
	CU_ASSERT_EQUAL(fa.live, 1);
	CU_ASSERT_TRUE(sw_update_equal(&u, out));
	sw_update_free(out);
	CU_ASSERT_EQUAL(fa.live, 0);
	free(buf);
}

/* The decoded update does not alias the input. */
static void pb_decode_result_does_not_alias_input(void)
{
	sw_update u, *out = NULL;
	size_t len = 0;
	uint8_t *buf;

	make_case(5, &u);
	buf = encode(&u, 0, &len);
	CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
	CU_ASSERT_EQUAL_FATAL(sw_pb_decode(buf, len, NULL, &out, NULL), SW_OK);
	memset(buf, 0, len);
	free(buf);
	CU_ASSERT_TRUE(sw_update_equal(&u, out));
	sw_update_free(out);
}

static size_t unhex(const char *h, uint8_t *out)
{
	size_t n = 0;

	while (*h) {
		unsigned v;

		if (*h == ' ') {
			h++;
			continue;
		}
		sscanf(h, "%2x", &v);
		out[n++] = (uint8_t)v;
		h += 2;
	}
	return n;
}

#define Z8 "00 00 00 00 00 00 00 00"
#define Z10 Z8 " 00 00"
#define Z16 Z8 " " Z8

/* Rows leave kind and limits at their defaults unless they need them. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
static void pb_decode_rejects_bad_input_table(void)
{
	static const struct {
		const char *name, *hex;
		sw_status st;
		const char *path;
		long off; /* -1: don't check */
		sw_kind kind;
		sw_limits lim;
	} t[] = {
		{ "truncated tag", "80", SW_ETRUNC, "", 0 },
		{ "truncated varint value", "20 80", SW_ETRUNC,
		  "#4(duration_int)", 0 },
		{ "truncated length", "1a", SW_ETRUNC, "#3(external_id_text)", 0 },
		{ "length past the end", "1a 05 61 62", SW_ETRUNC,
		  "#3(external_id_text)", 0 },
		{ "huge length", "1a ff ff ff ff ff ff ff ff 7f 61", SW_ETRUNC,
		  "#3(external_id_text)", 0 },
		{ "truncated fixed64", "99 01 00 00 00", SW_ETRUNC,
		  "#19(duration_double)", 0 },
		{ "varint over 10 bytes", "20 ff ff ff ff ff ff ff ff ff ff 01",
		  SW_EWIRE, "#4(duration_int)", 0 },
		{ "10th varint byte over 1", "20 ff ff ff ff ff ff ff ff ff 02",
		  SW_EWIRE, "#4(duration_int)", 0 },
		{ "tag over 32 bits", "80 80 80 80 10 00", SW_EWIRE, "", 0 },
		{ "wire type mismatch", "22 01 00", SW_EWIRE,
		  "#4(duration_int)", 0 },
		{ "group wire type", "23", SW_EWIRE, "#4(duration_int)", 0 },
		{ "double as varint", "98 01 00", SW_EWIRE,
		  "#19(duration_double)", 0 },
		{ "field number 0", "00 00", SW_EUNKNOWN, "#0", 0 },
		{ "unknown field 29", "e8 01 00", SW_EUNKNOWN, "#29", 0 },
		{ "unknown field in billing", "32 02 50 00", SW_EUNKNOWN,
		  "#6(billing).10", 2 },
		{ "singular given twice", "20 02 20 04", SW_EDUP,
		  "#4(duration_int)", 2 },
		{ "two forms of one value", "20 02 99 01 " Z8, SW_EDUP,
		  "#19(duration_double)", 2 },
		{ "oneof id twice", "82 01 00 82 01 00", SW_EDUP, "#16(id_text)", 3 },
		{ "updated_at in two forms", "60 02 68 02 70 02", SW_EDUP,
		  "#14(updated_at_delta)", 4 },
		{ "billing twice", "32 04 08 02 20 04 32 04 08 02 20 04", SW_EDUP,
		  "#6(billing)", 6 },
		{ "billing value twice", "32 04 08 02 08 04", SW_EDUP,
		  "#6(billing).1(input_cost_int)", 4 },
		{ "billing two forms", "32 0b 08 02 19 " Z8, SW_EDUP,
		  "#6(billing).3(input_cost_double)", 4 },
		{ "contact ids in two forms", "aa 01 01 61 2a 10 " Z16, SW_EDUP,
		  "#5(contact_ids_ulid)[1]", 4 },
		{ "contact id with EMPTY flag", "aa 01 01 61 78 01", SW_EDUP,
		  "#15(flags)", 4 },
		{ "tag with EMPTY flag", "4a 01 61 78 02", SW_EDUP, "#15(flags)", 3 },
		{ "project id with NULL flag", "da 01 01 61 78 04", SW_EDUP,
		  "#15(flags)", 4 },
		{ "unknown flag bits", "78 10", SW_EVALUE, "#15(flags)", 0 },
		{ "flag bits over 32", "78 80 80 80 80 10", SW_EVALUE,
		  "#15(flags)", 0 },
		{ "flags twice", "78 01 78 01", SW_EDUP, "#15(flags)", 2 },
		{ "invalid UTF-8", "1a 01 ff", SW_EUTF8, "#3(external_id_text)", 2 },
		{ "invalid UTF-8 in a tag", "4a 01 61 4a 02 c3 28", SW_EUTF8,
		  "#9(tags)[1]", 5 },
		{ "surrogate in a contact", "aa 01 03 ed a0 80", SW_EUTF8,
		  "#21(contact_ids_text)[0]", 3 },
		{ "ULID of 15 bytes", "0a 0f " Z10 " 00 00 00 00 00", SW_EVALUE,
		  "#1(id_ulid)", 0 },
		{ "ULID of 10 bytes without started_at", "0a 0a " Z10, SW_EVALUE,
		  "#1(id_ulid)", 0 },
		{ "ULID of 10 bytes, started_at negative", "0a 0a " Z10 " 60 01",
		  SW_EVALUE, "#1(id_ulid)", 0 },
		{ "contact ULID of 10 bytes, no started_at",
		  "2a 10 " Z16 " 2a 0a " Z10, SW_EVALUE,
		  "#5(contact_ids_ulid)[1]", 18 },
		{ "UUID of 15 bytes", "8a 01 0f " Z10 " 00 00 00 00 00", SW_EVALUE,
		  "#17(id_uuid)", 0 },
		{ "UUID of 0 bytes", "b2 01 00", SW_EVALUE,
		  "#22(contact_ids_uuid)[0]", 0 },
		{ "dec with s = 0", "a0 01 80 01", SW_ERANGE, "#20(duration_dec)", 0 },
		{ "dec with s = 23", "a0 01 97 01", SW_ERANGE,
		  "#20(duration_dec)", 0 },
		{ "dec with m over 2^53", "a0 01 81 81 80 80 80 80 80 80 10",
		  SW_ERANGE, "#20(duration_dec)", 0 },
		{ "dec with m under -2^53", "32 0c 10 c1 80 80 80 80 80 80 80 10 20 00",
		  SW_ERANGE, "#6(billing).2(input_cost_dec)", 2 },
		{ "int -2^63", "20 ff ff ff ff ff ff ff ff ff 01", SW_ERANGE,
		  "#4(duration_int)", 0 },
		{ "int 2^53 + 1 (not a double)", "20 82 80 80 80 80 80 80 20",
		  SW_ERANGE, "#4(duration_int)", 0 },
		{ "NaN", "99 01 00 00 00 00 00 00 f8 7f", SW_ERANGE,
		  "#19(duration_double)", 0 },
		{ "infinity", "b9 01 00 00 00 00 00 00 f0 ff", SW_ERANGE,
		  "#23(traces_count_double)", 0 },
		{ "NaN in usage", "3a 09 19 00 00 00 00 00 00 f8 7f", SW_ERANGE,
		  "#7(usage).3(prompt_tokens_double)", 2 },
		{ "billing without output_cost", "32 02 08 02", SW_EMISSING,
		  "#6(billing)", 0 },
		{ "usage empty", "3a 00", SW_EMISSING, "#7(usage)", 0 },
		{ "billing truncated inside", "32 02 08 80 20 02", SW_ETRUNC,
		  "#6(billing).1(input_cost_int)", 2 },
		{ "billing with trailing garbage", "32 05 08 02 20 04 80",
		  SW_ETRUNC, "#6(billing)", 6 },
		{ "started_at after 9999", "60 80 f0 fe a1 fa 9d 73", SW_EDATE,
		  "#12(started_at)", 0 },
		{ "started_at before 0000", "60 81 80 a3 f0 cd a2 1c", SW_EDATE,
		  "#12(started_at)", 0 },
		{ "updated_at_ms before 0000", "68 81 80 a3 f0 cd a2 1c", SW_EDATE,
		  "#13(updated_at_ms)", 0 },
		{ "delta past 9999", "60 02 70 fe ef fe a1 fa 9d 73", SW_EDATE,
		  "#14(updated_at_delta)", 2 },
		{ "delta without started_at", "70 02", SW_EVALUE,
		  "#14(updated_at_delta)", 0 },
		{ "IS_END without started_at", "20 02 78 08", SW_EVALUE,
		  "#15(flags)", 2 },
		{ "IS_END without duration", "60 02 78 08", SW_EVALUE,
		  "#15(flags)", 2 },
		{ "IS_END with updated_at", "20 02 60 02 68 02 78 08", SW_EDUP,
		  "#15(flags)", 6 },
		{ "IS_END with a fractional duration",
		  "60 02 78 08 99 01 00 00 00 00 00 00 e0 3f", SW_EVALUE,
		  "#15(flags)", 2 },
		{ "IS_END past 9999", "20 02 60 fe ef fe a1 fa 9d 73 78 08",
		  SW_EDATE, "#15(flags)", 10 },
		{ "input over max_input", "20 02 20 04", SW_ETOOBIG, "", 0,
		  SW_KIND_UPDATE, { 3, 0, 0 } },
		{ "string over max_string", "1a 03 61 62 63", SW_ETOOBIG,
		  "#3(external_id_text)", 0, SW_KIND_UPDATE, { 0, 2, 0 } },
		{ "ULID text over max_string", "0a 10 " Z16, SW_ETOOBIG,
		  "#1(id_ulid)", 0, SW_KIND_UPDATE, { 0, 20, 0 } },
		{ "tags over max_items", "4a 01 61 4a 01 62", SW_ETOOBIG,
		  "#9(tags)[1]", 3, SW_KIND_UPDATE, { 0, 0, 1 } },
		{ "contacts over max_items", "aa 01 00 aa 01 00 aa 01 00",
		  SW_ETOOBIG, "#21(contact_ids_text)[2]", 6, SW_KIND_UPDATE,
		  { 0, 0, 2 } },
		{ "session without fields", "", SW_EMISSING, "_id", -1,
		  SW_KIND_SESSION },
	};
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		tu_failalloc fa = { -1, 0, 0 };
		sw_alloc a = tu_failalloc_hook(&fa);
		sw_parse_opts o = { .kind = t[i].kind, .limits = t[i].lim,
				    .alloc = &a };
		uint8_t buf[128];
		size_t n = unhex(t[i].hex, buf);
		uint8_t *copy = malloc(n + 1);
		sw_update *out = NULL;
		sw_error e;
		sw_status st;

		memcpy(copy, buf, n);
		sw_error_clear(&e);
		st = sw_pb_decode(copy, n, &o, &out, &e);
		if (st != t[i].st || strcmp(e.path, t[i].path) != 0 ||
		    (t[i].off >= 0 && e.offset != (size_t)t[i].off))
			fprintf(stderr, "row '%s': got %s at %zu '%s': %s\n",
				t[i].name, sw_errname(st), e.offset, e.path,
				e.message);
		CU_ASSERT_EQUAL(st, t[i].st);
		CU_ASSERT_EQUAL(e.code, t[i].st);
		CU_ASSERT_STRING_EQUAL(e.path, t[i].path);
		if (t[i].off >= 0)
			CU_ASSERT_EQUAL(e.offset, (size_t)t[i].off);
		CU_ASSERT_TRUE(strlen(e.message) > 10);
		CU_ASSERT_PTR_NULL(out);
		CU_ASSERT_EQUAL(fa.live, 0);
		free(copy);
	}
}
#pragma GCC diagnostic pop

/* Each good row decodes; the message is valid even in odd forms. */
static void pb_decode_accepts_odd_valid_forms(void)
{
	sw_update *out = NULL;
	uint8_t buf[64];
	size_t n;

	/* a non-minimal varint: duration 1 */
	n = unhex("20 82 00", buf);
	CU_ASSERT_EQUAL_FATAL(sw_pb_decode(buf, n, NULL, &out, NULL), SW_OK);
	CU_ASSERT_EQUAL(out->has, SW_F_DURATION);
	CU_ASSERT_EQUAL(out->duration, 1.0);
	sw_update_free(out);
	/* dec in mode 1: m = 3598, s = 6 -> 3598 * 1e-6 */
	n = unhex("a0 01", buf);
	n += sw__pb_varint_put(buf + n, sw__pb_zigzag(3598) << 6 | 32 | 6);
	CU_ASSERT_EQUAL_FATAL(sw_pb_decode(buf, n, NULL, &out, NULL), SW_OK);
	CU_ASSERT_TRUE(same_double(out->duration, 3598 * 1e-6));
	sw_update_free(out);
	/* total absent: input + output; -0 + -0 = -0 */
	n = unhex("32 12 19 00 00 00 00 00 00 00 80 31 00 00 00 00 00 00 00 80",
		  buf);
	CU_ASSERT_EQUAL_FATAL(sw_pb_decode(buf, n, NULL, &out, NULL), SW_OK);
	CU_ASSERT_TRUE(same_double(out->billing[SW_TOTAL], -0.0));
	sw_update_free(out);
	/* an empty string id and the EMPTY flags */
	n = unhex("82 01 00 78 07", buf);
	CU_ASSERT_EQUAL_FATAL(sw_pb_decode(buf, n, NULL, &out, NULL), SW_OK);
	CU_ASSERT_EQUAL(out->has, SW_F_ID | SW_F_CONTACT_IDS | SW_F_TAGS |
				  SW_F_PROJECT_ID);
	CU_ASSERT_EQUAL(out->id.len, 0);
	CU_ASSERT_TRUE(out->project_id_null);
	CU_ASSERT_EQUAL(out->n_contact_ids, 0);
	sw_update_free(out);
}

/* ==== protoc as a second reader ==== */

static void pb_protoc_accepts_schema_and_reads_our_bytes(void)
{
	char path[] = "/tmp/sw_pb_XXXXXX", cmd[512], out[8192];
	sw_update u;
	uint8_t *buf;
	size_t len = 0, got;
	FILE *f;
	int fd;

	CU_ASSERT_EQUAL(system("protoc --proto_path=proto "
			       "--descriptor_set_out=/dev/null "
			       "proto/sessionwire.proto"), 0);
	make_case(1, &u);
	buf = encode(&u, 0, &len);
	CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
	fd = mkstemp(path);
	CU_ASSERT_TRUE_FATAL(fd >= 0);
	CU_ASSERT_EQUAL(write(fd, buf, len), (ssize_t)len);
	close(fd);
	free(buf);
	snprintf(cmd, sizeof(cmd),
		 "protoc --decode=sessionwire.v1.Session --proto_path=proto "
		 "proto/sessionwire.proto < %s", path);
	f = popen(cmd, "r");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	got = fread(out, 1, sizeof(out) - 1, f);
	out[got] = '\0';
	CU_ASSERT_EQUAL(pclose(f), 0);
	unlink(path);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "duration_int: 1358072"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "external_id_text: \"dev-a8346607363a\""));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "traces_count_int: 171"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "started_at: 1748282246708"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "billing {"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "prompt_tokens_int: 2894"));
}

/* nanopb accepts the options and, with them, needs no callbacks (every
 * field bounded). Fails, naming the package, when nanopb's generator is
 * not installed (make deps installs it). */
static void pb_nanopb_options_bound_every_field(void)
{
	char dir[] = "/tmp/sw_nanopb_XXXXXX", cmd[1024], hdr[600];
	const char *gen = NULL;
	char *h;

	if (system("command -v nanopb_generator.py >/dev/null 2>&1") == 0)
		gen = "nanopb_generator.py";
	else if (system("command -v nanopb_generator >/dev/null 2>&1") == 0)
		gen = "nanopb_generator";
	if (gen == NULL)
		printf("\n    nanopb_generator not found: install the Debian "
		       "package nanopb (make deps) ");
	CU_ASSERT_PTR_NOT_NULL_FATAL(gen);
	CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
	snprintf(cmd, sizeof(cmd),
		 "%s -q -I proto -f proto/sessionwire.options -D %s "
		 "proto/sessionwire.proto >/dev/null 2>&1", gen, dir);
	CU_ASSERT_EQUAL(system(cmd), 0);
	snprintf(hdr, sizeof(hdr), "%s/sessionwire.pb.h", dir);
	h = tu_read_file(hdr, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(h);
	CU_ASSERT_PTR_NULL(strstr(h, "pb_callback_t"));
	CU_ASSERT_PTR_NOT_NULL(strstr(h, "sessionwire_v1_Session_size"));
	CU_ASSERT_PTR_NOT_NULL(strstr(h, "char tags[16][65];"));
	free(h);
	CU_ASSERT_EQUAL(tu_rmrf(dir), 0);
}

/* ==== The SDK vectors (tests/vectors) ==== */

/* Every vector survives JSON -> protobuf -> update; reports sizes. */
static void pb_vectors_round_trip_and_sizes(void)
{
	static const char *const files[] = { "typical.jsonl", "sdk_wire.jsonl" };
	int fi;

	for (fi = 0; fi < 2; fi++) {
		tu_vector *v = NULL;
		int n = tu_vectors_load(files[fi], &v), i, parsed = 0;
		double pb_sum = 0, json_sum = 0, plain_sum = 0;

		CU_ASSERT_TRUE_FATAL(n > 0);
		for (i = 0; i < n; i++) {
			sw_update *u = NULL;

			if (sw_json_parse(v[i].wire, v[i].wire_len, NULL, &u,
					  NULL) != SW_OK)
				continue;
			parsed++;
			pb_sum += (double)round_trip(u, 0);
			plain_sum += (double)round_trip(u, 127);
			json_sum += (double)v[i].wire_len;
			sw_update_free(u);
		}
		if (parsed)
			printf("\n    %s: %d/%d parsed; mean JSON %.1f B, "
			       "protobuf %.1f B (%.1f%%), all-plain %.1f B ",
			       files[fi], parsed, n, json_sum / parsed,
			       pb_sum / parsed, 100 * pb_sum / json_sum,
			       plain_sum / parsed);
		else
			printf("\n    %s: sw_json_parse parsed none (not "
			       "written yet?) ", files[fi]);
		tu_vectors_free(v, n);
	}
}

/* ==== The inspector ==== */

static void pb_inspect_names_every_field_and_form(void)
{
	static const char *const want[] = {
		"#3  external_id_text", "\"dev-a8346607363a\"",
		"#4  duration_int             varint  len=4   1358072",
		"#6  billing", "    #2  input_cost_dec",
		"m=4341 s=7 mode=div -> 0.0004341", "m=9 s=3 mode=div -> 0.009",
		"(no total_cost: input + output)", "prompt_tokens_int",
		"#10 workspace_id_ulid        bytes   len=16  "
		"01J42CMDHMMCH68TYCT6BXFB8V (ulid)",
		"1748282246708 -> 2025-05-26T17:57:26.708Z",
		"0x8 UPDATED_AT_IS_END",
	};
	sw_update u;
	uint8_t *bin;
	size_t len = 0, i;
	sw_buf out;
	sw_error e;

	make_case(1, &u);
	bin = encode(&u, 0, &len);
	CU_ASSERT_PTR_NOT_NULL_FATAL(bin);
	sw_buf_init(&out, 0, NULL);
	sw_error_clear(&e);
	CU_ASSERT_EQUAL(sw_pb_inspect(bin, len, &out, &e), SW_OK);
	CU_ASSERT_EQUAL(e.code, SW_OK);
	for (i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		if (strstr(out.data, want[i]) == NULL)
			fprintf(stderr, "inspect lacks '%s' in:\n%s", want[i],
				out.data);
		CU_ASSERT_PTR_NOT_NULL(strstr(out.data, want[i]));
	}
	free(bin);
	/* short ULIDs, uuids, dec in mode mul, doubles, deltas, flags */
	sw_buf_reset(&out);
	make_case(9, &u);
	bin = encode(&u, 0, &len);
	CU_ASSERT_EQUAL(sw_pb_inspect(bin, len, &out, NULL), SW_OK);
	CU_ASSERT_PTR_NOT_NULL(strstr(out.data, "len=10  " "01J42CMDHMMCH68TYCT6BXFB8V (ulid, time = started_at)"));
	free(bin);
	sw_buf_reset(&out);
	make_case(4, &u);
	bin = encode(&u, 0, &len);
	CU_ASSERT_EQUAL(sw_pb_inspect(bin, len, &out, NULL), SW_OK);
	CU_ASSERT_PTR_NOT_NULL(strstr(out.data, "m=3598 s=6 mode=mul -> 0.0035979999999999996"));
	free(bin);
	sw_buf_reset(&out);
	sw_update_init(&u);
	sw_update_set_started_at(&u, 1748282246708);
	sw_update_set_updated_at(&u, 1748282246708 + 6);
	bin = encode(&u, 0, &len);
	CU_ASSERT_EQUAL(sw_pb_inspect(bin, len, &out, NULL), SW_OK);
	CU_ASSERT_PTR_NOT_NULL(strstr(out.data, "updated_at_delta"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out.data, "+6 ms -> 2025-05-26T17:57:26.714Z"));
	free(bin);
	sw_buf_free(&out);
}

static void pb_inspect_stops_with_the_decoders_error(void)
{
	static const char *const bad[] = {
		"80", "1a 05 61 62", "22 01 00", "23", "e8 01 00",
		"32 05 08 02 20 04 80", "1a 01 ff", "0a 0a " Z10, "78 10",
		"99 01 00 00 00 00 00 00 f8 7f", "32 02 08 02",
	};
	uint8_t buf[64];
	size_t i, n;
	sw_buf out;

	sw_buf_init(&out, 0, NULL);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		sw_update *u = NULL;
		sw_error e1, e2;
		sw_status st;

		n = unhex(bad[i], buf);
		sw_buf_reset(&out);
		sw_error_clear(&e1);
		sw_error_clear(&e2);
		st = sw_pb_inspect(buf, n, &out, &e1);
		CU_ASSERT_EQUAL(st, sw_pb_decode(buf, n, NULL, &u, &e2));
		CU_ASSERT_NOT_EQUAL(st, SW_OK);
		CU_ASSERT_STRING_EQUAL(e1.path, e2.path);
		CU_ASSERT_EQUAL(e1.offset, e2.offset);
		CU_ASSERT_PTR_NOT_NULL(strstr(out.data, "!! "));
	}
	sw_buf_free(&out);
}

/* Random bytes and mutated messages never crash the decoder or the
 * inspector (run it under ASan). */
static void pb_garbage_never_crashes(void)
{
	int i, n = tu_quick ? 2000 : 40000;
	sw_buf out;

	sw_buf_init(&out, 0, NULL);
	for (i = 0; i < n; i++) {
		static rnd_store s;
		sw_update u, *back = NULL;
		uint8_t *buf, *copy;
		size_t len = 0, k;
		sw_status st;

		rnd_update(&u, &s);
		buf = encode(&u, 0, &len);
		CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
		if (i % 4 == 0) {
			for (k = 0; k < len; k++)
				buf[k] = (uint8_t)rng();
		} else if (len) {
			for (k = 0; k <= rnd(3); k++)
				buf[rnd((unsigned)len)] ^= (uint8_t)(1u << rnd(8));
		}
		copy = malloc(len + 1);
		memcpy(copy, buf, len);
		if (sw_pb_decode(copy, len, NULL, &back, NULL) == SW_OK) {
			/* what decodes re-encodes and decodes the same */
			sw_update *again = NULL;
			uint8_t *b2;
			size_t l2 = 0;

			b2 = encode(back, 0, &l2);
			CU_ASSERT_PTR_NOT_NULL_FATAL(b2);
			CU_ASSERT_EQUAL(sw_pb_decode(b2, l2, NULL, &again, NULL),
					SW_OK);
			CU_ASSERT_TRUE(sw_update_equal(back, again));
			sw_update_free(again);
			free(b2);
		}
		sw_update_free(back);
		back = NULL;
		sw_buf_reset(&out);
		st = sw_pb_inspect(copy, len, &out, NULL);
		CU_ASSERT_TRUE(st == SW_OK || strstr(out.data, "!! ") != NULL);
		free(copy);
		free(buf);
	}
	sw_buf_free(&out);
}

int init_pb_tests(void)
{
	CU_pSuite s = CU_add_suite("pb", NULL, NULL);

	if (s == NULL)
		return -1;
	CU_add_test(s, "pb_field_table_matches_protobuf_c_descriptor", pb_field_table_matches_protobuf_c_descriptor);
	CU_add_test(s, "pb_number_form_table", pb_number_form_table);
	CU_add_test(s, "pb_encoder_picks_expected_forms", pb_encoder_picks_expected_forms);
	CU_add_test(s, "pb_worst_case_fits_sw_pb_max_size", pb_worst_case_fits_sw_pb_max_size);
	CU_add_test(s, "pb_number_forms_are_exact_on_random_doubles", pb_number_forms_are_exact_on_random_doubles);
	CU_add_test(s, "pb_round_trip_every_case_and_plain_switch", pb_round_trip_every_case_and_plain_switch);
	CU_add_test(s, "pb_compact_forms_pay", pb_compact_forms_pay);
	CU_add_test(s, "pb_random_updates_round_trip", pb_random_updates_round_trip);
	CU_add_test(s, "pb_encoder_output_unpacks_with_protobuf_c", pb_encoder_output_unpacks_with_protobuf_c);
	CU_add_test(s, "pb_decoder_reads_protobuf_c_output", pb_decoder_reads_protobuf_c_output);
	CU_add_test(s, "pb_encode_into_small_buffers_fails_cleanly", pb_encode_into_small_buffers_fails_cleanly);
	CU_add_test(s, "pb_encode_fits_the_compile_time_bound", pb_encode_fits_the_compile_time_bound);
	CU_add_test(s, "pb_encode_rejects_invalid_updates", pb_encode_rejects_invalid_updates);
	CU_add_test(s, "pb_encode_uses_no_heap", pb_encode_uses_no_heap);
	CU_add_test(s, "pb_decode_truncated_input_at_every_length", pb_decode_truncated_input_at_every_length);
	CU_add_test(s, "pb_decode_allocation_failure_is_clean", pb_decode_allocation_failure_is_clean);
	CU_add_test(s, "pb_decode_result_does_not_alias_input", pb_decode_result_does_not_alias_input);
	CU_add_test(s, "pb_decode_rejects_bad_input_table", pb_decode_rejects_bad_input_table);
	CU_add_test(s, "pb_decode_accepts_odd_valid_forms", pb_decode_accepts_odd_valid_forms);
	CU_add_test(s, "pb_protoc_accepts_schema_and_reads_our_bytes", pb_protoc_accepts_schema_and_reads_our_bytes);
	CU_add_test(s, "pb_nanopb_options_bound_every_field", pb_nanopb_options_bound_every_field);
	CU_add_test(s, "pb_vectors_round_trip_and_sizes", pb_vectors_round_trip_and_sizes);
	CU_add_test(s, "pb_inspect_names_every_field_and_form", pb_inspect_names_every_field_and_form);
	CU_add_test(s, "pb_inspect_stops_with_the_decoders_error", pb_inspect_stops_with_the_decoders_error);
	CU_add_test(s, "pb_garbage_never_crashes", pb_garbage_never_crashes);
	return 0;
}
