/* codec_json: JSON bytes <-> the event model, and the JSON answers of the
 * contract. Knows nothing of sockets. Uses jansson. */
#ifndef ALERTD_CODEC_JSON_H
#define ALERTD_CODEC_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "evt.h"

/* Decodes and validates one event. On failure returns NULL and fills err
 * ("malformed_json", or the codes of evt_validate naming the field). Unknown
 * top-level members are ignored; members of the wrong JSON type are
 * "invalid_field"; an unknown kind/type string is "invalid_enum". */
struct evt *codec_json_decode_event(const char *buf, size_t len,
				    const struct evt_limits *limits,
				    struct evt_error *err)
	__attribute__((warn_unused_result));

/* The canonical JSON of an event (what the audit stores as jsonb): the
 * contract's event object with only the members that are present. Caller
 * frees. */
char *codec_json_encode_event(const struct evt *ev);

/* {"event_id":..,"incident_id":..,"outcome":..,"priority":..}. Caller frees. */
char *codec_json_encode_answer(const char *event_id, int64_t incident_id,
			       enum evt_outcome outcome, int priority);

/* {"error":code,"detail":detail[,"field":field]}. field may be NULL or "".
 * Caller frees. */
char *codec_json_encode_error(const char *code, const char *field,
			      const char *detail);

#endif
