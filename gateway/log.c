/* log.c - one JSON object per line on stderr, one write(2) per line. */
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gw.h"

static atomic_int log_level = GW_LOG_INFO;

static const char *const level_names[] = { "debug", "info", "warn", "error" };

/* A body logged with --log-bodies is cut at this many bytes. */
#define LOG_BODY_MAX ((size_t)16 << 10)
/* Hard cap of one line. */
#define LOG_LINE_MAX ((size_t)64 << 10)

void gw_log_set_level(int level)
{
	if (level < GW_LOG_DEBUG)
		level = GW_LOG_DEBUG;
	if (level > GW_LOG_ERROR)
		level = GW_LOG_ERROR;
	atomic_store(&log_level, level);
}

/* ==== JSON escaping ==== */

/* Length of the valid UTF-8 sequence at s[0..n), or 0 when it is not. */
size_t gw_utf8_seq(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	size_t len, i;

	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF)
		len = 2;
	else if (c >= 0xE0 && c <= 0xEF)
		len = 3;
	else if (c >= 0xF0 && c <= 0xF4)
		len = 4;
	else
		return 0;
	if (len > n)
		return 0;
	for (i = 1; i < len; i++)
		if ((s[i] & 0xC0) != 0x80)
			return 0;
	if (c == 0xE0 && s[1] < 0xA0)
		return 0; /* overlong */
	if (c == 0xED && s[1] >= 0xA0)
		return 0; /* surrogate */
	if (c == 0xF0 && s[1] < 0x90)
		return 0; /* overlong */
	if (c == 0xF4 && s[1] >= 0x90)
		return 0; /* past U+10FFFF */
	return len;
}

void gw_utf8_sanitise(char *s)
{
	unsigned char *p = (unsigned char *)s;
	size_t n = strlen(s), i = 0, k;

	while (i < n) {
		k = gw_utf8_seq(p + i, n - i);
		if (k == 0) {
			p[i++] = '?';
			continue;
		}
		i += k;
	}
}

void gw_format(char *out, size_t cap, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (vsnprintf(out, cap, fmt, ap) < 0)
		out[0] = '\0';
	va_end(ap);
	gw_utf8_sanitise(out);
}

sw_status gw_json_escape(sw_buf *out, const char *s, size_t n)
{
	static const char hx[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, run = 0, k;
	sw_status st;

	while (i < n) {
		unsigned char c = p[i];
		char esc[8];
		size_t elen = 0;

		if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0x80) {
			k = gw_utf8_seq(p + i, n - i);
			if (k) {
				i += k;
				continue;
			}
		}
		/* flush the plain run before i */
		st = sw_buf_append(out, s + run, i - run);
		if (st != SW_OK)
			return st;
		switch (c) {
		case '"': memcpy(esc, "\\\"", 2); elen = 2; break;
		case '\\': memcpy(esc, "\\\\", 2); elen = 2; break;
		case '\n': memcpy(esc, "\\n", 2); elen = 2; break;
		case '\r': memcpy(esc, "\\r", 2); elen = 2; break;
		case '\t': memcpy(esc, "\\t", 2); elen = 2; break;
		case '\b': memcpy(esc, "\\b", 2); elen = 2; break;
		case '\f': memcpy(esc, "\\f", 2); elen = 2; break;
		default:
			if (c >= 0x80) {
				memcpy(esc, "\\ufffd", 6);
			} else {
				memcpy(esc, "\\u00", 4);
				esc[4] = hx[c >> 4];
				esc[5] = hx[c & 15];
			}
			elen = 6;
			break;
		}
		st = sw_buf_append(out, esc, elen);
		if (st != SW_OK)
			return st;
		i++;
		run = i;
	}
	return sw_buf_append(out, s + run, n - run);
}

/* ==== Lines ==== */

static sw_status add_str(sw_buf *b, const char *key, const char *v, size_t n)
{
	sw_status st;

	st = sw_buf_append(b, ",\"", 2);
	if (st == SW_OK)
		st = sw_buf_append(b, key, strlen(key));
	if (st == SW_OK)
		st = sw_buf_append(b, "\":\"", 3);
	if (st == SW_OK)
		st = gw_json_escape(b, v, n);
	if (st == SW_OK)
		st = sw_buf_append(b, "\"", 1);
	return st;
}

static sw_status add_num(sw_buf *b, const char *key, const char *fmt_num)
{
	sw_status st;

	st = sw_buf_append(b, ",\"", 2);
	if (st == SW_OK)
		st = sw_buf_append(b, key, strlen(key));
	if (st == SW_OK)
		st = sw_buf_append(b, "\":", 2);
	if (st == SW_OK)
		st = sw_buf_append(b, fmt_num, strlen(fmt_num));
	return st;
}

/* The fields of f in a fixed order. */
static sw_status add_fields(sw_buf *b, const gw_log_fields *f)
{
	char num[48];
	sw_status st = SW_OK;

	if (f->request_id)
		st = add_str(b, "request_id", f->request_id, strlen(f->request_id));
	if (st == SW_OK && f->route)
		st = add_str(b, "route", f->route, strlen(f->route));
	if (st == SW_OK && f->transport)
		st = add_str(b, "transport", f->transport, strlen(f->transport));
	if (st == SW_OK && f->session_id)
		st = add_str(b, "session_id", f->session_id, strlen(f->session_id));
	if (st == SW_OK && f->device)
		st = add_str(b, "device", f->device, strlen(f->device));
	if (st == SW_OK && f->status >= 0) {
		snprintf(num, sizeof(num), "%d", f->status);
		st = add_num(b, "status", num);
	}
	if (st == SW_OK && f->latency_ms >= 0) {
		snprintf(num, sizeof(num), "%.3f", f->latency_ms);
		st = add_num(b, "latency_ms", num);
	}
	if (st == SW_OK && f->bytes_in >= 0) {
		snprintf(num, sizeof(num), "%ld", f->bytes_in);
		st = add_num(b, "bytes_in", num);
	}
	if (st == SW_OK && f->bytes_out >= 0) {
		snprintf(num, sizeof(num), "%ld", f->bytes_out);
		st = add_num(b, "bytes_out", num);
	}
	if (st == SW_OK && f->attempts >= 0) {
		snprintf(num, sizeof(num), "%d", f->attempts);
		st = add_num(b, "attempts", num);
	}
	if (st == SW_OK && f->error)
		st = add_str(b, "error", f->error, strlen(f->error));
	if (st == SW_OK && f->body) {
		size_t n = f->body_len < LOG_BODY_MAX ? f->body_len : LOG_BODY_MAX;

		st = add_str(b, "body", f->body, n);
		if (st == SW_OK && n < f->body_len)
			st = add_num(b, "body_truncated", "true");
	}
	return st;
}

/* Writes the whole line, retrying short writes and EINTR. */
static void write_all(const char *p, size_t n)
{
	int tries = 0;

	while (n > 0 && tries++ < 100) {
		ssize_t w = write(STDERR_FILENO, p, n);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		p += w;
		n -= (size_t)w;
	}
}

void gw_log(int level, const char *msg, const gw_log_fields *f)
{
	struct timespec ts;
	struct tm tm;
	char head[96];
	sw_buf b;
	sw_status st;

	if (level < atomic_load(&log_level))
		return;
	if (level < GW_LOG_DEBUG || level > GW_LOG_ERROR)
		level = GW_LOG_ERROR;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	snprintf(head, sizeof(head),
		 "{\"time\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\",\"level\":\"%s\"",
		 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		 tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000L, level_names[level]);
	sw_buf_init(&b, LOG_LINE_MAX, NULL);
	st = sw_buf_append(&b, head, strlen(head));
	if (st == SW_OK)
		st = add_str(&b, "msg", msg ? msg : "", msg ? strlen(msg) : 0);
	if (st == SW_OK && f)
		st = add_fields(&b, f);
	if (st == SW_OK)
		st = sw_buf_append(&b, "}\n", 2);
	if (st == SW_OK) {
		write_all(b.data, b.len);
	} else {
		/* out of memory or a line past the cap: say so, still as JSON */
		static const char fallback[] =
			"{\"level\":\"error\",\"msg\":\"log line dropped\"}\n";

		write_all(fallback, sizeof(fallback) - 1);
	}
	sw_buf_free(&b);
}
