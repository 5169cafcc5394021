/* unit: a tiny unit-test runner. A test is
 *
 *     TEST(evt_id_edges)
 *     {
 *             CHECK(evt_id_valid("a", 64));
 *     }
 *
 * TEST registers the function before main() runs (a constructor), so a new
 * test file needs no list to be kept. CHECK records a failure with its file
 * and line and goes on; REQUIRE also leaves the test, for checks that later
 * lines depend on (a NULL pointer). main.c runs every test, or those whose
 * name contains one of the command-line arguments. */
#ifndef ALERTD_UNIT_H
#define ALERTD_UNIT_H

#include <stdbool.h>
#include <string.h>

struct unit_test {
	const char *name;
	void (*fn)(void);
	struct unit_test *next;
};

void unit_register(struct unit_test *t);
/* Records the result of one check; returns ok. */
bool unit_check(bool ok, const char *file, int line, const char *expr);
/* Null-safe string equality for CHECK_STR. */
bool unit_str_eq(const char *a, const char *b);

#define TEST(name)                                                             \
	static void unit_test_##name(void);                                    \
	static struct unit_test unit_reg_##name = {#name, unit_test_##name,   \
						   NULL};                      \
	__attribute__((constructor)) static void unit_ctor_##name(void)        \
	{                                                                      \
		unit_register(&unit_reg_##name);                               \
	}                                                                      \
	static void unit_test_##name(void)

#define CHECK(cond) unit_check(!!(cond), __FILE__, __LINE__, #cond)
#define CHECK_STR(a, b)                                                        \
	unit_check(unit_str_eq((a), (b)), __FILE__, __LINE__,                  \
		   #a " == " #b)
#define REQUIRE(cond)                                                          \
	do {                                                                   \
		if (!CHECK(cond))                                              \
			return;                                                \
	} while (0)

#endif
