/* audit_row: one audit row encoded once (the JSON of its event and of its
 * transition), and the lists audit.c keeps rows in. */
#include "audit_row.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "jsonw.h"
#include "numtext.h"
#include "pgarray.h"

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
	free(r->ev_text);
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

/* Keeps the event part's columns for the batch's arrays: its strings
 * copied into ev_text, its payload pointed to at the end of ev_json where
 * it is there as it is (it is written last), else copied too. An
 * incomplete part keeps none (ev.event_id NULL). false: out of memory. */
static bool audit_row_keep(struct audit_row *r,
			   const struct audit_event_row *e)
{
	const char *src[5] = {
		e->event_id, e->source_id, e->source_kind, e->type, e->outcome,
	};
	const char **dst[5] = {
		&r->ev.event_id, &r->ev.source_id, &r->ev.source_kind,
		&r->ev.type, &r->ev.outcome,
	};
	size_t len[5], total = 0, plen;
	bool in_json;
	char *p;

	if (!audit_row_complete(e, NULL))
		return true;
	plen = strlen(e->payload_json);
	in_json = r->ev_len > plen &&
		  memcmp(r->ev_json + r->ev_len - 1 - plen, e->payload_json,
			 plen) == 0;
	for (int i = 0; i < 5; i++) {
		len[i] = strlen(src[i]) + 1;
		total += len[i];
	}
	if (!(p = r->ev_text = malloc(total + (in_json ? 0 : plen + 1))))
		return false;
	r->ev = *e;
	r->ev.payload_json = NULL;
	for (int i = 0; i < 5; i++) {
		memcpy(p, src[i], len[i]);
		*dst[i] = p;
		p += len[i];
	}
	r->payload_len = plen;
	if (in_json) {
		r->payload = r->ev_json + r->ev_len - 1 - plen;
	} else {
		memcpy(p, e->payload_json, plen + 1);
		r->payload = p;
	}
	return true;
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
	r->redelivery = ev && ev->redelivery;
	r->ev_len = r->ev_json ? strlen(r->ev_json) : 0;
	r->tr_len = r->tr_json ? strlen(r->tr_json) : 0;
	*why = "out of memory";
	if (ev && !audit_row_keep(r, ev))
		goto fail;
	return r;
fail:
	audit_row_free(r);
	return NULL;
}

/* ---- rows read back from the spool ---- */

static bool audit_row_json_int(json_t *o, const char *key, int64_t *out)
{
	json_t *v = json_object_get(o, key);

	*out = json_integer_value(v);
	return json_is_integer(v);
}

/* A spooled object payload's own text. audit_row_encode_event writes it
 * last, after ,"payload": (which only that member's key can be: inside a
 * JSON string every quote is escaped), so it runs from there to the
 * closing brace; checked against what jansson read. Any other form gets
 * jansson's text of the value. NULL: out of memory. */
static char *audit_row_payload_text(const char *json, size_t len,
				    json_t *want)
{
	static const char key[] = ",\"payload\":";
	const char *at = strstr(json, key);
	char *text = NULL;
	json_t *got = NULL;

	if (at && len > 0 && json[len - 1] == '}') {
		at += sizeof(key) - 1;
		text = strndup(at, (size_t)(json + len - 1 - at));
		got = text ? json_loads(text, JSON_DECODE_ANY, NULL) : NULL;
	}
	if (!got || !json_equal(got, want)) {
		free(text);
		text = json_dumps(want, JSON_COMPACT | JSON_PRESERVE_ORDER |
					JSON_ENCODE_ANY);
	}
	json_decref(got);
	return text;
}

/* The event part's columns from its spooled JSON; a part that does not
 * read back as a complete row keeps none. false: out of memory. */
static bool audit_row_read_back(struct audit_row *r)
{
	json_t *o = json_loads(r->ev_json, 0, NULL), *v;
	struct audit_event_row e = {0};
	char *text = NULL;
	int64_t prio = 0;
	bool ok, kept = true;

	e.event_id = json_string_value(json_object_get(o, "event_id"));
	e.source_id = json_string_value(json_object_get(o, "source_id"));
	e.source_kind = json_string_value(json_object_get(o, "source_kind"));
	e.type = json_string_value(json_object_get(o, "type"));
	e.outcome = json_string_value(json_object_get(o, "outcome"));
	ok = audit_row_json_int(o, "accept_seq", &e.accept_seq) &&
	     audit_row_json_int(o, "incident_id", &e.incident_id) &&
	     audit_row_json_int(o, "received_at_ms", &e.received_at_ms) &&
	     audit_row_json_int(o, "priority", &prio) &&
	     prio >= INT32_MIN && prio <= INT32_MAX;
	e.priority = (int)prio;
	v = json_object_get(o, "occurred_at_ms");
	if (v && !json_is_null(v)) {
		e.has_occurred_at = true;
		ok = ok && audit_row_json_int(o, "occurred_at_ms",
					      &e.occurred_at_ms);
	}
	/* a string: an older alertd's form, or a payload with a newline */
	v = json_object_get(o, "payload");
	if (json_is_string(v))
		e.payload_json = json_string_value(v);
	else if (ok && v && !json_is_null(v))
		kept = (e.payload_json = text =
			audit_row_payload_text(r->ev_json, r->ev_len, v));
	if (ok && kept)
		kept = audit_row_keep(r, &e);
	free(text);
	json_decref(o);
	return kept;
}

struct audit_row *audit_row_spooled(char *ev_json, char *tr_json)
{
	struct audit_row *r = calloc(1, sizeof(*r));

	if (!r) {
		free(ev_json);
		free(tr_json);
		return NULL;
	}
	r->ev_json = ev_json;
	r->tr_json = tr_json;
	r->ev_len = ev_json ? strlen(ev_json) : 0;
	r->tr_len = tr_json ? strlen(tr_json) : 0;
	r->from_spool = true;
	if (!(r->label = strdup("spooled row")) ||
	    (ev_json && !audit_row_read_back(r))) {
		audit_row_free(r);
		return NULL;
	}
	return r;
}

/* ---- the chain ---- */

void audit_link_free(struct audit_link *l)
{
	for (int i = 0; i < AUDIT_EV_NCOLS; i++)
		free(l->ev[i]);
	free(l->transitions);
	free(l->hashes);
	free(l->again_events);
	free(l->again_transitions);
	*l = (struct audit_link){0};
}

static void audit_row_hex(const unsigned char *h, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (int i = 0; i < AUDIT_HASH_LEN; i++) {
		out[2 * i] = digits[h[i] >> 4];
		out[2 * i + 1] = digits[h[i] & 15];
	}
}

/* A redelivery part, not linked: its row JSON with recorded_at_ms put
 * first, appended to the array w. */
static void audit_row_again_part(struct jsonw *w, int64_t recorded_ms,
				 const char *json, size_t len)
{
	if (w->len > 1)
		jsonw_lit(w, ",");
	jsonw_lit(w, "{\"recorded_at_ms\":");
	jsonw_int(w, recorded_ms);
	jsonw_lit(w, ",");
	jsonw_put(w, json + 1, len - 1);
}

/* One part's canonical text, appended to the array w, and its hash
 * after prev (replaced by it). json is the part's row JSON ({"...}). */
static bool audit_row_link_part(struct jsonw *w, EVP_MD_CTX *ctx,
				const EVP_MD *md, const char *table,
				int64_t seq, int64_t recorded_ms,
				const char *json, size_t len,
				unsigned char prev[AUDIT_HASH_LEN])
{
	size_t start;
	unsigned int n = 0;

	if (w->len > 1)
		jsonw_lit(w, ",");
	start = w->len;
	jsonw_lit(w, "{\"table\":\"");
	jsonw_lit(w, table);
	jsonw_lit(w, "\",\"chain_seq\":");
	jsonw_int(w, seq);
	jsonw_lit(w, ",\"recorded_at_ms\":");
	jsonw_int(w, recorded_ms);
	jsonw_lit(w, ",");
	jsonw_put(w, json + 1, len - 1);
	return w->ok &&
	       EVP_DigestInit_ex2(ctx, md, NULL) == 1 &&
	       EVP_DigestUpdate(ctx, prev, AUDIT_HASH_LEN) == 1 &&
	       EVP_DigestUpdate(ctx, w->p + start, w->len - start) == 1 &&
	       EVP_DigestFinal_ex(ctx, prev, &n) == 1 && n == AUDIT_HASH_LEN;
}

/* An event part's columns, appended to the arrays c. */
static void audit_row_ev_cols(struct pgarray *c, const struct audit_row *r,
			      const struct jsonw *canon, int64_t chain)
{
	const struct audit_event_row *e = &r->ev;

	pgarray_text(&c[AUDIT_EV_CANON], canon->p, canon->len);
	pgarray_int8(&c[AUDIT_EV_CHAIN_SEQ], chain);
	if (!e->event_id) {
		for (int i = AUDIT_EV_ACCEPT_SEQ; i < AUDIT_EV_NCOLS; i++)
			pgarray_null(&c[i]);
		return;
	}
	pgarray_int8(&c[AUDIT_EV_ACCEPT_SEQ], e->accept_seq);
	pgarray_text(&c[AUDIT_EV_EVENT_ID], e->event_id, strlen(e->event_id));
	pgarray_text(&c[AUDIT_EV_SOURCE_ID], e->source_id,
		     strlen(e->source_id));
	pgarray_text(&c[AUDIT_EV_SOURCE_KIND], e->source_kind,
		     strlen(e->source_kind));
	pgarray_text(&c[AUDIT_EV_TYPE], e->type, strlen(e->type));
	pgarray_text(&c[AUDIT_EV_OUTCOME], e->outcome, strlen(e->outcome));
	pgarray_int8(&c[AUDIT_EV_INCIDENT_ID], e->incident_id);
	pgarray_int4(&c[AUDIT_EV_PRIORITY], e->priority);
	if (e->has_occurred_at)
		pgarray_int8(&c[AUDIT_EV_OCCURRED_AT], e->occurred_at_ms);
	else
		pgarray_null(&c[AUDIT_EV_OCCURRED_AT]);
	pgarray_int8(&c[AUDIT_EV_RECEIVED_AT], e->received_at_ms);
	pgarray_text(&c[AUDIT_EV_PAYLOAD], r->payload, r->payload_len);
}

bool audit_row_link(struct audit_list *rows, int64_t head_seq,
		    const unsigned char head_hash[AUDIT_HASH_LEN],
		    int64_t recorded_ms, struct audit_link *out)
{
	static const uint32_t oid[AUDIT_EV_NCOLS] = {
		[AUDIT_EV_CANON] = PGARRAY_TEXT,
		[AUDIT_EV_CHAIN_SEQ] = PGARRAY_INT8,
		[AUDIT_EV_ACCEPT_SEQ] = PGARRAY_INT8,
		[AUDIT_EV_EVENT_ID] = PGARRAY_TEXT,
		[AUDIT_EV_SOURCE_ID] = PGARRAY_TEXT,
		[AUDIT_EV_SOURCE_KIND] = PGARRAY_TEXT,
		[AUDIT_EV_TYPE] = PGARRAY_TEXT,
		[AUDIT_EV_OUTCOME] = PGARRAY_TEXT,
		[AUDIT_EV_INCIDENT_ID] = PGARRAY_INT8,
		[AUDIT_EV_PRIORITY] = PGARRAY_INT4,
		[AUDIT_EV_OCCURRED_AT] = PGARRAY_INT8,
		[AUDIT_EV_RECEIVED_AT] = PGARRAY_INT8,
		[AUDIT_EV_PAYLOAD] = PGARRAY_TEXT,
	};
	static EVP_MD *md;
	struct pgarray col[AUDIT_EV_NCOLS];
	struct jsonw canon = JSONW_INIT, tr = JSONW_INIT;
	struct jsonw aev = JSONW_INIT, atr = JSONW_INIT;
	unsigned char h[AUDIT_HASH_LEN];
	EVP_MD_CTX *ctx = NULL;
	struct audit_row *r;
	size_t parts = 0;
	bool ok = true;
	char *hex = NULL, *p;

	*out = (struct audit_link){0};
	for (r = rows->head; r; r = r->next)
		if (!r->redelivery)
			parts += (r->ev_json != NULL) + (r->tr_json != NULL);
	if ((!md && !(md = EVP_MD_fetch(NULL, "SHA256", NULL))) ||
	    !(ctx = EVP_MD_CTX_new()) ||
	    !(hex = malloc(2 + (parts + 1) * 2 * AUDIT_HASH_LEN + 1))) {
		EVP_MD_CTX_free(ctx);
		free(hex);
		return false;
	}
	for (int i = 0; i < AUDIT_EV_NCOLS; i++)
		pgarray_init(&col[i], oid[i]);
	memcpy(h, head_hash, AUDIT_HASH_LEN);
	hex[0] = '\\';
	hex[1] = 'x';
	audit_row_hex(h, hex + 2);
	p = hex + 2 + 2 * AUDIT_HASH_LEN;
	jsonw_lit(&tr, "[");
	jsonw_lit(&aev, "[");
	jsonw_lit(&atr, "[");
	out->seq = out->head_seq = head_seq;
	out->recorded_ms = recorded_ms;
	for (r = rows->head; ok && r; r = r->next) {
		r->ev_chain = r->tr_chain = 0;
		if (r->redelivery) {
			out->n_again += (r->ev_json != NULL) +
					(r->tr_json != NULL);
			if (r->ev_json)
				audit_row_again_part(&aev, recorded_ms,
						     r->ev_json, r->ev_len);
			if (r->tr_json)
				audit_row_again_part(&atr, recorded_ms,
						     r->tr_json, r->tr_len);
			continue;
		}
		if (r->ev_json) {
			r->ev_chain = ++out->seq;
			canon.len = 0;
			ok = audit_row_link_part(&canon, ctx, md, "events",
						 r->ev_chain, recorded_ms,
						 r->ev_json, r->ev_len, h);
			audit_row_ev_cols(col, r, &canon, r->ev_chain);
			audit_row_hex(h, p);
			p += 2 * AUDIT_HASH_LEN;
		}
		if (ok && r->tr_json) {
			r->tr_chain = ++out->seq;
			out->n_tr++;
			ok = audit_row_link_part(&tr, ctx, md,
						 "incident_transitions",
						 r->tr_chain, recorded_ms,
						 r->tr_json, r->tr_len, h);
			audit_row_hex(h, p);
			p += 2 * AUDIT_HASH_LEN;
		}
	}
	*p = '\0';
	EVP_MD_CTX_free(ctx);
	free(canon.p);
	for (int i = 0; i < AUDIT_EV_NCOLS; i++)
		if (!pgarray_finish(&col[i], &out->ev[i], &out->ev_len[i]))
			ok = false;
	jsonw_lit(&tr, "]");
	jsonw_lit(&aev, "]");
	jsonw_lit(&atr, "]");
	out->transitions = jsonw_finish(&tr);
	out->again_events = jsonw_finish(&aev);
	out->again_transitions = jsonw_finish(&atr);
	out->hashes = hex;
	out->n = out->seq - head_seq;
	memcpy(out->hash, h, AUDIT_HASH_LEN);
	if (!ok || !out->transitions || !out->again_events ||
	    !out->again_transitions) {
		audit_link_free(out);
		return false;
	}
	return true;
}

void audit_link_params(const struct audit_link *l, struct audit_params *p)
{
	/* $1 the canonical texts, $2..$8 texts, $9.. the other columns */
	const char *text[8] = {
		NULL, l->transitions, p->head_seq, l->hashes, p->n,
		l->again_events, l->again_transitions, p->recorded_ms,
	};

	numtext_i64(p->head_seq, l->head_seq);
	numtext_i64(p->n, l->n);
	numtext_i64(p->recorded_ms, l->recorded_ms);
	for (int i = 0; i < 8; i++) {
		p->values[i] = text[i];
		p->lengths[i] = 0;
		p->formats[i] = 0;
	}
	p->values[0] = l->ev[AUDIT_EV_CANON];
	p->lengths[0] = l->ev_len[AUDIT_EV_CANON];
	p->formats[0] = 1;
	for (int i = 1; i < AUDIT_EV_NCOLS; i++) {
		p->values[7 + i] = l->ev[i];
		p->lengths[7 + i] = l->ev_len[i];
		p->formats[7 + i] = 1;
	}
}

bool audit_head_parse(const char *seq, const char *hex, int64_t *seq_out,
		      unsigned char hash[AUDIT_HASH_LEN])
{
	unsigned char *h;
	long n = 0;

	if (!(h = OPENSSL_hexstr2buf(hex, &n)))
		return false;
	if (n == AUDIT_HASH_LEN) {
		*seq_out = strtoll(seq, NULL, 10);
		memcpy(hash, h, AUDIT_HASH_LEN);
	}
	OPENSSL_free(h);
	return n == AUDIT_HASH_LEN;
}
