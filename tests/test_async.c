/* test_async.c - the asynchronous upstream path: gw_upstream_patch_async
 * on its own (answers, retries, Retry-After timers, draining at free) and
 * the direct-mode server that suspends a PATCH while its update is away:
 * more updates in flight than worker threads, clients that leave while
 * suspended, gw_server_stop and SIGTERM draining what is in flight. */
#include <CUnit/CUnit.h>
#include <arpa/inet.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fake_upstream.h"
#include "gw.h"
#include "testutil.h"

#define KEY "sk-org-ASYNC-key-81c2"
#define N_CLIENTS_MAX 64

static char org_key[] = KEY;
static fake_upstream *fu;

static void cfg_small(gw_config *c)
{
	tu_gw_config(c, fu_port(fu), org_key);
	c->allow_anonymous = true;
	c->upstream_timeout_ms = 5000;
}

/* ==== gw_upstream_patch_async on its own ==== */

typedef struct waiter {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int calls;
	gw_response resp;
	double at;
} waiter;

static void waiter_init(waiter *w)
{
	memset(w, 0, sizeof(*w));
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
}

static void waiter_free(waiter *w)
{
	gw_response_free(&w->resp);
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->mu);
}

/* the signature is gw_upstream_done_fn's */
/* cppcheck-suppress constParameter */
static void on_done(void *ud, gw_response *resp)
{
	waiter *w = ud;

	pthread_mutex_lock(&w->mu);
	gw_response_free(&w->resp);
	w->resp = *resp;
	w->calls++;
	w->at = tu_mono();
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

/* Waits up to wait_s for done; returns the number of calls so far. */
static int waiter_wait(waiter *w, double wait_s)
{
	double end = tu_mono() + wait_s;
	int n;

	pthread_mutex_lock(&w->mu);
	while (w->calls == 0 && tu_mono() < end) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 10 * 1000 * 1000;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&w->cv, &w->mu, &ts);
	}
	n = w->calls;
	pthread_mutex_unlock(&w->mu);
	return n;
}

static const char body1[] = "{\"duration\":1}";

static void async_call_answers_like_the_blocking_one(void)
{
	gw_config c;
	tu_up *up;
	char err[256] = "";
	waiter w;
	fu_request rq;
	gw_response b;

	cfg_small(&c);
	up = tu_up_new(&c, err, sizeof(err));
	CU_ASSERT_PTR_NOT_NULL_FATAL(up);
	fu_clear(fu);
	waiter_init(&w);
	CU_ASSERT_EQUAL(tu_up_patch_async(up, "/v2/traces/sessions/a1",
						body1, strlen(body1), on_done,
						&w), 0);
	CU_ASSERT_EQUAL(waiter_wait(&w, 10), 1);
	CU_ASSERT_EQUAL(w.resp.status, 200);
	CU_ASSERT_EQUAL(w.resp.attempts, 1);
	CU_ASSERT_PTR_NOT_NULL(w.resp.body);
	CU_ASSERT_PTR_NOT_NULL(strstr(w.resp.content_type, "application/json"));
	CU_ASSERT_EQUAL(fu_count(fu), 1);
	if (fu_get(fu, 0, &rq)) {
		CU_ASSERT_STRING_EQUAL(rq.method, "PATCH");
		CU_ASSERT_STRING_EQUAL(rq.path, "/v2/traces/sessions/a1");
		CU_ASSERT_STRING_EQUAL(rq.body, body1);
		CU_ASSERT_STRING_EQUAL(rq.authorization, "Bearer " KEY);
		CU_ASSERT_STRING_EQUAL(rq.content_type, "application/json");
		fu_request_free(&rq);
	}
	/* the blocking call answers the same */
	CU_ASSERT_EQUAL(tu_up_patch(up, "/v2/traces/sessions/a1", body1,
					  strlen(body1), &b), 0);
	CU_ASSERT_EQUAL(b.status, w.resp.status);
	CU_ASSERT_EQUAL(b.body_len, w.resp.body_len);
	gw_response_free(&b);
	waiter_free(&w);
	tu_up_free(up);
}

static void async_call_retries_statuses_and_resets(void)
{
	static const fu_step steps[] = {
		/* first, on a new connection (a reset on a reused one
		 * makes libcurl resend by itself) */
		{ FU_RESET, 0, NULL, NULL, 0 },
		{ FU_STATUS, 503, NULL, NULL, 0 },
		{ FU_STATUS, 502, NULL, NULL, 0 },
	};
	static const fu_step s503 = { FU_STATUS, 503, NULL, NULL, 0 };
	gw_config c;
	tu_up *up;
	char err[256] = "";
	waiter w;
	double t0;

	cfg_small(&c);
	c.max_attempts = 4;
	up = tu_up_new(&c, err, sizeof(err));
	CU_ASSERT_PTR_NOT_NULL_FATAL(up);
	fu_clear(fu);
	fu_script(fu, steps, 3);
	waiter_init(&w);
	t0 = tu_mono();
	CU_ASSERT_EQUAL(tu_up_patch_async(up, "/v2/traces/sessions/r",
						body1, strlen(body1), on_done,
						&w), 0);
	CU_ASSERT_EQUAL(waiter_wait(&w, 10), 1);
	/* backoffs of at most 5 ms: their timers fire at once */
	CU_ASSERT(w.at - t0 < 1.0);
	CU_ASSERT_EQUAL(w.resp.status, 200);
	CU_ASSERT_EQUAL(w.resp.attempts, 4);
	CU_ASSERT_EQUAL(fu_count(fu), 4);
	waiter_free(&w);

	/* attempts used up: the last answer stands */
	fu_clear(fu);
	fu_script(fu, &s503, 1);
	fu_script(fu, &s503, 1);
	c.max_attempts = 2;
	waiter_init(&w);
	CU_ASSERT_EQUAL(tu_up_patch_async(up, "/v2/traces/sessions/r",
						body1, strlen(body1), on_done,
						&w), 0);
	CU_ASSERT_EQUAL(waiter_wait(&w, 10), 1);
	CU_ASSERT_EQUAL(w.resp.status, 503);
	CU_ASSERT_EQUAL(w.resp.attempts, 2);
	CU_ASSERT_EQUAL(fu_count(fu), 2);
	waiter_free(&w);

	/* a 4xx is not retried */
	fu_clear(fu);
	{
		fu_step s404 = { FU_STATUS, 404, NULL, NULL, 0 };

		fu_script(fu, &s404, 1);
	}
	waiter_init(&w);
	CU_ASSERT_EQUAL(tu_up_patch_async(up, "/v2/traces/sessions/r",
						body1, strlen(body1), on_done,
						&w), 0);
	CU_ASSERT_EQUAL(waiter_wait(&w, 10), 1);
	CU_ASSERT_EQUAL(w.resp.status, 404);
	CU_ASSERT_EQUAL(w.resp.attempts, 1);
	waiter_free(&w);
	tu_up_free(up);
}

static void async_retry_after_waits_without_holding_others(void)
{
	fu_step s429 = { FU_STATUS, 429, NULL, "1", 0 };
	gw_config c;
	tu_up *up;
	char err[256] = "";
	waiter slow, fast;
	double t0;

	cfg_small(&c);
	c.max_attempts = 3;
	up = tu_up_new(&c, err, sizeof(err));
	CU_ASSERT_PTR_NOT_NULL_FATAL(up);
	fu_clear(fu);
	fu_script(fu, &s429, 1);
	waiter_init(&slow);
	waiter_init(&fast);
	t0 = tu_mono();
	CU_ASSERT_EQUAL(tu_up_patch_async(up, "/v2/traces/sessions/s",
						body1, strlen(body1), on_done,
						&slow), 0);
	CU_ASSERT_EQUAL(fu_wait_count(fu, 1, 10), 1);
	/* while the first backs off for a second, another goes through */
	CU_ASSERT_EQUAL(tu_up_patch_async(up, "/v2/traces/sessions/f",
						body1, strlen(body1), on_done,
						&fast), 0);
	CU_ASSERT_EQUAL(waiter_wait(&fast, 10), 1);
	CU_ASSERT_EQUAL(fast.resp.status, 200);
	CU_ASSERT(fast.at - t0 < 0.9);
	CU_ASSERT_EQUAL(waiter_wait(&slow, 10), 1);
	CU_ASSERT_EQUAL(slow.resp.status, 200);
	CU_ASSERT_EQUAL(slow.resp.attempts, 2);
	CU_ASSERT(slow.at - t0 >= 0.95);
	waiter_free(&slow);
	waiter_free(&fast);
	tu_up_free(up);
}

static void async_free_finishes_calls_backing_off(void)
{
	fu_step s503 = { FU_STATUS, 503, NULL, "30", 0 };
	gw_config c;
	tu_up *up;
	char err[256] = "";
	waiter w;
	double t0;

	cfg_small(&c);
	c.max_attempts = 4;
	c.retry_budget_ms = 60000;
	up = tu_up_new(&c, err, sizeof(err));
	CU_ASSERT_PTR_NOT_NULL_FATAL(up);
	fu_clear(fu);
	fu_script(fu, &s503, 1);
	waiter_init(&w);
	CU_ASSERT_EQUAL(tu_up_patch_async(up, "/v2/traces/sessions/b",
						body1, strlen(body1), on_done,
						&w), 0);
	CU_ASSERT_EQUAL(fu_wait_count(fu, 1, 10), 1);
	t0 = tu_mono();
	tu_up_free(up);
	/* done was called (with the 503) before free returned, at once */
	CU_ASSERT_EQUAL(w.calls, 1);
	CU_ASSERT_EQUAL(w.resp.status, 503);
	CU_ASSERT_EQUAL(w.resp.retry_after_ms, 30000);
	CU_ASSERT(tu_mono() - t0 < 5.0);
	CU_ASSERT_EQUAL(fu_count(fu), 1);
	waiter_free(&w);
}

static void async_unreachable_upstream_reports_an_error(void)
{
	gw_config c;
	tu_up *up;
	char err[256] = "";
	waiter w;

	cfg_small(&c);
	/* a port nobody listens on: bind one, close it */
	{
		struct sockaddr_in a;
		socklen_t al = sizeof(a);
		int fd = socket(AF_INET, SOCK_STREAM, 0);

		memset(&a, 0, sizeof(a));
		a.sin_family = AF_INET;
		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		CU_ASSERT_FATAL(fd >= 0);
		CU_ASSERT_EQUAL(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
		getsockname(fd, (struct sockaddr *)&a, &al);
		snprintf(c.upstream, sizeof(c.upstream), "http://127.0.0.1:%u",
			 (unsigned)ntohs(a.sin_port));
		close(fd);
	}
	c.max_attempts = 2;
	up = tu_up_new(&c, err, sizeof(err));
	CU_ASSERT_PTR_NOT_NULL_FATAL(up);
	waiter_init(&w);
	CU_ASSERT_EQUAL(tu_up_patch_async(up, "/v2/traces/sessions/x",
						body1, strlen(body1), on_done,
						&w), 0);
	CU_ASSERT_EQUAL(waiter_wait(&w, 10), 1);
	CU_ASSERT_EQUAL(w.resp.status, 0);
	CU_ASSERT_EQUAL(w.resp.attempts, 2);
	CU_ASSERT(w.resp.error[0] != '\0');
	CU_ASSERT_PTR_NULL(strstr(w.resp.error, KEY));
	waiter_free(&w);
	tu_up_free(up);
	/* and after free nothing is accepted: a new upstream, freed at once */
	up = tu_up_new(&c, err, sizeof(err));
	CU_ASSERT_PTR_NOT_NULL_FATAL(up);
	tu_up_free(up);
}

/* ==== The server ==== */

typedef struct client {
	uint16_t port;
	char path[64];
	long status;
	double done_at;
	pthread_t th;
} client;

static size_t sink(char *d, size_t s, size_t n, void *u)
{
	(void)d;
	(void)u;
	return s * n;
}

static void *client_run(void *v)
{
	client *cl = v;
	CURL *h = curl_easy_init();
	struct curl_slist *hl = NULL;
	char url[128];

	cl->status = 0;
	if (h == NULL)
		return NULL;
	snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", (unsigned)cl->port,
		 cl->path);
	hl = curl_slist_append(hl, "Content-Type: application/json");
	hl = curl_slist_append(hl, "Expect:");
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "PATCH");
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, body1);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 20000L);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	if (curl_easy_perform(h) == CURLE_OK)
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &cl->status);
	cl->done_at = tu_mono();
	curl_slist_free_all(hl);
	curl_easy_cleanup(h);
	return NULL;
}

/* A server in front of the fake upstream, for the tests that stop it
 * themselves (gw_server_stop(g.s), then gw_upstream_free(g.up)). */
typedef struct small_gw {
	gw_config c;
	gw_upstream *up;
	gw_server *s;
} small_gw;

/* Starts one with `threads` workers and clears the fake's script and
 * record. 0, or -1 (said on stderr). */
static int small_gw_start(small_gw *g, unsigned threads)
{
	char err[256] = "";

	cfg_small(&g->c);
	g->c.threads = threads;
	g->up = gw_upstream_new(&g->c, err, sizeof(err));
	g->s = g->up ? gw_server_start(&g->c, g->up, NULL, err, sizeof(err))
		     : NULL;
	if (g->s == NULL) {
		fprintf(stderr, "small_gw_start: %s\n", err);
		gw_upstream_free(g->up);
		return -1;
	}
	fu_clear(fu);
	return 0;
}

/* Starts n clients PATCHing /v2/traces/sessions/<tag>-<i> on port. */
static void clients_start(client *cl, size_t n, uint16_t port, const char *tag)
{
	size_t i;

	for (i = 0; i < n; i++) {
		cl[i].port = port;
		cl[i].status = -1;
		snprintf(cl[i].path, sizeof(cl[i].path),
			 "/v2/traces/sessions/%s-%zu", tag, i);
		pthread_create(&cl[i].th, NULL, client_run, &cl[i]);
	}
}

/* Joins them; returns how many got 200. */
static size_t clients_join(client *cl, size_t n)
{
	size_t i, ok = 0;

	for (i = 0; i < n; i++) {
		pthread_join(cl[i].th, NULL);
		ok += cl[i].status == 200;
	}
	return ok;
}

static void fu_delay_all(size_t n, long ms)
{
	fu_step steps[N_CLIENTS_MAX];
	size_t i;

	for (i = 0; i < n; i++) {
		memset(&steps[i], 0, sizeof(steps[i]));
		steps[i].action = FU_DELAY;
		steps[i].delay_ms = ms;
	}
	fu_script(fu, steps, n);
}

/* ==== One request, one thread ==== */

#define TRACE_MAX 4096

typedef struct trace_rec {
	unsigned long id;
	char stage[16];
	pthread_t th;
} trace_rec;

static struct {
	pthread_mutex_t mu;
	trace_rec r[TRACE_MAX];
	size_t n;
} tr = { PTHREAD_MUTEX_INITIALIZER, { { 0, "", 0 } }, 0 };

static void on_trace(void *ud, const char *request_id, const char *stage)
{
	(void)ud;
	pthread_mutex_lock(&tr.mu);
	if (tr.n < TRACE_MAX) {
		tr.r[tr.n].id = strtoul(request_id, NULL, 10);
		snprintf(tr.r[tr.n].stage, sizeof(tr.r[tr.n].stage), "%s", stage);
		tr.r[tr.n].th = pthread_self();
		tr.n++;
	}
	pthread_mutex_unlock(&tr.mu);
}

/* Client k: 25 PATCHes on one kept-alive connection. */
static void *trace_client(void *v)
{
	client *cl = v;
	int i;

	for (i = 0; i < 25; i++) {
		static const char *const hdr[] = {
			"Content-Type: application/json", NULL };
		tu_http_res r;

		if (tu_http(cl->port, "PATCH", cl->path, hdr, body1,
			    strlen(body1), 20, &r) == 200)
			cl->status++;
		tu_http_free(&r);
	}
	return NULL;
}

/* A direct PATCH is read, forwarded, answered and logged on the thread
 * of the loop that accepted it: the trace hook sees every stage of a
 * request on one thread; requests as a whole spread over the loops. */
static void direct_patch_never_leaves_its_loop(void)
{
	enum { CLIENTS = 8 };
	client cl[CLIENTS];
	small_gw g;
	pthread_t seen[8];
	size_t i, j, n_seen = 0, checked = 0, split = 0;

	CU_ASSERT_FATAL(small_gw_start(&g, 4) == 0);
	tr.n = 0;
	gw_server_set_trace(g.s, on_trace, NULL);
	for (i = 0; i < CLIENTS; i++) {
		cl[i].port = gw_server_port(g.s);
		cl[i].status = 0;
		snprintf(cl[i].path, sizeof(cl[i].path),
			 "/v2/traces/sessions/loop-%zu", i);
		pthread_create(&cl[i].th, NULL, trace_client, &cl[i]);
	}
	for (i = 0; i < CLIENTS; i++) {
		pthread_join(cl[i].th, NULL);
		CU_ASSERT_EQUAL(cl[i].status, 25);
	}
	gw_server_stop(g.s);
	gw_upstream_free(g.up);
	/* every request: head, upstream, answer, done, all on one thread */
	for (i = 0; i < tr.n; i++) {
		const char *need[] = { "upstream", "answer", "done" };
		size_t k;

		if (strcmp(tr.r[i].stage, "head") != 0)
			continue;
		for (k = 0; k < 3; k++) {
			bool found = false;

			for (j = 0; j < tr.n; j++) {
				if (tr.r[j].id != tr.r[i].id ||
				    strcmp(tr.r[j].stage, need[k]) != 0)
					continue;
				found = true;
				split += !pthread_equal(tr.r[j].th, tr.r[i].th);
			}
			CU_ASSERT_TRUE(found);
		}
		for (j = 0; j < n_seen && !pthread_equal(seen[j], tr.r[i].th); j++)
			;
		if (j == n_seen && n_seen < 8)
			seen[n_seen++] = tr.r[i].th;
		checked++;
	}
	CU_ASSERT_EQUAL(checked, CLIENTS * 25);
	CU_ASSERT_EQUAL(split, 0);
	/* 8 connections over 4 loops (SO_REUSEPORT): more than one */
	CU_ASSERT(n_seen >= 2);
}

static void more_updates_in_flight_than_worker_threads(void)
{
	enum { N = 32 };
	small_gw g;
	client cl[N];
	double t0, dt;

	CU_ASSERT_FATAL(small_gw_start(&g, 4) == 0);
	fu_delay_all(N, 300);
	t0 = tu_mono();
	clients_start(cl, N, gw_server_port(g.s), "many");
	CU_ASSERT_EQUAL(clients_join(cl, N), N);
	dt = tu_mono() - t0;
	/* blocking workers would need 32 * 0.3 / 4 = 2.4 s */
	CU_ASSERT(dt < 1.5);
	if (dt >= 1.5)
		fprintf(stderr, "\n32 delayed PATCHes took %.2f s\n", dt);
	CU_ASSERT_EQUAL(fu_count(fu), N);
	gw_server_stop(g.s);
	gw_upstream_free(g.up);
}

/* Sends a PATCH on a new connection and closes it without reading. */
static int send_raw_and_leave(uint16_t port, const char *method,
			      const char *path, const char *ctype,
			      const void *body, size_t len)
{
	struct sockaddr_in a;
	char head[512];
	int fd = socket(AF_INET, SOCK_STREAM, 0), n;

	if (fd < 0)
		return -1;
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons(port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	n = snprintf(head, sizeof(head),
		     "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
		     "Content-Type: %s\r\nContent-Length: %zu\r\n\r\n",
		     method, path, ctype, len);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
	    write(fd, head, (size_t)n) != n ||
	    write(fd, body, len) != (ssize_t)len) {
		close(fd);
		return -1;
	}
	return fd;
}

static int send_and_leave(uint16_t port, const char *path)
{
	return send_raw_and_leave(port, "PATCH", path, "application/json",
				  body1, strlen(body1));
}

static void client_leaving_while_suspended_is_harmless(void)
{
	enum { N = 8 };
	small_gw g;
	int fds[N];
	size_t i;
	client one;
	double t0;

	CU_ASSERT_FATAL(small_gw_start(&g, 2) == 0);
	fu_delay_all(N, 400);
	for (i = 0; i < N; i++) {
		char path[64];

		snprintf(path, sizeof(path), "/v2/traces/sessions/gone-%zu", i);
		fds[i] = send_and_leave(gw_server_port(g.s), path);
		CU_ASSERT(fds[i] >= 0);
	}
	/* every update reached the upstream: their requests are suspended */
	CU_ASSERT_EQUAL(fu_wait_count(fu, N, 10), N);
	for (i = 0; i < N; i++) {
		if (fds[i] < 0)
			continue;
		if (i % 2) {
			/* half of them with a reset */
			struct linger l = { 1, 0 };

			setsockopt(fds[i], SOL_SOCKET, SO_LINGER, &l, sizeof(l));
		}
		close(fds[i]);
	}
	/* the server goes on serving */
	one.port = gw_server_port(g.s);
	snprintf(one.path, sizeof(one.path), "/v2/traces/sessions/after");
	client_run(&one);
	CU_ASSERT_EQUAL(one.status, 200);
	/* and their requests completed: stop does not wait for them */
	t0 = tu_mono();
	gw_server_stop(g.s);
	CU_ASSERT(tu_mono() - t0 < 5.0);
	gw_upstream_free(g.up);
}

/* A Batch with one {"duration":1} for each of n sessions <tag>-<i>. */
static uint8_t *batch_sessions(const char *tag, size_t n, size_t *len)
{
	static const char json[] = "{\"duration\":1}";
	sw_parse_opts o = { .kind = SW_KIND_UPDATE };
	sw_update *u = NULL;
	uint8_t pb[256], env[512], *b = malloc(16384);
	size_t pn = 0, en = 0, k;
	char sid[64];
	sw_session_id id;

	*len = 0;
	if (b == NULL || sw_json_parse(json, strlen(json), &o, &u, NULL) != SW_OK ||
	    sw_pb_encode(u, pb, sizeof(pb), &pn, NULL) != SW_OK) {
		sw_update_free(u);
		free(b);
		return NULL;
	}
	sw_update_free(u);
	for (k = 0; k < n; k++) {
		snprintf(sid, sizeof(sid), "%s-%zu", tag, k);
		sw_session_id_set(&id, sid, strlen(sid));
		if (sw_envelope_encode(&id, true, 1, pb, pn, env, sizeof(env), &en,
				       NULL) != SW_OK ||
		    sw_batch_append(env, en, b, 16384, len, NULL) != SW_OK) {
			free(b);
			return NULL;
		}
	}
	return b;
}

typedef struct batch_client {
	uint16_t port;
	const uint8_t *body;
	size_t len;
	long status;
	size_t acked;   /* Results with status 200 */
	pthread_t th;
} batch_client;

static size_t keep_body(char *d, size_t s, size_t n, void *u)
{
	sw_buf *b = u;

	return sw_buf_append(b, d, s * n) == SW_OK ? s * n : 0;
}

static void *batch_client_run(void *v)
{
	batch_client *bc = v;
	CURL *h = curl_easy_init();
	struct curl_slist *hl = NULL;
	char url[128];
	sw_result res[16];
	size_t n = 0, k;
	sw_buf body;

	bc->status = 0;
	bc->acked = 0;
	if (h == NULL)
		return NULL;
	sw_buf_init(&body, 0, NULL);
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/v1/updates",
		 (unsigned)bc->port);
	hl = curl_slist_append(hl, "Content-Type: application/x-protobuf");
	hl = curl_slist_append(hl, "Expect:");
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, bc->body);
	curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)bc->len);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 20000L);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, keep_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	if (curl_easy_perform(h) == CURLE_OK)
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &bc->status);
	if (bc->status == 200 &&
	    sw_ack_decode((const uint8_t *)body.data, body.len, res, 16, &n,
			  NULL) == SW_OK)
		for (k = 0; k < n; k++)
			bc->acked += res[k].status == 200;
	sw_buf_free(&body);
	curl_slist_free_all(hl);
	curl_easy_cleanup(h);
	return NULL;
}

/* gw_server_stop with batches suspended (their items at a slow
 * upstream): it waits for them, every batch gets its whole Ack, and
 * libmicrohttpd is never stopped with a suspended connection. */
static void stop_waits_for_suspended_batches(void)
{
	enum { N = 3, SESSIONS = 3 };
	small_gw g;
	batch_client bc[N];
	uint8_t *b;
	size_t len, k;

	b = batch_sessions("stopb", SESSIONS, &len);
	CU_ASSERT_PTR_NOT_NULL_FATAL(b);
	CU_ASSERT_FATAL(small_gw_start(&g, 2) == 0);
	fu_delay_all(N * SESSIONS, 600);
	for (k = 0; k < N; k++) {
		bc[k].port = gw_server_port(g.s);
		bc[k].body = b;
		bc[k].len = len;
		pthread_create(&bc[k].th, NULL, batch_client_run, &bc[k]);
	}
	CU_ASSERT_EQUAL(fu_wait_count(fu, N * SESSIONS, 10), N * SESSIONS);
	gw_server_stop(g.s);
	for (k = 0; k < N; k++) {
		pthread_join(bc[k].th, NULL);
		CU_ASSERT_EQUAL(bc[k].status, 200);
		CU_ASSERT_EQUAL(bc[k].acked, SESSIONS);
	}
	gw_upstream_free(g.up);
	free(b);
}

/* Stopping with a batch half sent (8 sessions, 4 at a time, each item
 * answered after 800 ms): the 4 at the upstream finish, the other 4 are
 * not started (Result status 0: resend), so the stop takes one call. */
static void stop_does_not_start_more_batch_items(void)
{
	enum { SESSIONS = 8 };
	small_gw g;
	batch_client bc;
	uint8_t *b;
	size_t len;
	double t0, dt;

	b = batch_sessions("halfb", SESSIONS, &len);
	CU_ASSERT_PTR_NOT_NULL_FATAL(b);
	CU_ASSERT_FATAL(small_gw_start(&g, 2) == 0);
	fu_delay_all(SESSIONS, 800);
	bc.port = gw_server_port(g.s);
	bc.body = b;
	bc.len = len;
	pthread_create(&bc.th, NULL, batch_client_run, &bc);
	CU_ASSERT_EQUAL(fu_wait_count(fu, 4, 10), 4);
	t0 = tu_mono();
	gw_server_stop(g.s);
	dt = tu_mono() - t0;
	pthread_join(bc.th, NULL);
	CU_ASSERT_EQUAL(bc.status, 200);
	CU_ASSERT_EQUAL(bc.acked, 4);      /* the 4 that were at the upstream */
	CU_ASSERT_EQUAL(fu_count(fu), 4);  /* nothing started after the stop */
	CU_ASSERT(dt < 1.5);               /* one call, not two rounds */
	gw_upstream_free(g.up);
	free(b);
}

/* Batch clients that leave (half with a reset) while their items are at
 * the upstream: every item is still forwarded, the gateway goes on
 * serving batches, and stop does not wait for them. */
static void batch_clients_leaving_while_suspended_is_harmless(void)
{
	enum { N = 4, SESSIONS = 3 };
	small_gw g;
	int fds[N];
	uint8_t *b;
	size_t len, i;
	batch_client after;
	double t0;

	b = batch_sessions("leave", SESSIONS, &len);
	CU_ASSERT_PTR_NOT_NULL_FATAL(b);
	CU_ASSERT_FATAL(small_gw_start(&g, 2) == 0);
	fu_delay_all(N * SESSIONS, 400);
	for (i = 0; i < N; i++) {
		fds[i] = send_raw_and_leave(gw_server_port(g.s), "POST",
					    "/v1/updates",
					    "application/x-protobuf", b, len);
		CU_ASSERT(fds[i] >= 0);
	}
	CU_ASSERT_EQUAL(fu_wait_count(fu, N * SESSIONS, 10), N * SESSIONS);
	for (i = 0; i < N; i++) {
		if (fds[i] < 0)
			continue;
		if (i % 2) {
			struct linger l = { 1, 0 };

			setsockopt(fds[i], SOL_SOCKET, SO_LINGER, &l, sizeof(l));
		}
		close(fds[i]);
	}
	after.port = gw_server_port(g.s);
	after.body = b;
	after.len = len;
	batch_client_run(&after);
	CU_ASSERT_EQUAL(after.status, 200);
	CU_ASSERT_EQUAL(after.acked, SESSIONS);
	t0 = tu_mono();
	gw_server_stop(g.s);
	CU_ASSERT(tu_mono() - t0 < 5.0);
	gw_upstream_free(g.up);
	free(b);
}

static void stop_drains_updates_in_flight(void)
{
	enum { N = 16 };
	small_gw g;
	client cl[N];

	CU_ASSERT_FATAL(small_gw_start(&g, 2) == 0);
	fu_delay_all(N, 500);
	clients_start(cl, N, gw_server_port(g.s), "drain");
	CU_ASSERT_EQUAL(fu_wait_count(fu, N, 10), N);
	gw_server_stop(g.s);
	/* every one was answered before stop returned */
	CU_ASSERT_EQUAL(clients_join(cl, N), N);
	gw_upstream_free(g.up);
}

/* ==== The program: SIGTERM ==== */

static void *log_reader(void *v)
{
	int fd = *(int *)v;
	char buf[4096];

	/* drains the child's stderr so it never blocks on a full pipe */
	while (read(fd, buf, sizeof(buf)) > 0)
		;
	return NULL;
}

/* Reads lines from fd until "listening on 127.0.0.1:PORT"; the port. */
static unsigned read_port(int fd, double wait_s)
{
	char log[16384];
	size_t len = 0;
	double end = tu_mono() + wait_s;

	log[0] = '\0';
	while (tu_mono() < end && len < sizeof(log) - 1) {
		struct pollfd p = { fd, POLLIN, 0 };
		const char *m;
		ssize_t n;

		if (poll(&p, 1, 50) <= 0)
			continue;
		n = read(fd, log + len, sizeof(log) - 1 - len);
		if (n <= 0)
			break;
		len += (size_t)n;
		log[len] = '\0';
		m = strstr(log, "listening on 127.0.0.1:");
		if (m && strchr(m, '\n'))
			return (unsigned)strtoul(m + 23, NULL, 10);
	}
	return 0;
}

static void sigterm_drains_updates_in_flight(void)
{
	enum { N = 12 };
	static const char *const env[] = { "ORQ_API_KEY=" KEY, NULL };
	char bin[512], upstream[64];
	char *argv[16];
	int fds[2], st = 0, argc = 0;
	pid_t pid, parent;
	unsigned port;
	client cl[N];
	pthread_t rd;
	double end;
	pid_t w = 0;

	snprintf(upstream, sizeof(upstream), "http://127.0.0.1:%u",
		 (unsigned)fu_port(fu));
	tu_bin("session-gateway", bin, sizeof(bin));
	argv[argc++] = bin;
	argv[argc++] = (char *)(uintptr_t)"--listen";
	argv[argc++] = (char *)(uintptr_t)"127.0.0.1:0";
	argv[argc++] = (char *)(uintptr_t)"--allow-anonymous";
	argv[argc++] = (char *)(uintptr_t)"--threads";
	argv[argc++] = (char *)(uintptr_t)"2";
	argv[argc++] = (char *)(uintptr_t)"--upstream";
	argv[argc++] = upstream;
	argv[argc] = NULL;
	CU_ASSERT_EQUAL_FATAL(pipe(fds), 0);
	parent = getpid();
	pid = fork();
	CU_ASSERT_FATAL(pid >= 0);
	if (pid == 0) {
		int devnull = open("/dev/null", O_RDWR);

		tu_child_dies_with_parent(parent);
		dup2(devnull, 0);
		dup2(devnull, 1);
		dup2(fds[1], 2);
		close(fds[0]);
		execve(bin, argv, (char *const *)(uintptr_t)env);
		_exit(127);
	}
	close(fds[1]);
	port = read_port(fds[0], 10);
	CU_ASSERT(port > 0);
	pthread_create(&rd, NULL, log_reader, &fds[0]);
	if (port > 0) {
		fu_clear(fu);
		fu_delay_all(N, 800);
		clients_start(cl, N, (uint16_t)port, "term");
		CU_ASSERT_EQUAL(fu_wait_count(fu, N, 10), N);
		kill(pid, SIGTERM);
		/* every update in flight when SIGTERM came is answered */
		CU_ASSERT_EQUAL(clients_join(cl, N), N);
	} else {
		kill(pid, SIGTERM);
	}
	end = tu_mono() + 20;
	while (tu_mono() < end && (w = waitpid(pid, &st, WNOHANG)) == 0)
		usleep(10000);
	if (w != pid) {
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
	}
	CU_ASSERT_EQUAL(w, pid);
	CU_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	pthread_join(rd, NULL);
	close(fds[0]);
}

static int suite_init(void)
{
	gw_log_set_level(GW_LOG_ERROR);
	fu = fu_start(0);
	return fu == NULL ? -1 : 0;
}

static int suite_clean(void)
{
	fu_stop(fu);
	gw_log_set_level(GW_LOG_INFO);
	return 0;
}

int init_async_tests(void)
{
	CU_pSuite s = CU_add_suite("async", suite_init, suite_clean);

	if (s == NULL)
		return -1;
	CU_add_test(s, "async_call_answers_like_the_blocking_one", async_call_answers_like_the_blocking_one);
	CU_add_test(s, "async_call_retries_statuses_and_resets", async_call_retries_statuses_and_resets);
	CU_add_test(s, "async_retry_after_waits_without_holding_others", async_retry_after_waits_without_holding_others);
	CU_add_test(s, "async_free_finishes_calls_backing_off", async_free_finishes_calls_backing_off);
	CU_add_test(s, "async_unreachable_upstream_reports_an_error", async_unreachable_upstream_reports_an_error);
	CU_add_test(s, "more_updates_in_flight_than_worker_threads", more_updates_in_flight_than_worker_threads);
	CU_add_test(s, "direct_patch_never_leaves_its_loop", direct_patch_never_leaves_its_loop);
	CU_add_test(s, "client_leaving_while_suspended_is_harmless", client_leaving_while_suspended_is_harmless);
	CU_add_test(s, "stop_drains_updates_in_flight", stop_drains_updates_in_flight);
	CU_add_test(s, "stop_waits_for_suspended_batches", stop_waits_for_suspended_batches);
	CU_add_test(s, "stop_does_not_start_more_batch_items", stop_does_not_start_more_batch_items);
	CU_add_test(s, "batch_clients_leaving_while_suspended_is_harmless", batch_clients_leaving_while_suspended_is_harmless);
	CU_add_test(s, "sigterm_drains_updates_in_flight", sigterm_drains_updates_in_flight);
	return 0;
}
