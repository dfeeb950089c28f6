/* spool.c - the durable store of --spool DIR: SQLite (WAL,
 * synchronous=FULL) in DIR/spool.db, one writer thread doing group commit.
 *
 * Tables:
 *   spool(id, sid, seq, path, json, arrived_ms, attempts, next_attempt_ms,
 *         last_status, last_error)  updates waiting to go upstream; id is
 *                                   the arrival order, the per-session FIFO
 *   dead_letters(id, sid, seq, path, json, arrived_ms, attempts, failed_ms,
 *                status, body)      final upstream failures
 *   meta(key, value)                version, bytes, depth, dead: kept in the
 *                                   same transactions as the rows
 *   heads(sid, id, due_ms)          each waiting session's first row and
 *                                   when it is due (max(next_attempt_ms,
 *                                   arrived_ms)), kept by triggers in the
 *                                   same transactions (also the admin
 *                                   command's, from another process) and
 *                                   rebuilt at open: the forwarders pick
 *                                   due sessions from its index instead of
 *                                   grouping the whole spool each time
 *
 * Group commit: the loops (new updates, the forwarders' marks) queue jobs
 * under sp->mu; the writer takes the whole queue, runs it in one BEGIN
 * IMMEDIATE ... COMMIT (one WAL fsync whatever the number of jobs), then
 * posts each job's result to the loop that queued it, which runs its
 * callback and frees it. A job's caller learns its result only after
 * COMMIT returned: an update is acknowledged only once it is on disk. Any
 * SQLite error rolls the whole transaction back and every job in it fails
 * (nothing half-stored).
 *
 * A transaction that stores updates is committed with synchronous=FULL
 * (the WAL fsynced before anyone is told). One that only marks rows
 * (delivered, retry later, dead) is committed with synchronous=NORMAL:
 * written to the WAL without waiting for the disk, and made durable by
 * the next FULL commit (the WAL is one sequence: its fsync covers every
 * frame before it) or checkpoint. A power loss can then undo the last
 * marks, and their rows go upstream once more, in their order (a later
 * mark of a session is always behind an earlier one in the WAL); a
 * process crash undoes nothing. So the forwarders do not wait on the
 * disk, and the devices' commits do not wait behind theirs.
 *
 * Waiters: a stored update may carry a gw_waiter (a JSON client waiting
 * for the API's answer). The writer lists it under its row id before the
 * COMMIT, so the forwarder cannot settle the row before it is listed;
 * gw_spool_settle hands the answer to the waiter's loop.
 *
 * DIR/spool.lock (flock) keeps a second gateway off the same spool; the
 * kernel drops the lock when a process dies, so a restart after SIGKILL
 * takes it at once.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "gw.h"

#define DEAD_BODY_MAX 4096
#define ERRMSG_MAX 200

typedef enum job_kind { JOB_PUT, JOB_MARK } job_kind;

typedef struct job {
	job_kind kind;
	const gw_store_rec *recs; /* JOB_PUT */
	size_t n;
	gw_spool_mark_rec m;      /* JOB_MARK */
	int result;               /* GW_SPOOL_* */
	bool done;                /* a waiting caller (no loop) */
	pthread_cond_t cv;
	gw_loop *loop;            /* else: cb runs there, then the job is freed */
	gw_post post;
	gw_store_done_fn cb;
	void *cb_arg;
	char err[ERRMSG_MAX];
	struct job *next;
	gw_store_rec recs_copy[]; /* JOB_PUT: the records */
} job;

struct gw_spool {
	gw_store store;           /* first: the store interface's view */
	gw_spool_fwd *fwd;        /* forwarding on the loops, once opened */
	const gw_config *c;
	char dir[512];
	char db_path[600];
	int lock_fd;
	sqlite3 *db;              /* the writer's connection */
	sqlite3_stmt *st_insert, *st_delete, *st_retry, *st_dead,
		*st_meta_get, *st_meta_set, *st_oldest;
	bool sync_full;           /* the connection's synchronous setting */
	pthread_t writer;
	bool writer_started;
	pthread_mutex_t mu;
	pthread_cond_t work;      /* the writer waits for jobs */
	job *head, *tail;
	bool stop;
	long long depth, bytes, dead;
	void (*news)(void *arg);  /* after commits that stored updates */
	void *news_arg;
	gw_waiters *waiters;      /* by row id */
};

static double mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int64_t gw_spool__now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ==== Opening ==== */

static const char schema[] =
	"CREATE TABLE IF NOT EXISTS spool("
	" id INTEGER PRIMARY KEY,"
	" sid BLOB NOT NULL,"
	" seq INTEGER NOT NULL,"
	" path TEXT NOT NULL,"
	" json BLOB NOT NULL,"
	" arrived_ms INTEGER NOT NULL,"
	" attempts INTEGER NOT NULL DEFAULT 0,"
	" next_attempt_ms INTEGER NOT NULL DEFAULT 0,"
	" last_status INTEGER NOT NULL DEFAULT 0,"
	" last_error TEXT);"
	"CREATE INDEX IF NOT EXISTS spool_by_session ON spool(sid, id);"
	"CREATE TABLE IF NOT EXISTS dead_letters("
	" id INTEGER PRIMARY KEY,"
	" sid BLOB NOT NULL,"
	" seq INTEGER NOT NULL,"
	" path TEXT NOT NULL,"
	" json BLOB NOT NULL,"
	" arrived_ms INTEGER NOT NULL,"
	" attempts INTEGER NOT NULL,"
	" failed_ms INTEGER NOT NULL,"
	" status INTEGER NOT NULL,"
	" body BLOB);"
	"CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY,"
	" value INTEGER NOT NULL);"
	"INSERT OR IGNORE INTO meta VALUES('version',1),('bytes',0),"
	" ('depth',0),('dead',0);"
	"CREATE TABLE IF NOT EXISTS heads("
	" sid BLOB PRIMARY KEY,"
	" id INTEGER NOT NULL,"
	" due_ms INTEGER NOT NULL) WITHOUT ROWID;"
	"CREATE INDEX IF NOT EXISTS heads_by_due ON heads(due_ms, id);"
	/* a session's first row: ids only grow, so a new row is never
	 * before its session's head */
	"CREATE TRIGGER IF NOT EXISTS spool_head_ins AFTER INSERT ON spool"
	" WHEN NOT EXISTS (SELECT 1 FROM heads WHERE sid = NEW.sid)"
	" BEGIN INSERT INTO heads VALUES(NEW.sid, NEW.id,"
	"  max(NEW.next_attempt_ms, NEW.arrived_ms)); END;"
	/* the head left: the session's next row, if any, is its head */
	"CREATE TRIGGER IF NOT EXISTS spool_head_del AFTER DELETE ON spool"
	" WHEN OLD.id = (SELECT id FROM heads WHERE sid = OLD.sid)"
	" BEGIN DELETE FROM heads WHERE sid = OLD.sid;"
	"  INSERT INTO heads SELECT sid, id, max(next_attempt_ms, arrived_ms)"
	"   FROM spool WHERE sid = OLD.sid ORDER BY id LIMIT 1; END;"
	/* the head was rescheduled */
	"CREATE TRIGGER IF NOT EXISTS spool_head_upd AFTER UPDATE OF"
	" next_attempt_ms ON spool"
	" WHEN NEW.id = (SELECT id FROM heads WHERE sid = NEW.sid)"
	" BEGIN UPDATE heads SET due_ms = max(NEW.next_attempt_ms,"
	"  NEW.arrived_ms) WHERE sid = NEW.sid; END;";

/* heads from the rows themselves (a spool of an older version had none,
 * and nothing can be trusted more than the rows). */
static const char heads_rebuild[] =
	"BEGIN IMMEDIATE;"
	"DELETE FROM heads;"
	"INSERT INTO heads SELECT s.sid, s.id,"
	" max(s.next_attempt_ms, s.arrived_ms) FROM spool s"
	" WHERE s.id IN (SELECT min(id) FROM spool GROUP BY sid);"
	"COMMIT;";

/* Says what went wrong with the database, and what to do about it. */
static void db_error(gw_spool *sp, sqlite3 *db, const char *what, int rc,
		     char *err, size_t errlen)
{
	int ec = rc & 0xff;
	const char *msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);

	if (ec == SQLITE_CORRUPT || ec == SQLITE_NOTADB)
		snprintf(err, errlen,
			 "spool %s is damaged (%s: %s); the gateway will not start on it: move it (and its -wal, -shm files) aside to start an empty spool, or inspect it with sqlite3",
			 sp->db_path, what, msg);
	else if (ec == SQLITE_CANTOPEN || ec == SQLITE_READONLY ||
		 ec == SQLITE_PERM || ec == SQLITE_IOERR)
		snprintf(err, errlen,
			 "spool %s cannot be opened for writing (%s: %s); check that --spool %s is a writable directory",
			 sp->db_path, what, msg, sp->dir);
	else
		snprintf(err, errlen, "spool %s: %s: %s", sp->db_path, what,
			 msg);
}

/* Runs sql; on error fills err. */
static int exec_sql(gw_spool *sp, const char *sql, const char *what,
		    char *err, size_t errlen)
{
	int rc = sqlite3_exec(sp->db, sql, NULL, NULL, NULL);

	if (rc != SQLITE_OK) {
		db_error(sp, sp->db, what, rc, err, errlen);
		return -1;
	}
	return 0;
}

/* Runs a pragma returning one text row and compares it with want. */
static int pragma_is(gw_spool *sp, const char *sql, const char *want,
		     char *err, size_t errlen)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(sp->db, sql, -1, &st, NULL);
	const unsigned char *v;

	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		db_error(sp, sp->db, sql, rc, err, errlen);
		sqlite3_finalize(st);
		return -1;
	}
	v = sqlite3_column_text(st, 0);
	if (v == NULL || strcmp((const char *)v, want) != 0) {
		snprintf(err, errlen,
			 "spool %s is damaged (%s answered \"%.120s\"); move it (and its -wal, -shm files) aside to start an empty spool",
			 sp->db_path, sql, v ? (const char *)v : "nothing");
		sqlite3_finalize(st);
		return -1;
	}
	sqlite3_finalize(st);
	return 0;
}

static int prepare(gw_spool *sp, const char *sql, sqlite3_stmt **st,
		   char *err, size_t errlen)
{
	int rc = sqlite3_prepare_v3(sp->db, sql, -1, SQLITE_PREPARE_PERSISTENT,
				    st, NULL);

	if (rc != SQLITE_OK) {
		db_error(sp, sp->db, "prepare", rc, err, errlen);
		return -1;
	}
	return 0;
}

/* Reads meta key into *v. */
static int meta_get(gw_spool *sp, const char *key, long long *v)
{
	int rc;

	sqlite3_reset(sp->st_meta_get);
	sqlite3_bind_text(sp->st_meta_get, 1, key, -1, SQLITE_STATIC);
	rc = sqlite3_step(sp->st_meta_get);
	if (rc == SQLITE_ROW) {
		*v = sqlite3_column_int64(sp->st_meta_get, 0);
		rc = SQLITE_OK;
	} else if (rc == SQLITE_DONE) {
		*v = 0;
		rc = SQLITE_OK;
	}
	sqlite3_reset(sp->st_meta_get);
	return rc;
}

static int meta_set(gw_spool *sp, const char *key, long long v)
{
	int rc;

	sqlite3_reset(sp->st_meta_set);
	sqlite3_bind_text(sp->st_meta_set, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_int64(sp->st_meta_set, 2, v);
	rc = sqlite3_step(sp->st_meta_set);
	sqlite3_reset(sp->st_meta_set);
	return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* Arrival of the queue's head (unix ms), 0 when empty. */
static long long oldest_ms(gw_spool *sp)
{
	long long v = 0;

	sqlite3_reset(sp->st_oldest);
	if (sqlite3_step(sp->st_oldest) == SQLITE_ROW)
		v = sqlite3_column_int64(sp->st_oldest, 0);
	sqlite3_reset(sp->st_oldest);
	return v;
}

/* Creates dir when missing; checks it is a directory we can write. */
static int make_dir(const char *dir, char *err, size_t errlen)
{
	struct stat stb;

	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		snprintf(err, errlen, "--spool %s: cannot create the directory: %s",
			 dir, strerror(errno));
		return -1;
	}
	if (stat(dir, &stb) != 0) {
		snprintf(err, errlen, "--spool %s: %s", dir, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(stb.st_mode)) {
		snprintf(err, errlen, "--spool %s: not a directory", dir);
		return -1;
	}
	if (access(dir, W_OK | X_OK) != 0) {
		snprintf(err, errlen, "--spool %s: the directory is not writable: %s",
			 dir, strerror(errno));
		return -1;
	}
	return 0;
}

static void *writer_main(void *arg);
static const gw_store_ops spool_ops;

gw_spool *gw_spool_open(const gw_config *c, char *err, size_t errlen)
{
	gw_spool *sp;
	char lock_path[600];
	int rc;

	if (c->spool_dir[0] == '\0') {
		snprintf(err, errlen, "no --spool directory given");
		return NULL;
	}
	if (sqlite3_threadsafe() == 0) {
		snprintf(err, errlen, "this SQLite library is built without thread support");
		return NULL;
	}
	sp = calloc(1, sizeof(*sp));
	if (sp == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	sp->store.ops = &spool_ops;
	sp->c = c;
	sp->lock_fd = -1;
	sp->waiters = gw_waiters_new(false);
	if (sp->waiters == NULL) {
		free(sp);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	snprintf(sp->dir, sizeof(sp->dir), "%s", c->spool_dir);
	snprintf(sp->db_path, sizeof(sp->db_path), "%s/spool.db", sp->dir);
	if (make_dir(sp->dir, err, errlen) != 0)
		goto fail;
	snprintf(lock_path, sizeof(lock_path), "%s/spool.lock", sp->dir);
	sp->lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (sp->lock_fd < 0) {
		snprintf(err, errlen, "--spool %s: cannot create %s: %s", sp->dir,
			 lock_path, strerror(errno));
		goto fail;
	}
	if (flock(sp->lock_fd, LOCK_EX | LOCK_NB) != 0) {
		snprintf(err, errlen, "--spool %s: %s",
			 sp->dir, errno == EWOULDBLOCK
				? "another session-gateway uses this spool (spool.lock is held)"
				: strerror(errno));
		goto fail;
	}
	rc = sqlite3_open_v2(sp->db_path, &sp->db,
			     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
				     SQLITE_OPEN_FULLMUTEX,
			     NULL);
	if (rc != SQLITE_OK) {
		db_error(sp, sp->db, "open", rc, err, errlen);
		goto fail;
	}
	sqlite3_extended_result_codes(sp->db, 1);
	sqlite3_busy_timeout(sp->db, 10000);
	if (pragma_is(sp, "PRAGMA journal_mode=WAL", "wal", err, errlen) != 0 ||
	    exec_sql(sp, "PRAGMA synchronous=FULL", "PRAGMA synchronous",
		     err, errlen) != 0 ||
	    pragma_is(sp, "PRAGMA quick_check", "ok", err, errlen) != 0 ||
	    exec_sql(sp, schema, "creating the tables", err, errlen) != 0 ||
	    exec_sql(sp, heads_rebuild, "indexing the sessions", err,
		     errlen) != 0)
		goto fail;
	sp->sync_full = true;
	if (prepare(sp, "INSERT INTO spool(sid,seq,path,json,arrived_ms) VALUES(?1,?2,?3,?4,?5)",
		    &sp->st_insert, err, errlen) != 0 ||
	    prepare(sp, "DELETE FROM spool WHERE id=?1", &sp->st_delete, err,
		    errlen) != 0 ||
	    prepare(sp, "UPDATE spool SET attempts=?2, next_attempt_ms=?3, last_status=?4, last_error=?5 WHERE id=?1",
		    &sp->st_retry, err, errlen) != 0 ||
	    prepare(sp, "INSERT INTO dead_letters(sid,seq,path,json,arrived_ms,attempts,failed_ms,status,body)"
			" SELECT sid,seq,path,json,arrived_ms,?2,?3,?4,?5 FROM spool WHERE id=?1",
		    &sp->st_dead, err, errlen) != 0 ||
	    prepare(sp, "SELECT value FROM meta WHERE key=?1", &sp->st_meta_get,
		    err, errlen) != 0 ||
	    prepare(sp, "INSERT OR REPLACE INTO meta(key,value) VALUES(?1,?2)",
		    &sp->st_meta_set, err, errlen) != 0 ||
	    prepare(sp, "SELECT arrived_ms FROM spool ORDER BY id LIMIT 1",
		    &sp->st_oldest, err, errlen) != 0)
		goto fail;
	if ((rc = meta_get(sp, "depth", &sp->depth)) != SQLITE_OK ||
	    (rc = meta_get(sp, "bytes", &sp->bytes)) != SQLITE_OK ||
	    (rc = meta_get(sp, "dead", &sp->dead)) != SQLITE_OK) {
		db_error(sp, sp->db, "reading meta", rc, err, errlen);
		goto fail;
	}
	gw_metrics_spool_state(sp->depth, sp->bytes, sp->dead, oldest_ms(sp));
	pthread_mutex_init(&sp->mu, NULL);
	pthread_cond_init(&sp->work, NULL);
	if (pthread_create(&sp->writer, NULL, writer_main, sp) != 0) {
		snprintf(err, errlen, "cannot start the spool writer thread");
		pthread_cond_destroy(&sp->work);
		pthread_mutex_destroy(&sp->mu);
		goto fail;
	}
	sp->writer_started = true;
	return sp;

fail:
	gw_spool_close(sp);
	return NULL;
}

/* ==== Waiters ==== */

void gw_spool_settle(gw_spool *sp, int64_t id, const gw_response *resp)
{
	gw_waiters_settle(sp->waiters, id, resp);
}

bool gw_spool_unwait(gw_spool *sp, gw_waiter *w)
{
	return gw_waiters_unwait(sp->waiters, w);
}

/* Lists (or, after a failed transaction, unlists) the waiters of list's
 * stored updates. */
static void waiters_list(gw_spool *sp, job *list, bool on)
{
	job *j;
	size_t i;

	for (j = list; j != NULL; j = j->next) {
		if (j->kind != JOB_PUT)
			continue;
		for (i = 0; i < j->n; i++) {
			gw_waiter *w = j->recs[i].waiter;

			if (w == NULL || w->id <= 0)
				continue;
			if (on)
				gw_waiters_list(sp->waiters, w);
			else
				gw_waiters_unwait(sp->waiters, w);
		}
	}
}

/* ==== The writer ==== */

static long long rec_size(const gw_store_rec *r)
{
	return (long long)(r->sid_len + strlen(r->path) + r->json_len) +
	       GW_SPOOL_ROW_OVERHEAD;
}

/* Stores one JOB_PUT inside the open transaction. */
static int run_put(gw_spool *sp, job *j, long long *depth, long long *bytes,
		   int64_t now)
{
	sqlite3_stmt *st = sp->st_insert;
	long long need = 0;
	size_t i;
	int rc;

	for (i = 0; i < j->n; i++)
		need += rec_size(&j->recs[i]);
	if (*bytes + need > (long long)sp->c->spool_max_bytes) {
		j->result = GW_STORE_FULL;
		return SQLITE_OK;
	}
	for (i = 0; i < j->n; i++) {
		const gw_store_rec *r = &j->recs[i];

		sqlite3_reset(st);
		sqlite3_bind_blob(st, 1, r->sid, (int)r->sid_len, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, (sqlite3_int64)r->seq);
		sqlite3_bind_text(st, 3, r->path, -1, SQLITE_STATIC);
		sqlite3_bind_blob(st, 4, r->json ? r->json : "",
				  (int)r->json_len, SQLITE_STATIC);
		sqlite3_bind_int64(st, 5, now);
		rc = sqlite3_step(st);
		sqlite3_reset(st);
		if (rc != SQLITE_DONE)
			return rc;
		if (r->waiter != NULL)
			r->waiter->id = sqlite3_last_insert_rowid(sp->db);
	}
	*bytes += need;
	*depth += (long long)j->n;
	return SQLITE_OK;
}

/* Runs one JOB_MARK inside the open transaction. */
static int run_mark(gw_spool *sp, const gw_spool_mark_rec *m,
		    long long *depth, long long *bytes, long long *dead,
		    int64_t now)
{
	size_t bl = m->body_len > DEAD_BODY_MAX ? DEAD_BODY_MAX : m->body_len;
	sqlite3_stmt *st;
	int rc;

	switch (m->mark) {
	case GW_MARK_RETRY:
		st = sp->st_retry;
		sqlite3_reset(st);
		sqlite3_bind_int64(st, 1, m->id);
		sqlite3_bind_int(st, 2, m->attempts);
		sqlite3_bind_int64(st, 3, m->next_ms);
		sqlite3_bind_int(st, 4, m->status);
		if (m->body)
			sqlite3_bind_text(st, 5, m->body, (int)bl, SQLITE_STATIC);
		else
			sqlite3_bind_null(st, 5);
		rc = sqlite3_step(st);
		sqlite3_reset(st);
		return rc == SQLITE_DONE ? SQLITE_OK : rc;
	case GW_MARK_DEAD:
		st = sp->st_dead;
		sqlite3_reset(st);
		sqlite3_bind_int64(st, 1, m->id);
		sqlite3_bind_int(st, 2, m->attempts);
		sqlite3_bind_int64(st, 3, now);
		sqlite3_bind_int(st, 4, m->status);
		if (m->body)
			sqlite3_bind_blob(st, 5, m->body, (int)bl, SQLITE_STATIC);
		else
			sqlite3_bind_null(st, 5);
		rc = sqlite3_step(st);
		sqlite3_reset(st);
		if (rc != SQLITE_DONE)
			return rc;
		if (sqlite3_changes(sp->db) == 1) {
			*dead += 1;
			*bytes += (long long)(m->body ? bl : 0);
		}
		/* the row leaves the spool */
		__attribute__((fallthrough));
	case GW_MARK_DONE:
		st = sp->st_delete;
		sqlite3_reset(st);
		sqlite3_bind_int64(st, 1, m->id);
		rc = sqlite3_step(st);
		sqlite3_reset(st);
		if (rc != SQLITE_DONE)
			return rc;
		if (sqlite3_changes(sp->db) == 1) {
			*depth -= 1;
			if (m->mark == GW_MARK_DONE)
				*bytes -= m->size;
		}
		return SQLITE_OK;
	}
	return SQLITE_MISUSE;
}

/* FULL (fsync at COMMIT) when list stores updates, NORMAL when it only
 * marks rows. SQLITE_OK or an error code. */
static int set_sync(gw_spool *sp, const job *list)
{
	bool full = false;
	const job *j;
	int rc;

	for (j = list; j != NULL && !full; j = j->next)
		full = j->kind == JOB_PUT;
	if (full == sp->sync_full)
		return SQLITE_OK;
	rc = sqlite3_exec(sp->db, full ? "PRAGMA synchronous=FULL"
				       : "PRAGMA synchronous=NORMAL",
			  NULL, NULL, NULL);
	if (rc == SQLITE_OK)
		sp->sync_full = full;
	return rc;
}

/* Runs every job of list in one transaction. */
static void run_txn(gw_spool *sp, job *list)
{
	long long depth, bytes, dead;
	unsigned rows = 0, updates = 0;
	int64_t now = gw_spool__now_ms();
	double t1;
	const char *what = "PRAGMA synchronous";
	job *j;
	int rc;
	bool listed = false;

	rc = set_sync(sp, list);
	if (rc == SQLITE_OK) {
		what = "BEGIN";
		rc = sqlite3_exec(sp->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
	}
	if (rc == SQLITE_OK) {
		what = "reading meta";
		rc = meta_get(sp, "depth", &depth);
		if (rc == SQLITE_OK)
			rc = meta_get(sp, "bytes", &bytes);
		if (rc == SQLITE_OK)
			rc = meta_get(sp, "dead", &dead);
	}
	for (j = list; j != NULL && rc == SQLITE_OK; j = j->next) {
		j->result = GW_STORE_OK;
		if (j->kind == JOB_PUT) {
			what = "storing updates";
			rc = run_put(sp, j, &depth, &bytes, now);
		} else {
			what = "marking an update";
			rc = run_mark(sp, &j->m, &depth, &bytes, &dead, now);
		}
		if (rc == SQLITE_OK && j->result == GW_STORE_OK) {
			rows += j->kind == JOB_PUT ? (unsigned)j->n : 1;
			updates += j->kind == JOB_PUT ? (unsigned)j->n : 0;
		}
	}
	if (rc == SQLITE_OK) {
		what = "writing meta";
		if (depth < 0)
			depth = 0;
		if (bytes < 0)
			bytes = 0;
		rc = meta_set(sp, "depth", depth);
		if (rc == SQLITE_OK)
			rc = meta_set(sp, "bytes", bytes);
		if (rc == SQLITE_OK)
			rc = meta_set(sp, "dead", dead);
	}
	t1 = mono_s();
	if (rc == SQLITE_OK) {
		/* listed before anything can see the rows */
		waiters_list(sp, list, true);
		listed = true;
		what = "COMMIT";
		rc = sqlite3_exec(sp->db, "COMMIT", NULL, NULL, NULL);
	}
	if (rc != SQLITE_OK) {
		char msg[ERRMSG_MAX];
		bool disk_full = (rc & 0xff) == SQLITE_FULL;
		gw_log_fields f = GW_LOG_FIELDS_INIT;

		if (listed)
			waiters_list(sp, list, false);
		if (disk_full)
			snprintf(msg, sizeof(msg),
				 "the disk under the spool is full (%s: %s); nothing was stored, retry later",
				 what, sqlite3_errmsg(sp->db));
		else
			snprintf(msg, sizeof(msg),
				 "cannot store in the spool (%s: %s)", what,
				 sqlite3_errmsg(sp->db));
		if (!sqlite3_get_autocommit(sp->db))
			sqlite3_exec(sp->db, "ROLLBACK", NULL, NULL, NULL);
		for (j = list; j != NULL; j = j->next) {
			/* a full disk is a full spool: 507, like the byte cap */
			j->result = disk_full && j->kind == JOB_PUT
					    ? GW_STORE_FULL : GW_STORE_ERROR;
			snprintf(j->err, sizeof(j->err), "%s", msg);
		}
		f.error = msg;
		gw_log(GW_LOG_ERROR, "spool transaction failed", &f);
		return;
	}
	gw_metrics_spool_commit(mono_s() - t1, rows, updates);
	pthread_mutex_lock(&sp->mu);
	sp->depth = depth;
	sp->bytes = bytes;
	sp->dead = dead;
	pthread_mutex_unlock(&sp->mu);
	gw_metrics_spool_state(depth, bytes, dead, oldest_ms(sp));
	if (updates > 0 && sp->news != NULL)
		sp->news(sp->news_arg);
}

/* On the job's loop: its callback, then it is freed. */
static void job_done(void *arg)
{
	job *j = arg;

	j->cb(j->cb_arg, j->result, j->err);
	free(j);
}

/* Hands the jobs of one transaction back: posted to their loops, or a
 * waiting caller woken. */
static void finish_jobs(gw_spool *sp, job *list)
{
	job *j, *next;

	for (j = list; j != NULL; j = next) {
		next = j->next; /* j belongs to its caller once handed back */
		if (j->result == GW_STORE_FULL && j->err[0] == '\0')
			snprintf(j->err, sizeof(j->err),
				 "the spool is full (--spool-max-bytes %zu); nothing was stored, retry later",
				 sp->c->spool_max_bytes);
		if (j->loop != NULL) {
			gw_loop_post(j->loop, &j->post, job_done, j);
			continue;
		}
		pthread_mutex_lock(&sp->mu);
		j->done = true;
		pthread_cond_signal(&j->cv);
		pthread_mutex_unlock(&sp->mu);
	}
}

static void *writer_main(void *arg)
{
	gw_spool *sp = arg;
	job *list;

	pthread_mutex_lock(&sp->mu);
	for (;;) {
		while (sp->head == NULL && !sp->stop)
			pthread_cond_wait(&sp->work, &sp->mu);
		if (sp->head == NULL)
			break; /* stopping and nothing queued */
		list = sp->head;
		sp->head = sp->tail = NULL;
		pthread_mutex_unlock(&sp->mu);
		run_txn(sp, list);
		finish_jobs(sp, list);
		pthread_mutex_lock(&sp->mu);
	}
	pthread_mutex_unlock(&sp->mu);
	return NULL;
}

/* Queues j for the writer. 0, or -1 when closing. */
static int enqueue(gw_spool *sp, job *j)
{
	pthread_mutex_lock(&sp->mu);
	if (sp->stop) {
		pthread_mutex_unlock(&sp->mu);
		return -1;
	}
	j->next = NULL;
	if (sp->tail)
		sp->tail->next = j;
	else
		sp->head = j;
	sp->tail = j;
	pthread_cond_signal(&sp->work);
	pthread_mutex_unlock(&sp->mu);
	return 0;
}

/* ==== The interface ==== */

int gw_spool_put(gw_spool *sp, gw_loop *loop, const gw_store_rec *recs,
		 size_t n, gw_store_done_fn cb, void *arg)
{
	job *j;

	if (n == 0 || n > 1000000 || loop == NULL || cb == NULL)
		return -1;
	j = calloc(1, sizeof(*j) + n * sizeof(gw_store_rec));
	if (j == NULL)
		return -1;
	j->kind = JOB_PUT;
	memcpy(j->recs_copy, recs, n * sizeof(gw_store_rec));
	j->recs = j->recs_copy;
	j->n = n;
	j->loop = loop;
	j->cb = cb;
	j->cb_arg = arg;
	if (enqueue(sp, j) != 0) {
		free(j);
		return -1;
	}
	return 0;
}

int gw_spool_mark(gw_spool *sp, gw_loop *loop, const gw_spool_mark_rec *m,
		  gw_store_done_fn cb, void *arg)
{
	job *j;

	if (loop == NULL || cb == NULL)
		return -1;
	j = calloc(1, sizeof(*j));
	if (j == NULL)
		return -1;
	j->kind = JOB_MARK;
	j->m = *m;
	j->loop = loop;
	j->cb = cb;
	j->cb_arg = arg;
	if (enqueue(sp, j) != 0) {
		free(j);
		return -1;
	}
	return 0;
}

int gw_spool_mark_wait(gw_spool *sp, const gw_spool_mark_rec *m)
{
	job j;

	memset(&j, 0, sizeof(j));
	j.kind = JOB_MARK;
	j.m = *m;
	pthread_cond_init(&j.cv, NULL);
	if (enqueue(sp, &j) != 0) {
		pthread_cond_destroy(&j.cv);
		return -1;
	}
	pthread_mutex_lock(&sp->mu);
	while (!j.done)
		pthread_cond_wait(&j.cv, &sp->mu);
	pthread_mutex_unlock(&sp->mu);
	pthread_cond_destroy(&j.cv);
	return j.result == GW_STORE_OK ? 0 : -1;
}

void gw_spool_on_news(gw_spool *sp, void (*fn)(void *arg), void *arg)
{
	pthread_mutex_lock(&sp->mu);
	sp->news = fn;
	sp->news_arg = arg;
	pthread_mutex_unlock(&sp->mu);
}

const char *gw_spool__db_path(const gw_spool *sp)
{
	return sp->db_path;
}

struct sqlite3 *gw_spool__reader(gw_spool *sp)
{
	sqlite3 *db = NULL;

	/* one thread at a time uses it: no mutex of SQLite's own */
	if (sqlite3_open_v2(sp->db_path, &db,
			    SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
			    NULL) != SQLITE_OK) {
		sqlite3_close(db);
		return NULL;
	}
	sqlite3_busy_timeout(db, 10000);
	return db;
}

void gw_spool_usage(gw_spool *sp, long long *depth, long long *bytes)
{
	pthread_mutex_lock(&sp->mu);
	*depth = sp->depth;
	*bytes = sp->bytes;
	pthread_mutex_unlock(&sp->mu);
}

void gw_spool_close(gw_spool *sp)
{
	if (sp == NULL)
		return;
	if (sp->writer_started) {
		pthread_mutex_lock(&sp->mu);
		sp->stop = true;
		pthread_cond_broadcast(&sp->work);
		pthread_mutex_unlock(&sp->mu);
		pthread_join(sp->writer, NULL);
		pthread_cond_destroy(&sp->work);
		pthread_mutex_destroy(&sp->mu);
	}
	sqlite3_finalize(sp->st_insert);
	sqlite3_finalize(sp->st_delete);
	sqlite3_finalize(sp->st_retry);
	sqlite3_finalize(sp->st_dead);
	sqlite3_finalize(sp->st_meta_get);
	sqlite3_finalize(sp->st_meta_set);
	sqlite3_finalize(sp->st_oldest);
	if (sp->db != NULL && sqlite3_close(sp->db) != SQLITE_OK)
		gw_log(GW_LOG_WARN, "spool: the database did not close cleanly",
		       NULL);
	if (sp->lock_fd >= 0)
		close(sp->lock_fd); /* drops the flock */
	gw_waiters_free(sp->waiters);
	free(sp);
}

/* ==== As a store ==== */

static gw_spool *spool_of(gw_store *st)
{
	return (gw_spool *)(void *)st;
}

gw_store *gw_spool_store(gw_spool *sp)
{
	return sp ? &sp->store : NULL;
}

static int st_put(gw_store *st, gw_loop *loop, const gw_store_rec *recs,
		  size_t n, gw_store_done_fn cb, void *arg)
{
	return gw_spool_put(spool_of(st), loop, recs, n, cb, arg);
}

static bool st_unwait(gw_store *st, gw_waiter *w)
{
	return gw_spool_unwait(spool_of(st), w);
}

/* spool_forwarders 0 (tests only: the flag's minimum is 1): stored, not
 * forwarded. */
static int st_fwd_open(gw_store *st, unsigned n_loops, char *err,
		       size_t errlen)
{
	gw_spool *sp = spool_of(st);

	if (sp->c->spool_forwarders == 0)
		return 0;
	sp->fwd = gw_spool_fwd_open(sp->c, sp, n_loops, err, errlen);
	return sp->fwd ? 0 : -1;
}

static void *st_lane_new(gw_store *st, unsigned idx, gw_loop *loop,
			 gw_uplink *ul, char *err, size_t errlen)
{
	gw_spool *sp = spool_of(st);

	err[0] = '\0';
	if (idx >= gw_spool_fwd_lanes(sp->fwd))
		return NULL;
	return gw_spool_lane_new(sp->fwd, idx, loop, ul, err, errlen);
}

static void st_lane_stop(void *lane)
{
	gw_spool_lane_stop(lane);
}

static bool st_lane_idle(const void *lane)
{
	return gw_spool_lane_idle(lane);
}

static void st_lane_free(void *lane)
{
	gw_spool_lane_free(lane);
}

static void st_quiet(gw_store *st)
{
	gw_spool_on_news(spool_of(st), NULL, NULL);
}

static void st_fwd_close(gw_store *st)
{
	gw_spool *sp = spool_of(st);

	gw_spool_fwd_close(sp->fwd);
	sp->fwd = NULL;
}

/* The spool takes updates while it is open (a failed commit answers 503
 * or 507 for itself). */
static bool st_ready(gw_store *st, char *why, size_t cap)
{
	(void)st;
	if (cap > 0)
		why[0] = '\0';
	return true;
}

static const gw_store_ops spool_ops = {
	"spool", st_put, st_unwait, st_fwd_open, st_lane_new, st_lane_stop,
	st_lane_idle, st_lane_free, st_quiet, st_fwd_close, st_ready
};
