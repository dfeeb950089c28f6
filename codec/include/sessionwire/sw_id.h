/* sw_id.h - ids that travel as 16 raw bytes. */
#ifndef SESSIONWIRE_SW_ID_H
#define SESSIONWIRE_SW_ID_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SW_ULID_LEN 26
#define SW_UUID_LEN 36

typedef enum sw_id_kind {
	SW_ID_TEXT = 0, /* anything else: travels as text */
	SW_ID_ULID = 1, /* canonical ULID: Crockford base32, uppercase, 0-7 first */
	SW_ID_UUID = 2  /* canonical UUID: 8-4-4-4-12 lowercase hex */
} sw_id_kind;

/* Classifies s; for ULID and UUID fills raw[16] (else leaves it alone).
 * Formatting raw back gives exactly s. */
sw_id_kind sw_id_parse(const char *s, size_t len, uint8_t raw[16]);
/* Writes the 26 characters of a ULID (no NUL). */
void sw_ulid_format(const uint8_t raw[16], char out[SW_ULID_LEN]);
/* Writes the 36 characters of a UUID (no NUL). */
void sw_uuid_format(const uint8_t raw[16], char out[SW_UUID_LEN]);
/* The 48-bit millisecond timestamp of a ULID. */
uint64_t sw_ulid_time(const uint8_t raw[16]);

#ifdef __cplusplus
}
#endif
#endif
