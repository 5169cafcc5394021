/* decide_reply: reading the replies of lua/decide.lua (and of XRANGE on
 * its change stream) into the structs of decide.h. Pure functions: they
 * check every element's type and range and refuse (false) a reply of any
 * other shape, so a confused or hostile Redis cannot make alertd answer
 * a device from garbage. Strings in the results point into the reply. */
#ifndef ALERTD_DECIDE_REPLY_H
#define ALERTD_DECIDE_REPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "decide.h"

/* An integer element: an integer reply or a decimal string. */
bool decide_reply_int(const redisReply *e, int64_t *out);
/* A string or status element's text, else NULL. */
const char *decide_reply_str(const redisReply *e);

/* One event's decision: {outcome, original_outcome, incident_id,
 * priority, accept_seq, opened, version, first_seen_ms, snapshot_json,
 * change_id, extras...} or {"refused", code, retry_after_ms}. */
bool decide_reply_event(const redisReply *reply, struct decide_result *res);

/* XRANGE: the ids and snapshots of the entries that carry one (arrays
 * the caller frees; NULL when there are none). */
bool decide_reply_changes(const redisReply *reply, const char ***ids,
			  const char ***snaps, size_t *n);

/* age (width 3) / sweep (width 4): an array the caller frees. */
bool decide_reply_items(const redisReply *reply, size_t width,
			struct decide_item **items, size_t *n);

#endif
