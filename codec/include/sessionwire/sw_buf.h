/* sw_buf.h - a bounded output buffer.
 *
 * Either growable on the heap up to a hard cap (sw_buf_init), or fixed on
 * caller storage (sw_buf_init_fixed). Appending past the cap fails with
 * SW_ETOOBIG (growable) or SW_EBUFSZ (fixed) and leaves the buffer as it
 * was before the failed append. data is kept NUL-terminated.
 */
#ifndef SESSIONWIRE_SW_BUF_H
#define SESSIONWIRE_SW_BUF_H

#include <stdbool.h>
#include <stddef.h>

#include "sw_status.h"
#include "sw_update.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sw_buf {
	char *data;  /* NUL-terminated once anything is appended */
	size_t len;  /* bytes in data, not counting the NUL */
	size_t cap;  /* bytes allocated or given */
	size_t max;  /* hard cap on len */
	bool fixed;  /* caller storage: never grown or freed */
	const sw_alloc *alloc;
} sw_buf;

/* Growable; max = 0 means 16 MiB. alloc NULL: malloc/free. */
void sw_buf_init(sw_buf *b, size_t max, const sw_alloc *alloc);
/* On caller storage of cap bytes (room for the NUL included). */
void sw_buf_init_fixed(sw_buf *b, void *mem, size_t cap);
/* Empties b, keeping its storage. */
void sw_buf_reset(sw_buf *b);
/* Frees heap storage (not fixed storage). NULL is fine. */
void sw_buf_free(sw_buf *b);

SW_CHECK sw_status sw_buf_append(sw_buf *b, const void *p, size_t n);
/* Makes room for n more bytes (plus the NUL) and returns where they go,
 * or NULL (*st says why). Commit what was written with sw_buf_commit. */
char *sw_buf_reserve(sw_buf *b, size_t n, sw_status *st);
void sw_buf_commit(sw_buf *b, size_t n);

#ifdef __cplusplus
}
#endif
#endif
