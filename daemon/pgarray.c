/* pgarray: see pgarray.h. */
#include "pgarray.h"

#include <endian.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* ndim, flags, element OID, then the dimension's length and lower bound */
#define PGARRAY_HEAD 20

static void pgarray_u32(struct pgarray *a, uint32_t v)
{
	uint32_t be = htobe32(v);

	jsonw_put(&a->w, (const char *)&be, 4);
}

void pgarray_init(struct pgarray *a, uint32_t elem_oid)
{
	static const char room[PGARRAY_HEAD];

	*a = (struct pgarray){.w = JSONW_INIT, .oid = elem_oid};
	jsonw_put(&a->w, room, PGARRAY_HEAD);
}

void pgarray_int8(struct pgarray *a, int64_t v)
{
	uint64_t be = htobe64((uint64_t)v);

	pgarray_u32(a, 8);
	jsonw_put(&a->w, (const char *)&be, 8);
	a->n++;
}

void pgarray_int4(struct pgarray *a, int32_t v)
{
	pgarray_u32(a, 4);
	pgarray_u32(a, (uint32_t)v);
	a->n++;
}

void pgarray_null(struct pgarray *a)
{
	pgarray_u32(a, UINT32_MAX);  /* -1 */
	a->nulls = true;
	a->n++;
}

void pgarray_text(struct pgarray *a, const char *s, size_t n)
{
	if (!s) {
		pgarray_null(a);
		return;
	}
	if (n > INT32_MAX) {
		a->w.ok = false;
		return;
	}
	pgarray_u32(a, (uint32_t)n);
	jsonw_put(&a->w, s, n);
	a->n++;
}

bool pgarray_finish(struct pgarray *a, char **out, int *len)
{
	uint32_t head[5] = {
		htobe32(1), htobe32(a->nulls), htobe32(a->oid),
		htobe32((uint32_t)a->n), htobe32(1),
	};
	size_t n = a->w.len;
	char *p = jsonw_finish(&a->w);

	*out = NULL;
	*len = 0;
	if (!p || n > INT_MAX) {
		free(p);
		return false;
	}
	if (a->n == 0) {
		/* no dimension at all: the empty array */
		head[0] = 0;
		n = PGARRAY_HEAD - 8;
	}
	memcpy(p, head, n < PGARRAY_HEAD ? n : PGARRAY_HEAD);
	*out = p;
	*len = (int)n;
	return true;
}
