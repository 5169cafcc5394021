/* http_server: the HTTP listener (http1.c), routing, JSON replies. */
#include "http_server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "codec_json.h"
#include "config.h"
#include "http1.h"
#include "listen_guard.h"
#include "log.h"
#include "metrics.h"
#include "netaddr.h"

/* The connections refuse bodies above this before reading them (413, the
 * connection closed); bodies between max_body_bytes and this are read and
 * refused by the endpoint (413, the connection kept). It is the largest
 * value max_body_bytes may take. */
#define HTTP_HARD_BODY_LIMIT (1024 * 1024 + 1)

struct http_server {
	struct event_base *base;
	struct http1 *http;
	struct evconnlistener *listener;
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

void http_reply_json(struct hreq *req, int status, const char *json)
{
	struct evbuffer *body = hreq_output(req);

	hreq_add_header(req, "Content-Type", "application/json");
	hreq_add_header(req, "Cache-Control", "no-store");
	if (json != NULL) {
		evbuffer_add(body, json, strlen(json));
		evbuffer_add(body, "\n", 1);
	}
	hreq_reply(req, status);
}

void http_reply_error(struct hreq *req, int status,
		      const char *code, const char *field, const char *detail,
		      int retry_after_s)
{
	char *json = codec_json_encode_error(code, field, detail);

	metrics_count_error(code);
	if (retry_after_s > 0) {
		char v[16];

		snprintf(v, sizeof(v), "%d", retry_after_s);
		hreq_add_header(req, "Retry-After", v);
	}
	http_reply_json(req, status,
			json != NULL ? json : "{\"error\":\"internal\"}");
	free(json);
}

const char *http_bearer_token(struct hreq *req)
{
	const char *h = hreq_header(req, "Authorization");

	if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0)
		return NULL;
	for (h += 7; *h == ' '; h++)
		;
	return *h != '\0' ? h : NULL;
}

/* Routes on the path; everything else is a JSON 404. */
static void http_server_on_request(struct hreq *req, void *arg)
{
	struct http_server *s = arg;
	const char *path = hreq_path(req);

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

static void http_server_limits(struct http1_limits *limits)
{
	const struct config *cfg = config_current();

	limits->max_header_bytes = 16384;
	limits->max_body_bytes = HTTP_HARD_BODY_LIMIT;
	limits->idle_timeout_s = cfg->http_idle_timeout_s;
	limits->max_connections = (size_t)cfg->http_max_connections;
}

/* What the connections refuse themselves: malformed, too large. */
static void http_server_on_refused(struct hreq *req, int status,
				   const char *code, const char *detail,
				   void *arg)
{
	http_reply_error(req, status, code, NULL, detail, 0);
}

static void http_server_on_accept(struct evconnlistener *l,
				  evutil_socket_t fd, struct sockaddr *sa,
				  int socklen, void *arg)
{
	struct http_server *s = arg;
	struct http1_limits limits;

	/* The settings of the last reload. */
	http_server_limits(&limits);
	http1_set_limits(s->http, &limits);
	http1_accept(s->http, fd);
}

struct http_server *http_server_new(struct event_base *base,
				    const struct http_deps *deps)
{
	struct http_server *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	struct http1_limits limits;

	http_server_limits(&limits);
	s->base = base;
	s->deps = *deps;
	s->http = http1_new(base, &limits, http_server_on_request,
			    http_server_on_refused, s);
	if (s->http == NULL) {
		free(s);
		return NULL;
	}
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
	l = evconnlistener_new_bind(s->base, http_server_on_accept, s,
				    LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE |
					    LEV_OPT_CLOSE_ON_EXEC,
				    NETADDR_LISTEN_BACKLOG,
				    (struct sockaddr *)&ss, len);
	if (l == NULL) {
		log_error("http=%s: cannot listen: %s", hostport,
			  evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		return false;
	}
	s->listener = l;
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
		evconnlistener_free(s->listener);
		s->listener = NULL;
	}
	/* No new work on kept-alive connections: the device retries
	 * elsewhere or after the restart. */
	http1_drain(s->http);
}

void http_server_free(struct http_server *s)
{
	if (s == NULL)
		return;
	listen_guard_free(s->guard);
	if (s->listener != NULL)
		evconnlistener_free(s->listener);
	http1_free(s->http);
	free(s);
}
