/*
 * vsock-handover: a device's fds go to a store that behaves like systemd's
 * (an open file is kept once; FDSTOREREMOVE drops every fd of a name), and
 * a later emberd gets them back. QEMU sends the same memfd for two memory
 * regions; the second region is recorded as sharing the first's fd and
 * comes back as a dup of it. A vsock-dev.json whose sharing is impossible
 * is refused.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>
#include <linux/kcmp.h>

#include <jansson.h>

#include "fd-keep.h"
#include "fsutil.h"
#include "test-util.h"
#include "linux/vsock-handover.h"

#define MEM_SIZE (1u << 20)
#define STORE_MAX 64

/* The store: what systemd would hold, by name. */
static struct {
	char name[FD_KEEP_NAME_MAX + 1];
	int fd;
} store[STORE_MAX];
static size_t nstore;
static unsigned duplicates;

static int
store_fd(void *ctx, const char *name, int fd)
{
	int copy;

	(void)ctx;
	for (size_t i = 0; i < nstore; i++)
		if (syscall(SYS_kcmp, getpid(), getpid(), KCMP_FILE, store[i].fd, fd) == 0) {
			duplicates++;	/* systemd's same_fd(): dropped */
			return 0;
		}
	ck_assert_uint_lt(nstore, STORE_MAX);
	copy = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	ck_assert_int_ge(copy, 0);
	snprintf(store[nstore].name, sizeof(store[nstore].name), "%s", name);
	store[nstore++].fd = copy;
	return 0;
}

static void
remove_fd(void *ctx, const char *name)
{
	(void)ctx;
	for (size_t i = 0; i < nstore;) {
		if (strcmp(store[i].name, name) == 0) {
			close(store[i].fd);
			store[i] = store[--nstore];
		} else
			i++;
	}
}

static bool
stored(const char *name)
{
	for (size_t i = 0; i < nstore; i++)
		if (strcmp(store[i].name, name) == 0)
			return true;
	return false;
}

static char dir[256], uds[300];
static int vu_fds[2] = { -1, -1 }, listen_fd = -1, memfd = -1;
static struct vu_dev_state st;

static void
setup(void)
{
	struct fd_keep_sink sink = { store_fd, remove_fd, NULL };
	struct sockaddr_un sun = { .sun_family = AF_UNIX };

	nstore = 0;
	duplicates = 0;
	fd_keep_set_sink(&sink);
	test_tmpdir_new(dir, sizeof(dir), "/tmp/ember-handover.XXXXXX");
	snprintf(uds, sizeof(uds), "%s/vsock.sock", dir);
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, vu_fds), 0);
	listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", uds);
	ck_assert_int_eq(bind(listen_fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	ck_assert_int_eq(listen(listen_fd, 4), 0);
	memfd = memfd_create("guest", MFD_CLOEXEC);
	ck_assert_int_ge(memfd, 0);
	ck_assert_int_eq(ftruncate(memfd, MEM_SIZE), 0);

	/* Two regions of one memfd, as QEMU sends them: two fds (dups of
	 * one open file, as SCM_RIGHTS delivers the same fd twice). */
	memset(&st, 0, sizeof(st));
	st.features = 1ull << 32;
	st.owner = true;
	st.nregions = 2;
	st.region[0] = (struct guest_mem_desc){ 0, MEM_SIZE / 2, 0x7f0000000000ull, 0 };
	st.region[1] = (struct guest_mem_desc){ MEM_SIZE / 2, MEM_SIZE / 2,
	    0x7f0000000000ull + MEM_SIZE / 2, MEM_SIZE / 2 };
	st.mem_fd[0] = memfd;
	st.mem_fd[1] = fcntl(memfd, F_DUPFD_CLOEXEC, 3);
	for (unsigned i = 2; i < GUEST_MEM_MAX_REGIONS; i++)
		st.mem_fd[i] = -1;
	st.mem_gen = 1;
	for (unsigned q = 0; q < VU_NUM_QUEUES; q++) {
		st.ring[q].num = 256;
		st.ring[q].kick_fd = eventfd(0, EFD_CLOEXEC);
		st.ring[q].call_fd = eventfd(0, EFD_CLOEXEC);
		st.ring[q].kick_gen = st.ring[q].call_gen = 1;
	}
}

static void
teardown(void)
{
	fd_keep_drop_unclaimed();
	fd_keep_set_sink(NULL);
	for (size_t i = 0; i < nstore; i++)
		close(store[i].fd);
	nstore = 0;
	close(vu_fds[0]);
	close(vu_fds[1]);
	close(listen_fd);
	close(st.mem_fd[0]);
	close(st.mem_fd[1]);
	for (unsigned q = 0; q < VU_NUM_QUEUES; q++) {
		close(st.ring[q].kick_fd);
		close(st.ring[q].call_fd);
	}
	rm_rf(dir);
}

/* What a later emberd gets: every stored fd, by name. */
static void
hand_back(void)
{
	for (size_t i = 0; i < nstore; i++)
		ck_assert_int_eq(fd_keep_inherit(store[i].name,
		    fcntl(store[i].fd, F_DUPFD_CLOEXEC, 3)), 0);
}

static void
same_file(int a, int b)
{
	struct stat sa, sb;

	ck_assert_int_eq(fstat(a, &sa), 0);
	ck_assert_int_eq(fstat(b, &sb), 0);
	ck_assert(sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino);
}

/* The device as the first emberd leaves it: held and saved. */
static struct vsock_handover *
first_emberd(void)
{
	struct vsock_handover *ho = vsock_handover_new("v1", dir);

	ck_assert_ptr_nonnull(ho);
	vsock_handover_hold_fixed(ho, vu_fds[0], listen_fd, false);
	vsock_handover_save(ho, &st);
	return ho;
}

START_TEST(shared_memfd_is_stored_once_and_comes_back_for_both_regions)
{
	struct vsock_handover *ho = first_emberd(), *ho2 = NULL;
	struct vsock_handover_fds out;
	struct vsock_flow *flows = NULL;
	unsigned nflows = 0;
	char path[512];
	json_t *j;

	ck_assert(stored("vsock/v1/mem0"));
	ck_assert(!stored("vsock/v1/mem1"));
	ck_assert_uint_eq(duplicates, 0);	/* nothing was sent twice */
	snprintf(path, sizeof(path), "%s/vsock-dev.json", dir);
	j = json_load_file(path, 0, NULL);
	ck_assert_ptr_nonnull(j);
	ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(
	    json_object_get(j, "regions"), 1), "fd_of")), 0);
	ck_assert_ptr_null(json_object_get(json_array_get(json_object_get(j, "regions"), 0),
	    "fd_of"));
	json_decref(j);
	vsock_handover_detach(ho);

	hand_back();
	ck_assert_int_eq(vsock_handover_adopt("v1", dir, uds, &ho2, &out, &flows, &nflows), 1);
	ck_assert_uint_eq(out.state.nregions, 2);
	ck_assert_int_ge(out.state.mem_fd[0], 0);
	ck_assert_int_ge(out.state.mem_fd[1], 0);
	ck_assert_int_ne(out.state.mem_fd[0], out.state.mem_fd[1]);
	same_file(out.state.mem_fd[0], memfd);
	same_file(out.state.mem_fd[1], memfd);
	ck_assert(out.state.region[1].mmap_offset == MEM_SIZE / 2);
	for (unsigned i = 0; i < 2; i++)
		close(out.state.mem_fd[i]);
	for (unsigned q = 0; q < VU_NUM_QUEUES; q++) {
		close(out.state.ring[q].kick_fd);
		close(out.state.ring[q].call_fd);
	}
	close(out.vu_fd);
	close(out.listen_fd);
	free(flows);
	vsock_handover_detach(ho2);
}
END_TEST

/* A region may only share the fd of an earlier region that has its own. */
START_TEST(impossible_sharing_is_refused)
{
	static const int bad[] = { 1, 2, -2 };	/* itself, a later one, nonsense */
	char path[512];

	snprintf(path, sizeof(path), "%s/vsock-dev.json", dir);
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		struct vsock_handover *ho2 = NULL;
		struct vsock_handover_fds out;
		struct vsock_flow *flows = NULL;
		unsigned nflows = 0;
		json_t *j;

		/* A refused adoption removes what it found: start afresh. */
		for (size_t i = 0; i < nstore; i++)
			close(store[i].fd);
		nstore = 0;
		vsock_handover_detach(first_emberd());
		ck_assert_ptr_nonnull(j = json_load_file(path, 0, NULL));
		json_object_set_new(json_array_get(json_object_get(j, "regions"), 1), "fd_of",
		    json_integer(bad[k]));
		ck_assert_int_eq(json_dump_file(j, path, 0), 0);
		json_decref(j);
		hand_back();
		ck_assert_int_eq(vsock_handover_adopt("v1", dir, uds, &ho2, &out, &flows, &nflows),
		    -EINVAL);
		ck_assert_ptr_null(flows);
		fd_keep_drop_unclaimed();
	}
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("vsock_handover");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, shared_memfd_is_stored_once_and_comes_back_for_both_regions);
	tcase_add_test(tc, impossible_sharing_is_refused);
	suite_add_tcase(s, tc);
	return test_run_suite(s);
}
