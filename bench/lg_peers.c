/* lg_peers: what the load generator measures besides the device answers:
 * SSE console subscribers (ingest-to-console latency), the webhook sink
 * that Prometheus Alertmanager notifies (POST-to-webhook latency), and the
 * raw libevent echo server (the machine's limit for the frames). */
#include "lg.h"

#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <jansson.h>

#include "bevout.h"

/* --- arrivals ------------------------------------------------------------ */

/* Send times (unique per event) whose change already arrived: an incident
 * published again later (aging, escalation, acknowledgement) carries the
 * label of the event that last changed it, and must not count as that
 * event's arrival. Open addressing, grown at half full. */
static uint64_t *lg_seen;
static size_t lg_seen_cap, lg_seen_n;

static bool lg_seen_add(uint64_t ts)
{
	size_t i;

	if (lg_seen_n * 2 >= lg_seen_cap) {
		size_t cap = lg_seen_cap ? lg_seen_cap * 2 : 1u << 16;
		uint64_t *old = lg_seen, *t = calloc(cap, sizeof(*t));

		if (t == NULL)
			return true;
		lg_seen = t;
		lg_seen_cap = cap;
		lg_seen_n = 0;
		for (size_t j = 0; old != NULL && j < cap / 2; j++)
			if (old[j] != 0)
				lg_seen_add(old[j]);
		free(old);
	}
	for (i = (ts * 0x9E3779B97F4A7C15ull) & (lg_seen_cap - 1);
	     lg_seen[i] != 0; i = (i + 1) & (lg_seen_cap - 1))
		if (lg_seen[i] == ts)
			return false;
	lg_seen[i] = ts;
	lg_seen_n++;
	return true;
}

/* Was the label of send time ts seen (a console or the webhook)? */
bool lg_seen_has(uint64_t ts)
{
	if (lg_seen_cap == 0)
		return false;
	for (size_t i = (ts * 0x9E3779B97F4A7C15ull) & (lg_seen_cap - 1);
	     lg_seen[i] != 0; i = (i + 1) & (lg_seen_cap - 1))
		if (lg_seen[i] == ts)
			return true;
	return false;
}

/* One label "lg.<run>.<k>.<hex ns>" seen by a console or the webhook. */
static void lg_arrival(const char *label)
{
	size_t rl = strlen(lg_opt.run_id);
	int64_t now = lg_now_ns(), ts;
	char k;

	if (strncmp(label, "lg.", 3) != 0)
		return;
	if (strncmp(label + 3, lg_opt.run_id, rl) != 0 || label[3 + rl] != '.') {
		lg_st.con_other_runs++;
		return;
	}
	k = label[4 + rl];
	ts = (int64_t)strtoull(label + 6 + rl, NULL, 16);
	if (ts > 0 && lg_opt.sse > 0 && !lg_seen_add((uint64_t)ts))
		return; /* published again: not a new arrival */
	lg_st.con_seen++;
	lg_st.t_last_con_ns = now;
	if (ts > 0 && now > ts)
		hist_record(&lg_st.con, (uint64_t)(now - ts) / 1000);
	if (k == 'p') {
		lg_st.con_panics++;
		lg_st.t_last_panic_con_ns = now;
		if (ts > 0 && now > ts)
			hist_record(&lg_st.con_panic,
				    (uint64_t)(now - ts) / 1000);
	} else if (k == 'h') {
		lg_st.t_last_hb_con_ns = now;
	}
}

/* --- SSE subscribers ------------------------------------------------------ */

struct lg_sse {
	struct bufferevent *bev;
	bool dead;
};

static struct lg_sse *lg_sses;

static void lg_sse_on_read(struct bufferevent *bev, void *arg)
{
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t n;
	char *line;

	/* Chunk sizes of the chunked encoding are lines of their own; the
	 * "data:" line of one change always sits inside one chunk. */
	while ((line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF)) != NULL) {
		if (strncmp(line, "data: ", 6) == 0) {
			char *l = strstr(line, "\"label\":\"");

			if (l != NULL) {
				char *end;

				l += 9;
				end = strchr(l, '"');
				if (end != NULL)
					*end = '\0';
				lg_arrival(l);
			}
		}
		free(line);
	}
}

static void lg_sse_on_event(struct bufferevent *bev, short what, void *arg)
{
	struct lg_sse *s = arg;

	if (what & BEV_EVENT_CONNECTED) {
		evbuffer_add_printf(bufferevent_get_output(bev),
				    "GET /v1/stream HTTP/1.1\r\nHost: %s\r\n"
				    "Accept: text/event-stream\r\n"
				    "Authorization: Bearer %s\r\n\r\n",
				    lg_opt.host, lg_opt.sse_token);
		return;
	}
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		fprintf(stderr, "loadgen: console stream closed\n");
		lg_st.con_disconnects++;
		s->dead = true;
		bufferevent_disable(bev, EV_READ | EV_WRITE);
	}
}

bool lg_sse_start(void)
{
	struct sockaddr_in sin = {.sin_family = AF_INET};

	sin.sin_port = htons((uint16_t)lg_opt.sse_port);
	if (evutil_inet_pton(AF_INET, lg_opt.host, &sin.sin_addr) != 1)
		return false;
	lg_sses = calloc((size_t)lg_opt.sse, sizeof(*lg_sses));
	if (lg_sses == NULL)
		return false;
	for (int i = 0; i < lg_opt.sse; i++) {
		struct lg_sse *s = &lg_sses[i];

		s->bev = bufferevent_socket_new(lg_base, -1,
						BEV_OPT_CLOSE_ON_FREE);
		if (s->bev == NULL)
			return false;
		bufferevent_setcb(s->bev, lg_sse_on_read, NULL,
				  lg_sse_on_event, s);
		bufferevent_enable(s->bev, EV_READ | EV_WRITE);
		if (bufferevent_socket_connect(s->bev, (struct sockaddr *)&sin,
					       sizeof(sin)) != 0)
			return false;
	}
	return true;
}

void lg_sse_stop(void)
{
	if (lg_sses == NULL)
		return;
	for (int i = 0; i < lg_opt.sse; i++)
		if (lg_sses[i].bev)
			bufferevent_free(lg_sses[i].bev);
	free(lg_sses);
	lg_sses = NULL;
}

/* --- Alertmanager webhook sink -------------------------------------------- */

static struct evhttp *lg_sink;

/* Alertmanager's webhook body: {"alerts":[{"labels":{"t":...}}, ...]}. */
static void lg_sink_on_request(struct evhttp_request *req, void *arg)
{
	struct evbuffer *b = evhttp_request_get_input_buffer(req);
	size_t n = evbuffer_get_length(b);
	const char *body = (const char *)evbuffer_pullup(b, (ev_ssize_t)n);
	json_error_t jerr;
	json_t *root = body ? json_loadb(body, n, 0, &jerr) : NULL;
	json_t *alerts = root ? json_object_get(root, "alerts") : NULL;
	size_t i;
	json_t *a;

	json_array_foreach(alerts, i, a) {
		json_t *t = json_object_get(json_object_get(a, "labels"), "t");
		const char *s = json_string_value(t);
		const char *st = json_string_value(json_object_get(a, "status"));

		if (s != NULL && (st == NULL || strcmp(st, "firing") == 0))
			lg_arrival(s);
	}
	json_decref(root);
	evhttp_send_reply(req, 200, "OK", NULL);
}

bool lg_am_start(void)
{
	lg_sink = evhttp_new(lg_base);
	if (lg_sink == NULL ||
	    evhttp_bind_socket(lg_sink, "127.0.0.1", (uint16_t)lg_opt.sink_port) != 0) {
		fprintf(stderr, "loadgen: cannot listen on 127.0.0.1:%d\n",
			lg_opt.sink_port);
		return false;
	}
	evhttp_set_gencb(lg_sink, lg_sink_on_request, NULL);
	return true;
}

void lg_am_stop(void)
{
	if (lg_sink != NULL)
		evhttp_free(lg_sink);
	lg_sink = NULL;
}

/* --- raw echo server ------------------------------------------------------ */

/* Echoed at once (daemon/bevout.h), as alertd writes its answers, so
 * that this floor pays for the same syscalls and no others. */
static void lg_echo_on_read(struct bufferevent *bev, void *arg)
{
	bufferevent_write_buffer(bev, bufferevent_get_input(bev));
	if (bevout_flush(bev) == BEVOUT_ERROR)
		bufferevent_free(bev);
}

static void lg_echo_on_write(struct bufferevent *bev, void *arg)
{
	bufferevent_disable(bev, EV_WRITE);
}

static void lg_echo_on_event(struct bufferevent *bev, short what, void *arg)
{
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		bufferevent_free(bev);
}

static void lg_echo_on_accept(struct evconnlistener *l, evutil_socket_t fd,
			      struct sockaddr *sa, int len, void *arg)
{
	struct bufferevent *bev =
		bufferevent_socket_new(lg_base, fd, BEV_OPT_CLOSE_ON_FREE);

	if (bev == NULL) {
		evutil_closesocket(fd);
		return;
	}
	bufferevent_setcb(bev, lg_echo_on_read, lg_echo_on_write,
			  lg_echo_on_event, NULL);
	bufferevent_enable(bev, EV_READ);
	bufferevent_disable(bev, EV_WRITE);
}

static void lg_echo_on_term(evutil_socket_t fd, short what, void *arg)
{
	event_base_loopbreak(lg_base);
}

/* Echoes every byte back until SIGTERM or SIGINT. */
int lg_echo_server(void)
{
	struct sockaddr_in sin = {.sin_family = AF_INET};
	struct evconnlistener *l;
	struct event *term, *intr;

	sin.sin_port = htons((uint16_t)lg_opt.port);
	if (evutil_inet_pton(AF_INET, lg_opt.host, &sin.sin_addr) != 1)
		return 2;
	l = evconnlistener_new_bind(lg_base, lg_echo_on_accept, NULL,
				    LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE,
				    -1, (struct sockaddr *)&sin, sizeof(sin));
	if (l == NULL) {
		fprintf(stderr, "loadgen: echo-server cannot listen on port %d\n",
			lg_opt.port);
		return 1;
	}
	term = evsignal_new(lg_base, SIGTERM, lg_echo_on_term, NULL);
	intr = evsignal_new(lg_base, SIGINT, lg_echo_on_term, NULL);
	event_add(term, NULL);
	event_add(intr, NULL);
	event_base_dispatch(lg_base);
	event_free(term);
	event_free(intr);
	evconnlistener_free(l);
	event_base_free(lg_base);
	return 0;
}
