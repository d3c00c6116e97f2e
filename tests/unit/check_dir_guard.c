/*
 * dir-guard: ACL grants, and connecting only to the socket inode that was
 * checked (never through a symlink or a hard link, never to a socket of
 * another user). The cases that need a second uid run when the suite runs
 * as root and are reported as skipped otherwise.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dir-guard.h"
#include "fsutil.h"
#include "test-util.h"

#define OTHER_UID 65534

static char dir[64];

static void
setup(void)
{
	test_tmpdir_new(dir, sizeof(dir), "/tmp/ember-guard-XXXXXX");
}

static void
teardown(void)
{
	ck_assert_int_eq(rm_rf(dir), 0);
}

/* A listening socket at dir/name; the fd. */
static int
listen_at(const char *name)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/%s", dir, name);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	ck_assert_int_eq(listen(fd, 4), 0);
	return fd;
}

static void
path_of(const char *name, char *out, size_t len)
{
	snprintf(out, len, "%s/%s", dir, name);
}

START_TEST(connects_to_a_socket_of_the_expected_user)
{
	char path[128];
	int l = listen_at("s"), fd;

	path_of("s", path, sizeof(path));
	fd = guard_unix_connect(path, geteuid());
	ck_assert_int_ge(fd, 0);
	int a = accept(l, NULL, NULL);
	ck_assert_int_ge(a, 0);
	ck_assert_int_eq(write(fd, "x", 1), 1);
	char c;
	ck_assert_int_eq(read(a, &c, 1), 1);
	ck_assert_int_eq(c, 'x');
	close(a);
	close(fd);
	close(l);
}
END_TEST

START_TEST(refuses_a_symlink_to_a_socket)
{
	char path[128], link[128];
	int l = listen_at("real");

	path_of("real", path, sizeof(path));
	path_of("link", link, sizeof(link));
	ck_assert_int_eq(symlink(path, link), 0);
	ck_assert_int_eq(guard_unix_connect(link, geteuid()), -EPERM);
	close(l);
}
END_TEST

START_TEST(refuses_a_hard_link_and_a_regular_file)
{
	char path[128], hard[128], file[128];
	int l = listen_at("real");

	path_of("real", path, sizeof(path));
	path_of("hard", hard, sizeof(hard));
	path_of("file", file, sizeof(file));
	ck_assert_int_eq(link(path, hard), 0);
	ck_assert_int_eq(guard_unix_connect(hard, geteuid()), -EPERM);
	ck_assert_int_eq(guard_unix_connect(path, geteuid()), -EPERM);	/* 2 links now */
	close(open(file, O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
	ck_assert_int_eq(guard_unix_connect(file, geteuid()), -EPERM);
	close(l);
}
END_TEST

START_TEST(refuses_a_socket_of_another_user)
{
	char path[128];
	int l, fd;

	if (geteuid() != 0) {
		fprintf(stderr, "SKIP: refuses_a_socket_of_another_user needs root\n");
		return;
	}
	l = listen_at("s");
	path_of("s", path, sizeof(path));
	ck_assert_int_eq(chown(path, OTHER_UID, OTHER_UID), 0);
	ck_assert_int_eq(guard_unix_connect(path, 0), -EPERM);
	fd = guard_unix_connect(path, OTHER_UID);
	ck_assert_int_ge(fd, 0);
	close(fd);
	close(l);
}
END_TEST

/* Whether uid may open path for writing-into (a directory: W_OK|X_OK). */
static int
uid_may(uid_t uid, const char *path, int mode)
{
	pid_t pid = fork();
	int status;

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		if (setresgid(uid, uid, uid) < 0 || setresuid(uid, uid, uid) < 0)
			_exit(2);
		_exit(access(path, mode) == 0 ? 0 : 1);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status));
	return WEXITSTATUS(status) == 0;
}

START_TEST(grant_lets_one_user_in)
{
	char sub[128];
	int r;

	if (geteuid() != 0) {
		fprintf(stderr, "SKIP: grant_lets_one_user_in needs root\n");
		return;
	}
	ck_assert_int_eq(chmod(dir, 0711), 0);
	path_of("vm", sub, sizeof(sub));
	ck_assert_int_eq(mkdir(sub, 01750), 0);
	ck_assert(!uid_may(OTHER_UID, sub, W_OK | X_OK));
	r = guard_grant(sub, OTHER_UID, GUARD_R | GUARD_W | GUARD_X);
	if (r == -EOPNOTSUPP) {
		fprintf(stderr, "SKIP: grant_lets_one_user_in: no ACLs on /tmp\n");
		return;
	}
	ck_assert_int_eq(r, 0);
	ck_assert(uid_may(OTHER_UID, sub, W_OK | X_OK));
	ck_assert(!uid_may(OTHER_UID - 1, sub, X_OK));
	ck_assert_int_eq(guard_grant(sub, 0, GUARD_R), 0);	/* root: nothing to do */
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("dir_guard");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, connects_to_a_socket_of_the_expected_user);
	tcase_add_test(tc, refuses_a_symlink_to_a_socket);
	tcase_add_test(tc, refuses_a_hard_link_and_a_regular_file);
	tcase_add_test(tc, refuses_a_socket_of_another_user);
	tcase_add_test(tc, grant_lets_one_user_in);
	suite_add_tcase(s, tc);
	return test_run_suite(s);
}
