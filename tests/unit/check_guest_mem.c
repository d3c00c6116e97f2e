/*
 * Unit tests for platform/linux/guest-mem: memfd-backed regions mapped with
 * non-zero mmap_offset, gpa and uva translation, buffers straddling two
 * regions, ranges that fall outside or wrap, replacing the table, and that
 * no fd or mapping leaks.
 */
#include <sys/mman.h>

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "linux/guest-mem.h"
#include "test-util.h"

static int
count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	ck_assert_ptr_nonnull(d);
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static int
make_memfd(size_t size)
{
	int fd = memfd_create("guest-mem-test", MFD_CLOEXEC);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, (off_t)size), 0);
	return fd;
}

/* Two regions in one memfd like microvm: [0, 0xf000) and [0x10000, 0x30000)
 * at file offset 0x10000, with uvas that are not the gpas. */
static void
two_regions_replace(struct guest_mem *mem, int fd)
{
	struct guest_mem_desc d[2] = {
		{ .gpa = 0, .size = 0xf000, .uva = 0x7f0000000000, .mmap_offset = 0 },
		{ .gpa = 0x10000, .size = 0x20000, .uva = 0x7f0000100000, .mmap_offset = 0x10000 },
	};
	int fds[2] = { fd, fd };

	ck_assert_int_eq(guest_mem_set_table(mem, d, fds, 2), 0);
}

static void
two_regions(struct guest_mem *mem, int fd)
{
	guest_mem_init(mem);
	two_regions_replace(mem, fd);
}

START_TEST(translates_gpa_and_uva_with_offsets)
{
	struct guest_mem mem;
	int fd = make_memfd(0x30000);
	uint8_t *direct = mmap(NULL, 0x30000, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	uint8_t *p;

	ck_assert_ptr_ne(direct, MAP_FAILED);
	two_regions(&mem, fd);
	ck_assert_uint_eq(mem.nregions, 2);
	direct[0x12345] = 0xab;
	p = gpa_to_hva(&mem, 0x12345, 1);
	ck_assert_ptr_nonnull(p);
	ck_assert_uint_eq(*p, 0xab);
	p = uva_to_hva(&mem, 0x7f0000100000 + 0x2345, 1);
	ck_assert_ptr_nonnull(p);
	ck_assert_uint_eq(*p, 0xab);
	direct[0x100] = 0xcd;
	ck_assert_uint_eq(*(uint8_t *)gpa_to_hva(&mem, 0x100, 1), 0xcd);
	/* The whole region, and one byte too many. */
	ck_assert_ptr_nonnull(gpa_to_hva(&mem, 0x10000, 0x20000));
	ck_assert_ptr_null(gpa_to_hva(&mem, 0x10000, 0x20001));
	ck_assert_ptr_null(uva_to_hva(&mem, 0x7f0000000000 + 0xefff, 2));
	/* The hole between regions. */
	ck_assert_ptr_null(gpa_to_hva(&mem, 0xf000, 1));
	guest_mem_clear(&mem);
	munmap(direct, 0x30000);
	close(fd);
}
END_TEST

START_TEST(straddling_buffer_splits_in_two)
{
	struct guest_mem mem;
	struct guest_mem_desc d[2] = {
		{ .gpa = 0x0, .size = 0x1000, .uva = 0x1000000, .mmap_offset = 0 },
		{ .gpa = 0x1000, .size = 0x1000, .uva = 0x2000000, .mmap_offset = 0x3000 },
	};
	int fd = make_memfd(0x4000), fds[2] = { fd, fd };
	struct iovec iov[4];
	unsigned n;
	uint8_t buf[0x100];

	guest_mem_init(&mem);
	ck_assert_int_eq(guest_mem_set_table(&mem, d, fds, 2), 0);
	ck_assert_int_eq(gpa_to_iov(&mem, 0xf80, 0x100, iov, 4, &n), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_uint_eq(iov[0].iov_len, 0x80);
	ck_assert_uint_eq(iov[1].iov_len, 0x80);
	ck_assert_ptr_eq(iov[1].iov_base, gpa_to_hva(&mem, 0x1000, 1));
	/* Copy through the split and read back by offset. */
	for (unsigned i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)i;
	ck_assert_uint_eq(buf_to_iov(iov, n, 0, buf, sizeof(buf)), sizeof(buf));
	memset(buf, 0, sizeof(buf));
	ck_assert_uint_eq(iov_to_buf(iov, n, 0x7c, buf, 8), 8);
	ck_assert_uint_eq(buf[0], 0x7c);
	ck_assert_uint_eq(buf[7], 0x83);
	ck_assert_uint_eq(iov_length(iov, n), 0x100);
	/* Too few iovecs. */
	ck_assert_int_eq(gpa_to_iov(&mem, 0xf80, 0x100, iov, 1, &n), -ENOBUFS);
	/* Zero length is nothing. */
	ck_assert_int_eq(gpa_to_iov(&mem, 0x5000000, 0, iov, 4, &n), 0);
	ck_assert_uint_eq(n, 0);
	guest_mem_clear(&mem);
	close(fd);
}
END_TEST

START_TEST(out_of_range_and_wrapping_fail)
{
	struct guest_mem mem;
	int fd = make_memfd(0x30000);
	struct iovec iov[8];
	unsigned n;

	two_regions(&mem, fd);
	ck_assert_int_eq(gpa_to_iov(&mem, 0x30000, 1, iov, 8, &n), -EFAULT);
	ck_assert_int_eq(gpa_to_iov(&mem, 0x2ffff, 2, iov, 8, &n), -EFAULT);
	/* Runs into the hole. */
	ck_assert_int_eq(gpa_to_iov(&mem, 0xe000, 0x2000, iov, 8, &n), -EFAULT);
	ck_assert_int_eq(gpa_to_iov(&mem, UINT64_MAX, 2, iov, 8, &n), -EFAULT);
	ck_assert_int_eq(gpa_to_iov(&mem, 0x10000, UINT64_MAX, iov, 8, &n), -EFAULT);
	ck_assert_ptr_null(gpa_to_hva(&mem, 0x10000, UINT64_MAX));
	ck_assert_ptr_null(uva_to_hva(&mem, 0x7f0000100000, UINT64_MAX));
	ck_assert_ptr_null(uva_to_hva(&mem, UINT64_MAX, 1));
	guest_mem_clear(&mem);
	close(fd);
}
END_TEST

START_TEST(bad_tables_are_refused_and_keep_the_old_one)
{
	struct guest_mem mem;
	int fd = make_memfd(0x30000), fds[2] = { fd, fd };
	uint64_t gen;
	struct guest_mem_desc wrap[1] = {
		{ .gpa = UINT64_MAX - 0xfff, .size = 0x2000, .uva = 0, .mmap_offset = 0 } };
	struct guest_mem_desc empty[1] = { { .gpa = 0, .size = 0, .uva = 0, .mmap_offset = 0 } };
	struct guest_mem_desc past_eof[1] = {
		{ .gpa = 0, .size = 0x30000, .uva = 0, .mmap_offset = 0x1000 } };
	struct guest_mem_desc overlap[2] = {
		{ .gpa = 0, .size = 0x2000, .uva = 0, .mmap_offset = 0 },
		{ .gpa = 0x1000, .size = 0x1000, .uva = 0x10000, .mmap_offset = 0 } };
	struct guest_mem_desc huge_off[1] = {
		{ .gpa = 0, .size = 0x1000, .uva = 0, .mmap_offset = UINT64_MAX - 0x10 } };
	int pipefd[2];

	two_regions(&mem, fd);
	gen = mem.generation;
	ck_assert_int_eq(guest_mem_set_table(&mem, wrap, fds, 1), -EINVAL);
	ck_assert_int_eq(guest_mem_set_table(&mem, empty, fds, 1), -EINVAL);
	ck_assert_int_eq(guest_mem_set_table(&mem, past_eof, fds, 1), -EINVAL);
	ck_assert_int_eq(guest_mem_set_table(&mem, overlap, fds, 2), -EINVAL);
	ck_assert_int_eq(guest_mem_set_table(&mem, huge_off, fds, 1), -EINVAL);
	ck_assert_int_eq(guest_mem_set_table(&mem, overlap, fds, 9), -E2BIG);
	/* Not a regular file. */
	ck_assert_int_eq(pipe(pipefd), 0);
	{
		struct guest_mem_desc one[1] = { { .gpa = 0, .size = 0x1000 } };

		ck_assert_int_eq(guest_mem_set_table(&mem, one, pipefd, 1), -EINVAL);
	}
	close(pipefd[0]);
	close(pipefd[1]);
	ck_assert_uint_eq(mem.generation, gen);
	ck_assert_uint_eq(mem.nregions, 2);
	ck_assert_ptr_nonnull(gpa_to_hva(&mem, 0x10000, 0x20000));
	guest_mem_clear(&mem);
	close(fd);
}
END_TEST

START_TEST(second_table_replaces_the_first)
{
	struct guest_mem mem;
	int fd = make_memfd(0x30000), fd2 = make_memfd(0x2000);
	struct guest_mem_desc d2[1] = { { .gpa = 0x100000, .size = 0x1000, .uva = 0x5000,
	    .mmap_offset = 0x1000 } };
	uint8_t *direct = mmap(NULL, 0x2000, PROT_READ | PROT_WRITE, MAP_SHARED, fd2, 0);
	uint64_t gen;

	two_regions(&mem, fd);
	gen = mem.generation;
	direct[0x1010] = 0x5a;
	ck_assert_int_eq(guest_mem_set_table(&mem, d2, &fd2, 1), 0);
	ck_assert_uint_gt(mem.generation, gen);
	ck_assert_uint_eq(mem.nregions, 1);
	ck_assert_ptr_null(gpa_to_hva(&mem, 0x10000, 1));
	ck_assert_uint_eq(*(uint8_t *)gpa_to_hva(&mem, 0x100010, 1), 0x5a);
	ck_assert_uint_eq(*(uint8_t *)uva_to_hva(&mem, 0x5010, 1), 0x5a);
	gen = mem.generation;
	guest_mem_clear(&mem);
	ck_assert_uint_gt(mem.generation, gen);
	ck_assert_ptr_null(gpa_to_hva(&mem, 0x100010, 1));
	munmap(direct, 0x2000);
	close(fd);
	close(fd2);
}
END_TEST

START_TEST(no_fd_or_mapping_leaks)
{
	int before = count_fds();

	for (int i = 0; i < 50; i++) {
		struct guest_mem mem;
		int fd = make_memfd(0x30000);

		two_regions(&mem, fd);
		/* replaced without clear would leak maps and the kept fds */
		two_regions_replace(&mem, fd);
		guest_mem_clear(&mem);
		close(fd);
	}
	ck_assert_int_eq(count_fds(), before);
}
END_TEST

static Suite *
guest_mem_suite(void)
{
	Suite *s = suite_create("guest_mem");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, translates_gpa_and_uva_with_offsets);
	tcase_add_test(tc, straddling_buffer_splits_in_two);
	tcase_add_test(tc, out_of_range_and_wrapping_fail);
	tcase_add_test(tc, bad_tables_are_refused_and_keep_the_old_one);
	tcase_add_test(tc, second_table_replaces_the_first);
	tcase_add_test(tc, no_fd_or_mapping_leaks);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return test_run_suite(guest_mem_suite());
}
