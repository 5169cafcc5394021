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

#include "evt.h"
#include "log.h"

/* [device_secrets] "<glob on source.id> = <secret>", in file order. */
struct config_secret {
	char *pattern;
	char *secret;
};

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
	int max_connections;       /* TCP device connections, 4096 */
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
};

/* Parses and validates path. On failure returns NULL and writes
 * "FILE:LINE: [section] name: why" into err. */
struct config *config_load(const char *path, char *err, size_t errlen)
	__attribute__((warn_unused_result));

void config_free(struct config *cfg);

/* The running config. Set once at start-up, swapped by a reload. */
const struct config *config_current(void);
void config_set_current(struct config *cfg); /* frees the previous one */

/* Loads cfg->path again; on success swaps it in (keeping the running value of
 * every non-reloadable setting, each logged) and returns true; on failure
 * logs why, keeps the old config and returns false. */
bool config_reload(void);

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
