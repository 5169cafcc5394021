/* Unit tests of codec_json: every error code with its field, the check
 * order, and the canonical encodings. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec_json.h"
#include "unit.h"

static const struct evt_limits limits = {
	.max_id_len = 64, .max_attrs = 32, .max_text_len = 256};

#define EXAMPLE                                                                \
	"{\"event_id\":\"bus-1436-000123\",\"source\":{\"id\":\"bus-1436\","   \
	"\"kind\":\"bus\",\"zone\":\"Karsiyaka\",\"label\":\"ESHOT 1436, "     \
	"line 90\"},\"type\":\"panic\",\"occurred_at\":"                       \
	"\"2026-11-21T22:14:03.120Z\",\"location\":{\"lat\":38.4555,"          \
	"\"lon\":27.1199},\"attrs\":{\"route\":\"90\"}}"

/* A minimal valid event with `extra` members appended (", ..."). */
static char *minimal(const char *extra)
{
	char *s = NULL;

	if (asprintf(&s,
		     "{\"event_id\":\"e1\",\"source\":{\"id\":\"s1\","
		     "\"kind\":\"park\"},\"type\":\"test\"%s}",
		     extra) < 0)
		abort();
	return s;
}

static struct evt *decode(const char *json, struct evt_error *err)
{
	memset(err, 0, sizeof(*err));
	return codec_json_decode_event(json, strlen(json), &limits, err);
}

/* Decoding json fails with code and field. */
static bool fails_with(const char *json, const char *code, const char *field)
{
	struct evt_error err;
	struct evt *ev = decode(json, &err);

	if (ev != NULL) {
		evt_free(ev);
		fprintf(stderr, "  decoded, expected %s: %s\n", code, json);
		return false;
	}
	if (strcmp(err.code, code) != 0 || strcmp(err.field, field) != 0) {
		fprintf(stderr, "  got %s/%s, expected %s/%s: %s\n", err.code,
			err.field, code, field, json);
		return false;
	}
	return err.detail[0] != '\0';
}

static bool decodes(const char *json)
{
	struct evt_error err;
	struct evt *ev = decode(json, &err);

	if (ev == NULL) {
		fprintf(stderr, "  failed %s/%s: %s\n", err.code, err.field,
			json);
		return false;
	}
	evt_free(ev);
	return true;
}

/* fails_with on minimal(extra). */
static bool extra_fails(const char *extra, const char *code, const char *field)
{
	char *json = minimal(extra);
	bool ok = fails_with(json, code, field);

	free(json);
	return ok;
}

static bool extra_decodes(const char *extra)
{
	char *json = minimal(extra);
	bool ok = decodes(json);

	free(json);
	return ok;
}

TEST(json_decode_full_example)
{
	struct evt_error err;
	struct evt *ev = decode(EXAMPLE, &err);

	REQUIRE(ev != NULL);
	CHECK_STR(ev->event_id, "bus-1436-000123");
	CHECK_STR(ev->source_id, "bus-1436");
	CHECK(ev->kind == EVT_KIND_BUS);
	CHECK_STR(ev->zone, "Karsiyaka");
	CHECK_STR(ev->label, "ESHOT 1436, line 90");
	CHECK(ev->type == EVT_TYPE_PANIC);
	CHECK_STR(ev->occurred_at, "2026-11-21T22:14:03.120Z");
	CHECK(ev->occurred_at_ms == 1795299243120LL);
	CHECK(ev->has_location && ev->lat == 38.4555 && ev->lon == 27.1199);
	REQUIRE(ev->n_attrs == 1);
	CHECK_STR(ev->attrs[0].key, "route");
	CHECK_STR(ev->attrs[0].value, "90");
	evt_free(ev);
}

TEST(json_decode_minimal_and_optional_nulls)
{
	struct evt_error err;
	char *json = minimal(",\"occurred_at\":null,\"location\":null,"
			     "\"attrs\":null,\"unknown\":[1,{}]");
	struct evt *ev = decode(json, &err);

	free(json);
	REQUIRE(ev != NULL);
	CHECK(ev->kind == EVT_KIND_PARK && ev->type == EVT_TYPE_TEST);
	CHECK(ev->zone == NULL && ev->label == NULL);
	CHECK(ev->occurred_at == NULL);
	CHECK(!ev->has_location);
	CHECK(ev->n_attrs == 0);
	evt_free(ev);
	/* An empty optional string is the member left out. */
	ev = decode("{\"event_id\":\"e1\",\"source\":{\"id\":\"s1\",\"kind\":"
		    "\"bus\",\"zone\":\"\",\"label\":null},\"type\":\"fault\","
		    "\"occurred_at\":\"\"}",
		    &err);
	REQUIRE(ev != NULL);
	CHECK(ev->zone == NULL && ev->label == NULL && ev->occurred_at == NULL);
	evt_free(ev);
}

TEST(json_malformed)
{
	CHECK(fails_with("", "malformed_json", ""));
	CHECK(fails_with("not json", "malformed_json", ""));
	CHECK(fails_with("{\"event_id\":", "malformed_json", ""));
	CHECK(fails_with("[1,2]", "malformed_json", ""));
	CHECK(fails_with("\"bus\"", "malformed_json", ""));
	CHECK(fails_with("42", "malformed_json", ""));
	CHECK(fails_with("null", "malformed_json", ""));
	CHECK(fails_with("{} trailing", "malformed_json", ""));
	CHECK(fails_with("{\"a\":1,\"a\":2}", "malformed_json", ""));
	CHECK(fails_with("{\"event_id\":\"a\\u0000b\"}", "malformed_json",
			 ""));
}

TEST(json_missing_fields)
{
	CHECK(fails_with("{}", "missing_field", "event_id"));
	CHECK(fails_with("{\"event_id\":\"\",\"source\":{\"id\":\"s\","
			 "\"kind\":\"bus\"},\"type\":\"panic\"}",
			 "missing_field", "event_id"));
	CHECK(fails_with("{\"event_id\":null}", "missing_field", "event_id"));
	CHECK(fails_with("{\"event_id\":\"e\",\"type\":\"panic\"}",
			 "missing_field", "source.id"));
	CHECK(fails_with("{\"event_id\":\"e\",\"source\":null}",
			 "missing_field", "source.id"));
	CHECK(fails_with("{\"event_id\":\"e\",\"source\":{\"kind\":\"bus\"}}",
			 "missing_field", "source.id"));
	CHECK(fails_with("{\"event_id\":\"e\",\"source\":{\"id\":\"\"}}",
			 "missing_field", "source.id"));
	CHECK(fails_with("{\"event_id\":\"e\",\"source\":{\"id\":\"s\"},"
			 "\"type\":\"panic\"}",
			 "missing_field", "source.kind"));
	CHECK(fails_with("{\"event_id\":\"e\",\"source\":{\"id\":\"s\","
			 "\"kind\":\"\"},\"type\":\"panic\"}",
			 "missing_field", "source.kind"));
	CHECK(fails_with("{\"event_id\":\"e\",\"source\":{\"id\":\"s\","
			 "\"kind\":\"bus\"}}",
			 "missing_field", "type"));
	CHECK(fails_with("{\"event_id\":\"e\",\"source\":{\"id\":\"s\","
			 "\"kind\":\"bus\"},\"type\":\"\"}",
			 "missing_field", "type"));
}

TEST(json_invalid_enum)
{
	CHECK(fails_with("{\"event_id\":\"e\",\"source\":{\"id\":\"s\","
			 "\"kind\":\"Bus\"},\"type\":\"panic\"}",
			 "invalid_enum", "source.kind"));
	CHECK(fails_with("{\"event_id\":\"e\",\"source\":{\"id\":\"s\","
			 "\"kind\":\"bus\"},\"type\":\"alarm\"}",
			 "invalid_enum", "type"));
}

TEST(json_invalid_id)
{
	char id64[65], id65[66], *json;

	memset(id64, 'x', 64);
	id64[64] = '\0';
	memset(id65, 'x', 65);
	id65[65] = '\0';
	CHECK(fails_with("{\"event_id\":\"bus 1\",\"source\":{\"id\":\"s\","
			 "\"kind\":\"bus\"},\"type\":\"panic\"}",
			 "invalid_id", "event_id"));
	CHECK(fails_with("{\"event_id\":\"e\",\"source\":{\"id\":\"bus/1\","
			 "\"kind\":\"bus\"},\"type\":\"panic\"}",
			 "invalid_id", "source.id"));
	if (asprintf(&json, "{\"event_id\":\"%s\",\"source\":{\"id\":\"s\","
			    "\"kind\":\"bus\"},\"type\":\"panic\"}", id64) < 0)
		abort();
	CHECK(decodes(json));
	free(json);
	if (asprintf(&json, "{\"event_id\":\"%s\",\"source\":{\"id\":\"s\","
			    "\"kind\":\"bus\"},\"type\":\"panic\"}", id65) < 0)
		abort();
	CHECK(fails_with(json, "invalid_id", "event_id"));
	free(json);
	if (asprintf(&json, "{\"event_id\":\"e\",\"source\":{\"id\":\"%s\","
			    "\"kind\":\"bus\"},\"type\":\"panic\"}", id65) < 0)
		abort();
	CHECK(fails_with(json, "invalid_id", "source.id"));
	free(json);
}

TEST(json_wrong_types_name_the_field)
{
	CHECK(fails_with("{\"event_id\":5,\"source\":{\"id\":\"s\","
			 "\"kind\":\"bus\"},\"type\":\"panic\"}",
			 "invalid_field", "event_id"));
	CHECK(fails_with("{\"event_id\":\"e\",\"source\":\"s\","
			 "\"type\":\"panic\"}",
			 "invalid_field", "source"));
	CHECK(fails_with("{\"event_id\":\"e\",\"source\":{\"id\":7,"
			 "\"kind\":\"bus\"},\"type\":\"panic\"}",
			 "invalid_field", "source.id"));
	CHECK(fails_with("{\"event_id\":\"e\",\"source\":{\"id\":\"s\","
			 "\"kind\":1},\"type\":\"panic\"}",
			 "invalid_field", "source.kind"));
	CHECK(fails_with("{\"event_id\":\"e\",\"source\":{\"id\":\"s\","
			 "\"kind\":\"bus\"},\"type\":[\"panic\"]}",
			 "invalid_field", "type"));
	CHECK(fails_with("{\"event_id\":\"e\",\"source\":{\"id\":\"s\","
			 "\"kind\":\"bus\",\"zone\":5},\"type\":\"panic\"}",
			 "invalid_field", "source.zone"));
	CHECK(fails_with("{\"event_id\":\"e\",\"source\":{\"id\":\"s\","
			 "\"kind\":\"bus\",\"label\":true},\"type\":\"panic\"}",
			 "invalid_field", "source.label"));
	CHECK(extra_fails(",\"occurred_at\":1700000000", "invalid_field",
			  "occurred_at"));
	CHECK(extra_fails(",\"location\":[38,27]", "invalid_field",
			  "location"));
	CHECK(extra_fails(",\"location\":{\"lat\":\"38.4\",\"lon\":27}",
			  "invalid_field", "location.lat"));
	CHECK(extra_fails(",\"attrs\":[\"route\"]", "invalid_field", "attrs"));
	CHECK(extra_fails(",\"attrs\":{\"route\":90}", "invalid_field",
			  "attrs.route"));
	CHECK(extra_fails(",\"attrs\":{\"route\":null}", "invalid_field",
			  "attrs.route"));
}

TEST(json_location_needs_lat_and_lon)
{
	CHECK(extra_fails(",\"location\":{\"lat\":38.4}", "invalid_field",
			  "location.lon"));
	CHECK(extra_fails(",\"location\":{\"lon\":27.1}", "invalid_field",
			  "location.lat"));
	CHECK(extra_fails(",\"location\":{}", "invalid_field",
			  "location.lat"));
	/* Integers are numbers too. */
	CHECK(extra_decodes(",\"location\":{\"lat\":38,\"lon\":27}"));
}

TEST(json_location_ranges)
{
	CHECK(extra_decodes(",\"location\":{\"lat\":90,\"lon\":180}"));
	CHECK(extra_decodes(",\"location\":{\"lat\":-90.0,\"lon\":-180.0}"));
	CHECK(extra_fails(",\"location\":{\"lat\":90.0001,\"lon\":0}",
			  "invalid_field", "location.lat"));
	CHECK(extra_fails(",\"location\":{\"lat\":-91,\"lon\":0}",
			  "invalid_field", "location.lat"));
	CHECK(extra_fails(",\"location\":{\"lat\":0,\"lon\":180.5}",
			  "invalid_field", "location.lon"));
	CHECK(extra_fails(",\"location\":{\"lat\":0,\"lon\":-1e9}",
			  "invalid_field", "location.lon"));
}

TEST(json_occurred_at)
{
	CHECK(extra_decodes(",\"occurred_at\":\"2026-11-22T01:14:03+03:00\""));
	CHECK(extra_fails(",\"occurred_at\":\"2026-11-21T22:14:03\"",
			  "invalid_field", "occurred_at"));
	CHECK(extra_fails(",\"occurred_at\":\"21/11/2026\"", "invalid_field",
			  "occurred_at"));
}

/* A JSON attrs object with n members. */
static char *attrs_json(size_t n)
{
	size_t cap = 32 + n * 24, len;
	char *s = malloc(cap);

	if (s == NULL)
		abort();
	len = (size_t)snprintf(s, cap, ",\"attrs\":{");
	for (size_t i = 0; i < n; i++)
		len += (size_t)snprintf(s + len, cap - len, "%s\"k%zu\":\"v\"",
					i ? "," : "", i);
	snprintf(s + len, cap - len, "}");
	return s;
}

TEST(json_attrs_count_edge)
{
	char *a32 = attrs_json(32), *a33 = attrs_json(33);

	CHECK(extra_decodes(a32));
	CHECK(extra_fails(a33, "too_many_attrs", "attrs"));
	free(a32);
	free(a33);
}

TEST(json_text_too_long)
{
	char zone[300], *json;

	memset(zone, 'z', 257);
	zone[257] = '\0';
	if (asprintf(&json, "{\"event_id\":\"e\",\"source\":{\"id\":\"s\","
			    "\"kind\":\"bus\",\"zone\":\"%s\"},"
			    "\"type\":\"panic\"}", zone) < 0)
		abort();
	CHECK(fails_with(json, "invalid_field", "source.zone"));
	free(json);
	zone[256] = '\0';
	if (asprintf(&json, "{\"event_id\":\"e\",\"source\":{\"id\":\"s\","
			    "\"kind\":\"bus\",\"zone\":\"%s\"},"
			    "\"type\":\"panic\"}", zone) < 0)
		abort();
	CHECK(decodes(json));
	free(json);
}

TEST(json_check_order)
{
	/* missing_field before invalid_enum before invalid_id before
	 * invalid_field before too_many_attrs (docs/api.md). */
	CHECK(fails_with("{\"event_id\":\"bad id\",\"source\":{\"id\":\"s\","
			 "\"kind\":\"car\"}}",
			 "missing_field", "type"));
	CHECK(fails_with("{\"event_id\":\"bad id\",\"source\":{\"id\":\"s\","
			 "\"kind\":\"car\"},\"type\":\"panic\"}",
			 "invalid_enum", "source.kind"));
	CHECK(fails_with("{\"event_id\":\"bad id\",\"source\":{\"id\":\"s\","
			 "\"kind\":\"bus\",\"zone\":5},\"type\":\"panic\"}",
			 "invalid_id", "event_id"));
	{
		char *a33 = attrs_json(33), *json;

		if (asprintf(&json, "{\"event_id\":\"e\",\"source\":{\"id\":"
				    "\"s\",\"kind\":\"bus\"},\"type\":"
				    "\"panic\",\"location\":{\"lat\":99,"
				    "\"lon\":0}%s}", a33) < 0)
			abort();
		CHECK(fails_with(json, "invalid_field", "location.lat"));
		free(json);
		free(a33);
	}
}

TEST(json_encode_event_canonical)
{
	struct evt_error err;
	struct evt *ev = decode(EXAMPLE, &err);
	char *out;

	REQUIRE(ev != NULL);
	out = codec_json_encode_event(ev);
	CHECK_STR(out, EXAMPLE); /* 38.4555, not 38.455500000000001 */
	free(out);
	evt_free(ev);
}

TEST(json_encode_event_only_present_members)
{
	struct evt_error err;
	char *json = minimal(",\"attrs\":{},\"unknown\":1");
	struct evt *ev = decode(json, &err);
	char *out;

	free(json);
	REQUIRE(ev != NULL);
	out = codec_json_encode_event(ev);
	CHECK_STR(out, "{\"event_id\":\"e1\",\"source\":{\"id\":\"s1\","
		       "\"kind\":\"park\"},\"type\":\"test\"}");
	free(out);
	evt_free(ev);
}

TEST(json_encode_event_round_trip)
{
	struct evt_error err;
	char *json = minimal(",\"location\":{\"lat\":0.1,\"lon\":"
			     "-33.333333333333336},\"attrs\":{\"a\":\"\\u00e7"
			     "\",\"b\":\"x\\\"y\"},\"occurred_at\":"
			     "\"2026-11-22T01:14:03+03:00\"");
	struct evt *ev = decode(json, &err), *back;
	char *out;

	free(json);
	REQUIRE(ev != NULL);
	out = codec_json_encode_event(ev);
	REQUIRE(out != NULL);
	/* 17 digits where 15 would change the value (jansson's precision is
	 * per document, so lat gets 17 too; round-tripping is what counts). */
	CHECK(strstr(out, "\"lon\":-33.333333333333336}") != NULL);
	/* occurred_at is kept as sent. */
	CHECK(strstr(out, "2026-11-22T01:14:03+03:00") != NULL);
	back = decode(out, &err);
	REQUIRE(back != NULL);
	CHECK(back->lat == ev->lat && back->lon == ev->lon);
	CHECK(back->occurred_at_ms == ev->occurred_at_ms);
	REQUIRE(back->n_attrs == 2);
	CHECK_STR(back->attrs[0].value, "\xc3\xa7");
	CHECK_STR(back->attrs[1].value, "x\"y");
	free(out);
	evt_free(ev);
	evt_free(back);
}

TEST(json_encode_answer)
{
	char *out = codec_json_encode_answer("bus-1436-000123", 17,
					     EVT_OUTCOME_MERGED, 100);

	CHECK_STR(out, "{\"event_id\":\"bus-1436-000123\",\"incident_id\":17,"
		       "\"outcome\":\"merged\",\"priority\":100}");
	free(out);
	out = codec_json_encode_answer("e", 9007199254740993LL,
				       EVT_OUTCOME_DUPLICATE, -5);
	CHECK_STR(out, "{\"event_id\":\"e\",\"incident_id\":9007199254740993,"
		       "\"outcome\":\"duplicate\",\"priority\":-5}");
	free(out);
}

TEST(json_encode_error)
{
	char *out = codec_json_encode_error("missing_field", "source.id",
					    "source.id is required");

	CHECK_STR(out, "{\"error\":\"missing_field\",\"detail\":"
		       "\"source.id is required\",\"field\":\"source.id\"}");
	free(out);
	out = codec_json_encode_error("unavailable", NULL, "try again");
	CHECK_STR(out, "{\"error\":\"unavailable\",\"detail\":\"try again\"}");
	free(out);
	out = codec_json_encode_error("body_too_large", "", NULL);
	CHECK_STR(out, "{\"error\":\"body_too_large\",\"detail\":\"\"}");
	free(out);
	/* A detail that is not UTF-8 does not lose the whole answer. */
	out = codec_json_encode_error("invalid_field", "x", "bad \xff");
	CHECK(out != NULL && strstr(out, "\"error\":\"invalid_field\"") != NULL);
	free(out);
}
