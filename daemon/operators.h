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
	char *zones;    /* "" (every zone) or comma-separated zone names */
	char hash[65];  /* of its token: names the session (stream cut-off) */
};

/* After every successful refresh (a token may have been revoked). */
typedef void (*operators_changed_cb)(struct operators *ops, void *arg);

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
void operators_set_on_change(struct operators *ops, operators_changed_cb cb,
			     void *arg);
/* true while the token of this hash is known and not revoked. */
bool operators_active(const struct operators *ops, const char *hash);
/* The operator of this name while its token is not revoked, else NULL;
 * valid until the next refresh (use it at once). */
const struct operator_info *operators_by_name(const struct operators *ops,
					      const char *name);
/* true if the role may do what the API route needs. */
bool operators_role_can_act(enum auth_role role);
bool operators_role_can_supervise(enum auth_role role);
/* Periodic work (the 60 s refresh); called by the janitor every second. */
void operators_tick(struct operators *ops);

#endif
