/* waiters.c - the JSON clients waiting for a stored update's upstream
 * answer, by the update's id in its store (the spool's row id, the
 * queue's stream sequence). Both stores list, unlist and settle here.
 *
 * A hash table of intrusive gw_waiter nodes under one mutex; settle skips
 * the lock while nothing is listed. The answer is copied and posted to
 * the waiter's loop, where answered() runs.
 *
 * Early answers (the queue): an update can be forwarded, by this process
 * or another, before the store has learnt its id (JetStream's publish
 * acknowledgement may come after the consumer's delivery). With
 * keep_early, an answer for an id nobody waits for is kept a while
 * (EARLY_MAX of them, EARLY_MS at most), and listing a waiter for that id
 * answers it at once. List and settle take the same lock, so an answer is
 * either found by the listing or finds the listed waiter.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "gw.h"

#define WAIT_BUCKETS 1024
#define EARLY_MAX 256
#define EARLY_MS 60000

typedef struct early {
	int64_t id;             /* 0: free */
	int64_t at;             /* gw_mono_ms */
	gw_response resp;       /* body owned */
} early;

struct gw_waiters {
	pthread_mutex_t mu;
	int n;                  /* listed (atomic reads) */
	int n_early;            /* kept answers */
	bool keep_early;
	gw_waiter *b[WAIT_BUCKETS];
	early e[EARLY_MAX];
	size_t e_next;
};

gw_waiters *gw_waiters_new(bool keep_early)
{
	gw_waiters *t = calloc(1, sizeof(*t));

	if (t == NULL)
		return NULL;
	pthread_mutex_init(&t->mu, NULL);
	t->keep_early = keep_early;
	return t;
}

void gw_waiters_free(gw_waiters *t)
{
	size_t i;

	if (t == NULL)
		return;
	for (i = 0; i < EARLY_MAX; i++)
		gw_response_free(&t->e[i].resp);
	pthread_mutex_destroy(&t->mu);
	free(t);
}

static gw_waiter **bucket(gw_waiters *t, int64_t id)
{
	return &t->b[(uint64_t)id % WAIT_BUCKETS];
}

/* A copy of resp into out (the body duplicated; none when out of memory). */
static void resp_copy(gw_response *out, const gw_response *resp)
{
	*out = *resp;
	out->body = NULL;
	out->body_len = 0;
	if (resp->body != NULL) {
		out->body = malloc(resp->body_len + 1);
		if (out->body != NULL) {
			memcpy(out->body, resp->body, resp->body_len + 1);
			out->body_len = resp->body_len;
		}
	}
}

static void on_answered(void *arg)
{
	gw_waiter *w = arg;

	w->answered(w);
}

/* Under t->mu: the kept answer of id, taken (moved into *out), or false. */
static bool early_take(gw_waiters *t, int64_t id, gw_response *out)
{
	int64_t now = gw_mono_ms();
	size_t i;

	for (i = 0; i < EARLY_MAX; i++) {
		early *e = &t->e[i];

		if (e->id == 0)
			continue;
		if (now - e->at > EARLY_MS) {
			gw_response_free(&e->resp);
			e->id = 0;
			t->n_early--;
			continue;
		}
		if (e->id != id)
			continue;
		*out = e->resp;
		memset(&e->resp, 0, sizeof(e->resp));
		e->id = 0;
		t->n_early--;
		return true;
	}
	return false;
}

void gw_waiters_list(gw_waiters *t, gw_waiter *w)
{
	gw_waiter **b;
	bool now = false;

	pthread_mutex_lock(&t->mu);
	if (t->n_early > 0 && early_take(t, w->id, &w->resp)) {
		now = true;
	} else {
		b = bucket(t, w->id);
		w->hnext = *b;
		*b = w;
		w->listed = true;
		__atomic_add_fetch(&t->n, 1, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&t->mu);
	if (now)
		gw_loop_post(w->loop, &w->post, on_answered, w);
}

/* Under t->mu: unlists the waiter of id (or w itself when w is given). */
static gw_waiter *take(gw_waiters *t, int64_t id, const gw_waiter *w)
{
	gw_waiter **pp = bucket(t, id), *x;

	for (; (x = *pp) != NULL; pp = &x->hnext) {
		if (w != NULL ? x != w : x->id != id)
			continue;
		*pp = x->hnext;
		x->hnext = NULL;
		x->listed = false;
		__atomic_sub_fetch(&t->n, 1, __ATOMIC_RELEASE);
		return x;
	}
	return NULL;
}

bool gw_waiters_unwait(gw_waiters *t, gw_waiter *w)
{
	bool listed;

	pthread_mutex_lock(&t->mu);
	listed = w->listed && take(t, w->id, w) != NULL;
	pthread_mutex_unlock(&t->mu);
	return listed;
}

void gw_waiters_settle(gw_waiters *t, int64_t id, const gw_response *resp)
{
	gw_waiter *w;

	if (!t->keep_early && __atomic_load_n(&t->n, __ATOMIC_ACQUIRE) == 0)
		return;
	pthread_mutex_lock(&t->mu);
	w = take(t, id, NULL);
	if (w == NULL && t->keep_early) {
		early *e = &t->e[t->e_next];

		t->e_next = (t->e_next + 1) % EARLY_MAX;
		if (e->id != 0)
			t->n_early--;
		gw_response_free(&e->resp);
		e->id = id;
		e->at = gw_mono_ms();
		resp_copy(&e->resp, resp);
		t->n_early++;
	}
	pthread_mutex_unlock(&t->mu);
	if (w == NULL)
		return;
	resp_copy(&w->resp, resp);
	gw_loop_post(w->loop, &w->post, on_answered, w);
}
