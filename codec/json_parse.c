/* json_parse.c - the API's JSON body into an sw_update
 * (docs/wire-format.md 2.2).
 *
 * Three passes: the strict lexical scan (json_scan.c) over the raw input,
 * cJSON on the input (or on its sanitised copy), then a walk over the
 * cJSON tree that checks names, types and limits and sizes the result
 * block exactly, and a second walk that fills it.
 *
 * Paths in errors use the wire names ("billing.total_cost", "tags[3]")
 * whichever naming the input used; an unknown key is named as written.
 * Semantic errors carry no byte offset (cJSON keeps none).
 */
#include <math.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "sw_internal.h"

/* Field bits by name: B_ID = 0 ... B_UPDATED_AT = 11. */
enum {
#define SW__BIT(name, bit, wire, sdk) B_##name = bit,
	SW_FIELD_MAP(SW__BIT)
#undef SW__BIT
};

/* What the checking walk found, for the filling walk. */
typedef struct found {
	const cJSON *item[SW_FIELD_COUNT];    /* by field bit */
	const char *name[SW_FIELD_COUNT];     /* the key as written */
	const cJSON *inner[2][3];             /* billing, usage members */
	int64_t date[2];                      /* started_at, updated_at */
	size_t str_bytes, n_contacts, n_tags;
} found;

static const char *type_name(const cJSON *v)
{
	switch (v->type & 0xFF) {
	case cJSON_False:
	case cJSON_True:
		return "a boolean";
	case cJSON_NULL:
		return "null";
	case cJSON_Number:
		return "a number";
	case cJSON_String:
		return "a string";
	case cJSON_Array:
		return "an array";
	case cJSON_Object:
		return "an object";
	}
	return "an unknown value";
}

static sw_status wrong_type(sw_error *err, const char *path,
			    const char *expected, const cJSON *v)
{
	return sw_error_set(err, SW_ETYPE, path, (size_t)-1,
			    "expected %s, found %s", expected, type_name(v));
}

/* A string value within max_string; adds its bytes to f->str_bytes. */
static sw_status check_string(const cJSON *v, const sw_limits *l,
			      const char *path, found *f, sw_error *err)
{
	size_t n;

	if (!cJSON_IsString(v) || v->valuestring == NULL)
		return wrong_type(err, path, "a string", v);
	n = strlen(v->valuestring);
	if (n > l->max_string)
		return sw_error_set(err, SW_ETOOBIG, path, (size_t)-1,
				    "expected a string of at most %zu bytes, found %zu bytes",
				    l->max_string, n);
	f->str_bytes += n;
	return SW_OK;
}

static sw_status check_number(const cJSON *v, const char *path,
			      sw_error *err)
{
	if (!cJSON_IsNumber(v))
		return wrong_type(err, path, "a number", v);
	if (!isfinite(v->valuedouble))
		return sw__fail(err, SW_ERANGE, path, (size_t)-1,
				"expected a finite number, found one that overflows to infinity");
	return SW_OK;
}

/* An array of strings: count and each item. */
static sw_status check_list(const cJSON *v, const sw_limits *l,
			    const char *name, size_t *count, found *f,
			    sw_error *err)
{
	char path[SW_ERROR_PATH_MAX];
	const cJSON *it;
	size_t i = 0;
	sw_status st;

	if (!cJSON_IsArray(v))
		return wrong_type(err, name, "an array of strings", v);
	for (it = v->child; it != NULL; it = it->next, i++) {
		if (i == l->max_items)
			return sw_error_set(err, SW_ETOOBIG, name, (size_t)-1,
					    "expected at most %zu items, found more",
					    l->max_items);
		sw__path(path, sizeof(path), "%s[%zu]", name, i);
		st = check_string(it, l, path, f, err);
		if (st != SW_OK)
			return st;
	}
	*count = i;
	return SW_OK;
}

/* billing (usage 0) or usage (usage 1): three numbers, each once. */
static sw_status check_triple(const cJSON *v, int usage, bool lenient,
			      found *f, sw_error *err)
{
	const char *outer = usage ? "usage" : "billing";
	const char *const *wire = sw__json_inner_names[usage][0];
	char path[SW_ERROR_PATH_MAX];
	const cJSON *it;
	sw_status st;
	int i;

	if (!cJSON_IsObject(v))
		return wrong_type(err, outer, "an object", v);
	for (it = v->child; it != NULL; it = it->next) {
		const char *k = it->string ? it->string : "";

		i = sw__json_inner(usage, k, strlen(k));
		if (i < 0) {
			if (lenient)
				continue;
			path[0] = '\0';
			sw__json_path_add(path, sizeof(path), outer,
					  strlen(outer), false);
			sw__json_path_add(path, sizeof(path), k, strlen(k),
					  true);
			return sw_error_set(err, SW_EUNKNOWN, path, (size_t)-1,
					    "expected %s, %s or %s", wire[0],
					    wire[1], wire[2]);
		}
		sw__path(path, sizeof(path), "%s.%s", outer, wire[i]);
		if (f->inner[usage][i] != NULL)
			return sw_error_set(err, SW_EDUP, path, (size_t)-1,
					    "expected each member once, found \"%s\" and \"%s\"",
					    f->inner[usage][i]->string, k);
		st = check_number(it, path, err);
		if (st != SW_OK)
			return st;
		f->inner[usage][i] = it;
	}
	for (i = 0; i < 3; i++) {
		if (f->inner[usage][i] != NULL)
			continue;
		sw__path(path, sizeof(path), "%s.%s", outer, wire[i]);
		return sw_error_set(err, SW_EMISSING, path, (size_t)-1,
				    "expected %s, %s and %s, found no %s",
				    wire[0], wire[1], wire[2], wire[i]);
	}
	return SW_OK;
}

static sw_status check_date(const cJSON *v, const char *path, int64_t *ms,
			    sw_error *err)
{
	const char *why = NULL;

	if (!cJSON_IsString(v) || v->valuestring == NULL)
		return wrong_type(err, path, "a date-time string", v);
	if (sw_date_parse(v->valuestring, strlen(v->valuestring), ms, &why) !=
	    SW_OK)
		return sw__fail(err, SW_EDATE, path, (size_t)-1,
				why ? why : "invalid date-time");
	return SW_OK;
}

/* One top-level member, by field bit. */
static sw_status check_field(const cJSON *v, unsigned bit,
			     const sw_parse_opts *o, const sw_limits *l,
			     found *f, sw_error *err)
{
	const char *name = sw_field_wire_name(bit);

	switch (1u << bit) {
	case SW_F_ID:
	case SW_F_EXTERNAL_ID:
	case SW_F_WORKSPACE_ID:
		return check_string(v, l, name, f, err);
	case SW_F_PROJECT_ID:
		if (cJSON_IsNull(v))
			return SW_OK;
		if (!cJSON_IsString(v))
			return wrong_type(err, name, "a string or null", v);
		return check_string(v, l, name, f, err);
	case SW_F_DURATION:
	case SW_F_TRACES_COUNT:
		return check_number(v, name, err);
	case SW_F_CONTACT_IDS:
		return check_list(v, l, name, &f->n_contacts, f, err);
	case SW_F_TAGS:
		return check_list(v, l, name, &f->n_tags, f, err);
	case SW_F_BILLING:
		return check_triple(v, 0, o->lenient, f, err);
	case SW_F_USAGE:
		return check_triple(v, 1, o->lenient, f, err);
	case SW_F_STARTED_AT:
		return check_date(v, name, &f->date[0], err);
	case SW_F_UPDATED_AT:
		return check_date(v, name, &f->date[1], err);
	}
	return sw__fail(err, SW_EINVAL, name, (size_t)-1, "no such field");
}

/* The checking walk: every key known (or skipped when lenient), once,
 * with the right type; counts the result's sizes. */
static sw_status check_body(const cJSON *root, const sw_parse_opts *o,
			    const sw_limits *l, found *f, sw_error *err)
{
	const cJSON *it;
	sw_status st;

	if (!cJSON_IsObject(root))
		return wrong_type(err, "", "an object as the body", root);
	for (it = root->child; it != NULL; it = it->next) {
		const char *k = it->string ? it->string : "";
		int bit = sw__json_field(k, strlen(k));

		if (bit < 0) {
			char path[SW_ERROR_PATH_MAX] = "";

			if (o->lenient)
				continue;
			sw__json_path_add(path, sizeof(path), k, strlen(k),
					  false);
			return sw__fail(err, SW_EUNKNOWN, path, (size_t)-1,
					"expected a field of the update body (_id, external_id, duration, ...), found an unknown key");
		}
		if (f->item[bit] != NULL)
			return sw_error_set(err, SW_EDUP,
					    sw_field_wire_name((unsigned)bit),
					    (size_t)-1,
					    "expected each field once, found \"%s\" and \"%s\"",
					    f->name[bit], k);
		st = check_field(it, (unsigned)bit, o, l, f, err);
		if (st != SW_OK)
			return st;
		f->item[bit] = it;
		f->name[bit] = k;
	}
	return SW_OK;
}

/* Copies a checked string into the pool; 0xFF (the sanitised copy's
 * marker for U+0000) becomes 0x00 again. */
static sw_str copy_str(sw__builder *b, const cJSON *v, bool markers)
{
	sw_str s = sw__block_str(b, v->valuestring, strlen(v->valuestring));

	if (markers) {
		char *p = (char *)(uintptr_t)s.ptr, *end = p + s.len;

		while ((p = memchr(p, 0xFF, (size_t)(end - p))) != NULL)
			*p++ = '\0';
	}
	return s;
}

static void fill_list(sw__builder *b, const cJSON *v, sw_str *slots,
		      bool markers)
{
	const cJSON *it;
	size_t i = 0;

	for (it = v->child; it != NULL; it = it->next)
		slots[i++] = copy_str(b, it, markers);
}

/* The filling walk, into a block sized by check_body. */
static void fill(sw__builder *b, const found *f, bool markers)
{
	sw_update *u = b->u;
	int i;

	for (i = 0; i < SW_FIELD_COUNT; i++)
		if (f->item[i] != NULL)
			u->has |= 1u << i;
	if (f->item[B_ID])
		u->id = copy_str(b, f->item[B_ID], markers);
	if (f->item[B_EXTERNAL_ID])
		u->external_id = copy_str(b, f->item[B_EXTERNAL_ID], markers);
	if (f->item[B_DURATION])
		u->duration = f->item[B_DURATION]->valuedouble;
	if (f->item[B_CONTACT_IDS]) {
		fill_list(b, f->item[B_CONTACT_IDS], b->contacts, markers);
		u->n_contact_ids = f->n_contacts;
	}
	for (i = 0; i < 3; i++) {
		if (f->item[B_BILLING])
			u->billing[i] = f->inner[0][i]->valuedouble;
		if (f->item[B_USAGE])
			u->usage[i] = f->inner[1][i]->valuedouble;
	}
	if (f->item[B_TRACES_COUNT])
		u->traces_count = f->item[B_TRACES_COUNT]->valuedouble;
	if (f->item[B_TAGS]) {
		fill_list(b, f->item[B_TAGS], b->tags, markers);
		u->n_tags = f->n_tags;
	}
	if (f->item[B_WORKSPACE_ID])
		u->workspace_id = copy_str(b, f->item[B_WORKSPACE_ID], markers);
	if (f->item[B_PROJECT_ID]) {
		if (cJSON_IsNull(f->item[B_PROJECT_ID]))
			u->project_id_null = true;
		else
			u->project_id = copy_str(b, f->item[B_PROJECT_ID], markers);
	}
	if (f->item[B_STARTED_AT])
		u->started_at = f->date[0];
	if (f->item[B_UPDATED_AT])
		u->updated_at = f->date[1];
}

sw_status sw_json_parse(const char *json, size_t len,
			const sw_parse_opts *opts, sw_update **out,
			sw_error *err)
{
	static const sw_parse_opts defaults;
	const sw_parse_opts *o = opts ? opts : &defaults;
	sw_limits l = sw__limits(&o->limits);
	const char *text = json;
	size_t text_len = len;
	char *copy = NULL;
	cJSON *root = NULL;
	bool need_copy;
	found f;
	sw__builder b;
	sw_status st;

	if (out == NULL)
		return sw__fail(err, SW_EINVAL, "", (size_t)-1, "no output");
	*out = NULL;
	if (json == NULL && len > 0)
		return sw__fail(err, SW_EINVAL, "", (size_t)-1, "no input");
	if (json == NULL)
		json = text = "";
	st = sw__json_scan(json, len, l.max_input, &need_copy, err);
	if (st != SW_OK)
		return st;
	if (need_copy) {
		copy = sw__alloc(o->alloc, len + 1);
		if (copy == NULL)
			return sw__fail(err, SW_ENOMEM, "", (size_t)-1,
					"no memory for the sanitised copy");
		st = sw__json_sanitise(json, len, copy, &text_len, err);
		if (st != SW_OK)
			goto fail_copy;
		text = copy;
	}
	root = cJSON_ParseWithLengthOpts(text, text_len, NULL, 0);
	if (root == NULL) {
		/* The scan accepted the input: cJSON ran out of memory. */
		st = sw__fail(err, SW_ENOMEM, "", (size_t)-1,
			      "cJSON could not allocate its tree");
		goto fail_copy;
	}
	memset(&f, 0, sizeof(f));
	st = check_body(root, o, &l, &f, err);
	if (st != SW_OK)
		goto fail_tree;
	st = sw__block_new(o->alloc, f.n_contacts, f.n_tags, f.str_bytes, &b);
	if (st != SW_OK) {
		sw__fail(err, st, "", (size_t)-1,
			 st == SW_ENOMEM ? "no memory for the result" :
					   "result too large");
		goto fail_tree;
	}
	fill(&b, &f, need_copy);
	if (o->kind == SW_KIND_SESSION) {
		st = sw_update_check(b.u, SW_KIND_SESSION, &l, err);
		if (st != SW_OK) {
			sw_update_free(b.u);
			goto fail_tree;
		}
	}
	*out = b.u;
fail_tree:
	cJSON_Delete(root);
fail_copy:
	sw__free(o->alloc, copy);
	return st;
}
