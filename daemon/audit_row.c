/* audit_row: one audit row encoded once (the JSON of its event and of its
 * transition), and the lists audit.c keeps rows in. */
#include "audit_row.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

void audit_row_push(struct audit_list *l, struct audit_row *r)
{
	r->next = NULL;
	if (l->tail)
		l->tail->next = r;
	else
		l->head = r;
	l->tail = r;
	l->n++;
}

struct audit_row *audit_row_pop(struct audit_list *l)
{
	struct audit_row *r = l->head;

	if (r) {
		l->head = r->next;
		if (!l->head)
			l->tail = NULL;
		l->n--;
		r->next = NULL;
	}
	return r;
}

/* Puts every row of `from` before the rows of `to`, in order. */
void audit_row_prepend(struct audit_list *to, struct audit_list *from)
{
	if (!from->head)
		return;
	from->tail->next = to->head;
	to->head = from->head;
	if (!to->tail)
		to->tail = from->tail;
	to->n += from->n;
	*from = (struct audit_list){0};
}

void audit_row_free(struct audit_row *r)
{
	if (!r)
		return;
	free(r->ev_json);
	free(r->tr_json);
	free(r->label);
	free(r);
}

/* A row without one of the NOT NULL columns can never be written. */
bool audit_row_complete(const struct audit_event_row *ev,
			       const struct audit_transition_row *tr)
{
	return (!ev || (ev->event_id && ev->source_id && ev->source_kind &&
			ev->type && ev->outcome && ev->payload_json)) &&
	       (!tr || (tr->transition_id && tr->to_state && tr->actor));
}

static bool audit_row_json_str(json_t *o, const char *key, const char *v)
{
	json_t *j = v ? json_string(v) : json_null();

	/* json_string refuses invalid UTF-8; set_new consumes j. */
	return j && json_object_set_new(o, key, j) == 0;
}

static bool audit_row_json_int(json_t *o, const char *key, int64_t v)
{
	json_t *j = json_integer((json_int_t)v);

	return j && json_object_set_new(o, key, j) == 0;
}

/* One element of $1. The payload is JSON already (codec_json's canonical
 * event, or personal.c's stored form of it), so it goes into the row as a
 * JSON value after the other members, not as a string: escaping it here and
 * unescaping it in PostgreSQL was most of the cost of a row (a tenth of
 * alertd's CPU at 10k events/s, docs/BENCHMARKS.md optimisation 13).
 * json_to_recordset reads the payload column as text either way: an
 * object's text as it is, a string's content unescaped, so rows spooled by
 * an older alertd (payload as a string) are read back the same. A payload
 * that is not JSON fails the batch's parse, a data error like its failed
 * ::jsonb cast before: the row is isolated and refused alone. */
static char *audit_row_encode_event(const struct audit_event_row *e)
{
	static const char key[] = ",\"payload\":";
	json_t *o = json_object();
	char *head = NULL, *out = NULL;
	size_t head_len, payload_len;

	if (o && audit_row_json_int(o, "accept_seq", e->accept_seq) &&
	    audit_row_json_str(o, "event_id", e->event_id) &&
	    audit_row_json_str(o, "source_id", e->source_id) &&
	    audit_row_json_str(o, "source_kind", e->source_kind) &&
	    audit_row_json_str(o, "type", e->type) &&
	    audit_row_json_str(o, "outcome", e->outcome) &&
	    audit_row_json_int(o, "incident_id", e->incident_id) &&
	    audit_row_json_int(o, "priority", e->priority) &&
	    audit_row_json_int(o, "received_at_ms", e->received_at_ms) &&
	    (e->occurred_at_ms == 0 ||
	     audit_row_json_int(o, "occurred_at_ms", e->occurred_at_ms))) {
		/* The spool separates a row's two parts with a newline: a
		 * payload with a raw one (never made by alertd's encoders) goes
		 * as a string, escaped. */
		if (strchr(e->payload_json, '\n')) {
			if (audit_row_json_str(o, "payload", e->payload_json))
				out = json_dumps(o, JSON_COMPACT);
			json_decref(o);
			return out;
		}
		head = json_dumps(o, JSON_COMPACT);
	}
	json_decref(o);
	/* "{...}" + ",\"payload\":" + payload + "}" */
	if (head && (head_len = strlen(head)) >= 2 &&
	    head[head_len - 1] == '}') {
		payload_len = strlen(e->payload_json);
		out = malloc(head_len - 1 + sizeof(key) - 1 + payload_len + 2);
		if (out) {
			char *p = out;

			memcpy(p, head, head_len - 1);
			p += head_len - 1;
			memcpy(p, key, sizeof(key) - 1);
			p += sizeof(key) - 1;
			memcpy(p, e->payload_json, payload_len);
			p += payload_len;
			*p++ = '}';
			*p = '\0';
		}
	}
	free(head);
	return out;
}

/* One element of $2. */
static char *audit_row_encode_transition(const struct audit_transition_row *t)
{
	json_t *o = json_object();
	char *out = NULL;

	if (o && audit_row_json_str(o, "transition_id", t->transition_id) &&
	    audit_row_json_int(o, "incident_id", t->incident_id) &&
	    audit_row_json_str(o, "from_state", t->from_state) &&
	    audit_row_json_str(o, "to_state", t->to_state) &&
	    audit_row_json_str(o, "actor", t->actor) &&
	    audit_row_json_str(o, "detail", t->detail_json) &&
	    audit_row_json_int(o, "at_ms", t->at_ms))
		out = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return out;
}

/* Names a row in logs by its keys. */
static char *audit_row_label(const struct audit_event_row *ev,
			 const struct audit_transition_row *tr)
{
	char *out = NULL;
	int n;

	if (ev && tr)
		n = asprintf(&out, "accept_seq=%" PRId64 " event=%s transition=%s",
			     ev->accept_seq, ev->event_id, tr->transition_id);
	else if (ev)
		n = asprintf(&out, "accept_seq=%" PRId64 " event=%s",
			     ev->accept_seq, ev->event_id);
	else
		n = asprintf(&out, "transition=%s", tr->transition_id);
	return n < 0 ? NULL : out;
}

/* The row, encoded; NULL with *why set when it cannot be. */
struct audit_row *audit_row_new(const struct audit_event_row *ev,
				       const struct audit_transition_row *tr,
				       const char **why)
{
	struct audit_row *r = calloc(1, sizeof(*r));

	*why = "out of memory";
	if (!r || !(r->label = audit_row_label(ev, tr)))
		goto fail;
	*why = "not valid UTF-8";
	if (ev && !(r->ev_json = audit_row_encode_event(ev)))
		goto fail;
	if (tr && !(r->tr_json = audit_row_encode_transition(tr)))
		goto fail;
	r->ev_len = r->ev_json ? strlen(r->ev_json) : 0;
	r->tr_len = r->tr_json ? strlen(r->tr_json) : 0;
	return r;
fail:
	audit_row_free(r);
	return NULL;
}

/* The JSON array of the rows' events (or transitions). */
char *audit_row_join(const struct audit_list *rows, bool events)
{
	size_t len = 3;
	const struct audit_row *r;
	char *out, *p;

	for (r = rows->head; r; r = r->next)
		len += (events ? r->ev_len : r->tr_len) + 1;
	if (!(out = malloc(len)))
		return NULL;
	p = out;
	*p++ = '[';
	for (r = rows->head; r; r = r->next) {
		const char *js = events ? r->ev_json : r->tr_json;
		size_t n = events ? r->ev_len : r->tr_len;

		if (!js)
			continue;
		if (p > out + 1)
			*p++ = ',';
		memcpy(p, js, n);
		p += n;
	}
	*p++ = ']';
	*p = '\0';
	return out;
}
