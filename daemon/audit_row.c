/* audit_row: one audit row encoded once (the JSON of its event and of its
 * transition), and the lists audit.c keeps rows in. */
#include "audit_row.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonw.h"

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
	struct jsonw w = JSONW_INIT;

	jsonw_lit(&w, "{\"accept_seq\":");
	jsonw_int(&w, e->accept_seq);
	jsonw_lit(&w, ",\"event_id\":");
	jsonw_str_or_null(&w, e->event_id);
	jsonw_lit(&w, ",\"source_id\":");
	jsonw_str_or_null(&w, e->source_id);
	jsonw_lit(&w, ",\"source_kind\":");
	jsonw_str_or_null(&w, e->source_kind);
	jsonw_lit(&w, ",\"type\":");
	jsonw_str_or_null(&w, e->type);
	jsonw_lit(&w, ",\"outcome\":");
	jsonw_str_or_null(&w, e->outcome);
	jsonw_lit(&w, ",\"incident_id\":");
	jsonw_int(&w, e->incident_id);
	jsonw_lit(&w, ",\"priority\":");
	jsonw_int(&w, e->priority);
	jsonw_lit(&w, ",\"received_at_ms\":");
	jsonw_int(&w, e->received_at_ms);
	if (e->has_occurred_at) {
		jsonw_lit(&w, ",\"occurred_at_ms\":");
		jsonw_int(&w, e->occurred_at_ms);
	}
	jsonw_lit(&w, ",\"payload\":");
	/* The spool separates a row's two parts with a newline: a payload
	 * with a raw one (never made by alertd's encoders) goes as a string,
	 * escaped. */
	if (e->payload_json == NULL || strchr(e->payload_json, '\n'))
		jsonw_str_or_null(&w, e->payload_json);
	else
		jsonw_lit(&w, e->payload_json);
	jsonw_lit(&w, "}");
	return jsonw_finish(&w);
}

/* One element of $2. */
static char *audit_row_encode_transition(const struct audit_transition_row *t)
{
	struct jsonw w = JSONW_INIT;

	jsonw_lit(&w, "{\"transition_id\":");
	jsonw_str_or_null(&w, t->transition_id);
	jsonw_lit(&w, ",\"incident_id\":");
	jsonw_int(&w, t->incident_id);
	jsonw_lit(&w, ",\"from_state\":");
	jsonw_str_or_null(&w, t->from_state);
	jsonw_lit(&w, ",\"to_state\":");
	jsonw_str_or_null(&w, t->to_state);
	jsonw_lit(&w, ",\"actor\":");
	jsonw_str_or_null(&w, t->actor);
	jsonw_lit(&w, ",\"detail\":");
	jsonw_str_or_null(&w, t->detail_json);
	jsonw_lit(&w, ",\"at_ms\":");
	jsonw_int(&w, t->at_ms);
	jsonw_lit(&w, "}");
	return jsonw_finish(&w);
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
