/* metrics: Prometheus text exposition of a few counters, the latency
 * histograms and registered gauges. One thread: plain integers. */
#include "metrics.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Every error code alertd can answer with; anything else counts as
 * "other" so that a caller cannot grow the label set. */
static const char *const metrics_error_codes[] = {
	"method_not_allowed", "body_too_large", "unsupported_media_type",
	"signature_missing", "signature_malformed", "timestamp_out_of_window",
	"signature_invalid", "malformed_json", "malformed_protobuf",
	"missing_field", "invalid_enum", "invalid_id", "invalid_field",
	"too_many_attrs", "rate_limited", "unavailable", "unauthorized",
	"forbidden", "not_found", "bad_request", "frame_too_large",
	"malformed_frame", "too_many_connections", "shutting_down", "unknown_source",
	"invalid_json", "timeout", "other",
};
#define METRICS_N_ERRORS (sizeof(metrics_error_codes) / sizeof(metrics_error_codes[0]))

/* Upper bounds of the latency buckets, seconds. */
static const double metrics_buckets[] = {
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
	0.25, 0.5, 1, 2.5, 5,
};
#define METRICS_N_BUCKETS (sizeof(metrics_buckets) / sizeof(metrics_buckets[0]))

/* Name and help of each histogram, by enum metrics_hist. */
static const char *const metrics_hist_text[METRICS_HIST__COUNT][2] = {
	[METRICS_INGEST] = {"alertd_ingest_seconds",
			    "Receive-to-answer time of accepted events."},
	[METRICS_DECIDE] = {"alertd_decide_seconds",
			    "Redis decide calls for events, sent to replied "
			    "(one call carries the events of a loop turn)."},
	[METRICS_AUDIT_BATCH] = {"alertd_audit_batch_seconds",
				 "Audit batches, sent to PostgreSQL to "
				 "committed (or failed)."},
};

#define METRICS_MAX_GAUGES 32

static struct {
	uint64_t events[EVT_TYPE__COUNT][EVT_OUTCOME__COUNT];
	uint64_t errors[METRICS_N_ERRORS];
	struct {
		uint64_t buckets[METRICS_N_BUCKETS];
		uint64_t count;
		double sum;
	} hist[METRICS_HIST__COUNT];
	uint64_t tcp_pauses;
	struct {
		const char *name, *help;
		metrics_gauge_fn fn;
		void *arg;
	} gauges[METRICS_MAX_GAUGES];
	size_t n_gauges;
} metrics;

void metrics_count_event(enum evt_type type, enum evt_outcome outcome)
{
	if (type < EVT_TYPE__COUNT && outcome < EVT_OUTCOME__COUNT)
		metrics.events[type][outcome]++;
}

void metrics_count_error(const char *code)
{
	size_t i;

	for (i = 0; i < METRICS_N_ERRORS - 1; i++) {
		if (code != NULL && strcmp(code, metrics_error_codes[i]) == 0)
			break;
	}
	metrics.errors[i]++;
}

void metrics_observe(enum metrics_hist h, double seconds)
{
	if (h >= METRICS_HIST__COUNT)
		return;
	for (size_t i = 0; i < METRICS_N_BUCKETS; i++) {
		if (seconds <= metrics_buckets[i])
			metrics.hist[h].buckets[i]++;
	}
	metrics.hist[h].count++;
	metrics.hist[h].sum += seconds;
}

double metrics_since(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) +
	       (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

void metrics_count_tcp_pause(void)
{
	metrics.tcp_pauses++;
}

void metrics_register_gauge(const char *name, const char *help,
			    metrics_gauge_fn fn, void *arg)
{
	if (metrics.n_gauges == METRICS_MAX_GAUGES)
		return;
	metrics.gauges[metrics.n_gauges].name = name;
	metrics.gauges[metrics.n_gauges].help = help;
	metrics.gauges[metrics.n_gauges].fn = fn;
	metrics.gauges[metrics.n_gauges].arg = arg;
	metrics.n_gauges++;
}

static void metrics_render_hist(FILE *f, enum metrics_hist h)
{
	const char *name = metrics_hist_text[h][0];

	fprintf(f, "# HELP %s %s\n# TYPE %s histogram\n", name,
		metrics_hist_text[h][1], name);
	for (size_t i = 0; i < METRICS_N_BUCKETS; i++)
		fprintf(f, "%s_bucket{le=\"%g\"} %llu\n", name,
			metrics_buckets[i],
			(unsigned long long)metrics.hist[h].buckets[i]);
	fprintf(f, "%s_bucket{le=\"+Inf\"} %llu\n", name,
		(unsigned long long)metrics.hist[h].count);
	fprintf(f, "%s_sum %.6f\n", name, metrics.hist[h].sum);
	fprintf(f, "%s_count %llu\n", name,
		(unsigned long long)metrics.hist[h].count);
}

char *metrics_render(void)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (f == NULL)
		return NULL;
	fputs("# HELP alertd_events_total Accepted events by type and outcome.\n"
	      "# TYPE alertd_events_total counter\n", f);
	for (int t = 0; t < EVT_TYPE__COUNT; t++)
		for (int o = 0; o < EVT_OUTCOME__COUNT; o++)
			fprintf(f, "alertd_events_total{type=\"%s\",outcome=\"%s\"} %llu\n",
				evt_type_name((enum evt_type)t),
				evt_outcome_name((enum evt_outcome)o),
				(unsigned long long)metrics.events[t][o]);
	fputs("# HELP alertd_errors_total Refused requests and events by error code.\n"
	      "# TYPE alertd_errors_total counter\n", f);
	for (size_t i = 0; i < METRICS_N_ERRORS; i++)
		fprintf(f, "alertd_errors_total{code=\"%s\"} %llu\n",
			metrics_error_codes[i],
			(unsigned long long)metrics.errors[i]);
	for (int h = 0; h < METRICS_HIST__COUNT; h++)
		metrics_render_hist(f, (enum metrics_hist)h);
	fprintf(f, "# HELP alertd_tcp_pauses_total Device connections not read for a while because their last answers were all rate_limited.\n"
		"# TYPE alertd_tcp_pauses_total counter\n"
		"alertd_tcp_pauses_total %llu\n",
		(unsigned long long)metrics.tcp_pauses);
	for (size_t i = 0; i < metrics.n_gauges; i++)
		fprintf(f, "# HELP %s %s\n# TYPE %s gauge\n%s %g\n",
			metrics.gauges[i].name, metrics.gauges[i].help,
			metrics.gauges[i].name, metrics.gauges[i].name,
			metrics.gauges[i].fn(metrics.gauges[i].arg));
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

void metrics_reset(void)
{
	size_t n = metrics.n_gauges;

	memset(metrics.events, 0, sizeof(metrics.events));
	memset(metrics.errors, 0, sizeof(metrics.errors));
	memset(metrics.hist, 0, sizeof(metrics.hist));
	metrics.tcp_pauses = 0;
	metrics.n_gauges = n;
}
