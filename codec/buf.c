/* buf.c - the bounded output buffer (as curl's dynbuf). */
#include <string.h>

#include "sw_internal.h"

#define SW_BUF_DEFAULT_MAX ((size_t)16 << 20)

void sw_buf_init(sw_buf *b, size_t max, const sw_alloc *alloc)
{
	memset(b, 0, sizeof(*b));
	b->max = max ? max : SW_BUF_DEFAULT_MAX;
	b->alloc = alloc;
}

void sw_buf_init_fixed(sw_buf *b, void *mem, size_t cap)
{
	memset(b, 0, sizeof(*b));
	b->data = mem;
	b->cap = cap;
	b->max = cap ? cap - 1 : 0;
	b->fixed = true;
	if (cap)
		b->data[0] = '\0';
}

void sw_buf_reset(sw_buf *b)
{
	b->len = 0;
	if (b->cap)
		b->data[0] = '\0';
}

void sw_buf_free(sw_buf *b)
{
	if (b == NULL)
		return;
	if (!b->fixed)
		sw__free(b->alloc, b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

char *sw_buf_reserve(sw_buf *b, size_t n, sw_status *st)
{
	size_t need, ncap;
	char *p;

	if (n > b->max || b->len > b->max - n) {
		*st = b->fixed ? SW_EBUFSZ : SW_ETOOBIG;
		return NULL;
	}
	need = b->len + n + 1;
	if (need <= b->cap)
		return b->data + b->len;
	if (b->fixed) {
		*st = SW_EBUFSZ;
		return NULL;
	}
	ncap = b->cap ? b->cap : 256;
	while (ncap < need)
		ncap = ncap > b->max / 2 ? b->max + 1 : ncap * 2;
	p = sw__alloc(b->alloc, ncap);
	if (p == NULL) {
		*st = SW_ENOMEM;
		return NULL;
	}
	if (b->len)
		memcpy(p, b->data, b->len);
	p[b->len] = '\0';
	sw__free(b->alloc, b->data);
	b->data = p;
	b->cap = ncap;
	return b->data + b->len;
}

void sw_buf_commit(sw_buf *b, size_t n)
{
	b->len += n;
	b->data[b->len] = '\0';
}

sw_status sw_buf_append(sw_buf *b, const void *p, size_t n)
{
	sw_status st = SW_OK;
	char *dst = sw_buf_reserve(b, n, &st);

	if (dst == NULL)
		return st;
	if (n)
		memcpy(dst, p, n);
	sw_buf_commit(b, n);
	return SW_OK;
}
