/* notify_call: the JSON bodies of the call-origination webhook (a number,
 * the incident, the text to speak) and of the generic webhook (the
 * incident and the level). Pure functions; notify.c sends. Personal data
 * (the label of support-line sources) is masked in both. */
#ifndef ALERTD_NOTIFY_CALL_H
#define ALERTD_NOTIFY_CALL_H

/* The caller frees; NULL on bad snapshot JSON. */
char *notify_call_body(const char *number, const char *snapshot_json,
		       int level, const char *text, const char *key);
char *notify_call_webhook_body(const char *name, const char *snapshot_json,
			       int level, const char *key);

#endif
