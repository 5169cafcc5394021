/* audit_row: the row JSON written by jsonw is what jansson's json_dumps
 * gave for the same members (BENCHMARKS.md optimisation 17), so spooled
 * rows and the batch statement read the same text as before. */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "audit_row.h"
#include "unit.h"

static json_t *str_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

/* The event row as the jansson encoder built it (payload given). */
static char *jansson_event(const struct audit_event_row *e, json_t *payload)
{
	json_t *o = json_object();
	char *out;

	json_object_set_new(o, "accept_seq", json_integer(e->accept_seq));
	json_object_set_new(o, "event_id", str_or_null(e->event_id));
	json_object_set_new(o, "source_id", str_or_null(e->source_id));
	json_object_set_new(o, "source_kind", str_or_null(e->source_kind));
	json_object_set_new(o, "type", str_or_null(e->type));
	json_object_set_new(o, "outcome", str_or_null(e->outcome));
	json_object_set_new(o, "incident_id", json_integer(e->incident_id));
	json_object_set_new(o, "priority", json_integer(e->priority));
	json_object_set_new(o, "received_at_ms",
			    json_integer(e->received_at_ms));
	if (e->has_occurred_at)
		json_object_set_new(o, "occurred_at_ms",
				    json_integer(e->occurred_at_ms));
	json_object_set_new(o, "payload", payload);
	out = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return out;
}

TEST(audit_row_event_json_is_janssons)
{
	const char *payload = "{\"event_id\":\"e\\\"1\",\"n\":1}";
	struct audit_event_row e = {
		.accept_seq = 9007199254740993LL, .event_id = "e\"1\\x",
		.source_id = "bus-\xc3\xa7\x01\x1f", .source_kind = "bus",
		.type = "panic", .outcome = "new", .incident_id = -1,
		.priority = 999, .has_occurred_at = true,
		.occurred_at_ms = 1795271158055LL,
		.received_at_ms = 1795271158056LL, .payload_json = payload,
	};
	const char *why = NULL;
	struct audit_row *r = audit_row_new(&e, NULL, &why);
	char *want = jansson_event(&e, json_loads(payload, 0, NULL));

	REQUIRE(r != NULL);
	REQUIRE(want != NULL);
	CHECK_STR(r->ev_json, want);
	audit_row_free(r);
	free(want);

	/* No occurred_at; a payload with a raw newline goes as a string. */
	e.has_occurred_at = false;
	e.payload_json = "{\"a\":\n1}";
	r = audit_row_new(&e, NULL, &why);
	want = jansson_event(&e, json_string(e.payload_json));
	REQUIRE(r != NULL);
	REQUIRE(want != NULL);
	CHECK_STR(r->ev_json, want);
	audit_row_free(r);
	free(want);

	/* occurred_at at the epoch (a device without a clock) is a time,
	 * not an absent member. */
	e.has_occurred_at = true;
	e.occurred_at_ms = 0;
	r = audit_row_new(&e, NULL, &why);
	REQUIRE(r != NULL);
	CHECK(strstr(r->ev_json, ",\"occurred_at_ms\":0,") != NULL);
	audit_row_free(r);
}

TEST(audit_row_transition_json_is_janssons)
{
	struct audit_transition_row t = {
		.transition_id = "7:1", .incident_id = 7, .from_state = NULL,
		.to_state = "new", .actor = "op \"\xe2\x82\xac\"",
		.detail_json = "{\"note\":\"a\\nb\"}", .at_ms = 1795271158055LL,
	};
	const char *why = NULL;
	struct audit_row *r = audit_row_new(NULL, &t, &why);
	json_t *o = json_pack("{s:s,s:I,s:n,s:s,s:s,s:s,s:I}", "transition_id",
			      t.transition_id, "incident_id",
			      (json_int_t)t.incident_id, "from_state",
			      "to_state", t.to_state, "actor", t.actor,
			      "detail", t.detail_json, "at_ms",
			      (json_int_t)t.at_ms);
	char *want = json_dumps(o, JSON_COMPACT);

	REQUIRE(r != NULL);
	REQUIRE(want != NULL);
	CHECK_STR(r->tr_json, want);
	json_decref(o);
	free(want);
	audit_row_free(r);
}

TEST(audit_row_refuses_invalid_utf8)
{
	struct audit_event_row e = {
		.accept_seq = 1, .event_id = "e1", .source_id = "bus-\xff",
		.source_kind = "bus", .type = "panic", .outcome = "new",
		.incident_id = 1, .priority = 1, .received_at_ms = 1,
		.payload_json = "{}",
	};
	const char *why = NULL;

	CHECK(audit_row_new(&e, NULL, &why) == NULL);
	CHECK(why != NULL);
}
