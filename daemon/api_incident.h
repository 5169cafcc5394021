/* api_incident: GET /v1/incidents/{id} with the incident's events and
 * transitions from the audit trail (api_incident.c, docs/api.md). */
#ifndef ALERTD_API_INCIDENT_H
#define ALERTD_API_INCIDENT_H

#include <stdint.h>

struct hreq;
struct pg_conn;

/* Answers req with snapshot (the incident as the caller, of role `role`,
 * may see it) and its history read through pg; without the history when
 * pg cannot answer. */
void api_incident_reply(struct hreq *req, struct pg_conn *pg,
			int64_t incident_id, const char *snapshot,
			const char *role);

#endif
