/* gateway.c - fuzz target: the gateway's request handling without sockets
 * (gateway/request.c): the head's route, method, headers and auth, then
 * the body as the server would take it, and every error answer.
 *
 * Input: one flags byte, six lines (method, path, Content-Type, Accept,
 * Authorization, Content-Length; an empty line is an absent header), the
 * rest is the body. Flags: bit 0 anonymous devices (no tokens), bit 1
 * several Content-Length headers that differ, bit 2 the gateway is
 * stopping, bit 3 it is overloaded, bit 4 the Accept line is also the
 * Prefer header (RFC 7240).
 *
 * Invariants:
 *  - the head is accepted or refused with 400/401/404/405/413/415, or 503
 *    only when stopping or overloaded: no 5xx of the gateway's own for a
 *    client's mistake; the message is a non-empty valid UTF-8 sentence;
 *  - both error bodies (protobuf Error, JSON) carry status, code, message
 *    and field back unchanged;
 *  - an accepted head with tokens names a device whose token is in the
 *    Authorization header; an accepted PATCH has a session id whose
 *    upstream path is sw_session_path's, one segment of unreserved or
 *    %XX bytes, not "." or "..";
 *  - a body is translated or refused with 400 (413 for a batch with too
 *    many items); what would go upstream is canonical JSON: it parses
 *    strictly and writes back byte for byte;
 *  - a batch plan is every item once, in (session, seq, place) order,
 *    each ready (its path sw_session_path's) or refused with a message;
 *  - no secret (the device tokens, the org key) is in any answer unless
 *    the input carried it outside the Authorization header;
 *  - respond-async is seen only in a Prefer value that names it (any
 *    case), and always in one that is just that token.
 */
#include <cjson/cJSON.h>
#include <strings.h>
#include <unistd.h>

#include "fuzz.h"
#include "gw.h"

#define GWF_TOKEN1 "fuzz-token-one-7f3a"
#define GWF_TOKEN2 "fuzz-token-two-c91e"
#define GWF_ORG_KEY "sk-org-fuzz-secret-5d2b"

static gw_tokens *gwf_tokens;
static gw_config gwf_cfg;

/* The device tokens (one plain, one as a digest) and the config, once. */
static bool gwf_setup(void)
{
	char path[] = "/tmp/sw-fuzz-tokens-XXXXXX", err[256];
	static const char text[] =
		"dev-one " GWF_TOKEN1 "\n"
		"dev-two sha256:"
		"746186431f73005ee760cf685ce041d62d54d97b92c9907cb2b7a72503f6e3e5\n"; /* sha256 of GWF_TOKEN2 */
	int fd;

	if (gwf_tokens != NULL)
		return true;
	gw_config_defaults(&gwf_cfg);
	gwf_cfg.max_batch_items = 16;
	gwf_cfg.api_key = (char *)(uintptr_t)GWF_ORG_KEY;
	fd = mkstemp(path);
	if (fd < 0)
		return false;
	if (write(fd, text, sizeof(text) - 1) != (ssize_t)(sizeof(text) - 1)) {
		close(fd);
		unlink(path);
		return false;
	}
	close(fd);
	gwf_tokens = gw_tokens_load(path, err, sizeof(err));
	unlink(path);
	if (gwf_tokens == NULL)
		fprintf(stderr, "fuzz gateway: tokens: %s\n", err);
	return gwf_tokens != NULL;
}

/* Whether s[0..n) is valid UTF-8. */
static bool gwf_utf8(const char *s, size_t n)
{
	size_t i = 0, k;

	while (i < n) {
		k = gw_utf8_seq((const unsigned char *)s + i, n - i);
		if (k == 0)
			return false;
		i += k;
	}
	return true;
}

/* Whether needle occurs in hay[0..n). */
static bool gwf_has(const void *hay, size_t n, const char *needle)
{
	const char *h = hay;
	size_t k = strlen(needle), i;

	for (i = 0; k <= n && i <= n - k; i++)
		if (h[i] == needle[0] && !memcmp(h + i, needle, k))
			return true;
	return false;
}

/* Whether an answer may mention any secret: only when the input carried
 * one outside the Authorization header. */
static bool gwf_secret_free(const void *s, size_t n, bool input_has)
{
	if (input_has)
		return true;
	return !gwf_has(s, n, GWF_TOKEN1) && !gwf_has(s, n, GWF_TOKEN2) &&
	       !gwf_has(s, n, GWF_ORG_KEY);
}

/* Both error bodies of a refusal decode back to it. */
static void gwf_error_bodies(const gw_refusal *no, bool input_has)
{
	sw_buf b;
	sw_error_msg em;
	cJSON *j, *m, *c, *f;

	sw_buf_init(&b, 0, NULL);
	if (SW_FUZZ_CHECK(gw_error_body(true, no->status, no->code, no->message,
					no->field, &b) == SW_OK) &&
	    SW_FUZZ_CHECK(sw_error_msg_decode((const uint8_t *)b.data, b.len,
					      &em, NULL) == SW_OK)) {
		SW_FUZZ_CHECK(em.status == (uint32_t)no->status);
		SW_FUZZ_CHECK(sw_fuzz_same(em.code.ptr, em.code.len, no->code,
					   strlen(no->code)));
		SW_FUZZ_CHECK(sw_fuzz_same(em.message.ptr, em.message.len,
					   no->message, strlen(no->message)));
		SW_FUZZ_CHECK(sw_fuzz_same(em.field.ptr, em.field.len,
					   no->field, strlen(no->field)));
	}
	SW_FUZZ_CHECK(gwf_secret_free(b.data, b.len, input_has));
	sw_buf_free(&b);
	sw_buf_init(&b, 0, NULL);
	if (!SW_FUZZ_CHECK(gw_error_body(false, no->status, no->code,
					 no->message, no->field, &b) == SW_OK)) {
		sw_buf_free(&b);
		return;
	}
	SW_FUZZ_CHECK(gwf_utf8(b.data, b.len));
	j = cJSON_ParseWithLength(b.data, b.len);
	if (SW_FUZZ_CHECK(cJSON_IsObject(j))) {
		m = cJSON_GetObjectItemCaseSensitive(j, "message");
		c = cJSON_GetObjectItemCaseSensitive(j, "code");
		f = cJSON_GetObjectItemCaseSensitive(j, "field");
		SW_FUZZ_CHECK(cJSON_IsString(m) &&
			      !strcmp(m->valuestring, no->message));
		SW_FUZZ_CHECK(cJSON_IsString(c) && !strcmp(c->valuestring, no->code));
		SW_FUZZ_CHECK(no->field[0] ? cJSON_IsString(f) &&
					     !strcmp(f->valuestring, no->field)
					   : f == NULL);
	}
	cJSON_Delete(j);
	sw_buf_free(&b);
}

/* A refusal's shape: status, code, a non-empty UTF-8 message. */
static void gwf_refusal(const gw_refusal *no, int rc, bool may_503,
			bool input_has)
{
	int st = no->status;

	if (!SW_FUZZ_CHECK(rc == st))
		return;
	if (!SW_FUZZ_CHECK(st == 400 || st == 401 || st == 404 || st == 405 ||
			   st == 413 || st == 415 || (st == 503 && may_503)))
		fprintf(stderr, "status %d: %s\n", st, no->message);
	SW_FUZZ_CHECK(no->code != NULL && no->code[0] != '\0');
	SW_FUZZ_CHECK(no->message[0] != '\0');
	SW_FUZZ_CHECK(gwf_utf8(no->message, strlen(no->message)));
	SW_FUZZ_CHECK(gwf_utf8(no->field, strlen(no->field)));
	SW_FUZZ_CHECK(gwf_secret_free(no->message, strlen(no->message), input_has));
	SW_FUZZ_CHECK((no->hname == NULL) == (no->hval == NULL));
	gwf_error_bodies(no, input_has);
}

/* What would go upstream is canonical: strict parse, same bytes back. */
static void gwf_canonical(const sw_buf *json)
{
	sw_parse_opts po = { .kind = SW_KIND_UPDATE };
	sw_update *u = NULL;
	sw_buf again;
	sw_error e;

	SW_FUZZ_CHECK(gwf_utf8(json->data, json->len));
	sw_error_clear(&e);
	if (!SW_FUZZ_CHECK(sw_json_parse(json->data, json->len, &po, &u, &e) ==
			   SW_OK)) {
		fprintf(stderr, "upstream body does not parse: %s: %s\n%s\n",
			e.path, e.message, json->data);
		return;
	}
	sw_buf_init(&again, 0, NULL);
	if (SW_FUZZ_CHECK(sw_json_write(u, NULL, &again, NULL) == SW_OK))
		SW_FUZZ_CHECK(sw_fuzz_same(again.data, again.len, json->data,
					   json->len));
	sw_buf_free(&again);
	sw_update_free(u);
}

/* An upstream path: the prefix and one segment as sw_session_path makes
 * it for sid (the segment: unreserved bytes and %XX, not "." or ".."). */
static void gwf_path(const char *sid, size_t sid_len, const sw_buf *path)
{
	static const char ok[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
				 "0123456789-_.!~*'()%";
	size_t pre = strlen(SW_SESSION_PATH_PREFIX), i;
	const char *seg;
	sw_buf want;

	if (!SW_FUZZ_CHECK(path->len > pre &&
			   !memcmp(path->data, SW_SESSION_PATH_PREFIX, pre)))
		return;
	seg = path->data + pre;
	for (i = 0; seg[i]; i++)
		if (!SW_FUZZ_CHECK(strchr(ok, seg[i]) != NULL))
			break;
	SW_FUZZ_CHECK(strcmp(seg, ".") != 0 && strcmp(seg, "..") != 0);
	sw_buf_init(&want, 0, NULL);
	if (SW_FUZZ_CHECK(sw_session_path(sid, sid_len, &want, NULL) == SW_OK))
		SW_FUZZ_CHECK(sw_fuzz_same(want.data, want.len, path->data,
					   path->len));
	sw_buf_free(&want);
}

/* Whether a batch item comes after b in (session, seq, place) order. */
static bool gwf_after(const gw_batch_item *a, const gw_batch_item *b)
{
	size_t n = a->sid_len < b->sid_len ? a->sid_len : b->sid_len;
	int c = memcmp(a->sid, b->sid, n);

	if (c != 0)
		return c > 0;
	if (a->sid_len != b->sid_len)
		return a->sid_len > b->sid_len;
	if (a->seq != b->seq)
		return a->seq > b->seq;
	return a->idx > b->idx;
}

static void gwf_batch(const uint8_t *body, size_t len, bool input_has)
{
	gw_batch b;
	gw_refusal no;
	bool seen[16];
	size_t k;
	int rc = gw_batch_plan(&gwf_cfg, body, len, &b, &no);

	if (rc != 0) {
		SW_FUZZ_CHECK(rc == 400 || rc == 413);
		gwf_refusal(&no, rc, false, input_has);
		gw_batch_free(&b);
		return;
	}
	memset(seen, 0, sizeof(seen));
	SW_FUZZ_CHECK(b.n <= gwf_cfg.max_batch_items);
	for (k = 0; k < b.n && k < 16; k++) {
		const gw_batch_item *it = &b.items[k];

		if (!SW_FUZZ_CHECK(it->idx < b.n && !seen[it->idx]))
			break;
		seen[it->idx] = true;
		if (k > 0)
			SW_FUZZ_CHECK(gwf_after(it, &b.items[k - 1]));
		SW_FUZZ_CHECK(it->sid[it->sid_len] == '\0');
		if (it->status == 0) {
			gwf_path(it->sid, it->sid_len, &it->path);
			gwf_canonical(&it->json);
			SW_FUZZ_CHECK(it->msg[0] == '\0');
		} else {
			SW_FUZZ_CHECK(it->status == 400 && it->msg[0] != '\0');
			SW_FUZZ_CHECK(gwf_utf8(it->msg, strlen(it->msg)));
		}
	}
	gw_batch_free(&b);
}

static void gwf_patch(const gw_req_head *h, const uint8_t *body, size_t len,
		      bool input_has)
{
	gw_refusal no;
	sw_buf json;
	int rc;

	SW_FUZZ_CHECK(h->kind == GW_BODY_PB || h->kind == GW_BODY_JSON);
	gwf_path(h->sid.data, h->sid.len, &h->upath);
	sw_buf_init(&json, 0, NULL);
	rc = gw_req_canonical(&gwf_cfg, body, len, h->kind, &json, &no);
	if (rc == 0)
		gwf_canonical(&json);
	else
		gwf_refusal(&no, rc, false, input_has);
	sw_buf_free(&json);
}

/* The next line of data[*off..size) as a NUL-terminated copy (NULL when
 * empty: an absent header). A NUL inside ends the value, as it does in
 * the strings libmicrohttpd hands over. */
static char *gwf_line(const uint8_t *data, size_t size, size_t *off)
{
	const uint8_t *p = data + *off, *nl;
	size_t n = size - *off;
	char *s;

	nl = memchr(p, '\n', n);
	if (nl != NULL)
		n = (size_t)(nl - p);
	*off += n + (nl != NULL);
	if (n == 0)
		return NULL;
	s = sw_fuzz_malloc(n + 1);
	memcpy(s, p, n);
	s[n] = '\0';
	return s;
}

/* Whether s holds word, in any case. */
static bool gwf_names(const char *s, const char *word)
{
	size_t n = strlen(word);

	for (; *s != '\0'; s++)
		if (strncasecmp(s, word, n) == 0)
			return true;
	return false;
}

int SW_FUZZ_ENTRY(gateway)(const uint8_t *data, size_t size)
{
	char *ln[6];
	size_t off = 1, k;
	gw_req_head_in in;
	gw_req_env env;
	gw_req_head h;
	gw_refusal no;
	bool input_has;
	uint8_t flags;
	int rc;

	if (size < 1 || !gwf_setup())
		return 0;
	flags = data[0];
	for (k = 0; k < 6; k++)
		ln[k] = gwf_line(data, size, &off);
	memset(&in, 0, sizeof(in));
	in.method = ln[0];
	in.url = ln[1];
	in.content_type = ln[2];
	in.accept = ln[3];
	in.authorization = ln[4];
	in.content_length = ln[5];
	in.content_length_differ = (flags & 2) != 0;
	in.prefer = (flags & 16) ? ln[3] : NULL;
	/* a secret in the input other than in Authorization may be echoed */
	input_has = gwf_has(data, size, GWF_ORG_KEY);
	for (k = 0; k < 6; k++)
		if (k != 4 && ln[k] != NULL &&
		    (gwf_has(ln[k], strlen(ln[k]), GWF_TOKEN1) ||
		     gwf_has(ln[k], strlen(ln[k]), GWF_TOKEN2)))
			input_has = true;
	if (gwf_has(data + off, size - off, GWF_TOKEN1) ||
	    gwf_has(data + off, size - off, GWF_TOKEN2))
		input_has = true;
	env.c = &gwf_cfg;
	env.tokens = (flags & 1) ? NULL : gwf_tokens;
	env.stopping = (flags & 4) != 0;
	env.inflight = (flags & 8) ? (int)gwf_cfg.max_concurrent + 1 : 1;

	gw_req_head_init(&h);
	rc = gw_req_check_head(&env, &in, &h, &no);
	if (h.respond_async)
		SW_FUZZ_CHECK(in.prefer != NULL &&
			      gwf_names(in.prefer, "respond-async"));
	if (in.prefer != NULL && strcasecmp(in.prefer, "respond-async") == 0)
		SW_FUZZ_CHECK(gw_prefers_async(in.prefer));
	if (rc != 0) {
		gwf_refusal(&no, rc, (flags & 12) != 0, input_has);
	} else if (h.route == GW_ROUTE_PATCH || h.route == GW_ROUTE_BATCH) {
		const char *a = in.authorization;

		if (env.tokens != NULL)
			SW_FUZZ_CHECK(a != NULL &&
				      ((!strcmp(h.device, "dev-one") &&
					strstr(a, GWF_TOKEN1)) ||
				       (!strcmp(h.device, "dev-two") &&
					strstr(a, GWF_TOKEN2))));
		else
			SW_FUZZ_CHECK(!strcmp(h.device, "anonymous"));
		SW_FUZZ_CHECK((flags & 12) == 0);
		if (h.route == GW_ROUTE_PATCH)
			gwf_patch(&h, data + off, size - off, input_has);
		else
			gwf_batch(data + off, size - off, input_has);
	} else {
		SW_FUZZ_CHECK(h.route == GW_ROUTE_HEALTHZ ||
			      h.route == GW_ROUTE_READYZ ||
			      h.route == GW_ROUTE_METRICS);
	}
	gw_req_head_free(&h);
	for (k = 0; k < 6; k++)
		free(ln[k]);
	return 0;
}
