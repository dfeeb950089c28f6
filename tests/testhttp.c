/* testhttp.c - one HTTP request to a gateway on 127.0.0.1 with libcurl,
 * for the suites that need status, headers and body of the answer. */
#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "testutil.h"

static size_t on_body(char *d, size_t s, size_t n, void *ud)
{
	tu_http_res *r = ud;
	size_t k = s * n;
	char *nb = realloc(r->body, r->body_len + k + 1);

	if (nb == NULL)
		return 0;
	memcpy(nb + r->body_len, d, k);
	r->body_len += k;
	nb[r->body_len] = '\0';
	r->body = nb;
	return k;
}

/* Keeps the value of header name (trimmed) in out. */
static void keep(const char *line, size_t n, const char *name, char *out,
		 size_t cap)
{
	size_t k = strlen(name), i, j;

	if (n <= k || strncasecmp(line, name, k) != 0 || line[k] != ':')
		return;
	for (i = k + 1; i < n && (line[i] == ' ' || line[i] == '\t'); i++)
		;
	for (j = n; j > i && (line[j - 1] == '\r' || line[j - 1] == '\n' ||
			      line[j - 1] == ' '); j--)
		;
	if (j - i >= cap)
		j = i + cap - 1;
	memcpy(out, line + i, j - i);
	out[j - i] = '\0';
}

static size_t on_header(char *d, size_t s, size_t n, void *ud)
{
	tu_http_res *r = ud;
	size_t k = s * n;

	keep(d, k, "Content-Type", r->content_type, sizeof(r->content_type));
	keep(d, k, "Retry-After", r->retry_after, sizeof(r->retry_after));
	keep(d, k, "Preference-Applied", r->preference_applied,
	     sizeof(r->preference_applied));
	return k;
}

long tu_http(unsigned port, const char *method, const char *path,
	     const char *const *headers, const void *body, size_t len,
	     double timeout_s, tu_http_res *res)
{
	CURL *h = curl_easy_init();
	struct curl_slist *hl = NULL;
	char url[2048];
	size_t i;

	memset(res, 0, sizeof(*res));
	if (h == NULL)
		return 0;
	snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", port, path);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L);
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)(timeout_s * 1000));
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, res);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, res);
	hl = curl_slist_append(hl, "Expect:");
	for (i = 0; headers != NULL && headers[i] != NULL; i++)
		hl = curl_slist_append(hl, headers[i]);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
	if (body != NULL) {
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	}
	if (curl_easy_perform(h) == CURLE_OK)
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &res->status);
	curl_slist_free_all(hl);
	curl_easy_cleanup(h);
	return res->status;
}

void tu_http_free(tu_http_res *res)
{
	free(res->body);
	res->body = NULL;
	res->body_len = 0;
}
