/* sizes.c - bytes per update in every encoding a device team would
 * consider, on the SDK's typical updates and on a larger generated corpus.
 *
 * A benchmark program, never a test. For each corpus (typical.jsonl, or
 * one JSON body per line as bench-gen_corpus writes) it measures, per
 * message, then mean, median and p90:
 *
 *  - canonical JSON (what the SDK sends);
 *  - JSON gzip -9 (zlib, gzip format, each message on its own);
 *  - JSON zstd -19 (each message on its own);
 *  - JSON zstd -19 with a dictionary trained (ZDICT_trainFromBuffer) on a
 *    separate training corpus; frames without the dictionary id;
 *  - naive protobuf (bench/naive.proto: strings, doubles, int64 ms);
 *  - sessionwire protobuf (sw_pb_encode);
 *  - sessionwire + zstd dictionary (trained on the training corpus's
 *    sessionwire bytes), used only when smaller, plus one flag byte;
 *  - CBOR (libcbor) and MessagePack (msgpack-c) of the same object:
 *    integral numbers as integers, others as float32 when exact, else
 *    float64; dates as their JSON strings;
 *  - sessionwire with each compact trick turned off in turn
 *    (sw_pb_encode_ex, SW_PB_PLAIN_*).
 *
 * Every compressed message is decompressed and compared before it counts.
 * What a missing bench-only package would bring is left out and said so
 * (see $(O)/gen/bench_have.h, written by the Makefile).
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

#include <cjson/cJSON.h>

#include "bench_have.h"
#include "naive.pb-c.h"
#include "sessionwire/sessionwire.h"
#include "bench_load.h"

#ifdef BENCH_HAVE_zlib
#include <zlib.h>
#endif
#ifdef BENCH_HAVE_zstd
#define ZSTD_STATIC_LINKING_ONLY
#include <zdict.h>
#include <zstd.h>
#endif
#ifdef BENCH_HAVE_cbor
#include <cbor.h>
#endif
#ifdef BENCH_HAVE_msgpack
#include <msgpack.h>
#endif

/* For helpers that only some bench-only packages use. */
#define MAYBE_UNUSED __attribute__((unused))

#define PB_MAX 8192
#define OUT_MAX 65536
#define DEFAULT_DICT_SIZE 32768
#define MAX_CORPORA 4

/* One update of a corpus. */
typedef struct msg {
	char *json; /* canonical JSON */
	size_t json_len;
	sw_update *u;
	uint8_t *pb;
	size_t pb_len;
} msg;

typedef struct corpus {
	const char *name; /* "typical", "generated" */
	const char *path;
	msg *m;
	size_t n;
} corpus;

/* ==== Failing loudly ==== */

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/* Prints a message and exits: a benchmark never measures errors. */
static void die(const char *fmt, ...)
{
	va_list ap;

	fputs("bench-sizes: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

/* malloc that dies. */
static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (p == NULL)
		die("out of memory");
	return p;
}

/* ==== Loading ==== */

/* What load() hands load_line: the corpus and its array's capacity. */
typedef struct loading {
	corpus *c;
	size_t cap;
} loading;

/* bench_line_fn for load(): parses and encodes body once into the
 * corpus of ctx (a loading). */
static void load_line(const char *path, int lineno, const char *line,
		      const char *body, void *ctx)
{
	loading *ld = ctx;
	corpus *c = ld->c;
	uint8_t buf[PB_MAX];
	sw_error err;
	sw_status st;
	msg *m;

	(void)line;
	if (c->n == ld->cap) {
		msg *nm;

		ld->cap = ld->cap ? ld->cap * 2 : 1024;
		nm = realloc(c->m, ld->cap * sizeof(*nm));
		if (nm == NULL)
			die("out of memory");
		c->m = nm;
	}
	m = &c->m[c->n++];
	m->json_len = strlen(body);
	m->json = xmalloc(m->json_len + 1);
	memcpy(m->json, body, m->json_len + 1);
	sw_error_clear(&err);
	st = sw_json_parse(m->json, m->json_len, NULL, &m->u, &err);
	if (st == SW_OK)
		st = sw_pb_encode(m->u, buf, sizeof(buf), &m->pb_len, &err);
	if (st != SW_OK)
		die("%s line %d: %s at '%s': %s", path, lineno,
		    sw_errname(st), err.path, err.message);
	m->pb = xmalloc(m->pb_len);
	memcpy(m->pb, buf, m->pb_len);
}

/* Loads c->path: lines of the vectors ({"sdk":..,"wire":"<json>"}: the
 * wire string) or plain JSON bodies. Each is parsed and encoded once. */
static void load(corpus *c)
{
	loading ld = { c, 0 };

	bench_each_line(c->path, 1, load_line, &ld);
	if (c->n == 0)
		die("%s has no messages", c->path);
}

/* Frees what load() made. */
static void unload(corpus *c)
{
	size_t i;

	for (i = 0; i < c->n; i++) {
		free(c->m[i].json);
		free(c->m[i].pb);
		sw_update_free(c->m[i].u);
	}
	free(c->m);
	c->m = NULL;
	c->n = 0;
}

/* ==== Statistics ==== */

typedef struct stats {
	double mean, median, p90;
} stats;

static int cmp_size(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;

	return (x > y) - (x < y);
}

/* Mean, median (mean of the middle two when even) and p90 (nearest
 * rank) of v[0..n); sorts v. */
static stats stats_of(size_t *v, size_t n)
{
	stats s = { 0, 0, 0 };
	size_t i, r;

	for (i = 0; i < n; i++)
		s.mean += (double)v[i];
	s.mean /= (double)n;
	qsort(v, n, sizeof(*v), cmp_size);
	s.median = n % 2 ? (double)v[n / 2]
			 : ((double)v[n / 2 - 1] + (double)v[n / 2]) / 2;
	r = (9 * n + 9) / 10; /* ceil(0.9 n) */
	s.p90 = (double)v[r ? r - 1 : 0];
	return s;
}

/* ==== Compression ==== */

static uint8_t out_buf[OUT_MAX];
static MAYBE_UNUSED uint8_t back_buf[OUT_MAX];

#ifdef BENCH_HAVE_zlib
/* gzip -9 of one message (gzip header and trailer included), checked by
 * inflating it back. */
static size_t gzip_size(const void *p, size_t n)
{
	z_stream z;
	size_t out;

	memset(&z, 0, sizeof(z));
	if (deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 9, Z_DEFAULT_STRATEGY) != Z_OK)
		die("deflateInit2 failed");
	z.next_in = (Bytef *)(uintptr_t)p;
	z.avail_in = (uInt)n;
	z.next_out = out_buf;
	z.avail_out = sizeof(out_buf);
	if (deflate(&z, Z_FINISH) != Z_STREAM_END)
		die("deflate failed");
	out = z.total_out;
	deflateEnd(&z);

	memset(&z, 0, sizeof(z));
	if (inflateInit2(&z, 15 + 16) != Z_OK)
		die("inflateInit2 failed");
	z.next_in = out_buf;
	z.avail_in = (uInt)out;
	z.next_out = back_buf;
	z.avail_out = sizeof(back_buf);
	if (inflate(&z, Z_FINISH) != Z_STREAM_END || z.total_out != n ||
	    memcmp(back_buf, p, n) != 0)
		die("gzip round trip failed");
	inflateEnd(&z);
	return out;
}
#endif

#ifdef BENCH_HAVE_zstd
static ZSTD_CCtx *zc;
static ZSTD_DCtx *zd;

/* zstd -19 of one message, with dict (NULL: none), frames without the
 * checksum and the dictionary id; checked by decompressing it back. */
static size_t zstd_size(const void *p, size_t n, const ZSTD_CDict *cd,
			const ZSTD_DDict *dd)
{
	size_t out, back;

	ZSTD_CCtx_reset(zc, ZSTD_reset_session_and_parameters);
	ZSTD_CCtx_setParameter(zc, ZSTD_c_compressionLevel, 19);
	ZSTD_CCtx_setParameter(zc, ZSTD_c_dictIDFlag, 0);
	ZSTD_CCtx_setParameter(zc, ZSTD_c_checksumFlag, 0);
	if (cd && ZSTD_isError(ZSTD_CCtx_refCDict(zc, cd)))
		die("ZSTD_CCtx_refCDict failed");
	out = ZSTD_compress2(zc, out_buf, sizeof(out_buf), p, n);
	if (ZSTD_isError(out))
		die("zstd: %s", ZSTD_getErrorName(out));
	back = dd ? ZSTD_decompress_usingDDict(zd, back_buf, sizeof(back_buf),
					       out_buf, out, dd)
		  : ZSTD_decompressDCtx(zd, back_buf, sizeof(back_buf), out_buf, out);
	if (ZSTD_isError(back) || back != n || memcmp(back_buf, p, n) != 0)
		die("zstd round trip failed");
	return out;
}

/* A dictionary of up to cap bytes trained on the JSON (pb false) or the
 * sessionwire bytes (pb true) of corpus t. Returns its size. */
static size_t train(const corpus *t, bool pb, void *dict, size_t cap)
{
	size_t *sizes = xmalloc(t->n * sizeof(*sizes)), total = 0, i, r;
	uint8_t *all, *q;

	for (i = 0; i < t->n; i++)
		total += sizes[i] = pb ? t->m[i].pb_len : t->m[i].json_len;
	q = all = xmalloc(total);
	for (i = 0; i < t->n; i++) {
		memcpy(q, pb ? (const void *)t->m[i].pb : t->m[i].json, sizes[i]);
		q += sizes[i];
	}
	r = ZDICT_trainFromBuffer(dict, cap, all, sizes, (unsigned)t->n);
	if (ZDICT_isError(r))
		die("ZDICT_trainFromBuffer (%s): %s", pb ? "protobuf" : "JSON",
		    ZDICT_getErrorName(r));
	free(all);
	free(sizes);
	return r;
}
#endif

/* ==== Naive protobuf ==== */

/* A bump arena for the NUL-terminated strings protobuf-c wants. */
static char arena[OUT_MAX];
static size_t arena_used;

/* s as a NUL-terminated copy in the arena. */
static char *cstr(const sw_str *s)
{
	char *p;

	if (arena_used + s->len + 1 > sizeof(arena))
		die("naive: message too large");
	p = arena + arena_used;
	memcpy(p, s->ptr, s->len);
	p[s->len] = '\0';
	arena_used += s->len + 1;
	return p;
}

/* Packed size of u in bench/naive.proto. */
static size_t naive_size(const sw_update *u)
{
	Naive__V1__Session s = NAIVE__V1__SESSION__INIT;
	Naive__V1__Billing b = NAIVE__V1__BILLING__INIT;
	Naive__V1__Usage us = NAIVE__V1__USAGE__INIT;
	char *contacts[256], *tags[256];
	size_t i, len;

	arena_used = 0;
	if (u->n_contact_ids > 256 || u->n_tags > 256)
		die("naive: too many list items");
	if (u->has & SW_F_ID)
		s.id = cstr(&u->id);
	if (u->has & SW_F_EXTERNAL_ID)
		s.external_id = cstr(&u->external_id);
	if (u->has & SW_F_DURATION) {
		s.has_duration = 1;
		s.duration = u->duration;
	}
	if (u->has & SW_F_CONTACT_IDS) {
		for (i = 0; i < u->n_contact_ids; i++)
			contacts[i] = cstr(&u->contact_ids[i]);
		s.n_contact_ids = u->n_contact_ids;
		s.contact_ids = contacts;
	}
	if (u->has & SW_F_BILLING) {
		b.has_input_cost = b.has_output_cost = b.has_total_cost = 1;
		b.input_cost = u->billing[SW_IN];
		b.output_cost = u->billing[SW_OUT];
		b.total_cost = u->billing[SW_TOTAL];
		s.billing = &b;
	}
	if (u->has & SW_F_USAGE) {
		us.has_prompt_tokens = us.has_completion_tokens = 1;
		us.has_total_tokens = 1;
		us.prompt_tokens = u->usage[SW_IN];
		us.completion_tokens = u->usage[SW_OUT];
		us.total_tokens = u->usage[SW_TOTAL];
		s.usage = &us;
	}
	if (u->has & SW_F_TRACES_COUNT) {
		s.has_traces_count = 1;
		s.traces_count = u->traces_count;
	}
	if (u->has & SW_F_TAGS) {
		for (i = 0; i < u->n_tags; i++)
			tags[i] = cstr(&u->tags[i]);
		s.n_tags = u->n_tags;
		s.tags = tags;
	}
	if (u->has & SW_F_WORKSPACE_ID)
		s.workspace_id = cstr(&u->workspace_id);
	if ((u->has & SW_F_PROJECT_ID) && u->project_id_null) {
		s.project_case = NAIVE__V1__SESSION__PROJECT_PROJECT_ID_NULL;
		s.project_id_null = 1;
	} else if (u->has & SW_F_PROJECT_ID) {
		s.project_case = NAIVE__V1__SESSION__PROJECT_PROJECT_ID;
		s.project_id = cstr(&u->project_id);
	}
	if (u->has & SW_F_STARTED_AT) {
		s.has_started_at = 1;
		s.started_at = u->started_at;
	}
	if (u->has & SW_F_UPDATED_AT) {
		s.has_updated_at = 1;
		s.updated_at = u->updated_at;
	}
	len = naive__v1__session__get_packed_size(&s);
	if (len > sizeof(out_buf) ||
	    naive__v1__session__pack(&s, out_buf) != len)
		die("naive: pack failed");
	return len;
}

/* ==== CBOR and MessagePack of the same object ==== */

/* How a generic JSON converter would carry a number: 0 unsigned int,
 * 1 negative int, 2 float32 (exact), 3 float64. */
static MAYBE_UNUSED int num_kind(double x)
{
	if (x == floor(x) && fabs(x) < 0x1p63 && !(x == 0 && signbit(x)))
		return x >= 0 ? 0 : 1;
	return (double)(float)x == x ? 2 : 3;
}

/* The date ms as its JSON string, into d (SW_DATE_LEN + 1). */
static MAYBE_UNUSED void date_str(int64_t ms, char *d)
{
	if (sw_date_format(ms, d) != SW_DATE_LEN)
		die("date out of range");
}

static MAYBE_UNUSED const char *const bill_keys[3] = { "input_cost", "output_cost",
					  "total_cost" };
static MAYBE_UNUSED const char *const usage_keys[3] = { "prompt_tokens",
					   "completion_tokens", "total_tokens" };

/* Number of members of the body object. */
static MAYBE_UNUSED size_t n_members(const sw_update *u)
{
	size_t n = 0;
	unsigned b;

	for (b = 0; b < SW_FIELD_COUNT; b++)
		n += (u->has >> b) & 1;
	return n;
}

#ifdef BENCH_HAVE_cbor
/* A CBOR number item. */
static cbor_item_t *cbor_num(double x)
{
	switch (num_kind(x)) {
	case 0: return cbor_build_uint64((uint64_t)x);
	case 1: return cbor_build_negint64((uint64_t)(-x) - 1);
	case 2: return cbor_build_float4((float)x);
	default: return cbor_build_float8(x);
	}
}

/* A CBOR text string item. */
static cbor_item_t *cbor_s(const char *p, size_t n)
{
	return cbor_build_stringn(p, n);
}

/* Adds key: value to map (taking the value's reference). */
static void cbor_put(cbor_item_t *map, const char *key, cbor_item_t *v)
{
	cbor_item_t *k = cbor_build_string(key);

	if (k == NULL || v == NULL ||
	    !cbor_map_add(map, (struct cbor_pair){ .key = k, .value = v }))
		die("libcbor: out of memory");
	cbor_decref(&k);
	cbor_decref(&v);
}

/* A CBOR array of strings. */
static cbor_item_t *cbor_list(const sw_str *v, size_t n)
{
	cbor_item_t *a = cbor_new_definite_array(n), *it;
	size_t i;

	for (i = 0; i < n; i++) {
		it = cbor_s(v[i].ptr, v[i].len);
		if (a == NULL || it == NULL || !cbor_array_push(a, it))
			die("libcbor: out of memory");
		cbor_decref(&it);
	}
	return a;
}

/* A CBOR map of three numbers. */
static cbor_item_t *cbor_three(const char *const k[3], const double v[3])
{
	cbor_item_t *m = cbor_new_definite_map(3);
	int i;

	for (i = 0; i < 3; i++)
		cbor_put(m, k[i], cbor_num(v[i]));
	return m;
}

/* CBOR size of the body object (wire names, wire order). */
static size_t cbor_size(const sw_update *u)
{
	cbor_item_t *m = cbor_new_definite_map(n_members(u));
	unsigned char *buf = NULL;
	size_t cap = 0, len;
	char d[SW_DATE_LEN + 1];

	if (m == NULL)
		die("libcbor: out of memory");
	if (u->has & SW_F_ID)
		cbor_put(m, "_id", cbor_s(u->id.ptr, u->id.len));
	if (u->has & SW_F_EXTERNAL_ID)
		cbor_put(m, "external_id", cbor_s(u->external_id.ptr, u->external_id.len));
	if (u->has & SW_F_DURATION)
		cbor_put(m, "duration", cbor_num(u->duration));
	if (u->has & SW_F_CONTACT_IDS)
		cbor_put(m, "contact_ids", cbor_list(u->contact_ids, u->n_contact_ids));
	if (u->has & SW_F_BILLING)
		cbor_put(m, "billing", cbor_three(bill_keys, u->billing));
	if (u->has & SW_F_USAGE)
		cbor_put(m, "usage", cbor_three(usage_keys, u->usage));
	if (u->has & SW_F_TRACES_COUNT)
		cbor_put(m, "traces_count", cbor_num(u->traces_count));
	if (u->has & SW_F_TAGS)
		cbor_put(m, "tags", cbor_list(u->tags, u->n_tags));
	if (u->has & SW_F_WORKSPACE_ID)
		cbor_put(m, "workspace_id", cbor_s(u->workspace_id.ptr, u->workspace_id.len));
	if (u->has & SW_F_PROJECT_ID)
		cbor_put(m, "project_id", u->project_id_null ? cbor_new_null()
				: cbor_s(u->project_id.ptr, u->project_id.len));
	if (u->has & SW_F_STARTED_AT) {
		date_str(u->started_at, d);
		cbor_put(m, "started_at", cbor_s(d, SW_DATE_LEN));
	}
	if (u->has & SW_F_UPDATED_AT) {
		date_str(u->updated_at, d);
		cbor_put(m, "updated_at", cbor_s(d, SW_DATE_LEN));
	}
	len = cbor_serialize_alloc(m, &buf, &cap);
	if (len == 0)
		die("libcbor: serialize failed");
	free(buf);
	cbor_decref(&m);
	return len;
}
#endif

#ifdef BENCH_HAVE_msgpack
/* Packs a string. */
static void mp_s(msgpack_packer *pk, const char *p, size_t n)
{
	msgpack_pack_str(pk, n);
	msgpack_pack_str_body(pk, p, n);
}

/* Packs a number as num_kind says. */
static void mp_num(msgpack_packer *pk, double x)
{
	switch (num_kind(x)) {
	case 0: msgpack_pack_uint64(pk, (uint64_t)x); break;
	case 1: msgpack_pack_int64(pk, (int64_t)x); break;
	case 2: msgpack_pack_float(pk, (float)x); break;
	default: msgpack_pack_double(pk, x); break;
	}
}

/* Packs an array of strings. */
static void mp_list(msgpack_packer *pk, const sw_str *v, size_t n)
{
	size_t i;

	msgpack_pack_array(pk, n);
	for (i = 0; i < n; i++)
		mp_s(pk, v[i].ptr, v[i].len);
}

/* Packs a map of three numbers. */
static void mp_three(msgpack_packer *pk, const char *const k[3],
		     const double v[3])
{
	int i;

	msgpack_pack_map(pk, 3);
	for (i = 0; i < 3; i++) {
		mp_s(pk, k[i], strlen(k[i]));
		mp_num(pk, v[i]);
	}
}

/* MessagePack size of the body object (wire names, wire order). */
static size_t msgpack_size(const sw_update *u)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	char d[SW_DATE_LEN + 1];
	size_t len;

#define KEY(k) mp_s(&pk, k, sizeof(k) - 1)
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, n_members(u));
	if (u->has & SW_F_ID) {
		KEY("_id");
		mp_s(&pk, u->id.ptr, u->id.len);
	}
	if (u->has & SW_F_EXTERNAL_ID) {
		KEY("external_id");
		mp_s(&pk, u->external_id.ptr, u->external_id.len);
	}
	if (u->has & SW_F_DURATION) {
		KEY("duration");
		mp_num(&pk, u->duration);
	}
	if (u->has & SW_F_CONTACT_IDS) {
		KEY("contact_ids");
		mp_list(&pk, u->contact_ids, u->n_contact_ids);
	}
	if (u->has & SW_F_BILLING) {
		KEY("billing");
		mp_three(&pk, bill_keys, u->billing);
	}
	if (u->has & SW_F_USAGE) {
		KEY("usage");
		mp_three(&pk, usage_keys, u->usage);
	}
	if (u->has & SW_F_TRACES_COUNT) {
		KEY("traces_count");
		mp_num(&pk, u->traces_count);
	}
	if (u->has & SW_F_TAGS) {
		KEY("tags");
		mp_list(&pk, u->tags, u->n_tags);
	}
	if (u->has & SW_F_WORKSPACE_ID) {
		KEY("workspace_id");
		mp_s(&pk, u->workspace_id.ptr, u->workspace_id.len);
	}
	if (u->has & SW_F_PROJECT_ID) {
		KEY("project_id");
		if (u->project_id_null)
			msgpack_pack_nil(&pk);
		else
			mp_s(&pk, u->project_id.ptr, u->project_id.len);
	}
	if (u->has & SW_F_STARTED_AT) {
		KEY("started_at");
		date_str(u->started_at, d);
		mp_s(&pk, d, SW_DATE_LEN);
	}
	if (u->has & SW_F_UPDATED_AT) {
		KEY("updated_at");
		date_str(u->updated_at, d);
		mp_s(&pk, d, SW_DATE_LEN);
	}
#undef KEY
	len = sb.size;
	msgpack_sbuffer_destroy(&sb);
	return len;
}
#endif

/* ==== The formats ==== */

/* The compact tricks of sw_pb.h, turned off one at a time. */
static const struct trick {
	unsigned bit;
	const char *key;
	const char *what;
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

enum fmt {
	F_JSON, F_GZIP, F_ZSTD, F_ZSTD_DICT, F_NAIVE, F_PB, F_PB_DICT,
	F_CBOR, F_MSGPACK, F_MAIN, /* the tricks follow */
	F_COUNT = F_MAIN + N_TRICKS + 1
};

static const struct fmt_info {
	const char *key;   /* summary key part: size.<key>_mean */
	const char *label; /* table and plot label */
} fmt_main[F_MAIN] = {
	{ "json", "canonical JSON" },
	{ "json_gzip", "JSON gzip -9" },
	{ "json_zstd", "JSON zstd -19" },
	{ "json_zstd_dict", "JSON zstd -19 + dictionary" },
	{ "naive_protobuf", "naive protobuf" },
	{ "protobuf", "sessionwire protobuf" },
	{ "protobuf_zstd_dict", "sessionwire + zstd dictionary" },
	{ "cbor", "CBOR (libcbor)" },
	{ "msgpack", "MessagePack (msgpack-c)" },
};

typedef struct result {
	bool have[F_COUNT];
	stats st[F_COUNT];
	size_t n;
	size_t dict_json, dict_pb; /* trained dictionary sizes */
	size_t pb_dict_used;       /* messages where the dictionary won */
} result;

/* Key and label of format f (main formats, then tricks, then "all"). */
static void fmt_names(int f, char *key, size_t kcap, char *label, size_t lcap)
{
	if (f < F_MAIN) {
		snprintf(key, kcap, "%s", fmt_main[f].key);
		snprintf(label, lcap, "%s", fmt_main[f].label);
	} else if (f < F_MAIN + (int)N_TRICKS) {
		snprintf(key, kcap, "plain_%s", tricks[f - F_MAIN].key);
		snprintf(label, lcap, "sessionwire without %s",
			 tricks[f - F_MAIN].what);
	} else {
		snprintf(key, kcap, "plain_all");
		snprintf(label, lcap, "sessionwire, no compact trick");
	}
}

#ifdef BENCH_HAVE_zstd
static ZSTD_CDict *cd_json, *cd_pb;
static ZSTD_DDict *dd_json, *dd_pb;
#endif

/* Measures every format over corpus c. */
static void measure(const corpus *c, result *r)
{
	size_t *v[F_COUNT], i, len;
	unsigned all = 0;
	int f;

	memset(r, 0, sizeof(*r));
	r->n = c->n;
	for (f = 0; f < F_COUNT; f++)
		v[f] = xmalloc(c->n * sizeof(size_t));
	for (i = 0; i < N_TRICKS; i++)
		all |= tricks[i].bit;
	for (i = 0; i < c->n; i++) {
		const msg *m = &c->m[i];
		uint8_t buf[PB_MAX];
		sw_error err;
		unsigned k;

		v[F_JSON][i] = m->json_len;
		v[F_PB][i] = m->pb_len;
		v[F_NAIVE][i] = naive_size(m->u);
#ifdef BENCH_HAVE_zlib
		v[F_GZIP][i] = gzip_size(m->json, m->json_len);
#endif
#ifdef BENCH_HAVE_zstd
		v[F_ZSTD][i] = zstd_size(m->json, m->json_len, NULL, NULL);
		v[F_ZSTD_DICT][i] = zstd_size(m->json, m->json_len, cd_json, dd_json);
		len = zstd_size(m->pb, m->pb_len, cd_pb, dd_pb);
		if (len < m->pb_len)
			r->pb_dict_used++;
		v[F_PB_DICT][i] = 1 + (len < m->pb_len ? len : m->pb_len);
#endif
#ifdef BENCH_HAVE_cbor
		v[F_CBOR][i] = cbor_size(m->u);
#endif
#ifdef BENCH_HAVE_msgpack
		v[F_MSGPACK][i] = msgpack_size(m->u);
#endif
		for (k = 0; k <= N_TRICKS; k++) {
			unsigned plain = k < N_TRICKS ? tricks[k].bit : all;
			sw_status st;

			sw_error_clear(&err);
			st = sw_pb_encode_ex(m->u, plain, buf, sizeof(buf), &len, &err);
			if (st != SW_OK)
				die("sw_pb_encode_ex: %s at '%s': %s",
				    sw_errname(st), err.path, err.message);
			v[F_MAIN + k][i] = len;
		}
	}
	for (f = 0; f < F_COUNT; f++) {
		r->have[f] = true;
#ifndef BENCH_HAVE_zlib
		if (f == F_GZIP)
			r->have[f] = false;
#endif
#ifndef BENCH_HAVE_zstd
		if (f == F_ZSTD || f == F_ZSTD_DICT || f == F_PB_DICT)
			r->have[f] = false;
#endif
#ifndef BENCH_HAVE_cbor
		if (f == F_CBOR)
			r->have[f] = false;
#endif
#ifndef BENCH_HAVE_msgpack
		if (f == F_MSGPACK)
			r->have[f] = false;
#endif
		if (r->have[f])
			r->st[f] = stats_of(v[f], c->n);
		free(v[f]);
	}
}

/* ==== Output ==== */

/* The readable table of one corpus. */
static void print_table(FILE *f, const corpus *c, const result *r, bool md)
{
	const stats *js = &r->st[F_JSON];
	char key[64], label[96];
	int i;

	if (md)
		fprintf(f, "\n**%s** (%s, %zu messages)\n\n"
			"| encoding | mean B | median B | p90 B | mean / JSON |\n"
			"| --- | ---: | ---: | ---: | ---: |\n", c->name, c->path, c->n);
	else
		fprintf(f, "\n%s: %s, %zu messages\n  %-52s %8s %8s %8s %8s\n",
			c->name, c->path, c->n, "encoding", "mean", "median",
			"p90", "/JSON");
	for (i = 0; i < F_COUNT; i++) {
		fmt_names(i, key, sizeof(key), label, sizeof(label));
		if (!r->have[i]) {
			fprintf(f, md ? "| %s | not measured (package missing) | | | |\n"
				      : "  %-52s not measured (package missing)\n", label);
			continue;
		}
		fprintf(f, md ? "| %s | %.1f | %.1f | %.0f | %.3f |\n"
			      : "  %-52s %8.1f %8.1f %8.0f %8.3f\n", label,
			r->st[i].mean, r->st[i].median, r->st[i].p90,
			r->st[i].mean / js->mean);
	}
}

/* The "key": value lines of one corpus (prefix "size." or
 * "size.generated."). */
static void print_json(FILE *f, const char *prefix, const result *r)
{
	char key[64], label[96];
	int i;

	for (i = 0; i < F_COUNT; i++) {
		if (!r->have[i])
			continue;
		fmt_names(i, key, sizeof(key), label, sizeof(label));
		fprintf(f, "  \"%s%s_mean\": %.2f,\n", prefix, key, r->st[i].mean);
		if (i >= F_MAIN)
			continue;
		fprintf(f, "  \"%s%s_median\": %.1f,\n  \"%s%s_p90\": %.0f,\n",
			prefix, key, r->st[i].median, prefix, key, r->st[i].p90);
	}
	fprintf(f, "  \"%sratio\": %.4f,\n", prefix,
		r->st[F_PB].mean / r->st[F_JSON].mean);
	if (r->have[F_ZSTD_DICT])
		fprintf(f, "  \"%sprotobuf_vs_json_zstd_dict\": %.4f,\n"
			"  \"%sprotobuf_zstd_dict_used\": %zu,\n", prefix,
			r->st[F_PB].mean / r->st[F_ZSTD_DICT].mean, prefix,
			r->pb_dict_used);
	fprintf(f, "  \"%smessages\": %zu,\n", prefix, r->n);
}

/* The gnuplot data: one row per main format, mean/median/p90 of each
 * corpus. */
static void write_dat(const char *path, const result *r, size_t nr)
{
	FILE *f = fopen(path, "w");
	size_t k;
	int i;

	if (f == NULL)
		die("cannot create %s: %s", path, strerror(errno));
	fprintf(f, "# label");
	for (k = 0; k < nr; k++)
		fprintf(f, " mean%zu median%zu p90_%zu", k, k, k);
	fprintf(f, "\n");
	for (i = 0; i < F_MAIN; i++) {
		if (!r[0].have[i])
			continue;
		fprintf(f, "\"%s\"", fmt_main[i].label);
		for (k = 0; k < nr; k++)
			fprintf(f, " %.2f %.1f %.0f", r[k].st[i].mean,
				r[k].st[i].median, r[k].st[i].p90);
		fprintf(f, "\n");
	}
	if (ferror(f) || fclose(f) != 0)
		die("cannot write %s", path);
}

/* ==== main ==== */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: bench-sizes --train FILE [--corpus NAME=FILE]... [--json FILE]\n"
		"                   [--md FILE] [--dat FILE] [--dict-size N]\n"
		"\n"
		"Bytes per update (mean, median, p90) in every encoding: JSON,\n"
		"gzip, zstd, zstd + dictionary (trained on --train), naive and\n"
		"sessionwire protobuf, CBOR, MessagePack, and sessionwire with each\n"
		"compact trick off. A corpus file holds lines of the vectors or\n"
		"plain JSON bodies. The first corpus's keys are size.<format>_*,\n"
		"the others' size.<NAME>.<format>_*.\n");
}

int main(int argc, char **argv)
{
	corpus cs[MAX_CORPORA], train_c;
	result rs[MAX_CORPORA];
	const char *json_path = NULL, *md_path = NULL, *dat_path = NULL;
	size_t nc = 0, k, dict_size = DEFAULT_DICT_SIZE;
	FILE *jf = NULL, *mf = NULL;
	char prefix[64];
	int i;

	memset(&train_c, 0, sizeof(train_c));
	memset(cs, 0, sizeof(cs));
	for (i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(a, "--help") == 0) {
			usage(stdout);
			return 0;
		} else if (v && strcmp(a, "--train") == 0) {
			train_c.name = "train";
			train_c.path = v;
		} else if (v && strcmp(a, "--corpus") == 0 && strchr(v, '=') &&
			   nc < MAX_CORPORA) {
			char *eq = strchr(argv[i + 1], '=');

			*eq = '\0';
			cs[nc].name = argv[i + 1];
			cs[nc++].path = eq + 1;
		} else if (v && strcmp(a, "--json") == 0) {
			json_path = v;
		} else if (v && strcmp(a, "--md") == 0) {
			md_path = v;
		} else if (v && strcmp(a, "--dat") == 0) {
			dat_path = v;
		} else if (v && strcmp(a, "--dict-size") == 0) {
			char *end;

			errno = 0;
			dict_size = strtoul(v, &end, 10);
			if (errno || *end || dict_size < 1024 || dict_size > (1u << 24))
				die("--dict-size wants 1024..16777216, not '%s'", v);
		} else {
			usage(stderr);
			return 2;
		}
		i++;
	}
	if (train_c.path == NULL || nc == 0) {
		usage(stderr);
		return 2;
	}
	if (json_path && (jf = fopen(json_path, "w")) == NULL)
		die("cannot create %s: %s", json_path, strerror(errno));
	if (md_path && (mf = fopen(md_path, "w")) == NULL)
		die("cannot create %s: %s", md_path, strerror(errno));

	load(&train_c);
	for (k = 0; k < nc; k++)
		load(&cs[k]);
#ifdef BENCH_HAVE_zstd
	{
		void *dj = xmalloc(dict_size), *dp = xmalloc(dict_size);
		size_t nj = train(&train_c, false, dj, dict_size);
		size_t np = train(&train_c, true, dp, dict_size);

		zc = ZSTD_createCCtx();
		zd = ZSTD_createDCtx();
		cd_json = ZSTD_createCDict(dj, nj, 19);
		dd_json = ZSTD_createDDict(dj, nj);
		cd_pb = ZSTD_createCDict(dp, np, 19);
		dd_pb = ZSTD_createDDict(dp, np);
		if (!zc || !zd || !cd_json || !dd_json || !cd_pb || !dd_pb)
			die("zstd: out of memory");
		for (k = 0; k < nc; k++) {
			rs[k].dict_json = nj;
			rs[k].dict_pb = np;
		}
		printf("zstd dictionaries trained on %s (%zu messages): JSON %zu B, "
		       "sessionwire %zu B (asked for %zu B)\n", train_c.path,
		       train_c.n, nj, np, dict_size);
		free(dj);
		free(dp);
	}
#else
	(void)dict_size; /* --dict-size is checked even without zstd */
#endif
	for (k = 0; k < nc; k++) {
		size_t dj = 0, dp = 0;

#ifdef BENCH_HAVE_zstd
		dj = rs[k].dict_json;
		dp = rs[k].dict_pb;
#endif
		measure(&cs[k], &rs[k]);
		rs[k].dict_json = dj;
		rs[k].dict_pb = dp;
		print_table(stdout, &cs[k], &rs[k], false);
		if (mf)
			print_table(mf, &cs[k], &rs[k], true);
	}
	if (jf) {
		fprintf(jf, "{\n");
		for (k = 0; k < nc; k++) {
			if (k == 0)
				snprintf(prefix, sizeof(prefix), "size.");
			else
				snprintf(prefix, sizeof(prefix), "size.%s.", cs[k].name);
			print_json(jf, prefix, &rs[k]);
		}
		fprintf(jf, "  \"size.dict_json_bytes\": %zu,\n"
			"  \"size.dict_protobuf_bytes\": %zu,\n"
			"  \"size.train_messages\": %zu\n}\n", rs[0].dict_json,
			rs[0].dict_pb, train_c.n);
		if (ferror(jf) || fclose(jf) != 0)
			die("cannot write %s", json_path);
	}
	if (mf && (ferror(mf) || fclose(mf) != 0))
		die("cannot write %s", md_path);
	if (dat_path)
		write_dat(dat_path, rs, nc);
#ifdef BENCH_HAVE_zstd
	ZSTD_freeCDict(cd_json);
	ZSTD_freeDDict(dd_json);
	ZSTD_freeCDict(cd_pb);
	ZSTD_freeDDict(dd_pb);
	ZSTD_freeCCtx(zc);
	ZSTD_freeDCtx(zd);
#endif
	for (k = 0; k < nc; k++)
		unload(&cs[k]);
	unload(&train_c);
	return 0;
}
