/* escalate: the escalation engine. Due times live in Redis (esc:due, see
 * decide.lua's escalation modes), so that a restart neither loses nor
 * repeats a level and several instances fire each level once. The janitor
 * calls escalate_tick every 100 ms; when the earliest due time has come
 * (or at least once a second, for incidents other instances opened) one
 * script call claims every due level; each fired level becomes an audit
 * transition (to "escalated", with its level), a change on the consoles'
 * streams and the notifications of its targets (notify.c). A level whose
 * notifications gave up brings the next level forward to now. Every 5 s
 * levels left pending by an instance that died while notifying are taken
 * up again (same idempotency keys). */
#ifndef ALERTD_ESCALATE_H
#define ALERTD_ESCALATE_H

struct audit;
struct decide;
struct escalate;
struct notify;

struct escalate *escalate_new(struct decide *decide, struct audit *audit,
			      struct notify *notify);
/* After redis_pool_free (which answers the calls in flight). */
void escalate_free(struct escalate *e);
void escalate_tick(struct escalate *e);
/* Shutdown. Draining: no level is claimed or taken up any more (the
 * notifications under way go on); they wait in Redis for another
 * instance or the next start. Leaving (the drain is done, the process
 * exits in a moment): the live key is deleted, so that other instances
 * take up the levels still being notified at their next look at
 * notify:pending instead of after the key's TTL. */
void escalate_drain(struct escalate *e);
void escalate_leave(struct escalate *e);

#endif
