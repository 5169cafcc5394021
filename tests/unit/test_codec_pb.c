/* Unit tests of codec_pb: protobuf events (round trip, enums, map attrs,
 * errors) and the TCP frames. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alertd.pb-c.h"
#include "codec_pb.h"
#include "unit.h"

static const struct evt_limits limits = {
	.max_id_len = 64, .max_attrs = 32, .max_text_len = 256};

/* A protobuf event under construction; strings point to literals. */
struct pb_event {
	Alertd__V1__Event ev;
	Alertd__V1__Source src;
	Alertd__V1__Location loc;
	Alertd__V1__Event__AttrsEntry entries[40];
	Alertd__V1__Event__AttrsEntry *entry_ptrs[40];
	char keys[40][24];
};

static void pb_event_init(struct pb_event *p)
{
	memset(p, 0, sizeof(*p));
	alertd__v1__event__init(&p->ev);
	alertd__v1__source__init(&p->src);
	alertd__v1__location__init(&p->loc);
	p->ev.event_id = "bus-1436-000123";
	p->ev.source = &p->src;
	p->ev.type = ALERTD__V1__EVENT_TYPE__PANIC;
	p->src.id = "bus-1436";
	p->src.kind = ALERTD__V1__SOURCE_KIND__BUS;
}

static void pb_event_attr(struct pb_event *p, const char *key,
			  const char *value)
{
	size_t i = p->ev.n_attrs++;

	alertd__v1__event__attrs_entry__init(&p->entries[i]);
	p->entries[i].key = (char *)key;
	p->entries[i].value = (char *)value;
	p->entry_ptrs[i] = &p->entries[i];
	p->ev.attrs = p->entry_ptrs;
}

/* n attrs named k0.. */
static void pb_event_attrs(struct pb_event *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		snprintf(p->keys[i], sizeof(p->keys[i]), "k%zu", i);
		pb_event_attr(p, p->keys[i], "v");
	}
}

/* Serializes and decodes through codec_pb_decode_event. */
static struct evt *pb_decode(const struct pb_event *p, struct evt_error *err)
{
	size_t n = alertd__v1__event__get_packed_size(&p->ev);
	uint8_t *buf = malloc(n + 1);
	struct evt *ev;

	if (buf == NULL)
		abort();
	alertd__v1__event__pack(&p->ev, buf);
	memset(err, 0, sizeof(*err));
	ev = codec_pb_decode_event(buf, n, &limits, err);
	free(buf);
	return ev;
}

static bool pb_fails_with(const struct pb_event *p, const char *code,
			  const char *field)
{
	struct evt_error err;
	struct evt *ev = pb_decode(p, &err);

	if (ev != NULL) {
		evt_free(ev);
		fprintf(stderr, "  decoded, expected %s/%s\n", code, field);
		return false;
	}
	if (strcmp(err.code, code) != 0 || strcmp(err.field, field) != 0) {
		fprintf(stderr, "  got %s/%s, expected %s/%s\n", err.code,
			err.field, code, field);
		return false;
	}
	return err.detail[0] != '\0';
}

static bool pb_decodes(const struct pb_event *p)
{
	struct evt_error err;
	struct evt *ev = pb_decode(p, &err);

	evt_free(ev);
	return ev != NULL;
}

/* Checks the length prefix of a frame and unpacks it. */
static Alertd__V1__Frame *frame_unpack(const uint8_t *buf, size_t len)
{
	uint32_t n;

	if (buf == NULL || len < 4)
		return NULL;
	n = (uint32_t)buf[0] << 24 | (uint32_t)buf[1] << 16 |
	    (uint32_t)buf[2] << 8 | buf[3];
	if (n != len - 4)
		return NULL;
	return alertd__v1__frame__unpack(NULL, n, buf + 4);
}

TEST(pb_round_trip_full)
{
	struct pb_event p;
	struct evt_error err;
	struct evt *ev;

	pb_event_init(&p);
	p.src.kind = ALERTD__V1__SOURCE_KIND__SUPPORT_LINE;
	p.src.zone = "Konak";
	p.src.label = "support line 1";
	p.ev.type = ALERTD__V1__EVENT_TYPE__CALLBACK_REQUEST;
	p.ev.occurred_at = "2026-11-22T01:14:03.120+03:00";
	p.loc.lat = 38.4555;
	p.loc.lon = 27.1199;
	p.ev.location = &p.loc;
	pb_event_attr(&p, "route", "90");
	pb_event_attr(&p, "door", "rear");
	ev = pb_decode(&p, &err);
	REQUIRE(ev != NULL);
	CHECK_STR(ev->event_id, "bus-1436-000123");
	CHECK_STR(ev->source_id, "bus-1436");
	CHECK(ev->kind == EVT_KIND_SUPPORT_LINE);
	CHECK(ev->type == EVT_TYPE_CALLBACK_REQUEST);
	CHECK_STR(ev->zone, "Konak");
	CHECK_STR(ev->label, "support line 1");
	CHECK(ev->occurred_at_ms == 1795299243120LL);
	CHECK(ev->has_location && ev->lat == 38.4555 && ev->lon == 27.1199);
	REQUIRE(ev->n_attrs == 2);
	CHECK_STR(ev->attrs[0].key, "route");
	CHECK_STR(ev->attrs[0].value, "90");
	CHECK_STR(ev->attrs[1].key, "door");
	CHECK_STR(ev->attrs[1].value, "rear");
	evt_free(ev);
}

TEST(pb_every_enum_value)
{
	for (int k = 1; k <= EVT_KIND__COUNT; k++) {
		for (int t = 1; t <= EVT_TYPE__COUNT; t++) {
			struct pb_event p;
			struct evt_error err;
			struct evt *ev;

			pb_event_init(&p);
			p.src.kind = (Alertd__V1__SourceKind)k;
			p.ev.type = (Alertd__V1__EventType)t;
			ev = pb_decode(&p, &err);
			CHECK(ev != NULL && (int)ev->kind == k - 1 &&
			      (int)ev->type == t - 1);
			evt_free(ev);
		}
	}
}

TEST(pb_minimal_has_no_optionals)
{
	struct pb_event p;
	struct evt_error err;
	struct evt *ev;

	pb_event_init(&p);
	ev = pb_decode(&p, &err);
	REQUIRE(ev != NULL);
	CHECK(ev->zone == NULL && ev->label == NULL);
	CHECK(ev->occurred_at == NULL);
	CHECK(!ev->has_location);
	CHECK(ev->n_attrs == 0);
	evt_free(ev);
}

TEST(pb_location_zero_is_present)
{
	struct pb_event p;
	struct evt_error err;
	struct evt *ev;

	pb_event_init(&p);
	p.ev.location = &p.loc; /* 0, 0: the message is there */
	ev = pb_decode(&p, &err);
	REQUIRE(ev != NULL);
	CHECK(ev->has_location && ev->lat == 0.0 && ev->lon == 0.0);
	evt_free(ev);
}

TEST(pb_missing_fields)
{
	struct pb_event p;

	pb_event_init(&p);
	p.ev.event_id = "";
	CHECK(pb_fails_with(&p, "missing_field", "event_id"));
	pb_event_init(&p);
	p.ev.source = NULL;
	CHECK(pb_fails_with(&p, "missing_field", "source.id"));
	pb_event_init(&p);
	p.src.id = "";
	CHECK(pb_fails_with(&p, "missing_field", "source.id"));
	pb_event_init(&p);
	p.src.kind = ALERTD__V1__SOURCE_KIND__SOURCE_KIND_UNSPECIFIED;
	CHECK(pb_fails_with(&p, "missing_field", "source.kind"));
	pb_event_init(&p);
	p.ev.type = ALERTD__V1__EVENT_TYPE__EVENT_TYPE_UNSPECIFIED;
	CHECK(pb_fails_with(&p, "missing_field", "type"));
}

TEST(pb_unknown_enum_numbers)
{
	struct pb_event p;

	pb_event_init(&p);
	p.src.kind = (Alertd__V1__SourceKind)42;
	CHECK(pb_fails_with(&p, "invalid_enum", "source.kind"));
	pb_event_init(&p);
	p.src.kind = (Alertd__V1__SourceKind)7; /* one past OTHER */
	CHECK(pb_fails_with(&p, "invalid_enum", "source.kind"));
	pb_event_init(&p);
	p.ev.type = (Alertd__V1__EventType)8; /* one past TEST */
	CHECK(pb_fails_with(&p, "invalid_enum", "type"));
	pb_event_init(&p);
	p.ev.type = (Alertd__V1__EventType)-3;
	CHECK(pb_fails_with(&p, "invalid_enum", "type"));
}

TEST(pb_unknown_enum_raw_bytes)
{
	/* Event{event_id:"e", source{id:"s", kind:42}, type:99} written by
	 * hand, as a newer sender would. */
	const uint8_t bytes[] = {0x0a, 0x01, 'e',  0x12, 0x05, 0x0a, 0x01,
				 's',  0x10, 42,   0x18, 99};
	const uint8_t bytes_kind_ok[] = {0x0a, 0x01, 'e',  0x12, 0x05, 0x0a,
					 0x01, 's',  0x10, 1,    0x18, 99};
	struct evt_error err = {0};
	struct evt *ev = codec_pb_decode_event(bytes, sizeof(bytes), &limits,
					       &err);

	CHECK(ev == NULL);
	CHECK_STR(err.code, "invalid_enum");
	CHECK_STR(err.field, "source.kind");
	ev = codec_pb_decode_event(bytes_kind_ok, sizeof(bytes_kind_ok),
				   &limits, &err);
	CHECK(ev == NULL);
	CHECK_STR(err.code, "invalid_enum");
	CHECK_STR(err.field, "type");
}

TEST(pb_malformed_bytes)
{
	const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff};
	const uint8_t truncated[] = {0x0a, 0x10, 'a', 'b'};
	struct evt_error err = {0};

	CHECK(codec_pb_decode_event(garbage, sizeof(garbage), &limits, &err) ==
	      NULL);
	CHECK_STR(err.code, "malformed_protobuf");
	CHECK_STR(err.field, "");
	memset(&err, 0, sizeof(err));
	CHECK(codec_pb_decode_event(truncated, sizeof(truncated), &limits,
				    &err) == NULL);
	CHECK_STR(err.code, "malformed_protobuf");
	/* Zero bytes are a valid, empty Event: its first member is missing. */
	CHECK(codec_pb_decode_event(NULL, 0, &limits, &err) == NULL);
	CHECK_STR(err.code, "missing_field");
	CHECK_STR(err.field, "event_id");
}

TEST(pb_invalid_ids)
{
	struct pb_event p;
	char id[66];

	memset(id, 'x', 65);
	id[65] = '\0';
	pb_event_init(&p);
	p.ev.event_id = id;
	CHECK(pb_fails_with(&p, "invalid_id", "event_id"));
	id[64] = '\0';
	CHECK(pb_decodes(&p));
	pb_event_init(&p);
	p.src.id = "bus 1436";
	CHECK(pb_fails_with(&p, "invalid_id", "source.id"));
}

TEST(pb_invalid_fields)
{
	struct pb_event p;

	pb_event_init(&p);
	p.loc.lat = 90.5;
	p.ev.location = &p.loc;
	CHECK(pb_fails_with(&p, "invalid_field", "location.lat"));
	pb_event_init(&p);
	p.loc.lon = -180.5;
	p.ev.location = &p.loc;
	CHECK(pb_fails_with(&p, "invalid_field", "location.lon"));
	pb_event_init(&p);
	p.ev.occurred_at = "yesterday";
	CHECK(pb_fails_with(&p, "invalid_field", "occurred_at"));
	pb_event_init(&p);
	p.src.zone = "Kar\xff";
	CHECK(pb_fails_with(&p, "invalid_field", "source.zone"));
	pb_event_init(&p);
	pb_event_attr(&p, "route", "\xc3");
	CHECK(pb_fails_with(&p, "invalid_field", "attrs.route"));
}

TEST(pb_attrs_count_edge)
{
	struct pb_event p;

	pb_event_init(&p);
	pb_event_attrs(&p, 32);
	CHECK(pb_decodes(&p));
	pb_event_init(&p);
	pb_event_attrs(&p, 33);
	CHECK(pb_fails_with(&p, "too_many_attrs", "attrs"));
}

TEST(pb_duplicate_map_key_last_wins)
{
	struct pb_event p;
	struct evt_error err;
	struct evt *ev;

	pb_event_init(&p);
	pb_event_attr(&p, "route", "90");
	pb_event_attr(&p, "door", "rear");
	pb_event_attr(&p, "route", "91");
	ev = pb_decode(&p, &err);
	REQUIRE(ev != NULL);
	REQUIRE(ev->n_attrs == 2);
	CHECK_STR(ev->attrs[0].key, "door");
	CHECK_STR(ev->attrs[0].value, "rear");
	CHECK_STR(ev->attrs[1].key, "route");
	CHECK_STR(ev->attrs[1].value, "91");
	evt_free(ev);
	/* 33 entries, but only 32 distinct keys: within the limit. */
	pb_event_init(&p);
	pb_event_attrs(&p, 32);
	pb_event_attr(&p, "k0", "again");
	CHECK(pb_decodes(&p));
}

TEST(pb_peek_event_id)
{
	struct pb_event p;
	size_t n;
	uint8_t buf[256];
	char *id;

	pb_event_init(&p);
	p.loc.lat = 100; /* invalid, but the id can still be named */
	p.ev.location = &p.loc;
	n = alertd__v1__event__pack(&p.ev, buf);
	id = codec_pb_peek_event_id(buf, n, 64);
	CHECK_STR(id, "bus-1436-000123");
	free(id);
	p.ev.event_id = "no spaces allowed";
	n = alertd__v1__event__pack(&p.ev, buf);
	CHECK(codec_pb_peek_event_id(buf, n, 64) == NULL);
	buf[0] = 0xff;
	CHECK(codec_pb_peek_event_id(buf, 1, 64) == NULL);
}

TEST(pb_frame_ack)
{
	size_t len = 0;
	uint8_t *buf = codec_pb_frame_ack("bus-1", EVT_OUTCOME_NEW, 17, 100,
					  &len);
	Alertd__V1__Frame *f = frame_unpack(buf, len);

	REQUIRE(f != NULL);
	REQUIRE(f->msg_case == ALERTD__V1__FRAME__MSG_ACK);
	CHECK_STR(f->ack->event_id, "bus-1");
	CHECK(f->ack->outcome == ALERTD__V1__OUTCOME__NEW);
	CHECK(f->ack->incident_id == 17);
	CHECK(f->ack->priority == 100);
	alertd__v1__frame__free_unpacked(f, NULL);
	free(buf);

	buf = codec_pb_frame_ack("x", EVT_OUTCOME_MERGED, 1, 5, &len);
	f = frame_unpack(buf, len);
	CHECK(f != NULL && f->ack->outcome == ALERTD__V1__OUTCOME__MERGED);
	alertd__v1__frame__free_unpacked(f, NULL);
	free(buf);
	buf = codec_pb_frame_ack("x", EVT_OUTCOME_DUPLICATE, 1, 5, &len);
	f = frame_unpack(buf, len);
	CHECK(f != NULL && f->ack->outcome == ALERTD__V1__OUTCOME__DUPLICATE);
	alertd__v1__frame__free_unpacked(f, NULL);
	free(buf);
}

TEST(pb_frame_nack)
{
	size_t len = 0;
	uint8_t *buf = codec_pb_frame_nack("bus-1", "unavailable", true,
					   "try later", 2000, &len);
	Alertd__V1__Frame *f = frame_unpack(buf, len);

	REQUIRE(f != NULL);
	REQUIRE(f->msg_case == ALERTD__V1__FRAME__MSG_NACK);
	CHECK_STR(f->nack->event_id, "bus-1");
	CHECK_STR(f->nack->code, "unavailable");
	CHECK(f->nack->retry);
	CHECK_STR(f->nack->detail, "try later");
	CHECK(f->nack->retry_after_ms == 2000);
	alertd__v1__frame__free_unpacked(f, NULL);
	free(buf);
	/* An undecodable event: no event_id. */
	buf = codec_pb_frame_nack(NULL, "malformed_protobuf", false, NULL, 0,
				  &len);
	f = frame_unpack(buf, len);
	REQUIRE(f != NULL && f->msg_case == ALERTD__V1__FRAME__MSG_NACK);
	CHECK_STR(f->nack->event_id, "");
	CHECK(!f->nack->retry);
	alertd__v1__frame__free_unpacked(f, NULL);
	free(buf);
}

TEST(pb_frame_error)
{
	size_t len = 0;
	uint8_t *buf = codec_pb_frame_error("frame_too_large", "too big", &len);
	Alertd__V1__Frame *f = frame_unpack(buf, len);

	REQUIRE(f != NULL);
	REQUIRE(f->msg_case == ALERTD__V1__FRAME__MSG_ERROR);
	CHECK_STR(f->error->code, "frame_too_large");
	CHECK_STR(f->error->detail, "too big");
	alertd__v1__frame__free_unpacked(f, NULL);
	free(buf);
}

/* Frame{event: SignedEvent{t, v1, event}} without the length prefix. */
static uint8_t *signed_frame(int64_t t, const char *v1, const uint8_t *event,
			     size_t event_len, size_t *len)
{
	Alertd__V1__Frame f = ALERTD__V1__FRAME__INIT;
	Alertd__V1__SignedEvent se = ALERTD__V1__SIGNED_EVENT__INIT;
	uint8_t *buf;

	se.t = t;
	se.v1 = (char *)v1;
	se.event.data = (uint8_t *)event;
	se.event.len = event_len;
	f.msg_case = ALERTD__V1__FRAME__MSG_EVENT;
	f.event = &se;
	*len = alertd__v1__frame__get_packed_size(&f);
	buf = malloc(*len);
	if (buf == NULL)
		abort();
	alertd__v1__frame__pack(&f, buf);
	return buf;
}

TEST(pb_signed_event_decode)
{
	const uint8_t event[] = {0x0a, 0x03, 'a', 'b', 'c', 0x00};
	struct evt_error err = {0};
	uint8_t *out = NULL, *frame;
	char *v1 = NULL;
	size_t len, out_len = 0;
	int64_t t = 0;

	frame = signed_frame(1700000000, "abcdef", event, sizeof(event), &len);
	CHECK(codec_pb_decode_signed_event(frame, len, &t, &v1, &out, &out_len,
					   &err));
	CHECK(t == 1700000000);
	CHECK_STR(v1, "abcdef");
	CHECK(out_len == sizeof(event) && out != NULL &&
	      memcmp(out, event, sizeof(event)) == 0);
	free(frame);
	free(v1);
	free(out);
	/* An empty event is still handed over (and fails later). */
	frame = signed_frame(-5, "", NULL, 0, &len);
	CHECK(codec_pb_decode_signed_event(frame, len, &t, &v1, &out, &out_len,
					   &err));
	CHECK(t == -5 && out_len == 0 && out != NULL);
	CHECK_STR(v1, "");
	free(frame);
	free(v1);
	free(out);
}

TEST(pb_signed_event_malformed_frames)
{
	const uint8_t garbage[] = {0xff, 0x01};
	struct evt_error err = {0};
	uint8_t *out = NULL, *ack;
	char *v1 = NULL;
	size_t out_len, len;
	int64_t t;

	CHECK(!codec_pb_decode_signed_event(garbage, sizeof(garbage), &t, &v1,
					    &out, &out_len, &err));
	CHECK_STR(err.code, "malformed_frame");
	CHECK(v1 == NULL && out == NULL);
	memset(&err, 0, sizeof(err));
	/* A valid Frame that carries no event. */
	CHECK(!codec_pb_decode_signed_event(garbage, 0, &t, &v1, &out,
					    &out_len, &err));
	CHECK_STR(err.code, "malformed_frame");
	/* A valid Frame that carries an Ack. */
	ack = codec_pb_frame_ack("e", EVT_OUTCOME_NEW, 1, 1, &len);
	REQUIRE(ack != NULL);
	memset(&err, 0, sizeof(err));
	CHECK(!codec_pb_decode_signed_event(ack + 4, len - 4, &t, &v1, &out,
					    &out_len, &err));
	CHECK_STR(err.code, "malformed_frame");
	free(ack);
}
