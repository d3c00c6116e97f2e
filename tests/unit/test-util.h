/*
 * Fixtures the unit suites share: a fresh temporary directory per test (a
 * teardown removes it with common/fsutil.h's rm_rf) and the main() that
 * runs a suite. test-util.c is the ember-test-util library that every suite
 * links (tests/CMakeLists.txt, packaging/agent/CMakeLists.txt).
 */
#ifndef EMBER_TEST_UTIL_H
#define EMBER_TEST_UTIL_H

#include <stddef.h>

#include <check.h>

/*
 * Makes a new directory from tmpl (a path ending in XXXXXX) and leaves its
 * name in dir (size bytes); fails the test if it cannot.
 */
void	test_tmpdir_new(char *dir, size_t size, const char *tmpl);

/* Runs every test of s (and frees it); what main() returns. */
int	test_run_suite(Suite *s);

#endif
