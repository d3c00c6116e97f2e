/*
 * Unit tests for common/fsutil.c. Each test works in a fresh temporary
 * directory (removed afterwards) so they can run in parallel.
 */
#include <sys/stat.h>

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fsutil.h"
#include "test-util.h"

static char tmpdir[256];

static void
setup(void)
{
	const char *base = getenv("TMPDIR");
	char tmpl[sizeof(tmpdir)];

	snprintf(tmpl, sizeof(tmpl), "%s/check_fsutil.XXXXXX",
	    base != NULL && *base != '\0' ? base : "/tmp");
	test_tmpdir_new(tmpdir, sizeof(tmpdir), tmpl);
}

static void
teardown(void)
{
	rm_rf(tmpdir);
}

static const char *
tpath(const char *rel)
{
	static char buf[4][512];
	static int next;
	char *p = buf[next++ % 4];

	snprintf(p, sizeof(buf[0]), "%s/%s", tmpdir, rel);
	return p;
}

static int
count_entries(const char *dir)
{
	struct dirent *de;
	DIR *d = opendir(dir);
	int n = 0;

	ck_assert_ptr_nonnull(d);
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

static void
write_plain(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	ck_assert_int_eq(fclose(f), 0);
}

static char *
slurp(const char *path)
{
	char *text;

	ck_assert_int_eq(read_file(path, 1 << 20, &text, NULL), 0);
	return text;
}

START_TEST(write_file_text_writes_into_an_existing_file_only)
{
	char *text;

	write_plain(tpath("value"), "0\n");
	ck_assert_int_eq(write_file_text(tpath("value"), "128\n"), 0);
	text = slurp(tpath("value"));
	ck_assert_str_eq(text, "128\n");
	free(text);
	/* it never creates: a cgroup or /proc file that is not there stays so */
	ck_assert_int_eq(write_file_text(tpath("missing"), "1"), -ENOENT);
	ck_assert_int_eq(access(tpath("missing"), F_OK), -1);
	ck_assert_int_eq(write_file_text(tmpdir, "1"), -EISDIR);
}
END_TEST

START_TEST(atomic_write_creates_file_with_contents)
{
	const char *path = tpath("state.txt");
	char *text;

	ck_assert_int_eq(atomic_write_file(path, "hello\n", 6, 0600), 0);
	text = slurp(path);
	ck_assert_str_eq(text, "hello\n");
	free(text);
}
END_TEST

START_TEST(atomic_write_replaces_existing_file)
{
	const char *path = tpath("state.txt");
	char *text;

	write_plain(path, "old contents that are longer");
	ck_assert_int_eq(atomic_write_file(path, "new", 3, 0644), 0);
	text = slurp(path);
	ck_assert_str_eq(text, "new");
	free(text);
}
END_TEST

START_TEST(atomic_write_leaves_no_temp_files)
{
	ck_assert_int_eq(atomic_write_file(tpath("a"), "1", 1, 0644), 0);
	ck_assert_int_eq(atomic_write_file(tpath("a"), "2", 1, 0644), 0);
	ck_assert_int_eq(atomic_write_file(tpath("b"), "", 0, 0644), 0);
	ck_assert_int_eq(count_entries(tmpdir), 2);
}
END_TEST

START_TEST(atomic_write_failure_leaves_no_temp_files)
{
	/* The target is a directory, so the rename fails after the write. */
	ck_assert_int_eq(mkdir(tpath("target"), 0755), 0);
	ck_assert_int_eq(mkdir(tpath("target/child"), 0755), 0);
	ck_assert_int_lt(atomic_write_file(tpath("target"), "x", 1, 0644), 0);
	ck_assert_int_eq(count_entries(tmpdir), 1);
}
END_TEST

START_TEST(atomic_write_applies_mode_despite_umask)
{
	const char *path = tpath("secret");
	struct stat st;
	mode_t old = umask(077);

	ck_assert_int_eq(atomic_write_file(path, "x", 1, 0644), 0);
	umask(old);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_uint_eq(st.st_mode & 07777, 0644);
	ck_assert_int_eq(atomic_write_file(path, "y", 1, 0600), 0);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_uint_eq(st.st_mode & 07777, 0600);
}
END_TEST

START_TEST(atomic_write_into_missing_directory_fails_with_enoent)
{
	ck_assert_int_eq(atomic_write_file(tpath("nope/file"), "x", 1, 0644),
	    -ENOENT);
}
END_TEST

START_TEST(atomic_write_rejects_directory_path)
{
	ck_assert_int_eq(atomic_write_file(tpath("dir/"), "x", 1, 0644),
	    -EISDIR);
}
END_TEST

START_TEST(atomic_write_replaces_a_symlink_not_its_target)
{
	const char *target = tpath("target"), *link = tpath("link");
	char *text;

	write_plain(target, "keep");
	ck_assert_int_eq(symlink(target, link), 0);
	ck_assert_int_eq(atomic_write_file(link, "new", 3, 0644), 0);
	text = slurp(target);
	ck_assert_str_eq(text, "keep");
	free(text);
}
END_TEST

START_TEST(atomic_write_json_is_sorted_indented_with_newline)
{
	const char *path = tpath("vm.json");
	json_t *obj = json_pack("{s:i, s:s}", "zeta", 1, "alpha", "a");
	char *text;

	ck_assert_int_eq(atomic_write_json(path, obj), 0);
	text = slurp(path);
	ck_assert_str_eq(text, "{\n  \"alpha\": \"a\",\n  \"zeta\": 1\n}\n");
	free(text);
	json_decref(obj);
}
END_TEST

START_TEST(atomic_write_json_roundtrips_through_read_json_file)
{
	const char *path = tpath("vm.json");
	json_t *obj = json_pack("{s:i, s:[i,i]}", "version", 1, "l", 2, 3);
	json_t *back = NULL;
	char err[128];
	struct stat st;

	ck_assert_int_eq(atomic_write_json(path, obj), 0);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_uint_eq(st.st_mode & 07777, 0644);
	ck_assert_int_eq(read_json_file(path, &back, err, sizeof(err)), 0);
	ck_assert(json_equal(obj, back));
	json_decref(obj);
	json_decref(back);
}
END_TEST

START_TEST(read_json_reports_line_and_column_of_parse_error)
{
	const char *path = tpath("bad.json");
	json_t *out = (json_t *)1;
	char err[128];

	write_plain(path, "{\n  \"a\": 1,\n  \"b\": }\n");
	ck_assert_int_eq(read_json_file(path, &out, err, sizeof(err)),
	    -EBADMSG);
	ck_assert_ptr_null(out);
	ck_assert_msg(strncmp(err, "3:", 2) == 0, "errbuf: %s", err);
	ck_assert_ptr_nonnull(strchr(err + 2, ':'));
	ck_assert_msg(strlen(err) > 6, "errbuf: %s", err);
}
END_TEST

START_TEST(read_json_rejects_empty_and_truncated_files)
{
	json_t *out;
	char err[128];

	write_plain(tpath("empty.json"), "");
	ck_assert_int_eq(read_json_file(tpath("empty.json"), &out, err,
	    sizeof(err)), -EBADMSG);
	write_plain(tpath("cut.json"), "{\"version\": 1, \"allocations\": {");
	ck_assert_int_eq(read_json_file(tpath("cut.json"), &out, NULL, 0),
	    -EBADMSG);
}
END_TEST

START_TEST(read_json_rejects_duplicate_keys)
{
	json_t *out;
	char err[128];

	write_plain(tpath("dup.json"), "{\"a\": 1, \"a\": 2}");
	ck_assert_int_eq(read_json_file(tpath("dup.json"), &out, err,
	    sizeof(err)), -EBADMSG);
}
END_TEST

START_TEST(read_json_missing_file_is_enoent)
{
	json_t *out;
	char err[128];

	ck_assert_int_eq(read_json_file(tpath("missing.json"), &out, err,
	    sizeof(err)), -ENOENT);
}
END_TEST

START_TEST(read_file_returns_nul_terminated_contents_and_length)
{
	char *text;
	size_t len;

	ck_assert_int_eq(atomic_write_file(tpath("bin"), "a\0b", 3, 0644), 0);
	ck_assert_int_eq(read_file(tpath("bin"), 16, &text, &len), 0);
	ck_assert_uint_eq(len, 3);
	ck_assert_int_eq(memcmp(text, "a\0b\0", 4), 0);
	free(text);
}
END_TEST

START_TEST(read_file_of_empty_file_is_empty_string)
{
	char *text;
	size_t len = 99;

	write_plain(tpath("empty"), "");
	ck_assert_int_eq(read_file(tpath("empty"), 16, &text, &len), 0);
	ck_assert_uint_eq(len, 0);
	ck_assert_str_eq(text, "");
	free(text);
}
END_TEST

START_TEST(read_file_accepts_exactly_max_and_rejects_one_more)
{
	char *text = NULL;
	size_t len;

	write_plain(tpath("f"), "12345");
	ck_assert_int_eq(read_file(tpath("f"), 5, &text, &len), 0);
	ck_assert_uint_eq(len, 5);
	free(text);
	ck_assert_int_eq(read_file(tpath("f"), 4, &text, &len), -EFBIG);
	ck_assert_ptr_null(text);
}
END_TEST

START_TEST(read_file_reads_large_files_across_buffer_growth)
{
	size_t n = 100000, len;
	char *big = malloc(n), *text;

	for (size_t i = 0; i < n; i++)
		big[i] = (char)('a' + i % 26);
	ck_assert_int_eq(atomic_write_file(tpath("big"), big, n, 0644), 0);
	ck_assert_int_eq(read_file(tpath("big"), n, &text, &len), 0);
	ck_assert_uint_eq(len, n);
	ck_assert_int_eq(memcmp(text, big, n), 0);
	free(text);
	free(big);
}
END_TEST

START_TEST(read_file_reads_proc_files_with_zero_size)
{
	char *text;
	size_t len;

	ck_assert_int_eq(read_file("/proc/self/stat", 4096, &text, &len), 0);
	ck_assert_uint_gt(len, 0);
	free(text);
}
END_TEST

START_TEST(read_file_missing_is_enoent)
{
	char *text;

	ck_assert_int_eq(read_file(tpath("missing"), 16, &text, NULL), -ENOENT);
}
END_TEST

START_TEST(mkdir_p_creates_parents)
{
	struct stat st;

	ck_assert_int_eq(mkdir_p(tpath("a/b/c"), 0700), 0);
	ck_assert_int_eq(stat(tpath("a/b/c"), &st), 0);
	ck_assert(S_ISDIR(st.st_mode));
}
END_TEST

START_TEST(mkdir_p_accepts_existing_directories_and_slashes)
{
	ck_assert_int_eq(mkdir_p(tpath("a//b/"), 0755), 0);
	ck_assert_int_eq(mkdir_p(tpath("a/b"), 0755), 0);
	ck_assert_int_eq(mkdir_p(tmpdir, 0755), 0);
	ck_assert_int_eq(mkdir_p("/", 0755), 0);
}
END_TEST

START_TEST(mkdir_p_over_a_file_is_enotdir)
{
	write_plain(tpath("file"), "x");
	ck_assert_int_eq(mkdir_p(tpath("file"), 0755), -ENOTDIR);
	ck_assert_int_eq(mkdir_p(tpath("file/sub"), 0755), -ENOTDIR);
}
END_TEST

START_TEST(mkdir_p_rejects_empty_path)
{
	ck_assert_int_eq(mkdir_p("", 0755), -EINVAL);
}
END_TEST

START_TEST(rm_rf_removes_a_tree)
{
	ck_assert_int_eq(mkdir_p(tpath("t/a/b/c"), 0755), 0);
	write_plain(tpath("t/a/file"), "x");
	write_plain(tpath("t/a/b/c/deep"), "x");
	ck_assert_int_eq(mkfifo(tpath("t/fifo"), 0600), 0);
	ck_assert_int_eq(rm_rf(tpath("t")), 0);
	ck_assert_int_eq(access(tpath("t"), F_OK), -1);
	ck_assert_int_eq(count_entries(tmpdir), 0);
}
END_TEST

START_TEST(rm_rf_removes_a_plain_file)
{
	write_plain(tpath("f"), "x");
	ck_assert_int_eq(rm_rf(tpath("f")), 0);
	ck_assert_int_eq(count_entries(tmpdir), 0);
}
END_TEST

START_TEST(rm_rf_of_missing_path_succeeds)
{
	ck_assert_int_eq(rm_rf(tpath("missing")), 0);
	ck_assert_int_eq(rm_rf(tpath("missing/deeper")), 0);
}
END_TEST

START_TEST(rm_rf_does_not_follow_symlinks)
{
	struct stat st;

	ck_assert_int_eq(mkdir_p(tpath("outside"), 0755), 0);
	write_plain(tpath("outside/precious"), "x");
	ck_assert_int_eq(mkdir_p(tpath("t"), 0755), 0);
	ck_assert_int_eq(symlink(tpath("outside"), tpath("t/link")), 0);
	ck_assert_int_eq(symlink(tpath("outside"), tpath("toplink")), 0);

	ck_assert_int_eq(rm_rf(tpath("t")), 0);
	ck_assert_int_eq(rm_rf(tpath("toplink")), 0);
	ck_assert_int_eq(stat(tpath("outside/precious"), &st), 0);
	ck_assert_int_eq(lstat(tpath("toplink"), &st), -1);
	ck_assert_int_eq(count_entries(tmpdir), 1);
}
END_TEST

START_TEST(rm_rf_rejects_empty_path)
{
	ck_assert_int_eq(rm_rf(""), -EINVAL);
}
END_TEST

START_TEST(fsync_dir_of_missing_directory_is_enoent)
{
	ck_assert_int_eq(fsync_dir(tmpdir), 0);
	ck_assert_int_eq(fsync_dir(tpath("missing")), -ENOENT);
}
END_TEST

static Suite *
fsutil_suite(void)
{
	Suite *s = suite_create("fsutil");
	TCase *tc;

	tc = tcase_create("atomic");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, atomic_write_creates_file_with_contents);
	tcase_add_test(tc, atomic_write_replaces_existing_file);
	tcase_add_test(tc, atomic_write_leaves_no_temp_files);
	tcase_add_test(tc, atomic_write_failure_leaves_no_temp_files);
	tcase_add_test(tc, atomic_write_applies_mode_despite_umask);
	tcase_add_test(tc, atomic_write_into_missing_directory_fails_with_enoent);
	tcase_add_test(tc, atomic_write_rejects_directory_path);
	tcase_add_test(tc, atomic_write_replaces_a_symlink_not_its_target);
	tcase_add_test(tc, atomic_write_json_is_sorted_indented_with_newline);
	tcase_add_test(tc, atomic_write_json_roundtrips_through_read_json_file);
	suite_add_tcase(s, tc);

	tc = tcase_create("read");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, read_json_reports_line_and_column_of_parse_error);
	tcase_add_test(tc, read_json_rejects_empty_and_truncated_files);
	tcase_add_test(tc, read_json_rejects_duplicate_keys);
	tcase_add_test(tc, read_json_missing_file_is_enoent);
	tcase_add_test(tc, read_file_returns_nul_terminated_contents_and_length);
	tcase_add_test(tc, read_file_of_empty_file_is_empty_string);
	tcase_add_test(tc, read_file_accepts_exactly_max_and_rejects_one_more);
	tcase_add_test(tc, read_file_reads_large_files_across_buffer_growth);
	tcase_add_test(tc, read_file_reads_proc_files_with_zero_size);
	tcase_add_test(tc, read_file_missing_is_enoent);
	suite_add_tcase(s, tc);

	tc = tcase_create("dirs");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, mkdir_p_creates_parents);
	tcase_add_test(tc, mkdir_p_accepts_existing_directories_and_slashes);
	tcase_add_test(tc, mkdir_p_over_a_file_is_enotdir);
	tcase_add_test(tc, mkdir_p_rejects_empty_path);
	tcase_add_test(tc, rm_rf_removes_a_tree);
	tcase_add_test(tc, rm_rf_removes_a_plain_file);
	tcase_add_test(tc, rm_rf_of_missing_path_succeeds);
	tcase_add_test(tc, rm_rf_does_not_follow_symlinks);
	tcase_add_test(tc, rm_rf_rejects_empty_path);
	tcase_add_test(tc, fsync_dir_of_missing_directory_is_enoent);
	tcase_add_test(tc, write_file_text_writes_into_an_existing_file_only);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return test_run_suite(fsutil_suite());
}
