/* forwarder.c - threads that drain the spool to the upstream.
 *
 * Per-session FIFO: a thread claims a session (under fw->mu, so no other
 * thread works on it), then sends that session's rows in id order, one at
 * a time, each only after the previous one's mark has been committed:
 *   2xx                        delete the row, go on with the next
 *   408, 429, 5xx, no answer   attempts + 1, next_attempt_ms = now +
 *                              max(full-jitter backoff, Retry-After); the
 *                              session waits (its later rows too)
 *   any other status           move the row to dead_letters with the
 *                              status and body, go on with the next
 * then releases the session. Other sessions are claimed by other threads,
 * so one failing session never holds the rest back. At most DRAIN_MAX rows
 * are sent per claim, so busy sessions take turns.
 *
 * Picking: one query lists the sessions whose head (lowest id) is due,
 * in the order they became due (up to PICK_LIMIT): a row never tried at
 * its arrival, a retried one at its next_attempt_ms, so a retry that is
 * due goes before rows that arrived after it (not behind every new one);
 * the threads take sessions from that list until it is empty, then the
 * next thread queries again (the query reads the whole index, so it is
 * shared by many picks). A listed session
 * may have been drained meanwhile: drain() finds no due head and returns.
 * With nothing due a thread sleeps until the earliest next_attempt_ms, a
 * new commit, or POLL_MS (the admin command may have added rows from
 * another process).
 *
 * The upstream is the forwarder's own, with max_attempts 1: retries live
 * in the spool, so they survive restarts and never block a thread.
 * Delivery is at-least-once: a crash between an upstream 2xx and the
 * commit of the delete sends that row again after the restart, before
 * anything later of its session.
 *
 * In flight at a crash: each thread writes the id of the row it is
 * sending into its slot of DIR/inflight (a small file mapped shared, so
 * the writes outlive a SIGKILL without any fsync) and clears it when the
 * attempt is over. At the next start, every row still named there may
 * have been on its way to the API when the process died, and that copy
 * could still land after a re-send and the session's next update. Those
 * rows wait upstream_timeout_ms (the dead process would have given up by
 * then) before being sent again; their sessions wait behind them, the
 * rest go at once.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "gw.h"

#define DRAIN_MAX 64
#define PICK_LIMIT 256
#define POLL_MS 1000
#define SID_MAX 4096
/* Slots read back from an old DIR/inflight at most (one per thread). */
#define INFLIGHT_MAX 1024

typedef struct worker {
	struct gw_forwarder *fw;
	pthread_t th;
	bool started;
	sqlite3 *db;
	sqlite3_stmt *st_heads, *st_head;
	uint64_t rng;
	int64_t *slot;                /* its slot in DIR/inflight */
	unsigned char sid[SID_MAX];   /* the claimed session */
	size_t sid_len;
	bool claimed;
} worker;

typedef struct ready_sid {
	size_t len;
	unsigned char *sid;          /* heap */
} ready_sid;

struct gw_forwarder {
	gw_config cfg;               /* a copy with max_attempts 1 */
	gw_spool *sp;
	gw_upstream *up;
	pthread_mutex_t mu;          /* picking, claims, the ready list */
	ready_sid ready[PICK_LIMIT]; /* due sessions, oldest first */
	size_t n_ready, next_ready;
	atomic_bool stop;
	unsigned n;
	worker *w;
	int64_t *inflight;           /* DIR/inflight mapped: n slots */
};

/* Full jitter: random in [0, min(max, base * 2^attempt)]. */
static long backoff_ms(const gw_config *c, int attempt, uint64_t *rng)
{
	long cap = c->backoff_base_ms > 0 ? c->backoff_base_ms : 1;
	uint64_t x;
	int i;

	for (i = 0; i < attempt && cap < c->backoff_max_ms; i++)
		cap *= 2;
	if (cap > c->backoff_max_ms)
		cap = c->backoff_max_ms;
	if (cap <= 0)
		return 0;
	x = *rng;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*rng = x;
	return (long)((x * 0x2545F4914F6CDD1Dull) % ((uint64_t)cap + 1));
}

static bool retryable(int status)
{
	return status == 0 || status == 408 || status == 429 || status >= 500;
}

/* A session claimed by some other worker. Under fw->mu. */
static bool claimed_elsewhere(gw_forwarder *fw, const worker *self,
			      const void *sid, size_t n)
{
	unsigned i;

	for (i = 0; i < fw->n; i++) {
		const worker *o = &fw->w[i];

		if (o != self && o->claimed && o->sid_len == n &&
		    memcmp(o->sid, sid, n) == 0)
			return true;
	}
	return false;
}

static void ready_clear(gw_forwarder *fw)
{
	size_t i;

	for (i = 0; i < fw->n_ready; i++)
		free(fw->ready[i].sid);
	fw->n_ready = fw->next_ready = 0;
}

/* Lists the due sessions into fw->ready. Under fw->mu. Returns the time
 * in ms until the earliest head that is not due yet (POLL_MS at most). */
static long refill(worker *w)
{
	gw_forwarder *fw = w->fw;
	int64_t now = gw_spool__now_ms(), soonest = -1;
	long wait = POLL_MS;
	int rc;

	ready_clear(fw);
	sqlite3_reset(w->st_heads);
	while ((rc = sqlite3_step(w->st_heads)) == SQLITE_ROW &&
	       fw->n_ready < PICK_LIMIT) {
		const void *sid = sqlite3_column_blob(w->st_heads, 0);
		size_t n = (size_t)sqlite3_column_bytes(w->st_heads, 0);
		int64_t next = sqlite3_column_int64(w->st_heads, 1);
		ready_sid *r = &fw->ready[fw->n_ready];

		if (n > SID_MAX)
			continue;
		if (next > now) {
			if (soonest < 0 || next < soonest)
				soonest = next;
			continue;
		}
		r->sid = malloc(n ? n : 1);
		if (r->sid == NULL)
			break;
		memcpy(r->sid, sid, n);
		r->len = n;
		fw->n_ready++;
	}
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		gw_log_fields f = GW_LOG_FIELDS_INIT;

		f.error = sqlite3_errmsg(w->db);
		gw_log(GW_LOG_ERROR, "forwarder: cannot read the spool", &f);
	}
	sqlite3_reset(w->st_heads);
	if (soonest >= 0 && soonest - now < POLL_MS)
		wait = (long)(soonest - now) + 1;
	return wait;
}

/* Claims the oldest due, unclaimed session. Returns true with w->sid
 * set, or false with *wait_ms the time until something may be due. */
static bool pick(worker *w, long *wait_ms)
{
	gw_forwarder *fw = w->fw;
	bool got = false, refilled = false, more;

	*wait_ms = POLL_MS;
	pthread_mutex_lock(&fw->mu);
	for (;;) {
		while (fw->next_ready < fw->n_ready) {
			ready_sid *r = &fw->ready[fw->next_ready++];

			if (claimed_elsewhere(fw, w, r->sid, r->len))
				continue;
			memcpy(w->sid, r->sid, r->len);
			w->sid_len = r->len;
			w->claimed = true;
			got = true;
			break;
		}
		if (got || refilled)
			break;
		*wait_ms = refill(w);
		refilled = true;
	}
	more = fw->next_ready < fw->n_ready;
	pthread_mutex_unlock(&fw->mu);
	if (got && more)
		gw_spool__kick(fw->sp); /* another thread can take the rest */
	return got;
}

static void release(worker *w)
{
	pthread_mutex_lock(&w->fw->mu);
	w->claimed = false;
	pthread_mutex_unlock(&w->fw->mu);
}

/* Sends the claimed session's rows. */
static void drain(worker *w)
{
	gw_forwarder *fw = w->fw;
	int k;

	for (k = 0; k < DRAIN_MAX && !atomic_load(&fw->stop); k++) {
		sqlite3_stmt *st = w->st_head;
		gw_response resp;
		int64_t id, next, now;
		int attempts, rc, status;
		long long size;
		char *path = NULL, *json = NULL;
		size_t json_len;
		gw_log_fields f = GW_LOG_FIELDS_INIT;

		sqlite3_reset(st);
		sqlite3_bind_blob(st, 1, w->sid, (int)w->sid_len, SQLITE_STATIC);
		rc = sqlite3_step(st);
		if (rc != SQLITE_ROW) {
			sqlite3_reset(st);
			return;
		}
		id = sqlite3_column_int64(st, 0);
		attempts = sqlite3_column_int(st, 1);
		next = sqlite3_column_int64(st, 2);
		now = gw_spool__now_ms();
		if (next > now) {
			sqlite3_reset(st);
			return;
		}
		path = strdup((const char *)sqlite3_column_text(st, 3));
		json_len = (size_t)sqlite3_column_bytes(st, 4);
		json = malloc(json_len + 1);
		if (path == NULL || json == NULL) {
			sqlite3_reset(st);
			free(path);
			free(json);
			return;
		}
		memcpy(json, sqlite3_column_blob(st, 4), json_len);
		json[json_len] = '\0';
		size = (long long)(w->sid_len + strlen(path) + json_len) +
		       GW_SPOOL_ROW_OVERHEAD;
		sqlite3_reset(st);

		__atomic_store_n(w->slot, id, __ATOMIC_RELAXED);
		gw_upstream_patch(fw->up, path, json, json_len, &resp);
		__atomic_store_n(w->slot, 0, __ATOMIC_RELAXED);
		status = resp.status;
		attempts++;
		if (status >= 200 && status < 300) {
			rc = gw_spool__mark(fw->sp, GW_MARK_DONE, id, size,
					    attempts, 0, status, NULL, 0);
			if (rc == 0)
				gw_metrics_spool_delivered();
		} else if (retryable(status)) {
			long wait = backoff_ms(&fw->cfg, attempts - 1, &w->rng);
			const char *why = status ? resp.body : resp.error;

			if (resp.retry_after_ms > wait)
				wait = resp.retry_after_ms;
			/* not marked: sent again later with the old count */
			if (gw_spool__mark(fw->sp, GW_MARK_RETRY, id, size,
					   attempts, gw_spool__now_ms() + wait,
					   status, why, why ? strlen(why) : 0) == 0)
				gw_metrics_spool_retry();
			f.status = status;
			f.attempts = attempts;
			f.error = status ? "upstream answered a retryable status"
					 : resp.error;
			gw_log(GW_LOG_DEBUG, "spool: will retry", &f);
			free(path);
			free(json);
			gw_response_free(&resp);
			return; /* the session waits */
		} else {
			rc = gw_spool__mark(fw->sp, GW_MARK_DEAD, id, size,
					    attempts, 0, status, resp.body,
					    resp.body_len);
			if (rc == 0)
				gw_metrics_spool_dead();
			f.status = status;
			f.attempts = attempts;
			f.route = "spool";
			f.error = "final upstream failure: moved to dead_letters";
			gw_log(GW_LOG_WARN, "spool: dead letter", &f);
		}
		free(path);
		free(json);
		gw_response_free(&resp);
		if (rc != 0)
			return; /* not marked: the row is sent again later */
	}
}

static void *worker_main(void *arg)
{
	worker *w = arg;
	gw_forwarder *fw = w->fw;

	while (!atomic_load(&fw->stop)) {
		uint64_t seen = gw_spool__commits(fw->sp);
		long wait_ms;

		if (!pick(w, &wait_ms)) {
			gw_spool__wait(fw->sp, seen, wait_ms, &fw->stop);
			continue;
		}
		drain(w);
		release(w);
	}
	return NULL;
}

/* ==== Rows in flight at a crash ==== */

/* Makes row id wait hold_ms before its next attempt (the attempt count
 * and last answer kept). 1 held, 0 gone already, -1 not marked. */
static int hold_row(gw_forwarder *fw, sqlite3 *db, int64_t id, long hold_ms)
{
	static const char why[] =
		"held after an unclean stop: it may have been in flight";
	sqlite3_stmt *st = NULL;
	int rc;

	if (sqlite3_prepare_v2(db, "SELECT attempts, last_status FROM spool WHERE id=?1",
			       -1, &st, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_int64(st, 1, id);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		rc = gw_spool__mark(fw->sp, GW_MARK_RETRY, id, 0,
				    sqlite3_column_int(st, 0),
				    gw_spool__now_ms() + hold_ms,
				    sqlite3_column_int(st, 1), why,
				    sizeof(why) - 1) == 0 ? 1 : -1;
	else
		rc = rc == SQLITE_DONE ? 0 : -1;
	sqlite3_finalize(st);
	return rc;
}

/* Holds the rows an earlier process left in DIR/inflight, then maps the
 * file afresh with one empty slot per thread. 0, or -1 with err. */
static int inflight_open(gw_forwarder *fw, sqlite3 *db, char *err,
			 size_t errlen)
{
	char path[600];
	int64_t old[INFLIGHT_MAX];
	size_t n_old = 0, i, held = 0, bytes = fw->n * sizeof(int64_t);
	struct stat sb;
	ssize_t got;
	void *map;
	int fd;

	snprintf(path, sizeof(path), "%s/inflight", fw->cfg.spool_dir);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0 || fstat(fd, &sb) != 0) {
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	got = pread(fd, old, sizeof(old), 0);
	if (got > 0)
		n_old = (size_t)got / sizeof(int64_t);
	for (i = 0; i < n_old; i++) {
		int rc = old[i] > 0 ? hold_row(fw, db, old[i],
					       fw->cfg.upstream_timeout_ms) : 0;

		if (rc < 0) {
			/* sent at once it could overtake a late copy: keep the
			 * slots and refuse to start */
			snprintf(err, errlen,
				 "cannot hold spool row %lld (named in %s: it may have been in flight when the gateway stopped): the spool database could not be read or written",
				 (long long)old[i], path);
			close(fd);
			return -1;
		}
		held += (size_t)rc;
	}
	if (held > 0) {
		gw_log_fields f = GW_LOG_FIELDS_INIT;
		char msg[200];

		snprintf(msg, sizeof(msg),
			 "spool: %zu update(s) may have been in flight when the gateway stopped; each waits --upstream-timeout-ms before it is sent again",
			 held);
		gw_log(GW_LOG_INFO, msg, &f);
	}
	/* the holds are committed: the slots can go */
	if (ftruncate(fd, 0) != 0 || ftruncate(fd, (off_t)bytes) != 0) {
		snprintf(err, errlen, "cannot size %s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	map = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (map == MAP_FAILED) {
		snprintf(err, errlen, "cannot map %s: %s", path, strerror(errno));
		return -1;
	}
	fw->inflight = map;
	for (i = 0; i < fw->n; i++)
		fw->w[i].slot = &fw->inflight[i];
	return 0;
}

/* ==== Start and stop ==== */

static int worker_open(worker *w, char *err, size_t errlen)
{
	gw_forwarder *fw = w->fw;

	w->db = gw_spool__reader(fw->sp);
	if (w->db == NULL) {
		snprintf(err, errlen, "forwarder: cannot open %s",
			 gw_spool__db_path(fw->sp));
		return -1;
	}
	if (sqlite3_prepare_v3(w->db,
			       "SELECT s.sid, s.next_attempt_ms FROM spool s"
			       " WHERE s.id IN (SELECT min(id) FROM spool GROUP BY sid)"
			       " ORDER BY max(s.next_attempt_ms, s.arrived_ms), s.id",
			       -1, SQLITE_PREPARE_PERSISTENT, &w->st_heads,
			       NULL) != SQLITE_OK ||
	    sqlite3_prepare_v3(w->db,
			       "SELECT id, attempts, next_attempt_ms, path, json"
			       " FROM spool WHERE sid=?1 ORDER BY id LIMIT 1",
			       -1, SQLITE_PREPARE_PERSISTENT, &w->st_head,
			       NULL) != SQLITE_OK) {
		snprintf(err, errlen, "forwarder: %s", sqlite3_errmsg(w->db));
		return -1;
	}
	return 0;
}

gw_forwarder *gw_forwarder_start(const gw_config *c, gw_spool *sp,
				 char *err, size_t errlen)
{
	gw_forwarder *fw = calloc(1, sizeof(*fw));
	struct timespec ts;
	unsigned i;

	if (fw == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	fw->cfg = *c;
	fw->cfg.max_attempts = 1;
	fw->sp = sp;
	fw->n = c->spool_forwarders ? c->spool_forwarders : 1;
	pthread_mutex_init(&fw->mu, NULL);
	fw->w = calloc(fw->n, sizeof(*fw->w));
	if (fw->w == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	fw->up = gw_upstream_new(&fw->cfg, err, errlen);
	if (fw->up == NULL)
		goto fail;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	for (i = 0; i < fw->n; i++) {
		worker *w = &fw->w[i];

		w->fw = fw;
		w->rng = ((uint64_t)ts.tv_nsec + i + 1) * 0x9E3779B97F4A7C15ull;
		if (w->rng == 0)
			w->rng = 1;
		if (worker_open(w, err, errlen) != 0)
			goto fail;
	}
	if (inflight_open(fw, fw->w[0].db, err, errlen) != 0)
		goto fail;
	for (i = 0; i < fw->n; i++) {
		if (pthread_create(&fw->w[i].th, NULL, worker_main, &fw->w[i]) != 0) {
			snprintf(err, errlen, "cannot start a forwarder thread");
			goto fail;
		}
		fw->w[i].started = true;
	}
	return fw;
fail:
	gw_forwarder_stop(fw);
	return NULL;
}

void gw_forwarder_stop(gw_forwarder *fw)
{
	unsigned i;

	if (fw == NULL)
		return;
	atomic_store(&fw->stop, true);
	gw_spool__wake_all(fw->sp);
	for (i = 0; fw->w && i < fw->n; i++) {
		worker *w = &fw->w[i];

		if (w->started)
			pthread_join(w->th, NULL);
	}
	for (i = 0; fw->w && i < fw->n; i++) {
		worker *w = &fw->w[i];

		sqlite3_finalize(w->st_heads);
		sqlite3_finalize(w->st_head);
		if (w->db)
			sqlite3_close(w->db);
	}
	if (fw->inflight != NULL)
		munmap(fw->inflight, fw->n * sizeof(int64_t));
	free(fw->w);
	ready_clear(fw);
	gw_upstream_free(fw->up);
	pthread_mutex_destroy(&fw->mu);
	free(fw);
}
