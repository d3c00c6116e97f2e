/*
 * fd-keep: the tables of fds that outlive emberd (inherited by name,
 * held and announced to a sink) and the exec layout from fd 3.
 */
#include <check.h>
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fd-keep.h"
#include "test-util.h"

struct sink_log {
	int stores, removes;
	char last[FD_KEEP_NAME_MAX + 1];
};

static struct sink_log sl;

static int
sink_store(void *ctx, const char *name, int fd)
{
	struct sink_log *l = ctx;

	l->stores++;
	snprintf(l->last, sizeof(l->last), "%s", name);
	return 0;
}

static void
sink_remove(void *ctx, const char *name)
{
	struct sink_log *l = ctx;

	l->removes++;
	snprintf(l->last, sizeof(l->last), "%s", name);
}

static void
setup(void)
{
	struct fd_keep_sink s = { sink_store, sink_remove, &sl };

	memset(&sl, 0, sizeof(sl));
	fd_keep_set_sink(&s);
}

static void
teardown(void)
{
	fd_keep_drop_unclaimed();
	fd_keep_set_sink(NULL);
}

static bool
fd_open(int fd)
{
	return fcntl(fd, F_GETFD) >= 0;
}

START_TEST(names_without_colons_or_controls)
{
	char longname[FD_KEEP_NAME_MAX + 2];

	ck_assert(fd_keep_name_valid("vsock/v1/kick0"));
	ck_assert(!fd_keep_name_valid(""));
	ck_assert(!fd_keep_name_valid("a:b"));
	ck_assert(!fd_keep_name_valid("a\nb"));
	ck_assert(!fd_keep_name_valid("a b"));
	memset(longname, 'x', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	ck_assert(!fd_keep_name_valid(longname));
}
END_TEST

START_TEST(inherited_fds_are_taken_once_and_the_rest_dropped)
{
	int a = eventfd(0, EFD_CLOEXEC), b = eventfd(0, EFD_CLOEXEC);

	ck_assert_int_eq(fd_keep_inherit("vsock/v1/kick0", a), 0);
	ck_assert_int_eq(fd_keep_inherit("vsock/v2/kick0", b), 0);
	ck_assert(fd_keep_inherited_prefix("vsock/v1/"));
	ck_assert(!fd_keep_inherited_prefix("vsock/v3/"));
	ck_assert_int_eq(fd_keep_take("vsock/v1/kick0"), a);
	ck_assert_int_eq(fd_keep_take("vsock/v1/kick0"), -ENOENT);
	ck_assert(!fd_keep_inherited_prefix("vsock/v1/"));
	/* v2 is nobody's: closed, and the store told to forget it. */
	ck_assert_uint_eq(fd_keep_drop_unclaimed(), 1);
	ck_assert(!fd_open(b));
	ck_assert_int_eq(sl.removes, 1);
	ck_assert_str_eq(sl.last, "vsock/v2/kick0");
	ck_assert(fd_open(a));
	close(a);
}
END_TEST

START_TEST(a_bad_name_closes_the_fd)
{
	int a = eventfd(0, EFD_CLOEXEC);

	ck_assert_int_eq(fd_keep_inherit("x:y", a), -EINVAL);
	ck_assert(!fd_open(a));
}
END_TEST

START_TEST(hold_announces_and_release_removes)
{
	int a = eventfd(0, EFD_CLOEXEC), b = eventfd(0, EFD_CLOEXEC);
	size_t before = fd_keep_held_count();

	ck_assert_int_eq(fd_keep_hold("vsock/v1/call0", a, false), 0);
	ck_assert_int_eq(sl.stores, 1);
	/* Back from the store: not sent again. */
	ck_assert_int_eq(fd_keep_hold("vsock/v1/call1", b, true), 0);
	ck_assert_int_eq(sl.stores, 1);
	ck_assert_uint_eq(fd_keep_held_count(), before + 2);
	/* Replacing a name drops the store's old fd first. */
	ck_assert_int_eq(fd_keep_hold("vsock/v1/call0", b, false), 0);
	ck_assert_int_eq(sl.removes, 1);
	ck_assert_int_eq(sl.stores, 2);
	ck_assert_uint_eq(fd_keep_held_count(), before + 2);
	fd_keep_release("vsock/v1/call0");
	ck_assert_int_eq(sl.removes, 2);
	/* A detaching device forgets without telling the store. */
	fd_keep_forget("vsock/v1/call1");
	ck_assert_int_eq(sl.removes, 2);
	ck_assert_uint_eq(fd_keep_held_count(), before);
	/* The owner still has its fds. */
	ck_assert(fd_open(a) && fd_open(b));
	close(a);
	close(b);
}
END_TEST

static bool
flag_busy(void *ctx)
{
	return *(bool *)ctx;
}

START_TEST(busy_holders_delay_an_exec)
{
	bool a = false, b = false;

	ck_assert(!fd_keep_busy());
	ck_assert_int_eq(fd_keep_add_busy_check(flag_busy, &a), 0);
	ck_assert_int_eq(fd_keep_add_busy_check(flag_busy, &b), 0);
	ck_assert(!fd_keep_busy());
	b = true;
	ck_assert(fd_keep_busy());
	fd_keep_remove_busy_check(&b);
	ck_assert(!fd_keep_busy());
	fd_keep_remove_busy_check(&a);
}
END_TEST

START_TEST(exec_layout_starts_at_3_with_names)
{
	int p[2];
	pid_t pid;
	int status;

	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		/* Held fds at high numbers, in an order unlike their names'. */
		int x = fcntl(p[1], F_DUPFD_CLOEXEC, 40), y = eventfd(0, EFD_CLOEXEC);
		char want[64];
		const char *names = NULL;
		bool ok;

		fd_keep_set_sink(NULL);
		fd_keep_hold("second", y, false);
		fd_keep_hold("first", x, false);
		if (fd_keep_prepare_exec() != 0)
			_exit(2);
		names = getenv("LISTEN_FDNAMES");
		snprintf(want, sizeof(want), "%d", (int)getpid());
		ok = names != NULL && strcmp(names, "second:first") == 0 &&
		    strcmp(getenv("LISTEN_FDS"), "2") == 0 &&
		    strcmp(getenv("LISTEN_PID"), want) == 0 &&
		    fcntl(3, F_GETFD) == 0 && fcntl(4, F_GETFD) == 0 &&
		    write(4, "k", 1) == 1;	/* fd 4 is the pipe's write end */
		_exit(ok ? 0 : 1);
	}
	close(p[1]);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status));
	ck_assert_int_eq(WEXITSTATUS(status), 0);
	{
		char c = 0;

		ck_assert_int_eq(read(p[0], &c, 1), 1);
		ck_assert_int_eq(c, 'k');
	}
	close(p[0]);
}
END_TEST

static Suite *
fd_keep_suite(void)
{
	Suite *s = suite_create("fd_keep");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, names_without_colons_or_controls);
	tcase_add_test(tc, inherited_fds_are_taken_once_and_the_rest_dropped);
	tcase_add_test(tc, a_bad_name_closes_the_fd);
	tcase_add_test(tc, hold_announces_and_release_removes);
	tcase_add_test(tc, busy_holders_delay_an_exec);
	tcase_add_test(tc, exec_layout_starts_at_3_with_names);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return test_run_suite(fd_keep_suite());
}
