/* request.c - what the gateway decides about a device's request, without
 * sockets: route, method, auth, session id, content type and declared
 * length from the head; the canonical JSON of an update body; the plan of
 * a batch; the bytes of an error answer; the upstream's answer as
 * protobuf.
 *
 * server.c feeds these from libmicrohttpd and turns the decisions into
 * answers; tests/fuzz/gateway.c feeds them arbitrary bytes. Nothing here
 * touches the network, the spool or the metrics.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "gw.h"

/* Fills a refusal: status, metrics reason, code, formatted message (made
 * valid UTF-8: it may quote device input), and optionally a header. */
__attribute__((format(printf, 6, 7)))
static int refuse(gw_refusal *no, int status, const char *reason,
		  const char *code, const char *hdr, const char *fmt, ...)
{
	va_list ap;

	memset(no, 0, sizeof(*no));
	no->status = status;
	no->reason = reason;
	no->code = code;
	if (hdr != NULL) {
		/* "Name: value" */
		no->hname = hdr;
		no->hval = strchr(hdr, '\0') + 1;
	}
	va_start(ap, fmt);
	if (vsnprintf(no->message, sizeof(no->message), fmt, ap) < 0)
		no->message[0] = '\0';
	va_end(ap);
	gw_utf8_sanitise(no->message);
	return status;
}

/* Header name and value in one literal: "Name\0value". */
#define HDR(name, value) (name "\0" value)

gw_route gw_route_of(const char *url)
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

/* The bearer token's device into h->device; 0, or 401. */
static int check_auth(const gw_req_env *env, const char *h, gw_req_head *hd,
		      gw_refusal *no)
{
	const char *name, *tok;
	size_t n;

	if (env->tokens == NULL) {
		snprintf(hd->device, sizeof(hd->device), "anonymous");
		return 0;
	}
	if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0)
		return refuse(no, 401, "auth", "unauthorized",
			      HDR("WWW-Authenticate", "Bearer realm=\"session-gateway\""),
			      "%s", h == NULL
				    ? "missing Authorization: Bearer <device token>"
				    : "Authorization must be `Bearer <device token>`");
	tok = h + 7;
	while (*tok == ' ')
		tok++;
	n = strlen(tok);
	while (n > 0 && (tok[n - 1] == ' ' || tok[n - 1] == '\t'))
		n--;
	name = gw_tokens_check(env->tokens, tok, n);
	if (name == NULL)
		return refuse(no, 401, "auth", "unauthorized",
			      HDR("WWW-Authenticate",
				  "Bearer realm=\"session-gateway\", error=\"invalid_token\""),
			      "unknown device token");
	snprintf(hd->device, sizeof(hd->device), "%s", name);
	return 0;
}

/* The PATCH path's session id: decoded into h->sid, the upstream path into
 * h->upath. 0, 404 or 400. */
static int check_session(const char *url, gw_req_head *h, gw_refusal *no)
{
	const char *seg = url + strlen(SW_SESSION_PATH_PREFIX);
	sw_error e;

	if (*seg == '\0')
		return refuse(no, 404, "not_found", "not_found", NULL,
			      "missing session id after /v2/traces/sessions/");
	if (strchr(seg, '/'))
		return refuse(no, 404, "not_found", "not_found", NULL,
			      "the session id must be one path segment (encode '/' as %%2F)");
	sw_error_clear(&e);
	if (sw_uri_decode(seg, strlen(seg), &h->sid, &e) != SW_OK ||
	    sw_session_path(h->sid.data ? h->sid.data : "", h->sid.len,
			    &h->upath, &e) != SW_OK)
		return refuse(no, 400, "bad_request", "invalid_session_id", NULL,
			      "session id: %s", e.message);
	return 0;
}

/* Content type into h->kind and the declared length against max_body. */
static int check_body_head(const gw_config *c, const gw_req_head_in *in,
			   gw_req_head *h, gw_refusal *no)
{
	const char *ct = in->content_type, *cl = in->content_length;

	if (media_is(ct, "application/x-protobuf"))
		h->kind = GW_BODY_PB;
	else if (h->route == GW_ROUTE_PATCH && media_is(ct, "application/json"))
		h->kind = GW_BODY_JSON;
	if (h->kind == GW_BODY_NONE)
		return refuse(no, 415, "content_type", "unsupported_media_type",
			      NULL, "Content-Type must be %s, found %s%.80s%s",
			      h->route == GW_ROUTE_PATCH
				      ? "application/x-protobuf or application/json"
				      : "application/x-protobuf (a Batch)",
			      ct ? "\"" : "", ct ? ct : "none", ct ? "\"" : "");
	if (cl != NULL) {
		char *end;
		unsigned long long v;

		/* libmicrohttpd frames the body by the first of several;
		 * differing ones are an error (RFC 9112 6.3: request
		 * smuggling through a proxy that reads another one) */
		if (in->content_length_differ)
			return refuse(no, 400, "bad_request", "bad_request", NULL,
				      "expected one Content-Length, found several that differ");
		errno = 0;
		v = strtoull(cl, &end, 10);
		if (end == cl || *end != '\0' || *cl == '-' || *cl == '+')
			return refuse(no, 400, "bad_request", "bad_request", NULL,
				      "Content-Length must be a decimal number, found \"%.40s\"",
				      cl);
		if (errno != 0 || v > c->max_body)
			return refuse(no, 413, "too_big", "payload_too_large", NULL,
				      "body of %.40s bytes is over the limit of %zu bytes",
				      cl, c->max_body);
	}
	return 0;
}

bool gw_prefers_async(const char *prefer)
{
	const char *p = prefer;

	/* Prefer: #( token [ "=" word ] *( ";" parameter ) ) (RFC 7240): a
	 * preference is a token at the start of a list element */
	while (p != NULL && *p != '\0') {
		size_t n;

		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		n = strcspn(p, " \t=;,");
		if (n == 13 && strncasecmp(p, "respond-async", 13) == 0)
			return true;
		p = strchr(p, ',');
	}
	return false;
}

void gw_req_head_init(gw_req_head *h)
{
	memset(h, 0, sizeof(*h));
	h->route = GW_ROUTE_OTHER;
	sw_buf_init(&h->sid, 4096, NULL);
	sw_buf_init(&h->upath, 0, NULL);
}

void gw_req_head_free(gw_req_head *h)
{
	if (h == NULL)
		return;
	sw_buf_free(&h->sid);
	sw_buf_free(&h->upath);
}

int gw_req_check_head(const gw_req_env *env, const gw_req_head_in *in,
		      gw_req_head *h, gw_refusal *no)
{
	const char *method = in->method ? in->method : "";
	int rc;

	memset(no, 0, sizeof(*no));
	h->route = gw_route_of(in->url ? in->url : "");
	/* /v1/updates speaks protobuf only: its answers are protobuf unless
	 * the device asks for something else (saves a header per batch). */
	h->accept_pb = accepts_pb(in->accept) ||
		       (in->accept == NULL && h->route == GW_ROUTE_BATCH);
	h->respond_async = gw_prefers_async(in->prefer);
	if (h->route == GW_ROUTE_OTHER)
		return refuse(no, 404, "not_found", "not_found", NULL,
			      "no such path (PATCH /v2/traces/sessions/{id}, POST /v1/updates, GET /healthz, /readyz, /metrics)");
	if (h->route == GW_ROUTE_HEALTHZ || h->route == GW_ROUTE_READYZ ||
	    h->route == GW_ROUTE_METRICS) {
		if (strcmp(method, "GET") && strcmp(method, "HEAD"))
			return refuse(no, 405, "method", "method_not_allowed",
				      HDR("Allow", "GET, HEAD"),
				      "only GET and HEAD are allowed here");
		return 0;
	}
	if (h->route == GW_ROUTE_PATCH && strcmp(method, "PATCH"))
		return refuse(no, 405, "method", "method_not_allowed",
			      HDR("Allow", "PATCH"),
			      "only PATCH is allowed on /v2/traces/sessions/{id}");
	if (h->route == GW_ROUTE_BATCH && strcmp(method, "POST"))
		return refuse(no, 405, "method", "method_not_allowed",
			      HDR("Allow", "POST"),
			      "only POST is allowed on /v1/updates");
	if (env->stopping)
		return refuse(no, 503, "shutting_down", "shutting_down",
			      HDR("Retry-After", "1"),
			      "the gateway is shutting down; retry on another instance");
	if (env->inflight > (int)env->c->max_concurrent)
		return refuse(no, 503, "overload", "overloaded",
			      HDR("Retry-After", "1"),
			      "more than %u requests in flight; retry later",
			      env->c->max_concurrent);
	rc = check_auth(env, in->authorization, h, no);
	if (rc == 0 && h->route == GW_ROUTE_PATCH)
		rc = check_session(in->url, h, no);
	if (rc == 0)
		rc = check_body_head(env->c, in, h, no);
	return rc;
}

int gw_req_canonical(const gw_config *c, const uint8_t *body, size_t len,
		     gw_body_kind kind, sw_buf *json, gw_refusal *no)
{
	sw_parse_opts o;
	sw_update *u = NULL;
	sw_error e;
	sw_status st;

	memset(&o, 0, sizeof(o));
	o.kind = SW_KIND_UPDATE;
	o.limits.max_input = c->max_body;
	sw_error_clear(&e);
	if (kind == GW_BODY_JSON)
		st = sw_json_parse((const char *)body, len, &o, &u, &e);
	else
		st = sw_pb_decode(body, len, &o, &u, &e);
	if (st == SW_OK)
		st = sw_json_write(u, NULL, json, &e);
	sw_update_free(u);
	if (st != SW_OK) {
		refuse(no, 400, "invalid_body", "invalid_body", NULL, "%s: %s",
		       sw_strerror(st), e.message);
		gw_format(no->field, sizeof(no->field), "%s", e.path);
		return 400;
	}
	return 0;
}

/* ==== Batches ==== */

static int item_cmp(const void *a, const void *b)
{
	const gw_batch_item *x = a, *y = b;
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

/* The session id's text into it->sid (heap, NUL-terminated). 0 or -1. */
static int item_sid(gw_batch_item *it, const sw_session_id *sid)
{
	char tmp[64];

	if (sid->kind == SW_ID_TEXT) {
		it->sid = malloc(sid->text.len + 1);
		if (it->sid == NULL)
			return -1;
		memcpy(it->sid, sid->text.ptr, sid->text.len);
		it->sid[sid->text.len] = '\0';
		it->sid_len = sid->text.len;
		return 0;
	}
	it->sid_len = sw_session_id_format(sid, tmp, sizeof(tmp));
	it->sid = malloc(it->sid_len + 1);
	if (it->sid == NULL)
		return -1;
	memcpy(it->sid, tmp, it->sid_len + 1);
	return 0;
}

/* Validates and translates one item: path and json, or status 400 and a
 * message "field: problem". */
static void item_translate(const gw_config *c, gw_batch_item *it,
			   const sw_envelope *env)
{
	gw_refusal no;
	sw_error e;

	sw_error_clear(&e);
	if (sw_session_path(it->sid, it->sid_len, &it->path, &e) != SW_OK) {
		it->status = 400;
		gw_format(it->msg, sizeof(it->msg), "session_id: %s", e.message);
		return;
	}
	if (gw_req_canonical(c, env->update, env->update_len, GW_BODY_PB,
			     &it->json, &no) != 0) {
		it->status = 400;
		if (no.field[0])
			gw_format(it->msg, sizeof(it->msg), "%s: %s", no.field,
				  no.message);
		else
			gw_format(it->msg, sizeof(it->msg), "%s", no.message);
	}
}

int gw_batch_plan(const gw_config *c, const uint8_t *body, size_t len,
		  gw_batch *b, gw_refusal *no)
{
	size_t cap = c->max_batch_items, n = 0, k;
	sw_envelope *envs;
	sw_error e;
	sw_status st;

	memset(b, 0, sizeof(*b));
	memset(no, 0, sizeof(*no));
	envs = calloc(cap ? cap : 1, sizeof(*envs));
	if (envs == NULL)
		return -1;
	sw_error_clear(&e);
	st = sw_batch_decode(body, len, envs, cap, &n, &e);
	if (st == SW_ETOOBIG) {
		free(envs);
		return refuse(no, 413, "too_many_items", "too_many_items", NULL,
			      "more than %zu updates in one batch (--max-batch-items)",
			      cap);
	}
	if (st != SW_OK) {
		free(envs);
		refuse(no, 400, "invalid_body", "invalid_body", NULL, "%s: %s",
		       sw_strerror(st), e.message);
		gw_format(no->field, sizeof(no->field), "%s", e.path);
		return 400;
	}
	b->items = calloc(n ? n : 1, sizeof(*b->items));
	if (b->items == NULL) {
		free(envs);
		return -1;
	}
	b->n = n;
	for (k = 0; k < n; k++) {
		gw_batch_item *it = &b->items[k];

		it->idx = k;
		it->seq = envs[k].seq;
		it->update_len = envs[k].update_len;
		sw_buf_init(&it->path, 0, NULL);
		sw_buf_init(&it->json, 0, NULL);
		if (item_sid(it, &envs[k].session_id) != 0) {
			free(envs);
			gw_batch_free(b);
			return -1;
		}
		item_translate(c, it, &envs[k]);
	}
	free(envs);
	qsort(b->items, n, sizeof(*b->items), item_cmp);
	return 0;
}

void gw_batch_free(gw_batch *b)
{
	size_t k;

	if (b == NULL || b->items == NULL)
		return;
	for (k = 0; k < b->n; k++) {
		free(b->items[k].sid);
		sw_buf_free(&b->items[k].path);
		sw_buf_free(&b->items[k].json);
	}
	free(b->items);
	b->items = NULL;
	b->n = 0;
}

/* ==== Error answers ==== */

sw_status gw_json_put_str(sw_buf *b, const char *key, const char *v)
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

sw_status gw_error_body(bool pb, int status, const char *code,
			const char *message, const char *field, sw_buf *out)
{
	char msg[512], fld[SW_ERROR_PATH_MAX];
	sw_status st;

	snprintf(msg, sizeof(msg), "%s", message);
	snprintf(fld, sizeof(fld), "%s", field ? field : "");
	gw_utf8_sanitise(msg);
	gw_utf8_sanitise(fld);
	if (pb) {
		sw_error_msg em;
		size_t n = 0;
		char *p;

		memset(&em, 0, sizeof(em));
		em.status = (uint32_t)status;
		em.code.ptr = code;
		em.code.len = strlen(code);
		em.message.ptr = msg;
		em.message.len = strlen(msg);
		em.field.ptr = fld;
		em.field.len = strlen(fld);
		st = sw_error_msg_encode(&em, NULL, 0, &n, NULL);
		if (st != SW_OK && n == 0)
			return st;
		p = sw_buf_reserve(out, n, &st);
		if (p == NULL)
			return st;
		st = sw_error_msg_encode(&em, (uint8_t *)p, n, &n, NULL);
		if (st == SW_OK)
			sw_buf_commit(out, n);
		return st;
	}
	st = sw_buf_append(out, "{", 1);
	if (st == SW_OK)
		st = gw_json_put_str(out, "code", code);
	if (st == SW_OK)
		st = sw_buf_append(out, ",", 1);
	if (st == SW_OK)
		st = gw_json_put_str(out, "message", msg);
	if (st == SW_OK && fld[0]) {
		st = sw_buf_append(out, ",", 1);
		if (st == SW_OK)
			st = gw_json_put_str(out, "field", fld);
	}
	if (st == SW_OK)
		st = sw_buf_append(out, "}", 1);
	return st;
}

/* ==== The upstream's answer, as protobuf ==== */

/* A 2xx session JSON as a Session message into out. 0 or -1. */
static int answer_session(const char *body, size_t len, sw_buf *out)
{
	sw_parse_opts o;
	sw_update *u = NULL;
	sw_status st;
	size_t n = 0;
	char *p;

	memset(&o, 0, sizeof(o));
	o.kind = SW_KIND_SESSION;
	o.lenient = true;
	if (sw_json_parse(body, len, &o, &u, NULL) != SW_OK)
		return -1;
	/* one encode for the usual session, a second, sized by the first,
	 * only for a larger one */
	p = sw_buf_reserve(out, 2048, &st);
	if (p != NULL && sw_pb_encode(u, (uint8_t *)p, 2048, &n, NULL) == SW_OK) {
		sw_buf_commit(out, n);
	} else {
		p = n > 2048 ? sw_buf_reserve(out, n, &st) : NULL;
		if (p == NULL || sw_pb_encode(u, (uint8_t *)p, n, &n, NULL) != SW_OK) {
			sw_update_free(u);
			return -1;
		}
		sw_buf_commit(out, n);
	}
	sw_update_free(u);
	return 0;
}

/* A non-2xx {"code"?: string, "message": string} as an Error message
 * into out; anything more is not carried, so -1 (passed through). */
static int answer_error(int status, const char *body, size_t len,
			sw_buf *out)
{
	cJSON *j = cJSON_ParseWithLength(body, len), *m, *c;
	sw_error_msg em;
	sw_status st;
	size_t n = 0;
	char *p;
	int rc = -1;

	if (j == NULL)
		return -1;
	m = cJSON_GetObjectItemCaseSensitive(j, "message");
	c = cJSON_GetObjectItemCaseSensitive(j, "code");
	if (!cJSON_IsObject(j) || !cJSON_IsString(m) ||
	    (c != NULL && !cJSON_IsString(c)) || cJSON_GetArraySize(j) > 2 ||
	    (c == NULL && cJSON_GetArraySize(j) > 1))
		goto done;
	memset(&em, 0, sizeof(em));
	em.status = (uint32_t)status;
	em.message.ptr = m->valuestring;
	em.message.len = strlen(m->valuestring);
	if (c) {
		em.code.ptr = c->valuestring;
		em.code.len = strlen(c->valuestring);
	}
	if (sw_error_msg_encode(&em, NULL, 0, &n, NULL) != SW_OK && n == 0)
		goto done;
	p = sw_buf_reserve(out, n, &st);
	if (p == NULL || sw_error_msg_encode(&em, (uint8_t *)p, n, &n, NULL) != SW_OK)
		goto done;
	sw_buf_commit(out, n);
	rc = 0;
done:
	cJSON_Delete(j);
	return rc;
}

int gw_answer_pb(int status, const char *body, size_t len, sw_buf *out)
{
	if (body == NULL || len == 0)
		return -1;
	if (status >= 200 && status < 300)
		return answer_session(body, len, out);
	if (status >= 400)
		return answer_error(status, body, len, out);
	return -1;
}
