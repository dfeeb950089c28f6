/*
 * Corpus loading shared by the bench programs (bench/codec.c and
 * bench/sizes.c): a whole-file reader and a walk over the lines of a
 * vectors file. Header-only because each bench .c file is its own program.
 * The including file defines die() (printf-like, never returns) and
 * includes <cjson/cJSON.h>, <errno.h>, <stdio.h>, <stdlib.h>, <string.h>
 * before this header.
 */
#ifndef SESSIONWIRE_BENCH_LOAD_H
#define SESSIONWIRE_BENCH_LOAD_H

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Reads a whole file, NUL-terminated; dies on error. */
static char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL, *nb;
	size_t cap = 0, n = 0, r;

	if (f == NULL)
		die("cannot open %s: %s", path, strerror(errno));
	for (;;) {
		if (cap - n < 4096 + 1) {
			cap = cap ? cap * 2 : 65536;
			nb = realloc(buf, cap);
			if (nb == NULL)
				die("out of memory reading %s", path);
			buf = nb;
		}
		r = fread(buf + n, 1, cap - n - 1, f);
		n += r;
		if (r == 0)
			break;
	}
	if (ferror(f))
		die("cannot read %s", path);
	fclose(f);
	buf[n] = '\0';
	*len = n;
	return buf;
}

/* Called for each non-empty line of a corpus: line is the raw text, body
 * the JSON update in it (valid only during the call). */
typedef void (*bench_line_fn)(const char *path, int lineno, const char *line,
			      const char *body, void *ctx);

/* Walks path line by line: a vectors line ({"sdk":..,"wire":"<json>"})
 * yields its "wire" string; any other line is the body itself when
 * plain_ok, else dies saying the "wire" string was expected. */
static void bench_each_line(const char *path, int plain_ok, bench_line_fn fn,
			    void *ctx)
{
	size_t len;
	char *text = read_file(path, &len), *line, *next;
	int lineno = 0;

	for (line = text; line && *line; line = next) {
		const char *body = line;
		cJSON *root = NULL, *wire;

		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		lineno++;
		if (*line == '\0')
			continue;
		if (!plain_ok || strncmp(line, "{\"sdk\"", 6) == 0) {
			root = cJSON_ParseWithLength(line, strlen(line));
			wire = cJSON_GetObjectItemCaseSensitive(root, "wire");
			if (!cJSON_IsString(wire) || wire->valuestring == NULL)
				die("%s line %d: no \"wire\" string", path,
				    lineno);
			body = wire->valuestring;
		}
		fn(path, lineno, line, body, ctx);
		cJSON_Delete(root);
	}
	free(text);
}

#endif
