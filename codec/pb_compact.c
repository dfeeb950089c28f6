/* pb_compact.c - the Session field table and the choice of number forms
 * (device-safe: no heap, no stdio). */
#include <math.h>
#include <string.h>

#include "pb_wire.h"

/* ==== The field table (names and numbers as in sessionwire.proto) ==== */

#define F(num, form, slot, rep, name)                                         \
	{ num, SW__PB_##form, slot, rep, name }

static const sw__pb_field session_fields[] = {
	F(1, ULID, 0, 0, "id_ulid"),
	F(2, ULID, 1, 0, "external_id_ulid"),
	F(3, TEXT, 1, 0, "external_id_text"),
	F(4, INT, 2, 0, "duration_int"),
	F(5, ULID, 3, 1, "contact_ids_ulid"),
	F(6, MSG, 4, 0, "billing"),
	F(7, MSG, 5, 0, "usage"),
	F(8, INT, 6, 0, "traces_count_int"),
	F(9, TEXT, 7, 1, "tags"),
	F(10, ULID, 8, 0, "workspace_id_ulid"),
	F(11, ULID, 9, 0, "project_id_ulid"),
	F(12, MS, 10, 0, "started_at"),
	F(13, MS, 11, 0, "updated_at_ms"),
	F(14, DELTA, 11, 0, "updated_at_delta"),
	F(15, FLAGS, SW__PB_SLOT_FLAGS, 0, "flags"),
	F(16, TEXT, 0, 0, "id_text"),
	F(17, UUID, 0, 0, "id_uuid"),
	F(18, UUID, 1, 0, "external_id_uuid"),
	F(19, DOUBLE, 2, 0, "duration_double"),
	F(20, DEC, 2, 0, "duration_dec"),
	F(21, TEXT, 3, 1, "contact_ids_text"),
	F(22, UUID, 3, 1, "contact_ids_uuid"),
	F(23, DOUBLE, 6, 0, "traces_count_double"),
	F(24, DEC, 6, 0, "traces_count_dec"),
	F(25, TEXT, 8, 0, "workspace_id_text"),
	F(26, UUID, 8, 0, "workspace_id_uuid"),
	F(27, TEXT, 9, 0, "project_id_text"),
	F(28, UUID, 9, 0, "project_id_uuid"),
};

static const sw__pb_field billing_fields[] = {
	F(1, INT, SW_IN, 0, "input_cost_int"),
	F(2, DEC, SW_IN, 0, "input_cost_dec"),
	F(3, DOUBLE, SW_IN, 0, "input_cost_double"),
	F(4, INT, SW_OUT, 0, "output_cost_int"),
	F(5, DEC, SW_OUT, 0, "output_cost_dec"),
	F(6, DOUBLE, SW_OUT, 0, "output_cost_double"),
	F(7, INT, SW_TOTAL, 0, "total_cost_int"),
	F(8, DEC, SW_TOTAL, 0, "total_cost_dec"),
	F(9, DOUBLE, SW_TOTAL, 0, "total_cost_double"),
};

static const sw__pb_field usage_fields[] = {
	F(1, INT, SW_IN, 0, "prompt_tokens_int"),
	F(2, DEC, SW_IN, 0, "prompt_tokens_dec"),
	F(3, DOUBLE, SW_IN, 0, "prompt_tokens_double"),
	F(4, INT, SW_OUT, 0, "completion_tokens_int"),
	F(5, DEC, SW_OUT, 0, "completion_tokens_dec"),
	F(6, DOUBLE, SW_OUT, 0, "completion_tokens_double"),
	F(7, INT, SW_TOTAL, 0, "total_tokens_int"),
	F(8, DEC, SW_TOTAL, 0, "total_tokens_dec"),
	F(9, DOUBLE, SW_TOTAL, 0, "total_tokens_double"),
};

#undef F

const sw__pb_msg sw__pb_session = {
	"Session", session_fields,
	sizeof(session_fields) / sizeof(session_fields[0])
};
const sw__pb_msg sw__pb_billing = {
	"Billing", billing_fields,
	sizeof(billing_fields) / sizeof(billing_fields[0])
};
const sw__pb_msg sw__pb_usage = {
	"Usage", usage_fields, sizeof(usage_fields) / sizeof(usage_fields[0])
};

/* The field numbers by [slot][form] (0: none), the same as a search of the
 * tables above (the encoder asks for one per value). */
static const uint8_t session_nums[13][SW__PB_MSG + 1] = {
	[0] = { [SW__PB_ULID] = 1, [SW__PB_UUID] = 17, [SW__PB_TEXT] = 16 },
	[1] = { [SW__PB_ULID] = 2, [SW__PB_UUID] = 18, [SW__PB_TEXT] = 3 },
	[2] = { [SW__PB_INT] = 4, [SW__PB_DEC] = 20, [SW__PB_DOUBLE] = 19 },
	[3] = { [SW__PB_ULID] = 5, [SW__PB_UUID] = 22, [SW__PB_TEXT] = 21 },
	[4] = { [SW__PB_MSG] = 6 },
	[5] = { [SW__PB_MSG] = 7 },
	[6] = { [SW__PB_INT] = 8, [SW__PB_DEC] = 24, [SW__PB_DOUBLE] = 23 },
	[7] = { [SW__PB_TEXT] = 9 },
	[8] = { [SW__PB_ULID] = 10, [SW__PB_UUID] = 26, [SW__PB_TEXT] = 25 },
	[9] = { [SW__PB_ULID] = 11, [SW__PB_UUID] = 28, [SW__PB_TEXT] = 27 },
	[10] = { [SW__PB_MS] = 12 },
	[11] = { [SW__PB_MS] = 13, [SW__PB_DELTA] = 14 },
	[12] = { [SW__PB_FLAGS] = 15 },
};

static const uint8_t billing_nums[3][SW__PB_MSG + 1] = {
	[0] = { [SW__PB_INT] = 1, [SW__PB_DEC] = 2, [SW__PB_DOUBLE] = 3 },
	[1] = { [SW__PB_INT] = 4, [SW__PB_DEC] = 5, [SW__PB_DOUBLE] = 6 },
	[2] = { [SW__PB_INT] = 7, [SW__PB_DEC] = 8, [SW__PB_DOUBLE] = 9 },
};

static const uint8_t usage_nums[3][SW__PB_MSG + 1] = {
	[0] = { [SW__PB_INT] = 1, [SW__PB_DEC] = 2, [SW__PB_DOUBLE] = 3 },
	[1] = { [SW__PB_INT] = 4, [SW__PB_DEC] = 5, [SW__PB_DOUBLE] = 6 },
	[2] = { [SW__PB_INT] = 7, [SW__PB_DEC] = 8, [SW__PB_DOUBLE] = 9 },
};

unsigned sw__pb_field_num(const sw__pb_msg *m, unsigned slot, unsigned form)
{
	size_t i;

	if (form <= SW__PB_MSG) {
		if (m == &sw__pb_session && slot <= SW__PB_SLOT_FLAGS)
			return session_nums[slot][form];
		if (m == &sw__pb_billing && slot <= SW_TOTAL)
			return billing_nums[slot][form];
		if (m == &sw__pb_usage && slot <= SW_TOTAL)
			return usage_nums[slot][form];
	}

	for (i = 0; i < m->n_fields; i++)
		if (m->fields[i].slot == slot && m->fields[i].form == form)
			return m->fields[i].num;
	return 0;
}

const char *sw__pb_wt_name(unsigned wt)
{
	static const char *const names[] = { "varint", "fixed64", "bytes",
					     "group-start", "group-end",
					     "fixed32" };

	return wt < 6 ? names[wt] : "invalid";
}

/* ==== Numbers ==== */

/* 10^s, exact as doubles for s <= 22. */
static const double p10[23] = {
	1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
	1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22
};

/* The doubles nearest 10^-s. */
static const double n10[23] = {
	1e0,   1e-1,  1e-2,  1e-3,  1e-4,  1e-5,  1e-6,  1e-7,
	1e-8,  1e-9,  1e-10, 1e-11, 1e-12, 1e-13, 1e-14, 1e-15,
	1e-16, 1e-17, 1e-18, 1e-19, 1e-20, 1e-21, 1e-22
};

#define TWO53 9007199254740992.0

/* Bitwise equality: -0 differs from 0. */
static bool same_double(double a, double b)
{
	return memcmp(&a, &b, sizeof(a)) == 0;
}

/* The IEEE bits of x. */
static uint64_t double_bits(double x)
{
	uint64_t v;

	memcpy(&v, &x, sizeof(v));
	return v;
}

/* The value m, s, mode stand for. */
static double dec_eval(int64_t m, unsigned s, unsigned mode)
{
	return mode ? (double)m * n10[s] : (double)m / p10[s];
}

/* Finds the decimal code of x with the smallest s; false if none. */
static bool dec_find(double x, uint64_t *code)
{
	static const int delta[3] = { 0, -1, 1 };
	unsigned s, mode;
	int k;

	for (s = 1; s <= 22; s++) {
		double t = x * p10[s], a = fabs(t), f;
		int64_t r;

		if (!(a <= TWO53 + 2))
			return false; /* larger s only makes t larger */
		/* Skip s when t is far from every integer: a match m gives
		 * x = m / 10^s (1 + d1) or m * 10^-s (1 + d2)(1 + d3) and
		 * t = x * 10^s (1 + d4), |di| <= 2^-53, so |t - m| <=
		 * 3.4e-16 |t|. f (exact: a < 2^54, Sterbenz) is the
		 * distance of a to the integer below it. */
		f = a - (double)(int64_t)a;
		if ((f < 0.5 ? f : 1 - f) > a * 1e-15)
			continue;
		r = llround(t);
		for (k = 0; k < 3; k++) {
			int64_t m = r + delta[k];

			if (m > (int64_t)TWO53 || m < -(int64_t)TWO53)
				continue;
			for (mode = 0; mode < 2; mode++) {
				if (!same_double(dec_eval(m, s, mode), x))
					continue;
				*code = sw__pb_zigzag(m) << 6 | mode << 5 | s;
				return true;
			}
		}
	}
	return false;
}

void sw__pb_num_choose(double x, unsigned plain, sw__pb_num *out)
{
	uint64_t code;
	size_t n;

	out->form = SW__PB_DOUBLE;
	out->v = double_bits(x);
	out->size = 8;
	/* integral: every double from 2^52 up is; below, the truncation
	 * (exact in int64) must give x back (faster than floor) */
	if (!(plain & SW_PB_PLAIN_INT) && fabs(x) < 9223372036854775808.0 &&
	    (fabs(x) >= 4503599627370496.0 || (double)(int64_t)x == x) &&
	    !same_double(x, -0.0)) {
		uint64_t zz = sw__pb_zigzag((int64_t)x);

		n = sw__pb_varint_len(zz);
		if (n <= out->size) {
			out->form = SW__PB_INT;
			out->v = zz;
			out->size = n;
		}
	}
	/* an integer's decimal code (m = x * 10^s, shifted by 6) is never
	 * shorter than its own varint: search only when int did not win */
	if (!(plain & SW_PB_PLAIN_DEC) && out->form != SW__PB_INT &&
	    dec_find(x, &code)) {
		n = sw__pb_varint_len(code);
		if (n < out->size || (n == out->size && out->form == SW__PB_DOUBLE)) {
			out->form = SW__PB_DEC;
			out->v = code;
			out->size = n;
		}
	}
}

bool sw__pb_int_value(uint64_t zz, double *x)
{
	int64_t v = sw__pb_unzigzag(zz);
	double d;

	if (v == INT64_MIN)
		return false;
	d = (double)v;
	/* |d| < 2^63 here, so the conversion back is defined */
	if (fabs(d) >= 9223372036854775808.0 || (int64_t)d != v)
		return false;
	*x = d;
	return true;
}

bool sw__pb_dec_value(uint64_t code, double *x)
{
	unsigned s = (unsigned)(code & 31), mode = (unsigned)(code >> 5 & 1);
	int64_t m = sw__pb_unzigzag(code >> 6);

	if (s < 1 || s > 22 || m > (int64_t)TWO53 || m < -(int64_t)TWO53)
		return false;
	*x = dec_eval(m, s, mode);
	return true;
}
