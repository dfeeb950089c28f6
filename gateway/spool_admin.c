/* spool_admin.c - `session-gateway spool stats|list|retry|drop --spool DIR`.
 *
 * Works on DIR/spool.db directly, with or without a gateway running on it
 * (SQLite's locking serialises the writes; the gateway reads the meta
 * counters at the start of every transaction, so it sees what the command
 * changed). Never creates a spool. Output: one JSON object per line.
 *
 * retry moves dead letters back to the end of the spool: they go upstream
 * after the updates of their session that are already waiting.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "gw.h"

static void usage(FILE *f)
{
	fputs("usage: session-gateway spool COMMAND --spool DIR [OPTIONS]\n"
	      "Inspects and repairs the store-and-forward spool of --spool DIR\n"
	      "(DIR/spool.db), also while a gateway runs on it.\n\n"
	      "Commands:\n"
	      "  stats                  updates waiting, retrying, oldest age, bytes,\n"
	      "                         dead letters (one JSON object)\n"
	      "  list                   dead letters, one JSON object per line: id,\n"
	      "                         session_id, seq, path, attempts, status, body\n"
	      "       --pending         list the waiting updates instead\n"
	      "       --limit N         at most N lines (default 100)\n"
	      "       --json            include the stored JSON body\n"
	      "  retry --id N | --all   move dead letters back into the spool (they\n"
	      "                         go after their session's waiting updates)\n"
	      "  drop --id N | --all    delete dead letters for good\n\n"
	      "Options:\n"
	      "  --spool DIR            the spool directory (required)\n"
	      "  --help                 print this help and exit\n"
	      "Exit status: 0 done, 1 error, 2 usage error.\n", f);
}

typedef struct args {
	const char *cmd;
	const char *dir;
	long long id;      /* -1: none */
	bool all, pending, json;
	long long limit;
} args;

static int parse(int argc, char **argv, args *a, FILE *errf)
{
	int i;

	memset(a, 0, sizeof(*a));
	a->id = -1;
	a->limit = 100;
	for (i = 1; i < argc; i++) {
		const char *s = argv[i];

		if (!strcmp(s, "--help") || !strcmp(s, "-h"))
			return 1;
		if (!strcmp(s, "--spool") || !strcmp(s, "--id") ||
		    !strcmp(s, "--limit")) {
			char *end;
			long long v;

			if (i + 1 >= argc) {
				fprintf(errf, "session-gateway spool: %s needs a value\n", s);
				return -1;
			}
			if (!strcmp(s, "--spool")) {
				a->dir = argv[++i];
				continue;
			}
			errno = 0;
			v = strtoll(argv[++i], &end, 10);
			if (errno || *end || end == argv[i] || v < 0) {
				fprintf(errf, "session-gateway spool: %s expects a whole number >= 0, found \"%.64s\"\n",
					s, argv[i]);
				return -1;
			}
			if (!strcmp(s, "--id"))
				a->id = v;
			else
				a->limit = v;
			continue;
		}
		if (!strncmp(s, "--spool=", 8)) {
			a->dir = s + 8;
			continue;
		}
		if (!strcmp(s, "--all")) {
			a->all = true;
			continue;
		}
		if (!strcmp(s, "--pending")) {
			a->pending = true;
			continue;
		}
		if (!strcmp(s, "--json")) {
			a->json = true;
			continue;
		}
		if (s[0] == '-' || a->cmd != NULL) {
			fprintf(errf, "session-gateway spool: unexpected argument \"%.64s\" (see --help)\n", s);
			return -1;
		}
		a->cmd = s;
	}
	if (a->cmd == NULL) {
		fprintf(errf, "session-gateway spool: missing command: stats, list, retry or drop (see --help)\n");
		return -1;
	}
	if (strcmp(a->cmd, "stats") && strcmp(a->cmd, "list") &&
	    strcmp(a->cmd, "retry") && strcmp(a->cmd, "drop")) {
		fprintf(errf, "session-gateway spool: unknown command \"%.64s\": stats, list, retry or drop\n",
			a->cmd);
		return -1;
	}
	if (a->dir == NULL) {
		fprintf(errf, "session-gateway spool: --spool DIR is required\n");
		return -1;
	}
	if ((!strcmp(a->cmd, "retry") || !strcmp(a->cmd, "drop")) &&
	    (a->id < 0) == !a->all) {
		fprintf(errf, "session-gateway spool %s: give exactly one of --id N or --all\n",
			a->cmd);
		return -1;
	}
	return 0;
}

/* ==== Output ==== */

/* Appends; a failed append (out of memory) shortens the line, no more. */
static void app(sw_buf *b, const void *p, size_t n)
{
	if (sw_buf_append(b, p, n) != SW_OK)
		return;
}

/* Writes "key":"escaped" into b (with a leading comma unless first). */
static void put_str(sw_buf *b, const char *key, const void *v, size_t n,
		    bool first)
{
	if (!first && sw_buf_append(b, ",", 1) != SW_OK)
		return;
	if (sw_buf_append(b, "\"", 1) != SW_OK ||
	    sw_buf_append(b, key, strlen(key)) != SW_OK ||
	    sw_buf_append(b, "\":\"", 3) != SW_OK ||
	    gw_json_escape(b, v ? v : "", v ? n : 0) != SW_OK)
		return;
	app(b, "\"", 1);
}

static void put_int(sw_buf *b, const char *key, long long v)
{
	char tmp[96];

	snprintf(tmp, sizeof(tmp), ",\"%s\":%lld", key, v);
	app(b, tmp, strlen(tmp));
}

static int fail(FILE *errf, sqlite3 *db, const char *what)
{
	fprintf(errf, "session-gateway spool: %s: %s\n", what,
		db ? sqlite3_errmsg(db) : "cannot open");
	return 1;
}

static long long one_int(sqlite3 *db, const char *sql, int *rc)
{
	sqlite3_stmt *st = NULL;
	long long v = 0;

	*rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
	if (*rc == SQLITE_OK) {
		*rc = sqlite3_step(st);
		if (*rc == SQLITE_ROW) {
			v = sqlite3_column_int64(st, 0);
			*rc = SQLITE_OK;
		}
	}
	sqlite3_finalize(st);
	return v;
}

static int cmd_stats(sqlite3 *db, FILE *out, FILE *errf)
{
	int rc;
	long long depth, bytes, dead, retrying, oldest, sessions;
	double age = 0;
	sw_buf b;

	depth = one_int(db, "SELECT count(*) FROM spool", &rc);
	if (rc == SQLITE_OK)
		retrying = one_int(db, "SELECT count(*) FROM spool WHERE attempts > 0", &rc);
	if (rc == SQLITE_OK)
		sessions = one_int(db, "SELECT count(DISTINCT sid) FROM spool", &rc);
	if (rc == SQLITE_OK)
		oldest = one_int(db, "SELECT coalesce(min(arrived_ms),0) FROM spool", &rc);
	if (rc == SQLITE_OK)
		dead = one_int(db, "SELECT count(*) FROM dead_letters", &rc);
	if (rc == SQLITE_OK)
		bytes = one_int(db, "SELECT value FROM meta WHERE key='bytes'", &rc);
	if (rc != SQLITE_OK)
		return fail(errf, db, "stats");
	if (oldest > 0)
		age = (double)(gw_spool__now_ms() - oldest) / 1e3;
	sw_buf_init(&b, 0, NULL);
	{
		char tmp[64];

		snprintf(tmp, sizeof(tmp), "{\"depth\":%lld", depth);
		app(&b, tmp, strlen(tmp));
	}
	put_int(&b, "sessions", sessions);
	put_int(&b, "retrying", retrying);
	{
		char tmp[64];

		snprintf(tmp, sizeof(tmp), ",\"oldest_age_seconds\":%.3f", age);
		app(&b, tmp, strlen(tmp));
	}
	put_int(&b, "bytes", bytes);
	put_int(&b, "dead_letters", dead);
	app(&b, "}\n", 2);
	if (b.data)
		fputs(b.data, out);
	sw_buf_free(&b);
	return 0;
}

static int cmd_list(sqlite3 *db, const args *a, FILE *out, FILE *errf)
{
	sqlite3_stmt *st = NULL;
	const char *sql = a->pending
		? "SELECT id, sid, seq, path, attempts, last_status, last_error, json, arrived_ms, next_attempt_ms FROM spool ORDER BY id LIMIT ?1"
		: "SELECT id, sid, seq, path, attempts, status, body, json, arrived_ms, failed_ms FROM dead_letters ORDER BY id LIMIT ?1";
	int rc;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return fail(errf, db, "list");
	sqlite3_bind_int64(st, 1, a->limit);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		sw_buf b;

		sw_buf_init(&b, 0, NULL);
		app(&b, "{", 1);
		{
			char tmp[48];

			snprintf(tmp, sizeof(tmp), "\"id\":%lld",
				 (long long)sqlite3_column_int64(st, 0));
			app(&b, tmp, strlen(tmp));
		}
		put_str(&b, "session_id", sqlite3_column_blob(st, 1),
			(size_t)sqlite3_column_bytes(st, 1), false);
		put_int(&b, "seq", sqlite3_column_int64(st, 2));
		put_str(&b, "path", sqlite3_column_text(st, 3),
			(size_t)sqlite3_column_bytes(st, 3), false);
		put_int(&b, "attempts", sqlite3_column_int64(st, 4));
		put_int(&b, "status", sqlite3_column_int64(st, 5));
		put_str(&b, a->pending ? "last_error" : "body",
			sqlite3_column_blob(st, 6),
			(size_t)sqlite3_column_bytes(st, 6), false);
		if (a->json)
			put_str(&b, "json", sqlite3_column_blob(st, 7),
				(size_t)sqlite3_column_bytes(st, 7), false);
		put_int(&b, "arrived_ms", sqlite3_column_int64(st, 8));
		put_int(&b, a->pending ? "next_attempt_ms" : "failed_ms",
			sqlite3_column_int64(st, 9));
		app(&b, "}\n", 2);
		if (b.data)
			fputs(b.data, out);
		sw_buf_free(&b);
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return fail(errf, db, "list");
	return 0;
}

/* retry or drop of the dead letters chosen by ?1 (-1: all). */
static int cmd_move(sqlite3 *db, const args *a, FILE *out, FILE *errf)
{
	static const char *const retry_sql[] = {
		"UPDATE meta SET value = value - (SELECT coalesce(sum(length(body)),0) FROM dead_letters WHERE ?1 < 0 OR id = ?1) WHERE key='bytes'",
		"UPDATE meta SET value = value + (SELECT count(*) FROM dead_letters WHERE ?1 < 0 OR id = ?1) WHERE key='depth'",
		"UPDATE meta SET value = value - (SELECT count(*) FROM dead_letters WHERE ?1 < 0 OR id = ?1) WHERE key='dead'",
		"INSERT INTO spool(sid,seq,path,json,arrived_ms) SELECT sid,seq,path,json,arrived_ms FROM dead_letters WHERE ?1 < 0 OR id = ?1 ORDER BY id",
		"DELETE FROM dead_letters WHERE ?1 < 0 OR id = ?1",
		NULL
	};
	static const char *const drop_sql[] = {
		"UPDATE meta SET value = max(0, value - (SELECT coalesce(sum(length(sid) + length(CAST(path AS BLOB)) + length(json) + coalesce(length(body),0) + 64),0) FROM dead_letters WHERE ?1 < 0 OR id = ?1)) WHERE key='bytes'",
		"UPDATE meta SET value = value - (SELECT count(*) FROM dead_letters WHERE ?1 < 0 OR id = ?1) WHERE key='dead'",
		"DELETE FROM dead_letters WHERE ?1 < 0 OR id = ?1",
		NULL
	};
	const char *const *sql = strcmp(a->cmd, "retry") ? drop_sql : retry_sql;
	long long n = 0;
	size_t i;
	int rc;

	if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
		return fail(errf, db, a->cmd);
	for (i = 0; sql[i]; i++) {
		sqlite3_stmt *st = NULL;

		rc = sqlite3_prepare_v2(db, sql[i], -1, &st, NULL);
		if (rc == SQLITE_OK) {
			sqlite3_bind_int64(st, 1, a->all ? -1 : a->id);
			rc = sqlite3_step(st);
		}
		sqlite3_finalize(st);
		if (rc != SQLITE_DONE) {
			fail(errf, db, a->cmd);
			sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
			return 1;
		}
		n = sqlite3_changes(db); /* the last statement: the DELETE */
	}
	if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
		fail(errf, db, "COMMIT");
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
		return 1;
	}
	fprintf(out, "{\"%s\":%lld}\n", strcmp(a->cmd, "retry") ? "dropped" : "retried",
		n);
	if (n == 0 && !a->all) {
		fprintf(errf, "session-gateway spool %s: no dead letter with id %lld\n",
			a->cmd, a->id);
		return 1;
	}
	return 0;
}

int gw_spool_admin(int argc, char **argv, FILE *out, FILE *errf)
{
	args a;
	char path[600];
	sqlite3 *db = NULL;
	int rc;

	rc = parse(argc, argv, &a, errf);
	if (rc == 1) {
		usage(out);
		return 0;
	}
	if (rc != 0)
		return 2;
	snprintf(path, sizeof(path), "%s/spool.db", a.dir);
	if (access(path, F_OK) != 0) {
		fprintf(errf, "session-gateway spool: no spool at %s (%s)\n", path,
			strerror(errno));
		return 1;
	}
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
		rc = fail(errf, db, path);
		sqlite3_close(db);
		return rc;
	}
	sqlite3_busy_timeout(db, 10000);
	if (!strcmp(a.cmd, "stats"))
		rc = cmd_stats(db, out, errf);
	else if (!strcmp(a.cmd, "list"))
		rc = cmd_list(db, &a, out, errf);
	else
		rc = cmd_move(db, &a, out, errf);
	sqlite3_close(db);
	return rc;
}
