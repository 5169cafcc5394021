/* The fuzz targets' checks, one input each: NULL if every property held,
 * else the first one broken. What each reads and checks is said at the
 * top of its file. */
#ifndef ALERTD_FUZZ_H
#define ALERTD_FUZZ_H

#include <stddef.h>
#include <stdint.h>

/* What a device sends (tests/fuzz/fuzz_ingest.c). */
const char *fuzz_ingest_one(const uint8_t *data, size_t size);

/* An alertd.ini (tests/fuzz/fuzz_config.c). */
const char *fuzz_config_one(const uint8_t *data, size_t size);

/* libFuzzer's entry point over one of the above (`make fuzz` builds with
 * ALERTD_LIBFUZZER): a broken property is a crash, which libFuzzer keeps
 * as build/fuzz/crash-*. */
#define FUZZ_LIBFUZZER_ENTRY(one)                                              \
	int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);          \
	int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)           \
	{                                                                      \
		const char *why = one(data, size);                             \
                                                                               \
		if (why) {                                                     \
			fprintf(stderr, "%s: %s\n", #one, why);               \
			abort();                                               \
		}                                                              \
		return 0;                                                      \
	}

#endif
