/* notify_sms: Kannel sendsms requests and the masked SMS text. */
#include "notify_sms.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <jansson.h>

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
		/* Kannel fills %d (report type) and %A (SMSC answer). */
		char *ekey = evhttp_encode_uri(key);

		if (ekey != NULL &&
		    asprintf(&dlr, "%s%skey=%s&type=%%d&answer=%%A",
			     p->sms_dlr_url,
			     strchr(p->sms_dlr_url, '?') ? "&" : "?",
			     ekey) >= 0) {
			notify_sms_param(q, "dlr-mask", "31");
			notify_sms_param(q, "dlr-url", dlr);
		}
		free(ekey);
		free(dlr);
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
