/* device.c - the lean device encoder (sw_device.h).
 *
 * Each call writes its field at once as a chunk of buf and moves the
 * chunk to its place by field number (a rotation of the bytes after it),
 * so buf always holds the fields in increasing field-number order, as
 * sw_pb_encode writes them. sw_dev_end cuts ULIDs that started_at makes
 * 10 bytes long and appends started_at, updated_at and flags, whose forms
 * depend on other fields. The integer calls use no floating point; the
 * double ones (sw_dev_number, sw_dev_trio_number) reuse the encoder's own
 * choice of number forms, so the bytes are the same by construction.
 */
#include "sessionwire/sw_device.h"
#include "pb_wire.h"

/* ==== Field numbers (sessionwire.proto) ==== */

/* Session field numbers by [field][form]: ids ULID, UUID, text; numbers
 * int, dec, double. */
static const uint8_t top_nums[SW_DEV_TRACES_COUNT + 4][3] = {
	[SW_DEV_ID] = { 1, 17, 16 },
	[SW_DEV_EXTERNAL_ID] = { 2, 18, 3 },
	[SW_DEV_DURATION] = { 4, 20, 19 },
	[SW_DEV_CONTACT_IDS] = { 5, 22, 21 },
	[SW_DEV_TRACES_COUNT] = { 8, 24, 23 },
	[SW_DEV_WORKSPACE_ID] = { 10, 26, 25 },
	[SW_DEV_PROJECT_ID] = { 11, 28, 27 },
};

#define NUM_STARTED_AT 12
#define NUM_UPDATED_AT_MS 13
#define NUM_UPDATED_AT_DELTA 14
#define NUM_FLAGS 15
#define NUM_TAGS 9
#define NUM_BILLING 6 /* usage: 7 */

/* sw_dev.has bit of a finished message: no call may add to it. */
#define DONE (1u << 12)

/* ==== Errors and the output ==== */

/* Records the first error (about w->field: the field being written,
 * which begin_field sets, so no helper needs a field argument). */
static void fail(sw_dev *w, sw_status st)
{
	if (w->status == SW_OK)
		w->status = st;
}

/* Copies n bytes to a lower (or the same) address, overlap allowed: no
 * libc copy routine linked (newlib's memmove and memcpy are 250-300 bytes
 * each on Cortex-M; GCC would turn the loop back into a memmove). */
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("no-tree-loop-distribute-patterns")))
#endif
static void move_down(uint8_t *dst, const uint8_t *src, size_t n)
{
	while (n--)
		*dst++ = *src++;
}

/* Appends n bytes if they fit (else SW_EBUFSZ for field). */
static void put(sw_dev *w, const void *p, size_t n)
{
	if (w->status != SW_OK)
		return;
	if (n > w->cap - w->pos) {
		fail(w, SW_EBUFSZ);
		return;
	}
	move_down(w->buf + w->pos, p, n); /* p is not in buf past pos */
	w->pos += n;
}

/* Appends a varint. */
static void put_varint(sw_dev *w, uint64_t v)
{
	uint8_t tmp[10];

	put(w, tmp, sw__pb_varint_put(tmp, v));
}

/* Appends a tag. */
static void put_tag(sw_dev *w, unsigned num, unsigned wt)
{
	put_varint(w, (uint64_t)num << 3 | wt);
}

/* Appends a length-delimited field. */
static void put_bytes(sw_dev *w, unsigned num, const void *p, size_t n)
{
	put_tag(w, num, SW__PB_WT_LEN);
	put_varint(w, n);
	put(w, p, n);
}

/* Reverses buf[0..n). */
static void reverse(uint8_t *p, size_t n)
{
	size_t i;

	for (i = 0; i < n / 2; i++) {
		uint8_t t = p[i];

		p[i] = p[n - 1 - i];
		p[n - 1 - i] = t;
	}
}

/* Files the chunk buf[start..pos) as field number num: moves it before
 * the chunks of higher numbers. */
static void settle(sw_dev *w, size_t start, unsigned num, unsigned ulid)
{
	size_t i = w->n, len = w->pos - start, at = start;

	if (w->status != SW_OK)
		return;
	while (i > 0 && w->chunk[i - 1].num > num) {
		at = w->chunk[i - 1].off;
		w->chunk[i] = w->chunk[i - 1];
		w->chunk[i].off += len;
		i--;
	}
	if (at != start) { /* rotate buf[at..pos): the chunk first */
		reverse(w->buf + at, start - at);
		reverse(w->buf + start, len);
		reverse(w->buf + at, w->pos - at);
	}
	w->chunk[i].off = at;
	w->chunk[i].num = (uint8_t)num;
	w->chunk[i].ulid = (uint8_t)ulid;
	w->n++;
}

/* Starts field f if the call takes it (bit in mask) and it is new;
 * false when the call must do nothing. */
static bool begin_field(sw_dev *w, sw_dev_field f, unsigned mask)
{
	if (w->status != SW_OK)
		return false;
	w->field = (int)f;
	if ((unsigned)f > SW_DEV_UPDATED_AT || !(mask >> f & 1) ||
	    (w->has & DONE)) {
		fail(w, SW_EINVAL);
		return false;
	}
	if (w->has >> f & 1) {
		fail(w, SW_EDUP);
		return false;
	}
	w->has |= (uint16_t)(1u << f);
	return true;
}

/* Checks a string as sw_update_check does with the default limits. */
static bool check_str(sw_dev *w, const char *s, size_t len)
{
	if (s == NULL && len != 0)
		fail(w, SW_EINVAL);
	else if (len > SW_DEFAULT_MAX_STRING)
		fail(w, SW_ETOOBIG);
	else if (len && sw__utf8_check(s, len) != len)
		fail(w, SW_EUTF8);
	return w->status == SW_OK;
}

void sw_dev_begin(sw_dev *w, uint8_t *buf, size_t cap)
{
	memset(w, 0, sizeof(*w));
	w->field = -1;
	w->buf = buf;
	w->cap = buf != NULL ? cap : 0;
}

/* ==== Ids ==== */

/* The same classification as sw_id_parse (id.c), smaller: one loop for
 * both kinds and a search of the alphabet instead of a 256-byte table. */
static const char b32[32] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
static const char hex[16] = "0123456789abcdef";

/* The value of c among the first n characters of digits, or -1. */
static int digit_value(const char *digits, int n, char c)
{
	int i;

	for (i = 0; i < n; i++)
		if (digits[i] == c)
			return i;
	return -1;
}

/* A canonical ULID (26 Crockford characters, uppercase, first 0-7: 3 +
 * 25 * 5 = 128 bits) or UUID (8-4-4-4-12 lowercase hex) into raw[16];
 * anything else is text. */
static sw_id_kind id_parse(const char *s, size_t len, uint8_t raw[16])
{
	unsigned step = len == SW_ULID_LEN ? 5 : 4, bits = 0, n = 0, i;
	uint32_t acc = 0; /* only its low `bits` bits matter */
	int v;

	if (len != SW_ULID_LEN && len != SW_UUID_LEN)
		return SW_ID_TEXT;
	for (i = 0; i < len; i++) {
		if (step == 4 && (i == 8 || i == 13 || i == 18 || i == 23)) {
			if (s[i] != '-')
				return SW_ID_TEXT;
			continue;
		}
		v = step == 5 ? digit_value(b32, 32, s[i])
			      : digit_value(hex, 16, s[i]);
		if (v < 0 || (step == 5 && i == 0 && v > 7))
			return SW_ID_TEXT;
		acc = acc << step | (uint32_t)v;
		bits += step == 5 && i == 0 ? 3 : step;
		if (bits >= 8) {
			bits -= 8;
			raw[n++] = (uint8_t)(acc >> bits);
		}
	}
	return step == 5 ? SW_ID_ULID : SW_ID_UUID;
}

/* The 48-bit millisecond time of a ULID's raw bytes. */
static uint64_t ulid_time(const uint8_t *raw)
{
	uint64_t t = 0;
	int i;

	for (i = 0; i < 6; i++)
		t = t << 8 | raw[i];
	return t;
}

/* Whether started_at lets ULIDs of its time drop their 6 time bytes. */
static bool ulid_time_ok(const sw_dev *w)
{
	return (w->has >> SW_DEV_STARTED_AT & 1) && w->started_at >= 0 &&
	       w->started_at < ((int64_t)1 << 48);
}

/* Writes one id (its kind k and raw bytes known) as field number num;
 * returns 1 when it is a 16-byte ULID that started_at may still cut. */
static unsigned put_id(sw_dev *w, unsigned num, sw_id_kind k,
		       const uint8_t raw[16], const char *s, size_t len)
{
	if (k == SW_ID_TEXT) {
		put_bytes(w, num, s, len);
		return 0;
	}
	if (k == SW_ID_ULID && ulid_time_ok(w) &&
	    ulid_time(raw) == (uint64_t)w->started_at) {
		put_bytes(w, num, raw + 6, 10);
		return 0;
	}
	put_bytes(w, num, raw, 16);
	return k == SW_ID_ULID && !(w->has >> SW_DEV_STARTED_AT & 1);
}

/* The form index of an id kind in top_nums. */
static unsigned id_form(sw_id_kind k)
{
	return k == SW_ID_ULID ? 0 : k == SW_ID_UUID ? 1 : 2;
}

void sw_dev_id(sw_dev *w, sw_dev_field f, const char *s, size_t len)
{
	size_t start = w->pos;
	uint8_t raw[16];
	sw_id_kind k;
	unsigned num, ulid;

	if (!begin_field(w, f, 1u << SW_DEV_ID | 1u << SW_DEV_EXTERNAL_ID |
			 1u << SW_DEV_WORKSPACE_ID | 1u << SW_DEV_PROJECT_ID) ||
	    !check_str(w, s, len))
		return;
	k = id_parse(s, len, raw);
	num = top_nums[f][id_form(k)];
	ulid = put_id(w, num, k, raw, s, len);
	settle(w, start, num, ulid);
}

void sw_dev_project_id_null(sw_dev *w)
{
	if (begin_field(w, SW_DEV_PROJECT_ID, 1u << SW_DEV_PROJECT_ID))
		w->flags |= SW__PB_FLAG_PROJECT_ID_NULL;
}

/* ==== Lists ==== */

void sw_dev_list(sw_dev *w, sw_dev_field f, const sw_str *items, size_t n)
{
	size_t start = w->pos, i;
	bool ulid = true, uuid = true;
	uint8_t raw[16];
	unsigned num = NUM_TAGS, cut = 0;

	if (!begin_field(w, f, 1u << SW_DEV_CONTACT_IDS | 1u << SW_DEV_TAGS))
		return;
	if (n > SW_DEFAULT_MAX_ITEMS)
		fail(w, SW_ETOOBIG);
	else if (n && items == NULL)
		fail(w, SW_EINVAL);
	for (i = 0; i < n && w->status == SW_OK; i++) {
		if (!check_str(w, items[i].ptr, items[i].len))
			return;
		if (f == SW_DEV_CONTACT_IDS) {
			sw_id_kind k = id_parse(items[i].ptr, items[i].len,
						   raw);

			ulid = ulid && k == SW_ID_ULID;
			uuid = uuid && k == SW_ID_UUID;
		}
	}
	if (w->status != SW_OK)
		return;
	if (n == 0) {
		w->flags |= f == SW_DEV_TAGS ? SW__PB_FLAG_TAGS_EMPTY
					     : SW__PB_FLAG_CONTACT_IDS_EMPTY;
		return;
	}
	if (f == SW_DEV_CONTACT_IDS)
		num = top_nums[f][ulid ? 0 : uuid ? 1 : 2];
	for (i = 0; i < n; i++) {
		const sw_str *s = &items[i];
		sw_id_kind k = SW_ID_TEXT;

		if (num != NUM_TAGS && num != 21)
			k = id_parse(s->ptr, s->len, raw);
		cut |= put_id(w, num, k, raw, s->ptr, s->len);
	}
	settle(w, start, num, cut);
}

/* ==== Numbers ==== */

/* Writes a number in its chosen form as field number num. */
static void put_num(sw_dev *w, unsigned num, const sw__pb_num *x)
{
	uint8_t le[8];
	int i;

	if (x->form == SW__PB_DOUBLE) {
		put_tag(w, num, SW__PB_WT_I64);
		for (i = 0; i < 8; i++)
			le[i] = (uint8_t)(x->v >> (8 * i));
		put(w, le, 8);
	} else {
		put_tag(w, num, SW__PB_WT_VARINT);
		put_varint(w, x->v);
	}
}

/* The int form of n (|n| <= 2^53: its varint is at most 8 bytes, so
 * sw__pb_num_choose picks the same); false when n is out of range. */
static bool int_form(sw_dev *w, int64_t n, sw__pb_num *x)
{
	if (n > SW_DEV_MAX_COUNT || n < -SW_DEV_MAX_COUNT) {
		fail(w, SW_ERANGE);
		return false;
	}
	x->form = SW__PB_INT;
	x->v = sw__pb_zigzag(n);
	x->size = sw__pb_varint_len(x->v);
	return true;
}

/* Writes duration or traces_count in its chosen form. For duration,
 * integral is whether it is an integer below 2^53 in magnitude (value
 * n), which FLAG_UPDATED_AT_IS_END needs. */
static void put_top_num(sw_dev *w, sw_dev_field f, const sw__pb_num *x,
			bool integral, int64_t n)
{
	size_t start = w->pos;
	unsigned num = top_nums[f][x->form - SW__PB_INT];

	if (f == SW_DEV_DURATION) {
		w->dur_int = integral;
		w->dur = n;
	}
	put_num(w, num, x);
	settle(w, start, num, 0);
}

#define NUM_FIELDS (1u << SW_DEV_DURATION | 1u << SW_DEV_TRACES_COUNT)

void sw_dev_count(sw_dev *w, sw_dev_field f, int64_t n)
{
	sw__pb_num x;

	if (begin_field(w, f, NUM_FIELDS) && int_form(w, n, &x))
		put_top_num(w, f, &x, n < SW_DEV_MAX_COUNT &&
			    n > -SW_DEV_MAX_COUNT, n);
}

/* Writes billing or usage: the three numbers, the total only when
 * has_total. */
static void put_trio(sw_dev *w, sw_dev_field f, const sw__pb_num x[3],
		     bool has_total)
{
	size_t start = w->pos, size = 0;
	unsigned num = NUM_BILLING + (f == SW_DEV_USAGE), i,
		 n = has_total ? 3 : 2;

	for (i = 0; i < n; i++)
		size += 1 + x[i].size; /* nested tags are one byte */
	put_tag(w, num, SW__PB_WT_LEN);
	put_varint(w, size);
	for (i = 0; i < n; i++)
		put_num(w, 3 * i + 1 + (x[i].form - SW__PB_INT), &x[i]);
	settle(w, start, num, 0);
}

/* a + b rounded to a double (round half to even), for |a|, |b| <= 2^53:
 * the sum needs at most 55 bits, so at most one bit goes. */
static int64_t add_as_doubles(int64_t a, int64_t b)
{
	int64_t s = a + b;
	uint64_t m = s < 0 ? -(uint64_t)s : (uint64_t)s;

	if (m > (uint64_t)SW_DEV_MAX_COUNT && (m & 1)) /* a tie: to even */
		m += (m & 2) ? 1 : (uint64_t)-1;
	return s < 0 ? -(int64_t)m : (int64_t)m;
}

void sw_dev_trio(sw_dev *w, sw_dev_field f, int64_t in, int64_t out,
		 int64_t total)
{
	sw__pb_num x[3];

	if (begin_field(w, f, 1u << SW_DEV_BILLING | 1u << SW_DEV_USAGE) &&
	    int_form(w, in, &x[0]) && int_form(w, out, &x[1]) &&
	    (total == SW_DEV_SUM || int_form(w, total, &x[2])))
		put_trio(w, f, x, total != SW_DEV_SUM &&
			 add_as_doubles(in, out) != total);
}

/* ==== Decimals: m / 10^scale without floating point ====
 *
 * For |m| < 2^49 and scale <= 15 the encoder's choice is known exactly:
 * x = m / 10^scale (IEEE division) is integral only when 10^scale divides
 * m, and otherwise its decimal code is m0 / 10^s0 (mode 0), m0 and s0
 * being m and scale with the common trailing zeros taken off. No smaller
 * s can match: its values differ from x by at least 10^-s0, more than
 * the rounding errors (3.4e-16 |x|) when |m0| < 3e15; at s0 the search
 * (pb_compact.c, dec_find) tries m0 in mode 0 first. The code fits 8
 * bytes, so it wins over the double. */

/* q = n / 10, *r = n % 10, for n < 2^63, with 32-bit divisions only. */
static uint64_t div10(uint64_t n, unsigned *r)
{
	uint32_t hi = (uint32_t)(n >> 32), lo = (uint32_t)n, q1, q0, t;

	t = hi % 10;
	hi /= 10;
	t = t << 16 | lo >> 16;
	q1 = t / 10;
	t = (t % 10) << 16 | (lo & 0xffff);
	q0 = t / 10;
	*r = t % 10;
	return (uint64_t)hi << 32 | q1 << 16 | q0;
}

/* The form of m / 10^scale (|m| < SW_DEV_DEC_LIMIT, scale <= 15): int
 * when integral, else dec. */
static bool dec_form(sw_dev *w, int64_t m, unsigned scale, sw__pb_num *x)
{
	uint64_t u = m < 0 ? -(uint64_t)m : (uint64_t)m, q;
	unsigned r;

	if (u >= (uint64_t)SW_DEV_DEC_LIMIT || scale > 15) {
		fail(w, SW_ERANGE);
		return false;
	}
	while (scale > 0 && (q = div10(u, &r), r == 0)) {
		u = q;
		scale--;
	}
	x->form = scale ? SW__PB_DEC : SW__PB_INT;
	x->v = sw__pb_zigzag(m < 0 ? -(int64_t)u : (int64_t)u);
	if (scale)
		x->v = x->v << 6 | scale;
	x->size = sw__pb_varint_len(x->v);
	return true;
}

void sw_dev_dec(sw_dev *w, sw_dev_field f, int64_t m, unsigned scale)
{
	sw__pb_num x;

	if (begin_field(w, f, NUM_FIELDS) && dec_form(w, m, scale, &x))
		put_top_num(w, f, &x, x.form == SW__PB_INT,
			    sw__pb_unzigzag(x.v)); /* |m| < 2^49 */
}

/* A double as sign, 64-bit mantissa (2^62 <= m < 2^63, or 0) and
 * exponent: (-1)^neg * m * 2^e. */
typedef struct xfloat {
	bool neg;
	int e;
	uint64_t m;
} xfloat;

/* Shifts m right by one, keeping a sticky bit 0 (set when anything
 * nonzero went out): exact enough to round afterwards. */
static uint64_t shr1_sticky(uint64_t m)
{
	return m >> 1 | (m & 1);
}

/* Rounds m (2^62 <= m < 2^64) to 53 significant bits, nearest, ties to
 * even, and back to 2^62 <= m < 2^63: one layout (low 10 bits zero) per
 * double, so equal doubles have equal m and e. Bit 0 may be a sticky
 * bit (something nonzero below it). Single-bit shifts only: variable
 * 64-bit shifts are long on Cortex-M. */
static void round53(xfloat *x)
{
	uint64_t low;

	if (x->m >> 63) {
		x->m = shr1_sticky(x->m);
		x->e++;
	}
	low = x->m & 0x3ff;
	x->m -= low;
	if (low > 0x200 || (low == 0x200 && (x->m & 0x400)))
		x->m += 0x400;
	if (x->m >> 63) { /* carried up to 2^63 */
		x->m >>= 1;
		x->e++;
	}
}

/* The double nearest m / 10^scale (|m| < 2^49, scale <= 15), exactly,
 * into *out. */
static void dec_value(int64_t m, unsigned scale, xfloat *out)
{
	uint64_t d = 1, r, q = 0;
	xfloat x = { m < 0, 0, 0 };
	int i;

	r = m < 0 ? -(uint64_t)m : (uint64_t)m;
	*out = x;
	if (r == 0)
		return;
	while (scale--)
		d *= 10;
	while (r < d) { /* d <= r < 2d: the first quotient bit is 1 */
		r <<= 1;
		x.e--;
	}
	while (r >= 2 * d) { /* d < 2^50 stays below 2^51 */
		d <<= 1;
		x.e++;
	}
	for (i = 0; i < 63; i++) { /* 63 quotient bits, the rest sticky */
		q <<= 1;
		if (r >= d) {
			r -= d;
			q |= 1;
		}
		r <<= 1;
	}
	x.m = q << 1 | (r != 0); /* 2^63 <= m < 2^64 */
	x.e -= 63;
	round53(&x);
	*out = x;
}

/* Whether v[0] + v[1] (doubles, added as IEEE does) is v[2], the double
 * of in + out: a zero term or an exact cancellation (then the total is
 * 0) give the total at once. */
static bool xfloat_sum_is(const xfloat v[3])
{
	xfloat a = v[0], b = v[1], s;
	unsigned sh;

	if (a.m == 0 || b.m == 0)
		return true;
	if (b.e > a.e || (b.e == a.e && b.m > a.m)) {
		s = a;
		a = b;
		b = s;
	}
	for (sh = (unsigned)(a.e - b.e); sh && b.m > 1; sh--)
		b.m = shr1_sticky(b.m); /* ends at 1 (sticky) */
	s = a;
	if (a.neg == b.neg) {
		s.m = a.m + b.m; /* < 2^64 */
	} else {
		s.m = a.m - b.m;
		if (s.m == 0)
			return true;
		while (s.m < ((uint64_t)1 << 62)) {
			s.m <<= 1;
			s.e--;
		}
	}
	round53(&s);
	return s.m == v[2].m && s.e == v[2].e && s.neg == v[2].neg;
}

void sw_dev_trio_dec(sw_dev *w, sw_dev_field f, int64_t in, int64_t out,
		     int64_t total, unsigned scale)
{
	const int64_t m[3] = { in, out, total };
	sw__pb_num x[3];
	xfloat v[3];
	int i;

	if (!begin_field(w, f, 1u << SW_DEV_BILLING | 1u << SW_DEV_USAGE))
		return;
	for (i = 0; i < 3 - (total == SW_DEV_SUM); i++) {
		if (!dec_form(w, m[i], scale, &x[i]))
			return;
		dec_value(m[i], scale, &v[i]);
	}
	/* a total other than in + out is never their double sum (the
	 * rounding errors stay below 0.25 / 10^scale) */
	put_trio(w, f, x, total != SW_DEV_SUM &&
		 (in + out != total || !xfloat_sum_is(v)));
}

/* ==== Numbers given as doubles (they link the double arithmetic) ==== */

/* The form of a finite x; false (SW_ERANGE) for NaN and infinities. */
static bool double_form(sw_dev *w, double x, sw__pb_num *out)
{
	uint64_t bits;

	memcpy(&bits, &x, sizeof(bits));
	if ((bits >> 52 & 0x7ff) == 0x7ff) {
		fail(w, SW_ERANGE);
		return false;
	}
	sw__pb_num_choose(x, 0, out);
	return true;
}

void sw_dev_number(sw_dev *w, sw_dev_field f, double x)
{
	sw__pb_num n;
	int64_t v = 0;
	bool integral;

	if (!begin_field(w, f, NUM_FIELDS) || !double_form(w, x, &n))
		return;
	/* every integer below 2^53 but -0 takes the int form */
	if (n.form == SW__PB_INT)
		v = sw__pb_unzigzag(n.v);
	integral = (n.form == SW__PB_INT && v <= SW_DEV_MAX_COUNT - 1 &&
		    v >= 1 - SW_DEV_MAX_COUNT) ||
		   (n.form == SW__PB_DOUBLE && n.v == (uint64_t)1 << 63);
	put_top_num(w, f, &n, integral, v);
}

void sw_dev_trio_number(sw_dev *w, sw_dev_field f, double in, double out,
			double total)
{
	sw__pb_num x[3];
	double sum = in + out;

	if (begin_field(w, f, 1u << SW_DEV_BILLING | 1u << SW_DEV_USAGE) &&
	    double_form(w, in, &x[0]) &&
	    double_form(w, out, &x[1]) &&
	    double_form(w, total, &x[2]))
		put_trio(w, f, x, memcmp(&sum, &total, sizeof(sum)) != 0);
}

/* ==== Times and the end ==== */

void sw_dev_time(sw_dev *w, sw_dev_field f, int64_t ms)
{
	if (!begin_field(w, f, 1u << SW_DEV_STARTED_AT |
			 1u << SW_DEV_UPDATED_AT))
		return;
	if (ms < SW_DATE_MIN_MS || ms > SW_DATE_MAX_MS)
		fail(w, SW_EDATE);
	else if (f == SW_DEV_STARTED_AT)
		w->started_at = ms;
	else
		w->updated_at = ms;
}

/* Cuts the 16-byte ULIDs of started_at's time to their 10 random bytes
 * (chunks written before started_at was known). */
static void cut_ulids(sw_dev *w)
{
	size_t i, j, p, end;

	for (i = 0; i < w->n; i++) {
		if (!w->chunk[i].ulid)
			continue;
		p = w->chunk[i].off;
		end = i + 1 < w->n ? w->chunk[i + 1].off : w->pos;
		while (p < end) { /* items: one-byte tag, length, bytes */
			if (w->buf[p + 1] == 16 &&
			    ulid_time(w->buf + p + 2) ==
			    (uint64_t)w->started_at) {
				move_down(w->buf + p + 2, w->buf + p + 8,
					  w->pos - p - 8);
				w->buf[p + 1] = 10;
				w->pos -= 6;
				end -= 6;
				for (j = i + 1; j < w->n; j++)
					w->chunk[j].off -= 6;
			}
			p += 2 + w->buf[p + 1];
		}
	}
}

/* Writes a varint field as field number num. */
static void put_varint_field(sw_dev *w, unsigned num, uint64_t v)
{
	size_t start = w->pos;

	put_tag(w, num, SW__PB_WT_VARINT);
	put_varint(w, v);
	settle(w, start, num, 0);
}

sw_status sw_dev_end(sw_dev *w, size_t *len)
{
	bool started = w->has >> SW_DEV_STARTED_AT & 1;

	*len = 0;
	if (w->status != SW_OK)
		return w->status;
	w->field = -1;
	if (w->has & DONE)
		fail(w, SW_EINVAL);
	if (w->status != SW_OK)
		return w->status;
	w->has |= DONE;
	if (ulid_time_ok(w))
		cut_ulids(w);
	w->field = SW_DEV_STARTED_AT;
	if (started)
		put_varint_field(w, NUM_STARTED_AT,
				 sw__pb_zigzag(w->started_at));
	w->field = SW_DEV_UPDATED_AT;
	if (w->has >> SW_DEV_UPDATED_AT & 1) {
		int64_t delta = w->updated_at - w->started_at;
		uint64_t ms = sw__pb_zigzag(w->updated_at);

		if (started && (w->has >> SW_DEV_DURATION & 1) && w->dur_int &&
		    w->updated_at == w->started_at + w->dur)
			w->flags |= SW__PB_FLAG_UPDATED_AT_IS_END;
		else if (started && sw__pb_varint_len(sw__pb_zigzag(delta)) <
			 sw__pb_varint_len(ms))
			put_varint_field(w, NUM_UPDATED_AT_DELTA,
					 sw__pb_zigzag(delta));
		else
			put_varint_field(w, NUM_UPDATED_AT_MS, ms);
	}
	w->field = -1;
	if (w->flags)
		put_varint_field(w, NUM_FLAGS, w->flags);
	if (w->status == SW_OK)
		*len = w->pos;
	return w->status;
}
