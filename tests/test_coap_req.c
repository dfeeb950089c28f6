/* test_coap_req.c - the CoAP ingress without sockets: request PDUs
 * (built with libcoap, as it hands them over) through gw_coap_msg_read and
 * gw_coap_check, as a table of requests and the codes they get; the
 * answers' payloads and codes; Block1 bodies; the per-source bucket; the
 * dedup tables; PSK lines in the device tokens; a Result on its own. */
#include <CUnit/CUnit.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <coap3/coap.h>

#include "gw.h"
#include "testutil.h"

/* ==== Building request PDUs ==== */

typedef struct rq_opt {
	uint16_t num;
	const char *val;   /* NULL: the uint in u */
	unsigned u;
} rq_opt;

/* A request: type, method, options (in number order), payload. */
static coap_pdu_t *rq(coap_pdu_type_t type, coap_pdu_code_t code,
		      const rq_opt *o, size_t n, const void *payload,
		      size_t len)
{
	coap_pdu_t *p = coap_pdu_init(type, code, 0x1234, 8192);
	uint8_t tok = 7, buf[8];
	size_t i;

	if (p == NULL)
		return NULL;
	coap_add_token(p, 1, &tok);
	for (i = 0; i < n; i++) {
		if (o[i].val)
			coap_add_option(p, o[i].num, strlen(o[i].val),
					(const uint8_t *)o[i].val);
		else
			coap_add_option(p, o[i].num,
					coap_encode_var_safe(buf, sizeof(buf), o[i].u),
					buf);
	}
	if (len)
		coap_add_data(p, len, payload);
	return p;
}

static gw_config cfg;

static int suite_init(void)
{
	coap_startup();
	coap_set_log_level(LOG_EMERG);
	gw_config_defaults(&cfg);
	cfg.max_body = 4096;
	cfg.max_concurrent = 10;
	return 0;
}

/* ==== Decisions ==== */

typedef struct check_row {
	const char *name;
	coap_pdu_code_t code;
	rq_opt opts[4];
	size_t n_opts;
	size_t payload;       /* bytes of payload */
	int stopping, inflight, over_rate, no_device;
	int want;             /* 0: work on it */
} check_row;

static const check_row rows[] = {
	{ "post /u", COAP_REQUEST_CODE_POST, { { 11, "u", 0 } }, 1, 10, 0, 1, 0, 0, 0 },
	{ "post /b", COAP_REQUEST_CODE_POST, { { 11, "b", 0 } }, 1, 10, 0, 1, 0, 0, 0 },
	{ "post /x", COAP_REQUEST_CODE_POST, { { 11, "x", 0 } }, 1, 10, 0, 1, 0, 0, 404 },
	{ "post /", COAP_REQUEST_CODE_POST, { { 0, NULL, 0 } }, 0, 10, 0, 1, 0, 0, 404 },
	{ "post /u/v", COAP_REQUEST_CODE_POST, { { 11, "u", 0 }, { 11, "v", 0 } }, 2, 10, 0, 1, 0, 0, 404 },
	{ "post /uu", COAP_REQUEST_CODE_POST, { { 11, "uu", 0 } }, 1, 10, 0, 1, 0, 0, 404 },
	{ "get /u", COAP_REQUEST_CODE_GET, { { 11, "u", 0 } }, 1, 0, 0, 1, 0, 0, 405 },
	{ "put /b", COAP_REQUEST_CODE_PUT, { { 11, "b", 0 } }, 1, 10, 0, 1, 0, 0, 405 },
	{ "if-match", COAP_REQUEST_CODE_POST, { { 1, "x", 0 }, { 11, "u", 0 } }, 2, 10, 0, 1, 0, 0, 402 },
	{ "uri-query", COAP_REQUEST_CODE_POST, { { 11, "u", 0 }, { 15, "a=1", 0 } }, 2, 10, 0, 1, 0, 0, 402 },
	{ "uri-host taken", COAP_REQUEST_CODE_POST, { { 3, "gw", 0 }, { 7, NULL, 5683 }, { 11, "u", 0 } }, 3, 10, 0, 1, 0, 0, 0 },
	{ "cf 42", COAP_REQUEST_CODE_POST, { { 11, "u", 0 }, { 12, NULL, 42 } }, 2, 10, 0, 1, 0, 0, 0 },
	{ "cf json", COAP_REQUEST_CODE_POST, { { 11, "u", 0 }, { 12, NULL, 50 } }, 2, 10, 0, 1, 0, 0, 415 },
	{ "cf text", COAP_REQUEST_CODE_POST, { { 11, "b", 0 }, { 12, NULL, 0 } }, 2, 10, 0, 1, 0, 0, 415 },
	{ "accept json", COAP_REQUEST_CODE_POST, { { 11, "u", 0 }, { 17, NULL, 50 } }, 2, 10, 0, 1, 0, 0, 406 },
	{ "accept 42", COAP_REQUEST_CODE_POST, { { 11, "u", 0 }, { 17, NULL, 42 } }, 2, 10, 0, 1, 0, 0, 0 },
	{ "elective unknown", COAP_REQUEST_CODE_POST, { { 11, "u", 0 }, { 258, NULL, 0 } }, 2, 10, 0, 1, 0, 0, 0 },
	{ "stopping", COAP_REQUEST_CODE_POST, { { 11, "u", 0 } }, 1, 10, 1, 1, 0, 0, 503 },
	{ "overloaded", COAP_REQUEST_CODE_POST, { { 11, "u", 0 } }, 1, 10, 0, 11, 0, 0, 503 },
	{ "over rate", COAP_REQUEST_CODE_POST, { { 11, "u", 0 } }, 1, 10, 0, 2, 1, 0, 503 },
	{ "no device", COAP_REQUEST_CODE_POST, { { 11, "u", 0 } }, 1, 10, 0, 1, 0, 1, 401 },
	{ "too big", COAP_REQUEST_CODE_POST, { { 11, "u", 0 } }, 1, 4097, 0, 1, 0, 0, 413 },
	{ "size1 too big", COAP_REQUEST_CODE_POST, { { 11, "b", 0 }, { 27, NULL, 0x0e }, { 60, NULL, 5000 } }, 3, 1024, 0, 1, 0, 0, 413 },
	{ "empty", COAP_REQUEST_CODE_POST, { { 11, "u", 0 } }, 1, 0, 0, 1, 0, 0, 400 },
	{ "block more, empty is fine", COAP_REQUEST_CODE_POST, { { 11, "b", 0 }, { 27, NULL, 0x0e } }, 2, 0, 0, 1, 0, 0, 0 },
	{ "bert", COAP_REQUEST_CODE_POST, { { 11, "b", 0 }, { 27, NULL, 0x0f } }, 2, 10, 0, 1, 0, 0, 402 },
	/* the order: a wrong path is 4.04 before anything else */
	{ "404 before 503", COAP_REQUEST_CODE_POST, { { 11, "z", 0 } }, 1, 10, 1, 99, 1, 1, 404 },
	{ "405 before 401", COAP_REQUEST_CODE_DELETE, { { 11, "u", 0 } }, 1, 0, 0, 1, 0, 1, 405 },
};

static void check_table_gives_each_code(void)
{
	static uint8_t payload[5000];
	size_t i;

	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		const check_row *r = &rows[i];
		coap_pdu_t *p = rq(COAP_MESSAGE_CON, r->code, r->opts, r->n_opts,
				   payload, r->payload);
		gw_coap_msg m;
		gw_coap_env env;
		gw_refusal no;
		int rc;

		CU_ASSERT_PTR_NOT_NULL_FATAL(p);
		CU_ASSERT_EQUAL(gw_coap_msg_read(p, &m), 0);
		memset(&env, 0, sizeof(env));
		env.c = &cfg;
		env.device = r->no_device ? NULL : "dev-1";
		env.stopping = r->stopping;
		env.inflight = r->inflight;
		env.over_rate = r->over_rate;
		rc = gw_coap_check(&env, &m, &no);
		if (rc != r->want)
			fprintf(stderr, "\n%s: got %d (%s), want %d\n", r->name, rc,
				no.message, r->want);
		CU_ASSERT_EQUAL(rc, r->want);
		if (rc != 0) {
			/* a sentence, and the code in the refusal */
			CU_ASSERT_EQUAL(no.status, rc);
			CU_ASSERT_TRUE(strlen(no.message) > 10);
			CU_ASSERT_PTR_NOT_NULL(no.code);
		}
		coap_delete_pdu(p);
	}
}

static void msg_read_takes_the_parts(void)
{
	static const rq_opt o[] = { { 11, "b", 0 }, { 12, NULL, 42 },
				    { 27, NULL, 3u << 4 | 8 | 6 },
				    { 60, NULL, 4000 } };
	coap_pdu_t *p = rq(COAP_MESSAGE_NON, COAP_REQUEST_CODE_POST, o, 4,
			   "abc", 3);
	gw_coap_msg m;

	CU_ASSERT_EQUAL_FATAL(gw_coap_msg_read(p, &m), 0);
	CU_ASSERT_EQUAL(m.type, COAP_MESSAGE_NON);
	CU_ASSERT_EQUAL(m.code, 2);
	CU_ASSERT_EQUAL(m.mid, 0x1234);
	CU_ASSERT_EQUAL(m.token_len, 1);
	CU_ASSERT_EQUAL(m.token[0], 7);
	CU_ASSERT_EQUAL(m.res, GW_COAP_RES_BATCH);
	CU_ASSERT_STRING_EQUAL(m.path, "/b");
	CU_ASSERT_TRUE(m.has_cf && m.cf == 42);
	CU_ASSERT_TRUE(m.has_block1 && m.b1_num == 3 && m.b1_more &&
		       m.b1_szx == 6);
	CU_ASSERT_TRUE(m.has_size1 && m.size1 == 4000);
	CU_ASSERT_EQUAL(m.payload_len, 3);
	CU_ASSERT_EQUAL(memcmp(m.payload, "abc", 3), 0);
	coap_delete_pdu(p);
	/* a response code is no request */
	p = coap_pdu_init(COAP_MESSAGE_ACK, COAP_RESPONSE_CODE(204), 1, 64);
	CU_ASSERT_EQUAL(gw_coap_msg_read(p, &m), -1);
	coap_delete_pdu(p);
}

/* ==== Envelopes ==== */

/* An Envelope of sid, seq (has_seq) and the update {"duration":d}. */
static size_t envelope(uint8_t *out, size_t cap, const char *sid,
		       bool has_seq, uint64_t seq, int d)
{
	sw_update u;
	uint8_t pb[64];
	size_t pn = 0, n = 0;
	sw_session_id id;

	sw_update_init(&u);
	sw_update_set_duration(&u, d);
	if (sw_pb_encode(&u, pb, sizeof(pb), &pn, NULL) != SW_OK)
		return 0;
	sw_session_id_set(&id, sid, strlen(sid));
	if (sw_envelope_encode(&id, has_seq, seq, pb, pn, out, cap, &n, NULL) != SW_OK)
		return 0;
	return n;
}

static void update_plan_translates_and_keys(void)
{
	uint8_t e[128];
	size_t n = envelope(e, sizeof(e), "01J42CMDHMMCH68TYCT6BXFB8V", true, 9, 1500);
	gw_coap_update a, b, c, d;
	gw_refusal no;

	gw_coap_update_init(&a);
	gw_coap_update_init(&b);
	gw_coap_update_init(&c);
	gw_coap_update_init(&d);
	CU_ASSERT_EQUAL_FATAL(gw_coap_update_plan(&cfg, "dev-1", e, n, &a, &no), 0);
	CU_ASSERT_STRING_EQUAL(a.sid, "01J42CMDHMMCH68TYCT6BXFB8V");
	CU_ASSERT_EQUAL(a.seq, 9);
	CU_ASSERT_STRING_EQUAL(a.path.data, "/v2/traces/sessions/01J42CMDHMMCH68TYCT6BXFB8V");
	CU_ASSERT_STRING_EQUAL(a.json.data, "{\"duration\":1500}");
	/* the same envelope: the same key and digest; another device: not */
	CU_ASSERT_EQUAL(gw_coap_update_plan(&cfg, "dev-1", e, n, &b, &no), 0);
	CU_ASSERT_EQUAL(memcmp(a.key, b.key, 16), 0);
	CU_ASSERT_EQUAL(memcmp(a.digest, b.digest, 8), 0);
	CU_ASSERT_EQUAL(gw_coap_update_plan(&cfg, "dev-2", e, n, &c, &no), 0);
	CU_ASSERT_NOT_EQUAL(memcmp(a.key, c.key, 16), 0);
	/* the same seq, another update: same key, other digest */
	n = envelope(e, sizeof(e), "01J42CMDHMMCH68TYCT6BXFB8V", true, 9, 1501);
	CU_ASSERT_EQUAL(gw_coap_update_plan(&cfg, "dev-1", e, n, &d, &no), 0);
	CU_ASSERT_EQUAL(memcmp(a.key, d.key, 16), 0);
	CU_ASSERT_NOT_EQUAL(memcmp(a.digest, d.digest, 8), 0);
	gw_coap_update_free(&a);
	gw_coap_update_free(&b);
	gw_coap_update_free(&c);
	gw_coap_update_free(&d);
	/* no seq; not an envelope; an invalid update inside */
	gw_coap_update_init(&a);
	n = envelope(e, sizeof(e), "s-1", false, 0, 1);
	CU_ASSERT_EQUAL(gw_coap_update_plan(&cfg, "dev-1", e, n, &a, &no), 400);
	CU_ASSERT_PTR_NOT_NULL(strstr(no.message, "seq"));
	gw_coap_update_free(&a);
	gw_coap_update_init(&a);
	CU_ASSERT_EQUAL(gw_coap_update_plan(&cfg, "dev-1", (const uint8_t *)"\xff\xff", 2, &a, &no), 400);
	gw_coap_update_free(&a);
	{
		/* session "s", seq 1, update: a tag whose value is cut */
		static const uint8_t bad[] = { 0x12, 0x01, 's', 0x20, 0x01,
					       0x2a, 0x01, 0x18 };

		gw_coap_update_init(&a);
		CU_ASSERT_EQUAL(gw_coap_update_plan(&cfg, "dev-1", bad, sizeof(bad), &a, &no), 400);
		CU_ASSERT_EQUAL(strncmp(no.field, "update", 6), 0);
		gw_coap_update_free(&a);
	}
}

/* ==== Answers ==== */

static void result_alone_is_three_bytes_for_200(void)
{
	sw_result r, back;
	uint8_t buf[64];
	size_t n = 0;

	memset(&r, 0, sizeof(r));
	r.status = 200;
	r.seq = 77;
	CU_ASSERT_EQUAL(sw_result_encode(&r, false, buf, sizeof(buf), &n, NULL), SW_OK);
	CU_ASSERT_EQUAL(n, 3);
	CU_ASSERT_EQUAL(memcmp(buf, "\x10\xc8\x01", 3), 0);
	CU_ASSERT_EQUAL(sw_result_decode(buf, n, &back, NULL), SW_OK);
	CU_ASSERT_EQUAL(back.status, 200);
	CU_ASSERT_EQUAL(back.seq, 0);
	r.has_retry_after = true;
	r.retry_after_ms = 5000;
	r.message.ptr = "later";
	r.message.len = 5;
	CU_ASSERT_EQUAL(sw_result_encode(&r, true, buf, sizeof(buf), &n, NULL), SW_OK);
	CU_ASSERT_EQUAL(sw_result_decode(buf, n, &back, NULL), SW_OK);
	CU_ASSERT_EQUAL(back.seq, 77);
	CU_ASSERT_TRUE(back.has_retry_after && back.retry_after_ms == 5000);
	CU_ASSERT_EQUAL(back.message.len, 5);
	/* size only; too small a buffer */
	CU_ASSERT_EQUAL(sw_result_encode(&r, true, NULL, 0, &n, NULL), SW_OK);
	CU_ASSERT_EQUAL(sw_result_encode(&r, true, buf, 2, &n, NULL), SW_EBUFSZ);
	CU_ASSERT_NOT_EQUAL(sw_result_decode((const uint8_t *)"\x10", 1, &back, NULL), SW_OK);
}

static void upstream_answers_map_to_codes(void)
{
	static const struct {
		int status, curl, code;
		bool final;
	} t[] = {
		{ 200, 0, 204, true }, { 201, 0, 204, true },
		{ 400, 0, 400, true }, { 404, 0, 404, true }, { 422, 0, 422, true },
		{ 409, 0, 409, true }, { 418, 0, 400, true },
		{ 401, 0, 502, false }, { 403, 0, 502, false },
		{ 429, 0, 503, false }, { 500, 0, 503, false }, { 503, 0, 503, false },
		{ 501, 0, 502, false }, { 0, 28, 503, false }, { 0, 7, 503, false },
	};
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		gw_response r;
		gw_coap_answer a;
		char body[] = "{\"message\":\"session not found\"}";

		memset(&r, 0, sizeof(r));
		r.status = t[i].status;
		r.curl_code = t[i].curl;
		r.retry_after_ms = -1;
		if (t[i].status >= 400) {
			r.body = body;
			r.body_len = strlen(body);
		}
		gw_coap_answer_init(&a);
		CU_ASSERT_EQUAL(gw_coap_answer_upstream(&a, &r), 0);
		if (a.code != t[i].code)
			fprintf(stderr, "\nstatus %d: code %d, want %d\n",
				t[i].status, a.code, t[i].code);
		CU_ASSERT_EQUAL(a.code, t[i].code);
		CU_ASSERT_EQUAL(a.final, t[i].final);
		if (a.code == 204) {
			sw_result res;

			CU_ASSERT_EQUAL(sw_result_decode(a.payload, a.len, &res, NULL), SW_OK);
			CU_ASSERT_EQUAL(res.status, (uint32_t)t[i].status);
		} else if (a.code >= 400 && a.code < 500) {
			sw_error_msg em;

			CU_ASSERT_EQUAL(sw_error_msg_decode(a.payload, a.len, &em, NULL), SW_OK);
			CU_ASSERT_EQUAL(em.status, (uint32_t)t[i].status);
			CU_ASSERT_EQUAL(em.message.len, 17); /* the API's message */
		} else {
			sw_result res;

			CU_ASSERT_EQUAL(sw_result_decode(a.payload, a.len, &res, NULL), SW_OK);
			CU_ASSERT_TRUE(res.status >= 400);
			CU_ASSERT_EQUAL(a.code == 503, a.max_age == 5);
		}
		gw_coap_answer_free(&a);
	}
}

static void retry_after_becomes_max_age(void)
{
	gw_response r;
	gw_coap_answer a;
	sw_result res;

	memset(&r, 0, sizeof(r));
	r.status = 429;
	r.retry_after_ms = 2500;
	gw_coap_answer_init(&a);
	CU_ASSERT_EQUAL(gw_coap_answer_upstream(&a, &r), 0);
	CU_ASSERT_EQUAL(a.code, 503);
	CU_ASSERT_EQUAL(a.max_age, 3); /* rounded up */
	CU_ASSERT_EQUAL(sw_result_decode(a.payload, a.len, &res, NULL), SW_OK);
	CU_ASSERT_EQUAL(res.status, 429);
	CU_ASSERT_TRUE(res.has_retry_after && res.retry_after_ms == 2500);
	gw_coap_answer_free(&a);
}

static void stored_and_refused_answers(void)
{
	gw_coap_answer a;
	gw_refusal no;
	sw_result res;
	sw_error_msg em;

	gw_coap_answer_init(&a);
	CU_ASSERT_EQUAL(gw_coap_answer_stored(&a, GW_STORE_OK, ""), 0);
	CU_ASSERT_EQUAL(a.code, 204);
	CU_ASSERT_TRUE(a.final);
	CU_ASSERT_EQUAL(a.len, 3);
	CU_ASSERT_EQUAL(sw_result_decode(a.payload, a.len, &res, NULL), SW_OK);
	CU_ASSERT_EQUAL(res.status, 202);
	CU_ASSERT_EQUAL(gw_coap_answer_stored(&a, GW_STORE_FULL, "the spool is full"), 0);
	CU_ASSERT_EQUAL(a.code, 503);
	CU_ASSERT_EQUAL(a.max_age, 30);
	CU_ASSERT_FALSE(a.final);
	CU_ASSERT_EQUAL(sw_result_decode(a.payload, a.len, &res, NULL), SW_OK);
	CU_ASSERT_EQUAL(res.status, 507);
	gw_coap_answer_free(&a);
	/* a refusal: an Error with its code as status */
	memset(&no, 0, sizeof(no));
	no.status = 415;
	no.code = "unsupported_content_format";
	snprintf(no.message, sizeof(no.message), "Content-Format must be 42");
	gw_coap_answer_init(&a);
	CU_ASSERT_EQUAL(gw_coap_answer_refusal(&a, &no), 0);
	CU_ASSERT_EQUAL(a.code, 415);
	CU_ASSERT_EQUAL(sw_error_msg_decode(a.payload, a.len, &em, NULL), SW_OK);
	CU_ASSERT_EQUAL(em.status, 415);
	CU_ASSERT_EQUAL(em.code.len, strlen("unsupported_content_format"));
	gw_coap_answer_free(&a);
}

static void ack_fits_one_datagram(void)
{
	sw_result r[GW_COAP_BATCH_MAX];
	char long_msg[300];
	gw_coap_answer a;
	sw_result back[GW_COAP_BATCH_MAX];
	size_t i, n = 0;

	memset(long_msg, 'm', sizeof(long_msg) - 1);
	long_msg[sizeof(long_msg) - 1] = '\0';
	memset(r, 0, sizeof(r));
	for (i = 0; i < GW_COAP_BATCH_MAX; i++) {
		r[i].seq = 0xffffffffffffull + i;
		r[i].status = i % 2 ? 200 : 404;
		r[i].has_retry_after = true;
		r[i].retry_after_ms = 4000000000u;
		r[i].message.ptr = long_msg;
		r[i].message.len = strlen(long_msg);
	}
	gw_coap_answer_init(&a);
	CU_ASSERT_EQUAL(gw_coap_answer_ack(&a, r, GW_COAP_BATCH_MAX, GW_COAP_PAYLOAD_MAX), 0);
	CU_ASSERT_TRUE(a.len <= GW_COAP_PAYLOAD_MAX);
	CU_ASSERT_EQUAL(sw_ack_decode(a.payload, a.len, back, GW_COAP_BATCH_MAX, &n, NULL), SW_OK);
	CU_ASSERT_EQUAL(n, GW_COAP_BATCH_MAX);
	for (i = 0; i < n; i++) {
		CU_ASSERT_EQUAL(back[i].seq, r[i].seq);
		CU_ASSERT_EQUAL(back[i].status, r[i].status);
		/* 2xx items carry no message */
		if (back[i].status == 200)
			CU_ASSERT_EQUAL(back[i].message.len, 0);
	}
	gw_coap_answer_free(&a);
	/* a small batch keeps its failures' messages whole */
	gw_coap_answer_init(&a);
	r[0].message.len = 100;
	CU_ASSERT_EQUAL(gw_coap_answer_ack(&a, r, 2, GW_COAP_PAYLOAD_MAX), 0);
	CU_ASSERT_EQUAL(sw_ack_decode(a.payload, a.len, back, 2, &n, NULL), SW_OK);
	CU_ASSERT_EQUAL(back[0].message.len, 100);
	gw_coap_answer_free(&a);
}

static void shrink_keeps_answers_within_a_bound(void)
{
	gw_coap_answer a;
	gw_refusal no;
	sw_error_msg em;
	sw_result r;
	size_t full;

	memset(&no, 0, sizeof(no));
	no.status = 404;
	no.code = "not_found";
	snprintf(no.message, sizeof(no.message), "no such resource /x (POST /u: one Envelope; POST /b: a Batch)");
	gw_coap_answer_init(&a);
	CU_ASSERT_EQUAL_FATAL(gw_coap_answer_refusal(&a, &no), 0);
	full = a.len;
	CU_ASSERT_EQUAL(gw_coap_answer_shrink(&a, full), 0);
	CU_ASSERT_EQUAL(a.len, full);
	/* the Error without its message: status and code */
	CU_ASSERT_EQUAL(gw_coap_answer_shrink(&a, 20), 1);
	CU_ASSERT_TRUE(a.len > 0 && a.len <= 20);
	CU_ASSERT_EQUAL(sw_error_msg_decode(a.payload, a.len, &em, NULL), SW_OK);
	CU_ASSERT_EQUAL(em.status, 404);
	CU_ASSERT_EQUAL(em.message.len, 0);
	/* not even that: no payload, the code alone */
	CU_ASSERT_EQUAL(gw_coap_answer_shrink(&a, 4), 1);
	CU_ASSERT_EQUAL(a.len, 0);
	CU_ASSERT_PTR_NULL(a.payload);
	CU_ASSERT_EQUAL(a.code, 404);
	gw_coap_answer_free(&a);
	/* a 5.03's Result keeps its status and retry time */
	gw_coap_answer_init(&a);
	CU_ASSERT_EQUAL_FATAL(gw_coap_answer_stored(&a, GW_STORE_FULL, "the spool is over --spool-max-bytes; retry later"), 0);
	CU_ASSERT_EQUAL(gw_coap_answer_shrink(&a, 12), 1);
	CU_ASSERT_EQUAL(sw_result_decode(a.payload, a.len, &r, NULL), SW_OK);
	CU_ASSERT_EQUAL(r.status, 507);
	CU_ASSERT_TRUE(r.has_retry_after && r.retry_after_ms == 30000);
	CU_ASSERT_EQUAL(r.message.len, 0);
	gw_coap_answer_free(&a);
}

/* ==== Block1 ==== */

static coap_pdu_t *block(uint32_t num, bool more, unsigned szx, size_t len)
{
	static uint8_t data[2048];
	rq_opt o[2] = { { 11, "b", 0 }, { 27, NULL, 0 } };

	memset(data, (int)('a' + num % 26), sizeof(data));
	o[1].u = num << 4 | (more ? 8u : 0u) | szx;
	return rq(COAP_MESSAGE_CON, COAP_REQUEST_CODE_POST, o, 2, data, len);
}

static void blocks_put_a_body_back_in_order(void)
{
	gw_coap_blocks b;
	gw_coap_msg m;
	gw_refusal no;
	coap_pdu_t *p;
	uint32_t i;

	gw_coap_blocks_init(&b, GW_COAP_RES_BATCH, 4096);
	for (i = 0; i < 3; i++) {
		p = block(i, true, 4, 256);
		gw_coap_msg_read(p, &m);
		CU_ASSERT_EQUAL(gw_coap_blocks_put(&b, &m, 4096, &no), 231);
		coap_delete_pdu(p);
	}
	p = block(3, false, 4, 100);
	gw_coap_msg_read(p, &m);
	CU_ASSERT_EQUAL(gw_coap_blocks_put(&b, &m, 4096, &no), 0);
	coap_delete_pdu(p);
	CU_ASSERT_EQUAL(b.body.len, 3 * 256 + 100);
	CU_ASSERT_EQUAL(b.body.data[256], 'b');
	CU_ASSERT_EQUAL(b.body.data[3 * 256], 'd');
	gw_coap_blocks_free(&b);
	/* a gap: 4.08; a block that says more but is short: 4.00 */
	gw_coap_blocks_init(&b, GW_COAP_RES_BATCH, 4096);
	p = block(1, true, 4, 256);
	gw_coap_msg_read(p, &m);
	CU_ASSERT_EQUAL(gw_coap_blocks_put(&b, &m, 4096, &no), 408);
	coap_delete_pdu(p);
	p = block(0, true, 4, 200);
	gw_coap_msg_read(p, &m);
	CU_ASSERT_EQUAL(gw_coap_blocks_put(&b, &m, 4096, &no), 400);
	coap_delete_pdu(p);
	gw_coap_blocks_free(&b);
	/* past the cap: 4.13 */
	gw_coap_blocks_init(&b, GW_COAP_RES_BATCH, 1000);
	for (i = 0; i < 3; i++) {
		int rc;

		p = block(i, true, 4, 256);
		gw_coap_msg_read(p, &m);
		rc = gw_coap_blocks_put(&b, &m, 1000, &no);
		CU_ASSERT_EQUAL(rc, 231);
		coap_delete_pdu(p);
	}
	p = block(3, true, 4, 256);
	gw_coap_msg_read(p, &m);
	CU_ASSERT_EQUAL(gw_coap_blocks_put(&b, &m, 1000, &no), 413);
	coap_delete_pdu(p);
	gw_coap_blocks_free(&b);
}

/* ==== The bucket ==== */

static void bucket_allows_its_rate(void)
{
	gw_coap_bucket b;
	int i, ok = 0;

	memset(&b, 0, sizeof(b));
	for (i = 0; i < 10; i++)
		ok += gw_coap_bucket_take(&b, 1000, 4);
	CU_ASSERT_EQUAL(ok, 4);
	/* half a second later: two more */
	for (i = 0, ok = 0; i < 10; i++)
		ok += gw_coap_bucket_take(&b, 1500, 4);
	CU_ASSERT_EQUAL(ok, 2);
	/* a long pause refills to the burst, not more */
	for (i = 0, ok = 0; i < 10; i++)
		ok += gw_coap_bucket_take(&b, 100000, 4);
	CU_ASSERT_EQUAL(ok, 4);
}

/* ==== The dedup tables ==== */

static void dedup_mids_are_found_and_age_out(void)
{
	gw_coap_dedup *d = gw_coap_dedup_new(4, 1000, 5000);
	gw_coap_mid *m;
	size_t mids, seqs;
	int i;

	CU_ASSERT_PTR_NOT_NULL_FATAL(d);
	m = gw_coap_mid_add(d, "src-a", 5, 1, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(m);
	m->state = GW_MID_ACKED;
	CU_ASSERT_PTR_EQUAL(gw_coap_mid_find(d, "src-a", 5, 1), m);
	CU_ASSERT_PTR_NULL(gw_coap_mid_find(d, "src-b", 5, 1));
	CU_ASSERT_PTR_NULL(gw_coap_mid_find(d, "src-a", 5, 2));
	gw_coap_dedup_expire(d, 999);
	CU_ASSERT_PTR_NOT_NULL(gw_coap_mid_find(d, "src-a", 5, 1));
	gw_coap_dedup_expire(d, 1000);
	CU_ASSERT_PTR_NULL(gw_coap_mid_find(d, "src-a", 5, 1));
	/* past max: the oldest go */
	for (i = 0; i < 10; i++)
		CU_ASSERT_PTR_NOT_NULL(gw_coap_mid_add(d, "src-a", 5, i, 2000 + i));
	gw_coap_dedup_counts(d, &mids, &seqs);
	CU_ASSERT_EQUAL(mids, 4);
	CU_ASSERT_PTR_NULL(gw_coap_mid_find(d, "src-a", 5, 5));
	CU_ASSERT_PTR_NOT_NULL(gw_coap_mid_find(d, "src-a", 5, 9));
	gw_coap_dedup_free(d);
}

static void dedup_seqs_keep_final_answers_only(void)
{
	gw_coap_dedup *d = gw_coap_dedup_new(2, 1000, 5000);
	uint8_t k1[16] = { 1 }, k2[16] = { 2 }, k3[16] = { 3 }, dg[8] = { 9 };
	gw_coap_seq *s1, *s2, *s3;
	gw_coap_answer ok, later;
	int work = 0;
	size_t mids, seqs;

	CU_ASSERT_PTR_NOT_NULL_FATAL(d);
	gw_coap_answer_init(&ok);
	ok.code = 204;
	ok.final = true;
	gw_coap_answer_init(&later);
	later.code = 503;
	s1 = gw_coap_seq_add(d, k1, dg, &work, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(s1);
	CU_ASSERT_FALSE(s1->done);
	/* under way: a second add waits */
	CU_ASSERT_PTR_NULL(gw_coap_seq_add(d, k1, dg, &work, 0));
	gw_coap_seq_done(d, s1, &ok, 10);
	s1 = gw_coap_seq_find(d, k1);
	CU_ASSERT_TRUE_FATAL(s1 != NULL && s1->done && s1->answer.code == 204);
	/* a 5.03 is not kept: a resend is worked on again */
	s2 = gw_coap_seq_add(d, k2, dg, &work, 0);
	gw_coap_seq_done(d, s2, &later, 10);
	CU_ASSERT_PTR_NULL(gw_coap_seq_find(d, k2));
	/* entries with work under way are never dropped, done ones age out */
	s2 = gw_coap_seq_add(d, k2, dg, &work, 0);
	s3 = gw_coap_seq_add(d, k3, dg, &work, 0);
	gw_coap_dedup_expire(d, 100000);
	CU_ASSERT_PTR_NULL(gw_coap_seq_find(d, k1));
	CU_ASSERT_PTR_EQUAL(gw_coap_seq_find(d, k2), s2);
	CU_ASSERT_PTR_EQUAL(gw_coap_seq_find(d, k3), s3);
	gw_coap_dedup_counts(d, &mids, &seqs);
	CU_ASSERT_EQUAL(seqs, 2);
	/* a done entry is replaced by a new update of the same key */
	gw_coap_seq_done(d, s2, &ok, 100000);
	s2 = gw_coap_seq_add(d, k2, (const uint8_t *)"otherdig", &work, 100001);
	CU_ASSERT_PTR_NOT_NULL(s2);
	CU_ASSERT_FALSE(s2->done);
	gw_coap_dedup_free(d); /* with work under way: freed all the same */
}

/* ==== PSKs in the device tokens ==== */

static gw_tokens *load(const char *text, bool keep, char *err, size_t errlen)
{
	char path[] = "/tmp/sw-coap-tokens-XXXXXX";
	int fd = mkstemp(path);
	gw_tokens *t;

	if (fd < 0)
		return NULL;
	if (write(fd, text, strlen(text)) != (ssize_t)strlen(text)) {
		close(fd);
		unlink(path);
		return NULL;
	}
	close(fd);
	t = gw_tokens_load_psk(path, keep, err, errlen);
	unlink(path);
	return t;
}

static void tokens_give_psks_and_say_why_not(void)
{
	char err[300] = "";
	const uint8_t *k;
	size_t kl;
	const char *why;
	gw_tokens *t;

	t = load("a-dev tok-a-0123456789abcdef\n"
		 "b-dev psk:00112233445566778899aabbccddeeff\n"
		 "c-dev sha256:0000000000000000000000000000000000000000000000000000000000000000\n"
		 "d-dev tok-d-0123456789abcdef\n"
		 "d-dev psk:ffeeddccbbaa99887766554433221100\n"
		 "e-dev tok-e-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n",
		 true, err, sizeof(err));
	CU_ASSERT_PTR_NOT_NULL_FATAL(t);
	CU_ASSERT_EQUAL(gw_tokens_psk(t, "a-dev", 5, &k, &kl, &why), 0);
	CU_ASSERT_TRUE(kl == 22 && !memcmp(k, "tok-a-0123456789abcdef", 22));
	CU_ASSERT_EQUAL(gw_tokens_psk(t, "b-dev", 5, &k, &kl, &why), 0);
	CU_ASSERT_TRUE(kl == 16 && k[0] == 0x00 && k[15] == 0xff);
	/* a psk: line wins over the device's token */
	CU_ASSERT_EQUAL(gw_tokens_psk(t, "d-dev", 5, &k, &kl, &why), 0);
	CU_ASSERT_TRUE(kl == 16 && k[0] == 0xff);
	CU_ASSERT_EQUAL(gw_tokens_psk(t, "c-dev", 5, &k, &kl, &why), -1);
	CU_ASSERT_PTR_NOT_NULL(strstr(why, "sha256:"));
	CU_ASSERT_EQUAL(gw_tokens_psk(t, "e-dev", 5, &k, &kl, &why), -1);
	CU_ASSERT_PTR_NOT_NULL(strstr(why, "longer than 64"));
	CU_ASSERT_EQUAL(gw_tokens_psk(t, "x-dev", 5, &k, &kl, &why), -1);
	CU_ASSERT_PTR_NOT_NULL(strstr(why, "no such device"));
	CU_ASSERT_EQUAL(gw_tokens_psk(t, "a-de", 4, &k, &kl, &why), -1);
	CU_ASSERT_EQUAL(gw_tokens_psk(t, "a-dev\0x", 7, &k, &kl, &why), -1);
	/* bearer tokens still work; a psk: key is no bearer token */
	CU_ASSERT_PTR_NOT_NULL(gw_tokens_check(t, "tok-a-0123456789abcdef", 22));
	CU_ASSERT_PTR_NULL(gw_tokens_check(t, "00112233445566778899aabbccddeeff", 32));
	gw_tokens_free(t);
	/* without keep_psk a plain token is no key */
	t = load("a-dev tok-a-0123456789abcdef\n", false, err, sizeof(err));
	CU_ASSERT_PTR_NOT_NULL_FATAL(t);
	CU_ASSERT_EQUAL(gw_tokens_psk(t, "a-dev", 5, &k, &kl, &why), -1);
	gw_tokens_free(t);
	/* bad psk: lines name the problem */
	CU_ASSERT_PTR_NULL(load("a psk:0g\n", true, err, sizeof(err)));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "hex digit"));
	CU_ASSERT_PTR_NULL(load("a psk:012\n", true, err, sizeof(err)));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "2 to 128 hex digits"));
	CU_ASSERT_PTR_NULL(load("a psk:\n", true, err, sizeof(err)));
}

int init_coap_req_tests(void)
{
	CU_pSuite s = CU_add_suite("coap_req", suite_init, NULL);

	if (s == NULL)
		return -1;
	CU_add_test(s, "check_table_gives_each_code", check_table_gives_each_code);
	CU_add_test(s, "msg_read_takes_the_parts", msg_read_takes_the_parts);
	CU_add_test(s, "update_plan_translates_and_keys", update_plan_translates_and_keys);
	CU_add_test(s, "result_alone_is_three_bytes_for_200", result_alone_is_three_bytes_for_200);
	CU_add_test(s, "upstream_answers_map_to_codes", upstream_answers_map_to_codes);
	CU_add_test(s, "retry_after_becomes_max_age", retry_after_becomes_max_age);
	CU_add_test(s, "stored_and_refused_answers", stored_and_refused_answers);
	CU_add_test(s, "ack_fits_one_datagram", ack_fits_one_datagram);
	CU_add_test(s, "shrink_keeps_answers_within_a_bound", shrink_keeps_answers_within_a_bound);
	CU_add_test(s, "blocks_put_a_body_back_in_order", blocks_put_a_body_back_in_order);
	CU_add_test(s, "bucket_allows_its_rate", bucket_allows_its_rate);
	CU_add_test(s, "dedup_mids_are_found_and_age_out", dedup_mids_are_found_and_age_out);
	CU_add_test(s, "dedup_seqs_keep_final_answers_only", dedup_seqs_keep_final_answers_only);
	CU_add_test(s, "tokens_give_psks_and_say_why_not", tokens_give_psks_and_say_why_not);
	return 0;
}
