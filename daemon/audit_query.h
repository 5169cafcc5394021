/* audit_query: the audit questions as SQL over the view audit_log and the
 * tables of config/migrations/002_audit_chain.sql, shared by `alertctl
 * audit` (blocking libpq) and GET /v1/audit (pg_conn, asynchronous), and
 * the JSON of their result rows (personal attrs masked unless the caller
 * may see them). No I/O here. */
#ifndef ALERTD_AUDIT_QUERY_H
#define ALERTD_AUDIT_QUERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <libpq-fe.h>

struct config;

enum audit_query_kind {
	AUDIT_Q_INCIDENT,  /* the full history of one incident */
	AUDIT_Q_SOURCE,    /* everything of one source in a time range */
	AUDIT_Q_OPERATOR,  /* everything one operator did in a time range */
	AUDIT_Q_STATS,     /* time to acknowledge / resolve, grouped */
};

struct audit_query {
	enum audit_query_kind kind;
	int64_t incident_id;
	const char *source_id;
	const char *operator_name;
	const char *from, *to;   /* RFC 3339 / any timestamptz text; NULL: open */
	const char *by;          /* stats: zone | kind | priority | operator */
	int limit;               /* rows; 0: 10000 */
};

#define AUDIT_QUERY_MAX_PARAMS 4

/* The statement of q: *sql malloc'd, params pointing into q (or static
 * strings). false with why set when q is invalid (e.g. an unknown `by`). */
bool audit_query_build(const struct audit_query *q, const struct config *cfg,
		       char **sql, const char *params[AUDIT_QUERY_MAX_PARAMS],
		       int *nparams, const char **why)
	__attribute__((warn_unused_result));

/* Row i of a result of q as a JSON object (new reference). */
json_t *audit_query_row(const struct audit_query *q, const struct config *cfg,
			PGresult *res, int i, bool show_personal);

/* The stats targets of [audit] targets_s ("30,60"): up to max values > 0
 * into out; the count. */
size_t audit_query_targets(const struct config *cfg, int *out, size_t max);

#endif
