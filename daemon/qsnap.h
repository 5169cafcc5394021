/* qsnap: the open queue, read from Redis in pages, for a new console (SSE
 * or TCP) and for GET /v1/incidents.
 *
 * The whole queue in one script call held Redis, and with it every
 * event's decision, for about 200 ms with 15,000 open incidents; every
 * console that connected or reconnected, and every GET /v1/incidents,
 * did that (docs/BENCHMARKS.md, optimisation 31). Now one call reads the
 * ids of the open incidents with the id of the newest change (mode
 * stream_ids), then calls of at most 100 snapshots follow (mode
 * snapshots), and the events decided meanwhile go in between. A
 * console's contract is unchanged: every incident open at last_id is in
 * the queue, and what changed after it comes from the change stream
 * after last_id (an incident may then show a state newer than last_id
 * first, and be sent again by its change). */
#ifndef ALERTD_QSNAP_H
#define ALERTD_QSNAP_H

#include <stdbool.h>

#include <jansson.h>

struct decide;

/* ok false: Redis unavailable (last_id and queue NULL). Else queue is a
 * JSON array of snapshot JSON strings in queue order, borrowed for the
 * call. Called exactly once, never before qsnap_fetch returns. */
typedef void (*qsnap_cb)(bool ok, const char *last_id, json_t *queue,
			 void *arg);

/* false (cb not called): Redis is not connected. */
bool qsnap_fetch(struct decide *d, qsnap_cb cb, void *arg)
	__attribute__((warn_unused_result));

#endif
