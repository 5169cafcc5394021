/* The unit-test runner: one line per test ("ok NAME" or "FAIL NAME:
 * file:line: expr" for its first failed check; later failures of the same
 * test go to stderr), then "unit: N passed, N failed". Exit status 1 if any
 * test failed. Arguments select tests whose name contains one of them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "unit.h"

static struct unit_test *unit_head, *unit_tail;

/* The test running now and its failures. */
static const struct unit_test *unit_current;
static int unit_failures;
static char unit_first[512];

void unit_register(struct unit_test *t)
{
	/* Appended, so tests run in the order they are written. */
	t->next = NULL;
	if (unit_tail != NULL)
		unit_tail->next = t;
	else
		unit_head = t;
	unit_tail = t;
}

bool unit_check(bool ok, const char *file, int line, const char *expr)
{
	if (ok)
		return true;
	if (unit_failures == 0)
		snprintf(unit_first, sizeof(unit_first), "%s:%d: %s", file,
			 line, expr);
	else
		fprintf(stderr, "  also FAIL %s: %s:%d: %s\n",
			unit_current ? unit_current->name : "?", file, line,
			expr);
	unit_failures++;
	return false;
}

bool unit_str_eq(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

static bool unit_selected(const struct unit_test *t, int argc, char **argv)
{
	if (argc <= 1)
		return true;
	for (int i = 1; i < argc; i++)
		if (strstr(t->name, argv[i]) != NULL)
			return true;
	return false;
}

int main(int argc, char **argv)
{
	int passed = 0, failed = 0;

	/* Line-buffered so that a crash shows which test was running. */
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (const struct unit_test *t = unit_head; t != NULL; t = t->next) {
		if (!unit_selected(t, argc, argv))
			continue;
		unit_current = t;
		unit_failures = 0;
		t->fn();
		if (unit_failures == 0) {
			printf("ok %s\n", t->name);
			passed++;
		} else {
			printf("FAIL %s: %s\n", t->name, unit_first);
			failed++;
		}
	}
	unit_current = NULL;
	printf("unit: %d passed, %d failed\n", passed, failed);
	return failed == 0 ? 0 : 1;
}
