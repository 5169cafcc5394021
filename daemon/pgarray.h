/* pgarray: a one-dimensional PostgreSQL array in its binary wire format,
 * for a statement parameter sent with format 1 (PQsendQueryPrepared's
 * paramFormats).
 *
 * The audit batch sends its events as one array per column (audit.c): the
 * server reads such an array element by element with the column type's
 * receive function, where a JSON array of row objects was parsed three
 * times and each object put in a hash table to be taken apart
 * (docs/BENCHMARKS.md, optimisation 33). The format is array_recv's:
 * ndim, a has-nulls flag, the element type's OID, then for the one
 * dimension its length and lower bound (1), then each element as a
 * 32-bit length (-1: NULL) and its bytes; all big-endian. */
#ifndef ALERTD_PGARRAY_H
#define ALERTD_PGARRAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "jsonw.h"

/* The built-in element types' OIDs (pg_type.dat: fixed in every
 * PostgreSQL release; the server's headers are not a build dependency). */
#define PGARRAY_INT8 20u
#define PGARRAY_INT4 23u
#define PGARRAY_TEXT 25u

struct pgarray {
	struct jsonw w;      /* the header's room, then the elements */
	uint32_t oid;
	int32_t n;
	bool nulls;
};

void pgarray_init(struct pgarray *a, uint32_t elem_oid);
void pgarray_int8(struct pgarray *a, int64_t v);
void pgarray_int4(struct pgarray *a, int32_t v);
/* n bytes of text (valid UTF-8, no NUL: the server checks), or NULL. */
void pgarray_text(struct pgarray *a, const char *s, size_t n);
void pgarray_null(struct pgarray *a);
/* The array's bytes into *out (the caller frees) and their count into
 * *len; false (nothing to free) if a write failed. */
bool pgarray_finish(struct pgarray *a, char **out, int *len)
	__attribute__((warn_unused_result));

#endif
