/* notify_sms: SMS through Kannel's HTTP sendsms interface: the masked text
 * from [channels] sms_template, the sendsms query with a dlr-url that
 * brings the delivery report back to POST/GET /v1/dlr/sms. Pure functions;
 * notify.c sends. */
#ifndef ALERTD_NOTIFY_SMS_H
#define ALERTD_NOTIFY_SMS_H

#include <stddef.h>

struct policy;

/* The message for one incident snapshot (JSON text) at level: template
 * placeholders {id} {type} {priority} {zone} {kind} {level} {label};
 * {label} is "***" for support-line sources (personal data), and the
 * text is cut at 160 bytes. The caller frees; NULL on bad JSON. */
char *notify_sms_text(const char *template, const char *snapshot_json,
		      int level);
/* "/cgi-bin/sendsms?username=..&to=..&text=..&dlr-url=.." (the path of
 * sms_url with the query). The caller frees. */
char *notify_sms_query(const struct policy *p, const char *number,
		       const char *text, const char *key);
/* "+90******2233": a number for logs and the audit trail. */
void notify_sms_mask(const char *number, char *out, size_t len);

#endif
