/* sw_status.h - status codes and the caller-owned error struct.
 *
 * Every fallible function of libsessioncodec returns an sw_status and, when
 * given a non-NULL sw_error, fills it with the first error found: the code,
 * the field path it is about ("billing.total_cost", "tags[3]", or for
 * protobuf "#6.9" = field 9 inside field 6) and a message saying what was
 * expected and what was found. No global error state.
 */
#ifndef SESSIONWIRE_SW_STATUS_H
#define SESSIONWIRE_SW_STATUS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define SW_CHECK __attribute__((warn_unused_result))
#define SW_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define SW_CHECK
#define SW_PRINTF(f, a)
#endif

/* One list, three uses (enum, sw_errname, sw_strerror). Append only: a
 * code's number never changes once released. */
#define SW_STATUS_MAP(X)                                                      \
	X(OK, 0, "ok")                                                        \
	X(EINVAL, 1, "invalid argument")                                      \
	X(ENOMEM, 2, "out of memory")                                         \
	X(ETOOBIG, 3, "exceeds a size limit")                                 \
	X(EBUFSZ, 4, "output buffer too small")                               \
	X(EJSON, 5, "malformed JSON")                                         \
	X(ETYPE, 6, "wrong type")                                             \
	X(EUNKNOWN, 7, "unknown field")                                       \
	X(EDUP, 8, "field given twice")                                       \
	X(EMISSING, 9, "required field missing")                              \
	X(ERANGE, 10, "number out of range")                                  \
	X(EUTF8, 11, "invalid UTF-8")                                         \
	X(EDATE, 12, "invalid date-time")                                     \
	X(ETRUNC, 13, "protobuf truncated")                                   \
	X(EWIRE, 14, "malformed protobuf")                                    \
	X(EVALUE, 15, "invalid value")                                        \
	X(EIO, 16, "input/output error")

typedef enum sw_status {
#define SW__ENUM(name, num, text) SW_##name = num,
	SW_STATUS_MAP(SW__ENUM)
#undef SW__ENUM
} sw_status;

#define SW_ERROR_PATH_MAX 96
#define SW_ERROR_MSG_MAX 192

typedef struct sw_error {
	sw_status code;
	/* Byte offset in the input the error was found at, or (size_t)-1. */
	size_t offset;
	/* Field path, "" when the error is about the whole input. */
	char path[SW_ERROR_PATH_MAX];
	/* What was expected and what was found. */
	char message[SW_ERROR_MSG_MAX];
} sw_error;

/* "EJSON" etc.; "E?" for an unknown code. */
const char *sw_errname(sw_status st);
/* "malformed JSON" etc.; "unknown status" for an unknown code. */
const char *sw_strerror(sw_status st);

/* Clears err (code SW_OK, empty path and message). NULL is fine. */
void sw_error_clear(sw_error *err);

/* Records an error if err is non-NULL and holds no error yet (first error
 * wins), and returns st so callers can `return sw_error_set(...)`. */
sw_status sw_error_set(sw_error *err, sw_status st, const char *path,
		       size_t offset, const char *fmt, ...) SW_PRINTF(5, 6);

#ifdef __cplusplus
}
#endif
#endif
