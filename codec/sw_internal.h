/* sw_internal.h - shared by the codec's own files; not installed.
 * Internal symbols carry the sw__ prefix. */
#ifndef SW_INTERNAL_H
#define SW_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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

#endif
