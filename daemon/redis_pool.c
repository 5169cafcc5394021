/* redis_pool: one async Redis connection (hiredis 0.14 + libevent adapter)
 * with reconnect, a connect deadline and a deadline per command.
 *
 * hiredis 0.14 has neither a connect timeout for the async API nor command
 * timeouts, so both are kept here:
 *
 * - Every command is a struct redis_req handed to hiredis as privdata.
 *   hiredis calls redis_pool_on_reply exactly once per accepted command:
 *   with the reply, or with NULL when the context goes away (redisAsyncFree
 *   answers every pending callback with NULL). That call frees the req.
 * - A req is "answered" once its user callback ran. Unanswered reqs sit in
 *   pool->pending in deadline order (one timeout for all, so append order is
 *   deadline order); one timer is armed for the earliest deadline.
 * - When a deadline passes the req is answered with NULL at once, every
 *   other pending req too, and the connection is reset on the next loop
 *   turn (never from inside a hiredis callback). Late replies find their
 *   req answered and are dropped.
 *
 * The context is freed only from our own events (reset, connect deadline,
 * redis_pool_free); hiredis frees it itself on I/O errors, after which only
 * the pointer is dropped (redis_pool_on_disconnect / on_connect failure). */
#include "redis_pool.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libevent.h>

#include "log.h"
#include "tzclock.h"

#define REDIS_POOL_BACKOFF_MIN_MS 100
#define REDIS_POOL_BACKOFF_MAX_MS 5000

/* Named REDIS_POOL_* because hiredis.h already defines REDIS_CONNECTED. */
enum redis_state {
	/* No context. The reconnect timer is armed (or start not called). */
	REDIS_POOL_DISCONNECTED = 0,
	/* Context created, TCP connect in progress; the connect deadline is
	 * armed. Commands are refused. */
	REDIS_POOL_CONNECTING,
	/* Connected: commands are sent. */
	REDIS_POOL_CONNECTED,
	/* The connection is considered broken (a command deadline passed):
	 * every pending command has been answered with NULL, the context is
	 * freed on the next loop turn by redis_pool_on_reset. Commands are
	 * refused. */
	REDIS_POOL_RESETTING,
	/* redis_pool_free is running: nothing is started again. */
	REDIS_POOL_CLOSING,
};

struct redis_req {
	TAILQ_ENTRY(redis_req) link; /* in pool->pending while unanswered */
	struct redis_pool *pool;
	redis_reply_cb cb;
	void *arg;
	int64_t deadline_ms;         /* monotonic */
	bool answered;               /* user callback has run */
};

TAILQ_HEAD(redis_req_list, redis_req);

struct redis_pool {
	struct event_base *base;
	char *host;
	int port;
	int timeout_ms;

	enum redis_state state;
	redisAsyncContext *ac;

	struct redis_req_list pending; /* unanswered, deadline order */
	size_t n_pending;

	struct event *reconnect_ev;    /* DISCONNECTED: next attempt */
	struct event *connect_ev;      /* CONNECTING: connect deadline */
	struct event *deadline_ev;     /* earliest command deadline */
	struct event *reset_ev;        /* RESETTING: free the context */
	struct event *flush_ev;        /* commands written at the turn's end */
	int backoff_ms;
	unsigned failures;             /* connect attempts failed in a row */
	uint32_t rand_state;

	redis_connect_cb on_connect;
	void *on_connect_arg;
};

static const char *redis_pool_state_name(enum redis_state s)
{
	switch (s) {
	case REDIS_POOL_DISCONNECTED: return "disconnected";
	case REDIS_POOL_CONNECTING: return "connecting";
	case REDIS_POOL_CONNECTED: return "connected";
	case REDIS_POOL_RESETTING: return "resetting";
	case REDIS_POOL_CLOSING: return "closing";
	}
	return "?";
}

static void redis_pool_set_state(struct redis_pool *pool, enum redis_state s)
{
	if (pool->state == s)
		return;
	log_debug("redis=%s:%d: %s -> %s", pool->host, pool->port,
		  redis_pool_state_name(pool->state), redis_pool_state_name(s));
	pool->state = s;
}

static void redis_pool_arm(struct event *ev, int64_t ms)
{
	struct timeval tv;

	if (ms < 0)
		ms = 0;
	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)((ms % 1000) * 1000);
	event_add(ev, &tv);
}

/* xorshift32: jitter only, no need for a good generator. */
static uint32_t redis_pool_rand(struct redis_pool *pool)
{
	uint32_t x = pool->rand_state;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	pool->rand_state = x;
	return x;
}

/* Answers req with reply (NULL: unavailable) unless it already was, and
 * takes it off the pending list. The req itself stays alive until hiredis
 * hands it back to redis_pool_on_reply. */
static void redis_pool_answer(struct redis_pool *pool, struct redis_req *req,
			      redisReply *reply)
{
	if (req->answered)
		return;
	req->answered = true;
	TAILQ_REMOVE(&pool->pending, req, link);
	pool->n_pending--;
	if (req->cb != NULL)
		req->cb(reply, req->arg);
}

/* Answers every pending command with NULL. A callback may send new commands
 * only if the state allows it, so callers set the state first. */
static void redis_pool_answer_all(struct redis_pool *pool)
{
	struct redis_req *req;

	while ((req = TAILQ_FIRST(&pool->pending)) != NULL)
		redis_pool_answer(pool, req, NULL);
	if (pool->deadline_ev != NULL)
		event_del(pool->deadline_ev);
}

/* A failed connect attempt: a warning for the first one and every tenth,
 * debug otherwise, so that an outage does not flood the log. */
static void redis_pool_log_failure(struct redis_pool *pool, const char *why)
{
	pool->failures++;
	if (pool->failures == 1)
		log_warn("redis=%s:%d: connect failed: %s", pool->host,
			 pool->port, why);
	else if (pool->failures % 10 == 0)
		log_warn("redis=%s:%d: connect failed %u times in a row: %s",
			 pool->host, pool->port, pool->failures, why);
	else
		log_debug("redis=%s:%d: connect failed: %s", pool->host,
			  pool->port, why);
}

/* Next attempt after the current backoff, minus up to a quarter of it as
 * jitter (so that several daemons do not reconnect in step), then doubles
 * the backoff up to the maximum. */
static void redis_pool_schedule_reconnect(struct redis_pool *pool)
{
	int delay = pool->backoff_ms;
	int jitter = delay / 4;

	if (jitter > 0)
		delay -= (int)(redis_pool_rand(pool) % (uint32_t)(jitter + 1));
	pool->backoff_ms *= 2;
	if (pool->backoff_ms > REDIS_POOL_BACKOFF_MAX_MS)
		pool->backoff_ms = REDIS_POOL_BACKOFF_MAX_MS;
	redis_pool_set_state(pool, REDIS_POOL_DISCONNECTED);
	redis_pool_arm(pool->reconnect_ev, delay);
}

/* The connection is broken: answer everyone now, free the context on the
 * next loop turn (we may be inside a hiredis callback or a user callback
 * called from one). */
static void redis_pool_reset_later(struct redis_pool *pool)
{
	if (pool->state == REDIS_POOL_RESETTING ||
	    pool->state == REDIS_POOL_CLOSING)
		return;
	redis_pool_set_state(pool, REDIS_POOL_RESETTING);
	event_del(pool->connect_ev);
	redis_pool_answer_all(pool);
	event_active(pool->reset_ev, EV_TIMEOUT, 0);
}

/* hiredis: the reply to one command, or NULL when the context goes away. */
static void redis_pool_on_reply(redisAsyncContext *ac, void *r, void *privdata)
{
	struct redis_req *req = privdata;
	struct redis_pool *pool = req->pool;

	(void)ac;
	/* A reply proves the connection usable: the next loss starts the
	 * backoff from the minimum again. (Not on connect: a server that
	 * accepts and drops connections must not be retried ten times a
	 * second.) */
	if (r != NULL)
		pool->backoff_ms = REDIS_POOL_BACKOFF_MIN_MS;
	redis_pool_answer(pool, req, r);
	free(req);
}

/* hiredis: the TCP connect finished (status REDIS_OK) or failed (REDIS_ERR,
 * after which hiredis frees the context itself). */
static void redis_pool_on_connect(const redisAsyncContext *ac, int status)
{
	struct redis_pool *pool = ac->data;

	if (pool == NULL || pool->ac != ac)
		return;
	event_del(pool->connect_ev);
	if (status != REDIS_OK) {
		/* ac->errstr is not copied yet: read the context's own. */
		redis_pool_log_failure(pool, ac->c.errstr);
		pool->ac = NULL;
		if (pool->state == REDIS_POOL_CONNECTING)
			redis_pool_schedule_reconnect(pool);
		return;
	}
	if (pool->state != REDIS_POOL_CONNECTING)
		return;
	if (pool->failures > 0)
		log_info("redis=%s:%d: connected after %u failed attempts",
			 pool->host, pool->port, pool->failures);
	else
		log_info("redis=%s:%d: connected", pool->host, pool->port);
	pool->failures = 0;
	redis_pool_set_state(pool, REDIS_POOL_CONNECTED);
	if (pool->on_connect != NULL)
		pool->on_connect(pool, pool->on_connect_arg);
}

/* hiredis: a connected context is going away (error, or our own free). Its
 * pending callbacks have already been answered with NULL; the context is
 * freed right after this returns. */
static void redis_pool_on_disconnect(const redisAsyncContext *ac, int status)
{
	struct redis_pool *pool = ac->data;

	if (pool == NULL || pool->ac != ac)
		return;
	pool->ac = NULL;
	switch (pool->state) {
	case REDIS_POOL_CONNECTED:
	case REDIS_POOL_CONNECTING:
		if (status != REDIS_OK)
			log_warn("redis=%s:%d: connection lost: %s", pool->host,
				 pool->port, ac->c.errstr);
		else
			log_warn("redis=%s:%d: connection closed", pool->host,
				 pool->port);
		redis_pool_answer_all(pool);
		redis_pool_schedule_reconnect(pool);
		break;
	case REDIS_POOL_RESETTING:
		/* redis_pool_on_reset finds no context and reconnects. */
	case REDIS_POOL_DISCONNECTED:
	case REDIS_POOL_CLOSING:
		break;
	}
}

/* Frees the context from one of our own events, never from inside hiredis.
 * The state is not CONNECTED/CONNECTING here, so redis_pool_on_disconnect
 * only drops the pointer. */
static void redis_pool_drop_context(struct redis_pool *pool)
{
	redisAsyncContext *ac = pool->ac;

	if (ac == NULL)
		return;
	redisAsyncFree(ac);
	pool->ac = NULL;
}

/* Starts one attempt. redisAsyncConnect resolves host with getaddrinfo,
 * which blocks for a name that is not in /etc/hosts: configure an address
 * (the default is 127.0.0.1). */
static void redis_pool_connect(struct redis_pool *pool)
{
	redisAsyncContext *ac;

	if (pool->state == REDIS_POOL_CLOSING)
		return;
	ac = redisAsyncConnect(pool->host, pool->port);
	if (ac == NULL) {
		log_warn("redis=%s:%d: cannot allocate a context", pool->host,
			 pool->port);
		goto fail;
	}
	if (ac->err) {
		redis_pool_log_failure(pool, ac->c.errstr);
		redisAsyncFree(ac);
		goto fail;
	}
	/* Keepalive finds a dead peer while no command is pending (the
	 * command deadlines find it otherwise). */
	if (redisEnableKeepAlive(&ac->c) != REDIS_OK)
		log_debug("redis=%s:%d: cannot enable TCP keepalive",
			  pool->host, pool->port);
	ac->data = pool;
	if (redisLibeventAttach(ac, pool->base) != REDIS_OK) {
		log_warn("redis=%s:%d: cannot attach to the event loop",
			 pool->host, pool->port);
		redisAsyncFree(ac);
		goto fail;
	}
	redisAsyncSetConnectCallback(ac, redis_pool_on_connect);
	redisAsyncSetDisconnectCallback(ac, redis_pool_on_disconnect);
	pool->ac = ac;
	redis_pool_set_state(pool, REDIS_POOL_CONNECTING);
	redis_pool_arm(pool->connect_ev, pool->timeout_ms);
	return;
fail:
	redis_pool_schedule_reconnect(pool);
}

/* Timer: the backoff delay is over. */
static void redis_pool_on_reconnect(evutil_socket_t fd, short what, void *arg)
{
	struct redis_pool *pool = arg;

	(void)fd;
	(void)what;
	if (pool->state == REDIS_POOL_DISCONNECTED && pool->ac == NULL)
		redis_pool_connect(pool);
}

/* Timer: the TCP connect took longer than timeout_ms. */
static void redis_pool_on_connect_deadline(evutil_socket_t fd, short what,
					   void *arg)
{
	struct redis_pool *pool = arg;
	char why[64];

	(void)fd;
	(void)what;
	if (pool->state != REDIS_POOL_CONNECTING)
		return;
	snprintf(why, sizeof(why), "timed out after %d ms", pool->timeout_ms);
	redis_pool_log_failure(pool, why);
	redis_pool_set_state(pool, REDIS_POOL_DISCONNECTED);
	redis_pool_drop_context(pool);
	redis_pool_schedule_reconnect(pool);
}

/* Next loop turn after redis_pool_reset_later: free the stuck context
 * (hiredis answers its callbacks with NULL; they are all answered already)
 * and reconnect. */
static void redis_pool_on_reset(evutil_socket_t fd, short what, void *arg)
{
	struct redis_pool *pool = arg;

	(void)fd;
	(void)what;
	if (pool->state != REDIS_POOL_RESETTING)
		return;
	redis_pool_drop_context(pool);
	redis_pool_schedule_reconnect(pool);
}

/* Timer: the earliest pending command may be overdue. */
static void redis_pool_on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct redis_pool *pool = arg;
	struct redis_req *req = TAILQ_FIRST(&pool->pending);
	int64_t now = tzclock_mono_ms();

	(void)fd;
	(void)what;
	if (req == NULL)
		return;
	if (req->deadline_ms > now) {
		redis_pool_arm(pool->deadline_ev, req->deadline_ms - now);
		return;
	}
	log_warn("redis=%s:%d: command timed out after %d ms, resetting the "
		 "connection (%zu pending)",
		 pool->host, pool->port, pool->timeout_ms, pool->n_pending);
	/* The list is in deadline order: the overdue one is answered first,
	 * then everyone else. */
	redis_pool_reset_later(pool);
}

/* Deferred, at the end of the loop turn that queued commands: write them
 * now instead of waiting for the socket's write event. hiredis asked the
 * loop for that event when the command was queued; writing it all here
 * makes hiredis withdraw it in the same turn, which the epoll change list
 * turns into no epoll_ctl and no extra pass of the loop at all
 * (docs/BENCHMARKS.md, optimisation 17). What the socket does not take
 * stays with the write event, as before. hiredis may drop the context
 * on a write error (redis_pool_on_disconnect); nothing here touches it
 * afterwards. */
static void redis_pool_on_flush(evutil_socket_t fd, short what, void *arg)
{
	struct redis_pool *pool = arg;

	(void)fd;
	(void)what;
	if (redis_pool_ready(pool) && (pool->ac->c.flags & REDIS_CONNECTED))
		redisAsyncHandleWrite(pool->ac);
}

struct redis_pool *redis_pool_new(struct event_base *base, const char *host,
				  int port, int timeout_ms)
{
	struct redis_pool *pool = calloc(1, sizeof(*pool));

	if (pool == NULL)
		return NULL;
	pool->base = base;
	pool->port = port;
	pool->timeout_ms = timeout_ms > 0 ? timeout_ms : 2000;
	pool->state = REDIS_POOL_DISCONNECTED;
	pool->backoff_ms = REDIS_POOL_BACKOFF_MIN_MS;
	pool->rand_state = (uint32_t)tzclock_mono_ms() ^
			   ((uint32_t)getpid() << 16) ^ 0x9e3779b9u;
	if (pool->rand_state == 0)
		pool->rand_state = 1;
	TAILQ_INIT(&pool->pending);
	pool->host = strdup(host);
	if (pool->host == NULL)
		goto fail;
	pool->reconnect_ev = evtimer_new(base, redis_pool_on_reconnect, pool);
	pool->connect_ev = evtimer_new(base, redis_pool_on_connect_deadline,
				       pool);
	pool->deadline_ev = evtimer_new(base, redis_pool_on_deadline, pool);
	pool->reset_ev = evtimer_new(base, redis_pool_on_reset, pool);
	pool->flush_ev = event_new(base, -1, 0, redis_pool_on_flush, pool);
	if (pool->reconnect_ev == NULL || pool->connect_ev == NULL ||
	    pool->deadline_ev == NULL || pool->reset_ev == NULL ||
	    pool->flush_ev == NULL)
		goto fail;
	return pool;
fail:
	redis_pool_free(pool);
	return NULL;
}

void redis_pool_set_on_connect(struct redis_pool *pool, redis_connect_cb cb,
			       void *arg)
{
	pool->on_connect = cb;
	pool->on_connect_arg = arg;
}

void redis_pool_start(struct redis_pool *pool)
{
	if (pool->state == REDIS_POOL_DISCONNECTED && pool->ac == NULL) {
		event_del(pool->reconnect_ev);
		redis_pool_connect(pool);
	}
}

struct event_base *redis_pool_base(const struct redis_pool *pool)
{
	return pool->base;
}

bool redis_pool_ready(const struct redis_pool *pool)
{
	/* hiredis answers pending callbacks with NULL before it tells us the
	 * connection is gone; it refuses commands from then on. */
	return pool->state == REDIS_POOL_CONNECTED && pool->ac != NULL &&
	       !(pool->ac->c.flags & (REDIS_DISCONNECTING | REDIS_FREEING));
}

bool redis_pool_command_argv(struct redis_pool *pool, int argc,
			     const char **argv, const size_t *argvlen,
			     redis_reply_cb cb, void *arg)
{
	struct redis_req *req;

	if (!redis_pool_ready(pool))
		return false;
	req = calloc(1, sizeof(*req));
	if (req == NULL) {
		log_error("redis=%s:%d: out of memory for a command",
			  pool->host, pool->port);
		return false;
	}
	req->pool = pool;
	req->cb = cb;
	req->arg = arg;
	req->deadline_ms = tzclock_mono_ms() + pool->timeout_ms;
	if (redisAsyncCommandArgv(pool->ac, redis_pool_on_reply, req, argc,
				  argv, argvlen) != REDIS_OK) {
		/* hiredis did not take it: its callback will never run. */
		log_warn("redis=%s:%d: command not accepted: %s", pool->host,
			 pool->port, pool->ac->c.errstr);
		free(req);
		return false;
	}
	TAILQ_INSERT_TAIL(&pool->pending, req, link);
	pool->n_pending++;
	if (!event_pending(pool->deadline_ev, EV_TIMEOUT, NULL))
		redis_pool_arm(pool->deadline_ev, pool->timeout_ms);
	/* Written once the current callback returns, with the other
	 * commands of this loop turn. */
	if (!event_pending(pool->flush_ev, EV_TIMEOUT, NULL))
		event_active(pool->flush_ev, EV_TIMEOUT, 0);
	return true;
}

size_t redis_pool_pending(const struct redis_pool *pool)
{
	return pool->n_pending;
}

void redis_pool_free(struct redis_pool *pool)
{
	if (pool == NULL)
		return;
	redis_pool_set_state(pool, REDIS_POOL_CLOSING);
	/* Answers every pending command with NULL (through on_reply), which
	 * also frees the reqs that were answered already. */
	redis_pool_drop_context(pool);
	redis_pool_answer_all(pool);
	if (pool->reconnect_ev != NULL)
		event_free(pool->reconnect_ev);
	if (pool->connect_ev != NULL)
		event_free(pool->connect_ev);
	if (pool->deadline_ev != NULL)
		event_free(pool->deadline_ev);
	if (pool->reset_ev != NULL)
		event_free(pool->reset_ev);
	if (pool->flush_ev != NULL)
		event_free(pool->flush_ev);
	free(pool->host);
	free(pool);
}
