/* update.c - building, checking and comparing sw_update by hand.
 * Device-safe: no heap, no stdio. */
#include <math.h>
#include <string.h>

#include "sw_internal.h"

static const char *const wire_names[SW_FIELD_COUNT] = {
#define SW__WIRE(name, bit, wire, sdk) [bit] = wire,
	SW_FIELD_MAP(SW__WIRE)
#undef SW__WIRE
};

static const char *const sdk_names[SW_FIELD_COUNT] = {
#define SW__SDK(name, bit, wire, sdk) [bit] = sdk,
	SW_FIELD_MAP(SW__SDK)
#undef SW__SDK
};

const char *sw_field_wire_name(unsigned bit)
{
	return bit < SW_FIELD_COUNT ? wire_names[bit] : "?";
}

const char *sw_field_sdk_name(unsigned bit)
{
	return bit < SW_FIELD_COUNT ? sdk_names[bit] : "?";
}

void sw_update_init(sw_update *u)
{
	memset(u, 0, sizeof(*u));
}

/* ==== Setters ==== */

void sw_update_set_id(sw_update *u, const char *s, size_t len)
{
	u->id = (sw_str){ s, len };
	u->has |= SW_F_ID;
}

void sw_update_set_external_id(sw_update *u, const char *s, size_t len)
{
	u->external_id = (sw_str){ s, len };
	u->has |= SW_F_EXTERNAL_ID;
}

void sw_update_set_workspace_id(sw_update *u, const char *s, size_t len)
{
	u->workspace_id = (sw_str){ s, len };
	u->has |= SW_F_WORKSPACE_ID;
}

void sw_update_set_project_id(sw_update *u, const char *s, size_t len)
{
	u->project_id = (sw_str){ s, len };
	u->project_id_null = false;
	u->has |= SW_F_PROJECT_ID;
}

void sw_update_set_project_id_null(sw_update *u)
{
	u->project_id = (sw_str){ NULL, 0 };
	u->project_id_null = true;
	u->has |= SW_F_PROJECT_ID;
}

void sw_update_set_duration(sw_update *u, double ms)
{
	u->duration = ms;
	u->has |= SW_F_DURATION;
}

void sw_update_set_traces_count(sw_update *u, double n)
{
	u->traces_count = n;
	u->has |= SW_F_TRACES_COUNT;
}

void sw_update_set_billing(sw_update *u, double input_cost,
			   double output_cost, double total_cost)
{
	u->billing[SW_IN] = input_cost;
	u->billing[SW_OUT] = output_cost;
	u->billing[SW_TOTAL] = total_cost;
	u->has |= SW_F_BILLING;
}

void sw_update_set_usage(sw_update *u, double prompt_tokens,
			 double completion_tokens, double total_tokens)
{
	u->usage[SW_IN] = prompt_tokens;
	u->usage[SW_OUT] = completion_tokens;
	u->usage[SW_TOTAL] = total_tokens;
	u->has |= SW_F_USAGE;
}

void sw_update_set_contact_ids(sw_update *u, const sw_str *ids, size_t n)
{
	u->contact_ids = ids;
	u->n_contact_ids = n;
	u->has |= SW_F_CONTACT_IDS;
}

void sw_update_set_tags(sw_update *u, const sw_str *tags, size_t n)
{
	u->tags = tags;
	u->n_tags = n;
	u->has |= SW_F_TAGS;
}

void sw_update_set_started_at(sw_update *u, int64_t ms)
{
	u->started_at = ms;
	u->has |= SW_F_STARTED_AT;
}

void sw_update_set_updated_at(sw_update *u, int64_t ms)
{
	u->updated_at = ms;
	u->has |= SW_F_UPDATED_AT;
}

/* ==== Checking ==== */

static sw_status check_str(const sw_str *s, const sw_limits *l,
			   const char *path, sw_error *err)
{
	size_t bad;

	if (s->ptr == NULL && s->len != 0)
		return sw__fail(err, SW_EINVAL, path, (size_t)-1,
				"string has a length but no bytes");
	if (s->len > l->max_string)
		return sw__fail(err, SW_ETOOBIG, path, (size_t)-1,
				"string longer than the limit");
	bad = s->len ? sw__utf8_check_fast(s->ptr, s->len) : 0;
	if (bad != s->len)
		return sw__fail(err, SW_EUTF8, path, bad,
				"expected UTF-8 text, found an invalid byte");
	return SW_OK;
}

static sw_status check_list(const sw_str *items, size_t n, const sw_limits *l,
			    const char *path, sw_error *err)
{
	size_t i;
	sw_status st;

	if (n > l->max_items)
		return sw__fail(err, SW_ETOOBIG, path, (size_t)-1,
				"more items than the limit");
	if (n && items == NULL)
		return sw__fail(err, SW_EINVAL, path, (size_t)-1,
				"list has a count but no items");
	for (i = 0; i < n; i++) {
		st = check_str(&items[i], l, path, err);
		if (st != SW_OK)
			return st;
	}
	return SW_OK;
}

static sw_status check_num(double x, const char *path, sw_error *err)
{
	if (!isfinite(x))
		return sw__fail(err, SW_ERANGE, path, (size_t)-1,
				"expected a finite number, found NaN or infinity");
	return SW_OK;
}

static sw_status check_date(int64_t ms, const char *path, sw_error *err)
{
	if (ms < SW_DATE_MIN_MS || ms > SW_DATE_MAX_MS)
		return sw__fail(err, SW_EDATE, path, (size_t)-1,
				"date outside years 0000-9999");
	return SW_OK;
}

#define SW__REQUIRED_IN_SESSION                                               \
	(SW_F_ID | SW_F_EXTERNAL_ID | SW_F_DURATION | SW_F_CONTACT_IDS |      \
	 SW_F_BILLING | SW_F_USAGE | SW_F_TRACES_COUNT | SW_F_TAGS |           \
	 SW_F_WORKSPACE_ID)

sw_status sw_update_check(const sw_update *u, sw_kind kind,
			  const sw_limits *limits, sw_error *err)
{
	static const char *const billing_path[3] = {
		"billing.input_cost", "billing.output_cost", "billing.total_cost"
	};
	static const char *const usage_path[3] = {
		"usage.prompt_tokens", "usage.completion_tokens",
		"usage.total_tokens"
	};
	sw_limits l = sw__limits(limits);
	sw_status st = SW_OK;
	unsigned bit;
	int i;

	if (u->has >> SW_FIELD_COUNT)
		return sw__fail(err, SW_EINVAL, "", (size_t)-1,
				"unknown presence bits set");
	if (kind == SW_KIND_SESSION) {
		for (bit = 0; bit < SW_FIELD_COUNT; bit++)
			if ((SW__REQUIRED_IN_SESSION & (1u << bit)) &&
			    !(u->has & (1u << bit)))
				return sw__fail(err, SW_EMISSING,
						sw_field_wire_name(bit),
						(size_t)-1,
						"required in a session");
	}
	if (u->has & SW_F_ID)
		st = check_str(&u->id, &l, "_id", err);
	if (st == SW_OK && (u->has & SW_F_EXTERNAL_ID))
		st = check_str(&u->external_id, &l, "external_id", err);
	if (st == SW_OK && (u->has & SW_F_DURATION))
		st = check_num(u->duration, "duration", err);
	if (st == SW_OK && (u->has & SW_F_CONTACT_IDS))
		st = check_list(u->contact_ids, u->n_contact_ids, &l,
				"contact_ids", err);
	for (i = 0; st == SW_OK && (u->has & SW_F_BILLING) && i < 3; i++)
		st = check_num(u->billing[i], billing_path[i], err);
	for (i = 0; st == SW_OK && (u->has & SW_F_USAGE) && i < 3; i++)
		st = check_num(u->usage[i], usage_path[i], err);
	if (st == SW_OK && (u->has & SW_F_TRACES_COUNT))
		st = check_num(u->traces_count, "traces_count", err);
	if (st == SW_OK && (u->has & SW_F_TAGS))
		st = check_list(u->tags, u->n_tags, &l, "tags", err);
	if (st == SW_OK && (u->has & SW_F_WORKSPACE_ID))
		st = check_str(&u->workspace_id, &l, "workspace_id", err);
	if (st == SW_OK && (u->has & SW_F_PROJECT_ID) && !u->project_id_null)
		st = check_str(&u->project_id, &l, "project_id", err);
	if (st == SW_OK && (u->has & SW_F_STARTED_AT))
		st = check_date(u->started_at, "started_at", err);
	if (st == SW_OK && (u->has & SW_F_UPDATED_AT))
		st = check_date(u->updated_at, "updated_at", err);
	return st;
}

/* ==== Equality ==== */

static bool str_eq(const sw_str *a, const sw_str *b)
{
	return a->len == b->len && (a->len == 0 || memcmp(a->ptr, b->ptr, a->len) == 0);
}

static bool list_eq(const sw_str *a, size_t na, const sw_str *b, size_t nb)
{
	size_t i;

	if (na != nb)
		return false;
	for (i = 0; i < na; i++)
		if (!str_eq(&a[i], &b[i]))
			return false;
	return true;
}

static bool num_eq(double a, double b)
{
	return memcmp(&a, &b, sizeof(a)) == 0;
}

bool sw_update_equal(const sw_update *a, const sw_update *b)
{
	uint32_t h = a->has;
	int i;

	if (a->has != b->has)
		return false;
	if ((h & SW_F_ID) && !str_eq(&a->id, &b->id))
		return false;
	if ((h & SW_F_EXTERNAL_ID) && !str_eq(&a->external_id, &b->external_id))
		return false;
	if ((h & SW_F_WORKSPACE_ID) &&
	    !str_eq(&a->workspace_id, &b->workspace_id))
		return false;
	if (h & SW_F_PROJECT_ID) {
		if (a->project_id_null != b->project_id_null)
			return false;
		if (!a->project_id_null &&
		    !str_eq(&a->project_id, &b->project_id))
			return false;
	}
	if ((h & SW_F_DURATION) && !num_eq(a->duration, b->duration))
		return false;
	if ((h & SW_F_TRACES_COUNT) && !num_eq(a->traces_count, b->traces_count))
		return false;
	for (i = 0; i < 3; i++) {
		if ((h & SW_F_BILLING) && !num_eq(a->billing[i], b->billing[i]))
			return false;
		if ((h & SW_F_USAGE) && !num_eq(a->usage[i], b->usage[i]))
			return false;
	}
	if ((h & SW_F_CONTACT_IDS) &&
	    !list_eq(a->contact_ids, a->n_contact_ids, b->contact_ids,
		     b->n_contact_ids))
		return false;
	if ((h & SW_F_TAGS) && !list_eq(a->tags, a->n_tags, b->tags, b->n_tags))
		return false;
	if ((h & SW_F_STARTED_AT) && a->started_at != b->started_at)
		return false;
	if ((h & SW_F_UPDATED_AT) && a->updated_at != b->updated_at)
		return false;
	return true;
}
