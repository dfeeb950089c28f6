/* spool_forward.c - drains the spool to the upstream on the event loops.
 *
 * Sessions are split between lanes (one per loop, min(loops, --spool-
 * forwarders) of them) by a hash of their id, so no two loops ever work
 * on one session and nothing is shared between them but the spool's
 * writer. The --spool-forwarders chains are dealt out between the lanes;
 * a chain claims one of its lane's due
 * sessions, then sends that session's rows in id order, one at a time,
 * each only after the previous one's mark has been committed:
 *   2xx                 delete the row, go on with the next
 *   retryable (retry.c, persistent policy: 408, 429, 5xx of the retried
 *   kind, no answer)    attempts + 1, next_attempt_ms = now + max(full-
 *                       jitter backoff, Retry-After); the session waits
 *                       (its later rows too)
 *   any other status    the row moves to dead_letters with the status and
 *                       body, go on with the next
 * then releases the session. At most DRAIN_MAX rows go per claim, so busy
 * sessions take turns. The upstream call is one attempt on the loop's
 * curl multi handle; the mark is a job for the spool's writer, whose
 * commit is posted back to the loop: no thread waits.
 *
 * Picking: one query reads the spool's heads table (each session's first
 * row, kept by triggers) by its due-time index, in the order they became
 * due (a row never tried at its arrival, a retried one at its
 * next_attempt_ms), and the lane keeps those of its share (up to
 * PICK_LIMIT) until the first that is not due yet. Chains take sessions from that list until it is empty,
 * then it is read again. A listed session may have been drained
 * meanwhile: the chain finds no due head and takes the next. With nothing
 * due the lane sleeps until the earliest next_attempt_ms, a commit that
 * stored updates (the writer posts to every lane), or POLL_MS (the admin
 * command may have added rows from another process).
 *
 * Delivery is at-least-once: a crash between an upstream 2xx and the
 * commit of the delete sends that row again after the restart, before
 * anything later of its session. A JSON client waiting for a row's answer
 * (gw_spool_settle) gets it as soon as it is final, before the mark.
 *
 * In flight at a crash: each chain writes the id of the row it is sending
 * into its slot of DIR/inflight (a small file mapped shared, so the
 * writes outlive a SIGKILL without any fsync) and clears it when the
 * attempt is over. At the next start, every row still named there may
 * have been on its way to the API when the process died, and that copy
 * could still land after a re-send and the session's next update. Those
 * rows wait upstream_timeout_ms (the dead process would have given up by
 * then) before being sent again; their sessions wait behind them, the
 * rest go at once.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "gw.h"

#define DRAIN_MAX 64
#define PICK_LIMIT 256
#define POLL_MS 1000
#define SID_MAX 4096
/* Slots read back from an old DIR/inflight at most. */
#define INFLIGHT_MAX 1024

struct gw_spool_fwd {
	const gw_config *c;
	gw_spool *sp;
	gw_retry_policy policy;      /* persistent */
	unsigned n_lanes;            /* min(loops, spool_forwarders) */
	int64_t *inflight;           /* DIR/inflight mapped */
	size_t n_slots;
	gw_spool_lane **lanes;       /* by loop; read by the writer's news */
};

typedef struct chain {
	gw_spool_lane *ln;
	int64_t *slot;               /* its slot in DIR/inflight */
	bool busy;                   /* a session claimed */
	unsigned char sid[SID_MAX];
	size_t sid_len;
	int sent;                    /* rows sent in this claim */
	/* the row on its way */
	int64_t id;
	long long size;
	int attempts;
	char *path, *json;
	size_t json_len;
	gw_response resp;            /* its answer, until the mark commits */
	gw_mark mark;
} chain;

typedef struct ready_sid {
	size_t len;
	unsigned char *sid;          /* heap */
} ready_sid;

struct gw_spool_lane {
	gw_spool_fwd *f;
	unsigned idx;
	gw_loop *loop;
	gw_uplink *ul;
	sqlite3 *db;
	sqlite3_stmt *st_heads, *st_head;
	chain *ch;
	unsigned n_ch, active;
	ready_sid ready[PICK_LIMIT]; /* due sessions of this lane, oldest first */
	size_t n_ready, next_ready;
	bool dry;                    /* the last read found nothing due */
	bool stopping;
	gw_timer poll;
	gw_post news_post;
	int news_pending;            /* atomic: news_post is queued */
	uint64_t rng;
};

static void pump(gw_spool_lane *ln);
static void chain_next(chain *c);

/* FNV-1a: which lane forwards a session. */
static unsigned lane_of(const void *sid, size_t n, unsigned n_lanes)
{
	const unsigned char *p = sid;
	uint32_t h = 2166136261u;
	size_t i;

	for (i = 0; i < n; i++)
		h = (h ^ p[i]) * 16777619u;
	return n_lanes ? h % n_lanes : 0;
}

/* Lane idx's chains and the first of their slots: the forwarders dealt
 * out, the first lanes taking one more of the remainder. */
static unsigned lane_chains(const gw_spool_fwd *f, unsigned idx,
			    size_t *first)
{
	unsigned base = (unsigned)(f->n_slots / f->n_lanes);
	unsigned extra = (unsigned)(f->n_slots % f->n_lanes);

	*first = (size_t)idx * base + (idx < extra ? idx : extra);
	return base + (idx < extra ? 1 : 0);
}

/* ==== Picking ==== */

static void ready_clear(gw_spool_lane *ln)
{
	size_t i;

	for (i = 0; i < ln->n_ready; i++)
		free(ln->ready[i].sid);
	ln->n_ready = ln->next_ready = 0;
}

/* Lists this lane's due sessions. Returns the ms until the earliest head
 * that is not due yet (POLL_MS at most). */
static long refill(gw_spool_lane *ln)
{
	int64_t now = gw_spool__now_ms(), soonest = -1;
	long wait = POLL_MS;
	int rc;

	ready_clear(ln);
	sqlite3_reset(ln->st_heads);
	sqlite3_bind_int(ln->st_heads, 1, PICK_LIMIT * (int)ln->f->n_lanes);
	while ((rc = sqlite3_step(ln->st_heads)) == SQLITE_ROW &&
	       ln->n_ready < PICK_LIMIT) {
		const void *sid = sqlite3_column_blob(ln->st_heads, 0);
		size_t n = (size_t)sqlite3_column_bytes(ln->st_heads, 0);
		int64_t next = sqlite3_column_int64(ln->st_heads, 1);
		ready_sid *r = &ln->ready[ln->n_ready];

		if (next > now) {
			soonest = next; /* the rest are later still */
			break;
		}
		if (n > SID_MAX || lane_of(sid, n, ln->f->n_lanes) != ln->idx)
			continue;
		r->sid = malloc(n ? n : 1);
		if (r->sid == NULL)
			break;
		memcpy(r->sid, sid, n);
		r->len = n;
		ln->n_ready++;
	}
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		gw_log_fields f = GW_LOG_FIELDS_INIT;

		f.error = sqlite3_errmsg(ln->db);
		gw_log(GW_LOG_ERROR, "forwarder: cannot read the spool", &f);
	}
	sqlite3_reset(ln->st_heads);
	if (soonest >= 0 && soonest - now < POLL_MS)
		wait = (long)(soonest - now) + 1;
	return wait;
}

static bool claimed(const gw_spool_lane *ln, const void *sid, size_t n)
{
	unsigned i;

	for (i = 0; i < ln->n_ch; i++) {
		const chain *c = &ln->ch[i];

		if (c->busy && c->sid_len == n && memcmp(c->sid, sid, n) == 0)
			return true;
	}
	return false;
}

/* The next listed session no chain has. */
static const ready_sid *take_ready(gw_spool_lane *ln)
{
	while (ln->next_ready < ln->n_ready) {
		const ready_sid *r = &ln->ready[ln->next_ready++];

		if (!claimed(ln, r->sid, r->len))
			return r;
	}
	return NULL;
}

/* ==== One chain ==== */

static void chain_forget_row(chain *c)
{
	free(c->path);
	free(c->json);
	c->path = c->json = NULL;
	gw_response_free(&c->resp);
}

static void release(chain *c)
{
	gw_spool_lane *ln = c->ln;

	chain_forget_row(c);
	c->busy = false;
	ln->active--;
	if (!ln->stopping)
		pump(ln);
}

static void on_marked(void *arg, int result, const char *err)
{
	chain *c = arg;
	gw_spool_lane *ln = c->ln;
	gw_mark m = c->mark;

	(void)err;
	chain_forget_row(c);
	if (result != GW_STORE_OK) {
		release(c); /* not marked: the row is sent again later */
		return;
	}
	if (m == GW_MARK_DONE)
		gw_metrics_spool_delivered();
	else if (m == GW_MARK_DEAD)
		gw_metrics_spool_dead();
	else
		gw_metrics_spool_retry();
	if (m == GW_MARK_RETRY || ln->stopping || c->sent >= DRAIN_MAX)
		release(c); /* after a retry mark the session waits */
	else
		chain_next(c);
}

/* The upstream's answer to the chain's row: settle a waiting client,
 * then mark the row (done, retry later, or dead). */
static void on_answer(void *ud, gw_response *resp)
{
	chain *c = ud;
	gw_spool_lane *ln = c->ln;
	gw_spool_fwd *f = ln->f;
	gw_spool_mark_rec m;
	gw_log_fields lf = GW_LOG_FIELDS_INIT;
	int status = resp->status;

	__atomic_store_n(c->slot, 0, __ATOMIC_RELAXED);
	c->resp = *resp;
	memset(&m, 0, sizeof(m));
	m.id = c->id;
	m.size = c->size;
	m.attempts = c->attempts + 1;
	m.status = status;
	if (status >= 200 && status < 300) {
		m.mark = GW_MARK_DONE;
	} else if (gw_retry_retryable(&f->policy, status, resp->curl_code)) {
		long wait = gw_retry_next(&f->policy, (unsigned)m.attempts, 0,
					  resp->retry_after_ms, &ln->rng);

		m.mark = GW_MARK_RETRY;
		m.next_ms = gw_spool__now_ms() + (wait > 0 ? wait : 0);
		/* c->resp: resp itself is gone after this call */
		m.body = status ? c->resp.body : c->resp.error;
		m.body_len = m.body ? strlen(m.body) : 0;
		lf.status = status;
		lf.attempts = m.attempts;
		lf.error = status ? "upstream answered a retryable status"
				  : resp->error;
		gw_log(GW_LOG_DEBUG, "spool: will retry", &lf);
	} else {
		m.mark = GW_MARK_DEAD;
		m.body = c->resp.body;
		m.body_len = c->resp.body_len;
		lf.status = status;
		lf.attempts = m.attempts;
		lf.route = "spool";
		lf.error = "final upstream failure: moved to dead_letters";
		gw_log(GW_LOG_WARN, "spool: dead letter", &lf);
	}
	if (m.mark != GW_MARK_RETRY)
		gw_spool_settle(f->sp, c->id, resp);
	c->mark = m.mark;
	if (gw_spool_mark(f->sp, ln->loop, &m, on_marked, c) != 0)
		release(c); /* closing: the row is sent again later */
}

/* Sends the claimed session's head if it is due; else releases it. */
static void chain_next(chain *c)
{
	gw_spool_lane *ln = c->ln;
	sqlite3_stmt *st = ln->st_head;
	int64_t next;

	sqlite3_reset(st);
	sqlite3_bind_blob(st, 1, c->sid, (int)c->sid_len, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_ROW) {
		sqlite3_reset(st);
		release(c);
		return;
	}
	c->id = sqlite3_column_int64(st, 0);
	c->attempts = sqlite3_column_int(st, 1);
	next = sqlite3_column_int64(st, 2);
	if (next > gw_spool__now_ms()) {
		sqlite3_reset(st);
		release(c);
		return;
	}
	c->path = strdup((const char *)sqlite3_column_text(st, 3));
	c->json_len = (size_t)sqlite3_column_bytes(st, 4);
	c->json = malloc(c->json_len + 1);
	if (c->path == NULL || c->json == NULL) {
		sqlite3_reset(st);
		release(c);
		return;
	}
	memcpy(c->json, sqlite3_column_blob(st, 4), c->json_len);
	c->json[c->json_len] = '\0';
	c->size = (long long)(c->sid_len + strlen(c->path) + c->json_len) +
		  GW_SPOOL_ROW_OVERHEAD;
	sqlite3_reset(st);
	c->sent++;
	__atomic_store_n(c->slot, c->id, __ATOMIC_RELAXED);
	if (gw_uplink_patch(ln->ul, c->path, c->json, c->json_len, false,
			    on_answer, c) != 0) {
		__atomic_store_n(c->slot, 0, __ATOMIC_RELAXED);
		release(c);
	}
}

/* ==== The lane ==== */

/* Gives every idle chain a due session; with none left, sleeps until
 * the earliest due head, news, or POLL_MS. */
static void pump(gw_spool_lane *ln)
{
	long wait = POLL_MS;
	unsigned i;

	if (ln->stopping)
		return;
	for (i = 0; i < ln->n_ch; i++) {
		chain *c = &ln->ch[i];
		const ready_sid *r;

		if (c->busy)
			continue;
		r = take_ready(ln);
		if (r == NULL && !ln->dry) {
			wait = refill(ln);
			ln->dry = ln->n_ready == 0;
			r = take_ready(ln);
		}
		if (r == NULL)
			break;
		memcpy(c->sid, r->sid, r->len);
		c->sid_len = r->len;
		c->busy = true;
		c->sent = 0;
		ln->active++;
		chain_next(c);
	}
	if (ln->dry && !gw_timer_armed(&ln->poll))
		gw_timer_start(ln->loop, &ln->poll, wait);
}

static void on_poll(void *ud)
{
	gw_spool_lane *ln = ud;

	ln->dry = false;
	pump(ln);
}

static void on_news_here(void *arg)
{
	gw_spool_lane *ln = arg;

	__atomic_store_n(&ln->news_pending, 0, __ATOMIC_RELEASE);
	ln->dry = false;
	pump(ln);
}

/* The writer stored updates: every lane looks (one post per lane until
 * it ran: commits in a burst wake a lane once). */
static void on_news(void *arg)
{
	gw_spool_fwd *f = arg;
	unsigned i;

	for (i = 0; i < f->n_lanes; i++) {
		gw_spool_lane *ln = __atomic_load_n(&f->lanes[i], __ATOMIC_ACQUIRE);

		if (ln != NULL &&
		    !__atomic_exchange_n(&ln->news_pending, 1, __ATOMIC_ACQ_REL))
			gw_loop_post(ln->loop, &ln->news_post, on_news_here, ln);
	}
}

gw_spool_lane *gw_spool_lane_new(gw_spool_fwd *f, unsigned idx,
				 gw_loop *loop, gw_uplink *ul, char *err,
				 size_t errlen)
{
	gw_spool_lane *ln = calloc(1, sizeof(*ln));
	size_t first;
	unsigned i;

	if (ln == NULL || idx >= f->n_lanes) {
		snprintf(err, errlen, "out of memory");
		free(ln);
		return NULL;
	}
	ln->f = f;
	ln->idx = idx;
	ln->loop = loop;
	ln->ul = ul;
	ln->rng = gw_rng_seed() + idx;
	gw_timer_init(&ln->poll, on_poll, ln);
	ln->n_ch = lane_chains(f, idx, &first);
	ln->ch = calloc(ln->n_ch, sizeof(*ln->ch));
	ln->db = gw_spool__reader(f->sp);
	if (ln->ch == NULL || ln->db == NULL) {
		snprintf(err, errlen, "forwarder: cannot open %s",
			 gw_spool__db_path(f->sp));
		goto fail;
	}
	for (i = 0; i < ln->n_ch; i++) {
		ln->ch[i].ln = ln;
		ln->ch[i].slot = &f->inflight[first + i];
	}
	if (sqlite3_prepare_v3(ln->db,
			       "SELECT sid, due_ms FROM heads"
			       " ORDER BY due_ms, id LIMIT ?1",
			       -1, SQLITE_PREPARE_PERSISTENT, &ln->st_heads,
			       NULL) != SQLITE_OK ||
	    sqlite3_prepare_v3(ln->db,
			       "SELECT id, attempts, next_attempt_ms, path, json"
			       " FROM spool WHERE sid=?1 ORDER BY id LIMIT 1",
			       -1, SQLITE_PREPARE_PERSISTENT, &ln->st_head,
			       NULL) != SQLITE_OK) {
		snprintf(err, errlen, "forwarder: %s", sqlite3_errmsg(ln->db));
		goto fail;
	}
	__atomic_store_n(&f->lanes[idx], ln, __ATOMIC_RELEASE);
	/* news_post is free until then: the first pass reads the spool */
	__atomic_store_n(&ln->news_pending, 1, __ATOMIC_RELEASE);
	gw_loop_post(loop, &ln->news_post, on_news_here, ln);
	return ln;
fail:
	gw_spool_lane_free(ln);
	return NULL;
}

void gw_spool_lane_stop(gw_spool_lane *ln)
{
	if (ln == NULL)
		return;
	ln->stopping = true;
	gw_timer_stop(ln->loop, &ln->poll);
}

bool gw_spool_lane_idle(const gw_spool_lane *ln)
{
	return ln == NULL || ln->active == 0;
}

void gw_spool_lane_free(gw_spool_lane *ln)
{
	unsigned i;

	if (ln == NULL)
		return;
	if (ln->f->lanes[ln->idx] == ln)
		__atomic_store_n(&ln->f->lanes[ln->idx], NULL, __ATOMIC_RELEASE);
	for (i = 0; ln->ch && i < ln->n_ch; i++)
		chain_forget_row(&ln->ch[i]);
	free(ln->ch);
	ready_clear(ln);
	sqlite3_finalize(ln->st_heads);
	sqlite3_finalize(ln->st_head);
	if (ln->db)
		sqlite3_close(ln->db);
	free(ln);
}

/* ==== Rows in flight at a crash ==== */

/* Makes row id wait hold_ms before its next attempt (the attempt count
 * and last answer kept). 1 held, 0 gone already, -1 not marked. */
static int hold_row(gw_spool_fwd *f, sqlite3 *db, int64_t id, long hold_ms)
{
	static const char why[] =
		"held after an unclean stop: it may have been in flight";
	sqlite3_stmt *st = NULL;
	gw_spool_mark_rec m;
	int rc;

	if (sqlite3_prepare_v2(db, "SELECT attempts, last_status FROM spool WHERE id=?1",
			       -1, &st, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_int64(st, 1, id);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		memset(&m, 0, sizeof(m));
		m.mark = GW_MARK_RETRY;
		m.id = id;
		m.attempts = sqlite3_column_int(st, 0);
		m.next_ms = gw_spool__now_ms() + hold_ms;
		m.status = sqlite3_column_int(st, 1);
		m.body = why;
		m.body_len = sizeof(why) - 1;
		rc = gw_spool_mark_wait(f->sp, &m) == 0 ? 1 : -1;
	} else {
		rc = rc == SQLITE_DONE ? 0 : -1;
	}
	sqlite3_finalize(st);
	return rc;
}

/* Holds the rows an earlier process left in DIR/inflight, then maps the
 * file afresh with one empty slot per chain (--spool-forwarders). 0, or
 * -1 with err. */
static int inflight_open(gw_spool_fwd *f, char *err, size_t errlen)
{
	char path[600];
	int64_t old[INFLIGHT_MAX];
	size_t n_old = 0, i, held = 0, bytes = f->n_slots * sizeof(int64_t);
	sqlite3 *db;
	struct stat sb;
	ssize_t got;
	void *map;
	int fd;

	snprintf(path, sizeof(path), "%s/inflight", f->c->spool_dir);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0 || fstat(fd, &sb) != 0) {
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	db = gw_spool__reader(f->sp);
	if (db == NULL) {
		snprintf(err, errlen, "forwarder: cannot open %s",
			 gw_spool__db_path(f->sp));
		close(fd);
		return -1;
	}
	got = pread(fd, old, sizeof(old), 0);
	if (got > 0)
		n_old = (size_t)got / sizeof(int64_t);
	for (i = 0; i < n_old; i++) {
		int rc = old[i] > 0 ? hold_row(f, db, old[i],
					       f->c->upstream_timeout_ms) : 0;

		if (rc < 0) {
			/* sent at once it could overtake a late copy: keep the
			 * slots and refuse to start */
			snprintf(err, errlen,
				 "cannot hold spool row %lld (named in %s: it may have been in flight when the gateway stopped): the spool database could not be read or written",
				 (long long)old[i], path);
			sqlite3_close(db);
			close(fd);
			return -1;
		}
		held += (size_t)rc;
	}
	sqlite3_close(db);
	if (held > 0) {
		char msg[200];

		snprintf(msg, sizeof(msg),
			 "spool: %zu update(s) may have been in flight when the gateway stopped; each waits --upstream-timeout-ms before it is sent again",
			 held);
		gw_log(GW_LOG_INFO, msg, NULL);
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
	f->inflight = map;
	return 0;
}

gw_spool_fwd *gw_spool_fwd_open(const gw_config *c, gw_spool *sp,
				unsigned n_loops, char *err, size_t errlen)
{
	gw_spool_fwd *f = calloc(1, sizeof(*f));
	unsigned total = c->spool_forwarders ? c->spool_forwarders : 1;

	if (f == NULL || n_loops == 0) {
		snprintf(err, errlen, "out of memory");
		free(f);
		return NULL;
	}
	f->c = c;
	f->sp = sp;
	gw_retry_policy_of(c, true, &f->policy);
	f->n_lanes = n_loops < total ? n_loops : total;
	f->n_slots = total;
	f->lanes = calloc(f->n_lanes, sizeof(*f->lanes));
	if (f->lanes == NULL) {
		snprintf(err, errlen, "out of memory");
		free(f);
		return NULL;
	}
	if (inflight_open(f, err, errlen) != 0) {
		free(f->lanes);
		free(f);
		return NULL;
	}
	gw_spool_on_news(sp, on_news, f);
	return f;
}

unsigned gw_spool_fwd_lanes(const gw_spool_fwd *f)
{
	return f ? f->n_lanes : 0;
}

void gw_spool_fwd_close(gw_spool_fwd *f)
{
	if (f == NULL)
		return;
	gw_spool_on_news(f->sp, NULL, NULL);
	if (f->inflight != NULL)
		munmap(f->inflight, f->n_slots * sizeof(int64_t));
	free(f->lanes);
	free(f);
}
