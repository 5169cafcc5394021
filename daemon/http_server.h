/* http_server: the HTTP listener, the routing table of the HTTP API and
 * the JSON reply helpers. Every request is answered exactly once (http1.h:
 * a request whose client left stays valid until it is answered). */
#ifndef ALERTD_HTTP_SERVER_H
#define ALERTD_HTTP_SERVER_H

#include <stdbool.h>

struct event_base;
struct hreq;
struct http_server;
struct pipeline;
struct decide;
struct fanout;
struct operators;
struct redis_pool;
struct pg_conn;
struct audit;
struct notify;

struct http_deps {
	struct pipeline *pipeline;
	struct decide *decide;
	struct fanout *fanout;
	struct operators *operators;
	struct redis_pool *redis;
	struct pg_conn *pg;
	struct audit *audit;
	struct notify *notify;     /* SMS delivery reports */
	struct pg_conn *pg_query;   /* audit queries, their own connection */
};

struct http_server *http_server_new(struct event_base *base,
				    const struct http_deps *deps);
/* Binds cfg->http_listen. false (logged) on failure. */
bool http_server_listen(struct http_server *s, const char *hostport)
	__attribute__((warn_unused_result));
/* Stops accepting new connections (drain); open ones are answered. */
void http_server_stop_accepting(struct http_server *s);
void http_server_free(struct http_server *s);

/* Replies: JSON body with Content-Type application/json. */
void http_reply_json(struct hreq *req, int status, const char *json);
/* {"error":code,"detail":detail[,"field":field]}; retry_after_s > 0 adds
 * Retry-After. Counts the error in the metrics. */
void http_reply_error(struct hreq *req, int status,
		      const char *code, const char *field, const char *detail,
		      int retry_after_s);

/* "Authorization: Bearer <token>" -> the token, or NULL when absent. */
const char *http_bearer_token(struct hreq *req);

/* Shared state for the handlers in ingest_http.c and api.c. */
const struct http_deps *http_server_deps(const struct http_server *s);
/* true after http_server_stop_accepting (SIGTERM): new events get 503. */
bool http_server_draining(const struct http_server *s);

/* Handlers (ingest_http.c, api.c). */
void ingest_http_on_event(struct hreq *req, void *server);
void api_on_stream(struct hreq *req, void *server);
void api_on_incidents(struct hreq *req, void *server);
void api_on_health(struct hreq *req, void *server);
void api_on_ready(struct hreq *req, void *server);
void api_on_metrics(struct hreq *req, void *server);
/* POST /v1/incidents/{id}/{ack,resolve,note,transfer,reopen} (actions.c) */
void actions_on_request(struct hreq *req, void *server);
/* GET /v1/dlr/sms: Kannel's delivery reports (notify_sms.c) */
void notify_sms_on_dlr(struct hreq *req, void *server);
void api_audit_on_request(struct hreq *req, void *server);

#endif
