/* test_spool_crash.c - SIGKILL under load. The real program
 * (tu_bin("session-gateway")) runs with --spool in front of the in-process
 * fake upstream; 20 device threads PATCH their sessions with increasing
 * counters ({"traces_count": n}), resending n until it gets a 202. The
 * test SIGKILLs the gateway at random moments (at least 20 times, now and
 * then with the upstream failing), restarting it on the same spool each
 * time, then lets it drain and stops it with SIGTERM (exit 0).
 *
 * Asserted: every acknowledged counter reached the upstream; per session
 * the counters arrived in non-decreasing order (a repeat of the last one
 * is a duplicate, allowed: at-least-once). Bounded to about a minute. */
#include <CUnit/CUnit.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
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

#include "fake_upstream.h"
#include "gw.h"
#include "testutil.h"

#define SESSIONS 20
#define KILLS 22
#define COUNTER_MAX 100000

static fake_upstream *fu;
static char root[128];
static atomic_int cur_port;     /* 0 while the gateway is down */
static atomic_bool load_stop;
static long acked[SESSIONS];    /* highest counter acknowledged */
static atomic_long acks_total, sends_total;
/* Outages: the requests recorded at [fail_lo[i], fail_lo[i] + FAIL_STEPS)
 * were answered with a failure (scripted while the gateway was down, so
 * nothing else reached the fake in between). */
#define FAIL_STEPS 40
#define OUTAGES_MAX 16
static size_t fail_lo[OUTAGES_MAX];
static int n_outages;

static int suite_init(void)
{
	snprintf(root, sizeof(root), "/tmp/sw-spool-crash-XXXXXX");
	if (mkdtemp(root) == NULL)
		return -1;
	fu = fu_start(0);
	return fu ? 0 : -1;
}

static int suite_clean(void)
{
	fu_stop(fu);
	tu_rmrf(root);
	return 0;
}

/* ==== The gateway process ==== */

/* Starts session-gateway on the spool; returns its pid and sets *port
 * once it listens (10 s at most), or -1. */
static pid_t gw_spawn(const char *spool, int run, uint16_t *port)
{
	char bin[512], up[64], logp[256], line[512];
	char *argv[32];
	static char key_env[] = "ORQ_API_KEY=sk-crash-test";
	char *envp[] = { key_env, NULL };
	int argc = 0, fd;
	pid_t pid, parent;
	double end;

	tu_bin("session-gateway", bin, sizeof(bin));
	snprintf(up, sizeof(up), "http://127.0.0.1:%u", (unsigned)fu_port(fu));
	snprintf(logp, sizeof(logp), "%s/gw-%d.log", root, run);
	argv[argc++] = bin;
	argv[argc++] = (char *)"--listen";
	argv[argc++] = (char *)"127.0.0.1:0";
	argv[argc++] = (char *)"--upstream";
	argv[argc++] = up;
	argv[argc++] = (char *)"--allow-anonymous";
	argv[argc++] = (char *)"--spool";
	argv[argc++] = (char *)(uintptr_t)spool;
	argv[argc++] = (char *)"--backoff-base-ms";
	argv[argc++] = (char *)"5";
	argv[argc++] = (char *)"--backoff-max-ms";
	argv[argc++] = (char *)"200";
	/* rows in flight at a kill wait this long after the restart */
	argv[argc++] = (char *)"--upstream-timeout-ms";
	argv[argc++] = (char *)"2000";
	argv[argc++] = (char *)"--log-level";
	argv[argc++] = (char *)"error";
	argv[argc] = NULL;
	fd = open(logp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	parent = getpid();
	pid = fork();
	if (pid == 0) {
		tu_child_dies_with_parent(parent);
		dup2(fd, 2);
		dup2(fd, 1);
		execve(bin, argv, envp);
		_exit(127);
	}
	close(fd);
	if (pid < 0)
		return -1;
	/* the port from "listening on 127.0.0.1:PORT" */
	end = tu_mono() + 10;
	while (tu_mono() < end) {
		FILE *f = fopen(logp, "r");
		int st;

		while (f && fgets(line, sizeof(line), f)) {
			const char *p = strstr(line, "listening on 127.0.0.1:");

			if (p) {
				*port = (uint16_t)strtol(p + 23, NULL, 10);
				fclose(f);
				return pid;
			}
		}
		if (f)
			fclose(f);
		if (waitpid(pid, &st, WNOHANG) == pid) {
			fprintf(stderr, "session-gateway exited early (status %d), see %s\n",
				st, logp);
			return -1;
		}
		tu_sleep_ms(5);
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	return -1;
}

/* ==== Devices ==== */

static size_t discard(char *p, size_t sz, size_t nm, void *ud)
{
	(void)p;
	(void)ud;
	return sz * nm;
}

/* Device k: PATCH n until 202, then n + 1. */
static void *device(void *arg)
{
	long k = (long)(intptr_t)arg, n = 1;
	CURL *h = curl_easy_init();
	struct curl_slist *hl = NULL;
	char url[256], body[64];

	if (h == NULL)
		return NULL;
	hl = curl_slist_append(hl, "Content-Type: application/json");
	/* 202 once stored, not the API's answer (RFC 7240) */
	hl = curl_slist_append(hl, "Prefer: respond-async");
	hl = curl_slist_append(hl, "Expect:");
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "PATCH");
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 5000L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 1000L);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
	while (!atomic_load(&load_stop) && n < COUNTER_MAX) {
		int port = atomic_load(&cur_port);
		long status = 0;

		if (port == 0) {
			tu_sleep_ms(2);
			continue;
		}
		snprintf(url, sizeof(url),
			 "http://127.0.0.1:%d/v2/traces/sessions/crash-%ld", port, k);
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
			tu_sleep_ms(2); /* not acknowledged: send n again */
		}
	}
	curl_slist_free_all(hl);
	curl_easy_cleanup(h);
	return NULL;
}

/* ==== What the upstream got ==== */

typedef struct tally {
	long missing, order_violations, duplicates, delivered, failed;
} tally;

static bool answered_failure(size_t i)
{
	int o;

	for (o = 0; o < n_outages; o++)
		if (i >= fail_lo[o] && i < fail_lo[o] + FAIL_STEPS)
			return true;
	return false;
}

static void check(tally *t)
{
	long last[SESSIONS] = { 0 }, last_ok[SESSIONS] = { 0 };
	unsigned char *have[SESSIONS];
	size_t i, n = fu_count(fu);
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
		p = strstr(q.path, "/crash-");
		k = p ? atoi(p + 7) : -1;
		p = q.body ? strstr(q.body, "\"traces_count\":") : NULL;
		v = p ? strtol(p + 15, NULL, 10) : -1;
		fu_request_free(&q);
		if (k < 0 || k >= SESSIONS || v < 1)
			continue;
		/* every attempt, failed or not, goes in order */
		if (v < last[k])
			t->order_violations++;
		last[k] = v;
		if (answered_failure(i)) {
			t->failed++;
			continue;
		}
		t->delivered++;
		if (v == last_ok[k])
			t->duplicates++;
		last_ok[k] = v;
		if (v <= acked[k])
			have[k][v] = 1;
	}
	for (k = 0; k < SESSIONS; k++) {
		long v;

		for (v = 1; v <= acked[k]; v++)
			if (!have[k][v])
				t->missing++;
		free(have[k]);
	}
}

/* ==== The test ==== */

static void spool_sigkill_under_load_loses_nothing_acknowledged(void)
{
	char spool[256], out[1024];
	pthread_t th[SESSIONS];
	unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
	uint16_t port = 0;
	pid_t pid;
	int kills = 0, run = 0, st = 0;
	long k;
	tally t;
	double t0 = tu_mono(), end;
	fu_step fail[FAIL_STEPS];
	size_t i;

	/* 503s, a few connection resets, one 429 with Retry-After */
	for (i = 0; i < FAIL_STEPS; i++)
		fail[i] = (fu_step){ FU_STATUS, 503, NULL, NULL, 0 };
	fail[5] = fail[17] = fail[30] = (fu_step){ FU_RESET, 0, NULL, NULL, 0 };
	fail[11] = (fu_step){ FU_STATUS, 429, NULL, "1", 0 };
	n_outages = 0;
	fu_clear(fu);
	fu_set_log(fu, NULL, true);
	snprintf(spool, sizeof(spool), "%s/spool", root);
	atomic_store(&load_stop, false);
	atomic_store(&cur_port, 0);
	for (k = 0; k < SESSIONS; k++) {
		acked[k] = 0;
		CU_ASSERT_FATAL(pthread_create(&th[k], NULL, device,
					       (void *)(intptr_t)k) == 0);
	}
	for (kills = 0; kills < KILLS && tu_mono() - t0 < 60; kills++) {
		/* an outage now and then (retries pending across the kills):
		 * scripted while no gateway runs, once the last one is used */
		if (kills % 4 == 1 && n_outages < OUTAGES_MAX &&
		    (n_outages == 0 ||
		     fu_count(fu) >= fail_lo[n_outages - 1] + FAIL_STEPS)) {
			size_t c = fu_count(fu), c2;
			double until = tu_mono() + 2;

			/* the killed gateway's last request may still land */
			do {
				tu_sleep_ms(20);
				c2 = c;
				c = fu_count(fu);
			} while (c != c2 && tu_mono() < until);
			fail_lo[n_outages++] = c;
			fu_script(fu, fail, FAIL_STEPS);
		}
		pid = gw_spawn(spool, run++, &port);
		CU_ASSERT_FATAL(pid > 0);
		atomic_store(&cur_port, port);
		tu_sleep_ms(100 + (long)(rand_r(&seed) % 500));
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		atomic_store(&cur_port, 0);
	}
	/* the last run: load for a moment, then drain and stop cleanly */
	pid = gw_spawn(spool, run++, &port);
	CU_ASSERT_FATAL(pid > 0);
	atomic_store(&cur_port, port);
	tu_sleep_ms(300);
	atomic_store(&load_stop, true);
	for (k = 0; k < SESSIONS; k++)
		pthread_join(th[k], NULL);
	end = tu_mono() + 30;
	do {
		check(&t);
		if (t.missing == 0)
			break;
		tu_sleep_ms(50);
	} while (tu_mono() < end);
	/* SIGTERM: graceful, exit 0 */
	kill(pid, SIGTERM);
	CU_ASSERT_EQUAL(waitpid(pid, &st, 0), pid);
	CU_ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	atomic_store(&cur_port, 0);

	fprintf(stderr, "\n  spool crash: %d SIGKILLs in %.1f s, %d outages (%ld attempts failed), %ld sends, %ld acknowledged, %ld delivered, %ld duplicates, %ld missing, %ld order violations\n",
		kills, tu_mono() - t0, n_outages, t.failed,
		atomic_load(&sends_total), atomic_load(&acks_total), t.delivered,
		t.duplicates, t.missing, t.order_violations);
	CU_ASSERT_TRUE(n_outages >= 2);
	/* the windows are what the fake answered with failures (the last
	 * may still be partly unused) */
	CU_ASSERT_TRUE(t.failed <= (long)n_outages * FAIL_STEPS);
	CU_ASSERT_TRUE(t.failed >= (long)(n_outages - 1) * FAIL_STEPS);
	CU_ASSERT_TRUE(kills >= 20);
	CU_ASSERT_TRUE(atomic_load(&acks_total) > 0);
	CU_ASSERT_EQUAL(t.missing, 0);
	CU_ASSERT_EQUAL(t.order_violations, 0);
	/* the admin command agrees: nothing left, nothing dead */
	{
		char *argv[] = { (char *)"spool", (char *)"stats", (char *)"--spool",
				 spool, NULL };
		FILE *o = tmpfile();
		size_t n;

		CU_ASSERT_PTR_NOT_NULL_FATAL(o);
		CU_ASSERT_EQUAL(gw_spool_admin(4, argv, o, stderr), 0);
		rewind(o);
		n = fread(out, 1, sizeof(out) - 1, o);
		out[n] = '\0';
		fclose(o);
		CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"depth\":0,"));
		CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"dead_letters\":0"));
	}
}

int init_spool_crash_tests(void)
{
	CU_pSuite s = CU_add_suite("spool_crash", suite_init, suite_clean);

	if (s == NULL)
		return -1;
	CU_add_test(s, "spool_sigkill_under_load_loses_nothing_acknowledged",
		    spool_sigkill_under_load_loses_nothing_acknowledged);
	return 0;
}
