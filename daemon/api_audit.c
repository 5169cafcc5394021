/* api_audit: GET /v1/audit, the audit questions over HTTP (auditor and
 * admin roles only), answered from PostgreSQL on a connection of their
 * own (a long statistics query neither waits behind nor delays the token
 * lookups), asynchronously: the loop never waits for the query. Queries
 * run one at a time on it, each with [audit] query_timeout_ms.
 *
 *   ?incident_id=ID                          the full history of an incident
 *   ?source_id=ID[&from=T][&to=T]            everything of one source
 *   ?operator=NAME[&from=T][&to=T]           everything one operator did
 *   ?stats=1[&by=zone|kind|priority|operator][&from=T][&to=T]
 *                                            time to acknowledge / resolve
 *   [&limit=N]
 *
 * 200 {"rows": [...]} (the row shapes of docs/audit.md); personal attrs
 * are "***" unless the caller's role is in [audit] personal_roles. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>

#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>

#include "audit_query.h"
#include "config.h"
#include "evt.h"
#include "http1.h"
#include "http_server.h"
#include "log.h"
#include "operators.h"
#include "personal.h"
#include "pg_conn.h"
#include "jsonout.h"

#define API_AUDIT_N_PARAMS 9
/* Rows one request may ask for (the default is 10,000). */
#define API_AUDIT_MAX_LIMIT 100000
#define API_AUDIT_STR_(x) #x
#define API_AUDIT_STR(x) API_AUDIT_STR_(x)

/* One request: waiting for the token lookup, then for PostgreSQL. */
struct api_audit_call {
	struct hreq *req;
	struct http_server *server;
	struct audit_query q;
	char *values[API_AUDIT_N_PARAMS]; /* copies of the query string */
	char incident[24];
	bool show_personal;
};

static const char *const api_audit_names[API_AUDIT_N_PARAMS] = {
	"incident_id", "source_id", "operator", "from", "to", "stats", "by",
	"limit", "format",
};

static void api_audit_call_free(struct api_audit_call *call)
{
	for (int i = 0; i < API_AUDIT_N_PARAMS; i++)
		free(call->values[i]);
	free(call);
}

static void api_audit_unavailable(struct hreq *req)
{
	http_reply_error(req, 503, "unavailable", NULL,
			 "the audit store is unavailable now; try again", 2);
}

static void api_audit_on_result(PGresult *res, const char *errmsg, void *arg)
{
	struct api_audit_call *call = arg;
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE)
				: NULL;
	json_t *out, *rows;
	char *text;

	if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
		if (state && strncmp(state, "22", 2) == 0) {
			/* a from/to PostgreSQL cannot read as a time */
			http_reply_error(call->req, 400, "invalid_field", NULL,
					 "from/to must be times (RFC 3339)", 0);
		} else {
			log_warn("audit query failed: %s",
				 errmsg ? errmsg : "unknown error");
			api_audit_unavailable(call->req);
		}
		api_audit_call_free(call);
		return;
	}
	out = json_object();
	rows = json_array();
	for (int i = 0; i < PQntuples(res); i++)
		json_array_append_new(rows,
				      audit_query_row(&call->q, config_current(),
						      res, i,
						      call->show_personal));
	json_object_set_new(out, "rows", rows);
	text = jsonout_dumps(out, JSON_COMPACT);
	json_decref(out);
	if (text)
		http_reply_json(call->req, 200, text);
	else
		api_audit_unavailable(call->req);
	free(text);
	api_audit_call_free(call);
}

static void api_audit_on_operator(const struct operator_info *op,
				  bool unavailable, void *arg)
{
	struct api_audit_call *call = arg;
	const struct http_deps *deps = http_server_deps(call->server);
	const char *params[AUDIT_QUERY_MAX_PARAMS] = {0}, *why;
	char *sql;
	int n;
	bool sent;

	if (!op) {
		if (unavailable) {
			api_audit_unavailable(call->req);
		} else {
			hreq_add_header(call->req, "WWW-Authenticate", "Bearer");
			http_reply_error(call->req, 401, "unauthorized", NULL,
					 "unknown or revoked operator token", 0);
		}
		api_audit_call_free(call);
		return;
	}
	if (op->role != AUTH_ROLE_AUDITOR && op->role != AUTH_ROLE_ADMIN) {
		http_reply_error(call->req, 403, "forbidden", NULL,
				 "the audit trail is for auditors and admins",
				 0);
		api_audit_call_free(call);
		return;
	}
	call->show_personal =
		personal_role_sees(config_current(), auth_role_name(op->role));
	if (!audit_query_build(&call->q, config_current(), &sql, params, &n,
			       &why)) {
		http_reply_error(call->req, 400, "bad_request", NULL, why, 0);
		api_audit_call_free(call);
		return;
	}
	if (call->q.kind == AUDIT_Q_INCIDENT)
		params[0] = call->incident;
	sent = pg_conn_ready(deps->pg_query) &&
	       pg_conn_query(deps->pg_query, sql, n, params,
			     config_current()->audit_query_timeout_ms,
			     api_audit_on_result, call);
	free(sql);
	if (!sent) {
		api_audit_unavailable(call->req);
		api_audit_call_free(call);
	}
}

/* The query string into call->q; false (answered 400) when unusable. */
static bool api_audit_parse(struct hreq *req,
			    struct api_audit_call *call)
{
	const char *query = hreq_query(req);
	struct evkeyvalq kv;
	char **v = call->values;
	char *end;

	TAILQ_INIT(&kv);
	if (query && evhttp_parse_query_str(query, &kv) != 0) {
		http_reply_error(req, 400, "bad_request", NULL,
				 "malformed query string", 0);
		return false;
	}
	for (int i = 0; i < API_AUDIT_N_PARAMS; i++) {
		const char *s = evhttp_find_header(&kv, api_audit_names[i]);

		v[i] = s && *s ? strdup(s) : NULL;
	}
	evhttp_clear_headers(&kv);
	call->q.source_id = v[1];
	call->q.operator_name = v[2];
	call->q.from = v[3];
	call->q.to = v[4];
	call->q.by = v[6];
	/* Checked here, so that a bad value is answered without a query. */
	for (int i = 3; i <= 4; i++) {
		int64_t ms;

		if (v[i] && !evt_parse_time(v[i], &ms)) {
			http_reply_error(req, 400, "invalid_field",
					 api_audit_names[i],
					 "from and to are RFC 3339 times "
					 "(2026-11-21T22:14:03Z)", 0);
			return false;
		}
	}
	if (v[7]) {
		long n;

		errno = 0;
		n = strtol(v[7], &end, 10);
		/* The whole answer is built on the loop, in memory: a
		 * bound (alertctl audit, which blocks nothing, has none). */
		if (*end || errno || n <= 0 || n > API_AUDIT_MAX_LIMIT) {
			http_reply_error(req, 400, "invalid_field", "limit",
					 "limit is an integer from 1 to "
					 API_AUDIT_STR(API_AUDIT_MAX_LIMIT), 0);
			return false;
		}
		call->q.limit = (int)n;
	}
	if (v[0]) {
		errno = 0;
		call->q.incident_id = strtoll(v[0], &end, 10);
		if (*end || errno || call->q.incident_id <= 0) {
			http_reply_error(req, 400, "invalid_id", "incident_id",
					 "an incident id is a positive integer",
					 0);
			return false;
		}
		snprintf(call->incident, sizeof(call->incident), "%" PRId64,
			 call->q.incident_id);
		call->q.kind = AUDIT_Q_INCIDENT;
	} else if (v[1]) {
		call->q.kind = AUDIT_Q_SOURCE;
	} else if (v[2]) {
		call->q.kind = AUDIT_Q_OPERATOR;
	} else if (v[5]) {
		call->q.kind = AUDIT_Q_STATS;
	} else {
		http_reply_error(req, 400, "bad_request", NULL,
				 "one of incident_id, source_id, operator or "
				 "stats is required", 0);
		return false;
	}
	return true;
}

void api_audit_on_request(struct hreq *req, void *server)
{
	const char *h = http_bearer_token(req);
	struct api_audit_call *call;

	if (hreq_method(req) != HREQ_GET) {
		hreq_add_header(req, "Allow", "GET");
		http_reply_error(req, 405, "method_not_allowed", NULL,
				 "use GET", 0);
		return;
	}
	if (h == NULL) {
		hreq_add_header(req, "WWW-Authenticate", "Bearer");
		http_reply_error(req, 401, "unauthorized", NULL,
				 "an operator bearer token is required", 0);
		return;
	}
	if (!(call = calloc(1, sizeof(*call)))) {
		api_audit_unavailable(req);
		return;
	}
	call->req = req;
	call->server = server;
	if (!api_audit_parse(req, call)) {
		api_audit_call_free(call);
		return;
	}
	operators_lookup(http_server_deps(server)->operators, h,
			 api_audit_on_operator, call);
}
