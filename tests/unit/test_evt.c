/* Unit tests of evt: names, ids, RFC 3339 time, validation. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evt.h"
#include "unit.h"

static const struct evt_limits limits = {
	.max_id_len = 64, .max_attrs = 32, .max_text_len = 256};

/* A string of n copies of c (caller frees). */
static char *repeat(char c, size_t n)
{
	char *s = malloc(n + 1);

	if (s == NULL)
		abort();
	memset(s, c, n);
	s[n] = '\0';
	return s;
}

static char *xstrdup(const char *s)
{
	return s ? strdup(s) : NULL;
}

/* A valid event with every member set. */
static struct evt *make_event(void)
{
	struct evt *ev = calloc(1, sizeof(*ev));

	if (ev == NULL)
		abort();
	ev->event_id = xstrdup("bus-1436-000123");
	ev->source_id = xstrdup("bus-1436");
	ev->kind = EVT_KIND_BUS;
	ev->zone = xstrdup("Karsiyaka");
	ev->label = xstrdup("ESHOT 1436, line 90");
	ev->type = EVT_TYPE_PANIC;
	ev->occurred_at = xstrdup("2026-11-21T22:14:03.120Z");
	ev->has_location = true;
	ev->lat = 38.4555;
	ev->lon = 27.1199;
	ev->n_attrs = 1;
	ev->attrs = calloc(1, sizeof(*ev->attrs));
	ev->attrs[0].key = xstrdup("route");
	ev->attrs[0].value = xstrdup("90");
	return ev;
}

static void set_attrs(struct evt *ev, size_t n)
{
	for (size_t i = 0; i < ev->n_attrs; i++) {
		free(ev->attrs[i].key);
		free(ev->attrs[i].value);
	}
	free(ev->attrs);
	ev->attrs = calloc(n + 1, sizeof(*ev->attrs));
	ev->n_attrs = n;
	for (size_t i = 0; i < n; i++) {
		char key[24];

		snprintf(key, sizeof(key), "k%zu", i);
		ev->attrs[i].key = xstrdup(key);
		ev->attrs[i].value = xstrdup("v");
	}
}

/* Validates ev, frees it, and checks the error code and field. */
static bool fails_with(struct evt *ev, const char *code, const char *field)
{
	struct evt_error err = {0};
	bool ok = evt_validate(ev, &limits, &err);

	evt_free(ev);
	return !ok && err.code != NULL && strcmp(err.code, code) == 0 &&
	       strcmp(err.field, field) == 0 && err.detail[0] != '\0';
}

/* Validates ev, frees it, and tells whether it was valid. */
static bool passes(struct evt *ev)
{
	struct evt_error err = {0};
	bool ok = evt_validate(ev, &limits, &err);

	evt_free(ev);
	return ok;
}

TEST(evt_names_round_trip)
{
	const char *kinds[] = {"bus",  "ferry",	       "stop",
			       "park", "support_line", "other"};
	const char *types[] = {"panic", "silent_alarm", "call_request",
			       "callback_request", "fault", "heartbeat",
			       "test"};
	const char *outcomes[] = {"new", "merged", "duplicate"};

	for (int i = 0; i < EVT_KIND__COUNT; i++) {
		enum evt_kind k = EVT_KIND__COUNT;

		CHECK_STR(evt_kind_name((enum evt_kind)i), kinds[i]);
		CHECK(evt_kind_parse(kinds[i], &k) && (int)k == i);
	}
	for (int i = 0; i < EVT_TYPE__COUNT; i++) {
		enum evt_type t = EVT_TYPE__COUNT;

		CHECK_STR(evt_type_name((enum evt_type)i), types[i]);
		CHECK(evt_type_parse(types[i], &t) && (int)t == i);
	}
	for (int i = 0; i < EVT_OUTCOME__COUNT; i++) {
		enum evt_outcome o = EVT_OUTCOME__COUNT;

		CHECK_STR(evt_outcome_name((enum evt_outcome)i), outcomes[i]);
		CHECK(evt_outcome_parse(outcomes[i], &o) && (int)o == i);
	}
}

TEST(evt_names_unknown)
{
	enum evt_kind k;
	enum evt_type t;
	enum evt_outcome o;

	CHECK(!evt_kind_parse("Bus", &k));
	CHECK(!evt_kind_parse("", &k));
	CHECK(!evt_kind_parse(NULL, &k));
	CHECK(!evt_type_parse("alarm", &t));
	CHECK(!evt_outcome_parse("old", &o));
	CHECK_STR(evt_kind_name(EVT_KIND__COUNT), "unknown");
	CHECK_STR(evt_type_name((enum evt_type)-1), "unknown");
	CHECK_STR(evt_outcome_name(EVT_OUTCOME__COUNT), "unknown");
}

TEST(evt_id_pattern_and_length)
{
	char *id64 = repeat('a', 64), *id65 = repeat('a', 65);

	CHECK(evt_id_valid("a", 64));
	CHECK(evt_id_valid("AZaz09._:-", 64));
	CHECK(evt_id_valid(id64, 64));
	CHECK(!evt_id_valid(id65, 64));
	CHECK(!evt_id_valid("", 64));
	CHECK(!evt_id_valid(NULL, 64));
	CHECK(!evt_id_valid("bus 1", 64));
	CHECK(!evt_id_valid("bus/1", 64));
	CHECK(!evt_id_valid("bus\xc3\xa7", 64)); /* non-ASCII */
	CHECK(evt_id_valid("abc", 3));
	CHECK(!evt_id_valid("abcd", 3));
	free(id64);
	free(id65);
}

TEST(evt_error_set_fields)
{
	struct evt_error err;
	char *long_field = repeat('f', 100);

	evt_error_set(&err, "invalid_field", "source.zone", "%s is %d", "x", 7);
	CHECK_STR(err.code, "invalid_field");
	CHECK_STR(err.field, "source.zone");
	CHECK_STR(err.detail, "x is 7");
	evt_error_set(&err, "malformed_json", NULL, "bad");
	CHECK_STR(err.field, "");
	evt_error_set(&err, "invalid_field", long_field, "bad");
	CHECK(strlen(err.field) == sizeof(err.field) - 1);
	evt_error_set(NULL, "x", "y", "z"); /* must not crash */
	free(long_field);
}

TEST(evt_parse_time_utc_and_offsets)
{
	int64_t ms = 0;

	CHECK(evt_parse_time("2026-11-21T22:14:03.120Z", &ms) &&
	      ms == 1795299243120LL);
	CHECK(evt_parse_time("2026-11-21T22:14:03Z", &ms) &&
	      ms == 1795299243000LL);
	/* The same instant written in Izmir time. */
	CHECK(evt_parse_time("2026-11-22T01:14:03.120+03:00", &ms) &&
	      ms == 1795299243120LL);
	CHECK(evt_parse_time("2000-01-01T00:00:00-05:30", &ms) &&
	      ms == 946704600000LL);
	CHECK(evt_parse_time("2026-11-21t22:14:03z", &ms) &&
	      ms == 1795299243000LL);
	CHECK(evt_parse_time("1969-12-31T23:59:59Z", &ms) && ms == -1000);
	CHECK(evt_parse_time("2024-02-29T00:00:00Z", &ms) &&
	      ms == 1709164800000LL);
}

TEST(evt_parse_time_fraction)
{
	int64_t ms = 0;

	CHECK(evt_parse_time("2026-11-21T22:14:03.1Z", &ms) &&
	      ms == 1795299243100LL);
	/* Sub-millisecond digits are truncated, not rounded. */
	CHECK(evt_parse_time("2026-11-21T22:14:03.123999Z", &ms) &&
	      ms == 1795299243123LL);
	CHECK(!evt_parse_time("2026-11-21T22:14:03.Z", &ms));
}

TEST(evt_parse_time_rejects)
{
	const char *bad[] = {
		"",
		"2026-11-21",
		"2026-11-21T22:14:03",          /* no offset */
		"2026-11-21 22:14:03Z",         /* space */
		"2026-13-01T00:00:00Z",
		"2026-00-01T00:00:00Z",
		"2026-02-29T00:00:00Z",         /* not a leap year */
		"2026-04-31T00:00:00Z",
		"2026-11-21T24:00:00Z",
		"2026-11-21T22:60:00Z",
		"2026-11-21T22:14:61Z",
		"2026-11-21T22:14:03+03:60",
		"2026-11-21T22:14:03+24:00",
		"2026-11-21T22:14:03+0300",
		"2026-11-21T22:14:03Zjunk",
		"26-11-21T22:14:03Z",
		"2026-1-21T22:14:03Z",
		"yesterday",
	};
	int64_t ms;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK(!evt_parse_time(bad[i], &ms));
	CHECK(!evt_parse_time(NULL, &ms));
}

TEST(evt_format_time_known)
{
	char buf[32];

	evt_format_time(1795299243120LL, buf, sizeof(buf));
	CHECK_STR(buf, "2026-11-21T22:14:03.120Z");
	evt_format_time(0, buf, sizeof(buf));
	CHECK_STR(buf, "1970-01-01T00:00:00.000Z");
	evt_format_time(-1, buf, sizeof(buf));
	CHECK_STR(buf, "1969-12-31T23:59:59.999Z");
	evt_format_time(1709164800005LL, buf, 25); /* exactly 24 chars + NUL */
	CHECK_STR(buf, "2024-02-29T00:00:00.005Z");
}

TEST(evt_time_round_trip)
{
	const int64_t values[] = {0, 1, 999, 1000, -1, -999, 1795299243120LL,
				  951782400000LL /* 2000-02-29 */,
				  253402300799999LL /* 9999-12-31 */};
	char buf[32];

	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		int64_t back = 42;

		evt_format_time(values[i], buf, sizeof(buf));
		CHECK(evt_parse_time(buf, &back) && back == values[i]);
	}
}

TEST(evt_validate_ok_fills_time)
{
	struct evt *ev = make_event();
	struct evt_error err = {0};

	CHECK(evt_validate(ev, &limits, &err));
	CHECK(ev->occurred_at_ms == 1795299243120LL);
	evt_free(ev);
	/* No limits: the contract defaults. */
	ev = make_event();
	CHECK(evt_validate(ev, NULL, &err));
	evt_free(ev);
}

TEST(evt_validate_optional_members_absent)
{
	struct evt *ev = make_event();
	struct evt_error err = {0};

	free(ev->zone);
	free(ev->label);
	free(ev->occurred_at);
	ev->zone = ev->label = ev->occurred_at = NULL;
	ev->has_location = false;
	ev->lat = 1000; /* ignored without has_location */
	set_attrs(ev, 0);
	CHECK(evt_validate(ev, &limits, &err));
	evt_free(ev);
}

TEST(evt_validate_ids)
{
	struct evt *ev;

	ev = make_event();
	free(ev->event_id);
	ev->event_id = NULL;
	CHECK(fails_with(ev, "missing_field", "event_id"));

	ev = make_event();
	free(ev->source_id);
	ev->source_id = xstrdup("");
	CHECK(fails_with(ev, "missing_field", "source.id"));

	ev = make_event();
	free(ev->event_id);
	ev->event_id = repeat('e', 65);
	CHECK(fails_with(ev, "invalid_id", "event_id"));

	ev = make_event();
	free(ev->event_id);
	ev->event_id = repeat('e', 64);
	CHECK(passes(ev));

	ev = make_event();
	free(ev->source_id);
	ev->source_id = xstrdup("bus 1436");
	CHECK(fails_with(ev, "invalid_id", "source.id"));

	/* invalid_id comes before invalid_field. */
	ev = make_event();
	free(ev->source_id);
	ev->source_id = xstrdup("bus/1");
	ev->lat = 100;
	CHECK(fails_with(ev, "invalid_id", "source.id"));
}

TEST(evt_validate_text_lengths)
{
	struct evt *ev;

	ev = make_event();
	free(ev->zone);
	ev->zone = repeat('z', 256);
	CHECK(passes(ev));

	ev = make_event();
	free(ev->zone);
	ev->zone = repeat('z', 257);
	CHECK(fails_with(ev, "invalid_field", "source.zone"));

	ev = make_event();
	free(ev->label);
	ev->label = repeat('l', 257);
	CHECK(fails_with(ev, "invalid_field", "source.label"));

	ev = make_event();
	free(ev->attrs[0].value);
	ev->attrs[0].value = repeat('v', 257);
	CHECK(fails_with(ev, "invalid_field", "attrs.route"));

	ev = make_event();
	free(ev->attrs[0].key);
	ev->attrs[0].key = repeat('k', 257);
	CHECK(fails_with(ev, "invalid_field", "attrs"));

	ev = make_event();
	free(ev->attrs[0].key);
	ev->attrs[0].key = xstrdup("");
	CHECK(fails_with(ev, "invalid_field", "attrs"));

	/* Text must be UTF-8 (protobuf-c does not check it). */
	ev = make_event();
	free(ev->zone);
	ev->zone = xstrdup("Kar\xff");
	CHECK(fails_with(ev, "invalid_field", "source.zone"));

	ev = make_event();
	free(ev->zone);
	ev->zone = xstrdup("Kar\xc5\x9f\xc4\xb1yaka"); /* Karşıyaka */
	CHECK(passes(ev));

	ev = make_event();
	free(ev->label);
	ev->label = xstrdup("\xed\xa0\x80"); /* a UTF-16 surrogate */
	CHECK(fails_with(ev, "invalid_field", "source.label"));
}

TEST(evt_validate_occurred_at)
{
	struct evt *ev = make_event();

	free(ev->occurred_at);
	ev->occurred_at = xstrdup("2026-11-21T22:14:03");
	CHECK(fails_with(ev, "invalid_field", "occurred_at"));
}

TEST(evt_validate_location_ranges)
{
	const struct {
		double lat, lon;
		const char *field; /* NULL: valid */
	} cases[] = {
		{90.0, 180.0, NULL},
		{-90.0, -180.0, NULL},
		{0.0, 0.0, NULL},
		{90.000001, 0.0, "location.lat"},
		{-90.5, 0.0, "location.lat"},
		{0.0, 180.1, "location.lon"},
		{0.0, -181.0, "location.lon"},
		{NAN, 0.0, "location.lat"},
		{0.0, NAN, "location.lon"},
		{INFINITY, 0.0, "location.lat"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct evt *ev = make_event();
		struct evt_error err = {0};
		bool ok;

		ev->lat = cases[i].lat;
		ev->lon = cases[i].lon;
		ok = evt_validate(ev, &limits, &err);
		if (cases[i].field == NULL)
			CHECK(ok);
		else
			CHECK(!ok && strcmp(err.code, "invalid_field") == 0 &&
			      strcmp(err.field, cases[i].field) == 0);
		evt_free(ev);
	}
}

TEST(evt_validate_attrs_count)
{
	struct evt *ev;

	ev = make_event();
	set_attrs(ev, 32);
	CHECK(passes(ev));

	ev = make_event();
	set_attrs(ev, 33);
	CHECK(fails_with(ev, "too_many_attrs", "attrs"));
}
