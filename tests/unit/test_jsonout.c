/* jsonout: reals print as short as they can and still read back exactly. */
#include <stdlib.h>
#include <string.h>

#include "jsonout.h"
#include "unit.h"

static char *dump_one(json_t *v)
{
	char *s = jsonout_dumps(v, JSON_COMPACT);

	json_decref(v);
	return s;
}

TEST(jsonout_short_reals_stay_short)
{
	char *s = dump_one(json_pack("{s:f,s:f,s:i}", "lat", 38.4555, "lon",
				     27.1199, "n", 7));

	REQUIRE(s != NULL);
	CHECK_STR(s, "{\"lat\":38.4555,\"lon\":27.1199,\"n\":7}");
	free(s);
}

TEST(jsonout_long_reals_read_back_exactly)
{
	double x = 0.1 + 0.2; /* 0.30000000000000004: needs 17 digits */
	char *s = dump_one(json_pack("[f,f]", x, 1.0 / 3.0));
	json_t *back;

	REQUIRE(s != NULL);
	back = json_loads(s, 0, NULL);
	REQUIRE(back != NULL);
	CHECK(json_real_value(json_array_get(back, 0)) == x);
	CHECK(json_real_value(json_array_get(back, 1)) == 1.0 / 3.0);
	CHECK(strstr(s, "0.30000000000000004") != NULL);
	json_decref(back);
	free(s);
}
