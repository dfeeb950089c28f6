/* codec.c - benchmark of the sessionwire codec: sizes and speed.
 *
 * A separate program, never a test (libuv's benchmark-*.c). Over every
 * line of VECTORS/typical.jsonl (realistic device updates) it measures:
 *
 *  - sizes: canonical JSON bytes against our compact protobuf bytes, and
 *    what each compact trick (SW_PB_PLAIN_* in sw_pb.h) buys;
 *  - speed: encode, decode, protobuf -> canonical JSON, JSON -> protobuf,
 *    sw_json_parse alone, on the update and on the session the API
 *    answers with (the update over the session's required fields, parsed
 *    as the gateway does: SW_KIND_SESSION, lenient), and the same
 *    protobuf -> JSON done the plain way (protobuf-c unpack, a cJSON
 *    tree, cJSON_PrintUnformatted) as the baseline;
 *  - number formatting: sw_num_format against snprintf("%.17g");
 *  - protobuf-c pack and unpack of the same Session messages, and nanopb
 *    encode/decode (Debian's nanopb, code generated from
 *    proto/sessionwire.proto + sessionwire.options: fixed arrays) when
 *    the Makefile found it (BENCH_HAVE_nanopb in bench_have.h).
 *
 * --callgrind N runs every pass N times without timing or checks and
 * prints "callgrind <pass function> <items>" per pass, for instruction
 * counts under valgrind --tool=callgrind (bench/run.sh).
 *
 * Every timing is the median of RUNS runs of N passes over the corpus,
 * after a warm-up, with clock_gettime(CLOCK_MONOTONIC). Every call's status
 * is checked; the first failure aborts the program with a message.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "bench_have.h"
#include "sessionwire/sessionwire.h"
#include "sessionwire.pb-c.h"
#include "bench_load.h"

#ifdef BENCH_HAVE_nanopb
#include <pb_decode.h>
#include <pb_encode.h>
#include "nanopb/sessionwire.pb.h"
#endif

#define RUNS 5
#define DEFAULT_ITERATIONS 500UL
#define MAX_ITERATIONS 100000000UL
#define N_RANDOM 1000
/* Stack buffer of the encoders: far more than any typical update needs;
 * a message that does not fit aborts the run with SW_EBUFSZ. */
#define PB_STACK 4096

typedef Sessionwire__V1__Session pb_session;

/* One line of typical.jsonl, prepared before any timing. */
typedef struct msg {
	char *json;      /* the "wire" string: canonical JSON */
	size_t json_len;
	char *session;   /* the API's answer: u over the required fields */
	size_t session_len;
	sw_update *u;    /* sw_json_parse of json */
	uint8_t *pb;     /* sw_pb_encode of u */
	size_t pb_len;
	Sessionwire__V1__Session *pc; /* protobuf-c unpack of pb */
#ifdef BENCH_HAVE_nanopb
	sessionwire_v1_Session *npb;  /* nanopb decode of pb */
#endif
	int line;
} msg;

static msg *msgs;
static size_t n_msgs;
#ifdef BENCH_HAVE_nanopb
/* Every message fits nanopb's bounds (else its timings are skipped). */
static bool npb_ok;
#endif

/* The number sets of the formatting benchmark and the one being timed. */
static double *nums_corpus;
static size_t n_nums_corpus;
static double nums_random[N_RANDOM];
static const double *num_set;
static size_t num_n;

/* Reused output buffer of the pb -> JSON benchmark. */
static sw_buf jbuf;

/* Everything measured ends up here, so nothing is optimised away. */
static volatile uint64_t sink;

/* ==== Failing loudly ==== */

/* Prints a message and exits: a benchmark must never measure errors. */
static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;

	fputs("bench-codec: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

/* Exits with the codec's error for message m. */
static void die_sw(const char *what, const msg *m, sw_status st,
		   const sw_error *err) __attribute__((noreturn));
static void die_sw(const char *what, const msg *m, sw_status st,
		   const sw_error *err)
{
	die("%s failed on typical.jsonl line %d: %s (%s) at '%s': %s", what,
	    m ? m->line : 0, sw_errname(st), sw_strerror(st),
	    err ? err->path : "", err ? err->message : "");
}

/* ==== Small helpers ==== */

/* Nanoseconds of CLOCK_MONOTONIC. */
static double now_ns(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
		die("clock_gettime: %s", strerror(errno));
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* qsort comparators. */
static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static int cmp_size(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;

	return (x > y) - (x < y);
}

/* Mean of n sizes. */
static double size_mean(const size_t *v, size_t n)
{
	double s = 0;
	size_t i;

	for (i = 0; i < n; i++)
		s += (double)v[i];
	return n ? s / (double)n : 0;
}

/* Median of n sizes (sorts a copy; mean of the middle two when even). */
static double size_median(const size_t *v, size_t n)
{
	size_t *c;
	double r;

	if (n == 0)
		return 0;
	c = malloc(n * sizeof(*c));
	if (c == NULL)
		die("out of memory");
	memcpy(c, v, n * sizeof(*c));
	qsort(c, n, sizeof(*c), cmp_size);
	r = n % 2 ? (double)c[n / 2] : ((double)c[n / 2 - 1] + (double)c[n / 2]) / 2;
	free(c);
	return r;
}

/* Parses a decimal count in 1..max; false if s is anything else. */
static bool parse_count(const char *s, unsigned long max, unsigned long *out)
{
	char *end;
	unsigned long v;

	if (s == NULL || *s < '0' || *s > '9')
		return false;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < 1 || v > max)
		return false;
	*out = v;
	return true;
}

/* ==== The corpus ==== */

/* The session the API answers for m's update, as tests/fake_upstream.c
 * makes it: the update over a default for every required field, _id the
 * line's session_id; canonical JSON into m->session. */
static void make_session(msg *m, const char *line)
{
	cJSON *root = cJSON_Parse(line);
	const cJSON *sid = cJSON_GetObjectItemCaseSensitive(root, "session_id");
	sw_update u = *m->u;
	sw_error err = { 0 };
	sw_buf b;
	sw_status st;

	if (!cJSON_IsString(sid) || sid->valuestring == NULL)
		die("typical.jsonl line %d: no session_id", m->line);
	sw_update_set_id(&u, sid->valuestring, strlen(sid->valuestring));
	if (!(u.has & SW_F_EXTERNAL_ID))
		sw_update_set_external_id(&u, "", 0);
	if (!(u.has & SW_F_DURATION))
		sw_update_set_duration(&u, 0);
	if (!(u.has & SW_F_CONTACT_IDS))
		sw_update_set_contact_ids(&u, NULL, 0);
	if (!(u.has & SW_F_BILLING))
		sw_update_set_billing(&u, 0, 0, 0);
	if (!(u.has & SW_F_USAGE))
		sw_update_set_usage(&u, 0, 0, 0);
	if (!(u.has & SW_F_TRACES_COUNT))
		sw_update_set_traces_count(&u, 0);
	if (!(u.has & SW_F_TAGS))
		sw_update_set_tags(&u, NULL, 0);
	if (!(u.has & SW_F_WORKSPACE_ID))
		sw_update_set_workspace_id(&u, "fake-workspace", 14);
	sw_buf_init(&b, 0, NULL);
	st = sw_json_write(&u, NULL, &b, &err);
	if (st != SW_OK)
		die_sw("sw_json_write (session)", m, st, &err);
	m->session = malloc(b.len + 1);
	if (m->session == NULL)
		die("out of memory");
	memcpy(m->session, b.data, b.len + 1);
	m->session_len = b.len;
	sw_buf_free(&b);
	cJSON_Delete(root);
}

/* bench_line_fn for load_corpus: keeps the "wire" string, parses it and
 * encodes it once. */
static void corpus_line(const char *path, int lineno, const char *line,
			const char *body, void *ctx)
{
	size_t *cap = ctx;
	uint8_t buf[PB_STACK];
	msg *m;
	sw_error err = { 0 };
	sw_status st;

	/* cJSON stops a string at U+0000; typical.jsonl has none. */
	if (strstr(line, "\\u0000"))
		die("%s line %d has U+0000, which cJSON cannot load", path,
		    lineno);
	if (n_msgs == *cap) {
		msg *nm;

		*cap = *cap ? *cap * 2 : 256;
		nm = realloc(msgs, *cap * sizeof(*msgs));
		if (nm == NULL)
			die("out of memory");
		msgs = nm;
	}
	m = &msgs[n_msgs++];
	memset(m, 0, sizeof(*m));
	m->line = lineno;
	m->json_len = strlen(body);
	m->json = malloc(m->json_len + 1);
	if (m->json == NULL)
		die("out of memory");
	memcpy(m->json, body, m->json_len + 1);

	sw_error_clear(&err);
	st = sw_json_parse(m->json, m->json_len, NULL, &m->u, &err);
	if (st != SW_OK)
		die_sw("sw_json_parse", m, st, &err);
	st = sw_pb_encode(m->u, buf, sizeof(buf), &m->pb_len, &err);
	if (st != SW_OK)
		die_sw("sw_pb_encode", m, st, &err);
	m->pb = malloc(m->pb_len ? m->pb_len : 1);
	if (m->pb == NULL)
		die("out of memory");
	memcpy(m->pb, buf, m->pb_len);
	m->pc = sessionwire__v1__session__unpack(NULL, m->pb_len, m->pb);
	if (m->pc == NULL)
		die("protobuf-c cannot unpack line %d", lineno);
	make_session(m, line);
}

/* Loads DIR/typical.jsonl, keeps each "wire" string, parses it and
 * encodes it once (the inputs of the benchmarks below). */
static void load_corpus(const char *dir)
{
	char path[4096];
	size_t cap = 0;

	if ((size_t)snprintf(path, sizeof(path), "%s/typical.jsonl", dir) >=
	    sizeof(path))
		die("vectors path too long");
	bench_each_line(path, 0, corpus_line, &cap);
	if (n_msgs == 0)
		die("%s has no messages", path);
}

/* Frees the corpus. */
static void free_corpus(void)
{
	size_t i;

	for (i = 0; i < n_msgs; i++) {
		free(msgs[i].json);
		free(msgs[i].session);
		free(msgs[i].pb);
		sw_update_free(msgs[i].u);
		sessionwire__v1__session__free_unpacked(msgs[i].pc, NULL);
#ifdef BENCH_HAVE_nanopb
		free(msgs[i].npb);
#endif
	}
	free(msgs);
	msgs = NULL;
	n_msgs = 0;
}

/* ==== Baseline: protobuf-c + cJSON ====
 * What one would write without this codec: unpack with protobuf-c, turn
 * the compact forms back into values (proto/sessionwire.proto, header
 * comment), build a cJSON tree with the wire names, print it. */

/* 10^s, exact as doubles for s <= 22, and the doubles nearest 10^-s. */
static const double pow10_pos[23] = {
	1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
	1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22
};
static const double pow10_neg[23] = {
	1e-0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9, 1e-10,
	1e-11, 1e-12, 1e-13, 1e-14, 1e-15, 1e-16, 1e-17, 1e-18, 1e-19, 1e-20,
	1e-21, 1e-22
};

/* The value of a *_dec field: (zigzag(m) << 6) | (mode << 5) | s. */
static double dec_value(uint64_t v)
{
	uint64_t z = v >> 6;
	int64_t m = (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
	unsigned mode = (unsigned)(v >> 5) & 1, s = (unsigned)v & 31;

	if (s < 1 || s > 22)
		die("baseline: decimal scale %u outside 1..22", s);
	if (m > ((int64_t)1 << 53) || m < -((int64_t)1 << 53))
		die("baseline: decimal mantissa over 2^53");
	return mode ? (double)m * pow10_neg[s] : (double)m / pow10_pos[s];
}

/* The value of a number oneof: which = 0 (not set: dies), 1 int, 2 dec,
 * 3 double. */
static double num_value(int which, int64_t i, uint64_t d, double x)
{
	switch (which) {
	case 1: return (double)i;
	case 2: return dec_value(d);
	case 3: return x;
	default: die("baseline: number not set");
	}
}

/* The text of an id oneof (ULID bytes, UUID bytes or text); ULIDs of 10
 * bytes take their timestamp from started_at. out holds 37 bytes. */
static const char *id_text(int which, const ProtobufCBinaryData *bin,
			   const char *text, const pb_session *s, char *out)
{
	uint8_t raw[16];
	uint64_t t;
	int i;

	switch (which) {
	case 1: /* ULID */
		if (bin->len == 16) {
			memcpy(raw, bin->data, 16);
		} else if (bin->len == 10) {
			if (!s->has_started_at || s->started_at < 0 ||
			    s->started_at >= ((int64_t)1 << 48))
				die("baseline: 10-byte ULID without started_at");
			t = (uint64_t)s->started_at;
			for (i = 5; i >= 0; i--, t >>= 8)
				raw[i] = (uint8_t)t;
			memcpy(raw + 6, bin->data, 10);
		} else {
			die("baseline: ULID of %zu bytes", bin->len);
		}
		sw_ulid_format(raw, out);
		out[SW_ULID_LEN] = '\0';
		return out;
	case 2: /* UUID */
		if (bin->len != 16)
			die("baseline: UUID of %zu bytes", bin->len);
		sw_uuid_format(bin->data, out);
		out[SW_UUID_LEN] = '\0';
		return out;
	case 3:
		return text;
	default:
		die("baseline: id not set");
	}
}

/* Adds a string member; dies when cJSON cannot allocate. */
static void add_str(cJSON *o, const char *k, const char *v)
{
	if (cJSON_AddStringToObject(o, k, v) == NULL)
		die("baseline: cJSON out of memory");
}

/* Adds a number member. */
static void add_num(cJSON *o, const char *k, double v)
{
	if (cJSON_AddNumberToObject(o, k, v) == NULL)
		die("baseline: cJSON out of memory");
}

/* Adds a date member as toISOString. */
static void add_date(cJSON *o, const char *k, int64_t ms)
{
	char d[SW_DATE_LEN + 1];

	if (sw_date_format(ms, d) != SW_DATE_LEN)
		die("baseline: %s out of range", k);
	add_str(o, k, d);
}

/* Adds an array member and returns it. */
static cJSON *add_array(cJSON *o, const char *k)
{
	cJSON *a = cJSON_AddArrayToObject(o, k);

	if (a == NULL)
		die("baseline: cJSON out of memory");
	return a;
}

/* Appends a string to an array. */
static void push_str(cJSON *a, const char *v)
{
	cJSON *it = cJSON_CreateString(v);

	if (it == NULL || !cJSON_AddItemToArray(a, it))
		die("baseline: cJSON out of memory");
}

/* Maps the generated oneof case of an id to 1 ULID, 2 UUID, 3 text. */
#define ID_KIND(c, ulid, uuid, text)                                          \
	((c) == (ulid) ? 1 : (c) == (uuid) ? 2 : (c) == (text) ? 3 : 0)
/* Maps the generated oneof case of a number to 1 int, 2 dec, 3 double. */
#define NUM_KIND(c, i, d, x) ((c) == (i) ? 1 : (c) == (d) ? 2 : (c) == (x) ? 3 : 0)

/* Fills o with the members of s, in wire order. */
static void baseline_build(cJSON *o, const pb_session *s)
{
	uint32_t flags = s->has_flags ? s->flags : 0;
	char idbuf[SW_UUID_LEN + 1];
	double duration = 0;
	int k;
	size_t i;
	cJSON *a, *sub;

	k = ID_KIND(s->id_case, SESSIONWIRE__V1__SESSION__ID_ID_ULID,
		    SESSIONWIRE__V1__SESSION__ID_ID_UUID,
		    SESSIONWIRE__V1__SESSION__ID_ID_TEXT);
	if (k)
		add_str(o, "_id", id_text(k, &s->id_ulid, s->id_text, s, idbuf));
	k = ID_KIND(s->external_id_case,
		    SESSIONWIRE__V1__SESSION__EXTERNAL_ID_EXTERNAL_ID_ULID,
		    SESSIONWIRE__V1__SESSION__EXTERNAL_ID_EXTERNAL_ID_UUID,
		    SESSIONWIRE__V1__SESSION__EXTERNAL_ID_EXTERNAL_ID_TEXT);
	if (k)
		add_str(o, "external_id",
			id_text(k, &s->external_id_ulid, s->external_id_text,
				s, idbuf));
	k = NUM_KIND(s->duration_case,
		     SESSIONWIRE__V1__SESSION__DURATION_DURATION_INT,
		     SESSIONWIRE__V1__SESSION__DURATION_DURATION_DEC,
		     SESSIONWIRE__V1__SESSION__DURATION_DURATION_DOUBLE);
	if (k) {
		duration = num_value(k, s->duration_int, s->duration_dec,
				     s->duration_double);
		add_num(o, "duration", duration);
	}
	if (flags & SESSIONWIRE__V1__FLAG__FLAG_CONTACT_IDS_EMPTY) {
		add_array(o, "contact_ids");
	} else if (s->n_contact_ids_ulid || s->n_contact_ids_text ||
		   s->n_contact_ids_uuid) {
		a = add_array(o, "contact_ids");
		for (i = 0; i < s->n_contact_ids_ulid; i++)
			push_str(a, id_text(1, &s->contact_ids_ulid[i], NULL,
					    s, idbuf));
		for (i = 0; i < s->n_contact_ids_text; i++)
			push_str(a, s->contact_ids_text[i]);
		for (i = 0; i < s->n_contact_ids_uuid; i++)
			push_str(a, id_text(2, &s->contact_ids_uuid[i], NULL,
					    s, idbuf));
	}
	if (s->billing) {
		const Sessionwire__V1__Billing *b = s->billing;
		double in, out, total;

		in = num_value(NUM_KIND(b->input_cost_case,
					SESSIONWIRE__V1__BILLING__INPUT_COST_INPUT_COST_INT,
					SESSIONWIRE__V1__BILLING__INPUT_COST_INPUT_COST_DEC,
					SESSIONWIRE__V1__BILLING__INPUT_COST_INPUT_COST_DOUBLE),
			       b->input_cost_int, b->input_cost_dec,
			       b->input_cost_double);
		out = num_value(NUM_KIND(b->output_cost_case,
					 SESSIONWIRE__V1__BILLING__OUTPUT_COST_OUTPUT_COST_INT,
					 SESSIONWIRE__V1__BILLING__OUTPUT_COST_OUTPUT_COST_DEC,
					 SESSIONWIRE__V1__BILLING__OUTPUT_COST_OUTPUT_COST_DOUBLE),
				b->output_cost_int, b->output_cost_dec,
				b->output_cost_double);
		if (b->total_cost_case == SESSIONWIRE__V1__BILLING__TOTAL_COST__NOT_SET)
			total = in + out;
		else
			total = num_value(NUM_KIND(b->total_cost_case,
						   SESSIONWIRE__V1__BILLING__TOTAL_COST_TOTAL_COST_INT,
						   SESSIONWIRE__V1__BILLING__TOTAL_COST_TOTAL_COST_DEC,
						   SESSIONWIRE__V1__BILLING__TOTAL_COST_TOTAL_COST_DOUBLE),
					  b->total_cost_int, b->total_cost_dec,
					  b->total_cost_double);
		sub = cJSON_AddObjectToObject(o, "billing");
		if (sub == NULL)
			die("baseline: cJSON out of memory");
		add_num(sub, "input_cost", in);
		add_num(sub, "output_cost", out);
		add_num(sub, "total_cost", total);
	}
	if (s->usage) {
		const Sessionwire__V1__Usage *u = s->usage;
		double p, c, total;

		p = num_value(NUM_KIND(u->prompt_tokens_case,
				       SESSIONWIRE__V1__USAGE__PROMPT_TOKENS_PROMPT_TOKENS_INT,
				       SESSIONWIRE__V1__USAGE__PROMPT_TOKENS_PROMPT_TOKENS_DEC,
				       SESSIONWIRE__V1__USAGE__PROMPT_TOKENS_PROMPT_TOKENS_DOUBLE),
			      u->prompt_tokens_int, u->prompt_tokens_dec,
			      u->prompt_tokens_double);
		c = num_value(NUM_KIND(u->completion_tokens_case,
				       SESSIONWIRE__V1__USAGE__COMPLETION_TOKENS_COMPLETION_TOKENS_INT,
				       SESSIONWIRE__V1__USAGE__COMPLETION_TOKENS_COMPLETION_TOKENS_DEC,
				       SESSIONWIRE__V1__USAGE__COMPLETION_TOKENS_COMPLETION_TOKENS_DOUBLE),
			      u->completion_tokens_int, u->completion_tokens_dec,
			      u->completion_tokens_double);
		if (u->total_tokens_case == SESSIONWIRE__V1__USAGE__TOTAL_TOKENS__NOT_SET)
			total = p + c;
		else
			total = num_value(NUM_KIND(u->total_tokens_case,
						   SESSIONWIRE__V1__USAGE__TOTAL_TOKENS_TOTAL_TOKENS_INT,
						   SESSIONWIRE__V1__USAGE__TOTAL_TOKENS_TOTAL_TOKENS_DEC,
						   SESSIONWIRE__V1__USAGE__TOTAL_TOKENS_TOTAL_TOKENS_DOUBLE),
					  u->total_tokens_int, u->total_tokens_dec,
					  u->total_tokens_double);
		sub = cJSON_AddObjectToObject(o, "usage");
		if (sub == NULL)
			die("baseline: cJSON out of memory");
		add_num(sub, "prompt_tokens", p);
		add_num(sub, "completion_tokens", c);
		add_num(sub, "total_tokens", total);
	}
	k = NUM_KIND(s->traces_count_case,
		     SESSIONWIRE__V1__SESSION__TRACES_COUNT_TRACES_COUNT_INT,
		     SESSIONWIRE__V1__SESSION__TRACES_COUNT_TRACES_COUNT_DEC,
		     SESSIONWIRE__V1__SESSION__TRACES_COUNT_TRACES_COUNT_DOUBLE);
	if (k)
		add_num(o, "traces_count",
			num_value(k, s->traces_count_int, s->traces_count_dec,
				  s->traces_count_double));
	if (flags & SESSIONWIRE__V1__FLAG__FLAG_TAGS_EMPTY) {
		add_array(o, "tags");
	} else if (s->n_tags) {
		a = add_array(o, "tags");
		for (i = 0; i < s->n_tags; i++)
			push_str(a, s->tags[i]);
	}
	k = ID_KIND(s->workspace_id_case,
		    SESSIONWIRE__V1__SESSION__WORKSPACE_ID_WORKSPACE_ID_ULID,
		    SESSIONWIRE__V1__SESSION__WORKSPACE_ID_WORKSPACE_ID_UUID,
		    SESSIONWIRE__V1__SESSION__WORKSPACE_ID_WORKSPACE_ID_TEXT);
	if (k)
		add_str(o, "workspace_id",
			id_text(k, &s->workspace_id_ulid, s->workspace_id_text,
				s, idbuf));
	k = ID_KIND(s->project_id_case,
		    SESSIONWIRE__V1__SESSION__PROJECT_ID_PROJECT_ID_ULID,
		    SESSIONWIRE__V1__SESSION__PROJECT_ID_PROJECT_ID_UUID,
		    SESSIONWIRE__V1__SESSION__PROJECT_ID_PROJECT_ID_TEXT);
	if (flags & SESSIONWIRE__V1__FLAG__FLAG_PROJECT_ID_NULL) {
		if (cJSON_AddNullToObject(o, "project_id") == NULL)
			die("baseline: cJSON out of memory");
	} else if (k) {
		add_str(o, "project_id",
			id_text(k, &s->project_id_ulid, s->project_id_text, s,
				idbuf));
	}
	if (s->has_started_at)
		add_date(o, "started_at", s->started_at);
	if (s->updated_at_case == SESSIONWIRE__V1__SESSION__UPDATED_AT_UPDATED_AT_MS) {
		add_date(o, "updated_at", s->updated_at_ms);
	} else if (s->updated_at_case ==
		   SESSIONWIRE__V1__SESSION__UPDATED_AT_UPDATED_AT_DELTA) {
		if (!s->has_started_at)
			die("baseline: updated_at delta without started_at");
		add_date(o, "updated_at", s->started_at + s->updated_at_delta);
	} else if (flags & SESSIONWIRE__V1__FLAG__FLAG_UPDATED_AT_IS_END) {
		if (!s->has_started_at || s->duration_case ==
		    SESSIONWIRE__V1__SESSION__DURATION__NOT_SET ||
		    duration != floor(duration) || fabs(duration) > 1e15)
			die("baseline: updated_at = end without an integral duration");
		add_date(o, "updated_at", s->started_at + (int64_t)duration);
	}
}

/* Protobuf bytes -> JSON text the plain way; free the result with
 * cJSON_free. With tree non-NULL the cJSON tree is handed back there
 * (cJSON_Delete it) instead of freed, for the checks. */
static char *baseline_pb_to_json(const uint8_t *pb, size_t len, cJSON **tree)
{
	pb_session *s = sessionwire__v1__session__unpack(NULL, len, pb);
	cJSON *o;
	char *out;

	if (s == NULL)
		die("baseline: protobuf-c could not unpack a message");
	o = cJSON_CreateObject();
	if (o == NULL)
		die("baseline: cJSON out of memory");
	baseline_build(o, s);
	out = cJSON_PrintUnformatted(o);
	if (out == NULL)
		die("baseline: cJSON_PrintUnformatted failed");
	if (tree)
		*tree = o;
	else
		cJSON_Delete(o);
	sessionwire__v1__session__free_unpacked(s, NULL);
	return out;
}

/* ==== Checking the baseline's values ==== */

/* True if item is the string s. */
static bool item_is_str(const cJSON *item, const sw_str *s)
{
	return cJSON_IsString(item) && item->valuestring &&
	       strlen(item->valuestring) == s->len &&
	       memcmp(item->valuestring, s->ptr, s->len) == 0;
}

/* True if item is the number x, bit for bit. */
static bool item_is_num(const cJSON *item, double x)
{
	return cJSON_IsNumber(item) &&
	       memcmp(&item->valuedouble, &x, sizeof(x)) == 0;
}

/* True if item is the date ms as toISOString. */
static bool item_is_date(const cJSON *item, int64_t ms)
{
	char d[SW_DATE_LEN + 1];

	return sw_date_format(ms, d) == SW_DATE_LEN && cJSON_IsString(item) &&
	       strcmp(item->valuestring, d) == 0;
}

/* True if item is the array of strings v[0..n). */
static bool item_is_list(const cJSON *item, const sw_str *v, size_t n)
{
	const cJSON *it;
	size_t i = 0;

	if (!cJSON_IsArray(item))
		return false;
	cJSON_ArrayForEach(it, item)
		if (i >= n || !item_is_str(it, &v[i++]))
			return false;
	return i == n;
}

/* True if item is an object of exactly the three numbers v, named k. */
static bool item_is_three(const cJSON *item, const char *const k[3],
			  const double v[3])
{
	const cJSON *it;
	int i = 0;

	if (!cJSON_IsObject(item))
		return false;
	cJSON_ArrayForEach(it, item)
		if (i >= 3 || strcmp(it->string, k[i]) != 0 ||
		    !item_is_num(it, v[i++]))
			return false;
	return i == 3;
}

/* True if the baseline's tree o holds exactly the values of u (numbers
 * bit for bit), with the wire names in wire order: the baseline decoded
 * every compact form right, whatever cJSON then prints. */
static bool tree_matches(const cJSON *o, const sw_update *u)
{
	static const char *const bk[3] = { "input_cost", "output_cost",
					   "total_cost" };
	static const char *const uk[3] = { "prompt_tokens",
					   "completion_tokens", "total_tokens" };
	const cJSON *it;
	unsigned bit = 0;
	bool ok;

	cJSON_ArrayForEach(it, o) {
		while (bit < SW_FIELD_COUNT && !(u->has & (1u << bit)))
			bit++;
		if (bit == SW_FIELD_COUNT ||
		    strcmp(it->string, sw_field_wire_name(bit)) != 0)
			return false;
		switch (1u << bit) {
		case SW_F_ID: ok = item_is_str(it, &u->id); break;
		case SW_F_EXTERNAL_ID: ok = item_is_str(it, &u->external_id); break;
		case SW_F_DURATION: ok = item_is_num(it, u->duration); break;
		case SW_F_CONTACT_IDS:
			ok = item_is_list(it, u->contact_ids, u->n_contact_ids);
			break;
		case SW_F_BILLING: ok = item_is_three(it, bk, u->billing); break;
		case SW_F_USAGE: ok = item_is_three(it, uk, u->usage); break;
		case SW_F_TRACES_COUNT:
			ok = item_is_num(it, u->traces_count);
			break;
		case SW_F_TAGS: ok = item_is_list(it, u->tags, u->n_tags); break;
		case SW_F_WORKSPACE_ID:
			ok = item_is_str(it, &u->workspace_id);
			break;
		case SW_F_PROJECT_ID:
			ok = u->project_id_null ? cJSON_IsNull(it)
						: item_is_str(it, &u->project_id);
			break;
		case SW_F_STARTED_AT: ok = item_is_date(it, u->started_at); break;
		default: ok = item_is_date(it, u->updated_at); break;
		}
		if (!ok)
			return false;
		bit++;
	}
	while (bit < SW_FIELD_COUNT && !(u->has & (1u << bit)))
		bit++;
	return bit == SW_FIELD_COUNT;
}

/* ==== One pass over the corpus per benchmark ==== */

/* sw_pb_encode: update -> bytes, into a stack buffer. */
static void pass_encode(void)
{
	uint8_t buf[PB_STACK];
	sw_error err = { 0 };
	sw_status st;
	size_t i, len;

	for (i = 0; i < n_msgs; i++) {
		st = sw_pb_encode(msgs[i].u, buf, sizeof(buf), &len, &err);
		if (st != SW_OK)
			die_sw("sw_pb_encode", &msgs[i], st, &err);
		sink += len + (len ? buf[len - 1] : 0);
	}
}

/* sw_pb_decode + sw_update_free. */
static void pass_decode(void)
{
	sw_update *u;
	sw_error err = { 0 };
	sw_status st;
	size_t i;

	for (i = 0; i < n_msgs; i++) {
		st = sw_pb_decode(msgs[i].pb, msgs[i].pb_len, NULL, &u, &err);
		if (st != SW_OK)
			die_sw("sw_pb_decode", &msgs[i], st, &err);
		sink += u->has;
		sw_update_free(u);
	}
}

/* Protobuf -> canonical JSON: decode + sw_json_write into a reused
 * buffer + free. */
static void pass_pb_to_json(void)
{
	sw_update *u;
	sw_error err = { 0 };
	sw_status st;
	size_t i;

	for (i = 0; i < n_msgs; i++) {
		st = sw_pb_decode(msgs[i].pb, msgs[i].pb_len, NULL, &u, &err);
		if (st != SW_OK)
			die_sw("sw_pb_decode", &msgs[i], st, &err);
		sw_buf_reset(&jbuf);
		st = sw_json_write(u, NULL, &jbuf, &err);
		if (st != SW_OK)
			die_sw("sw_json_write", &msgs[i], st, &err);
		sink += jbuf.len + (unsigned char)jbuf.data[jbuf.len / 2];
		sw_update_free(u);
	}
}

/* JSON -> protobuf: sw_json_parse + sw_pb_encode + free. */
static void pass_json_to_pb(void)
{
	uint8_t buf[PB_STACK];
	sw_update *u;
	sw_error err = { 0 };
	sw_status st;
	size_t i, len;

	for (i = 0; i < n_msgs; i++) {
		st = sw_json_parse(msgs[i].json, msgs[i].json_len, NULL, &u,
				   &err);
		if (st != SW_OK)
			die_sw("sw_json_parse", &msgs[i], st, &err);
		st = sw_pb_encode(u, buf, sizeof(buf), &len, &err);
		if (st != SW_OK)
			die_sw("sw_pb_encode", &msgs[i], st, &err);
		sink += len + (len ? buf[len - 1] : 0);
		sw_update_free(u);
	}
}

/* sw_json_parse + sw_update_free of the update. */
static void pass_json_parse(void)
{
	sw_update *u;
	sw_error err = { 0 };
	sw_status st;
	size_t i;

	for (i = 0; i < n_msgs; i++) {
		st = sw_json_parse(msgs[i].json, msgs[i].json_len, NULL, &u,
				   &err);
		if (st != SW_OK)
			die_sw("sw_json_parse", &msgs[i], st, &err);
		sink += u->has;
		sw_update_free(u);
	}
}

/* sw_json_parse + sw_update_free of the session answer, as the gateway
 * parses it (gateway/request.c answer_session). */
static void pass_session_parse(void)
{
	sw_parse_opts o = { .kind = SW_KIND_SESSION, .lenient = true };
	sw_update *u;
	sw_error err = { 0 };
	sw_status st;
	size_t i;

	for (i = 0; i < n_msgs; i++) {
		st = sw_json_parse(msgs[i].session, msgs[i].session_len, &o,
				   &u, &err);
		if (st != SW_OK)
			die_sw("sw_json_parse (session)", &msgs[i], st, &err);
		sink += u->has;
		sw_update_free(u);
	}
}

/* The baseline: protobuf-c unpack -> cJSON tree -> print -> free. */
static void pass_cjson(void)
{
	size_t i;
	char *s;

	for (i = 0; i < n_msgs; i++) {
		s = baseline_pb_to_json(msgs[i].pb, msgs[i].pb_len, NULL);
		/* No strlen here: it would slow the baseline down. */
		sink += (unsigned char)s[1];
		cJSON_free(s);
	}
}

/* protobuf-c pack of the unpacked message into a stack buffer. */
static void pass_pc_pack(void)
{
	uint8_t buf[PB_STACK];
	size_t i, len;

	for (i = 0; i < n_msgs; i++) {
		if (sessionwire__v1__session__get_packed_size(msgs[i].pc) > sizeof(buf))
			die("protobuf-c: line %d too large", msgs[i].line);
		len = sessionwire__v1__session__pack(msgs[i].pc, buf);
		sink += len + (len ? buf[len - 1] : 0);
	}
}

/* protobuf-c unpack + free_unpacked. */
static void pass_pc_unpack(void)
{
	Sessionwire__V1__Session *s;
	size_t i;

	for (i = 0; i < n_msgs; i++) {
		s = sessionwire__v1__session__unpack(NULL, msgs[i].pb_len, msgs[i].pb);
		if (s == NULL)
			die("protobuf-c: cannot unpack line %d", msgs[i].line);
		sink += (uint64_t)s->duration_case;
		sessionwire__v1__session__free_unpacked(s, NULL);
	}
}

#ifdef BENCH_HAVE_nanopb
/* nanopb encode of the decoded struct into a stack buffer. */
static void pass_npb_encode(void)
{
	uint8_t buf[PB_STACK];
	size_t i;

	for (i = 0; i < n_msgs; i++) {
		pb_ostream_t os = pb_ostream_from_buffer(buf, sizeof(buf));

		if (!pb_encode(&os, sessionwire_v1_Session_fields, msgs[i].npb))
			die("nanopb: cannot encode line %d: %s", msgs[i].line,
			    PB_GET_ERROR(&os));
		sink += os.bytes_written + buf[0];
	}
}

/* nanopb decode into one reused struct (no heap). */
static void pass_npb_decode(void)
{
	static sessionwire_v1_Session s;
	size_t i;

	for (i = 0; i < n_msgs; i++) {
		pb_istream_t is = pb_istream_from_buffer(msgs[i].pb, msgs[i].pb_len);

		if (!pb_decode(&is, sessionwire_v1_Session_fields, &s))
			die("nanopb: cannot decode line %d: %s", msgs[i].line,
			    PB_GET_ERROR(&is));
		sink += s.which_duration;
	}
}

/* Decodes every message with nanopb once (npb_ok false if one does not
 * fit its bounds), and checks that nanopb's own encoding of it decodes,
 * with sw_pb_decode, to the same update. */
static void npb_prepare(void)
{
	uint8_t buf[PB_STACK];
	sw_error err = { 0 };
	sw_update *u;
	size_t i;

	npb_ok = true;
	for (i = 0; i < n_msgs; i++) {
		msg *m = &msgs[i];
		pb_istream_t is = pb_istream_from_buffer(m->pb, m->pb_len);
		pb_ostream_t os = pb_ostream_from_buffer(buf, sizeof(buf));
		sw_status st;

		m->npb = calloc(1, sizeof(*m->npb));
		if (m->npb == NULL)
			die("out of memory");
		if (!pb_decode(&is, sessionwire_v1_Session_fields, m->npb)) {
			fprintf(stderr, "bench-codec: nanopb cannot decode line "
				"%d (%s): nanopb timings skipped\n", m->line,
				PB_GET_ERROR(&is));
			npb_ok = false;
			return;
		}
		if (!pb_encode(&os, sessionwire_v1_Session_fields, m->npb))
			die("nanopb: cannot encode line %d", m->line);
		st = sw_pb_decode(buf, os.bytes_written, NULL, &u, &err);
		if (st != SW_OK)
			die_sw("sw_pb_decode of nanopb's bytes", m, st, &err);
		if (!sw_update_equal(u, m->u))
			die("nanopb's bytes of line %d decode to another update",
			    m->line);
		sw_update_free(u);
	}
}
#endif

/* sw_num_format over num_set. */
static void pass_num_format(void)
{
	char out[SW_NUM_MAX];
	size_t i, n;

	for (i = 0; i < num_n; i++) {
		n = sw_num_format(num_set[i], out);
		if (n == 0)
			die("sw_num_format(%.17g) failed", num_set[i]);
		sink += n + (unsigned char)out[n - 1];
	}
}

/* snprintf("%.17g") over num_set, for comparison. */
static void pass_snprintf(void)
{
	char out[SW_NUM_MAX];
	size_t i;
	int n;

	for (i = 0; i < num_n; i++) {
		n = snprintf(out, sizeof(out), "%.17g", num_set[i]);
		if (n <= 0 || (size_t)n >= sizeof(out))
			die("snprintf(%%.17g) failed");
		sink += (unsigned)n + (unsigned char)out[n - 1];
	}
}

/* ==== Timing ==== */

/* The largest run-to-run spread seen, (max - min) / median, and where:
 * a sign of a noisy machine. */
static double worst_spread;
static const char *worst_spread_of = "";

/* ns per item of fn (one pass = items items): a warm-up of a tenth of the
 * passes, then the median of RUNS runs of iters passes. */
static double time_ns(const char *name, void (*fn)(void), unsigned long iters,
		      size_t items)
{
	double t[RUNS], t0;
	unsigned long i;
	int r;

	if (items == 0)
		return 0;
	for (i = 0; i < iters / 10 + 1; i++)
		fn();
	for (r = 0; r < RUNS; r++) {
		t0 = now_ns();
		for (i = 0; i < iters; i++)
			fn();
		t[r] = (now_ns() - t0) / ((double)iters * (double)items);
	}
	qsort(t, RUNS, sizeof(t[0]), cmp_double);
	if (t[RUNS / 2] > 0 && (t[RUNS - 1] - t[0]) / t[RUNS / 2] > worst_spread) {
		worst_spread = (t[RUNS - 1] - t[0]) / t[RUNS / 2];
		worst_spread_of = name;
	}
	return t[RUNS / 2];
}

/* ==== Number sets ==== */

/* Adds x to the corpus set when it is not integral. */
static void collect_num(double x, size_t *cap)
{
	double *nn;

	if (x == floor(x))
		return;
	if (n_nums_corpus == *cap) {
		*cap = *cap ? *cap * 2 : 256;
		nn = realloc(nums_corpus, *cap * sizeof(*nn));
		if (nn == NULL)
			die("out of memory");
		nums_corpus = nn;
	}
	nums_corpus[n_nums_corpus++] = x;
}

/* The non-integral numbers of the corpus (mostly billing costs), and
 * N_RANDOM finite doubles of uniformly random bits (fixed seed). */
static void make_num_sets(void)
{
	uint64_t x = 0x9E3779B97F4A7C15ULL, bits;
	size_t cap = 0, i;
	int j, n = 0;
	double d;

	for (i = 0; i < n_msgs; i++) {
		const sw_update *u = msgs[i].u;

		if (u->has & SW_F_DURATION)
			collect_num(u->duration, &cap);
		if (u->has & SW_F_TRACES_COUNT)
			collect_num(u->traces_count, &cap);
		for (j = 0; j < 3; j++) {
			if (u->has & SW_F_BILLING)
				collect_num(u->billing[j], &cap);
			if (u->has & SW_F_USAGE)
				collect_num(u->usage[j], &cap);
		}
	}
	while (n < N_RANDOM) {
		x ^= x << 13; /* xorshift64 */
		x ^= x >> 7;
		x ^= x << 17;
		bits = x;
		memcpy(&d, &bits, sizeof(d));
		if (isfinite(d))
			nums_random[n++] = d;
	}
}

/* ==== Checks before timing ==== */

/* Counts of the checks run before any timing. */
typedef struct checks {
	size_t ours_ok;       /* pb trip (decode + write) gives the wire text */
	size_t base_values;   /* baseline tree holds exactly the values */
	size_t base_lossless; /* baseline text reads back to the same values */
	size_t base_same;     /* baseline text identical to the wire text */
	int lossy_line;       /* first line where cJSON's text lost bits */
} checks;

/* Runs the checks over the corpus: our protobuf trip must give the wire
 * string back byte for byte, and the baseline's cJSON tree must hold
 * exactly the values of the update (it decoded every compact form right).
 * How far cJSON's printed text is from the wire is counted, not judged:
 * that is cJSON's formatting. Mismatches of ours or of the baseline's
 * values are printed as warnings. */
static void check_corpus(checks *c)
{
	sw_buf b;
	sw_update *u;
	sw_error err = { 0 };
	sw_status st;
	cJSON *tree;
	size_t i;
	char *s;

	memset(c, 0, sizeof(*c));
	sw_buf_init(&b, 0, NULL);
	for (i = 0; i < n_msgs; i++) {
		const msg *m = &msgs[i];

		st = sw_pb_decode(m->pb, m->pb_len, NULL, &u, &err);
		if (st != SW_OK)
			die_sw("sw_pb_decode", m, st, &err);
		sw_buf_reset(&b);
		st = sw_json_write(u, NULL, &b, &err);
		if (st != SW_OK)
			die_sw("sw_json_write", m, st, &err);
		sw_update_free(u);
		if (b.len == m->json_len && memcmp(b.data, m->json, b.len) == 0)
			c->ours_ok++;
		else
			fprintf(stderr, "bench-codec: WARNING: line %d: protobuf "
				"trip gives\n  %s\nnot\n  %s\n", m->line, b.data,
				m->json);

		s = baseline_pb_to_json(m->pb, m->pb_len, &tree);
		if (tree_matches(tree, m->u))
			c->base_values++;
		else
			fprintf(stderr, "bench-codec: WARNING: line %d: the "
				"baseline decoded other values: %s\n", m->line, s);
		cJSON_Delete(tree);
		if (strcmp(s, m->json) == 0)
			c->base_same++;
		st = sw_json_parse(s, strlen(s), NULL, &u, &err);
		if (st != SW_OK)
			die_sw("sw_json_parse of the baseline's output", m, st,
			       &err);
		if (sw_update_equal(u, m->u))
			c->base_lossless++;
		else if (c->lossy_line == 0)
			c->lossy_line = m->line;
		sw_update_free(u);
		cJSON_free(s);
	}
	sw_buf_free(&b);
}

/* ==== Sizes ==== */

/* The compact tricks of sw_pb.h, to turn off one at a time. */
static const struct plain_trick {
	unsigned bit;
	const char *key;  /* in --json: size.plain_<key>_mean */
	const char *what; /* what the trick does */
} tricks[] = {
	{ SW_PB_PLAIN_ULID, "ulid", "ULIDs as 16 raw bytes" },
	{ SW_PB_PLAIN_UUID, "uuid", "UUIDs as 16 raw bytes" },
	{ SW_PB_PLAIN_ULID_TIME, "ulid_time", "10-byte ULIDs (time = started_at)" },
	{ SW_PB_PLAIN_INT, "int", "integral numbers as varints" },
	{ SW_PB_PLAIN_DEC, "dec", "decimals as m/10^s" },
	{ SW_PB_PLAIN_TOTAL, "total", "totals left out when in + out" },
	{ SW_PB_PLAIN_DATE_DELTA, "date_delta", "updated_at as a delta" },
};
#define N_TRICKS (sizeof(tricks) / sizeof(tricks[0]))

typedef struct results {
	double json_mean, json_median, pb_mean, pb_median, ratio;
	double plain_mean[N_TRICKS], all_plain_mean;
	double encode, decode, pb_to_json, json_to_pb, cjson, speedup;
	double json_parse, session_parse, session_mean;
	double pc_pack, pc_unpack, npb_encode, npb_decode; /* 0: not run */
	double fmt_corpus, fmt_random, snp_corpus, snp_random;
	checks chk;
	unsigned long iters;
	double seconds;
} results;

/* Mean encoded size over the corpus with the given tricks turned off. */
static double mean_size_plain(unsigned plain)
{
	uint8_t buf[PB_STACK];
	double sum = 0;
	sw_error err = { 0 };
	sw_status st;
	size_t i, len;

	for (i = 0; i < n_msgs; i++) {
		st = sw_pb_encode_ex(msgs[i].u, plain, buf, sizeof(buf), &len,
				     &err);
		if (st != SW_OK)
			die_sw("sw_pb_encode_ex", &msgs[i], st, &err);
		sum += (double)len;
	}
	return sum / (double)n_msgs;
}

/* Fills the size part of r. */
static void measure_sizes(results *r)
{
	size_t *js = malloc(n_msgs * sizeof(*js));
	size_t *ps = malloc(n_msgs * sizeof(*ps));
	unsigned all = 0;
	size_t i;

	if (js == NULL || ps == NULL)
		die("out of memory");
	for (i = 0; i < n_msgs; i++) {
		js[i] = msgs[i].json_len;
		ps[i] = msgs[i].pb_len;
	}
	r->json_mean = size_mean(js, n_msgs);
	r->json_median = size_median(js, n_msgs);
	r->pb_mean = size_mean(ps, n_msgs);
	r->pb_median = size_median(ps, n_msgs);
	r->ratio = r->pb_mean / r->json_mean;
	for (i = 0; i < N_TRICKS; i++) {
		r->plain_mean[i] = mean_size_plain(tricks[i].bit);
		all |= tricks[i].bit;
	}
	r->all_plain_mean = mean_size_plain(all);
	free(js);
	free(ps);
}

/* ==== Output ==== */

/* The readable table. */
static void print_table(const results *r, const char *vectors)
{
	size_t i;

	printf("sessionwire codec benchmark: %zu messages of %s/typical.jsonl, "
	       "%lu iterations, median of %d runs\n\n", n_msgs, vectors,
	       r->iters, RUNS);
	printf("size  json mean %.1f B  median %.1f B  protobuf mean %.1f B  "
	       "median %.1f B  ratio %.3f\n", r->json_mean, r->json_median,
	       r->pb_mean, r->pb_median, r->ratio);
	printf("  with one compact trick turned off      pb mean    costs\n");
	for (i = 0; i < N_TRICKS; i++)
		printf("    %-36s %7.1f B  %+6.1f B (%+5.1f%%)\n", tricks[i].what,
		       r->plain_mean[i], r->plain_mean[i] - r->pb_mean,
		       100 * (r->plain_mean[i] - r->pb_mean) / r->pb_mean);
	printf("    %-36s %7.1f B  %+6.1f B (%+5.1f%%)  ratio %.3f\n",
	       "all of them", r->all_plain_mean, r->all_plain_mean - r->pb_mean,
	       100 * (r->all_plain_mean - r->pb_mean) / r->pb_mean,
	       r->all_plain_mean / r->json_mean);
	printf("\nspeed (ns per message)\n");
	printf("  sw_pb_encode (update -> pb, stack buffer)      %9.1f\n", r->encode);
	printf("  sw_pb_decode + sw_update_free                  %9.1f\n", r->decode);
	printf("  pb -> canonical JSON (decode + sw_json_write)  %9.1f\n", r->pb_to_json);
	printf("  pb -> JSON baseline (protobuf-c + cJSON)       %9.1f   "
	       "speedup %.2fx\n", r->cjson, r->speedup);
	printf("  JSON -> pb (sw_json_parse + sw_pb_encode)      %9.1f\n", r->json_to_pb);
	printf("  sw_json_parse + free, the update               %9.1f\n", r->json_parse);
	printf("  sw_json_parse + free, the session (%5.1f B)    %9.1f\n",
	       r->session_mean, r->session_parse);
	printf("  protobuf-c pack (same Session)                 %9.1f\n", r->pc_pack);
	printf("  protobuf-c unpack + free_unpacked              %9.1f\n", r->pc_unpack);
	if (r->npb_encode > 0) {
		printf("  nanopb pb_encode (fixed-array struct)          %9.1f\n", r->npb_encode);
		printf("  nanopb pb_decode (fixed-array struct)          %9.1f\n", r->npb_decode);
	} else {
		printf("  nanopb: not measured (not installed, or a message "
		       "outside its bounds)\n");
	}
	printf("\nnumber formatting (ns per call)            sw_num_format  "
	       "snprintf %%.17g\n");
	printf("  non-integral numbers of the corpus (%4zu)  %13.1f  %14.1f\n",
	       n_nums_corpus, r->fmt_corpus, r->snp_corpus);
	printf("  random finite doubles (%4d)               %13.1f  %14.1f\n",
	       N_RANDOM, r->fmt_random, r->snp_random);
	printf("\nchecks: our protobuf trip byte-identical to the wire: %zu/%zu\n",
	       r->chk.ours_ok, n_msgs);
	printf("  baseline tree holds the exact values (all compact forms "
	       "decoded right): %zu/%zu\n", r->chk.base_values, n_msgs);
	printf("  baseline text (cJSON_PrintUnformatted) identical to the "
	       "wire: %zu/%zu;\n  reads back to the same values: %zu/%zu",
	       r->chk.base_same, n_msgs, r->chk.base_lossless, n_msgs);
	if (r->chk.lossy_line)
		printf(" (cJSON prints %%.15g when that reads back within "
		       "DBL_EPSILON,\n  dropping the last bits; first such "
		       "message: line %d)", r->chk.lossy_line);
	printf("\n");
	printf("largest run-to-run spread (max - min) / median: %.1f%% (%s); "
	       "run time %.1f s\n", 100 * worst_spread, worst_spread_of,
	       r->seconds);
}

/* The same as a markdown table, to paste into the README. */
static void print_markdown(const results *r)
{
	size_t i;

	printf("\n```markdown\n");
	printf("| typical.jsonl, %zu messages | value |\n| --- | ---: |\n", n_msgs);
	printf("| canonical JSON, mean (median) | %.1f B (%.1f B) |\n",
	       r->json_mean, r->json_median);
	printf("| protobuf, mean (median) | %.1f B (%.1f B) |\n", r->pb_mean,
	       r->pb_median);
	printf("| ratio protobuf / JSON (means) | %.3f |\n", r->ratio);
	for (i = 0; i < N_TRICKS; i++)
		printf("| without %s | %.1f B (%+.1f B) |\n", tricks[i].what,
		       r->plain_mean[i], r->plain_mean[i] - r->pb_mean);
	printf("| without any compact trick | %.1f B (ratio %.3f) |\n",
	       r->all_plain_mean, r->all_plain_mean / r->json_mean);
	printf("| encode update -> protobuf | %.0f ns |\n", r->encode);
	printf("| decode protobuf -> update | %.0f ns |\n", r->decode);
	printf("| protobuf -> canonical JSON | %.0f ns |\n", r->pb_to_json);
	printf("| same with protobuf-c + cJSON | %.0f ns (ours %.2fx faster) |\n",
	       r->cjson, r->speedup);
	printf("| canonical JSON -> protobuf | %.0f ns |\n", r->json_to_pb);
	printf("| sw_json_parse, update / session answer | %.0f / %.0f ns |\n",
	       r->json_parse, r->session_parse);
	printf("| protobuf-c pack / unpack | %.0f / %.0f ns |\n", r->pc_pack,
	       r->pc_unpack);
	if (r->npb_encode > 0)
		printf("| nanopb encode / decode | %.0f / %.0f ns |\n",
		       r->npb_encode, r->npb_decode);
	printf("| sw_num_format, corpus non-integral | %.1f ns (snprintf %%.17g %.1f ns) |\n",
	       r->fmt_corpus, r->snp_corpus);
	printf("| sw_num_format, random doubles | %.1f ns (snprintf %%.17g %.1f ns) |\n",
	       r->fmt_random, r->snp_random);
	printf("```\n");
}

/* Writes the results as one flat JSON object (keys with dots) to f,
 * opened on path before the run, and closes f. */
static void write_json(const results *r, FILE *f, const char *path)
{
	size_t i;

	fprintf(f, "{\n  \"messages\": %zu,\n  \"iterations\": %lu,\n"
		"  \"runs\": %d,\n", n_msgs, r->iters, RUNS);
	fprintf(f, "  \"size.json_mean\": %.2f,\n  \"size.json_median\": %.1f,\n",
		r->json_mean, r->json_median);
	fprintf(f, "  \"size.protobuf_mean\": %.2f,\n"
		"  \"size.protobuf_median\": %.1f,\n  \"size.ratio\": %.4f,\n",
		r->pb_mean, r->pb_median, r->ratio);
	for (i = 0; i < N_TRICKS; i++)
		fprintf(f, "  \"size.plain_%s_mean\": %.2f,\n", tricks[i].key,
			r->plain_mean[i]);
	fprintf(f, "  \"size.plain_all_mean\": %.2f,\n", r->all_plain_mean);
	fprintf(f, "  \"speed.encode_ns\": %.1f,\n  \"speed.decode_ns\": %.1f,\n",
		r->encode, r->decode);
	fprintf(f, "  \"speed.pb_to_json_ns\": %.1f,\n"
		"  \"speed.cjson_pb_to_json_ns\": %.1f,\n"
		"  \"speed.pb_to_json_speedup_vs_cjson\": %.3f,\n",
		r->pb_to_json, r->cjson, r->speedup);
	fprintf(f, "  \"speed.json_to_pb_ns\": %.1f,\n", r->json_to_pb);
	fprintf(f, "  \"speed.json_parse_ns\": %.1f,\n"
		"  \"speed.session_parse_ns\": %.1f,\n", r->json_parse,
		r->session_parse);
	fprintf(f, "  \"speed.protobuf_c_pack_ns\": %.1f,\n"
		"  \"speed.protobuf_c_unpack_ns\": %.1f,\n", r->pc_pack,
		r->pc_unpack);
	if (r->npb_encode > 0)
		fprintf(f, "  \"speed.nanopb_encode_ns\": %.1f,\n"
			"  \"speed.nanopb_decode_ns\": %.1f,\n", r->npb_encode,
			r->npb_decode);
	fprintf(f, "  \"speed.double_format_ns\": %.2f,\n"
		"  \"speed.double_format_random_ns\": %.2f,\n"
		"  \"speed.snprintf_17g_ns\": %.2f,\n"
		"  \"speed.snprintf_17g_random_ns\": %.2f,\n",
		r->fmt_corpus, r->fmt_random, r->snp_corpus, r->snp_random);
	fprintf(f, "  \"check.pb_trip_identical\": %zu,\n"
		"  \"check.cjson_values_exact\": %zu,\n"
		"  \"check.cjson_text_lossless\": %zu,\n"
		"  \"check.cjson_text_identical\": %zu\n}\n",
		r->chk.ours_ok, r->chk.base_values, r->chk.base_lossless,
		r->chk.base_same);
	if (ferror(f) || fclose(f) != 0)
		die("cannot write %s", path);
}

/* ==== Instruction counts ==== */

/* Runs every pass n times untimed (under callgrind, bench/run.sh reads
 * each pass function's inclusive count) and prints how many items they
 * processed in all. */
static void run_callgrind(unsigned long n)
{
	static const struct cg_pass {
		const char *name;
		void (*fn)(void);
		int nums; /* items are numbers (1: corpus set), not messages */
	} passes[] = {
		{ "pass_encode", pass_encode, 0 },
		{ "pass_decode", pass_decode, 0 },
		{ "pass_pb_to_json", pass_pb_to_json, 0 },
		{ "pass_cjson", pass_cjson, 0 },
		{ "pass_json_to_pb", pass_json_to_pb, 0 },
		{ "pass_json_parse", pass_json_parse, 0 },
		{ "pass_session_parse", pass_session_parse, 0 },
		{ "pass_pc_pack", pass_pc_pack, 0 },
		{ "pass_pc_unpack", pass_pc_unpack, 0 },
#ifdef BENCH_HAVE_nanopb
		{ "pass_npb_encode", pass_npb_encode, 0 },
		{ "pass_npb_decode", pass_npb_decode, 0 },
#endif
		{ "pass_num_format", pass_num_format, 1 },
	};
	size_t p;
	unsigned long k;

	num_set = nums_corpus;
	num_n = n_nums_corpus;
	for (p = 0; p < sizeof(passes) / sizeof(passes[0]); p++) {
#ifdef BENCH_HAVE_nanopb
		if (!npb_ok && strncmp(passes[p].name, "pass_npb", 8) == 0)
			continue;
#endif
		for (k = 0; k < n; k++)
			passes[p].fn();
		printf("callgrind %s %lu\n", passes[p].name,
		       n * (unsigned long)(passes[p].nums ? num_n : n_msgs));
	}
}

/* ==== main ==== */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: bench-codec [--vectors DIR] [--iterations N] [--json FILE]\n"
		"\n"
		"Benchmarks the sessionwire codec over DIR/typical.jsonl:\n"
		"sizes (canonical JSON vs compact protobuf, and what each\n"
		"compact trick buys), speed of encode, decode, pb -> JSON\n"
		"(against protobuf-c + cJSON), JSON -> pb, and number formatting.\n"
		"\n"
		"  --vectors DIR    directory of typical.jsonl (default tests/vectors)\n"
		"  --iterations N   passes over the corpus per run (default %lu);\n"
		"                   each timing is the median of %d runs\n"
		"  --json FILE      also write the results as a flat JSON object\n"
		"  --callgrind N    run each pass N times untimed, print\n"
		"                   'callgrind <function> <items>' lines, exit\n"
		"  --help           this text\n", DEFAULT_ITERATIONS, RUNS);
}

int main(int argc, char **argv)
{
	const char *vectors = "tests/vectors", *json_out = NULL;
	unsigned long iters = DEFAULT_ITERATIONS, cg = 0;
	FILE *json_f = NULL;
	results r;
	double t0;
	int i;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			return 0;
		} else if (strcmp(argv[i], "--vectors") == 0 && i + 1 < argc) {
			vectors = argv[++i];
		} else if (strcmp(argv[i], "--json") == 0 && i + 1 < argc) {
			json_out = argv[++i];
		} else if (strcmp(argv[i], "--callgrind") == 0 && i + 1 < argc) {
			if (!parse_count(argv[++i], 1000, &cg)) {
				fprintf(stderr, "bench-codec: --callgrind wants "
					"a count from 1 to 1000, not '%s'\n", argv[i]);
				return 2;
			}
		} else if (strcmp(argv[i], "--iterations") == 0 && i + 1 < argc) {
			if (!parse_count(argv[++i], MAX_ITERATIONS, &iters)) {
				fprintf(stderr, "bench-codec: --iterations wants "
					"a count from 1 to %lu, not '%s'\n",
					MAX_ITERATIONS, argv[i]);
				return 2;
			}
		} else {
			fprintf(stderr, "bench-codec: unknown or incomplete "
				"argument '%s'\n", argv[i]);
			usage(stderr);
			return 2;
		}
	}

	/* Fail now, not after the whole run. */
	if (json_out && (json_f = fopen(json_out, "w")) == NULL)
		die("cannot create %s: %s", json_out, strerror(errno));

	t0 = now_ns();
	memset(&r, 0, sizeof(r));
	r.iters = iters;
	load_corpus(vectors);
	make_num_sets();
	sw_buf_init(&jbuf, 0, NULL);
#ifdef BENCH_HAVE_nanopb
	npb_prepare();
#endif
	if (cg) {
		run_callgrind(cg);
		sw_buf_free(&jbuf);
		free(nums_corpus);
		free_corpus();
		return 0;
	}

	check_corpus(&r.chk);
	if (r.chk.ours_ok != n_msgs || r.chk.base_values != n_msgs)
		fprintf(stderr, "bench-codec: WARNING: some round trips differ "
			"(see above); the timings below still ran on them\n");

	measure_sizes(&r);
	for (i = 0; i < (int)n_msgs; i++)
		r.session_mean += (double)msgs[i].session_len / (double)n_msgs;

	r.encode = time_ns("encode", pass_encode, iters, n_msgs);
	r.decode = time_ns("decode", pass_decode, iters, n_msgs);
	r.pb_to_json = time_ns("pb -> JSON", pass_pb_to_json, iters, n_msgs);
	r.cjson = time_ns("baseline", pass_cjson, iters, n_msgs);
	r.json_to_pb = time_ns("JSON -> pb", pass_json_to_pb, iters, n_msgs);
	r.json_parse = time_ns("JSON parse", pass_json_parse, iters, n_msgs);
	r.session_parse = time_ns("session parse", pass_session_parse, iters,
				  n_msgs);
	r.pc_pack = time_ns("protobuf-c pack", pass_pc_pack, iters, n_msgs);
	r.pc_unpack = time_ns("protobuf-c unpack", pass_pc_unpack, iters, n_msgs);
#ifdef BENCH_HAVE_nanopb
	if (npb_ok) {
		r.npb_encode = time_ns("nanopb encode", pass_npb_encode, iters, n_msgs);
		r.npb_decode = time_ns("nanopb decode", pass_npb_decode, iters, n_msgs);
	}
#endif
	r.speedup = r.pb_to_json > 0 ? r.cjson / r.pb_to_json : 0;

	num_set = nums_corpus;
	num_n = n_nums_corpus;
	r.fmt_corpus = time_ns("sw_num_format corpus", pass_num_format, iters,
			       num_n);
	r.snp_corpus = time_ns("snprintf corpus", pass_snprintf, iters, num_n);
	num_set = nums_random;
	num_n = N_RANDOM;
	r.fmt_random = time_ns("sw_num_format random", pass_num_format, iters,
			       num_n);
	r.snp_random = time_ns("snprintf random", pass_snprintf, iters, num_n);
	r.seconds = (now_ns() - t0) / 1e9;

	print_table(&r, vectors);
	print_markdown(&r);
	if (json_f)
		write_json(&r, json_f, json_out);

	sw_buf_free(&jbuf);
	free(nums_corpus);
	free_corpus();
	return 0;
}
