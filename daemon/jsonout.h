/* jsonout: jansson output with reals as short as they can be and still
 * read back as the same doubles. jansson prints reals with 17 significant
 * digits by default, so a device's 38.4555 would come back from a parse and
 * a dump as 38.455500000000001; an auditor must see what was sent. */
#ifndef ALERTD_JSONOUT_H
#define ALERTD_JSONOUT_H

#include <stddef.h>

#include <jansson.h>

/* json_dumps with the fewest digits (15..17) that give every real of v
 * back exactly. flags are json_dumps flags without JSON_REAL_PRECISION.
 * Caller frees; NULL on failure. */
char *jsonout_dumps(const json_t *v, size_t flags);

#endif
