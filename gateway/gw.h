/* gw.h - session-gateway's modules and how they meet. Internal: prefix gw_.
 *
 *   device --HTTP--> server.c (libmicrohttpd: routes, limits, auth.c)
 *                       |  codec: protobuf/JSON -> canonical JSON
 *                       v
 *                    upstream.c (libcurl: pool, retries) --HTTP--> orq.ai
 *
 * With --spool DIR (store-and-forward) server.c stores the canonical JSON
 * in spool.c (SQLite, group commit) and answers 202 once it is on disk;
 * forwarder.c drains the spool through upstream.c in per-session order;
 * spool_admin.c is `session-gateway spool stats|list|retry|drop`.
 *
 * config.c reads flags, a config file and the environment; log.c writes
 * one JSON object per line on stderr; metrics.c keeps Prometheus counters.
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
	unsigned spool_forwarders; /* 16 threads draining the spool */
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
} gw_log_fields;

#define GW_LOG_FIELDS_INIT { NULL, NULL, NULL, NULL, -1, -1.0, -1, -1, -1, NULL, NULL, 0 }

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
/* Appends the Prometheus text format (version 0.0.4) to out. */
sw_status gw_metrics_render(sw_buf *out);

/* ==== Device tokens (auth.c) ==== */

typedef struct gw_tokens gw_tokens;

/* Loads `NAME TOKEN` or `NAME sha256:HEX` lines (# comments, blank lines).
 * Tokens are kept only as SHA-256 digests. NULL with err on failure. */
gw_tokens *gw_tokens_load(const char *path, char *err, size_t errlen);
void gw_tokens_free(gw_tokens *t);
/* The device name the bearer token belongs to, or NULL. Compares the
 * token's digest with every entry in constant time. */
const char *gw_tokens_check(const gw_tokens *t, const char *token, size_t n);

/* ==== Upstream (upstream.c) ==== */

typedef struct gw_upstream gw_upstream;

/* What came back for one update, after retries. */
typedef struct gw_response {
	int status;           /* final HTTP status; 0 when none came back */
	char *body;           /* heap, NUL-terminated; may be NULL */
	size_t body_len;
	char content_type[128];
	int attempts;         /* 1 + retries */
	long retry_after_ms;  /* from the last answer's Retry-After, or -1 */
	char error[160];      /* transport error when status is 0 */
} gw_response;

/* Creates the forwarder: base URL, key and policy from c (borrowed: c
 * must outlive it). Connections are reused across calls (a pool of curl
 * easy handles). NULL with err on failure. */
gw_upstream *gw_upstream_new(const gw_config *c, char *err, size_t errlen);
void gw_upstream_free(gw_upstream *up);

/* PATCHes canonical JSON to {base}/v2/traces/sessions/{encoded id} with
 * the SDK's headers; retries 429/500/502/503/504, timeouts and connection
 * errors with full-jitter exponential backoff honouring Retry-After,
 * within max_attempts and retry_budget_ms. Blocking; thread-safe.
 * path is the already encoded path (sw_session_path). Returns 0 when an
 * HTTP answer came back (any status), -1 when none did (resp->error). */
int gw_upstream_patch(gw_upstream *up, const char *path, const char *json,
		      size_t json_len, gw_response *resp);
void gw_response_free(gw_response *r);

/* Called once per gw_upstream_patch_async, from the upstream's event
 * thread, with the answer (as gw_upstream_patch fills it; resp->status 0:
 * none came back). done owns resp's body (copy *resp, gw_response_free it
 * later); resp itself is valid only during the call. Keep it short: it
 * holds up every other call in flight. */
typedef void (*gw_upstream_done_fn)(void *ud, gw_response *resp);
/* The same call without blocking: one event thread (started on first use)
 * runs every asynchronous call over a curl multi handle, connections kept
 * alive, with the same retry policy (backoff timers in the event loop).
 * path is copied; json must live until done is called. Returns 0 when
 * queued (done will be called, also while gw_upstream_free drains), -1
 * when not (out of memory, stopping; done is then not called). */
int gw_upstream_patch_async(gw_upstream *up, const char *path,
			    const char *json, size_t json_len,
			    gw_upstream_done_fn done, void *ud);

/* Replaces every occurrence of key in b[0..len) (b[len] is a NUL that
 * moves with the text) by "***": an upstream quoting the Authorization
 * header back must not hand the key to a device, a log or the spool.
 * Returns the new length. */
size_t gw_scrub(char *b, size_t len, const char *key);
/* Parses a Retry-After value (delta-seconds or an HTTP date) into ms from
 * now; -1 when it is neither. */
long gw_retry_after_ms(const char *value, long now_unix_s);

/* ==== The spool (spool.c, forwarder.c, spool_admin.c) ====
 *
 * --spool DIR: store-and-forward. DIR/spool.db is SQLite in WAL mode with
 * synchronous=FULL. One writer thread owns the write connection: callers
 * queue jobs (new updates, marks of the forwarder), the writer runs every
 * queued job in one transaction (one WAL fsync: group commit) and wakes
 * the callers after COMMIT returned. An update is acknowledged only then.
 */

typedef struct gw_spool gw_spool;

/* One update to store. */
typedef struct gw_spool_rec {
	const char *sid;       /* the decoded session id */
	size_t sid_len;
	uint64_t seq;          /* the device's seq (0 for a PATCH) */
	const char *path;      /* the encoded upstream path, NUL-terminated */
	const char *json;      /* canonical JSON, what goes upstream */
	size_t json_len;
} gw_spool_rec;

enum { GW_SPOOL_OK = 0, GW_SPOOL_FULL = 1, GW_SPOOL_ERROR = -1 };

/* Opens (creating) DIR and DIR/spool.db from c->spool_dir, checks the
 * database, takes DIR/spool.lock, starts the writer thread. c is borrowed.
 * NULL with err (a sentence naming the file and the fix) on failure. */
gw_spool *gw_spool_open(const gw_config *c, char *err, size_t errlen);
/* Stores recs[0..n) in one transaction and returns once it is on disk:
 * GW_SPOOL_OK, GW_SPOOL_FULL (nothing stored: over spool_max_bytes) or
 * GW_SPOOL_ERROR (nothing stored; err says why). Thread-safe. */
int gw_spool_put(gw_spool *sp, const gw_spool_rec *recs, size_t n,
		 char *err, size_t errlen);
/* The same without blocking: cb(arg, result, err) is called from the
 * writer thread once the transaction committed or failed (err: a
 * sentence, "" when OK). recs[] is copied, the strings it points to must
 * live until cb. Returns 0 when queued, -1 when not (closing, out of
 * memory; cb is then not called). */
typedef void (*gw_spool_done_fn)(void *arg, int result, const char *err);
int gw_spool_put_async(gw_spool *sp, const gw_spool_rec *recs, size_t n,
		       gw_spool_done_fn cb, void *arg);
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

/* Marks row id (size: its stored bytes) and waits for the commit. 0 or
 * -1. status/body: the upstream's answer (body may be NULL). */
int gw_spool__mark(gw_spool *sp, gw_mark m, int64_t id, long long size,
		   int attempts, int64_t next_ms, int status,
		   const char *body, size_t body_len);
/* The database file; a new read connection on it (NULL on failure). */
const char *gw_spool__db_path(const gw_spool *sp);
struct sqlite3 *gw_spool__reader(gw_spool *sp);
/* Commits that stored updates so far; waits up to timeout_ms for one
 * past seen, a kick, or *stop (checked under the spool's lock, so a
 * gw_spool__wake_all after setting it is never missed). */
uint64_t gw_spool__commits(gw_spool *sp);
void gw_spool__wait(gw_spool *sp, uint64_t seen, long timeout_ms,
		    const _Atomic bool *stop);
/* Wakes one more waiting forwarder (there is more work than one takes). */
void gw_spool__kick(gw_spool *sp);
/* Wakes every waiting forwarder (stopping). */
void gw_spool__wake_all(gw_spool *sp);
/* Row overhead counted against spool_max_bytes besides its strings. */
#define GW_SPOOL_ROW_OVERHEAD 64
/* Wall clock in unix milliseconds. */
int64_t gw_spool__now_ms(void);

typedef struct gw_forwarder gw_forwarder;

/* Starts c->spool_forwarders threads draining sp through their own
 * upstream (one attempt per call; the retry policy lives in the spool).
 * NULL with err on failure. */
gw_forwarder *gw_forwarder_start(const gw_config *c, gw_spool *sp,
				 char *err, size_t errlen);
/* Stops the threads (an upstream call in flight finishes and its mark is
 * committed), frees. NULL is fine. */
void gw_forwarder_stop(gw_forwarder *fw);

/* `session-gateway spool stats|list|retry|drop --spool DIR ...`; argv[0]
 * is "spool". Returns the exit status. */
int gw_spool_admin(int argc, char **argv, FILE *out, FILE *errf);

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
	gw_body_kind kind;
	char device[64];              /* the token's device, or "anonymous" */
	sw_buf sid;                   /* PATCH: the decoded session id */
	sw_buf upath;                 /* PATCH: the encoded upstream path */
} gw_req_head;

gw_route gw_route_of(const char *url);
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

/* ==== Request read deadlines (deadline.c) ==== */

/* A sweeper thread that shuts down the sockets of connections whose
 * request has not been read in full within limit_s seconds of the
 * connection opening or its previous answer. */
typedef struct gw_deadline gw_deadline;
typedef struct gw_conn_clock gw_conn_clock;

/* NULL when limit_s is 0 (no deadline) or out of resources; every other
 * gw_deadline_* takes NULL and does nothing. */
gw_deadline *gw_deadline_start(unsigned limit_s);
void gw_deadline_stop(gw_deadline *d);
/* A new connection's clock (NULL: it goes without one). */
gw_conn_clock *gw_deadline_open(gw_deadline *d, int fd);
/* Before the socket is closed: the sweeper forgets fd. */
void gw_deadline_close(gw_deadline *d, gw_conn_clock *c);
/* busy: the request is read, the clock stops; !busy: the answer went
 * out, the next request's clock starts. false when the sweeper has cut
 * the connection already (do no work for it). */
bool gw_deadline_busy(gw_deadline *d, gw_conn_clock *c, bool busy);

/* ==== The HTTP server (server.c) ==== */

typedef struct gw_server gw_server;

/* Starts listening (libmicrohttpd, epoll, worker threads). tokens may be
 * NULL only with allow_anonymous; on success the server owns them (freed
 * when replaced or at gw_server_stop). c and up are borrowed and must
 * outlive the server. NULL with err on failure (tokens still the
 * caller's). */
gw_server *gw_server_start(const gw_config *c, gw_upstream *up,
			   gw_tokens *tokens, char *err, size_t errlen);
/* The same in spool mode (sp not NULL): updates are stored in sp and
 * acknowledged with 202 once committed; sp is borrowed and must outlive
 * the server. */
gw_server *gw_server_start_spool(const gw_config *c, gw_upstream *up,
				 gw_spool *sp, gw_tokens *tokens, char *err,
				 size_t errlen);
/* The port it listens on (useful with listen_port 0). */
uint16_t gw_server_port(const gw_server *s);
/* Replaces the device tokens (SIGHUP), taking ownership; the old set is
 * freed once no request uses it. */
void gw_server_set_tokens(gw_server *s, gw_tokens *tokens);
/* Stops accepting, lets requests in flight finish, stops. NULL is fine. */
void gw_server_stop(gw_server *s);

#endif
