/* limits.c - the limits on untrusted input with their defaults filled in
 * (device-safe: no heap, no stdio; apart from block.c so that the
 * device encode path links no allocator). */
#include "sw_internal.h"

sw_limits sw__limits(const sw_limits *l)
{
	sw_limits r = { SW_DEFAULT_MAX_INPUT, SW_DEFAULT_MAX_STRING,
			SW_DEFAULT_MAX_ITEMS };

	if (l != NULL) {
		if (l->max_input)
			r.max_input = l->max_input;
		if (l->max_string)
			r.max_string = l->max_string;
		if (l->max_items)
			r.max_items = l->max_items;
	}
	return r;
}
