/* sw_update.h - the in-memory trace session update (and session).
 *
 * One struct serves both the PATCH body (UpdateSessionRequestBody, every
 * field optional) and the session the API answers with
 * (docs/wire-format.md section 3).
 * Strings are pointer + length (UTF-8, may contain U+0000) and are owned
 * by whoever filled the struct: the caller when built by hand (device
 * code: no heap), or the single block returned by a parser/decoder
 * (free it with sw_update_free).
 */
#ifndef SESSIONWIRE_SW_UPDATE_H
#define SESSIONWIRE_SW_UPDATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sw_status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sw_str {
	const char *ptr;
	size_t len;
} sw_str;

/* Presence bits of sw_update.has, in wire key order. */
#define SW_FIELD_MAP(X)                                                       \
	X(ID, 0, "_id", "id")                                                 \
	X(EXTERNAL_ID, 1, "external_id", "externalId")                        \
	X(DURATION, 2, "duration", "duration")                                \
	X(CONTACT_IDS, 3, "contact_ids", "contactIds")                        \
	X(BILLING, 4, "billing", "billing")                                   \
	X(USAGE, 5, "usage", "usage")                                         \
	X(TRACES_COUNT, 6, "traces_count", "tracesCount")                     \
	X(TAGS, 7, "tags", "tags")                                            \
	X(WORKSPACE_ID, 8, "workspace_id", "workspaceId")                     \
	X(PROJECT_ID, 9, "project_id", "projectId")                           \
	X(STARTED_AT, 10, "started_at", "startedAt")                          \
	X(UPDATED_AT, 11, "updated_at", "updatedAt")

enum sw_field {
#define SW__FIELD(name, bit, wire, sdk) SW_F_##name = 1u << bit,
	SW_FIELD_MAP(SW__FIELD)
#undef SW__FIELD
};
#define SW_FIELD_COUNT 12

/* Wire ("external_id") and SDK ("externalId") names of field bit i. */
const char *sw_field_wire_name(unsigned bit);
const char *sw_field_sdk_name(unsigned bit);

/* Index of the three numbers in billing[] and usage[]. */
enum { SW_IN = 0, SW_OUT = 1, SW_TOTAL = 2 };

typedef struct sw_update {
	uint32_t has; /* SW_F_* bits: which fields are present */
	bool project_id_null; /* with SW_F_PROJECT_ID: the value is null */
	sw_str id, external_id, workspace_id, project_id;
	double duration;
	double traces_count;
	double billing[3]; /* input_cost, output_cost, total_cost */
	double usage[3];   /* prompt_tokens, completion_tokens, total_tokens */
	const sw_str *contact_ids;
	size_t n_contact_ids;
	const sw_str *tags;
	size_t n_tags;
	int64_t started_at; /* milliseconds since 1970-01-01T00:00:00Z */
	int64_t updated_at;
} sw_update;

/* What a message is: an update body (every field optional) or the API's
 * session (_id ... workspace_id required, docs/wire-format.md section
 * 3). */
typedef enum sw_kind { SW_KIND_UPDATE = 0, SW_KIND_SESSION = 1 } sw_kind;

/* Allocation hook, passed through parsers and decoders so tests can fail
 * the Nth allocation. NULL means malloc/free. */
typedef struct sw_alloc {
	void *(*alloc)(void *ud, size_t size);
	void (*free)(void *ud, void *ptr);
	void *ud;
} sw_alloc;

/* Bounds on untrusted input. A zero member means its default. */
typedef struct sw_limits {
	size_t max_input;  /* bytes of JSON or protobuf (default 1 MiB) */
	size_t max_string; /* bytes in one string (default 64 KiB) */
	size_t max_items;  /* items in contact_ids or tags (default 4096) */
} sw_limits;

#define SW_DEFAULT_MAX_INPUT ((size_t)1 << 20)
#define SW_DEFAULT_MAX_STRING ((size_t)64 << 10)
#define SW_DEFAULT_MAX_ITEMS ((size_t)4096)

typedef struct sw_parse_opts {
	sw_kind kind;          /* what to expect (default: an update) */
	bool lenient;          /* JSON only: skip unknown keys, do not fail */
	sw_limits limits;      /* zeroes: defaults */
	const sw_alloc *alloc; /* NULL: malloc/free */
} sw_parse_opts;

/* ==== Building an update by hand (device code: no heap) ==== */

/* Empties u: no field present. */
void sw_update_init(sw_update *u);

/* Each setter marks its field present. Strings and arrays are borrowed:
 * they must outlive every use of u. Nothing is validated here; encoders
 * and writers validate (finite numbers, UTF-8, dates 0000-9999). */
void sw_update_set_id(sw_update *u, const char *s, size_t len);
void sw_update_set_external_id(sw_update *u, const char *s, size_t len);
void sw_update_set_workspace_id(sw_update *u, const char *s, size_t len);
void sw_update_set_project_id(sw_update *u, const char *s, size_t len);
void sw_update_set_project_id_null(sw_update *u);
void sw_update_set_duration(sw_update *u, double ms);
void sw_update_set_traces_count(sw_update *u, double n);
void sw_update_set_billing(sw_update *u, double input_cost,
			   double output_cost, double total_cost);
void sw_update_set_usage(sw_update *u, double prompt_tokens,
			 double completion_tokens, double total_tokens);
void sw_update_set_contact_ids(sw_update *u, const sw_str *ids, size_t n);
void sw_update_set_tags(sw_update *u, const sw_str *tags, size_t n);
void sw_update_set_started_at(sw_update *u, int64_t ms);
void sw_update_set_updated_at(sw_update *u, int64_t ms);

/* Checks what a writer or encoder needs: numbers finite, strings valid
 * UTF-8 and within limits (NULL: defaults), dates within 0000-9999, and
 * for SW_KIND_SESSION the required fields. */
SW_CHECK sw_status sw_update_check(const sw_update *u, sw_kind kind,
				   const sw_limits *limits, sw_error *err);

/* Field-by-field equality (numbers bitwise, so -0 != 0). */
bool sw_update_equal(const sw_update *a, const sw_update *b);

/* Frees an update returned by a parser or decoder. NULL is fine. Never
 * call it on a struct built by hand. */
void sw_update_free(sw_update *u);

#ifdef __cplusplus
}
#endif
#endif
