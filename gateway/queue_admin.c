/* queue_admin.c - `session-gateway queue stats|list|retry|drop --queue
 * URLS [--queue-stream NAME]`: the queue's admin command, as the spool's.
 *
 * Works on the cluster directly, with or without gateways running (its
 * calls are JetStream API requests; it never creates a stream). Output:
 * one JSON object per line.
 *
 *   stats   updates waiting (the consumers' pending and unacked), those
 *           being retried (redelivered), the oldest waiting update's age,
 *           dead letters, the stream's size and leader
 *   list    dead letters (--pending: the waiting updates, partition by
 *           partition, each from its claim: pending_from)
 *   retry   publishes dead letters again to their partition (message id
 *           retry:<dead sequence>: a retry run twice stores it once),
 *           then deletes them: they go after their session's waiting
 *           updates
 *   drop    deletes dead letters
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "queue_int.h"

#define NS_PER_S 1000000000LL

static void usage(FILE *f)
{
	fputs("usage: session-gateway queue COMMAND --queue URLS [OPTIONS]\n"
	      "Inspects and repairs the JetStream queue of --queue (stream\n"
	      "NAME and its dead letters NAME_DEAD), also while gateways run.\n\n"
	      "Commands:\n"
	      "  stats                  updates waiting, retrying, oldest age, dead\n"
	      "                         letters, the stream's size and leader\n"
	      "  list                   dead letters, one JSON object per line: id,\n"
	      "                         session_id, seq, path, attempts, status, body\n"
	      "       --pending         list the waiting updates instead\n"
	      "       --limit N         at most N lines (default 100)\n"
	      "       --json            include the stored JSON body\n"
	      "  retry --id N | --all   publish dead letters again (they go after\n"
	      "                         their session's waiting updates)\n"
	      "  drop --id N | --all    delete dead letters for good\n\n"
	      "Options:\n"
	      "  --queue URLS           nats://HOST:PORT[,...] (required)\n"
	      "  --queue-stream NAME    the stream (default SESSIONWIRE)\n"
	      "  --queue-creds FILE     NATS user credentials\n"
	      "  --queue-tls-ca FILE    CA certificates (PEM) for TLS\n"
	      "  --help                 print this help and exit\n"
	      "Exit status: 0 done, 1 error, 2 usage error.\n", f);
}

typedef gw_admin_args args;

/* Copies v into dst[cap]; false when it does not fit. */
static bool set_str(char *dst, size_t cap, const char *v)
{
	if (strlen(v) >= cap)
		return false;
	memcpy(dst, v, strlen(v) + 1);
	return true;
}

static int parse(int argc, char **argv, args *a, gw_config *c, FILE *errf)
{
	int i;

	gw_admin_args_init(a, "queue");
	for (i = 1; i < argc; i++) {
		const char *s = argv[i];

		if (!strcmp(s, "--help") || !strcmp(s, "-h"))
			return 1;
		if (!strcmp(s, "--queue") || !strcmp(s, "--queue-stream") ||
		    !strcmp(s, "--queue-creds") || !strcmp(s, "--queue-tls-ca")) {
			bool ok;

			if (i + 1 >= argc) {
				fprintf(errf, "session-gateway queue: %s needs a value\n", s);
				return -1;
			}
			if (!strcmp(s, "--queue"))
				ok = set_str(c->queue_urls, sizeof(c->queue_urls), argv[++i]);
			else if (!strcmp(s, "--queue-stream"))
				ok = set_str(c->queue_stream, sizeof(c->queue_stream), argv[++i]);
			else if (!strcmp(s, "--queue-creds"))
				ok = set_str(c->queue_creds, sizeof(c->queue_creds), argv[++i]);
			else
				ok = set_str(c->queue_tls_ca, sizeof(c->queue_tls_ca), argv[++i]);
			if (!ok) {
				fprintf(errf, "session-gateway queue: %s: too long\n", s);
				return -1;
			}
			continue;
		}
		if (gw_admin_arg(a, argc, argv, &i, errf) != 0)
			return -1;
	}
	if (gw_admin_check(a, errf) != 0)
		return -1;
	if (c->queue_urls[0] == '\0') {
		fprintf(errf, "session-gateway queue: --queue URLS is required\n");
		return -1;
	}
	return 0;
}

/* ==== Reading the cluster ==== */

typedef struct conn {
	gw_config c;
	natsOptions *o;
	natsConnection *nc;
	jsCtx *js;
	char stream[32], dead[40];
	unsigned parts;
} conn;

static int fail(FILE *errf, const char *what, natsStatus s, jsErrCode je)
{
	char err[600];

	gw_queue__js_error(err, sizeof(err), what, s, je);
	fprintf(errf, "session-gateway queue: %s\n", err);
	return 1;
}

static int open_conn(conn *k, FILE *errf)
{
	jsStreamInfo *si = NULL;
	jsErrCode je = 0;
	jsOptions jo;
	char err[600];
	natsStatus s;
	unsigned n;

	k->o = gw_queue__options(&k->c, err, sizeof(err));
	if (k->o == NULL) {
		fprintf(errf, "session-gateway queue: %s\n", err);
		return 1;
	}
	natsOptions_SetMaxReconnect(k->o, 0);
	s = natsConnection_Connect(&k->nc, k->o);
	if (s != NATS_OK) {
		snprintf(err, sizeof(err), "cannot reach the NATS cluster at %s",
			 k->c.queue_urls);
		return fail(errf, err, s, 0);
	}
	jsOptions_Init(&jo);
	jo.Wait = 10000;
	s = natsConnection_JetStream(&k->js, k->nc, &jo);
	if (s != NATS_OK)
		return fail(errf, "JetStream context", s, 0);
	snprintf(k->stream, sizeof(k->stream), "%s", k->c.queue_stream);
	snprintf(k->dead, sizeof(k->dead), "%s_DEAD", k->c.queue_stream);
	s = js_GetStreamInfo(&si, k->js, k->stream, NULL, &je);
	if (s != NATS_OK) {
		snprintf(err, sizeof(err), "no stream %s", k->stream);
		return fail(errf, err, s, je);
	}
	if (si->Config->Description == NULL ||
	    sscanf(si->Config->Description, "sessionwire updates: %u partitions",
		   &n) != 1 || n == 0) {
		fprintf(errf, "session-gateway queue: stream %s was not made by session-gateway\n",
			k->stream);
		jsStreamInfo_Destroy(si);
		return 1;
	}
	k->parts = n;
	jsStreamInfo_Destroy(si);
	return 0;
}

static void close_conn(conn *k)
{
	jsCtx_Destroy(k->js);
	if (k->nc) {
		natsConnection_FlushTimeout(k->nc, 2000);
		natsConnection_Destroy(k->nc);
	}
	natsOptions_Destroy(k->o);
}

static int cmd_stats(conn *k, FILE *out, FILE *errf)
{
	jsStreamInfo *si = NULL, *di = NULL;
	jsErrCode je = 0;
	long long depth = 0, retrying = 0, waiting_pulls = 0;
	int64_t oldest = 0;
	struct timespec ts;
	unsigned p;
	natsStatus s;
	sw_buf b;
	char tmp[64];

	s = js_GetStreamInfo(&si, k->js, k->stream, NULL, &je);
	if (s != NATS_OK)
		return fail(errf, "stream info", s, je);
	s = js_GetStreamInfo(&di, k->js, k->dead, NULL, &je);
	if (s != NATS_OK) {
		jsStreamInfo_Destroy(si);
		return fail(errf, "dead-letter stream info", s, je);
	}
	for (p = 0; p < k->parts; p++) {
		jsConsumerInfo *ci = NULL;
		char name[16], subj[64];
		long long here;

		gw_queue__consumer(p, name, sizeof(name));
		s = js_GetConsumerInfo(&ci, k->js, k->stream, name, NULL, &je);
		if (s != NATS_OK) {
			jsStreamInfo_Destroy(si);
			jsStreamInfo_Destroy(di);
			return fail(errf, "consumer info", s, je);
		}
		here = (long long)ci->NumPending + ci->NumAckPending;
		depth += here;
		retrying += ci->NumRedelivered;
		waiting_pulls += ci->NumWaiting;
		if (here > 0) {
			jsDirectGetMsgOptions dg;
			natsMsg *m = NULL;

			memset(&dg, 0, sizeof(dg));
			snprintf(subj, sizeof(subj), "%s.%u", k->stream, p);
			dg.Sequence = ci->AckFloor.Stream + 1;
			dg.NextBySubject = subj;
			if (js_DirectGetMsg(&m, k->js, k->stream, NULL, &dg) == NATS_OK) {
				int64_t t = natsMsg_GetTime(m);

				if (t > 0 && (oldest == 0 || t < oldest))
					oldest = t;
			}
			natsMsg_Destroy(m);
		}
		jsConsumerInfo_Destroy(ci);
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	sw_buf_init(&b, 0, NULL);
	gw_jl_int(&b, "depth", depth);
	gw_jl_int(&b, "retrying", retrying);
	snprintf(tmp, sizeof(tmp), "%.3f",
		 oldest > 0 ? ((double)ts.tv_sec + (double)ts.tv_nsec / 1e9) -
				      (double)oldest / 1e9 : 0.0);
	gw_jl_num(&b, "oldest_age_seconds", tmp);
	gw_jl_int(&b, "dead_letters", (long long)di->State.Msgs);
	gw_jl_int(&b, "partitions", k->parts);
	gw_jl_int(&b, "pull_requests", waiting_pulls);
	gw_jl_int(&b, "stream_messages", (long long)si->State.Msgs);
	gw_jl_int(&b, "stream_bytes", (long long)si->State.Bytes);
	gw_jl_int(&b, "replicas", si->Config->Replicas);
	gw_jl_str(&b, "leader",
		si->Cluster && si->Cluster->Leader ? si->Cluster->Leader : "",
		si->Cluster && si->Cluster->Leader ? strlen(si->Cluster->Leader) : 0);
	gw_jl_end(&b, out);
	jsStreamInfo_Destroy(si);
	jsStreamInfo_Destroy(di);
	return 0;
}

/* The session id in an upstream path (its last segment, decoded). */
static void put_sid(sw_buf *b, const char *path)
{
	const char *seg = path ? strrchr(path, '/') : NULL;
	sw_buf sid;

	sw_buf_init(&sid, 4096, NULL);
	if (seg != NULL && sw_uri_decode(seg + 1, strlen(seg + 1), &sid, NULL) == SW_OK)
		gw_jl_str(b, "session_id", sid.data ? sid.data : "", sid.len);
	else
		gw_jl_str(b, "session_id", "", 0);
	sw_buf_free(&sid);
}

static const char *hdr(natsMsg *m, const char *key)
{
	const char *v = NULL;

	return natsMsgHeader_Get(m, key, &v) == NATS_OK && v ? v : "";
}

/* Where partition p's waiting updates start: after its claim ("S W" in
 * <stream>_FWD.<p>, queue_forward.c: everything up to W went; S went
 * too once its consumer acked it); with no claim, nothing went yet. The
 * claim is exact where the consumer's ack floor is not: after
 * a kill -9 of every node an ack floor can be far behind, and a
 * passed-over update behind it. */
static uint64_t pending_from(conn *k, unsigned p, uint64_t ack_floor)
{
	char fwd[48], subj[64], val[48];
	natsMsg *m = NULL;
	uint64_t w = 0;
	natsStatus s;

	snprintf(fwd, sizeof(fwd), "%s_FWD", k->stream);
	snprintf(subj, sizeof(subj), "%s.%u", fwd, p);
	s = js_GetLastMsg(&m, k->js, fwd, subj, NULL, NULL);
	if (s == NATS_NOT_FOUND)
		return 1; /* nothing of it went yet */
	if (s != NATS_OK)
		return ack_floor + 1;
	snprintf(val, sizeof(val), "%.*s", natsMsg_GetDataLength(m),
		 natsMsg_GetData(m));
	natsMsg_Destroy(m);
	w = strtoull(val, NULL, 10);
	if (w == 0)
		return ack_floor + 1;
	return ack_floor >= w ? w + 1 : w;
}

/* The waiting updates: each partition's, from its claim on. */
static int list_pending(conn *k, const args *a, FILE *out, FILE *errf)
{
	long long lines = 0;
	unsigned p;

	for (p = 0; p < k->parts && lines < a->limit; p++) {
		jsConsumerInfo *ci = NULL;
		jsErrCode je = 0;
		char name[16], subj[64];
		uint64_t from;
		natsStatus s;

		gw_queue__consumer(p, name, sizeof(name));
		s = js_GetConsumerInfo(&ci, k->js, k->stream, name, NULL, &je);
		if (s != NATS_OK)
			return fail(errf, "consumer info", s, je);
		from = pending_from(k, p, ci->AckFloor.Stream);
		jsConsumerInfo_Destroy(ci);
		snprintf(subj, sizeof(subj), "%s.%u", k->stream, p);
		while (lines < a->limit) {
			jsDirectGetMsgOptions dg;
			natsMsg *m = NULL;
			const char *path;
			sw_buf b;

			memset(&dg, 0, sizeof(dg));
			dg.Sequence = from;
			dg.NextBySubject = subj;
			s = js_DirectGetMsg(&m, k->js, k->stream, NULL, &dg);
			if (s == NATS_NOT_FOUND)
				break;
			if (s != NATS_OK)
				return fail(errf, "reading the stream", s, 0);
			from = natsMsg_GetSequence(m) + 1;
			path = hdr(m, GW_QUEUE_HDR_PATH);
			if (path[0] == '\0') {
				natsMsg_Destroy(m); /* a nudge, no update */
				continue;
			}
			sw_buf_init(&b, 0, NULL);
			gw_jl_int(&b, "id", (long long)natsMsg_GetSequence(m));
			gw_jl_int(&b, "partition", p);
			put_sid(&b, path);
			gw_jl_int(&b, "seq", strtoll(hdr(m, GW_QUEUE_HDR_SEQ), NULL, 10));
			gw_jl_str(&b, "path", path, strlen(path));
			gw_jl_str(&b, "msg_id", hdr(m, "Nats-Msg-Id"),
				strlen(hdr(m, "Nats-Msg-Id")));
			if (a->json)
				gw_jl_str(&b, "json", natsMsg_GetData(m),
					(size_t)natsMsg_GetDataLength(m));
			gw_jl_int(&b, "arrived_ms", natsMsg_GetTime(m) / 1000000);
			gw_jl_end(&b, out);
			natsMsg_Destroy(m);
			lines++;
		}
	}
	return 0;
}

/* One dead letter: seq, its JSON object (parsed), or NULL. */
static cJSON *dead_get(conn *k, uint64_t seq, natsStatus *s, jsErrCode *je)
{
	natsMsg *m = NULL;
	cJSON *j;

	*je = 0;
	*s = js_GetMsg(&m, k->js, k->dead, seq, NULL, je);
	if (*s != NATS_OK)
		return NULL;
	j = cJSON_ParseWithLength(natsMsg_GetData(m),
				  (size_t)natsMsg_GetDataLength(m));
	natsMsg_Destroy(m);
	if (j == NULL)
		*s = NATS_ERR;
	return j;
}

static const char *jstr(const cJSON *j, const char *key)
{
	const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, key);

	return cJSON_IsString(x) ? x->valuestring : "";
}

static long long jnum(const cJSON *j, const char *key)
{
	const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, key);

	return cJSON_IsNumber(x) ? (long long)x->valuedouble : 0;
}

/* The dead stream's sequence range; first 0 when it is empty. */
static int dead_range(conn *k, uint64_t *first, uint64_t *last, FILE *errf)
{
	jsStreamInfo *si = NULL;
	jsErrCode je = 0;
	natsStatus s = js_GetStreamInfo(&si, k->js, k->dead, NULL, &je);

	if (s != NATS_OK)
		return fail(errf, "dead-letter stream info", s, je);
	*first = si->State.Msgs ? si->State.FirstSeq : 0;
	*last = si->State.LastSeq;
	jsStreamInfo_Destroy(si);
	return 0;
}

static int list_dead(conn *k, const args *a, FILE *out, FILE *errf)
{
	uint64_t first, last, seq;
	long long lines = 0;

	if (dead_range(k, &first, &last, errf) != 0)
		return 1;
	for (seq = first; first > 0 && seq <= last && lines < a->limit; seq++) {
		natsStatus s;
		jsErrCode je;
		cJSON *j = dead_get(k, seq, &s, &je);
		sw_buf b;
		const char *v;

		if (j == NULL) {
			if (s == NATS_NOT_FOUND || je == 10037)
				continue; /* deleted */
			return fail(errf, "reading a dead letter", s, je);
		}
		sw_buf_init(&b, 0, NULL);
		gw_jl_int(&b, "id", (long long)seq);
		put_sid(&b, jstr(j, "path"));
		gw_jl_int(&b, "seq", jnum(j, "seq"));
		v = jstr(j, "path");
		gw_jl_str(&b, "path", v, strlen(v));
		gw_jl_int(&b, "attempts", jnum(j, "attempts"));
		gw_jl_int(&b, "status", jnum(j, "status"));
		v = jstr(j, "body");
		gw_jl_str(&b, "body", v, strlen(v));
		if (a->json) {
			v = jstr(j, "json");
			gw_jl_str(&b, "json", v, strlen(v));
		}
		gw_jl_int(&b, "stream_seq", jnum(j, "stream_seq"));
		gw_jl_int(&b, "arrived_ms", jnum(j, "arrived_ms"));
		gw_jl_int(&b, "failed_ms", jnum(j, "failed_ms"));
		gw_jl_end(&b, out);
		cJSON_Delete(j);
		lines++;
	}
	return 0;
}

/* Publishes dead letter seq (j) to its partition again. */
static natsStatus republish(conn *k, uint64_t seq, const cJSON *j,
			    jsErrCode *je)
{
	const char *path = jstr(j, "path"), *json = jstr(j, "json");
	const char *seg = strrchr(path, '/');
	jsPubAck *pa = NULL;
	jsPubOptions po;
	natsMsg *m = NULL;
	char subj[64], id[64], dseq[24];
	sw_buf sid;
	natsStatus s;

	if (seg == NULL || path[0] != '/')
		return NATS_INVALID_ARG;
	sw_buf_init(&sid, 4096, NULL);
	if (sw_uri_decode(seg + 1, strlen(seg + 1), &sid, NULL) != SW_OK) {
		sw_buf_free(&sid);
		return NATS_INVALID_ARG;
	}
	snprintf(subj, sizeof(subj), "%s.%u", k->stream,
		 gw_queue__partition(sid.data ? sid.data : "", sid.len,
				     k->parts));
	sw_buf_free(&sid);
	snprintf(id, sizeof(id), "retry:%s:%" PRIu64, k->dead, seq);
	snprintf(dseq, sizeof(dseq), "%lld", jnum(j, "seq"));
	s = natsMsg_Create(&m, subj, NULL, json, (int)strlen(json));
	if (s == NATS_OK)
		s = natsMsgHeader_Set(m, GW_QUEUE_HDR_PATH, path);
	if (s == NATS_OK)
		s = natsMsgHeader_Set(m, GW_QUEUE_HDR_SEQ, dseq);
	jsPubOptions_Init(&po);
	po.MsgId = id;
	po.MaxWait = 10000;
	if (s == NATS_OK)
		s = js_PublishMsg(&pa, k->js, m, &po, je);
	jsPubAck_Destroy(pa);
	natsMsg_Destroy(m);
	return s;
}

static int cmd_move(conn *k, const args *a, FILE *out, FILE *errf)
{
	bool retry = !strcmp(a->cmd, "retry");
	uint64_t first, last, seq;
	long long n = 0;

	if (dead_range(k, &first, &last, errf) != 0)
		return 1;
	if (!a->all)
		first = last = (uint64_t)a->id;
	for (seq = first; first > 0 && seq <= last; seq++) {
		natsStatus s;
		jsErrCode je = 0;

		if (retry) {
			cJSON *j = dead_get(k, seq, &s, &je);

			if (j == NULL) {
				if (a->all && (s == NATS_NOT_FOUND || je == 10037))
					continue;
				if (s == NATS_NOT_FOUND || je == 10037)
					break;
				return fail(errf, "reading a dead letter", s, je);
			}
			s = republish(k, seq, j, &je);
			cJSON_Delete(j);
			if (s != NATS_OK)
				return fail(errf, "publishing a dead letter again", s, je);
		}
		s = js_DeleteMsg(k->js, k->dead, seq, NULL, &je);
		if (s == NATS_NOT_FOUND || je == 10037)
			continue;
		if (s != NATS_OK)
			return fail(errf, "deleting a dead letter", s, je);
		n++;
	}
	fprintf(out, "{\"%s\":%lld}\n", retry ? "retried" : "dropped", n);
	if (n == 0 && !a->all) {
		fprintf(errf, "session-gateway queue %s: no dead letter with id %lld\n",
			a->cmd, a->id);
		return 1;
	}
	return 0;
}

int gw_queue_admin(int argc, char **argv, FILE *out, FILE *errf)
{
	args a;
	conn k;
	int rc;

	memset(&k, 0, sizeof(k));
	gw_config_defaults(&k.c);
	rc = parse(argc, argv, &a, &k.c, errf);
	if (rc == 1) {
		usage(out);
		return 0;
	}
	if (rc != 0)
		return 2;
	rc = open_conn(&k, errf);
	if (rc == 0) {
		if (!strcmp(a.cmd, "stats"))
			rc = cmd_stats(&k, out, errf);
		else if (!strcmp(a.cmd, "list"))
			rc = a.pending ? list_pending(&k, &a, out, errf)
				       : list_dead(&k, &a, out, errf);
		else
			rc = cmd_move(&k, &a, out, errf);
	}
	close_conn(&k);
	return rc;
}
