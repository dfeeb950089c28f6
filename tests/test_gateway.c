/* test_gateway.c - the gateway in-process (gw_server_start on 127.0.0.1,
 * port 0) in front of the fake upstream, driven by a libcurl client:
 * vectors end to end, both content types, protobuf replies, the batch
 * endpoint, device auth, every limit, upstream errors, metrics, secrets. */
#include <CUnit/CUnit.h>
#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "fake_upstream.h"
#include "gw.h"
#include "testutil.h"

static char org_key[] = "sk-org-SECRET-key-7f3a9c";
static const char tok_a[] = "tok-a-0123456789abcdef-plain";   /* dev-a, plain */
static const char tok_b[] = "tok-b-fedcba9876543210-hashed";  /* dev-b, sha256 */
static const char tok_c[] = "tok-c-reloaded-000000000000";    /* after reload */

static fake_upstream *fu;
static gw_config cfg;
static gw_upstream *up;
static gw_server *srv;
static char tokens_path[256];

/* ==== Fixtures ==== */

static void sha256_hex(const char *s, char out[65])
{
	unsigned char d[32];
	unsigned int n = 0;
	char *hx;

	EVP_Digest(s, strlen(s), d, &n, EVP_sha256(), NULL);
	hx = tu_hex(d, 32);
	memcpy(out, hx, 65);
	free(hx);
}

/* Writes a tokens file with the given content; returns its loaded set. */
static gw_tokens *tokens_from(const char *content)
{
	char err[256] = "";
	FILE *f = fopen(tokens_path, "w");
	gw_tokens *t;

	if (f == NULL)
		return NULL;
	fputs(content, f);
	fclose(f);
	t = gw_tokens_load(tokens_path, err, sizeof(err));
	if (t == NULL)
		fprintf(stderr, "tokens: %s\n", err);
	return t;
}

static gw_tokens *tokens_ab(void)
{
	char text[512], hx[65];

	sha256_hex(tok_b, hx);
	snprintf(text, sizeof(text),
		 "# test devices\n\ndev-a %s\n  dev-b sha256:%s  \n", tok_a, hx);
	return tokens_from(text);
}

static void cfg_small(gw_config *c)
{
	tu_gw_config(c, fu_port(fu), org_key);
	c->max_body = 65536;
	c->max_batch_items = 8;
	c->client_timeout_s = 5;
}

static int suite_init(void)
{
	char err[256] = "";
	gw_tokens *t;

	gw_log_set_level(GW_LOG_ERROR);
	snprintf(tokens_path, sizeof(tokens_path), "/tmp/sw-gw-tokens-%d",
		 (int)getpid());
	fu = fu_start(0);
	if (fu == NULL)
		return -1;
	cfg_small(&cfg);
	up = gw_upstream_new(&cfg, err, sizeof(err));
	if (up == NULL) {
		fprintf(stderr, "upstream: %s\n", err);
		return -1;
	}
	t = tokens_ab();
	if (t == NULL)
		return -1;
	srv = gw_server_start(&cfg, up, t, err, sizeof(err));
	if (srv == NULL) {
		fprintf(stderr, "server: %s\n", err);
		gw_tokens_free(t);
		return -1;
	}
	return 0;
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

/* ==== A small HTTP client ==== */

typedef struct http_res {
	long status;
	char *body;
	size_t len;
	char ctype[128];
	char allow[64];
	char www_auth[128];
	char request_id[32];
	char retry_after[32];
	char fallback[32];
	int curl_rc;
} http_res;

static size_t on_body(char *p, size_t sz, size_t nm, void *ud)
{
	http_res *r = ud;
	size_t n = sz * nm;
	char *nb = realloc(r->body, r->len + n + 1);

	if (nb == NULL)
		return 0;
	memcpy(nb + r->len, p, n);
	r->len += n;
	nb[r->len] = '\0';
	r->body = nb;
	return n;
}

/* Copies the value of header `name` from line p[0..n) into out. */
static void grab(const char *p, size_t n, const char *name, char *out,
		 size_t cap)
{
	size_t k = strlen(name), v;

	if (n <= k + 1 || strncasecmp(p, name, k) != 0 || p[k] != ':')
		return;
	p += k + 1;
	n -= k + 1;
	while (n > 0 && *p == ' ') {
		p++;
		n--;
	}
	while (n > 0 && (p[n - 1] == '\r' || p[n - 1] == '\n'))
		n--;
	v = n < cap - 1 ? n : cap - 1;
	memcpy(out, p, v);
	out[v] = '\0';
}

static size_t on_header(char *p, size_t sz, size_t nm, void *ud)
{
	http_res *r = ud;
	size_t n = sz * nm;

	grab(p, n, "Content-Type", r->ctype, sizeof(r->ctype));
	grab(p, n, "Allow", r->allow, sizeof(r->allow));
	grab(p, n, "WWW-Authenticate", r->www_auth, sizeof(r->www_auth));
	grab(p, n, "X-Request-Id", r->request_id, sizeof(r->request_id));
	grab(p, n, "Retry-After", r->retry_after, sizeof(r->retry_after));
	grab(p, n, "X-Sessionwire-Fallback", r->fallback, sizeof(r->fallback));
	return n;
}

typedef struct chunked_src {
	size_t left;
} chunked_src;

static size_t on_read(char *p, size_t sz, size_t nm, void *ud)
{
	chunked_src *c = ud;
	size_t n = sz * nm;

	if (n > c->left)
		n = c->left;
	if (n > 1000)
		n = 1000;
	memset(p, 'x', n);
	c->left -= n;
	return n;
}

typedef struct http_opts {
	uint16_t port;       /* 0: the suite's server */
	bool expect100;      /* keep curl's Expect: 100-continue */
	size_t chunked;      /* > 0: send this many bytes chunked instead */
} http_opts;

/* One request; headers is a NULL-terminated list. Returns the status (0
 * when no answer came). Free res->body. */
static long http_ex(const char *method, const char *path,
		    const char *const *headers, const void *body, size_t len,
		    const http_opts *o, http_res *res)
{
	CURL *h = curl_easy_init();
	struct curl_slist *hl = NULL;
	char url[4096];
	chunked_src src;
	size_t i;

	memset(res, 0, sizeof(*res));
	if (h == NULL)
		return 0;
	snprintf(url, sizeof(url), "http://127.0.0.1:%u%s",
		 (unsigned)(o && o->port ? o->port : gw_server_port(srv)), path);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L);
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 15000L);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, res);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, res);
	for (i = 0; headers && headers[i]; i++)
		hl = curl_slist_append(hl, headers[i]);
	if (!(o && o->expect100))
		hl = curl_slist_append(hl, "Expect:");
	if (o && o->chunked) {
		src.left = o->chunked;
		hl = curl_slist_append(hl, "Transfer-Encoding: chunked");
		curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
		curl_easy_setopt(h, CURLOPT_READDATA, &src);
	} else if (body != NULL) {
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	}
	if (strcmp(method, "HEAD") == 0)
		curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
	res->curl_rc = (int)curl_easy_perform(h);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &res->status);
	curl_slist_free_all(hl);
	curl_easy_cleanup(h);
	return res->status;
}

static long http(const char *method, const char *path,
		 const char *const *headers, const void *body, size_t len,
		 http_res *res)
{
	return http_ex(method, path, headers, body, len, NULL, res);
}

static const char *const pb_a[] = {
	"Content-Type: application/x-protobuf",
	"Authorization: Bearer tok-a-0123456789abcdef-plain", NULL
};
static const char *const json_a[] = {
	"Content-Type: application/json",
	"Authorization: Bearer tok-a-0123456789abcdef-plain", NULL
};
static const char *const pb_a_accept_pb[] = {
	"Content-Type: application/x-protobuf",
	"Accept: application/x-protobuf",
	"Authorization: Bearer tok-a-0123456789abcdef-plain", NULL
};
static const char *const json_a_accept_pb[] = {
	"Content-Type: application/json",
	"Accept: application/x-protobuf",
	"Authorization: Bearer tok-a-0123456789abcdef-plain", NULL
};

/* Protobuf bytes of a JSON update; *n its size. Free the result. */
static uint8_t *pb_of(const char *json, size_t len, size_t *n)
{
	sw_update *u = NULL;
	uint8_t *buf;

	*n = 0;
	if (sw_json_parse(json, len, NULL, &u, NULL) != SW_OK)
		return NULL;
	if (sw_pb_encode(u, NULL, 0, n, NULL) != SW_OK && *n == 0) {
		sw_update_free(u);
		return NULL;
	}
	buf = malloc(*n ? *n : 1);
	if (buf == NULL || sw_pb_encode(u, buf, *n, n, NULL) != SW_OK) {
		free(buf);
		buf = NULL;
	}
	sw_update_free(u);
	return buf;
}

/* Request i of the fake upstream matches method, path and body, with the
 * SDK's headers and the org key. */
static int upstream_got(size_t i, const char *path, const char *body,
			size_t len)
{
	fu_request r;
	char auth[128];
	int ok;

	if (!fu_get(fu, i, &r))
		return 0;
	snprintf(auth, sizeof(auth), "Bearer %s", org_key);
	ok = !strcmp(r.method, "PATCH") && !strcmp(r.path, path) &&
	     r.body_len == len && memcmp(r.body, body, len) == 0 &&
	     !strcmp(r.content_type, "application/json") &&
	     !strcmp(r.accept, "application/json") &&
	     !strcmp(r.authorization, auth) && !strstr(r.authorization, "tok-");
	if (!ok)
		fprintf(stderr, "\nupstream got %s %s [%s] auth=%s body=%.*s\n",
			r.method, r.path, r.content_type,
			strstr(r.authorization, org_key) ? "org key" : "OTHER",
			(int)r.body_len, r.body);
	fu_request_free(&r);
	return ok;
}

/* ==== Vectors end to end ==== */

static void run_vectors(const char *file, bool json)
{
	tu_vector *v = NULL;
	int n = tu_vectors_load(file, &v), i, bad = 0;

	CU_ASSERT_FATAL(n > 0);
	for (i = 0; i < n; i++) {
		http_res res;
		uint8_t *pb = NULL;
		size_t pn = 0;
		long st;

		fu_clear(fu);
		if (json) {
			st = http("PATCH", v[i].path, json_a, v[i].sdk,
				  strlen(v[i].sdk), &res);
		} else {
			pb = pb_of(v[i].wire, v[i].wire_len, &pn);
			CU_ASSERT_PTR_NOT_NULL(pb);
			st = http("PATCH", v[i].path, pb_a, pb, pn, &res);
		}
		if (st != 200 || fu_count(fu) != 1 ||
		    !upstream_got(0, v[i].path, v[i].wire, v[i].wire_len)) {
			if (bad++ < 5)
				fprintf(stderr, "\n%s line %d: status %ld, %zu upstream, reply %.200s\n",
					file, v[i].line, st, fu_count(fu),
					res.body ? res.body : "");
		}
		free(pb);
		free(res.body);
	}
	CU_ASSERT_EQUAL(bad, 0);
	tu_vectors_free(v, n);
}

static void protobuf_patch_delivers_every_vector_byte_identical(void)
{
	run_vectors("sdk_wire.jsonl", false);
	run_vectors("typical.jsonl", false);
}

static void json_patch_delivers_every_vector_canonical(void)
{
	run_vectors("sdk_wire.jsonl", true);
	run_vectors("typical.jsonl", true);
}

/* ==== Replies ==== */

static void accept_protobuf_gets_the_session_as_protobuf(void)
{
	static const char body[] = "{\"external_id\":\"dev-1\",\"duration\":12}";
	sw_parse_opts o;
	sw_update *s = NULL;
	http_res res;

	fu_clear(fu);
	CU_ASSERT_EQUAL(http("PATCH", "/v2/traces/sessions/01JWFXNRXWPG3W0C5MTEY913XX",
			     json_a_accept_pb, body, sizeof(body) - 1, &res), 200);
	CU_ASSERT_STRING_EQUAL(res.ctype, "application/x-protobuf");
	CU_ASSERT_STRING_EQUAL(res.fallback, "");
	memset(&o, 0, sizeof(o));
	o.kind = SW_KIND_SESSION;
	CU_ASSERT_EQUAL_FATAL(sw_pb_decode((const uint8_t *)res.body, res.len,
					   &o, &s, NULL), SW_OK);
	CU_ASSERT_EQUAL(s->id.len, 26);
	CU_ASSERT_EQUAL(memcmp(s->id.ptr, "01JWFXNRXWPG3W0C5MTEY913XX", 26), 0);
	CU_ASSERT(res.len < 100);
	sw_update_free(s);
	free(res.body);

	/* without Accept: the upstream JSON as it came */
	CU_ASSERT_EQUAL(http("PATCH", "/v2/traces/sessions/s-json", json_a,
			     body, sizeof(body) - 1, &res), 200);
	CU_ASSERT_STRING_EQUAL(res.ctype, "application/json");
	CU_ASSERT_PTR_NOT_NULL(res.body && strstr(res.body, "\"_id\":\"s-json\""));
	free(res.body);
	CU_ASSERT_NOT_EQUAL(res.request_id[0], '\0');
}

static void untranslatable_session_falls_back_to_json_with_a_header(void)
{
	static const char odd[] = "{\"_id\":\"x\",\"something\":\"new\"}"; /* no workspace_id */
	fu_step step = { FU_STATUS, 200, odd, NULL, 0 };
	http_res res;

	fu_clear(fu);
	fu_script(fu, &step, 1);
	CU_ASSERT_EQUAL(http("PATCH", "/v2/traces/sessions/x", json_a_accept_pb,
			     "{}", 2, &res), 200);
	CU_ASSERT_STRING_EQUAL(res.fallback, "json");
	CU_ASSERT_EQUAL(res.len, sizeof(odd) - 1);
	CU_ASSERT(res.body && memcmp(res.body, odd, sizeof(odd) - 1) == 0);
	free(res.body);
}

static void upstream_404_passes_through_as_json_or_error_protobuf(void)
{
	static const char nf[] = "{\"code\":\"not_found\",\"message\":\"Session not found\"}";
	fu_step step = { FU_STATUS, 404, nf, NULL, 0 };
	sw_error_msg em;
	http_res res;

	fu_clear(fu);
	fu_script(fu, &step, 1);
	CU_ASSERT_EQUAL(http("PATCH", "/v2/traces/sessions/nope", json_a, "{}", 2,
			     &res), 404);
	CU_ASSERT_EQUAL(res.len, sizeof(nf) - 1);
	CU_ASSERT(res.body && memcmp(res.body, nf, sizeof(nf) - 1) == 0);
	CU_ASSERT_EQUAL(fu_count(fu), 1); /* 404 is final: no retry */
	free(res.body);

	fu_script(fu, &step, 1);
	CU_ASSERT_EQUAL(http("PATCH", "/v2/traces/sessions/nope", json_a_accept_pb,
			     "{}", 2, &res), 404);
	CU_ASSERT_STRING_EQUAL(res.ctype, "application/x-protobuf");
	CU_ASSERT_EQUAL_FATAL(sw_error_msg_decode((const uint8_t *)res.body,
						  res.len, &em, NULL), SW_OK);
	CU_ASSERT_EQUAL(em.status, 404);
	CU_ASSERT(em.message.len == 17 && !memcmp(em.message.ptr, "Session not found", 17));
	CU_ASSERT(em.code.len == 9 && !memcmp(em.code.ptr, "not_found", 9));
	free(res.body);
}

static void upstream_503_then_200_is_retried(void)
{
	fu_step step = { FU_STATUS, 503, NULL, NULL, 0 };
	http_res res;

	fu_clear(fu);
	fu_script(fu, &step, 1);
	CU_ASSERT_EQUAL(http("PATCH", "/v2/traces/sessions/r-1", json_a, "{}", 2,
			     &res), 200);
	CU_ASSERT_EQUAL(fu_count(fu), 2);
	CU_ASSERT(upstream_got(1, "/v2/traces/sessions/r-1", "{}", 2));
	free(res.body);
}

static void upstream_down_is_502_with_a_message(void)
{
	fu_step steps[16];
	http_res res;
	size_t i;

	/* more resets than attempts (curl may also resend on a reused
	 * connection that died) */
	for (i = 0; i < 16; i++) {
		memset(&steps[i], 0, sizeof(steps[i]));
		steps[i].action = FU_RESET;
	}
	fu_clear(fu);
	fu_script(fu, steps, 16);
	CU_ASSERT_EQUAL(http("PATCH", "/v2/traces/sessions/d-1", json_a, "{}", 2,
			     &res), 502);
	CU_ASSERT_PTR_NOT_NULL(res.body && strstr(res.body, "\"code\":\"upstream_unreachable\""));
	CU_ASSERT_PTR_NULL(res.body ? strstr(res.body, org_key) : NULL);
	CU_ASSERT(fu_count(fu) >= cfg.max_attempts);
	free(res.body);
	fu_clear(fu);
}

/* ==== The batch endpoint ==== */

typedef struct bitem {
	const char *sid;
	uint64_t seq;
	const char *json; /* NULL: garbage update bytes */
} bitem;

/* Builds a Batch of the items into a malloc'd buffer. */
static uint8_t *batch_of(const bitem *it, size_t n, size_t *len)
{
	size_t cap = 65536, k;
	uint8_t *b = malloc(cap), env[4096];

	*len = 0;
	for (k = 0; k < n; k++) {
		sw_session_id sid;
		uint8_t *pb = NULL;
		size_t pn = 0, en = 0;
		static const uint8_t garbage[] = { 0xff, 0xff, 0xff };

		sw_session_id_set(&sid, it[k].sid, strlen(it[k].sid));
		if (it[k].json)
			pb = pb_of(it[k].json, strlen(it[k].json), &pn);
		CU_ASSERT_EQUAL(sw_envelope_encode(&sid, true, it[k].seq,
						   pb ? pb : garbage,
						   pb ? pn : sizeof(garbage),
						   env, sizeof(env), &en, NULL),
				SW_OK);
		CU_ASSERT_EQUAL(sw_batch_append(env, en, b, cap, len, NULL), SW_OK);
		free(pb);
	}
	return b;
}

static void batch_acks_each_item_in_batch_order_and_keeps_session_order(void)
{
	static const bitem items[] = {
		{ "01JWFXNRXWPG3W0C5MTEY913XX", 3, "{\"duration\":3}" },
		{ "sess-two", 1, "{\"duration\":21}" },
		{ "01JWFXNRXWPG3W0C5MTEY913XX", 1, "{\"duration\":1}" },
		{ "sess-two", 2, NULL },                 /* invalid update */
		{ "01JWFXNRXWPG3W0C5MTEY913XX", 2, "{\"duration\":2}" },
	};
	const char *ulid_path = "/v2/traces/sessions/01JWFXNRXWPG3W0C5MTEY913XX";
	static const char *const hdr[] = {
		"Content-Type: application/x-protobuf",
		"Authorization: Bearer tok-a-0123456789abcdef-plain", NULL
	};
	sw_result res[8];
	size_t n = 0, blen, k, seen_ulid = 0;
	uint8_t *b = batch_of(items, 5, &blen);
	http_res r;

	fu_clear(fu);
	CU_ASSERT_EQUAL(http("POST", "/v1/updates", hdr, b, blen, &r), 200);
	CU_ASSERT_STRING_EQUAL(r.ctype, "application/x-protobuf");
	CU_ASSERT_EQUAL_FATAL(sw_ack_decode((const uint8_t *)r.body, r.len, res,
					    8, &n, NULL), SW_OK);
	CU_ASSERT_EQUAL_FATAL(n, 5);
	for (k = 0; k < 5; k++)
		CU_ASSERT_EQUAL(res[k].seq, items[k].seq);
	CU_ASSERT_EQUAL(res[0].status, 200);
	CU_ASSERT_EQUAL(res[1].status, 200);
	CU_ASSERT_EQUAL(res[2].status, 200);
	CU_ASSERT_EQUAL(res[3].status, 400);
	CU_ASSERT(res[3].message.len > 0);
	CU_ASSERT_EQUAL(res[4].status, 200);
	/* four forwarded; the ULID session's in seq order 1, 2, 3 */
	CU_ASSERT_EQUAL_FATAL(fu_count(fu), 4);
	for (k = 0; k < 4; k++) {
		fu_request q;

		CU_ASSERT_FATAL(fu_get(fu, k, &q));
		if (!strcmp(q.path, ulid_path)) {
			char want[32];

			seen_ulid++;
			snprintf(want, sizeof(want), "{\"duration\":%zu}", seen_ulid);
			CU_ASSERT_STRING_EQUAL(q.body, want);
		} else {
			CU_ASSERT_STRING_EQUAL(q.path, "/v2/traces/sessions/sess-two");
			CU_ASSERT_STRING_EQUAL(q.body, "{\"duration\":21}");
		}
		fu_request_free(&q);
	}
	CU_ASSERT_EQUAL(seen_ulid, 3);
	free(r.body);
	free(b);
}

static void batch_later_items_of_a_failed_session_wait(void)
{
	static const bitem items[] = {
		{ "s-a", 1, "{\"duration\":1}" },
		{ "s-a", 2, "{\"duration\":2}" },
		{ "s-b", 1, "{\"duration\":9}" },
	};
	static const char *const hdr[] = {
		"Content-Type: application/x-protobuf",
		"Authorization: Bearer tok-a-0123456789abcdef-plain", NULL
	};
	fu_step steps[4] = { { FU_STATUS, 503, NULL, "7", 0 }, { FU_STATUS, 503, NULL, NULL, 0 },
			     { FU_STATUS, 503, NULL, NULL, 0 }, { FU_STATUS, 503, NULL, NULL, 0 } };
	gw_config c2 = cfg;
	sw_result res[4];
	size_t n = 0, blen;
	uint8_t *b = batch_of(items, 3, &blen);
	http_res r;

	(void)c2;
	fu_clear(fu);
	/* s-a's answers only: s-b goes side by side */
	fu_script_for(fu, "/s-a", steps, 4);
	CU_ASSERT_EQUAL(http("POST", "/v1/updates", hdr, b, blen, &r), 200);
	CU_ASSERT_EQUAL_FATAL(sw_ack_decode((const uint8_t *)r.body, r.len, res,
					    4, &n, NULL), SW_OK);
	CU_ASSERT_EQUAL_FATAL(n, 3);
	CU_ASSERT_EQUAL(res[0].status, 503);
	CU_ASSERT_EQUAL(res[1].status, 0);   /* not sent: s-a seq 1 failed */
	CU_ASSERT(res[1].message.len > 0);
	CU_ASSERT_EQUAL(res[2].status, 200); /* other sessions go on */
	free(r.body);
	free(b);
	fu_clear(fu);
}

/* Batches do not hold worker threads: more slow batches than the
 * server's 4 threads (each item answered after 500 ms, 3 sessions per
 * batch) all finish in about one delay, and a PATCH in between is
 * answered at once. Blocking items would need 6 * 3 * 0.5 / 4 s. */
typedef struct slow_batch {
	const uint8_t *body;
	size_t len;
	long status;
	pthread_t th;
} slow_batch;

static void *slow_batch_run(void *v)
{
	static const char *const hdr[] = {
		"Content-Type: application/x-protobuf",
		"Authorization: Bearer tok-a-0123456789abcdef-plain", NULL
	};
	slow_batch *sb = v;
	http_res r;

	sb->status = http("POST", "/v1/updates", hdr, sb->body, sb->len, &r);
	free(r.body);
	return NULL;
}

static void batches_do_not_hold_worker_threads(void)
{
	enum { N = 6 };
	static const bitem items[] = {
		{ "slow-a", 1, "{\"duration\":1}" },
		{ "slow-b", 1, "{\"duration\":2}" },
		{ "slow-c", 1, "{\"duration\":3}" },
	};
	static const char *const hdr[] = {
		"Content-Type: application/json",
		"Authorization: Bearer tok-a-0123456789abcdef-plain", NULL
	};
	fu_step delay[3 * N];
	slow_batch sb[N];
	size_t blen, k;
	uint8_t *b = batch_of(items, 3, &blen);
	double t0, t_patch, t_all;
	http_res r;

	fu_clear(fu);
	memset(delay, 0, sizeof(delay));
	for (k = 0; k < 3 * N; k++) {
		delay[k].action = FU_DELAY;
		delay[k].delay_ms = 500;
	}
	fu_script_for(fu, "/slow-", delay, 3 * N);
	t0 = tu_mono();
	for (k = 0; k < N; k++) {
		sb[k].body = b;
		sb[k].len = blen;
		pthread_create(&sb[k].th, NULL, slow_batch_run, &sb[k]);
	}
	usleep(150 * 1000);
	CU_ASSERT_EQUAL(http("PATCH", "/v2/traces/sessions/quick", hdr,
			     "{\"duration\":5}", 14, &r), 200);
	t_patch = tu_mono() - t0;
	free(r.body);
	for (k = 0; k < N; k++) {
		pthread_join(sb[k].th, NULL);
		CU_ASSERT_EQUAL(sb[k].status, 200);
	}
	t_all = tu_mono() - t0;
	fprintf(stderr, "[%d slow batches: PATCH answered at %.2f s, all at %.2f s] ",
		N, t_patch, t_all);
	/* blocking batches: the PATCH after 1.5 s, all after 3 s; the
	 * margins leave room for valgrind */
	CU_ASSERT(t_patch < 1.2);
	CU_ASSERT(t_all < 2.4);
	CU_ASSERT_EQUAL(fu_count(fu), 3 * N + 1);
	free(b);
	fu_clear(fu);
}

static void batch_over_max_items_is_413_and_nothing_forwarded(void)
{
	bitem items[9];
	static const char *const hdr[] = {
		"Content-Type: application/x-protobuf",
		"Authorization: Bearer tok-a-0123456789abcdef-plain", NULL
	};
	size_t k, blen;
	uint8_t *b;
	http_res r;

	for (k = 0; k < 9; k++) {
		items[k].sid = "s-many";
		items[k].seq = k;
		items[k].json = "{}";
	}
	b = batch_of(items, 9, &blen);
	fu_clear(fu);
	CU_ASSERT_EQUAL(http("POST", "/v1/updates", hdr, b, blen, &r), 413);
	CU_ASSERT_PTR_NOT_NULL(r.body && strstr(r.body, "more than 8"));
	CU_ASSERT_EQUAL(fu_count(fu), 0);
	free(r.body);
	/* eight is fine */
	free(b);
	b = batch_of(items, 8, &blen);
	CU_ASSERT_EQUAL(http("POST", "/v1/updates", hdr, b, blen, &r), 200);
	CU_ASSERT_EQUAL(fu_count(fu), 8);
	free(r.body);
	free(b);
}

static void batch_refuses_json_and_garbage(void)
{
	static const uint8_t junk[] = { 0x0a, 0x7f, 0x01 };
	http_res r;

	fu_clear(fu);
	CU_ASSERT_EQUAL(http("POST", "/v1/updates", json_a, "{}", 2, &r), 415);
	free(r.body);
	CU_ASSERT_EQUAL(http("POST", "/v1/updates", pb_a, junk, sizeof(junk), &r), 400);
	CU_ASSERT_PTR_NOT_NULL(r.body && strstr(r.body, "\"code\":\"invalid_body\""));
	free(r.body);
	CU_ASSERT_EQUAL(fu_count(fu), 0);
}

/* /v1/updates is protobuf only: without an Accept header (a device saving
 * bytes) even its errors come back as a protobuf Error. */
static void batch_without_accept_answers_protobuf(void)
{
	static const uint8_t junk[] = { 0x0a, 0x7f, 0x01 };
	static const char *const no_accept[] = {
		"Content-Type: application/x-protobuf",
		"Authorization: Bearer tok-a-0123456789abcdef-plain",
		"Accept:", NULL /* curl: send no Accept at all */
	};
	sw_error_msg em;
	http_res r;

	fu_clear(fu);
	CU_ASSERT_EQUAL(http("POST", "/v1/updates", no_accept, junk,
			     sizeof(junk), &r), 400);
	CU_ASSERT_STRING_EQUAL(r.ctype, "application/x-protobuf");
	CU_ASSERT_EQUAL(sw_error_msg_decode((const uint8_t *)r.body, r.len, &em,
					    NULL), SW_OK);
	CU_ASSERT_EQUAL(em.status, 400);
	CU_ASSERT_EQUAL(em.code.len, strlen("invalid_body"));
	free(r.body);
	CU_ASSERT_EQUAL(fu_count(fu), 0);
}

/* ==== Device auth ==== */

static void auth_missing_or_wrong_token_is_401_and_nothing_forwarded(void)
{
	static const char *const none[] = { "Content-Type: application/json", NULL };
	static const char *const wrong[] = {
		"Content-Type: application/json",
		"Authorization: Bearer tok-a-0123456789abcdef-plaiN", NULL
	};
	static const char *const basic[] = {
		"Content-Type: application/json", "Authorization: Basic Zm9vOmJhcg==", NULL
	};
	static const char *const hashed_entry_text[] = {
		"Content-Type: application/json",
		"Authorization: Bearer sha256:0000", NULL
	};
	const char *const *bad[] = { none, wrong, basic, hashed_entry_text };
	size_t i;
	http_res r;

	fu_clear(fu);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CU_ASSERT_EQUAL(http("PATCH", "/v2/traces/sessions/a-1", bad[i], "{}",
				     2, &r), 401);
		CU_ASSERT_STRING_EQUAL(r.www_auth[0] ? "Bearer" : "", "Bearer");
		CU_ASSERT(strncmp(r.www_auth, "Bearer", 6) == 0);
		CU_ASSERT_PTR_NOT_NULL(r.body && strstr(r.body, "\"code\":\"unauthorized\""));
		CU_ASSERT_PTR_NULL(r.body ? strstr(r.body, "tok-") : NULL);
		free(r.body);
	}
	CU_ASSERT_EQUAL(http("POST", "/v1/updates", none, "", 0, &r), 401);
	free(r.body);
	CU_ASSERT_EQUAL(fu_count(fu), 0);
}

static void auth_hashed_token_is_accepted(void)
{
	static const char *const hdr[] = {
		"Content-Type: application/json",
		"Authorization: Bearer tok-b-fedcba9876543210-hashed", NULL
	};
	http_res r;

	fu_clear(fu);
	CU_ASSERT_EQUAL(http("PATCH", "/v2/traces/sessions/h-1", hdr, "{}", 2, &r), 200);
	CU_ASSERT_EQUAL(fu_count(fu), 1);
	CU_ASSERT(upstream_got(0, "/v2/traces/sessions/h-1", "{}", 2));
	free(r.body);
}

static void auth_reload_takes_effect(void)
{
	static const char *const hc[] = {
		"Content-Type: application/json",
		"Authorization: Bearer tok-c-reloaded-000000000000", NULL
	};
	char text[128];
	gw_tokens *t;
	http_res r;

	snprintf(text, sizeof(text), "dev-c %s\n", tok_c);
	t = tokens_from(text);
	CU_ASSERT_PTR_NOT_NULL_FATAL(t);
	CU_ASSERT_EQUAL(http("PATCH", "/v2/traces/sessions/x", hc, "{}", 2, &r), 401);
	free(r.body);
	gw_server_set_tokens(srv, t);
	CU_ASSERT_EQUAL(http("PATCH", "/v2/traces/sessions/x", hc, "{}", 2, &r), 200);
	free(r.body);
	CU_ASSERT_EQUAL(http("PATCH", "/v2/traces/sessions/x", json_a, "{}", 2, &r), 401);
	free(r.body);
	t = tokens_ab();
	CU_ASSERT_PTR_NOT_NULL_FATAL(t);
	gw_server_set_tokens(srv, t);
	CU_ASSERT_EQUAL(http("PATCH", "/v2/traces/sessions/x", json_a, "{}", 2, &r), 200);
	free(r.body);
}

static void tokens_file_errors_name_the_line(void)
{
	static const struct {
		const char *text;
		const char *want;
	} t[] = {
		{ "dev-a\n", ":1:" },
		{ "# c\ndev-a s3cr3t-token extra\n", ":2:" },
		{ "\n\ndev sha256:abcd\n", ":3:" },
		{ "dev sha256:zz00000000000000000000000000000000000000000000000000000000000000\n", ":1:" },
	};
	char err[256];
	size_t i;
	FILE *f;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		f = fopen(tokens_path, "w");
		CU_ASSERT_PTR_NOT_NULL_FATAL(f);
		fputs(t[i].text, f);
		fclose(f);
		err[0] = '\0';
		CU_ASSERT_PTR_NULL(gw_tokens_load(tokens_path, err, sizeof(err)));
		CU_ASSERT_PTR_NOT_NULL(strstr(err, t[i].want));
		CU_ASSERT_PTR_NULL(strstr(err, "s3cr3t"));
	}
	err[0] = '\0';
	CU_ASSERT_PTR_NULL(gw_tokens_load("/nonexistent/tokens", err, sizeof(err)));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "/nonexistent/tokens"));
}

/* ==== Limits ==== */

static void body_over_max_with_honest_length_is_413(void)
{
	size_t max = cfg.max_body, n = max + 1;
	char *big = malloc(n);
	http_opts o = { 0, true, 0 };
	http_res r;

	memset(big, ' ', n);
	big[0] = '{';
	big[n - 1] = '}';
	fu_clear(fu);
	CU_ASSERT_EQUAL(http_ex("PATCH", "/v2/traces/sessions/big", json_a, big,
				n, &o, &r), 413);
	CU_ASSERT_PTR_NOT_NULL(r.body && strstr(r.body, "\"code\":\"payload_too_large\""));
	free(r.body);
	o.expect100 = false;
	CU_ASSERT_EQUAL(http_ex("PATCH", "/v2/traces/sessions/big", json_a, big,
				n, &o, &r), 413);
	free(r.body);
	/* exactly at the cap is read and parsed (whitespace is valid JSON) */
	big[max - 1] = '}';
	CU_ASSERT_EQUAL(http("PATCH", "/v2/traces/sessions/big", json_a, big,
			     max, &r), 200);
	free(r.body);
	CU_ASSERT_EQUAL(fu_count(fu), 1);
	free(big);
}

/* Sends raw bytes on a new connection and returns the status of the
 * answer (0 when the connection closed without one). */
static int raw_request(const char *req, size_t len, double wait_s)
{
	struct sockaddr_in a;
	int fd = socket(AF_INET, SOCK_STREAM, 0), status = 0;
	char buf[2048];
	size_t got = 0;
	double end = tu_mono() + wait_s;

	if (fd < 0)
		return -1;
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons(gw_server_port(srv));
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
	    write(fd, req, len) != (ssize_t)len) {
		close(fd);
		return -1;
	}
	while (got < sizeof(buf) - 1 && tu_mono() < end) {
		struct pollfd p = { fd, POLLIN, 0 };
		ssize_t n;

		if (poll(&p, 1, 100) <= 0)
			continue;
		n = read(fd, buf + got, sizeof(buf) - 1 - got);
		if (n <= 0)
			break;
		got += (size_t)n;
		buf[got] = '\0';
		if (strstr(buf, "\r\n"))
			break;
	}
	buf[got] = '\0';
	close(fd);
	if (got > 12 && !strncmp(buf, "HTTP/1.1 ", 9))
		status = atoi(buf + 9);
	return status;
}

static void lying_content_length_is_refused_before_the_body(void)
{
	static const char req[] =
		"PATCH /v2/traces/sessions/liar HTTP/1.1\r\n"
		"Host: 127.0.0.1\r\n"
		"Authorization: Bearer tok-a-0123456789abcdef-plain\r\n"
		"Content-Type: application/x-protobuf\r\n"
		"Content-Length: 100000000000\r\n\r\n"
		"\x08\x01";
	double t0 = tu_mono();

	fu_clear(fu);
	/* no body follows: the answer must not wait for it */
	CU_ASSERT_EQUAL(raw_request(req, sizeof(req) - 1, 4.0), 413);
	CU_ASSERT(tu_mono() - t0 < 3.0);
	CU_ASSERT_EQUAL(fu_count(fu), 0);
}

static void chunked_body_over_max_is_cut(void)
{
	http_opts o = { 0, false, 0 };
	http_res r;

	fu_clear(fu);
	/* a little over the cap: dropped, not kept, answered 413 */
	o.chunked = cfg.max_body + 5000;
	CU_ASSERT_EQUAL(http_ex("PATCH", "/v2/traces/sessions/chunky", json_a,
				NULL, 0, &o, &r), 413);
	CU_ASSERT_PTR_NOT_NULL(r.body && strstr(r.body, "payload_too_large"));
	free(r.body);
	/* far over (an "endless" body): the connection is cut */
	o.chunked = 8u << 20;
	http_ex("PATCH", "/v2/traces/sessions/chunky", json_a, NULL, 0, &o, &r);
	CU_ASSERT(r.status == 413 || r.status == 0);
	CU_ASSERT(r.curl_rc != 0 || r.status == 413);
	free(r.body);
	CU_ASSERT_EQUAL(fu_count(fu), 0);
	/* a small chunked body goes through the size check and is parsed */
	o.chunked = 100;
	CU_ASSERT_EQUAL(http_ex("PATCH", "/v2/traces/sessions/chunky", json_a,
				NULL, 0, &o, &r), 400);
	free(r.body);
}

static void wrong_type_method_path_are_415_405_404(void)
{
	static const char *const text[] = {
		"Content-Type: text/plain",
		"Authorization: Bearer tok-a-0123456789abcdef-plain", NULL
	};
	static const char *const missing[] = {
		"Authorization: Bearer tok-a-0123456789abcdef-plain", NULL
	};
	http_res r;

	fu_clear(fu);
	CU_ASSERT_EQUAL(http("PATCH", "/v2/traces/sessions/t", text, "{}", 2, &r), 415);
	CU_ASSERT_PTR_NOT_NULL(r.body && strstr(r.body, "text/plain"));
	free(r.body);
	CU_ASSERT_EQUAL(http("PATCH", "/v2/traces/sessions/t", missing, "{}", 2, &r), 415);
	free(r.body);
	CU_ASSERT_EQUAL(http("GET", "/v2/traces/sessions/t", json_a, NULL, 0, &r), 405);
	CU_ASSERT_STRING_EQUAL(r.allow, "PATCH");
	free(r.body);
	CU_ASSERT_EQUAL(http("PUT", "/v1/updates", pb_a, NULL, 0, &r), 405);
	CU_ASSERT_STRING_EQUAL(r.allow, "POST");
	free(r.body);
	CU_ASSERT_EQUAL(http("POST", "/healthz", NULL, NULL, 0, &r), 405);
	CU_ASSERT_STRING_EQUAL(r.allow, "GET, HEAD");
	free(r.body);
	CU_ASSERT_EQUAL(http("GET", "/v2/traces/session", NULL, NULL, 0, &r), 404);
	free(r.body);
	CU_ASSERT_EQUAL(http("GET", "/", NULL, NULL, 0, &r), 404);
	free(r.body);
	/* as a protobuf Error when the device asks for protobuf */
	CU_ASSERT_EQUAL(http("GET", "/nothing", pb_a_accept_pb, NULL, 0, &r), 404);
	CU_ASSERT_STRING_EQUAL(r.ctype, "application/x-protobuf");
	{
		sw_error_msg em;

		CU_ASSERT_EQUAL(sw_error_msg_decode((const uint8_t *)r.body, r.len,
						    &em, NULL), SW_OK);
		CU_ASSERT_EQUAL(em.status, 404);
		CU_ASSERT(em.message.len > 0);
	}
	free(r.body);
	CU_ASSERT_EQUAL(fu_count(fu), 0);
}

static void bad_session_ids_are_refused(void)
{
	static const struct {
		const char *path;
		long status;
	} t[] = {
		{ "/v2/traces/sessions/", 404 },
		{ "/v2/traces/sessions/a/b", 404 },
		{ "/v2/traces/sessions/a/", 404 },
		{ "/v2/traces/sessions/..", 400 },
		{ "/v2/traces/sessions/.", 400 },
		{ "/v2/traces/sessions/%2E%2E", 400 },
		{ "/v2/traces/sessions/%zz", 400 },
		{ "/v2/traces/sessions/%4", 400 },
		{ "/v2/traces/sessions/%C3", 400 },        /* not UTF-8 */
		{ "/v2/traces/sessions/%ED%A0%80", 400 },  /* surrogate */
	};
	size_t i;
	http_res r;

	fu_clear(fu);
	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		long st = http("PATCH", t[i].path, json_a, "{}", 2, &r);

		CU_ASSERT_EQUAL(st, t[i].status);
		if (st != t[i].status)
			fprintf(stderr, "\n%s: %ld %s\n", t[i].path, st, r.body);
		CU_ASSERT_PTR_NOT_NULL(r.body && strstr(r.body, "\"message\":\"") != NULL);
		free(r.body);
	}
	CU_ASSERT_EQUAL(fu_count(fu), 0);
}

static void encoded_ids_reach_upstream_exactly(void)
{
	static const struct {
		const char *in, *out;
	} t[] = {
		{ "%2F..", "%2F.." },
		{ "a%2Fb", "a%2Fb" },
		{ "%61bc", "abc" },                       /* needless escape */
		{ "caf%c3%a9", "caf%C3%A9" },             /* lowercase hex */
		{ "it's(1)*!~", "it's(1)*!~" },
		{ "%20x", "%20x" },
	};
	char in[256], out[256];
	size_t i;
	http_res r;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		fu_clear(fu);
		snprintf(in, sizeof(in), "/v2/traces/sessions/%s", t[i].in);
		snprintf(out, sizeof(out), "/v2/traces/sessions/%s", t[i].out);
		CU_ASSERT_EQUAL(http("PATCH", in, json_a, "{}", 2, &r), 200);
		CU_ASSERT(upstream_got(0, out, "{}", 2));
		free(r.body);
	}
}

static void invalid_bodies_are_400_naming_the_field(void)
{
	static const char bad_json[] = "{\"tags\":[\"a\",3]}";
	http_res r;
	sw_error_msg em;

	fu_clear(fu);
	CU_ASSERT_EQUAL(http("PATCH", "/v2/traces/sessions/i", json_a, bad_json,
			     sizeof(bad_json) - 1, &r), 400);
	CU_ASSERT_PTR_NOT_NULL(r.body && strstr(r.body, "\"field\":\"tags[1]\""));
	free(r.body);
	CU_ASSERT_EQUAL(http("PATCH", "/v2/traces/sessions/i", json_a, "{\"nope\":1}",
			     10, &r), 400);
	CU_ASSERT_PTR_NOT_NULL(r.body && strstr(r.body, "nope"));
	free(r.body);
	CU_ASSERT_EQUAL(http("PATCH", "/v2/traces/sessions/i", pb_a_accept_pb,
			     "\x0a\x05", 2, &r), 400);
	CU_ASSERT_STRING_EQUAL(r.ctype, "application/x-protobuf");
	CU_ASSERT_EQUAL(sw_error_msg_decode((const uint8_t *)r.body, r.len, &em,
					    NULL), SW_OK);
	CU_ASSERT_EQUAL(em.status, 400);
	CU_ASSERT(em.message.len > 0);
	free(r.body);
	CU_ASSERT_EQUAL(fu_count(fu), 0);
}

/* ==== Concurrency cap ==== */

typedef struct slow_arg {
	uint16_t port;
	long status;
} slow_arg;

static void *slow_request(void *p)
{
	slow_arg *a = p;
	http_opts o = { a->port, false, 0 };
	http_res r;

	a->status = http_ex("PATCH", "/v2/traces/sessions/slow", json_a, "{}", 2,
			    &o, &r);
	free(r.body);
	return NULL;
}

static void over_max_concurrent_is_503_with_retry_after(void)
{
	gw_config c;
	gw_server *s2;
	gw_upstream *up2;
	char err[256];
	fu_step step = { FU_DELAY, 0, NULL, NULL, 1500 };
	slow_arg a;
	pthread_t th;
	http_opts o;
	http_res r;

	cfg_small(&c);
	c.max_concurrent = 1;
	up2 = gw_upstream_new(&c, err, sizeof(err));
	CU_ASSERT_PTR_NOT_NULL_FATAL(up2);
	c.allow_anonymous = true;
	s2 = gw_server_start(&c, up2, NULL, err, sizeof(err));
	CU_ASSERT_PTR_NOT_NULL_FATAL(s2);
	fu_clear(fu);
	fu_script(fu, &step, 1);
	a.port = gw_server_port(s2);
	a.status = -1;
	pthread_create(&th, NULL, slow_request, &a);
	CU_ASSERT_EQUAL(fu_wait_count(fu, 1, 5), 1);
	memset(&o, 0, sizeof(o));
	o.port = a.port;
	CU_ASSERT_EQUAL(http_ex("PATCH", "/v2/traces/sessions/fast", json_a, "{}",
				2, &o, &r), 503);
	CU_ASSERT_STRING_EQUAL(r.retry_after, "1");
	CU_ASSERT_PTR_NOT_NULL(r.body && strstr(r.body, "in flight"));
	free(r.body);
	/* health stays up while busy */
	CU_ASSERT_EQUAL(http_ex("GET", "/healthz", NULL, NULL, 0, &o, &r), 200);
	free(r.body);
	pthread_join(th, NULL);
	CU_ASSERT_EQUAL(a.status, 200);
	CU_ASSERT_EQUAL(fu_count(fu), 1);
	gw_server_stop(s2);
	gw_upstream_free(up2);
}

/* ==== Health, metrics, secrets ==== */

static void health_and_readiness_answer(void)
{
	http_res r;

	CU_ASSERT_EQUAL(http("GET", "/healthz", NULL, NULL, 0, &r), 200);
	CU_ASSERT_STRING_EQUAL(r.body, "ok\n");
	free(r.body);
	CU_ASSERT_EQUAL(http("GET", "/readyz", NULL, NULL, 0, &r), 200);
	free(r.body);
	CU_ASSERT_EQUAL(http("HEAD", "/healthz", NULL, NULL, 0, &r), 200);
	free(r.body);
}

/* The value of a metrics line starting with `name ` (0 when absent). */
static double metric(const char *text, const char *name)
{
	size_t n = strlen(name);
	const char *p = text;

	while (p && *p) {
		if (!strncmp(p, name, n) && p[n] == ' ')
			return atof(p + n + 1);
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	return 0;
}

static void metrics_move_and_hold_no_secrets(void)
{
	http_res m0, m1, r;
	static const char *const wrong[] = {
		"Content-Type: application/json",
		"Authorization: Bearer wrong-token-value-1234", NULL
	};

	CU_ASSERT_EQUAL(http("GET", "/metrics", NULL, NULL, 0, &m0), 200);
	CU_ASSERT_PTR_NOT_NULL(strstr(m0.ctype, "text/plain"));
	fu_clear(fu);
	CU_ASSERT_EQUAL(http("PATCH", "/v2/traces/sessions/m", json_a,
			     "{\"duration\":5}", 14, &r), 200);
	free(r.body);
	CU_ASSERT_EQUAL(http("PATCH", "/v2/traces/sessions/m", wrong, "{}", 2, &r), 401);
	free(r.body);
	CU_ASSERT_EQUAL(http("GET", "/metrics", NULL, NULL, 0, &m1), 200);
	CU_ASSERT(metric(m1.body, "sessionwire_requests_total{route=\"patch\",code=\"200\"}") >
		  metric(m0.body, "sessionwire_requests_total{route=\"patch\",code=\"200\"}"));
	CU_ASSERT(metric(m1.body, "sessionwire_rejections_total{reason=\"auth\"}") >
		  metric(m0.body, "sessionwire_rejections_total{reason=\"auth\"}"));
	CU_ASSERT(metric(m1.body, "sessionwire_device_bytes_total") >=
		  metric(m0.body, "sessionwire_device_bytes_total") + 14);
	CU_ASSERT(metric(m1.body, "sessionwire_upstream_json_bytes_total") >=
		  metric(m0.body, "sessionwire_upstream_json_bytes_total") + 14);
	CU_ASSERT(metric(m1.body, "sessionwire_upstream_responses_total{code=\"200\"}") >
		  metric(m0.body, "sessionwire_upstream_responses_total{code=\"200\"}"));
	CU_ASSERT(metric(m1.body, "sessionwire_request_duration_seconds_count{route=\"patch\"}") >
		  metric(m0.body, "sessionwire_request_duration_seconds_count{route=\"patch\"}"));
	CU_ASSERT_PTR_NOT_NULL(strstr(m1.body, "sessionwire_upstream_duration_seconds_bucket{le=\"+Inf\"}"));
	CU_ASSERT_PTR_NOT_NULL(strstr(m1.body, "sessionwire_inflight_requests "));
	CU_ASSERT_PTR_NULL(strstr(m1.body, org_key));
	CU_ASSERT_PTR_NULL(strstr(m1.body, "tok-"));
	CU_ASSERT_PTR_NULL(strstr(m1.body, "wrong-token"));
	free(m0.body);
	free(m1.body);
}

static void request_ids_increase(void)
{
	http_res a, b;

	http("GET", "/healthz", NULL, NULL, 0, &a);
	http("GET", "/healthz", NULL, NULL, 0, &b);
	CU_ASSERT(atol(b.request_id) > atol(a.request_id));
	CU_ASSERT(atol(a.request_id) > 0);
	free(a.body);
	free(b.body);
}

static void json_escape_table(void)
{
	static const struct {
		const char *in;
		size_t n;
		const char *out;
	} t[] = {
		{ "plain", 5, "plain" },
		{ "q\"b\\", 4, "q\\\"b\\\\" },
		{ "\n\t\x01", 3, "\\n\\t\\u0001" },
		{ "a\0b", 3, "a\\u0000b" },
		{ "\xc3\xa9", 2, "\xc3\xa9" },
		{ "\xff", 1, "\\ufffd" },
		{ "x\xe2\x82", 3, "x\\ufffd\\ufffd" },
	};
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		sw_buf b;

		sw_buf_init(&b, 0, NULL);
		CU_ASSERT_EQUAL(gw_json_escape(&b, t[i].in, t[i].n), SW_OK);
		CU_ASSERT_STRING_EQUAL(b.data ? b.data : "", t[i].out);
		sw_buf_free(&b);
	}
}

int init_gateway_tests(void)
{
	CU_pSuite s = CU_add_suite("gateway", suite_init, suite_clean);

	if (s == NULL)
		return -1;
	CU_add_test(s, "protobuf_patch_delivers_every_vector_byte_identical", protobuf_patch_delivers_every_vector_byte_identical);
	CU_add_test(s, "json_patch_delivers_every_vector_canonical", json_patch_delivers_every_vector_canonical);
	CU_add_test(s, "accept_protobuf_gets_the_session_as_protobuf", accept_protobuf_gets_the_session_as_protobuf);
	CU_add_test(s, "untranslatable_session_falls_back_to_json_with_a_header", untranslatable_session_falls_back_to_json_with_a_header);
	CU_add_test(s, "upstream_404_passes_through_as_json_or_error_protobuf", upstream_404_passes_through_as_json_or_error_protobuf);
	CU_add_test(s, "upstream_503_then_200_is_retried", upstream_503_then_200_is_retried);
	CU_add_test(s, "upstream_down_is_502_with_a_message", upstream_down_is_502_with_a_message);
	CU_add_test(s, "batch_acks_each_item_in_batch_order_and_keeps_session_order", batch_acks_each_item_in_batch_order_and_keeps_session_order);
	CU_add_test(s, "batch_later_items_of_a_failed_session_wait", batch_later_items_of_a_failed_session_wait);
	CU_add_test(s, "batches_do_not_hold_worker_threads", batches_do_not_hold_worker_threads);
	CU_add_test(s, "batch_over_max_items_is_413_and_nothing_forwarded", batch_over_max_items_is_413_and_nothing_forwarded);
	CU_add_test(s, "batch_refuses_json_and_garbage", batch_refuses_json_and_garbage);
	CU_add_test(s, "batch_without_accept_answers_protobuf", batch_without_accept_answers_protobuf);
	CU_add_test(s, "auth_missing_or_wrong_token_is_401_and_nothing_forwarded", auth_missing_or_wrong_token_is_401_and_nothing_forwarded);
	CU_add_test(s, "auth_hashed_token_is_accepted", auth_hashed_token_is_accepted);
	CU_add_test(s, "auth_reload_takes_effect", auth_reload_takes_effect);
	CU_add_test(s, "tokens_file_errors_name_the_line", tokens_file_errors_name_the_line);
	CU_add_test(s, "body_over_max_with_honest_length_is_413", body_over_max_with_honest_length_is_413);
	CU_add_test(s, "lying_content_length_is_refused_before_the_body", lying_content_length_is_refused_before_the_body);
	CU_add_test(s, "chunked_body_over_max_is_cut", chunked_body_over_max_is_cut);
	CU_add_test(s, "wrong_type_method_path_are_415_405_404", wrong_type_method_path_are_415_405_404);
	CU_add_test(s, "bad_session_ids_are_refused", bad_session_ids_are_refused);
	CU_add_test(s, "encoded_ids_reach_upstream_exactly", encoded_ids_reach_upstream_exactly);
	CU_add_test(s, "invalid_bodies_are_400_naming_the_field", invalid_bodies_are_400_naming_the_field);
	CU_add_test(s, "over_max_concurrent_is_503_with_retry_after", over_max_concurrent_is_503_with_retry_after);
	CU_add_test(s, "health_and_readiness_answer", health_and_readiness_answer);
	CU_add_test(s, "metrics_move_and_hold_no_secrets", metrics_move_and_hold_no_secrets);
	CU_add_test(s, "request_ids_increase", request_ids_increase);
	CU_add_test(s, "json_escape_table", json_escape_table);
	return 0;
}
