/*
 * Unit tests for the loop's CPU worker (daemon/worker.c): work runs off the
 * loop's thread, in the order given; each done runs on the loop's thread,
 * after its work, a bounded number per loop turn; worker_free lets queued
 * work finish and reports every item not yet reported as cancelled.
 */
#include <check.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include <event2/event.h>

#include "test-util.h"
#include "worker.h"

#define ITEMS 100

static struct event_base *base;
static struct worker *w;
static pthread_t loop_thread;

struct item {
	int index;
	int worked_at;		/* order among works, from 1 */
	int done_at;		/* order among dones, from 1 */
	bool worked_off_loop;
	bool done_on_loop;
	bool cancelled;
};

static int works, dones;	/* works: the worker's thread only */

static void
work(void *arg)
{
	struct item *it = arg;

	it->worked_at = ++works;
	it->worked_off_loop = !pthread_equal(pthread_self(), loop_thread);
}

static void
done(void *arg, bool cancelled)
{
	struct item *it = arg;

	it->done_at = ++dones;
	it->done_on_loop = pthread_equal(pthread_self(), loop_thread);
	it->cancelled = cancelled;
}

static void
setup(void)
{
	struct ember_error err = { 0 };

	base = event_base_new();
	ck_assert_ptr_nonnull(base);
	w = worker_new(base, &err);
	ck_assert_msg(w != NULL, "%s", err.message);
	loop_thread = pthread_self();
	works = dones = 0;
}

static void
teardown(void)
{
	worker_free(w);
	event_base_free(base);
}

/* Runs the loop one turn at a time until n dones ran (or 10 s passed). */
static int
run_until_dones(int n)
{
	struct timeval tick = { 0, 10000 };
	int turns = 0;

	for (int i = 0; i < 1000 && dones < n; i++) {
		event_base_loopexit(base, &tick);
		event_base_loop(base, EVLOOP_ONCE);
		turns++;
	}
	return turns;
}

START_TEST(works_in_order_off_the_loop_and_dones_on_it)
{
	static struct item items[ITEMS];

	for (int i = 0; i < ITEMS; i++) {
		items[i] = (struct item){ .index = i };
		ck_assert_int_eq(worker_run(w, work, done, &items[i]), 0);
	}
	run_until_dones(ITEMS);
	ck_assert_int_eq(dones, ITEMS);
	ck_assert_uint_eq(worker_backlog(w), 0);
	for (int i = 0; i < ITEMS; i++) {
		ck_assert_int_eq(items[i].worked_at, i + 1);
		ck_assert_int_eq(items[i].done_at, i + 1);
		ck_assert(items[i].worked_off_loop);
		ck_assert(items[i].done_on_loop);
		ck_assert(!items[i].cancelled);
	}
}
END_TEST

START_TEST(a_turn_reports_a_bounded_number)
{
	static struct item items[ITEMS];

	for (int i = 0; i < ITEMS; i++) {
		items[i] = (struct item){ .index = i };
		ck_assert_int_eq(worker_run(w, work, done, &items[i]), 0);
	}
	/* Wait for the thread to finish all the work before the loop runs. */
	for (int spins = 0; spins < 10000 && __atomic_load_n(&works, __ATOMIC_SEQ_CST) < ITEMS;
	    spins++) {
		struct timespec ms = { 0, 1000000 };
		nanosleep(&ms, NULL);	/* polled with a deadline: 10 s */
	}
	ck_assert_int_eq(works, ITEMS);
	event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	ck_assert_int_gt(dones, 0);
	ck_assert_int_lt(dones, ITEMS);	/* the rest waits for later turns */
	run_until_dones(ITEMS);
	ck_assert_int_eq(dones, ITEMS);
}
END_TEST

START_TEST(free_cancels_what_was_not_reported)
{
	static struct item items[ITEMS];

	for (int i = 0; i < ITEMS; i++) {
		items[i] = (struct item){ .index = i };
		ck_assert_int_eq(worker_run(w, work, i % 2 ? done : NULL, &items[i]), 0);
	}
	worker_free(w);
	w = NULL;
	ck_assert_int_eq(works, ITEMS);	/* queued work still ran */
	for (int i = 0; i < ITEMS; i++) {
		ck_assert_int_eq(items[i].worked_at, i + 1);
		if (i % 2) {
			ck_assert(items[i].cancelled);
			ck_assert(items[i].done_on_loop);
		} else
			ck_assert_int_eq(items[i].done_at, 0);
	}
	ck_assert_int_eq(dones, ITEMS / 2);
}
END_TEST

static Suite *
worker_suite(void)
{
	Suite *s = suite_create("worker");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, works_in_order_off_the_loop_and_dones_on_it);
	tcase_add_test(tc, a_turn_reports_a_bounded_number);
	tcase_add_test(tc, free_cancels_what_was_not_reported);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return test_run_suite(worker_suite());
}
