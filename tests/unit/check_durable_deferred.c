/*
 * Unit tests for deferred writes of the group-commit writer
 * (durable_write_deferred in daemon/durable.c, which cids.json uses): the
 * saves of a burst share one job whose contents are made once, on the
 * loop, from the state after the last of them; the writer takes nothing
 * while it is unmade; it keeps its place ahead of a later write and moves
 * behind a later directory rename (the order crash repair relies on); and
 * shutdown, a full queue, a plain write of the same file and a failed fill
 * each leave every save answered. The order in which files reach their
 * names is read from inotify's IN_MOVED_TO events.
 */
#include <check.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "durable.h"
#include "fsutil.h"
#include "test-util.h"

static char dir[64];
static struct event_base *base;
static struct durable *dw;

struct result {
	int calls;
	int last;
};

static void
record(void *ctx, int result)
{
	struct result *r = ctx;

	r->calls++;
	r->last = result;
}

/* What a fill makes: "<state>\n", counting its calls; NULL when failing. */
struct table {
	int state;
	int fills;
	bool fail;
};

static char *
table_text(void *ctx, size_t *len)
{
	struct table *t = ctx;
	char *text;

	t->fills++;
	if (t->fail)
		return NULL;
	ck_assert_int_ge(asprintf(&text, "%d\n", t->state), 0);
	*len = strlen(text);
	return text;
}

static void
setup(void)
{
	struct ember_error err = { 0 };

	test_tmpdir_new(dir, sizeof(dir), "/tmp/check-durable-deferred-XXXXXX");
	base = event_base_new();
	ck_assert_ptr_nonnull(base);
	dw = durable_new(base, &err);
	ck_assert_msg(dw != NULL, "%s", err.message);
}

static void
teardown(void)
{
	durable_free(dw);
	event_base_free(base);
	rm_rf(dir);
}

static char *
text(const char *s)
{
	char *t = strdup(s);

	ck_assert_ptr_nonnull(t);
	return t;
}

static void
assert_file(const char *path, const char *want)
{
	char *got = NULL;

	ck_assert_int_eq(read_file(path, 4096, &got, NULL), 0);
	ck_assert_str_eq(got, want);
	free(got);
}

static void
path_in(char *out, size_t len, const char *name)
{
	snprintf(out, len, "%s/%s", dir, name);
}

/* The names files were renamed to in the watched directories, in order,
 * joined by spaces (temp files never are). */
static void
moved_names(int fd, char *out, size_t len)
{
	char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
	ssize_t n;

	out[0] = '\0';
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		for (char *p = buf; p < buf + n; ) {
			struct inotify_event *ev = (struct inotify_event *)p;
			if ((ev->mask & IN_MOVED_TO) && ev->len > 0) {
				if (out[0] != '\0')
					strncat(out, " ", len - strlen(out) - 1);
				strncat(out, ev->name, len - strlen(out) - 1);
			}
			p += sizeof(*ev) + ev->len;
		}
}

static int
watch_moves(void)
{
	int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_ge(inotify_add_watch(fd, dir, IN_MOVED_TO), 0);
	return fd;
}

START_TEST(deferred_saves_share_one_fill_of_the_last_state)
{
	struct ember_error err = { 0 };
	struct table t = { 0 };
	struct result r[10] = { 0 };
	struct durable_stats st;
	char path[PATH_MAX];

	path_in(path, sizeof(path), "cids.json");
	for (int i = 0; i < 10; i++) {
		t.state = i;
		ck_assert_int_eq(durable_write_deferred(dw, path, 0644, table_text, &t, record,
		    &r[i], &err), 0);
	}
	ck_assert_int_eq(t.fills, 0);	/* never inside a submission */
	durable_flush(dw);
	ck_assert_int_eq(t.fills, 1);
	assert_file(path, "9\n");
	for (int i = 0; i < 10; i++) {
		ck_assert_int_eq(r[i].calls, 1);
		ck_assert_int_eq(r[i].last, 0);
	}
	durable_get_stats(dw, &st);
	ck_assert_uint_eq(st.fills, 1);
	ck_assert_uint_eq(st.jobs, 1);
	ck_assert_uint_eq(st.coalesced, 9);

	/* a later burst gets a job of its own */
	t.state = 42;
	ck_assert_int_eq(durable_write_deferred(dw, path, 0644, table_text, &t, NULL, NULL,
	    &err), 0);
	durable_flush(dw);
	ck_assert_int_eq(t.fills, 2);
	assert_file(path, "42\n");
}
END_TEST

START_TEST(deferred_save_is_made_by_the_loop)
{
	struct ember_error err = { 0 };
	struct table t = { .state = 7 };
	struct result r[3] = { 0 }, waited = { 0 };
	char path[PATH_MAX];
	struct timespec deadline, now;

	path_in(path, sizeof(path), "cids.json");
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(durable_write_deferred(dw, path, 0600, table_text, &t, record,
		    &r[i], &err), 0);
	ck_assert_int_eq(durable_wait(dw, durable_last_seq(dw), record, &waited, &err), 0);
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += 30;
	while (waited.calls == 0) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		ck_assert_msg(now.tv_sec < deadline.tv_sec, "the deferred write never completed");
		/* blocks until the fill timer or the writer's wake-up */
		event_base_loop(base, EVLOOP_ONCE);
	}
	ck_assert_int_eq(t.fills, 1);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(r[i].last, 0);
	assert_file(path, "7\n");
	struct stat st;
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_mode & 07777, 0600);
}
END_TEST

/* A create: the table (saved first) reaches its name before each record
 * saved after it, even when a second create joins the table's job. The
 * writer, idle and woken by the records, waits for the table. */
START_TEST(deferred_save_keeps_its_place_ahead_of_later_writes)
{
	struct ember_error err = { 0 };
	struct table t = { 0 };
	char path[PATH_MAX], order[512];
	int fd = watch_moves();

	path_in(path, sizeof(path), "cids.json");
	t.state = 1;
	ck_assert_int_eq(durable_write_deferred(dw, path, 0644, table_text, &t, NULL, NULL,
	    &err), 0);
	path_in(path, sizeof(path), "a.json");
	ck_assert_int_eq(durable_write_take(dw, path, text("a"), 1, 0644, NULL, NULL, &err), 0);
	t.state = 2;
	path_in(path, sizeof(path), "cids.json");
	ck_assert_int_eq(durable_write_deferred(dw, path, 0644, table_text, &t, NULL, NULL,
	    &err), 0);
	path_in(path, sizeof(path), "b.json");
	ck_assert_int_eq(durable_write_take(dw, path, text("b"), 1, 0644, NULL, NULL, &err), 0);
	durable_flush(dw);
	moved_names(fd, order, sizeof(order));
	ck_assert_str_eq(order, "cids.json a.json b.json");
	ck_assert_int_eq(t.fills, 1);
	path_in(path, sizeof(path), "cids.json");
	assert_file(path, "2\n");
	close(fd);
}
END_TEST

/* A delete: the table saved after a directory was moved away goes behind
 * the move, though the table's job was queued before it. */
START_TEST(deferred_save_moves_behind_a_later_directory_rename)
{
	struct ember_error err = { 0 };
	struct table t = { 0 };
	char path[PATH_MAX], vm[PATH_MAX], trash[PATH_MAX], order[512];
	int fd;

	path_in(vm, sizeof(vm), "vm-x");
	path_in(trash, sizeof(trash), ".trash-x");
	ck_assert_int_eq(mkdir(vm, 0750), 0);
	fd = watch_moves();
	durable_plug(dw);
	path_in(path, sizeof(path), "cids.json");
	t.state = 1;
	ck_assert_int_eq(durable_write_deferred(dw, path, 0644, table_text, &t, NULL, NULL,
	    &err), 0);
	ck_assert_int_eq(durable_rename_dir(dw, vm, trash, false, NULL, NULL, &err), 0);
	t.state = 2;
	ck_assert_int_eq(durable_write_deferred(dw, path, 0644, table_text, &t, NULL, NULL,
	    &err), 0);
	path_in(path, sizeof(path), "c.json");
	ck_assert_int_eq(durable_write_take(dw, path, text("c"), 1, 0644, NULL, NULL, &err), 0);
	durable_unplug(dw);
	durable_flush(dw);
	moved_names(fd, order, sizeof(order));
	ck_assert_str_eq(order, ".trash-x cids.json c.json");
	ck_assert_int_eq(t.fills, 1);
	close(fd);
}
END_TEST

START_TEST(deferred_save_unmade_at_shutdown_is_written_and_answered)
{
	struct ember_error err = { 0 };
	struct table t = { .state = 5 };
	struct result r = { 0 }, waited = { 0 };
	char path[PATH_MAX];

	path_in(path, sizeof(path), "cids.json");
	ck_assert_int_eq(durable_write_deferred(dw, path, 0644, table_text, &t, record, &r,
	    &err), 0);
	ck_assert_int_eq(durable_wait(dw, durable_last_seq(dw), record, &waited, &err), 0);
	durable_free(dw);
	dw = NULL;
	ck_assert_int_eq(t.fills, 1);
	ck_assert_int_eq(r.calls, 1);
	ck_assert_int_eq(r.last, 0);
	ck_assert_int_eq(waited.calls, 1);
	assert_file(path, "5\n");
}
END_TEST

START_TEST(plain_write_supersedes_an_unmade_deferred_one)
{
	struct ember_error err = { 0 };
	struct table t = { .state = 1 };
	struct result r[3] = { 0 };
	char path[PATH_MAX];

	path_in(path, sizeof(path), "cids.json");
	ck_assert_int_eq(durable_write_deferred(dw, path, 0644, table_text, &t, record, &r[0],
	    &err), 0);
	ck_assert_int_eq(durable_write_take(dw, path, text("whole\n"), 6, 0644, record, &r[1],
	    &err), 0);
	durable_flush(dw);
	ck_assert_int_eq(t.fills, 0);
	assert_file(path, "whole\n");
	/* a deferred save after a queued whole write: its own job, after it */
	durable_plug(dw);
	ck_assert_int_eq(durable_write_take(dw, path, text("old\n"), 4, 0644, NULL, NULL,
	    &err), 0);
	t.state = 3;
	ck_assert_int_eq(durable_write_deferred(dw, path, 0644, table_text, &t, record, &r[2],
	    &err), 0);
	durable_unplug(dw);
	durable_flush(dw);
	ck_assert_int_eq(t.fills, 1);
	assert_file(path, "3\n");
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(r[i].calls, 1);
		ck_assert_int_eq(r[i].last, 0);
	}
}
END_TEST

START_TEST(failed_fill_fails_its_saves_alone)
{
	struct ember_error err = { 0 };
	struct table t = { .fail = true };
	struct result r[2] = { 0 }, other = { 0 };
	char path[PATH_MAX];

	path_in(path, sizeof(path), "cids.json");
	ck_assert_int_eq(durable_write_deferred(dw, path, 0644, table_text, &t, record, &r[0],
	    &err), 0);
	ck_assert_int_eq(durable_write_deferred(dw, path, 0644, table_text, &t, record, &r[1],
	    &err), 0);
	path_in(path, sizeof(path), "d.json");
	ck_assert_int_eq(durable_write_take(dw, path, text("d"), 1, 0644, record, &other, &err),
	    0);
	durable_flush(dw);
	ck_assert_int_eq(t.fills, 1);
	for (int i = 0; i < 2; i++) {
		ck_assert_int_eq(r[i].calls, 1);
		ck_assert_int_eq(r[i].last, -ENOMEM);
	}
	ck_assert_int_eq(other.last, 0);
	assert_file(path, "d");
	path_in(path, sizeof(path), "cids.json");
	ck_assert_int_eq(access(path, F_OK), -1);
}
END_TEST

/* Half the queue's bound: crowded (a JSON-RPC batch holds back then), and
 * no longer once the writer has taken the queue. An unmade table keeps the
 * writer from taking anything meanwhile. */
START_TEST(crowded_at_half_the_bound)
{
	enum { HALF = DURABLE_PENDING_MAX / 2 };
	struct ember_error err = { 0 };
	struct table t = { .state = 3 };
	char path[PATH_MAX], name[32];

	ck_assert(!durable_crowded(NULL));
	path_in(path, sizeof(path), "cids.json");
	ck_assert_int_eq(durable_write_deferred(dw, path, 0644, table_text, &t, NULL, NULL,
	    &err), 0);
	for (int i = 0; i < HALF - 2; i++) {	/* the table is one job */
		snprintf(name, sizeof(name), "f%05d", i);
		path_in(path, sizeof(path), name);
		ck_assert_int_eq(durable_write_take(dw, path, text("x"), 1, 0644, NULL, NULL,
		    &err), 0);
		ck_assert_msg(!durable_crowded(dw), "crowded at %d jobs", i + 2);
	}
	path_in(path, sizeof(path), "one-more");
	ck_assert_int_eq(durable_write_take(dw, path, text("x"), 1, 0644, NULL, NULL, &err), 0);
	ck_assert(durable_crowded(dw));
	durable_flush(dw);
	ck_assert(!durable_crowded(dw));
}
END_TEST

/* More jobs than the queue holds while the table is unmade: the loop
 * makes it early and waits for room instead of for itself. */
START_TEST(full_queue_makes_the_deferred_contents_early)
{
	enum { N = DURABLE_PENDING_MAX + 8 };
	struct ember_error err = { 0 };
	struct table t = { .state = 9 };
	struct result last = { 0 };
	struct durable_stats st;
	char path[PATH_MAX], name[32];

	path_in(path, sizeof(path), "cids.json");
	ck_assert_int_eq(durable_write_deferred(dw, path, 0644, table_text, &t, NULL, NULL,
	    &err), 0);
	for (int i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "f%05d", i);
		path_in(path, sizeof(path), name);
		ck_assert_int_eq(durable_write_take(dw, path, text("x"), 1, 0644,
		    i == N - 1 ? record : NULL, &last, &err), 0);
	}
	ck_assert_int_eq(t.fills, 1);	/* made when the queue filled up */
	durable_flush(dw);
	ck_assert_int_eq(last.calls, 1);
	ck_assert_int_eq(last.last, 0);
	durable_get_stats(dw, &st);
	ck_assert_uint_ge(st.waited_for_room, 1);
	ck_assert_uint_eq(st.fills, 1);
	path_in(path, sizeof(path), "cids.json");
	assert_file(path, "9\n");
}
END_TEST

static Suite *
durable_deferred_suite(void)
{
	Suite *s = suite_create("durable_deferred");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, deferred_saves_share_one_fill_of_the_last_state);
	tcase_add_test(tc, deferred_save_is_made_by_the_loop);
	tcase_add_test(tc, deferred_save_keeps_its_place_ahead_of_later_writes);
	tcase_add_test(tc, deferred_save_moves_behind_a_later_directory_rename);
	tcase_add_test(tc, deferred_save_unmade_at_shutdown_is_written_and_answered);
	tcase_add_test(tc, plain_write_supersedes_an_unmade_deferred_one);
	tcase_add_test(tc, failed_fill_fails_its_saves_alone);
	tcase_add_test(tc, full_queue_makes_the_deferred_contents_early);
	tcase_add_test(tc, crowded_at_half_the_bound);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return test_run_suite(durable_deferred_suite());
}
