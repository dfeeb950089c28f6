/* test_coap_crash.c - SIGKILL under load, with the devices on CoAP. The
 * real program (session-gateway --spool --coap-listen --coap-anonymous)
 * runs in front of the in-process fake upstream; 16 device threads send
 * their sessions' envelopes over CoAP (confirmable POST /u, seq n, update
 * {"traces_count": n}), sending n again, as a device would, until it
 * gets 2.04 with a Result of 202 (stored). The test SIGKILLs the gateway
 * at random moments, restarting it on the same spool each time (a new
 * port: the devices follow), then lets it drain and stops it with
 * SIGTERM (exit 0).
 *
 * Asserted, as for HTTP (test_spool_crash.c): every acknowledged update
 * reached the upstream; per session the updates arrived in non-decreasing
 * order (a repeat is a duplicate: at least once across a crash). */
#include <CUnit/CUnit.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../codec/cli/coap_client.h"
#include "fake_upstream.h"
#include "gw.h"
#include "testutil.h"

#define DEVICES 16
#define KILLS 22
#define COUNTER_MAX 100000

static fake_upstream *fu;
static char root[128];
static atomic_int cur_port;     /* the gateway's CoAP port; 0 while down */
static atomic_bool load_stop;
static long acked[DEVICES];
static atomic_long acks_total, sends_total;

static int suite_init(void)
{
	snprintf(root, sizeof(root), "/tmp/sw-coap-crash-XXXXXX");
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

/* Starts the gateway on spool; its CoAP port into *port. 0 or -1. */
static int gw_spawn(tu_proc *p, const char *spool, uint16_t *port)
{
	static const char *const env[] = { "ORQ_API_KEY=sk-coap-crash", NULL };
	char up[64];
	const char *args[] = { "--listen", "127.0.0.1:0", "--upstream", up,
			       "--allow-anonymous", "--coap-listen", "127.0.0.1:0",
			       "--coap-anonymous", "--spool", spool,
			       "--backoff-base-ms", "5", "--backoff-max-ms", "200",
			       "--upstream-timeout-ms", "2000", "--log-level",
			       "error", NULL };

	snprintf(up, sizeof(up), "http://127.0.0.1:%u", (unsigned)fu_port(fu));
	if (tu_proc_spawn(p, "session-gateway", args, env) != 0)
		return -1;
	*port = (uint16_t)tu_proc_port_of(p, "coap listening on udp 127.0.0.1:", 10);
	if (*port == 0) {
		fprintf(stderr, "session-gateway did not start: %s\n", p->log);
		kill(p->pid, SIGKILL);
		tu_proc_reap(p, 5);
		return -1;
	}
	return 0;
}

/* ==== Devices ==== */

/* The envelope of device k's update n. */
static size_t envelope(long k, long n, uint8_t *out, size_t cap)
{
	char sid[32];
	sw_update u;
	sw_session_id id;
	uint8_t pb[32];
	size_t pn = 0, len = 0;

	snprintf(sid, sizeof(sid), "coap-crash-%ld", k);
	sw_update_init(&u);
	sw_update_set_traces_count(&u, (double)n);
	if (sw_pb_encode(&u, pb, sizeof(pb), &pn, NULL) != SW_OK)
		return 0;
	sw_session_id_set(&id, sid, strlen(sid));
	if (sw_envelope_encode(&id, true, (uint64_t)n, pb, pn, out, cap, &len,
			       NULL) != SW_OK)
		return 0;
	return len;
}

/* One try of update n: true when it was stored (2.04, Result 202). */
static bool try_send(cc_conn *c, long k, long n)
{
	uint8_t env[96], req[160], buf[1500], tok = (uint8_t)n;
	size_t en = envelope(k, n, env, sizeof(env)), rn;
	uint16_t mid = cc_next_mid(c);
	cc_opt path = { 11, (const uint8_t *)"u", 1 };
	double end;

	rn = cc_build(req, sizeof(req), CC_CON, CC_POST, mid, &tok, 1, &path, 1,
		      env, en);
	atomic_fetch_add(&sends_total, 1);
	if (rn == 0 || cc_send_raw(c, req, rn) != 0)
		return false;
	end = tu_mono() + 1.5;
	while (tu_mono() < end) {
		cc_msg m;
		sw_result r;
		long got = cc_recv_raw(c, buf, sizeof(buf),
				       (long)((end - tu_mono()) * 1000) + 1);

		if (got <= 0 || cc_parse(buf, (size_t)got, &m) != 0)
			return false;
		if (m.type == CC_CON) {
			uint8_t ack[4];

			cc_send_raw(c, ack, cc_build(ack, 4, CC_ACK, 0, m.mid, NULL,
						     0, NULL, 0, NULL, 0));
		}
		if (m.code == 0 || m.token_len != 1 || m.token[0] != tok)
			continue; /* an empty ACK, or an older answer */
		return m.code == 204 &&
		       sw_result_decode(m.payload, m.len, &r, NULL) == SW_OK &&
		       r.status == 202;
	}
	return false;
}

static void *device(void *arg)
{
	long k = (long)(intptr_t)arg, n = 1;
	int port = 0;
	cc_conn *c = NULL;

	while (!atomic_load(&load_stop) && n < COUNTER_MAX) {
		int now = atomic_load(&cur_port);

		if (now == 0) {
			tu_sleep_ms(2);
			continue;
		}
		if (now != port || c == NULL) {
			char url[64], err[128];

			cc_close(c);
			snprintf(url, sizeof(url), "coap://127.0.0.1:%d", now);
			c = cc_open(url, NULL, NULL, 0, err, sizeof(err));
			port = now;
			if (c == NULL)
				continue;
		}
		if (try_send(c, k, n)) {
			acked[k] = n++;
			atomic_fetch_add(&acks_total, 1);
		} else {
			tu_sleep_ms(2); /* not acknowledged: n again */
		}
	}
	cc_close(c);
	return NULL;
}

/* ==== What the upstream got ==== */

static void tally(long *missing, long *order, long *dups, long *delivered)
{
	long last[DEVICES] = { 0 };
	unsigned char *have[DEVICES];
	size_t i, n = fu_count(fu);
	int k;

	*missing = *order = *dups = *delivered = 0;
	for (k = 0; k < DEVICES; k++)
		have[k] = calloc((size_t)acked[k] + 2, 1);
	for (i = 0; i < n; i++) {
		fu_request q;
		const char *p;
		long v;

		if (!fu_get(fu, i, &q))
			continue;
		p = strstr(q.path, "/coap-crash-");
		k = p ? atoi(p + 12) : -1;
		p = q.body ? strstr(q.body, "\"traces_count\":") : NULL;
		v = p ? strtol(p + 15, NULL, 10) : -1;
		fu_request_free(&q);
		if (k < 0 || k >= DEVICES || v < 1)
			continue;
		(*delivered)++;
		if (v < last[k])
			(*order)++;
		if (v == last[k])
			(*dups)++;
		last[k] = v;
		if (v <= acked[k])
			have[k][v] = 1;
	}
	for (k = 0; k < DEVICES; k++) {
		long v;

		for (v = 1; v <= acked[k]; v++)
			if (!have[k][v])
				(*missing)++;
		free(have[k]);
	}
}

static void coap_sigkill_in_spool_mode_loses_nothing_acknowledged(void)
{
	char spool[256];
	pthread_t th[DEVICES];
	unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
	double t0 = tu_mono(), end;
	long k, missing = 0, order = 0, dups = 0, delivered = 0;
	int kills, st;
	uint16_t port = 0;
	tu_proc p;

	fu_clear(fu);
	snprintf(spool, sizeof(spool), "%s/spool", root);
	atomic_store(&load_stop, false);
	atomic_store(&cur_port, 0);
	for (k = 0; k < DEVICES; k++) {
		acked[k] = 0;
		CU_ASSERT_FATAL(pthread_create(&th[k], NULL, device,
					       (void *)(intptr_t)k) == 0);
	}
	for (kills = 0; kills < KILLS && tu_mono() - t0 < 45; kills++) {
		CU_ASSERT_FATAL(gw_spawn(&p, spool, &port) == 0);
		atomic_store(&cur_port, port);
		tu_sleep_ms(150 + (long)(rand_r(&seed) % 500));
		kill(p.pid, SIGKILL);
		tu_proc_reap(&p, 5);
		tu_proc_free(&p);
		atomic_store(&cur_port, 0);
	}
	/* the last run: load for a moment, then drain and stop cleanly */
	CU_ASSERT_FATAL(gw_spawn(&p, spool, &port) == 0);
	atomic_store(&cur_port, port);
	tu_sleep_ms(400);
	atomic_store(&load_stop, true);
	for (k = 0; k < DEVICES; k++)
		pthread_join(th[k], NULL);
	end = tu_mono() + 30;
	do {
		tally(&missing, &order, &dups, &delivered);
		if (missing == 0)
			break;
		tu_sleep_ms(50);
	} while (tu_mono() < end);
	kill(p.pid, SIGTERM);
	st = tu_proc_reap(&p, 30);
	CU_ASSERT_EQUAL(st, 0);
	tu_proc_free(&p);
	fprintf(stderr, "\n  coap spool crash: %d SIGKILLs in %.1f s, %ld sends, %ld acknowledged, %ld delivered, %ld duplicates, %ld missing, %ld order violations\n",
		kills, tu_mono() - t0, atomic_load(&sends_total),
		atomic_load(&acks_total), delivered, dups, missing, order);
	CU_ASSERT_TRUE(kills >= 20);
	CU_ASSERT_TRUE(atomic_load(&acks_total) > 100);
	CU_ASSERT_EQUAL(missing, 0);
	CU_ASSERT_EQUAL(order, 0);
}

int init_coap_crash_tests(void)
{
	CU_pSuite s = CU_add_suite("coap_crash", suite_init, suite_clean);

	if (s == NULL)
		return -1;
	CU_add_test(s, "coap_sigkill_in_spool_mode_loses_nothing_acknowledged",
		    coap_sigkill_in_spool_mode_loses_nothing_acknowledged);
	return 0;
}
