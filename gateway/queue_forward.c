/* queue_forward.c - a loop's lane of the queue: its mailbox, and the
 * forwarding of its partitions (p % lanes == the loop's index) from their
 * durable consumers to the upstream.
 *
 * Mailbox: the inbox callback (a libnats thread) appends each message for
 * this loop and posts one wake-up until the loop has emptied it. After
 * the loop ended, lane_free takes the lane out of the queue's table under
 * the same lock the callback holds, so nothing is posted to a loop that
 * is gone.
 *
 * Pulling without blocking: each partition keeps one pull request open,
 * published to $JS.API.CONSUMER.MSG.NEXT.<stream>.p<N> with the reply
 * subject <inbox>.p.<N>.<request> (batch PULL_BATCH, expires PULL_EXPIRES,
 * idle heartbeat PULL_HEARTBEAT). Deliveries and status messages come
 * back through the mailbox. A request that ended (408 timeout, its batch
 * used, 409 leadership change) is replaced at once, one that went silent
 * (its server died: no heartbeat for PULL_LOST_MS) by the lane's tick.
 * libnats's natsSubscription_Fetch would block a thread per partition
 * for a whole timeout when fewer messages are there; this costs one
 * small publish per PULL_BATCH updates and blocks nothing.
 *
 * Order: every partition's consumer has MaxAckPending 1, so JetStream
 * hands out a partition's next update, to whichever gateway pulls, only
 * once the previous one is acked or its AckWait is over. A session is in
 * one partition; so its updates go upstream one at a time, in stream
 * order, across gateways. The cost: one round trip (upstream answer,
 * ack, next delivery) per update per partition; --queue-partitions
 * partitions run side by side.
 *
 * One update in hand (as the spool's forwarder, one attempt at a time):
 *   2xx             ack; the waiting JSON client, if any, gets the answer
 *   retryable       nak with the delay of retry.c's persistent policy,
 *   (retry.c)       attempts = JetStream's delivery count: the partition
 *                   waits, then the update comes again (to any gateway);
 *                   naks with a delay are replicated with the consumer,
 *                   so a consumer leader change keeps the wait
 *   other status    published to STREAM_DEAD.<p> (waiting for its
 *                   acknowledgement), then acked; its session goes on
 * Redeliveries of an update this lane already finished (its ack was
 * lost) are acked again without going upstream.
 *
 * Passed over: after all of a cluster's nodes were killed at once (kill
 * -9), a consumer can hand out a partition's update and never the one
 * before it (the crash tests saw it: seq 6546, then 6572, never 6557 nor
 * 6558, though both are in the stream). So a gateway forwards a partition
 * strictly in stream order itself, whatever its consumer does: after it
 * claims an update it asks the stream's leader for the partition's first
 * message after the claim before; one older than the update in hand was
 * passed over, and goes first (see "Claims" below). That needs an update
 * in hand; a partition whose consumer passed its last updates over has
 * none. So each lane looks, every AckWait, at its idle partitions: one
 * with messages after its claim and no claim since the last look gets a
 * nudge, a message of no update (Sw-Nudge, no Sw-Path) that its consumer
 * does hand out: its holder sends what was passed over, then acks it.
 *
 * At least once: a crash after the upstream's answer and before the ack
 * reaches the consumer's leader delivers the update again after AckWait,
 * and nothing later of its partition goes before it (MaxAckPending 1).
 * AckWait is --upstream-timeout-ms + 5 s: a gateway that dies mid-call
 * has given up on its attempt before the update goes again.
 */
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <openssl/evp.h>

#include "queue_int.h"
#include "sessionwire/sw_date.h"

#define PULL_BATCH 32
#define PULL_EXPIRES_MS 20000
#define PULL_HEARTBEAT_MS 2000
#define PULL_LOST_MS (2 * PULL_HEARTBEAT_MS + 1000)
#define PULL_PAUSE_MS 500         /* after a 409 or "no responders" */
#define TICK_MS 250
#define DEAD_BODY_MAX 4096
#define DEAD_RETRY_MS 1000        /* the dead letter did not store: again */

typedef enum part_state {
	P_IDLE,       /* nothing in hand */
	P_READ,       /* reading the partition's claim */
	P_GAP,        /* reading the partition's next message after the claim */
	P_CLAIM,      /* claiming the update in hand */
	P_UPSTREAM,   /* an update at the upstream */
	P_DEAD        /* its dead letter being stored */
} part_state;

struct gw_queue_part {
	gw_queue_lane *ln;
	unsigned p;
	char next_subj[96];        /* $JS.API.CONSUMER.MSG.NEXT.<stream>.p<N> */
	uint64_t req;              /* the open pull request */
	bool pulling;
	int got;                   /* deliveries on it */
	int64_t heard;             /* its last delivery or status */
	int64_t pause_until;
	part_state state;
	gw_inmsg *held;            /* the update in hand */
	gw_inmsg *queued, **qtail; /* deliveries behind it (redeliveries) */
	uint64_t sseq, delivered;
	int64_t ts_ms;             /* its stream timestamp (unix ms) */
	uint64_t last_done;        /* the highest sequence finished here */
	/* the update being sent: the one in hand, or one its consumer passed
	 * over (skip, read from the stream) that goes before it */
	natsMsg *cur, *skip;
	uint64_t cur_seq;
	int64_t cur_ts;
	char part_subj[96];        /* <stream>.<p> */
	gw_response resp;          /* its final answer (dead letters) */
	/* the partition's claim in STREAM_FWD as last seen: the sequence
	 * claimed (w) and the claim's own sequence there (l) */
	bool fence_known;
	uint64_t fence_w, fence_l;
	uint64_t fence_prev;       /* the claim's W: what went before it */
	uint64_t claim_prev;       /* the claim being made's */
	int fence_tries;
	/* the sweep: the claim and the partition's last message at this
	 * look and (0) at the one before, and when the next one is due */
	bool sweeping;
	int64_t sweep_at;
	uint64_t sweep_w, sweep_last, sweep_w0, sweep_last0;
};

static void part_take(gw_queue_part *pt, gw_inmsg *im);
static void on_answer(void *ud, gw_response *resp);
static void skip_done(gw_queue_part *pt);

/* ==== Small pieces ==== */

static bool connected(const gw_queue *q)
{
	return atomic_load(&q->connected);
}

static void publish_str(gw_queue *q, const char *subj, const char *s)
{
	if (subj != NULL && natsConnection_PublishString(q->nc, subj, s) != NATS_OK) {
		gw_log_fields f = GW_LOG_FIELDS_INIT;

		/* the update comes again after AckWait */
		f.error = natsStatus_GetText(NATS_CONNECTION_CLOSED);
		gw_log(GW_LOG_DEBUG, "queue: an ack could not be sent", &f);
	}
}

/* The delivery count, stream sequence and timestamp in a JetStream ack
 * subject: $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.
 * <pending> (v1) or with <domain>.<account hash> before the stream and a
 * random token after (v2). */
static bool ack_info(const char *reply, uint64_t *delivered, uint64_t *sseq,
		     int64_t *ts_ms)
{
	const char *t[12];
	size_t n = 0;
	const char *p = reply;
	int base;

	if (reply == NULL || strncmp(reply, "$JS.ACK.", 8) != 0)
		return false;
	p += 8;
	while (n < 12) {
		t[n++] = p;
		p = strchr(p, '.');
		if (p == NULL)
			break;
		p++;
	}
	if (n == 7)
		base = 0;
	else if (n >= 9)
		base = 2;
	else
		return false;
	*delivered = strtoull(t[base + 2], NULL, 10);
	*sseq = strtoull(t[base + 3], NULL, 10);
	*ts_ms = (int64_t)(strtoull(t[base + 5], NULL, 10) / 1000000ULL);
	return *sseq > 0 && *delivered > 0;
}

/* A status message (no data, a Status header): its code, else 0. */
static int status_of(natsMsg *m)
{
	const char *v = NULL;

	if (natsMsg_GetDataLength(m) > 0)
		return 0;
	if (natsMsgHeader_Get(m, "Status", &v) != NATS_OK || v == NULL)
		return 0;
	return atoi(v);
}

static void inmsg_free(gw_inmsg *im)
{
	if (im == NULL)
		return;
	natsMsg_Destroy(im->m);
	free(im);
}

/* ==== Pulling ==== */

static void pull(gw_queue_part *pt)
{
	gw_queue_lane *ln = pt->ln;
	gw_queue *q = ln->q;
	char reply[160], body[128];
	int64_t now = gw_mono_ms();

	if (ln->stopping || atomic_load(&q->quiet) || !connected(q) ||
	    now < pt->pause_until)
		return;
	pt->req++;
	snprintf(reply, sizeof(reply), "%s.p.%u.%" PRIu64, q->inbox, pt->p,
		 pt->req);
	snprintf(body, sizeof(body),
		 "{\"batch\":%d,\"expires\":%lld,\"idle_heartbeat\":%lld}",
		 PULL_BATCH, (long long)PULL_EXPIRES_MS * 1000000LL,
		 (long long)PULL_HEARTBEAT_MS * 1000000LL);
	if (natsConnection_PublishRequestString(q->nc, pt->next_subj, reply,
						body) != NATS_OK) {
		pt->pulling = false;
		pt->pause_until = now + PULL_PAUSE_MS;
		return;
	}
	pt->pulling = true;
	pt->got = 0;
	pt->heard = now;
}

/* A status message for request req of pt. */
static void on_status(gw_queue_part *pt, uint64_t req, int code)
{
	if (req != pt->req)
		return; /* an older request's end */
	pt->heard = gw_mono_ms();
	switch (code) {
	case 100: /* idle heartbeat: the request is alive */
		return;
	case 404: /* no messages */
	case 408: /* expired */
		pt->pulling = false;
		pull(pt);
		return;
	default:  /* 409 leadership change, 503 no responders, ... */
		pt->pulling = false;
		pt->pause_until = gw_mono_ms() + PULL_PAUSE_MS;
		return;
	}
}

/* ==== One update ==== */

/* The update in hand is over: the next queued delivery, or pull. */
static void release(gw_queue_part *pt)
{
	gw_queue_lane *ln = pt->ln;
	gw_inmsg *next;

	inmsg_free(pt->held);
	pt->held = NULL;
	natsMsg_Destroy(pt->skip);
	pt->skip = pt->cur = NULL;
	gw_response_free(&pt->resp);
	if (pt->state != P_IDLE)
		gw_metrics_queue_partitions(0, -1);
	pt->state = P_IDLE;
	while (pt->state == P_IDLE && (next = pt->queued) != NULL) {
		pt->queued = next->next;
		if (pt->queued == NULL)
			pt->qtail = &pt->queued;
		next->next = NULL;
		part_take(pt, next);
	}
	if (!pt->pulling && !ln->stopping)
		pull(pt);
}

static void ack(gw_queue_part *pt, const char *what)
{
	publish_str(pt->ln->q, natsMsg_GetReply(pt->held->m), what);
}

/* Hands the final answer of the update being sent to the JSON client
 * waiting for it: here, or on the gateway that stored the update. */
static void settle(gw_queue_part *pt, const gw_response *resp)
{
	gw_queue *q = pt->ln->q;
	const char *to = NULL;
	natsMsg *m = NULL;
	char seq[24], status[16];
	natsStatus s;

	if (natsMsgHeader_Get(pt->cur, GW_QUEUE_HDR_ANSWER, &to) != NATS_OK ||
	    to == NULL)
		return;
	if (strcmp(to, q->answer_subj) == 0) {
		gw_waiters_settle(q->waiters, (int64_t)pt->cur_seq, resp);
		return;
	}
	if (strncmp(to, "_INBOX.", 7) != 0)
		return;
	snprintf(seq, sizeof(seq), "%" PRIu64, pt->cur_seq);
	snprintf(status, sizeof(status), "%d", resp->status);
	s = natsMsg_Create(&m, to, NULL, resp->body,
			   resp->body ? (int)resp->body_len : 0);
	if (s == NATS_OK)
		s = natsMsgHeader_Set(m, GW_QUEUE_HDR_STREAM_SEQ, seq);
	if (s == NATS_OK)
		s = natsMsgHeader_Set(m, GW_QUEUE_HDR_STATUS, status);
	if (s == NATS_OK && resp->content_type[0])
		s = natsMsgHeader_Set(m, GW_QUEUE_HDR_CTYPE, resp->content_type);
	if (s == NATS_OK)
		natsConnection_PublishMsg(q->nc, m);
	natsMsg_Destroy(m);
}

/* The dead letter is stored (or not): ack the update, or give it back. */
static void on_dead_stored(gw_queue_pub *p, int result, uint64_t seq,
			   const char *err, void *ud)
{
	gw_queue_part *pt = ud;
	gw_log_fields f = GW_LOG_FIELDS_INIT;
	char nak[64];

	(void)p;
	(void)seq;
	if (result == GW_STORE_OK) {
		gw_metrics_queue_dead();
		if (pt->skip != NULL) {
			skip_done(pt);
			return;
		}
		ack(pt, "+ACK");
		pt->last_done = pt->sseq;
	} else {
		f.error = err;
		gw_log(GW_LOG_WARN, "queue: the dead letter was not stored; the update comes again",
		       &f);
		snprintf(nak, sizeof(nak), "-NAK {\"delay\":%lld}",
			 (long long)DEAD_RETRY_MS * 1000000LL);
		ack(pt, nak);
	}
	release(pt);
}

/* Appends "key":value (a number) to b. */
static void put_num(sw_buf *b, const char *key, long long v)
{
	char tmp[96];

	snprintf(tmp, sizeof(tmp), ",\"%s\":%lld", key, v);
	if (sw_buf_append(b, tmp, strlen(tmp)) != SW_OK)
		return;
}

/* A final failure: the update and the answer to STREAM_DEAD.<p>, as one
 * JSON object (the admin command reads it). */
static void to_dead_letters(gw_queue_part *pt)
{
	gw_queue *q = pt->ln->q;
	natsMsg *m = pt->cur;
	const gw_response *r = &pt->resp;
	const char *path = "", *id = "", *dseq = "0";
	char subj[64], msgid[128];
	const char *hdr[2];
	size_t bl = r->body_len > DEAD_BODY_MAX ? DEAD_BODY_MAX : r->body_len;
	sw_buf b;
	sw_status st;
	struct timespec ts;

	natsMsgHeader_Get(m, GW_QUEUE_HDR_PATH, &path);
	natsMsgHeader_Get(m, "Nats-Msg-Id", &id);
	natsMsgHeader_Get(m, GW_QUEUE_HDR_SEQ, &dseq);
	clock_gettime(CLOCK_REALTIME, &ts);
	sw_buf_init(&b, 0, NULL);
	st = sw_buf_append(&b, "{", 1);
	if (st == SW_OK)
		st = gw_json_put_str(&b, "subject", natsMsg_GetSubject(m));
	if (st == SW_OK)
		st = sw_buf_append(&b, ",", 1);
	if (st == SW_OK)
		st = gw_json_put_str(&b, "path", path ? path : "");
	if (st == SW_OK)
		st = sw_buf_append(&b, ",", 1);
	if (st == SW_OK)
		st = gw_json_put_str(&b, "msg_id", id ? id : "");
	put_num(&b, "seq", strtoll(dseq ? dseq : "0", NULL, 10));
	put_num(&b, "stream_seq", (long long)pt->cur_seq);
	put_num(&b, "attempts", (long long)pt->delivered);
	put_num(&b, "status", r->status);
	put_num(&b, "arrived_ms", pt->cur_ts);
	put_num(&b, "failed_ms", (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
	if (st == SW_OK)
		st = sw_buf_append(&b, ",\"body\":\"", 9);
	if (st == SW_OK)
		st = gw_json_escape(&b, r->body ? r->body : "", r->body ? bl : 0);
	if (st == SW_OK)
		st = sw_buf_append(&b, "\",\"json\":\"", 10);
	if (st == SW_OK)
		st = gw_json_escape(&b, natsMsg_GetData(m),
				    (size_t)natsMsg_GetDataLength(m));
	if (st == SW_OK)
		st = sw_buf_append(&b, "\"}", 2);
	snprintf(subj, sizeof(subj), "%s.%u", q->dead, pt->p);
	snprintf(msgid, sizeof(msgid), "dead:%s:%" PRIu64, q->stream, pt->cur_seq);
	hdr[0] = "Nats-Msg-Id";
	hdr[1] = msgid;
	pt->state = P_DEAD;
	if (st != SW_OK ||
	    gw_queue__pub_start(pt->ln, q->dead, subj, b.data, b.len, hdr, 1,
				q->c->queue_ack_timeout_ms, on_dead_stored,
				pt) != 0) {
		char nak[64];

		snprintf(nak, sizeof(nak), "-NAK {\"delay\":%lld}",
			 (long long)DEAD_RETRY_MS * 1000000LL);
		ack(pt, nak);
		release(pt);
	}
	sw_buf_free(&b);
}

/* The upstream's answer to the update in hand. */
static void on_answer(void *ud, gw_response *resp)
{
	gw_queue_part *pt = ud;
	gw_queue_lane *ln = pt->ln;
	gw_queue *q = ln->q;
	gw_log_fields lf = GW_LOG_FIELDS_INIT;
	int status = resp->status;

	pt->resp = *resp; /* resp itself is gone after this call */
	if (status >= 200 && status < 300) {
		settle(pt, &pt->resp);
		gw_metrics_queue_delivered();
		if (pt->skip != NULL) {
			skip_done(pt);
			return;
		}
		ack(pt, "+ACK");
		pt->last_done = pt->sseq;
		release(pt);
		return;
	}
	if (gw_retry_retryable(&q->policy, status, resp->curl_code)) {
		long wait = gw_retry_next(&q->policy, (unsigned)pt->delivered, 0,
					  resp->retry_after_ms, &ln->rng);
		char nak[80];

		if (wait < 0)
			wait = 0;
		snprintf(nak, sizeof(nak), "-NAK {\"delay\":%lld}",
			 (long long)wait * 1000000LL);
		ack(pt, wait > 0 ? nak : "-NAK");
		gw_metrics_queue_retry();
		lf.status = status;
		lf.attempts = (int)pt->delivered;
		lf.error = status ? "upstream answered a retryable status"
				  : pt->resp.error;
		gw_log(GW_LOG_DEBUG, "queue: will retry", &lf);
		release(pt);
		return;
	}
	lf.status = status;
	lf.attempts = (int)pt->delivered;
	lf.route = "queue";
	lf.error = "final upstream failure: moved to the dead-letter stream";
	gw_log(GW_LOG_WARN, "queue: dead letter", &lf);
	settle(pt, &pt->resp);
	to_dead_letters(pt);
}

/* ==== Claims: every update of a partition, in stream order, once ====
 *
 * JetStream 2.9 replicates a consumer's acks and deliveries without
 * waiting for them: a consumer leader that dies can leave a successor
 * that delivers an update again after it delivered the next one (the
 * crash tests saw it: one session's 1 after 2), or one that passes an
 * update over (above). So the consumer only says which partition has
 * work; what goes upstream, in which order, the stream decides:
 *
 * Before an update S goes upstream its gateway claims it in
 * STREAM_FWD.<p> (one message per partition: "S W", S claimed after W,
 * the claim before), with JetStream's compare-and-set
 * (Nats-Expected-Last-Subject-Sequence, answered by the stream's leader:
 * a majority holds every claim it acknowledged). Then it reads, from the
 * stream's leader, the partition's first message after W: S itself, or
 * one passed over G, which goes upstream first (claim "S G" once it is
 * over, then the next after G). The update in hand decides by the claim:
 *   claim < update   claim it, then what follows the claim (as above)
 *   claim = update   claimed already, a retry or a crash on the way:
 *                    what follows the claim's W, from there on
 *   claim > update   a later update of the partition was claimed, and
 *                    everything before it went (or goes) first: a stale
 *                    copy, acked without being sent
 * A claim that finds another claim since the last one read (error 10071)
 * reads the partition's claim and decides again. Cost per update: a
 * replicated publish and a read of the stream's leader. */

#define FENCE_TRIES 8
/* what an upstream call may lag behind its timeout (the loop's timers) */
#define FORWARD_MARGIN_MS 1000

static void forward(gw_queue_part *pt);
static void fence_step(gw_queue_part *pt);
static void scan(gw_queue_part *pt);

/* Gives the update in hand back (to any gateway) after ms. */
static void give_back(gw_queue_part *pt, long ms)
{
	char nak[64];

	snprintf(nak, sizeof(nak), "-NAK {\"delay\":%lld}",
		 (long long)ms * 1000000LL);
	ack(pt, ms > 0 ? nak : "-NAK");
	release(pt);
}

/* The update being sent is the one in hand again. */
static void cur_held(gw_queue_part *pt)
{
	natsMsg_Destroy(pt->skip);
	pt->skip = NULL;
	pt->cur = pt->held->m;
	pt->cur_seq = pt->sseq;
	pt->cur_ts = pt->ts_ms;
}

static void on_claimed(gw_queue_pub *p, int result, uint64_t seq,
		       const char *err, void *ud)
{
	gw_queue_part *pt = ud;
	gw_log_fields f = GW_LOG_FIELDS_INIT;

	if (result == GW_STORE_OK) {
		pt->fence_known = true;
		pt->fence_w = pt->sseq;
		pt->fence_prev = pt->claim_prev;
		pt->fence_l = seq;
		scan(pt);
		return;
	}
	pt->fence_known = false;
	if (p->js_err == 10071 && ++pt->fence_tries < FENCE_TRIES) {
		fence_step(pt); /* claimed by another since: read, decide again */
		return;
	}
	f.error = err;
	gw_log(GW_LOG_WARN, "queue: an update could not be claimed; it comes again", &f);
	give_back(pt, 1000);
}

/* Claims the update in hand as "S prev" (on the claim last read). */
static void claim(gw_queue_part *pt, uint64_t prev)
{
	gw_queue_lane *ln = pt->ln;
	gw_queue *q = ln->q;
	char subj[128], val[48], last[24];
	const char *hdr[2];

	pt->state = P_CLAIM;
	pt->claim_prev = prev;
	snprintf(subj, sizeof(subj), "%s.%u", q->fwd, pt->p);
	snprintf(val, sizeof(val), "%" PRIu64 " %" PRIu64, pt->sseq, prev);
	snprintf(last, sizeof(last), "%" PRIu64, pt->fence_l);
	hdr[0] = "Nats-Expected-Last-Subject-Sequence";
	hdr[1] = last;
	if (gw_queue__pub_start(ln, q->fwd, subj, val, strlen(val), hdr, 1,
				q->c->queue_ack_timeout_ms, on_claimed, pt) != 0)
		give_back(pt, 1000);
}

/* Asks stream's leader for a stored message ($JS.API.STREAM.MSG.GET:
 * body {"seq":N,"next_by_subj":S} or {"last_by_subj":S}); the reply goes
 * to done on the lane's loop (NULL: none in time). 0, or -1. */
static int stream_get(gw_queue_lane *ln, const char *stream, const char *body,
		      gw_queue_req_fn done, void *ud)
{
	char subj[128];

	snprintf(subj, sizeof(subj), "$JS.API.STREAM.MSG.GET.%s", stream);
	return gw_queue__req_start(ln, subj, body, ln->q->c->queue_ack_timeout_ms,
				   done, ud);
}

/* A $JS.API.STREAM.MSG.GET reply's message's field name, decoded from
 * base64 (malloc'ed, NUL-terminated; *n its length). "" when it has none
 * (an empty payload), NULL when it does not decode. */
static char *get_field(const cJSON *msg, const char *name, size_t *n)
{
	const cJSON *x = cJSON_GetObjectItemCaseSensitive(msg, name);
	size_t len, pad = 0;
	char *out;
	int r;

	*n = 0;
	if (x == NULL)
		return strdup("");
	if (!cJSON_IsString(x) || (len = strlen(x->valuestring)) % 4 != 0 ||
	    len > INT_MAX)
		return NULL;
	out = malloc(len / 4 * 3 + 1);
	if (out == NULL)
		return NULL;
	r = len ? EVP_DecodeBlock((unsigned char *)out,
				  (const unsigned char *)x->valuestring, (int)len) : 0;
	if (r < 0) {
		free(out);
		return NULL;
	}
	while (pad < 2 && len > pad && x->valuestring[len - 1 - pad] == '=')
		pad++;
	*n = (size_t)r - pad;
	out[*n] = '\0';
	return out;
}

/* A stored message from a $JS.API.STREAM.MSG.GET reply's "message": its
 * subject, headers ("NATS/1.0\r\nKey: value\r\n...\r\n\r\n") and data.
 * NULL when something does not parse. */
static natsMsg *stored_msg(const cJSON *msg)
{
	const cJSON *subj = cJSON_GetObjectItemCaseSensitive(msg, "subject");
	natsMsg *m = NULL;
	size_t hl, dl;
	char *hdrs = get_field(msg, "hdrs", &hl), *data = get_field(msg, "data", &dl);
	char *line, *save = NULL;
	bool ok = hdrs != NULL && data != NULL && cJSON_IsString(subj) &&
		  dl <= INT_MAX &&
		  natsMsg_Create(&m, subj->valuestring, NULL, data, (int)dl) == NATS_OK;

	/* the first line is the version */
	for (line = ok ? strtok_r(hdrs, "\r\n", &save) : NULL;
	     ok && (line = strtok_r(NULL, "\r\n", &save)) != NULL;) {
		char *colon = strchr(line, ':'), *v;

		if (colon == NULL)
			continue;
		*colon = '\0';
		for (v = colon + 1; *v == ' ' || *v == '\t'; v++)
			;
		ok = natsMsgHeader_Add(m, line, v) == NATS_OK;
	}
	free(hdrs);
	free(data);
	if (!ok) {
		natsMsg_Destroy(m);
		return NULL;
	}
	return m;
}

/* The partition's first message after the claim's W: the update in hand,
 * or one passed over (a $JS.API.STREAM.MSG.GET reply; error 10037: none). */
static void on_next_read(void *ud, natsMsg *r)
{
	gw_queue_part *pt = ud;
	gw_log_fields f = GW_LOG_FIELDS_INIT;
	cJSON *j = NULL, *msg, *e, *x;
	const char *path = NULL;
	uint64_t seq = 0;
	int64_t ts = 0;
	char why[128];

	if (r != NULL)
		j = cJSON_ParseWithLength(natsMsg_GetData(r),
					  (size_t)natsMsg_GetDataLength(r));
	natsMsg_Destroy(r);
	e = cJSON_GetObjectItemCaseSensitive(j, "error");
	msg = cJSON_GetObjectItemCaseSensitive(j, "message");
	x = cJSON_GetObjectItemCaseSensitive(e, "err_code");
	if (cJSON_IsObject(e) && cJSON_IsNumber(x) && x->valueint == 10037) {
		cJSON_Delete(j); /* nothing there (the stream's leader is behind) */
		forward(pt);
		return;
	}
	x = cJSON_GetObjectItemCaseSensitive(msg, "seq");
	if (cJSON_IsNumber(x) && x->valuedouble > 0)
		seq = (uint64_t)x->valuedouble;
	if (seq >= pt->sseq) {
		cJSON_Delete(j); /* the update in hand is next */
		forward(pt);
		return;
	}
	if (seq > 0)
		pt->skip = stored_msg(msg);
	x = cJSON_GetObjectItemCaseSensitive(msg, "time");
	if (!cJSON_IsString(x) ||
	    sw_date_parse(x->valuestring, strlen(x->valuestring), &ts, NULL) != SW_OK)
		ts = 0;
	cJSON_Delete(j);
	if (pt->skip == NULL) {
		gw_log(GW_LOG_WARN, "queue: a partition's next message could not be read; the update comes again",
		       NULL);
		give_back(pt, 1000);
		return;
	}
	pt->cur = pt->skip;
	pt->cur_seq = seq;
	pt->cur_ts = ts;
	if (natsMsgHeader_Get(pt->skip, GW_QUEUE_HDR_PATH, &path) != NATS_OK ||
	    path == NULL || path[0] != '/') {
		/* it cannot go (part_take terminates such a delivery) */
		pt->fence_prev = seq;
		cur_held(pt);
		scan(pt);
		return;
	}
	snprintf(why, sizeof(why), "stream seq %" PRIu64 " passed over; %" PRIu64
		 " in hand", seq, pt->sseq);
	f.route = "queue";
	f.session_id = path;
	f.error = why;
	gw_log(GW_LOG_WARN, "queue: its consumer passed an update over: it goes first",
	       &f);
	forward(pt);
}

/* Reads the partition's first message after the claim's W. */
static void scan(gw_queue_part *pt)
{
	gw_queue_lane *ln = pt->ln;
	char body[160];

	if (ln->stopping) {
		give_back(pt, 0);
		return;
	}
	pt->state = P_GAP;
	snprintf(body, sizeof(body), "{\"seq\":%" PRIu64 ",\"next_by_subj\":\"%s\"}",
		 pt->fence_prev + 1, pt->part_subj);
	if (stream_get(ln, ln->q->stream, body, on_next_read, pt) != 0)
		give_back(pt, 1000);
}

/* The passed-over update being sent is over (its final answer, or its
 * dead letter stored): the claim says so, then the next one. */
static void skip_done(gw_queue_part *pt)
{
	uint64_t g = pt->cur_seq;

	gw_metrics_queue_skipped();
	gw_response_free(&pt->resp);
	cur_held(pt);
	claim(pt, g);
}

/* A partition's claim from STREAM_FWD (a $JS.API.STREAM.MSG.GET reply:
 * {"message":{"seq":L,"data":base64("S W")}}, or error 10037: none yet
 * (all 0)). Takes m; false when it is not a claim. */
static bool parse_claim(natsMsg *m, uint64_t *w, uint64_t *prev, uint64_t *l)
{
	cJSON *j = NULL, *msg, *x, *e;
	bool ok = false;

	if (m != NULL)
		j = cJSON_ParseWithLength(natsMsg_GetData(m),
					  (size_t)natsMsg_GetDataLength(m));
	natsMsg_Destroy(m);
	e = cJSON_GetObjectItemCaseSensitive(j, "error");
	msg = cJSON_GetObjectItemCaseSensitive(j, "message");
	if (cJSON_IsObject(e)) {
		x = cJSON_GetObjectItemCaseSensitive(e, "err_code");
		if (cJSON_IsNumber(x) && x->valueint == 10037) {
			*w = *prev = *l = 0;
			ok = true;
		}
	} else if (cJSON_IsObject(msg)) {
		cJSON *seq = cJSON_GetObjectItemCaseSensitive(msg, "seq");
		size_t n;
		char *raw = get_field(msg, "data", &n), *end = NULL;

		if (cJSON_IsNumber(seq) && raw != NULL) {
			*w = strtoull(raw, &end, 10);
			*prev = *end == ' ' ? strtoull(end + 1, NULL, 10) : *w;
			*l = (uint64_t)seq->valuedouble;
			ok = *w > 0 && *prev <= *w;
		}
		free(raw);
	}
	cJSON_Delete(j);
	return ok;
}

static void on_claim_read(void *ud, natsMsg *m)
{
	gw_queue_part *pt = ud;

	if (!parse_claim(m, &pt->fence_w, &pt->fence_prev, &pt->fence_l)) {
		gw_log(GW_LOG_WARN, "queue: a partition's claim could not be read; the update comes again",
		       NULL);
		give_back(pt, 1000);
		return;
	}
	pt->fence_known = true;
	fence_step(pt);
}

/* The next step to send the update in hand. */
static void fence_step(gw_queue_part *pt)
{
	gw_queue_lane *ln = pt->ln;
	gw_queue *q = ln->q;
	char body[128];

	if (ln->stopping) {
		give_back(pt, 0);
		return;
	}
	if (!pt->fence_known) {
		pt->state = P_READ;
		snprintf(body, sizeof(body), "{\"last_by_subj\":\"%s.%u\"}",
			 q->fwd, pt->p);
		if (stream_get(ln, q->fwd, body, on_claim_read, pt) != 0)
			give_back(pt, 1000);
		return;
	}
	if (pt->sseq < pt->fence_w) {
		/* a later update of this partition was claimed */
		gw_log_fields f = GW_LOG_FIELDS_INIT;
		const char *path = NULL;
		char why[96];

		natsMsgHeader_Get(pt->held->m, GW_QUEUE_HDR_PATH, &path);
		snprintf(why, sizeof(why),
			 "stream seq %" PRIu64 " < %" PRIu64 " claimed",
			 pt->sseq, pt->fence_w);
		f.route = "queue";
		f.session_id = path;
		f.attempts = (int)pt->delivered;
		f.error = why;
		gw_log(GW_LOG_WARN, "queue: an update came after a later one of its partition was claimed: acked as a stale copy",
		       &f);
		publish_str(q, natsMsg_GetReply(pt->held->m), "+ACK");
		if (pt->sseq > pt->last_done)
			pt->last_done = pt->sseq;
		gw_metrics_queue_stale();
		release(pt);
		return;
	}
	if (pt->sseq == pt->fence_w)
		scan(pt); /* claimed already: what follows its W */
	else
		claim(pt, pt->fence_w);
}

/* Sends the update being sent upstream. Not when the update in hand
 * was held so long that the upstream call could outlast AckWait:
 * JetStream would deliver it again meanwhile, another gateway could
 * forward it and the next one, and this call land after them. */
static void forward(gw_queue_part *pt)
{
	gw_queue_lane *ln = pt->ln;
	gw_queue *q = ln->q;
	natsMsg *m = pt->cur;
	const char *path = NULL;
	int64_t held = gw_mono_ms() - pt->held->at;

	if (ln->stopping) {
		give_back(pt, 0);
		return;
	}
	if (held + q->c->upstream_timeout_ms + FORWARD_MARGIN_MS > q->ack_wait_ms) {
		gw_log(GW_LOG_WARN, "queue: an update's claim took too long to send it before AckWait; it comes again",
		       NULL);
		give_back(pt, 0);
		return;
	}
	if (natsMsgHeader_Get(m, GW_QUEUE_HDR_PATH, &path) != NATS_OK ||
	    path == NULL) {
		/* a nudge: what it was for went before it */
		ack(pt, "+ACK");
		pt->last_done = pt->sseq;
		release(pt);
		return;
	}
	pt->state = P_UPSTREAM;
	if (gw_uplink_patch(ln->ul, path, natsMsg_GetData(m),
			    (size_t)natsMsg_GetDataLength(m), false, on_answer,
			    pt) != 0)
		give_back(pt, 1000);
}

/* Takes a delivery of pt's consumer (im owned). */
static void part_take(gw_queue_part *pt, gw_inmsg *im)
{
	gw_queue_lane *ln = pt->ln;
	natsMsg *m = im->m;
	const char *reply = natsMsg_GetReply(m), *path = NULL;
	uint64_t delivered = 0, sseq = 0;
	int64_t ts_ms = 0;

	if (!ack_info(reply, &delivered, &sseq, &ts_ms)) {
		inmsg_free(im);
		return;
	}
	if (ln->stopping) {
		/* another gateway takes it at once */
		publish_str(ln->q, reply, "-NAK");
		inmsg_free(im);
		return;
	}
	if (delivered > 1)
		gw_metrics_queue_redelivered();
	if (sseq <= pt->last_done) {
		/* finished here; its ack was lost */
		publish_str(ln->q, reply, "+ACK");
		inmsg_free(im);
		return;
	}
	if (pt->state != P_IDLE) {
		if (sseq == pt->sseq) {
			inmsg_free(im); /* the one in hand, again: its ack covers it */
			return;
		}
		im->next = NULL;
		*pt->qtail = im;
		pt->qtail = &im->next;
		return;
	}
	if ((natsMsgHeader_Get(m, GW_QUEUE_HDR_PATH, &path) != NATS_OK ||
	     path == NULL || path[0] != '/') &&
	    natsMsgHeader_Get(m, GW_QUEUE_HDR_NUDGE, &path) != NATS_OK) {
		gw_log(GW_LOG_ERROR, "queue: a message without Sw-Path in the stream: terminated",
		       NULL);
		publish_str(ln->q, reply, "+TERM");
		inmsg_free(im);
		return;
	}
	pt->held = im;
	pt->sseq = sseq;
	pt->delivered = delivered;
	pt->ts_ms = ts_ms;
	cur_held(pt);
	pt->fence_tries = 0;
	pt->state = P_CLAIM;
	gw_metrics_queue_partitions(0, 1);
	fence_step(pt);
}

static void on_pull_msg(gw_queue_lane *ln, gw_inmsg *im)
{
	unsigned p = (unsigned)im->a;
	gw_queue_part *pt;
	int code;

	if (p % ln->q->n_lanes != ln->idx || p / ln->q->n_lanes >= ln->n_parts) {
		inmsg_free(im);
		return;
	}
	pt = &ln->parts[p / ln->q->n_lanes];
	code = status_of(im->m);
	if (code != 0 || natsMsg_GetDataLength(im->m) == 0) {
		on_status(pt, im->b, code);
		inmsg_free(im);
		return;
	}
	/* a delivery does not name its request (b is UINT64_MAX): it is
	 * counted against the open one */
	if (im->b == pt->req || im->b == UINT64_MAX) {
		pt->heard = gw_mono_ms();
		if (++pt->got >= PULL_BATCH)
			pt->pulling = false; /* used up: the next one below */
	}
	part_take(pt, im);
	if (!pt->pulling && !ln->stopping)
		pull(pt);
}

/* ==== The lane ==== */

/* ==== The sweep: partitions whose consumer has nothing for them ==== */

static void on_nudged(gw_queue_pub *p, int result, uint64_t seq,
		      const char *err, void *ud)
{
	gw_queue_part *pt = ud;

	(void)p;
	(void)result; /* not stored: the next look nudges again */
	(void)seq;
	(void)err;
	pt->sweeping = false;
}

/* The partition's last message: after a claim that did not move since
 * the last look, a nudge (once per claim: its message id says which). */
static void on_sweep_last(void *ud, natsMsg *m)
{
	gw_queue_part *pt = ud;
	gw_queue *q = pt->ln->q;
	gw_log_fields f = GW_LOG_FIELDS_INIT;
	cJSON *j = NULL, *x;
	char id[96], w[24], why[96];
	const char *hdr[4];

	if (m != NULL)
		j = cJSON_ParseWithLength(natsMsg_GetData(m),
					  (size_t)natsMsg_GetDataLength(m));
	natsMsg_Destroy(m);
	x = cJSON_GetObjectItemCaseSensitive(
		cJSON_GetObjectItemCaseSensitive(j, "message"), "seq");
	pt->sweep_last = cJSON_IsNumber(x) ? (uint64_t)x->valuedouble : 0;
	cJSON_Delete(j);
	if (pt->sweep_last <= pt->sweep_w || pt->sweep_w != pt->sweep_w0 ||
	    pt->sweep_last != pt->sweep_last0 || pt->ln->stopping) {
		pt->sweep_w0 = pt->sweep_w; /* nothing after the claim, or moving */
		pt->sweep_last0 = pt->sweep_last;
		pt->sweeping = false;
		return;
	}
	snprintf(why, sizeof(why), "partition %u: stream seq %" PRIu64
		 " after the claim of %" PRIu64, pt->p, pt->sweep_last, pt->sweep_w);
	f.route = "queue";
	f.error = why;
	gw_log(GW_LOG_WARN, "queue: a partition has updates its consumer does not hand out: nudged",
	       &f);
	snprintf(id, sizeof(id), "nudge:%u:%" PRIu64, pt->p, pt->sweep_w);
	snprintf(w, sizeof(w), "%" PRIu64, pt->sweep_w);
	hdr[0] = "Nats-Msg-Id";
	hdr[1] = id;
	hdr[2] = GW_QUEUE_HDR_NUDGE;
	hdr[3] = w;
	if (gw_queue__pub_start(pt->ln, q->stream, pt->part_subj, "nudge", 5, hdr,
				2, q->c->queue_ack_timeout_ms, on_nudged, pt) != 0)
		pt->sweeping = false;
}

static void on_sweep_claim(void *ud, natsMsg *m)
{
	gw_queue_part *pt = ud;
	uint64_t prev, l;
	char body[128];

	if (!parse_claim(m, &pt->sweep_w, &prev, &l) || pt->ln->stopping) {
		pt->sweeping = false;
		return;
	}
	snprintf(body, sizeof(body), "{\"last_by_subj\":\"%s\"}", pt->part_subj);
	if (stream_get(pt->ln, pt->ln->q->stream, body, on_sweep_last, pt) != 0)
		pt->sweeping = false;
}

static void sweep(gw_queue_part *pt, int64_t now)
{
	gw_queue *q = pt->ln->q;
	char body[128];

	pt->sweep_at = now + q->ack_wait_ms;
	if (!connected(q))
		return;
	pt->sweeping = true;
	snprintf(body, sizeof(body), "{\"last_by_subj\":\"%s.%u\"}", q->fwd, pt->p);
	if (stream_get(pt->ln, q->fwd, body, on_sweep_claim, pt) != 0)
		pt->sweeping = false;
}

static void on_tick(void *ud)
{
	gw_queue_lane *ln = ud;
	int64_t now = gw_mono_ms();
	unsigned i;

	if (ln->stopping)
		return;
	for (i = 0; i < ln->n_parts; i++) {
		gw_queue_part *pt = &ln->parts[i];

		if (pt->pulling && pt->state == P_IDLE &&
		    now - pt->heard > PULL_LOST_MS)
			pt->pulling = false; /* its server went away */
		if (!pt->pulling)
			pull(pt);
		if (pt->state == P_IDLE && !pt->sweeping && now >= pt->sweep_at)
			sweep(pt, now);
	}
	gw_timer_start(ln->loop, &ln->tick, TICK_MS);
}

static void on_reconnect(gw_queue_lane *ln)
{
	unsigned i;

	gw_queue__pub_resend_all(ln);
	for (i = 0; i < ln->n_parts && !ln->stopping; i++) {
		ln->parts[i].pulling = false;
		ln->parts[i].pause_until = 0;
		pull(&ln->parts[i]);
	}
}

static void on_wake(void *arg)
{
	gw_queue_lane *ln = arg;
	gw_inmsg *im, *next;

	pthread_mutex_lock(&ln->mu);
	im = ln->in_head;
	ln->in_head = NULL;
	ln->in_tail = &ln->in_head;
	ln->posted = false;
	pthread_mutex_unlock(&ln->mu);
	for (; im != NULL; im = next) {
		next = im->next;
		im->next = NULL;
		switch (im->kind) {
		case GW_IN_REPLY:
			gw_queue__pub_reply(ln, im->a, im->m);
			free(im);
			break;
		case GW_IN_PULL:
			on_pull_msg(ln, im);
			break;
		case GW_IN_RECONNECT:
			if (ln->started)
				on_reconnect(ln);
			inmsg_free(im);
			break;
		}
	}
}

void gw_queue__lane_push(gw_queue_lane *ln, gw_inmsg *im)
{
	pthread_mutex_lock(&ln->mu);
	im->next = NULL;
	*ln->in_tail = im;
	ln->in_tail = &im->next;
	if (!ln->posted) {
		ln->posted = true;
		gw_loop_post(ln->loop, &ln->wake, on_wake, ln);
	}
	pthread_mutex_unlock(&ln->mu);
}

/* The loop's first pass: every partition pulls. */
static void on_start(void *arg)
{
	gw_queue_lane *ln = arg;
	unsigned i;

	if (ln->stopping)
		return;
	ln->started = true;
	gw_metrics_queue_partitions((int)ln->n_parts, 0);
	for (i = 0; i < ln->n_parts; i++)
		pull(&ln->parts[i]);
	gw_timer_start(ln->loop, &ln->tick, TICK_MS);
}

gw_queue_lane *gw_queue__lane_new(gw_queue *q, unsigned idx, gw_loop *loop,
				  gw_uplink *ul, char *err, size_t errlen)
{
	gw_queue_lane *ln = calloc(1, sizeof(*ln));
	unsigned p, k = 0;

	if (ln == NULL || q->n_lanes == 0) {
		free(ln);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	ln->q = q;
	ln->idx = idx;
	ln->loop = loop;
	ln->ul = ul;
	ln->rng = gw_rng_seed() + idx;
	ln->in_tail = &ln->in_head;
	pthread_mutex_init(&ln->mu, NULL);
	gw_timer_init(&ln->tick, on_tick, ln);
	/* --queue-accept-only: publishes, no partitions */
	for (p = idx; p < q->n_parts && !q->c->queue_accept_only; p += q->n_lanes)
		ln->n_parts++;
	ln->parts = calloc(ln->n_parts ? ln->n_parts : 1, sizeof(*ln->parts));
	if (ln->parts == NULL) {
		pthread_mutex_destroy(&ln->mu);
		free(ln);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	for (p = idx; p < q->n_parts && k < ln->n_parts; p += q->n_lanes) {
		gw_queue_part *pt = &ln->parts[k++];

		pt->ln = ln;
		pt->p = p;
		pt->qtail = &pt->queued;
		pt->sweep_at = gw_mono_ms() + q->ack_wait_ms;
		snprintf(pt->next_subj, sizeof(pt->next_subj),
			 "$JS.API.CONSUMER.MSG.NEXT.%s.p%u", q->stream, p);
		snprintf(pt->part_subj, sizeof(pt->part_subj), "%s.%u",
			 q->stream, p);
	}
	/* before the loop runs: this post is its first work */
	gw_loop_post(loop, &ln->start, on_start, ln);
	return ln;
}

void gw_queue__lane_stop(gw_queue_lane *ln)
{
	if (ln == NULL || ln->stopping)
		return;
	ln->stopping = true;
	gw_timer_stop(ln->loop, &ln->tick);
	if (ln->started)
		gw_metrics_queue_partitions(-(int)ln->n_parts, 0);
}

bool gw_queue__lane_idle(const gw_queue_lane *ln)
{
	unsigned i;

	if (ln == NULL)
		return true;
	for (i = 0; i < ln->n_parts; i++)
		if (ln->parts[i].state != P_IDLE)
			return false;
	return true;
}

void gw_queue__lane_free(gw_queue_lane *ln)
{
	gw_queue *q;
	gw_inmsg *im, *next;
	unsigned i;

	if (ln == NULL)
		return;
	q = ln->q;
	/* no callback posts to this loop from here on */
	pthread_mutex_lock(&q->mu);
	if (ln->idx < q->n_lanes && q->lanes[ln->idx] == ln)
		q->lanes[ln->idx] = NULL;
	pthread_mutex_unlock(&q->mu);
	pthread_mutex_lock(&ln->mu);
	im = ln->in_head;
	ln->in_head = NULL;
	pthread_mutex_unlock(&ln->mu);
	for (; im != NULL; im = next) {
		next = im->next;
		/* a delivery nobody took: to another gateway at once */
		if (im->kind == GW_IN_PULL && natsMsg_GetDataLength(im->m) > 0)
			publish_str(q, natsMsg_GetReply(im->m), "-NAK");
		inmsg_free(im);
	}
	for (i = 0; i < ln->n_parts; i++) {
		gw_queue_part *pt = &ln->parts[i];

		for (im = pt->queued; im != NULL; im = next) {
			next = im->next;
			publish_str(q, natsMsg_GetReply(im->m), "-NAK");
			inmsg_free(im);
		}
		inmsg_free(pt->held);
		natsMsg_Destroy(pt->skip);
		gw_response_free(&pt->resp);
	}
	gw_queue__pub_free_all(ln);
	free(ln->parts);
	pthread_mutex_destroy(&ln->mu);
	free(ln);
}
