/* jsonw: JSON text written directly into one growing buffer, for the
 * hot paths where building a jansson tree and dumping it cost more than
 * the rest of the work (docs/BENCHMARKS.md, optimisations 2 and 17).
 *
 * The output is byte for byte what jansson's json_dumps(JSON_COMPACT)
 * gives for the same values in the same order: '"', '\\' and control
 * characters escaped (\u00XX in upper case), UTF-8 kept as it is and
 * invalid UTF-8 refused (the writer fails), reals as "%.<p>g" with ".0"
 * added to integral values and the exponent without '+' or leading zeros.
 * Parsing stays with jansson. A failed write (no memory, invalid UTF-8)
 * makes every later call a no-op and jsonw_finish return NULL. */
#ifndef ALERTD_JSONW_H
#define ALERTD_JSONW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct jsonw {
	char *p;
	size_t len, cap;
	bool ok;
};

#define JSONW_INIT {.ok = true}

/* n raw bytes / a raw NUL-terminated text (punctuation, keys). */
void jsonw_put(struct jsonw *b, const char *s, size_t n);
void jsonw_lit(struct jsonw *b, const char *s);

/* A JSON string; fails the writer on invalid UTF-8. */
void jsonw_str(struct jsonw *b, const char *s);

/* A JSON string, or null for NULL. */
void jsonw_str_or_null(struct jsonw *b, const char *s);

/* An integer. */
void jsonw_int(struct jsonw *b, int64_t v);

/* A real already printed with "%.<p>g", made to read back as a real. */
void jsonw_real(struct jsonw *b, const char *g);

/* Whether s is valid UTF-8 by jansson's rules. */
bool jsonw_utf8_valid(const char *s);

/* The text (caller frees), or NULL if any write failed (then nothing is
 * left to free). */
char *jsonw_finish(struct jsonw *b);

#endif
