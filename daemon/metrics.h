/* metrics: counters and histograms in Prometheus text format. The daemon
 * has one thread, so plain integers suffice. */
#ifndef ALERTD_METRICS_H
#define ALERTD_METRICS_H

#include <time.h>

#include "evt.h"

/* An accepted event (answered 202/Ack). */
void metrics_count_event(enum evt_type type, enum evt_outcome outcome);
/* A refused event or request, by contract error code ("missing_field", ...).
 * Unknown codes count as "other". */
void metrics_count_error(const char *code);
/* The latency histograms, all with the same buckets (seconds). */
enum metrics_hist {
	/* Receive-to-answer time of an accepted event. */
	METRICS_INGEST = 0,
	/* One decide call for events to Redis, sent to replied (it
	 * carries the events of a loop turn). */
	METRICS_DECIDE,
	/* One audit batch, sent to PostgreSQL to its commit's answer. */
	METRICS_AUDIT_BATCH,
	METRICS_HIST__COUNT
};
void metrics_observe(enum metrics_hist h, double seconds);
/* Seconds since t0 (CLOCK_MONOTONIC). */
double metrics_since(const struct timespec *t0);

/* A device connection paused by the tarpit (ingest_tcp). */
void metrics_count_tcp_pause(void);

/* A gauge read at render time. */
typedef double (*metrics_gauge_fn)(void *arg);
void metrics_register_gauge(const char *name, const char *help,
			    metrics_gauge_fn fn, void *arg);

/* The whole exposition. Caller frees. */
char *metrics_render(void);
void metrics_reset(void);

#endif
