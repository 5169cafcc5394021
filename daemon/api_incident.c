/* api_incident: the history half of GET /v1/incidents/{id}. The contract
 * (DESIGN.md) answers "one incident with its events and transitions": the
 * snapshot comes from Redis (api.c, already filtered by zone and masked by
 * role), and its events and transitions from the audit trail in
 * PostgreSQL, read here on the audit-query connection, asynchronously.
 *
 * The reply is the snapshot with four members more (docs/api.md):
 *   "events"       its newest API_INCIDENT_EVENTS events, oldest first:
 *                  {"received_at", "outcome", "priority", "event"} where
 *                  event is the payload as stored (personal attrs "***"
 *                  unless the caller's role is in [audit] personal_roles,
 *                  as in GET /v1/audit; a support-line label as in the
 *                  snapshot: "***" for the auditor);
 *   "transitions"  its newest API_INCIDENT_TRANSITIONS transitions, oldest
 *                  first: {"at", "from", "to", "actor", "detail"};
 *   "events_truncated", "transitions_truncated"
 *                  true when older ones exist (GET /v1/audit has them all).
 * When the audit store cannot be read (down, busy past [audit]
 * query_timeout_ms), the snapshot is still answered, with both lists null
 * and "history_error": an operator must see the incident even then. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/http.h>
#include <jansson.h>

#include "api_incident.h"
#include "config.h"
#include "http1.h"
#include "http_server.h"
#include "jsonout.h"
#include "log.h"
#include "personal.h"
#include "pg_conn.h"

#define API_INCIDENT_EVENTS 100
#define API_INCIDENT_TRANSITIONS 200

/* One more row than shown of each kind, newest first: the extra one says
 * that there are older ones. Both by the incident_id indexes. */
#define API_INCIDENT_TIME(col) \
	"to_char(" col " AT TIME ZONE 'UTC'," \
	" 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
#define API_STR_(x) #x
#define API_STR(x) API_STR_(x)
static const char api_incident_sql[] =
	"(SELECT 'e' AS k, " API_INCIDENT_TIME("received_at") " AS at,"
	"  outcome AS a, priority::text AS b, NULL::text AS c,"
	"  payload::text AS d"
	" FROM events WHERE incident_id = $1::bigint"
	" ORDER BY received_at DESC, seq DESC"
	" LIMIT " API_STR(API_INCIDENT_EVENTS) " + 1)"
	" UNION ALL "
	"(SELECT 't', " API_INCIDENT_TIME("at") ", from_state, to_state,"
	"  actor, detail::text"
	" FROM incident_transitions WHERE incident_id = $1::bigint"
	" ORDER BY at DESC, seq DESC"
	" LIMIT " API_STR(API_INCIDENT_TRANSITIONS) " + 1)";

struct api_incident_call {
	struct hreq *req;
	json_t *snap;          /* the snapshot as the caller may see it */
	bool show_personal;    /* personal attrs as stored */
	bool mask_label;       /* a support-line label "***", as in snap */
	char id[24];
};

static json_t *api_incident_text(const PGresult *res, int i, int col)
{
	return PQgetisnull(res, i, col) ? json_null()
					 : json_string(PQgetvalue(res, i, col));
}

/* A jsonb column's text as JSON (null when NULL or, impossibly, not
 * JSON). */
static json_t *api_incident_json(const PGresult *res, int i, int col)
{
	json_t *v = PQgetisnull(res, i, col)
			    ? NULL
			    : json_loads(PQgetvalue(res, i, col), 0, NULL);

	return v ? v : json_null();
}

static json_t *api_incident_event(const struct api_incident_call *call,
				  const PGresult *res, int i)
{
	json_t *o = json_object(), *ev = api_incident_json(res, i, 5);

	if (!call->show_personal && json_is_object(ev))
		personal_mask_attrs(config_current(), ev);
	if (call->mask_label && json_is_object(ev))
		personal_mask_label(ev);
	json_object_set_new(o, "received_at", api_incident_text(res, i, 1));
	json_object_set_new(o, "outcome", api_incident_text(res, i, 2));
	json_object_set_new(o, "priority",
			    json_integer(strtoll(PQgetvalue(res, i, 3), NULL,
						 10)));
	json_object_set_new(o, "event", ev);
	return o;
}

static json_t *api_incident_transition(const PGresult *res, int i)
{
	json_t *o = json_object();

	json_object_set_new(o, "at", api_incident_text(res, i, 1));
	json_object_set_new(o, "from", api_incident_text(res, i, 2));
	json_object_set_new(o, "to", api_incident_text(res, i, 3));
	json_object_set_new(o, "actor", api_incident_text(res, i, 4));
	json_object_set_new(o, "detail", api_incident_json(res, i, 5));
	return o;
}

/* Sends the snapshot with what was added to it and frees the call. */
static void api_incident_send(struct api_incident_call *call)
{
	char *text = jsonout_dumps(call->snap, JSON_COMPACT);

	if (text != NULL)
		http_reply_json(call->req, 200, text);
	else
		http_reply_error(call->req, 503, "unavailable", NULL,
				 "memory is short now; try again", 2);
	free(text);
	json_decref(call->snap);
	free(call);
}

static void api_incident_without_history(struct api_incident_call *call)
{
	json_object_set_new(call->snap, "events", json_null());
	json_object_set_new(call->snap, "transitions", json_null());
	json_object_set_new(call->snap, "history_error",
			    json_string("the audit store is unavailable now"));
	api_incident_send(call);
}

static void api_incident_on_result(PGresult *res, const char *errmsg,
				   void *arg)
{
	struct api_incident_call *call = arg;
	json_t *events, *transitions;
	int ne = 0, nt = 0;

	if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK ||
	    PQnfields(res) != 6) {
		log_warn("incident %s: history not read: %s", call->id,
			 errmsg ? errmsg : "unexpected result");
		api_incident_without_history(call);
		return;
	}
	events = json_array();
	transitions = json_array();
	/* Newest first within each kind: each row goes to the front, and
	 * the one past the limit only says that older ones exist. */
	for (int i = 0; i < PQntuples(res); i++) {
		bool event = PQgetvalue(res, i, 0)[0] == 'e';
		int *n = event ? &ne : &nt;

		if ((*n)++ >= (event ? API_INCIDENT_EVENTS
				     : API_INCIDENT_TRANSITIONS))
			continue;
		json_array_insert_new(event ? events : transitions, 0,
				      event ? api_incident_event(call, res, i)
					    : api_incident_transition(res, i));
	}
	json_object_set_new(call->snap, "events", events);
	json_object_set_new(call->snap, "events_truncated",
			    json_boolean(ne > API_INCIDENT_EVENTS));
	json_object_set_new(call->snap, "transitions", transitions);
	json_object_set_new(call->snap, "transitions_truncated",
			    json_boolean(nt > API_INCIDENT_TRANSITIONS));
	api_incident_send(call);
}

void api_incident_reply(struct hreq *req, struct pg_conn *pg,
			int64_t incident_id, const char *snapshot,
			const char *role)
{
	struct api_incident_call *call = calloc(1, sizeof(*call));
	const char *params[1];

	if (call == NULL || (call->snap = json_loads(snapshot, 0, NULL)) ==
				    NULL ||
	    !json_is_object(call->snap)) {
		/* Not an object: answer it as Redis gave it. */
		if (call != NULL)
			json_decref(call->snap);
		free(call);
		http_reply_json(req, 200, snapshot);
		return;
	}
	call->req = req;
	call->show_personal = personal_role_sees(config_current(), role);
	/* the snapshot's rule (fanout_view): the auditor's is masked */
	call->mask_label = strcmp(role, "auditor") == 0;
	snprintf(call->id, sizeof(call->id), "%" PRId64, incident_id);
	params[0] = call->id;
	if (pg == NULL || !pg_conn_ready(pg) ||
	    !pg_conn_query(pg, api_incident_sql, 1, params,
			   config_current()->audit_query_timeout_ms,
			   api_incident_on_result, call))
		api_incident_without_history(call);
}
