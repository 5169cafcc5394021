/* registry: reload the Redis copy of the device registry when it is gone. */
#include "registry.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "pg_conn.h"
#include "redis_pool.h"
#include "tzclock.h"

#define REGISTRY_CHECK_TICKS 10
/* An empty sources table: nothing to load, look again less often. */
#define REGISTRY_EMPTY_TICKS 60

static const char registry_sql[] =
	"SELECT id, kind, coalesce(zone, ''), coalesce(label, ''), "
	"coalesce(secret_group, ''), supervision_s FROM sources ORDER BY id";

enum registry_state {
	REGISTRY_IDLE,     /* nothing in flight */
	REGISTRY_CHECKING, /* EXISTS P sources in flight */
	REGISTRY_QUERYING, /* SELECT from sources in flight */
	REGISTRY_LOADING,  /* the hashes are being written */
	REGISTRY_MARKING,  /* the final SADD P sources is in flight */
};

struct registry {
	struct redis_pool *redis;
	struct pg_conn *pg;
	enum registry_state state;
	unsigned ticks;
	unsigned every;     /* ticks between checks */
	size_t outstanding; /* REGISTRY_LOADING: replies still expected */
	bool failed;        /* a write of this load failed */
	char **ids;         /* the loaded ids, for the final SADD */
	size_t n_ids;
	size_t loaded;
};

static void registry_set_state(struct registry *r, enum registry_state s)
{
	r->state = s;
	if (s == REGISTRY_IDLE) {
		for (size_t i = 0; i < r->n_ids; i++)
			free(r->ids[i]);
		free(r->ids);
		r->ids = NULL;
		r->n_ids = 0;
		r->outstanding = 0;
		r->failed = false;
	}
}

struct registry *registry_new(struct redis_pool *redis, struct pg_conn *pg)
{
	struct registry *r = calloc(1, sizeof(*r));

	if (r == NULL)
		return NULL;
	r->redis = redis;
	r->pg = pg;
	r->every = REGISTRY_CHECK_TICKS;
	r->ticks = REGISTRY_CHECK_TICKS - 1; /* check on the first tick */
	return r;
}

void registry_free(struct registry *r)
{
	if (r == NULL)
		return;
	registry_set_state(r, REGISTRY_IDLE);
	free(r);
}

size_t registry_loaded(const struct registry *r)
{
	return r->loaded;
}

/* "<prefix><a><b>" in buf; false when it does not fit. */
static bool registry_key(char *buf, size_t len, const char *a, const char *b)
{
	int n = snprintf(buf, len, "%s%s%s", config_current()->redis_prefix, a,
			 b);

	return n > 0 && (size_t)n < len;
}

static void registry_on_marked(redisReply *reply, void *arg)
{
	struct registry *r = arg;

	if (reply == NULL || reply->type == REDIS_REPLY_ERROR)
		log_warn("registry: could not mark the registry loaded; retrying");
	else {
		r->loaded = r->n_ids;
		log_info("registry: loaded %zu sources into Redis from PostgreSQL",
			 r->n_ids);
	}
	registry_set_state(r, REGISTRY_IDLE);
}

/* Every hash is written: SADD P sources with every id, the sign that the
 * registry is complete. */
static void registry_mark(struct registry *r)
{
	const char **argv = calloc(r->n_ids + 2, sizeof(*argv));
	size_t *lens = calloc(r->n_ids + 2, sizeof(*lens));
	char key[256];

	if (argv == NULL || lens == NULL ||
	    !registry_key(key, sizeof(key), "sources", "")) {
		free(argv);
		free(lens);
		registry_set_state(r, REGISTRY_IDLE);
		return;
	}
	argv[0] = "SADD";
	argv[1] = key;
	for (size_t i = 0; i < r->n_ids; i++)
		argv[i + 2] = r->ids[i];
	for (size_t i = 0; i < r->n_ids + 2; i++)
		lens[i] = strlen(argv[i]);
	registry_set_state(r, REGISTRY_MARKING);
	if (!redis_pool_command_argv(r->redis, (int)r->n_ids + 2, argv, lens,
				     registry_on_marked, r))
		registry_set_state(r, REGISTRY_IDLE);
	free(argv);
	free(lens);
}

/* One expected reply less; the last one finishes the load. */
static void registry_put(struct registry *r)
{
	if (--r->outstanding > 0)
		return;
	if (r->failed) {
		log_warn("registry: loading into Redis failed; retrying");
		registry_set_state(r, REGISTRY_IDLE);
		return;
	}
	registry_mark(r);
}

static void registry_on_written(redisReply *reply, void *arg)
{
	struct registry *r = arg;

	if (reply == NULL || reply->type == REDIS_REPLY_ERROR)
		r->failed = true;
	registry_put(r);
}

static bool registry_send(struct registry *r, int argc, const char **argv)
{
	size_t lens[16];

	for (int i = 0; i < argc; i++)
		lens[i] = strlen(argv[i]);
	if (!redis_pool_command_argv(r->redis, argc, argv, lens,
				     registry_on_written, r))
		return false;
	r->outstanding++;
	return true;
}

/* One source: its hash, its own interval or none, and a first due time
 * unless it is already supervised (same as alertctl sources load). */
static bool registry_write_one(struct registry *r, PGresult *res, int row,
			       int64_t now)
{
	const struct config *cfg = config_current();
	const char *id = PQgetvalue(res, row, 0);
	const char *kind = PQgetvalue(res, row, 1);
	bool has_iv = !PQgetisnull(res, row, 5);
	enum evt_kind k = EVT_KIND_OTHER;
	char skey[256], zkey[256], due[32], ivs[16];
	int iv;

	if (!registry_key(skey, sizeof(skey), "src:", id) ||
	    !registry_key(zkey, sizeof(zkey), "supervise", ""))
		return false;
	if (!evt_kind_parse(kind, &k))
		k = EVT_KIND_OTHER;
	iv = has_iv ? atoi(PQgetvalue(res, row, 5)) : cfg->supervision_s[k];
	snprintf(ivs, sizeof(ivs), "%d", iv);
	snprintf(due, sizeof(due), "%lld", (long long)(now + (int64_t)iv * 1000));
	const char *hset[] = {"HSET", skey, "id", id, "kind", kind,
			      "zone", PQgetvalue(res, row, 2),
			      "label", PQgetvalue(res, row, 3),
			      "secret_group", PQgetvalue(res, row, 4)};
	const char *ivset[] = {"HSET", skey, "interval_s", ivs};
	const char *ivdel[] = {"HDEL", skey, "interval_s"};
	const char *state[] = {"HSETNX", skey, "state", "unknown"};
	const char *zadd[] = {"ZADD", zkey, "NX", due, id};
	const char *zrem[] = {"ZREM", zkey, id};

	return registry_send(r, 12, hset) &&
	       (has_iv ? registry_send(r, 4, ivset)
		       : registry_send(r, 3, ivdel)) &&
	       registry_send(r, 4, state) &&
	       (iv > 0 ? registry_send(r, 5, zadd) : registry_send(r, 3, zrem));
}

static void registry_on_rows(PGresult *res, const char *errmsg, void *arg)
{
	struct registry *r = arg;
	int64_t now = tzclock_now_ms();
	int rows;

	if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
		log_warn("registry: cannot read the sources table: %s",
			 errmsg ? errmsg : "unknown error");
		registry_set_state(r, REGISTRY_IDLE);
		return;
	}
	rows = PQntuples(res);
	r->every = rows == 0 ? REGISTRY_EMPTY_TICKS : REGISTRY_CHECK_TICKS;
	if (rows == 0) {
		registry_set_state(r, REGISTRY_IDLE);
		return;
	}
	r->ids = calloc((size_t)rows, sizeof(*r->ids));
	if (r->ids == NULL) {
		registry_set_state(r, REGISTRY_IDLE);
		return;
	}
	registry_set_state(r, REGISTRY_LOADING);
	/* One extra count so that replies arriving while we still send
	 * cannot finish the load early. */
	r->outstanding = 1;
	for (int i = 0; i < rows; i++) {
		r->ids[r->n_ids] = strdup(PQgetvalue(res, i, 0));
		if (r->ids[r->n_ids] == NULL ||
		    !registry_write_one(r, res, i, now)) {
			free(r->ids[r->n_ids]);
			r->failed = true;
			break;
		}
		r->n_ids++;
	}
	log_info("registry: the registry is missing from Redis; loading %d sources",
		 rows);
	registry_put(r); /* drops the extra count */
}

static void registry_on_exists(redisReply *reply, void *arg)
{
	struct registry *r = arg;
	const struct config *cfg = config_current();

	if (reply == NULL || reply->type != REDIS_REPLY_INTEGER ||
	    reply->integer != 0 || !pg_conn_ready(r->pg)) {
		registry_set_state(r, REGISTRY_IDLE);
		return;
	}
	registry_set_state(r, REGISTRY_QUERYING);
	if (!pg_conn_query(r->pg, registry_sql, 0, NULL, cfg->pg_timeout_ms,
			   registry_on_rows, r))
		registry_set_state(r, REGISTRY_IDLE);
}

void registry_tick(struct registry *r)
{
	const char *argv[2];
	size_t lens[2];
	char key[256];

	if (r->state != REGISTRY_IDLE || ++r->ticks < r->every)
		return;
	r->ticks = 0;
	if (!redis_pool_ready(r->redis) || !pg_conn_ready(r->pg) ||
	    !registry_key(key, sizeof(key), "sources", ""))
		return;
	argv[0] = "EXISTS";
	argv[1] = key;
	lens[0] = 6;
	lens[1] = strlen(key);
	registry_set_state(r, REGISTRY_CHECKING);
	if (!redis_pool_command_argv(r->redis, 2, argv, lens,
				     registry_on_exists, r))
		registry_set_state(r, REGISTRY_IDLE);
}
