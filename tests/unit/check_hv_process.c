/*
 * The hypervisor-process helper both Linux backends share: a spawned
 * process's identity in the record, the operation in flight routed to its
 * done exactly once, the stop ladder's rungs (and the one a paused guest
 * skips), re-adoption only of the very process, and running out of file
 * descriptors failing the spawn instead of ending the daemon.
 */
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>

#include "linux/hv-process.h"
#include "platform.h"
#include "test-util.h"

/* What the fake backend saw. */
static struct {
	struct event_base *base;
	struct hv_process *proc;
	struct vm_record rec;
	int asked_guest, asked_quit, guest_answer;
	int exits, exit_status;
	int dones, done_failed;
	int host_exits;
	char host_reason[256];
	char done_message[256];
} t;

static int
ask_guest(void *ctx)
{
	t.asked_guest++;
	return t.guest_answer;
}

static int
ask_quit(void *ctx)
{
	t.asked_quit++;
	return -1;	/* no channel: SIGTERM */
}

static void
host_exited(void *vm_ctx, int status, const char *reason)
{
	t.host_exits++;
	snprintf(t.host_reason, sizeof(t.host_reason), "%s", reason ? reason : "");
}

static const struct backend_host host = { .exited = host_exited };

static void
exited(void *ctx, pid_t pid, int status)
{
	struct hv_exit x = hv_process_take_exit(t.proc, status);
	struct ember_error start_err = { 0 };

	t.exits++;
	t.exit_status = status;
	ember_error_set(&start_err, EK_BACKEND_ERROR, NULL, "died while starting");
	hv_process_free(t.proc);
	t.proc = NULL;
	hv_route_exit(&host, NULL, &x, &start_err, "it crashed", "Fake");
	event_base_loopbreak(t.base);
}

static void
done(void *vm_ctx, const struct ember_error *err)
{
	t.dones++;
	t.done_failed = err != NULL;
	snprintf(t.done_message, sizeof(t.done_message), "%s", err ? err->message : "");
}

static const struct hv_process_ops ops = {
	.label = "Fake", .ask_guest = ask_guest, .ask_quit = ask_quit, .exited = exited,
};

static void
setup(void)
{
	memset(&t, 0, sizeof(t));
	t.base = event_base_new();
	ck_assert_ptr_nonnull(t.base);
}

static void
teardown(void)
{
	hv_process_free(t.proc);
	event_base_free(t.base);
}

/* Runs the loop until the process exited, at most 30 s. */
static void
run_until_exit(void)
{
	struct timeval deadline = { 30, 0 };

	event_base_loopexit(t.base, &deadline);
	event_base_dispatch(t.base);
	ck_assert_int_eq(t.exits, 1);
}

static int
spawn(const char *script)
{
	const char *argv[] = { "/bin/sh", "-c", script, NULL };
	struct ember_error err = { 0 };

	return hv_process_spawn(t.base, &ops, NULL, NULL, argv, -1, NULL, 0, &t.rec, &t.proc,
	    &err);
}

START_TEST(spawn_records_identity_and_a_start_fails_on_exit)
{
	struct ember_error err = { 0 };

	ck_assert_int_eq(spawn("exit 3"), 0);
	ck_assert_int_gt(t.rec.pid, 0);
	ck_assert_uint_gt(t.rec.pid_start_time, 0);
	ck_assert_int_eq(hv_op_begin(t.proc, HV_OP_START, done, &err), 0);
	run_until_exit();
	ck_assert(WIFEXITED(t.exit_status) && WEXITSTATUS(t.exit_status) == 3);
	/* the start's done hears it, the daemon's exited does not */
	ck_assert_int_eq(t.dones, 1);
	ck_assert(t.done_failed);
	ck_assert_str_eq(t.done_message, "died while starting");
	ck_assert_int_eq(t.host_exits, 0);
}
END_TEST

START_TEST(a_second_operation_is_refused_not_dropped)
{
	struct ember_error err = { 0 };

	ck_assert_int_eq(spawn("exec sleep 60"), 0);
	ck_assert_int_eq(hv_op_begin(t.proc, HV_OP_PAUSE, done, &err), 0);
	ck_assert_int_eq(hv_op_begin(t.proc, HV_OP_STOP, done, &err), -1);
	ck_assert_int_eq(err.kind, EK_BUSY);
	hv_op_finish(t.proc, NULL);
	ck_assert_int_eq(t.dones, 1);
	ck_assert(!t.done_failed);
	hv_process_kill(t.proc, SIGKILL);
	run_until_exit();
	/* no operation in flight: only the daemon hears the crash */
	ck_assert_int_eq(t.dones, 1);
	ck_assert_int_eq(t.host_exits, 1);
	ck_assert_str_eq(t.host_reason, "it crashed");
}
END_TEST

START_TEST(stop_asks_the_guest_then_the_hypervisor_then_terms)
{
	struct ember_error err = { 0 };

	ck_assert_int_eq(spawn("exec sleep 60"), 0);
	ck_assert_int_eq(hv_op_begin(t.proc, HV_OP_STOP, done, &err), 0);
	t.guest_answer = 0;	/* asked, but the guest never acts: 1 s, then quit */
	hv_process_stop(t.proc, false, false, 1, 30);
	run_until_exit();
	ck_assert_int_eq(t.asked_guest, 1);
	ck_assert_int_eq(t.asked_quit, 1);
	ck_assert(WIFSIGNALED(t.exit_status) && WTERMSIG(t.exit_status) == SIGTERM);
	/* a stop completes with the exit; the daemon hears no crash reason */
	ck_assert_int_eq(t.dones, 1);
	ck_assert(!t.done_failed);
	ck_assert_int_eq(t.host_exits, 1);
	ck_assert_str_eq(t.host_reason, "");
}
END_TEST

START_TEST(stop_of_a_paused_guest_skips_asking_it)
{
	struct ember_error err = { 0 };

	ck_assert_int_eq(spawn("exec sleep 60"), 0);
	ck_assert_int_eq(hv_op_begin(t.proc, HV_OP_STOP, done, &err), 0);
	/* with a 600 s timeout, only skipping the guest's rung ends this soon */
	hv_process_stop(t.proc, false, true, 600, 30);
	run_until_exit();
	ck_assert_int_eq(t.asked_guest, 0);
	ck_assert_int_eq(t.asked_quit, 1);
	ck_assert_int_eq(t.dones, 1);
}
END_TEST

START_TEST(force_stop_kills)
{
	struct ember_error err = { 0 };

	ck_assert_int_eq(spawn("trap '' TERM; while :; do sleep 1; done"), 0);
	ck_assert_int_eq(hv_op_begin(t.proc, HV_OP_STOP, done, &err), 0);
	hv_process_stop(t.proc, true, false, 600, 600);
	run_until_exit();
	ck_assert(WIFSIGNALED(t.exit_status) && WTERMSIG(t.exit_status) == SIGKILL);
	ck_assert_int_eq(t.asked_guest + t.asked_quit, 0);
}
END_TEST

START_TEST(adopt_only_the_same_process)
{
	struct ember_error err = { 0 };
	struct vm_record rec = { 0 };
	struct hv_process *p = NULL;

	ck_assert_int_eq(spawn("exec sleep 60"), 0);
	rec.pid = t.rec.pid;
	rec.pid_start_time = t.rec.pid_start_time + 1;	/* a reused pid */
	ck_assert_int_eq(hv_process_adopt(t.base, &ops, NULL, NULL, &rec, &p, &err), -1);
	ck_assert_ptr_nonnull(strstr(err.message, "is gone"));
	rec.pid_start_time = t.rec.pid_start_time;
	ember_error_clear(&err);
	ck_assert_int_eq(hv_process_adopt(t.base, &ops, NULL, NULL, &rec, &p, &err), 0);
	hv_process_free(p);
	hv_process_kill(t.proc, SIGKILL);
	run_until_exit();
}
END_TEST

START_TEST(no_fd_for_the_pidfd_fails_the_spawn)
{
	struct rlimit old, low;
	int probe, r;

	/* The next descriptor emberd would get is the last one allowed: the
	 * child is forked (no fd needed), the pidfd is refused. */
	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
	probe = dup(0);
	ck_assert_int_ge(probe, 0);
	close(probe);
	low = old;
	low.rlim_cur = (rlim_t)probe;
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
	{
		const char *argv[] = { "/bin/sh", "-c", "exec sleep 60", NULL };
		struct ember_error err = { 0 };
		r = hv_process_spawn(t.base, &ops, NULL, NULL, argv, -1, NULL, 0, &t.rec, &t.proc,
		    &err);
		ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
		ck_assert_int_eq(r, -1);
		ck_assert_ptr_nonnull(strstr(err.message, "cannot watch Fake"));
		ck_assert_ptr_nonnull(strstr(err.hint, "out of file descriptors"));
	}
	ck_assert_ptr_null(t.proc);
	/* the child was killed and reaped: none is left */
	ck_assert_int_eq(waitpid(-1, NULL, WNOHANG), -1);
	ck_assert_int_eq(errno, ECHILD);
}
END_TEST

static Suite *
hv_process_suite(void)
{
	Suite *s = suite_create("hv_process");
	TCase *tc = tcase_create("hv_process");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, spawn_records_identity_and_a_start_fails_on_exit);
	tcase_add_test(tc, a_second_operation_is_refused_not_dropped);
	tcase_add_test(tc, stop_asks_the_guest_then_the_hypervisor_then_terms);
	tcase_add_test(tc, stop_of_a_paused_guest_skips_asking_it);
	tcase_add_test(tc, force_stop_kills);
	tcase_add_test(tc, adopt_only_the_same_process);
	tcase_add_test(tc, no_fd_for_the_pidfd_fails_the_spawn);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return test_run_suite(hv_process_suite());
}
