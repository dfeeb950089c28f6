/* test_json.c - the JSON parser (docs/wire-format.md 2.2, cJSON's traps)
 * and the canonical writer (docs/wire-format.md 2.1). */
#define _GNU_SOURCE /* strtod_l */
#include <CUnit/CUnit.h>
#include <fenv.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../codec/sw_internal.h"
#include "testutil.h"

#define LIT(s) s, sizeof(s) - 1

/* Parses with the given options; returns the status and fills e. */
static sw_status parse(const char *s, size_t n, const sw_parse_opts *o,
		       sw_update **u, sw_error *e)
{
	sw_error_clear(e);
	*u = NULL;
	return sw_json_parse(s, n, o, u, e);
}

/* ==== Bad inputs ==== */

typedef struct bad_row {
	const char *json;
	size_t len; /* 0: strlen */
	sw_status st;
	const char *path;
	size_t offset; /* (size_t)-1: not checked */
} bad_row;

#define NO_OFF ((size_t)-1)

static const bad_row bad_rows[] = {
	/* billing/usage need all three numbers */
	{ "{\"billing\":{\"input_cost\":1,\"output_cost\":2}}", 0, SW_EMISSING, "billing.total_cost", NO_OFF },
	{ "{\"billing\":{}}", 0, SW_EMISSING, "billing.input_cost", NO_OFF },
	{ "{\"usage\":{\"promptTokens\":1,\"completionTokens\":2}}", 0, SW_EMISSING, "usage.total_tokens", NO_OFF },
	/* wrong types */
	{ "{\"tags\":[\"a\",1]}", 0, SW_ETYPE, "tags[1]", NO_OFF },
	{ "{\"contactIds\":[null]}", 0, SW_ETYPE, "contact_ids[0]", NO_OFF },
	{ "{\"tags\":\"a\"}", 0, SW_ETYPE, "tags", NO_OFF },
	{ "{\"tags\":null}", 0, SW_ETYPE, "tags", NO_OFF },
	{ "{\"duration\":\"5\"}", 0, SW_ETYPE, "duration", NO_OFF },
	{ "{\"duration\":true}", 0, SW_ETYPE, "duration", NO_OFF },
	{ "{\"duration\":null}", 0, SW_ETYPE, "duration", NO_OFF },
	{ "{\"_id\":5}", 0, SW_ETYPE, "_id", NO_OFF },
	{ "{\"id\":null}", 0, SW_ETYPE, "_id", NO_OFF },
	{ "{\"externalId\":{}}", 0, SW_ETYPE, "external_id", NO_OFF },
	{ "{\"project_id\":5}", 0, SW_ETYPE, "project_id", NO_OFF },
	{ "{\"billing\":[1,2,3]}", 0, SW_ETYPE, "billing", NO_OFF },
	{ "{\"billing\":null}", 0, SW_ETYPE, "billing", NO_OFF },
	{ "{\"billing\":{\"input_cost\":\"1\",\"output_cost\":2,\"total_cost\":3}}", 0, SW_ETYPE, "billing.input_cost", NO_OFF },
	{ "{\"usage\":{\"totalTokens\":false}}", 0, SW_ETYPE, "usage.total_tokens", NO_OFF },
	{ "{\"started_at\":5}", 0, SW_ETYPE, "started_at", NO_OFF },
	{ "{\"updatedAt\":null}", 0, SW_ETYPE, "updated_at", NO_OFF },
	/* the body must be an object */
	{ "[1]", 0, SW_ETYPE, "", 0 },
	{ "\"x\"", 0, SW_ETYPE, "", 0 },
	{ " 5", 0, SW_ETYPE, "", 1 },
	{ "null", 0, SW_ETYPE, "", 0 },
	/* numbers that overflow */
	{ "{\"duration\":1e400}", 0, SW_ERANGE, "duration", NO_OFF },
	{ "{\"tracesCount\":-1E+400}", 0, SW_ERANGE, "traces_count", NO_OFF },
	{ "{\"billing\":{\"input_cost\":0,\"output_cost\":1e999,\"total_cost\":0}}", 0, SW_ERANGE, "billing.output_cost", NO_OFF },
	/* the same field twice, in either naming */
	{ "{\"_id\":\"a\",\"id\":\"b\"}", 0, SW_EDUP, "_id", NO_OFF },
	{ "{\"externalId\":\"a\",\"externalId\":\"b\"}", 0, SW_EDUP, "external_id", NO_OFF },
	{ "{\"traces_count\":1,\"tracesCount\":2}", 0, SW_EDUP, "traces_count", NO_OFF },
	{ "{\"project_id\":null,\"projectId\":null}", 0, SW_EDUP, "project_id", NO_OFF },
	{ "{\"billing\":{\"inputCost\":1,\"input_cost\":1,\"output_cost\":2,\"total_cost\":3}}", 0, SW_EDUP, "billing.input_cost", NO_OFF },
	/* unknown keys (case matters) */
	{ "{\"nope\":1}", 0, SW_EUNKNOWN, "nope", NO_OFF },
	{ "{\"DURATION\":1}", 0, SW_EUNKNOWN, "DURATION", NO_OFF },
	{ "{\"Id\":\"a\"}", 0, SW_EUNKNOWN, "Id", NO_OFF },
	{ "{\"billing\":{\"input_cost\":1,\"output_cost\":2,\"total_cost\":3,\"x\":1}}", 0, SW_EUNKNOWN, "billing.x", NO_OFF },
	{ "{\"a\\u0000b\":1}", 0, SW_EUNKNOWN, "a?b", NO_OFF },
	/* dates */
	{ "{\"started_at\":\"2025-01-01T00:00:00\"}", 0, SW_EDATE, "started_at", NO_OFF },
	{ "{\"updatedAt\":\"2025-01-01T24:00:00Z\"}", 0, SW_EDATE, "updated_at", NO_OFF },
	{ "{\"started_at\":\"2025-01-01T00:00:60Z\"}", 0, SW_EDATE, "started_at", NO_OFF },
	{ "{\"started_at\":\"2025-01-01T00:00:00+01\"}", 0, SW_EDATE, "started_at", NO_OFF },
	{ "{\"started_at\":\"\\u0000\"}", 0, SW_EDATE, "started_at", NO_OFF },
	/* invalid UTF-8, with the offset of the bad byte and the path of the
	 * value it is in (a key's bytes: the object holding the key) */
	{ "{\"_id\":\"\xff\"}", 0, SW_EUTF8, "_id", 8 },
	{ "{\"_id\":\"ab\xc3\"}", 0, SW_EUTF8, "_id", 10 },
	{ "{\"_id\":\"\xed\xa0\x80\"}", 0, SW_EUTF8, "_id", 8 },
	{ "{\"x\xc0\xaf\":1}", 0, SW_EUTF8, "", 3 },
	{ "{\"tags\":[\"a\",\"\xe5\"]}", 0, SW_EUTF8, "tags[1]", 14 },
	{ "{\"tags\":[\xe5]}", 0, SW_EUTF8, "tags[0]", 9 },
	{ "{\"contactIds\":[\"\xf4\x90\x80\x80\"]}", 0, SW_EUTF8, "contact_ids[0]", 16 },
	{ "{\"billing\":{\"input_cost\":\"\xc3\x28\"}}", 0, SW_EUTF8, "billing.input_cost", 26 },
	{ "{\"usage\":{\"promptTokens\":1,\"x\xff\":2}}", 0, SW_EUTF8, "usage", 29 },
	{ "{\"_id\":\"ok\",\"externalId\":\"\xc0\xaf\"}", 0, SW_EUTF8, "external_id", 26 },
	{ "{\"duration\":1\xff}", 0, SW_EUTF8, "duration", 13 },
	{ "{\"tags\":[\"ok\"]} \xff", 0, SW_EUTF8, "", 16 },
	/* the first problem in the input wins: a lexical error before the
	 * bad byte, or a body that is not an object */
	{ "{\"tags\":[a\xe5]}", 0, SW_EJSON, "tags[0]", 9 },
	{ "{\"duration\":01,\"tags\":[\"\xff\"]}", 0, SW_EJSON, "duration", 13 },
	{ "[\"\xff\"]", 0, SW_ETYPE, "", 0 },
	/* trailing garbage and cJSON's lax whitespace */
	{ "{\"a\":1} x", 0, SW_EJSON, "", 8 },
	{ "{} {}", 0, SW_EJSON, "", 3 },
	{ "{}\x01", 0, SW_EJSON, "", 2 },
	{ "\x01{}", 0, SW_EJSON, "", 0 },
	{ "{\x0b}", 0, SW_EJSON, "", 1 },
	{ "{}\0", 3, SW_EJSON, "", 2 },
	{ "\xef\xbb\xbf{}", 0, SW_EJSON, "", 0 }, /* cJSON skips a BOM */
	{ "", 0, SW_EJSON, "", 0 },
	{ " \n\t\r", 0, SW_EJSON, "", 4 },
	/* string escapes cJSON gets wrong */
	{ "{\"tags\":[\"\\uZZZZ\"]}", 0, SW_EJSON, "tags[0]", 12 },
	{ "{\"_id\":\"\\u12\"}", 0, SW_EJSON, "_id", 12 },
	{ "{\"_id\":\"\\x\"}", 0, SW_EJSON, "_id", 9 },
	{ "{\"_id\":\"\\U0041\"}", 0, SW_EJSON, "_id", 9 },
	{ "{\"_id\":\"\\'\"}", 0, SW_EJSON, "_id", 9 },
	{ "{\"_id\":\"\\ud800\"}", 0, SW_EJSON, "_id", 14 },
	{ "{\"_id\":\"\\ud800\\u0041\"}", 0, SW_EJSON, "_id", 14 },
	{ "{\"_id\":\"\\udc00\\ud800\"}", 0, SW_EJSON, "_id", 8 },
	{ "{\"_id\":\"\\ud800\\n\"}", 0, SW_EJSON, "_id", 14 },
	/* raw control characters in strings */
	{ "{\"_id\":\"a\x01" "b\"}", 0, SW_EJSON, "_id", 9 },
	{ "{\"_id\":\"a\nb\"}", 0, SW_EJSON, "_id", 9 },
	{ "{\"tags\":[\"\t\"]}", 0, SW_EJSON, "tags[0]", 10 },
	{ "{\"_id\":\"a\0b\"}", 12, SW_EJSON, "_id", 9 },
	{ "{\"_id\":\"abc", 0, SW_EJSON, "_id", 11 },
	/* numbers per the strict grammar */
	{ "{\"duration\":01}", 0, SW_EJSON, "duration", 13 },
	{ "{\"duration\":-01}", 0, SW_EJSON, "duration", 14 },
	{ "{\"duration\":1.}", 0, SW_EJSON, "duration", 14 },
	{ "{\"duration\":.5}", 0, SW_EJSON, "duration", 12 },
	{ "{\"duration\":+1}", 0, SW_EJSON, "duration", 12 },
	{ "{\"duration\":-}", 0, SW_EJSON, "duration", 13 },
	{ "{\"duration\":1e}", 0, SW_EJSON, "duration", 14 },
	{ "{\"duration\":1e+}", 0, SW_EJSON, "duration", 15 },
	{ "{\"duration\":0x10}", 0, SW_EJSON, "duration", 13 },
	{ "{\"duration\":NaN}", 0, SW_EJSON, "duration", 12 },
	{ "{\"duration\":Infinity}", 0, SW_EJSON, "duration", 12 },
	{ "{\"duration\":1", 0, SW_EJSON, "duration", 13 },
	/* other grammar */
	{ "{\"_id\":\"a\",}", 0, SW_EJSON, "", 11 },
	{ "{\"tags\":[\"a\",]}", 0, SW_EJSON, "tags[1]", 13 },
	{ "{\"_id\" \"a\"}", 0, SW_EJSON, "_id", 7 },
	{ "{'_id':1}", 0, SW_EJSON, "", 1 },
	{ "{\"_id\":\"a\",\"b\\x\":1}", 0, SW_EJSON, "", 14 },
	{ "{\"billing\":{\"input_cost\":1,\"b\\x\":1}}", 0, SW_EJSON, "billing", 30 },
	{ "{\"project_id\":nul}", 0, SW_EJSON, "project_id", 17 },
	{ "{\"project_id\":True}", 0, SW_EJSON, "project_id", 14 },
	{ "{\"tags\":[\"a\" \"b\"]}", 0, SW_EJSON, "tags[0]", 13 },
	{ "{", 0, SW_EJSON, "", 1 },
	/* nesting deeper than the schema, even for unknown keys */
	{ "{\"tags\":[[\"a\"]]}", 0, SW_ETYPE, "tags[0]", 9 },
	{ "{\"billing\":{\"input_cost\":{}}}", 0, SW_ETYPE, "billing.input_cost", 25 },
	{ "{\"usage\":{\"promptTokens\":[1]}}", 0, SW_ETYPE, "usage.prompt_tokens", 25 },
	{ "{\"x\":{\"y\":{\"z\":1}}}", 0, SW_ETYPE, "x.y", 10 },
};

static void parse_rejects_each_bad_input_with_status_and_path(void)
{
	size_t i;

	for (i = 0; i < sizeof(bad_rows) / sizeof(bad_rows[0]); i++) {
		const bad_row *r = &bad_rows[i];
		size_t n = r->len ? r->len : strlen(r->json);
		sw_update *u = (sw_update *)1;
		sw_error e;
		sw_status st = parse(r->json, n, NULL, &u, &e);

		if (st != r->st || strcmp(e.path, r->path) != 0 ||
		    (r->offset != NO_OFF && e.offset != r->offset))
			printf("\n  row %zu %s: got %s path \"%s\" offset %zd: %s",
			       i, r->json, sw_errname(st), e.path,
			       (ssize_t)e.offset, e.message);
		CU_ASSERT_EQUAL(st, r->st);
		CU_ASSERT_EQUAL(e.code, r->st);
		CU_ASSERT_STRING_EQUAL(e.path, r->path);
		if (r->offset != NO_OFF)
			CU_ASSERT_EQUAL(e.offset, r->offset);
		CU_ASSERT_PTR_NULL(u);
		CU_ASSERT(e.message[0] != '\0');
	}
}

/* Messages say what was expected and what was found. */
static void parse_errors_say_expected_and_found(void)
{
	static const struct {
		const char *json, *message;
	} t[] = {
		{ "{\"duration\":\"5\"}", "expected a number, found a string" },
		{ "{\"tags\":[\"a\",true]}", "expected a string, found a boolean" },
		{ "{\"tags\":[\"a\",{}]}",
		  "expected a string or a number (the schema nests no deeper than 2 levels), found an object" },
		{ "{\"project_id\":[]}", "expected a string or null, found an array" },
		{ "{\"billing\":{\"input_cost\":1,\"output_cost\":2}}",
		  "expected input_cost, output_cost and total_cost, found no total_cost" },
		{ "{\"_id\":\"a\",\"id\":\"b\"}",
		  "expected each field once, found \"_id\" and \"id\"" },
		{ "{\"duration\":01}",
		  "expected no digit after a leading 0 (leading zeros are not allowed), found '1'" },
		{ "{\"a\":1} x",
		  "expected nothing but whitespace after the JSON value, found 'x'" },
		{ "{\"started_at\":\"2025-01-01T00:00:00Z \"}", NULL },
	};
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		sw_update *u;
		sw_error e;

		CU_ASSERT_NOT_EQUAL(parse(t[i].json, strlen(t[i].json), NULL,
					  &u, &e), SW_OK);
		if (t[i].message) {
			if (strcmp(e.message, t[i].message) != 0)
				printf("\n  %s: %s", t[i].json, e.message);
			CU_ASSERT_STRING_EQUAL(e.message, t[i].message);
		} else {
			CU_ASSERT(strlen(e.message) > 10);
		}
	}
}

/* Strings are scanned a word at a time: the first control character or
 * bad escape is found at its own offset wherever it falls in a word,
 * after ASCII or multi-byte text, and a closing quote ends the string. */
static void parse_finds_the_first_special_byte_at_every_offset(void)
{
	static const char *const fill[] = { "a", "\xc3\xa9", "\xe2\x82\xac" };
	char json[128];
	size_t f, k, n, at;
	int c;

	for (f = 0; f < 3; f++)
		for (k = 0; k < 24; k++)
			for (c = 0; c < 4; c++) {
				const char *x = c == 0 ? "\x01" : c == 1 ? "\x1f" :
						c == 2 ? "\\x" : "\"";
				sw_update *u;
				sw_error e;
				sw_status st;
				size_t i;

				n = (size_t)snprintf(json, sizeof(json), "{\"_id\":\"");
				for (i = 0; i < k; i++)
					n += (size_t)snprintf(json + n, sizeof(json) - n,
							      "%s", fill[f]);
				at = n;
				n += (size_t)snprintf(json + n, sizeof(json) - n,
						      "%s%s", x, c == 3 ?
						      ",\"tags\":[\"\\u0000\"]}" :
						      "\x02\\y\"}");
				st = parse(json, n, NULL, &u, &e);
				if (c == 3) {
					CU_ASSERT_EQUAL_FATAL(st, SW_OK);
					CU_ASSERT_EQUAL(u->id.len, at - 8);
					CU_ASSERT_EQUAL(u->n_tags, 1);
					sw_update_free(u);
					continue;
				}
				CU_ASSERT_EQUAL(st, SW_EJSON);
				CU_ASSERT_EQUAL(e.offset, c == 2 ? at + 1 : at);
				CU_ASSERT_STRING_EQUAL(e.path, "_id");
			}
}

static void parse_rejects_deep_nesting_without_recursing(void)
{
	static const char *const prefix[] = { "", "{\"a\":", "{\"tags\":",
					      "{\"billing\":{\"input_cost\":" };
	static const sw_status want[] = { SW_ETYPE, SW_ETYPE, SW_ETYPE,
					  SW_ETYPE };
	static const char *const path[] = { "", "a[0]", "tags[0]",
					    "billing.input_cost" };
	size_t depth = 100000, i, k;

	for (k = 0; k < 4; k++) {
		size_t pl = strlen(prefix[k]);
		char *s = malloc(pl + depth);
		sw_update *u;
		sw_error e;

		memcpy(s, prefix[k], pl);
		for (i = 0; i < depth; i++)
			s[pl + i] = (i & 1) && k ? '{' : '[';
		CU_ASSERT_EQUAL(parse(s, pl + depth, NULL, &u, &e), want[k]);
		CU_ASSERT_STRING_EQUAL(e.path, path[k]);
		free(s);
	}
}

static void parse_enforces_the_limits(void)
{
	sw_parse_opts o = { 0 };
	sw_update *u;
	sw_error e;
	char *big;
	size_t n = SW_DEFAULT_MAX_INPUT + 1;

	/* Over max_input: refused before anything else, even garbage. */
	big = malloc(n);
	memset(big, 0xff, n);
	CU_ASSERT_EQUAL(parse(big, n, NULL, &u, &e), SW_ETOOBIG);
	CU_ASSERT_EQUAL(parse(big, n - 1, NULL, &u, &e), SW_EUTF8);
	free(big);
	o.limits.max_input = 11;
	CU_ASSERT_EQUAL(parse(LIT("{\"_id\":\"ab\"}"), &o, &u, &e), SW_ETOOBIG);
	CU_ASSERT_EQUAL(parse(LIT("{\"_id\":\"a\"}"), &o, &u, &e), SW_OK);
	sw_update_free(u);

	memset(&o, 0, sizeof(o));
	o.limits.max_string = 3;
	CU_ASSERT_EQUAL(parse(LIT("{\"_id\":\"abcd\"}"), &o, &u, &e), SW_ETOOBIG);
	CU_ASSERT_STRING_EQUAL(e.path, "_id");
	CU_ASSERT_EQUAL(parse(LIT("{\"tags\":[\"a\",\"\\u00e9\\u00e9\"]}"), &o,
			      &u, &e), SW_ETOOBIG); /* 4 bytes decoded */
	CU_ASSERT_STRING_EQUAL(e.path, "tags[1]");
	CU_ASSERT_EQUAL(parse(LIT("{\"_id\":\"\\u00e9a\"}"), &o, &u, &e), SW_OK);
	sw_update_free(u);

	memset(&o, 0, sizeof(o));
	o.limits.max_items = 2;
	CU_ASSERT_EQUAL(parse(LIT("{\"tags\":[\"a\",\"b\",\"c\"]}"), &o, &u, &e),
			SW_ETOOBIG);
	CU_ASSERT_STRING_EQUAL(e.path, "tags");
	CU_ASSERT_EQUAL(parse(LIT("{\"contact_ids\":[\"a\",\"b\"]}"), &o, &u, &e),
			SW_OK);
	sw_update_free(u);
}

static void parse_lenient_skips_unknown_keys_only(void)
{
	sw_parse_opts o = { .lenient = true };
	sw_update *u;
	sw_error e;

	CU_ASSERT_EQUAL(parse(LIT("{\"x\":{\"y\":1},\"w\":[1,null],\"_id\":\"a\",\"billing\":{\"input_cost\":1,\"extra\":\"z\",\"output_cost\":2,\"total_cost\":3},\"usage\":{\"promptTokens\":1,\"completionTokens\":2,\"totalTokens\":3,\"cached\":9}}"),
			      &o, &u, &e), SW_OK);
	if (u != NULL) {
		CU_ASSERT_EQUAL(u->has, SW_F_ID | SW_F_BILLING | SW_F_USAGE);
		CU_ASSERT_EQUAL(u->billing[SW_TOTAL], 3);
		CU_ASSERT_EQUAL(u->usage[SW_OUT], 2);
	}
	sw_update_free(u);
	/* Off by default. */
	CU_ASSERT_EQUAL(parse(LIT("{\"x\":1}"), NULL, &u, &e), SW_EUNKNOWN);
	/* Still strict about everything else. */
	CU_ASSERT_EQUAL(parse(LIT("{\"x\":1,\"_id\":1}"), &o, &u, &e), SW_ETYPE);
	CU_ASSERT_EQUAL(parse(LIT("{\"_id\":\"a\",\"id\":\"a\"}"), &o, &u, &e),
			SW_EDUP);
	CU_ASSERT_EQUAL(parse(LIT("{\"x\":[[1]]}"), &o, &u, &e), SW_ETYPE);
	CU_ASSERT_EQUAL(parse(LIT("{\"x\":01}"), &o, &u, &e), SW_EJSON);
}

static void parse_session_kind_requires_the_session_fields(void)
{
	static const char full[] =
		"{\"_id\":\"a\",\"external_id\":\"b\",\"duration\":1,"
		"\"contact_ids\":[],\"billing\":{\"input_cost\":1,"
		"\"output_cost\":2,\"total_cost\":3},\"usage\":{"
		"\"prompt_tokens\":1,\"completion_tokens\":2,"
		"\"total_tokens\":3},\"traces_count\":1,\"tags\":[],"
		"\"workspace_id\":\"w\"}";
	sw_parse_opts o = { .kind = SW_KIND_SESSION };
	tu_failalloc fa = { -1, 0, 0 };
	sw_alloc a = tu_failalloc_hook(&fa);
	sw_update *u;
	sw_error e;

	o.alloc = &a;
	CU_ASSERT_EQUAL(parse(LIT("{\"_id\":\"a\"}"), &o, &u, &e), SW_EMISSING);
	CU_ASSERT_STRING_EQUAL(e.path, "external_id");
	CU_ASSERT_EQUAL(fa.live, 0);
	CU_ASSERT_EQUAL(parse(LIT(full), &o, &u, &e), SW_OK);
	sw_update_free(u);
	CU_ASSERT_EQUAL(fa.live, 0);
	o.kind = SW_KIND_UPDATE;
	CU_ASSERT_EQUAL(parse(LIT("{\"_id\":\"a\"}"), &o, &u, &e), SW_OK);
	sw_update_free(u);
}

/* ==== Good inputs ==== */

static bool str_is(sw_str s, const char *p, size_t n)
{
	return s.len == n && (n == 0 || memcmp(s.ptr, p, n) == 0);
}

static void parse_keeps_u0000_in_strings(void)
{
	sw_update *u;
	sw_error e;
	sw_buf b;

	CU_ASSERT_EQUAL_FATAL(parse(LIT("{\"_id\":\"a\\u0000b\",\"tags\":[\"\\u0000\",\"\\u0000\\u0000x\"],\"project_id\":\"\\\\u0000\"}"),
				    NULL, &u, &e), SW_OK);
	CU_ASSERT(str_is(u->id, "a\0b", 3));
	CU_ASSERT_EQUAL(u->n_tags, 2);
	CU_ASSERT(str_is(u->tags[0], "\0", 1));
	CU_ASSERT(str_is(u->tags[1], "\0\0x", 3));
	CU_ASSERT(str_is(u->project_id, "\\u0000", 6)); /* an escaped backslash */
	sw_buf_init(&b, 0, NULL);
	CU_ASSERT_EQUAL(sw_json_write(u, NULL, &b, &e), SW_OK);
	CU_ASSERT_STRING_EQUAL(b.data, "{\"_id\":\"a\\u0000b\",\"tags\":[\"\\u0000\",\"\\u0000\\u0000x\"],\"project_id\":\"\\\\u0000\"}");
	sw_buf_free(&b);
	sw_update_free(u);
}

static void parse_decodes_every_escape(void)
{
	sw_update *u;
	sw_error e;

	CU_ASSERT_EQUAL_FATAL(parse(LIT("{\"_id\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\u20AC\\ud83d\\ude00\\u001f\"}"),
				    NULL, &u, &e), SW_OK);
	CU_ASSERT(str_is(u->id, "\"\\/\b\f\n\r\t\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\x1f", 18));
	sw_update_free(u);
}

static void parse_reads_every_date_form(void)
{
	static const struct {
		const char *date;
		int64_t ms;
	} t[] = {
		{ "2025-05-26T17:57:26.708Z", 1748282246708LL },
		{ "2025-05-26T17:57:26Z", 1748282246000LL },
		{ "2025-05-26T17:57:26.7Z", 1748282246700LL },
		{ "2025-05-26T17:57:26.708999999Z", 1748282246708LL },
		{ "2025-05-26T19:57:26.708+02:00", 1748282246708LL },
		{ "2025-05-26T19:57:26.708+0200", 1748282246708LL },
		{ "2025-05-26T12:27:26.708-05:30", 1748282246708LL },
		{ "1969-12-31T23:59:59.999Z", -1 },
		{ "0000-01-01T00:00:00.000Z", SW_DATE_MIN_MS },
		{ "9999-12-31T23:59:59.999Z", SW_DATE_MAX_MS },
	};
	char json[128];
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		sw_update *u;
		sw_error e;
		int n = snprintf(json, sizeof(json),
				 "{\"startedAt\":\"%s\",\"updated_at\":\"%s\"}",
				 t[i].date, t[i].date);

		CU_ASSERT_EQUAL_FATAL(parse(json, (size_t)n, NULL, &u, &e), SW_OK);
		CU_ASSERT_EQUAL(u->started_at, t[i].ms);
		CU_ASSERT_EQUAL(u->updated_at, t[i].ms);
		CU_ASSERT_EQUAL(u->has, SW_F_STARTED_AT | SW_F_UPDATED_AT);
		sw_update_free(u);
	}
}

static void parse_accepts_sdk_names_and_mixed_names(void)
{
	sw_update *u;
	sw_error e;

	CU_ASSERT_EQUAL_FATAL(parse(LIT("{\"id\":\"i\",\"externalId\":\"x\",\"contactIds\":[\"c\"],\"billing\":{\"inputCost\":1,\"output_cost\":2,\"totalCost\":3},\"usage\":{\"promptTokens\":4,\"completionTokens\":5,\"total_tokens\":9},\"tracesCount\":7,\"workspaceId\":\"w\",\"projectId\":null,\"startedAt\":\"1970-01-01T00:00:00Z\",\"updatedAt\":\"1970-01-01T00:00:01Z\",\"duration\":-0}"),
				    NULL, &u, &e), SW_OK);
	CU_ASSERT_EQUAL(u->has, (1u << SW_FIELD_COUNT) - 1 - SW_F_TAGS);
	CU_ASSERT(str_is(u->id, "i", 1));
	CU_ASSERT(str_is(u->external_id, "x", 1));
	CU_ASSERT(str_is(u->workspace_id, "w", 1));
	CU_ASSERT(u->project_id_null);
	CU_ASSERT_EQUAL(u->n_contact_ids, 1);
	CU_ASSERT(str_is(u->contact_ids[0], "c", 1));
	CU_ASSERT_EQUAL(u->billing[SW_IN], 1);
	CU_ASSERT_EQUAL(u->billing[SW_TOTAL], 3);
	CU_ASSERT_EQUAL(u->usage[SW_TOTAL], 9);
	CU_ASSERT_EQUAL(u->traces_count, 7);
	CU_ASSERT_EQUAL(u->updated_at, 1000);
	CU_ASSERT(u->duration == 0 && signbit(u->duration));
	sw_update_free(u);
}

static void parse_takes_whitespace_and_empty_values(void)
{
	sw_update *u;
	sw_error e;

	CU_ASSERT_EQUAL_FATAL(parse(LIT(" \t\n\r{ \"_id\" : \"\" ,\n\"tags\" : [ ] , \"contact_ids\":[],\"project_id\":\"\" } \n"),
				    NULL, &u, &e), SW_OK);
	CU_ASSERT_EQUAL(u->has, SW_F_ID | SW_F_TAGS | SW_F_CONTACT_IDS | SW_F_PROJECT_ID);
	CU_ASSERT_EQUAL(u->id.len, 0);
	CU_ASSERT_EQUAL(u->n_tags, 0);
	CU_ASSERT_FALSE(u->project_id_null);
	sw_update_free(u);
	CU_ASSERT_EQUAL_FATAL(parse(LIT("{}"), NULL, &u, &e), SW_OK);
	CU_ASSERT_EQUAL(u->has, 0);
	sw_update_free(u);
}

/* Long number tokens (cJSON copies at most 63 characters of a number). */
static void parse_reads_long_numbers_exactly(void)
{
	static const char *const nums[] = {
		"1.0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000001",
		"123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890.5",
		"0.00000000000000000000000000000000000000000000000000000000000000000000000000000000000015",
		"-0.000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
		"9007199254740993.0000000000000000000000000000000000000000000000000000000000000000000000001",
		"2.47032822920623272088284396434110686182529901307162382212792841250337753635104375932649918180817996189898282347722858865463328355177969898199387398005390939063150356595155702263922908583924491051844359318028499365361525003193704576782492193656236698636584807570015857692699037063119282795585513329278343384093519780155312465972635795746227664652728272200563740064854999770965994704540208281662262378573934507363390079677619305775067401763246736009689513405355374585166611342237666786041621596804619144672918403005300575308490487653917113865916462395249126236538818796362393732804238910186723484976682350898633885879256283027559956575244555072551893136908362547791869486679949683240497058210285131854513962138377228261454376934125320985913276672363281250000000000001e-324",
	};
	char json[2048];
	size_t i;

	for (i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
		double want = strtod(nums[i], NULL);
		sw_update *u;
		sw_error e;
		int n = snprintf(json, sizeof(json),
				 "{\"duration\":%s,\"tags\":[\"\\u0000\"],\"billing\":{\"input_cost\":%s,\"output_cost\":1,\"total_cost\":2}}",
				 nums[i], nums[i]);

		CU_ASSERT_FATAL(n > 0 && (size_t)n < sizeof(json));
		CU_ASSERT_EQUAL_FATAL(parse(json, (size_t)n, NULL, &u, &e), SW_OK);
		CU_ASSERT_EQUAL(memcmp(&u->duration, &want, sizeof(want)), 0);
		CU_ASSERT_EQUAL(memcmp(&u->billing[SW_IN], &want, sizeof(want)), 0);
		sw_update_free(u);
	}
	/* Just above half the smallest subnormal: rounds up to it only if the
	 * rewrite kept the last digit's weight. */
	CU_ASSERT(strtod(nums[5], NULL) > 0);
}

/* A random number token of every form the grammar has: sign, integer
 * digits (0 alone, or up to 20), a fraction (up to 20 digits, often
 * after zeros), an exponent (e or E, with or without a sign, small or up
 * to 330). out has room for 64 bytes. */
static unsigned next_random(unsigned long *seed)
{
	*seed = *seed * 6364136223846793005UL + 1442695040888963407UL;
	return (unsigned)(*seed >> 33);
}

static size_t random_number(unsigned long *seed, char *out)
{
	size_t n = 0, k, i;

#define RND() next_random(seed)
	if (RND() % 3 == 0)
		out[n++] = '-';
	k = RND() % 21;
	if (k == 0) {
		out[n++] = '0';
	} else {
		out[n++] = (char)('1' + RND() % 9);
		for (i = 1; i < k; i++)
			out[n++] = (char)('0' + RND() % 10);
	}
	if (RND() % 3 != 0) {
		out[n++] = '.';
		k = 1 + RND() % 20;
		for (i = 0; i < k; i++)
			out[n++] = (char)(i < k / 2 && RND() % 2 ? '0' :
					  '0' + RND() % 10);
	}
	if (RND() % 3 == 0) {
		out[n++] = RND() % 2 ? 'e' : 'E';
		if (RND() % 3 != 0)
			out[n++] = RND() % 2 ? '-' : '+';
		k = RND() % 4 ? RND() % 30 : RND() % 331;
		n += (size_t)snprintf(out + n, 16, "%zu", k);
	}
#undef RND
	out[n] = '\0';
	return n;
}

/* Every number reads as strtod_l in the C locale reads it, bit for bit
 * (the exact fast path for short numbers included), in each rounding
 * mode. valgrind (--quick) emulates SSE in round-to-nearest only. */
static void parse_reads_numbers_as_strtod_l_does(void)
{
	static const int modes[] = { FE_TONEAREST, FE_UPWARD, FE_DOWNWARD,
				     FE_TOWARDZERO };
	locale_t c_loc = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
	unsigned long seed = 7;
	long i, count = tu_quick ? 5000 : 100000, wrong = 0;
	size_t m;

	CU_ASSERT_FATAL(c_loc != (locale_t)0);
	for (m = 0; m < (tu_quick ? 1 : sizeof(modes) / sizeof(modes[0])); m++) {
		CU_ASSERT_EQUAL_FATAL(fesetround(modes[m]), 0);
		for (i = 0; i < count; i++) {
			char num[80], json[128];
			size_t n = random_number(&seed, num);
			int len = snprintf(json, sizeof(json), "{\"duration\":%s}",
					   num);
			double want = strtod_l(num, NULL, c_loc);
			sw_update *u;
			sw_error e;
			sw_status st = parse(json, (size_t)len, NULL, &u, &e);

			(void)n;
			if (!isfinite(want)) {
				CU_ASSERT_EQUAL(st, SW_ERANGE);
				continue;
			}
			CU_ASSERT_EQUAL_FATAL(st, SW_OK);
			if (memcmp(&u->duration, &want, sizeof(want)) != 0 &&
			    wrong++ < 5)
				printf("\n  mode %zu: %s read as %.17g, not %.17g",
				       m, num, u->duration, want);
			sw_update_free(u);
		}
	}
	fesetround(FE_TONEAREST);
	CU_ASSERT_EQUAL(wrong, 0);
	freelocale(c_loc);
}

static void parse_long_number_overflow_is_erange(void)
{
	char json[600];
	sw_update *u;
	sw_error e;
	int n;

	n = snprintf(json, sizeof(json), "{\"tracesCount\":-1%0400d}", 0);
	CU_ASSERT_EQUAL(parse(json, (size_t)n, NULL, &u, &e), SW_ERANGE);
	CU_ASSERT_STRING_EQUAL(e.path, "traces_count");
}

/* The input need not be NUL-terminated (ASan checks no byte past it is
 * read), with and without a sanitised copy. */
static void parse_reads_no_byte_past_len(void)
{
	static const char *const t[] = {
		"{\"_id\":\"abc\",\"duration\":12}",
		"{\"_id\":\"a\\u0000\",\"duration\":1.000000000000000000000000000000000000000000000000000000000000000001}",
		"{\"duration\":12",
		"{\"_id\":\"abc",
		"{\"_id\":\"a\\",
		"{\"_id\":\"\\u00",
		"{\"_id\":\"\\ud800\\u",
		"{\"duration\":-",
		"{\"p\":nul",
		"{\"duration\":1e+",
	};
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		size_t n = strlen(t[i]);
		char *p = malloc(n);
		sw_update *u;
		sw_error e;
		sw_status st;

		memcpy(p, t[i], n);
		st = parse(p, n, NULL, &u, &e);
		CU_ASSERT_EQUAL(st, i < 2 ? SW_OK : SW_EJSON);
		sw_update_free(u);
		free(p);
	}
}

/* ==== Sameness with the cJSON-based parser ====
 * Up to commit e2208e2 the parser read the input with cJSON (over a sanitised
 * copy) after the strict scan. These rows are what that parser gave, in
 * corners the vectors do not reach: escaped keys that are field names,
 * escaped dates, keys with U+0000, lenient skipping over brackets in
 * strings, numbers at the ends of the double range, wrong types. Each
 * row: the input, lenient or not, the status, then the error's path,
 * message and offset, or for SW_OK the canonical text. */

typedef struct cjson_row {
	const char *json;
	int lenient;
	sw_status st;
	const char *path_or_text, *message;
	size_t offset;
} cjson_row;

static const cjson_row cjson_rows[] = {
	{ "{\"\\u005fid\":\"a\",\"\\u0069d\":\"b\"}", 0, SW_EDUP, "_id", "expected each field once, found \"_id\" and \"id\"", NO_OFF },
	{ "{\"id\":\"a\",\"_i\\u0064\":\"b\"}", 0, SW_EDUP, "_id", "expected each field once, found \"id\" and \"_id\"", NO_OFF },
	{ "{\"billing\":{\"inputCost\":1,\"input\\u005fcost\":2,\"output_cost\":2,\"total_cost\":3}}", 0, SW_EDUP, "billing.input_cost", "expected each member once, found \"inputCost\" and \"input_cost\"", NO_OFF },
	{ "{\"usage\":{\"total_tokens\":1,\"totalTokens\":2}}", 0, SW_EDUP, "usage.total_tokens", "expected each member once, found \"total_tokens\" and \"totalTokens\"", NO_OFF },
	{ "{\"billing\":{\"a\\u0000\":1}}", 0, SW_EUNKNOWN, "billing.a?", "expected input_cost, output_cost or total_cost", NO_OFF },
	{ "{\"billing\":{\"\\u00e9t\\u00e9\":1}}", 0, SW_EUNKNOWN, "billing.\xc3" "\xa9" "t\xc3" "\xa9" "", "expected input_cost, output_cost or total_cost", NO_OFF },
	{ "{\"x\\u0000y\":1}", 0, SW_EUNKNOWN, "x?y", "expected a field of the update body (_id, external_id, duration, ...), found an unknown key", NO_OFF },
	{ "{\"\\ud83d\\ude00\":1}", 0, SW_EUNKNOWN, "\xf0" "\x9f" "\x98" "\x80" "", "expected a field of the update body (_id, external_id, duration, ...), found an unknown key", NO_OFF },
	{ "{\"started_at\":\"\\u0032025-05-26T17:57:26.708Z\"}", 0, SW_OK, "{\"started_at\":\"2025-05-26T17:57:26.708Z\"}", NULL, NO_OFF },
	{ "{\"started_at\":\"2025-05-26T17:57:26.708\\u005a\"}", 0, SW_OK, "{\"started_at\":\"2025-05-26T17:57:26.708Z\"}", NULL, NO_OFF },
	{ "{\"updated_at\":\"\\u0032025-05-26T17:57:26.70877777777777777777777777777777777777777777777777777777777777777777777777777Z\"}", 0, SW_OK, "{\"updated_at\":\"2025-05-26T17:57:26.708Z\"}", NULL, NO_OFF },
	{ "{\"updated_at\":\"\\u0032025-05-26T17:57:26.70877777777777777777777777777777777777777777777777777777777777777777777777777\\u0000\"}", 0, SW_EDATE, "updated_at", "expected Z, +HH:MM or -HH:MM after the time", NO_OFF },
	{ "{\"started_at\":\"2025-05-26\\u0000T17:57:26Z\"}", 0, SW_EDATE, "started_at", "expected 'T' between date and time", NO_OFF },
	{ "{\"started_at\":\"2025-05-26t17:57:26Z\"}", 0, SW_EDATE, "started_at", "expected uppercase 'T' between date and time, found lowercase 't'", NO_OFF },
	{ "{\"x\":{\"y\":\"}]\\\"\",\"z\":\"]\"},\"_id\":\"a\",\"w\":[\"]\",\"{\",-1.5e-3,true,null],\"v\":true}", 1, SW_OK, "{\"_id\":\"a\"}", NULL, NO_OFF },
	{ "{\"billing\":{\"x\":\"}\",\"input_cost\":1,\"output_cost\":2,\"total_cost\":3,\"y\":\"{\"}}", 1, SW_OK, "{\"billing\":{\"input_cost\":1,\"output_cost\":2,\"total_cost\":3}}", NULL, NO_OFF },
	{ "{\"billing\":{}}", 1, SW_EMISSING, "billing.input_cost", "expected input_cost, output_cost and total_cost, found no input_cost", NO_OFF },
	{ "{\"tags\":[\"a\\u0000\",\"\\\\u0000\",\"\\u20ac\\ud83d\\ude00\"],\"_id\":\"\\/\\b\\f\\n\\r\\t\"}", 0, SW_OK, "{\"_id\":\"/\\b\\f\\n\\r\\t\",\"tags\":[\"a\\u0000\",\"\\\\u0000\",\"\xe2" "\x82" "\xac" "\xf0" "\x9f" "\x98" "\x80" "\"]}", NULL, NO_OFF },
	{ "{\"duration\":-0.000000000000000000000000000000000000000000000000000000000000000000000000001e-300}", 0, SW_OK, "{\"duration\":0}", NULL, NO_OFF },
	{ "{\"duration\":123456789012345678901234567890123456789012345678901234567890123456789e240}", 0, SW_OK, "{\"duration\":1.2345678901234567e+308}", NULL, NO_OFF },
	{ "{\"traces_count\":1e308,\"duration\":1.7976931348623158e308}", 0, SW_OK, "{\"duration\":1.7976931348623157e+308,\"traces_count\":1e+308}", NULL, NO_OFF },
	{ "{\"traces_count\":1.7976931348623159e308}", 0, SW_ERANGE, "traces_count", "expected a finite number, found one that overflows to infinity", NO_OFF },
	{ "{\"duration\":4.9406564584124654e-324,\"traces_count\":2.4703282292062328e-324}", 0, SW_OK, "{\"duration\":5e-324,\"traces_count\":5e-324}", NULL, NO_OFF },
	{ "{\"project_id\":true}", 0, SW_ETYPE, "project_id", "expected a string or null, found a boolean", NO_OFF },
	{ "{\"project_id\":1}", 0, SW_ETYPE, "project_id", "expected a string or null, found a number", NO_OFF },
	{ "{\"external_id\":false}", 0, SW_ETYPE, "external_id", "expected a string, found a boolean", NO_OFF },
	{ "{\"workspace_id\":[]}", 0, SW_ETYPE, "workspace_id", "expected a string, found an array", NO_OFF },
	{ "{\"contact_ids\":{}}", 0, SW_ETYPE, "contact_ids", "expected an array of strings, found an object", NO_OFF },
	{ "{\"contact_ids\":[\"a\",[]]}", 0, SW_ETYPE, "contact_ids[1]", "expected a string or a number (the schema nests no deeper than 2 levels), found an array", 20 },
	{ "{\"usage\":\"x\"}", 0, SW_ETYPE, "usage", "expected an object, found a string", NO_OFF },
	{ "{\"usage\":{\"promptTokens\":null,\"x\":1}}", 0, SW_ETYPE, "usage.prompt_tokens", "expected a number, found null", NO_OFF },
	{ "{\"usage\":{\"promptTokens\":1,\"x\":1}}", 1, SW_EMISSING, "usage.completion_tokens", "expected prompt_tokens, completion_tokens and total_tokens, found no completion_tokens", NO_OFF },
	{ "{\"startedAt\":[]}", 0, SW_ETYPE, "started_at", "expected a date-time string, found an array", NO_OFF },
	{ "{\"updated_at\":{}}", 0, SW_ETYPE, "updated_at", "expected a date-time string, found an object", NO_OFF },
	{ "{\"duration\":[1]}", 0, SW_ETYPE, "duration", "expected a number, found an array", NO_OFF },
	{ "{\"duration\":{}}", 0, SW_ETYPE, "duration", "expected a number, found an object", NO_OFF },
	{ "{ \"_id\" : \"a\" , \"tags\" : [ \"x\" , \"y\" ] , \"billing\" : { \"input_cost\" : 1 , \"output_cost\" : 2 , \"total_cost\" : 3 } }", 0, SW_OK, "{\"_id\":\"a\",\"billing\":{\"input_cost\":1,\"output_cost\":2,\"total_cost\":3},\"tags\":[\"x\",\"y\"]}", NULL, NO_OFF },
};

static void parse_gives_what_the_cjson_parser_gave(void)
{
	size_t i;

	for (i = 0; i < sizeof(cjson_rows) / sizeof(cjson_rows[0]); i++) {
		const cjson_row *r = &cjson_rows[i];
		sw_parse_opts o = { .lenient = r->lenient != 0 };
		sw_update *u;
		sw_error e;
		sw_status st = parse(r->json, strlen(r->json), &o, &u, &e);
		sw_buf b;

		CU_ASSERT_EQUAL(st, r->st);
		if (st != r->st)
			printf("\n  row %zu %s: %s %s: %s", i, r->json,
			       sw_errname(st), e.path, e.message);
		if (st != SW_OK) {
			CU_ASSERT_PTR_NULL(u);
			CU_ASSERT_EQUAL(e.offset, r->offset);
			CU_ASSERT_STRING_EQUAL(e.path, r->path_or_text);
			CU_ASSERT_STRING_EQUAL(e.message, r->message ? r->message : "");
			continue;
		}
		sw_buf_init(&b, 0, NULL);
		CU_ASSERT_EQUAL(sw_json_write(u, NULL, &b, NULL), SW_OK);
		CU_ASSERT_STRING_EQUAL(b.data, r->path_or_text);
		sw_buf_free(&b);
		sw_update_free(u);
	}
}

/* A long unknown key is named by as many whole characters as the path
 * holds (SW_ERROR_PATH_MAX - 1 bytes), escaped or not, at any alignment
 * of its multi-byte characters against the end. */
static void parse_names_long_escaped_keys_by_whole_characters(void)
{
	static const struct {
		const char *esc, *utf8;
	} unit[] = { { "\\u00e9", "\xc3\xa9" }, { "\\u20ac", "\xe2\x82\xac" },
		     { "\\ud83d\\ude00", "\xf0\x9f\x98\x80" }, { "\\n", "?" },
		     { "\\u0000", "?" }, { "\xc3\xa9", "\xc3\xa9" } };
	char json[2048], want[SW_ERROR_PATH_MAX];
	size_t k, pre, inner;

	for (k = 0; k < sizeof(unit) / sizeof(unit[0]); k++)
		for (pre = 0; pre < 4; pre++)
			for (inner = 0; inner < 2; inner++) {
				size_t ul = strlen(unit[k].utf8), at, n = 0, i;
				sw_update *u;
				sw_error e;

				n += (size_t)snprintf(json, sizeof(json), "%s\"",
						      inner ? "{\"billing\":{" : "{");
				snprintf(want, sizeof(want), "%s",
					 inner ? "billing." : "");
				at = strlen(want);
				for (i = 0; i < pre; i++) {
					json[n++] = 'a';
					want[at++] = 'a';
				}
				for (i = 0; i < 60; i++) {
					n += (size_t)snprintf(json + n, sizeof(json) - n,
							      "%s", unit[k].esc);
					if (at + ul < SW_ERROR_PATH_MAX) {
						memcpy(want + at, unit[k].utf8, ul);
						at += ul;
					}
				}
				want[at] = '\0';
				n += (size_t)snprintf(json + n, sizeof(json) - n,
						      "\":1%s", inner ? "}}" : "}");
				CU_ASSERT_EQUAL(parse(json, n, NULL, &u, &e), SW_EUNKNOWN);
				CU_ASSERT_STRING_EQUAL(e.path, want);
			}
}

/* ==== Allocation failure ==== */
static void parse_fails_cleanly_at_every_allocation(void)
{
	/* Each input with the allocations it takes: the result block, and a
	 * passing one for an escaped date longer than any sane date. */
	static const struct {
		const char *json;
		long allocs;
	} t[] = {
		{ "{}", 1 },
		{ "{\"_id\":\"a\",\"tags\":[\"x\",\"y\"],\"billing\":{\"input_cost\":1,\"output_cost\":2,\"total_cost\":3}}", 1 },
		{ "{\"externalId\":\"\\u0000\",\"duration\":1.0000000000000000000000000000000000000000000000000000000000000000001}", 1 },
		{ "{\"_id\":\"a\",\"nope\":[1,2,\"x\"],\"x\":{}}", 1 },
		{ "{\"started_at\":\"\\u0032025-05-26T17:57:26.708000000000000000000000000000000000000000000000000000000Z\"}", 2 },
	};
	tu_failalloc fa;
	sw_alloc a = tu_failalloc_hook(&fa);
	sw_parse_opts o = { .lenient = true, .alloc = &a };
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		long k, failures = 0;

		for (k = 0; k < 1000; k++) {
			sw_update *u;
			sw_error e;
			sw_status st;

			/* read by the hook in o.alloc, which cppcheck cannot see */
			/* cppcheck-suppress unreadVariable */
			fa.fail_at = k;
			fa.calls = 0;
			fa.live = 0;
			st = parse(t[i].json, strlen(t[i].json), &o, &u, &e);
			if (st == SW_OK) {
				CU_ASSERT_EQUAL(fa.live, 1);
				sw_update_free(u);
				CU_ASSERT_EQUAL(fa.live, 0);
				break;
			}
			failures++;
			if (st != SW_ENOMEM)
				printf("\n  input %zu, allocation %ld: %s %s",
				       i, k, sw_errname(st), e.message);
			CU_ASSERT_EQUAL(st, SW_ENOMEM);
			CU_ASSERT_PTR_NULL(u);
			CU_ASSERT_EQUAL(fa.live, 0);
		}
		/* Every allocation was failed once. */
		CU_ASSERT_EQUAL(failures, t[i].allocs);
		CU_ASSERT_EQUAL(fa.calls, t[i].allocs);
	}
}

/* ==== The writer ==== */

/* An update with every field, and its canonical text. */
static const sw_str full_tags[2] = { { "x", 1 }, { "y", 1 } };

static void full_update(sw_update *u)
{
	sw_update_init(u);
	sw_update_set_id(u, "a", 1);
	sw_update_set_external_id(u, "e\"\\/\x7f", 5);
	sw_update_set_duration(u, 1.5);
	sw_update_set_contact_ids(u, NULL, 0);
	sw_update_set_billing(u, 1, 2, 3);
	sw_update_set_usage(u, 1e21, 1e-7, -0.0);
	sw_update_set_traces_count(u, 4);
	sw_update_set_tags(u, full_tags, 2);
	sw_update_set_workspace_id(u, "\xe2\x80\xa8", 3);
	sw_update_set_project_id_null(u);
	sw_update_set_started_at(u, 0);
	sw_update_set_updated_at(u, -1);
}

static const char full_wire[] =
	"{\"_id\":\"a\",\"external_id\":\"e\\\"\\\\/\x7f\",\"duration\":1.5,"
	"\"contact_ids\":[],\"billing\":{\"input_cost\":1,\"output_cost\":2,"
	"\"total_cost\":3},\"usage\":{\"prompt_tokens\":1e+21,"
	"\"completion_tokens\":1e-7,\"total_tokens\":0},\"traces_count\":4,"
	"\"tags\":[\"x\",\"y\"],\"workspace_id\":\"\xe2\x80\xa8\","
	"\"project_id\":null,\"started_at\":\"1970-01-01T00:00:00.000Z\","
	"\"updated_at\":\"1969-12-31T23:59:59.999Z\"}";

static void write_full_update_is_canonical(void)
{
	sw_update u;
	sw_error e;
	sw_buf b;

	full_update(&u);
	sw_buf_init(&b, 0, NULL);
	CU_ASSERT_EQUAL(sw_buf_append(&b, "prefix:", 7), SW_OK);
	sw_error_clear(&e);
	CU_ASSERT_EQUAL(sw_json_write(&u, NULL, &b, &e), SW_OK);
	CU_ASSERT_STRING_EQUAL(b.data + 7, full_wire);
	CU_ASSERT_EQUAL(b.len, 7 + strlen(full_wire));
	CU_ASSERT_EQUAL(memcmp(b.data, "prefix:", 7), 0); /* appends */
	sw_buf_free(&b);
}

static void write_sdk_names(void)
{
	static const char want[] =
		"{\"id\":\"a\",\"externalId\":\"e\\\"\\\\/\x7f\",\"duration\":1.5,"
		"\"contactIds\":[],\"billing\":{\"inputCost\":1,\"outputCost\":2,"
		"\"totalCost\":3},\"usage\":{\"promptTokens\":1e+21,"
		"\"completionTokens\":1e-7,\"totalTokens\":0},\"tracesCount\":4,"
		"\"tags\":[\"x\",\"y\"],\"workspaceId\":\"\xe2\x80\xa8\","
		"\"projectId\":null,\"startedAt\":\"1970-01-01T00:00:00.000Z\","
		"\"updatedAt\":\"1969-12-31T23:59:59.999Z\"}";
	sw_write_opts wo = { SW_NAMES_SDK, false };
	sw_update u;
	sw_buf b;

	full_update(&u);
	sw_buf_init(&b, 0, NULL);
	CU_ASSERT_EQUAL(sw_json_write(&u, &wo, &b, NULL), SW_OK);
	CU_ASSERT_STRING_EQUAL(b.data, want);
	sw_buf_free(&b);
}

/* Compared with node -e 'console.log(JSON.stringify(x, null, 2))'. */
static void write_pretty_is_json_stringify_2(void)
{
	static const char want[] =
		"{\n"
		"  \"_id\": \"a\",\n"
		"  \"contact_ids\": [],\n"
		"  \"billing\": {\n"
		"    \"input_cost\": 1,\n"
		"    \"output_cost\": 2,\n"
		"    \"total_cost\": 3\n"
		"  },\n"
		"  \"tags\": [\n"
		"    \"x\",\n"
		"    \"y\"\n"
		"  ],\n"
		"  \"project_id\": null,\n"
		"  \"started_at\": \"1970-01-01T00:00:00.000Z\"\n"
		"}";
	sw_write_opts wo = { SW_NAMES_WIRE, true };
	sw_update u;
	sw_buf b;

	sw_update_init(&u);
	sw_update_set_id(&u, "a", 1);
	sw_update_set_contact_ids(&u, NULL, 0);
	sw_update_set_billing(&u, 1, 2, 3);
	sw_update_set_tags(&u, full_tags, 2);
	sw_update_set_project_id_null(&u);
	sw_update_set_started_at(&u, 0);
	sw_buf_init(&b, 0, NULL);
	CU_ASSERT_EQUAL(sw_json_write(&u, &wo, &b, NULL), SW_OK);
	CU_ASSERT_STRING_EQUAL(b.data, want);
	sw_buf_reset(&b);
	sw_update_init(&u);
	CU_ASSERT_EQUAL(sw_json_write(&u, &wo, &b, NULL), SW_OK);
	CU_ASSERT_STRING_EQUAL(b.data, "{}");
	sw_buf_free(&b);
}

/* Only " \ and U+0000..U+001F are escaped, as JSON.stringify does. */
static void write_escapes_like_json_stringify(void)
{
	static const char want[] =
		"{\"_id\":\"\\u0000\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006"
		"\\u0007\\b\\t\\n\\u000b\\f\\r\\u000e\\u000f\\u0010\\u0011\\u0012"
		"\\u0013\\u0014\\u0015\\u0016\\u0017\\u0018\\u0019\\u001a\\u001b"
		"\\u001c\\u001d\\u001e\\u001f\\\"\\\\/\x7f\xe2\x80\xa8\xc3\xa9"
		"\xc2\x80\"}";
	char s[48];
	sw_update u;
	sw_buf b;
	int i;

	for (i = 0; i < 32; i++)
		s[i] = (char)i;
	memcpy(s + 32, "\"\\/\x7f\xe2\x80\xa8\xc3\xa9\xc2\x80", 12);
	sw_update_init(&u);
	sw_update_set_id(&u, s, 43);
	sw_buf_init(&b, 0, NULL);
	CU_ASSERT_EQUAL(sw_json_write(&u, NULL, &b, NULL), SW_OK);
	CU_ASSERT_STRING_EQUAL(b.data, want);
	sw_buf_free(&b);
}

static void write_rejects_non_finite_numbers_and_restores(void)
{
	static const struct {
		int field, idx;
		double x;
		const char *path;
	} t[] = {
		{ 0, 0, NAN, "duration" },
		{ 0, 0, INFINITY, "duration" },
		{ 1, 0, -INFINITY, "traces_count" },
		{ 2, 2, NAN, "billing.total_cost" },
		{ 3, 1, NAN, "usage.completion_tokens" },
	};
	size_t i;
	sw_buf b;

	sw_buf_init(&b, 0, NULL);
	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		sw_update u;
		sw_error e;

		full_update(&u);
		if (t[i].field == 0)
			u.duration = t[i].x;
		else if (t[i].field == 1)
			u.traces_count = t[i].x;
		else if (t[i].field == 2)
			u.billing[t[i].idx] = t[i].x;
		else
			u.usage[t[i].idx] = t[i].x;
		sw_buf_reset(&b);
		CU_ASSERT_EQUAL(sw_buf_append(&b, "keep", 4), SW_OK);
		sw_error_clear(&e);
		CU_ASSERT_EQUAL(sw_json_write(&u, NULL, &b, &e), SW_ERANGE);
		CU_ASSERT_STRING_EQUAL(e.path, t[i].path);
		CU_ASSERT_EQUAL(b.len, 4);
		CU_ASSERT_STRING_EQUAL(b.data, "keep");
	}
	sw_buf_free(&b);
}

static void write_rejects_dates_outside_0000_9999(void)
{
	sw_update u;
	sw_error e;
	sw_buf b;

	full_update(&u);
	u.updated_at = SW_DATE_MAX_MS + 1;
	sw_buf_init(&b, 0, NULL);
	sw_error_clear(&e);
	CU_ASSERT_EQUAL(sw_json_write(&u, NULL, &b, &e), SW_EDATE);
	CU_ASSERT_STRING_EQUAL(e.path, "updated_at");
	CU_ASSERT_EQUAL(b.len, 0);
	u.updated_at = SW_DATE_MIN_MS - 1;
	CU_ASSERT_EQUAL(sw_json_write(&u, NULL, &b, NULL), SW_EDATE);
	sw_buf_free(&b);
}

/* A fixed buffer: every size too small fails with SW_EBUFSZ and writes
 * nothing past cap; the exact size works. */
static void write_fixed_buffer_at_every_size(void)
{
	static const sw_write_opts opts[2] = { { SW_NAMES_WIRE, false },
					       { SW_NAMES_SDK, true } };
	sw_str big[3] = { { "\x01\x01\x01\x01\x01\x01\x01\x01", 8 },
			  { "plain", 5 }, { "\"\"", 2 } };
	size_t need, cap;
	int k;

	for (k = 0; k < 2; k++) {
		unsigned char mem[1024];
		sw_update u;
		sw_buf b;
		sw_error e;

		full_update(&u);
		sw_update_set_tags(&u, big, 3);
		sw_buf_init(&b, 0, NULL);
		CU_ASSERT_EQUAL_FATAL(sw_json_write(&u, &opts[k], &b, NULL), SW_OK);
		need = b.len;
		CU_ASSERT_FATAL(need + 1 < sizeof(mem) - 16);
		for (cap = 0; cap <= need + 1; cap++) {
			sw_buf f;
			sw_status st;

			memset(mem, 0xAA, sizeof(mem));
			sw_buf_init_fixed(&f, mem, cap);
			sw_error_clear(&e);
			st = sw_json_write(&u, &opts[k], &f, &e);
			if (cap <= need) {
				CU_ASSERT_EQUAL(st, SW_EBUFSZ);
				CU_ASSERT_EQUAL(f.len, 0);
				CU_ASSERT(cap == 0 || mem[0] == 0);
			} else {
				CU_ASSERT_EQUAL(st, SW_OK);
				CU_ASSERT_EQUAL(f.len, need);
				CU_ASSERT_EQUAL(memcmp(mem, b.data, need + 1), 0);
			}
			CU_ASSERT_EQUAL(mem[cap], 0xAA); /* nothing past cap */
		}
		sw_buf_free(&b);
	}
}

static void write_growable_buffer_failures_restore_the_buffer(void)
{
	tu_failalloc fa = { 0, 0, 0 };
	sw_alloc a = tu_failalloc_hook(&fa);
	sw_update u;
	sw_buf b;
	sw_error e;

	long k;

	full_update(&u);
	/* Each allocation fails in turn: either the writer gets by without
	 * it (it first asks for a generous size) or it fails cleanly. */
	for (k = 0; k < 4; k++) {
		sw_status st;

		fa.fail_at = k;
		fa.calls = 0;
		sw_buf_init(&b, 0, &a);
		sw_error_clear(&e);
		st = sw_json_write(&u, NULL, &b, &e);
		if (st == SW_OK) {
			CU_ASSERT_STRING_EQUAL(b.data, full_wire);
		} else {
			CU_ASSERT_EQUAL(st, SW_ENOMEM);
			CU_ASSERT_EQUAL(b.len, 0);
		}
		sw_buf_free(&b);
		CU_ASSERT_EQUAL(fa.live, 0);
	}
	/* Memory for nothing at all. */
	fa.fail_at = 0;
	fa.calls = 0;
	sw_buf_init(&b, 100, &a);
	CU_ASSERT_EQUAL(sw_json_write(&u, NULL, &b, &e), SW_ENOMEM);
	CU_ASSERT_EQUAL(b.len, 0);
	sw_buf_free(&b);
	CU_ASSERT_EQUAL(fa.live, 0);
	/* A hard cap below the output. */
	fa.fail_at = -1;
	sw_buf_init(&b, 50, &a);
	CU_ASSERT_EQUAL(sw_buf_append(&b, "ab", 2), SW_OK);
	CU_ASSERT_EQUAL(sw_json_write(&u, NULL, &b, NULL), SW_ETOOBIG);
	CU_ASSERT_EQUAL(b.len, 2);
	CU_ASSERT_STRING_EQUAL(b.data, "ab");
	sw_buf_free(&b);
	CU_ASSERT_EQUAL(fa.live, 0);
	/* A cap that fits exactly. */
	sw_buf_init(&b, strlen(full_wire), &a);
	CU_ASSERT_EQUAL(sw_json_write(&u, NULL, &b, NULL), SW_OK);
	CU_ASSERT_STRING_EQUAL(b.data, full_wire);
	sw_buf_free(&b);
	CU_ASSERT_EQUAL(fa.live, 0);
}

static void write_then_parse_round_trips_in_both_namings(void)
{
	static const sw_write_opts opts[4] = {
		{ SW_NAMES_WIRE, false }, { SW_NAMES_SDK, false },
		{ SW_NAMES_WIRE, true }, { SW_NAMES_SDK, true } };
	sw_update u, *back;
	sw_buf b;
	int k;

	full_update(&u);
	u.usage[SW_TOTAL] = 0; /* -0 is written 0 */
	sw_buf_init(&b, 0, NULL);
	for (k = 0; k < 4; k++) {
		sw_error e;

		sw_buf_reset(&b);
		CU_ASSERT_EQUAL(sw_json_write(&u, &opts[k], &b, NULL), SW_OK);
		CU_ASSERT_EQUAL_FATAL(parse(b.data, b.len, NULL, &back, &e), SW_OK);
		CU_ASSERT(sw_update_equal(&u, back));
		sw_update_free(back);
	}
	sw_buf_free(&b);
}

int init_json_tests(void)
{
	CU_pSuite s = CU_add_suite("json", NULL, NULL);

	if (s == NULL)
		return -1;
	CU_add_test(s, "parse_rejects_each_bad_input_with_status_and_path", parse_rejects_each_bad_input_with_status_and_path);
	CU_add_test(s, "parse_errors_say_expected_and_found", parse_errors_say_expected_and_found);
	CU_add_test(s, "parse_finds_the_first_special_byte_at_every_offset", parse_finds_the_first_special_byte_at_every_offset);
	CU_add_test(s, "parse_rejects_deep_nesting_without_recursing", parse_rejects_deep_nesting_without_recursing);
	CU_add_test(s, "parse_enforces_the_limits", parse_enforces_the_limits);
	CU_add_test(s, "parse_lenient_skips_unknown_keys_only", parse_lenient_skips_unknown_keys_only);
	CU_add_test(s, "parse_session_kind_requires_the_session_fields", parse_session_kind_requires_the_session_fields);
	CU_add_test(s, "parse_keeps_u0000_in_strings", parse_keeps_u0000_in_strings);
	CU_add_test(s, "parse_decodes_every_escape", parse_decodes_every_escape);
	CU_add_test(s, "parse_reads_every_date_form", parse_reads_every_date_form);
	CU_add_test(s, "parse_accepts_sdk_names_and_mixed_names", parse_accepts_sdk_names_and_mixed_names);
	CU_add_test(s, "parse_takes_whitespace_and_empty_values", parse_takes_whitespace_and_empty_values);
	CU_add_test(s, "parse_reads_long_numbers_exactly", parse_reads_long_numbers_exactly);
	CU_add_test(s, "parse_reads_numbers_as_strtod_l_does", parse_reads_numbers_as_strtod_l_does);
	CU_add_test(s, "parse_long_number_overflow_is_erange", parse_long_number_overflow_is_erange);
	CU_add_test(s, "parse_reads_no_byte_past_len", parse_reads_no_byte_past_len);
	CU_add_test(s, "parse_gives_what_the_cjson_parser_gave", parse_gives_what_the_cjson_parser_gave);
	CU_add_test(s, "parse_names_long_escaped_keys_by_whole_characters", parse_names_long_escaped_keys_by_whole_characters);
	CU_add_test(s, "parse_fails_cleanly_at_every_allocation", parse_fails_cleanly_at_every_allocation);
	CU_add_test(s, "write_full_update_is_canonical", write_full_update_is_canonical);
	CU_add_test(s, "write_sdk_names", write_sdk_names);
	CU_add_test(s, "write_pretty_is_json_stringify_2", write_pretty_is_json_stringify_2);
	CU_add_test(s, "write_escapes_like_json_stringify", write_escapes_like_json_stringify);
	CU_add_test(s, "write_rejects_non_finite_numbers_and_restores", write_rejects_non_finite_numbers_and_restores);
	CU_add_test(s, "write_rejects_dates_outside_0000_9999", write_rejects_dates_outside_0000_9999);
	CU_add_test(s, "write_fixed_buffer_at_every_size", write_fixed_buffer_at_every_size);
	CU_add_test(s, "write_growable_buffer_failures_restore_the_buffer", write_growable_buffer_failures_restore_the_buffer);
	CU_add_test(s, "write_then_parse_round_trips_in_both_namings", write_then_parse_round_trips_in_both_namings);
	return 0;
}
