/* ingest_tcp: the device TCP protocol (docs/api.md, "Devices: TCP
 * protocol"). One bufferevent per connection; each frame is a 4-byte
 * big-endian length and a serialized alertd.v1.Frame carrying a
 * SignedEvent. Every event is answered with an Ack or a Nack, in the order
 * the answers become known. A framing error stops the reading of that
 * connection only: the events read before it are still answered (their
 * Acks or Nacks first), then the Error frame, then it closes.
 *
 * Connections are never freed inside their own callbacks: a closed one
 * moves to the dead list and a one-shot "reaper" event frees it on the next
 * loop turn.
 *
 * Answers are written by the daemon itself (bevout.h), not by the
 * bufferevent's write event: they go to the output buffer, the connection
 * joins the flush list, and one deferred "flush" event writes every listed
 * connection once the callback that produced the answers has returned:
 * one writev per connection per loop turn, as Redis writes its clients'
 * replies before it sleeps. The write event, and with it the write
 * timeout, is enabled only for what the socket did not take, and
 * disabled again once libevent has written that (docs/BENCHMARKS.md,
 * optimisation 17). */
#include "ingest_tcp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "auth.h"
#include "bevout.h"
#include "codec_pb.h"
#include "config.h"
#include "listen_guard.h"
#include "log.h"
#include "metrics.h"
#include "netaddr.h"
#include "pipeline.h"
#include "tzclock.h"

/* Frames handled per wakeup before the other connections get the loop. */
#define INGEST_TCP_FRAME_BUDGET 64
/* Answers the peer has not read yet beyond which we stop reading it. */
#define INGEST_TCP_OUT_MAX (1024 * 1024)
/* Input kept beyond one maximal frame before reading pauses. */
#define INGEST_TCP_READ_SLACK (64 * 1024)
/* A peer that takes none of our output for this long is gone. */
#define INGEST_TCP_WRITE_TIMEOUT_S 30
/* [server] tcp_first_event_timeout_s and tcp_frame_timeout_s: a
 * connection must send its first correctly signed event that soon after
 * connecting, and every frame must arrive whole that soon after its first
 * byte; else it gets an Error frame "timeout" and is closed. Without
 * them, connections that send nothing, or a byte of a frame now and
 * then, would hold max_connections (and up to a frame of memory each)
 * for ever; the write timeout and keepalive only find peers that are
 * gone. A device that keeps its connection open between events is never
 * timed out once it has sent one. */
/* How long a closing connection waits for the peer's FIN. */
#define INGEST_TCP_LINGER_S 2
/* Input discarded while lingering before we stop waiting for the FIN (the
 * read timeout alone restarts with every read). */
#define INGEST_TCP_LINGER_MAX (1024 * 1024)
/* Events read from all device connections together and not answered yet
 * (queued in the pipeline or in decide/record), and their frame bytes,
 * shared fairly: a connection reads while it has fewer events than
 * min(tcp_max_inflight, this / connections) and fewer frame bytes than
 * max(one frame, this / connections). The bound is on what was read, not
 * on what is in decide (the pipeline bounds that), so that the panics
 * behind a backlog of heartbeats get read and take the urgent lane. At
 * about 1 KB of memory per queued heartbeat this is about 16 MB at most
 * (docs/BENCHMARKS.md, optimisation 4). */
#define INGEST_TCP_TOTAL_EVENTS 16384
#define INGEST_TCP_TOTAL_BYTES (16 * 1024 * 1024)
/* A connection whose last INGEST_TCP_TARPIT_RUN answers were all
 * rate_limited (a sender ignoring Retry-After) is not read for
 * INGEST_TCP_TARPIT_MS after each such run: its refusals cost no Redis
 * call (pipeline_held) but still a read, a decode, an HMAC and a Nack
 * each, and a closed-loop flood would otherwise take a whole core from
 * everyone else. Any other answer ends the run. */
#define INGEST_TCP_TARPIT_RUN 64
#define INGEST_TCP_TARPIT_MS 10
/* How long a connection that sent a bad frame waits for the answers to the
 * events it sent before it; past that they are detached (still decided and
 * recorded, not answered) and the Error frame goes out. The pipeline
 * answers within the Redis and PostgreSQL deadlines unless it is queued
 * behind a backlog. */
#define INGEST_TCP_FAIL_WAIT_S 10

enum tcp_conn_state {
	TCP_CONN_READING,  /* frames are read, checked and submitted */
	TCP_CONN_BLOCKED,  /* not read: its share of events or bytes is not
			    * answered yet, or the peer does not read its
			    * answers */
	TCP_CONN_DRAINING, /* no more frames (peer sent EOF, or the daemon
			    * drains): answer what is in flight, then close */
	TCP_CONN_FAILING,  /* a framing error: no more frames; answer what is
			    * in flight (at most INGEST_TCP_FAIL_WAIT_S), then
			    * the Error frame (CLOSING) */
	TCP_CONN_CLOSING,  /* an Error frame is queued; close once written */
	TCP_CONN_LINGER,   /* our side is shut down; input is discarded until
			    * the peer closes, so that our last frames are
			    * read before the kernel would send a reset */
	TCP_CONN_CLOSED,   /* done; freed on the next loop turn */
};

static const char *const ingest_tcp_state_names[] = {
	"reading", "blocked", "draining", "failing", "closing", "linger",
	"closed",
};

struct tcp_conn;

/* One event submitted to the pipeline and not answered yet. */
struct tcp_job {
	struct tcp_conn *conn;
	struct pipeline_job *pjob;
	size_t bytes;       /* of its frame */
	struct tcp_job *prev, *next;
};

struct tcp_conn {
	struct ingest_tcp *owner;
	struct bufferevent *bev;
	enum tcp_conn_state state;
	bool peer_eof;      /* the peer will send nothing more */
	bool no_linger;     /* refused at accept: close as soon as written */
	size_t inflight;    /* events submitted and not answered */
	size_t inflight_bytes; /* their frame bytes */
	size_t read_high;   /* current read high watermark */
	size_t discarded;   /* bytes thrown away while lingering */
	unsigned refused_run; /* rate_limited answers in a row */
	bool paused;        /* not read until pause_ev fires (tarpit) */
	struct event *pause_ev;
	uint8_t *error_frame; /* FAILING: sent once the answers are out */
	size_t error_len;
	struct event *fail_ev; /* FAILING: INGEST_TCP_FAIL_WAIT_S */
	struct event *deadline_ev; /* first event, frame: the timeouts above */
	bool signed_once;   /* a correctly signed event came: no hello
			     * deadline any more */
	bool frame_timed;   /* deadline_ev runs for a partial frame */
	uint64_t frames;    /* frames taken off the input */
	struct tcp_job *jobs;
	struct tcp_conn *prev, *next;
	bool flush_listed;  /* on owner->flushq */
	struct tcp_conn *flush_next;
	char name[64];      /* "127.0.0.1:5555", the log prefix */
};

struct ingest_tcp {
	struct event_base *base;
	struct pipeline *pipeline;
	struct evconnlistener *listener;
	struct event *reaper;
	struct listen_guard *guard; /* accept() failing: pause, not spin */
	bool accepting;
	struct tcp_conn *conns; /* open */
	struct tcp_conn *dead;  /* closed, freed by the reaper */
	size_t n_conns;         /* length of conns */
	struct event *flush;    /* deferred: writes the connections of flushq */
	struct tcp_conn *flushq; /* with answers queued this loop turn */
};

static void ingest_tcp_on_read(struct bufferevent *bev, void *arg);
static void ingest_tcp_on_write(struct bufferevent *bev, void *arg);
static void ingest_tcp_on_event(struct bufferevent *bev, short what,
				void *arg);

/* --- connection lifecycle ---------------------------------------------- */

static void ingest_tcp_conn_set_state(struct tcp_conn *c,
				      enum tcp_conn_state s)
{
	struct timeval linger = {INGEST_TCP_LINGER_S, 0};
	struct timeval wr = {INGEST_TCP_WRITE_TIMEOUT_S, 0};

	if (c->state != s)
		log_debug("tcp=%s: %s -> %s", c->name,
			  ingest_tcp_state_names[c->state],
			  ingest_tcp_state_names[s]);
	c->state = s;
	switch (s) {
	case TCP_CONN_READING:
		if (!c->peer_eof)
			bufferevent_enable(c->bev, EV_READ);
		break;
	case TCP_CONN_BLOCKED:
	case TCP_CONN_DRAINING:
	case TCP_CONN_FAILING:
	case TCP_CONN_CLOSING:
		bufferevent_disable(c->bev, EV_READ);
		break;
	case TCP_CONN_LINGER:
		bufferevent_set_timeouts(c->bev, &linger, &wr);
		bufferevent_enable(c->bev, EV_READ);
		break;
	case TCP_CONN_CLOSED:
		bufferevent_disable(c->bev, EV_READ | EV_WRITE);
		break;
	}
}

/* The sender is going away: its pending events still finish in the
 * pipeline, but nobody waits for their answers. */
static void ingest_tcp_conn_detach_jobs(struct tcp_conn *c)
{
	struct tcp_job *job, *next;

	for (job = c->jobs; job != NULL; job = next) {
		next = job->next;
		if (job->pjob != NULL)
			pipeline_detach(job->pjob);
		free(job);
	}
	c->jobs = NULL;
	c->inflight = 0;
	c->inflight_bytes = 0;
}

static void ingest_tcp_conn_unlist_flush(struct tcp_conn *c)
{
	struct tcp_conn **pp;

	if (!c->flush_listed)
		return;
	for (pp = &c->owner->flushq; *pp != NULL; pp = &(*pp)->flush_next) {
		if (*pp == c) {
			*pp = c->flush_next;
			break;
		}
	}
	c->flush_listed = false;
	c->flush_next = NULL;
}

static void ingest_tcp_conn_close(struct tcp_conn *c)
{
	struct ingest_tcp *t = c->owner;

	if (c->state == TCP_CONN_CLOSED)
		return;
	ingest_tcp_conn_detach_jobs(c);
	if (c->pause_ev != NULL)
		event_del(c->pause_ev);
	if (c->fail_ev != NULL)
		event_del(c->fail_ev);
	ingest_tcp_conn_unlist_flush(c);
	ingest_tcp_conn_set_state(c, TCP_CONN_CLOSED);
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		t->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	t->n_conns--;
	c->prev = NULL;
	c->next = t->dead;
	t->dead = c;
	event_active(t->reaper, EV_TIMEOUT, 0);
}

/* Everything is written: close, after a lingering half-close unless the
 * peer is done sending already. */
static void ingest_tcp_conn_finish(struct tcp_conn *c)
{
	evutil_socket_t fd = bufferevent_getfd(c->bev);

	if (c->peer_eof || c->no_linger || fd < 0 ||
	    shutdown(fd, SHUT_WR) != 0) {
		ingest_tcp_conn_close(c);
		return;
	}
	evbuffer_drain(bufferevent_get_input(c->bev),
		       evbuffer_get_length(bufferevent_get_input(c->bev)));
	ingest_tcp_conn_set_state(c, TCP_CONN_LINGER);
}

static bool ingest_tcp_conn_output_empty(struct tcp_conn *c)
{
	return evbuffer_get_length(bufferevent_get_output(c->bev)) == 0;
}

/* No more frames from this connection; close once every answer is out. */
static void ingest_tcp_conn_drain(struct tcp_conn *c)
{
	ingest_tcp_conn_set_state(c, TCP_CONN_DRAINING);
	if (c->inflight == 0 && ingest_tcp_conn_output_empty(c))
		ingest_tcp_conn_finish(c);
}

/* Queues a frame built by codec_pb (NULL: allocation failed) and frees it.
 * false if it could not be queued; the connection is then closed. */
static bool ingest_tcp_conn_send(struct tcp_conn *c, uint8_t *frame,
				 size_t len)
{
	int rc = -1;

	if (frame != NULL)
		rc = bufferevent_write(c->bev, frame, len);
	free(frame);
	if (rc != 0) {
		log_error("tcp=%s: out of memory writing an answer; closing",
			  c->name);
		ingest_tcp_conn_close(c);
		return false;
	}
	if (!c->flush_listed) {
		c->flush_listed = true;
		c->flush_next = c->owner->flushq;
		c->owner->flushq = c;
		event_active(c->owner->flush, EV_TIMEOUT, 0);
	}
	return true;
}

/* FAILING and every answer is out (or the wait is over): the Error frame,
 * then close once it is written. */
static void ingest_tcp_conn_send_error(struct tcp_conn *c)
{
	uint8_t *frame = c->error_frame;

	c->error_frame = NULL;
	if (c->fail_ev != NULL)
		event_del(c->fail_ev);
	if (ingest_tcp_conn_send(c, frame, c->error_len))
		ingest_tcp_conn_set_state(c, TCP_CONN_CLOSING);
}

static void ingest_tcp_on_fail_wait(evutil_socket_t fd, short what,
				    void *arg)
{
	struct tcp_conn *c = arg;

	log_warn("tcp=%s: %zu answers not known %d s after a framing error; "
		 "closing without them (the events are still recorded)",
		 c->name, c->inflight, INGEST_TCP_FAIL_WAIT_S);
	ingest_tcp_conn_detach_jobs(c);
	ingest_tcp_conn_send_error(c);
}

/* A framing error: no more frames are read; the events read before it
 * are answered, then the Error frame goes, then the connection closes. */
static void ingest_tcp_conn_fail(struct tcp_conn *c, const char *code,
				 const char *detail)
{
	struct timeval wait = {INGEST_TCP_FAIL_WAIT_S, 0};

	log_warn("tcp=%s: %s (%s); closing after %zu answers", c->name, code,
		 detail, c->inflight);
	metrics_count_error(code);
	c->error_frame = codec_pb_frame_error(code, detail, &c->error_len);
	ingest_tcp_conn_set_state(c, TCP_CONN_FAILING);
	if (c->inflight == 0) {
		ingest_tcp_conn_send_error(c);
		return;
	}
	if (c->fail_ev == NULL)
		c->fail_ev = evtimer_new(c->owner->base,
					 ingest_tcp_on_fail_wait, c);
	if (c->fail_ev == NULL || evtimer_add(c->fail_ev, &wait) != 0) {
		/* No timer (out of memory): do not wait. */
		ingest_tcp_conn_detach_jobs(c);
		ingest_tcp_conn_send_error(c);
	}
}

static void ingest_tcp_conn_nack(struct tcp_conn *c, const char *event_id,
				 const char *code, const char *detail)
{
	size_t len = 0;
	uint8_t *frame;

	log_debug("tcp=%s: nack event=%s %s", c->name,
		  event_id[0] ? event_id : "-", code);
	metrics_count_error(code);
	frame = codec_pb_frame_nack(event_id, code, false, detail, 0, &len);
	ingest_tcp_conn_send(c, frame, len);
}

static bool ingest_tcp_conn_can_read(struct tcp_conn *c)
{
	int max = config_current()->tcp_max_inflight;
	size_t n = c->owner->n_conns > 0 ? c->owner->n_conns : 1;
	size_t limit = (size_t)(max > 0 ? max : 1);
	size_t share = INGEST_TCP_TOTAL_EVENTS / n;
	size_t bytes = INGEST_TCP_TOTAL_BYTES / n;
	size_t frame = (size_t)config_current()->max_frame_bytes + 4;

	if (c->paused)
		return false;
	if (share < 1)
		share = 1;
	if (limit > share)
		limit = share;
	if (bytes < frame)
		bytes = frame;
	return c->inflight < limit && c->inflight_bytes < bytes &&
	       evbuffer_get_length(bufferevent_get_output(c->bev)) <
		       INGEST_TCP_OUT_MAX;
}

/* Runs the read callback on a later pass of the loop: for frames already
 * buffered that no new input would announce. Deferred so that an answer
 * callback never re-enters the frame loop. */
static void ingest_tcp_conn_read_later(struct tcp_conn *c)
{
	bufferevent_trigger(c->bev, EV_READ,
			    BEV_TRIG_IGNORE_WATERMARKS |
				    BEV_TRIG_DEFER_CALLBACKS);
}

static void ingest_tcp_conn_resume(struct tcp_conn *c)
{
	if (c->state != TCP_CONN_BLOCKED || !ingest_tcp_conn_can_read(c))
		return;
	ingest_tcp_conn_set_state(c, TCP_CONN_READING);
	ingest_tcp_conn_read_later(c);
}

static void ingest_tcp_on_unpause(evutil_socket_t fd, short what, void *arg)
{
	struct tcp_conn *c = arg;

	c->paused = false;
	ingest_tcp_conn_resume(c);
}

/* The tarpit (INGEST_TCP_TARPIT_RUN): stop reading for a while. Without
 * a timer (out of memory) the connection is just not paused. */
static void ingest_tcp_conn_pause(struct tcp_conn *c)
{
	struct timeval tv = {0, INGEST_TCP_TARPIT_MS * 1000};

	c->refused_run = 0;
	if (c->pause_ev == NULL)
		c->pause_ev = evtimer_new(c->owner->base,
					  ingest_tcp_on_unpause, c);
	if (c->pause_ev == NULL || evtimer_add(c->pause_ev, &tv) != 0)
		return;
	log_debug("tcp=%s: every answer of the last %d was rate_limited; "
		  "not read for %d ms", c->name, INGEST_TCP_TARPIT_RUN,
		  INGEST_TCP_TARPIT_MS);
	metrics_count_tcp_pause();
	c->paused = true;
}

/* --- events ------------------------------------------------------------ */

static void ingest_tcp_on_answer(const struct pipeline_answer *ans, void *arg)
{
	struct tcp_job *job = arg;
	struct tcp_conn *c = job->conn;
	const char *event_id = ans->event_id ? ans->event_id : "";
	uint8_t *frame;
	size_t len = 0;

	if (job->prev != NULL)
		job->prev->next = job->next;
	else
		c->jobs = job->next;
	if (job->next != NULL)
		job->next->prev = job->prev;
	c->inflight--;
	c->inflight_bytes -= job->bytes;
	free(job);

	if (!ans->durable && ans->error_code != NULL &&
	    strcmp(ans->error_code, "rate_limited") == 0)
		c->refused_run++;
	else
		c->refused_run = 0;
	if (c->refused_run >= INGEST_TCP_TARPIT_RUN)
		ingest_tcp_conn_pause(c);
	if (ans->durable) {
		frame = codec_pb_frame_ack(event_id, ans->outcome,
					   ans->incident_id, ans->priority,
					   &len);
	} else {
		const char *code = ans->error_code ? ans->error_code
						   : "unavailable";
		bool retry = strcmp(code, "unavailable") == 0 ||
			     strcmp(code, "rate_limited") == 0;
		uint32_t after = ans->retry_after_s > 0
					 ? (uint32_t)ans->retry_after_s * 1000u
					 : 0;

		log_debug("tcp=%s: nack event=%s %s", c->name, event_id, code);
		metrics_count_error(code);
		frame = codec_pb_frame_nack(event_id, code, retry,
					    ans->detail ? ans->detail : "",
					    after, &len);
	}
	if (!ingest_tcp_conn_send(c, frame, len))
		return;
	/* DRAINING closes from ingest_tcp_conn_written once this is
	 * written. */
	if (c->state == TCP_CONN_FAILING && c->inflight == 0)
		ingest_tcp_conn_send_error(c);
	else
		ingest_tcp_conn_resume(c);
}

static void ingest_tcp_conn_submit(struct tcp_conn *c, struct evt *ev,
				   size_t bytes)
{
	struct tcp_job *job = calloc(1, sizeof(*job));
	struct pipeline_job *pjob;
	size_t len = 0;

	if (job == NULL) {
		uint8_t *frame = codec_pb_frame_nack(
			ev->event_id, "unavailable", true, "out of memory",
			(uint32_t)config_current()->retry_after_s * 1000u, &len);

		metrics_count_error("unavailable");
		evt_free(ev);
		ingest_tcp_conn_send(c, frame, len);
		return;
	}
	job->conn = c;
	job->bytes = bytes;
	job->next = c->jobs;
	if (c->jobs != NULL)
		c->jobs->prev = job;
	c->jobs = job;
	c->inflight++;
	c->inflight_bytes += bytes;
	/* The answer may come before pipeline_submit returns; then the job
	 * is already freed and NULL comes back. */
	pjob = pipeline_submit(c->owner->pipeline, ev, ingest_tcp_on_answer,
			       job);
	if (pjob != NULL)
		job->pjob = pjob;
}

static const char *ingest_tcp_auth_detail(enum auth_sig_result r)
{
	switch (r) {
	case AUTH_SIG_MISSING:
		return "the event is not signed (v1 is empty)";
	case AUTH_SIG_MALFORMED:
		return "v1 must be 64 hex digits";
	case AUTH_SIG_EXPIRED:
		return "t is outside the replay window";
	default:
		return "no configured secret gives this signature";
	}
}

/* One signed event: signature first (no unauthenticated bytes reach the
 * event decoder; a refused event's id alone is read, to name it in its
 * Nack: pipelined answers are matched by event_id), then decode and
 * validate, then the source's own secret. */
static void ingest_tcp_conn_event(struct tcp_conn *c, int64_t t,
				  const char *v1, const uint8_t *bytes,
				  size_t len)
{
	const struct config *cfg = config_current();
	struct evt_limits limits = config_evt_limits(cfg);
	struct evt_error err = {.code = "malformed_protobuf"};
	enum auth_sig_result r;
	size_t idx = 0;
	struct evt *ev;

	r = auth_verify(cfg, t, v1, bytes, len, time(NULL), &idx);
	if (r != AUTH_SIG_OK) {
		char *id = codec_pb_peek_event_id(bytes, len,
						  limits.max_id_len);

		log_info("tcp=%s: event=%s refused: %s", c->name,
			 id ? id : "-", auth_sig_code(r));
		ingest_tcp_conn_nack(c, id ? id : "", auth_sig_code(r),
				     ingest_tcp_auth_detail(r));
		free(id);
		return;
	}
	c->signed_once = true;
	ev = codec_pb_decode_event(bytes, len, &limits, &err);
	if (ev == NULL) {
		char *id = codec_pb_peek_event_id(bytes, len,
						  limits.max_id_len);

		ingest_tcp_conn_nack(c, id ? id : "", err.code, err.detail);
		free(id);
		return;
	}
	if (!auth_source_allowed(cfg, idx, ev->source_id)) {
		log_info("tcp=%s: event=%s refused: signed with another "
			 "source's secret", c->name, ev->event_id);
		ingest_tcp_conn_nack(c, ev->event_id, "signature_invalid",
				     "the signature is not made with the "
				     "secret of source.id");
		evt_free(ev);
		return;
	}
	ev->received_at_ms = tzclock_now_ms();
	ingest_tcp_conn_submit(c, ev, len);
}

/* Takes one whole frame off the input. false when there is none (more
 * bytes needed) or the connection stopped reading. */
static bool ingest_tcp_conn_next_frame(struct tcp_conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	int max = config_current()->max_frame_bytes;
	struct evt_error err = {.code = "malformed_frame"};
	uint8_t hdr[4], *body, *event = NULL;
	size_t n, event_len = 0;
	char *v1 = NULL;
	int64_t t = 0;

	if (evbuffer_copyout(in, hdr, sizeof(hdr)) < (ev_ssize_t)sizeof(hdr))
		return false;
	n = (size_t)hdr[0] << 24 | (size_t)hdr[1] << 16 | (size_t)hdr[2] << 8 |
	    hdr[3];
	if (n > (size_t)max) {
		ingest_tcp_conn_fail(c, "frame_too_large",
				     "a frame is longer than max_frame_bytes");
		return false;
	}
	if (n == 0) {
		/* An empty Frame carries no event (docs/api.md). */
		ingest_tcp_conn_fail(c, "malformed_frame",
				     "the frame is empty");
		return false;
	}
	if (evbuffer_get_length(in) < n + 4) {
		/* The whole frame must fit under the read watermark. */
		if (n + 4 > c->read_high) {
			c->read_high = n + 4 + INGEST_TCP_READ_SLACK;
			bufferevent_setwatermark(c->bev, EV_READ, 0,
						 c->read_high);
		}
		return false;
	}
	body = evbuffer_pullup(in, (ev_ssize_t)(n + 4));
	if (body == NULL) {
		ingest_tcp_conn_close(c);
		return false;
	}
	if (codec_pb_decode_signed_event(body + 4, n, &t, &v1, &event,
					 &event_len, &err))
		ingest_tcp_conn_event(c, t, v1, event, event_len);
	else
		ingest_tcp_conn_fail(c, err.code, err.detail);
	free(v1);
	free(event);
	if (c->state != TCP_CONN_CLOSED)
		evbuffer_drain(in, n + 4);
	c->frames++;
	return c->state == TCP_CONN_READING;
}

/* After a read: the hello deadline runs from the connect until the first
 * signed event; after that a frame deadline runs while part of a frame
 * is buffered, from when the first part of it came: a byte now and then
 * does not move it, a frame taken off the input (progress) does, so that
 * a connection streaming frames, whose input nearly always ends in part
 * of the next one, is never timed out. */
static void ingest_tcp_conn_arm_deadline(struct tcp_conn *c, bool progress)
{
	struct timeval frame = {config_current()->tcp_frame_timeout_s, 0};
	bool partial = evbuffer_get_length(bufferevent_get_input(c->bev)) > 0;

	if (!c->signed_once)
		return; /* the hello deadline, armed at the connect */
	if (partial && (progress || !c->frame_timed)) {
		c->frame_timed = true;
		event_add(c->deadline_ev, &frame);
	} else if (!partial && (c->frame_timed ||
				evtimer_pending(c->deadline_ev, NULL))) {
		c->frame_timed = false;
		event_del(c->deadline_ev);
	}
}

static void ingest_tcp_on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct tcp_conn *c = arg;

	(void)fd;
	(void)what;
	c->frame_timed = false;
	/* Blocked or draining: what waits is our doing, not the peer's. */
	if (c->state != TCP_CONN_READING)
		return;
	if (!c->signed_once)
		ingest_tcp_conn_fail(c, "timeout", "no correctly signed event "
				     "within tcp_first_event_timeout_s of "
				     "connecting");
	else if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
		ingest_tcp_conn_fail(c, "timeout", "a frame did not arrive "
				     "whole within tcp_frame_timeout_s");
}

static void ingest_tcp_on_read(struct bufferevent *bev, void *arg)
{
	struct tcp_conn *c = arg;
	int budget = INGEST_TCP_FRAME_BUDGET;
	uint64_t frames = c->frames;
	bool later = false;  /* frames left for the next pass */

	if (c->state == TCP_CONN_LINGER) {
		struct evbuffer *in = bufferevent_get_input(bev);

		c->discarded += evbuffer_get_length(in);
		evbuffer_drain(in, evbuffer_get_length(in));
		if (c->discarded > INGEST_TCP_LINGER_MAX)
			ingest_tcp_conn_close(c);
		return;
	}
	while (c->state == TCP_CONN_READING) {
		if (!ingest_tcp_conn_can_read(c)) {
			ingest_tcp_conn_set_state(c, TCP_CONN_BLOCKED);
			break;
		}
		if (budget-- == 0) {
			ingest_tcp_conn_read_later(c);
			later = true;
			break;
		}
		if (!ingest_tcp_conn_next_frame(c))
			break;
	}
	/* Every whole frame is taken; after EOF no more will come. */
	if (c->state == TCP_CONN_READING && c->peer_eof && !later)
		ingest_tcp_conn_drain(c);
	else if (c->state == TCP_CONN_READING || c->state == TCP_CONN_BLOCKED)
		ingest_tcp_conn_arm_deadline(c, c->frames != frames);
}

/* The output is fully written. */
static void ingest_tcp_conn_written(struct tcp_conn *c)
{
	switch (c->state) {
	case TCP_CONN_BLOCKED:
		ingest_tcp_conn_resume(c);
		break;
	case TCP_CONN_DRAINING:
		if (c->inflight == 0)
			ingest_tcp_conn_finish(c);
		break;
	case TCP_CONN_CLOSING:
		ingest_tcp_conn_finish(c);
		break;
	default:
		break;
	}
}

/* libevent wrote what ingest_tcp_conn_flush left (low watermark 0). */
static void ingest_tcp_on_write(struct bufferevent *bev, void *arg)
{
	struct tcp_conn *c = arg;

	bufferevent_disable(bev, EV_WRITE);
	ingest_tcp_conn_written(c);
}

/* Writes the answers queued this loop turn. */
static void ingest_tcp_conn_flush(struct tcp_conn *c)
{
	if (c->state == TCP_CONN_CLOSED)
		return;
	switch (bevout_flush(c->bev)) {
	case BEVOUT_DONE:
		ingest_tcp_conn_written(c);
		break;
	case BEVOUT_PENDING:
		break;
	case BEVOUT_ERROR:
		log_debug("tcp=%s: %s", c->name, strerror(errno));
		ingest_tcp_conn_close(c);
		break;
	}
}

static void ingest_tcp_on_flush(evutil_socket_t fd, short what, void *arg)
{
	struct ingest_tcp *t = arg;

	while (t->flushq != NULL) {
		struct tcp_conn *c = t->flushq;

		t->flushq = c->flush_next;
		c->flush_next = NULL;
		c->flush_listed = false;
		ingest_tcp_conn_flush(c);
	}
}

static void ingest_tcp_on_event(struct bufferevent *bev, short what,
				void *arg)
{
	struct tcp_conn *c = arg;

	if (what & BEV_EVENT_TIMEOUT) {
		log_debug("tcp=%s: timed out %s", c->name,
			  (what & BEV_EVENT_WRITING) ? "writing" : "lingering");
		ingest_tcp_conn_close(c);
	} else if (what & BEV_EVENT_ERROR) {
		log_debug("tcp=%s: %s", c->name,
			  evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		ingest_tcp_conn_close(c);
	} else if (what & BEV_EVENT_EOF) {
		c->peer_eof = true;
		if (c->state == TCP_CONN_LINGER)
			ingest_tcp_conn_close(c);
		else if (c->state == TCP_CONN_READING)
			ingest_tcp_on_read(bev, c); /* frames left, then drain */
		else if (c->state == TCP_CONN_DRAINING && c->inflight == 0 &&
			 ingest_tcp_conn_output_empty(c))
			ingest_tcp_conn_finish(c);
	}
}

/* --- listener ---------------------------------------------------------- */

static struct tcp_conn *ingest_tcp_conn_new(struct ingest_tcp *t,
					    evutil_socket_t fd,
					    const struct sockaddr *sa)
{
	struct timeval wr = {INGEST_TCP_WRITE_TIMEOUT_S, 0};
	struct tcp_conn *c = calloc(1, sizeof(*c));
	int one = 1;

	if (c == NULL)
		return NULL;
	c->bev = bufferevent_socket_new(t->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL) {
		free(c);
		return NULL;
	}
	c->owner = t;
	c->deadline_ev = evtimer_new(t->base, ingest_tcp_on_deadline, c);
	if (c->deadline_ev == NULL) {
		bufferevent_free(c->bev);
		free(c);
		return NULL;
	}
	netaddr_format(sa, c->name, sizeof(c->name));
	/* Answers are small and latency matters more than packet count. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	c->read_high =
		(size_t)config_current()->max_frame_bytes + 4 +
		INGEST_TCP_READ_SLACK;
	bufferevent_setwatermark(c->bev, EV_READ, 0, c->read_high);
	bufferevent_set_timeouts(c->bev, NULL, &wr);
	bufferevent_setcb(c->bev, ingest_tcp_on_read, ingest_tcp_on_write,
			  ingest_tcp_on_event, c);
	/* Enabled only while the socket has not taken an answer (see the
	 * top of this file). */
	bufferevent_disable(c->bev, EV_WRITE);
	c->next = t->conns;
	if (t->conns != NULL)
		t->conns->prev = c;
	t->conns = c;
	t->n_conns++;
	return c;
}

static void ingest_tcp_on_accept(struct evconnlistener *listener,
				 evutil_socket_t fd, struct sockaddr *sa,
				 int socklen, void *arg)
{
	struct ingest_tcp *t = arg;
	int max = config_current()->max_connections;
	struct tcp_conn *c;

	c = ingest_tcp_conn_new(t, fd, sa);
	if (c == NULL) {
		log_error("tcp: out of memory accepting a connection");
		evutil_closesocket(fd);
		return;
	}
	if (t->n_conns > (size_t)(max > 0 ? max : 0)) {
		c->no_linger = true;
		ingest_tcp_conn_fail(c, "too_many_connections",
				     "the server has too many device "
				     "connections; try again later");
		return;
	}
	log_debug("tcp=%s: connected", c->name);
	ingest_tcp_conn_set_state(c, TCP_CONN_READING);
	{
		struct timeval hello = {
			config_current()->tcp_first_event_timeout_s, 0};

		event_add(c->deadline_ev, &hello);
	}
}

static void ingest_tcp_conn_free(struct tcp_conn *c)
{
	if (c->deadline_ev != NULL)
		event_free(c->deadline_ev);
	if (c->pause_ev != NULL)
		event_free(c->pause_ev);
	if (c->fail_ev != NULL)
		event_free(c->fail_ev);
	free(c->error_frame);
	bufferevent_free(c->bev);
	free(c);
}

static void ingest_tcp_on_reap(evutil_socket_t fd, short what, void *arg)
{
	struct ingest_tcp *t = arg;

	while (t->dead != NULL) {
		struct tcp_conn *c = t->dead;

		t->dead = c->next;
		ingest_tcp_conn_free(c);
	}
}

/* --- public ------------------------------------------------------------ */

struct ingest_tcp *ingest_tcp_new(struct event_base *base,
				  struct pipeline *pipeline)
{
	struct ingest_tcp *t = calloc(1, sizeof(*t));

	if (t == NULL)
		return NULL;
	t->base = base;
	t->pipeline = pipeline;
	t->reaper = event_new(base, -1, 0, ingest_tcp_on_reap, t);
	t->flush = event_new(base, -1, 0, ingest_tcp_on_flush, t);
	if (t->reaper == NULL || t->flush == NULL) {
		ingest_tcp_free(t);
		return NULL;
	}
	return t;
}

bool ingest_tcp_listen(struct ingest_tcp *t, const char *hostport)
{
	struct sockaddr_storage ss;
	char *host = NULL;
	int port = 0, len = 0;

	if (t->listener != NULL) {
		log_error("tcp=%s: already listening", hostport);
		return false;
	}
	if (!config_split_hostport(hostport, &host, &port) ||
	    !netaddr_parse(host, port, &ss, &len)) {
		log_error("tcp=%s: not a numeric host:port", hostport);
		goto fail;
	}
	t->listener = evconnlistener_new_bind(
		t->base, ingest_tcp_on_accept, t,
		LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
		NETADDR_LISTEN_BACKLOG, (struct sockaddr *)&ss, len);
	if (t->listener == NULL) {
		log_error("tcp=%s: cannot listen: %s", hostport,
			  evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		goto fail;
	}
	t->guard = listen_guard_new(t->base, t->listener, "tcp");
	if (t->guard == NULL) {
		log_error("tcp=%s: out of memory", hostport);
		evconnlistener_free(t->listener);
		t->listener = NULL;
		goto fail;
	}
	t->accepting = true;
	log_info("tcp=%s: listening for devices", hostport);
	free(host);
	return true;
fail:
	free(host);
	return false;
}

void ingest_tcp_stop_accepting(struct ingest_tcp *t)
{
	struct tcp_conn *c, *next;

	t->accepting = false;
	/* Closed rather than disabled: a device that connects now is refused
	 * at once and tries another instance, instead of waiting in the
	 * kernel's backlog for an accept that never comes. */
	listen_guard_free(t->guard);
	t->guard = NULL;
	if (t->listener != NULL) {
		evconnlistener_free(t->listener);
		t->listener = NULL;
	}
	/* Frames not read yet were never accepted; the devices send them
	 * again elsewhere. What is in flight is answered. */
	for (c = t->conns; c != NULL; c = next) {
		next = c->next;
		if (c->state == TCP_CONN_READING || c->state == TCP_CONN_BLOCKED)
			ingest_tcp_conn_drain(c);
	}
}

size_t ingest_tcp_connections(const struct ingest_tcp *t)
{
	size_t n = 0;

	for (const struct tcp_conn *c = t->conns; c != NULL; c = c->next)
		if (c->state != TCP_CONN_LINGER)
			n++;
	return n;
}

static void ingest_tcp_free_list(struct tcp_conn *c)
{
	while (c != NULL) {
		struct tcp_conn *next = c->next;

		ingest_tcp_conn_detach_jobs(c);
		ingest_tcp_conn_free(c);
		c = next;
	}
}

/* Must run before pipeline_free: pending jobs are detached. */
void ingest_tcp_free(struct ingest_tcp *t)
{
	if (t == NULL)
		return;
	listen_guard_free(t->guard);
	if (t->listener != NULL)
		evconnlistener_free(t->listener);
	ingest_tcp_free_list(t->conns);
	ingest_tcp_free_list(t->dead);
	if (t->reaper != NULL)
		event_free(t->reaper);
	if (t->flush != NULL)
		event_free(t->flush);
	free(t);
}
