/* test_queue.c - the gateway in queue mode, in-process, on a real
 * 3-node nats-server cluster (testnats.c, loopback, free ports) in front
 * of the fake upstream. Each test uses a stream of its own.
 *
 * Asserted: a stream configured otherwise is refused at start with a
 * sentence naming the difference; updates are acknowledged (202) once
 * JetStream has them and reach the upstream in per-session order across
 * partitions and across two gateways on one stream; a batch sent twice
 * is stored once (message ids: session and seq); retryable answers are
 * ridden out in order; final 4xx go to the dead-letter stream and the
 * admin command lists, retries and drops them; a JSON client gets the
 * API's answer whichever gateway forwarded its update; /readyz and the
 * metrics show the connection. */
#include <CUnit/CUnit.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nats/nats.h>

#include "fake_upstream.h"
#include "gw.h"
#include "testutil.h"

static char org_key[] = "sk-org-queue-test-key";

static fake_upstream *fu;
static tu_nats *cl;
static char root[128];
static int stream_no;

typedef struct qgw {
	gw_config c;
	gw_upstream *up;
	gw_queue *q;
	gw_server *srv;
} qgw;

static int suite_init(void)
{
	char dir[256];

	gw_log_set_level(GW_LOG_ERROR);
	snprintf(root, sizeof(root), "/tmp/sw-queue-XXXXXX");
	if (mkdtemp(root) == NULL)
		return -1;
	snprintf(dir, sizeof(dir), "%s/cluster", root);
	if (mkdir(dir, 0700) != 0)
		return -1;
	fu = fu_start(0);
	cl = tu_nats_start(3, dir);
	return fu && cl ? 0 : -1;
}

static int suite_clean(void)
{
	tu_nats_stop(cl);
	fu_stop(fu);
	tu_rmrf(root);
	gw_log_set_level(GW_LOG_INFO);
	return 0;
}

/* A fresh stream name for a test. */
static void new_stream(char *out, size_t cap)
{
	snprintf(out, cap, "TQ%d", ++stream_no);
}

static void cfg_queue(gw_config *c, const char *stream, unsigned parts)
{
	tu_gw_config(c, fu_port(fu), org_key);
	c->allow_anonymous = true;
	c->threads = 3;
	c->upstream_timeout_ms = 2000;
	c->backoff_base_ms = 20;
	c->backoff_max_ms = 200;
	c->log_level = GW_LOG_ERROR;
	snprintf(c->queue_urls, sizeof(c->queue_urls), "%s", tu_nats_urls(cl));
	snprintf(c->queue_stream, sizeof(c->queue_stream), "%s", stream);
	c->queue_partitions = parts;
	c->queue_replicas = 3;
	c->queue_max_age_s = 3600;
	c->queue_dedup_s = 120;
}

/* A gateway on stream; accept_only: --queue-accept-only. */
static int qgw_up_as(qgw *g, const char *stream, unsigned parts,
		     bool accept_only)
{
	char err[1400] = "";

	memset(g, 0, sizeof(*g));
	cfg_queue(&g->c, stream, parts);
	g->c.queue_accept_only = accept_only;
	g->up = gw_upstream_new(&g->c, err, sizeof(err));
	if (g->up == NULL)
		goto fail;
	g->q = gw_queue_open(&g->c, err, sizeof(err));
	if (g->q == NULL)
		goto fail;
	g->srv = gw_server_start_store(&g->c, g->up, gw_queue_store(g->q), NULL,
				       err, sizeof(err));
	if (g->srv == NULL)
		goto fail;
	return 0;
fail:
	fprintf(stderr, "qgw_up: %s\n", err);
	return -1;
}

static int qgw_up(qgw *g, const char *stream, unsigned parts)
{
	return qgw_up_as(g, stream, parts, false);
}

/* Stops in the order of main.c. */
static void qgw_down(qgw *g)
{
	gw_server_stop(g->srv);
	gw_queue_close(g->q);
	gw_upstream_free(g->up);
	memset(g, 0, sizeof(*g));
}

/* ==== HTTP ==== */

typedef struct res {
	long status;
	char body[2048];
	size_t len;
	char retry_after[32];
} res;

/* method path with body; prefer: a Prefer header or NULL. */
static long req(const qgw *g, const char *method, const char *path,
		const char *ctype, const char *prefer, const void *body,
		size_t len, res *r)
{
	char ct[160], pf[160];
	const char *hl[3] = { NULL, NULL, NULL };
	int n = 0;
	tu_http_res h;

	if (ctype) {
		snprintf(ct, sizeof(ct), "Content-Type: %s", ctype);
		hl[n++] = ct;
	}
	if (prefer) {
		snprintf(pf, sizeof(pf), "Prefer: %s", prefer);
		hl[n++] = pf;
	}
	memset(r, 0, sizeof(*r));
	r->status = tu_http(gw_server_port(g->srv), method, path, hl, body,
			    len, 30, &h);
	r->len = h.body_len < sizeof(r->body) ? h.body_len : sizeof(r->body) - 1;
	if (h.body)
		memcpy(r->body, h.body, r->len);
	memcpy(r->retry_after, h.retry_after, sizeof(r->retry_after));
	tu_http_free(&h);
	return r->status;
}

/* PATCH {"traces_count":n} to sid; async: Prefer: respond-async. */
static long patch_n(const qgw *g, const char *sid, long n, bool async, res *r)
{
	char path[256], body[64];

	snprintf(path, sizeof(path), "/v2/traces/sessions/%s", sid);
	snprintf(body, sizeof(body), "{\"traces_count\":%ld}", n);
	return req(g, "PATCH", path, "application/json",
		   async ? "respond-async" : NULL, body, strlen(body), r);
}

/* A protobuf Batch of one session's updates {"traces_count": seq}. */
static size_t make_batch(const char *sid, const uint64_t *seqs, size_t n,
			 uint8_t *batch, size_t cap)
{
	size_t blen = 0, i;

	for (i = 0; i < n; i++) {
		char js[64];
		sw_update *u = NULL;
		uint8_t pb[256], env[512];
		size_t pn = 0, en = 0;
		sw_session_id s;

		snprintf(js, sizeof(js), "{\"traces_count\":%llu}",
			 (unsigned long long)seqs[i]);
		if (sw_json_parse(js, strlen(js), NULL, &u, NULL) != SW_OK ||
		    sw_pb_encode(u, pb, sizeof(pb), &pn, NULL) != SW_OK) {
			sw_update_free(u);
			return 0;
		}
		sw_update_free(u);
		sw_session_id_set(&s, sid, strlen(sid));
		if (sw_envelope_encode(&s, true, seqs[i], pb, pn, env, sizeof(env),
				       &en, NULL) != SW_OK ||
		    sw_batch_append(env, en, batch, cap, &blen, NULL) != SW_OK)
			return 0;
	}
	return blen;
}

/* ==== What the upstream got ==== */

static long got_n(size_t i, char *sid, size_t cap)
{
	fu_request q;
	const char *p, *prefix = "/v2/traces/sessions/";
	long n = -1;

	if (!fu_get(fu, i, &q))
		return -1;
	p = strncmp(q.path, prefix, strlen(prefix)) == 0
		    ? q.path + strlen(prefix) : q.path;
	snprintf(sid, cap, "%.200s", p);
	p = q.body ? strstr(q.body, "\"traces_count\":") : NULL;
	if (p)
		n = strtol(p + 15, NULL, 10);
	fu_request_free(&q);
	return n;
}

typedef struct expect {
	int sessions;
	const char *prefix;  /* session k is "<prefix><k>" */
	long want[64];       /* every 1..want[k] must have arrived */
	long order_violations, duplicates, missing, seen;
} expect;

static void check(expect *e)
{
	long last[64];
	unsigned char *have[64];
	size_t i, n = fu_count(fu), pl = strlen(e->prefix);
	int k;

	e->order_violations = e->duplicates = e->missing = e->seen = 0;
	for (k = 0; k < e->sessions; k++) {
		last[k] = 0;
		have[k] = calloc((size_t)e->want[k] + 2, 1);
	}
	for (i = 0; i < n; i++) {
		char sid[256];
		long v = got_n(i, sid, sizeof(sid));

		if (v < 0 || strncmp(sid, e->prefix, pl) != 0)
			continue;
		k = atoi(sid + pl);
		if (k < 0 || k >= e->sessions)
			continue;
		e->seen++;
		if (v < last[k])
			e->order_violations++;
		else if (v == last[k])
			e->duplicates++;
		last[k] = v;
		if (v >= 1 && v <= e->want[k])
			have[k][v] = 1;
	}
	for (k = 0; k < e->sessions; k++) {
		long v;

		for (v = 1; v <= e->want[k]; v++)
			if (!have[k][v])
				e->missing++;
		free(have[k]);
	}
}

static bool wait_all(expect *e, double timeout_s)
{
	double end = tu_mono() + timeout_s;

	do {
		check(e);
		if (e->missing == 0)
			return true;
		tu_sleep_ms(20);
	} while (tu_mono() < end);
	return false;
}

/* The admin command with args (NULL-terminated); stdout and stderr in
 * out. Returns its exit status. */
static int admin(char *out, size_t cap, const char *stream, const char *a0,
		 const char *a1, const char *a2, const char *a3)
{
	char *argv[12];
	int argc = 0, rc;
	FILE *o = tmpfile(), *e = tmpfile();
	size_t n;

	argv[argc++] = (char *)"queue";
	if (a0)
		argv[argc++] = (char *)(uintptr_t)a0;
	argv[argc++] = (char *)"--queue";
	argv[argc++] = (char *)(uintptr_t)tu_nats_urls(cl);
	argv[argc++] = (char *)"--queue-stream";
	argv[argc++] = (char *)(uintptr_t)stream;
	if (a1)
		argv[argc++] = (char *)(uintptr_t)a1;
	if (a1 && a2)
		argv[argc++] = (char *)(uintptr_t)a2;
	if (a1 && a2 && a3)
		argv[argc++] = (char *)(uintptr_t)a3;
	argv[argc] = NULL;
	rc = gw_queue_admin(argc, argv, o, e);
	rewind(o);
	n = fread(out, 1, cap - 1, o);
	out[n] = '\0';
	rewind(e);
	n = strlen(out);
	if (n < cap - 1)
		out[n + fread(out + n, 1, cap - 1 - n, e)] = '\0';
	fclose(o);
	fclose(e);
	return rc;
}

/* Waits until the admin's stats show depth 0 (every update acked). */
static bool wait_drained(const char *stream, double timeout_s)
{
	double end = tu_mono() + timeout_s;
	char out[2048];

	do {
		if (admin(out, sizeof(out), stream, "stats", NULL, NULL, NULL) == 0 &&
		    strstr(out, "{\"depth\":0,") != NULL)
			return true;
		tu_sleep_ms(100);
	} while (tu_mono() < end);
	return false;
}

/* ==== Tests ==== */

typedef struct bad_stream {
	const char *name;
	jsRetentionPolicy retention;
	int64_t replicas;
} bad_stream;

static int make_stream(void *jsv, void *ud)
{
	jsCtx *js = jsv;
	const bad_stream *b = ud;
	jsStreamConfig sc;
	jsStreamInfo *si = NULL;
	char subj[64];
	const char *subjs[1] = { subj };
	natsStatus s;

	snprintf(subj, sizeof(subj), "%s.*", b->name);
	jsStreamConfig_Init(&sc);
	sc.Name = b->name;
	sc.Subjects = subjs;
	sc.SubjectsLen = 1;
	sc.Retention = b->retention;
	sc.Replicas = b->replicas;
	s = js_AddStream(&si, js, &sc, NULL, NULL);
	jsStreamInfo_Destroy(si);
	return s == NATS_OK ? 0 : -1;
}

static void queue_refuses_a_stream_configured_otherwise(void)
{
	static const struct {
		bad_stream b;
		const char *want;
	} cases[] = {
		{ { "TQWORK", js_WorkQueuePolicy, 3 }, "work-queue retention" },
		{ { "TQR1", js_LimitsPolicy, 1 }, "it has 1 replicas, --queue-replicas is 3" },
		{ { "TQINT", js_InterestPolicy, 3 }, "interest retention" },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		gw_config c;
		gw_queue *q;
		char err[1400] = "";

		CU_ASSERT_FATAL(tu_nats_exec(cl, make_stream,
					     (void *)(uintptr_t)&cases[i].b) == 0);
		cfg_queue(&c, cases[i].b.name, 4);
		q = gw_queue_open(&c, err, sizeof(err));
		CU_ASSERT_PTR_NULL(q);
		gw_queue_close(q);
		CU_ASSERT_PTR_NOT_NULL(strstr(err, cases[i].want));
		CU_ASSERT_PTR_NOT_NULL(strstr(err, cases[i].b.name));
		if (strstr(err, cases[i].want) == NULL)
			fprintf(stderr, "\n  got: %s\n", err);
	}
	/* another number of partitions than the stream was made for */
	{
		gw_config c;
		gw_queue *q;
		char err[1400] = "", name[32];

		new_stream(name, sizeof(name));
		cfg_queue(&c, name, 4);
		q = gw_queue_open(&c, err, sizeof(err));
		CU_ASSERT_PTR_NOT_NULL_FATAL(q);
		gw_queue_close(q);
		c.queue_partitions = 8;
		q = gw_queue_open(&c, err, sizeof(err));
		CU_ASSERT_PTR_NULL(q);
		gw_queue_close(q);
		CU_ASSERT_PTR_NOT_NULL(strstr(err, "another number of partitions"));
	}
	/* more replicas than nodes: "no suitable peers" is also what a
	 * forming cluster says, so the gateway waits (30 s), then says so */
	{
		gw_config c;
		gw_queue *q;
		char err[1400] = "", name[32];
		double t0 = tu_mono();

		new_stream(name, sizeof(name));
		cfg_queue(&c, name, 4);
		c.queue_replicas = 5;
		q = gw_queue_open(&c, err, sizeof(err));
		CU_ASSERT_PTR_NULL(q);
		gw_queue_close(q);
		CU_ASSERT_TRUE(tu_mono() - t0 >= 29);
		CU_ASSERT_PTR_NOT_NULL(strstr(err, "cannot create stream"));
		CU_ASSERT_PTR_NOT_NULL(strstr(err, "(after waiting for the cluster)"));
		CU_ASSERT_PTR_NOT_NULL(strstr(err, "no suitable peers"));
		if (strstr(err, "no suitable peers") == NULL)
			fprintf(stderr, "\n  got: %s\n", err);
	}
	/* nobody listening: a clear sentence, no hang */
	{
		gw_config c;
		gw_queue *q;
		char err[1400] = "";

		cfg_queue(&c, "TQX", 4);
		snprintf(c.queue_urls, sizeof(c.queue_urls), "nats://127.0.0.1:1");
		q = gw_queue_open(&c, err, sizeof(err));
		CU_ASSERT_PTR_NULL(q);
		CU_ASSERT_PTR_NOT_NULL(strstr(err, "cannot reach the NATS cluster at nats://127.0.0.1:1"));
	}
}

static void queue_flags_are_checked(void)
{
	gw_config c;
	char err[512];
	char *ok[] = { (char *)"gw", (char *)"--queue",
		       (char *)"nats://127.0.0.1:4222,tls://10.0.0.2:4222", NULL };
	char *both[] = { (char *)"gw", (char *)"--queue", (char *)"nats://a:1",
			 (char *)"--spool", (char *)"/tmp/x", NULL };
	char *bad_url[] = { (char *)"gw", (char *)"--queue",
			    (char *)"http://a:1", NULL };
	char *bad_name[] = { (char *)"gw", (char *)"--queue", (char *)"nats://a:1",
			     (char *)"--queue-stream", (char *)"A.B", NULL };
	char *dedup[] = { (char *)"gw", (char *)"--queue", (char *)"nats://a:1",
			  (char *)"--queue-max-age", (char *)"60",
			  (char *)"--queue-dedup-window", (char *)"120", NULL };

	setenv("ORQ_API_KEY", "k", 1);
	gw_config_defaults(&c);
	c.allow_anonymous = true;
	CU_ASSERT_EQUAL(gw_config_parse_args(&c, 3, ok, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(gw_config_finish(&c, err, sizeof(err)), 0);
	CU_ASSERT_STRING_EQUAL(c.queue_stream, "SESSIONWIRE");
	CU_ASSERT_EQUAL(c.queue_partitions, 64);
	CU_ASSERT_EQUAL(c.queue_replicas, 3);
	CU_ASSERT_EQUAL(c.queue_dedup_s, 120);
	CU_ASSERT_FALSE(c.queue_accept_only);
	gw_config_free(&c);
	gw_config_defaults(&c);
	c.allow_anonymous = true;
	CU_ASSERT_EQUAL(gw_config_parse_args(&c, 5, both, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(gw_config_finish(&c, err, sizeof(err)), -1);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "exclude each other"));
	gw_config_free(&c);
	gw_config_defaults(&c);
	c.allow_anonymous = true;
	CU_ASSERT_EQUAL(gw_config_parse_args(&c, 3, bad_url, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(gw_config_finish(&c, err, sizeof(err)), -1);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "expected nats://"));
	gw_config_free(&c);
	gw_config_defaults(&c);
	c.allow_anonymous = true;
	CU_ASSERT_EQUAL(gw_config_parse_args(&c, 5, bad_name, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(gw_config_finish(&c, err, sizeof(err)), -1);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "--queue-stream"));
	gw_config_free(&c);
	gw_config_defaults(&c);
	c.allow_anonymous = true;
	CU_ASSERT_EQUAL(gw_config_parse_args(&c, 7, dedup, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(gw_config_finish(&c, err, sizeof(err)), -1);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "--queue-dedup-window"));
	gw_config_free(&c);
	unsetenv("ORQ_API_KEY");
}

/* Devices alternate between two gateways on one stream: each session's
 * updates arrive in order although either gateway may forward any. */
static void queue_keeps_session_order_across_partitions_and_gateways(void)
{
	char stream[32], out[2048];
	qgw a, b;
	res r;
	expect e;
	long n;
	int k;

	fu_clear(fu);
	new_stream(stream, sizeof(stream));
	CU_ASSERT_FATAL(qgw_up(&a, stream, 8) == 0);
	CU_ASSERT_FATAL(qgw_up(&b, stream, 8) == 0);
	CU_ASSERT_EQUAL(req(&a, "GET", "/readyz", NULL, NULL, NULL, 0, &r), 200);
	memset(&e, 0, sizeof(e));
	e.sessions = 12;
	e.prefix = "ord-";
	for (n = 1; n <= 25; n++) {
		for (k = 0; k < e.sessions; k++) {
			char sid[32];

			snprintf(sid, sizeof(sid), "ord-%d", k);
			CU_ASSERT_EQUAL(patch_n((n + k) % 2 ? &a : &b, sid, n, true, &r),
					202);
			e.want[k] = n;
		}
	}
	CU_ASSERT_PTR_NOT_NULL(strstr(r.body, "\"status\":\"accepted\""));
	CU_ASSERT_TRUE(wait_all(&e, 30));
	CU_ASSERT_EQUAL(e.missing, 0);
	CU_ASSERT_EQUAL(e.order_violations, 0);
	CU_ASSERT_EQUAL(e.duplicates, 0);
	CU_ASSERT_TRUE(wait_drained(stream, 10));
	CU_ASSERT_EQUAL(tu_gw_metric("sessionwire_queue_connected"), 1);
	/* both gateways pull every partition (3 loops each) */
	CU_ASSERT_EQUAL(tu_gw_metric("sessionwire_queue_partitions_owned"), 16);
	CU_ASSERT_TRUE(tu_gw_metric("sessionwire_queue_publish_duration_seconds_count") >= 300);
	CU_ASSERT_EQUAL(admin(out, sizeof(out), stream, "stats", NULL, NULL, NULL), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"stream_messages\":300"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"partitions\":8"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"replicas\":3"));
	qgw_down(&b);
	qgw_down(&a);
}

/* A batch resent (its Ack lost, say) is stored once: the message ids are
 * the session and the device's seq. */
static void queue_stores_a_resent_batch_once(void)
{
	char stream[32], out[2048];
	qgw g;
	res r;
	uint8_t batch[4096];
	static const uint64_t seqs[] = { 1, 2, 3, 4, 5 };
	size_t blen, m = 0, i;
	sw_result ack[8];
	expect e;

	fu_clear(fu);
	new_stream(stream, sizeof(stream));
	CU_ASSERT_FATAL(qgw_up(&g, stream, 4) == 0);
	blen = make_batch("dup-0", seqs, 5, batch, sizeof(batch));
	CU_ASSERT_FATAL(blen > 0);
	for (i = 0; i < 2; i++) {
		CU_ASSERT_EQUAL(req(&g, "POST", "/v1/updates",
				    "application/x-protobuf", NULL, batch, blen,
				    &r), 200);
		CU_ASSERT_EQUAL(sw_ack_decode((const uint8_t *)r.body, r.len, ack,
					      8, &m, NULL), SW_OK);
		CU_ASSERT_EQUAL(m, 5);
		CU_ASSERT_EQUAL(ack[0].status, 202);
		CU_ASSERT_EQUAL(ack[4].status, 202);
	}
	memset(&e, 0, sizeof(e));
	e.sessions = 1;
	e.prefix = "dup-";
	e.want[0] = 5;
	CU_ASSERT_TRUE(wait_all(&e, 20));
	CU_ASSERT_TRUE(wait_drained(stream, 10));
	check(&e);
	CU_ASSERT_EQUAL(e.seen, 5);
	CU_ASSERT_EQUAL(e.order_violations, 0);
	CU_ASSERT_EQUAL(admin(out, sizeof(out), stream, "stats", NULL, NULL, NULL), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"stream_messages\":5,"));
	qgw_down(&g);
}

/* 503, a reset and a 429 with Retry-After for one session: naks with a
 * delay; the session's later updates wait, in order. */
static void queue_rides_out_retryable_answers_in_order(void)
{
	char stream[32];
	qgw g;
	res r;
	expect e;
	fu_step steps[4] = {
		{ FU_STATUS, 503, NULL, NULL, 0 },
		{ FU_RESET, 0, NULL, NULL, 0 },
		{ FU_STATUS, 429, NULL, "1", 0 },
		{ FU_STATUS, 502, NULL, NULL, 0 },
	};
	double retries0;
	long n;

	fu_clear(fu);
	fu_script_for(fu, "/rt-0", steps, 4);
	new_stream(stream, sizeof(stream));
	CU_ASSERT_FATAL(qgw_up(&g, stream, 4) == 0);
	retries0 = tu_gw_metric("sessionwire_queue_retries_total");
	for (n = 1; n <= 5; n++) {
		CU_ASSERT_EQUAL(patch_n(&g, "rt-0", n, true, &r), 202);
		CU_ASSERT_EQUAL(patch_n(&g, "rt-1", n, true, &r), 202);
	}
	memset(&e, 0, sizeof(e));
	e.sessions = 2;
	e.prefix = "rt-";
	e.want[0] = e.want[1] = 5;
	CU_ASSERT_TRUE(wait_all(&e, 30));
	CU_ASSERT_EQUAL(e.missing, 0);
	CU_ASSERT_EQUAL(e.order_violations, 0);
	/* 4 failed requests for rt-0's first update: repeats, in order */
	CU_ASSERT_EQUAL(e.duplicates, 4);
	/* (curl itself tries a reset reused connection once more) */
	CU_ASSERT_TRUE(tu_gw_metric("sessionwire_queue_retries_total") - retries0 >= 3);
	CU_ASSERT_TRUE(wait_drained(stream, 10));
	qgw_down(&g);
}

static void queue_moves_final_4xx_to_dead_letters_and_admin_replays(void)
{
	char stream[32], out[8192], idbuf[32];
	qgw g;
	res r;
	fu_step steps[2] = {
		{ FU_STATUS, 404, "{\"message\":\"session not found\"}", NULL, 0 },
		{ FU_STATUS, 400, "{\"message\":\"bad\"}", NULL, 0 },
	};
	double dead0;
	const char *p;
	expect e;

	fu_clear(fu);
	fu_script_for(fu, "/dl-0", steps, 2);
	new_stream(stream, sizeof(stream));
	CU_ASSERT_FATAL(qgw_up(&g, stream, 4) == 0);
	dead0 = tu_gw_metric("sessionwire_queue_dead_letters_total");
	CU_ASSERT_EQUAL(patch_n(&g, "dl-0", 1, true, &r), 202);
	CU_ASSERT_EQUAL(patch_n(&g, "dl-0", 2, true, &r), 202);
	CU_ASSERT_EQUAL(patch_n(&g, "dl-0", 3, true, &r), 202);
	memset(&e, 0, sizeof(e));
	e.sessions = 1;
	e.prefix = "dl-";
	e.want[0] = 3;
	CU_ASSERT_TRUE(wait_all(&e, 20));
	CU_ASSERT_TRUE(wait_drained(stream, 10));
	CU_ASSERT_EQUAL(fu_count(fu), 3);
	CU_ASSERT_EQUAL(tu_gw_metric("sessionwire_queue_dead_letters_total") - dead0, 2);
	CU_ASSERT_EQUAL(admin(out, sizeof(out), stream, "stats", NULL, NULL, NULL), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"dead_letters\":2"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "{\"depth\":0,"));
	CU_ASSERT_EQUAL(admin(out, sizeof(out), stream, "list", "--json", NULL, NULL), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"status\":404"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "session not found"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"session_id\":\"dl-0\""));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"json\":\"{\\\"traces_count\\\":1}\""));
	/* retry the first (the 404): it goes upstream again */
	p = strstr(out, "\"id\":");
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	snprintf(idbuf, sizeof(idbuf), "%ld", strtol(p + 5, NULL, 10));
	CU_ASSERT_EQUAL(admin(out, sizeof(out), stream, "retry", "--id", idbuf, NULL), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"retried\":1"));
	CU_ASSERT_EQUAL(fu_wait_count(fu, 4, 20), 4);
	{
		char sid[64];

		CU_ASSERT_EQUAL(got_n(3, sid, sizeof(sid)), 1);
	}
	CU_ASSERT_EQUAL(admin(out, sizeof(out), stream, "retry", "--id", idbuf, NULL), 1);
	CU_ASSERT_EQUAL(admin(out, sizeof(out), stream, "drop", "--all", NULL, NULL), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"dropped\":1"));
	CU_ASSERT_TRUE(wait_drained(stream, 10));
	CU_ASSERT_EQUAL(admin(out, sizeof(out), stream, "stats", NULL, NULL, NULL), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"dead_letters\":0"));
	/* --pending lists what waits: nothing now */
	CU_ASSERT_EQUAL(admin(out, sizeof(out), stream, "list", "--pending", NULL, NULL), 0);
	CU_ASSERT_STRING_EQUAL(out, "");
	/* usage errors */
	CU_ASSERT_EQUAL(admin(out, sizeof(out), stream, "retry", NULL, NULL, NULL), 2);
	CU_ASSERT_EQUAL(admin(out, sizeof(out), stream, "frobnicate", NULL, NULL, NULL), 2);
	CU_ASSERT_EQUAL(admin(out, sizeof(out), "NOSUCH", "stats", NULL, NULL, NULL), 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "no stream NOSUCH"));
	{
		char *argv[] = { (char *)"queue", (char *)"--help", NULL };
		FILE *o = tmpfile();

		CU_ASSERT_EQUAL(gw_queue_admin(2, argv, o, stderr), 0);
		fclose(o);
	}
	qgw_down(&g);
}

/* The updates wait when nothing forwards them: --pending lists them. */
static void queue_admin_lists_waiting_updates(void)
{
	char stream[32], out[8192];
	qgw g;
	res r;
	gw_config c;
	gw_queue *q;
	char err[1400];

	/* a queue opened (the stream and consumers made) with no server:
	 * nothing pulls */
	new_stream(stream, sizeof(stream));
	cfg_queue(&c, stream, 4);
	q = gw_queue_open(&c, err, sizeof(err));
	CU_ASSERT_PTR_NOT_NULL_FATAL(q);
	gw_queue_close(q);
	fu_clear(fu);
	/* store through a gateway whose upstream always fails, then stop */
	{
		fu_step fail[64];
		size_t i;

		for (i = 0; i < 64; i++)
			fail[i] = (fu_step){ FU_STATUS, 503, NULL, "60", 0 };
		fu_script_for(fu, "/wait-0", fail, 64);
	}
	CU_ASSERT_FATAL(qgw_up(&g, stream, 4) == 0);
	CU_ASSERT_EQUAL(patch_n(&g, "wait-0", 1, true, &r), 202);
	CU_ASSERT_EQUAL(patch_n(&g, "wait-0", 2, true, &r), 202);
	CU_ASSERT_EQUAL(fu_wait_count(fu, 1, 10), 1);
	CU_ASSERT_EQUAL(admin(out, sizeof(out), stream, "list", "--pending", "--json", NULL), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"session_id\":\"wait-0\""));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "traces_count\\\":2"));
	CU_ASSERT_EQUAL(admin(out, sizeof(out), stream, "stats", NULL, NULL, NULL), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "{\"depth\":2,"));
	qgw_down(&g);
	fu_clear(fu);
}

/* A JSON client without Prefer: respond-async gets the API's answer,
 * also when the other gateway forwarded its update. */
static void queue_json_client_gets_the_api_answer(void)
{
	char stream[32];
	qgw a, b;
	res r;
	int k, ok = 0;

	fu_clear(fu);
	new_stream(stream, sizeof(stream));
	CU_ASSERT_FATAL(qgw_up(&a, stream, 8) == 0);
	CU_ASSERT_FATAL(qgw_up(&b, stream, 8) == 0);
	for (k = 0; k < 16; k++) {
		char sid[32];

		snprintf(sid, sizeof(sid), "sync-%d", k);
		if (patch_n(k % 2 ? &a : &b, sid, 7, false, &r) == 200 &&
		    strstr(r.body, "\"traces_count\":7") != NULL)
			ok++;
		else
			fprintf(stderr, "\n  %s: %ld %s\n", sid, r.status, r.body);
	}
	CU_ASSERT_EQUAL(ok, 16);
	/* with Prefer: respond-async, 202 naming the queue */
	CU_ASSERT_EQUAL(patch_n(&a, "sync-async", 3, true, &r), 202);
	CU_ASSERT_PTR_NOT_NULL(r.body && strstr(r.body, "stored in the queue"));
	/* a final 4xx comes back as it is */
	{
		fu_step st = { FU_STATUS, 404, "{\"message\":\"no such session\"}", NULL, 0 };

		fu_script_for(fu, "/sync-404", &st, 1);
		CU_ASSERT_EQUAL(patch_n(&a, "sync-404", 1, false, &r), 404);
		CU_ASSERT_PTR_NOT_NULL(strstr(r.body, "no such session"));
	}
	qgw_down(&b);
	qgw_down(&a);
}

/* --queue-accept-only stores; the other gateway forwards, JSON clients of
 * the first still get the API's answer. */
static void queue_accept_only_gateway_leaves_forwarding_to_others(void)
{
	char stream[32];
	qgw a, f;
	res r;
	expect e;
	char err[1400] = "";
	long n;
	double owned0;

	fu_clear(fu);
	new_stream(stream, sizeof(stream));
	memset(&a, 0, sizeof(a));
	cfg_queue(&a.c, stream, 4);
	a.c.queue_accept_only = true;
	a.up = gw_upstream_new(&a.c, err, sizeof(err));
	CU_ASSERT_PTR_NOT_NULL_FATAL(a.up);
	a.q = gw_queue_open(&a.c, err, sizeof(err));
	CU_ASSERT_PTR_NOT_NULL_FATAL(a.q);
	owned0 = tu_gw_metric("sessionwire_queue_partitions_owned");
	a.srv = gw_server_start_store(&a.c, a.up, gw_queue_store(a.q), NULL, err,
				      sizeof(err));
	CU_ASSERT_PTR_NOT_NULL_FATAL(a.srv);
	for (n = 1; n <= 5; n++)
		CU_ASSERT_EQUAL(patch_n(&a, "ao-0", n, true, &r), 202);
	tu_sleep_ms(300);
	CU_ASSERT_EQUAL(fu_count(fu), 0); /* nobody forwards yet */
	CU_ASSERT_EQUAL(tu_gw_metric("sessionwire_queue_partitions_owned"), owned0);
	CU_ASSERT_FATAL(qgw_up(&f, stream, 4) == 0);
	memset(&e, 0, sizeof(e));
	e.sessions = 1;
	e.prefix = "ao-";
	e.want[0] = 5;
	CU_ASSERT_TRUE(wait_all(&e, 20));
	CU_ASSERT_EQUAL(e.order_violations, 0);
	CU_ASSERT_EQUAL(patch_n(&a, "ao-0", 6, false, &r), 200);
	CU_ASSERT_PTR_NOT_NULL(strstr(r.body, "\"traces_count\":6"));
	qgw_down(&f);
	qgw_down(&a);
}

/* After a kill -9 of a whole cluster, a consumer can pass an update over
 * (hand out the next one and never it). Made so here: the partition's
 * consumer is recreated to start at the 4th of 5 stored updates. The
 * gateway still sends all five in stream order, the passed-over ones
 * first, through a retryable answer (the update in hand is given back,
 * the next holder goes on from the claim) and a final one (a dead
 * letter). */
typedef struct skip_ctx {
	const char *stream;
	uint64_t start;       /* the consumer's new start */
} skip_ctx;

static int consumer_skips(void *jsv, void *ud)
{
	jsCtx *js = jsv;
	const skip_ctx *k = ud;
	natsMsg *m = NULL;
	jsConsumerInfo *ci = NULL, *ni = NULL;
	jsConsumerConfig cc;
	const char *subj, *dot;
	char name[32];
	int rc = -1;

	/* the partition of the stream's first message: "<stream>.<p>" */
	if (js_GetMsg(&m, js, k->stream, 1, NULL, NULL) != NATS_OK)
		return -1;
	subj = natsMsg_GetSubject(m);
	dot = strrchr(subj, '.');
	snprintf(name, sizeof(name), "p%s", dot ? dot + 1 : "");
	if (js_GetConsumerInfo(&ci, js, k->stream, name, NULL, NULL) == NATS_OK) {
		cc = *ci->Config;
		cc.DeliverPolicy = js_DeliverByStartSequence;
		cc.OptStartSeq = k->start;
		if (js_DeleteConsumer(js, k->stream, name, NULL, NULL) == NATS_OK &&
		    js_AddConsumer(&ni, js, k->stream, &cc, NULL, NULL) == NATS_OK)
			rc = 0;
	}
	jsConsumerInfo_Destroy(ni);
	jsConsumerInfo_Destroy(ci);
	natsMsg_Destroy(m);
	return rc;
}

/* On a fresh stream, an accept-only gateway a stores sid's updates 1..n
 * (the stream's messages 1..n); then their partition's consumer is made
 * to start at start, passing over 1..start-1. 0 or -1. */
static int stored_and_passed_over(qgw *a, char *stream, size_t cap,
				  const char *sid, long n, uint64_t start)
{
	skip_ctx k;
	res r;
	long i;

	new_stream(stream, cap);
	if (qgw_up_as(a, stream, 4, true) != 0)
		return -1;
	for (i = 1; i <= n; i++)
		if (patch_n(a, sid, i, true, &r) != 202)
			return -1;
	k.stream = stream;
	k.start = start;
	return tu_nats_exec(cl, consumer_skips, &k);
}

static void queue_forwards_updates_its_consumer_passed_over(void)
{
	char stream[32], out[2048];
	qgw a, f;
	expect e;
	fu_step steps[4] = {
		{ FU_STATUS, 503, NULL, NULL, 0 },   /* the 1st: retryable */
		{ FU_OK, 0, NULL, NULL, 0 },         /* the 1st again */
		{ FU_OK, 0, NULL, NULL, 0 },         /* the 2nd */
		{ FU_STATUS, 422, NULL, NULL, 0 },   /* the 3rd: final */
	};
	double skipped0;
	size_t i;

	fu_clear(fu);
	CU_ASSERT_FATAL(stored_and_passed_over(&a, stream, sizeof(stream), "sk-0",
					       5, 4) == 0);
	skipped0 = tu_gw_metric("sessionwire_queue_skipped_total");
	fu_script_for(fu, "/sk-0", steps, 4);
	CU_ASSERT_FATAL(qgw_up(&f, stream, 4) == 0);
	memset(&e, 0, sizeof(e));
	e.sessions = 1;
	e.prefix = "sk-";
	e.want[0] = 5;
	CU_ASSERT_TRUE(wait_all(&e, 30));
	CU_ASSERT_EQUAL(e.missing, 0);
	CU_ASSERT_EQUAL(e.order_violations, 0);
	CU_ASSERT_EQUAL(e.duplicates, 1); /* the 1st after its 503 */
	CU_ASSERT_EQUAL(fu_count(fu), 6);
	for (i = 0; i < fu_count(fu); i++) {
		char sid[64];
		static const long want[6] = { 1, 1, 2, 3, 4, 5 };

		CU_ASSERT_EQUAL(got_n(i, sid, sizeof(sid)), want[i]);
	}
	CU_ASSERT_TRUE(wait_drained(stream, 10));
	/* the 3rd (final 422) and the 1st (503, then 200) counted once each */
	CU_ASSERT_EQUAL(tu_gw_metric("sessionwire_queue_skipped_total") - skipped0, 3);
	CU_ASSERT_EQUAL(admin(out, sizeof(out), stream, "stats", NULL, NULL, NULL), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"dead_letters\":1"));
	if (strstr(out, "\"dead_letters\":1") == NULL)
		fprintf(stderr, "\n  stats: %s\n", out);
	tu_sleep_ms(300);
	CU_ASSERT_EQUAL(fu_count(fu), 6); /* and nothing more */
	qgw_down(&f);
	qgw_down(&a);
}

/* The same with nothing after the passed-over updates: no update in hand
 * to send them before, so the lane's sweep nudges the partition (after
 * two looks an AckWait apart, 7 s here) and the nudge's holder sends
 * them. */
static void queue_nudges_a_partition_whose_consumer_has_nothing(void)
{
	char stream[32], out[2048];
	qgw a, f;
	expect e;
	double skipped0;
	size_t i;

	fu_clear(fu);
	/* passed over up to past the last one */
	CU_ASSERT_FATAL(stored_and_passed_over(&a, stream, sizeof(stream), "sq-0",
					       3, 4) == 0);
	skipped0 = tu_gw_metric("sessionwire_queue_skipped_total");
	/* still waiting, says the admin (from the claims, not the consumer) */
	CU_ASSERT_EQUAL(admin(out, sizeof(out), stream, "list", "--pending", NULL,
			      NULL), 0);
	{
		const char *p = out;
		int ids = 0;

		while ((p = strstr(p, "\"id\"")) != NULL) {
			ids++;
			p++;
		}
		CU_ASSERT_EQUAL(ids, 3);
	}
	CU_ASSERT_FATAL(qgw_up(&f, stream, 4) == 0);
	tu_sleep_ms(2000);
	CU_ASSERT_EQUAL(fu_count(fu), 0); /* its consumer hands out nothing */
	memset(&e, 0, sizeof(e));
	e.sessions = 1;
	e.prefix = "sq-";
	e.want[0] = 3;
	CU_ASSERT_TRUE(wait_all(&e, 40));
	CU_ASSERT_EQUAL(e.order_violations, 0);
	CU_ASSERT_EQUAL(e.duplicates, 0);
	for (i = 0; i < fu_count(fu); i++) {
		char sid[64];

		CU_ASSERT_EQUAL(got_n(i, sid, sizeof(sid)), (long)i + 1);
	}
	CU_ASSERT_EQUAL(tu_gw_metric("sessionwire_queue_skipped_total") - skipped0, 3);
	CU_ASSERT_TRUE(wait_drained(stream, 10)); /* the nudge acked too */
	/* and the nudge is no update to list */
	CU_ASSERT_EQUAL(admin(out, sizeof(out), stream, "list", "--pending", NULL,
			      NULL), 0);
	CU_ASSERT_PTR_NULL(strstr(out, "\"id\""));
	CU_ASSERT_EQUAL(fu_count(fu), 3);
	qgw_down(&f);
	qgw_down(&a);
}

int init_queue_tests(void)
{
	CU_pSuite s = CU_add_suite("queue", suite_init, suite_clean);

	if (s == NULL)
		return -1;
	CU_add_test(s, "queue_flags_are_checked", queue_flags_are_checked);
	CU_add_test(s, "queue_refuses_a_stream_configured_otherwise",
		    queue_refuses_a_stream_configured_otherwise);
	CU_add_test(s, "queue_keeps_session_order_across_partitions_and_gateways",
		    queue_keeps_session_order_across_partitions_and_gateways);
	CU_add_test(s, "queue_stores_a_resent_batch_once",
		    queue_stores_a_resent_batch_once);
	CU_add_test(s, "queue_rides_out_retryable_answers_in_order",
		    queue_rides_out_retryable_answers_in_order);
	CU_add_test(s, "queue_moves_final_4xx_to_dead_letters_and_admin_replays",
		    queue_moves_final_4xx_to_dead_letters_and_admin_replays);
	CU_add_test(s, "queue_admin_lists_waiting_updates",
		    queue_admin_lists_waiting_updates);
	CU_add_test(s, "queue_json_client_gets_the_api_answer",
		    queue_json_client_gets_the_api_answer);
	CU_add_test(s, "queue_forwards_updates_its_consumer_passed_over",
		    queue_forwards_updates_its_consumer_passed_over);
	CU_add_test(s, "queue_nudges_a_partition_whose_consumer_has_nothing",
		    queue_nudges_a_partition_whose_consumer_has_nothing);
	CU_add_test(s, "queue_accept_only_gateway_leaves_forwarding_to_others",
		    queue_accept_only_gateway_leaves_forwarding_to_others);
	return 0;
}
