/* decide: the incident model in Redis, through lua/decide.lua.
 *
 * The script is loaded with SCRIPT LOAD on every (re)connect and called
 * with EVALSHA once its SHA is known (EVAL before that). A NOSCRIPT error
 * (Redis restarted or SCRIPT FLUSH) re-sends the same call once with EVAL
 * and loads the script again, so that no event fails because of it.
 *
 * Each request is a struct decide_call that owns a copy of its arguments
 * (the NOSCRIPT re-send needs them after the caller's strings are gone)
 * and is answered exactly once: redis_pool answers every command it took
 * exactly once, with NULL when Redis is unavailable.
 *
 * Events are decided in batches (group decide, like the audit's group
 * commit): decide_event queues the event's call and the loop's next turn
 * sends the events queued in this one in script calls of mode
 * decide_batch (DECIDE_BATCH_MAX events each), so that the script's
 * dispatch, the rules argument and its decoding are paid once per batch,
 * not once per event (docs/BENCHMARKS.md, optimisation 6). Nothing waits
 * for a batch to fill: an event alone in its turn goes out alone.
 *
 * At most DECIDE_BATCHES_INFLIGHT batches are in flight. Events that
 * come while they are queue up and go out together when one is answered,
 * so that a busy daemon sends fewer, larger batches (each script call
 * costs Redis about 30 us before its first event; optimisation 15). An
 * idle one sends every event at once, as before. Urgent events
 * (evt_type_urgent) wait in a queue of their own that every batch takes
 * first, so a panic never waits behind queued heartbeats here either. */
#include "decide.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "config.h"
#include "decide_reply.h"
#include "log.h"
#include "metrics.h"
#include "numtext.h"
#include "redis_pool.h"
#include "rules.h"

/* lua/decide.lua, embedded by lua/lua_blob.S, NUL-terminated. */
extern const char decide_lua_text[];

#define DECIDE_CHANGES_MAXLEN 10000
#define DECIDE_ARGS_MAX 20
/* Room in a call for the text of its copied arguments. */
#define DECIDE_CALL_TEXT 320
/* The per-event arguments of the script's decide and decide_batch modes. */
#define DECIDE_EVENT_FIELDS 15
#define DECIDE_BATCH_MAX 64
/* decide_batch calls in flight at once: one being run by Redis while the
 * next is on its way (docs/BENCHMARKS.md, optimisation 15). */
#define DECIDE_BATCHES_INFLIGHT 2
/* The rules' time (night flag) of the queued events is at most this much
 * older than the newest queued event's. */
#define DECIDE_RULES_REFRESH_MS 1000

enum decide_call_kind {
	DECIDE_CALL_EVENT,   /* one event of a batch -> decide_event_cb */
	DECIDE_CALL_JSON,    /* script mode queue/get -> decide_json_cb */
	DECIDE_CALL_CHANGES, /* XRANGE -> decide_changes_cb */
	DECIDE_CALL_LOAD,    /* SCRIPT LOAD, no user callback */
	DECIDE_CALL_ITEMS,   /* script mode age/sweep -> decide_items_cb */
	DECIDE_CALL_BATCH,   /* script mode decide_batch: answers members */
};

struct decide_call {
	struct decide_call *prev, *next; /* in d->calls */
	struct decide *d;                /* NULL once decide_free ran */
	enum decide_call_kind kind;
	bool script;   /* argv is prefixed with EVALSHA sha / EVAL text */
	bool resent;   /* re-sent with EVAL after NOSCRIPT */
	bool oom;      /* an argument could not be copied */
	bool nil_ok;   /* decide_script: a nil reply is an answer */
	union {
		decide_event_cb event;
		decide_json_cb json;
		decide_changes_cb changes;
		decide_items_cb items;
	} cb;
	void *arg;
	/* DECIDE_CALL_EVENT: the next event of the queue or of its batch.
	 * DECIDE_CALL_BATCH: its events (linked by qnext), sent after its
	 * own arguments. */
	struct decide_call *qnext;
	struct decide_call *members;
	size_t n_members;
	size_t max_changes;   /* DECIDE_CALL_CHANGES: the caller's max */
	struct timespec sent; /* for alertd_decide_seconds */
	int argc;
	const char *argv[DECIDE_ARGS_MAX];
	size_t argvlen[DECIDE_ARGS_MAX];
	bool owned[DECIDE_ARGS_MAX];
	/* Copied arguments that fit, one after the other (an event's
	 * fifteen are some 200 bytes): no malloc per argument. */
	size_t text_len;
	char text[DECIDE_CALL_TEXT];
};

struct decide {
	struct redis_pool *pool;
	char sha[41];
	bool have_sha;
	struct decide_call *calls; /* in flight or queued */
	/* Events queued since the last batch went out, sent by ev_flush:
	 * urgent ones (uqueue) first. */
	struct decide_call *queue, *queue_tail;
	struct decide_call *uqueue, *uqueue_tail;
	int64_t queue_now_ms;      /* the time of the rules (night flag):
				    * the first queued event's, refreshed
				    * by later events every
				    * DECIDE_RULES_REFRESH_MS */
	struct event *ev_flush;
	int batches_inflight;      /* decide_batch calls sent, not answered */
	/* The highest incident id and accept_seq known to be given (the
	 * script's replies, PostgreSQL): sent with the rules, so that the
	 * counters go on above them after Redis lost its data. */
	struct rules_seq_floor floor;
	/* now_ms of the last event, as text: the events of one loop turn
	 * share their time, so it is formatted once. */
	int64_t now_iso_ms;
	char now_iso[32];
	/* rules_json_fixed of the running config (its config_generation in
	 * rules_gen): jansson's dump of it cost more than a batch of four
	 * events (docs/BENCHMARKS.md, optimisation 32). */
	char *rules_fixed;
	uint64_t rules_gen;
};

static void decide_on_reply(redisReply *reply, void *arg);
static void decide_on_flush(evutil_socket_t fd, short what, void *arg);

const char *decide_script_text(void)
{
	return decide_lua_text;
}

/* The type class that groups events into one incident. */
static const char *decide_type_class(enum evt_type type)
{
	switch (type) {
	case EVT_TYPE_PANIC:
	case EVT_TYPE_SILENT_ALARM:
		return "alarm";
	case EVT_TYPE_CALL_REQUEST:
	case EVT_TYPE_CALLBACK_REQUEST:
		return "call";
	case EVT_TYPE_FAULT:
		return "fault";
	case EVT_TYPE_HEARTBEAT:
		return "heartbeat";
	case EVT_TYPE_TEST:
		return "test";
	case EVT_TYPE__COUNT:
		break;
	}
	return NULL;
}

static struct decide_call *decide_call_new(struct decide *d,
					   enum decide_call_kind kind,
					   bool script, void *arg)
{
	struct decide_call *call = calloc(1, sizeof(*call));

	if (call == NULL) {
		log_error("decide: out of memory");
		return NULL;
	}
	call->d = d;
	call->kind = kind;
	call->script = script;
	call->arg = arg;
	call->next = d->calls;
	if (d->calls != NULL)
		d->calls->prev = call;
	d->calls = call;
	return call;
}

static void decide_call_free(struct decide_call *call)
{
	if (call == NULL)
		return;
	if (call->d != NULL) {
		if (call->prev != NULL)
			call->prev->next = call->next;
		else
			call->d->calls = call->next;
		if (call->next != NULL)
			call->next->prev = call->prev;
	}
	for (int i = 0; i < call->argc; i++)
		if (call->owned[i])
			free((char *)call->argv[i]);
	while (call->members != NULL) {
		struct decide_call *ev = call->members;

		call->members = ev->qnext;
		decide_call_free(ev);
	}
	free(call);
}

/* Appends an argument; copy=false for static strings (the script text). */
static void decide_call_arg(struct decide_call *call, const char *s, bool copy)
{
	size_t len = strlen(s);
	bool owned = false;

	if (call->argc >= DECIDE_ARGS_MAX) {
		call->oom = true;
		return;
	}
	if (copy && len < sizeof(call->text) - call->text_len) {
		char *to = call->text + call->text_len;

		memcpy(to, s, len + 1);
		call->text_len += len + 1;
		s = to;
	} else if (copy) {
		char *dup = malloc(len + 1);

		if (dup == NULL) {
			call->oom = true;
			return;
		}
		memcpy(dup, s, len + 1);
		s = dup;
		owned = true;
	}
	call->argv[call->argc] = s;
	call->argvlen[call->argc] = len;
	call->owned[call->argc] = owned;
	call->argc++;
}

/* Appends the concatenation a + b (a key built from the prefix). */
static void decide_call_arg2(struct decide_call *call, const char *a,
			     const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	char *s;

	if (call->argc >= DECIDE_ARGS_MAX) {
		call->oom = true;
		return;
	}
	s = malloc(la + lb + 1);
	if (s == NULL) {
		call->oom = true;
		return;
	}
	memcpy(s, a, la);
	memcpy(s + la, b, lb + 1);
	call->argv[call->argc] = s;
	call->argvlen[call->argc] = la + lb;
	call->owned[call->argc] = true;
	call->argc++;
}

/* Appends an integer argument (numtext: printf was a tenth of alertd's CPU
 * per event). */
static void decide_call_int(struct decide_call *call, int64_t v)
{
	char buf[NUMTEXT_I64_LEN];

	numtext_i64(buf, v);
	decide_call_arg(call, buf, true);
}

/* Appends a coordinate, as the shortest text that reads back as v: the
 * same text the audit row's payload has. */
static void decide_call_real(struct decide_call *call, double v)
{
	char buf[NUMTEXT_REAL_LEN];

	numtext_real(buf, v);
	decide_call_arg(call, buf, true);
}

/* Sends (or re-sends) a call. Script calls go out as EVALSHA while the SHA
 * is known and the call was not refused with NOSCRIPT, else as EVAL. */
static bool decide_send(struct decide *d, struct decide_call *call)
{
	size_t max = 2 + (size_t)call->argc;
	const char **argv = NULL;
	size_t *argvlen = NULL;
	int argc = 0;
	bool ok;

	for (const struct decide_call *ev = call->members; ev != NULL;
	     ev = ev->qnext)
		max += (size_t)ev->argc;

	if (call->oom) {
		log_error("decide: out of memory for a command");
		return false;
	}
	argv = malloc(max * sizeof(*argv));
	argvlen = malloc(max * sizeof(*argvlen));
	if (argv == NULL || argvlen == NULL) {
		log_error("decide: out of memory for a command");
		free(argv);
		free(argvlen);
		return false;
	}
	if (call->script) {
		if (d->have_sha && !call->resent) {
			argv[0] = "EVALSHA";
			argv[1] = d->sha;
		} else {
			argv[0] = "EVAL";
			argv[1] = decide_lua_text;
		}
		argvlen[0] = strlen(argv[0]);
		argvlen[1] = strlen(argv[1]);
		argc = 2;
	}
	for (int i = 0; i < call->argc; i++, argc++) {
		argv[argc] = call->argv[i];
		argvlen[argc] = call->argvlen[i];
	}
	for (const struct decide_call *ev = call->members; ev != NULL;
	     ev = ev->qnext) {
		for (int i = 0; i < ev->argc; i++, argc++) {
			argv[argc] = ev->argv[i];
			argvlen[argc] = ev->argvlen[i];
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &call->sent);
	ok = redis_pool_command_argv(d->pool, argc, argv, argvlen,
				     decide_on_reply, call);
	free(argv);
	free(argvlen);
	return ok;
}

/* Queues SCRIPT LOAD; its reply sets d->sha. */
static void decide_load_script(struct decide *d)
{
	struct decide_call *call;

	call = decide_call_new(d, DECIDE_CALL_LOAD, false, NULL);
	if (call == NULL)
		return;
	decide_call_arg(call, "SCRIPT", false);
	decide_call_arg(call, "LOAD", false);
	decide_call_arg(call, decide_lua_text, false);
	if (!decide_send(d, call)) {
		log_warn("decide: cannot send SCRIPT LOAD; using EVAL");
		decide_call_free(call);
	}
}

/* redis_pool: (re)connected. SCRIPT LOAD goes first on the new connection,
 * so EVALSHA calls sent after it find the script even after a restart. */
static void decide_on_connect(struct redis_pool *pool, void *arg)
{
	struct decide *d = arg;

	(void)pool;
	decide_load_script(d);
}

static void decide_on_script_loaded(struct decide *d, const redisReply *reply)
{
	if (reply == NULL)
		return;
	if (reply->type != REDIS_REPLY_STRING || reply->len != 40) {
		log_warn("decide: SCRIPT LOAD failed: %s",
			 reply->type == REDIS_REPLY_ERROR ? reply->str
							  : "unexpected reply");
		return;
	}
	memcpy(d->sha, reply->str, 40);
	d->sha[40] = '\0';
	if (!d->have_sha)
		log_info("decide: decide.lua loaded, sha %s", d->sha);
	d->have_sha = true;
}

static void decide_answer_event(struct decide_call *call,
				const redisReply *reply)
{
	const char *event_id = call->argv[0]; /* event_id, then the rest */
	struct decide_result res;

	if (reply == NULL) {
		call->cb.event(NULL, call->arg);
		return;
	}
	if (reply->type == REDIS_REPLY_ERROR) {
		log_warn("decide: event=%s: script error: %s", event_id,
			 reply->str);
		call->cb.event(NULL, call->arg);
		return;
	}
	if (!decide_reply_event(reply, &res)) {
		log_warn("decide: event=%s: unexpected reply from the script",
			 event_id);
		call->cb.event(NULL, call->arg);
		return;
	}
	if (call->d != NULL && res.refused == NULL)
		decide_raise_floor(call->d, res.incident_id, res.accept_seq);
	call->cb.event(&res, call->arg);
}

static void decide_answer_json(struct decide_call *call,
			       const redisReply *reply)
{
	const char *mode = call->argv[1]; /* "0" mode ... */

	if (reply == NULL) {
		call->cb.json(false, NULL, call->arg);
	} else if (reply->type == REDIS_REPLY_STRING) {
		call->cb.json(true, reply->str, call->arg);
	} else if (reply->type == REDIS_REPLY_NIL &&
		   (call->nil_ok || strcmp(mode, "get") == 0)) {
		call->cb.json(true, NULL, call->arg);
	} else {
		log_warn("decide: %s: %s", mode,
			 reply->type == REDIS_REPLY_ERROR ? reply->str
							  : "unexpected reply");
		call->cb.json(false, NULL, call->arg);
	}
}

static void decide_answer_changes(struct decide_call *call,
				  const redisReply *reply)
{
	const char **ids = NULL, **snaps = NULL;
	size_t n = 0;

	if (reply == NULL) {
		call->cb.changes(false, false, 0, NULL, NULL, call->arg);
		return;
	}
	if (!decide_reply_changes(reply, &ids, &snaps, &n)) {
		log_warn("decide: XRANGE: %s",
			 reply->type == REDIS_REPLY_ERROR ? reply->str
							  : "unexpected reply");
		call->cb.changes(false, false, 0, NULL, NULL, call->arg);
		return;
	}
	/* The range starts at last_id itself (argv[2]), COUNT max + 1: its
	 * entry first proves that nothing after it was trimmed. */
	if (n == 0 || strcmp(ids[0], call->argv[2]) != 0 ||
	    n > call->max_changes)
		call->cb.changes(true, true, 0, NULL, NULL, call->arg);
	else
		call->cb.changes(true, false, n - 1, ids + 1, snaps + 1,
				 call->arg);
	free(ids);
	free(snaps);
}

static void decide_answer_items(struct decide_call *call,
				const redisReply *reply)
{
	const char *mode = call->argv[1]; /* "0" mode ... */
	size_t width = strcmp(mode, "sweep") == 0 ? 4 : 3;
	struct decide_item *items = NULL;
	size_t n = 0;

	if (reply == NULL) {
		call->cb.items(false, 0, NULL, call->arg);
		return;
	}
	if (!decide_reply_items(reply, width, &items, &n)) {
		log_warn("decide: %s: %s", mode,
			 reply->type == REDIS_REPLY_ERROR ? reply->str
							  : "unexpected reply");
		call->cb.items(false, 0, NULL, call->arg);
		return;
	}
	for (size_t i = 0; i < n && call->d != NULL; i++)
		decide_raise_floor(call->d, items[i].incident_id, 0);
	call->cb.items(true, n, items, call->arg);
	free(items);
}

/* The reply to a decide_batch: one element per member, in order. A reply
 * that is not such an array (an error, Redis gone) answers every member
 * with it. */
static void decide_answer_batch(struct decide_call *call,
				const redisReply *reply)
{
	bool each = reply != NULL && reply->type == REDIS_REPLY_ARRAY &&
		    reply->elements == call->n_members;

	if (reply != NULL && !each && reply->type != REDIS_REPLY_ERROR)
		log_warn("decide: unexpected reply to a batch of %zu events",
			 call->n_members);
	for (size_t m = 0; call->members != NULL; m++) {
		struct decide_call *ev = call->members;

		call->members = ev->qnext;
		if (each)
			decide_answer_event(ev, reply->element[m]);
		else if (reply != NULL && reply->type == REDIS_REPLY_ERROR)
			decide_answer_event(ev, reply);
		else
			decide_answer_event(ev, NULL);
		decide_call_free(ev);
	}
	call->n_members = 0;
}

/* Takes the first event of the queues, the urgent one first. */
static struct decide_call *decide_queue_pop(struct decide *d)
{
	struct decide_call *ev;

	if ((ev = d->uqueue) != NULL) {
		if ((d->uqueue = ev->qnext) == NULL)
			d->uqueue_tail = NULL;
	} else if ((ev = d->queue) != NULL) {
		if ((d->queue = ev->qnext) == NULL)
			d->queue_tail = NULL;
	}
	if (ev != NULL)
		ev->qnext = NULL;
	return ev;
}

/* Answers every queued event "Redis unavailable" (NULL). */
static void decide_answer_queue(struct decide *d)
{
	struct decide_call *ev;

	while ((ev = decide_queue_pop(d)) != NULL) {
		decide_answer_event(ev, NULL);
		decide_call_free(ev);
	}
}

static bool decide_is_noscript(const redisReply *reply)
{
	return reply != NULL && reply->type == REDIS_REPLY_ERROR &&
	       strncmp(reply->str, "NOSCRIPT", 8) == 0;
}

/* redis_pool: the reply to one call (NULL: Redis unavailable). */
static void decide_on_reply(redisReply *reply, void *arg)
{
	struct decide_call *call = arg;
	struct decide *d = call->d;

	if (call->script && !call->resent && d != NULL &&
	    decide_is_noscript(reply)) {
		call->resent = true;
		/* Warn and load once, not once per refused call. */
		if (d->have_sha) {
			log_warn("decide: decide.lua is not in the Redis "
				 "script cache; using EVAL and loading it "
				 "again");
			d->have_sha = false;
			decide_load_script(d);
		}
		if (decide_send(d, call))
			return; /* answered by the next reply */
		reply = NULL;
	}
	switch (call->kind) {
	case DECIDE_CALL_EVENT: /* never sent alone: a batch's member */
		break;
	case DECIDE_CALL_JSON:
		decide_answer_json(call, reply);
		break;
	case DECIDE_CALL_CHANGES:
		decide_answer_changes(call, reply);
		break;
	case DECIDE_CALL_ITEMS:
		decide_answer_items(call, reply);
		break;
	case DECIDE_CALL_BATCH:
		metrics_observe(METRICS_DECIDE, metrics_since(&call->sent));
		decide_answer_batch(call, reply);
		/* d is still alive here: the callbacks above do not free it
		 * (only daemon_free does, outside any callback). */
		if (d != NULL && --d->batches_inflight <
				 DECIDE_BATCHES_INFLIGHT &&
		    (d->queue != NULL || d->uqueue != NULL))
			event_active(d->ev_flush, EV_TIMEOUT, 0);
		break;
	case DECIDE_CALL_LOAD:
		if (d != NULL)
			decide_on_script_loaded(d, reply);
		break;
	}
	decide_call_free(call);
}

struct decide *decide_new(struct redis_pool *pool)
{
	struct decide *d = calloc(1, sizeof(*d));

	if (d == NULL)
		return NULL;
	d->pool = pool;
	d->ev_flush = event_new(redis_pool_base(pool), -1, 0, decide_on_flush,
				d);
	if (d->ev_flush == NULL) {
		free(d);
		return NULL;
	}
	redis_pool_set_on_connect(pool, decide_on_connect, d);
	/* Already connected (decide created late): load now. */
	if (redis_pool_ready(pool))
		decide_load_script(d);
	return d;
}

void decide_free(struct decide *d)
{
	struct decide_call *call;

	if (d == NULL)
		return;
	/* The pool may be gone already (main frees it first), so it is not
	 * touched here. Calls still in flight are answered later by
	 * redis_pool (at the latest by redis_pool_free); they must not touch
	 * d then. */
	/* Queued events never reached the pool: answered here, while d is
	 * alive, like the pool answers the calls it holds. */
	decide_answer_queue(d);
	for (call = d->calls; call != NULL; call = call->next)
		call->d = NULL;
	event_free(d->ev_flush);
	free(d->rules_fixed);
	free(d);
}

void decide_raise_floor(struct decide *d, int64_t incident, int64_t accept)
{
	if (incident > d->floor.incident)
		d->floor.incident = incident;
	if (accept > d->floor.accept)
		d->floor.accept = accept;
}

/* The rules argument of the script (rules.c). */
/* The fixed part of the rules of cfg, made again when a reload swapped the
 * running config; NULL when cfg is not the running one or out of memory. */
static const char *decide_rules_fixed(struct decide *d,
				      const struct config *cfg)
{
	if (d == NULL || cfg != config_current())
		return NULL;
	if (d->rules_fixed == NULL || d->rules_gen != config_generation()) {
		free(d->rules_fixed);
		d->rules_fixed = rules_json_fixed(cfg);
		d->rules_gen = config_generation();
	}
	return d->rules_fixed;
}

static bool decide_call_rules(struct decide_call *call,
			      const struct config *cfg, int64_t now_ms)
{
	struct decide *d = call->d;
	const char *fixed = decide_rules_fixed(d, cfg);
	char *text = fixed != NULL
			     ? rules_json_join(fixed, rules_is_night(cfg, now_ms),
					       &d->floor)
			     : rules_json(cfg, now_ms, d != NULL ? &d->floor : NULL);

	if (text == NULL) {
		log_error("decide: out of memory for the rules");
		return false;
	}
	decide_call_arg(call, text, true);
	free(text);
	return true;
}

/* Takes up to DECIDE_BATCH_MAX events off the queue into one
 * decide_batch call and sends it; false when nothing is queued, or when
 * DECIDE_BATCHES_INFLIGHT are in flight already and !all. */
static bool decide_flush_one(struct decide *d, bool all)
{
	const struct config *cfg = config_current();
	struct decide_call *batch, *ev, **tail;

	if ((d->queue == NULL && d->uqueue == NULL) ||
	    (!all && d->batches_inflight >= DECIDE_BATCHES_INFLIGHT))
		return false;
	batch = decide_call_new(d, DECIDE_CALL_BATCH, true, NULL);
	if (batch == NULL) {
		decide_answer_queue(d);
		return false;
	}
	tail = &batch->members;
	while (batch->n_members < DECIDE_BATCH_MAX &&
	       (ev = decide_queue_pop(d)) != NULL) {
		*tail = ev;
		tail = &ev->qnext;
		batch->n_members++;
	}
	decide_call_arg(batch, "0", false); /* numkeys: see docs/redis.md */
	decide_call_arg(batch, "decide_batch", false);
	decide_call_arg(batch, cfg->redis_prefix, true);
	if (decide_call_rules(batch, cfg, d->queue_now_ms))
		decide_call_int(batch, batch->n_members);
	else
		batch->oom = true;
	if (!decide_send(d, batch)) {
		decide_answer_batch(batch, NULL);
		decide_call_free(batch);
	} else {
		d->batches_inflight++;
	}
	return true;
}

/* Sends every queued event now, DECIDE_BATCH_MAX per script call, in
 * order, however many batches are in flight (shutdown). */
void decide_flush(struct decide *d)
{
	while (decide_flush_one(d, true))
		;
}

/* The loop's turn after the one that queued events, or the answer to a
 * batch: sends what the in-flight limit allows; the rest waits for the
 * next answer. */
static void decide_on_flush(evutil_socket_t fd, short what, void *arg)
{
	struct decide *d = arg;

	(void)fd;
	(void)what;
	while (decide_flush_one(d, false))
		;
}

bool decide_event(struct decide *d, const struct evt *ev, int64_t now_ms,
		  decide_event_cb cb, void *arg)
{
	const struct config *cfg = config_current();
	struct decide_call *call, **head, **tail;
	bool urgent;
	const char *class;
	int base;

	if ((unsigned)ev->type >= EVT_TYPE__COUNT ||
	    (unsigned)ev->kind >= EVT_KIND__COUNT) {
		log_error("decide: event=%s: bad type or kind", ev->event_id);
		return false;
	}
	class = cfg->type_class[ev->type] != NULL ? cfg->type_class[ev->type]
						  : decide_type_class(ev->type);
	base = cfg->priority_base[ev->type];
	if (base < 0)
		base = 0;
	if (base > 999)
		base = 999;
	if (d->now_iso[0] == '\0' || d->now_iso_ms != now_ms) {
		evt_format_time(now_ms, d->now_iso, sizeof(d->now_iso));
		d->now_iso_ms = now_ms;
	}

	if (!redis_pool_ready(d->pool))
		return false;
	call = decide_call_new(d, DECIDE_CALL_EVENT, true, arg);
	if (call == NULL)
		return false;
	call->cb.event = cb;
	/* The DECIDE_EVENT_FIELDS arguments of one event (decide.lua). */
	decide_call_arg(call, ev->event_id, true);
	decide_call_arg(call, ev->source_id, true);
	decide_call_arg(call, evt_kind_name(ev->kind), false);
	decide_call_arg(call, ev->zone != NULL ? ev->zone : "", true);
	decide_call_arg(call, ev->label != NULL ? ev->label : "", true);
	decide_call_arg(call, evt_type_name(ev->type), false);
	/* Copied: the config owns it, and a reload may free it before the
	 * batch goes out. */
	decide_call_arg(call, class, true);
	decide_call_int(call, base);
	decide_call_int(call, now_ms);
	decide_call_arg(call, d->now_iso, true);
	decide_call_int(call, cfg->idempotency_ttl_s);
	decide_call_arg(call, ev->has_location ? "1" : "0", false);
	if (ev->has_location) {
		decide_call_real(call, ev->lat);
		decide_call_real(call, ev->lon);
	} else {
		decide_call_arg(call, "", false);
		decide_call_arg(call, "", false);
	}
	decide_call_int(call, DECIDE_CHANGES_MAXLEN);
	if (call->oom || call->argc != DECIDE_EVENT_FIELDS) {
		log_error("decide: out of memory for a command");
		decide_call_free(call);
		return false;
	}
	if (d->queue == NULL && d->uqueue == NULL) {
		d->queue_now_ms = now_ms;
		event_active(d->ev_flush, EV_TIMEOUT, 0);
	} else if (now_ms - d->queue_now_ms >= DECIDE_RULES_REFRESH_MS ||
		   now_ms < d->queue_now_ms) {
		/* A backlog keeps the queue from emptying (Redis slow, two
		 * batches in flight): without this the night flag would stay
		 * that of the backlog's first event, across 22:00 too. */
		d->queue_now_ms = now_ms;
	}
	urgent = evt_type_urgent(ev->type);
	head = urgent ? &d->uqueue : &d->queue;
	tail = urgent ? &d->uqueue_tail : &d->queue_tail;
	if (*head == NULL)
		*head = call;
	else
		(*tail)->qnext = call;
	*tail = call;
	/* Never sent from here: the caller's callback must not run before
	 * this returns. */
	return true;
}

/* A periodic script call (age, sweep) answering with items. */
static bool decide_items_call(struct decide *d, const char *mode,
			      int64_t now_ms, int limit, decide_items_cb cb,
			      void *arg)
{
	const struct config *cfg = config_current();
	struct decide_call *call;
	char now_iso[32];

	call = decide_call_new(d, DECIDE_CALL_ITEMS, true, arg);
	if (call == NULL)
		return false;
	call->cb.items = cb;
	decide_call_arg(call, "0", false);
	decide_call_arg(call, mode, false);
	decide_call_arg(call, cfg->redis_prefix, true);
	decide_call_int(call, now_ms);
	if (strcmp(mode, "sweep") == 0) {
		evt_format_time(now_ms, now_iso, sizeof(now_iso));
		decide_call_arg(call, now_iso, true);
	}
	if (!decide_call_rules(call, cfg, now_ms))
		goto fail;
	decide_call_int(call, limit);
	decide_call_int(call, DECIDE_CHANGES_MAXLEN);
	if (!decide_send(d, call))
		goto fail;
	return true;
fail:
	decide_call_free(call);
	return false;
}

bool decide_age(struct decide *d, int64_t now_ms, int limit,
		decide_items_cb cb, void *arg)
{
	return decide_items_call(d, "age", now_ms, limit, cb, arg);
}

bool decide_sweep(struct decide *d, int64_t now_ms, int limit,
		  decide_items_cb cb, void *arg)
{
	return decide_items_call(d, "sweep", now_ms, limit, cb, arg);
}

/* A script call in mode get answering through a decide_json_cb. */
static bool decide_json_call(struct decide *d, const char *mode,
			     const char *param, decide_json_cb cb, void *arg)
{
	struct decide_call *call;

	call = decide_call_new(d, DECIDE_CALL_JSON, true, arg);
	if (call == NULL)
		return false;
	call->cb.json = cb;
	decide_call_arg(call, "0", false);
	decide_call_arg(call, mode, false);
	decide_call_arg(call, config_current()->redis_prefix, true);
	decide_call_arg(call, param, true);
	if (!decide_send(d, call))
		goto fail;
	return true;
fail:
	decide_call_free(call);
	return false;
}

bool decide_script(struct decide *d, const char *mode, int nparams,
		   const char *const *params, decide_json_cb cb, void *arg)
{
	struct decide_call *call;

	if (nparams < 0 || nparams > DECIDE_ARGS_MAX - 3)
		return false;
	call = decide_call_new(d, DECIDE_CALL_JSON, true, arg);
	if (call == NULL)
		return false;
	call->cb.json = cb;
	call->nil_ok = true;
	decide_call_arg(call, "0", false);
	decide_call_arg(call, mode, true);
	decide_call_arg(call, config_current()->redis_prefix, true);
	for (int i = 0; i < nparams; i++)
		decide_call_arg(call, params[i], true);
	if (!decide_send(d, call)) {
		decide_call_free(call);
		return false;
	}
	return true;
}

bool decide_incident(struct decide *d, int64_t incident_id, decide_json_cb cb,
		     void *arg)
{
	char id[24];

	snprintf(id, sizeof(id), "%lld", (long long)incident_id);
	return decide_json_call(d, "get", id, cb, arg);
}

/* A stream id as we hand them out: "<ms>" or "<ms>-<seq>", each part a
 * 64-bit unsigned decimal. */
static bool decide_stream_id_valid(const char *s)
{
	const char *p = s;

	if (s == NULL)
		return false;
	for (int part = 0; part < 2; part++) {
		const char *start = p;
		unsigned long long v;
		char *end;

		while (*p >= '0' && *p <= '9')
			p++;
		if (p == start || p - start > 20)
			return false;
		errno = 0;
		v = strtoull(start, &end, 10);
		(void)v;
		if (errno != 0 || end != p)
			return false;
		if (*p == '\0')
			return true;
		if (part == 1 || *p != '-')
			return false;
		p++;
	}
	return false;
}

bool decide_changes_since(struct decide *d, const char *last_id, size_t max,
			  decide_changes_cb cb, void *arg)
{
	struct decide_call *call;

	if (!decide_stream_id_valid(last_id) || max == 0) {
		log_warn("decide: a malformed change id to resume after "
			 "(%zu chars)",
			 last_id != NULL ? strlen(last_id) : (size_t)0);
		cb(true, true, 0, NULL, NULL, arg);
		return true;
	}
	call = decide_call_new(d, DECIDE_CALL_CHANGES, false, arg);
	if (call == NULL)
		return false;
	call->cb.changes = cb;
	decide_call_arg(call, "XRANGE", false);
	decide_call_arg2(call, config_current()->redis_prefix, "changes");
	decide_call_arg(call, last_id, true); /* inclusive: see the answer */
	decide_call_arg(call, "+", false);
	decide_call_arg(call, "COUNT", false);
	decide_call_int(call, max + 1);
	call->max_changes = max;
	if (!decide_send(d, call))
		goto fail;
	return true;
fail:
	decide_call_free(call);
	return false;
}
