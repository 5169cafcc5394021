/* spool: records survive close/reopen, a torn or corrupt tail is cut off
 * at the last good record, the bound is kept, replay reads in order. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
