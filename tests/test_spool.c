/* test_spool.c - the gateway in spool mode, in-process: gw_spool_open on a
 * mkdtemp directory, gw_server_start_spool (its loops forward), in front
 * of the fake upstream. Acknowledged updates arrive in per-session order;
 * outages (503, resets, 429 with Retry-After) are ridden out; final 4xx go
 * to dead_letters and the admin command replays or drops them; a full
 * spool answers 507 and loses nothing; bad directories and damaged
 * databases give clean errors; a restart resumes; direct mode is as
 * before. */
#include <CUnit/CUnit.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <stdint.h>
#include <unistd.h>

#include <sqlite3.h>

#include "fake_upstream.h"
#include "gw.h"
#include "testutil.h"

static char org_key[] = "sk-org-spool-test-key";

static fake_upstream *fu;
static char root[128];   /* mkdtemp: one subdirectory per test */
static int dir_no;
static long upstream_timeout_ms = 3000; /* cfg_spool's */

/* One gateway: config, spool, server (forwarding unless it was started
 * with forward false: spool_forwarders 0). */
typedef struct gw {
	gw_config c;
	gw_upstream *up;
	gw_spool *sp;
	gw_server *srv;
} gw;

/* A fresh directory name under root (not created). */
static void new_dir(char *out, size_t cap)
{
	snprintf(out, cap, "%s/s%d", root, ++dir_no);
}

static void cfg_spool(gw_config *c, const char *dir)
{
	tu_gw_config(c, fu_port(fu), org_key);
	c->allow_anonymous = true;
	c->threads = 8;
	c->max_batch_items = 16;
	c->upstream_timeout_ms = upstream_timeout_ms;
	c->backoff_base_ms = 2;
	c->backoff_max_ms = 40;
	c->spool_forwarders = 4;
	c->log_level = GW_LOG_ERROR;
	snprintf(c->spool_dir, sizeof(c->spool_dir), "%s", dir);
}

/* Starts g on dir (forwarding only when forward) with loops event loops
 * (0: tu_gw_config's). 0 or -1. */
static int gw_up_loops(gw *g, const char *dir, size_t max_bytes,
		       bool forward, unsigned loops)
{
	char err[512] = "";

	memset(g, 0, sizeof(*g));
	cfg_spool(&g->c, dir);
	if (loops)
		g->c.threads = loops;
	if (max_bytes)
		g->c.spool_max_bytes = max_bytes;
	g->up = gw_upstream_new(&g->c, err, sizeof(err));
	if (g->up == NULL)
		goto fail;
	g->sp = gw_spool_open(&g->c, err, sizeof(err));
	if (g->sp == NULL)
		goto fail;
	if (!forward)
		g->c.spool_forwarders = 0;
	g->srv = gw_server_start_spool(&g->c, g->up, g->sp, NULL, err,
				       sizeof(err));
	if (g->srv == NULL)
		goto fail;
	return 0;
fail:
	fprintf(stderr, "gw_up: %s\n", err);
	return -1;
}

static int gw_up(gw *g, const char *dir, size_t max_bytes, bool forward)
{
	return gw_up_loops(g, dir, max_bytes, forward, 0);
}

/* A gateway started without forwarding: a new server on the same spool
 * that forwards (its port changes). 0 or -1. */
static int gw_forward_now(gw *g)
{
	char err[512] = "";

	gw_server_stop(g->srv);
	g->c.spool_forwarders = 4;
	g->srv = gw_server_start_spool(&g->c, g->up, g->sp, NULL, err,
				       sizeof(err));
	if (g->srv == NULL)
		fprintf(stderr, "gw_forward_now: %s\n", err);
	return g->srv ? 0 : -1;
}

/* Stops in the order of main.c. */
static void gw_down(gw *g)
{
	gw_server_stop(g->srv);
	gw_spool_close(g->sp);
	gw_upstream_free(g->up);
	memset(g, 0, sizeof(*g));
}

static int suite_init(void)
{
	gw_log_set_level(GW_LOG_ERROR);
	snprintf(root, sizeof(root), "/tmp/sw-spool-XXXXXX");
	if (mkdtemp(root) == NULL)
		return -1;
	fu = fu_start(0);
	return fu ? 0 : -1;
}

static int suite_clean(void)
{
	fu_stop(fu);
	tu_rmrf(root);
	gw_log_set_level(GW_LOG_INFO);
	return 0;
}

/* ==== HTTP ==== */

typedef struct res {
	long status;
	char body[2048];
	size_t len;
} res;

/* The Prefer header req() sends: respond-async (202 once stored) unless
 * a test of the synchronous JSON answers clears it. */
static const char *prefer = "respond-async";

/* method path with body; ctype and accept may be NULL. Returns status. */
static long req(const gw *g, const char *method, const char *path,
		const char *ctype, const char *accept, const void *body,
		size_t len, res *r)
{
	char ct[160], ac[160], pf[160];
	const char *hl[4] = { NULL, NULL, NULL, NULL };
	int n = 0;
	tu_http_res h;

	if (ctype) {
		snprintf(ct, sizeof(ct), "Content-Type: %s", ctype);
		hl[n++] = ct;
	}
	if (accept) {
		snprintf(ac, sizeof(ac), "Accept: %s", accept);
		hl[n++] = ac;
	}
	if (prefer) {
		snprintf(pf, sizeof(pf), "Prefer: %s", prefer);
		hl[n++] = pf;
	}
	memset(r, 0, sizeof(*r));
	r->status = tu_http(gw_server_port(g->srv), method, path, hl, body,
			    len, 20, &h);
	r->len = h.body_len < sizeof(r->body) ? h.body_len : sizeof(r->body) - 1;
	if (h.body)
		memcpy(r->body, h.body, r->len);
	tu_http_free(&h);
	return r->status;
}

/* gw_spool_put on a loop of this thread's, waited for. */
typedef struct put_res {
	gw_loop *loop;
	int rc;
	char err[256];
} put_res;

static void on_put(void *arg, int result, const char *err)
{
	put_res *p = arg;

	p->rc = result;
	snprintf(p->err, sizeof(p->err), "%s", err);
	gw_loop_quit(p->loop);
}

static int put_wait(gw_spool *sp, const gw_store_rec *rec, char *err,
		    size_t errlen)
{
	put_res p;

	memset(&p, 0, sizeof(p));
	p.loop = gw_loop_new(0, err, errlen);
	if (p.loop == NULL)
		return GW_STORE_ERROR;
	p.rc = GW_STORE_ERROR;
	if (gw_spool_put(sp, p.loop, rec, 1, on_put, &p) == 0)
		gw_loop_run(p.loop);
	else
		snprintf(p.err, sizeof(p.err), "not queued");
	gw_loop_free(p.loop);
	snprintf(err, errlen, "%s", p.err);
	return p.rc;
}

/* PATCH {"traces_count":n} to session sid as JSON. */
static long patch_n(const gw *g, const char *sid, long n, res *r)
{
	char path[256], body[64];

	snprintf(path, sizeof(path), "/v2/traces/sessions/%s", sid);
	snprintf(body, sizeof(body), "{\"traces_count\":%ld}", n);
	return req(g, "PATCH", path, "application/json", NULL, body,
		   strlen(body), r);
}

/* ==== What the upstream got ==== */

/* Session (after /v2/traces/sessions/) and traces_count of request i;
 * -1 when it has none. */
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

/* Waits until pred() or timeout_s. */
static bool wait_for(bool (*pred)(void *), void *arg, double timeout_s)
{
	double end = tu_mono() + timeout_s;

	while (tu_mono() < end) {
		if (pred(arg))
			return true;
		tu_sleep_ms(10);
	}
	return pred(arg);
}

typedef struct expect {
	int sessions;
	const char *prefix;  /* session k is "<prefix><k>" */
	long want[64];       /* every 1..want[k] must have arrived */
	/* results of check() */
	long order_violations;
	long duplicates;
	long missing;
} expect;

/* Checks every request recorded so far against e. */
static void check(expect *e)
{
	long last[64], seen_max[64];
	unsigned char *have[64];
	size_t i, n = fu_count(fu);
	int k;

	e->order_violations = e->duplicates = e->missing = 0;
	for (k = 0; k < e->sessions; k++) {
		last[k] = 0;
		seen_max[k] = 0;
		have[k] = calloc((size_t)e->want[k] + 2, 1);
	}
	for (i = 0; i < n; i++) {
		char sid[256];
		long v = got_n(i, sid, sizeof(sid));
		size_t pl = strlen(e->prefix);

		if (v < 0 || strncmp(sid, e->prefix, pl) != 0)
			continue;
		k = atoi(sid + pl);
		if (k < 0 || k >= e->sessions)
			continue;
		if (v < last[k])
			e->order_violations++;
		else if (v == last[k])
			e->duplicates++;
		last[k] = v;
		if (v > seen_max[k])
			seen_max[k] = v;
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

static bool all_arrived(void *arg)
{
	expect *e = arg;

	check(e);
	return e->missing == 0;
}

/* Runs the admin command with args (NULL-terminated); output in out. */
static int admin(char *out, size_t cap, const char *a0, const char *a1,
		 const char *a2, const char *a3, const char *a4)
{
	char *argv[8] = { (char *)"spool", (char *)(uintptr_t)a0,
			  (char *)(uintptr_t)a1, (char *)(uintptr_t)a2,
			  (char *)(uintptr_t)a3, (char *)(uintptr_t)a4, NULL };
	int argc = 1, rc;
	FILE *o = tmpfile(), *e = tmpfile();
	size_t n;

	while (argc < 6 && argv[argc])
		argc++;
	rc = gw_spool_admin(argc, argv, o, e);
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

/* ==== Tests ==== */

static void spool_acks_202_and_delivers_every_session_in_order(void)
{
	char dir[256];
	gw g;
	res r;
	expect e;
	int k;
	long n;
	static const char pb_body[] = { 0 };

	fu_clear(fu);
	new_dir(dir, sizeof(dir));
	CU_ASSERT_FATAL(gw_up(&g, dir, 0, true) == 0);
	memset(&e, 0, sizeof(e));
	e.sessions = 6;
	e.prefix = "ord-";
	for (n = 1; n <= 20; n++) {
		for (k = 0; k < e.sessions; k++) {
			char sid[32];

			snprintf(sid, sizeof(sid), "ord-%d", k);
			CU_ASSERT_EQUAL(patch_n(&g, sid, n, &r), 202);
			e.want[k] = n;
		}
	}
	CU_ASSERT_PTR_NOT_NULL(strstr(r.body, "\"status\":\"accepted\""));
	CU_ASSERT_PTR_NOT_NULL(strstr(r.body, "\"session_id\":\"ord-5\""));
	/* protobuf: an Ack with one Result of status 202 */
	{
		sw_result out[2];
		size_t m = 0;

		CU_ASSERT_EQUAL(req(&g, "PATCH", "/v2/traces/sessions/ord-pb",
				    "application/x-protobuf",
				    "application/x-protobuf", pb_body, 0, &r),
				202);
		CU_ASSERT_EQUAL(sw_ack_decode((const uint8_t *)r.body, r.len,
					      out, 2, &m, NULL),
				SW_OK);
		CU_ASSERT_EQUAL(m, 1);
		CU_ASSERT_EQUAL(out[0].status, 202);
	}
	/* an invalid update is refused, not stored */
	CU_ASSERT_EQUAL(req(&g, "PATCH", "/v2/traces/sessions/ord-bad",
			    "application/json", NULL, "{\"traces_count\":\"x\"}",
			    20, &r), 400);
	CU_ASSERT_TRUE(wait_for(all_arrived, &e, 20));
	CU_ASSERT_EQUAL(e.missing, 0);
	CU_ASSERT_EQUAL(e.order_violations, 0);
	CU_ASSERT_EQUAL(e.duplicates, 0);
	gw_down(&g);
}

static void spool_batch_items_get_202_and_arrive_in_seq_order(void)
{
	char dir[256];
	gw g;
	res r;
	uint8_t batch[4096];
	size_t blen = 0, m = 0, i;
	sw_result out[16];
	expect e;

	fu_clear(fu);
	new_dir(dir, sizeof(dir));
	CU_ASSERT_FATAL(gw_up(&g, dir, 0, true) == 0);
	/* seq 3, 1, 2 of one session: stored and sent as 1, 2, 3 */
	for (i = 0; i < 3; i++) {
		static const uint64_t seqs[] = { 3, 1, 2 };
		char js[64];
		sw_update *u = NULL;
		uint8_t pb[256], env[512];
		size_t pn = 0, en = 0;
		sw_session_id sid;

		snprintf(js, sizeof(js), "{\"traces_count\":%llu}",
			 (unsigned long long)seqs[i]);
		CU_ASSERT_FATAL(sw_json_parse(js, strlen(js), NULL, &u, NULL) == SW_OK);
		CU_ASSERT_FATAL(sw_pb_encode(u, pb, sizeof(pb), &pn, NULL) == SW_OK);
		sw_update_free(u);
		sw_session_id_set(&sid, "bat-0", 5);
		CU_ASSERT_FATAL(sw_envelope_encode(&sid, true, seqs[i], pb, pn, env,
						   sizeof(env), &en, NULL) == SW_OK);
		CU_ASSERT_FATAL(sw_batch_append(env, en, batch, sizeof(batch),
						&blen, NULL) == SW_OK);
	}
	CU_ASSERT_EQUAL(req(&g, "POST", "/v1/updates", "application/x-protobuf",
			    NULL, batch, blen, &r), 200);
	CU_ASSERT_EQUAL(sw_ack_decode((const uint8_t *)r.body, r.len, out, 16,
				      &m, NULL), SW_OK);
	CU_ASSERT_EQUAL(m, 3);
	for (i = 0; i < m; i++)
		CU_ASSERT_EQUAL(out[i].status, 202);
	memset(&e, 0, sizeof(e));
	e.sessions = 1;
	e.prefix = "bat-";
	e.want[0] = 3;
	CU_ASSERT_TRUE(wait_for(all_arrived, &e, 20));
	CU_ASSERT_EQUAL(e.order_violations, 0);
	CU_ASSERT_EQUAL(fu_count(fu), 3);
	gw_down(&g);
}

static void spool_rides_out_503_resets_and_429_retry_after(void)
{
	char dir[256];
	gw g;
	res r;
	expect e;
	fu_step steps[24];
	size_t ns = 0, i;
	int k;
	long n;
	double retries0 = tu_gw_metric("sessionwire_spool_retries_total");
	double t0;

	fu_clear(fu);
	for (i = 0; i < 10; i++)
		steps[ns++] = (fu_step){ FU_STATUS, 503, NULL, NULL, 0 };
	for (i = 0; i < 5; i++)
		steps[ns++] = (fu_step){ FU_RESET, 0, NULL, NULL, 0 };
	steps[ns++] = (fu_step){ FU_STATUS, 429, NULL, "1", 0 };
	steps[ns++] = (fu_step){ FU_STATUS, 502, NULL, NULL, 0 };
	steps[ns++] = (fu_step){ FU_STATUS, 408, NULL, NULL, 0 };
	fu_script(fu, steps, ns);
	new_dir(dir, sizeof(dir));
	CU_ASSERT_FATAL(gw_up(&g, dir, 0, true) == 0);
	memset(&e, 0, sizeof(e));
	e.sessions = 3;
	e.prefix = "out-";
	t0 = tu_mono();
	for (n = 1; n <= 10; n++)
		for (k = 0; k < e.sessions; k++) {
			char sid[32];

			snprintf(sid, sizeof(sid), "out-%d", k);
			CU_ASSERT_EQUAL(patch_n(&g, sid, n, &r), 202);
			e.want[k] = n;
		}
	/* acknowledged while the upstream fails: the device is not held up */
	CU_ASSERT_TRUE(tu_mono() - t0 < 10);
	CU_ASSERT_TRUE(wait_for(all_arrived, &e, 30));
	CU_ASSERT_EQUAL(e.missing, 0);
	CU_ASSERT_EQUAL(e.order_violations, 0);
	/* the failed attempts were retried (curl itself may resend once on
	 * a reused connection the upstream reset, which takes a step) */
	CU_ASSERT_TRUE(tu_gw_metric("sessionwire_spool_retries_total") - retries0 >= 14);
	CU_ASSERT_TRUE(fu_count(fu) >= 30 + 18);
	/* the spool is empty again */
	{
		double end = tu_mono() + 10;

		while (tu_gw_metric("sessionwire_spool_depth") != 0 && tu_mono() < end)
			tu_sleep_ms(5);
	}
	CU_ASSERT_EQUAL(tu_gw_metric("sessionwire_spool_depth"), 0);
	fprintf(stderr, "\n  outage: %zu upstream requests for 30 updates, %.0f retries\n",
		fu_count(fu), tu_gw_metric("sessionwire_spool_retries_total") - retries0);
	gw_down(&g);
}

/* Waits (up to 10 s) until the spool's depth gauge says every row has
 * been marked (the upstream records a request before it answers). */
static void wait_spool_empty(void)
{
	double end = tu_mono() + 10;

	while (tu_gw_metric("sessionwire_spool_depth") != 0 && tu_mono() < end)
		tu_sleep_ms(5);
}

static void spool_moves_final_4xx_to_dead_letters_and_admin_replays(void)
{
	char dir[256], out[4096];
	gw g;
	res r;
	fu_step steps[2] = {
		{ FU_STATUS, 404, "{\"message\":\"session not found\"}", NULL, 0 },
		{ FU_STATUS, 400, "{\"message\":\"bad\"}", NULL, 0 },
	};
	expect e;
	double dead0 = tu_gw_metric("sessionwire_spool_dead_letters_total");
	char idbuf[32];
	const char *p;

	fu_clear(fu);
	fu_script(fu, steps, 2);
	new_dir(dir, sizeof(dir));
	CU_ASSERT_FATAL(gw_up(&g, dir, 0, true) == 0);
	CU_ASSERT_EQUAL(patch_n(&g, "dl-0", 1, &r), 202);
	CU_ASSERT_EQUAL(patch_n(&g, "dl-0", 2, &r), 202);
	CU_ASSERT_EQUAL(patch_n(&g, "dl-0", 3, &r), 202);
	/* 1 and 2 dead, 3 delivered: a dead letter does not block its session */
	memset(&e, 0, sizeof(e));
	e.sessions = 1;
	e.prefix = "dl-";
	e.want[0] = 3;
	CU_ASSERT_TRUE(wait_for(all_arrived, &e, 20));
	CU_ASSERT_EQUAL(fu_count(fu), 3);
	CU_ASSERT_EQUAL(tu_gw_metric("sessionwire_spool_dead_letters_total") - dead0, 2);
	CU_ASSERT_EQUAL(tu_gw_metric("sessionwire_spool_dead_letters"), 2);

	/* the upstream records a request before answering it: wait for the
	 * last mark */
	wait_spool_empty();
	CU_ASSERT_EQUAL(admin(out, sizeof(out), "stats", "--spool", dir, NULL, NULL), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"dead_letters\":2"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"depth\":0"));
	CU_ASSERT_EQUAL(admin(out, sizeof(out), "list", "--spool", dir, NULL, NULL), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"status\":404"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "session not found"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"session_id\":\"dl-0\""));
	/* retry the first (the 404): it goes upstream again */
	p = strstr(out, "\"id\":");
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	snprintf(idbuf, sizeof(idbuf), "%ld", strtol(p + 5, NULL, 10));
	CU_ASSERT_EQUAL(admin(out, sizeof(out), "retry", "--spool", dir, "--id", idbuf), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"retried\":1"));
	CU_ASSERT_EQUAL(fu_wait_count(fu, 4, 20), 4);
	wait_spool_empty(); /* its delivery marked */
	{
		char sid[64];

		CU_ASSERT_EQUAL(got_n(3, sid, sizeof(sid)), 1);
	}
	/* retrying it again: no such dead letter any more */
	CU_ASSERT_EQUAL(admin(out, sizeof(out), "retry", "--spool", dir, "--id", idbuf), 1);
	/* drop the rest */
	CU_ASSERT_EQUAL(admin(out, sizeof(out), "drop", "--spool", dir, "--all", NULL), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"dropped\":1"));
	CU_ASSERT_EQUAL(admin(out, sizeof(out), "stats", "--spool", dir, NULL, NULL), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"dead_letters\":0"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"bytes\":0"));
	/* usage errors */
	CU_ASSERT_EQUAL(admin(out, sizeof(out), "retry", "--spool", dir, NULL, NULL), 2);
	CU_ASSERT_EQUAL(admin(out, sizeof(out), "frobnicate", "--spool", dir, NULL, NULL), 2);
	CU_ASSERT_EQUAL(admin(out, sizeof(out), "stats", NULL, NULL, NULL, NULL), 2);
	CU_ASSERT_EQUAL(admin(out, sizeof(out), "--help", NULL, NULL, NULL, NULL), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "retry --id N | --all"));
	CU_ASSERT_EQUAL(admin(out, sizeof(out), "stats", "--spool", root, NULL, NULL), 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "no spool at"));
	gw_down(&g);
}

/* The heads table holds exactly each session's first row and its due
 * time. Returns the number of differences (0 when it matches). */
static long heads_mismatch(const char *dir)
{
	static const char q[] =
		"SELECT (SELECT count(*) FROM heads) -"
		" (SELECT count(DISTINCT sid) FROM spool) +"
		" (SELECT count(*) FROM (SELECT sid, min(id) AS id FROM spool"
		"  GROUP BY sid) m LEFT JOIN heads h ON h.sid = m.sid AND"
		"  h.id = m.id AND h.due_ms = (SELECT max(next_attempt_ms,"
		"  arrived_ms) FROM spool WHERE id = m.id) WHERE h.sid IS NULL)";
	char db[300];
	sqlite3 *h = NULL;
	sqlite3_stmt *st = NULL;
	long v = -1;

	snprintf(db, sizeof(db), "%s/spool.db", dir);
	if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
	    sqlite3_prepare_v2(h, q, -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(h);
	return v;
}

/* The triggers keep heads right through stores, every kind of mark, the
 * admin command's replays and drops (another process), and a restart. */
static void spool_heads_follow_every_change(void)
{
	char dir[256], out[4096], err[256];
	gw_store_rec rec;
	gw_spool_mark_rec m;
	gw g;
	int k;

	new_dir(dir, sizeof(dir));
	CU_ASSERT_FATAL(gw_up(&g, dir, 0, false) == 0);
	memset(&rec, 0, sizeof(rec));
	rec.path = "/v2/traces/sessions/x";
	rec.json = "{}";
	rec.json_len = 2;
	for (k = 0; k < 12; k++) { /* rows 1..12: sessions a, b, c in turn */
		rec.sid = k % 3 == 0 ? "hd-a" : k % 3 == 1 ? "hd-b" : "hd-c";
		rec.sid_len = 4;
		CU_ASSERT_EQUAL(put_wait(g.sp, &rec, err, sizeof(err)), GW_STORE_OK);
	}
	CU_ASSERT_EQUAL(heads_mismatch(dir), 0);
	memset(&m, 0, sizeof(m));
	m.mark = GW_MARK_DONE; /* a's head goes: row 4 is a's next */
	m.id = 1;
	CU_ASSERT_EQUAL(gw_spool_mark_wait(g.sp, &m), 0);
	CU_ASSERT_EQUAL(heads_mismatch(dir), 0);
	m.mark = GW_MARK_RETRY; /* b's head later: its due moves */
	m.id = 2;
	m.attempts = 1;
	m.next_ms = gw_spool__now_ms() + 60000;
	CU_ASSERT_EQUAL(gw_spool_mark_wait(g.sp, &m), 0);
	CU_ASSERT_EQUAL(heads_mismatch(dir), 0);
	m.mark = GW_MARK_RETRY; /* a row that is not a head: nothing moves */
	m.id = 8;
	CU_ASSERT_EQUAL(gw_spool_mark_wait(g.sp, &m), 0);
	CU_ASSERT_EQUAL(heads_mismatch(dir), 0);
	m.mark = GW_MARK_DEAD; /* c's head dies */
	m.id = 3;
	m.status = 404;
	CU_ASSERT_EQUAL(gw_spool_mark_wait(g.sp, &m), 0);
	CU_ASSERT_EQUAL(heads_mismatch(dir), 0);
	for (k = 5; k <= 12; k += 3) { /* b's rows 5, 8, 11 all go */
		m.mark = GW_MARK_DONE;
		m.id = k;
		CU_ASSERT_EQUAL(gw_spool_mark_wait(g.sp, &m), 0);
	}
	m.id = 2;
	CU_ASSERT_EQUAL(gw_spool_mark_wait(g.sp, &m), 0); /* b is empty */
	CU_ASSERT_EQUAL(heads_mismatch(dir), 0);
	/* the admin command, another process: the dead row back, then gone */
	CU_ASSERT_EQUAL(admin(out, sizeof(out), "retry", "--spool", dir, "--all", NULL), 0);
	CU_ASSERT_EQUAL(heads_mismatch(dir), 0);
	gw_down(&g);
	/* a restart rebuilds it from the rows */
	CU_ASSERT_FATAL(gw_up(&g, dir, 0, false) == 0);
	CU_ASSERT_EQUAL(heads_mismatch(dir), 0);
	gw_down(&g);
}

static void spool_full_answers_507_and_loses_nothing(void)
{
	char dir[256];
	gw g;
	res r;
	expect e;
	long n, acked = 0, refused = 0;

	fu_clear(fu);
	new_dir(dir, sizeof(dir));
	/* no forwarders yet: nothing drains */
	CU_ASSERT_FATAL(gw_up(&g, dir, 4096, false) == 0);
	for (n = 1; n <= 200 && refused < 3; n++) {
		long st = patch_n(&g, "full-0", acked + 1, &r);

		if (st == 202)
			acked++;
		else {
			CU_ASSERT_EQUAL(st, 507);
			CU_ASSERT_PTR_NOT_NULL(strstr(r.body, "spool is full"));
			CU_ASSERT_PTR_NOT_NULL(strstr(r.body, "spool_full"));
			refused++;
		}
	}
	CU_ASSERT_TRUE(acked > 5);
	CU_ASSERT_EQUAL(refused, 3);
	CU_ASSERT_EQUAL(tu_gw_metric("sessionwire_spool_depth"), acked);
	/* drain: now every acknowledged update arrives, in order */
	CU_ASSERT_FATAL(gw_forward_now(&g) == 0);
	memset(&e, 0, sizeof(e));
	e.sessions = 1;
	e.prefix = "full-";
	e.want[0] = acked;
	CU_ASSERT_TRUE(wait_for(all_arrived, &e, 20));
	CU_ASSERT_EQUAL(e.order_violations, 0);
	CU_ASSERT_EQUAL(fu_count(fu), (size_t)acked);
	/* and there is room again */
	{
		double end = tu_mono() + 10;

		while (tu_gw_metric("sessionwire_spool_depth") != 0 && tu_mono() < end)
			tu_sleep_ms(5);
	}
	CU_ASSERT_EQUAL(patch_n(&g, "full-0", acked + 1, &r), 202);
	gw_down(&g);
}

static void spool_restart_resumes_where_it_stopped(void)
{
	char dir[256];
	gw g;
	res r;
	expect e;
	long n;

	fu_clear(fu);
	new_dir(dir, sizeof(dir));
	CU_ASSERT_FATAL(gw_up(&g, dir, 0, false) == 0);
	for (n = 1; n <= 15; n++)
		CU_ASSERT_EQUAL(patch_n(&g, n % 2 ? "rs-0" : "rs-1", n, &r), 202);
	gw_down(&g);
	CU_ASSERT_EQUAL(fu_count(fu), 0);
	CU_ASSERT_FATAL(gw_up(&g, dir, 0, true) == 0);
	memset(&e, 0, sizeof(e));
	e.sessions = 2;
	e.prefix = "rs-";
	CU_ASSERT_TRUE(wait_for(all_arrived, &e, 1)); /* trivially */
	/* rs-0 got the odd n, rs-1 the even: check all 15 arrived */
	CU_ASSERT_EQUAL(fu_wait_count(fu, 15, 20), 15);
	check(&e);
	CU_ASSERT_EQUAL(e.order_violations, 0);
	CU_ASSERT_EQUAL(e.duplicates, 0);
	gw_down(&g);
}

/* A row named in DIR/inflight (being sent when the process died) waits
 * upstream_timeout_ms after the restart, so a late copy from the dead
 * process cannot land after its session's next update; other sessions
 * go at once, and the slots are empty again afterwards. */
static void spool_holds_rows_in_flight_at_a_crash(void)
{
	char dir[256], file[300], sid[256];
	int64_t slots[3] = { 0, 1, 0 }; /* row 1: "hf-0" n=1 */
	double t0, first = 0, held = 0;
	struct stat sb;
	gw g;
	res r;
	int fd;

	fu_clear(fu);
	new_dir(dir, sizeof(dir));
	CU_ASSERT_FATAL(gw_up(&g, dir, 0, false) == 0);
	CU_ASSERT_EQUAL(patch_n(&g, "hf-0", 1, &r), 202);
	CU_ASSERT_EQUAL(patch_n(&g, "hf-0", 2, &r), 202);
	CU_ASSERT_EQUAL(patch_n(&g, "hf-1", 3, &r), 202);
	gw_down(&g);
	snprintf(file, sizeof(file), "%s/inflight", dir);
	fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT(write(fd, slots, sizeof(slots)) == (ssize_t)sizeof(slots));
	close(fd);

	upstream_timeout_ms = 1500;
	t0 = tu_mono();
	CU_ASSERT_FATAL(gw_up(&g, dir, 0, true) == 0);
	upstream_timeout_ms = 3000;
	while (tu_mono() - t0 < 10) {
		size_t c = fu_count(fu);

		if (first == 0 && c >= 1)
			first = tu_mono() - t0;
		if (held == 0 && c >= 2)
			held = tu_mono() - t0;
		if (c >= 3)
			break;
		tu_sleep_ms(5);
	}
	CU_ASSERT_EQUAL_FATAL(fu_count(fu), 3);
	/* hf-1 at once, hf-0 (both rows, in order) after the hold */
	CU_ASSERT_EQUAL(got_n(0, sid, sizeof(sid)), 3);
	CU_ASSERT_STRING_EQUAL(sid, "hf-1");
	CU_ASSERT(first < 1.0);
	CU_ASSERT(held >= 1.4);
	CU_ASSERT_EQUAL(got_n(1, sid, sizeof(sid)), 1);
	CU_ASSERT_STRING_EQUAL(sid, "hf-0");
	CU_ASSERT_EQUAL(got_n(2, sid, sizeof(sid)), 2);
	gw_down(&g);
	/* one slot per forwarder thread, all clear after a clean stop */
	CU_ASSERT_EQUAL(stat(file, &sb), 0);
	CU_ASSERT_EQUAL(sb.st_size, 4 * (off_t)sizeof(int64_t));
	fd = open(file, O_RDONLY);
	if (fd >= 0) {
		int64_t now[4] = { -1, -1, -1, -1 };

		CU_ASSERT(read(fd, now, sizeof(now)) == (ssize_t)sizeof(now));
		CU_ASSERT(now[0] == 0 && now[1] == 0 && now[2] == 0 && now[3] == 0);
		close(fd);
	}
}

/* A retry that is due goes before updates that arrived after it became
 * due: the forwarders pick heads in the order they became due, not
 * never-tried ones first (those would starve it under steady inflow). */
static void spool_due_retry_goes_before_later_arrivals(void)
{
	static const fu_step once503 = { FU_STATUS, 503, NULL, "1", 0 };
	char dir[256], sid[256];
	size_t k, first_after, at = (size_t)-1;
	gw g;
	res r;
	long n;

	fu_clear(fu);
	fu_script_for(fu, "/fair-r", &once503, 1);
	new_dir(dir, sizeof(dir));
	/* fair-r fails once (Retry-After: 1 s), then the gateway stops */
	CU_ASSERT_FATAL(gw_up(&g, dir, 0, true) == 0);
	CU_ASSERT_EQUAL(patch_n(&g, "fair-r", 1, &r), 202);
	fu_wait_count(fu, 1, 10);
	tu_sleep_ms(100); /* its retry mark committed */
	gw_down(&g);
	CU_ASSERT_EQUAL_FATAL(fu_count(fu), 1);
	/* the retry falls due; then 40 updates of other sessions arrive */
	tu_sleep_ms(1200);
	CU_ASSERT_FATAL(gw_up(&g, dir, 0, false) == 0);
	for (n = 0; n < 40; n++) {
		char s2[32];

		snprintf(s2, sizeof(s2), "fair-x%ld", n);
		CU_ASSERT_EQUAL(patch_n(&g, s2, n + 2, &r), 202);
	}
	gw_down(&g);
	first_after = fu_count(fu);
	/* forwarding again: fair-r is among the first picked. One loop, so
	 * one lane sees every session (lanes split sessions by a hash; on
	 * a busy machine one lane can start well before another) */
	CU_ASSERT_FATAL(gw_up_loops(&g, dir, 0, true, 1) == 0);
	fu_wait_count(fu, first_after + 41, 10);
	gw_down(&g);
	CU_ASSERT_EQUAL(fu_count(fu), first_after + 41);
	for (k = first_after; k < fu_count(fu); k++) {
		if (got_n(k, sid, sizeof(sid)) == 1 && !strcmp(sid, "fair-r")) {
			at = k - first_after;
			break;
		}
	}
	/* its 4 forwarding chains pick at once, and a fifth update goes only
	 * after one of theirs was answered: among the first 4 to arrive (it
	 * would be the last, 40, if never-tried rows went first) */
	CU_ASSERT(at < 4);
	if (at >= 4)
		fprintf(stderr, "\nthe due retry went out as number %zu of 41\n", at);
}

static void spool_refuses_a_directory_it_cannot_use(void)
{
	char dir[256], file[300], sub[400], err[512];
	gw_config c;
	gw_spool *sp;
	FILE *f;

	new_dir(dir, sizeof(dir));
	CU_ASSERT_FATAL(mkdir(dir, 0700) == 0);
	snprintf(file, sizeof(file), "%s/plainfile", dir);
	f = fopen(file, "w");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	fclose(f);
	/* a file where the directory should be */
	cfg_spool(&c, file);
	err[0] = '\0';
	sp = gw_spool_open(&c, err, sizeof(err));
	CU_ASSERT_PTR_NULL(sp);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "not a directory"));
	gw_spool_close(sp);
	/* below a file: cannot be created */
	snprintf(sub, sizeof(sub), "%s/sub", file);
	cfg_spool(&c, sub);
	err[0] = '\0';
	sp = gw_spool_open(&c, err, sizeof(err));
	CU_ASSERT_PTR_NULL(sp);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "cannot create the directory"));
	gw_spool_close(sp);
	/* spool.db is a directory */
	snprintf(sub, sizeof(sub), "%s/spool.db", dir);
	CU_ASSERT_FATAL(mkdir(sub, 0700) == 0);
	cfg_spool(&c, dir);
	err[0] = '\0';
	sp = gw_spool_open(&c, err, sizeof(err));
	CU_ASSERT_PTR_NULL(sp);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "spool.db"));
	gw_spool_close(sp);
	/* a second gateway on the same spool */
	{
		char d2[256];
		gw_config c2;
		gw_spool *a, *b;

		new_dir(d2, sizeof(d2));
		cfg_spool(&c2, d2);
		a = gw_spool_open(&c2, err, sizeof(err));
		CU_ASSERT_PTR_NOT_NULL(a);
		err[0] = '\0';
		b = gw_spool_open(&c2, err, sizeof(err));
		CU_ASSERT_PTR_NULL(b);
		CU_ASSERT_PTR_NOT_NULL(strstr(err, "another session-gateway"));
		gw_spool_close(b);
		gw_spool_close(a);
	}
}

/* Writes n bytes of content to path (creating it). */
static int write_file(const char *path, const void *p, size_t n)
{
	FILE *f = fopen(path, "wb");
	int ok;

	if (f == NULL)
		return -1;
	ok = fwrite(p, 1, n, f) == n;
	return fclose(f) == 0 && ok ? 0 : -1;
}

static void spool_refuses_a_damaged_database_cleanly(void)
{
	char dir[256], db[300], err[512];
	gw_config c;
	gw_spool *sp;
	gw g;
	res r;
	long n;
	struct stat stb;

	/* garbage where the database should be */
	new_dir(dir, sizeof(dir));
	CU_ASSERT_FATAL(mkdir(dir, 0700) == 0);
	snprintf(db, sizeof(db), "%s/spool.db", dir);
	{
		char junk[8192];
		size_t i;

		for (i = 0; i < sizeof(junk); i++)
			junk[i] = (char)(i * 131 + 7);
		CU_ASSERT_FATAL(write_file(db, junk, sizeof(junk)) == 0);
	}
	cfg_spool(&c, dir);
	err[0] = '\0';
	sp = gw_spool_open(&c, err, sizeof(err));
	CU_ASSERT_PTR_NULL(sp);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "damaged"));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "move it"));
	gw_spool_close(sp);

	/* a real spool, then cut short at several lengths, then a page
	 * overwritten in the middle: a clean error or a usable spool,
	 * never a crash */
	new_dir(dir, sizeof(dir));
	snprintf(db, sizeof(db), "%s/spool.db", dir);
	CU_ASSERT_FATAL(gw_up(&g, dir, 0, false) == 0);
	for (n = 1; n <= 200; n++)
		CU_ASSERT_EQUAL(patch_n(&g, "tr-0", n, &r), 202);
	gw_down(&g);
	CU_ASSERT_FATAL(stat(db, &stb) == 0);
	{
		size_t full = (size_t)stb.st_size, len;
		char *orig;
		size_t olen = 0;
		static const double cuts[] = { 0.0, 0.01, 0.3, 0.5, 0.77, 0.99 };
		size_t i;
		int opened = 0, refused = 0;

		orig = tu_read_file(db, &olen);
		CU_ASSERT_PTR_NOT_NULL_FATAL(orig);
		CU_ASSERT_EQUAL(olen, full);
		for (i = 0; i < sizeof(cuts) / sizeof(cuts[0]) + 1; i++) {
			cfg_spool(&c, dir);
			if (i < sizeof(cuts) / sizeof(cuts[0])) {
				len = (size_t)((double)full * cuts[i]);
				CU_ASSERT_FATAL(write_file(db, orig, len) == 0);
			} else {
				/* a page of junk in the middle */
				memset(orig + full / 2, 0x5a, 4096 < full / 2 ? 4096 : full / 2);
				CU_ASSERT_FATAL(write_file(db, orig, full) == 0);
			}
			err[0] = '\0';
			sp = gw_spool_open(&c, err, sizeof(err));
			if (sp != NULL) {
				gw_store_rec rec = { "tr-1", 4, 0, "/v2/traces/sessions/tr-1",
						     "{}", 2, NULL };
				int rc = put_wait(sp, &rec, err, sizeof(err));

				/* a usable spool stores or says why not */
				CU_ASSERT_TRUE(rc == GW_STORE_OK || (rc == GW_STORE_ERROR && err[0]));
				opened++;
			} else {
				CU_ASSERT_TRUE(err[0] != '\0');
				refused++;
			}
			gw_spool_close(sp);
			unlink(db);
		}
		/* empty file: a new spool; the damaged ones refused */
		CU_ASSERT_TRUE(opened >= 1);
		CU_ASSERT_TRUE(refused >= 1);
		free(orig);
	}
}

enum { GC_THREADS = 16, GC_EACH = 40 };
static gw *gc_gw;
static long gc_ok[GC_THREADS];

/* One device of spool_group_commit_shares_fsyncs: GC_EACH PATCHes of its
 * own session, one after another. */
static void *gc_sender(void *arg)
{
	long k = (long)(intptr_t)arg, n;
	char sid[32];
	res r;

	snprintf(sid, sizeof(sid), "gc-%ld", k);
	for (n = 1; n <= GC_EACH; n++)
		if (patch_n(gc_gw, sid, n, &r) == 202)
			gc_ok[k]++;
	return NULL;
}

static void spool_group_commit_shares_fsyncs(void)
{
	char dir[256];
	gw g;
	pthread_t th[GC_THREADS];
	double c0, u0, c1, u1, t0, dt;
	long i, ok = 0;

	fu_clear(fu);
	new_dir(dir, sizeof(dir));
	CU_ASSERT_FATAL(gw_up(&g, dir, 0, false) == 0);
	gc_gw = &g;
	c0 = tu_gw_metric("sessionwire_spool_commits_total");
	u0 = tu_gw_metric("sessionwire_spool_stored_total");
	t0 = tu_mono();
	for (i = 0; i < GC_THREADS; i++) {
		gc_ok[i] = 0;
		CU_ASSERT_FATAL(pthread_create(&th[i], NULL, gc_sender,
					       (void *)(intptr_t)i) == 0);
	}
	for (i = 0; i < GC_THREADS; i++) {
		pthread_join(th[i], NULL);
		ok += gc_ok[i];
	}
	dt = tu_mono() - t0;
	c1 = tu_gw_metric("sessionwire_spool_commits_total");
	u1 = tu_gw_metric("sessionwire_spool_stored_total");
	CU_ASSERT_EQUAL(ok, GC_THREADS * GC_EACH);
	CU_ASSERT_EQUAL(u1 - u0, GC_THREADS * GC_EACH);
	/* concurrent arrivals share commits: fewer fsyncs than updates */
	CU_ASSERT_TRUE(c1 - c0 >= 1);
	CU_ASSERT_TRUE(c1 - c0 < u1 - u0);
	fprintf(stderr, "\n  spool group commit: %d updates from %d threads in %.2f s (%.0f/s), %.0f commits = %.3f fsyncs per update\n",
		GC_THREADS * GC_EACH, GC_THREADS, dt, GC_THREADS * GC_EACH / dt,
		c1 - c0, (c1 - c0) / (u1 - u0));
	gw_down(&g);
}

/* Runs session-gateway with a spool that cannot be used; returns its exit
 * status, its output in out. */
static int run_program_on(const char *spool, char *out, size_t cap)
{
	char bin[512], cmd[1400];
	FILE *p;
	size_t n;
	int st;

	tu_bin("session-gateway", bin, sizeof(bin));
	snprintf(cmd, sizeof(cmd),
		 "ORQ_API_KEY=k timeout 20 '%s' --listen 127.0.0.1:0 --allow-anonymous --upstream http://127.0.0.1:9 --spool '%s' 2>&1",
		 bin, spool);
	p = popen(cmd, "r");
	if (p == NULL)
		return -1;
	n = fread(out, 1, cap - 1, p);
	out[n] = '\0';
	st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void program_exits_1_with_a_message_on_a_bad_spool(void)
{
	char dir[256], sub[400], out[4096];
	FILE *f;

	new_dir(dir, sizeof(dir));
	CU_ASSERT_FATAL(mkdir(dir, 0700) == 0);
	snprintf(sub, sizeof(sub), "%s/file", dir);
	f = fopen(sub, "w");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	fclose(f);
	snprintf(sub, sizeof(sub), "%s/file/spool", dir);
	CU_ASSERT_EQUAL(run_program_on(sub, out, sizeof(out)), 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "cannot create the directory"));
	/* a damaged database */
	snprintf(sub, sizeof(sub), "%s/spool.db", dir);
	CU_ASSERT_FATAL(write_file(sub, "SQLite format 3\0 and then nonsense, not a database at all .........................................................................................", 140) == 0);
	CU_ASSERT_EQUAL(run_program_on(dir, out, sizeof(out)), 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "damaged"));
	CU_ASSERT_PTR_NULL(strstr(out, "listening on"));
}

static void direct_mode_without_spool_forwards_as_before(void)
{
	gw_config c;
	gw_upstream *up;
	gw_server *srv;
	char err[256];
	gw g;
	res r;

	fu_clear(fu);
	cfg_spool(&c, "");
	up = gw_upstream_new(&c, err, sizeof(err));
	CU_ASSERT_PTR_NOT_NULL_FATAL(up);
	srv = gw_server_start(&c, up, NULL, err, sizeof(err));
	CU_ASSERT_PTR_NOT_NULL_FATAL(srv);
	memset(&g, 0, sizeof(g));
	g.srv = srv;
	/* the upstream's own answer comes back, synchronously */
	CU_ASSERT_EQUAL(patch_n(&g, "direct-0", 1, &r), 200);
	CU_ASSERT_EQUAL(fu_count(fu), 1);
	CU_ASSERT_PTR_NULL(strstr(r.body, "accepted"));
	gw_server_stop(srv);
	gw_upstream_free(up);
}

int init_spool_tests(void)
{
	CU_pSuite s = CU_add_suite("spool", suite_init, suite_clean);

	if (s == NULL)
		return -1;
	CU_add_test(s, "spool_acks_202_and_delivers_every_session_in_order", spool_acks_202_and_delivers_every_session_in_order);
	CU_add_test(s, "spool_batch_items_get_202_and_arrive_in_seq_order", spool_batch_items_get_202_and_arrive_in_seq_order);
	CU_add_test(s, "spool_rides_out_503_resets_and_429_retry_after", spool_rides_out_503_resets_and_429_retry_after);
	CU_add_test(s, "spool_moves_final_4xx_to_dead_letters_and_admin_replays", spool_moves_final_4xx_to_dead_letters_and_admin_replays);
	CU_add_test(s, "spool_heads_follow_every_change", spool_heads_follow_every_change);
	CU_add_test(s, "spool_full_answers_507_and_loses_nothing", spool_full_answers_507_and_loses_nothing);
	CU_add_test(s, "spool_restart_resumes_where_it_stopped", spool_restart_resumes_where_it_stopped);
	CU_add_test(s, "spool_holds_rows_in_flight_at_a_crash", spool_holds_rows_in_flight_at_a_crash);
	CU_add_test(s, "spool_due_retry_goes_before_later_arrivals", spool_due_retry_goes_before_later_arrivals);
	CU_add_test(s, "spool_refuses_a_directory_it_cannot_use", spool_refuses_a_directory_it_cannot_use);
	CU_add_test(s, "spool_refuses_a_damaged_database_cleanly", spool_refuses_a_damaged_database_cleanly);
	CU_add_test(s, "spool_group_commit_shares_fsyncs", spool_group_commit_shares_fsyncs);
	CU_add_test(s, "program_exits_1_with_a_message_on_a_bad_spool", program_exits_1_with_a_message_on_a_bad_spool);
	CU_add_test(s, "direct_mode_without_spool_forwards_as_before", direct_mode_without_spool_forwards_as_before);
	return 0;
}
