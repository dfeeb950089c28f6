/* block.c - allocation hooks and the one-block results of parsers and
 * decoders (sw__limits is in limits.c: the device path needs no malloc). */
#include <stdlib.h>
#include <string.h>

#include "sw_internal.h"

void *sw__alloc(const sw_alloc *a, size_t n)
{
	if (a != NULL && a->alloc != NULL)
		return a->alloc(a->ud, n);
	return malloc(n);
}

void sw__free(const sw_alloc *a, void *p)
{
	if (p == NULL)
		return;
	if (a != NULL && a->free != NULL)
		a->free(a->ud, p);
	else
		free(p);
}

/* The block: header, update, arrays, string pool. */
typedef struct sw__block {
	sw_alloc alloc; /* a copy: the caller's need not outlive the block */
	sw_update u;
	sw_str items[]; /* contacts, then tags; then the pool */
} sw__block;

sw_status sw__block_new(const sw_alloc *a, size_t n_contacts, size_t n_tags,
			size_t str_bytes, sw__builder *b)
{
	size_t n_items = n_contacts + n_tags, size;
	sw__block *blk;

	if (n_items < n_contacts || n_items > SIZE_MAX / sizeof(sw_str) / 2)
		return SW_ETOOBIG;
	size = sizeof(*blk) + n_items * sizeof(sw_str);
	if (str_bytes > SIZE_MAX - size - 1)
		return SW_ETOOBIG;
	size += str_bytes + 1;
	blk = sw__alloc(a, size);
	if (blk == NULL)
		return SW_ENOMEM;
	memset(&blk->alloc, 0, sizeof(blk->alloc));
	if (a != NULL)
		blk->alloc = *a;
	sw_update_init(&blk->u);
	b->u = &blk->u;
	b->contacts = blk->items;
	b->tags = blk->items + n_contacts;
	b->pool = (char *)(blk->items + n_items);
	b->pool_end = b->pool + str_bytes;
	blk->u.contact_ids = b->contacts;
	blk->u.tags = b->tags;
	return SW_OK;
}

sw_str sw__block_str(sw__builder *b, const char *s, size_t n)
{
	sw_str r = { b->pool, n };

	if (n)
		memcpy(b->pool, s, n);
	b->pool += n;
	return r;
}

void sw_update_free(sw_update *u)
{
	sw__block *blk;

	if (u == NULL)
		return;
	blk = (sw__block *)((char *)u - offsetof(sw__block, u));
	sw_alloc a = blk->alloc;

	sw__free(&a, blk);
}
