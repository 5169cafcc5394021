/* presence: who is on duty, and the staffing incident. Every second each
 * instance puts the operators and supervisors with an open stream into
 * Redis (sorted set presence, entries expiring after 3 s, so that the
 * count covers every instance and a dead instance's consoles drop out).
 * When fewer than [presence] min_on_duty are connected, one instance opens
 * a staffing incident (an event of source "alertd-staffing" through the
 * normal pipeline: audited, streamed, escalated like any other); when
 * staff returns, alertd resolves it. */
#ifndef ALERTD_PRESENCE_H
#define ALERTD_PRESENCE_H

struct audit;
struct decide;
struct fanout;
struct pipeline;
struct presence;

struct presence *presence_new(struct decide *decide, struct pipeline *pipeline,
			      struct audit *audit, struct fanout *fanout);
/* After redis_pool_free and pipeline_free (they answer calls in flight). */
void presence_free(struct presence *p);
/* Called by the janitor once a second. */
void presence_tick(struct presence *p);

#endif
