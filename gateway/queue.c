/* queue.c - the store of --queue nats://...: a NATS JetStream cluster.
 *
 * Start-up (blocking, before the loops run): connect (libnats, reconnects
 * forever), create or check the stream STREAM (subjects STREAM.*, file
 * storage, --queue-replicas, limits retention with --queue-max-age, the
 * --queue-dedup-window, discard new), the dead-letter stream STREAM_DEAD,
 * and one durable pull consumer per partition (explicit acks, MaxAckPending
 * 1, AckWait above --upstream-timeout-ms). A stream or consumer that
 * exists with another configuration is refused with a sentence naming
 * the difference: the gateway never changes a stream under other
 * gateways' feet (it only raises a consumer's AckWait).
 *
 * Why limits retention and not a work queue: with nats-server 2.9, leader
 * changes under load left replicas of a work-queue stream disagreeing on
 * which acknowledged messages were gone, and a later leader brought them
 * back. Under limits retention the consumers' ack floors decide what is
 * done, the stream only ages messages out.
 *
 * Running: one subscription on this process's inbox (<inbox>.>) takes
 * publish acknowledgements, pull deliveries and answers for waiting JSON
 * clients. Its callback runs on a libnats thread and never works: it hands
 * each message to its loop's lane (queue_forward.c), or settles a waiter.
 * The connection's events (disconnected, reconnected, closed) set the
 * readiness /readyz reports and make the lanes pull and publish again.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "queue_int.h"

#define DEAD_DUP_WINDOW_S 600
#define API_WAIT_MS 10000
#define NS_PER_MS 1000000LL
#define NS_PER_S 1000000000LL

/* ==== Small pieces ==== */

unsigned gw_queue__partition(const void *sid, size_t n, unsigned parts)
{
	const unsigned char *p = sid;
	uint32_t h = 2166136261u;
	size_t i;

	for (i = 0; i < n; i++)
		h = (h ^ p[i]) * 16777619u;
	return parts ? h % parts : 0;
}

void gw_queue__consumer(unsigned p, char *out, size_t cap)
{
	snprintf(out, cap, "p%u", p);
}

void gw_queue__js_error(char *err, size_t errlen, const char *what,
			natsStatus s, jsErrCode jerr)
{
	const char *last = nats_GetLastError(NULL);

	if (jerr != 0)
		snprintf(err, errlen, "%s: JetStream error %d (%s)", what,
			 (int)jerr, last && *last ? last : natsStatus_GetText(s));
	else
		snprintf(err, errlen, "%s: %s", what,
			 last && *last ? last : natsStatus_GetText(s));
}

/* ==== Connection ==== */

static void on_disconnected(natsConnection *nc, void *closure)
{
	gw_queue *q = closure;
	gw_log_fields f = GW_LOG_FIELDS_INIT;

	(void)nc;
	if (atomic_load(&q->closing)) {
		atomic_store(&q->connected, false);
		return;
	}
	if (atomic_exchange(&q->connected, false)) {
		atomic_store(&q->down_since, gw_mono_ms());
		gw_metrics_queue_connected(false);
		f.error = "publishes wait or fail with 503 until it is back";
		gw_log(GW_LOG_WARN, "queue: disconnected from the NATS cluster", &f);
	}
}

static void on_reconnected(natsConnection *nc, void *closure)
{
	gw_queue *q = closure;
	char url[256] = "", msg[320];
	unsigned i;

	natsConnection_GetConnectedUrl(nc, url, sizeof(url));
	atomic_store(&q->connected, true);
	atomic_store(&q->down_since, 0);
	gw_metrics_queue_connected(true);
	snprintf(msg, sizeof(msg), "queue: reconnected to %s", url);
	gw_log(GW_LOG_INFO, msg, NULL);
	/* pull requests and unacknowledged publishes may be lost: again */
	pthread_mutex_lock(&q->mu);
	for (i = 0; i < q->n_lanes; i++) {
		gw_inmsg *im;

		if (q->lanes[i] == NULL)
			continue;
		im = calloc(1, sizeof(*im));
		if (im == NULL)
			continue;
		im->kind = GW_IN_RECONNECT;
		im->at = gw_mono_ms();
		gw_queue__lane_push(q->lanes[i], im);
	}
	pthread_mutex_unlock(&q->mu);
}

static void on_closed(natsConnection *nc, void *closure)
{
	gw_queue *q = closure;

	(void)nc;
	atomic_store(&q->connected, false);
	pthread_mutex_lock(&q->done_mu);
	q->conn_closed = true;
	pthread_cond_broadcast(&q->done_cv);
	pthread_mutex_unlock(&q->done_mu);
}

static void on_async_error(natsConnection *nc, natsSubscription *sub,
			   natsStatus err, void *closure)
{
	gw_log_fields f = GW_LOG_FIELDS_INIT;

	(void)nc;
	(void)sub;
	(void)closure;
	f.error = natsStatus_GetText(err);
	gw_log(GW_LOG_WARN, "queue: NATS connection error (lost messages are sent or pulled again)",
	       &f);
}

natsOptions *gw_queue__options(const gw_config *c, char *err, size_t errlen)
{
	natsOptions *o = NULL;
	const char *servers[64];
	char urls[sizeof(c->queue_urls)], *save = NULL, *u;
	int n = 0;
	natsStatus s;

	snprintf(urls, sizeof(urls), "%s", c->queue_urls);
	for (u = strtok_r(urls, ",", &save); u && n < 64;
	     u = strtok_r(NULL, ",", &save))
		servers[n++] = u;
	if (n == 0) {
		snprintf(err, errlen, "--queue: no server URL");
		return NULL;
	}
	s = natsOptions_Create(&o);
	if (s == NATS_OK)
		s = natsOptions_SetServers(o, servers, n);
	if (s == NATS_OK)
		s = natsOptions_SetName(o, "session-gateway");
	if (s == NATS_OK)
		s = natsOptions_SetTimeout(o, 2000);
	if (s == NATS_OK)
		s = natsOptions_SetMaxReconnect(o, -1);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectWait(o, 250);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectJitter(o, 100, 500);
	/* a publish is written by the loop that makes it: libnats's flusher
	 * thread would first sleep a millisecond, on every claim, ack and
	 * update (measured: drain 3.6k/s, publish ack 1.66 ms before) */
	if (s == NATS_OK)
		s = natsOptions_SetSendAsap(o, true);
	/* a server that stops answering without closing the socket */
	if (s == NATS_OK)
		s = natsOptions_SetPingInterval(o, 5000);
	if (s == NATS_OK)
		s = natsOptions_SetMaxPingsOut(o, 2);
	if (s == NATS_OK && c->queue_creds[0] != '\0') {
		if (access(c->queue_creds, R_OK) != 0) {
			snprintf(err, errlen, "--queue-creds %s: %s", c->queue_creds,
				 strerror(errno));
			natsOptions_Destroy(o);
			return NULL;
		}
		s = natsOptions_SetUserCredentialsFromFiles(o, c->queue_creds, NULL);
	}
	if (s == NATS_OK && c->queue_tls_ca[0] != '\0') {
		s = natsOptions_SetSecure(o, true);
		if (s == NATS_OK)
			s = natsOptions_LoadCATrustedCertificates(o, c->queue_tls_ca);
		if (s != NATS_OK) {
			gw_queue__js_error(err, errlen, "--queue-tls-ca", s, 0);
			natsOptions_Destroy(o);
			return NULL;
		}
	}
	if (s != NATS_OK) {
		gw_queue__js_error(err, errlen, "--queue options", s, 0);
		natsOptions_Destroy(o);
		return NULL;
	}
	return o;
}

/* ==== The inbox ==== */

/* Parses a decimal token at *p (up to '.' or the end); advances past it. */
static bool token_u64(const char **p, uint64_t *v)
{
	const char *s = *p;
	uint64_t x = 0;

	if (*s < '0' || *s > '9')
		return false;
	for (; *s >= '0' && *s <= '9'; s++) {
		if (x > (UINT64_MAX - 9) / 10)
			return false;
		x = x * 10 + (uint64_t)(*s - '0');
	}
	if (*s == '.')
		s++;
	else if (*s != '\0')
		return false;
	*p = s;
	*v = x;
	return true;
}

/* An answer for one of this process's waiting JSON clients, from the
 * gateway that forwarded the update. */
static void on_answer_msg(gw_queue *q, natsMsg *m)
{
	const char *v = NULL;
	uint64_t seq = 0;
	gw_response r;
	int len;

	memset(&r, 0, sizeof(r));
	r.retry_after_ms = -1;
	r.attempts = 1;
	if (natsMsgHeader_Get(m, GW_QUEUE_HDR_STREAM_SEQ, &v) != NATS_OK ||
	    !token_u64(&v, &seq) || seq == 0 || seq > INT64_MAX)
		return;
	if (natsMsgHeader_Get(m, GW_QUEUE_HDR_STATUS, &v) == NATS_OK)
		r.status = atoi(v);
	if (r.status < 100 || r.status > 599)
		return;
	if (natsMsgHeader_Get(m, GW_QUEUE_HDR_CTYPE, &v) == NATS_OK)
		snprintf(r.content_type, sizeof(r.content_type), "%s", v);
	len = natsMsg_GetDataLength(m);
	if (len > 0) {
		r.body = malloc((size_t)len + 1);
		if (r.body != NULL) {
			memcpy(r.body, natsMsg_GetData(m), (size_t)len);
			r.body[len] = '\0';
			r.body_len = (size_t)len;
		}
	}
	gw_waiters_settle(q->waiters, (int64_t)seq, &r);
	free(r.body);
}

/* libnats's delivery thread: hands the message to its lane. */
static void on_inbox(natsConnection *nc, natsSubscription *sub, natsMsg *m,
		     void *closure)
{
	gw_queue *q = closure;
	const char *subj = natsMsg_GetSubject(m), *p;
	size_t il = strlen(q->inbox);
	uint64_t a = 0, b = 0;
	gw_inmsg *im;
	unsigned loop;
	char kind;

	(void)nc;
	(void)sub;
	if (strncmp(subj, q->inbox, il) != 0 || subj[il] != '.' ||
	    subj[il + 1] == '\0') {
		/* a delivery of a pull request keeps its stream subject,
		 * STREAM.<p>: its partition is there, its request is not */
		size_t sl = strlen(q->stream);

		p = subj + sl + 1;
		if (strncmp(subj, q->stream, sl) != 0 || subj[sl] != '.' ||
		    !token_u64(&p, &a) || *p != '\0' ||
		    natsMsg_GetReply(m) == NULL) {
			natsMsg_Destroy(m);
			return;
		}
		kind = 'p';
		b = UINT64_MAX;
		goto route;
	}
	kind = subj[il + 1];
	p = subj + il + 2;
	if (kind == 'w' && *p == '\0') {
		on_answer_msg(q, m);
		natsMsg_Destroy(m);
		return;
	}
	if (*p++ != '.' || !token_u64(&p, &a) || !token_u64(&p, &b) ||
	    *p != '\0' || (kind != 'r' && kind != 'p')) {
		natsMsg_Destroy(m);
		return;
	}
route:
	im = calloc(1, sizeof(*im));
	if (im == NULL) {
		natsMsg_Destroy(m); /* lost: a timeout sends or pulls again */
		return;
	}
	im->m = m;
	im->at = gw_mono_ms();
	if (kind == 'r') {
		im->kind = GW_IN_REPLY;
		loop = (unsigned)a;
		im->a = b;
	} else {
		im->kind = GW_IN_PULL;
		im->a = a;
		im->b = b;
		loop = q->n_lanes ? (unsigned)(a % q->n_lanes) : 0;
	}
	pthread_mutex_lock(&q->mu);
	if (loop < q->n_lanes && q->lanes[loop] != NULL) {
		gw_queue__lane_push(q->lanes[loop], im);
		im = NULL;
	}
	pthread_mutex_unlock(&q->mu);
	if (im != NULL) {
		/* no lane (stopping): a delivery goes back at once */
		if (im->kind == GW_IN_PULL && natsMsg_GetReply(m) != NULL &&
		    natsMsg_GetDataLength(m) > 0)
			natsConnection_PublishString(q->nc, natsMsg_GetReply(m),
						     "-NAK");
		natsMsg_Destroy(m);
		free(im);
	}
}

static void on_sub_done(void *closure)
{
	gw_queue *q = closure;

	pthread_mutex_lock(&q->done_mu);
	q->sub_done = true;
	pthread_cond_broadcast(&q->done_cv);
	pthread_mutex_unlock(&q->done_mu);
}

/* ==== Publish acknowledgements ==== */

int gw_queue__parse_puback(natsMsg *m, const char *stream, uint64_t *seq,
			   bool *duplicate, bool *retry, int *js_err, char *err,
			   size_t errlen)
{
	const char *st = NULL;
	cJSON *j, *e, *x;
	int rc = GW_STORE_ERROR;

	*seq = 0;
	*duplicate = false;
	*retry = false;
	*js_err = 0;
	if (natsMsgHeader_Get(m, "Status", &st) == NATS_OK && st != NULL) {
		/* 503: no responders, no stream leader to store it now */
		*retry = strcmp(st, "503") == 0;
		snprintf(err, errlen, "the NATS cluster has no leader for stream %s right now (status %s)",
			 stream, st);
		return GW_STORE_ERROR;
	}
	j = cJSON_ParseWithLength(natsMsg_GetData(m),
				  (size_t)natsMsg_GetDataLength(m));
	if (j == NULL) {
		snprintf(err, errlen, "JetStream's acknowledgement is not JSON");
		return GW_STORE_ERROR;
	}
	e = cJSON_GetObjectItemCaseSensitive(j, "error");
	if (cJSON_IsObject(e)) {
		cJSON *code = cJSON_GetObjectItemCaseSensitive(e, "code");
		cJSON *ec = cJSON_GetObjectItemCaseSensitive(e, "err_code");
		cJSON *d = cJSON_GetObjectItemCaseSensitive(e, "description");
		int ecode = cJSON_IsNumber(ec) ? ec->valueint : 0;

		snprintf(err, errlen, "JetStream refused the update (error %d: %.120s)",
			 ecode, cJSON_IsString(d) ? d->valuestring : "?");
		*js_err = ecode;
		/* 10077 store failed (the stream's limits, discard new),
		 * 10023 insufficient resources: full; 503: no quorum now */
		if (ecode == 10077 || ecode == 10023)
			rc = GW_STORE_FULL;
		else
			*retry = cJSON_IsNumber(code) && code->valueint == 503;
		cJSON_Delete(j);
		return rc;
	}
	x = cJSON_GetObjectItemCaseSensitive(j, "stream");
	if (!cJSON_IsString(x) || strcmp(x->valuestring, stream) != 0) {
		snprintf(err, errlen, "JetStream stored the update in another stream than %s",
			 stream);
		cJSON_Delete(j);
		return GW_STORE_ERROR;
	}
	x = cJSON_GetObjectItemCaseSensitive(j, "seq");
	if (!cJSON_IsNumber(x) || x->valuedouble < 1 || x->valuedouble > 9e15) {
		snprintf(err, errlen, "JetStream's acknowledgement has no sequence");
		cJSON_Delete(j);
		return GW_STORE_ERROR;
	}
	*seq = (uint64_t)x->valuedouble;
	x = cJSON_GetObjectItemCaseSensitive(j, "duplicate");
	*duplicate = cJSON_IsTrue(x);
	cJSON_Delete(j);
	return GW_STORE_OK;
}

/* ==== The stream and the consumers ==== */

static void stream_config(const gw_queue *q, jsStreamConfig *sc,
			  const char **subj, char *desc, size_t dcap)
{
	const gw_config *c = q->c;

	jsStreamConfig_Init(sc);
	snprintf(desc, dcap, "sessionwire updates: %u partitions", q->n_parts);
	sc->Name = q->stream;
	sc->Description = desc;
	sc->Subjects = subj;
	sc->SubjectsLen = 1;
	sc->Retention = js_LimitsPolicy;
	sc->Storage = js_FileStorage;
	sc->Replicas = c->queue_replicas;
	sc->MaxAge = (int64_t)c->queue_max_age_s * NS_PER_S;
	sc->Duplicates = (int64_t)c->queue_dedup_s * NS_PER_S;
	sc->Discard = js_DiscardNew;
	sc->AllowDirect = true;
}

/* What differs between the stream s has and the one this gateway needs,
 * as a sentence into why; "" when nothing that matters does. */
static void stream_diff(const jsStreamConfig *have, const jsStreamConfig *want,
			const char *flag_hint, char *why, size_t cap)
{
	why[0] = '\0';
	if (have->SubjectsLen != 1 || strcmp(have->Subjects[0], want->Subjects[0]))
		snprintf(why, cap, "its subjects are not exactly %s",
			 want->Subjects[0]);
	else if (have->Retention != js_LimitsPolicy)
		snprintf(why, cap, "it has %s retention; the gateway needs limits retention (a work-queue or interest stream of nats-server 2.9 brought acknowledged updates back after leader changes)",
			 have->Retention == js_WorkQueuePolicy ? "work-queue" : "interest");
	else if (have->Storage != js_FileStorage)
		snprintf(why, cap, "it keeps messages in memory; the gateway needs file storage");
	else if (have->Replicas != want->Replicas)
		snprintf(why, cap, "it has %" PRId64 " replicas, --queue-replicas is %" PRId64,
			 have->Replicas, want->Replicas);
	else if (want->MaxAge != 0 && have->MaxAge != want->MaxAge)
		snprintf(why, cap, "its max age is %lld s, --queue-max-age is %lld s",
			 (long long)(have->MaxAge / NS_PER_S),
			 (long long)(want->MaxAge / NS_PER_S));
	else if (have->Duplicates < want->Duplicates)
		snprintf(why, cap, "its duplicate window is %lld s, shorter than --queue-dedup-window %lld s",
			 (long long)(have->Duplicates / NS_PER_S),
			 (long long)(want->Duplicates / NS_PER_S));
	else if (have->Discard != want->Discard && want->Discard == js_DiscardNew)
		snprintf(why, cap, "it discards old messages when full (the gateway needs discard new: an acknowledged update must never be dropped to make room)");
	else if ((have->MaxMsgsPerSubject > 0 ? have->MaxMsgsPerSubject : 0) !=
		 (want->MaxMsgsPerSubject > 0 ? want->MaxMsgsPerSubject : 0))
		snprintf(why, cap, "its limit of messages per subject is %" PRId64 ", not %" PRId64,
			 have->MaxMsgsPerSubject > 0 ? have->MaxMsgsPerSubject : 0,
			 want->MaxMsgsPerSubject > 0 ? want->MaxMsgsPerSubject : 0);
	else if (want->Description != NULL &&
		 (have->Description == NULL ||
		  strcmp(have->Description, want->Description) != 0))
		snprintf(why, cap, "it was made for another number of partitions (\"%.80s\"; --queue-partitions gives \"%.80s\")",
			 have->Description ? have->Description : "",
			 want->Description);
	(void)flag_hint;
}

#define PLACE_WAIT_MS 30000
#define PLACE_RETRY_MS 250

/* An answer a cluster that is still forming gives: its nodes not all
 * known yet, no meta leader, nobody answering yet. */
static bool forming(natsStatus s, jsErrCode jerr)
{
	return s == NATS_NO_RESPONDERS || s == NATS_TIMEOUT ||
	       jerr == JSClusterNoPeersErr || jerr == JSClusterNotAvailErr;
}

/* Creates the stream of sc, or checks the one there; waits up to
 * PLACE_WAIT_MS for a cluster that is still forming (started with the
 * gateway). 0 or -1 with err. */
static int ensure_stream(gw_queue *q, jsStreamConfig *sc, char *err,
			 size_t errlen)
{
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	natsStatus s;
	char why[400];
	int64_t end = gw_mono_ms() + PLACE_WAIT_MS;
	bool said = false;
	const char *op;

	for (;;) {
		jerr = 0;
		op = "cannot read";
		s = js_GetStreamInfo(&si, q->js, sc->Name, NULL, &jerr);
		if (s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr) {
			jerr = 0;
			op = "cannot create";
			s = js_AddStream(&si, q->js, sc, NULL, &jerr);
			if (s == NATS_OK) {
				jsStreamInfo_Destroy(si);
				snprintf(why, sizeof(why),
					 "queue: created stream %s (R%" PRId64 ")",
					 sc->Name, sc->Replicas);
				gw_log(GW_LOG_INFO, why, NULL);
				return 0;
			}
		}
		if (s == NATS_OK || !forming(s, jerr) || gw_mono_ms() >= end)
			break;
		if (!said) {
			snprintf(why, sizeof(why),
				 "queue: the cluster cannot place stream %s yet (%s); waiting up to %d s",
				 sc->Name, jerr ? "not all its nodes known" : "no answer",
				 PLACE_WAIT_MS / 1000);
			gw_log(GW_LOG_INFO, why, NULL);
			said = true;
		}
		jsStreamInfo_Destroy(si);
		si = NULL;
		nats_Sleep(PLACE_RETRY_MS);
	}
	if (s != NATS_OK) {
		char what[160];

		snprintf(what, sizeof(what), "%s stream %s%s", op, sc->Name,
			 said ? " (after waiting for the cluster)" : "");
		gw_queue__js_error(err, errlen, what, s, jerr);
		jsStreamInfo_Destroy(si);
		return -1;
	}
	stream_diff(si->Config, sc, NULL, why, sizeof(why));
	jsStreamInfo_Destroy(si);
	if (why[0] != '\0') {
		snprintf(err, errlen,
			 "stream %s exists with another configuration: %s. The gateway does not change a stream other gateways use: give matching --queue-* flags, or change or remove the stream with the nats tool (see session-gateway(8))",
			 sc->Name, why);
		return -1;
	}
	return 0;
}

/* Creates or checks partition p's consumer. 0 or -1 with err. */
static int ensure_consumer(gw_queue *q, unsigned p, char *err, size_t errlen)
{
	jsConsumerConfig cc;
	jsConsumerInfo *ci = NULL;
	jsErrCode jerr = 0;
	char name[16], filter[64], what[128];
	natsStatus s;
	int64_t end = gw_mono_ms() + PLACE_WAIT_MS;
	const char *op;

	gw_queue__consumer(p, name, sizeof(name));
	snprintf(filter, sizeof(filter), "%s.%u", q->stream, p);
	jsConsumerConfig_Init(&cc);
	cc.Durable = name;
	cc.Description = "sessionwire: one partition, forwarded in order";
	cc.DeliverPolicy = js_DeliverAll;
	cc.AckPolicy = js_AckExplicit;
	cc.AckWait = q->ack_wait_ms * NS_PER_MS;
	cc.MaxDeliver = -1;
	cc.FilterSubject = filter;
	cc.ReplayPolicy = js_ReplayInstant;
	cc.MaxAckPending = 1;
	cc.MaxWaiting = 512;
	/* as for the stream: a cluster that is forming or recovering (a
	 * node restarted) answers "temporarily unavailable" for a while */
	for (;;) {
		jerr = 0;
		op = "cannot read";
		s = js_GetConsumerInfo(&ci, q->js, q->stream, name, NULL, &jerr);
		if (s == NATS_NOT_FOUND || jerr == JSConsumerNotFoundErr) {
			jerr = 0;
			op = "cannot create";
			s = js_AddConsumer(&ci, q->js, q->stream, &cc, NULL, &jerr);
			if (s == NATS_OK) {
				jsConsumerInfo_Destroy(ci);
				return 0;
			}
		}
		if (s == NATS_OK || !forming(s, jerr) || gw_mono_ms() >= end)
			break;
		jsConsumerInfo_Destroy(ci);
		ci = NULL;
		nats_Sleep(PLACE_RETRY_MS);
	}
	if (s != NATS_OK) {
		snprintf(what, sizeof(what), "%s consumer %s of stream %s", op,
			 name, q->stream);
		gw_queue__js_error(err, errlen, what, s, jerr);
		jsConsumerInfo_Destroy(ci);
		return -1;
	}
	if (ci->Config->FilterSubject == NULL ||
	    strcmp(ci->Config->FilterSubject, filter) != 0 ||
	    ci->Config->AckPolicy != js_AckExplicit ||
	    ci->Config->MaxAckPending != 1 ||
	    ci->Config->DeliverSubject != NULL) {
		snprintf(err, errlen,
			 "consumer %s of stream %s exists with another configuration (the gateway needs a pull consumer on %s with explicit acks and MaxAckPending 1: one update of a partition at a time keeps each session in order); remove it only if you know its position does not matter",
			 name, q->stream, filter);
		jsConsumerInfo_Destroy(ci);
		return -1;
	}
	if (ci->Config->AckWait < cc.AckWait) {
		/* a longer AckWait only delays redeliveries after a crash;
		 * a shorter one could redeliver while this gateway forwards */
		jsConsumerInfo *ni = NULL;

		jerr = 0;
		s = js_UpdateConsumer(&ni, q->js, q->stream, &cc, NULL, &jerr);
		jsConsumerInfo_Destroy(ni);
		if (s != NATS_OK) {
			snprintf(what, sizeof(what), "cannot raise the AckWait of consumer %s of stream %s",
				 name, q->stream);
			gw_queue__js_error(err, errlen, what, s, jerr);
			jsConsumerInfo_Destroy(ci);
			return -1;
		}
	}
	jsConsumerInfo_Destroy(ci);
	return 0;
}

/* Consumers are created by SETUP_THREADS threads side by side: each is a
 * replicated group of its own, elected in about 0.4 s on a loaded
 * 3-node cluster, so 64 one after another took 28 s. */
#define SETUP_THREADS 8

typedef struct setup {
	gw_queue *q;
	unsigned first;
	int rc;
	char err[600];
} setup;

static void *setup_main(void *arg)
{
	setup *t = arg;
	unsigned p;

	for (p = t->first; p < t->q->n_parts && t->rc == 0; p += SETUP_THREADS)
		t->rc = ensure_consumer(t->q, p, t->err, sizeof(t->err));
	return NULL;
}

/* Every partition's consumer. 0 or -1 with err (the first failure). */
static int ensure_consumers(gw_queue *q, char *err, size_t errlen)
{
	setup t[SETUP_THREADS];
	pthread_t th[SETUP_THREADS];
	bool started[SETUP_THREADS];
	unsigned i;
	int rc = 0;

	for (i = 0; i < SETUP_THREADS; i++) {
		t[i].q = q;
		t[i].first = i;
		t[i].rc = 0;
		t[i].err[0] = '\0';
		started[i] = pthread_create(&th[i], NULL, setup_main, &t[i]) == 0;
		if (!started[i])
			setup_main(&t[i]);
	}
	for (i = 0; i < SETUP_THREADS; i++) {
		if (started[i])
			pthread_join(th[i], NULL);
		if (t[i].rc != 0 && rc == 0) {
			rc = -1;
			snprintf(err, errlen, "%s", t[i].err);
		}
	}
	return rc;
}

/* ==== Opening and closing ==== */

static const gw_store_ops queue_ops;

gw_queue *gw_queue_open(const gw_config *c, char *err, size_t errlen)
{
	gw_queue *q;
	jsOptions jo;
	jsStreamConfig sc;
	natsInbox *inbox = NULL;
	const char *subj[1];
	char subj_buf[64], dsubj_buf[64], fsubj_buf[64], desc[96], sub_subj[128];
	char msg[600];
	natsStatus s;
	double t0 = (double)gw_mono_ms();

	if (c->queue_urls[0] == '\0') {
		snprintf(err, errlen, "no --queue URL given");
		return NULL;
	}
	q = calloc(1, sizeof(*q));
	if (q == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	q->store.ops = &queue_ops;
	q->c = c;
	q->n_parts = c->queue_partitions ? c->queue_partitions : 1;
	snprintf(q->stream, sizeof(q->stream), "%s", c->queue_stream);
	snprintf(q->dead, sizeof(q->dead), "%s_DEAD", c->queue_stream);
	snprintf(q->fwd, sizeof(q->fwd), "%s_FWD", c->queue_stream);
	/* above one upstream attempt: JetStream redelivers an update only
	 * once a gateway that had it must have given up on it */
	q->ack_wait_ms = c->upstream_timeout_ms + 5000;
	gw_retry_policy_of(c, true, &q->policy);
	q->nonce = gw_rng_seed();
	pthread_mutex_init(&q->mu, NULL);
	pthread_mutex_init(&q->done_mu, NULL);
	pthread_cond_init(&q->done_cv, NULL);
	q->waiters = gw_waiters_new(true);
	if (q->waiters == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	q->opts = gw_queue__options(c, err, errlen);
	if (q->opts == NULL)
		goto fail;
	s = natsOptions_SetDisconnectedCB(q->opts, on_disconnected, q);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectedCB(q->opts, on_reconnected, q);
	if (s == NATS_OK)
		s = natsOptions_SetClosedCB(q->opts, on_closed, q);
	if (s == NATS_OK)
		s = natsOptions_SetErrorHandler(q->opts, on_async_error, q);
	if (s == NATS_OK)
		s = natsConnection_Connect(&q->nc, q->opts);
	if (s != NATS_OK) {
		char what[1100];

		snprintf(what, sizeof(what), "cannot reach the NATS cluster at %s",
			 c->queue_urls);
		gw_queue__js_error(err, errlen, what, s, 0);
		goto fail;
	}
	atomic_store(&q->connected, true);
	gw_metrics_queue_connected(true);
	jsOptions_Init(&jo);
	jo.Wait = API_WAIT_MS;
	s = natsConnection_JetStream(&q->js, q->nc, &jo);
	if (s != NATS_OK) {
		gw_queue__js_error(err, errlen, "JetStream context", s, 0);
		goto fail;
	}
	/* the stream, the dead letters, the consumers */
	snprintf(subj_buf, sizeof(subj_buf), "%s.*", q->stream);
	subj[0] = subj_buf;
	stream_config(q, &sc, subj, desc, sizeof(desc));
	if (ensure_stream(q, &sc, err, errlen) != 0)
		goto fail;
	snprintf(dsubj_buf, sizeof(dsubj_buf), "%s.*", q->dead);
	subj[0] = dsubj_buf;
	stream_config(q, &sc, subj, desc, sizeof(desc));
	sc.Name = q->dead;
	sc.Description = NULL;          /* not checked */
	sc.MaxAge = 0;                  /* until retried or dropped */
	sc.Duplicates = (int64_t)DEAD_DUP_WINDOW_S * NS_PER_S;
	if (ensure_stream(q, &sc, err, errlen) != 0)
		goto fail;
	/* the claims: the last sequence forwarded (or being forwarded) of
	 * each partition, one message per subject */
	snprintf(fsubj_buf, sizeof(fsubj_buf), "%s.*", q->fwd);
	subj[0] = fsubj_buf;
	stream_config(q, &sc, subj, desc, sizeof(desc));
	sc.Name = q->fwd;
	sc.Description = NULL;
	sc.MaxAge = 0;
	sc.Duplicates = 0;
	sc.MaxMsgsPerSubject = 1;
	sc.Discard = js_DiscardOld;
	sc.AllowDirect = false;
	if (ensure_stream(q, &sc, err, errlen) != 0)
		goto fail;
	if (ensure_consumers(q, err, errlen) != 0)
		goto fail;
	/* this process's inbox */
	s = natsInbox_Create(&inbox);
	if (s != NATS_OK) {
		gw_queue__js_error(err, errlen, "inbox", s, 0);
		goto fail;
	}
	snprintf(q->inbox, sizeof(q->inbox), "%s", (const char *)inbox);
	natsInbox_Destroy(inbox);
	snprintf(q->answer_subj, sizeof(q->answer_subj), "%s.w", q->inbox);
	snprintf(sub_subj, sizeof(sub_subj), "%s.>", q->inbox);
	s = natsConnection_Subscribe(&q->sub, q->nc, sub_subj, on_inbox, q);
	if (s == NATS_OK)
		s = natsSubscription_SetOnCompleteCB(q->sub, on_sub_done, q);
	/* deliveries are handed on at once: a large backlog is only a burst */
	if (s == NATS_OK)
		s = natsSubscription_SetPendingLimits(q->sub, 1 << 20, 256 << 20);
	if (s != NATS_OK) {
		gw_queue__js_error(err, errlen, "cannot subscribe to the gateway's inbox",
				   s, 0);
		goto fail;
	}
	snprintf(msg, sizeof(msg),
		 "queue: stream %s ready (R%u, %u partitions, AckWait %lld ms) in %.0f ms",
		 q->stream, c->queue_replicas, q->n_parts,
		 (long long)q->ack_wait_ms, (double)gw_mono_ms() - t0);
	gw_log(GW_LOG_INFO, msg, NULL);
	return q;
fail:
	gw_queue_close(q);
	return NULL;
}

gw_store *gw_queue_store(gw_queue *q)
{
	return q ? &q->store : NULL;
}

/* Waits (up to ms) for *flag under done_mu. */
static void wait_flag(gw_queue *q, const bool *flag, int64_t ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += (time_t)(ms / 1000);
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&q->done_mu);
	while (!*flag)
		if (pthread_cond_timedwait(&q->done_cv, &q->done_mu, &ts) != 0)
			break;
	pthread_mutex_unlock(&q->done_mu);
}

void gw_queue_close(gw_queue *q)
{
	if (q == NULL)
		return;
	atomic_store(&q->closing, true);
	if (q->sub != NULL) {
		natsSubscription_Unsubscribe(q->sub);
		wait_flag(q, &q->sub_done, 5000);
		natsSubscription_Destroy(q->sub);
	}
	if (q->nc != NULL) {
		/* acks and naks still in the buffer go out first */
		natsConnection_FlushTimeout(q->nc, 2000);
		natsConnection_Close(q->nc);
		wait_flag(q, &q->conn_closed, 5000);
		natsConnection_Destroy(q->nc);
	}
	jsCtx_Destroy(q->js);
	natsOptions_Destroy(q->opts);
	gw_waiters_free(q->waiters);
	free(q->lanes);
	pthread_cond_destroy(&q->done_cv);
	pthread_mutex_destroy(&q->done_mu);
	pthread_mutex_destroy(&q->mu);
	free(q);
}

/* ==== As a store ==== */

static gw_queue *queue_of(gw_store *st)
{
	return (gw_queue *)(void *)st;
}

static int st_put(gw_store *st, gw_loop *loop, const gw_store_rec *recs,
		  size_t n, gw_store_done_fn cb, void *arg)
{
	gw_queue *q = queue_of(st);
	unsigned idx = gw_loop_index(loop);
	gw_queue_lane *ln = NULL;

	if (n == 0 || cb == NULL)
		return -1;
	pthread_mutex_lock(&q->mu);
	if (idx < q->n_lanes)
		ln = q->lanes[idx];
	pthread_mutex_unlock(&q->mu);
	/* the lane is the loop's own: it lives while the loop runs */
	if (ln == NULL)
		return -1;
	return gw_queue__publish(ln, recs, n, cb, arg);
}

static bool st_unwait(gw_store *st, gw_waiter *w)
{
	return gw_waiters_unwait(queue_of(st)->waiters, w);
}

static int st_fwd_open(gw_store *st, unsigned n_loops, char *err,
		       size_t errlen)
{
	gw_queue *q = queue_of(st);
	gw_queue_lane **l = calloc(n_loops ? n_loops : 1, sizeof(*l));

	if (l == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	pthread_mutex_lock(&q->mu);
	free(q->lanes);
	q->lanes = l;
	q->n_lanes = n_loops;
	pthread_mutex_unlock(&q->mu);
	atomic_store(&q->quiet, false);
	return 0;
}

static void *st_lane_new(gw_store *st, unsigned idx, gw_loop *loop,
			 gw_uplink *ul, char *err, size_t errlen)
{
	gw_queue *q = queue_of(st);
	gw_queue_lane *ln;

	err[0] = '\0';
	if (idx >= q->n_lanes) {
		snprintf(err, errlen, "queue: loop %u has no lane", idx);
		return NULL;
	}
	ln = gw_queue__lane_new(q, idx, loop, ul, err, errlen);
	if (ln == NULL)
		return NULL;
	pthread_mutex_lock(&q->mu);
	q->lanes[idx] = ln;
	pthread_mutex_unlock(&q->mu);
	return ln;
}

static void st_lane_stop(void *lane)
{
	gw_queue__lane_stop(lane);
}

static bool st_lane_idle(const void *lane)
{
	return gw_queue__lane_idle(lane);
}

static void st_lane_free(void *lane)
{
	gw_queue__lane_free(lane); /* unlists itself from q->lanes first */
}

static void st_quiet(gw_store *st)
{
	atomic_store(&queue_of(st)->quiet, true);
}

static void st_fwd_close(gw_store *st)
{
	gw_queue *q = queue_of(st);

	pthread_mutex_lock(&q->mu);
	free(q->lanes);
	q->lanes = NULL;
	q->n_lanes = 0;
	pthread_mutex_unlock(&q->mu);
}

static bool st_ready(gw_store *st, char *why, size_t cap)
{
	gw_queue *q = queue_of(st);
	long long since = atomic_load(&q->down_since);

	if (atomic_load(&q->connected)) {
		if (cap > 0)
			why[0] = '\0';
		return true;
	}
	snprintf(why, cap, "not connected to the NATS cluster (%s) for %.1f s: updates get 503",
		 q->c->queue_urls,
		 since > 0 ? (double)(gw_mono_ms() - since) / 1e3 : 0.0);
	return false;
}

static const gw_store_ops queue_ops = {
	"queue", st_put, st_unwait, st_fwd_open, st_lane_new, st_lane_stop,
	st_lane_idle, st_lane_free, st_quiet, st_fwd_close, st_ready
};
