/* http1: see http1.h. */
#include "http1.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <http_parser.h>

#include "log.h"

/* One read takes at most this much; a request larger than that takes
 * more reads. */
#define HTTP1_READ_BYTES 16384
/* After an error answer the connection reads and drops what the client
 * still sends for this long before it closes, so that the answer is not
 * lost to a reset (the kernel resets a socket closed with unread data). */
#define HTTP1_LINGER_S 2

enum conn_state {
	CONN_READING,   /* parsing the next request */
	CONN_ANSWERING, /* a request is with its handler */
	CONN_STREAMING, /* a stream's body is being written */
	CONN_CLOSING,   /* the last answer is being written */
	CONN_LINGERING, /* answer written, write side shut, dropping input */
};

struct hhdr {
	size_t name, value; /* offsets in the request's text */
};

struct hreq {
	struct h1conn *conn; /* NULL when the client has gone */
	enum hreq_method method;
	unsigned short major, minor;
	bool keep_alive;
	bool complete; /* the message is read */
	/* The request's text: the target, then the header names and values,
	 * each NUL-terminated, then the path and the query. */
	char *text;
	size_t text_len, text_cap;
	size_t path, query; /* offsets; query (size_t)-1 when none */
	struct hhdr *hdrs;
	size_t n_hdrs, cap_hdrs;
	bool in_value; /* the last header piece was a value */
	size_t header_bytes;
	struct evbuffer *body;
	struct evbuffer *out_head; /* "Name: value\r\n" lines */
	struct evbuffer *out_body;
	bool chunked; /* the stream is chunked */
	hreq_on_close on_close;
	void *close_arg;
};

struct h1conn {
	TAILQ_ENTRY(h1conn) next;
	struct http1 *h;
	int fd;
	enum conn_state state;
	struct event *rev, *wev, *later;
	struct evbuffer *in, *out;
	http_parser parser;
	struct hreq *req; /* being parsed, answered or streamed */
	bool reading;     /* rev is added */
	bool peer_eof;
	bool dead;     /* the socket failed: close on the next turn */
	int busy;      /* inside one of our callbacks: do not free */
	time_t started; /* the first byte of the request being read */
	/* The layer's own refusal, found while parsing. */
	int refuse_status;
	const char *refuse_code, *refuse_detail;
};

struct http1 {
	struct event_base *base;
	struct http1_limits limits;
	http1_on_request on_request;
	http1_on_refused on_refused;
	void *arg;
	bool draining;
	size_t n_conns;
	TAILQ_HEAD(, h1conn) conns;
	time_t date_at;
	char date[40];
	time_t refused_logged;
};

static void http1_conn_on_read(evutil_socket_t fd, short what, void *arg);
static void http1_conn_refuse(struct h1conn *c);
static void http1_conn_on_write(evutil_socket_t fd, short what, void *arg);
static void http1_conn_on_later(evutil_socket_t fd, short what, void *arg);
static void http1_conn_settle(struct h1conn *c);

static time_t http1_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return ts.tv_sec;
}

/* ---- the request ---- */

static struct hreq *hreq_new(struct h1conn *c)
{
	struct hreq *r = calloc(1, sizeof(*r));

	if (r == NULL)
		return NULL;
	r->conn = c;
	r->query = (size_t)-1;
	r->body = evbuffer_new();
	r->out_head = evbuffer_new();
	r->out_body = evbuffer_new();
	if (r->body == NULL || r->out_head == NULL || r->out_body == NULL) {
		if (r->body != NULL)
			evbuffer_free(r->body);
		if (r->out_head != NULL)
			evbuffer_free(r->out_head);
		if (r->out_body != NULL)
			evbuffer_free(r->out_body);
		free(r);
		return NULL;
	}
	return r;
}

static void hreq_free(struct hreq *r)
{
	evbuffer_free(r->body);
	evbuffer_free(r->out_head);
	evbuffer_free(r->out_body);
	free(r->hdrs);
	free(r->text);
	free(r);
}

/* Appends n bytes at p, which may lie in the text itself. */
static bool hreq_text_add(struct hreq *r, const char *p, size_t n)
{
	if (r->text_len + n + 1 > r->text_cap) {
		size_t inside = r->text != NULL && p >= r->text &&
					p < r->text + r->text_cap
				? (size_t)(p - r->text)
				: (size_t)-1;
		size_t cap = r->text_cap != 0 ? r->text_cap : 256;
		char *t;

		while (cap < r->text_len + n + 1)
			cap *= 2;
		if ((t = realloc(r->text, cap)) == NULL)
			return false;
		r->text = t;
		r->text_cap = cap;
		if (inside != (size_t)-1)
			p = t + inside;
	}
	memcpy(r->text + r->text_len, p, n);
	r->text_len += n;
	r->text[r->text_len] = '\0';
	return true;
}

/* Ends the piece being added (a NUL after it). */
static bool hreq_text_end(struct hreq *r)
{
	if (!hreq_text_add(r, "", 0))
		return false;
	r->text_len++;
	return true;
}

enum hreq_method hreq_method(const struct hreq *r)
{
	return r->method;
}

const char *hreq_path(const struct hreq *r)
{
	return r->text + r->path;
}

const char *hreq_query(const struct hreq *r)
{
	return r->query != (size_t)-1 ? r->text + r->query : NULL;
}

const char *hreq_header(const struct hreq *r, const char *name)
{
	for (size_t i = 0; i < r->n_hdrs; i++)
		if (strcasecmp(r->text + r->hdrs[i].name, name) == 0)
			return r->text + r->hdrs[i].value;
	return NULL;
}

struct evbuffer *hreq_body(struct hreq *r)
{
	return r->body;
}

bool hreq_gone(const struct hreq *r)
{
	return r->conn == NULL;
}

void hreq_add_header(struct hreq *r, const char *name, const char *value)
{
	evbuffer_add_printf(r->out_head, "%s: %s\r\n", name, value);
}

struct evbuffer *hreq_output(struct hreq *r)
{
	return r->out_body;
}

static const char *http1_reason(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 413: return "Payload Too Large";
	case 415: return "Unsupported Media Type";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 503: return "Service Unavailable";
	case 505: return "HTTP Version Not Supported";
	default: return status < 400 ? "OK" : "Error";
	}
}

/* RFC 7231's IMF-fixdate, formatted once a second. */
static const char *http1_date(struct http1 *h)
{
	time_t now = time(NULL);

	if (now != h->date_at) {
		struct tm tm;

		gmtime_r(&now, &tm);
		strftime(h->date, sizeof(h->date), "%a, %d %b %Y %H:%M:%S GMT",
			 &tm);
		h->date_at = now;
	}
	return h->date;
}

/* The status line and headers of r's answer into the connection's
 * output. content_length < 0: none (a stream). */
static void http1_write_head(struct h1conn *c, struct hreq *r, int status,
			     long long content_length, bool close)
{
	struct evbuffer *out = c->out;

	evbuffer_add_printf(out, "HTTP/1.%d %d %s\r\n", r->minor >= 1 ? 1 : 0,
			    status, http1_reason(status));
	evbuffer_add_buffer(out, r->out_head);
	evbuffer_add_printf(out, "Date: %s\r\n", http1_date(c->h));
	if (content_length >= 0)
		evbuffer_add_printf(out, "Content-Length: %lld\r\n",
				    content_length);
	if (close) {
		if (r->keep_alive || r->minor >= 1)
			evbuffer_add(out, "Connection: close\r\n", 19);
	} else if (r->minor == 0) {
		evbuffer_add(out, "Connection: keep-alive\r\n", 24);
	}
	evbuffer_add(out, "\r\n", 2);
}

/* ---- the connection ---- */

static void http1_conn_later(struct h1conn *c)
{
	event_active(c->later, EV_TIMEOUT, 0);
}

static void http1_conn_read_on(struct h1conn *c, bool on)
{
	if (on == c->reading)
		return;
	if (on) {
		struct timeval tv = {c->h->limits.idle_timeout_s, 0};

		event_add(c->rev, c->state == CONN_STREAMING ? NULL : &tv);
	} else {
		event_del(c->rev);
	}
	c->reading = on;
}

/* Writes what the socket takes now; the write event takes the rest. */
static void http1_conn_flush(struct h1conn *c)
{
	int n;

	if (c->dead || evbuffer_get_length(c->out) == 0 ||
	    event_pending(c->wev, EV_WRITE, NULL))
		return;
	n = evbuffer_write(c->out, c->fd);
	if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
	    errno != EINTR) {
		c->dead = true;
		http1_conn_later(c);
		return;
	}
	if (evbuffer_get_length(c->out) > 0) {
		struct timeval tv = {c->h->limits.idle_timeout_s, 0};

		event_add(c->wev, c->state == CONN_STREAMING ? NULL : &tv);
	}
}

static void http1_conn_free(struct h1conn *c)
{
	struct hreq *r = c->req;

	TAILQ_REMOVE(&c->h->conns, c, next);
	c->h->n_conns--;
	event_free(c->rev);
	event_free(c->wev);
	event_free(c->later);
	evbuffer_free(c->in);
	evbuffer_free(c->out);
	close(c->fd);
	c->req = NULL;
	if (r != NULL) {
		if (c->state == CONN_ANSWERING || c->state == CONN_STREAMING) {
			/* The handler still holds it: it answers into the
			 * void, which frees it. */
			r->conn = NULL;
			if (c->state == CONN_STREAMING && r->on_close != NULL)
				r->on_close(r, r->close_arg);
		} else {
			hreq_free(r);
		}
	}
	free(c);
}

static void http1_conn_set_state(struct h1conn *c, enum conn_state st)
{
	c->state = st;
	switch (st) {
	case CONN_READING:
		/* Reading may have paused for pipelined requests. The idle
		 * timeout needs no re-arming: a persistent event's timeout
		 * restarts whenever it fires. */
		if (!c->peer_eof)
			http1_conn_read_on(c, true);
		break;
	case CONN_ANSWERING:
		break;
	case CONN_STREAMING:
		/* No idle timeout for a stream. */
		if (!c->peer_eof) {
			http1_conn_read_on(c, false);
			http1_conn_read_on(c, true);
		}
		break;
	case CONN_CLOSING:
		http1_conn_read_on(c, false);
		break;
	case CONN_LINGERING:
		shutdown(c->fd, SHUT_WR);
		http1_conn_read_on(c, false);
		if (!c->peer_eof) {
			struct timeval tv = {HTTP1_LINGER_S, 0};

			event_add(c->rev, &tv);
			c->reading = true;
		}
		break;
	}
}

/* Refuses the request being parsed: the answer comes from on_refused
 * (JSON), then the connection closes. */
static void http1_conn_refuse(struct h1conn *c)
{
	struct hreq *r = c->req;

	if (r == NULL) {
		r = c->req = hreq_new(c);
		if (r == NULL) {
			c->dead = true;
			return;
		}
	}
	if (r->path == 0 && r->text == NULL)
		hreq_text_add(r, "", 0);
	r->keep_alive = false;
	http1_conn_set_state(c, CONN_ANSWERING);
	c->h->on_refused(r, c->refuse_status, c->refuse_code,
			 c->refuse_detail, c->h->arg);
}

static int http1_refuse_at(http_parser *p, int status, const char *code,
			   const char *detail)
{
	struct h1conn *c = p->data;

	c->refuse_status = status;
	c->refuse_code = code;
	c->refuse_detail = detail;
	return -1;
}

static int http1_on_message_begin(http_parser *p)
{
	struct h1conn *c = p->data;

	if (c->req == NULL && (c->req = hreq_new(c)) == NULL)
		return http1_refuse_at(p, 503, "unavailable", "out of memory");
	c->started = http1_now();
	return 0;
}

static int http1_header_bytes(http_parser *p, size_t n)
{
	struct h1conn *c = p->data;

	c->req->header_bytes += n;
	if (c->req->header_bytes > c->h->limits.max_header_bytes)
		return http1_refuse_at(p, 431, "headers_too_large",
				       "the request line and headers are too large");
	return 0;
}

static int http1_on_url(http_parser *p, const char *at, size_t n)
{
	struct h1conn *c = p->data;

	if (http1_header_bytes(p, n) != 0)
		return -1;
	if (!hreq_text_add(c->req, at, n))
		return http1_refuse_at(p, 503, "unavailable", "out of memory");
	return 0;
}

static int http1_on_header_field(http_parser *p, const char *at, size_t n)
{
	struct h1conn *c = p->data;
	struct hreq *r = c->req;

	if (http1_header_bytes(p, n) != 0)
		return -1;
	/* A new field after the target or after a value. */
	if (r->n_hdrs == 0 || r->in_value) {
		if (!hreq_text_end(r))
			goto oom;
		if (r->n_hdrs == r->cap_hdrs) {
			size_t cap = r->cap_hdrs != 0 ? r->cap_hdrs * 2 : 16;
			struct hhdr *h = realloc(r->hdrs, cap * sizeof(*h));

			if (h == NULL)
				goto oom;
			r->hdrs = h;
			r->cap_hdrs = cap;
		}
		r->hdrs[r->n_hdrs].name = r->text_len;
		r->hdrs[r->n_hdrs].value = (size_t)-1;
		r->n_hdrs++;
		r->in_value = false;
	}
	if (!hreq_text_add(r, at, n))
		goto oom;
	return 0;
oom:
	return http1_refuse_at(p, 503, "unavailable", "out of memory");
}

static int http1_on_header_value(http_parser *p, const char *at, size_t n)
{
	struct h1conn *c = p->data;
	struct hreq *r = c->req;

	if (http1_header_bytes(p, n) != 0)
		return -1;
	if (!r->in_value) {
		if (!hreq_text_end(r))
			goto oom;
		r->hdrs[r->n_hdrs - 1].value = r->text_len;
		r->in_value = true;
	}
	if (!hreq_text_add(r, at, n))
		goto oom;
	return 0;
oom:
	return http1_refuse_at(p, 503, "unavailable", "out of memory");
}

static enum hreq_method http1_method(unsigned m)
{
	switch (m) {
	case HTTP_GET: return HREQ_GET;
	case HTTP_HEAD: return HREQ_HEAD;
	case HTTP_POST: return HREQ_POST;
	case HTTP_PUT: return HREQ_PUT;
	case HTTP_DELETE: return HREQ_DELETE;
	default: return HREQ_OTHER;
	}
}

/* The target's path and query, copied after the headers. */
static bool http1_split_target(struct hreq *r, size_t url_len)
{
	struct http_parser_url u;
	size_t path_off = 0, path_len = 0;

	http_parser_url_init(&u);
	if (http_parser_parse_url(r->text, url_len, 0, &u) != 0)
		return false;
	if (u.field_set & (1 << UF_PATH)) {
		path_off = u.field_data[UF_PATH].off;
		path_len = u.field_data[UF_PATH].len;
	}
	if (!hreq_text_end(r))
		return false;
	r->path = r->text_len;
	if (!hreq_text_add(r, path_len > 0 ? r->text + path_off : "/",
			   path_len > 0 ? path_len : 1) ||
	    !hreq_text_end(r))
		return false;
	if (u.field_set & (1 << UF_QUERY)) {
		r->query = r->text_len;
		if (!hreq_text_add(r, r->text + u.field_data[UF_QUERY].off,
				   u.field_data[UF_QUERY].len))
			return false;
	}
	return true;
}

static int http1_on_headers_complete(http_parser *p)
{
	struct h1conn *c = p->data;
	struct hreq *r = c->req;
	size_t url_len = r->n_hdrs > 0 ? r->hdrs[0].name - 1 : r->text_len;
	const char *expect;

	/* The last value's NUL (a header without value gets ""). */
	if (r->n_hdrs > 0 && r->hdrs[r->n_hdrs - 1].value == (size_t)-1) {
		if (!hreq_text_end(r))
			goto oom;
		r->hdrs[r->n_hdrs - 1].value = r->text_len;
		if (!hreq_text_add(r, "", 0))
			goto oom;
	}
	if (!hreq_text_end(r))
		goto oom;
	r->method = http1_method(p->method);
	r->major = p->http_major;
	r->minor = p->http_minor;
	r->keep_alive = http_should_keep_alive(p) && !p->upgrade;
	if (!http1_split_target(r, url_len))
		return http1_refuse_at(p, 400, "bad_request",
				       "the request target is not a path");
	/* HTTP/0.9 (a request line without version) and 2 or later. */
	if (r->major != 1)
		return http1_refuse_at(p, 505, "http_version",
				       "alertd speaks HTTP/1.0 and HTTP/1.1");
	if ((p->flags & F_CONTENTLENGTH) &&
	    p->content_length > c->h->limits.max_body_bytes)
		return http1_refuse_at(p, 413, "body_too_large",
				       "the body is larger than alertd takes");
	expect = hreq_header(r, "Expect");
	if (expect != NULL && strcasecmp(expect, "100-continue") == 0 &&
	    r->minor >= 1) {
		evbuffer_add(c->out, "HTTP/1.1 100 Continue\r\n\r\n", 25);
		http1_conn_flush(c);
	}
	return 0;
oom:
	return http1_refuse_at(p, 503, "unavailable", "out of memory");
}

static int http1_on_body(http_parser *p, const char *at, size_t n)
{
	struct h1conn *c = p->data;

	if (evbuffer_get_length(c->req->body) + n >
	    c->h->limits.max_body_bytes)
		return http1_refuse_at(p, 413, "body_too_large",
				       "the body is larger than alertd takes");
	if (evbuffer_add(c->req->body, at, n) != 0)
		return http1_refuse_at(p, 503, "unavailable", "out of memory");
	return 0;
}

static int http1_on_message_complete(http_parser *p)
{
	struct h1conn *c = p->data;

	c->req->complete = true;
	/* One request at a time: the parser stops here and goes on after
	 * the answer. */
	http_parser_pause(p, 1);
	return 0;
}

static const struct http_parser_settings http1_settings = {
	.on_message_begin = http1_on_message_begin,
	.on_url = http1_on_url,
	.on_header_field = http1_on_header_field,
	.on_header_value = http1_on_header_value,
	.on_headers_complete = http1_on_headers_complete,
	.on_body = http1_on_body,
	.on_message_complete = http1_on_message_complete,
};

/* Parses what has been read until a request is complete and hands it to
 * the handler; again after each answer given at once. */
static void http1_conn_parse(struct h1conn *c)
{
	while (c->state == CONN_READING && !c->dead &&
	       evbuffer_get_length(c->in) > 0) {
		struct evbuffer_iovec v;
		enum http_errno e;
		size_t n;

		if (evbuffer_peek(c->in, -1, NULL, &v, 1) < 1)
			break;
		n = http_parser_execute(&c->parser, &http1_settings,
					v.iov_base, v.iov_len);
		evbuffer_drain(c->in, n);
		e = HTTP_PARSER_ERRNO(&c->parser);
		if (e == HPE_PAUSED) {
			struct hreq *r = c->req;

			http_parser_pause(&c->parser, 0);
			http1_conn_set_state(c, CONN_ANSWERING);
			c->h->on_request(r, c->h->arg);
			continue;
		}
		if (e != HPE_OK) {
			if (c->refuse_status == 0) {
				c->refuse_status = 400;
				c->refuse_code = "bad_request";
				c->refuse_detail = "the request is not HTTP/1.1";
			}
			http1_conn_refuse(c);
			break;
		}
	}
}

/* Decides, at the end of each of our callbacks, whether the connection
 * is done. */
static void http1_conn_settle(struct h1conn *c)
{
	bool flushed = evbuffer_get_length(c->out) == 0;

	if (c->busy > 0)
		return;
	if (c->dead) {
		http1_conn_free(c);
		return;
	}
	switch (c->state) {
	case CONN_READING:
		/* The client has closed and what it left is no request. */
		if (c->peer_eof && flushed)
			http1_conn_free(c);
		break;
	case CONN_CLOSING:
		if (flushed) {
			if (c->refuse_status != 0 && !c->peer_eof)
				http1_conn_set_state(c, CONN_LINGERING);
			else
				http1_conn_free(c);
		}
		break;
	case CONN_LINGERING:
		if (c->peer_eof)
			http1_conn_free(c);
		break;
	case CONN_ANSWERING:
	case CONN_STREAMING:
		break;
	}
}

static void http1_conn_on_read(evutil_socket_t fd, short what, void *arg)
{
	struct h1conn *c = arg;
	struct evbuffer_iovec v;
	ssize_t n;

	c->busy++;
	if (what & EV_TIMEOUT) {
		/* Idle, or a request that does not come: closed. A request
		 * with its handler or a stream keeps the connection. */
		if (c->state == CONN_READING || c->state == CONN_LINGERING ||
		    c->state == CONN_CLOSING)
			c->dead = true;
		goto out;
	}
	/* read(2) into the buffer's free space: evbuffer_read asks the
	 * socket how much it holds first, one ioctl per read. */
	if (evbuffer_reserve_space(c->in, HTTP1_READ_BYTES, &v, 1) < 1) {
		c->dead = true;
		goto out;
	}
	n = read(fd, v.iov_base, v.iov_len);
	if (n < 0) {
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			c->dead = true;
		goto out;
	}
	v.iov_len = (size_t)n;
	evbuffer_commit_space(c->in, &v, 1);
	if (n == 0) {
		c->peer_eof = true;
		http1_conn_read_on(c, false);
		/* A stream's client has gone; a request's client may just
		 * have shut its side and waits for the answer. */
		if (c->state == CONN_STREAMING)
			c->dead = true;
	}
	switch (c->state) {
	case CONN_READING:
		http1_conn_parse(c);
		/* The idle timeout restarts with every read: a request that
		 * trickles in must still arrive whole within it. */
		if (c->state == CONN_READING && c->req != NULL && !c->dead &&
		    http1_now() - c->started > c->h->limits.idle_timeout_s) {
			c->refuse_status = 408;
			c->refuse_code = "request_timeout";
			c->refuse_detail = "the request did not arrive whole in time";
			http1_conn_refuse(c);
		}
		break;
	case CONN_ANSWERING:
		/* Pipelined requests wait; past a bound, so does reading. */
		if (evbuffer_get_length(c->in) >
		    c->h->limits.max_header_bytes + c->h->limits.max_body_bytes)
			http1_conn_read_on(c, false);
		break;
	case CONN_STREAMING:
	case CONN_CLOSING:
	case CONN_LINGERING:
		evbuffer_drain(c->in, evbuffer_get_length(c->in));
		break;
	}
out:
	c->busy--;
	http1_conn_settle(c);
}

static void http1_conn_on_write(evutil_socket_t fd, short what, void *arg)
{
	struct h1conn *c = arg;
	int n;

	c->busy++;
	if (what & EV_TIMEOUT) {
		c->dead = true; /* no progress for the idle timeout */
		goto out;
	}
	n = evbuffer_write(c->out, fd);
	if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
	    errno != EINTR) {
		c->dead = true;
		goto out;
	}
	if (evbuffer_get_length(c->out) == 0)
		event_del(c->wev);
out:
	c->busy--;
	http1_conn_settle(c);
}

/* The next loop turn after an answer given from outside our callbacks:
 * a pipelined request, a close. */
static void http1_conn_on_later(evutil_socket_t fd, short what, void *arg)
{
	struct h1conn *c = arg;

	c->busy++;
	if (c->state == CONN_READING)
		http1_conn_parse(c);
	c->busy--;
	http1_conn_settle(c);
}

void hreq_reply(struct hreq *r, int status)
{
	struct h1conn *c = r->conn;
	bool close;

	if (c == NULL) {
		hreq_free(r);
		return;
	}
	close = !r->keep_alive || c->h->draining || c->refuse_status != 0 ||
		c->peer_eof || !r->complete;
	http1_write_head(c, r, status,
			 (long long)evbuffer_get_length(r->out_body), close);
	if (r->method != HREQ_HEAD)
		evbuffer_add_buffer(c->out, r->out_body);
	c->req = NULL;
	hreq_free(r);
	http1_conn_set_state(c, close ? CONN_CLOSING : CONN_READING);
	http1_conn_flush(c);
	/* Within our callbacks the caller goes on itself; otherwise the
	 * next loop turn parses what waits or closes. */
	if (c->busy == 0 &&
	    (close || c->dead || evbuffer_get_length(c->in) > 0))
		http1_conn_later(c);
}

void hreq_stream_start(struct hreq *r, int status, hreq_on_close on_close,
		       void *arg)
{
	struct h1conn *c = r->conn;

	r->on_close = on_close;
	r->close_arg = arg;
	if (c == NULL)
		return;
	r->chunked = r->minor >= 1;
	if (r->chunked)
		evbuffer_add(r->out_head, "Transfer-Encoding: chunked\r\n", 28);
	http1_write_head(c, r, status, -1, !r->chunked);
	http1_conn_set_state(c, CONN_STREAMING);
	http1_conn_flush(c);
	if (c->dead && c->busy == 0)
		http1_conn_later(c);
}

void hreq_stream_write(struct hreq *r, const void *data, size_t len)
{
	struct h1conn *c = r->conn;

	if (c == NULL || len == 0)
		return;
	if (r->chunked) {
		evbuffer_add_printf(c->out, "%zx\r\n", len);
		evbuffer_add(c->out, data, len);
		evbuffer_add(c->out, "\r\n", 2);
	} else {
		evbuffer_add(c->out, data, len);
	}
	http1_conn_flush(c);
}

size_t hreq_stream_queued(const struct hreq *r)
{
	return r->conn != NULL ? evbuffer_get_length(r->conn->out) : 0;
}

void hreq_stream_end(struct hreq *r)
{
	struct h1conn *c = r->conn;

	if (c == NULL) {
		hreq_free(r);
		return;
	}
	if (r->chunked)
		evbuffer_add(c->out, "0\r\n\r\n", 5);
	c->req = NULL;
	hreq_free(r);
	http1_conn_set_state(c, CONN_CLOSING);
	http1_conn_flush(c);
	if (c->busy == 0)
		http1_conn_later(c);
}

/* ---- the server ---- */

struct http1 *http1_new(struct event_base *base,
			const struct http1_limits *limits,
			http1_on_request on_request,
			http1_on_refused on_refused, void *arg)
{
	struct http1 *h = calloc(1, sizeof(*h));

	if (h == NULL)
		return NULL;
	h->base = base;
	h->limits = *limits;
	h->on_request = on_request;
	h->on_refused = on_refused;
	h->arg = arg;
	TAILQ_INIT(&h->conns);
	return h;
}

void http1_set_limits(struct http1 *h, const struct http1_limits *limits)
{
	h->limits = *limits;
}

/* Past max_connections: one 503 written as it is, then the close. */
static void http1_refuse_connection(struct http1 *h, int fd)
{
	static const char body[] =
		"{\"error\":\"unavailable\",\"detail\":\"too many HTTP connections; try again\"}\n";
	char answer[512];
	int n = snprintf(answer, sizeof(answer),
			 "HTTP/1.1 503 Service Unavailable\r\n"
			 "Content-Type: application/json\r\n"
			 "Cache-Control: no-store\r\n"
			 "Retry-After: 2\r\n"
			 "Connection: close\r\n"
			 "Content-Length: %zu\r\n\r\n%s",
			 sizeof(body) - 1, body);
	time_t now = http1_now();

	if (now != h->refused_logged) {
		log_warn("http: %zu connections (http_max_connections), refusing more",
			 h->n_conns);
		h->refused_logged = now;
	}
	if (send(fd, answer, (size_t)n, MSG_NOSIGNAL) < 0)
		log_debug("http: refused connection: %s", strerror(errno));
	close(fd);
}

void http1_accept(struct http1 *h, int fd)
{
	struct h1conn *c;
	int one = 1;

	if (h->n_conns >= h->limits.max_connections) {
		http1_refuse_connection(h, fd);
		return;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL)
		goto fail;
	c->h = h;
	c->fd = fd;
	c->in = evbuffer_new();
	c->out = evbuffer_new();
	c->rev = event_new(h->base, fd, EV_READ | EV_PERSIST,
			   http1_conn_on_read, c);
	c->wev = event_new(h->base, fd, EV_WRITE | EV_PERSIST,
			   http1_conn_on_write, c);
	c->later = event_new(h->base, -1, 0, http1_conn_on_later, c);
	if (c->in == NULL || c->out == NULL || c->rev == NULL ||
	    c->wev == NULL || c->later == NULL) {
		if (c->in != NULL)
			evbuffer_free(c->in);
		if (c->out != NULL)
			evbuffer_free(c->out);
		if (c->rev != NULL)
			event_free(c->rev);
		if (c->wev != NULL)
			event_free(c->wev);
		if (c->later != NULL)
			event_free(c->later);
		free(c);
		goto fail;
	}
	/* An answer is one write, a stream's change too: without
	 * TCP_NODELAY Nagle would hold each back until the client has
	 * acknowledged the one before, up to a delayed ACK (40 ms) for
	 * console streams (docs/BENCHMARKS.md). */
	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0)
		log_debug("http: cannot set TCP_NODELAY");
	http_parser_init(&c->parser, HTTP_REQUEST);
	c->parser.data = c;
	TAILQ_INSERT_TAIL(&h->conns, c, next);
	h->n_conns++;
	c->state = CONN_READING;
	http1_conn_read_on(c, true);
	return;
fail:
	log_warn("http: out of memory, connection refused");
	close(fd);
}

void http1_drain(struct http1 *h)
{
	struct h1conn *c;

	h->draining = true;
	/* Idle kept-alive connections close now; busy ones after their
	 * answer. */
	TAILQ_FOREACH(c, &h->conns, next)
		if (c->state == CONN_READING && c->req == NULL &&
		    evbuffer_get_length(c->in) == 0 &&
		    evbuffer_get_length(c->out) == 0) {
			c->dead = true;
			http1_conn_later(c);
		}
}

size_t http1_connections(const struct http1 *h)
{
	return h->n_conns;
}

void http1_free(struct http1 *h)
{
	struct h1conn *c;

	if (h == NULL)
		return;
	while ((c = TAILQ_FIRST(&h->conns)) != NULL)
		http1_conn_free(c);
	free(h);
}
