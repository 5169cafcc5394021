/* fuzz_ingest: what a device can send, through the code that reads it, with
 * the properties the rest of alertd relies on checked on every input.
 *
 * The first byte of an input picks the reader, the rest is its bytes:
 *
 *   0  an HTTP/JSON event body          codec_json_decode_event
 *   1  an HTTP protobuf body / the event of a TCP frame
 *                                       codec_pb_decode_event (and the
 *                                       event_id a Nack names on failure)
 *   2  a TCP frame body                 codec_pb_decode_signed_event, then
 *                                       its event as in 1
 *   3  an X-Alertd-Signature header     auth_parse_signature_header
 *   4  an occurred_at value             evt_parse_time
 *
 * For every event a reader accepts: its canonical JSON (what the audit
 * stores and Redis decides on) is valid JSON that reads back as the same
 * event, byte for byte; the stored payload after personal-data handling is
 * still JSON; and its audit row is JSON that PostgreSQL's batch statement
 * can read. A failure here is a crash of the daemon or a batch PostgreSQL
 * refuses, from one device's bytes.
 *
 * Built two ways: `make fuzz` links it with libFuzzer (clang, ASan, UBSan)
 * to search for new inputs; the unit tests (tests/unit/test_fuzz_corpus.c)
 * replay every input kept in tests/fuzz/corpus/ through fuzz_ingest_one()
 * on each `make test`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "audit.h"
#include "audit_row.h"
#include "auth.h"
#include "codec_json.h"
#include "codec_pb.h"
#include "config.h"
#include "evt.h"
#include "fuzz.h"
#include "personal.h"

static const struct evt_limits fuzz_limits = {
	.max_id_len = 64, .max_attrs = 32, .max_text_len = 256};

/* The example config: personal_attrs set, personal_store = hash. Loaded
 * once; NULL (payload handling not checked) when it cannot be read. */
static const struct config *fuzz_config(void)
{
	static struct config *cfg;
	static bool tried;
	char err[256];

	if (!tried) {
		tried = true;
		cfg = config_load("config/alertd.example.ini", err,
				  sizeof(err));
	}
	return cfg;
}

/* A string that jansson reads as JSON (strict: one value, nothing after). */
static bool fuzz_is_json(const char *s)
{
	json_error_t jerr;
	json_t *v = json_loads(s, JSON_DECODE_ANY, &jerr);

	json_decref(v);
	return v != NULL;
}

/* The properties of an accepted event; NULL or the first one broken. */
static const char *fuzz_check_event(const struct evt *ev)
{
	struct evt_error err;
	const char *why = NULL, *row_why;
	char *enc, *enc2 = NULL, *stored = NULL;
	struct evt *ev2 = NULL;
	struct audit_row *row = NULL;
	const struct config *cfg = fuzz_config();

	if (!evt_id_valid(ev->event_id, fuzz_limits.max_id_len) ||
	    !evt_id_valid(ev->source_id, fuzz_limits.max_id_len))
		return "an accepted event has an invalid id";
	if (!(enc = codec_json_encode_event(ev)))
		return "an accepted event has no canonical JSON";
	if (!fuzz_is_json(enc)) {
		why = "the canonical JSON is not JSON";
		goto out;
	}
	if (!(ev2 = codec_json_decode_event(enc, strlen(enc), &fuzz_limits,
					    &err))) {
		why = "the canonical JSON is refused when read back";
		goto out;
	}
	if (!(enc2 = codec_json_encode_event(ev2)) || strcmp(enc, enc2) != 0) {
		why = "the canonical JSON read back encodes differently";
		goto out;
	}
	if (cfg) {
		if (!(stored = personal_store_payload(cfg, enc))) {
			why = "the stored payload could not be made";
			goto out;
		}
		if (!fuzz_is_json(stored)) {
			why = "the stored payload is not JSON";
			goto out;
		}
	}
	struct audit_event_row r = {
		.accept_seq = 1,
		.event_id = ev->event_id,
		.source_id = ev->source_id,
		.source_kind = evt_kind_name(ev->kind),
		.type = evt_type_name(ev->type),
		.outcome = "new",
		.incident_id = 1,
		.priority = 1,
		.has_occurred_at = ev->occurred_at != NULL,
		.occurred_at_ms = ev->occurred_at ? ev->occurred_at_ms : 0,
		.received_at_ms = 1,
		.payload_json = stored ? stored : enc,
	};
	if (!(row = audit_row_new(&r, NULL, &row_why))) {
		why = "no audit row for an accepted event";
		goto out;
	}
	if (!fuzz_is_json(row->ev_json))
		why = "the audit row is not JSON";
out:
	audit_row_free(row);
	evt_free(ev2);
	free(enc);
	free(enc2);
	free(stored);
	return why;
}

/* A refused event names a contract error code. */
static const char *fuzz_check_refusal(const struct evt_error *err)
{
	static const char *const codes[] = {
		"missing_field", "invalid_enum", "invalid_id", "invalid_field",
		"too_many_attrs", "malformed_json", "malformed_protobuf"};

	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
		if (err->code && strcmp(err->code, codes[i]) == 0)
			return NULL;
	return "a refusal without a contract error code";
}

static const char *fuzz_pb_event(const uint8_t *p, size_t n)
{
	struct evt_error err = {0};
	struct evt *ev = codec_pb_decode_event(p, n, &fuzz_limits, &err);
	const char *why;

	if (ev) {
		why = fuzz_check_event(ev);
		evt_free(ev);
		return why;
	}
	char *id = codec_pb_peek_event_id(p, n, fuzz_limits.max_id_len);

	why = id && !evt_id_valid(id, fuzz_limits.max_id_len) ?
		      "a Nack would name an invalid event_id" :
		      fuzz_check_refusal(&err);
	free(id);
	return why;
}

/* NUL-terminated copy of p, for the readers of C strings. */
static char *fuzz_cstr(const uint8_t *p, size_t n)
{
	char *s = malloc(n + 1);

	if (s) {
		memcpy(s, p, n);
		s[n] = '\0';
	}
	return s;
}

const char *fuzz_ingest_one(const uint8_t *data, size_t size)
{
	struct evt_error err = {0};
	const char *why = NULL;
	const uint8_t *p = data + 1;
	size_t n = size - 1;

	if (size == 0)
		return NULL;
	switch (data[0] % 5) {
	case 0: {
		struct evt *ev = codec_json_decode_event((const char *)p, n,
							 &fuzz_limits, &err);

		why = ev ? fuzz_check_event(ev) : fuzz_check_refusal(&err);
		evt_free(ev);
		break;
	}
	case 1:
		why = fuzz_pb_event(p, n);
		break;
	case 2: {
		int64_t t;
		char *v1 = NULL;
		uint8_t *event = NULL;
		size_t event_len = 0;

		if (codec_pb_decode_signed_event(p, n, &t, &v1, &event,
						 &event_len, &err))
			why = fuzz_pb_event(event, event_len);
		else if (!err.code || strcmp(err.code, "malformed_frame") != 0)
			why = "a bad frame is not malformed_frame";
		free(v1);
		free(event);
		break;
	}
	case 3: {
		char *s = fuzz_cstr(p, n);
		char v1[65];
		int64_t t;

		if (s && auth_parse_signature_header(s, &t, v1, sizeof(v1)) &&
		    strlen(v1) != 64)
			why = "a signature header parsed to a short v1";
		free(s);
		break;
	}
	case 4: {
		char *s = fuzz_cstr(p, n);
		int64_t ms, ms2;
		char back[40];

		/* Years 0000 and 9999 with an offset can leave 0001..9999
		 * in UTC, which the format (4-digit years) cannot show: not
		 * a daemon bug, it formats only its own clock's times. */
		if (s && evt_parse_time(s, &ms) &&
		    ms >= INT64_C(-62135596800000) &&
		    ms < INT64_C(253402300800000)) {
			evt_format_time(ms, back, sizeof(back));
			if (!evt_parse_time(back, &ms2) || ms2 != ms)
				why = "an accepted occurred_at does not "
				      "survive its own format";
		}
		free(s);
		break;
	}
	}
	return why;
}

#ifdef ALERTD_LIBFUZZER
FUZZ_LIBFUZZER_ENTRY(fuzz_ingest_one)
#endif
