/* config: the issue 3 settings that the table alone cannot check. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "rules.h"
#include "unit.h"

/* Loads text (plus the required secret) from a temporary file. */
static struct config *load(const char *text, char *err, size_t errlen)
{
	char path[] = "/tmp/alertd-unit-XXXXXX";
	int fd = mkstemp(path);
	struct config *cfg;
	FILE *f;

	if (fd < 0)
		return NULL;
	f = fdopen(fd, "w");
	fprintf(f, "%s\n[device_secrets]\n* = s\n", text);
	fclose(f);
	err[0] = '\0';
	cfg = config_load(path, err, errlen);
	unlink(path);
	return cfg;
}

TEST(config_rules_defaults)
{
	char err[512];
	struct config *cfg = load("", err, sizeof(err));

	REQUIRE(cfg != NULL);
	CHECK_STR(cfg->type_class[EVT_TYPE_PANIC], "panic+silent_alarm");
	CHECK_STR(cfg->type_class[EVT_TYPE_SILENT_ALARM], "panic+silent_alarm");
	CHECK_STR(cfg->type_class[EVT_TYPE_CALLBACK_REQUEST],
		  "call_request+callback_request");
	CHECK_STR(cfg->type_class[EVT_TYPE_FAULT], "fault");
	CHECK(cfg->night_start_min == 22 * 60 && cfg->night_end_min == 6 * 60);
	CHECK(cfg->night_kinds == ((1 << EVT_KIND_BUS) | (1 << EVT_KIND_STOP) |
				   (1 << EVT_KIND_PARK)));
	CHECK(cfg->unknown_accept == 0);
	CHECK(cfg->supervision_s[EVT_KIND_BUS] == 180);
	CHECK_STR(cfg->priority_timezone, "Europe/Istanbul");
	config_free(cfg);
}

TEST(config_rules_custom)
{
	char err[512];
	struct config *cfg = load(
		"[priority]\nnight_start = 21:30\nnight_kinds = ferry\n"
		"[priority_zones]\nKonak = -4\nBuca = 9\n"
		"[dedup]\nmerge_classes = panic+fault, test+heartbeat\n"
		"[sources]\nunknown = accept\n",
		err, sizeof(err));

	REQUIRE(cfg != NULL);
	CHECK(cfg->night_start_min == 21 * 60 + 30);
	CHECK(cfg->night_kinds == 1 << EVT_KIND_FERRY);
	CHECK(config_zone_modifier(cfg, "Konak") == -4);
	CHECK(config_zone_modifier(cfg, "Buca") == 9);
	CHECK(config_zone_modifier(cfg, "Bornova") == 0);
	CHECK_STR(cfg->type_class[EVT_TYPE_FAULT], "panic+fault");
	CHECK_STR(cfg->type_class[EVT_TYPE_HEARTBEAT], "test+heartbeat");
	CHECK_STR(cfg->type_class[EVT_TYPE_SILENT_ALARM], "silent_alarm");
	CHECK(cfg->unknown_accept == 1);
	config_free(cfg);
}

TEST(config_rules_invalid)
{
	static const struct {
		const char *text, *why;
	} bad[] = {
		{"[priority]\nnight_start = 25:00", "expected HH:MM"},
		{"[priority]\nnight_end = 6", "expected HH:MM"},
		{"[priority]\nnight_kinds = bus,tram", "source kinds"},
		{"[priority]\ntimezone = Mars/Olympus", "not a time zone"},
		{"[priority]\ntimezone = ../../etc/passwd", "not a time zone"},
		{"[priority_zones]\nKonak = lots", "expected an integer"},
		{"[dedup]\nmerge_classes = panic+nope", "merge_classes"},
		{"[dedup]\nmerge_classes = panic+fault,panic+test",
		 "merge_classes"},
		{"[dedup]\nflood_soft = 50\nflood_hard = 10", "below flood_soft"},
		{"[sources]\nunknown = maybe", "accept or reject"},
	};
	char err[512];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct config *cfg = load(bad[i].text, err, sizeof(err));

		CHECK(cfg == NULL);
		CHECK(strstr(err, bad[i].why) != NULL);
		if (cfg == NULL && strstr(err, bad[i].why) == NULL)
			fprintf(stderr, "  %s -> %s\n", bad[i].text, err);
		config_free(cfg);
	}
}

/* 2026-11-21T18:59:59Z: 21:59:59 in Istanbul. */
#define T_2159_IST 1795287599000LL

TEST(rules_json_night_flag_and_members)
{
	char err[512];
	struct config *cfg = load("[priority]\nkind_ferry = 3\n"
				  "[priority_zones]\nKonak = 4\n",
				  err, sizeof(err));
	char *day, *night;

	REQUIRE(cfg != NULL);
	CHECK(!rules_is_night(cfg, T_2159_IST));
	CHECK(rules_is_night(cfg, T_2159_IST + 1000));
	day = rules_json(cfg, T_2159_IST, NULL);
	night = rules_json(cfg, T_2159_IST + 1000, NULL);
	REQUIRE(day != NULL && night != NULL);
	CHECK(strstr(day, "\"night\":0") != NULL);
	CHECK(strstr(night, "\"night\":1") != NULL);
	CHECK(strstr(day, "\"ferry\":3") != NULL);
	CHECK(strstr(day, "\"zone_mod\":{\"Konak\":4}") != NULL);
	CHECK(strstr(day, "\"night_kinds\":{\"bus\":true,\"park\":true,\"stop\":true}") != NULL);
	CHECK(strstr(day, "\"unknown\":\"reject\"") != NULL);
	free(day);
	free(night);
	config_free(cfg);
}

/* What decide.c sends: the fixed part made once per config, the night
 * flag and the counters' floor added per call; decide.lua decodes it. */
TEST(rules_json_fixed_then_joined)
{
	char err[512];
	struct config *cfg = load("[priority]\nkind_ferry = 3\n", err,
				  sizeof(err));
	struct rules_seq_floor floor = {.incident = 7, .accept = 9000000001};
	char *fixed, *text, *plain;
	json_t *r, *p;

	REQUIRE(cfg != NULL);
	fixed = rules_json_fixed(cfg);
	REQUIRE(fixed != NULL);
	CHECK(strstr(fixed, "night\"") == NULL);
	CHECK(strstr(fixed, "seq_floor") == NULL);
	text = rules_json_join(fixed, true, &floor);
	plain = rules_json(cfg, T_2159_IST + 1000, &floor);
	REQUIRE(text != NULL && plain != NULL);
	r = json_loads(text, 0, NULL);
	p = json_loads(plain, 0, NULL);
	REQUIRE(r != NULL && p != NULL);
	CHECK(json_equal(r, p));
	CHECK(json_integer_value(json_object_get(r, "night")) == 1);
	CHECK(json_integer_value(json_object_get(
		      json_object_get(r, "seq_floor"), "accept")) == 9000000001);
	CHECK(json_integer_value(json_object_get(
		      json_object_get(r, "seq_floor"), "incident")) == 7);
	CHECK(json_integer_value(json_object_get(
		      json_object_get(r, "kind_mod"), "ferry")) == 3);
	CHECK(json_object_size(r) == 17);
	free(text);
	text = rules_json_join(fixed, false, NULL);
	REQUIRE(text != NULL);
	CHECK(strstr(text, "\"night\":0,\"seq_floor\":{\"accept\":0,"
			   "\"incident\":0}}") != NULL);
	CHECK(rules_json_join("{}", false, NULL) == NULL);
	CHECK(rules_json_join("[1]", false, NULL) == NULL);
	json_decref(r);
	json_decref(p);
	free(text);
	free(plain);
	free(fixed);
	config_free(cfg);
}

/* Redis and PostgreSQL must be given by address, never by a name that
 * hiredis or libpq would resolve with a blocking lookup on the loop. */
TEST(config_addresses_accepted)
{
	static const char *const ok[] = {
		"[redis]\nhost = 127.0.0.1\n",
		"[redis]\nhost = ::1\n",
		"[postgres]\nconninfo = host=10.0.0.1,10.0.0.2 port=5432,5433 dbname=a\n",
		"[postgres]\nconninfo = host=/var/run/postgresql dbname=a\n",
		"[postgres]\nconninfo = host=db.example hostaddr=10.0.0.1 dbname=a\n",
		"[postgres]\nconninfo = postgresql://10.0.0.1:5432/a\n",
	};
	char err[512];

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		struct config *cfg = load(ok[i], err, sizeof(err));

		CHECK(cfg != NULL);
		if (cfg == NULL)
			fprintf(stderr, "  %s -> %s\n", ok[i], err);
		config_free(cfg);
	}
}

TEST(config_addresses_names_refused)
{
	char err[512];
	struct config *cfg;

	cfg = load("[redis]\nhost = redis.local\n", err, sizeof(err));
	CHECK(cfg == NULL);
	CHECK(strstr(err, "[redis] host") != NULL);
	CHECK(strstr(err, "blocking lookup") != NULL);
	config_free(cfg);

	cfg = load("[postgres]\nconninfo = host=10.0.0.1,db2.example dbname=a\n",
			err, sizeof(err));
	CHECK(cfg == NULL);
	CHECK(strstr(err, "\"db2.example\"") != NULL);
	CHECK(strstr(err, "hostaddr") != NULL);
	config_free(cfg);

	cfg = load("[postgres]\nconninfo = host=10.0.0.1 nosuchkey=1\n",
			err, sizeof(err));
	CHECK(cfg == NULL);
	CHECK(strstr(err, "[postgres] conninfo") != NULL);
	config_free(cfg);
}
