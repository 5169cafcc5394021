/* Every input kept in tests/fuzz/corpus/ (seeds, and what `make fuzz`
 * found) through the fuzz target's checks, so that what was fixed once
 * stays fixed without clang or libFuzzer. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_ingest.h"
#include "unit.h"

#define FUZZ_CORPUS "tests/fuzz/corpus"

/* The file's bytes (malloc'd) and their count; NULL if unreadable. */
static uint8_t *fuzz_read(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	long n;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 &&
	    fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n + 1)) &&
	    fread(buf, 1, (size_t)n, f) == (size_t)n) {
		*len = (size_t)n;
	} else {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	return buf;
}

TEST(fuzz_corpus_replays)
{
	DIR *d = opendir(FUZZ_CORPUS);
	struct dirent *de;
	size_t inputs = 0;

	REQUIRE(d != NULL);
	while ((de = readdir(d)) != NULL) {
		char path[512];
		size_t len = 0;
		uint8_t *buf;
		const char *why;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", FUZZ_CORPUS, de->d_name);
		buf = fuzz_read(path, &len);
		if (!CHECK(buf != NULL))
			continue;
		if ((why = fuzz_ingest_one(buf, len)) != NULL)
			fprintf(stderr, "  %s: %s\n", path, why);
		CHECK(why == NULL);
		free(buf);
		inputs++;
	}
	closedir(d);
	/* The seeds of every reader at least. */
	CHECK(inputs >= 10);
}
