/* test_spool_sync.c - JSON clients in spool mode (RFC 7240): a JSON
 * PATCH without `Prefer: respond-async` is stored, then gets the API's
 * own answer (status and body as they came) once the forwarder has it,
 * or 202 "stored, will be delivered" after --sync-wait-ms; with the
 * preference, or as a device's protobuf, 202 at once. Every update is
 * stored once and reaches the API once, whatever the client got. The
 * official SDK's bodies (tests/vectors) are the JSON client's. */
#include <CUnit/CUnit.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fake_upstream.h"
#include "gw.h"
#include "testutil.h"

static char org_key[] = "sk-org-SYNC-spool-7c2a";
static fake_upstream *fu;
static char root[64];
static int dirs;

static const char *const json_hdr[] = { "Content-Type: application/json",
					NULL };
static const char *const async_hdr[] = { "Content-Type: application/json",
					 "Prefer: respond-async", NULL };

/* A spool-mode gateway in front of the upstream on port up_port. */
typedef struct sgw {
	gw_config c;
	gw_upstream *up;
	gw_spool *sp;
	gw_server *s;
	unsigned port;
} sgw;

static int sgw_start(sgw *g, uint16_t up_port, long sync_wait_ms)
{
	char err[512] = "";

	memset(g, 0, sizeof(*g));
	tu_gw_config(&g->c, up_port, org_key);
	g->c.allow_anonymous = true;
	g->c.threads = 2;
	g->c.upstream_timeout_ms = 3000;
	g->c.backoff_base_ms = 5;
	g->c.backoff_max_ms = 50;
	g->c.spool_forwarders = 4;
	g->c.sync_wait_ms = sync_wait_ms;
	g->c.log_level = GW_LOG_ERROR;
	snprintf(g->c.spool_dir, sizeof(g->c.spool_dir), "%s/s%d", root, ++dirs);
	g->up = gw_upstream_new(&g->c, err, sizeof(err));
	if (g->up)
		g->sp = gw_spool_open(&g->c, err, sizeof(err));
	if (g->sp)
		g->s = gw_server_start_spool(&g->c, g->up, g->sp, NULL, err,
					     sizeof(err));
	if (g->s == NULL) {
		fprintf(stderr, "sgw_start: %s\n", err);
		gw_spool_close(g->sp);
		gw_upstream_free(g->up);
		return -1;
	}
	g->port = gw_server_port(g->s);
	return 0;
}

static void sgw_stop(sgw *g)
{
	gw_server_stop(g->s);
	gw_spool_close(g->sp);
	gw_upstream_free(g->up);
}

static size_t count_path(fake_upstream *f, const char *path)
{
	size_t i, n = 0, total = fu_count(f);
	fu_request r;

	for (i = 0; i < total; i++) {
		if (!fu_get(f, i, &r))
			continue;
		n += strcmp(r.path, path) == 0;
		fu_request_free(&r);
	}
	return n;
}

/* ==== Prefer (RFC 7240) ==== */

static void prefer_header_table(void)
{
	static const struct { const char *v; bool async; } t[] = {
		{ "respond-async", true },
		{ "Respond-Async", true },
		{ "respond-async, wait=10", true },
		{ "wait=10,respond-async", true },
		{ "  return=minimal , \trespond-async", true },
		{ "respond-async=1", true },
		{ "respond-async;x=y", true },
		{ "handling=lenient; respond-async", false }, /* a parameter */
		{ "respond-asyncx", false },
		{ "x-respond-async", false },
		{ "respond", false },
		{ "", false },
		{ ",,,", false },
	};
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		CU_ASSERT_EQUAL(gw_prefers_async(t[i].v), t[i].async);
		if (gw_prefers_async(t[i].v) != t[i].async)
			fprintf(stderr, "\nPrefer: %s\n", t[i].v);
	}
	CU_ASSERT_FALSE(gw_prefers_async(NULL));
}

/* ==== The API's answer, relayed ==== */

static void json_client_gets_the_api_answer(void)
{
	static const struct {
		const char *sid;
		fu_step step;
		long status;
		const char *in_body;
	} t[] = {
		{ "sy-ok", { FU_OK, 0, NULL, NULL, 0 }, 200, "\"_id\":\"sy-ok\"" },
		{ "sy-404", { FU_STATUS, 404,
			      "{\"code\":\"not_found\",\"message\":\"Session not found\"}",
			      NULL, 0 }, 404, "\"Session not found\"" },
		{ "sy-401", { FU_STATUS, 401,
			      "{\"message\":\"Invalid API key\"}", NULL, 0 },
		  401, "\"Invalid API key\"" },
		{ "sy-422", { FU_STATUS, 422, "{\"message\":\"bad\"}", NULL, 0 },
		  422, "\"bad\"" },
	};
	sgw g;
	size_t i;

	fu_clear(fu);
	CU_ASSERT_FATAL(sgw_start(&g, fu_port(fu), 10000) == 0);
	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		char path[128];
		tu_http_res r;

		snprintf(path, sizeof(path), "/v2/traces/sessions/%s", t[i].sid);
		fu_script_for(fu, path, &t[i].step, 1);
		CU_ASSERT_EQUAL(tu_http(g.port, "PATCH", path, json_hdr,
					"{\"duration\":7}", 14, 15, &r),
				t[i].status);
		CU_ASSERT_PTR_NOT_NULL(r.body && strstr(r.body, t[i].in_body));
		/* the API's body as it came, not the gateway's */
		CU_ASSERT_PTR_NULL(r.body && strstr(r.body, "\"accepted\""));
		CU_ASSERT_STRING_EQUAL(r.preference_applied, "");
		CU_ASSERT_EQUAL(count_path(fu, path), 1u);
		tu_http_free(&r);
	}
	sgw_stop(&g);
}

/* ==== Late, or not waited for: 202 ==== */

static void late_answer_gets_202_and_is_delivered_once(void)
{
	fu_step slow = { FU_DELAY, 0, NULL, NULL, 1200 };
	const char *path = "/v2/traces/sessions/sy-late";
	tu_http_res r;
	double t0;
	sgw g;

	fu_clear(fu);
	CU_ASSERT_FATAL(sgw_start(&g, fu_port(fu), 300) == 0);
	fu_script_for(fu, path, &slow, 1);
	t0 = tu_mono();
	CU_ASSERT_EQUAL(tu_http(g.port, "PATCH", path, json_hdr,
				"{\"duration\":8}", 14, 15, &r), 202);
	CU_ASSERT(tu_mono() - t0 >= 0.25 && tu_mono() - t0 < 1.1);
	CU_ASSERT_PTR_NOT_NULL(r.body && strstr(r.body, "\"accepted\""));
	CU_ASSERT_PTR_NOT_NULL(r.body && strstr(r.body, "will be delivered"));
	CU_ASSERT_STRING_EQUAL(r.preference_applied, "");
	tu_http_free(&r);
	/* the slow call finishes: delivered, once */
	CU_ASSERT_EQUAL(fu_wait_count(fu, 1, 5), 1u);
	tu_sleep_ms(1500);
	CU_ASSERT_EQUAL(count_path(fu, path), 1u);
	sgw_stop(&g);
}

static void prefer_respond_async_and_devices_get_202_at_once(void)
{
	fu_step slow[2] = { { FU_DELAY, 0, NULL, NULL, 1000 },
			    { FU_DELAY, 0, NULL, NULL, 1000 } };
	tu_http_res r;
	uint8_t pb[64];
	size_t pn = 0;
	sw_update *u = NULL;
	double t0;
	sgw g;
	static const char *const pb_hdr[] = {
		"Content-Type: application/x-protobuf",
		"Accept: application/x-protobuf", NULL };

	fu_clear(fu);
	CU_ASSERT_FATAL(sgw_start(&g, fu_port(fu), 10000) == 0);
	fu_script(fu, slow, 2);
	t0 = tu_mono();
	CU_ASSERT_EQUAL(tu_http(g.port, "PATCH", "/v2/traces/sessions/sy-pref",
				async_hdr, "{\"duration\":9}", 14, 15, &r), 202);
	CU_ASSERT(tu_mono() - t0 < 0.9);
	CU_ASSERT_STRING_EQUAL(r.preference_applied, "respond-async");
	CU_ASSERT_PTR_NOT_NULL(r.body && strstr(r.body, "\"accepted\""));
	tu_http_free(&r);
	/* a device's protobuf: 202 once stored, as before */
	CU_ASSERT_FATAL(sw_json_parse("{\"duration\":10}", 15, NULL, &u,
				      NULL) == SW_OK);
	CU_ASSERT_FATAL(sw_pb_encode(u, pb, sizeof(pb), &pn, NULL) == SW_OK);
	sw_update_free(u);
	t0 = tu_mono();
	CU_ASSERT_EQUAL(tu_http(g.port, "PATCH", "/v2/traces/sessions/sy-dev",
				pb_hdr, pb, pn, 15, &r), 202);
	CU_ASSERT(tu_mono() - t0 < 0.9);
	CU_ASSERT_STRING_EQUAL(r.preference_applied, "");
	tu_http_free(&r);
	CU_ASSERT_EQUAL(fu_wait_count(fu, 2, 5), 2u);
	sgw_stop(&g);
}

/* ==== The upstream down, then up ==== */

typedef struct bg_req {
	unsigned port;
	const char *path;
	long status;
	char *body;
	double took;
} bg_req;

static void *bg_patch(void *v)
{
	bg_req *b = v;
	tu_http_res r;
	double t0 = tu_mono();

	b->status = tu_http(b->port, "PATCH", b->path, json_hdr,
			    "{\"duration\":11}", 15, 20, &r);
	b->took = tu_mono() - t0;
	b->body = r.body;
	return NULL;
}

/* A port nobody listens on (bound, then closed). */
static uint16_t free_port(void)
{
	struct sockaddr_in a;
	socklen_t al = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	uint16_t p = 0;

	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &al) == 0)
		p = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	return p;
}

/* The API unreachable when the update comes (connection refused), then
 * back: the client waiting gets the API's 200; a 503 streak then 200
 * gives the 200 too; the update went upstream once per attempt only. */
static void upstream_down_then_up(void)
{
	uint16_t port = free_port();
	fake_upstream *late;
	fu_step busy[3] = { { FU_STATUS, 503, NULL, NULL, 0 },
			    { FU_STATUS, 503, NULL, NULL, 0 },
			    { FU_STATUS, 503, NULL, NULL, 0 } };
	bg_req b;
	pthread_t th;
	sgw g;

	CU_ASSERT_FATAL(port != 0);
	CU_ASSERT_FATAL(sgw_start(&g, port, 10000) == 0);
	memset(&b, 0, sizeof(b));
	b.port = g.port;
	b.path = "/v2/traces/sessions/sy-down";
	pthread_create(&th, NULL, bg_patch, &b);
	tu_sleep_ms(600); /* stored; forwarding fails: nobody listens */
	late = fu_start(port);
	CU_ASSERT_PTR_NOT_NULL_FATAL(late);
	pthread_join(th, NULL);
	CU_ASSERT_EQUAL(b.status, 200);
	CU_ASSERT_PTR_NOT_NULL(b.body && strstr(b.body, "\"_id\":\"sy-down\""));
	CU_ASSERT(b.took >= 0.5);
	CU_ASSERT_EQUAL(count_path(late, b.path), 1u);
	free(b.body);
	/* 503, 503, 503, then 200: the final answer is the client's */
	b.path = "/v2/traces/sessions/sy-busy";
	fu_script_for(late, b.path, busy, 3);
	bg_patch(&b);
	CU_ASSERT_EQUAL(b.status, 200);
	CU_ASSERT_EQUAL(count_path(late, b.path), 4u);
	free(b.body);
	sgw_stop(&g);
	fu_stop(late);
}

/* ==== The SDK's own bodies ==== */

typedef struct vec_job {
	unsigned port;
	tu_vector *v;
	int n, from, step;
	int ok, bad;
} vec_job;

static void *vec_client(void *p)
{
	vec_job *j = p;
	int i;

	for (i = j->from; i < j->n; i += j->step) {
		tu_http_res r;
		long st = tu_http(j->port, "PATCH", j->v[i].path, json_hdr,
				  j->v[i].wire, j->v[i].wire_len, 20, &r);
		sw_parse_opts po = { .kind = SW_KIND_SESSION };
		sw_update *s = NULL;

		/* the answer is the API's session, as the SDK parses it */
		if (st == 200 && r.body &&
		    sw_json_parse(r.body, r.body_len, &po, &s, NULL) == SW_OK &&
		    s->id.len == j->v[i].session_id_len &&
		    memcmp(s->id.ptr, j->v[i].session_id, s->id.len) == 0)
			j->ok++;
		else if (j->bad++ < 3)
			fprintf(stderr, "\nvector line %d: %ld %.200s\n",
				j->v[i].line, st, r.body ? r.body : "");
		sw_update_free(s);
		tu_http_free(&r);
	}
	return NULL;
}

/* Every SDK vector as the SDK sends it (its path, its wire JSON), with no
 * Prefer: each client gets the API's 200 and the session; upstream got
 * every body byte for byte, once. */
static void sdk_bodies_get_the_api_answer_through_the_spool(void)
{
	static const char *const files[] = { "sdk_wire.jsonl", "typical.jsonl" };
	size_t f;
	sgw g;

	CU_ASSERT_FATAL(sgw_start(&g, fu_port(fu), 15000) == 0);
	for (f = 0; f < 2; f++) {
		tu_vector *v = NULL;
		int n = tu_vectors_load(files[f], &v), i, k, same = 0;
		vec_job jobs[4];
		pthread_t th[4];
		size_t total;

		CU_ASSERT_FATAL(n > 0);
		fu_clear(fu);
		for (k = 0; k < 4; k++) {
			memset(&jobs[k], 0, sizeof(jobs[k]));
			jobs[k].port = g.port;
			jobs[k].v = v;
			jobs[k].n = n;
			jobs[k].from = k;
			jobs[k].step = 4;
			pthread_create(&th[k], NULL, vec_client, &jobs[k]);
		}
		for (k = 0; k < 4; k++) {
			pthread_join(th[k], NULL);
			CU_ASSERT_EQUAL(jobs[k].bad, 0);
			same += jobs[k].ok;
		}
		CU_ASSERT_EQUAL(same, n);
		total = fu_count(fu);
		CU_ASSERT_EQUAL(total, (size_t)n);
		/* byte for byte: each vector's body went up once */
		same = 0;
		for (i = 0; i < (int)total; i++) {
			fu_request r;

			if (!fu_get(fu, (size_t)i, &r))
				continue;
			for (k = 0; k < n; k++)
				if (!strcmp(r.path, v[k].path) &&
				    r.body_len == v[k].wire_len &&
				    !memcmp(r.body, v[k].wire, r.body_len)) {
					same++;
					break;
				}
			fu_request_free(&r);
		}
		CU_ASSERT_EQUAL(same, n);
		tu_vectors_free(v, n);
	}
	sgw_stop(&g);
}

static int suite_init(void)
{
	gw_log_set_level(GW_LOG_ERROR);
	snprintf(root, sizeof(root), "/tmp/sw-sync-XXXXXX");
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

int init_spool_sync_tests(void)
{
	CU_pSuite s = CU_add_suite("spool_sync", suite_init, suite_clean);

	if (s == NULL)
		return -1;
	if (!CU_add_test(s, "prefer_header_table", prefer_header_table) ||
	    !CU_add_test(s, "json_client_gets_the_api_answer",
			 json_client_gets_the_api_answer) ||
	    !CU_add_test(s, "late_answer_gets_202_and_is_delivered_once",
			 late_answer_gets_202_and_is_delivered_once) ||
	    !CU_add_test(s, "prefer_respond_async_and_devices_get_202_at_once",
			 prefer_respond_async_and_devices_get_202_at_once) ||
	    !CU_add_test(s, "upstream_down_then_up", upstream_down_then_up) ||
	    !CU_add_test(s, "sdk_bodies_get_the_api_answer_through_the_spool",
			 sdk_bodies_get_the_api_answer_through_the_spool))
		return -1;
	return 0;
}
