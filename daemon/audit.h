/* audit: the batched PostgreSQL writer of the audit trail (group commit).
 *
 * Rows queue up while a batch is in flight; each batch is one statement
 * (one round trip, one commit) that inserts every queued event row and
 * transition row, idempotent on the event's (accept_seq, event_id) and the
 * transition's (transition_id, at). A row's callback runs once its batch has committed (durable=true) or
 * failed (durable=false).
 *
 * With a spool ([spool] path): rows that PostgreSQL cannot take now are
 * appended to the local spool file and fsync'd once per loop turn (group
 * fsync); their callbacks then run with durable=true. The spool is
 * replayed in order when PostgreSQL returns and emptied once replayed.
 * Without one (or when it is full or failing), rows of a failed batch are
 * answered durable=false and kept in memory (bounded by pg_retry_max_rows)
 * and written again when PostgreSQL returns, so that an event decided in
 * Redis is recorded even if its sender gave up. */
#ifndef ALERTD_AUDIT_H
#define ALERTD_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct pg_conn;
struct audit;

struct audit_event_row {
	int64_t accept_seq;
	const char *event_id;
	const char *source_id;
	const char *source_kind;
	const char *type;
	const char *outcome;     /* "new" or "merged": the decided outcome */
	int64_t incident_id;
	int priority;
	bool has_occurred_at;    /* false: occurred_at absent (NULL) */
	int64_t occurred_at_ms;  /* valid when has_occurred_at; 0 is the
				  * epoch, which clockless devices send */
	int64_t received_at_ms;
	const char *payload_json;
	/* A duplicate delivery's rows (this event row and its transition):
	 * stored already by the original delivery, or in the same batch
	 * (pipeline.c writes them again only so that the duplicate is
	 * answered once they are durable). Kept out of the batch's links
	 * (audit.c): they are checked, and inserted only if missing. */
	bool redelivery;
};

struct audit_transition_row {
	const char *transition_id; /* unique: "<incident>:<version>" */
	int64_t incident_id;
	const char *from_state;    /* NULL for the opening transition */
	const char *to_state;
	const char *actor;         /* "alertd" or an operator name */
	const char *detail_json;   /* NULL or a JSON object */
	int64_t at_ms;
};

typedef void (*audit_done_cb)(bool durable, void *arg);

struct audit *audit_new(struct event_base *base, struct pg_conn *conn);
/* Shutdown, once the loop has stopped, before anything is freed: nothing
 * will commit any more. The rows not committed (the batch in flight, which
 * is detached, and the queued ones) are appended and synced to the spool
 * and answered durable=true, or without a usable spool answered
 * durable=false; every row is answered now, while the modules the
 * callbacks reach (pipeline, ingest, HTTP server) are still alive. Rows
 * recorded after it are answered durable=false at once. audit_free runs
 * it if it did not run. */
void audit_stop(struct audit *a);
void audit_free(struct audit *a);

/* Queues an event row and/or a transition row (either may be NULL; all
 * strings are copied) to be committed together in the next batch. cb is
 * called exactly once, possibly before audit_record returns when
 * PostgreSQL is known to be unreachable (durable=false). */
void audit_record(struct audit *a, const struct audit_event_row *ev,
		  const struct audit_transition_row *tr, audit_done_cb cb,
		  void *arg);
/* The same for rows someone is waiting for urgently (an alarm's event, an
 * operator's action): the next batch takes them before the rows queued
 * with audit_record, so they never wait behind a backlog. */
void audit_record_urgent(struct audit *a, const struct audit_event_row *ev,
			 const struct audit_transition_row *tr,
			 audit_done_cb cb, void *arg);

/* Rows waiting (queued + in flight), and rows kept for retry. */
size_t audit_pending(const struct audit *a);
size_t audit_retry_backlog(const struct audit *a);
bool audit_usable(const struct audit *a);
/* Batches since start that the chain trigger linked instead of alertd:
 * the head had moved since alertd linked them (another writer) or rows
 * of them were stored already (a replay). */
uint64_t audit_trigger_linked(const struct audit *a);

/* The spool (issue 4): usable (configured, open, writable, not full);
 * rows and bytes in the file (not yet emptied after replay); group fsyncs
 * so far and the seconds they took. */
bool audit_spool_usable(const struct audit *a);
size_t audit_spool_rows(const struct audit *a);
size_t audit_spool_bytes(const struct audit *a);
double audit_spool_fsync_seconds(const struct audit *a, uint64_t *count);

/* The statement the batch of link l is written with, in the form that
 * fits its rows (each form prepared once per connection, under the name
 * put in *name if name is not NULL); the parameters of every form are
 * those of audit_link_params (audit_row.h). For the bench's PostgreSQL
 * limit (bench/lg_pg.c) too, which must send PostgreSQL exactly what
 * alertd sends. */
struct audit_link;
/* The statement sent first on every audit connection (a SET of the
 * session), for lg_pg.c too. */
const char *audit_session_statement(void);
const char *audit_batch_statement(const struct audit_link *l,
				  const char **name);

#endif
