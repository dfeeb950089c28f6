/* batch.c - POST /v1/updates on its way: a batch's plan (request.c's
 * gw_batch_plan: every item translated, in (session, seq, place) order)
 * forwarded or stored, one Result per item.
 *
 * Direct mode: each session is a chain that sends its items one after
 * another on the loop's upstream link (the next from the previous one's
 * answer), up to SESSIONS_AT_ONCE chains side by side; an item whose
 * answer means "resend" (retry.c's persistent policy, after the in-memory
 * retries: no answer, or a status worth another attempt) stops its chain, and the chain's later items
 * get status 0 ("not sent: resend"), so a session never skips ahead.
 * Once the gateway is stopping no new item starts (status 0 as well):
 * a stop waits for one upstream call, not for a whole batch.
 *
 * Spool mode: every valid item in one transaction; each gets 202, or 507
 * / 503 with Retry-After when nothing could be stored.
 *
 * Everything runs on the worker's loop; done is called from a post, so
 * never before gw_batch_start has returned.
 */
#include <stdlib.h>
#include <string.h>

#include "gw.h"

#define SESSIONS_AT_ONCE 4

typedef struct chain {
	struct gw_batch_run *run;
	size_t at, end;      /* items [at, end) of b: one session, seq order */
} chain;

struct gw_batch_run {
	gw_worker *w;
	gw_batch b;
	sw_result *res;      /* in the batch's order */
	chain *chains;
	size_t n_chains, next_chain, open;
	int attempts;
	gw_batch_done_fn done;
	void *ud;
	gw_post done_post;
	/* store mode (--spool, --queue) */
	gw_store_rec *recs;
	size_t *rec_item, n_recs;
	int store_rc;
	char store_err[200];
	bool finished;       /* results filled */
};

void gw_batch_run_free(gw_batch_run *run)
{
	if (run == NULL)
		return;
	gw_batch_free(&run->b);
	free(run->res);
	free(run->chains);
	free(run->recs);
	free(run->rec_item);
	free(run);
}

static void on_done_post(void *arg)
{
	gw_batch_run *run = arg;

	run->done(run->ud, run);
}

/* One part (a chain, the spool's commit, the start) is over; the last
 * one hands the batch back. */
static void part_done(gw_batch_run *run)
{
	if (--run->open == 0)
		gw_loop_post(run->w->loop, &run->done_post, on_done_post, run);
}

static bool same_session(const gw_batch_item *a, const gw_batch_item *b)
{
	return a->sid_len == b->sid_len && memcmp(a->sid, b->sid, a->sid_len) == 0;
}

/* ==== Direct mode ==== */

static void chain_next(chain *ch);

/* The chain's items from at on are not sent. */
static void chain_skip_rest(chain *ch, const char *why)
{
	for (; ch->at < ch->end; ch->at++)
		gw_format(ch->run->b.items[ch->at].msg,
			  sizeof(ch->run->b.items[ch->at].msg), "%s", why);
}

/* A chain is over: the batch's next chain starts, then this one counts. */
static void chain_done(gw_batch_run *run)
{
	if (run->next_chain < run->n_chains)
		chain_next(&run->chains[run->next_chain++]);
	part_done(run);
}

/* One item's answer: its Result, then the chain's next item unless this
 * one must be resent. */
static void on_item_answer(void *ud, gw_response *u)
{
	chain *ch = ud;
	gw_batch_run *run = ch->run;
	gw_batch_item *it = &run->b.items[ch->at];
	sw_result *rs = &run->res[it->idx];
	gw_retry_policy p;
	int hs = u->status;

	/* the device keeps the item, as the spool would: an answer worth
	 * another attempt, or none at all, means "resend" */
	gw_retry_policy_of(run->w->c, true, &p);
	if (hs == 0) {
		hs = gw_retry_no_answer_status(u->curl_code);
		gw_format(it->msg, sizeof(it->msg), "upstream %s: %s",
			  hs == 504 ? "timed out" : "unreachable",
			  u->error[0] ? u->error : "no answer");
	} else if (hs < 200 || hs >= 300) {
		gw_format(it->msg, sizeof(it->msg), "%s", u->body ? u->body : "");
	}
	if (u->retry_after_ms >= 0) {
		rs->has_retry_after = true;
		rs->retry_after_ms = u->retry_after_ms > UINT32_MAX
			? UINT32_MAX : (uint32_t)u->retry_after_ms;
	}
	rs->status = (uint32_t)hs;
	run->attempts += u->attempts;
	ch->at++;
	if (gw_retry_retryable(&p, u->status, u->curl_code)) {
		gw_response_free(u);
		chain_skip_rest(ch, "not sent: an earlier update of this session failed; resend both");
		chain_done(run);
		return;
	}
	gw_response_free(u);
	chain_next(ch);
}

/* Sends the chain's next valid item (its invalid ones get 400 on the
 * way), or ends the chain. */
static void chain_next(chain *ch)
{
	gw_batch_run *run = ch->run;
	gw_worker *w = run->w;

	for (; ch->at < ch->end; ch->at++) {
		gw_batch_item *it = &run->b.items[ch->at];
		sw_result *rs = &run->res[it->idx];

		if (it->status != 0) {
			gw_metrics_reject("invalid_body");
			rs->status = (uint32_t)it->status;
			continue;
		}
		if (gw_server_stopping(w->s)) {
			chain_skip_rest(ch, "not sent: the gateway is shutting down; resend it");
			break;
		}
		gw_metrics_bytes(it->update_len, it->json.len);
		if (gw_uplink_patch(w->ul, it->path.data, it->json.data,
				    it->json.len, true, on_item_answer, ch) == 0)
			return; /* on_item_answer goes on */
		rs->status = 502;
		gw_format(it->msg, sizeof(it->msg), "%s",
			  "upstream unreachable: the gateway is out of memory");
		ch->at++;
		chain_skip_rest(ch, "not sent: an earlier update of this session failed; resend both");
	}
	chain_done(run);
}

/* One chain per session, the first SESSIONS_AT_ONCE started. */
static int forward_start(gw_batch_run *run)
{
	size_t k, n = 0, first;

	for (k = 0; k < run->b.n; k++)
		if (k == 0 || !same_session(&run->b.items[k - 1], &run->b.items[k]))
			n++;
	run->chains = calloc(n ? n : 1, sizeof(*run->chains));
	if (run->chains == NULL)
		return -1;
	for (k = 0; k < run->b.n; k++) {
		if (k == 0 || !same_session(&run->b.items[k - 1], &run->b.items[k])) {
			run->chains[run->n_chains].run = run;
			run->chains[run->n_chains].at = k;
			run->n_chains++;
		}
		run->chains[run->n_chains - 1].end = k + 1;
	}
	run->open += run->n_chains;
	first = n < SESSIONS_AT_ONCE ? n : SESSIONS_AT_ONCE;
	run->next_chain = first;
	/* cppcheck takes gw_batch_start's b->n = 0 (the caller's plan,
	 * emptied) for run->b.n and calls this loop dead */
	/* cppcheck-suppress knownConditionTrueFalse */
	for (k = 0; k < first; k++)
		chain_next(&run->chains[k]);
	return 0;
}

/* ==== Spool mode ==== */

static void on_stored(void *arg, int result, const char *err)
{
	gw_batch_run *run = arg;

	run->store_rc = result;
	snprintf(run->store_err, sizeof(run->store_err), "%s", err);
	part_done(run);
}

/* Every valid item in one transaction. */
static int store_start(gw_batch_run *run)
{
	gw_store *st = run->w->store;
	size_t k, n = run->b.n ? run->b.n : 1;

	run->recs = calloc(n, sizeof(*run->recs));
	run->rec_item = calloc(n, sizeof(*run->rec_item));
	if (run->recs == NULL || run->rec_item == NULL)
		return -1;
	for (k = 0; k < run->b.n; k++) {
		gw_batch_item *it = &run->b.items[k];
		gw_store_rec *rec = &run->recs[run->n_recs];

		if (it->status != 0) {
			gw_metrics_reject("invalid_body");
			run->res[it->idx].status = (uint32_t)it->status;
			continue;
		}
		gw_metrics_bytes(it->update_len, it->json.len);
		rec->sid = it->sid;
		rec->sid_len = it->sid_len;
		rec->seq = it->seq;
		rec->path = it->path.data;
		rec->json = it->json.data;
		rec->json_len = it->json.len;
		run->rec_item[run->n_recs++] = k;
	}
	if (run->n_recs == 0)
		return 0; /* nothing to store */
	run->open++;
	if (st->ops->put(st, run->w->loop, run->recs, run->n_recs, on_stored,
			 run) != 0) {
		run->open--;
		run->store_rc = GW_STORE_ERROR;
		gw_format(run->store_err, sizeof(run->store_err),
			  "the %s is closing or out of memory; nothing was stored",
			  st->ops->name);
	}
	return 0;
}

/* The stored items' Results: 202, or 507/503 for all of them. */
static void store_results(gw_batch_run *run)
{
	int rc = run->store_rc;
	size_t k;

	if (run->n_recs > 0 && rc != GW_STORE_OK) {
		char reason[32];

		snprintf(reason, sizeof(reason), "%s_%s", run->w->store->ops->name,
			 rc == GW_STORE_FULL ? "full" : "error");
		gw_metrics_reject(reason);
	}
	for (k = 0; k < run->n_recs; k++) {
		gw_batch_item *it = &run->b.items[run->rec_item[k]];
		sw_result *rs = &run->res[it->idx];

		if (rc == GW_STORE_OK) {
			rs->status = 202;
			gw_format(it->msg, sizeof(it->msg), "accepted");
			continue;
		}
		rs->status = rc == GW_STORE_FULL ? 507 : 503;
		rs->has_retry_after = true;
		rs->retry_after_ms = rc == GW_STORE_FULL ? 30000 : 5000;
		gw_format(it->msg, sizeof(it->msg), "%s", run->store_err);
	}
}

/* ==== The interface ==== */

gw_batch_run *gw_batch_start(gw_worker *w, gw_batch *b,
			     gw_batch_done_fn done, void *ud)
{
	gw_batch_run *run = calloc(1, sizeof(*run));
	size_t k;
	int rc;

	if (run == NULL)
		return NULL;
	run->res = calloc(b->n ? b->n : 1, sizeof(*run->res));
	if (run->res == NULL) {
		free(run);
		return NULL;
	}
	run->w = w;
	run->done = done;
	run->ud = ud;
	run->b = *b;
	b->n = 0;
	b->items = NULL;
	for (k = 0; k < run->b.n; k++)
		run->res[run->b.items[k].idx].seq = run->b.items[k].seq;
	run->open = 1; /* the start itself */
	rc = w->store != NULL ? store_start(run) : forward_start(run);
	if (rc != 0) {
		*b = run->b; /* back to the caller, as it came */
		run->b.n = 0;
		run->b.items = NULL;
		gw_batch_run_free(run);
		return NULL;
	}
	part_done(run);
	return run;
}

const sw_result *gw_batch_results(gw_batch_run *run, size_t *n)
{
	size_t k;

	if (!run->finished) {
		if (run->w->store != NULL)
			store_results(run);
		for (k = 0; k < run->b.n; k++) {
			sw_result *rs = &run->res[run->b.items[k].idx];

			rs->message.ptr = run->b.items[k].msg;
			rs->message.len = strlen(run->b.items[k].msg);
		}
		run->finished = true;
	}
	*n = run->b.n;
	return run->res;
}

int gw_batch_attempts(const gw_batch_run *run)
{
	return run->attempts;
}

const char *gw_batch_error(const gw_batch_run *run)
{
	return run->n_recs > 0 && run->store_rc != GW_STORE_OK ? run->store_err
							       : "";
}
