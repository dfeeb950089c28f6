/* retry.c - the one retry policy: what is worth another attempt, how long
 * to wait before it, and when to stop. A direct PATCH, a batch's items
 * and the spool's forwarding all ask here; nothing else decides.
 *
 *   retryable   an HTTP answer 408, 429, 500, 502, 503 or 504; no answer
 *               because of the network (by curl's code, never by the text
 *               of its message: connect, resolve, timeout, send, receive,
 *               TLS handshake, an empty or cut answer). In a persistent
 *               policy (the spool) every missing answer is retryable: a
 *               dead letter always carries the API's own verdict.
 *   wait        full jitter: random in [0, min(max, base * 2^(n-1))] after
 *               the n-th attempt, at least the answer's Retry-After.
 *   stop        after max_attempts attempts, or when the wait would end
 *               past the budget (0 for either: no limit).
 */
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "gw.h"

#define RETRY_AFTER_MAX_S 86400L /* a day: bounded delta-seconds */

void gw_retry_policy_of(const gw_config *c, bool persistent,
			gw_retry_policy *p)
{
	memset(p, 0, sizeof(*p));
	p->persistent = persistent;
	p->max_attempts = persistent ? 0 : (c->max_attempts ? c->max_attempts : 1);
	p->budget_ms = persistent ? 0 : c->retry_budget_ms;
	p->base_ms = c->backoff_base_ms;
	p->max_ms = c->backoff_max_ms;
}

bool gw_retry_retryable(const gw_retry_policy *p, int status, int curl_code)
{
	if (status != 0)
		return status == 408 || status == 429 || status == 500 ||
		       status == 502 || status == 503 || status == 504;
	if (p != NULL && p->persistent)
		return true;
	switch (curl_code) {
	case GW_CURL_NOT_STARTED:
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

int gw_retry_no_answer_status(int curl_code)
{
	return curl_code == CURLE_OPERATION_TIMEDOUT ? 504 : 502;
}

/* ==== Waiting ==== */

uint64_t gw_rng_seed(void)
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

/* xorshift64*: a per-caller state, no shared one. */
static uint64_t rng_next(uint64_t *s)
{
	uint64_t x = *s ? *s : 0x2545F4914F6CDD1Dull;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1Dull;
}

long gw_retry_backoff(const gw_retry_policy *p, unsigned attempts,
		      uint64_t *rng)
{
	long cap = p->base_ms > 0 ? p->base_ms : 0;
	unsigned i;

	for (i = 1; i < attempts && cap < p->max_ms; i++)
		cap *= 2;
	if (cap > p->max_ms)
		cap = p->max_ms;
	if (cap <= 0)
		return 0;
	return (long)(rng_next(rng) % ((uint64_t)cap + 1));
}

long gw_retry_next(const gw_retry_policy *p, unsigned attempts,
		   long elapsed_ms, long retry_after_ms, uint64_t *rng)
{
	long wait;

	if (p->max_attempts > 0 && attempts >= p->max_attempts)
		return -1;
	wait = gw_retry_backoff(p, attempts, rng);
	if (retry_after_ms > wait)
		wait = retry_after_ms;
	if (p->budget_ms > 0 && wait >= p->budget_ms - elapsed_ms)
		return -1; /* the budget has no room for the wait */
	return wait;
}

/* ==== Retry-After ==== */

long gw_retry_after_ms(const char *value, long now_unix_s)
{
	size_t n, i;
	const char *p;
	time_t now = (time_t)now_unix_s, t;
	char date[64];

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
	if (n >= sizeof(date))
		return -1;
	memcpy(date, value, n);
	date[n] = '\0';
	t = curl_getdate(date, &now);
	if (t == (time_t)-1)
		return -1;
	if (t <= now)
		return 0;
	if (t - now > RETRY_AFTER_MAX_S)
		return RETRY_AFTER_MAX_S * 1000;
	return (long)(t - now) * 1000;
}
