/* upstream.c - forwards canonical JSON to the orq.ai API over libcurl.
 *
 * Connection reuse: a pool of curl easy handles (mutex + free list). Each
 * easy handle keeps its own connection cache, so a handle taken from the
 * pool finds its TCP/TLS connection to the upstream still open and sends
 * the next PATCH on it without a new handshake. The pool grows on demand;
 * at most POOL_IDLE_MAX idle handles are kept, a handle returned when the
 * pool is full is closed. A CURLSH shares the DNS cache and the TLS
 * session cache between the handles (so a new handle resumes TLS). The
 * connection cache itself is not shared: libcurl documents that sharing
 * it between concurrent threads is unsafe.
 *
 * Retries: 429, 500, 502, 503, 504, timeouts and connection errors, with
 * full-jitter exponential backoff (random in [0, min(max, base * 2^n)]),
 * waiting at least Retry-After when given, within max_attempts attempts
 * and retry_budget_ms. The API key lives only in one header string; error
 * texts are scrubbed of it anyway.
 */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "gw.h"

#define POOL_IDLE_MAX 64
#define BODY_MAX ((size_t)1 << 20)
#define RETRY_AFTER_MAX_S 86400L /* a day: bounded delta-seconds */
#define ASYNC_IDLE_MAX 1024     /* easy handles kept by the event thread */
#define ASYNC_POLL_MAX_MS 1000  /* the event loop looks up at least this often */

struct gw_upstream {
	const gw_config *cfg;
	char *key;                   /* copy of the API key, for scrubbing */
	struct curl_slist *headers;  /* read-only, shared by every handle */
	CURLSH *share;
	pthread_mutex_t share_mu[CURL_LOCK_DATA_LAST];
	pthread_mutex_t mu;          /* guards the free list */
	CURL *idle[POOL_IDLE_MAX];
	size_t n_idle;
	/* the asynchronous calls: one event thread, started on first use */
	pthread_mutex_t amu;         /* guards aq_*, a_started, a_stop */
	struct ajob *aq_head, *aq_tail; /* submitted, not yet started */
	bool a_started, a_stop;
	pthread_t athr;
	CURLM *multi;
	int epfd, evfd;              /* the loop's epoll set, its wake-up */
	atomic_bool a_sleeping;      /* in epoll_wait: wake it */
	int64_t curl_due;            /* curl's timer (ms), -1: none */
	/* owned by the event thread */
	struct ajob *waiting;        /* backing off until their due time */
	size_t a_active;             /* transfers in the multi handle */
	CURL *a_idle[ASYNC_IDLE_MAX];
	size_t n_a_idle;
};

/* ==== Global set-up ==== */

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_FAILED_INIT;

static void global_init(void)
{
	global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ==== Time and randomness ==== */

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Sleeps ms milliseconds, resuming after signals. */
static void sleep_ms(long ms)
{
	struct timespec ts;

	if (ms <= 0)
		return;
	ts.tv_sec = ms / 1000;
	ts.tv_nsec = (ms % 1000) * 1000000L;
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* A per-call xorshift64* seeded from the clock, the thread and a stack
 * address: no shared state, so thread-safe. */
static uint64_t rng_seed(void)
{
	struct timespec ts;
	uint64_t s;
	int local;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	s = (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ull ^ (uint64_t)ts.tv_sec;
	s ^= (uint64_t)pthread_self() * 0xBF58476D1CE4E5B9ull;
	s ^= (uint64_t)(uintptr_t)&local;
	return s ? s : 0x2545F4914F6CDD1Dull;
}

static uint64_t rng_next(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1Dull;
}

/* Full jitter: random in [0, min(max, base * 2^attempt)]. */
static long backoff_ms(const gw_config *c, unsigned attempt, uint64_t *rng)
{
	long cap = c->backoff_base_ms > 0 ? c->backoff_base_ms : 0;
	unsigned i;

	for (i = 0; i < attempt && cap < c->backoff_max_ms; i++)
		cap *= 2;
	if (cap > c->backoff_max_ms)
		cap = c->backoff_max_ms;
	if (cap <= 0)
		return 0;
	return (long)(rng_next(rng) % ((uint64_t)cap + 1));
}

/* ==== Retry-After ==== */

long gw_retry_after_ms(const char *value, long now_unix_s)
{
	size_t n, i;
	const char *p;
	time_t now = (time_t)now_unix_s, t;

	if (value == NULL)
		return -1;
	while (*value == ' ' || *value == '\t')
		value++;
	n = strlen(value);
	while (n && (value[n - 1] == ' ' || value[n - 1] == '\t' ||
		     value[n - 1] == '\r' || value[n - 1] == '\n'))
		n--;
	if (n == 0)
		return -1;
	for (i = 0; i < n && value[i] >= '0' && value[i] <= '9'; i++)
		;
	if (i == n) {
		long s = 0;

		/* delta-seconds; anything over a day is a day */
		for (p = value; p < value + n; p++) {
			s = s * 10 + (*p - '0');
			if (s > RETRY_AFTER_MAX_S) {
				s = RETRY_AFTER_MAX_S;
				break;
			}
		}
		return s * 1000;
	}
	{
		char date[64];

		if (n >= sizeof(date))
			return -1;
		memcpy(date, value, n);
		date[n] = '\0';
		t = curl_getdate(date, &now);
	}
	if (t == (time_t)-1)
		return -1;
	if (t <= now)
		return 0;
	if (t - now > RETRY_AFTER_MAX_S)
		return RETRY_AFTER_MAX_S * 1000;
	return (long)(t - now) * 1000;
}

/* ==== One attempt ==== */

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

/* ==== The pool ==== */

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

/* A new easy handle with every option that does not change per call. */
static CURL *handle_new(gw_upstream *up)
{
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
	    (up->share && curl_easy_setopt(h, CURLOPT_SHARE, up->share))) {
		curl_easy_cleanup(h);
		return NULL;
	}
	return h;
}

static CURL *pool_take(gw_upstream *up)
{
	CURL *h = NULL;

	pthread_mutex_lock(&up->mu);
	if (up->n_idle)
		h = up->idle[--up->n_idle];
	pthread_mutex_unlock(&up->mu);
	return h ? h : handle_new(up);
}

static void pool_give(gw_upstream *up, CURL *h)
{
	pthread_mutex_lock(&up->mu);
	if (up->n_idle < POOL_IDLE_MAX) {
		up->idle[up->n_idle++] = h;
		h = NULL;
	}
	pthread_mutex_unlock(&up->mu);
	if (h)
		curl_easy_cleanup(h);
}

static void async_stop(gw_upstream *up);

/* ==== Create and free ==== */

gw_upstream *gw_upstream_new(const gw_config *c, char *err, size_t errlen)
{
	gw_upstream *up;
	sw_buf auth;
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
	pthread_mutex_init(&up->mu, NULL);
	pthread_mutex_init(&up->amu, NULL);
	up->epfd = up->evfd = -1;
	for (i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_init(&up->share_mu[i], NULL);
	up->key = strdup(c->api_key);
	sw_buf_init(&auth, 0, NULL);
	if (up->key == NULL ||
	    sw_buf_append(&auth, "Authorization: Bearer ", 22) != SW_OK ||
	    sw_buf_append(&auth, c->api_key, strlen(c->api_key)) != SW_OK)
		goto fail_oom;
	{
		static const char *const fixed[] = {
			"Content-Type: application/json",
			"Accept: application/json",
			"Expect:",
		};
		struct curl_slist *l = NULL, *t;
		size_t j;

		for (j = 0; j < sizeof(fixed) / sizeof(fixed[0]); j++) {
			t = curl_slist_append(l, fixed[j]);
			if (t == NULL)
				goto fail_list;
			l = t;
		}
		t = curl_slist_append(l, auth.data);
		if (t == NULL)
			goto fail_list;
		up->headers = t;
		goto list_done;
fail_list:
		curl_slist_free_all(l);
		goto fail_oom;
	}
list_done:
	/* the header string holds a copy: wipe ours */
	memset(auth.data, 0, auth.len);
	sw_buf_free(&auth);
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

fail_oom:
	if (auth.data)
		memset(auth.data, 0, auth.len);
	sw_buf_free(&auth);
	snprintf(err, errlen, "out of memory");
	gw_upstream_free(up);
	return NULL;
}

void gw_upstream_free(gw_upstream *up)
{
	int i;

	if (up == NULL)
		return;
	async_stop(up);
	while (up->n_idle)
		curl_easy_cleanup(up->idle[--up->n_idle]);
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
	for (i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_destroy(&up->share_mu[i]);
	pthread_mutex_destroy(&up->mu);
	pthread_mutex_destroy(&up->amu);
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

/* ==== The call with retries ==== */

static bool status_retryable(int status)
{
	return status == 429 || status == 500 || status == 502 ||
	       status == 503 || status == 504;
}

/* Transport errors worth another attempt: the network, not our request. */
static bool curl_retryable(CURLcode rc)
{
	switch (rc) {
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_CONNECT:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
		return true;
	default:
		return false;
	}
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

/* The URL of path: base + path, NUL-terminated, heap (NULL: no memory). */
static char *url_of(const gw_upstream *up, const char *path)
{
	size_t bn = strlen(up->cfg->upstream), pn = strlen(path);
	char *u = malloc(bn + pn + 1);

	if (u == NULL)
		return NULL;
	memcpy(u, up->cfg->upstream, bn);
	memcpy(u + bn, path, pn + 1);
	return u;
}

/* Sets the options of one attempt on h. */
static void attempt_setup(CURL *h, const char *url, const char *json,
			  size_t json_len, attempt *a, char *errbuf)
{
	memset(a, 0, sizeof(*a));
	errbuf[0] = '\0';
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, json ? json : "");
	curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)json_len);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, a);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, a);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
}

/* Attempt n (0-based) ended with rc: counts it, makes it resp's answer
 * (a's body moves into resp). Returns whether it is worth another one;
 * *ret is 0 when an HTTP answer came back, else -1. */
static bool attempt_end(gw_upstream *up, CURL *h, CURLcode rc, attempt *a,
			const char *errbuf, unsigned n, double t0,
			gw_response *resp, int *ret)
{
	long status = 0;
	bool retry;

	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
	if (rc == CURLE_OK)
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	gw_metrics_upstream(rc == CURLE_OK ? (int)status : 0, now_s() - t0);

	/* this attempt is now the answer */
	gw_response_free(resp);
	resp->attempts = (int)n + 1;
	resp->retry_after_ms = -1;
	resp->error[0] = '\0';
	resp->content_type[0] = '\0';
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
		*ret = 0;
		retry = status_retryable((int)status);
	} else {
		resp->status = 0;
		if (a->too_big)
			snprintf(resp->error, sizeof(resp->error),
				 "upstream answer larger than %zu bytes",
				 BODY_MAX);
		else
			snprintf(resp->error, sizeof(resp->error), "%s%s%s",
				 curl_easy_strerror(rc), errbuf[0] ? ": " : "",
				 errbuf);
		gw_scrub(resp->error, strlen(resp->error), up->key);
		*ret = -1;
		retry = curl_retryable(rc);
	}
	free(a->body);
	a->body = NULL;
	return retry;
}

/* After attempt n (0-based) that is worth retrying: the wait before the
 * next one in ms, or -1 when there is none (attempts or budget used up). */
static long retry_wait(const gw_config *c, unsigned n, int64_t start,
		       const gw_response *resp, uint64_t *rng)
{
	unsigned max_attempts = c->max_attempts ? c->max_attempts : 1;
	long wait, left;

	if (n + 1 >= max_attempts)
		return -1;
	/* wait, unless the budget has no room for it */
	left = c->retry_budget_ms - (long)(now_ms() - start);
	wait = backoff_ms(c, n, rng);
	if (resp->retry_after_ms >= 0) {
		if (resp->retry_after_ms > left)
			return -1;
		if (resp->retry_after_ms > wait)
			wait = resp->retry_after_ms;
	}
	if (wait >= left)
		return -1;
	return wait;
}

int gw_upstream_patch(gw_upstream *up, const char *path, const char *json,
		      size_t json_len, gw_response *resp)
{
	const gw_config *c = up->cfg;
	unsigned max_attempts = c->max_attempts ? c->max_attempts : 1;
	int64_t start = now_ms();
	uint64_t rng = rng_seed();
	char errbuf[CURL_ERROR_SIZE];
	char *url;
	CURL *h;
	unsigned n;
	int ret = -1;

	memset(resp, 0, sizeof(*resp));
	resp->retry_after_ms = -1;
	url = url_of(up, path);
	if (url == NULL) {
		snprintf(resp->error, sizeof(resp->error), "out of memory");
		return -1;
	}
	h = pool_take(up);
	if (h == NULL) {
		snprintf(resp->error, sizeof(resp->error),
			 "cannot create a curl handle");
		free(url);
		return -1;
	}
	for (n = 0; n < max_attempts; n++) {
		attempt a;
		CURLcode rc;
		double t0 = now_s();
		long wait;

		attempt_setup(h, url, json, json_len, &a, errbuf);
		rc = curl_easy_perform(h);
		if (!attempt_end(up, h, rc, &a, errbuf, n, t0, resp, &ret))
			break;
		wait = retry_wait(c, n, start, resp, &rng);
		if (wait < 0)
			break;
		sleep_ms(wait);
		gw_metrics_retry();
	}
	pool_give(up, h);
	free(url);
	return ret;
}

/* ==== Asynchronous calls: one event thread over a curl multi handle ====
 *
 * gw_upstream_patch_async queues a job and wakes the thread (an eventfd,
 * written only while the thread sleeps in epoll_wait). The thread adds
 * each job's easy handle to the multi handle (socket-action API: curl's
 * sockets in the thread's epoll set, curl's timer as a due time), whose
 * connection cache keeps the connections to the upstream open between
 * transfers. A finished attempt goes through the
 * same attempt_end/retry_wait as the blocking call; a job backing off
 * waits in a list with its due time (the poll's timeout), then its next
 * attempt starts. done() is called from the thread.
 */

typedef struct ajob {
	struct ajob *next;
	CURL *h;
	char *url;
	const char *json;
	size_t json_len;
	gw_upstream_done_fn done;
	void *ud;
	unsigned n;            /* attempts started, minus one */
	int64_t start;         /* ms, monotonic */
	int64_t due;           /* next attempt, while waiting */
	double t0;             /* this attempt's start */
	uint64_t rng;
	int ret;
	attempt a;
	char errbuf[CURL_ERROR_SIZE];
	gw_response resp;
} ajob;

static CURL *ahandle_take(gw_upstream *up)
{
	if (up->n_a_idle)
		return up->a_idle[--up->n_a_idle];
	return handle_new(up);
}

static void ahandle_give(gw_upstream *up, CURL *h)
{
	if (h == NULL)
		return;
	if (up->n_a_idle < ASYNC_IDLE_MAX)
		up->a_idle[up->n_a_idle++] = h;
	else
		curl_easy_cleanup(h);
}

/* The job is over: hands its answer to done, frees it. */
static void ajob_finish(gw_upstream *up, ajob *j)
{
	ahandle_give(up, j->h);
	j->h = NULL;
	free(j->a.body);
	j->done(j->ud, &j->resp);
	free(j->url);
	free(j);
}

/* Starts the job's next attempt (n already set); finishes it on failure. */
static void ajob_start(gw_upstream *up, ajob *j)
{
	if (j->h == NULL)
		j->h = ahandle_take(up);
	if (j->h == NULL) {
		snprintf(j->resp.error, sizeof(j->resp.error),
			 "cannot create a curl handle");
		j->resp.status = 0;
		j->ret = -1;
		ajob_finish(up, j);
		return;
	}
	attempt_setup(j->h, j->url, j->json, j->json_len, &j->a, j->errbuf);
	curl_easy_setopt(j->h, CURLOPT_PRIVATE, j);
	j->t0 = now_s();
	if (curl_multi_add_handle(up->multi, j->h) != CURLM_OK) {
		curl_easy_setopt(j->h, CURLOPT_ERRORBUFFER, NULL);
		snprintf(j->resp.error, sizeof(j->resp.error),
			 "cannot start a transfer");
		j->resp.status = 0;
		j->ret = -1;
		ajob_finish(up, j);
		return;
	}
	up->a_active++;
}

/* A transfer ended: retry later or finish. */
static void ajob_ended(gw_upstream *up, ajob *j, CURLcode rc, bool stopping)
{
	long wait;

	curl_multi_remove_handle(up->multi, j->h);
	up->a_active--;
	if (!attempt_end(up, j->h, rc, &j->a, j->errbuf, j->n, j->t0, &j->resp,
			 &j->ret) || stopping) {
		ajob_finish(up, j);
		return;
	}
	wait = retry_wait(up->cfg, j->n, j->start, &j->resp, &j->rng);
	if (wait < 0) {
		ajob_finish(up, j);
		return;
	}
	j->due = now_ms() + wait;
	j->next = up->waiting;
	up->waiting = j;
}

/* CURLMOPT_SOCKETFUNCTION: mirrors what curl wants to watch in epoll.
 * (The signature is curl's: sockp is not const.) */
static int on_socket(CURL *e, curl_socket_t fd, int what, void *ud,
		     /* cppcheck-suppress constParameter */
		     void *sockp)
{
	gw_upstream *up = ud;
	struct epoll_event ev;

	(void)e;
	if (what == CURL_POLL_REMOVE) {
		epoll_ctl(up->epfd, EPOLL_CTL_DEL, fd, NULL);
		curl_multi_assign(up->multi, fd, NULL);
		return 0;
	}
	memset(&ev, 0, sizeof(ev));
	ev.events = ((what & CURL_POLL_IN) ? EPOLLIN : 0) |
		    ((what & CURL_POLL_OUT) ? EPOLLOUT : 0);
	ev.data.fd = fd;
	if (sockp != NULL) {
		if (epoll_ctl(up->epfd, EPOLL_CTL_MOD, fd, &ev) == 0)
			return 0;
	}
	if (epoll_ctl(up->epfd, EPOLL_CTL_ADD, fd, &ev) != 0 &&
	    (errno != EEXIST ||
	     epoll_ctl(up->epfd, EPOLL_CTL_MOD, fd, &ev) != 0))
		return -1;
	curl_multi_assign(up->multi, fd, up);
	return 0;
}

/* CURLMOPT_TIMERFUNCTION: curl's single timer, as a due time. */
static int on_timer(CURLM *m, long timeout_ms, void *ud)
{
	gw_upstream *up = ud;

	(void)m;
	up->curl_due = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
	return 0;
}

/* Every transfer that ended: retry later or finish. */
static void reap_done(gw_upstream *up, bool stop)
{
	CURLMsg *msg;
	int left;

	while ((msg = curl_multi_info_read(up->multi, &left)) != NULL) {
		char *priv = NULL;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
		/* msg is invalid once its handle is removed */
		ajob_ended(up, (ajob *)(void *)priv, msg->data.result, stop);
	}
}

static bool queue_empty(gw_upstream *up)
{
	bool empty;

	pthread_mutex_lock(&up->amu);
	empty = up->aq_head == NULL;
	pthread_mutex_unlock(&up->amu);
	return empty;
}

static void *async_loop(void *arg)
{
	gw_upstream *up = arg;
	struct epoll_event evs[64];

	for (;;) {
		ajob *q, *j, **pp;
		int running = 0, n, i;
		bool stop;
		int64_t now, next_due;
		long timeout;

		pthread_mutex_lock(&up->amu);
		q = up->aq_head;
		up->aq_head = up->aq_tail = NULL;
		stop = up->a_stop;
		pthread_mutex_unlock(&up->amu);
		while (q != NULL) {
			j = q;
			q = q->next;
			j->next = NULL;
			ajob_start(up, j);
		}
		/* backoffs that are due (all of them when stopping) */
		now = now_ms();
		pp = &up->waiting;
		while ((j = *pp) != NULL) {
			if (stop) {
				*pp = j->next;
				ajob_finish(up, j);
			} else if (j->due <= now) {
				*pp = j->next;
				j->n++;
				gw_metrics_retry();
				ajob_start(up, j);
			} else {
				pp = &j->next;
			}
		}
		if (up->curl_due >= 0 && up->curl_due <= now_ms()) {
			up->curl_due = -1;
			curl_multi_socket_action(up->multi, CURL_SOCKET_TIMEOUT, 0,
						 &running);
		}
		reap_done(up, stop);
		if (stop && up->a_active == 0 && up->waiting == NULL) {
			if (queue_empty(up))
				break;
			continue;
		}
		/* sleep until a socket, curl's timer, a backoff or a wake-up */
		next_due = up->curl_due;
		for (j = up->waiting; j != NULL; j = j->next)
			if (next_due < 0 || j->due < next_due)
				next_due = j->due;
		timeout = ASYNC_POLL_MAX_MS;
		if (next_due >= 0) {
			now = now_ms();
			timeout = next_due <= now ? 0 : (long)(next_due - now);
			if (timeout > ASYNC_POLL_MAX_MS)
				timeout = ASYNC_POLL_MAX_MS;
		}
		atomic_store(&up->a_sleeping, true);
		atomic_thread_fence(memory_order_seq_cst);
		if (timeout > 0 && !queue_empty(up))
			timeout = 0;
		n = epoll_wait(up->epfd, evs, 64, (int)timeout);
		atomic_store(&up->a_sleeping, false);
		for (i = 0; i < n; i++) {
			int fd = evs[i].data.fd, flags = 0;

			if (fd == up->evfd) {
				uint64_t v;

				if (read(up->evfd, &v, sizeof(v)) < 0)
					continue;
				continue;
			}
			if (evs[i].events & EPOLLIN)
				flags |= CURL_CSELECT_IN;
			if (evs[i].events & EPOLLOUT)
				flags |= CURL_CSELECT_OUT;
			if (evs[i].events & (EPOLLERR | EPOLLHUP))
				flags |= CURL_CSELECT_ERR;
			curl_multi_socket_action(up->multi, fd, flags, &running);
		}
		reap_done(up, stop);
	}
	return NULL;
}

/* Wakes the event thread (always when force, else only when asleep). */
static void async_wake(gw_upstream *up, bool force)
{
	uint64_t one = 1;

	atomic_thread_fence(memory_order_seq_cst);
	if (!force && !atomic_load(&up->a_sleeping))
		return;
	if (write(up->evfd, &one, sizeof(one)) < 0) {
		/* the counter is full: the thread is awake anyway */
	}
}

/* Creates the multi handle, the epoll set and the thread. 0 or -1. */
static int async_start(gw_upstream *up)
{
	struct epoll_event ev;
	long conns = (long)up->cfg->max_concurrent + 64;

	up->curl_due = -1;
	up->epfd = epoll_create1(EPOLL_CLOEXEC);
	up->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	up->multi = curl_multi_init();
	if (up->epfd < 0 || up->evfd < 0 || up->multi == NULL)
		goto fail;
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN;
	ev.data.fd = up->evfd;
	if (epoll_ctl(up->epfd, EPOLL_CTL_ADD, up->evfd, &ev) != 0)
		goto fail;
	curl_multi_setopt(up->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
	curl_multi_setopt(up->multi, CURLMOPT_SOCKETDATA, up);
	curl_multi_setopt(up->multi, CURLMOPT_TIMERFUNCTION, on_timer);
	curl_multi_setopt(up->multi, CURLMOPT_TIMERDATA, up);
	curl_multi_setopt(up->multi, CURLMOPT_MAX_HOST_CONNECTIONS, conns);
	curl_multi_setopt(up->multi, CURLMOPT_MAXCONNECTS, conns);
	if (pthread_create(&up->athr, NULL, async_loop, up) != 0)
		goto fail;
	return 0;
fail:
	if (up->multi)
		curl_multi_cleanup(up->multi);
	up->multi = NULL;
	if (up->epfd >= 0)
		close(up->epfd);
	if (up->evfd >= 0)
		close(up->evfd);
	up->epfd = up->evfd = -1;
	return -1;
}

int gw_upstream_patch_async(gw_upstream *up, const char *path,
			    const char *json, size_t json_len,
			    gw_upstream_done_fn done, void *ud)
{
	ajob *j;

	if (done == NULL)
		return -1;
	j = calloc(1, sizeof(*j));
	if (j == NULL)
		return -1;
	j->url = url_of(up, path);
	if (j->url == NULL) {
		free(j);
		return -1;
	}
	j->json = json;
	j->json_len = json_len;
	j->done = done;
	j->ud = ud;
	j->start = now_ms();
	j->rng = rng_seed();
	j->ret = -1;
	j->resp.retry_after_ms = -1;
	pthread_mutex_lock(&up->amu);
	if (up->a_stop)
		goto refused;
	if (!up->a_started) {
		if (async_start(up) != 0)
			goto refused;
		up->a_started = true;
	}
	if (up->aq_tail)
		up->aq_tail->next = j;
	else
		up->aq_head = j;
	up->aq_tail = j;
	pthread_mutex_unlock(&up->amu);
	async_wake(up, false);
	return 0;

refused:
	pthread_mutex_unlock(&up->amu);
	free(j->url);
	free(j);
	return -1;
}

/* Refuses new calls, lets the event thread finish the ones it has (a job
 * backing off ends with its last answer), joins it, frees its handles. */
static void async_stop(gw_upstream *up)
{
	bool started;

	pthread_mutex_lock(&up->amu);
	up->a_stop = true;
	started = up->a_started;
	pthread_mutex_unlock(&up->amu);
	if (!started)
		return;
	async_wake(up, true);
	pthread_join(up->athr, NULL);
	while (up->n_a_idle)
		curl_easy_cleanup(up->a_idle[--up->n_a_idle]);
	curl_multi_cleanup(up->multi);
	up->multi = NULL;
	close(up->epfd);
	close(up->evfd);
	up->epfd = up->evfd = -1;
	up->a_started = false;
}
