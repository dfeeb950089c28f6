/* metrics.c - process-wide Prometheus counters and histograms (C11 atomics,
 * no locks). Status codes and rejection reasons are bucketed into fixed
 * sets so the label space is bounded whatever clients send. */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "gw.h"

/* ==== Label sets ==== */

static const int status_codes[] = { 200, 202, 400, 401, 404, 405, 413,
				    415, 429, 500, 502, 503, 504, 507 };
#define N_CODES (sizeof(status_codes) / sizeof(status_codes[0]))
/* index N_CODES: "other"; for upstream answers N_CODES + 1: "none" */
#define CODE_OTHER N_CODES
#define CODE_NONE (N_CODES + 1)
#define N_CODE_SLOTS (N_CODES + 2)

static const char *const route_names[GW_ROUTE_COUNT] = {
	"patch", "batch", "healthz", "readyz", "metrics", "other"
};

static const char *const reasons[] = {
	"auth", "too_big", "too_many_items", "content_type", "method",
	"not_found", "bad_request", "invalid_body", "overload",
	"shutting_down", "upstream", "spool_full", "spool_error", "slow_client",
	"other"
};
#define N_REASONS (sizeof(reasons) / sizeof(reasons[0]))

/* Upper bounds in seconds; +Inf is implicit. */
static const double buckets[] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
				  0.1, 0.25, 0.5, 1, 2.5, 5, 10 };
#define N_BUCKETS (sizeof(buckets) / sizeof(buckets[0]))

typedef struct histo {
	atomic_ullong count[N_BUCKETS + 1]; /* per bucket, not cumulative */
	atomic_ullong sum_us;               /* sum in microseconds */
} histo;

static atomic_ullong requests[GW_ROUTE_COUNT][N_CODE_SLOTS];
static atomic_ullong upstream_responses[N_CODE_SLOTS];
static atomic_ullong upstream_retries;
static atomic_ullong rejections[N_REASONS];
static atomic_ullong device_bytes;
static atomic_ullong upstream_json_bytes;
static atomic_llong inflight;
static histo request_duration[GW_ROUTE_COUNT];
static histo upstream_duration;
/* The spool (rendered only once a spool reported its state). */
static atomic_bool spool_used;
static atomic_llong spool_depth, spool_bytes, spool_dead, spool_oldest_ms;
static atomic_ullong spool_commits, spool_commit_rows, spool_stored;
static atomic_ullong spool_retries, spool_dead_total, spool_delivered;
static histo spool_commit_duration;

/* Slot of an HTTP status in the fixed set. */
static size_t code_slot(int status)
{
	size_t i;

	if (status == 0)
		return CODE_NONE;
	for (i = 0; i < N_CODES; i++)
		if (status_codes[i] == status)
			return i;
	return CODE_OTHER;
}

static void histo_observe(histo *h, double seconds)
{
	size_t i;

	if (!(seconds >= 0))
		seconds = 0;
	for (i = 0; i < N_BUCKETS; i++)
		if (seconds <= buckets[i])
			break;
	atomic_fetch_add_explicit(&h->count[i], 1, memory_order_relaxed);
	if (seconds > 1e6)
		seconds = 1e6;
	atomic_fetch_add_explicit(&h->sum_us,
				  (unsigned long long)(seconds * 1e6 + 0.5),
				  memory_order_relaxed);
}

/* ==== Recording ==== */

void gw_metrics_request(gw_route route, int status, double seconds)
{
	if ((unsigned)route >= GW_ROUTE_COUNT)
		route = GW_ROUTE_OTHER;
	atomic_fetch_add_explicit(&requests[route][code_slot(status == 0 ? -1 : status)],
				  1, memory_order_relaxed);
	histo_observe(&request_duration[route], seconds);
}

void gw_metrics_upstream(int status, double seconds)
{
	atomic_fetch_add_explicit(&upstream_responses[code_slot(status)], 1,
				  memory_order_relaxed);
	histo_observe(&upstream_duration, seconds);
}

void gw_metrics_retry(void)
{
	atomic_fetch_add_explicit(&upstream_retries, 1, memory_order_relaxed);
}

void gw_metrics_reject(const char *reason)
{
	size_t i;

	for (i = 0; i + 1 < N_REASONS; i++)
		if (reason && strcmp(reason, reasons[i]) == 0)
			break;
	atomic_fetch_add_explicit(&rejections[i], 1, memory_order_relaxed);
}

void gw_metrics_bytes(size_t from_device, size_t json_upstream)
{
	atomic_fetch_add_explicit(&device_bytes, from_device,
				  memory_order_relaxed);
	atomic_fetch_add_explicit(&upstream_json_bytes, json_upstream,
				  memory_order_relaxed);
}

void gw_metrics_inflight(int delta)
{
	atomic_fetch_add_explicit(&inflight, delta, memory_order_relaxed);
}

void gw_metrics_spool_commit(double seconds, unsigned rows, unsigned updates)
{
	atomic_fetch_add_explicit(&spool_commits, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&spool_commit_rows, rows, memory_order_relaxed);
	atomic_fetch_add_explicit(&spool_stored, updates, memory_order_relaxed);
	histo_observe(&spool_commit_duration, seconds);
}

void gw_metrics_spool_state(long long depth, long long bytes,
			    long long dead, long long oldest_ms)
{
	atomic_store(&spool_depth, depth);
	atomic_store(&spool_bytes, bytes);
	atomic_store(&spool_dead, dead);
	atomic_store(&spool_oldest_ms, oldest_ms);
	atomic_store(&spool_used, true);
}

void gw_metrics_spool_retry(void)
{
	atomic_fetch_add_explicit(&spool_retries, 1, memory_order_relaxed);
}

void gw_metrics_spool_dead(void)
{
	atomic_fetch_add_explicit(&spool_dead_total, 1, memory_order_relaxed);
}

void gw_metrics_spool_delivered(void)
{
	atomic_fetch_add_explicit(&spool_delivered, 1, memory_order_relaxed);
}

/* ==== Rendering ==== */

static sw_status put(sw_buf *out, const char *s)
{
	return sw_buf_append(out, s, strlen(s));
}

static void code_label(size_t slot, char *out, size_t cap)
{
	if (slot < N_CODES)
		snprintf(out, cap, "%d", status_codes[slot]);
	else
		snprintf(out, cap, "%s", slot == CODE_NONE ? "none" : "other");
}

/* One histogram's _bucket/_sum/_count lines; labels is "" or `k="v",`. */
static sw_status render_histo(sw_buf *out, const char *name,
			      const char *labels, const histo *h)
{
	char line[256];
	unsigned long long cum = 0;
	size_t i;
	sw_status st = SW_OK;
	size_t ll = strlen(labels);
	/* labels without the trailing comma for _sum/_count */
	char plain[96];

	snprintf(plain, sizeof(plain), "%.*s", ll ? (int)(ll - 1) : 0, labels);
	for (i = 0; i <= N_BUCKETS && st == SW_OK; i++) {
		cum += atomic_load_explicit(&h->count[i], memory_order_relaxed);
		if (i < N_BUCKETS)
			snprintf(line, sizeof(line), "%s_bucket{%sle=\"%g\"} %llu\n",
				 name, labels, buckets[i], cum);
		else
			snprintf(line, sizeof(line), "%s_bucket{%sle=\"+Inf\"} %llu\n",
				 name, labels, cum);
		st = put(out, line);
	}
	if (st != SW_OK)
		return st;
	snprintf(line, sizeof(line), "%s_sum%s%s%s %.6f\n", name,
		 ll ? "{" : "", plain, ll ? "}" : "",
		 (double)atomic_load_explicit(&h->sum_us, memory_order_relaxed) / 1e6);
	st = put(out, line);
	if (st != SW_OK)
		return st;
	snprintf(line, sizeof(line), "%s_count%s%s%s %llu\n", name,
		 ll ? "{" : "", plain, ll ? "}" : "", cum);
	return put(out, line);
}

static sw_status render_counter(sw_buf *out, const char *name,
				const char *help, unsigned long long v)
{
	char line[256];

	snprintf(line, sizeof(line), "# HELP %s %s\n# TYPE %s counter\n%s %llu\n",
		 name, help, name, name, v);
	return put(out, line);
}

static sw_status render_gauge(sw_buf *out, const char *name,
			      const char *help, double v)
{
	char line[256];

	snprintf(line, sizeof(line), "# HELP %s %s\n# TYPE %s gauge\n%s %.17g\n",
		 name, help, name, name, v);
	return put(out, line);
}

/* The spool's gauges, counters and commit latency. */
static sw_status render_spool(sw_buf *out)
{
	struct timespec ts;
	long long oldest = atomic_load(&spool_oldest_ms);
	double age = 0;
	sw_status st;

	clock_gettime(CLOCK_REALTIME, &ts);
	if (oldest > 0) {
		age = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9 -
		      (double)oldest / 1e3;
		if (age < 0)
			age = 0;
	}
	st = render_gauge(out, "sessionwire_spool_depth",
			  "Updates in the spool waiting to go upstream.",
			  (double)atomic_load(&spool_depth));
	if (st == SW_OK)
		st = render_gauge(out, "sessionwire_spool_bytes",
				  "Bytes counted against --spool-max-bytes (updates and dead letters).",
				  (double)atomic_load(&spool_bytes));
	if (st == SW_OK)
		st = render_gauge(out, "sessionwire_spool_oldest_age_seconds",
				  "Age of the oldest update waiting in the spool (0: empty).",
				  age);
	if (st == SW_OK)
		st = render_gauge(out, "sessionwire_spool_dead_letters",
				  "Updates in the dead_letters table.",
				  (double)atomic_load(&spool_dead));
	if (st == SW_OK)
		st = render_counter(out, "sessionwire_spool_stored_total",
				    "Updates committed to the spool (acknowledged).",
				    atomic_load(&spool_stored));
	if (st == SW_OK)
		st = render_counter(out, "sessionwire_spool_delivered_total",
				    "Spooled updates the upstream accepted (2xx).",
				    atomic_load(&spool_delivered));
	if (st == SW_OK)
		st = render_counter(out, "sessionwire_spool_retries_total",
				    "Spooled updates rescheduled after a retryable failure.",
				    atomic_load(&spool_retries));
	if (st == SW_OK)
		st = render_counter(out, "sessionwire_spool_dead_letters_total",
				    "Spooled updates moved to dead_letters by this process.",
				    atomic_load(&spool_dead_total));
	if (st == SW_OK)
		st = render_counter(out, "sessionwire_spool_commits_total",
				    "Spool transactions committed (one WAL fsync each).",
				    atomic_load(&spool_commits));
	if (st == SW_OK)
		st = render_counter(out, "sessionwire_spool_commit_rows_total",
				    "Rows written by those commits (updates and marks).",
				    atomic_load(&spool_commit_rows));
	if (st == SW_OK)
		st = put(out, "# HELP sessionwire_spool_commit_duration_seconds Time of one spool COMMIT (the fsync).\n"
			      "# TYPE sessionwire_spool_commit_duration_seconds histogram\n");
	if (st == SW_OK)
		st = render_histo(out, "sessionwire_spool_commit_duration_seconds",
				  "", &spool_commit_duration);
	return st;
}

sw_status gw_metrics_render(sw_buf *out)
{
	char line[256], code[16], labels[64];
	size_t r, c;
	sw_status st;

	st = put(out, "# HELP sessionwire_requests_total Requests from devices by route and status.\n"
		      "# TYPE sessionwire_requests_total counter\n");
	for (r = 0; r < GW_ROUTE_COUNT && st == SW_OK; r++) {
		for (c = 0; c < N_CODE_SLOTS - 1 && st == SW_OK; c++) {
			unsigned long long v = atomic_load_explicit(
				&requests[r][c], memory_order_relaxed);

			if (v == 0)
				continue;
			code_label(c, code, sizeof(code));
			snprintf(line, sizeof(line),
				 "sessionwire_requests_total{route=\"%s\",code=\"%s\"} %llu\n",
				 route_names[r], code, v);
			st = put(out, line);
		}
	}
	if (st == SW_OK)
		st = put(out, "# HELP sessionwire_upstream_responses_total Answers from the upstream API by status (none: no answer).\n"
			      "# TYPE sessionwire_upstream_responses_total counter\n");
	for (c = 0; c < N_CODE_SLOTS && st == SW_OK; c++) {
		unsigned long long v = atomic_load_explicit(
			&upstream_responses[c], memory_order_relaxed);

		if (v == 0)
			continue;
		code_label(c, code, sizeof(code));
		snprintf(line, sizeof(line),
			 "sessionwire_upstream_responses_total{code=\"%s\"} %llu\n",
			 code, v);
		st = put(out, line);
	}
	if (st == SW_OK)
		st = render_counter(out, "sessionwire_upstream_retries_total",
				    "Upstream attempts after the first.",
				    atomic_load(&upstream_retries));
	if (st == SW_OK)
		st = put(out, "# HELP sessionwire_rejections_total Requests refused by the gateway, by reason.\n"
			      "# TYPE sessionwire_rejections_total counter\n");
	for (r = 0; r < N_REASONS && st == SW_OK; r++) {
		snprintf(line, sizeof(line),
			 "sessionwire_rejections_total{reason=\"%s\"} %llu\n",
			 reasons[r], atomic_load(&rejections[r]));
		st = put(out, line);
	}
	if (st == SW_OK)
		st = render_counter(out, "sessionwire_device_bytes_total",
				    "Update bytes received from devices.",
				    atomic_load(&device_bytes));
	if (st == SW_OK)
		st = render_counter(out, "sessionwire_upstream_json_bytes_total",
				    "JSON bytes sent upstream.",
				    atomic_load(&upstream_json_bytes));
	if (st == SW_OK) {
		snprintf(line, sizeof(line),
			 "# HELP sessionwire_inflight_requests Requests being handled.\n"
			 "# TYPE sessionwire_inflight_requests gauge\n"
			 "sessionwire_inflight_requests %lld\n",
			 atomic_load(&inflight));
		st = put(out, line);
	}
	if (st == SW_OK)
		st = put(out, "# HELP sessionwire_request_duration_seconds Time from request headers to the response, by route.\n"
			      "# TYPE sessionwire_request_duration_seconds histogram\n");
	for (r = 0; r < GW_ROUTE_COUNT && st == SW_OK; r++) {
		snprintf(labels, sizeof(labels), "route=\"%s\",", route_names[r]);
		st = render_histo(out, "sessionwire_request_duration_seconds",
				  labels, &request_duration[r]);
	}
	if (st == SW_OK)
		st = put(out, "# HELP sessionwire_upstream_duration_seconds Time of one upstream update, retries included.\n"
			      "# TYPE sessionwire_upstream_duration_seconds histogram\n");
	if (st == SW_OK)
		st = render_histo(out, "sessionwire_upstream_duration_seconds",
				  "", &upstream_duration);
	if (st == SW_OK && atomic_load(&spool_used))
		st = render_spool(out);
	return st;
}
