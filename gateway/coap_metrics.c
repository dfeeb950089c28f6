/* coap_metrics.c - the CoAP ingress's Prometheus counters (C11 atomics,
 * no locks), rendered at the end of /metrics by gw_metrics_render. Codes
 * and resources are bucketed into fixed sets: the label space is bounded
 * whatever devices send. */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "gw.h"

static const int codes[] = { 204, 231, 400, 401, 402, 404, 405, 406, 408,
			     413, 415, 502, 503 };
#define N_CODES (sizeof(codes) / sizeof(codes[0]))
#define CODE_OTHER N_CODES          /* another code, or none sent */
#define N_CODE_SLOTS (N_CODES + 1)

static const char *const transports[] = { "coap", "coaps" };
static const char *const resources[] = { "u", "b", "other" };

/* Upper bounds in seconds; +Inf is implicit. */
static const double buckets[] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
				  0.1, 0.25, 0.5, 1, 2.5, 5, 10 };
#define N_BUCKETS (sizeof(buckets) / sizeof(buckets[0]))

static atomic_ullong requests[2][3][N_CODE_SLOTS];
static atomic_ullong duration[2][N_BUCKETS + 1];
static atomic_ullong duration_us[2];
static atomic_ullong duplicates[2][2];   /* [dtls][by_seq] */
static atomic_ullong separate[2];
static atomic_ullong handshakes[2];      /* [ok] */
static atomic_ullong dtls_errors;
static atomic_bool used;

static size_t code_slot(int code)
{
	size_t i;

	for (i = 0; i < N_CODES; i++)
		if (codes[i] == code)
			return i;
	return CODE_OTHER;
}

void gw_metrics_coap_request(bool dtls, int res, int code, double seconds)
{
	size_t i;

	if (res < 0 || res > 2)
		res = 2;
	atomic_store(&used, true);
	atomic_fetch_add_explicit(&requests[dtls][res][code_slot(code)], 1,
				  memory_order_relaxed);
	if (!(seconds >= 0))
		seconds = 0;
	for (i = 0; i < N_BUCKETS; i++)
		if (seconds <= buckets[i])
			break;
	atomic_fetch_add_explicit(&duration[dtls][i], 1, memory_order_relaxed);
	if (seconds > 1e6)
		seconds = 1e6;
	atomic_fetch_add_explicit(&duration_us[dtls],
				  (unsigned long long)(seconds * 1e6 + 0.5),
				  memory_order_relaxed);
}

void gw_metrics_coap_duplicate(bool dtls, bool by_seq)
{
	atomic_fetch_add_explicit(&duplicates[dtls][by_seq], 1,
				  memory_order_relaxed);
}

void gw_metrics_coap_separate(bool dtls)
{
	atomic_fetch_add_explicit(&separate[dtls], 1, memory_order_relaxed);
}

void gw_metrics_coap_handshake(bool ok)
{
	atomic_store(&used, true);
	atomic_fetch_add_explicit(&handshakes[ok], 1, memory_order_relaxed);
}

void gw_metrics_coap_dtls_error(void)
{
	atomic_fetch_add_explicit(&dtls_errors, 1, memory_order_relaxed);
}

static sw_status put(sw_buf *out, const char *s)
{
	return sw_buf_append(out, s, strlen(s));
}

sw_status gw_metrics_coap_render(sw_buf *out)
{
	char line[512], code[16];
	size_t t, r, c, i;
	sw_status st;

	if (!atomic_load(&used))
		return SW_OK; /* no CoAP traffic yet: nothing to show */
	st = put(out, "# HELP sessionwire_coap_requests_total CoAP messages from devices answered, by transport, resource and response code.\n"
		      "# TYPE sessionwire_coap_requests_total counter\n");
	for (t = 0; t < 2 && st == SW_OK; t++)
		for (r = 0; r < 3 && st == SW_OK; r++)
			for (c = 0; c < N_CODE_SLOTS && st == SW_OK; c++) {
				unsigned long long v = atomic_load_explicit(
					&requests[t][r][c], memory_order_relaxed);

				if (v == 0)
					continue;
				if (c < N_CODES)
					snprintf(code, sizeof(code), "%d.%02d",
						 codes[c] / 100, codes[c] % 100);
				else
					snprintf(code, sizeof(code), "other");
				snprintf(line, sizeof(line),
					 "sessionwire_coap_requests_total{transport=\"%s\",resource=\"%s\",code=\"%s\"} %llu\n",
					 transports[t], resources[r], code, v);
				st = put(out, line);
			}
	if (st == SW_OK)
		st = put(out, "# HELP sessionwire_coap_request_duration_seconds Time from a CoAP request to its answer, by transport.\n"
			      "# TYPE sessionwire_coap_request_duration_seconds histogram\n");
	for (t = 0; t < 2 && st == SW_OK; t++) {
		unsigned long long cum = 0;

		for (i = 0; i <= N_BUCKETS && st == SW_OK; i++) {
			cum += atomic_load_explicit(&duration[t][i],
						    memory_order_relaxed);
			if (i < N_BUCKETS)
				snprintf(line, sizeof(line),
					 "sessionwire_coap_request_duration_seconds_bucket{transport=\"%s\",le=\"%g\"} %llu\n",
					 transports[t], buckets[i], cum);
			else
				snprintf(line, sizeof(line),
					 "sessionwire_coap_request_duration_seconds_bucket{transport=\"%s\",le=\"+Inf\"} %llu\n"
					 "sessionwire_coap_request_duration_seconds_sum{transport=\"%s\"} %.6f\n"
					 "sessionwire_coap_request_duration_seconds_count{transport=\"%s\"} %llu\n",
					 transports[t], cum, transports[t],
					 (double)atomic_load(&duration_us[t]) / 1e6,
					 transports[t], cum);
			st = put(out, line);
		}
	}
	if (st == SW_OK)
		st = put(out, "# HELP sessionwire_coap_duplicates_total CoAP messages answered without new work: a retransmission (kind message) or an envelope sent before (kind envelope).\n"
			      "# TYPE sessionwire_coap_duplicates_total counter\n");
	for (t = 0; t < 2 && st == SW_OK; t++)
		for (i = 0; i < 2 && st == SW_OK; i++) {
			snprintf(line, sizeof(line),
				 "sessionwire_coap_duplicates_total{transport=\"%s\",kind=\"%s\"} %llu\n",
				 transports[t], i ? "envelope" : "message",
				 atomic_load(&duplicates[t][i]));
			st = put(out, line);
		}
	if (st == SW_OK)
		st = put(out, "# HELP sessionwire_coap_separate_responses_total Answers sent as a separate response after an empty ACK (the API was slow).\n"
			      "# TYPE sessionwire_coap_separate_responses_total counter\n");
	for (t = 0; t < 2 && st == SW_OK; t++) {
		snprintf(line, sizeof(line),
			 "sessionwire_coap_separate_responses_total{transport=\"%s\"} %llu\n",
			 transports[t], atomic_load(&separate[t]));
		st = put(out, line);
	}
	if (st == SW_OK) {
		snprintf(line, sizeof(line),
			 "# HELP sessionwire_coap_dtls_handshakes_total DTLS handshakes: done, or refused for an identity without a usable PSK.\n"
			 "# TYPE sessionwire_coap_dtls_handshakes_total counter\n"
			 "sessionwire_coap_dtls_handshakes_total{result=\"done\"} %llu\n"
			 "sessionwire_coap_dtls_handshakes_total{result=\"refused\"} %llu\n",
			 atomic_load(&handshakes[1]), atomic_load(&handshakes[0]));
		st = put(out, line);
	}
	if (st == SW_OK) {
		snprintf(line, sizeof(line),
			 "# HELP sessionwire_coap_dtls_errors_total DTLS sessions that failed (a wrong key, a broken record).\n"
			 "# TYPE sessionwire_coap_dtls_errors_total counter\n"
			 "sessionwire_coap_dtls_errors_total %llu\n",
			 atomic_load(&dtls_errors));
		st = put(out, line);
	}
	return st;
}
