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
 * forwarded at once. A batch forwards with the blocking call; its
 * items are forwarded one after another in (session, seq)
 * order, which keeps every session's updates in order; running different
 * sessions concurrently is left for later.
 *
 * Spool mode (gw_server_start_spool): the update is translated the same
 * way, then stored instead of forwarded. A PATCH does not hold its worker
 * thread: the connection is suspended (MHD_suspend_connection), the
 * update queued with gw_spool_put_async, and the writer thread resumes
 * the connection once the commit is done; so every connection, not every
 * thread, can have an update in the same group commit. A batch waits
 * with gw_spool_put (it brings many updates at once). The answer is
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

#include <cjson/cJSON.h>
#include <microhttpd.h>

#include "gw.h"

#define STOP_DRAIN_S 30.0
#define RESULT_MSG_MAX 160
#define LOG_SESSION_MAX 128
/* A body past max_body is read and dropped up to this many bytes (so the
 * client can read its 413), then the connection is cut. */
#define DISCARD_MAX ((size_t)1 << 20)

struct gw_server {
	struct MHD_Daemon *d;
	const gw_config *c;
	gw_upstream *up;
	gw_spool *sp;       /* NULL: direct mode */
	pthread_rwlock_t tok_lock;
	gw_tokens *tokens;
	atomic_int inflight;
	atomic_int async_out; /* direct-mode PATCHes at the upstream */
	atomic_bool stopping;
	atomic_ullong next_id;
	uint16_t port;
};

typedef enum body_kind { BODY_NONE = 0, BODY_PB, BODY_JSON } body_kind;

/* One request, from its headers to its completion. */
typedef struct req {
	gw_server *s;
	char id[24];
	gw_route route;
	double t0;
	bool counted;       /* in s->inflight */
	bool accept_pb;
	bool responded;     /* a response is queued */
	bool too_big;       /* the body went past max_body */
	size_t discarded;   /* bytes dropped after that */
	body_kind kind;
	sw_buf body;        /* at most max_body bytes */
	sw_buf sid;         /* PATCH: the decoded session id */
	sw_buf upath;       /* PATCH: the upstream path */
	int status;         /* for the log and the metrics */
	size_t bytes_out;
	int attempts;
	char device[64];
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

/* Makes s valid UTF-8 in place: bytes of broken sequences become '?'
 * (messages may quote device input or be cut in the middle of a
 * character; protobuf strings must be UTF-8). */
static void utf8_sanitise(char *s)
{
	unsigned char *p = (unsigned char *)s;
	size_t n = strlen(s), i = 0, k;

	while (i < n) {
		k = gw_utf8_seq(p + i, n - i);
		if (k == 0) {
			p[i++] = '?';
			continue;
		}
		i += k;
	}
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

static sw_status put_json_str(sw_buf *b, const char *key, const char *v)
{
	sw_status st = sw_buf_append(b, "\"", 1);

	if (st == SW_OK)
		st = sw_buf_append(b, key, strlen(key));
	if (st == SW_OK)
		st = sw_buf_append(b, "\":\"", 3);
	if (st == SW_OK)
		st = gw_json_escape(b, v, strlen(v));
	if (st == SW_OK)
		st = sw_buf_append(b, "\"", 1);
	return st;
}

/* An error body: protobuf Error when the device accepts it, else JSON
 * {"code","message","field"?}. Returns a response or NULL. */
static struct MHD_Response *error_resp(const req *r, int status,
				       const char *code, const char *message,
				       const char *field, size_t *len)
{
	if (r->accept_pb) {
		sw_error_msg em;
		size_t n = 0;
		uint8_t *buf;

		memset(&em, 0, sizeof(em));
		em.status = (uint32_t)status;
		em.code.ptr = code;
		em.code.len = strlen(code);
		em.message.ptr = message;
		em.message.len = strlen(message);
		em.field.ptr = field ? field : "";
		em.field.len = field ? strlen(field) : 0;
		if (sw_error_msg_encode(&em, NULL, 0, &n, NULL) != SW_OK &&
		    n == 0)
			return NULL;
		buf = malloc(n ? n : 1);
		if (buf == NULL)
			return NULL;
		if (sw_error_msg_encode(&em, buf, n, &n, NULL) != SW_OK) {
			free(buf);
			return NULL;
		}
		*len = n;
		return resp_take(buf, n, "application/x-protobuf");
	} else {
		sw_buf b;
		sw_status st;
		struct MHD_Response *resp;

		sw_buf_init(&b, 0, NULL);
		st = sw_buf_append(&b, "{", 1);
		if (st == SW_OK)
			st = put_json_str(&b, "code", code);
		if (st == SW_OK)
			st = sw_buf_append(&b, ",", 1);
		if (st == SW_OK)
			st = put_json_str(&b, "message", message);
		if (st == SW_OK && field && *field) {
			st = sw_buf_append(&b, ",", 1);
			if (st == SW_OK)
				st = put_json_str(&b, "field", field);
		}
		if (st == SW_OK)
			st = sw_buf_append(&b, "}", 1);
		if (st != SW_OK) {
			sw_buf_free(&b);
			return NULL;
		}
		*len = b.len;
		resp = resp_take(b.data, b.len, "application/json");
		return resp;
	}
}

/* Refuses the request: status, a message naming the problem, the reason
 * counted in the metrics, and optionally one extra header. */
static enum MHD_Result reject(req *r, struct MHD_Connection *conn, int status,
			      const char *reason, const char *code,
			      const char *message, const char *field,
			      const char *hname, const char *hval)
{
	struct MHD_Response *resp;
	size_t len = 0;

	if (reason)
		gw_metrics_reject(reason);
	if (field && *field)
		snprintf(r->error, sizeof(r->error), "%s: %s", field, message);
	else
		snprintf(r->error, sizeof(r->error), "%s", message);
	{
		char msg[512];

		snprintf(msg, sizeof(msg), "%s", message);
		utf8_sanitise(msg);
		utf8_sanitise(r->error);
		resp = error_resp(r, status, code, msg, field, &len);
	}
	if (resp != NULL && hname != NULL)
		MHD_add_response_header(resp, hname, hval);
	return send_resp(r, conn, status, resp, len);
}

/* ==== Headers ==== */

static const char *header(struct MHD_Connection *conn, const char *name)
{
	return MHD_lookup_connection_value(conn, MHD_HEADER_KIND, name);
}

/* The media type of a Content-Type value equals want (case-insensitive,
 * parameters after ';' ignored). */
static bool media_is(const char *v, const char *want)
{
	size_t n = strlen(want);

	if (v == NULL)
		return false;
	while (*v == ' ' || *v == '\t')
		v++;
	if (strncasecmp(v, want, n) != 0)
		return false;
	v += n;
	while (*v == ' ' || *v == '\t')
		v++;
	return *v == '\0' || *v == ';';
}

/* The Accept header names application/x-protobuf. */
static bool accepts_pb(const char *v)
{
	const char *p;

	if (v == NULL)
		return false;
	for (p = v; *p; p++)
		if (strncasecmp(p, "application/x-protobuf", 22) == 0)
			return true;
	return false;
}

/* Checks the bearer token. 0 when allowed (device filled), else 401 is
 * queued and the return value is what the handler returns, via *ret. */
static bool authorized(req *r, struct MHD_Connection *conn,
		       enum MHD_Result *ret)
{
	gw_server *s = r->s;
	const char *h = header(conn, MHD_HTTP_HEADER_AUTHORIZATION);
	const char *name, *tok;
	size_t n;
	bool anonymous;

	pthread_rwlock_rdlock(&s->tok_lock);
	anonymous = s->tokens == NULL;
	pthread_rwlock_unlock(&s->tok_lock);
	if (anonymous) {
		snprintf(r->device, sizeof(r->device), "anonymous");
		return true;
	}
	if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0) {
		*ret = reject(r, conn, 401, "auth", "unauthorized",
			      h == NULL ? "missing Authorization: Bearer <device token>"
				        : "Authorization must be `Bearer <device token>`",
			      NULL, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
			      "Bearer realm=\"session-gateway\"");
		return false;
	}
	tok = h + 7;
	while (*tok == ' ')
		tok++;
	n = strlen(tok);
	while (n > 0 && (tok[n - 1] == ' ' || tok[n - 1] == '\t'))
		n--;
	pthread_rwlock_rdlock(&s->tok_lock);
	name = s->tokens ? gw_tokens_check(s->tokens, tok, n) : "anonymous";
	if (name != NULL)
		snprintf(r->device, sizeof(r->device), "%s", name);
	pthread_rwlock_unlock(&s->tok_lock);
	if (name == NULL) {
		*ret = reject(r, conn, 401, "auth", "unauthorized",
			      "unknown device token", NULL,
			      MHD_HTTP_HEADER_WWW_AUTHENTICATE,
			      "Bearer realm=\"session-gateway\", error=\"invalid_token\"");
		return false;
	}
	return true;
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

/* A 2xx session body as protobuf, or NULL when it does not translate. */
static struct MHD_Response *session_pb(const gw_response *u, size_t *len)
{
	sw_parse_opts o;
	sw_update *s = NULL;
	uint8_t stack[2048], *buf;
	size_t n = 0;

	memset(&o, 0, sizeof(o));
	o.kind = SW_KIND_SESSION;
	o.lenient = true;
	if (u->body == NULL ||
	    sw_json_parse(u->body, u->body_len, &o, &s, NULL) != SW_OK)
		return NULL;
	/* One encode into the stack for the usual session; a second one,
	 * sized by the first, only for a larger session. */
	if (sw_pb_encode(s, stack, sizeof(stack), &n, NULL) == SW_OK) {
		buf = malloc(n ? n : 1);
		if (buf != NULL)
			memcpy(buf, stack, n);
	} else {
		buf = n > sizeof(stack) ? malloc(n) : NULL;
		if (buf != NULL && sw_pb_encode(s, buf, n, &n, NULL) != SW_OK) {
			free(buf);
			buf = NULL;
		}
	}
	sw_update_free(s);
	if (buf == NULL)
		return NULL;
	*len = n;
	return resp_take(buf, n, "application/x-protobuf");
}

/* A non-2xx {"code"?,"message"} body as a protobuf Error, or NULL. */
static struct MHD_Response *error_pb(const gw_response *u, size_t *len)
{
	cJSON *j, *m, *c;
	sw_error_msg em;
	uint8_t *buf = NULL;
	size_t n = 0;
	struct MHD_Response *resp = NULL;

	if (u->body == NULL)
		return NULL;
	j = cJSON_ParseWithLength(u->body, u->body_len);
	if (j == NULL)
		return NULL;
	m = cJSON_GetObjectItemCaseSensitive(j, "message");
	c = cJSON_GetObjectItemCaseSensitive(j, "code");
	if (!cJSON_IsObject(j) || !cJSON_IsString(m) ||
	    (c != NULL && !cJSON_IsString(c)) || cJSON_GetArraySize(j) > 2 ||
	    (c == NULL && cJSON_GetArraySize(j) > 1))
		goto done; /* more than we can carry: pass it through */
	memset(&em, 0, sizeof(em));
	em.status = (uint32_t)u->status;
	em.message.ptr = m->valuestring;
	em.message.len = strlen(m->valuestring);
	if (c) {
		em.code.ptr = c->valuestring;
		em.code.len = strlen(c->valuestring);
	}
	if (sw_error_msg_encode(&em, NULL, 0, &n, NULL) != SW_OK && n == 0)
		goto done;
	buf = malloc(n ? n : 1);
	if (buf == NULL || sw_error_msg_encode(&em, buf, n, &n, NULL) != SW_OK) {
		free(buf);
		goto done;
	}
	*len = n;
	resp = resp_take(buf, n, "application/x-protobuf");
done:
	cJSON_Delete(j);
	return resp;
}

/* Replies with the upstream's status and its body, translated to protobuf
 * when the device asked for it and it translates losslessly. */
static enum MHD_Result reply_upstream(req *r, struct MHD_Connection *conn,
				      const gw_response *u)
{
	struct MHD_Response *resp = NULL;
	size_t len = 0;

	if (r->accept_pb && u->body_len > 0) {
		if (u->status >= 200 && u->status < 300)
			resp = session_pb(u, &len);
		else if (u->status >= 400)
			resp = error_pb(u, &len);
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

/* Decodes, canonicalises and forwards one update. On success *u_resp holds
 * the upstream's answer and 0 is returned; otherwise the HTTP status to
 * give (400 invalid update, 502/504 no answer) with msg/field filled. */
/* Decodes and canonicalises one update into json (initialised here; the
 * caller frees it). 0, or 400 with msg/field filled. */
static int canonical(req *r, const uint8_t *body, size_t len, body_kind kind,
		     sw_buf *json, char *msg, size_t msglen, char *field,
		     size_t fieldlen)
{
	gw_server *s = r->s;
	sw_parse_opts o;
	sw_update *u = NULL;
	sw_error e;
	sw_status st;

	memset(&o, 0, sizeof(o));
	o.kind = SW_KIND_UPDATE;
	o.limits.max_input = s->c->max_body;
	sw_error_clear(&e);
	if (kind == BODY_JSON)
		st = sw_json_parse((const char *)body, len, &o, &u, &e);
	else
		st = sw_pb_decode(body, len, &o, &u, &e);
	if (st != SW_OK) {
		snprintf(msg, msglen, "%s: %s", sw_strerror(st), e.message);
		copy_trunc(field, fieldlen, e.path, strlen(e.path));
		sw_buf_init(json, 0, NULL);
		return 400;
	}
	sw_buf_init(json, 0, NULL);
	st = sw_json_write(u, NULL, json, &e);
	sw_update_free(u);
	if (st != SW_OK) {
		snprintf(msg, msglen, "%s: %s", sw_strerror(st), e.message);
		copy_trunc(field, fieldlen, e.path, strlen(e.path));
		return 400;
	}
	gw_metrics_bytes(len, json->len);
	if (s->c->log_bodies && r->log_body == NULL) {
		/* the first canonical body goes into the request's log line */
		r->log_body = malloc(json->len + 1);
		if (r->log_body != NULL) {
			memcpy(r->log_body, json->data, json->len + 1);
			r->log_body_len = json->len;
		}
	}
	return 0;
}

static int forward(req *r, const uint8_t *body, size_t len, body_kind kind,
		   const char *path, gw_response *u_resp, char *msg,
		   size_t msglen, char *field, size_t fieldlen)
{
	gw_server *s = r->s;
	sw_buf json;
	int ret;

	ret = canonical(r, body, len, kind, &json, msg, msglen, field,
			fieldlen);
	if (ret != 0) {
		sw_buf_free(&json);
		return ret;
	}
	if (gw_upstream_patch(s->up, path, json.data, json.len, u_resp) != 0) {
		ret = timed_out(u_resp->error) ? 504 : 502;
		/* a batch's message is cut at RESULT_MSG_MAX: so be it */
		if (snprintf(msg, msglen, "upstream %s: %s",
			     ret == 504 ? "timed out" : "unreachable",
			     u_resp->error[0] ? u_resp->error : "no answer") < 0)
			msg[0] = '\0';
		field[0] = '\0';
	}
	r->attempts += u_resp->attempts;
	sw_buf_free(&json);
	return ret;
}

/* ==== Spool mode ==== */

/* Refuses after gw_spool_put did not store: 507 full, 503 not writable. */
static enum MHD_Result spool_refused(req *r, struct MHD_Connection *conn,
				     int rc, const char *err)
{
	if (rc == GW_SPOOL_FULL)
		return reject(r, conn, 507, "spool_full", "spool_full", err,
			      NULL, MHD_HTTP_HEADER_RETRY_AFTER, "30");
	return reject(r, conn, 503, "spool_error", "spool_unavailable", err,
		      NULL, MHD_HTTP_HEADER_RETRY_AFTER, "5");
}

/* The 202 of a spooled PATCH: an Ack with one Result (protobuf) or
 * {"status":"accepted",...}. */
static enum MHD_Result spool_accepted(req *r, struct MHD_Connection *conn)
{
	static const char m[] = "accepted: stored in the spool, forwarded in order";
	size_t len = 0;

	if (r->accept_pb) {
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
			st = put_json_str(&b, "session_id", r->session);
		if (st == SW_OK)
			st = sw_buf_append(&b, ",", 1);
		if (st == SW_OK)
			st = put_json_str(&b, "message", m);
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
	MHD_resume_connection(r->conn);
}

/* Translates, queues and suspends; spool_patch_done answers. */
static enum MHD_Result spool_patch(req *r, struct MHD_Connection *conn)
{
	char msg[256], field[SW_ERROR_PATH_MAX];
	gw_spool_rec rec;
	int rc;

	rc = canonical(r, (const uint8_t *)r->body.data, r->body.len, r->kind,
		       &r->spool_json, msg, sizeof(msg), field, sizeof(field));
	if (rc != 0)
		return reject(r, conn, 400, "invalid_body", "invalid_body", msg,
			      field, NULL, NULL);
	memset(&rec, 0, sizeof(rec));
	rec.sid = r->sid.data;
	rec.sid_len = r->sid.len;
	rec.path = r->upath.data;
	rec.json = r->spool_json.data;
	rec.json_len = r->spool_json.len;
	r->conn = conn;
	r->spool_wait = true;
	/* suspended first: the writer may resume it at once */
	MHD_suspend_connection(conn);
	if (gw_spool_put_async(r->s->sp, &rec, 1, on_spooled, r) != 0) {
		r->spool_rc = GW_SPOOL_ERROR;
		snprintf(r->spool_err, sizeof(r->spool_err),
			 "the spool is closing or out of memory; nothing was stored");
		atomic_store(&r->spool_done, true);
		MHD_resume_connection(conn);
	}
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
	MHD_resume_connection(r->conn);
	atomic_fetch_sub(&s->async_out, 1);
}

/* Translates, hands the update to the upstream's event thread, suspends;
 * patch_done answers. */
static enum MHD_Result direct_patch(req *r, struct MHD_Connection *conn)
{
	gw_server *s = r->s;
	char msg[256], field[SW_ERROR_PATH_MAX];
	int rc;

	rc = canonical(r, (const uint8_t *)r->body.data, r->body.len, r->kind,
		       &r->spool_json, msg, sizeof(msg), field, sizeof(field));
	if (rc != 0)
		return reject(r, conn, 400, "invalid_body", "invalid_body", msg,
			      field, NULL, NULL);
	r->conn = conn;
	r->up_wait = true;
	atomic_fetch_add(&s->async_out, 1);
	/* suspended first: the event thread may resume it at once */
	MHD_suspend_connection(conn);
	if (gw_upstream_patch_async(s->up, r->upath.data, r->spool_json.data,
				    r->spool_json.len, on_forwarded, r) != 0) {
		memset(&r->up_resp, 0, sizeof(r->up_resp));
		r->up_resp.retry_after_ms = -1;
		snprintf(r->up_resp.error, sizeof(r->up_resp.error),
			 "the gateway is stopping or out of memory");
		r->up_ret = 502;
		atomic_store(&r->up_done, true);
		MHD_resume_connection(conn);
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
		      msg, NULL, NULL, NULL);
}

static enum MHD_Result handle_patch(req *r, struct MHD_Connection *conn)
{
	if (r->s->sp != NULL)
		return spool_patch(r, conn);
	return direct_patch(r, conn);
}

/* ==== POST /v1/updates ==== */

typedef struct batch_item {
	size_t idx;
	char *sid;     /* the id's text, NUL-terminated */
	size_t sid_len;
	uint64_t seq;
} batch_item;

static int item_cmp(const void *a, const void *b)
{
	const batch_item *x = a, *y = b;
	size_t n = x->sid_len < y->sid_len ? x->sid_len : y->sid_len;
	int c = memcmp(x->sid, y->sid, n);

	if (c != 0)
		return c;
	if (x->sid_len != y->sid_len)
		return x->sid_len < y->sid_len ? -1 : 1;
	if (x->seq != y->seq)
		return x->seq < y->seq ? -1 : 1;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Upstream answers after which a device must resend (and later updates
 * of the same session must wait). */
static bool must_resend(int status)
{
	return status == 0 || status == 429 || status >= 500;
}

static enum MHD_Result handle_batch(req *r, struct MHD_Connection *conn)
{
	gw_server *s = r->s;
	size_t cap = s->c->max_batch_items, n = 0, k, ack_len = 0;
	sw_envelope *items = NULL;
	batch_item *order = NULL;
	sw_result *res = NULL;
	char *msgs = NULL;
	uint8_t *ack = NULL;
	sw_error e;
	sw_status st;
	enum MHD_Result ret;
	const batch_item *blocked = NULL;
	sw_buf *spooled = NULL;   /* spool mode: [2k] path, [2k+1] JSON */
	gw_spool_rec *recs = NULL;
	size_t *rec_item = NULL, n_recs = 0;

	items = calloc(cap, sizeof(*items));
	if (items == NULL)
		return MHD_NO;
	sw_error_clear(&e);
	st = sw_batch_decode((const uint8_t *)r->body.data, r->body.len, items,
			     cap, &n, &e);
	if (st == SW_ETOOBIG) {
		char m[128];

		snprintf(m, sizeof(m), "more than %zu updates in one batch (--max-batch-items)",
			 cap);
		ret = reject(r, conn, 413, "too_many_items", "too_many_items", m,
			     NULL, NULL, NULL);
		goto done;
	}
	if (st != SW_OK) {
		char m[256];

		snprintf(m, sizeof(m), "%s: %s", sw_strerror(st), e.message);
		ret = reject(r, conn, 400, "invalid_body", "invalid_body", m,
			     e.path, NULL, NULL);
		goto done;
	}
	order = calloc(n ? n : 1, sizeof(*order));
	res = calloc(n ? n : 1, sizeof(*res));
	msgs = calloc(n ? n : 1, RESULT_MSG_MAX);
	if (order == NULL || res == NULL || msgs == NULL) {
		ret = MHD_NO;
		goto done;
	}
	if (s->sp != NULL) {
		spooled = calloc(2 * (n ? n : 1), sizeof(*spooled));
		recs = calloc(n ? n : 1, sizeof(*recs));
		rec_item = calloc(n ? n : 1, sizeof(*rec_item));
		if (spooled == NULL || recs == NULL || rec_item == NULL) {
			ret = MHD_NO;
			goto done;
		}
	}
	for (k = 0; k < n; k++) {
		char tmp[64];
		const sw_session_id *sid = &items[k].session_id;
		size_t need = (sid->kind == SW_ID_TEXT ? sid->text.len : 0) + 64;

		order[k].idx = k;
		order[k].seq = items[k].seq;
		order[k].sid = malloc(need);
		if (order[k].sid == NULL) {
			ret = MHD_NO;
			goto done;
		}
		if (sid->kind == SW_ID_TEXT) {
			memcpy(order[k].sid, sid->text.ptr, sid->text.len);
			order[k].sid[sid->text.len] = '\0';
			order[k].sid_len = sid->text.len;
		} else {
			order[k].sid_len = sw_session_id_format(sid, tmp, sizeof(tmp));
			memcpy(order[k].sid, tmp, order[k].sid_len + 1);
		}
		res[k].seq = items[k].seq;
	}
	if (n > 0)
		copy_trunc(r->session, sizeof(r->session), order[0].sid,
			   order[0].sid_len);
	qsort(order, n, sizeof(*order), item_cmp);
	for (k = 0; k < n; k++) {
		const batch_item *it = &order[k];
		size_t i = it->idx;
		char *m = msgs + i * RESULT_MSG_MAX;
		char field[SW_ERROR_PATH_MAX];
		sw_buf path;
		gw_response u;
		int hs;

		if (blocked != NULL && blocked->sid_len == it->sid_len &&
		    memcmp(blocked->sid, it->sid, it->sid_len) == 0) {
			res[i].status = 0;
			snprintf(m, RESULT_MSG_MAX, "not sent: an earlier update of this session failed; resend both");
			res[i].message.ptr = m;
			res[i].message.len = strlen(m);
			continue;
		}
		blocked = NULL;
		sw_buf_init(&path, 0, NULL);
		sw_error_clear(&e);
		if (sw_session_path(it->sid, it->sid_len, &path, &e) != SW_OK) {
			res[i].status = 400;
			snprintf(m, RESULT_MSG_MAX, "session_id: %.140s", e.message);
			res[i].message.ptr = m;
			res[i].message.len = strlen(m);
			gw_metrics_reject("invalid_body");
			sw_buf_free(&path);
			continue;
		}
		if (s->sp != NULL) {
			/* spool mode: translate now, store all together below */
			hs = canonical(r, items[i].update, items[i].update_len,
				       BODY_PB, &spooled[2 * n_recs + 1], m,
				       RESULT_MSG_MAX, field, sizeof(field));
			if (hs != 0) {
				size_t ml = strlen(m);

				sw_buf_free(&spooled[2 * n_recs + 1]);
				sw_buf_free(&path);
				gw_metrics_reject("invalid_body");
				if (field[0] && ml + strlen(field) + 3 < RESULT_MSG_MAX) {
					memmove(m + strlen(field) + 2, m, ml + 1);
					memcpy(m, field, strlen(field));
					memcpy(m + strlen(field), ": ", 2);
				}
				utf8_sanitise(m);
				res[i].status = 400;
				res[i].message.ptr = m;
				res[i].message.len = strlen(m);
				continue;
			}
			spooled[2 * n_recs] = path;
			recs[n_recs].sid = it->sid;
			recs[n_recs].sid_len = it->sid_len;
			recs[n_recs].seq = it->seq;
			recs[n_recs].path = path.data;
			recs[n_recs].json = spooled[2 * n_recs + 1].data;
			recs[n_recs].json_len = spooled[2 * n_recs + 1].len;
			rec_item[n_recs++] = i;
			continue;
		}
		memset(&u, 0, sizeof(u));
		hs = forward(r, items[i].update, items[i].update_len, BODY_PB,
			     path.data, &u, m, RESULT_MSG_MAX, field,
			     sizeof(field));
		sw_buf_free(&path);
		if (hs == 400) {
			size_t ml = strlen(m);

			gw_metrics_reject("invalid_body");
			if (field[0] && ml + strlen(field) + 3 < RESULT_MSG_MAX) {
				memmove(m + strlen(field) + 2, m, ml + 1);
				memcpy(m, field, strlen(field));
				memcpy(m + strlen(field), ": ", 2);
			}
		} else if (hs == 0) {
			hs = u.status;
			if (u.retry_after_ms >= 0) {
				res[i].has_retry_after = true;
				res[i].retry_after_ms = u.retry_after_ms > UINT32_MAX
					? UINT32_MAX : (uint32_t)u.retry_after_ms;
			}
			if (hs < 200 || hs >= 300) {
				snprintf(m, RESULT_MSG_MAX, "%s",
					 u.body ? u.body : "");
			}
		} else if (u.retry_after_ms >= 0) {
			res[i].has_retry_after = true;
			res[i].retry_after_ms = (uint32_t)u.retry_after_ms;
		}
		gw_response_free(&u);
		res[i].status = (uint32_t)hs;
		utf8_sanitise(m);
		res[i].message.ptr = m;
		res[i].message.len = strlen(m);
		if (must_resend(hs) && hs != 400)
			blocked = it;
	}
	if (s->sp != NULL && n_recs > 0) {
		static const char ok_msg[] = "accepted";
		char err[256];
		int rc = gw_spool_put(s->sp, recs, n_recs, err, sizeof(err));

		if (rc != GW_SPOOL_OK) {
			gw_metrics_reject(rc == GW_SPOOL_FULL ? "spool_full"
							      : "spool_error");
			snprintf(r->error, sizeof(r->error), "%s", err);
		}
		for (k = 0; k < n_recs; k++) {
			size_t i = rec_item[k];
			char *m = msgs + i * RESULT_MSG_MAX;

			if (rc == GW_SPOOL_OK) {
				res[i].status = 202;
				res[i].message.ptr = ok_msg;
				res[i].message.len = sizeof(ok_msg) - 1;
				continue;
			}
			res[i].status = rc == GW_SPOOL_FULL ? 507 : 503;
			res[i].has_retry_after = true;
			res[i].retry_after_ms = rc == GW_SPOOL_FULL ? 30000 : 5000;
			snprintf(m, RESULT_MSG_MAX, "%.150s", err);
			utf8_sanitise(m);
			res[i].message.ptr = m;
			res[i].message.len = strlen(m);
		}
	}
	if (sw_ack_encode(res, n, NULL, 0, &ack_len, NULL) != SW_OK &&
	    ack_len == 0) {
		ret = reject(r, conn, 500, "other", "internal",
			     "cannot encode the acknowledgement", NULL, NULL, NULL);
		goto done;
	}
	ack = malloc(ack_len ? ack_len : 1);
	if (ack == NULL ||
	    sw_ack_encode(res, n, ack, ack_len, &ack_len, &e) != SW_OK) {
		free(ack);
		ret = reject(r, conn, 500, "other", "internal",
			     "cannot encode the acknowledgement", NULL, NULL, NULL);
		goto done;
	}
	ret = send_resp(r, conn, 200,
			resp_take(ack, ack_len, "application/x-protobuf"),
			ack_len);
done:
	if (spooled)
		for (k = 0; k < 2 * n_recs; k++)
			sw_buf_free(&spooled[k]);
	free(spooled);
	free(recs);
	free(rec_item);
	if (order)
		for (k = 0; k < n; k++)
			free(order[k].sid);
	free(order);
	free(res);
	free(msgs);
	free(items);
	return ret;
}

/* ==== Small routes ==== */

static enum MHD_Result handle_get(req *r, struct MHD_Connection *conn)
{
	gw_server *s = r->s;
	sw_buf b;

	if (r->route == GW_ROUTE_HEALTHZ)
		return send_resp(r, conn, 200, resp_new("ok\n", 3, "text/plain"), 3);
	if (r->route == GW_ROUTE_READYZ) {
		if (atomic_load(&s->stopping))
			return reject(r, conn, 503, NULL, "shutting_down",
				      "the gateway is shutting down", NULL,
				      NULL, NULL);
		if (s->up == NULL || s->c->upstream[0] == '\0')
			return reject(r, conn, 503, NULL, "not_ready",
				      "no upstream configured", NULL, NULL, NULL);
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

static gw_route route_of(const char *url)
{
	if (!strcmp(url, "/healthz"))
		return GW_ROUTE_HEALTHZ;
	if (!strcmp(url, "/readyz"))
		return GW_ROUTE_READYZ;
	if (!strcmp(url, "/metrics"))
		return GW_ROUTE_METRICS;
	if (!strcmp(url, "/v1/updates"))
		return GW_ROUTE_BATCH;
	if (!strncmp(url, SW_SESSION_PATH_PREFIX, strlen(SW_SESSION_PATH_PREFIX)))
		return GW_ROUTE_PATCH;
	return GW_ROUTE_OTHER;
}

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

/* Checks what can be checked before the body. Returns MHD_YES to go on
 * reading the body, or the result of queueing a rejection. */
static enum MHD_Result begin(req *r, struct MHD_Connection *conn,
			     const char *url, const char *method)
{
	gw_server *s = r->s;
	const gw_config *c = s->c;
	const char *ct, *cl, *seg, *accept;
	enum MHD_Result ret = MHD_YES;
	char m[256];
	int inflight;

	r->route = route_of(url);
	accept = header(conn, MHD_HTTP_HEADER_ACCEPT);
	/* /v1/updates speaks protobuf only: its answers are protobuf unless
	 * the device asks for something else (saves a header per batch). */
	r->accept_pb = accepts_pb(accept) ||
		       (accept == NULL && r->route == GW_ROUTE_BATCH);
	if (r->route == GW_ROUTE_OTHER)
		return reject(r, conn, 404, "not_found", "not_found",
			      "no such path (PATCH /v2/traces/sessions/{id}, POST /v1/updates, GET /healthz, /readyz, /metrics)",
			      NULL, NULL, NULL);
	if (r->route == GW_ROUTE_HEALTHZ || r->route == GW_ROUTE_READYZ ||
	    r->route == GW_ROUTE_METRICS) {
		if (strcmp(method, "GET") && strcmp(method, "HEAD"))
			return reject(r, conn, 405, "method", "method_not_allowed",
				      "only GET and HEAD are allowed here",
				      NULL, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
		return MHD_YES;
	}
	if (r->route == GW_ROUTE_PATCH && strcmp(method, "PATCH"))
		return reject(r, conn, 405, "method", "method_not_allowed",
			      "only PATCH is allowed on /v2/traces/sessions/{id}",
			      NULL, MHD_HTTP_HEADER_ALLOW, "PATCH");
	if (r->route == GW_ROUTE_BATCH && strcmp(method, "POST"))
		return reject(r, conn, 405, "method", "method_not_allowed",
			      "only POST is allowed on /v1/updates", NULL,
			      MHD_HTTP_HEADER_ALLOW, "POST");
	if (atomic_load(&s->stopping))
		return reject(r, conn, 503, "shutting_down", "shutting_down",
			      "the gateway is shutting down; retry on another instance",
			      NULL, MHD_HTTP_HEADER_RETRY_AFTER, "1");
	inflight = atomic_load(&s->inflight);
	if (inflight > (int)c->max_concurrent) {
		snprintf(m, sizeof(m), "more than %u requests in flight; retry later",
			 c->max_concurrent);
		return reject(r, conn, 503, "overload", "overloaded", m, NULL,
			      MHD_HTTP_HEADER_RETRY_AFTER, "1");
	}
	if (!authorized(r, conn, &ret))
		return ret;
	if (r->route == GW_ROUTE_PATCH) {
		sw_error e;

		seg = url + strlen(SW_SESSION_PATH_PREFIX);
		if (*seg == '\0')
			return reject(r, conn, 404, "not_found", "not_found",
				      "missing session id after /v2/traces/sessions/",
				      NULL, NULL, NULL);
		if (strchr(seg, '/'))
			return reject(r, conn, 404, "not_found", "not_found",
				      "the session id must be one path segment (encode '/' as %2F)",
				      NULL, NULL, NULL);
		sw_error_clear(&e);
		sw_buf_init(&r->sid, 4096, NULL);
		sw_buf_init(&r->upath, 0, NULL);
		if (sw_uri_decode(seg, strlen(seg), &r->sid, &e) != SW_OK ||
		    sw_session_path(r->sid.data ? r->sid.data : "", r->sid.len,
				    &r->upath, &e) != SW_OK) {
			snprintf(m, sizeof(m), "session id: %s", e.message);
			return reject(r, conn, 400, "bad_request",
				      "invalid_session_id", m, NULL, NULL, NULL);
		}
		copy_trunc(r->session, sizeof(r->session), r->sid.data,
			   r->sid.len);
	}
	ct = header(conn, MHD_HTTP_HEADER_CONTENT_TYPE);
	if (media_is(ct, "application/x-protobuf"))
		r->kind = BODY_PB;
	else if (r->route == GW_ROUTE_PATCH && media_is(ct, "application/json"))
		r->kind = BODY_JSON;
	if (r->kind == BODY_NONE) {
		snprintf(m, sizeof(m), "Content-Type must be %s, found %s%.80s%s",
			 r->route == GW_ROUTE_PATCH
				 ? "application/x-protobuf or application/json"
				 : "application/x-protobuf (a Batch)",
			 ct ? "\"" : "", ct ? ct : "none", ct ? "\"" : "");
		return reject(r, conn, 415, "content_type",
			      "unsupported_media_type", m, NULL, NULL, NULL);
	}
	cl = header(conn, MHD_HTTP_HEADER_CONTENT_LENGTH);
	if (cl != NULL) {
		/* libmicrohttpd frames the body by the first of several;
		 * differing ones are an error (RFC 9112 6.3: request
		 * smuggling through a proxy that reads another one) */
		cl_seen seen = { NULL, false };
		char *end;
		unsigned long long v;

		MHD_get_connection_values(conn, MHD_HEADER_KIND, cl_each, &seen);
		if (seen.differ)
			return reject(r, conn, 400, "bad_request", "bad_request",
				      "expected one Content-Length, found several that differ",
				      NULL, NULL, NULL);
		errno = 0;
		v = strtoull(cl, &end, 10);
		if (errno != 0 || end == cl || v > c->max_body) {
			snprintf(m, sizeof(m), "body of %s bytes is over the limit of %zu bytes",
				 cl, c->max_body);
			return reject(r, conn, 413, "too_big", "payload_too_large",
				      m, NULL, NULL, NULL);
		}
	}
	sw_buf_init(&r->body, c->max_body, NULL);
	return MHD_YES;
}

/* ==== libmicrohttpd callbacks ==== */

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
			      NULL, NULL);
	}
	if (r->route == GW_ROUTE_PATCH)
		return handle_patch(r, conn);
	if (r->route == GW_ROUTE_BATCH)
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

	(void)conn;
	if (r == NULL)
		return;
	*con_cls = NULL;
	dt = now_s() - r->t0;
	if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && r->error[0] == '\0')
		snprintf(r->error, sizeof(r->error), "connection ended early (%d)",
			 (int)toe);
	gw_metrics_request(r->route, r->status, dt);
	f.request_id = r->id;
	f.route = route_names[r->route];
	f.session_id = r->session[0] ? r->session : NULL;
	f.device = r->device[0] ? r->device : NULL;
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
	gw_log(r->route == GW_ROUTE_HEALTHZ || r->route == GW_ROUTE_READYZ ||
		       r->route == GW_ROUTE_METRICS
		       ? GW_LOG_DEBUG
		       : (r->status >= 500 || r->status == 0 ? GW_LOG_WARN
							     : GW_LOG_INFO),
	       "request", &f);
	sw_buf_free(&r->body);
	sw_buf_free(&r->sid);
	sw_buf_free(&r->upath);
	sw_buf_free(&r->spool_json);
	gw_response_free(&r->up_resp);
	free(r->log_body);
	if (r->counted) {
		gw_metrics_inflight(-1);
		atomic_fetch_sub(&s->inflight, 1);
	}
	free(r);
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
		MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)1,
		MHD_OPTION_END);
	if (s->d == NULL) {
		snprintf(err, errlen, "cannot listen on %s:%u: %s", c->listen_host,
			 c->listen_port, errno ? strerror(errno) : "libmicrohttpd failed");
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
	/* a suspended PATCH's request must outlive its upstream call (the
	 * callback writes into it): those end within the retry budget */
	while (atomic_load(&s->async_out) > 0)
		nanosleep(&ts, NULL);
	MHD_stop_daemon(s->d);
	gw_tokens_free(s->tokens);
	pthread_rwlock_destroy(&s->tok_lock);
	free(s);
}
