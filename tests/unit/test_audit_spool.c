/* audit + spool: a row answered durable while PostgreSQL is away is in the
 * synced spool file. PostgreSQL is a pg_conn never started (never ready),
 * so every row goes to the group fsync of the next loop turn. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <event2/event.h>

#include "audit.h"
#include "config.h"
#include "pg_conn.h"
#include "spool.h"
#include "unit.h"

struct audit_test_answer {
	int calls;
	bool durable;
};

static void audit_test_on_done(bool durable, void *arg)
{
	struct audit_test_answer *ans = arg;

	ans->calls++;
	ans->durable = durable;
}

/* The config of the test: [spool] path = dir. */
static bool audit_test_config(const char *dir)
{
	char path[] = "/tmp/alertd-unit-audit-XXXXXX", err[512];
	int fd = mkstemp(path);
	struct config *cfg;
	FILE *f;

	if (fd < 0 || (f = fdopen(fd, "w")) == NULL)
		return false;
	fprintf(f, "[spool]\npath = %s\n[device_secrets]\n* = s\n", dir);
	fclose(f);
	cfg = config_load(path, err, sizeof(err));
	unlink(path);
	if (cfg == NULL)
		return false;
	config_set_current(cfg);
	return true;
}

/* Transition rows with transition_id id found in the spool of dir. */
static int audit_test_count(const char *dir, const char *id)
{
	char err[256], needle[64], *ev, *tr;
	struct spool *s = spool_open(dir, 1 << 20, err, sizeof(err));
	int n = 0;

	if (s == NULL)
		return -1;
	snprintf(needle, sizeof(needle), "\"transition_id\":\"%s\"", id);
	while (spool_next(s, &ev, &tr)) {
		n += tr != NULL && strstr(tr, needle) != NULL;
		free(ev);
		free(tr);
	}
	spool_close(s);
	return n;
}

static void audit_test_record(struct audit *a, const char *id,
			      const char *detail,
			      struct audit_test_answer *ans)
{
	struct audit_transition_row tr = {
		.transition_id = id,
		.incident_id = 1,
		.to_state = "new",
		.actor = "alertd",
		.detail_json = detail,
		.at_ms = 1700000000000,
	};

	audit_record(a, NULL, &tr, audit_test_on_done, ans);
}

/* One group fsync of three rows whose second write fails (RLIMIT_FSIZE
 * stands in for a full disk): the file is cut back to its last synced
 * size, which takes the first row too. No row may be answered durable
 * unless it is in the file; every row is answered exactly once. */
TEST(audit_spool_no_durable_answer_for_a_row_cut_off)
{
	char tmpl[] = "/tmp/alertd-unit-audit-spool-XXXXXX", path[512];
	char *dir = mkdtemp(tmpl), *big;
	struct audit_test_answer ans[3] = {{0}};
	const char *ids[3] = {"1:a", "1:b", "1:c"};
	struct rlimit old, lim;
	void (*old_xfsz)(int);
	struct event_base *base;
	struct pg_conn *conn;
	struct audit *a;

	REQUIRE(dir != NULL);
	REQUIRE(audit_test_config(dir));
	base = event_base_new();
	REQUIRE(base != NULL);
	conn = pg_conn_new(base, "host=127.0.0.1 port=1", "audit");
	REQUIRE(conn != NULL);
	a = audit_new(base, conn);
	REQUIRE(a != NULL);
	REQUIRE(audit_spool_usable(a));
	big = malloc(3000);
	REQUIRE(big != NULL);
	snprintf(big, 3000, "{\"x\":\"%02990d\"}", 0);

	audit_test_record(a, ids[0], NULL, &ans[0]);
	audit_test_record(a, ids[1], big, &ans[1]);
	audit_test_record(a, ids[2], NULL, &ans[2]);
	CHECK(ans[0].calls == 0); /* waiting for the group fsync */
	old_xfsz = signal(SIGXFSZ, SIG_IGN);
	REQUIRE(getrlimit(RLIMIT_FSIZE, &old) == 0);
	lim = old;
	lim.rlim_cur = 1000;
	REQUIRE(setrlimit(RLIMIT_FSIZE, &lim) == 0);
	event_base_loop(base, EVLOOP_NONBLOCK); /* the group fsync */
	setrlimit(RLIMIT_FSIZE, &old);
	signal(SIGXFSZ, old_xfsz);

	for (int i = 0; i < 3; i++) {
		CHECK(ans[i].calls == 1);
		CHECK(!ans[i].durable || audit_test_count(dir, ids[i]) == 1);
	}
	CHECK(!ans[1].durable);
	audit_free(a);
	pg_conn_free(conn);
	event_base_free(base);
	config_set_current(NULL);
	free(big);
	snprintf(path, sizeof(path), "%s/audit.spool", dir);
	unlink(path);
	rmdir(dir);
}
