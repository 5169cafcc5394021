/* http_client: outgoing HTTP requests on the event loop (libevent's evhttp
 * client): one connection per request to an IPv4 literal (no DNS on the
 * loop), a deadline per request, the connection freed on the next loop
 * turn after the answer. No retries here: notify.c retries with backoff. */
#ifndef ALERTD_HTTP_CLIENT_H
#define ALERTD_HTTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct http_client;
struct policy_url;

/* status: the HTTP status, or 0 when there was no answer (refused,
 * reset, deadline passed). body is valid only during the call. */
typedef void (*http_client_cb)(int status, const char *body, size_t len,
			       void *arg);

struct http_client *http_client_new(struct event_base *base);
/* Requests still in flight are cancelled without calling back. */
void http_client_free(struct http_client *hc);

/* GET when body is NULL, else POST with content_type. headers: NULL or
 * name, value, ..., NULL. path_query overrides url->path when not NULL.
 * false (cb not called) if the request cannot be started. */
bool http_client_request(struct http_client *hc, const struct policy_url *url,
			 const char *path_query, const char *const *headers,
			 const char *content_type, const char *body,
			 int timeout_ms, http_client_cb cb, void *arg)
	__attribute__((warn_unused_result));
size_t http_client_in_flight(const struct http_client *hc);

#endif
