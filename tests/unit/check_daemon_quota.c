/*
 * Unit tests for per-user quotas (daemon/quota.c): disk use comes from a
 * tally, not from walking the image store at each check (files changed
 * behind emberd's back do not move it; image stored/deleted do); a VM's
 * disk is measured once; work in flight holds its quota until released,
 * so two requests at once cannot pass a limit together; root is never
 * limited.
 */
#include <check.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <event2/event.h>
#include "cid-alloc.h"
#include "daemon.h"
#include "fsutil.h"
#include "quota.h"
#include "vm.h"
#include "vm-internal.h"
#include "test-daemon.h"
#include "test-util.h"

#define USER 1000
#define MIB (1024 * 1024)

static struct ember_daemon *d;

static void
setup(void)
{
	d = test_daemon_new("/tmp/check-quota-XXXXXX", (const char *[]){ "vms", "images", NULL });
	d->config.quota_default.vms = 3;
	d->config.quota_default.disk_mib = 100;
	d->config.quota_default.cids = 1;
}

static void
teardown(void)
{
	test_daemon_free(d);
}

/* A file of size bytes (sparse) at path. */
static void
sized_file(const char *path, off_t size)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, size), 0);
	close(fd);
}

/* images/<name>/ with an image.json owned by owner and a rootfs of mib MiB
 * minus the size of image.json, so the image is exactly mib MiB. */
static void
make_image(const char *name, uid_t owner, int mib)
{
	char path[PATH_MAX], json[256];
	int n, fd;

	snprintf(path, sizeof(path), "%s/images/%s", d->state_dir, name);
	ck_assert_int_eq(mkdir(path, 0755), 0);
	n = snprintf(json, sizeof(json), "{\"version\":1,\"name\":\"%s\",\"owner_uid\":%u}", name,
	    (unsigned)owner);
	snprintf(path, sizeof(path), "%s/images/%s/image.json", d->state_dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, json, (size_t)n), n);
	close(fd);
	snprintf(path, sizeof(path), "%s/images/%s/rootfs.img", d->state_dir, name);
	sized_file(path, (off_t)mib * MIB - n);
}

static uint64_t
disk_of(uid_t uid)
{
	struct quota_use use;

	quota_use_of(d, uid, &use);
	return use.disk_mib;
}

START_TEST(image_disk_is_a_tally_measured_once)
{
	char path[PATH_MAX];

	make_image("mine", USER, 10);
	make_image("other", USER + 1, 7);
	ck_assert_uint_eq(disk_of(USER), 10);
	ck_assert_uint_eq(disk_of(USER + 1), 7);
	/* Changed behind emberd's back: the tally does not walk the store again. */
	snprintf(path, sizeof(path), "%s/images/mine/rootfs.img", d->state_dir);
	sized_file(path, 50 * MIB);
	make_image("unseen", USER, 5);
	ck_assert_uint_eq(disk_of(USER), 10);
	/* What import and delete report moves it. */
	quota_image_stored(d, "unseen");
	ck_assert_uint_eq(disk_of(USER), 15);
	quota_image_deleted(d, "mine");
	ck_assert_uint_eq(disk_of(USER), 5);
	quota_image_deleted(d, "never-there");
	ck_assert_uint_eq(disk_of(USER), 5);
	ck_assert_uint_eq(disk_of(USER + 1), 7);
}
END_TEST

START_TEST(store_before_the_first_check_is_not_counted_twice)
{
	make_image("early", USER, 4);
	quota_image_stored(d, "early");	/* before the tally was measured */
	ck_assert_uint_eq(disk_of(USER), 4);
	quota_image_stored(d, "early");	/* again: replaced, not added */
	ck_assert_uint_eq(disk_of(USER), 4);
}
END_TEST

START_TEST(vm_disk_is_measured_once)
{
	char path[PATH_MAX];
	struct vm *vm = vm_new(d);

	snprintf(vm->rec.name, sizeof(vm->rec.name), "v");
	vm->rec.owner_uid = USER;
	snprintf(path, sizeof(path), "%s/vms/disk.img", d->state_dir);
	sized_file(path, 3 * MIB);
	ck_assert_int_eq(vm_record_set_str(&vm->rec.disk_path, path), 0);
	vm_list_insert(d, vm);
	ck_assert_uint_eq(disk_of(USER), 3);
	sized_file(path, 30 * MIB);	/* a guest cannot grow what it counts for */
	ck_assert_uint_eq(disk_of(USER), 3);
	vm->rec.disk_size_mib = 8;	/* asked for: counted as such */
	ck_assert_uint_eq(disk_of(USER), 8);
}
END_TEST

START_TEST(holds_count_until_released)
{
	struct ember_error err = { 0 };
	struct quota_hold *a = NULL, *b = NULL, *c = NULL;
	struct quota_use use;

	ck_assert_int_eq(quota_check_import(d, USER, NULL, 0, 60, &a, &err), 0);
	ck_assert_ptr_nonnull(a);
	ck_assert_uint_eq(disk_of(USER), 60);
	/* A second import at once does not fit beside the first. */
	ck_assert_int_eq(quota_check_import(d, USER, NULL, 0, 60, &b, &err), -1);
	ck_assert_ptr_null(b);
	ck_assert_int_eq(err.kind, EK_QUOTA_EXCEEDED);
	ck_assert_ptr_nonnull(strstr(err.message, "60 MiB in use + 60 MiB asked > 100 MiB allowed"));
	/* Another user is not affected; nor is root. */
	ck_assert_int_eq(quota_check_import(d, USER + 1, NULL, 0, 60, &c, &err), 0);
	quota_release(c);
	ck_assert_int_eq(quota_check_import(d, 0, NULL, 0, 1000000, &c, &err), 0);
	quota_release(c);
	quota_release(a);
	ck_assert_uint_eq(disk_of(USER), 0);
	ck_assert_int_eq(quota_check_import(d, USER, NULL, 0, 60, &b, &err), 0);
	quota_use_of(d, USER, &use);
	ck_assert_uint_eq(use.vms, 0);
	quota_release(b);
	quota_release(NULL);
	ck_assert_uint_eq(disk_of(USER), 0);
}
END_TEST

START_TEST(create_holds_its_vm_and_cid)
{
	struct ember_error err = { 0 };
	struct vm_create_args a = { .name = "x", .vsock = true, .owner_uid = USER };
	struct quota_hold *h1 = NULL, *h2 = NULL;
	struct quota_use use;

	ck_assert_int_eq(quota_check_create(d, &a, 1, 64, NULL, &h1, &err), 0);
	quota_use_of(d, USER, &use);
	ck_assert_uint_eq(use.vms, 1);
	ck_assert_uint_eq(use.cids, 1);
	ck_assert_uint_eq(use.vcpus, 0);	/* it does not start */
	/* The quota allows one CID: a second vsock create at once is refused. */
	ck_assert_int_eq(quota_check_create(d, &a, 1, 64, NULL, &h2, &err), -1);
	ck_assert_ptr_nonnull(strstr(err.message, "quota \"cids\""));
	quota_release(h1);
	quota_use_of(d, USER, &use);
	ck_assert_uint_eq(use.vms, 0);
	ck_assert_uint_eq(use.cids, 0);
}
END_TEST

static Suite *
quota_suite(void)
{
	Suite *s = suite_create("daemon_quota");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, image_disk_is_a_tally_measured_once);
	tcase_add_test(tc, store_before_the_first_check_is_not_counted_twice);
	tcase_add_test(tc, vm_disk_is_measured_once);
	tcase_add_test(tc, holds_count_until_released);
	tcase_add_test(tc, create_holds_its_vm_and_cid);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return test_run_suite(quota_suite());
}
