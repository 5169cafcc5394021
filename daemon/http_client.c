/* http_client: outgoing HTTP on the loop (http_client.h). */
#include "http_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "log.h"
#include "policy.h"

#define HTTP_CLIENT_BODY_MAX 4096

enum http_client_state {
	HCR_SENT,     /* waiting for the answer */
	HCR_DONE,     /* answered; the connection is freed on the next turn */
};

struct http_client_req {
	LIST_ENTRY(http_client_req) next;
	struct http_client *hc;
	enum http_client_state state;
	struct evhttp_connection *evcon;
	struct event *reap;   /* frees evcon and this after the answer */
	http_client_cb cb;
	void *arg;
};

struct http_client {
	struct event_base *base;
	LIST_HEAD(, http_client_req) reqs;
	size_t n;
};

struct http_client *http_client_new(struct event_base *base)
{
	struct http_client *hc = calloc(1, sizeof(*hc));

	if (hc == NULL)
		return NULL;
	hc->base = base;
	LIST_INIT(&hc->reqs);
	return hc;
}

static void http_client_req_free(struct http_client_req *r)
{
	LIST_REMOVE(r, next);
	r->hc->n--;
	if (r->evcon != NULL)
		evhttp_connection_free(r->evcon);
	if (r->reap != NULL)
		event_free(r->reap);
	free(r);
}

void http_client_free(struct http_client *hc)
{
	struct http_client_req *r;

	if (hc == NULL)
		return;
	while ((r = LIST_FIRST(&hc->reqs)) != NULL)
		http_client_req_free(r);
	free(hc);
}

size_t http_client_in_flight(const struct http_client *hc)
{
	return hc->n;
}

static void http_client_on_reap(evutil_socket_t fd, short what, void *arg)
{
	http_client_req_free(arg);
}

static void http_client_on_done(struct evhttp_request *req, void *arg)
{
	struct http_client_req *r = arg;
	struct timeval now = {0, 0};
	char body[HTTP_CLIENT_BODY_MAX + 1];
	size_t len = 0;
	int status = 0;

	if (r->state != HCR_SENT)
		return;
	r->state = HCR_DONE;
	if (req != NULL) {
		struct evbuffer *in = evhttp_request_get_input_buffer(req);

		status = evhttp_request_get_response_code(req);
		if (in != NULL) {
			len = evbuffer_get_length(in);
			if (len > HTTP_CLIENT_BODY_MAX)
				len = HTTP_CLIENT_BODY_MAX;
			evbuffer_copyout(in, body, len);
		}
	}
	body[len] = '\0';
	r->cb(status, body, len, r->arg);
	/* Not inside the connection's own callback: on the next turn. */
	event_add(r->reap, &now);
}

bool http_client_request(struct http_client *hc, const struct policy_url *url,
			 const char *path_query, const char *const *headers,
			 const char *content_type, const char *body,
			 int timeout_ms, http_client_cb cb, void *arg)
{
	struct http_client_req *r = calloc(1, sizeof(*r));
	struct evhttp_request *req = NULL;
	struct evkeyvalq *out;
	struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
	char hostport[80];

	if (r == NULL)
		return false;
	r->hc = hc;
	r->cb = cb;
	r->arg = arg;
	r->state = HCR_SENT;
	LIST_INSERT_HEAD(&hc->reqs, r, next);
	hc->n++;
	r->reap = evtimer_new(hc->base, http_client_on_reap, r);
	/* url->host is an IPv4 literal (policy_parse_url): no lookup. */
	r->evcon = evhttp_connection_base_new(hc->base, NULL, url->host,
					      (unsigned short)url->port);
	if (r->reap == NULL || r->evcon == NULL)
		goto fail;
	evhttp_connection_set_timeout_tv(r->evcon, &tv);
	evhttp_connection_set_retries(r->evcon, 0);
	if ((req = evhttp_request_new(http_client_on_done, r)) == NULL)
		goto fail;
	out = evhttp_request_get_output_headers(req);
	snprintf(hostport, sizeof(hostport), "%s:%d", url->host, url->port);
	evhttp_add_header(out, "Host", hostport);
	evhttp_add_header(out, "Connection", "close");
	evhttp_add_header(out, "User-Agent", "alertd");
	for (size_t i = 0; headers != NULL && headers[i] != NULL &&
			   headers[i + 1] != NULL; i += 2)
		evhttp_add_header(out, headers[i], headers[i + 1]);
	if (body != NULL) {
		evhttp_add_header(out, "Content-Type", content_type);
		evbuffer_add(evhttp_request_get_output_buffer(req), body,
			     strlen(body));
	}
	/* On failure evhttp_make_request frees req itself. */
	if (evhttp_make_request(r->evcon, req,
				body != NULL ? EVHTTP_REQ_POST : EVHTTP_REQ_GET,
				path_query != NULL ? path_query : url->path) != 0)
		goto fail_sent;
	return true;
fail:
	if (req != NULL)
		evhttp_request_free(req);
fail_sent:
	log_warn("http_client: cannot start a request to %s:%d", url->host,
		 url->port);
	r->state = HCR_DONE;
	http_client_req_free(r);
	return false;
}
