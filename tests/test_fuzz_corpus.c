/* test_fuzz_corpus.c - replays every committed fuzz corpus and crash
 * reproducer (tests/fuzz/corpus/<target>/) through the fuzz targets, so
 * `make test` (and its ASan/UBSan and valgrind runs) keeps them fixed.
 *
 * The targets are #included here, one translation unit, built with the
 * runner's compiler and flags; their entries are sw_fuzz_<name> and a
 * broken invariant is counted (tests/fuzz/fuzz.h) instead of aborting.
 * Each target gets its own corpus; then, unless --quick, every file of
 * every corpus goes through every target. */
#include <CUnit/CUnit.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz/fuzz.h"
#include "fuzz/pb_decode.c"
#include "fuzz/json_parse.c"
#include "fuzz/date.c"
#include "fuzz/num.c"
#include "fuzz/envelope.c"
#include "fuzz/uri.c"
#include "fuzz/gateway.c"
#include "fuzz/answer.c"
#include "fuzz/coap.c"
#include "testutil.h"

typedef int (*fc_entry)(const uint8_t *data, size_t size);

static const struct fc_target {
	const char *name; /* also its corpus directory */
	fc_entry fn;
} fc_targets[] = {
	{ "pb_decode", sw_fuzz_pb_decode },
	{ "json_parse", sw_fuzz_json_parse },
	{ "date", sw_fuzz_date },
	{ "num", sw_fuzz_num },
	{ "envelope", sw_fuzz_envelope },
	{ "uri", sw_fuzz_uri },
	{ "gateway", sw_fuzz_gateway },
	{ "answer", sw_fuzz_answer },
	{ "coap", sw_fuzz_coap },
};
#define FC_N_TARGETS (sizeof(fc_targets) / sizeof(fc_targets[0]))

/* The corpus root: next to the test data (tests/data/../fuzz/corpus). */
static void fc_dir(const char *target, char *out, size_t cap)
{
	snprintf(out, cap, "%s/../fuzz/corpus/%s", tu_data_dir, target);
}

static int fc_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The file names of one corpus, sorted; the count, -1 if the directory
 * cannot be read. Free with fc_names_free. */
static int fc_names(const char *dir, char ***out)
{
	char **names = NULL;
	struct dirent *de;
	int n = 0, cap = 0;
	DIR *d = opendir(dir);

	if (d == NULL)
		return -1;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (n == cap) {
			cap = cap ? 2 * cap : 64;
			names = realloc(names, (size_t)cap * sizeof(*names));
			if (names == NULL)
				abort();
		}
		names[n] = strdup(de->d_name);
		if (names[n] == NULL)
			abort();
		n++;
	}
	closedir(d);
	if (n > 0)
		qsort(names, (size_t)n, sizeof(*names), fc_cmp);
	*out = names;
	return n;
}

static void fc_names_free(char **names, int n)
{
	int i;

	for (i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

/* Runs every file of corpus through target; returns the files run, or
 * -1 when the corpus is missing. Every broken invariant is a failure
 * naming the file. */
static int fc_replay(const char *corpus, const struct fc_target *t)
{
	char dir[1024], path[1536], msg[2048];
	char **names = NULL;
	int n, i;

	fc_dir(corpus, dir, sizeof(dir));
	n = fc_names(dir, &names);
	for (i = 0; i < n; i++) {
		unsigned long before = sw_fuzz_failures;
		size_t len = 0;
		char *data;

		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		data = tu_read_file(path, &len);
		if (data == NULL) {
			snprintf(msg, sizeof(msg), "cannot read %s", path);
			CU_assertImplementation(CU_FALSE, __LINE__, msg,
						__FILE__, "", CU_FALSE);
			continue;
		}
		t->fn((const uint8_t *)data, len);
		free(data);
		if (sw_fuzz_failures != before) {
			snprintf(msg, sizeof(msg), "fuzz target %s broke an "
				 "invariant on %s (see stderr)", t->name,
				 path);
			CU_assertImplementation(CU_FALSE, __LINE__, msg,
						__FILE__, "", CU_FALSE);
		}
	}
	fc_names_free(names, n);
	return n;
}

/* One target over its own corpus: present, not empty, clean. */
static void fc_own(const char *name)
{
	size_t i;

	for (i = 0; i < FC_N_TARGETS; i++) {
		if (strcmp(fc_targets[i].name, name))
			continue;
		CU_ASSERT_TRUE(fc_replay(name, &fc_targets[i]) > 0);
		return;
	}
	CU_FAIL("no such target");
}

static void pb_decode_corpus_replays_clean(void) { fc_own("pb_decode"); }
static void json_parse_corpus_replays_clean(void) { fc_own("json_parse"); }
static void date_corpus_replays_clean(void) { fc_own("date"); }
static void num_corpus_replays_clean(void) { fc_own("num"); }
static void envelope_corpus_replays_clean(void) { fc_own("envelope"); }
static void uri_corpus_replays_clean(void) { fc_own("uri"); }
static void gateway_corpus_replays_clean(void) { fc_own("gateway"); }
static void answer_corpus_replays_clean(void) { fc_own("answer"); }
static void coap_corpus_replays_clean(void) { fc_own("coap"); }

/* Every file of every corpus through every other target. */
static void every_corpus_through_every_target(void)
{
	size_t c, t;

	if (tu_quick)
		return;
	for (c = 0; c < FC_N_TARGETS; c++)
		for (t = 0; t < FC_N_TARGETS; t++)
			if (t != c)
				CU_ASSERT_TRUE(fc_replay(fc_targets[c].name,
							 &fc_targets[t]) > 0);
}

/* The replay would miss nothing: a broken check is counted (and would
 * fail the replay), and the inputs the targets were written for pass. */
static void fuzz_check_counts_a_broken_invariant(void)
{
	unsigned long before = sw_fuzz_failures;
	static const uint8_t json[] = "{\"tags\":[\"a\"],\"duration\":-0}";
	static const uint8_t pb[] = { 0x4a, 0x01, 0x61 }; /* tags: ["a"] */

	CU_ASSERT_FALSE(SW_FUZZ_CHECK(!"expected failure (self-test)"));
	CU_ASSERT_EQUAL(sw_fuzz_failures, before + 1);
	CU_ASSERT_TRUE(SW_FUZZ_CHECK(2 == 2));
	CU_ASSERT_EQUAL(sw_fuzz_failures, before + 1);
	sw_fuzz_failures = before;
	sw_fuzz_json_parse(json, sizeof(json) - 1);
	sw_fuzz_pb_decode(pb, sizeof(pb));
	sw_fuzz_date((const uint8_t *)"1969-12-31T23:59:59.999Z", 24);
	sw_fuzz_num((const uint8_t *)"\0\0\0\0\0\0\xf0\x3f", 8); /* 1.0 */
	sw_fuzz_uri((const uint8_t *)"a b/%C3%A9", 10);
	sw_fuzz_envelope(NULL, 0);
	CU_ASSERT_EQUAL(sw_fuzz_failures, before);
}

int init_fuzz_corpus_tests(void)
{
	CU_pSuite s = CU_add_suite("fuzz_corpus", NULL, NULL);

	if (s == NULL)
		return -1;
	CU_add_test(s, "fuzz_check_counts_a_broken_invariant", fuzz_check_counts_a_broken_invariant);
	CU_add_test(s, "pb_decode_corpus_replays_clean", pb_decode_corpus_replays_clean);
	CU_add_test(s, "json_parse_corpus_replays_clean", json_parse_corpus_replays_clean);
	CU_add_test(s, "date_corpus_replays_clean", date_corpus_replays_clean);
	CU_add_test(s, "num_corpus_replays_clean", num_corpus_replays_clean);
	CU_add_test(s, "envelope_corpus_replays_clean", envelope_corpus_replays_clean);
	CU_add_test(s, "uri_corpus_replays_clean", uri_corpus_replays_clean);
	CU_add_test(s, "gateway_corpus_replays_clean", gateway_corpus_replays_clean);
	CU_add_test(s, "answer_corpus_replays_clean", answer_corpus_replays_clean);
	CU_add_test(s, "coap_corpus_replays_clean", coap_corpus_replays_clean);
	CU_add_test(s, "every_corpus_through_every_target", every_corpus_through_every_target);
	return 0;
}
