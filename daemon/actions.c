/* actions: the operators' incident actions of the HTTP API,
 *
 *   POST /v1/incidents/{id}/ack       {"version"?}
 *   POST /v1/incidents/{id}/resolve   {"note", "outcome"?, "version"?}
 *   POST /v1/incidents/{id}/note      {"note", "version"?}
 *   POST /v1/incidents/{id}/transfer  {"to_operator" | "to_zone", "version"?}
 *   POST /v1/incidents/{id}/reopen    {"note"?, "version"?}  (supervisor)
 *
 * One request goes: parse the body -> token lookup and role check -> one
 * call of decide.lua (atomic: version check, holder check, state change,
 * change record, escalation stop) -> audit transition row -> fan-out to
 * the consoles -> reply with the new snapshot once the row is committed
 * (or kept for retry when PostgreSQL is down). Refusals change nothing and
 * are not audited: 409 names who holds the incident and its version.
 *
 * A transfer to an operator makes them the holder and stops escalation,
 * so the target must be someone who can see and resolve the incident: an
 * active operator, supervisor or admin, and an operator with zones only
 * for an incident of those zones (the zone is checked in the script,
 * against the incident's zone at that moment). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <jansson.h>

#include "audit.h"
#include "config.h"
#include "decide.h"
#include "evt.h"
#include "http1.h"
#include "http_server.h"
#include "log.h"
#include "operators.h"
#include "tzclock.h"

#define ACTIONS_NOTE_MAX 2000
#define ACTIONS_WORD_MAX 64
#define ACTIONS_CHANGES_MAXLEN "10000"

enum actions_kind {
	ACT_ACK = 0,
	ACT_RESOLVE,
	ACT_NOTE,
	ACT_TRANSFER,
	ACT_REOPEN,
	ACT__COUNT
};

static const char *const actions_names[ACT__COUNT] = {
	"ack", "resolve", "note", "transfer", "reopen",
};

enum actions_state {
	ACTS_AUTH,    /* waiting for the token lookup */
	ACTS_DECIDE,  /* waiting for decide.lua */
	ACTS_RECORD,  /* waiting for the audit row */
};

/* One action request, from parse to reply. */
struct actions_call {
	struct hreq *req;
	struct http_server *server;
	enum actions_state state;
	enum actions_kind kind;
	int64_t incident_id;
	char version[24];     /* "" or the version the operator acted on */
	char *note;           /* resolve, note, reopen */
	char *outcome;        /* resolve */
	char *to_kind;        /* transfer: "operator" or "zone" */
	char *to;
	char *actor;          /* the operator's name, after the lookup */
	char *snapshot;       /* the reply body, after decide */
};

static void actions_call_free(struct actions_call *c)
{
	free(c->note);
	free(c->outcome);
	free(c->to_kind);
	free(c->to);
	free(c->actor);
	free(c->snapshot);
	free(c);
}

static void actions_unavailable(struct hreq *req, const char *what)
{
	char detail[128];

	snprintf(detail, sizeof(detail), "%s is unavailable now; try again",
		 what);
	http_reply_error(req, 503, "unavailable", NULL, detail, 2);
}

/* A 1..64 character word of [A-Za-z0-9._@ -] (operator names, zones,
 * outcome codes): safe in logs and in the comma-separated zone list. */
static bool actions_word_valid(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > ACTIONS_WORD_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' ||
		      ch == '@' || ch == '-' || ch == ' '))
			return false;
	}
	return true;
}

/* Copies an optional string member; false (400 sent) if it is not a
 * string, too long or (word) not a word. */
static bool actions_member(struct hreq *req, json_t *body,
			   const char *name, bool word, char **out)
{
	json_t *v = json_object_get(body, name);
	char detail[96];
	const char *s;

	if (v == NULL || json_is_null(v))
		return true;
	s = json_string_value(v);
	if (s == NULL || (word && !actions_word_valid(s)) ||
	    strlen(s) > ACTIONS_NOTE_MAX) {
		snprintf(detail, sizeof(detail), "%s must be %s", name,
			 word ? "1..64 characters of A-Z a-z 0-9 . _ @ - space"
			      : "a string of at most 2000 bytes");
		http_reply_error(req, 400, "invalid_field", name, detail, 0);
		return false;
	}
	if ((*out = strdup(s)) == NULL) {
		actions_unavailable(req, "memory");
		return false;
	}
	return true;
}

/* Parses the JSON body into c; false when a reply was sent. */
static bool actions_parse_body(struct hreq *req,
			       struct actions_call *c)
{
	struct evbuffer *in = hreq_body(req);
	size_t len = evbuffer_get_length(in);
	json_t *body, *v;
	json_error_t jerr;
	char *to_op = NULL, *to_zone = NULL;
	bool ok = false;

	if (len > (size_t)config_current()->max_body_bytes) {
		http_reply_error(req, 413, "body_too_large", NULL,
				 "the body is over the size limit", 0);
		return false;
	}
	if (len == 0) {
		body = json_object();
	} else {
		body = json_loadb((const char *)evbuffer_pullup(in, -1), len,
				  JSON_REJECT_DUPLICATES, &jerr);
	}
	if (body == NULL || !json_is_object(body)) {
		http_reply_error(req, 400, "invalid_json", NULL,
				 "the body must be a JSON object", 0);
		json_decref(body);
		return false;
	}
	if ((v = json_object_get(body, "version")) != NULL &&
	    !json_is_null(v)) {
		if (!json_is_integer(v) || json_integer_value(v) < 1) {
			http_reply_error(req, 400, "invalid_field", "version",
					 "version must be a positive integer",
					 0);
			goto done;
		}
		snprintf(c->version, sizeof(c->version), "%lld",
			 (long long)json_integer_value(v));
	}
	if (!actions_member(req, body, "note", false, &c->note) ||
	    !actions_member(req, body, "outcome", true, &c->outcome) ||
	    !actions_member(req, body, "to_operator", true, &to_op) ||
	    !actions_member(req, body, "to_zone", true, &to_zone))
		goto done;
	if ((c->kind == ACT_RESOLVE || c->kind == ACT_NOTE) &&
	    (c->note == NULL || c->note[0] == '\0')) {
		http_reply_error(req, 400, "missing_field", "note",
				 "a note is required", 0);
		goto done;
	}
	if (c->kind == ACT_TRANSFER) {
		if ((to_op == NULL) == (to_zone == NULL)) {
			http_reply_error(req, 400, "missing_field", "to_operator",
					 "give exactly one of to_operator and "
					 "to_zone", 0);
			goto done;
		}
		c->to_kind = strdup(to_op != NULL ? "operator" : "zone");
		c->to = to_op != NULL ? to_op : to_zone;
		to_op = to_zone = NULL;
		if (c->to_kind == NULL) {
			actions_unavailable(req, "memory");
			goto done;
		}
	}
	ok = true;
done:
	free(to_op);
	free(to_zone);
	json_decref(body);
	return ok;
}

static void actions_on_recorded(bool durable, void *arg)
{
	struct actions_call *c = arg;

	if (!durable)
		log_warn("action incident=%lld %s by %s: audit row not yet "
			 "committed; kept for retry",
			 (long long)c->incident_id, actions_names[c->kind],
			 c->actor);
	http_reply_json(c->req, 200, c->snapshot);
	actions_call_free(c);
}

/* A refusal from the script: 404, 403 or 409 naming the holder. */
static void actions_refused(struct actions_call *c, json_t *r,
			    const char *status)
{
	const char *holder = json_string_value(json_object_get(r, "acked_by"));
	const char *state = json_string_value(json_object_get(r, "state"));
	json_int_t version = json_integer_value(json_object_get(r, "version"));
	json_t *err = NULL;
	char detail[160];
	const char *code = "conflict";
	int http = 409;
	char *text;

	if (strcmp(status, "not_found") == 0) {
		http_reply_error(c->req, 404, "not_found", NULL,
				 "no such incident", 0);
		return;
	}
	if (strcmp(status, "zone") == 0) {
		http_reply_error(c->req, 403, "forbidden", NULL,
				 "the incident is not in your zones", 0);
		return;
	}
	if (strcmp(status, "target_zone") == 0) {
		code = "target_out_of_zone";
		snprintf(detail, sizeof(detail),
			 "%s does not work on the incident's zone",
			 c->to != NULL ? c->to : "the operator");
	} else if (strcmp(status, "stale") == 0) {
		code = "stale_version";
		snprintf(detail, sizeof(detail),
			 "the incident changed: it is at version %lld",
			 (long long)version);
	} else if (strcmp(status, "held") == 0) {
		code = "already_acknowledged";
		snprintf(detail, sizeof(detail), "acknowledged by %s",
			 holder != NULL ? holder : "another operator");
	} else if (strcmp(status, "resolved") == 0) {
		code = "already_resolved";
		snprintf(detail, sizeof(detail), "the incident is resolved");
	} else {
		code = "not_resolved";
		snprintf(detail, sizeof(detail),
			 "only a resolved incident can be reopened");
	}
	err = json_pack("{s:s, s:s, s:I, s:s}", "error", code, "detail",
			detail, "version", version, "state",
			state != NULL ? state : "");
	if (err != NULL && holder != NULL && holder[0] != '\0')
		json_object_set_new(err, "acked_by", json_string(holder));
	text = err != NULL ? json_dumps(err, JSON_COMPACT) : NULL;
	json_decref(err);
	if (text == NULL) {
		actions_unavailable(c->req, "memory");
		return;
	}
	http_reply_json(c->req, http, text);
	free(text);
}

static void actions_on_decided(bool ok, const char *json, void *arg)
{
	struct actions_call *c = arg;
	const struct http_deps *deps = http_server_deps(c->server);
	json_t *r = NULL;
	const char *status, *snap, *change_id, *from, *to;
	char tid[48], *detail = NULL;
	struct audit_transition_row row;

	if (!ok || json == NULL) {
		actions_unavailable(c->req, "the incident store");
		goto done;
	}
	r = json_loads(json, 0, NULL);
	status = json_string_value(json_object_get(r, "status"));
	if (status == NULL) {
		log_error("action incident=%lld: unexpected script reply",
			  (long long)c->incident_id);
		actions_unavailable(c->req, "the incident store");
		goto done;
	}
	if (strcmp(status, "ok") != 0) {
		actions_refused(c, r, status);
		goto done;
	}
	snap = json_string_value(json_object_get(r, "snapshot"));
	change_id = json_string_value(json_object_get(r, "change_id"));
	from = json_string_value(json_object_get(r, "from"));
	to = json_string_value(json_object_get(r, "to"));
	if (snap == NULL || change_id == NULL || from == NULL || to == NULL ||
	    (c->snapshot = strdup(snap)) == NULL) {
		actions_unavailable(c->req, "the incident store");
		goto done;
	}
	if (change_id[0] == '\0') {
		/* Nothing changed (ack by the holder): nothing to record. */
		http_reply_json(c->req, 200, c->snapshot);
		goto done;
	}
	log_info("action incident=%lld %s by %s: %s -> %s",
		 (long long)c->incident_id, actions_names[c->kind], c->actor,
		 from, to);
	snprintf(tid, sizeof(tid), "%lld:%lld", (long long)c->incident_id,
		 (long long)json_integer_value(json_object_get(r, "version")));
	detail = json_dumps(json_object_get(r, "detail"), JSON_COMPACT);
	row = (struct audit_transition_row){
		.transition_id = tid,
		.incident_id = c->incident_id,
		.from_state = from,
		.to_state = to,
		.actor = c->actor,
		.detail_json = detail,
		.at_ms = tzclock_now_ms(),
	};
	c->state = ACTS_RECORD;
	/* The operator waits for the answer: not behind a heartbeat backlog. */
	audit_record_urgent(deps->audit, NULL, &row, actions_on_recorded, c);
	free(detail);
	json_decref(r);
	return;
done:
	json_decref(r);
	actions_call_free(c);
}

static void actions_on_operator(const struct operator_info *op,
				bool unavailable, void *arg)
{
	struct actions_call *c = arg;
	const struct http_deps *deps = http_server_deps(c->server);
	const struct operator_info *target = NULL;
	char id[24], now_ms[24], now_iso[32], detail[160];
	const char *params[11];
	int64_t now = tzclock_now_ms();

	if (op == NULL) {
		if (unavailable) {
			actions_unavailable(c->req, "the operator directory");
		} else {
			hreq_add_header(c->req, "WWW-Authenticate", "Bearer");
			http_reply_error(c->req, 401, "unauthorized", NULL,
					 "unknown or revoked operator token", 0);
		}
		goto fail;
	}
	if (!operators_role_can_act(op->role) ||
	    (c->kind == ACT_REOPEN && !operators_role_can_supervise(op->role))) {
		http_reply_error(c->req, 403, "forbidden", NULL,
				 c->kind == ACT_REOPEN
					 ? "reopen needs the supervisor role"
					 : "this role may not act on incidents",
				 0);
		goto fail;
	}
	if (c->kind == ACT_TRANSFER && strcmp(c->to_kind, "operator") == 0) {
		target = operators_by_name(deps->operators, c->to);
		if (target == NULL) {
			http_reply_error(c->req, 400, "invalid_field",
					 "to_operator",
					 "no active operator of that name", 0);
			goto fail;
		}
		if (!operators_role_can_act(target->role)) {
			snprintf(detail, sizeof(detail),
				 "%s has the role %s, which cannot hold "
				 "incidents",
				 target->name, auth_role_name(target->role));
			http_reply_error(c->req, 400, "invalid_field",
					 "to_operator", detail, 0);
			goto fail;
		}
	}
	if ((c->actor = strdup(op->name)) == NULL) {
		actions_unavailable(c->req, "memory");
		goto fail;
	}
	snprintf(id, sizeof(id), "%lld", (long long)c->incident_id);
	snprintf(now_ms, sizeof(now_ms), "%lld", (long long)now);
	evt_format_time(now, now_iso, sizeof(now_iso));
	params[0] = id;
	params[1] = op->name;
	params[2] = c->version;
	params[3] = now_ms;
	params[4] = now_iso;
	params[5] = ACTIONS_CHANGES_MAXLEN;
	/* zone_mode = first: any zone may be acted on. */
	params[6] = op->zones != NULL && !config_current()->zone_first
			    ? op->zones : "";
	params[7] = operators_role_can_supervise(op->role) ? "1" : "0";
	params[8] = c->kind == ACT_TRANSFER ? c->to_kind
		    : c->note != NULL       ? c->note : "";
	params[9] = c->kind == ACT_TRANSFER ? c->to
		    : c->outcome != NULL    ? c->outcome : "";
	/* The zones the transfer target works on ("" any): only an
	 * operator's zones limit them, and not with zone_mode = first. */
	params[10] = target != NULL && target->role == AUTH_ROLE_OPERATOR &&
			     target->zones != NULL &&
			     !config_current()->zone_first
			     ? target->zones : "";
	c->state = ACTS_DECIDE;
	if (!decide_script(deps->decide, actions_names[c->kind], 11, params,
			   actions_on_decided, c)) {
		actions_unavailable(c->req, "the incident store");
		goto fail;
	}
	return;
fail:
	actions_call_free(c);
}

/* /v1/incidents/{id}/{action}. */
void actions_on_request(struct hreq *req, void *server)
{
	const char *path = hreq_path(req);
	const char *idp = path + strlen("/v1/incidents/");
	const char *slash = strchr(idp, '/');
	const char *token = http_bearer_token(req);
	struct actions_call *c;
	int kind = -1;
	int64_t id;
	char *end;

	for (int i = 0; i < ACT__COUNT; i++)
		if (strcmp(slash + 1, actions_names[i]) == 0)
			kind = i;
	if (kind < 0) {
		http_reply_error(req, 404, "not_found", NULL,
				 "no such endpoint", 0);
		return;
	}
	errno = 0;
	id = strtoll(idp, &end, 10);
	if (idp[0] < '0' || idp[0] > '9' || end != slash || errno != 0 ||
	    id <= 0) {
		http_reply_error(req, 400, "invalid_id", "id",
				 "an incident id is a positive integer", 0);
		return;
	}
	if (hreq_method(req) != HREQ_POST) {
		hreq_add_header(req, "Allow", "POST");
		http_reply_error(req, 405, "method_not_allowed", NULL,
				 "use POST", 0);
		return;
	}
	if (token == NULL) {
		hreq_add_header(req, "WWW-Authenticate", "Bearer");
		http_reply_error(req, 401, "unauthorized", NULL,
				 "an operator bearer token is required", 0);
		return;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		actions_unavailable(req, "memory");
		return;
	}
	c->req = req;
	c->server = server;
	c->kind = (enum actions_kind)kind;
	c->incident_id = id;
	c->state = ACTS_AUTH;
	if (!actions_parse_body(req, c)) {
		actions_call_free(c);
		return;
	}
	operators_lookup(http_server_deps(server)->operators, token,
			 actions_on_operator, c);
}
