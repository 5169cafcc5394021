/* escalate: the escalation engine (escalate.h). */
#include "escalate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/rand.h>

#include "audit.h"
#include "config.h"
#include "decide.h"
#include "log.h"
#include "notify.h"
#include "policy.h"
#include "tzclock.h"

#define ESC_POLL_MAX_MS 1000     /* poll at least this often */
#define ESC_PENDING_EVERY_MS 5000
#define ESC_PENDING_SLICE "256"  /* notify:pending fields per esc_pending */
#define ESC_BATCH "100"          /* levels claimed per call */
#define ESC_CHANGES_MAXLEN "10000"
#define ESC_DONE_MAX 10000       /* esc_done calls kept for a retry */
#define ESC_DONE_RETRY_MS 1000
/* This instance's live key: refreshed each second, gone this long after
 * the instance died or stopped. Another instance then takes up the levels
 * it was notifying (at its next esc_pending, every 5 s) without waiting
 * for their lease. Long enough to ride out a Redis restart. */
#define ESC_ALIVE_EVERY_MS 1000
#define ESC_ALIVE_TTL_MS "6000"  /* LIVE_TTL_MS in decide.lua */

enum escalate_state {
	ESC_IDLE,     /* waiting for the next due time */
	ESC_POLLING,  /* an esc_due call is in flight */
};

/* An esc_done that has not reached Redis yet. Until it lands the level
 * stays in notify:pending, and once its lease runs out another instance
 * (or this one) would take it up again: so it is sent again until Redis
 * has answered it, as long as this process lives. */
struct escalate_done {
	struct escalate_done *next;
	struct escalate *e;
	int64_t incident_id;
	int level;
	bool in_flight;
	int64_t next_ms;         /* next try */
};

struct escalate {
	struct escalate_done *done;   /* esc_done calls not answered yet */
	size_t n_done;
	struct decide *decide;
	struct audit *audit;
	struct notify *notify;
	enum escalate_state state;
	bool pending_in_flight;
	int64_t next_poll_ms;
	int64_t poll_now_ms;     /* the now_ms of the esc_due in flight */
	int64_t next_pending_ms;
	char pending_cursor[24]; /* esc_pending's HSCAN cursor, "0": a new pass */
	bool alive_in_flight;
	int64_t next_alive_ms;
	bool draining;           /* no new levels claimed or taken up */
	bool leaving;            /* the live key is to go (or gone) */
	bool gone_again;         /* esc_gone to repeat after esc_alive's reply */
	char instance[33];       /* random hex, new for every process */
};

/* How long a fired level's notifications may take before another
 * instance takes them up: every attempt's timeout and backoff. */
static int64_t escalate_lease_ms(const struct policy *p)
{
	int64_t ms = 30000, backoff = p->backoff_ms;

	for (int i = 0; i <= p->retries; i++) {
		ms += p->timeout_ms + backoff * 3 / 2;
		if (backoff < 60000)
			backoff *= 2;
	}
	return ms;
}

/* A retry's question: is the incident still nobody's? */
struct escalate_check {
	notify_wanted_cb done;
	void *job;
};

static void escalate_on_checked(bool ok, const char *json, void *arg)
{
	struct escalate_check *c = arg;
	json_t *snap = ok && json != NULL ? json_loads(json, 0, NULL) : NULL;
	const char *state = json_string_value(json_object_get(snap, "state"));

	/* Unknown (Redis down): better one call too many than one too few. */
	c->done(state == NULL || strcmp(state, "new") == 0, c->job);
	json_decref(snap);
	free(c);
}

static void escalate_check(int64_t incident_id, notify_wanted_cb done,
			   void *job, void *arg)
{
	struct escalate *e = arg;
	struct escalate_check *c = malloc(sizeof(*c));

	if (c == NULL) {
		done(true, job);
		return;
	}
	c->done = done;
	c->job = job;
	if (!decide_incident(e->decide, incident_id, escalate_on_checked, c)) {
		free(c);
		done(true, job);
	}
}

struct escalate *escalate_new(struct decide *decide, struct audit *audit,
			      struct notify *notify)
{
	struct escalate *e = calloc(1, sizeof(*e));

	if (e == NULL)
		return NULL;
	e->decide = decide;
	e->audit = audit;
	e->notify = notify;
	e->state = ESC_IDLE;
	strcpy(e->pending_cursor, "0");
	{
		unsigned char raw[16];

		if (RAND_bytes(raw, sizeof(raw)) != 1) {
			log_error("escalate: no random bytes for the "
				  "instance id");
			free(e);
			return NULL;
		}
		for (size_t i = 0; i < sizeof(raw); i++)
			snprintf(e->instance + 2 * i, 3, "%02x", raw[i]);
	}
	log_info("escalate: instance %s", e->instance);
	notify_set_check(notify, escalate_check, e);
	return e;
}

void escalate_free(struct escalate *e)
{
	struct escalate_done *d;

	if (e == NULL)
		return;
	if (e->n_done > 0)
		log_error("escalate: %zu levels end without their esc_done; "
			  "they are taken up again after their lease",
			  e->n_done);
	/* Main frees the Redis pool first: no answer is outstanding. */
	while ((d = e->done) != NULL) {
		e->done = d->next;
		free(d);
	}
	free(e);
}

static void escalate_on_script(bool ok, const char *json, void *arg)
{
	(void)ok;
	(void)json;
	(void)arg;
}

static void escalate_script(struct escalate *e, const char *mode,
			    int nparams, const char *const *params)
{
	if (!decide_script(e->decide, mode, nparams, params,
			   escalate_on_script, NULL))
		log_warn("escalate: cannot send %s (Redis unavailable)", mode);
}

static void escalate_done_send(struct escalate_done *d);

static void escalate_on_done_sent(bool ok, const char *json, void *arg)
{
	struct escalate_done *d = arg, **pp;
	struct escalate *e = d->e;

	(void)json;
	d->in_flight = false;
	if (!ok) {
		d->next_ms = tzclock_now_ms() + ESC_DONE_RETRY_MS;
		return;
	}
	for (pp = &e->done; *pp != NULL; pp = &(*pp)->next)
		if (*pp == d) {
			*pp = d->next;
			break;
		}
	e->n_done--;
	free(d);
}

static void escalate_done_send(struct escalate_done *d)
{
	char id[24], lv[16];
	const char *params[2] = {id, lv};

	snprintf(id, sizeof(id), "%lld", (long long)d->incident_id);
	snprintf(lv, sizeof(lv), "%d", d->level);
	d->in_flight = decide_script(d->e->decide, "esc_done", 2, params,
				     escalate_on_done_sent, d);
	if (!d->in_flight)
		d->next_ms = tzclock_now_ms() + ESC_DONE_RETRY_MS;
}

/* The esc_done calls that Redis has not answered: again, each second. */
static void escalate_done_retry(struct escalate *e, int64_t now)
{
	struct escalate_done *d;

	for (d = e->done; d != NULL; d = d->next)
		if (!d->in_flight && now >= d->next_ms) {
			log_info("escalate: incident=%lld level %d: sending "
				 "esc_done again", (long long)d->incident_id,
				 d->level);
			escalate_done_send(d);
		}
}

static void escalate_done(struct escalate *e, int64_t incident_id,
			  int level)
{
	struct escalate_done *d;

	if (e->n_done >= ESC_DONE_MAX ||
	    (d = calloc(1, sizeof(*d))) == NULL) {
		log_error("escalate: incident=%lld level %d: esc_done not kept "
			  "(%zu wait for Redis); the level may be taken up "
			  "again after its lease", (long long)incident_id,
			  level, e->n_done);
		return;
	}
	d->e = e;
	d->incident_id = incident_id;
	d->level = level;
	d->next = e->done;
	e->done = d;
	e->n_done++;
	escalate_done_send(d);
}

/* notify_done_cb: the level's notifications have ended. */
static void escalate_on_level_done(int64_t incident_id, int level,
				   bool gave_up, void *arg)
{
	struct escalate *e = arg;
	char id[24], lv[16], now[24];

	escalate_done(e, incident_id, level);
	if (gave_up) {
		const char *params[3] = {id, now, lv};

		/* Nobody could be reached at this level: the next one now,
		 * unless the next is the repeat of the last level (that one
		 * waits its interval; decide.lua decides). */
		snprintf(id, sizeof(id), "%lld", (long long)incident_id);
		snprintf(lv, sizeof(lv), "%d", level);
		snprintf(now, sizeof(now), "%lld",
			 (long long)tzclock_now_ms());
		log_warn("escalate: incident=%s level %d: a channel gave up; "
			 "the next level comes now unless it is a repeat", id,
			 level);
		escalate_script(e, "esc_hurry", 3, params);
		e->next_poll_ms = 0;
	}
}

static void escalate_on_audited(bool durable, void *arg)
{
	if (!durable)
		log_warn("escalate: transition row kept for retry");
}

/* The 'escalated' transition row of a level. A resumed level writes it
 * again with the same transition_id and time: a row already written is
 * not written twice, and one whose claim's reply was lost is written. */
static void escalate_record(struct escalate *e, int64_t id, int level,
			    int64_t version, int64_t at_ms)
{
	char tid[48], detail[48];
	struct audit_transition_row row;

	snprintf(tid, sizeof(tid), "%lld:%lld", (long long)id,
		 (long long)version);
	snprintf(detail, sizeof(detail), "{\"level\":%d}", level);
	row = (struct audit_transition_row){
		.transition_id = tid,
		.incident_id = id,
		.from_state = "new",
		.to_state = "escalated",
		.actor = "alertd",
		.detail_json = detail,
		.at_ms = at_ms,
	};
	audit_record(e->audit, NULL, &row, escalate_on_audited, NULL);
}

static void escalate_fired(struct escalate *e, json_t *f, int64_t now)
{
	int64_t id = json_integer_value(json_object_get(f, "id"));
	int level = (int)json_integer_value(json_object_get(f, "level"));
	int64_t version = json_integer_value(json_object_get(f, "version"));
	int64_t run = json_integer_value(json_object_get(f, "run"));
	const char *snap = json_string_value(json_object_get(f, "snapshot"));
	const char *cid = json_string_value(json_object_get(f, "change_id"));

	if (id <= 0 || level <= 0 || snap == NULL || cid == NULL)
		return;
	log_info("escalate: incident=%lld level %d fired", (long long)id,
		 level);
	/* at: the claim's time, as the pending record keeps it. */
	escalate_record(e, id, level, version, now);
	notify_level(e->notify, id, level, run, snap, escalate_on_level_done,
		     e);
}

static void escalate_on_due(bool ok, const char *json, void *arg)
{
	struct escalate *e = arg;
	int64_t now = tzclock_now_ms(), next, claimed = e->poll_now_ms;
	json_t *r, *fired, *f;
	size_t i;

	e->state = ESC_IDLE;
	e->next_poll_ms = now + ESC_POLL_MAX_MS;
	if (!ok || json == NULL || (r = json_loads(json, 0, NULL)) == NULL)
		return;
	fired = json_object_get(r, "fired");
	json_array_foreach(fired, i, f)
		escalate_fired(e, f, claimed);
	next = json_integer_value(json_object_get(r, "next"));
	if (json_is_integer(json_object_get(r, "next")) &&
	    next < e->next_poll_ms)
		e->next_poll_ms = next;
	if (json_array_size(fired) > 0)
		e->next_poll_ms = now; /* maybe more due than one batch */
	json_decref(r);
}

static void escalate_on_pending(bool ok, const char *json, void *arg)
{
	struct escalate *e = arg;
	json_t *r, *p, *levels;
	const char *cursor;
	size_t i;

	e->pending_in_flight = false;
	strcpy(e->pending_cursor, "0");
	if (!ok || json == NULL || (r = json_loads(json, 0, NULL)) == NULL)
		return;
	/* A pass over notify:pending is a few slices, one per tick. */
	cursor = json_string_value(json_object_get(r, "cursor"));
	if (cursor != NULL && strcmp(cursor, "0") != 0 &&
	    strlen(cursor) < sizeof(e->pending_cursor)) {
		strcpy(e->pending_cursor, cursor);
		e->next_pending_ms = 0;
	}
	levels = json_object_get(r, "levels");
	json_array_foreach(levels, i, p) {
		int64_t id = json_integer_value(json_object_get(p, "id"));
		int level = (int)json_integer_value(json_object_get(p, "level"));
		int64_t run = json_integer_value(json_object_get(p, "run"));
		int64_t version =
			json_integer_value(json_object_get(p, "version"));
		int64_t at = json_integer_value(json_object_get(p, "at"));
		int resumed =
			(int)json_integer_value(json_object_get(p, "resumed"));
		const char *snap =
			json_string_value(json_object_get(p, "snapshot"));

		if (id <= 0 || level <= 0 || snap == NULL ||
		    notify_busy(e->notify, id, level))
			continue;
		log_info("escalate: incident=%lld level %d: notifications "
			 "left pending; taking them up again (targets already "
			 "reached are skipped)", (long long)id, level);
		if (version > 0 && at > 0)
			escalate_record(e, id, level, version, at);
		notify_resume(e->notify, id, level, run, resumed, snap,
			      escalate_on_level_done, e);
	}
	json_decref(r);
}

static void escalate_send_gone(struct escalate *e);

static void escalate_on_alive(bool ok, const char *json, void *arg)
{
	struct escalate *e = arg;

	(void)json;
	e->alive_in_flight = false;
	if (!ok)
		e->next_alive_ms = 0; /* again at the next tick */
	if (e->gone_again) {
		e->gone_again = false;
		escalate_send_gone(e);
	}
}

/* The live key deleted at once; if an esc_alive is in flight, once more
 * after its reply, in case the refresh was carried out second (a
 * reconnect between the two). Without either, the key's TTL does it. */
static void escalate_send_gone(struct escalate *e)
{
	const char *params[1] = {e->instance};

	e->gone_again = e->alive_in_flight;
	escalate_script(e, "esc_gone", 1, params);
}

void escalate_drain(struct escalate *e)
{
	e->draining = true;
}

void escalate_leave(struct escalate *e)
{
	if (e->leaving)
		return;
	e->draining = true;
	e->leaving = true;
	log_info("escalate: instance %s leaves; levels it was notifying go "
		 "to the next instance", e->instance);
	escalate_send_gone(e);
}

/* The live key that tells other instances this one still notifies. */
static void escalate_alive(struct escalate *e, int64_t now)
{
	char now_s[24];
	const char *params[3] = {e->instance, ESC_ALIVE_TTL_MS, now_s};

	if (e->leaving || e->alive_in_flight || now < e->next_alive_ms)
		return;
	snprintf(now_s, sizeof(now_s), "%lld", (long long)now);
	e->next_alive_ms = now + ESC_ALIVE_EVERY_MS;
	e->alive_in_flight = decide_script(e->decide, "esc_alive", 3, params,
					   escalate_on_alive, e);
}

void escalate_tick(struct escalate *e)
{
	const struct policy *p = config_current()->policy;
	int64_t now = tzclock_now_ms();
	char now_s[24], lease_s[24];
	char *bands;

	escalate_done_retry(e, now);
	escalate_alive(e, now);
	if (e->draining || p == NULL || p->n_bands == 0)
		return;
	snprintf(now_s, sizeof(now_s), "%lld", (long long)now);
	snprintf(lease_s, sizeof(lease_s), "%lld",
		 (long long)escalate_lease_ms(p));
	if (!e->pending_in_flight && now >= e->next_pending_ms) {
		const char *params[6] = {now_s, lease_s, ESC_BATCH,
					 e->instance, e->pending_cursor,
					 ESC_PENDING_SLICE};

		e->next_pending_ms = now + ESC_PENDING_EVERY_MS;
		e->pending_in_flight = decide_script(e->decide, "esc_pending", 6,
						     params, escalate_on_pending,
						     e);
	}
	if (e->state != ESC_IDLE || now < e->next_poll_ms)
		return;
	if ((bands = policy_script_arg(p)) == NULL)
		return;
	{
		const char *params[6] = {now_s, ESC_BATCH, ESC_CHANGES_MAXLEN,
					 bands, lease_s, e->instance};

		e->poll_now_ms = now;
		if (decide_script(e->decide, "esc_due", 6, params,
				  escalate_on_due, e))
			e->state = ESC_POLLING;
		else
			e->next_poll_ms = now + ESC_POLL_MAX_MS;
	}
	free(bands);
}
