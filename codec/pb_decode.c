/* pb_decode.c - Session protobuf -> sw_update, strict and bounded.
 *
 * Pass 1 walks the caller's bytes once, checks every rule (structure,
 * wire types, duplicates, forms, UTF-8, limits, dates) and keeps the
 * numbers, the positions of the singular ids, the list counts and the
 * string bytes needed. Then exactly one allocation (sw__block_new) and
 * pass 2, which can no longer fail, copies the strings. Errors name the
 * byte offset and a path like "#6(billing).9(total_cost_double)" or
 * "#5(contact_ids_ulid)[2]" (see sw_pb.h).
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "pb_wire.h"

#define TWO48 ((int64_t)1 << 48)

/* A singular id found in pass 1. */
typedef struct id_ref {
	unsigned form;
	size_t off, len; /* its bytes in the input */
} id_ref;

typedef struct dec {
	const uint8_t *buf;
	size_t len;
	sw_limits lim;
	sw_error *err;
	sw_update u;         /* presence, numbers and dates */
	unsigned slot_num[SW__PB_SLOT_FLAGS + 1]; /* field that set a slot */
	size_t slot_off[SW__PB_SLOT_FLAGS + 1];
	id_ref id[4];        /* _id, external_id, workspace_id, project_id */
	unsigned contacts_num; /* the field number of the contact ids */
	size_t n_contacts, n_tags, first_contact_off, first_tag_off;
	size_t str_bytes;
	size_t short_ulid_off; /* first 10-byte ULID, (size_t)-1: none */
	const sw__pb_field *short_ulid_f; /* its field and item index: the */
	long short_ulid_idx;              /* path is built only on failure */
	uint32_t flags;
	unsigned updated_form;
	int64_t updated_raw;
} dec;

/* One field as read from the wire. */
typedef struct field {
	size_t tag_off, val_off;
	uint32_t num;
	unsigned wt;
	uint64_t v;  /* varint value or fixed64 bits */
	size_t len;  /* length of a bytes field */
	const sw__pb_field *f;
} field;

/* ==== Errors ==== */

/* Writes the path of field num (entry f, may be NULL) inside outer (may
 * be NULL); idx >= 0 adds "[idx]". */
static void make_path(char *out, size_t cap, const sw__pb_field *outer,
		      uint32_t num, const sw__pb_field *f, long idx)
{
	char head[48] = "", item[24] = "";

	if (outer != NULL)
		sw__path(head, sizeof(head), "#%u(%s).", outer->num,
			 outer->name);
	if (idx >= 0)
		sw__path(item, sizeof(item), "[%ld]", idx);
	if (f != NULL)
		sw__path(out, cap, "%s%s%u(%s)%s", head, outer ? "" : "#",
			 (unsigned)num, f->name, item);
	else
		sw__path(out, cap, "%s%s%u", head, outer ? "" : "#",
			 (unsigned)num);
}

/* Records the first error with a formatted message. */
static sw_status __attribute__((cold, noinline)) SW_PRINTF(5, 6)
fail(dec *d, sw_status st, const char *path, size_t off, const char *fmt, ...)
{
	char msg[SW_ERROR_MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return sw_error_set(d->err, st, path, off, "%s", msg);
}

/* Like fail, about field x (inside outer, item idx). */
static sw_status __attribute__((cold, noinline)) SW_PRINTF(6, 7)
fail_at(dec *d, sw_status st, const sw__pb_field *outer, const field *x,
	long idx, const char *fmt, ...)
{
	char path[SW_ERROR_PATH_MAX], msg[SW_ERROR_MSG_MAX];
	va_list ap;

	make_path(path, sizeof(path), outer, x->num, x->f, idx);
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return sw_error_set(d->err, st, path, x->tag_off, "%s", msg);
}

/* ==== Reading fields ==== */

/* Reads the field at *pos (absolute offset, below end) of message m
 * (nested in outer, or NULL at the top). Inlined: it runs per field, and
 * the error paths are out of line in fail/fail_at. */
static inline __attribute__((always_inline)) sw_status next_field(dec *d, size_t *pos, size_t end,
			    const sw__pb_msg *m, const sw__pb_field *outer,
			    field *x)
{
	uint64_t tag, n;
	size_t used, p = *pos;
	unsigned want;
	sw_status st;

	x->tag_off = p;
	st = sw__pb_varint_get(d->buf + p, end - p, &tag, &used);
	if (st != SW_OK) {
		char path[SW_ERROR_PATH_MAX] = ""; /* only built on failure */

		if (outer != NULL)
			sw__path(path, sizeof(path), "#%u(%s)", outer->num,
				 outer->name);
		return fail(d, st, path, p,
			    st == SW_ETRUNC ? "expected a field tag, found the "
					      "end of %s inside a varint"
					    : "expected a field tag, found a "
					      "varint over 64 bits in %s",
			    outer ? outer->name : "the message");
	}
	if (tag > UINT32_MAX) {
		char path[SW_ERROR_PATH_MAX] = "";

		if (outer != NULL)
			sw__path(path, sizeof(path), "#%u(%s)", outer->num,
				 outer->name);
		return fail(d, SW_EWIRE, path, p,
			    "expected a field tag of at most 32 bits, found "
			    "%llu", (unsigned long long)tag);
	}
	p += used;
	x->num = (uint32_t)(tag >> 3);
	x->wt = (unsigned)(tag & 7);
	x->f = sw__pb_field_by_num(m, x->num);
	if (x->f == NULL)
		return fail_at(d, SW_EUNKNOWN, outer, x, -1,
			       "expected a %s field number 1-%u, found %u (%s)",
			       m->name, (unsigned)m->n_fields,
			       (unsigned)x->num, sw__pb_wt_name(x->wt));
	want = sw__pb_form_wt(x->f->form);
	if (x->wt != want)
		return fail_at(d, SW_EWIRE, outer, x, -1,
			       "expected wire type %u (%s), found %u (%s)",
			       want, sw__pb_wt_name(want), x->wt,
			       sw__pb_wt_name(x->wt));
	x->val_off = p;
	x->len = 0;
	switch (x->wt) {
	case SW__PB_WT_VARINT:
		st = sw__pb_varint_get(d->buf + p, end - p, &x->v, &used);
		if (st != SW_OK)
			return fail_at(d, st, outer, x, -1, "%s",
				       st == SW_ETRUNC
				       ? "expected a varint value, found the "
					 "end of the input"
				       : "expected a varint of at most 10 "
					 "bytes and 64 bits, found more");
		p += used;
		break;
	case SW__PB_WT_I64:
		if (end - p < 8)
			return fail_at(d, SW_ETRUNC, outer, x, -1,
				       "expected 8 bytes of a double, found %zu",
				       end - p);
		x->v = sw__pb_le64(d->buf + p);
		p += 8;
		break;
	default: /* SW__PB_WT_LEN */
		st = sw__pb_varint_get(d->buf + p, end - p, &n, &used);
		if (st != SW_OK)
			return fail_at(d, st, outer, x, -1, "%s",
				       st == SW_ETRUNC
				       ? "expected a length, found the end "
					 "of the input"
				       : "expected a length varint of at most "
					 "10 bytes, found more");
		p += used;
		if (n > end - p)
			return fail_at(d, SW_ETRUNC, outer, x, -1,
				       "expected %llu bytes, found %zu before "
				       "the end",
				       (unsigned long long)n, end - p);
		x->val_off = p;
		x->len = (size_t)n;
		p += (size_t)n;
		break;
	}
	*pos = p;
	return SW_OK;
}

/* ==== Values ==== */

/* Fails if slot was already given; else records who gave it. */
static sw_status once(dec *d, const field *x, const sw__pb_field *outer,
		      unsigned *slot_num, size_t *slot_off)
{
	if (*slot_num != 0) {
		const sw__pb_msg *m = outer == NULL ? &sw__pb_session
				      : outer->num == 6 ? &sw__pb_billing
							: &sw__pb_usage;

		return fail_at(d, SW_EDUP, outer, x, -1,
			       "expected one value, found a second one "
			       "(first as #%u %s at offset %zu)", *slot_num,
			       sw__pb_field_by_num(m, *slot_num)->name,
			       *slot_off);
	}
	*slot_num = x->num;
	*slot_off = x->tag_off;
	return SW_OK;
}

/* Reads a number field (int, dec or double) into *out. */
static sw_status read_num(dec *d, const field *x, const sw__pb_field *outer,
			  double *out)
{
	double v;

	switch (x->f->form) {
	case SW__PB_INT:
		if (!sw__pb_int_value(x->v, &v))
			return fail_at(d, SW_ERANGE, outer, x, -1,
				       "expected an integer exactly a double "
				       "with |x| < 2^63, found %lld",
				       (long long)sw__pb_unzigzag(x->v));
		break;
	case SW__PB_DEC:
		if (!sw__pb_dec_value(x->v, &v))
			return fail_at(d, SW_ERANGE, outer, x, -1,
				       "expected a decimal with 1 <= s <= 22 "
				       "and |m| <= 2^53, found s=%u m=%lld",
				       (unsigned)(x->v & 31),
				       (long long)sw__pb_unzigzag(x->v >> 6));
		break;
	default:
		memcpy(&v, &x->v, sizeof(v));
		if (!isfinite(v))
			return fail_at(d, SW_ERANGE, outer, x, -1,
				       "expected a finite double, found %s",
				       isnan(v) ? "NaN" : "infinity");
		break;
	}
	*out = v;
	return SW_OK;
}

/* Checks a string/bytes value of an id or tag field; adds the bytes its
 * text will take to d->str_bytes. */
static sw_status read_str(dec *d, const field *x, long idx)
{
	size_t text_len = x->len, bad;

	switch (x->f->form) {
	case SW__PB_ULID:
		if (x->len != 16 && x->len != 10)
			return fail_at(d, SW_EVALUE, NULL, x, idx,
				       "expected 16 ULID bytes (or 10 with "
				       "started_at), found %zu", x->len);
		if (x->len == 10 && d->short_ulid_off == (size_t)-1) {
			d->short_ulid_off = x->tag_off;
			d->short_ulid_f = x->f;
			d->short_ulid_idx = idx;
		}
		text_len = SW_ULID_LEN;
		break;
	case SW__PB_UUID:
		if (x->len != 16)
			return fail_at(d, SW_EVALUE, NULL, x, idx,
				       "expected 16 UUID bytes, found %zu",
				       x->len);
		text_len = SW_UUID_LEN;
		break;
	default:
		bad = x->len ? sw__utf8_check((const char *)d->buf + x->val_off,
					      x->len)
			     : 0;
		if (bad != x->len) {
			char path[SW_ERROR_PATH_MAX];

			make_path(path, sizeof(path), NULL, x->num, x->f, idx);
			return fail(d, SW_EUTF8, path, x->val_off + bad,
				    "expected UTF-8 text, found byte 0x%02x "
				    "at string offset %zu",
				    d->buf[x->val_off + bad], bad);
		}
		break;
	}
	if (text_len > d->lim.max_string)
		return fail_at(d, SW_ETOOBIG, NULL, x, idx,
			       "expected a string of at most %zu bytes, "
			       "found %zu", d->lim.max_string, text_len);
	d->str_bytes += text_len; /* <= input length * 4: no overflow */
	return SW_OK;
}

/* Reads a nested Billing or Usage (field x) into v[3]. */
static sw_status read_trio(dec *d, const field *x, double v[3])
{
	const sw__pb_msg *m = x->num == 6 ? &sw__pb_billing : &sw__pb_usage;
	unsigned num[3] = { 0, 0, 0 };
	size_t off[3], pos = x->val_off, end = x->val_off + x->len;
	field y;
	sw_status st;

	while (pos < end) {
		st = next_field(d, &pos, end, m, x->f, &y);
		if (st == SW_OK)
			st = once(d, &y, x->f, &num[y.f->slot], &off[y.f->slot]);
		if (st == SW_OK)
			st = read_num(d, &y, x->f, &v[y.f->slot]);
		if (st != SW_OK)
			return st;
	}
	if (num[SW_IN] == 0 || num[SW_OUT] == 0)
		return fail_at(d, SW_EMISSING, NULL, x, -1,
			       "expected both %s and %s, found %s",
			       x->num == 6 ? "input_cost" : "prompt_tokens",
			       x->num == 6 ? "output_cost" : "completion_tokens",
			       num[SW_IN] ? "only the first"
			       : num[SW_OUT] ? "only the second" : "neither");
	if (num[SW_TOTAL] == 0)
		v[SW_TOTAL] = v[SW_IN] + v[SW_OUT];
	return SW_OK;
}

/* Index in d->id of an id slot. */
static int id_index(unsigned slot)
{
	return slot == 0 ? 0 : slot == 1 ? 1 : slot == 8 ? 2 : 3;
}

/* Handles one top-level field in pass 1. */
static sw_status read_top(dec *d, const field *x)
{
	unsigned slot = x->f->slot;
	sw_update *u = &d->u;
	id_ref *r;
	sw_status st;
	int64_t ms;

	if (!x->f->repeated) {
		st = once(d, x, NULL, &d->slot_num[slot], &d->slot_off[slot]);
		if (st != SW_OK)
			return st;
	}
	switch (slot) {
	case 0: case 1: case 8: case 9:
		st = read_str(d, x, -1);
		if (st != SW_OK)
			return st;
		r = &d->id[id_index(slot)];
		r->form = x->f->form;
		r->off = x->val_off;
		r->len = x->len;
		u->has |= 1u << slot;
		return SW_OK;
	case 3:
		if (d->contacts_num != 0 && d->contacts_num != x->num)
			return fail_at(d, SW_EDUP, NULL, x, (long)d->n_contacts,
				       "expected every contact id in one "
				       "form (#%u %s), found another",
				       d->contacts_num,
				       sw__pb_field_by_num(&sw__pb_session,
							   d->contacts_num)->name);
		if (d->n_contacts >= d->lim.max_items)
			return fail_at(d, SW_ETOOBIG, NULL, x, (long)d->n_contacts,
				       "expected at most %zu contact ids, "
				       "found more", d->lim.max_items);
		st = read_str(d, x, (long)d->n_contacts);
		if (st != SW_OK)
			return st;
		if (d->n_contacts++ == 0)
			d->first_contact_off = x->tag_off;
		d->contacts_num = x->num;
		u->has |= SW_F_CONTACT_IDS;
		return SW_OK;
	case 7:
		if (d->n_tags >= d->lim.max_items)
			return fail_at(d, SW_ETOOBIG, NULL, x, (long)d->n_tags,
				       "expected at most %zu tags, found more",
				       d->lim.max_items);
		st = read_str(d, x, (long)d->n_tags);
		if (st != SW_OK)
			return st;
		if (d->n_tags++ == 0)
			d->first_tag_off = x->tag_off;
		u->has |= SW_F_TAGS;
		return SW_OK;
	case 2:
		u->has |= SW_F_DURATION;
		return read_num(d, x, NULL, &u->duration);
	case 6:
		u->has |= SW_F_TRACES_COUNT;
		return read_num(d, x, NULL, &u->traces_count);
	case 4:
		u->has |= SW_F_BILLING;
		return read_trio(d, x, u->billing);
	case 5:
		u->has |= SW_F_USAGE;
		return read_trio(d, x, u->usage);
	case 10:
		ms = sw__pb_unzigzag(x->v);
		if (ms < SW_DATE_MIN_MS || ms > SW_DATE_MAX_MS)
			return fail_at(d, SW_EDATE, NULL, x, -1,
				       "expected milliseconds within years "
				       "0000-9999, found %lld", (long long)ms);
		u->started_at = ms;
		u->has |= SW_F_STARTED_AT;
		return SW_OK;
	case 11:
		d->updated_form = x->f->form;
		d->updated_raw = sw__pb_unzigzag(x->v);
		return SW_OK;
	default: /* flags */
		if (x->v & ~(uint64_t)SW__PB_FLAG_ALL)
			return fail_at(d, SW_EVALUE, NULL, x, -1,
				       "expected Flag bits 0x%x at most, found "
				       "unknown bits 0x%llx", SW__PB_FLAG_ALL,
				       (unsigned long long)(x->v &
					       ~(uint64_t)SW__PB_FLAG_ALL));
		d->flags = (uint32_t)x->v;
		return SW_OK;
	}
}

/* The rules that need the whole message: flags, 10-byte ULIDs and
 * updated_at. */
static sw_status resolve(dec *d)
{
	sw_update *u = &d->u;
	unsigned fl = d->flags;
	size_t foff = d->slot_off[SW__PB_SLOT_FLAGS];
	bool started_ok = (u->has & SW_F_STARTED_AT) && u->started_at >= 0 &&
			  u->started_at < TWO48;
	int64_t ms = d->updated_raw;

	if (d->short_ulid_off != (size_t)-1 && !started_ok) {
		char path[SW_ERROR_PATH_MAX];

		make_path(path, sizeof(path), NULL, d->short_ulid_f->num,
			  d->short_ulid_f, d->short_ulid_idx);
		return fail(d, SW_EVALUE, path, d->short_ulid_off,
			    "expected 16 ULID bytes: 10 need started_at in "
			    "0..2^48-1, found %s",
			    (u->has & SW_F_STARTED_AT) ? "it out of range"
						       : "no started_at");
	}
	if (fl & SW__PB_FLAG_CONTACT_IDS_EMPTY) {
		if (d->n_contacts)
			return fail(d, SW_EDUP, "#15(flags)", foff,
				    "expected no contact id with "
				    "FLAG_CONTACT_IDS_EMPTY, found one at "
				    "offset %zu", d->first_contact_off);
		u->has |= SW_F_CONTACT_IDS;
	}
	if (fl & SW__PB_FLAG_TAGS_EMPTY) {
		if (d->n_tags)
			return fail(d, SW_EDUP, "#15(flags)", foff,
				    "expected no tag with FLAG_TAGS_EMPTY, "
				    "found one at offset %zu", d->first_tag_off);
		u->has |= SW_F_TAGS;
	}
	if (fl & SW__PB_FLAG_PROJECT_ID_NULL) {
		if (u->has & SW_F_PROJECT_ID)
			return fail(d, SW_EDUP, "#15(flags)", foff,
				    "expected no project_id_* field with "
				    "FLAG_PROJECT_ID_NULL, found one at "
				    "offset %zu", d->slot_off[9]);
		u->has |= SW_F_PROJECT_ID;
		u->project_id_null = true;
	}
	if (fl & SW__PB_FLAG_UPDATED_AT_IS_END) {
		double dur = u->duration;

		if (d->updated_form != 0)
			return fail(d, SW_EDUP, "#15(flags)", foff,
				    "expected no updated_at_* field with "
				    "FLAG_UPDATED_AT_IS_END, found one at "
				    "offset %zu", d->slot_off[11]);
		if (!(u->has & SW_F_STARTED_AT) || !(u->has & SW_F_DURATION) ||
		    dur != floor(dur) || fabs(dur) >= 9007199254740992.0)
			return fail(d, SW_EVALUE, "#15(flags)", foff,
				    "expected started_at and an integral "
				    "duration below 2^53 with "
				    "FLAG_UPDATED_AT_IS_END, found %s",
				    !(u->has & SW_F_STARTED_AT) ? "no started_at"
				    : !(u->has & SW_F_DURATION) ? "no duration"
				    : "a duration that is not");
		ms = u->started_at + (int64_t)dur; /* both bounded: no overflow */
		if (ms < SW_DATE_MIN_MS || ms > SW_DATE_MAX_MS)
			return fail(d, SW_EDATE, "#15(flags)", foff,
				    "expected started_at + duration within "
				    "years 0000-9999, found %lld",
				    (long long)ms);
	} else if (d->updated_form == SW__PB_DELTA) {
		const char *path = "#14(updated_at_delta)";

		if (!(u->has & SW_F_STARTED_AT))
			return fail(d, SW_EVALUE, path, d->slot_off[11],
				    "expected started_at with "
				    "updated_at_delta, found none");
		if (__builtin_add_overflow(u->started_at, d->updated_raw, &ms) ||
		    ms < SW_DATE_MIN_MS || ms > SW_DATE_MAX_MS)
			return fail(d, SW_EDATE, path, d->slot_off[11],
				    "expected started_at + delta within years "
				    "0000-9999, found delta %lld",
				    (long long)d->updated_raw);
	} else if (d->updated_form == SW__PB_MS) {
		if (ms < SW_DATE_MIN_MS || ms > SW_DATE_MAX_MS)
			return fail(d, SW_EDATE, "#13(updated_at_ms)",
				    d->slot_off[11],
				    "expected milliseconds within years "
				    "0000-9999, found %lld", (long long)ms);
	} else {
		return SW_OK;
	}
	u->updated_at = ms;
	u->has |= SW_F_UPDATED_AT;
	return SW_OK;
}

/* ==== Pass 2: strings into the block ==== */

/* The text of an id value (form, bytes) into the pool (ULIDs and UUIDs
 * formatted in place: pass 1 counted their text lengths). */
static sw_str id_text(sw__builder *b, unsigned form, const uint8_t *p,
		      size_t n, int64_t started_at)
{
	sw_str r = { b->pool, 0 };
	uint8_t raw[16];
	int i;

	switch (form) {
	case SW__PB_ULID:
		if (n == 10) {
			for (i = 0; i < 6; i++)
				raw[i] = (uint8_t)((uint64_t)started_at >>
						   (8 * (5 - i)));
			memcpy(raw + 6, p, 10);
		} else {
			memcpy(raw, p, 16);
		}
		sw_ulid_format(raw, b->pool);
		r.len = SW_ULID_LEN;
		break;
	case SW__PB_UUID:
		sw_uuid_format(p, b->pool);
		r.len = SW_UUID_LEN;
		break;
	default:
		return sw__block_str(b, (const char *)p, n);
	}
	b->pool += r.len;
	return r;
}

/* Fills the block from the checked input. */
static void fill(dec *d, sw__builder *b)
{
	static const unsigned id_slots[4] = { 0, 1, 8, 9 };
	sw_update *u = b->u;
	size_t pos = 0, nc = 0, nt = 0;
	sw_str *slot_str;
	field x;
	int i;

	/* pass 2 re-reads the input only for the lists, from the first item */
	if (d->n_contacts != 0)
		pos = d->first_contact_off;
	if (d->n_tags != 0 && (d->n_contacts == 0 || d->first_tag_off < pos))
		pos = d->first_tag_off;

	u->has = d->u.has;
	u->project_id_null = d->u.project_id_null;
	u->duration = d->u.duration;
	u->traces_count = d->u.traces_count;
	memcpy(u->billing, d->u.billing, sizeof(u->billing));
	memcpy(u->usage, d->u.usage, sizeof(u->usage));
	u->started_at = d->u.started_at;
	u->updated_at = d->u.updated_at;
	u->n_contact_ids = d->n_contacts;
	u->n_tags = d->n_tags;
	for (i = 0; i < 4; i++) {
		const id_ref *r = &d->id[i];

		if (!(u->has & (1u << id_slots[i])) ||
		    (id_slots[i] == 9 && u->project_id_null))
			continue;
		slot_str = id_slots[i] == 0   ? &u->id
			   : id_slots[i] == 1 ? &u->external_id
			   : id_slots[i] == 8 ? &u->workspace_id
					      : &u->project_id;
		*slot_str = id_text(b, r->form, d->buf + r->off, r->len,
				    u->started_at);
	}
	while (nc + nt < d->n_contacts + d->n_tags && pos < d->len) {
		if (next_field(d, &pos, d->len, &sw__pb_session, NULL, &x) !=
		    SW_OK)
			break; /* cannot happen: pass 1 read it all */
		if (x.f->slot == 3)
			b->contacts[nc++] = id_text(b, x.f->form,
						    d->buf + x.val_off, x.len,
						    u->started_at);
		else if (x.f->slot == 7)
			b->tags[nt++] = sw__block_str(b,
				(const char *)d->buf + x.val_off, x.len);
	}
}

sw_status sw_pb_decode(const uint8_t *buf, size_t len,
		       const sw_parse_opts *opts, sw_update **out,
		       sw_error *err)
{
	dec d;
	sw__builder b;
	size_t pos = 0;
	field x;
	sw_status st;

	if (out != NULL)
		*out = NULL;
	if (out == NULL || (buf == NULL && len != 0))
		return sw__fail(err, SW_EINVAL, "", (size_t)-1,
				"expected an input buffer and an output "
				"pointer");
	memset(&d, 0, sizeof(d));
	d.buf = buf;
	d.len = len;
	d.lim = sw__limits(opts ? &opts->limits : NULL);
	d.err = err;
	d.short_ulid_off = (size_t)-1; /* d.u: zeroed, as sw_update_init does */
	if (len > d.lim.max_input)
		return fail(&d, SW_ETOOBIG, "", 0,
			    "expected at most %zu bytes of protobuf, found %zu",
			    d.lim.max_input, len);
	while (pos < len) {
		st = next_field(&d, &pos, len, &sw__pb_session, NULL, &x);
		if (st == SW_OK)
			st = read_top(&d, &x);
		if (st != SW_OK)
			return st;
	}
	st = resolve(&d);
	if (st != SW_OK)
		return st;
	st = sw__block_new(opts ? opts->alloc : NULL, d.n_contacts, d.n_tags,
			   d.str_bytes, &b);
	if (st != SW_OK)
		return fail(&d, st, "", (size_t)-1,
			    "expected to allocate the result (%zu string "
			    "bytes), found %s", d.str_bytes,
			    st == SW_ENOMEM ? "no memory" : "a size overflow");
	fill(&d, &b);
	if (opts != NULL && opts->kind == SW_KIND_SESSION) {
		st = sw_update_check(b.u, SW_KIND_SESSION, &d.lim, err);
		if (st != SW_OK) {
			sw_update_free(b.u);
			return st;
		}
	}
	*out = b.u;
	return SW_OK;
}
