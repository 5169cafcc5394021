/* audit_row: the rows of the audit writer (audit.c): each encoded once,
 * when it is recorded, and kept in singly linked lists (queue, batch,
 * retry, spool queue). Internal to the audit module. */
#ifndef ALERTD_AUDIT_ROW_H
#define ALERTD_AUDIT_ROW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "audit.h"

/* A row is encoded once, when it is recorded: the JSON objects of its
 * event and transition (either may be NULL), joined into the batch's
 * arrays when it is sent. */
struct audit_row {
	struct audit_row *next;
	char *ev_json;
	char *tr_json;
	size_t ev_len, tr_len;
	char *label;                    /* keys for the logs, never payload */
	audit_done_cb cb;               /* NULL once answered */
	void *arg;
	bool suspect;                   /* in a batch refused for its data */
	bool from_spool;                /* read back from the spool file */
	bool redelivery;                /* audit_event_row.redelivery */
	int alone_failures;             /* data failures in a batch of one */
	int64_t ev_chain, tr_chain;     /* chain_seq of its parts in the
					 * batch linked last; 0: no part */
	/* The event part's columns, sent as the batch's arrays
	 * (audit_row_link): its strings copied into ev_text, its payload
	 * where it lies (the end of ev_json, or ev_text). ev.event_id NULL:
	 * no event part, or a spooled one that does not read back as a
	 * complete row, sent as NULLs that PostgreSQL refuses alone. */
	struct audit_event_row ev;
	const char *payload;
	size_t payload_len;
	char *ev_text;
};

struct audit_list {
	struct audit_row *head, *tail;
	size_t n;
};

void audit_row_push(struct audit_list *l, struct audit_row *r);
struct audit_row *audit_row_pop(struct audit_list *l);
/* Puts every row of `from` before the rows of `to`, in order. */
void audit_row_prepend(struct audit_list *to, struct audit_list *from);

/* A row without one of the NOT NULL columns can never be written. */
bool audit_row_complete(const struct audit_event_row *ev,
			const struct audit_transition_row *tr);
/* The row, encoded; NULL with *why set when it cannot be. */
struct audit_row *audit_row_new(const struct audit_event_row *ev,
				const struct audit_transition_row *tr,
				const char **why);
void audit_row_free(struct audit_row *r);
/* A row read back from the spool: its parts' JSON as audit_row_new made
 * them (taken over; either may be NULL), its event's columns read from
 * that JSON. NULL: out of memory (both freed). */
struct audit_row *audit_row_spooled(char *ev_json, char *tr_json);

/* The chain (docs/audit.md): a row's canonical text is the JSON of its
 * part (event or transition) with the table's name, its chain_seq and
 * recorded_at first:
 *   {"table":"events","chain_seq":N,"recorded_at_ms":T,"accept_seq":..}
 * and its row_hash is SHA-256(prev_hash || that text). */
#define AUDIT_HASH_LEN 32

/* The columns of the linked events, each sent as one array in binary
 * (pgarray.h), in this order after the batch statement's first eight
 * parameters (audit.c): the canonical text first ($1), the others from
 * $9 on. */
enum audit_ev_col {
	AUDIT_EV_CANON, AUDIT_EV_CHAIN_SEQ, AUDIT_EV_ACCEPT_SEQ,
	AUDIT_EV_EVENT_ID, AUDIT_EV_SOURCE_ID, AUDIT_EV_SOURCE_KIND,
	AUDIT_EV_TYPE, AUDIT_EV_OUTCOME, AUDIT_EV_INCIDENT_ID,
	AUDIT_EV_PRIORITY, AUDIT_EV_OCCURRED_AT, AUDIT_EV_RECEIVED_AT,
	AUDIT_EV_PAYLOAD, AUDIT_EV_NCOLS
};

/* A batch linked after the head seq/hash: the parameters of the batch
 * statement and the head it leaves. */
struct audit_link {
	char *ev[AUDIT_EV_NCOLS]; /* the events' columns, binary arrays */
	int ev_len[AUDIT_EV_NCOLS];
	char *transitions;   /* JSON array of the transitions' canonical texts */
	char *again_events;  /* JSON arrays of the redelivery rows' parts,
			      * not linked: each its row JSON with */
	char *again_transitions; /* recorded_at_ms put first */
	char *hashes;        /* the head's hash, then each row's, as one
			      * bytea in hex input form ("\\x...") */
	int64_t n;           /* rows linked (parts: events + transitions) */
	int64_t n_tr;        /* of them transitions */
	int64_t n_again;     /* redelivery parts, in again_* */
	int64_t head_seq;    /* the head they were linked after */
	int64_t recorded_ms;
	int64_t seq;         /* the head after them */
	unsigned char hash[AUDIT_HASH_LEN];
};

/* Links the rows' parts in order (each row: its event, then its
 * transition), the first after head_seq/head_hash, recorded at
 * recorded_ms; sets each row's ev_chain/tr_chain. Redelivery rows are
 * not linked (ev_chain/tr_chain 0) but put in again_*. false: out of memory
 * or no digest (*out is then empty). */
bool audit_row_link(struct audit_list *rows, int64_t head_seq,
		    const unsigned char head_hash[AUDIT_HASH_LEN],
		    int64_t recorded_ms, struct audit_link *out)
	__attribute__((warn_unused_result));
void audit_link_free(struct audit_link *l);

/* The batch statement's parameters for a link (audit_batch_statement):
 * pointers into l and the texts of its numbers, valid while both live. */
#define AUDIT_BATCH_PARAMS (7 + AUDIT_EV_NCOLS)
struct audit_params {
	const char *values[AUDIT_BATCH_PARAMS];
	int lengths[AUDIT_BATCH_PARAMS];
	int formats[AUDIT_BATCH_PARAMS];
	char head_seq[24], n[24], recorded_ms[24];
};
void audit_link_params(const struct audit_link *l, struct audit_params *p);

/* The head as the batch statement names it (chain_seq, hex hash) into
 * *seq_out and hash; false, leaving both alone, if it is not one. */
bool audit_head_parse(const char *seq, const char *hex, int64_t *seq_out,
		      unsigned char hash[AUDIT_HASH_LEN]);

#endif
