/* auth.c - device tokens: a file of `NAME TOKEN`, `NAME sha256:HEX` or
 * `NAME psk:HEX` lines. Bearer tokens (HTTP) are kept only as SHA-256
 * digests and compared in constant time. DTLS pre-shared keys (CoAP over
 * DTLS, coap.c) must be held as they are: a `psk:` line's key, and, when
 * the set is loaded for PSKs (gw_tokens_load_psk), a plain token's bytes
 * too; never a sha256: line's (the secret is not there). */
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
#define PSK_MIN_LEN 16           /* shorter keys load with a warning */

/* What a line holds. */
enum {
	ENTRY_BEARER = 1,        /* a token (plain or sha256:): HTTP */
	ENTRY_PSK = 2,           /* the secret itself: usable as a DTLS PSK */
	ENTRY_PSK_LINE = 4,      /* a psk: line (preferred over a token's) */
	ENTRY_HASHED = 8,        /* a sha256: line: no secret to use as a PSK */
	ENTRY_LONG = 16          /* a plain token too long for a PSK */
};

typedef struct token_entry {
	char name[NAME_MAX_LEN + 1];
	unsigned char digest[DIGEST_LEN];
	unsigned char kind;      /* ENTRY_* */
	unsigned char psk_len;
	unsigned char psk[GW_PSK_MAX];
} token_entry;

struct gw_tokens {
	token_entry *e;
	size_t n;
	struct name_ref *by_name;/* entries sorted by name (PSK lookup) */
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

/* Parses one non-comment line into e; keep_psk: a plain token's bytes
 * are kept as its PSK too. Returns 0, or -1 with msg set (the message
 * never contains the token). */
static int parse_line(char *line, token_entry *e, bool keep_psk,
		      const char **msg)
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
		*msg = "expected `NAME TOKEN`, `NAME sha256:HEX` or `NAME psk:HEX`, found one word";
		return -1;
	}
	if (*end != '\0') {
		*msg = "expected `NAME TOKEN`, `NAME sha256:HEX` or `NAME psk:HEX`, found more than two words";
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
	memset(e, 0, sizeof(*e));
	memcpy(e->name, name, nlen);
	e->name[nlen] = '\0';
	if (tlen >= 4 && strncmp(tok, "psk:", 4) == 0) {
		const char *hx = tok + 4;
		size_t k = tlen - 4;

		if (k == 0 || k % 2 != 0 || k / 2 > GW_PSK_MAX) {
			*msg = "psk: must be followed by 2 to 128 hex digits (a key of 1 to 64 bytes)";
			return -1;
		}
		for (i = 0; i < k / 2; i++) {
			int hi = hexval(hx[2 * i]), lo = hexval(hx[2 * i + 1]);

			if (hi < 0 || lo < 0) {
				*msg = "psk: key has a character that is not a hex digit";
				return -1;
			}
			e->psk[i] = (unsigned char)(hi << 4 | lo);
		}
		e->psk_len = (unsigned char)(k / 2);
		e->kind = ENTRY_PSK | ENTRY_PSK_LINE;
		return 0;
	}
	e->kind = ENTRY_BEARER;
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
		e->kind |= ENTRY_HASHED;
		return 0;
	}
	if (sha256(tok, tlen, e->digest) != 0) {
		*msg = "SHA-256 failed (libcrypto)";
		return -1;
	}
	if (tlen > GW_PSK_MAX) {
		e->kind |= ENTRY_LONG;
	} else if (keep_psk) {
		memcpy(e->psk, tok, tlen);
		e->psk_len = (unsigned char)tlen;
		e->kind |= ENTRY_PSK;
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
	if (strncmp(tok, "psk:", 4) == 0)
		return (p - tok - 4) / 2 < PSK_MIN_LEN;
	return p - tok < 16;
}

/* One entry in the by-name index. */
typedef struct name_ref {
	const char *name;
	size_t idx;
} name_ref;

/* By name, then by place in the file (the first line of a name first). */
static int name_cmp(const void *a, const void *b)
{
	const name_ref *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	if (c != 0)
		return c;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* The index of entries by name (gw_tokens_psk). 0 or -1. */
static int index_names(gw_tokens *t)
{
	size_t i;

	t->by_name = malloc((t->n ? t->n : 1) * sizeof(*t->by_name));
	if (t->by_name == NULL)
		return -1;
	for (i = 0; i < t->n; i++) {
		t->by_name[i].name = t->e[i].name;
		t->by_name[i].idx = i;
	}
	qsort(t->by_name, t->n, sizeof(*t->by_name), name_cmp);
	return 0;
}

gw_tokens *gw_tokens_load(const char *path, char *err, size_t errlen)
{
	return gw_tokens_load_psk(path, false, err, errlen);
}

gw_tokens *gw_tokens_load_psk(const char *path, bool keep_psk, char *err,
			      size_t errlen)
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
		if (parse_line(p, &t->e[t->n], keep_psk, &msg) != 0) {
			snprintf(err, errlen, "device tokens %s:%d: %s", path, lineno, msg);
			goto fail_tokens;
		}
		if (weak_token(p)) {
			char where[600];
			gw_log_fields lf = GW_LOG_FIELDS_INIT;

			snprintf(where, sizeof(where), "%s:%d (device %s)", path,
				 lineno, t->e[t->n].name);
			lf.error = where;
			gw_log(GW_LOG_WARN, (t->e[t->n].kind & ENTRY_PSK_LINE)
				       ? "device PSK shorter than 16 bytes: use long random keys"
				       : "device token shorter than 16 bytes: use long random tokens",
			       &lf);
		}
		t->n++;
	}
	if (ferror(f)) {
		snprintf(err, errlen, "device tokens %s: read error", path);
		goto fail_tokens;
	}
	if (index_names(t) != 0) {
		snprintf(err, errlen, "device tokens %s: out of memory", path);
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
	free(t->by_name);
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
		uintptr_t mask = (uintptr_t)0 - (uintptr_t)(diff == 0 &&
			(t->e[i].kind & ENTRY_BEARER));
		uintptr_t keep = (uintptr_t)found;

		found = (const char *)((keep & ~mask) |
				       ((uintptr_t)t->e[i].name & mask));
	}
	return found;
}

int gw_tokens_psk(const gw_tokens *t, const char *name, size_t n,
		  const uint8_t **key, size_t *key_len, const char **why)
{
	size_t lo = 0, hi, i;
	const token_entry *tok = NULL, *psk = NULL;
	char want[NAME_MAX_LEN + 1];

	*key = NULL;
	*key_len = 0;
	*why = "no such device in the device tokens";
	if (t == NULL || name == NULL || n == 0 || n > NAME_MAX_LEN ||
	    memchr(name, '\0', n) != NULL)
		return -1;
	memcpy(want, name, n);
	want[n] = '\0';
	/* the first entry of that name (the index keeps the file's order) */
	hi = t->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (strcmp(t->by_name[mid].name, want) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (i = lo; i < t->n && !strcmp(t->by_name[i].name, want); i++) {
		const token_entry *e = &t->e[t->by_name[i].idx];

		if ((e->kind & ENTRY_PSK_LINE) && psk == NULL)
			psk = e;
		else if ((e->kind & ENTRY_PSK) && tok == NULL)
			tok = e;
		else if (e->kind & ENTRY_HASHED)
			*why = "the device has a sha256: token, which cannot be a DTLS PSK (the file holds only its digest): add a `NAME psk:HEX` line";
		else if (e->kind & ENTRY_LONG)
			*why = "the device's token is longer than 64 bytes, too long for a DTLS PSK: add a `NAME psk:HEX` line";
		else
			*why = "the device's token was not loaded as a PSK (no --coaps-listen)";
	}
	if (psk == NULL)
		psk = tok;
	if (psk == NULL)
		return -1;
	*key = psk->psk;
	*key_len = psk->psk_len;
	*why = NULL;
	return 0;
}
