/* codec_pb: protobuf bytes <-> the event model, and the TCP frames.
 *
 * protobuf-c keeps an unknown proto3 enum number as the raw integer (checked
 * with protobuf-c 1.4), so an unknown kind or type reaches us as a number
 * outside the generated enum and is answered invalid_enum. proto3 cannot
 * tell "" from absent: an empty string is a missing member. */
#include "codec_pb.h"

#include <stdlib.h>
#include <string.h>

#include "alertd.pb-c.h"

/* protobuf-c wants a valid pointer even for zero bytes. */
static const uint8_t codec_pb_empty[1];

/* NULL for absent/empty, else a copy; *oom on allocation failure. */
static char *codec_pb_opt_string(const char *s, bool *oom)
{
	char *copy;

	if (s == NULL || s[0] == '\0')
		return NULL;
	copy = strdup(s);
	if (copy == NULL)
		*oom = true;
	return copy;
}

static bool codec_pb_check_missing(const Alertd__V1__Event *msg,
				   struct evt_error *err)
{
	const Alertd__V1__Source *src = msg->source;

	if (msg->event_id == NULL || msg->event_id[0] == '\0') {
		evt_error_set(err, "missing_field", "event_id",
			      "event_id is required");
		return false;
	}
	if (src == NULL || src->id == NULL || src->id[0] == '\0') {
		evt_error_set(err, "missing_field", "source.id",
			      "source.id is required");
		return false;
	}
	if (src->kind == ALERTD__V1__SOURCE_KIND__SOURCE_KIND_UNSPECIFIED) {
		evt_error_set(err, "missing_field", "source.kind",
			      "source.kind is required");
		return false;
	}
	if (msg->type == ALERTD__V1__EVENT_TYPE__EVENT_TYPE_UNSPECIFIED) {
		evt_error_set(err, "missing_field", "type", "type is required");
		return false;
	}
	return true;
}

/* The wire numbers are the evt enum values plus one (0 is UNSPECIFIED). */
static bool codec_pb_check_enums(const Alertd__V1__Event *msg, struct evt *ev,
				 struct evt_error *err)
{
	int kind = (int)msg->source->kind;
	int type = (int)msg->type;

	if (kind < 1 || kind > EVT_KIND__COUNT) {
		evt_error_set(err, "invalid_enum", "source.kind",
			      "source.kind %d is not a known source kind", kind);
		return false;
	}
	if (type < 1 || type > EVT_TYPE__COUNT) {
		evt_error_set(err, "invalid_enum", "type",
			      "type %d is not a known event type", type);
		return false;
	}
	ev->kind = (enum evt_kind)(kind - 1);
	ev->type = (enum evt_type)(type - 1);
	return true;
}

struct codec_pb_key {
	const char *key;
	size_t index;
};

static int codec_pb_key_cmp(const void *a, const void *b)
{
	const struct codec_pb_key *x = a, *y = b;
	int c = strcmp(x->key, y->key);

	if (c != 0)
		return c;
	return x->index < y->index ? -1 : x->index > y->index;
}

/* Map entries -> attrs. A key sent twice keeps its last value, as protobuf
 * parsers do; found by sorting, so a hostile frame cannot make it
 * quadratic. */
static bool codec_pb_take_attrs(const Alertd__V1__Event *msg, struct evt *ev)
{
	size_t n = msg->n_attrs;
	struct codec_pb_key *keys;
	bool *keep;

	if (n == 0)
		return true;
	keys = calloc(n, sizeof(*keys));
	keep = calloc(n, sizeof(*keep));
	ev->attrs = calloc(n, sizeof(*ev->attrs));
	if (keys == NULL || keep == NULL || ev->attrs == NULL)
		goto fail;
	for (size_t i = 0; i < n; i++) {
		keys[i].key = msg->attrs[i]->key ? msg->attrs[i]->key : "";
		keys[i].index = i;
	}
	qsort(keys, n, sizeof(*keys), codec_pb_key_cmp);
	for (size_t i = 0; i < n; i++)
		keep[keys[i].index] = i + 1 == n ||
				      strcmp(keys[i].key, keys[i + 1].key) != 0;
	for (size_t i = 0; i < n; i++) {
		const Alertd__V1__Event__AttrsEntry *e = msg->attrs[i];
		struct evt_attr *a = &ev->attrs[ev->n_attrs];

		if (!keep[i])
			continue;
		a->key = strdup(e->key ? e->key : "");
		a->value = strdup(e->value ? e->value : "");
		ev->n_attrs++;
		if (a->key == NULL || a->value == NULL)
			goto fail;
	}
	free(keys);
	free(keep);
	return true;
fail:
	free(keys);
	free(keep);
	return false;
}

/* Copies the message into ev. false only on allocation failure. */
static bool codec_pb_take(const Alertd__V1__Event *msg, struct evt *ev)
{
	bool oom = false;

	ev->event_id = codec_pb_opt_string(msg->event_id, &oom);
	ev->source_id = codec_pb_opt_string(msg->source->id, &oom);
	ev->zone = codec_pb_opt_string(msg->source->zone, &oom);
	ev->label = codec_pb_opt_string(msg->source->label, &oom);
	ev->occurred_at = codec_pb_opt_string(msg->occurred_at, &oom);
	if (msg->location != NULL) {
		ev->has_location = true;
		ev->lat = msg->location->lat;
		ev->lon = msg->location->lon;
	}
	return !oom && codec_pb_take_attrs(msg, ev);
}

struct evt *codec_pb_decode_event(const uint8_t *buf, size_t len,
				  const struct evt_limits *limits,
				  struct evt_error *err)
{
	Alertd__V1__Event *msg;
	struct evt *ev = NULL;

	msg = alertd__v1__event__unpack(NULL, len, buf ? buf : codec_pb_empty);
	if (msg == NULL) {
		evt_error_set(err, "malformed_protobuf", "",
			      "the bytes are not a serialized alertd.v1.Event");
		return NULL;
	}
	ev = calloc(1, sizeof(*ev));
	if (ev == NULL)
		goto oom;
	if (!codec_pb_check_missing(msg, err) ||
	    !codec_pb_check_enums(msg, ev, err))
		goto fail;
	if (!codec_pb_take(msg, ev))
		goto oom;
	if (!evt_validate(ev, limits, err))
		goto fail;
	alertd__v1__event__free_unpacked(msg, NULL);
	return ev;
oom:
	evt_error_set(err, "malformed_protobuf", "",
		      "out of memory while decoding");
fail:
	evt_free(ev);
	alertd__v1__event__free_unpacked(msg, NULL);
	return NULL;
}

char *codec_pb_peek_event_id(const uint8_t *buf, size_t len, size_t max_id_len)
{
	Alertd__V1__Event *msg;
	char *id = NULL;

	msg = alertd__v1__event__unpack(NULL, len, buf ? buf : codec_pb_empty);
	if (msg == NULL)
		return NULL;
	if (evt_id_valid(msg->event_id, max_id_len))
		id = strdup(msg->event_id);
	alertd__v1__event__free_unpacked(msg, NULL);
	return id;
}

bool codec_pb_decode_signed_event(const uint8_t *buf, size_t len, int64_t *t,
				  char **v1, uint8_t **event, size_t *event_len,
				  struct evt_error *err)
{
	Alertd__V1__Frame *frame;
	const Alertd__V1__SignedEvent *se;

	*v1 = NULL;
	*event = NULL;
	*event_len = 0;
	frame = alertd__v1__frame__unpack(NULL, len, buf ? buf : codec_pb_empty);
	if (frame == NULL) {
		evt_error_set(err, "malformed_frame", "",
			      "the frame is not a serialized alertd.v1.Frame");
		return false;
	}
	if (frame->msg_case != ALERTD__V1__FRAME__MSG_EVENT ||
	    frame->event == NULL) {
		evt_error_set(err, "malformed_frame", "",
			      "the frame does not carry an event");
		goto fail;
	}
	se = frame->event;
	*t = se->t;
	*v1 = strdup(se->v1 ? se->v1 : "");
	/* One byte more so that an empty event is still a valid pointer. */
	*event = malloc(se->event.len + 1);
	if (*v1 == NULL || *event == NULL) {
		evt_error_set(err, "malformed_frame", "",
			      "out of memory while decoding the frame");
		goto fail;
	}
	if (se->event.len > 0)
		memcpy(*event, se->event.data, se->event.len);
	*event_len = se->event.len;
	alertd__v1__frame__free_unpacked(frame, NULL);
	return true;
fail:
	free(*v1);
	free(*event);
	*v1 = NULL;
	*event = NULL;
	alertd__v1__frame__free_unpacked(frame, NULL);
	return false;
}

/* --- frame encoders ---------------------------------------------------- */

/* 4-byte big-endian length + the serialized frame. */
static uint8_t *codec_pb_frame_pack(const Alertd__V1__Frame *frame,
				    size_t *len)
{
	size_t n = alertd__v1__frame__get_packed_size(frame);
	uint8_t *buf = malloc(n + 4);

	if (buf == NULL)
		return NULL;
	alertd__v1__frame__pack(frame, buf + 4);
	buf[0] = (uint8_t)(n >> 24);
	buf[1] = (uint8_t)(n >> 16);
	buf[2] = (uint8_t)(n >> 8);
	buf[3] = (uint8_t)n;
	*len = n + 4;
	return buf;
}

/* protobuf-c takes char * members; the encoders never write through them. */
static char *codec_pb_str(const char *s)
{
	return (char *)(s ? s : "");
}

uint8_t *codec_pb_frame_ack(const char *event_id, enum evt_outcome outcome,
			    int64_t incident_id, int priority, size_t *len)
{
	Alertd__V1__Frame frame = ALERTD__V1__FRAME__INIT;
	Alertd__V1__Ack ack = ALERTD__V1__ACK__INIT;

	ack.event_id = codec_pb_str(event_id);
	ack.outcome = (unsigned)outcome < EVT_OUTCOME__COUNT
			      ? (Alertd__V1__Outcome)(outcome + 1)
			      : ALERTD__V1__OUTCOME__OUTCOME_UNSPECIFIED;
	ack.incident_id = incident_id;
	ack.priority = priority;
	frame.msg_case = ALERTD__V1__FRAME__MSG_ACK;
	frame.ack = &ack;
	return codec_pb_frame_pack(&frame, len);
}

uint8_t *codec_pb_frame_nack(const char *event_id, const char *code,
			     bool retry, const char *detail,
			     uint32_t retry_after_ms, size_t *len)
{
	Alertd__V1__Frame frame = ALERTD__V1__FRAME__INIT;
	Alertd__V1__Nack nack = ALERTD__V1__NACK__INIT;

	nack.event_id = codec_pb_str(event_id);
	nack.code = codec_pb_str(code);
	nack.retry = retry;
	nack.detail = codec_pb_str(detail);
	nack.retry_after_ms = retry_after_ms;
	frame.msg_case = ALERTD__V1__FRAME__MSG_NACK;
	frame.nack = &nack;
	return codec_pb_frame_pack(&frame, len);
}

uint8_t *codec_pb_frame_error(const char *code, const char *detail,
			      size_t *len)
{
	Alertd__V1__Frame frame = ALERTD__V1__FRAME__INIT;
	Alertd__V1__Error error = ALERTD__V1__ERROR__INIT;

	error.code = codec_pb_str(code);
	error.detail = codec_pb_str(detail);
	frame.msg_case = ALERTD__V1__FRAME__MSG_ERROR;
	frame.error = &error;
	return codec_pb_frame_pack(&frame, len);
}
