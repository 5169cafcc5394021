/* supervise: janitor-driven sweep (device_offline) and aging. */
#include "supervise.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "audit.h"
#include "config.h"
#include "decide.h"
#include "log.h"
#include "tzclock.h"

/* Incidents re-scored per aging call. A call holds Redis (and with it
 * every event's decision) while it runs, 30-80 us an incident: 1000
 * in one call stalled ingest for 17-35 ms every second while the
 * incidents of a busy minute aged (docs/BENCHMARKS.md, optimisation 31).
 * So aging goes in slices of 32, one after the other while they change
 * something, and the decisions queued meanwhile go in between. */
#define SUPERVISE_AGE_BATCH 32
/* The same for the sweep: [sources] supervision_batch sources a tick, in
 * calls of at most 32 (opening an incident costs Redis more than aging
 * one), so that a power cut silencing a district does not hold Redis. */
#define SUPERVISE_SWEEP_SLICE 32

enum supervise_call_state {
	SUPERVISE_IDLE,    /* no call in flight */
	SUPERVISE_WAITING, /* a script call is in flight */
};

struct supervise {
	struct decide *decide;
	struct audit *audit;
	enum supervise_call_state sweep, age;
	int64_t sweep_at_ms; /* decision time of the sweep in flight */
	int sweep_left;      /* of this tick's supervision_batch */
	int sweep_slice;     /* asked for by the sweep in flight */
	/* Start-up or the end of a Redis outage: heartbeats could not be
	 * heard before, so the sweep waits supervision_grace_s from here. */
	int64_t deaf_until_ms;
	bool deaf;
	uint64_t opened, aged;
};

struct supervise *supervise_new(struct decide *decide, struct audit *audit)
{
	struct supervise *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	s->decide = decide;
	s->audit = audit;
	s->deaf = true;
	return s;
}

void supervise_free(struct supervise *s)
{
	free(s);
}

uint64_t supervise_opened(const struct supervise *s)
{
	return s->opened;
}

uint64_t supervise_aged(const struct supervise *s)
{
	return s->aged;
}

static void supervise_on_recorded(bool durable, void *arg)
{
	(void)durable;
	(void)arg;
}

static void supervise_sweep(struct supervise *s, int64_t now);

static void supervise_on_swept(bool ok, size_t n,
			       const struct decide_item *items, void *arg)
{
	struct supervise *s = arg;

	s->sweep = SUPERVISE_IDLE;
	if (!ok) {
		s->deaf = true;
		return;
	}
	for (size_t i = 0; i < n; i++) {
		const struct decide_item *it = &items[i];
		char transition_id[48], detail[96];
		struct audit_transition_row tr = {
			.transition_id = transition_id,
			.incident_id = it->incident_id,
			.from_state = NULL,
			.to_state = "new",
			.actor = "alertd",
			.detail_json = detail,
			.at_ms = s->sweep_at_ms,
		};

		snprintf(transition_id, sizeof(transition_id),
			 "%" PRId64 ":open", it->incident_id);
		snprintf(detail, sizeof(detail),
			 "{\"reason\":\"device silent\",\"last_seen_ms\":%" PRId64
			 "}",
			 it->last_seen_ms);
		log_info("incident=%" PRId64 ": device_offline opened",
			 it->incident_id);
		audit_record(s->audit, NULL, &tr, supervise_on_recorded, NULL);
		s->opened++;
	}
	/* A full slice may have left more overdue: the next one now, up to
	 * supervision_batch this tick. */
	s->sweep_left -= (int)n;
	if (n >= (size_t)s->sweep_slice && s->sweep_left > 0)
		supervise_sweep(s, tzclock_now_ms());
}

static void supervise_sweep(struct supervise *s, int64_t now)
{
	int slice = s->sweep_left < SUPERVISE_SWEEP_SLICE ?
			    s->sweep_left : SUPERVISE_SWEEP_SLICE;

	s->sweep_at_ms = now;
	s->sweep_slice = slice;
	if (decide_sweep(s->decide, now, slice, supervise_on_swept, s))
		s->sweep = SUPERVISE_WAITING;
	else
		s->deaf = true; /* Redis is not connected */
}

static void supervise_age(struct supervise *s, int64_t now);

static void supervise_on_aged(bool ok, size_t n,
			      const struct decide_item *items, void *arg)
{
	struct supervise *s = arg;

	s->age = SUPERVISE_IDLE;
	if (!ok)
		return;
	(void)items; /* the consoles read the changes from the stream */
	s->aged += n;
	/* A slice that changed something may have left more due: the next
	 * one now rather than at the next tick. Each change moves its
	 * incident's due time forward, so this ends when none is due. */
	if (n > 0)
		supervise_age(s, tzclock_now_ms());
}

static void supervise_age(struct supervise *s, int64_t now)
{
	if (s->age != SUPERVISE_IDLE || config_current()->aging_step <= 0)
		return;
	if (decide_age(s->decide, now, SUPERVISE_AGE_BATCH, supervise_on_aged,
		       s))
		s->age = SUPERVISE_WAITING;
}

void supervise_tick(struct supervise *s)
{
	const struct config *cfg = config_current();
	int64_t now = tzclock_now_ms();

	if (s->deaf) {
		/* Re-armed by every failure until Redis answers again. */
		s->deaf = false;
		s->deaf_until_ms = now + (int64_t)cfg->supervision_grace_s * 1000;
	}
	if (s->sweep == SUPERVISE_IDLE && now >= s->deaf_until_ms) {
		s->sweep_left = cfg->supervision_batch;
		supervise_sweep(s, now);
	}
	supervise_age(s, now);
}
