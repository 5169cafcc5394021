/* main: start-up, signals, sd_notify and the watchdog, the janitor timer,
 * the two-stage shutdown, and the wiring of the modules. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <systemd/sd-daemon.h>

#include "audit.h"
#include "auth.h"
#include "config.h"
#include "console_tcp.h"
#include "decide.h"
#include "escalate.h"
#include "fanout.h"
#include "follow.h"
#include "http_server.h"
#include "ingest_tcp.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "operators.h"
#include "pg_conn.h"
#include "pipeline.h"
#include "presence.h"
#include "redis_pool.h"
#include "registry.h"
#include "seqfloor.h"
#include "supervise.h"

#define ALERTD_VERSION "0.1.0"

enum daemon_state {
	DAEMON_RUNNING,  /* accepting events */
	DAEMON_DRAINING, /* first SIGTERM: no new work; finishing accepted */
	DAEMON_STOPPED,  /* drained (or timed out): leave the loop */
};

struct daemon {
	struct event_base *base;
	enum daemon_state state;
	int exit_status;
	struct timespec drain_started;
	struct timespec idle_since; /* draining: when nothing was left */
	struct event *sig_hup, *sig_term, *sig_int, *janitor;
	struct redis_pool *redis;
	struct pg_conn *pg_audit, *pg_ops;
	struct pg_conn *pg_query;  /* GET /v1/audit (issue 4) */
	struct decide *decide;
	struct audit *audit;
	struct operators *operators;
	struct fanout *fanout;
	struct follow *follow;  /* the change stream, to the consoles */
	struct notify *notify;     /* escalation channels (issue 5) */
	struct escalate *escalate;
	struct presence *presence;
	struct console_tcp *console_tcp;
	struct pipeline *pipeline;
	struct supervise *supervise;
	struct registry *registry;
	struct seqfloor *seqfloor;
	struct http_server *http;
	struct ingest_tcp *tcp;
	uint64_t watchdog_usec;
};

static double daemon_since(const struct timespec *t)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - t->tv_sec) +
	       (double)(now.tv_nsec - t->tv_nsec) / 1e9;
}

static void daemon_set_state(struct daemon *d, enum daemon_state state)
{
	d->state = state;
	switch (state) {
	case DAEMON_RUNNING:
		break;
	case DAEMON_DRAINING:
		clock_gettime(CLOCK_MONOTONIC, &d->drain_started);
		sd_notify(0, "STOPPING=1\nSTATUS=draining");
		http_server_stop_accepting(d->http);
		ingest_tcp_stop_accepting(d->tcp);
		escalate_drain(d->escalate);
		log_info("shutdown: draining %zu events in flight",
			 pipeline_inflight(d->pipeline));
		break;
	case DAEMON_STOPPED:
		event_base_loopexit(d->base, NULL);
		break;
	}
}

/* Draining ends when every accepted event is answered and every row is
 * written, plus a short grace so that the last answers leave the socket
 * buffers. The grace holds without device connections too: an HTTP answer
 * given in this very loop turn is still in evhttp's output buffer, written
 * only when the loop polls again, and http_server_free would drop it. */
static void daemon_check_drained(struct daemon *d)
{
	size_t inflight = pipeline_inflight(d->pipeline);
	size_t rows = audit_pending(d->audit);

	if (inflight == 0 && rows == 0) {
		if (d->idle_since.tv_sec == 0) {
			clock_gettime(CLOCK_MONOTONIC, &d->idle_since);
			escalate_leave(d->escalate);
		}
		if (daemon_since(&d->idle_since) >= 0.2) {
			log_info("shutdown: drained");
			daemon_set_state(d, DAEMON_STOPPED);
		}
		return;
	}
	d->idle_since.tv_sec = 0;
	if (daemon_since(&d->drain_started) >
	    config_current()->drain_timeout_s) {
		log_error("shutdown: drain timeout; %zu events unanswered, %zu audit rows unwritten",
			  inflight, rows);
		d->exit_status = 1;
		daemon_set_state(d, DAEMON_STOPPED);
	}
}

static void daemon_on_janitor(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *d = arg;
	static unsigned ticks;

	if (d->watchdog_usec != 0)
		sd_notify(0, "WATCHDOG=1");
	/* The janitor runs every 100 ms; the once-a-second work: */
	if (++ticks % 10 == 0) {
		fanout_tick(d->fanout);
		operators_tick(d->operators);
		supervise_tick(d->supervise);
		registry_tick(d->registry);
		presence_tick(d->presence);
		notify_tick(d->notify);
	}
	escalate_tick(d->escalate);
	seqfloor_tick(d->seqfloor);
	if (d->state == DAEMON_DRAINING)
		daemon_check_drained(d);
}

static void daemon_on_sighup(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *d = arg;

	sd_notify(0, "RELOADING=1");
	log_info("config: SIGHUP, reloading %s", config_current()->path);
	if (config_reload()) {
		pipeline_release_held(d->pipeline);
		auth_forget_secrets(config_current());
	}
	sd_notify(0, "READY=1");
}

static void daemon_on_sigterm(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *d = arg;

	if (d->state == DAEMON_RUNNING) {
		log_info("shutdown: signal %d; send it again to exit at once",
			 (int)fd);
		daemon_set_state(d, DAEMON_DRAINING);
		daemon_check_drained(d);
		return;
	}
	log_warn("shutdown: second signal, exiting at once with %zu events in flight",
		 pipeline_inflight(d->pipeline));
	_exit(1);
}

static double daemon_gauge_inflight(void *arg)
{
	return (double)pipeline_inflight(((struct daemon *)arg)->pipeline);
}

static double daemon_gauge_queued_urgent(void *arg)
{
	return (double)pipeline_queued_urgent(((struct daemon *)arg)->pipeline);
}

static double daemon_gauge_queued_normal(void *arg)
{
	return (double)pipeline_queued_normal(((struct daemon *)arg)->pipeline);
}

static double daemon_gauge_audit_pending(void *arg)
{
	return (double)audit_pending(((struct daemon *)arg)->audit);
}

static double daemon_gauge_audit_retry(void *arg)
{
	return (double)audit_retry_backlog(((struct daemon *)arg)->audit);
}

static double daemon_gauge_spool_rows(void *arg)
{
	return (double)audit_spool_rows(((struct daemon *)arg)->audit);
}

static double daemon_gauge_spool_bytes(void *arg)
{
	return (double)audit_spool_bytes(((struct daemon *)arg)->audit);
}

static double daemon_gauge_spool_fsyncs(void *arg)
{
	uint64_t n;

	audit_spool_fsync_seconds(((struct daemon *)arg)->audit, &n);
	return (double)n;
}

static double daemon_gauge_spool_fsync_s(void *arg)
{
	uint64_t n;

	return audit_spool_fsync_seconds(((struct daemon *)arg)->audit, &n);
}

static double daemon_gauge_redis_up(void *arg)
{
	return redis_pool_ready(((struct daemon *)arg)->redis) ? 1 : 0;
}

static double daemon_gauge_pg_up(void *arg)
{
	return audit_usable(((struct daemon *)arg)->audit) ? 1 : 0;
}

static double daemon_gauge_streams(void *arg)
{
	return (double)fanout_clients(((struct daemon *)arg)->fanout);
}

static double daemon_gauge_tcp(void *arg)
{
	return (double)ingest_tcp_connections(((struct daemon *)arg)->tcp);
}

static double daemon_gauge_offline_opened(void *arg)
{
	return (double)supervise_opened(((struct daemon *)arg)->supervise);
}

static double daemon_gauge_aged(void *arg)
{
	return (double)supervise_aged(((struct daemon *)arg)->supervise);
}

static double daemon_gauge_audit_trigger_linked(void *arg)
{
	return (double)audit_trigger_linked(((struct daemon *)arg)->audit);
}

static void daemon_register_gauges(struct daemon *d)
{
	metrics_register_gauge("alertd_device_offline_opened",
			       "device_offline incidents opened by this process's sweeps.",
			       daemon_gauge_offline_opened, d);
	metrics_register_gauge("alertd_aging_changes",
			       "Incident priority changes made by aging in this process.",
			       daemon_gauge_aged, d);
	metrics_register_gauge("alertd_events_in_flight",
			       "Events received and not yet answered.",
			       daemon_gauge_inflight, d);
	metrics_register_gauge("alertd_pipeline_queued_urgent",
			       "Urgent events (panic, silent_alarm, call/callback_request) waiting for a pipeline slot.",
			       daemon_gauge_queued_urgent, d);
	metrics_register_gauge("alertd_pipeline_queued_normal",
			       "Other events waiting for a pipeline slot.",
			       daemon_gauge_queued_normal, d);
	metrics_register_gauge("alertd_audit_pending_rows",
			       "Audit rows queued or in flight to PostgreSQL.",
			       daemon_gauge_audit_pending, d);
	metrics_register_gauge("alertd_audit_retry_rows",
			       "Audit rows of failed batches waiting to be written again.",
			       daemon_gauge_audit_retry, d);
	metrics_register_gauge("alertd_audit_trigger_linked_batches",
			       "Audit batches the chain trigger linked instead of alertd, because the chain head had moved (another writer) or rows were stored already (a counter).",
			       daemon_gauge_audit_trigger_linked, d);
	metrics_register_gauge("alertd_spool_rows",
			       "Audit rows in the local spool file (not yet emptied after replay).",
			       daemon_gauge_spool_rows, d);
	metrics_register_gauge("alertd_spool_bytes",
			       "Size of the local spool file.",
			       daemon_gauge_spool_bytes, d);
	metrics_register_gauge("alertd_spool_fsyncs",
			       "Group fsyncs of the spool since start (a counter).",
			       daemon_gauge_spool_fsyncs, d);
	metrics_register_gauge("alertd_spool_fsync_seconds",
			       "Time spent in spool group fsyncs since start (a counter).",
			       daemon_gauge_spool_fsync_s, d);
	metrics_register_gauge("alertd_redis_up", "1 when Redis is connected.",
			       daemon_gauge_redis_up, d);
	metrics_register_gauge("alertd_postgres_up",
			       "1 when PostgreSQL is connected.",
			       daemon_gauge_pg_up, d);
	metrics_register_gauge("alertd_console_streams",
			       "Connected operator streams.",
			       daemon_gauge_streams, d);
	metrics_register_gauge("alertd_tcp_connections",
			       "Open device TCP connections.", daemon_gauge_tcp,
			       d);
}

/* Builds every module; die() on failure (start-up only). */
static void daemon_build(struct daemon *d, const struct config *cfg)
{
	struct http_deps deps;

	d->redis = redis_pool_new(d->base, cfg->redis_host, cfg->redis_port,
				  cfg->redis_timeout_ms);
	d->pg_audit = pg_conn_new(d->base, cfg->pg_conninfo, "audit");
	d->pg_ops = pg_conn_new(d->base, cfg->pg_conninfo, "operators");
	d->pg_query = pg_conn_new(d->base, cfg->pg_conninfo, "audit-query");
	if (d->redis == NULL || d->pg_audit == NULL || d->pg_ops == NULL ||
	    d->pg_query == NULL)
		die(1, "out of memory at start-up");
	d->decide = decide_new(d->redis);
	d->audit = audit_new(d->base, d->pg_audit);
	d->operators = operators_new(d->base, d->pg_ops);
	d->fanout = fanout_new(d->base, d->decide);
	if (d->decide == NULL || d->audit == NULL || d->operators == NULL ||
	    d->fanout == NULL)
		die(1, "out of memory at start-up");
	d->follow = follow_new(d->base, cfg->redis_host, cfg->redis_port,
			       cfg->redis_timeout_ms, d->fanout);
	if (d->follow == NULL)
		die(1, "out of memory at start-up");
	operators_set_on_change(d->operators, fanout_on_operators_changed,
				d->fanout);
	d->notify = notify_new(d->base, d->pg_ops);
	d->escalate = escalate_new(d->decide, d->audit, d->notify);
	if (d->notify == NULL || d->escalate == NULL)
		die(1, "out of memory at start-up");
	d->pipeline = pipeline_new(d->decide, d->audit);
	d->supervise = supervise_new(d->decide, d->audit);
	d->registry = registry_new(d->redis, d->pg_ops);
	d->seqfloor = seqfloor_new(d->decide, d->pg_ops);
	if (d->pipeline == NULL || d->supervise == NULL || d->registry == NULL ||
	    d->seqfloor == NULL)
		die(1, "out of memory at start-up");
	d->presence = presence_new(d->decide, d->pipeline, d->audit, d->fanout);
	d->console_tcp = console_tcp_new(d->base, d->decide, d->operators,
					 d->fanout);
	if (d->presence == NULL || d->console_tcp == NULL)
		die(1, "out of memory at start-up");
	if (!console_tcp_listen(d->console_tcp, cfg->console_tcp_listen))
		die(1, "cannot listen for operator consoles on %s",
		    cfg->console_tcp_listen);
	deps = (struct http_deps){
		.pipeline = d->pipeline,
		.decide = d->decide,
		.fanout = d->fanout,
		.operators = d->operators,
		.redis = d->redis,
		.pg = d->pg_ops,
		.audit = d->audit,
		.notify = d->notify,
		.pg_query = d->pg_query,
	};
	d->http = http_server_new(d->base, &deps);
	d->tcp = ingest_tcp_new(d->base, d->pipeline);
	if (d->http == NULL || d->tcp == NULL)
		die(1, "out of memory at start-up");
	if (!http_server_listen(d->http, cfg->http_listen) ||
	    !ingest_tcp_listen(d->tcp, cfg->tcp_listen))
		die(1, "cannot listen; is another alertd running?");
	daemon_register_gauges(d);
}

static void main_print_warning(const char *msg, void *arg)
{
	(void)arg;
	fprintf(stderr, "alertd: warning: %s\n", msg);
}

static void daemon_add_signal(struct daemon *d, struct event **ev, int sig,
			      event_callback_fn cb)
{
	*ev = evsignal_new(d->base, sig, cb, d);
	if (*ev == NULL || event_add(*ev, NULL) != 0)
		die(1, "cannot watch signal %d", sig);
}

static void daemon_start(struct daemon *d)
{
	struct timeval tick = {0, 100000};

	daemon_add_signal(d, &d->sig_hup, SIGHUP, daemon_on_sighup);
	daemon_add_signal(d, &d->sig_term, SIGTERM, daemon_on_sigterm);
	daemon_add_signal(d, &d->sig_int, SIGINT, daemon_on_sigterm);
	d->janitor = event_new(d->base, -1, EV_PERSIST, daemon_on_janitor, d);
	if (d->janitor == NULL || event_add(d->janitor, &tick) != 0)
		die(1, "cannot start the janitor timer");
	if (sd_watchdog_enabled(0, &d->watchdog_usec) <= 0)
		d->watchdog_usec = 0;
	redis_pool_start(d->redis);
	follow_start(d->follow);
	pg_conn_start(d->pg_audit);
	pg_conn_start(d->pg_ops);
	pg_conn_start(d->pg_query);
	sd_notify(0, "READY=1\nSTATUS=running");
	log_info("alertd %s running (pid %d)", ALERTD_VERSION, (int)getpid());
}

/* Connections first, so that their pending callbacks still find the modules
 * they call alive; then the modules. The audit before all: the rows the
 * drain gave up on (a batch stuck in flight) go to the spool and their
 * senders are answered while the pipeline and the HTTP server are alive;
 * a pipeline slot they free may start a queued event, which goes to the
 * pool and is answered when it is freed. */
static void daemon_free(struct daemon *d)
{
	audit_stop(d->audit);
	ingest_tcp_free(d->tcp);
	if (d->decide != NULL)
		decide_flush(d->decide); /* into the pool, answered just below */
	redis_pool_free(d->redis);
	follow_free(d->follow);
	pg_conn_free(d->pg_audit);
	pg_conn_free(d->pg_ops);
	pg_conn_free(d->pg_query);
	notify_free(d->notify);
	escalate_free(d->escalate);
	fanout_free(d->fanout);
	http_server_free(d->http);
	pipeline_free(d->pipeline);
	supervise_free(d->supervise);
	registry_free(d->registry);
	seqfloor_free(d->seqfloor);
	presence_free(d->presence);
	operators_free(d->operators);
	console_tcp_free(d->console_tcp);
	audit_free(d->audit);
	decide_free(d->decide);
	event_free(d->sig_hup);
	event_free(d->sig_term);
	event_free(d->sig_int);
	event_free(d->janitor);
	event_base_free(d->base);
}

static void usage(FILE *out)
{
	fprintf(out,
		"usage: alertd [-c FILE]          run with FILE (default config/alertd.dev.ini)\n"
		"       alertd --check-config FILE  validate FILE and exit (0 valid, 2 invalid)\n"
		"       alertd --print-defaults     every setting with its default\n"
		"       alertd --version\n");
}

/* The one event loop. The epoll change list folds the event_del and
 * event_add of one fd within a loop turn (hiredis re-arms its read event
 * after every reply) into at most one epoll_ctl at the next wait. It is
 * unsafe only for fds cloned with dup(), which alertd never hands to
 * libevent (docs/BENCHMARKS.md, optimisation 17). */
static struct event_base *main_event_base(void)
{
	struct event_config *cfg = event_config_new();
	struct event_base *base;

	if (cfg == NULL)
		return NULL;
	event_config_set_flag(cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
	base = event_base_new_with_config(cfg);
	event_config_free(cfg);
	return base;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'},
		{"check-config", required_argument, NULL, 'C'},
		{"print-defaults", no_argument, NULL, 'P'},
		{"version", no_argument, NULL, 'V'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *path = "config/alertd.dev.ini";
	struct daemon d = {.state = DAEMON_RUNNING};
	struct config *cfg;
	char err[512];
	bool check = false;
	int c;

	/* libpq sends PGTZ as the sessions' TimeZone: the audit chain's
	 * trigger computes a row's canonical text (timestamps in UTC) inline
	 * only in a UTC session (migration 006), and nothing alertd reads
	 * from PostgreSQL depends on the session's zone. */
	if (setenv("PGTZ", "UTC", 1) != 0) {
		fprintf(stderr, "alertd: setenv PGTZ: %s\n", strerror(errno));
		return 1;
	}
	while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			path = optarg;
			break;
		case 'C':
			path = optarg;
			check = true;
			break;
		case 'P':
			config_print_defaults();
			return 0;
		case 'V':
			printf("alertd %s\n", ALERTD_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	cfg = config_load(path, err, sizeof(err));
	if (cfg == NULL) {
		fprintf(stderr, "alertd: invalid configuration: %s\n", err);
		return 2;
	}
	if (check) {
		config_warnings(cfg, main_print_warning, NULL);
		printf("%s: valid\n", path);
		config_free(cfg);
		return 0;
	}
	config_set_current(cfg);
	config_log_warnings(cfg);
	signal(SIGPIPE, SIG_IGN);
	log_hook_libevent();
	d.base = main_event_base();
	if (d.base == NULL)
		die(1, "cannot create the event loop");
	daemon_build(&d, cfg);
	daemon_start(&d);
	event_base_dispatch(d.base);
	daemon_free(&d);
	log_info("alertd stopped");
	config_set_current(NULL);
	return d.exit_status;
}
