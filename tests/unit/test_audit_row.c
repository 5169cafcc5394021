/* audit_row: the row JSON written by jsonw is what jansson's json_dumps
 * gave for the same members (BENCHMARKS.md optimisation 17), so spooled
 * rows and the batch statement read the same text as before. */
#include <endian.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "audit.h"
#include "audit_row.h"
#include "pgarray.h"
#include "unit.h"

/* Reads a one-dimensional binary array (pgarray.h) as array_recv does:
 * its element type into *oid and element i's bytes (NULL for a NULL
 * element, len -1), or false when the bytes are not such an array or i
 * is past its end. */
static bool array_elem(const char *a, int alen, int i, uint32_t *oid,
		       const char **elem, int32_t *len)
{
	uint32_t h[5], l;
	int at = 20, n;

	if (alen < 12)
		return false;
	memcpy(h, a, alen < 20 ? 12 : 20);
	*oid = be32toh(h[2]);
	if (be32toh(h[0]) == 0)
		return alen == 12 && i < 0;
	if (be32toh(h[0]) != 1 || be32toh(h[4]) != 1)
		return false;
	n = (int)be32toh(h[3]);
	for (int k = 0; k < n; k++) {
		if (at + 4 > alen)
			return false;
		memcpy(&l, a + at, 4);
		*len = (int32_t)be32toh(l);
		*elem = *len < 0 ? NULL : a + at + 4;
		at += 4 + (*len < 0 ? 0 : *len);
		if (at > alen)
			return false;
		if (k == i)
			return true;
	}
	return i < 0 && at == alen;  /* i = -1: the whole array is well made */
}

/* Element i of a link's event column col as text: a text's bytes, an
 * integer's decimal, "NULL"; "?" when there is none. */
static const char *ev_col(const struct audit_link *l, int col, int i)
{
	static char buf[4096];
	const char *e;
	uint32_t oid, v4;
	uint64_t v8;
	int32_t len;

	if (!array_elem(l->ev[col], l->ev_len[col], i, &oid, &e, &len))
		return "?";
	if (!e)
		return "NULL";
	if (oid == PGARRAY_TEXT && (size_t)len < sizeof(buf)) {
		memcpy(buf, e, (size_t)len);
		buf[len] = '\0';
	} else if (oid == PGARRAY_INT8 && len == 8) {
		memcpy(&v8, e, 8);
		snprintf(buf, sizeof(buf), "%lld", (long long)be64toh(v8));
	} else if (oid == PGARRAY_INT4 && len == 4) {
		memcpy(&v4, e, 4);
		snprintf(buf, sizeof(buf), "%d", (int)be32toh(v4));
	} else {
		return "?";
	}
	return buf;
}

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
	CHECK_STR(ev_col(&l, AUDIT_EV_CANON, 0), c1);
	CHECK_STR(ev_col(&l, AUDIT_EV_CANON, 1), c3);
	CHECK_STR(ev_col(&l, AUDIT_EV_CANON, 2), "?");
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
	json_t *o = json_loads(ev_col(&l, AUDIT_EV_CANON, 1), 0, NULL);
	CHECK(json_integer_value(json_object_get(o, "chain_seq")) == 44);
	json_decref(o);
	/* the other columns: the rows' own values, in the rows' order */
	CHECK_STR(ev_col(&l, AUDIT_EV_CHAIN_SEQ, 0), "42");
	CHECK_STR(ev_col(&l, AUDIT_EV_CHAIN_SEQ, 1), "44");
	CHECK_STR(ev_col(&l, AUDIT_EV_ACCEPT_SEQ, 1), "5");
	CHECK_STR(ev_col(&l, AUDIT_EV_EVENT_ID, 0), "e-1");
	CHECK_STR(ev_col(&l, AUDIT_EV_EVENT_ID, 1), "e-2");
	CHECK_STR(ev_col(&l, AUDIT_EV_SOURCE_ID, 1), "bus-1");
	CHECK_STR(ev_col(&l, AUDIT_EV_SOURCE_KIND, 1), "bus");
	CHECK_STR(ev_col(&l, AUDIT_EV_TYPE, 1), "panic");
	CHECK_STR(ev_col(&l, AUDIT_EV_OUTCOME, 1), "new");
	CHECK_STR(ev_col(&l, AUDIT_EV_INCIDENT_ID, 1), "3");
	CHECK_STR(ev_col(&l, AUDIT_EV_PRIORITY, 1), "100");
	CHECK_STR(ev_col(&l, AUDIT_EV_OCCURRED_AT, 1), "NULL");
	CHECK_STR(ev_col(&l, AUDIT_EV_RECEIVED_AT, 1), "1000");
	CHECK_STR(ev_col(&l, AUDIT_EV_PAYLOAD, 1), "{\"event_id\":\"e-1\"}");
	for (int c = 0; c < AUDIT_EV_NCOLS; c++) {
		const char *el;
		uint32_t oid;
		int32_t len;

		CHECK(array_elem(l.ev[c], l.ev_len[c], -1, &oid, &el, &len));
	}
	/* the statement's parameters: $1 and $9.. these arrays, in binary */
	struct audit_params p;

	audit_link_params(&l, &p);
	CHECK(p.values[0] == l.ev[AUDIT_EV_CANON] && p.formats[0] == 1);
	CHECK(p.values[8] == l.ev[AUDIT_EV_CHAIN_SEQ] && p.formats[8] == 1 &&
	      p.lengths[8] == l.ev_len[AUDIT_EV_CHAIN_SEQ]);
	CHECK(p.values[AUDIT_BATCH_PARAMS - 1] == l.ev[AUDIT_EV_PAYLOAD]);
	CHECK_STR(p.values[2], "41");
	CHECK_STR(p.values[4], "3");
	CHECK_STR(p.values[7], "1795000000123");
	CHECK(p.formats[1] == 0 && p.values[1] == l.transitions);
	audit_link_free(&l);
	CHECK(l.ev[AUDIT_EV_CANON] == NULL && l.hashes == NULL);

	/* Linked again after another head: new numbers, new texts. */
	REQUIRE(audit_row_link(&rows, 0, head, 1, &l));
	CHECK(r1->ev_chain == 1 && r2->ev_chain == 3 && l.seq == 3);
	CHECK(strstr(ev_col(&l, AUDIT_EV_CANON, 0),
		     "\"chain_seq\":1,\"recorded_at_ms\":1,") != NULL);
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
	CHECK(l.n_tr == 0 && l.n_again == 2);
	CHECK(r1->ev_chain == 11 && r3->ev_chain == 12);
	CHECK(r2->ev_chain == 0 && r2->tr_chain == 0);
	CHECK_STR(l.transitions, "[]");
	/* the events' arrays hold the linked rows only */
	CHECK_STR(ev_col(&l, AUDIT_EV_EVENT_ID, 0), "e-1");
	CHECK_STR(ev_col(&l, AUDIT_EV_EVENT_ID, 1), "e-2");
	CHECK_STR(ev_col(&l, AUDIT_EV_EVENT_ID, 2), "?");
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

/* The batch statement's three forms (audit.c): each picked by the rows it
 * carries, each naming every parameter (PostgreSQL refuses to prepare a
 * statement that leaves one untyped), the lean ones without the parts
 * their batches never use. */
TEST(audit_batch_statement_forms)
{
	struct audit_link full = {.n = 3, .n_tr = 1, .n_again = 1},
			  lean = {.n = 2, .n_tr = 1}, events = {.n = 5},
			  none = {0};
	const char *name, *sql, *names[3];
	char p[16];

	sql = audit_batch_statement(&full, &names[0]);
	CHECK(strstr(sql, "ev_again") && strstr(sql, "missing") &&
	      strstr(sql, "tr_in"));
	sql = audit_batch_statement(&lean, &names[1]);
	CHECK(!strstr(sql, "ev_again") && !strstr(sql, "missing") &&
	      strstr(sql, "INSERT INTO incident_transitions"));
	sql = audit_batch_statement(&events, &names[2]);
	CHECK(!strstr(sql, "ev_again") && !strstr(sql, "tr_in") &&
	      !strstr(sql, "incident_transitions") &&
	      strstr(sql, "INSERT INTO events"));
	CHECK(strcmp(names[0], names[1]) != 0 &&
	      strcmp(names[1], names[2]) != 0 &&
	      strcmp(names[0], names[2]) != 0);
	audit_batch_statement(&none, &name);
	CHECK_STR(name, names[2]);
	for (int f = 0; f < 3; f++) {
		struct audit_link *l = f == 0 ? &full : f == 1 ? &lean : &events;

		sql = audit_batch_statement(l, NULL);
		for (int i = 1; i <= AUDIT_BATCH_PARAMS; i++) {
			snprintf(p, sizeof(p), "$%d::", i);
			CHECK(strstr(sql, p) != NULL);
		}
		snprintf(p, sizeof(p), "$%d", AUDIT_BATCH_PARAMS + 1);
		CHECK(strstr(sql, p) == NULL);
	}
	CHECK(strstr(audit_session_statement(), "plan_cache_mode"));
}

/* A row read back from the spool sends the columns it was made with: the
 * payload's own text (not jansson's reprint of it: "38.4030" stays), a
 * payload spooled as a string (an older alertd, a raw newline) as that
 * string's content; a part that is not a complete row sends NULLs, which
 * PostgreSQL refuses for that row alone. */
TEST(audit_row_spooled_reads_its_columns_back)
{
	struct audit_event_row e = link_event;
	struct audit_list rows = {0};
	struct audit_link l;
	unsigned char head[32] = {0};
	struct audit_row *r, *made;
	const char *why;

	e.payload_json = "{\"note\":\"x,\\\"payload\\\":1\",\"lat\":38.4030,"
			 "\"payload\":{\"a\":[1,2.50]}}";
	e.has_occurred_at = true;
	e.occurred_at_ms = 0;
	made = audit_row_new(&e, NULL, &why);
	REQUIRE(made != NULL);
	r = audit_row_spooled(strdup(made->ev_json), NULL);
	REQUIRE(r != NULL);
	CHECK(r->from_spool && r->tr_json == NULL);
	CHECK_STR(r->ev.event_id, "e-1");
	CHECK_STR(r->ev.source_kind, "bus");
	CHECK(r->ev.accept_seq == 5 && r->ev.incident_id == 3 &&
	      r->ev.priority == 100 && r->ev.received_at_ms == 1000 &&
	      r->ev.has_occurred_at && r->ev.occurred_at_ms == 0);
	CHECK(r->payload_len == strlen(e.payload_json) &&
	      memcmp(r->payload, e.payload_json, r->payload_len) == 0);
	audit_row_push(&rows, r);

	/* an older alertd's row: the payload as a string */
	r = audit_row_spooled(strdup("{\"accept_seq\":6,\"event_id\":\"e-6\","
		"\"source_id\":\"bus-1\",\"source_kind\":\"bus\",\"type\":"
		"\"panic\",\"outcome\":\"merged\",\"incident_id\":3,"
		"\"priority\":100,\"received_at_ms\":1001,\"payload\":"
		"\"{\\\"a\\\":\\n1}\"}"), strdup(made->ev_json));
	REQUIRE(r != NULL);
	CHECK(r->tr_json != NULL && !r->ev.has_occurred_at);
	CHECK(r->payload_len == 8 && memcmp(r->payload, "{\"a\":\n1}", 8) == 0);
	audit_row_push(&rows, r);

	/* not a complete row (no source_id), and not JSON at all */
	r = audit_row_spooled(strdup("{\"accept_seq\":7,\"event_id\":\"e-7\","
		"\"source_kind\":\"bus\",\"type\":\"panic\",\"outcome\":"
		"\"new\",\"incident_id\":3,\"priority\":1,"
		"\"received_at_ms\":1,\"payload\":{}}"), NULL);
	REQUIRE(r != NULL);
	CHECK(r->ev.event_id == NULL);
	audit_row_push(&rows, r);
	r = audit_row_spooled(strdup("{\"accept_seq\":8,"), NULL);
	REQUIRE(r != NULL);
	CHECK(r->ev.event_id == NULL);
	audit_row_push(&rows, r);

	REQUIRE(audit_row_link(&rows, 0, head, 5, &l));
	CHECK(l.n == 5);
	CHECK_STR(ev_col(&l, AUDIT_EV_PAYLOAD, 0), e.payload_json);
	CHECK_STR(ev_col(&l, AUDIT_EV_OCCURRED_AT, 0), "0");
	CHECK_STR(ev_col(&l, AUDIT_EV_EVENT_ID, 1), "e-6");
	CHECK_STR(ev_col(&l, AUDIT_EV_OUTCOME, 1), "merged");
	CHECK_STR(ev_col(&l, AUDIT_EV_PAYLOAD, 1), "{\"a\":\n1}");
	/* chain_seq 3 is the second row's transition */
	CHECK_STR(ev_col(&l, AUDIT_EV_CHAIN_SEQ, 2), "4");
	CHECK_STR(ev_col(&l, AUDIT_EV_EVENT_ID, 2), "NULL");
	CHECK_STR(ev_col(&l, AUDIT_EV_ACCEPT_SEQ, 2), "NULL");
	CHECK_STR(ev_col(&l, AUDIT_EV_PAYLOAD, 3), "NULL");
	CHECK(strstr(ev_col(&l, AUDIT_EV_CANON, 3), "\"accept_seq\":8,") != NULL);
	audit_link_free(&l);
	while ((r = audit_row_pop(&rows)))
		audit_row_free(r);
	audit_row_free(made);
}

/* The wire format array_recv reads: header, then length and bytes. */
TEST(pgarray_binary_format)
{
	static const unsigned char want[] = {
		0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 20, 0, 0, 0, 2, 0, 0, 0, 1,
		0, 0, 0, 8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe,
		0xff, 0xff, 0xff, 0xff,
	};
	static const unsigned char empty[] = {
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 25,
	};
	struct pgarray a;
	char *out;
	int len;

	pgarray_init(&a, PGARRAY_INT8);
	pgarray_int8(&a, -2);
	pgarray_null(&a);
	REQUIRE(pgarray_finish(&a, &out, &len));
	CHECK(len == (int)sizeof(want) && memcmp(out, want, sizeof(want)) == 0);
	free(out);

	pgarray_init(&a, PGARRAY_TEXT);
	REQUIRE(pgarray_finish(&a, &out, &len));
	CHECK(len == (int)sizeof(empty) &&
	      memcmp(out, empty, sizeof(empty)) == 0);
	free(out);

	pgarray_init(&a, PGARRAY_INT4);
	pgarray_int4(&a, 7);
	pgarray_text(&a, "ab", 2);
	REQUIRE(pgarray_finish(&a, &out, &len));
	CHECK(len == 20 + 8 + 6 && memcmp(out + 20, "\0\0\0\4\0\0\0\7"
					   "\0\0\0\2ab", 14) == 0);
	free(out);
}
