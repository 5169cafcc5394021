/* console_tcp: the operator stream over TCP for native consoles
 * (proto/alertd.proto: Subscribe, IncidentUpdate). Same frames as the
 * device protocol (4-byte big-endian length + alertd.v1.Frame). The
 * console sends one Subscribe within CONSOLE_SUBSCRIBE_S; alertd checks
 * the token and answers with the open queue (or the changes after
 * last_event_id), then every change, filtered and masked for the
 * operator's role and zones like the SSE stream. A revoked token gets an
 * Error frame "token_revoked" and the connection ends.
 *
 * An Error frame goes to the end of the output, after the complete frames
 * queued before it (never inside one that the socket took only part of);
 * the connection then closes once it is written and the console's FIN is
 * in, or after CONSOLE_CLOSING_S, whichever comes first. */
#include "console_tcp.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <jansson.h>

#include "alertd.pb-c.h"
#include "codec_pb.h"
#include "config.h"
#include "decide.h"
#include "fanout.h"
#include "listen_guard.h"
#include "log.h"
#include "operators.h"
#include "qsnap.h"

#define CONSOLE_SUBSCRIBE_S 10
/* Open console connections beyond which a new one is refused (Error
 * "too_many_connections"): a control room has tens of consoles, and
 * every connection is a file descriptor alertd's devices need too. */
#define CONSOLE_MAX_CONNS 1024
#define CONSOLE_STR_(x) #x
#define CONSOLE_STR(x) CONSOLE_STR_(x)
#define CONSOLE_FRAME_MAX 65536
#define CONSOLE_OUT_MAX (4 * 1024 * 1024)
#define CONSOLE_REPLAY_MAX 10000
/* How long a connection that got an Error frame may take to read what
 * was queued before it (at most CONSOLE_OUT_MAX and one frame) and to
 * close its side; then it is cut, wherever the output is. */
#define CONSOLE_CLOSING_S 5

enum console_state {
	CON_WAIT_SUBSCRIBE, /* reading the Subscribe frame */
	CON_AUTH,           /* token lookup in flight */
	CON_REPLAYING,      /* snapshot or replay read in flight; live
			       changes are held back */
	CON_LIVE,           /* every change is written at once */
	CON_CLOSING,        /* an Error frame is queued last: nothing more
			       is written; closed once it is out and the
			       peer's FIN is in (input discarded), or when
			       the closing timer fires */
	CON_CLOSED,         /* freed on the next loop turn (or when the
			       call in flight answers) */
};

struct console_held {
	STAILQ_ENTRY(console_held) next;
	char *id, *json;
};

struct console_conn {
	LIST_ENTRY(console_conn) next;
	struct console_tcp *owner;
	struct bufferevent *bev;
	enum console_state state;
	bool call_in_flight;   /* a decide/operators callback will come */
	char *name, *zones;
	enum auth_role role;
	char hash[65];
	char last_id[48];
	char *resume;          /* Subscribe.last_event_id */
	STAILQ_HEAD(, console_held) held;
	const char *why;       /* CON_CLOSING: the error code, for the log */
	bool peer_eof;         /* CON_CLOSING: the console closed its side */
	struct event *closing; /* CON_CLOSING: the CONSOLE_CLOSING_S bound */
	struct event *hello;   /* CON_WAIT_SUBSCRIBE: CONSOLE_SUBSCRIBE_S from
				* the connect, however slowly bytes come */
};

struct console_tcp {
	struct event_base *base;
	struct decide *decide;
	struct operators *operators;
	struct evconnlistener *listener;
	struct listen_guard *guard;
	struct event *reaper;
	LIST_HEAD(, console_conn) conns;
	LIST_HEAD(, console_conn) dead;
	size_t n_conns;                  /* length of conns */
};

static void console_on_read(struct bufferevent *bev, void *arg);
static void console_on_event(struct bufferevent *bev, short what, void *arg);

static void console_held_clear(struct console_conn *c)
{
	struct console_held *h;

	while ((h = STAILQ_FIRST(&c->held)) != NULL) {
		STAILQ_REMOVE_HEAD(&c->held, next);
		free(h->id);
		free(h->json);
		free(h);
	}
}

static void console_conn_free(struct console_conn *c)
{
	LIST_REMOVE(c, next);
	if (c->bev != NULL)
		bufferevent_free(c->bev);
	console_held_clear(c);
	if (c->closing != NULL)
		event_free(c->closing);
	if (c->hello != NULL)
		event_free(c->hello);
	free(c->name);
	free(c->zones);
	free(c->resume);
	free(c);
}

static void console_on_reap(evutil_socket_t fd, short what, void *arg)
{
	struct console_tcp *t = arg;
	struct console_conn *c, *tmp;

	for (c = LIST_FIRST(&t->dead); c != NULL; c = tmp) {
		tmp = LIST_NEXT(c, next);
		if (!c->call_in_flight)
			console_conn_free(c);
	}
}

/* A callback of c's call arrived: false if c was closed (then reaped) or
 * got an Error frame meanwhile. */
static bool console_call_done(struct console_conn *c)
{
	struct timeval now = {0, 0};

	c->call_in_flight = false;
	if (c->state == CON_CLOSED) {
		event_add(c->owner->reaper, &now);
		return false;
	}
	return c->state != CON_CLOSING;
}

/* Never frees c here: it moves to the dead list, reaped next turn. */
static void console_close(struct console_conn *c, const char *why)
{
	struct timeval now = {0, 0};

	if (c->state == CON_CLOSED)
		return;
	log_info("console tcp operator=%s: closed (%s)",
		 c->name ? c->name : "-", why);
	c->state = CON_CLOSED;
	if (c->closing != NULL)
		event_del(c->closing);
	if (c->hello != NULL)
		event_del(c->hello);
	if (c->bev != NULL) {
		bufferevent_free(c->bev);
		c->bev = NULL;
	}
	LIST_REMOVE(c, next);
	c->owner->n_conns--;
	LIST_INSERT_HEAD(&c->owner->dead, c, next);
	event_add(c->owner->reaper, &now);
}

static void console_on_closing_timeout(evutil_socket_t fd, short what,
				       void *arg)
{
	struct console_conn *c = arg;

	console_close(c, "the Error frame was not read in time");
}

/* CON_CLOSING: the output, the Error frame last, is written (write
 * callback, low watermark 0). Our side is closed; the peer's FIN (or the
 * closing timer) ends the connection, so that input still in flight does
 * not make the kernel reset it before the console has read the frame. */
static void console_on_written(struct bufferevent *bev, void *arg)
{
	struct console_conn *c = arg;
	evutil_socket_t fd = bufferevent_getfd(bev);

	if (c->state != CON_CLOSING)
		return;
	if (c->peer_eof || fd < 0 || shutdown(fd, SHUT_WR) != 0)
		console_close(c, c->why);
}

/* An Error frame after what is queued, then close (CON_CLOSING). */
static void console_error(struct console_conn *c, const char *code,
			  const char *detail)
{
	struct timeval tmo = {CONSOLE_CLOSING_S, 0};
	size_t len = 0;
	uint8_t *buf;
	int rc = -1;

	if (c->state == CON_CLOSED || c->state == CON_CLOSING)
		return;
	buf = codec_pb_frame_error(code, detail, &len);
	if (buf != NULL && c->bev != NULL)
		rc = bufferevent_write(c->bev, buf, len);
	free(buf);
	if (rc != 0 || (c->closing = evtimer_new(c->owner->base,
						 console_on_closing_timeout,
						 c)) == NULL) {
		console_close(c, code);
		return;
	}
	log_debug("console tcp operator=%s: %s; closing once written",
		  c->name ? c->name : "-", code);
	c->state = CON_CLOSING;
	c->why = code;
	console_held_clear(c);
	bufferevent_setcb(c->bev, console_on_read, console_on_written,
			  console_on_event, c);
	bufferevent_set_timeouts(c->bev, NULL, NULL);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	evtimer_add(c->closing, &tmo);
}

/* Writes one change if the operator may see it. */
static void console_write(struct console_conn *c, const char *id,
			  const char *json)
{
	Alertd__V1__Frame frame = ALERTD__V1__FRAME__INIT;
	Alertd__V1__IncidentUpdate up = ALERTD__V1__INCIDENT_UPDATE__INIT;
	struct evbuffer *out;
	char *copy = NULL;
	uint8_t hdr[4], *buf;
	size_t n;

	if (c->state == CON_CLOSED || c->state == CON_CLOSING ||
	    c->bev == NULL)
		return;
	out = bufferevent_get_output(c->bev);
	if (evbuffer_get_length(out) > CONSOLE_OUT_MAX) {
		console_close(c, "lagging; it resumes with last_event_id");
		return;
	}
	snprintf(c->last_id, sizeof(c->last_id), "%s", id);
	if ((json = fanout_view(c->role, c->zones, json, &copy)) == NULL)
		return;
	up.id = (char *)id;
	up.snapshot_json = (char *)json;
	frame.msg_case = ALERTD__V1__FRAME__MSG_INCIDENT;
	frame.incident = &up;
	n = alertd__v1__frame__get_packed_size(&frame);
	if ((buf = malloc(n)) != NULL) {
		alertd__v1__frame__pack(&frame, buf);
		hdr[0] = (uint8_t)(n >> 24);
		hdr[1] = (uint8_t)(n >> 16);
		hdr[2] = (uint8_t)(n >> 8);
		hdr[3] = (uint8_t)n;
		evbuffer_add(out, hdr, 4);
		evbuffer_add(out, buf, n);
		free(buf);
	}
	free(copy);
}

static void console_go_live(struct console_conn *c)
{
	struct console_held *h;

	if (c->state == CON_CLOSED || c->state == CON_CLOSING)
		return; /* cut while its snapshot or replay was written */
	c->state = CON_LIVE;
	while ((h = STAILQ_FIRST(&c->held)) != NULL) {
		STAILQ_REMOVE_HEAD(&c->held, next);
		if (c->last_id[0] == '\0' || fanout_id_cmp(h->id, c->last_id) > 0)
			console_write(c, h->id, h->json);
		free(h->id);
		free(h->json);
		free(h);
	}
}

/* A queue being written to one console, under the id of the newest
 * change. */
struct console_snapshot {
	struct console_conn *c;
	const char *last;
};

static bool console_snapshot_one(const char *snap, void *arg)
{
	struct console_snapshot *s = arg;

	console_write(s->c, s->last, snap);
	return s->c->state == CON_REPLAYING; /* not closed for lagging */
}

static void console_on_snapshot(bool ok, const char *last, json_t *queue,
				void *arg)
{
	struct console_conn *c = arg;
	struct console_snapshot s;

	if (!console_call_done(c))
		return;
	if (!ok) {
		console_error(c, "unavailable", "the incident store is "
			      "unavailable; reconnect later");
		return;
	}
	s = (struct console_snapshot){c, last};
	fanout_queue_foreach(c->role, c->zones, queue, console_snapshot_one,
			     &s);
	snprintf(c->last_id, sizeof(c->last_id), "%s", last);
	console_go_live(c);
}

static void console_on_replay(bool ok, bool gap, size_t n,
			      const char *const *ids, const char *const *snaps,
			      void *arg)
{
	struct console_conn *c = arg;

	if (!console_call_done(c))
		return;
	if (!ok) {
		console_error(c, "unavailable", "cannot replay now");
		return;
	}
	if (gap) {
		/* The client must drop what it shows: told so, and it
		 * subscribes again for the open queue (docs/api.md). */
		console_error(c, "resync_required",
			      "the changes since last_event_id are no longer "
			      "kept; subscribe again without it");
		return;
	}
	for (size_t i = 0; i < n; i++)
		console_write(c, ids[i], snaps[i]);
	console_go_live(c);
}

static void console_on_operator(const struct operator_info *op,
				bool unavailable, void *arg)
{
	struct console_conn *c = arg;
	bool sent;

	if (!console_call_done(c))
		return;
	if (op == NULL) {
		console_error(c, unavailable ? "unavailable" : "unauthorized",
			      "unknown or revoked operator token");
		return;
	}
	if ((c->name = strdup(op->name)) == NULL ||
	    (c->zones = strdup(op->zones ? op->zones : "")) == NULL) {
		console_error(c, "unavailable", "out of memory");
		return;
	}
	c->role = op->role;
	memcpy(c->hash, op->hash, sizeof(c->hash));
	c->state = CON_REPLAYING;
	log_info("console tcp operator=%s: subscribed%s%s", c->name,
		 c->resume ? ", resuming after " : "",
		 c->resume ? c->resume : "");
	c->call_in_flight = true;
	if (c->resume != NULL) {
		snprintf(c->last_id, sizeof(c->last_id), "%s", c->resume);
		sent = decide_changes_since(c->owner->decide, c->resume,
					    CONSOLE_REPLAY_MAX,
					    console_on_replay, c);
	} else {
		sent = qsnap_fetch(c->owner->decide, console_on_snapshot, c);
	}
	if (!sent) {
		c->call_in_flight = false;
		console_error(c, "unavailable", "the incident store is "
			      "unavailable");
	}
}

/* The first frame must be a Subscribe. */
static void console_on_read(struct bufferevent *bev, void *arg)
{
	struct console_conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	Alertd__V1__Frame *frame;
	uint8_t hdr[4];
	uint32_t n;

	if (c->state != CON_WAIT_SUBSCRIBE) {
		evbuffer_drain(in, evbuffer_get_length(in)); /* ignored */
		return;
	}
	if (evbuffer_copyout(in, hdr, 4) < 4)
		return;
	n = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 |
	    (uint32_t)hdr[2] << 8 | hdr[3];
	if (n > CONSOLE_FRAME_MAX) {
		console_error(c, "frame_too_large", "frame over 64 KiB");
		return;
	}
	if (evbuffer_get_length(in) < 4 + (size_t)n)
		return;
	evbuffer_drain(in, 4);
	frame = alertd__v1__frame__unpack(NULL, n, evbuffer_pullup(in, n));
	evbuffer_drain(in, n);
	if (frame == NULL || frame->msg_case != ALERTD__V1__FRAME__MSG_SUBSCRIBE ||
	    frame->subscribe == NULL) {
		if (frame != NULL)
			alertd__v1__frame__free_unpacked(frame, NULL);
		console_error(c, "malformed_frame", "send one Subscribe with a "
			      "token first");
		return;
	}
	if (frame->subscribe->token == NULL ||
	    frame->subscribe->token[0] == '\0') {
		/* like a request without a bearer token (HTTP 401) */
		alertd__v1__frame__free_unpacked(frame, NULL);
		console_error(c, "unauthorized",
			      "the Subscribe carries no operator token");
		return;
	}
	if (frame->subscribe->last_event_id != NULL &&
	    frame->subscribe->last_event_id[0] != '\0')
		c->resume = strdup(frame->subscribe->last_event_id);
	c->state = CON_AUTH;
	bufferevent_set_timeouts(bev, NULL, NULL);
	evtimer_del(c->hello);
	c->call_in_flight = true;
	operators_lookup(c->owner->operators, frame->subscribe->token,
			 console_on_operator, c);
	alertd__v1__frame__free_unpacked(frame, NULL);
}

static void console_on_event(struct bufferevent *bev, short what, void *arg)
{
	struct console_conn *c = arg;

	if (c->state == CON_CLOSING && (what & BEV_EVENT_EOF) &&
	    evbuffer_get_length(bufferevent_get_output(bev)) > 0) {
		/* Done sending, perhaps still reading: finish the output. */
		c->peer_eof = true;
		return;
	}
	if (c->state == CON_CLOSING)
		console_close(c, c->why);
	else
		console_close(c, "peer left");
}

static void console_on_hello_timeout(evutil_socket_t fd, short what,
				     void *arg)
{
	struct console_conn *c = arg;

	(void)fd;
	(void)what;
	/* told why, like any other refusal, then closed */
	if (c->state == CON_WAIT_SUBSCRIBE)
		console_error(c, "timeout", "no Subscribe within "
			      CONSOLE_STR(CONSOLE_SUBSCRIBE_S) " s");
}

static void console_on_accept(struct evconnlistener *l, evutil_socket_t fd,
			      struct sockaddr *sa, int socklen, void *arg)
{
	struct console_tcp *t = arg;
	struct console_conn *c = calloc(1, sizeof(*c));
	struct timeval tmo = {CONSOLE_SUBSCRIBE_S, 0};

	if (c == NULL) {
		evutil_closesocket(fd);
		return;
	}
	c->owner = t;
	c->state = CON_WAIT_SUBSCRIBE;
	STAILQ_INIT(&c->held);
	LIST_INSERT_HEAD(&t->conns, c, next);
	t->n_conns++;
	c->bev = bufferevent_socket_new(t->base, fd, BEV_OPT_CLOSE_ON_FREE);
	c->hello = evtimer_new(t->base, console_on_hello_timeout, c);
	if (c->bev == NULL || c->hello == NULL) {
		if (c->bev == NULL)
			evutil_closesocket(fd);
		console_close(c, "out of memory");
		return;
	}
	bufferevent_setcb(c->bev, console_on_read, NULL, console_on_event, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	if (t->n_conns > CONSOLE_MAX_CONNS) {
		console_error(c, "too_many_connections", "the server has too "
			      "many console connections; try again later");
		return;
	}
	evtimer_add(c->hello, &tmo);
}

/* fanout tap: one change to every subscribed console. */
static void console_on_publish(const char *id, const char *json, void *arg)
{
	struct console_tcp *t = arg;
	struct console_conn *c, *tmp;

	for (c = LIST_FIRST(&t->conns); c != NULL; c = tmp) {
		tmp = LIST_NEXT(c, next);
		if (c->state == CON_LIVE) {
			/* Covered by its snapshot or replay already? */
			if (c->last_id[0] == '\0' ||
			    fanout_id_cmp(id, c->last_id) > 0)
				console_write(c, id, json);
		} else if (c->state == CON_REPLAYING) {
			struct console_held *h = calloc(1, sizeof(*h));

			if (h == NULL || (h->id = strdup(id)) == NULL ||
			    (h->json = strdup(json)) == NULL) {
				if (h != NULL)
					free(h->id);
				free(h);
				continue;
			}
			STAILQ_INSERT_TAIL(&c->held, h, next);
		}
	}
}

/* fanout tap: the token cache was refreshed; cut revoked tokens. */
static void console_on_operators(struct operators *ops, void *arg)
{
	struct console_tcp *t = arg;
	struct console_conn *c, *tmp;

	for (c = LIST_FIRST(&t->conns); c != NULL; c = tmp) {
		tmp = LIST_NEXT(c, next);
		if ((c->state == CON_LIVE || c->state == CON_REPLAYING) &&
		    !operators_active(ops, c->hash))
			console_error(c, "token_revoked",
				      "the operator token was revoked");
	}
}

/* fanout tap: the live feed missed changes; every console starts over. */
static void console_on_changes_lost(void *arg)
{
	struct console_tcp *t = arg;
	struct console_conn *c, *tmp;

	for (c = LIST_FIRST(&t->conns); c != NULL; c = tmp) {
		tmp = LIST_NEXT(c, next);
		if (c->state == CON_LIVE || c->state == CON_REPLAYING)
			console_error(c, "resync_required",
				      "changes were missed; subscribe again "
				      "without last_event_id");
	}
}

struct console_tcp *console_tcp_new(struct event_base *base,
				    struct decide *decide,
				    struct operators *operators,
				    struct fanout *fanout)
{
	struct console_tcp *t = calloc(1, sizeof(*t));
	struct fanout_tap tap = {console_on_publish, console_on_operators,
				 console_on_changes_lost, t};

	if (t == NULL)
		return NULL;
	t->base = base;
	t->decide = decide;
	t->operators = operators;
	LIST_INIT(&t->conns);
	LIST_INIT(&t->dead);
	if ((t->reaper = evtimer_new(base, console_on_reap, t)) == NULL) {
		free(t);
		return NULL;
	}
	fanout_set_tap(fanout, &tap);
	return t;
}

bool console_tcp_listen(struct console_tcp *t, const char *hostport)
{
	struct sockaddr_storage ss;
	int len = sizeof(ss);

	if (hostport == NULL || hostport[0] == '\0')
		return true; /* off */
	if (evutil_parse_sockaddr_port(hostport, (struct sockaddr *)&ss,
				       &len) != 0) {
		log_error("console tcp: bad address %s", hostport);
		return false;
	}
	t->listener = evconnlistener_new_bind(
		t->base, console_on_accept, t,
		LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 64,
		(struct sockaddr *)&ss, len);
	if (t->listener == NULL) {
		log_error("console tcp: cannot listen on %s", hostport);
		return false;
	}
	t->guard = listen_guard_new(t->base, t->listener, "console tcp");
	if (t->guard == NULL) {
		log_error("console tcp: out of memory");
		return false;
	}
	log_info("console tcp: listening on %s", hostport);
	return true;
}

/* Callbacks in flight (decide, operators) must have been answered: free
 * after redis_pool_free and operators_free. */
void console_tcp_free(struct console_tcp *t)
{
	struct console_conn *c;

	if (t == NULL)
		return;
	listen_guard_free(t->guard);
	if (t->listener != NULL)
		evconnlistener_free(t->listener);
	while ((c = LIST_FIRST(&t->conns)) != NULL)
		console_conn_free(c);
	while ((c = LIST_FIRST(&t->dead)) != NULL)
		console_conn_free(c);
	event_free(t->reaper);
	free(t);
}
