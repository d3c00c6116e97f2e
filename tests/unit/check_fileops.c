/*
 * Disk copies for forks: content equal, holes kept (a sparse 64 MiB file
 * with a few written blocks copies as a few blocks), an existing target
 * refused, nothing left behind on failure.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../platform/linux/fileops.h"
#include "test-util.h"

static char dir[64], src[96], dst[96];

static void
setup(void)
{
	snprintf(dir, sizeof(dir), "/var/tmp/ember-fileops-XXXXXX");
	if (mkdtemp(dir) == NULL)
		test_tmpdir_new(dir, sizeof(dir), "/tmp/ember-fileops-XXXXXX");
	snprintf(src, sizeof(src), "%s/src.img", dir);
	snprintf(dst, sizeof(dst), "%s/dst.img", dir);
}

static void
teardown(void)
{
	unlink(src);
	unlink(dst);
	rmdir(dir);
}

/* A 64 MiB file holding "block N" at 1 MiB, 10 MiB and its last 4 KiB. */
static void
make_sparse_source(void)
{
	static const off_t at[] = { 1 << 20, 10 << 20, (64 << 20) - 4096 };
	int fd = open(src, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	char block[4096];

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, 64 << 20), 0);
	for (size_t i = 0; i < 3; i++) {
		memset(block, 'a' + (int)i, sizeof(block));
		ck_assert_int_eq(pwrite(fd, block, sizeof(block), at[i]), (ssize_t)sizeof(block));
	}
	close(fd);
}

static int
same_content(const char *a, const char *b)
{
	FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
	int ca, cb, same = fa != NULL && fb != NULL;

	while (same) {
		ca = fgetc(fa);
		cb = fgetc(fb);
		if (ca != cb)
			same = 0;
		if (ca == EOF || cb == EOF)
			break;
	}
	if (fa != NULL)
		fclose(fa);
	if (fb != NULL)
		fclose(fb);
	return same;
}

START_TEST(copy_is_equal_and_stays_sparse)
{
	struct stat st;
	int reflinked = -1;

	make_sparse_source();
	ck_assert_int_eq(file_copy_sparse(src, dst, 0640, &reflinked), 0);
	ck_assert(reflinked == 0 || reflinked == 1);
	ck_assert(same_content(src, dst));
	ck_assert_int_eq(stat(dst, &st), 0);
	ck_assert_int_eq(st.st_size, 64 << 20);
	ck_assert_uint_eq(st.st_mode & 0777, 0640);
	/* Three 4 KiB blocks of data, not 64 MiB (generous for fs overhead). */
	ck_assert_int_lt((long long)st.st_blocks * 512, 4 << 20);
}
END_TEST

START_TEST(copy_refuses_an_existing_target)
{
	int reflinked, fd = open(dst, O_WRONLY | O_CREAT, 0644);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "keep", 4), 4);
	close(fd);
	make_sparse_source();
	ck_assert_int_eq(file_copy_sparse(src, dst, 0640, &reflinked), -EEXIST);
	struct stat st;
	ck_assert_int_eq(stat(dst, &st), 0);
	ck_assert_int_eq(st.st_size, 4);
}
END_TEST

START_TEST(copy_of_a_missing_source_leaves_nothing)
{
	int reflinked;

	ck_assert_int_eq(file_copy_sparse(src, dst, 0640, &reflinked), -ENOENT);
	ck_assert_int_eq(access(dst, F_OK), -1);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("fileops");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, copy_is_equal_and_stays_sparse);
	tcase_add_test(tc, copy_refuses_an_existing_target);
	tcase_add_test(tc, copy_of_a_missing_source_leaves_nothing);
	suite_add_tcase(s, tc);
	return test_run_suite(s);
}
