/* qsnap: the open queue, in pages (qsnap.h). */
#include "qsnap.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decide.h"
#include "log.h"

/* Snapshots per script call: under 1 ms of Redis when it has a core. */
#define QSNAP_PAGE 100

struct qsnap {
	struct decide *d;
	qsnap_cb cb;
	void *arg;
	char last_id[64];
	json_t *ids;   /* the open incidents' ids, queue order */
	size_t next;   /* the first id not asked for yet */
	json_t *queue; /* the snapshots so far */
};

static void qsnap_finish(struct qsnap *q, bool ok)
{
	if (ok)
		q->cb(true, q->last_id, q->queue, q->arg);
	else
		q->cb(false, NULL, NULL, q->arg);
	json_decref(q->ids);
	json_decref(q->queue);
	free(q);
}

static void qsnap_on_page(bool ok, const char *json, void *arg);

/* Asks for the next page, or finishes when every id was asked for. */
static void qsnap_next(struct qsnap *q)
{
	char csv[QSNAP_PAGE * 21];
	const char *params[1] = {csv};
	size_t len = 0, n = json_array_size(q->ids);

	if (q->next >= n) {
		qsnap_finish(q, true);
		return;
	}
	csv[0] = '\0';
	for (size_t i = 0; i < QSNAP_PAGE && q->next < n; i++, q->next++) {
		json_int_t id = json_integer_value(json_array_get(q->ids,
								  q->next));

		len += (size_t)snprintf(csv + len, sizeof(csv) - len,
					"%s%" JSON_INTEGER_FORMAT,
					i > 0 ? "," : "", id);
	}
	if (!decide_script(q->d, "snapshots", 1, params, qsnap_on_page, q))
		qsnap_finish(q, false);
}

static void qsnap_on_page(bool ok, const char *json, void *arg)
{
	struct qsnap *q = arg;
	json_t *page = NULL;

	if (ok && json != NULL)
		page = json_loads(json, 0, NULL);
	if (!json_is_array(page) || json_array_extend(q->queue, page) != 0) {
		if (ok)
			log_warn("qsnap: an unreadable page of the queue");
		json_decref(page);
		qsnap_finish(q, false);
		return;
	}
	json_decref(page);
	qsnap_next(q);
}

static void qsnap_on_ids(bool ok, const char *json, void *arg)
{
	struct qsnap *q = arg;
	json_t *r = NULL;
	const char *last;
	json_t *ids;
	size_t i;
	json_t *it;

	if (ok && json != NULL)
		r = json_loads(json, 0, NULL);
	last = json_string_value(json_object_get(r, "last_id"));
	ids = json_object_get(r, "ids");
	if (last == NULL || strlen(last) >= sizeof(q->last_id) ||
	    !json_is_array(ids)) {
		if (ok)
			log_warn("qsnap: an unreadable list of open incidents");
		json_decref(r);
		qsnap_finish(q, false);
		return;
	}
	json_array_foreach(ids, i, it) {
		if (!json_is_integer(it) || json_integer_value(it) < 0) {
			log_warn("qsnap: an open incident id that is not one");
			json_decref(r);
			qsnap_finish(q, false);
			return;
		}
	}
	snprintf(q->last_id, sizeof(q->last_id), "%s", last);
	q->ids = json_incref(ids);
	json_decref(r);
	qsnap_next(q);
}

bool qsnap_fetch(struct decide *d, qsnap_cb cb, void *arg)
{
	struct qsnap *q = calloc(1, sizeof(*q));

	if (q == NULL || (q->queue = json_array()) == NULL) {
		free(q);
		return false;
	}
	q->d = d;
	q->cb = cb;
	q->arg = arg;
	if (!decide_script(d, "stream_ids", 0, NULL, qsnap_on_ids, q)) {
		json_decref(q->queue);
		free(q);
		return false;
	}
	return true;
}
