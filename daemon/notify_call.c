/* notify_call: bodies of the call-origination and generic webhooks. */
#include "notify_call.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

/* The snapshot with personal data masked: the label of a support-line
 * source. Returns a new reference or NULL. */
static json_t *notify_call_masked(const char *snapshot_json)
{
	json_t *snap = json_loads(snapshot_json, 0, NULL);
	json_t *src = json_object_get(snap, "source");
	const char *kind = json_string_value(json_object_get(src, "kind"));

	if (snap == NULL)
		return NULL;
	if (kind != NULL && strcmp(kind, "support_line") == 0 &&
	    json_is_string(json_object_get(src, "label")))
		json_object_set_new(src, "label", json_string("***"));
	return snap;
}

static char *notify_call_dump(json_t *body)
{
	char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;

	json_decref(body);
	return text;
}

char *notify_call_body(const char *number, const char *snapshot_json,
		       int level, const char *text, const char *key)
{
	json_t *snap = notify_call_masked(snapshot_json);

	if (snap == NULL)
		return NULL;
	return notify_call_dump(json_pack("{s:s, s:s, s:o, s:i, s:s}",
					  "idempotency_key", key,
					  "number", number, "incident", snap,
					  "level", level, "text", text));
}

char *notify_call_webhook_body(const char *name, const char *snapshot_json,
			       int level, const char *key)
{
	json_t *snap = notify_call_masked(snapshot_json);

	if (snap == NULL)
		return NULL;
	return notify_call_dump(json_pack("{s:s, s:s, s:s, s:o, s:i}",
					  "event", "escalation",
					  "idempotency_key", key,
					  "webhook", name, "incident", snap,
					  "level", level));
}
