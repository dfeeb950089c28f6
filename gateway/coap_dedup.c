/* coap_dedup.c - what the CoAP ingress answered already, so that a
 * device message is worked on once however often it arrives.
 *
 * Two tables, each a hash table with a list in age order (oldest first):
 *
 *   messages   (source address and port, message id) -> state, and the
 *              answer once it went out piggybacked. RFC 7252 4.5: a
 *              retransmitted confirmable message is answered again, not
 *              processed again. Kept EXCHANGE_LIFETIME (coap.c).
 *   envelopes  SHA-256 of (device, session id, seq) -> the work under way
 *              or the final answer, and a digest of the update's bytes.
 *              A device that sends an envelope again in a new message
 *              (after its CoAP layer gave up, from a new DTLS session or
 *              a new port) gets the first answer. Kept --coap-dedup-seconds
 *              once final; while the work is under way an entry is never
 *              dropped (the work points at it).
 *
 * Both are bounded: past max entries the oldest go first. Memory per
 * entry is a few dozen bytes plus the kept answer (a Result is 3 to 20
 * bytes, an Error up to a few hundred). One table pair per loop: nothing
 * here is shared between threads.
 */
#include <stdlib.h>
#include <string.h>

#include "gw.h"

typedef struct mid_ent {
	struct mid_ent *hnext;          /* bucket chain */
	struct mid_ent *prev, *next;    /* age list */
	int64_t at;
	uint8_t src_len;
	uint8_t src[32];
	uint16_t mid;
	gw_coap_mid m;
} mid_ent;

typedef struct seq_ent {
	struct seq_ent *hnext;
	struct seq_ent *prev, *next;    /* age list: done entries only */
	int64_t at;
	uint8_t key[16];
	gw_coap_seq s;
} seq_ent;

struct gw_coap_dedup {
	size_t max;
	int64_t mid_ms, seq_ms;
	uint64_t seed;
	size_t n_buckets;               /* a power of two */
	mid_ent **mb;
	size_t n_mid;
	mid_ent *m_old, *m_new;
	seq_ent **sb;
	size_t n_seq, n_seq_done;
	seq_ent *s_old, *s_new;
};

#define MID_OF(p) ((mid_ent *)(void *)((char *)(p) - offsetof(mid_ent, m)))
#define SEQ_OF(p) ((seq_ent *)(void *)((char *)(p) - offsetof(seq_ent, s)))

/* FNV-1a over the bytes, from a per-table random start: a sender cannot
 * aim many ids at one bucket without knowing it. */
static uint64_t hash(uint64_t h, const void *p, size_t n)
{
	const uint8_t *b = p;
	size_t i;

	for (i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3ull;
	return h ^ (h >> 29);
}

gw_coap_dedup *gw_coap_dedup_new(size_t max, int64_t mid_ms, int64_t seq_ms)
{
	gw_coap_dedup *d = calloc(1, sizeof(*d));
	size_t nb = 64;

	if (d == NULL)
		return NULL;
	d->max = max ? max : 1;
	d->mid_ms = mid_ms;
	d->seq_ms = seq_ms;
	d->seed = gw_rng_seed() | 1;
	while (nb < d->max && nb < ((size_t)1 << 20))
		nb <<= 1;
	d->n_buckets = nb;
	d->mb = calloc(nb, sizeof(*d->mb));
	d->sb = calloc(nb, sizeof(*d->sb));
	if (d->mb == NULL || d->sb == NULL) {
		gw_coap_dedup_free(d);
		return NULL;
	}
	return d;
}

/* ==== Messages ==== */

static size_t mid_bucket(const gw_coap_dedup *d, const void *src,
			 size_t src_len, int mid)
{
	uint16_t m = (uint16_t)mid;

	return (size_t)hash(hash(d->seed, src, src_len), &m, sizeof(m)) &
	       (d->n_buckets - 1);
}

static void mid_unlink(gw_coap_dedup *d, mid_ent *e)
{
	mid_ent **pp = &d->mb[mid_bucket(d, e->src, e->src_len, e->mid)];

	while (*pp != NULL && *pp != e)
		pp = &(*pp)->hnext;
	if (*pp == e)
		*pp = e->hnext;
	if (e->prev)
		e->prev->next = e->next;
	else
		d->m_old = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		d->m_new = e->prev;
	d->n_mid--;
	gw_coap_answer_free(&e->m.answer);
	free(e);
}

gw_coap_mid *gw_coap_mid_find(gw_coap_dedup *d, const void *src,
			      size_t src_len, int mid)
{
	mid_ent *e;

	if (src_len > sizeof(e->src))
		return NULL;
	for (e = d->mb[mid_bucket(d, src, src_len, mid)]; e; e = e->hnext)
		if (e->mid == (uint16_t)mid && e->src_len == src_len &&
		    memcmp(e->src, src, src_len) == 0)
			return &e->m;
	return NULL;
}

gw_coap_mid *gw_coap_mid_add(gw_coap_dedup *d, const void *src,
			     size_t src_len, int mid, int64_t now_ms)
{
	mid_ent *e;
	size_t b;

	if (src_len > sizeof(e->src))
		return NULL;
	e = calloc(1, sizeof(*e));
	if (e == NULL)
		return NULL;
	e->src_len = (uint8_t)src_len;
	memcpy(e->src, src, src_len);
	e->mid = (uint16_t)mid;
	e->at = now_ms;
	e->m.state = GW_MID_QUIET;
	gw_coap_answer_init(&e->m.answer);
	b = mid_bucket(d, src, src_len, mid);
	e->hnext = d->mb[b];
	d->mb[b] = e;
	e->prev = d->m_new;
	if (d->m_new)
		d->m_new->next = e;
	else
		d->m_old = e;
	d->m_new = e;
	d->n_mid++;
	while (d->n_mid > d->max && d->m_old != e)
		mid_unlink(d, d->m_old);
	return &e->m;
}

/* ==== Envelopes ==== */

static size_t seq_bucket(const gw_coap_dedup *d, const uint8_t key[16])
{
	return (size_t)hash(d->seed, key, 16) & (d->n_buckets - 1);
}

/* Off the age list (done entries are on it). */
static void seq_unlist(gw_coap_dedup *d, seq_ent *e)
{
	if (!e->s.done)
		return;
	if (e->prev)
		e->prev->next = e->next;
	else
		d->s_old = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		d->s_new = e->prev;
	e->prev = e->next = NULL;
	d->n_seq_done--;
}

static void seq_drop(gw_coap_dedup *d, seq_ent *e)
{
	seq_ent **pp = &d->sb[seq_bucket(d, e->key)];

	while (*pp != NULL && *pp != e)
		pp = &(*pp)->hnext;
	if (*pp == e)
		*pp = e->hnext;
	seq_unlist(d, e);
	d->n_seq--;
	gw_coap_answer_free(&e->s.answer);
	free(e);
}

gw_coap_seq *gw_coap_seq_find(gw_coap_dedup *d, const uint8_t key[16])
{
	seq_ent *e;

	for (e = d->sb[seq_bucket(d, key)]; e; e = e->hnext)
		if (memcmp(e->key, key, 16) == 0)
			return &e->s;
	return NULL;
}

gw_coap_seq *gw_coap_seq_add(gw_coap_dedup *d, const uint8_t key[16],
			     const uint8_t digest[8], void *work,
			     int64_t now_ms)
{
	gw_coap_seq *old = gw_coap_seq_find(d, key);
	seq_ent *e;
	size_t b;

	if (old != NULL) {
		if (!old->done)
			return NULL; /* its work is under way: the caller waits */
		seq_drop(d, SEQ_OF(old));
	}
	e = calloc(1, sizeof(*e));
	if (e == NULL)
		return NULL;
	memcpy(e->key, key, 16);
	memcpy(e->s.digest, digest, sizeof(e->s.digest));
	e->s.work = work;
	e->at = now_ms;
	gw_coap_answer_init(&e->s.answer);
	b = seq_bucket(d, key);
	e->hnext = d->sb[b];
	d->sb[b] = e;
	d->n_seq++;
	return &e->s;
}

void gw_coap_seq_done(gw_coap_dedup *d, gw_coap_seq *s,
		      const gw_coap_answer *a, int64_t now_ms)
{
	seq_ent *e = SEQ_OF(s);

	s->work = NULL;
	if (a == NULL || !a->final || gw_coap_answer_copy(&s->answer, a) != 0) {
		seq_drop(d, e);
		return;
	}
	s->done = true;
	e->at = now_ms;
	e->prev = d->s_new;
	e->next = NULL;
	if (d->s_new)
		d->s_new->next = e;
	else
		d->s_old = e;
	d->s_new = e;
	d->n_seq_done++;
	while (d->n_seq_done > d->max && d->s_old != e)
		seq_drop(d, d->s_old);
}

/* ==== Age ==== */

void gw_coap_dedup_expire(gw_coap_dedup *d, int64_t now_ms)
{
	while (d->m_old != NULL && (d->m_old->at + d->mid_ms <= now_ms ||
				    d->n_mid > d->max))
		mid_unlink(d, d->m_old);
	while (d->s_old != NULL && (d->s_old->at + d->seq_ms <= now_ms ||
				    d->n_seq_done > d->max))
		seq_drop(d, d->s_old);
}

void gw_coap_dedup_counts(const gw_coap_dedup *d, size_t *mids, size_t *seqs)
{
	*mids = d->n_mid;
	*seqs = d->n_seq;
}

void gw_coap_dedup_free(gw_coap_dedup *d)
{
	size_t i;

	if (d == NULL)
		return;
	for (i = 0; d->mb != NULL && i < d->n_buckets; i++) {
		while (d->mb[i] != NULL) {
			mid_ent *e = d->mb[i];

			d->mb[i] = e->hnext;
			gw_coap_answer_free(&e->m.answer);
			free(e);
		}
	}
	for (i = 0; d->sb != NULL && i < d->n_buckets; i++) {
		while (d->sb[i] != NULL) {
			seq_ent *e = d->sb[i];

			d->sb[i] = e->hnext;
			gw_coap_answer_free(&e->s.answer);
			free(e);
		}
	}
	free(d->mb);
	free(d->sb);
	free(d);
}
