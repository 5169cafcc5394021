/* fuzz_ingest: one fuzz input through the readers of device input
 * (tests/fuzz/fuzz_ingest.c says which and what is checked). */
#ifndef ALERTD_FUZZ_INGEST_H
#define ALERTD_FUZZ_INGEST_H

#include <stddef.h>
#include <stdint.h>

/* NULL if every property held, else the first one broken. */
const char *fuzz_ingest_one(const uint8_t *data, size_t size);

#endif
