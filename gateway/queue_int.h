/* queue_int.h - what queue.c (the connection, publishing, the stream),
 * queue_forward.c (the partitions' consumers on the loops) and
 * queue_admin.c share. Not for the rest of the gateway: gw.h has the
 * queue's interface.
 *
 * Subjects
 *   STREAM.<p>            an update of a session in partition p (p =
 *                         FNV-1a 32 of the session id mod partitions)
 *   STREAM_DEAD.<p>       a dead letter (stream STREAM_DEAD)
 *   <inbox>.r.<loop>.<t>  the JetStream acknowledgement of publish t of
 *                         loop's lane
 *   <inbox>.p.<p>.<g>     status messages (heartbeat, timeout) of pull
 *                         request g of partition p; its deliveries come
 *                         to the same subscription with their stream
 *                         subject STREAM.<p> and a $JS.ACK reply
 *   <inbox>.w             final upstream answers for this gateway's
 *                         waiting JSON clients, from whichever gateway
 *                         forwarded the update
 * One subscription, <inbox>.>, takes all of the inbox's: its callback (a
 * libnats thread) only hands each message to the lane of its loop.
 *
 * Headers of a stored update: Nats-Msg-Id (the session and the device's
 * seq, or this process and a counter for a PATCH), Sw-Path (the upstream
 * path), Sw-Seq (the device's seq), Sw-Answer (the <inbox>.w subject of a
 * gateway with a JSON client waiting); the data is the canonical JSON.
 */
#ifndef GW_QUEUE_INT_H
#define GW_QUEUE_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include <nats/nats.h>

#include "gw.h"

#define GW_QUEUE_HDR_PATH "Sw-Path"
#define GW_QUEUE_HDR_SEQ "Sw-Seq"
#define GW_QUEUE_HDR_ANSWER "Sw-Answer"
#define GW_QUEUE_HDR_STATUS "Sw-Status"
#define GW_QUEUE_HDR_STREAM_SEQ "Sw-Stream-Seq"
#define GW_QUEUE_HDR_CTYPE "Sw-Content-Type"
/* a message of no update: its partition's consumer passed updates over
 * (queue_forward.c, the sweep) */
#define GW_QUEUE_HDR_NUDGE "Sw-Nudge"
#define GW_QUEUE_MSGID_MAX 300

typedef struct gw_queue_lane gw_queue_lane;

/* A message from the inbox, on its way to a lane's loop. */
typedef enum gw_inmsg_kind {
	GW_IN_REPLY,     /* a publish acknowledgement: a = token */
	GW_IN_PULL,      /* a delivery or status: a = partition, b = request
			  * (UINT64_MAX: a delivery, which does not say) */
	GW_IN_RECONNECT  /* the connection is back: pull and publish again */
} gw_inmsg_kind;

typedef struct gw_inmsg {
	struct gw_inmsg *next;
	gw_inmsg_kind kind;
	uint64_t a, b;
	natsMsg *m;      /* owned; NULL for GW_IN_RECONNECT */
	int64_t at;      /* gw_mono_ms when it arrived */
} gw_inmsg;

struct gw_queue {
	gw_store store;            /* first: the store interface's view */
	const gw_config *c;
	natsOptions *opts;
	natsConnection *nc;
	jsCtx *js;                 /* start-up only: its calls block */
	natsSubscription *sub;     /* <inbox>.> */
	char inbox[96];            /* "_INBOX.<nuid>" */
	char answer_subj[104];     /* inbox + ".w" */
	char stream[32];
	char dead[40];             /* stream + "_DEAD" */
	char fwd[40];              /* stream + "_FWD": the partitions' claims */
	unsigned n_parts;
	int64_t ack_wait_ms;       /* the consumers' AckWait */
	gw_retry_policy policy;    /* persistent: the forwarding's */
	gw_waiters *waiters;       /* by stream sequence */
	uint64_t nonce;            /* this process, in PATCH message ids */
	atomic_ullong next_id;
	atomic_bool connected;
	atomic_llong down_since;   /* gw_mono_ms of the disconnection, 0 up */
	atomic_bool quiet;
	atomic_bool closing;       /* gw_queue_close: its disconnect is no news */
	pthread_mutex_t mu;        /* lanes[]; taken by the inbox callback */
	gw_queue_lane **lanes;     /* by loop index */
	unsigned n_lanes;
	pthread_mutex_t done_mu;   /* the subscription's and connection's ends */
	pthread_cond_t done_cv;
	bool sub_done, conn_closed;
};

/* FNV-1a 32 of the session id: its partition among n. */
unsigned gw_queue__partition(const void *sid, size_t n, unsigned parts);
/* The consumer of partition p ("p17"). */
void gw_queue__consumer(unsigned p, char *out, size_t cap);
/* A stream's, or the consumer's, JetStream error as a sentence. */
void gw_queue__js_error(char *err, size_t errlen, const char *what,
			natsStatus s, jsErrCode jerr);
/* Connection options for c's --queue flags (servers, credentials, TLS,
 * reconnects). NULL with err. */
natsOptions *gw_queue__options(const gw_config *c, char *err, size_t errlen);

/* ==== Publishes with acknowledgements (queue_publish.c) ==== */

typedef struct gw_queue_pub gw_queue_pub;
/* A publish is over: GW_STORE_OK with the stream sequence, or
 * GW_STORE_FULL / GW_STORE_ERROR with err (p->js_err: JetStream's error
 * code, 0 without one). Runs on the lane's loop. */
typedef void (*gw_queue_pub_fn)(gw_queue_pub *p, int result, uint64_t seq,
				const char *err, void *ud);
/* A request's reply (taken), or NULL when none came in time. */
typedef void (*gw_queue_req_fn)(void *ud, natsMsg *reply);

struct gw_queue_pub {
	gw_queue_lane *ln;
	const char *stream;        /* the stream that must acknowledge it */
	uint64_t token;            /* slot | generation << 24 */
	natsMsg *m;                /* sent again, the same message id */
	int64_t t0, deadline;      /* gw_mono_ms */
	long backoff;              /* ms before the next try after a refusal */
	char err[200];             /* why it failed, when it did */
	gw_timer timer;
	gw_queue_pub_fn done;
	gw_queue_req_fn raw;       /* a plain request: its reply as it is */
	int js_err;
	void *ud;
};

/* ==== Lanes (queue_forward.c): one per loop ==== */

typedef struct gw_queue_part gw_queue_part;

struct gw_queue_lane {
	gw_queue *q;
	unsigned idx;
	gw_loop *loop;
	gw_uplink *ul;
	/* the mailbox: filled by the inbox callback, emptied on the loop */
	pthread_mutex_t mu;
	gw_inmsg *in_head, **in_tail;
	bool posted;
	gw_post wake, start;
	/* publishes waiting for their acknowledgement, by slot */
	gw_queue_pub **slots;
	uint32_t n_slots, cap_slots;
	uint32_t *free_slots;
	uint32_t n_free;
	uint64_t gen;
	/* the partitions p with p % lanes == idx */
	gw_queue_part *parts;
	unsigned n_parts;
	gw_timer tick;
	bool started, stopping;
	uint64_t rng;
};

/* Publishes data to subj (of stream, q->stream or q->dead) with headers hdr[0..2*n_hdr) (key, value, ...)
 * and waits, on the lane's loop, for JetStream's acknowledgement until
 * deadline_ms from now: sent again (the same message, the same id) after
 * a second without one, or shortly after the cluster said it has no
 * leader; then done(p, ...) once, never before this returns. 0, or -1
 * (no memory: done not called). */
int gw_queue__pub_start(gw_queue_lane *ln, const char *stream,
			const char *subj, const void *data, size_t len,
			const char *const *hdr, size_t n_hdr, int64_t deadline_ms,
			gw_queue_pub_fn done, void *ud);
/* A request to subj (a JetStream API call) whose reply goes to done on
 * the lane's loop as it is (NULL after timeout_ms without one); sent
 * once. 0, or -1 (no memory: done not called). */
int gw_queue__req_start(gw_queue_lane *ln, const char *subj, const char *body,
			int64_t timeout_ms, gw_queue_req_fn done, void *ud);
/* The acknowledgement of publish token came in (m taken). */
void gw_queue__pub_reply(gw_queue_lane *ln, uint64_t token, natsMsg *m);
/* The connection is back: every waiting publish goes again now. */
void gw_queue__pub_resend_all(gw_queue_lane *ln);
/* Frees what is left (after the loop ended; nothing is called). */
void gw_queue__pub_free_all(gw_queue_lane *ln);
/* Publishes the message id for rec (session and seq, or this process and
 * a counter); dup: how many recs before it in the batch had its seq. */
void gw_queue__msg_id(gw_queue *q, const gw_store_rec *rec, unsigned dup,
		      char *out, size_t cap);

/* Loop idx's lane: its publishes' acknowledgements, and the partitions
 * p with p % n_lanes == idx, pulled and forwarded through ul. */
gw_queue_lane *gw_queue__lane_new(gw_queue *q, unsigned idx, gw_loop *loop,
				  gw_uplink *ul, char *err, size_t errlen);
void gw_queue__lane_stop(gw_queue_lane *ln);
bool gw_queue__lane_idle(const gw_queue_lane *ln);
void gw_queue__lane_free(gw_queue_lane *ln);
/* From the inbox callback, under q->mu: queues m for ln's loop. */
void gw_queue__lane_push(gw_queue_lane *ln, gw_inmsg *im);
/* On ln's loop: stores recs (the store's put, queue_publish.c). 0
 * queued, -1 not. */
int gw_queue__publish(gw_queue_lane *ln, const gw_store_rec *recs, size_t n,
		      gw_store_done_fn cb, void *arg);

/* A publish acknowledgement (the reply's data): its stream sequence, or a
 * refusal: GW_STORE_FULL (the stream cannot store more), GW_STORE_ERROR
 * with *retry true when another attempt may succeed (no responders, the
 * cluster between leaders) and *js_err JetStream's error code (10071: not
 * the expected last sequence). err: a sentence. */
int gw_queue__parse_puback(natsMsg *m, const char *stream, uint64_t *seq,
			   bool *duplicate, bool *retry, int *js_err, char *err,
			   size_t errlen);

#endif
