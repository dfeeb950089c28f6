/* test_common.c - status names, error struct, buffers, UTF-8, the model. */
#include <CUnit/CUnit.h>
#include <math.h>
#include <string.h>

#include "../codec/sw_internal.h"
#include "testutil.h"

static void status_names_come_from_one_list(void)
{
	CU_ASSERT_STRING_EQUAL(sw_errname(SW_OK), "OK");
	CU_ASSERT_STRING_EQUAL(sw_errname(SW_EUTF8), "EUTF8");
	CU_ASSERT_STRING_EQUAL(sw_strerror(SW_EJSON), "malformed JSON");
	CU_ASSERT_STRING_EQUAL(sw_errname((sw_status)999), "E?");
	CU_ASSERT_EQUAL(SW_EIO, 16); /* codes are never renumbered */
}

static void error_first_one_wins(void)
{
	sw_error e;

	sw_error_clear(&e);
	CU_ASSERT_EQUAL(sw_error_set(&e, SW_ETYPE, "tags[3]", 7, "expected %s",
				     "a string"), SW_ETYPE);
	CU_ASSERT_EQUAL(sw_error_set(&e, SW_EDUP, "x", 9, "second"), SW_EDUP);
	CU_ASSERT_EQUAL(e.code, SW_ETYPE);
	CU_ASSERT_STRING_EQUAL(e.path, "tags[3]");
	CU_ASSERT_STRING_EQUAL(e.message, "expected a string");
	CU_ASSERT_EQUAL(e.offset, 7);
	CU_ASSERT_EQUAL(sw_error_set(NULL, SW_EDUP, "x", 0, "y"), SW_EDUP);
}

static void buf_fixed_refuses_past_cap_and_keeps_content(void)
{
	char mem[8];
	sw_buf b;

	sw_buf_init_fixed(&b, mem, sizeof(mem));
	CU_ASSERT_EQUAL(sw_buf_append(&b, "abcd", 4), SW_OK);
	CU_ASSERT_EQUAL(sw_buf_append(&b, "efgh", 4), SW_EBUFSZ);
	CU_ASSERT_EQUAL(b.len, 4);
	CU_ASSERT_STRING_EQUAL(b.data, "abcd");
	CU_ASSERT_EQUAL(sw_buf_append(&b, "efg", 3), SW_OK);
	CU_ASSERT_STRING_EQUAL(b.data, "abcdefg");
}

static void buf_growable_stops_at_max(void)
{
	sw_buf b;
	char chunk[100];
	int i;

	memset(chunk, 'x', sizeof(chunk));
	sw_buf_init(&b, 1000, NULL);
	for (i = 0; i < 10; i++)
		CU_ASSERT_EQUAL(sw_buf_append(&b, chunk, 100), SW_OK);
	CU_ASSERT_EQUAL(sw_buf_append(&b, chunk, 1), SW_ETOOBIG);
	CU_ASSERT_EQUAL(b.len, 1000);
	CU_ASSERT_EQUAL(strlen(b.data), 1000);
	sw_buf_free(&b);
	sw_buf_free(NULL);
}

static void buf_reports_enomem_and_keeps_content(void)
{
	tu_failalloc fa = { 1, 0, 0 };
	sw_alloc a = tu_failalloc_hook(&fa);
	char chunk[300];
	sw_buf b;

	memset(chunk, 'y', sizeof(chunk));
	sw_buf_init(&b, 0, &a);
	CU_ASSERT_EQUAL(sw_buf_append(&b, "ab", 2), SW_OK);
	CU_ASSERT_EQUAL(sw_buf_append(&b, chunk, sizeof(chunk)), SW_ENOMEM);
	CU_ASSERT_STRING_EQUAL(b.data, "ab");
	sw_buf_free(&b);
	CU_ASSERT_EQUAL(fa.live, 0);
}

static void utf8_check_table(void)
{
	static const struct {
		const char *s;
		size_t n, bad;
	} t[] = {
		{ "plain", 5, 5 },
		{ "a\0b", 3, 3 },                      /* U+0000 is valid */
		{ "\xc3\xa9", 2, 2 },                  /* é */
		{ "\xe2\x82\xac", 3, 3 },              /* € */
		{ "\xf0\x9f\x98\x80", 4, 4 },          /* emoji */
		{ "\xf4\x8f\xbf\xbf", 4, 4 },          /* U+10FFFF */
		{ "a\x80", 2, 1 },                     /* lone continuation */
		{ "\xc0\xaf", 2, 0 },                  /* overlong / */
		{ "\xe0\x80\xaf", 3, 0 },              /* overlong */
		{ "\xed\xa0\x80", 3, 0 },              /* surrogate D800 */
		{ "\xf4\x90\x80\x80", 4, 0 },          /* past U+10FFFF */
		{ "\xf5\x80\x80\x80", 4, 0 },
		{ "ab\xe2\x82", 4, 2 },                /* truncated */
		{ "\xff", 1, 0 },
	};
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		CU_ASSERT_EQUAL(sw__utf8_check(t[i].s, t[i].n), t[i].bad);
}

static void update_check_names_the_field(void)
{
	sw_update u;
	sw_error e;
	sw_str tags[2] = { { "ok", 2 }, { "\xff", 1 } };

	sw_update_init(&u);
	sw_update_set_billing(&u, 1, NAN, 2);
	sw_error_clear(&e);
	CU_ASSERT_EQUAL(sw_update_check(&u, SW_KIND_UPDATE, NULL, &e), SW_ERANGE);
	CU_ASSERT_STRING_EQUAL(e.path, "billing.output_cost");

	sw_update_init(&u);
	sw_update_set_tags(&u, tags, 2);
	sw_error_clear(&e);
	CU_ASSERT_EQUAL(sw_update_check(&u, SW_KIND_UPDATE, NULL, &e), SW_EUTF8);
	CU_ASSERT_STRING_EQUAL(e.path, "tags");

	sw_update_init(&u);
	sw_update_set_started_at(&u, SW_DATE_MAX_MS + 1);
	CU_ASSERT_EQUAL(sw_update_check(&u, SW_KIND_UPDATE, NULL, NULL), SW_EDATE);

	sw_update_init(&u);
	sw_error_clear(&e);
	CU_ASSERT_EQUAL(sw_update_check(&u, SW_KIND_UPDATE, NULL, &e), SW_OK);
	CU_ASSERT_EQUAL(sw_update_check(&u, SW_KIND_SESSION, NULL, &e), SW_EMISSING);
	CU_ASSERT_STRING_EQUAL(e.path, "_id");
}

static void update_equal_is_bitwise(void)
{
	sw_update a, b;

	sw_update_init(&a);
	sw_update_init(&b);
	sw_update_set_duration(&a, 0.0);
	sw_update_set_duration(&b, -0.0);
	CU_ASSERT_FALSE(sw_update_equal(&a, &b));
	sw_update_set_duration(&b, 0.0);
	CU_ASSERT_TRUE(sw_update_equal(&a, &b));
	sw_update_set_project_id_null(&a);
	CU_ASSERT_FALSE(sw_update_equal(&a, &b));
	sw_update_set_project_id(&b, "", 0);
	CU_ASSERT_FALSE(sw_update_equal(&a, &b));
}

static void block_allocation_failure_is_clean(void)
{
	tu_failalloc fa = { 0, 0, 0 };
	sw_alloc a = tu_failalloc_hook(&fa);
	sw__builder b;

	CU_ASSERT_EQUAL(sw__block_new(&a, 1, 1, 10, &b), SW_ENOMEM);
	CU_ASSERT_EQUAL(fa.live, 0);
	fa.fail_at = -1;
	CU_ASSERT_EQUAL(sw__block_new(&a, 1, 2, 10, &b), SW_OK);
	b.contacts[0] = sw__block_str(&b, "abc", 3);
	CU_ASSERT_EQUAL(memcmp(b.u->contact_ids[0].ptr, "abc", 3), 0);
	CU_ASSERT_EQUAL(fa.live, 1);
	sw_update_free(b.u);
	CU_ASSERT_EQUAL(fa.live, 0);
	CU_ASSERT_EQUAL(sw__block_new(&a, SIZE_MAX / 2, SIZE_MAX / 2, 1, &b),
			SW_ETOOBIG);
}

int init_common_tests(void)
{
	CU_pSuite s = CU_add_suite("common", NULL, NULL);

	if (s == NULL)
		return -1;
	CU_add_test(s, "status_names_come_from_one_list", status_names_come_from_one_list);
	CU_add_test(s, "error_first_one_wins", error_first_one_wins);
	CU_add_test(s, "buf_fixed_refuses_past_cap_and_keeps_content", buf_fixed_refuses_past_cap_and_keeps_content);
	CU_add_test(s, "buf_growable_stops_at_max", buf_growable_stops_at_max);
	CU_add_test(s, "buf_reports_enomem_and_keeps_content", buf_reports_enomem_and_keeps_content);
	CU_add_test(s, "utf8_check_table", utf8_check_table);
	CU_add_test(s, "update_check_names_the_field", update_check_names_the_field);
	CU_add_test(s, "update_equal_is_bitwise", update_equal_is_bitwise);
	CU_add_test(s, "block_allocation_failure_is_clean", block_allocation_failure_is_clean);
	return 0;
}
