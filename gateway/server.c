/* server.c - the device-facing HTTP server (libmicrohttpd, epoll, a pool of
 * worker threads).
 *
 * Each request gets a context on its first access-handler call, when only
 * the headers are known: route, method, auth, content type and the
 * declared length are checked there, so a refused request costs no body
 * memory. The body is then collected chunk by chunk, the cap checked
 * before each chunk is kept. The last call translates and forwards.
 *
 * A PATCH does not hold its worker thread: the connection is suspended
 * (MHD_suspend_connection), the update handed to gw_upstream_patch_async
 * (one event thread, a curl multi handle), and its done callback resumes
 * the connection; so up to --max-concurrent updates, not --threads, are
 * forwarded at once. A batch is suspended the same way: its items go
 * with gw_upstream_patch_async, each session's one after another in seq
 * order (the next from the previous one's callback), different sessions
 * side by side.
 *
 * Spool mode (gw_server_start_spool): the update is translated the same
 * way, then stored instead of forwarded. A PATCH does not hold its worker
 * thread: the connection is suspended (MHD_suspend_connection), the
 * update queued with gw_spool_put_async, and the writer thread resumes
 * the connection once the commit is done; so every connection, not every
 * thread, can have an update in the same group commit. A batch is
 * queued the same way (gw_spool_put_async, all its items). The answer is
 * 202 (a batch item: Result.status 202) once the spool's transaction has
 * committed, 507 when the spool is full, 503 when it cannot be written.
 * Nothing is acknowledged that is not on disk. A batch's valid items are
 * stored in one transaction, in (session, seq) order.
 *
 * Tokens: the server owns the set given to gw_server_start and every set
 * given to gw_server_set_tokens; it frees a set when it is replaced (under
 * the write lock, so no request still reads it) and at gw_server_stop.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "gw.h"

#define STOP_DRAIN_S 30.0
/* Sessions of one batch forwarded side by side (each one's items in
 * order): bounds the upstream calls a batch makes at once. */
#define BATCH_SESSIONS_AT_ONCE 4
#define LOG_SESSION_MAX 128
/* A body past max_body is read and dropped up to this many bytes (so the
 * client can read its 413), then the connection is cut. */
#define DISCARD_MAX ((size_t)1 << 20)

struct gw_server {
	struct MHD_Daemon *d;
	const gw_config *c;
	gw_upstream *up;
	gw_spool *sp;       /* NULL: direct mode */
	gw_deadline *dl;    /* request read deadlines; NULL: none */
	pthread_rwlock_t tok_lock;
	gw_tokens *tokens;
	atomic_int inflight;
	atomic_int async_out; /* calls at the upstream (PATCHes, batch items) */
	atomic_int suspended; /* connections suspended (see suspend()) */
	atomic_bool stopping;
	atomic_ullong next_id;
	uint16_t port;
};

/* One request, from its headers to its completion. */
typedef struct req {
	gw_server *s;
	char id[24];
	gw_req_head h;      /* route, answer type, body kind, device, ids */
	double t0;
	bool counted;       /* in s->inflight */
	bool responded;     /* a response is queued */
	bool too_big;       /* the body went past max_body */
	size_t discarded;   /* bytes dropped after that */
	sw_buf body;        /* at most max_body bytes */
	int status;         /* for the log and the metrics */
	size_t bytes_out;
	int attempts;
	char session[LOG_SESSION_MAX];
	char error[256];
	char *log_body;     /* canonical JSON, only with --log-bodies */
	size_t log_body_len;
	/* spool mode, PATCH: suspended until the commit */
	struct MHD_Connection *conn;
	bool spool_wait;
	atomic_bool spool_done;
	int spool_rc;
	char spool_err[200];
	sw_buf spool_json;  /* also the direct-mode PATCH's JSON upstream */
	/* direct mode, PATCH: suspended until the upstream answered */
	bool up_wait;
	atomic_bool up_done;
	int up_ret;         /* 0: an answer came back; 400/502/504 */
	gw_response up_resp;
	/* a batch: suspended until every item has its Result */
	struct batch_run *batch;
	bool batch_wait;
	atomic_bool batch_done;
} req;

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
static enum MHD_Result send_resp(req *r, struct MHD_Connection *conn,
				 int status, struct MHD_Response *resp,
				 size_t len)
{
	enum MHD_Result ret;

	if (resp == NULL)
		return MHD_NO;
	MHD_add_response_header(resp, "X-Request-Id", r->id);
	ret = MHD_queue_response(conn, (unsigned)status, resp);
	MHD_destroy_response(resp);
	if (ret == MHD_YES) {
		r->responded = true;
		r->status = status;
		r->bytes_out = len;
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

/* An error answer in the device's format (gw_error_body), or NULL. */
static struct MHD_Response *error_resp(const req *r, int status,
				       const char *code, const char *message,
				       const char *field, size_t *len)
{
	sw_buf b;

	sw_buf_init(&b, 0, NULL);
	if (gw_error_body(r->h.accept_pb, status, code, message, field, &b) !=
	    SW_OK) {
		sw_buf_free(&b);
		return NULL;
	}
	*len = b.len;
	return resp_take(b.data, b.len, r->h.accept_pb ? "application/x-protobuf"
							: "application/json");
}

/* Answers a refusal: its status and message, the reason counted in the
 * metrics, its extra header. */
static enum MHD_Result refuse_with(req *r, struct MHD_Connection *conn,
				   const gw_refusal *no)
{
	struct MHD_Response *resp;
	size_t len = 0;

	if (no->reason)
		gw_metrics_reject(no->reason);
	if (no->field[0])
		gw_format(r->error, sizeof(r->error), "%s: %s", no->field,
			  no->message);
	else
		gw_format(r->error, sizeof(r->error), "%s", no->message);
	resp = error_resp(r, no->status, no->code, no->message, no->field, &len);
	if (resp != NULL && no->hname != NULL)
		MHD_add_response_header(resp, no->hname, no->hval);
	return send_resp(r, conn, no->status, resp, len);
}

/* Refuses for a reason of the server's own (spool, upstream, drain). */
static enum MHD_Result reject(req *r, struct MHD_Connection *conn, int status,
			      const char *reason, const char *code,
			      const char *message, const char *hname,
			      const char *hval)
{
	gw_refusal no;

	memset(&no, 0, sizeof(no));
	no.status = status;
	no.reason = reason;
	no.code = code;
	gw_format(no.message, sizeof(no.message), "%s", message);
	no.hname = hname;
	no.hval = hval;
	return refuse_with(r, conn, &no);
}

static const char *header(struct MHD_Connection *conn, const char *name)
{
	return MHD_lookup_connection_value(conn, MHD_HEADER_KIND, name);
}

/* ==== Upstream answers back to the device ==== */

static bool timed_out(const char *e)
{
	return strstr(e, "imeout") != NULL || strstr(e, "timed out") != NULL;
}

/* Adds Retry-After (seconds, rounded up) when the upstream gave one. */
static void add_retry_after(struct MHD_Response *resp, long ms)
{
	char v[32];

	if (resp == NULL || ms < 0)
		return;
	snprintf(v, sizeof(v), "%ld", (ms + 999) / 1000);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, v);
}

/* The upstream body as it came, with its content type. */
static struct MHD_Response *passthrough(const gw_response *u, bool fallback)
{
	struct MHD_Response *resp;

	resp = resp_new(u->body ? u->body : "", u->body ? u->body_len : 0,
			u->content_type[0] ? u->content_type : "application/json");
	if (resp != NULL && fallback)
		MHD_add_response_header(resp, "X-Sessionwire-Fallback", "json");
	return resp;
}

/* The upstream's answer as protobuf (gw_answer_pb), or NULL when it does
 * not translate. */
static struct MHD_Response *answer_pb(const gw_response *u, size_t *len)
{
	sw_buf b;

	sw_buf_init(&b, 0, NULL);
	if (gw_answer_pb(u->status, u->body, u->body_len, &b) != 0) {
		sw_buf_free(&b);
		return NULL;
	}
	*len = b.len;
	return resp_take(b.data, b.len, "application/x-protobuf");
}

/* Replies with the upstream's status and its body, translated to protobuf
 * when the device asked for it and it translates losslessly. */
static enum MHD_Result reply_upstream(req *r, struct MHD_Connection *conn,
				      const gw_response *u)
{
	struct MHD_Response *resp = NULL;
	size_t len = 0;

	if (r->h.accept_pb && u->body_len > 0) {
		resp = answer_pb(u, &len);
		if (resp == NULL) {
			resp = passthrough(u, true);
			len = u->body_len;
		}
	} else {
		resp = passthrough(u, false);
		len = u->body_len;
	}
	add_retry_after(resp, u->retry_after_ms);
	if (u->status < 200 || u->status >= 300)
		snprintf(r->error, sizeof(r->error), "upstream answered %d",
			 u->status);
	return send_resp(r, conn, u->status, resp, len);
}

/* ==== One update ==== */

/* With --log-bodies: the request's first canonical body, for its log line. */
static void keep_log_body(req *r, const sw_buf *json)
{
	if (!r->s->c->log_bodies || r->log_body != NULL)
		return;
	r->log_body = malloc(json->len + 1);
	if (r->log_body == NULL)
		return;
	memcpy(r->log_body, json->data, json->len + 1);
	r->log_body_len = json->len;
}

/* The canonical JSON of one update body into json (the caller's,
 * initialised): 0, or 400 with *no filled. Counts the bytes; keeps the
 * first canonical body for the log line with --log-bodies. */
static int canonical(req *r, const uint8_t *body, size_t len,
		     gw_body_kind kind, sw_buf *json, gw_refusal *no)
{
	if (gw_req_canonical(r->s->c, body, len, kind, json, no) != 0)
		return 400;
	gw_metrics_bytes(len, json->len);
	keep_log_body(r, json);
	return 0;
}

/* ==== Suspension ====
 * A request whose update is away (at the upstream, in the spool's queue)
 * has its connection suspended, so no worker thread waits. Every one is
 * counted: gw_server_stop waits until none is left (libmicrohttpd aborts
 * when stopped with a suspended connection), and once the gateway is
 * stopping no new one is suspended. */

/* Suspends conn; false (nothing suspended) when the gateway is stopping. */
static bool suspend(req *r, struct MHD_Connection *conn)
{
	gw_server *s = r->s;

	atomic_fetch_add(&s->suspended, 1);
	if (atomic_load(&s->stopping)) {
		atomic_fetch_sub(&s->suspended, 1);
		return false;
	}
	r->conn = conn;
	MHD_suspend_connection(conn);
	return true;
}

/* Resumes conn, from any thread. The request may complete at once:
 * nothing of it may be touched after this. */
static void resume(gw_server *s, struct MHD_Connection *conn)
{
	MHD_resume_connection(conn);
	atomic_fetch_sub(&s->suspended, 1);
}

/* The answer when a request would be suspended while stopping. */
static enum MHD_Result refuse_stopping(req *r, struct MHD_Connection *conn)
{
	return reject(r, conn, 503, "shutting_down", "shutting_down",
		      "the gateway is shutting down; nothing was forwarded or stored; retry on another instance",
		      MHD_HTTP_HEADER_RETRY_AFTER, "1");
}

/* ==== Spool mode ==== */

/* Refuses after gw_spool_put did not store: 507 full, 503 not writable. */
static enum MHD_Result spool_refused(req *r, struct MHD_Connection *conn,
				     int rc, const char *err)
{
	if (rc == GW_SPOOL_FULL)
		return reject(r, conn, 507, "spool_full", "spool_full", err,
			      MHD_HTTP_HEADER_RETRY_AFTER, "30");
	return reject(r, conn, 503, "spool_error", "spool_unavailable", err,
		      MHD_HTTP_HEADER_RETRY_AFTER, "5");
}

/* The 202 of a spooled PATCH: an Ack with one Result (protobuf) or
 * {"status":"accepted",...}. */
static enum MHD_Result spool_accepted(req *r, struct MHD_Connection *conn)
{
	static const char m[] = "accepted: stored in the spool, forwarded in order";
	size_t len = 0;

	if (r->h.accept_pb) {
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
		return send_resp(r, conn, 202,
				 resp_take(buf, len, "application/x-protobuf"),
				 len);
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
		len = b.len;
		return send_resp(r, conn, 202,
				 resp_take(b.data, b.len, "application/json"),
				 len);
	}
}

/* The writer thread: the PATCH's commit is done (or failed). */
static void on_spooled(void *arg, int result, const char *err)
{
	req *r = arg;

	r->spool_rc = result;
	snprintf(r->spool_err, sizeof(r->spool_err), "%s", err);
	atomic_store(&r->spool_done, true);
	resume(r->s, r->conn);
}

/* Translates, queues and suspends; spool_patch_done answers. */
static enum MHD_Result spool_patch(req *r, struct MHD_Connection *conn)
{
	gw_refusal no;
	gw_spool_rec rec;

	sw_buf_init(&r->spool_json, 0, NULL);
	if (canonical(r, (const uint8_t *)r->body.data, r->body.len, r->h.kind,
		      &r->spool_json, &no) != 0)
		return refuse_with(r, conn, &no);
	memset(&rec, 0, sizeof(rec));
	rec.sid = r->h.sid.data;
	rec.sid_len = r->h.sid.len;
	rec.path = r->h.upath.data;
	rec.json = r->spool_json.data;
	rec.json_len = r->spool_json.len;
	/* suspended first: the writer may resume it at once */
	if (!suspend(r, conn))
		return refuse_stopping(r, conn);
	r->spool_wait = true;
	if (gw_spool_put_async(r->s->sp, &rec, 1, on_spooled, r) != 0)
		on_spooled(r, GW_SPOOL_ERROR,
			   "the spool is closing or out of memory; nothing was stored");
	return MHD_YES;
}

/* After the resume: 202, or 507/503 when nothing was stored. */
static enum MHD_Result spool_patch_done(req *r, struct MHD_Connection *conn)
{
	if (!atomic_load(&r->spool_done))
		return MHD_YES;
	r->spool_wait = false;
	if (r->spool_rc != GW_SPOOL_OK)
		return spool_refused(r, conn, r->spool_rc, r->spool_err);
	return spool_accepted(r, conn);
}

/* ==== PATCH /v2/traces/sessions/{id} ==== */

/* The upstream's event thread: the PATCH's answer is in. Nothing may
 * touch r after the resume (the request may complete at once). */
static void on_forwarded(void *ud, gw_response *resp)
{
	req *r = ud;
	gw_server *s = r->s;

	r->up_resp = *resp;
	r->up_ret = resp->status != 0 ? 0 : (timed_out(resp->error) ? 504 : 502);
	atomic_store(&r->up_done, true);
	resume(s, r->conn);
	atomic_fetch_sub(&s->async_out, 1);
}

/* Translates, hands the update to the upstream's event thread, suspends;
 * patch_done answers. */
static enum MHD_Result direct_patch(req *r, struct MHD_Connection *conn)
{
	gw_server *s = r->s;
	gw_refusal no;

	sw_buf_init(&r->spool_json, 0, NULL);
	if (canonical(r, (const uint8_t *)r->body.data, r->body.len, r->h.kind,
		      &r->spool_json, &no) != 0)
		return refuse_with(r, conn, &no);
	/* suspended first: the event thread may resume it at once */
	if (!suspend(r, conn))
		return refuse_stopping(r, conn);
	r->up_wait = true;
	atomic_fetch_add(&s->async_out, 1);
	if (gw_upstream_patch_async(s->up, r->h.upath.data, r->spool_json.data,
				    r->spool_json.len, on_forwarded, r) != 0) {
		memset(&r->up_resp, 0, sizeof(r->up_resp));
		r->up_resp.retry_after_ms = -1;
		snprintf(r->up_resp.error, sizeof(r->up_resp.error),
			 "the gateway is stopping or out of memory");
		r->up_ret = 502;
		atomic_store(&r->up_done, true);
		resume(s, conn);
		atomic_fetch_sub(&s->async_out, 1);
	}
	return MHD_YES;
}

/* After the resume: the upstream's answer, or 502/504 when none came. */
static enum MHD_Result patch_done(req *r, struct MHD_Connection *conn)
{
	gw_response *u = &r->up_resp;
	char msg[256];

	if (!atomic_load(&r->up_done))
		return MHD_YES;
	r->up_wait = false;
	r->attempts += u->attempts;
	if (r->up_ret == 0)
		return reply_upstream(r, conn, u);
	snprintf(msg, sizeof(msg), "upstream %s: %s",
		 r->up_ret == 504 ? "timed out" : "unreachable",
		 u->error[0] ? u->error : "no answer");
	return reject(r, conn, r->up_ret, "upstream",
		      r->up_ret == 504 ? "upstream_timeout"
				       : "upstream_unreachable",
		      msg, NULL, NULL);
}

static enum MHD_Result handle_patch(req *r, struct MHD_Connection *conn)
{
	if (r->s->sp != NULL)
		return spool_patch(r, conn);
	return direct_patch(r, conn);
}

/* ==== POST /v1/updates ==== */

/* Upstream answers after which a device must resend (and later updates
 * of the same session must wait). */
static bool must_resend(int status)
{
	return status == 0 || status == 429 || status >= 500;
}

static bool same_session(const gw_batch_item *a, const gw_batch_item *b)
{
	return a->sid_len == b->sid_len && memcmp(a->sid, b->sid, a->sid_len) == 0;
}

/* A batch on its way: its plan, one Result per item, and its sessions
 * as chains. In direct mode each chain sends its items one after another
 * with gw_upstream_patch_async (the next from the previous one's
 * callback), up to BATCH_SESSIONS_AT_ONCE chains side by side; in spool
 * mode all valid items go in one gw_spool_put_async. The connection stays
 * suspended, no worker thread waits; the last chain to finish resumes it
 * and batch_finish answers. */
typedef struct batch_chain {
	struct batch_run *run;
	size_t at, end;      /* items [at, end) of b: one session, seq order */
} batch_chain;

typedef struct batch_run {
	req *r;
	gw_batch b;
	sw_result *res;      /* in the batch's order */
	batch_chain *chains;
	size_t n_chains;
	atomic_size_t next_chain; /* the next chain to start */
	atomic_size_t open;  /* chains not finished (+1 while starting) */
	/* spool mode */
	gw_spool_rec *recs;
	size_t *rec_item, n_recs;
	int spool_rc;
	char spool_err[200];
} batch_run;

static void batch_run_free(batch_run *run)
{
	if (run == NULL)
		return;
	gw_batch_free(&run->b);
	free(run->res);
	free(run->chains);
	free(run->recs);
	free(run->rec_item);
	free(run);
}

/* One chain or the spool's commit is over; the last resumes the
 * connection. Nothing may touch run after that. */
static void batch_part_done(batch_run *run)
{
	req *r = run->r;

	if (atomic_fetch_sub(&run->open, 1) != 1)
		return;
	atomic_store(&r->batch_done, true);
	resume(r->s, r->conn);
}

/* The chain's items from at on are not sent: an earlier one must be
 * resent first (status 0). */
static void chain_skip_rest(batch_chain *ch)
{
	for (; ch->at < ch->end; ch->at++)
		gw_format(ch->run->b.items[ch->at].msg,
			  sizeof(ch->run->b.items[ch->at].msg), "%s",
			  "not sent: an earlier update of this session failed; resend both");
}

static void on_item_forwarded(void *ud, gw_response *resp);
static void chain_next(batch_chain *ch);

/* A chain is over: the batch's next chain starts (at most
 * BATCH_SESSIONS_AT_ONCE run at once), then this one counts as done. */
static void chain_done(batch_run *run)
{
	size_t k = atomic_fetch_add(&run->next_chain, 1);

	if (k < run->n_chains)
		chain_next(&run->chains[k]);
	batch_part_done(run);
}
static enum MHD_Result batch_finish(req *r, struct MHD_Connection *conn);

/* Sends the chain's next valid item (its invalid ones get 400 on the
 * way), or finishes the chain. */
static void chain_next(batch_chain *ch)
{
	batch_run *run = ch->run;
	gw_server *s = run->r->s;

	for (; ch->at < ch->end; ch->at++) {
		gw_batch_item *it = &run->b.items[ch->at];
		sw_result *rs = &run->res[it->idx];

		if (it->status != 0) {
			gw_metrics_reject("invalid_body");
			rs->status = (uint32_t)it->status;
			continue;
		}
		if (atomic_load(&s->stopping)) {
			/* what is at the upstream finishes; nothing new starts,
			 * so a stop waits one call, not the whole batch */
			for (; ch->at < ch->end; ch->at++)
				gw_format(run->b.items[ch->at].msg,
					  sizeof(run->b.items[ch->at].msg), "%s",
					  "not sent: the gateway is shutting down; resend it");
			break;
		}
		gw_metrics_bytes(it->update_len, it->json.len);
		atomic_fetch_add(&s->async_out, 1);
		if (gw_upstream_patch_async(s->up, it->path.data, it->json.data,
					    it->json.len, on_item_forwarded,
					    ch) == 0)
			return; /* on_item_forwarded goes on */
		atomic_fetch_sub(&s->async_out, 1);
		rs->status = 502;
		gw_format(it->msg, sizeof(it->msg), "%s",
			  "upstream unreachable: the gateway is stopping or out of memory");
		ch->at++;
		chain_skip_rest(ch);
	}
	chain_done(run);
}

/* The upstream's event thread: one item's answer. Fills its Result, then
 * sends the chain's next item unless this one must be resent. */
static void on_item_forwarded(void *ud, gw_response *u)
{
	batch_chain *ch = ud;
	batch_run *run = ch->run;
	gw_server *s = run->r->s;
	gw_batch_item *it = &run->b.items[ch->at];
	sw_result *rs = &run->res[it->idx];
	int hs = u->status;

	if (hs == 0) {
		hs = timed_out(u->error) ? 504 : 502;
		gw_format(it->msg, sizeof(it->msg), "upstream %s: %s",
			  hs == 504 ? "timed out" : "unreachable",
			  u->error[0] ? u->error : "no answer");
	} else if (hs < 200 || hs >= 300) {
		gw_format(it->msg, sizeof(it->msg), "%s", u->body ? u->body : "");
	}
	if (u->retry_after_ms >= 0) {
		rs->has_retry_after = true;
		rs->retry_after_ms = u->retry_after_ms > UINT32_MAX
			? UINT32_MAX : (uint32_t)u->retry_after_ms;
	}
	rs->status = (uint32_t)hs;
	run->r->attempts += u->attempts; /* only this thread writes it now */
	gw_response_free(u);
	ch->at++;
	if (must_resend(hs)) {
		chain_skip_rest(ch);
		chain_done(run);
	} else {
		chain_next(ch);
	}
	atomic_fetch_sub(&s->async_out, 1);
}

/* Direct mode: one chain per session, the first BATCH_SESSIONS_AT_ONCE
 * started (each finished chain starts the next); suspends. */
static enum MHD_Result batch_forward_start(req *r, struct MHD_Connection *conn,
					   batch_run *run)
{
	size_t k, n = 0;

	for (k = 0; k < run->b.n; k++)
		if (k == 0 || !same_session(&run->b.items[k - 1], &run->b.items[k]))
			n++;
	run->chains = calloc(n ? n : 1, sizeof(*run->chains));
	if (run->chains == NULL)
		return MHD_NO;
	for (k = 0; k < run->b.n; k++) {
		if (k == 0 || !same_session(&run->b.items[k - 1], &run->b.items[k])) {
			run->chains[run->n_chains].run = run;
			run->chains[run->n_chains++].at = k;
		}
		run->chains[run->n_chains - 1].end = k + 1;
	}
	/* suspended first: the event thread may finish at once */
	if (!suspend(r, conn))
		return refuse_stopping(r, conn);
	r->batch_wait = true;
	atomic_store(&run->open, run->n_chains + 1);
	n = run->n_chains < BATCH_SESSIONS_AT_ONCE ? run->n_chains
						   : BATCH_SESSIONS_AT_ONCE;
	atomic_store(&run->next_chain, n);
	for (k = 0; k < n; k++)
		chain_next(&run->chains[k]);
	batch_part_done(run);
	return MHD_YES;
}

/* The spool's writer: the batch's transaction committed or failed. */
static void on_batch_spooled(void *arg, int result, const char *err)
{
	batch_run *run = arg;

	run->spool_rc = result;
	snprintf(run->spool_err, sizeof(run->spool_err), "%s", err);
	batch_part_done(run);
}

/* Spool mode: every valid item in one transaction; suspends. */
static enum MHD_Result batch_spool_start(req *r, struct MHD_Connection *conn,
					 batch_run *run)
{
	size_t k, n = run->b.n ? run->b.n : 1;

	run->recs = calloc(n, sizeof(*run->recs));
	run->rec_item = calloc(n, sizeof(*run->rec_item));
	if (run->recs == NULL || run->rec_item == NULL)
		return MHD_NO;
	for (k = 0; k < run->b.n; k++) {
		gw_batch_item *it = &run->b.items[k];
		gw_spool_rec *rec = &run->recs[run->n_recs];

		if (it->status != 0) {
			gw_metrics_reject("invalid_body");
			run->res[it->idx].status = (uint32_t)it->status;
			continue;
		}
		gw_metrics_bytes(it->update_len, it->json.len);
		rec->sid = it->sid;
		rec->sid_len = it->sid_len;
		rec->seq = it->seq;
		rec->path = it->path.data;
		rec->json = it->json.data;
		rec->json_len = it->json.len;
		run->rec_item[run->n_recs++] = k;
	}
	atomic_store(&run->open, 1);
	if (run->n_recs == 0) {
		atomic_store(&r->batch_done, true);
		return batch_finish(r, conn); /* nothing to store */
	}
	if (!suspend(r, conn))
		return refuse_stopping(r, conn);
	r->batch_wait = true;
	if (gw_spool_put_async(r->s->sp, run->recs, run->n_recs,
			       on_batch_spooled, run) != 0)
		on_batch_spooled(run, GW_SPOOL_ERROR,
				 "the spool is closing or out of memory; nothing was stored");
	return MHD_YES;
}

/* Spool mode, after the commit: the stored items' Results, 202 or
 * 507/503 for all of them. */
static void batch_spool_results(req *r, batch_run *run)
{
	int rc = run->spool_rc;
	size_t k;

	if (run->n_recs > 0 && rc != GW_SPOOL_OK) {
		gw_metrics_reject(rc == GW_SPOOL_FULL ? "spool_full" : "spool_error");
		gw_format(r->error, sizeof(r->error), "%s", run->spool_err);
	}
	for (k = 0; k < run->n_recs; k++) {
		gw_batch_item *it = &run->b.items[run->rec_item[k]];
		sw_result *rs = &run->res[it->idx];

		if (rc == GW_SPOOL_OK) {
			rs->status = 202;
			gw_format(it->msg, sizeof(it->msg), "accepted");
			continue;
		}
		rs->status = rc == GW_SPOOL_FULL ? 507 : 503;
		rs->has_retry_after = true;
		rs->retry_after_ms = rc == GW_SPOOL_FULL ? 30000 : 5000;
		gw_format(it->msg, sizeof(it->msg), "%s", run->spool_err);
	}
}

/* The Ack of res[0..n) as the 200 answer. */
static enum MHD_Result batch_ack(req *r, struct MHD_Connection *conn,
				 const sw_result *res, size_t n)
{
	size_t len = 0;
	uint8_t *ack;

	if (sw_ack_encode(res, n, NULL, 0, &len, NULL) != SW_OK && len == 0)
		ack = NULL;
	else
		ack = malloc(len ? len : 1);
	if (ack == NULL || sw_ack_encode(res, n, ack, len, &len, NULL) != SW_OK) {
		free(ack);
		return reject(r, conn, 500, "other", "internal",
			      "cannot encode the acknowledgement", NULL, NULL);
	}
	return send_resp(r, conn, 200,
			 resp_take(ack, len, "application/x-protobuf"), len);
}


/* Decodes and translates the batch (gw_batch_plan), then forwards or
 * stores its items in (session, seq) order without holding the thread;
 * batch_finish answers one Result per item in the batch's order. An item
 * after one that must be resent, of the same session, is not sent
 * (status 0). */
static enum MHD_Result handle_batch(req *r, struct MHD_Connection *conn)
{
	gw_server *s = r->s;
	gw_refusal no;
	batch_run *run;
	size_t k;
	int rc;

	run = calloc(1, sizeof(*run));
	if (run == NULL)
		return MHD_NO;
	run->r = r;
	r->batch = run; /* freed in on_completed */
	rc = gw_batch_plan(s->c, (const uint8_t *)r->body.data, r->body.len,
			   &run->b, &no);
	if (rc != 0)
		return rc > 0 ? refuse_with(r, conn, &no) : MHD_NO;
	run->res = calloc(run->b.n ? run->b.n : 1, sizeof(*run->res));
	if (run->res == NULL)
		return MHD_NO;
	for (k = 0; k < run->b.n; k++) {
		const gw_batch_item *it = &run->b.items[k];

		run->res[it->idx].seq = it->seq;
		if (it->idx == 0)
			copy_trunc(r->session, sizeof(r->session), it->sid,
				   it->sid_len);
		if (it->status == 0)
			keep_log_body(r, &it->json);
	}
	if (s->sp != NULL)
		return batch_spool_start(r, conn, run);
	return batch_forward_start(r, conn, run);
}

/* After the resume: the Ack. */
static enum MHD_Result batch_finish(req *r, struct MHD_Connection *conn)
{
	batch_run *run = r->batch;
	size_t k;

	if (!atomic_load(&r->batch_done))
		return MHD_YES;
	r->batch_wait = false;
	if (r->s->sp != NULL)
		batch_spool_results(r, run);
	for (k = 0; k < run->b.n; k++) {
		sw_result *rs = &run->res[run->b.items[k].idx];

		rs->message.ptr = run->b.items[k].msg;
		rs->message.len = strlen(run->b.items[k].msg);
	}
	return batch_ack(r, conn, run->res, run->b.n);
}

/* ==== Small routes ==== */

static enum MHD_Result handle_get(req *r, struct MHD_Connection *conn)
{
	gw_server *s = r->s;
	sw_buf b;

	if (r->h.route == GW_ROUTE_HEALTHZ)
		return send_resp(r, conn, 200, resp_new("ok\n", 3, "text/plain"), 3);
	if (r->h.route == GW_ROUTE_READYZ) {
		if (atomic_load(&s->stopping))
			return reject(r, conn, 503, NULL, "shutting_down",
				      "the gateway is shutting down", NULL, NULL);
		if (s->up == NULL || s->c->upstream[0] == '\0')
			return reject(r, conn, 503, NULL, "not_ready",
				      "no upstream configured", NULL, NULL);
		return send_resp(r, conn, 200, resp_new("ready\n", 6, "text/plain"), 6);
	}
	sw_buf_init(&b, 0, NULL);
	if (gw_metrics_render(&b) != SW_OK) {
		sw_buf_free(&b);
		return MHD_NO;
	}
	return send_resp(r, conn, 200,
			 resp_take(b.data, b.len, "text/plain; version=0.0.4"),
			 b.len);
}

/* ==== The first call: headers only ==== */

/* Content-Length headers seen, and whether any differs from the first. */
typedef struct cl_seen {
	const char *first;
	bool differ;
} cl_seen;

/* Header iterator: notes each Content-Length value into a cl_seen. */
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

/* Checks what can be checked before the body (gw_req_check_head).
 * Returns MHD_YES to go on reading the body, or the result of queueing a
 * refusal. */
static enum MHD_Result begin(req *r, struct MHD_Connection *conn,
			     const char *url, const char *method)
{
	gw_server *s = r->s;
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
	MHD_get_connection_values(conn, MHD_HEADER_KIND, cl_each, &seen);
	in.content_length = seen.first;
	in.content_length_differ = seen.differ;
	env.c = s->c;
	env.stopping = atomic_load(&s->stopping);
	env.inflight = atomic_load(&s->inflight);
	pthread_rwlock_rdlock(&s->tok_lock);
	env.tokens = s->tokens;
	rc = gw_req_check_head(&env, &in, &r->h, &no);
	pthread_rwlock_unlock(&s->tok_lock);
	if (r->h.upath.len > 0) /* a valid session id, for the log */
		copy_trunc(r->session, sizeof(r->session), r->h.sid.data,
			   r->h.sid.len);
	if (rc != 0)
		return refuse_with(r, conn, &no);
	sw_buf_init(&r->body, s->c->max_body, NULL);
	return MHD_YES;
}

/* ==== libmicrohttpd callbacks ==== */

/* The connection's read-deadline clock (on_connection made it). */
static gw_conn_clock *conn_clock(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *ci;

	ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	return ci ? ci->socket_context : NULL;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn,
				  const char *url, const char *method,
				  const char *version, const char *upload_data,
				  size_t *upload_data_size, void **con_cls)
{
	gw_server *s = cls;
	req *r = *con_cls;
	size_t n;

	(void)version;
	if (r == NULL) {
		r = calloc(1, sizeof(*r));
		if (r == NULL)
			return MHD_NO;
		r->s = s;
		gw_req_head_init(&r->h);
		r->t0 = now_s();
		r->status = 0;
		snprintf(r->id, sizeof(r->id), "%llu",
			 (unsigned long long)atomic_fetch_add(&s->next_id, 1) + 1);
		atomic_fetch_add(&s->inflight, 1);
		gw_metrics_inflight(1);
		r->counted = true;
		*con_cls = r;
		return begin(r, conn, url, method);
	}
	if (r->responded) {
		/* refused early: drop whatever body still comes */
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (r->spool_wait)
		return spool_patch_done(r, conn);
	if (r->up_wait)
		return patch_done(r, conn);
	if (r->batch_wait)
		return batch_finish(r, conn);
	n = *upload_data_size;
	if (n > 0) {
		*upload_data_size = 0;
		if (r->too_big) {
			/* past the cap nothing is kept; libmicrohttpd takes a
			 * response only once the body has ended, so a body that
			 * ends soon gets its 413 and an endless one is cut */
			r->discarded += n;
			return r->discarded > DISCARD_MAX ? MHD_NO : MHD_YES;
		}
		if (n > s->c->max_body - r->body.len) {
			r->too_big = true;
			r->discarded = n;
			gw_metrics_reject("too_big");
			return MHD_YES;
		}
		if (sw_buf_append(&r->body, upload_data, n) != SW_OK)
			return MHD_NO;
		return MHD_YES;
	}
	if (r->too_big) {
		char m[128];

		snprintf(m, sizeof(m), "body over the limit of %zu bytes",
			 s->c->max_body);
		return reject(r, conn, 413, NULL, "payload_too_large", m, NULL,
			      NULL);
	}
	/* read in full: the read deadline stops until the answer is out;
	 * a connection the sweeper has just cut is not worked on (its
	 * device gets no answer and sends the update again) */
	if (!gw_deadline_busy(s->dl, conn_clock(conn), true))
		return MHD_NO;
	if (r->h.route == GW_ROUTE_PATCH)
		return handle_patch(r, conn);
	if (r->h.route == GW_ROUTE_BATCH)
		return handle_batch(r, conn);
	return handle_get(r, conn);
}

static void on_completed(void *cls, struct MHD_Connection *conn,
			 void **con_cls, enum MHD_RequestTerminationCode toe)
{
	gw_server *s = cls;
	req *r = *con_cls;
	gw_log_fields f = GW_LOG_FIELDS_INIT;
	double dt;

	/* the answer is out: the next request's clock starts (NULL once the
	 * connection is closed: on_connection clears it) */
	gw_deadline_busy(s->dl, conn_clock(conn), false);
	if (r == NULL)
		return;
	*con_cls = NULL;
	dt = now_s() - r->t0;
	if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && r->error[0] == '\0')
		snprintf(r->error, sizeof(r->error), "connection ended early (%d)",
			 (int)toe);
	gw_metrics_request(r->h.route, r->status, dt);
	f.request_id = r->id;
	f.route = route_names[r->h.route];
	f.session_id = r->session[0] ? r->session : NULL;
	f.device = r->h.device[0] ? r->h.device : NULL;
	f.status = r->status;
	f.latency_ms = dt * 1000.0;
	f.bytes_in = (long)r->body.len;
	f.bytes_out = (long)r->bytes_out;
	f.attempts = r->attempts ? r->attempts : -1;
	f.error = r->error[0] ? r->error : NULL;
	if (s->c->log_bodies && r->log_body) {
		f.body = r->log_body;
		f.body_len = r->log_body_len;
	}
	gw_log(r->h.route == GW_ROUTE_HEALTHZ || r->h.route == GW_ROUTE_READYZ ||
		       r->h.route == GW_ROUTE_METRICS
		       ? GW_LOG_DEBUG
		       : (r->status >= 500 || r->status == 0 ? GW_LOG_WARN
							     : GW_LOG_INFO),
	       "request", &f);
	sw_buf_free(&r->body);
	gw_req_head_free(&r->h);
	sw_buf_free(&r->spool_json);
	gw_response_free(&r->up_resp);
	batch_run_free(r->batch);
	free(r->log_body);
	if (r->counted) {
		gw_metrics_inflight(-1);
		atomic_fetch_sub(&s->inflight, 1);
	}
	free(r);
}

/* A connection opened or closed: its read-deadline clock. libmicrohttpd
 * announces the close before it closes the socket. */
static void on_connection(void *cls, struct MHD_Connection *conn,
			  void **socket_context,
			  enum MHD_ConnectionNotificationCode code)
{
	gw_server *s = cls;
	const union MHD_ConnectionInfo *ci;

	if (code == MHD_CONNECTION_NOTIFY_STARTED) {
		ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
		*socket_context = ci ? gw_deadline_open(s->dl, ci->connect_fd)
				     : NULL;
	} else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
		gw_deadline_close(s->dl, *socket_context);
		*socket_context = NULL;
	}
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

/* ==== Start and stop ==== */

gw_server *gw_server_start(const gw_config *c, gw_upstream *up,
			   gw_tokens *tokens, char *err, size_t errlen)
{
	return gw_server_start_spool(c, up, NULL, tokens, err, errlen);
}

gw_server *gw_server_start_spool(const gw_config *c, gw_upstream *up,
				 gw_spool *sp, gw_tokens *tokens, char *err,
				 size_t errlen)
{
	gw_server *s;
	struct sockaddr_storage ss;
	socklen_t sl;
	unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ITC |
			 MHD_USE_ERROR_LOG;
	unsigned limit;
	const union MHD_DaemonInfo *info;

	if (tokens == NULL && !c->allow_anonymous) {
		snprintf(err, errlen, "no device tokens and --allow-anonymous not given");
		return NULL;
	}
	memset(&ss, 0, sizeof(ss));
	if (strchr(c->listen_host, ':')) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;

		a->sin6_family = AF_INET6;
		a->sin6_port = htons(c->listen_port);
		if (inet_pton(AF_INET6, c->listen_host, &a->sin6_addr) != 1)
			goto bad_host;
		sl = sizeof(*a);
		flags |= MHD_USE_IPv6;
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;

		a->sin_family = AF_INET;
		a->sin_port = htons(c->listen_port);
		if (inet_pton(AF_INET, c->listen_host, &a->sin_addr) != 1)
			goto bad_host;
		sl = sizeof(*a);
	}
	(void)sl;
	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->c = c;
	s->up = up;
	s->sp = sp;
	s->tokens = tokens;
	/* both modes suspend a PATCH while its update is away */
	flags |= MHD_ALLOW_SUSPEND_RESUME;
	if (pthread_rwlock_init(&s->tok_lock, NULL) != 0) {
		free(s);
		snprintf(err, errlen, "cannot create a lock");
		return NULL;
	}
	/* started before the daemon: connections register from the start */
	s->dl = gw_deadline_start(c->request_timeout_s);
	if (c->request_timeout_s > 0 && s->dl == NULL) {
		snprintf(err, errlen, "cannot start the request-timeout thread");
		pthread_rwlock_destroy(&s->tok_lock);
		free(s);
		return NULL;
	}
	limit = c->max_concurrent + 64;
	if (limit < c->threads * 4)
		limit = c->threads * 4;
	s->d = MHD_start_daemon(
		flags, c->listen_port, NULL, NULL, on_request, s,
		MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, NULL,
		MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
		MHD_OPTION_THREAD_POOL_SIZE, (unsigned)(c->threads > 1 ? c->threads : 0),
		MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)c->client_timeout_s,
		MHD_OPTION_CONNECTION_LIMIT, limit,
		MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 << 10),
		MHD_OPTION_UNESCAPE_CALLBACK, no_unescape, NULL,
		MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
		MHD_OPTION_NOTIFY_CONNECTION, on_connection, s,
		MHD_OPTION_PER_IP_CONNECTION_LIMIT, c->max_conns_per_ip,
		MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)1,
		MHD_OPTION_END);
	if (s->d == NULL) {
		snprintf(err, errlen, "cannot listen on %s:%u: %s", c->listen_host,
			 c->listen_port, errno ? strerror(errno) : "libmicrohttpd failed");
		gw_deadline_stop(s->dl);
		pthread_rwlock_destroy(&s->tok_lock);
		free(s);
		return NULL;
	}
	info = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
	s->port = info ? info->port : c->listen_port;
	return s;

bad_host:
	snprintf(err, errlen, "--listen: \"%s\" is not an IP address", c->listen_host);
	return NULL;
}

uint16_t gw_server_port(const gw_server *s)
{
	return s ? s->port : 0;
}

void gw_server_set_tokens(gw_server *s, gw_tokens *tokens)
{
	gw_tokens *old;

	pthread_rwlock_wrlock(&s->tok_lock);
	old = s->tokens;
	s->tokens = tokens;
	pthread_rwlock_unlock(&s->tok_lock);
	/* no reader holds the old set past the write lock */
	if (old != tokens)
		gw_tokens_free(old);
}

void gw_server_stop(gw_server *s)
{
	MHD_socket fd;
	double deadline;
	struct timespec ts = { 0, 5 * 1000 * 1000 };

	if (s == NULL)
		return;
	atomic_store(&s->stopping, true);
	fd = MHD_quiesce_daemon(s->d);
	if (fd != MHD_INVALID_SOCKET)
		close(fd);
	deadline = now_s() + STOP_DRAIN_S;
	while (atomic_load(&s->inflight) > 0 && now_s() < deadline)
		nanosleep(&ts, NULL);
	if (atomic_load(&s->inflight) > 0)
		gw_log(GW_LOG_WARN, "stopping with requests still in flight", NULL);
	/* libmicrohttpd must not be stopped with a suspended connection, and
	 * a suspended request must outlive its upstream call or spool commit
	 * (the callback writes into it): those end within the retry budget;
	 * no new one is suspended once stopping */
	while (atomic_load(&s->suspended) > 0 || atomic_load(&s->async_out) > 0)
		nanosleep(&ts, NULL);
	MHD_stop_daemon(s->d);
	gw_deadline_stop(s->dl);
	gw_tokens_free(s->tokens);
	pthread_rwlock_destroy(&s->tok_lock);
	free(s);
}
