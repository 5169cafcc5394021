/* notify: the notifications of one fired escalation level, to every target
 * of that level: console groups (the stream already shows the level; the
 * attempt is recorded), SMS (notify_sms), phone calls and generic webhooks
 * (notify_call). Each outgoing request has the timeout of [channels], is
 * retried with exponential backoff and jitter, carries one idempotency key
 * "<incident>@<run>:<level>:<channel>:<target>" on every attempt (also
 * after a restart: the key is derived from what Redis keeps; run is when
 * the incident's escalation started, so that a key stays unique when Redis
 * loses its data and incident ids start again), and gives up after
 * [channels] retries; every attempt and the give-up are rows of the
 * notifications table. */
#ifndef ALERTD_NOTIFY_H
#define ALERTD_NOTIFY_H

#include <stdbool.h>
#include <stdint.h>

struct event_base;
struct pg_conn;
struct notify;

/* All jobs of the level have ended; gave_up: at least one target could not
 * be reached. */
typedef void (*notify_done_cb)(int64_t incident_id, int level, bool gave_up,
			       void *arg);

struct notify *notify_new(struct event_base *base, struct pg_conn *pg);
/* Jobs in flight are dropped (their levels stay pending in Redis and are
 * taken up again after the restart). */
void notify_free(struct notify *n);

/* Before each retry the job asks whether the incident still wants it (an
 * ack or resolve stops the retries of the level already fired, too). */
typedef void (*notify_wanted_cb)(bool wanted, void *job);
typedef void (*notify_check_fn)(int64_t incident_id, notify_wanted_cb done,
				void *job, void *arg);
void notify_set_check(struct notify *n, notify_check_fn fn, void *arg);

/* Starts the level's jobs; cb once they all ended (possibly at once).
 * run: esc_run_ms of the level (0: a level claimed without one). */
void notify_level(struct notify *n, int64_t incident_id, int level,
		  int64_t run, const char *snapshot_json, notify_done_cb cb,
		  void *arg);
/* The same for a level taken up again (its instance died, or its esc_done
 * was lost): first asks PostgreSQL for the rows of the earlier attempts
 * and skips every target that has one other than 'failed' (sent, shown,
 * gave_up, cancelled, a delivery report); the others go on with the next
 * attempt number. Without an answer from PostgreSQL it asks again once a
 * second, and after 10 tries sends anyway (attempts from 100 * resumed). */
void notify_resume(struct notify *n, int64_t incident_id, int level,
		   int64_t run, int resumed, const char *snapshot_json,
		   notify_done_cb cb, void *arg);
/* true while this level's jobs run in this process. */
bool notify_busy(const struct notify *n, int64_t incident_id, int level);

/* One row of the notifications table (also for delivery reports). target
 * is stored as given: mask numbers first. detail_json may be NULL. A row
 * PostgreSQL cannot take now is kept (at most 10000) and written again by
 * notify_tick. */
void notify_record(struct notify *n, const char *key, int attempt,
		   int64_t incident_id, int level, const char *channel,
		   const char *target, const char *outcome,
		   const char *detail_json);
/* Writes the rows that waited for PostgreSQL; the janitor, every second. */
void notify_tick(struct notify *n);

#endif
