/* tzclock: the clocks of alertd (wall and monotonic) and local time in a named tz database
 * zone, for the night window of the priority rules.
 *
 * tzclock_now_ms() is the decision clock. For tests only, the environment
 * variable ALERTD_FAKE_NOW_MS (unix ms) makes it start at that instant and
 * advance with the real clock from there; it is read once and ignored when
 * unset or malformed. Production never sets it.
 *
 * The local time of a zone is computed without changing the process's
 * zone for longer than one localtime_r call (alertd has one thread), and
 * the UTC offset is cached per zone and quarter hour of UTC: every
 * transition of the tz database falls on a quarter hour. */
#ifndef ALERTD_TZCLOCK_H
#define ALERTD_TZCLOCK_H

#include <stdbool.h>
#include <stdint.h>

/* Unix ms: CLOCK_REALTIME, or the fake clock of ALERTD_FAKE_NOW_MS. Every
 * wall-clock time alertd records or compares with Redis comes from here. */
int64_t tzclock_now_ms(void);

/* Milliseconds of CLOCK_MONOTONIC: for deadlines, backoff and intervals,
 * which must not jump with the wall clock. */
int64_t tzclock_mono_ms(void);

/* The minute of the local day (0..1439) of utc_ms in zone ("Europe/
 * Istanbul"). false when the zone is unknown. */
bool tzclock_local_minute(const char *zone, int64_t utc_ms, int *minute)
	__attribute__((warn_unused_result));

/* true when minute lies in the window [start, end) of the local day; a
 * window with end <= start wraps over midnight (22:00-06:00). */
bool tzclock_in_window(int minute, int start, int end);

#endif
