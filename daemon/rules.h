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

/* The highest incident id and accept_seq alertd knows were given: the
 * script's counters never go back below them (decide.lua next_seq). */
struct rules_seq_floor {
	int64_t incident;
	int64_t accept;
};

/* The compact JSON text (caller frees), or NULL when out of memory;
 * floor may be NULL (nothing known). */
char *rules_json(const struct config *cfg, int64_t now_ms,
		 const struct rules_seq_floor *floor)
	__attribute__((warn_unused_result));

/* rules_json in two steps, for a caller that sends the rules with every
 * script call (daemon/decide.c): the members only a new config changes,
 * as a JSON object text (caller frees; NULL when out of memory), made
 * once per config; and that text with the members of the moment, the
 * night flag and the floor, added (caller frees; NULL when out of memory
 * or fixed is not what rules_json_fixed made). */
char *rules_json_fixed(const struct config *cfg)
	__attribute__((warn_unused_result));
char *rules_json_join(const char *fixed, bool night,
		      const struct rules_seq_floor *floor)
	__attribute__((warn_unused_result));

#endif
