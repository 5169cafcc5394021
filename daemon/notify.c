/* notify: the jobs of fired escalation levels (notify.h).
 *
 * A batch is one (incident, level); a job one target of it. A job
 * prepares its request once (so every retry sends the same bytes with the
 * same idempotency key), then: SENDING -> answer 2xx: DONE (sent) |
 * no answer or another status: WAITING for the backoff timer, or DONE
 * (gave_up) after the last retry. Backoff: backoff_ms * 2^(attempt-1),
 * times a random factor in [0.5, 1.5) (jitter), at most 60 s. */
#include "notify.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#include <event2/event.h>
#include <jansson.h>
#include <openssl/rand.h>

#include "config.h"
#include "evt.h"
#include "http_client.h"
#include "log.h"
#include "notify_call.h"
#include "notify_sms.h"
#include "pg_conn.h"
#include "policy.h"
#include "tzclock.h"

#define NOTIFY_BACKOFF_MAX_MS 60000
#define NOTIFY_ASK_MAX 10  /* then a resumed level is sent without knowing */

enum notify_job_state {
	NJ_SENDING,  /* a request is out */
	NJ_WAITING,  /* waiting for the backoff timer */
	NJ_CHECKING, /* asking whether the incident still wants a retry */
	NJ_DONE,     /* sent or gave up; freed on the next loop turn */
};

/* A resumed level first asks PostgreSQL what its targets already had. */
enum notify_batch_state {
	NB_RUNNING,   /* its jobs run */
	NB_ASKING,    /* resumed: the rows of earlier attempts are asked for */
	NB_WAITING,   /* resumed: PostgreSQL did not answer; ask again */
};

struct notify_batch {
	LIST_ENTRY(notify_batch) next;
	struct notify *n;
	enum notify_batch_state state;
	int64_t incident_id;
	int level;
	int64_t run;             /* esc_run_ms: part of the keys; 0: none */
	int resumed;             /* times the level was taken up again */
	int asked;               /* questions to PostgreSQL so far */
	char *snap;              /* NB_ASKING/NB_WAITING: the snapshot */
	int jobs_left;
	bool gave_up;
	notify_done_cb cb;
	void *arg;
};

struct notify_job {
	LIST_ENTRY(notify_job) next;  /* in notify.jobs */
	struct notify_batch *batch;
	enum notify_job_state state;
	enum policy_channel channel;
	char key[160];           /* idempotency key */
	char target[72];         /* masked, for logs and rows */
	int attempt;
	int first;               /* attempts before this run (resumed) */
	int retries;
	int backoff_ms;
	int timeout_ms;
	struct policy_url url;   /* copies: a reload may free the config */
	char *path_query;
	char *content_type;
	char *body;
	struct event *timer;     /* backoff, and the deferred free */
};

struct notify_row;
struct notify_batch;

static void notify_batch_ask(struct notify_batch *b);
static void notify_batch_start_unknown(struct notify_batch *b);

struct notify {
	struct event_base *base;
	struct pg_conn *pg;
	struct http_client *http;
	LIST_HEAD(, notify_batch) batches;
	LIST_HEAD(, notify_job) jobs;
	notify_check_fn check;
	void *check_arg;
	STAILQ_HEAD(, notify_row) retry;  /* rows waiting for PostgreSQL */
	size_t n_retry;
};

static const char notify_insert_sql[] =
	"INSERT INTO notifications (idempotency_key, attempt, incident_id, "
	"level, channel, target, outcome, detail, at) "
	"VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9::timestamptz) "
	"ON CONFLICT DO NOTHING";

#define NOTIFY_ROW_PARAMS 9
#define NOTIFY_RETRY_MAX 10000

/* One notifications row; kept and written again while PostgreSQL is
 * unreachable (the insert is idempotent on key, attempt and outcome). */
struct notify_row {
	STAILQ_ENTRY(notify_row) next;
	struct notify *n;
	char *v[NOTIFY_ROW_PARAMS];   /* v[7] (detail) may be NULL */
};

struct notify *notify_new(struct event_base *base, struct pg_conn *pg)
{
	struct notify *n = calloc(1, sizeof(*n));

	if (n == NULL)
		return NULL;
	n->base = base;
	n->pg = pg;
	LIST_INIT(&n->batches);
	LIST_INIT(&n->jobs);
	STAILQ_INIT(&n->retry);
	if ((n->http = http_client_new(base)) == NULL) {
		free(n);
		return NULL;
	}
	return n;
}

static void notify_row_free(struct notify_row *r)
{
	for (int i = 0; i < NOTIFY_ROW_PARAMS; i++)
		free(r->v[i]);
	free(r);
}

static void notify_row_send(struct notify_row *r);

static void notify_on_recorded(PGresult *res, const char *errmsg, void *arg)
{
	struct notify_row *r = arg;
	struct notify *n = r->n;

	if (res != NULL && PQresultStatus(res) == PGRES_COMMAND_OK) {
		notify_row_free(r);
		return;
	}
	if (n->n_retry >= NOTIFY_RETRY_MAX) {
		log_error("notify: %s attempt %s %s: row lost, %zu rows already "
			  "wait for PostgreSQL (%s)", r->v[0], r->v[1], r->v[6],
			  n->n_retry, errmsg ? errmsg : "unknown error");
		notify_row_free(r);
		return;
	}
	if (n->n_retry == 0)
		log_warn("notify: notifications rows wait for PostgreSQL (%s)",
			 errmsg ? errmsg : "unavailable");
	STAILQ_INSERT_TAIL(&n->retry, r, next);
	n->n_retry++;
}

static void notify_row_send(struct notify_row *r)
{
	if (!pg_conn_ready(r->n->pg) ||
	    !pg_conn_query(r->n->pg, notify_insert_sql, NOTIFY_ROW_PARAMS,
			   (const char *const *)r->v,
			   config_current()->pg_timeout_ms, notify_on_recorded,
			   r))
		notify_on_recorded(NULL, "PostgreSQL unavailable", r);
}

void notify_record(struct notify *n, const char *key, int attempt,
		   int64_t incident_id, int level, const char *channel,
		   const char *target, const char *outcome,
		   const char *detail_json)
{
	struct notify_row *r = calloc(1, sizeof(*r));
	char at[32];
	bool ok;

	evt_format_time(tzclock_now_ms(), at, sizeof(at));
	ok = r != NULL &&
	     (r->v[0] = strdup(key)) != NULL &&
	     asprintf(&r->v[1], "%d", attempt) >= 0 &&
	     asprintf(&r->v[2], "%lld", (long long)incident_id) >= 0 &&
	     asprintf(&r->v[3], "%d", level) >= 0 &&
	     (r->v[4] = strdup(channel)) != NULL &&
	     (r->v[5] = strdup(target)) != NULL &&
	     (r->v[6] = strdup(outcome)) != NULL &&
	     (detail_json == NULL || (r->v[7] = strdup(detail_json)) != NULL) &&
	     (r->v[8] = strdup(at)) != NULL;
	if (!ok) {
		log_error("notify: %s attempt %d %s: out of memory, row lost",
			  key, attempt, outcome);
		if (r != NULL)
			notify_row_free(r);
		return;
	}
	r->n = n;
	notify_row_send(r);
}

void notify_tick(struct notify *n)
{
	struct notify_row *r;
	struct notify_batch *b, *bn;
	size_t k = n->n_retry;

	/* Resumed levels whose question PostgreSQL did not answer. Asked
	 * before the waiting rows are written: those count (see
	 * notify_prior_done). */
	for (b = LIST_FIRST(&n->batches); b != NULL; b = bn) {
		bn = LIST_NEXT(b, next);
		if (b->state != NB_WAITING)
			continue;
		if (b->asked >= NOTIFY_ASK_MAX)
			notify_batch_start_unknown(b);
		else
			notify_batch_ask(b);
	}

	if (k == 0 || !pg_conn_ready(n->pg))
		return;
	log_info("notify: writing %zu notifications rows that waited", k);
	/* Each goes back to the list if it fails again: take k only. */
	while (k-- > 0 && (r = STAILQ_FIRST(&n->retry)) != NULL) {
		STAILQ_REMOVE_HEAD(&n->retry, next);
		n->n_retry--;
		notify_row_send(r);
	}
}

static void notify_job_free(struct notify_job *j)
{
	LIST_REMOVE(j, next);
	free(j->url.host);
	free(j->url.path);
	free(j->path_query);
	free(j->content_type);
	free(j->body);
	if (j->timer != NULL)
		event_free(j->timer);
	free(j);
}

static void notify_batch_job_ended(struct notify_batch *b, bool gave_up)
{
	if (gave_up)
		b->gave_up = true;
	if (--b->jobs_left > 0)
		return;
	LIST_REMOVE(b, next);
	if (b->cb != NULL)
		b->cb(b->incident_id, b->level, b->gave_up, b->arg);
	free(b);
}

static void notify_on_timer(evutil_socket_t fd, short what, void *arg);

/* Ends a job: its batch may end too; the job is freed on the next turn
 * (we may be inside its HTTP callback). */
static void notify_job_end(struct notify_job *j, bool gave_up)
{
	struct timeval now = {0, 0};
	struct notify_batch *b = j->batch;

	j->state = NJ_DONE;
	j->batch = NULL;
	event_add(j->timer, &now);
	notify_batch_job_ended(b, gave_up);
}

static int notify_backoff_ms(const struct notify_job *j)
{
	uint32_t r = 0;
	double ms = j->backoff_ms;

	for (int i = 1; i < j->attempt - j->first &&
			ms < NOTIFY_BACKOFF_MAX_MS; i++)
		ms *= 2;
	if (ms > NOTIFY_BACKOFF_MAX_MS)
		ms = NOTIFY_BACKOFF_MAX_MS;
	if (RAND_bytes((unsigned char *)&r, sizeof(r)) != 1)
		r = (uint32_t)j->attempt * 2654435761u;
	return (int)(ms * (0.5 + (double)r / 4294967296.0));
}

static void notify_on_answer(int status, const char *body, size_t len,
			     void *arg)
{
	struct notify_job *j = arg;
	struct notify_batch *b = j->batch;
	const char *ch = policy_channel_name(j->channel);
	char detail[64];

	snprintf(detail, sizeof(detail), "{\"status\":%d}", status);
	if (status >= 200 && status < 300) {
		log_info("notify: %s sent to %s %s (attempt %d)", j->key, ch,
			 j->target, j->attempt);
		notify_record(b->n, j->key, j->attempt, b->incident_id,
			      b->level, ch, j->target, "sent", detail);
		notify_job_end(j, false);
		return;
	}
	if (j->attempt - j->first > j->retries) {
		log_error("notify: %s: %s %s gave up after %d attempts "
			  "(last: %s %d)", j->key, ch, j->target,
			  j->attempt - j->first,
			  status ? "status" : "no answer", status);
		notify_record(b->n, j->key, j->attempt, b->incident_id,
			      b->level, ch, j->target, "gave_up", detail);
		notify_job_end(j, true);
		return;
	}
	{
		int wait = notify_backoff_ms(j);
		struct timeval tv = {wait / 1000, (wait % 1000) * 1000};

		log_warn("notify: %s: %s %s attempt %d failed (%s %d); "
			 "retrying in %d ms", j->key, ch, j->target,
			 j->attempt, status ? "status" : "no answer", status,
			 wait);
		notify_record(b->n, j->key, j->attempt, b->incident_id,
			      b->level, ch, j->target, "failed", detail);
		j->state = NJ_WAITING;
		event_add(j->timer, &tv);
	}
}

static void notify_job_send(struct notify_job *j)
{
	const char *headers[] = {"Idempotency-Key", j->key, NULL};

	j->attempt++;
	j->state = NJ_SENDING;
	if (!http_client_request(j->batch->n->http, &j->url, j->path_query,
				 headers, j->content_type, j->body,
				 j->timeout_ms, notify_on_answer, j))
		notify_on_answer(0, "", 0, j);
}

static void notify_on_wanted(bool wanted, void *arg)
{
	struct notify_job *j = arg;
	struct notify_batch *b = j->batch;

	if (j->state != NJ_CHECKING)
		return;
	if (wanted) {
		notify_job_send(j);
		return;
	}
	log_info("notify: %s: incident taken; no more retries", j->key);
	notify_record(b->n, j->key, j->attempt + 1, b->incident_id, b->level,
		      policy_channel_name(j->channel), j->target, "cancelled",
		      NULL);
	notify_job_end(j, false);
}

static void notify_on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct notify_job *j = arg;
	struct notify *n;

	if (j->state == NJ_DONE) {
		notify_job_free(j);
		return;
	}
	n = j->batch->n;
	if (n->check == NULL) {
		notify_job_send(j);
		return;
	}
	j->state = NJ_CHECKING;
	n->check(j->batch->incident_id, notify_on_wanted, j, n->check_arg);
}

void notify_set_check(struct notify *n, notify_check_fn fn, void *arg)
{
	n->check = fn;
	n->check_arg = arg;
}

static bool notify_copy_url(struct policy_url *dst,
			    const struct policy_url *src)
{
	dst->host = strdup(src->host);
	dst->path = strdup(src->path);
	dst->port = src->port;
	return dst->host != NULL && dst->path != NULL;
}

/* Prepares the request of one target; false when it cannot be built. */
static bool notify_job_prepare(struct notify_job *j, const struct policy *p,
			       const struct policy_target *t,
			       const char *snap, int level)
{
	char *text = NULL;
	bool ok = false;

	switch (t->channel) {
	case POLICY_SMS:
		text = notify_sms_text(p->sms_template, snap, level);
		ok = text != NULL && notify_copy_url(&j->url, &p->sms_url) &&
		     (j->path_query = notify_sms_query(p, t->to, text,
						       j->key)) != NULL;
		break;
	case POLICY_CALL:
		text = notify_sms_text(p->call_template, snap, level);
		ok = text != NULL && notify_copy_url(&j->url, &p->call_url) &&
		     (j->body = notify_call_body(t->to, snap, level, text,
						 j->key)) != NULL &&
		     (j->content_type = strdup("application/json")) != NULL;
		break;
	case POLICY_WEBHOOK: {
		const struct policy_webhook *w = policy_webhook(p, t->to);

		ok = w != NULL && notify_copy_url(&j->url, &w->url) &&
		     (j->body = notify_call_webhook_body(t->to, snap, level,
							 j->key)) != NULL &&
		     (j->content_type = strdup("application/json")) != NULL;
		break;
	}
	case POLICY_CONSOLE:
	case POLICY_CHANNEL__COUNT:
		break;
	}
	free(text);
	return ok;
}

/* "<incident>@<run>:<level>:<channel>:<target>" (docs/operations.md);
 * without a run (a level claimed before alertd had them) the old form. */
static void notify_key(char *buf, size_t len, const struct notify_batch *b,
		       const char *ch, const char *to)
{
	if (b->run > 0)
		snprintf(buf, len, "%lld@%lld:%d:%s:%s",
			 (long long)b->incident_id, (long long)b->run,
			 b->level, ch, to);
	else
		snprintf(buf, len, "%lld:%d:%s:%s", (long long)b->incident_id,
			 b->level, ch, to);
}

/* What earlier runs of a resumed level left for one key. */
struct notify_prior {
	const PGresult *res;     /* key, max attempt, reached; NULL: unknown */
	int unknown_base;        /* attempt numbers to start after then */
};

/* true: the target was reached (or given up, or cancelled) already.
 * *first: the attempts already recorded. */
static bool notify_prior_done(const struct notify *n,
			      const struct notify_prior *pr, const char *key,
			      int *first)
{
	const struct notify_row *r;

	*first = 0;
	if (pr == NULL)
		return false;
	/* Rows of this process that still wait for PostgreSQL count too. */
	STAILQ_FOREACH(r, &n->retry, next) {
		if (strcmp(r->v[0], key) != 0)
			continue;
		if (strcmp(r->v[6], "failed") != 0)
			return true;
		if (atoi(r->v[1]) > *first)
			*first = atoi(r->v[1]);
	}
	if (pr->res == NULL) {
		if (pr->unknown_base > *first)
			*first = pr->unknown_base;
		return false;
	}
	for (int i = 0; i < PQntuples(pr->res); i++) {
		if (strcmp(PQgetvalue(pr->res, i, 0), key) != 0)
			continue;
		if (strcmp(PQgetvalue(pr->res, i, 2), "t") == 0)
			return true;
		if (atoi(PQgetvalue(pr->res, i, 1)) > *first)
			*first = atoi(PQgetvalue(pr->res, i, 1));
	}
	return false;
}

/* Starts the jobs of batch b (held by one jobs_left), then lets go. */
static void notify_batch_start(struct notify_batch *b, const char *snap,
			       const struct notify_prior *pr)
{
	struct notify *n = b->n;
	const struct policy *p = config_current()->policy;
	const struct policy_level *lv;
	json_t *s = json_loads(snap, 0, NULL);
	int prio = (int)json_integer_value(json_object_get(s, "priority"));
	int64_t incident_id = b->incident_id;
	int level = b->level;

	json_decref(s);
	b->state = NB_RUNNING;
	lv = policy_level_for(policy_band_for(p, prio), level);
	if (lv == NULL) {
		/* A reload since the claim left no band for its priority. */
		static const struct policy_level none;

		log_warn("notify: %lld:%d: no escalation band covers priority "
			 "%d any more; nothing sent for this level",
			 (long long)incident_id, level, prio);
		lv = &none;
	}
	for (size_t i = 0; i < lv->n_targets; i++) {
		const struct policy_target *t = &lv->targets[i];
		const char *ch = policy_channel_name(t->channel);
		struct notify_job *j;
		char key[160];
		int first;

		notify_key(key, sizeof(key), b, ch, t->to);
		if (notify_prior_done(n, pr, key, &first)) {
			log_info("notify: %s: already sent (or ended) before; "
				 "not sent again", key);
			continue;
		}
		if (t->channel == POLICY_CONSOLE) {
			notify_record(n, key, first + 1, incident_id, level, ch,
				      t->to, "shown", NULL);
			continue;
		}
		if ((j = calloc(1, sizeof(*j))) == NULL)
			goto oom;
		LIST_INSERT_HEAD(&n->jobs, j, next);
		j->batch = b;
		j->channel = t->channel;
		j->retries = p->retries;
		j->backoff_ms = p->backoff_ms;
		j->timeout_ms = p->timeout_ms;
		j->attempt = j->first = first;
		snprintf(j->key, sizeof(j->key), "%s", key);
		if (t->channel == POLICY_WEBHOOK)
			snprintf(j->target, sizeof(j->target), "%s", t->to);
		else
			notify_sms_mask(t->to, j->target, sizeof(j->target));
		if ((j->timer = evtimer_new(n->base, notify_on_timer, j)) ==
			    NULL ||
		    !notify_job_prepare(j, p, t, snap, level)) {
			notify_job_free(j);
			goto oom;
		}
		b->jobs_left++;
		notify_job_send(j);
		continue;
oom:
		log_error("notify: %lld:%d: cannot prepare %s %s",
			  (long long)incident_id, level, ch, t->to);
		b->gave_up = true;
	}
	notify_batch_job_ended(b, false);
}

static struct notify_batch *notify_batch_new(struct notify *n,
					     int64_t incident_id, int level,
					     int64_t run, notify_done_cb cb,
					     void *arg)
{
	struct notify_batch *b = calloc(1, sizeof(*b));

	if (b == NULL) {
		log_error("notify: %lld:%d: out of memory",
			  (long long)incident_id, level);
		if (cb != NULL)
			cb(incident_id, level, true, arg);
		return NULL;
	}
	b->n = n;
	b->incident_id = incident_id;
	b->level = level;
	b->run = run;
	b->cb = cb;
	b->arg = arg;
	b->jobs_left = 1; /* held until every job started */
	LIST_INSERT_HEAD(&n->batches, b, next);
	return b;
}

void notify_level(struct notify *n, int64_t incident_id, int level,
		  int64_t run, const char *snap, notify_done_cb cb, void *arg)
{
	struct notify_batch *b = notify_batch_new(n, incident_id, level, run,
						  cb, arg);

	if (b != NULL)
		notify_batch_start(b, snap, NULL);
}

/* Key, the attempts recorded, and whether the target was reached, gave
 * up or was cancelled (a delivery report, attempt 0, means sent). */
static const char notify_prior_sql[] =
	"SELECT idempotency_key, max(attempt), "
	"bool_or(outcome <> 'failed' OR attempt = 0) "
	"FROM notifications WHERE incident_id = $1 AND level = $2 "
	"GROUP BY idempotency_key";

static void notify_on_prior(PGresult *res, const char *errmsg, void *arg)
{
	struct notify_batch *b = arg;
	struct notify_prior pr = {.res = res, .unknown_base = 0};
	char *snap;

	if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
		/* notify_tick asks again (not from here: this may be
		 * pg_conn_free answering, on the way out). */
		if (b->asked == 1)
			log_warn("notify: %lld:%d: cannot ask PostgreSQL for "
				 "the earlier attempts (%s); asking again",
				 (long long)b->incident_id, b->level,
				 errmsg ? errmsg : "error");
		b->state = NB_WAITING;
		return;
	}
	snap = b->snap;
	b->snap = NULL;
	notify_batch_start(b, snap, &pr);
	free(snap);
}

/* PostgreSQL did not answer NOTIFY_ASK_MAX times: rather a repeat (with
 * the same Idempotency-Key) than a level lost. The attempts are numbered
 * after any earlier run's, so that their rows are not taken for repeats
 * of the earlier ones. */
static void notify_batch_start_unknown(struct notify_batch *b)
{
	struct notify_prior pr = {
		.res = NULL,
		.unknown_base = 100 * (b->resumed > 0 ? b->resumed : 1),
	};
	char *snap = b->snap;

	log_error("notify: %lld:%d: earlier attempts unknown (PostgreSQL "
		  "unavailable); sending the level again",
		  (long long)b->incident_id, b->level);
	b->snap = NULL;
	notify_batch_start(b, snap, &pr);
	free(snap);
}

static void notify_batch_ask(struct notify_batch *b)
{
	char id[24], lv[16];
	const char *params[2] = {id, lv};

	snprintf(id, sizeof(id), "%lld", (long long)b->incident_id);
	snprintf(lv, sizeof(lv), "%d", b->level);
	b->asked++;
	b->state = NB_ASKING;
	if (!pg_conn_ready(b->n->pg) ||
	    !pg_conn_query(b->n->pg, notify_prior_sql, 2, params,
			   config_current()->pg_timeout_ms, notify_on_prior,
			   b))
		notify_on_prior(NULL, "PostgreSQL unavailable", b);
}

void notify_resume(struct notify *n, int64_t incident_id, int level,
		   int64_t run, int resumed, const char *snap,
		   notify_done_cb cb, void *arg)
{
	struct notify_batch *b = notify_batch_new(n, incident_id, level, run,
						  cb, arg);

	if (b == NULL)
		return;
	b->resumed = resumed;
	if ((b->snap = strdup(snap)) == NULL) {
		notify_batch_start(b, snap, NULL);
		return;
	}
	notify_batch_ask(b);
}

bool notify_busy(const struct notify *n, int64_t incident_id, int level)
{
	const struct notify_batch *b;

	LIST_FOREACH(b, &n->batches, next)
		if (b->incident_id == incident_id && b->level == level)
			return true;
	return false;
}

void notify_free(struct notify *n)
{
	struct notify_batch *b;
	struct notify_job *j;
	struct notify_row *r;

	if (n == NULL)
		return;
	if (n->n_retry > 0)
		log_error("notify: %zu notifications rows never reached "
			  "PostgreSQL", n->n_retry);
	while ((r = STAILQ_FIRST(&n->retry)) != NULL) {
		STAILQ_REMOVE_HEAD(&n->retry, next);
		notify_row_free(r);
	}
	/* Cancels the requests without callbacks; jobs and batches are
	 * dropped (the levels stay pending in Redis). */
	http_client_free(n->http);
	while ((j = LIST_FIRST(&n->jobs)) != NULL)
		notify_job_free(j);
	while ((b = LIST_FIRST(&n->batches)) != NULL) {
		LIST_REMOVE(b, next);
		free(b->snap);
		free(b);
	}
	free(n);
}
