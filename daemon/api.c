/* api: the operator and local endpoints of the HTTP API: the console
 * stream, the queue, one incident, health, readiness and metrics. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>

#include "api_incident.h"
#include "audit.h"
#include "config.h"
#include "decide.h"
#include "fanout.h"
#include "http1.h"
#include "http_server.h"
#include "log.h"
#include "metrics.h"
#include "operators.h"
#include "qsnap.h"
#include "redis_pool.h"

enum api_route {
	API_STREAM,
	API_QUEUE,
	API_INCIDENT,
};

/* One operator request waiting for its token lookup. */
struct api_call {
	struct hreq *req;
	struct http_server *server;
	enum api_route route;
	int64_t incident_id;
	char *last_event_id;
};

static void api_reply_unavailable(struct hreq *req, const char *what)
{
	char detail[128];

	snprintf(detail, sizeof(detail), "%s is unavailable now; try again",
		 what);
	http_reply_error(req, 503, "unavailable", NULL, detail, 2);
}

static void api_on_json(bool ok, const char *json, void *arg)
{
	struct hreq *req = arg;

	if (!ok)
		api_reply_unavailable(req, "the incident store");
	else if (json == NULL)
		http_reply_error(req, 404, "not_found", NULL,
				 "no such incident", 0);
	else
		http_reply_json(req, 200, json);
}

/* What the operator may see (issue 5): the queue and an incident are
 * filtered by zones and masked by role like the stream (fanout_view). */
struct api_view {
	struct hreq *req;
	struct pg_conn *pg;   /* the incident's history (api_incident.c) */
	int64_t incident_id;
	enum auth_role role;
	json_t *out;       /* the queue as seen, being built */
	char zones[];
};

/* fanout_queue_foreach: one incident of the queue, as the operator may
 * see it. */
static bool api_view_one(const char *snap, void *arg)
{
	struct api_view *v = arg;
	char *copy;
	const char *seen = fanout_view(v->role, v->zones, snap, &copy);

	if (seen != NULL && v->out != NULL)
		json_array_append_new(v->out, json_loads(seen, 0, NULL));
	free(copy);
	return true;
}

/* The open queue, read in pages (qsnap.h: one script call for the whole
 * queue held every event's decision behind it): a JSON array of the
 * snapshots as the operator may see them. */
static void api_on_queue_view(bool ok, const char *last, json_t *queue,
			      void *arg)
{
	struct api_view *v = arg;
	struct evbuffer *all = NULL;
	json_t *out = NULL;
	char *text = NULL;
	const char *body = NULL;

	(void)last;
	if (!ok) {
		api_reply_unavailable(v->req, "the incident store");
		goto done;
	}
	if (v->role != AUTH_ROLE_AUDITOR &&
	    !(v->role == AUTH_ROLE_OPERATOR && v->zones[0] != '\0')) {
		/* Sees everything as is: the snapshots' own text. */
		size_t i;
		json_t *it;

		if ((all = evbuffer_new()) == NULL)
			goto done;
		evbuffer_add(all, "[", 1);
		json_array_foreach(queue, i, it) {
			const char *snap = json_string_value(it);

			if (snap == NULL)
				continue;
			if (evbuffer_get_length(all) > 1)
				evbuffer_add(all, ",", 1);
			evbuffer_add(all, snap, strlen(snap));
		}
		evbuffer_add(all, "]", 2); /* with its NUL */
		body = (const char *)evbuffer_pullup(all, -1);
	} else {
		v->out = out = json_array();
		fanout_queue_foreach(v->role, v->zones, queue, api_view_one,
				     v);
		body = text = out != NULL ? json_dumps(out, JSON_COMPACT |
						      JSON_REAL_PRECISION(15))
					  : NULL;
	}
done:
	if (ok && body == NULL)
		api_reply_unavailable(v->req, "memory");
	else if (ok)
		http_reply_json(v->req, 200, body);
	if (all != NULL)
		evbuffer_free(all);
	free(text);
	json_decref(out);
	free(v);
}

/* decide_incident: one snapshot, as the operator may see it, then its
 * history (api_incident_reply). */
static void api_on_incident_view(bool ok, const char *json, void *arg)
{
	struct api_view *v = arg;
	char *copy = NULL;
	const char *seen = ok && json != NULL
				   ? fanout_view(v->role, v->zones, json, &copy)
				   : NULL;

	if (!ok || json == NULL)
		api_on_json(ok, json, v->req);
	else if (seen == NULL)
		http_reply_error(v->req, 403, "forbidden", NULL,
				 "the incident is not in your zones", 0);
	else
		api_incident_reply(v->req, v->pg, v->incident_id, seen,
				   auth_role_name(v->role));
	free(copy);
	free(v);
}

static struct api_view *api_view_new(struct hreq *req,
				     const struct operator_info *op)
{
	const char *z = op->zones != NULL ? op->zones : "";
	struct api_view *v = malloc(sizeof(*v) + strlen(z) + 1);

	if (v != NULL) {
		v->req = req;
		v->pg = NULL;
		v->incident_id = 0;
		v->role = op->role;
		v->out = NULL;
		memcpy(v->zones, z, strlen(z) + 1);
	}
	return v;
}

static void api_call_free(struct api_call *call)
{
	free(call->last_event_id);
	free(call);
}

static void api_on_operator(const struct operator_info *op, bool unavailable,
			    void *arg)
{
	struct api_call *call = arg;
	const struct http_deps *deps = http_server_deps(call->server);
	struct hreq *req = call->req;
	bool sent = true;

	if (op == NULL) {
		if (unavailable) {
			api_reply_unavailable(req, "the operator directory");
		} else {
			hreq_add_header(req, "WWW-Authenticate", "Bearer");
			http_reply_error(req, 401, "unauthorized", NULL,
					 "unknown or revoked operator token", 0);
		}
		api_call_free(call);
		return;
	}
	switch (call->route) {
	case API_STREAM:
		if (hreq_gone(req)) {
			/* The console left during the lookup: this reply
			 * only frees the request. */
			hreq_reply(req, 499);
			break;
		}
		fanout_attach_sse(deps->fanout, req, op, call->last_event_id);
		break;
	case API_QUEUE:
	case API_INCIDENT: {
		struct api_view *v = api_view_new(req, op);

		if (v == NULL)
			sent = false;
		else if (call->route == API_QUEUE)
			sent = qsnap_fetch(deps->decide, api_on_queue_view, v);
		else {
			v->pg = deps->pg_query;
			v->incident_id = call->incident_id;
			sent = decide_incident(deps->decide, call->incident_id,
					       api_on_incident_view, v);
		}
		if (!sent)
			free(v);
		break;
	}
	}
	if (!sent)
		api_reply_unavailable(req, "the incident store");
	api_call_free(call);
}

/* Checks method and token, then continues in api_on_operator. */
static void api_authorize(struct hreq *req, struct http_server *s,
			  struct api_call *proto)
{
	const char *token = http_bearer_token(req);
	struct api_call *call;

	if (hreq_method(req) != HREQ_GET) {
		hreq_add_header(req, "Allow", "GET");
		http_reply_error(req, 405, "method_not_allowed", NULL,
				 "use GET", 0);
		free(proto->last_event_id);
		return;
	}
	if (token == NULL) {
		hreq_add_header(req, "WWW-Authenticate", "Bearer");
		http_reply_error(req, 401, "unauthorized", NULL,
				 "an operator bearer token is required", 0);
		free(proto->last_event_id);
		return;
	}
	call = malloc(sizeof(*call));
	if (call == NULL) {
		api_reply_unavailable(req, "memory");
		free(proto->last_event_id);
		return;
	}
	*call = *proto;
	call->req = req;
	call->server = s;
	operators_lookup(http_server_deps(s)->operators, token,
			 api_on_operator, call);
}

void api_on_stream(struct hreq *req, void *server)
{
	const char *last = hreq_header(req, "Last-Event-ID");
	struct api_call proto = {.route = API_STREAM};

	if (last != NULL && last[0] != '\0') {
		proto.last_event_id = strdup(last);
		if (proto.last_event_id == NULL) {
			api_reply_unavailable(req, "memory");
			return;
		}
	}
	api_authorize(req, server, &proto);
}

/* /v1/incidents[?state=open] and /v1/incidents/{id}. */
void api_on_incidents(struct hreq *req, void *server)
{
	const char *path = hreq_path(req);
	struct api_call proto = {.route = API_QUEUE};

	if (strncmp(path, "/v1/incidents/", 14) == 0) {
		const char *id = path + 14;
		char *end;

		if (strchr(id, '/') != NULL) {
			http_reply_error(req, 404, "not_found", NULL,
					 "no such endpoint", 0);
			return;
		}
		errno = 0;
		proto.incident_id = strtoll(id, &end, 10);
		if (id[0] < '0' || id[0] > '9' || *end != '\0' || errno != 0 ||
		    proto.incident_id <= 0) {
			http_reply_error(req, 400, "invalid_id", "id",
					 "an incident id is a positive integer",
					 0);
			return;
		}
		proto.route = API_INCIDENT;
	} else {
		const char *query = hreq_query(req);
		struct evkeyvalq params;
		const char *state;
		bool ok;

		TAILQ_INIT(&params);
		if (query != NULL && evhttp_parse_query_str(query, &params) != 0) {
			http_reply_error(req, 400, "bad_request", NULL,
					 "malformed query string", 0);
			return;
		}
		state = evhttp_find_header(&params, "state");
		ok = state == NULL || strcmp(state, "open") == 0;
		evhttp_clear_headers(&params);
		if (!ok) {
			http_reply_error(req, 400, "bad_request", "state",
					 "only state=open is supported", 0);
			return;
		}
	}
	api_authorize(req, server, &proto);
}

void api_on_health(struct hreq *req, void *server)
{
	http_reply_json(req, 200, "{\"status\":\"ok\"}");
}

void api_on_ready(struct hreq *req, void *server)
{
	const struct http_deps *deps = http_server_deps(server);
	bool redis = redis_pool_ready(deps->redis);
	bool pg = audit_usable(deps->audit);
	bool spool = audit_spool_usable(deps->audit);
	bool ready = redis && (pg || spool);
	char json[256];

	/* Ready: Redis, and somewhere durable for the rows (issue 4). */
	snprintf(json, sizeof(json),
		 "{\"status\":\"%s\",\"redis\":%s,\"postgres\":%s,"
		 "\"spool\":{\"usable\":%s,\"rows\":%zu,\"bytes\":%zu}}",
		 ready ? "ready" : "not_ready", redis ? "true" : "false",
		 pg ? "true" : "false", spool ? "true" : "false",
		 audit_spool_rows(deps->audit), audit_spool_bytes(deps->audit));
	http_reply_json(req, ready ? 200 : 503, json);
}

void api_on_metrics(struct hreq *req, void *server)
{
	char *text = metrics_render();

	if (text == NULL) {
		api_reply_unavailable(req, "memory");
		return;
	}
	hreq_add_header(req, "Content-Type", "text/plain; version=0.0.4");
	evbuffer_add(hreq_output(req), text, strlen(text));
	hreq_reply(req, 200);
	free(text);
}
