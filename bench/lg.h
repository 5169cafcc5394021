/* lg: the load generator's shared state (bench/loadgen.c: options, traffic
 * mix, TCP and HTTP device clients, results; bench/lg_peers.c: SSE console
 * subscribers, the Alertmanager client and webhook sink, the raw echo
 * server). Everything runs on one libevent loop. */
#ifndef ALERTD_BENCH_LG_H
#define ALERTD_BENCH_LG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hist.h"

struct event_base;

struct lg_opts {
	const char *mode;       /* tcp | http | am | echo-server | pg-limit |
				   rules | cpu-probe */
	const char *name;       /* label of the RESULT line */
	const char *host;
	int port;
	int conns;              /* device connections */
	int sources;            /* distinct source ids */
	const char *source_prefix; /* source ids are <prefix><n> */
	double rate;            /* events/s over all connections; 0: closed loop */
	int window;             /* in flight per connection (closed loop cap) */
	long count;             /* events to send; 0: until duration */
	double duration_s;      /* longest sending phase */
	double timeout_s;       /* longest wait for answers after sending */
	double panic_pct, dup_pct, fault_pct;
	const char *secret;
	const char *run_id;     /* event id prefix, unique per run */
	bool echo;              /* tcp against the echo server */
	int sse;                /* console subscribers */
	int sse_port;
	const char *sse_token;
	int sink_port;          /* am: the webhook receiver's port */
	double settle_s;        /* wait this long for console/webhook
				   arrivals after the last answer */
	double slow_ms;         /* > 0: print the 100 ms windows whose
				   longest answer took more (SLOW lines) */
	bool panic_trace;       /* print each panic's send time and Ack
				 * latency at the end (PANIC lines) */
	const char *pg;         /* pg-limit: libpq connection string */
	const char *config;     /* rules: alertd's configuration file */
	bool reconnect;         /* tcp: a closed connection is opened again
				 * and its unanswered events sent again
				 * (a restart of alertd under load) */
};

struct lg_stats {
	uint64_t sent, acked, nacked, errors, dup_sent, panics_sent;
	uint64_t outcome[4];    /* new, merged, duplicate, other */
	struct hist ack;        /* device answer latency */
	/* consoles (SSE) or webhooks (am) */
	uint64_t con_seen, con_panics, con_other_runs, con_disconnects;
	struct hist con;        /* ingest-to-console (or POST-to-webhook) */
	struct hist con_panic;  /* the same, panics only (first arrival) */
	struct hist ack_panic;  /* device answer latency, panics only */
	int64_t t_last_panic_ack_ns; /* last panic answered */
	int64_t t_last_normal_ack_ns; /* last heartbeat or fault answered:
				       * the backlog is done */
	int64_t t0_ns;          /* start of sending */
	int64_t t_sent_ns;      /* last event sent */
	int64_t t_answered_ns;  /* last answer */
	int64_t t_last_panic_con_ns, t_last_con_ns, t_last_hb_con_ns;
	/* --reconnect */
	uint64_t reconnects;    /* connections opened again */
	uint64_t resent;        /* unanswered events sent again */
	int64_t max_gap_ns;     /* longest time without an answer while
				 * sending */
};

extern struct lg_opts lg_opt;
extern struct lg_stats lg_st;
extern struct event_base *lg_base;

int64_t lg_now_ns(void);
/* --sse: was the label of this send time seen on a console? */
bool lg_seen_has(uint64_t ts);
/* The traffic mix's random numbers (xorshift, --seed). */
uint64_t lg_rand(void);
double lg_rand01(void);
/* A coordinate from..from + 0.0999 with four decimals, as a device that
 * parsed "38.4123" sends it: the double nearest to that decimal
 * (38.4 + 0.0123 is not). from is in ten-thousandths (384000: 38.4). */
double lg_rand_coord(long from);
/* Parses the send time embedded in an id or label after `marker`
 * ("...:<hex ns>"); 0 when absent. */
int64_t lg_parse_ts(const char *s, const char *marker);

/* lg_peers.c */
bool lg_sse_start(void);
void lg_sse_stop(void);
int lg_echo_server(void);
bool lg_am_start(void);   /* the webhook sink on --sink-port */
void lg_am_stop(void);

/* lg_pg.c: the PostgreSQL limit, alertd's audit batches sent alone; and
 * the rules argument alertd sends the decide script, for the Redis limit */
int lg_pg_limit(void);
int lg_rules(void);
/* bench/lg_probe.c: cpu-probe, how long a fixed piece of work took each
 * 2 ms (wall and CPU), a line a second. */
int lg_cpu_probe(void);

#endif
