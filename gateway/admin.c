/* admin.c - what `session-gateway spool ...` and `session-gateway queue
 * ...` share: the flags both take, the check of the command, and the
 * output, one JSON object per line. Each command parses its own flags
 * (--spool DIR; --queue URLS ...) and hands the rest here. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "gw.h"

void gw_admin_args_init(gw_admin_args *a, const char *prog)
{
	memset(a, 0, sizeof(*a));
	a->prog = prog;
	a->id = -1;
	a->limit = 100;
}

int gw_admin_arg(gw_admin_args *a, int argc, char **argv, int *i,
		 FILE *errf)
{
	const char *s = argv[*i];

	if (!strcmp(s, "--id") || !strcmp(s, "--limit")) {
		char *end;
		long long v;

		if (*i + 1 >= argc) {
			fprintf(errf, "session-gateway %s: %s needs a value\n",
				a->prog, s);
			return -1;
		}
		errno = 0;
		v = strtoll(argv[++*i], &end, 10);
		if (errno || *end || end == argv[*i] || v < 0) {
			fprintf(errf, "session-gateway %s: %s expects a whole number >= 0, found \"%.64s\"\n",
				a->prog, s, argv[*i]);
			return -1;
		}
		if (!strcmp(s, "--id"))
			a->id = v;
		else
			a->limit = v;
		return 0;
	}
	if (!strcmp(s, "--all") || !strcmp(s, "--pending") ||
	    !strcmp(s, "--json")) {
		if (s[2] == 'a')
			a->all = true;
		else if (s[2] == 'p')
			a->pending = true;
		else
			a->json = true;
		return 0;
	}
	if (s[0] == '-' || a->cmd != NULL) {
		fprintf(errf, "session-gateway %s: unexpected argument \"%.64s\" (see --help)\n",
			a->prog, s);
		return -1;
	}
	a->cmd = s;
	return 0;
}

int gw_admin_check(const gw_admin_args *a, FILE *errf)
{
	if (a->cmd == NULL) {
		fprintf(errf, "session-gateway %s: missing command: stats, list, retry or drop (see --help)\n",
			a->prog);
		return -1;
	}
	if (strcmp(a->cmd, "stats") && strcmp(a->cmd, "list") &&
	    strcmp(a->cmd, "retry") && strcmp(a->cmd, "drop")) {
		fprintf(errf, "session-gateway %s: unknown command \"%.64s\": stats, list, retry or drop\n",
			a->prog, a->cmd);
		return -1;
	}
	if ((!strcmp(a->cmd, "retry") || !strcmp(a->cmd, "drop")) &&
	    (a->id < 0) == !a->all) {
		fprintf(errf, "session-gateway %s %s: give exactly one of --id N or --all\n",
			a->prog, a->cmd);
		return -1;
	}
	return 0;
}

/* ==== One JSON object per line ==== */

/* Appends; a failed append (out of memory) shortens the line, no more. */
static void app(sw_buf *b, const char *s, size_t n)
{
	if (sw_buf_append(b, s, n) != SW_OK)
		return;
}

/* The comma before a member, unless it is the object's first. */
static void sep(sw_buf *b)
{
	if (b->len == 0)
		app(b, "{", 1);
	else if (b->data[b->len - 1] != '{')
		app(b, ",", 1);
}

void gw_jl_str(sw_buf *b, const char *key, const void *v, size_t n)
{
	sep(b);
	app(b, "\"", 1);
	app(b, key, strlen(key));
	app(b, "\":\"", 3);
	if (gw_json_escape(b, v ? v : "", v ? n : 0) != SW_OK)
		return;
	app(b, "\"", 1);
}

void gw_jl_int(sw_buf *b, const char *key, long long v)
{
	char tmp[96];

	sep(b);
	snprintf(tmp, sizeof(tmp), "\"%s\":%lld", key, v);
	app(b, tmp, strlen(tmp));
}

void gw_jl_num(sw_buf *b, const char *key, const char *text)
{
	sep(b);
	app(b, "\"", 1);
	app(b, key, strlen(key));
	app(b, "\":", 2);
	app(b, text, strlen(text));
}

void gw_jl_end(sw_buf *b, FILE *out)
{
	if (b->len == 0)
		app(b, "{", 1);
	app(b, "}\n", 2);
	if (b->data)
		fputs(b->data, out);
	sw_buf_free(b);
}
