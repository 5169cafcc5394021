/* decide_reply: the script's and XRANGE's replies read into the structs
 * of decide.h. No I/O, no state: whatever Redis sends, a reply of the
 * wrong shape is refused (false), never trusted. */
#include "decide_reply.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* The fixed elements of a decide reply (before the extras). */
#define DECIDE_REPLY_FIELDS 10

/* An integer element: an integer reply or a decimal string. */
bool decide_reply_int(const redisReply *e, int64_t *out)
{
	char buf[24];
	char *end;
	long long v;

	if (e->type == REDIS_REPLY_INTEGER) {
		*out = e->integer;
		return true;
	}
	if (e->type != REDIS_REPLY_STRING || e->len == 0 ||
	    e->len >= sizeof(buf))
		return false;
	memcpy(buf, e->str, e->len);
	buf[e->len] = '\0';
	errno = 0;
	v = strtoll(buf, &end, 10);
	if (errno != 0 || *end != '\0')
		return false;
	*out = v;
	return true;
}

const char *decide_reply_str(const redisReply *e)
{
	if (e->type != REDIS_REPLY_STRING && e->type != REDIS_REPLY_STATUS)
		return NULL;
	return e->str;
}

/* A refusal: {"refused", code, retry_after_ms}. */
static bool decide_reply_refused(const redisReply *reply,
				 struct decide_result *res)
{
	const char *s;
	int64_t ms;

	if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 ||
	    (s = decide_reply_str(reply->element[0])) == NULL ||
	    strcmp(s, "refused") != 0 ||
	    (s = decide_reply_str(reply->element[1])) == NULL ||
	    !decide_reply_int(reply->element[2], &ms))
		return false;
	if (strcmp(s, "rate_limited") == 0)
		res->refused = "rate_limited";
	else if (strcmp(s, "unknown_source") == 0)
		res->refused = "unknown_source";
	else
		return false;
	res->retry_after_ms = ms < 0 ? 0 : ms > 3600000 ? 3600000 : (int)ms;
	return true;
}

/* Elements after the tenth: "quiet" "1" and/or "resolved" id from_state
 * version snapshot change_id. */
static bool decide_reply_extras(const redisReply *reply,
				struct decide_result *res)
{
	redisReply **e = reply->element;
	size_t i = DECIDE_REPLY_FIELDS;

	while (i < reply->elements) {
		const char *tag = decide_reply_str(e[i]);

		if (tag != NULL && strcmp(tag, "quiet") == 0 &&
		    i + 1 < reply->elements) {
			res->quiet = true;
			i += 2;
		} else if (tag != NULL && strcmp(tag, "resolved") == 0 &&
			   i + 5 < reply->elements) {
			if (!decide_reply_int(e[i + 1], &res->resolved_id) ||
			    !decide_reply_int(e[i + 3], &res->resolved_version) ||
			    (res->resolved_from = decide_reply_str(e[i + 2])) ==
				    NULL ||
			    (res->resolved_snapshot = decide_reply_str(e[i + 4])) ==
				    NULL ||
			    (res->resolved_change_id =
				     decide_reply_str(e[i + 5])) == NULL ||
			    res->resolved_id <= 0)
				return false;
			i += 6;
		} else {
			return false;
		}
	}
	return true;
}

/* The script's decide reply:
 * {outcome, original_outcome, incident_id, priority, accept_seq, opened,
 *  version, first_seen_ms, snapshot_json, change_id}. */
bool decide_reply_event(const redisReply *reply,
			       struct decide_result *res)
{
	redisReply **e;
	const char *s;
	int64_t prio, opened;

	memset(res, 0, sizeof(*res));
	if (decide_reply_refused(reply, res))
		return true;
	if (reply->type != REDIS_REPLY_ARRAY ||
	    reply->elements < DECIDE_REPLY_FIELDS)
		return false;
	e = reply->element;
	if ((s = decide_reply_str(e[0])) == NULL ||
	    !evt_outcome_parse(s, &res->outcome))
		return false;
	if ((s = decide_reply_str(e[1])) == NULL ||
	    !evt_outcome_parse(s, &res->original_outcome) ||
	    res->original_outcome == EVT_OUTCOME_DUPLICATE)
		return false;
	if (!decide_reply_int(e[2], &res->incident_id) ||
	    !decide_reply_int(e[3], &prio) ||
	    !decide_reply_int(e[4], &res->accept_seq) ||
	    !decide_reply_int(e[5], &opened) ||
	    !decide_reply_int(e[6], &res->version) ||
	    !decide_reply_int(e[7], &res->first_seen_ms))
		return false;
	/* incident_id 0 (version 0): a heartbeat, no incident. */
	if (res->incident_id < 0 || prio < 0 || prio > 999 ||
	    res->accept_seq <= 0 || (opened != 0 && opened != 1) ||
	    res->version < 0 || (res->version == 0) != (res->incident_id == 0))
		return false;
	res->priority = (int)prio;
	res->opened = opened == 1;
	if (decide_reply_str(e[8]) == NULL || decide_reply_str(e[9]) == NULL)
		return false;
	if (!decide_reply_extras(reply, res))
		return false;
	if (res->outcome == EVT_OUTCOME_DUPLICATE)
		return true;
	if (res->incident_id == 0)
		return e[8]->len == 0;
	if (e[8]->len == 0 || (e[9]->len == 0) != res->quiet)
		return false;
	res->snapshot_json = e[8]->str;
	res->change_id = res->quiet ? NULL : e[9]->str;
	return true;
}

/* XRANGE reply: [[id, [field, value, ...]], ...]; entries without a
 * snapshot field (not written by decide.lua) are skipped. */
bool decide_reply_changes(const redisReply *reply, const char ***ids_out,
			  const char ***snaps_out, size_t *n_out)
{
	const char **ids = NULL, **snaps = NULL;
	size_t n = 0;

	*ids_out = *snaps_out = NULL;
	*n_out = 0;
	if (reply->type != REDIS_REPLY_ARRAY)
		return false;
	if (reply->elements > 0) {
		ids = calloc(reply->elements, sizeof(*ids));
		snaps = calloc(reply->elements, sizeof(*snaps));
		if (ids == NULL || snaps == NULL)
			goto fail;
	}
	for (size_t i = 0; i < reply->elements; i++) {
		const redisReply *ent = reply->element[i], *f;

		if (ent->type != REDIS_REPLY_ARRAY || ent->elements != 2 ||
		    decide_reply_str(ent->element[0]) == NULL ||
		    ent->element[1]->type != REDIS_REPLY_ARRAY)
			goto fail;
		f = ent->element[1];
		for (size_t j = 0; j + 1 < f->elements; j += 2) {
			const char *k = decide_reply_str(f->element[j]);
			const char *v = decide_reply_str(f->element[j + 1]);

			if (k != NULL && v != NULL &&
			    strcmp(k, "snapshot") == 0) {
				ids[n] = ent->element[0]->str;
				snaps[n] = v;
				n++;
				break;
			}
		}
	}
	*ids_out = ids;
	*snaps_out = snaps;
	*n_out = n;
	return true;
fail:
	free(ids);
	free(snaps);
	return false;
}

/* age/sweep reply: a flat array of groups of `width` elements (id,
 * snapshot, change_id[, last_seen_ms]). */
bool decide_reply_items(const redisReply *reply, size_t width,
			struct decide_item **items_out, size_t *n_out)
{
	struct decide_item *items = NULL;
	size_t n = 0;

	*items_out = NULL;
	*n_out = 0;
	if (reply->type != REDIS_REPLY_ARRAY || width == 0 ||
	    reply->elements % width != 0)
		return false;
	if (reply->elements > 0) {
		items = calloc(reply->elements / width, sizeof(*items));
		if (items == NULL)
			return false;
	}
	for (size_t i = 0; i < reply->elements; i += width, n++) {
		redisReply **e = reply->element + i;
		struct decide_item *it = &items[n];

		if (!decide_reply_int(e[0], &it->incident_id) ||
		    (it->snapshot_json = decide_reply_str(e[1])) == NULL ||
		    (it->change_id = decide_reply_str(e[2])) == NULL)
			goto fail;
		if (width == 4 && e[3]->type == REDIS_REPLY_STRING &&
		    e[3]->len > 0 && !decide_reply_int(e[3], &it->last_seen_ms))
			goto fail;
	}
	*items_out = items;
	*n_out = n;
	return true;
fail:
	free(items);
	return false;
}
