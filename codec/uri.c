/* uri.c - the session path (docs/wire-format.md section 1) and its
 * inverse, and the session id as it travels in an Envelope (device-safe:
 * no heap of our own, no stdio).
 *
 * The path is "/v2/traces/sessions/" followed by the id percent-encoded as
 * JavaScript's encodeURIComponent does: A-Z a-z 0-9 - _ . ! ~ * ' ( ) stay,
 * every other byte of the UTF-8 text becomes %XX (uppercase hex).
 */
#include <string.h>

#include "sw_internal.h"

static const char hex_upper[17] = "0123456789ABCDEF";

/* Whether encodeURIComponent leaves byte c as it is. */
static bool uri_unreserved(unsigned char c)
{
	if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	    (c >= '0' && c <= '9'))
		return true;
	switch (c) {
	case '-': case '_': case '.': case '!': case '~':
	case '*': case '\'': case '(': case ')':
		return true;
	default:
		return false;
	}
}

int sw__hex_value(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Writes the decimal digits of v at the end of msg (cap bytes, NUL-
 * terminated), as far as they fit. */
static void msg_add_num(char *msg, size_t cap, size_t v)
{
	char tmp[24];
	size_t n = 0, at = strlen(msg);

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	while (n > 0 && at + 1 < cap)
		msg[at++] = tmp[--n];
	msg[at] = '\0';
}

/* Appends "0x" and two hex digits of byte c to msg. */
static void msg_add_hex(char *msg, size_t cap, char c)
{
	const char hex[5] = { '0', 'x', hex_upper[(unsigned char)c >> 4],
			      hex_upper[(unsigned char)c & 15], '\0' };
	size_t at = strlen(msg), i;

	for (i = 0; hex[i] != '\0' && at + 1 < cap; i++)
		msg[at++] = hex[i];
	msg[at] = '\0';
}

/* Appends s to msg (cap bytes, NUL-terminated), as far as it fits. */
static void msg_add(char *msg, size_t cap, const char *s)
{
	size_t at = strlen(msg);

	while (*s != '\0' && at + 1 < cap)
		msg[at++] = *s++;
	msg[at] = '\0';
}

/* ==== The session path ==== */

/* Appends the prefix and the encodeURIComponent form of id to out; out
 * is left as it was on every error (the room is reserved in one go). */
sw_status sw_session_path(const char *id, size_t len, sw_buf *out,
			  sw_error *err)
{
	const size_t pre = sizeof(SW_SESSION_PATH_PREFIX) - 1;
	size_t i, need = pre;
	sw_status st = SW_OK;
	char *p;

	if (out == NULL || (id == NULL && len != 0))
		return sw__fail(err, SW_EINVAL, "", (size_t)-1,
				"expected an id and an output buffer");
	st = sw__check_text_id(id, len, "session_id", (size_t)-1, err);
	if (st != SW_OK)
		return st;
	/* len <= SIZE_MAX / 3 always holds for ids that fit in memory with
	 * room for their encoding; check anyway. */
	if (len > ((size_t)-1 - pre) / 3)
		return sw__fail(err, SW_ETOOBIG, "session_id", (size_t)-1,
				"expected a session id whose path fits in "
				"memory, found a longer one");
	for (i = 0; i < len; i++)
		need += uri_unreserved((unsigned char)id[i]) ? 1 : 3;
	p = sw_buf_reserve(out, need, &st);
	if (p == NULL) {
		char msg[SW_ERROR_MSG_MAX] = "";

		if (st == SW_ENOMEM)
			return sw__fail(err, st, "session_id", (size_t)-1,
					"out of memory for the path");
		msg_add(msg, sizeof(msg), "expected room for the ");
		msg_add_num(msg, sizeof(msg), need);
		msg_add(msg, sizeof(msg), " bytes of the path in the output "
			"buffer, found room for ");
		msg_add_num(msg, sizeof(msg), out->max > out->len
					      ? out->max - out->len : 0);
		return sw__fail(err, st, "session_id", (size_t)-1, msg);
	}
	memcpy(p, SW_SESSION_PATH_PREFIX, pre);
	p += pre;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)id[i];

		if (uri_unreserved(c)) {
			*p++ = (char)c;
		} else {
			*p++ = '%';
			*p++ = hex_upper[c >> 4];
			*p++ = hex_upper[c & 15];
		}
	}
	sw_buf_commit(out, need);
	return SW_OK;
}

/* The input offset of decoded byte k of s (k below the decoded length). */
static size_t input_offset(const char *s, size_t k)
{
	size_t i = 0;

	for (; k > 0; k--)
		i += s[i] == '%' ? 3 : 1;
	return i;
}

/* Decodes %XX escapes (either case; '+' stays '+') into out; the escapes
 * are checked before out is touched and the result must be UTF-8. */
sw_status sw_uri_decode(const char *s, size_t len, sw_buf *out, sw_error *err)
{
	char msg[SW_ERROR_MSG_MAX] = "";
	sw_status st = SW_OK;
	size_t i, n = 0, bad;
	char *p;

	if (out == NULL || (s == NULL && len != 0))
		return sw__fail(err, SW_EINVAL, "", (size_t)-1,
				"expected a string and an output buffer");
	/* Check the escapes before touching out, so that it is left as it
	 * was on every error. */
	for (i = 0; i < len; i++) {
		if (s[i] != '%')
			continue;
		if (len - i < 3 || sw__hex_value((unsigned char)s[i + 1]) < 0 ||
		    sw__hex_value((unsigned char)s[i + 2]) < 0) {
			msg_add(msg, sizeof(msg), "expected two hex digits "
				"after '%' at offset ");
			msg_add_num(msg, sizeof(msg), i);
			if (len - i < 3) {
				msg_add(msg, sizeof(msg),
					", found the end of the input");
			} else {
				msg_add(msg, sizeof(msg), ", found bytes ");
				msg_add_hex(msg, sizeof(msg), s[i + 1]);
				msg_add(msg, sizeof(msg), " ");
				msg_add_hex(msg, sizeof(msg), s[i + 2]);
			}
			return sw__fail(err, SW_EVALUE, "", i, msg);
		}
		i += 2;
	}
	p = sw_buf_reserve(out, len, &st);
	if (p == NULL)
		return sw__fail(err, st, "", (size_t)-1,
				st == SW_ENOMEM ? "out of memory for the "
						  "decoded string"
				: "expected room for the decoded string in "
				  "the output buffer, found too little");
	for (i = 0; i < len; i++) {
		if (s[i] == '%') {
			p[n++] = (char)(sw__hex_value((unsigned char)s[i + 1]) << 4 |
					sw__hex_value((unsigned char)s[i + 2]));
			i += 2;
		} else {
			p[n++] = s[i];
		}
	}
	bad = sw__utf8_check(p, n);
	if (bad != n) {
		size_t at = input_offset(s, bad);

		p[0] = '\0'; /* keep out as it was: NUL at its old end */
		msg_add(msg, sizeof(msg), "expected the decoded string to be "
			"UTF-8, found an invalid byte from input offset ");
		msg_add_num(msg, sizeof(msg), at);
		return sw__fail(err, SW_EUTF8, "", at, msg);
	}
	sw_buf_commit(out, n);
	return SW_OK;
}

/* ==== Session ids ==== */

/* Classifies id: ULID/UUID keep only raw[16], text borrows id. */
void sw_session_id_set(sw_session_id *sid, const char *id, size_t len)
{
	memset(sid, 0, sizeof(*sid));
	sid->kind = id == NULL ? SW_ID_TEXT : sw_id_parse(id, len, sid->raw);
	if (sid->kind == SW_ID_TEXT) {
		memset(sid->raw, 0, sizeof(sid->raw));
		sid->text.ptr = id;
		sid->text.len = len;
	}
}

/* Writes the id's text and a NUL; 0 when it does not fit in cap. */
size_t sw_session_id_format(const sw_session_id *sid, char *out, size_t cap)
{
	size_t n;

	if (sid == NULL || out == NULL)
		return 0;
	switch (sid->kind) {
	case SW_ID_ULID:
		if (cap < SW_ULID_LEN + 1)
			return 0;
		sw_ulid_format(sid->raw, out);
		n = SW_ULID_LEN;
		break;
	case SW_ID_UUID:
		if (cap < SW_UUID_LEN + 1)
			return 0;
		sw_uuid_format(sid->raw, out);
		n = SW_UUID_LEN;
		break;
	default:
		n = sid->text.len;
		if (n >= cap || (sid->text.ptr == NULL && n != 0))
			return 0;
		if (n)
			memcpy(out, sid->text.ptr, n);
		break;
	}
	out[n] = '\0';
	return n;
}
