/* metrics.c - Prometheus counters and histograms. Status codes and
 * rejection reasons are bucketed into fixed sets so the label space is
 * bounded whatever clients send.
 *
 * The per-request counters live in one block per thread (each event loop
 * counts into its own cache lines: no locked instruction, no line moving
 * between cores on the hot path); /metrics sums the blocks. A block
 * outlives its thread, so totals never go back. Gauges and the spool's
 * counters (one writer thread) are plain process-wide atomics. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
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
	"queue_full", "queue_error", "other"
};
#define N_REASONS (sizeof(reasons) / sizeof(reasons[0]))

/* Upper bounds in seconds; +Inf is implicit. */
static const double buckets[] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
				  0.1, 0.25, 0.5, 1, 2.5, 5, 10 };
#define N_BUCKETS (sizeof(buckets) / sizeof(buckets[0]))

typedef struct histo {
	unsigned long long count[N_BUCKETS + 1]; /* per bucket, not cumulative */
	unsigned long long sum_us;               /* sum in microseconds */
} histo;

/* One thread's counters. Written only by that thread (relaxed atomic
 * loads and stores: plain instructions), read by /metrics. */
typedef struct counters {
	struct counters *next;
	unsigned long long requests[GW_ROUTE_COUNT][N_CODE_SLOTS];
	unsigned long long upstream_responses[N_CODE_SLOTS];
	unsigned long long upstream_retries;
	unsigned long long rejections[N_REASONS];
	unsigned long long device_bytes;
	unsigned long long upstream_json_bytes;
	histo request_duration[GW_ROUTE_COUNT];
	histo upstream_duration;
	/* the queue: its loops count here too */
	unsigned long long queue_published, queue_publish_failed;
	unsigned long long queue_delivered, queue_retries, queue_dead;
	unsigned long long queue_redelivered, queue_stale, queue_skipped;
	unsigned long long queue_pubs_started, queue_pubs_done;
	unsigned long long queue_taken, queue_released;
	histo queue_publish_duration;
} counters;

static pthread_mutex_t blocks_mu = PTHREAD_MUTEX_INITIALIZER;
static counters *blocks;               /* every thread's, newest first */
static counters spare;                 /* if a block cannot be allocated */
static __thread counters *mine;
static atomic_llong inflight;
/* The spool (rendered only once a spool reported its state). */
static atomic_bool spool_used;
static atomic_llong spool_depth, spool_bytes, spool_dead, spool_oldest_ms;
static atomic_ullong spool_commits, spool_commit_rows, spool_stored;
static atomic_ullong spool_retries, spool_dead_total, spool_delivered;
static histo spool_commit_duration;
/* The queue (rendered only once a queue reported its connection); its
 * counters are in the per-thread blocks. */
static atomic_bool queue_used, queue_up;
static atomic_llong queue_owned;

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

/* This thread's block, made on its first count. */
static counters *my_block(void)
{
	counters *c = mine;

	if (c != NULL)
		return c;
	c = calloc(1, sizeof(*c));
	pthread_mutex_lock(&blocks_mu);
	if (c == NULL) {
		c = &spare; /* shared: counts may race, never crash */
	} else {
		c->next = blocks;
		__atomic_store_n(&blocks, c, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&blocks_mu);
	mine = c;
	return c;
}

/* v += n by the only writer; readers load it whole. */
static void add(unsigned long long *v, unsigned long long n)
{
	__atomic_store_n(v, __atomic_load_n(v, __ATOMIC_RELAXED) + n,
			 __ATOMIC_RELAXED);
}

static unsigned long long get(const unsigned long long *v)
{
	return __atomic_load_n(v, __ATOMIC_RELAXED);
}

static void histo_observe(histo *h, double seconds)
{
	size_t i;

	if (!(seconds >= 0))
		seconds = 0;
	for (i = 0; i < N_BUCKETS; i++)
		if (seconds <= buckets[i])
			break;
	add(&h->count[i], 1);
	if (seconds > 1e6)
		seconds = 1e6;
	add(&h->sum_us, (unsigned long long)(seconds * 1e6 + 0.5));
}

/* The sum over every block of the counter at offset off. */
#define SUM(field) sum_of(offsetof(counters, field))

static unsigned long long sum_of(size_t off)
{
	const counters *c = __atomic_load_n(&blocks, __ATOMIC_ACQUIRE);
	unsigned long long v = get((const unsigned long long *)(const void *)
				   ((const char *)&spare + off));

	for (; c != NULL; c = c->next)
		v += get((const unsigned long long *)(const void *)
			 ((const char *)c + off));
	return v;
}

/* A histogram summed over every block. */
static void histo_sum(size_t off, histo *out)
{
	size_t i;

	for (i = 0; i <= N_BUCKETS; i++)
		out->count[i] = sum_of(off + offsetof(histo, count) +
				       i * sizeof(out->count[0]));
	out->sum_us = sum_of(off + offsetof(histo, sum_us));
}

/* ==== Recording ==== */

void gw_metrics_request(gw_route route, int status, double seconds)
{
	counters *c = my_block();

	if ((unsigned)route >= GW_ROUTE_COUNT)
		route = GW_ROUTE_OTHER;
	add(&c->requests[route][code_slot(status == 0 ? -1 : status)], 1);
	histo_observe(&c->request_duration[route], seconds);
}

void gw_metrics_upstream(int status, double seconds)
{
	counters *c = my_block();

	add(&c->upstream_responses[code_slot(status)], 1);
	histo_observe(&c->upstream_duration, seconds);
}

void gw_metrics_retry(void)
{
	add(&my_block()->upstream_retries, 1);
}

void gw_metrics_reject(const char *reason)
{
	size_t i;

	for (i = 0; i + 1 < N_REASONS; i++)
		if (reason && strcmp(reason, reasons[i]) == 0)
			break;
	add(&my_block()->rejections[i], 1);
}

void gw_metrics_bytes(size_t from_device, size_t json_upstream)
{
	counters *c = my_block();

	add(&c->device_bytes, from_device);
	add(&c->upstream_json_bytes, json_upstream);
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
	histo_observe(&spool_commit_duration, seconds); /* the writer only */
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

/* ==== The queue ==== */

void gw_metrics_queue_published(double seconds, unsigned n)
{
	counters *c = my_block();

	add(&c->queue_published, n);
	histo_observe(&c->queue_publish_duration, seconds);
}

void gw_metrics_queue_publish_failed(void)
{
	add(&my_block()->queue_publish_failed, 1);
}

void gw_metrics_queue_delivered(void)
{
	add(&my_block()->queue_delivered, 1);
}

void gw_metrics_queue_retry(void)
{
	add(&my_block()->queue_retries, 1);
}

void gw_metrics_queue_dead(void)
{
	add(&my_block()->queue_dead, 1);
}

void gw_metrics_queue_redelivered(void)
{
	add(&my_block()->queue_redelivered, 1);
}

void gw_metrics_queue_stale(void)
{
	add(&my_block()->queue_stale, 1);
}

void gw_metrics_queue_skipped(void)
{
	add(&my_block()->queue_skipped, 1);
}

void gw_metrics_queue_acks_pending(int delta)
{
	counters *c = my_block();

	if (delta > 0)
		add(&c->queue_pubs_started, (unsigned long long)delta);
	else
		add(&c->queue_pubs_done, (unsigned long long)-delta);
}

void gw_metrics_queue_partitions(int owned_delta, int busy_delta)
{
	if (owned_delta != 0)
		atomic_fetch_add_explicit(&queue_owned, owned_delta,
					  memory_order_relaxed);
	if (busy_delta > 0)
		add(&my_block()->queue_taken, (unsigned long long)busy_delta);
	else if (busy_delta < 0)
		add(&my_block()->queue_released, (unsigned long long)-busy_delta);
}

void gw_metrics_queue_connected(bool up)
{
	atomic_store(&queue_up, up);
	atomic_store(&queue_used, true);
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
		cum += get(&h->count[i]);
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
		 (double)get(&h->sum_us) / 1e6);
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

/* The queue's connection, publishes, forwarding and partitions. */
static sw_status render_queue(sw_buf *out)
{
	sw_status st;
	histo h;

	st = render_gauge(out, "sessionwire_queue_connected",
			  "1 while the gateway is connected to the NATS cluster.",
			  atomic_load(&queue_up) ? 1 : 0);
	if (st == SW_OK)
		st = render_gauge(out, "sessionwire_queue_acks_pending",
				  "Updates published and waiting for JetStream's acknowledgement.",
				  (double)(long long)(SUM(queue_pubs_started) -
						      SUM(queue_pubs_done)));
	if (st == SW_OK)
		st = render_gauge(out, "sessionwire_queue_partitions_owned",
				  "Partitions whose durable consumer this gateway pulls from.",
				  (double)atomic_load(&queue_owned));
	if (st == SW_OK)
		st = render_gauge(out, "sessionwire_queue_partitions_busy",
				  "Partitions with an update in this gateway's hands (at the upstream or being acked).",
				  (double)(long long)(SUM(queue_taken) -
						      SUM(queue_released)));
	if (st == SW_OK)
		st = render_counter(out, "sessionwire_queue_published_total",
				    "Updates JetStream acknowledged (stored; duplicates included).",
				    SUM(queue_published));
	if (st == SW_OK)
		st = render_counter(out, "sessionwire_queue_publish_failures_total",
				    "Stores refused (no acknowledgement in time, cluster unreachable, stream full).",
				    SUM(queue_publish_failed));
	if (st == SW_OK)
		st = render_counter(out, "sessionwire_queue_delivered_total",
				    "Queued updates the upstream accepted (2xx), acked.",
				    SUM(queue_delivered));
	if (st == SW_OK)
		st = render_counter(out, "sessionwire_queue_retries_total",
				    "Queued updates given back with a delay after a retryable failure.",
				    SUM(queue_retries));
	if (st == SW_OK)
		st = render_counter(out, "sessionwire_queue_dead_letters_total",
				    "Queued updates moved to the dead-letter stream by this process.",
				    SUM(queue_dead));
	if (st == SW_OK)
		st = render_counter(out, "sessionwire_queue_redeliveries_total",
				    "Updates JetStream delivered to this gateway more than once.",
				    SUM(queue_redelivered));
	if (st == SW_OK)
		st = render_counter(out, "sessionwire_queue_stale_total",
				    "Deliveries acked without being sent: a later update of their partition was already claimed.",
				    SUM(queue_stale));
	if (st == SW_OK)
		st = render_counter(out, "sessionwire_queue_skipped_total",
				    "Updates their partition's consumer passed over, read from the stream and forwarded by this process.",
				    SUM(queue_skipped));
	if (st == SW_OK)
		st = put(out, "# HELP sessionwire_queue_publish_duration_seconds Time from publishing an update to JetStream's acknowledgement.\n"
			      "# TYPE sessionwire_queue_publish_duration_seconds histogram\n");
	if (st == SW_OK) {
		histo_sum(offsetof(counters, queue_publish_duration), &h);
		st = render_histo(out, "sessionwire_queue_publish_duration_seconds",
				  "", &h);
	}
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
			unsigned long long v = SUM(requests[r][c]);

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
		unsigned long long v = SUM(upstream_responses[c]);

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
				    SUM(upstream_retries));
	if (st == SW_OK)
		st = put(out, "# HELP sessionwire_rejections_total Requests refused by the gateway, by reason.\n"
			      "# TYPE sessionwire_rejections_total counter\n");
	for (r = 0; r < N_REASONS && st == SW_OK; r++) {
		snprintf(line, sizeof(line),
			 "sessionwire_rejections_total{reason=\"%s\"} %llu\n",
			 reasons[r], SUM(rejections[r]));
		st = put(out, line);
	}
	if (st == SW_OK)
		st = render_counter(out, "sessionwire_device_bytes_total",
				    "Update bytes received from devices.",
				    SUM(device_bytes));
	if (st == SW_OK)
		st = render_counter(out, "sessionwire_upstream_json_bytes_total",
				    "JSON bytes sent upstream.",
				    SUM(upstream_json_bytes));
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
		histo h;

		histo_sum(offsetof(counters, request_duration[r]), &h);
		snprintf(labels, sizeof(labels), "route=\"%s\",", route_names[r]);
		st = render_histo(out, "sessionwire_request_duration_seconds",
				  labels, &h);
	}
	if (st == SW_OK)
		st = put(out, "# HELP sessionwire_upstream_duration_seconds Time of one upstream update, retries included.\n"
			      "# TYPE sessionwire_upstream_duration_seconds histogram\n");
	if (st == SW_OK) {
		histo h;

		histo_sum(offsetof(counters, upstream_duration), &h);
		st = render_histo(out, "sessionwire_upstream_duration_seconds",
				  "", &h);
	}
	if (st == SW_OK && atomic_load(&spool_used))
		st = render_spool(out);
	if (st == SW_OK)
		st = gw_metrics_coap_render(out); /* coap_metrics.c */
	if (st == SW_OK && atomic_load(&queue_used))
		st = render_queue(out);
	return st;
}
