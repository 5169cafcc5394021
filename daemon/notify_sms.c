/* notify_sms: Kannel sendsms requests and the masked SMS text. */
#include "notify_sms.h"

#include <stdio.h>
#include <sys/queue.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <openssl/crypto.h>

#include "config.h"
#include "http1.h"
#include "http_server.h"
#include "log.h"
#include "notify.h"
#include "policy.h"

#define NOTIFY_SMS_MAX 160
#define NOTIFY_SMS_DEFAULT "alertd #{id} {type} P{priority} {zone} level {level}"

/* The value of a placeholder, into buf. */
static const char *notify_sms_field(json_t *snap, const char *name,
				    int level, char *buf, size_t len)
{
	json_t *src = json_object_get(snap, "source");
	const char *kind = json_string_value(json_object_get(src, "kind"));
	json_t *v = NULL;

	if (strcmp(name, "level") == 0) {
		snprintf(buf, len, "%d", level);
		return buf;
	}
	if (strcmp(name, "id") == 0 || strcmp(name, "priority") == 0) {
		snprintf(buf, len, "%lld",
			 (long long)json_integer_value(json_object_get(snap,
								       name)));
		return buf;
	}
	if (strcmp(name, "type") == 0)
		v = json_object_get(snap, "type");
	else if (strcmp(name, "zone") == 0)
		v = json_object_get(src, "zone");
	else if (strcmp(name, "kind") == 0)
		v = json_object_get(src, "kind");
	else if (strcmp(name, "label") == 0) {
		/* Support-line labels may name a caller. */
		if (kind != NULL && strcmp(kind, "support_line") == 0)
			return "***";
		v = json_object_get(src, "label");
	} else
		return NULL;
	return json_is_string(v) ? json_string_value(v) : "-";
}

char *notify_sms_text(const char *template, const char *snapshot_json,
		      int level)
{
	json_t *snap = json_loads(snapshot_json, 0, NULL);
	struct evbuffer *out;
	const char *p;
	char buf[32], *text = NULL;
	size_t len;

	if (snap == NULL)
		return NULL;
	if ((out = evbuffer_new()) == NULL)
		goto done;
	p = template != NULL && template[0] != '\0' ? template
						     : NOTIFY_SMS_DEFAULT;
	while (*p) {
		const char *close = *p == '{' ? strchr(p, '}') : NULL;

		if (close != NULL && close - p < 16) {
			char name[16];
			const char *v;

			snprintf(name, sizeof(name), "%.*s", (int)(close - p - 1),
				 p + 1);
			v = notify_sms_field(snap, name, level, buf,
					     sizeof(buf));
			if (v != NULL) {
				evbuffer_add(out, v, strlen(v));
				p = close + 1;
				continue;
			}
		}
		evbuffer_add(out, p, 1);
		p++;
	}
	len = evbuffer_get_length(out);
	if (len > NOTIFY_SMS_MAX)
		len = NOTIFY_SMS_MAX;
	if ((text = malloc(len + 1)) != NULL) {
		evbuffer_copyout(out, text, len);
		text[len] = '\0';
	}
	evbuffer_free(out);
done:
	json_decref(snap);
	return text;
}

/* Appends "&name=<encoded value>". */
static void notify_sms_param(struct evbuffer *q, const char *name,
			     const char *value)
{
	char *enc;

	if (value == NULL)
		return;
	enc = evhttp_encode_uri(value);
	if (enc == NULL)
		return;
	evbuffer_add_printf(q, "%s%s=%s", evbuffer_get_length(q) ? "&" : "",
			    name, enc);
	free(enc);
}

char *notify_sms_query(const struct policy *p, const char *number,
		       const char *text, const char *key)
{
	struct evbuffer *q = evbuffer_new();
	char *dlr = NULL, *out = NULL;
	size_t len;

	if (q == NULL)
		return NULL;
	notify_sms_param(q, "username", p->sms_user);
	notify_sms_param(q, "password", p->sms_password);
	notify_sms_param(q, "from", p->sms_from);
	notify_sms_param(q, "to", number);
	notify_sms_param(q, "text", text);
	if (p->sms_dlr_url != NULL) {
		/* Kannel fills %p (in a report: the handset, i.e. the
		 * key's number, so no '+' needs escaping here), %d (the
		 * report type) and %A (the SMSC's answer). key is
		 * "<incident>@<run>:<level>:sms:<number>". */
		const char *num = strstr(key, ":sms:");
		int head = num != NULL ? (int)(num - key) + 5 : 0;

		char *secret = p->sms_dlr_secret != NULL
				       ? evhttp_encode_uri(p->sms_dlr_secret)
				       : NULL;

		/* The secret goes into the URL Kannel calls back, unless
		 * the configured URL carries one already. */
		if (num != NULL && secret != NULL &&
		    asprintf(&dlr, "%s%skey=%.*s%%p&type=%%d&answer=%%A%s%s",
			     p->sms_dlr_url,
			     strchr(p->sms_dlr_url, '?') ? "&" : "?", head,
			     key,
			     strstr(p->sms_dlr_url, "secret=") ? "" : "&secret=",
			     strstr(p->sms_dlr_url, "secret=") ? "" : secret)
			    >= 0) {
			notify_sms_param(q, "dlr-mask", "31");
			notify_sms_param(q, "dlr-url", dlr);
		}
		free(dlr);
		free(secret);
	}
	len = strlen(p->sms_url.path) + 1 + evbuffer_get_length(q) + 1;
	if ((out = malloc(len)) != NULL) {
		size_t n = strlen(p->sms_url.path);
		size_t ql = evbuffer_get_length(q);

		memcpy(out, p->sms_url.path, n);
		out[n] = strchr(p->sms_url.path, '?') ? '&' : '?';
		evbuffer_copyout(q, out + n + 1, ql);
		out[n + 1 + ql] = '\0';
	}
	evbuffer_free(q);
	return out;
}

void notify_sms_mask(const char *number, char *out, size_t len)
{
	size_t n = strlen(number), keep_head = 3, keep_tail = 2;
	size_t k = 0;

	if (len == 0)
		return;
	if (n <= keep_head + keep_tail) {
		snprintf(out, len, "***");
		return;
	}
	for (size_t i = 0; i < n && k + 1 < len; i++)
		out[k++] = (i < keep_head || i >= n - keep_tail) ? number[i]
								 : '*';
	out[k] = '\0';
}

/* Kannel's DLR types (the %d of dlr-url). */
static const char *notify_sms_dlr_outcome(int type)
{
	switch (type) {
	case 1:
		return "delivered";
	case 2:
		return "undelivered";
	case 4:
		return "queued";
	case 8:
		return "smsc_accepted";
	case 16:
		return "smsc_rejected";
	}
	return "report";
}

/* GET (or POST) /v1/dlr/sms?key=<incident>@<run>:<level>:sms:<number>
 * &type=N&secret=...[&answer=...]: one notifications row (attempt 0).
 * The route is on the device port and its row joins the audit chain: a
 * report is taken only with the configured sms_dlr_secret, and refused
 * (403) while none is configured. */
void notify_sms_on_dlr(struct hreq *req, void *server)
{
	const struct http_deps *deps = http_server_deps(server);
	const struct policy *p = config_current()->policy;
	const char *query = hreq_query(req);
	struct evkeyvalq params;
	const char *key, *type, *secret, *answer;
	long long id = 0, run = 0;
	int level = 0, t, used = 0;
	char number[72], masked[72], detail[96];
	json_t *dj;
	char *djs;

	TAILQ_INIT(&params);
	if (query == NULL || evhttp_parse_query_str(query, &params) != 0) {
		http_reply_error(req, 400, "bad_request", NULL,
				 "want ?key=...&type=...", 0);
		return;
	}
	key = evhttp_find_header(&params, "key");
	type = evhttp_find_header(&params, "type");
	secret = evhttp_find_header(&params, "secret");
	answer = evhttp_find_header(&params, "answer");
	if (p == NULL || p->sms_dlr_secret == NULL) {
		http_reply_error(req, 403, "forbidden", NULL,
				 "delivery reports are off: [channels] "
				 "sms_dlr_secret is not set", 0);
		goto done;
	}
	if (secret == NULL || strlen(secret) != strlen(p->sms_dlr_secret) ||
	    CRYPTO_memcmp(secret, p->sms_dlr_secret, strlen(secret)) != 0) {
		http_reply_error(req, 401, "unauthorized", "secret",
				 "wrong or missing secret", 0);
		goto done;
	}
	if (key != NULL &&
	    sscanf(key, "%lld@%lld:%d:sms:%n", &id, &run, &level, &used) != 3)
		used = 0; /* or the form of keys without a run */
	if (key != NULL && used == 0 &&
	    sscanf(key, "%lld:%d:sms:%n", &id, &level, &used) != 2)
		used = 0;
	if (key == NULL || type == NULL ||
	    used == 0 || key[used] == '\0' || strlen(key + used) >= 64 ||
	    id <= 0 || level <= 0 || sscanf(type, "%d", &t) != 1) {
		http_reply_error(req, 400, "invalid_field", "key",
				 "key must be <incident>@<run>:<level>:sms:"
				 "<number> "
				 "and type a number", 0);
		goto done;
	}
	snprintf(number, sizeof(number), "%s", key + used);
	notify_sms_mask(number, masked, sizeof(masked));
	dj = json_pack("{s:i, s:s}", "type", t, "answer",
		       answer != NULL ? answer : "");
	djs = dj != NULL ? json_dumps(dj, JSON_COMPACT) : NULL;
	json_decref(dj);
	log_info("notify: %lld:%d:sms:%s delivery report: %s", id, level,
		 masked, notify_sms_dlr_outcome(t));
	notify_record(deps->notify, key, 0, id, level, "sms", masked,
		      notify_sms_dlr_outcome(t), djs);
	free(djs);
	snprintf(detail, sizeof(detail), "{\"recorded\":\"%s\"}",
		 notify_sms_dlr_outcome(t));
	http_reply_json(req, 200, detail);
done:
	evhttp_clear_headers(&params);
}
