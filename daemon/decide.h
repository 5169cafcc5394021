/* decide: the incident model in Redis. One server-side script
 * (lua/decide.lua, loaded once with SCRIPT LOAD, called with EVALSHA, with a
 * NOSCRIPT fallback that reloads it) decides each event atomically in one
 * call: event_id idempotency, merge into the open incident of the same
 * source and type class or open a new one, the priority, the place in the
 * priority queue, and the change record that the consoles' streams replay.
 *
 * Redis keys (prefix from the config, "alertd:" by default) are described
 * in docs/redis.md. */
#ifndef ALERTD_DECIDE_H
#define ALERTD_DECIDE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "evt.h"

struct redis_pool;
struct decide;

struct decide_result {
	enum evt_outcome outcome;          /* what the sender is told */
	enum evt_outcome original_outcome; /* new/merged; for a duplicate, the
					      outcome of the first delivery */
	int64_t incident_id;
	int priority;
	int64_t accept_seq;  /* unique per accepted event (Redis counter); a
				duplicate carries the original's: the audit
				row's idempotency key */
	bool opened;         /* this event (originally) opened the incident */
	int64_t version;     /* incident version after this event */
	int64_t first_seen_ms;
	/* Set only when the incident changed (not for a duplicate): */
	const char *snapshot_json; /* incident snapshot (contract JSON) */
	const char *change_id;     /* Redis stream id of the change = SSE id;
				      NULL when quiet or a heartbeat */
	/* Issue 3 (docs/prioritisation.md): */
	const char *refused;       /* "unknown_source" / "rate_limited": the
				      event was refused and nothing written;
				      the fields above are unset */
	int retry_after_ms;        /* rate_limited: until the window ends */
	bool quiet;                /* flood: changed but not to be published */
	/* The source's device_offline incident was resolved by this event: */
	int64_t resolved_id;       /* 0: none */
	const char *resolved_from; /* its state before */
	int64_t resolved_version;
	const char *resolved_snapshot;
	const char *resolved_change_id;
};

/* One incident changed by a periodic script mode (age, sweep). */
struct decide_item {
	int64_t incident_id;
	const char *snapshot_json;
	const char *change_id;
	int64_t last_seen_ms; /* sweep: the source's last-seen (0: never) */
};

/* res is NULL when Redis is unavailable or the deadline passed; the
 * strings in res are valid only during the call. */
typedef void (*decide_event_cb)(const struct decide_result *res, void *arg);
/* ok false: Redis unavailable. json NULL with ok true: not found. */
typedef void (*decide_json_cb)(bool ok, const char *json, void *arg);
/* ok false: Redis unavailable. Else the changes after last_id, oldest
 * first, or gap true (and n 0): they cannot all be read back, because
 * last_id's own entry is no longer in the stream (trimmed by its cap, or
 * an id this stream never had) or `max` or more changes followed it. */
typedef void (*decide_changes_cb)(bool ok, bool gap, size_t n,
				  const char *const *ids,
				  const char *const *snapshots, void *arg);

/* ok false: Redis unavailable. The items are valid during the call. */
typedef void (*decide_items_cb)(bool ok, size_t n,
				const struct decide_item *items, void *arg);

/* Installs the pool's on_connect callback (SCRIPT LOAD on every connect). */
struct decide *decide_new(struct redis_pool *pool);
/* Does not touch the pool: free the pool first (its pending calls are then
 * answered with NULL while d is alive), or at least before it can
 * reconnect. */
void decide_free(struct decide *d);

/* Decides one event with the priorities and TTLs of config_current().
 * now_ms is the decision time (injectable for tests of time rules).
 * The event is sent in the loop's next turn, with the other events queued
 * in this turn (64 per script call), and decided after the events queued
 * before it; cb never runs before this returns. Returns false (cb not
 * called) if Redis is not connected. */
bool decide_event(struct decide *d, const struct evt *ev, int64_t now_ms,
		  decide_event_cb cb, void *arg)
	__attribute__((warn_unused_result));

/* Sends the events queued in this turn now instead of in the next one.
 * daemon_free calls it before it frees the pool, so that every event is
 * answered (with NULL by the pool) while the modules that asked are
 * alive. */
void decide_flush(struct decide *d);

/* One incident's snapshot as a JSON object. */
bool decide_incident(struct decide *d, int64_t incident_id, decide_json_cb cb,
		     void *arg) __attribute__((warn_unused_result));

/* The recorded changes after last_id (a stream id), fewer than `max`, or
 * a gap (decide_changes_cb). A malformed last_id is answered as a gap
 * before this returns. */
bool decide_changes_since(struct decide *d, const char *last_id, size_t max,
			  decide_changes_cb cb, void *arg)
	__attribute__((warn_unused_result));

/* Raises the floor of the script's counters (rules.h): incident ids and
 * accept_seq continue above what is known to have been given, even after
 * Redis lost its data. alertd raises it from every reply itself; seqfloor
 * adds what PostgreSQL holds. */
void decide_raise_floor(struct decide *d, int64_t incident, int64_t accept);

/* Re-applies aging to the incidents whose aging step is due at now_ms
 * (at most limit), one script call. */
bool decide_age(struct decide *d, int64_t now_ms, int limit,
		decide_items_cb cb, void *arg) __attribute__((warn_unused_result));

/* Opens a device_offline incident for each registered source whose
 * supervision interval ran out by now_ms (at most limit), once per
 * silence, one script call. */
bool decide_sweep(struct decide *d, int64_t now_ms, int limit,
		  decide_items_cb cb, void *arg)
	__attribute__((warn_unused_result));

/* Any other mode of the script (operator actions, escalation): argv is
 * "0 mode prefix params...", the reply is the script's string (JSON) or
 * NULL with ok true for a nil reply. At most 16 params. */
bool decide_script(struct decide *d, const char *mode, int nparams,
		   const char *const *params, decide_json_cb cb, void *arg)
	__attribute__((warn_unused_result));

/* The script text (embedded at build time) and its SHA-1, for alertctl. */
const char *decide_script_text(void);

#endif
