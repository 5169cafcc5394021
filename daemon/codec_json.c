/* codec_json: JSON bytes <-> the event model, with jansson.
 *
 * Decoding runs in the order of docs/api.md: malformed_json, missing_field,
 * invalid_enum, invalid_id, invalid_field (wrong JSON types first, then the
 * checks of evt_validate), too_many_attrs. A required member that is absent,
 * null or "" is missing; an optional one that is null or "" is absent. */
#include "codec_json.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonw.h"
#include "numtext.h"

/* The required members, in check order. */
struct codec_json_required {
	const char *field;    /* dotted name, as reported */
	const char *parent;   /* object holding it, NULL for the top level */
	const char *member;
};

static const struct codec_json_required codec_json_required[] = {
	{"event_id", NULL, "event_id"},
	{"source.id", "source", "id"},
	{"source.kind", "source", "kind"},
	{"type", NULL, "type"},
};

/* The member `name` of obj, or NULL when obj is not an object. */
static json_t *codec_json_member(json_t *obj, const char *name)
{
	if (!json_is_object(obj))
		return NULL;
	return json_object_get(obj, name);
}

static bool codec_json_check_missing(json_t *root, struct evt_error *err)
{
	size_t n = sizeof(codec_json_required) / sizeof(codec_json_required[0]);

	for (size_t i = 0; i < n; i++) {
		const struct codec_json_required *r = &codec_json_required[i];
		json_t *parent = root, *v;

		if (r->parent != NULL) {
			parent = json_object_get(root, r->parent);
			/* A source of the wrong type is reported as
			 * invalid_field "source" later, not as missing. */
			if (parent != NULL && !json_is_null(parent) &&
			    !json_is_object(parent))
				continue;
		}
		v = codec_json_member(parent, r->member);
		if (v == NULL || json_is_null(v) ||
		    (json_is_string(v) && json_string_length(v) == 0)) {
			evt_error_set(err, "missing_field", r->field,
				      "%s is required", r->field);
			return false;
		}
	}
	return true;
}

static bool codec_json_check_enums(json_t *root, struct evt *ev,
				   struct evt_error *err)
{
	json_t *kind = codec_json_member(json_object_get(root, "source"), "kind");
	json_t *type = json_object_get(root, "type");

	if (json_is_string(kind) &&
	    !evt_kind_parse(json_string_value(kind), &ev->kind)) {
		evt_error_set(err, "invalid_enum", "source.kind",
			      "source.kind must be one of bus, ferry, stop, "
			      "park, support_line, other");
		return false;
	}
	if (json_is_string(type) &&
	    !evt_type_parse(json_string_value(type), &ev->type)) {
		evt_error_set(err, "invalid_enum", "type",
			      "type must be one of panic, silent_alarm, "
			      "call_request, callback_request, fault, "
			      "heartbeat, test");
		return false;
	}
	return true;
}

/* invalid_id comes before invalid_field in the check order, so the ids are
 * looked at here already, before the type checks of the other members. */
static bool codec_json_check_ids(json_t *root, const struct evt_limits *lim,
				 struct evt_error *err)
{
	json_t *eid = json_object_get(root, "event_id");
	json_t *sid = codec_json_member(json_object_get(root, "source"), "id");
	size_t max = lim ? lim->max_id_len : 64;

	if (json_is_string(eid) && !evt_id_valid(json_string_value(eid), max)) {
		evt_error_set(err, "invalid_id", "event_id",
			      "event_id must be 1..%zu characters of "
			      "[A-Za-z0-9._:-]", max);
		return false;
	}
	if (json_is_string(sid) && !evt_id_valid(json_string_value(sid), max)) {
		evt_error_set(err, "invalid_id", "source.id",
			      "source.id must be 1..%zu characters of "
			      "[A-Za-z0-9._:-]", max);
		return false;
	}
	return true;
}

/* Copies the string member `name` of obj into *out. Absent, null and ""
 * leave *out NULL; any other type is invalid_field. *oom is set when the
 * copy could not be allocated. */
static bool codec_json_take_string(json_t *obj, const char *name,
				   const char *field, char **out, bool *oom,
				   struct evt_error *err)
{
	json_t *v = json_object_get(obj, name);

	*out = NULL;
	if (v == NULL || json_is_null(v))
		return true;
	if (!json_is_string(v)) {
		evt_error_set(err, "invalid_field", field,
			      "%s must be a string", field);
		return false;
	}
	if (json_string_length(v) == 0)
		return true;
	*out = strdup(json_string_value(v));
	if (*out == NULL) {
		*oom = true;
		return false;
	}
	return true;
}

static bool codec_json_take_source(json_t *root, struct evt *ev, bool *oom,
				   struct evt_error *err)
{
	json_t *src = json_object_get(root, "source");

	if (!json_is_object(src)) {
		evt_error_set(err, "invalid_field", "source",
			      "source must be an object");
		return false;
	}
	if (!codec_json_take_string(src, "id", "source.id", &ev->source_id,
				    oom, err))
		return false;
	if (!json_is_string(json_object_get(src, "kind"))) {
		evt_error_set(err, "invalid_field", "source.kind",
			      "source.kind must be a string");
		return false;
	}
	return codec_json_take_string(src, "zone", "source.zone", &ev->zone,
				      oom, err) &&
	       codec_json_take_string(src, "label", "source.label",
				      &ev->label, oom, err);
}

static bool codec_json_take_location(json_t *root, struct evt *ev,
				     struct evt_error *err)
{
	json_t *loc = json_object_get(root, "location");
	json_t *lat, *lon;

	if (loc == NULL || json_is_null(loc))
		return true;
	if (!json_is_object(loc)) {
		evt_error_set(err, "invalid_field", "location",
			      "location must be an object with lat and lon");
		return false;
	}
	lat = json_object_get(loc, "lat");
	lon = json_object_get(loc, "lon");
	if (!json_is_number(lat)) {
		evt_error_set(err, "invalid_field", "location.lat",
			      "location.lat must be a number");
		return false;
	}
	if (!json_is_number(lon)) {
		evt_error_set(err, "invalid_field", "location.lon",
			      "location.lon must be a number");
		return false;
	}
	ev->has_location = true;
	ev->lat = json_number_value(lat);
	ev->lon = json_number_value(lon);
	return true;
}

static bool codec_json_take_attrs(json_t *root, struct evt *ev, bool *oom,
				  struct evt_error *err)
{
	json_t *attrs = json_object_get(root, "attrs");
	const char *key;
	json_t *value;
	char field[64];

	if (attrs == NULL || json_is_null(attrs))
		return true;
	if (!json_is_object(attrs)) {
		evt_error_set(err, "invalid_field", "attrs",
			      "attrs must be an object of strings");
		return false;
	}
	json_object_foreach(attrs, key, value) {
		if (!json_is_string(value)) {
			if (strlen(key) + 7 <= sizeof(field))
				snprintf(field, sizeof(field), "attrs.%s", key);
			else
				snprintf(field, sizeof(field), "attrs");
			evt_error_set(err, "invalid_field", field,
				      "%s must be a string", field);
			return false;
		}
	}
	ev->attrs = calloc(json_object_size(attrs) + 1, sizeof(*ev->attrs));
	if (ev->attrs == NULL)
		goto fail;
	json_object_foreach(attrs, key, value) {
		struct evt_attr *a = &ev->attrs[ev->n_attrs];

		a->key = strdup(key);
		a->value = strdup(json_string_value(value));
		ev->n_attrs++;
		if (a->key == NULL || a->value == NULL)
			goto fail;
	}
	return true;
fail:
	*oom = true;
	return false;
}

/* Copies every member into ev, checking JSON types. */
static bool codec_json_take(json_t *root, struct evt *ev, bool *oom,
			    struct evt_error *err)
{
	if (!codec_json_take_string(root, "event_id", "event_id",
				    &ev->event_id, oom, err))
		return false;
	if (!codec_json_take_source(root, ev, oom, err))
		return false;
	if (!json_is_string(json_object_get(root, "type"))) {
		evt_error_set(err, "invalid_field", "type",
			      "type must be a string");
		return false;
	}
	if (!codec_json_take_string(root, "occurred_at", "occurred_at",
				    &ev->occurred_at, oom, err))
		return false;
	return codec_json_take_location(root, ev, err) &&
	       codec_json_take_attrs(root, ev, oom, err);
}

struct evt *codec_json_decode_event(const char *buf, size_t len,
				    const struct evt_limits *limits,
				    struct evt_error *err)
{
	json_error_t jerr;
	json_t *root;
	struct evt *ev = NULL;
	bool oom = false;

	root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL || !json_is_object(root)) {
		/* Position only: jansson's text quotes the body, which may
		 * hold personal data and end up in a log line. */
		if (root != NULL)
			evt_error_set(err, "malformed_json", "",
				      "the body must be a JSON object");
		else
			evt_error_set(err, "malformed_json", "",
				      "the body is not valid JSON (line %d, "
				      "column %d)", jerr.line, jerr.column);
		goto fail;
	}
	ev = calloc(1, sizeof(*ev));
	if (ev == NULL) {
		oom = true;
		goto fail;
	}
	if (!codec_json_check_missing(root, err) ||
	    !codec_json_check_enums(root, ev, err) ||
	    !codec_json_check_ids(root, limits, err) ||
	    !codec_json_take(root, ev, &oom, err) ||
	    !evt_validate(ev, limits, err))
		goto fail;
	json_decref(root);
	return ev;
fail:
	if (oom)
		evt_error_set(err, "malformed_json", "",
			      "out of memory while decoding");
	evt_free(ev);
	json_decref(root);
	return NULL;
}

/* --- encoders ---------------------------------------------------------- */

/* Serializes and frees obj. NULL if obj is NULL or on allocation failure. */
static char *codec_json_dump(json_t *obj, size_t flags)
{
	char *s;

	if (obj == NULL)
		return NULL;
	s = json_dumps(obj, JSON_COMPACT | flags);
	json_decref(obj);
	return s;
}

/* json_object_set_new that also accepts a NULL value (allocation failure)
 * and records it. */
static void codec_json_put(json_t *obj, const char *key, json_t *v, bool *ok)
{
	if (v == NULL || json_object_set_new(obj, key, v) != 0)
		*ok = false;
}

/* The event and answer encoders write their JSON directly (jsonw.h)
 * instead of building a jansson tree and dumping it: on the ingest path
 * that was about a fifth of alertd's instructions per event
 * (docs/BENCHMARKS.md, optimisation 2). */

/* The reals of the location with the fewest digits (15..17) that print
 * back to the same doubles: 38.4555 stays "38.4555", not
 * 38.455500000000001. One precision for both, as jansson had it. */
static void codec_json_location(struct jsonw *b,
				const struct evt *ev)
{
	char lat[NUMTEXT_REAL_LEN], lon[NUMTEXT_REAL_LEN];

	if (!isfinite(ev->lat) || !isfinite(ev->lon)) {
		b->ok = false;
		return;
	}
	numtext_real(lat, ev->lat);
	numtext_real(lon, ev->lon);
	jsonw_lit(b, ",\"location\":{\"lat\":");
	jsonw_real(b, lat);
	jsonw_lit(b, ",\"lon\":");
	jsonw_real(b, lon);
	jsonw_lit(b, "}");
}

/* Attrs as a JSON object; a repeated key keeps its first place and its
 * last value. */
static void codec_json_attrs(struct jsonw *b, const struct evt *ev)
{
	bool first = true;

	/* Every key and value must be valid, also those replaced later. */
	for (size_t i = 0; i < ev->n_attrs; i++)
		if (!jsonw_utf8_valid(ev->attrs[i].key) ||
		    !jsonw_utf8_valid(ev->attrs[i].value))
			b->ok = false;
	jsonw_lit(b, ",\"attrs\":{");
	for (size_t i = 0; i < ev->n_attrs; i++) {
		const char *key = ev->attrs[i].key, *value = ev->attrs[i].value;
		bool seen = false;

		for (size_t j = 0; j < i && !seen; j++)
			seen = strcmp(ev->attrs[j].key, key) == 0;
		if (seen)
			continue;
		for (size_t j = i + 1; j < ev->n_attrs; j++)
			if (strcmp(ev->attrs[j].key, key) == 0)
				value = ev->attrs[j].value;
		if (!first)
			jsonw_lit(b, ",");
		first = false;
		jsonw_str(b, key);
		jsonw_lit(b, ":");
		jsonw_str(b, value);
	}
	jsonw_lit(b, "}");
}

char *codec_json_encode_event(const struct evt *ev)
{
	struct jsonw b = JSONW_INIT;

	jsonw_lit(&b, "{\"event_id\":");
	jsonw_str(&b, ev->event_id);
	jsonw_lit(&b, ",\"source\":{\"id\":");
	jsonw_str(&b, ev->source_id);
	jsonw_lit(&b, ",\"kind\":");
	jsonw_str(&b, evt_kind_name(ev->kind));
	if (ev->zone != NULL) {
		jsonw_lit(&b, ",\"zone\":");
		jsonw_str(&b, ev->zone);
	}
	if (ev->label != NULL) {
		jsonw_lit(&b, ",\"label\":");
		jsonw_str(&b, ev->label);
	}
	jsonw_lit(&b, "},\"type\":");
	jsonw_str(&b, evt_type_name(ev->type));
	if (ev->occurred_at != NULL) {
		jsonw_lit(&b, ",\"occurred_at\":");
		jsonw_str(&b, ev->occurred_at);
	}
	if (ev->has_location)
		codec_json_location(&b, ev);
	if (ev->n_attrs > 0)
		codec_json_attrs(&b, ev);
	jsonw_lit(&b, "}");
	return jsonw_finish(&b);
}

char *codec_json_encode_answer(const char *event_id, int64_t incident_id,
			       enum evt_outcome outcome, int priority)
{
	struct jsonw b = JSONW_INIT;
	jsonw_lit(&b, "{\"event_id\":");
	jsonw_str(&b, event_id ? event_id : "");
	jsonw_lit(&b, ",\"incident_id\":");
	jsonw_int(&b, incident_id);
	jsonw_lit(&b, ",\"outcome\":");
	jsonw_str(&b, evt_outcome_name(outcome));
	jsonw_lit(&b, ",\"priority\":");
	jsonw_int(&b, priority);
	jsonw_lit(&b, "}");
	return jsonw_finish(&b);
}

/* A JSON string of text that came from elsewhere: NULL becomes "", and text
 * that is not valid UTF-8 (a truncated detail) is replaced rather than
 * making the whole answer fail. */
static json_t *codec_json_text(const char *s)
{
	json_t *v;

	if (s == NULL)
		s = "";
	v = json_string(s);
	return v ? v : json_string("(undisplayable text)");
}

char *codec_json_encode_error(const char *code, const char *field,
			      const char *detail)
{
	json_t *obj = json_object();
	bool ok = obj != NULL;

	if (!ok)
		return NULL;
	codec_json_put(obj, "error", codec_json_text(code), &ok);
	codec_json_put(obj, "detail", codec_json_text(detail), &ok);
	if (field != NULL && field[0] != '\0')
		codec_json_put(obj, "field", codec_json_text(field), &ok);
	if (!ok) {
		json_decref(obj);
		return NULL;
	}
	return codec_json_dump(obj, 0);
}
