/*
 * Account lookups and shutdown of daemon/caller-open.c, with the platform
 * half they stand on: a uid's passwd entry is looked up in a helper whose
 * answer (the primary group, or "no such user") arrives on a socket;
 * answers are kept in a bounded table that evicts the oldest;
 * caller_account_resolve answers a trusted or known uid at once and
 * otherwise from the loop, which keeps serving timers meanwhile (or, with
 * no callback, only keeps the answer);
 * caller_opens_fail answers an open that waits on its helper with the
 * shutdown error, makes later opens fail at once, and teardown reaps the
 * helper. Cases that take on another uid need root and say when they skip.
 */
#include <check.h>
#include <errno.h>
#include <poll.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>

#include "caller-open.h"
#include "platform.h"
#include "test-util.h"

#define NOBODY 65534
#define NO_SUCH_UID 3141592653u	/* no passwd entry on a test host */
#define WAIT_MS 10000

static bool
need_root(void)
{
	if (geteuid() == 0)
		return true;
	fprintf(stderr, "SKIP: %s needs root (a uid other than emberd's)\n", tcase_name());
	return false;
}

/* The lookup helper's one answer, waited for with a deadline. */
static int
lookup_and_wait(uid_t uid, gid_t *gid)
{
	struct pollfd pfd = { .events = POLLIN };
	int sock, r;
	pid_t pid = platform_account_lookup_start(uid, 0, &sock);

	ck_assert_int_gt(pid, 0);
	pfd.fd = sock;
	ck_assert_int_eq(poll(&pfd, 1, WAIT_MS), 1);
	r = platform_account_receive(sock, gid);
	close(sock);
	ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
	return r;
}

START_TEST(lookup_answers_primary_group)
{
	struct passwd *pw = getpwuid(NOBODY);
	gid_t gid = 0;

	ck_assert_ptr_nonnull(pw);
	ck_assert_int_eq(lookup_and_wait(NOBODY, &gid), 1);
	ck_assert_uint_eq(gid, pw->pw_gid);
}
END_TEST

START_TEST(lookup_of_unknown_uid_is_enoent)
{
	gid_t gid = 12345;

	ck_assert_int_eq(lookup_and_wait(NO_SUCH_UID, &gid), -ENOENT);
	ck_assert_uint_eq(gid, 12345);
}
END_TEST

START_TEST(table_keeps_answers_and_evicts_oldest)
{
	gid_t gid = 0;

	ck_assert_int_eq(platform_account_gid(4000, &gid), -EAGAIN);
	ck_assert(!platform_account_fresh(4000));
	platform_account_remember(4000, 0, 4001);
	ck_assert(platform_account_fresh(4000));
	platform_account_remember(4002, -ENOENT, 0);
	ck_assert_int_eq(platform_account_gid(4000, &gid), 0);
	ck_assert_uint_eq(gid, 4001);
	ck_assert_int_eq(platform_account_gid(4002, &gid), -ENOENT);
	platform_account_remember(4000, 0, 4003);	/* replaced, not added */
	ck_assert_int_eq(platform_account_gid(4000, &gid), 0);
	ck_assert_uint_eq(gid, 4003);
	/* A failed lookup never replaces an answer; without one it is kept
	 * (fresh, so the next connection does not wait) but gives no group. */
	platform_account_remember(4000, -ETIMEDOUT, 0);
	ck_assert_int_eq(platform_account_gid(4000, &gid), 0);
	ck_assert_uint_eq(gid, 4003);
	platform_account_remember(4004, -ETIMEDOUT, 0);
	ck_assert(platform_account_fresh(4004));
	ck_assert_int_eq(platform_account_gid(4004, &gid), -EAGAIN);
	/* Far more uids than the table holds: the newest are all there. */
	for (uid_t u = 10000; u < 12000; u++)
		platform_account_remember(u, 0, u + 1);
	for (uid_t u = 11900; u < 12000; u++) {
		ck_assert_int_eq(platform_account_gid(u, &gid), 0);
		ck_assert_uint_eq(gid, u + 1);
	}
	ck_assert_int_eq(platform_account_gid(10000, &gid), -EAGAIN);
}
END_TEST

struct resolved {
	int calls;
	uid_t uid;
	int result;
	int ticks_before;	/* timer ticks seen before done ran */
	int ticks;
	struct event_base *base;
};

static void
resolved_cb(void *ctx, uid_t uid, int result)
{
	struct resolved *r = ctx;

	r->calls++;
	r->uid = uid;
	r->result = result;
	r->ticks_before = r->ticks;
	event_base_loopbreak(r->base);
}

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
	((struct resolved *)arg)->ticks++;
}

static void
deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	ck_abort_msg("no answer within %d ms", WAIT_MS);
}

START_TEST(resolve_answers_from_the_loop_and_keeps_it)
{
	struct event_base *base = event_base_new();
	struct resolved r = { .base = base };
	struct timeval every = { 0, 20000 }, limit = { WAIT_MS / 1000, 0 };
	struct event *tick, *deadline;
	struct passwd *pw = getpwuid(NOBODY);
	gid_t gid;

	if (!need_root())
		return;
	ck_assert_ptr_nonnull(pw);
	setenv("EMBER_TEST_ACCOUNT_LOOKUP_DELAY_MS", "300", 1);	/* read once per process */
	ck_assert_int_eq(caller_account_resolve(base, 0, resolved_cb, &r), 1);	/* root */
	ck_assert_int_eq(caller_account_resolve(base, NOBODY, resolved_cb, &r), 0);
	ck_assert_int_eq(caller_account_resolve(base, NOBODY, resolved_cb, &r), 0);	/* joins */
	tick = event_new(base, -1, EV_PERSIST, tick_cb, &r);
	deadline = evtimer_new(base, deadline_cb, NULL);
	event_add(tick, &every);
	evtimer_add(deadline, &limit);
	event_base_dispatch(base);
	ck_assert_int_eq(r.calls, 1);
	ck_assert_uint_eq(r.uid, NOBODY);
	ck_assert_int_eq(r.result, 0);
	ck_assert_int_ge(r.ticks_before, 5);	/* the loop ran on while the helper waited */
	ck_assert_int_eq(platform_account_gid(NOBODY, &gid), 0);
	ck_assert_uint_eq(gid, pw->pw_gid);
	ck_assert_int_eq(caller_account_resolve(base, NOBODY, resolved_cb, &r), 1);
	/* Without done (emberd's VM owners at start): only kept. */
	ck_assert_int_eq(caller_account_resolve(base, NO_SUCH_UID, NULL, NULL), 0);
	for (int i = 0; platform_account_gid(NO_SUCH_UID, &gid) == -EAGAIN; i++) {
		ck_assert_int_lt(i, WAIT_MS / 20);
		event_base_loop(base, EVLOOP_ONCE);	/* the 20 ms tick bounds each turn */
	}
	ck_assert_int_eq(platform_account_gid(NO_SUCH_UID, &gid), -ENOENT);
	ck_assert_int_eq(r.calls, 1);
	event_free(tick);
	event_free(deadline);
	caller_opens_forget(base);	/* reaps the helper if its exit was not seen yet */
	ck_assert_int_eq(waitpid(-1, NULL, WNOHANG), -1);
	ck_assert_int_eq(errno, ECHILD);
	event_base_free(base);
}
END_TEST

struct opened {
	int calls;
	bool failed;
	char message[256];
	int fd;
};

static void
opened_cb(void *ctx, const int *fds, size_t n, const struct ember_error *err)
{
	struct opened *o = ctx;

	o->calls++;
	o->failed = err != NULL;
	if (err != NULL)
		snprintf(o->message, sizeof(o->message), "%s", err->message);
	o->fd = n > 0 ? fds[0] : -1;
}

START_TEST(shutdown_answers_an_open_waiting_on_its_helper)
{
	static const gid_t no_groups[1];
	const struct platform_caller nobody = { NOBODY, NOBODY, no_groups, 0 };
	const struct caller_open_path path = { "kernel", "/etc/hostname", false };
	struct event_base *base = event_base_new();
	struct ember_error why = { 0 };
	struct opened o = { 0 }, later = { 0 };
	struct caller_open *handle = NULL;

	if (!need_root())
		return;
	setenv("EMBER_TEST_OPEN_AS_DELAY_MS", "60000", 1);
	caller_open_start(base, &nobody, &path, 1, &handle, opened_cb, &o);
	ck_assert_ptr_nonnull(handle);	/* waits on its helper */
	ck_assert_int_eq(o.calls, 0);
	ember_error_set(&why, EK_BUSY, NULL, "emberd is shutting down");
	caller_opens_fail(base, &why);
	ck_assert_int_eq(o.calls, 1);
	ck_assert(o.failed);
	ck_assert_int_eq(o.fd, -1);
	ck_assert_str_eq(o.message, "emberd is shutting down");
	caller_opens_fail(base, &why);	/* nothing left to answer */
	ck_assert_int_eq(o.calls, 1);
	caller_open_start(base, &nobody, &path, 1, &handle, opened_cb, &later);
	ck_assert_ptr_null(handle);
	ck_assert_int_eq(later.calls, 1);
	ck_assert(later.failed);
	ck_assert_str_eq(later.message, "emberd is shutting down");
	caller_opens_forget(base);	/* kills and reaps the helper */
	ck_assert_int_eq(waitpid(-1, NULL, WNOHANG), -1);
	ck_assert_int_eq(errno, ECHILD);
	event_base_free(base);
}
END_TEST

static Suite *
caller_open_suite(void)
{
	Suite *s = suite_create("caller_open");
	TCase *tc = tcase_create("accounts");

	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, lookup_answers_primary_group);
	tcase_add_test(tc, lookup_of_unknown_uid_is_enoent);
	tcase_add_test(tc, table_keeps_answers_and_evicts_oldest);
	tcase_add_test(tc, resolve_answers_from_the_loop_and_keeps_it);
	tcase_add_test(tc, shutdown_answers_an_open_waiting_on_its_helper);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return test_run_suite(caller_open_suite());
}
