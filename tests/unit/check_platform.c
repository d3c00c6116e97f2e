/*
 * Unit tests for platform/linux: peer credentials, process start times
 * (including a comm with spaces and parentheses), the pid-plus-start-time
 * identity check, with children that are alive, zombies and reaped, and
 * CPU time and uptime (platform_process_usage), and a helper process let
 * go at teardown (child_runs_forget).
 */
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "child.h"
#include "platform.h"
#include "test-util.h"

/* A child that waits for a byte (or EOF) on a pipe, renaming itself first. */
static pid_t
spawn_waiting_child(int *wfd, const char *comm)
{
	int p[2];
	pid_t pid;
	char c;

	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(p[1]);
		if (comm != NULL)
			prctl(PR_SET_NAME, comm, 0, 0, 0);
		(void)!read(p[0], &c, 1);
		_exit(0);
	}
	close(p[0]);
	*wfd = p[1];
	return pid;
}

static void
finish_child(pid_t pid, int wfd)
{
	int status;

	close(wfd);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
}

START_TEST(peer_creds_of_socketpair_is_self)
{
	int sv[2];
	uid_t uid;
	gid_t gid;
	pid_t pid;

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	ck_assert_int_eq(platform_peer_creds(sv[0], &uid, &gid, &pid), 0);
	ck_assert_uint_eq(uid, getuid());
	ck_assert_uint_eq(gid, getgid());
	ck_assert_int_eq(pid, getpid());
	/* Each output is optional. */
	ck_assert_int_eq(platform_peer_creds(sv[1], NULL, NULL, NULL), 0);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

START_TEST(peer_creds_of_non_socket_fails)
{
	int p[2];
	uid_t uid;

	ck_assert_int_eq(pipe(p), 0);
	ck_assert_int_eq(platform_peer_creds(p[0], &uid, NULL, NULL), -ENOTSOCK);
	close(p[0]);
	close(p[1]);
	ck_assert_int_eq(platform_peer_creds(-1, &uid, NULL, NULL), -EBADF);
}
END_TEST

START_TEST(start_time_of_self_is_stable)
{
	uint64_t a = 0, b = 0;

	ck_assert_int_eq(platform_process_start_time(getpid(), &a), 0);
	ck_assert_uint_gt(a, 0);
	usleep(20000);
	ck_assert_int_eq(platform_process_start_time(getpid(), &b), 0);
	ck_assert_uint_eq(a, b);
}
END_TEST

START_TEST(start_time_of_child_is_not_before_parent)
{
	uint64_t parent, child;
	pid_t pid;
	int wfd;

	pid = spawn_waiting_child(&wfd, NULL);
	ck_assert_int_eq(platform_process_start_time(getpid(), &parent), 0);
	ck_assert_int_eq(platform_process_start_time(pid, &child), 0);
	ck_assert_uint_ge(child, parent);
	finish_child(pid, wfd);
}
END_TEST

START_TEST(start_time_survives_comm_with_spaces_and_parens)
{
	uint64_t before, after;
	pid_t pid;
	int wfd;

	pid = spawn_waiting_child(&wfd, ") 1 2 (x) ");
	/* The child may not have renamed itself yet; poll until it has. */
	for (int i = 0; i < 200; i++) {
		char path[64], comm[64] = "";
		FILE *f;

		snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
		if ((f = fopen(path, "r")) != NULL) {
			(void)!fgets(comm, sizeof(comm), f);
			fclose(f);
		}
		if (comm[0] == ')')
			break;
		usleep(5000);
	}
	ck_assert_int_eq(platform_process_start_time(pid, &before), 0);
	ck_assert_int_eq(platform_process_start_time(pid, &after), 0);
	ck_assert_uint_eq(before, after);
	ck_assert_int_eq(platform_process_matches(pid, before), 1);
	finish_child(pid, wfd);
}
END_TEST

START_TEST(parent_of_a_child_past_an_odd_comm)
{
	pid_t pid, ppid = 0;
	int wfd;

	ck_assert_int_eq(platform_process_parent(getpid(), &ppid), 0);
	ck_assert_int_eq(ppid, getppid());
	pid = spawn_waiting_child(&wfd, ") 1 2 (x) ");
	/* its comm, once renamed, holds spaces, digits and parentheses; read
	 * before and after the rename, the parent is the same */
	for (int i = 0; i < 20; i++) {
		ck_assert_int_eq(platform_process_parent(pid, &ppid), 0);
		ck_assert_int_eq(ppid, getpid());
		usleep(5000);
	}
	finish_child(pid, wfd);
	ck_assert_int_eq(platform_process_parent(pid, &ppid), -ESRCH);
}
END_TEST

START_TEST(start_time_of_reaped_child_is_esrch)
{
	uint64_t t;
	pid_t pid;
	int wfd;

	pid = spawn_waiting_child(&wfd, NULL);
	finish_child(pid, wfd);
	ck_assert_int_eq(platform_process_start_time(pid, &t), -ESRCH);
}
END_TEST

START_TEST(start_time_rejects_non_positive_pid)
{
	uint64_t t;

	ck_assert_int_eq(platform_process_start_time(0, &t), -EINVAL);
	ck_assert_int_eq(platform_process_start_time(-1, &t), -EINVAL);
}
END_TEST

START_TEST(process_matches_self_with_its_start_time)
{
	uint64_t t;

	ck_assert_int_eq(platform_process_start_time(getpid(), &t), 0);
	ck_assert_int_eq(platform_process_matches(getpid(), t), 1);
}
END_TEST

START_TEST(process_matches_rejects_other_start_time)
{
	uint64_t t;

	ck_assert_int_eq(platform_process_start_time(getpid(), &t), 0);
	ck_assert_int_eq(platform_process_matches(getpid(), t + 1), 0);
	ck_assert_int_eq(platform_process_matches(getpid(), t - 1), 0);
	ck_assert_int_eq(platform_process_matches(getpid(), 0), 0);
}
END_TEST

START_TEST(process_matches_rejects_zombie)
{
	siginfo_t info;
	uint64_t t;
	pid_t pid;
	int wfd;

	pid = spawn_waiting_child(&wfd, NULL);
	ck_assert_int_eq(platform_process_start_time(pid, &t), 0);
	ck_assert_int_eq(platform_process_matches(pid, t), 1);
	close(wfd);
	/* Wait for the exit but leave the zombie in place. */
	ck_assert_int_eq(waitid(P_PID, (id_t)pid, &info, WEXITED | WNOWAIT), 0);
	ck_assert_int_eq(platform_process_matches(pid, t), 0);
	ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
	ck_assert_int_eq(platform_process_matches(pid, t), 0);
}
END_TEST

START_TEST(process_matches_rejects_no_pid)
{
	ck_assert_int_eq(platform_process_matches(0, 1), 0);
	ck_assert_int_eq(platform_process_matches(-5, 1), 0);
}
END_TEST

START_TEST(process_usage_grows_with_cpu_spent)
{
	struct platform_process_usage u0, u1;
	struct timespec start, now;
	volatile unsigned long spin = 0;

	ck_assert_int_eq(platform_process_usage(getpid(), &u0), 0);
	ck_assert(u0.uptime_seconds > 0);
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &start);
	do {	/* burn 300 ms of CPU (the kernel counts in clock ticks) */
		for (int i = 0; i < 100000; i++)
			spin++;
		clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now);
	} while ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000 < 300);
	ck_assert_int_eq(platform_process_usage(getpid(), &u1), 0);
	ck_assert_msg(u1.cpu_seconds - u0.cpu_seconds >= 0.2, "CPU seconds %f -> %f",
	    u0.cpu_seconds, u1.cpu_seconds);
	ck_assert(u1.uptime_seconds >= u0.uptime_seconds);
}
END_TEST

START_TEST(process_usage_reads_past_an_odd_comm_and_refuses_zombies)
{
	struct platform_process_usage u;
	siginfo_t info;
	pid_t pid;
	int wfd;

	pid = spawn_waiting_child(&wfd, "a) 1 2 (b");
	ck_assert_int_eq(platform_process_usage(pid, &u), 0);
	ck_assert(u.cpu_seconds >= 0 && u.uptime_seconds >= 0);
	close(wfd);
	ck_assert_int_eq(waitid(P_PID, (id_t)pid, &info, WEXITED | WNOWAIT), 0);
	ck_assert_int_eq(platform_process_usage(pid, &u), -ESRCH);
	ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
	ck_assert_int_eq(platform_process_usage(pid, &u), -ESRCH);
	ck_assert_int_eq(platform_process_usage(0, &u), -EINVAL);
}
END_TEST

START_TEST(self_rss_is_positive_and_grows_with_touched_memory)
{
	long before, after;
	size_t n = 32 << 20;
	char *p;

	before = platform_self_rss_kib();
	ck_assert_int_gt(before, 0);
	p = malloc(n);
	ck_assert_ptr_nonnull(p);
	for (size_t i = 0; i < n; i += 4096)
		((volatile char *)p)[i] = 1;
	after = platform_self_rss_kib();
	ck_assert_int_ge(after, before + 16 * 1024);
	free(p);
}
END_TEST

static void
helper_done(void *ctx, int status, const char *output)
{
	*(int *)ctx = 1;
}

/* A helper still running at teardown is let go: its done never runs, its
 * events go before the base (ASan sees a use after free otherwise). */
START_TEST(helper_running_at_teardown_is_forgotten)
{
	struct event_base *base = event_base_new();
	int p[2], called = 0, status;
	char script[64];

	ck_assert_ptr_nonnull(base);
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	snprintf(script, sizeof(script), "read x < /dev/fd/%d", p[0]);
	const char *argv[] = { "sh", "-c", script, NULL };
	ck_assert_int_eq(child_run_keep(base, argv, &p[0], 1, helper_done, &called), 0);
	close(p[0]);
	ck_assert_int_eq(event_base_loop(base, EVLOOP_NONBLOCK), 0);
	child_runs_forget(base);
	event_base_free(base);
	ck_assert_int_eq(called, 0);
	close(p[1]);	/* the helper reads EOF and exits */
	ck_assert_int_gt(waitpid(-1, &status, 0), 0);
	ck_assert(WIFEXITED(status));

	/* the next base's helpers run as before */
	base = event_base_new();
	const char *argv2[] = { "true", NULL };
	called = 0;
	ck_assert_int_eq(child_run(base, argv2, helper_done, &called), 0);
	ck_assert_int_eq(event_base_dispatch(base), 1);	/* no events left: it finished */
	ck_assert_int_eq(called, 1);
	event_base_free(base);
}
END_TEST

static Suite *
platform_suite(void)
{
	Suite *s = suite_create("platform");
	TCase *tc;

	tc = tcase_create("creds");
	tcase_add_test(tc, peer_creds_of_socketpair_is_self);
	tcase_add_test(tc, peer_creds_of_non_socket_fails);
	suite_add_tcase(s, tc);

	tc = tcase_create("process");
	tcase_add_test(tc, start_time_of_self_is_stable);
	tcase_add_test(tc, start_time_of_child_is_not_before_parent);
	tcase_add_test(tc, start_time_survives_comm_with_spaces_and_parens);
	tcase_add_test(tc, start_time_of_reaped_child_is_esrch);
	tcase_add_test(tc, parent_of_a_child_past_an_odd_comm);
	tcase_add_test(tc, start_time_rejects_non_positive_pid);
	tcase_add_test(tc, process_matches_self_with_its_start_time);
	tcase_add_test(tc, process_matches_rejects_other_start_time);
	tcase_add_test(tc, process_matches_rejects_zombie);
	tcase_add_test(tc, process_matches_rejects_no_pid);
	tcase_add_test(tc, process_usage_grows_with_cpu_spent);
	tcase_add_test(tc, process_usage_reads_past_an_odd_comm_and_refuses_zombies);
	suite_add_tcase(s, tc);

	tc = tcase_create("helpers");
	tcase_add_test(tc, helper_running_at_teardown_is_forgotten);
	suite_add_tcase(s, tc);

	tc = tcase_create("memory");
	tcase_add_test(tc, self_rss_is_positive_and_grows_with_touched_memory);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return test_run_suite(platform_suite());
}
