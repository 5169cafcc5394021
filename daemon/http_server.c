/* http_server: evhttp listener, routing, JSON replies. */
#include "http_server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>

#include "codec_json.h"
#include "config.h"
#include "listen_guard.h"
#include "log.h"
#include "metrics.h"
#include "netaddr.h"

/* evhttp refuses (with its own plain-text 413) bodies above this; bodies
 * between max_body_bytes and this get alertd's JSON 413. It is the largest
 * value max_body_bytes may take. */
#define HTTP_HARD_BODY_LIMIT (1024 * 1024 + 1)

struct http_server {
	struct event_base *base;
	struct evhttp *http;
	struct evhttp_bound_socket *listener;
	struct listen_guard *guard;
	struct http_deps deps;
	bool draining;
};

const struct http_deps *http_server_deps(const struct http_server *s)
{
	return &s->deps;
}

bool http_server_draining(const struct http_server *s)
{
	return s->draining;
}

void http_reply_json(struct evhttp_request *req, int status, const char *json)
{
	/* The request's own output buffer: evhttp sends what it holds, and
	 * a buffer of our own per answer was one allocation and one copy
	 * more (optimisation 35). */
	struct evbuffer *body = evhttp_request_get_output_buffer(req);
	struct evkeyvalq *out = evhttp_request_get_output_headers(req);

	evhttp_add_header(out, "Content-Type", "application/json");
	evhttp_add_header(out, "Cache-Control", "no-store");
	if (json != NULL) {
		evbuffer_add(body, json, strlen(json));
		evbuffer_add(body, "\n", 1);
	}
	evhttp_send_reply(req, status, NULL, NULL);
}

void http_reply_error(struct evhttp_request *req, int status,
		      const char *code, const char *field, const char *detail,
		      int retry_after_s)
{
	char *json = codec_json_encode_error(code, field, detail);

	metrics_count_error(code);
	if (retry_after_s > 0) {
		char v[16];

		snprintf(v, sizeof(v), "%d", retry_after_s);
		evhttp_add_header(evhttp_request_get_output_headers(req),
				  "Retry-After", v);
	}
	http_reply_json(req, status,
			json != NULL ? json : "{\"error\":\"internal\"}");
	free(json);
}

const char *http_bearer_token(struct evhttp_request *req)
{
	const char *h = evhttp_find_header(evhttp_request_get_input_headers(req),
					   "Authorization");

	if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0)
		return NULL;
	for (h += 7; *h == ' '; h++)
		;
	return *h != '\0' ? h : NULL;
}

/* Routes on the path; everything else is a JSON 404. */
static void http_server_on_request(struct evhttp_request *req, void *arg)
{
	struct http_server *s = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;

	if (path == NULL)
		path = "";
	if (s->draining) {
		/* Stop taking new work on kept-alive connections; the
		 * device retries elsewhere or after the restart. */
		evhttp_add_header(evhttp_request_get_output_headers(req),
				  "Connection", "close");
	}
	if (strcmp(path, "/v1/events") == 0)
		ingest_http_on_event(req, s);
	else if (strcmp(path, "/v1/stream") == 0)
		api_on_stream(req, s);
	else if (strncmp(path, "/v1/incidents/", 14) == 0 &&
		 strchr(path + 14, '/') != NULL)
		actions_on_request(req, s);
	else if (strcmp(path, "/v1/incidents") == 0 ||
		 strncmp(path, "/v1/incidents/", 14) == 0)
		api_on_incidents(req, s);
	else if (strcmp(path, "/v1/dlr/sms") == 0)
		notify_sms_on_dlr(req, s);
	else if (strcmp(path, "/healthz") == 0)
		api_on_health(req, s);
	else if (strcmp(path, "/readyz") == 0)
		api_on_ready(req, s);
	else if (strcmp(path, "/metrics") == 0)
		api_on_metrics(req, s);
	else if (strcmp(path, "/v1/audit") == 0)
		api_audit_on_request(req, s);
	else
		http_reply_error(req, 404, "not_found", NULL,
				 "no such endpoint", 0);
}

struct http_server *http_server_new(struct event_base *base,
				    const struct http_deps *deps)
{
	struct http_server *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	s->base = base;
	s->deps = *deps;
	s->http = evhttp_new(base);
	if (s->http == NULL) {
		free(s);
		return NULL;
	}
	evhttp_set_max_body_size(s->http, HTTP_HARD_BODY_LIMIT);
	evhttp_set_max_headers_size(s->http, 16384);
	evhttp_set_allowed_methods(s->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST |
						    EVHTTP_REQ_HEAD |
						    EVHTTP_REQ_PUT |
						    EVHTTP_REQ_DELETE);
	/* Idle keep-alive connections are closed after a minute; streams
	 * lift the timeout on their own connection. */
	evhttp_set_timeout(s->http, 60);
	evhttp_set_gencb(s->http, http_server_on_request, s);
	return s;
}

bool http_server_listen(struct http_server *s, const char *hostport)
{
	struct sockaddr_storage ss;
	struct evconnlistener *l;
	char *host = NULL;
	int port = 0, len = 0;

	if (!config_split_hostport(hostport, &host, &port) ||
	    !netaddr_parse(host, port, &ss, &len)) {
		log_error("http: bad listen address %s (numeric host:port)",
			  hostport);
		free(host);
		return false;
	}
	free(host);
	/* Our own listener rather than evhttp_bind_socket: that one listens
	 * with a backlog of 128 (NETADDR_LISTEN_BACKLOG). */
	l = evconnlistener_new_bind(s->base, NULL, NULL,
				    LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE |
					    LEV_OPT_CLOSE_ON_EXEC,
				    NETADDR_LISTEN_BACKLOG,
				    (struct sockaddr *)&ss, len);
	if (l == NULL) {
		log_error("http=%s: cannot listen: %s", hostport,
			  evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		return false;
	}
	s->listener = evhttp_bind_listener(s->http, l);
	if (s->listener == NULL) {
		log_error("http=%s: cannot listen", hostport);
		evconnlistener_free(l);
		return false;
	}
	/* After evhttp_bind_listener, which leaves the error callback. */
	s->guard = listen_guard_new(s->base, l, "http");
	if (s->guard == NULL) {
		log_error("http=%s: out of memory", hostport);
		return false;
	}
	log_info("http=%s: listening", hostport);
	return true;
}

void http_server_stop_accepting(struct http_server *s)
{
	s->draining = true;
	listen_guard_free(s->guard);
	s->guard = NULL;
	if (s->listener != NULL) {
		evhttp_del_accept_socket(s->http, s->listener);
		s->listener = NULL;
	}
}

void http_server_free(struct http_server *s)
{
	if (s == NULL)
		return;
	listen_guard_free(s->guard);
	evhttp_free(s->http);
	free(s);
}
