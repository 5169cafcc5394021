/* metrics: counters and histograms in Prometheus text format. The daemon
 * has one thread, so plain integers suffice. */
#ifndef ALERTD_METRICS_H
#define ALERTD_METRICS_H

#include "evt.h"

/* An accepted event (answered 202/Ack). */
void metrics_count_event(enum evt_type type, enum evt_outcome outcome);
/* A refused event or request, by contract error code ("missing_field", ...).
 * Unknown codes count as "other". */
void metrics_count_error(const char *code);
/* Receive-to-answer time of an accepted event, in seconds. */
void metrics_observe_ingest(double seconds);

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
