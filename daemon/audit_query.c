/* audit_query: SQL of the audit questions and JSON of their rows. */
#include "audit_query.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "personal.h"

#define AUDIT_QUERY_DEFAULT_LIMIT 10000

/* Columns of the time-line queries (in this order). */
static const char audit_query_log_select[] =
	"SELECT to_char(at AT TIME ZONE 'UTC',"
	"  'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS at,"
	" kind, incident_id, source_id, actor, summary, data::text, ref,"
	" chain_seq FROM audit_log WHERE ";

/* Time to acknowledge and to resolve: from the opening transition (to
 * 'new', from NULL) of each incident opened in [$1, $2) to its first
 * 'acknowledged' / 'resolved' transition; zone, source kind and priority
 * of the incident's first event; the operator who acknowledged /
 * resolved (the transition's actor). Priority bands: critical >= 90,
 * high >= 60, medium >= 30, low below. %s: the group key, %s: the
 * shares within each target. */
static const char audit_query_stats_fmt[] =
	"WITH opened AS ("
	" SELECT incident_id, min(at) AS opened_at FROM incident_transitions"
	" WHERE to_state = 'new' AND from_state IS NULL"
	"  AND at >= $1::timestamptz AND at < $2::timestamptz"
	" GROUP BY incident_id"
	"), first_event AS ("
	" SELECT DISTINCT ON (e.incident_id) e.incident_id, e.source_kind,"
	"  coalesce(e.payload->'source'->>'zone', '-') AS zone, e.priority"
	" FROM events e JOIN opened o USING (incident_id)"
	" ORDER BY e.incident_id, e.received_at, e.seq"
	"), firsts AS ("
	" SELECT DISTINCT ON (t.incident_id, t.to_state) t.incident_id,"
	"  t.to_state, t.at, t.actor"
	" FROM incident_transitions t JOIN opened o USING (incident_id)"
	" WHERE t.to_state IN ('acknowledged', 'resolved')"
	" ORDER BY t.incident_id, t.to_state, t.at"
	"), m AS ("
	" SELECT CASE x.to_state WHEN 'acknowledged' THEN 'acknowledge'"
	"  ELSE 'resolve' END AS metric, f.zone, f.source_kind AS kind,"
	"  CASE WHEN f.priority >= 90 THEN 'critical'"
	"   WHEN f.priority >= 60 THEN 'high'"
	"   WHEN f.priority >= 30 THEN 'medium' ELSE 'low' END AS priority,"
	"  x.actor AS operator,"
	"  extract(epoch FROM x.at - o.opened_at)::float8 AS secs"
	" FROM opened o JOIN first_event f USING (incident_id)"
	"  JOIN firsts x USING (incident_id)"
	")"
	" SELECT metric, %s AS key, count(*),"
	"  percentile_cont(0.5) WITHIN GROUP (ORDER BY secs),"
	"  percentile_cont(0.9) WITHIN GROUP (ORDER BY secs),"
	"  percentile_cont(0.99) WITHIN GROUP (ORDER BY secs)%s"
	" FROM m GROUP BY metric, key ORDER BY metric, key";

size_t audit_query_targets(const struct config *cfg, int *out, size_t max)
{
	const char *p = cfg && cfg->audit_targets_s ? cfg->audit_targets_s
						    : "30,60";
	size_t n = 0;

	while (*p && n < max) {
		char *end;
		long v = strtol(p, &end, 10);

		if (end == p) {
			p++;
			continue;
		}
		if (v > 0 && v < 100000000)
			out[n++] = (int)v;
		p = end;
	}
	return n;
}

static char *audit_query_stats_sql(const struct audit_query *q,
				   const struct config *cfg, const char **why)
{
	static const char *const keys[] = {"zone", "kind", "priority",
					   "operator"};
	char shares[512] = "";
	int targets[8];
	size_t nt = audit_query_targets(cfg, targets, 8), len = 0;
	const char *by = q->by ? q->by : "zone";
	char *sql = NULL;
	size_t k;

	for (k = 0; k < 4 && strcmp(by, keys[k]) != 0; k++)
		;
	if (k == 4) {
		*why = "by: expected zone, kind, priority or operator";
		return NULL;
	}
	for (size_t i = 0; i < nt; i++)
		len += (size_t)snprintf(shares + len, sizeof(shares) - len,
					", avg((secs <= %d)::int)::float8",
					targets[i]);
	if (asprintf(&sql, audit_query_stats_fmt, keys[k], shares) < 0)
		return NULL;
	return sql;
}

bool audit_query_build(const struct audit_query *q, const struct config *cfg,
		       char **sql, const char *params[AUDIT_QUERY_MAX_PARAMS],
		       int *nparams, const char **why)
{
	const char *from = q->from ? q->from : "-infinity";
	const char *to = q->to ? q->to : "infinity";
	int limit = q->limit > 0 ? q->limit : AUDIT_QUERY_DEFAULT_LIMIT;
	const char *where;
	int n;

	*sql = NULL;
	*why = "out of memory";
	switch (q->kind) {
	case AUDIT_Q_STATS:
		params[0] = from;
		params[1] = to;
		*nparams = 2;
		*sql = audit_query_stats_sql(q, cfg, why);
		return *sql != NULL;
	case AUDIT_Q_INCIDENT:
		where = "incident_id = $1::bigint";
		*nparams = 1;
		break;
	case AUDIT_Q_SOURCE:
		if (!q->source_id) {
			*why = "source_id is required";
			return false;
		}
		params[0] = q->source_id;
		where = "at >= $2::timestamptz AND at < $3::timestamptz AND"
			" ((kind = 'event' AND source_id = $1) OR"
			"  (kind <> 'event' AND incident_id IN ("
			"   SELECT incident_id FROM events WHERE source_id = $1"
			"   AND received_at >= $2::timestamptz"
			"   AND received_at < $3::timestamptz)))";
		*nparams = 3;
		break;
	case AUDIT_Q_OPERATOR:
		if (!q->operator_name) {
			*why = "operator is required";
			return false;
		}
		params[0] = q->operator_name;
		where = "actor = $1 AND at >= $2::timestamptz AND"
			" at < $3::timestamptz";
		*nparams = 3;
		break;
	default:
		*why = "unknown query";
		return false;
	}
	params[1] = from;
	params[2] = to;
	n = asprintf(sql, "%s%s ORDER BY at, chain_seq LIMIT %d",
		     audit_query_log_select, where, limit);
	if (n < 0) {
		*sql = NULL;
		return false;
	}
	return true;
}

static json_t *audit_query_text(PGresult *res, int i, int col)
{
	return PQgetisnull(res, i, col) ? json_null()
					 : json_string(PQgetvalue(res, i, col));
}

static json_t *audit_query_num(PGresult *res, int i, int col, bool integer)
{
	if (PQgetisnull(res, i, col))
		return json_null();
	if (integer)
		return json_integer(strtoll(PQgetvalue(res, i, col), NULL, 10));
	return json_real(strtod(PQgetvalue(res, i, col), NULL));
}

static json_t *audit_query_stats_row(const struct config *cfg,
				     PGresult *res, int i)
{
	json_t *o = json_object(), *within = json_object();
	int targets[8];
	size_t nt = audit_query_targets(cfg, targets, 8);

	json_object_set_new(o, "metric", audit_query_text(res, i, 0));
	json_object_set_new(o, "key", audit_query_text(res, i, 1));
	json_object_set_new(o, "count", audit_query_num(res, i, 2, true));
	json_object_set_new(o, "p50_s", audit_query_num(res, i, 3, false));
	json_object_set_new(o, "p90_s", audit_query_num(res, i, 4, false));
	json_object_set_new(o, "p99_s", audit_query_num(res, i, 5, false));
	for (size_t t = 0; t < nt && (int)t + 6 < PQnfields(res); t++) {
		char key[16];

		snprintf(key, sizeof(key), "%d", targets[t]);
		json_object_set_new(within, key,
				    audit_query_num(res, i, (int)t + 6, false));
	}
	json_object_set_new(o, "within_target", within);
	return o;
}

json_t *audit_query_row(const struct audit_query *q, const struct config *cfg,
			PGresult *res, int i, bool show_personal)
{
	static const char *const names[] = {"at", "kind", "incident_id",
					    "source_id", "actor", "summary",
					    "data", "ref", "chain_seq"};
	json_t *o, *data = NULL;

	if (q->kind == AUDIT_Q_STATS)
		return audit_query_stats_row(cfg, res, i);
	o = json_object();
	for (int c = 0; c < 9 && o; c++) {
		json_t *v;

		if (c == 2 || c == 8) {
			v = audit_query_num(res, i, c, true);
		} else if (c == 6) {
			v = PQgetisnull(res, i, c)
				    ? json_null()
				    : json_loads(PQgetvalue(res, i, c), 0, NULL);
			data = v;
		} else {
			v = audit_query_text(res, i, c);
		}
		json_object_set_new(o, names[c], v ? v : json_null());
	}
	if (data && !show_personal &&
	    strcmp(PQgetvalue(res, i, 1), "event") == 0)
		personal_mask_event(cfg, data);
	return o;
}
