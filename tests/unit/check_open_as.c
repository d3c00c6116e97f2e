/*
 * platform_open_as: a path opens with the caller's uid, gid and groups and
 * fails with exactly the errno the caller's own open gets; a directory the
 * caller cannot search hides whether a file exists in it; symlinks resolve
 * as the caller; devices and FIFOs are refused before they are opened; the
 * fd is close-on-exec and no helper process is left behind; the
 * asynchronous form opens several paths in one helper, answering each in
 * order and stopping at the first failure. Needs root to
 * take on another uid; otherwise the cases say they were skipped.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "platform.h"
#include "fsutil.h"
#include "test-util.h"

#define NOBODY 65534
#define TIMEOUT_MS 10000

static char dir[64];
static const gid_t no_groups[1];
static const struct platform_caller nobody = { NOBODY, NOBODY, no_groups, 0 };

static void
path_in(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", dir, name);
}

static void
write_file(const char *path, const char *text, mode_t mode, gid_t gid)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	ck_assert_int_eq(fchown(fd, 0, gid), 0);
	ck_assert_int_eq(fchmod(fd, mode), 0);
	close(fd);
}

static bool
need_root(void)
{
	if (geteuid() == 0)
		return true;
	fprintf(stderr, "SKIP: %s needs root to take on another uid\n", tcase_name());
	return false;
}

static void
setup(void)
{
	test_tmpdir_new(dir, sizeof(dir), "/tmp/ember-open-as-XXXXXX");
	chmod(dir, 0755);
}

static void
teardown(void)
{
	ck_assert_int_eq(rm_rf(dir), 0);
	/* Every helper was reaped. */
	ck_assert_int_eq(waitpid(-1, NULL, WNOHANG), -1);
	ck_assert_int_eq(errno, ECHILD);
}

START_TEST(opens_a_readable_file_as_the_caller)
{
	char path[128], buf[16] = { 0 };
	struct stat st;
	int fd;

	if (!need_root())
		return;
	path_in(path, sizeof(path), "public");
	write_file(path, "hello", 0644, 0);
	fd = platform_open_as(&nobody, path, 0, TIMEOUT_MS, &st);
	ck_assert_int_ge(fd, 0);
	ck_assert(S_ISREG(st.st_mode));
	ck_assert_int_eq(read(fd, buf, sizeof(buf) - 1), 5);
	ck_assert_str_eq(buf, "hello");
	ck_assert(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	ck_assert_int_eq(fcntl(fd, F_GETFL) & O_ACCMODE, O_RDONLY);
	close(fd);
}
END_TEST

START_TEST(unreadable_file_fails_with_eacces)
{
	char path[128];

	if (!need_root())
		return;
	path_in(path, sizeof(path), "secret");
	write_file(path, "root only", 0600, 0);
	ck_assert_int_eq(platform_open_as(&nobody, path, 0, TIMEOUT_MS, NULL), -EACCES);
	ck_assert_int_eq(platform_open_as(&nobody, "/etc/shadow", 0, TIMEOUT_MS, NULL), -EACCES);
}
END_TEST

START_TEST(closed_directory_hides_whether_a_file_exists)
{
	char sub[128], present[160], absent[160];

	if (!need_root())
		return;
	path_in(sub, sizeof(sub), "closed");
	ck_assert_int_eq(mkdir(sub, 0700), 0);
	snprintf(present, sizeof(present), "%s/present", sub);
	snprintf(absent, sizeof(absent), "%s/absent", sub);
	write_file(present, "x", 0644, 0);
	ck_assert_int_eq(platform_open_as(&nobody, present, 0, TIMEOUT_MS, NULL), -EACCES);
	ck_assert_int_eq(platform_open_as(&nobody, absent, 0, TIMEOUT_MS, NULL), -EACCES);
	ck_assert_int_eq(platform_open_as(&nobody, sub, PLATFORM_OPEN_DIRECTORY, TIMEOUT_MS, NULL),
	    -EACCES);
}
END_TEST

START_TEST(symlink_resolves_as_the_caller)
{
	char secret[128], link_path[128];

	if (!need_root())
		return;
	path_in(secret, sizeof(secret), "secret");
	path_in(link_path, sizeof(link_path), "innocent");
	write_file(secret, "root only", 0600, 0);
	ck_assert_int_eq(symlink(secret, link_path), 0);
	ck_assert_int_eq(platform_open_as(&nobody, link_path, 0, TIMEOUT_MS, NULL), -EACCES);
}
END_TEST

START_TEST(supplementary_group_grants_access)
{
	static const gid_t group[] = { 4242 };
	const struct platform_caller member = { NOBODY, NOBODY, group, 1 };
	char path[128];
	int fd;

	if (!need_root())
		return;
	path_in(path, sizeof(path), "group");
	write_file(path, "for 4242", 0640, 4242);
	fd = platform_open_as(&member, path, 0, TIMEOUT_MS, NULL);
	ck_assert_int_ge(fd, 0);
	close(fd);
	ck_assert_int_eq(platform_open_as(&nobody, path, 0, TIMEOUT_MS, NULL), -EACCES);
}
END_TEST

START_TEST(unknown_groups_are_refused)
{
	const struct platform_caller unknown = { NOBODY, NOBODY, NULL, 0 };

	ck_assert_int_eq(platform_open_as(&unknown, "/etc/hostname", 0, TIMEOUT_MS, NULL), -EPERM);
}
END_TEST

START_TEST(devices_and_fifos_are_refused)
{
	char fifo[128];
	struct stat st;

	if (!need_root())
		return;
	ck_assert_int_eq(platform_open_as(&nobody, "/dev/null", 0, TIMEOUT_MS, &st), -EINVAL);
	ck_assert(S_ISCHR(st.st_mode));
	path_in(fifo, sizeof(fifo), "fifo");
	ck_assert_int_eq(mkfifo(fifo, 0666), 0);
	/* Opening a FIFO for reading would block until a writer comes. */
	ck_assert_int_eq(platform_open_as(&nobody, fifo, 0, TIMEOUT_MS, &st), -EINVAL);
	ck_assert(S_ISFIFO(st.st_mode));
}
END_TEST

START_TEST(directory_only_when_asked)
{
	char file[128];
	struct stat st;
	int fd;

	if (!need_root())
		return;
	fd = platform_open_as(&nobody, dir, PLATFORM_OPEN_DIRECTORY, TIMEOUT_MS, &st);
	ck_assert_int_ge(fd, 0);
	ck_assert(S_ISDIR(st.st_mode));
	close(fd);
	ck_assert_int_eq(platform_open_as(&nobody, dir, 0, TIMEOUT_MS, &st), -EINVAL);
	ck_assert(S_ISDIR(st.st_mode));
	path_in(file, sizeof(file), "file");
	write_file(file, "x", 0644, 0);
	ck_assert_int_eq(platform_open_as(&nobody, file, PLATFORM_OPEN_DIRECTORY, TIMEOUT_MS, &st),
	    -EINVAL);
	ck_assert(S_ISREG(st.st_mode));
	ck_assert_int_eq(platform_open_as(&nobody, "/nonexistent/x", 0, TIMEOUT_MS, &st), -ENOENT);
	ck_assert_int_eq(st.st_mode, 0);
}
END_TEST

/* platform_open_as_start: answers one path after another, in order, and
 * stops after the first that fails. */
START_TEST(several_paths_answer_in_order_until_one_fails)
{
	char a[128], b[128], secret[128], buf[8] = { 0 };
	struct pollfd pfd = { .events = POLLIN };
	int sock, result, fds[3], status;
	size_t got = 0;
	struct stat st;
	pid_t pid;

	if (!need_root())
		return;
	path_in(a, sizeof(a), "a");
	path_in(b, sizeof(b), "b");
	path_in(secret, sizeof(secret), "secret");
	write_file(a, "A", 0644, 0);
	write_file(b, "B", 0644, 0);
	write_file(secret, "S", 0600, 0);
	const struct platform_open_path paths[] = { { a, 0 }, { b, 0 }, { secret, 0 }, { a, 0 } };
	pid = platform_open_as_start(&nobody, paths, 4, 0, &sock);
	ck_assert_int_gt(pid, 0);
	ck_assert(fcntl(sock, F_GETFD) & FD_CLOEXEC);
	ck_assert(fcntl(sock, F_GETFL) & O_NONBLOCK);
	pfd.fd = sock;
	while (got < 3) {
		ck_assert_int_eq(poll(&pfd, 1, TIMEOUT_MS), 1);
		int r = platform_open_as_receive(sock, &result, &st);
		ck_assert_int_ge(r, 0);
		if (r == 1)
			fds[got++] = result;
	}
	ck_assert_int_ge(fds[0], 0);
	ck_assert_int_eq(read(fds[0], buf, 1), 1);
	ck_assert_str_eq(buf, "A");
	ck_assert_int_ge(fds[1], 0);
	ck_assert_int_eq(read(fds[1], buf, 1), 1);
	ck_assert_str_eq(buf, "B");
	ck_assert_int_eq(fds[2], -EACCES);
	/* Nothing after the failure: the helper exits, the socket ends. */
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	ck_assert_int_eq(platform_open_as_receive(sock, &result, NULL), -EIO);
	close(fds[0]);
	close(fds[1]);
	close(sock);
}
END_TEST

static Suite *
open_as_suite(void)
{
	Suite *s = suite_create("open_as");
	TCase *tc = tcase_create("open_as");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, opens_a_readable_file_as_the_caller);
	tcase_add_test(tc, unreadable_file_fails_with_eacces);
	tcase_add_test(tc, closed_directory_hides_whether_a_file_exists);
	tcase_add_test(tc, symlink_resolves_as_the_caller);
	tcase_add_test(tc, supplementary_group_grants_access);
	tcase_add_test(tc, unknown_groups_are_refused);
	tcase_add_test(tc, devices_and_fifos_are_refused);
	tcase_add_test(tc, directory_only_when_asked);
	tcase_add_test(tc, several_paths_answer_in_order_until_one_fails);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return test_run_suite(open_as_suite());
}
