/* fanout: Server-Sent Events to operator consoles.
 *
 * A console that sends Last-Event-ID is first REPLAYING: the changes it
 * missed are read from the Redis change stream while live changes are held
 * back in its backlog; then it is LIVE. Ids are Redis stream ids
 * ("<ms>-<seq>"), increasing, so a held-back change already covered by the
 * replay is skipped by comparing ids. */
#include "fanout.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <jansson.h>

#include "config.h"
#include "decide.h"
#include "http1.h"
#include "log.h"
#include "operators.h"
#include "qsnap.h"

/* Changes read back per replay round for a reconnecting console. */
#define FANOUT_REPLAY_MAX 10000

enum fanout_state {
	SSE_REPLAYING, /* reading missed changes; live ones go to backlog */
	SSE_LIVE,      /* every change is written at once */
	SSE_ORPHANED,  /* console gone during the replay read; freed when the
			  read answers */
};

struct fanout_change {
	STAILQ_ENTRY(fanout_change) next;
	char *id;
	char *json;
};

struct fanout_client {
	LIST_ENTRY(fanout_client) next;
	struct fanout *f;
	struct hreq *req;
	enum fanout_state state;
	char *name;        /* operator, for logs */
	char hash[65];     /* of its token: cut off when it is revoked */
	enum auth_role role;
	char *zones;       /* "" or the operator's zones: the stream filter */
	char last_id[48];  /* last change id written */
	time_t last_write;
	STAILQ_HEAD(, fanout_change) backlog;
};

struct fanout {
	struct event_base *base;
	struct decide *decide;
	LIST_HEAD(, fanout_client) clients;
	size_t n_clients;
	struct fanout_tap tap;  /* the TCP console stream (console_tcp.c) */
};

struct fanout *fanout_new(struct event_base *base, struct decide *decide)
{
	struct fanout *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return NULL;
	f->base = base;
	f->decide = decide;
	LIST_INIT(&f->clients);
	return f;
}

size_t fanout_clients(const struct fanout *f)
{
	return f->n_clients;
}

int fanout_id_cmp(const char *a, const char *b)
{
	unsigned long long ams = 0, aseq = 0, bms = 0, bseq = 0;

	sscanf(a, "%llu-%llu", &ams, &aseq);
	sscanf(b, "%llu-%llu", &bms, &bseq);
	if (ams != bms)
		return ams < bms ? -1 : 1;
	if (aseq != bseq)
		return aseq < bseq ? -1 : 1;
	return 0;
}

static void fanout_backlog_clear(struct fanout_client *c)
{
	struct fanout_change *ch;

	while ((ch = STAILQ_FIRST(&c->backlog)) != NULL) {
		STAILQ_REMOVE_HEAD(&c->backlog, next);
		free(ch->id);
		free(ch->json);
		free(ch);
	}
}

static void fanout_client_free(struct fanout_client *c)
{
	fanout_backlog_clear(c);
	free(c->zones);
	free(c->name);
	free(c);
}

/* Unlinks a console and ends its stream, which frees the request (also
 * when the console has gone). */
static void fanout_client_close(struct fanout_client *c)
{
	LIST_REMOVE(c, next);
	c->f->n_clients--;
	hreq_stream_end(c->req);
	log_info("stream operator=%s: closed", c->name);
	if (c->state == SSE_REPLAYING) {
		c->state = SSE_ORPHANED; /* freed by fanout_on_replay */
		return;
	}
	fanout_client_free(c);
}

static void fanout_on_close(struct hreq *req, void *arg)
{
	struct fanout_client *c = arg;

	fanout_client_close(c);
}

static bool fanout_zone_in(const char *zones, const char *zone)
{
	size_t n = strlen(zone);

	for (const char *p = zones; *p;) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);

		if (len == n && strncmp(p, zone, n) == 0)
			return true;
		p += len + (end ? 1 : 0);
	}
	return false;
}

/* What this console may see of a snapshot: NULL if it is outside the
 * operator's zones, else the JSON to send in *out (a masked copy that the
 * caller frees, or json itself). The label of a support-line source may
 * name a caller: only the roles that handle incidents see it. */
const char *fanout_view(enum auth_role role, const char *zones,
			const char *json, char **copy)
{
	bool filter = zones[0] != '\0' && role == AUTH_ROLE_OPERATOR &&
		      !config_current()->zone_first;
	bool mask = role == AUTH_ROLE_AUDITOR;
	json_t *snap, *src;
	const char *zone, *kind;

	*copy = NULL;
	if (!filter && !mask)
		return json;
	if ((snap = json_loads(json, 0, NULL)) == NULL)
		return json;
	src = json_object_get(snap, "source");
	zone = json_string_value(json_object_get(src, "zone"));
	kind = json_string_value(json_object_get(src, "kind"));
	if (filter && (zone == NULL || !fanout_zone_in(zones, zone))) {
		json_decref(snap);
		return NULL;
	}
	if (mask && kind != NULL && strcmp(kind, "support_line") == 0 &&
	    json_is_string(json_object_get(src, "label"))) {
		json_object_set_new(src, "label", json_string("***"));
		*copy = json_dumps(snap, JSON_COMPACT |
				   JSON_REAL_PRECISION(15));
		json = *copy;
	}
	json_decref(snap);
	return json;
}

/* true when the snapshot's zone is one of an operator's zones (never for
 * other roles or an operator without zones). */
static bool fanout_own_zone(enum auth_role role, const char *zones,
			    const char *json)
{
	json_t *snap;
	const char *zone;
	bool own;

	if (role != AUTH_ROLE_OPERATOR || zones[0] == '\0' ||
	    (snap = json_loads(json, 0, NULL)) == NULL)
		return false;
	zone = json_string_value(
		json_object_get(json_object_get(snap, "source"), "zone"));
	own = zone != NULL && fanout_zone_in(zones, zone);
	json_decref(snap);
	return own;
}

bool fanout_queue_foreach(enum auth_role role, const char *zones,
			  json_t *queue,
			  bool (*each)(const char *snap, void *arg), void *arg)
{
	bool first = config_current()->zone_first &&
		     role == AUTH_ROLE_OPERATOR && zones[0] != '\0';
	json_t *it;
	size_t i;

	for (int pass = first ? 0 : 1; pass < 2; pass++) {
		json_array_foreach(queue, i, it) {
			char *dumped = NULL;
			const char *snap = json_string_value(it);
			bool go = true;

			if (snap == NULL && json_is_object(it))
				snap = dumped = json_dumps(
					it, JSON_COMPACT |
						    JSON_REAL_PRECISION(15));
			if (snap != NULL && (!first ||
			    fanout_own_zone(role, zones, snap) == (pass == 0)))
				go = each(snap, arg);
			free(dumped);
			if (!go)
				return false;
		}
	}
	return true;
}

/* Writes one change; false if the console was dropped for lagging. */
static bool fanout_write(struct fanout_client *c, const char *id,
			 const char *json)
{
	size_t queued = hreq_stream_queued(c->req);
	char *copy, *text;
	int n;

	if (hreq_gone(c->req))
		return true; /* closing; the close callback cleans up */
	if (queued > (size_t)config_current()->sse_max_buffer_bytes) {
		log_warn("stream operator=%s: console lags by %zu bytes, disconnecting it (it will resume with Last-Event-ID)",
			 c->name, queued);
		fanout_client_close(c);
		return false;
	}
	if ((json = fanout_view(c->role, c->zones, json, &copy)) == NULL)
		return true; /* not this console's zone */
	n = asprintf(&text, "id: %s\nevent: incident\ndata: %s\n\n", id, json);
	free(copy);
	if (n < 0)
		return true;
	hreq_stream_write(c->req, text, (size_t)n);
	free(text);
	snprintf(c->last_id, sizeof(c->last_id), "%s", id);
	c->last_write = time(NULL);
	return true;
}

static void fanout_write_comment(struct fanout_client *c, const char *text)
{
	hreq_stream_write(c->req, text, strlen(text));
	c->last_write = time(NULL);
}

static void fanout_go_live(struct fanout_client *c)
{
	struct fanout_change *ch;

	c->state = SSE_LIVE;
	while ((ch = STAILQ_FIRST(&c->backlog)) != NULL) {
		bool alive = true;

		STAILQ_REMOVE_HEAD(&c->backlog, next);
		if (c->last_id[0] == '\0' ||
		    fanout_id_cmp(ch->id, c->last_id) > 0)
			alive = fanout_write(c, ch->id, ch->json);
		free(ch->id);
		free(ch->json);
		free(ch);
		if (!alive)
			return;
	}
}

static void fanout_on_snapshot(bool ok, const char *last, json_t *queue,
			       void *arg);

static void fanout_on_replay(bool ok, bool gap, size_t n,
			     const char *const *ids,
			     const char *const *snapshots, void *arg)
{
	struct fanout_client *c = arg;

	if (c->state == SSE_ORPHANED) {
		fanout_client_free(c);
		return;
	}
	if (ok && gap) {
		/* Replaying what is left would leave the console without the
		 * incidents whose changes were trimmed: it starts over from
		 * the open queue, told to drop what it shows. */
		log_warn("stream operator=%s: the changes since %s are no "
			 "longer kept; sending the open queue again",
			 c->name, c->last_id);
		fanout_write_comment(c, "event: reset\n"
				     "data: {\"reason\":\"changes_lost\"}\n\n");
		c->last_id[0] = '\0';
		if (!qsnap_fetch(c->f->decide, fanout_on_snapshot, c))
			fanout_on_snapshot(false, NULL, NULL, c);
		return;
	}
	if (!ok) {
		/* Redis is down: the console gets live changes and can
		 * reconnect later to fill the gap. */
		log_warn("stream operator=%s: cannot replay since %s (Redis unavailable)",
			 c->name, c->last_id);
		fanout_write_comment(c, ": replay unavailable\n\n");
	}
	c->state = SSE_LIVE; /* so that fanout_write may close it */
	for (size_t i = 0; i < n; i++) {
		if (!fanout_write(c, ids[i], snapshots[i]))
			return;
	}
	fanout_go_live(c);
}

/* The open queue for a new console: every snapshot with the id of the
 * newest change, so that a reconnect resumes after it. */
/* A queue being written to one console, under the id of the newest
 * change. */
struct fanout_snapshot {
	struct fanout_client *c;
	const char *last;
};

static bool fanout_snapshot_one(const char *snap, void *arg)
{
	struct fanout_snapshot *s = arg;

	return fanout_write(s->c, s->last, snap);
}

static void fanout_on_snapshot(bool ok, const char *last, json_t *queue,
			       void *arg)
{
	struct fanout_client *c = arg;
	struct fanout_snapshot s;

	if (c->state == SSE_ORPHANED) {
		fanout_client_free(c);
		return;
	}
	c->state = SSE_LIVE; /* so that fanout_write may close it */
	if (!ok) {
		log_warn("stream operator=%s: no snapshot of the queue (Redis "
			 "unavailable)", c->name);
		fanout_write_comment(c, ": snapshot unavailable\n\n");
		fanout_go_live(c);
		return;
	}
	s = (struct fanout_snapshot){c, last};
	if (!fanout_queue_foreach(c->role, c->zones, queue,
				  fanout_snapshot_one, &s))
		return; /* dropped for lagging */
	snprintf(c->last_id, sizeof(c->last_id), "%s", last);
	fanout_write_comment(c, ": snapshot end\n\n");
	fanout_go_live(c);
}

char *fanout_on_duty(const struct fanout *f)
{
	struct evbuffer *b = evbuffer_new();
	const struct fanout_client *c, *d;
	char *out = NULL;
	size_t len;

	if (b == NULL)
		return NULL;
	LIST_FOREACH(c, &f->clients, next) {
		bool seen = false;

		if (c->role != AUTH_ROLE_OPERATOR &&
		    c->role != AUTH_ROLE_SUPERVISOR)
			continue;
		for (d = LIST_FIRST(&f->clients); d != c; d = LIST_NEXT(d, next))
			if (strcmp(d->name, c->name) == 0)
				seen = true;
		if (!seen)
			evbuffer_add_printf(b, "%s%s",
					    evbuffer_get_length(b) ? "," : "",
					    c->name);
	}
	len = evbuffer_get_length(b);
	if ((out = malloc(len + 1)) != NULL) {
		evbuffer_copyout(b, out, len);
		out[len] = '\0';
	}
	evbuffer_free(b);
	return out;
}

void fanout_attach_sse(struct fanout *f, struct hreq *req,
		       const struct operator_info *op,
		       const char *last_event_id)
{
	struct fanout_client *c = calloc(1, sizeof(*c));

	if (c == NULL || (c->name = strdup(op->name)) == NULL ||
	    (c->zones = strdup(op->zones != NULL ? op->zones : "")) == NULL) {
		if (c != NULL)
			free(c->name);
		free(c);
		hreq_reply(req, 503);
		return;
	}
	c->f = f;
	c->req = req;
	c->state = SSE_LIVE;
	memcpy(c->hash, op->hash, sizeof(c->hash));
	c->role = op->role;
	STAILQ_INIT(&c->backlog);
	LIST_INSERT_HEAD(&f->clients, c, next);
	f->n_clients++;

	hreq_add_header(req, "Content-Type", "text/event-stream");
	hreq_add_header(req, "Cache-Control", "no-store");
	hreq_add_header(req, "X-Accel-Buffering", "no");
	/* Sets TCP_NODELAY and lifts the idle timeout (http1.h): a stream
	 * may stay quiet but for pings. */
	hreq_stream_start(req, 200, fanout_on_close, c);
	fanout_write_comment(c, "retry: 2000\n: connected\n\n");
	log_info("stream operator=%s: connected%s%s", c->name,
		 last_event_id != NULL ? ", resuming after " : "",
		 last_event_id != NULL ? last_event_id : "");

	if (last_event_id == NULL) {
		/* A new console: the open queue first, then the changes. */
		c->state = SSE_REPLAYING;
		if (!qsnap_fetch(f->decide, fanout_on_snapshot, c))
			fanout_on_snapshot(false, NULL, NULL, c);
		return;
	}
	snprintf(c->last_id, sizeof(c->last_id), "%s", last_event_id);
	c->state = SSE_REPLAYING;
	if (!decide_changes_since(f->decide, last_event_id, FANOUT_REPLAY_MAX,
				  fanout_on_replay, c))
		fanout_on_replay(false, false, 0, NULL, NULL, c);
}

static void fanout_hold_back(struct fanout_client *c, const char *change_id,
			     const char *snapshot_json)
{
	struct fanout_change *ch = calloc(1, sizeof(*ch));

	if (ch == NULL)
		return;
	ch->id = strdup(change_id);
	ch->json = strdup(snapshot_json);
	if (ch->id == NULL || ch->json == NULL) {
		free(ch->id);
		free(ch->json);
		free(ch);
		return;
	}
	STAILQ_INSERT_TAIL(&c->backlog, ch, next);
}

void fanout_publish(struct fanout *f, const char *change_id,
		    const char *snapshot_json)
{
	struct fanout_client *c, *tmp;

	if (f->tap.publish != NULL)
		f->tap.publish(change_id, snapshot_json, f->tap.arg);
	/* fanout_write may unlink c: keep its successor first. */
	for (c = LIST_FIRST(&f->clients); c != NULL; c = tmp) {
		tmp = LIST_NEXT(c, next);
		if (c->state == SSE_REPLAYING)
			fanout_hold_back(c, change_id, snapshot_json);
		else if (c->last_id[0] == '\0' ||
			 fanout_id_cmp(change_id, c->last_id) > 0)
			fanout_write(c, change_id, snapshot_json);
	}
}

void fanout_changes_lost(struct fanout *f)
{
	struct fanout_client *c;

	if (f->tap.changes_lost != NULL)
		f->tap.changes_lost(f->tap.arg);
	while ((c = LIST_FIRST(&f->clients)) != NULL) {
		log_info("stream operator=%s: changes were missed, cutting the "
			 "stream (it resumes with Last-Event-ID)", c->name);
		fanout_client_close(c);
	}
}

void fanout_tick(struct fanout *f)
{
	time_t now = time(NULL);
	time_t every = config_current()->sse_ping_s;
	struct fanout_client *c;

	LIST_FOREACH(c, &f->clients, next) {
		if (c->state == SSE_LIVE && now - c->last_write >= every)
			fanout_write_comment(c, ": ping\n\n");
	}
}

void fanout_set_tap(struct fanout *f, const struct fanout_tap *tap)
{
	f->tap = *tap;
}

void fanout_on_operators_changed(struct operators *ops, void *arg)
{
	struct fanout *f = arg;
	struct fanout_client *c, *tmp;

	if (f->tap.operators_changed != NULL)
		f->tap.operators_changed(ops, f->tap.arg);
	for (c = LIST_FIRST(&f->clients); c != NULL; c = tmp) {
		tmp = LIST_NEXT(c, next);
		if (operators_active(ops, c->hash))
			continue;
		log_info("stream operator=%s: token revoked, cutting the "
			 "stream", c->name);
		if (!hreq_gone(c->req))
			fanout_write_comment(c, ": token revoked\n\n");
		fanout_client_close(c);
	}
}

void fanout_free(struct fanout *f)
{
	struct fanout_client *c;

	if (f == NULL)
		return;
	while ((c = LIST_FIRST(&f->clients)) != NULL)
		fanout_client_close(c);
	free(f);
}
