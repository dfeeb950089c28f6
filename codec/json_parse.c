/* json_parse.c - the API's JSON body into an sw_update
 * (docs/wire-format.md 2.2).
 *
 * Three passes over the input and no tree: the strict lexical scan
 * (json_scan.c) accepts the whole text or names its first fault; then a
 * checking walk over the accepted text takes the members in order,
 * checks names, types and limits, converts numbers and dates, and sizes
 * the result block exactly; a filling walk copies the strings into it.
 * The walks trust the scan: every string ends inside the input with
 * valid escapes, every number and literal is followed by a delimiter,
 * the body is an object nested at most SW__JSON_MAX_DEPTH deep. Since the
 * scan runs first, a lexical fault anywhere wins over a semantic one.
 *
 * Paths in errors use the wire names ("billing.total_cost", "tags[3]")
 * whichever naming the input used; an unknown key is named as written.
 * Semantic errors carry no byte offset.
 */
#define _GNU_SOURCE /* strtod_l */
#include <float.h>
#include <locale.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sw_internal.h"

/* Field bits by name: B_ID = 0 ... B_UPDATED_AT = 11. */
enum {
#define SW__BIT(name, bit, wire, sdk) B_##name = bit,
	SW_FIELD_MAP(SW__BIT)
#undef SW__BIT
};

#define NO_INDEX ((size_t)-1)

/* A string of the input: the raw bytes between the quotes and the length
 * once decoded (every escape decodes shorter than it is written, so
 * len < raw_len exactly when there is one). */
typedef struct jstr {
	const char *raw;
	size_t raw_len, len;
} jstr;

/* A key: decoded (or the raw bytes when it has no escape), cut after
 * sizeof(buf) bytes, which is past anything a name or a path can use. */
typedef struct jkey {
	const char *s;
	size_t n;
	bool cut;
	char buf[SW_ERROR_PATH_MAX + 4];
} jkey;

/* What the checking walk found, for the filling walk. */
typedef struct found {
	uint32_t has;                      /* field bits seen */
	const char *name[SW_FIELD_COUNT];  /* each key as written */
	jstr str[SW_FIELD_COUNT];          /* the four string fields */
	double num[SW_FIELD_COUNT];        /* duration, traces_count */
	const char *list[2];               /* contact_ids, tags: the '[' */
	size_t n_list[2];
	const char *inner_name[2][3];      /* billing, usage members */
	double inner[2][3];
	bool project_id_null;
	int64_t date[2];                   /* started_at, updated_at */
	size_t str_bytes;
} found;

/* The checking walk's state. */
typedef struct walk {
	const char *p, *end; /* the next byte of the input, its end */
	const sw_parse_opts *o;
	const sw_limits *l;
	locale_t c_loc;
	found f;
	sw_error *err;
} walk;

/* ==== Reading text the scan accepted ==== */

static const char *skip_ws(const char *p)
{
	while (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')
		p++;
	return p;
}

static unsigned hex4(const char *p)
{
	unsigned v = 0;
	int i;

	for (i = 0; i < 4; i++)
		v = v << 4 | (unsigned)sw__hex_value((unsigned char)p[i]);
	return v;
}

/* The string at p (its opening quote; the input ends at end) into *s;
 * returns the byte after its closing quote. */
static const char *read_str(const char *p, const char *end, jstr *s)
{
	const char *start = ++p;
	size_t saved = 0;
	unsigned cp;

	for (;;) {
		p += sw__json_plain(p, (size_t)(end - p)); /* no controls */
		if (*p == '"')
			break;
		if (p[1] != 'u') {
			saved += 1;
			p += 2;
			continue;
		}
		cp = hex4(p + 2);
		if (cp >= 0xD800 && cp <= 0xDBFF) { /* a pair: 4 bytes */
			saved += 12 - 4;
			p += 12;
			continue;
		}
		saved += 6 - (cp < 0x80 ? 1 : cp < 0x800 ? 2 : 3);
		p += 6;
	}
	s->raw = start;
	s->raw_len = (size_t)(p - start);
	s->len = s->raw_len - saved;
	return p + 1;
}

/* Decodes the raw bytes of a string into out, at most cap bytes (only a
 * key's buffer is ever too small: it is cut there); returns the bytes
 * written. U+0000 becomes nul: 0x00 in values; 0xFF (never in UTF-8) in
 * keys and dates, where it matches no name and shows as '?' in a path,
 * as the sanitised copy of the cJSON-based parser had it. */
static size_t decode_str(const jstr *s, char *out, size_t cap, char nul)
{
	const char *p = s->raw, *end = s->raw + s->raw_len;
	size_t o = 0;

	while (p < end) {
		const char *bs = memchr(p, '\\', (size_t)(end - p));
		size_t run = (size_t)((bs ? bs : end) - p);
		unsigned cp;
		char c;

		if (run > cap - o)
			run = cap - o; /* a key cut after cap bytes */
		memcpy(out + o, p, run);
		o += run;
		p += run;
		if (p != bs)
			break; /* the end, or out of room */
		switch (p[1]) {
		case 'b': c = '\b'; break;
		case 'f': c = '\f'; break;
		case 'n': c = '\n'; break;
		case 'r': c = '\r'; break;
		case 't': c = '\t'; break;
		case 'u': c = 0; break;
		default: c = p[1]; break; /* " \ / */
		}
		if (p[1] != 'u') {
			if (o == cap)
				break;
			out[o++] = c;
			p += 2;
			continue;
		}
		cp = hex4(p + 2);
		p += 6;
		if (cp >= 0xD800 && cp <= 0xDBFF) {
			cp = 0x10000 + ((cp - 0xD800) << 10) + (hex4(p + 2) - 0xDC00);
			p += 6;
		}
		if (cp == 0) {
			if (o == cap)
				break;
			out[o++] = nul;
		} else if (cp < 0x80) {
			if (o == cap)
				break;
			out[o++] = (char)cp;
		} else if (cp < 0x800) {
			if (cap - o < 2)
				break;
			out[o++] = (char)(0xC0 | cp >> 6);
			out[o++] = (char)(0x80 | (cp & 0x3F));
		} else if (cp < 0x10000) {
			if (cap - o < 3)
				break;
			out[o++] = (char)(0xE0 | cp >> 12);
			out[o++] = (char)(0x80 | (cp >> 6 & 0x3F));
			out[o++] = (char)(0x80 | (cp & 0x3F));
		} else {
			if (cap - o < 4)
				break;
			out[o++] = (char)(0xF0 | cp >> 18);
			out[o++] = (char)(0x80 | (cp >> 12 & 0x3F));
			out[o++] = (char)(0x80 | (cp >> 6 & 0x3F));
			out[o++] = (char)(0x80 | (cp & 0x3F));
		}
	}
	return o;
}

/* The key at w->p, then past the ':' and the whitespace after it. */
static void read_key(walk *w, jkey *k)
{
	jstr s;

	w->p = skip_ws(read_str(w->p, w->end, &s));
	w->p = skip_ws(w->p + 1); /* the ':' */
	if (s.len == s.raw_len) {
		k->s = s.raw;
		k->n = s.raw_len;
		k->cut = false;
		return;
	}
	k->n = decode_str(&s, k->buf, sizeof(k->buf), (char)0xFF);
	k->s = k->buf;
	k->cut = k->n < s.len;
}

/* Past the value at p (any type): the byte after it. */
static const char *skip_value(const char *p, const char *end)
{
	int depth = 0;
	jstr s;

	do {
		if (*p == '"') {
			p = read_str(p, end, &s);
			continue;
		}
		if (*p == '{' || *p == '[')
			depth++;
		else if (*p == '}' || *p == ']')
			depth--;
		p++;
	} while (depth > 0 || (*p != ',' && *p != '}' && *p != ']' &&
			       *p != ' ' && *p != '\n' && *p != '\r' &&
			       *p != '\t'));
	return p;
}

/* After a member or an item: past the ',' and the whitespace after it
 * (true), or past the closing bracket (false: nothing after the body's
 * is read). */
static bool next_member(walk *w)
{
	w->p = skip_ws(w->p);
	if (*w->p++ != ',')
		return false;
	w->p = skip_ws(w->p);
	return true;
}

/* 10^0 ... 10^22: the powers of ten a double holds exactly. */
static const double pow10_exact[23] = {
	1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
	1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22
};

/* The number token at p when it is m * 10^e with m <= 2^53 and |e| <= 22
 * (most numbers of an update: integers, short decimals): m and 10^|e|
 * are exact doubles, so one IEEE multiplication or division of the
 * signed m is the correctly rounded value, in any rounding mode: the
 * double strtod_l gives (Clinger's fast path; with extended-precision
 * arithmetic, FLT_EVAL_METHOD != 0, it is not taken). Returns the byte
 * after the token, or NULL for strtod_l. */
static const char *exact_number(const char *p, double *x)
{
	bool neg = *p == '-';
	uint64_t m = 0;
	int digits = 0, e = 0, ex = 0, esign = 1;

	if (FLT_EVAL_METHOD != 0)
		return NULL;
	p += neg;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (m == 0 && *p == '0')
			continue; /* leading zeros */
		if (++digits > 19)
			return NULL;
		m = m * 10 + (uint64_t)(*p - '0');
	}
	if (*p == '.')
		for (p++; *p >= '0' && *p <= '9'; p++, e--) {
			if (m == 0 && *p == '0')
				continue;
			if (++digits > 19)
				return NULL;
			m = m * 10 + (uint64_t)(*p - '0');
		}
	if (*p == 'e' || *p == 'E') {
		p++;
		if (*p == '+' || *p == '-')
			esign = *p++ == '-' ? -1 : 1;
		for (; *p >= '0' && *p <= '9'; p++)
			if ((ex = ex * 10 + (*p - '0')) > 1000)
				return NULL;
		e += esign * ex;
	}
	if (m > (uint64_t)1 << 53 || (m != 0 && (e < -22 || e > 22)))
		return NULL;
	*x = neg ? -(double)m : (double)m;
	if (m != 0 && e < 0)
		*x /= pow10_exact[-e];
	else if (m != 0)
		*x *= pow10_exact[e];
	return p;
}

/* The C locale for strtod_l, made once (two threads may both make one;
 * one is kept). (locale_t)0 when there is no memory for it. */
static locale_t c_locale(void)
{
	static locale_t made;
	locale_t l = __atomic_load_n(&made, __ATOMIC_ACQUIRE), mine;

	if (l != (locale_t)0)
		return l;
	mine = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
	if (mine == (locale_t)0)
		return mine;
	if (__atomic_compare_exchange_n(&made, &l, mine, false,
					__ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		return mine;
	freelocale(mine);
	return l;
}

/* ==== Checking ==== */

static const char *type_name(char c)
{
	switch (c) {
	case '"':
		return "a string";
	case '{':
		return "an object";
	case '[':
		return "an array";
	case 't':
	case 'f':
		return "a boolean";
	case 'n':
		return "null";
	}
	return "a number";
}

/* The path "name", "name.member" or "name[index]" in buf, made only for
 * an error. */
static const char *path_of(char *buf, const char *name, const char *member,
			   size_t index)
{
	if (member != NULL)
		sw__path(buf, SW_ERROR_PATH_MAX, "%s.%s", name, member);
	else if (index != NO_INDEX)
		sw__path(buf, SW_ERROR_PATH_MAX, "%s[%zu]", name, index);
	else
		return name;
	return buf;
}

static sw_status wrong_type(walk *w, const char *path, const char *expected)
{
	return sw_error_set(w->err, SW_ETYPE, path, (size_t)-1,
			    "expected %s, found %s", expected,
			    type_name(*w->p));
}

/* A string value within max_string into *s; adds its bytes to
 * str_bytes. */
static sw_status check_string(walk *w, const char *name, size_t index,
			      jstr *s)
{
	char path[SW_ERROR_PATH_MAX];

	if (*w->p != '"')
		return wrong_type(w, path_of(path, name, NULL, index),
				  "a string");
	w->p = read_str(w->p, w->end, s);
	if (s->len > w->l->max_string)
		return sw_error_set(w->err, SW_ETOOBIG,
				    path_of(path, name, NULL, index),
				    (size_t)-1,
				    "expected a string of at most %zu bytes, found %zu bytes",
				    w->l->max_string, s->len);
	w->f.str_bytes += s->len;
	return SW_OK;
}

/* A finite number into *x: exact_number, or strtod_l in the C locale,
 * reads the token the scan accepted exactly (correctly rounded), and
 * stops at its end. */
static sw_status check_number(walk *w, const char *name, const char *member,
			      double *x)
{
	char path[SW_ERROR_PATH_MAX], *end;
	const char *after;

	if (*w->p != '-' && (*w->p < '0' || *w->p > '9'))
		return wrong_type(w, path_of(path, name, member, NO_INDEX),
				  "a number");
	after = exact_number(w->p, x);
	if (after == NULL) {
		*x = strtod_l(w->p, &end, w->c_loc);
		after = end;
	}
	w->p = after;
	if (!isfinite(*x))
		return sw__fail(w->err, SW_ERANGE,
				path_of(path, name, member, NO_INDEX),
				(size_t)-1,
				"expected a finite number, found one that overflows to infinity");
	return SW_OK;
}

/* An array of strings (contact_ids: 0, tags: 1): count and each item. */
static sw_status check_list(walk *w, const char *name, int which)
{
	size_t i = 0;
	sw_status st;
	jstr s;

	if (*w->p != '[')
		return wrong_type(w, name, "an array of strings");
	w->f.list[which] = w->p;
	w->p = skip_ws(w->p + 1);
	if (*w->p == ']') {
		w->p++;
	} else {
		do {
			if (i == w->l->max_items)
				return sw_error_set(w->err, SW_ETOOBIG, name,
						    (size_t)-1,
						    "expected at most %zu items, found more",
						    w->l->max_items);
			st = check_string(w, name, i, &s);
			if (st != SW_OK)
				return st;
			i++;
		} while (next_member(w));
	}
	w->f.n_list[which] = i;
	return SW_OK;
}

/* billing (usage 0) or usage (usage 1): three numbers, each once. */
static sw_status check_triple(walk *w, int usage)
{
	const char *outer = usage ? "usage" : "billing";
	const char *const *wire = sw__json_inner_names[usage][0];
	const char **seen = w->f.inner_name[usage];
	char path[SW_ERROR_PATH_MAX];
	sw_status st;
	const char *as;
	jkey k;
	int i = -1;

	if (*w->p != '{')
		return wrong_type(w, outer, "an object");
	w->p = skip_ws(w->p + 1);
	if (*w->p == '}')
		w->p++;
	else
		do {
			read_key(w, &k);
			i = k.cut ? -1 : sw__json_inner(usage, k.s, k.n, i + 1,
							 &as);
			if (i < 0) {
				if (w->o->lenient) {
					w->p = skip_value(w->p, w->end);
					continue;
				}
				path[0] = '\0';
				sw__json_path_add(path, sizeof(path), outer,
						  strlen(outer), false);
				sw__json_path_add(path, sizeof(path), k.s, k.n,
						  true);
				return sw_error_set(w->err, SW_EUNKNOWN, path,
						    (size_t)-1,
						    "expected %s, %s or %s",
						    wire[0], wire[1], wire[2]);
			}
			if (seen[i] != NULL)
				return sw_error_set(w->err, SW_EDUP,
						    path_of(path, outer, wire[i],
							    NO_INDEX),
						    (size_t)-1,
						    "expected each member once, found \"%s\" and \"%s\"",
						    seen[i], as);
			st = check_number(w, outer, wire[i],
					  &w->f.inner[usage][i]);
			if (st != SW_OK)
				return st;
			seen[i] = as;
		} while (next_member(w));
	for (i = 0; i < 3; i++) {
		if (seen[i] != NULL)
			continue;
		return sw_error_set(w->err, SW_EMISSING,
				    path_of(path, outer, wire[i], NO_INDEX),
				    (size_t)-1,
				    "expected %s, %s and %s, found no %s",
				    wire[0], wire[1], wire[2], wire[i]);
	}
	return SW_OK;
}

/* A date-time string into *ms (started_at: 0, updated_at: 1). An escaped
 * date is decoded first: on the stack, or when longer than any sane
 * date, into a passing allocation. */
static sw_status check_date(walk *w, const char *name, int which)
{
	const char *why = NULL, *text;
	char buf[64], *tmp = NULL;
	sw_status st;
	jstr s;

	if (*w->p != '"')
		return wrong_type(w, name, "a date-time string");
	w->p = read_str(w->p, w->end, &s);
	text = s.raw;
	if (s.len < s.raw_len) {
		if (s.len > sizeof(buf)) {
			tmp = sw__alloc(w->o->alloc, s.len);
			if (tmp == NULL)
				return sw__fail(w->err, SW_ENOMEM, "",
						(size_t)-1,
						"no memory for a date-time string");
		}
		text = tmp ? tmp : buf;
		decode_str(&s, tmp ? tmp : buf, s.len, (char)0xFF);
	}
	st = sw_date_parse(text, s.len, &w->f.date[which], &why);
	sw__free(w->o->alloc, tmp);
	if (st != SW_OK)
		return sw__fail(w->err, SW_EDATE, name, (size_t)-1,
				why ? why : "invalid date-time");
	return SW_OK;
}

/* The value of one top-level member, by field bit. */
static sw_status check_field(walk *w, unsigned bit)
{
	const char *name = sw_field_wire_name(bit);

	switch (1u << bit) {
	case SW_F_ID:
	case SW_F_EXTERNAL_ID:
	case SW_F_WORKSPACE_ID:
		return check_string(w, name, NO_INDEX, &w->f.str[bit]);
	case SW_F_PROJECT_ID:
		if (*w->p == 'n') {
			w->p += 4;
			w->f.project_id_null = true;
			return SW_OK;
		}
		if (*w->p != '"')
			return wrong_type(w, name, "a string or null");
		return check_string(w, name, NO_INDEX, &w->f.str[bit]);
	case SW_F_DURATION:
	case SW_F_TRACES_COUNT:
		return check_number(w, name, NULL, &w->f.num[bit]);
	case SW_F_CONTACT_IDS:
		return check_list(w, name, 0);
	case SW_F_TAGS:
		return check_list(w, name, 1);
	case SW_F_BILLING:
		return check_triple(w, 0);
	case SW_F_USAGE:
		return check_triple(w, 1);
	case SW_F_STARTED_AT:
		return check_date(w, name, 0);
	case SW_F_UPDATED_AT:
		return check_date(w, name, 1);
	}
	return sw__fail(w->err, SW_EINVAL, name, (size_t)-1, "no such field");
}

/* The checking walk over the body object at w->p: every key known (or
 * skipped when lenient), once, with the right type; counts the result's
 * sizes. */
static sw_status check_body(walk *w)
{
	const char *as;
	sw_status st;
	jkey k;
	int bit = -1;

	w->p = skip_ws(skip_ws(w->p) + 1); /* the scan checked the '{' */
	if (*w->p == '}')
		return SW_OK;
	do {
		read_key(w, &k);
		bit = k.cut ? -1 : sw__json_field(k.s, k.n, bit + 1, &as);
		if (bit < 0) {
			char path[SW_ERROR_PATH_MAX] = "";

			if (w->o->lenient) {
				w->p = skip_value(w->p, w->end);
				continue;
			}
			sw__json_path_add(path, sizeof(path), k.s, k.n, false);
			return sw__fail(w->err, SW_EUNKNOWN, path, (size_t)-1,
					"expected a field of the update body (_id, external_id, duration, ...), found an unknown key");
		}
		if (w->f.has & (1u << bit))
			return sw_error_set(w->err, SW_EDUP,
					    sw_field_wire_name((unsigned)bit),
					    (size_t)-1,
					    "expected each field once, found \"%s\" and \"%s\"",
					    w->f.name[bit], as);
		st = check_field(w, (unsigned)bit);
		if (st != SW_OK)
			return st;
		w->f.has |= 1u << bit;
		w->f.name[bit] = as;
	} while (next_member(w));
	return SW_OK;
}

/* ==== Filling ==== */

/* Copies a checked string into the pool, decoded. */
static sw_str copy_str(sw__builder *b, const jstr *s)
{
	sw_str r = { b->pool, s->len };

	if (s->len == s->raw_len)
		memcpy(b->pool, s->raw, s->len);
	else
		decode_str(s, b->pool, s->len, '\0');
	b->pool += s->len;
	return r;
}

/* The n strings of the array at p (its '['; the input ends at end). */
static void fill_list(sw__builder *b, const char *p, const char *end,
		      sw_str *slots, size_t n)
{
	size_t i;
	jstr s;

	p = skip_ws(p + 1);
	for (i = 0; i < n; i++) {
		p = read_str(p, end, &s);
		slots[i] = copy_str(b, &s);
		p = skip_ws(skip_ws(p) + 1); /* the ',' (or the ']': more
					       * of the body follows it) */
	}
}

/* The filling walk, into a block sized by check_body. */
static void fill(sw__builder *b, const found *f, const char *end)
{
	sw_update *u = b->u;
	int i;

	u->has = f->has;
	if (f->has & SW_F_ID)
		u->id = copy_str(b, &f->str[B_ID]);
	if (f->has & SW_F_EXTERNAL_ID)
		u->external_id = copy_str(b, &f->str[B_EXTERNAL_ID]);
	if (f->has & SW_F_DURATION)
		u->duration = f->num[B_DURATION];
	if (f->has & SW_F_CONTACT_IDS) {
		fill_list(b, f->list[0], end, b->contacts, f->n_list[0]);
		u->n_contact_ids = f->n_list[0];
	}
	for (i = 0; i < 3; i++) {
		if (f->has & SW_F_BILLING)
			u->billing[i] = f->inner[0][i];
		if (f->has & SW_F_USAGE)
			u->usage[i] = f->inner[1][i];
	}
	if (f->has & SW_F_TRACES_COUNT)
		u->traces_count = f->num[B_TRACES_COUNT];
	if (f->has & SW_F_TAGS) {
		fill_list(b, f->list[1], end, b->tags, f->n_list[1]);
		u->n_tags = f->n_list[1];
	}
	if (f->has & SW_F_WORKSPACE_ID)
		u->workspace_id = copy_str(b, &f->str[B_WORKSPACE_ID]);
	if (f->has & SW_F_PROJECT_ID) {
		if (f->project_id_null)
			u->project_id_null = true;
		else
			u->project_id = copy_str(b, &f->str[B_PROJECT_ID]);
	}
	if (f->has & SW_F_STARTED_AT)
		u->started_at = f->date[0];
	if (f->has & SW_F_UPDATED_AT)
		u->updated_at = f->date[1];
}

sw_status sw_json_parse(const char *json, size_t len,
			const sw_parse_opts *opts, sw_update **out,
			sw_error *err)
{
	static const sw_parse_opts defaults;
	const sw_parse_opts *o = opts ? opts : &defaults;
	sw_limits l = sw__limits(&o->limits);
	sw__builder b;
	sw_status st;
	walk w;

	if (out == NULL)
		return sw__fail(err, SW_EINVAL, "", (size_t)-1, "no output");
	*out = NULL;
	if (json == NULL && len > 0)
		return sw__fail(err, SW_EINVAL, "", (size_t)-1, "no input");
	if (json == NULL)
		json = "";
	st = sw__json_scan(json, len, l.max_input, err);
	if (st != SW_OK)
		return st;
	memset(&w, 0, sizeof(w));
	w.p = json;
	w.end = json + len;
	w.o = o;
	w.l = &l;
	w.err = err;
	w.c_loc = c_locale();
	if (w.c_loc == (locale_t)0)
		return sw__fail(err, SW_ENOMEM, "", (size_t)-1,
				"could not create the C locale");
	st = check_body(&w);
	if (st != SW_OK)
		return st;
	st = sw__block_new(o->alloc, w.f.n_list[0], w.f.n_list[1],
			   w.f.str_bytes, &b);
	if (st != SW_OK)
		return sw__fail(err, st, "", (size_t)-1,
				st == SW_ENOMEM ? "no memory for the result" :
						  "result too large");
	fill(&b, &w.f, w.end);
	if (o->kind == SW_KIND_SESSION) {
		st = sw_update_check(b.u, SW_KIND_SESSION, &l, err);
		if (st != SW_OK) {
			sw_update_free(b.u);
			return st;
		}
	}
	*out = b.u;
	return SW_OK;
}
