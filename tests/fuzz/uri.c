/* uri.c - fuzz target: the session path (encodeURIComponent) and its
 * strict inverse (path segments from untrusted HTTP requests).
 *
 *  - sw_session_path of the input succeeds exactly when the input is
 *    UTF-8 and not "", "." or ".."; the path is the prefix followed by
 *    unreserved characters and %XX (uppercase hex) only, and
 *    sw_uri_decode of it gives the input back;
 *  - sw_uri_decode of the input: on failure the output buffer is left as
 *    it was; on success the result is UTF-8, and encoding it again and
 *    decoding that gives it back;
 *  - a session id set from the input formats back to the same text, and
 *    the kind it is given survives a second set.
 */
#include "../../codec/sw_internal.h"
#include "fuzz.h"

#define URI_PREFIX_LEN (sizeof(SW_SESSION_PATH_PREFIX) - 1)

/* Whether c is one of encodeURIComponent's unreserved characters. */
static bool uri_plain(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	       (c >= '0' && c <= '9') || (c != '\0' && strchr("-_.!~*'()", c));
}

/* Whether c is an uppercase hex digit. */
static bool uri_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F');
}

/* Checks sw_session_path of id and decodes the path back. */
static void uri_path(const char *id, size_t len)
{
	bool addressable = len != 0 && !(len == 1 && id[0] == '.') &&
			   !(len == 2 && id[0] == '.' && id[1] == '.') &&
			   sw__utf8_check(id, len) == len;
	sw_buf path, back;
	const char *p;
	sw_status st;
	sw_error e;
	size_t i;

	sw_buf_init(&path, 0, NULL);
	sw_buf_init(&back, 0, NULL);
	sw_error_clear(&e);
	st = sw_session_path(id, len, &path, &e);
	if (!SW_FUZZ_CHECK((st == SW_OK) == addressable))
		goto out;
	if (st != SW_OK) {
		SW_FUZZ_CHECK(e.code == st && path.len == 0);
		goto out;
	}
	if (!SW_FUZZ_CHECK(path.len > URI_PREFIX_LEN &&
			   !memcmp(path.data, SW_SESSION_PATH_PREFIX,
				   URI_PREFIX_LEN)))
		goto out;
	p = path.data + URI_PREFIX_LEN;
	for (i = 0; i < path.len - URI_PREFIX_LEN; i++) {
		if (p[i] != '%') {
			SW_FUZZ_CHECK(uri_plain((unsigned char)p[i]));
			continue;
		}
		if (!SW_FUZZ_CHECK(i + 2 < path.len - URI_PREFIX_LEN &&
				   uri_hex(p[i + 1]) && uri_hex(p[i + 2])))
			goto out;
		i += 2;
	}
	st = sw_uri_decode(p, path.len - URI_PREFIX_LEN, &back, &e);
	if (SW_FUZZ_CHECK(st == SW_OK))
		SW_FUZZ_CHECK(sw_fuzz_same(back.data, back.len, id, len));
out:
	sw_buf_free(&path);
	sw_buf_free(&back);
}

/* sw_uri_decode of the raw input, into a buffer that already holds
 * something (left as it was on failure). */
static void uri_decode(const char *s, size_t len)
{
	sw_buf out;
	sw_status st;
	sw_error e;

	sw_buf_init(&out, 0, NULL);
	if (sw_buf_append(&out, "keep", 4) != SW_OK)
		abort();
	sw_error_clear(&e);
	st = sw_uri_decode(s, len, &out, &e);
	if (st != SW_OK) {
		SW_FUZZ_CHECK(e.code == st && out.len == 4 &&
			      !strcmp(out.data, "keep"));
	} else if (SW_FUZZ_CHECK(out.len >= 4 && out.len - 4 <= len &&
				 out.data[out.len] == '\0')) {
		SW_FUZZ_CHECK(sw__utf8_check(out.data + 4, out.len - 4) ==
			      out.len - 4);
		uri_path(out.data + 4, out.len - 4);
	}
	sw_buf_free(&out);
}

/* The session id of an Envelope: set, format, set again. */
static void uri_session_id(const char *s, size_t len)
{
	sw_session_id a, b;
	char text[256], again[256];
	size_t n, m;

	sw_session_id_set(&a, s, len);
	n = sw_session_id_format(&a, text, sizeof(text));
	if (len >= sizeof(text)) {
		SW_FUZZ_CHECK(a.kind != SW_ID_TEXT || n == 0);
		return;
	}
	if (!SW_FUZZ_CHECK(n == len && !memcmp(text, s, len)))
		return;
	sw_session_id_set(&b, text, n);
	m = sw_session_id_format(&b, again, sizeof(again));
	SW_FUZZ_CHECK(b.kind == a.kind && !memcmp(a.raw, b.raw, 16) &&
		      m == n && !memcmp(again, text, n));
}

int SW_FUZZ_ENTRY(uri)(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;

	uri_path(s, size);
	uri_decode(s, size);
	uri_session_id(s, size);
	return 0;
}
