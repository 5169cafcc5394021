/* redis_pool: one async Redis connection (hiredis 0.14 on the libevent
 * adapter) with reconnect (exponential backoff + jitter) and a deadline per
 * command, which hiredis 0.14 does not have.
 *
 * A command whose deadline passes is answered with NULL at once; the
 * connection is then considered stuck and reset, and every other pending
 * command is answered with NULL. Late replies are dropped. */
#ifndef ALERTD_REDIS_POOL_H
#define ALERTD_REDIS_POOL_H

#include <stdbool.h>
#include <stddef.h>

#include <hiredis/hiredis.h>

struct event_base;
struct redis_pool;

/* reply is NULL when the connection failed or the deadline passed; it is
 * owned by hiredis and valid only during the call. */
typedef void (*redis_reply_cb)(redisReply *reply, void *arg);
/* Called after every successful (re)connect, before queued users retry.
 * There is one such callback per pool; decide_new installs its own. */
typedef void (*redis_connect_cb)(struct redis_pool *pool, void *arg);

struct redis_pool *redis_pool_new(struct event_base *base, const char *host,
				  int port, int timeout_ms);
void redis_pool_set_on_connect(struct redis_pool *pool, redis_connect_cb cb,
			       void *arg);
void redis_pool_start(struct redis_pool *pool);
bool redis_pool_ready(const struct redis_pool *pool);
/* The loop the pool runs on (for callers that defer work to it). */
struct event_base *redis_pool_base(const struct redis_pool *pool);
/* Sends a command now. Returns false (cb not called) when not connected. */
bool redis_pool_command_argv(struct redis_pool *pool, int argc,
			     const char **argv, const size_t *argvlen,
			     redis_reply_cb cb, void *arg)
	__attribute__((warn_unused_result));
size_t redis_pool_pending(const struct redis_pool *pool);
/* Disconnects; every pending command is answered with NULL. Not from
 * inside a reply or connect callback. */
void redis_pool_free(struct redis_pool *pool);

#endif
