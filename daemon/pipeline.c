/* pipeline: decide (Redis) -> record (PostgreSQL) -> answer.
 *
 * The order is the safety argument of alertd:
 *  - the sender hears "accepted" only after the event's audit row has
 *    committed, so an answered event is never lost;
 *  - a duplicate is answered only after its row is written again
 *    (idempotently, keyed on the original accept_seq), so that a sender
 *    whose first answer was lost or was a 503 after Redis had already
 *    decided still ends with a durable row;
 *  - a change reaches the consoles even when its row could not be written
 *    yet (the audit keeps retrying it): decide.lua appends it to the
 *    change stream, which every instance reads for its consoles
 *    (daemon/follow.c); an operator seeing an alarm early is worth more
 *    than a perfectly ordered audit trail. */
#include "pipeline.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "audit.h"
#include "codec_json.h"
#include "config.h"
#include "decide.h"
#include "log.h"
#include "metrics.h"
#include "numtext.h"
#include "tzclock.h"
#include "personal.h"

/* A FIFO of jobs submitted and not started (pipeline_job.next). */
struct pipeline_queue {
	struct pipeline_job *head, *tail;
	size_t len;
};

struct pipeline {
	struct decide *decide;
	struct audit *audit;
	size_t active;   /* started: in decide or record */
	struct pipeline_queue urgent, normal;
	bool pumping;    /* pipeline_pump is on the stack */
	/* Sources Redis refused as rate_limited: source id -> the monotonic
	 * ms their flood window ends. Until then their events are refused
	 * here, without a Redis call (see pipeline_held). */
	json_t *held;
};

/* Bounds of the held table: expired entries are swept once it has
 * PIPELINE_HELD_SWEEP of them, and no more than PIPELINE_HELD_MAX are
 * kept (past that Redis refuses each event itself, as before). */
#define PIPELINE_HELD_SWEEP 256
#define PIPELINE_HELD_MAX 4096

enum pipeline_job_state {
	JOB_QUEUED,    /* submitted; waits for one of pipeline_max_inflight */
	JOB_DECIDING,  /* waiting for the Redis script */
	JOB_RECORDING, /* decided; waiting for the audit commit */
};

struct pipeline_job {
	struct pipeline *p;
	enum pipeline_job_state state;
	struct evt *ev;
	pipeline_answer_cb cb; /* NULL once detached */
	void *arg;
	struct timespec started;
	/* The decision, kept for the answer once the row is durable. */
	enum evt_outcome outcome;
	int64_t incident_id;
	int priority;
	int64_t decided_at_ms; /* the decision clock when started */
	struct pipeline_job *next; /* in a queue while JOB_QUEUED */
};

static void pipeline_pump(struct pipeline *p);

struct pipeline *pipeline_new(struct decide *decide, struct audit *audit)
{
	struct pipeline *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return NULL;
	p->decide = decide;
	p->audit = audit;
	p->held = json_object();
	if (p->held == NULL) {
		free(p);
		return NULL;
	}
	return p;
}

/* Jobs never started (the loop stopped before a slot freed) are freed
 * unanswered: their senders are gone with the ingest. */
static void pipeline_queue_free(struct pipeline_queue *q)
{
	while (q->head != NULL) {
		struct pipeline_job *job = q->head;

		q->head = job->next;
		evt_free(job->ev);
		free(job);
	}
	q->tail = NULL;
	q->len = 0;
}

void pipeline_free(struct pipeline *p)
{
	if (p == NULL)
		return;
	pipeline_queue_free(&p->urgent);
	pipeline_queue_free(&p->normal);
	json_decref(p->held);
	free(p);
}

size_t pipeline_inflight(const struct pipeline *p)
{
	return p->active + p->urgent.len + p->normal.len;
}

size_t pipeline_queued_urgent(const struct pipeline *p)
{
	return p->urgent.len;
}

size_t pipeline_queued_normal(const struct pipeline *p)
{
	return p->normal.len;
}

void pipeline_release_held(struct pipeline *p)
{
	size_t n = json_object_size(p->held);

	if (n == 0)
		return;
	json_object_clear(p->held);
	log_info("pipeline: %zu rate-limited sources released after the "
		 "reload; Redis decides their next events", n);
}

void pipeline_detach(struct pipeline_job *job)
{
	job->cb = NULL;
	job->arg = NULL;
}

static int64_t pipeline_mono_ms(const struct timespec *t)
{
	return (int64_t)t->tv_sec * 1000 + t->tv_nsec / 1000000;
}

/* The ms until the source's flood window ends if Redis refused it as
 * rate_limited in that window, else 0. Past the hard limit Redis refuses
 * every event of the window (it only counts up), so answering here is the
 * same answer without the Redis call: a flooding source costs alertd one
 * table lookup per event instead of a script call beside everyone else's
 * events. One difference, documented: a re-send of an event accepted
 * earlier gets rate_limited here instead of its first answer, until the
 * window ends (then it gets that answer). */
static int64_t pipeline_held(struct pipeline *p, const char *source_id)
{
	json_t *until = json_object_get(p->held, source_id);
	struct timespec now;
	int64_t left;

	if (until == NULL)
		return 0;
	clock_gettime(CLOCK_MONOTONIC, &now);
	left = json_integer_value(until) - pipeline_mono_ms(&now);
	if (left <= 0) {
		json_object_del(p->held, source_id);
		return 0;
	}
	return left;
}

/* Redis refused the job's source as rate_limited: hold it until the
 * window ends, counted from when the job started (before Redis read its
 * clock), so the hold never outlasts the window. */
static void pipeline_hold(struct pipeline *p, const struct pipeline_job *job,
			  int retry_after_ms)
{
	struct timespec now;
	const char *key;
	json_t *v;
	void *tmp;

	if (retry_after_ms <= 0)
		return;
	if (json_object_size(p->held) >= PIPELINE_HELD_SWEEP) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		json_object_foreach_safe(p->held, tmp, key, v)
			if (json_integer_value(v) <= pipeline_mono_ms(&now))
				json_object_del(p->held, key);
	}
	if (json_object_size(p->held) >= PIPELINE_HELD_MAX)
		return;
	json_object_set_new(p->held, job->ev->source_id,
			    json_integer(pipeline_mono_ms(&job->started) +
					 retry_after_ms));
}

/* Answers the sender (unless detached) and frees the job. */
static void pipeline_finish(struct pipeline_job *job,
			    struct pipeline_answer *ans)
{
	struct pipeline *p = job->p;

	ans->event_id = job->ev->event_id;
	if (job->cb != NULL)
		job->cb(ans, job->arg);
	p->active--;
	evt_free(job->ev);
	free(job);
	pipeline_pump(p);
}

static void pipeline_finish_unavailable(struct pipeline_job *job,
					const char *detail)
{
	struct pipeline_answer ans = {
		.durable = false,
		.error_code = "unavailable",
		.detail = detail,
		.retry_after_s = config_current()->retry_after_s,
	};

	pipeline_finish(job, &ans);
}

static void pipeline_on_recorded(bool durable, void *arg)
{
	struct pipeline_job *job = arg;
	struct pipeline_answer ans = {
		.durable = true,
		.outcome = job->outcome,
		.incident_id = job->incident_id,
		.priority = job->priority,
	};

	if (!durable) {
		log_warn("event=%s source=%s: not durable, answering unavailable",
			 job->ev->event_id, job->ev->source_id);
		pipeline_finish_unavailable(job,
					    "the audit store cannot record the event now; send it again");
		return;
	}
	metrics_count_event(job->ev->type, job->outcome);
	metrics_observe(METRICS_INGEST, metrics_since(&job->started));
	pipeline_finish(job, &ans);
}

/* A refusal by the rules (nothing written): 429 rate_limited (retryable)
 * or 403 unknown_source. */
static void pipeline_finish_refused(struct pipeline_job *job,
				   const struct decide_result *res)
{
	bool limited = strcmp(res->refused, "rate_limited") == 0;
	struct pipeline_answer ans = {
		.durable = false,
		.error_code = res->refused,
		.detail = limited
				  ? "this source sends faster than its hard limit; send the event again later"
				  : "the source is not in the device registry",
		.retry_after_s = limited ? (res->retry_after_ms + 999) / 1000 : 0,
	};

	if (limited && ans.retry_after_s < 1)
		ans.retry_after_s = 1;
	log_debug("event=%s source=%s: refused: %s", job->ev->event_id,
		  job->ev->source_id, res->refused);
	pipeline_finish(job, &ans);
}

static void pipeline_on_transition_recorded(bool durable, void *arg)
{
	(void)durable;
	(void)arg;
}

/* The event resolved its source's device_offline incident: record the
 * transition (retried by the audit if PostgreSQL is away). */
static void pipeline_record_resolved(struct pipeline_job *job,
				     const struct decide_result *res)
{
	char transition_id[48], detail[160];
	struct audit_transition_row tr = {
		.transition_id = transition_id,
		.incident_id = res->resolved_id,
		.from_state = res->resolved_from,
		.to_state = "resolved",
		.actor = "alertd",
		.detail_json = detail,
		.at_ms = job->decided_at_ms,
	};

	snprintf(transition_id, sizeof(transition_id), "%" PRId64 ":%" PRId64,
		 res->resolved_id, res->resolved_version);
	/* event_id is [A-Za-z0-9._:-]: no JSON escaping needed. */
	snprintf(detail, sizeof(detail),
		 "{\"reason\":\"device heard again\",\"event_id\":\"%s\"}",
		 job->ev->event_id);
	log_info("incident=%" PRId64 " source=%s: device_offline resolved",
		 res->resolved_id, job->ev->source_id);
	audit_record(job->p->audit, NULL, &tr, pipeline_on_transition_recorded,
		     NULL);
}

static void pipeline_on_decided(const struct decide_result *res, void *arg)
{
	struct pipeline_job *job = arg;
	struct evt *ev = job->ev;
	char transition_id[48];
	char *payload;

	if (res == NULL) {
		pipeline_finish_unavailable(job,
					    "the incident store cannot decide the event now; send it again");
		return;
	}
	if (res->refused != NULL) {
		if (strcmp(res->refused, "rate_limited") == 0)
			pipeline_hold(job->p, job, res->retry_after_ms);
		pipeline_finish_refused(job, res);
		return;
	}
	if (res->resolved_id > 0)
		pipeline_record_resolved(job, res);
	job->state = JOB_RECORDING;
	job->outcome = res->outcome;
	job->incident_id = res->incident_id;
	job->priority = res->priority;
	log_debug("event=%s source=%s: %s incident=%" PRId64 " priority=%d",
		  ev->event_id, ev->source_id, evt_outcome_name(res->outcome),
		  res->incident_id, res->priority);

	/* The consoles get the change from the change stream
	 * (daemon/follow.c), like every instance's. */
	/* Personal attrs are stored as [audit] personal_store says. */
	payload = codec_json_encode_event(ev);
	if (payload != NULL && ev->n_attrs > 0) {
		char *stored = personal_store_payload(config_current(), payload);

		free(payload);
		payload = stored;
	}
	if (payload == NULL) {
		pipeline_finish_unavailable(job, "out of memory");
		return;
	}
	struct audit_event_row row = {
		.accept_seq = res->accept_seq,
		.event_id = ev->event_id,
		.source_id = ev->source_id,
		.source_kind = evt_kind_name(ev->kind),
		.type = evt_type_name(ev->type),
		.outcome = evt_outcome_name(res->original_outcome),
		.incident_id = res->incident_id,
		.priority = res->priority,
		.has_occurred_at = ev->occurred_at != NULL,
		.occurred_at_ms = ev->occurred_at != NULL ? ev->occurred_at_ms : 0,
		.received_at_ms = ev->received_at_ms,
		.payload_json = payload,
		.redelivery = res->outcome == EVT_OUTCOME_DUPLICATE,
	};
	/* The opening transition has a fixed id, so recording it again for a
	 * duplicate delivery is a no-op. */
	if (res->opened) {
		size_t n = numtext_i64(transition_id, res->incident_id);

		memcpy(transition_id + n, ":open", sizeof(":open"));
	}
	struct audit_transition_row tr = {
		.transition_id = transition_id,
		.incident_id = res->incident_id,
		.from_state = NULL,
		.to_state = "new",
		.actor = "alertd",
		.detail_json = NULL,
		.at_ms = res->first_seen_ms,
	};
	/* An alarm's row goes ahead of the rows of heartbeats and faults
	 * waiting for the next batch, as its job went ahead in the queues. */
	(evt_type_urgent(ev->type) ? audit_record_urgent : audit_record)(
		job->p->audit, &row, res->opened ? &tr : NULL,
		pipeline_on_recorded, job);
	free(payload);
}

/* Sends a job to Redis; false if it was answered at once (not
 * connected) and is freed. */
static bool pipeline_start(struct pipeline_job *job)
{
	struct pipeline *p = job->p;

	int64_t held_ms;

	job->state = JOB_DECIDING;
	p->active++;
	held_ms = pipeline_held(p, job->ev->source_id);
	if (held_ms > 0) {
		struct decide_result res = {
			.refused = "rate_limited",
			.retry_after_ms = (int)held_ms,
		};

		pipeline_finish_refused(job, &res);
		return false;
	}
	job->decided_at_ms = tzclock_now_ms();
	if (!decide_event(p->decide, job->ev, job->decided_at_ms,
			  pipeline_on_decided, job)) {
		pipeline_finish_unavailable(job,
					    "the incident store is not connected; send the event again");
		return false;
	}
	return true;
}

static size_t pipeline_limit(void)
{
	int max = config_current()->pipeline_max_inflight;

	return (size_t)(max > 0 ? max : 1);
}

/* The slots an urgent job may take: pipeline_max_inflight and a
 * sixteenth more (at least one), which normal jobs never take. Without
 * them, a panic read while the backlog holds every slot waits until one
 * frees, i.e. for an audit commit (tens of ms under load, several at the
 * start of a burst, when the first slots all free together). On top of
 * the limit rather than out of it: near saturation, a sixteenth fewer
 * slots for the backlog made the 10k/s tail longer (docs/BENCHMARKS.md,
 * optimisation 21). */
static size_t pipeline_urgent_limit(size_t limit)
{
	return limit + (limit / 16 > 0 ? limit / 16 : 1);
}

static struct pipeline_job *pipeline_queue_pop(struct pipeline_queue *q)
{
	struct pipeline_job *job = q->head;

	if (job == NULL)
		return NULL;
	q->head = job->next;
	if (q->head == NULL)
		q->tail = NULL;
	q->len--;
	job->next = NULL;
	return job;
}

/* Fills the free slots, the urgent queue first; normal jobs leave the
 * urgent ones' extra slots free. A start that fails at once finishes its
 * job, which calls here again: the flag keeps that from recursing, and
 * this loop goes on. */
static void pipeline_pump(struct pipeline *p)
{
	if (p->pumping)
		return;
	p->pumping = true;
	for (;;) {
		size_t limit = pipeline_limit();
		struct pipeline_job *job = NULL;

		if (p->active < pipeline_urgent_limit(limit))
			job = pipeline_queue_pop(&p->urgent);
		if (job == NULL && p->active < limit)
			job = pipeline_queue_pop(&p->normal);
		if (job == NULL)
			break;
		pipeline_start(job);
	}
	p->pumping = false;
}

struct pipeline_job *pipeline_submit(struct pipeline *p, struct evt *ev,
				     pipeline_answer_cb cb, void *arg)
{
	struct pipeline_job *job = calloc(1, sizeof(*job));
	bool urgent = evt_type_urgent(ev->type);
	size_t limit = pipeline_limit();
	size_t room = urgent ? pipeline_urgent_limit(limit) : limit;
	struct pipeline_queue *q;

	if (job == NULL) {
		struct pipeline_answer ans = {
			.error_code = "unavailable",
			.detail = "out of memory",
			.retry_after_s = config_current()->retry_after_s,
		};
		ans.event_id = ev->event_id;
		cb(&ans, arg);
		evt_free(ev);
		return NULL;
	}
	job->p = p;
	job->ev = ev;
	job->cb = cb;
	job->arg = arg;
	clock_gettime(CLOCK_MONOTONIC, &job->started);
	/* A slot this job may take and nobody of its lane or a higher one
	 * waiting, or a held source (answered at once, without a slot's
	 * work): start at once. */
	if ((p->active < room && p->urgent.len == 0 &&
	     (urgent || p->normal.len == 0)) ||
	    pipeline_held(p, ev->source_id) > 0)
		return pipeline_start(job) ? job : NULL;
	job->state = JOB_QUEUED;
	q = urgent ? &p->urgent : &p->normal;
	if (q->tail != NULL)
		q->tail->next = job;
	else
		q->head = job;
	q->tail = job;
	q->len++;
	return job;
}
