/* testutil.c - shared helpers of the CUnit suites. */
#define _XOPEN_SOURCE 700 /* nftw */
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sys/prctl.h>

#include "testutil.h"

const char *tu_vectors_dir = "tests/vectors";
const char *tu_data_dir = "tests/data";
const char *tu_bin_dir = "build";
int tu_quick;

const char *tu_bin(const char *name, char *out, size_t cap)
{
	snprintf(out, cap, "%s/%s", tu_bin_dir, name);
	return out;
}

char *tu_read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t cap = 0, n = 0, r;

	if (f == NULL)
		return NULL;
	for (;;) {
		if (n + 4096 + 1 > cap) {
			char *nb;

			cap = cap ? cap * 2 : 65536;
			nb = realloc(buf, cap);
			if (nb == NULL) {
				free(buf);
				fclose(f);
				return NULL;
			}
			buf = nb;
		}
		r = fread(buf + n, 1, cap - n - 1, f);
		n += r;
		if (r == 0)
			break;
	}
	fclose(f);
	buf[n] = '\0';
	if (len)
		*len = n;
	return buf;
}

/* A JSON string member decoded by hand: cJSON stops at U+0000, the
 * vectors have it. */
static char *json_string_member(const char *line, const char *key, size_t *len)
{
	char pat[64];
	const char *p;
	char *out, *o;

	snprintf(pat, sizeof(pat), "\"%s\":\"", key);
	p = strstr(line, pat);
	if (p == NULL)
		return NULL;
	p += strlen(pat);
	out = malloc(strlen(p) + 1);
	if (out == NULL)
		return NULL;
	o = out;
	while (*p && *p != '"') {
		if (*p != '\\') {
			*o++ = *p++;
			continue;
		}
		p++;
		switch (*p) {
		case 'n': *o++ = '\n'; p++; break;
		case 't': *o++ = '\t'; p++; break;
		case 'r': *o++ = '\r'; p++; break;
		case 'b': *o++ = '\b'; p++; break;
		case 'f': *o++ = '\f'; p++; break;
		case 'u': {
			unsigned cp = 0, lo;

			sscanf(p + 1, "%4x", &cp);
			p += 5;
			if (cp >= 0xD800 && cp <= 0xDBFF && p[0] == '\\' &&
			    p[1] == 'u') {
				sscanf(p + 2, "%4x", &lo);
				p += 6;
				cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
			}
			if (cp < 0x80) {
				*o++ = (char)cp;
			} else if (cp < 0x800) {
				*o++ = (char)(0xC0 | (cp >> 6));
				*o++ = (char)(0x80 | (cp & 0x3F));
			} else if (cp < 0x10000) {
				*o++ = (char)(0xE0 | (cp >> 12));
				*o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
				*o++ = (char)(0x80 | (cp & 0x3F));
			} else {
				*o++ = (char)(0xF0 | (cp >> 18));
				*o++ = (char)(0x80 | ((cp >> 12) & 0x3F));
				*o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
				*o++ = (char)(0x80 | (cp & 0x3F));
			}
			break;
		}
		default: *o++ = *p++; break;
		}
	}
	*o = '\0';
	if (len)
		*len = (size_t)(o - out);
	return out;
}

/* The "sdk" member: the text between "sdk": and ,"wire": (the vectors
 * always put the members in this order). */
static char *sdk_member(const char *line)
{
	const char *b = strstr(line, "{\"sdk\":"), *e = strstr(line, ",\"wire\":\"");
	char *out;

	if (b == NULL || e == NULL || e < b + 7)
		return NULL;
	b += 7;
	out = malloc((size_t)(e - b) + 1);
	if (out == NULL)
		return NULL;
	memcpy(out, b, (size_t)(e - b));
	out[e - b] = '\0';
	return out;
}

int tu_vectors_load(const char *name, tu_vector **out)
{
	char path[1024];
	size_t len;
	char *text, *line, *next;
	tu_vector *v = NULL;
	int n = 0, cap = 0, lineno = 0;

	snprintf(path, sizeof(path), "%s/%s", tu_vectors_dir, name);
	text = tu_read_file(path, &len);
	if (text == NULL)
		return -1;
	for (line = text; line && *line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		lineno++;
		if (*line == '\0')
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 256;
			v = realloc(v, (size_t)cap * sizeof(*v));
			if (v == NULL)
				abort();
		}
		memset(&v[n], 0, sizeof(v[n]));
		v[n].line = lineno;
		v[n].sdk = sdk_member(line);
		v[n].wire = json_string_member(line, "wire", &v[n].wire_len);
		v[n].session_id = json_string_member(line, "session_id",
						     &v[n].session_id_len);
		v[n].path = json_string_member(line, "path", NULL);
		if (!v[n].sdk || !v[n].wire || !v[n].session_id || !v[n].path) {
			free(text);
			tu_vectors_free(v, n + 1);
			return -1;
		}
		n++;
	}
	free(text);
	*out = v;
	return n;
}

void tu_vectors_free(tu_vector *v, int n)
{
	int i;

	if (v == NULL)
		return;
	for (i = 0; i < n; i++) {
		free(v[i].sdk);
		free(v[i].wire);
		free(v[i].session_id);
		free(v[i].path);
	}
	free(v);
}

static void *fa_alloc(void *ud, size_t n)
{
	tu_failalloc *fa = ud;

	if (fa->fail_at >= 0 && fa->calls++ == fa->fail_at)
		return NULL;
	if (fa->fail_at < 0)
		fa->calls++;
	fa->live++;
	return malloc(n);
}

static void fa_free(void *ud, void *p)
{
	tu_failalloc *fa = ud;

	if (p != NULL)
		fa->live--;
	free(p);
}

sw_alloc tu_failalloc_hook(tu_failalloc *fa)
{
	sw_alloc a = { fa_alloc, fa_free, fa };

	return a;
}

char *tu_hex(const uint8_t *p, size_t n)
{
	static const char hx[] = "0123456789abcdef";
	char *s = malloc(2 * n + 1);
	size_t i;

	if (s == NULL)
		abort();
	for (i = 0; i < n; i++) {
		s[2 * i] = hx[p[i] >> 4];
		s[2 * i + 1] = hx[p[i] & 15];
	}
	s[2 * n] = '\0';
	return s;
}

double tu_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void tu_sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static int rm_one(const char *path, const struct stat *sb, int flag,
		  struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

int tu_rmrf(const char *path)
{
	if (nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS) != 0) {
		fprintf(stderr, "could not remove %s\n", path);
		return -1;
	}
	return 0;
}

void tu_child_dies_with_parent(int parent)
{
	/* PR_SET_PDEATHSIG follows the forking thread: the runner forks
	 * from its main thread, which lives as long as it does */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
		_exit(127);
}
