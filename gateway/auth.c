/* auth.c - device tokens: a file of `NAME TOKEN` or `NAME sha256:HEX`
 * lines, kept only as SHA-256 digests and compared in constant time. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "gw.h"

#define DIGEST_LEN 32
#define NAME_MAX_LEN 63
#define TOKEN_MAX_LEN 4096
#define TOKENS_MAX 100000

typedef struct token_entry {
	char name[NAME_MAX_LEN + 1];
	unsigned char digest[DIGEST_LEN];
} token_entry;

struct gw_tokens {
	token_entry *e;
	size_t n;
	int refs;                /* atomic: the loader's, one per loop */
};

/* The SHA-256 implementation, fetched once: EVP_sha256() would make
 * OpenSSL 3 look it up again on every request. */
static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void sha256_fetch(void)
{
	sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

/* SHA-256 of p[0..n) into out. 0 or -1. */
static int sha256(const void *p, size_t n, unsigned char out[DIGEST_LEN])
{
	unsigned int len = 0;

	pthread_once(&sha256_once, sha256_fetch);
	if (EVP_Digest(p, n, out, &len,
		       sha256_md ? sha256_md : EVP_sha256(), NULL) != 1 ||
	    len != DIGEST_LEN)
		return -1;
	return 0;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Parses one non-comment line into e. Returns 0, or -1 with msg set
 * (the message never contains the token). */
static int parse_line(char *line, token_entry *e, const char **msg)
{
	char *p = line, *name, *tok, *end;
	size_t nlen, tlen, i;

	while (is_space(*p))
		p++;
	name = p;
	while (*p && !is_space(*p))
		p++;
	nlen = (size_t)(p - name);
	while (*p == ' ' || *p == '\t')
		p++;
	tok = p;
	while (*p && !is_space(*p))
		p++;
	tlen = (size_t)(p - tok);
	end = p;
	while (is_space(*end))
		end++;
	if (tlen == 0) {
		*msg = "expected `NAME TOKEN` or `NAME sha256:HEX`, found one word";
		return -1;
	}
	if (*end != '\0') {
		*msg = "expected `NAME TOKEN` or `NAME sha256:HEX`, found more than two words";
		return -1;
	}
	if (nlen > NAME_MAX_LEN) {
		*msg = "device name longer than 63 bytes";
		return -1;
	}
	for (i = 0; i < nlen; i++) {
		unsigned char c = (unsigned char)name[i];

		if (c < 0x21 || c > 0x7e || c == '"' || c == '\\') {
			*msg = "device name must be printable ASCII without quotes or backslashes";
			return -1;
		}
	}
	memcpy(e->name, name, nlen);
	e->name[nlen] = '\0';
	if (tlen > TOKEN_MAX_LEN) {
		*msg = "token longer than 4096 bytes";
		return -1;
	}
	if (tlen >= 7 && strncmp(tok, "sha256:", 7) == 0) {
		const char *hx = tok + 7;

		if (tlen - 7 != 2 * DIGEST_LEN) {
			*msg = "sha256: must be followed by exactly 64 hex digits";
			return -1;
		}
		for (i = 0; i < DIGEST_LEN; i++) {
			int hi = hexval(hx[2 * i]), lo = hexval(hx[2 * i + 1]);

			if (hi < 0 || lo < 0) {
				*msg = "sha256: digest has a character that is not a hex digit";
				return -1;
			}
			e->digest[i] = (unsigned char)(hi << 4 | lo);
		}
		return 0;
	}
	if (sha256(tok, tlen, e->digest) != 0) {
		*msg = "SHA-256 failed (libcrypto)";
		return -1;
	}
	return 0;
}

/* True when a plain (not sha256:) token on the line is under 16 bytes. */
static bool weak_token(const char *line)
{
	const char *p = line, *tok;

	while (*p && !is_space(*p))
		p++;
	while (*p == ' ' || *p == '\t')
		p++;
	tok = p;
	while (*p && !is_space(*p))
		p++;
	if (strncmp(tok, "sha256:", 7) == 0)
		return false;
	return p - tok < 16;
}

gw_tokens *gw_tokens_load(const char *path, char *err, size_t errlen)
{
	FILE *f;
	gw_tokens *t;
	char line[TOKEN_MAX_LEN + 256];
	size_t cap = 0;
	int lineno = 0;

	f = fopen(path, "r");
	if (f == NULL) {
		snprintf(err, errlen, "device tokens %s: %s", path, strerror(errno));
		return NULL;
	}
	t = calloc(1, sizeof(*t));
	if (t != NULL)
		t->refs = 1;
	if (t == NULL) {
		snprintf(err, errlen, "device tokens %s: out of memory", path);
		goto fail_file;
	}
	while (fgets(line, sizeof(line), f)) {
		const char *msg = NULL;
		size_t len = strlen(line);
		char *p = line;

		lineno++;
		if (len == sizeof(line) - 1 && line[len - 1] != '\n' && !feof(f)) {
			snprintf(err, errlen, "device tokens %s:%d: expected a line "
				 "of at most %zu bytes, found a longer one",
				 path, lineno, sizeof(line) - 2);
			goto fail_tokens;
		}
		while (is_space(*p))
			p++;
		if (*p == '\0' || *p == '#')
			continue;
		if (t->n == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			token_entry *ne;

			if (ncap > TOKENS_MAX) {
				snprintf(err, errlen, "device tokens %s:%d: more than %d tokens",
					 path, lineno, TOKENS_MAX);
				goto fail_tokens;
			}
			ne = realloc(t->e, ncap * sizeof(*ne));
			if (ne == NULL) {
				snprintf(err, errlen, "device tokens %s: out of memory", path);
				goto fail_tokens;
			}
			t->e = ne;
			cap = ncap;
		}
		if (parse_line(p, &t->e[t->n], &msg) != 0) {
			snprintf(err, errlen, "device tokens %s:%d: %s", path, lineno, msg);
			goto fail_tokens;
		}
		if (weak_token(p)) {
			char where[600];
			gw_log_fields lf = GW_LOG_FIELDS_INIT;

			snprintf(where, sizeof(where), "%s:%d (device %s)", path,
				 lineno, t->e[t->n].name);
			lf.error = where;
			gw_log(GW_LOG_WARN, "device token shorter than 16 bytes: use long random tokens", &lf);
		}
		t->n++;
	}
	if (ferror(f)) {
		snprintf(err, errlen, "device tokens %s: read error", path);
		goto fail_tokens;
	}
	OPENSSL_cleanse(line, sizeof(line));
	fclose(f);
	return t;

fail_tokens:
	OPENSSL_cleanse(line, sizeof(line));
	gw_tokens_free(t);
fail_file:
	fclose(f);
	return NULL;
}

gw_tokens *gw_tokens_ref(gw_tokens *t)
{
	if (t != NULL)
		__atomic_add_fetch(&t->refs, 1, __ATOMIC_RELAXED);
	return t;
}

void gw_tokens_free(gw_tokens *t)
{
	if (t == NULL || __atomic_sub_fetch(&t->refs, 1, __ATOMIC_ACQ_REL) > 0)
		return;
	if (t->e)
		OPENSSL_cleanse(t->e, t->n * sizeof(*t->e));
	free(t->e);
	free(t);
}

const char *gw_tokens_check(const gw_tokens *t, const char *token, size_t n)
{
	unsigned char d[DIGEST_LEN];
	const char *found = NULL;
	size_t i;

	if (t == NULL || token == NULL || n == 0 || n > TOKEN_MAX_LEN)
		return NULL;
	if (sha256(token, n, d) != 0)
		return NULL;
	/* every entry is compared, whatever matched before */
	for (i = 0; i < t->n; i++) {
		int diff = CRYPTO_memcmp(d, t->e[i].digest, DIGEST_LEN);
		uintptr_t mask = (uintptr_t)0 - (uintptr_t)(diff == 0);
		uintptr_t keep = (uintptr_t)found;

		found = (const char *)((keep & ~mask) |
				       ((uintptr_t)t->e[i].name & mask));
	}
	return found;
}
