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
/* The JSON array of the rows' events (or transitions). */
char *audit_row_join(const struct audit_list *rows, bool events);

/* The chain (docs/audit.md): a row's canonical text is the JSON of its
 * part (event or transition) with the table's name, its chain_seq and
 * recorded_at first:
 *   {"table":"events","chain_seq":N,"recorded_at_ms":T,"accept_seq":..}
 * and its row_hash is SHA-256(prev_hash || that text). */
#define AUDIT_HASH_LEN 32

/* A batch linked after the head seq/hash: the parameters of the batch
 * statement and the head it leaves. */
struct audit_link {
	char *events;        /* JSON array of the events' canonical texts */
	char *transitions;   /* the same for the transitions */
	char *again_events;  /* JSON arrays of the redelivery rows' parts,
			      * not linked: each its row JSON with */
	char *again_transitions; /* recorded_at_ms put first */
	char *hashes;        /* the head's hash, then each row's, as one
			      * bytea in hex input form ("\\x...") */
	int64_t n;           /* rows linked (parts: events + transitions) */
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

/* The head as the batch statement names it (chain_seq, hex hash) into
 * *seq_out and hash; false, leaving both alone, if it is not one. */
bool audit_head_parse(const char *seq, const char *hex, int64_t *seq_out,
		      unsigned char hash[AUDIT_HASH_LEN]);

#endif
