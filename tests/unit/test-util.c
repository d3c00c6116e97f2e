/*
 * Fixtures the unit suites share (see test-util.h).
 */
#include <stdio.h>
#include <stdlib.h>

#include "test-util.h"

void
test_tmpdir_new(char *dir, size_t size, const char *tmpl)
{
	snprintf(dir, size, "%s", tmpl);
	ck_assert_ptr_nonnull(mkdtemp(dir));
}

int
test_run_suite(Suite *s)
{
	SRunner *sr = srunner_create(s);
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
