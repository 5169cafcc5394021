/* seqfloor: the counters' floor from the audit trail. */
#include "seqfloor.h"

#include <stdint.h>
#include <stdlib.h>

#include "config.h"
#include "decide.h"
#include "log.h"
#include "pg_conn.h"

/* Janitor ticks (100 ms) between reads: after a read, after a failed
 * one. Until the first read, every tick that PostgreSQL is there. */
#define SEQFLOOR_EVERY_TICKS 100
#define SEQFLOOR_RETRY_TICKS 10

/* Both by an index: max(incident_id) by the incident_id indexes, and the
 * accept_seq of the newest events by chain_seq (accept_seq has no index
 * of its own, and one more per audited event is not worth it: the rows
 * are written in about the order their accept_seq was given, so the
 * newest thousand hold the highest). */
static const char seqfloor_sql[] =
	"SELECT greatest((SELECT max(incident_id) FROM events),"
	"  (SELECT max(incident_id) FROM incident_transitions), 0),"
	" coalesce((SELECT max(accept_seq) FROM (SELECT accept_seq FROM events"
	"  ORDER BY chain_seq DESC LIMIT 1000) newest), 0)";

struct seqfloor {
	struct decide *decide;
	struct pg_conn *pg;
	bool busy;       /* a query in flight */
	bool known;      /* read at least once */
	bool failing;    /* the last read failed (logged once) */
	unsigned wait;   /* ticks before the next read */
};

struct seqfloor *seqfloor_new(struct decide *decide, struct pg_conn *pg)
{
	struct seqfloor *s = calloc(1, sizeof(*s));

	if (s != NULL) {
		s->decide = decide;
		s->pg = pg;
	}
	return s;
}

void seqfloor_free(struct seqfloor *s)
{
	free(s);
}

bool seqfloor_known(const struct seqfloor *s)
{
	return s->known;
}

static void seqfloor_on_result(PGresult *res, const char *errmsg, void *arg)
{
	struct seqfloor *s = arg;
	int64_t incident, accept;

	s->busy = false;
	if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK ||
	    PQntuples(res) != 1 || PQnfields(res) != 2) {
		if (!s->failing)
			log_warn("seqfloor: not read: %s",
				 errmsg ? errmsg : "unexpected result");
		s->failing = true;
		s->wait = SEQFLOOR_RETRY_TICKS;
		return;
	}
	incident = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	accept = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
	decide_raise_floor(s->decide, incident, accept);
	if (!s->known)
		log_info("seqfloor: incident ids continue above %lld, "
			 "accept_seq above %lld", (long long)incident,
			 (long long)accept);
	s->known = true;
	s->failing = false;
	s->wait = SEQFLOOR_EVERY_TICKS;
}

void seqfloor_tick(struct seqfloor *s)
{
	if (s->wait > 0)
		s->wait--;
	if (s->busy || s->wait > 0 || !pg_conn_ready(s->pg))
		return;
	s->busy = pg_conn_query(s->pg, seqfloor_sql, 0, NULL,
				config_current()->pg_timeout_ms,
				seqfloor_on_result, s);
}
