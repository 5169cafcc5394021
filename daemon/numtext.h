/* numtext: numbers as text on the event path, without printf.
 *
 * Every event's audit row, answer and decide call carries integers
 * (sequences, times, priorities) and, for most events, a location. perf of
 * tcp-max put snprintf at a fifth of alertd's CPU, two thirds of it glibc's
 * multi-precision formatting of the two coordinates (docs/BENCHMARKS.md,
 * optimisation 32). These write the same text as printf would ("%lld";
 * the shortest of "%.15g", "%.16g", "%.17g" that reads back as the same
 * double), only faster for the values that come by the million. */
#ifndef ALERTD_NUMTEXT_H
#define ALERTD_NUMTEXT_H

#include <stddef.h>
#include <stdint.h>

/* Room for any int64_t and its NUL. */
#define NUMTEXT_I64_LEN 21
/* Room for any double as "%.17g" and its NUL. */
#define NUMTEXT_REAL_LEN 32

/* v in decimal, as "%lld" writes it, NUL-terminated; returns its length. */
size_t numtext_i64(char buf[NUMTEXT_I64_LEN], int64_t v);

/* A finite v as the shortest of "%.15g", "%.16g" and "%.17g" that strtod
 * reads back as v, NUL-terminated; returns its length. A coordinate with
 * at most seven decimals (a GPS fix: 1 cm) between 1e-4 and 1e8 in size
 * is written from integers; anything else goes through snprintf. */
size_t numtext_real(char buf[NUMTEXT_REAL_LEN], double v);

#endif
