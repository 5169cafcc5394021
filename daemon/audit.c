/* audit: the batched PostgreSQL writer of the audit trail (group commit).
 *
 * Natural group commit: when a row comes and nothing is in flight, a batch
 * goes out at once; while a batch is in flight the next rows accumulate and
 * go together as soon as it is done. One batch is one statement (below):
 * one round trip, one implicit transaction, one commit.
 *
 * Four lists hold the rows:
 *   urgent, queue
 *          rows recorded while PostgreSQL works, not yet sent; their
 *          callbacks have not run. A batch takes the urgent rows (a
 *          person in danger, an operator waiting: audit_record_urgent)
 *          before the others, so that an alarm's row never waits behind
 *          a backlog of heartbeats' rows. The chain follows the order
 *          rows are written in (docs/audit.md); their times and
 *          accept_seq keep the order they happened in;
 *   batch  the rows in flight;
 *   retry  rows of failed batches, or recorded while PostgreSQL was down.
 *          Their callbacks have run (durable=false), except during the
 *          isolation of a bad row (below). Written again before the queue,
 *          in order, bounded by pg_retry_max_rows (oldest dropped).
 *
 * Failures:
 *   - connection lost, deadline passed, or a server-side error (relation
 *     missing, disk full, read-only standby...): every waiting row is
 *     answered durable=false and kept; new rows are answered at once and
 *     kept; the retry timer (100 ms doubling to 5 s) or the next connect
 *     writes them again. Such rows are retried as long as there is room.
 *   - a data error (SQLSTATE classes 22, 23, 54: invalid jsonb, a CHECK
 *     failing...) is a fault of some row in the batch, not of PostgreSQL:
 *     the rows are marked suspect and sent again in halves until the bad
 *     row is alone; a row that fails alone AUDIT_MAX_ALONE_FAILURES times is
 *     dropped with a log_error. The other rows commit and are answered
 *     durable=true as usual. */
#include "audit.h"
#include "audit_row.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <jansson.h>

#include "config.h"
#include "log.h"
#include "metrics.h"
#include "pg_conn.h"
#include "spool.h"
#include "tzclock.h"

#define AUDIT_MAX_ALONE_FAILURES 5
#define AUDIT_BACKOFF_MIN_MS 100
#define AUDIT_BACKOFF_MAX_MS 5000

/* The columns of a part's JSON, linked (audit_row_link) or not. */
#define AUDIT_EV_COLS \
	"  chain_seq bigint, recorded_at_ms bigint," \
	"  accept_seq bigint, event_id text, source_id text, source_kind text," \
	"  type text, outcome text, incident_id bigint, priority int," \
	"  occurred_at_ms bigint, received_at_ms bigint, payload text)"
#define AUDIT_TR_COLS \
	"  chain_seq bigint, recorded_at_ms bigint," \
	"  transition_id text, incident_id bigint, from_state text," \
	"  to_state text, actor text, detail text, at_ms bigint)"

/* chain_seq, prev_hash, row_hash and canon of a part i as alertd linked
 * it when the batch is ok, else NULL (the trigger links it); then its
 * recorded_at, alertd's clock either way. */
#define AUDIT_LINK_VALUES \
	"  CASE WHEN (SELECT ok FROM ok) THEN i.chain_seq END," \
	"  CASE WHEN (SELECT ok FROM ok) THEN substring($4::bytea," \
	"   (i.chain_seq - $3::bigint - 1)::int * 32 + 1, 32) END," \
	"  CASE WHEN (SELECT ok FROM ok) THEN substring($4::bytea," \
	"   (i.chain_seq - $3::bigint)::int * 32 + 1, 32) END," \
	"  CASE WHEN (SELECT ok FROM ok) THEN i.canon::text END," \
	"  timestamptz 'epoch' + i.recorded_at_ms * interval '1 millisecond',"

/* One batch, linked into the chain by alertd (audit_row_link; the
 * canonical text and the hash of each row are made there, migration 008
 * and docs/audit.md): $1 the events' canonical texts and $9..$20 their
 * other columns, each a binary array (audit_link_params, in the order of
 * enum audit_ev_col), $8 their recorded_at; $2 the JSON array of the
 * transitions' canonical texts, each also the row's columns; $3 the
 * chain_seq of the head alertd linked after; $4 a bytea of the head's
 * hash and then each row's, in chain order (a row's prev_hash and
 * row_hash are found there by their chain_seq: a bytea, whose substrings
 * cost the same wherever they lie, unlike those of a UTF-8 text); $5 the
 * number of rows; $6, $7 the JSON arrays of the redelivery rows' parts
 * (audit_event_row.redelivery: a duplicate delivery's rows, written again
 * only to be sure they are durable), not linked. The lookups of stored
 * rows are kept per row (OFFSET 0),
 * one probe of the key's index each, whatever the plan thinks of the
 * table's size.
 *
 * In one statement (one round trip, one commit): the head is locked and
 * read (its newest version, after any writer this one waited for), and
 * the rows of the batch already stored are looked up (a replay), and so
 * are the redelivery rows (stored, or their original in this batch: the
 * usual case, with nothing to write). When the head is the one the batch
 * was linked after, no linked row is stored and no redelivery row is
 * missing, the linked rows are inserted as alertd linked them and the
 * head is moved. Otherwise (another writer moved the head: a second
 * instance, a notification row; a replay; a redelivery whose original
 * never made it) the same rows and the redelivery rows after them are
 * inserted without their links, and the chain trigger of 006 links them as it links any such row
 * (skipping the rows stored already): the batch costs what it cost before
 * migration 008, but no second round trip, and no retry that could chase a
 * busy head. Either way the answer names the head after the batch (its
 * last row, or the head as locked if no row was written), which alertd
 * links the next batch after. Times are unix milliseconds, turned into
 * timestamptz exactly (no floating point); the arrays are read as json,
 * which keeps each element's text: the stored canon is the very text that
 * was hashed. */
/* The parts of the batch statement. It is prepared in three forms: the
 * full one for a batch with redelivery rows ($6, $7), a lean one without
 * their parts (ev_again, tr_again, missing), and one for a batch of
 * events only, without the transitions' parts either: PostgreSQL sets up
 * every node of a statement's plan on each execution, whatever it
 * returns, and at 10,000 events/s in batches of a few rows that set-up
 * was the larger part of its CPU per event (docs/BENCHMARKS.md, 39.). All
 * three answer alike and take the same parameters; the lean ones name the
 * ones they do not read, empty arrays, only for that. */
#define AUDIT_SQL_EV_IN \
	"WITH h AS (" \
	" SELECT chain_seq, hash FROM audit_chain_head FOR UPDATE" \
	"), ev_in AS (" \
	" SELECT c.canon, c.chain_seq, $8::bigint AS recorded_at_ms," \
	"  c.accept_seq, c.event_id, c.source_id, c.source_kind, c.type," \
	"  c.outcome, c.incident_id, c.priority, c.occurred_at_ms," \
	"  c.received_at_ms, c.payload" \
	" FROM unnest($1::text[], $9::bigint[], $10::bigint[], $11::text[]," \
	"  $12::text[], $13::text[], $14::text[], $15::text[], $16::bigint[]," \
	"  $17::int[], $18::bigint[], $19::bigint[], $20::text[])" \
	" AS c(canon, chain_seq, accept_seq, event_id, source_id, source_kind," \
	"  type, outcome, incident_id, priority, occurred_at_ms," \
	"  received_at_ms, payload)" \
	")"
#define AUDIT_SQL_TR_IN \
	", tr_in AS (" \
	" SELECT c.canon, y.* FROM json_array_elements($2::json) AS c(canon)," \
	" json_to_record(c.canon) AS y(" AUDIT_TR_COLS \
	")"
#define AUDIT_SQL_AGAIN \
	", ev_again AS (" \
	" SELECT NULL::text AS canon, x.* FROM json_to_recordset($6::json)" \
	" AS x(" AUDIT_EV_COLS \
	"), tr_again AS (" \
	" SELECT NULL::json AS canon, y.* FROM json_to_recordset($7::json)" \
	" AS y(" AUDIT_TR_COLS \
	"), missing AS (" \
	" SELECT 1 FROM ev_again r WHERE NOT EXISTS (SELECT 1 FROM events e" \
	"  WHERE e.event_id = r.event_id AND e.accept_seq = r.accept_seq" \
	"  OFFSET 0) AND NOT EXISTS (SELECT 1 FROM ev_in i" \
	"  WHERE i.event_id = r.event_id AND i.accept_seq = r.accept_seq)" \
	" UNION ALL" \
	" SELECT 1 FROM tr_again r WHERE NOT EXISTS (SELECT 1" \
	"  FROM incident_transitions t WHERE t.transition_id = r.transition_id" \
	"  AND t.at = timestamptz 'epoch' + r.at_ms * interval '1 millisecond'" \
	"  OFFSET 0) AND NOT EXISTS (SELECT 1 FROM tr_in i" \
	"  WHERE i.transition_id = r.transition_id AND i.at_ms = r.at_ms)" \
	")"
#define AUDIT_SQL_DUP_EV \
	", dup AS (" \
	" SELECT i.chain_seq FROM ev_in i WHERE EXISTS (SELECT 1 FROM events e" \
	"  WHERE e.event_id = i.event_id AND e.accept_seq = i.accept_seq" \
	"  OFFSET 0)"
#define AUDIT_SQL_DUP_TR \
	" UNION ALL" \
	" SELECT i.chain_seq FROM tr_in i WHERE EXISTS (SELECT 1" \
	"  FROM incident_transitions t WHERE t.transition_id = i.transition_id" \
	"  AND t.at = timestamptz 'epoch' + i.at_ms * interval '1 millisecond'" \
	"  OFFSET 0)"
#define AUDIT_SQL_OK(more) \
	"), ok AS (" \
	" SELECT h.chain_seq = $3::bigint AND h.hash = substring($4::bytea, 1, 32)" \
	"  AND NOT EXISTS (SELECT 1 FROM dup)" more " AS ok FROM h)"
#define AUDIT_SQL_EV(from) \
	", ev AS (" \
	" INSERT INTO events (chain_seq, prev_hash, row_hash, canon, recorded_at," \
	"  accept_seq, event_id, source_id, source_kind, type, outcome," \
	"  incident_id, priority, occurred_at, received_at, payload)" \
	" SELECT" \
	AUDIT_LINK_VALUES \
	"  i.accept_seq, i.event_id, i.source_id, i.source_kind, i.type," \
	"  i.outcome, i.incident_id, i.priority," \
	"  timestamptz 'epoch' + i.occurred_at_ms * interval '1 millisecond'," \
	"  timestamptz 'epoch' + i.received_at_ms * interval '1 millisecond'," \
	"  i.payload::jsonb" \
	" FROM " from " i ORDER BY i.chain_seq NULLS LAST" \
	" RETURNING chain_seq, row_hash" \
	")"
#define AUDIT_SQL_TR(from) \
	", tr AS (" \
	" INSERT INTO incident_transitions (chain_seq, prev_hash, row_hash," \
	"  canon, recorded_at, transition_id, incident_id, from_state," \
	"  to_state, actor, detail, at)" \
	" SELECT" \
	AUDIT_LINK_VALUES \
	"  i.transition_id, i.incident_id, i.from_state, i.to_state, i.actor," \
	"  i.detail::jsonb," \
	"  timestamptz 'epoch' + i.at_ms * interval '1 millisecond'" \
	" FROM " from " i ORDER BY i.chain_seq NULLS LAST" \
	" RETURNING chain_seq, row_hash" \
	")"
#define AUDIT_SQL_UP \
	", up AS (" \
	" UPDATE audit_chain_head SET chain_seq = $3::bigint + $5::bigint," \
	"  hash = substring($4::bytea, $5::int * 32 + 1, 32), updated_at = now()" \
	" WHERE (SELECT ok FROM ok) AND $5::bigint > 0" \
	" RETURNING 1" \
	")"
#define AUDIT_SQL_LAST(tr) \
	", last AS (" \
	" SELECT chain_seq, row_hash FROM ev UNION ALL" tr \
	" SELECT chain_seq, hash FROM h" \
	" ORDER BY chain_seq DESC LIMIT 1" \
	")"
#define AUDIT_SQL_ANSWER(tr_count) \
	" SELECT (SELECT ok FROM ok), (SELECT chain_seq FROM last)," \
	"  encode((SELECT row_hash FROM last), 'hex')," \
	"  (SELECT count(*) FROM ev), " tr_count "," \
	"  (SELECT count(*) FROM dup), (SELECT count(*) FROM up)"

static const char audit_batch_sql[] =
	AUDIT_SQL_EV_IN AUDIT_SQL_TR_IN AUDIT_SQL_AGAIN
	AUDIT_SQL_DUP_EV AUDIT_SQL_DUP_TR
	AUDIT_SQL_OK("  AND NOT EXISTS (SELECT 1 FROM missing)")
	AUDIT_SQL_EV("(SELECT * FROM ev_in UNION ALL SELECT * FROM ev_again"
		     "  WHERE NOT (SELECT ok FROM ok))")
	AUDIT_SQL_TR("(SELECT * FROM tr_in UNION ALL SELECT * FROM tr_again"
		     "  WHERE NOT (SELECT ok FROM ok))")
	AUDIT_SQL_UP
	AUDIT_SQL_LAST(" SELECT chain_seq, row_hash FROM tr UNION ALL")
	AUDIT_SQL_ANSWER("(SELECT count(*) FROM tr)");

static const char audit_batch_lean_sql[] =
	AUDIT_SQL_EV_IN AUDIT_SQL_TR_IN
	AUDIT_SQL_DUP_EV AUDIT_SQL_DUP_TR
	AUDIT_SQL_OK("  AND $6::json IS NOT NULL AND $7::json IS NOT NULL")
	AUDIT_SQL_EV("ev_in") AUDIT_SQL_TR("tr_in")
	AUDIT_SQL_UP
	AUDIT_SQL_LAST(" SELECT chain_seq, row_hash FROM tr UNION ALL")
	AUDIT_SQL_ANSWER("(SELECT count(*) FROM tr)");

static const char audit_batch_events_sql[] =
	AUDIT_SQL_EV_IN AUDIT_SQL_DUP_EV
	AUDIT_SQL_OK("  AND $2::json IS NOT NULL AND $6::json IS NOT NULL"
		     "  AND $7::json IS NOT NULL")
	AUDIT_SQL_EV("ev_in")
	AUDIT_SQL_UP
	AUDIT_SQL_LAST("")
	AUDIT_SQL_ANSWER("0::bigint");

/* Sent first on every audit connection. The forms are made to run with
 * one plan for any batch (the lookups per row, OFFSET 0), and they do
 * with a generic plan; PostgreSQL's choice ("auto") planned the events
 * form anew for every small batch, which cost more than the whole
 * execution (docs/BENCHMARKS.md, 39.). */
static const char audit_session_sql[] =
	"SET plan_cache_mode = force_generic_plan";

const char *audit_session_statement(void)
{
	return audit_session_sql;
}

const char *audit_batch_statement(const struct audit_link *l,
				  const char **name)
{
	static const struct {
		const char *name, *sql;
	} forms[] = {
		{"alertd_audit_batch", audit_batch_sql},
		{"alertd_audit_batch_lean", audit_batch_lean_sql},
		{"alertd_audit_batch_events", audit_batch_events_sql},
	};
	size_t i = l->n_again > 0 ? 0 : l->n_tr > 0 ? 1 : 2;

	if (name)
		*name = forms[i].name;
	return forms[i].sql;
}

enum audit_state {
	/* Nothing in flight: a new row goes out at once (PostgreSQL ready) or
	 * is answered durable=false and kept for retry (not ready). */
	AUDIT_IDLE = 0,
	/* One batch in flight; new rows accumulate in the queue. */
	AUDIT_WRITING,
	/* The last batch failed (not for a data reason): new rows are
	 * answered durable=false and kept; the retry timer or the next
	 * connect writes the backlog again. */
	AUDIT_WAITING,
};

struct audit_batch {
	struct audit *a;         /* NULL once audit_free ran */
	struct audit_list rows;
	bool suspects;           /* made only of suspect rows */
	size_t n_spooled;        /* rows read back from the spool */
	struct timespec sent;    /* for alertd_audit_batch_seconds */
	struct audit_link link;  /* as sent last */
};

/* A callback to run once the lists are consistent again. */
struct audit_answer {
	audit_done_cb cb;
	void *arg;
	bool durable;
};

struct audit {
	struct event_base *base;
	struct pg_conn *conn;
	enum audit_state state;
	struct audit_list urgent;
	struct audit_list queue;
	struct audit_list retry;
	struct audit_batch *batch;
	/* The head of the chain as alertd last saw it (its own commits, or
	 * the head a batch statement named); -1: not known yet. */
	int64_t head_seq;
	unsigned char head_hash[AUDIT_HASH_LEN];
	struct event *ev_retry;
	/* batch_linger_us: a batch of ordinary rows waits until this long
	 * after the one before was sent (ev_linger), so that more rows share
	 * its commit. Urgent rows never wait. */
	struct event *ev_linger;
	struct timespec last_sent;
	/* The spool (NULL: none): rows that PostgreSQL cannot take now wait
	 * in spool_queue for the next loop turn, where they are appended and
	 * synced together (group fsync) and then answered durable=true. */
	struct spool *spool;
	struct audit_list spool_queue;
	struct event *ev_spool;
	size_t spool_loaded;     /* rows read back, not yet committed */
	/* The event keys ("<accept_seq>/<event_id>") read back in this pass
	 * over the spool: a later row with one of them is a duplicate
	 * delivery of it (audit_spool_load). NULL until the first. */
	json_t *spool_keys;
	uint64_t spool_syncs;
	double spool_sync_s;
	uint64_t trigger_linked; /* audit_trigger_linked() */
	int backoff_ms;
	size_t split_max;        /* rows per suspect batch; 0: no isolation */
	uint64_t dropped_total;
	size_t dropped_unlogged;
	int64_t dropped_logged_ms;
	/* Answers are queued and run in order by audit_deliver() at the end
	 * of every entry point, so that a callback that records again never
	 * sees the lists half-changed. */
	struct audit_answer *answers;
	size_t n_answers, cap_answers;
	bool delivering;
	bool closing;
};

static void audit_flush(struct audit *a);

static const char *audit_state_name(enum audit_state s)
{
	switch (s) {
	case AUDIT_IDLE: return "idle";
	case AUDIT_WRITING: return "writing";
	case AUDIT_WAITING: return "waiting";
	}
	return "?";
}

static void audit_set_state(struct audit *a, enum audit_state s)
{
	if (a->state == s)
		return;
	log_debug("audit: %s -> %s", audit_state_name(a->state),
		  audit_state_name(s));
	a->state = s;
}

/* The settings of config_current(); defaults when there is none. */
static size_t audit_batch_max(void)
{
	const struct config *c = config_current();

	return c && c->pg_batch_max > 0 ? (size_t)c->pg_batch_max : 512;
}

static long audit_linger_us(void)
{
	const struct config *c = config_current();

	return c && c->pg_batch_linger_us > 0 ? c->pg_batch_linger_us : 0;
}

static int audit_timeout_ms(void)
{
	const struct config *c = config_current();

	return c && c->pg_timeout_ms > 0 ? c->pg_timeout_ms : 5000;
}

static size_t audit_retry_max(void)
{
	const struct config *c = config_current();

	return !c ? 100000
		  : c->pg_retry_max_rows > 0 ? (size_t)c->pg_retry_max_rows : 0;
}

/* ---- rows ---- */

/* Queues the answer of a row whose callback has not run yet; it runs in
 * audit_deliver(). */
static void audit_answer(struct audit *a, audit_done_cb cb, void *arg,
			 bool durable)
{
	if (a->n_answers == a->cap_answers) {
		size_t cap = a->cap_answers ? a->cap_answers * 2 : 64;
		struct audit_answer *p = realloc(a->answers, cap * sizeof(*p));

		if (!p) {
			/* Degraded but still exactly once: answer now. */
			cb(durable, arg);
			return;
		}
		a->answers = p;
		a->cap_answers = cap;
	}
	a->answers[a->n_answers++] = (struct audit_answer){cb, arg, durable};
}

static void audit_row_answer(struct audit *a, struct audit_row *r,
			     bool durable)
{
	if (!r->cb)
		return;
	audit_answer(a, r->cb, r->arg, durable);
	r->cb = NULL;
}

/* Runs the queued answers in order, including those queued meanwhile by
 * the callbacks themselves. */
static void audit_deliver(struct audit *a)
{
	size_t i;

	if (a->delivering)
		return;
	a->delivering = true;
	for (i = 0; i < a->n_answers; i++) {
		struct audit_answer ans = a->answers[i];

		ans.cb(ans.durable, ans.arg);
	}
	a->n_answers = 0;
	a->delivering = false;
}

/* ---- retry backlog ---- */

static void audit_log_dropped(struct audit *a, bool force)
{
	int64_t now = tzclock_mono_ms();

	if (a->dropped_unlogged == 0)
		return;
	if (!force && now - a->dropped_logged_ms < 1000)
		return;
	log_error("audit: retry backlog full (%zu rows): %zu oldest rows "
		  "dropped unrecorded (%" PRIu64 " since start)",
		  audit_retry_max(), a->dropped_unlogged, a->dropped_total);
	a->dropped_unlogged = 0;
	a->dropped_logged_ms = now;
}

/* The spool is read again from its start: its keys too. */
static void audit_spool_reread(struct audit *a)
{
	spool_rewind(a->spool);
	json_decref(a->spool_keys);
	a->spool_keys = NULL;
}

/* Drops the oldest rows beyond pg_retry_max_rows. */
static void audit_trim_retry(struct audit *a)
{
	size_t max = audit_retry_max();
	struct audit_row *r;

	while (a->retry.n > max && (r = audit_row_pop(&a->retry))) {
		if (r->from_spool) {
			/* Still in the file: read again later. */
			a->spool_loaded--;
			audit_spool_reread(a);
			audit_row_free(r);
			continue;
		}
		audit_row_answer(a, r, false);
		audit_row_free(r);
		a->dropped_total++;
		a->dropped_unlogged++;
	}
	audit_log_dropped(a, false);
}

/* ---- spool ---- */

/* Hands a row to the next group fsync (it is answered there). */
static void audit_spool_row(struct audit *a, struct audit_row *r)
{
	audit_row_push(&a->spool_queue, r);
	event_active(a->ev_spool, EV_TIMEOUT, 0);
}

/* Rows of a failed batch (or of the queue): the ones never spooled go to
 * the spool, the ones read back from it wait in the retry list (in order,
 * before the rest). Without a spool every row is kept for retry. */
static void audit_keep_rows(struct audit *a, struct audit_list *rows)
{
	struct audit_list back = {0};
	struct audit_row *r;

	while ((r = audit_row_pop(rows))) {
		if (a->spool && !r->from_spool && !r->suspect)
			audit_spool_row(a, r);
		else
			audit_row_push(&back, r);
	}
	audit_row_prepend(&a->retry, &back);
}

/* The group fsync: appends every row waiting, syncs once, answers them
 * durable=true; a row the spool refuses (full, I/O error) is answered
 * durable=false and kept in memory for retry. After a failed write the
 * whole group is refused that way (the cut back took the rows appended
 * before it: spool.h). This is the one blocking
 * call alertd makes on its loop (see docs/audit.md for its cost). */
static void audit_spool_flush(struct audit *a)
{
	struct audit_list done = {0}, failed = {0};
	struct audit_row *r;
	struct timespec t0;
	bool synced;

	if (!a->spool_queue.n)
		return;
	spool_set_max_bytes(a->spool,
			    (size_t)config_current()->spool_max_bytes);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while ((r = audit_row_pop(&a->spool_queue))) {
		if (spool_append(a->spool, r->ev_json ? r->ev_json : "",
				 r->ev_len, r->tr_json ? r->tr_json : "",
				 r->tr_len))
			audit_row_push(&done, r);
		else
			audit_row_push(&failed, r);
	}
	/* Called even when no append worked: it ends the group, and with it
	 * the refusal of appends after a failed one (spool.h). After a failed
	 * append it returns false, so that the rows appended before it, which
	 * the cut back took too, are not answered durable. */
	synced = spool_sync(a->spool);
	a->spool_syncs++;
	a->spool_sync_s += metrics_since(&t0);
	if (!synced)
		audit_row_prepend(&failed, &done);
	log_debug("audit: %zu rows spooled in %.3f ms, %zu refused", done.n,
		  metrics_since(&t0) * 1000, failed.n);
	while ((r = audit_row_pop(&done))) {
		audit_row_answer(a, r, true);
		audit_row_free(r);
	}
	if (failed.n) {
		log_error("audit: spool refused %zu rows (full or failing); "
			  "their senders are told to retry", failed.n);
		while ((r = audit_row_pop(&failed))) {
			audit_row_answer(a, r, false);
			audit_row_push(&a->retry, r);
		}
		audit_trim_retry(a);
	}
}

static void audit_on_spool(evutil_socket_t fd, short what, void *arg)
{
	struct audit *a = arg;

	audit_spool_flush(a);
	audit_deliver(a);
}

/* Reads spooled rows back into the retry list, up to max rows there. A
 * row whose event key an earlier row of this pass had is a duplicate
 * delivery spooled during the outage (the spool keeps the parts, not that
 * mark): it goes as a redelivery, written only if its original is not,
 * instead of being linked a second time and making PostgreSQL refuse the
 * whole batch (23505). */
static void audit_spool_load(struct audit *a, size_t max)
{
	struct audit_row *r;
	char *ev, *tr, key[160];

	while (a->spool && a->retry.n < max && spool_next(a->spool, &ev, &tr)) {
		if (!(r = audit_row_spooled(ev, tr))) {
			audit_spool_reread(a);
			return;
		}
		/* the event key of a part that reads back as a row */
		if (r->ev.event_id) {
			snprintf(key, sizeof(key), "%" PRId64 "/%s",
				 r->ev.accept_seq, r->ev.event_id);
			if (!a->spool_keys)
				a->spool_keys = json_object();
			if (json_object_get(a->spool_keys, key))
				r->redelivery = true;
			else if (a->spool_keys)
				json_object_set_new(a->spool_keys, key,
						    json_true());
		}
		audit_row_push(&a->retry, r);
		a->spool_loaded++;
	}
}

/* Empties the spool once every row of it is in PostgreSQL. */
static void audit_spool_done(struct audit *a, size_t committed)
{
	if (!a->spool)
		return;
	a->spool_loaded -= committed;
	if (a->spool_loaded == 0 && spool_all_read(a->spool) &&
	    spool_rows(a->spool) > 0) {
		if (!spool_clear(a->spool))
			spool_rewind(a->spool);
		json_decref(a->spool_keys);  /* a new pass either way */
		a->spool_keys = NULL;
	}
}

/* Answers every row still waiting (queue, and suspects of an isolation in
 * progress) with durable=false and keeps them all for retry; with a spool,
 * the queued rows go to the spool instead and are answered from there. */
static void audit_fail_waiting(struct audit *a)
{
	struct audit_row *r;

	for (r = a->retry.head; r; r = r->next)
		audit_row_answer(a, r, false);
	audit_row_prepend(&a->queue, &a->urgent);
	while ((r = audit_row_pop(&a->queue))) {
		if (a->spool) {
			audit_spool_row(a, r);
			continue;
		}
		audit_row_push(&a->retry, r);
		audit_row_answer(a, r, false);
	}
	audit_trim_retry(a);
}

static void audit_arm_retry(struct audit *a)
{
	int ms = a->backoff_ms;
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	a->backoff_ms = ms * 2 > AUDIT_BACKOFF_MAX_MS ? AUDIT_BACKOFF_MAX_MS
						      : ms * 2;
	evtimer_add(a->ev_retry, &tv);
}

/* ---- batches ---- */

/* Takes the rows of the next batch: suspects of an isolation in progress
 * alone; else the retry backlog first, in order, keeping half of the batch
 * for queued rows so that a large backlog does not hold new rows back;
 * of those, the urgent ones first. */
static void audit_take_rows(struct audit *a, struct audit_batch *b)
{
	size_t max = audit_batch_max();
	size_t n_retry, n_queued = a->urgent.n + a->queue.n;
	struct audit_row *r;

	if (a->retry.head && a->retry.head->suspect) {
		if (a->split_max == 0 || a->split_max > max)
			a->split_max = max;
		b->suspects = true;
		while (b->rows.n < a->split_max && a->retry.head &&
		       a->retry.head->suspect)
			audit_row_push(&b->rows, audit_row_pop(&a->retry));
		for (r = b->rows.head; r; r = r->next)
			b->n_spooled += r->from_spool;
		return;
	}
	a->split_max = 0;
	audit_spool_load(a, max);
	n_retry = max;
	if (n_queued > 0)
		n_retry = max - (n_queued < max / 2 ? n_queued : max / 2);
	while (b->rows.n < n_retry && a->retry.head)
		audit_row_push(&b->rows, audit_row_pop(&a->retry));
	while (b->rows.n < max && (r = audit_row_pop(&a->urgent)))
		audit_row_push(&b->rows, r);
	while (b->rows.n < max && (r = audit_row_pop(&a->queue)))
		audit_row_push(&b->rows, r);
	for (r = b->rows.head; r; r = r->next)
		b->n_spooled += r->from_spool;
}

static void audit_on_batch_done(PGresult *res, const char *errmsg, void *arg);

/* Links the batch's rows after the head alertd knows and sends them.
 * false: nothing sent (out of memory), the rows are still in b. */
static bool audit_send(struct audit *a, struct audit_batch *b)
{
	struct audit_params p;
	const char *sql, *name;

	audit_link_free(&b->link);
	if (!audit_row_link(&b->rows, a->head_seq, a->head_hash,
			    tzclock_now_ms(), &b->link))
		return false;
	audit_link_params(&b->link, &p);
	clock_gettime(CLOCK_MONOTONIC, &b->sent);
	a->last_sent = b->sent;
	sql = audit_batch_statement(&b->link, &name);
	if (!pg_conn_query_prepared(a->conn, name, sql, AUDIT_BATCH_PARAMS,
				    p.values, p.lengths, p.formats,
				    audit_timeout_ms(), audit_on_batch_done,
				    b))
		return false;
	a->batch = b;
	audit_set_state(a, AUDIT_WRITING);
	log_debug("audit: batch of %zu rows sent (chain_seq %" PRId64
		  "..%" PRId64 ")", b->rows.n, a->head_seq + 1, b->link.seq);
	return true;
}

/* true: the next batch waits for ev_linger (batch_linger_us after the
 * last one was sent) to gather more rows. Never for urgent rows, rows to
 * retry or from the spool, a full batch, or while closing. */
static bool audit_linger(struct audit *a)
{
	long linger = audit_linger_us(), waited;
	struct timespec now;
	struct timeval tv;

	if (!linger || a->closing || a->urgent.n || a->retry.n ||
	    (a->spool && !spool_all_read(a->spool)) ||
	    a->queue.n >= audit_batch_max())
		return false;
	/* Added again each time (it moves a pending timer), so a reload's
	 * shorter linger counts from the last batch at once. */
	clock_gettime(CLOCK_MONOTONIC, &now);
	waited = (now.tv_sec - a->last_sent.tv_sec) * 1000000L +
		 (now.tv_nsec - a->last_sent.tv_nsec) / 1000;
	if (waited >= linger)
		return false;
	tv.tv_sec = (linger - waited) / 1000000;
	tv.tv_usec = (linger - waited) % 1000000;
	evtimer_add(a->ev_linger, &tv);
	return true;
}

/* Sends the next batch if there is something to send and nothing in
 * flight. */
static void audit_flush(struct audit *a)
{
	struct audit_batch *b = NULL;

	if (a->state != AUDIT_IDLE ||
	    (!a->urgent.n && !a->queue.n && !a->retry.n &&
	     (!a->spool || spool_all_read(a->spool))))
		return;
	if (!pg_conn_ready(a->conn)) {
		audit_fail_waiting(a);
		return;
	}
	if (audit_linger(a))
		return;
	if (!(b = calloc(1, sizeof(*b))))
		goto fail;
	b->a = a;
	audit_take_rows(a, b);
	if (!audit_send(a, b))
		goto fail;
	return;
fail:
	log_error("audit: cannot send a batch (out of memory?); rows kept "
		  "for retry");
	if (b) {
		audit_keep_rows(a, &b->rows);
		audit_link_free(&b->link);
		free(b);
	}
	audit_set_state(a, AUDIT_WAITING);
	audit_arm_retry(a);
	audit_fail_waiting(a);
}

/* SQLSTATE classes that blame the rows, not PostgreSQL: 22 data exception
 * (invalid jsonb, bad text), 23 integrity constraint (CHECK, NOT NULL), 54
 * program limit (value too large to index). */
static bool audit_is_data_error(const char *sqlstate)
{
	return sqlstate && (strncmp(sqlstate, "22", 2) == 0 ||
			    strncmp(sqlstate, "23", 2) == 0 ||
			    strncmp(sqlstate, "54", 2) == 0);
}

static void audit_batch_free(struct audit_batch *b)
{
	struct audit_row *r;

	while ((r = audit_row_pop(&b->rows)))
		audit_row_free(r);
	audit_link_free(&b->link);
	free(b);
}

/* The head the statement named (hex hash); false if it is not one. */
static bool audit_adopt_head(struct audit *a, const char *seq,
			     const char *hex)
{
	return audit_head_parse(seq, hex, &a->head_seq, a->head_hash);
}

static void audit_on_batch_ok(struct audit *a, struct audit_batch *b,
			      PGresult *res)
{
	struct audit_row *r;
	size_t spooled = 0;

	bool linked = strcmp(PQgetvalue(res, 0, 0), "t") == 0;

	log_debug("audit: batch of %zu rows committed (%s new events, %s new "
		  "transitions, head %s, linked by %s)", b->rows.n,
		  PQgetvalue(res, 0, 3), PQgetvalue(res, 0, 4),
		  PQgetvalue(res, 0, 1), linked ? "alertd" : "the trigger");
	if (!linked)
		a->trigger_linked++;
	if (strcmp(PQgetvalue(res, 0, 5), "0") != 0)
		log_info("audit: %s rows of a batch were recorded already (by "
			 "an earlier attempt whose answer was lost, or before "
			 "a replayed spool): not written again",
			 PQgetvalue(res, 0, 5));
	if (!audit_adopt_head(a, PQgetvalue(res, 0, 1),
			      PQgetvalue(res, 0, 2)) ||
	    (linked && a->head_seq != b->link.seq)) {
		log_error("audit: unexpected chain head %s after a batch "
			  "linked up to %" PRId64 "; asking again next batch",
			  PQgetvalue(res, 0, 1), b->link.seq);
		a->head_seq = -1;
	}
	a->backoff_ms = AUDIT_BACKOFF_MIN_MS;
	if (b->suspects && a->split_max < audit_batch_max())
		a->split_max *= 2;
	audit_set_state(a, AUDIT_IDLE);
	while ((r = audit_row_pop(&b->rows))) {
		spooled += r->from_spool;
		audit_row_answer(a, r, true);
		audit_row_free(r);
	}
	audit_link_free(&b->link);
	free(b);
	audit_spool_done(a, spooled);
	audit_flush(a);
}

/* A data error: isolate the bad row by halves, drop it when it fails
 * alone often enough. The other rows stay unanswered until they commit. */
static void audit_on_batch_refused(struct audit *a, struct audit_batch *b,
				   const char *sqlstate, const char *errmsg)
{
	struct audit_row *r;

	if (b->rows.n == 1) {
		r = b->rows.head;
		if (++r->alone_failures >= AUDIT_MAX_ALONE_FAILURES) {
			log_error("audit: %s: refused %d times (%s: %s), "
				  "dropped unrecorded", r->label,
				  r->alone_failures, sqlstate, errmsg);
			audit_row_pop(&b->rows);
			audit_row_answer(a, r, false);
			if (r->from_spool)
				audit_spool_done(a, 1);
			audit_row_free(r);
		} else {
			log_warn("audit: %s: refused (%s: %s), attempt %d of %d",
				 r->label, sqlstate, errmsg, r->alone_failures,
				 AUDIT_MAX_ALONE_FAILURES);
		}
		a->split_max = 1;
	} else {
		log_warn("audit: batch of %zu rows refused (%s: %s); isolating "
			 "the bad row", b->rows.n, sqlstate, errmsg);
		a->split_max = b->rows.n / 2;
	}
	for (r = b->rows.head; r; r = r->next)
		r->suspect = true;
	audit_row_prepend(&a->retry, &b->rows);
	audit_link_free(&b->link);
	free(b);
	audit_trim_retry(a);
	audit_set_state(a, AUDIT_IDLE);
	audit_flush(a);
}

static void audit_on_batch_done(PGresult *res, const char *errmsg, void *arg)
{
	struct audit_batch *b = arg;
	struct audit *a = b->a;
	const char *sqlstate = NULL;
	size_t n = b->rows.n;

	if (!a) {
		/* audit_free ran while this batch was in flight. */
		audit_batch_free(b);
		return;
	}
	a->batch = NULL;
	metrics_observe(METRICS_AUDIT_BATCH, metrics_since(&b->sent));
	if (res && PQresultStatus(res) == PGRES_TUPLES_OK &&
	    PQntuples(res) == 1 && PQnfields(res) == 7) {
		audit_on_batch_ok(a, b, res);
		audit_deliver(a);
		return;
	}
	if (res)
		sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	if (res && audit_is_data_error(sqlstate)) {
		audit_on_batch_refused(a, b, sqlstate, errmsg ? errmsg : "?");
		audit_deliver(a);
		return;
	}
	log_warn("audit: batch of %zu rows failed (%s%s%s); kept for retry", n,
		 sqlstate ? sqlstate : "", sqlstate ? ": " : "",
		 errmsg ? errmsg : "unknown error");
	audit_keep_rows(a, &b->rows);
	audit_link_free(&b->link);
	free(b);
	audit_set_state(a, AUDIT_WAITING);
	audit_arm_retry(a);
	audit_fail_waiting(a);
	audit_deliver(a);
}

static void audit_on_linger(evutil_socket_t fd, short what, void *arg)
{
	struct audit *a = arg;

	(void)fd;
	(void)what;
	audit_flush(a);
	audit_deliver(a);
}

static void audit_on_retry(evutil_socket_t fd, short what, void *arg)
{
	struct audit *a = arg;

	if (a->state == AUDIT_WAITING) {
		if (!pg_conn_ready(a->conn)) {
			/* The next connect flushes; keep trying meanwhile. */
			audit_arm_retry(a);
			return;
		}
		audit_set_state(a, AUDIT_IDLE);
	}
	audit_flush(a);
	audit_deliver(a);
}

static void audit_on_session(PGresult *res, const char *errmsg, void *arg)
{
	(void)arg;
	if (res && errmsg) /* (a lost connection is logged by the batches) */
		log_warn("audit: %s: %s (batches still go out, planned by "
			 "PostgreSQL's default)", audit_session_sql, errmsg);
}

static void audit_on_connect(struct pg_conn *conn, void *arg)
{
	struct audit *a = arg;

	/* queued before any batch of this connection */
	if (!pg_conn_query(conn, audit_session_sql, 0, NULL,
			   audit_timeout_ms(), audit_on_session, NULL))
		log_warn("audit: cannot queue %s (out of memory?)",
			 audit_session_sql);

	if (a->state == AUDIT_WAITING) {
		evtimer_del(a->ev_retry);
		audit_set_state(a, AUDIT_IDLE);
	}
	audit_log_dropped(a, true);
	if (a->retry.n)
		log_info("audit: connected; writing %zu rows kept for retry",
			 a->retry.n);
	audit_flush(a);
	audit_deliver(a);
}

/* ---- interface ---- */

/* [spool] path of the running config; without a usable one alertd runs
 * as before: rows PostgreSQL cannot take now are answered "unavailable"
 * and kept in memory. */
static void audit_open_spool(struct audit *a)
{
	const struct config *c = config_current();
	char err[256];

	if (!c || !c->spool_path || !c->spool_path[0]) {
		log_warn("audit: no spool configured: while PostgreSQL is "
			 "unreachable events are refused (503)");
		return;
	}
	a->spool = spool_open(c->spool_path, (size_t)c->spool_max_bytes, err,
			      sizeof(err));
	if (!a->spool)
		log_error("audit: spool unusable, running without it: %s", err);
}

struct audit *audit_new(struct event_base *base, struct pg_conn *conn)
{
	struct audit *a = calloc(1, sizeof(*a));

	if (!a)
		return NULL;
	a->base = base;
	a->conn = conn;
	a->backoff_ms = AUDIT_BACKOFF_MIN_MS;
	a->head_seq = -1;
	a->ev_retry = evtimer_new(base, audit_on_retry, a);
	a->ev_spool = event_new(base, -1, 0, audit_on_spool, a);
	a->ev_linger = evtimer_new(base, audit_on_linger, a);
	if (!a->ev_retry || !a->ev_spool || !a->ev_linger) {
		if (a->ev_retry)
			event_free(a->ev_retry);
		if (a->ev_spool)
			event_free(a->ev_spool);
		if (a->ev_linger)
			event_free(a->ev_linger);
		free(a);
		return NULL;
	}
	audit_open_spool(a);
	pg_conn_set_on_connect(conn, audit_on_connect, a);
	return a;
}

void audit_stop(struct audit *a)
{
	struct audit_batch *b = a ? a->batch : NULL;

	if (!a || a->closing)
		return;
	evtimer_del(a->ev_retry);
	evtimer_del(a->ev_linger);
	if (b) {
		/* Never waited for again: it may still commit (replaying its
		 * rows from the spool is then a no-op); its callback, when
		 * the pg_conn is freed, finds it detached. */
		a->batch = NULL;
		b->a = NULL;
		audit_keep_rows(a, &b->rows);
	}
	audit_fail_waiting(a);
	/* Rows waiting for the group fsync are durable once it runs. */
	if (a->spool)
		audit_spool_flush(a);
	a->closing = true;
	audit_deliver(a);
}

/* The rows not recorded are counted in the log; any row still unanswered
 * (audit_stop did not run) is answered durable=false. Does not touch the
 * pg_conn (it may be gone already); a batch in flight frees itself when
 * its connection answers it. */
void audit_free(struct audit *a)
{
	struct audit_row *r;
	size_t lost;

	if (!a)
		return;
	audit_stop(a);
	lost = a->urgent.n + a->queue.n + a->retry.n +
	       (a->batch ? a->batch->rows.n : 0) - a->spool_loaded;
	if (a->batch) {
		for (r = a->batch->rows.head; r; r = r->next)
			audit_row_answer(a, r, false);
		a->batch->a = NULL;
		a->batch = NULL;
	}
	audit_row_prepend(&a->queue, &a->urgent);
	while ((r = audit_row_pop(&a->queue))) {
		audit_row_answer(a, r, false);
		audit_row_free(r);
	}
	while ((r = audit_row_pop(&a->retry))) {
		audit_row_answer(a, r, false);
		audit_row_free(r);
	}
	a->delivering = false;
	audit_deliver(a);
	audit_log_dropped(a, true);
	if (lost)
		log_error("audit: stopping with %zu rows not recorded", lost);
	event_free(a->ev_retry);
	event_free(a->ev_spool);
	event_free(a->ev_linger);
	spool_close(a->spool);
	json_decref(a->spool_keys);
	free(a->answers);
	free(a);
}

static void audit_record_lane(struct audit *a,
			      const struct audit_event_row *ev,
			      const struct audit_transition_row *tr,
			      audit_done_cb cb, void *arg, bool urgent)
{
	const char *why;
	struct audit_row *r;

	if (a->closing) {
		cb(false, arg);
		return;
	}
	if (!ev && !tr) {
		cb(true, arg);
		return;
	}
	if (!audit_row_complete(ev, tr)) {
		log_error("audit: row without a required column refused");
		cb(false, arg);
		return;
	}
	r = audit_row_new(ev, tr, &why);
	if (!r) {
		log_error("audit: row %s%s%s not recorded: %s",
			  ev ? ev->event_id : "", ev && tr ? "/" : "",
			  tr ? tr->transition_id : "", why);
		cb(false, arg);
		return;
	}
	r->cb = cb;
	r->arg = arg;
	if ((!pg_conn_ready(a->conn) || a->state == AUDIT_WAITING) &&
	    a->spool) {
		audit_spool_row(a, r);
	} else if (!pg_conn_ready(a->conn) || a->state == AUDIT_WAITING) {
		audit_row_push(&a->retry, r);
		audit_row_answer(a, r, false);
		audit_trim_retry(a);
	} else {
		audit_row_push(urgent ? &a->urgent : &a->queue, r);
		audit_flush(a);
	}
	audit_deliver(a);
}

void audit_record(struct audit *a, const struct audit_event_row *ev,
		  const struct audit_transition_row *tr, audit_done_cb cb,
		  void *arg)
{
	audit_record_lane(a, ev, tr, cb, arg, false);
}

void audit_record_urgent(struct audit *a, const struct audit_event_row *ev,
			 const struct audit_transition_row *tr,
			 audit_done_cb cb, void *arg)
{
	audit_record_lane(a, ev, tr, cb, arg, true);
}

size_t audit_pending(const struct audit *a)
{
	return a->urgent.n + a->queue.n + a->spool_queue.n +
	       (a->batch ? a->batch->rows.n - a->batch->n_spooled : 0);
}

uint64_t audit_trigger_linked(const struct audit *a)
{
	return a->trigger_linked;
}

size_t audit_retry_backlog(const struct audit *a)
{
	return a->retry.n;
}

/* Connected, and the last batch did not fail (a server that refuses every
 * batch, e.g. with the schema missing, is not usable either). */
bool audit_usable(const struct audit *a)
{
	return pg_conn_ready(a->conn) && a->state != AUDIT_WAITING;
}

bool audit_spool_usable(const struct audit *a)
{
	return a->spool && spool_usable(a->spool);
}

size_t audit_spool_rows(const struct audit *a)
{
	return a->spool ? spool_rows(a->spool) : 0;
}

size_t audit_spool_bytes(const struct audit *a)
{
	return a->spool ? spool_bytes(a->spool) : 0;
}

double audit_spool_fsync_seconds(const struct audit *a, uint64_t *count)
{
	*count = a->spool_syncs;
	return a->spool_sync_s;
}
