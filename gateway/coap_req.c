/* coap_req.c - what the gateway decides about a CoAP request, without
 * sockets: the resource, method and options of a request PDU libcoap
 * parsed; the envelope of POST /u translated; the bodies of the answers
 * (a Result, an Error, an Ack) and their codes; Block1 bodies put back
 * together; the per-source token bucket.
 *
 * coap.c feeds these from libcoap and sends the answers; tests/fuzz/coap.c
 * feeds them PDUs parsed from arbitrary bytes. Nothing here touches a
 * socket, the store, the upstream or the metrics. The translation itself
 * is request.c's (gw_req_canonical, gw_batch_plan, gw_error_body,
 * gw_answer_pb): the same bytes go upstream whatever the transport.
 *
 * Codes are c*100+dd: 2.04 is 204. The answers' payloads: a Result
 * (sw_result_encode, no seq: the exchange names the envelope) for an
 * outcome (2.04, 5.xx), an Error for a device's mistake (4.xx), an Ack
 * for a batch.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <coap3/coap.h>
#include <openssl/evp.h>

#include "gw.h"

/* Content-Formats the resources take. IANA's CoAP Content-Formats
 * registry (checked when this was written) has no protobuf entry, so the
 * one to use is application/octet-stream; a protobuf Content-Format, once
 * registered, is one more entry here. Leaving the option out is fine and
 * saves its bytes. */
static const unsigned pb_formats[] = { GW_COAP_CF_OCTETS };
#define N_PB_FORMATS (sizeof(pb_formats) / sizeof(pb_formats[0]))

/* Fills a refusal as request.c does: status (here the CoAP code), metrics
 * reason, code, message (valid UTF-8), and Retry-After for 5.03. */
__attribute__((format(printf, 6, 7)))
static int refuse(gw_refusal *no, int code, const char *reason,
		  const char *name, const char *retry_after, const char *fmt,
		  ...)
{
	va_list ap;

	memset(no, 0, sizeof(*no));
	no->status = code;
	no->reason = reason;
	no->code = name;
	if (retry_after != NULL) {
		no->hname = "Retry-After";
		no->hval = retry_after;
	}
	va_start(ap, fmt);
	if (vsnprintf(no->message, sizeof(no->message), fmt, ap) < 0)
		no->message[0] = '\0';
	va_end(ap);
	gw_utf8_sanitise(no->message);
	return code;
}

/* ==== Reading a request ==== */

/* A critical option (odd number) the resources take. */
static bool option_taken(uint16_t num)
{
	switch (num) {
	case COAP_OPTION_URI_HOST:   /* names this gateway: nothing to do */
	case COAP_OPTION_URI_PORT:
	case COAP_OPTION_URI_PATH:
	case COAP_OPTION_ACCEPT:
	case COAP_OPTION_BLOCK1:
	case COAP_OPTION_BLOCK2:     /* the answers are one datagram anyway */
		return true;
	default:
		return false;
	}
}

int gw_coap_msg_read(const coap_pdu_t *pdu, gw_coap_msg *m)
{
	coap_opt_iterator_t it;
	coap_opt_t *opt;
	coap_bin_const_t tok;
	size_t plen = 0, segs = 0;
	const uint8_t *pdata = NULL;
	bool path_bad = false;
	int code;

	memset(m, 0, sizeof(*m));
	m->res = GW_COAP_RES_OTHER;
	m->type = (int)coap_pdu_get_type(pdu);
	code = (int)coap_pdu_get_code(pdu);
	m->code = code;
	m->mid = (int)coap_pdu_get_mid(pdu);
	tok = coap_pdu_get_token(pdu);
	m->token_len = tok.length <= sizeof(m->token) ? tok.length : 0;
	if (m->token_len)
		memcpy(m->token, tok.s, m->token_len);
	if (code < 1 || code > 31)
		return -1; /* 0.xx: a request has a method code */
	coap_option_iterator_init(pdu, &it, COAP_OPT_ALL);
	while ((opt = coap_option_next(&it)) != NULL) {
		const uint8_t *v = coap_opt_value(opt);
		size_t vl = coap_opt_length(opt);

		switch (it.number) {
		case COAP_OPTION_URI_PATH: {
			size_t at = strlen(m->path);

			segs++;
			if (segs == 1 && vl == 1 && v[0] == 'u')
				m->res = GW_COAP_RES_UPDATE;
			else if (segs == 1 && vl == 1 && v[0] == 'b')
				m->res = GW_COAP_RES_BATCH;
			else
				path_bad = true;
			if (at + 2 < sizeof(m->path)) {
				size_t k = vl < sizeof(m->path) - at - 2
						   ? vl : sizeof(m->path) - at - 2;

				m->path[at] = '/';
				memcpy(m->path + at + 1, v, k);
				m->path[at + 1 + k] = '\0';
			}
			break;
		}
		case COAP_OPTION_CONTENT_FORMAT:
			m->has_cf = true;
			m->cf = vl <= 4 ? coap_decode_var_bytes(v, vl) : 65536;
			break;
		case COAP_OPTION_ACCEPT:
			m->has_accept = true;
			m->accept = vl <= 4 ? coap_decode_var_bytes(v, vl) : 65536;
			break;
		case COAP_OPTION_URI_QUERY:
			m->has_query = true;
			break;
		case COAP_OPTION_BLOCK1: {
			unsigned v32 = vl <= 3 ? coap_decode_var_bytes(v, vl)
					       : 0xffffffffu;

			m->has_block1 = true;
			m->b1_num = v32 >> 4;
			m->b1_more = (v32 & 8) != 0;
			m->b1_szx = v32 & 7;
			if (vl > 3)
				m->b1_szx = 7; /* refused as BERT below */
			break;
		}
		case COAP_OPTION_SIZE1:
			m->has_size1 = true;
			m->size1 = vl <= 8 ? coap_decode_var_bytes8(v, vl)
					   : UINT64_MAX;
			break;
		default:
			if ((it.number & 1) && !option_taken(it.number) &&
			    m->bad_option == 0)
				m->bad_option = it.number;
			break;
		}
	}
	if (segs == 0 || path_bad)
		m->res = GW_COAP_RES_OTHER;
	if (segs == 0)
		snprintf(m->path, sizeof(m->path), "/");
	if (coap_get_data(pdu, &plen, &pdata) && pdata != NULL) {
		m->payload = pdata;
		m->payload_len = plen;
	}
	return 0;
}

/* ==== Decisions ==== */

static const char *method_name(int code)
{
	static const char *const names[] = { "?", "GET", "POST", "PUT",
					     "DELETE", "FETCH", "PATCH",
					     "iPATCH" };

	return code >= 1 && code <= 7 ? names[code] : "an unknown method";
}

static bool format_taken(unsigned cf)
{
	size_t i;

	for (i = 0; i < N_PB_FORMATS; i++)
		if (pb_formats[i] == cf)
			return true;
	return false;
}

int gw_coap_check(const gw_coap_env *env, const gw_coap_msg *m,
		  gw_refusal *no)
{
	const gw_config *c = env->c;

	memset(no, 0, sizeof(*no));
	if (m->res == GW_COAP_RES_OTHER)
		return refuse(no, 404, "not_found", "not_found", NULL,
			      "no such resource %.40s (POST /u: one Envelope; POST /b: a Batch)",
			      m->path[0] ? m->path : "/");
	if (m->code != COAP_REQUEST_CODE_POST)
		return refuse(no, 405, "method", "method_not_allowed", NULL,
			      "only POST is allowed on /%c, found %s",
			      m->res == GW_COAP_RES_UPDATE ? 'u' : 'b',
			      method_name(m->code));
	if (m->bad_option != 0)
		return refuse(no, 402, "bad_request", "bad_option", NULL,
			      "option %d is critical and not taken here",
			      m->bad_option);
	if (m->has_query)
		return refuse(no, 402, "bad_request", "bad_option", NULL,
			      "Uri-Query: /u and /b take no query");
	if (m->has_block1 && m->b1_szx == 7)
		return refuse(no, 402, "bad_request", "bad_option", NULL,
			      "Block1: BERT (szx 7) is for CoAP over TCP");
	if (m->has_cf && !format_taken(m->cf))
		return refuse(no, 415, "content_type", "unsupported_content_format",
			      NULL, "Content-Format must be %u (application/octet-stream: a protobuf %s) or left out, found %u",
			      GW_COAP_CF_OCTETS,
			      m->res == GW_COAP_RES_UPDATE ? "Envelope" : "Batch",
			      m->cf);
	if (m->has_accept && !format_taken(m->accept))
		return refuse(no, 406, "content_type", "not_acceptable", NULL,
			      "the answers are protobuf: Accept must be %u or left out, found %u",
			      GW_COAP_CF_OCTETS, m->accept);
	if (env->stopping)
		return refuse(no, 503, "shutting_down", "shutting_down", "1",
			      "the gateway is shutting down; nothing was forwarded or stored; retry on another instance");
	if (env->inflight > (int)c->max_concurrent)
		return refuse(no, 503, "overload", "overloaded", "1",
			      "more than %u requests in flight; retry later",
			      c->max_concurrent);
	if (env->over_rate)
		return refuse(no, 503, "overload", "overloaded", "1",
			      "the gateway is busy and this address sent more than %u requests in the last second; retry later",
			      c->coap_source_rate);
	if (env->device == NULL)
		return refuse(no, 401, "auth", "unauthorized", NULL,
			      "the PSK identity is no longer a device in the device tokens");
	if (m->has_size1 && m->size1 > c->max_body)
		return refuse(no, 413, "too_big", "payload_too_large", NULL,
			      "body of %llu bytes (Size1) is over the limit of %zu bytes",
			      (unsigned long long)m->size1, c->max_body);
	if (m->payload_len > c->max_body)
		return refuse(no, 413, "too_big", "payload_too_large", NULL,
			      "body over the limit of %zu bytes", c->max_body);
	if (m->payload_len == 0 && !(m->has_block1 && m->b1_more))
		return refuse(no, 400, "invalid_body", "invalid_body", NULL,
			      "expected a protobuf %s as the payload, found none",
			      m->res == GW_COAP_RES_UPDATE ? "Envelope" : "Batch");
	return 0;
}

/* ==== POST /u: one envelope ==== */

void gw_coap_update_init(gw_coap_update *u)
{
	memset(u, 0, sizeof(*u));
	sw_buf_init(&u->sid_text, 0, NULL);
	sw_buf_init(&u->path, 0, NULL);
	sw_buf_init(&u->json, 0, NULL);
}

void gw_coap_update_free(gw_coap_update *u)
{
	if (u == NULL)
		return;
	sw_buf_free(&u->sid_text);
	sw_buf_free(&u->path);
	sw_buf_free(&u->json);
}

void gw_coap_seq_key(const char *device, const char *sid, size_t sid_len,
		     uint64_t seq, const uint8_t *json, size_t json_len,
		     uint8_t key[16], uint8_t digest[8])
{
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	uint8_t s8[8];
	EVP_MD_CTX *x = EVP_MD_CTX_new();
	int i;

	/* (device, 0, session id, 0, seq as 8 bytes): one digest, cut */
	for (i = 0; i < 8; i++)
		s8[i] = (uint8_t)(seq >> (56 - 8 * i));
	memset(d, 0, sizeof(d));
	if (x != NULL && EVP_DigestInit_ex(x, EVP_sha256(), NULL) == 1 &&
	    EVP_DigestUpdate(x, device, strlen(device) + 1) == 1 &&
	    EVP_DigestUpdate(x, sid, sid_len) == 1 &&
	    EVP_DigestUpdate(x, "", 1) == 1 &&
	    EVP_DigestUpdate(x, s8, sizeof(s8)) == 1)
		EVP_DigestFinal_ex(x, d, &n);
	memcpy(key, d, 16);
	memset(d, 0, sizeof(d));
	n = 0;
	if (x != NULL && EVP_DigestInit_ex(x, EVP_sha256(), NULL) == 1 &&
	    EVP_DigestUpdate(x, json, json_len) == 1)
		EVP_DigestFinal_ex(x, d, &n);
	memcpy(digest, d, 8);
	EVP_MD_CTX_free(x);
}

int gw_coap_update_plan(const gw_config *c, const char *device,
			const uint8_t *p, size_t n, gw_coap_update *u,
			gw_refusal *no)
{
	sw_envelope env;
	sw_error e;
	char tmp[64];
	const char *sid;
	size_t sid_len;

	memset(no, 0, sizeof(*no));
	sw_error_clear(&e);
	if (sw_envelope_decode(p, n, &env, &e) != SW_OK) {
		refuse(no, 400, "invalid_body", "invalid_body", NULL, "%s: %s",
		       sw_strerror(e.code), e.message);
		gw_format(no->field, sizeof(no->field), "%s", e.path);
		return 400;
	}
	if (!env.has_seq)
		return refuse(no, 400, "invalid_body", "invalid_body", NULL,
			      "expected the envelope's seq (a resent envelope is known by it), found none");
	if (env.session_id.kind == SW_ID_TEXT) {
		sid = env.session_id.text.ptr;
		sid_len = env.session_id.text.len;
	} else {
		sid_len = sw_session_id_format(&env.session_id, tmp, sizeof(tmp));
		sid = tmp;
	}
	if (sw_buf_append(&u->sid_text, sid, sid_len) != SW_OK)
		return -1;
	gw_format(u->sid, sizeof(u->sid), "%.*s",
		  (int)(sid_len < sizeof(u->sid) ? sid_len : sizeof(u->sid) - 1),
		  sid);
	u->seq = env.seq;
	u->update_len = env.update_len;
	if (sw_session_path(sid, sid_len, &u->path, &e) != SW_OK) {
		refuse(no, 400, "invalid_body", "invalid_session_id", NULL,
		       "session id: %s", e.message);
		gw_format(no->field, sizeof(no->field), "session_id");
		return 400;
	}
	if (gw_req_canonical(c, env.update, env.update_len, GW_BODY_PB,
			     &u->json, no) != 0) {
		/* the field path of the update inside the envelope */
		char f[SW_ERROR_PATH_MAX];

		snprintf(f, sizeof(f), "%s", no->field);
		gw_format(no->field, sizeof(no->field), "update%s%s",
			  f[0] ? "." : "", f);
		return 400;
	}
	gw_coap_seq_key(device, sid, sid_len, env.seq,
			(const uint8_t *)u->json.data, u->json.len, u->key,
			u->digest);
	return 0;
}

/* ==== Answers ==== */

void gw_coap_answer_init(gw_coap_answer *a)
{
	memset(a, 0, sizeof(*a));
	a->max_age = a->block1 = a->size1 = -1;
}

void gw_coap_answer_free(gw_coap_answer *a)
{
	if (a == NULL)
		return;
	free(a->payload);
	a->payload = NULL;
	a->len = 0;
}

int gw_coap_answer_copy(gw_coap_answer *dst, const gw_coap_answer *src)
{
	uint8_t *p = NULL;

	if (src->len > 0) {
		p = malloc(src->len);
		if (p == NULL)
			return -1;
		memcpy(p, src->payload, src->len);
	}
	gw_coap_answer_free(dst);
	*dst = *src;
	dst->payload = p;
	return 0;
}

/* Takes b's bytes as the payload. */
static void take_payload(gw_coap_answer *a, sw_buf *b)
{
	free(a->payload);
	a->payload = (uint8_t *)b->data;
	a->len = b->len;
	b->data = NULL;
	b->len = 0;
}

/* A Result payload: status, retry_after_ms (>= 0), message. */
static int result_payload(gw_coap_answer *a, int status, long retry_ms,
			  const char *msg)
{
	sw_result r;
	size_t n = 0;
	uint8_t *p;
	char m[161];

	memset(&r, 0, sizeof(r));
	r.status = (uint32_t)status;
	if (retry_ms >= 0) {
		r.has_retry_after = true;
		r.retry_after_ms = retry_ms > (long)UINT32_MAX ? UINT32_MAX
							      : (uint32_t)retry_ms;
	}
	gw_format(m, sizeof(m), "%s", msg ? msg : "");
	r.message.ptr = m;
	r.message.len = strlen(m);
	if (sw_result_encode(&r, false, NULL, 0, &n, NULL) != SW_OK && n == 0)
		return -1;
	p = malloc(n ? n : 1);
	if (p == NULL || sw_result_encode(&r, false, p, n, &n, NULL) != SW_OK) {
		free(p);
		return -1;
	}
	free(a->payload);
	a->payload = p;
	a->len = n;
	return 0;
}

int gw_coap_answer_refusal(gw_coap_answer *a, const gw_refusal *no)
{
	sw_buf b;

	a->code = no->status;
	a->status = no->status;
	a->final = no->status < 500;
	if (no->status == 503) {
		long s = no->hval ? strtol(no->hval, NULL, 10) : 1;

		a->max_age = s > 0 ? s : 1;
	}
	if (no->field[0])
		gw_format(a->error, sizeof(a->error), "%s: %s", no->field,
			  no->message);
	else
		gw_format(a->error, sizeof(a->error), "%s", no->message);
	if (no->status >= 500)
		return result_payload(a, no->status,
				      a->max_age > 0 ? a->max_age * 1000 : -1,
				      no->message);
	sw_buf_init(&b, 0, NULL);
	if (gw_error_body(true, no->status, no->code, no->message, no->field,
			  &b) != SW_OK) {
		sw_buf_free(&b);
		return -1;
	}
	take_payload(a, &b);
	return 0;
}

int gw_coap_code_of(int status, int curl_code)
{
	gw_retry_policy p;

	memset(&p, 0, sizeof(p));
	p.persistent = true;
	if (status >= 200 && status < 300)
		return 204;
	if (gw_retry_retryable(&p, status, curl_code))
		return 503;
	switch (status) {
	case 400: case 404: case 405: case 406: case 409: case 412:
	case 413: case 415: case 422:
		return status;
	default:
		break;
	}
	/* 401, 403, 407: the API refused the gateway's key, not the device;
	 * other 5xx and the rest: the gateway's problem */
	if (status >= 400 && status < 500 && status != 401 && status != 403 &&
	    status != 407)
		return 400;
	return 502;
}

int gw_coap_answer_upstream(gw_coap_answer *a, const gw_response *r)
{
	int code = gw_coap_code_of(r->status, r->curl_code);
	int st = r->status;
	char msg[200];

	a->code = code;
	a->status = st ? st : gw_retry_no_answer_status(r->curl_code);
	a->final = code < 500;
	if (st == 0)
		gw_format(msg, sizeof(msg), "upstream %s: %s",
			  a->status == 504 ? "timed out" : "unreachable",
			  r->error[0] ? r->error : "no answer");
	else if (st < 200 || st >= 300)
		gw_format(msg, sizeof(msg), "upstream answered %d", st);
	else
		msg[0] = '\0';
	if (msg[0])
		gw_format(a->error, sizeof(a->error), "%s", msg);
	if (code == 204)
		return result_payload(a, st, -1, NULL);
	if (code == 503) {
		long ms = r->retry_after_ms >= 0 ? r->retry_after_ms : 5000;

		a->max_age = (ms + 999) / 1000;
		return result_payload(a, a->status, ms, msg);
	}
	if (code == 502)
		return result_payload(a, a->status, -1, msg);
	/* 4.xx: the API's own Error when it translates, else one of ours */
	{
		sw_buf b;

		sw_buf_init(&b, GW_COAP_PAYLOAD_MAX, NULL);
		if (r->body_len == 0 ||
		    gw_answer_pb(st, r->body, r->body_len, &b) != 0) {
			char text[161];

			sw_buf_reset(&b);
			gw_format(text, sizeof(text), "%.*s",
				  (int)(r->body_len < 160 ? r->body_len : 160),
				  r->body ? r->body : "");
			if (gw_error_body(true, st, "upstream_error",
					  text[0] ? text : msg, NULL, &b) != SW_OK) {
				sw_buf_free(&b);
				return -1;
			}
		}
		take_payload(a, &b);
	}
	return 0;
}

int gw_coap_answer_stored(gw_coap_answer *a, int result, const char *err)
{
	if (result == GW_STORE_OK) {
		a->code = 204;
		a->status = 202;
		a->final = true;
		return result_payload(a, 202, -1, NULL);
	}
	a->code = 503;
	a->status = result == GW_STORE_FULL ? 507 : 503;
	a->final = false;
	a->max_age = result == GW_STORE_FULL ? 30 : 5;
	gw_format(a->error, sizeof(a->error), "%s", err ? err : "");
	return result_payload(a, a->status, a->max_age * 1000, err);
}

int gw_coap_answer_ack(gw_coap_answer *a, const sw_result *res, size_t n,
		       size_t max_payload)
{
	static const size_t cuts[] = { 160, 64, 24, 0 };
	sw_result *r;
	size_t i, k, len = 0;
	uint8_t *p = NULL;

	r = calloc(n ? n : 1, sizeof(*r));
	if (r == NULL)
		return -1;
	for (k = 0; k < sizeof(cuts) / sizeof(cuts[0]); k++) {
		for (i = 0; i < n; i++) {
			bool ok = res[i].status >= 200 && res[i].status < 300;

			r[i] = res[i];
			if (ok)
				r[i].message.len = 0;
			else if (r[i].message.len > cuts[k])
				/* cut on a character boundary */
				for (r[i].message.len = cuts[k];
				     r[i].message.len > 0 &&
				     ((unsigned char)r[i].message.ptr[r[i].message.len] & 0xC0) == 0x80;
				     r[i].message.len--)
					;
		}
		len = 0;
		if (sw_ack_encode(r, n, NULL, 0, &len, NULL) != SW_OK && len == 0)
			break;
		if (len <= max_payload || k + 1 == sizeof(cuts) / sizeof(cuts[0]))
			break;
	}
	p = malloc(len ? len : 1);
	if (p == NULL || sw_ack_encode(r, n, p, len, &len, NULL) != SW_OK) {
		free(p);
		free(r);
		return -1;
	}
	free(r);
	free(a->payload);
	a->payload = p;
	a->len = len;
	a->code = 204;
	a->status = 200;
	a->final = true;
	return 0;
}

int gw_coap_answer_shrink(gw_coap_answer *a, size_t max_payload)
{
	uint8_t *p = NULL;
	size_t n = 0;

	if (a->len <= max_payload)
		return 0;
	if (a->code >= 400 && a->code < 500) {
		sw_error_msg e;

		/* the Error without its message and field */
		if (sw_error_msg_decode(a->payload, a->len, &e, NULL) == SW_OK) {
			e.message.len = 0;
			e.field.len = 0;
			if (sw_error_msg_encode(&e, NULL, 0, &n, NULL) == SW_OK &&
			    n <= max_payload && (p = malloc(n ? n : 1)) != NULL &&
			    sw_error_msg_encode(&e, p, n, &n, NULL) != SW_OK) {
				free(p);
				p = NULL;
			}
		}
	} else {
		sw_result r;

		/* the Result without its message */
		if (sw_result_decode(a->payload, a->len, &r, NULL) == SW_OK) {
			r.message.len = 0;
			if (sw_result_encode(&r, false, NULL, 0, &n, NULL) == SW_OK &&
			    n <= max_payload && (p = malloc(n ? n : 1)) != NULL &&
			    sw_result_encode(&r, false, p, n, &n, NULL) != SW_OK) {
				free(p);
				p = NULL;
			}
		}
	}
	free(a->payload);
	a->payload = p;
	a->len = p ? n : 0;
	return 1;
}

/* ==== Block1: a body in blocks ==== */

void gw_coap_blocks_init(gw_coap_blocks *b, gw_coap_res res, size_t max)
{
	memset(b, 0, sizeof(*b));
	b->res = res;
	sw_buf_init(&b->body, max, NULL);
}

void gw_coap_blocks_free(gw_coap_blocks *b)
{
	if (b != NULL)
		sw_buf_free(&b->body);
}

int gw_coap_blocks_put(gw_coap_blocks *b, const gw_coap_msg *m, size_t max,
		       gw_refusal *no)
{
	uint64_t off, size;

	memset(no, 0, sizeof(*no));
	size = (uint64_t)1 << (m->b1_szx + 4);
	off = (uint64_t)m->b1_num * size;
	if (m->b1_num != b->next || off != b->body.len ||
	    (m->b1_num > 0 && m->b1_szx != b->szx)) {
		refuse(no, 408, "bad_request", "request_entity_incomplete", NULL,
		       "Block1: expected block %u of %u bytes (at byte %zu), found block %u of %u bytes",
		       (unsigned)b->next, b->next ? 1u << (b->szx + 4) : (unsigned)size,
		       b->body.len, (unsigned)m->b1_num, (unsigned)size);
		return 408;
	}
	/* a block that says there is more is exactly its size */
	if (m->b1_more && m->payload_len != size) {
		refuse(no, 400, "bad_request", "bad_request", NULL,
		       "Block1: block %u says more follow but holds %zu bytes, not %u",
		       (unsigned)m->b1_num, m->payload_len, (unsigned)size);
		return 400;
	}
	if (m->payload_len > max - b->body.len ||
	    (m->has_size1 && m->size1 > max)) {
		refuse(no, 413, "too_big", "payload_too_large", NULL,
		       "body over the limit of %zu bytes", max);
		return 413;
	}
	if (sw_buf_append(&b->body, m->payload, m->payload_len) != SW_OK) {
		refuse(no, 413, "too_big", "payload_too_large", NULL,
		       "body over the limit of %zu bytes", max);
		return 413;
	}
	b->szx = m->b1_szx;
	b->next = m->b1_num + 1;
	if (m->b1_more)
		return 231;
	if (b->body.len == 0) {
		refuse(no, 400, "invalid_body", "invalid_body", NULL,
		       "expected a protobuf %s in the blocks, found none",
		       b->res == GW_COAP_RES_UPDATE ? "Envelope" : "Batch");
		return 400;
	}
	return 0;
}

/* ==== Per-source rate ==== */

bool gw_coap_bucket_take(gw_coap_bucket *b, int64_t now_ms, unsigned rate)
{
	double cap = rate > 0 ? (double)rate : 1.0;

	if (b->last_ms == 0 || now_ms < b->last_ms) {
		b->tokens = cap;
	} else {
		b->tokens += (double)(now_ms - b->last_ms) * cap / 1000.0;
		if (b->tokens > cap)
			b->tokens = cap;
	}
	b->last_ms = now_ms;
	if (b->tokens < 1.0)
		return false;
	b->tokens -= 1.0;
	return true;
}
