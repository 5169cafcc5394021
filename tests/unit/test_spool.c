/* spool: records survive close/reopen, a torn or corrupt tail is cut off
 * at the last good record, the bound is kept, replay reads in order. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "spool.h"
#include "unit.h"

static char *spool_test_dir(void)
{
	char tmpl[] = "/tmp/alertd-unit-spool-XXXXXX";
	char *d = mkdtemp(tmpl);

	return d ? strdup(d) : NULL;
}

static void spool_test_cleanup(char *dir)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/audit.spool", dir);
	unlink(path);
	rmdir(dir);
	free(dir);
}

static off_t spool_test_size(const char *dir)
{
	char path[512];
	struct stat st;

	snprintf(path, sizeof(path), "%s/audit.spool", dir);
	return stat(path, &st) == 0 ? st.st_size : -1;
}

TEST(spool_roundtrip_and_torn_tail)
{
	char *dir = spool_test_dir(), err[256], path[512], *ev, *tr;
	struct spool *s;
	off_t good;
	int fd;

	REQUIRE(dir != NULL);
	s = spool_open(dir, 1 << 20, err, sizeof(err));
	REQUIRE(s != NULL);
	CHECK(spool_append(s, "{\"a\":1}", 7, "", 0));
	CHECK(spool_append(s, "", 0, "{\"t\":2}", 7));
	CHECK(spool_append(s, "{\"a\":3}", 7, "{\"t\":3}", 7));
	CHECK(spool_sync(s));
	CHECK(spool_rows(s) == 3);
	spool_close(s);
	good = spool_test_size(dir);

	/* a torn record: header says 100 bytes, 5 written */
	snprintf(path, sizeof(path), "%s/audit.spool", dir);
	fd = open(path, O_WRONLY | O_APPEND);
	REQUIRE(fd >= 0);
	CHECK(write(fd, "\0\0\0\x64\1\2\3\4abcde", 13) == 13);
	close(fd);

	s = spool_open(dir, 1 << 20, err, sizeof(err));
	REQUIRE(s != NULL);
	CHECK(spool_test_size(dir) == good);
	CHECK(spool_rows(s) == 3 && spool_unread(s) == 3);
	CHECK(spool_next(s, &ev, &tr));
	CHECK_STR(ev, "{\"a\":1}");
	CHECK(tr == NULL);
	free(ev);
	CHECK(spool_next(s, &ev, &tr));
	CHECK(ev == NULL);
	CHECK_STR(tr, "{\"t\":2}");
	free(tr);
	CHECK(spool_next(s, &ev, &tr));
	CHECK_STR(ev, "{\"a\":3}");
	CHECK_STR(tr, "{\"t\":3}");
	free(ev);
	free(tr);
	CHECK(!spool_next(s, &ev, &tr));
	CHECK(spool_all_read(s));
	CHECK(spool_clear(s));
	CHECK(spool_rows(s) == 0 && spool_test_size(dir) == 0);
	spool_close(s);
	spool_test_cleanup(dir);
}

TEST(spool_corrupt_crc_and_bound)
{
	char *dir = spool_test_dir(), err[256], path[512];
	struct spool *s;
	int fd;

	REQUIRE(dir != NULL);
	s = spool_open(dir, 65536, err, sizeof(err));
	REQUIRE(s != NULL);
	CHECK(spool_append(s, "{\"a\":1}", 7, "", 0));
	CHECK(spool_append(s, "{\"a\":2}", 7, "", 0));
	CHECK(spool_sync(s));
	/* the bound: a row that does not fit is refused, nothing written */
	{
		static char big[70000];

		memset(big, 'x', sizeof(big));
		CHECK(!spool_append(s, big, sizeof(big), "", 0));
		CHECK(spool_rows(s) == 2);
	}
	spool_close(s);
	/* flip one payload byte of the second record */
	snprintf(path, sizeof(path), "%s/audit.spool", dir);
	fd = open(path, O_WRONLY);
	REQUIRE(fd >= 0);
	CHECK(pwrite(fd, "b", 1, 8 + 8 + 8 + 3) == 1);
	close(fd);
	s = spool_open(dir, 65536, err, sizeof(err));
	REQUIRE(s != NULL);
	CHECK(spool_rows(s) == 1);
	CHECK(spool_test_size(dir) == 8 + 8);
	/* a second daemon on the same spool is refused */
	{
		struct spool *s2 = spool_open(dir, 65536, err, sizeof(err));

		CHECK(s2 == NULL);
		CHECK(strstr(err, "locked") != NULL);
		spool_close(s2);
	}
	spool_close(s);
	spool_test_cleanup(dir);
}

/* Every row whose append and sync both said yes (what audit.c answers
 * durable) is in the file at the next open, exactly once. A write that
 * fails in the middle of a group (RLIMIT_FSIZE stands in for a full disk)
 * cuts the file back to its last synced size, taking the records appended
 * before it in the group: the group must then fail as a whole, not lose
 * its first rows behind a successful sync. The next group works again. */
static int spool_test_count(const char *dir, const char *want)
{
	char err[256], *ev, *tr;
	struct spool *s = spool_open(dir, 1 << 20, err, sizeof(err));
	int n = 0;

	if (s == NULL)
		return -1;
	while (spool_next(s, &ev, &tr)) {
		n += ev != NULL && strcmp(ev, want) == 0;
		free(ev);
		free(tr);
	}
	spool_close(s);
	return n;
}

TEST(spool_failed_append_fails_its_whole_group)
{
	char *dir = spool_test_dir(), err[256], big[2000];
	struct rlimit old, lim;
	void (*old_xfsz)(int);
	struct spool *s;
	bool a_ok, b_ok, c_ok, synced, d_ok, d_synced;

	REQUIRE(dir != NULL);
	s = spool_open(dir, 1 << 20, err, sizeof(err));
	REQUIRE(s != NULL);
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	old_xfsz = signal(SIGXFSZ, SIG_IGN);
	REQUIRE(getrlimit(RLIMIT_FSIZE, &old) == 0);
	lim = old;
	lim.rlim_cur = 1000;
	REQUIRE(setrlimit(RLIMIT_FSIZE, &lim) == 0);
	a_ok = spool_append(s, "{\"row\":\"A\"}", 11, "", 0);
	b_ok = spool_append(s, big, strlen(big), "", 0); /* short write */
	c_ok = spool_append(s, "{\"row\":\"C\"}", 11, "", 0);
	synced = spool_sync(s);
	/* the next group, still under the limit, works again */
	d_ok = spool_append(s, "{\"row\":\"D\"}", 11, "", 0);
	d_synced = spool_sync(s);
	setrlimit(RLIMIT_FSIZE, &old);
	signal(SIGXFSZ, old_xfsz);
	spool_close(s);
	CHECK(a_ok && !b_ok);
	CHECK(!(a_ok && synced) ||
	      spool_test_count(dir, "{\"row\":\"A\"}") == 1);
	CHECK(!(c_ok && synced) ||
	      spool_test_count(dir, "{\"row\":\"C\"}") == 1);
	CHECK(!synced);          /* the group lost A: it must not sync */
	CHECK(d_ok && d_synced);
	CHECK(spool_test_count(dir, "{\"row\":\"D\"}") == 1);
	spool_test_cleanup(dir);
}
