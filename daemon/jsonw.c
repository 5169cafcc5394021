/* jsonw: see jsonw.h. */
#include "jsonw.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "numtext.h"

void jsonw_put(struct jsonw *b, const char *s, size_t n)
{
	if (!b->ok)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		char *p;

		while (b->len + n + 1 > cap)
			cap *= 2;
		p = realloc(b->p, cap);
		if (p == NULL) {
			b->ok = false;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

void jsonw_lit(struct jsonw *b, const char *s)
{
	jsonw_put(b, s, strlen(s));
}

/* Length of the valid UTF-8 sequence at s (jansson's rules: no overlong
 * forms, no surrogates, nothing above U+10FFFF), 0 if invalid. */
static size_t jsonw_utf8_len(const unsigned char *s)
{
	unsigned c = s[0], n, v, i;

	if (c < 0x80)
		return 1;
	if (c < 0xC2)
		return 0;
	n = c < 0xE0 ? 2 : c < 0xF0 ? 3 : c < 0xF5 ? 4 : 0;
	if (n == 0)
		return 0;
	v = c & (0x7Fu >> n);
	for (i = 1; i < n; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		v = v << 6 | (s[i] & 0x3Fu);
	}
	if ((n == 3 && v < 0x800) || (n == 4 && v < 0x10000) ||
	    (v >= 0xD800 && v <= 0xDFFF) || v > 0x10FFFF)
		return 0;
	return n;
}

bool jsonw_utf8_valid(const char *s)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t n;

	while (*u != '\0') {
		if ((n = jsonw_utf8_len(u)) == 0)
			return false;
		u += n;
	}
	return true;
}

/* A JSON string; marks b failed on invalid UTF-8. */
void jsonw_str(struct jsonw *b, const char *s)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t run = 0;

	jsonw_put(b, "\"", 1);
	while (b->ok && u[run] != '\0') {
		unsigned char c = u[run];
		char esc[8];
		size_t n;

		if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
			run++; /* plain ASCII, most of what is written */
			continue;
		}
		if (c >= 0x80) {
			n = jsonw_utf8_len(u + run);
			if (n == 0) {
				b->ok = false;
				return;
			}
			run += n;
			continue;
		}
		jsonw_put(b, (const char *)u, run);
		switch (c) {
		case '"': jsonw_lit(b, "\\\""); break;
		case '\\': jsonw_lit(b, "\\\\"); break;
		case '\b': jsonw_lit(b, "\\b"); break;
		case '\f': jsonw_lit(b, "\\f"); break;
		case '\n': jsonw_lit(b, "\\n"); break;
		case '\r': jsonw_lit(b, "\\r"); break;
		case '\t': jsonw_lit(b, "\\t"); break;
		default:
			snprintf(esc, sizeof(esc), "\\u%04X", c);
			jsonw_lit(b, esc);
		}
		u += run + 1;
		run = 0;
	}
	jsonw_put(b, (const char *)u, run);
	jsonw_put(b, "\"", 1);
}

/* A real printed with "%.<p>g", made to read back as a real. */
void jsonw_real(struct jsonw *b, const char *g)
{
	const char *e = strchr(g, 'e');

	if (e == NULL) {
		jsonw_lit(b, g);
		if (strchr(g, '.') == NULL)
			jsonw_lit(b, ".0");
		return;
	}
	jsonw_put(b, g, (size_t)(e - g) + 1);
	e++;
	if (*e == '-')
		jsonw_put(b, e++, 1);
	else if (*e == '+')
		e++;
	while (*e == '0' && e[1] != '\0')
		e++;
	jsonw_lit(b, e);
}


char *jsonw_finish(struct jsonw *b)
{
	if (!b->ok) {
		free(b->p);
		return NULL;
	}
	return b->p;
}

void jsonw_str_or_null(struct jsonw *b, const char *s)
{
	if (s == NULL)
		jsonw_lit(b, "null");
	else
		jsonw_str(b, s);
}

void jsonw_int(struct jsonw *b, int64_t v)
{
	char num[NUMTEXT_I64_LEN];
	size_t n = numtext_i64(num, v);

	jsonw_put(b, num, n);
}
