/* test_envelope.c - Envelope, Batch, Ack and Error messages.
 *
 * protobuf-c (generated from proto/sessionwire.proto) is the reference:
 * our bytes must unpack to the same values and protobuf-c's packed bytes
 * must decode with ours to the same values. Bad input comes as a table of
 * hand-written bytes, each row with the status, path and offset wanted. */
#include <CUnit/CUnit.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sessionwire.pb-c.h"
#include "testutil.h"

typedef Sessionwire__V1__Envelope PbEnvelope;
typedef Sessionwire__V1__Batch PbBatch;
typedef Sessionwire__V1__Result PbResult;
typedef Sessionwire__V1__Ack PbAck;
typedef Sessionwire__V1__Error PbError;
typedef Sessionwire__V1__Session PbSession;

/* ==== Helpers ==== */

static const char ULID_A[] = "01J42CMDHMMCH68TYCT6BXFB8V";
static const char UUID_A[] = "123e4567-e89b-12d3-a456-426614174000";

/* Session ids of every form (text without U+0000: protobuf-c strings are
 * NUL-terminated). */
static const char *const ids[] = {
	ULID_A,
	"7ZZZZZZZZZZZZZZZZZZZZZZZZZ",
	UUID_A,
	"00000000-0000-0000-0000-000000000000",
	"01j42cmdhmmch68tyct6bxfb8v", /* lowercase: text */
	"dev-a8346607363a",
	"x",
	"...",
	"\xc3\xa9t\xc3\xa9 \xf0\x9f\x98\x80",
};
#define N_IDS (sizeof(ids) / sizeof(ids[0]))
static const sw_id_kind id_kinds[N_IDS] = {
	SW_ID_ULID, SW_ID_ULID, SW_ID_UUID, SW_ID_UUID, SW_ID_TEXT,
	SW_ID_TEXT, SW_ID_TEXT, SW_ID_TEXT, SW_ID_TEXT,
};

/* An encoded Session (a typical device update), made once. */
static uint8_t session_bytes[512];
static size_t session_len;

static void make_session(int variant)
{
	static const sw_str tags[] = { { "device", 6 }, { "fw:1.4.2", 8 } };
	sw_update u;

	sw_update_init(&u);
	sw_update_set_external_id(&u, "dev-a8346607363a", 16);
	sw_update_set_duration(&u, 1358072 + variant);
	sw_update_set_billing(&u, 0.0004341, 0.009, 0.009434099999999999);
	sw_update_set_usage(&u, 2894, 987, 3881);
	sw_update_set_traces_count(&u, 171);
	sw_update_set_workspace_id(&u, ULID_A, 26);
	sw_update_set_tags(&u, tags, 2);
	sw_update_set_started_at(&u, 1748282246708);
	CU_ASSERT_EQUAL_FATAL(sw_pb_encode(&u, session_bytes,
					   sizeof(session_bytes), &session_len,
					   NULL), SW_OK);
}

/* Decodes hex (spaces ignored) into out; returns the length. */
static size_t unhex(const char *hex, uint8_t *out, size_t cap)
{
	size_t n = 0;
	unsigned v;

	while (*hex != '\0') {
		if (*hex == ' ') {
			hex++;
			continue;
		}
		if (sscanf(hex, "%2x", &v) != 1 || n >= cap)
			abort();
		out[n++] = (uint8_t)v;
		hex += 2;
	}
	return n;
}

/* Encodes an envelope into a malloc'd buffer of exactly its size, after
 * checking that the size query agrees. */
static uint8_t *encode_env(const sw_session_id *sid, bool has_seq,
			   uint64_t seq, const uint8_t *upd, size_t upd_len,
			   size_t *len)
{
	size_t need = 0, got = 0;
	sw_error e;
	uint8_t *buf;

	sw_error_clear(&e);
	CU_ASSERT_EQUAL_FATAL(sw_envelope_encode(sid, has_seq, seq, upd,
						 upd_len, NULL, 0, &need, &e),
			      SW_OK);
	buf = malloc(need ? need : 1);
	CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
	CU_ASSERT_EQUAL_FATAL(sw_envelope_encode(sid, has_seq, seq, upd,
						 upd_len, buf, need, &got, &e),
			      SW_OK);
	CU_ASSERT_EQUAL(got, need);
	*len = got;
	return buf;
}

/* Whether a decoded session id is the one set from text. */
static bool same_sid(const sw_session_id *a, const char *text)
{
	char out[128];
	size_t n = sw_session_id_format(a, out, sizeof(out));

	return n == strlen(text) && memcmp(out, text, n) == 0;
}

/* protobuf-c's structs take char * for strings it only reads. */
static char *mut(const char *s)
{
	char *m;

	memcpy(&m, &s, sizeof(m));
	return m;
}

/* The bytes protobuf-c packs for m (malloc'd). */
static uint8_t *pbc_pack(const ProtobufCMessage *m, size_t *len)
{
	size_t n = protobuf_c_message_get_packed_size(m);
	uint8_t *b = malloc(n ? n : 1);

	CU_ASSERT_PTR_NOT_NULL_FATAL(b);
	*len = protobuf_c_message_pack(m, b);
	CU_ASSERT_EQUAL(*len, n);
	return b;
}

/* ==== Envelope ==== */

static void envelope_round_trips_each_id_form(void)
{
	static const uint64_t seqs[] = { 0, 1, 127, 128, 1u << 31,
					 UINT64_MAX };
	size_t i, k;

	make_session(0);
	for (i = 0; i < N_IDS; i++)
		for (k = 0; k < sizeof(seqs) / sizeof(seqs[0]); k++) {
			sw_session_id sid;
			sw_envelope env;
			sw_error e;
			size_t len;
			uint8_t *buf;

			sw_session_id_set(&sid, ids[i], strlen(ids[i]));
			CU_ASSERT_EQUAL(sid.kind, id_kinds[i]);
			buf = encode_env(&sid, true, seqs[k], session_bytes,
					 session_len, &len);
			sw_error_clear(&e);
			CU_ASSERT_EQUAL_FATAL(sw_envelope_decode(buf, len, &env,
								 &e), SW_OK);
			CU_ASSERT_EQUAL(env.session_id.kind, id_kinds[i]);
			CU_ASSERT_TRUE(same_sid(&env.session_id, ids[i]));
			if (id_kinds[i] == SW_ID_TEXT) /* borrows buf */
				CU_ASSERT_TRUE((const uint8_t *)env.session_id
					       .text.ptr > buf &&
					       (const uint8_t *)env.session_id
					       .text.ptr < buf + len);
			CU_ASSERT_TRUE(env.has_seq);
			CU_ASSERT_EQUAL(env.seq, seqs[k]);
			CU_ASSERT_TRUE(env.has_update);
			CU_ASSERT_EQUAL(env.update_len, session_len);
			CU_ASSERT_TRUE(env.update == buf + len - session_len);
			CU_ASSERT_EQUAL(memcmp(env.update, session_bytes,
					       session_len), 0);
			free(buf);
		}
}

/* An empty update is an empty Session, present. */
static void envelope_keeps_an_empty_update(void)
{
	static const uint8_t want[] = { 0x12, 0x01, 'x', 0x20, 0x05,
					0x2a, 0x00 };
	sw_session_id sid;
	sw_envelope env;
	uint8_t buf[16];
	size_t len;

	sw_session_id_set(&sid, "x", 1);
	CU_ASSERT_EQUAL(sw_envelope_encode(&sid, true, 5, (const uint8_t *)"",
					   0, buf, sizeof(buf), &len, NULL),
			SW_OK);
	CU_ASSERT_EQUAL(len, sizeof(want));
	CU_ASSERT_EQUAL(memcmp(buf, want, sizeof(want)), 0);
	CU_ASSERT_EQUAL(sw_envelope_decode(buf, len, &env, NULL), SW_OK);
	CU_ASSERT_TRUE(env.has_update);
	CU_ASSERT_EQUAL(env.update_len, 0);
	/* NULL update: no field 5 (and then decoding misses it) */
	CU_ASSERT_EQUAL(sw_envelope_encode(&sid, false, 0, NULL, 0, buf,
					   sizeof(buf), &len, NULL), SW_OK);
	CU_ASSERT_EQUAL(len, 3);
	CU_ASSERT_EQUAL(sw_envelope_decode(buf, len, &env, NULL), SW_EMISSING);
}

/* Our bytes unpack with protobuf-c to the same values, and protobuf-c
 * packs the same bytes for the same values (field order), which decode
 * with ours. */
static void envelope_matches_protobuf_c_both_ways(void)
{
	size_t i;

	make_session(0);
	for (i = 0; i < N_IDS; i++) {
		PbEnvelope *pe, mine = SESSIONWIRE__V1__ENVELOPE__INIT;
		PbSession *ps;
		sw_session_id sid;
		sw_envelope env;
		size_t len, plen, ulen;
		uint8_t *buf, *packed, *upd;

		sw_session_id_set(&sid, ids[i], strlen(ids[i]));
		buf = encode_env(&sid, true, 1000 + i, session_bytes,
				 session_len, &len);
		pe = sessionwire__v1__envelope__unpack(NULL, len, buf);
		CU_ASSERT_PTR_NOT_NULL_FATAL(pe);
		CU_ASSERT_TRUE(pe->has_seq);
		CU_ASSERT_EQUAL(pe->seq, 1000 + i);
		switch (id_kinds[i]) {
		case SW_ID_ULID:
			CU_ASSERT_EQUAL(pe->session_id_case,
					SESSIONWIRE__V1__ENVELOPE__SESSION_ID_SESSION_ID_ULID);
			CU_ASSERT_EQUAL(pe->session_id_ulid.len, 16);
			CU_ASSERT_EQUAL(memcmp(pe->session_id_ulid.data,
					       sid.raw, 16), 0);
			break;
		case SW_ID_UUID:
			CU_ASSERT_EQUAL(pe->session_id_case,
					SESSIONWIRE__V1__ENVELOPE__SESSION_ID_SESSION_ID_UUID);
			CU_ASSERT_EQUAL(pe->session_id_uuid.len, 16);
			CU_ASSERT_EQUAL(memcmp(pe->session_id_uuid.data,
					       sid.raw, 16), 0);
			break;
		default:
			CU_ASSERT_EQUAL(pe->session_id_case,
					SESSIONWIRE__V1__ENVELOPE__SESSION_ID_SESSION_ID_TEXT);
			CU_ASSERT_STRING_EQUAL(pe->session_id_text, ids[i]);
			break;
		}
		CU_ASSERT_PTR_NOT_NULL_FATAL(pe->update);
		upd = pbc_pack(&pe->update->base, &ulen);
		CU_ASSERT_EQUAL(ulen, session_len);
		CU_ASSERT_TRUE(ulen == session_len &&
			       !memcmp(upd, session_bytes, ulen));
		free(upd);
		/* the same values packed by protobuf-c */
		ps = sessionwire__v1__session__unpack(NULL, session_len,
						      session_bytes);
		CU_ASSERT_PTR_NOT_NULL_FATAL(ps);
		mine.has_seq = 1;
		mine.seq = 1000 + i;
		mine.update = ps;
		mine.session_id_case = pe->session_id_case;
		if (id_kinds[i] == SW_ID_TEXT) {
			mine.session_id_text = mut(ids[i]);
		} else {
			mine.session_id_ulid.len = 16; /* same union slot */
			mine.session_id_ulid.data = sid.raw;
		}
		packed = pbc_pack(&mine.base, &plen);
		CU_ASSERT_EQUAL(plen, len);
		CU_ASSERT_TRUE(plen == len && !memcmp(packed, buf, len));
		CU_ASSERT_EQUAL(sw_envelope_decode(packed, plen, &env, NULL),
				SW_OK);
		CU_ASSERT_TRUE(same_sid(&env.session_id, ids[i]));
		CU_ASSERT_EQUAL(env.seq, 1000 + i);
		CU_ASSERT_EQUAL(env.update_len, session_len);
		free(packed);
		sessionwire__v1__session__free_unpacked(ps, NULL);
		sessionwire__v1__envelope__free_unpacked(pe, NULL);
		free(buf);
	}
}

/* Too small a buffer: SW_EBUFSZ, *len = the size needed, nothing written
 * past cap. */
static void envelope_encode_never_writes_past_cap(void)
{
	uint8_t buf[600];
	sw_session_id sid;
	size_t need, cap, len;
	sw_error e;

	make_session(0);
	sw_session_id_set(&sid, UUID_A, strlen(UUID_A));
	CU_ASSERT_EQUAL(sw_envelope_encode(&sid, true, 9, session_bytes,
					   session_len, NULL, 0, &need, NULL),
			SW_OK);
	CU_ASSERT_TRUE_FATAL(need + 1 < sizeof(buf));
	for (cap = 0; cap < need; cap++) {
		memset(buf, 0xAA, sizeof(buf));
		sw_error_clear(&e);
		CU_ASSERT_EQUAL(sw_envelope_encode(&sid, true, 9, session_bytes,
						   session_len, buf, cap, &len,
						   &e), SW_EBUFSZ);
		CU_ASSERT_EQUAL(e.code, SW_EBUFSZ);
		CU_ASSERT_EQUAL(len, need);
		CU_ASSERT_EQUAL(buf[cap], 0xAA);
	}
}

typedef struct enc_bad {
	const char *name;
	sw_id_kind kind;
	const char *text;
	size_t text_len;
	const uint8_t *update;
	size_t update_len;
	sw_status st;
	const char *path;
} enc_bad;

static void envelope_encode_rejects_bad_ids(void)
{
	static const enc_bad t[] = {
		{ "empty text id", SW_ID_TEXT, "", 0, NULL, 0, SW_EVALUE,
		  "session_id" },
		{ "dot", SW_ID_TEXT, ".", 1, NULL, 0, SW_EVALUE,
		  "session_id" },
		{ "dot dot", SW_ID_TEXT, "..", 2, NULL, 0, SW_EVALUE,
		  "session_id" },
		{ "bad UTF-8", SW_ID_TEXT, "a\xff", 2, NULL, 0, SW_EUTF8,
		  "session_id" },
		{ "NULL text", SW_ID_TEXT, NULL, 3, NULL, 0, SW_EINVAL,
		  "session_id" },
		{ "bad kind", (sw_id_kind)7, "x", 1, NULL, 0, SW_EINVAL,
		  "session_id" },
		{ "NULL update with a length", SW_ID_TEXT, "x", 1, NULL, 4,
		  SW_EINVAL, "update" },
	};
	size_t i, len = 99;
	uint8_t buf[64];

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		sw_session_id sid;
		sw_error e;

		memset(&sid, 0, sizeof(sid));
		sid.kind = t[i].kind;
		sid.text.ptr = t[i].text;
		sid.text.len = t[i].text_len;
		sw_error_clear(&e);
		CU_ASSERT_EQUAL(sw_envelope_encode(&sid, true, 1, t[i].update,
						   t[i].update_len, buf,
						   sizeof(buf), &len, &e),
				t[i].st);
		if (e.code != t[i].st || strcmp(e.path, t[i].path))
			fprintf(stderr, "%s: %s %s %s\n", t[i].name,
				sw_errname(e.code), e.path, e.message);
		CU_ASSERT_EQUAL(e.code, t[i].st);
		CU_ASSERT_STRING_EQUAL(e.path, t[i].path);
		CU_ASSERT_NOT_EQUAL(e.message[0], '\0');
	}
	/* NULL session: a batch item of the previous item's session */
	CU_ASSERT_EQUAL(sw_envelope_encode(NULL, true, 1, NULL, 0, buf,
					   sizeof(buf), &len, NULL), SW_OK);
	CU_ASSERT_EQUAL(len, 2);
	CU_ASSERT_EQUAL(sw_envelope_encode(NULL, true, 1, NULL, 0, NULL, 5,
					   &len, NULL), SW_EINVAL);
}

/* ==== Batch ==== */

/* Builds a batch of n envelopes (ids cycling through the forms, seq =
 * 10 + i) into a malloc'd buffer; checks the size-only pass agrees. */
static uint8_t *build_batch(size_t n, size_t *len)
{
	size_t pass, i, cap = 0, blen;
	uint8_t *batch = NULL;

	for (pass = 0; pass < 2; pass++) {
		blen = 0;
		for (i = 0; i < n; i++) {
			sw_session_id sid;
			size_t elen;
			uint8_t *env;

			sw_session_id_set(&sid, ids[i % N_IDS],
					  strlen(ids[i % N_IDS]));
			env = encode_env(&sid, true, 10 + i, session_bytes,
					 session_len, &elen);
			CU_ASSERT_EQUAL(sw_batch_append(env, elen, batch, cap,
							&blen, NULL), SW_OK);
			free(env);
		}
		if (pass == 0) {
			cap = blen;
			batch = malloc(cap ? cap : 1);
			CU_ASSERT_PTR_NOT_NULL_FATAL(batch);
		}
	}
	CU_ASSERT_EQUAL(blen, cap);
	*len = blen;
	return batch;
}

static void batch_round_trips_0_1_100_items(void)
{
	static const size_t counts[] = { 0, 1, 2, 100 };
	size_t c, i;

	make_session(0);
	for (c = 0; c < sizeof(counts) / sizeof(counts[0]); c++) {
		size_t n = counts[c], got = 12345, len;
		uint8_t *batch = build_batch(n, &len);
		sw_envelope *items = calloc(n + 1, sizeof(*items));
		PbBatch *pb;
		sw_error e;

		CU_ASSERT_PTR_NOT_NULL_FATAL(items);
		sw_error_clear(&e);
		CU_ASSERT_EQUAL_FATAL(sw_batch_decode(batch, len, items, n,
						      &got, &e), SW_OK);
		CU_ASSERT_EQUAL(got, n);
		for (i = 0; i < got; i++) {
			CU_ASSERT_TRUE(same_sid(&items[i].session_id,
						ids[i % N_IDS]));
			CU_ASSERT_EQUAL(items[i].seq, 10 + i);
			CU_ASSERT_EQUAL(items[i].update_len, session_len);
			CU_ASSERT_EQUAL(memcmp(items[i].update, session_bytes,
					       session_len), 0);
		}
		pb = sessionwire__v1__batch__unpack(NULL, len, batch);
		CU_ASSERT_PTR_NOT_NULL_FATAL(pb);
		CU_ASSERT_EQUAL(pb->n_items, n);
		for (i = 0; i < pb->n_items; i++) {
			CU_ASSERT_EQUAL(pb->items[i]->seq, 10 + i);
			CU_ASSERT_PTR_NOT_NULL(pb->items[i]->update);
			CU_ASSERT_EQUAL(pb->items[i]->session_id_case,
					id_kinds[i % N_IDS] == SW_ID_ULID ? 1
					: id_kinds[i % N_IDS] == SW_ID_UUID ? 3
									    : 2);
		}
		/* protobuf-c packs the same bytes and they decode */
		if (n > 0) {
			size_t plen;
			uint8_t *packed = pbc_pack(&pb->base, &plen);

			CU_ASSERT_EQUAL(plen, len);
			CU_ASSERT_TRUE(plen == len && !memcmp(packed, batch, len));
			CU_ASSERT_EQUAL(sw_batch_decode(packed, plen, items, n,
							&got, NULL), SW_OK);
			CU_ASSERT_EQUAL(got, n);
			free(packed);
		}
		sessionwire__v1__batch__free_unpacked(pb, NULL);
		/* one item too many for cap */
		if (n > 0) {
			sw_error_clear(&e);
			CU_ASSERT_EQUAL(sw_batch_decode(batch, len, items, n - 1,
							&got, &e), SW_ETOOBIG);
			CU_ASSERT_EQUAL(got, 0);
			CU_ASSERT_NOT_EQUAL(strstr(e.message, "at most"), NULL);
		}
		free(items);
		free(batch);
	}
}

/* A too small buffer keeps *len and the bytes already there. */
static void batch_append_keeps_len_on_a_small_buffer(void)
{
	uint8_t buf[32], env[5] = { 1, 2, 3, 4, 5 };
	size_t len = 0;
	sw_error e;

	memset(buf, 0xAA, sizeof(buf));
	CU_ASSERT_EQUAL(sw_batch_append(env, 5, buf, 14, &len, NULL), SW_OK);
	CU_ASSERT_EQUAL(len, 7);
	CU_ASSERT_EQUAL(buf[0], 0x0a);
	CU_ASSERT_EQUAL(buf[1], 5);
	CU_ASSERT_EQUAL(sw_batch_append(env, 5, buf, 14, &len, NULL), SW_OK);
	CU_ASSERT_EQUAL(len, 14);
	sw_error_clear(&e);
	CU_ASSERT_EQUAL(sw_batch_append(env, 5, buf, 20, &len, &e), SW_EBUFSZ);
	CU_ASSERT_EQUAL(e.code, SW_EBUFSZ);
	CU_ASSERT_EQUAL(len, 14);
	CU_ASSERT_EQUAL(buf[14], 0xAA);
	CU_ASSERT_EQUAL(sw_batch_append(NULL, 3, buf, 20, &len, NULL),
			SW_EINVAL);
	CU_ASSERT_EQUAL(sw_batch_append(env, 5, buf, 20, NULL, NULL),
			SW_EINVAL);
	/* size only */
	len = 100;
	CU_ASSERT_EQUAL(sw_batch_append(env, 200, NULL, 0, &len, NULL), SW_OK);
	CU_ASSERT_EQUAL(len, 100 + 1 + 2 + 200);
}

/* ==== Ack ==== */

static const sw_result results_tab[] = {
	{ 1, 200, false, 0, { "", 0 } },
	{ 2, 202, false, 0, { NULL, 0 } },
	{ 3, 429, true, 1500, { "rate limited", 12 } },
	{ 4, 400, false, 0, { "billing.total_cost: expected a number", 37 } },
	{ 5, 0, true, 0, { "not tried", 9 } },
	{ UINT64_MAX, UINT32_MAX, true, UINT32_MAX,
	  { "\xc3\xa9\xf0\x9f\x98\x80", 6 } },
};
#define N_RESULTS (sizeof(results_tab) / sizeof(results_tab[0]))

static bool same_result(const sw_result *a, const sw_result *b)
{
	return a->seq == b->seq && a->status == b->status &&
	       a->has_retry_after == b->has_retry_after &&
	       a->retry_after_ms == b->retry_after_ms &&
	       a->message.len == b->message.len &&
	       (a->message.len == 0 ||
		!memcmp(a->message.ptr, b->message.ptr, a->message.len));
}

static void ack_round_trips_and_matches_protobuf_c(void)
{
	size_t n, i;

	for (n = 0; n <= N_RESULTS; n++) {
		sw_result back[N_RESULTS];
		size_t need, len, got, plen;
		uint8_t buf[512], *packed;
		PbAck *pa;
		PbResult *pr[N_RESULTS], prs[N_RESULTS];
		PbAck mine = SESSIONWIRE__V1__ACK__INIT;

		CU_ASSERT_EQUAL(sw_ack_encode(results_tab, n, NULL, 0, &need,
					      NULL), SW_OK);
		CU_ASSERT_EQUAL_FATAL(sw_ack_encode(results_tab, n, buf,
						    sizeof(buf), &len, NULL),
				      SW_OK);
		CU_ASSERT_EQUAL(len, need);
		CU_ASSERT_EQUAL_FATAL(sw_ack_decode(buf, len, back, N_RESULTS,
						    &got, NULL), SW_OK);
		CU_ASSERT_EQUAL_FATAL(got, n);
		for (i = 0; i < n; i++) {
			CU_ASSERT_TRUE(same_result(&back[i], &results_tab[i]));
			CU_ASSERT_PTR_NOT_NULL(back[i].message.ptr);
		}
		pa = sessionwire__v1__ack__unpack(NULL, len, buf);
		CU_ASSERT_PTR_NOT_NULL_FATAL(pa);
		CU_ASSERT_EQUAL(pa->n_results, n);
		for (i = 0; i < pa->n_results; i++) {
			const sw_result *r = &results_tab[i];
			const PbResult *p = pa->results[i];

			CU_ASSERT_TRUE(p->has_seq && p->seq == r->seq);
			CU_ASSERT_TRUE(p->has_status && p->status == r->status);
			CU_ASSERT_EQUAL(!!p->has_retry_after_ms,
					r->has_retry_after);
			CU_ASSERT_EQUAL(p->retry_after_ms, r->retry_after_ms);
			CU_ASSERT_TRUE(r->message.len == 0
				       ? p->message == NULL
				       : p->message != NULL &&
					 strlen(p->message) == r->message.len &&
					 !memcmp(p->message, r->message.ptr,
						 r->message.len));
		}
		sessionwire__v1__ack__free_unpacked(pa, NULL);
		/* protobuf-c packs the same values to the same bytes */
		for (i = 0; i < n; i++) {
			PbResult init = SESSIONWIRE__V1__RESULT__INIT;

			prs[i] = init;
			prs[i].has_seq = prs[i].has_status = 1;
			prs[i].seq = results_tab[i].seq;
			prs[i].status = results_tab[i].status;
			prs[i].has_retry_after_ms =
				results_tab[i].has_retry_after;
			prs[i].retry_after_ms = results_tab[i].retry_after_ms;
			prs[i].message = results_tab[i].message.len
					 ? mut(results_tab[i].message.ptr)
					 : NULL;
			pr[i] = &prs[i];
		}
		mine.n_results = n;
		mine.results = pr;
		/* message strings must be NUL-terminated for protobuf-c: all
		 * the table's are literals */
		packed = pbc_pack(&mine.base, &plen);
		CU_ASSERT_EQUAL(plen, len);
		CU_ASSERT_TRUE(plen == len && !memcmp(packed, buf, len));
		CU_ASSERT_EQUAL(sw_ack_decode(packed, plen, back, N_RESULTS,
					      &got, NULL), SW_OK);
		CU_ASSERT_EQUAL(got, n);
		free(packed);
	}
}

/* Missing status decodes as 0 (not tried); protobuf-c without status. */
static void ack_decode_takes_absent_status_as_zero(void)
{
	PbResult r = SESSIONWIRE__V1__RESULT__INIT, *rp = &r;
	PbAck a = SESSIONWIRE__V1__ACK__INIT;
	sw_result back[1];
	size_t len, got;
	uint8_t *b;

	r.has_seq = 1;
	r.seq = 77;
	a.n_results = 1;
	a.results = &rp;
	b = pbc_pack(&a.base, &len);
	CU_ASSERT_EQUAL(sw_ack_decode(b, len, back, 1, &got, NULL), SW_OK);
	CU_ASSERT_EQUAL(got, 1);
	CU_ASSERT_EQUAL(back[0].seq, 77);
	CU_ASSERT_EQUAL(back[0].status, 0);
	CU_ASSERT_FALSE(back[0].has_retry_after);
	CU_ASSERT_EQUAL(back[0].message.len, 0);
	free(b);
}

static void ack_encode_rejects_bad_messages_and_small_buffers(void)
{
	sw_result r[2] = { { 1, 200, false, 0, { "ok", 2 } },
			   { 2, 400, false, 0, { "bad \xc3", 5 } } };
	uint8_t buf[64];
	size_t len, need;
	sw_error e;

	sw_error_clear(&e);
	CU_ASSERT_EQUAL(sw_ack_encode(r, 2, buf, sizeof(buf), &len, &e),
			SW_EUTF8);
	CU_ASSERT_STRING_EQUAL(e.path, "results[1].message");
	CU_ASSERT_EQUAL(e.offset, 4);
	r[1].message.ptr = NULL;
	sw_error_clear(&e);
	CU_ASSERT_EQUAL(sw_ack_encode(r, 2, buf, sizeof(buf), &len, &e),
			SW_EINVAL);
	CU_ASSERT_STRING_EQUAL(e.path, "results[1].message");
	CU_ASSERT_EQUAL(sw_ack_encode(NULL, 2, buf, sizeof(buf), &len, NULL),
			SW_EINVAL);
	r[1].message.ptr = "bad";
	r[1].message.len = 3;
	CU_ASSERT_EQUAL(sw_ack_encode(r, 2, NULL, 0, &need, NULL), SW_OK);
	memset(buf, 0xAA, sizeof(buf));
	sw_error_clear(&e);
	CU_ASSERT_EQUAL(sw_ack_encode(r, 2, buf, need - 1, &len, &e),
			SW_EBUFSZ);
	CU_ASSERT_EQUAL(e.code, SW_EBUFSZ);
	CU_ASSERT_EQUAL(len, need);
	CU_ASSERT_EQUAL(buf[need - 1], 0xAA);
}

/* ==== Error ==== */

static void error_msg_round_trips_and_matches_protobuf_c(void)
{
	static const sw_error_msg t[] = {
		{ 400, { "invalid_body", 12 },
		  { "billing.total_cost: expected a number, found a string",
		    53 }, { "billing.total_cost", 18 } },
		{ 401, { "unauthorized", 12 }, { "missing token", 13 },
		  { "", 0 } },
		{ 0, { NULL, 0 }, { NULL, 0 }, { NULL, 0 } },
		{ 413, { "too_big", 7 }, { "\xe2\x82\xac", 3 },
		  { "tags[3]", 7 } },
	};
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		PbError *pe, mine = SESSIONWIRE__V1__ERROR__INIT;
		uint8_t buf[256], *packed;
		size_t len, plen;
		sw_error_msg back;

		CU_ASSERT_EQUAL_FATAL(sw_error_msg_encode(&t[i], buf,
							  sizeof(buf), &len,
							  NULL), SW_OK);
		CU_ASSERT_EQUAL_FATAL(sw_error_msg_decode(buf, len, &back,
							  NULL), SW_OK);
		CU_ASSERT_EQUAL(back.status, t[i].status);
#define SAME(f)                                                               \
	CU_ASSERT_TRUE(back.f.len == t[i].f.len && back.f.ptr != NULL &&      \
		       (!back.f.len || !memcmp(back.f.ptr, t[i].f.ptr,        \
					       back.f.len)))
		SAME(code);
		SAME(message);
		SAME(field);
#undef SAME
		pe = sessionwire__v1__error__unpack(NULL, len, buf);
		CU_ASSERT_PTR_NOT_NULL_FATAL(pe);
		CU_ASSERT_TRUE(pe->has_status && pe->status == t[i].status);
		CU_ASSERT_TRUE(t[i].code.len ? pe->code &&
			       !strcmp(pe->code, t[i].code.ptr) : !pe->code);
		CU_ASSERT_TRUE(t[i].message.len ? pe->message &&
			       !strcmp(pe->message, t[i].message.ptr)
			       : !pe->message);
		CU_ASSERT_TRUE(t[i].field.len ? pe->field &&
			       !strcmp(pe->field, t[i].field.ptr) : !pe->field);
		sessionwire__v1__error__free_unpacked(pe, NULL);
		mine.has_status = 1;
		mine.status = t[i].status;
		mine.code = t[i].code.len ? mut(t[i].code.ptr) : NULL;
		mine.message = t[i].message.len ? mut(t[i].message.ptr)
						: NULL;
		mine.field = t[i].field.len ? mut(t[i].field.ptr) : NULL;
		packed = pbc_pack(&mine.base, &plen);
		CU_ASSERT_TRUE(plen == len && !memcmp(packed, buf, len));
		CU_ASSERT_EQUAL(sw_error_msg_decode(packed, plen, &back, NULL),
				SW_OK);
		CU_ASSERT_EQUAL(back.status, t[i].status);
		free(packed);
	}
}

static void error_msg_encode_rejects_bad_utf8_and_small_buffers(void)
{
	sw_error_msg m = { 400, { "a", 1 }, { "b", 1 }, { "\xed\xa0\x80", 3 } };
	uint8_t buf[32];
	size_t len;
	sw_error e;

	sw_error_clear(&e);
	CU_ASSERT_EQUAL(sw_error_msg_encode(&m, buf, sizeof(buf), &len, &e),
			SW_EUTF8);
	CU_ASSERT_STRING_EQUAL(e.path, "field");
	m.field.len = 0;
	m.code.ptr = "\xff";
	sw_error_clear(&e);
	CU_ASSERT_EQUAL(sw_error_msg_encode(&m, buf, sizeof(buf), &len, &e),
			SW_EUTF8);
	CU_ASSERT_STRING_EQUAL(e.path, "code");
	m.code.ptr = "a";
	CU_ASSERT_EQUAL(sw_error_msg_encode(&m, buf, sizeof(buf), &len, NULL),
			SW_OK);
	CU_ASSERT_EQUAL(len, 3 + 3 + 3);
	CU_ASSERT_EQUAL(sw_error_msg_encode(&m, buf, 8, &len, NULL), SW_EBUFSZ);
	CU_ASSERT_EQUAL(len, 9);
	CU_ASSERT_EQUAL(sw_error_msg_encode(NULL, buf, 8, &len, NULL),
			SW_EINVAL);
}

/* ==== Bad input, one row each ==== */

enum { K_BATCH, K_ENV, K_ACK, K_ERR };

typedef struct bad_row {
	const char *name;
	int kind;
	const char *hex;
	size_t cap;         /* items for batch/ack */
	sw_status st;
	const char *path;
	long offset;        /* -1: (size_t)-1 */
} bad_row;

/* A valid envelope: text id "dev1", seq 7, empty update (10 bytes), and
 * as a batch item. */
#define ENV "12 04 64657631 20 07 2a 00"
#define ITEM "0a 0a " ENV
#define ULID16 "0123456789abcdef0123456789abcdef"

static const bad_row bad_rows[] = {
	/* structure */
	{ "batch: field tag cut short", K_BATCH, ITEM " 80", 4, SW_ETRUNC,
	  "", 12 },
	{ "batch: tag varint over 10 bytes", K_BATCH,
	  "ffffffffffffffffffffff01", 4, SW_EWIRE, "", 0 },
	{ "batch: tag over 32 bits", K_BATCH, "8080808080 01", 4, SW_EWIRE,
	  "", 0 },
	{ "batch: field number 0", K_BATCH, "00 00", 4, SW_EWIRE, "", 0 },
	{ "batch: unknown field", K_BATCH, ITEM " 10 01", 4, SW_EUNKNOWN,
	  "#2", 12 },
	{ "batch: unknown group field", K_BATCH, "7b", 4, SW_EUNKNOWN,
	  "#15", 0 },
	{ "batch: items as varint", K_BATCH, "08 01", 4, SW_EWIRE, "items",
	  0 },
	{ "batch: item length past the end", K_BATCH, ITEM " 0a 0b " ENV, 4,
	  SW_ETRUNC, "items", 12 },
	{ "batch: item length varint cut", K_BATCH, "0a 80", 4, SW_ETRUNC,
	  "items", 0 },
	{ "batch: item length over 10 bytes", K_BATCH,
	  "0a ffffffffffffffffffff01", 4, SW_EWIRE, "items", 0 },
	{ "batch: more than cap items", K_BATCH, ITEM ITEM ITEM, 2,
	  SW_ETOOBIG, "items[2]", 24 },
	/* envelope inside a batch */
	{ "item: unknown field", K_BATCH, ITEM "0a 0c " ENV " 30 01", 4,
	  SW_EUNKNOWN, "items[1].#6", 24 },
	{ "item: seq as bytes", K_BATCH, "0a 0a 12 04 64657631 22 00 2a 00",
	  4, SW_EWIRE, "items[0].seq", 8 },
	{ "item: seq twice", K_BATCH,
	  "0a 0c 12 04 64657631 20 07 20 08 2a 00", 4, SW_EDUP,
	  "items[0].seq", 10 },
	{ "item: update twice", K_BATCH,
	  "0a 0c 12 04 64657631 20 07 2a 00 2a 00", 4, SW_EDUP,
	  "items[0].update", 12 },
	{ "item: text id twice", K_BATCH,
	  "0a 0d 12 04 64657631 12 01 78 20 07 2a 00", 4, SW_EDUP,
	  "items[0].session_id_text", 8 },
	{ "item: uuid after text id (one oneof)", K_BATCH,
	  "0a 1c 12 04 64657631 1a 10 " ULID16 " 20 07 2a 00", 4, SW_EDUP,
	  "items[0].session_id_uuid", 8 },
	{ "item: ulid of 15 bytes", K_BATCH,
	  "0a 15 0a 0f 0123456789abcdef0123456789abcd 20 07 2a 00", 4,
	  SW_EVALUE, "items[0].session_id_ulid", 2 },
	{ "item: ulid of 17 bytes", K_BATCH,
	  "0a 17 0a 11 " ULID16 "ee 20 07 2a 00", 4, SW_EVALUE,
	  "items[0].session_id_ulid", 2 },
	{ "item: uuid of 0 bytes", K_BATCH, "0a 06 1a 00 20 07 2a 00", 4,
	  SW_EVALUE, "items[0].session_id_uuid", 2 },
	{ "item: empty text id", K_BATCH, "0a 06 12 00 20 07 2a 00", 4,
	  SW_EVALUE, "items[0].session_id_text", 4 },
	{ "item: text id .", K_BATCH, "0a 07 12 01 2e 20 07 2a 00", 4,
	  SW_EVALUE, "items[0].session_id_text", 4 },
	{ "item: text id ..", K_BATCH, "0a 08 12 02 2e2e 20 07 2a 00", 4,
	  SW_EVALUE, "items[0].session_id_text", 4 },
	{ "item: text id bad UTF-8", K_BATCH,
	  "0a 09 12 03 61 c3 28 20 07 2a 00", 4, SW_EUTF8,
	  "items[0].session_id_text", 5 },
	{ "item: text id surrogate", K_BATCH,
	  "0a 09 12 03 ed a0 80 20 07 2a 00", 4, SW_EUTF8,
	  "items[0].session_id_text", 4 },
	{ "item: session id missing", K_BATCH, "0a 04 20 07 2a 00", 4,
	  SW_EMISSING, "items[0].session_id", 2 },
	{ "first item: seq missing", K_BATCH,
	  "0a 08 12 04 64657631 2a 00", 4, SW_EMISSING, "items[0].seq", 2 },
	{ "item 3: seq missing after seq 2^64-1", K_BATCH,
	  "0a 13 12 04 64657631 20 ffffffffffffffffff01 2a 00"
	  " 0a 08 12 04 64657631 2a 00", 4, SW_EMISSING, "items[1].seq", 23 },
	{ "item: update missing", K_BATCH, "0a 08 12 04 64657631 20 07", 4,
	  SW_EMISSING, "items[0].update", 2 },
	{ "item: seq varint over 64 bits", K_BATCH,
	  "0a 13 12 04 64657631 20 ffffffffffffffffff02 2a 00", 4, SW_EWIRE,
	  "items[0].seq", 8 },
	{ "item: seq varint cut by the item end", K_BATCH,
	  "0a 08 12 04 64657631 20 ff", 4, SW_ETRUNC, "items[0].seq", 8 },
	{ "item: update length past the item", K_BATCH,
	  "0a 0a 12 04 64657631 20 07 2a 01 00", 4, SW_ETRUNC,
	  "items[0].update", 10 },
	{ "item: ulid as group", K_BATCH, "0a 01 0b", 4, SW_EWIRE,
	  "items[0].session_id_ulid", 2 },
	{ "item: update as varint", K_BATCH,
	  "0a 0a 12 04 64657631 20 07 28 00", 4, SW_EWIRE, "items[0].update",
	  10 },
	/* a lone envelope */
	{ "envelope: seq missing", K_ENV, "0a 10 " ULID16 " 2a 00", 0,
	  SW_EMISSING, "seq", 0 },
	{ "envelope: unknown field", K_ENV, ENV " 38 00", 0, SW_EUNKNOWN,
	  "#7", 10 },
	{ "envelope: empty input", K_ENV, "", 0, SW_EMISSING, "session_id",
	  0 },
	/* ack */
	{ "ack: result without seq", K_ACK, "0a 03 10 c8 01", 4, SW_EMISSING,
	  "results[0].seq", 2 },
	{ "ack: status over 32 bits", K_ACK, "0a 08 08 01 10 8080808010", 4,
	  SW_ERANGE, "results[0].status", 4 },
	{ "ack: retry_after over 32 bits", K_ACK,
	  "0a 08 08 01 18 8080808010", 4, SW_ERANGE,
	  "results[0].retry_after_ms", 4 },
	{ "ack: status twice", K_ACK, "0a 06 08 01 10 01 10 02", 4, SW_EDUP,
	  "results[0].status", 6 },
	{ "ack: seq twice", K_ACK, "0a 04 08 01 08 01", 4, SW_EDUP,
	  "results[0].seq", 4 },
	{ "ack: message bad UTF-8", K_ACK, "0a 05 08 01 22 01 80", 4,
	  SW_EUTF8, "results[0].message", 6 },
	{ "ack: unknown field", K_ACK, "0a 04 08 01 28 00", 4, SW_EUNKNOWN,
	  "results[0].#5", 4 },
	{ "ack: retry_after as bytes", K_ACK, "0a 04 08 01 1a 00", 4,
	  SW_EWIRE, "results[0].retry_after_ms", 4 },
	{ "ack: more results than cap", K_ACK, "0a 02 08 01 0a 02 08 02", 1,
	  SW_ETOOBIG, "results[1]", 4 },
	{ "ack: result cut short", K_ACK, "0a 05 08 01", 4, SW_ETRUNC,
	  "results", 0 },
	{ "ack: unknown top field", K_ACK, "12 00", 4, SW_EUNKNOWN, "#2", 0 },
	/* error */
	{ "error: status over 32 bits", K_ERR, "08 8080808010", 0, SW_ERANGE,
	  "status", 0 },
	{ "error: code bad UTF-8", K_ERR, "08 01 12 02 61 ff", 0, SW_EUTF8,
	  "code", 5 },
	{ "error: message twice", K_ERR, "1a 00 1a 00", 0, SW_EDUP,
	  "message", 2 },
	{ "error: field as varint", K_ERR, "20 01", 0, SW_EWIRE, "field", 0 },
	{ "error: unknown field", K_ERR, "28 01", 0, SW_EUNKNOWN, "#5", 0 },
	{ "error: string past the end", K_ERR, "12 05 61", 0, SW_ETRUNC,
	  "code", 0 },
	{ "error: status cut", K_ERR, "08 80", 0, SW_ETRUNC, "status", 0 },
};

static sw_status run_decoder(int kind, const uint8_t *b, size_t len,
			     size_t cap, sw_error *e)
{
	sw_envelope items[8], env;
	sw_result res[8];
	sw_error_msg em;
	size_t n;

	switch (kind) {
	case K_BATCH:
		return sw_batch_decode(b, len, items, cap, &n, e);
	case K_ENV:
		return sw_envelope_decode(b, len, &env, e);
	case K_ACK:
		return sw_ack_decode(b, len, res, cap, &n, e);
	default:
		return sw_error_msg_decode(b, len, &em, e);
	}
}

static void decoders_reject_bad_input_table(void)
{
	size_t i;
	int bad = 0;

	for (i = 0; i < sizeof(bad_rows) / sizeof(bad_rows[0]); i++) {
		const bad_row *r = &bad_rows[i];
		uint8_t tmp[256], *b;
		size_t len = unhex(r->hex, tmp, sizeof(tmp));
		size_t want_off = r->offset < 0 ? (size_t)-1
						: (size_t)r->offset;
		sw_error e;
		sw_status st;

		b = malloc(len ? len : 1); /* exact size: ASan sees overreads */
		CU_ASSERT_PTR_NOT_NULL_FATAL(b);
		memcpy(b, tmp, len);
		sw_error_clear(&e);
		st = run_decoder(r->kind, b, len, r->cap, &e);
		if (st != r->st || e.code != r->st ||
		    strcmp(e.path, r->path) || e.offset != want_off ||
		    e.message[0] == '\0') {
			fprintf(stderr, "\n%s: got %s \"%s\" at %zu: %s\n",
				r->name, sw_errname(st), e.path, e.offset,
				e.message);
			bad++;
		}
		free(b);
	}
	CU_ASSERT_EQUAL(bad, 0);
}

/* Decoders take NULL only where documented. */
static void decoders_reject_null_arguments(void)
{
	sw_envelope items[1];
	sw_result res[1];
	sw_error_msg em;
	size_t n = 5;

	CU_ASSERT_EQUAL(sw_batch_decode(NULL, 0, NULL, 0, &n, NULL), SW_OK);
	CU_ASSERT_EQUAL(n, 0);
	CU_ASSERT_EQUAL(sw_batch_decode(NULL, 3, items, 1, &n, NULL),
			SW_EINVAL);
	CU_ASSERT_EQUAL(sw_batch_decode((const uint8_t *)"", 0, NULL, 1, &n,
					NULL), SW_EINVAL);
	CU_ASSERT_EQUAL(sw_batch_decode((const uint8_t *)"", 0, items, 1, NULL,
					NULL), SW_EINVAL);
	CU_ASSERT_EQUAL(sw_ack_decode(NULL, 0, NULL, 0, &n, NULL), SW_OK);
	CU_ASSERT_EQUAL(sw_ack_decode(NULL, 1, res, 1, &n, NULL), SW_EINVAL);
	CU_ASSERT_EQUAL(sw_envelope_decode((const uint8_t *)"", 0, NULL, NULL),
			SW_EINVAL);
	CU_ASSERT_EQUAL(sw_error_msg_decode(NULL, 0, &em, NULL), SW_OK);
	CU_ASSERT_EQUAL(em.status, 0);
	CU_ASSERT_EQUAL(em.code.len, 0);
	CU_ASSERT_EQUAL(sw_error_msg_decode(NULL, 2, &em, NULL), SW_EINVAL);
}

/* ==== Truncation ==== */

/* Top-level field boundaries of b (test-side walker). */
static size_t boundaries(const uint8_t *b, size_t len, size_t *out,
			 size_t max)
{
	size_t pos = 0, n = 0;

	while (pos < len && n < max) {
		uint64_t tag = 0, v = 0;
		int s = 0;

		do
			tag |= (uint64_t)(b[pos] & 0x7f) << s, s += 7;
		while (b[pos++] & 0x80);
		s = 0;
		do
			v |= (uint64_t)(b[pos] & 0x7f) << s, s += 7;
		while (b[pos++] & 0x80);
		if ((tag & 7) == 2)
			pos += v;
		out[n++] = pos;
	}
	return n;
}

/* Every prefix of a valid message is either a clean error (code set,
 * message set) or, at a top-level field boundary, a valid message
 * itself (fewer items). Each prefix sits in an exact-size heap block. */
static void truncation_at_every_byte_is_clean_error(void)
{
	sw_result acks[3] = { { 1, 200, false, 0, { "", 0 } },
			      { 2, 429, true, 100, { "later", 5 } },
			      { 3, 400, false, 0, { "bad", 3 } } };
	sw_error_msg em = { 400, { "invalid_body", 12 }, { "m", 1 },
			    { "tags[3]", 7 } };
	uint8_t ack[128], errm[64], *batch, *whole[4];
	size_t lens[4], k;

	make_session(1);
	batch = build_batch(3, &lens[0]);
	whole[0] = batch;
	CU_ASSERT_EQUAL_FATAL(sw_ack_encode(acks, 3, ack, sizeof(ack),
					    &lens[2], NULL), SW_OK);
	CU_ASSERT_EQUAL_FATAL(sw_error_msg_encode(&em, errm, sizeof(errm),
						  &lens[3], NULL), SW_OK);
	/* one envelope: the first batch item (after its tag and length) */
	for (k = 1, lens[1] = 0; k < 6; k++) {
		lens[1] |= (size_t)(batch[k] & 0x7f) << (7 * (k - 1));
		if (!(batch[k] & 0x80))
			break;
	}
	whole[1] = batch + k + 1;
	whole[2] = ack;
	whole[3] = errm;
	for (k = 0; k < 4; k++) {
		size_t cut, bnd[16], nb = k == K_ENV ? 0
			: boundaries(whole[k], lens[k], bnd, 16);
		int errors = 0, oks = 0;

		for (cut = 0; cut <= lens[k]; cut++) {
			uint8_t *b = malloc(cut ? cut : 1);
			bool at_boundary = cut == 0 || cut == lens[k];
			sw_error e;
			sw_status st;
			size_t j;

			for (j = 0; j < nb; j++)
				at_boundary = at_boundary || bnd[j] == cut;
			if (k == K_ENV)
				at_boundary = cut == lens[k];
			CU_ASSERT_PTR_NOT_NULL_FATAL(b);
			memcpy(b, whole[k], cut);
			sw_error_clear(&e);
			st = run_decoder((int)k, b, cut, 8, &e);
			if (at_boundary) {
				CU_ASSERT_EQUAL(st, SW_OK);
				oks++;
			} else {
				CU_ASSERT_NOT_EQUAL(st, SW_OK);
				CU_ASSERT_EQUAL(e.code, st);
				CU_ASSERT_NOT_EQUAL(e.message[0], '\0');
				CU_ASSERT_TRUE(st == SW_ETRUNC ||
					       st == SW_EMISSING);
				errors++;
			}
			free(b);
		}
		CU_ASSERT_TRUE(errors > 0);
		CU_ASSERT_TRUE(oks >= 1);
	}
	free(batch);
}

/* ==== Random corruption ==== */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static unsigned rnd(unsigned n)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (unsigned)((rng_state * 2685821657736338717ull) >> 33) % n;
}

/* Applies 1-3 random edits (set, insert, delete a byte, cut the end) to
 * b[0..*len) (room for cap). */
static void mutate(uint8_t *b, size_t *len, size_t cap)
{
	unsigned k, edits = 1 + rnd(3);

	for (k = 0; k < edits; k++) {
		size_t at = *len ? rnd((unsigned)*len) : 0;
		static const uint8_t special[] = { 0x00, 0x01, 0x7f, 0x80,
						   0xff, 0x08, 0x0a, 0x12 };

		switch (rnd(4)) {
		case 0:
			if (*len)
				b[at] = rnd(2) ? (uint8_t)rnd(256)
					       : special[rnd(sizeof(special))];
			break;
		case 1:
			if (*len < cap) {
				memmove(b + at + 1, b + at, *len - at);
				b[at] = (uint8_t)rnd(256);
				(*len)++;
			}
			break;
		case 2:
			if (*len) {
				memmove(b + at, b + at + 1, *len - at - 1);
				(*len)--;
			}
			break;
		default:
			*len = at;
			break;
		}
	}
}

/* The length protobuf-c sees of an optional string (NULL: absent). */
static size_t pbc_strlen(const char *s)
{
	return s ? strlen(s) : 0;
}

/* Whatever our strict decoders accept, protobuf-c accepts with the same
 * values; nothing crashes or reads outside the exact-size input (ASan). */
static void mutated_inputs_are_clean_and_agree_with_protobuf_c(void)
{
	sw_error_msg em = { 400, { "invalid_body", 12 }, { "bad seq", 7 },
			    { "items[3].seq", 12 } };
	uint8_t base[3][2048];
	size_t base_len[3], m, rounds = tu_quick ? 300 : 5000;
	long ok[3] = { 0, 0, 0 }, rejected[3] = { 0, 0, 0 };
	uint8_t *batch;
	int kind;

	make_session(0);
	batch = build_batch(3, &base_len[0]);
	CU_ASSERT_TRUE_FATAL(base_len[0] < sizeof(base[0]) - 64);
	memcpy(base[0], batch, base_len[0]);
	free(batch);
	CU_ASSERT_EQUAL_FATAL(sw_ack_encode(results_tab, N_RESULTS, base[1],
					    sizeof(base[1]), &base_len[1], NULL),
			      SW_OK);
	CU_ASSERT_EQUAL_FATAL(sw_error_msg_encode(&em, base[2],
						  sizeof(base[2]), &base_len[2],
						  NULL), SW_OK);
	for (kind = 0; kind < 3; kind++)
		for (m = 0; m < rounds; m++) {
			uint8_t tmp[2048], *b;
			size_t len = base_len[kind], n = 0, i;
			sw_envelope items[8];
			sw_result res[8];
			sw_error_msg e;
			sw_error err;
			sw_status st;

			memcpy(tmp, base[kind], len);
			mutate(tmp, &len, sizeof(tmp));
			b = malloc(len ? len : 1);
			CU_ASSERT_PTR_NOT_NULL_FATAL(b);
			memcpy(b, tmp, len);
			sw_error_clear(&err);
			st = kind == 0 ? sw_batch_decode(b, len, items, 8, &n, &err)
			     : kind == 1 ? sw_ack_decode(b, len, res, 8, &n, &err)
			     : sw_error_msg_decode(b, len, &e, &err);
			if (st != SW_OK) {
				CU_ASSERT_EQUAL(err.code, st);
				CU_ASSERT_NOT_EQUAL(err.message[0], '\0');
				rejected[kind]++;
				free(b);
				continue;
			}
			ok[kind]++;
			if (kind == 0) {
				/* the update bytes are not decoded here, so
				 * protobuf-c (which does) may refuse them */
				PbBatch *pb = sessionwire__v1__batch__unpack(
					NULL, len, b);

				for (i = 0; i < n; i++)
					CU_ASSERT_TRUE(items[i].update >= b &&
						       items[i].update +
						       items[i].update_len <=
						       b + len);
				if (pb != NULL) {
					CU_ASSERT_EQUAL(pb->n_items, n);
					for (i = 0; i < n && i < pb->n_items; i++)
						CU_ASSERT_EQUAL(pb->items[i]->seq,
								items[i].seq);
					sessionwire__v1__batch__free_unpacked(
						pb, NULL);
				}
			} else if (kind == 1) {
				PbAck *pa = sessionwire__v1__ack__unpack(NULL,
									 len, b);

				CU_ASSERT_PTR_NOT_NULL_FATAL(pa);
				CU_ASSERT_EQUAL(pa->n_results, n);
				for (i = 0; i < n && i < pa->n_results; i++) {
					const PbResult *p = pa->results[i];

					CU_ASSERT_EQUAL(p->seq, res[i].seq);
					CU_ASSERT_EQUAL(p->status, res[i].status);
					CU_ASSERT_EQUAL(!!p->has_retry_after_ms,
							res[i].has_retry_after);
					CU_ASSERT_EQUAL(p->retry_after_ms,
							res[i].retry_after_ms);
					if (memchr(res[i].message.ptr, 0,
						   res[i].message.len) == NULL)
						CU_ASSERT_EQUAL(pbc_strlen(p->message),
								res[i].message.len);
				}
				sessionwire__v1__ack__free_unpacked(pa, NULL);
			} else {
				PbError *pe = sessionwire__v1__error__unpack(
					NULL, len, b);

				CU_ASSERT_PTR_NOT_NULL_FATAL(pe);
				CU_ASSERT_EQUAL(pe->status, e.status);
				if (!memchr(e.code.ptr, 0, e.code.len))
					CU_ASSERT_EQUAL(pbc_strlen(pe->code),
							e.code.len);
				if (!memchr(e.field.ptr, 0, e.field.len))
					CU_ASSERT_EQUAL(pbc_strlen(pe->field),
							e.field.len);
				sessionwire__v1__error__free_unpacked(pe, NULL);
			}
			free(b);
		}
	for (kind = 0; kind < 3; kind++) {
		CU_ASSERT_TRUE(ok[kind] > 0);
		CU_ASSERT_TRUE(rejected[kind] > 0);
	}
}

/* ==== Device safety ==== */

/* envelope.o and uri.o call nothing that allocates or prints, and the
 * encoders leave the heap as it was. */
static void encoders_use_no_heap_and_no_stdio(void)
{
	static const char *const allowed[] = {
		"sw_", "memcpy", "memset", "memcmp", "strlen", "__",
		"_GLOBAL_OFFSET_TABLE_", NULL
	};
	static const char *const objs[] = { "envelope.o", "uri.o" };
	char exe[4096], cmd[8400], line[256];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	struct mallinfo2 before, after;
	sw_result r = { 1, 200, true, 5, { "m", 1 } };
	sw_error_msg em = { 400, { "c", 1 }, { "m", 1 }, { "f", 1 } };
	sw_session_id sid;
	uint8_t buf[1024];
	size_t len, blen, o;
	int i, bad = 0;
	char *slash;

	CU_ASSERT_TRUE_FATAL(n > 0);
	exe[n] = '\0';
	slash = strrchr(exe, '/');
	CU_ASSERT_PTR_NOT_NULL_FATAL(slash);
	*slash = '\0';
	for (o = 0; o < 2; o++) {
		FILE *f;
		int count = 0;

		snprintf(cmd, sizeof(cmd), "nm -u '%s/codec/%s' 2>/dev/null",
			 exe, objs[o]);
		f = popen(cmd, "r");
		CU_ASSERT_PTR_NOT_NULL_FATAL(f);
		while (fgets(line, sizeof(line), f) != NULL) {
			char *sym = strrchr(line, ' ');
			int k;
			bool ok = false;

			sym = sym ? sym + 1 : line;
			sym[strcspn(sym, "\n")] = '\0';
			for (k = 0; allowed[k] != NULL; k++)
				ok = ok || !strncmp(sym, allowed[k],
						    strlen(allowed[k]));
			if (!ok)
				fprintf(stderr, "%s calls %s\n", objs[o], sym);
			CU_ASSERT_TRUE(ok);
			count++;
		}
		CU_ASSERT_EQUAL(pclose(f), 0);
		CU_ASSERT_TRUE(count > 0);
	}
	make_session(0);
	sw_session_id_set(&sid, ULID_A, 26);
	before = mallinfo2();
	for (i = 0; i < 100; i++) {
		uint8_t env[600];
		size_t elen;

		bad += sw_envelope_encode(&sid, true, (uint64_t)i,
					  session_bytes, session_len, env,
					  sizeof(env), &elen, NULL) != SW_OK;
		blen = 0;
		bad += sw_batch_append(env, elen, buf, sizeof(buf), &blen,
				       NULL) != SW_OK;
		bad += sw_ack_encode(&r, 1, buf, sizeof(buf), &len, NULL) !=
		       SW_OK;
		bad += sw_error_msg_encode(&em, buf, sizeof(buf), &len, NULL) !=
		       SW_OK;
	}
	after = mallinfo2();
	CU_ASSERT_EQUAL(bad, 0);
	CU_ASSERT_EQUAL(before.uordblks, after.uordblks);
	CU_ASSERT_EQUAL(before.hblkhd, after.hblkhd);
}

/* After the first item, a missing session id or seq follows from the item
 * before; the encoder leaves them out when given NULL / has_seq false. */
static void batch_items_inherit_session_and_next_seq(void)
{
	uint8_t upd[1] = { 0 }, env[64], batch[256];
	size_t env_len, len = 0, n = 0, i;
	sw_envelope items[4];
	sw_session_id sid;
	sw_error e;

	sw_session_id_set(&sid, "01JWFXNRXWPG3W0C5MTEY913XX", 26);
	for (i = 0; i < 3; i++) {
		CU_ASSERT_EQUAL_FATAL(sw_envelope_encode(i ? NULL : &sid, i == 0,
							 41, upd, 0, env,
							 sizeof(env), &env_len,
							 NULL), SW_OK);
		/* first: id 18, seq 2, update 2; then only the update */
		CU_ASSERT_EQUAL(env_len, i == 0 ? 22u : 2u);
		CU_ASSERT_EQUAL_FATAL(sw_batch_append(env, env_len, batch,
						      sizeof(batch), &len, NULL),
				      SW_OK);
	}
	sw_error_clear(&e);
	CU_ASSERT_EQUAL_FATAL(sw_batch_decode(batch, len, items, 4, &n, &e), SW_OK);
	CU_ASSERT_EQUAL_FATAL(n, 3);
	for (i = 0; i < 3; i++) {
		CU_ASSERT_EQUAL(items[i].session_id.kind, SW_ID_ULID);
		CU_ASSERT_EQUAL(memcmp(items[i].session_id.raw, sid.raw, 16), 0);
		CU_ASSERT_TRUE(items[i].has_seq);
		CU_ASSERT_EQUAL(items[i].seq, 41 + i);
	}
	/* a lone envelope has nothing to inherit from */
	CU_ASSERT_EQUAL(sw_envelope_decode(env, env_len, &items[0], NULL),
			SW_EMISSING);
}

int init_envelope_tests(void)
{
	CU_pSuite s = CU_add_suite("envelope", NULL, NULL);

	if (s == NULL)
		return -1;
	CU_add_test(s, "envelope_round_trips_each_id_form", envelope_round_trips_each_id_form);
	CU_add_test(s, "envelope_keeps_an_empty_update", envelope_keeps_an_empty_update);
	CU_add_test(s, "envelope_matches_protobuf_c_both_ways", envelope_matches_protobuf_c_both_ways);
	CU_add_test(s, "envelope_encode_never_writes_past_cap", envelope_encode_never_writes_past_cap);
	CU_add_test(s, "envelope_encode_rejects_bad_ids", envelope_encode_rejects_bad_ids);
	CU_add_test(s, "batch_round_trips_0_1_100_items", batch_round_trips_0_1_100_items);
	CU_add_test(s, "batch_append_keeps_len_on_a_small_buffer", batch_append_keeps_len_on_a_small_buffer);
	CU_add_test(s, "batch_items_inherit_session_and_next_seq", batch_items_inherit_session_and_next_seq);
	CU_add_test(s, "ack_round_trips_and_matches_protobuf_c", ack_round_trips_and_matches_protobuf_c);
	CU_add_test(s, "ack_decode_takes_absent_status_as_zero", ack_decode_takes_absent_status_as_zero);
	CU_add_test(s, "ack_encode_rejects_bad_messages_and_small_buffers", ack_encode_rejects_bad_messages_and_small_buffers);
	CU_add_test(s, "error_msg_round_trips_and_matches_protobuf_c", error_msg_round_trips_and_matches_protobuf_c);
	CU_add_test(s, "error_msg_encode_rejects_bad_utf8_and_small_buffers", error_msg_encode_rejects_bad_utf8_and_small_buffers);
	CU_add_test(s, "decoders_reject_bad_input_table", decoders_reject_bad_input_table);
	CU_add_test(s, "decoders_reject_null_arguments", decoders_reject_null_arguments);
	CU_add_test(s, "truncation_at_every_byte_is_clean_error", truncation_at_every_byte_is_clean_error);
	CU_add_test(s, "mutated_inputs_are_clean_and_agree_with_protobuf_c", mutated_inputs_are_clean_and_agree_with_protobuf_c);
	CU_add_test(s, "encoders_use_no_heap_and_no_stdio", encoders_use_no_heap_and_no_stdio);
	return 0;
}
