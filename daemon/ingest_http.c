/* ingest_http: POST /v1/events. Limits and the signature are checked
 * before the body is parsed; nothing reaches Redis or PostgreSQL until the
 * event is authenticated and valid. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/buffer.h>

#include "auth.h"
#include "codec_json.h"
#include "codec_pb.h"
#include "config.h"
#include "http1.h"
#include "http_server.h"
#include "log.h"
#include "pipeline.h"
#include "tzclock.h"

/* Events waiting in the pipeline beyond which an HTTP event that is not
 * an alarm gets 503 (the size of the TCP ingest's bound). */
#define INGEST_HTTP_QUEUE_MAX 16384

enum ingest_http_media {
	MEDIA_JSON,
	MEDIA_PROTOBUF,
	MEDIA_OTHER,
};

/* Content-Type without parameters; a missing header means JSON. */
static enum ingest_http_media ingest_http_media(struct hreq *req)
{
	const char *ct = hreq_header(req, "Content-Type");
	size_t n;

	if (ct == NULL)
		return MEDIA_JSON;
	n = strcspn(ct, "; \t");
	if (n == strlen("application/json") &&
	    strncasecmp(ct, "application/json", n) == 0)
		return MEDIA_JSON;
	if ((n == strlen("application/x-protobuf") &&
	     strncasecmp(ct, "application/x-protobuf", n) == 0) ||
	    (n == strlen("application/protobuf") &&
	     strncasecmp(ct, "application/protobuf", n) == 0))
		return MEDIA_PROTOBUF;
	return MEDIA_OTHER;
}

static void ingest_http_on_answer(const struct pipeline_answer *ans, void *arg)
{
	struct hreq *req = arg;
	char *json;

	if (!ans->durable) {
		int status = 503;

		/* Refusals by the rules (docs/api.md). */
		if (strcmp(ans->error_code, "rate_limited") == 0)
			status = 429;
		else if (strcmp(ans->error_code, "unknown_source") == 0)
			status = 403;
		http_reply_error(req, status, ans->error_code, NULL,
				 ans->detail, ans->retry_after_s);
		return;
	}
	json = codec_json_encode_answer(ans->event_id, ans->incident_id,
					ans->outcome, ans->priority);
	http_reply_json(req, 202, json != NULL ? json : "{}");
	free(json);
}

/* Signature header -> 401 answer, or true when it verifies. */
static bool ingest_http_authenticate(struct hreq *req,
				     const struct config *cfg,
				     const unsigned char *body, size_t len,
				     size_t *secret_index)
{
	const char *hdr = hreq_header(req, "X-Alertd-Signature");
	enum auth_sig_result r;
	char v1[65];
	int64_t t;

	if (hdr == NULL)
		r = AUTH_SIG_MISSING;
	else if (!auth_parse_signature_header(hdr, &t, v1, sizeof(v1)))
		r = AUTH_SIG_MALFORMED;
	else
		r = auth_verify(cfg, t, v1, body, len, time(NULL),
				secret_index);
	switch (r) {
	case AUTH_SIG_OK:
		return true;
	case AUTH_SIG_MISSING:
		http_reply_error(req, 401, auth_sig_code(r), NULL,
				 "the X-Alertd-Signature header is missing", 0);
		break;
	case AUTH_SIG_MALFORMED:
		http_reply_error(req, 401, auth_sig_code(r), NULL,
				 "X-Alertd-Signature must be t=<unix seconds>,v1=<hex HMAC-SHA256>",
				 0);
		break;
	case AUTH_SIG_EXPIRED:
		http_reply_error(req, 401, auth_sig_code(r), NULL,
				 "the signature timestamp is outside the replay window; check the device clock",
				 0);
		break;
	case AUTH_SIG_INVALID:
		http_reply_error(req, 401, auth_sig_code(r), NULL,
				 "the signature does not match the body", 0);
		break;
	}
	return false;
}

void ingest_http_on_event(struct hreq *req, void *server)
{
	const struct http_deps *deps = http_server_deps(server);
	const struct config *cfg = config_current();
	struct evbuffer *in = hreq_body(req);
	size_t len = evbuffer_get_length(in);
	struct evt_limits limits = config_evt_limits(cfg);
	struct evt_error err = {0};
	enum ingest_http_media media;
	const unsigned char *body;
	size_t secret_index = 0;
	struct evt *ev;

	if (hreq_method(req) != HREQ_POST) {
		hreq_add_header(req, "Allow", "POST");
		http_reply_error(req, 405, "method_not_allowed", NULL,
				 "events are sent with POST", 0);
		return;
	}
	if (len > (size_t)cfg->max_body_bytes) {
		char detail[96];

		snprintf(detail, sizeof(detail),
			 "the body is larger than %d bytes", cfg->max_body_bytes);
		http_reply_error(req, 413, "body_too_large", NULL, detail, 0);
		return;
	}
	media = ingest_http_media(req);
	if (media == MEDIA_OTHER) {
		http_reply_error(req, 415, "unsupported_media_type", NULL,
				 "send application/json or application/x-protobuf",
				 0);
		return;
	}
	if (http_server_draining(server)) {
		http_reply_error(req, 503, "unavailable", NULL,
				 "alertd is shutting down; send the event again",
				 cfg->retry_after_s);
		return;
	}
	body = evbuffer_pullup(in, -1);
	if (body == NULL)
		body = (const unsigned char *)"";
	if (!ingest_http_authenticate(req, cfg, body, len, &secret_index))
		return;
	if (media == MEDIA_JSON)
		ev = codec_json_decode_event((const char *)body, len, &limits,
					     &err);
	else
		ev = codec_pb_decode_event(body, len, &limits, &err);
	if (ev == NULL) {
		http_reply_error(req, 400, err.code, err.field, err.detail, 0);
		return;
	}
	if (!auth_source_allowed(cfg, secret_index, ev->source_id)) {
		http_reply_error(req, 401, "signature_invalid", NULL,
				 "the signing secret is not the one configured for this source",
				 0);
		evt_free(ev);
		return;
	}
	/* The device TCP port bounds what it has read and not answered
	 * (INGEST_TCP_TOTAL_EVENTS); HTTP requests are bounded only by the
	 * connections, which libevent does not cap. Past the same bound the
	 * routine events are told to come back (503, Retry-After), never an
	 * alarm: those always queue, in the urgent lane. */
	if (pipeline_inflight(deps->pipeline) >= INGEST_HTTP_QUEUE_MAX &&
	    !evt_type_urgent(ev->type)) {
		http_reply_error(req, 503, "unavailable", NULL,
				 "alertd has too many events waiting; send "
				 "the event again", cfg->retry_after_s);
		evt_free(ev);
		return;
	}
	ev->received_at_ms = tzclock_now_ms();
	pipeline_submit(deps->pipeline, ev, ingest_http_on_answer, req);
}
