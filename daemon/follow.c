/* follow: the change stream, read live for this instance's consoles.
 *
 * One state machine on one Redis connection of its own (an XREAD that
 * blocks would hold up every other command of a shared one):
 *
 *   connected, no entry delivered yet -> XREVRANGE changes + - COUNT 1:
 *       start after the newest entry (what came before, a console gets
 *       from its snapshot or its replay);
 *   reconnected after a loss -> XRANGE changes - + COUNT 1: if the oldest
 *       entry kept is newer than the last one delivered (or the stream is
 *       gone), entries were trimmed unseen: every console is cut and
 *       resumes through its own replay, which sends the open queue again;
 *   then XREAD COUNT n BLOCK t STREAMS changes <last>, again and again,
 *       each one pipelined behind XRANGE changes <last> <last>: the
 *       stream is trimmed from its oldest end only (MAXLEN, nothing
 *       deletes an entry), so while <last> is still there no entry after
 *       it is gone. If it is not, the live feed fell more than the
 *       stream's length behind while connected (a wave of changes, as
 *       when thousands of incidents age at once, faster than this loop
 *       read them): that XREAD's answer is dropped and the round goes on
 *       as after a reconnect (the check above cuts every console).
 *       A change can still be missed unseen only if one command adds more
 *       entries than the stream keeps while an XREAD waits in BLOCK;
 *       alertd's commands add at most a batch's (decide.c).
 *
 * A failed command (the pool's deadline, a lost connection) ends the
 * round; the pool reconnects and calls follow_on_connect, which starts the
 * next one. */
#include "follow.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "config.h"
#include "fanout.h"
#include "log.h"
#include "redis_pool.h"

/* Entries per XREAD: a burst of changes is read in rounds of this many. */
#define FOLLOW_BATCH "512"

enum follow_state {
	FOLLOW_IDLE,    /* no command out: waits for a (re)connect */
	FOLLOW_HEAD,    /* XREVRANGE for the starting point */
	FOLLOW_CHECK,   /* XRANGE: were entries trimmed while away? */
	FOLLOW_READING, /* XREAD BLOCK */
};

struct follow {
	struct redis_pool *pool;
	struct fanout *fanout;
	struct event *retry;    /* a round that failed while connected */
	enum follow_state state;
	bool closing;           /* follow_free: callbacks only return */
	bool lost;              /* the connection was lost since the last read */
	int block_ms;
	char last_id[48];       /* last entry delivered; "" before the start */
	char key[256];          /* P changes */
	uint64_t delivered;
};

static void follow_next(struct follow *fl);

/* The id of entry i of an XRANGE/XREAD entry array, or NULL. */
static const char *follow_entry_id(const redisReply *entries, size_t i)
{
	const redisReply *e, *id;

	if (entries == NULL || entries->type != REDIS_REPLY_ARRAY ||
	    i >= entries->elements)
		return NULL;
	e = entries->element[i];
	if (e->type != REDIS_REPLY_ARRAY || e->elements != 2)
		return NULL;
	id = e->element[0];
	if (id->type != REDIS_REPLY_STRING || id->len == 0 || id->len >= 48)
		return NULL;
	return id->str;
}

/* One entry to the consoles: its "snapshot" field, under its id. */
static void follow_deliver(struct follow *fl, const redisReply *entry)
{
	const redisReply *fields = entry->element[1];
	const char *id = entry->element[0]->str;

	if (fields->type == REDIS_REPLY_ARRAY) {
		for (size_t j = 0; j + 1 < fields->elements; j += 2) {
			const redisReply *k = fields->element[j];
			const redisReply *v = fields->element[j + 1];

			if (k->type == REDIS_REPLY_STRING &&
			    v->type == REDIS_REPLY_STRING &&
			    strcmp(k->str, "snapshot") == 0) {
				fanout_publish(fl->fanout, id, v->str);
				fl->delivered++;
				break;
			}
		}
	}
	snprintf(fl->last_id, sizeof(fl->last_id), "%s", id);
}

/* A command failed: the pool resets the connection and calls
 * follow_on_connect once it is back; if it is somehow still connected,
 * the next round starts from a timer (never a hot loop). */
static void follow_failed(struct follow *fl)
{
	struct timeval later = {0, 200000};

	if (fl->closing)
		return;
	fl->state = FOLLOW_IDLE;
	fl->lost = true;
	if (redis_pool_ready(fl->pool))
		event_add(fl->retry, &later);
}

static void follow_on_head(redisReply *r, void *arg)
{
	struct follow *fl = arg;
	const char *id;

	if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
		follow_failed(fl);
		return;
	}
	id = follow_entry_id(r, 0);
	snprintf(fl->last_id, sizeof(fl->last_id), "%s", id ? id : "0-0");
	fl->state = FOLLOW_IDLE;
	follow_next(fl);
}

static void follow_on_check(redisReply *r, void *arg)
{
	struct follow *fl = arg;
	const char *oldest;

	if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
		follow_failed(fl);
		return;
	}
	oldest = follow_entry_id(r, 0);
	if ((oldest == NULL && strcmp(fl->last_id, "0-0") != 0) ||
	    (oldest != NULL && fanout_id_cmp(oldest, fl->last_id) > 0)) {
		/* Entries after last_id may have gone unseen. */
		log_warn("follow: changes after %s were trimmed while the "
			 "change stream was not read; every console starts "
			 "over", fl->last_id);
		fanout_changes_lost(fl->fanout);
		snprintf(fl->last_id, sizeof(fl->last_id), "%s",
			 oldest != NULL ? oldest : "0-0");
		/* The oldest entry itself is covered by the consoles' new
		 * start (they read the open queue after this point). */
	}
	fl->lost = false;
	fl->state = FOLLOW_IDLE;
	follow_next(fl);
}

/* The XRANGE <last> <last> ahead of each XREAD: empty when the entry
 * last delivered was trimmed, so that entries after it may be gone too. */
static void follow_on_still(redisReply *r, void *arg)
{
	struct follow *fl = arg;

	if (r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 0) {
		log_warn("follow: the change stream was trimmed past %s while "
			 "it was read: the live feed fell behind",
			 fl->last_id);
		fl->lost = true;
	}
	/* Any other failure shows in the XREAD's own answer. */
}

static void follow_on_read(redisReply *r, void *arg)
{
	struct follow *fl = arg;
	const redisReply *stream, *entries;

	if (r == NULL || (r->type != REDIS_REPLY_NIL &&
			  r->type != REDIS_REPLY_ARRAY)) {
		if (r != NULL)
			log_warn("follow: unexpected XREAD reply (type %d%s%s)",
				 r->type, r->type == REDIS_REPLY_ERROR ? ": " : "",
				 r->type == REDIS_REPLY_ERROR ? r->str : "");
		follow_failed(fl);
		return;
	}
	/* nil: BLOCK ran out with nothing new. Else [[key, [entry...]]].
	 * Not delivered after a gap (follow_on_still): the check round
	 * decides where the consoles start over. */
	if (!fl->lost && r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
	    (stream = r->element[0])->type == REDIS_REPLY_ARRAY &&
	    stream->elements == 2) {
		entries = stream->element[1];
		for (size_t i = 0; follow_entry_id(entries, i) != NULL; i++)
			follow_deliver(fl, entries->element[i]);
	}
	fl->state = FOLLOW_IDLE;
	follow_next(fl);
}

/* Sends the next command of the state machine (see the top). */
static void follow_next(struct follow *fl)
{
	char block[16];
	const char *argv[8];
	redis_reply_cb cb;
	int argc;

	if (fl->state != FOLLOW_IDLE || !redis_pool_ready(fl->pool))
		return;
	if (fl->last_id[0] == '\0') {
		const char *a[] = {"XREVRANGE", fl->key, "+", "-", "COUNT", "1"};

		memcpy(argv, a, sizeof(a));
		argc = 6;
		cb = follow_on_head;
		fl->state = FOLLOW_HEAD;
	} else if (fl->lost) {
		const char *a[] = {"XRANGE", fl->key, "-", "+", "COUNT", "1"};

		memcpy(argv, a, sizeof(a));
		argc = 6;
		cb = follow_on_check;
		fl->state = FOLLOW_CHECK;
	} else {
		const char *a[] = {"XREAD",   "COUNT", FOLLOW_BATCH, "BLOCK",
				   block,     "STREAMS", fl->key,     fl->last_id};

		snprintf(block, sizeof(block), "%d", fl->block_ms);
		memcpy(argv, a, sizeof(a));
		argc = 8;
		cb = follow_on_read;
		fl->state = FOLLOW_READING;
		/* Is the last entry delivered still there? ("0-0": the stream
		 * did not exist when the feed started; nothing to lose yet.)
		 * Pipelined: Redis answers it just before the XREAD. */
		if (strcmp(fl->last_id, "0-0") != 0) {
			const char *c[] = {"XRANGE", fl->key, fl->last_id,
					   fl->last_id};

			if (!redis_pool_command_argv(fl->pool, 4, c, NULL,
						     follow_on_still, fl)) {
				fl->state = FOLLOW_IDLE;
				fl->lost = true;
				return;
			}
		}
	}
	if (!redis_pool_command_argv(fl->pool, argc, argv, NULL, cb, fl)) {
		fl->state = FOLLOW_IDLE; /* not connected: on_connect resumes */
		fl->lost = true;
	}
}

static void follow_on_connect(struct redis_pool *pool, void *arg)
{
	struct follow *fl = arg;

	(void)pool;
	follow_next(fl);
}

static void follow_on_retry(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	follow_next(arg);
}

struct follow *follow_new(struct event_base *base, const char *host, int port,
			  int timeout_ms, struct fanout *fanout)
{
	struct follow *fl = calloc(1, sizeof(*fl));

	if (fl == NULL)
		return NULL;
	fl->fanout = fanout;
	/* Half the deadline: an idle stream answers nil well before the
	 * pool would take the connection for stuck. */
	fl->block_ms = timeout_ms / 2 > 0 ? timeout_ms / 2 : 1;
	snprintf(fl->key, sizeof(fl->key), "%schanges",
		 config_current()->redis_prefix);
	fl->pool = redis_pool_new(base, host, port, timeout_ms);
	fl->retry = evtimer_new(base, follow_on_retry, fl);
	if (fl->pool == NULL || fl->retry == NULL) {
		follow_free(fl);
		return NULL;
	}
	redis_pool_set_on_connect(fl->pool, follow_on_connect, fl);
	return fl;
}

void follow_start(struct follow *fl)
{
	redis_pool_start(fl->pool);
}

uint64_t follow_delivered(const struct follow *fl)
{
	return fl->delivered;
}

void follow_free(struct follow *fl)
{
	if (fl == NULL)
		return;
	/* Answers the pending command with NULL: follow_failed returns. */
	fl->closing = true;
	redis_pool_free(fl->pool);
	if (fl->retry != NULL)
		event_free(fl->retry);
	free(fl);
}
