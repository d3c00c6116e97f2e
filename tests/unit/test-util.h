/*
 * Fixtures the unit suites share: the main() that runs a suite.
 * test-util.c is the ember-test-util library that every suite links
 * (tests/CMakeLists.txt, packaging/agent/CMakeLists.txt).
 */
#ifndef EMBER_TEST_UTIL_H
#define EMBER_TEST_UTIL_H

#include <check.h>

/* Runs every test of s (and frees it); what main() returns. */
int	test_run_suite(Suite *s);

#endif
