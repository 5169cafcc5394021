/* fuzz_config: an alertd.ini through config_load (libinih, then alertd's
 * own parsing of rules, policies, addresses and secrets), as on start and
 * on every SIGHUP reload: a config an operator got wrong must be refused
 * with a message, never crash the running daemon that reloads it.
 *
 * For every config accepted: the rules argument of decide.lua is JSON
 * (an unreadable one would make every decision fail), and the secrets and
 * limits it hands out are usable. Built and replayed like fuzz_ingest.c
 * (tests/fuzz/corpus-config/). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "config.h"
#include "fuzz.h"
#include "rules.h"

/* config_load reads a file: each input is written to this one first. */
static const char *fuzz_config_path(void)
{
	static char path[64];

	if (path[0] == '\0')
		snprintf(path, sizeof(path), "/tmp/alertd-fuzz-config-%d.ini",
			 (int)getpid());
	return path;
}

const char *fuzz_config_one(const uint8_t *data, size_t size)
{
	const char *path = fuzz_config_path();
	const char *why = NULL;
	struct config *cfg;
	char err[512] = "";
	FILE *f = fopen(path, "wb");
	char *rules;
	json_t *j;

	if (!f)
		return NULL; /* not the config's fault */
	if (fwrite(data, 1, size, f) != size) {
		fclose(f);
		unlink(path);
		return NULL;
	}
	fclose(f);
	cfg = config_load(path, err, sizeof(err));
	unlink(path);
	if (!cfg)
		return err[0] ? NULL : "a refused config without a message";
	/* 2026-11-21 12:00 and 23:00 UTC: day and night somewhere. */
	for (int64_t t = INT64_C(1795262400000); t <= INT64_C(1795302000000);
	     t += INT64_C(39600000)) {
		if (!(rules = rules_json(cfg, t, NULL)) ||
		    !(j = json_loads(rules, 0, NULL))) {
			why = "the rules of an accepted config are not JSON";
			free(rules);
			break;
		}
		json_decref(j);
		free(rules);
	}
	if (!why && config_evt_limits(cfg).max_id_len == 0)
		why = "an accepted config allows no event id";
	config_free(cfg);
	return why;
}

#ifdef ALERTD_LIBFUZZER
FUZZ_LIBFUZZER_ENTRY(fuzz_config_one)
#endif
