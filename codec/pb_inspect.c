/* pb_inspect.c - a readable dump of a Session message, field by field.
 *
 * Walks the bytes with the same field table as the decoder and writes one
 * line per field (offset, number, name, wire type, length, raw value,
 * meaning). It stops at the first structural problem; then the decoder
 * runs over the same bytes so the error reported (code, path, offset) is
 * exactly the one sw_pb_decode gives.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "pb_wire.h"

typedef struct insp {
	sw_buf *out;
	sw_status st;    /* first buffer error */
	const uint8_t *buf;
	bool has_started;
	int64_t started;
	bool stopped;    /* a "!!" line was written */
} insp;

/* Appends one formatted line (a newline is added). */
static void SW_PRINTF(2, 3) line(insp *s, const char *fmt, ...)
{
	char tmp[512];
	va_list ap;
	int n;

	if (s->st != SW_OK)
		return;
	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if ((size_t)n > sizeof(tmp) - 2)
		n = (int)sizeof(tmp) - 2;
	tmp[n++] = '\n';
	s->st = sw_buf_append(s->out, tmp, (size_t)n);
}

/* Writes the problem that ends the walk. */
static void stop(insp *s, size_t off, const char *what)
{
	line(s, "!! offset %zu: %s", off, what);
	s->stopped = true;
}

/* Up to 60 bytes of a string, quoted, control bytes (and every byte of
 * invalid UTF-8) as \xNN. */
static void quote(const uint8_t *p, size_t n, char *out, size_t cap)
{
	bool utf8 = sw__utf8_check((const char *)p, n) == n;
	size_t i, o = 0, max = n > 60 ? 60 : n;

	out[o++] = '"';
	/* cppcheck takes one caller's n for all: max is 0 only for n 0 */
	/* cppcheck-suppress knownConditionTrueFalse */
	for (i = 0; i < max && o + 6 < cap; i++) {
		uint8_t c = p[i];

		if (c == '"' || c == '\\') {
			out[o++] = '\\';
			out[o++] = (char)c;
		} else if (c < 0x20 || c == 0x7f || (c >= 0x80 && !utf8)) {
			o += (size_t)snprintf(out + o, cap - o, "\\x%02x", c);
		} else {
			out[o++] = (char)c;
		}
	}
	out[o++] = '"';
	out[o] = '\0';
	/* true for n > 60 (cppcheck sees one caller only) */
	/* cppcheck-suppress knownConditionTrueFalse */
	if (max < n && o + 4 < cap)
		memcpy(out + o, "...", 4);
}

/* Up to 24 bytes as hex, "..." when there are more. */
static void hex(const uint8_t *p, size_t n, char *out, size_t cap)
{
	size_t i, o = 0;

	out[0] = '\0';
	for (i = 0; i < n && i < 24 && o + 3 < cap; i++)
		o += (size_t)snprintf(out + o, cap - o, "%02x", p[i]);
	if (i < n && o + 4 < cap)
		memcpy(out + o, "...", 4);
}

/* A number as JavaScript writes it. */
static const char *num(double x, char out[SW_NUM_MAX])
{
	if (sw_num_format(x, out) == 0)
		snprintf(out, SW_NUM_MAX, "%s", isnan(x) ? "NaN"
				 : x > 0 ? "Infinity" : "-Infinity");
	return out;
}

/* A date as toISOString writes it. */
static const char *date(int64_t ms, char out[SW_DATE_LEN + 1])
{
	if (sw_date_format(ms, out) == 0)
		snprintf(out, SW_DATE_LEN + 1, "(outside 0000-9999)");
	return out;
}

/* The meaning of a bytes value of an id field. */
static void id_meaning(insp *s, unsigned form, const uint8_t *p, size_t n,
		       char *out, size_t cap)
{
	char text[SW_UUID_LEN + 1], h[64];
	uint8_t raw[16];
	int i;

	if (form == SW__PB_TEXT) {
		quote(p, n, out, cap);
		return;
	}
	if (form == SW__PB_UUID && n == 16) {
		sw_uuid_format(p, text);
		snprintf(out, cap, "%.36s (uuid)", text);
		return;
	}
	if (form == SW__PB_ULID && n == 16) {
		sw_ulid_format(p, text);
		snprintf(out, cap, "%.26s (ulid)", text);
		return;
	}
	if (form == SW__PB_ULID && n == 10 && s->has_started &&
	    s->started >= 0 && s->started < ((int64_t)1 << 48)) {
		for (i = 0; i < 6; i++)
			raw[i] = (uint8_t)((uint64_t)s->started >> (40 - 8 * i));
		memcpy(raw + 6, p, 10);
		sw_ulid_format(raw, text);
		snprintf(out, cap, "%.26s (ulid, time = started_at)", text);
		return;
	}
	hex(p, n, h, sizeof(h));
	snprintf(out, cap, "%s (%s of a bad length)", h,
		 form == SW__PB_ULID ? "ulid" : "uuid");
}

/* The meaning of a varint or fixed64 value. */
static void scalar_meaning(insp *s, unsigned form, uint64_t v, char *out,
			   size_t cap)
{
	static const char *const flag_names[4] = {
		"CONTACT_IDS_EMPTY", "TAGS_EMPTY", "PROJECT_ID_NULL",
		"UPDATED_AT_IS_END"
	};
	char a[SW_NUM_MAX], d[SW_DATE_LEN + 1];
	int64_t t;
	double x;
	size_t o;
	int i;

	switch (form) {
	case SW__PB_INT:
		snprintf(out, cap, "%lld", (long long)sw__pb_unzigzag(v));
		break;
	case SW__PB_DEC:
		if (sw__pb_dec_value(v, &x))
			snprintf(out, cap, "m=%lld s=%u mode=%s -> %s",
				 (long long)sw__pb_unzigzag(v >> 6),
				 (unsigned)(v & 31), (v & 32) ? "mul" : "div",
				 num(x, a));
		else
			snprintf(out, cap, "m=%lld s=%u (out of range)",
				 (long long)sw__pb_unzigzag(v >> 6),
				 (unsigned)(v & 31));
		break;
	case SW__PB_DOUBLE:
		memcpy(&x, &v, sizeof(x));
		snprintf(out, cap, "%s (double 0x%016llx)", num(x, a),
			 (unsigned long long)v);
		break;
	case SW__PB_MS:
		snprintf(out, cap, "%lld -> %s", (long long)sw__pb_unzigzag(v),
			 date(sw__pb_unzigzag(v), d));
		break;
	case SW__PB_DELTA:
		if (s->has_started &&
		    !__builtin_add_overflow(s->started, sw__pb_unzigzag(v), &t))
			snprintf(out, cap, "%+lld ms -> %s",
				 (long long)sw__pb_unzigzag(v), date(t, d));
		else
			snprintf(out, cap, "%+lld ms (after started_at)",
				 (long long)sw__pb_unzigzag(v));
		break;
	default: /* flags */
		o = (size_t)snprintf(out, cap, "0x%llx", (unsigned long long)v);
		for (i = 0; i < 4 && o < cap; i++)
			if (v & (1u << i))
				o += (size_t)snprintf(out + o, cap - o, " %s",
						      flag_names[i]);
		if (v & ~(uint64_t)SW__PB_FLAG_ALL && o < cap)
			snprintf(out + o, cap - o, " (unknown bits)");
		break;
	}
}

/* Dumps the fields of message m in buf[pos..end). False once stopped. */
static bool walk(insp *s, size_t pos, size_t end, const sw__pb_msg *m,
		 int depth)
{
	bool seen_total = false;

	while (pos < end && s->st == SW_OK) {
		size_t off = pos, used, vlen;
		uint64_t tag, v = 0;
		const sw__pb_field *f;
		char meaning[256];
		unsigned wt;
		uint32_t fnum;

		if (sw__pb_varint_get(s->buf + pos, end - pos, &tag, &used) !=
		    SW_OK || tag > UINT32_MAX) {
			stop(s, off, "expected a field tag, found a truncated "
				     "or overlong varint");
			return false;
		}
		pos += used;
		fnum = (uint32_t)(tag >> 3);
		wt = (unsigned)(tag & 7);
		f = sw__pb_field_by_num(m, fnum);
		meaning[0] = '\0';
		switch (wt) {
		case SW__PB_WT_VARINT:
			if (sw__pb_varint_get(s->buf + pos, end - pos, &v,
					      &vlen) != SW_OK) {
				stop(s, off, "truncated or overlong varint");
				return false;
			}
			break;
		case SW__PB_WT_I64:
			if (end - pos < 8) {
				stop(s, off, "truncated fixed64");
				return false;
			}
			v = sw__pb_le64(s->buf + pos);
			vlen = 8;
			break;
		case SW__PB_WT_LEN:
			if (sw__pb_varint_get(s->buf + pos, end - pos, &v,
					      &used) != SW_OK ||
			    v > end - pos - used) {
				stop(s, off, "truncated length or bytes");
				return false;
			}
			pos += used;
			vlen = (size_t)v;
			break;
		default:
			line(s, "%6zu  %*s#%-2u %-24s %-7s", off, 2 * depth, "",
			     (unsigned)fnum, f ? f->name : "?",
			     sw__pb_wt_name(wt));
			stop(s, off, "unsupported wire type");
			return false;
		}
		if (f != NULL && sw__pb_form_wt(f->form) != wt) {
			line(s, "%6zu  %*s#%-2u %-24s %-7s len=%zu", off,
			     2 * depth, "", (unsigned)fnum, f->name,
			     sw__pb_wt_name(wt), vlen);
			stop(s, off, "wire type does not match the field");
			return false;
		}
		if (f == NULL) {
			if (wt == SW__PB_WT_LEN)
				hex(s->buf + pos, vlen, meaning, sizeof(meaning));
			else
				snprintf(meaning, sizeof(meaning), "%llu",
					 (unsigned long long)v);
			snprintf(meaning + strlen(meaning),
				 sizeof(meaning) - strlen(meaning),
				 " (unknown field)");
		} else if (f->form == SW__PB_MSG) {
			snprintf(meaning, sizeof(meaning), "{");
		} else if (wt == SW__PB_WT_LEN) {
			id_meaning(s, f->form, s->buf + pos, vlen, meaning,
				   sizeof(meaning));
		} else {
			scalar_meaning(s, f->form, v, meaning, sizeof(meaning));
		}
		line(s, "%6zu  %*s#%-2u %-24s %-7s len=%-3zu %s", off,
		     2 * depth, "", (unsigned)fnum, f ? f->name : "?",
		     sw__pb_wt_name(wt), vlen, meaning);
		if (f != NULL && f->form == SW__PB_MSG) {
			if (!walk(s, pos, pos + vlen,
				  f->slot == 4 ? &sw__pb_billing : &sw__pb_usage,
				  depth + 1))
				return false;
			line(s, "%6s  %*s}", "", 2 * depth, "");
		}
		if (f != NULL && depth > 0 && f->slot == SW_TOTAL)
			seen_total = true;
		pos += vlen;
	}
	if (depth > 0 && !seen_total)
		line(s, "%6s  %*s(no %s: input + output)", "", 2 * depth, "",
		     m == &sw__pb_billing ? "total_cost" : "total_tokens");
	return true;
}

/* Finds started_at (field 12) for the 10-byte ULIDs and deltas. */
static void find_started(insp *s, size_t len)
{
	size_t pos = 0, used;
	uint64_t tag, v;

	while (pos < len) {
		if (sw__pb_varint_get(s->buf + pos, len - pos, &tag, &used) != SW_OK)
			return;
		pos += used;
		switch (tag & 7) {
		case SW__PB_WT_VARINT:
			if (sw__pb_varint_get(s->buf + pos, len - pos, &v,
					      &used) != SW_OK)
				return;
			if (tag >> 3 == 12) {
				s->has_started = true;
				s->started = sw__pb_unzigzag(v);
			}
			pos += used;
			break;
		case SW__PB_WT_I64:
			if (len - pos < 8)
				return;
			pos += 8;
			break;
		case SW__PB_WT_LEN:
			if (sw__pb_varint_get(s->buf + pos, len - pos, &v,
					      &used) != SW_OK ||
			    v > len - pos - used)
				return;
			pos += used + (size_t)v;
			break;
		default:
			return;
		}
	}
}

sw_status sw_pb_inspect(const uint8_t *buf, size_t len, sw_buf *out,
			sw_error *err)
{
	insp s = { out, SW_OK, buf, false, 0, false };
	sw_update *u = NULL;
	sw_error e;
	sw_status st;

	if (out == NULL || (buf == NULL && len != 0))
		return sw__fail(err, SW_EINVAL, "", (size_t)-1,
				"expected an input buffer and an output buffer");
	find_started(&s, len);
	line(&s, "Session, %zu bytes", len);
	line(&s, "%6s  %-27s %-7s %-7s %s", "offset", "field", "wire", "length",
	     "value");
	walk(&s, 0, len, &sw__pb_session, 0);
	if (s.st != SW_OK)
		return sw__fail(err, s.st, "", (size_t)-1,
				"the dump does not fit the output buffer");
	/* the decoder's verdict, for the exact code, path and offset */
	sw_error_clear(&e);
	st = sw_pb_decode(buf, len, NULL, &u, &e);
	sw_update_free(u);
	if (st != SW_OK) {
		line(&s, "!! %s at offset %zu, %s: %s", sw_errname(st),
		     e.offset, e.path[0] ? e.path : "(message)", e.message);
		if (err != NULL && err->code == SW_OK)
			*err = e;
		/* line() sets s.st when the output buffer is full */
		/* cppcheck-suppress knownConditionTrueFalse */
		return s.st != SW_OK ? s.st : st;
	}
	/* s.st was checked after walk() and nothing was written since */
	return SW_OK;
}
