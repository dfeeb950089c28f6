/* json_write.c - an sw_update as canonical JSON (docs/wire-format.md 2.1).
 *
 * Byte-identical to JSON.stringify of the SDK's object: keys in the order
 * of SW_FIELD_MAP, numbers as Number::toString (sw_num_format), dates as
 * toISOString (sw_date_format), strings escaped only where JSON.stringify
 * escapes. A hot path: the writer reserves room for a worst case once per
 * piece, writes with pointer arithmetic and commits at the end; when a
 * worst case does not fit (a small fixed buffer) it asks for the exact
 * size instead, so a buffer that fits the output always works.
 */
#include <stdint.h>
#include <string.h>

#include "sw_internal.h"

/* ==== Names ==== */

typedef struct key_text {
	const char *s; /* "\"external_id\":" */
	size_t n;
} key_text;

#define KEY(name) { "\"" name "\":", sizeof(name) + 2 }

static const key_text field_keys[2][SW_FIELD_COUNT] = {
#define SW__WIRE_KEY(name, bit, wire, sdk) [bit] = KEY(wire),
	{ SW_FIELD_MAP(SW__WIRE_KEY) },
#undef SW__WIRE_KEY
#define SW__SDK_KEY(name, bit, wire, sdk) [bit] = KEY(sdk),
	{ SW_FIELD_MAP(SW__SDK_KEY) },
#undef SW__SDK_KEY
};

/* [billing 0 / usage 1][wire 0 / SDK 1][SW_IN..] */
static const key_text inner_keys[2][2][3] = {
	{ { KEY("input_cost"), KEY("output_cost"), KEY("total_cost") },
	  { KEY("inputCost"), KEY("outputCost"), KEY("totalCost") } },
	{ { KEY("prompt_tokens"), KEY("completion_tokens"),
	    KEY("total_tokens") },
	  { KEY("promptTokens"), KEY("completionTokens"),
	    KEY("totalTokens") } },
};

static const char *const inner_paths[2][3] = {
	{ "billing.input_cost", "billing.output_cost", "billing.total_cost" },
	{ "usage.prompt_tokens", "usage.completion_tokens",
	  "usage.total_tokens" },
};

/* Escape of each byte in JSON.stringify: 0 = raw, 'u' = \u00xx. */
static const unsigned char esc[256] = {
	['\0'] = 'u', [0x01] = 'u', [0x02] = 'u', [0x03] = 'u', [0x04] = 'u',
	[0x05] = 'u', [0x06] = 'u', [0x07] = 'u', ['\b'] = 'b', ['\t'] = 't',
	['\n'] = 'n', [0x0B] = 'u', ['\f'] = 'f', ['\r'] = 'r', [0x0E] = 'u',
	[0x0F] = 'u', [0x10] = 'u', [0x11] = 'u', [0x12] = 'u', [0x13] = 'u',
	[0x14] = 'u', [0x15] = 'u', [0x16] = 'u', [0x17] = 'u', [0x18] = 'u',
	[0x19] = 'u', [0x1A] = 'u', [0x1B] = 'u', [0x1C] = 'u', [0x1D] = 'u',
	[0x1E] = 'u', [0x1F] = 'u', ['"'] = '"', ['\\'] = '\\',
};

/* ==== The writer ==== */

typedef struct jw {
	sw_buf *b;
	char *p;   /* next byte to write, inside b->data */
	char *end; /* bytes up to here are known to be writable */
	sw_status st;
	const char *path; /* the field being written, for errors */
	bool pretty;
	int depth;
	bool first[SW__JSON_MAX_DEPTH + 1]; /* no member written yet */
} jw;

/* Commits what was written and makes room for n more bytes (and the NUL)
 * at w->p. */
static sw_status grow(jw *w, size_t n)
{
	sw_buf *b = w->b;
	sw_status st = SW_OK;
	char *p;

	if (w->p != NULL)
		b->len = (size_t)(w->p - b->data);
	p = sw_buf_reserve(b, n, &st);
	if (p == NULL)
		return st;
	w->p = p;
	w->end = b->data + (b->cap - 1 < b->max ? b->cap - 1 : b->max);
	return SW_OK;
}

/* Room for n bytes; false with w->st set when the buffer cannot give it. */
static inline bool room(jw *w, size_t n)
{
	if ((size_t)(w->end - w->p) >= n)
		return true;
	w->st = grow(w, n);
	return w->st == SW_OK;
}

/* Room for a worst case, or failing that for the exact size. */
static bool room2(jw *w, size_t worst, size_t exact)
{
	if (grow(w, worst) == SW_OK)
		return true;
	return room(w, exact);
}

static bool put(jw *w, const char *s, size_t n)
{
	if (!room(w, n))
		return false;
	memcpy(w->p, s, n);
	w->p += n;
	return true;
}

/* Bytes of the separator before a member or an item: the comma and, when
 * pretty, the newline and indent. */
static inline size_t sep_len(const jw *w)
{
	return !w->first[w->depth] + (w->pretty ? 1 + 2 * (size_t)w->depth : 0);
}

/* Writes the separator (sep_len bytes of room needed). */
static char *sep(jw *w, char *p)
{
	int i;

	if (!w->first[w->depth])
		*p++ = ',';
	w->first[w->depth] = false;
	if (w->pretty) {
		*p++ = '\n';
		for (i = 0; i < w->depth; i++) {
			*p++ = ' ';
			*p++ = ' ';
		}
	}
	return p;
}

static bool key(jw *w, const key_text *k)
{
	char *p;

	if (!room(w, sep_len(w) + k->n + w->pretty))
		return false;
	p = sep(w, w->p);
	memcpy(p, k->s, k->n);
	p += k->n;
	if (w->pretty)
		*p++ = ' ';
	w->p = p;
	return true;
}

static bool open_container(jw *w, char c)
{
	if (!room(w, 1))
		return false;
	*w->p++ = c;
	w->first[++w->depth] = true;
	return true;
}

/* "}" or "]", on its own line when pretty and not empty. */
static bool close_container(jw *w, char c)
{
	bool nl = w->pretty && !w->first[w->depth];
	char *p;
	int i;

	w->depth--;
	if (!room(w, 1 + (nl ? 1 + 2 * (size_t)w->depth : 0)))
		return false;
	p = w->p;
	if (nl) {
		*p++ = '\n';
		for (i = 0; i < w->depth; i++) {
			*p++ = ' ';
			*p++ = ' ';
		}
	}
	*p++ = c;
	w->p = p;
	return true;
}

/* Bytes s takes escaped, with its quotes. */
static size_t str_size(const unsigned char *s, size_t n)
{
	size_t out = n + 2, i;

	for (i = 0; i < n; i++)
		if (esc[s[i]])
			out += esc[s[i]] == 'u' ? 5 : 1;
	return out;
}

static bool str(jw *w, const sw_str *v)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *s = (const unsigned char *)v->ptr, *e, *r;
	size_t worst;
	char *p;

	if (v->len && v->ptr == NULL) {
		w->st = SW_EINVAL;
		return false;
	}
	worst = v->len <= (SIZE_MAX - 2) / 6 ? 6 * v->len + 2 : SIZE_MAX;
	if ((size_t)(w->end - w->p) < worst &&
	    !room2(w, worst, str_size(s, v->len)))
		return false;
	p = w->p;
	*p++ = '"';
	for (e = s + v->len; s < e; s++) {
		for (r = s; r < e && !esc[*r]; r++)
			;
		memcpy(p, s, (size_t)(r - s));
		p += r - s;
		s = r;
		if (s == e)
			break;
		*p++ = '\\';
		*p++ = (char)esc[*s];
		if (esc[*s] == 'u') {
			*p++ = '0';
			*p++ = '0';
			*p++ = hex[*s >> 4];
			*p++ = hex[*s & 15];
		}
	}
	*p++ = '"';
	w->p = p;
	return true;
}

static bool num(jw *w, double x, const char *path)
{
	char tmp[SW_NUM_MAX];
	size_t n;

	if ((size_t)(w->end - w->p) >= SW_NUM_MAX ||
	    grow(w, SW_NUM_MAX) == SW_OK) {
		n = sw_num_format(x, w->p);
		w->p += n;
	} else {
		n = sw_num_format(x, tmp);
		if (n && !put(w, tmp, n))
			return false;
	}
	if (n == 0) {
		w->path = path;
		w->st = SW_ERANGE;
		return false;
	}
	return true;
}

static bool date(jw *w, int64_t ms, const char *path)
{
	char tmp[SW_DATE_LEN + 1];

	if (ms < SW_DATE_MIN_MS || ms > SW_DATE_MAX_MS) {
		w->path = path;
		w->st = SW_EDATE;
		return false;
	}
	if (!room(w, SW_DATE_LEN + 2))
		return false;
	sw_date_format(ms, tmp);
	w->p[0] = '"';
	memcpy(w->p + 1, tmp, SW_DATE_LEN);
	w->p[SW_DATE_LEN + 1] = '"';
	w->p += SW_DATE_LEN + 2;
	return true;
}

static bool list(jw *w, const sw_str *items, size_t n)
{
	size_t i;

	if (n && items == NULL) {
		w->st = SW_EINVAL;
		return false;
	}
	if (!open_container(w, '['))
		return false;
	for (i = 0; i < n; i++) {
		if (!room(w, sep_len(w)))
			return false;
		w->p = sep(w, w->p);
		if (!str(w, &items[i]))
			return false;
	}
	return close_container(w, ']');
}

static bool triple(jw *w, const double v[3], int usage, int names)
{
	int i;

	if (!open_container(w, '{'))
		return false;
	for (i = 0; i < 3; i++)
		if (!key(w, &inner_keys[usage][names][i]) ||
		    !num(w, v[i], inner_paths[usage][i]))
			return false;
	return close_container(w, '}');
}

/* ==== The compact fast path ====
 * When the output cannot exceed the room already reserved (worst_size),
 * the compact writer below needs no room checks and writes straight into
 * the buffer: same bytes, same errors (it checks values in the same order)
 * as the general writer, which does the pretty form and tight buffers. */

/* Slack past the worst case so keys can be copied as fixed 32-byte
 * blocks. */
#define FAST_SLACK 32

/* a + b, stuck at SIZE_MAX. */
static inline size_t add_sat(size_t a, size_t b)
{
	return a > SIZE_MAX - b ? SIZE_MAX : a + b;
}

/* The worst-case escaped size of a string, with its quotes. */
static inline size_t str_worst(size_t n)
{
	return n <= (SIZE_MAX - 2) / 6 ? 6 * n + 2 : SIZE_MAX;
}

/* The most bytes any request of the general writer can add up to for u
 * (compact form), plus FAST_SLACK; SIZE_MAX when it overflows. */
static size_t worst_size(const sw_update *u)
{
	/* separator + the longest key ("\"completion_tokens\":") */
	const size_t key_max = 1 + 20;
	size_t n = 2 + FAST_SLACK, i;

	if (u->has & SW_F_ID)
		n = add_sat(n, key_max + str_worst(u->id.len));
	if (u->has & SW_F_EXTERNAL_ID)
		n = add_sat(n, key_max + str_worst(u->external_id.len));
	if (u->has & SW_F_WORKSPACE_ID)
		n = add_sat(n, key_max + str_worst(u->workspace_id.len));
	if (u->has & SW_F_PROJECT_ID)
		n = add_sat(n, key_max + (u->project_id_null ? 4
					  : str_worst(u->project_id.len)));
	if (u->has & SW_F_DURATION)
		n = add_sat(n, key_max + SW_NUM_MAX);
	if (u->has & SW_F_TRACES_COUNT)
		n = add_sat(n, key_max + SW_NUM_MAX);
	if (u->has & SW_F_BILLING)
		n = add_sat(n, key_max + 2 + 3 * (key_max + SW_NUM_MAX));
	if (u->has & SW_F_USAGE)
		n = add_sat(n, key_max + 2 + 3 * (key_max + SW_NUM_MAX));
	if (u->has & SW_F_STARTED_AT)
		n = add_sat(n, key_max + SW_DATE_LEN + 2);
	if (u->has & SW_F_UPDATED_AT)
		n = add_sat(n, key_max + SW_DATE_LEN + 2);
	if (u->has & SW_F_CONTACT_IDS) {
		n = add_sat(n, key_max + 2);
		for (i = 0; u->contact_ids && i < u->n_contact_ids; i++)
			n = add_sat(n, 1 + str_worst(u->contact_ids[i].len));
	}
	if (u->has & SW_F_TAGS) {
		n = add_sat(n, key_max + 2);
		for (i = 0; u->tags && i < u->n_tags; i++)
			n = add_sat(n, 1 + str_worst(u->tags[i].len));
	}
	return n;
}

/* Keys as fixed 32-byte blocks: ",\"name\":" (the comma skipped for the
 * first member), copied whole and advanced by their length. */
typedef struct fast_key {
	char s[32];
	unsigned char n; /* with the comma */
} fast_key;

#define FKEY(name) { ",\"" name "\":", sizeof(name) + 3 }

static const fast_key fast_field_keys[2][SW_FIELD_COUNT] = {
#define SW__WIRE_FKEY(name, bit, wire, sdk) [bit] = FKEY(wire),
	{ SW_FIELD_MAP(SW__WIRE_FKEY) },
#undef SW__WIRE_FKEY
#define SW__SDK_FKEY(name, bit, wire, sdk) [bit] = FKEY(sdk),
	{ SW_FIELD_MAP(SW__SDK_FKEY) },
#undef SW__SDK_FKEY
};

static const fast_key fast_inner_keys[2][2][3] = {
	{ { FKEY("input_cost"), FKEY("output_cost"), FKEY("total_cost") },
	  { FKEY("inputCost"), FKEY("outputCost"), FKEY("totalCost") } },
	{ { FKEY("prompt_tokens"), FKEY("completion_tokens"),
	    FKEY("total_tokens") },
	  { FKEY("promptTokens"), FKEY("completionTokens"),
	    FKEY("totalTokens") } },
};

/* Writes key k at p (32 bytes of room), with its comma unless first. */
static inline char *fast_key_put(char *p, const fast_key *k, bool first)
{
	memcpy(p, k->s + first, 32 - 1);
	return p + k->n - first;
}

#define ONES ((uint64_t)0x0101010101010101u)
#define HIGHS ((uint64_t)0x8080808080808080u)

/* True when one of the 8 bytes of v needs an escape: below 0x20, '"' or
 * '\\' (exact: the "has a zero byte" and "has a byte below n" tests). */
static inline bool swar_needs_esc(uint64_t v)
{
	uint64_t q = v ^ (ONES * '"'), b = v ^ (ONES * '\\');

	return (((v - ONES * 0x20) & ~v) | ((q - ONES) & ~q) |
		((b - ONES) & ~b)) & HIGHS;
}

/* Writes s[0..n) as a JSON string at p (6n + 2 bytes of room): eight
 * bytes at a time while none needs an escape. */
static inline char *fast_str(char *p, const unsigned char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *e = s + n;
	uint64_t v;

	*p++ = '"';
	while (s < e) {
		if (e - s >= 8) {
			memcpy(&v, s, 8);
			if (!swar_needs_esc(v)) {
				memcpy(p, &v, 8);
				p += 8;
				s += 8;
				continue;
			}
		}
		if (!esc[*s]) {
			*p++ = (char)*s++;
			continue;
		}
		*p++ = '\\';
		*p++ = (char)esc[*s];
		if (esc[*s] == 'u') {
			*p++ = '0';
			*p++ = '0';
			*p++ = hex[*s >> 4];
			*p++ = hex[*s & 15];
		}
		s++;
	}
	*p++ = '"';
	return p;
}

/* "00" "01" ... "99" */
static const char digit_pairs[201] =
	"00010203040506070809101112131415161718192021222324252627282930313233"
	"34353637383940414243444546474849505152535455565758596061626364656667"
	"68697071727374757677787980818283848586878889909192939495969798"
	"99";

/* Two digits of v < 100 at p. */
static inline void put2(char *p, unsigned v)
{
	memcpy(p, digit_pairs + 2 * v, 2);
}

/* "YYYY-MM-DDTHH:MM:SS.sssZ" of ms (within SW_DATE_MIN_MS..MAX_MS) at p:
 * what sw_date_format writes (same calendar: Howard Hinnant's
 * civil_from_days), with two digits per step. */
static inline void fast_date(char *p, int64_t ms)
{
	const int64_t day_ms = 86400000;
	int64_t days = ms / day_ms, rem = ms % day_ms, z, era, doe, yoe, doy,
		mp, y;
	unsigned m, d, t;

	if (rem < 0) {
		rem += day_ms;
		days--;
	}
	z = days + 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = z - era * 146097;
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	d = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
	m = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
	y = yoe + era * 400 + (m <= 2);
	t = (unsigned)rem;
	put2(p, (unsigned)y / 100);
	put2(p + 2, (unsigned)y % 100);
	p[4] = '-';
	put2(p + 5, m);
	p[7] = '-';
	put2(p + 8, d);
	p[10] = 'T';
	put2(p + 11, t / 3600000);
	p[13] = ':';
	put2(p + 14, t / 60000 % 60);
	p[16] = ':';
	put2(p + 17, t / 1000 % 60);
	p[19] = '.';
	p[20] = (char)('0' + t % 1000 / 100);
	put2(p + 21, t % 100);
	p[23] = 'Z';
}

/* A string value; false with w->st on a length without data. */
static inline bool fast_str_val(jw *w, const sw_str *v)
{
	if (v->len && v->ptr == NULL) {
		w->st = SW_EINVAL;
		return false;
	}
	w->p = fast_str(w->p, (const unsigned char *)v->ptr, v->len);
	return true;
}

static inline bool fast_num(jw *w, double x, const char *path)
{
	size_t n = sw_num_format(x, w->p);

	if (n == 0) {
		w->path = path;
		w->st = SW_ERANGE;
		return false;
	}
	w->p += n;
	return true;
}

static inline bool fast_date_val(jw *w, int64_t ms, const char *path)
{
	if (ms < SW_DATE_MIN_MS || ms > SW_DATE_MAX_MS) {
		w->path = path;
		w->st = SW_EDATE;
		return false;
	}
	w->p[0] = '"';
	fast_date(w->p + 1, ms);
	w->p[SW_DATE_LEN + 1] = '"';
	w->p += SW_DATE_LEN + 2;
	return true;
}

static bool fast_list(jw *w, const sw_str *items, size_t n)
{
	size_t i;

	if (n && items == NULL) {
		w->st = SW_EINVAL;
		return false;
	}
	*w->p++ = '[';
	for (i = 0; i < n; i++) {
		if (i)
			*w->p++ = ',';
		if (!fast_str_val(w, &items[i]))
			return false;
	}
	*w->p++ = ']';
	return true;
}

static bool fast_triple(jw *w, const double v[3], int usage, int names)
{
	int i;

	*w->p++ = '{';
	for (i = 0; i < 3; i++) {
		w->p = fast_key_put(w->p, &fast_inner_keys[usage][names][i],
				    i == 0);
		if (!fast_num(w, v[i], inner_paths[usage][i]))
			return false;
	}
	*w->p++ = '}';
	return true;
}

/* The compact body with no room checks (see worst_size). */
static bool fast_body(jw *w, const sw_update *u, int names)
{
	uint32_t has = u->has;
	bool first = true, ok = true;
	unsigned bit;

	*w->p++ = '{';
	for (bit = 0; bit < SW_FIELD_COUNT; bit++) {
		if (!(has & (1u << bit)))
			continue;
		w->path = sw_field_wire_name(bit);
		w->p = fast_key_put(w->p, &fast_field_keys[names][bit], first);
		first = false;
		switch (1u << bit) {
		case SW_F_ID:
			ok = fast_str_val(w, &u->id);
			break;
		case SW_F_EXTERNAL_ID:
			ok = fast_str_val(w, &u->external_id);
			break;
		case SW_F_DURATION:
			ok = fast_num(w, u->duration, "duration");
			break;
		case SW_F_CONTACT_IDS:
			ok = fast_list(w, u->contact_ids, u->n_contact_ids);
			break;
		case SW_F_BILLING:
			ok = fast_triple(w, u->billing, 0, names);
			break;
		case SW_F_USAGE:
			ok = fast_triple(w, u->usage, 1, names);
			break;
		case SW_F_TRACES_COUNT:
			ok = fast_num(w, u->traces_count, "traces_count");
			break;
		case SW_F_TAGS:
			ok = fast_list(w, u->tags, u->n_tags);
			break;
		case SW_F_WORKSPACE_ID:
			ok = fast_str_val(w, &u->workspace_id);
			break;
		case SW_F_PROJECT_ID:
			if (u->project_id_null) {
				memcpy(w->p, "null", 4);
				w->p += 4;
			} else {
				ok = fast_str_val(w, &u->project_id);
			}
			break;
		case SW_F_STARTED_AT:
			ok = fast_date_val(w, u->started_at, "started_at");
			break;
		default: /* SW_F_UPDATED_AT */
			ok = fast_date_val(w, u->updated_at, "updated_at");
			break;
		}
		if (!ok)
			return false;
	}
	w->path = "";
	*w->p++ = '}';
	return true;
}

/* One present field: its key and its value. */
static bool field(jw *w, const sw_update *u, unsigned bit, int names)
{
	w->path = sw_field_wire_name(bit);
	if (!key(w, &field_keys[names][bit]))
		return false;
	switch (1u << bit) {
	case SW_F_ID:
		return str(w, &u->id);
	case SW_F_EXTERNAL_ID:
		return str(w, &u->external_id);
	case SW_F_DURATION:
		return num(w, u->duration, "duration");
	case SW_F_CONTACT_IDS:
		return list(w, u->contact_ids, u->n_contact_ids);
	case SW_F_BILLING:
		return triple(w, u->billing, 0, names);
	case SW_F_USAGE:
		return triple(w, u->usage, 1, names);
	case SW_F_TRACES_COUNT:
		return num(w, u->traces_count, "traces_count");
	case SW_F_TAGS:
		return list(w, u->tags, u->n_tags);
	case SW_F_WORKSPACE_ID:
		return str(w, &u->workspace_id);
	case SW_F_PROJECT_ID:
		return u->project_id_null ? put(w, "null", 4) :
					    str(w, &u->project_id);
	case SW_F_STARTED_AT:
		return date(w, u->started_at, "started_at");
	case SW_F_UPDATED_AT:
		return date(w, u->updated_at, "updated_at");
	}
	return true;
}

/* The body, field by field in wire order. Unknown presence bits are
 * ignored. */
static bool body(jw *w, const sw_update *u, int names)
{
	unsigned bit;

	if (!open_container(w, '{'))
		return false;
	for (bit = 0; bit < SW_FIELD_COUNT; bit++)
		if ((u->has & (1u << bit)) && !field(w, u, bit, names))
			return false;
	w->path = "";
	return close_container(w, '}');
}

sw_status sw_json_write(const sw_update *u, const sw_write_opts *opts,
			sw_buf *out, sw_error *err)
{
	size_t saved, worst;
	int names;
	jw w;

	if (u == NULL || out == NULL)
		return sw__fail(err, SW_EINVAL, "", (size_t)-1,
				"no update or no buffer");
	saved = out->len;
	memset(&w, 0, sizeof(w));
	w.b = out;
	w.path = "";
	w.pretty = opts && opts->pretty;
	/* One reservation for the worst case: then the compact form needs
	 * no room checks. Else start with what there is. */
	worst = worst_size(u);
	if (grow(&w, worst) != SW_OK) {
		w.st = grow(&w, 0);
		if (w.st != SW_OK)
			goto fail;
	}
	names = opts && opts->names == SW_NAMES_SDK;
	if (!w.pretty && (size_t)(w.end - w.p) >= worst) {
		if (!fast_body(&w, u, names))
			goto fail;
	} else if (!body(&w, u, names)) {
		goto fail;
	}
	out->len = (size_t)(w.p - out->data);
	out->data[out->len] = '\0';
	return SW_OK;
fail:
	out->len = saved;
	if (out->data != NULL && out->cap > saved)
		out->data[saved] = '\0';
	switch (w.st) {
	case SW_ERANGE:
		return sw__fail(err, w.st, w.path, (size_t)-1,
				"expected a finite number, found NaN or infinity");
	case SW_EDATE:
		return sw__fail(err, w.st, w.path, (size_t)-1,
				"expected a date in years 0000-9999, found one outside");
	case SW_EINVAL:
		return sw__fail(err, w.st, w.path, (size_t)-1,
				"a string or list has a length but no data");
	case SW_ENOMEM:
		return sw__fail(err, w.st, w.path, (size_t)-1,
				"no memory to grow the output buffer");
	default:
		return sw__fail(err, w.st, w.path, (size_t)-1,
				"the output does not fit in the buffer");
	}
}
