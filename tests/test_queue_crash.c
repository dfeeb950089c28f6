/* test_queue_crash.c - the queue under load while things die. A real
 * 3-node nats-server cluster (testnats.c), two session-gateway processes
 * (tu_bin) with --queue on one stream, the in-process fake upstream, and
 * 16 device threads PATCHing their sessions with increasing counters
 * ({"traces_count": n}), each request to one of the two gateways in
 * turn, resending n until it gets a 202.
 *
 *   stream leader   the stream's leader node is killed with SIGKILL,
 *                   restarted 3 s later, four times
 *   gateway         one of the two gateways is killed with SIGKILL and
 *                   restarted, six times
 *   cluster         all three nodes are stopped at once (SIGTERM) and
 *                   restarted 4 s later: the gateways answer 503
 *                   meanwhile and acknowledge nothing
 *   cluster killed  the same with SIGKILL: 2.9.10's consumers may pass
 *                   updates over then, which the gateways find in the
 *                   stream and send anyway (counted in the summary)
 *
 * Asserted each time: every acknowledged counter reached the upstream;
 * per session the counters arrived in non-decreasing order (a repeat of
 * the last one is a duplicate, allowed: at-least-once); the gateways
 * stop cleanly with SIGTERM at the end. Prints the figures. */
#include <CUnit/CUnit.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <nats/nats.h>

#include "fake_upstream.h"
#include "gw.h"
#include "testutil.h"

#define SESSIONS 16
#define GATEWAYS 2
#define COUNTER_MAX 1000000
#define STALL_S 45      /* no delivery for this long (> AckWait + a dead
			 * gateway's pull requests' 20 s): what is missing is lost */
#define DRAIN_MAX_S 300 /* a run's whole time at most */

static fake_upstream *fu;
static tu_nats *cl;
static char root[128];
static bool keep_root; /* a failure's logs and cluster data, for a look */
static int run_no;

static char stream[32];
static const char *prefix;
static atomic_int port[GATEWAYS];      /* 0 while that gateway is down */
static pid_t pid[GATEWAYS];
static atomic_bool load_stop;
static bool load_running; /* devices started, not yet joined */
static int first_run;     /* the test's first gateway log: gw-<n>.log */
static long acked[SESSIONS];
static atomic_long acks_total, sends_total, refused_total;

static int suite_init(void)
{
	char dir[256];

	snprintf(root, sizeof(root), "/tmp/sw-queue-crash-XXXXXX");
	if (mkdtemp(root) == NULL)
		return -1;
	snprintf(dir, sizeof(dir), "%s/cluster", root);
	if (mkdir(dir, 0700) != 0)
		return -1;
	fu = fu_start(0);
	cl = tu_nats_start(3, dir);
	return fu && cl ? 0 : -1;
}

static void load_abandon(void);

static int suite_clean(void)
{
	load_abandon();
	tu_nats_stop(cl);
	fu_stop(fu);
	if (keep_root)
		fprintf(stderr, "  the failed run's gateway logs and cluster data: %s\n",
			root);
	else
		tu_rmrf(root);
	return 0;
}

/* ==== The gateway processes ==== */

/* Starts gateway g on the stream; sets port[g] once it listens (30 s at
 * most: the first one creates the stream and its consumers). 0 or -1. */
static int gw_spawn(int g)
{
	char bin[512], up[64], logp[256], line[512];
	char *argv[40];
	static char key_env[] = "ORQ_API_KEY=sk-queue-crash-test";
	char *envp[] = { key_env, NULL };
	int argc = 0, fd;
	pid_t p, parent;
	double end;

	tu_bin("session-gateway", bin, sizeof(bin));
	snprintf(up, sizeof(up), "http://127.0.0.1:%u", (unsigned)fu_port(fu));
	snprintf(logp, sizeof(logp), "%s/gw-%d.log", root, ++run_no);
	argv[argc++] = bin;
	argv[argc++] = (char *)"--listen";
	argv[argc++] = (char *)"127.0.0.1:0";
	argv[argc++] = (char *)"--upstream";
	argv[argc++] = up;
	argv[argc++] = (char *)"--allow-anonymous";
	argv[argc++] = (char *)"--threads";
	argv[argc++] = (char *)"2";
	argv[argc++] = (char *)"--queue";
	argv[argc++] = (char *)(uintptr_t)tu_nats_urls(cl);
	argv[argc++] = (char *)"--queue-stream";
	argv[argc++] = stream;
	argv[argc++] = (char *)"--queue-partitions";
	argv[argc++] = (char *)"16";
	argv[argc++] = (char *)"--queue-ack-timeout-ms";
	argv[argc++] = (char *)"3000";
	argv[argc++] = (char *)"--backoff-base-ms";
	argv[argc++] = (char *)"5";
	argv[argc++] = (char *)"--backoff-max-ms";
	argv[argc++] = (char *)"200";
	/* AckWait: this + 5 s (what a killed gateway held waits that long) */
	argv[argc++] = (char *)"--upstream-timeout-ms";
	argv[argc++] = (char *)"1000";
	argv[argc++] = (char *)"--log-level";
	argv[argc++] = (char *)"warn";
	argv[argc] = NULL;
	fd = open(logp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	parent = getpid();
	p = fork();
	if (p == 0) {
		tu_child_dies_with_parent(parent);
		dup2(fd, 2);
		dup2(fd, 1);
		execve(bin, argv, envp);
		_exit(127);
	}
	close(fd);
	if (p < 0)
		return -1;
	end = tu_mono() + 30;
	while (tu_mono() < end) {
		FILE *f = fopen(logp, "r");
		int st;

		while (f && fgets(line, sizeof(line), f)) {
			const char *at = strstr(line, "listening on 127.0.0.1:");

			if (at) {
				fclose(f);
				pid[g] = p;
				atomic_store(&port[g], (int)strtol(at + 23, NULL, 10));
				return 0;
			}
		}
		if (f)
			fclose(f);
		if (waitpid(p, &st, WNOHANG) == p) {
			fprintf(stderr, "session-gateway exited early (status %d), see %s\n",
				st, logp);
			return -1;
		}
		tu_sleep_ms(20);
	}
	kill(p, SIGKILL);
	waitpid(p, NULL, 0);
	return -1;
}

static void gw_kill(int g)
{
	atomic_store(&port[g], 0);
	if (pid[g] > 0) {
		kill(pid[g], SIGKILL);
		waitpid(pid[g], NULL, 0);
	}
	pid[g] = 0;
}

/* SIGTERM: drains, exits 0. Its exit status. */
static int gw_term(int g)
{
	int st = 0;

	atomic_store(&port[g], 0);
	if (pid[g] <= 0)
		return -1;
	kill(pid[g], SIGTERM);
	waitpid(pid[g], &st, 0);
	pid[g] = 0;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* ==== Devices ==== */

static size_t discard(char *p, size_t sz, size_t nm, void *ud)
{
	(void)p;
	(void)ud;
	return sz * nm;
}

/* Device k: PATCH n (to each gateway in turn) until 202, then n + 1. */
static void *device(void *arg)
{
	long k = (long)(intptr_t)arg, n = 1, turn = k;
	CURL *h = curl_easy_init();
	struct curl_slist *hl = NULL;
	char url[256], body[64];

	if (h == NULL)
		return NULL;
	hl = curl_slist_append(hl, "Content-Type: application/json");
	hl = curl_slist_append(hl, "Prefer: respond-async");
	hl = curl_slist_append(hl, "Expect:");
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "PATCH");
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 8000L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 1000L);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
	while (!atomic_load(&load_stop) && n < COUNTER_MAX) {
		int p = atomic_load(&port[turn++ % GATEWAYS]);
		long status = 0;

		if (p == 0)
			p = atomic_load(&port[turn++ % GATEWAYS]);
		if (p == 0) {
			tu_sleep_ms(5);
			continue;
		}
		snprintf(url, sizeof(url),
			 "http://127.0.0.1:%d/v2/traces/sessions/%s%ld", p, prefix, k);
		snprintf(body, sizeof(body), "{\"traces_count\":%ld}", n);
		curl_easy_setopt(h, CURLOPT_URL, url);
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
				 (curl_off_t)strlen(body));
		atomic_fetch_add(&sends_total, 1);
		if (curl_easy_perform(h) == CURLE_OK)
			curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
		if (status == 202) {
			acked[k] = n++;
			atomic_fetch_add(&acks_total, 1);
		} else {
			if (status == 503)
				atomic_fetch_add(&refused_total, 1);
			tu_sleep_ms(5); /* not acknowledged: send n again */
		}
	}
	curl_slist_free_all(hl);
	curl_easy_cleanup(h);
	return NULL;
}

/* ==== What the upstream got ==== */

#define NOTE_MISSING 4

typedef struct tally {
	long missing, order_violations, duplicates, delivered;
	/* the first missing ones: session, counter */
	int miss_k[NOTE_MISSING];
	long miss_v[NOTE_MISSING];
} tally;

static void check(tally *t)
{
	long last[SESSIONS] = { 0 };
	unsigned char *have[SESSIONS];
	size_t i, n = fu_count(fu), pl = strlen(prefix);
	int k;

	memset(t, 0, sizeof(*t));
	for (k = 0; k < SESSIONS; k++)
		have[k] = calloc((size_t)acked[k] + 2, 1);
	for (i = 0; i < n; i++) {
		fu_request q;
		const char *p;
		long v;

		if (!fu_get(fu, i, &q))
			continue;
		p = strstr(q.path, "/sessions/");
		k = p && strncmp(p + 10, prefix, pl) == 0 ? atoi(p + 10 + pl) : -1;
		p = q.body ? strstr(q.body, "\"traces_count\":") : NULL;
		v = p ? strtol(p + 15, NULL, 10) : -1;
		fu_request_free(&q);
		if (k < 0 || k >= SESSIONS || v < 1)
			continue;
		t->delivered++;
		if (v < last[k])
			t->order_violations++;
		else if (v == last[k])
			t->duplicates++;
		last[k] = v;
		if (v <= acked[k])
			have[k][v] = 1;
	}
	for (k = 0; k < SESSIONS; k++) {
		long v;

		for (v = 1; v <= acked[k]; v++)
			if (!have[k][v]) {
				if (t->missing < NOTE_MISSING) {
					t->miss_k[t->missing] = k;
					t->miss_v[t->missing] = v;
				}
				t->missing++;
			}
		free(have[k]);
	}
}

/* ==== A run: gateways, devices, what happens, the figures ==== */

static pthread_t th[SESSIONS];
static double t0;

/* Stops a load a failed assertion left running (CU_ASSERT_FATAL leaves
 * the test midway): its devices and gateways would otherwise run on into
 * the next test's tally. */
static void load_abandon(void)
{
	long k;
	int g;

	if (!load_running)
		return;
	atomic_store(&load_stop, true);
	for (k = 0; k < SESSIONS; k++)
		pthread_join(th[k], NULL);
	for (g = 0; g < GATEWAYS; g++)
		gw_kill(g);
	load_running = false;
}

static void load_start(const char *pfx, const char *stream_name)
{
	long k;
	int g;

	load_abandon();
	first_run = run_no + 1;
	fu_clear(fu);
	prefix = pfx;
	snprintf(stream, sizeof(stream), "%s", stream_name);
	atomic_store(&load_stop, false);
	atomic_store(&acks_total, 0);
	atomic_store(&sends_total, 0);
	atomic_store(&refused_total, 0);
	t0 = tu_mono();
	for (g = 0; g < GATEWAYS; g++)
		CU_ASSERT_FATAL(gw_spawn(g) == 0);
	for (k = 0; k < SESSIONS; k++) {
		acked[k] = 0;
		CU_ASSERT_FATAL(pthread_create(&th[k], NULL, device,
					       (void *)(intptr_t)k) == 0);
	}
	load_running = true;
}

/* For a failure's log: each partition's consumer (all of them: one whose
 * delivered sequence is past updates it never handed out shows it too). */
static int print_consumers(void *js, void *ud)
{
	int p;

	(void)ud;
	for (p = 0; p < 16; p++) {
		char name[16];
		jsConsumerInfo *ci = NULL;

		snprintf(name, sizeof(name), "p%d", p);
		if (js_GetConsumerInfo(&ci, js, stream, name, NULL, NULL) != NATS_OK)
			continue;
		fprintf(stderr, "  consumer %s: pending %" PRIu64 ", ack pending %"
			PRId64 ", waiting %" PRId64 ", redelivered %" PRId64
			", delivered stream seq %" PRIu64 ", ack floor %" PRIu64 "\n",
			name, ci->NumPending, ci->NumAckPending, ci->NumWaiting,
			ci->NumRedelivered, ci->Delivered.Stream,
			ci->AckFloor.Stream);
		jsConsumerInfo_Destroy(ci);
	}
	return 0;
}

/* For a failure's log: where the first missing updates are in the
 * stream (every message read by sequence), or that they are not. */
static int find_missing(void *js, void *ud)
{
	const tally *t = ud;
	jsStreamInfo *si = NULL;
	uint64_t seq, last;
	int i, n = t->missing < NOTE_MISSING ? (int)t->missing : NOTE_MISSING;
	bool found[NOTE_MISSING] = { false };

	if (js_GetStreamInfo(&si, js, stream, NULL, NULL) != NATS_OK)
		return -1;
	last = si->State.LastSeq;
	seq = si->State.FirstSeq;
	jsStreamInfo_Destroy(si);
	for (; seq <= last; seq++) {
		natsMsg *m = NULL;
		const char *path = NULL;
		char body[64];
		long v;

		if (js_GetMsg(&m, js, stream, seq, NULL, NULL) != NATS_OK)
			continue;
		snprintf(body, sizeof(body), "%.*s", natsMsg_GetDataLength(m),
			 natsMsg_GetData(m));
		natsMsgHeader_Get(m, "Sw-Path", &path);
		v = strstr(body, "\"traces_count\":") ?
			strtol(strstr(body, "\"traces_count\":") + 15, NULL, 10) : -1;
		for (i = 0; i < n; i++) {
			char want[64];

			snprintf(want, sizeof(want), "/%s%d", prefix, t->miss_k[i]);
			if (v == t->miss_v[i] && path != NULL &&
			    strlen(path) >= strlen(want) &&
			    strcmp(path + strlen(path) - strlen(want), want) == 0) {
				fprintf(stderr, "  missing %s%d = %ld: stream seq %" PRIu64
					" (%s)\n", prefix, t->miss_k[i], v, seq,
					natsMsg_GetSubject(m));
				found[i] = true;
			}
		}
		natsMsg_Destroy(m);
	}
	for (i = 0; i < n; i++)
		if (!found[i])
			fprintf(stderr, "  missing %s%d = %ld: not in the stream\n",
				prefix, t->miss_k[i], t->miss_v[i]);
	return 0;
}

/* How many lines of the test's gateway logs contain what. */
static long log_lines(const char *what)
{
	long count = 0;
	int r;

	for (r = first_run; r <= run_no; r++) {
		char path[256], *text, *p;
		size_t len;

		snprintf(path, sizeof(path), "%s/gw-%d.log", root, r);
		text = tu_read_file(path, &len);
		for (p = text; p != NULL && (p = strstr(p, what)) != NULL; p++)
			count++;
		free(text);
	}
	return count;
}

/* Stops the devices, lets the gateways drain, SIGTERMs them; the tally. */
static void load_finish(const char *what, int kills, tally *t)
{
	long k;
	int g;

	tu_sleep_ms(500);
	atomic_store(&load_stop, true);
	for (k = 0; k < SESSIONS; k++)
		pthread_join(th[k], NULL);
	load_running = false;
	/* the backlog drains at its own pace (each partition one update at
	 * a time, on the same cores as everything else): wait while it
	 * shrinks; what stays missing without progress for STALL_S is lost */
	{
		double last_progress = tu_mono(), next_note = tu_mono() + 10;
		long before = -1;

		for (;;) {
			check(t);
			if (t->missing == 0)
				break;
			if (before < 0 || t->missing < before) {
				before = t->missing;
				last_progress = tu_mono();
			}
			if (tu_mono() - last_progress > STALL_S ||
			    tu_mono() - t0 > DRAIN_MAX_S)
				break;
			if (tu_mono() > next_note) {
				fprintf(stderr, "\n  draining: %ld acknowledged updates not delivered yet",
					t->missing);
				next_note = tu_mono() + 10;
			}
			tu_sleep_ms(100);
		}
	}
	if (t->missing > 0) {
		/* what the queue says is still waiting, for the failure's log */
		char *sa[] = { (char *)"queue", (char *)"stats", (char *)"--queue",
			       (char *)(uintptr_t)tu_nats_urls(cl),
			       (char *)"--queue-stream", stream, NULL };
		char *la[] = { (char *)"queue", (char *)"list", (char *)"--pending",
			       (char *)"--limit", (char *)"5", (char *)"--queue",
			       (char *)(uintptr_t)tu_nats_urls(cl),
			       (char *)"--queue-stream", stream, NULL };

		char cmd[512];

		keep_root = true;
		fprintf(stderr, "\n  %ld missing, none delivered for %d s; the queue:\n",
			t->missing, STALL_S);
		gw_queue_admin(6, sa, stderr, stderr);
		gw_queue_admin(9, la, stderr, stderr);
		tu_nats_exec(cl, print_consumers, NULL);
		tu_nats_exec(cl, find_missing, t);
		snprintf(cmd, sizeof(cmd),
			 "tail -q -n 5 %s/gw-*.log >&2; grep -h 'stale copy' %s/gw-*.log | tail -n 20 >&2",
			 root, root);
		if (system(cmd) != 0)
			fprintf(stderr, "  (no gateway logs)\n");
	}
	for (g = 0; g < GATEWAYS; g++)
		CU_ASSERT_EQUAL(gw_term(g), 0);
	check(t);
	fprintf(stderr, "\n  queue crash (%s): %d kills in %.1f s, %ld sends, %ld acknowledged, %ld refused (503), %ld delivered, %ld duplicates, %ld lost, %ld order violations; %ld passed over by a consumer and sent anyway, %ld stale copies\n",
		what, kills, tu_mono() - t0, atomic_load(&sends_total),
		atomic_load(&acks_total), atomic_load(&refused_total),
		t->delivered, t->duplicates, t->missing, t->order_violations,
		log_lines("passed an update over"), log_lines("stale copy"));
	CU_ASSERT_TRUE(atomic_load(&acks_total) > 0);
	CU_ASSERT_EQUAL(t->missing, 0);
	CU_ASSERT_EQUAL(t->order_violations, 0);
}

static void queue_stream_leader_sigkill_under_load_loses_nothing(void)
{
	tally t;
	int kills;

	load_start("lk-", "CRASHLEADER");
	for (kills = 0; kills < 4; kills++) {
		long before;
		int leader;

		tu_sleep_ms(1500);
		leader = tu_nats_leader(cl, stream, 60);
		CU_ASSERT_FATAL(leader >= 0);
		before = atomic_load(&acks_total);
		tu_nats_kill(cl, leader);
		tu_sleep_ms(3000);
		CU_ASSERT_FATAL(tu_nats_restart(cl, leader) == 0);
		/* acknowledgements went on meanwhile, or resumed */
		(void)before;
		CU_ASSERT_FATAL(tu_nats_wait_ready(cl, 30) == 0);
		tu_sleep_ms(1500); /* the restarted node catches up */
	}
	load_finish("stream leader SIGKILL", kills, &t);
}

static void queue_gateway_sigkill_under_load_loses_nothing(void)
{
	tally t;
	int kills;

	load_start("gk-", "CRASHGW");
	for (kills = 0; kills < 6; kills++) {
		int g = kills % GATEWAYS;

		tu_sleep_ms(800);
		gw_kill(g);
		tu_sleep_ms(300);
		CU_ASSERT_FATAL(gw_spawn(g) == 0);
	}
	load_finish("gateway SIGKILL", kills, &t);
}

/* All three nodes at once, with sig, under load, then restarted. */
static void cluster_down_and_up(int sig, const char *sid_prefix, const char *name,
				const char *what)
{
	tally t;
	long acks_down, refused_down;
	int i;

	load_start(sid_prefix, name);
	tu_sleep_ms(1500);
	tu_nats_signal_all(cl, sig);
	/* requests in flight when it stopped may still be acknowledged (their
	 * publish was acknowledged first); from then on nothing is */
	tu_sleep_ms(500);
	acks_down = atomic_load(&acks_total);
	refused_down = atomic_load(&refused_total);
	tu_sleep_ms(4000);
	CU_ASSERT_EQUAL(atomic_load(&acks_total), acks_down);
	CU_ASSERT_TRUE(atomic_load(&refused_total) > refused_down);
	for (i = 0; i < 3; i++)
		CU_ASSERT_FATAL(tu_nats_restart(cl, i) == 0);
	CU_ASSERT_FATAL(tu_nats_wait_ready(cl, 30) == 0);
	/* and it takes updates again */
	{
		double end = tu_mono() + 30;

		while (atomic_load(&acks_total) == acks_down && tu_mono() < end)
			tu_sleep_ms(50);
		CU_ASSERT_TRUE(atomic_load(&acks_total) > acks_down);
	}
	tu_sleep_ms(1000);
	load_finish(what, 3, &t);
}

/* Stopped (SIGTERM: nats-server writes out what it holds). */
static void queue_cluster_restart_acknowledges_nothing_it_did_not_store(void)
{
	cluster_down_and_up(SIGTERM, "ck-", "CRASHALL", "whole cluster stopped");
}

/* Killed: 2.9.10's consumers then pass updates over now and then (the
 * summary line counts them), which the gateways send anyway. */
static void queue_cluster_sigkill_of_every_node_loses_nothing(void)
{
	cluster_down_and_up(SIGKILL, "cx-", "CRASHKILL", "whole cluster killed");
}

int init_queue_crash_tests(void)
{
	CU_pSuite s = CU_add_suite("queue_crash", suite_init, suite_clean);

	if (s == NULL)
		return -1;
	CU_add_test(s, "queue_stream_leader_sigkill_under_load_loses_nothing",
		    queue_stream_leader_sigkill_under_load_loses_nothing);
	CU_add_test(s, "queue_gateway_sigkill_under_load_loses_nothing",
		    queue_gateway_sigkill_under_load_loses_nothing);
	CU_add_test(s, "queue_cluster_restart_acknowledges_nothing_it_did_not_store",
		    queue_cluster_restart_acknowledges_nothing_it_did_not_store);
	CU_add_test(s, "queue_cluster_sigkill_of_every_node_loses_nothing",
		    queue_cluster_sigkill_of_every_node_loses_nothing);
	return 0;
}
