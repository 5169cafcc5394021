/* Unit tests of numtext: the same text printf writes. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "numtext.h"
#include "unit.h"

/* What codec_json wrote before numtext: the shortest "%.Ng", N = 15..17,
 * that reads back as v. */
static void real_by_printf(double v, char *buf, size_t len)
{
	for (int p = 15; p <= 17; p++) {
		snprintf(buf, len, "%.*g", p, v);
		if (strtod(buf, NULL) == v)
			return;
	}
}

static bool real_same(double v)
{
	char want[64], got[NUMTEXT_REAL_LEN];
	size_t n = numtext_real(got, v);

	real_by_printf(v, want, sizeof(want));
	if (strcmp(want, got) != 0 || n != strlen(got) ||
	    strtod(got, NULL) != v) {
		fprintf(stderr, "numtext_real(%.17g): \"%s\", printf \"%s\"\n",
			v, got, want);
		return false;
	}
	return true;
}

static bool i64_same(int64_t v)
{
	char want[32], got[NUMTEXT_I64_LEN];
	size_t n = numtext_i64(got, v);

	snprintf(want, sizeof(want), "%" PRId64, v);
	return strcmp(want, got) == 0 && n == strlen(want);
}

TEST(numtext_i64_as_printf)
{
	CHECK(i64_same(0));
	CHECK(i64_same(7));
	CHECK(i64_same(-7));
	CHECK(i64_same(10));
	CHECK(i64_same(1763800000123));
	CHECK(i64_same(INT64_MAX));
	CHECK(i64_same(INT64_MIN));
	CHECK(i64_same(INT64_MIN + 1));
	for (int64_t v = 1; v > 0 && v < INT64_MAX / 3; v = v * 3 + 1)
		CHECK(i64_same(v) && i64_same(-v));
}

TEST(numtext_real_edges_as_printf)
{
	static const double v[] = {
		38.4555, 27.1199, -33.8688, 151.2093, 0.0001, -0.0001,
		0.00012345, 0.1, 0.5, 1, -1, 90, -180, 38.4555123, 38.45551234,
		99999999.9999999, 1e8, 9.9999999e7, 1e-4, 9.99e-5, 1e-5, 0,
		-0.0, 0.1 + 0.2, 1.0 / 3, 2.0 / 3, 1e15, 1e16, 123456789012345.6,
		1e300, -1e-300, 5e-324, 4503599627370496.0, 12.3456785,
		12.34567849999999, 0.30000000000000004,
	};

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
		CHECK(real_same(v[i]));
}

/* Coordinates with 0 to 7 decimals, and doubles of every size. */
TEST(numtext_real_many_as_printf)
{
	uint64_t x = 88172645463325252ULL;
	int bad = 0;

	for (int i = 0; i < 300000 && bad < 5; i++) {
		double v;
		int places = i % 9;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		if (places <= 7) {
			double scale = pow(10, places);

			v = (double)(int64_t)(x % 3600000000ULL) / 1e7 *
			    (x & 1 ? 1 : -1);
			v = round(v * scale) / scale;
			if (i % 7 == 0)
				v *= 1e4 * (double)(x % 11);
		} else {
			uint64_t bits = x;

			memcpy(&v, &bits, sizeof(v));
			if (!isfinite(v))
				continue;
		}
		if (!real_same(v))
			bad++;
	}
	CHECK(bad == 0);
}
