/* codec_pb: protobuf bytes <-> the event model, and the TCP frames
 * (4-byte big-endian length + serialized alertd.v1.Frame). Knows nothing
 * of sockets. Uses protobuf-c and the code generated from
 * proto/alertd.proto. */
#ifndef ALERTD_CODEC_PB_H
#define ALERTD_CODEC_PB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "evt.h"

/* Decodes and validates one serialized alertd.v1.Event (HTTP protobuf body,
 * or SignedEvent.event). Same error codes as codec_json, with
 * "malformed_protobuf" for undecodable bytes; enum 0 (UNSPECIFIED) of kind or
 * type is "missing_field", an unknown enum number "invalid_enum". */
struct evt *codec_pb_decode_event(const uint8_t *buf, size_t len,
				  const struct evt_limits *limits,
				  struct evt_error *err)
	__attribute__((warn_unused_result));

/* The event_id of a serialized Event that failed codec_pb_decode_event, so
 * that its Nack can still name it: a copy (caller frees) when the bytes
 * decode and the id is valid, else NULL. */
char *codec_pb_peek_event_id(const uint8_t *buf, size_t len,
			     size_t max_id_len);

/* One decoded TCP frame body (without the length prefix) that must be a
 * Frame{event}. On success, *t, *v1 (NUL-terminated copy, caller frees) and
 * *event and *event_len (a malloc'd copy of the serialized Event, caller frees)
 * are set. Returns false with err "malformed_frame" if the bytes are not a
 * Frame or not an event frame. */
bool codec_pb_decode_signed_event(const uint8_t *buf, size_t len, int64_t *t,
				  char **v1, uint8_t **event, size_t *event_len,
				  struct evt_error *err)
	__attribute__((warn_unused_result));

/* Encoders return a malloc'd, length-prefixed frame ready to write, and its
 * size in *len. NULL only on allocation failure. */
uint8_t *codec_pb_frame_ack(const char *event_id, enum evt_outcome outcome,
			    int64_t incident_id, int priority, size_t *len);
uint8_t *codec_pb_frame_nack(const char *event_id, const char *code,
			     bool retry, const char *detail,
			     uint32_t retry_after_ms, size_t *len);
uint8_t *codec_pb_frame_error(const char *code, const char *detail,
			      size_t *len);

#endif
