/* answer.c - fuzz target: what the upstream (untrusted) sends back and
 * the gateway relays: the answer body translated to protobuf for devices
 * (gw_answer_pb), the key scrubbed out of it (gw_scrub), and Retry-After
 * (gw_retry_after_ms).
 *
 * Input: two bytes of status (100..599), one byte of key length k, k key
 * bytes, then the body (also read as a Retry-After value).
 *
 * Invariants:
 *  - gw_answer_pb succeeds only for 2xx and >= 400; a 2xx result decodes
 *    (sw_pb_decode, session) to the update the lenient session parse of
 *    the body gives; a >= 400 result is an Error with the status and the
 *    body's "message" (and "code");
 *  - after gw_scrub the key (one without '*': the replacement's own
 *    character) is nowhere in the body, the length shrinks by kn - 3 per
 *    replacement, and an empty key changes nothing;
 *  - Retry-After is -1 or within 0..86400 s; all digits give their value
 *    in ms (capped at a day); surrounding blanks do not matter.
 */
#include <cjson/cJSON.h>

#include "fuzz.h"
#include "gw.h"

#define ANS_DAY_MS (86400L * 1000)

/* Whether needle[0..k) occurs in hay[0..n). */
static bool ans_has(const char *hay, size_t n, const char *needle, size_t k)
{
	size_t i;

	for (i = 0; k > 0 && k <= n && i <= n - k; i++)
		if (hay[i] == needle[0] && !memcmp(hay + i, needle, k))
			return true;
	return false;
}

static void ans_session(const char *body, size_t len, const sw_buf *pb)
{
	sw_parse_opts jo = { .kind = SW_KIND_SESSION, .lenient = true };
	sw_parse_opts po = { .kind = SW_KIND_SESSION };
	sw_update *a = NULL, *b = NULL;

	if (!SW_FUZZ_CHECK(sw_json_parse(body, len, &jo, &a, NULL) == SW_OK))
		return;
	if (SW_FUZZ_CHECK(sw_pb_decode((const uint8_t *)pb->data, pb->len, &po,
				       &b, NULL) == SW_OK))
		SW_FUZZ_CHECK(sw_update_equal(a, b));
	sw_update_free(a);
	sw_update_free(b);
}

static void ans_error(int status, const char *body, size_t len,
		      const sw_buf *pb)
{
	sw_error_msg em;
	cJSON *j, *m, *c;

	if (!SW_FUZZ_CHECK(sw_error_msg_decode((const uint8_t *)pb->data,
					       pb->len, &em, NULL) == SW_OK))
		return;
	SW_FUZZ_CHECK(em.status == (uint32_t)status);
	j = cJSON_ParseWithLength(body, len);
	if (!SW_FUZZ_CHECK(j != NULL))
		return;
	m = cJSON_GetObjectItemCaseSensitive(j, "message");
	c = cJSON_GetObjectItemCaseSensitive(j, "code");
	if (SW_FUZZ_CHECK(cJSON_IsString(m)))
		SW_FUZZ_CHECK(sw_fuzz_same(em.message.ptr, em.message.len,
					   m->valuestring,
					   strlen(m->valuestring)));
	SW_FUZZ_CHECK(c ? cJSON_IsString(c) &&
			  sw_fuzz_same(em.code.ptr, em.code.len, c->valuestring,
				       strlen(c->valuestring))
			: em.code.len == 0);
	cJSON_Delete(j);
}

static void ans_translate(int status, const char *body, size_t len)
{
	sw_buf pb;
	int rc;

	sw_buf_init(&pb, 0, NULL);
	rc = gw_answer_pb(status, body, len, &pb);
	if (SW_FUZZ_CHECK(rc == 0 || rc == -1) && rc == 0 &&
	    SW_FUZZ_CHECK(len > 0 && (status >= 400 ||
				      (status >= 200 && status < 300)))) {
		if (status < 300)
			ans_session(body, len, &pb);
		else
			ans_error(status, body, len, &pb);
	}
	sw_buf_free(&pb);
}

static void ans_scrub(const char *body, size_t len, const char *key,
		      size_t kn)
{
	char *b = sw_fuzz_malloc(len + 1);
	size_t n;

	memcpy(b, body, len);
	b[len] = '\0';
	n = gw_scrub(b, len, key);
	SW_FUZZ_CHECK(n <= len);
	SW_FUZZ_CHECK(b[n] == '\0');
	if (kn > 0 && memchr(key, '*', kn) == NULL) {
		if (!SW_FUZZ_CHECK(!ans_has(b, n, key, kn)))
			fprintf(stderr, "key \"%s\" left in a scrubbed body\n", key);
		/* each replacement takes kn - 3 bytes out (none when short) */
		SW_FUZZ_CHECK(kn <= 3 ? n == len : (len - n) % (kn - 3) == 0);
	} else if (kn == 0) {
		SW_FUZZ_CHECK(n == len && !memcmp(b, body, len));
	}
	free(b);
}

static void ans_retry_after(const char *body, size_t len)
{
	char v[96], padded[100];
	size_t n = len < sizeof(v) - 1 ? len : sizeof(v) - 1, i;
	long ms, ms2;

	memcpy(v, body, n);
	v[n] = '\0';
	n = strlen(v); /* a header value ends at a NUL */
	ms = gw_retry_after_ms(v, 1700000000L);
	SW_FUZZ_CHECK(ms >= -1 && ms <= ANS_DAY_MS);
	for (i = 0; i < n && v[i] >= '0' && v[i] <= '9'; i++)
		;
	if (n > 0 && i == n && n < 10) /* all digits */
		SW_FUZZ_CHECK(ms == (strtol(v, NULL, 10) > 86400
					     ? ANS_DAY_MS
					     : strtol(v, NULL, 10) * 1000));
	snprintf(padded, sizeof(padded), " %s\t", v);
	ms2 = gw_retry_after_ms(padded, 1700000000L);
	SW_FUZZ_CHECK(ms2 == ms || n == 0);
}

int SW_FUZZ_ENTRY(answer)(const uint8_t *data, size_t size)
{
	char key[64];
	size_t kn, off;
	int status;
	const char *body;
	size_t len;

	if (size < 3)
		return 0;
	status = 100 + (int)(((unsigned)data[0] << 8 | data[1]) % 500);
	kn = data[2] % 48;
	if (3 + kn > size)
		kn = size - 3;
	memcpy(key, data + 3, kn);
	key[kn] = '\0';
	off = 3 + kn;
	kn = strlen(key); /* a key holds no NUL */
	body = (const char *)data + off;
	len = size - off;
	ans_translate(status, body, len);
	ans_scrub(body, len, key, kn);
	ans_retry_after(body, len);
	return 0;
}
