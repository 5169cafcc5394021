/* pg_conn: one non-blocking libpq connection driven by the event loop:
 * PQconnectStart/PQconnectPoll, PQsendQueryParams, PQflush,
 * PQconsumeInput/PQisBusy/PQgetResult, LISTEN notifications, reconnect with
 * exponential backoff + jitter, a deadline per query.
 *
 * Queries run one at a time in submission order. When the connection is
 * lost or a deadline passes, the query in flight and every queued query are
 * answered with res == NULL and the connection is reset. */
#ifndef ALERTD_PG_CONN_H
#define ALERTD_PG_CONN_H

#include <stdbool.h>
#include <stddef.h>

#include <libpq-fe.h>

struct event_base;
struct pg_conn;

/* res: the last PGresult of the query (PGRES_COMMAND_OK/TUPLES_OK or an
 * error status), or NULL if the connection failed/the deadline passed;
 * errmsg is a one-line reason when res is NULL or an error. res is freed
 * after the call. */
typedef void (*pg_result_cb)(PGresult *res, const char *errmsg, void *arg);
typedef void (*pg_connect_cb)(struct pg_conn *conn, void *arg);
typedef void (*pg_notify_cb)(const char *channel, const char *payload,
			     void *arg);

/* name is a short label for logs ("audit", "ops"). */
struct pg_conn *pg_conn_new(struct event_base *base, const char *conninfo,
			    const char *name);
void pg_conn_set_on_connect(struct pg_conn *conn, pg_connect_cb cb, void *arg);
void pg_conn_set_on_notify(struct pg_conn *conn, pg_notify_cb cb, void *arg);
void pg_conn_start(struct pg_conn *conn);
bool pg_conn_ready(const struct pg_conn *conn);
/* Queues one statement (text params, text results). Returns false (cb not
 * called) when not connected. The params are copied. */
bool pg_conn_query(struct pg_conn *conn, const char *sql, int nparams,
		   const char *const *values, int timeout_ms, pg_result_cb cb,
		   void *arg) __attribute__((warn_unused_result));
/* The same for a statement run often: prepared under name on the first
 * use on each connection (PQsendPrepare), then executed by name, so that
 * PostgreSQL parses and plans it once per connection. name must always
 * come with the same sql. Through a pooler, that needs session pooling.
 * formats (NULL: all text) marks the params sent in binary (1), whose
 * byte counts are in lengths, as PQsendQueryPrepared takes them. */
bool pg_conn_query_prepared(struct pg_conn *conn, const char *name,
			    const char *sql, int nparams,
			    const char *const *values, const int *lengths,
			    const int *formats, int timeout_ms,
			    pg_result_cb cb, void *arg)
	__attribute__((warn_unused_result));
size_t pg_conn_pending(const struct pg_conn *conn);
void pg_conn_free(struct pg_conn *conn);

#endif
