/* audit_row: the rows of the audit writer (audit.c): each encoded once,
 * when it is recorded, and kept in singly linked lists (queue, batch,
 * retry, spool queue). Internal to the audit module. */
#ifndef ALERTD_AUDIT_ROW_H
#define ALERTD_AUDIT_ROW_H

#include <stdbool.h>
#include <stddef.h>

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
	int alone_failures;             /* data failures in a batch of one */
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

#endif
