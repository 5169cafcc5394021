/* personal: attrs that carry a caller's personal data (support-line phone
 * number, name), configured in [audit] personal_attrs.
 *
 *   - what events.payload keeps of them: [audit] personal_store = raw |
 *     hash (HMAC-SHA256 with personal_salt, "hmac-sha256:<hex>": equal
 *     values stay comparable, the value itself is gone) | mask ("***");
 *   - who sees them in audit output: [audit] personal_roles (default
 *     admin); everyone else gets "***". The label of a support-line
 *     source may name the caller too: in audit output it is shown by the
 *     same rule (the streams and the queue hide it from the auditor, who
 *     is not in personal_roles by default). It is stored as sent.
 *
 * alertd never logs attrs and never uses them as metric labels, so logs
 * and /metrics hold no personal data whatever the config. */
#ifndef ALERTD_PERSONAL_H
#define ALERTD_PERSONAL_H

#include <stdbool.h>

#include <jansson.h>

struct config;

#define PERSONAL_MASK "***"

/* key is listed in personal_attrs. */
bool personal_is_attr(const struct config *cfg, const char *key);
/* role (a role name) is listed in personal_roles. */
bool personal_role_sees(const struct config *cfg, const char *role);
/* The event JSON to store in events.payload (malloc'd; NULL: out of
 * memory or not JSON). */
char *personal_store_payload(const struct config *cfg, const char *json);
/* Replaces every personal attr of an event object (payload), and the
 * label of a support-line source, by "***". */
void personal_mask_event(const struct config *cfg, json_t *payload);
/* Its two halves, for GET /v1/incidents/{id}, where the label follows
 * the rule of the snapshot beside it (masked for the auditor). */
void personal_mask_attrs(const struct config *cfg, json_t *payload);
void personal_mask_label(json_t *payload);

#endif
