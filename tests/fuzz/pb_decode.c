/* pb_decode.c - fuzz target: the Session protobuf decoder (untrusted
 * device bytes), the encoder and the JSON writer behind it, and the
 * inspector.
 *
 * For every input, as an update and as a session:
 *  - a failure leaves *out NULL and the error's code is the status;
 *  - a success is one allocation that does not alias the input, passes
 *    sw_update_check, and decode -> encode -> decode is a fixed point
 *    (sw_update_equal, and the second encode gives the same bytes);
 *  - sw_json_write succeeds in both namings and pretty, and each of those
 *    parses back to the same canonical JSON;
 *  - tight limits only ever turn a success into a failure;
 *  - a session that decodes also decodes, equal, as an update;
 *  - sw_pb_inspect never crashes and reports exactly the decoder's
 *    status, path and offset.
 */
#include "fuzz.h"

/* Encodes u into a new buffer (checking the size query, that a buffer
 * one byte short fails cleanly, and the real encode). NULL after a failed
 * check. */
static uint8_t *pbd_encode(const sw_update *u, size_t *len)
{
	size_t need = 0, got = 0;
	uint8_t *buf, *small;
	sw_error e;
	sw_status st;

	sw_error_clear(&e);
	st = sw_pb_encode(u, NULL, 0, &need, &e);
	if (!SW_FUZZ_CHECK(st == SW_OK)) {
		fprintf(stderr, "encode: %s %s: %s\n", sw_errname(st), e.path,
			e.message);
		return NULL;
	}
	if (need > 0) {
		small = sw_fuzz_malloc(need - 1);
		st = sw_pb_encode(u, small, need - 1, &got, NULL);
		free(small);
		if (!SW_FUZZ_CHECK(st == SW_EBUFSZ && got == need))
			return NULL;
	}
	buf = sw_fuzz_malloc(need);
	st = sw_pb_encode(u, buf, need, &got, &e);
	if (!SW_FUZZ_CHECK(st == SW_OK && got == need)) {
		free(buf);
		return NULL;
	}
	*len = need;
	return buf;
}

/* Writes u as JSON into a new growable buffer; false after a failed
 * check. */
static bool pbd_write(const sw_update *u, sw_names names, bool pretty,
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

/* Parses json (strict, kind) and checks that writing it again in wire
 * names gives exactly canon. */
static void pbd_json_back(const sw_buf *json, sw_kind kind,
			  const sw_buf *canon)
{
	sw_parse_opts po = { .kind = kind };
	sw_update *u = NULL;
	sw_buf again;
	sw_error e;
	sw_status st;

	sw_error_clear(&e);
	st = sw_json_parse(json->data, json->len, &po, &u, &e);
	if (!SW_FUZZ_CHECK(st == SW_OK)) {
		fprintf(stderr, "json parse of %s: %s %s: %s\n", json->data,
			sw_errname(st), e.path, e.message);
		return;
	}
	if (pbd_write(u, SW_NAMES_WIRE, false, &again))
		SW_FUZZ_CHECK(sw_fuzz_same(again.data, again.len, canon->data,
					   canon->len));
	sw_buf_free(&again);
	sw_update_free(u);
}

/* Whether every string of u is outside the input. */
static bool pbd_no_alias(const sw_update *u, const uint8_t *data,
			 size_t size)
{
	size_t i;
	bool ok = sw_fuzz_outside(u->id.ptr, u->id.len, data, size) &&
		  sw_fuzz_outside(u->external_id.ptr, u->external_id.len,
				  data, size) &&
		  sw_fuzz_outside(u->workspace_id.ptr, u->workspace_id.len,
				  data, size) &&
		  sw_fuzz_outside(u->project_id.ptr, u->project_id.len, data,
				  size);

	for (i = 0; ok && i < u->n_contact_ids; i++)
		ok = sw_fuzz_outside(u->contact_ids[i].ptr,
				     u->contact_ids[i].len, data, size);
	for (i = 0; ok && i < u->n_tags; i++)
		ok = sw_fuzz_outside(u->tags[i].ptr, u->tags[i].len, data,
				     size);
	return ok;
}

/* Whether every string of u is at most max bytes and every list at most
 * items long. */
static bool pbd_within(const sw_update *u, size_t max, size_t items)
{
	size_t i;

	if (u->id.len > max || u->external_id.len > max ||
	    u->workspace_id.len > max || u->project_id.len > max ||
	    u->n_contact_ids > items || u->n_tags > items)
		return false;
	for (i = 0; i < u->n_contact_ids; i++)
		if (u->contact_ids[i].len > max)
			return false;
	for (i = 0; i < u->n_tags; i++)
		if (u->tags[i].len > max)
			return false;
	return true;
}

/* Everything that must hold for a message that decoded as kind. */
static void pbd_decoded(const sw_update *u, sw_kind kind,
			const uint8_t *data, size_t size)
{
	sw_parse_opts po = { .kind = kind };
	uint8_t *enc1 = NULL, *enc2 = NULL;
	size_t len1 = 0, len2 = 0;
	sw_update *u2 = NULL;
	sw_buf wire, sdk, pretty;
	sw_error e;
	sw_status st;

	sw_error_clear(&e);
	SW_FUZZ_CHECK(sw_update_check(u, kind, NULL, &e) == SW_OK);
	SW_FUZZ_CHECK(pbd_no_alias(u, data, size));

	/* decode -> encode -> decode -> encode */
	enc1 = pbd_encode(u, &len1);
	if (enc1 != NULL) {
		st = sw_pb_decode(enc1, len1, &po, &u2, &e);
		if (SW_FUZZ_CHECK(st == SW_OK)) {
			SW_FUZZ_CHECK(sw_update_equal(u, u2));
			enc2 = pbd_encode(u2, &len2);
			if (enc2 != NULL)
				SW_FUZZ_CHECK(sw_fuzz_same(enc1, len1, enc2,
							   len2));
		} else {
			fprintf(stderr, "re-decode: %s %s: %s\n",
				sw_errname(st), e.path, e.message);
		}
	}

	/* canonical JSON both ways */
	if (pbd_write(u, SW_NAMES_WIRE, false, &wire)) {
		pbd_json_back(&wire, kind, &wire);
		if (pbd_write(u, SW_NAMES_SDK, false, &sdk))
			pbd_json_back(&sdk, kind, &wire);
		sw_buf_free(&sdk);
		if (pbd_write(u, SW_NAMES_WIRE, true, &pretty))
			pbd_json_back(&pretty, kind, &wire);
		sw_buf_free(&pretty);
	}
	sw_buf_free(&wire);
	free(enc1);
	free(enc2);
	sw_update_free(u2);
}

/* Decodes data as kind, first with a counting allocator (one allocation
 * for a success, none left for a failure, *out NULL and the error's code
 * the status on failure), then plainly. Returns the plain update (NULL on
 * failure); *st is the status, *e the error. */
static sw_update *pbd_decode(const uint8_t *data, size_t size, sw_kind kind,
			     sw_status *st, sw_error *e)
{
	sw_fuzz_count c = { 0, 0 };
	sw_alloc a = { sw_fuzz_count_alloc, sw_fuzz_count_free, &c };
	sw_parse_opts po = { .kind = kind, .alloc = &a };
	sw_update *u = NULL, *counted = NULL;
	sw_status st2;

	sw_error_clear(e);
	*st = sw_pb_decode(data, size, &po, &counted, e);
	if (*st != SW_OK) {
		SW_FUZZ_CHECK(counted == NULL && e->code == *st &&
			      c.live == 0);
	} else {
		SW_FUZZ_CHECK(counted != NULL && c.calls == 1 &&
			      c.live == 1);
		sw_update_free(counted);
		SW_FUZZ_CHECK(c.live == 0);
	}
	po.alloc = NULL;
	st2 = sw_pb_decode(data, size, &po, &u, NULL);
	SW_FUZZ_CHECK(st2 == *st && (u != NULL) == (st2 == SW_OK));
	return u;
}

/* Tight limits: a success must respect them and match the default
 * decode; a default failure stays a failure. */
static void pbd_tight(const uint8_t *data, size_t size,
		      const sw_update *dflt)
{
	sw_parse_opts po = { .kind = SW_KIND_UPDATE,
			     .limits = { 0, 8, 3 } };
	sw_update *u = NULL;
	sw_status st;

	st = sw_pb_decode(data, size, &po, &u, NULL);
	if (st == SW_OK) {
		SW_FUZZ_CHECK(pbd_within(u, 8, 3));
		SW_FUZZ_CHECK(dflt != NULL && sw_update_equal(u, dflt));
	}
	sw_update_free(u);
	if (size >= 2) {
		po.limits.max_input = size - 1;
		po.limits.max_string = 0;
		po.limits.max_items = 0;
		st = sw_pb_decode(data, size, &po, &u, NULL);
		SW_FUZZ_CHECK(st == SW_ETOOBIG && u == NULL);
	}
}

/* Whether a dump has the "!!" line that ends it early (a line start:
 * strings in the dump have their control bytes escaped). */
static bool pbd_stopped(const sw_buf *out)
{
	return out->data != NULL && (!strncmp(out->data, "!! ", 3) ||
				      strstr(out->data, "\n!! ") != NULL);
}

/* The inspector stops with the decoder's error, or dumps it all. */
static void pbd_inspect(const uint8_t *data, size_t size, sw_status dst,
			const sw_error *de)
{
	sw_buf out;
	sw_error e;
	sw_status st;

	sw_buf_init(&out, 0, NULL);
	sw_error_clear(&e);
	st = sw_pb_inspect(data, size, &out, &e);
	if (st != SW_ETOOBIG) {
		SW_FUZZ_CHECK(st == dst);
		if (st != SW_OK) {
			SW_FUZZ_CHECK(!strcmp(e.path, de->path));
			SW_FUZZ_CHECK(e.offset == de->offset);
			SW_FUZZ_CHECK(pbd_stopped(&out));
		} else {
			SW_FUZZ_CHECK(!pbd_stopped(&out));
		}
	}
	sw_buf_free(&out);
}

int SW_FUZZ_ENTRY(pb_decode)(const uint8_t *data, size_t size)
{
	sw_update *upd, *ses;
	sw_status ust, sst;
	sw_error ue, se;

	upd = pbd_decode(data, size, SW_KIND_UPDATE, &ust, &ue);
	ses = pbd_decode(data, size, SW_KIND_SESSION, &sst, &se);
	if (upd != NULL)
		pbd_decoded(upd, SW_KIND_UPDATE, data, size);
	if (ses != NULL) {
		pbd_decoded(ses, SW_KIND_SESSION, data, size);
		/* a session is an update with required fields */
		SW_FUZZ_CHECK(upd != NULL && sw_update_equal(upd, ses));
	}
	pbd_tight(data, size, upd);
	pbd_inspect(data, size, ust, &ue);
	sw_update_free(upd);
	sw_update_free(ses);
	return 0;
}
