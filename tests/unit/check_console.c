/*
 * Console log helpers: opening with rotation, trimming a log that a running
 * hypervisor keeps appending to, and the tail used in failure reasons.
 */
#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "child.h"
#include "error.h"
#include "fsutil.h"
#include "test-util.h"

static char dir[64];

static void
setup(void)
{
	test_tmpdir_new(dir, sizeof(dir), "/tmp/ember-console-XXXXXX");
}

static void
teardown(void)
{
	ck_assert_int_eq(rm_rf(dir), 0);
}

static off_t
size_of(const char *name)
{
	char path[160];
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return stat(path, &st) == 0 ? st.st_size : -1;
}

/* Writes n bytes, the last line saying "END". */
static void
fill(int fd, size_t n)
{
	static char buf[65536];

	memset(buf, 'x', sizeof(buf));
	while (n > 4) {
		size_t k = n - 4 < sizeof(buf) ? n - 4 : sizeof(buf);
		ck_assert_int_eq(write(fd, buf, k), (ssize_t)k);
		n -= k;
	}
	ck_assert_int_eq(write(fd, "END\n", 4), 4);
}

START_TEST(trim_leaves_small_logs_alone)
{
	struct ember_error err = { 0 };
	int fd = console_open(dir, 0, &err);

	ck_assert_int_ge(fd, 0);
	fill(fd, 1000);
	ck_assert_int_eq(console_trim(dir), 0);
	ck_assert_int_eq(size_of("console.log"), 1000);
	ck_assert_int_eq(size_of("console.log.1"), -1);
	close(fd);
}
END_TEST

START_TEST(trim_keeps_the_newest_part_and_the_writer_goes_on)
{
	struct ember_error err = { 0 };
	char path[160], tail[8];
	int fd = console_open(dir, 0, &err), one;

	ck_assert_int_ge(fd, 0);
	fill(fd, CONSOLE_MAX_BYTES + 4096);
	ck_assert_int_eq(console_trim(dir), 1);
	ck_assert_int_eq(size_of("console.log"), 0);
	ck_assert_int_eq(size_of("console.log.1"), CONSOLE_KEEP_BYTES);
	snprintf(path, sizeof(path), "%s/console.log.1", dir);
	one = open(path, O_RDONLY);
	ck_assert_int_eq(pread(one, tail, 4, CONSOLE_KEEP_BYTES - 4), 4);
	ck_assert_int_eq(memcmp(tail, "END\n", 4), 0);
	close(one);
	/* The hypervisor's O_APPEND descriptor continues at the new end. */
	ck_assert_int_eq(write(fd, "after\n", 6), 6);
	ck_assert_int_eq(size_of("console.log"), 6);
	close(fd);
}
END_TEST

START_TEST(open_rotates_a_log_past_the_cap)
{
	struct ember_error err = { 0 };
	int fd = console_open(dir, 0, &err);

	fill(fd, CONSOLE_MAX_BYTES + 1);
	close(fd);
	fd = console_open(dir, 0, &err);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(size_of("console.log"), 0);
	ck_assert_int_eq(size_of("console.log.1"), CONSOLE_MAX_BYTES + 1);
	close(fd);
}
END_TEST

START_TEST(reason_quotes_the_last_lines)
{
	struct ember_error err = { 0 };
	char reason[256];
	int fd = console_open(dir, 0, &err);

	ck_assert_int_eq(write(fd, "booting\nkernel panic\n", 21), 21);
	close(fd);
	console_reason(dir, reason, sizeof(reason));
	ck_assert_ptr_nonnull(strstr(reason, "kernel panic"));
	ck_assert_int_eq(strncmp(reason, "last console lines: ", 20), 0);
}
END_TEST

/* A file outside the VM directory standing in for a secret. */
static void
make_victim(char *path, size_t len)
{
	snprintf(path, len, "%s-victim", dir);
	FILE *f = fopen(path, "we");
	ck_assert_ptr_nonnull(f);
	fputs("secret\n", f);
	fclose(f);
}

static void
plant(const char *target, const char *name)
{
	char path[160];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	ck_assert_int_eq(symlink(target, path), 0);
}

START_TEST(open_replaces_a_planted_symlink)
{
	struct ember_error err = { 0 };
	char victim[128], path[160];
	struct stat st;

	make_victim(victim, sizeof(victim));
	plant(victim, "console.log");
	int fd = console_open(dir, 0, &err);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "boot\n", 5), 5);
	close(fd);
	snprintf(path, sizeof(path), "%s/console.log", dir);
	ck_assert_int_eq(lstat(path, &st), 0);
	ck_assert(S_ISREG(st.st_mode));
	ck_assert_int_eq(stat(victim, &st), 0);
	ck_assert_int_eq(st.st_size, 7);	/* "secret\n", nothing appended */
	unlink(victim);
}
END_TEST

START_TEST(open_refuses_a_fifo_without_blocking)
{
	struct ember_error err = { 0 };
	char path[160];
	struct stat st;

	snprintf(path, sizeof(path), "%s/console.log", dir);
	ck_assert_int_eq(mkfifo(path, 0600), 0);
	int fd = console_open(dir, 0, &err);	/* would block forever if it opened the FIFO */
	ck_assert_int_ge(fd, 0);
	close(fd);
	ck_assert_int_eq(lstat(path, &st), 0);
	ck_assert(S_ISREG(st.st_mode));
}
END_TEST

START_TEST(trim_never_writes_through_a_planted_rotation_name)
{
	struct ember_error err = { 0 };
	char victim[128];
	struct stat st;

	make_victim(victim, sizeof(victim));
	plant(victim, "console.log.1");
	int fd = console_open(dir, 0, &err);
	ck_assert_int_ge(fd, 0);
	fill(fd, CONSOLE_MAX_BYTES + 4096);
	ck_assert_int_eq(console_trim(dir), 1);
	close(fd);
	ck_assert_int_eq(stat(victim, &st), 0);
	ck_assert_int_eq(st.st_size, 7);
	ck_assert_int_eq(size_of("console.log.1"), CONSOLE_KEEP_BYTES);
	unlink(victim);
}
END_TEST

START_TEST(reason_never_reads_through_a_symlink)
{
	char victim[128], reason[600];

	make_victim(victim, sizeof(victim));
	plant(victim, "console.log");
	console_reason(dir, reason, sizeof(reason));
	ck_assert_ptr_null(strstr(reason, "secret"));
	unlink(victim);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("console");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, trim_leaves_small_logs_alone);
	tcase_add_test(tc, trim_keeps_the_newest_part_and_the_writer_goes_on);
	tcase_add_test(tc, open_rotates_a_log_past_the_cap);
	tcase_add_test(tc, reason_quotes_the_last_lines);
	tcase_add_test(tc, open_replaces_a_planted_symlink);
	tcase_add_test(tc, open_refuses_a_fifo_without_blocking);
	tcase_add_test(tc, trim_never_writes_through_a_planted_rotation_name);
	tcase_add_test(tc, reason_never_reads_through_a_symlink);
	suite_add_tcase(s, tc);
	return test_run_suite(s);
}
