/* rules: the issue 3 rules of the running config as the JSON argument of
 * decide.lua (docs/prioritisation.md): kind and zone modifiers, the night
 * flag for the decision time (computed here with the tz database, so that
 * the script stays deterministic), repeat boost, aging, flood limits,
 * unknown-source policy, supervision intervals, the device_offline base. */
#ifndef ALERTD_RULES_H
#define ALERTD_RULES_H

#include <stdbool.h>
#include <stdint.h>

struct config;

/* true when now_ms falls in the night window of cfg's time zone (false
 * when the zone is unknown, which config_load does not let through). */
bool rules_is_night(const struct config *cfg, int64_t now_ms);

/* The compact JSON text (caller frees), or NULL when out of memory. */
char *rules_json(const struct config *cfg, int64_t now_ms)
	__attribute__((warn_unused_result));

#endif
