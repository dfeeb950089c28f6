/* envelope.c - the Envelope, Batch, Result, Ack and Error messages of
 * proto/sessionwire.proto: what devices and the gateway exchange around
 * an update.
 *
 * Device-safe: no heap, no stdio, in the encoders and the decoders alike
 * (a device decodes the Ack and the Error it gets back). Encoders write
 * the fields in increasing number order, so the bytes equal what
 * protobuf-c packs; they never write past cap. Decoders are strict like
 * pb_decode.c: truncation, overlong varints, wrong wire types, unknown
 * fields, a singular field or oneof given twice, invalid UTF-8 and ids of
 * the wrong size are errors naming the byte offset of the field's tag and
 * a path like "items[3].seq" or "results[0].message" ("items[3].#9" for
 * an unknown field 9).
 */
#include <string.h>

#include "pb_wire.h"

/* ==== Bounded text (paths and messages without stdio) ==== */

typedef struct txt {
	char *s;
	size_t cap, n;
} txt;

static void t_init(txt *t, char *s, size_t cap)
{
	t->s = s;
	t->cap = cap;
	t->n = 0;
	s[0] = '\0';
}

/* Appends str as far as it fits (always NUL-terminated). */
static txt *t_s(txt *t, const char *str)
{
	while (*str != '\0' && t->n + 1 < t->cap)
		t->s[t->n++] = *str++;
	t->s[t->n] = '\0';
	return t;
}

/* Appends the decimal digits of v. */
static txt *t_u(txt *t, uint64_t v)
{
	char tmp[24];
	size_t k = 0;

	do {
		tmp[k++] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	while (k > 0 && t->n + 1 < t->cap)
		t->s[t->n++] = tmp[--k];
	t->s[t->n] = '\0';
	return t;
}

/* Appends two lowercase hex digits of byte b. */
static txt *t_x(txt *t, uint8_t b)
{
	static const char hex[17] = "0123456789abcdef";
	char two[3] = { hex[b >> 4], hex[b & 15], '\0' };

	return t_s(t, two);
}

/* Writes "prefix.name" (or "name" when prefix is empty) into out. */
static void make_path(char *out, size_t cap, const char *prefix,
		      const char *name)
{
	txt t;

	t_init(&t, out, cap);
	if (prefix[0] != '\0')
		t_s(t_s(&t, prefix), ".");
	t_s(&t, name);
}

/* Writes "prefix.name[i]" into out. */
static void make_item_path(char *out, size_t cap, const char *prefix,
			   const char *name, size_t i)
{
	txt t;

	make_path(out, cap, prefix, name);
	t.s = out;
	t.cap = cap;
	t.n = strlen(out);
	t_s(t_u(t_s(&t, "["), i), "]");
}

/* ==== The output (as pb_encode.c) ==== */

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

static void put_varint(wr *w, uint64_t v)
{
	uint8_t tmp[10];

	put(w, tmp, sw__pb_varint_put(tmp, v));
}

static void put_tag(wr *w, unsigned num, unsigned wt)
{
	put_varint(w, (uint64_t)num << 3 | wt);
}

static void put_uint(wr *w, unsigned num, uint64_t v)
{
	put_tag(w, num, SW__PB_WT_VARINT);
	put_varint(w, v);
}

static void put_bytes(wr *w, unsigned num, const void *p, size_t n)
{
	put_tag(w, num, SW__PB_WT_LEN);
	put_varint(w, n);
	put(w, p, n);
}

/* Checks the common arguments of an encoder and clears *len. */
static sw_status enc_args(const uint8_t *buf, size_t cap, size_t *len,
			  sw_error *err)
{
	if (len != NULL)
		*len = 0;
	if (len == NULL || (buf == NULL && cap != 0))
		return sw__fail(err, SW_EINVAL, "", (size_t)-1,
				"expected a length pointer and a buffer (or "
				"NULL with cap 0)");
	return SW_OK;
}

/* Ends an encoder: the size in *len, SW_EBUFSZ when it did not fit. */
static sw_status enc_done(const wr *w, size_t *len, const char *what,
			  sw_error *err)
{
	char msg[SW_ERROR_MSG_MAX];
	txt t;

	*len = w->pos;
	if (w->buf == NULL || w->pos <= w->cap)
		return SW_OK;
	t_init(&t, msg, sizeof(msg));
	t_s(t_u(t_s(t_u(t_s(t_s(t_s(&t, "expected room for "), what),
			    " in the output buffer: it needs "), w->pos),
		    " bytes, found "), w->cap), " (*len says how many it needs)");
	return sw__fail(err, SW_EBUFSZ, "", w->cap, msg);
}

/* Checks an optional string to encode: UTF-8, pointer given. */
static sw_status enc_str(const sw_str *s, const char *path, sw_error *err)
{
	char msg[SW_ERROR_MSG_MAX];
	size_t bad;
	txt t;

	if (s->len == 0)
		return SW_OK;
	if (s->ptr == NULL)
		return sw__fail(err, SW_EINVAL, path, (size_t)-1,
				"expected string bytes, found NULL with a "
				"length");
	bad = sw__utf8_check(s->ptr, s->len);
	if (bad == s->len)
		return SW_OK;
	t_init(&t, msg, sizeof(msg));
	t_u(t_s(&t, "expected UTF-8 text, found an invalid byte at string "
		"offset "), bad);
	return sw__fail(err, SW_EUTF8, path, bad, msg);
}

/* ==== Session ids ==== */

/* Checks a text session id: not empty, not "." or "..", UTF-8. off is its
 * offset in the input, for the error ((size_t)-1 when encoding). */
sw_status sw__check_text_id(const char *id, size_t len, const char *path,
			    size_t off, sw_error *err)
{
	char msg[SW_ERROR_MSG_MAX];
	size_t bad;
	txt t;

	if (len == 0)
		return sw__fail(err, SW_EVALUE, path, off,
				"expected a non-empty session id, found \"\"");
	if ((len == 1 && id[0] == '.') ||
	    (len == 2 && id[0] == '.' && id[1] == '.'))
		return sw__fail(err, SW_EVALUE, path, off,
				len == 1 ? "expected a session id other than "
					   "\".\" and \"..\" (a URL resolves "
					   "them as path segments), found \".\""
					 : "expected a session id other than "
					   "\".\" and \"..\" (a URL resolves "
					   "them as path segments), found "
					   "\"..\"");
	bad = sw__utf8_check(id, len);
	if (bad == len)
		return SW_OK;
	t_init(&t, msg, sizeof(msg));
	t_u(t_s(&t, "expected a UTF-8 session id, found an invalid byte at "
		"string offset "), bad);
	return sw__fail(err, SW_EUTF8, path,
			off == (size_t)-1 ? bad : off + bad, msg);
}

/* ==== Encoders ==== */

/* Writes session id (one of fields 1-3), seq (4) and update (5). */
sw_status sw_envelope_encode(const sw_session_id *sid, bool has_seq,
			     uint64_t seq, const uint8_t *update,
			     size_t update_len, uint8_t *buf, size_t cap,
			     size_t *len, sw_error *err)
{
	wr w = { buf, cap, 0 };
	sw_status st;

	st = enc_args(buf, cap, len, err);
	if (st != SW_OK)
		return st;
	if (update == NULL && update_len != 0)
		return sw__fail(err, SW_EINVAL, "update", (size_t)-1,
				"expected update bytes, found NULL with a "
				"length");
	switch (sid == NULL ? -1 : (int)sid->kind) {
	case -1: /* in a batch: the previous item's session */
		break;
	case SW_ID_ULID:
		put_bytes(&w, 1, sid->raw, 16);
		break;
	case SW_ID_UUID:
		put_bytes(&w, 3, sid->raw, 16);
		break;
	case SW_ID_TEXT:
		if (sid->text.ptr == NULL && sid->text.len != 0)
			return sw__fail(err, SW_EINVAL, "session_id",
					(size_t)-1, "expected session id "
					"text, found NULL with a length");
		st = sw__check_text_id(sid->text.ptr, sid->text.len,
				       "session_id", (size_t)-1, err);
		if (st != SW_OK)
			return st;
		put_bytes(&w, 2, sid->text.ptr, sid->text.len);
		break;
	default:
		return sw__fail(err, SW_EINVAL, "session_id", (size_t)-1,
				"expected a session id kind of SW_ID_TEXT, "
				"SW_ID_ULID or SW_ID_UUID, found another");
	}
	if (has_seq)
		put_uint(&w, 4, seq);
	if (update != NULL)
		put_bytes(&w, 5, update, update_len);
	return enc_done(&w, len, "the envelope", err);
}

/* Appends field 1 = env at buf[*len]; *len is the batch so far (in) and
 * after the item (out), unchanged on SW_EBUFSZ. buf NULL + cap 0: *len
 * only grows by the item's size. */
sw_status sw_batch_append(const uint8_t *env, size_t env_len, uint8_t *buf,
			  size_t cap, size_t *len, sw_error *err)
{
	char msg[SW_ERROR_MSG_MAX];
	size_t need;
	wr w;
	txt t;

	if (len == NULL || (buf == NULL && cap != 0) ||
	    (env == NULL && env_len != 0))
		return sw__fail(err, SW_EINVAL, "", (size_t)-1,
				"expected an envelope, a length pointer and "
				"a buffer (or NULL with cap 0)");
	need = 1 + sw__pb_varint_len(env_len);
	if (env_len > (size_t)-1 - need || *len > (size_t)-1 - need - env_len)
		return sw__fail(err, SW_ETOOBIG, "", (size_t)-1,
				"expected a batch size that fits in size_t, "
				"found more");
	need += env_len;
	if (buf == NULL) { /* size only */
		*len += need;
		return SW_OK;
	}
	if (*len > cap || need > cap - *len) {
		t_init(&t, msg, sizeof(msg));
		t_s(t_u(t_s(t_u(t_s(t_u(t_s(&t, "expected room for "), need),
				    " more bytes in the output buffer after "),
			    *len), ", found "), cap), " in all (*len is left "
		    "as it was)");
		return sw__fail(err, SW_EBUFSZ, "", *len, msg);
	}
	w.buf = buf;
	w.cap = cap;
	w.pos = *len;
	put_bytes(&w, 1, env, env_len);
	*len = w.pos;
	return SW_OK;
}

/* Writes one Result (its fields, without a tag and length); seq only
 * with with_seq. */
static void put_result_fields(wr *w, const sw_result *r, bool with_seq)
{
	if (with_seq)
		put_uint(w, 1, r->seq);
	put_uint(w, 2, r->status);
	if (r->has_retry_after)
		put_uint(w, 3, r->retry_after_ms);
	if (r->message.len != 0)
		put_bytes(w, 4, r->message.ptr, r->message.len);
}

static void put_result(wr *w, const sw_result *r)
{
	put_result_fields(w, r, true);
}

/* Writes each result as field 1 (seq and status always, retry_after_ms
 * when asked, message when not empty). */
sw_status sw_ack_encode(const sw_result *results, size_t n, uint8_t *buf,
			size_t cap, size_t *len, sw_error *err)
{
	char item[SW_ERROR_PATH_MAX], path[SW_ERROR_PATH_MAX];
	wr w = { buf, cap, 0 };
	size_t i;
	sw_status st;

	st = enc_args(buf, cap, len, err);
	if (st != SW_OK)
		return st;
	if (results == NULL && n != 0)
		return sw__fail(err, SW_EINVAL, "results", (size_t)-1,
				"expected results, found NULL with a count");
	for (i = 0; i < n; i++) {
		wr size = { NULL, 0, 0 };

		make_item_path(item, sizeof(item), "", "results", i);
		make_path(path, sizeof(path), item, "message");
		st = enc_str(&results[i].message, path, err);
		if (st != SW_OK)
			return st;
		put_result(&size, &results[i]);
		put_tag(&w, 1, SW__PB_WT_LEN);
		put_varint(&w, size.pos);
		put_result(&w, &results[i]);
	}
	return enc_done(&w, len, "the ack", err);
}

/* Writes status always, code, message and field when not empty. */
/* One Result on its own: status always, seq only with with_seq. */
sw_status sw_result_encode(const sw_result *r, bool with_seq, uint8_t *buf,
			   size_t cap, size_t *len, sw_error *err)
{
	wr w = { buf, cap, 0 };
	sw_status st;

	st = enc_args(buf, cap, len, err);
	if (st != SW_OK)
		return st;
	if (r == NULL)
		return sw__fail(err, SW_EINVAL, "", (size_t)-1,
				"expected a result, found NULL");
	st = enc_str(&r->message, "message", err);
	if (st != SW_OK)
		return st;
	put_result_fields(&w, r, with_seq);
	return enc_done(&w, len, "the result", err);
}

sw_status sw_error_msg_encode(const sw_error_msg *e, uint8_t *buf, size_t cap,
			      size_t *len, sw_error *err)
{
	wr w = { buf, cap, 0 };
	sw_status st;

	st = enc_args(buf, cap, len, err);
	if (st != SW_OK)
		return st;
	if (e == NULL)
		return sw__fail(err, SW_EINVAL, "", (size_t)-1,
				"expected an error message, found NULL");
	st = enc_str(&e->code, "code", err);
	if (st == SW_OK)
		st = enc_str(&e->message, "message", err);
	if (st == SW_OK)
		st = enc_str(&e->field, "field", err);
	if (st != SW_OK)
		return st;
	put_uint(&w, 1, e->status);
	if (e->code.len != 0)
		put_bytes(&w, 2, e->code.ptr, e->code.len);
	if (e->message.len != 0)
		put_bytes(&w, 3, e->message.ptr, e->message.len);
	if (e->field.len != 0)
		put_bytes(&w, 4, e->field.ptr, e->field.len);
	return enc_done(&w, len, "the error message", err);
}

/* ==== Decoding: fields ==== */

/* One field of a message as the decoder knows it. */
typedef struct fdesc {
	/* the tables name each field number, to read them against the .proto */
	/* cppcheck-suppress unusedStructMember */
	uint8_t num;
	uint8_t wt;
	const char *name; /* as in the .proto */
} fdesc;

typedef struct mdesc {
	const char *name; /* "Envelope" */
	const fdesc *f;   /* indexed by number - 1 */
	size_t n;
} mdesc;

static const fdesc envelope_fields[] = {
	{ 1, SW__PB_WT_LEN, "session_id_ulid" },
	{ 2, SW__PB_WT_LEN, "session_id_text" },
	{ 3, SW__PB_WT_LEN, "session_id_uuid" },
	{ 4, SW__PB_WT_VARINT, "seq" },
	{ 5, SW__PB_WT_LEN, "update" },
};
static const fdesc batch_fields[] = {
	{ 1, SW__PB_WT_LEN, "items" },
};
static const fdesc result_fields[] = {
	{ 1, SW__PB_WT_VARINT, "seq" },
	{ 2, SW__PB_WT_VARINT, "status" },
	{ 3, SW__PB_WT_VARINT, "retry_after_ms" },
	{ 4, SW__PB_WT_LEN, "message" },
};
static const fdesc ack_fields[] = {
	{ 1, SW__PB_WT_LEN, "results" },
};
static const fdesc error_fields[] = {
	{ 1, SW__PB_WT_VARINT, "status" },
	{ 2, SW__PB_WT_LEN, "code" },
	{ 3, SW__PB_WT_LEN, "message" },
	{ 4, SW__PB_WT_LEN, "field" },
};

#define MDESC(name, f) { name, f, sizeof(f) / sizeof(f[0]) }
static const mdesc envelope_msg = MDESC("Envelope", envelope_fields);
static const mdesc batch_msg = MDESC("Batch", batch_fields);
static const mdesc result_msg = MDESC("Result", result_fields);
static const mdesc ack_msg = MDESC("Ack", ack_fields);
static const mdesc error_msg = MDESC("Error", error_fields);

/* One field as read from the wire. */
typedef struct field {
	size_t tag_off, val_off;
	uint32_t num;
	unsigned wt;
	uint64_t v;  /* varint value */
	size_t len;  /* length of a bytes field */
	const fdesc *f;
} field;

/* Fails about field x of a message at prefix. */
static sw_status fail_field(sw_error *err, sw_status st, const char *prefix,
			    const field *x, size_t off, const char *msg)
{
	char path[SW_ERROR_PATH_MAX];

	make_path(path, sizeof(path), prefix, x->f->name);
	return sw__fail(err, st, path, off, msg);
}

/* Reads the field at *pos (absolute offset, below end) of message m whose
 * path is prefix. */
static sw_status next_field(const uint8_t *buf, size_t *pos, size_t end,
			    const mdesc *m, const char *prefix, field *x,
			    sw_error *err)
{
	char path[SW_ERROR_PATH_MAX], msg[SW_ERROR_MSG_MAX];
	uint64_t tag, n;
	size_t used, p = *pos;
	sw_status st;
	txt t;

	t_init(&t, msg, sizeof(msg));
	x->tag_off = p;
	st = sw__pb_varint_get(buf + p, end - p, &tag, &used);
	if (st != SW_OK) {
		t_s(t_s(t_s(&t, "expected a field tag, found "),
			st == SW_ETRUNC ? "the end of the "
					: "a varint over 64 bits in the "),
		    m->name);
		return sw__fail(err, st, prefix, p, msg);
	}
	if (tag > UINT32_MAX || tag >> 3 == 0) {
		t_u(t_s(&t, "expected a field tag of at most 32 bits with a "
			"field number of at least 1, found "), tag);
		return sw__fail(err, SW_EWIRE, prefix, p, msg);
	}
	p += used;
	x->num = (uint32_t)(tag >> 3);
	x->wt = (unsigned)(tag & 7);
	if (x->num > m->n) {
		t_init(&t, path, sizeof(path));
		if (prefix[0] != '\0')
			t_s(t_s(&t, prefix), ".");
		t_u(t_s(&t, "#"), x->num);
		t_init(&t, msg, sizeof(msg));
		t_s(t_s(t_s(t_u(t_s(t_u(t_s(t_s(t_s(&t, "expected a field "
						      "number of "), m->name),
					      " (1-"), m->n),
				  "), found "), x->num), " ("),
			sw__pb_wt_name(x->wt)), ")");
		return sw__fail(err, SW_EUNKNOWN, path, x->tag_off, msg);
	}
	x->f = &m->f[x->num - 1];
	if (x->wt != x->f->wt) {
		t_s(t_s(t_u(t_s(t_s(t_s(t_u(t_s(&t, "expected wire type "),
					    x->f->wt), " ("),
				    sw__pb_wt_name(x->f->wt)), "), found "),
			    x->wt), " ("), sw__pb_wt_name(x->wt));
		t_s(&t, ")");
		return fail_field(err, SW_EWIRE, prefix, x, x->tag_off, msg);
	}
	x->val_off = p;
	x->len = 0;
	st = sw__pb_varint_get(buf + p, end - p, x->wt == SW__PB_WT_VARINT
			       ? &x->v : &n, &used);
	if (st != SW_OK)
		return fail_field(err, st, prefix, x, x->tag_off,
				  st == SW_ETRUNC
				  ? (x->wt == SW__PB_WT_VARINT
				     ? "expected a varint value, found the "
				       "end of the input"
				     : "expected a length, found the end of "
				       "the input")
				  : "expected a varint of at most 10 bytes "
				    "and 64 bits, found more");
	p += used;
	if (x->wt == SW__PB_WT_LEN) {
		if (n > end - p) {
			t_u(t_s(t_u(t_s(&t, "expected "), n),
				" bytes, found "), end - p);
			t_s(&t, " before the end");
			return fail_field(err, SW_ETRUNC, prefix, x,
					  x->tag_off, msg);
		}
		x->val_off = p;
		x->len = (size_t)n;
		p += (size_t)n;
	}
	*pos = p;
	return SW_OK;
}

/* Fails if field x was already seen (*seen_off != (size_t)-1), naming
 * the first one (first_name); else records its offset. */
static sw_status once(const field *x, const char *prefix, size_t *seen_off,
		      const char *first_name, sw_error *err)
{
	char msg[SW_ERROR_MSG_MAX];
	txt t;

	if (*seen_off == (size_t)-1) {
		*seen_off = x->tag_off;
		return SW_OK;
	}
	t_init(&t, msg, sizeof(msg));
	t_s(t_u(t_s(t_s(t_s(&t, "expected one value, found a second one "
			    "(first as "), first_name), " at offset "),
		*seen_off), ")");
	return fail_field(err, SW_EDUP, prefix, x, x->tag_off, msg);
}

/* Checks a UTF-8 string field. */
static sw_status check_utf8(const uint8_t *buf, const field *x,
			    const char *prefix, sw_error *err)
{
	char msg[SW_ERROR_MSG_MAX];
	size_t bad;
	txt t;

	bad = sw__utf8_check((const char *)buf + x->val_off, x->len);
	if (bad == x->len)
		return SW_OK;
	t_init(&t, msg, sizeof(msg));
	t_u(t_s(t_x(t_s(&t, "expected UTF-8 text, found byte 0x"),
		    buf[x->val_off + bad]), " at string offset "), bad);
	return fail_field(err, SW_EUTF8, prefix, x, x->val_off + bad, msg);
}

/* Checks that a varint fits in a uint32. */
static sw_status check_u32(const field *x, const char *prefix, sw_error *err)
{
	char msg[SW_ERROR_MSG_MAX];
	txt t;

	if (x->v <= UINT32_MAX)
		return SW_OK;
	t_init(&t, msg, sizeof(msg));
	t_u(t_s(&t, "expected a uint32 (at most 4294967295), found "), x->v);
	return fail_field(err, SW_ERANGE, prefix, x, x->tag_off, msg);
}

/* Fails with SW_EMISSING about field name of the message at prefix. */
static sw_status missing(const char *prefix, const char *name,
			 const char *msg, size_t off, sw_error *err)
{
	char path[SW_ERROR_PATH_MAX];

	make_path(path, sizeof(path), prefix, name);
	return sw__fail(err, SW_EMISSING, path, off, msg);
}

/* ==== Decoding: Envelope and Batch ==== */

/* Decodes the Envelope in buf[start..end) into env. In a batch, prev is
 * the item before (NULL for the first and for a lone envelope): an item
 * without a session id takes prev's, one without seq takes prev's + 1. */
static sw_status envelope_read(const uint8_t *buf, size_t start, size_t end,
			       const char *prefix, const sw_envelope *prev,
			       sw_envelope *env, sw_error *err)
{
	size_t pos = start, sid_off = (size_t)-1, seq_off = (size_t)-1,
	       upd_off = (size_t)-1;
	const char *sid_name = "";
	char msg[SW_ERROR_MSG_MAX];
	sw_status st;
	field x;
	txt t;

	memset(env, 0, sizeof(*env));
	while (pos < end) {
		st = next_field(buf, &pos, end, &envelope_msg, prefix, &x, err);
		if (st != SW_OK)
			return st;
		switch (x.num) {
		case 1:
		case 2:
		case 3:
			st = once(&x, prefix, &sid_off, sid_name, err);
			if (st != SW_OK)
				return st;
			sid_name = x.f->name;
			if (x.num == 2) {
				char path[SW_ERROR_PATH_MAX];

				make_path(path, sizeof(path), prefix,
					  x.f->name);
				st = sw__check_text_id((const char *)buf +
						       x.val_off, x.len, path,
						       x.val_off, err);
				if (st != SW_OK)
					return st;
				env->session_id.kind = SW_ID_TEXT;
				env->session_id.text.ptr =
					(const char *)buf + x.val_off;
				env->session_id.text.len = x.len;
				break;
			}
			if (x.len != 16) {
				t_init(&t, msg, sizeof(msg));
				t_u(t_s(t_s(t_s(&t, "expected 16 "),
					    x.num == 1 ? "ULID" : "UUID"),
					" bytes, found "), x.len);
				return fail_field(err, SW_EVALUE, prefix, &x,
						  x.tag_off, msg);
			}
			env->session_id.kind = x.num == 1 ? SW_ID_ULID
							  : SW_ID_UUID;
			memcpy(env->session_id.raw, buf + x.val_off, 16);
			break;
		case 4:
			st = once(&x, prefix, &seq_off, "seq", err);
			if (st != SW_OK)
				return st;
			env->has_seq = true;
			env->seq = x.v;
			break;
		default: /* 5 */
			st = once(&x, prefix, &upd_off, "update", err);
			if (st != SW_OK)
				return st;
			env->has_update = true;
			env->update = buf + x.val_off;
			env->update_len = x.len;
			break;
		}
	}
	if (sid_off == (size_t)-1 && prev != NULL) {
		env->session_id = prev->session_id;
		sid_off = start;
	}
	if (seq_off == (size_t)-1 && prev != NULL && prev->seq < UINT64_MAX) {
		env->has_seq = true;
		env->seq = prev->seq + 1;
		seq_off = start;
	}
	if (sid_off == (size_t)-1)
		return missing(prefix, "session_id", "expected a session id "
			       "(session_id_ulid, session_id_text or "
			       "session_id_uuid), found none", start, err);
	if (seq_off == (size_t)-1)
		return missing(prefix, "seq", "expected a sequence number "
			       "(seq), found none", start, err);
	if (upd_off == (size_t)-1)
		return missing(prefix, "update", "expected an update "
			       "(a Session message), found none", start, err);
	return SW_OK;
}

/* Decodes one Envelope: session id, seq and update all required. */
sw_status sw_envelope_decode(const uint8_t *buf, size_t len,
			     sw_envelope *env, sw_error *err)
{
	if (env == NULL || (buf == NULL && len != 0))
		return sw__fail(err, SW_EINVAL, "", (size_t)-1,
				"expected input bytes and an envelope");
	return envelope_read(buf, 0, len, "", NULL, env, err);
}

/* Reads one item of a repeated message field: buf[start..end) into slot i. */
typedef sw_status (*item_fn)(const uint8_t *buf, size_t start, size_t end,
			     const char *prefix, size_t i, void *ctx,
			     sw_error *err);

/* Walks the top-level repeated field of message m (path name[i]), at most
 * cap items, handing each to read; *n is the count decoded. */
static sw_status repeated_read(const uint8_t *buf, size_t len,
			       const mdesc *m, const char *name, size_t cap,
			       size_t *n, item_fn read, void *ctx,
			       sw_error *err)
{
	char prefix[SW_ERROR_PATH_MAX], msg[SW_ERROR_MSG_MAX];
	size_t pos = 0, i = 0;
	sw_status st;
	field x;
	txt t;

	while (pos < len) {
		st = next_field(buf, &pos, len, m, "", &x, err);
		if (st != SW_OK)
			return st;
		make_item_path(prefix, sizeof(prefix), "", name, i);
		if (i >= cap) {
			t_init(&t, msg, sizeof(msg));
			t_s(t_s(t_s(t_u(t_s(&t, "expected at most "), cap),
				    " "), name), ", found more");
			return sw__fail(err, SW_ETOOBIG, prefix, x.tag_off,
					msg);
		}
		st = read(buf, x.val_off, x.val_off + x.len, prefix, i, ctx,
			  err);
		if (st != SW_OK)
			return st;
		i++;
	}
	*n = i;
	return SW_OK;
}

/* item_fn for Batch.items: ctx is the sw_envelope array. */
static sw_status batch_item(const uint8_t *buf, size_t start, size_t end,
			    const char *prefix, size_t i, void *ctx,
			    sw_error *err)
{
	sw_envelope *items = ctx;

	return envelope_read(buf, start, end, prefix,
			     i ? &items[i - 1] : NULL, &items[i], err);
}

/* Decodes a Batch into items[0..*n), each checked as an Envelope. */
sw_status sw_batch_decode(const uint8_t *buf, size_t len, sw_envelope *items,
			  size_t cap, size_t *n, sw_error *err)
{
	if (n != NULL)
		*n = 0;
	if (n == NULL || (items == NULL && cap != 0) ||
	    (buf == NULL && len != 0))
		return sw__fail(err, SW_EINVAL, "", (size_t)-1,
				"expected input bytes, an item array (or "
				"NULL with cap 0) and a count pointer");
	return repeated_read(buf, len, &batch_msg, "items", cap, n,
			     batch_item, items, err);
}

/* ==== Decoding: Ack and Error ==== */

/* Decodes the Result in buf[start..end) into r; need_seq: seq is
 * required. */
static sw_status result_read_opt(const uint8_t *buf, size_t start,
				 size_t end, const char *prefix, sw_result *r,
				 bool need_seq, sw_error *err)
{
	size_t pos = start, off[4] = { (size_t)-1, (size_t)-1, (size_t)-1,
				       (size_t)-1 };
	sw_status st;
	field x;

	memset(r, 0, sizeof(*r));
	r->message.ptr = "";
	while (pos < end) {
		st = next_field(buf, &pos, end, &result_msg, prefix, &x, err);
		if (st == SW_OK)
			st = once(&x, prefix, &off[x.num - 1], x.f->name, err);
		if (st == SW_OK && (x.num == 2 || x.num == 3))
			st = check_u32(&x, prefix, err);
		if (st == SW_OK && x.num == 4)
			st = check_utf8(buf, &x, prefix, err);
		if (st != SW_OK)
			return st;
		switch (x.num) {
		case 1:
			r->seq = x.v;
			break;
		case 2:
			r->status = (uint32_t)x.v;
			break;
		case 3:
			r->has_retry_after = true;
			r->retry_after_ms = (uint32_t)x.v;
			break;
		default:
			r->message.ptr = (const char *)buf + x.val_off;
			r->message.len = x.len;
			break;
		}
	}
	if (off[0] == (size_t)-1 && need_seq)
		return missing(prefix, "seq", "expected the sequence number "
			       "of the envelope (seq), found none", start, err);
	return SW_OK;
}

static sw_status result_read(const uint8_t *buf, size_t start, size_t end,
			     const char *prefix, sw_result *r, sw_error *err)
{
	return result_read_opt(buf, start, end, prefix, r, true, err);
}

/* Decodes one Result on its own; seq optional (0 when absent). */
sw_status sw_result_decode(const uint8_t *buf, size_t len, sw_result *r,
			   sw_error *err)
{
	if (r == NULL || (buf == NULL && len != 0))
		return sw__fail(err, SW_EINVAL, "", (size_t)-1,
				"expected input bytes and a result");
	return result_read_opt(buf, 0, len, "", r, false, err);
}

/* item_fn for Ack.results: ctx is the sw_result array. */
static sw_status ack_item(const uint8_t *buf, size_t start, size_t end,
			  const char *prefix, size_t i, void *ctx,
			  sw_error *err)
{
	sw_result *results = ctx;

	return result_read(buf, start, end, prefix, &results[i], err);
}

/* Decodes an Ack; seq is required in each Result, status absent is 0,
 * message absent is "" (messages borrow buf). */
sw_status sw_ack_decode(const uint8_t *buf, size_t len, sw_result *results,
			size_t cap, size_t *n, sw_error *err)
{
	if (n != NULL)
		*n = 0;
	if (n == NULL || (results == NULL && cap != 0) ||
	    (buf == NULL && len != 0))
		return sw__fail(err, SW_EINVAL, "", (size_t)-1,
				"expected input bytes, a result array (or "
				"NULL with cap 0) and a count pointer");
	return repeated_read(buf, len, &ack_msg, "results", cap, n,
			     ack_item, results, err);
}

/* Decodes an Error; every field optional (absent strings are ""). */
sw_status sw_error_msg_decode(const uint8_t *buf, size_t len, sw_error_msg *e,
			      sw_error *err)
{
	size_t pos = 0, off[4] = { (size_t)-1, (size_t)-1, (size_t)-1,
				   (size_t)-1 };
	sw_str *s;
	sw_status st;
	field x;

	if (e == NULL || (buf == NULL && len != 0))
		return sw__fail(err, SW_EINVAL, "", (size_t)-1,
				"expected input bytes and an error message");
	memset(e, 0, sizeof(*e));
	e->code.ptr = e->message.ptr = e->field.ptr = "";
	while (pos < len) {
		st = next_field(buf, &pos, len, &error_msg, "", &x, err);
		if (st == SW_OK)
			st = once(&x, "", &off[x.num - 1], x.f->name, err);
		if (st == SW_OK)
			st = x.num == 1 ? check_u32(&x, "", err)
					: check_utf8(buf, &x, "", err);
		if (st != SW_OK)
			return st;
		if (x.num == 1) {
			e->status = (uint32_t)x.v;
			continue;
		}
		s = x.num == 2 ? &e->code : x.num == 3 ? &e->message
						       : &e->field;
		s->ptr = (const char *)buf + x.val_off;
		s->len = x.len;
	}
	return SW_OK;
}
