/* http.c - the HTTP ingress of one event loop: a libmicrohttpd daemon in
 * external-epoll mode. Its epoll fd sits in the loop's epoll set and its
 * timeout is a loop timer; MHD_run runs on the loop's thread, so every
 * callback below does too, and a request is read, translated, forwarded,
 * answered and logged without leaving it.
 *
 * A request is a state machine (req_state). Its first access-handler
 * call has only the headers: route, method, auth, content type and the
 * declared length are checked there (request.c), so a refused request
 * costs no body memory. The body is then collected chunk by chunk, the
 * cap checked before each chunk is kept. When it is in, the update is
 * translated and sent on its way with the connection suspended:
 *
 *   BODY -> FORWARD (direct: the loop's upstream link)      -> READY
 *        -> STORE   (--spool, --queue: the put, durable)    -> READY
 *                   `-> SYNC (a JSON client: the forwarder's answer,
 *                             at most --sync-wait-ms)        -> READY
 *        -> BATCH   (batch.c)                                -> READY
 *   READY: resumed; the next handler call queues the answer -> ANSWERED
 *   a refusal at any point                                   -> ANSWERED
 *
 * Spool mode answers (RFC 7240): a device's protobuf update, or a request
 * with `Prefer: respond-async`, gets 202 once the update is committed. A
 * JSON request without it (the SDK, curl) is committed first, then waits
 * for that update's upstream answer and gets it as direct mode would; if
 * none is final within --sync-wait-ms, 202 with a body saying the update
 * is stored and will be delivered. Nothing is stored twice.
 *
 * Slow clients: each connection has a clock (a loop timer of
 * --request-timeout), started when it opens and after each answer and
 * stopped while the gateway works on a request it has read in full. When
 * it fires the socket is shut down (libmicrohttpd then closes it) and a
 * request it cut is not worked on.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "gw.h"

#define LOG_SESSION_MAX 128
/* A body past max_body is read and dropped up to this many bytes (so the
 * client can read its 413), then the connection is cut. */
#define DISCARD_MAX ((size_t)1 << 20)

typedef enum req_state {
	REQ_BODY,       /* the head passed: reading the body */
	REQ_DISCARD,    /* over max_body: dropping the rest, then 413 */
	REQ_FORWARD,    /* direct PATCH at the upstream (suspended) */
	REQ_STORE,      /* a stored PATCH: waiting until it is durable */
	REQ_SYNC,       /* stored; a JSON client waits for the answer */
	REQ_BATCH,      /* a batch's items away (suspended) */
	REQ_READY,      /* resumed with its outcome: answer on the next call */
	REQ_ANSWERED    /* a response is queued */
} req_state;

/* What a READY request answers. */
typedef enum outcome {
	OUT_UPSTREAM,   /* up: the upstream's answer (status 0: none) */
	OUT_STORED,     /* store_rc: the commit's result */
	OUT_SYNC_LATE,  /* stored, no final answer in time: 202 */
	OUT_BATCH       /* batch: every item's Result */
} outcome;

/* One connection: its read clock and its place in the per-IP counts. */
typedef struct conn_ctx {
	gw_http *h;
	int fd;
	gw_timer clock;
	bool cut;                 /* the clock fired: do no more work */
	bool ip_counted;
	size_t ip_len;
	unsigned char ip[16];
} conn_ctx;

typedef struct req {
	gw_http *h;
	struct MHD_Connection *conn;
	conn_ctx *cc;
	req_state state;
	outcome out;
	char id[24];
	gw_req_head head;         /* route, answer type, body kind, device, ids */
	double t0;
	bool counted;             /* in the server's in-flight count */
	sw_buf body;              /* at most max_body bytes */
	size_t discarded;
	sw_buf json;              /* a PATCH's canonical JSON */
	int status;               /* for the log and the metrics */
	size_t bytes_out;
	int attempts;
	char session[LOG_SESSION_MAX];
	char error[256];
	char *log_body;           /* canonical JSON, only with --log-bodies */
	size_t log_body_len;
	gw_response up;           /* OUT_UPSTREAM, and SYNC's answer */
	int store_rc;
	char store_err[200];
	gw_waiter waiter;         /* store mode, a JSON client */
	bool sync, stored, answered;
	gw_timer sync_timer;
	struct req *sync_prev, *sync_next;
	gw_batch_run *batch;
} req;

struct gw_http {
	gw_worker *w;
	struct MHD_Daemon *d;
	gw_io io;                 /* the daemon's epoll fd */
	gw_timer timer;           /* its timeout */
	gw_post run_post;         /* a run after resumes */
	bool run_posted;
	int listen_fd;
	req *sync_head;           /* requests in REQ_SYNC */
};

static const char *const route_names[GW_ROUTE_COUNT] = {
	"patch", "batch", "healthz", "readyz", "metrics", "other"
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Copies at most cap-1 bytes of s[0..n) into out, NUL-terminated. */
static void copy_trunc(char *out, size_t cap, const char *s, size_t n)
{
	if (n >= cap)
		n = cap - 1;
	memcpy(out, s, n);
	out[n] = '\0';
}

/* ==== Responses ==== */

/* Queues resp with status and the request id; takes resp. */
static enum MHD_Result send_resp(req *r, int status, struct MHD_Response *resp,
				 size_t len)
{
	enum MHD_Result ret;

	if (resp == NULL)
		return MHD_NO;
	MHD_add_response_header(resp, "X-Request-Id", r->id);
	ret = MHD_queue_response(r->conn, (unsigned)status, resp);
	MHD_destroy_response(resp);
	if (ret == MHD_YES) {
		r->state = REQ_ANSWERED;
		r->status = status;
		r->bytes_out = len;
		gw_server_trace(r->h->w, r->id, "answer");
	}
	return ret;
}

static struct MHD_Response *resp_new(const void *body, size_t len,
				     const char *ctype)
{
	struct MHD_Response *resp;

	resp = MHD_create_response_from_buffer(len, (void *)(uintptr_t)body,
					       MHD_RESPMEM_MUST_COPY);
	if (resp != NULL && ctype != NULL)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
	return resp;
}

/* A response over heap memory that MHD frees (no copy). */
static struct MHD_Response *resp_take(void *body, size_t len,
				      const char *ctype)
{
	struct MHD_Response *resp;

	resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
	if (resp == NULL) {
		free(body);
		return NULL;
	}
	if (ctype != NULL)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
	return resp;
}

/* A built body (b's memory moves into the response). */
static struct MHD_Response *resp_buf(sw_buf *b, const char *ctype, size_t *len)
{
	*len = b->len;
	return resp_take(b->data, b->len, ctype);
}

/* Answers a refusal: its status and message, the reason counted in the
 * metrics, its extra header; in the device's format (gw_error_body). */
static enum MHD_Result refuse_with(req *r, const gw_refusal *no)
{
	struct MHD_Response *resp = NULL;
	size_t len = 0;
	sw_buf b;

	if (no->reason)
		gw_metrics_reject(no->reason);
	if (no->field[0])
		gw_format(r->error, sizeof(r->error), "%s: %s", no->field,
			  no->message);
	else
		gw_format(r->error, sizeof(r->error), "%s", no->message);
	sw_buf_init(&b, 0, NULL);
	if (gw_error_body(r->head.accept_pb, no->status, no->code, no->message,
			  no->field, &b) == SW_OK)
		resp = resp_buf(&b, r->head.accept_pb ? "application/x-protobuf"
						       : "application/json", &len);
	else
		sw_buf_free(&b);
	if (resp != NULL && no->hname != NULL)
		MHD_add_response_header(resp, no->hname, no->hval);
	return send_resp(r, no->status, resp, len);
}

/* Refuses for a reason of the gateway's own (spool, upstream, drain). */
static enum MHD_Result reject(req *r, int status, const char *reason,
			      const char *code, const char *message,
			      const char *hname, const char *hval)
{
	gw_refusal no;

	memset(&no, 0, sizeof(no));
	no.status = status;
	no.reason = reason;
	no.code = code;
	gw_format(no.message, sizeof(no.message), "%s", message);
	no.hname = hname;
	no.hval = hval;
	return refuse_with(r, &no);
}

static const char *header(struct MHD_Connection *conn, const char *name)
{
	return MHD_lookup_connection_value(conn, MHD_HEADER_KIND, name);
}

/* ==== Upstream answers back to the client ==== */

/* Adds Retry-After (seconds, rounded up) when the upstream gave one. */
static void add_retry_after(struct MHD_Response *resp, long ms)
{
	char v[32];

	if (resp == NULL || ms < 0)
		return;
	snprintf(v, sizeof(v), "%ld", (ms + 999) / 1000);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, v);
}

/* Replies with the upstream's status and its body, translated to protobuf
 * when the client asked for it and it translates losslessly; 502 or 504
 * when no answer came back. */
static enum MHD_Result reply_upstream(req *r, const gw_response *u)
{
	struct MHD_Response *resp = NULL;
	size_t len = 0;
	sw_buf b;

	if (u->status == 0) {
		int st = gw_retry_no_answer_status(u->curl_code);
		char msg[256];

		snprintf(msg, sizeof(msg), "upstream %s: %s",
			 st == 504 ? "timed out" : "unreachable",
			 u->error[0] ? u->error : "no answer");
		return reject(r, st, "upstream",
			      st == 504 ? "upstream_timeout" : "upstream_unreachable",
			      msg, NULL, NULL);
	}
	sw_buf_init(&b, 0, NULL);
	if (r->head.accept_pb && u->body_len > 0 &&
	    gw_answer_pb(u->status, u->body, u->body_len, &b) == 0) {
		resp = resp_buf(&b, "application/x-protobuf", &len);
	} else {
		sw_buf_free(&b);
		resp = resp_new(u->body ? u->body : "", u->body ? u->body_len : 0,
				u->content_type[0] ? u->content_type
						   : "application/json");
		len = u->body_len;
		if (resp != NULL && r->head.accept_pb && u->body_len > 0)
			MHD_add_response_header(resp, "X-Sessionwire-Fallback",
						"json");
	}
	add_retry_after(resp, u->retry_after_ms);
	if (u->status < 200 || u->status >= 300)
		snprintf(r->error, sizeof(r->error), "upstream answered %d",
			 u->status);
	return send_resp(r, u->status, resp, len);
}

/* ==== Spool answers ==== */

/* 202: an Ack with one Result (protobuf) or {"status":"accepted",...};
 * late: the JSON client's wait for the API's answer is over. */
static enum MHD_Result store_accepted(req *r, bool late, bool applied)
{
	struct MHD_Response *resp = NULL;
	size_t len = 0;
	char m[200];

	if (late)
		gw_format(m, sizeof(m), "stored in the %s; the API has not answered yet: the update will be delivered, do not send it again",
			  r->h->w->store->ops->name);
	else
		gw_format(m, sizeof(m), "accepted: stored in the %s, forwarded in order",
			  r->h->w->store->ops->name);

	if (r->head.accept_pb) {
		sw_result res;
		uint8_t *buf;

		memset(&res, 0, sizeof(res));
		res.status = 202;
		res.message.ptr = m;
		res.message.len = strlen(m);
		if (sw_ack_encode(&res, 1, NULL, 0, &len, NULL) != SW_OK &&
		    len == 0)
			return MHD_NO;
		buf = malloc(len ? len : 1);
		if (buf == NULL ||
		    sw_ack_encode(&res, 1, buf, len, &len, NULL) != SW_OK) {
			free(buf);
			return MHD_NO;
		}
		resp = resp_take(buf, len, "application/x-protobuf");
	} else {
		sw_buf b;
		sw_status st;

		sw_buf_init(&b, 0, NULL);
		st = sw_buf_append(&b, "{\"status\":\"accepted\",", 21);
		if (st == SW_OK)
			st = gw_json_put_str(&b, "session_id", r->session);
		if (st == SW_OK)
			st = sw_buf_append(&b, ",", 1);
		if (st == SW_OK)
			st = gw_json_put_str(&b, "message", m);
		if (st == SW_OK)
			st = sw_buf_append(&b, "}", 1);
		if (st != SW_OK) {
			sw_buf_free(&b);
			return MHD_NO;
		}
		resp = resp_buf(&b, "application/json", &len);
	}
	if (resp != NULL && applied)
		MHD_add_response_header(resp, "Preference-Applied",
					"respond-async");
	return send_resp(r, 202, resp, len);
}

/* After a put that did not store: 507 full, 503 not writable. Codes and
 * metrics reasons carry the store's name ("spool_full", "queue_error"). */
static enum MHD_Result store_refused(req *r)
{
	const char *name = r->h->w->store->ops->name;
	char code[32], reason[32];
	bool full = r->store_rc == GW_STORE_FULL;

	snprintf(code, sizeof(code), "%s_%s", name, full ? "full" : "unavailable");
	snprintf(reason, sizeof(reason), "%s_%s", name, full ? "full" : "error");
	return reject(r, full ? 507 : 503, reason, code, r->store_err,
		      MHD_HTTP_HEADER_RETRY_AFTER, full ? "30" : "5");
}

/* ==== Suspension ==== */

static void suspend(req *r, req_state st)
{
	r->state = st;
	MHD_suspend_connection(r->conn);
}

static void http_run(gw_http *h);

static void on_run_post(void *arg)
{
	gw_http *h = arg;

	h->run_posted = false;
	http_run(h);
}

/* The outcome is in: the next handler call answers. The daemon runs
 * again at the end of this pass (several resumes share one run). */
static void ready(req *r, outcome out)
{
	gw_http *h = r->h;

	r->out = out;
	r->state = REQ_READY;
	MHD_resume_connection(r->conn);
	if (!h->run_posted) {
		h->run_posted = true;
		gw_loop_post(h->w->loop, &h->run_post, on_run_post, h);
	}
}

/* ==== One update ==== */

/* With --log-bodies: the request's first canonical body, for its log line. */
static void keep_log_body(req *r, const sw_buf *json)
{
	if (!r->h->w->c->log_bodies || r->log_body != NULL)
		return;
	r->log_body = malloc(json->len + 1);
	if (r->log_body == NULL)
		return;
	memcpy(r->log_body, json->data, json->len + 1);
	r->log_body_len = json->len;
}

/* Direct mode: the upstream's answer is in. */
static void on_forwarded(void *ud, gw_response *resp)
{
	req *r = ud;

	gw_server_trace(r->h->w, r->id, "upstream");
	r->up = *resp;
	r->attempts += resp->attempts;
	ready(r, OUT_UPSTREAM);
}

static bool gw_store_unwait(gw_store *st, gw_waiter *w)
{
	return st->ops->unwait(st, w);
}

static void sync_unlink(req *r)
{
	gw_http *h = r->h;

	if (r->sync_prev)
		r->sync_prev->sync_next = r->sync_next;
	else if (h->sync_head == r)
		h->sync_head = r->sync_next;
	if (r->sync_next)
		r->sync_next->sync_prev = r->sync_prev;
	r->sync_prev = r->sync_next = NULL;
}

/* A JSON client's wait is over: the answer, or 202 when none came. */
static void sync_end(req *r, outcome out)
{
	gw_timer_stop(r->h->w->loop, &r->sync_timer);
	sync_unlink(r);
	ready(r, out);
}

/* The forwarder settled the waiter: the API's final answer. It may come
 * before the commit's own callback (both are posts to this loop). */
static void on_answered(gw_waiter *wt)
{
	req *r = (req *)(void *)((char *)wt - offsetof(req, waiter));

	r->answered = true;
	r->up = wt->resp;
	memset(&wt->resp, 0, sizeof(wt->resp));
	if (r->state == REQ_SYNC)
		sync_end(r, OUT_UPSTREAM);
}

/* The wait is over without an answer: 202, unless one is on its way. */
static void on_sync_timeout(void *ud)
{
	req *r = ud;

	if (gw_store_unwait(r->h->w->store, &r->waiter))
		sync_end(r, OUT_SYNC_LATE);
	/* else on_answered is posted already and ends it */
}

/* Spool mode: the commit is done (or failed). */
static void on_stored(void *arg, int result, const char *err)
{
	req *r = arg;
	gw_http *h = r->h;

	r->store_rc = result;
	if (err != r->store_err)
		snprintf(r->store_err, sizeof(r->store_err), "%s", err);
	if (result != GW_STORE_OK || !r->sync) {
		ready(r, OUT_STORED);
		return;
	}
	r->stored = true;
	if (r->answered) {
		ready(r, OUT_UPSTREAM);
		return;
	}
	r->state = REQ_SYNC;
	r->sync_next = h->sync_head;
	if (r->sync_next)
		r->sync_next->sync_prev = r;
	h->sync_head = r;
	if (h->w->stopping ||
	    gw_timer_start(h->w->loop, &r->sync_timer, h->w->c->sync_wait_ms) != 0)
		on_sync_timeout(r);
}

/* Translates the PATCH and sends it on its way, suspended. */
static enum MHD_Result handle_patch(req *r)
{
	gw_worker *w = r->h->w;
	gw_refusal no;
	gw_store_rec rec;

	sw_buf_init(&r->json, 0, NULL);
	if (gw_req_canonical(w->c, (const uint8_t *)r->body.data, r->body.len,
			     r->head.kind, &r->json, &no) != 0)
		return refuse_with(r, &no);
	gw_metrics_bytes(r->body.len, r->json.len);
	keep_log_body(r, &r->json);
	if (w->store == NULL) {
		suspend(r, REQ_FORWARD);
		if (gw_uplink_patch(w->ul, r->head.upath.data, r->json.data,
				    r->json.len, true, on_forwarded, r) != 0) {
			r->up.status = 0;
			r->up.curl_code = GW_CURL_NOT_STARTED;
			snprintf(r->up.error, sizeof(r->up.error), "out of memory");
			ready(r, OUT_UPSTREAM);
		}
		return MHD_YES;
	}
	memset(&rec, 0, sizeof(rec));
	rec.sid = r->head.sid.data;
	rec.sid_len = r->head.sid.len;
	rec.path = r->head.upath.data;
	rec.json = r->json.data;
	rec.json_len = r->json.len;
	r->sync = r->head.kind == GW_BODY_JSON && !r->head.respond_async &&
		  w->c->sync_wait_ms > 0;
	if (r->sync) {
		r->waiter.loop = w->loop;
		r->waiter.answered = on_answered;
		rec.waiter = &r->waiter;
	}
	suspend(r, REQ_STORE);
	if (w->store->ops->put(w->store, w->loop, &rec, 1, on_stored, r) != 0) {
		r->sync = false;
		gw_format(r->store_err, sizeof(r->store_err),
			  "the %s is closing or out of memory; nothing was stored",
			  w->store->ops->name);
		on_stored(r, GW_STORE_ERROR, r->store_err);
	}
	return MHD_YES;
}

/* ==== POST /v1/updates ==== */

static void on_batch_done(void *ud, gw_batch_run *run)
{
	req *r = ud;

	(void)run;
	ready(r, OUT_BATCH);
}

static enum MHD_Result handle_batch(req *r)
{
	gw_worker *w = r->h->w;
	gw_refusal no;
	gw_batch b;
	size_t k;
	int rc;

	memset(&b, 0, sizeof(b));
	rc = gw_batch_plan(w->c, (const uint8_t *)r->body.data, r->body.len,
			   &b, &no);
	if (rc != 0) {
		gw_batch_free(&b);
		return rc > 0 ? refuse_with(r, &no) : MHD_NO;
	}
	for (k = 0; k < b.n; k++) {
		const gw_batch_item *it = &b.items[k];

		if (it->idx == 0)
			copy_trunc(r->session, sizeof(r->session), it->sid,
				   it->sid_len);
		if (it->status == 0)
			keep_log_body(r, &it->json);
	}
	suspend(r, REQ_BATCH);
	r->batch = gw_batch_start(w, &b, on_batch_done, r);
	if (r->batch == NULL) {
		gw_batch_free(&b);
		MHD_resume_connection(r->conn);
		r->state = REQ_BODY;
		return MHD_NO;
	}
	return MHD_YES;
}

/* The Ack of a finished batch as the 200 answer. */
static enum MHD_Result batch_answer(req *r)
{
	const sw_result *res;
	size_t n, len = 0;
	uint8_t *ack;

	res = gw_batch_results(r->batch, &n);
	r->attempts += gw_batch_attempts(r->batch);
	if (gw_batch_error(r->batch)[0])
		gw_format(r->error, sizeof(r->error), "%s",
			  gw_batch_error(r->batch));
	if (sw_ack_encode(res, n, NULL, 0, &len, NULL) != SW_OK && len == 0)
		ack = NULL;
	else
		ack = malloc(len ? len : 1);
	if (ack == NULL || sw_ack_encode(res, n, ack, len, &len, NULL) != SW_OK) {
		free(ack);
		return reject(r, 500, "other", "internal",
			      "cannot encode the acknowledgement", NULL, NULL);
	}
	return send_resp(r, 200, resp_take(ack, len, "application/x-protobuf"),
			 len);
}

/* ==== Small routes ==== */

static enum MHD_Result handle_get(req *r)
{
	gw_worker *w = r->h->w;
	struct MHD_Response *resp;
	size_t len = 0;
	sw_buf b;

	if (r->head.route == GW_ROUTE_HEALTHZ)
		return send_resp(r, 200, resp_new("ok\n", 3, "text/plain"), 3);
	if (r->head.route == GW_ROUTE_READYZ) {
		if (gw_server_stopping(w->s))
			return reject(r, 503, NULL, "shutting_down",
				      "the gateway is shutting down", NULL, NULL);
		if (w->c->upstream[0] == '\0')
			return reject(r, 503, NULL, "not_ready",
				      "no upstream configured", NULL, NULL);
		if (w->store != NULL && w->store->ops->ready != NULL) {
			char why[300];

			if (!w->store->ops->ready(w->store, why, sizeof(why)))
				return reject(r, 503, NULL, "not_ready", why,
					      NULL, NULL);
		}
		return send_resp(r, 200, resp_new("ready\n", 6, "text/plain"), 6);
	}
	sw_buf_init(&b, 0, NULL);
	if (gw_metrics_render(&b) != SW_OK) {
		sw_buf_free(&b);
		return MHD_NO;
	}
	resp = resp_buf(&b, "text/plain; version=0.0.4", &len);
	return send_resp(r, 200, resp, len);
}

/* ==== Answering a READY request ==== */

static enum MHD_Result answer(req *r)
{
	switch (r->out) {
	case OUT_UPSTREAM:
		return reply_upstream(r, &r->up);
	case OUT_STORED:
		if (r->store_rc != GW_STORE_OK)
			return store_refused(r);
		return store_accepted(r, false, r->head.respond_async &&
					     r->head.kind == GW_BODY_JSON);
	case OUT_SYNC_LATE:
		return store_accepted(r, true, false);
	case OUT_BATCH:
		return batch_answer(r);
	}
	return MHD_NO;
}

/* ==== The first call: headers only ==== */

/* Content-Length headers seen, and whether any differs from the first. */
typedef struct cl_seen {
	const char *first;
	bool differ;
} cl_seen;

static enum MHD_Result cl_each(void *cls, enum MHD_ValueKind kind,
			       const char *key, const char *value)
{
	cl_seen *c = cls;

	(void)kind;
	if (key == NULL || value == NULL ||
	    strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) != 0)
		return MHD_YES;
	if (c->first == NULL)
		c->first = value;
	else if (strcmp(c->first, value) != 0)
		c->differ = true;
	return MHD_YES;
}

/* Checks what can be checked before the body (gw_req_check_head). */
static enum MHD_Result begin(req *r, const char *url, const char *method)
{
	gw_worker *w = r->h->w;
	struct MHD_Connection *conn = r->conn;
	gw_req_head_in in;
	gw_req_env env;
	gw_refusal no;
	cl_seen seen = { NULL, false };
	int rc;

	memset(&in, 0, sizeof(in));
	in.method = method;
	in.url = url;
	in.content_type = header(conn, MHD_HTTP_HEADER_CONTENT_TYPE);
	in.accept = header(conn, MHD_HTTP_HEADER_ACCEPT);
	in.authorization = header(conn, MHD_HTTP_HEADER_AUTHORIZATION);
	in.prefer = header(conn, "Prefer");
	MHD_get_connection_values(conn, MHD_HEADER_KIND, cl_each, &seen);
	in.content_length = seen.first;
	in.content_length_differ = seen.differ;
	env.c = w->c;
	env.tokens = w->tokens;
	env.stopping = gw_server_stopping(w->s);
	env.inflight = gw_server_inflight(w->s, 1);
	r->counted = true;
	gw_metrics_inflight(1);
	rc = gw_req_check_head(&env, &in, &r->head, &no);
	if (r->head.upath.len > 0) /* a valid session id, for the log */
		copy_trunc(r->session, sizeof(r->session), r->head.sid.data,
			   r->head.sid.len);
	if (rc != 0)
		return refuse_with(r, &no);
	sw_buf_init(&r->body, w->c->max_body, NULL);
	return MHD_YES;
}

/* ==== libmicrohttpd callbacks ==== */

/* The body is in: to work (suspended), or answered at once. */
static enum MHD_Result work(req *r)
{
	gw_worker *w = r->h->w;
	conn_ctx *cc = r->cc;

	if (r->state == REQ_DISCARD) {
		char m[128];

		snprintf(m, sizeof(m), "body over the limit of %zu bytes",
			 w->c->max_body);
		return reject(r, 413, NULL, "payload_too_large", m, NULL, NULL);
	}
	/* read in full: the clock stops until the answer is out; a
	 * connection whose clock has just cut it is not worked on (its
	 * device gets no answer and sends the update again) */
	if (cc != NULL) {
		if (cc->cut)
			return MHD_NO;
		gw_timer_stop(w->loop, &cc->clock);
	}
	if (r->head.route == GW_ROUTE_PATCH || r->head.route == GW_ROUTE_BATCH) {
		if (gw_server_stopping(w->s))
			return reject(r, 503, "shutting_down", "shutting_down",
				      "the gateway is shutting down; nothing was forwarded or stored; retry on another instance",
				      MHD_HTTP_HEADER_RETRY_AFTER, "1");
		return r->head.route == GW_ROUTE_PATCH ? handle_patch(r)
							: handle_batch(r);
	}
	return handle_get(r);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn,
				  const char *url, const char *method,
				  const char *version, const char *upload_data,
				  size_t *upload_data_size, void **con_cls)
{
	gw_http *h = cls;
	req *r = *con_cls;
	size_t n;

	(void)version;
	if (r == NULL) {
		const union MHD_ConnectionInfo *ci;

		r = calloc(1, sizeof(*r));
		if (r == NULL)
			return MHD_NO;
		r->h = h;
		r->conn = conn;
		ci = MHD_get_connection_info(conn,
					     MHD_CONNECTION_INFO_SOCKET_CONTEXT);
		r->cc = ci ? ci->socket_context : NULL;
		gw_req_head_init(&r->head);
		gw_timer_init(&r->sync_timer, on_sync_timeout, r);
		r->t0 = now_s();
		gw_server_request_id(h->w->s, r->id, sizeof(r->id));
		h->w->busy++;
		*con_cls = r;
		gw_server_trace(h->w, r->id, "head");
		return begin(r, url, method);
	}
	switch (r->state) {
	case REQ_ANSWERED:
		/* refused early: drop whatever body still comes */
		*upload_data_size = 0;
		return MHD_YES;
	case REQ_READY:
		return answer(r);
	case REQ_FORWARD:
	case REQ_STORE:
	case REQ_SYNC:
	case REQ_BATCH:
		return MHD_YES; /* resumed before its outcome: wait on */
	case REQ_BODY:
	case REQ_DISCARD:
		break;
	}
	n = *upload_data_size;
	if (n == 0)
		return work(r);
	*upload_data_size = 0;
	if (r->state == REQ_DISCARD) {
		/* past the cap nothing is kept; libmicrohttpd takes a response
		 * only once the body has ended, so a body that ends soon gets
		 * its 413 and an endless one is cut */
		r->discarded += n;
		return r->discarded > DISCARD_MAX ? MHD_NO : MHD_YES;
	}
	if (n > h->w->c->max_body - r->body.len) {
		r->state = REQ_DISCARD;
		r->discarded = n;
		gw_metrics_reject("too_big");
		return MHD_YES;
	}
	return sw_buf_append(&r->body, upload_data, n) == SW_OK ? MHD_YES : MHD_NO;
}

static void on_completed(void *cls, struct MHD_Connection *conn,
			 void **con_cls, enum MHD_RequestTerminationCode toe)
{
	gw_http *h = cls;
	gw_worker *w = h->w;
	req *r = *con_cls;
	gw_log_fields f = GW_LOG_FIELDS_INIT;
	const union MHD_ConnectionInfo *ci;
	double dt;

	/* the answer is out: the next request's clock starts */
	ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	if (ci != NULL && ci->socket_context != NULL && w->c->request_timeout_s) {
		conn_ctx *cc = ci->socket_context;

		if (!cc->cut)
			gw_timer_start(w->loop, &cc->clock,
				       (int64_t)w->c->request_timeout_s * 1000);
	}
	if (r == NULL)
		return;
	*con_cls = NULL;
	dt = now_s() - r->t0;
	if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && r->error[0] == '\0')
		snprintf(r->error, sizeof(r->error), "connection ended early (%d)",
			 (int)toe);
	gw_metrics_request(r->head.route, r->status, dt);
	f.request_id = r->id;
	f.route = route_names[r->head.route];
	f.session_id = r->session[0] ? r->session : NULL;
	f.device = r->head.device[0] ? r->head.device : NULL;
	f.status = r->status;
	f.latency_ms = dt * 1000.0;
	f.bytes_in = (long)r->body.len;
	f.bytes_out = (long)r->bytes_out;
	f.attempts = r->attempts ? r->attempts : -1;
	f.error = r->error[0] ? r->error : NULL;
	if (w->c->log_bodies && r->log_body) {
		f.body = r->log_body;
		f.body_len = r->log_body_len;
	}
	gw_log(r->head.route == GW_ROUTE_HEALTHZ ||
		       r->head.route == GW_ROUTE_READYZ ||
		       r->head.route == GW_ROUTE_METRICS
		       ? GW_LOG_DEBUG
		       : (r->status >= 500 || r->status == 0 ? GW_LOG_WARN
							     : GW_LOG_INFO),
	       "request", &f);
	gw_server_trace(w, r->id, "done");
	sw_buf_free(&r->body);
	gw_req_head_free(&r->head);
	sw_buf_free(&r->json);
	gw_response_free(&r->up);
	gw_response_free(&r->waiter.resp);
	gw_batch_run_free(r->batch);
	free(r->log_body);
	if (r->counted) {
		gw_metrics_inflight(-1);
		gw_server_inflight(w->s, -1);
	}
	w->busy--;
	free(r);
}

/* ==== Connections ==== */

/* The clock fired: the request is not in after --request-timeout. */
static void on_clock(void *ud)
{
	conn_ctx *cc = ud;

	cc->cut = true;
	gw_metrics_reject("slow_client");
	shutdown(cc->fd, SHUT_RDWR); /* libmicrohttpd sees it and closes */
}

static void on_connection(void *cls, struct MHD_Connection *conn,
			  void **socket_context,
			  enum MHD_ConnectionNotificationCode code)
{
	gw_http *h = cls;
	gw_worker *w = h->w;
	conn_ctx *cc = *socket_context;

	if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
		if (cc == NULL)
			return;
		gw_timer_stop(w->loop, &cc->clock);
		if (cc->ip_counted)
			gw_server_ip_leave(w->s, cc->ip, cc->ip_len);
		free(cc);
		*socket_context = NULL;
		return;
	}
	if (code != MHD_CONNECTION_NOTIFY_STARTED)
		return;
	cc = calloc(1, sizeof(*cc));
	if (cc == NULL)
		return;
	cc->h = h;
	cc->fd = -1;
	gw_timer_init(&cc->clock, on_clock, cc);
	*socket_context = cc;
	{
		const union MHD_ConnectionInfo *ci;

		ci = MHD_get_connection_info(conn,
					     MHD_CONNECTION_INFO_CONNECTION_FD);
		if (ci != NULL)
			cc->fd = ci->connect_fd;
		ci = MHD_get_connection_info(conn,
					     MHD_CONNECTION_INFO_CLIENT_ADDRESS);
		if (w->c->max_conns_per_ip > 0 && ci != NULL &&
		    ci->client_addr != NULL) {
			const struct sockaddr *sa = ci->client_addr;

			if (sa->sa_family == AF_INET6) {
				cc->ip_len = 16;
				memcpy(cc->ip, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 16);
			} else {
				cc->ip_len = 4;
				memcpy(cc->ip, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
			}
			cc->ip_counted = gw_server_ip_enter(w->s, cc->ip,
							    cc->ip_len);
			if (!cc->ip_counted) {
				/* over the per-IP limit: closed unanswered */
				cc->cut = true;
				if (cc->fd >= 0)
					shutdown(cc->fd, SHUT_RDWR);
				return;
			}
		}
	}
	if (w->c->request_timeout_s > 0 && cc->fd >= 0)
		gw_timer_start(w->loop, &cc->clock,
			       (int64_t)w->c->request_timeout_s * 1000);
}

/* The raw path is kept: session ids are decoded by sw_uri_decode. */
static size_t no_unescape(void *cls, struct MHD_Connection *c, char *s)
{
	(void)cls;
	(void)c;
	return strlen(s);
}

__attribute__((format(printf, 2, 0)))
static void mhd_logger(void *cls, const char *fmt, va_list ap)
{
	char msg[512];
	size_t n;

	(void)cls;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	n = strlen(msg);
	while (n > 0 && msg[n - 1] == '\n')
		msg[--n] = '\0';
	gw_log(GW_LOG_WARN, msg, NULL);
}

/* ==== The daemon on the loop ==== */

/* Runs what libmicrohttpd has to do, then arms its timeout. */
static void http_run(gw_http *h)
{
	MHD_UNSIGNED_LONG_LONG t;

	MHD_run(h->d);
	if (MHD_get_timeout(h->d, &t) == MHD_YES)
		gw_timer_start(h->w->loop, &h->timer,
			       t > 60000 ? 60000 : (int64_t)t);
	else
		gw_timer_stop(h->w->loop, &h->timer);
}

static void on_ready(void *ud, uint32_t events)
{
	(void)events;
	http_run(ud);
}

static void on_timeout(void *ud)
{
	http_run(ud);
}

gw_http *gw_http_start(gw_worker *w, int listen_fd, char *err, size_t errlen)
{
	const gw_config *c = w->c;
	const union MHD_DaemonInfo *info;
	gw_http *h = calloc(1, sizeof(*h));
	unsigned limit, n = c->threads ? c->threads : 1;

	if (h == NULL) {
		close(listen_fd);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	h->w = w;
	h->listen_fd = listen_fd;
	h->io.fd = -1;
	gw_timer_init(&h->timer, on_timeout, h);
	/* the connection cap is shared out between the loops */
	limit = (c->max_concurrent + 64 + n - 1) / n;
	if (limit < 16)
		limit = 16;
	h->d = MHD_start_daemon(
		MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG |
			(strchr(c->listen_host, ':') ? MHD_USE_IPv6 : 0),
		0, NULL, NULL, on_request, h,
		MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, NULL,
		MHD_OPTION_LISTEN_SOCKET, listen_fd,
		MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)c->client_timeout_s,
		MHD_OPTION_CONNECTION_LIMIT, limit,
		MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(24 << 10),
		MHD_OPTION_UNESCAPE_CALLBACK, no_unescape, NULL,
		MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
		MHD_OPTION_NOTIFY_CONNECTION, on_connection, h,
		MHD_OPTION_END);
	if (h->d == NULL) {
		snprintf(err, errlen, "cannot start libmicrohttpd on %s:%u",
			 c->listen_host, c->listen_port);
		close(listen_fd);
		free(h);
		return NULL;
	}
	info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_EPOLL_FD);
	if (info == NULL ||
	    gw_io_start(w->loop, &h->io, info->epoll_fd, EPOLLIN, on_ready, h) != 0) {
		snprintf(err, errlen, "cannot watch libmicrohttpd's epoll fd");
		gw_http_stop(h);
		return NULL;
	}
	return h;
}

void gw_http_quiesce(gw_http *h)
{
	MHD_socket fd;

	if (h == NULL)
		return;
	fd = MHD_quiesce_daemon(h->d);
	if (fd != MHD_INVALID_SOCKET)
		close(fd);
	h->listen_fd = -1;
	/* JSON clients waiting for an answer get their 202 now */
	while (h->sync_head != NULL) {
		req *r = h->sync_head;

		if (gw_store_unwait(h->w->store, &r->waiter)) {
			sync_end(r, OUT_SYNC_LATE);
		} else {
			/* the answer is posted: it ends the wait */
			sync_unlink(r);
		}
	}
	http_run(h);
}

void gw_http_stop(gw_http *h)
{
	if (h == NULL)
		return;
	if (h->io.fd >= 0)
		gw_io_stop(h->w->loop, &h->io);
	gw_timer_stop(h->w->loop, &h->timer);
	MHD_stop_daemon(h->d);
	free(h);
}
