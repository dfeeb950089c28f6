/* pb_encode.c - sw_update -> Session protobuf, picking the compact forms.
 *
 * Device-safe: no heap, no stdio; the only state is on the stack and the
 * caller's buffer, which is never written past cap. Fields go out in
 * increasing field-number order, so the bytes equal what protobuf-c packs
 * for the same forms.
 */
#include <math.h>
#include <string.h>

#include "pb_wire.h"

/* ==== The output ==== */

/* Counts every byte; stores only the ones that fit in buf[0..cap). */
typedef struct wr {
	uint8_t *buf;
	size_t cap;
	size_t pos;
} wr;

static void put(wr *w, const void *p, size_t n)
{
	if (w->buf != NULL && w->pos <= w->cap && n <= w->cap - w->pos && n)
		memcpy(w->buf + w->pos, p, n);
	w->pos += n;
}

/* Writes a varint near the end of the buffer (or counts it). */
static void __attribute__((noinline)) put_varint_slow(wr *w, uint64_t v)
{
	uint8_t tmp[10];

	put(w, tmp, sw__pb_varint_put(tmp, v));
}

/* Writes a varint (in place when 10 bytes are left: a NULL buf has cap
 * 0). */
static inline void put_varint(wr *w, uint64_t v)
{
	if (w->pos <= w->cap && w->cap - w->pos >= 10) {
		w->pos += sw__pb_varint_put(w->buf + w->pos, v); /* room */
		return;
	}
	put_varint_slow(w, v);
}

/* Writes the tag of field num with wire type wt. */
static void put_tag(wr *w, unsigned num, unsigned wt)
{
	put_varint(w, (uint64_t)num << 3 | wt);
}

/* Writes a length-delimited field. */
static void put_bytes(wr *w, unsigned num, const void *p, size_t n)
{
	put_tag(w, num, SW__PB_WT_LEN);
	put_varint(w, n);
	put(w, p, n);
}

/* ==== Ids ==== */

typedef struct id_plan {
	unsigned form;   /* SW__PB_ULID, SW__PB_UUID or SW__PB_TEXT */
	uint8_t raw[16];
	size_t off, len; /* the bytes of raw sent (ULID: 0,16 or 6,10) */
} id_plan;

/* Whether ULIDs whose time equals started_at may drop their 6 time
 * bytes. */
static bool ulid_time_ok(const sw_update *u, unsigned plain)
{
	return !(plain & SW_PB_PLAIN_ULID_TIME) && (u->has & SW_F_STARTED_AT) &&
	       u->started_at >= 0 && u->started_at < ((int64_t)1 << 48);
}

/* Sets the form of an id whose kind k and raw bytes (in p->raw) are
 * known. */
static void id_plan_kind(sw_id_kind k, const sw_update *u, unsigned plain,
			 id_plan *p)
{
	p->form = SW__PB_TEXT;
	p->off = 0;
	p->len = 16;
	if (k == SW_ID_ULID && !(plain & SW_PB_PLAIN_ULID)) {
		p->form = SW__PB_ULID;
		if (ulid_time_ok(u, plain) &&
		    sw_ulid_time(p->raw) == (uint64_t)u->started_at) {
			p->off = 6;
			p->len = 10;
		}
	} else if (k == SW_ID_UUID && !(plain & SW_PB_PLAIN_UUID)) {
		p->form = SW__PB_UUID;
	}
}

/* Picks the form of one id. */
static void id_choose(const sw_str *s, const sw_update *u, unsigned plain,
		      id_plan *p)
{
	id_plan_kind(sw_id_parse(s->ptr, s->len, p->raw), u, plain, p);
}

/* Writes one id as field num (its form already chosen). */
static void put_id(wr *w, unsigned num, const sw_str *s, const id_plan *p)
{
	if (p->form == SW__PB_TEXT)
		put_bytes(w, num, s->ptr, s->len);
	else
		put_bytes(w, num, p->raw + p->off, p->len);
}

/* Contact ids whose raw bytes the plan keeps (not parsed twice). */
#define CONTACTS_KEPT 8

/* The one form every contact id can take; the raw bytes of the first
 * CONTACTS_KEPT go to raw[] (all of them parsed when the form is not
 * text). */
static unsigned contacts_form(const sw_update *u, unsigned plain,
			      uint8_t raw[CONTACTS_KEPT][16])
{
	bool ulid = !(plain & SW_PB_PLAIN_ULID), uuid = !(plain & SW_PB_PLAIN_UUID);
	uint8_t tmp[16] = { 0 };
	size_t i;

	for (i = 0; i < u->n_contact_ids && (ulid || uuid); i++) {
		sw_id_kind k = sw_id_parse(u->contact_ids[i].ptr,
					   u->contact_ids[i].len,
					   i < CONTACTS_KEPT ? raw[i] : tmp);

		ulid = ulid && k == SW_ID_ULID;
		uuid = uuid && k == SW_ID_UUID;
	}
	return ulid ? SW__PB_ULID : uuid ? SW__PB_UUID : SW__PB_TEXT;
}

/* ==== Numbers ==== */

/* Writes a number in its chosen form as field num. */
static void put_num(wr *w, unsigned num, const sw__pb_num *n)
{
	uint8_t le[8];
	int i;

	if (n->form == SW__PB_DOUBLE) {
		put_tag(w, num, SW__PB_WT_I64);
		for (i = 0; i < 8; i++)
			le[i] = (uint8_t)(n->v >> (8 * i));
		put(w, le, 8);
	} else {
		put_tag(w, num, SW__PB_WT_VARINT);
		put_varint(w, n->v);
	}
}

/* The three numbers of billing or usage, with the total maybe left out. */
typedef struct trio_plan {
	sw__pb_num n[3];
	bool has_total;
	size_t size; /* of the nested message */
} trio_plan;

/* Bitwise equality: -0 differs from 0. */
static bool same_double(double a, double b)
{
	return memcmp(&a, &b, sizeof(a)) == 0;
}

/* Picks the forms of billing or usage and the nested size. */
static void trio_choose(const double v[3], unsigned plain, trio_plan *p)
{
	int i;

	p->has_total = (plain & SW_PB_PLAIN_TOTAL) ||
		       !same_double(v[SW_IN] + v[SW_OUT], v[SW_TOTAL]);
	p->size = 0;
	for (i = 0; i < 3; i++) {
		if (i == SW_TOTAL && !p->has_total)
			break;
		sw__pb_num_choose(v[i], plain, &p->n[i]);
		/* every Billing/Usage field number is below 16: a 1-byte tag */
		p->size += 1 + p->n[i].size;
	}
}

/* Writes billing or usage as the nested message field num. */
static void put_trio(wr *w, unsigned num, const sw__pb_msg *m,
		     const trio_plan *p)
{
	int i;

	put_tag(w, num, SW__PB_WT_LEN);
	put_varint(w, p->size);
	for (i = 0; i < 3; i++) {
		if (i == SW_TOTAL && !p->has_total)
			break;
		put_num(w, sw__pb_field_num(m, (unsigned)i, p->n[i].form),
			&p->n[i]);
	}
}

/* ==== The message ==== */

/* What goes out, per top-level value. */
typedef struct plan {
	id_plan id[4]; /* _id, external_id, workspace_id, project_id */
	sw__pb_num duration, traces;
	trio_plan billing, usage;
	unsigned contacts_form;
	uint8_t contacts_raw[CONTACTS_KEPT][16]; /* not text: the first ids */
	unsigned updated_form; /* SW__PB_MS, SW__PB_DELTA, or 0: by flag */
	uint32_t flags;
} plan;

/* Index in plan.id of an id slot (0, 1, 8, 9). */
static int id_index(unsigned slot)
{
	switch (slot) {
	case 0:
		return 0;
	case 1:
		return 1;
	case 8:
		return 2;
	default:
		return 3;
	}
}

/* The string of an id slot. */
static const sw_str *id_str(const sw_update *u, unsigned slot)
{
	switch (slot) {
	case 0:
		return &u->id;
	case 1:
		return &u->external_id;
	case 8:
		return &u->workspace_id;
	default:
		return &u->project_id;
	}
}

/* Decides the form of every present value and the flags. */
static void make_plan(const sw_update *u, unsigned plain, plan *p)
{
	static const unsigned id_slots[4] = { 0, 1, 8, 9 };
	int i;

	/* no memset of the whole plan (it showed in profiles): every other
	 * member is set before it is read, for present values only */
	p->flags = 0;
	p->contacts_form = 0;
	p->updated_form = 0;
	for (i = 0; i < 4; i++) {
		unsigned slot = id_slots[i];

		if (u->has & (1u << slot) &&
		    !(slot == 9 && u->project_id_null))
			id_choose(id_str(u, slot), u, plain, &p->id[i]);
	}
	if (u->has & SW_F_PROJECT_ID && u->project_id_null)
		p->flags |= SW__PB_FLAG_PROJECT_ID_NULL;
	if (u->has & SW_F_DURATION)
		sw__pb_num_choose(u->duration, plain, &p->duration);
	if (u->has & SW_F_TRACES_COUNT)
		sw__pb_num_choose(u->traces_count, plain, &p->traces);
	if (u->has & SW_F_BILLING)
		trio_choose(u->billing, plain, &p->billing);
	if (u->has & SW_F_USAGE)
		trio_choose(u->usage, plain, &p->usage);
	if (u->has & SW_F_CONTACT_IDS) {
		if (u->n_contact_ids == 0)
			p->flags |= SW__PB_FLAG_CONTACT_IDS_EMPTY;
		else
			p->contacts_form = contacts_form(u, plain,
							 p->contacts_raw);
	}
	if (u->has & SW_F_TAGS && u->n_tags == 0)
		p->flags |= SW__PB_FLAG_TAGS_EMPTY;
	if (u->has & SW_F_UPDATED_AT) {
		p->updated_form = SW__PB_MS;
		if (u->has & SW_F_STARTED_AT && !(plain & SW_PB_PLAIN_DATE_DELTA)) {
			double d = u->duration;
			int64_t delta = u->updated_at - u->started_at;

			if (u->has & SW_F_DURATION && d == floor(d) &&
			    fabs(d) < 9007199254740992.0 &&
			    u->updated_at == u->started_at + (int64_t)d) {
				p->flags |= SW__PB_FLAG_UPDATED_AT_IS_END;
				p->updated_form = 0;
			} else if (sw__pb_varint_len(sw__pb_zigzag(delta)) <
				   sw__pb_varint_len(sw__pb_zigzag(u->updated_at))) {
				p->updated_form = SW__PB_DELTA;
			}
		}
	}
}

/* One top-level field to write: its number and the value slot. */
typedef struct item {
	unsigned num, slot;
} item;

/* Lists the fields to write, sorted by field number. No sort is needed:
 * in slot order, the numbers up to 15 (first forms and flags) ascend, and
 * so do those from 16 (the other forms), so the list is the first group
 * then the second (test_pb checks the bytes against protobuf-c). */
static size_t make_items(const sw_update *u, const plan *p, item *it)
{
	const sw__pb_msg *m = &sw__pb_session;
	item high[SW_FIELD_COUNT];
	size_t n = 0, nh = 0, i;
	unsigned slot, num;

	for (slot = 0; slot < SW_FIELD_COUNT; slot++) {
		unsigned form = 0;

		if (!(u->has & (1u << slot)))
			continue;
		switch (slot) {
		case 0: case 1: case 8: case 9:
			if (slot == 9 && u->project_id_null)
				continue;
			form = p->id[id_index(slot)].form;
			break;
		case 2:
			form = p->duration.form;
			break;
		case 6:
			form = p->traces.form;
			break;
		case 3:
			if (u->n_contact_ids == 0)
				continue;
			form = p->contacts_form;
			break;
		case 7:
			if (u->n_tags == 0)
				continue;
			form = SW__PB_TEXT;
			break;
		case 4: case 5:
			form = SW__PB_MSG;
			break;
		case 10:
			form = SW__PB_MS;
			break;
		default: /* 11: updated_at */
			if (p->updated_form == 0)
				continue;
			form = p->updated_form;
			break;
		}
		num = sw__pb_field_num(m, slot, form);
		if (num < 16) {
			it[n].num = num;
			it[n++].slot = slot;
		} else {
			high[nh].num = num;
			high[nh++].slot = slot;
		}
	}
	if (p->flags) {
		it[n].num = sw__pb_field_num(m, SW__PB_SLOT_FLAGS, SW__PB_FLAGS);
		it[n].slot = SW__PB_SLOT_FLAGS;
		n++;
	}
	for (i = 0; i < nh; i++)
		it[n++] = high[i];
	return n;
}

/* Writes the list items of contact_ids as field num. */
static void put_contacts(wr *w, unsigned num, const sw_update *u,
			 unsigned plain, const plan *pl)
{
	id_plan p;
	size_t i;

	for (i = 0; i < u->n_contact_ids; i++) {
		const sw_str *s = &u->contact_ids[i];

		if (pl->contacts_form == SW__PB_TEXT) {
			put_bytes(w, num, s->ptr, s->len);
			continue;
		}
		if (i < CONTACTS_KEPT) { /* every one is of this form */
			memcpy(p.raw, pl->contacts_raw[i], 16);
			id_plan_kind(pl->contacts_form == SW__PB_ULID
				     ? SW_ID_ULID : SW_ID_UUID, u, plain, &p);
		} else {
			id_choose(s, u, plain, &p);
		}
		put_id(w, num, s, &p);
	}
}

/* Writes the whole message (or counts it when w->buf is NULL). */
static void put_message(wr *w, const sw_update *u, unsigned plain,
			const plan *p)
{
	item it[SW_FIELD_COUNT + 1];
	size_t n = make_items(u, p, it), i, k;

	for (i = 0; i < n; i++) {
		unsigned num = it[i].num;

		switch (it[i].slot) {
		case 0: case 1: case 8: case 9:
			put_id(w, num, id_str(u, it[i].slot),
			       &p->id[id_index(it[i].slot)]);
			break;
		case 2:
			put_num(w, num, &p->duration);
			break;
		case 6:
			put_num(w, num, &p->traces);
			break;
		case 3:
			put_contacts(w, num, u, plain, p);
			break;
		case 7:
			for (k = 0; k < u->n_tags; k++)
				put_bytes(w, num, u->tags[k].ptr, u->tags[k].len);
			break;
		case 4:
			put_trio(w, num, &sw__pb_billing, &p->billing);
			break;
		case 5:
			put_trio(w, num, &sw__pb_usage, &p->usage);
			break;
		case 10:
			put_tag(w, num, SW__PB_WT_VARINT);
			put_varint(w, sw__pb_zigzag(u->started_at));
			break;
		case 11:
			put_tag(w, num, SW__PB_WT_VARINT);
			put_varint(w, sw__pb_zigzag(p->updated_form == SW__PB_DELTA
					    ? u->updated_at - u->started_at
					    : u->updated_at));
			break;
		default: /* flags */
			put_tag(w, num, SW__PB_WT_VARINT);
			put_varint(w, p->flags);
			break;
		}
	}
}

sw_status sw_pb_encode_ex(const sw_update *u, unsigned plain, uint8_t *buf,
			  size_t cap, size_t *len, sw_error *err)
{
	wr w = { buf, cap, 0 };
	plan p;
	sw_status st;

	if (len != NULL)
		*len = 0;
	if (u == NULL || len == NULL || (buf == NULL && cap != 0))
		return sw__fail(err, SW_EINVAL, "", (size_t)-1,
				"expected an update, a length pointer and a "
				"buffer (or NULL with cap 0)");
	st = sw_update_check(u, SW_KIND_UPDATE, NULL, err);
	if (st != SW_OK)
		return st;
	make_plan(u, plain, &p);
	put_message(&w, u, plain, &p);
	*len = w.pos;
	if (buf != NULL && w.pos > cap)
		return sw__fail(err, SW_EBUFSZ, "", cap,
				"output buffer too small for the encoded "
				"update (*len says how many bytes it needs)");
	return SW_OK;
}

sw_status sw_pb_encode(const sw_update *u, uint8_t *buf, size_t cap,
		       size_t *len, sw_error *err)
{
	return sw_pb_encode_ex(u, 0, buf, cap, len, err);
}
