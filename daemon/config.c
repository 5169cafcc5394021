/* config: one table of settings; libinih does the INI syntax. */
#include "config.h"
#include "policy.h"

#include <errno.h>
#include <fnmatch.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <ini.h>
#include <libpq-fe.h>

enum config_type {
	CFG_STR,      /* char * */
	CFG_INT,      /* int within [min, max] */
	CFG_LOGLEVEL, /* enum log_level */
	CFG_HOSTPORT, /* char *, "host:port" */
	CFG_HHMM,     /* int, minute of the day from "HH:MM" */
	CFG_KINDS,    /* int, bit mask 1 << evt_kind from "bus,stop" */
	CFG_POLICY,   /* int, "accept" 1 / "reject" 0 */
};

struct config_setting {
	const char *section;
	const char *name;
	enum config_type type;
	const char *def;
	bool reloadable;
	size_t offset;
	int min, max;
};

#define OFF(field) offsetof(struct config, field)
#define PRIO(i) (OFF(priority_base) + (i) * sizeof(int))
#define KMOD(i) (OFF(priority_kind) + (i) * sizeof(int))
#define SUPV(i) (OFF(supervision_s) + (i) * sizeof(int))

/* Every setting: section, name, type, default, reloadable, where, range.
 * config/alertd.example.ini documents each with the same defaults. */
static const struct config_setting config_table[] = {
	{"server", "http_listen", CFG_HOSTPORT, "127.0.0.1:8080", false, OFF(http_listen), 0, 0},
	{"server", "tcp_listen", CFG_HOSTPORT, "127.0.0.1:7400", false, OFF(tcp_listen), 0, 0},
	{"server", "log_level", CFG_LOGLEVEL, "info", true, OFF(log_level), 0, 0},
	{"server", "max_body_bytes", CFG_INT, "16384", true, OFF(max_body_bytes), 256, 1048576},
	{"server", "max_frame_bytes", CFG_INT, "65536", true, OFF(max_frame_bytes), 256, 16777216},
	{"server", "max_attrs", CFG_INT, "32", true, OFF(max_attrs), 0, 1024},
	{"server", "max_id_len", CFG_INT, "64", true, OFF(max_id_len), 8, 256},
	{"server", "max_text_len", CFG_INT, "256", true, OFF(max_text_len), 16, 4096},
	{"server", "replay_window_s", CFG_INT, "300", true, OFF(replay_window_s), 1, 86400},
	{"server", "tcp_max_inflight", CFG_INT, "256", true, OFF(tcp_max_inflight), 1, 65536},
	{"server", "pipeline_max_inflight", CFG_INT, "1024", true, OFF(pipeline_max_inflight), 1, 65536},
	{"server", "max_connections", CFG_INT, "4096", true, OFF(max_connections), 1, 1000000},
	{"server", "tcp_first_event_timeout_s", CFG_INT, "60", true, OFF(tcp_first_event_timeout_s), 1, 86400},
	{"server", "tcp_frame_timeout_s", CFG_INT, "30", true, OFF(tcp_frame_timeout_s), 1, 3600},
	{"server", "http_idle_timeout_s", CFG_INT, "60", true, OFF(http_idle_timeout_s), 1, 86400},
	{"server", "http_max_connections", CFG_INT, "4096", true, OFF(http_max_connections), 1, 1000000},
	{"server", "drain_timeout_s", CFG_INT, "30", true, OFF(drain_timeout_s), 1, 3600},
	{"server", "retry_after_s", CFG_INT, "2", true, OFF(retry_after_s), 1, 3600},
	{"server", "sse_ping_s", CFG_INT, "15", true, OFF(sse_ping_s), 1, 3600},
	{"server", "sse_max_buffer_bytes", CFG_INT, "4194304", true, OFF(sse_max_buffer_bytes), 65536, 1073741824},
	{"server", "console_tcp_listen", CFG_STR, "", false, OFF(console_tcp_listen), 0, 0},
	{"presence", "min_on_duty", CFG_INT, "0", true, OFF(min_on_duty), 0, 1000},
	{"operators", "zone_mode", CFG_STR, "only", true, OFF(zone_mode), 0, 0},
	{"redis", "host", CFG_STR, "127.0.0.1", false, OFF(redis_host), 0, 0},
	{"redis", "port", CFG_INT, "6379", false, OFF(redis_port), 1, 65535},
	{"redis", "timeout_ms", CFG_INT, "2000", false, OFF(redis_timeout_ms), 10, 600000},
	{"redis", "prefix", CFG_STR, "alertd:", false, OFF(redis_prefix), 0, 0},
	{"postgres", "conninfo", CFG_STR, "host=127.0.0.1 port=5432 dbname=alertd user=alertd", false, OFF(pg_conninfo), 0, 0},
	{"postgres", "timeout_ms", CFG_INT, "5000", true, OFF(pg_timeout_ms), 10, 600000},
	{"postgres", "batch_max", CFG_INT, "512", true, OFF(pg_batch_max), 1, 10000},
	{"postgres", "batch_linger_us", CFG_INT, "0", true, OFF(pg_batch_linger_us), 0, 1000000},
	{"postgres", "retry_max_rows", CFG_INT, "100000", false, OFF(pg_retry_max_rows), 0, 10000000},
	{"spool", "path", CFG_STR, "/var/lib/alertd/spool", false, OFF(spool_path), 0, 0},
	{"spool", "max_bytes", CFG_INT, "268435456", true, OFF(spool_max_bytes), 65536, 2147483647},
	{"audit", "targets_s", CFG_STR, "30,60", true, OFF(audit_targets_s), 0, 0},
	{"audit", "query_timeout_ms", CFG_INT, "30000", true, OFF(audit_query_timeout_ms), 100, 600000},
	{"audit", "personal_attrs", CFG_STR, "caller_phone,caller_name", true, OFF(personal_attrs), 0, 0},
	{"audit", "personal_roles", CFG_STR, "admin", true, OFF(personal_roles), 0, 0},
	{"audit", "personal_store", CFG_STR, "hash", true, OFF(personal_store), 0, 0},
	{"audit", "personal_salt", CFG_STR, "", true, OFF(personal_salt), 0, 0},
	{"priority", "panic", CFG_INT, "100", true, PRIO(EVT_TYPE_PANIC), 0, 999},
	{"priority", "silent_alarm", CFG_INT, "100", true, PRIO(EVT_TYPE_SILENT_ALARM), 0, 999},
	{"priority", "call_request", CFG_INT, "70", true, PRIO(EVT_TYPE_CALL_REQUEST), 0, 999},
	{"priority", "callback_request", CFG_INT, "60", true, PRIO(EVT_TYPE_CALLBACK_REQUEST), 0, 999},
	{"priority", "fault", CFG_INT, "30", true, PRIO(EVT_TYPE_FAULT), 0, 999},
	{"priority", "heartbeat", CFG_INT, "10", true, PRIO(EVT_TYPE_HEARTBEAT), 0, 999},
	{"priority", "test", CFG_INT, "5", true, PRIO(EVT_TYPE_TEST), 0, 999},
	{"dedup", "idempotency_ttl_s", CFG_INT, "86400", true, OFF(idempotency_ttl_s), 1, 31536000},
	/* Issue 3: priority rules, dedup rules, flood control, supervision. */
	{"priority", "device_offline", CFG_INT, "20", true, OFF(priority_device_offline), 0, 999},
	{"priority", "kind_bus", CFG_INT, "0", true, KMOD(EVT_KIND_BUS), -999, 999},
	{"priority", "kind_ferry", CFG_INT, "0", true, KMOD(EVT_KIND_FERRY), -999, 999},
	{"priority", "kind_stop", CFG_INT, "0", true, KMOD(EVT_KIND_STOP), -999, 999},
	{"priority", "kind_park", CFG_INT, "0", true, KMOD(EVT_KIND_PARK), -999, 999},
	{"priority", "kind_support_line", CFG_INT, "0", true, KMOD(EVT_KIND_SUPPORT_LINE), -999, 999},
	{"priority", "kind_other", CFG_INT, "0", true, KMOD(EVT_KIND_OTHER), -999, 999},
	{"priority", "timezone", CFG_STR, "Europe/Istanbul", true, OFF(priority_timezone), 0, 0},
	{"priority", "night_start", CFG_HHMM, "22:00", true, OFF(night_start_min), 0, 0},
	{"priority", "night_end", CFG_HHMM, "06:00", true, OFF(night_end_min), 0, 0},
	{"priority", "night_boost", CFG_INT, "20", true, OFF(night_boost), 0, 999},
	{"priority", "night_kinds", CFG_KINDS, "bus,stop,park", true, OFF(night_kinds), 0, 0},
	{"priority", "repeat_step", CFG_INT, "5", true, OFF(repeat_step), 0, 999},
	{"priority", "repeat_cap", CFG_INT, "20", true, OFF(repeat_cap), 0, 999},
	{"priority", "aging_step", CFG_INT, "1", true, OFF(aging_step), 0, 999},
	{"priority", "aging_interval_s", CFG_INT, "60", true, OFF(aging_interval_s), 1, 86400},
	{"priority", "aging_cap", CFG_INT, "30", true, OFF(aging_cap), 0, 999},
	{"dedup", "merge_classes", CFG_STR, "panic+silent_alarm,call_request+callback_request", true, OFF(merge_classes), 0, 0},
	{"dedup", "flood_window_s", CFG_INT, "10", true, OFF(flood_window_s), 1, 3600},
	{"dedup", "flood_soft", CFG_INT, "20", true, OFF(flood_soft), 1, 1000000},
	{"dedup", "flood_hard", CFG_INT, "100", true, OFF(flood_hard), 1, 1000000},
	{"sources", "unknown", CFG_POLICY, "reject", true, OFF(unknown_accept), 0, 0},
	{"sources", "supervision_bus_s", CFG_INT, "180", true, SUPV(EVT_KIND_BUS), 0, 604800},
	{"sources", "supervision_ferry_s", CFG_INT, "180", true, SUPV(EVT_KIND_FERRY), 0, 604800},
	{"sources", "supervision_stop_s", CFG_INT, "900", true, SUPV(EVT_KIND_STOP), 0, 604800},
	{"sources", "supervision_park_s", CFG_INT, "900", true, SUPV(EVT_KIND_PARK), 0, 604800},
	{"sources", "supervision_support_line_s", CFG_INT, "0", true, SUPV(EVT_KIND_SUPPORT_LINE), 0, 604800},
	{"sources", "supervision_other_s", CFG_INT, "0", true, SUPV(EVT_KIND_OTHER), 0, 604800},
	{"sources", "supervision_batch", CFG_INT, "500", true, OFF(supervision_batch), 1, 100000},
	{"sources", "supervision_grace_s", CFG_INT, "180", true, OFF(supervision_grace_s), 0, 86400},
};

#define CONFIG_N_SETTINGS (sizeof(config_table) / sizeof(config_table[0]))

static struct config *config_running;

/* ---- Issue 3: rule-valued settings, zones and merge classes ---- */

static bool config_rules_set(enum config_type type, int *field,
			     const char *value, char *why, size_t whylen)
{
	if (type == CFG_HHMM) {
		int h, m, n = 0;

		if (sscanf(value, "%2d:%2d%n", &h, &m, &n) != 2 ||
		    value[n] != '\0' || h < 0 || h > 23 || m < 0 || m > 59) {
			snprintf(why, whylen, "expected HH:MM, got \"%s\"",
				 value);
			return false;
		}
		*field = h * 60 + m;
		return true;
	}
	if (type == CFG_POLICY) {
		if (strcmp(value, "accept") == 0)
			*field = 1;
		else if (strcmp(value, "reject") == 0)
			*field = 0;
		else {
			snprintf(why, whylen,
				 "expected accept or reject, got \"%s\"", value);
			return false;
		}
		return true;
	}
	/* CFG_KINDS: comma-separated kind names, possibly empty. */
	int mask = 0;
	const char *p = value;

	while (*p != '\0') {
		char name[32];
		size_t n = strcspn(p, ", ");
		enum evt_kind k;

		if (n > 0) {
			if (n >= sizeof(name))
				goto bad;
			memcpy(name, p, n);
			name[n] = '\0';
			if (!evt_kind_parse(name, &k))
				goto bad;
			mask |= 1 << k;
		}
		p += n;
		while (*p == ',' || *p == ' ')
			p++;
	}
	*field = mask;
	return true;
bad:
	snprintf(why, whylen, "expected source kinds separated by commas, got \"%s\"",
		 value);
	return false;
}

static bool config_add_zone(struct config *cfg, const char *zone,
			    const char *value, char *why, size_t whylen)
{
	struct config_zone *grown;
	char *end;
	long v;

	errno = 0;
	v = strtol(value, &end, 10);
	if (errno != 0 || end == value || *end != '\0' || v < -999 ||
	    v > 999) {
		snprintf(why, whylen, "expected an integer in -999..999, got \"%s\"",
			 value);
		return false;
	}
	grown = realloc(cfg->zones, (cfg->n_zones + 1) * sizeof(*grown));
	if (grown == NULL)
		goto oom;
	cfg->zones = grown;
	grown[cfg->n_zones].zone = strdup(zone);
	grown[cfg->n_zones].modifier = (int)v;
	cfg->n_zones++;
	if (grown[cfg->n_zones - 1].zone == NULL)
		goto oom;
	return true;
oom:
	snprintf(why, whylen, "out of memory");
	return false;
}

int config_zone_modifier(const struct config *cfg, const char *zone)
{
	if (zone == NULL)
		return 0;
	for (size_t i = 0; i < cfg->n_zones; i++)
		if (strcmp(cfg->zones[i].zone, zone) == 0)
			return cfg->zones[i].modifier;
	return 0;
}

/* [dedup] merge_classes: groups of types joined by '+', separated by ','.
 * A group's class name is its text ("panic+silent_alarm"); a type in no
 * group is a class of its own, named after the type. */
static bool config_merge_classes(struct config *cfg, char *why, size_t whylen)
{
	const char *text = cfg->merge_classes;
	size_t len = strlen(text);
	char *store;
	size_t at = 0;

	/* Room for the groups' text and every type name. */
	store = malloc(len + 1 + EVT_TYPE__COUNT * 24);
	if (store == NULL) {
		snprintf(why, whylen, "out of memory");
		return false;
	}
	for (int t = 0; t < EVT_TYPE__COUNT; t++)
		cfg->type_class[t] = NULL;
	for (const char *p = text; *p != '\0';) {
		size_t glen = strcspn(p, ", ");
		char *group = store + at;

		if (glen > 0) {
			memcpy(group, p, glen);
			group[glen] = '\0';
			at += glen + 1;
			for (const char *q = group; *q != '\0';) {
				size_t tlen = strcspn(q, "+");
				char name[32];
				enum evt_type t;

				if (tlen == 0 || tlen >= sizeof(name))
					goto bad;
				memcpy(name, q, tlen);
				name[tlen] = '\0';
				if (!evt_type_parse(name, &t) ||
				    cfg->type_class[t] != NULL)
					goto bad;
				cfg->type_class[t] = group;
				q += tlen;
				if (*q == '+')
					q++;
			}
		}
		p += glen;
		while (*p == ',' || *p == ' ')
			p++;
	}
	for (int t = 0; t < EVT_TYPE__COUNT; t++) {
		if (cfg->type_class[t] != NULL)
			continue;
		strcpy(store + at, evt_type_name((enum evt_type)t));
		cfg->type_class[t] = store + at;
		at += strlen(store + at) + 1;
	}
	free(cfg->class_names);
	cfg->class_names = store;
	return true;
bad:
	free(store);
	for (int t = 0; t < EVT_TYPE__COUNT; t++)
		cfg->type_class[t] = NULL;
	snprintf(why, whylen,
		 "expected groups of event types joined by '+' and separated by ',' (each type once), got \"%s\"",
		 text);
	return false;
}

/* Checks what one setting cannot check alone. */
static bool config_finish_rules(struct config *cfg, char *err, size_t errlen)
{
	char why[200];
	const char *tz = cfg->priority_timezone;
	char path[300];

	if (!config_merge_classes(cfg, why, sizeof(why))) {
		snprintf(err, errlen, "[dedup] merge_classes: %s", why);
		return false;
	}
	if (cfg->flood_hard < cfg->flood_soft) {
		snprintf(err, errlen,
			 "[dedup] flood_hard: %d is below flood_soft %d",
			 cfg->flood_hard, cfg->flood_soft);
		return false;
	}
	/* A tz database name: no "..", found under /usr/share/zoneinfo. */
	snprintf(path, sizeof(path), "/usr/share/zoneinfo/%s", tz);
	if (tz[0] == '\0' || tz[0] == '/' || strstr(tz, "..") != NULL ||
	    access(path, R_OK) != 0) {
		snprintf(err, errlen,
			 "[priority] timezone: \"%s\" is not a time zone of the tz database",
			 tz);
		return false;
	}
	return true;
}

struct config_parse {
	struct config *cfg;
	char *err;
	size_t errlen;
};

static void *config_field(struct config *cfg, const struct config_setting *s)
{
	return (char *)cfg + s->offset;
}

/* Stores value into the field of s; on failure writes why into why. */
static bool config_set(struct config *cfg, const struct config_setting *s,
		       const char *value, char *why, size_t whylen)
{
	void *field = config_field(cfg, s);

	switch (s->type) {
	case CFG_HOSTPORT: {
		char *host;
		int port;

		if (!config_split_hostport(value, &host, &port)) {
			snprintf(why, whylen, "expected host:port, got \"%s\"",
				 value);
			return false;
		}
		free(host);
	}
		/* fall through */
	case CFG_STR: {
		char *copy = strdup(value);

		if (copy == NULL) {
			snprintf(why, whylen, "out of memory");
			return false;
		}
		free(*(char **)field);
		*(char **)field = copy;
		return true;
	}
	case CFG_INT: {
		char *end;
		long v;

		errno = 0;
		v = strtol(value, &end, 10);
		if (errno != 0 || end == value || *end != '\0') {
			snprintf(why, whylen, "expected an integer, got \"%s\"",
				 value);
			return false;
		}
		if (v < s->min || v > s->max) {
			snprintf(why, whylen, "%ld is outside %d..%d", v,
				 s->min, s->max);
			return false;
		}
		*(int *)field = (int)v;
		return true;
	}
	case CFG_HHMM:
	case CFG_KINDS:
	case CFG_POLICY:
		return config_rules_set(s->type, (int *)field, value, why,
					whylen);
	case CFG_LOGLEVEL:
		if (!log_level_parse(value, (enum log_level *)field)) {
			snprintf(why, whylen,
				 "expected debug, info, warn or error, got \"%s\"",
				 value);
			return false;
		}
		return true;
	}
	snprintf(why, whylen, "unknown setting type");
	return false;
}

static bool config_add_secret(struct config *cfg, const char *pattern,
			      const char *secret, char *why, size_t whylen)
{
	struct config_secret *grown;

	if (secret[0] == '\0') {
		snprintf(why, whylen, "empty secret");
		return false;
	}
	grown = realloc(cfg->secrets, (cfg->n_secrets + 1) * sizeof(*grown));
	if (grown == NULL)
		goto oom;
	cfg->secrets = grown;
	grown[cfg->n_secrets].repeat = false;
	for (size_t i = 0; i < cfg->n_secrets; i++)
		if (strcmp(grown[i].secret, secret) == 0)
			grown[cfg->n_secrets].repeat = true;
	grown[cfg->n_secrets].pattern = strdup(pattern);
	grown[cfg->n_secrets].secret = strdup(secret);
	cfg->n_secrets++;
	if (grown[cfg->n_secrets - 1].pattern == NULL ||
	    grown[cfg->n_secrets - 1].secret == NULL)
		goto oom;
	return true;
oom:
	snprintf(why, whylen, "out of memory");
	return false;
}

/* libinih callback: 1 = ok, 0 = error (ini_parse then returns the line). */
static int config_on_ini_value(void *user, const char *section,
			       const char *name, const char *value)
{
	struct config_parse *p = user;
	char why[160] = "";

	if (strcmp(section, "priority_zones") == 0) {
		if (config_add_zone(p->cfg, name, value, why, sizeof(why)))
			return 1;
		snprintf(p->err, p->errlen, "[%s] %s: %s", section, name, why);
		return 0;
	}
	if (strcmp(section, "device_secrets") == 0) {
		if (config_add_secret(p->cfg, name, value, why, sizeof(why)))
			return 1;
		/* Never echo the secret itself. */
		snprintf(p->err, p->errlen, "[%s] %s: %s", section, name, why);
		return 0;
	}
	if (strcmp(section, "escalation") == 0 ||
	    strcmp(section, "channels") == 0) {
		if (policy_set(&p->cfg->policy, section, name, value, why,
			       sizeof(why)))
			return 1;
		snprintf(p->err, p->errlen, "[%s] %s: %s", section, name, why);
		return 0;
	}
	for (size_t i = 0; i < CONFIG_N_SETTINGS; i++) {
		const struct config_setting *s = &config_table[i];

		if (strcmp(s->section, section) != 0 ||
		    strcmp(s->name, name) != 0)
			continue;
		if (config_set(p->cfg, s, value, why, sizeof(why)))
			return 1;
		snprintf(p->err, p->errlen, "[%s] %s: %s", section, name, why);
		return 0;
	}
	snprintf(p->err, p->errlen, "[%s] %s: unknown setting", section, name);
	return 0;
}

static struct config *config_defaults(void)
{
	struct config *cfg = calloc(1, sizeof(*cfg));
	char why[160];

	if (cfg == NULL)
		return NULL;
	for (size_t i = 0; i < CONFIG_N_SETTINGS; i++) {
		if (!config_set(cfg, &config_table[i], config_table[i].def, why,
				sizeof(why))) {
			config_free(cfg);
			return NULL;
		}
	}
	return cfg;
}

static bool config_is_ip(const char *s)
{
	unsigned char buf[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

/* Host names would be resolved by hiredis and libpq with a blocking lookup
 * on the event loop, at start and at every reconnect: the config must give
 * addresses (for PostgreSQL, hostaddr= may keep the name for TLS). */
static bool config_check_addresses(const struct config *cfg, char *msg,
				   size_t len)
{
	PQconninfoOption *opts, *o;
	const char *hosts = NULL, *hostaddr = NULL;
	char *perr = NULL;
	bool ok = true;

	if (!config_is_ip(cfg->redis_host)) {
		snprintf(msg, len,
			 "[redis] host: \"%s\" is not an IP address; a name would be resolved with a blocking lookup on the event loop",
			 cfg->redis_host);
		return false;
	}
	opts = PQconninfoParse(cfg->pg_conninfo, &perr);
	if (opts == NULL) {
		snprintf(msg, len, "[postgres] conninfo: %s",
			 perr ? perr : "out of memory");
		PQfreemem(perr);
		return false;
	}
	for (o = opts; o->keyword != NULL; o++) {
		if (strcmp(o->keyword, "host") == 0)
			hosts = o->val;
		else if (strcmp(o->keyword, "hostaddr") == 0)
			hostaddr = o->val;
	}
	if ((hostaddr == NULL || hostaddr[0] == '\0') && hosts != NULL) {
		char *copy = strdup(hosts), *save = NULL, *h;

		for (h = copy ? strtok_r(copy, ",", &save) : NULL; h && ok;
		     h = strtok_r(NULL, ",", &save)) {
			if (h[0] == '/' || h[0] == '@' || config_is_ip(h))
				continue;
			snprintf(msg, len,
				 "[postgres] conninfo: host \"%s\" is not an IP address or socket directory; give hostaddr=<address> (a name would be resolved with a blocking lookup on the event loop)",
				 h);
			ok = false;
		}
		free(copy);
	}
	PQconninfoFree(opts);
	return ok;
}

struct config *config_load(const char *path, char *err, size_t errlen)
{
	struct config_parse p = {.err = err, .errlen = errlen};
	char msg[320] = "";
	int line;

	p.cfg = config_defaults();
	if (p.cfg == NULL) {
		snprintf(err, errlen, "%s: out of memory", path);
		return NULL;
	}
	p.err = msg;
	p.errlen = sizeof(msg);
	line = ini_parse(path, config_on_ini_value, &p);
	if (line == -1) {
		snprintf(err, errlen, "%s: cannot open: %s", path,
			 strerror(errno));
		goto fail;
	}
	if (line != 0) {
		snprintf(err, errlen, "%s:%d: %s", path, line,
			 msg[0] ? msg : "syntax error");
		goto fail;
	}
	if (p.cfg->n_secrets == 0) {
		snprintf(err, errlen,
			 "%s: [device_secrets]: at least one \"pattern = secret\" is required",
			 path);
		goto fail;
	}
	if (!config_finish_rules(p.cfg, msg, sizeof(msg)) ||
	    !policy_validate(p.cfg->policy, msg, sizeof(msg)) ||
	    !config_check_addresses(p.cfg, msg, sizeof(msg))) {
		snprintf(err, errlen, "%s: %s", path, msg);
		goto fail;
	}
	if (strcmp(p.cfg->zone_mode, "only") != 0 &&
	    strcmp(p.cfg->zone_mode, "first") != 0) {
		snprintf(err, errlen,
			 "%s: [operators] zone_mode: expected only or first, got \"%s\"",
			 path, p.cfg->zone_mode);
		goto fail;
	}
	p.cfg->zone_first = strcmp(p.cfg->zone_mode, "first") == 0;
	if (strcmp(p.cfg->personal_store, "raw") != 0 &&
	    strcmp(p.cfg->personal_store, "hash") != 0 &&
	    strcmp(p.cfg->personal_store, "mask") != 0) {
		snprintf(err, errlen,
			 "%s: [audit] personal_store: expected raw, hash or mask, got \"%s\"",
			 path, p.cfg->personal_store);
		goto fail;
	}
	p.cfg->path = strdup(path);
	if (p.cfg->path == NULL) {
		snprintf(err, errlen, "%s: out of memory", path);
		goto fail;
	}
	return p.cfg;
fail:
	config_free(p.cfg);
	return NULL;
}

void config_free(struct config *cfg)
{
	if (cfg == NULL)
		return;
	for (size_t i = 0; i < CONFIG_N_SETTINGS; i++) {
		const struct config_setting *s = &config_table[i];

		if (s->type == CFG_STR || s->type == CFG_HOSTPORT)
			free(*(char **)config_field(cfg, s));
	}
	for (size_t i = 0; i < cfg->n_secrets; i++) {
		free(cfg->secrets[i].pattern);
		free(cfg->secrets[i].secret);
	}
	free(cfg->secrets);
	for (size_t i = 0; i < cfg->n_zones; i++)
		free(cfg->zones[i].zone);
	free(cfg->zones);
	free(cfg->class_names);
	policy_free(cfg->policy);
	free(cfg->path);
	free(cfg);
}

const struct config *config_current(void)
{
	return config_running;
}

/* Counts the swaps: a cache of something made from the config compares
 * it, never the config's address (a new config may get a freed one's). */
static uint64_t config_swaps;

uint64_t config_generation(void)
{
	return config_swaps;
}

void config_set_current(struct config *cfg)
{
	struct config *old = config_running;

	config_running = cfg;
	config_swaps++;
	if (cfg != NULL)
		log_set_level(cfg->log_level);
	config_free(old);
}

/* Keeps the running value of a setting that needs a restart. */
static void config_keep_running(struct config *next,
				const struct config_setting *s)
{
	void *to = config_field(next, s);
	const void *from = config_field(config_running, s);

	if (s->type == CFG_STR || s->type == CFG_HOSTPORT) {
		const char *a = *(char *const *)from, *b = *(char **)to;
		char *copy;

		if (strcmp(a, b) == 0 || (copy = strdup(a)) == NULL)
			return;
		log_warn("config: [%s] %s changed; it takes effect after a restart",
			 s->section, s->name);
		free(*(char **)to);
		*(char **)to = copy;
	} else if (*(const int *)from != *(int *)to) {
		log_warn("config: [%s] %s changed; it takes effect after a restart",
			 s->section, s->name);
		*(int *)to = *(const int *)from;
	}
}

size_t config_warnings(const struct config *cfg, config_warn_fn fn,
		       void *arg)
{
	char msg[256];
	size_t n = 0;

	if (strcmp(cfg->personal_store, "hash") == 0 &&
	    cfg->personal_salt[0] == '\0') {
		fn("[audit] personal_salt is empty: the hashed personal attrs "
		   "(a caller's phone number) can be found again by hashing "
		   "every number; set a long random salt (docs/audit.md)", arg);
		n++;
	}
	/* A signed event is accepted while |now - t| <= replay_window_s:
	 * up to twice that after its first delivery. Its idempotency record
	 * must outlive that, or a replay of it is a new event. */
	if ((int64_t)cfg->idempotency_ttl_s < 2 * (int64_t)cfg->replay_window_s) {
		snprintf(msg, sizeof(msg),
			 "[dedup] idempotency_ttl_s (%d) is shorter than twice "
			 "[server] replay_window_s (%d): a signed event sent "
			 "again after its record expired, while its signature "
			 "is still in the window, is taken as a new event",
			 cfg->idempotency_ttl_s, cfg->replay_window_s);
		fn(msg, arg);
		n++;
	}
	for (size_t i = 0; i < cfg->n_secrets; i++) {
		if (strncmp(cfg->secrets[i].secret, "change-me", 9) != 0)
			continue;
		snprintf(msg, sizeof(msg),
			 "[device_secrets] %s: still the example secret; anyone "
			 "who read the example can sign events as these sources",
			 cfg->secrets[i].pattern);
		fn(msg, arg);
		n++;
	}
	return n;
}

static void config_log_warning(const char *msg, void *arg)
{
	(void)arg;
	log_warn("config: %s", msg);
}

void config_log_warnings(const struct config *cfg)
{
	config_warnings(cfg, config_log_warning, NULL);
}

bool config_reload(void)
{
	char err[512];
	struct config *next;

	next = config_load(config_running->path, err, sizeof(err));
	if (next == NULL) {
		log_error("config: reload failed, keeping the running config: %s",
			  err);
		return false;
	}
	for (size_t i = 0; i < CONFIG_N_SETTINGS; i++) {
		if (!config_table[i].reloadable)
			config_keep_running(next, &config_table[i]);
	}
	config_set_current(next);
	log_info("config: reloaded %s", next->path);
	config_log_warnings(next);
	return true;
}

struct evt_limits config_evt_limits(const struct config *cfg)
{
	struct evt_limits l = {
		.max_id_len = (size_t)cfg->max_id_len,
		.max_attrs = (size_t)cfg->max_attrs,
		.max_text_len = (size_t)cfg->max_text_len,
	};
	return l;
}

const char *config_secret_for(const struct config *cfg, const char *source_id)
{
	for (size_t i = 0; i < cfg->n_secrets; i++) {
		if (fnmatch(cfg->secrets[i].pattern, source_id, 0) == 0)
			return cfg->secrets[i].secret;
	}
	return NULL;
}

bool config_split_hostport(const char *s, char **host, int *port)
{
	const char *colon = strrchr(s, ':');
	char *end;
	long p;

	if (colon == NULL || colon == s)
		return false;
	errno = 0;
	p = strtol(colon + 1, &end, 10);
	if (errno != 0 || end == colon + 1 || *end != '\0' || p < 1 ||
	    p > 65535)
		return false;
	*host = strndup(s, (size_t)(colon - s));
	if (*host == NULL)
		return false;
	*port = (int)p;
	return true;
}

void config_print_defaults(void)
{
	/* Each section once, in the order it first appears in the table,
	 * with all of its settings (the table groups them by topic). */
	for (size_t i = 0; i < CONFIG_N_SETTINGS; i++) {
		const char *section = config_table[i].section;
		bool seen = false;

		for (size_t j = 0; j < i && !seen; j++)
			seen = strcmp(config_table[j].section, section) == 0;
		if (seen)
			continue;
		printf("%s[%s]\n", i ? "\n" : "", section);
		for (size_t j = i; j < CONFIG_N_SETTINGS; j++) {
			const struct config_setting *s = &config_table[j];

			if (strcmp(s->section, section) == 0)
				printf("%s = %s%s\n", s->name, s->def,
				       s->reloadable ? ""
						     : "    ; restart to change");
		}
	}
	printf("\n[priority_zones]\n; <zone> = <priority modifier>\n");
	printf("\n[device_secrets]\n; <glob on source.id> = <secret>\n");
	printf("\n[escalation]\n; <band>.min_priority, <band>.levelN, "
	       "<band>.repeat (docs/operations.md)\n"
	       "\n[channels]\ntimeout_ms = 3000\nretries = 4\n"
	       "backoff_ms = 500\n; sms_*, call_*, webhook.<name> "
	       "(docs/operations.md)\n");
}
