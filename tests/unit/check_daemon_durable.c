/*
 * Unit tests for the group-commit writer (daemon/durable.c): contents and
 * callbacks, the latest of several writes of one file winning, directory
 * moves, failures reported to their own job, durable_wait ordering,
 * shutdown answering everything queued, files synced ahead of a later
 * write and trees removed after their batch.
 */
#include <check.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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
	int order;		/* the global call counter when called */
};

static int calls_so_far;

static void
record(void *ctx, int result)
{
	struct result *r = ctx;

	r->calls++;
	r->last = result;
	r->order = ++calls_so_far;
}

static void
setup(void)
{
	struct ember_error err = { 0 };

	test_tmpdir_new(dir, sizeof(dir), "/tmp/check-durable-XXXXXX");
	base = event_base_new();
	ck_assert_ptr_nonnull(base);
	dw = durable_new(base, &err);
	ck_assert_msg(dw != NULL, "%s", err.message);
	calls_so_far = 0;
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

START_TEST(durable_write_lands_and_calls_back)
{
	struct ember_error err = { 0 };
	struct result r = { 0 };
	char path[PATH_MAX];
	struct stat st;

	snprintf(path, sizeof(path), "%s/a.json", dir);
	ck_assert_int_eq(durable_write_take(dw, path, text("one\n"), 4, 0640, record, &r, &err), 0);
	ck_assert_int_eq(r.calls, 0);	/* never from inside the submission */
	durable_flush(dw);
	ck_assert_int_eq(r.calls, 1);
	ck_assert_int_eq(r.last, 0);
	assert_file(path, "one\n");
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_mode & 07777, 0640);
}
END_TEST

START_TEST(durable_latest_write_of_a_file_wins)
{
	struct ember_error err = { 0 };
	struct result r[50] = { 0 };
	struct durable_stats st;
	char path[PATH_MAX], body[32];

	snprintf(path, sizeof(path), "%s/b.json", dir);
	for (int i = 0; i < 50; i++) {
		snprintf(body, sizeof(body), "%d\n", i);
		ck_assert_int_eq(durable_write_take(dw, path, text(body), strlen(body), 0644,
		    record, &r[i], &err), 0);
	}
	durable_flush(dw);
	for (int i = 0; i < 50; i++) {
		ck_assert_int_eq(r[i].calls, 1);
		ck_assert_int_eq(r[i].last, 0);
	}
	assert_file(path, "49\n");
	durable_get_stats(dw, &st);
	ck_assert_uint_eq(st.jobs + st.coalesced, 50);
	ck_assert_uint_le(st.batches, st.jobs);
	ck_assert_uint_gt(st.fsyncs, 0);
}
END_TEST

START_TEST(durable_rename_dir_moves_then_removes)
{
	struct ember_error err = { 0 };
	struct result moved = { 0 }, missing = { 0 };
	char from[PATH_MAX], to[PATH_MAX], file[PATH_MAX];

	snprintf(from, sizeof(from), "%s/vm1", dir);
	snprintf(to, sizeof(to), "%s/.trash-vm1", dir);
	snprintf(file, sizeof(file), "%s/vm.json", from);
	ck_assert_int_eq(mkdir(from, 0750), 0);
	ck_assert_int_eq(atomic_write_file(file, "x", 1, 0644), 0);
	ck_assert_int_eq(durable_rename_dir(dw, from, to, true, record, &moved, &err), 0);
	ck_assert_int_eq(durable_rename_dir(dw, from, to, true, record, &missing, &err), 0);
	durable_flush(dw);
	ck_assert_int_eq(moved.last, 0);
	ck_assert_int_eq(missing.last, 0);	/* nothing to move is no failure */
	ck_assert_int_eq(access(from, F_OK), -1);
	/* the removal runs after the batch is posted: stop the writer to see it */
	durable_free(dw);
	dw = NULL;
	ck_assert_int_eq(access(to, F_OK), -1);
}
END_TEST

START_TEST(durable_failure_goes_to_its_own_job)
{
	struct ember_error err = { 0 };
	struct result bad = { 0 }, good = { 0 };
	char missing[PATH_MAX], fine[PATH_MAX];

	snprintf(missing, sizeof(missing), "%s/no-such-dir/vm.json", dir);
	snprintf(fine, sizeof(fine), "%s/fine.json", dir);
	ck_assert_int_eq(durable_write_take(dw, missing, text("x"), 1, 0644, record, &bad, &err), 0);
	ck_assert_int_eq(durable_write_take(dw, fine, text("y"), 1, 0644, record, &good, &err), 0);
	durable_flush(dw);
	ck_assert_int_eq(bad.last, -ENOENT);
	ck_assert_int_eq(good.last, 0);
	assert_file(fine, "y");
}
END_TEST

START_TEST(durable_wait_answers_in_order_once_durable)
{
	struct ember_error err = { 0 };
	struct result job = { 0 }, w1 = { 0 }, w2 = { 0 }, now = { 0 };
	char path[PATH_MAX];

	/* nothing queued yet: at once */
	ck_assert_int_eq(durable_wait(dw, durable_last_seq(dw), record, &now, &err), 0);
	ck_assert_int_eq(now.calls, 1);
	snprintf(path, sizeof(path), "%s/c.json", dir);
	ck_assert_int_eq(durable_write_take(dw, path, text("c"), 1, 0644, record, &job, &err), 0);
	uint64_t seq = durable_last_seq(dw);
	ck_assert_uint_gt(seq, 0);
	ck_assert_int_eq(durable_wait(dw, seq, record, &w1, &err), 0);
	ck_assert_int_eq(durable_wait(dw, seq, record, &w2, &err), 0);
	durable_flush(dw);
	ck_assert_int_eq(w1.calls, 1);
	ck_assert_int_eq(w2.calls, 1);
	/* the job's own callback first, then the waits in the order asked */
	ck_assert_int_lt(job.order, w1.order);
	ck_assert_int_lt(w1.order, w2.order);
	assert_file(path, "c");
}
END_TEST

START_TEST(durable_free_answers_everything_queued)
{
	struct ember_error err = { 0 };
	struct result r[20] = { 0 }, w = { 0 };
	char path[PATH_MAX];

	for (int i = 0; i < 20; i++) {
		snprintf(path, sizeof(path), "%s/f%d.json", dir, i);
		ck_assert_int_eq(durable_write_take(dw, path, text("z"), 1, 0644, record, &r[i],
		    &err), 0);
	}
	ck_assert_int_eq(durable_wait(dw, durable_last_seq(dw), record, &w, &err), 0);
	durable_free(dw);
	dw = NULL;
	for (int i = 0; i < 20; i++) {
		ck_assert_int_eq(r[i].calls, 1);
		ck_assert_int_eq(r[i].last, 0);
		snprintf(path, sizeof(path), "%s/f%d.json", dir, i);
		assert_file(path, "z");
	}
	ck_assert_int_eq(w.calls, 1);
}
END_TEST

START_TEST(durable_plugged_jobs_share_one_batch)
{
	struct ember_error err = { 0 };
	struct result r[3] = { 0 };
	struct durable_stats st;
	char path[PATH_MAX], sub[PATH_MAX];

	snprintf(sub, sizeof(sub), "%s/vms", dir);
	ck_assert_int_eq(mkdir(sub, 0750), 0);
	durable_plug(dw);
	snprintf(path, sizeof(path), "%s/cids.json", dir);
	ck_assert_int_eq(durable_write_take(dw, path, text("1"), 1, 0644, record, &r[0], &err), 0);
	ck_assert_int_eq(durable_sync_dir(dw, sub, record, &r[1], &err), 0);
	snprintf(path, sizeof(path), "%s/vm.json", sub);
	ck_assert_int_eq(durable_write_take(dw, path, text("2"), 1, 0644, record, &r[2], &err), 0);
	durable_unplug(dw);
	durable_flush(dw);
	durable_get_stats(dw, &st);
	ck_assert_uint_eq(st.batches, 1);
	/* two files, two distinct directories (dir and dir/vms) */
	ck_assert_uint_eq(st.fsyncs, 4);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(r[i].last, 0);
}
END_TEST

START_TEST(durable_many_files_share_one_syncfs)
{
	struct ember_error err = { 0 };
	struct result r[8] = { 0 };
	struct durable_stats st;
	char path[PATH_MAX], body[8];

	durable_plug(dw);
	for (int i = 0; i < 8; i++) {
		snprintf(path, sizeof(path), "%s/m%d.json", dir, i);
		snprintf(body, sizeof(body), "%d", i);
		ck_assert_int_eq(durable_write_take(dw, path, text(body), strlen(body), 0644,
		    record, &r[i], &err), 0);
	}
	durable_unplug(dw);
	durable_flush(dw);
	durable_get_stats(dw, &st);
	ck_assert_uint_eq(st.batches, 1);
	/* one syncfs for the eight files, one fsync of their directory */
	ck_assert_uint_eq(st.fsyncs, 2);
	for (int i = 0; i < 8; i++) {
		ck_assert_int_eq(r[i].last, 0);
		snprintf(path, sizeof(path), "%s/m%d.json", dir, i);
		snprintf(body, sizeof(body), "%d", i);
		assert_file(path, body);
	}
}
END_TEST

START_TEST(durable_completes_through_the_loop)
{
	struct ember_error err = { 0 };
	struct result r = { 0 };
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/loop.json", dir);
	ck_assert_int_eq(durable_write_take(dw, path, text("l"), 1, 0644, record, &r, &err), 0);
	/* The writer wakes the loop through its pipe; run the loop until the
	 * callback came (bounded). */
	for (int i = 0; i < 1000 && r.calls == 0; i++) {
		struct timeval tv = { 0, 10 * 1000 };
		event_base_loopexit(base, &tv);
		event_base_dispatch(base);
	}
	ck_assert_int_eq(r.calls, 1);
	ck_assert_int_eq(r.last, 0);
}
END_TEST

START_TEST(durable_sync_file_answers_before_a_later_write)
{
	struct ember_error err = { 0 };
	struct result synced = { 0 }, missing = { 0 }, written = { 0 };
	struct durable_stats st;
	char data[PATH_MAX], gone[PATH_MAX], json[PATH_MAX];

	snprintf(data, sizeof(data), "%s/rootfs.img", dir);
	snprintf(gone, sizeof(gone), "%s/nothing", dir);
	snprintf(json, sizeof(json), "%s/image.json", dir);
	ck_assert_int_eq(atomic_write_file(data, "data", 4, 0644), 0);
	durable_plug(dw);
	ck_assert_int_eq(durable_sync_file(dw, data, record, &synced, &err), 0);
	ck_assert_int_eq(durable_sync_file(dw, gone, record, &missing, &err), 0);
	ck_assert_int_eq(durable_write_take(dw, json, text("{}\n"), 3, 0644, record, &written,
	    &err), 0);
	durable_unplug(dw);
	durable_flush(dw);
	ck_assert_int_eq(synced.calls, 1);
	ck_assert_int_eq(synced.last, 0);
	ck_assert_int_eq(missing.last, -ENOENT);	/* its own failure, nobody else's */
	ck_assert_int_eq(written.last, 0);
	ck_assert_int_lt(synced.order, written.order);
	assert_file(json, "{}\n");
	durable_get_stats(dw, &st);
	ck_assert_uint_ge(st.fsyncs, 3);	/* the file, the temp file, the directory */
}
END_TEST

START_TEST(durable_remove_dir_removes_the_tree_after_its_batch)
{
	struct ember_error err = { 0 };
	struct result r = { 0 };
	char trash[PATH_MAX], sub[PATH_MAX], file[PATH_MAX];
	struct stat st;

	snprintf(trash, sizeof(trash), "%s/.trash-img", dir);
	snprintf(sub, sizeof(sub), "%s/deep", trash);
	snprintf(file, sizeof(file), "%s/rootfs.img", sub);
	ck_assert_int_eq(mkdir_p(sub, 0755), 0);
	ck_assert_int_eq(atomic_write_file(file, "x", 1, 0644), 0);
	ck_assert_int_eq(durable_remove_dir(dw, trash, record, &r, &err), 0);
	durable_flush(dw);
	ck_assert_int_eq(r.calls, 1);
	ck_assert_int_eq(r.last, 0);
	/* removed by the writer after the batch: done once it stopped */
	durable_free(dw);
	dw = NULL;
	ck_assert_int_eq(lstat(trash, &st), -1);
	ck_assert_int_eq(errno, ENOENT);
}
END_TEST

START_TEST(durable_answers_a_large_batch_over_several_turns)
{
	enum { N = 300 };
	struct ember_error err = { 0 };
	static struct result r[N];
	struct result waited = { 0 };
	char path[PATH_MAX];
	int most = 0, turns = 0;

	memset(r, 0, sizeof(r));
	durable_plug(dw);	/* one batch */
	for (int i = 0; i < N; i++) {
		snprintf(path, sizeof(path), "%s/f%03d.json", dir, i);
		ck_assert_int_eq(durable_write_take(dw, path, text("x"), 1, 0644, record, &r[i],
		    &err), 0);
	}
	ck_assert_int_eq(durable_wait(dw, durable_last_seq(dw), record, &waited, &err), 0);
	durable_unplug(dw);
	/* One turn of the loop at a time (bounded): each runs a slice. */
	for (int i = 0; i < 5000 && waited.calls == 0; i++) {
		int before = calls_so_far;
		event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
		if (calls_so_far > before) {
			turns++;
			if (calls_so_far - before > most)
				most = calls_so_far - before;
		} else
			usleep(1000);	/* the writer is still at the disk */
	}
	ck_assert_int_eq(waited.calls, 1);
	for (int i = 0; i < N; i++) {
		ck_assert_int_eq(r[i].calls, 1);
		ck_assert_int_lt(r[i].order, waited.order);	/* every job before its waiter */
	}
	ck_assert_int_le(most, 64 + 1);		/* a slice, plus the waiter */
	ck_assert_int_ge(turns, N / 64);
}
END_TEST

/* durable_make_dir runs first in its batch: a file queued into the new
 * directory right after it (one plugged batch) lands; a leftover tree at
 * its name is replaced; a move from staging brings staging's files. */
START_TEST(durable_make_dir_comes_before_the_batch_files)
{
	struct ember_error err = { 0 };
	struct result made = { 0 }, wrote = { 0 }, moved = { 0 };
	char vm[PATH_MAX], file[PATH_MAX], stale[PATH_MAX], staging[PATH_MAX], kept[PATH_MAX];
	char vm2[PATH_MAX];
	struct stat st;

	snprintf(vm, sizeof(vm), "%s/vm1", dir);
	snprintf(file, sizeof(file), "%s/vm1/vm.json", dir);
	snprintf(stale, sizeof(stale), "%s/vm1/stale", dir);
	ck_assert_int_eq(mkdir(vm, 0755), 0);	/* a leftover with a file in it */
	ck_assert_int_eq(atomic_write_file(stale, "x", 1, 0644), 0);
	durable_plug(dw);
	ck_assert_int_eq(durable_make_dir(dw, vm, NULL, 0750, record, &made, &err), 0);
	ck_assert_int_eq(durable_write_take(dw, file, text("{}\n"), 3, 0644, record, &wrote,
	    &err), 0);
	durable_unplug(dw);

	snprintf(staging, sizeof(staging), "%s/.create-vm2", dir);
	snprintf(kept, sizeof(kept), "%s/.create-vm2/kernel", dir);
	snprintf(vm2, sizeof(vm2), "%s/vm2", dir);
	ck_assert_int_eq(mkdir(staging, 0750), 0);
	ck_assert_int_eq(atomic_write_file(kept, "k", 1, 0644), 0);
	ck_assert_int_eq(durable_make_dir(dw, vm2, staging, 0750, record, &moved, &err), 0);
	durable_flush(dw);

	ck_assert_int_eq(made.last, 0);
	ck_assert_int_eq(wrote.last, 0);
	ck_assert_int_lt(made.order, wrote.order);
	assert_file(file, "{}\n");
	ck_assert_int_eq(access(stale, F_OK), -1);	/* the leftover went */
	ck_assert_int_eq(stat(vm, &st), 0);
	ck_assert(S_ISDIR(st.st_mode));
	ck_assert_int_eq(moved.last, 0);
	snprintf(kept, sizeof(kept), "%s/vm2/kernel", dir);
	assert_file(kept, "k");
	ck_assert_int_eq(access(staging, F_OK), -1);
}
END_TEST

static Suite *
durable_suite(void)
{
	Suite *s = suite_create("durable");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, durable_write_lands_and_calls_back);
	tcase_add_test(tc, durable_latest_write_of_a_file_wins);
	tcase_add_test(tc, durable_rename_dir_moves_then_removes);
	tcase_add_test(tc, durable_failure_goes_to_its_own_job);
	tcase_add_test(tc, durable_wait_answers_in_order_once_durable);
	tcase_add_test(tc, durable_free_answers_everything_queued);
	tcase_add_test(tc, durable_plugged_jobs_share_one_batch);
	tcase_add_test(tc, durable_many_files_share_one_syncfs);
	tcase_add_test(tc, durable_completes_through_the_loop);
	tcase_add_test(tc, durable_sync_file_answers_before_a_later_write);
	tcase_add_test(tc, durable_remove_dir_removes_the_tree_after_its_batch);
	tcase_add_test(tc, durable_answers_a_large_batch_over_several_turns);
	tcase_add_test(tc, durable_make_dir_comes_before_the_batch_files);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return test_run_suite(durable_suite());
}
