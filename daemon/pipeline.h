/* pipeline: one accepted event through decide (Redis) -> record
 * (PostgreSQL, group commit) -> answer the sender. The consoles get the
 * change from the Redis change stream (daemon/follow.c).
 *
 * The sender is answered only after the event's audit row has committed.
 * If Redis or PostgreSQL cannot take the event now, the sender gets a
 * retryable "unavailable" answer, never a success. A duplicate is answered
 * only after its (original) row is known durable: its row is written again,
 * idempotently, so that a retry after a lost answer is always safe.
 *
 * At most [server] pipeline_max_inflight jobs are started (in decide or
 * record) at a time; the others wait in two FIFO queues, urgent (panic,
 * silent_alarm, call_request, callback_request: a person in danger or
 * asking for one) and normal (fault, heartbeat, test), and a free slot
 * always takes the urgent queue first. Urgent jobs may take a sixteenth
 * more slots (at least one) that normal jobs never take, so an alarm
 * starts at once even when the backlog fills the pipeline; its audit row
 * then goes ahead of the backlog's rows too (audit_record_urgent). So an
 * alarm never waits behind the queued backlog, only behind the decide
 * call and the audit batch in flight; the bound also keeps the Redis
 * queue far from its command deadline. */
#ifndef ALERTD_PIPELINE_H
#define ALERTD_PIPELINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "evt.h"

struct decide;
struct audit;
struct pipeline;
struct pipeline_job;

struct pipeline_answer {
	const char *event_id;       /* of the submitted event */
	bool durable;               /* true: 202 / Ack */
	enum evt_outcome outcome;
	int64_t incident_id;
	int priority;
	/* when !durable: */
	const char *error_code;     /* "unavailable" */
	const char *detail;
	int retry_after_s;
};

/* Called exactly once per job unless the job was detached. */
typedef void (*pipeline_answer_cb)(const struct pipeline_answer *ans,
				   void *arg);

struct pipeline *pipeline_new(struct decide *decide, struct audit *audit);
void pipeline_free(struct pipeline *p);

/* Takes ownership of ev (validated, authenticated). The callback may run
 * before pipeline_submit returns (Redis not connected). Returns the job, or
 * NULL if the callback already ran. */
struct pipeline_job *pipeline_submit(struct pipeline *p, struct evt *ev,
				     pipeline_answer_cb cb, void *arg);

/* The sender went away: the job still finishes (decided, recorded) but
 * nobody is answered. A queued job too: it is decided and recorded when
 * its turn comes, because it was read and authenticated, and a panic whose
 * connection dropped should reach the consoles now, not on the retry (the
 * retry is a duplicate, answered from the first decision). */
void pipeline_detach(struct pipeline_job *job);

/* Jobs not yet answered (or detached and not yet finished), queued ones
 * included: drain waits for zero. */
size_t pipeline_inflight(const struct pipeline *p);

/* Jobs submitted and not started, per queue (metrics). */
size_t pipeline_queued_urgent(const struct pipeline *p);
size_t pipeline_queued_normal(const struct pipeline *p);

/* The configuration was reloaded: forget the sources held as
 * rate_limited, so that a raised flood limit applies to them at once
 * (Redis decides their next event with the new rules). */
void pipeline_release_held(struct pipeline *p);

#endif
