/* hist: see hist.h. Index of v: below 2*HIST_SUB the value itself; above,
 * the power of two it lies in and the top log2(HIST_SUB)+1 bits. */
#include "hist.h"

static unsigned hist_index(uint64_t v)
{
	unsigned shift = 0;

	while ((v >> shift) >= 2 * HIST_SUB)
		shift++;
	if (shift == 0)
		return (unsigned)v;
	/* (v >> shift) is in [HIST_SUB, 2*HIST_SUB). */
	unsigned idx = (shift + 1) * HIST_SUB + (unsigned)((v >> shift) - HIST_SUB);
	return idx < HIST_BUCKETS ? idx : HIST_BUCKETS - 1;
}

/* The highest value that falls into bucket idx. */
static uint64_t hist_value(unsigned idx)
{
	if (idx < 2 * HIST_SUB)
		return idx;
	unsigned shift = idx / HIST_SUB - 1;
	uint64_t low = ((uint64_t)(idx % HIST_SUB) + HIST_SUB) << shift;
	return low + ((uint64_t)1 << shift) - 1;
}

void hist_record(struct hist *h, uint64_t us)
{
	h->counts[hist_index(us)]++;
	h->n++;
	if (us > h->max_us)
		h->max_us = us;
}

uint64_t hist_quantile(const struct hist *h, double q)
{
	uint64_t want, seen = 0;

	if (h->n == 0)
		return 0;
	want = (uint64_t)(q * (double)h->n + 0.5);
	if (want < 1)
		want = 1;
	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		seen += h->counts[i];
		if (seen >= want) {
			uint64_t v = hist_value(i);
			return v < h->max_us ? v : h->max_us;
		}
	}
	return h->max_us;
}
