/* evt: the event model and its validation, one place for JSON and protobuf.
 *
 * (Named evt, not event, so that its prefix cannot collide with libevent's
 * event_* functions.) */
#ifndef ALERTD_EVT_H
#define ALERTD_EVT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum evt_kind {
	EVT_KIND_BUS = 0,
	EVT_KIND_FERRY,
	EVT_KIND_STOP,
	EVT_KIND_PARK,
	EVT_KIND_SUPPORT_LINE,
	EVT_KIND_OTHER,
	EVT_KIND__COUNT
};

enum evt_type {
	EVT_TYPE_PANIC = 0,
	EVT_TYPE_SILENT_ALARM,
	EVT_TYPE_CALL_REQUEST,
	EVT_TYPE_CALLBACK_REQUEST,
	EVT_TYPE_FAULT,
	EVT_TYPE_HEARTBEAT,
	EVT_TYPE_TEST,
	EVT_TYPE__COUNT
};

enum evt_outcome {
	EVT_OUTCOME_NEW = 0,
	EVT_OUTCOME_MERGED,
	EVT_OUTCOME_DUPLICATE,
	EVT_OUTCOME__COUNT
};

/* Contract names: "bus", "panic", "new", ... */
const char *evt_kind_name(enum evt_kind kind);
const char *evt_type_name(enum evt_type type);
/* A person in danger or asking for one (panic, silent_alarm, call_request,
 * callback_request): these overtake the backlog in the pipeline's and in
 * decide's queues. */
bool evt_type_urgent(enum evt_type type);
const char *evt_outcome_name(enum evt_outcome outcome);
bool evt_kind_parse(const char *name, enum evt_kind *out);
bool evt_type_parse(const char *name, enum evt_type *out);
bool evt_outcome_parse(const char *name, enum evt_outcome *out);

/* Limits of the contract; the values come from the config. */
struct evt_limits {
	size_t max_id_len;    /* ids: 1..max_id_len chars of [A-Za-z0-9._:-] (64) */
	size_t max_attrs;     /* attrs entries (32) */
	size_t max_text_len;  /* zone, label, attr keys and values (256) */
};

struct evt_attr {
	char *key;
	char *value;
};

/* One decoded event. All strings are NUL-terminated and owned by the evt. */
struct evt {
	char *event_id;
	char *source_id;
	enum evt_kind kind;
	char *zone;  /* NULL when absent */
	char *label; /* NULL when absent */
	enum evt_type type;
	char *occurred_at;       /* RFC 3339 text as sent, NULL when absent */
	int64_t occurred_at_ms;  /* parsed value, valid when occurred_at != NULL */
	bool has_location;
	double lat, lon;
	size_t n_attrs;
	struct evt_attr *attrs;
	int64_t received_at_ms;  /* set by the ingest, wall clock */
};

/* A validation or decoding failure: `code` is the contract error code
 * ("missing_field", "invalid_enum", "invalid_id", "invalid_field",
 * "too_many_attrs", "malformed_json", "malformed_protobuf"), `field` the
 * dotted field name ("source.id") or "" and `detail` a human sentence. */
struct evt_error {
	const char *code;
	char field[64];
	char detail[192];
};

void evt_error_set(struct evt_error *err, const char *code, const char *field,
		   const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Checks ids, lengths, ranges (lat -90..90, lon -180..180), attrs count and
 * the occurred_at syntax (RFC 3339, UTC "Z" or offset) and fills
 * occurred_at_ms. Enum values are checked by the decoders. */
bool evt_validate(struct evt *ev, const struct evt_limits *limits,
		  struct evt_error *err) __attribute__((warn_unused_result));

/* true if s is 1..max chars of [A-Za-z0-9._:-]. */
bool evt_id_valid(const char *s, size_t max);

/* Parses RFC 3339 ("2026-11-21T22:14:03.120Z", "...+03:00") into unix ms. */
bool evt_parse_time(const char *s, int64_t *out_ms);

/* Formats unix ms as "2026-11-21T22:14:03.120Z" into buf (>= 25 bytes). */
void evt_format_time(int64_t ms, char *buf, size_t len);

void evt_free(struct evt *ev);   /* frees the members and ev itself */

#endif
