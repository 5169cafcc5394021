/* loadgen: alertd's load generator (docs/BENCHMARKS.md).
 *
 *   loadgen tcp  --port P [--conns N --sources S --rate R --window W
 *                --count N --duration S --sse N --sse-port P --sse-token T
 *                --reconnect]
 *   loadgen http --port P [same]
 *   loadgen am   --port P --sink-port Q   (Prometheus Alertmanager)
 *   loadgen echo-server --port P          (the raw libevent echo limit)
 *   loadgen cpu-probe --duration S        (a diagnostic: bench/lg_probe.c)
 *
 * Devices are connections carrying signed events of many sources: mostly
 * heartbeats, a share of panics and faults (merges follow from sources
 * repeating) and duplicates (an already answered event_id sent again).
 * Open loop (--rate R: events are due at fixed times and latency counts
 * from when each was due, so a stalled server is not hidden) or closed
 * loop (--rate 0: every connection keeps --window events in flight).
 *
 * Every event_id and label ends with its send time (CLOCK_MONOTONIC, hex
 * ns): the answer's latency is read from the echoed event_id, and a console
 * (SSE) subscriber reads ingest-to-console latency from the label of the
 * incident snapshot, which is the label of the event that changed it.
 *
 * --reconnect (tcp): a connection alertd closes (a restart) is opened
 * again every 100 ms until it succeeds, and the events it had in flight
 * are sent again with their event_id, as a device does; each keeps its
 * first send time, so its latency includes the outage.
 *
 * Output: one line "RESULT key=value ..." that scripts/bench.sh turns into
 * the table. Exit status 0 when every event sent got an answer. */
#include "lg.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <http_parser.h>

#include "alertd.pb-c.h"
#include "auth.h"
#include "bevout.h"

struct lg_opts lg_opt = {
	.mode = "tcp", .name = "run", .host = "127.0.0.1", .port = 7400,
	.conns = 16, .sources = 1000, .source_prefix = "bus-", .rate = 0, .window = 32, .count = 10000,
	.duration_s = 60, .timeout_s = 30, .panic_pct = 1, .dup_pct = 2,
	.fault_pct = 1, .secret = "bench-device-secret", .run_id = NULL,
	.sse = 0, .sse_port = 0, .sse_token = "", .sink_port = 0,
	.settle_s = 5,
};
struct lg_stats lg_st;
struct event_base *lg_base;

/* One device connection (TCP) or keep-alive connection (HTTP). */
struct lg_conn {
	int idx;
	struct bufferevent *bev;
	int inflight;
	bool dead;
	uint64_t seq;
	char last_answered[72];            /* for duplicates */
	struct lg_dup *dups;               /* duplicates in flight (tcp) */
	bool flush_listed;                 /* in lg_flushq */
	bool ready_listed;                 /* in lg_readyq */
	/* --reconnect: the events in flight, oldest first, to send again */
	struct lg_pend *pend, *pend_tail;
	struct event *retry_ev;
	/* http, am: the request in flight and its answer being read */
	http_parser hp;
	int64_t req_ts;
	char req_id[72];
	char body[256];
	size_t body_len;
};

/* An event in flight on a --reconnect connection: its packed Event. */
struct lg_pend {
	struct lg_pend *next;
	char id[72];
	size_t n;
	uint8_t ev[512];
};

/* A duplicate carries the event_id, hence the send time, of an event
 * answered earlier: its own send time is kept here until its answer. */
struct lg_dup {
	struct lg_dup *next;
	int64_t ts;
	char id[72];
};

static struct lg_conn *lg_conns;
/* The connections with frames or requests queued this loop turn, written by
 * lg_flush_ev once the turn's callbacks are done (daemon/bevout.h): one
 * writev per connection per turn and no epoll_ctl, like alertd's answers,
 * so that the client costs the shared cores no more than it must. */
static struct event *lg_flush_ev;
static int *lg_flushq;
static int lg_nflush;
static struct event *lg_tick_ev;
static struct event *lg_due_ev;            /* open loop: the next due event */
static uint64_t lg_rng = 0x9e3779b97f4a7c15ull;
/* The connections that had room in their window when last seen, oldest
 * first (a ring, each connection at most once): lg_pick takes from it in
 * constant time. Scanning every connection for room cost the client a
 * fifth of its CPU at 256 HTTP connections and more with more
 * (docs/BENCHMARKS.md, optimisation 38). */
static int *lg_readyq;
static int lg_ready_head, lg_ready_len;
static void lg_ready(struct lg_conn *c);
static bool lg_sending = true;
static int64_t lg_end_ns;                  /* end of the current phase */
static long lg_inflight;
static int lg_exit_status = 1;

int64_t lg_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t lg_parse_ts(const char *s, const char *marker)
{
	const char *p = strstr(s, marker);
	const char *dot;

	if (p == NULL)
		return 0;
	p += strlen(marker);
	dot = strrchr(p, '.');
	return dot ? (int64_t)strtoull(dot + 1, NULL, 16) : 0;
}

uint64_t lg_rand(void)
{
	lg_rng ^= lg_rng << 13;
	lg_rng ^= lg_rng >> 7;
	lg_rng ^= lg_rng << 17;
	return lg_rng;
}

double lg_rand01(void)
{
	return (double)(lg_rand() >> 11) / 9007199254740992.0;
}

double lg_rand_coord(long from)
{
	return (double)(from + (long)(lg_rand() % 1000)) / 10000.0;
}

/* --- the traffic mix ---------------------------------------------------- */

enum lg_kind { LG_HEARTBEAT, LG_PANIC, LG_FAULT, LG_DUP };

struct lg_event {
	enum lg_kind kind;
	char id[72];
	char source[24];
	char label[64];
	int64_t ts;
};

static void lg_next_event(struct lg_conn *c, int64_t ts, struct lg_event *e)
{
	double r = lg_rand01() * 100.0;
	unsigned src = (unsigned)(lg_rand() % (uint64_t)lg_opt.sources);
	char k = 'h';

	e->ts = ts;
	e->kind = LG_HEARTBEAT;
	if (r < lg_opt.dup_pct) {
		/* Nothing answered on this connection yet (its first window):
		 * a heartbeat. Falling through to the next kind made 1 % of
		 * a closed-loop run's first window panics, about a tenth of
		 * the burst's panics, all sent at its start. */
		if (c->last_answered[0] != '\0') {
			e->kind = LG_DUP;
			k = 'd';
		}
	} else if (r < lg_opt.dup_pct + lg_opt.panic_pct) {
		e->kind = LG_PANIC;
		k = 'p';
	} else if (r < lg_opt.dup_pct + lg_opt.panic_pct + lg_opt.fault_pct) {
		e->kind = LG_FAULT;
		k = 'f';
	}
	/* The id carries its source ("run.conn.seq-src<k>.ts"): idempotency
	 * is per source, so a duplicate is the same id from the same
	 * source. */
	if (e->kind == LG_DUP) {
		const char *dot = strrchr(c->last_answered, '.');
		const char *dash = strrchr(c->last_answered, '-');

		snprintf(e->id, sizeof(e->id), "%s", c->last_answered);
		if (dot != NULL && dash != NULL && dash < dot)
			src = (unsigned)strtoul(dash + 1, NULL, 10);
	} else {
		snprintf(e->id, sizeof(e->id),
			 "%s.%d.%" PRIu64 "-%u%c.%" PRIx64, lg_opt.run_id,
			 c->idx, c->seq++, src, k, (uint64_t)ts);
	}
	snprintf(e->source, sizeof(e->source), "%s%u", lg_opt.source_prefix,
		 src);
	snprintf(e->label, sizeof(e->label), "lg.%s.%c.%" PRIx64,
		 lg_opt.run_id, k, (uint64_t)ts);
	lg_st.sent++;
	if (e->kind == LG_DUP)
		lg_st.dup_sent++;
	if (e->kind == LG_PANIC)
		lg_st.panics_sent++;
}

static const char *lg_type_name(enum lg_kind k)
{
	return k == LG_PANIC ? "panic" : k == LG_FAULT ? "fault" : "heartbeat";
}

static Alertd__V1__EventType lg_type_pb(enum lg_kind k)
{
	return k == LG_PANIC	? ALERTD__V1__EVENT_TYPE__PANIC
	       : k == LG_FAULT ? ALERTD__V1__EVENT_TYPE__FAULT
			       : ALERTD__V1__EVENT_TYPE__HEARTBEAT;
}

/* --- answers ------------------------------------------------------------ */

static void lg_maybe_finish(void);
static void lg_fill(void);

/* The send time of a duplicate in flight with this id (and forgets it),
 * or `ts` (the time in the id) when there is none. */
static int64_t lg_dup_answered(struct lg_conn *c, const char *event_id,
			       int64_t ts)
{
	for (struct lg_dup **pp = &c->dups; *pp != NULL; pp = &(*pp)->next) {
		struct lg_dup *d = *pp;

		if (event_id != NULL && strcmp(d->id, event_id) == 0) {
			ts = d->ts;
			*pp = d->next;
			free(d);
			break;
		}
	}
	return ts;
}

/* --reconnect: forgets the event in flight with this id (the answers
 * come in order, so it is nearly always the first). */
static void lg_pend_answered(struct lg_conn *c, const char *event_id)
{
	struct lg_pend *prev = NULL;

	for (struct lg_pend *p = c->pend; p != NULL; prev = p, p = p->next) {
		if (event_id == NULL || strcmp(p->id, event_id) != 0)
			continue;
		if (prev == NULL)
			c->pend = p->next;
		else
			prev->next = p->next;
		if (c->pend_tail == p)
			c->pend_tail = prev;
		free(p);
		return;
	}
}

static void lg_pend_keep(struct lg_conn *c, const char *id,
			 const uint8_t *ev, size_t n)
{
	struct lg_pend *p = calloc(1, sizeof(*p));

	if (p == NULL || n > sizeof(p->ev)) {
		free(p);
		return;
	}
	snprintf(p->id, sizeof(p->id), "%s", id);
	memcpy(p->ev, ev, n);
	p->n = n;
	if (c->pend_tail != NULL)
		c->pend_tail->next = p;
	else
		c->pend = p;
	c->pend_tail = p;
}

/* The kind letter of one of our event_ids ("run.conn.<seq>-<src><k>.<ts>"). */
static char lg_id_kind(const char *event_id)
{
	const char *dot = event_id != NULL ? strrchr(event_id, '.') : NULL;

	return dot != NULL && dot > event_id ? dot[-1] : '?';
}

/* --slow-ms: the longest answer in each 100 ms of the run, to tell a
 * periodic stall (a WAL segment, a timer) from steady queueing. */
#define LG_SLOW_WINDOWS 6000 /* 10 minutes */
static int64_t lg_slow_max[LG_SLOW_WINDOWS];

static void lg_slow_record(int64_t now, int64_t latency)
{
	int64_t w = (now - lg_st.t0_ns) / 100000000;

	if (lg_opt.slow_ms > 0 && w >= 0 && w < LG_SLOW_WINDOWS &&
	    latency > lg_slow_max[w])
		lg_slow_max[w] = latency;
}

static void lg_slow_report(void)
{
	for (int w = 0; lg_opt.slow_ms > 0 && w < LG_SLOW_WINDOWS; w++)
		if (lg_slow_max[w] > (int64_t)(lg_opt.slow_ms * 1e6))
			printf("SLOW name=%s at_s=%.1f max_ms=%.1f\n",
			       lg_opt.name, w / 10.0,
			       (double)lg_slow_max[w] / 1e6);
}

/* --panic-trace: every panic's send time and Ack latency, printed after
 * the run (not while it runs), to tell a stall every event waited in
 * from panics waiting behind the backlog. */
#define LG_PANIC_TRACE_MAX 100000
static struct { int64_t sent_ns, latency_ns; } lg_panic_trace[LG_PANIC_TRACE_MAX];
static size_t lg_panic_traced;

static void lg_panic_trace_report(void)
{
	for (size_t i = 0; i < lg_panic_traced; i++) {
		int64_t ts = lg_panic_trace[i].sent_ns;

		printf("PANIC name=%s sent_s=%.3f ack_ms=%.1f", lg_opt.name,
		       (double)(ts - lg_st.t0_ns) / 1e9,
		       (double)lg_panic_trace[i].latency_ns / 1e6);
		/* With consoles: one never shown is named by the hex send
		 * time its event_id and label end with. */
		if (lg_opt.sse > 0)
			printf(" con=%d ts=%" PRIx64,
			       lg_seen_has((uint64_t)ts) ? 1 : 0, (uint64_t)ts);
		printf("\n");
	}
}

static void lg_answered(struct lg_conn *c, const char *event_id, int outcome,
			bool ok, int64_t sent_ts)
{
	int64_t now = lg_now_ns();
	char k = lg_id_kind(event_id);

	if (c->dups != NULL)
		sent_ts = lg_dup_answered(c, event_id, sent_ts);
	if (c->pend != NULL)
		lg_pend_answered(c, event_id);
	if (lg_sending && lg_st.t_answered_ns > 0 &&
	    now - lg_st.t_answered_ns > lg_st.max_gap_ns)
		lg_st.max_gap_ns = now - lg_st.t_answered_ns;

	c->inflight--;
	lg_inflight--;
	lg_ready(c);
	if (ok) {
		lg_st.acked++;
		lg_st.outcome[outcome >= 0 && outcome < 3 ? outcome : 3]++;
		if (outcome != 2 && event_id != NULL)
			snprintf(c->last_answered, sizeof(c->last_answered),
				 "%s", event_id);
	} else {
		lg_st.nacked++;
	}
	if (sent_ts > 0 && now > sent_ts)
		lg_slow_record(now, now - sent_ts);
	if (sent_ts > 0 && now > sent_ts)
		hist_record(&lg_st.ack, (uint64_t)(now - sent_ts) / 1000);
	/* A duplicate's answer (outcome 2) is not its original's. */
	if (ok && outcome != 2 && k == 'p') {
		lg_st.t_last_panic_ack_ns = now;
		if (sent_ts > 0 && now > sent_ts)
			hist_record(&lg_st.ack_panic,
				    (uint64_t)(now - sent_ts) / 1000);
		if (lg_opt.panic_trace && sent_ts > 0 &&
		    lg_panic_traced < LG_PANIC_TRACE_MAX) {
			lg_panic_trace[lg_panic_traced].sent_ns = sent_ts;
			lg_panic_trace[lg_panic_traced++].latency_ns = now - sent_ts;
		}
	} else if (ok && outcome != 2 && (k == 'h' || k == 'f')) {
		lg_st.t_last_normal_ack_ns = now;
	}
	lg_st.t_answered_ns = now;
	if (lg_opt.rate <= 0 && lg_sending)
		lg_fill();
	lg_maybe_finish();
}

/* --- TCP devices -------------------------------------------------------- */

static bool lg_tcp_write_event(struct lg_conn *c, const uint8_t *evbuf,
			       size_t n);
static bool lg_tcp_connect(struct lg_conn *c);
static void lg_queue(struct lg_conn *c, const void *data, size_t n);
static void lg_http_on_read(struct bufferevent *bev, void *arg);

static bool lg_tcp_send(struct lg_conn *c, int64_t ts)
{
	struct lg_event e;
	Alertd__V1__Source src = ALERTD__V1__SOURCE__INIT;
	Alertd__V1__Location loc = ALERTD__V1__LOCATION__INIT;
	Alertd__V1__Event ev = ALERTD__V1__EVENT__INIT;
	uint8_t evbuf[512];
	size_t n;

	lg_next_event(c, ts, &e);
	if (e.kind == LG_DUP) {
		struct lg_dup *d = calloc(1, sizeof(*d));

		if (d != NULL) {
			d->ts = ts;
			snprintf(d->id, sizeof(d->id), "%s", e.id);
			d->next = c->dups;
			c->dups = d;
		}
	}
	src.id = e.source;
	src.kind = ALERTD__V1__SOURCE_KIND__BUS;
	src.zone = "Konak";
	src.label = e.label;
	loc.lat = lg_rand_coord(384000);
	loc.lon = lg_rand_coord(271000);
	ev.event_id = e.id;
	ev.source = &src;
	ev.type = lg_type_pb(e.kind);
	ev.location = &loc;
	n = alertd__v1__event__get_packed_size(&ev);
	if (n > sizeof(evbuf))
		return false;
	alertd__v1__event__pack(&ev, evbuf);
	if (!lg_tcp_write_event(c, evbuf, n))
		return false;
	if (lg_opt.reconnect)
		lg_pend_keep(c, e.id, evbuf, n);
	c->inflight++;
	lg_inflight++;
	lg_st.t_sent_ns = lg_now_ns();
	return true;
}

/* One signed event frame into the connection's output, flushed at the end
 * of the loop turn. */
static bool lg_tcp_write_event(struct lg_conn *c, const uint8_t *evbuf,
			       size_t n)
{
	Alertd__V1__SignedEvent se = ALERTD__V1__SIGNED_EVENT__INIT;
	Alertd__V1__Frame fr = ALERTD__V1__FRAME__INIT;
	uint8_t frame[1024];
	char v1[65];
	size_t m;
	int64_t t = time(NULL);

	auth_sign(lg_opt.secret, t, evbuf, n, v1);
	se.t = t;
	se.v1 = v1;
	se.event.data = (uint8_t *)evbuf;
	se.event.len = n;
	fr.msg_case = ALERTD__V1__FRAME__MSG_EVENT;
	fr.event = &se;
	m = alertd__v1__frame__get_packed_size(&fr);
	if (m + 4 > sizeof(frame))
		return false;
	alertd__v1__frame__pack(&fr, frame + 4);
	frame[0] = (uint8_t)(m >> 24);
	frame[1] = (uint8_t)(m >> 16);
	frame[2] = (uint8_t)(m >> 8);
	frame[3] = (uint8_t)m;
	lg_queue(c, frame, m + 4);
	return true;
}

/* Into the connection's output, written by lg_on_flush at the end of the
 * loop turn. */
static void lg_queue(struct lg_conn *c, const void *data, size_t n)
{
	bufferevent_write(c->bev, data, n);
	if (!c->flush_listed) {
		c->flush_listed = true;
		lg_flushq[lg_nflush++] = c->idx;
		event_active(lg_flush_ev, EV_TIMEOUT, 0);
	}
}

/* An echoed event frame (--echo): the answer is the event itself. */
static void lg_tcp_on_echo(struct lg_conn *c, const Alertd__V1__SignedEvent *se)
{
	Alertd__V1__Event *ev =
		alertd__v1__event__unpack(NULL, se->event.len, se->event.data);

	if (ev == NULL) {
		lg_st.errors++;
		return;
	}
	lg_answered(c, ev->event_id, 0, true, lg_parse_ts(ev->event_id, ""));
	alertd__v1__event__free_unpacked(ev, NULL);
}

static void lg_tcp_close(struct lg_conn *c)
{
	if (lg_opt.reconnect && c->retry_ev != NULL) {
		/* Closed, or an attempt to open it again failed: again in
		 * 100 ms. Its events stay in flight until answered after
		 * the reconnect; the duplicates among them too. */
		struct timeval tv = {0, 100000};

		c->dead = true;
		if (c->bev != NULL)
			bufferevent_free(c->bev);
		c->bev = NULL;
		if (!event_pending(c->retry_ev, EV_TIMEOUT, NULL))
			event_add(c->retry_ev, &tv);
		return;
	}
	if (c->dead)
		return;
	c->dead = true;
	while (c->dups != NULL)
		lg_dup_answered(c, c->dups->id, 0);
	lg_st.errors += (uint64_t)c->inflight;
	lg_inflight -= c->inflight;
	c->inflight = 0;
	bufferevent_free(c->bev);
	c->bev = NULL;
	lg_maybe_finish();
}

static void lg_tcp_on_read(struct bufferevent *bev, void *arg)
{
	struct lg_conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	uint8_t hdr[4];

	while (!c->dead && evbuffer_copyout(in, hdr, 4) == 4) {
		size_t n = (size_t)hdr[0] << 24 | (size_t)hdr[1] << 16 |
			   (size_t)hdr[2] << 8 | hdr[3];
		Alertd__V1__Frame *fr;
		uint8_t *p;

		if (evbuffer_get_length(in) < n + 4)
			return;
		p = evbuffer_pullup(in, (ev_ssize_t)(n + 4));
		fr = alertd__v1__frame__unpack(NULL, n, p + 4);
		evbuffer_drain(in, n + 4);
		if (fr == NULL) {
			lg_st.errors++;
			continue;
		}
		switch (fr->msg_case) {
		case ALERTD__V1__FRAME__MSG_ACK:
			lg_answered(c, fr->ack->event_id,
				    (int)fr->ack->outcome - 1, true,
				    lg_parse_ts(fr->ack->event_id, ""));
			break;
		case ALERTD__V1__FRAME__MSG_NACK:
			if (lg_st.nacked < 5)
				fprintf(stderr, "loadgen: nack %s: %s\n",
					fr->nack->code, fr->nack->detail);
			lg_answered(c, fr->nack->event_id, -1, false,
				    lg_parse_ts(fr->nack->event_id, ""));
			break;
		case ALERTD__V1__FRAME__MSG_EVENT:
			lg_tcp_on_echo(c, fr->event);
			break;
		default:
			fprintf(stderr, "loadgen: error frame on conn %d: %s\n",
				c->idx, fr->error ? fr->error->code : "?");
			lg_st.errors++;
			alertd__v1__frame__free_unpacked(fr, NULL);
			lg_tcp_close(c);
			return;
		}
		alertd__v1__frame__free_unpacked(fr, NULL);
	}
}

static void lg_on_flush(evutil_socket_t fd, short what, void *arg)
{
	for (int i = 0; i < lg_nflush; i++) {
		struct lg_conn *c = &lg_conns[lg_flushq[i]];

		c->flush_listed = false;
		if (c->dead)
			continue;
		if (bevout_flush(c->bev) == BEVOUT_ERROR) {
			fprintf(stderr, "loadgen: conn %d: %s\n", c->idx,
				strerror(errno));
			lg_tcp_close(c);
		}
	}
	lg_nflush = 0;
}

/* libevent wrote the rest that bevout_flush left. */
static void lg_tcp_on_write(struct bufferevent *bev, void *arg)
{
	bufferevent_disable(bev, EV_WRITE);
}

static void lg_tcp_on_event(struct bufferevent *bev, short what, void *arg)
{
	struct lg_conn *c = arg;

	/* Connected: from now on frames are written by lg_on_flush
	 * (EV_WRITE stays on while frames queued before are unwritten). */
	if ((what & BEV_EVENT_CONNECTED) && c->dead) {
		/* --reconnect: open again; its events in flight again. */
		c->dead = false;
		lg_ready(c);
		lg_st.reconnects++;
		for (struct lg_pend *p = c->pend; p != NULL; p = p->next)
			if (lg_tcp_write_event(c, p->ev, p->n))
				lg_st.resent++;
		fprintf(stderr, "loadgen: conn %d open again\n", c->idx);
	}
	if ((what & BEV_EVENT_CONNECTED) &&
	    evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		bufferevent_disable(bev, EV_WRITE);

	if (what & (BEV_EVENT_ERROR | BEV_EVENT_EOF)) {
		if (!c->dead)
			fprintf(stderr, "loadgen: conn %d closed (%s)\n",
				c->idx, (what & BEV_EVENT_EOF)
						? "eof" : strerror(errno));
		lg_tcp_close(c);
	}
}

static void lg_tcp_on_retry(evutil_socket_t fd, short what, void *arg)
{
	struct lg_conn *c = arg;
	struct timeval tv = {0, 100000};

	/* c->dead stays set until the connection is up (lg_tcp_on_event). */
	if (!lg_tcp_connect(c)) {
		if (c->bev != NULL)
			bufferevent_free(c->bev);
		c->bev = NULL;
		event_add(c->retry_ev, &tv);
	}
}

static bool lg_tcp_connect(struct lg_conn *c)
{
	struct sockaddr_in sin = {.sin_family = AF_INET};
	int one = 1;

	sin.sin_port = htons((uint16_t)lg_opt.port);
	if (evutil_inet_pton(AF_INET, lg_opt.host, &sin.sin_addr) != 1)
		return false;
	c->bev = bufferevent_socket_new(lg_base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL ||
	    bufferevent_socket_connect(c->bev, (struct sockaddr *)&sin,
				       sizeof(sin)) != 0)
		return false;
	setsockopt(bufferevent_getfd(c->bev), IPPROTO_TCP, TCP_NODELAY, &one,
		   sizeof(one));
	if (strcmp(lg_opt.mode, "tcp") == 0) {
		bufferevent_setcb(c->bev, lg_tcp_on_read, lg_tcp_on_write,
				  lg_tcp_on_event, c);
	} else {
		http_parser_init(&c->hp, HTTP_RESPONSE);
		c->hp.data = c;
		c->body_len = 0;
		bufferevent_setcb(c->bev, lg_http_on_read, lg_tcp_on_write,
				  lg_tcp_on_event, c);
	}
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	return true;
}

/* --- HTTP devices (and Alertmanager clients) ------------------------------ */

/* A keep-alive connection with one request at a time, as a device or a
 * help line's integration sends (no pipelining). The request is written
 * like the TCP frames (one writev a connection a loop turn, no epoll_ctl;
 * libevent's evhttp client cost the shared cores about 20 µs an event,
 * docs/BENCHMARKS.md optimisation 34) and the answer is read with
 * http_parser. */
static int lg_http_on_body(http_parser *hp, const char *at, size_t n)
{
	struct lg_conn *c = hp->data;
	size_t room = sizeof(c->body) - 1 - c->body_len;

	if (n > room)
		n = room;
	memcpy(c->body + c->body_len, at, n);
	c->body_len += n;
	return 0;
}

static int lg_http_on_complete(http_parser *hp)
{
	struct lg_conn *c = hp->data;
	int code = (int)hp->status_code;
	bool am = strcmp(lg_opt.mode, "am") == 0;
	int outcome = 0;

	c->body[c->body_len] = '\0';
	if (code == 202)
		outcome = strstr(c->body, "\"duplicate\"") ? 2
			  : strstr(c->body, "\"merged\"") ? 1 : 0;
	if (code != 202 && code != 200 && lg_st.nacked < 5)
		fprintf(stderr, "loadgen: http status %d: %s\n", code, c->body);
	c->body_len = 0;
	if (c->inflight <= 0) {	/* an answer to no request */
		lg_st.errors++;
		return 0;
	}
	lg_answered(c, c->req_id, outcome, am ? code == 200 : code == 202,
		    c->req_ts);
	return 0;
}

static const http_parser_settings lg_http_settings = {
	.on_body = lg_http_on_body,
	.on_message_complete = lg_http_on_complete,
};

static void lg_http_on_read(struct bufferevent *bev, void *arg)
{
	struct lg_conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	struct evbuffer_iovec v[4];

	while (!c->dead && evbuffer_get_length(in) > 0) {
		int nv = evbuffer_peek(in, -1, NULL, v, 4);
		size_t used = 0;

		for (int i = 0; i < nv && i < 4 && !c->dead; i++) {
			size_t k = http_parser_execute(&c->hp, &lg_http_settings,
						       v[i].iov_base,
						       v[i].iov_len);

			used += k;
			if (HTTP_PARSER_ERRNO(&c->hp) != HPE_OK ||
			    k != v[i].iov_len) {
				fprintf(stderr, "loadgen: conn %d: bad answer: %s\n",
					c->idx, http_errno_description(
						HTTP_PARSER_ERRNO(&c->hp)));
				lg_tcp_close(c);
				return;
			}
		}
		if (c->dead)
			return;
		evbuffer_drain(in, used);
	}
}

/* The JSON of one event (http) or of one alert (am). */
static int lg_http_body(const struct lg_event *e, char *buf, size_t len)
{
	if (strcmp(lg_opt.mode, "am") == 0)
		return snprintf(buf, len,
				"[{\"labels\":{\"alertname\":\"%s\",\"source\":\"%s\","
				"\"event_id\":\"%s\",\"t\":\"%s\"},"
				"\"annotations\":{\"zone\":\"Konak\"},"
				"\"generatorURL\":\"http://127.0.0.1/lg\"}]",
				lg_type_name(e->kind), e->source, e->id, e->label);
	return snprintf(buf, len,
			"{\"event_id\":\"%s\",\"source\":{\"id\":\"%s\","
			"\"kind\":\"bus\",\"zone\":\"Konak\",\"label\":\"%s\"},"
			"\"type\":\"%s\",\"location\":{\"lat\":38.4555,"
			"\"lon\":27.1199}}",
			e->id, e->source, e->label, lg_type_name(e->kind));
}

static bool lg_http_send(struct lg_conn *c, int64_t ts)
{
	struct lg_event e;
	char body[1024], head[512], v1[65];
	bool am = strcmp(lg_opt.mode, "am") == 0;
	int64_t t = time(NULL);
	int n, h;

	lg_next_event(c, ts, &e);
	if (am)	/* every alert is a new one: no duplicates */
		snprintf(e.label, sizeof(e.label), "lg.%s.a.%" PRIx64,
			 lg_opt.run_id, (uint64_t)ts);
	n = lg_http_body(&e, body, sizeof(body));
	if (n < 0 || (size_t)n >= sizeof(body))
		return false;
	if (am) {
		h = snprintf(head, sizeof(head),
			     "POST /api/v2/alerts HTTP/1.1\r\nHost: %s\r\n"
			     "Content-Type: application/json\r\n"
			     "Content-Length: %d\r\n\r\n", lg_opt.host, n);
	} else {
		auth_sign(lg_opt.secret, t, (const uint8_t *)body, (size_t)n, v1);
		h = snprintf(head, sizeof(head),
			     "POST /v1/events HTTP/1.1\r\nHost: %s\r\n"
			     "Content-Type: application/json\r\n"
			     "X-Alertd-Signature: t=%" PRId64 ",v1=%s\r\n"
			     "Content-Length: %d\r\n\r\n", lg_opt.host, t, v1, n);
	}
	if (h < 0 || (size_t)h >= sizeof(head))
		return false;
	c->req_ts = ts;
	snprintf(c->req_id, sizeof(c->req_id), "%s", e.id);
	lg_queue(c, head, (size_t)h);
	lg_queue(c, body, (size_t)n);
	c->inflight++;
	lg_inflight++;
	lg_st.t_sent_ns = lg_now_ns();
	return true;
}

/* --- scheduling ----------------------------------------------------------- */

static bool lg_send(struct lg_conn *c, int64_t ts)
{
	bool ok = strcmp(lg_opt.mode, "tcp") == 0 ? lg_tcp_send(c, ts)
						  : lg_http_send(c, ts);

	lg_ready(c);
	return ok;
}

static bool lg_quota_left(void)
{
	return lg_opt.count <= 0 || (long)lg_st.sent < lg_opt.count;
}

/* c has room in its window: to the end of the ready ring. */
static void lg_ready(struct lg_conn *c)
{
	if (c->ready_listed || c->dead || c->inflight >= lg_opt.window)
		return;
	c->ready_listed = true;
	lg_readyq[(lg_ready_head + lg_ready_len) % lg_opt.conns] = c->idx;
	lg_ready_len++;
}

/* The next connection with room in its window, round robin (the one
 * waiting longest); NULL if none. One that is still not full after the
 * caller sends goes back to the end (lg_send). */
static struct lg_conn *lg_pick(void)
{
	while (lg_ready_len > 0) {
		struct lg_conn *c = &lg_conns[lg_readyq[lg_ready_head]];

		lg_ready_head = (lg_ready_head + 1) % lg_opt.conns;
		lg_ready_len--;
		c->ready_listed = false;
		if (!c->dead && c->inflight < lg_opt.window)
			return c;
	}
	return NULL;
}

/* Closed loop: fill every window. */
static void lg_fill(void)
{
	struct lg_conn *c;

	while (lg_sending && lg_quota_left() && (c = lg_pick()) != NULL)
		if (!lg_send(c, lg_now_ns()))
			break;
}

static void lg_stop_sending(void)
{
	if (!lg_sending)
		return;
	lg_sending = false;
	lg_end_ns = lg_now_ns() + (int64_t)(lg_opt.timeout_s * 1e9);
}

/* Open loop: event k is due at t0 + k / rate. Sends every event whose due
 * time has come, then arms lg_due_ev for the next one, so an event leaves
 * when it is due and not at the next tick (the base runs with a precise
 * timer: libevent's default coarse clock would add up to 4 ms here). */
static void lg_send_due(int64_t now)
{
	struct lg_conn *c;
	int64_t ts = 0;

	while (lg_quota_left()) {
		ts = lg_st.t0_ns +
		     (int64_t)((double)lg_st.sent * 1e9 / lg_opt.rate);
		if (ts > now || (c = lg_pick()) == NULL || !lg_send(c, ts))
			break;
	}
	if (lg_quota_left() && ts > now) {
		int64_t us = (ts - now) / 1000;
		struct timeval tv = {(time_t)(us / 1000000),
				     (suseconds_t)(us % 1000000)};

		event_add(lg_due_ev, &tv);
	}
}

static void lg_on_due(evutil_socket_t fd, short what, void *arg)
{
	if (lg_sending)
		lg_send_due(lg_now_ns());
}

static void lg_on_tick(evutil_socket_t fd, short what, void *arg)
{
	int64_t now = lg_now_ns();

	if (lg_sending) {
		if (!lg_quota_left() ||
		    now - lg_st.t0_ns > (int64_t)(lg_opt.duration_s * 1e9)) {
			lg_stop_sending();
		} else if (lg_opt.rate > 0) {
			lg_send_due(now);
		} else {
			lg_fill();
		}
	}
	lg_maybe_finish();
	if (!lg_sending && now > lg_end_ns) {
		fprintf(stderr, "loadgen: %s: time is up with %ld unanswered\n",
			lg_opt.name, lg_inflight);
		event_base_loopbreak(lg_base);
	}
}

/* Done when nothing is in flight after sending, and the consoles have seen
 * every change (or settle_s passed). */
static void lg_maybe_finish(void)
{
	uint64_t want;
	int64_t now;

	if (lg_sending || lg_inflight > 0)
		return;
	now = lg_now_ns();
	if (lg_end_ns > now + (int64_t)(lg_opt.settle_s * 1e9))
		lg_end_ns = now + (int64_t)(lg_opt.settle_s * 1e9);
	lg_exit_status = lg_st.acked == lg_st.sent ? 0 : 1;
	if (lg_opt.sse > 0)
		want = (lg_st.outcome[0] + lg_st.outcome[1]) * (uint64_t)lg_opt.sse;
	else if (lg_opt.sink_port > 0)
		want = lg_st.acked;
	else
		want = 0;
	if (lg_st.con_seen >= want)
		event_base_loopbreak(lg_base);
}

/* --- output -------------------------------------------------------------- */

static double lg_ms(uint64_t us)
{
	return (double)us / 1000.0;
}

static double lg_rel_s(int64_t t)
{
	return t > 0 ? (double)(t - lg_st.t0_ns) / 1e9 : -1;
}

static void lg_report(void)
{
	double send_s = (double)(lg_st.t_sent_ns - lg_st.t0_ns) / 1e9;
	double done_s = lg_rel_s(lg_st.t_answered_ns);
	struct rusage ru;
	double cpu_ms = 0;

	/* The load generator's own CPU: it shares the cores with alertd and
	 * the servers, and bench.sh counts it in where the cores went. */
	if (getrusage(RUSAGE_SELF, &ru) == 0)
		cpu_ms = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
			 (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;

	printf("RESULT name=%s mode=%s conns=%d sources=%d rate=%.0f window=%d"
	       " sent=%" PRIu64 " acked=%" PRIu64 " nacked=%" PRIu64
	       " errors=%" PRIu64 " dup_sent=%" PRIu64 " panics_sent=%" PRIu64
	       " new=%" PRIu64 " merged=%" PRIu64 " duplicate=%" PRIu64
	       " send_s=%.3f done_s=%.3f throughput=%.0f"
	       " ack_p50_ms=%.3f ack_p99_ms=%.3f ack_p999_ms=%.3f ack_max_ms=%.3f"
	       " reconnects=%" PRIu64 " resent=%" PRIu64 " max_gap_ms=%.3f"
	       " lg_cpu_ms=%.1f",
	       lg_opt.name, lg_opt.mode, lg_opt.conns, lg_opt.sources,
	       lg_opt.rate, lg_opt.window, lg_st.sent, lg_st.acked,
	       lg_st.nacked, lg_st.errors, lg_st.dup_sent, lg_st.panics_sent,
	       lg_st.outcome[0], lg_st.outcome[1], lg_st.outcome[2], send_s,
	       done_s, done_s > 0 ? (double)lg_st.acked / done_s : 0,
	       lg_ms(hist_quantile(&lg_st.ack, 0.5)),
	       lg_ms(hist_quantile(&lg_st.ack, 0.99)),
	       lg_ms(hist_quantile(&lg_st.ack, 0.999)), lg_ms(lg_st.ack.max_us),
	       lg_st.reconnects, lg_st.resent,
	       (double)lg_st.max_gap_ns / 1e6, cpu_ms);
	if (lg_opt.sse > 0 || lg_opt.sink_port > 0)
		printf(" con_seen=%" PRIu64 " con_panics=%" PRIu64
		       " con_disconnects=%" PRIu64
		       " con_p50_ms=%.3f con_p99_ms=%.3f con_p999_ms=%.3f"
		       " con_max_ms=%.3f con_panic_p99_ms=%.3f"
		       " last_panic_con_s=%.3f last_hb_con_s=%.3f"
		       " last_con_s=%.3f ack_panic_p99_ms=%.3f"
		       " last_panic_ack_s=%.3f last_normal_ack_s=%.3f",
		       lg_st.con_seen, lg_st.con_panics, lg_st.con_disconnects,
		       lg_ms(hist_quantile(&lg_st.con, 0.5)),
		       lg_ms(hist_quantile(&lg_st.con, 0.99)),
		       lg_ms(hist_quantile(&lg_st.con, 0.999)),
		       lg_ms(lg_st.con.max_us),
		       lg_ms(hist_quantile(&lg_st.con_panic, 0.99)),
		       lg_rel_s(lg_st.t_last_panic_con_ns),
		       lg_rel_s(lg_st.t_last_hb_con_ns),
		       lg_rel_s(lg_st.t_last_con_ns),
		       lg_ms(hist_quantile(&lg_st.ack_panic, 0.99)),
		       lg_rel_s(lg_st.t_last_panic_ack_ns),
		       lg_rel_s(lg_st.t_last_normal_ack_ns));
	printf("\n");
	fflush(stdout);
}

/* --- main ---------------------------------------------------------------- */

static void lg_usage(void)
{
	fprintf(stderr,
		"usage: loadgen tcp|http|am|echo-server|pg-limit|rules|cpu-probe\n"
		"  [--port P]\n"
		"  [--host H] [--pg CONNINFO (pg-limit; --window rows a batch)]\n"
		"  [--config alertd.ini (rules: print the decide script's rules\n"
		"   argument as alertd sends it now)]\n"
		"  [--name N] [--conns N] [--sources N] [--source-prefix bus-]\n"
		"  [--rate EV/S (0 closed loop)]\n"
		"  [--window N] [--count N] [--duration S] [--timeout S]\n"
		"  [--panic-pct P] [--dup-pct P] [--fault-pct P] [--secret S]\n"
		"  [--run-id ID] [--echo] [--sse N --sse-port P --sse-token T]\n"
		"  [--sink-port P] [--settle S] [--seed N] [--slow-ms MS]\n"
		"  [--panic-trace] [--reconnect]\n");
	exit(2);
}

static void lg_parse(int argc, char **argv)
{
	static const struct option longs[] = {
		{"port", 1, 0, 'p'}, {"host", 1, 0, 'H'}, {"name", 1, 0, 'n'},
		{"conns", 1, 0, 'c'}, {"sources", 1, 0, 's'},
		{"rate", 1, 0, 'r'}, {"window", 1, 0, 'w'},
		{"count", 1, 0, 'N'}, {"duration", 1, 0, 'd'},
		{"timeout", 1, 0, 't'}, {"panic-pct", 1, 0, 'P'},
		{"dup-pct", 1, 0, 'D'}, {"fault-pct", 1, 0, 'F'},
		{"secret", 1, 0, 'S'}, {"run-id", 1, 0, 'R'},
		{"echo", 0, 0, 'e'}, {"sse", 1, 0, 'E'},
		{"sse-port", 1, 0, 'q'}, {"sse-token", 1, 0, 'T'},
		{"sink-port", 1, 0, 'k'}, {"settle", 1, 0, 'x'},
		{"seed", 1, 0, 'z'}, {"source-prefix", 1, 0, 'i'},
		{"slow-ms", 1, 0, 'l'}, {"panic-trace", 0, 0, 'a'},
		{"reconnect", 0, 0, 'C'}, {"pg", 1, 0, 'g'},
		{"config", 1, 0, 'o'},
		{0, 0, 0, 0},
	};
	static char run_id[24];
	int o;

	if (argc < 2 || argv[1][0] == '-')
		lg_usage();
	lg_opt.mode = argv[1];
	optind = 2;
	while ((o = getopt_long(argc, argv, "", longs, NULL)) != -1) {
		switch (o) {
		case 'p': lg_opt.port = atoi(optarg); break;
		case 'H': lg_opt.host = optarg; break;
		case 'n': lg_opt.name = optarg; break;
		case 'c': lg_opt.conns = atoi(optarg); break;
		case 's': lg_opt.sources = atoi(optarg); break;
		case 'i': lg_opt.source_prefix = optarg; break;
		case 'r': lg_opt.rate = atof(optarg); break;
		case 'w': lg_opt.window = atoi(optarg); break;
		case 'N': lg_opt.count = atol(optarg); break;
		case 'd': lg_opt.duration_s = atof(optarg); break;
		case 't': lg_opt.timeout_s = atof(optarg); break;
		case 'P': lg_opt.panic_pct = atof(optarg); break;
		case 'D': lg_opt.dup_pct = atof(optarg); break;
		case 'F': lg_opt.fault_pct = atof(optarg); break;
		case 'S': lg_opt.secret = optarg; break;
		case 'R': lg_opt.run_id = optarg; break;
		case 'e': lg_opt.echo = true; break;
		case 'E': lg_opt.sse = atoi(optarg); break;
		case 'q': lg_opt.sse_port = atoi(optarg); break;
		case 'T': lg_opt.sse_token = optarg; break;
		case 'k': lg_opt.sink_port = atoi(optarg); break;
		case 'x': lg_opt.settle_s = atof(optarg); break;
		case 'z': lg_rng = strtoull(optarg, NULL, 0) | 1; break;
		case 'l': lg_opt.slow_ms = atof(optarg); break;
		case 'a': lg_opt.panic_trace = true; break;
		case 'C': lg_opt.reconnect = true; break;
		case 'g': lg_opt.pg = optarg; break;
		case 'o': lg_opt.config = optarg; break;
		default: lg_usage();
		}
	}
	if (lg_opt.conns < 1 || lg_opt.sources < 1 || lg_opt.window < 1 ||
	    lg_opt.duration_s <= 0 || lg_opt.timeout_s <= 0)
		lg_usage();
	if (strcmp(lg_opt.mode, "pg-limit") == 0 && lg_opt.pg == NULL)
		lg_usage();
	if (strcmp(lg_opt.mode, "rules") == 0 && lg_opt.config == NULL)
		lg_usage();
	if (strcmp(lg_opt.mode, "tcp") != 0 &&
	    strcmp(lg_opt.mode, "pg-limit") != 0)
		lg_opt.window = 1; /* HTTP: one request at a time */
	if (strcmp(lg_opt.mode, "am") == 0)
		lg_opt.dup_pct = 0;
	if (lg_opt.run_id == NULL) {
		snprintf(run_id, sizeof(run_id), "r%lx%x", (long)time(NULL),
			 (unsigned)getpid());
		lg_opt.run_id = run_id;
	}
}

int main(int argc, char **argv)
{
	struct timeval tick = {0, 1000};
	struct event_config *cfg;

	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	lg_parse(argc, argv);
	if (strcmp(lg_opt.mode, "cpu-probe") == 0)
		return lg_cpu_probe();
	cfg = event_config_new();
	if (cfg == NULL)
		return 1;
	event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER);
	event_config_set_flag(cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
	lg_base = event_base_new_with_config(cfg);
	event_config_free(cfg);
	if (lg_base == NULL)
		return 1;
	if (strcmp(lg_opt.mode, "echo-server") == 0)
		return lg_echo_server();
	if (strcmp(lg_opt.mode, "pg-limit") == 0)
		return lg_pg_limit();
	if (strcmp(lg_opt.mode, "rules") == 0)
		return lg_rules();
	if (strcmp(lg_opt.mode, "tcp") != 0 && strcmp(lg_opt.mode, "http") != 0 &&
	    strcmp(lg_opt.mode, "am") != 0)
		lg_usage();
	if (lg_opt.sse > 0 && !lg_sse_start())
		return 1;
	if (strcmp(lg_opt.mode, "am") == 0 && !lg_am_start())
		return 1;
	lg_conns = calloc((size_t)lg_opt.conns, sizeof(*lg_conns));
	lg_flushq = calloc((size_t)lg_opt.conns, sizeof(*lg_flushq));
	lg_readyq = calloc((size_t)lg_opt.conns, sizeof(*lg_readyq));
	lg_flush_ev = event_new(lg_base, -1, 0, lg_on_flush, NULL);
	if (lg_conns == NULL || lg_flushq == NULL || lg_readyq == NULL ||
	    lg_flush_ev == NULL)
		return 1;
	for (int i = 0; i < lg_opt.conns; i++) {
		struct lg_conn *c = &lg_conns[i];

		c->idx = i;
		if (lg_opt.reconnect && strcmp(lg_opt.mode, "tcp") == 0 &&
		    (c->retry_ev = evtimer_new(lg_base, lg_tcp_on_retry,
					       c)) == NULL)
			return 1;
		if (!lg_tcp_connect(c)) {
			fprintf(stderr, "loadgen: cannot connect\n");
			return 1;
		}
		lg_ready(c);
	}
	/* Let the subscribers and connections settle before the clock starts. */
	{
		struct timeval settle = {0, 300000};
		event_base_loopexit(lg_base, &settle);
		event_base_dispatch(lg_base);
	}
	lg_tick_ev = event_new(lg_base, -1, EV_PERSIST, lg_on_tick, NULL);
	lg_due_ev = evtimer_new(lg_base, lg_on_due, NULL);
	lg_st.t0_ns = lg_now_ns();
	lg_end_ns = lg_st.t0_ns + (int64_t)((lg_opt.duration_s + lg_opt.timeout_s) * 1e9);
	event_add(lg_tick_ev, &tick);
	if (lg_opt.rate <= 0)
		lg_fill();
	else
		lg_send_due(lg_st.t0_ns);
	event_base_dispatch(lg_base);
	lg_report();
	lg_slow_report();
	lg_panic_trace_report();
	event_free(lg_tick_ev);
	event_free(lg_due_ev);
	lg_sse_stop();
	lg_am_stop();
	for (int i = 0; i < lg_opt.conns; i++) {
		if (lg_conns[i].bev)
			bufferevent_free(lg_conns[i].bev);
		while (lg_conns[i].dups != NULL)
			lg_dup_answered(&lg_conns[i], lg_conns[i].dups->id, 0);
		while (lg_conns[i].pend != NULL)
			lg_pend_answered(&lg_conns[i], lg_conns[i].pend->id);
		if (lg_conns[i].retry_ev != NULL)
			event_free(lg_conns[i].retry_ev);
	}
	free(lg_conns);
	event_base_free(lg_base);
	return lg_exit_status;
}
