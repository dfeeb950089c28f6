/* json_scan.c - the strict lexical pass that runs before the parser's
 * walks (json_parse.c), and the field names they share.
 *
 * It checks the whole input against RFC 8259 and the depth the schema can
 * use: UTF-8 only, no invalid or unpaired \u escapes, no raw control
 * characters in strings, no 01, 1., .5 or +1, nothing but space, tab, CR
 * and LF around tokens, nothing after the value. The walks then read the
 * accepted text without checking it again.
 */
#include <stdio.h>
#include <string.h>

#include "sw_internal.h"

/* ==== Field names ==== */

const char *const sw__json_inner_names[2][2][3] = {
	{ { "input_cost", "output_cost", "total_cost" },
	  { "inputCost", "outputCost", "totalCost" } },
	{ { "prompt_tokens", "completion_tokens", "total_tokens" },
	  { "promptTokens", "completionTokens", "totalTokens" } },
};

/* A name with its length, for lookups that compare lengths first. */
typedef struct json_name {
	const char *s;
	unsigned char len;
} json_name;

#define NAME(s) { s, sizeof(s) - 1 }

/* Top-level names: [bit][wire 0 / SDK 1]. */
static const json_name field_names[SW_FIELD_COUNT][2] = {
#define SW__NAMES(name, bit, wire, sdk) { NAME(wire), NAME(sdk) },
	SW_FIELD_MAP(SW__NAMES)
#undef SW__NAMES
};

/* Names inside billing [0] and usage [1]: [usage][SW_IN..][wire / SDK],
 * as sw__json_inner_names. */
static const json_name inner_names[2][3][2] = {
	{ { NAME("input_cost"), NAME("inputCost") },
	  { NAME("output_cost"), NAME("outputCost") },
	  { NAME("total_cost"), NAME("totalCost") } },
	{ { NAME("prompt_tokens"), NAME("promptTokens") },
	  { NAME("completion_tokens"), NAME("completionTokens") },
	  { NAME("total_tokens"), NAME("totalTokens") } },
};

/* The index among count (wire, SDK) pairs of names that key[0..n) is
 * exactly, or -1; *as_written (if not NULL) gets the name it matched.
 * The search starts at pair first (0 <= first < count) and wraps. */
static int lookup(const json_name (*names)[2], int count, int first,
		  const char *key, size_t n, const char **as_written)
{
	int i = first, k;

	do {
		for (k = 0; k < 2; k++)
			if (names[i][k].len == n &&
			    memcmp(key, names[i][k].s, n) == 0) {
				if (as_written != NULL)
					*as_written = names[i][k].s;
				return i;
			}
		if (++i == count)
			i = 0;
	} while (i != first);
	return -1;
}

int sw__json_field(const char *key, size_t n, int hint,
		   const char **as_written)
{
	hint = hint >= 0 && hint < SW_FIELD_COUNT ? hint : 0;
	return lookup(field_names, SW_FIELD_COUNT, hint, key, n, as_written);
}

int sw__json_inner(int usage, const char *key, size_t n, int hint,
		   const char **as_written)
{
	hint = hint >= 0 && hint < 3 ? hint : 0;
	return lookup(inner_names[usage], 3, hint, key, n, as_written);
}

void sw__json_path_add(char *path, size_t cap, const char *key, size_t n,
		       bool dot)
{
	size_t at = strnlen(path, cap - 1), i = 0;

	if (dot && at > 0 && at + 1 < cap)
		path[at++] = '.';
	while (i < n && at + 1 < cap) {
		unsigned char c = (unsigned char)key[i];
		size_t clen = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;

		if (c == 0xFF || c < 0x20) { /* a key's U+0000, controls */
			path[at++] = '?';
			i++;
			continue;
		}
		if (clen > n - i || at + clen >= cap)
			break; /* never cut a character in two */
		memcpy(path + at, key + i, clen);
		at += clen;
		i += clen;
	}
	path[at] = '\0';
}

/* ==== The scanner ==== */

/* One level of the current path: a key of an object or an index. */
typedef struct scan_level {
	bool is_array;
	const char *key; /* raw bytes between the quotes, NULL: none yet */
	size_t klen;
	size_t index;
} scan_level;

typedef struct scanner {
	const char *s;
	size_t n, pos;
	size_t utf8_bad; /* offset of the first byte that is not UTF-8, or n */
	int depth;
	scan_level lv[SW__JSON_MAX_DEPTH];
	sw_error *err;
} scanner;

/* Describes the byte at pos for a message: "'x'", "byte 0x01" or "the
 * end of the input". */
static void describe(const scanner *sc, size_t pos, char *out, size_t cap)
{
	unsigned char c;

	if (pos >= sc->n) {
		snprintf(out, cap, "the end of the input");
		return;
	}
	c = (unsigned char)sc->s[pos];
	if (c >= 0x21 && c < 0x7F)
		snprintf(out, cap, "'%c'", c);
	else
		snprintf(out, cap, "byte 0x%02X", c);
}

/* For a key l inside billing or usage: usage << 2 | index, else -1. */
static int inner_of(const scanner *sc, const scan_level *l)
{
	int bit, usage, i;

	if (sc->lv[0].is_array || sc->lv[0].key == NULL)
		return -1;
	bit = sw__json_field(sc->lv[0].key, sc->lv[0].klen, 0, NULL);
	if (bit < 0 || (1u << bit) & ~(unsigned)(SW_F_BILLING | SW_F_USAGE))
		return -1;
	usage = (1u << bit) == SW_F_USAGE;
	i = sw__json_inner(usage, l->key, l->klen, 0, NULL);
	return i < 0 ? -1 : usage << 2 | i;
}

/* The path of the current position: "billing.input_cost", "tags[3]". */
static void scan_path(const scanner *sc, char *out, size_t cap)
{
	int d;

	out[0] = '\0';
	for (d = 0; d < sc->depth && d < SW__JSON_MAX_DEPTH; d++) {
		const scan_level *l = &sc->lv[d];
		char idx[32];
		int bit, inner;

		if (l->is_array) {
			snprintf(idx, sizeof(idx), "[%zu]", l->index);
			sw__json_path_add(out, cap, idx, strlen(idx), false);
			continue;
		}
		if (l->key == NULL)
			break;
		if (d == 0 &&
		    (bit = sw__json_field(l->key, l->klen, 0, NULL)) >= 0) {
			const char *w = sw_field_wire_name((unsigned)bit);

			sw__json_path_add(out, cap, w, strlen(w), true);
		} else if (d == 1 && (inner = inner_of(sc, l)) >= 0) {
			const char *w = sw__json_inner_names[inner >> 2][0]
							    [inner & 3];

			sw__json_path_add(out, cap, w, strlen(w), true);
		} else {
			sw__json_path_add(out, cap, l->key, l->klen, true);
		}
	}
}

/* Records the input's first byte that is not UTF-8, with the path of the
 * value it is in ("tags[1]"; a key's bytes name the object holding it). */
static sw_status not_utf8(scanner *sc)
{
	char path[SW_ERROR_PATH_MAX];

	if (sc->err == NULL || sc->err->code != SW_OK)
		return SW_EUTF8;
	scan_path(sc, path, sizeof(path));
	return sw_error_set(sc->err, SW_EUTF8, path, sc->utf8_bad,
			    "expected UTF-8 text, found an invalid byte 0x%02X at offset %zu",
			    (unsigned char)sc->s[sc->utf8_bad], sc->utf8_bad);
}

/* Records a malformed-JSON error at pos: "expected X, found Y". Every
 * byte before utf8_bad is UTF-8, so an error at or past it is that byte's
 * (outside a string, a byte of 0x80 or more is never valid JSON). */
static sw_status bad(scanner *sc, sw_status st, size_t pos,
		     const char *expected)
{
	char path[SW_ERROR_PATH_MAX], found[32];

	if (sc->utf8_bad < sc->n && pos >= sc->utf8_bad)
		return not_utf8(sc);
	if (sc->err == NULL || sc->err->code != SW_OK)
		return st;
	scan_path(sc, path, sizeof(path));
	describe(sc, pos, found, sizeof(found));
	return sw_error_set(sc->err, st, path, pos, "expected %s, found %s",
			    expected, found);
}

static inline void skip_ws(scanner *sc)
{
	while (sc->pos < sc->n) {
		char c = sc->s[sc->pos];

		if (c != ' ' && c != '\n' && c != '\r' && c != '\t')
			break;
		sc->pos++;
	}
}

/* Reads the 4 hex digits of a \u escape at pos (just past the 'u'). */
static sw_status hex4(scanner *sc, size_t pos, unsigned *cp)
{
	unsigned v = 0;
	int i;

	for (i = 0; i < 4; i++) {
		size_t at = pos + (size_t)i;
		int h = at < sc->n ? sw__hex_value((unsigned char)sc->s[at]) : -1;

		if (h < 0)
			return bad(sc, SW_EJSON, at, "4 hex digits after \\u");
		v = v << 4 | (unsigned)h;
	}
	*cp = v;
	return SW_OK;
}

/* A string at pos (the opening quote). Sets *start and *len to the raw
 * bytes between the quotes. */
static sw_status scan_string(scanner *sc, const char **start, size_t *len)
{
	const char *s = sc->s;
	size_t pos = sc->pos + 1, n = sc->n;
	unsigned cp, lo;
	sw_status st;

	for (;;) {
		unsigned char c;

		pos += sw__json_plain(s + pos, n - pos);
		if (pos >= n)
			return bad(sc, SW_EJSON, pos, "'\"' to end the string");
		c = (unsigned char)s[pos];
		if (c == '"') {
			if (sc->utf8_bad < pos) /* inside this string */
				return not_utf8(sc);
			break;
		}
		if (c < 0x20) {
			char msg[64];

			snprintf(msg, sizeof(msg),
				 "an escape for control character U+%04X", c);
			return bad(sc, SW_EJSON, pos, msg);
		}
		/* An escape. */
		if (pos + 1 >= n)
			return bad(sc, SW_EJSON, pos + 1, "an escape character");
		switch (s[pos + 1]) {
		case '"': case '\\': case '/': case 'b': case 'f': case 'n':
		case 'r': case 't':
			pos += 2;
			continue;
		case 'u':
			break;
		default:
			return bad(sc, SW_EJSON, pos + 1,
				   "an escape (\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)");
		}
		st = hex4(sc, pos + 2, &cp);
		if (st != SW_OK)
			return st;
		if (cp >= 0xDC00 && cp <= 0xDFFF)
			return bad(sc, SW_EJSON, pos,
				   "a high surrogate escape before a low one");
		if (cp >= 0xD800 && cp <= 0xDBFF) {
			if (pos + 7 >= n || s[pos + 6] != '\\' ||
			    s[pos + 7] != 'u')
				return bad(sc, SW_EJSON, pos + 6,
					   "a low surrogate escape (\\uDC00-\\uDFFF) after a high one");
			st = hex4(sc, pos + 8, &lo);
			if (st != SW_OK)
				return st;
			if (lo < 0xDC00 || lo > 0xDFFF)
				return bad(sc, SW_EJSON, pos + 6,
					   "a low surrogate escape (\\uDC00-\\uDFFF) after a high one");
			pos += 12;
			continue;
		}
		pos += 6;
	}
	*start = s + sc->pos + 1;
	*len = pos - sc->pos - 1;
	sc->pos = pos + 1;
	return SW_OK;
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* A number per RFC 8259: -? (0 or [1-9] digits*) (. digits+)? ([eE] [+-]? digits+)? */
static sw_status scan_number(scanner *sc)
{
	const char *s = sc->s;
	size_t pos = sc->pos, n = sc->n;

	if (s[pos] == '-')
		pos++;
	if (pos >= n || !is_digit(s[pos]))
		return bad(sc, SW_EJSON, pos, "a digit after '-'");
	if (s[pos] == '0') {
		pos++;
		if (pos < n && is_digit(s[pos]))
			return bad(sc, SW_EJSON, pos,
				   "no digit after a leading 0 (leading zeros are not allowed)");
	} else {
		while (pos < n && is_digit(s[pos]))
			pos++;
	}
	if (pos < n && s[pos] == '.') {
		pos++;
		if (pos >= n || !is_digit(s[pos]))
			return bad(sc, SW_EJSON, pos, "a digit after '.'");
		while (pos < n && is_digit(s[pos]))
			pos++;
	}
	if (pos < n && (s[pos] == 'e' || s[pos] == 'E')) {
		pos++;
		if (pos < n && (s[pos] == '+' || s[pos] == '-'))
			pos++;
		if (pos >= n || !is_digit(s[pos]))
			return bad(sc, SW_EJSON, pos, "a digit in the exponent");
		while (pos < n && is_digit(s[pos]))
			pos++;
	}
	sc->pos = pos;
	return SW_OK;
}

/* true, false or null at pos. */
static sw_status scan_literal(scanner *sc, const char *word)
{
	size_t k = strlen(word), i;

	for (i = 0; i < k; i++)
		if (sc->pos + i >= sc->n || sc->s[sc->pos + i] != word[i])
			return bad(sc, SW_EJSON, sc->pos + i, "a JSON value");
	sc->pos += k;
	return SW_OK;
}

static sw_status scan_value(scanner *sc);

/* An object or array at pos, one level deeper. */
static sw_status scan_container(scanner *sc)
{
	bool is_array = sc->s[sc->pos] == '[';
	char close = is_array ? ']' : '}';
	scan_level *l;
	sw_status st;

	if (sc->depth >= SW__JSON_MAX_DEPTH) {
		char path[SW_ERROR_PATH_MAX];

		scan_path(sc, path, sizeof(path));
		return sw_error_set(sc->err, SW_ETYPE, path, sc->pos,
				    "expected a string or a number (the schema nests no deeper than %d levels), found %s",
				    SW__JSON_MAX_DEPTH,
				    is_array ? "an array" : "an object");
	}
	l = &sc->lv[sc->depth++];
	l->is_array = is_array;
	l->key = NULL;
	l->klen = 0;
	l->index = 0;
	sc->pos++;
	skip_ws(sc);
	if (sc->pos < sc->n && sc->s[sc->pos] == close) {
		sc->pos++;
		sc->depth--;
		return SW_OK;
	}
	for (;;) {
		if (!is_array) {
			const char *k;
			size_t klen;

			l->key = NULL; /* errors in a key name the parent */
			if (sc->pos >= sc->n || sc->s[sc->pos] != '"')
				return bad(sc, SW_EJSON, sc->pos,
					   "'\"' to start a key");
			st = scan_string(sc, &k, &klen);
			if (st != SW_OK)
				return st;
			l->key = k;
			l->klen = klen;
			skip_ws(sc);
			if (sc->pos >= sc->n || sc->s[sc->pos] != ':')
				return bad(sc, SW_EJSON, sc->pos,
					   "':' after a key");
			sc->pos++;
			skip_ws(sc);
		}
		st = scan_value(sc);
		if (st != SW_OK)
			return st;
		skip_ws(sc);
		if (sc->pos < sc->n && sc->s[sc->pos] == ',') {
			sc->pos++;
			skip_ws(sc);
			l->index++;
			continue;
		}
		if (sc->pos < sc->n && sc->s[sc->pos] == close)
			break;
		return bad(sc, SW_EJSON, sc->pos,
			   is_array ? "',' or ']'" : "',' or '}'");
	}
	sc->pos++;
	sc->depth--;
	return SW_OK;
}

/* Any value at pos (whitespace already skipped). */
static sw_status scan_value(scanner *sc)
{
	const char *k;
	size_t klen;

	if (sc->pos >= sc->n)
		return bad(sc, SW_EJSON, sc->pos, "a JSON value");
	switch (sc->s[sc->pos]) {
	case '{':
	case '[':
		return scan_container(sc);
	case '"':
		return scan_string(sc, &k, &klen);
	case 't':
		return scan_literal(sc, "true");
	case 'f':
		return scan_literal(sc, "false");
	case 'n':
		return scan_literal(sc, "null");
	default:
		if (sc->s[sc->pos] == '-' || is_digit(sc->s[sc->pos]))
			return scan_number(sc);
		return bad(sc, SW_EJSON, sc->pos, "a JSON value");
	}
}

sw_status sw__json_scan(const char *json, size_t len, size_t max_input,
			sw_error *err)
{
	scanner sc = { .s = json, .n = len, .err = err };
	sw_status st;
	char c;

	if (len > max_input)
		return sw_error_set(err, SW_ETOOBIG, "", (size_t)-1,
				    "expected at most %zu bytes of JSON, found %zu",
				    max_input, len);
	/* Found here, reported where the scan reaches it, with its path. */
	sc.utf8_bad = sw__utf8_check_fast(json, len);
	skip_ws(&sc);
	if (sc.pos >= len)
		return bad(&sc, SW_EJSON, sc.pos, "a JSON value");
	c = json[sc.pos];
	/* The body must be an object; checking it here also means that every
	 * number is followed by a delimiter inside the input. */
	if (c == '[' || c == '"' || c == 't' || c == 'f' || c == 'n' ||
	    c == '-' || is_digit(c))
		return sw_error_set(err, SW_ETYPE, "", sc.pos,
				    "expected an object as the body, found %s",
				    c == '[' ? "an array" : c == '"' ? "a string" :
				    c == 'n' ? "null" : c == 't' || c == 'f' ?
				    "a boolean" : "a number");
	st = scan_value(&sc);
	if (st != SW_OK)
		return st;
	skip_ws(&sc);
	if (sc.pos != len)
		return bad(&sc, SW_EJSON, sc.pos,
			   "nothing but whitespace after the JSON value");
	if (sc.utf8_bad != len) /* cannot happen: every byte was scanned */
		return not_utf8(&sc);
	return SW_OK;
}
