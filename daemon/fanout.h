/* fanout: operator consoles' streams. GET /v1/stream is Server-Sent Events:
 * every new or changed incident is sent as
 *
 *     id: <change id>\nevent: incident\ndata: <snapshot JSON>\n\n
 *
 * A console that reconnects with Last-Event-ID first gets the changes it
 * missed (from the Redis change stream), then live ones, without gaps or
 * repeats. A comment ping (": ping") goes out every sse_ping_s. A console
 * whose unsent output exceeds sse_max_buffer_bytes is disconnected (it
 * reconnects with Last-Event-ID and catches up). */
#ifndef ALERTD_FANOUT_H
#define ALERTD_FANOUT_H

#include <stddef.h>

#include "auth.h"

struct hreq;
struct event_base;
struct decide;
struct fanout;
struct operator_info;

struct fanout *fanout_new(struct event_base *base, struct decide *decide);
void fanout_free(struct fanout *f);   /* ends every stream */

/* Takes over req as an SSE stream for the (already authorised) operator.
 * last_event_id may be NULL. */
void fanout_attach_sse(struct fanout *f, struct hreq *req,
		       const struct operator_info *op,
		       const char *last_event_id);

/* One changed incident, to every console (daemon/follow.c calls it for
 * each entry of the change stream, in order). A live console skips a
 * change not newer than the last one it got: its snapshot or replay may
 * have covered it already. */
void fanout_publish(struct fanout *f, const char *change_id,
		    const char *snapshot_json);

/* The live feed missed changes (daemon/follow.c): every console stream is
 * cut; an SSE console resumes with Last-Event-ID and its replay sends the
 * open queue again, a TCP console is told resync_required. */
void fanout_changes_lost(struct fanout *f);

/* operators_changed_cb: ends the streams whose token was revoked. */
struct operators;
void fanout_on_operators_changed(struct operators *ops, void *arg);

/* Presence: the distinct names of the operators and supervisors with an
 * open stream here, comma-separated (caller frees; NULL: no memory). */
char *fanout_on_duty(const struct fanout *f);

/* The open queue in the order a console of this role and zones gets it:
 * each(snapshot JSON, arg) for every element of the JSON array queue (a
 * snapshot string or object), and under zone_mode = first an operator's
 * own zones in a first pass. Stops at the first false (and returns
 * false). Filtering and masking stay the caller's (fanout_view). One
 * order for the SSE and TCP consoles' snapshots and GET /v1/incidents. */
struct json_t;
bool fanout_queue_foreach(enum auth_role role, const char *zones,
			  struct json_t *queue,
			  bool (*each)(const char *snap, void *arg), void *arg);

/* Compares two change ids "<ms>-<seq>" numerically (< 0, 0, > 0): both
 * console streams skip the held-back changes a replay already covered. */
int fanout_id_cmp(const char *a, const char *b);

/* What a console of this role and zones ("" = all) may see of a
 * snapshot: NULL if outside its zones, else the JSON to send (json itself
 * or a masked copy put in *copy, which the caller frees). */
const char *fanout_view(enum auth_role role, const char *zones,
			const char *json, char **copy);

/* Another kind of console stream (console_tcp) hears every change and
 * every refresh of the operator tokens. */
struct fanout_tap {
	void (*publish)(const char *change_id, const char *snapshot_json,
			void *arg);
	void (*operators_changed)(struct operators *ops, void *arg);
	void (*changes_lost)(void *arg);
	void *arg;
};
void fanout_set_tap(struct fanout *f, const struct fanout_tap *tap);

/* Pings; called by the janitor every second. */
void fanout_tick(struct fanout *f);
size_t fanout_clients(const struct fanout *f);

#endif
