/* registry: keeps the device registry in Redis. The sources table in
 * PostgreSQL (written by `alertctl sources import`) is the truth; decide.lua
 * reads the copy in Redis (P src:<id>, P sources). When that copy is gone
 * (Redis restarted without its data), the janitor's check loads it again
 * from PostgreSQL, so that registered sources are not refused as unknown
 * and stay supervised. Until it is back, decide.lua accepts unknown
 * sources (docs/prioritisation.md: fail open, never drop an alarm because
 * the registry is missing). */
#ifndef ALERTD_REGISTRY_H
#define ALERTD_REGISTRY_H

#include <stddef.h>

struct redis_pool;
struct pg_conn;
struct registry;

struct registry *registry_new(struct redis_pool *redis, struct pg_conn *pg);
/* Free after the Redis pool and the PostgreSQL connection (their pending
 * calls are answered first). */
void registry_free(struct registry *r);

/* Called by the janitor about once a second; checks every 10 s. */
void registry_tick(struct registry *r);

/* Sources loaded by the last reload (0 if none happened). */
size_t registry_loaded(const struct registry *r);

#endif
