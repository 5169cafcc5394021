/* pipeline: decide (Redis) -> record (PostgreSQL) -> answer -> fan out.
 *
 * The order is the safety argument of alertd:
 *  - the sender hears "accepted" only after the event's audit row has
 *    committed, so an answered event is never lost;
 *  - a duplicate is answered only after its row is written again
 *    (idempotently, keyed on the original accept_seq), so that a sender
 *    whose first answer was lost or was a 503 after Redis had already
 *    decided still ends with a durable row;
 *  - a change reaches the consoles even when its row could not be written
 *    yet (the audit keeps retrying it): an operator seeing an alarm early
 *    is worth more than a perfectly ordered audit trail. */
#include "pipeline.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audit.h"
#include "codec_json.h"
#include "config.h"
#include "decide.h"
#include "fanout.h"
#include "log.h"
#include "metrics.h"
#include "personal.h"

struct pipeline {
	struct decide *decide;
	struct audit *audit;
	struct fanout *fanout;
	size_t inflight;
};

enum pipeline_job_state {
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
};

struct pipeline *pipeline_new(struct decide *decide, struct audit *audit,
			      struct fanout *fanout)
{
	struct pipeline *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return NULL;
	p->decide = decide;
	p->audit = audit;
	p->fanout = fanout;
	return p;
}

void pipeline_free(struct pipeline *p)
{
	free(p);
}

size_t pipeline_inflight(const struct pipeline *p)
{
	return p->inflight;
}

void pipeline_detach(struct pipeline_job *job)
{
	job->cb = NULL;
	job->arg = NULL;
}

static int64_t pipeline_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static double pipeline_elapsed(const struct timespec *since)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - since->tv_sec) +
	       (double)(now.tv_nsec - since->tv_nsec) / 1e9;
}

/* Answers the sender (unless detached) and frees the job. */
static void pipeline_finish(struct pipeline_job *job,
			    struct pipeline_answer *ans)
{
	ans->event_id = job->ev->event_id;
	if (job->cb != NULL)
		job->cb(ans, job->arg);
	job->p->inflight--;
	evt_free(job->ev);
	free(job);
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
	metrics_observe_ingest(pipeline_elapsed(&job->started));
	pipeline_finish(job, &ans);
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
	job->state = JOB_RECORDING;
	job->outcome = res->outcome;
	job->incident_id = res->incident_id;
	job->priority = res->priority;
	log_debug("event=%s source=%s: %s incident=%" PRId64 " priority=%d",
		  ev->event_id, ev->source_id, evt_outcome_name(res->outcome),
		  res->incident_id, res->priority);

	if (res->snapshot_json != NULL && res->change_id != NULL)
		fanout_publish(job->p->fanout, res->change_id,
			       res->snapshot_json);

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
		.occurred_at_ms = ev->occurred_at != NULL ? ev->occurred_at_ms : 0,
		.received_at_ms = ev->received_at_ms,
		.payload_json = payload,
	};
	/* The opening transition has a fixed id, so recording it again for a
	 * duplicate delivery is a no-op. */
	snprintf(transition_id, sizeof(transition_id), "%" PRId64 ":open",
		 res->incident_id);
	struct audit_transition_row tr = {
		.transition_id = transition_id,
		.incident_id = res->incident_id,
		.from_state = NULL,
		.to_state = "new",
		.actor = "alertd",
		.detail_json = NULL,
		.at_ms = res->first_seen_ms,
	};
	audit_record(job->p->audit, &row, res->opened ? &tr : NULL,
		     pipeline_on_recorded, job);
	free(payload);
}

struct pipeline_job *pipeline_submit(struct pipeline *p, struct evt *ev,
				     pipeline_answer_cb cb, void *arg)
{
	struct pipeline_job *job = calloc(1, sizeof(*job));

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
	job->state = JOB_DECIDING;
	clock_gettime(CLOCK_MONOTONIC, &job->started);
	p->inflight++;
	if (!decide_event(p->decide, ev, pipeline_now_ms(), pipeline_on_decided,
			  job)) {
		pipeline_finish_unavailable(job,
					    "the incident store is not connected; send the event again");
		return NULL;
	}
	return job;
}
