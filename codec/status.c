/* status.c - status names and the error struct. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "sw_internal.h"

const char *sw_errname(sw_status st)
{
	switch (st) {
#define SW__NAME(name, num, text)                                             \
	case SW_##name:                                                       \
		return #name;
		SW_STATUS_MAP(SW__NAME)
#undef SW__NAME
	}
	return "E?";
}

const char *sw_strerror(sw_status st)
{
	switch (st) {
#define SW__TEXT(name, num, text)                                             \
	case SW_##name:                                                       \
		return text;
		SW_STATUS_MAP(SW__TEXT)
#undef SW__TEXT
	}
	return "unknown status";
}

void sw_error_clear(sw_error *err)
{
	if (err == NULL)
		return;
	err->code = SW_OK;
	err->offset = (size_t)-1;
	err->path[0] = '\0';
	err->message[0] = '\0';
}

sw_status sw_error_set(sw_error *err, sw_status st, const char *path,
		       size_t offset, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || err->code != SW_OK || st == SW_OK)
		return st;
	err->code = st;
	err->offset = offset;
	snprintf(err->path, sizeof(err->path), "%s", path ? path : "");
	if (fmt == NULL) {
		snprintf(err->message, sizeof(err->message), "%s",
			 sw_strerror(st));
		return st;
	}
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
	return st;
}

void sw__path(char *out, size_t cap, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(out, cap, fmt, ap);
	va_end(ap);
}

static void copy_str(char *dst, size_t cap, const char *src)
{
	size_t i = 0;

	if (src != NULL)
		for (; src[i] != '\0' && i + 1 < cap; i++)
			dst[i] = src[i];
	dst[i] = '\0';
}

sw_status sw__fail(sw_error *err, sw_status st, const char *path,
		   size_t offset, const char *msg)
{
	if (err == NULL || err->code != SW_OK || st == SW_OK)
		return st;
	err->code = st;
	err->offset = offset;
	copy_str(err->path, sizeof(err->path), path);
	copy_str(err->message, sizeof(err->message),
		 msg ? msg : sw_strerror(st));
	return st;
}
