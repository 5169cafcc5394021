/* numtext: numbers as text on the event path, without printf. */
#include "numtext.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t numtext_i64(char buf[NUMTEXT_I64_LEN], int64_t v)
{
	char tmp[NUMTEXT_I64_LEN];
	uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
	size_t n = 0, len = 0;

	do {
		tmp[n++] = (char)('0' + u % 10);
		u /= 10;
	} while (u > 0);
	if (v < 0)
		buf[len++] = '-';
	while (n > 0)
		buf[len++] = tmp[--n];
	buf[len] = '\0';
	return len;
}

/* The shortest "%.Ng", N from 15 to 17, that reads back as v. */
static size_t numtext_real_printf(char buf[NUMTEXT_REAL_LEN], double v)
{
	int n = 0;

	for (int p = 15; p <= 17; p++) {
		n = snprintf(buf, NUMTEXT_REAL_LEN, "%.*g", p, v);
		if (p == 17 || strtod(buf, NULL) == v)
			break;
	}
	return n > 0 ? (size_t)n : 0;
}

/* Seven decimals: k = |v| * 10^7 must be a whole number below 10^15. */
#define NUMTEXT_DECIMALS 7
#define NUMTEXT_SCALE 1e7

size_t numtext_real(char buf[NUMTEXT_REAL_LEN], double v)
{
	double a = fabs(v);
	char digits[NUMTEXT_I64_LEN];
	int64_t k;
	size_t n, len = 0, whole, frac;

	if (!(a >= 1e-4 && a < 1e8))
		return numtext_real_printf(buf, v);
	k = llround(a * NUMTEXT_SCALE);
	/* k and 10^7 are exact doubles and division rounds correctly, so
	 * k / 10^7 is the double nearest to the decimal k * 10^-7: the one
	 * strtod reads from the text below. If that is v, the text reads
	 * back as v; it has at most 15 significant digits, so "%.15g" rounds
	 * v to the same digits (v is within an ulp of them), and it is the
	 * only decimal with seven places within an ulp of v. */
	if ((double)k / NUMTEXT_SCALE != a)
		return numtext_real_printf(buf, v);
	n = numtext_i64(digits, k);
	if (v < 0)
		buf[len++] = '-';
	if (n > NUMTEXT_DECIMALS) {
		whole = n - NUMTEXT_DECIMALS;
		memcpy(buf + len, digits, whole);
		len += whole;
	} else {
		whole = 0;
		buf[len++] = '0';
	}
	/* The decimals, with the zeros that lead them and without the zeros
	 * that trail them ("%g" drops those, and the point if none is
	 * left). */
	frac = n - whole;
	while (frac > 0 && digits[whole + frac - 1] == '0')
		frac--;
	if (frac > 0) {
		size_t lead = n < NUMTEXT_DECIMALS ? NUMTEXT_DECIMALS - n : 0;

		buf[len++] = '.';
		memset(buf + len, '0', lead);
		len += lead;
		memcpy(buf + len, digits + whole, frac);
		len += frac;
	}
	buf[len] = '\0';
	return len;
}
