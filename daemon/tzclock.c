/* tzclock: decision clock and local time in a named zone. */
#include "tzclock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

#define TZCLOCK_QUARTER_MS (15 * 60 * 1000LL)

static struct {
	bool read;
	bool fake;
	int64_t fake_start_ms;     /* the fake instant at fake_mono */
	struct timespec fake_mono; /* when the fake clock started */
	/* Cache of the last offset computed. */
	char zone[128];
	int64_t quarter;           /* utc_ms / TZCLOCK_QUARTER_MS */
	long offset_s;
	bool cached;
} tzclock;

static void tzclock_read_env(void)
{
	const char *v = getenv("ALERTD_FAKE_NOW_MS");
	char *end;
	long long ms;

	tzclock.read = true;
	if (v == NULL || *v == '\0')
		return;
	ms = strtoll(v, &end, 10);
	if (*end != '\0' || ms <= 0) {
		log_warn("tzclock: ignoring a malformed ALERTD_FAKE_NOW_MS");
		return;
	}
	tzclock.fake = true;
	tzclock.fake_start_ms = ms;
	clock_gettime(CLOCK_MONOTONIC, &tzclock.fake_mono);
	log_warn("tzclock: TEST CLOCK: ALERTD_FAKE_NOW_MS=%lld", ms);
}

int64_t tzclock_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t tzclock_now_ms(void)
{
	struct timespec ts;

	if (!tzclock.read)
		tzclock_read_env();
	if (tzclock.fake) {
		clock_gettime(CLOCK_MONOTONIC, &ts);
		return tzclock.fake_start_ms +
		       (int64_t)(ts.tv_sec - tzclock.fake_mono.tv_sec) * 1000 +
		       (ts.tv_nsec - tzclock.fake_mono.tv_nsec) / 1000000;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The UTC offset of zone at t: TZ is set for one localtime_r and put back. */
static bool tzclock_offset(const char *zone, time_t t, long *offset_s)
{
	const char *old = getenv("TZ");
	char *saved = old != NULL ? strdup(old) : NULL;
	char tzval[160];
	struct tm tm;
	bool ok;

	if (old != NULL && saved == NULL)
		return false;
	/* ":" + name: a file of the tz database, never a POSIX rule. */
	snprintf(tzval, sizeof(tzval), ":%s", zone);
	setenv("TZ", tzval, 1);
	tzset();
	ok = localtime_r(&t, &tm) != NULL;
	/* glibc falls back to UTC for an unknown zone: tm_zone says so. */
	if (ok && strcmp(zone, "UTC") != 0 && strcmp(zone, "Etc/UTC") != 0 &&
	    tm.tm_gmtoff == 0 && tm.tm_zone != NULL &&
	    strcmp(tm.tm_zone, "UTC") == 0 && strchr(zone, '/') == NULL)
		ok = false;
	if (ok)
		*offset_s = tm.tm_gmtoff;
	if (saved != NULL) {
		setenv("TZ", saved, 1);
		free(saved);
	} else {
		unsetenv("TZ");
	}
	tzset();
	return ok;
}

bool tzclock_local_minute(const char *zone, int64_t utc_ms, int *minute)
{
	int64_t quarter = utc_ms / TZCLOCK_QUARTER_MS;
	int64_t local_s;
	long off;

	if (tzclock.cached && quarter == tzclock.quarter &&
	    strcmp(zone, tzclock.zone) == 0) {
		off = tzclock.offset_s;
	} else {
		if (strlen(zone) >= sizeof(tzclock.zone) ||
		    !tzclock_offset(zone, (time_t)(utc_ms / 1000), &off))
			return false;
		strcpy(tzclock.zone, zone);
		tzclock.quarter = quarter;
		tzclock.offset_s = off;
		tzclock.cached = true;
	}
	local_s = utc_ms / 1000 + off;
	local_s %= 86400;
	if (local_s < 0)
		local_s += 86400;
	*minute = (int)(local_s / 60);
	return true;
}

bool tzclock_in_window(int minute, int start, int end)
{
	if (start == end)
		return false;
	if (start < end)
		return minute >= start && minute < end;
	return minute >= start || minute < end;
}
