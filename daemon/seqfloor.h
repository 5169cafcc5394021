/* seqfloor: what PostgreSQL holds of the ids decide.lua's counters gave
 * (the highest incident id, and the highest accept_seq among the newest
 * audited events), raised into decide's floor (decide_raise_floor), so
 * that after Redis lost its data the counters continue above every id the
 * audit trail already has instead of starting again at 1 (docs/redis.md).
 * Read once PostgreSQL is reachable, then every 10 s, so that ids given by
 * other instances sharing the Redis count too. */
#ifndef ALERTD_SEQFLOOR_H
#define ALERTD_SEQFLOOR_H

#include <stdbool.h>

struct decide;
struct pg_conn;
struct seqfloor;

struct seqfloor *seqfloor_new(struct decide *decide, struct pg_conn *pg);
/* Free after the PostgreSQL connection (its pending query is answered
 * first). */
void seqfloor_free(struct seqfloor *s);

/* Called by the janitor every 100 ms. */
void seqfloor_tick(struct seqfloor *s);

/* A floor was read from PostgreSQL at least once. */
bool seqfloor_known(const struct seqfloor *s);

#endif
