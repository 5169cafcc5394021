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

#endif
