/* operators: the operator tokens (hashed in PostgreSQL, table operators)
 * cached in memory. The cache is refreshed at start, when alertctl sends
 * NOTIFY alertd_operators, every 60 s, and on a miss (at most once a
 * second), so that a new token works at once and a revoked one stops. */
#ifndef ALERTD_OPERATORS_H
#define ALERTD_OPERATORS_H

#include <stdbool.h>

#include "auth.h"

struct event_base;
struct pg_conn;
struct operators;

struct operator_info {
	char *name;
	enum auth_role role;
};

/* op NULL: unknown or revoked token (or PostgreSQL unavailable and the
 * token not cached: then unavailable is true). op is valid only during the
 * call. */
typedef void (*operators_cb)(const struct operator_info *op, bool unavailable,
			     void *arg);

struct operators *operators_new(struct event_base *base, struct pg_conn *conn);
void operators_free(struct operators *ops);
/* Answers at once from the cache when it can, else after a refresh. */
void operators_lookup(struct operators *ops, const char *token,
		      operators_cb cb, void *arg);
void operators_refresh(struct operators *ops);
/* Periodic work (the 60 s refresh); called by the janitor every second. */
void operators_tick(struct operators *ops);

#endif
