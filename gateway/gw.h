/* gw.h - session-gateway's modules and how they meet. Internal: prefix gw_.
 *
 * Threads: N event loops (--threads, one per CPU), each owning its
 * sockets, timers and upstream connections; a request is read,
 * translated, forwarded and answered on the loop that accepted it. Only
 * what must block runs elsewhere: the spool's SQLite commits (one writer
 * thread), which post their completion back to the caller's loop.
 *
 *   device --HTTP--> http.c (libmicrohttpd, one daemon per loop)
 *   device --CoAP--> coap.c (libcoap: UDP, DTLS-PSK; on loop 0)
 *                      |  request.c, coap_req.c: route, auth, limits,
 *                      |  translation (no sockets: fuzzed as they are)
 *                      v
 *      direct mode:  upstream.c (one curl multi per loop) --> orq.ai
 *      --spool DIR:  spool.c (SQLite, group commit; the writer thread)
 *                      `-> spool_forward.c drains it on the loops,
 *                          per-session FIFO, through upstream.c
 *      --queue URLS: queue.c (NATS JetStream; libnats's threads post
 *                    to the loops), queue_publish.c (put, acknowledged)
 *                      `-> queue_forward.c: one durable consumer per
 *                          partition, pulled and forwarded on the loops
 *
 * server.c   the running gateway: loops, threads, listening sockets,
 *            device tokens, start and graceful stop
 * loop.c     epoll, a timer min-heap, posts between threads
 * http.c     the HTTP ingress: requests as state machines, answers,
 *            per-connection read deadlines (slow clients)
 * coap.c     the CoAP ingress: libcoap on a loop (--coap-listen plain
 *            UDP, --coaps-listen DTLS 1.2 PSK), answers piggybacked or
 *            separate; coap_req.c its decisions without sockets;
 *            coap_dedup.c what it answered already (message ids, seqs);
 *            coap_metrics.c its counters
 * batch.c    POST /v1/updates: a batch's items in (session, seq) order
 * retry.c    the one retry policy: retryable?, backoff, Retry-After
 * upstream.c libcurl on a loop: PATCH with retries
 * spool.c, spool_forward.c, spool_admin.c   --spool DIR and its command
 * queue.c, queue_publish.c, queue_forward.c, queue_admin.c   --queue URLS
 *            and its command (internals in queue_int.h)
 * admin.c    what the two admin commands share: flags, check, JSON lines
 * waiters.c  JSON clients waiting for a stored update's answer
 * request.c  decisions without sockets; config.c flags, config file and
 * environment; auth.c device tokens; log.c one JSON object per line;
 * metrics.c Prometheus counters; main.c signals.
 * (tests/map_check.sh fails when a gateway source file is not named here.)
 */
#ifndef GW_H
#define GW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "sessionwire/sessionwire.h"

/* ==== Configuration (config.c) ==== */

typedef struct gw_config {
	char listen_host[64];      /* "127.0.0.1" */
	uint16_t listen_port;      /* 8080; 0 = any free port (tests) */
	char upstream[512];        /* "https://my.orq.ai" (no trailing /) */
	char *api_key;             /* heap; never logged, never sent to devices */
	char api_key_file[512];    /* "" = take ORQ_API_KEY */
	char device_tokens[512];   /* "" = none (needs allow_anonymous) */
	bool allow_anonymous;
	size_t max_body;           /* 65536 bytes */
	size_t max_batch_items;    /* 100 */
	unsigned max_concurrent;   /* 256 requests in flight, else 503 */
	unsigned threads;          /* worker threads: one per CPU, >= 2 */
	unsigned client_timeout_s; /* 10: idle client connections closed */
	unsigned request_timeout_s;/* 60: a request not read in full by then
				    * is cut (slow clients); 0 = off */
	unsigned max_conns_per_ip; /* 0 = no limit */
	long connect_timeout_ms;   /* 2000 */
	long upstream_timeout_ms;  /* 10000 per attempt */
	unsigned max_attempts;     /* 4 attempts in all */
	long retry_budget_ms;      /* 30000: no new attempt after this */
	long backoff_base_ms;      /* 100 */
	long backoff_max_ms;       /* 5000 */
	bool log_bodies;           /* log request bodies (off) */
	int log_level;             /* GW_LOG_INFO */
	char spool_dir[512];       /* "" = direct mode; else store-and-forward */
	size_t spool_max_bytes;    /* 256 MiB of stored updates, then 507 */
	unsigned spool_forwarders; /* 16 updates of the spool at the upstream
				    * at once, across the loops */
	long sync_wait_ms;         /* 15000: spool mode, a JSON client's wait
				    * for the upstream's answer; 0 = none */
	/* CoAP (coap.c): each endpoint off unless its address is given */
	bool coap_on;              /* --coap-listen: plain UDP */
	char coap_host[64];
	uint16_t coap_port;        /* 5683; 0 = any free port (tests) */
	bool coaps_on;             /* --coaps-listen: DTLS 1.2 with PSKs */
	char coaps_host[64];
	uint16_t coaps_port;       /* 5684 */
	bool coap_anonymous;       /* plain CoAP allowed: the link layer
				    * authenticates devices */
	unsigned coap_dedup_s;     /* 600: a resent envelope's answer is
				    * kept this long */
	unsigned coap_source_rate; /* 100 requests/s per source address while
				    * overloaded; 0 = no limit */
	unsigned coap_max_sessions;/* 10000 sessions per endpoint, the
				    * oldest idle one closed above it */
	unsigned coap_session_timeout_s; /* 300: idle sessions closed */
	/* --queue: store-and-forward on a NATS JetStream cluster (queue.c) */
	char queue_urls[1024];     /* "" = none; nats://H:P[,nats://H:P...] */
	char queue_stream[32];     /* "SESSIONWIRE" */
	unsigned queue_replicas;   /* 3 */
	unsigned queue_partitions; /* 64: subjects STREAM.0 .. STREAM.63 */
	long queue_max_age_s;      /* 86400: the stream's MaxAge */
	long queue_dedup_s;        /* 120: the stream's Duplicates window */
	long queue_ack_timeout_ms; /* 5000: no JetStream ack by then: 503 */
	char queue_creds[512];     /* "" = none; a NATS .creds file */
	char queue_tls_ca[512];    /* "" = none; CA certificates (PEM) */
	bool queue_accept_only;    /* publish only: other gateways forward */
} gw_config;

/* Fills the documented defaults. */
void gw_config_defaults(gw_config *c);
/* Reads `key = value` lines (# comments; keys as the long flags without
 * --, e.g. `max-body = 65536`). Returns 0, or -1 with err filled. */
int gw_config_load_file(gw_config *c, const char *path, char *err,
			size_t errlen);
/* Parses argv (a --config FILE is loaded first, then flags override).
 * Returns 0 to run, 1 when --help was printed, -1 on error (err). */
int gw_config_parse_args(gw_config *c, int argc, char **argv, char *err,
			 size_t errlen);
/* Applies the environment (ORQ_API_KEY), reads api_key_file, checks the
 * whole (a key is required; tokens or allow_anonymous). 0 or -1. */
int gw_config_finish(gw_config *c, char *err, size_t errlen);
/* --help text, every option with its default. */
void gw_config_usage(FILE *f);
/* The --queue options together (gw_config_finish calls it). 0 or -1. */
int gw_config__check_queue(const gw_config *c, char *err, size_t errlen);
void gw_config_free(gw_config *c);

/* ==== Logs (log.c) ==== */

enum { GW_LOG_DEBUG = 0, GW_LOG_INFO = 1, GW_LOG_WARN = 2, GW_LOG_ERROR = 3 };

/* Optional fields of one log line; NULL/negative members are left out. */
typedef struct gw_log_fields {
	const char *request_id;
	const char *route;
	const char *session_id;
	const char *device;
	int status;          /* -1: none */
	double latency_ms;   /* < 0: none */
	long bytes_in;       /* -1: none */
	long bytes_out;      /* -1: none */
	int attempts;        /* -1: none */
	const char *error;
	const char *body;    /* only when --log-bodies */
	size_t body_len;
	const char *transport; /* "coap", "coaps"; NULL: HTTP (left out) */
} gw_log_fields;

#define GW_LOG_FIELDS_INIT { NULL, NULL, NULL, NULL, -1, -1.0, -1, -1, -1, NULL, NULL, 0, NULL }

void gw_log_set_level(int level);
/* Writes {"time":...,"level":...,"msg":...,<fields>} and a newline to
 * stderr in one write(2); strings JSON-escaped. Thread-safe. f may be NULL. */
void gw_log(int level, const char *msg, const gw_log_fields *f);
/* Appends s[0..n) JSON-escaped, without quotes, to out: quote, backslash and
 * U+0000..U+001F escaped, bytes that are not UTF-8 as \ufffd. */
sw_status gw_json_escape(sw_buf *out, const char *s, size_t n);
/* Length of the valid UTF-8 sequence at s[0..n) (n >= 1): 1 to 4, or 0 when
 * it is not one (overlongs, surrogates and past U+10FFFF refused). */
size_t gw_utf8_seq(const unsigned char *s, size_t n);
/* Makes s valid UTF-8 in place: bytes of broken sequences become '?'
 * (messages may quote device input or be cut inside a character). */
void gw_utf8_sanitise(char *s);
/* snprintf into out[cap] that may cut on purpose, then gw_utf8_sanitise
 * (a cut may split a character). */
__attribute__((format(printf, 3, 4)))
void gw_format(char *out, size_t cap, const char *fmt, ...);

/* ==== Metrics (metrics.c) ==== */

typedef enum gw_route {
	GW_ROUTE_PATCH = 0,   /* PATCH /v2/traces/sessions/{id} */
	GW_ROUTE_BATCH = 1,   /* POST /v1/updates */
	GW_ROUTE_HEALTHZ = 2,
	GW_ROUTE_READYZ = 3,
	GW_ROUTE_METRICS = 4,
	GW_ROUTE_OTHER = 5,
	GW_ROUTE_COUNT = 6
} gw_route;

/* Lock-free counters and histograms of the whole process. */
void gw_metrics_request(gw_route route, int status, double seconds);
void gw_metrics_upstream(int status, double seconds); /* status 0: no answer */
void gw_metrics_retry(void);
void gw_metrics_reject(const char *reason); /* "auth", "too_big", ... */
void gw_metrics_bytes(size_t from_device, size_t json_upstream);
void gw_metrics_inflight(int delta);
/* The spool: one commit (fsync) of n rows (updates, marks) in seconds. */
void gw_metrics_spool_commit(double seconds, unsigned rows, unsigned updates);
/* The spool's state after a commit; oldest_ms: arrival (unix ms) of the
 * queue's head, 0 when empty. */
void gw_metrics_spool_state(long long depth, long long bytes,
			    long long dead, long long oldest_ms);
void gw_metrics_spool_retry(void);
void gw_metrics_spool_dead(void);
void gw_metrics_spool_delivered(void);
/* The queue: one publish acknowledged by JetStream after seconds (n
 * updates); one update forwarded, retried (nak with a delay), dead, or
 * seen again (a redelivery); the gauges. */
void gw_metrics_queue_published(double seconds, unsigned n);
void gw_metrics_queue_publish_failed(void);
void gw_metrics_queue_delivered(void);
void gw_metrics_queue_retry(void);
void gw_metrics_queue_dead(void);
void gw_metrics_queue_redelivered(void);
/* A delivery acked without being sent: a later update of its partition
 * was claimed already (a stale copy after a consumer leader change). */
void gw_metrics_queue_stale(void);
void gw_metrics_queue_skipped(void);
void gw_metrics_queue_acks_pending(int delta);
void gw_metrics_queue_partitions(int owned_delta, int busy_delta);
void gw_metrics_queue_connected(bool up);
/* Appends the Prometheus text format (version 0.0.4) to out. */
sw_status gw_metrics_render(sw_buf *out);

/* The CoAP ingress (coap_metrics.c): one message answered (code c.dd as
 * c*100+dd, 0: none) by transport and resource (gw_coap_res); a message
 * or an envelope seen before (by_seq); an answer sent as a separate
 * response; a DTLS handshake done (ok) or refused (no PSK for the
 * identity); a DTLS error. Rendered by gw_metrics_render. */
void gw_metrics_coap_request(bool dtls, int res, int code, double seconds);
void gw_metrics_coap_duplicate(bool dtls, bool by_seq);
void gw_metrics_coap_separate(bool dtls);
void gw_metrics_coap_handshake(bool ok);
void gw_metrics_coap_dtls_error(void);
sw_status gw_metrics_coap_render(sw_buf *out);

/* ==== Device tokens (auth.c) ==== */

typedef struct gw_tokens gw_tokens;

/* Loads `NAME TOKEN` or `NAME sha256:HEX` lines (# comments, blank lines).
 * Tokens are kept only as SHA-256 digests. NULL with err on failure. */
gw_tokens *gw_tokens_load(const char *path, char *err, size_t errlen);
/* Another reference to t (NULL fine); gw_tokens_free drops one, the
 * last frees. */
gw_tokens *gw_tokens_ref(gw_tokens *t);
void gw_tokens_free(gw_tokens *t);
/* The device name the bearer token belongs to, or NULL. Compares the
 * token's digest with every entry in constant time. */
const char *gw_tokens_check(const gw_tokens *t, const char *token, size_t n);

/* The longest DTLS pre-shared key a tokens file may hold (bytes). */
#define GW_PSK_MAX 64
/* gw_tokens_load, also reading `NAME psk:HEX` lines (a key of 1 to 64
 * bytes, for DTLS only); with keep_psk a plain token's bytes are kept as
 * that device's PSK too (--coaps-listen). */
gw_tokens *gw_tokens_load_psk(const char *path, bool keep_psk, char *err,
			      size_t errlen);
/* The DTLS PSK of device name[0..n): its first `psk:` line, else its
 * first plain token kept as a PSK. 0 with *key (t's memory, valid while
 * t is) and *key_len; -1 with *why, a sentence: no such device, or a
 * sha256: token (no secret to use), or a token too long. */
int gw_tokens_psk(const gw_tokens *t, const char *name, size_t n,
		  const uint8_t **key, size_t *key_len, const char **why);

/* ==== Event loops (loop.c) ====
 * Everything but gw_loop_post belongs to the loop's own thread. */

typedef struct gw_loop gw_loop;

typedef void (*gw_io_fn)(void *ud, uint32_t events);
/* A file descriptor in a loop's epoll set (the caller's memory; a gw_io
 * stopped from a callback must live until the loop's posts have run). */
typedef struct gw_io {
	int fd;
	uint32_t events;
	gw_io_fn cb;
	void *ud;
} gw_io;

typedef void (*gw_timer_fn)(void *ud);
/* A one-shot timer (the caller's memory). */
typedef struct gw_timer {
	int64_t due;            /* monotonic ms */
	uint64_t order;
	size_t slot;            /* heap slot + 1; 0: not armed */
	gw_timer_fn cb;
	void *ud;
} gw_timer;

typedef void (*gw_post_fn)(void *arg);
/* Work posted to a loop (the caller's node; free again once fn runs). */
typedef struct gw_post {
	struct gw_post *next;
	gw_post_fn fn;
	void *arg;
} gw_post;

/* A loop with its epoll set and wake-up eventfd. NULL with err. */
gw_loop *gw_loop_new(unsigned idx, char *err, size_t errlen);
void gw_loop_free(gw_loop *l);
/* Runs timers, posts and fd callbacks until gw_loop_quit. */
void gw_loop_run(gw_loop *l);
void gw_loop_quit(gw_loop *l);
unsigned gw_loop_index(const gw_loop *l);
/* The loop running on this thread, or NULL. */
gw_loop *gw_loop_current(void);
/* The loop's clock: monotonic ms, read once per pass. */
int64_t gw_loop_now(const gw_loop *l);
int64_t gw_mono_ms(void);
/* From any thread: fn(arg) runs on l, in posting order. p must not be
 * posted again before fn has run. Never fails. */
void gw_loop_post(gw_loop *l, gw_post *p, gw_post_fn fn, void *arg);
int gw_io_start(gw_loop *l, gw_io *io, int fd, uint32_t events,
		gw_io_fn cb, void *ud);
int gw_io_modify(gw_loop *l, gw_io *io, uint32_t events);
void gw_io_stop(gw_loop *l, gw_io *io);
void gw_timer_init(gw_timer *t, gw_timer_fn cb, void *ud);
/* (Re)arms t to fire after_ms from the loop's now. 0, or -1 (no memory). */
int gw_timer_start(gw_loop *l, gw_timer *t, int64_t after_ms);
void gw_timer_stop(gw_loop *l, gw_timer *t);
bool gw_timer_armed(const gw_timer *t);

/* ==== The retry policy (retry.c): the only place that decides ==== */

typedef struct gw_retry_policy {
	bool persistent;          /* the spool: retries outlive the process */
	unsigned max_attempts;    /* 0: no limit */
	long budget_ms;           /* no wait may end past it; 0: no limit */
	long base_ms, max_ms;     /* full jitter: [0, min(max, base*2^(n-1))] */
} gw_retry_policy;

/* A curl code for "the transfer never started" (no handle, no memory). */
#define GW_CURL_NOT_STARTED (-1)

/* The policy of c: in memory (direct PATCH, batch items: max_attempts,
 * budget) or persistent (the spool: no limits). */
void gw_retry_policy_of(const gw_config *c, bool persistent,
			gw_retry_policy *p);
/* Whether an attempt is worth another: its HTTP status (0: none came
 * back) and, without one, curl's code. Decided on codes, never on text. */
bool gw_retry_retryable(const gw_retry_policy *p, int status, int curl_code);
/* After `attempts` attempts, the last retryable: the wait in ms before
 * the next one (full jitter, at least retry_after_ms when >= 0), or -1
 * when the attempts or the budget (elapsed_ms used of it) are spent. */
long gw_retry_next(const gw_retry_policy *p, unsigned attempts,
		   long elapsed_ms, long retry_after_ms, uint64_t *rng);
/* The backoff alone after `attempts` attempts. */
long gw_retry_backoff(const gw_retry_policy *p, unsigned attempts,
		      uint64_t *rng);
/* The status a device gets when no answer came back: 504 when the
 * upstream timed out, 502 otherwise. */
int gw_retry_no_answer_status(int curl_code);
/* Parses a Retry-After value (delta-seconds or an HTTP date) into ms from
 * now (at most a day); -1 when it is neither. */
long gw_retry_after_ms(const char *value, long now_unix_s);
/* A seed for the jitter (clock, thread, stack address). */
uint64_t gw_rng_seed(void);

/* ==== Upstream (upstream.c) ==== */

typedef struct gw_upstream gw_upstream;
typedef struct gw_uplink gw_uplink;

/* What came back for one update, after retries. */
typedef struct gw_response {
	int status;           /* final HTTP status; 0 when none came back */
	char *body;           /* heap, NUL-terminated; may be NULL */
	size_t body_len;
	char content_type[128];
	int attempts;         /* 1 + retries */
	long retry_after_ms;  /* from the last answer's Retry-After, or -1 */
	int curl_code;        /* the last attempt's CURLcode (0: an answer) */
	char error[160];      /* transport error when status is 0 */
} gw_response;

/* What every loop shares: base URL, the key's header, DNS and TLS
 * session caches, the retry policy. c is borrowed and must outlive it.
 * NULL with err on failure. */
gw_upstream *gw_upstream_new(const gw_config *c, char *err, size_t errlen);
void gw_upstream_free(gw_upstream *up);
void gw_response_free(gw_response *r);

/* One loop's link to the upstream: a curl multi handle on the loop,
 * connections kept alive. Created and used on that loop's thread. */
gw_uplink *gw_uplink_new(gw_upstream *up, gw_loop *loop, char *err,
			 size_t errlen);
/* After the loop has stopped, with nothing busy. NULL is fine. */
void gw_uplink_free(gw_uplink *ul);
/* Calls at the upstream or backing off. */
size_t gw_uplink_busy(const gw_uplink *ul);
/* Ends every call that is backing off now, with its last answer. */
void gw_uplink_hurry(gw_uplink *ul);

/* Called once per gw_uplink_patch on the loop's thread. done owns resp's
 * body (copy *resp, gw_response_free it later); resp itself is valid only
 * during the call. */
typedef void (*gw_upstream_done_fn)(void *ud, gw_response *resp);
/* PATCHes canonical JSON to {base}{path} (path: sw_session_path's, NUL-
 * terminated, copied) with the SDK's headers. retry: up to max_attempts
 * attempts as retry.c says (backoffs are loop timers); else exactly one.
 * json must live until done. 0 when started (done will be called, maybe
 * before this returns), -1 when not (out of memory; done not called). */
int gw_uplink_patch(gw_uplink *ul, const char *path, const char *json,
		    size_t json_len, bool retry, gw_upstream_done_fn done,
		    void *ud);

/* Replaces every occurrence of key in b[0..len) (b[len] is a NUL that
 * moves with the text) by "***": an upstream quoting the Authorization
 * header back must not hand the key to a device, a log or the spool.
 * Returns the new length. */
size_t gw_scrub(char *b, size_t len, const char *key);

/* ==== Stores: where the gateway owns an update (store-and-forward) ====
 *
 * An update is the gateway's exactly when its store says it is durable;
 * only then is the device told (202). A store also forwards what it
 * holds, on the event loops, through their upstream links: each loop may
 * have a lane of the store's forwarding. The SQLite spool (--spool DIR)
 * is one store; http.c, batch.c and server.c see only this interface.
 */

typedef struct gw_store gw_store;

/* A caller waiting for the upstream's final answer to one stored update
 * (a JSON client). The caller's memory. */
typedef struct gw_waiter {
	int64_t id;              /* the stored update (set by the store) */
	gw_loop *loop;           /* where answered() runs */
	void (*answered)(struct gw_waiter *w); /* resp holds the answer */
	gw_response resp;
	gw_post post;
	struct gw_waiter *hnext; /* the store's table */
	bool listed;
} gw_waiter;

/* One update to store. */
typedef struct gw_store_rec {
	const char *sid;       /* the decoded session id */
	size_t sid_len;
	uint64_t seq;          /* the device's seq (0 for a PATCH) */
	const char *path;      /* the encoded upstream path, NUL-terminated */
	const char *json;      /* canonical JSON, what goes upstream */
	size_t json_len;
	gw_waiter *waiter;     /* NULL, or listed before it is durable */
} gw_store_rec;

/* A put's result: stored; full (507: over its size limit, the disk is
 * full); or not stored for another reason (503). */
enum { GW_STORE_OK = 0, GW_STORE_FULL = 1, GW_STORE_ERROR = -1 };

/* Called on the put's loop once the update is durable or refused; err a
 * sentence naming the problem ("" when OK). */
typedef void (*gw_store_done_fn)(void *arg, int result, const char *err);

typedef struct gw_store_ops {
	const char *name;      /* "spool": answers, logs */
	/* Stores recs[0..n) (all or nothing); cb(arg, ...) on loop after.
	 * recs[] is copied, its strings must live until cb. A rec's waiter
	 * is listed before the update can be forwarded. 0 queued, -1 not
	 * (closing, no memory: cb not called). */
	int (*put)(gw_store *st, gw_loop *loop, const gw_store_rec *recs,
		   size_t n, gw_store_done_fn cb, void *arg);
	/* Unlists w: true when it was listed, false when its answer is
	 * already posted to its loop. */
	bool (*unwait)(gw_store *st, gw_waiter *w);
	/* Forwarding on n_loops loops (start-up, before the loops run). */
	int (*fwd_open)(gw_store *st, unsigned n_loops, char *err,
			size_t errlen);
	/* Loop idx's lane: its forwarding, started on the loop's first pass.
	 * NULL with err[0] == '\0': this loop has none; with err: failed. */
	void *(*lane_new)(gw_store *st, unsigned idx, gw_loop *loop,
			  gw_uplink *ul, char *err, size_t errlen);
	/* On its loop: stop taking new updates; what is at the upstream
	 * finishes and is settled with the store. */
	void (*lane_stop)(void *lane);
	bool (*lane_idle)(const void *lane);
	void (*lane_free)(void *lane);    /* after its loop ended */
	/* Stopping: no more wake-ups posted to the loops. */
	void (*quiet)(gw_store *st);
	/* After every lane is freed. */
	void (*fwd_close)(gw_store *st);
	/* Whether it takes updates now (/readyz); false with why filled (a
	 * sentence). Any thread. */
	bool (*ready)(gw_store *st, char *why, size_t cap);
} gw_store_ops;

/* ==== Waiters of one store (waiters.c) ==== */

typedef struct gw_waiters gw_waiters;

/* A table of waiters by id. keep_early: an answer settled before its
 * waiter is listed is kept a while (60 s, the last 256) and answers the
 * listing at once. NULL when out of memory. */
gw_waiters *gw_waiters_new(bool keep_early);
void gw_waiters_free(gw_waiters *t);
/* Lists w under w->id (or answers it at once, see keep_early). */
void gw_waiters_list(gw_waiters *t, gw_waiter *w);
/* Unlists w: true when it was listed; false when its answer is posted. */
bool gw_waiters_unwait(gw_waiters *t, gw_waiter *w);
/* The final answer of id: its waiter (if any) is unlisted and gets a copy
 * of resp on its loop. Any thread. */
void gw_waiters_settle(gw_waiters *t, int64_t id, const gw_response *resp);

struct gw_store {
	const gw_store_ops *ops;
};

/* ==== The spool (spool.c, spool_forward.c, spool_admin.c) ====
 *
 * --spool DIR: store-and-forward. DIR/spool.db is SQLite in WAL mode with
 * synchronous=FULL. One writer thread owns the write connection: loops
 * queue jobs (new updates, marks of the forwarders), the writer runs
 * every queued job in one transaction (one WAL fsync: group commit) and
 * posts each job's result to its loop after COMMIT returned. An update is
 * acknowledged only then.
 */

typedef struct gw_spool gw_spool;

/* Opens (creating) DIR and DIR/spool.db from c->spool_dir, checks the
 * database, takes DIR/spool.lock, starts the writer thread. c is borrowed.
 * NULL with err (a sentence naming the file and the fix) on failure. */
gw_spool *gw_spool_open(const gw_config *c, char *err, size_t errlen);
/* The spool as a store (its put, waiters and forwarding). */
gw_store *gw_spool_store(gw_spool *sp);
/* Stores recs[0..n) in one transaction; cb(arg, ...) runs on loop once
 * it committed or failed. recs[] is copied, the strings it points to must
 * live until cb. A rec's waiter is listed with its row id before the
 * commit (so no answer can come before it) and unlisted if it fails.
 * Returns 0 when queued, -1 when not (closing, out of memory; cb is then
 * not called). */
int gw_spool_put(gw_spool *sp, gw_loop *loop, const gw_store_rec *recs,
		 size_t n, gw_store_done_fn cb, void *arg);
/* The final upstream answer of row id: the waiter listed for it (if any)
 * is unlisted and gets a copy of resp on its loop. Any thread. */
void gw_spool_settle(gw_spool *sp, int64_t id, const gw_response *resp);
/* Unlists w (it stopped waiting). true when it was listed; false when an
 * answer is already on its way to w's loop. */
bool gw_spool_unwait(gw_spool *sp, gw_waiter *w);
/* Finishes queued commits, stops the writer, closes. NULL is fine. */
void gw_spool_close(gw_spool *sp);
/* Rows waiting, bytes stored (updates and dead letters), as of the last
 * commit. */
void gw_spool_usage(gw_spool *sp, long long *depth, long long *bytes);

/* What the forwarder tells the writer about one row. */
typedef enum gw_mark {
	GW_MARK_DONE = 0,  /* upstream 2xx: delete */
	GW_MARK_RETRY = 1, /* retry at next_ms, attempts + 1 */
	GW_MARK_DEAD = 2   /* final failure: to dead_letters */
} gw_mark;

/* One mark of a row. */
typedef struct gw_spool_mark_rec {
	gw_mark mark;
	int64_t id;
	long long size;        /* its stored bytes */
	int attempts;
	int64_t next_ms;       /* GW_MARK_RETRY: unix ms */
	int status;            /* the upstream's answer */
	const char *body;      /* may be NULL; must live until cb */
	size_t body_len;
} gw_spool_mark_rec;

/* Marks a row; cb(arg, result, err) on loop after the commit. 0 queued,
 * -1 not (cb not called). */
int gw_spool_mark(gw_spool *sp, gw_loop *loop, const gw_spool_mark_rec *m,
		  gw_store_done_fn cb, void *arg);
/* The same, waiting for the commit (start-up only). 0 or -1. */
int gw_spool_mark_wait(gw_spool *sp, const gw_spool_mark_rec *m);
/* The database file; a new connection on it (NULL on failure), for one
 * thread at a time. */
const char *gw_spool__db_path(const gw_spool *sp);
struct sqlite3 *gw_spool__reader(gw_spool *sp);
/* fn(arg) from the writer thread after each commit that stored updates
 * (set before the first put). */
void gw_spool_on_news(gw_spool *sp, void (*fn)(void *arg), void *arg);
/* Row overhead counted against spool_max_bytes besides its strings. */
#define GW_SPOOL_ROW_OVERHEAD 64
/* Wall clock in unix milliseconds. */
int64_t gw_spool__now_ms(void);

/* Forwarding the spool on the loops (spool_forward.c). Sessions are
 * split between min(loops, spool_forwarders) lanes by a hash of their
 * id, one lane per loop; the spool_forwarders updates at the upstream at
 * once are dealt out between the lanes. */
typedef struct gw_spool_fwd gw_spool_fwd;   /* what the loops share */
typedef struct gw_spool_lane gw_spool_lane; /* one loop's share */

/* Holds the rows an earlier process may have had in flight (DIR/inflight)
 * and maps it afresh for n_loops loops. NULL with err. */
gw_spool_fwd *gw_spool_fwd_open(const gw_config *c, gw_spool *sp,
				unsigned n_loops, char *err, size_t errlen);
void gw_spool_fwd_close(gw_spool_fwd *f);
/* How many lanes: loops 0 .. lanes-1 get one. */
unsigned gw_spool_fwd_lanes(const gw_spool_fwd *f);
/* Loop idx's share, sending through ul. NULL with err. Starts on the
 * loop's first pass. */
gw_spool_lane *gw_spool_lane_new(gw_spool_fwd *f, unsigned idx,
				 gw_loop *loop, gw_uplink *ul, char *err,
				 size_t errlen);
/* Stops picking; what is at the upstream finishes and is marked. */
void gw_spool_lane_stop(gw_spool_lane *ln);
/* Nothing at the upstream or being marked. */
bool gw_spool_lane_idle(const gw_spool_lane *ln);
void gw_spool_lane_free(gw_spool_lane *ln);

/* What the admin commands share (admin.c). */
typedef struct gw_admin_args {
	const char *prog;   /* "spool", "queue": in messages */
	const char *cmd;    /* stats, list, retry, drop */
	long long id;       /* --id N; -1: none */
	long long limit;    /* --limit N; 100 */
	bool all, pending, json;
} gw_admin_args;

void gw_admin_args_init(gw_admin_args *a, const char *prog);
/* argv[*i], not one of the command's own flags: --id N, --limit N (*i
 * moves past N), --all, --pending, --json, or the command word. 0 taken,
 * -1 refused (said on errf: a bad value, an unexpected argument). */
int gw_admin_arg(gw_admin_args *a, int argc, char **argv, int *i,
		 FILE *errf);
/* After the flags: a known command, and for retry and drop exactly one
 * of --id and --all. 0 or -1 (said on errf). */
int gw_admin_check(const gw_admin_args *a, FILE *errf);
/* One JSON object per line, built in b (initialised, empty): members
 * "key":"escaped" and "key":number; gw_jl_end closes it, writes it to out
 * and frees b. */
void gw_jl_str(sw_buf *b, const char *key, const void *v, size_t n);
void gw_jl_int(sw_buf *b, const char *key, long long v);
/* "key":text, text a number already written ("0.250"). */
void gw_jl_num(sw_buf *b, const char *key, const char *text);
void gw_jl_end(sw_buf *b, FILE *out);

/* `session-gateway spool stats|list|retry|drop --spool DIR ...`; argv[0]
 * is "spool". Returns the exit status. */
int gw_spool_admin(int argc, char **argv, FILE *out, FILE *errf);

/* ==== The queue (queue.c, queue_forward.c, queue_admin.c) ====
 *
 * --queue nats://...: store-and-forward on a NATS JetStream cluster. An
 * update is published to its session's partition subject STREAM.<p> with
 * a message id naming the session and the device's seq (or the request),
 * and acknowledged (202) once JetStream's publish acknowledgement came
 * back: a majority of the stream's replicas holds it. Each partition has
 * one durable pull consumer (MaxAckPending 1) shared by every gateway;
 * the loops pull, forward through their upstream links, and ack, nak
 * with a delay (retry.c's persistent policy) or move the update to the
 * dead-letter stream STREAM_DEAD. libnats's threads only post to the
 * loops. Internals: queue_int.h.
 */

typedef struct gw_queue gw_queue;

/* Connects to c->queue_urls, creates or checks the stream, the dead-
 * letter stream and the partitions' consumers. c is borrowed. NULL with
 * err (a sentence naming what is wrong and the fix) on failure. */
gw_queue *gw_queue_open(const gw_config *c, char *err, size_t errlen);
/* The queue as a store. */
gw_store *gw_queue_store(gw_queue *q);
/* Flushes what is buffered (acks), closes the connection. NULL is fine.
 * After the server using it has stopped. */
void gw_queue_close(gw_queue *q);
/* `session-gateway queue stats|list|retry|drop --queue URLS ...`; argv[0]
 * is "queue". Returns the exit status. */
int gw_queue_admin(int argc, char **argv, FILE *out, FILE *errf);

/* ==== Request decisions (request.c): no sockets ====
 *
 * server.c hands these the parts of a request libmicrohttpd parsed and
 * turns their decisions into answers; tests/fuzz/gateway.c hands them
 * arbitrary bytes. */

typedef enum gw_body_kind {
	GW_BODY_NONE = 0,
	GW_BODY_PB,   /* application/x-protobuf */
	GW_BODY_JSON  /* application/json (PATCH only) */
} gw_body_kind;

/* The parts of a request head the gateway decides on; NULL: absent. */
typedef struct gw_req_head_in {
	const char *method;
	const char *url;              /* the raw path, not unescaped */
	const char *content_type;
	const char *accept;
	const char *authorization;
	const char *content_length;   /* the first one */
	const char *prefer;           /* RFC 7240 Prefer */
	bool content_length_differ;   /* several, not all equal */
} gw_req_head_in;

/* The state of the gateway a decision depends on. */
typedef struct gw_req_env {
	const gw_config *c;
	const gw_tokens *tokens;      /* NULL: anonymous devices allowed */
	bool stopping;
	int inflight;                 /* requests in flight, this one counted */
} gw_req_env;

/* A refusal: the answer to give and why. */
typedef struct gw_refusal {
	int status;                   /* 400..503 */
	const char *reason;           /* metrics reason ("auth"), or NULL */
	const char *code;             /* the answer's code ("not_found") */
	char message[320];            /* a sentence, valid UTF-8 */
	char field[SW_ERROR_PATH_MAX];/* the field path, "" when none */
	const char *hname, *hval;     /* one extra header, or NULL */
} gw_refusal;

/* What the head settled. */
typedef struct gw_req_head {
	gw_route route;
	bool accept_pb;               /* answer in protobuf */
	bool respond_async;           /* Prefer: respond-async */
	gw_body_kind kind;
	char device[64];              /* the token's device, or "anonymous" */
	sw_buf sid;                   /* PATCH: the decoded session id */
	sw_buf upath;                 /* PATCH: the encoded upstream path */
} gw_req_head;

gw_route gw_route_of(const char *url);
/* Whether a Prefer header value holds the respond-async preference. */
bool gw_prefers_async(const char *prefer);
void gw_req_head_init(gw_req_head *h);
void gw_req_head_free(gw_req_head *h);
/* Checks, in this order: route (404), method (405), stopping and load
 * (503), the bearer token (401), the PATCH path's session id (404, 400),
 * Content-Type (415) and Content-Length (400, 413). Returns 0 to read the
 * body, or the refusal's status with *no filled. h from gw_req_head_init. */
int gw_req_check_head(const gw_req_env *env, const gw_req_head_in *in,
		      gw_req_head *h, gw_refusal *no);
/* Decodes one update body and writes its canonical JSON into json (the
 * caller's, initialised). 0, or 400 with *no naming the field. */
int gw_req_canonical(const gw_config *c, const uint8_t *body, size_t len,
		     gw_body_kind kind, sw_buf *json, gw_refusal *no);

/* One batch item, translated. */
typedef struct gw_batch_item {
	size_t idx;                   /* its place in the batch and the Ack */
	char *sid;                    /* the session id's text (heap) */
	size_t sid_len;
	uint64_t seq;
	size_t update_len;            /* its update's bytes in the batch */
	int status;                   /* 0: ready (path, json); 400: invalid */
	sw_buf path;                  /* the encoded upstream path */
	sw_buf json;                  /* the canonical JSON */
	char msg[160];                /* "field: problem"; the caller's after */
} gw_batch_item;

/* A batch's items in (session, seq, place) order: forwarded in this order
 * they keep every session's updates in order. */
typedef struct gw_batch {
	size_t n;
	gw_batch_item *items;
} gw_batch;

/* Decodes a Batch of at most c->max_batch_items and translates every
 * item. 0 (invalid items carry their own 400), 400 or 413 with *no
 * filled, -1 out of memory. Free with gw_batch_free in every case. */
int gw_batch_plan(const gw_config *c, const uint8_t *body, size_t len,
		  gw_batch *b, gw_refusal *no);
void gw_batch_free(gw_batch *b);

/* Appends an error answer: a protobuf Error, or JSON
 * {"code","message","field"?}; message and field made valid UTF-8. */
sw_status gw_error_body(bool pb, int status, const char *code,
			const char *message, const char *field, sw_buf *out);
/* The upstream's answer for a device that asked for protobuf: a 2xx
 * session JSON as a Session message, a non-2xx {"code"?,"message"} as an
 * Error. 0 with out appended to; -1 when it does not translate without
 * loss (then it is passed through as it came). */
int gw_answer_pb(int status, const char *body, size_t len, sw_buf *out);
/* Appends "key":"value" (value JSON-escaped). */
sw_status gw_json_put_str(sw_buf *b, const char *key, const char *v);

/* ==== The running gateway (server.c) ==== */

typedef struct gw_server gw_server;

/* Starts --threads event loops, each listening on listen_host:port
 * (SO_REUSEPORT) with its own libmicrohttpd daemon and upstream link.
 * tokens may be NULL only with allow_anonymous; on success the server
 * holds them (gw_tokens_free drops the caller's reference as before: the
 * set lives while a loop uses it). c is borrowed and must outlive the
 * server. up is borrowed. NULL with err on failure (tokens still the
 * caller's). */
gw_server *gw_server_start(const gw_config *c, gw_upstream *up,
			   gw_tokens *tokens, char *err, size_t errlen);
/* The same in store-and-forward mode (st not NULL): updates are stored
 * in st and acknowledged with 202 once durable (JSON clients: see
 * http.c), and the loops forward st; st is borrowed and must outlive the
 * server. */
gw_server *gw_server_start_store(const gw_config *c, gw_upstream *up,
				 gw_store *st, gw_tokens *tokens, char *err,
				 size_t errlen);
/* gw_server_start_store with the spool sp. */
gw_server *gw_server_start_spool(const gw_config *c, gw_upstream *up,
				 gw_spool *sp, gw_tokens *tokens, char *err,
				 size_t errlen);
/* The port it listens on (useful with listen_port 0). */
uint16_t gw_server_port(const gw_server *s);
/* The UDP port of the CoAP endpoint (dtls: --coaps-listen, else
 * --coap-listen); 0 when it is off. */
uint16_t gw_server_coap_port(const gw_server *s, bool dtls);
/* Replaces the device tokens (SIGHUP), taking ownership; each loop
 * switches on its next pass, the old set is freed when the last lets go. */
void gw_server_set_tokens(gw_server *s, gw_tokens *tokens);
/* Stops accepting, lets requests and forwarding in flight finish, stops
 * the loops and joins their threads. NULL is fine. */
void gw_server_stop(gw_server *s);
/* Tests: fn(ud, request_id, stage) on the thread that does each stage of
 * a request ("head", "upstream", "answer", "done"). Set before traffic. */
typedef void (*gw_trace_fn)(void *ud, const char *request_id,
			    const char *stage);
void gw_server_set_trace(gw_server *s, gw_trace_fn fn, void *ud);

/* ==== Inside the server: one loop's world (server.c, http.c, batch.c) ==== */

typedef struct gw_http gw_http;
typedef struct gw_coap gw_coap;

typedef struct gw_worker {
	struct gw_server *s;
	const gw_config *c;
	unsigned idx;
	gw_loop *loop;
	gw_tokens *tokens;        /* this loop's reference */
	gw_uplink *ul;
	gw_store *store;          /* NULL: direct mode */
	void *lane;               /* the store's forwarding on this loop */
	gw_http *http;
	gw_coap *coap;            /* the CoAP endpoints this loop runs, or NULL */
	unsigned busy;            /* requests alive on this loop */
	bool stopping;
} gw_worker;

/* Shared state the ingress reads. */
bool gw_server_stopping(const gw_server *s);
/* Requests in flight in the whole process: +1/-1; returns the new count. */
int gw_server_inflight(gw_server *s, int delta);
/* A new request id ("1", "2", ...). */
void gw_server_request_id(gw_server *s, char *out, size_t cap);
/* Per-IP connections (--max-connections-per-ip): false when ip is at its
 * limit (nothing counted); release with gw_server_ip_leave. */
bool gw_server_ip_enter(gw_server *s, const void *ip, size_t len);
void gw_server_ip_leave(gw_server *s, const void *ip, size_t len);
void gw_server_trace(const gw_worker *w, const char *request_id,
		     const char *stage);

/* The HTTP ingress of one loop (http.c): a libmicrohttpd daemon in
 * external-epoll mode on listen_fd (taken). NULL with err. */
gw_http *gw_http_start(gw_worker *w, int listen_fd, char *err, size_t errlen);
/* Stops accepting (the listening socket is closed). */
void gw_http_quiesce(gw_http *h);
/* Closes every connection; call once no request is alive. NULL fine. */
void gw_http_stop(gw_http *h);

/* A batch on its way (batch.c): its items forwarded (direct mode: each
 * session's in seq order, a few sessions at once) or stored (spool mode:
 * one transaction). done runs on the worker's loop when every item has
 * its Result. */
typedef struct gw_batch_run gw_batch_run;
typedef void (*gw_batch_done_fn)(void *ud, gw_batch_run *run);
/* Takes b's items (b is emptied). NULL when out of memory (b kept). */
gw_batch_run *gw_batch_start(gw_worker *w, gw_batch *b,
			     gw_batch_done_fn done, void *ud);
/* The Results, in the batch's order, messages pointing into run. */
const sw_result *gw_batch_results(gw_batch_run *run, size_t *n);
/* Upstream attempts the batch made; the first canonical body (or NULL). */
int gw_batch_attempts(const gw_batch_run *run);
/* The spool's error sentence when a store failed, else "". */
const char *gw_batch_error(const gw_batch_run *run);
void gw_batch_run_free(gw_batch_run *run);

/* ==== CoAP requests (coap_req.c): decisions without sockets ====
 *
 * coap.c hands these the request PDUs libcoap parsed and turns their
 * decisions into CoAP answers; tests/fuzz/coap.c hands them PDUs parsed
 * from arbitrary bytes. Resources: POST /u (one Envelope), POST /b (a
 * Batch). Codes are written c*100+dd (4.15 is 415, 2.31 is 231). */

struct coap_pdu_t;

typedef enum gw_coap_res {
	GW_COAP_RES_UPDATE = 0,   /* /u */
	GW_COAP_RES_BATCH = 1,    /* /b */
	GW_COAP_RES_OTHER = 2
} gw_coap_res;

/* Content-Format application/octet-stream: the one the resources take
 * (IANA registers no protobuf Content-Format yet; see coap_req.c). */
#define GW_COAP_CF_OCTETS 42
/* The most updates in one CoAP batch: its Ack must fit one datagram. */
#define GW_COAP_BATCH_MAX 40
/* An answer's payload is kept under this (one datagram, DTLS included). */
#define GW_COAP_PAYLOAD_MAX 1024

/* What a request PDU says, as the decisions need it. */
typedef struct gw_coap_msg {
	int type;                 /* 0 CON, 1 NON, 2 ACK, 3 RST */
	int code;                 /* 1 GET, 2 POST, 3 PUT, 4 DELETE, ... */
	int mid;
	uint8_t token[8];
	size_t token_len;
	gw_coap_res res;
	char path[40];            /* Uri-Path as /a/b (cut), for the log */
	bool has_cf, has_accept, has_query;
	unsigned cf, accept;
	int bad_option;           /* a critical option the resources do not
				   * take (its number), 0: none */
	bool has_block1;
	uint32_t b1_num;
	bool b1_more;
	unsigned b1_szx;          /* block size 2^(szx+4) */
	bool has_size1;
	uint64_t size1;
	const uint8_t *payload;   /* the PDU's memory */
	size_t payload_len;
} gw_coap_msg;

/* Reads pdu (a request) into m. 0, or -1 when it is not one (m->code
 * not a method). */
int gw_coap_msg_read(const struct coap_pdu_t *pdu, gw_coap_msg *m);

/* The state of the gateway a decision depends on. */
typedef struct gw_coap_env {
	const gw_config *c;
	const char *device;       /* the PSK identity or "coap-anonymous";
				   * NULL: not (or no longer) in the device
				   * tokens */
	bool stopping;
	int inflight;             /* requests in flight, this one counted */
	bool over_rate;           /* this source is over --coap-source-rate
				   * while the gateway is overloaded */
} gw_coap_env;

/* Checks, in this order: resource (4.04), method (4.05), options (4.02
 * a critical option not taken, 4.15 Content-Format, 4.06 Accept),
 * stopping, load and per-source rate (5.03), the device (4.01), size
 * (4.13: the payload or Size1 over --max-body, 4.00 nothing to work on
 * in the last block). Returns 0 to work on it, or the code with *no
 * filled (no->status is the code). */
int gw_coap_check(const gw_coap_env *env, const gw_coap_msg *m,
		  gw_refusal *no);

/* One envelope of POST /u, translated. */
typedef struct gw_coap_update {
	char sid[SW_ERROR_PATH_MAX];  /* the session id's text (cut for logs) */
	sw_buf sid_text;          /* the session id's text, whole */
	uint64_t seq;
	sw_buf path;              /* the encoded upstream path */
	sw_buf json;              /* the canonical JSON */
	size_t update_len;        /* the update's protobuf bytes */
	uint8_t key[16];          /* (device, session, seq): the dedup key */
	uint8_t digest[8];        /* the update (its canonical JSON), hashed */
} gw_coap_update;

void gw_coap_update_init(gw_coap_update *u);
void gw_coap_update_free(gw_coap_update *u);
/* Decodes an Envelope (session id, seq, update: all required) and
 * translates it; key and digest from device. 0, or 400 with *no naming
 * the field. */
int gw_coap_update_plan(const gw_config *c, const char *device,
			const uint8_t *p, size_t n, gw_coap_update *u,
			gw_refusal *no);
/* The dedup key of (device, session id, seq) and the digest of the
 * update's canonical JSON (the same update in other protobuf bytes is
 * the same update): SHA-256, cut. */
void gw_coap_seq_key(const char *device, const char *sid, size_t sid_len,
		     uint64_t seq, const uint8_t *json, size_t json_len,
		     uint8_t key[16], uint8_t digest[8]);

/* An answer: a response code, options and payload; kept for replays. */
typedef struct gw_coap_answer {
	int code;                 /* 204, 231, 400, 503 ... */
	long max_age;             /* Max-Age seconds (5.03); -1: none */
	long block1;              /* Block1 option value to echo; -1: none */
	long size1;               /* Size1 (4.13: the limit); -1: none */
	uint8_t *payload;         /* heap: a Result, an Error or an Ack */
	size_t len;
	int status;               /* the outcome as an HTTP status (logs,
				   * metrics): 200, 202, 400, 503, ... */
	bool final;               /* the device is done with the update
				   * (2.xx, 4.xx): a resend gets this again */
	char error[200];          /* what went wrong, for the log; "" */
} gw_coap_answer;

void gw_coap_answer_init(gw_coap_answer *a);
void gw_coap_answer_free(gw_coap_answer *a);
/* A deep copy of src into dst (dst initialised). 0 or -1. */
int gw_coap_answer_copy(gw_coap_answer *dst, const gw_coap_answer *src);
/* A refusal: its code, an Error payload (status = the code), Max-Age
 * from its Retry-After for 5.03. 0 or -1 (no memory). */
int gw_coap_answer_refusal(gw_coap_answer *a, const gw_refusal *no);
/* The upstream's final answer to one update: 2.04 with a Result, 4.xx
 * with an Error (the API's own message when it translates), 5.03 with
 * Max-Age and a Result when it is worth resending later (retry.c's
 * persistent policy), 5.02 with a Result for what is the gateway's
 * problem (the org key refused, other 5xx). 0 or -1. */
int gw_coap_answer_upstream(gw_coap_answer *a, const gw_response *r);
/* A store's result: 2.04 Result{202}, or 5.03 with Max-Age (full: 30 s,
 * else 5 s) and a Result{507 or 503, retry_after_ms, err}. 0 or -1. */
int gw_coap_answer_stored(gw_coap_answer *a, int result, const char *err);
/* 2.04 with an Ack of res[0..n), messages of 2xx items left out and the
 * others cut until it fits in max_payload. 0 or -1. */
int gw_coap_answer_ack(gw_coap_answer *a, const sw_result *res, size_t n,
		       size_t max_payload);
/* Keeps a's payload within max_payload bytes: an Error or a Result
 * without its message (and field), else none. Plain CoAP answers a
 * source nobody verified: its answer must not be larger than what it
 * sent (no amplification, RFC 7252 11.3). 0 unchanged, 1 shrunk. */
int gw_coap_answer_shrink(gw_coap_answer *a, size_t max_payload);
/* The CoAP code for an upstream status (0: none came back, curl_code
 * says why): 204, 4.xx, 503 (worth resending) or 502. */
int gw_coap_code_of(int status, int curl_code);

/* A body arriving in Block1 blocks (RFC 7959) from one source. */
typedef struct gw_coap_blocks {
	gw_coap_res res;
	uint32_t next;            /* the block number expected next */
	unsigned szx;
	sw_buf body;              /* capped at max_body */
	int64_t last_ms;          /* when the last block came */
} gw_coap_blocks;

void gw_coap_blocks_init(gw_coap_blocks *b, gw_coap_res res, size_t max);
void gw_coap_blocks_free(gw_coap_blocks *b);
/* Adds m's block. 0: the body is whole (b->body); 231: more to come
 * (answer 2.31 Continue); else a refusal code with *no filled: 408 a
 * block out of order, 413 over max (Size1). */
int gw_coap_blocks_put(gw_coap_blocks *b, const gw_coap_msg *m, size_t max,
		       gw_refusal *no);

/* A token bucket: rate requests per second, a second's worth of burst. */
typedef struct gw_coap_bucket {
	double tokens;
	int64_t last_ms;
} gw_coap_bucket;
/* Takes one token at now_ms; false when the bucket is empty. */
bool gw_coap_bucket_take(gw_coap_bucket *b, int64_t now_ms, unsigned rate);

/* ==== What the CoAP ingress answered already (coap_dedup.c) ====
 *
 * Two tables, per loop, bounded in entries and age, the oldest dropped
 * first. By message: (source, message id) of every request answered or
 * being answered, so a retransmission is answered again from here and
 * never worked on twice (RFC 7252 4.5). By envelope: (device, session,
 * seq) of every update, with its final answer or the work under way, so
 * an envelope sent again in a new message gets the first answer
 * (answers worth resending, 5.xx, are not kept). */

typedef struct gw_coap_dedup gw_coap_dedup;

/* The state of one message. */
typedef enum gw_coap_mid_state {
	GW_MID_QUIET = 0,         /* being worked on, nothing sent yet */
	GW_MID_ACKED = 1,         /* an empty ACK went out; the answer comes
				   * as a separate response */
	GW_MID_ANSWERED = 2       /* answered (piggybacked): the answer is
				   * kept */
} gw_coap_mid_state;

typedef struct gw_coap_mid {
	gw_coap_mid_state state;
	gw_coap_answer answer;    /* GW_MID_ANSWERED */
} gw_coap_mid;

/* An envelope's entry: its answer, or the work under way. */
typedef struct gw_coap_seq {
	uint8_t digest[8];        /* the update, hashed */
	bool done;
	gw_coap_answer answer;    /* done */
	void *work;               /* !done: the ingress's work item */
} gw_coap_seq;

/* Tables of at most max entries each, kept for mid_ms (messages) and
 * seq_ms (envelopes). NULL when out of memory. */
gw_coap_dedup *gw_coap_dedup_new(size_t max, int64_t mid_ms, int64_t seq_ms);
void gw_coap_dedup_free(gw_coap_dedup *d);
/* Drops entries older than their age at now_ms (and, past max, the
 * oldest); a seq entry with work under way is kept. */
void gw_coap_dedup_expire(gw_coap_dedup *d, int64_t now_ms);
/* The entry of message (src[0..src_len), mid), or NULL. */
gw_coap_mid *gw_coap_mid_find(gw_coap_dedup *d, const void *src,
			      size_t src_len, int mid);
/* A new entry (GW_MID_QUIET) for it at now_ms; NULL when out of memory
 * (src_len <= 32). */
gw_coap_mid *gw_coap_mid_add(gw_coap_dedup *d, const void *src,
			     size_t src_len, int mid, int64_t now_ms);
/* The entry of an envelope's key, or NULL. */
gw_coap_seq *gw_coap_seq_find(gw_coap_dedup *d, const uint8_t key[16]);
/* A new entry with work under way (replacing one of the same key: an
 * update sent again with the same seq but other bytes is a new one).
 * NULL when out of memory. */
gw_coap_seq *gw_coap_seq_add(gw_coap_dedup *d, const uint8_t key[16],
			     const uint8_t digest[8], void *work,
			     int64_t now_ms);
/* The work of e is over: with a final answer the entry keeps a copy from
 * now_ms on; else it is dropped (a resend is worked on again). */
void gw_coap_seq_done(gw_coap_dedup *d, gw_coap_seq *e,
		      const gw_coap_answer *a, int64_t now_ms);
/* Entries in the tables (tests, metrics). */
void gw_coap_dedup_counts(const gw_coap_dedup *d, size_t *mids,
			  size_t *seqs);

/* ==== The CoAP ingress (coap.c) ==== */

/* Which endpoints a loop runs. */
enum { GW_COAP_EP_PLAIN = 1, GW_COAP_EP_DTLS = 2 };

/* Starts a libcoap context on w's loop with the endpoints in eps (bound
 * now, before the loop runs: *plain_port and *dtls_port get the ports).
 * NULL with err. */
gw_coap *gw_coap_start(gw_worker *w, unsigned eps, uint16_t *plain_port,
		       uint16_t *dtls_port, char *err, size_t errlen);
/* On its loop: new requests get 5.03 from now on; duplicates are still
 * answered, the work in flight finishes and is answered. */
void gw_coap_quiesce(gw_coap *co);
/* On its loop (or after it ended): closes the endpoints and sessions;
 * once nothing is busy. NULL is fine. */
void gw_coap_stop(gw_coap *co);

#endif
