/* json_parse.c - fuzz target: the JSON body parser (untrusted device and
 * upstream JSON), the canonical writer and the trip through protobuf.
 *
 * For every input, strict and lenient, as an update (and strict as a
 * session):
 *  - a failure leaves *out NULL and the error's code is the status;
 *  - a success passes sw_update_check and does not alias the input;
 *  - write (wire names) -> parse -> write is a fixed point, and the SDK
 *    naming and the pretty layout parse back to the same canonical text;
 *  - JSON -> pb -> JSON gives the canonical text again, and the update
 *    comes back from protobuf equal (sw_update_equal: -0 kept);
 *  - strict success implies lenient success with an equal update; a
 *    strict failure other than an unknown key is a lenient failure too;
 *  - a session that parses also parses, equal, as an update.
 */
#include "fuzz.h"

/* Writes u in the given naming and layout into out (a new growable
 * buffer); false after a failed check. */
static bool jsp_write(const sw_update *u, sw_names names, bool pretty,
		      sw_buf *out)
{
	sw_write_opts wo = { names, pretty };
	sw_error e;
	sw_status st;

	sw_buf_init(out, 0, NULL);
	sw_error_clear(&e);
	st = sw_json_write(u, &wo, out, &e);
	if (!SW_FUZZ_CHECK(st == SW_OK)) {
		fprintf(stderr, "json write: %s %s: %s\n", sw_errname(st),
			e.path, e.message);
		return false;
	}
	return true;
}

/* Parses text strictly as kind and checks that it writes back as canon. */
static void jsp_back(const sw_buf *text, sw_kind kind, const sw_buf *canon)
{
	sw_parse_opts po = { .kind = kind };
	sw_update *u = NULL;
	sw_buf again;
	sw_error e;
	sw_status st;

	sw_error_clear(&e);
	st = sw_json_parse(text->data, text->len, &po, &u, &e);
	if (!SW_FUZZ_CHECK(st == SW_OK)) {
		fprintf(stderr, "re-parse of %s: %s %s: %s\n", text->data,
			sw_errname(st), e.path, e.message);
		return;
	}
	if (jsp_write(u, SW_NAMES_WIRE, false, &again))
		if (!SW_FUZZ_CHECK(sw_fuzz_same(again.data, again.len,
						canon->data, canon->len)))
			fprintf(stderr, "canon  %s\nagain  %s\n", canon->data,
				again.data);
	sw_buf_free(&again);
	sw_update_free(u);
}

/* JSON -> pb -> JSON: the update comes back equal and writes canon. */
static void jsp_via_pb(const sw_update *u, sw_kind kind, const sw_buf *canon)
{
	sw_parse_opts po = { .kind = kind };
	size_t need = 0, got = 0;
	sw_update *back = NULL;
	uint8_t *pb;
	sw_buf text;
	sw_error e;
	sw_status st;

	sw_error_clear(&e);
	st = sw_pb_encode(u, NULL, 0, &need, &e);
	if (!SW_FUZZ_CHECK(st == SW_OK)) {
		fprintf(stderr, "pb size: %s %s: %s\n", sw_errname(st),
			e.path, e.message);
		return;
	}
	pb = sw_fuzz_malloc(need);
	st = sw_pb_encode(u, pb, need, &got, &e);
	if (!SW_FUZZ_CHECK(st == SW_OK && got == need))
		goto out;
	st = sw_pb_decode(pb, need, &po, &back, &e);
	if (!SW_FUZZ_CHECK(st == SW_OK)) {
		fprintf(stderr, "pb decode: %s %s: %s\n", sw_errname(st),
			e.path, e.message);
		goto out;
	}
	SW_FUZZ_CHECK(sw_update_equal(u, back));
	if (jsp_write(back, SW_NAMES_WIRE, false, &text))
		if (!SW_FUZZ_CHECK(sw_fuzz_same(text.data, text.len,
						canon->data, canon->len)))
			fprintf(stderr, "canon  %s\nvia pb %s\n", canon->data,
				text.data);
	sw_buf_free(&text);
out:
	sw_update_free(back);
	free(pb);
}

/* Everything that must hold for text that parsed as kind into u. */
static void jsp_parsed(const sw_update *u, sw_kind kind, const uint8_t *data,
		       size_t size)
{
	sw_buf wire, sdk, pretty;
	sw_error e;

	sw_error_clear(&e);
	SW_FUZZ_CHECK(sw_update_check(u, kind, NULL, &e) == SW_OK);
	SW_FUZZ_CHECK(sw_fuzz_outside(u->id.ptr, u->id.len, data, size) &&
		      sw_fuzz_outside(u->tags, u->n_tags * sizeof(sw_str),
				      data, size));
	if (!jsp_write(u, SW_NAMES_WIRE, false, &wire)) {
		sw_buf_free(&wire);
		return;
	}
	jsp_back(&wire, kind, &wire);
	if (jsp_write(u, SW_NAMES_SDK, false, &sdk))
		jsp_back(&sdk, kind, &wire);
	sw_buf_free(&sdk);
	if (jsp_write(u, SW_NAMES_WIRE, true, &pretty))
		jsp_back(&pretty, kind, &wire);
	sw_buf_free(&pretty);
	jsp_via_pb(u, kind, &wire);
	sw_buf_free(&wire);
}

/* Parses data with the given kind and leniency; checks the failure
 * contract. Returns the update or NULL; *st is the status. */
static sw_update *jsp_parse(const uint8_t *data, size_t size, sw_kind kind,
			    bool lenient, sw_status *st)
{
	sw_parse_opts po = { .kind = kind, .lenient = lenient };
	sw_update *u = NULL;
	sw_error e;

	sw_error_clear(&e);
	*st = sw_json_parse((const char *)data, size, &po, &u, &e);
	if (*st != SW_OK) {
		SW_FUZZ_CHECK(u == NULL && e.code == *st);
		return NULL;
	}
	SW_FUZZ_CHECK(u != NULL);
	return u;
}

int SW_FUZZ_ENTRY(json_parse)(const uint8_t *data, size_t size)
{
	sw_update *strict, *lenient, *session;
	sw_status sst, lst, est;

	strict = jsp_parse(data, size, SW_KIND_UPDATE, false, &sst);
	lenient = jsp_parse(data, size, SW_KIND_UPDATE, true, &lst);
	session = jsp_parse(data, size, SW_KIND_SESSION, false, &est);
	if (strict != NULL) {
		jsp_parsed(strict, SW_KIND_UPDATE, data, size);
		SW_FUZZ_CHECK(lenient != NULL &&
			      sw_update_equal(strict, lenient));
	} else if (sst != SW_EUNKNOWN) {
		SW_FUZZ_CHECK(lenient == NULL);
	}
	if (lenient != NULL && strict == NULL)
		jsp_parsed(lenient, SW_KIND_UPDATE, data, size);
	if (session != NULL) {
		jsp_parsed(session, SW_KIND_SESSION, data, size);
		SW_FUZZ_CHECK(strict != NULL &&
			      sw_update_equal(strict, session));
	}
	sw_update_free(strict);
	sw_update_free(lenient);
	sw_update_free(session);
	return 0;
}
