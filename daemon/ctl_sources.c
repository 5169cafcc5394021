/* ctl_sources: the device registry from the command line. */
#include "ctl_sources.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <hiredis/hiredis.h>
#include <libpq-fe.h>

#include "config.h"
#include "evt.h"
#include "tzclock.h"

enum { CTLS_OK = 0, CTLS_FAIL = 1, CTLS_USAGE = 2 };

enum ctls_col {
	COL_ID, COL_KIND, COL_ZONE, COL_LABEL, COL_GROUP, COL_SUPERVISION,
	COL__COUNT
};

static const char *const ctls_col_names[COL__COUNT] = {
	"id", "kind", "zone", "label", "secret_group", "supervision_s",
};

#define CTLS_MAX_FIELDS 16
#define CTLS_LINE_MAX 4096

static void ctls_usage(FILE *out)
{
	fprintf(out,
		"usage: alertctl [-c FILE] sources [--json]\n"
		"       alertctl [-c FILE] sources import FILE.csv\n"
		"       alertctl [-c FILE] sources load\n"
		"\n"
		"  sources         the registry with kind, zone, state and last-seen\n"
		"  sources import  upsert the CSV rows (header: id,kind[,zone,label,\n"
		"                  secret_group,supervision_s]) into PostgreSQL and\n"
		"                  load the registry into Redis\n"
		"  sources load    load the registry from PostgreSQL into Redis again\n");
}

/* ---- CSV ---- */

/* Splits one CSV line in place (RFC 4180 quoting, "" inside quotes).
 * Returns the number of fields, or -1 when malformed. */
static int ctls_csv_split(char *line, char **fields, int max)
{
	int n = 0;
	char *r = line, *w;

	for (;;) {
		if (n == max)
			return -1;
		fields[n++] = w = r;
		if (*r == '"') {
			r++;
			for (;;) {
				if (*r == '\0')
					return -1;
				if (*r == '"' && r[1] == '"') {
					*w++ = '"';
					r += 2;
				} else if (*r == '"') {
					r++;
					break;
				} else {
					*w++ = *r++;
				}
			}
			if (*r != ',' && *r != '\0')
				return -1;
		} else {
			while (*r != ',' && *r != '\0')
				*w++ = *r++;
		}
		if (*r == '\0') {
			*w = '\0';
			return n;
		}
		r++;
		*w = '\0';
	}
}

struct ctls_row {
	char *v[COL__COUNT]; /* NULL: empty */
};

static void ctls_rows_free(struct ctls_row *rows, size_t n)
{
	for (size_t i = 0; i < n; i++)
		for (int c = 0; c < COL__COUNT; c++)
			free(rows[i].v[c]);
	free(rows);
}

/* Reads and validates the whole file before anything is written. */
static int ctls_read_csv(const char *path, struct ctls_row **out,
			 size_t *n_out)
{
	FILE *f = fopen(path, "r");
	char line[CTLS_LINE_MAX];
	char *fields[CTLS_MAX_FIELDS];
	int map[CTLS_MAX_FIELDS];
	int nf, ncols = 0, lineno = 0;
	struct ctls_row *rows = NULL;
	size_t n = 0, cap = 0;

	if (f == NULL) {
		fprintf(stderr, "alertctl: %s: %s\n", path, strerror(errno));
		return CTLS_FAIL;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		size_t len = strlen(line);
		struct ctls_row row = {{0}};
		enum evt_kind kind;

		lineno++;
		if (len > 0 && line[len - 1] != '\n' && !feof(f)) {
			fprintf(stderr, "alertctl: %s:%d: line too long\n", path,
				lineno);
			goto bad;
		}
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = '\0';
		if (len == 0 || line[0] == '#')
			continue;
		nf = ctls_csv_split(line, fields, CTLS_MAX_FIELDS);
		if (nf < 0) {
			fprintf(stderr, "alertctl: %s:%d: malformed CSV\n", path,
				lineno);
			goto bad;
		}
		if (ncols == 0) { /* the header */
			bool have_id = false, have_kind = false;

			for (int i = 0; i < nf; i++) {
				map[i] = -1;
				for (int c = 0; c < COL__COUNT; c++)
					if (strcmp(fields[i], ctls_col_names[c]) == 0)
						map[i] = c;
				if (map[i] < 0) {
					fprintf(stderr,
						"alertctl: %s:%d: unknown column \"%s\"\n",
						path, lineno, fields[i]);
					goto bad;
				}
				have_id |= map[i] == COL_ID;
				have_kind |= map[i] == COL_KIND;
			}
			if (!have_id || !have_kind) {
				fprintf(stderr,
					"alertctl: %s:%d: the header needs the columns id and kind\n",
					path, lineno);
				goto bad;
			}
			ncols = nf;
			continue;
		}
		if (nf != ncols) {
			fprintf(stderr, "alertctl: %s:%d: %d fields, the header has %d\n",
				path, lineno, nf, ncols);
			goto bad;
		}
		for (int i = 0; i < nf; i++) {
			if (fields[i][0] == '\0')
				continue;
			row.v[map[i]] = strdup(fields[i]);
			if (row.v[map[i]] == NULL)
				goto oom_row;
		}
		if (row.v[COL_ID] == NULL || !evt_id_valid(row.v[COL_ID], 64)) {
			fprintf(stderr, "alertctl: %s:%d: invalid id\n", path,
				lineno);
			goto bad_row;
		}
		if (row.v[COL_KIND] == NULL ||
		    !evt_kind_parse(row.v[COL_KIND], &kind)) {
			fprintf(stderr, "alertctl: %s:%d: invalid kind\n", path,
				lineno);
			goto bad_row;
		}
		if (row.v[COL_SUPERVISION] != NULL) {
			char *end;
			long s;

			errno = 0;
			s = strtol(row.v[COL_SUPERVISION], &end, 10);
			if (errno != 0 || *end != '\0' || s < 0 || s > 604800) {
				fprintf(stderr,
					"alertctl: %s:%d: supervision_s must be 0..604800\n",
					path, lineno);
				goto bad_row;
			}
		}
		if (n == cap) {
			struct ctls_row *grown;

			cap = cap ? cap * 2 : 256;
			grown = realloc(rows, cap * sizeof(*rows));
			if (grown == NULL)
				goto oom_row;
			rows = grown;
		}
		rows[n++] = row;
		continue;
oom_row:
		fprintf(stderr, "alertctl: out of memory\n");
bad_row:
		for (int c = 0; c < COL__COUNT; c++)
			free(row.v[c]);
		goto bad;
	}
	fclose(f);
	if (ncols == 0) {
		fprintf(stderr, "alertctl: %s: no header line\n", path);
		ctls_rows_free(rows, n);
		return CTLS_USAGE;
	}
	*out = rows;
	*n_out = n;
	return CTLS_OK;
bad:
	fclose(f);
	ctls_rows_free(rows, n);
	return CTLS_USAGE;
}

/* ---- PostgreSQL and Redis ---- */

static PGconn *ctls_pg(const struct config *cfg)
{
	PGconn *pg = PQconnectdb(cfg->pg_conninfo);

	if (pg == NULL || PQstatus(pg) != CONNECTION_OK) {
		fprintf(stderr, "alertctl: postgres: %s",
			pg ? PQerrorMessage(pg) : "out of memory\n");
		PQfinish(pg);
		return NULL;
	}
	return pg;
}

static bool ctls_exec(PGconn *pg, const char *sql, int n,
		      const char *const *params)
{
	PGresult *res = PQexecParams(pg, sql, n, NULL, params, NULL, NULL, 0);
	bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;

	if (!ok)
		fprintf(stderr, "alertctl: postgres: %s",
			PQresultErrorMessage(res));
	PQclear(res);
	return ok;
}

static redisContext *ctls_redis(const struct config *cfg)
{
	int ms = cfg->redis_timeout_ms > 0 ? cfg->redis_timeout_ms : 2000;
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	redisContext *c = redisConnectWithTimeout(cfg->redis_host,
						  cfg->redis_port, tv);

	if (c == NULL || c->err) {
		fprintf(stderr, "alertctl: redis %s:%d: %s\n", cfg->redis_host,
			cfg->redis_port, c ? c->errstr : "out of memory");
		if (c)
			redisFree(c);
		return NULL;
	}
	redisSetTimeout(c, tv);
	return c;
}

/* Reads n pipelined replies; false on the first error. */
static bool ctls_redis_replies(redisContext *c, size_t n)
{
	bool ok = true;

	for (size_t i = 0; i < n; i++) {
		redisReply *r = NULL;

		if (redisGetReply(c, (void **)&r) != REDIS_OK) {
			fprintf(stderr, "alertctl: redis: %s\n", c->errstr);
			return false;
		}
		if (r->type == REDIS_REPLY_ERROR && ok) {
			fprintf(stderr, "alertctl: redis: %s\n", r->str);
			ok = false;
		}
		freeReplyObject(r);
	}
	return ok;
}

/* PostgreSQL -> Redis: hash P src:<id>, set P sources, and a first
 * supervision due time (kept if the source is already supervised). */
static int ctls_load(const struct config *cfg, PGconn *pg, size_t *loaded)
{
	const char *P = cfg->redis_prefix;
	PGresult *res;
	redisContext *c;
	size_t sent = 0;
	int64_t now = tzclock_now_ms();
	int rows;

	res = PQexec(pg, "SELECT id, kind, coalesce(zone, ''), coalesce(label, ''), "
			 "coalesce(secret_group, ''), supervision_s FROM sources ORDER BY id");
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		fprintf(stderr, "alertctl: postgres: %s",
			PQresultErrorMessage(res));
		PQclear(res);
		return CTLS_FAIL;
	}
	c = ctls_redis(cfg);
	if (c == NULL) {
		PQclear(res);
		return CTLS_FAIL;
	}
	rows = PQntuples(res);
	for (int i = 0; i < rows; i++) {
		const char *id = PQgetvalue(res, i, 0);
		const char *kind = PQgetvalue(res, i, 1);
		bool has_iv = !PQgetisnull(res, i, 5);
		enum evt_kind k = EVT_KIND_OTHER;
		int iv;

		if (!evt_kind_parse(kind, &k))
			k = EVT_KIND_OTHER;
		iv = has_iv ? atoi(PQgetvalue(res, i, 5))
			    : cfg->supervision_s[k];
		redisAppendCommand(c,
				   "HSET %ssrc:%s id %s kind %s zone %s label %s secret_group %s",
				   P, id, id, kind, PQgetvalue(res, i, 2),
				   PQgetvalue(res, i, 3), PQgetvalue(res, i, 4));
		if (has_iv)
			redisAppendCommand(c, "HSET %ssrc:%s interval_s %d", P,
					   id, iv);
		else
			redisAppendCommand(c, "HDEL %ssrc:%s interval_s", P, id);
		redisAppendCommand(c, "HSETNX %ssrc:%s state unknown", P, id);
		redisAppendCommand(c, "SADD %ssources %s", P, id);
		if (iv > 0)
			redisAppendCommand(c, "ZADD %ssupervise NX %lld %s", P,
					   (long long)(now + (int64_t)iv * 1000),
					   id);
		else
			redisAppendCommand(c, "ZREM %ssupervise %s", P, id);
		sent += 5;
		/* Bounded pipelines. */
		if (sent >= 5000 || i == rows - 1) {
			if (!ctls_redis_replies(c, sent)) {
				redisFree(c);
				PQclear(res);
				return CTLS_FAIL;
			}
			sent = 0;
		}
	}
	redisFree(c);
	PQclear(res);
	*loaded = (size_t)rows;
	return CTLS_OK;
}

static int ctls_import(const struct config *cfg, const char *path)
{
	static const char sql[] =
		"INSERT INTO sources (id, kind, zone, label, secret_group, supervision_s) "
		"VALUES ($1, $2, $3, $4, $5, $6::integer) "
		"ON CONFLICT (id) DO UPDATE SET kind = EXCLUDED.kind, zone = EXCLUDED.zone, "
		"label = EXCLUDED.label, secret_group = EXCLUDED.secret_group, "
		"supervision_s = EXCLUDED.supervision_s, updated_at = now()";
	struct ctls_row *rows = NULL;
	size_t n = 0, loaded = 0;
	PGconn *pg;
	int status;

	status = ctls_read_csv(path, &rows, &n);
	if (status != CTLS_OK)
		return status;
	pg = ctls_pg(cfg);
	if (pg == NULL) {
		ctls_rows_free(rows, n);
		return CTLS_FAIL;
	}
	status = CTLS_FAIL;
	if (!ctls_exec(pg, "BEGIN", 0, NULL))
		goto done;
	for (size_t i = 0; i < n; i++) {
		if (!ctls_exec(pg, sql, COL__COUNT,
			       (const char *const *)rows[i].v)) {
			ctls_exec(pg, "ROLLBACK", 0, NULL);
			goto done;
		}
	}
	if (!ctls_exec(pg, "COMMIT", 0, NULL))
		goto done;
	status = ctls_load(cfg, pg, &loaded);
	if (status == CTLS_OK)
		printf("imported %zu sources from %s; %zu in the registry\n", n,
		       path, loaded);
done:
	PQfinish(pg);
	ctls_rows_free(rows, n);
	return status;
}

static int ctls_load_cmd(const struct config *cfg)
{
	PGconn *pg = ctls_pg(cfg);
	size_t loaded = 0;
	int status;

	if (pg == NULL)
		return CTLS_FAIL;
	status = ctls_load(cfg, pg, &loaded);
	if (status == CTLS_OK)
		printf("loaded %zu sources into Redis\n", loaded);
	PQfinish(pg);
	return status;
}

static int ctls_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static const char *ctls_field(const redisReply *h, const char *name)
{
	for (size_t i = 0; i + 1 < h->elements; i += 2)
		if (strcmp(h->element[i]->str, name) == 0)
			return h->element[i + 1]->str;
	return "";
}

/* The registry from Redis: id kind zone state last_seen label. */
static int ctls_list(const struct config *cfg, bool as_json)
{
	const char *P = cfg->redis_prefix;
	redisContext *c = ctls_redis(cfg);
	redisReply *ids = NULL;
	char **sorted = NULL;
	int status = CTLS_FAIL;

	if (c == NULL)
		return CTLS_FAIL;
	ids = redisCommand(c, "SMEMBERS %ssources", P);
	if (ids == NULL || ids->type != REDIS_REPLY_ARRAY) {
		fprintf(stderr, "alertctl: redis: %s\n",
			ids ? (ids->type == REDIS_REPLY_ERROR ? ids->str : "unexpected reply")
			    : c->errstr);
		goto done;
	}
	sorted = calloc(ids->elements + 1, sizeof(*sorted));
	if (sorted == NULL)
		goto done;
	for (size_t i = 0; i < ids->elements; i++)
		sorted[i] = ids->element[i]->str;
	qsort(sorted, ids->elements, sizeof(*sorted), ctls_cmp);
	for (size_t i = 0; i < ids->elements; i++)
		redisAppendCommand(c, "HGETALL %ssrc:%s", P, sorted[i]);
	if (!as_json)
		printf("%-24s %-12s %-16s %-8s %-24s %s\n", "ID", "KIND", "ZONE",
		       "STATE", "LAST SEEN", "LABEL");
	else
		printf("[");
	for (size_t i = 0; i < ids->elements; i++) {
		redisReply *h = NULL;
		const char *seen;

		if (redisGetReply(c, (void **)&h) != REDIS_OK ||
		    h->type != REDIS_REPLY_ARRAY) {
			fprintf(stderr, "alertctl: redis: %s\n", c->errstr);
			if (h)
				freeReplyObject(h);
			goto done;
		}
		seen = ctls_field(h, "last_seen");
		if (as_json)
			/* ids, kinds and times need no escaping; zone and
			 * label are printed through %s only in the table. */
			printf("%s{\"id\":\"%s\",\"kind\":\"%s\",\"state\":\"%s\",\"last_seen\":%s%s%s}",
			       i ? "," : "", sorted[i], ctls_field(h, "kind"),
			       ctls_field(h, "state"), seen[0] ? "\"" : "null",
			       seen, seen[0] ? "\"" : "");
		else
			printf("%-24s %-12s %-16s %-8s %-24s %s\n", sorted[i],
			       ctls_field(h, "kind"), ctls_field(h, "zone"),
			       ctls_field(h, "state"), seen[0] ? seen : "never",
			       ctls_field(h, "label"));
		freeReplyObject(h);
	}
	if (as_json)
		printf("]\n");
	status = CTLS_OK;
done:
	free(sorted);
	if (ids)
		freeReplyObject(ids);
	redisFree(c);
	return status;
}

int ctl_sources_main(const struct config *cfg, int argc, char **argv)
{
	if (argc == 0)
		return ctls_list(cfg, false);
	if (argc == 1 && strcmp(argv[0], "--json") == 0)
		return ctls_list(cfg, true);
	if (argc == 2 && strcmp(argv[0], "import") == 0)
		return ctls_import(cfg, argv[1]);
	if (argc == 1 && strcmp(argv[0], "load") == 0)
		return ctls_load_cmd(cfg);
	fprintf(stderr, "alertctl: sources: unexpected arguments\n");
	ctls_usage(stderr);
	return CTLS_USAGE;
}
