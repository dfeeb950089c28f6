/* envelope.c - fuzz target: what devices send around an update (Batch,
 * Envelope) and what the gateway answers (Ack, Error), decoded from the
 * same untrusted bytes.
 *
 * For each of sw_batch_decode, sw_envelope_decode, sw_ack_decode and
 * sw_error_msg_decode:
 *  - a failure sets the error's code to the status (and the batch and ack
 *    counts to 0);
 *  - a success re-encodes, the encoding decodes to the same values, and
 *    encoding those gives the same bytes again (a fixed point);
 *  - every borrowed pointer lies inside the input;
 *  - every decoded value equals what a plain wire walker (no semantics:
 *    tags, varints, lengths) reads at the same place: no value is
 *    truncated or mixed up on the way (a uint32 status of 2^32 must not
 *    become 0);
 *  - every decoded session id formats to text that sw_session_path
 *    accepts (the gateway can always address it), and every update is
 *    handed to sw_pb_decode as the gateway does.
 */
#include "fuzz.h"

#define ENV_MAX_ITEMS 64

/* Whether s[0..n) lies inside data[0..size) (or is empty). */
static bool env_inside(const void *s, size_t n, const uint8_t *data,
		       size_t size)
{
	uintptr_t p = (uintptr_t)s, d = (uintptr_t)data;

	return n == 0 || (p >= d && p + n <= d + size);
}

/* Whether two envelopes carry the same values. */
static bool env_equal(const sw_envelope *a, const sw_envelope *b)
{
	if (a->session_id.kind != b->session_id.kind ||
	    a->has_seq != b->has_seq || a->seq != b->seq ||
	    a->has_update != b->has_update ||
	    !sw_fuzz_same(a->update, a->update_len, b->update, b->update_len))
		return false;
	if (a->session_id.kind == SW_ID_TEXT)
		return sw_fuzz_same(a->session_id.text.ptr,
				    a->session_id.text.len,
				    b->session_id.text.ptr,
				    b->session_id.text.len);
	return !memcmp(a->session_id.raw, b->session_id.raw, 16);
}

/* Encodes one envelope into a new buffer; NULL after a failed check. */
static uint8_t *env_encode(const sw_envelope *env, size_t *len)
{
	size_t need = 0, got = 0;
	uint8_t *buf;
	sw_error e;
	sw_status st;

	sw_error_clear(&e);
	st = sw_envelope_encode(&env->session_id, env->has_seq, env->seq,
				env->update, env->update_len, NULL, 0, &need,
				&e);
	if (!SW_FUZZ_CHECK(st == SW_OK)) {
		fprintf(stderr, "envelope size: %s %s: %s\n", sw_errname(st),
			e.path, e.message);
		return NULL;
	}
	buf = sw_fuzz_malloc(need);
	st = sw_envelope_encode(&env->session_id, env->has_seq, env->seq,
				env->update, env->update_len, buf, need, &got,
				&e);
	if (!SW_FUZZ_CHECK(st == SW_OK && got == need)) {
		free(buf);
		return NULL;
	}
	*len = need;
	return buf;
}

/* What the gateway does with a decoded envelope: address the session
 * and decode the update. */
static void env_use(const sw_envelope *env, const uint8_t *data, size_t size)
{
	char id[1024];
	sw_update *u = NULL;
	sw_buf path;
	size_t n;

	SW_FUZZ_CHECK(env->has_seq && env->has_update);
	SW_FUZZ_CHECK(env_inside(env->update, env->update_len, data, size));
	if (env->session_id.kind == SW_ID_TEXT)
		SW_FUZZ_CHECK(env_inside(env->session_id.text.ptr,
					 env->session_id.text.len, data,
					 size));
	n = sw_session_id_format(&env->session_id, id, sizeof(id));
	if (n != 0 || env->session_id.text.len < sizeof(id)) {
		sw_buf_init(&path, 0, NULL);
		SW_FUZZ_CHECK(n > 0 && sw_session_path(id, n, &path, NULL) ==
			      SW_OK);
		sw_buf_free(&path);
	}
	if (sw_pb_decode(env->update, env->update_len, NULL, &u, NULL) ==
	    SW_OK)
		SW_FUZZ_CHECK(u != NULL);
	sw_update_free(u);
}

/* ==== A plain wire walker (the reference) ==== */

/* One field as the walker sees it. */
typedef struct ew_field {
	uint32_t num;
	unsigned wt;
	uint64_t v;         /* varint value */
	const uint8_t *p;   /* bytes of a length-delimited field */
	size_t len;
} ew_field;

/* Reads a varint at *pos (at most 10 bytes, 64 bits). */
static bool ew_varint(const uint8_t *b, size_t end, size_t *pos, uint64_t *v)
{
	unsigned shift = 0;

	*v = 0;
	while (*pos < end && shift < 70) {
		uint8_t c = b[(*pos)++];

		if (shift == 63 && (c & 0x7e))
			return false;
		*v |= (uint64_t)(c & 0x7f) << shift;
		if (!(c & 0x80))
			return true;
		shift += 7;
	}
	return false;
}

/* Reads the field at *pos; only wire types 0 and 2 (all our messages
 * use). */
static bool ew_next(const uint8_t *b, size_t end, size_t *pos, ew_field *f)
{
	uint64_t tag, n;

	if (!ew_varint(b, end, pos, &tag) || tag > UINT32_MAX)
		return false;
	f->num = (uint32_t)(tag >> 3);
	f->wt = (unsigned)(tag & 7);
	f->len = 0;
	f->p = NULL;
	if (f->wt == 0)
		return ew_varint(b, end, pos, &f->v);
	if (f->wt != 2 || !ew_varint(b, end, pos, &n) || n > end - *pos)
		return false;
	f->p = b + *pos;
	f->len = (size_t)n;
	*pos += (size_t)n;
	return true;
}

/* Whether a decoded envelope holds what the walker reads in b[0..end). */
static bool ew_envelope(const uint8_t *b, size_t end, const sw_envelope *env)
{
	size_t pos = 0;
	ew_field f;

	while (pos < end) {
		if (!ew_next(b, end, &pos, &f))
			return false;
		switch (f.num) {
		case 1:
		case 3:
			if (env->session_id.kind != (f.num == 1 ? SW_ID_ULID
							       : SW_ID_UUID) ||
			    f.len != 16 || memcmp(env->session_id.raw, f.p, 16))
				return false;
			break;
		case 2:
			if (env->session_id.kind != SW_ID_TEXT ||
			    env->session_id.text.ptr != (const char *)f.p ||
			    env->session_id.text.len != f.len)
				return false;
			break;
		case 4:
			if (f.wt != 0 || !env->has_seq || env->seq != f.v)
				return false;
			break;
		case 5:
			if (!env->has_update || env->update != f.p ||
			    env->update_len != f.len)
				return false;
			break;
		default:
			return false;
		}
	}
	return true;
}

/* Whether a decoded result holds what the walker reads. */
static bool ew_result(const uint8_t *b, size_t end, const sw_result *r)
{
	size_t pos = 0;
	ew_field f;

	while (pos < end) {
		if (!ew_next(b, end, &pos, &f))
			return false;
		if ((f.num == 1 && r->seq != f.v) ||
		    (f.num == 2 && (uint64_t)r->status != f.v) ||
		    (f.num == 3 && (!r->has_retry_after ||
				    (uint64_t)r->retry_after_ms != f.v)) ||
		    (f.num == 4 && (r->message.ptr != (const char *)f.p ||
				    r->message.len != f.len)) ||
		    f.num < 1 || f.num > 4)
			return false;
	}
	return true;
}

/* Whether the items (envelopes) or results of a Batch or Ack are what
 * the walker reads, n of them. */
static bool ew_list(const uint8_t *b, size_t size, const sw_envelope *items,
		    const sw_result *res, size_t n)
{
	size_t pos = 0, i = 0;
	ew_field f;

	while (pos < size) {
		if (!ew_next(b, size, &pos, &f) || f.num != 1 || f.wt != 2 ||
		    i >= n)
			return false;
		if (items != NULL && !ew_envelope(f.p, f.len, &items[i]))
			return false;
		if (res != NULL && !ew_result(f.p, f.len, &res[i]))
			return false;
		i++;
	}
	return i == n;
}

/* Whether a decoded Error holds what the walker reads. */
static bool ew_error(const uint8_t *b, size_t size, const sw_error_msg *m)
{
	size_t pos = 0;
	const sw_str *s;
	ew_field f;

	while (pos < size) {
		if (!ew_next(b, size, &pos, &f))
			return false;
		if (f.num == 1) {
			if (f.wt != 0 || (uint64_t)m->status != f.v)
				return false;
			continue;
		}
		if (f.num < 2 || f.num > 4 || f.wt != 2)
			return false;
		s = f.num == 2 ? &m->code : f.num == 3 ? &m->message : &m->field;
		if (s->ptr != (const char *)f.p || s->len != f.len)
			return false;
	}
	return true;
}

/* ==== Envelope ==== */

static void env_envelope(const uint8_t *data, size_t size)
{
	uint8_t *enc1 = NULL, *enc2 = NULL;
	size_t len1 = 0, len2 = 0;
	sw_envelope env, back;
	sw_error e;
	sw_status st;

	sw_error_clear(&e);
	st = sw_envelope_decode(data, size, &env, &e);
	if (st != SW_OK) {
		SW_FUZZ_CHECK(e.code == st);
		return;
	}
	env_use(&env, data, size);
	SW_FUZZ_CHECK(ew_envelope(data, size, &env));
	enc1 = env_encode(&env, &len1);
	if (enc1 == NULL)
		return;
	st = sw_envelope_decode(enc1, len1, &back, &e);
	if (SW_FUZZ_CHECK(st == SW_OK) &&
	    SW_FUZZ_CHECK(env_equal(&env, &back))) {
		enc2 = env_encode(&back, &len2);
		if (enc2 != NULL)
			SW_FUZZ_CHECK(sw_fuzz_same(enc1, len1, enc2, len2));
	}
	free(enc1);
	free(enc2);
}

/* ==== Batch ==== */

/* Builds a batch of items[0..n) into a new buffer; NULL after a failed
 * check. */
static uint8_t *env_batch_encode(const sw_envelope *items, size_t n,
				 size_t *len)
{
	uint8_t **envs = sw_fuzz_malloc(n * sizeof(*envs));
	size_t *lens = sw_fuzz_malloc(n * sizeof(*lens));
	size_t i, need = 0, got = 0;
	uint8_t *buf = NULL;
	bool ok = true;

	for (i = 0; i < n; i++) {
		envs[i] = env_encode(&items[i], &lens[i]);
		ok = ok && envs[i] != NULL;
	}
	for (i = 0; ok && i < n; i++)
		ok = SW_FUZZ_CHECK(sw_batch_append(envs[i], lens[i], NULL, 0,
						   &need, NULL) == SW_OK);
	if (ok) {
		buf = sw_fuzz_malloc(need);
		for (i = 0; ok && i < n; i++)
			ok = SW_FUZZ_CHECK(sw_batch_append(envs[i], lens[i],
							   buf, need, &got,
							   NULL) == SW_OK);
		if (ok && !SW_FUZZ_CHECK(got == need))
			ok = false;
		if (!ok) {
			free(buf);
			buf = NULL;
		}
	}
	for (i = 0; i < n; i++)
		free(envs[i]);
	free(envs);
	free(lens);
	*len = need;
	return buf;
}

static void env_batch(const uint8_t *data, size_t size)
{
	sw_envelope items[ENV_MAX_ITEMS], back[ENV_MAX_ITEMS];
	uint8_t *enc1 = NULL, *enc2 = NULL;
	size_t n = 99, m = 99, i, len1 = 0, len2 = 0;
	sw_error e;
	sw_status st;

	sw_error_clear(&e);
	st = sw_batch_decode(data, size, items, ENV_MAX_ITEMS, &n, &e);
	if (st != SW_OK) {
		SW_FUZZ_CHECK(e.code == st && n == 0);
		return;
	}
	if (!SW_FUZZ_CHECK(n <= ENV_MAX_ITEMS))
		return;
	for (i = 0; i < n; i++)
		env_use(&items[i], data, size);
	SW_FUZZ_CHECK(ew_list(data, size, items, NULL, n));
	enc1 = env_batch_encode(items, n, &len1);
	if (enc1 == NULL)
		return;
	st = sw_batch_decode(enc1, len1, back, ENV_MAX_ITEMS, &m, &e);
	if (!SW_FUZZ_CHECK(st == SW_OK && m == n))
		goto out;
	for (i = 0; i < n; i++)
		SW_FUZZ_CHECK(env_equal(&items[i], &back[i]));
	enc2 = env_batch_encode(back, m, &len2);
	SW_FUZZ_CHECK(sw_fuzz_same(enc1, len1, enc2, len2));
	if (n > 0) {
		/* one item fewer of room is a clean SW_ETOOBIG */
		st = sw_batch_decode(data, size, back, n - 1, &m, &e);
		SW_FUZZ_CHECK(st == SW_ETOOBIG && m == 0);
	}
out:
	free(enc1);
	free(enc2);
}

/* ==== Ack ==== */

/* Whether two results carry the same values. */
static bool env_result_equal(const sw_result *a, const sw_result *b)
{
	return a->seq == b->seq && a->status == b->status &&
	       a->has_retry_after == b->has_retry_after &&
	       (!a->has_retry_after || a->retry_after_ms == b->retry_after_ms) &&
	       sw_fuzz_same(a->message.ptr, a->message.len, b->message.ptr,
			    b->message.len);
}

/* Encodes results[0..n) into a new buffer; NULL after a failed check. */
static uint8_t *env_ack_encode(const sw_result *r, size_t n, size_t *len)
{
	size_t need = 0, got = 0;
	uint8_t *buf;
	sw_error e;
	sw_status st;

	sw_error_clear(&e);
	st = sw_ack_encode(r, n, NULL, 0, &need, &e);
	if (!SW_FUZZ_CHECK(st == SW_OK)) {
		fprintf(stderr, "ack size: %s %s: %s\n", sw_errname(st),
			e.path, e.message);
		return NULL;
	}
	buf = sw_fuzz_malloc(need);
	st = sw_ack_encode(r, n, buf, need, &got, &e);
	if (!SW_FUZZ_CHECK(st == SW_OK && got == need)) {
		free(buf);
		return NULL;
	}
	*len = need;
	return buf;
}

static void env_ack(const uint8_t *data, size_t size)
{
	sw_result res[ENV_MAX_ITEMS], back[ENV_MAX_ITEMS];
	uint8_t *enc1 = NULL, *enc2 = NULL;
	size_t n = 99, m = 99, i, len1 = 0, len2 = 0;
	sw_error e;
	sw_status st;

	sw_error_clear(&e);
	st = sw_ack_decode(data, size, res, ENV_MAX_ITEMS, &n, &e);
	if (st != SW_OK) {
		SW_FUZZ_CHECK(e.code == st && n == 0);
		return;
	}
	if (!SW_FUZZ_CHECK(n <= ENV_MAX_ITEMS))
		return;
	for (i = 0; i < n; i++)
		SW_FUZZ_CHECK(env_inside(res[i].message.ptr,
					 res[i].message.len, data, size));
	SW_FUZZ_CHECK(ew_list(data, size, NULL, res, n));
	enc1 = env_ack_encode(res, n, &len1);
	if (enc1 == NULL)
		return;
	st = sw_ack_decode(enc1, len1, back, ENV_MAX_ITEMS, &m, &e);
	if (SW_FUZZ_CHECK(st == SW_OK && m == n)) {
		for (i = 0; i < n; i++)
			SW_FUZZ_CHECK(env_result_equal(&res[i], &back[i]));
		enc2 = env_ack_encode(back, m, &len2);
		if (enc2 != NULL)
			SW_FUZZ_CHECK(sw_fuzz_same(enc1, len1, enc2, len2));
	}
	free(enc1);
	free(enc2);
}

/* ==== Error ==== */

/* Whether two error messages carry the same values. */
static bool env_error_equal(const sw_error_msg *a, const sw_error_msg *b)
{
	return a->status == b->status &&
	       sw_fuzz_same(a->code.ptr, a->code.len, b->code.ptr,
			    b->code.len) &&
	       sw_fuzz_same(a->message.ptr, a->message.len, b->message.ptr,
			    b->message.len) &&
	       sw_fuzz_same(a->field.ptr, a->field.len, b->field.ptr,
			    b->field.len);
}

/* Encodes an error message into a new buffer; NULL after a failed check. */
static uint8_t *env_error_encode(const sw_error_msg *m, size_t *len)
{
	size_t need = 0, got = 0;
	uint8_t *buf;
	sw_error e;
	sw_status st;

	sw_error_clear(&e);
	st = sw_error_msg_encode(m, NULL, 0, &need, &e);
	if (!SW_FUZZ_CHECK(st == SW_OK)) {
		fprintf(stderr, "error size: %s %s: %s\n", sw_errname(st),
			e.path, e.message);
		return NULL;
	}
	buf = sw_fuzz_malloc(need);
	st = sw_error_msg_encode(m, buf, need, &got, &e);
	if (!SW_FUZZ_CHECK(st == SW_OK && got == need)) {
		free(buf);
		return NULL;
	}
	*len = need;
	return buf;
}

static void env_error(const uint8_t *data, size_t size)
{
	uint8_t *enc1 = NULL, *enc2 = NULL;
	size_t len1 = 0, len2 = 0;
	sw_error_msg m, back;
	sw_error e;
	sw_status st;

	sw_error_clear(&e);
	st = sw_error_msg_decode(data, size, &m, &e);
	if (st != SW_OK) {
		SW_FUZZ_CHECK(e.code == st);
		return;
	}
	SW_FUZZ_CHECK(env_inside(m.code.ptr, m.code.len, data, size) &&
		      env_inside(m.message.ptr, m.message.len, data, size) &&
		      env_inside(m.field.ptr, m.field.len, data, size));
	SW_FUZZ_CHECK(ew_error(data, size, &m));
	enc1 = env_error_encode(&m, &len1);
	if (enc1 == NULL)
		return;
	st = sw_error_msg_decode(enc1, len1, &back, &e);
	if (SW_FUZZ_CHECK(st == SW_OK) &&
	    SW_FUZZ_CHECK(env_error_equal(&m, &back))) {
		enc2 = env_error_encode(&back, &len2);
		if (enc2 != NULL)
			SW_FUZZ_CHECK(sw_fuzz_same(enc1, len1, enc2, len2));
	}
	free(enc1);
	free(enc2);
}

int SW_FUZZ_ENTRY(envelope)(const uint8_t *data, size_t size)
{
	env_batch(data, size);
	env_envelope(data, size);
	env_ack(data, size);
	env_error(data, size);
	return 0;
}
