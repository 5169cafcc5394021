/* lg_pg: the PostgreSQL limit of the bench (`loadgen pg-limit`), and the
 * rules argument of the Redis limit (`loadgen rules`). pg-limit: alertd's
 * own audit batch statement (audit_batch_statement, daemon/audit.c), its
 * rows made and linked into the chain by alertd's own code (audit_row_new,
 * audit_row_link), sent by one connection, one batch at a time, each
 * committed with synchronous_commit as the server has it. What PostgreSQL
 * alone does with what alertd sends it, and nothing else on the loop.
 *
 * The rows are those of tcp-max (measured on a kept bench database): the
 * events of the load generator's traffic, encoded as the pipeline encodes
 * them (codec_json_encode_event); --panic-pct of them open an incident and
 * carry its opening transition, --dup-pct are redeliveries of an event
 * of the batch before (looked up, not written), the rest merge a
 * heartbeat.
 *
 * Closed loop (--rate 0): the next batch is sent when the last one
 * committed; the RESULT is rows/s. Open loop (--rate R rows/s): a batch of
 * --window rows is due every window/R seconds, and its latency counts from
 * when it was due, like the device clients' (so a slow commit delays the
 * batches behind it, as it delays alertd's). Plain blocking libpq: nothing
 * else runs in this process. */
#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "audit.h"
#include "audit_row.h"
#include "codec_json.h"
#include "config.h"
#include "evt.h"
#include "lg.h"
#include "rules.h"
#include "tzclock.h"

struct lg_pg {
	PGconn *conn;
	int64_t head_seq;
	unsigned char head_hash[AUDIT_HASH_LEN];
	int64_t accept_seq;
	int64_t incident;
	/* the last new event of the batch before: what a redelivery (a
	 * device sending an answered event again) repeats */
	char again_id[72], last_id[72];
	int64_t again_seq;
	uint64_t batches, rows, trigger_linked;
	struct hist lat;
	int backend_pid;         /* its CPU is read from /proc: the server
				  * runs on this machine */
};

/* utime + stime of a process, in clock ticks; -1 if unreadable. */
static long long lg_pg_cpu_ticks(int pid)
{
	char path[64], buf[1024], *p;
	unsigned long long ut, st;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	if (pid <= 0 || !(f = fopen(path, "r")))
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* after the command name in parentheses: state is field 3, utime
	 * field 14, stime field 15 */
	if (!(p = strrchr(buf, ')')) ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
		   &ut, &st) != 2)
		return -1;
	return (long long)(ut + st);
}

/* The head named by a result's columns seq, hex hash; false if none. */
static bool lg_pg_adopt(struct lg_pg *g, const char *seq, const char *hex)
{
	return audit_head_parse(seq, hex, &g->head_seq, g->head_hash);
}

static bool lg_pg_connect(struct lg_pg *g)
{
	PGresult *res;
	bool ok;

	g->conn = PQconnectdb(lg_opt.pg);
	if (PQstatus(g->conn) != CONNECTION_OK) {
		fprintf(stderr, "loadgen: %s", PQerrorMessage(g->conn));
		return false;
	}
	res = PQexec(g->conn, audit_session_statement());
	ok = PQresultStatus(res) == PGRES_COMMAND_OK;
	if (!ok)
		fprintf(stderr, "loadgen: %s: %s", audit_session_statement(),
			PQerrorMessage(g->conn));
	PQclear(res);
	if (!ok)
		return false;
	/* every form of alertd's statement, under alertd's names */
	for (int form = 0; form < 3; form++) {
		struct audit_link l = {.n_again = form == 0, .n_tr = form == 1};
		const char *name, *sql = audit_batch_statement(&l, &name);

		res = PQprepare(g->conn, name, sql, AUDIT_BATCH_PARAMS, NULL);
		ok = PQresultStatus(res) == PGRES_COMMAND_OK;
		if (!ok)
			fprintf(stderr, "loadgen: prepare: %s",
				PQerrorMessage(g->conn));
		PQclear(res);
		if (!ok)
			return false;
	}
	res = PQexec(g->conn, "SELECT chain_seq, encode(hash, 'hex') "
			      "FROM audit_chain_head");
	ok = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
	     lg_pg_adopt(g, PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1));
	if (!ok)
		fprintf(stderr, "loadgen: no audit chain head: %s",
			PQerrorMessage(g->conn));
	PQclear(res);
	if (ok)
		g->backend_pid = PQbackendPID(g->conn);
	return ok;
}

/* One event of the mix, as the pipeline records it; NULL if out of
 * memory. */
static struct audit_row *lg_pg_row(struct lg_pg *g)
{
	double r = lg_rand01() * 100.0;
	unsigned src = (unsigned)(lg_rand() % (uint64_t)lg_opt.sources);
	bool urgent = r >= lg_opt.dup_pct &&
		      r < lg_opt.dup_pct + lg_opt.panic_pct;
	char source[24], label[64], tid[32];
	int64_t now = tzclock_now_ms();
	struct evt ev = {0};
	struct audit_row *row;
	const char *why;
	char *payload;

	if (r < lg_opt.dup_pct && g->again_seq > 0) {
		struct audit_event_row again = {
			.accept_seq = g->again_seq, .event_id = g->again_id,
			.source_id = "bus-0", .source_kind = "bus",
			.type = "heartbeat", .outcome = "merged",
			.received_at_ms = now, .payload_json = "{}",
			.redelivery = true,
		};

		return audit_row_new(&again, NULL, &why);
	}
	snprintf(g->last_id, sizeof(g->last_id), "%s.0.%" PRId64 "-%u%c.%"
		 PRIx64, lg_opt.run_id, g->accept_seq + 1, src,
		 urgent ? 'p' : 'h', (uint64_t)lg_now_ns());
	snprintf(source, sizeof(source), "%s%u", lg_opt.source_prefix, src);
	snprintf(label, sizeof(label), "lg.%s.%c.%" PRIx64, lg_opt.run_id,
		 urgent ? 'p' : 'h', (uint64_t)lg_now_ns());
	ev.event_id = g->last_id;
	ev.source_id = source;
	ev.kind = EVT_KIND_BUS;
	ev.zone = "Konak";
	ev.label = label;
	ev.type = urgent ? EVT_TYPE_PANIC : EVT_TYPE_HEARTBEAT;
	ev.has_location = true;
	ev.lat = lg_rand_coord(384000);
	ev.lon = lg_rand_coord(271000);
	ev.received_at_ms = now;
	if (!(payload = codec_json_encode_event(&ev)))
		return NULL;
	struct audit_event_row er = {
		.accept_seq = ++g->accept_seq,
		.event_id = g->last_id,
		.source_id = source,
		.source_kind = "bus",
		.type = urgent ? "panic" : "heartbeat",
		.outcome = urgent ? "new" : "merged",
		.incident_id = urgent ? ++g->incident : 0,
		.priority = urgent ? 100 : 0,
		.received_at_ms = now,
		.payload_json = payload,
	};
	struct audit_transition_row tr = {
		.transition_id = tid,
		.incident_id = er.incident_id,
		.to_state = "new",
		.actor = "alertd",
		.at_ms = now,
	};
	snprintf(tid, sizeof(tid), "%" PRId64 ":open", er.incident_id);
	row = audit_row_new(&er, urgent ? &tr : NULL, &why);
	free(payload);
	return row;
}

/* The next batch's n rows, encoded (as alertd encodes each row when it is
 * recorded, before its batch is sent). false: out of memory. */
static bool lg_pg_make(struct lg_pg *g, struct audit_list *rows, int n)
{
	struct audit_row *r;

	for (int i = 0; i < n; i++) {
		if (!(r = lg_pg_row(g)))
			return false;
		audit_row_push(rows, r);
	}
	memcpy(g->again_id, g->last_id, sizeof(g->again_id));
	g->again_seq = g->accept_seq;
	return true;
}

static void lg_pg_drop(struct audit_list *rows)
{
	struct audit_row *r;

	while ((r = audit_row_pop(rows)))
		audit_row_free(r);
}

/* Links the rows after the head and sends them, without waiting. */
static bool lg_pg_send(struct lg_pg *g, struct audit_list *rows,
		       struct audit_link *link)
{
	struct audit_params p;
	const char *name;

	if (!audit_row_link(rows, g->head_seq, g->head_hash, tzclock_now_ms(),
			    link))
		return false;
	audit_link_params(link, &p);
	audit_batch_statement(link, &name);
	if (!PQsendQueryPrepared(g->conn, name, AUDIT_BATCH_PARAMS,
				 p.values, p.lengths, p.formats, 0)) {
		fprintf(stderr, "loadgen: batch: %s", PQerrorMessage(g->conn));
		return false;
	}
	return true;
}

/* Waits for the batch in flight to commit; adopts the head it names. */
static bool lg_pg_wait(struct lg_pg *g, size_t n)
{
	PGresult *res;
	bool ok = false;

	while ((res = PQgetResult(g->conn)) != NULL) {
		if (PQresultStatus(res) == PGRES_TUPLES_OK &&
		    PQntuples(res) == 1) {
			if (strcmp(PQgetvalue(res, 0, 0), "t") != 0)
				g->trigger_linked++;
			ok = lg_pg_adopt(g, PQgetvalue(res, 0, 1),
					 PQgetvalue(res, 0, 2));
		} else {
			fprintf(stderr, "loadgen: batch: %s",
				PQerrorMessage(g->conn));
		}
		PQclear(res);
	}
	g->batches++;
	g->rows += n;
	return ok;
}

static void lg_pg_sleep_until(int64_t ns)
{
	struct timespec ts = {ns / 1000000000, ns % 1000000000};

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) != 0)
		;
}

int lg_pg_limit(void)
{
	static struct lg_pg g;
	int n = lg_opt.window;
	double every_ns = lg_opt.rate > 0 ? 1e9 * n / lg_opt.rate : 0;
	struct audit_list rows = {0}, next = {0};
	struct audit_link link = {0};
	int64_t t0, end, due, now;
	long long cpu0 = -1, cpu1;
	bool ok = false;
	double s, cpu_us = -1;

	if (!lg_pg_connect(&g))
		goto out;
	/* accept_seq counts from 1: the run id makes each (event_id,
	 * accept_seq) new. The next batch is encoded while one is in
	 * flight, as alertd encodes rows while its batch commits; the link
	 * (a SHA-256 a row) needs the head the batch before left, so it is
	 * made when the batch is sent, as in alertd. */
	if (!lg_pg_make(&g, &rows, n))
		goto out;
	cpu0 = lg_pg_cpu_ticks(g.backend_pid);
	t0 = lg_now_ns();
	end = t0 + (int64_t)(lg_opt.duration_s * 1e9);
	for (uint64_t k = 0;; k++) {
		due = every_ns > 0 ? t0 + (int64_t)(every_ns * (double)k)
				   : lg_now_ns();
		if (due >= end)
			break;
		if (every_ns > 0)
			lg_pg_sleep_until(due);
		if (!lg_pg_send(&g, &rows, &link) ||
		    !lg_pg_make(&g, &next, n) || !lg_pg_wait(&g, rows.n))
			goto out;
		now = lg_now_ns();
		hist_record(&g.lat, (uint64_t)((now - due) / 1000));
		lg_pg_drop(&rows);
		audit_link_free(&link);
		rows = next;
		next = (struct audit_list){0};
		if (every_ns == 0 && now >= end)
			break;
	}
	ok = true;
	s = (double)(lg_now_ns() - t0) / 1e9;
	cpu1 = lg_pg_cpu_ticks(g.backend_pid);
	if (cpu0 >= 0 && cpu1 >= cpu0 && g.rows > 0)
		cpu_us = 1e6 * (double)(cpu1 - cpu0) /
			 (double)sysconf(_SC_CLK_TCK) / (double)g.rows;
	printf("LIMIT name=%s rate=%.0f tx_rate=%.0f count=%" PRIu64
	       " rows=%" PRIu64 " p50_ms=%.2f p99_ms=%.2f p999_ms=%.2f"
	       " max_ms=%.2f backend_cpu_us_per_row=%.1f backend_busy_pct=%.0f"
	       " trigger_linked=%" PRIu64 "\n",
	       lg_opt.name, (double)g.rows / s, (double)g.batches / s,
	       g.batches, g.rows, hist_quantile(&g.lat, 0.5) / 1000.0,
	       hist_quantile(&g.lat, 0.99) / 1000.0,
	       hist_quantile(&g.lat, 0.999) / 1000.0, g.lat.max_us / 1000.0,
	       cpu_us, cpu_us >= 0 ? cpu_us * (double)g.rows / s / 1e4 : -1,
	       g.trigger_linked);
out:
	lg_pg_drop(&rows);
	lg_pg_drop(&next);
	audit_link_free(&link);
	PQfinish(g.conn);
	return ok ? 0 : 1;
}

/* The decide script's rules argument for a configuration, as alertd
 * builds it (rules_json) at this moment: the Redis limit passes it, so
 * that the script takes the path it takes for alertd (with rules, a
 * heartbeat only updates supervision; without, it would merge into an
 * incident). */
int lg_rules(void)
{
	char err[256] = "";
	struct config *cfg = config_load(lg_opt.config, err, sizeof(err));
	char *text;

	if (cfg == NULL) {
		fprintf(stderr, "loadgen: %s: %s\n", lg_opt.config, err);
		return 1;
	}
	text = rules_json(cfg, tzclock_now_ms(), NULL);
	if (text != NULL)
		printf("%s\n", text);
	free(text);
	config_free(cfg);
	return text != NULL ? 0 : 1;
}
