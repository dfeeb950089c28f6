/* test_vectors.c - every line of the SDK's vectors, through the JSON codec
 * (and protobuf): parsing `wire` or `sdk` and writing gives exactly `wire`. */
#include <CUnit/CUnit.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static const char *const files[] = { "sdk_wire.jsonl", "typical.jsonl" };

/* Prints the first few failures of a test, to help debugging. */
static void report(int *shown, const char *file, int line, const char *what,
		   const char *detail)
{
	if ((*shown)++ < 5)
		printf("\n  %s:%d: %s: %s", file, line, what, detail);
}

/* Parses text and writes it (wire names, compact) into out. */
static sw_status parse_write(const char *text, size_t len, sw_buf *out,
			     sw_update **u, sw_error *e)
{
	sw_status st;

	sw_error_clear(e);
	sw_buf_reset(out);
	st = sw_json_parse(text, len, NULL, u, e);
	if (st != SW_OK)
		return st;
	return sw_json_write(*u, NULL, out, e);
}

static bool same_bytes(const sw_buf *b, const tu_vector *v)
{
	return b->len == v->wire_len && memcmp(b->data, v->wire, b->len) == 0;
}

/* Runs check(v, out, msg) on every vector of both files; asserts that the
 * files load and that every line passes. */
static void each_vector(bool (*check)(const tu_vector *, sw_buf *, char *,
				      size_t))
{
	int f, i, n, failed = 0, total = 0, shown = 0;
	char msg[512];
	sw_buf out;

	sw_buf_init(&out, 0, NULL);
	for (f = 0; f < 2; f++) {
		tu_vector *v = NULL;

		n = tu_vectors_load(files[f], &v);
		CU_ASSERT_FATAL(n > 0);
		for (i = 0; i < n; i++) {
			msg[0] = '\0';
			total++;
			if (!check(&v[i], &out, msg, sizeof(msg))) {
				failed++;
				report(&shown, files[f], v[i].line, "fails",
				       msg);
			}
		}
		tu_vectors_free(v, n);
	}
	sw_buf_free(&out);
	if (failed)
		printf("\n  %d of %d vectors fail\n", failed, total);
	CU_ASSERT_EQUAL(failed, 0);
	CU_ASSERT_EQUAL(total, 600);
}

static bool wire_check(const tu_vector *v, sw_buf *out, char *msg,
		       size_t cap)
{
	sw_update *u = NULL;
	sw_error e;
	sw_status st = parse_write(v->wire, v->wire_len, out, &u, &e);
	bool ok = st == SW_OK && same_bytes(out, v);

	if (st != SW_OK)
		snprintf(msg, cap, "%s at %s: %s", sw_errname(st), e.path,
			 e.message);
	else if (!ok)
		snprintf(msg, cap, "wrote %.200s", out->data);
	sw_update_free(u);
	return ok;
}

static void vectors_wire_parse_then_write_is_identity(void)
{
	each_vector(wire_check);
}

static bool sdk_check(const tu_vector *v, sw_buf *out, char *msg, size_t cap)
{
	sw_update *u = NULL;
	sw_error e;
	sw_status st = parse_write(v->sdk, strlen(v->sdk), out, &u, &e);
	bool ok = st == SW_OK && same_bytes(out, v);

	if (st != SW_OK)
		snprintf(msg, cap, "%s at %s: %s", sw_errname(st), e.path,
			 e.message);
	else if (!ok)
		snprintf(msg, cap, "wrote %.200s", out->data);
	sw_update_free(u);
	return ok;
}

static void vectors_sdk_parse_then_write_gives_wire(void)
{
	each_vector(sdk_check);
}

/* parse(wire) -> write -> parse -> write: the same update and bytes. */
static bool stable_check(const tu_vector *v, sw_buf *out, char *msg,
			 size_t cap)
{
	sw_update *u1 = NULL, *u2 = NULL;
	sw_error e;
	sw_status st = parse_write(v->wire, v->wire_len, out, &u1, &e);
	char *first = NULL;
	bool ok = false;

	if (st == SW_OK) {
		first = strdup(out->data);
		st = parse_write(first, strlen(first), out, &u2, &e);
	}
	if (st != SW_OK)
		snprintf(msg, cap, "%s at %s: %s", sw_errname(st), e.path,
			 e.message);
	else if (!sw_update_equal(u1, u2))
		snprintf(msg, cap, "the update changed on the second parse");
	else if (strcmp(first, out->data) != 0)
		snprintf(msg, cap, "the text changed on the second write");
	else
		ok = true;
	free(first);
	sw_update_free(u1);
	sw_update_free(u2);
	return ok;
}

static void vectors_written_text_parses_back_to_the_same_update(void)
{
	each_vector(stable_check);
}

/* Writing with SDK names and parsing that back gives the same update, and
 * the text uses the SDK's key for every present field (the SDK's own text
 * cannot be compared: its key order is not the wire order). */
static bool sdk_names_check(const tu_vector *v, sw_buf *out, char *msg,
			    size_t cap)
{
	sw_write_opts wo = { SW_NAMES_SDK, false };
	sw_update *u = NULL, *back = NULL;
	char key[40];
	unsigned bit;
	sw_error e;
	sw_status st;
	bool ok = false;

	sw_error_clear(&e);
	sw_buf_reset(out);
	st = sw_json_parse(v->wire, v->wire_len, NULL, &u, &e);
	if (st == SW_OK)
		st = sw_json_write(u, &wo, out, &e);
	if (st == SW_OK)
		st = sw_json_parse(out->data, out->len, NULL, &back, &e);
	if (st != SW_OK) {
		snprintf(msg, cap, "%s at %s: %s", sw_errname(st), e.path,
			 e.message);
		goto done;
	}
	if (!sw_update_equal(u, back)) {
		snprintf(msg, cap, "SDK-named text parses to another update");
		goto done;
	}
	for (bit = 0; bit < SW_FIELD_COUNT; bit++) {
		if (!(u->has & (1u << bit)))
			continue;
		snprintf(key, sizeof(key), "\"%s\":", sw_field_sdk_name(bit));
		if (strstr(out->data, key) == NULL) {
			snprintf(msg, cap, "no %s in %.200s", key, out->data);
			goto done;
		}
	}
	ok = true;
done:
	sw_update_free(u);
	sw_update_free(back);
	return ok;
}

static void vectors_sdk_names_output_parses_back_to_the_same_update(void)
{
	each_vector(sdk_names_check);
}

/* parse -> protobuf encode -> decode -> write == wire. */
static bool pb_check(const tu_vector *v, sw_buf *out, char *msg, size_t cap)
{
	sw_update *u = NULL, *d = NULL;
	uint8_t *pb = NULL;
	size_t len = 0;
	sw_error e;
	sw_status st;
	bool ok = false;

	sw_error_clear(&e);
	sw_buf_reset(out);
	st = sw_json_parse(v->wire, v->wire_len, NULL, &u, &e);
	if (st == SW_OK)
		st = sw_pb_encode(u, NULL, 0, &len, &e);
	if (st == SW_OK) {
		pb = malloc(len ? len : 1);
		st = sw_pb_encode(u, pb, len, &len, &e);
	}
	if (st == SW_OK)
		st = sw_pb_decode(pb, len, NULL, &d, &e);
	if (st == SW_OK)
		st = sw_json_write(d, NULL, out, &e);
	if (st != SW_OK)
		snprintf(msg, cap, "%s at %s: %s", sw_errname(st), e.path,
			 e.message);
	else if (!same_bytes(out, v))
		snprintf(msg, cap, "wrote %.200s", out->data);
	else
		ok = true;
	free(pb);
	sw_update_free(u);
	sw_update_free(d);
	return ok;
}

static void vectors_survive_a_trip_through_protobuf(void)
{
	each_vector(pb_check);
}

int init_vectors_tests(void)
{
	CU_pSuite s = CU_add_suite("vectors", NULL, NULL);

	if (s == NULL)
		return -1;
	CU_add_test(s, "vectors_wire_parse_then_write_is_identity",
		    vectors_wire_parse_then_write_is_identity);
	CU_add_test(s, "vectors_sdk_parse_then_write_gives_wire",
		    vectors_sdk_parse_then_write_gives_wire);
	CU_add_test(s, "vectors_written_text_parses_back_to_the_same_update",
		    vectors_written_text_parses_back_to_the_same_update);
	CU_add_test(s, "vectors_sdk_names_output_parses_back_to_the_same_update",
		    vectors_sdk_names_output_parses_back_to_the_same_update);
	CU_add_test(s, "vectors_survive_a_trip_through_protobuf",
		    vectors_survive_a_trip_through_protobuf);
	return 0;
}
