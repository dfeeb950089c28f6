/* queue_publish.c - storing updates in JetStream from a loop: publishes
 * that wait for their acknowledgement without blocking, and the store's
 * put built on them.
 *
 * A publish is a plain NATS publish whose reply subject is the lane's
 * <inbox>.r.<loop>.<token>; JetStream's acknowledgement comes back through
 * the inbox subscription to this loop. No libnats call here waits: a
 * publish only appends to the connection's buffer (its flusher thread
 * writes). The loop's timers decide:
 *   no acknowledgement after ATTEMPT_MS  the same message again (the same
 *                                        Nats-Msg-Id: JetStream stores it
 *                                        once, and acknowledges the copy
 *                                        with the first one's sequence)
 *   "no responders", a 503 error         again after 50, 100, ... 800 ms
 *                                        (a stream between leaders: 4-7 s
 *                                        after a kill -9 of its leader)
 *   not connected                        again when reconnected; failed
 *                                        at once when the connection has
 *                                        been down a whole ack timeout
 *   --queue-ack-timeout-ms past          failed: 503, nothing promised
 *   the stream full (discard new)        failed: 507
 *
 * put: a batch's items are in (session, seq) order; each session's items
 * are published one after another (the next once the previous is
 * acknowledged), sessions side by side. Pipelining one session's items
 * could store a later one before an earlier one that needed a second
 * try. The put succeeds only when every item is stored; when one fails
 * the device resends the batch and the stored items are dropped by
 * JetStream as duplicates (same session and seq, within the dedup
 * window). Its callback always comes from a post.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "queue_int.h"

#define ATTEMPT_MS 1000
#define RETRY_FIRST_MS 50
#define RETRY_MAX_MS 800
#define SLOT_BITS 24
#define SLOT_MASK ((1u << SLOT_BITS) - 1)
#define SEG_MAX 200

/* ==== Message ids ==== */

void gw_queue__msg_id(gw_queue *q, const gw_store_rec *rec, unsigned dup,
		      char *out, size_t cap)
{
	const char *seg = strrchr(rec->path, '/');
	char hex[2 * EVP_MAX_MD_SIZE + 2];
	size_t n;

	seg = seg ? seg + 1 : rec->path;
	n = strlen(seg);
	if (n > SEG_MAX) {
		/* a long id: its digest (ids are kept per stream, in memory) */
		unsigned char md[EVP_MAX_MD_SIZE];
		unsigned int ml = 0, i;

		if (EVP_Digest(rec->sid, rec->sid_len, md, &ml, EVP_sha256(),
			       NULL) != 1)
			ml = 0;
		hex[0] = 'h';
		for (i = 0; i < ml; i++)
			snprintf(hex + 1 + 2 * i, 3, "%02x", md[i]);
		hex[1 + 2 * ml] = '\0';
		seg = hex;
	}
	if (rec->seq > 0 && dup == 0)
		snprintf(out, cap, "%s/%" PRIu64, seg, rec->seq);
	else if (rec->seq > 0)
		snprintf(out, cap, "%s/%" PRIu64 ".%u", seg, rec->seq, dup);
	else
		snprintf(out, cap, "%s/r%016" PRIx64 ".%llu", seg, q->nonce,
			 (unsigned long long)atomic_fetch_add(&q->next_id, 1));
}

/* ==== One publish ==== */

static void pub_send(gw_queue_pub *p);

static gw_queue_pub *slot_get(gw_queue_lane *ln, uint64_t token)
{
	uint32_t s = (uint32_t)(token & SLOT_MASK);
	gw_queue_pub *p;

	if (s >= ln->n_slots)
		return NULL;
	p = ln->slots[s];
	return p != NULL && p->token == token ? p : NULL;
}

/* A free slot for p (its token set). 0 or -1. */
static int slot_take(gw_queue_lane *ln, gw_queue_pub *p)
{
	uint32_t s;

	if (ln->n_free > 0) {
		s = ln->free_slots[--ln->n_free];
	} else {
		if (ln->n_slots == ln->cap_slots) {
			uint32_t cap = ln->cap_slots ? ln->cap_slots * 2 : 64;
			gw_queue_pub **ns;
			uint32_t *nf;

			if (cap > SLOT_MASK)
				return -1;
			ns = realloc(ln->slots, cap * sizeof(*ns));
			if (ns == NULL)
				return -1;
			ln->slots = ns;
			nf = realloc(ln->free_slots, cap * sizeof(*nf));
			if (nf == NULL)
				return -1;
			ln->free_slots = nf;
			ln->cap_slots = cap;
		}
		s = ln->n_slots++;
	}
	ln->gen++;
	p->token = (uint64_t)s | (ln->gen << SLOT_BITS);
	ln->slots[s] = p;
	return 0;
}

static void slot_put(gw_queue_lane *ln, gw_queue_pub *p)
{
	uint32_t s = (uint32_t)(p->token & SLOT_MASK);

	if (s < ln->n_slots && ln->slots[s] == p) {
		ln->slots[s] = NULL;
		ln->free_slots[ln->n_free++] = s;
	}
}

/* The publish is over: its slot freed, done called, p freed. */
static void pub_finish(gw_queue_pub *p, int result, uint64_t seq,
		       const char *err)
{
	gw_queue_lane *ln = p->ln;

	gw_timer_stop(ln->loop, &p->timer);
	slot_put(ln, p);
	natsMsg_Destroy(p->m);
	gw_metrics_queue_acks_pending(-1);
	if (result == GW_STORE_OK)
		gw_metrics_queue_published(
			(double)(gw_mono_ms() - p->t0) / 1e3, 1);
	p->done(p, result, seq, err, p->ud);
	free(p);
}

/* Not over yet: the next try after ms (never past the deadline). */
static void pub_again_in(gw_queue_pub *p, long ms)
{
	int64_t left = p->deadline - gw_mono_ms();

	if (left <= 0) {
		char err[200];

		if (p->err[0] == '\0')
			snprintf(p->err, sizeof(p->err),
				 "the NATS cluster did not acknowledge the update within %lld ms; it is not acknowledged: send it again",
				 (long long)p->ln->q->c->queue_ack_timeout_ms);
		snprintf(err, sizeof(err), "%s", p->err);
		pub_finish(p, GW_STORE_ERROR, 0, err);
		return;
	}
	gw_timer_start(p->ln->loop, &p->timer, ms < left ? ms : left);
}

static void on_pub_timer(void *ud)
{
	gw_queue_pub *p = ud;

	if (p->raw != NULL) {
		/* a request: no reply in time */
		gw_queue_req_fn raw = p->raw;
		void *rud = p->ud;

		slot_put(p->ln, p);
		natsMsg_Destroy(p->m);
		free(p);
		raw(rud, NULL);
		return;
	}

	if (gw_mono_ms() >= p->deadline) {
		pub_again_in(p, 0); /* over */
		return;
	}
	pub_send(p);
}

static void pub_send(gw_queue_pub *p)
{
	gw_queue *q = p->ln->q;
	long long down = atomic_load(&q->down_since);

	if (!atomic_load(&q->connected)) {
		if (down > 0 && gw_mono_ms() - down >= q->c->queue_ack_timeout_ms) {
			/* down a whole ack timeout already: fail now (from the
			 * timer, never inside gw_queue__pub_start) */
			snprintf(p->err, sizeof(p->err),
				 "the NATS cluster is unreachable (down for %.1f s); nothing was stored, retry later",
				 (double)(gw_mono_ms() - down) / 1e3);
			p->deadline = gw_mono_ms();
			gw_timer_start(p->ln->loop, &p->timer, 0);
			return;
		}
		pub_again_in(p, 100); /* or at once when reconnected */
		return;
	}
	if (natsConnection_PublishMsg(q->nc, p->m) != NATS_OK) {
		pub_again_in(p, 100);
		return;
	}
	pub_again_in(p, ATTEMPT_MS);
}

int gw_queue__pub_start(gw_queue_lane *ln, const char *stream,
			const char *subj, const void *data, size_t len,
			const char *const *hdr, size_t n_hdr, int64_t deadline_ms,
			gw_queue_pub_fn done, void *ud)
{
	gw_queue *q = ln->q;
	gw_queue_pub *p = calloc(1, sizeof(*p));
	char reply[160];
	natsStatus s;
	size_t i;

	if (p == NULL || len > INT32_MAX || slot_take(ln, p) != 0) {
		free(p);
		return -1;
	}
	/* the reply subject names the slot */
	snprintf(reply, sizeof(reply), "%s.r.%u.%" PRIu64, q->inbox, ln->idx,
		 p->token);
	s = natsMsg_Create(&p->m, subj, reply, data, (int)len);
	for (i = 0; s == NATS_OK && i + 1 < 2 * n_hdr; i += 2)
		s = natsMsgHeader_Set(p->m, hdr[i], hdr[i + 1]);
	if (s != NATS_OK) {
		slot_put(ln, p);
		natsMsg_Destroy(p->m);
		free(p);
		return -1;
	}
	p->ln = ln;
	p->stream = stream;
	p->t0 = gw_mono_ms();
	p->deadline = p->t0 + deadline_ms;
	p->backoff = RETRY_FIRST_MS;
	p->done = done;
	p->ud = ud;
	gw_timer_init(&p->timer, on_pub_timer, p);
	gw_metrics_queue_acks_pending(1);
	pub_send(p);
	return 0;
}

int gw_queue__req_start(gw_queue_lane *ln, const char *subj, const char *body,
			int64_t timeout_ms, gw_queue_req_fn done, void *ud)
{
	gw_queue *q = ln->q;
	gw_queue_pub *p = calloc(1, sizeof(*p));
	char reply[160];

	if (p == NULL || slot_take(ln, p) != 0) {
		free(p);
		return -1;
	}
	snprintf(reply, sizeof(reply), "%s.r.%u.%" PRIu64, q->inbox, ln->idx,
		 p->token);
	if (natsMsg_Create(&p->m, subj, reply, body, (int)strlen(body)) != NATS_OK) {
		slot_put(ln, p);
		free(p);
		return -1;
	}
	p->ln = ln;
	p->raw = done;
	p->ud = ud;
	gw_timer_init(&p->timer, on_pub_timer, p);
	/* sent once: a lost one is a timeout, the caller decides */
	if (atomic_load(&q->connected))
		natsConnection_PublishMsg(q->nc, p->m);
	gw_timer_start(ln->loop, &p->timer, timeout_ms);
	return 0;
}

void gw_queue__pub_reply(gw_queue_lane *ln, uint64_t token, natsMsg *m)
{
	gw_queue_pub *p = slot_get(ln, token);
	uint64_t seq = 0;
	bool dup = false, retry = false;
	char err[200];
	int rc;

	if (p == NULL) {
		natsMsg_Destroy(m); /* late: its publish is over */
		return;
	}
	if (p->raw != NULL) {
		gw_queue_req_fn raw = p->raw;
		void *ud = p->ud;

		gw_timer_stop(ln->loop, &p->timer);
		slot_put(ln, p);
		natsMsg_Destroy(p->m);
		free(p);
		raw(ud, m);
		return;
	}
	rc = gw_queue__parse_puback(m, p->stream, &seq, &dup, &retry,
				    &p->js_err, err, sizeof(err));
	natsMsg_Destroy(m);
	if (rc == GW_STORE_ERROR && retry) {
		long b = p->backoff;

		p->backoff = b * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : b * 2;
		pub_again_in(p, b);
		return;
	}
	pub_finish(p, rc, seq, err);
}

void gw_queue__pub_resend_all(gw_queue_lane *ln)
{
	uint32_t s;

	for (s = 0; s < ln->n_slots; s++) {
		gw_queue_pub *p = ln->slots[s];

		if (p == NULL || p->raw != NULL)
			continue;
		gw_timer_stop(ln->loop, &p->timer);
		pub_send(p); /* may finish it: the slot is then empty */
	}
}

void gw_queue__pub_free_all(gw_queue_lane *ln)
{
	uint32_t s;

	for (s = 0; s < ln->n_slots; s++) {
		gw_queue_pub *p = ln->slots[s];

		if (p == NULL)
			continue;
		natsMsg_Destroy(p->m);
		if (p->raw == NULL)
			gw_metrics_queue_acks_pending(-1);
		free(p);
	}
	free(ln->slots);
	free(ln->free_slots);
	ln->slots = NULL;
	ln->free_slots = NULL;
	ln->n_slots = ln->cap_slots = ln->n_free = 0;
}

/* ==== The store's put ==== */

typedef struct chain {
	struct put_job *job;
	size_t at, end;            /* recs [at, end): one session */
} chain;

typedef struct put_job {
	gw_queue_lane *ln;
	gw_store_done_fn cb;
	void *arg;
	size_t n, n_chains, open;
	int result;                /* the first failure wins */
	char err[200];
	gw_post post;
	chain *chains;
	uint64_t *seqs;            /* each rec's stream sequence */
	unsigned *dups;
	gw_store_rec recs[];
} put_job;

static void job_free(put_job *j)
{
	free(j->chains);
	free(j->seqs);
	free(j->dups);
	free(j);
}

static void on_job_post(void *arg)
{
	put_job *j = arg;

	j->cb(j->arg, j->result, j->err);
	job_free(j);
}

/* Every chain is over: waiters listed (only when all is stored: a waiter
 * of a put that failed must never be answered), then the callback. */
static void job_done(put_job *j)
{
	size_t i;

	if (j->result == GW_STORE_OK) {
		for (i = 0; i < j->n; i++) {
			gw_waiter *w = j->recs[i].waiter;

			if (w == NULL)
				continue;
			w->id = (int64_t)j->seqs[i];
			gw_waiters_list(j->ln->q->waiters, w);
		}
	} else {
		gw_metrics_queue_publish_failed();
	}
	gw_loop_post(j->ln->loop, &j->post, on_job_post, j);
}

static void chain_next(chain *ch);

static void chain_over(chain *ch)
{
	put_job *j = ch->job;

	if (--j->open == 0)
		job_done(j);
}

static void on_rec_stored(gw_queue_pub *p, int result, uint64_t seq,
			  const char *err, void *ud)
{
	chain *ch = ud;
	put_job *j = ch->job;

	(void)p;
	if (result != GW_STORE_OK) {
		if (j->result == GW_STORE_OK) {
			j->result = result;
			snprintf(j->err, sizeof(j->err), "%s", err);
		}
		chain_over(ch); /* the session's later items are not sent */
		return;
	}
	j->seqs[ch->at] = seq;
	ch->at++;
	chain_next(ch);
}

/* Publishes rec i of its chain. 0, or -1 (no memory). */
static int rec_publish(chain *ch)
{
	put_job *j = ch->job;
	gw_queue *q = j->ln->q;
	const gw_store_rec *r = &j->recs[ch->at];
	char subj[64], id[GW_QUEUE_MSGID_MAX], seq[24];
	const char *hdr[8];
	size_t nh = 0;

	snprintf(subj, sizeof(subj), "%s.%u", q->stream,
		 gw_queue__partition(r->sid, r->sid_len, q->n_parts));
	gw_queue__msg_id(q, r, j->dups[ch->at], id, sizeof(id));
	snprintf(seq, sizeof(seq), "%" PRIu64, r->seq);
	hdr[nh++] = "Nats-Msg-Id";
	hdr[nh++] = id;
	hdr[nh++] = GW_QUEUE_HDR_PATH;
	hdr[nh++] = r->path;
	hdr[nh++] = GW_QUEUE_HDR_SEQ;
	hdr[nh++] = seq;
	if (r->waiter != NULL) {
		hdr[nh++] = GW_QUEUE_HDR_ANSWER;
		hdr[nh++] = q->answer_subj;
	}
	return gw_queue__pub_start(j->ln, q->stream, subj,
				   r->json ? r->json : "",
				   r->json_len, hdr, nh / 2,
				   q->c->queue_ack_timeout_ms, on_rec_stored, ch);
}

static void chain_next(chain *ch)
{
	put_job *j = ch->job;

	if (ch->at >= ch->end || j->result != GW_STORE_OK) {
		chain_over(ch);
		return;
	}
	if (rec_publish(ch) != 0) {
		if (j->result == GW_STORE_OK) {
			j->result = GW_STORE_ERROR;
			snprintf(j->err, sizeof(j->err),
				 "the gateway is out of memory; nothing more was stored");
		}
		chain_over(ch);
	}
}

static bool same_sid(const gw_store_rec *a, const gw_store_rec *b)
{
	return a->sid_len == b->sid_len &&
	       memcmp(a->sid, b->sid, a->sid_len) == 0;
}

int gw_queue__publish(gw_queue_lane *ln, const gw_store_rec *recs, size_t n,
		      gw_store_done_fn cb, void *arg)
{
	put_job *j;
	size_t i, k;

	if (n == 0 || n > 100000 || ln->loop != gw_loop_current())
		return -1;
	j = calloc(1, sizeof(*j) + n * sizeof(gw_store_rec));
	if (j == NULL)
		return -1;
	memcpy(j->recs, recs, n * sizeof(*recs));
	j->ln = ln;
	j->cb = cb;
	j->arg = arg;
	j->n = n;
	j->result = GW_STORE_OK;
	j->chains = calloc(n, sizeof(*j->chains));
	j->seqs = calloc(n, sizeof(*j->seqs));
	j->dups = calloc(n, sizeof(*j->dups));
	if (j->chains == NULL || j->seqs == NULL || j->dups == NULL) {
		job_free(j);
		return -1;
	}
	for (i = 0; i < n; i++) {
		if (i == 0 || !same_sid(&recs[i - 1], &recs[i])) {
			j->chains[j->n_chains].job = j;
			j->chains[j->n_chains++].at = i;
		} else if (recs[i].seq == recs[i - 1].seq) {
			j->dups[i] = j->dups[i - 1] + 1;
		}
		j->chains[j->n_chains - 1].end = i + 1;
	}
	/* one open part per chain, and the start itself */
	j->open = j->n_chains + 1;
	for (k = 0; k < j->n_chains; k++)
		chain_next(&j->chains[k]);
	if (--j->open == 0)
		job_done(j);
	return 0;
}
