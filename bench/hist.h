/* hist: a latency histogram with logarithmic buckets (HdrHistogram-style:
 * 32 linear sub-buckets per power of two, so every recorded value is kept
 * within about 3 %), in microseconds. Fixed size, no allocation. */
#ifndef ALERTD_BENCH_HIST_H
#define ALERTD_BENCH_HIST_H

#include <stdint.h>

#define HIST_SUB 32
#define HIST_BUCKETS (HIST_SUB * 40)

struct hist {
	uint64_t n;
	uint64_t max_us;
	uint64_t counts[HIST_BUCKETS];
};

void hist_record(struct hist *h, uint64_t us);
/* The value at quantile q (0..1) in microseconds; 0 when empty. */
uint64_t hist_quantile(const struct hist *h, double q);

#endif
