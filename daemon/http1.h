/* http1: alertd's HTTP/1.1 server connections (docs/BENCHMARKS.md,
 * optimisation 36; docs/api.md, "HTTP").
 *
 * Requests are parsed with http_parser (Debian's libhttp-parser); this
 * file keeps the connections: reading, keep-alive and pipelining (one
 * request at a time per connection, in order), answers written to the
 * socket the moment they are given, idle timeouts, limits, streams.
 * libevent's evhttp did the same with six system calls per request (it
 * turns reading off after each request and writing on and off per answer);
 * here a request costs one read and one write.
 *
 * A request is answered exactly once, with hreq_reply or (a stream)
 * hreq_stream_start ... hreq_stream_end; that frees it. When the client
 * leaves first, the request stays valid (hreq_gone) until it is answered;
 * the answer is then dropped. */
#ifndef ALERTD_HTTP1_H
#define ALERTD_HTTP1_H

#include <stdbool.h>
#include <stddef.h>

#include <sys/socket.h>

struct event_base;
struct evbuffer;
struct http1;
struct hreq;

enum hreq_method {
	HREQ_GET,
	HREQ_HEAD,
	HREQ_POST,
	HREQ_PUT,
	HREQ_DELETE,
	HREQ_OTHER, /* anything else http_parser knows (PATCH, OPTIONS...) */
};

/* A complete request (headers and body read). */
typedef void (*http1_on_request)(struct hreq *req, void *arg);
/* A request the layer refuses itself (malformed, too large): the handler
 * answers it with status (and a JSON error of code and detail); the
 * connection closes after that answer. */
typedef void (*http1_on_refused)(struct hreq *req, int status,
				 const char *code, const char *detail,
				 void *arg);
/* The client of a stream left; the stream's owner must still call
 * hreq_stream_end. Called from the loop, never from inside hreq_*. */
typedef void (*hreq_on_close)(struct hreq *req, void *arg);

struct http1_limits {
	size_t max_header_bytes; /* request line and headers: 431 beyond */
	size_t max_body_bytes;   /* 413 beyond, the connection closed */
	int idle_timeout_s;      /* keep-alive idle, slow requests, writes */
	size_t max_connections;  /* one more is answered 503 and closed */
};

struct http1 *http1_new(struct event_base *base,
			const struct http1_limits *limits,
			http1_on_request on_request,
			http1_on_refused on_refused, void *arg);
/* New limits (a reload): for new connections and every timeout armed from
 * now on. */
void http1_set_limits(struct http1 *h, const struct http1_limits *limits);
/* Takes an accepted, non-blocking socket (closed on failure). */
void http1_accept(struct http1 *h, int fd);
/* From now on every answer carries "Connection: close" and its
 * connection closes after it (SIGTERM). */
void http1_drain(struct http1 *h);
size_t http1_connections(const struct http1 *h);
/* Closes every connection; streams get their close callback. */
void http1_free(struct http1 *h);

/* The request. */
enum hreq_method hreq_method(const struct hreq *r);
/* The path of the target, as sent (not percent-decoded); never NULL. */
const char *hreq_path(const struct hreq *r);
/* What follows '?' in the target, or NULL. */
const char *hreq_query(const struct hreq *r);
/* First header of that name (case-insensitive), or NULL. */
const char *hreq_header(const struct hreq *r, const char *name);
/* The body (decoded from chunks); the handler may drain it. */
struct evbuffer *hreq_body(struct hreq *r);
/* true once the client has gone: the answer will be dropped. */
bool hreq_gone(const struct hreq *r);

/* The answer. */
void hreq_add_header(struct hreq *r, const char *name, const char *value);
/* The answer's body, sent by hreq_reply. */
struct evbuffer *hreq_output(struct hreq *r);
/* Sends the answer with its headers and hreq_output; frees r. */
void hreq_reply(struct hreq *r, int status);

/* A stream (server-sent events): the headers now, the body as it comes,
 * chunked for HTTP/1.1 clients and until the close for HTTP/1.0. No idle
 * timeout applies; on_close tells when the client leaves. Every HTTP
 * socket has TCP_NODELAY: each write leaves at once. */
void hreq_stream_start(struct hreq *r, int status, hreq_on_close on_close,
		       void *arg);
void hreq_stream_write(struct hreq *r, const void *data, size_t len);
/* Bytes given to the stream that the client has not taken yet. */
size_t hreq_stream_queued(const struct hreq *r);
/* Ends the stream (the connection closes) and frees r; on_close is not
 * called afterwards. */
void hreq_stream_end(struct hreq *r);

#endif
