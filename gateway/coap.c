/* coap.c - the CoAP ingress: libcoap (Debian's 4.3.1, OpenSSL DTLS) on an
 * event loop. --coap-listen is plain UDP (devices "coap-anonymous", only
 * with --coap-anonymous), --coaps-listen DTLS 1.2 with pre-shared keys:
 * the PSK identity is the device's name, its key comes from the device
 * tokens (auth.c), looked up on this loop during the handshake.
 *
 * One libcoap context, with both endpoints, runs on one loop (server.c
 * gives it loop 0): libcoap 4.3.1 binds its endpoint sockets itself (no
 * SO_REUSEPORT, no way to hand it a socket), so a port cannot be shared
 * between loops, and it is not thread-safe (static buffers in its
 * logging). Its epoll fd sits in the loop's epoll set; libcoap's own
 * timers (retransmissions, session timeouts) live on a timerfd inside
 * that epoll set, so a readable fd is all there is to watch:
 * coap_io_process(ctx, COAP_IO_NO_WAIT) does what is due.
 *
 * A request is one exchange (cx): read (gw_coap_msg_read), decided
 * (gw_coap_check), translated (coap_req.c, request.c) and sent on its way
 * on this loop's upstream link (direct mode, gw_uplink_patch with
 * retries) or into the store (spool mode, one put), then answered:
 *
 *   QUIET  nothing sent yet. The answer is piggybacked on the ACK when it
 *          comes within PIGGYBACK_MS (spool mode: once committed);
 *          otherwise
 *   ACKED  an empty ACK went out at PIGGYBACK_MS (so the device does not
 *          retransmit), and the answer is a separate confirmable response
 *          (RFC 7252 5.2.2), which libcoap retransmits until acknowledged.
 *
 * libcoap calls the request handler and sends what the handler leaves in
 * its response PDU; an answer that is not ready is held back by making
 * that PDU an empty NON (libcoap drops it), then sent with coap_send.
 *
 * Exactly once upstream per device message (coap_dedup.c): a request
 * whose (source, message id) was seen is answered from the table (the
 * answer again, an empty ACK, or nothing while it is worked on), never
 * worked on; an envelope whose (device, session, seq) was seen gets the
 * first final answer, or joins the work under way. Block1 bodies (RFC
 * 7959) are put together per session, in order, up to --max-body.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>

#include <coap3/coap.h>
#include <openssl/crypto.h>

#include "gw.h"

#define PIGGYBACK_MS 1000      /* then an empty ACK and a separate answer */
#define EXCHANGE_LIFETIME_MS 247000 /* RFC 7252 4.8.2 */
#define DEDUP_MAX 65536        /* entries per table */
#define BLOCKS_MAX 128         /* Block1 bodies being put together */
#define BLOCKS_IDLE_MS 60000   /* a body with no block for this long: dropped */
#define SOURCES_MAX 4096       /* per-source buckets kept (then reset) */
#define HANDSHAKES_MAX 1000    /* DTLS handshakes in progress at once */
#define TICK_MS 1000
#define ANON_DEVICE "coap-anonymous"

/* ==== State ==== */

typedef enum cx_state {
	CX_QUIET,                 /* nothing sent yet */
	CX_ACKED                  /* an empty ACK went out */
} cx_state;

typedef struct work work;

/* One device message being answered. */
typedef struct cx {
	gw_coap *co;
	coap_session_t *session;  /* a reference */
	bool dtls;
	int type, mid;
	uint8_t token[8];
	size_t token_len;
	uint8_t src[20];          /* transport, address, port: the message key */
	size_t src_len;
	cx_state state;
	gw_timer ack_timer;
	long block1;              /* the final Block1 to echo, -1: none */
	size_t max_payload;       /* plain CoAP: an answer's payload bound
				   * (no larger than the request) */
	gw_coap_res res;
	char id[24];
	char device[64];
	char sid[128];            /* the session id, for the log */
	size_t bytes_in;
	double t0;
	int attempts;
	struct cx *next;          /* the waiters of one work */
} cx;

/* An update or a batch on its way. */
struct work {
	gw_coap *co;
	gw_coap_res res;
	cx *waiters;
	gw_coap_answer answer;
	/* /u */
	gw_coap_update up;
	gw_coap_seq *seq;
	/* /b */
	gw_batch_run *run;
	size_t n_all;             /* items in the device's batch */
	size_t *orig;             /* forwarded item i is the batch's orig[i] */
	sw_result *pre;           /* Results of the items not forwarded */
	char (*pre_msg)[160];
	gw_coap_seq **seqs;       /* forwarded item i's entry (or NULL) */
	size_t n_fwd;
};

/* A pending seq entry's work: which work and which of its items. */
#define ITEM_UPDATE ((size_t)-1)
typedef struct pending {
	work *w;
	size_t item;              /* ITEM_UPDATE: a /u */
} pending;

/* A Block1 body being put together, one per session. */
typedef struct blocks {
	struct blocks *next;
	coap_session_t *session;  /* a reference */
	gw_coap_blocks b;
} blocks;

/* A source address's bucket (--coap-source-rate). */
typedef struct source {
	struct source *next;
	size_t len;
	uint8_t addr[16];
	gw_coap_bucket bucket;
} source;

struct gw_coap {
	gw_worker *w;
	coap_context_t *ctx;
	gw_io io;
	gw_timer tick;
	gw_post start_post;
	gw_coap_dedup *dedup;
	bool stopping;
	coap_bin_const_t psk_out;
	uint8_t psk_buf[GW_PSK_MAX];
	blocks *blocks;
	size_t n_blocks;
	source *sources[256];
	size_t n_sources;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ==== Sources ==== */

/* The message key: 'd' or 'u', the address, the port. */
static size_t source_key(const coap_session_t *s, bool dtls, uint8_t *out)
{
	const coap_address_t *a = coap_session_get_addr_remote(s);
	size_t n = 1;

	out[0] = dtls ? 'd' : 'u';
	if (a == NULL)
		return n;
	if (a->addr.sa.sa_family == AF_INET6) {
		memcpy(out + n, &a->addr.sin6.sin6_addr, 16);
		n += 16;
		memcpy(out + n, &a->addr.sin6.sin6_port, 2);
	} else {
		memcpy(out + n, &a->addr.sin.sin_addr, 4);
		n += 4;
		memcpy(out + n, &a->addr.sin.sin_port, 2);
	}
	return n + 2;
}

/* Whether the source of s may start another request now: only counted
 * while the gateway is over half of --max-concurrent. */
static bool source_allowed(gw_coap *co, const coap_session_t *s,
			   int inflight)
{
	const gw_config *c = co->w->c;
	const coap_address_t *a = coap_session_get_addr_remote(s);
	uint8_t addr[16];
	size_t len, i;
	unsigned h = 2166136261u;
	source *e;

	if (c->coap_source_rate == 0 || inflight <= (int)c->max_concurrent / 2 ||
	    a == NULL)
		return true;
	if (a->addr.sa.sa_family == AF_INET6) {
		len = 16;
		memcpy(addr, &a->addr.sin6.sin6_addr, 16);
	} else {
		len = 4;
		memcpy(addr, &a->addr.sin.sin_addr, 4);
	}
	for (i = 0; i < len; i++)
		h = (h ^ addr[i]) * 16777619u;
	for (e = co->sources[h & 255]; e; e = e->next)
		if (e->len == len && memcmp(e->addr, addr, len) == 0)
			break;
	if (e == NULL) {
		if (co->n_sources >= SOURCES_MAX) {
			/* a flood of addresses: start counting afresh */
			for (i = 0; i < 256; i++)
				while (co->sources[i] != NULL) {
					source *x = co->sources[i];

					co->sources[i] = x->next;
					free(x);
				}
			co->n_sources = 0;
		}
		e = calloc(1, sizeof(*e));
		if (e == NULL)
			return true;
		e->len = len;
		memcpy(e->addr, addr, len);
		e->next = co->sources[h & 255];
		co->sources[h & 255] = e;
		co->n_sources++;
	}
	return gw_coap_bucket_take(&e->bucket, gw_loop_now(co->w->loop),
				   c->coap_source_rate);
}

/* ==== Devices ==== */

/* The device of session s into out: "coap-anonymous" on plain CoAP, the
 * PSK identity with DTLS while the device tokens still hold it with the
 * same key (a reload may have removed it). false when not. */
static bool device_of(gw_coap *co, const coap_session_t *s, bool dtls,
		      char *out, size_t cap)
{
	const coap_bin_const_t *id, *key;
	const uint8_t *k;
	size_t kl;
	const char *why;

	if (!dtls) {
		snprintf(out, cap, "%s", ANON_DEVICE);
		return true;
	}
	id = coap_session_get_psk_identity(s);
	key = coap_session_get_psk_key(s);
	if (id == NULL || key == NULL || id->length >= cap ||
	    gw_tokens_psk(co->w->tokens, (const char *)id->s, id->length, &k,
			  &kl, &why) != 0 ||
	    kl != key->length || CRYPTO_memcmp(k, key->s, kl) != 0) {
		if (id != NULL)
			gw_format(out, cap, "%.*s",
				  (int)(id->length < cap ? id->length : cap - 1),
				  (const char *)id->s);
		return false;
	}
	memcpy(out, id->s, id->length);
	out[id->length] = '\0';
	return true;
}

/* libcoap asks for the key of a PSK identity (during a handshake, on this
 * loop): the device's from this loop's tokens, or NULL (no session). */
static const coap_bin_const_t *on_psk_identity(coap_bin_const_t *identity,
					       coap_session_t *s, void *arg)
{
	gw_coap *co = arg;
	const uint8_t *k;
	size_t kl;
	const char *why;

	(void)s;
	if (identity == NULL ||
	    gw_tokens_psk(co->w->tokens, (const char *)identity->s,
			  identity->length, &k, &kl, &why) != 0) {
		gw_log_fields f = GW_LOG_FIELDS_INIT;
		char dev[64];

		gw_format(dev, sizeof(dev), "%.*s",
			  identity ? (int)(identity->length < 63 ? identity->length : 63) : 0,
			  identity ? (const char *)identity->s : "");
		f.device = dev;
		f.transport = "coaps";
		f.error = why;
		gw_log(GW_LOG_WARN, "coaps: DTLS handshake refused", &f);
		gw_metrics_coap_handshake(false);
		return NULL;
	}
	memcpy(co->psk_buf, k, kl);
	co->psk_out.s = co->psk_buf;
	co->psk_out.length = kl;
	return &co->psk_out;
}

static int on_event(coap_session_t *s, const coap_event_t ev)
{
	(void)s;
	if (ev == COAP_EVENT_DTLS_CONNECTED)
		gw_metrics_coap_handshake(true);
	else if (ev == COAP_EVENT_DTLS_ERROR)
		gw_metrics_coap_dtls_error();
	return 0;
}

/* ==== Answers into PDUs ==== */

/* Options (in number order) and payload of a onto pdu. */
static void pdu_fill(coap_pdu_t *pdu, const gw_coap_answer *a)
{
	uint8_t buf[8];

	coap_pdu_set_code(pdu, (coap_pdu_code_t)COAP_RESPONSE_CODE(a->code));
	if (a->max_age >= 0)
		coap_add_option(pdu, COAP_OPTION_MAXAGE,
				coap_encode_var_safe(buf, sizeof(buf),
						     (unsigned)a->max_age), buf);
	if (a->block1 >= 0)
		coap_add_option(pdu, COAP_OPTION_BLOCK1,
				coap_encode_var_safe(buf, sizeof(buf),
						     (unsigned)a->block1), buf);
	if (a->size1 >= 0)
		coap_add_option(pdu, COAP_OPTION_SIZE1,
				coap_encode_var_safe(buf, sizeof(buf),
						     (unsigned)a->size1), buf);
	if (a->len > 0)
		coap_add_data(pdu, a->len, a->payload);
}

/* Leaves the handler's response empty: libcoap sends nothing. */
static void hold_back(coap_pdu_t *resp)
{
	coap_pdu_set_type(resp, COAP_MESSAGE_NON);
	coap_pdu_set_code(resp, (coap_pdu_code_t)0);
}

/* ==== Exchanges ==== */

static const char *transport(bool dtls)
{
	return dtls ? "coaps" : "coap";
}

/* Logs and counts the exchange, lets it go. */
static void cx_free(cx *x, const gw_coap_answer *a)
{
	gw_coap *co = x->co;
	gw_worker *w = co->w;
	gw_log_fields f = GW_LOG_FIELDS_INIT;
	double dt = now_s() - x->t0;

	gw_metrics_coap_request(x->dtls, x->res, a ? a->code : 0, dt);
	f.request_id = x->id;
	f.route = x->res == GW_COAP_RES_UPDATE ? "u"
		  : x->res == GW_COAP_RES_BATCH ? "b" : "other";
	f.transport = transport(x->dtls);
	f.session_id = x->sid[0] ? x->sid : NULL;
	f.device = x->device[0] ? x->device : NULL;
	f.status = a ? a->code : 0;
	f.latency_ms = dt * 1000.0;
	f.bytes_in = (long)x->bytes_in;
	f.bytes_out = a ? (long)a->len : -1;
	f.attempts = x->attempts ? x->attempts : -1;
	f.error = a && a->error[0] ? a->error : NULL;
	gw_log(a == NULL || a->code >= 500 ? GW_LOG_WARN
	       : a->code == 231 ? GW_LOG_DEBUG : GW_LOG_INFO, "request", &f);
	gw_timer_stop(w->loop, &x->ack_timer);
	coap_session_release(x->session);
	gw_metrics_inflight(-1);
	gw_server_inflight(w->s, -1);
	w->busy--;
	free(x);
}

/* Records how message x was answered, for its retransmissions. */
static void mid_record(cx *x, gw_coap_mid_state st, const gw_coap_answer *a)
{
	gw_coap *co = x->co;
	gw_coap_mid *m = gw_coap_mid_find(co->dedup, x->src, x->src_len, x->mid);

	if (m == NULL)
		m = gw_coap_mid_add(co->dedup, x->src, x->src_len, x->mid,
				    gw_loop_now(co->w->loop));
	if (m == NULL)
		return;
	m->state = st;
	if (st == GW_MID_ANSWERED && a != NULL &&
	    gw_coap_answer_copy(&m->answer, a) != 0)
		m->state = GW_MID_ACKED; /* no memory: an empty ACK, then */
}

/* Plain CoAP: no answer larger than its request (a spoofed source would
 * make the gateway a reflector). DTLS sources passed the cookie exchange. */
static void bound(const cx *x, gw_coap_answer *a)
{
	/* an Ack answers a whole valid batch, about its size: kept */
	if (!x->dtls && !(a->code == 204 && x->res == GW_COAP_RES_BATCH))
		gw_coap_answer_shrink(a, x->max_payload);
}

/* Answers x in the handler's response (piggybacked) and ends it. */
static void cx_answer_now(cx *x, coap_pdu_t *resp, gw_coap_answer *a)
{
	if (x->block1 >= 0 && a->block1 < 0 && a->code != 231)
		a->block1 = x->block1;
	bound(x, a);
	pdu_fill(resp, a);
	mid_record(x, GW_MID_ANSWERED, a);
	cx_free(x, a);
}

/* Answers x once its outcome is known: piggybacked if nothing was sent
 * yet (ACK, same message id), else a separate response (a new
 * confirmable message with the request's token). */
static void cx_answer(cx *x, const gw_coap_answer *ans)
{
	gw_coap_answer a;
	coap_pdu_t *pdu;
	bool piggy = x->state == CX_QUIET && x->type == COAP_MESSAGE_CON;
	coap_pdu_type_t type;
	int mid;

	gw_coap_answer_init(&a);
	if (gw_coap_answer_copy(&a, ans) != 0)
		a.len = 0; /* no memory: the code alone */
	a.block1 = x->block1 >= 0 ? x->block1 : ans->block1;
	bound(x, &a);
	if (piggy) {
		type = COAP_MESSAGE_ACK;
		mid = x->mid;
	} else {
		type = x->type == COAP_MESSAGE_CON ? COAP_MESSAGE_CON
						   : COAP_MESSAGE_NON;
		mid = coap_new_message_id(x->session);
		if (x->state == CX_ACKED)
			gw_metrics_coap_separate(x->dtls);
	}
	pdu = coap_pdu_init(type, (coap_pdu_code_t)0, (coap_mid_t)mid,
			    coap_session_max_pdu_size(x->session));
	if (pdu != NULL && coap_add_token(pdu, x->token_len, x->token)) {
		pdu_fill(pdu, &a);
		if (coap_send(x->session, pdu) == COAP_INVALID_MID)
			gw_log(GW_LOG_DEBUG, "coap: the answer could not be sent", NULL);
	} else {
		coap_delete_pdu(pdu);
	}
	if (piggy || x->type != COAP_MESSAGE_CON)
		mid_record(x, GW_MID_ANSWERED, &a);
	else
		mid_record(x, GW_MID_ACKED, NULL);
	cx_free(x, &a);
	gw_coap_answer_free(&a);
}

/* The piggyback window is over: an empty ACK now, the answer later. */
static void on_ack_timer(void *ud)
{
	cx *x = ud;
	coap_pdu_t *pdu;

	if (x->state != CX_QUIET)
		return;
	pdu = coap_pdu_init(COAP_MESSAGE_ACK, (coap_pdu_code_t)0,
			    (coap_mid_t)x->mid, 4);
	if (pdu != NULL)
		coap_send(x->session, pdu);
	x->state = CX_ACKED;
	mid_record(x, GW_MID_ACKED, NULL);
}

/* x waits for its work: nothing in the handler's response; the ACK
 * timer starts for a confirmable message. */
static void cx_wait(cx *x, coap_pdu_t *resp)
{
	hold_back(resp);
	if (x->type == COAP_MESSAGE_CON &&
	    gw_timer_start(x->co->w->loop, &x->ack_timer, PIGGYBACK_MS) != 0)
		on_ack_timer(x);
}

/* ==== Work ==== */

static void work_free(work *wk)
{
	if (wk == NULL)
		return;
	gw_coap_answer_free(&wk->answer);
	gw_coap_update_free(&wk->up);
	gw_batch_run_free(wk->run);
	free(wk->orig);
	free(wk->pre);
	free(wk->pre_msg);
	free(wk->seqs);
	free(wk);
}

/* The work is over: its answer to every waiter, then it goes. */
static void work_done(work *wk)
{
	gw_coap *co = wk->co;
	cx *x = wk->waiters;

	if (wk->seq != NULL) {
		pending *p = wk->seq->work;

		gw_coap_seq_done(co->dedup, wk->seq, &wk->answer,
				 gw_loop_now(co->w->loop));
		free(p);
		wk->seq = NULL;
	}
	wk->waiters = NULL;
	while (x != NULL) {
		cx *next = x->next;

		cx_answer(x, &wk->answer);
		x = next;
	}
	co->w->busy--;
	work_free(wk);
}

static work *work_new(gw_coap *co, gw_coap_res res)
{
	work *wk = calloc(1, sizeof(*wk));

	if (wk == NULL)
		return NULL;
	wk->co = co;
	wk->res = res;
	gw_coap_answer_init(&wk->answer);
	gw_coap_update_init(&wk->up);
	co->w->busy++;
	return wk;
}

/* A 5.03 for the gateway's own trouble (no memory, the store closing). */
static void answer_busy(gw_coap_answer *a, const char *why)
{
	gw_refusal no;

	memset(&no, 0, sizeof(no));
	no.status = 503;
	no.reason = "other";
	no.code = "unavailable";
	no.hname = "Retry-After";
	no.hval = "5";
	gw_format(no.message, sizeof(no.message), "%s", why);
	gw_coap_answer_refusal(a, &no);
}

/* Direct mode: the upstream's answer to a /u. */
static void on_patched(void *ud, gw_response *resp)
{
	work *wk = ud;
	cx *x;

	if (gw_coap_answer_upstream(&wk->answer, resp) != 0)
		answer_busy(&wk->answer, "out of memory");
	for (x = wk->waiters; x; x = x->next)
		x->attempts += resp->attempts;
	gw_response_free(resp);
	work_done(wk);
}

/* Spool mode: the commit of a /u. */
static void on_stored(void *arg, int result, const char *err)
{
	work *wk = arg;

	if (gw_coap_answer_stored(&wk->answer, result, err) != 0)
		answer_busy(&wk->answer, "out of memory");
	work_done(wk);
}

/* POST /u: the envelope forwarded or stored once, answered to every
 * message that carries it. */
static void start_update(cx *x, coap_pdu_t *resp, const uint8_t *p,
			 size_t n)
{
	gw_coap *co = x->co;
	gw_worker *w = co->w;
	gw_coap_update up;
	gw_coap_answer a;
	gw_refusal no;
	gw_coap_seq *seq;
	work *wk;
	pending *pd;
	int rc;

	gw_coap_answer_init(&a);
	gw_coap_update_init(&up);
	rc = gw_coap_update_plan(w->c, x->device, p, n, &up, &no);
	if (up.sid[0])
		snprintf(x->sid, sizeof(x->sid), "%s", up.sid);
	if (rc != 0) {
		if (rc > 0) {
			gw_metrics_reject(no.reason);
			gw_coap_answer_refusal(&a, &no);
		} else {
			answer_busy(&a, "out of memory");
		}
		gw_coap_update_free(&up);
		cx_answer_now(x, resp, &a);
		gw_coap_answer_free(&a);
		return;
	}
	seq = gw_coap_seq_find(co->dedup, up.key);
	if (seq != NULL && memcmp(seq->digest, up.digest, sizeof(up.digest)) == 0) {
		if (seq->done) {
			/* sent before, answered: the same answer */
			gw_metrics_coap_duplicate(x->dtls, true);
			gw_coap_update_free(&up);
			gw_coap_answer_copy(&a, &seq->answer);
			cx_answer_now(x, resp, &a);
			gw_coap_answer_free(&a);
			return;
		}
		pd = seq->work;
		if (pd != NULL && pd->item == ITEM_UPDATE) {
			/* on its way: this message waits for the same answer */
			gw_metrics_coap_duplicate(x->dtls, true);
			gw_coap_update_free(&up);
			x->next = pd->w->waiters;
			pd->w->waiters = x;
			cx_wait(x, resp);
			return;
		}
	}
	if (seq != NULL && !seq->done) {
		/* another copy (or another update with this seq) is under way
		 * in a batch: nothing forwarded twice; resend soon */
		gw_refusal busy;

		memset(&busy, 0, sizeof(busy));
		busy.status = 503;
		busy.code = "in_progress";
		busy.hname = "Retry-After";
		busy.hval = "1";
		gw_format(busy.message, sizeof(busy.message),
			  "an update with seq %llu of this session is being worked on; resend it after that one's answer",
			  (unsigned long long)up.seq);
		gw_coap_update_free(&up);
		gw_coap_answer_refusal(&a, &busy);
		cx_answer_now(x, resp, &a);
		gw_coap_answer_free(&a);
		return;
	}
	wk = work_new(co, GW_COAP_RES_UPDATE);
	pd = calloc(1, sizeof(*pd));
	if (wk == NULL || pd == NULL) {
		free(pd);
		if (wk != NULL) {
			w->busy--;
			work_free(wk);
		}
		gw_coap_update_free(&up);
		answer_busy(&a, "out of memory");
		cx_answer_now(x, resp, &a);
		gw_coap_answer_free(&a);
		return;
	}
	wk->up = up;
	pd->w = wk;
	pd->item = ITEM_UPDATE;
	wk->seq = gw_coap_seq_add(co->dedup, up.key, up.digest, pd,
				  gw_loop_now(w->loop));
	if (wk->seq == NULL)
		free(pd); /* no memory for the table: worked on anyway */
	wk->waiters = x;
	gw_metrics_bytes(up.update_len, up.json.len);
	cx_wait(x, resp);
	if (w->store == NULL) {
		if (gw_uplink_patch(w->ul, wk->up.path.data, wk->up.json.data,
				    wk->up.json.len, true, on_patched, wk) != 0) {
			answer_busy(&wk->answer, "out of memory");
			work_done(wk);
		}
		return;
	}
	{
		gw_store_rec rec;

		memset(&rec, 0, sizeof(rec));
		rec.sid = wk->up.sid_text.data;
		rec.sid_len = wk->up.sid_text.len;
		rec.seq = wk->up.seq;
		rec.path = wk->up.path.data;
		rec.json = wk->up.json.data;
		rec.json_len = wk->up.json.len;
		if (w->store->ops->put(w->store, w->loop, &rec, 1, on_stored,
				       wk) != 0)
			on_stored(wk, GW_STORE_ERROR, "the store is closing or out of memory; nothing was stored");
	}
}

/* A batch item's Result as the answer a /u of the same envelope gets. */
static void answer_of_result(gw_coap_answer *a, const sw_result *r)
{
	gw_response resp;

	memset(&resp, 0, sizeof(resp));
	resp.status = (int)r->status;
	resp.retry_after_ms = r->has_retry_after ? (long)r->retry_after_ms : -1;
	resp.curl_code = r->status == 0 ? GW_CURL_NOT_STARTED : 0;
	if (r->status == 202) {
		gw_coap_answer_stored(a, GW_STORE_OK, NULL);
		return;
	}
	if (r->status == 507 || r->status == 0) {
		a->final = false; /* not kept */
		return;
	}
	resp.body = (char *)(uintptr_t)r->message.ptr;
	resp.body_len = r->message.len;
	gw_coap_answer_upstream(a, &resp);
}

/* The batch's Results (forwarded ones and those answered before) as the
 * Ack; each forwarded item's answer kept for its envelope. */
static void on_batch_done(void *ud, gw_batch_run *run)
{
	work *wk = ud;
	gw_coap *co = wk->co;
	const sw_result *res;
	sw_result *all;
	size_t n, i;
	cx *x;

	res = gw_batch_results(run, &n);
	for (x = wk->waiters; x; x = x->next)
		x->attempts += gw_batch_attempts(run);
	all = calloc(wk->n_all ? wk->n_all : 1, sizeof(*all));
	if (all == NULL) {
		answer_busy(&wk->answer, "out of memory");
	} else {
		for (i = 0; i < wk->n_all; i++)
			all[i] = wk->pre[i];
		for (i = 0; i < n && i < wk->n_fwd; i++)
			all[wk->orig[i]] = res[i];
		if (gw_coap_answer_ack(&wk->answer, all, wk->n_all,
				       GW_COAP_PAYLOAD_MAX) != 0)
			answer_busy(&wk->answer, "out of memory");
		if (gw_batch_error(run)[0])
			gw_format(wk->answer.error, sizeof(wk->answer.error),
				  "%s", gw_batch_error(run));
	}
	for (i = 0; i < wk->n_fwd; i++) {
		gw_coap_answer a;

		if (wk->seqs[i] == NULL)
			continue;
		free(wk->seqs[i]->work);
		gw_coap_answer_init(&a);
		if (i < n)
			answer_of_result(&a, &res[i]);
		gw_coap_seq_done(co->dedup, wk->seqs[i], &a,
				 gw_loop_now(co->w->loop));
		gw_coap_answer_free(&a);
		wk->seqs[i] = NULL;
	}
	free(all);
	work_done(wk);
}

/* Answers a refusal of the whole request now. */
static void refuse_now(cx *x, coap_pdu_t *resp, const gw_refusal *no)
{
	gw_coap_answer a;

	gw_coap_answer_init(&a);
	if (no->reason)
		gw_metrics_reject(no->reason);
	if (gw_coap_answer_refusal(&a, no) != 0)
		a.code = no->status;
	if (a.code == 413)
		a.size1 = (long)x->co->w->c->max_body; /* RFC 7959 4: the limit */
	cx_answer_now(x, resp, &a);
	gw_coap_answer_free(&a);
}

/* POST /b: request.c's plan, items sent before answered from the table,
 * the rest through batch.c. */
static void start_batch(cx *x, coap_pdu_t *resp, const uint8_t *p, size_t n)
{
	gw_coap *co = x->co;
	gw_worker *w = co->w;
	gw_config cc = *w->c;
	gw_refusal no;
	gw_batch b;
	work *wk;
	size_t i, k;
	int rc;

	if (cc.max_batch_items > GW_COAP_BATCH_MAX)
		cc.max_batch_items = GW_COAP_BATCH_MAX;
	memset(&b, 0, sizeof(b));
	rc = gw_batch_plan(&cc, p, n, &b, &no);
	if (rc == 413)
		gw_format(no.message, sizeof(no.message),
			  "more than %zu updates in one CoAP batch (its Ack must fit one datagram)",
			  cc.max_batch_items);
	if (rc != 0) {
		gw_batch_free(&b);
		if (rc < 0) {
			memset(&no, 0, sizeof(no));
			no.status = 503;
			no.code = "unavailable";
			no.hname = "Retry-After";
			no.hval = "5";
			gw_format(no.message, sizeof(no.message), "out of memory");
		}
		refuse_now(x, resp, &no);
		return;
	}
	wk = work_new(co, GW_COAP_RES_BATCH);
	if (wk != NULL) {
		wk->n_all = b.n;
		wk->orig = calloc(b.n ? b.n : 1, sizeof(*wk->orig));
		wk->pre = calloc(b.n ? b.n : 1, sizeof(*wk->pre));
		wk->pre_msg = calloc(b.n ? b.n : 1, sizeof(*wk->pre_msg));
		wk->seqs = calloc(b.n ? b.n : 1, sizeof(*wk->seqs));
	}
	if (wk == NULL || wk->orig == NULL || wk->pre == NULL ||
	    wk->pre_msg == NULL || wk->seqs == NULL) {
		if (wk != NULL) {
			w->busy--;
			work_free(wk);
		}
		gw_batch_free(&b);
		memset(&no, 0, sizeof(no));
		no.status = 503;
		no.code = "unavailable";
		no.hname = "Retry-After";
		no.hval = "5";
		gw_format(no.message, sizeof(no.message), "out of memory");
		refuse_now(x, resp, &no);
		return;
	}
	/* items in (session, seq) order: answered before, under way, or to
	 * go (kept, renumbered for batch.c) */
	for (i = 0, k = 0; i < b.n; i++) {
		gw_batch_item *it = &b.items[i];
		size_t orig = it->idx;
		uint8_t key[16], dg[8];
		gw_coap_seq *s;
		pending *pd;

		if (orig == 0)
			snprintf(x->sid, sizeof(x->sid), "%.*s",
				 (int)(it->sid_len < 127 ? it->sid_len : 127),
				 it->sid);
		wk->pre[orig].seq = it->seq;
		if (it->status == 0) {
			gw_coap_seq_key(x->device, it->sid, it->sid_len, it->seq,
					(const uint8_t *)it->json.data,
					it->json.len, key, dg);
			s = gw_coap_seq_find(co->dedup, key);
			if (s != NULL && s->done &&
			    memcmp(s->digest, dg, sizeof(dg)) == 0) {
				gw_metrics_coap_duplicate(x->dtls, true);
				wk->pre[orig].status = (uint32_t)s->answer.status;
				gw_format(wk->pre_msg[orig], sizeof(wk->pre_msg[orig]),
					  "%s", s->answer.error[0] ? s->answer.error
								   : "sent before");
				goto not_forwarded;
			}
			if (s != NULL && !s->done) {
				wk->pre[orig].status = 0;
				gw_format(wk->pre_msg[orig], sizeof(wk->pre_msg[orig]),
					  "this update is being worked on: resend it after that answer");
				goto not_forwarded;
			}
			pd = calloc(1, sizeof(*pd));
			if (pd != NULL) {
				pd->w = wk;
				pd->item = k;
				wk->seqs[k] = gw_coap_seq_add(co->dedup, key, dg, pd,
							      gw_loop_now(w->loop));
				if (wk->seqs[k] == NULL)
					free(pd);
			}
		}
		wk->orig[k] = orig;
		it->idx = k;
		if (k != i) {
			b.items[k] = *it;
			memset(it, 0, sizeof(*it));
		}
		k++;
		continue;
not_forwarded:
		wk->pre[orig].message.ptr = wk->pre_msg[orig];
		wk->pre[orig].message.len = strlen(wk->pre_msg[orig]);
		free(it->sid);
		sw_buf_free(&it->path);
		sw_buf_free(&it->json);
		memset(it, 0, sizeof(*it));
	}
	b.n = k;
	wk->n_fwd = k;
	if (k == 0) {
		/* every item answered before: the Ack at once */
		gw_batch_free(&b);
		if (gw_coap_answer_ack(&wk->answer, wk->pre, wk->n_all,
				       GW_COAP_PAYLOAD_MAX) != 0)
			answer_busy(&wk->answer, "out of memory");
		cx_answer_now(x, resp, &wk->answer);
		w->busy--;
		work_free(wk);
		return;
	}
	wk->waiters = x;
	cx_wait(x, resp);
	wk->run = gw_batch_start(w, &b, on_batch_done, wk);
	if (wk->run == NULL) {
		gw_batch_free(&b);
		answer_busy(&wk->answer, "out of memory");
		for (i = 0; i < wk->n_fwd; i++) {
			if (wk->seqs[i] != NULL) {
				free(wk->seqs[i]->work);
				gw_coap_seq_done(co->dedup, wk->seqs[i], NULL, 0);
				wk->seqs[i] = NULL;
			}
		}
		work_done(wk);
	}
}

/* ==== Block1 bodies ==== */

static blocks *blocks_find(gw_coap *co, const coap_session_t *s)
{
	blocks *b;

	for (b = co->blocks; b; b = b->next)
		if (b->session == s)
			return b;
	return NULL;
}

static void blocks_drop(gw_coap *co, blocks *b)
{
	blocks **pp = &co->blocks;

	while (*pp != NULL && *pp != b)
		pp = &(*pp)->next;
	if (*pp == b)
		*pp = b->next;
	co->n_blocks--;
	gw_coap_blocks_free(&b->b);
	coap_session_release(b->session);
	free(b);
}

/* ==== The request handler ==== */

static void on_request(coap_resource_t *r, coap_session_t *s,
		       const coap_pdu_t *req, const coap_string_t *q,
		       coap_pdu_t *resp)
{
	gw_coap *co = coap_get_app_data(coap_session_get_context(s));
	gw_worker *w = co->w;
	bool dtls = coap_session_get_proto(s) == COAP_PROTO_DTLS;
	uint8_t src[20];
	size_t src_len = source_key(s, dtls, src);
	gw_coap_mid *me;
	gw_coap_msg m;
	gw_coap_env env;
	gw_refusal no;
	const uint8_t *body;
	size_t body_len;
	blocks *bl = NULL;
	cx *x;
	int rc;

	(void)r;
	(void)q;
	if (gw_coap_msg_read(req, &m) != 0) {
		hold_back(resp);
		return;
	}
	/* a message seen before is answered from the table, never again
	 * worked on */
	me = gw_coap_mid_find(co->dedup, src, src_len, m.mid);
	if (me != NULL) {
		gw_metrics_coap_duplicate(dtls, false);
		if (me->state == GW_MID_ANSWERED) {
			pdu_fill(resp, &me->answer);
		} else if (me->state == GW_MID_ACKED &&
			   m.type == COAP_MESSAGE_CON) {
			coap_pdu_set_code(resp, (coap_pdu_code_t)0); /* empty ACK */
		} else {
			hold_back(resp);
		}
		return;
	}
	gw_coap_mid_add(co->dedup, src, src_len, m.mid, gw_loop_now(w->loop));
	x = calloc(1, sizeof(*x));
	if (x == NULL) {
		hold_back(resp); /* no answer: the device retransmits */
		return;
	}
	x->co = co;
	x->session = coap_session_reference(s);
	x->dtls = dtls;
	x->type = m.type;
	x->mid = m.mid;
	x->token_len = m.token_len;
	memcpy(x->token, m.token, m.token_len);
	memcpy(x->src, src, src_len);
	x->src_len = src_len;
	x->block1 = -1;
	x->res = m.res;
	x->bytes_in = m.payload_len;
	/* the request was at least its header, token and payload; the answer
	 * adds its own header, token, marker and up to 8 bytes of options */
	x->max_payload = m.payload_len > 8 ? m.payload_len - 8 : 0;
	x->t0 = now_s();
	gw_timer_init(&x->ack_timer, on_ack_timer, x);
	gw_server_request_id(w->s, x->id, sizeof(x->id));
	w->busy++;
	gw_metrics_inflight(1);
	memset(&env, 0, sizeof(env));
	env.c = w->c;
	env.inflight = gw_server_inflight(w->s, 1);
	env.stopping = co->stopping || gw_server_stopping(w->s);
	env.device = device_of(co, s, dtls, x->device, sizeof(x->device))
		     ? x->device : NULL;
	env.over_rate = !source_allowed(co, s, env.inflight);
	rc = gw_coap_check(&env, &m, &no);
	if (rc != 0) {
		refuse_now(x, resp, &no);
		return;
	}
	body = m.payload;
	body_len = m.payload_len;
	if (m.has_block1) {
		bl = blocks_find(co, s);
		if (bl != NULL && (bl->b.res != m.res || m.b1_num == 0)) {
			blocks_drop(co, bl); /* a new body replaces it */
			bl = NULL;
		}
		if (bl == NULL && co->n_blocks >= BLOCKS_MAX) {
			memset(&no, 0, sizeof(no));
			no.status = 503;
			no.reason = "overload";
			no.code = "overloaded";
			no.hname = "Retry-After";
			no.hval = "5";
			gw_format(no.message, sizeof(no.message),
				  "more than %d bodies arriving in blocks at once; retry later",
				  BLOCKS_MAX);
			refuse_now(x, resp, &no);
			return;
		}
		if (bl == NULL) {
			bl = calloc(1, sizeof(*bl));
			if (bl == NULL) {
				hold_back(resp);
				cx_free(x, NULL);
				return;
			}
			bl->session = coap_session_reference(s);
			gw_coap_blocks_init(&bl->b, m.res, w->c->max_body);
			bl->next = co->blocks;
			co->blocks = bl;
			co->n_blocks++;
		}
		bl->b.last_ms = gw_loop_now(w->loop);
		rc = gw_coap_blocks_put(&bl->b, &m, w->c->max_body, &no);
		if (rc == 231) {
			gw_coap_answer a;

			gw_coap_answer_init(&a);
			a.code = 231;
			a.status = 100;
			a.final = true;
			a.block1 = (long)(m.b1_num << 4 | 8 | m.b1_szx);
			cx_answer_now(x, resp, &a);
			return;
		}
		if (rc != 0) {
			gw_coap_answer a;

			blocks_drop(co, bl);
			gw_coap_answer_init(&a);
			if (no.reason)
				gw_metrics_reject(no.reason);
			gw_coap_answer_refusal(&a, &no);
			if (rc == 413)
				a.size1 = (long)w->c->max_body;
			cx_answer_now(x, resp, &a);
			gw_coap_answer_free(&a);
			return;
		}
		x->block1 = (long)(m.b1_num << 4 | m.b1_szx);
		body = (const uint8_t *)bl->b.body.data;
		body_len = bl->b.body.len;
		x->bytes_in = body_len;
		x->max_payload = body_len > 8 ? body_len - 8 : 0;
	}
	if (m.res == GW_COAP_RES_UPDATE)
		start_update(x, resp, body, body_len);
	else
		start_batch(x, resp, body, body_len);
	if (bl != NULL)
		blocks_drop(co, bl);
}

/* ==== The loop's side ==== */

static void on_ready(void *ud, uint32_t events)
{
	gw_coap *co = ud;

	(void)events;
	coap_io_process(co->ctx, COAP_IO_NO_WAIT);
}

static void on_tick(void *ud)
{
	gw_coap *co = ud;
	int64_t now = gw_loop_now(co->w->loop);
	blocks *b = co->blocks;

	gw_coap_dedup_expire(co->dedup, now);
	while (b != NULL) {
		blocks *next = b->next;

		if (now - b->b.last_ms > BLOCKS_IDLE_MS)
			blocks_drop(co, b);
		b = next;
	}
	if (!co->stopping)
		gw_timer_start(co->w->loop, &co->tick, TICK_MS);
}

static void on_start(void *arg)
{
	gw_coap *co = arg;

	gw_timer_start(co->w->loop, &co->tick, TICK_MS);
}

/* libcoap's messages: into the log at debug level (its warnings are
 * about single packets a device sent), errors as warnings. */
static void on_libcoap_log(coap_log_t level, const char *message)
{
	char msg[512];
	size_t n;

	gw_format(msg, sizeof(msg), "libcoap: %s", message);
	n = strlen(msg);
	while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
		msg[--n] = '\0';
	gw_log(level <= LOG_CRIT ? GW_LOG_WARN : GW_LOG_DEBUG, msg, NULL);
}

static pthread_once_t coap_once = PTHREAD_ONCE_INIT;

static void coap_global_init(void)
{
	coap_startup();
	coap_set_log_handler(on_libcoap_log);
	coap_set_log_level(LOG_CRIT);
	coap_dtls_set_log_level(LOG_CRIT);
}

/* The address of host:port. 0 or -1. */
static int coap_addr(const char *host, uint16_t port, coap_address_t *a)
{
	coap_address_init(a);
	if (strchr(host, ':')) {
		a->addr.sin6.sin6_family = AF_INET6;
		a->addr.sin6.sin6_port = htons(port);
		a->size = sizeof(a->addr.sin6);
		return inet_pton(AF_INET6, host, &a->addr.sin6.sin6_addr) == 1 ? 0 : -1;
	}
	a->addr.sin.sin_family = AF_INET;
	a->addr.sin.sin_port = htons(port);
	a->size = sizeof(a->addr.sin);
	return inet_pton(AF_INET, host, &a->addr.sin.sin_addr) == 1 ? 0 : -1;
}

/* The port an endpoint is bound to, from libcoap's "ADDR:PORT PROTO". */
static uint16_t endpoint_port(const coap_endpoint_t *ep)
{
	const char *s = coap_endpoint_str(ep), *sp = strchr(s, ' '), *c;
	unsigned long v;
	char *end;

	if (sp == NULL)
		sp = s + strlen(s);
	for (c = sp; c > s && c[-1] != ':'; c--)
		;
	if (c == s)
		return 0;
	v = strtoul(c, &end, 10);
	return end == sp && v <= 65535 ? (uint16_t)v : 0;
}

/* One endpoint; its port into *port. 0 or -1 with err. */
static int endpoint(gw_coap *co, bool dtls, uint16_t *port, char *err,
		    size_t errlen)
{
	const gw_config *c = co->w->c;
	const char *host = dtls ? c->coaps_host : c->coap_host;
	uint16_t want = dtls ? c->coaps_port : c->coap_port;
	coap_endpoint_t *ep;
	coap_address_t a;

	if (coap_addr(host, want, &a) != 0) {
		snprintf(err, errlen, "--%s: \"%s\" is not an IP address",
			 dtls ? "coaps-listen" : "coap-listen", host);
		return -1;
	}
	errno = 0;
	ep = coap_new_endpoint(co->ctx, &a, dtls ? COAP_PROTO_DTLS
						 : COAP_PROTO_UDP);
	if (ep == NULL) {
		snprintf(err, errlen, "cannot listen for %s on %s:%u (udp)%s%s",
			 dtls ? "CoAP over DTLS" : "CoAP", host, (unsigned)want,
			 errno ? ": " : "", errno ? strerror(errno) : "");
		return -1;
	}
	*port = endpoint_port(ep);
	if (*port == 0) {
		snprintf(err, errlen, "cannot tell the port of the CoAP endpoint (%s)",
			 coap_endpoint_str(ep));
		return -1;
	}
	return 0;
}

gw_coap *gw_coap_start(gw_worker *w, unsigned eps, uint16_t *plain_port,
		       uint16_t *dtls_port, char *err, size_t errlen)
{
	const gw_config *c = w->c;
	gw_coap *co = calloc(1, sizeof(*co));
	static const char *const paths[] = { "u", "b" };
	coap_resource_t *res;
	coap_request_t meth;
	size_t i;
	int fd;

	if (co == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	pthread_once(&coap_once, coap_global_init);
	co->w = w;
	co->io.fd = -1;
	gw_timer_init(&co->tick, on_tick, co);
	co->dedup = gw_coap_dedup_new(DEDUP_MAX, EXCHANGE_LIFETIME_MS,
				      (int64_t)c->coap_dedup_s * 1000);
	co->ctx = coap_new_context(NULL);
	if (co->dedup == NULL || co->ctx == NULL) {
		snprintf(err, errlen, "cannot create a CoAP context (out of memory)");
		goto fail;
	}
	coap_set_app_data(co->ctx, co);
	coap_register_event_handler(co->ctx, on_event);
	coap_context_set_max_idle_sessions(co->ctx, c->coap_max_sessions);
	coap_context_set_max_handshake_sessions(co->ctx, HANDSHAKES_MAX);
	coap_context_set_session_timeout(co->ctx, c->coap_session_timeout_s);
	if (eps & GW_COAP_EP_DTLS) {
		coap_dtls_spsk_t sp;

		if (!coap_dtls_is_supported()) {
			snprintf(err, errlen, "this libcoap has no DTLS support");
			goto fail;
		}
		memset(&sp, 0, sizeof(sp));
		sp.version = COAP_DTLS_SPSK_SETUP_VERSION;
		sp.validate_id_call_back = on_psk_identity;
		sp.id_call_back_arg = co;
		if (!coap_context_set_psk2(co->ctx, &sp)) {
			snprintf(err, errlen, "cannot set up DTLS with pre-shared keys");
			goto fail;
		}
	}
	if ((eps & GW_COAP_EP_PLAIN) &&
	    endpoint(co, false, plain_port, err, errlen) != 0)
		goto fail;
	if ((eps & GW_COAP_EP_DTLS) &&
	    endpoint(co, true, dtls_port, err, errlen) != 0)
		goto fail;
	/* every path and method comes to on_request, which decides (404, 405
	 * with a message, counted and logged) */
	for (i = 0; i < 3; i++) {
		res = i < 2 ? coap_resource_init(coap_make_str_const(paths[i]), 0)
			    : coap_resource_unknown_init(on_request);
		if (res == NULL) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
		for (meth = COAP_REQUEST_GET; meth <= COAP_REQUEST_IPATCH; meth++)
			coap_register_request_handler(res, meth, on_request);
		coap_add_resource(co->ctx, res);
	}
	fd = coap_context_get_coap_fd(co->ctx);
	if (fd < 0 || gw_io_start(w->loop, &co->io, fd, EPOLLIN, on_ready, co) != 0) {
		snprintf(err, errlen, "cannot watch libcoap's epoll fd (is libcoap built with epoll?)");
		goto fail;
	}
	gw_loop_post(w->loop, &co->start_post, on_start, co);
	return co;
fail:
	gw_coap_stop(co);
	return NULL;
}

void gw_coap_quiesce(gw_coap *co)
{
	if (co != NULL)
		co->stopping = true;
}

void gw_coap_stop(gw_coap *co)
{
	size_t i;

	if (co == NULL)
		return;
	co->stopping = true;
	if (co->io.fd >= 0)
		gw_io_stop(co->w->loop, &co->io);
	gw_timer_stop(co->w->loop, &co->tick);
	while (co->blocks != NULL)
		blocks_drop(co, co->blocks);
	for (i = 0; i < 256; i++)
		while (co->sources[i] != NULL) {
			source *x = co->sources[i];

			co->sources[i] = x->next;
			free(x);
		}
	if (co->ctx != NULL)
		coap_free_context(co->ctx);
	gw_coap_dedup_free(co->dedup);
	free(co);
}
