/*
 * A daemon without a transport for the suites that drive daemon modules
 * directly (check_daemon_lifecycle.c, check_daemon_quota.c): default
 * config, an event base, a CID allocator for 3..100 and a fresh state
 * directory with the subdirectories the suite needs. test-daemon.c is the
 * ember-test-daemon library (tests/CMakeLists.txt).
 */
#ifndef EMBER_TEST_DAEMON_H
#define EMBER_TEST_DAEMON_H

#include "daemon.h"

/*
 * A daemon whose state directory is made from tmpl (ending in XXXXXX) and
 * holds each of the NULL-terminated subdirs; fails the test if it cannot.
 */
struct ember_daemon *test_daemon_new(const char *tmpl, const char *const subdirs[]);

/* Detaches d's VMs, frees what test_daemon_new made and removes the state
 * directory; answering pending operations first is the caller's choice. */
void test_daemon_free(struct ember_daemon *d);

#endif
