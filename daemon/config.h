/* config: the settings table, parse (libinih), validate, reload.
 *
 * Every setting is one row of the table in config.c (section, name, type,
 * default, reloadable, help). A reload builds a new struct and swaps it in
 * only if the whole file is valid; settings that are not reloadable keep
 * their running value and a warning names them. */
#ifndef ALERTD_CONFIG_H
#define ALERTD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "evt.h"
#include "log.h"

/* [device_secrets] "<glob on source.id> = <secret>", in file order. */
struct config_secret {
	char *pattern;
	char *secret;
	bool repeat;    /* the same secret as an earlier entry */
};

struct policy;

struct config {
	char *path;

	/* [server] */
	char *http_listen;         /* "127.0.0.1:8080" */
	char *tcp_listen;          /* "127.0.0.1:7400" */
	enum log_level log_level;
	int max_body_bytes;        /* 16384 */
	int max_frame_bytes;       /* 65536 */
	int max_attrs;             /* 32 */
	int max_id_len;            /* 64 */
	int max_text_len;          /* 256 */
	int replay_window_s;       /* 300 */
	int tcp_max_inflight;      /* per connection, 256 */
	int pipeline_max_inflight; /* in decide/record at once, 1024 */
	int max_connections;       /* TCP device connections, 4096 */
	int tcp_first_event_timeout_s; /* a signed event after connect, 60 */
	int tcp_frame_timeout_s;   /* a frame whole after its first byte, 30 */
	int http_idle_timeout_s;   /* HTTP keep-alive idle, a request whole, 60 */
	int http_max_connections;  /* HTTP connections at once, 4096 */
	int drain_timeout_s;       /* SIGTERM drain limit, 30 */
	int retry_after_s;         /* Retry-After on 503, 2 */
	int sse_ping_s;            /* 15 */
	int sse_max_buffer_bytes;  /* drop a console that lags more, 4 MiB */

	/* [redis] */
	char *redis_host;          /* "127.0.0.1" */
	int redis_port;            /* 6379 */
	int redis_timeout_ms;      /* per-command deadline, 2000 */
	char *redis_prefix;        /* key prefix, "alertd:" */

	/* [postgres] */
	char *pg_conninfo;         /* libpq connection string */
	int pg_timeout_ms;         /* per-batch deadline, 5000 */
	int pg_batch_max;          /* rows per batch, 512 */
	int pg_batch_linger_us;    /* least time between batches, 0 */
	int pg_retry_max_rows;     /* failed rows kept for retry, 100000 */

	/* [spool] (issue 4) */
	char *spool_path;          /* directory; "" disables the spool */
	int spool_max_bytes;       /* 268435456 */

	/* [audit] (issue 4) */
	char *audit_targets_s;     /* "30,60": time-to-ack/resolve targets */
	int audit_query_timeout_ms; /* GET /v1/audit deadline, 30000 */
	char *personal_attrs;      /* "caller_phone,caller_name" */
	char *personal_roles;      /* roles that see them raw: "admin" */
	char *personal_store;      /* raw | hash | mask: what events.payload keeps */
	char *personal_salt;       /* salt of personal_store = hash */

	/* [priority] base per event type, index enum evt_type */
	int priority_base[EVT_TYPE__COUNT];

	/* [dedup] */
	int idempotency_ttl_s;     /* 86400 */

	/* [device_secrets] */
	struct config_secret *secrets;
	size_t n_secrets;

	/* Issue 3: priority rules, dedup rules, flood control, supervision
	 * (docs/prioritisation.md). */
	/* [priority] */
	int priority_kind[EVT_KIND__COUNT]; /* kind_<kind> modifiers, 0 */
	int priority_device_offline;  /* base of device_offline, 20 */
	char *priority_timezone;      /* night window zone, "Europe/Istanbul" */
	int night_start_min;          /* minute of the local day, 22:00 */
	int night_end_min;            /* 06:00 */
	int night_boost;              /* 20 */
	int night_kinds;              /* bit mask of 1 << evt_kind */
	int repeat_step;              /* per repeated event, 5 */
	int repeat_cap;               /* 20 */
	int aging_step;               /* per aging_interval_s unacked, 1 */
	int aging_interval_s;         /* 60 */
	int aging_cap;                /* 30 */
	/* [priority_zones] "<zone> = <modifier>", in file order */
	struct config_zone *zones;
	size_t n_zones;
	/* [dedup] */
	char *merge_classes;          /* "panic+silent_alarm,..." */
	const char *type_class[EVT_TYPE__COUNT]; /* from merge_classes;
						     points into class_names */
	char *class_names;            /* owned storage of the class names */
	int flood_window_s;           /* 10 */
	int flood_soft;               /* events per window: quiet merge, 20 */
	int flood_hard;               /* events per window: 429, 100 */
	/* [sources] */
	int unknown_accept;           /* unknown = accept (1) | reject (0) */
	int supervision_s[EVT_KIND__COUNT]; /* 0: not supervised */
	int supervision_batch;        /* sources per sweep, 500 */
	int supervision_grace_s;      /* no sweep this long after start or a
					 Redis outage, 180 */
	/* [presence] staffing: fewer operators on duty raise an incident */
	int min_on_duty;           /* 0: off */
	/* [operators] zone_mode: an operator with zones sees "only" them, or
	 * every incident with them "first" (and may act on any) */
	char *zone_mode;
	bool zone_first;           /* zone_mode = first */
	char *console_tcp_listen;  /* operator TCP stream, "" = off */

	/* [escalation] and [channels] (policy.h); NULL: no escalation */
	struct policy *policy;
};

struct config_zone {
	char *zone;
	int modifier;
};

/* The modifier of zone (0 when not listed). */
int config_zone_modifier(const struct config *cfg, const char *zone);

/* Parses and validates path. On failure returns NULL and writes
 * "FILE:LINE: [section] name: why" into err. */
struct config *config_load(const char *path, char *err, size_t errlen)
	__attribute__((warn_unused_result));

void config_free(struct config *cfg);

/* The running config. Set once at start-up, swapped by a reload. */
const struct config *config_current(void);
void config_set_current(struct config *cfg); /* frees the previous one */
/* Changes with every config_set_current: what a cache made from the
 * running config keeps to know it is still current. */
uint64_t config_generation(void);

/* Loads cfg->path again; on success swaps it in (keeping the running value of
 * every non-reloadable setting, each logged) and returns true; on failure
 * logs why, keeps the old config and returns false. */
bool config_reload(void);

/* What a valid config may still get dangerously wrong (an empty
 * personal_salt while attrs are hashed, the example's device secret):
 * each as one sentence to fn; the count. Logged at start and reload,
 * printed by --check-config. */
typedef void (*config_warn_fn)(const char *msg, void *arg);
size_t config_warnings(const struct config *cfg, config_warn_fn fn,
		       void *arg);
/* The same, each logged as a warning. */
void config_log_warnings(const struct config *cfg);

/* The limits of the contract as the event model wants them. */
struct evt_limits config_evt_limits(const struct config *cfg);

/* The secret configured for source_id, or NULL. */
const char *config_secret_for(const struct config *cfg, const char *source_id);

/* Splits "host:port" into host (caller frees) and port. */
bool config_split_hostport(const char *s, char **host, int *port)
	__attribute__((warn_unused_result));

/* Writes an annotated listing of every setting with its default (used to
 * check that config/alertd.example.ini documents them all). */
void config_print_defaults(void);

#endif
