/* audit_row: the row JSON written by jsonw is what jansson's json_dumps
 * gave for the same members (BENCHMARKS.md optimisation 17), so spooled
 * rows and the batch statement read the same text as before. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>

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

/* SHA-256(prev || text) in lower-case hex, with a one-shot digest (not
 * the writer's reused context), into out (65 bytes); the raw digest into
 * raw. */
static void link_hash(const unsigned char prev[32], const char *text,
		      size_t len, unsigned char raw[32], char out[65])
{
	unsigned char *buf = malloc(32 + len);
	unsigned int n = 0;

	memcpy(buf, prev, 32);
	memcpy(buf + 32, text, len);
	EVP_Digest(buf, 32 + len, raw, &n, EVP_sha256(), NULL);
	free(buf);
	for (int i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", raw[i]);
}

/* The rows the chain tests link: an event that opened incident 3. */
static const struct audit_event_row link_event = {
	.accept_seq = 5, .event_id = "e-1", .source_id = "bus-1",
	.source_kind = "bus", .type = "panic", .outcome = "new",
	.incident_id = 3, .priority = 100, .received_at_ms = 1000,
	.payload_json = "{\"event_id\":\"e-1\"}",
};
static const struct audit_transition_row link_transition = {
	.transition_id = "3:open", .incident_id = 3, .to_state = "new",
	.actor = "alertd", .at_ms = 1000,
};

/* The chain alertd links (migration 008, docs/audit.md): each part's
 * canonical text is its row JSON with table, chain_seq and recorded_at
 * first; the parts are linked in order, event before transition; the
 * hex bytea holds the head's hash and then each part's. */
TEST(audit_row_link_texts_and_hashes)
{
	struct audit_event_row e = link_event;
	struct audit_transition_row t = link_transition;
	struct audit_list rows = {0};
	struct audit_link l;
	struct audit_row *r1, *r2;
	unsigned char head[32], h[32];
	char want[4096], hex[65], c1[512], c2[512], c3[512];
	const char *why;
	int k;

	for (int i = 0; i < 32; i++)
		head[i] = (unsigned char)i;
	r1 = audit_row_new(&e, &t, &why);
	e.event_id = "e-2";
	r2 = audit_row_new(&e, NULL, &why);
	REQUIRE(r1 && r2);
	audit_row_push(&rows, r1);
	audit_row_push(&rows, r2);
	REQUIRE(audit_row_link(&rows, 41, head, 1795000000123LL, &l));
	CHECK(l.n == 3 && l.seq == 44);
	CHECK(r1->ev_chain == 42 && r1->tr_chain == 43);
	CHECK(r2->ev_chain == 44 && r2->tr_chain == 0);

	snprintf(c1, sizeof(c1), "{\"table\":\"events\",\"chain_seq\":42,"
		 "\"recorded_at_ms\":1795000000123,%s", r1->ev_json + 1);
	snprintf(c2, sizeof(c2), "{\"table\":\"incident_transitions\","
		 "\"chain_seq\":43,\"recorded_at_ms\":1795000000123,%s",
		 r1->tr_json + 1);
	snprintf(c3, sizeof(c3), "{\"table\":\"events\",\"chain_seq\":44,"
		 "\"recorded_at_ms\":1795000000123,%s", r2->ev_json + 1);
	snprintf(want, sizeof(want), "[%s,%s]", c1, c3);
	CHECK_STR(l.events, want);
	snprintf(want, sizeof(want), "[%s]", c2);
	CHECK_STR(l.transitions, want);

	/* head, then SHA-256(prev || text) of each part in chain order */
	k = snprintf(want, sizeof(want), "\\x");
	for (int i = 0; i < 32; i++)
		k += snprintf(want + k, 3, "%02x", head[i]);
	link_hash(head, c1, strlen(c1), h, hex);
	k += snprintf(want + k, 65, "%s", hex);
	link_hash(h, c2, strlen(c2), h, hex);
	k += snprintf(want + k, 65, "%s", hex);
	link_hash(h, c3, strlen(c3), h, hex);
	snprintf(want + k, 65, "%s", hex);
	CHECK_STR(l.hashes, want);
	CHECK(memcmp(l.hash, h, 32) == 0);
	/* each canonical text is valid JSON */
	json_t *arr = json_loads(l.events, 0, NULL);
	CHECK(arr && json_array_size(arr) == 2 &&
	      json_integer_value(json_object_get(json_array_get(arr, 1),
						 "chain_seq")) == 44);
	json_decref(arr);
	audit_link_free(&l);
	CHECK(l.events == NULL && l.hashes == NULL);

	/* Linked again after another head: new numbers, new texts. */
	REQUIRE(audit_row_link(&rows, 0, head, 1, &l));
	CHECK(r1->ev_chain == 1 && r2->ev_chain == 3 && l.seq == 3);
	CHECK(strstr(l.events, "\"chain_seq\":1,\"recorded_at_ms\":1,") != NULL);
	audit_link_free(&l);
	audit_row_free(audit_row_pop(&rows));
	audit_row_free(audit_row_pop(&rows));
}

/* A duplicate delivery's rows are not linked: they take no chain_seq and
 * no hash, and go as plain rows (recorded_at first) in again_*, so the
 * rows around them are numbered as if they were not there. */
TEST(audit_row_link_leaves_redeliveries_out)
{
	struct audit_event_row e = link_event;
	struct audit_transition_row t = link_transition;
	struct audit_list rows = {0};
	struct audit_link l;
	struct audit_row *r1, *r2, *r3;
	unsigned char head[32] = {0};
	char want[1024];
	const char *why;

	r1 = audit_row_new(&e, NULL, &why);
	e.redelivery = true;
	r2 = audit_row_new(&e, &t, &why);
	e.redelivery = false;
	e.event_id = "e-2";
	r3 = audit_row_new(&e, NULL, &why);
	REQUIRE(r1 && r2 && r3);
	CHECK(!r1->redelivery && r2->redelivery && !r3->redelivery);
	audit_row_push(&rows, r1);
	audit_row_push(&rows, r2);
	audit_row_push(&rows, r3);
	REQUIRE(audit_row_link(&rows, 10, head, 77, &l));
	CHECK(l.n == 2 && l.seq == 12);
	CHECK(r1->ev_chain == 11 && r3->ev_chain == 12);
	CHECK(r2->ev_chain == 0 && r2->tr_chain == 0);
	CHECK_STR(l.transitions, "[]");
	/* the head's hash and two parts' */
	CHECK(strlen(l.hashes) == 2 + 3 * 64);
	snprintf(want, sizeof(want), "[{\"recorded_at_ms\":77,%s]",
		 r2->ev_json + 1);
	CHECK_STR(l.again_events, want);
	snprintf(want, sizeof(want), "[{\"recorded_at_ms\":77,%s]",
		 r2->tr_json + 1);
	CHECK_STR(l.again_transitions, want);
	audit_link_free(&l);
	CHECK(l.again_events == NULL);
	while ((r1 = audit_row_pop(&rows)))
		audit_row_free(r1);
}
