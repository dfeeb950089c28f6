/* sw_num.h - numbers as JavaScript writes them. */
#ifndef SESSIONWIRE_SW_NUM_H
#define SESSIONWIRE_SW_NUM_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Longest output plus the NUL ("-0.0000012345678901234567" is 25). */
#define SW_NUM_MAX 32

/* Writes x as ECMAScript Number::toString (the shortest digits that read
 * back to x; plain notation for 1e-7 < |x| < 1e21, else d.ddde+NN; -0 as
 * "0"), NUL-terminated. Returns the length, or 0 when x is NaN or
 * infinite (nothing written). */
size_t sw_num_format(double x, char out[SW_NUM_MAX]);

#ifdef __cplusplus
}
#endif
#endif
