/* coap.c - fuzz target: the CoAP ingress's request handling without
 * sockets (gateway/coap_req.c): a datagram parsed by libcoap as the
 * gateway's endpoint would (coap_pdu_parse), read (gw_coap_msg_read),
 * decided (gw_coap_check), its body put together (Block1) and translated
 * (an Envelope of /u, a Batch of /b), and the answers built for it.
 *
 * Input: one flags byte, then the datagram. Flags: bit 0 the gateway is
 * stopping, bit 1 overloaded, bit 2 this source is over its rate, bit 3
 * the PSK identity is no longer a device; bits 4-7 pick an upstream answer
 * (status, curl code) to turn into a CoAP answer as well.
 *
 * Invariants:
 *  - a request PDU is read with its token (at most 8 bytes) and a payload
 *    no longer than the datagram; /u and /b only for one exact path
 *    segment;
 *  - the decision is 0 or one of 4.00, 4.01, 4.02, 4.04, 4.05, 4.06, 4.13,
 *    4.15, 5.03; 5.03 only when stopping, overloaded or over the rate,
 *    4.01 only without a device; the message is a non-empty sentence of
 *    valid UTF-8; its answer has the same code, an Error payload carrying
 *    that code (4.xx) or Max-Age and a Result (5.03);
 *  - Block1 gives 0, 2.31, 4.00, 4.08 or 4.13 and never holds more than
 *    --max-body;
 *  - an accepted envelope is translated or refused with 4.00; what would
 *    go upstream is canonical JSON (it parses strictly and writes back
 *    byte for byte) at sw_session_path's path; the same envelope gives the
 *    same dedup key, another device another one;
 *  - an accepted batch has at most 40 items, each ready or refused, and
 *    its Ack fits a datagram;
 *  - every upstream answer maps to 2.04, 4.xx, 5.02 or 5.03 with a payload
 *    that decodes.
 */
#include <coap3/coap.h>

#include "fuzz.h"
#include "gw.h"

static gw_config cpf_cfg;

static void cpf_setup(void)
{
	static bool done;

	if (done)
		return;
	done = true;
	coap_startup();
	coap_set_log_level(LOG_EMERG);
	gw_config_defaults(&cpf_cfg);
	cpf_cfg.max_body = 2048;
	cpf_cfg.max_concurrent = 4;
	cpf_cfg.max_batch_items = GW_COAP_BATCH_MAX;
}

static bool cpf_utf8(const char *s, size_t n)
{
	size_t i = 0, k;

	while (i < n) {
		k = gw_utf8_seq((const unsigned char *)s + i, n - i);
		if (k == 0)
			return false;
		i += k;
	}
	return true;
}

/* What goes upstream is canonical: it parses strictly and writes back. */
static void cpf_canonical(const sw_buf *json)
{
	sw_update *u = NULL;
	sw_buf again;

	sw_buf_init(&again, 0, NULL);
	if (SW_FUZZ_CHECK(sw_json_parse(json->data, json->len, NULL, &u, NULL) == SW_OK) &&
	    SW_FUZZ_CHECK(sw_json_write(u, NULL, &again, NULL) == SW_OK))
		SW_FUZZ_CHECK(sw_fuzz_same(again.data, again.len, json->data, json->len));
	sw_update_free(u);
	sw_buf_free(&again);
}

/* A refusal's answer carries it. */
static void cpf_answer_of(const gw_refusal *no)
{
	gw_coap_answer a;

	gw_coap_answer_init(&a);
	if (!SW_FUZZ_CHECK(gw_coap_answer_refusal(&a, no) == 0))
		goto out;
	SW_FUZZ_CHECK(a.code == no->status);
	if (a.code >= 400 && a.code < 500) {
		sw_error_msg em;

		if (SW_FUZZ_CHECK(sw_error_msg_decode(a.payload, a.len, &em, NULL) == SW_OK))
			SW_FUZZ_CHECK(em.status == (uint32_t)a.code);
	} else {
		sw_result r;

		SW_FUZZ_CHECK(a.code == 503 && a.max_age >= 1);
		SW_FUZZ_CHECK(sw_result_decode(a.payload, a.len, &r, NULL) == SW_OK);
	}
	SW_FUZZ_CHECK(a.len <= GW_COAP_PAYLOAD_MAX);
out:
	gw_coap_answer_free(&a);
}

static void cpf_update(const gw_coap_msg *m, const uint8_t *p, size_t n)
{
	gw_coap_update u, v;
	gw_refusal no;
	int rc;

	gw_coap_update_init(&u);
	gw_coap_update_init(&v);
	rc = gw_coap_update_plan(&cpf_cfg, "dev-fuzz", p, n, &u, &no);
	SW_FUZZ_CHECK(rc == 0 || rc == 400);
	if (rc == 400) {
		SW_FUZZ_CHECK(no.message[0] != '\0' &&
			      cpf_utf8(no.message, strlen(no.message)));
		cpf_answer_of(&no);
	}
	if (rc == 0) {
		sw_buf path;

		cpf_canonical(&u.json);
		sw_buf_init(&path, 0, NULL);
		if (SW_FUZZ_CHECK(sw_session_path(u.sid_text.data ? u.sid_text.data : "",
						  u.sid_text.len, &path, NULL) == SW_OK))
			SW_FUZZ_CHECK(sw_fuzz_same(path.data, path.len, u.path.data,
						   u.path.len));
		sw_buf_free(&path);
		/* the same envelope: the same key; another device: another */
		if (SW_FUZZ_CHECK(gw_coap_update_plan(&cpf_cfg, "dev-other", p, n,
						      &v, &no) == 0))
			SW_FUZZ_CHECK(memcmp(u.key, v.key, 16) != 0 &&
				      memcmp(u.digest, v.digest, 8) == 0);
	}
	(void)m;
	gw_coap_update_free(&u);
	gw_coap_update_free(&v);
}

static void cpf_batch(const uint8_t *p, size_t n)
{
	gw_batch b;
	gw_refusal no;
	int rc = gw_batch_plan(&cpf_cfg, p, n, &b, &no);
	size_t k;

	SW_FUZZ_CHECK(rc == 0 || rc == 400 || rc == 413);
	if (rc == 0) {
		sw_result *res = sw_fuzz_malloc((b.n ? b.n : 1) * sizeof(*res));
		gw_coap_answer a;

		SW_FUZZ_CHECK(b.n <= GW_COAP_BATCH_MAX);
		memset(res, 0, (b.n ? b.n : 1) * sizeof(*res));
		for (k = 0; k < b.n; k++) {
			SW_FUZZ_CHECK(b.items[k].status == 0 || b.items[k].status == 400);
			if (b.items[k].status == 0)
				cpf_canonical(&b.items[k].json);
			res[b.items[k].idx].seq = b.items[k].seq;
			res[b.items[k].idx].status = b.items[k].status ? 400 : 200;
			res[b.items[k].idx].message.ptr = b.items[k].msg;
			res[b.items[k].idx].message.len = strlen(b.items[k].msg);
		}
		gw_coap_answer_init(&a);
		if (SW_FUZZ_CHECK(gw_coap_answer_ack(&a, res, b.n, GW_COAP_PAYLOAD_MAX) == 0))
			SW_FUZZ_CHECK(a.len <= GW_COAP_PAYLOAD_MAX + 64);
		gw_coap_answer_free(&a);
		free(res);
	}
	gw_batch_free(&b);
}

/* An upstream answer picked by the flags as a CoAP answer. */
static void cpf_upstream(unsigned pick, const uint8_t *body, size_t n)
{
	static const struct { int status, curl; } t[16] = {
		{ 200, 0 }, { 201, 0 }, { 204, 0 }, { 400, 0 }, { 401, 0 },
		{ 403, 0 }, { 404, 0 }, { 409, 0 }, { 418, 0 }, { 422, 0 },
		{ 429, 0 }, { 500, 0 }, { 501, 0 }, { 503, 0 }, { 0, 28 },
		{ 0, 7 }
	};
	gw_response r;
	gw_coap_answer a;
	char *b = sw_fuzz_malloc(n + 1);

	memcpy(b, body, n);
	b[n] = '\0';
	memset(&r, 0, sizeof(r));
	r.status = t[pick & 15].status;
	r.curl_code = t[pick & 15].curl;
	r.retry_after_ms = n > 0 ? (long)body[0] * 100 : -1;
	r.body = b;
	r.body_len = n;
	gw_coap_answer_init(&a);
	if (SW_FUZZ_CHECK(gw_coap_answer_upstream(&a, &r) == 0)) {
		SW_FUZZ_CHECK(a.code == 204 || a.code == 502 || a.code == 503 ||
			      (a.code >= 400 && a.code < 500));
		if (a.code >= 400 && a.code < 500) {
			sw_error_msg em;

			SW_FUZZ_CHECK(sw_error_msg_decode(a.payload, a.len, &em, NULL) == SW_OK);
		} else {
			sw_result res;

			SW_FUZZ_CHECK(sw_result_decode(a.payload, a.len, &res, NULL) == SW_OK);
		}
		SW_FUZZ_CHECK(a.final == (a.code < 500));
	}
	gw_coap_answer_free(&a);
	free(b);
}

int SW_FUZZ_ENTRY(coap)(const uint8_t *data, size_t size)
{
	coap_pdu_t *pdu;
	gw_coap_msg m;
	gw_coap_env env;
	gw_refusal no;
	uint8_t flags;
	int rc;

	cpf_setup();
	if (size < 1)
		return 0;
	flags = data[0];
	data++;
	size--;
	cpf_upstream(flags >> 4, data, size < 64 ? size : 64);
	pdu = coap_pdu_init(0, 0, 0, size + 16);
	if (pdu == NULL)
		return 0;
	if (!coap_pdu_parse(COAP_PROTO_UDP, data, size, pdu) ||
	    gw_coap_msg_read(pdu, &m) != 0)
		goto out;
	SW_FUZZ_CHECK(m.token_len <= 8);
	SW_FUZZ_CHECK(m.payload_len <= size && (m.payload_len == 0) == (m.payload == NULL));
	memset(&env, 0, sizeof(env));
	env.c = &cpf_cfg;
	env.stopping = flags & 1;
	env.inflight = flags & 2 ? 5 : 1;
	env.over_rate = flags & 4;
	env.device = flags & 8 ? NULL : "dev-fuzz";
	rc = gw_coap_check(&env, &m, &no);
	SW_FUZZ_CHECK(rc == 0 || rc == 400 || rc == 401 || rc == 402 ||
		      rc == 404 || rc == 405 || rc == 406 || rc == 413 ||
		      rc == 415 || rc == 503);
	if (rc == 503)
		SW_FUZZ_CHECK(env.stopping || env.inflight > 4 || env.over_rate);
	if (rc == 401)
		SW_FUZZ_CHECK(env.device == NULL);
	if (rc != 0) {
		SW_FUZZ_CHECK(no.status == rc && no.message[0] != '\0' &&
			      cpf_utf8(no.message, strlen(no.message)));
		cpf_answer_of(&no);
		goto out;
	}
	SW_FUZZ_CHECK(m.res == GW_COAP_RES_UPDATE || m.res == GW_COAP_RES_BATCH);
	if (m.has_block1) {
		gw_coap_blocks b;

		gw_coap_blocks_init(&b, m.res, cpf_cfg.max_body);
		rc = gw_coap_blocks_put(&b, &m, cpf_cfg.max_body, &no);
		SW_FUZZ_CHECK(rc == 0 || rc == 231 || rc == 400 || rc == 408 ||
			      rc == 413);
		SW_FUZZ_CHECK(b.body.len <= cpf_cfg.max_body);
		if (rc != 0 && rc != 231)
			cpf_answer_of(&no);
		if (rc == 0) {
			if (m.res == GW_COAP_RES_UPDATE)
				cpf_update(&m, (const uint8_t *)b.body.data, b.body.len);
			else
				cpf_batch((const uint8_t *)b.body.data, b.body.len);
		}
		gw_coap_blocks_free(&b);
		goto out;
	}
	if (m.res == GW_COAP_RES_UPDATE)
		cpf_update(&m, m.payload, m.payload_len);
	else
		cpf_batch(m.payload, m.payload_len);
out:
	coap_delete_pdu(pdu);
	return 0;
}
