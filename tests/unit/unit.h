/*
 * unit.h - minimal unit-test macros (TAP-like output).
 *
 *	TEST(name) { ... CHECK(cond); ... }
 *	int main(void) { RUN(name); ...; return unit_done(); }
 *
 * Each test case prints "ok NAME" or "not ok NAME: file:line: cond" (the
 * first failed CHECK; later CHECKs in the case still run but are not
 * reported). unit_done() returns 1 if any case failed, for main().
 * Header-only; state is file-local to the one test program.
 */
#ifndef MOAT_UNIT_H
#define MOAT_UNIT_H

#include <stdio.h>

static int unit_failed_cases;	/* cases that failed, whole program */
static const char *unit_fail_where;	/* first failure in current case */
static int unit_fail_line;
static const char *unit_fail_what;

#define TEST(name) static void test_##name(void)

#define CHECK(cond) do { \
	if (!(cond) && unit_fail_where == NULL) { \
		unit_fail_where = __FILE__; \
		unit_fail_line = __LINE__; \
		unit_fail_what = #cond; \
	} \
} while (0)

#define RUN(name) do { \
	unit_fail_where = NULL; \
	test_##name(); \
	if (unit_fail_where == NULL) { \
		printf("ok %s\n", #name); \
	} else { \
		printf("not ok %s: %s:%d: %s\n", #name, unit_fail_where, \
		       unit_fail_line, unit_fail_what); \
		unit_failed_cases++; \
	} \
	fflush(stdout); \
} while (0)

static inline int unit_done(void)
{
	return unit_failed_cases != 0;
}

#endif
