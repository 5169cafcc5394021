/* tzclock: the night window across the time-zone boundary. */
#include "tzclock.h"
#include "unit.h"

/* 2026-11-21T18:59:59Z is 21:59:59 in Istanbul (UTC+3 all year). */
#define T_2159_IST 1795287599000LL

TEST(tzclock_istanbul_night_boundary)
{
	int m = -1;

	REQUIRE(tzclock_local_minute("Europe/Istanbul", T_2159_IST, &m));
	CHECK(m == 21 * 60 + 59);
	CHECK(!tzclock_in_window(m, 22 * 60, 6 * 60));
	REQUIRE(tzclock_local_minute("Europe/Istanbul", T_2159_IST + 1000, &m));
	CHECK(m == 22 * 60);
	CHECK(tzclock_in_window(m, 22 * 60, 6 * 60));
	/* 05:59 local is still night, 06:00 is not. */
	REQUIRE(tzclock_local_minute("Europe/Istanbul",
				     T_2159_IST + 1000 + 479 * 60000LL, &m));
	CHECK(m == 5 * 60 + 59 && tzclock_in_window(m, 22 * 60, 6 * 60));
	REQUIRE(tzclock_local_minute("Europe/Istanbul",
				     T_2159_IST + 1000 + 480 * 60000LL, &m));
	CHECK(m == 6 * 60 && !tzclock_in_window(m, 22 * 60, 6 * 60));
	/* The same instant in UTC is 18:59: the zone matters. */
	REQUIRE(tzclock_local_minute("UTC", T_2159_IST, &m));
	CHECK(m == 18 * 60 + 59);
}

TEST(tzclock_dst_zone)
{
	int m = -1;

	/* Berlin: 2026-07-01T20:30Z is 22:30 (CEST), 2026-01-15T20:30Z 21:30. */
	REQUIRE(tzclock_local_minute("Europe/Berlin", 1782937800000LL, &m));
	CHECK(m == 22 * 60 + 30);
	REQUIRE(tzclock_local_minute("Europe/Berlin", 1768509000000LL, &m));
	CHECK(m == 21 * 60 + 30);
}

TEST(tzclock_window_shapes)
{
	CHECK(tzclock_in_window(0, 22 * 60, 6 * 60));
	CHECK(!tzclock_in_window(12 * 60, 22 * 60, 6 * 60));
	CHECK(tzclock_in_window(13 * 60, 12 * 60, 14 * 60));
	CHECK(!tzclock_in_window(14 * 60, 12 * 60, 14 * 60));
	CHECK(!tzclock_in_window(10, 5, 5));
}
