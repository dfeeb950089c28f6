/* test_uri.c - the session path of docs/wire-format.md section 1
 * (encodeURIComponent), its inverse, and session ids as they travel in an
 * Envelope.
 *
 * The reference is the official SDK: every line of both vector files
 * carries the session id and the exact path the SDK requested. */
#include <CUnit/CUnit.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define PREFIX_LEN (sizeof(SW_SESSION_PATH_PREFIX) - 1)

/* ==== The vectors ==== */

/* For every line of one vector file: the path is byte for byte the SDK's,
 * and decoding it gives the id back. Returns the lines checked. */
static int check_vector_file(const char *name)
{
	tu_vector *v = NULL;
	int n = tu_vectors_load(name, &v), i, bad = 0;

	CU_ASSERT_TRUE_FATAL(n > 0);
	for (i = 0; i < n; i++) {
		sw_buf path, back;
		sw_error e;
		sw_status st;
		size_t plen = strlen(v[i].path);

		sw_error_clear(&e);
		sw_buf_init(&path, 0, NULL);
		sw_buf_init(&back, 0, NULL);
		st = sw_session_path(v[i].session_id, v[i].session_id_len,
				     &path, &e);
		if (st != SW_OK || path.len != plen ||
		    memcmp(path.data, v[i].path, plen) != 0) {
			fprintf(stderr, "%s:%d: path %s, got \"%s\" (%s %s)\n",
				name, v[i].line, v[i].path,
				path.data ? path.data : "", sw_errname(st),
				e.message);
			bad++;
		}
		CU_ASSERT_TRUE(plen >= PREFIX_LEN &&
			       !memcmp(v[i].path, SW_SESSION_PATH_PREFIX,
				       PREFIX_LEN));
		st = sw_uri_decode(v[i].path + PREFIX_LEN, plen - PREFIX_LEN,
				   &back, &e);
		if (st != SW_OK || back.len != v[i].session_id_len ||
		    memcmp(back.data, v[i].session_id, back.len) != 0) {
			fprintf(stderr, "%s:%d: decode %s: %s %s\n", name,
				v[i].line, v[i].path, sw_errname(st),
				e.message);
			bad++;
		}
		sw_buf_free(&path);
		sw_buf_free(&back);
	}
	CU_ASSERT_EQUAL(bad, 0);
	tu_vectors_free(v, n);
	return n;
}

static void path_matches_sdk_for_every_vector(void)
{
	CU_ASSERT_EQUAL(check_vector_file("sdk_wire.jsonl"), 400);
	CU_ASSERT_EQUAL(check_vector_file("typical.jsonl"), 200);
}

/* ==== Hand-made tables ==== */

typedef struct good_case {
	const char *id;
	size_t len;
	const char *path; /* after the prefix */
} good_case;

#define S(s) s, sizeof(s) - 1

static const good_case good[] = {
	{ S("01J42CMDHMMCH68TYCT6BXFB8V"), "01J42CMDHMMCH68TYCT6BXFB8V" },
	{ S("AZaz09-_.!~*'()"), "AZaz09-_.!~*'()" },
	{ S("a b"), "a%20b" },
	{ S("a/b"), "a%2Fb" },
	{ S("a+b"), "a%2Bb" },
	{ S("100%"), "100%25" },
	{ S("..."), "..." },
	{ S(".a"), ".a" },
	{ S("?#[]@$&,;=:"), "%3F%23%5B%5D%40%24%26%2C%3B%3D%3A" },
	{ S("\"<>\\^`{|}"), "%22%3C%3E%5C%5E%60%7B%7C%7D" },
	{ S("a\0b"), "a%00b" },
	{ S("\x7f\x1f"), "%7F%1F" },
	{ S("\xc3\xa9"), "%C3%A9" },                 /* é */
	{ S("\xe2\x80\xa8"), "%E2%80%A8" },          /* U+2028 */
	{ S("\xf0\x9f\x98\x80"), "%F0%9F%98%80" },   /* emoji */
	{ S("\xf4\x8f\xbf\xbf"), "%F4%8F%BF%BF" },   /* U+10FFFF */
};

static void path_encodes_table(void)
{
	char mem[256];
	size_t i;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		sw_buf b, back;
		sw_error e;

		sw_error_clear(&e);
		sw_buf_init_fixed(&b, mem, sizeof(mem));
		CU_ASSERT_EQUAL_FATAL(sw_session_path(good[i].id, good[i].len,
						      &b, &e), SW_OK);
		CU_ASSERT_EQUAL(b.len, PREFIX_LEN + strlen(good[i].path));
		CU_ASSERT_STRING_EQUAL(b.data + PREFIX_LEN, good[i].path);
		CU_ASSERT_NSTRING_EQUAL(b.data, SW_SESSION_PATH_PREFIX,
					PREFIX_LEN);
		sw_buf_init(&back, 0, NULL);
		CU_ASSERT_EQUAL(sw_uri_decode(good[i].path,
					      strlen(good[i].path), &back, &e),
				SW_OK);
		CU_ASSERT_EQUAL(back.len, good[i].len);
		CU_ASSERT_TRUE(back.len == good[i].len &&
			       !memcmp(back.data, good[i].id, back.len));
		sw_buf_free(&back);
	}
}

/* Every byte value: unreserved ones stay, the rest is %XX uppercase. */
static void path_escapes_every_ascii_byte_but_the_unreserved(void)
{
	static const char keep[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
				    "abcdefghijklmnopqrstuvwxyz0123456789"
				    "-_.!~*'()";
	char mem[64], want[8];
	int c;

	for (c = 0; c < 0x80; c++) {
		char id[2] = { (char)c, 'x' };
		sw_buf b;

		sw_buf_init_fixed(&b, mem, sizeof(mem));
		CU_ASSERT_EQUAL_FATAL(sw_session_path(id, 2, &b, NULL), SW_OK);
		if (c != 0 && strchr(keep, c) != NULL)
			snprintf(want, sizeof(want), "%cx", c);
		else
			snprintf(want, sizeof(want), "%%%02Xx", c);
		CU_ASSERT_STRING_EQUAL(b.data + PREFIX_LEN, want);
	}
}

typedef struct bad_id {
	const char *id;
	size_t len;
	sw_status st;
	size_t offset;
	const char *needle; /* in the message */
} bad_id;

static const bad_id bad_ids[] = {
	{ S(""), SW_EVALUE, (size_t)-1, "non-empty" },
	{ S("."), SW_EVALUE, (size_t)-1, "found \".\"" },
	{ S(".."), SW_EVALUE, (size_t)-1, "found \"..\"" },
	{ S("\xff"), SW_EUTF8, 0, "UTF-8" },
	{ S("ab\x80"), SW_EUTF8, 2, "offset 2" },
	{ S("\xc0\xaf"), SW_EUTF8, 0, "UTF-8" },          /* overlong '/' */
	{ S("x\xed\xa0\x80"), SW_EUTF8, 1, "UTF-8" },     /* surrogate */
	{ S("\xf4\x90\x80\x80"), SW_EUTF8, 0, "UTF-8" },  /* > U+10FFFF */
	{ S("\xe2\x82"), SW_EUTF8, 0, "UTF-8" },          /* cut short */
};

static void path_rejects_bad_ids(void)
{
	size_t i;

	for (i = 0; i < sizeof(bad_ids) / sizeof(bad_ids[0]); i++) {
		char mem[64];
		sw_buf b;
		sw_error e;

		sw_error_clear(&e);
		sw_buf_init_fixed(&b, mem, sizeof(mem));
		CU_ASSERT_EQUAL(sw_session_path(bad_ids[i].id, bad_ids[i].len,
						&b, &e), bad_ids[i].st);
		CU_ASSERT_EQUAL(e.code, bad_ids[i].st);
		CU_ASSERT_EQUAL(e.offset, bad_ids[i].offset);
		CU_ASSERT_STRING_EQUAL(e.path, "session_id");
		CU_ASSERT_PTR_NOT_NULL(strstr(e.message, bad_ids[i].needle));
		CU_ASSERT_EQUAL(b.len, 0); /* nothing appended */
	}
}

/* A fixed buffer one byte short fails and keeps what it had; the exact
 * size works. Also a growable buffer at its hard cap. */
static void path_fails_cleanly_on_a_small_buffer(void)
{
	const char *id = "a b\xc3\xa9";
	const char *want = SW_SESSION_PATH_PREFIX "a%20b%C3%A9";
	size_t need = strlen(want), cap;
	char mem[64];
	sw_buf b;
	sw_error e;

	for (cap = 1; cap <= need + 1; cap++) {
		sw_error_clear(&e);
		sw_buf_init_fixed(&b, mem, cap);
		CU_ASSERT_EQUAL_FATAL(sw_buf_append(&b, "", 0), SW_OK);
		if (cap <= need) {
			CU_ASSERT_EQUAL(sw_session_path(id, strlen(id), &b, &e),
					SW_EBUFSZ);
			CU_ASSERT_EQUAL(e.code, SW_EBUFSZ);
			CU_ASSERT_EQUAL(b.len, 0);
			CU_ASSERT_EQUAL(b.data[0], '\0');
		} else {
			CU_ASSERT_EQUAL(sw_session_path(id, strlen(id), &b, &e),
					SW_OK);
			CU_ASSERT_STRING_EQUAL(b.data, want);
		}
	}
	/* appends after what is there, keeps it on failure */
	sw_buf_init_fixed(&b, mem, 8);
	CU_ASSERT_EQUAL(sw_buf_append(&b, "http", 4), SW_OK);
	CU_ASSERT_EQUAL(sw_session_path("x", 1, &b, NULL), SW_EBUFSZ);
	CU_ASSERT_STRING_EQUAL(b.data, "http");
	sw_buf_init(&b, need - 1, NULL);
	sw_error_clear(&e);
	CU_ASSERT_EQUAL(sw_session_path(id, strlen(id), &b, &e), SW_ETOOBIG);
	CU_ASSERT_EQUAL(b.len, 0);
	sw_buf_free(&b);
}

static void path_allocation_failure_is_clean(void)
{
	tu_failalloc fa = { 0, 0, 0 };
	sw_alloc a = tu_failalloc_hook(&fa);
	sw_buf b;
	sw_error e;

	sw_error_clear(&e);
	sw_buf_init(&b, 0, &a);
	CU_ASSERT_EQUAL(sw_session_path("abc", 3, &b, &e), SW_ENOMEM);
	CU_ASSERT_EQUAL(e.code, SW_ENOMEM);
	CU_ASSERT_EQUAL(fa.live, 0);
	sw_buf_free(&b);
	fa.fail_at = -1;
	sw_buf_init(&b, 0, &a);
	CU_ASSERT_EQUAL(sw_session_path("abc", 3, &b, &e), SW_OK);
	sw_buf_free(&b);
	CU_ASSERT_EQUAL(fa.live, 0);
}

/* ==== Decoding ==== */

typedef struct bad_pct {
	const char *s;
	sw_status st;
	size_t offset;
} bad_pct;

static const bad_pct bad_pcts[] = {
	{ "%", SW_EVALUE, 0 },
	{ "a%4", SW_EVALUE, 1 },
	{ "%G0", SW_EVALUE, 0 },
	{ "%0g", SW_EVALUE, 0 },
	{ "ab%%41", SW_EVALUE, 2 },
	{ "%20% 1", SW_EVALUE, 3 },
	{ "%FF", SW_EUTF8, 0 },
	{ "ab%C3", SW_EUTF8, 2 },         /* cut character */
	{ "%C0%AF", SW_EUTF8, 0 },        /* overlong */
	{ "x%ED%A0%80", SW_EUTF8, 1 },    /* surrogate */
	{ "ok\xff", SW_EUTF8, 2 },        /* raw bad byte */
};

static void uri_decode_rejects_bad_escapes_and_utf8(void)
{
	size_t i;

	for (i = 0; i < sizeof(bad_pcts) / sizeof(bad_pcts[0]); i++) {
		sw_buf b;
		sw_error e;

		sw_error_clear(&e);
		sw_buf_init(&b, 0, NULL);
		CU_ASSERT_EQUAL_FATAL(sw_buf_append(&b, "keep", 4), SW_OK);
		CU_ASSERT_EQUAL(sw_uri_decode(bad_pcts[i].s,
					      strlen(bad_pcts[i].s), &b, &e),
				bad_pcts[i].st);
		CU_ASSERT_EQUAL(e.code, bad_pcts[i].st);
		if (e.offset != bad_pcts[i].offset)
			fprintf(stderr, "%s: offset %zu (%s)\n", bad_pcts[i].s,
				e.offset, e.message);
		CU_ASSERT_EQUAL(e.offset, bad_pcts[i].offset);
		CU_ASSERT_STRING_EQUAL(b.data, "keep"); /* untouched */
		sw_buf_free(&b);
	}
}

static void uri_decode_keeps_plus_and_takes_lowercase_hex(void)
{
	static const struct { const char *in, *out; } t[] = {
		{ "a+b", "a+b" },
		{ "%2b%2B", "++" },
		{ "%c3%a9", "\xc3\xa9" },
		{ "", "" },
		{ "%25", "%" },
		{ "%2525", "%25" }, /* one level only */
	};
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		char mem[32];
		sw_buf b;

		sw_buf_init_fixed(&b, mem, sizeof(mem));
		CU_ASSERT_EQUAL(sw_uri_decode(t[i].in, strlen(t[i].in), &b,
					      NULL), SW_OK);
		CU_ASSERT_STRING_EQUAL(b.data, t[i].out);
	}
}

static void uri_decode_fails_cleanly_on_a_small_buffer(void)
{
	char mem[4];
	sw_buf b;
	sw_error e;

	/* room is checked against the encoded length, an upper bound */
	sw_error_clear(&e);
	sw_buf_init_fixed(&b, mem, sizeof(mem));
	CU_ASSERT_EQUAL(sw_uri_decode("abcd", 4, &b, &e), SW_EBUFSZ);
	CU_ASSERT_EQUAL(e.code, SW_EBUFSZ);
	CU_ASSERT_EQUAL(b.len, 0);
	CU_ASSERT_EQUAL(sw_uri_decode("abc", 3, &b, NULL), SW_OK);
	CU_ASSERT_STRING_EQUAL(b.data, "abc");
}

/* ==== Session ids ==== */

static void session_id_set_classifies_and_format_gives_it_back(void)
{
	static const struct { const char *id; sw_id_kind kind; } t[] = {
		{ "01J42CMDHMMCH68TYCT6BXFB8V", SW_ID_ULID },
		{ "7ZZZZZZZZZZZZZZZZZZZZZZZZZ", SW_ID_ULID },
		{ "123e4567-e89b-12d3-a456-426614174000", SW_ID_UUID },
		{ "01j42cmdhmmch68tyct6bxfb8v", SW_ID_TEXT }, /* lowercase */
		{ "123E4567-E89B-12D3-A456-426614174000", SW_ID_TEXT },
		{ "8ZZZZZZZZZZZZZZZZZZZZZZZZZ", SW_ID_TEXT }, /* > 128 bits */
		{ "dev-42", SW_ID_TEXT },
		{ "\xf0\x9f\x98\x80", SW_ID_TEXT },
	};
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		size_t n = strlen(t[i].id);
		char out[64];
		sw_session_id sid;

		sw_session_id_set(&sid, t[i].id, n);
		CU_ASSERT_EQUAL(sid.kind, t[i].kind);
		if (sid.kind == SW_ID_TEXT) {
			CU_ASSERT_PTR_EQUAL(sid.text.ptr, t[i].id);
			CU_ASSERT_EQUAL(sid.text.len, n);
		}
		CU_ASSERT_EQUAL(sw_session_id_format(&sid, out, sizeof(out)),
				n);
		CU_ASSERT_STRING_EQUAL(out, t[i].id);
		/* exactly n + 1 fits, n does not */
		CU_ASSERT_EQUAL(sw_session_id_format(&sid, out, n + 1), n);
		CU_ASSERT_EQUAL(sw_session_id_format(&sid, out, n), 0);
	}
}

int init_uri_tests(void)
{
	CU_pSuite s = CU_add_suite("uri", NULL, NULL);

	if (s == NULL)
		return -1;
	CU_add_test(s, "path_matches_sdk_for_every_vector", path_matches_sdk_for_every_vector);
	CU_add_test(s, "path_encodes_table", path_encodes_table);
	CU_add_test(s, "path_escapes_every_ascii_byte_but_the_unreserved", path_escapes_every_ascii_byte_but_the_unreserved);
	CU_add_test(s, "path_rejects_bad_ids", path_rejects_bad_ids);
	CU_add_test(s, "path_fails_cleanly_on_a_small_buffer", path_fails_cleanly_on_a_small_buffer);
	CU_add_test(s, "path_allocation_failure_is_clean", path_allocation_failure_is_clean);
	CU_add_test(s, "uri_decode_rejects_bad_escapes_and_utf8", uri_decode_rejects_bad_escapes_and_utf8);
	CU_add_test(s, "uri_decode_keeps_plus_and_takes_lowercase_hex", uri_decode_keeps_plus_and_takes_lowercase_hex);
	CU_add_test(s, "uri_decode_fails_cleanly_on_a_small_buffer", uri_decode_fails_cleanly_on_a_small_buffer);
	CU_add_test(s, "session_id_set_classifies_and_format_gives_it_back", session_id_set_classifies_and_format_gives_it_back);
	return 0;
}
