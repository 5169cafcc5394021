/* policy: the escalation policy and the notification channels, parsed
 * from the config's [escalation] and [channels] sections (config.c hands
 * their lines here). Pure data, no I/O; docs/operations.md explains it.
 *
 *   [escalation]
 *   <band>.min_priority = 80
 *   <band>.level1 = 0s console:desk
 *   <band>.level2 = 60s console:supervisors sms:+905321112233
 *   <band>.level3 = 2m call:+905321112233 webhook:cad
 *   <band>.repeat = 5m        ; the last level again, until someone acks
 *
 * A level's delay counts from the previous level (level 1: from the
 * opening of the incident). An incident takes the band with the highest
 * min_priority not above its priority; without a band it does not
 * escalate. */
#ifndef ALERTD_POLICY_H
#define ALERTD_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define POLICY_BANDS_MAX 8
#define POLICY_LEVELS_MAX 8
#define POLICY_TARGETS_MAX 8
#define POLICY_WEBHOOKS_MAX 8

enum policy_channel {
	POLICY_CONSOLE = 0, /* a console group: the stream shows the level */
	POLICY_SMS,         /* Kannel sendsms */
	POLICY_CALL,        /* call-origination webhook */
	POLICY_WEBHOOK,     /* a generic webhook of [channels] webhook.NAME */
	POLICY_CHANNEL__COUNT
};

struct policy_target {
	enum policy_channel channel;
	char *to;           /* group, number or webhook name */
};

struct policy_level {
	int64_t delay_ms;
	size_t n_targets;
	struct policy_target targets[POLICY_TARGETS_MAX];
};

struct policy_band {
	char *name;
	int min_priority;   /* -1 until set */
	int64_t repeat_ms;  /* 0: the last level's delay */
	size_t n_levels;
	struct policy_level levels[POLICY_LEVELS_MAX];
};

/* An http:// URL with an IP literal (no DNS on the loop). */
struct policy_url {
	char *host;
	int port;
	char *path;         /* with the query, "/" at least */
};

struct policy_webhook {
	char *name;
	struct policy_url url;
};

struct policy {
	size_t n_bands;
	struct policy_band bands[POLICY_BANDS_MAX];

	/* [channels] */
	int timeout_ms;     /* per request, 3000 */
	int retries;        /* attempts after the first, 4 */
	int backoff_ms;     /* first retry delay, doubled each time, 500 */
	struct policy_url sms_url;   /* Kannel sendsms; host NULL: off */
	char *sms_user, *sms_password, *sms_from, *sms_template;
	char *sms_dlr_url;  /* the dlr-url Kannel calls back (base) */
	char *sms_dlr_secret; /* NULL or the secret= the dlr-url must carry */
	struct policy_url call_url;  /* host NULL: off */
	char *call_template;
	size_t n_webhooks;
	struct policy_webhook webhooks[POLICY_WEBHOOKS_MAX];
};

/* One "name = value" of [escalation] or [channels] into *p (allocated on
 * first use). false with why on a bad line. */
bool policy_set(struct policy **p, const char *section, const char *name,
		const char *value, char *why, size_t whylen)
	__attribute__((warn_unused_result));
/* Checks the whole: levels without gaps, known webhooks, channels that
 * levels use are configured. p may be NULL (no escalation). */
bool policy_validate(struct policy *p, char *why, size_t whylen)
	__attribute__((warn_unused_result));
void policy_free(struct policy *p);

const char *policy_channel_name(enum policy_channel c);
/* The band of a priority, or NULL. */
const struct policy_band *policy_band_for(const struct policy *p,
					  int priority);
/* The level that the n-th firing (1-based) uses: the last one repeats. */
const struct policy_level *policy_level_for(const struct policy_band *b,
					    int64_t n);
const struct policy_webhook *policy_webhook(const struct policy *p,
					    const char *name);
/* The delays for decide.lua: "min:repeat:d1,d2,...;..." by min_priority
 * descending. The caller frees; NULL when p has no band. */
char *policy_script_arg(const struct policy *p);
/* Parses "http://1.2.3.4:port/path"; false with why otherwise. */
bool policy_parse_url(const char *s, struct policy_url *u, char *why,
		      size_t whylen) __attribute__((warn_unused_result));

#endif
