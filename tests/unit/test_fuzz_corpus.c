/* Every input kept in the fuzz corpora (seeds, and what `make fuzz`
 * found) through the fuzz targets' checks, so that what was fixed once
 * stays fixed without clang or libFuzzer. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "unit.h"

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

/* Replays dir through one; the number of inputs. */
static size_t fuzz_replay(const char *dir,
			  const char *(*one)(const uint8_t *, size_t))
{
	DIR *d = opendir(dir);
	struct dirent *de;
	size_t inputs = 0;

	if (!CHECK(d != NULL))
		return 0;
	while ((de = readdir(d)) != NULL) {
		char path[512];
		size_t len = 0;
		uint8_t *buf;
		const char *why;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		buf = fuzz_read(path, &len);
		if (!CHECK(buf != NULL))
			continue;
		if ((why = one(buf, len)) != NULL)
			fprintf(stderr, "  %s: %s\n", path, why);
		CHECK(why == NULL);
		free(buf);
		inputs++;
	}
	closedir(d);
	return inputs;
}

TEST(fuzz_corpus_ingest_replays)
{
	/* The seeds of every reader at least. */
	CHECK(fuzz_replay("tests/fuzz/corpus", fuzz_ingest_one) >= 15);
}

TEST(fuzz_corpus_config_replays)
{
	/* The shipped configs at least. */
	CHECK(fuzz_replay("tests/fuzz/corpus-config", fuzz_config_one) >= 2);
}
