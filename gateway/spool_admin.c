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
	gw_admin_args x;   /* what the queue's command takes too */
	const char *dir;
} args;

static int parse(int argc, char **argv, args *a, FILE *errf)
{
	int i;

	gw_admin_args_init(&a->x, "spool");
	a->dir = NULL;
	for (i = 1; i < argc; i++) {
		const char *s = argv[i];

		if (!strcmp(s, "--help") || !strcmp(s, "-h"))
			return 1;
		if (!strcmp(s, "--spool")) {
			if (i + 1 >= argc) {
				fprintf(errf, "session-gateway spool: --spool needs a value\n");
				return -1;
			}
			a->dir = argv[++i];
			continue;
		}
		if (!strncmp(s, "--spool=", 8)) {
			a->dir = s + 8;
			continue;
		}
		if (gw_admin_arg(&a->x, argc, argv, &i, errf) != 0)
			return -1;
	}
	if (gw_admin_check(&a->x, errf) != 0)
		return -1;
	if (a->dir == NULL) {
		fprintf(errf, "session-gateway spool: --spool DIR is required\n");
		return -1;
	}
	return 0;
}

/* ==== Commands ==== */

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
	char num[32];
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
	gw_jl_int(&b, "depth", depth);
	gw_jl_int(&b, "sessions", sessions);
	gw_jl_int(&b, "retrying", retrying);
	snprintf(num, sizeof(num), "%.3f", age);
	gw_jl_num(&b, "oldest_age_seconds", num);
	gw_jl_int(&b, "bytes", bytes);
	gw_jl_int(&b, "dead_letters", dead);
	gw_jl_end(&b, out);
	return 0;
}

static int cmd_list(sqlite3 *db, const gw_admin_args *a, FILE *out,
		    FILE *errf)
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
		gw_jl_int(&b, "id", sqlite3_column_int64(st, 0));
		gw_jl_str(&b, "session_id", sqlite3_column_blob(st, 1),
			  (size_t)sqlite3_column_bytes(st, 1));
		gw_jl_int(&b, "seq", sqlite3_column_int64(st, 2));
		gw_jl_str(&b, "path", sqlite3_column_text(st, 3),
			  (size_t)sqlite3_column_bytes(st, 3));
		gw_jl_int(&b, "attempts", sqlite3_column_int64(st, 4));
		gw_jl_int(&b, "status", sqlite3_column_int64(st, 5));
		gw_jl_str(&b, a->pending ? "last_error" : "body",
			  sqlite3_column_blob(st, 6),
			  (size_t)sqlite3_column_bytes(st, 6));
		if (a->json)
			gw_jl_str(&b, "json", sqlite3_column_blob(st, 7),
				  (size_t)sqlite3_column_bytes(st, 7));
		gw_jl_int(&b, "arrived_ms", sqlite3_column_int64(st, 8));
		gw_jl_int(&b, a->pending ? "next_attempt_ms" : "failed_ms",
			  sqlite3_column_int64(st, 9));
		gw_jl_end(&b, out);
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return fail(errf, db, "list");
	return 0;
}

/* retry or drop of the dead letters chosen by ?1 (-1: all). */
static int cmd_move(sqlite3 *db, const gw_admin_args *a, FILE *out,
		    FILE *errf)
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
	if (!strcmp(a.x.cmd, "stats"))
		rc = cmd_stats(db, out, errf);
	else if (!strcmp(a.x.cmd, "list"))
		rc = cmd_list(db, &a.x, out, errf);
	else
		rc = cmd_move(db, &a.x, out, errf);
	sqlite3_close(db);
	return rc;
}
