/* audit_row: one audit row encoded once (the JSON of its event and of its
 * transition), and the lists audit.c keeps rows in. */
#include "audit_row.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

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
	r->redelivery = ev && ev->redelivery;
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

/* ---- the chain ---- */

void audit_link_free(struct audit_link *l)
{
	free(l->events);
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

bool audit_row_link(struct audit_list *rows, int64_t head_seq,
		    const unsigned char head_hash[AUDIT_HASH_LEN],
		    int64_t recorded_ms, struct audit_link *out)
{
	static EVP_MD *md;
	struct jsonw ev = JSONW_INIT, tr = JSONW_INIT;
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
	memcpy(h, head_hash, AUDIT_HASH_LEN);
	hex[0] = '\\';
	hex[1] = 'x';
	audit_row_hex(h, hex + 2);
	p = hex + 2 + 2 * AUDIT_HASH_LEN;
	jsonw_lit(&ev, "[");
	jsonw_lit(&tr, "[");
	jsonw_lit(&aev, "[");
	jsonw_lit(&atr, "[");
	out->seq = head_seq;
	for (r = rows->head; ok && r; r = r->next) {
		r->ev_chain = r->tr_chain = 0;
		if (r->redelivery) {
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
			ok = audit_row_link_part(&ev, ctx, md, "events",
						 r->ev_chain, recorded_ms,
						 r->ev_json, r->ev_len, h);
			audit_row_hex(h, p);
			p += 2 * AUDIT_HASH_LEN;
		}
		if (ok && r->tr_json) {
			r->tr_chain = ++out->seq;
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
	jsonw_lit(&ev, "]");
	jsonw_lit(&tr, "]");
	jsonw_lit(&aev, "]");
	jsonw_lit(&atr, "]");
	out->events = jsonw_finish(&ev);
	out->transitions = jsonw_finish(&tr);
	out->again_events = jsonw_finish(&aev);
	out->again_transitions = jsonw_finish(&atr);
	out->hashes = hex;
	out->n = out->seq - head_seq;
	memcpy(out->hash, h, AUDIT_HASH_LEN);
	if (!ok || !out->events || !out->transitions || !out->again_events ||
	    !out->again_transitions) {
		audit_link_free(out);
		return false;
	}
	return true;
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
