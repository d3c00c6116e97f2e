/*
 * Unit tests for common/validate.c: the VM name pattern, the socket path
 * limits (especially the exact boundary of sun_path with the port suffix)
 * and the kernel command line limit with what a backend appends.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "validate.h"
#include "test-util.h"

/* A name of len characters: 'a' then 'b's. */
static char *
name_of_len(size_t len)
{
	char *s = malloc(len + 1);

	ck_assert_ptr_nonnull(s);
	memset(s, 'b', len);
	if (len > 0)
		s[0] = 'a';
	s[len] = '\0';
	return s;
}

/* A state directory "/" followed by 'd's, len bytes long. */
static char *
dir_of_len(size_t len)
{
	char *s = malloc(len + 1);

	ck_assert_ptr_nonnull(s);
	memset(s, 'd', len);
	s[0] = '/';
	s[len] = '\0';
	return s;
}

START_TEST(sun_path_limit_is_107_on_linux)
{
	ck_assert_uint_eq(sun_path_limit(), 107);
}
END_TEST

START_TEST(name_accepts_simple_names)
{
	ck_assert(vm_name_valid("web"));
	ck_assert(vm_name_valid("a"));
	ck_assert(vm_name_valid("0"));
	ck_assert(vm_name_valid("web-1.test_x"));
	ck_assert(vm_name_valid("9lives"));
}
END_TEST

START_TEST(name_rejects_uppercase)
{
	ck_assert(!vm_name_valid("Web"));
	ck_assert(!vm_name_valid("wEb"));
}
END_TEST

START_TEST(name_rejects_empty_and_null)
{
	ck_assert(!vm_name_valid(""));
	ck_assert(!vm_name_valid(NULL));
}
END_TEST

START_TEST(name_rejects_leading_punctuation)
{
	ck_assert(!vm_name_valid("-web"));
	ck_assert(!vm_name_valid(".web"));
	ck_assert(!vm_name_valid("_web"));
	ck_assert(!vm_name_valid(".."));
}
END_TEST

START_TEST(name_rejects_slash_space_and_other_bytes)
{
	ck_assert(!vm_name_valid("a/b"));
	ck_assert(!vm_name_valid("a b"));
	ck_assert(!vm_name_valid("a\nb"));
	ck_assert(!vm_name_valid("web:1"));
	ck_assert(!vm_name_valid("caf\xc3\xa9"));
}
END_TEST

START_TEST(name_accepts_63_characters)
{
	char *s = name_of_len(63);

	ck_assert(vm_name_valid(s));
	free(s);
}
END_TEST

START_TEST(name_rejects_64_characters)
{
	char *s = name_of_len(64);

	ck_assert(!vm_name_valid(s));
	free(s);
}
END_TEST

START_TEST(image_name_follows_vm_rules)
{
	ck_assert(image_name_valid("mini"));
	ck_assert(!image_name_valid("Mini"));
}
END_TEST

START_TEST(name_check_reports_invalid_name_with_pattern_hint)
{
	struct ember_error err = { 0 };

	ck_assert_int_eq(vm_name_check("Web", &err), -1);
	ck_assert_int_eq(err.kind, EK_INVALID_NAME);
	ck_assert_msg(strncmp(err.message, "invalid VM name \"Web\"", 21) == 0,
	    "message: %s", err.message);
	ck_assert_ptr_nonnull(strstr(err.hint, "^[a-z0-9][a-z0-9_.-]{0,62}$"));
}
END_TEST

START_TEST(name_check_names_the_bad_character)
{
	struct ember_error err = { 0 };

	ck_assert_int_eq(vm_name_check("web!1", &err), -1);
	ck_assert_ptr_nonnull(strstr(err.message, "'!' at position 4"));
}
END_TEST

START_TEST(name_check_reports_length_of_long_name)
{
	struct ember_error err = { 0 };
	char *s = name_of_len(64);

	ck_assert_int_eq(vm_name_check(s, &err), -1);
	ck_assert_int_eq(err.kind, EK_INVALID_NAME);
	ck_assert_ptr_nonnull(strstr(err.message, "64 characters, max 63"));
	free(s);
}
END_TEST

START_TEST(name_check_does_not_echo_control_bytes)
{
	struct ember_error err = { 0 };

	ck_assert_int_eq(vm_name_check("a\x1b[2Jb", &err), -1);
	ck_assert_ptr_null(strchr(err.message, '\x1b'));
}
END_TEST

START_TEST(name_check_accepts_valid_name_and_leaves_error_clear)
{
	struct ember_error err = { 0 };

	ck_assert_int_eq(vm_name_check("web", &err), 0);
	ck_assert(!ember_error_is_set(&err));
}
END_TEST

START_TEST(vsock_path_is_state_vms_name_vsock_sock)
{
	struct ember_error err = { 0 };
	char out[256];

	ck_assert_int_eq(vsock_path_build("/var/lib/ember", "web", 107, out,
	    sizeof(out), &err), 0);
	ck_assert_str_eq(out, "/var/lib/ember/vms/web/vsock.sock");
}
END_TEST

START_TEST(vsock_path_ignores_trailing_slash_of_state_dir)
{
	struct ember_error err = { 0 };
	char out[256];

	ck_assert_int_eq(vsock_path_build("/var/lib/ember//", "web", 107, out,
	    sizeof(out), &err), 0);
	ck_assert_str_eq(out, "/var/lib/ember/vms/web/vsock.sock");
	ck_assert_int_eq(vsock_path_build("/", "web", 107, out, sizeof(out),
	    &err), 0);
	ck_assert_str_eq(out, "/vms/web/vsock.sock");
}
END_TEST

/* "<dir>/vms/web/vsock.sock" + "_4294967295" is dirlen + 34 bytes. */
#define OVERHEAD (strlen("/vms/web/vsock.sock") + strlen("_4294967295"))

START_TEST(vsock_path_accepts_exactly_the_limit)
{
	struct ember_error err = { 0 };
	char *dir = dir_of_len(107 - OVERHEAD);
	char out[256];

	ck_assert_int_eq(vsock_path_build(dir, "web", 107, out, sizeof(out),
	    &err), 0);
	ck_assert_uint_eq(strlen(out) + strlen("_4294967295"), 107);
	ck_assert(!ember_error_is_set(&err));
	free(dir);
}
END_TEST

START_TEST(vsock_path_rejects_one_byte_over_limit)
{
	struct ember_error err = { 0 };
	char *dir = dir_of_len(108 - OVERHEAD);
	char out[256], expect[512];

	ck_assert_int_eq(vsock_path_build(dir, "web", 107, out, sizeof(out),
	    &err), -1);
	ck_assert_int_eq(err.kind, EK_PATH_TOO_LONG);
	snprintf(expect, sizeof(expect), "vsock UDS path is too long (108 bytes "
	    "with the port suffix, max 107): %s/vms/web/vsock.sock", dir);
	ck_assert_str_eq(err.message, expect);
	ck_assert_str_eq(err.hint, "use a shorter --state-dir or VM name");
	free(dir);
}
END_TEST

START_TEST(vsock_path_limit_counts_the_name)
{
	struct ember_error err = { 0 };
	char *dir = dir_of_len(107 - OVERHEAD);
	char out[256];

	/* Same directory, one more byte of name. */
	ck_assert_int_eq(vsock_path_build(dir, "webx", 107, out, sizeof(out),
	    &err), -1);
	ck_assert_int_eq(err.kind, EK_PATH_TOO_LONG);
	free(dir);
}
END_TEST

START_TEST(vsock_path_honours_a_smaller_limit)
{
	struct ember_error err = { 0 };
	char out[256];

	/* 103 is macOS's limit; "/x/vms/web/vsock.sock_4294967295" is 32. */
	ck_assert_int_eq(vsock_path_build("/x", "web", 32, out, sizeof(out),
	    &err), 0);
	ck_assert_int_eq(vsock_path_build("/x", "web", 31, out, sizeof(out),
	    &err), -1);
	ck_assert_ptr_nonnull(strstr(err.message, "(32 bytes with the port "
	    "suffix, max 31)"));
}
END_TEST

START_TEST(vsock_path_rejects_small_output_buffer)
{
	struct ember_error err = { 0 };
	char out[8];

	ck_assert_int_eq(vsock_path_build("/x", "web", 107, out, sizeof(out),
	    &err), -1);
	ck_assert_int_eq(err.kind, EK_INTERNAL);
}
END_TEST

START_TEST(socket_path_accepts_exactly_the_limit)
{
	struct ember_error err = { 0 };
	char *path = dir_of_len(107);

	ck_assert_int_eq(socket_path_check(path, 107, &err), 0);
	free(path);
}
END_TEST

START_TEST(socket_path_rejects_one_byte_over_limit)
{
	struct ember_error err = { 0 };
	char *path = dir_of_len(108);

	ck_assert_int_eq(socket_path_check(path, 107, &err), -1);
	ck_assert_int_eq(err.kind, EK_PATH_TOO_LONG);
	ck_assert_ptr_nonnull(strstr(err.message, "(108 bytes, max 107)"));
	ck_assert_str_ne(err.hint, "");
	free(path);
}
END_TEST

START_TEST(socket_path_rejects_empty)
{
	struct ember_error err = { 0 };

	ck_assert_int_eq(socket_path_check("", 107, &err), -1);
	ck_assert(ember_error_is_set(&err));
}
END_TEST

/* ---- kernel command lines ---- */

static char *
args_of_len(size_t len)
{
	char *s = malloc(len + 1);

	ck_assert_ptr_nonnull(s);
	memset(s, 'x', len);
	s[len] = '\0';
	return s;
}

START_TEST(cmdline_accepts_null_and_a_normal_line)
{
	struct ember_error err = { 0 };

	ck_assert_int_eq(kernel_cmdline_check(NULL, 61, "Firecracker", &err), 0);
	ck_assert_int_eq(kernel_cmdline_check("console=ttyS0 reboot=k panic=1", 61,
	    "Firecracker", &err), 0);
	ck_assert(!ember_error_is_set(&err));
}
END_TEST

START_TEST(cmdline_accepts_exactly_2047_bytes_with_what_is_appended)
{
	struct ember_error err = { 0 };
	char *a = args_of_len(2047 - 61);

	ck_assert_int_eq(kernel_cmdline_check(a, 61, "Firecracker", &err), 0);
	free(a);
	a = args_of_len(2047);
	ck_assert_int_eq(kernel_cmdline_check(a, 0, "nothing", &err), 0);
	free(a);
}
END_TEST

START_TEST(cmdline_rejects_one_byte_over_counting_what_is_appended)
{
	struct ember_error err = { 0 };
	char *a = args_of_len(2047 - 61 + 1);

	ck_assert_int_eq(kernel_cmdline_check(a, 61, "Firecracker", &err), -1);
	ck_assert_int_eq(err.kind, EK_INVALID_SPEC);
	ck_assert_msg(strstr(err.message, "1987 bytes, and Firecracker adds up to 61") != NULL &&
	    strstr(err.message, "at most 1986 bytes") != NULL, "message: %s", err.message);
	free(a);
}
END_TEST

START_TEST(cmdline_rejects_900_kb)
{
	struct ember_error err = { 0 };
	char *a = args_of_len(900 * 1024);

	ck_assert_int_eq(kernel_cmdline_check(a, 0, "QEMU", &err), -1);
	ck_assert_msg(strstr(err.message, "921600 bytes") != NULL, "message: %s", err.message);
	free(a);
}
END_TEST

START_TEST(cmdline_rejects_control_and_non_ascii_bytes)
{
	struct ember_error err = { 0 };

	ck_assert_int_eq(kernel_cmdline_check("console=ttyS0\ninit=/bin/sh", 0, "QEMU", &err), -1);
	ck_assert_int_eq(err.kind, EK_INVALID_SPEC);
	ck_assert_msg(strstr(err.message, "0x0a at position 14") != NULL, "message: %s",
	    err.message);
	ember_error_clear(&err);
	ck_assert_int_eq(kernel_cmdline_check("quiet caf\xc3\xa9", 0, "QEMU", &err), -1);
	ck_assert_msg(strstr(err.message, "0xc3") != NULL, "message: %s", err.message);
	ember_error_clear(&err);
	ck_assert_int_eq(kernel_cmdline_check("a\tb", 0, "QEMU", &err), -1);
}
END_TEST

START_TEST(cmdline_rejects_everything_when_the_appendix_alone_is_too_long)
{
	struct ember_error err = { 0 };

	ck_assert_int_eq(kernel_cmdline_check("", 5000, "QEMU", &err), -1);
	ck_assert_int_eq(err.kind, EK_INVALID_SPEC);
}
END_TEST

static Suite *
validate_suite(void)
{
	Suite *s = suite_create("validate");
	TCase *tc;

	tc = tcase_create("names");
	tcase_add_test(tc, name_accepts_simple_names);
	tcase_add_test(tc, name_rejects_uppercase);
	tcase_add_test(tc, name_rejects_empty_and_null);
	tcase_add_test(tc, name_rejects_leading_punctuation);
	tcase_add_test(tc, name_rejects_slash_space_and_other_bytes);
	tcase_add_test(tc, name_accepts_63_characters);
	tcase_add_test(tc, name_rejects_64_characters);
	tcase_add_test(tc, image_name_follows_vm_rules);
	tcase_add_test(tc, name_check_reports_invalid_name_with_pattern_hint);
	tcase_add_test(tc, name_check_names_the_bad_character);
	tcase_add_test(tc, name_check_reports_length_of_long_name);
	tcase_add_test(tc, name_check_does_not_echo_control_bytes);
	tcase_add_test(tc, name_check_accepts_valid_name_and_leaves_error_clear);
	suite_add_tcase(s, tc);

	tc = tcase_create("paths");
	tcase_add_test(tc, sun_path_limit_is_107_on_linux);
	tcase_add_test(tc, vsock_path_is_state_vms_name_vsock_sock);
	tcase_add_test(tc, vsock_path_ignores_trailing_slash_of_state_dir);
	tcase_add_test(tc, vsock_path_accepts_exactly_the_limit);
	tcase_add_test(tc, vsock_path_rejects_one_byte_over_limit);
	tcase_add_test(tc, vsock_path_limit_counts_the_name);
	tcase_add_test(tc, vsock_path_honours_a_smaller_limit);
	tcase_add_test(tc, vsock_path_rejects_small_output_buffer);
	tcase_add_test(tc, socket_path_accepts_exactly_the_limit);
	tcase_add_test(tc, socket_path_rejects_one_byte_over_limit);
	tcase_add_test(tc, socket_path_rejects_empty);
	suite_add_tcase(s, tc);

	tc = tcase_create("cmdline");
	tcase_add_test(tc, cmdline_accepts_null_and_a_normal_line);
	tcase_add_test(tc, cmdline_accepts_exactly_2047_bytes_with_what_is_appended);
	tcase_add_test(tc, cmdline_rejects_one_byte_over_counting_what_is_appended);
	tcase_add_test(tc, cmdline_rejects_900_kb);
	tcase_add_test(tc, cmdline_rejects_control_and_non_ascii_bytes);
	tcase_add_test(tc, cmdline_rejects_everything_when_the_appendix_alone_is_too_long);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return test_run_suite(validate_suite());
}
