/* test_device.c - the lean device encoder (sw_device.h) against
 * sw_pb_encode: the same bytes for every update it can express, in any
 * call order; clean failures; no heap. */
#include <CUnit/CUnit.h>
#include <malloc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../codec/pb_wire.h"
#include "sessionwire/sw_device.h"
#include "testutil.h"

/* ==== Randomness (xorshift64*, fixed seed: reproducible) ==== */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rng(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 2685821657736338717ull;
}

static unsigned rnd(unsigned n)
{
	return (unsigned)(rng() % n);
}

/* ==== Driving the device API from an sw_update ==== */

#define TWO53 9007199254740992.0

/* Whether x goes through the integer calls: integral, |x| <= 2^53, not
 * -0. */
static bool is_count(double x)
{
	return x == floor(x) && fabs(x) <= TWO53 && !signbit(x);
}

/* 10^s, exact as doubles. */
static const double p10[16] = {
	1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7,
	1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15
};

static bool same_bits(double a, double b)
{
	return memcmp(&a, &b, sizeof(a)) == 0;
}

/* The smallest scale s (0-15) at which every x[i] is m[i] / 10^s (IEEE
 * division) with |m[i]| < SW_DEV_DEC_LIMIT, or -1; then maybe a larger
 * scale with trailing zeros on m (the device strips them). */
static int dec_scale(const double *x, int n, int64_t *m)
{
	int s, i, k;

	for (s = 0; s <= 15; s++) {
		for (i = 0; i < n; i++) {
			double t = x[i] * p10[s];

			if (!(fabs(t) < (double)SW_DEV_DEC_LIMIT))
				break;
			m[i] = llround(t);
			if (m[i] <= -SW_DEV_DEC_LIMIT || m[i] >= SW_DEV_DEC_LIMIT ||
			    !same_bits((double)m[i] / p10[s], x[i]))
				break;
		}
		if (i == n)
			break;
	}
	if (s > 15)
		return -1;
	for (k = (int)rnd(4); k > 0 && s < 15; k--) {
		for (i = 0; i < n; i++)
			if (llabs(m[i]) * 10 >= SW_DEV_DEC_LIMIT)
				return s;
		for (i = 0; i < n; i++)
			m[i] *= 10;
		s++;
	}
	return s;
}

/* Order of the calls: a permutation of the 12 fields. */
typedef struct order {
	int f[SW_FIELD_COUNT];
} order;

static order order_wire(void)
{
	order o;
	int i;

	for (i = 0; i < SW_FIELD_COUNT; i++)
		o.f[i] = i;
	return o;
}

static order order_random(void)
{
	order o = order_wire();
	int i;

	for (i = SW_FIELD_COUNT - 1; i > 0; i--) {
		int j = (int)rnd((unsigned)i + 1), t = o.f[i];

		o.f[i] = o.f[j];
		o.f[j] = t;
	}
	return o;
}

/* started_at first, the rest in wire order (the documented order). */
static order order_started_first(void)
{
	order o;
	int i, k = 0;

	o.f[k++] = SW_DEV_STARTED_AT;
	for (i = 0; i < SW_FIELD_COUNT; i++)
		if (i != SW_DEV_STARTED_AT)
			o.f[k++] = i;
	return o;
}

/* Feeds u to the device encoder in order o. numbers: 0 sends integers
 * through the integer calls, 1 every number as a double (sw_dev_number,
 * sw_dev_trio_number), 2 decimals through sw_dev_dec and
 * sw_dev_trio_dec (the rest as doubles). */
static sw_status dev_encode(const sw_update *u, const order *o, int numbers,
			    uint8_t *buf, size_t cap, size_t *len, sw_dev *w)
{
	const sw_str *ids[SW_FIELD_COUNT] = {
		[SW_DEV_ID] = &u->id, [SW_DEV_EXTERNAL_ID] = &u->external_id,
		[SW_DEV_WORKSPACE_ID] = &u->workspace_id,
		[SW_DEV_PROJECT_ID] = &u->project_id,
	};
	int i, sc;

	sw_dev_begin(w, buf, cap);
	for (i = 0; i < SW_FIELD_COUNT; i++) {
		sw_dev_field f = (sw_dev_field)o->f[i];
		const double *t;
		int64_t m[3];
		bool sum;
		double x;

		if (!(u->has & (1u << f)))
			continue;
		switch (f) {
		case SW_DEV_ID: case SW_DEV_EXTERNAL_ID:
		case SW_DEV_WORKSPACE_ID: case SW_DEV_PROJECT_ID:
			if (f == SW_DEV_PROJECT_ID && u->project_id_null)
				sw_dev_project_id_null(w);
			else
				sw_dev_id(w, f, ids[f]->ptr, ids[f]->len);
			break;
		case SW_DEV_DURATION: case SW_DEV_TRACES_COUNT:
			x = f == SW_DEV_DURATION ? u->duration : u->traces_count;
			if (numbers == 2 && (sc = dec_scale(&x, 1, m)) >= 0)
				sw_dev_dec(w, f, m[0], (unsigned)sc);
			else if (!numbers && is_count(x))
				sw_dev_count(w, f, (int64_t)x);
			else
				sw_dev_number(w, f, x);
			break;
		case SW_DEV_BILLING: case SW_DEV_USAGE:
			t = f == SW_DEV_BILLING ? u->billing : u->usage;
			/* a total that is the double sum: SW_DEV_SUM */
			sum = same_bits(t[0] + t[1], t[2]) && rnd(4);
			if (numbers == 2 && (sc = dec_scale(t, 3 - sum, m)) >= 0)
				sw_dev_trio_dec(w, f, m[0], m[1],
						sum ? SW_DEV_SUM : m[2],
						(unsigned)sc);
			else if (!numbers && is_count(t[0]) && is_count(t[1]) &&
			    (sum || is_count(t[2])))
				sw_dev_trio(w, f, (int64_t)t[0], (int64_t)t[1],
					    sum ? SW_DEV_SUM : (int64_t)t[2]);
			else
				sw_dev_trio_number(w, f, t[0], t[1], t[2]);
			break;
		case SW_DEV_CONTACT_IDS:
			sw_dev_list(w, f, u->contact_ids, u->n_contact_ids);
			break;
		case SW_DEV_TAGS:
			sw_dev_list(w, f, u->tags, u->n_tags);
			break;
		default:
			sw_dev_time(w, f, f == SW_DEV_STARTED_AT ? u->started_at
							       : u->updated_at);
			break;
		}
	}
	return sw_dev_end(w, len);
}

/* Updates same_as_pb saw encode (not rejected by both). */
static int n_encoded;

/* Compares the device bytes with sw_pb_encode's for u in order o;
 * prints the first few differences. Returns 1 when equal. */
static int same_as_pb(const sw_update *u, const order *o, int numbers,
		      const char *what)
{
	static int shown;
	uint8_t want[4096], got[4096];
	size_t want_len = 0, got_len = 0;
	sw_status ws, gs;
	sw_dev w;

	ws = sw_pb_encode(u, want, sizeof(want), &want_len, NULL);
	gs = dev_encode(u, o, numbers, got, sizeof(got), &got_len, &w);
	n_encoded += ws == SW_OK;
	if (ws == gs && (ws != SW_OK || (want_len == got_len &&
					 memcmp(want, got, got_len) == 0)))
		return 1;
	if (shown++ < 5) {
		char *a = tu_hex(want, want_len), *b = tu_hex(got, got_len);

		fprintf(stderr, "\n%s: pb_encode %s %s\n       device    %s %s "
			"(field %d)\n", what, sw_errname(ws), a, sw_errname(gs),
			b, w.field);
		free(a);
		free(b);
	}
	return 0;
}

/* ==== Every vector line ==== */

static void device_matches_pb_encode_on_every_vector(void)
{
	static const char *const files[] = { "typical.jsonl", "sdk_wire.jsonl" };
	int fi;

	for (fi = 0; fi < 2; fi++) {
		tu_vector *v = NULL;
		int n = tu_vectors_load(files[fi], &v), i, parsed = 0, same = 0;

		CU_ASSERT_TRUE_FATAL(n > 0);
		for (i = 0; i < n; i++) {
			sw_update *u = NULL;
			order o1 = order_wire(), o2 = order_started_first(),
			      o3 = order_random();
			char what[64];

			if (sw_json_parse(v[i].wire, v[i].wire_len, NULL, &u,
					  NULL) != SW_OK)
				continue;
			parsed++;
			snprintf(what, sizeof(what), "%s:%d", files[fi],
				 v[i].line);
			same += same_as_pb(u, &o1, 0, what) &&
				same_as_pb(u, &o2, 0, what) &&
				same_as_pb(u, &o3, 0, what) &&
				same_as_pb(u, &o3, 1, what) &&
				same_as_pb(u, &o2, 2, what);
			sw_update_free(u);
		}
		CU_ASSERT_EQUAL(parsed, n); /* every line is a valid update */
		CU_ASSERT_EQUAL(same, parsed);
		tu_vectors_free(v, n);
	}
}

/* ==== Random updates ==== */

/* Strings the random updates point into. */
typedef struct rnd_store {
	char text[48][40];
	int n_text;
	sw_str contacts[6], tags[5];
} rnd_store;

/* A ULID of time t (or random), a UUID, near misses, or text. */
static sw_str rnd_id(rnd_store *s, bool has_t, int64_t t)
{
	char *p = s->text[s->n_text++ % 48];
	uint8_t raw[16];
	size_t n;
	int i;

	for (i = 0; i < 16; i++)
		raw[i] = (uint8_t)rng();
	switch (rnd(8)) {
	case 0: case 1: /* a ULID of started_at's time (if any) */
		if (has_t && t >= 0 && t < ((int64_t)1 << 48))
			for (i = 0; i < 6; i++)
				raw[i] = (uint8_t)((uint64_t)t >> (40 - 8 * i));
		sw_ulid_format(raw, p);
		return (sw_str){ p, SW_ULID_LEN };
	case 2:
		sw_ulid_format(raw, p);
		return (sw_str){ p, SW_ULID_LEN };
	case 3:
		sw_uuid_format(raw, p);
		return (sw_str){ p, SW_UUID_LEN };
	case 4: /* near misses: one character off */
		if (rnd(2)) {
			sw_ulid_format(raw, p);
			n = SW_ULID_LEN;
			p[rnd(SW_ULID_LEN)] = "ILOUa8-"[rnd(7)];
		} else {
			sw_uuid_format(raw, p);
			n = SW_UUID_LEN;
			p[rnd(SW_UUID_LEN)] = "AFg-x0"[rnd(6)];
		}
		return (sw_str){ p, n };
	case 5: /* a first ULID character over 7 */
		sw_ulid_format(raw, p);
		p[0] = "89ZA"[rnd(4)];
		return (sw_str){ p, SW_ULID_LEN };
	case 6:
		memcpy(p, "d\xc3\xa9v-\xe2\x82\xac", 9);
		return (sw_str){ p, rnd(10) };
	default:
		n = rnd(30);
		for (i = 0; i < (int)n; i++)
			p[i] = (char)('a' + rnd(26));
		return (sw_str){ p, n };
	}
}

/* Numbers of every form and the edges of the integer calls. */
static double rnd_num(void)
{
	static const double pw[] = { 1e1, 1e2, 1e3, 1e4, 1e6, 1e9, 1e15 };
	int64_t m = (int64_t)(rng() >> rnd(64));
	double x;

	switch (rnd(9)) {
	case 0:
		return (double)rnd(1000);
	case 1:
		return (double)(m % 100000000) * (rnd(2) ? 1 : -1);
	case 2: /* around 2^53 */
		return TWO53 + (double)((int)rnd(9) - 4) * (rnd(2) ? 1 : 2);
	case 3:
		return -TWO53 - (double)rnd(5);
	case 4:
		return (double)(m % 10000000) / pw[rnd(7)];
	case 5:
		return (double)(m % 10000000) * (1 / pw[rnd(7)]);
	case 6:
		return rnd(2) ? -0.0 : 0.0;
	case 7:
		memcpy(&x, &m, sizeof(x));
		return isfinite(x) ? x : 1.5;
	default:
		return ldexp((double)(rng() >> 11), (int)rnd(80) - 20);
	}
}

static int64_t rnd_date(void)
{
	switch (rnd(4)) {
	case 0:
		return (int64_t)(rng() % 2000000000000);
	case 1:
		return SW_DATE_MIN_MS + (int64_t)(rng() % (uint64_t)
					(SW_DATE_MAX_MS - SW_DATE_MIN_MS + 1));
	case 2:
		return rnd(2) ? SW_DATE_MIN_MS : SW_DATE_MAX_MS;
	default:
		return 1748282246708LL + (int64_t)rnd(100000);
	}
}

/* Billing or usage: often a total that is the sum. */
static void rnd_trio(double t[3])
{
	t[0] = rnd_num();
	t[1] = rnd_num();
	t[2] = rnd(2) && isfinite(t[0] + t[1]) ? t[0] + t[1] : rnd_num();
	if (rnd(4) == 0) { /* integers whose sum rounds past 2^53 */
		t[0] = TWO53 - (double)rnd(4);
		t[1] = (double)rnd(8);
		t[2] = t[0] + t[1] + (double)((int)rnd(3) - 1);
	}
}

/* A random valid update. */
static void rnd_update(sw_update *u, rnd_store *s)
{
	int64_t t = rnd_date();
	bool has_t = rnd(10) < 7;
	double x[3];
	sw_str id;
	size_t i, n;
	int kind;

	s->n_text = 0;
	sw_update_init(u);
	if (has_t)
		sw_update_set_started_at(u, t);
	if (rnd(2)) {
		id = rnd_id(s, has_t, t);
		sw_update_set_id(u, id.ptr, id.len);
	}
	if (rnd(2)) {
		id = rnd_id(s, has_t, t);
		sw_update_set_external_id(u, id.ptr, id.len);
	}
	if (rnd(2)) {
		id = rnd_id(s, has_t, t);
		sw_update_set_workspace_id(u, id.ptr, id.len);
	}
	if (rnd(3) == 0) {
		sw_update_set_project_id_null(u);
	} else if (rnd(2)) {
		id = rnd_id(s, has_t, t);
		sw_update_set_project_id(u, id.ptr, id.len);
	}
	if (rnd(3))
		sw_update_set_duration(u, rnd(2) ? (double)rnd(10000000)
					       : rnd_num());
	if (rnd(2))
		sw_update_set_traces_count(u, rnd_num());
	if (rnd(2)) {
		rnd_trio(x);
		sw_update_set_billing(u, x[0], x[1], x[2]);
	}
	if (rnd(2)) {
		rnd_trio(x);
		sw_update_set_usage(u, x[0], x[1], x[2]);
	}
	if (rnd(2)) {
		n = rnd(7);
		kind = (int)rnd(3);
		for (i = 0; i < n; i++) {
			char *p = s->text[s->n_text++ % 48];
			uint8_t raw[16];
			int k;

			s->contacts[i] = rnd_id(s, has_t, t);
			if (kind == 2 || rnd(8) == 0)
				continue; /* mixed */
			for (k = 0; k < 16; k++)
				raw[k] = (uint8_t)rng();
			if (kind == 0) {
				if (has_t && t >= 0 && rnd(2))
					for (k = 0; k < 6; k++)
						raw[k] = (uint8_t)((uint64_t)t >>
								   (40 - 8 * k));
				sw_ulid_format(raw, p);
				s->contacts[i] = (sw_str){ p, SW_ULID_LEN };
			} else {
				sw_uuid_format(raw, p);
				s->contacts[i] = (sw_str){ p, SW_UUID_LEN };
			}
		}
		sw_update_set_contact_ids(u, s->contacts, n);
	}
	if (rnd(2)) {
		n = rnd(5);
		for (i = 0; i < n; i++)
			s->tags[i] = rnd_id(s, false, 0);
		sw_update_set_tags(u, s->tags, n);
	}
	if (rnd(3)) {
		int64_t v = rnd_date();

		if (has_t && rnd(3)) { /* near started_at, often its end */
			v = t + (int64_t)rnd(5000000) - (int64_t)rnd(3);
			if ((u->has & SW_F_DURATION) && rnd(2) &&
			    u->duration == floor(u->duration) &&
			    fabs(u->duration) < 1e13)
				v = t + (int64_t)u->duration;
			if (v > SW_DATE_MAX_MS || v < SW_DATE_MIN_MS)
				v = t;
		}
		sw_update_set_updated_at(u, v);
	}
}

static void device_matches_pb_encode_on_random_updates(void)
{
	int i, n = tu_quick ? 3000 : 40000, same = 0;
	rnd_store s;
	sw_update u;

	n_encoded = 0;
	for (i = 0; i < n; i++) {
		order o = rnd(3) == 0 ? order_started_first() : order_random();
		char what[32];

		rnd_update(&u, &s);
		snprintf(what, sizeof(what), "random #%d", i);
		same += same_as_pb(&u, &o, (int)rnd(3), what);
	}
	CU_ASSERT_EQUAL(same, n);
	/* most are valid (a few carry cut UTF-8 on purpose) */
	CU_ASSERT_TRUE(n_encoded > n * 8 / 10);
	printf("\n    %d random updates, %d valid: same bytes ", n, n_encoded);
}

/* ==== Decimals without floating point ==== */

/* A mantissa for sw_dev_trio_dec: every magnitude up to the limit. */
static int64_t rnd_mantissa(void)
{
	int64_t m;

	switch (rnd(4)) {
	case 0:
		m = (int64_t)rnd(1000);
		break;
	case 1:
		m = SW_DEV_DEC_LIMIT - 1 - (int64_t)rnd(3);
		break;
	default:
		m = (int64_t)(rng() >> (15 + rnd(49)));
		break;
	}
	if (rnd(4) == 0)
		m = -m;
	return m;
}

static void device_decimals_match_pb_encode(void)
{
	int i, n = tu_quick ? 20000 : 300000, same = 0, sums = 0, kept = 0;

	for (i = 0; i < n; i++) {
		int64_t a = rnd_mantissa(), b = rnd_mantissa(), t = a + b;
		unsigned sc = rnd(16);
		double x[3];
		uint8_t want[64], got[64];
		size_t wl = 0, gl = 0;
		sw_update u;
		sw_dev w;

		if (rnd(3) == 0)
			t = rnd(2) ? rnd_mantissa() : t + (int64_t)rnd(3) - 1;
		if (t <= -SW_DEV_DEC_LIMIT || t >= SW_DEV_DEC_LIMIT)
			t = a;
		x[0] = (double)a / p10[sc];
		x[1] = (double)b / p10[sc];
		x[2] = (double)t / p10[sc];
		if (t == a + b) /* both outcomes of the total-is-sum rule */
			kept += !same_bits(x[0] + x[1], x[2]), sums++;
		sw_update_init(&u);
		sw_update_set_billing(&u, x[0], x[1], x[2]);
		sw_update_set_duration(&u, x[i % 3]);
		sw_dev_begin(&w, got, sizeof(got));
		sw_dev_trio_dec(&w, SW_DEV_BILLING, a, b, t, sc);
		sw_dev_dec(&w, SW_DEV_DURATION, i % 3 == 0 ? a : i % 3 == 1 ? b : t,
			   sc);
		if (sw_pb_encode(&u, want, sizeof(want), &wl, NULL) == SW_OK &&
		    sw_dev_end(&w, &gl) == SW_OK && wl == gl &&
		    memcmp(want, got, gl) == 0) {
			same++;
		} else if (n - same <= 5) {
			fprintf(stderr, "\ndecimals %lld %lld %lld / 10^%u differ\n",
				(long long)a, (long long)b, (long long)t, sc);
		}
	}
	CU_ASSERT_EQUAL(same, n);
	CU_ASSERT_TRUE(sums - kept > n / 20); /* total left out */
	CU_ASSERT_TRUE(kept > n / 100);       /* 0.1 + 0.2: total sent */
	printf("\n    %d decimal trios, %d with total = in + out (%d of them "
	       "not the double sum) ", n, sums, kept);
}

static void device_decimals_reject_out_of_range(void)
{
	static const struct {
		int64_t m;
		unsigned scale;
	} bad[] = {
		{ SW_DEV_DEC_LIMIT, 2 }, { -SW_DEV_DEC_LIMIT, 0 },
		{ INT64_MIN, 3 }, { 1, 16 }, { 5, 99 },
	};
	uint8_t buf[32];
	size_t i, len;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		sw_dev w;

		sw_dev_begin(&w, buf, sizeof(buf));
		sw_dev_dec(&w, SW_DEV_TRACES_COUNT, bad[i].m, bad[i].scale);
		CU_ASSERT_EQUAL(sw_dev_end(&w, &len), SW_ERANGE);
		CU_ASSERT_EQUAL(w.field, SW_DEV_TRACES_COUNT);
		sw_dev_begin(&w, buf, sizeof(buf));
		sw_dev_trio_dec(&w, SW_DEV_USAGE, bad[i].m, 2, 3, bad[i].scale);
		CU_ASSERT_EQUAL(sw_dev_end(&w, &len), SW_ERANGE);
		CU_ASSERT_EQUAL(w.field, SW_DEV_USAGE);
	}
}

/* ==== Chosen forms ==== */

/* The device bytes of a small update in the documented order. */
static size_t dev_bytes(const sw_update *u, int numbers, uint8_t *out,
			size_t cap)
{
	order o = order_started_first();
	size_t len = 0;
	sw_dev w;

	CU_ASSERT_EQUAL(dev_encode(u, &o, numbers, out, cap, &len, &w), SW_OK);
	return len;
}

static void device_writes_expected_bytes(void)
{
	static const sw_str tags[1] = { { "edge", 4 } };
	uint8_t b[256];
	sw_update u;
	size_t n;
	char *hex;

	/* the bench message: text id, ints, total left out, IS_END flag */
	sw_update_init(&u);
	sw_update_set_external_id(&u, "dev-a8346607363a", 16);
	sw_update_set_duration(&u, 1358072);
	sw_update_set_usage(&u, 2894, 987, 3881);
	sw_update_set_traces_count(&u, 171);
	sw_update_set_tags(&u, tags, 1);
	sw_update_set_started_at(&u, 1748282246708LL);
	sw_update_set_updated_at(&u, 1748282246708LL + 1358072);
	n = dev_bytes(&u, 0, b, sizeof(b));
	hex = tu_hex(b, n);
	CU_ASSERT_STRING_EQUAL(hex, "1a10" "6465762d6138333436363037333633"
			       "61" "20f0e3a501" "3a06089c2d20b60f" "40d602"
			       "4a0465646765" "60e898f0dbe165" "7808");
	free(hex);

	/* a ULID of started_at's time: 10 bytes in either order */
	sw_update_init(&u);
	sw_update_set_started_at(&u, 1);
	sw_update_set_id(&u, "00000000010000000000000000", 26);
	n = dev_bytes(&u, 0, b, sizeof(b));
	hex = tu_hex(b, n);
	CU_ASSERT_STRING_EQUAL(hex, "0a0a00000000000000000000" "6002");
	free(hex);
}

/* SW_DEV_SUM: the SDK's total (the double sum) is left out, and an
 * explicit total that is not the double sum is sent. */
static void device_sum_total_is_left_out(void)
{
	uint8_t want[64], got[64];
	size_t wl, gl;
	int k;

	for (k = 0; k < 3; k++) {
		double in = 0.0004341, out = 0.009;
		sw_update u;
		sw_dev w;

		sw_update_init(&u);
		sw_update_set_billing(&u, in, out, k == 2 ? 0.0094341 : in + out);
		CU_ASSERT_EQUAL(sw_pb_encode(&u, want, sizeof(want), &wl, NULL),
				SW_OK);
		sw_dev_begin(&w, got, sizeof(got));
		if (k == 0) /* in + out = 0.009434099999999999 */
			sw_dev_trio_dec(&w, SW_DEV_BILLING, 4341, 90000,
					SW_DEV_SUM, 7);
		else if (k == 1) /* 0.0004341 = 4341 / 10^7 = 43410 / 10^8 */
			sw_dev_trio_dec(&w, SW_DEV_BILLING, 43410, 900000,
					SW_DEV_SUM, 8);
		else /* 0.0094341 is not the double sum: sent */
			sw_dev_trio_dec(&w, SW_DEV_BILLING, 4341, 90000, 94341,
					7);
		CU_ASSERT_EQUAL_FATAL(sw_dev_end(&w, &gl), SW_OK);
		CU_ASSERT_EQUAL(gl, wl);
		CU_ASSERT_EQUAL(memcmp(got, want, wl), 0);
		/* tag, length; 0.0004341 in 4 bytes, 0.009 in 3 (9 / 10^3); the
		 * total 0.0094341 in 5 */
		CU_ASSERT_EQUAL(gl, k == 2 ? 14u : 9u);
	}
}

/* ==== Failures ==== */

static void device_small_buffers_fail_cleanly(void)
{
	uint8_t want[2048], buf[2048 + 16];
	int i, k, bad = 0, checked = 0;
	rnd_store s;
	sw_update u;

	for (i = 0; i < (tu_quick ? 40 : 300); i++) {
		order o = order_started_first();
		size_t len, cap, got;
		sw_dev w;

		rnd_update(&u, &s);
		if (sw_pb_encode(&u, want, sizeof(want), &len, NULL) != SW_OK)
			continue;
		for (cap = 0; cap <= len; cap++) {
			memset(buf, 0xA5, sizeof(buf));
			got = 99;
			sw_status st = dev_encode(&u, &o, 0, cap ? buf : NULL,
						  cap, &got, &w);

			for (k = (int)cap; k < (int)cap + 16; k++)
				bad += buf[k] != 0xA5; /* nothing past cap */
			if (cap < len)
				bad += st != SW_EBUFSZ || got != 0 ||
				       w.field < -1 || w.field > 11;
			else
				bad += st != SW_OK || got != len ||
				       memcmp(buf, want, len) != 0;
			checked++;
		}
	}
	CU_ASSERT_TRUE(checked > 1000);
	CU_ASSERT_EQUAL(bad, 0);
}

static void device_rejects_bad_values_table(void)
{
	static const sw_str bad_utf8[2] = { { "ok", 2 }, { "\xc3(", 2 } };
	static const sw_str null_item[1] = { { NULL, 3 } };
	static char big[SW_DEFAULT_MAX_STRING + 1];
	uint8_t buf[64];
	size_t len = 7;
	int c;

	for (c = 0; c < 16; c++) {
		sw_status want = SW_OK;
		int field = 0;
		sw_dev w;

		sw_dev_begin(&w, buf, sizeof(buf));
		switch (c) {
		case 0:
			sw_dev_number(&w, SW_DEV_DURATION, NAN);
			want = SW_ERANGE, field = SW_DEV_DURATION;
			break;
		case 1:
			sw_dev_trio_number(&w, SW_DEV_BILLING, 1, INFINITY, 2);
			want = SW_ERANGE, field = SW_DEV_BILLING;
			break;
		case 2:
			sw_dev_count(&w, SW_DEV_TRACES_COUNT,
				     SW_DEV_MAX_COUNT + 1);
			want = SW_ERANGE, field = SW_DEV_TRACES_COUNT;
			break;
		case 3:
			sw_dev_trio(&w, SW_DEV_USAGE, 1, -SW_DEV_MAX_COUNT - 1,
				    0);
			want = SW_ERANGE, field = SW_DEV_USAGE;
			break;
		case 4:
			sw_dev_id(&w, SW_DEV_WORKSPACE_ID, "a\xff", 2);
			want = SW_EUTF8, field = SW_DEV_WORKSPACE_ID;
			break;
		case 5:
			sw_dev_list(&w, SW_DEV_TAGS, bad_utf8, 2);
			want = SW_EUTF8, field = SW_DEV_TAGS;
			break;
		case 6:
			sw_dev_id(&w, SW_DEV_ID, big, sizeof(big));
			want = SW_ETOOBIG, field = SW_DEV_ID;
			break;
		case 7:
			sw_dev_list(&w, SW_DEV_CONTACT_IDS, null_item, 1);
			want = SW_EINVAL, field = SW_DEV_CONTACT_IDS;
			break;
		case 8:
			sw_dev_list(&w, SW_DEV_TAGS, NULL, 2);
			want = SW_EINVAL, field = SW_DEV_TAGS;
			break;
		case 9:
			sw_dev_list(&w, SW_DEV_TAGS, bad_utf8,
				    SW_DEFAULT_MAX_ITEMS + 1);
			want = SW_ETOOBIG, field = SW_DEV_TAGS;
			break;
		case 10:
			sw_dev_time(&w, SW_DEV_UPDATED_AT, SW_DATE_MAX_MS + 1);
			want = SW_EDATE, field = SW_DEV_UPDATED_AT;
			break;
		case 11:
			sw_dev_time(&w, SW_DEV_STARTED_AT, SW_DATE_MIN_MS - 1);
			want = SW_EDATE, field = SW_DEV_STARTED_AT;
			break;
		case 12: /* a field twice */
			sw_dev_count(&w, SW_DEV_DURATION, 1);
			sw_dev_number(&w, SW_DEV_DURATION, 1.5);
			want = SW_EDUP, field = SW_DEV_DURATION;
			break;
		case 13:
			sw_dev_id(&w, SW_DEV_PROJECT_ID, "p", 1);
			sw_dev_project_id_null(&w);
			want = SW_EDUP, field = SW_DEV_PROJECT_ID;
			break;
		case 14: /* a field the call does not take */
			sw_dev_count(&w, SW_DEV_TAGS, 1);
			want = SW_EINVAL, field = SW_DEV_TAGS;
			break;
		default:
			sw_dev_time(&w, (sw_dev_field)12, 0);
			want = SW_EINVAL, field = 12;
			break;
		}
		/* the first error sticks: later calls change nothing */
		sw_dev_count(&w, SW_DEV_TAGS, 1);
		sw_dev_time(&w, SW_DEV_STARTED_AT, SW_DATE_MAX_MS + 5);
		CU_ASSERT_EQUAL(sw_dev_end(&w, &len), want);
		CU_ASSERT_EQUAL(w.status, want);
		CU_ASSERT_EQUAL(w.field, field);
		CU_ASSERT_EQUAL(len, 0);
		if (w.status != want || w.field != field)
			fprintf(stderr, "\ncase %d: %s field %d\n", c,
				sw_errname(w.status), w.field);
	}
}

static void device_end_finishes_the_message_once(void)
{
	uint8_t buf[32];
	size_t len = 0, len2 = 5;
	sw_dev w;

	sw_dev_begin(&w, buf, sizeof(buf));
	sw_dev_count(&w, SW_DEV_TRACES_COUNT, 3);
	sw_dev_time(&w, SW_DEV_STARTED_AT, 0);
	CU_ASSERT_EQUAL(sw_dev_end(&w, &len), SW_OK);
	CU_ASSERT_EQUAL(len, 4); /* 40 06 60 00 */
	sw_dev_id(&w, SW_DEV_ID, "x", 1); /* nothing is added after */
	CU_ASSERT_EQUAL(w.status, SW_EINVAL);
	CU_ASSERT_EQUAL(w.field, SW_DEV_ID);
	CU_ASSERT_EQUAL(sw_dev_end(&w, &len2), SW_EINVAL);
	CU_ASSERT_EQUAL(len2, 0);
	CU_ASSERT_EQUAL(memcmp(buf, "\x40\x06\x60\x00", 4), 0);
	sw_dev_begin(&w, buf, sizeof(buf));
	CU_ASSERT_EQUAL(sw_dev_end(&w, &len), SW_OK);
	CU_ASSERT_EQUAL(sw_dev_end(&w, &len2), SW_EINVAL);
	CU_ASSERT_EQUAL(w.field, -1);
}

/* Values sw_pb_encode rejects are rejected alike (the same code). */
static void device_rejects_what_pb_encode_rejects(void)
{
	static const sw_str bad_contact[2] = { { "x", 1 }, { "\xed\xa0\x80", 3 } };
	int c, same = 0;

	for (c = 0; c < 6; c++) {
		order o = order_random();
		sw_update u;

		sw_update_init(&u);
		sw_update_set_started_at(&u, 0);
		switch (c) {
		case 0:
			sw_update_set_duration(&u, -INFINITY);
			break;
		case 1:
			sw_update_set_usage(&u, 1, 2, NAN);
			break;
		case 2:
			sw_update_set_contact_ids(&u, bad_contact, 2);
			break;
		case 3:
			sw_update_set_external_id(&u, "\xc0\xaf", 2);
			break;
		case 4:
			sw_update_set_updated_at(&u, SW_DATE_MAX_MS + 1);
			break;
		default:
			sw_update_set_project_id(&u, NULL, 4);
			break;
		}
		same += same_as_pb(&u, &o, 0, "bad value");
		same += same_as_pb(&u, &o, 1, "bad value");
	}
	CU_ASSERT_EQUAL(same, 12);
}

/* ==== No heap, no floating point in the integer calls ==== */

/* Undefined symbols of the device object, one line each, into out. */
static void undefined_symbols(char *out, size_t cap)
{
	char exe[4096], cmd[8192], line[256];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	size_t used = 0;
	char *slash;
	FILE *f;

	out[0] = '\0';
	CU_ASSERT_TRUE_FATAL(n > 0);
	exe[n] = '\0';
	slash = strrchr(exe, '/');
	CU_ASSERT_PTR_NOT_NULL_FATAL(slash);
	*slash = '\0';
	snprintf(cmd, sizeof(cmd), "nm -u '%s/codec/device.o' 2>/dev/null",
		 exe);
	f = popen(cmd, "r");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	while (fgets(line, sizeof(line), f) != NULL) {
		char *sym = strrchr(line, ' ');
		size_t k;

		sym = sym ? sym + 1 : line;
		k = strlen(sym);
		if (used + k + 1 < cap) {
			memcpy(out + used, sym, k + 1);
			used += k;
		}
	}
	CU_ASSERT_EQUAL(pclose(f), 0);
}

static void device_uses_no_heap(void)
{
	static const char *const allowed[] = {
		"memmove\n", "memset\n", "memcmp\n", "memcpy\n",
		"sw__utf8_check\n", "sw__pb_num_choose\n", "__", NULL
	};
	struct mallinfo2 before, after;
	char syms[4096], *p;
	uint8_t buf[2048];
	int i, k, n_ok = 0, count = 0;
	rnd_store s;
	sw_update u;

	/* statically: the object calls no allocator, no stdio, no libm */
	undefined_symbols(syms, sizeof(syms));
	for (p = syms; *p; p = strchr(p, '\n') + 1) {
		bool ok = false;

		for (k = 0; allowed[k] != NULL; k++)
			ok = ok || strncmp(p, allowed[k], strlen(allowed[k])) == 0;
		if (!ok)
			fprintf(stderr, "\ndevice.o calls %.*s\n",
				(int)strcspn(p, "\n"), p);
		CU_ASSERT_TRUE(ok);
		count++;
	}
	CU_ASSERT_TRUE(count > 0);
	/* dynamically: the heap does not move while encoding */
	before = mallinfo2();
	for (i = 0; i < 2000; i++) {
		order o = order_random();
		size_t len;
		sw_dev w;

		rnd_update(&u, &s);
		n_ok += dev_encode(&u, &o, i & 1, buf, sizeof(buf), &len, &w) ==
		      SW_OK;
	}
	after = mallinfo2();
	CU_ASSERT_TRUE(n_ok > 1500); /* after mallinfo2: CUnit allocates */
	CU_ASSERT_EQUAL(before.uordblks, after.uordblks);
	CU_ASSERT_EQUAL(before.hblkhd, after.hblkhd);
	CU_ASSERT_EQUAL(before.arena, after.arena);
}

int init_device_tests(void)
{
	CU_pSuite s = CU_add_suite("device", NULL, NULL);

	if (s == NULL)
		return -1;
	CU_add_test(s, "device_writes_expected_bytes", device_writes_expected_bytes);
	CU_add_test(s, "device_matches_pb_encode_on_every_vector", device_matches_pb_encode_on_every_vector);
	CU_add_test(s, "device_matches_pb_encode_on_random_updates", device_matches_pb_encode_on_random_updates);
	CU_add_test(s, "device_decimals_match_pb_encode", device_decimals_match_pb_encode);
	CU_add_test(s, "device_decimals_reject_out_of_range", device_decimals_reject_out_of_range);
	CU_add_test(s, "device_sum_total_is_left_out", device_sum_total_is_left_out);
	CU_add_test(s, "device_small_buffers_fail_cleanly", device_small_buffers_fail_cleanly);
	CU_add_test(s, "device_rejects_bad_values_table", device_rejects_bad_values_table);
	CU_add_test(s, "device_end_finishes_the_message_once", device_end_finishes_the_message_once);
	CU_add_test(s, "device_rejects_what_pb_encode_rejects", device_rejects_what_pb_encode_rejects);
	CU_add_test(s, "device_uses_no_heap", device_uses_no_heap);
	return 0;
}
