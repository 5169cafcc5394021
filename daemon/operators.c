/* operators: the cache of operator tokens (token_hash -> name, role) of
 * the operators that are not revoked, read from PostgreSQL on its own
 * connection.
 *
 * Refreshed: on every connect (after LISTEN alertd_operators), when
 * alertctl sends NOTIFY alertd_operators, every 60 s, and on a cache miss.
 * A lookup that misses is answered only by a refresh that started after it
 * arrived (a refresh already in flight may predate the token, and the
 * NOTIFY of a new operator may still be on its way), so a token works as
 * soon as alertctl has printed it. Refreshes for misses start at most
 * every OPERATORS_MISS_GAP_MS and at most OPERATORS_MAX_WAITING lookups
 * wait, so a flood of bad tokens costs a bounded number of queries. While
 * PostgreSQL is down the last cache keeps answering. */
#include "operators.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "config.h"
#include "log.h"
#include "pg_conn.h"
#include "tzclock.h"

#define OPERATORS_CHANNEL "alertd_operators"
#define OPERATORS_REFRESH_EVERY_MS 60000
#define OPERATORS_MISS_GAP_MS 100
#define OPERATORS_MAX_WAITING 4096

static const char operators_select_sql[] =
	"SELECT name, role, token_hash, array_to_string(zones, ',') "
	"FROM operators WHERE revoked_at IS NULL";

enum operators_state {
	/* No refresh in flight. */
	OPS_IDLE = 0,
	/* A refresh query is in flight; lookups that miss wait for it. */
	OPS_REFRESHING,
};

struct operators_entry {
	char hash[65];
	struct operator_info info;
};

struct operators_wait {
	struct operators_wait *next;
	char hash[65];
	uint64_t need_gen;   /* answered by refresh generation >= this */
	operators_cb cb;
	void *arg;
};

/* The arg of our queries: outlives the operators if operators_free runs
 * while a query is in flight (the connection answers it later). */
struct operators_ticket {
	struct operators *ops;   /* NULL once operators_free ran */
	int refs;                /* queries in flight + 1 for ops */
};

struct operators {
	struct event_base *base;
	struct pg_conn *conn;
	enum operators_state state;
	struct operators_ticket *ticket;
	struct operators_entry *entries;   /* sorted by hash */
	size_t n_entries;
	bool loaded;                       /* one refresh has succeeded */
	struct operators_wait *wait_head, *wait_tail;
	size_t n_waiting;
	uint64_t gen_started;              /* refreshes sent */
	uint64_t gen_done;                 /* the last one answered */
	struct event *ev_miss;             /* next refresh for waiting misses */
	bool again;                        /* refresh again when this one ends */
	int64_t started_ms;                /* last refresh started */
	int64_t finished_ms;               /* last refresh finished */
	bool last_ok;
	operators_changed_cb on_change;
	void *on_change_arg;
};

static void operators_set_state(struct operators *ops,
				enum operators_state s)
{
	if (ops->state != s)
		log_debug("operators: %s", s == OPS_IDLE ? "idle" : "refreshing");
	ops->state = s;
}

static int operators_entry_cmp(const void *a, const void *b)
{
	return strcmp(((const struct operators_entry *)a)->hash,
		      ((const struct operators_entry *)b)->hash);
}

static const struct operator_info *operators_find(const struct operators *ops,
						  const char *hash)
{
	struct operators_entry key;
	const struct operators_entry *e;

	if (!ops->n_entries)
		return NULL;
	snprintf(key.hash, sizeof(key.hash), "%s", hash);
	e = bsearch(&key, ops->entries, ops->n_entries, sizeof(*ops->entries),
		    operators_entry_cmp);
	return e ? &e->info : NULL;
}

static void operators_entries_free(struct operators_entry *entries, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(entries[i].info.name);
		free(entries[i].info.zones);
	}
	free(entries);
}

static void operators_wait_push(struct operators *ops,
				struct operators_wait *w)
{
	w->next = NULL;
	if (ops->wait_tail)
		ops->wait_tail->next = w;
	else
		ops->wait_head = w;
	ops->wait_tail = w;
	ops->n_waiting++;
}

/* Answers from the cache the waiting lookups that the last refresh covers
 * (all of them when `all`): unknown tokens get NULL, with unavailable=true
 * when the last refresh failed. The list is taken first, so that lookups
 * made by the callbacks queue anew. */
static void operators_answer_waiting(struct operators *ops, bool all)
{
	struct operators_wait *w = ops->wait_head, *next;

	ops->wait_head = ops->wait_tail = NULL;
	ops->n_waiting = 0;
	for (; w; w = next) {
		const struct operator_info *op = operators_find(ops, w->hash);

		next = w->next;
		if (!op && !all && w->need_gen > ops->gen_done) {
			operators_wait_push(ops, w);
			continue;
		}
		w->cb(op, !op && !ops->last_ok, w->arg);
		free(w);
	}
}

/* A refresh for lookups still waiting: now, or once the gap has passed. */
static void operators_refresh_for_misses(struct operators *ops)
{
	int64_t wait = ops->started_ms + OPERATORS_MISS_GAP_MS -
		       tzclock_mono_ms();
	struct timeval tv;

	if (!ops->wait_head || ops->state == OPS_REFRESHING ||
	    evtimer_pending(ops->ev_miss, NULL))
		return;
	if (wait <= 0) {
		operators_refresh(ops);
		return;
	}
	tv.tv_sec = wait / 1000;
	tv.tv_usec = (wait % 1000) * 1000;
	evtimer_add(ops->ev_miss, &tv);
}

static void operators_on_miss_timer(evutil_socket_t fd, short what, void *arg)
{
	operators_refresh_for_misses(arg);
}

static void operators_ticket_put(struct operators_ticket *t)
{
	if (--t->refs == 0)
		free(t);
}

/* Builds the new cache from the rows; false on allocation failure. */
static bool operators_load(struct operators *ops, PGresult *res)
{
	int n = PQntuples(res);
	struct operators_entry *entries = NULL;
	size_t k = 0;

	if (n > 0 && !(entries = calloc((size_t)n, sizeof(*entries))))
		return false;
	for (int i = 0; i < n; i++) {
		const char *name = PQgetvalue(res, i, 0);
		const char *role = PQgetvalue(res, i, 1);
		const char *hash = PQgetvalue(res, i, 2);
		enum auth_role r;

		if (!auth_role_parse(role, &r) || strlen(hash) != 64) {
			log_warn("operators: operator %s has an unknown role or "
				 "a malformed token hash; ignored", name);
			continue;
		}
		entries[k].info.name = strdup(name);
		entries[k].info.zones = strdup(PQgetvalue(res, i, 3));
		if (!entries[k].info.name || !entries[k].info.zones) {
			operators_entries_free(entries, k + 1);
			return false;
		}
		entries[k].info.role = r;
		memcpy(entries[k].hash, hash, 65);
		memcpy(entries[k].info.hash, hash, 65);
		k++;
	}
	if (k > 1)
		qsort(entries, k, sizeof(*entries), operators_entry_cmp);
	if (!ops->loaded || k != ops->n_entries)
		log_info("operators: %zu active operator tokens", k);
	operators_entries_free(ops->entries, ops->n_entries);
	ops->entries = entries;
	ops->n_entries = k;
	ops->loaded = true;
	return true;
}

static void operators_on_refreshed(PGresult *res, const char *errmsg,
				   void *arg)
{
	struct operators_ticket *t = arg;
	struct operators *ops = t->ops;

	operators_ticket_put(t);
	if (!ops)
		return;
	operators_set_state(ops, OPS_IDLE);
	ops->finished_ms = tzclock_mono_ms();
	ops->gen_done = ops->gen_started; /* one refresh in flight at most */
	if (res && PQresultStatus(res) == PGRES_TUPLES_OK &&
	    PQnfields(res) == 4) {
		ops->last_ok = operators_load(ops, res);
		if (!ops->last_ok)
			log_error("operators: out of memory; cache kept");
		else if (ops->on_change)
			ops->on_change(ops, ops->on_change_arg);
	} else {
		ops->last_ok = false;
		log_warn("operators: refresh failed (%s); %zu cached tokens "
			 "kept", errmsg ? errmsg : "unknown error",
			 ops->n_entries);
	}
	operators_answer_waiting(ops, false);
	if (ops->again && ops->state == OPS_IDLE) {
		ops->again = false;
		operators_refresh(ops);
	}
	operators_refresh_for_misses(ops);
}

static void operators_on_listen(PGresult *res, const char *errmsg, void *arg)
{
	struct operators_ticket *t = arg;

	if (t->ops && (!res || PQresultStatus(res) != PGRES_COMMAND_OK))
		log_warn("operators: LISTEN " OPERATORS_CHANNEL " failed (%s); "
			 "changes are seen within 60 s",
			 errmsg ? errmsg : "unknown error");
	operators_ticket_put(t);
}

static bool operators_send(struct operators *ops, const char *sql,
			   pg_result_cb cb)
{
	const struct config *cfg = config_current();
	int timeout = cfg && cfg->pg_timeout_ms > 0 ? cfg->pg_timeout_ms : 5000;

	if (!pg_conn_query(ops->conn, sql, 0, NULL, timeout, cb, ops->ticket))
		return false;
	ops->ticket->refs++;
	return true;
}

static void operators_on_connect(struct pg_conn *conn, void *arg)
{
	struct operators *ops = arg;

	if (!operators_send(ops, "LISTEN " OPERATORS_CHANNEL,
			    operators_on_listen))
		log_warn("operators: cannot send LISTEN");
	operators_refresh(ops);
}

static void operators_on_notify(const char *channel, const char *payload,
				void *arg)
{
	struct operators *ops = arg;

	if (strcmp(channel, OPERATORS_CHANNEL) == 0) {
		log_debug("operators: notified, refreshing");
		operators_refresh(ops);
	}
}

struct operators *operators_new(struct event_base *base, struct pg_conn *conn)
{
	struct operators *ops = calloc(1, sizeof(*ops));

	if (!ops)
		return NULL;
	ops->ticket = calloc(1, sizeof(*ops->ticket));
	if (!ops->ticket) {
		free(ops);
		return NULL;
	}
	ops->ticket->ops = ops;
	ops->ticket->refs = 1;
	ops->base = base;
	ops->conn = conn;
	ops->state = OPS_IDLE;
	ops->started_ms = tzclock_mono_ms();
	ops->ev_miss = evtimer_new(base, operators_on_miss_timer, ops);
	if (!ops->ev_miss) {
		free(ops->ticket);
		free(ops);
		return NULL;
	}
	pg_conn_set_on_connect(conn, operators_on_connect, ops);
	pg_conn_set_on_notify(conn, operators_on_notify, ops);
	return ops;
}

/* Waiting lookups are answered (NULL, unavailable). Does not touch the
 * pg_conn (it may be gone already). */
void operators_free(struct operators *ops)
{
	if (!ops)
		return;
	ops->last_ok = false;
	operators_entries_free(ops->entries, ops->n_entries);
	ops->entries = NULL;
	ops->n_entries = 0;
	operators_answer_waiting(ops, true);
	if (ops->ev_miss)
		event_free(ops->ev_miss);
	ops->ticket->ops = NULL;
	operators_ticket_put(ops->ticket);
	free(ops);
}

void operators_refresh(struct operators *ops)
{
	if (ops->state == OPS_REFRESHING) {
		/* The query in flight may predate the change: once more. */
		ops->again = true;
		return;
	}
	ops->started_ms = tzclock_mono_ms();
	if (!pg_conn_ready(ops->conn) ||
	    !operators_send(ops, operators_select_sql, operators_on_refreshed)) {
		ops->finished_ms = ops->started_ms;
		ops->last_ok = false;
		operators_answer_waiting(ops, true);
		return;
	}
	ops->gen_started++;
	operators_set_state(ops, OPS_REFRESHING);
}

void operators_lookup(struct operators *ops, const char *token,
		      operators_cb cb, void *arg)
{
	const struct operator_info *op;
	struct operators_wait *w;
	char hash[65];

	if (!token || !*token) {
		cb(NULL, false, arg);
		return;
	}
	auth_token_hash(token, hash);
	if ((op = operators_find(ops, hash))) {
		cb(op, false, arg);
		return;
	}
	if (ops->n_waiting >= OPERATORS_MAX_WAITING) {
		/* A flood of unknown tokens: no more waiting room. */
		cb(NULL, false, arg);
		return;
	}
	if (!(w = calloc(1, sizeof(*w)))) {
		cb(NULL, true, arg);
		return;
	}
	memcpy(w->hash, hash, sizeof(hash));
	w->need_gen = ops->gen_started + 1;
	w->cb = cb;
	w->arg = arg;
	operators_wait_push(ops, w);
	operators_refresh_for_misses(ops); /* may answer w at once */
}

void operators_tick(struct operators *ops)
{
	if (ops->state == OPS_IDLE &&
	    tzclock_mono_ms() - ops->started_ms >= OPERATORS_REFRESH_EVERY_MS)
		operators_refresh(ops);
}

void operators_set_on_change(struct operators *ops, operators_changed_cb cb,
			     void *arg)
{
	ops->on_change = cb;
	ops->on_change_arg = arg;
}

bool operators_active(const struct operators *ops, const char *hash)
{
	return operators_find(ops, hash) != NULL;
}

const struct operator_info *operators_by_name(const struct operators *ops,
					      const char *name)
{
	for (size_t i = 0; i < ops->n_entries; i++)
		if (strcmp(ops->entries[i].info.name, name) == 0)
			return &ops->entries[i].info;
	return NULL;
}

/* Incident actions (ack, resolve, note, transfer): not the auditor, who
 * only reads. */
bool operators_role_can_act(enum auth_role role)
{
	return role == AUTH_ROLE_OPERATOR || role == AUTH_ROLE_SUPERVISOR ||
	       role == AUTH_ROLE_ADMIN;
}

/* Reopen, and acting on an incident that another operator holds. */
bool operators_role_can_supervise(enum auth_role role)
{
	return role == AUTH_ROLE_SUPERVISOR || role == AUTH_ROLE_ADMIN;
}
