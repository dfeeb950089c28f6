/* test_upstream.c - the libcurl forwarder (gateway/upstream.c) against the
 * fake upstream on 127.0.0.1, and `session-codec send` against the same. */
#include <CUnit/CUnit.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fake_upstream.h"
#include "gw.h"
#include "testutil.h"

static char test_key[] = "sk-test-0123456789abcdef";
static fake_upstream *fu;

/* A policy with small waits so the suite stays fast. */
static void cfg_init(gw_config *c)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->upstream, sizeof(c->upstream), "http://127.0.0.1:%u",
		 (unsigned)fu_port(fu));
	c->api_key = test_key;
	c->connect_timeout_ms = 1000;
	c->upstream_timeout_ms = 3000;
	c->max_attempts = 4;
	c->retry_budget_ms = 10000;
	c->backoff_base_ms = 5;
	c->backoff_max_ms = 20;
}

static tu_up *up_new(const gw_config *c)
{
	char err[160] = "";
	tu_up *up = tu_up_new(c, err, sizeof(err));

	CU_ASSERT_PTR_NOT_NULL(up);
	if (up == NULL)
		fprintf(stderr, "tu_up_new: %s\n", err);
	return up;
}

static const char body1[] = "{\"external_id\":\"dev-1\",\"duration\":12}";
static const char path1[] = "/v2/traces/sessions/s-1";

/* PATCHes body1 to path1 under policy c; returns tu_up_patch's. */
static int patch_once(const gw_config *c, gw_response *resp)
{
	tu_up *up = up_new(c);
	int rc;

	if (up == NULL) {
		memset(resp, 0, sizeof(*resp));
		return -2;
	}
	rc = tu_up_patch(up, path1, body1, sizeof(body1) - 1, resp);
	tu_up_free(up);
	return rc;
}

/* ==== What goes upstream ==== */

static void patch_sends_sdk_method_path_and_headers(void)
{
	gw_config c;
	gw_response resp;
	fu_request r;

	fu_clear(fu);
	cfg_init(&c);
	CU_ASSERT_EQUAL(patch_once(&c, &resp), 0);
	CU_ASSERT_EQUAL(resp.status, 200);
	CU_ASSERT_EQUAL(resp.attempts, 1);
	CU_ASSERT_EQUAL(resp.retry_after_ms, -1);
	CU_ASSERT_STRING_EQUAL(resp.content_type, "application/json");
	CU_ASSERT_EQUAL(fu_count(fu), 1);
	CU_ASSERT_FATAL(fu_get(fu, 0, &r));
	CU_ASSERT_STRING_EQUAL(r.method, "PATCH");
	CU_ASSERT_STRING_EQUAL(r.path, path1);
	CU_ASSERT_STRING_EQUAL(r.content_type, "application/json");
	CU_ASSERT_STRING_EQUAL(r.accept, "application/json");
	CU_ASSERT_STRING_EQUAL(r.authorization, "Bearer sk-test-0123456789abcdef");
	CU_ASSERT_EQUAL(r.body_len, sizeof(body1) - 1);
	CU_ASSERT_STRING_EQUAL(r.body, body1);
	fu_request_free(&r);
	gw_response_free(&resp);
}

/* Every SDK vector: the path as the SDK requests it (still encoded) and
 * the wire JSON byte for byte; the answer is a valid session. */
static void patch_delivers_every_vector_byte_identical(void)
{
	static const char *const files[] = { "sdk_wire.jsonl", "typical.jsonl" };
	gw_config c;
	tu_up *up;
	size_t f;
	int bad = 0, checked = 0;

	cfg_init(&c);
	up = up_new(&c);
	CU_ASSERT_FATAL(up != NULL);
	for (f = 0; f < 2; f++) {
		tu_vector *v = NULL;
		int n = tu_vectors_load(files[f], &v), i;

		CU_ASSERT_FATAL(n > 0);
		for (i = 0; i < n; i++) {
			gw_response resp;
			fu_request r;
			sw_update *s = NULL;
			int ok;

			fu_clear(fu);
			ok = tu_up_patch(up, v[i].path, v[i].wire,
					       v[i].wire_len, &resp) == 0 &&
			     resp.status == 200 && fu_get(fu, 0, &r);
			if (!ok) {
				bad++;
				gw_response_free(&resp);
				continue;
			}
			ok = !strcmp(r.path, v[i].path) &&
			     r.body_len == v[i].wire_len &&
			     !memcmp(r.body, v[i].wire, v[i].wire_len);
			if (ok) {
				sw_parse_opts po = { .kind = SW_KIND_SESSION };

				ok = sw_json_parse(resp.body, resp.body_len, &po,
						   &s, NULL) == SW_OK &&
				     s->id.len == v[i].session_id_len &&
				     !memcmp(s->id.ptr, v[i].session_id,
					     s->id.len);
			}
			if (!ok && bad++ < 3)
				fprintf(stderr, "\n%s:%d: path %s body %s\n",
					files[f], v[i].line, r.path, r.body);
			checked++;
			sw_update_free(s);
			fu_request_free(&r);
			gw_response_free(&resp);
		}
		tu_vectors_free(v, n);
	}
	CU_ASSERT_EQUAL(bad, 0);
	CU_ASSERT_EQUAL(checked, 600);
	tu_up_free(up);
}

/* 20 calls, one after the other: at most one new TCP connection. */
static void patch_reuses_the_connection(void)
{
	gw_config c;
	tu_up *up;
	size_t before;
	int i, ok = 0;

	fu_clear(fu);
	cfg_init(&c);
	up = up_new(&c);
	CU_ASSERT_FATAL(up != NULL);
	before = fu_connections(fu);
	for (i = 0; i < 20; i++) {
		gw_response resp;

		ok += tu_up_patch(up, path1, body1, sizeof(body1) - 1,
					&resp) == 0 && resp.status == 200;
		gw_response_free(&resp);
	}
	CU_ASSERT_EQUAL(ok, 20);
	CU_ASSERT_EQUAL(fu_count(fu), 20);
	CU_ASSERT(fu_connections(fu) - before <= 1);
	tu_up_free(up);
}

/* ==== Retries ==== */

static void retries_503_then_succeeds(void)
{
	fu_step steps[] = {
		{ FU_STATUS, 503, NULL, NULL, 0 },
		{ FU_STATUS, 503, NULL, NULL, 0 },
	};
	gw_config c;
	gw_response resp;

	fu_clear(fu);
	fu_script(fu, steps, 2);
	cfg_init(&c);
	CU_ASSERT_EQUAL(patch_once(&c, &resp), 0);
	CU_ASSERT_EQUAL(resp.status, 200);
	CU_ASSERT_EQUAL(resp.attempts, 3);
	CU_ASSERT_EQUAL(fu_count(fu), 3);
	CU_ASSERT_PTR_NOT_NULL(resp.body);
	gw_response_free(&resp);
}

/* Each retryable status is retried once, then the 200 comes back. */
static void retries_every_retryable_status(void)
{
	static const int statuses[] = { 429, 500, 502, 503, 504 };
	size_t i;

	for (i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
		fu_step st = { FU_STATUS, statuses[i], NULL, NULL, 0 };
		gw_config c;
		gw_response resp;

		fu_clear(fu);
		fu_script(fu, &st, 1);
		cfg_init(&c);
		CU_ASSERT_EQUAL(patch_once(&c, &resp), 0);
		CU_ASSERT_EQUAL(resp.status, 200);
		CU_ASSERT_EQUAL(resp.attempts, 2);
		CU_ASSERT_EQUAL(fu_count(fu), 2);
		gw_response_free(&resp);
	}
}

static void retry_after_one_second_is_waited(void)
{
	fu_step st = { FU_STATUS, 429, NULL, "1", 0 };
	gw_config c;
	gw_response resp;
	fu_request r0, r1;
	double t0 = tu_mono(), took;

	fu_clear(fu);
	fu_script(fu, &st, 1);
	cfg_init(&c);
	CU_ASSERT_EQUAL(patch_once(&c, &resp), 0);
	took = tu_mono() - t0;
	CU_ASSERT_EQUAL(resp.status, 200);
	CU_ASSERT_EQUAL(resp.attempts, 2);
	CU_ASSERT(took >= 0.9);
	CU_ASSERT(took < 5.0);
	CU_ASSERT_FATAL(fu_get(fu, 0, &r0) && fu_get(fu, 1, &r1));
	CU_ASSERT(r1.at - r0.at >= 0.9);
	fu_request_free(&r0);
	fu_request_free(&r1);
	gw_response_free(&resp);
}

/* Final statuses go back at once, with their body. */
static void final_statuses_are_not_retried(void)
{
	static const int statuses[] = { 400, 401, 403, 404, 409, 422, 501 };
	size_t i;

	for (i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
		static const char b[] = "{\"code\":\"x\",\"message\":\"no\"}";
		fu_step st = { FU_STATUS, statuses[i], b, NULL, 0 };
		gw_config c;
		gw_response resp;

		fu_clear(fu);
		fu_script(fu, &st, 1);
		cfg_init(&c);
		CU_ASSERT_EQUAL(patch_once(&c, &resp), 0);
		CU_ASSERT_EQUAL(resp.status, statuses[i]);
		CU_ASSERT_EQUAL(resp.attempts, 1);
		CU_ASSERT_EQUAL(fu_count(fu), 1);
		CU_ASSERT_EQUAL(resp.body_len, sizeof(b) - 1);
		CU_ASSERT(resp.body && !strcmp(resp.body, b));
		CU_ASSERT_STRING_EQUAL(resp.content_type, "application/json");
		gw_response_free(&resp);
	}
}

static void reset_connection_is_retried(void)
{
	fu_step st = { FU_RESET, 0, NULL, NULL, 0 };
	gw_config c;
	gw_response resp;

	fu_clear(fu);
	fu_script(fu, &st, 1);
	cfg_init(&c);
	CU_ASSERT_EQUAL(patch_once(&c, &resp), 0);
	CU_ASSERT_EQUAL(resp.status, 200);
	CU_ASSERT_EQUAL(resp.attempts, 2);
	CU_ASSERT_EQUAL(fu_count(fu), 2);
	gw_response_free(&resp);
}

static void resets_until_the_end_are_reported(void)
{
	fu_step st[3] = {
		{ FU_RESET, 0, NULL, NULL, 0 },
		{ FU_RESET, 0, NULL, NULL, 0 },
		{ FU_RESET, 0, NULL, NULL, 0 },
	};
	gw_config c;
	gw_response resp;

	fu_clear(fu);
	fu_script(fu, st, 3);
	cfg_init(&c);
	c.max_attempts = 3;
	CU_ASSERT_EQUAL(patch_once(&c, &resp), -1);
	CU_ASSERT_EQUAL(resp.status, 0);
	CU_ASSERT_EQUAL(resp.attempts, 3);
	CU_ASSERT_EQUAL(fu_count(fu), 3);
	CU_ASSERT(resp.error[0] != '\0');
	CU_ASSERT_PTR_NULL(resp.body);
	gw_response_free(&resp);
}

static void timeout_is_retried_then_succeeds(void)
{
	fu_step st = { FU_DELAY, 0, NULL, NULL, 1500 };
	gw_config c;
	gw_response resp;

	fu_clear(fu);
	fu_script(fu, &st, 1);
	cfg_init(&c);
	c.upstream_timeout_ms = 300;
	CU_ASSERT_EQUAL(patch_once(&c, &resp), 0);
	CU_ASSERT_EQUAL(resp.status, 200);
	CU_ASSERT_EQUAL(resp.attempts, 2);
	CU_ASSERT_EQUAL(fu_count(fu), 2);
	gw_response_free(&resp);
}

static void timeouts_until_the_end_are_reported(void)
{
	fu_step st[3] = {
		{ FU_DELAY, 0, NULL, NULL, 1000 },
		{ FU_DELAY, 0, NULL, NULL, 1000 },
		{ FU_DELAY, 0, NULL, NULL, 1000 },
	};
	gw_config c;
	gw_response resp;
	double t0 = tu_mono(), took;

	fu_clear(fu);
	fu_script(fu, st, 3);
	cfg_init(&c);
	c.upstream_timeout_ms = 200;
	c.max_attempts = 3;
	CU_ASSERT_EQUAL(patch_once(&c, &resp), -1);
	took = tu_mono() - t0;
	CU_ASSERT_EQUAL(resp.status, 0);
	CU_ASSERT_EQUAL(resp.attempts, 3);
	CU_ASSERT_EQUAL(fu_count(fu), 3);
	CU_ASSERT(strstr(resp.error, "imeout") != NULL ||
		  strstr(resp.error, "timed out") != NULL);
	CU_ASSERT(took >= 0.55 && took < 3.0);
	gw_response_free(&resp);
}

static void max_attempts_is_honoured(void)
{
	static const unsigned limits[] = { 1, 2, 5 };
	size_t i;

	for (i = 0; i < 3; i++) {
		fu_step st[8];
		gw_config c;
		gw_response resp;
		size_t k;

		for (k = 0; k < 8; k++) {
			fu_step s = { FU_STATUS, 503, NULL, NULL, 0 };

			st[k] = s;
		}
		fu_clear(fu);
		fu_script(fu, st, 8);
		cfg_init(&c);
		c.max_attempts = limits[i];
		CU_ASSERT_EQUAL(patch_once(&c, &resp), 0);
		CU_ASSERT_EQUAL(resp.status, 503);
		CU_ASSERT_EQUAL(resp.attempts, (int)limits[i]);
		CU_ASSERT_EQUAL(fu_count(fu), limits[i]);
		gw_response_free(&resp);
	}
}

/* Timeouts of 300 ms, no backoff, a budget of 500 ms: the second attempt
 * starts at ~300 ms, none starts after 500 ms. */
static void retry_budget_stops_new_attempts(void)
{
	fu_step st[6];
	gw_config c;
	gw_response resp;
	size_t k;

	for (k = 0; k < 6; k++) {
		fu_step s = { FU_DELAY, 0, NULL, NULL, 1000 };

		st[k] = s;
	}
	fu_clear(fu);
	fu_script(fu, st, 6);
	cfg_init(&c);
	c.upstream_timeout_ms = 300;
	c.max_attempts = 10;
	c.retry_budget_ms = 500;
	c.backoff_base_ms = 0;
	CU_ASSERT_EQUAL(patch_once(&c, &resp), -1);
	CU_ASSERT_EQUAL(resp.attempts, 2);
	CU_ASSERT_EQUAL(fu_count(fu), 2);
	gw_response_free(&resp);
}

/* A Retry-After longer than the budget left: no wait, the answer comes
 * back with the hint. */
static void retry_after_beyond_budget_returns_the_hint(void)
{
	fu_step st = { FU_STATUS, 503, NULL, "30", 0 };
	gw_config c;
	gw_response resp;
	double t0 = tu_mono();

	fu_clear(fu);
	fu_script(fu, &st, 1);
	cfg_init(&c);
	c.retry_budget_ms = 2000;
	CU_ASSERT_EQUAL(patch_once(&c, &resp), 0);
	CU_ASSERT(tu_mono() - t0 < 1.0);
	CU_ASSERT_EQUAL(resp.status, 503);
	CU_ASSERT_EQUAL(resp.attempts, 1);
	CU_ASSERT_EQUAL(resp.retry_after_ms, 30000);
	CU_ASSERT_EQUAL(fu_count(fu), 1);
	gw_response_free(&resp);
}

/* The value of one sample line "name value" in the rendered metrics (0
 * when absent: zero counters with labels are left out), -1 when the
 * metrics cannot be rendered. */
static long long metric(const char *name)
{
	sw_buf b;
	long long v = -1;
	const char *p;
	size_t n = strlen(name);

	sw_buf_init(&b, 0, NULL);
	if (gw_metrics_render(&b) == SW_OK && b.data) {
		v = 0;
		for (p = b.data; (p = strstr(p, name)) != NULL; p += n) {
			if ((p == b.data || p[-1] == '\n') && p[n] == ' ') {
				v = strtoll(p + n + 1, NULL, 10);
				break;
			}
		}
	}
	sw_buf_free(&b);
	return v;
}

/* Every attempt is counted with its status (none: no answer), every
 * retry once. */
static void metrics_count_attempts_and_retries(void)
{
	static const char r503[] = "sessionwire_upstream_responses_total{code=\"503\"}";
	static const char r200[] = "sessionwire_upstream_responses_total{code=\"200\"}";
	static const char none[] = "sessionwire_upstream_responses_total{code=\"none\"}";
	static const char retries[] = "sessionwire_upstream_retries_total";
	fu_step steps[] = {
		{ FU_STATUS, 503, NULL, NULL, 0 },
		{ FU_STATUS, 503, NULL, NULL, 0 },
	};
	long long a503 = metric(r503), a200 = metric(r200),
		  anone = metric(none), aretry = metric(retries);
	gw_config c;
	gw_response resp;

	CU_ASSERT(a503 >= 0 && a200 >= 0 && anone >= 0 && aretry >= 0);
	fu_clear(fu);
	fu_script(fu, steps, 2);
	cfg_init(&c);
	CU_ASSERT_EQUAL(patch_once(&c, &resp), 0);
	CU_ASSERT_EQUAL(resp.attempts, 3);
	CU_ASSERT_EQUAL(metric(r503) - a503, 2);
	CU_ASSERT_EQUAL(metric(r200) - a200, 1);
	CU_ASSERT_EQUAL(metric(retries) - aretry, 2);
	CU_ASSERT_EQUAL(metric(none) - anone, 0);
	gw_response_free(&resp);

	/* a closed port: two attempts without an answer */
	cfg_init(&c);
	snprintf(c.upstream, sizeof(c.upstream), "http://127.0.0.1:1");
	c.max_attempts = 2;
	CU_ASSERT_EQUAL(patch_once(&c, &resp), -1);
	CU_ASSERT_EQUAL(metric(none) - anone, 2);
	CU_ASSERT_EQUAL(metric(retries) - aretry, 3);
	gw_response_free(&resp);
}

/* ==== Retry-After values ==== */

static void retry_after_table(void)
{
	/* 1700000000 = Tue, 14 Nov 2023 22:13:20 GMT */
	static const struct {
		const char *in;
		long want;
	} t[] = {
		{ "0", 0 },
		{ "1", 1000 },
		{ "120", 120000 },
		{ " 7 ", 7000 },
		{ "007", 7000 },
		{ "86400", 86400000 },
		{ "99999999999999999999999", 86400000 },
		{ "Tue, 14 Nov 2023 22:13:30 GMT", 10000 },
		{ "Tue, 14 Nov 2023 22:13:20 GMT", 0 },
		{ "Tue, 14 Nov 2023 22:00:00 GMT", 0 },
		{ "Mon, 01 Jan 2001 00:00:00 GMT", 0 },
		{ "Tuesday, 14-Nov-23 22:14:20 GMT", 60000 },
		{ "Tue Nov 14 22:13:25 2023", 5000 },
		{ "", -1 },
		{ "   ", -1 },
		{ "soon", -1 },
		{ "-5", -1 },
		{ "1.5", -1 },
		{ "+3", -1 },
		{ "0x10", -1 },
	};
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		long got = gw_retry_after_ms(t[i].in, 1700000000L);

		if (got != t[i].want)
			fprintf(stderr, "\nRetry-After '%s': %ld, want %ld\n",
				t[i].in, got, t[i].want);
		CU_ASSERT_EQUAL(got, t[i].want);
	}
	CU_ASSERT_EQUAL(gw_retry_after_ms(NULL, 1700000000L), -1);
}

/* ==== Secrets and set-up errors ==== */

/* gw_scrub: every key out, the length accounted for, NUL kept; a key
 * made of stars (its own replacement) ends instead of looping. */
static void scrub_replaces_every_key(void)
{
	char a[] = "x sk-K1 y sk-K1sk-K1 z sk-K", b[] = "a***b**", c[] = "kk";
	size_t n;

	n = gw_scrub(a, strlen(a), "sk-K1");
	CU_ASSERT_STRING_EQUAL(a, "x *** y ****** z sk-K");
	CU_ASSERT_EQUAL(n, strlen(a));
	n = gw_scrub(b, strlen(b), "***");
	CU_ASSERT_STRING_EQUAL(b, "a***b**");
	CU_ASSERT_EQUAL(n, 7);
	n = gw_scrub(b, strlen(b), "**");
	CU_ASSERT_EQUAL(n, 7);
	n = gw_scrub(c, 2, "k");
	CU_ASSERT_STRING_EQUAL(c, "**");
	CU_ASSERT_EQUAL(gw_scrub(NULL, 0, "k"), 0);
	CU_ASSERT_EQUAL(gw_scrub(c, 2, ""), 2);
}

static void errors_never_contain_the_key(void)
{
	static char host_key[] = "sk-secret-host-key";
	gw_config c;
	gw_response resp;

	/* a closed port */
	cfg_init(&c);
	snprintf(c.upstream, sizeof(c.upstream), "http://127.0.0.1:1");
	c.max_attempts = 2;
	CU_ASSERT_EQUAL(patch_once(&c, &resp), -1);
	CU_ASSERT_EQUAL(resp.status, 0);
	CU_ASSERT_EQUAL(resp.attempts, 2);
	CU_ASSERT(resp.error[0] != '\0');
	CU_ASSERT_PTR_NULL(strstr(resp.error, test_key));
	gw_response_free(&resp);

	/* a key that curl would echo in its message (the host name) */
	cfg_init(&c);
	snprintf(c.upstream, sizeof(c.upstream), "http://%s.invalid", host_key);
	c.api_key = host_key;
	c.max_attempts = 1;
	CU_ASSERT_EQUAL(patch_once(&c, &resp), -1);
	CU_ASSERT(resp.error[0] != '\0');
	CU_ASSERT_PTR_NULL(strstr(resp.error, host_key));
	gw_response_free(&resp);

	/* a malformed URL is final */
	cfg_init(&c);
	snprintf(c.upstream, sizeof(c.upstream), "ftp://127.0.0.1:1");
	CU_ASSERT_EQUAL(patch_once(&c, &resp), -1);
	CU_ASSERT_EQUAL(resp.attempts, 1);
	CU_ASSERT_PTR_NULL(strstr(resp.error, test_key));
	gw_response_free(&resp);
}

static void new_rejects_missing_or_unsafe_key(void)
{
	static char bad_key[] = "abc\r\nX-Evil: 1";
	static char empty[] = "";
	char err[160];
	gw_config c;

	cfg_init(&c);
	c.api_key = NULL;
	CU_ASSERT_PTR_NULL(gw_upstream_new(&c, err, sizeof(err)));
	c.api_key = empty;
	CU_ASSERT_PTR_NULL(gw_upstream_new(&c, err, sizeof(err)));
	c.api_key = bad_key;
	err[0] = '\0';
	CU_ASSERT_PTR_NULL(gw_upstream_new(&c, err, sizeof(err)));
	CU_ASSERT(err[0] != '\0');
	CU_ASSERT_PTR_NULL(strstr(err, "abc"));
	gw_upstream_free(NULL);
	gw_response_free(NULL);
}

/* ==== Concurrency ==== */

typedef struct worker {
	tu_up *up;
	int ok;
} worker;

static void *worker_run(void *arg)
{
	worker *w = arg;
	int i;

	for (i = 0; i < 25; i++) {
		gw_response resp;

		w->ok += tu_up_patch(w->up, path1, body1,
					   sizeof(body1) - 1, &resp) == 0 &&
			 resp.status == 200;
		gw_response_free(&resp);
	}
	return NULL;
}

/* 8 threads x 25 calls on one forwarder: all arrive, connections are
 * reused (at most one per thread). */
static void patch_is_thread_safe_and_pools_handles(void)
{
	pthread_t th[8];
	worker w[8];
	gw_config c;
	tu_up *up;
	size_t before;
	int i, ok = 0;

	fu_clear(fu);
	cfg_init(&c);
	up = up_new(&c);
	CU_ASSERT_FATAL(up != NULL);
	before = fu_connections(fu);
	for (i = 0; i < 8; i++) {
		w[i].up = up;
		w[i].ok = 0;
		CU_ASSERT_FATAL(pthread_create(&th[i], NULL, worker_run, &w[i]) == 0);
	}
	for (i = 0; i < 8; i++) {
		pthread_join(th[i], NULL);
		ok += w[i].ok;
	}
	CU_ASSERT_EQUAL(ok, 200);
	CU_ASSERT_EQUAL(fu_count(fu), 200);
	CU_ASSERT(fu_connections(fu) - before <= 8);
	tu_up_free(up);
}


/* ==== session-codec send (against the fake directly) ==== */

typedef struct run_result {
	int status; /* exit status, or -1 */
	char *out;
	char *err;
} run_result;

/* Runs `session-codec ARGS` with input on stdin; captures everything. */
static run_result run_cli(const char *args, const char *input)
{
	char in_path[] = "/tmp/sw-send-in-XXXXXX";
	char out_path[] = "/tmp/sw-send-out-XXXXXX";
	char err_path[] = "/tmp/sw-send-err-XXXXXX";
	char cmd[4096], cli[512];
	run_result r = { -1, NULL, NULL };
	int fd_in = mkstemp(in_path), fd_out = mkstemp(out_path),
	    fd_err = mkstemp(err_path), rc;
	size_t in_len = strlen(input);

	if (fd_in < 0 || fd_out < 0 || fd_err < 0)
		abort();
	if (in_len && write(fd_in, input, in_len) != (ssize_t)in_len)
		abort();
	close(fd_in);
	close(fd_out);
	close(fd_err);
	snprintf(cmd, sizeof(cmd), "%s %s < %s > %s 2> %s",
		 tu_bin("session-codec", cli, sizeof(cli)), args, in_path,
		 out_path, err_path);
	rc = system(cmd);
	if (rc != -1 && WIFEXITED(rc))
		r.status = WEXITSTATUS(rc);
	r.out = tu_read_file(out_path, NULL);
	r.err = tu_read_file(err_path, NULL);
	unlink(in_path);
	unlink(out_path);
	unlink(err_path);
	return r;
}

static void run_free(run_result *r)
{
	free(r->out);
	free(r->err);
}

/* Reads "bytes on the wire: ... = H, body = B, total = T"; 0 if absent. */
static int wire_bytes(const char *out, size_t *h, size_t *b, size_t *t)
{
	const char *p = out ? strstr(out, "bytes on the wire: ") : NULL;

	return p && sscanf(p, "bytes on the wire: request line + headers = "
			   "%zu, body = %zu, total = %zu", h, b, t) == 3;
}

/* The protobuf Session of a JSON update, malloc'd. */
static uint8_t *pb_of(const char *json, size_t *len)
{
	sw_update *u = NULL;
	uint8_t *p = NULL;
	size_t need = 0;

	*len = 0;
	if (sw_json_parse(json, strlen(json), NULL, &u, NULL) != SW_OK)
		return NULL;
	if (sw_pb_encode(u, NULL, 0, &need, NULL) == SW_OK &&
	    (p = malloc(need ? need : 1)) != NULL &&
	    sw_pb_encode(u, p, need, len, NULL) != SW_OK) {
		free(p);
		p = NULL;
	}
	sw_update_free(u);
	return p;
}

#define UPDATE_A                                                              \
	"{\"externalId\":\"dev-a8346607363a\",\"duration\":1358072,"           \
	"\"usage\":{\"promptTokens\":2894,\"completionTokens\":987,"           \
	"\"totalTokens\":3881},\"tracesCount\":171,"                           \
	"\"startedAt\":\"2025-05-26T17:57:26.708Z\"}"

static void send_patches_protobuf_with_device_headers(void)
{
	char args[512], want_path[256], head[1024];
	size_t pb_len = 0, h = 0, b = 0, t = 0;
	uint8_t *pb = pb_of(UPDATE_A, &pb_len);
	run_result r;
	fu_request q;

	CU_ASSERT_FATAL(pb != NULL);
	fu_clear(fu);
	snprintf(args, sizeof(args), "send --gateway http://127.0.0.1:%u/ "
		 "--token dev-token-1 --session 'dev/1 \xc3\xa9'",
		 (unsigned)fu_port(fu));
	r = run_cli(args, UPDATE_A);
	CU_ASSERT_EQUAL(r.status, 0);
	CU_ASSERT(r.out && strstr(r.out, "HTTP 200\n") == r.out);
	CU_ASSERT(r.out && strstr(r.out, "\"_id\":\"dev/1 \xc3\xa9\""));
	CU_ASSERT_EQUAL(fu_count(fu), 1);
	CU_ASSERT_FATAL(fu_get(fu, 0, &q));
	snprintf(want_path, sizeof(want_path), "%s",
		 "/v2/traces/sessions/dev%2F1%20%C3%A9");
	CU_ASSERT_STRING_EQUAL(q.method, "PATCH");
	CU_ASSERT_STRING_EQUAL(q.path, want_path);
	CU_ASSERT_STRING_EQUAL(q.content_type, "application/x-protobuf");
	CU_ASSERT_STRING_EQUAL(q.accept, "application/x-protobuf");
	CU_ASSERT_STRING_EQUAL(q.authorization, "Bearer dev-token-1");
	CU_ASSERT_EQUAL(q.body_len, pb_len);
	CU_ASSERT(q.body_len == pb_len && !memcmp(q.body, pb, pb_len));
	/* the exact request head libcurl sends */
	snprintf(head, sizeof(head),
		 "PATCH %s HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n"
		 "Content-Type: application/x-protobuf\r\n"
		 "Accept: application/x-protobuf\r\n"
		 "Authorization: Bearer dev-token-1\r\n"
		 "Content-Length: %zu\r\n\r\n",
		 want_path, (unsigned)fu_port(fu), pb_len);
	CU_ASSERT_FATAL(wire_bytes(r.out, &h, &b, &t));
	CU_ASSERT_EQUAL(h, strlen(head));
	CU_ASSERT_EQUAL(b, pb_len);
	CU_ASSERT_EQUAL(t, h + b);
	fu_request_free(&q);
	run_free(&r);
	free(pb);
}

static void send_json_sends_canonical_json(void)
{
	char args[512];
	run_result r;
	fu_request q;

	fu_clear(fu);
	snprintf(args, sizeof(args), "send --gateway http://127.0.0.1:%u "
		 "--session s1 --json", (unsigned)fu_port(fu));
	r = run_cli(args, "{ \"tracesCount\" : 3, \"externalId\": \"e\" }");
	CU_ASSERT_EQUAL(r.status, 0);
	CU_ASSERT_FATAL(fu_get(fu, 0, &q));
	CU_ASSERT_STRING_EQUAL(q.content_type, "application/json");
	CU_ASSERT_STRING_EQUAL(q.accept, "application/json");
	CU_ASSERT_STRING_EQUAL(q.authorization, "");
	CU_ASSERT_STRING_EQUAL(q.body, "{\"external_id\":\"e\",\"traces_count\":3}");
	fu_request_free(&q);
	run_free(&r);
}

static void send_batch_posts_envelopes_in_sequence(void)
{
	static const char *const lines[] = {
		"{\"duration\":1}", UPDATE_A, "{\"tags\":[\"a\",\"b\"]}",
	};
	char path[] = "/tmp/sw-send-batch-XXXXXX";
	char args[512];
	sw_envelope env[8];
	size_t n = 0, i, h = 0, b = 0, t = 0;
	run_result r;
	fu_request q;
	FILE *f;
	int fd = mkstemp(path);

	CU_ASSERT_FATAL(fd >= 0);
	f = fdopen(fd, "w");
	CU_ASSERT_FATAL(f != NULL);
	fprintf(f, "%s\n\n%s\r\n%s", lines[0], lines[1], lines[2]);
	fclose(f);
	fu_clear(fu);
	snprintf(args, sizeof(args), "send --gateway http://127.0.0.1:%u "
		 "--token tk --session 01J42CMDHMMCH68TYCT6BXFB8V --seq 41 "
		 "--batch %s", (unsigned)fu_port(fu), path);
	r = run_cli(args, "");
	unlink(path);
	/* the fake answers JSON, not an Ack: nothing is confirmed */
	CU_ASSERT_EQUAL(r.status, 1);
	CU_ASSERT(r.out && strstr(r.out, "HTTP 200\n") == r.out);
	CU_ASSERT_FATAL(fu_get(fu, 0, &q));
	CU_ASSERT_STRING_EQUAL(q.method, "POST");
	CU_ASSERT_STRING_EQUAL(q.path, "/v1/updates");
	CU_ASSERT_STRING_EQUAL(q.content_type, "application/x-protobuf");
	CU_ASSERT_STRING_EQUAL(q.authorization, "Bearer tk");
	CU_ASSERT_EQUAL_FATAL(sw_batch_decode((const uint8_t *)q.body,
					      q.body_len, env, 8, &n, NULL),
			      SW_OK);
	CU_ASSERT_EQUAL_FATAL(n, 3);
	for (i = 0; i < n; i++) {
		size_t want_len = 0;
		uint8_t *want = pb_of(lines[i], &want_len);
		char id[64];

		CU_ASSERT(env[i].has_seq && env[i].seq == 41 + i);
		CU_ASSERT_EQUAL(env[i].session_id.kind, SW_ID_ULID);
		CU_ASSERT(sw_session_id_format(&env[i].session_id, id,
					       sizeof(id)) == 26 &&
			  !strcmp(id, "01J42CMDHMMCH68TYCT6BXFB8V"));
		CU_ASSERT(want && env[i].update_len == want_len &&
			  !memcmp(env[i].update, want, want_len));
		free(want);
	}
	CU_ASSERT_FATAL(wire_bytes(r.out, &h, &b, &t));
	CU_ASSERT_EQUAL(b, q.body_len);
	CU_ASSERT_EQUAL(t, h + b);
	CU_ASSERT(h > 100 && h < 250);
	fu_request_free(&q);
	run_free(&r);
}

static void send_reports_error_statuses(void)
{
	fu_step st = { FU_STATUS, 404, "{\"message\":\"Session not found\"}",
		       NULL, 0 };
	char args[512];
	run_result r;

	fu_clear(fu);
	fu_script(fu, &st, 1);
	snprintf(args, sizeof(args), "send --gateway http://127.0.0.1:%u "
		 "--session s1", (unsigned)fu_port(fu));
	r = run_cli(args, "{\"duration\":1}");
	CU_ASSERT_EQUAL(r.status, 1);
	CU_ASSERT(r.out && strstr(r.out, "HTTP 404\n") == r.out);
	CU_ASSERT(r.out && strstr(r.out, "Session not found"));
	CU_ASSERT(r.out && strstr(r.out, "bytes on the wire: "));
	CU_ASSERT_EQUAL(fu_count(fu), 1);
	run_free(&r);
}

static void send_rejects_bad_input_and_usage(void)
{
	static const struct {
		const char *args; /* after "send --gateway URL" */
		const char *input;
		int status;
		const char *err;  /* in stderr */
	} t[] = {
		{ "--session s", "{\"duration\":\"x\"}", 1, "duration" },
		{ "--session s", "", 1, "error" },
		{ "--session ..", "{}", 2, "--session" },
		{ "", "{}", 2, "--session" },
		{ "--session s --json --batch x", "", 2, "--json" },
		{ "--session s --seq -1", "", 2, "--seq" },
		{ "--session s --seq 18446744073709551616", "", 2, "--seq" },
		{ "--session s --batch /nonexistent/x", "", 2, "cannot open" },
		{ "--session s --bogus", "", 2, "--bogus" },
		{ "--session s --token", "", 2, "--token" },
	};
	run_result r0;
	size_t i;

	fu_clear(fu);
	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		char args[512];
		run_result r;

		snprintf(args, sizeof(args), "send --gateway http://127.0.0.1:%u %s",
			 (unsigned)fu_port(fu), t[i].args);
		r = run_cli(args, t[i].input);
		if (r.status != t[i].status)
			fprintf(stderr, "\n%s: status %d\n", args, r.status);
		CU_ASSERT_EQUAL(r.status, t[i].status);
		CU_ASSERT(r.err && strstr(r.err, t[i].err));
		run_free(&r);
	}
	r0 = run_cli("send --session s", "{}");
	CU_ASSERT_EQUAL(r0.status, 2);
	CU_ASSERT(r0.err && strstr(r0.err, "--gateway"));
	run_free(&r0);
	CU_ASSERT_EQUAL(fu_count(fu), 0);
}

static void send_transport_error_exits_2(void)
{
	run_result r = run_cli("send --gateway http://127.0.0.1:1 --session s",
			       "{\"duration\":1}");

	CU_ASSERT_EQUAL(r.status, 2);
	CU_ASSERT(r.err && strstr(r.err, "127.0.0.1"));
	run_free(&r);
}

static void send_help_lists_every_option(void)
{
	static const char *const opts[] = { "--gateway", "--token", "--session",
					     "--seq", "--batch", "--json",
					     "bytes on the wire" };
	run_result r = run_cli("send --help", ""), m = run_cli("--help", "");
	size_t i;

	CU_ASSERT_EQUAL(r.status, 0);
	for (i = 0; i < sizeof(opts) / sizeof(opts[0]); i++)
		CU_ASSERT(r.out && strstr(r.out, opts[i]));
	CU_ASSERT(m.out && strstr(m.out, "  send "));
	run_free(&r);
	run_free(&m);
}

/* ==== session-codec send through the gateway (protobuf answers) ==== */

typedef struct gw_stand {
	gw_config c;
	gw_upstream *up;
	gw_server *srv;
} gw_stand;

/* A gateway on 127.0.0.1 (anonymous devices) in front of the fake. */
static int stand_start(gw_stand *g)
{
	char err[256] = "";

	gw_config_defaults(&g->c);
	g->c.listen_port = 0;
	snprintf(g->c.upstream, sizeof(g->c.upstream), "http://127.0.0.1:%u",
		 (unsigned)fu_port(fu));
	g->c.api_key = test_key;
	g->c.allow_anonymous = true;
	g->c.backoff_base_ms = 5;
	g->c.backoff_max_ms = 20;
	g->up = gw_upstream_new(&g->c, err, sizeof(err));
	g->srv = g->up ? gw_server_start(&g->c, g->up, NULL, err, sizeof(err))
		       : NULL;
	if (g->srv == NULL) {
		fprintf(stderr, "\ngateway: %s\n", err);
		gw_upstream_free(g->up);
		return -1;
	}
	return 0;
}

static void stand_stop(gw_stand *g)
{
	gw_server_stop(g->srv);
	gw_upstream_free(g->up);
}

static void send_through_gateway_decodes_session_and_acks(void)
{
	fu_step st = { FU_STATUS, 404, "{\"message\":\"Session not found\"}",
		       NULL, 0 };
	char path[] = "/tmp/sw-send-gw-XXXXXX";
	char args[512];
	gw_stand g;
	run_result r;
	FILE *f;
	int fd;

	fu_clear(fu);
	gw_log_set_level(GW_LOG_ERROR); /* no request lines in the test output */
	CU_ASSERT_FATAL(stand_start(&g) == 0);

	/* one PATCH: the session comes back as protobuf, printed as JSON */
	snprintf(args, sizeof(args), "send --gateway http://127.0.0.1:%u "
		 "--session 01J42CMDHMMCH68TYCT6BXFB8V",
		 (unsigned)gw_server_port(g.srv));
	r = run_cli(args, UPDATE_A);
	CU_ASSERT_EQUAL(r.status, 0);
	CU_ASSERT(r.out && strstr(r.out, "HTTP 200\n{\"_id\":\"01J42CMDHMMCH68TYCT6BXFB8V\","
				  "\"external_id\":\"dev-a8346607363a\",\"duration\":1358072,"));
	run_free(&r);

	/* a batch of three, the second answered 404 upstream */
	fd = mkstemp(path);
	CU_ASSERT_FATAL(fd >= 0);
	f = fdopen(fd, "w");
	CU_ASSERT_FATAL(f != NULL);
	fprintf(f, "{\"duration\":1}\n{\"duration\":2}\n{\"duration\":3}\n");
	fclose(f);
	fu_clear(fu);
	fu_script(fu, (fu_step[]){ { FU_OK, 0, NULL, NULL, 0 }, st }, 2);
	snprintf(args, sizeof(args), "send --gateway http://127.0.0.1:%u "
		 "--session s-7 --seq 10 --batch %s",
		 (unsigned)gw_server_port(g.srv), path);
	r = run_cli(args, "");
	unlink(path);
	CU_ASSERT_EQUAL(r.status, 1);
	CU_ASSERT(r.out && strstr(r.out, "HTTP 200\nseq=10 status=200\n"
				  "seq=11 status=404"));
	CU_ASSERT(r.out && strstr(r.out, "\nseq=12 status=200\n"));
	CU_ASSERT_EQUAL(fu_count(fu), 3);
	run_free(&r);

	/* every item confirmed: exit 0 */
	snprintf(path, sizeof(path), "/tmp/sw-send-gw-XXXXXX");
	fd = mkstemp(path);
	CU_ASSERT_FATAL(fd >= 0);
	f = fdopen(fd, "w");
	CU_ASSERT_FATAL(f != NULL);
	fprintf(f, "{\"duration\":1}\n{\"duration\":2}\n");
	fclose(f);
	snprintf(args, sizeof(args), "send --gateway http://127.0.0.1:%u "
		 "--session s-7 --seq 10 --batch %s",
		 (unsigned)gw_server_port(g.srv), path);
	r = run_cli(args, "");
	unlink(path);
	CU_ASSERT_EQUAL(r.status, 0);
	CU_ASSERT(r.out && strstr(r.out, "seq=10 status=200\nseq=11 status=200\n"));
	run_free(&r);
	stand_stop(&g);
	gw_log_set_level(GW_LOG_INFO);
}

/* ==== Suite ==== */

static int suite_init(void)
{
	fu = fu_start(0);
	return fu ? 0 : -1;
}

static int suite_clean(void)
{
	fu_stop(fu);
	fu = NULL;
	return 0;
}

#define T(fn) { #fn, fn }

int init_upstream_tests(void)
{
	static const struct {
		const char *name;
		CU_TestFunc fn;
	} tests[] = {
		T(patch_sends_sdk_method_path_and_headers),
		T(patch_delivers_every_vector_byte_identical),
		T(patch_reuses_the_connection),
		T(patch_is_thread_safe_and_pools_handles),
		T(retries_503_then_succeeds),
		T(retries_every_retryable_status),
		T(retry_after_one_second_is_waited),
		T(final_statuses_are_not_retried),
		T(reset_connection_is_retried),
		T(resets_until_the_end_are_reported),
		T(timeout_is_retried_then_succeeds),
		T(timeouts_until_the_end_are_reported),
		T(max_attempts_is_honoured),
		T(retry_budget_stops_new_attempts),
		T(retry_after_beyond_budget_returns_the_hint),
		T(metrics_count_attempts_and_retries),
		T(retry_after_table),
		T(errors_never_contain_the_key),
		T(scrub_replaces_every_key),
		T(new_rejects_missing_or_unsafe_key),
		T(send_patches_protobuf_with_device_headers),
		T(send_json_sends_canonical_json),
		T(send_batch_posts_envelopes_in_sequence),
		T(send_reports_error_statuses),
		T(send_rejects_bad_input_and_usage),
		T(send_transport_error_exits_2),
		T(send_help_lists_every_option),
		T(send_through_gateway_decodes_session_and_acks),
	};
	CU_pSuite s = CU_add_suite("upstream", suite_init, suite_clean);
	size_t i;

	if (s == NULL)
		return -1;
	for (i = 0; i < sizeof(tests) / sizeof(tests[0]); i++)
		if (CU_add_test(s, tests[i].name, tests[i].fn) == NULL)
			return -1;
	return 0;
}
