/* gen_corpus.c - a larger realistic corpus of update bodies, for the size
 * benchmark (bench-sizes) and its zstd dictionary training.
 *
 * Modelled on tests/vectors/typical.jsonl (200 updates made with the
 * official SDK): the same fields with the same frequencies and value
 * styles, measured there once and written down below:
 *
 *  - ids are ULIDs whose time is started_at when there is one, external
 *    ids half ULIDs and half "dev-" + 12 hex digits, contact ids share the
 *    time of started_at or of the external id, workspace ids are ULIDs of
 *    mid-2024 and project ids ULIDs of early 2025 (a fifth of them null);
 *  - durations and counts are integers; costs are token counts times a
 *    price per token (IEEE products, so 0.0035979999999999996 happens),
 *    totals are in + out;
 *  - updated_at is started_at + duration most of the time.
 *
 * Output: one canonical JSON body per line (sw_json_write), deterministic
 * for a given --seed (xorshift64*, no libc rand).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sessionwire/sessionwire.h"

#define MAX_LIST 4
#define MAX_COUNT 10000000UL

static uint64_t rng_state;

/* Prints a message and exits. */
static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;

	fputs("bench-gen_corpus: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

/* ==== Random numbers (xorshift64*) ==== */

/* Next 64 random bits. */
static uint64_t rnd(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545F4914F6CDD1DULL;
}

/* Uniform integer in lo..hi (hi - lo small next to 2^64). */
static int64_t rnd_range(int64_t lo, int64_t hi)
{
	return lo + (int64_t)(rnd() % (uint64_t)(hi - lo + 1));
}

/* True with probability p. */
static bool chance(double p)
{
	return (double)(rnd() >> 11) * 0x1p-53 < p;
}

/* Index drawn with the given integer weights. */
static size_t pick(const unsigned *w, size_t n)
{
	unsigned total = 0, r;
	size_t i;

	for (i = 0; i < n; i++)
		total += w[i];
	r = (unsigned)(rnd() % total);
	for (i = 0; i + 1 < n; i++) {
		if (r < w[i])
			return i;
		r -= w[i];
	}
	return n - 1;
}

/* ==== Values ==== */

/* 2025-05-25T00:00:00Z and friends, in ms. */
#define T_MAY25 1748131200000LL
#define T_DAY 86400000LL
#define T_WS 1721865600000LL   /* 2024-07-25: workspace ids */
#define T_PROJ 1738800000000LL /* 2025-02-06: project ids */

/* One message's strings live here until it is written. */
typedef struct scratch {
	char id[4][SW_ULID_LEN];
	char ext[SW_ULID_LEN];
	char contacts[MAX_LIST][SW_ULID_LEN];
	sw_str contact_list[MAX_LIST];
	sw_str tag_list[MAX_LIST];
} scratch;

/* A ULID of time ms with 80 random bits, into out. */
static void make_ulid(int64_t ms, char out[SW_ULID_LEN])
{
	uint8_t raw[16];
	uint64_t r1 = rnd(), r2 = rnd();
	int i;

	for (i = 5; i >= 0; i--, ms >>= 8)
		raw[i] = (uint8_t)ms;
	for (i = 0; i < 8; i++)
		raw[6 + i] = (uint8_t)(r1 >> (8 * i));
	raw[14] = (uint8_t)r2;
	raw[15] = (uint8_t)(r2 >> 8);
	sw_ulid_format(raw, out);
}

/* "dev-" and 12 lowercase hex digits, into out (16 bytes). */
static void make_dev_id(char out[16])
{
	static const char hex[] = "0123456789abcdef";
	uint64_t r = rnd();
	int i;

	memcpy(out, "dev-", 4);
	for (i = 0; i < 12; i++, r >>= 4)
		out[4 + i] = hex[r & 15];
}

/* A price per token: mostly the list prices seen in the vectors, else
 * three significant digits between 1e-7 and 1e-5. */
static double make_price(void)
{
	static const double list[] = { 1.5e-7, 6e-7, 1e-6, 2e-6, 2.5e-6,
				       8e-6, 1e-5 };
	static const unsigned w[] = { 13, 16, 16, 20, 16, 24, 21 };

	if (chance(0.85))
		return list[pick(w, sizeof(w) / sizeof(w[0]))];
	return (double)rnd_range(100, 999) / (chance(0.5) ? 1e9 : 1e8);
}

/* Fills u with one realistic update; strings point into s. */
static void make_update(sw_update *u, scratch *s)
{
	static const char *const tags[] = { "edge", "device", "env:prod",
		"fw:1.4.2", "fw:1.5.0", "battery-low", "model:small",
		"region:eu-west-1", "env:staging" };
	static const unsigned tag_w[] = { 33, 29, 25, 23, 21, 21, 19, 17, 12 };
	static const unsigned list_w[] = { 21, 28, 18, 24, 16 };
	bool has_start = chance(0.605), ext_ulid = false, has_usage;
	int64_t start = T_MAY25 + rnd_range(0, 6 * T_DAY - 1);
	int64_t duration = rnd_range(10000, 3600000);
	int64_t id_time = has_start ? start : T_MAY25 + rnd_range(0, 6 * T_DAY - 1);
	int64_t contact_time = id_time;
	double prompt = (double)rnd_range(100, 8000);
	double completion = (double)rnd_range(50, 2000);
	size_t i, n;

	sw_update_init(u);
	if (chance(0.28)) {
		make_ulid(id_time, s->id[0]);
		sw_update_set_id(u, s->id[0], SW_ULID_LEN);
	}
	if (chance(0.605)) {
		if (chance(0.57)) {
			ext_ulid = true;
			make_ulid(id_time, s->ext);
			sw_update_set_external_id(u, s->ext, SW_ULID_LEN);
		} else {
			make_dev_id(s->ext);
			sw_update_set_external_id(u, s->ext, 16);
		}
	}
	if (chance(0.85))
		sw_update_set_duration(u, (double)duration);
	if (chance(0.415)) {
		if (!has_start && !ext_ulid)
			contact_time = T_MAY25 + rnd_range(0, 6 * T_DAY - 1);
		n = (size_t)rnd_range(0, 2);
		for (i = 0; i < n; i++) {
			make_ulid(contact_time, s->contacts[i]);
			s->contact_list[i].ptr = s->contacts[i];
			s->contact_list[i].len = SW_ULID_LEN;
		}
		sw_update_set_contact_ids(u, s->contact_list, n);
	}
	has_usage = chance(0.83);
	if (has_usage ? chance(0.79) : chance(0.85)) {
		double in = prompt * make_price(), out = completion * make_price();

		sw_update_set_billing(u, in, out, in + out);
	}
	if (has_usage)
		sw_update_set_usage(u, prompt, completion, prompt + completion);
	if (chance(0.69))
		sw_update_set_traces_count(u, (double)rnd_range(1, 200));
	if (chance(0.535)) {
		n = pick(list_w, 5);
		for (i = 0; i < n; i++) {
			const char *t = tags[pick(tag_w, 9)];

			s->tag_list[i].ptr = t;
			s->tag_list[i].len = strlen(t);
		}
		sw_update_set_tags(u, s->tag_list, n);
	}
	if (chance(0.475)) {
		make_ulid(T_WS + rnd_range(0, 16 * T_DAY), s->id[1]);
		sw_update_set_workspace_id(u, s->id[1], SW_ULID_LEN);
	}
	if (chance(0.495)) {
		if (chance(0.18)) {
			sw_update_set_project_id_null(u);
		} else {
			make_ulid(T_PROJ + rnd_range(0, 16 * T_DAY), s->id[2]);
			sw_update_set_project_id(u, s->id[2], SW_ULID_LEN);
		}
	}
	if (has_start)
		sw_update_set_started_at(u, start);
	if (chance(0.87)) {
		if (has_start && (u->has & SW_F_DURATION) && chance(0.86))
			sw_update_set_updated_at(u, start + duration);
		else if (has_start)
			sw_update_set_updated_at(u, start + rnd_range(0, 5 * T_DAY));
		else
			sw_update_set_updated_at(u, T_MAY25 + rnd_range(0, 6 * T_DAY));
	}
}

/* ==== main ==== */

/* Parses a decimal in 1..max. */
static bool parse_u(const char *s, unsigned long max, unsigned long *out)
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

int main(int argc, char **argv)
{
	unsigned long count = 5000, seed = 1, k;
	const char *out_path = NULL;
	FILE *f = stdout;
	sw_buf b;
	int i;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--count") == 0 && i + 1 < argc) {
			if (!parse_u(argv[++i], MAX_COUNT, &count))
				die("--count wants 1..%lu, not '%s'", MAX_COUNT, argv[i]);
		} else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc) {
			if (!parse_u(argv[++i], 0xFFFFFFFFUL, &seed))
				die("--seed wants 1..4294967295, not '%s'", argv[i]);
		} else if (strcmp(argv[i], "--out") == 0 && i + 1 < argc) {
			out_path = argv[++i];
		} else {
			fprintf(stderr, "usage: bench-gen_corpus [--count N] "
				"[--seed S] [--out FILE]\n"
				"Writes N realistic update bodies (canonical "
				"JSON, one per line), the same for the same seed.\n");
			return strcmp(argv[i], "--help") == 0 ? 0 : 2;
		}
	}
	if (out_path && (f = fopen(out_path, "w")) == NULL)
		die("cannot create %s: %s", out_path, strerror(errno));
	rng_state = 0x9E3779B97F4A7C15ULL ^ ((uint64_t)seed * 0xBF58476D1CE4E5B9ULL);
	sw_buf_init(&b, 0, NULL);
	for (k = 0; k < count; k++) {
		sw_update u;
		scratch s;
		sw_error err;
		sw_status st;

		make_update(&u, &s);
		sw_error_clear(&err);
		sw_buf_reset(&b);
		st = sw_update_check(&u, SW_KIND_UPDATE, NULL, &err);
		if (st == SW_OK)
			st = sw_json_write(&u, NULL, &b, &err);
		if (st != SW_OK)
			die("message %lu: %s at '%s': %s", k, sw_errname(st),
			    err.path, err.message);
		if (fwrite(b.data, 1, b.len, f) != b.len || fputc('\n', f) == EOF)
			die("cannot write: %s", strerror(errno));
	}
	sw_buf_free(&b);
	if (ferror(f) || (out_path && fclose(f) != 0))
		die("cannot write %s", out_path ? out_path : "stdout");
	return 0;
}
