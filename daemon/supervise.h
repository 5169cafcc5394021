/* supervise: the periodic work of the issue 3 rules, driven by the
 * janitor: device supervision (a registered source silent for longer than
 * its interval gets one device_offline incident) and the aging of
 * unacknowledged incidents. Each is one script call per tick, never two
 * in flight (aging goes on in slices while a slice changed something); the opening transitions are recorded in the audit
 * trail (the consoles get the changes from the change stream). */
#ifndef ALERTD_SUPERVISE_H
#define ALERTD_SUPERVISE_H

#include <stddef.h>
#include <stdint.h>

struct decide;
struct audit;
struct supervise;

struct supervise *supervise_new(struct decide *decide, struct audit *audit);
/* Free after the Redis pool (its pending calls are answered first). */
void supervise_free(struct supervise *s);

/* Called by the janitor about once a second. */
void supervise_tick(struct supervise *s);

/* device_offline incidents opened, and aging changes, since start. */
uint64_t supervise_opened(const struct supervise *s);
uint64_t supervise_aged(const struct supervise *s);

#endif
