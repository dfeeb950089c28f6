/* test_coap.c - the CoAP ingress on real UDP sockets on 127.0.0.1: the
 * gateway in-process (plain CoAP and DTLS-PSK endpoints) in front of the
 * fake upstream, driven by three clients that share no code with it:
 * Debian's coap-client (libcoap3-bin), session-codec's own CoAP client
 * (codec/cli/coap_client.c: raw messages, OpenSSL DTLS), and the device
 * example (codec/examples/coap_device.c, libcoap's client API) through a
 * relay that loses datagrams.
 *
 * Vectors arrive upstream byte-identical; a wrong key or an unknown
 * identity gets no session; retransmissions and resent envelopes reach
 * the API once and get the first answer; a slow API gets an empty ACK and
 * a separate response; every refusal has its code and an Error; Block1
 * batches; malformed datagrams and a handshake flood change nothing;
 * overload limits a source; a stop answers what is in flight. */
#include <CUnit/CUnit.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/ssl.h>

#include "../codec/cli/coap_client.h"
#include "fake_upstream.h"
#include "gw.h"
#include "testutil.h"

#define COAP_CLIENT "/usr/bin/coap-client-openssl"
#define DEV_TOKEN "tok-coap-0123456789abcdef"          /* dev-tok: a plain token */
#define DEV_PSK_HEX "00112233445566778899aabbccddeeff" /* dev-psk */
#define SID "01JWFXNRXWPG3W0C5MTEY913XX"

static char org_key[] = "sk-org-COAP-key-5e1d";
static fake_upstream *fu;
static gw_config cfg;
static gw_upstream *up;
static gw_server *srv;
static char tokens_path[128];
static uint16_t plain_port, dtls_port;
static const uint8_t psk[16] = { 0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66,
				 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
				 0xee, 0xff };

/* ==== Fixtures ==== */

static const char tokens_text[] =
	"dev-tok " DEV_TOKEN "\n"
	"dev-psk psk:" DEV_PSK_HEX "\n"
	"dev-hash sha256:0000000000000000000000000000000000000000000000000000000000000000\n";

static gw_tokens *tokens_load(const char *text)
{
	char err[256] = "";
	FILE *f = fopen(tokens_path, "w");
	gw_tokens *t;

	if (f == NULL)
		return NULL;
	fputs(text, f);
	fclose(f);
	t = gw_tokens_load_psk(tokens_path, true, err, sizeof(err));
	if (t == NULL)
		fprintf(stderr, "tokens: %s\n", err);
	return t;
}

static void coap_cfg(gw_config *c)
{
	tu_gw_config(c, fu_port(fu), org_key);
	c->coap_on = c->coaps_on = true;
	c->coap_port = c->coaps_port = 0;
	c->coap_anonymous = true;
	c->max_body = 65536;
	snprintf(c->device_tokens, sizeof(c->device_tokens), "%s", tokens_path);
}

/* A server of c (tokens from tokens_text); its ports. */
static gw_server *start(const gw_config *c, gw_store *st, uint16_t *pp,
			uint16_t *dp)
{
	char err[256] = "";
	gw_tokens *t = tokens_load(tokens_text);
	gw_server *s;

	if (t == NULL)
		return NULL;
	s = gw_server_start_store(c, up, st, t, err, sizeof(err));
	if (s == NULL) {
		fprintf(stderr, "server: %s\n", err);
		gw_tokens_free(t);
		return NULL;
	}
	*pp = gw_server_coap_port(s, false);
	*dp = gw_server_coap_port(s, true);
	return s;
}

static int suite_init(void)
{
	char err[256] = "";

	gw_log_set_level(GW_LOG_ERROR);
	cc_set_handshake_ms(3000);
	snprintf(tokens_path, sizeof(tokens_path), "/tmp/sw-coap-tokens-%d",
		 (int)getpid());
	fu = fu_start(0);
	if (fu == NULL)
		return -1;
	coap_cfg(&cfg);
	up = gw_upstream_new(&cfg, err, sizeof(err));
	if (up == NULL)
		return -1;
	srv = start(&cfg, NULL, &plain_port, &dtls_port);
	return srv && plain_port && dtls_port ? 0 : -1;
}

static int suite_clean(void)
{
	gw_server_stop(srv);
	gw_upstream_free(up);
	fu_stop(fu);
	unlink(tokens_path);
	gw_log_set_level(GW_LOG_INFO);
	return 0;
}

/* ==== Envelopes ==== */

/* The Envelope (sid, seq, the protobuf of wire JSON) into out; its length,
 * 0 on failure. */
static size_t envelope_of(const char *sid, size_t sid_len, uint64_t seq,
			  const char *wire, size_t wire_len, uint8_t *out,
			  size_t cap)
{
	sw_update *u = NULL;
	static uint8_t pb[70000];
	size_t pn = 0, n = 0;
	sw_session_id id;
	sw_status st;

	if (sw_json_parse(wire, wire_len, NULL, &u, NULL) != SW_OK)
		return 0;
	st = sw_pb_encode(u, pb, sizeof(pb), &pn, NULL);
	sw_update_free(u);
	if (st != SW_OK)
		return 0;
	sw_session_id_set(&id, sid, sid_len);
	if (sw_envelope_encode(&id, true, seq, pb, pn, out, cap, &n, NULL) != SW_OK)
		return 0;
	return n;
}

/* A small envelope of SID: {"duration":d}. */
static size_t small_env(uint64_t seq, int d, uint8_t *out, size_t cap)
{
	char json[64];

	snprintf(json, sizeof(json), "{\"duration\":%d}", d);
	return envelope_of(SID, strlen(SID), seq, json, strlen(json), out, cap);
}

/* Whether upstream request i is a PATCH of path with exactly body. */
static bool upstream_is(size_t i, const char *path, const char *body,
			size_t len)
{
	fu_request r;
	bool ok;

	if (!fu_get(fu, i, &r))
		return false;
	ok = !strcmp(r.method, "PATCH") && !strcmp(r.path, path) &&
	     r.body_len == len && !memcmp(r.body, body, len) &&
	     strstr(r.authorization, org_key) != NULL;
	if (!ok)
		fprintf(stderr, "\nupstream got %s %s %.*s\n", r.method, r.path,
			(int)r.body_len, r.body);
	fu_request_free(&r);
	return ok;
}

/* The Result status of a 2.04/5.03 answer payload, or -1. */
static long result_status(const uint8_t *p, size_t n)
{
	sw_result r;

	if (sw_result_decode(p, n, &r, NULL) != SW_OK)
		return -1;
	return (long)r.status;
}

/* ==== Raw exchanges ==== */

static cc_conn *open_plain(void)
{
	char url[64], err[256];
	cc_conn *c;

	snprintf(url, sizeof(url), "coap://127.0.0.1:%u", plain_port);
	c = cc_open(url, NULL, NULL, 0, err, sizeof(err));
	if (c == NULL)
		fprintf(stderr, "cc_open: %s\n", err);
	return c;
}

static cc_conn *open_dtls(uint16_t port, const char *id, const uint8_t *key,
			  size_t key_len, char *err, size_t errlen)
{
	char url[64];

	snprintf(url, sizeof(url), "coaps://127.0.0.1:%u", port);
	return cc_open(url, id, key, key_len, err, errlen);
}

/* A request message: type, code, mid, token, Uri-Path seg (NULL: none),
 * one more option, payload. Its length. */
static size_t req_msg(uint8_t *buf, size_t cap, int type, int code,
		      uint16_t mid, uint8_t tok, const char *seg,
		      const cc_opt *extra, const uint8_t *p, size_t n)
{
	cc_opt o[2];
	size_t no = 0;

	if (seg)
		o[no++] = (cc_opt){ 11, (const uint8_t *)seg, strlen(seg) };
	if (extra)
		o[no++] = *extra;
	return cc_build(buf, cap, type, code, mid, &tok, 1, o, no, p, n);
}

/* Receives datagrams for up to wait_ms until one matches mid (an ACK or
 * RST) or token (a separate response); *m points into buf. */
static bool recv_for(cc_conn *c, uint16_t mid, uint8_t tok, uint8_t *buf,
		     size_t cap, cc_msg *m, long wait_ms)
{
	double end = tu_mono() + (double)wait_ms / 1000;

	while (tu_mono() < end) {
		long n = cc_recv_raw(c, buf, cap, (long)((end - tu_mono()) * 1000) + 1);

		if (n <= 0)
			return false;
		if (cc_parse(buf, (size_t)n, m) != 0)
			continue;
		if ((m->type == CC_ACK || m->type == CC_RST) && m->mid == mid)
			return true;
		if (m->token_len == 1 && m->token[0] == tok && m->code >= 200)
			return true;
	}
	return false;
}

/* ==== Vectors ==== */

static void vectors_over(const char *file, bool dtls)
{
	tu_vector *v = NULL;
	int n = tu_vectors_load(file, &v), i, bad = 0;
	char err[256];
	cc_conn *c = dtls ? open_dtls(dtls_port, "dev-psk", psk, sizeof(psk),
				      err, sizeof(err))
			  : open_plain();

	CU_ASSERT_FATAL(n > 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(c);
	for (i = 0; i < n; i++) {
		static uint8_t env[70000];
		size_t en = envelope_of(v[i].session_id, v[i].session_id_len,
					(uint64_t)i + 1 + (dtls ? 100000 : 0),
					v[i].wire, v[i].wire_len, env, sizeof(env));
		cc_answer a;

		fu_clear(fu);
		if (en == 0 || cc_post(c, "u", env, en, 10000, &a, err, sizeof(err)) != 0) {
			if (bad++ < 5)
				fprintf(stderr, "\n%s line %d: %s\n", file, v[i].line,
					en ? err : "no envelope");
			continue;
		}
		if (a.code != 204 || result_status(a.payload, a.len) != 200 ||
		    fu_count(fu) != 1 ||
		    !upstream_is(0, v[i].path, v[i].wire, v[i].wire_len)) {
			if (bad++ < 5)
				fprintf(stderr, "\n%s line %d: code %d, %zu upstream\n",
					file, v[i].line, a.code, fu_count(fu));
		}
		cc_answer_free(&a);
	}
	CU_ASSERT_EQUAL(bad, 0);
	cc_close(c);
	tu_vectors_free(v, n);
}

static void every_vector_arrives_byte_identical_over_coap(void)
{
	vectors_over("typical.jsonl", false);
	vectors_over("sdk_wire.jsonl", false);
}

static void every_vector_arrives_byte_identical_over_dtls(void)
{
	vectors_over("typical.jsonl", true);
	vectors_over("sdk_wire.jsonl", true);
}

/* ==== Debian's coap-client ==== */

/* Runs coap-client with args (NULL-terminated); its output into *out (the
 * caller frees tu_proc); the exit status. */
static int coap_client(tu_proc *p, const char *const *args, double wait_s)
{
	static const char *const env[] = { "PATH=/usr/bin:/bin", NULL };

	if (tu_proc_spawn(p, COAP_CLIENT, args, env) != 0)
		return -1;
	return tu_proc_reap(p, wait_s);
}

static void coap_client_delivers_vectors_over_udp_and_dtls(void)
{
	const char *files[] = { "typical.jsonl", "sdk_wire.jsonl" };
	char path[128], url[64];
	int f, i, t, bad = 0, done = 0;

	snprintf(path, sizeof(path), "/tmp/sw-coap-env-%d", (int)getpid());
	for (f = 0; f < 2; f++) {
		tu_vector *v = NULL;
		int n = tu_vectors_load(files[f], &v);

		CU_ASSERT_FATAL(n > 0);
		for (i = 0; i < n && i < 20; i++) {
			static uint8_t env[70000];
			size_t en = envelope_of(v[i].session_id, v[i].session_id_len,
						(uint64_t)i + 500 + f * 100,
						v[i].wire, v[i].wire_len, env,
						sizeof(env));
			FILE *o = fopen(path, "wb");

			CU_ASSERT_FATAL(o != NULL && en > 0);
			fwrite(env, 1, en, o);
			fclose(o);
			for (t = 0; t < 2; t++) {
				const char *plain[] = { "-m", "post", "-f", path,
							"-B", "10", url, NULL };
				const char *dtls[] = { "-m", "post", "-f", path,
						       "-u", "dev-tok", "-k",
						       DEV_TOKEN, "-B", "10", url,
						       NULL };
				tu_proc p;
				int st;

				snprintf(url, sizeof(url), "%s://127.0.0.1:%u/u",
					 t ? "coaps" : "coap",
					 (unsigned)(t ? dtls_port : plain_port));
				fu_clear(fu);
				st = coap_client(&p, t ? dtls : plain, 15);
				/* its stdout: the Result (then a newline) */
				if (st != 0 || p.log_len < 3 ||
				    result_status((const uint8_t *)p.log, 3) != 200 ||
				    fu_count(fu) != 1 ||
				    !upstream_is(0, v[i].path, v[i].wire, v[i].wire_len)) {
					if (bad++ < 5)
						fprintf(stderr, "\ncoap-client %s line %d: exit %d, %zu upstream: %.200s\n",
							t ? "coaps" : "coap", v[i].line,
							st, fu_count(fu), p.log);
				}
				done++;
				tu_proc_free(&p);
			}
		}
		tu_vectors_free(v, n);
	}
	unlink(path);
	CU_ASSERT_EQUAL(done, 80);
	CU_ASSERT_EQUAL(bad, 0);
}

static void wrong_key_or_unknown_identity_gets_no_session(void)
{
	char err[256] = "", path[128], url[64];
	static const uint8_t wrong[16] = { 1, 2, 3 };
	cc_conn *c;
	uint8_t env[128];
	size_t en = small_env(1, 1, env, sizeof(env));
	FILE *o;

	fu_clear(fu);
	/* an unknown identity: refused in the handshake at once */
	c = open_dtls(dtls_port, "nobody", psk, sizeof(psk), err, sizeof(err));
	CU_ASSERT_PTR_NULL(c);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "handshake"));
	/* a sha256: device cannot have a session */
	c = open_dtls(dtls_port, "dev-hash", psk, sizeof(psk), err, sizeof(err));
	CU_ASSERT_PTR_NULL(c);
	/* a wrong key: DTLS drops the Finished it cannot verify */
	c = open_dtls(dtls_port, "dev-psk", wrong, sizeof(wrong), err, sizeof(err));
	CU_ASSERT_PTR_NULL(c);
	cc_close(c);
	/* the same with Debian's coap-client */
	snprintf(path, sizeof(path), "/tmp/sw-coap-env-%d", (int)getpid());
	o = fopen(path, "wb");
	CU_ASSERT_PTR_NOT_NULL_FATAL(o);
	fwrite(env, 1, en, o);
	fclose(o);
	snprintf(url, sizeof(url), "coaps://127.0.0.1:%u/u", dtls_port);
	{
		const char *args[] = { "-m", "post", "-f", path, "-u", "dev-tok",
				       "-k", "not-the-token", "-B", "2", url, NULL };
		tu_proc p;

		coap_client(&p, args, 10);
		/* no answer: no Result on its output */
		CU_ASSERT_TRUE(p.log_len < 3 ||
			       result_status((const uint8_t *)p.log, 3) != 200);
		tu_proc_free(&p);
	}
	unlink(path);
	CU_ASSERT_EQUAL(fu_count(fu), 0);
}

/* ==== Exactly once ==== */

static void retransmitted_message_reaches_the_api_once(void)
{
	cc_conn *c = open_plain();
	uint8_t env[128], req[256], buf[1500], first[64];
	size_t en = small_env(41, 41, env, sizeof(env)), rn, fl = 0;
	uint16_t mid;
	cc_msg m;
	int i;

	CU_ASSERT_PTR_NOT_NULL_FATAL(c);
	fu_clear(fu);
	mid = cc_next_mid(c);
	rn = req_msg(req, sizeof(req), CC_CON, CC_POST, mid, 0x41, "u", NULL,
		     env, en);
	/* three copies at once: one answer (the copies that came while it
	 * was worked on get none: the device's next retransmission does) */
	for (i = 0; i < 3; i++)
		CU_ASSERT_EQUAL(cc_send_raw(c, req, rn), 0);
	CU_ASSERT_TRUE_FATAL(recv_for(c, mid, 0x41, buf, sizeof(buf), &m, 2000));
	CU_ASSERT_EQUAL(m.type, CC_ACK);
	CU_ASSERT_EQUAL(m.code, 204);
	fl = m.len;
	memcpy(first, m.payload, m.len);
	/* the copies: nothing while it was worked on, the same answer if
	 * they came after it */
	for (i = 0; i < 3 && recv_for(c, mid, 0x41, buf, sizeof(buf), &m, 300); i++)
		CU_ASSERT_TRUE(m.len == fl && !memcmp(first, m.payload, fl));
	CU_ASSERT_TRUE(i <= 2);
	/* retransmissions after the answer: the first answer again */
	for (i = 0; i < 2; i++) {
		cc_send_raw(c, req, rn);
		CU_ASSERT_TRUE_FATAL(recv_for(c, mid, 0x41, buf, sizeof(buf), &m, 2000));
		CU_ASSERT_TRUE(m.type == CC_ACK && m.code == 204);
		CU_ASSERT_TRUE(m.len == fl && !memcmp(first, m.payload, fl));
	}
	tu_sleep_ms(100);
	CU_ASSERT_EQUAL(fu_count(fu), 1);
	cc_close(c);
}

static void resent_envelope_gets_the_first_answer(void)
{
	cc_conn *c = open_plain();
	uint8_t env[128];
	size_t en = small_env(42, 42, env, sizeof(env));
	char err[256];
	cc_answer a, b;

	CU_ASSERT_PTR_NOT_NULL_FATAL(c);
	fu_clear(fu);
	CU_ASSERT_EQUAL_FATAL(cc_post(c, "u", env, en, 5000, &a, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(cc_post(c, "u", env, en, 5000, &b, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(a.code, 204);
	CU_ASSERT_EQUAL(b.code, 204);
	CU_ASSERT_TRUE(a.len == b.len && !memcmp(a.payload, b.payload, a.len));
	CU_ASSERT_EQUAL(fu_count(fu), 1);
	cc_answer_free(&a);
	cc_answer_free(&b);
	/* another connection (a new source port), the same device: still once */
	cc_close(c);
	c = open_plain();
	CU_ASSERT_EQUAL(cc_post(c, "u", env, en, 5000, &a, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(a.code, 204);
	cc_answer_free(&a);
	CU_ASSERT_EQUAL(fu_count(fu), 1);
	/* the same seq with another update is a new update */
	en = small_env(42, 43, env, sizeof(env));
	CU_ASSERT_EQUAL(cc_post(c, "u", env, en, 5000, &a, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(a.code, 204);
	cc_answer_free(&a);
	CU_ASSERT_EQUAL(fu_count(fu), 2);
	cc_close(c);
}

static void slow_api_gets_an_empty_ack_then_a_separate_response(void)
{
	static const fu_step slow = { FU_DELAY, 0, NULL, NULL, 2500 };
	cc_conn *c = open_plain(), *c2 = open_plain();
	uint8_t env[128], req[256], buf[1500];
	size_t en = small_env(43, 43, env, sizeof(env)), rn;
	uint16_t mid;
	double t0;
	cc_msg m;
	char err[256];
	cc_answer a;

	CU_ASSERT_PTR_NOT_NULL_FATAL(c);
	CU_ASSERT_PTR_NOT_NULL_FATAL(c2);
	fu_clear(fu);
	fu_script(fu, &slow, 1);
	mid = cc_next_mid(c);
	rn = req_msg(req, sizeof(req), CC_CON, CC_POST, mid, 0x43, "u", NULL,
		     env, en);
	t0 = tu_mono();
	CU_ASSERT_EQUAL(cc_send_raw(c, req, rn), 0);
	/* an empty ACK within about a second, before the device's 2 s */
	CU_ASSERT_TRUE_FATAL(recv_for(c, mid, 0x43, buf, sizeof(buf), &m, 1900));
	CU_ASSERT_EQUAL(m.type, CC_ACK);
	CU_ASSERT_EQUAL(m.code, 0);
	CU_ASSERT_EQUAL(m.token_len, 0);
	CU_ASSERT_TRUE(tu_mono() - t0 < 1.8);
	/* a retransmission now gets the empty ACK again */
	cc_send_raw(c, req, rn);
	CU_ASSERT_TRUE(recv_for(c, mid, 0x43, buf, sizeof(buf), &m, 1000));
	CU_ASSERT_TRUE(m.type == CC_ACK && m.code == 0);
	/* the same envelope from another port meanwhile joins the work */
	CU_ASSERT_EQUAL(cc_post(c2, "u", env, en, 5000, &a, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(a.code, 204);
	cc_answer_free(&a);
	/* then the answer: a confirmable response with the token */
	CU_ASSERT_TRUE_FATAL(recv_for(c, 0, 0x43, buf, sizeof(buf), &m, 4000));
	CU_ASSERT_EQUAL(m.type, CC_CON);
	CU_ASSERT_EQUAL(m.code, 204);
	CU_ASSERT_EQUAL(result_status(m.payload, m.len), 200);
	{
		uint8_t ack[4];
		size_t an = cc_build(ack, sizeof(ack), CC_ACK, 0, m.mid, NULL, 0,
				     NULL, 0, NULL, 0);

		cc_send_raw(c, ack, an);
	}
	CU_ASSERT_EQUAL(fu_count(fu), 1);
	cc_close(c);
	cc_close(c2);
}

/* ==== Codes ==== */

static void api_answers_become_codes(void)
{
	static const fu_step not_found = { FU_STATUS, 404, "{\"message\":\"Session not found\"}", NULL, 0 };
	fu_step busy[8];
	char err[256];
	/* over DTLS: answers are not bounded by the request's size */
	cc_conn *c = open_dtls(dtls_port, "dev-psk", psk, sizeof(psk), err,
			       sizeof(err));
	uint8_t env[128];
	size_t en, i;
	cc_answer a;
	sw_error_msg em;
	sw_result r;

	CU_ASSERT_PTR_NOT_NULL_FATAL(c);
	fu_clear(fu);
	fu_script(fu, &not_found, 1);
	en = small_env(44, 44, env, sizeof(env));
	CU_ASSERT_EQUAL_FATAL(cc_post(c, "u", env, en, 5000, &a, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(a.code, 404);
	CU_ASSERT_EQUAL(sw_error_msg_decode(a.payload, a.len, &em, NULL), SW_OK);
	CU_ASSERT_EQUAL(em.status, 404);
	CU_ASSERT_TRUE(em.message.len == 17 && !memcmp(em.message.ptr, "Session not found", 17));
	cc_answer_free(&a);
	/* 503 on every attempt: 5.03 with Max-Age; sent again: tried again */
	for (i = 0; i < 8; i++)
		busy[i] = (fu_step){ FU_STATUS, 503, NULL, "2", 0 };
	fu_clear(fu);
	fu_script(fu, busy, cfg.max_attempts);
	en = small_env(45, 45, env, sizeof(env));
	CU_ASSERT_EQUAL_FATAL(cc_post(c, "u", env, en, 10000, &a, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(a.code, 503);
	CU_ASSERT_EQUAL(a.max_age, 2);
	CU_ASSERT_EQUAL(sw_result_decode(a.payload, a.len, &r, NULL), SW_OK);
	CU_ASSERT_EQUAL(r.status, 503);
	CU_ASSERT_TRUE(r.has_retry_after && r.retry_after_ms == 2000);
	cc_answer_free(&a);
	CU_ASSERT_EQUAL(fu_count(fu), cfg.max_attempts);
	CU_ASSERT_EQUAL_FATAL(cc_post(c, "u", env, en, 5000, &a, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(a.code, 204);
	cc_answer_free(&a);
	CU_ASSERT_EQUAL(fu_count(fu), cfg.max_attempts + 1);
	cc_close(c);
}

static void refusals_have_codes_and_errors(void)
{
	static const uint8_t cf_json[] = { 50 }, cf_octets[] = { 42 };
	static const uint8_t garbage[] = { 0xff, 0xff, 0xff };
	static const struct {
		const char *name;
		int type, code;
		const char *seg;
		cc_opt extra;
		bool with_env;
		int want;
		bool error_payload;
	} t[] = {
		{ "unknown path", CC_CON, CC_POST, "x", { 0, NULL, 0 }, true, 404, true },
		{ "no path", CC_CON, CC_POST, NULL, { 0, NULL, 0 }, true, 404, true },
		{ "GET", CC_CON, 1, "u", { 0, NULL, 0 }, false, 405, true },
		{ "DELETE", CC_CON, 4, "b", { 0, NULL, 0 }, false, 405, true },
		{ "If-Match", CC_CON, CC_POST, "u", { 1, (const uint8_t *)"e", 1 }, true, 402, true },
		/* unknown to libcoap itself: its own 4.02 */
		{ "option 2049", CC_CON, CC_POST, "u", { 2049, (const uint8_t *)"x", 1 }, true, 402, false },
		{ "Content-Format json", CC_CON, CC_POST, "u", { 12, cf_json, 1 }, true, 415, true },
		{ "Content-Format 42", CC_CON, CC_POST, "u", { 12, cf_octets, 1 }, true, 204, false },
		{ "Accept json", CC_CON, CC_POST, "u", { 17, cf_json, 1 }, true, 406, true },
		{ "garbage", CC_CON, CC_POST, "u", { 0, NULL, 0 }, false, 400, true },
		{ "empty", CC_CON, CC_POST, "u", { 0, NULL, 0 }, false, 400, true },
		{ "NON", CC_NON, CC_POST, "u", { 0, NULL, 0 }, true, 204, false },
	};
	uint8_t env[128], req[512], buf[1500];
	size_t en, i, rn;
	char err[256];
	cc_msg m;
	int k;

	for (k = 0; k < 2; k++) {
	/* plain CoAP, then DTLS */
	cc_conn *c = k ? open_dtls(dtls_port, "dev-psk", psk, sizeof(psk), err,
				   sizeof(err))
		       : open_plain();

	CU_ASSERT_PTR_NOT_NULL_FATAL(c);
	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		uint16_t mid = cc_next_mid(c);
		uint8_t tok = (uint8_t)(0x80 + i);
		const uint8_t *p = NULL;
		size_t pn = 0;
		long n;

		en = small_env(1000 + i + (size_t)k * 100, (int)i, env, sizeof(env));
		if (t[i].with_env) {
			p = env;
			pn = en;
		} else if (!strcmp(t[i].name, "garbage")) {
			p = garbage;
			pn = sizeof(garbage);
		}
		rn = req_msg(req, sizeof(req), t[i].type, t[i].code, mid, tok,
			     t[i].seg, t[i].extra.num ? &t[i].extra : NULL, p, pn);
		CU_ASSERT_EQUAL_FATAL(cc_send_raw(c, req, rn), 0);
		if (!recv_for(c, mid, tok, buf, sizeof(buf), &m, 3000)) {
			fprintf(stderr, "\n%s: no answer\n", t[i].name);
			CU_FAIL("no answer");
			continue;
		}
		n = (long)(m.payload ? (size_t)(m.payload - buf) + m.len : 4 + m.token_len);
		if (m.code != t[i].want)
			fprintf(stderr, "\n%s: %d, want %d\n", t[i].name, m.code, t[i].want);
		CU_ASSERT_EQUAL(m.code, t[i].want);
		CU_ASSERT_EQUAL(m.type, t[i].type == CC_CON ? CC_ACK : CC_NON);
		/* plain CoAP: never a larger answer than the request (no
		 * amplification for a spoofed source) */
		if (k == 0)
			CU_ASSERT_TRUE(n <= (long)rn);
		if (t[i].error_payload && (k == 1 || m.len > 0)) {
			sw_error_msg em;

			CU_ASSERT_EQUAL(sw_error_msg_decode(m.payload, m.len, &em, NULL), SW_OK);
			CU_ASSERT_EQUAL(em.status, (uint32_t)t[i].want);
			CU_ASSERT_TRUE(em.code.len > 0);
			if (k == 1)
				CU_ASSERT_TRUE(em.message.len > 10);
		}
	}
	cc_close(c);
	}
}

/* ==== Batches ==== */

/* A Batch of n updates of SID from seq, as session-codec makes them. */
static size_t batch_of(uint64_t seq, size_t n, int d0, uint8_t *out,
		       size_t cap)
{
	size_t len = 0, i;

	for (i = 0; i < n; i++) {
		uint8_t env[128];
		size_t en = small_env(seq + i, d0 + (int)i, env, sizeof(env));

		if (en == 0 || sw_batch_append(env, en, out, cap, &len, NULL) != SW_OK)
			return 0;
	}
	return len;
}

static void block1_batch_is_put_together_and_acked(void)
{
	static uint8_t body[8192];
	size_t n = batch_of(2000, 40, 7000, body, sizeof(body)), got = 0, i;
	cc_conn *c = open_plain();
	sw_result r[64];
	char err[256];
	cc_answer a;
	int bad = 0;

	CU_ASSERT_PTR_NOT_NULL_FATAL(c);
	CU_ASSERT_FATAL(n > 1024);
	fu_clear(fu);
	CU_ASSERT_EQUAL_FATAL(cc_post(c, "b", body, n, 10000, &a, err, sizeof(err)), 0);
	CU_ASSERT_TRUE(a.blocks > 1);
	CU_ASSERT_EQUAL(a.code, 204);
	CU_ASSERT_EQUAL(sw_ack_decode(a.payload, a.len, r, 64, &got, NULL), SW_OK);
	CU_ASSERT_EQUAL(got, 40);
	for (i = 0; i < got; i++)
		if (r[i].seq != 2000 + i || r[i].status != 200)
			bad++;
	CU_ASSERT_EQUAL(bad, 0);
	CU_ASSERT_EQUAL(fu_count(fu), 40);
	cc_answer_free(&a);
	/* the same batch again: answered from what was sent, nothing twice */
	CU_ASSERT_EQUAL_FATAL(cc_post(c, "b", body, n, 10000, &a, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(sw_ack_decode(a.payload, a.len, r, 64, &got, NULL), SW_OK);
	CU_ASSERT_EQUAL(got, 40);
	for (i = 0, bad = 0; i < got; i++)
		if (r[i].seq != 2000 + i || r[i].status != 200)
			bad++;
	CU_ASSERT_EQUAL(bad, 0);
	CU_ASSERT_EQUAL(fu_count(fu), 40);
	cc_answer_free(&a);
	/* one envelope of it over /u: the first answer too */
	{
		uint8_t env[128];
		size_t en = small_env(2005, 7005, env, sizeof(env));

		CU_ASSERT_EQUAL(cc_post(c, "u", env, en, 5000, &a, err, sizeof(err)), 0);
		CU_ASSERT_EQUAL(a.code, 204);
		cc_answer_free(&a);
		CU_ASSERT_EQUAL(fu_count(fu), 40);
	}
	/* 41 items: 4.13 */
	n = batch_of(3000, 41, 0, body, sizeof(body));
	CU_ASSERT_EQUAL(cc_post(c, "b", body, n, 10000, &a, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(a.code, 413);
	cc_answer_free(&a);
	cc_close(c);
}

static void blocks_out_of_order_or_too_big_are_refused(void)
{
	cc_conn *c = open_plain();
	uint8_t req[1400], buf[1500], data[1024], v[3];
	uint16_t mid;
	cc_opt o;
	cc_msg m;
	size_t rn;

	CU_ASSERT_PTR_NOT_NULL_FATAL(c);
	memset(data, 0x0a, sizeof(data));
	/* block 2 first: 4.08 */
	v[0] = 2 << 4 | 8 | 6;
	o = (cc_opt){ 27, v, 1 };
	mid = cc_next_mid(c);
	rn = req_msg(req, sizeof(req), CC_CON, CC_POST, mid, 1, "b", &o, data, 1024);
	cc_send_raw(c, req, rn);
	CU_ASSERT_TRUE_FATAL(recv_for(c, mid, 1, buf, sizeof(buf), &m, 2000));
	CU_ASSERT_EQUAL(m.code, 408);
	/* Size1 over --max-body: 4.13 and the limit in Size1 */
	{
		uint8_t s1[3] = { 0x02, 0x00, 0x00 }; /* 131072 */
		uint8_t b0[1] = { 8 | 6 };            /* block 0, more, 1024 */
		cc_opt three[3] = { { 11, (const uint8_t *)"b", 1 },
				    { 27, b0, 1 }, { 60, s1, 3 } };
		uint8_t tok = 2;

		mid = cc_next_mid(c);
		rn = cc_build(req, sizeof(req), CC_CON, CC_POST, mid, &tok, 1,
			      three, 3, data, 1024);
		cc_send_raw(c, req, rn);
		CU_ASSERT_TRUE_FATAL(recv_for(c, mid, 2, buf, sizeof(buf), &m, 2000));
		CU_ASSERT_EQUAL(m.code, 413);
		CU_ASSERT_EQUAL(m.size1, 65536);
	}
	cc_close(c);
}

/* ==== Hostile input ==== */

static void malformed_datagrams_change_nothing(void)
{
	static const uint8_t bad[][24] = {
		{ 0x00 },                                   /* 1 byte */
		{ 0x40, 0x02 },                             /* cut header */
		{ 0x4f, 0x02, 0x00, 0x01 },                 /* token length 15 */
		{ 0x49, 0x02, 0x00, 0x02, 1, 2 },           /* token cut */
		{ 0x80, 0x02, 0x00, 0x03 },                 /* version 2 */
		{ 0x40, 0x02, 0x00, 0x04, 0xf0 },           /* option delta 15 */
		{ 0x40, 0x02, 0x00, 0x05, 0xbf, 'u' },      /* length 15 */
		{ 0x40, 0x02, 0x00, 0x06, 0xb1, 'u', 0xff }, /* marker, no payload */
		{ 0x40, 0x02, 0x00, 0x07, 0xde, 0xff, 0xff }, /* huge delta */
		{ 0x40, 0x45, 0x00, 0x08 },                 /* a response (2.05) */
		{ 0x60, 0x00, 0x00, 0x09 },                 /* a stray ACK */
		{ 0x70, 0x00, 0x00, 0x0a },                 /* a stray RST */
		{ 0x40, 0x00, 0x00, 0x0b },                 /* CoAP ping */
		{ 0x40, 0xe0, 0x00, 0x0c, 0xb1, 'u' },      /* code 7.00 */
	};
	static const size_t lens[] = { 1, 2, 4, 6, 4, 5, 6, 7, 7, 4, 4, 4, 4, 6 };
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in a;
	uint8_t junk[1400];
	unsigned seed = 12345;
	size_t i, k;
	char err[256];
	cc_answer ans;
	uint8_t env[128];
	size_t en = small_env(46, 46, env, sizeof(env));
	cc_conn *c;

	CU_ASSERT_FATAL(fd >= 0);
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	for (k = 0; k < 2; k++) {
		a.sin_port = htons(k ? dtls_port : plain_port);
		for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++)
			sendto(fd, bad[i], lens[i], 0, (struct sockaddr *)&a, sizeof(a));
		/* random bytes, and random bytes after a valid header */
		for (i = 0; i < 300; i++) {
			size_t n = 1 + (size_t)rand_r(&seed) % sizeof(junk), j;

			for (j = 0; j < n; j++)
				junk[j] = (uint8_t)rand_r(&seed);
			if (i % 2) {
				junk[0] = (uint8_t)(0x40 | (junk[0] & 0x3f));
				junk[1] = 0x02;
			}
			if (k && i % 3 == 0) {
				junk[0] = 22;  /* a DTLS handshake record of junk */
				junk[1] = 0xfe;
				junk[2] = 0xfd;
			}
			sendto(fd, junk, n, 0, (struct sockaddr *)&a, sizeof(a));
		}
	}
	close(fd);
	tu_sleep_ms(200);
	/* still answering on both */
	c = open_plain();
	CU_ASSERT_PTR_NOT_NULL_FATAL(c);
	CU_ASSERT_EQUAL(cc_post(c, "u", env, en, 5000, &ans, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(ans.code, 204);
	cc_answer_free(&ans);
	cc_close(c);
	c = open_dtls(dtls_port, "dev-psk", psk, sizeof(psk), err, sizeof(err));
	CU_ASSERT_PTR_NOT_NULL_FATAL(c);
	CU_ASSERT_EQUAL(cc_post(c, "u", env, en, 5000, &ans, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(ans.code, 204);
	cc_answer_free(&ans);
	cc_close(c);
}

/* A DTLS 1.2 ClientHello (no cookie yet), made by OpenSSL into out. */
static size_t client_hello(uint8_t *out, size_t cap)
{
	SSL_CTX *ctx = SSL_CTX_new(DTLS_client_method());
	SSL *s = ctx ? SSL_new(ctx) : NULL;
	BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
	int n = 0;

	if (s == NULL || rb == NULL || wb == NULL) {
		BIO_free(rb);
		BIO_free(wb);
		SSL_free(s);
		SSL_CTX_free(ctx);
		return 0;
	}
	SSL_set_options(s, SSL_OP_NO_QUERY_MTU);
	DTLS_set_link_mtu(s, 1400);
	SSL_set_max_proto_version(s, DTLS1_2_VERSION);
	SSL_set_bio(s, rb, wb);
	SSL_connect(s);
	n = BIO_read(wb, out, (int)cap);
	SSL_free(s);
	SSL_CTX_free(ctx);
	return n > 0 ? (size_t)n : 0;
}

static void handshake_flood_gets_cookies_and_no_state(void)
{
	uint8_t hello[1400], buf[1500];
	size_t hn = client_hello(hello, sizeof(hello));
	struct sockaddr_in a;
	int fds[300], i, verify = 0;
	char err[256];
	cc_conn *c;

	CU_ASSERT_FATAL(hn > 13 && hello[0] == 22);
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a.sin_port = htons(dtls_port);
	/* 300 ClientHellos from 300 ports (a flood of spoofed sources looks
	 * like this): each gets a HelloVerifyRequest, a cookie to send back */
	for (i = 0; i < 300; i++) {
		fds[i] = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
		CU_ASSERT_FATAL(fds[i] >= 0);
		sendto(fds[i], hello, hn, 0, (struct sockaddr *)&a, sizeof(a));
		if (i % 50 == 49)
			tu_sleep_ms(30); /* within the gateway's socket buffer */
	}
	tu_sleep_ms(300);
	for (i = 0; i < 300; i++) {
		ssize_t n = recv(fds[i], buf, sizeof(buf), 0);

		/* record type handshake, message hello_verify_request (3) */
		if (n > 13 && buf[0] == 22 && buf[13] == 3)
			verify++;
		close(fds[i]);
	}
	if (verify < 290)
		fprintf(stderr, "\n%d of 300 ClientHellos got a HelloVerifyRequest\n", verify);
	CU_ASSERT_TRUE(verify >= 290); /* UDP on loopback: maybe a few lost */
	/* a real device still gets its session at once */
	c = open_dtls(dtls_port, "dev-psk", psk, sizeof(psk), err, sizeof(err));
	if (c == NULL)
		fprintf(stderr, "\nafter the flood: %s\n", err);
	CU_ASSERT_PTR_NOT_NULL(c);
	cc_close(c);
}

/* ==== Device identity on reload ==== */

static void reload_revokes_a_device_on_its_session(void)
{
	char err[256];
	cc_conn *c = open_dtls(dtls_port, "dev-psk", psk, sizeof(psk), err,
			       sizeof(err));
	uint8_t env[128];
	size_t en = small_env(47, 47, env, sizeof(env));
	cc_answer a;
	gw_tokens *t;

	CU_ASSERT_PTR_NOT_NULL_FATAL(c);
	CU_ASSERT_EQUAL(cc_post(c, "u", env, en, 5000, &a, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(a.code, 204);
	cc_answer_free(&a);
	/* dev-psk gets another key */
	t = tokens_load("dev-tok " DEV_TOKEN "\ndev-psk psk:ffff\n");
	CU_ASSERT_PTR_NOT_NULL_FATAL(t);
	gw_server_set_tokens(srv, t);
	tu_sleep_ms(100);
	en = small_env(48, 48, env, sizeof(env));
	CU_ASSERT_EQUAL(cc_post(c, "u", env, en, 5000, &a, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(a.code, 401);
	cc_answer_free(&a);
	cc_close(c);
	/* the old key gets no new session either; back to the first set */
	c = open_dtls(dtls_port, "dev-psk", psk, sizeof(psk), err, sizeof(err));
	CU_ASSERT_PTR_NULL(c);
	cc_close(c);
	t = tokens_load(tokens_text);
	CU_ASSERT_PTR_NOT_NULL_FATAL(t);
	gw_server_set_tokens(srv, t);
	tu_sleep_ms(100);
}

/* ==== Overload, spool, stop: servers of their own ==== */

static void overload_limits_one_source(void)
{
	static fu_step slow[8];
	gw_config c;
	gw_server *s;
	uint16_t pp = 0, dp = 0;
	cc_conn *cl;
	uint8_t env[128], req[256], buf[1500];
	int i, got = 0, busy = 0;

	for (i = 0; i < 8; i++)
		slow[i] = (fu_step){ FU_DELAY, 0, NULL, NULL, 800 };
	coap_cfg(&c);
	c.coaps_on = false;
	c.max_concurrent = 8;
	c.coap_source_rate = 2;
	s = start(&c, NULL, &pp, &dp);
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	fu_clear(fu);
	fu_script(fu, slow, 8);
	{
		char url[64], err[256];

		snprintf(url, sizeof(url), "coap://127.0.0.1:%u", pp);
		cl = cc_open(url, NULL, NULL, 0, err, sizeof(err));
	}
	CU_ASSERT_PTR_NOT_NULL_FATAL(cl);
	/* 12 updates at once from one source: over half of 8 in flight, a
	 * rate of 2 per second, then the cap itself */
	for (i = 0; i < 12; i++) {
		size_t en = small_env(5000 + (uint64_t)i, i, env, sizeof(env));
		size_t rn = req_msg(req, sizeof(req), CC_CON, CC_POST,
				    (uint16_t)(100 + i), (uint8_t)i, "u", NULL,
				    env, en);

		cc_send_raw(cl, req, rn);
	}
	while (got < 12) {
		cc_msg m;
		long n = cc_recv_raw(cl, buf, sizeof(buf), 4000);

		if (n <= 0 || cc_parse(buf, (size_t)n, &m) != 0)
			break;
		if (m.type == CC_CON) {
			uint8_t ack[4];

			cc_send_raw(cl, ack, cc_build(ack, 4, CC_ACK, 0, m.mid,
						      NULL, 0, NULL, 0, NULL, 0));
		}
		if (m.code == 0)
			continue; /* an empty ACK: the answer follows */
		got++;
		if (m.code == 503)
			busy++;
	}
	CU_ASSERT_EQUAL(got, 12);
	CU_ASSERT_TRUE(busy >= 4);
	CU_ASSERT_TRUE(fu_count(fu) <= 8);
	cc_close(cl);
	gw_server_stop(s);
}

static void spool_mode_answers_once_committed(void)
{
	char dir[] = "/tmp/sw-coap-spool-XXXXXX", err[256] = "";
	gw_config c;
	gw_spool *sp;
	gw_server *s;
	uint16_t pp = 0, dp = 0;
	cc_conn *cl;
	uint8_t env[128];
	size_t en = small_env(60, 60, env, sizeof(env));
	cc_answer a;

	CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
	coap_cfg(&c);
	c.coaps_on = false;
	snprintf(c.spool_dir, sizeof(c.spool_dir), "%s", dir);
	sp = gw_spool_open(&c, err, sizeof(err));
	CU_ASSERT_PTR_NOT_NULL_FATAL(sp);
	s = start(&c, gw_spool_store(sp), &pp, &dp);
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	fu_clear(fu);
	{
		char url[64];

		snprintf(url, sizeof(url), "coap://127.0.0.1:%u", pp);
		cl = cc_open(url, NULL, NULL, 0, err, sizeof(err));
	}
	CU_ASSERT_PTR_NOT_NULL_FATAL(cl);
	CU_ASSERT_EQUAL(cc_post(cl, "u", env, en, 5000, &a, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(a.code, 204);
	CU_ASSERT_FALSE(a.separate); /* piggybacked once committed */
	CU_ASSERT_EQUAL(result_status(a.payload, a.len), 202);
	cc_answer_free(&a);
	/* sent again: not stored again */
	CU_ASSERT_EQUAL(cc_post(cl, "u", env, en, 5000, &a, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(result_status(a.payload, a.len), 202);
	cc_answer_free(&a);
	CU_ASSERT_EQUAL(fu_wait_count(fu, 1, 5), 1);
	tu_sleep_ms(200);
	CU_ASSERT_EQUAL(fu_count(fu), 1);
	cc_close(cl);
	gw_server_stop(s);
	gw_spool_close(sp);
	CU_ASSERT_EQUAL(tu_rmrf(dir), 0);
}

typedef struct stopper {
	gw_server *s;
	double delay;
} stopper;

static void *stop_later(void *arg)
{
	stopper *st = arg;

	tu_sleep_ms((long)(st->delay * 1000));
	gw_server_stop(st->s);
	return NULL;
}

static void stop_answers_what_is_in_flight(void)
{
	static const fu_step slow = { FU_DELAY, 0, NULL, NULL, 600 };
	gw_config c;
	uint16_t pp = 0, dp = 0;
	stopper st;
	pthread_t th;
	cc_conn *cl;
	uint8_t env[128];
	size_t en = small_env(70, 70, env, sizeof(env));
	char url[64], err[256];
	cc_answer a;

	coap_cfg(&c);
	c.coaps_on = false;
	st.s = start(&c, NULL, &pp, &dp);
	st.delay = 0.2;
	CU_ASSERT_PTR_NOT_NULL_FATAL(st.s);
	fu_clear(fu);
	fu_script(fu, &slow, 1);
	snprintf(url, sizeof(url), "coap://127.0.0.1:%u", pp);
	cl = cc_open(url, NULL, NULL, 0, err, sizeof(err));
	CU_ASSERT_PTR_NOT_NULL_FATAL(cl);
	CU_ASSERT_EQUAL_FATAL(pthread_create(&th, NULL, stop_later, &st), 0);
	CU_ASSERT_EQUAL(cc_post(cl, "u", env, en, 3000, &a, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(a.code, 204);
	cc_answer_free(&a);
	pthread_join(th, NULL);
	CU_ASSERT_EQUAL(fu_count(fu), 1);
	cc_close(cl);
}

/* ==== Programs: session-codec send --coap, the device example ==== */

static void session_codec_sends_over_coap_and_dtls(void)
{
	static const char *const env[] = { NULL };
	char url[64], urls[64], jl[128], line[512];
	tu_proc p;
	FILE *f;
	int i;

	snprintf(url, sizeof(url), "coap://127.0.0.1:%u", plain_port);
	snprintf(urls, sizeof(urls), "coaps://127.0.0.1:%u", dtls_port);
	snprintf(jl, sizeof(jl), "/tmp/sw-coap-send-%d.jsonl", (int)getpid());
	f = fopen(jl, "w");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	for (i = 0; i < 3; i++) {
		snprintf(line, sizeof(line), "{\"duration\":%d,\"tags\":[\"a\"]}\n", 900 + i);
		fputs(line, f);
	}
	fclose(f);
	fu_clear(fu);
	{
		const char *args[] = { "send", "--coaps", NULL };

		/* a usage error */
		CU_ASSERT_EQUAL(tu_proc_spawn(&p, "session-codec", args, env), 0);
		CU_ASSERT_EQUAL(tu_proc_reap(&p, 10), 2);
		tu_proc_free(&p);
	}
	{
		const char *args[] = { "send", "--coap", urls, "--session", SID,
				       "--psk-identity", "dev-psk", "--psk-key",
				       DEV_PSK_HEX, "--seq", "800", "--batch", jl,
				       NULL };

		CU_ASSERT_EQUAL(tu_proc_spawn(&p, "session-codec", args, env), 0);
		CU_ASSERT_EQUAL(tu_proc_reap(&p, 20), 0);
		CU_ASSERT_PTR_NOT_NULL(strstr(p.log, "DTLS handshake ("));
		CU_ASSERT_PTR_NOT_NULL(strstr(p.log, "CoAP 2.04"));
		CU_ASSERT_PTR_NOT_NULL(strstr(p.log, "seq=802 status=200"));
		CU_ASSERT_PTR_NOT_NULL(strstr(p.log, "bytes on the wire: up = "));
		tu_proc_free(&p);
	}
	{
		/* one update per line over plain CoAP, from standard input */
		char bin[512], cmd[1024];
		const char *args[] = { "-c", cmd, NULL };

		tu_bin("session-codec", bin, sizeof(bin));
		snprintf(cmd, sizeof(cmd), "%s send --coap %s --session %s --seq 900 --lines < %s",
			 bin, url, SID, jl);
		CU_ASSERT_EQUAL(tu_proc_spawn(&p, "/bin/sh", args, env), 0);
		CU_ASSERT_EQUAL(tu_proc_reap(&p, 20), 0);
		CU_ASSERT_PTR_NOT_NULL(strstr(p.log, "seq 900: CoAP 2.04"));
		CU_ASSERT_PTR_NOT_NULL(strstr(p.log, "seq 902: CoAP 2.04"));
		CU_ASSERT_PTR_NOT_NULL(strstr(p.log, "bytes on the wire in all"));
		tu_proc_free(&p);
	}
	{
		/* a wrong key: no answer, exit 2 */
		const char *args[] = { "send", "--coap", urls, "--session", SID,
				       "--psk-identity", "dev-psk", "--psk-key",
				       "abcdef", "--batch", jl, NULL };

		CU_ASSERT_EQUAL(tu_proc_spawn(&p, "session-codec", args, env), 0);
		CU_ASSERT_EQUAL(tu_proc_reap(&p, 30), 2);
		CU_ASSERT_PTR_NOT_NULL(strstr(p.log, "DTLS handshake"));
		tu_proc_free(&p);
	}
	CU_ASSERT_EQUAL(fu_count(fu), 6);
	unlink(jl);
}

/* Runs the device example through a relay that loses drop_up/drop_down;
 * every update must be confirmed and reach the API exactly once. */
static void device_through(uint32_t drop_up, uint32_t drop_down,
			   uint64_t seq)
{
	static const char *const env[] = { NULL };
	tu_relay *r = tu_relay_start(dtls_port, drop_up, drop_down);
	char url[64], first[24];
	tu_proc p;
	int st;

	CU_ASSERT_PTR_NOT_NULL_FATAL(r);
	snprintf(url, sizeof(url), "coaps://127.0.0.1:%u", tu_relay_port(r));
	snprintf(first, sizeof(first), "%llu", (unsigned long long)seq);
	fu_clear(fu);
	{
		const char *args[] = { url, "dev-psk", DEV_PSK_HEX, SID, "4",
				       first, NULL };

		CU_ASSERT_EQUAL_FATAL(tu_proc_spawn(&p, "coap-device", args, env), 0);
	}
	st = tu_proc_reap(&p, 60);
	if (st != 0)
		fprintf(stderr, "\ncoap-device: exit %d: %s\n", st, p.log);
	CU_ASSERT_EQUAL(st, 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(p.log, "2.04 status=200"));
	CU_ASSERT_EQUAL(tu_relay_dropped(r), (unsigned)__builtin_popcount(drop_up) +
					      (unsigned)__builtin_popcount(drop_down));
	CU_ASSERT_EQUAL(fu_count(fu), 4);
	tu_proc_free(&p);
	tu_relay_stop(r);
}

static void device_example_resends_and_reaches_the_api_once(void)
{
	/* nothing lost; the first request lost (retransmitted: it arrives
	 * once); the first answer lost (the retransmission is a duplicate:
	 * answered from the table) */
	device_through(0, 0, 10000);
	device_through(1, 0, 20000);
	device_through(0, 1, 30000);
}

int init_coap_tests(void)
{
	CU_pSuite s = CU_add_suite("coap", suite_init, suite_clean);

	if (s == NULL)
		return -1;
	CU_add_test(s, "every_vector_arrives_byte_identical_over_coap", every_vector_arrives_byte_identical_over_coap);
	CU_add_test(s, "every_vector_arrives_byte_identical_over_dtls", every_vector_arrives_byte_identical_over_dtls);
	CU_add_test(s, "coap_client_delivers_vectors_over_udp_and_dtls", coap_client_delivers_vectors_over_udp_and_dtls);
	CU_add_test(s, "wrong_key_or_unknown_identity_gets_no_session", wrong_key_or_unknown_identity_gets_no_session);
	CU_add_test(s, "retransmitted_message_reaches_the_api_once", retransmitted_message_reaches_the_api_once);
	CU_add_test(s, "resent_envelope_gets_the_first_answer", resent_envelope_gets_the_first_answer);
	CU_add_test(s, "slow_api_gets_an_empty_ack_then_a_separate_response", slow_api_gets_an_empty_ack_then_a_separate_response);
	CU_add_test(s, "api_answers_become_codes", api_answers_become_codes);
	CU_add_test(s, "refusals_have_codes_and_errors", refusals_have_codes_and_errors);
	CU_add_test(s, "block1_batch_is_put_together_and_acked", block1_batch_is_put_together_and_acked);
	CU_add_test(s, "blocks_out_of_order_or_too_big_are_refused", blocks_out_of_order_or_too_big_are_refused);
	CU_add_test(s, "malformed_datagrams_change_nothing", malformed_datagrams_change_nothing);
	CU_add_test(s, "handshake_flood_gets_cookies_and_no_state", handshake_flood_gets_cookies_and_no_state);
	CU_add_test(s, "reload_revokes_a_device_on_its_session", reload_revokes_a_device_on_its_session);
	CU_add_test(s, "overload_limits_one_source", overload_limits_one_source);
	CU_add_test(s, "spool_mode_answers_once_committed", spool_mode_answers_once_committed);
	CU_add_test(s, "stop_answers_what_is_in_flight", stop_answers_what_is_in_flight);
	CU_add_test(s, "session_codec_sends_over_coap_and_dtls", session_codec_sends_over_coap_and_dtls);
	CU_add_test(s, "device_example_resends_and_reaches_the_api_once", device_example_resends_and_reaches_the_api_once);
	return 0;
}
