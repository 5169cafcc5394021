/* jsonout: the shortest exact precision, found by printing and reading
 * back; only the audit's payload paths use it, never the hot path. */
#include "jsonout.h"

#include <stdlib.h>

char *jsonout_dumps(const json_t *v, size_t flags)
{
	for (int p = 15; p <= 17; p++) {
		char *text = json_dumps(v, flags | JSON_REAL_PRECISION(p));
		json_t *back;
		int same;

		if (text == NULL || p == 17)
			return text;
		back = json_loads(text, JSON_DECODE_ANY, NULL);
		same = back != NULL && json_equal(back, (json_t *)v);
		json_decref(back);
		if (same)
			return text;
		free(text);
	}
	return NULL;
}
