/* sw_envelope.h - what devices and the gateway exchange around an update:
 * the session path (docs/wire-format.md section 1), and the Envelope,
 * Batch, Ack and Error messages of proto/sessionwire.proto. Encoders need
 * no heap. */
#ifndef SESSIONWIRE_SW_ENVELOPE_H
#define SESSIONWIRE_SW_ENVELOPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sw_buf.h"
#include "sw_id.h"
#include "sw_status.h"
#include "sw_update.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ==== The session path (wire-format.md section 1) ==== */

#define SW_SESSION_PATH_PREFIX "/v2/traces/sessions/"

/* Appends "/v2/traces/sessions/" and the id percent-encoded as
 * encodeURIComponent does. Fails with SW_EVALUE for "." and "..", the
 * empty id, and SW_EUTF8 for ids that are not UTF-8. */
SW_CHECK sw_status sw_session_path(const char *id, size_t len, sw_buf *out,
				   sw_error *err);
/* Decodes a percent-encoded path segment into out (strict: %XX with two
 * hex digits, result valid UTF-8). */
SW_CHECK sw_status sw_uri_decode(const char *s, size_t len, sw_buf *out,
				 sw_error *err);

/* ==== Envelope and Batch ==== */

/* A session id as it travels: ULID/UUID as 16 bytes, else text. */
typedef struct sw_session_id {
	sw_id_kind kind;
	uint8_t raw[16]; /* ULID or UUID */
	sw_str text;     /* SW_ID_TEXT: borrowed */
} sw_session_id;

/* Classifies id (borrowing it for text). */
void sw_session_id_set(sw_session_id *sid, const char *id, size_t len);
/* Writes the id's text into out (NUL-terminated). Returns the length, or
 * 0 when out is too small. */
size_t sw_session_id_format(const sw_session_id *sid, char *out, size_t cap);

typedef struct sw_envelope {
	sw_session_id session_id; /* text borrows the decoded buffer */
	bool has_seq;
	uint64_t seq;
	const uint8_t *update;    /* the Session message bytes, borrowed */
	size_t update_len;
	bool has_update;
} sw_envelope;

/* Encodes one Envelope from an already encoded Session (update may be
 * NULL with update_len 0: no update field). buf NULL + cap 0: size only.
 * Inside a Batch an item may leave out what follows from the item before:
 * sid NULL = the same session, has_seq false = the previous seq + 1. */
SW_CHECK sw_status sw_envelope_encode(const sw_session_id *sid, bool has_seq,
				      uint64_t seq, const uint8_t *update,
				      size_t update_len, uint8_t *buf,
				      size_t cap, size_t *len, sw_error *err);
/* Appends one encoded Envelope to a Batch being built in buf (the batch
 * is the concatenation of items: field 1, length, envelope). */
SW_CHECK sw_status sw_batch_append(const uint8_t *env, size_t env_len,
				   uint8_t *buf, size_t cap, size_t *len,
				   sw_error *err);

/* Decodes a Batch without copying: fills items[0..*n) (at most cap; more
 * items is SW_ETOOBIG "more than N items"). Each envelope is checked
 * (session id valid, update present; strings UTF-8); an item after the
 * first without a session id gets the previous item's, without seq the
 * previous seq + 1 (the first item must have both). The update bytes are
 * not decoded here (sw_pb_decode them).
 * Paths: "items[3].session_id". */
SW_CHECK sw_status sw_batch_decode(const uint8_t *buf, size_t len,
				   sw_envelope *items, size_t cap, size_t *n,
				   sw_error *err);
/* Decodes one Envelope (same checks). */
SW_CHECK sw_status sw_envelope_decode(const uint8_t *buf, size_t len,
				      sw_envelope *env, sw_error *err);

/* ==== Ack and Error ==== */

typedef struct sw_result {
	uint64_t seq;
	uint32_t status;         /* HTTP status, 0 when not tried */
	bool has_retry_after;
	uint32_t retry_after_ms;
	sw_str message;          /* may be empty */
} sw_result;

/* Encodes an Ack with n results. buf NULL + cap 0: size only. */
SW_CHECK sw_status sw_ack_encode(const sw_result *results, size_t n,
				 uint8_t *buf, size_t cap, size_t *len,
				 sw_error *err);
/* Decodes an Ack into results[0..*n) (at most cap); messages borrow buf. */
SW_CHECK sw_status sw_ack_decode(const uint8_t *buf, size_t len,
				 sw_result *results, size_t cap, size_t *n,
				 sw_error *err);

/* Encodes one Result as a message of its own: the answer to one envelope
 * over CoAP (docs/wire-format.md section 7). status always, seq only with
 * with_seq (a CoAP exchange already names its envelope), retry_after_ms
 * when has_retry_after, message when not empty. buf NULL + cap 0: size
 * only. */
SW_CHECK sw_status sw_result_encode(const sw_result *r, bool with_seq,
				    uint8_t *buf, size_t cap, size_t *len,
				    sw_error *err);
/* Decodes one Result of its own (seq optional: 0 when absent; status
 * absent is 0); the message borrows buf. */
SW_CHECK sw_status sw_result_decode(const uint8_t *buf, size_t len,
				    sw_result *r, sw_error *err);

typedef struct sw_error_msg {
	uint32_t status;
	sw_str code;    /* "invalid_body" */
	sw_str message;
	sw_str field;   /* "tags[3]", may be empty */
} sw_error_msg;

SW_CHECK sw_status sw_error_msg_encode(const sw_error_msg *e, uint8_t *buf,
				       size_t cap, size_t *len, sw_error *err);
SW_CHECK sw_status sw_error_msg_decode(const uint8_t *buf, size_t len,
				       sw_error_msg *e, sw_error *err);

#ifdef __cplusplus
}
#endif
#endif
