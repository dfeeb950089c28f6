/* upstream.c - PATCHes canonical JSON to the orq.ai API over libcurl, on
 * the caller's event loop.
 *
 * gw_upstream is what every loop shares, read-only after creation: the
 * base URL, the header list holding the org key, and a CURLSH sharing the
 * DNS and TLS session caches (under its own locks, taken when a
 * connection is set up, not per request). gw_uplink is one loop's: a curl
 * multi handle driven by the socket-action API, its sockets in the loop's
 * epoll set, its single timer a loop timer (curl's
 * docs/examples/ephiperfifo.c is the shape). Its connection cache keeps
 * connections to the upstream open between calls, and finished easy
 * handles wait in an idle list for the next call. Nothing here takes a
 * lock on a call's path; every callback runs on the loop's thread. The
 * proxy environment is read once (curl would read it per transfer).
 *
 * A call is up to max_attempts attempts. After each, retry.c says whether
 * another is worth it and how long to wait (backoff, Retry-After, budget);
 * the wait is a loop timer. done() gets the last attempt's answer.
 * The key lives only in one header string; bodies and error texts coming
 * back are scrubbed of it anyway.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "gw.h"

#define BODY_MAX ((size_t)1 << 20)
#define IDLE_MAX 256 /* easy handles kept per loop */

struct gw_upstream {
	const gw_config *cfg;
	size_t base_len;
	char *key;                   /* copy of the API key, for scrubbing */
	struct curl_slist *headers;  /* read-only, shared by every handle */
	char *proxy, *noproxy;       /* from the environment, read once */
	CURLSH *share;
	pthread_mutex_t share_mu[CURL_LOCK_DATA_LAST];
};

typedef struct upjob upjob;

struct gw_uplink {
	gw_upstream *up;
	gw_loop *loop;
	CURLM *multi;
	gw_timer curl_timer;         /* curl's one timer */
	size_t active;               /* transfers in the multi handle */
	upjob *waiting;              /* calls backing off (a list) */
	CURL *idle[IDLE_MAX];
	size_t n_idle;
	struct upsock **socks;       /* by fd: every socket curl opened */
	size_t n_socks;
	bool closing;                /* in gw_uplink_free: no pass running */
};

/* One socket of curl's. It stays in the loop's epoll set between
 * transfers (curl removes a cached connection's socket after each one
 * and adds it back for the next: two epoll_ctl per request otherwise)
 * and leaves it when curl closes it (CURLOPT_CLOSESOCKETFUNCTION), or
 * when it stirs while no transfer wants it (the peer closed an idle
 * connection: level-triggered, it would wake the loop for ever). */
typedef struct upsock {
	gw_io io;                    /* io.fd >= 0: in the epoll set */
	gw_uplink *ul;
	int fd;
	bool wanted;                 /* curl watches it for a transfer */
	gw_post free_post;           /* freed after the loop's pass */
} upsock;

/* ==== Global set-up ==== */

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_FAILED_INIT;

static void global_init(void)
{
	global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ==== One attempt's answer ==== */

typedef struct attempt {
	char *body;
	size_t len;
	bool too_big;
	char content_type[128];
	char retry_after[64];
	bool has_retry_after;
} attempt;

static size_t on_body(char *data, size_t size, size_t nmemb, void *ud)
{
	attempt *a = ud;
	size_t n = size * nmemb;
	char *nb;

	if (n > BODY_MAX - a->len) {
		a->too_big = true;
		return 0;
	}
	nb = realloc(a->body, a->len + n + 1);
	if (nb == NULL)
		return 0;
	memcpy(nb + a->len, data, n);
	a->len += n;
	nb[a->len] = '\0';
	a->body = nb;
	return n;
}

/* Copies a header value (trimmed) into out if name matches. */
static bool header_value(const char *line, size_t n, const char *name,
			 char *out, size_t cap)
{
	size_t k = strlen(name), i, j;

	if (n <= k || strncasecmp(line, name, k) != 0 || line[k] != ':')
		return false;
	i = k + 1;
	while (i < n && (line[i] == ' ' || line[i] == '\t'))
		i++;
	j = n;
	while (j > i && (line[j - 1] == '\r' || line[j - 1] == '\n' ||
			 line[j - 1] == ' ' || line[j - 1] == '\t'))
		j--;
	if (j - i >= cap)
		j = i + cap - 1;
	memcpy(out, line + i, j - i);
	out[j - i] = '\0';
	return true;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *ud)
{
	attempt *a = ud;
	size_t n = size * nmemb;

	if (n >= 5 && memcmp(data, "HTTP/", 5) == 0) {
		/* a new response (after a 1xx): forget the previous one's */
		a->content_type[0] = '\0';
		a->retry_after[0] = '\0';
		a->has_retry_after = false;
	} else if (header_value(data, n, "Retry-After", a->retry_after,
				sizeof(a->retry_after))) {
		a->has_retry_after = true;
	} else {
		header_value(data, n, "Content-Type", a->content_type,
			     sizeof(a->content_type));
	}
	return n;
}

/* ==== Shared part ==== */

static void share_lock(CURL *h, curl_lock_data d, curl_lock_access acc,
		       void *ud)
{
	gw_upstream *up = ud;

	(void)h;
	(void)acc;
	if ((int)d >= 0 && d < CURL_LOCK_DATA_LAST)
		pthread_mutex_lock(&up->share_mu[d]);
}

static void share_unlock(CURL *h, curl_lock_data d, void *ud)
{
	gw_upstream *up = ud;

	(void)h;
	if ((int)d >= 0 && d < CURL_LOCK_DATA_LAST)
		pthread_mutex_unlock(&up->share_mu[d]);
}

/* The proxy for the upstream's scheme as curl would take it from the
 * environment on every transfer (https_proxy / HTTPS_PROXY, http_proxy,
 * then all_proxy / ALL_PROXY; no_proxy / NO_PROXY), read once: "" for
 * none, which also stops curl from looking again. 0 or -1 (no memory). */
static int proxy_from_env(gw_upstream *up, const char *url)
{
	const char *v = NULL, *np;

	if (strncasecmp(url, "https:", 6) == 0) {
		v = getenv("https_proxy");
		if (v == NULL)
			v = getenv("HTTPS_PROXY");
	} else {
		v = getenv("http_proxy"); /* never HTTP_PROXY, as curl (CGI) */
	}
	if (v == NULL)
		v = getenv("all_proxy");
	if (v == NULL)
		v = getenv("ALL_PROXY");
	np = getenv("no_proxy");
	if (np == NULL)
		np = getenv("NO_PROXY");
	up->proxy = strdup(v ? v : "");
	up->noproxy = np ? strdup(np) : NULL;
	return up->proxy != NULL && (np == NULL || up->noproxy != NULL) ? 0 : -1;
}

/* The fixed headers and the key's, in one list. 0 or -1. */
static int headers_new(gw_upstream *up, const char *key)
{
	static const char *const fixed[] = {
		"Content-Type: application/json",
		"Accept: application/json",
		"Expect:",
	};
	struct curl_slist *l = NULL, *t;
	sw_buf auth;
	size_t j;
	int rc = -1;

	sw_buf_init(&auth, 0, NULL);
	if (sw_buf_append(&auth, "Authorization: Bearer ", 22) != SW_OK ||
	    sw_buf_append(&auth, key, strlen(key)) != SW_OK)
		goto out;
	for (j = 0; j < sizeof(fixed) / sizeof(fixed[0]); j++) {
		t = curl_slist_append(l, fixed[j]);
		if (t == NULL)
			goto out;
		l = t;
	}
	t = curl_slist_append(l, auth.data);
	if (t == NULL)
		goto out;
	up->headers = l = t;
	rc = 0;
out:
	if (rc != 0)
		curl_slist_free_all(l);
	/* the list holds a copy: wipe ours */
	if (auth.data)
		memset(auth.data, 0, auth.len);
	sw_buf_free(&auth);
	return rc;
}

gw_upstream *gw_upstream_new(const gw_config *c, char *err, size_t errlen)
{
	gw_upstream *up;
	const char *k;
	int i;

	pthread_once(&global_once, global_init);
	if (global_rc != CURLE_OK) {
		snprintf(err, errlen, "curl_global_init failed: %s",
			 curl_easy_strerror(global_rc));
		return NULL;
	}
	if (c->upstream[0] == '\0') {
		snprintf(err, errlen, "no upstream URL");
		return NULL;
	}
	if (c->api_key == NULL || c->api_key[0] == '\0') {
		snprintf(err, errlen, "no API key");
		return NULL;
	}
	for (k = c->api_key; *k; k++) {
		if ((unsigned char)*k < 0x21 || *k == 0x7f) {
			snprintf(err, errlen, "the API key contains a space or "
				 "control character (byte %zu)",
				 (size_t)(k - c->api_key));
			return NULL;
		}
	}
	up = calloc(1, sizeof(*up));
	if (up == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	up->cfg = c;
	up->base_len = strlen(c->upstream);
	for (i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_init(&up->share_mu[i], NULL);
	up->key = strdup(c->api_key);
	if (up->key == NULL || headers_new(up, c->api_key) != 0 ||
	    proxy_from_env(up, c->upstream) != 0) {
		snprintf(err, errlen, "out of memory");
		gw_upstream_free(up);
		return NULL;
	}
	up->share = curl_share_init();
	if (up->share != NULL &&
	    (curl_share_setopt(up->share, CURLSHOPT_LOCKFUNC, share_lock) ||
	     curl_share_setopt(up->share, CURLSHOPT_UNLOCKFUNC, share_unlock) ||
	     curl_share_setopt(up->share, CURLSHOPT_USERDATA, up) ||
	     curl_share_setopt(up->share, CURLSHOPT_SHARE,
			       CURL_LOCK_DATA_DNS) ||
	     curl_share_setopt(up->share, CURLSHOPT_SHARE,
			       CURL_LOCK_DATA_SSL_SESSION))) {
		curl_share_cleanup(up->share);
		up->share = NULL; /* works without, just less sharing */
	}
	return up;
}

void gw_upstream_free(gw_upstream *up)
{
	int i;

	if (up == NULL)
		return;
	if (up->share)
		curl_share_cleanup(up->share);
	if (up->headers) {
		struct curl_slist *l;

		for (l = up->headers; l; l = l->next)
			memset(l->data, 0, strlen(l->data));
		curl_slist_free_all(up->headers);
	}
	if (up->key) {
		memset(up->key, 0, strlen(up->key));
		free(up->key);
	}
	free(up->proxy);
	free(up->noproxy);
	for (i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_destroy(&up->share_mu[i]);
	free(up);
}

void gw_response_free(gw_response *r)
{
	if (r == NULL)
		return;
	free(r->body);
	r->body = NULL;
	r->body_len = 0;
}

size_t gw_scrub(char *b, size_t len, const char *key)
{
	size_t kn = key ? strlen(key) : 0, off = 0;

	if (b == NULL || kn == 0)
		return len;
	while (len - off >= kn) {
		char *p = memchr(b + off, key[0], len - off - kn + 1);
		size_t at, rn = kn < 3 ? kn : 3;

		if (p == NULL)
			break;
		at = (size_t)(p - b);
		if (memcmp(p, key, kn) != 0) {
			off = at + 1;
			continue;
		}
		memcpy(p, "***", rn);
		/* the rest moves down with its terminating NUL */
		memmove(p + rn, p + kn, len - at - kn + 1);
		len -= kn - rn;
		/* go on after the stars: a key made of stars would match
		 * its own replacement for ever */
		off = at + rn;
	}
	return len;
}

/* ==== Calls ==== */

struct upjob {
	gw_uplink *ul;
	upjob *prev, *next;          /* the waiting list, while backing off */
	CURL *h;
	const char *json;
	size_t json_len;
	gw_upstream_done_fn done;
	void *ud;
	gw_retry_policy policy;      /* the config's, read at the call */
	unsigned n;                  /* attempts made */
	int64_t start;               /* ms, monotonic */
	double t0;                   /* this attempt's start */
	uint64_t rng;
	gw_timer backoff;
	attempt a;
	char errbuf[CURL_ERROR_SIZE];
	gw_response resp;
	char url[];
};

/* A new easy handle with every option that does not change per call. */
static int on_close_socket(void *clientp, curl_socket_t fd);

static CURL *handle_new(gw_uplink *ul)
{
	gw_upstream *up = ul->up;
	const gw_config *c = up->cfg;
	CURL *h = curl_easy_init();

	if (h == NULL)
		return NULL;
	if (curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "PATCH") ||
	    curl_easy_setopt(h, CURLOPT_HTTPHEADER, up->headers) ||
	    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L) ||
	    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
			     c->connect_timeout_ms) ||
	    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, c->upstream_timeout_ms) ||
	    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body) ||
	    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header) ||
	    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https") ||
	    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L) ||
	    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L) ||
	    curl_easy_setopt(h, CURLOPT_CLOSESOCKETFUNCTION, on_close_socket) ||
	    curl_easy_setopt(h, CURLOPT_CLOSESOCKETDATA, ul) ||
	    curl_easy_setopt(h, CURLOPT_PROXY, up->proxy) ||
	    (up->noproxy &&
	     curl_easy_setopt(h, CURLOPT_NOPROXY, up->noproxy)) ||
	    (up->share && curl_easy_setopt(h, CURLOPT_SHARE, up->share))) {
		curl_easy_cleanup(h);
		return NULL;
	}
	return h;
}

static void handle_give(gw_uplink *ul, CURL *h)
{
	if (h == NULL)
		return;
	if (ul->n_idle < IDLE_MAX)
		ul->idle[ul->n_idle++] = h;
	else
		curl_easy_cleanup(h);
}

/* The call is over: its handle back to the idle list, its answer to
 * done, the job freed. */
static void job_finish(upjob *j)
{
	gw_uplink *ul = j->ul;

	handle_give(ul, j->h);
	j->h = NULL;
	free(j->a.body);
	j->done(j->ud, &j->resp);
	free(j);
}

/* Attempt j->n ended with rc: counts it and makes it the answer (the
 * body moves into j->resp). Returns whether it is worth another one. */
static bool attempt_end(upjob *j, CURLcode rc)
{
	gw_upstream *up = j->ul->up;
	gw_response *resp = &j->resp;
	attempt *a = &j->a;
	long status = 0;

	curl_easy_setopt(j->h, CURLOPT_ERRORBUFFER, NULL);
	if (rc == CURLE_OK)
		curl_easy_getinfo(j->h, CURLINFO_RESPONSE_CODE, &status);
	gw_metrics_upstream(rc == CURLE_OK ? (int)status : 0, now_s() - j->t0);
	j->n++;
	gw_response_free(resp);
	resp->attempts = (int)j->n;
	resp->retry_after_ms = -1;
	resp->error[0] = '\0';
	resp->content_type[0] = '\0';
	resp->curl_code = (int)rc;
	if (rc == CURLE_OK) {
		resp->status = (int)status;
		a->len = gw_scrub(a->body, a->len, up->key);
		resp->body = a->body;
		resp->body_len = a->len;
		a->body = NULL;
		snprintf(resp->content_type, sizeof(resp->content_type), "%s",
			 a->content_type);
		if (a->has_retry_after)
			resp->retry_after_ms =
				gw_retry_after_ms(a->retry_after,
						  (long)time(NULL));
	} else {
		resp->status = 0;
		if (a->too_big)
			snprintf(resp->error, sizeof(resp->error),
				 "upstream answer larger than %zu bytes",
				 BODY_MAX);
		else
			gw_format(resp->error, sizeof(resp->error), "%s%s%s",
				  curl_easy_strerror(rc),
				  j->errbuf[0] ? ": " : "", j->errbuf);
		gw_scrub(resp->error, strlen(resp->error), up->key);
	}
	free(a->body);
	a->body = NULL;
	return gw_retry_retryable(&j->policy, resp->status, resp->curl_code);
}

/* Starts the next attempt; finishes the call when it cannot start. */
static void attempt_start(upjob *j)
{
	gw_uplink *ul = j->ul;
	CURL *h;

	if (j->h == NULL)
		j->h = ul->n_idle ? ul->idle[--ul->n_idle] : handle_new(ul);
	h = j->h;
	if (h == NULL) {
		snprintf(j->resp.error, sizeof(j->resp.error),
			 "cannot create a curl handle");
		goto fail;
	}
	memset(&j->a, 0, sizeof(j->a));
	j->errbuf[0] = '\0';
	curl_easy_setopt(h, CURLOPT_URL, &j->url[0]);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, j->json ? j->json : "");
	curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)j->json_len);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &j->a);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, &j->a);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, j->errbuf);
	curl_easy_setopt(h, CURLOPT_PRIVATE, j);
	j->t0 = now_s();
	if (curl_multi_add_handle(ul->multi, h) != CURLM_OK) {
		curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
		snprintf(j->resp.error, sizeof(j->resp.error),
			 "cannot start a transfer");
		goto fail;
	}
	ul->active++;
	return;
fail:
	j->resp.status = 0;
	j->resp.curl_code = GW_CURL_NOT_STARTED;
	j->resp.attempts = (int)j->n;
	job_finish(j);
}

static void waiting_remove(upjob *j)
{
	if (j->prev)
		j->prev->next = j->next;
	else
		j->ul->waiting = j->next;
	if (j->next)
		j->next->prev = j->prev;
	j->prev = j->next = NULL;
}

static void on_backoff_over(void *ud)
{
	upjob *j = ud;

	waiting_remove(j);
	gw_metrics_retry();
	attempt_start(j);
}

/* A transfer ended: another attempt after a wait, or the answer. */
static void transfer_ended(upjob *j, CURLcode rc)
{
	gw_uplink *ul = j->ul;
	long wait;

	curl_multi_remove_handle(ul->multi, j->h);
	ul->active--;
	if (!attempt_end(j, rc)) {
		job_finish(j);
		return;
	}
	wait = gw_retry_next(&j->policy, j->n, (long)(gw_loop_now(ul->loop) - j->start),
			     j->resp.retry_after_ms, &j->rng);
	if (wait < 0) {
		job_finish(j);
		return;
	}
	j->next = ul->waiting;
	if (j->next)
		j->next->prev = j;
	ul->waiting = j;
	gw_timer_start(ul->loop, &j->backoff, wait);
}

/* Every transfer that ended. */
static void reap(gw_uplink *ul)
{
	CURLMsg *msg;
	int left;

	while ((msg = curl_multi_info_read(ul->multi, &left)) != NULL) {
		char *priv = NULL;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
		/* msg is invalid once its handle is removed */
		transfer_ended((upjob *)(void *)priv, msg->data.result);
	}
}

int gw_uplink_patch(gw_uplink *ul, const char *path, const char *json,
		    size_t json_len, bool retry, gw_upstream_done_fn done,
		    void *ud)
{
	gw_upstream *up = ul->up;
	size_t pn = strlen(path);
	upjob *j;

	if (done == NULL)
		return -1;
	j = calloc(1, sizeof(*j) + up->base_len + pn + 1);
	if (j == NULL)
		return -1;
	memcpy(j->url, up->cfg->upstream, up->base_len);
	memcpy(j->url + up->base_len, path, pn + 1);
	j->ul = ul;
	j->json = json;
	j->json_len = json_len;
	j->done = done;
	j->ud = ud;
	gw_retry_policy_of(up->cfg, false, &j->policy);
	if (!retry)
		j->policy.max_attempts = 1;
	j->start = gw_loop_now(ul->loop);
	j->rng = gw_rng_seed();
	j->resp.retry_after_ms = -1;
	gw_timer_init(&j->backoff, on_backoff_over, j);
	attempt_start(j);
	return 0;
}

/* ==== curl on the loop ==== */

static void on_sock_ready(void *ud, uint32_t events)
{
	upsock *s = ud;
	gw_uplink *ul = s->ul;
	int flags = 0, running;

	if (!s->wanted) {
		/* an idle cached connection stirred (closed by the peer):
		 * out of the set; curl finds it dead when it tries it */
		gw_io_stop(ul->loop, &s->io);
		return;
	}
	if (events & EPOLLIN)
		flags |= CURL_CSELECT_IN;
	if (events & EPOLLOUT)
		flags |= CURL_CSELECT_OUT;
	if (events & (EPOLLERR | EPOLLHUP))
		flags |= CURL_CSELECT_ERR;
	curl_multi_socket_action(ul->multi, s->fd, flags, &running);
	reap(ul);
}

static void sock_free(void *arg)
{
	free(arg);
}

static upsock *sock_of(const gw_uplink *ul, curl_socket_t fd)
{
	return fd >= 0 && (size_t)fd < ul->n_socks ? ul->socks[fd] : NULL;
}

/* CURLMOPT_SOCKETFUNCTION: what curl wants to watch, as lazily as
 * possible (see upsock). */
static int on_socket(CURL *e, curl_socket_t fd, int what, void *ud,
		     void *sockp)
{
	gw_uplink *ul = ud;
	upsock *s = sock_of(ul, fd);
	uint32_t ev;

	(void)e;
	(void)sockp;
	if (what == CURL_POLL_REMOVE) {
		if (s != NULL)
			s->wanted = false; /* stays in the set for the next */
		return 0;
	}
	ev = ((what & CURL_POLL_IN) ? EPOLLIN : 0) |
	     ((what & CURL_POLL_OUT) ? EPOLLOUT : 0);
	if (s == NULL) {
		if ((size_t)fd >= ul->n_socks) {
			size_t n = (size_t)fd * 2 + 16;
			upsock **t = realloc(ul->socks, n * sizeof(*t));

			if (t == NULL)
				return -1;
			memset(t + ul->n_socks, 0,
			       (n - ul->n_socks) * sizeof(*t));
			ul->socks = t;
			ul->n_socks = n;
		}
		s = calloc(1, sizeof(*s));
		if (s == NULL)
			return -1;
		s->ul = ul;
		s->fd = fd;
		s->io.fd = -1;
		ul->socks[fd] = s;
	}
	s->wanted = true;
	if (s->io.fd < 0)
		return gw_io_start(ul->loop, &s->io, fd, ev, on_sock_ready, s);
	return gw_io_modify(ul->loop, &s->io, ev);
}

/* CURLOPT_CLOSESOCKETFUNCTION: the socket leaves the set and the table
 * before it is closed (its number may come back for another socket). */
static int on_close_socket(void *clientp, curl_socket_t fd)
{
	gw_uplink *ul = clientp;
	upsock *s = sock_of(ul, fd);

	if (s != NULL) {
		gw_io_stop(ul->loop, &s->io);
		ul->socks[fd] = NULL;
		/* it may be in this pass's ready list: free it after */
		if (ul->closing)
			free(s);
		else
			gw_loop_post(ul->loop, &s->free_post, sock_free, s);
	}
	return close(fd);
}

static void on_curl_timer(void *ud)
{
	gw_uplink *ul = ud;
	int running;

	curl_multi_socket_action(ul->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	reap(ul);
}

/* CURLMOPT_TIMERFUNCTION: curl's single timer as a loop timer (never
 * acted on from inside this callback). */
static int on_timer(CURLM *m, long timeout_ms, void *ud)
{
	gw_uplink *ul = ud;

	(void)m;
	if (timeout_ms < 0)
		gw_timer_stop(ul->loop, &ul->curl_timer);
	else if (gw_timer_start(ul->loop, &ul->curl_timer, timeout_ms) != 0)
		return -1;
	return 0;
}

gw_uplink *gw_uplink_new(gw_upstream *up, gw_loop *loop, char *err,
			 size_t errlen)
{
	gw_uplink *ul = calloc(1, sizeof(*ul));
	long conns = (long)up->cfg->max_concurrent + 64;

	if (ul == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	ul->up = up;
	ul->loop = loop;
	gw_timer_init(&ul->curl_timer, on_curl_timer, ul);
	ul->multi = curl_multi_init();
	if (ul->multi == NULL) {
		snprintf(err, errlen, "cannot create a curl multi handle");
		free(ul);
		return NULL;
	}
	curl_multi_setopt(ul->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
	curl_multi_setopt(ul->multi, CURLMOPT_SOCKETDATA, ul);
	curl_multi_setopt(ul->multi, CURLMOPT_TIMERFUNCTION, on_timer);
	curl_multi_setopt(ul->multi, CURLMOPT_TIMERDATA, ul);
	curl_multi_setopt(ul->multi, CURLMOPT_MAX_HOST_CONNECTIONS, conns);
	curl_multi_setopt(ul->multi, CURLMOPT_MAXCONNECTS, conns);
	return ul;
}

size_t gw_uplink_busy(const gw_uplink *ul)
{
	size_t n = ul ? ul->active : 0;
	const upjob *j;

	for (j = ul ? ul->waiting : NULL; j != NULL; j = j->next)
		n++;
	return n;
}

void gw_uplink_hurry(gw_uplink *ul)
{
	while (ul != NULL && ul->waiting != NULL) {
		upjob *j = ul->waiting;

		waiting_remove(j);
		gw_timer_stop(ul->loop, &j->backoff);
		job_finish(j);
	}
}

void gw_uplink_free(gw_uplink *ul)
{
	size_t i;

	if (ul == NULL)
		return;
	gw_uplink_hurry(ul);
	gw_timer_stop(ul->loop, &ul->curl_timer);
	ul->closing = true;
	while (ul->n_idle)
		curl_easy_cleanup(ul->idle[--ul->n_idle]);
	/* closes the cached connections: on_close_socket for their sockets */
	curl_multi_cleanup(ul->multi);
	for (i = 0; i < ul->n_socks; i++) {
		if (ul->socks[i] != NULL) {
			gw_io_stop(ul->loop, &ul->socks[i]->io);
			free(ul->socks[i]);
		}
	}
	free(ul->socks);
	free(ul);
}
