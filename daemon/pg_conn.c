/* pg_conn: one non-blocking libpq connection driven by the event loop.
 *
 * The connection is a small state machine (enum pg_conn_state, changed only
 * in pg_conn_set_state). One io event watches PQsocket() for what libpq
 * wants next, one timer carries whichever deadline the state has (connect
 * deadline, query deadline or reconnect backoff), and one "kick" event runs
 * work on the next loop turn so that no user callback ever runs inside
 * pg_conn_query().
 *
 * Every failure (connect failed, connection lost, deadline passed) goes
 * through pg_conn_fail(): the connection is closed, the query in flight and
 * every queued query are answered with res == NULL exactly once, and a
 * reconnect is scheduled with exponential backoff and jitter.
 *
 * A query's deadline counts from the moment it is sent: queries run one at
 * a time, and a stuck connection is detected by the query in flight. */
#include "pg_conn.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "log.h"

#define PG_CONN_CONNECT_TIMEOUT_MS 5000
#define PG_CONN_BACKOFF_MIN_MS 100
#define PG_CONN_BACKOFF_MAX_MS 5000

enum pg_conn_state {
	/* No connection. A reconnect is scheduled on the timer, unless the
	 * connection was never started. Queries are refused. */
	PG_DISCONNECTED = 0,
	/* PQconnectStart done, PQconnectPoll steps driven by the socket; the
	 * timer holds the connect deadline. Queries are refused. */
	PG_CONNECTING,
	/* Connected, nothing in flight. The socket is watched for reading
	 * (notifications, or the server closing). */
	PG_IDLE,
	/* A query was sent but PQflush has not pushed all of it yet: waiting
	 * for the socket to be writable (or readable). Timer = query
	 * deadline. */
	PG_FLUSHING,
	/* The query is fully sent; reading its results. Timer = query
	 * deadline. */
	PG_BUSY,
	/* pg_conn_free was called while one of our callbacks was running:
	 * everything is answered and closed, the memory goes when the
	 * outermost callback returns. */
	PG_STOPPED,
};

struct pg_query {
	struct pg_query *next;
	char *name;       /* prepared statement, NULL: unnamed (parsed each time) */
	bool preparing;   /* in flight as PQsendPrepare, the execution follows */
	char *sql;
	int nparams;
	char **values;
	int *lengths;     /* of binary values; NULL: all text */
	int *formats;     /* 1: binary; NULL: all text */
	int timeout_ms;
	pg_result_cb cb;
	void *arg;
};

struct pg_conn {
	struct event_base *base;
	char *conninfo;
	char *name;
	enum pg_conn_state state;
	PGconn *pg;

	struct event *ev_io;  /* on PQsocket(), re-created when it changes */
	int io_fd;
	short io_what;
	struct event *ev_timer;
	struct event *ev_kick;

	struct pg_query *inflight;
	struct pg_query *head, *tail; /* queued, not yet sent */
	size_t n_queued;
	PGresult *last;               /* last result of the query in flight */

	int backoff_ms;
	bool started;
	int depth;                    /* nesting of our own event callbacks */

	/* Names of the statements prepared on this connection (a new
	 * connection starts with none). */
	char **prepared;
	size_t n_prepared;

	pg_connect_cb on_connect;
	void *on_connect_arg;
	pg_notify_cb on_notify;
	void *on_notify_arg;

	char errbuf[256];
};

static void pg_conn_on_io(evutil_socket_t fd, short what, void *arg);
static void pg_conn_on_timer(evutil_socket_t fd, short what, void *arg);
static void pg_conn_on_kick(evutil_socket_t fd, short what, void *arg);
static void pg_conn_connect(struct pg_conn *conn);
static void pg_conn_fail(struct pg_conn *conn, const char *why);
static void pg_conn_send_next(struct pg_conn *conn);

static const char *pg_conn_state_name(enum pg_conn_state s)
{
	switch (s) {
	case PG_DISCONNECTED: return "disconnected";
	case PG_CONNECTING: return "connecting";
	case PG_IDLE: return "idle";
	case PG_FLUSHING: return "flushing";
	case PG_BUSY: return "busy";
	case PG_STOPPED: return "stopped";
	}
	return "?";
}

static void pg_conn_set_state(struct pg_conn *conn, enum pg_conn_state s)
{
	if (conn->state == s)
		return;
	log_debug("pg=%s: %s -> %s", conn->name,
		  pg_conn_state_name(conn->state), pg_conn_state_name(s));
	conn->state = s;
}

/* The first line of a libpq message, without its trailing newline. */
static const char *pg_conn_oneline(struct pg_conn *conn, const char *msg)
{
	size_t n;

	if (!msg || !*msg)
		msg = "unknown error";
	n = strcspn(msg, "\n");
	if (n >= sizeof(conn->errbuf))
		n = sizeof(conn->errbuf) - 1;
	memcpy(conn->errbuf, msg, n);
	conn->errbuf[n] = '\0';
	return conn->errbuf;
}

static uint32_t pg_conn_random(void)
{
	static uint32_t x;
	struct timespec ts;

	if (x == 0) {
		clock_gettime(CLOCK_MONOTONIC, &ts);
		x = (uint32_t)ts.tv_nsec ^ ((uint32_t)getpid() << 16) ^ 0x9e3779b9u;
		if (x == 0)
			x = 1;
	}
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return x;
}

static void pg_conn_arm_timer(struct pg_conn *conn, int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	evtimer_add(conn->ev_timer, &tv);
}

/* Watches PQsocket() for `what`. The socket is read again every time: libpq
 * may open a new one while connecting (another host, SSL retry). */
static bool pg_conn_watch(struct pg_conn *conn, short what)
{
	int fd = PQsocket(conn->pg);

	if (fd < 0) {
		pg_conn_fail(conn, "no socket");
		return false;
	}
	if (conn->ev_io && (conn->io_fd != fd || conn->io_what != what)) {
		event_free(conn->ev_io);
		conn->ev_io = NULL;
	}
	if (!conn->ev_io) {
		conn->ev_io = event_new(conn->base, fd, what | EV_PERSIST,
					pg_conn_on_io, conn);
		if (!conn->ev_io) {
			pg_conn_fail(conn, "out of memory (event)");
			return false;
		}
		conn->io_fd = fd;
		conn->io_what = what;
		event_add(conn->ev_io, NULL);
	}
	return true;
}

static void pg_conn_unwatch(struct pg_conn *conn)
{
	if (conn->ev_io) {
		event_free(conn->ev_io);
		conn->ev_io = NULL;
	}
}

static void pg_conn_query_free(struct pg_query *q)
{
	if (!q)
		return;
	for (int i = 0; i < q->nparams; i++)
		free(q->values[i]);
	free(q->values);
	free(q->lengths);
	free(q->formats);
	free(q->sql);
	free(q->name);
	free(q);
}

/* Detaches q before its callback runs, so that nothing the callback does
 * can see it again. */
static void pg_conn_answer(struct pg_conn *conn, struct pg_query *q,
			   PGresult *res, const char *errmsg)
{
	conn->depth++;
	q->cb(res, errmsg, q->arg);
	conn->depth--;
	pg_conn_query_free(q);
}

/* Answers the query in flight and every queued one with NULL. */
static void pg_conn_answer_all(struct pg_conn *conn, const char *why)
{
	char msg[sizeof(conn->errbuf)];
	struct pg_query *q;

	/* errbuf may be rewritten by the callbacks (through other calls). */
	snprintf(msg, sizeof(msg), "%s", why);
	if (conn->last) {
		PQclear(conn->last);
		conn->last = NULL;
	}
	if ((q = conn->inflight)) {
		conn->inflight = NULL;
		pg_conn_answer(conn, q, NULL, msg);
	}
	while ((q = conn->head)) {
		conn->head = q->next;
		if (!conn->head)
			conn->tail = NULL;
		conn->n_queued--;
		pg_conn_answer(conn, q, NULL, msg);
	}
}

static bool pg_conn_is_prepared(const struct pg_conn *conn, const char *name)
{
	for (size_t i = 0; i < conn->n_prepared; i++)
		if (strcmp(conn->prepared[i], name) == 0)
			return true;
	return false;
}

/* Out of memory only costs a second PREPARE, which the server answers
 * with 42P05 (the name exists): taken as prepared (pg_conn_complete). */
static void pg_conn_remember_prepared(struct pg_conn *conn, const char *name)
{
	char **grown;
	char *copy;

	grown = realloc(conn->prepared,
			(conn->n_prepared + 1) * sizeof(*conn->prepared));
	if (!grown)
		return;
	conn->prepared = grown;
	if (!(copy = strdup(name)))
		return;
	conn->prepared[conn->n_prepared++] = copy;
}

static void pg_conn_forget_one(struct pg_conn *conn, const char *name)
{
	for (size_t i = 0; i < conn->n_prepared; i++) {
		if (strcmp(conn->prepared[i], name) == 0) {
			free(conn->prepared[i]);
			conn->prepared[i] = conn->prepared[--conn->n_prepared];
			return;
		}
	}
}

static void pg_conn_forget_prepared(struct pg_conn *conn)
{
	for (size_t i = 0; i < conn->n_prepared; i++)
		free(conn->prepared[i]);
	free(conn->prepared);
	conn->prepared = NULL;
	conn->n_prepared = 0;
}

static void pg_conn_close(struct pg_conn *conn)
{
	pg_conn_forget_prepared(conn);
	pg_conn_unwatch(conn);
	if (conn->ev_timer)
		evtimer_del(conn->ev_timer);
	if (conn->pg) {
		PQfinish(conn->pg);
		conn->pg = NULL;
	}
}

/* Arms the reconnect timer: the backoff (100 ms doubling to 5 s) plus up to
 * half of it again as jitter, so that many daemons do not come back in
 * step. Returns the delay. */
static int pg_conn_schedule_reconnect(struct pg_conn *conn)
{
	int base_ms = conn->backoff_ms;
	int delay = base_ms + (int)(pg_conn_random() % (uint32_t)(base_ms / 2 + 1));

	conn->backoff_ms = base_ms * 2 > PG_CONN_BACKOFF_MAX_MS
				   ? PG_CONN_BACKOFF_MAX_MS
				   : base_ms * 2;
	pg_conn_arm_timer(conn, delay);
	return delay;
}

/* The one error path: close, refuse new queries, answer every query with
 * NULL, reconnect later. */
static void pg_conn_fail(struct pg_conn *conn, const char *why)
{
	char msg[sizeof(conn->errbuf)];
	bool connecting = conn->state == PG_CONNECTING;
	int delay;

	if (conn->state == PG_STOPPED || conn->state == PG_DISCONNECTED)
		return;
	snprintf(msg, sizeof(msg), "%s", why);
	pg_conn_close(conn);
	pg_conn_set_state(conn, PG_DISCONNECTED);
	delay = pg_conn_schedule_reconnect(conn);
	if (connecting)
		log_warn("pg=%s: cannot connect: %s (retry in %d ms)",
			 conn->name, msg, delay);
	else
		log_warn("pg=%s: connection lost: %s (reconnect in %d ms)",
			 conn->name, msg, delay);
	pg_conn_answer_all(conn, msg);
}

static void pg_conn_deliver_notifies(struct pg_conn *conn)
{
	PGnotify *n;

	while (conn->state != PG_STOPPED && conn->pg &&
	       (n = PQnotifies(conn->pg))) {
		if (conn->on_notify) {
			conn->depth++;
			conn->on_notify(n->relname, n->extra ? n->extra : "",
					conn->on_notify_arg);
			conn->depth--;
		}
		PQfreemem(n);
	}
}

static void pg_conn_connected(struct pg_conn *conn)
{
	evtimer_del(conn->ev_timer);
	if (PQsetnonblocking(conn->pg, 1) != 0) {
		pg_conn_fail(conn, pg_conn_oneline(conn, PQerrorMessage(conn->pg)));
		return;
	}
	if (!pg_conn_watch(conn, EV_READ))
		return;
	conn->backoff_ms = PG_CONN_BACKOFF_MIN_MS;
	pg_conn_set_state(conn, PG_IDLE);
	log_info("pg=%s: connected to %s:%s", conn->name, PQhost(conn->pg),
		 PQport(conn->pg));
	if (conn->on_connect) {
		conn->depth++;
		conn->on_connect(conn, conn->on_connect_arg);
		conn->depth--;
	}
	if (conn->state == PG_IDLE)
		pg_conn_send_next(conn);
}

/* One PQconnectPoll step, then watch what it asks for. The event is made
 * anew after every step: libpq may have closed the socket and opened another
 * (next host, SSL/GSS fallback) that can even have the same number, which
 * epoll would not know about. */
static void pg_conn_connect_step(struct pg_conn *conn)
{
	pg_conn_unwatch(conn);
	switch (PQconnectPoll(conn->pg)) {
	case PGRES_POLLING_READING:
		pg_conn_watch(conn, EV_READ);
		break;
	case PGRES_POLLING_WRITING:
		pg_conn_watch(conn, EV_WRITE);
		break;
	case PGRES_POLLING_OK:
		pg_conn_connected(conn);
		break;
	case PGRES_POLLING_FAILED:
	default:
		pg_conn_fail(conn,
			     pg_conn_oneline(conn, PQerrorMessage(conn->pg)));
		break;
	}
}

/* Server notices (and the FATAL a server sends before it closes an idle
 * connection) go to our log instead of libpq's raw stderr. */
static void pg_conn_on_notice(void *arg, const char *msg)
{
	struct pg_conn *conn = arg;
	int n = (int)strcspn(msg, "\n");

	if (strncmp(msg, "NOTICE", 6) == 0 || strncmp(msg, "INFO", 4) == 0 ||
	    strncmp(msg, "DEBUG", 5) == 0 || strncmp(msg, "LOG", 3) == 0)
		log_info("pg=%s: server says: %.*s", conn->name, n, msg);
	else
		log_warn("pg=%s: server says: %.*s", conn->name, n, msg);
}

static void pg_conn_connect(struct pg_conn *conn)
{
	conn->pg = PQconnectStart(conn->conninfo);
	if (!conn->pg) {
		pg_conn_set_state(conn, PG_CONNECTING);
		pg_conn_fail(conn, "out of memory (PQconnectStart)");
		return;
	}
	PQsetNoticeProcessor(conn->pg, pg_conn_on_notice, conn);
	pg_conn_set_state(conn, PG_CONNECTING);
	if (PQstatus(conn->pg) == CONNECTION_BAD) {
		pg_conn_fail(conn,
			     pg_conn_oneline(conn, PQerrorMessage(conn->pg)));
		return;
	}
	pg_conn_arm_timer(conn, PG_CONN_CONNECT_TIMEOUT_MS);
	/* As if PQconnectPoll had answered PGRES_POLLING_WRITING. */
	pg_conn_watch(conn, EV_WRITE);
}

/* PQflush until everything is sent: 0 -> reading results, 1 -> wait for
 * the socket. */
static void pg_conn_flush(struct pg_conn *conn)
{
	switch (PQflush(conn->pg)) {
	case 0:
		pg_conn_set_state(conn, PG_BUSY);
		pg_conn_watch(conn, EV_READ);
		break;
	case 1:
		pg_conn_set_state(conn, PG_FLUSHING);
		pg_conn_watch(conn, EV_READ | EV_WRITE);
		break;
	default:
		pg_conn_fail(conn,
			     pg_conn_oneline(conn, PQerrorMessage(conn->pg)));
		break;
	}
}

static bool pg_conn_sqlstate_is(const PGresult *res, const char *code)
{
	const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

	return state && strcmp(state, code) == 0;
}

/* A named statement is prepared first, once per connection: its parse
 * and plan are then not paid again for every execution. */
static int pg_conn_send(struct pg_conn *conn, struct pg_query *q)
{
	const char *const *values = (const char *const *)q->values;

	if (!q->name)
		return PQsendQueryParams(conn->pg, q->sql, q->nparams, NULL,
					 values, NULL, NULL, 0);
	if (!pg_conn_is_prepared(conn, q->name)) {
		q->preparing = true;
		return PQsendPrepare(conn->pg, q->name, q->sql, q->nparams,
				     NULL);
	}
	return PQsendQueryPrepared(conn->pg, q->name, q->nparams, values,
				   q->lengths, q->formats, 0);
}

static void pg_conn_send_next(struct pg_conn *conn)
{
	struct pg_query *q;

	while (conn->state == PG_IDLE && (q = conn->head)) {
		conn->head = q->next;
		if (!conn->head)
			conn->tail = NULL;
		conn->n_queued--;
		q->next = NULL;
		if (!pg_conn_send(conn, q)) {
			const char *why = pg_conn_oneline(
				conn, PQerrorMessage(conn->pg));

			if (PQstatus(conn->pg) == CONNECTION_BAD) {
				conn->inflight = q;
				pg_conn_fail(conn, why);
				return;
			}
			/* The connection is fine; only this query failed. */
			log_warn("pg=%s: cannot send query: %s", conn->name, why);
			pg_conn_answer(conn, q, NULL, why);
			continue;
		}
		conn->inflight = q;
		if (q->timeout_ms > 0)
			pg_conn_arm_timer(conn, q->timeout_ms);
		pg_conn_flush(conn);
	}
}

/* The query in flight has all its results: answer it with the last one. */
static void pg_conn_complete(struct pg_conn *conn)
{
	struct pg_query *q = conn->inflight;
	PGresult *res = conn->last;
	const char *errmsg = NULL;

	conn->inflight = NULL;
	conn->last = NULL;
	evtimer_del(conn->ev_timer);
	pg_conn_set_state(conn, PG_IDLE);
	if (q && q->preparing && res &&
	    (PQresultStatus(res) == PGRES_COMMAND_OK ||
	     pg_conn_sqlstate_is(res, "42P05"))) {
		/* Prepared: the execution goes out next, before anything
		 * queued after it. */
		q->preparing = false;
		pg_conn_remember_prepared(conn, q->name);
		PQclear(res);
		q->next = conn->head;
		conn->head = q;
		if (!conn->tail)
			conn->tail = q;
		conn->n_queued++;
		return;
	}
	if (!res) {
		errmsg = "no result";
	} else {
		ExecStatusType st = PQresultStatus(res);

		if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
			errmsg = pg_conn_oneline(conn,
						 PQresultErrorMessage(res));
		/* 26000: the statement is gone from the session (DEALLOCATE,
		 * DISCARD ALL of a pooler): prepared again on the next use. */
		if (q && q->name && pg_conn_sqlstate_is(res, "26000"))
			pg_conn_forget_one(conn, q->name);
	}
	if (q)
		pg_conn_answer(conn, q, res, errmsg);
	if (res)
		PQclear(res);
}

/* Collects the results that are complete without blocking. */
static void pg_conn_read_results(struct pg_conn *conn)
{
	while (conn->state == PG_BUSY && !PQisBusy(conn->pg)) {
		PGresult *r = PQgetResult(conn->pg);

		if (!r) {
			pg_conn_complete(conn);
			break;
		}
		if (conn->last)
			PQclear(conn->last);
		conn->last = r;
	}
}

static void pg_conn_enter(struct pg_conn *conn)
{
	conn->depth++;
}

/* Leaves one of our event callbacks; frees a conn whose pg_conn_free was
 * deferred once the outermost callback is done. Returns false if conn is
 * gone. */
static void pg_conn_destroy(struct pg_conn *conn);
static bool pg_conn_leave(struct pg_conn *conn)
{
	conn->depth--;
	if (conn->state == PG_STOPPED && conn->depth == 0) {
		pg_conn_destroy(conn);
		return false;
	}
	return true;
}

static void pg_conn_on_io(evutil_socket_t fd, short what, void *arg)
{
	struct pg_conn *conn = arg;

	pg_conn_enter(conn);
	switch (conn->state) {
	case PG_CONNECTING:
		pg_conn_connect_step(conn);
		break;
	case PG_IDLE:
	case PG_BUSY:
	case PG_FLUSHING:
		if (what & EV_READ) {
			if (!PQconsumeInput(conn->pg)) {
				pg_conn_fail(conn, pg_conn_oneline(
						   conn, PQerrorMessage(conn->pg)));
				break;
			}
			pg_conn_deliver_notifies(conn);
		}
		if (conn->state == PG_FLUSHING)
			pg_conn_flush(conn);
		if (conn->state == PG_BUSY) {
			pg_conn_read_results(conn);
			pg_conn_deliver_notifies(conn);
		}
		/* The server may have said goodbye in a result (shutdown). */
		if (conn->state != PG_DISCONNECTED &&
		    conn->state != PG_STOPPED && conn->pg &&
		    PQstatus(conn->pg) == CONNECTION_BAD)
			pg_conn_fail(conn, pg_conn_oneline(
						   conn, PQerrorMessage(conn->pg)));
		else if (conn->state == PG_IDLE)
			pg_conn_send_next(conn);
		break;
	default:
		break;
	}
	pg_conn_leave(conn);
}

static void pg_conn_on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct pg_conn *conn = arg;
	char why[64];

	pg_conn_enter(conn);
	switch (conn->state) {
	case PG_DISCONNECTED:
		pg_conn_connect(conn);
		break;
	case PG_CONNECTING:
		snprintf(why, sizeof(why), "connect timed out after %d ms",
			 PG_CONN_CONNECT_TIMEOUT_MS);
		pg_conn_fail(conn, why);
		break;
	case PG_FLUSHING:
	case PG_BUSY:
		snprintf(why, sizeof(why), "query timed out after %d ms",
			 conn->inflight ? conn->inflight->timeout_ms : 0);
		pg_conn_fail(conn, why);
		break;
	default:
		break;
	}
	pg_conn_leave(conn);
}

static void pg_conn_on_kick(evutil_socket_t fd, short what, void *arg)
{
	struct pg_conn *conn = arg;

	pg_conn_enter(conn);
	if (conn->state == PG_IDLE)
		pg_conn_send_next(conn);
	pg_conn_leave(conn);
}

struct pg_conn *pg_conn_new(struct event_base *base, const char *conninfo,
			    const char *name)
{
	struct pg_conn *conn = calloc(1, sizeof(*conn));

	if (!conn)
		return NULL;
	conn->base = base;
	conn->conninfo = strdup(conninfo ? conninfo : "");
	conn->name = strdup(name ? name : "pg");
	conn->ev_timer = evtimer_new(base, pg_conn_on_timer, conn);
	conn->ev_kick = event_new(base, -1, 0, pg_conn_on_kick, conn);
	conn->io_fd = -1;
	conn->backoff_ms = PG_CONN_BACKOFF_MIN_MS;
	conn->state = PG_DISCONNECTED;
	if (!conn->conninfo || !conn->name || !conn->ev_timer ||
	    !conn->ev_kick)
		goto fail;
	return conn;
fail:
	log_error("pg=%s: out of memory", name ? name : "pg");
	pg_conn_destroy(conn);
	return NULL;
}

void pg_conn_set_on_connect(struct pg_conn *conn, pg_connect_cb cb, void *arg)
{
	conn->on_connect = cb;
	conn->on_connect_arg = arg;
}

void pg_conn_set_on_notify(struct pg_conn *conn, pg_notify_cb cb, void *arg)
{
	conn->on_notify = cb;
	conn->on_notify_arg = arg;
}

void pg_conn_start(struct pg_conn *conn)
{
	if (conn->started || conn->state != PG_DISCONNECTED)
		return;
	conn->started = true;
	pg_conn_enter(conn);
	pg_conn_connect(conn);
	pg_conn_leave(conn);
}

bool pg_conn_ready(const struct pg_conn *conn)
{
	return conn && (conn->state == PG_IDLE || conn->state == PG_FLUSHING ||
			conn->state == PG_BUSY);
}

static bool pg_conn_enqueue(struct pg_conn *conn, const char *name,
			    const char *sql, int nparams,
			    const char *const *values, const int *lengths,
			    const int *formats, int timeout_ms,
			    pg_result_cb cb, void *arg)
{
	struct pg_query *q;

	if (!pg_conn_ready(conn) || !sql || !cb || nparams < 0)
		return false;
	q = calloc(1, sizeof(*q));
	if (!q)
		goto fail;
	q->sql = strdup(sql);
	if (!q->sql || (name && !(q->name = strdup(name))))
		goto fail;
	if (nparams > 0) {
		q->values = calloc((size_t)nparams, sizeof(*q->values));
		if (!q->values)
			goto fail;
		q->nparams = nparams;
		if (formats) {
			size_t sz = (size_t)nparams * sizeof(int);

			if (!(q->lengths = malloc(sz)) ||
			    !(q->formats = malloc(sz)))
				goto fail;
			memcpy(q->lengths, lengths, sz);
			memcpy(q->formats, formats, sz);
		}
		for (int i = 0; i < nparams; i++) {
			bool bin = formats && formats[i] == 1;

			if (!values[i])
				continue;
			if (bin && lengths[i] >= 0 &&
			    (q->values[i] = malloc((size_t)lengths[i] + 1)))
				memcpy(q->values[i], values[i],
				       (size_t)lengths[i]);
			else if (!bin)
				q->values[i] = strdup(values[i]);
			if (!q->values[i])
				goto fail;
		}
	}
	q->timeout_ms = timeout_ms;
	q->cb = cb;
	q->arg = arg;
	if (conn->tail)
		conn->tail->next = q;
	else
		conn->head = q;
	conn->tail = q;
	conn->n_queued++;
	if (conn->state == PG_IDLE)
		event_active(conn->ev_kick, EV_TIMEOUT, 0);
	return true;
fail:
	log_error("pg=%s: out of memory (query)", conn->name);
	pg_conn_query_free(q);
	return false;
}

bool pg_conn_query(struct pg_conn *conn, const char *sql, int nparams,
		   const char *const *values, int timeout_ms, pg_result_cb cb,
		   void *arg)
{
	return pg_conn_enqueue(conn, NULL, sql, nparams, values, NULL, NULL,
			       timeout_ms, cb, arg);
}

bool pg_conn_query_prepared(struct pg_conn *conn, const char *name,
			    const char *sql, int nparams,
			    const char *const *values, const int *lengths,
			    const int *formats, int timeout_ms,
			    pg_result_cb cb, void *arg)
{
	return name && pg_conn_enqueue(conn, name, sql, nparams, values,
				       lengths, formats, timeout_ms, cb, arg);
}

size_t pg_conn_pending(const struct pg_conn *conn)
{
	return conn->n_queued + (conn->inflight ? 1 : 0);
}

static void pg_conn_destroy(struct pg_conn *conn)
{
	pg_conn_close(conn);
	if (conn->last)
		PQclear(conn->last);
	if (conn->ev_timer)
		event_free(conn->ev_timer);
	if (conn->ev_kick)
		event_free(conn->ev_kick);
	free(conn->conninfo);
	free(conn->name);
	free(conn);
}

/* Closes the connection and answers every query with NULL. Called from
 * inside one of our callbacks, the memory is freed when that returns. */
void pg_conn_free(struct pg_conn *conn)
{
	if (!conn || conn->state == PG_STOPPED)
		return;
	pg_conn_close(conn);
	pg_conn_set_state(conn, PG_STOPPED);
	conn->on_connect = NULL;
	conn->on_notify = NULL;
	conn->depth++;
	pg_conn_answer_all(conn, "connection closed");
	conn->depth--;
	if (conn->depth == 0)
		pg_conn_destroy(conn);
}
