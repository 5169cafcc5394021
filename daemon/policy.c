/* policy: the escalation policy and channels of the config (policy.h). */
#include "policy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const policy_channel_names[POLICY_CHANNEL__COUNT] = {
	"console", "sms", "call", "webhook",
};

const char *policy_channel_name(enum policy_channel c)
{
	return (unsigned)c < POLICY_CHANNEL__COUNT ? policy_channel_names[c]
						   : "?";
}

static struct policy *policy_new(void)
{
	struct policy *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return NULL;
	p->timeout_ms = 3000;
	p->retries = 4;
	p->backoff_ms = 500;
	return p;
}

static void policy_url_free(struct policy_url *u)
{
	free(u->host);
	free(u->path);
	memset(u, 0, sizeof(*u));
}

void policy_free(struct policy *p)
{
	if (p == NULL)
		return;
	for (size_t i = 0; i < p->n_bands; i++) {
		struct policy_band *b = &p->bands[i];

		free(b->name);
		for (size_t l = 0; l < POLICY_LEVELS_MAX; l++)
			for (size_t t = 0; t < b->levels[l].n_targets; t++)
				free(b->levels[l].targets[t].to);
	}
	policy_url_free(&p->sms_url);
	policy_url_free(&p->call_url);
	free(p->sms_user);
	free(p->sms_password);
	free(p->sms_from);
	free(p->sms_template);
	free(p->sms_dlr_url);
	free(p->sms_dlr_secret);
	free(p->call_template);
	for (size_t i = 0; i < p->n_webhooks; i++) {
		free(p->webhooks[i].name);
		policy_url_free(&p->webhooks[i].url);
	}
	free(p);
}

/* "250ms", "30s", "5m", "1h"; a bare number is seconds. */
static bool policy_parse_duration(const char *s, int64_t *ms)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (end == s || errno != 0 || v < 0 || v > 86400LL * 1000)
		return false;
	if (strcmp(end, "ms") == 0)
		*ms = v;
	else if (*end == '\0' || strcmp(end, "s") == 0)
		*ms = v * 1000;
	else if (strcmp(end, "m") == 0)
		*ms = v * 60000;
	else if (strcmp(end, "h") == 0)
		*ms = v * 3600000;
	else
		return false;
	return true;
}

bool policy_parse_url(const char *s, struct policy_url *u, char *why,
		      size_t whylen)
{
	const char *host = s + 7, *colon, *slash;
	char ip[64];
	struct in_addr a;
	long port = 80;
	char *end;

	memset(u, 0, sizeof(*u));
	if (strncmp(s, "http://", 7) != 0) {
		snprintf(why, whylen, "want http://IP:PORT/PATH");
		return false;
	}
	slash = strchr(host, '/');
	colon = strchr(host, ':');
	if (colon != NULL && slash != NULL && colon > slash)
		colon = NULL;
	if ((size_t)((colon ? colon : slash ? slash : host + strlen(host)) -
		     host) >= sizeof(ip)) {
		snprintf(why, whylen, "host too long");
		return false;
	}
	snprintf(ip, sizeof(ip), "%.*s",
		 (int)((colon ? colon : slash ? slash : host + strlen(host)) -
		       host), host);
	if (inet_pton(AF_INET, ip, &a) != 1) {
		/* No DNS on the event loop: an IPv4 literal only. */
		snprintf(why, whylen, "the host must be an IPv4 address, "
			 "not a name (alertd resolves nothing on its loop)");
		return false;
	}
	if (colon != NULL) {
		port = strtol(colon + 1, &end, 10);
		if (port < 1 || port > 65535 || (*end != '\0' && *end != '/')) {
			snprintf(why, whylen, "bad port");
			return false;
		}
	}
	u->host = strdup(ip);
	u->path = strdup(slash ? slash : "/");
	u->port = (int)port;
	if (u->host == NULL || u->path == NULL) {
		policy_url_free(u);
		snprintf(why, whylen, "out of memory");
		return false;
	}
	return true;
}

static struct policy_band *policy_band(struct policy *p, const char *name,
				       size_t len)
{
	struct policy_band *b;

	for (size_t i = 0; i < p->n_bands; i++)
		if (strlen(p->bands[i].name) == len &&
		    strncmp(p->bands[i].name, name, len) == 0)
			return &p->bands[i];
	if (p->n_bands == POLICY_BANDS_MAX)
		return NULL;
	b = &p->bands[p->n_bands];
	if ((b->name = strndup(name, len)) == NULL)
		return NULL;
	b->min_priority = -1;
	p->n_bands++;
	return b;
}

/* "<delay> <channel>:<to> ..." */
static bool policy_set_level(struct policy_level *l, const char *value,
			     char *why, size_t whylen)
{
	char *copy = strdup(value), *save = NULL, *w;
	bool ok = false;

	if (copy == NULL) {
		snprintf(why, whylen, "out of memory");
		return false;
	}
	w = strtok_r(copy, " \t", &save);
	if (w == NULL || !policy_parse_duration(w, &l->delay_ms)) {
		snprintf(why, whylen, "want \"<delay> <channel>:<target> ...\" "
			 "with a delay like 30s, 500ms or 5m");
		goto done;
	}
	while ((w = strtok_r(NULL, " \t", &save)) != NULL) {
		char *colon = strchr(w, ':');
		struct policy_target *t;
		int c;

		if (l->n_targets == POLICY_TARGETS_MAX) {
			snprintf(why, whylen, "at most %d targets",
				 POLICY_TARGETS_MAX);
			goto done;
		}
		if (colon == NULL || colon[1] == '\0') {
			snprintf(why, whylen, "target '%s': want channel:target",
				 w);
			goto done;
		}
		*colon = '\0';
		for (c = 0; c < POLICY_CHANNEL__COUNT; c++)
			if (strcmp(w, policy_channel_names[c]) == 0)
				break;
		if (c == POLICY_CHANNEL__COUNT) {
			snprintf(why, whylen, "unknown channel '%s' (console, "
				 "sms, call, webhook)", w);
			goto done;
		}
		t = &l->targets[l->n_targets];
		t->channel = (enum policy_channel)c;
		if ((t->to = strdup(colon + 1)) == NULL) {
			snprintf(why, whylen, "out of memory");
			goto done;
		}
		l->n_targets++;
	}
	if (l->n_targets == 0) {
		snprintf(why, whylen, "a level needs at least one target");
		goto done;
	}
	ok = true;
done:
	free(copy);
	return ok;
}

static bool policy_set_escalation(struct policy *p, const char *name,
				  const char *value, char *why, size_t whylen)
{
	const char *dot = strchr(name, '.'), *key;
	struct policy_band *b;
	char *end;
	long v;

	if (dot == NULL || dot == name) {
		snprintf(why, whylen, "want <band>.min_priority, "
			 "<band>.levelN or <band>.repeat");
		return false;
	}
	key = dot + 1;
	if ((b = policy_band(p, name, (size_t)(dot - name))) == NULL) {
		snprintf(why, whylen, "at most %d bands", POLICY_BANDS_MAX);
		return false;
	}
	if (strcmp(key, "min_priority") == 0) {
		v = strtol(value, &end, 10);
		if (end == value || *end != '\0' || v < 0 || v > 999) {
			snprintf(why, whylen, "a priority 0..999");
			return false;
		}
		b->min_priority = (int)v;
		return true;
	}
	if (strcmp(key, "repeat") == 0) {
		if (!policy_parse_duration(value, &b->repeat_ms) ||
		    b->repeat_ms < 100) {
			snprintf(why, whylen, "a duration of at least 100ms");
			return false;
		}
		return true;
	}
	if (strncmp(key, "level", 5) == 0) {
		struct policy_level *l;

		v = strtol(key + 5, &end, 10);
		if (end == key + 5 || *end != '\0' || v < 1 ||
		    v > POLICY_LEVELS_MAX) {
			snprintf(why, whylen, "levels are level1..level%d",
				 POLICY_LEVELS_MAX);
			return false;
		}
		l = &b->levels[v - 1];
		if (l->n_targets != 0) {
			snprintf(why, whylen, "level given twice");
			return false;
		}
		if (!policy_set_level(l, value, why, whylen))
			return false;
		if ((size_t)v > b->n_levels)
			b->n_levels = (size_t)v;
		return true;
	}
	snprintf(why, whylen, "unknown key '%s'", key);
	return false;
}

static bool policy_set_string(char **dst, const char *value, char *why,
			      size_t whylen)
{
	char *s = strdup(value);

	if (s == NULL) {
		snprintf(why, whylen, "out of memory");
		return false;
	}
	free(*dst);
	*dst = s;
	return true;
}

static bool policy_set_int(int *dst, const char *value, int lo, int hi,
			   char *why, size_t whylen)
{
	char *end;
	long v = strtol(value, &end, 10);

	if (end == value || *end != '\0' || v < lo || v > hi) {
		snprintf(why, whylen, "an integer %d..%d", lo, hi);
		return false;
	}
	*dst = (int)v;
	return true;
}

static bool policy_set_channels(struct policy *p, const char *name,
				const char *value, char *why, size_t whylen)
{
	if (strcmp(name, "timeout_ms") == 0)
		return policy_set_int(&p->timeout_ms, value, 100, 60000, why,
				      whylen);
	if (strcmp(name, "retries") == 0)
		return policy_set_int(&p->retries, value, 0, 20, why, whylen);
	if (strcmp(name, "backoff_ms") == 0)
		return policy_set_int(&p->backoff_ms, value, 10, 600000, why,
				      whylen);
	if (strcmp(name, "sms_url") == 0) {
		policy_url_free(&p->sms_url);
		return policy_parse_url(value, &p->sms_url, why, whylen);
	}
	if (strcmp(name, "call_url") == 0) {
		policy_url_free(&p->call_url);
		return policy_parse_url(value, &p->call_url, why, whylen);
	}
	if (strcmp(name, "sms_user") == 0)
		return policy_set_string(&p->sms_user, value, why, whylen);
	if (strcmp(name, "sms_password") == 0)
		return policy_set_string(&p->sms_password, value, why, whylen);
	if (strcmp(name, "sms_from") == 0)
		return policy_set_string(&p->sms_from, value, why, whylen);
	if (strcmp(name, "sms_template") == 0)
		return policy_set_string(&p->sms_template, value, why, whylen);
	if (strcmp(name, "sms_dlr_url") == 0)
		return policy_set_string(&p->sms_dlr_url, value, why, whylen);
	if (strcmp(name, "sms_dlr_secret") == 0) {
		if (value[0] == '\0') {
			snprintf(why, whylen, "an empty secret would let anyone "
				 "write delivery reports");
			return false;
		}
		return policy_set_string(&p->sms_dlr_secret, value, why, whylen);
	}
	if (strcmp(name, "call_template") == 0)
		return policy_set_string(&p->call_template, value, why, whylen);
	if (strncmp(name, "webhook.", 8) == 0 && name[8] != '\0') {
		struct policy_webhook *w;

		if (p->n_webhooks == POLICY_WEBHOOKS_MAX) {
			snprintf(why, whylen, "at most %d webhooks",
				 POLICY_WEBHOOKS_MAX);
			return false;
		}
		w = &p->webhooks[p->n_webhooks];
		if (!policy_parse_url(value, &w->url, why, whylen))
			return false;
		if ((w->name = strdup(name + 8)) == NULL) {
			policy_url_free(&w->url);
			snprintf(why, whylen, "out of memory");
			return false;
		}
		p->n_webhooks++;
		return true;
	}
	snprintf(why, whylen, "unknown setting");
	return false;
}

bool policy_set(struct policy **pp, const char *section, const char *name,
		const char *value, char *why, size_t whylen)
{
	if (*pp == NULL && (*pp = policy_new()) == NULL) {
		snprintf(why, whylen, "out of memory");
		return false;
	}
	if (strcmp(section, "escalation") == 0)
		return policy_set_escalation(*pp, name, value, why, whylen);
	return policy_set_channels(*pp, name, value, why, whylen);
}

const struct policy_webhook *policy_webhook(const struct policy *p,
					    const char *name)
{
	for (size_t i = 0; i < p->n_webhooks; i++)
		if (strcmp(p->webhooks[i].name, name) == 0)
			return &p->webhooks[i];
	return NULL;
}

static int policy_band_cmp(const void *a, const void *b)
{
	return ((const struct policy_band *)b)->min_priority -
	       ((const struct policy_band *)a)->min_priority;
}

bool policy_validate(struct policy *p, char *why, size_t whylen)
{
	if (p == NULL)
		return true;
	for (size_t i = 0; i < p->n_bands; i++) {
		struct policy_band *b = &p->bands[i];

		if (b->min_priority < 0) {
			snprintf(why, whylen, "[escalation] %s.min_priority is "
				 "required", b->name);
			return false;
		}
		if (b->n_levels == 0) {
			snprintf(why, whylen, "[escalation] %s has no level",
				 b->name);
			return false;
		}
		for (size_t l = 0; l < b->n_levels; l++) {
			const struct policy_level *lv = &b->levels[l];

			if (lv->n_targets == 0) {
				snprintf(why, whylen, "[escalation] %s.level%zu "
					 "is missing", b->name, l + 1);
				return false;
			}
			for (size_t t = 0; t < lv->n_targets; t++) {
				const struct policy_target *tg = &lv->targets[t];
				const char *miss = NULL;

				if (tg->channel == POLICY_WEBHOOK &&
				    policy_webhook(p, tg->to) == NULL)
					miss = "its [channels] webhook.NAME";
				else if (tg->channel == POLICY_SMS &&
					 p->sms_url.host == NULL)
					miss = "[channels] sms_url";
				else if (tg->channel == POLICY_CALL &&
					 p->call_url.host == NULL)
					miss = "[channels] call_url";
				if (miss != NULL) {
					snprintf(why, whylen, "[escalation] "
						 "%s.level%zu: %s:%s needs %s",
						 b->name, l + 1,
						 policy_channel_name(tg->channel),
						 tg->to, miss);
					return false;
				}
			}
		}
	}
	if (p->sms_dlr_url != NULL && p->sms_dlr_secret == NULL) {
		/* The DLR route refuses every report without one. */
		snprintf(why, whylen, "[channels] sms_dlr_url needs "
			 "sms_dlr_secret (delivery reports are refused "
			 "without it)");
		return false;
	}
	qsort(p->bands, p->n_bands, sizeof(p->bands[0]), policy_band_cmp);
	return true;
}

const struct policy_band *policy_band_for(const struct policy *p,
					  int priority)
{
	if (p == NULL)
		return NULL;
	for (size_t i = 0; i < p->n_bands; i++)
		if (priority >= p->bands[i].min_priority)
			return &p->bands[i];
	return NULL;
}

const struct policy_level *policy_level_for(const struct policy_band *b,
					    int64_t n)
{
	if (b == NULL || b->n_levels == 0 || n < 1)
		return NULL;
	if ((uint64_t)n > b->n_levels)
		n = (int64_t)b->n_levels;
	return &b->levels[n - 1];
}

char *policy_script_arg(const struct policy *p)
{
	size_t cap = 64, len = 0;
	char *s;

	if (p == NULL || p->n_bands == 0)
		return NULL;
	cap += p->n_bands * (48 + POLICY_LEVELS_MAX * 24);
	if ((s = malloc(cap)) == NULL)
		return NULL;
	s[0] = '\0';
	for (size_t i = 0; i < p->n_bands; i++) {
		const struct policy_band *b = &p->bands[i];
		int64_t repeat = b->repeat_ms > 0
					 ? b->repeat_ms
					 : b->levels[b->n_levels - 1].delay_ms;

		if (repeat < 100)
			repeat = 100; /* never a tight loop */
		len += (size_t)snprintf(s + len, cap - len, "%s%d:%lld:",
					i ? ";" : "", b->min_priority,
					(long long)repeat);
		for (size_t l = 0; l < b->n_levels; l++)
			len += (size_t)snprintf(s + len, cap - len, "%s%lld",
						l ? "," : "",
						(long long)b->levels[l].delay_ms);
	}
	return s;
}
