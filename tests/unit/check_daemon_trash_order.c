/*
 * Unit tests for a directory moved to trash through the group-commit
 * writer (daemon/durable.c, durable_rename_dir with remove_after) when
 * writes inside it are still queued: a deleted VM's last vm.json and the
 * move of its directory in one batch. The write is skipped and answered
 * 0 in its place (its directory's sync would otherwise find the directory
 * gone and log "cannot write"); a write queued after the move still fails
 * loudly, and a neighbour whose name shares the prefix is written. The
 * trees are removed between batches, one at a time: a write queued while
 * many are still there is written first.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
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
static int calls_so_far;

struct result {
	int calls;
	int last;
	int order;		/* calls_so_far when called */
};

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

	test_tmpdir_new(dir, sizeof(dir), "/tmp/check-trash-order-XXXXXX");
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

/* dir/<name> with a vm.json, as a VM's directory; its paths in the bufs. */
static void
make_vm_dir(const char *name, char *vm_dir, char *vm_json, char *trash)
{
	snprintf(vm_dir, PATH_MAX, "%s/%s", dir, name);
	snprintf(vm_json, PATH_MAX, "%s/vm.json", vm_dir);
	snprintf(trash, PATH_MAX, "%s/.trash-%s-1", dir, name);
	ck_assert_int_eq(mkdir(vm_dir, 0750), 0);
	ck_assert_int_eq(atomic_write_file(vm_json, "old\n", 4, 0644), 0);
}

START_TEST(trash_move_skips_the_queued_writes_inside_it)
{
	struct ember_error err = { 0 };
	struct result saved = { 0 }, synced = { 0 }, moved = { 0 }, other = { 0 };
	char vm_dir[PATH_MAX], vm_json[PATH_MAX], trash[PATH_MAX], sibling[PATH_MAX];
	char *got = NULL;

	make_vm_dir("vm1", vm_dir, vm_json, trash);
	/* vm10 shares vm1's prefix: it is not inside vm1 */
	snprintf(sibling, sizeof(sibling), "%s/vm10", dir);
	ck_assert_int_eq(mkdir(sibling, 0750), 0);
	snprintf(sibling, sizeof(sibling), "%s/vm10/vm.json", dir);
	durable_plug(dw);	/* one batch, as vm_remove's */
	ck_assert_int_eq(durable_write_take(dw, vm_json, text("stopped\n"), 8, 0644, record,
	    &saved, &err), 0);
	ck_assert_int_eq(durable_sync_dir(dw, vm_dir, record, &synced, &err), 0);
	ck_assert_int_eq(durable_write_take(dw, sibling, text("vm10\n"), 5, 0644, record,
	    &other, &err), 0);
	ck_assert_int_eq(durable_rename_dir(dw, vm_dir, trash, true, record, &moved, &err), 0);
	durable_unplug(dw);
	durable_flush(dw);
	ck_assert_int_eq(saved.calls, 1);
	ck_assert_int_eq(synced.calls, 1);
	ck_assert_int_eq(moved.calls, 1);
	ck_assert_int_eq(other.calls, 1);
	ck_assert_int_eq(saved.last, 0);	/* was -ENOENT: vm1's sync found it gone */
	ck_assert_int_eq(synced.last, 0);
	ck_assert_int_eq(moved.last, 0);
	ck_assert_int_eq(other.last, 0);
	ck_assert_int_lt(saved.order, moved.order);	/* answered in their places */
	ck_assert_int_lt(synced.order, moved.order);
	ck_assert_int_eq(access(vm_dir, F_OK), -1);
	ck_assert_int_eq(read_file(sibling, 4096, &got, NULL), 0);
	ck_assert_str_eq(got, "vm10\n");	/* a neighbour's write is written */
	free(got);
}
END_TEST

/* The queue is walked only for a directory that holds queued work
 * (durable.c's under[] counters): work two levels down counts, and a move
 * of a directory with nothing queued inside leaves the rest alone. */
START_TEST(trash_move_finds_work_deep_inside_and_only_there)
{
	struct ember_error err = { 0 };
	struct result deep = { 0 }, moved = { 0 }, empty_moved = { 0 }, other = { 0 };
	char vm_dir[PATH_MAX], vm_json[PATH_MAX], trash[PATH_MAX], sub[PATH_MAX];
	char file[PATH_MAX], empty[PATH_MAX], empty_json[PATH_MAX], empty_trash[PATH_MAX];

	make_vm_dir("vm4", vm_dir, vm_json, trash);
	make_vm_dir("vm5", empty, empty_json, empty_trash);
	snprintf(sub, sizeof(sub), "%s/a", vm_dir);
	ck_assert_int_eq(mkdir(sub, 0750), 0);
	snprintf(sub, sizeof(sub), "%s/a/b", vm_dir);
	ck_assert_int_eq(mkdir(sub, 0750), 0);
	snprintf(file, sizeof(file), "%s/state", sub);
	durable_plug(dw);
	ck_assert_int_eq(durable_write_take(dw, file, text("deep\n"), 5, 0644, record, &deep,
	    &err), 0);
	ck_assert_int_eq(durable_write_take(dw, vm_json, text("vm4\n"), 4, 0644, record, &other,
	    &err), 0);
	ck_assert_int_eq(durable_rename_dir(dw, empty, empty_trash, true, record, &empty_moved,
	    &err), 0);
	ck_assert_int_eq(durable_rename_dir(dw, vm_dir, trash, true, record, &moved, &err), 0);
	durable_unplug(dw);
	durable_flush(dw);
	ck_assert_int_eq(deep.last, 0);		/* skipped, not -ENOENT */
	ck_assert_int_eq(other.last, 0);
	ck_assert_int_eq(empty_moved.last, 0);
	ck_assert_int_eq(moved.last, 0);
	ck_assert_int_eq(access(vm_dir, F_OK), -1);
	ck_assert_int_eq(access(empty, F_OK), -1);
}
END_TEST

START_TEST(write_queued_after_the_move_still_fails)
{
	struct ember_error err = { 0 };
	struct result late = { 0 }, moved = { 0 };
	char vm_dir[PATH_MAX], vm_json[PATH_MAX], trash[PATH_MAX];

	make_vm_dir("vm3", vm_dir, vm_json, trash);
	durable_plug(dw);
	ck_assert_int_eq(durable_rename_dir(dw, vm_dir, trash, true, record, &moved, &err), 0);
	ck_assert_int_eq(durable_write_take(dw, vm_json, text("late\n"), 5, 0644, record, &late,
	    &err), 0);
	durable_unplug(dw);
	durable_flush(dw);
	ck_assert_int_eq(moved.last, 0);
	ck_assert_int_eq(late.calls, 1);
	ck_assert_int_eq(late.last, -ENOENT);	/* a late write is a bug: never hidden */
	ck_assert_int_eq(access(vm_dir, F_OK), -1);
}
END_TEST

/* Trees of TREE_FILES files each: removing TREES of them takes the writer
 * about 0.1 s, against the microseconds the test takes to queue its write. */
#define TREES		40
#define TREE_FILES	100

static int
trees_left(void)
{
	char path[PATH_MAX];
	int n = 0;

	for (int i = 0; i < TREES; i++) {
		snprintf(path, sizeof(path), "%s/.trash-t%d-1", dir, i);
		n += access(path, F_OK) == 0;
	}
	return n;
}

START_TEST(a_write_is_not_held_behind_the_trash)
{
	struct ember_error err = { 0 };
	struct result moved[TREES], written = { 0 };
	char tree[PATH_MAX], trash[PATH_MAX], file[PATH_MAX + 16];
	int left;

	memset(moved, 0, sizeof(moved));
	for (int i = 0; i < TREES; i++) {
		snprintf(tree, sizeof(tree), "%s/t%d", dir, i);
		ck_assert_int_eq(mkdir(tree, 0750), 0);
		for (int k = 0; k < TREE_FILES; k++) {
			snprintf(file, sizeof(file), "%s/f%d", tree, k);
			int fd = open(file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
			ck_assert_int_ge(fd, 0);
			close(fd);
		}
	}
	durable_plug(dw);	/* one batch moves them all */
	for (int i = 0; i < TREES; i++) {
		snprintf(tree, sizeof(tree), "%s/t%d", dir, i);
		snprintf(trash, sizeof(trash), "%s/.trash-t%d-1", dir, i);
		ck_assert_int_eq(durable_rename_dir(dw, tree, trash, true, record, &moved[i],
		    &err), 0);
	}
	durable_unplug(dw);
	durable_flush(dw);	/* moved; the writer now removes the trees */
	for (int i = 0; i < TREES; i++)
		ck_assert_int_eq(moved[i].last, 0);
	snprintf(file, sizeof(file), "%s/state.json", dir);
	ck_assert_int_eq(durable_write_take(dw, file, text("{}\n"), 3, 0644, record, &written,
	    &err), 0);
	durable_flush(dw);
	left = trees_left();
	ck_assert_int_eq(written.calls, 1);
	ck_assert_int_eq(written.last, 0);
	/* Before, every tree went first: none was left by the time the write
	 * was on disk. */
	ck_assert_msg(left > 0, "the write waited for all %d trees to be removed", TREES);
	/* and the rest still go: durable_free lets the writer finish them */
	durable_free(dw);
	dw = NULL;
	ck_assert_int_eq(trees_left(), 0);
}
END_TEST

static Suite *
trash_order_suite(void)
{
	Suite *s = suite_create("trash_order");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, trash_move_skips_the_queued_writes_inside_it);
	tcase_add_test(tc, trash_move_finds_work_deep_inside_and_only_there);
	tcase_add_test(tc, write_queued_after_the_move_still_fails);
	tcase_add_test(tc, a_write_is_not_held_behind_the_trash);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return test_run_suite(trash_order_suite());
}
