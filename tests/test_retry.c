/* test_retry.c - the one retry policy (gateway/retry.c) as one table, and
 * the three paths that ask it, each driven through a real gateway on
 * 127.0.0.1 in front of the stand-in upstream:
 *   a direct PATCH     in-memory retries: worth it -> a second attempt
 *   a batch item       one attempt; worth it -> the device must resend,
 *                      so the session's next item is not sent (status 0)
 *   the spool          worth it -> the row is sent again later; else it
 *                      becomes a dead letter with the API's answer
 * Every row of the table runs through all three. */
#include <CUnit/CUnit.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fake_upstream.h"
#include "gw.h"
#include "testutil.h"

#define KEY "sk-org-RETRY-table-5d1e"

static fake_upstream *fu;
static char org_key[] = KEY;
static char root[64];
static int dirs;

/* What the upstream does first (200 after it) and what the policy says. */
typedef struct rcase {
	const char *name;
	fu_step first;
	bool retry;          /* worth another attempt */
	int device_status;   /* what one attempt gives a device */
} rcase;

#define ST(code) { FU_STATUS, code, NULL, NULL, 0 }

static const rcase cases[] = {
	{ "408", ST(408), true, 408 },
	{ "429", { FU_STATUS, 429, NULL, "0", 0 }, true, 429 },
	{ "500", ST(500), true, 500 },
	{ "502", ST(502), true, 502 },
	{ "503", ST(503), true, 503 },
	{ "504", ST(504), true, 504 },
	{ "400", ST(400), false, 400 },
	{ "401", ST(401), false, 401 },
	{ "404", ST(404), false, 404 },
	{ "409", ST(409), false, 409 },
	{ "422", ST(422), false, 422 },
	{ "501", ST(501), false, 501 },
	{ "505", ST(505), false, 505 },
	{ "connection reset (no answer)", { FU_RESET, 0, NULL, NULL, 0 },
	  true, 502 },
	{ "timeout (no answer)", { FU_DELAY, 0, NULL, NULL, 1500 }, true, 504 },
};
#define N_CASES (sizeof(cases) / sizeof(cases[0]))

static const char body[] = "{\"traces_count\":1}";

static void cfg(gw_config *c)
{
	tu_gw_config(c, fu_port(fu), org_key);
	c->allow_anonymous = true;
	c->threads = 2;
	c->upstream_timeout_ms = 400;  /* the timeout case: 1.5 s delay */
	c->backoff_base_ms = 1;
	c->backoff_max_ms = 2;
	c->log_level = GW_LOG_ERROR;
}

/* A session id per case and path, so scripts never meet. */
static void sid_of(char *out, size_t cap, const char *path, size_t i)
{
	snprintf(out, cap, "rt-%s-%zu", path, i);
}

/* Upstream requests for session sid so far. */
static size_t count_for(const char *sid)
{
	size_t i, n = 0, total = fu_count(fu);
	char want[128];
	fu_request r;

	snprintf(want, sizeof(want), "/v2/traces/sessions/%s", sid);
	for (i = 0; i < total; i++) {
		if (!fu_get(fu, i, &r))
			continue;
		n += strcmp(r.path, want) == 0;
		fu_request_free(&r);
	}
	return n;
}

/* ==== The policy itself ==== */

static void policy_table_by_status_and_curl_code(void)
{
	static const int retried[] = { 408, 429, 500, 502, 503, 504 };
	static const int final[] = { 200, 201, 204, 400, 401, 403, 404, 405,
				     409, 410, 413, 415, 422, 501, 505, 599 };
	static const struct { int code; bool retry; } curl[] = {
		{ CURLE_COULDNT_RESOLVE_HOST, true },
		{ CURLE_COULDNT_CONNECT, true },
		{ CURLE_OPERATION_TIMEDOUT, true },
		{ CURLE_SEND_ERROR, true },
		{ CURLE_RECV_ERROR, true },
		{ CURLE_GOT_NOTHING, true },
		{ CURLE_PARTIAL_FILE, true },
		{ CURLE_SSL_CONNECT_ERROR, true },
		{ GW_CURL_NOT_STARTED, true },
		{ CURLE_URL_MALFORMAT, false },
		{ CURLE_UNSUPPORTED_PROTOCOL, false },
		{ CURLE_PEER_FAILED_VERIFICATION, false },
		{ CURLE_TOO_MANY_REDIRECTS, false },
	};
	gw_retry_policy mem, keep;
	gw_config c;
	size_t i;

	gw_config_defaults(&c);
	gw_retry_policy_of(&c, false, &mem);
	gw_retry_policy_of(&c, true, &keep);
	for (i = 0; i < sizeof(retried) / sizeof(retried[0]); i++) {
		CU_ASSERT_TRUE(gw_retry_retryable(&mem, retried[i], 0));
		CU_ASSERT_TRUE(gw_retry_retryable(&keep, retried[i], 0));
	}
	for (i = 0; i < sizeof(final) / sizeof(final[0]); i++) {
		CU_ASSERT_FALSE(gw_retry_retryable(&mem, final[i], 0));
		CU_ASSERT_FALSE(gw_retry_retryable(&keep, final[i], 0));
	}
	for (i = 0; i < sizeof(curl) / sizeof(curl[0]); i++) {
		CU_ASSERT_EQUAL(gw_retry_retryable(&mem, 0, curl[i].code),
				curl[i].retry);
		/* nothing reached the API: the spool always tries again */
		CU_ASSERT_TRUE(gw_retry_retryable(&keep, 0, curl[i].code));
	}
	CU_ASSERT_EQUAL(gw_retry_no_answer_status(CURLE_OPERATION_TIMEDOUT), 504);
	CU_ASSERT_EQUAL(gw_retry_no_answer_status(CURLE_COULDNT_CONNECT), 502);
	CU_ASSERT_EQUAL(gw_retry_no_answer_status(CURLE_RECV_ERROR), 502);
}

static void policy_waits_within_attempts_and_budget(void)
{
	gw_retry_policy p;
	uint64_t rng = 42;
	int i;

	memset(&p, 0, sizeof(p));
	p.max_attempts = 3;
	p.budget_ms = 1000;
	p.base_ms = 100;
	p.max_ms = 250;
	for (i = 0; i < 200; i++) {
		long w1 = gw_retry_next(&p, 1, 0, -1, &rng);
		long w2 = gw_retry_next(&p, 2, 0, -1, &rng);

		CU_ASSERT(w1 >= 0 && w1 <= 100);  /* full jitter, base */
		CU_ASSERT(w2 >= 0 && w2 <= 200);  /* doubled */
	}
	CU_ASSERT_EQUAL(gw_retry_next(&p, 3, 0, -1, &rng), -1); /* attempts */
	CU_ASSERT_EQUAL(gw_retry_next(&p, 1, 0, 400, &rng), 400); /* RA */
	CU_ASSERT_EQUAL(gw_retry_next(&p, 1, 700, 400, &rng), -1); /* budget */
	CU_ASSERT_EQUAL(gw_retry_next(&p, 1, 1200, -1, &rng), -1); /* spent */
	/* capped at max_ms however many attempts */
	p.max_attempts = 0;
	p.budget_ms = 0;
	for (i = 0; i < 200; i++)
		CU_ASSERT(gw_retry_next(&p, 30, 0, -1, &rng) <= 250);
}

/* ==== Path 1: a direct PATCH, retried in memory ==== */

static void direct_patch_follows_the_table(void)
{
	gw_config c;
	gw_upstream *up;
	gw_server *s;
	char err[256], sid[64], path[128];
	size_t i;
	static const char *const hdr[] = { "Content-Type: application/json",
					   NULL };

	cfg(&c);
	c.max_attempts = 2;
	up = gw_upstream_new(&c, err, sizeof(err));
	CU_ASSERT_PTR_NOT_NULL_FATAL(up);
	s = gw_server_start(&c, up, NULL, err, sizeof(err));
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	fu_clear(fu);
	for (i = 0; i < N_CASES; i++) {
		tu_http_res r;
		long st;

		sid_of(sid, sizeof(sid), "direct", i);
		snprintf(path, sizeof(path), "/v2/traces/sessions/%s", sid);
		fu_script_for(fu, path, &cases[i].first, 1);
		st = tu_http(gw_server_port(s), "PATCH", path, hdr, body,
			     sizeof(body) - 1, 10, &r);
		CU_ASSERT_EQUAL(st, cases[i].retry ? 200 : cases[i].device_status);
		CU_ASSERT_EQUAL(count_for(sid), cases[i].retry ? 2u : 1u);
		if (st != (cases[i].retry ? 200 : cases[i].device_status))
			fprintf(stderr, "\ndirect %s: %ld %s\n", cases[i].name,
				st, r.body ? r.body : "");
		tu_http_free(&r);
	}
	gw_server_stop(s);
	gw_upstream_free(up);
}

/* ==== Path 2: a batch item, one attempt, the device resends ==== */

/* A batch of two updates (seq 1, 2) of session sid. */
static size_t batch_of(const char *sid, uint8_t *b, size_t cap)
{
	uint8_t pb[64], env[256];
	size_t pn = 0, en = 0, len = 0;
	sw_session_id id;
	sw_update *u = NULL;

	if (sw_json_parse(body, sizeof(body) - 1, NULL, &u, NULL) != SW_OK ||
	    sw_pb_encode(u, pb, sizeof(pb), &pn, NULL) != SW_OK) {
		sw_update_free(u);
		return 0;
	}
	sw_update_free(u);
	sw_session_id_set(&id, sid, strlen(sid));
	if (sw_envelope_encode(&id, true, 1, pb, pn, env, sizeof(env), &en,
			       NULL) != SW_OK ||
	    sw_batch_append(env, en, b, cap, &len, NULL) != SW_OK ||
	    sw_envelope_encode(NULL, false, 0, pb, pn, env, sizeof(env), &en,
			       NULL) != SW_OK ||
	    sw_batch_append(env, en, b, cap, &len, NULL) != SW_OK)
		return 0;
	return len;
}

static void batch_item_follows_the_table(void)
{
	gw_config c;
	gw_upstream *up;
	gw_server *s;
	char err[256], sid[64], path[128];
	size_t i;
	static const char *const hdr[] = {
		"Content-Type: application/x-protobuf", NULL };

	cfg(&c);
	c.max_attempts = 1;
	up = gw_upstream_new(&c, err, sizeof(err));
	CU_ASSERT_PTR_NOT_NULL_FATAL(up);
	s = gw_server_start(&c, up, NULL, err, sizeof(err));
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	fu_clear(fu);
	for (i = 0; i < N_CASES; i++) {
		uint8_t b[512];
		size_t bn, n = 0, sent;
		sw_result res[4];
		tu_http_res r;
		/* libcurl itself sends a request once more when a reused
		 * connection turns out dead before any answer: a reset is
		 * scripted twice so that one attempt sees no answer */
		bool reset = cases[i].first.action == FU_RESET;
		fu_step steps[2] = { cases[i].first, cases[i].first };

		sid_of(sid, sizeof(sid), "batch", i);
		snprintf(path, sizeof(path), "/v2/traces/sessions/%s", sid);
		bn = batch_of(sid, b, sizeof(b));
		CU_ASSERT_FATAL(bn > 0);
		fu_script_for(fu, path, steps, reset ? 2 : 1);
		CU_ASSERT_EQUAL(tu_http(gw_server_port(s), "POST", "/v1/updates",
					hdr, b, bn, 10, &r), 200);
		CU_ASSERT_EQUAL_FATAL(sw_ack_decode((const uint8_t *)r.body,
						    r.body_len, res, 4, &n,
						    NULL), SW_OK);
		CU_ASSERT_EQUAL_FATAL(n, 2);
		CU_ASSERT_EQUAL(res[0].status, (uint32_t)cases[i].device_status);
		/* worth another attempt: the device resends it, and the
		 * session's next update waits (0: not sent) */
		CU_ASSERT_EQUAL(res[1].status, cases[i].retry ? 0u : 200u);
		sent = count_for(sid);
		if (reset) {
			CU_ASSERT(sent == 1 || sent == 2);
		} else {
			CU_ASSERT_EQUAL(sent, cases[i].retry ? 1u : 2u);
		}
		if (res[0].status != (uint32_t)cases[i].device_status ||
		    res[1].status != (cases[i].retry ? 0u : 200u))
			fprintf(stderr, "\nbatch %s: %u %u\n", cases[i].name,
				res[0].status, res[1].status);
		tu_http_free(&r);
	}
	gw_server_stop(s);
	gw_upstream_free(up);
}

/* ==== Path 3: the spool's forwarder ==== */

static double metric_of(unsigned port, const char *name)
{
	tu_http_res r;
	const char *p;
	double v = -1;
	size_t n = strlen(name);

	if (tu_http(port, "GET", "/metrics", NULL, NULL, 0, 5, &r) == 200)
		for (p = r.body; p && (p = strstr(p, name)) != NULL; p += n)
			if ((p == r.body || p[-1] == '\n') && p[n] == ' ') {
				v = strtod(p + n + 1, NULL);
				break;
			}
	tu_http_free(&r);
	return v;
}

static void spool_forwarder_follows_the_table(void)
{
	gw_config c;
	gw_upstream *up;
	gw_spool *sp;
	gw_server *s;
	char err[512], dir[128], sid[64], path[128];
	size_t i;
	static const char *const hdr[] = { "Content-Type: application/json",
					   "Prefer: respond-async", NULL };

	cfg(&c);
	snprintf(dir, sizeof(dir), "%s/s%d", root, ++dirs);
	snprintf(c.spool_dir, sizeof(c.spool_dir), "%s", dir);
	c.spool_forwarders = 4;
	up = gw_upstream_new(&c, err, sizeof(err));
	CU_ASSERT_PTR_NOT_NULL_FATAL(up);
	sp = gw_spool_open(&c, err, sizeof(err));
	CU_ASSERT_PTR_NOT_NULL_FATAL(sp);
	s = gw_server_start_spool(&c, up, sp, NULL, err, sizeof(err));
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	fu_clear(fu);
	for (i = 0; i < N_CASES; i++) {
		double dead0 = metric_of(gw_server_port(s),
					 "sessionwire_spool_dead_letters_total");
		size_t want = cases[i].retry ? 2 : 1;
		tu_http_res r;
		double end;

		sid_of(sid, sizeof(sid), "spool", i);
		snprintf(path, sizeof(path), "/v2/traces/sessions/%s", sid);
		fu_script_for(fu, path, &cases[i].first, 1);
		CU_ASSERT_EQUAL(tu_http(gw_server_port(s), "PATCH", path, hdr,
					body, sizeof(body) - 1, 10, &r), 202);
		tu_http_free(&r);
		/* delivered (a retry: sent again) or dead, and the row gone */
		end = tu_mono() + 10;
		while (tu_mono() < end &&
		       (count_for(sid) < want ||
			metric_of(gw_server_port(s), "sessionwire_spool_depth") != 0))
			tu_sleep_ms(10);
		tu_sleep_ms(50); /* nothing more may come */
		CU_ASSERT_EQUAL(count_for(sid), want);
		CU_ASSERT_EQUAL(metric_of(gw_server_port(s),
					  "sessionwire_spool_dead_letters_total") - dead0,
				cases[i].retry ? 0 : 1);
		if (count_for(sid) != want)
			fprintf(stderr, "\nspool %s: %zu requests\n",
				cases[i].name, count_for(sid));
	}
	gw_server_stop(s);
	gw_spool_close(sp);
	gw_upstream_free(up);
}

static int suite_init(void)
{
	gw_log_set_level(GW_LOG_ERROR);
	snprintf(root, sizeof(root), "/tmp/sw-retry-XXXXXX");
	if (mkdtemp(root) == NULL)
		return -1;
	fu = fu_start(0);
	return fu ? 0 : -1;
}

static int suite_clean(void)
{
	fu_stop(fu);
	return tu_rmrf(root);
}

int init_retry_tests(void)
{
	CU_pSuite s = CU_add_suite("retry", suite_init, suite_clean);

	if (s == NULL)
		return -1;
	if (!CU_add_test(s, "policy_table_by_status_and_curl_code",
			 policy_table_by_status_and_curl_code) ||
	    !CU_add_test(s, "policy_waits_within_attempts_and_budget",
			 policy_waits_within_attempts_and_budget) ||
	    !CU_add_test(s, "direct_patch_follows_the_table",
			 direct_patch_follows_the_table) ||
	    !CU_add_test(s, "batch_item_follows_the_table",
			 batch_item_follows_the_table) ||
	    !CU_add_test(s, "spool_forwarder_follows_the_table",
			 spool_forwarder_follows_the_table))
		return -1;
	return 0;
}
