/* fuzz.h - shared by the fuzz targets in tests/fuzz/.
 *
 * Every target is one file that defines its entry with
 * SW_FUZZ_ENTRY(<name>) and builds two ways:
 *
 *  - for libFuzzer (make fuzz: clang -fsanitize=fuzzer,address,undefined
 *    -DSW_FUZZ_LIBFUZZER): the entry is LLVMFuzzerTestOneInput and a failed
 *    SW_FUZZ_CHECK aborts, so the fuzzer saves the input as a crash;
 *  - in the test runner (tests/test_fuzz_corpus.c #includes every target
 *    into one translation unit, so each target keeps its helpers static
 *    under its own prefix): the entry is sw_fuzz_<name>, and a failed check
 *    is printed and counted so the corpus replay fails naming the file.
 *
 * A check evaluates to its condition, so a target writes
 * `if (!SW_FUZZ_CHECK(st == SW_OK)) goto out;` and keeps its cleanup.
 */
#ifndef SW_FUZZ_H
#define SW_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sessionwire/sessionwire.h"

#ifdef SW_FUZZ_LIBFUZZER
#define SW_FUZZ_ENTRY(name) LLVMFuzzerTestOneInput
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
#else
#define SW_FUZZ_ENTRY(name) sw_fuzz_##name
int sw_fuzz_pb_decode(const uint8_t *data, size_t size);
int sw_fuzz_json_parse(const uint8_t *data, size_t size);
int sw_fuzz_date(const uint8_t *data, size_t size);
int sw_fuzz_num(const uint8_t *data, size_t size);
int sw_fuzz_envelope(const uint8_t *data, size_t size);
int sw_fuzz_uri(const uint8_t *data, size_t size);
int sw_fuzz_gateway(const uint8_t *data, size_t size);
int sw_fuzz_answer(const uint8_t *data, size_t size);
int sw_fuzz_coap(const uint8_t *data, size_t size);
#endif

/* Failed checks since the start (test build only: libFuzzer aborts). */
static unsigned long sw_fuzz_failures;

/* Reports a broken invariant: aborts under libFuzzer, else counts it. */
static inline void sw_fuzz_fail(const char *file, int line, const char *what)
{
	fprintf(stderr, "%s:%d: fuzz check failed: %s\n", file, line, what);
#ifdef SW_FUZZ_LIBFUZZER
	abort();
#else
	sw_fuzz_failures++;
#endif
}

#define SW_FUZZ_CHECK(cond)                                                   \
	((cond) ? true : (sw_fuzz_fail(__FILE__, __LINE__, #cond), false))

/* malloc that aborts: a fuzz target's own scratch memory. */
static inline void *sw_fuzz_malloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (p == NULL)
		abort();
	return p;
}

/* An allocator hook that counts calls and live blocks. */
typedef struct sw_fuzz_count {
	long calls;
	long live;
} sw_fuzz_count;

static inline void *sw_fuzz_count_alloc(void *ud, size_t n)
{
	sw_fuzz_count *c = ud;

	c->calls++;
	c->live++;
	return sw_fuzz_malloc(n);
}

static inline void sw_fuzz_count_free(void *ud, void *p)
{
	sw_fuzz_count *c = ud;

	if (p != NULL)
		c->live--;
	free(p);
}

/* Whether s[0..n) lies outside the input data[0..size). */
static inline bool sw_fuzz_outside(const void *s, size_t n,
				   const uint8_t *data, size_t size)
{
	uintptr_t p = (uintptr_t)s, d = (uintptr_t)data;

	if (n == 0)
		return true;
	return p + n <= d || p >= d + size;
}

/* Whether two byte strings are equal. */
static inline bool sw_fuzz_same(const void *a, size_t an, const void *b,
				size_t bn)
{
	return an == bn && (an == 0 || memcmp(a, b, an) == 0);
}

#endif
