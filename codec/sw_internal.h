/* sw_internal.h - shared by the codec's own files; not installed.
 * Internal symbols carry the sw__ prefix. */
#ifndef SW_INTERNAL_H
#define SW_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "sessionwire/sessionwire.h"

/* ==== Allocation ==== */
void *sw__alloc(const sw_alloc *a, size_t n);
void sw__free(const sw_alloc *a, void *p);

/* ==== Limits with defaults filled in ==== */
sw_limits sw__limits(const sw_limits *l);

/* ==== UTF-8 ====
 * Strict: no overlongs, no surrogates, nothing past U+10FFFF. U+0000 is
 * valid. Returns the offset of the first bad byte, or n if all is well. */
size_t sw__utf8_check(const char *s, size_t n);
/* The same with an ASCII fast path: whole 8-byte blocks with no high bit
 * are skipped (an ASCII prefix ends on a character boundary, so the
 * offset of the first bad byte is unchanged); the rest goes byte by
 * byte. For text that is mostly ASCII: JSON, the strings of an update. */
size_t sw__utf8_check_fast(const char *s, size_t n);

/* ==== Hex digits (uri.c) ====
 * The value of a hex digit of either case, or -1 (\u escapes, %XX). */
int sw__hex_value(int c);

/* ==== Session ids (envelope.c) ====
 * A text session id must be addressable as a URL path segment: not empty,
 * not "." or "..", valid UTF-8. path names it in the error; off is its
 * offset in the input ((size_t)-1 when there is none, e.g. encoding). */
sw_status sw__check_text_id(const char *id, size_t len, const char *path,
			    size_t off, sw_error *err);

/* ==== Result blocks ====
 * Parsers and decoders return one heap block holding the sw_update, its
 * contact_ids[] and tags[] arrays and a pool of string bytes. */
typedef struct sw__builder {
	sw_update *u;      /* in the block */
	sw_str *contacts;  /* n_contacts slots */
	sw_str *tags;      /* n_tags slots */
	char *pool;        /* next free byte of the string pool */
	char *pool_end;
} sw__builder;

/* Allocates a block for the given counts and total string bytes.
 * Returns SW_ENOMEM or SW_ETOOBIG (size overflow). */
sw_status sw__block_new(const sw_alloc *a, size_t n_contacts, size_t n_tags,
			size_t str_bytes, sw__builder *b);
/* Copies n bytes into the pool and returns them as an sw_str (the pool
 * must have room: size it right in sw__block_new). */
sw_str sw__block_str(sw__builder *b, const char *s, size_t n);

/* ==== Errors without printf (device code) ====
 * Like sw_error_set with a fixed message; first error wins. */
sw_status sw__fail(sw_error *err, sw_status st, const char *path,
		   size_t offset, const char *msg);

/* ==== Paths ====
 * Writes "prefix.name", "name[i]" and the like into a path buffer. */
void sw__path(char *out, size_t cap, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* ==== JSON scan ====
 * The strict lexical pass that runs before the parser's walks
 * (json_scan.c), and the field names the JSON parser and writer share. */

/* Deepest nesting the schema uses: body object -> billing object or tags
 * array. Deeper input fails in the scan, which never recurses further. */
#define SW__JSON_MAX_DEPTH 2

/* Names inside billing [0] and usage [1]: [wire 0 / SDK 1][SW_IN..]. */
extern const char *const sw__json_inner_names[2][2][3];
/* Field bit of a top-level key in either naming, or -1; *as_written (if
 * not NULL) gets the name the key is, wire or SDK. The names are tried
 * from field bit hint on (the next field, when keys come in wire order;
 * any hint gives the same answer). */
int sw__json_field(const char *key, size_t n, int hint,
		   const char **as_written);
/* SW_IN/SW_OUT/SW_TOTAL of a key inside billing (usage 0) or usage
 * (usage 1) in either naming, or -1; hint and *as_written as above. */
int sw__json_inner(int usage, const char *key, size_t n, int hint,
		   const char **as_written);
/* Appends key[0..n) to the NUL-terminated path (cap bytes), after a '.'
 * when dot and the path is not empty; never cuts a UTF-8 character, shows
 * control bytes and the byte 0xFF (a key's U+0000, as the parser decodes
 * keys) as '?'. */
void sw__json_path_add(char *path, size_t cap, const char *key, size_t n,
		       bool dot);

/* How many bytes of s[0..n) come before the first '"', '\\' or control
 * character (U+0000..U+001F): the plain run inside a JSON string, found a
 * word at a time; n when there is none. */
static inline size_t sw__json_plain(const char *s, size_t n)
{
	const uint64_t ones = 0x0101010101010101u;
	const uint64_t high = 0x8080808080808080u;
	size_t i = 0;
	uint64_t v, q, b, m;

	/* Per 8-byte word: (x - ones * k) & ~x & high marks the bytes below k
	 * (the first one exactly: a borrow only runs on from a byte that is
	 * below k); k = 0x20 for the controls, and k = 1 after an XOR for '"'
	 * and '\\'. */
	while (n - i >= 8) {
		memcpy(&v, s + i, 8);
		q = v ^ (ones * '"');
		b = v ^ (ones * '\\');
		m = (((v - ones * 0x20) & ~v) | ((q - ones) & ~q) |
		     ((b - ones) & ~b)) & high;
		if (m != 0) {
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
			return i + (size_t)__builtin_ctzll(m) / 8;
#else
			break;
#endif
		}
		i += 8;
	}
	while (i < n && s[i] != '"' && s[i] != '\\' &&
	       (unsigned char)s[i] >= 0x20)
		i++;
	return i;
}

/* Checks, in this order: len <= max_input (SW_ETOOBIG), UTF-8 (SW_EUTF8 at
 * the offset of the bad byte), that the body is an object (SW_ETYPE), the
 * strict RFC 8259 grammar with nothing but whitespace after the value
 * (SW_EJSON at the offending offset, with the field path), and nesting of
 * at most SW__JSON_MAX_DEPTH (SW_ETYPE naming the path). What it accepts,
 * the parser's walks read without further checks. */
sw_status sw__json_scan(const char *json, size_t len, size_t max_input,
			sw_error *err);

#endif
