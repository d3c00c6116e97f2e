/*
 * Unit tests for common/resolv.c: which nameservers of a resolv.conf reach a
 * guest, how a loopback stub is replaced by its upstreams, deduplication,
 * bounds and the errors of missing or oversized files.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "resolv.h"
#include "test-util.h"

static char dir[64];
static char conf[256], upstreams[256];

static void
write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "we");

	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fputs(text, f) >= 0, 1);
	ck_assert_int_eq(fclose(f), 0);
}

static void
setup(void)
{
	test_tmpdir_new(dir, sizeof(dir), "/tmp/check_resolv.XXXXXX");
	snprintf(conf, sizeof(conf), "%s/resolv.conf", dir);
	snprintf(upstreams, sizeof(upstreams), "%s/upstream.conf", dir);
}

static void
teardown(void)
{
	unlink(conf);
	unlink(upstreams);
	rmdir(dir);
}

/* Parses text with room for max entries; returns the count. */
static size_t
parse(const char *text, char out[][INET6_ADDRSTRLEN], size_t max,
    size_t *stubs)
{
	size_t n = 0;

	resolv_parse_nameservers(text, strlen(text), out, max, &n, stubs);
	return n;
}

START_TEST(resolv_lists_nameservers_in_order)
{
	char out[4][INET6_ADDRSTRLEN];
	size_t stubs = 0;

	ck_assert_uint_eq(parse("# c\nsearch example.org\n"
	    "nameserver 192.0.2.1\nnameserver 2001:db8::53\n"
	    "options ndots:2\n", out, 4, &stubs), 2);
	ck_assert_str_eq(out[0], "192.0.2.1");
	ck_assert_str_eq(out[1], "2001:db8::53");
	ck_assert_uint_eq(stubs, 0);
}
END_TEST

START_TEST(resolv_addresses_come_out_canonical)
{
	char out[2][INET6_ADDRSTRLEN];

	ck_assert_uint_eq(parse("nameserver 2001:DB8:0:0::0053\n", out, 2,
	    NULL), 1);
	ck_assert_str_eq(out[0], "2001:db8::53");
}
END_TEST

START_TEST(resolv_accepts_tabs_crlf_and_trailing_words)
{
	char out[6][INET6_ADDRSTRLEN];

	ck_assert_uint_eq(parse("nameserver\t198.51.100.7  # x\r\n"
	    "nameserver 198.51.100.8\r\nnameserver 198.51.100.9 junk\n"
	    "nameserver 198.51.100.10#c\nnameserver 198.51.100.11;c",
	    out, 6, NULL), 5);
	ck_assert_str_eq(out[0], "198.51.100.7");
	ck_assert_str_eq(out[1], "198.51.100.8");
	ck_assert_str_eq(out[2], "198.51.100.9");
	ck_assert_str_eq(out[3], "198.51.100.10");
	ck_assert_str_eq(out[4], "198.51.100.11");
}
END_TEST

START_TEST(resolv_skips_malformed_lines)
{
	char out[4][INET6_ADDRSTRLEN];

	ck_assert_uint_eq(parse("nameserver\n"
	    "nameserver 192.0.2.300\n"
	    "nameserver 192.0.2\n"
	    "nameserver example.org\n"
	    "nameservers 192.0.2.1\n"
	    " nameserver 192.0.2.2\n"
	    "#nameserver 192.0.2.3\n"
	    ";nameserver 192.0.2.4\n"
	    "nameserver192.0.2.5\n"
	    "nameserver fe80::1%eth0\n"
	    "nameserver 192.0.2.6\n", out, 4, NULL), 1);
	ck_assert_str_eq(out[0], "192.0.2.6");
}
END_TEST

START_TEST(resolv_counts_loopback_as_stub)
{
	char out[4][INET6_ADDRSTRLEN];
	size_t stubs = 0;

	ck_assert_uint_eq(parse("nameserver 127.0.0.53\nnameserver ::1\n"
	    "nameserver 127.1.2.3\nnameserver 0.0.0.0\nnameserver ::\n"
	    "nameserver ::ffff:127.0.0.1\n", out, 4, &stubs), 0);
	ck_assert_uint_eq(stubs, 6);
}
END_TEST

START_TEST(resolv_deduplicates)
{
	char out[4][INET6_ADDRSTRLEN];

	ck_assert_uint_eq(parse("nameserver 192.0.2.1\nnameserver 2001:db8::1\n"
	    "nameserver 192.0.2.1\nnameserver 2001:DB8::0:1\n", out, 4, NULL),
	    2);
}
END_TEST

START_TEST(resolv_stops_at_max)
{
	char out[3][INET6_ADDRSTRLEN];

	memset(out[2], 'X', sizeof(out[2]));
	ck_assert_uint_eq(parse("nameserver 192.0.2.1\nnameserver 192.0.2.2\n"
	    "nameserver 192.0.2.3\n", out, 2, NULL), 2);
	ck_assert_str_eq(out[1], "192.0.2.2");
	ck_assert_int_eq(out[2][0], 'X');
}
END_TEST

START_TEST(resolv_survives_nul_bytes_and_no_newline)
{
	static const char text[] = "nameserver 192.0.2.1\0junk\nnameserver 192.0.2.2";
	char out[4][INET6_ADDRSTRLEN];
	size_t n = 0;

	resolv_parse_nameservers(text, sizeof(text) - 1, out, 4, &n, NULL);
	/* "192.0.2.1\0junk" is not an address; the last line is. */
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(out[0], "192.0.2.2");
}
END_TEST

START_TEST(resolv_replaces_stub_by_upstreams_in_place)
{
	char out[RESOLV_NAMESERVERS_MAX][INET6_ADDRSTRLEN];
	size_t n = 99;

	write_text(conf, "nameserver 127.0.0.53\nnameserver 192.0.2.9\n"
	    "options edns0\n");
	write_text(upstreams, "nameserver 198.51.100.53\n"
	    "nameserver 127.0.0.1\nnameserver 192.0.2.9\n");
	ck_assert_int_eq(resolv_upstreams_from(conf, upstreams, out,
	    RESOLV_NAMESERVERS_MAX, &n), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_str_eq(out[0], "198.51.100.53");
	ck_assert_str_eq(out[1], "192.0.2.9");
}
END_TEST

START_TEST(resolv_without_stub_ignores_upstream_file)
{
	char out[4][INET6_ADDRSTRLEN];
	size_t n = 99;

	write_text(conf, "nameserver 192.0.2.1\n");
	write_text(upstreams, "nameserver 198.51.100.53\n");
	ck_assert_int_eq(resolv_upstreams_from(conf, upstreams, out, 4, &n),
	    0);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(out[0], "192.0.2.1");
}
END_TEST

START_TEST(resolv_only_stub_and_no_upstream_file_is_enoent)
{
	char out[4][INET6_ADDRSTRLEN];
	size_t n = 99;

	write_text(conf, "nameserver 127.0.0.53\n");
	ck_assert_int_eq(resolv_upstreams_from(conf, upstreams, out, 4, &n),
	    -ENOENT);
	ck_assert_uint_eq(n, 0);
}
END_TEST

START_TEST(resolv_stub_beside_real_server_tolerates_missing_upstreams)
{
	char out[4][INET6_ADDRSTRLEN];
	size_t n = 99;

	write_text(conf, "nameserver 127.0.0.53\nnameserver 192.0.2.1\n");
	ck_assert_int_eq(resolv_upstreams_from(conf, upstreams, out, 4, &n),
	    0);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(out[0], "192.0.2.1");
}
END_TEST

START_TEST(resolv_empty_file_gives_none)
{
	char out[4][INET6_ADDRSTRLEN];
	size_t n = 99;

	write_text(conf, "search example.org\n");
	ck_assert_int_eq(resolv_upstreams_from(conf, upstreams, out, 4, &n),
	    0);
	ck_assert_uint_eq(n, 0);
}
END_TEST

START_TEST(resolv_missing_file_is_enoent)
{
	char out[4][INET6_ADDRSTRLEN];
	size_t n = 99;

	ck_assert_int_eq(resolv_upstreams(conf, out, 4, &n), -ENOENT);
	ck_assert_uint_eq(n, 0);
}
END_TEST

START_TEST(resolv_oversized_file_is_efbig)
{
	char out[4][INET6_ADDRSTRLEN];
	size_t n = 99, len = RESOLV_FILE_MAX + 2;
	char *big = malloc(len);

	ck_assert_ptr_nonnull(big);
	memset(big, '#', len - 1);
	big[len - 1] = '\0';
	write_text(conf, big);
	free(big);
	ck_assert_int_eq(resolv_upstreams_from(conf, upstreams, out, 4, &n),
	    -EFBIG);
}
END_TEST

START_TEST(resolv_rejects_null_count)
{
	char out[4][INET6_ADDRSTRLEN];

	ck_assert_int_eq(resolv_upstreams(conf, out, 4, NULL), -EINVAL);
}
END_TEST

static Suite *
resolv_suite(void)
{
	Suite *s = suite_create("resolv");
	TCase *tc;

	tc = tcase_create("parse");
	tcase_add_test(tc, resolv_lists_nameservers_in_order);
	tcase_add_test(tc, resolv_addresses_come_out_canonical);
	tcase_add_test(tc, resolv_accepts_tabs_crlf_and_trailing_words);
	tcase_add_test(tc, resolv_skips_malformed_lines);
	tcase_add_test(tc, resolv_counts_loopback_as_stub);
	tcase_add_test(tc, resolv_deduplicates);
	tcase_add_test(tc, resolv_stops_at_max);
	tcase_add_test(tc, resolv_survives_nul_bytes_and_no_newline);
	suite_add_tcase(s, tc);

	tc = tcase_create("files");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, resolv_replaces_stub_by_upstreams_in_place);
	tcase_add_test(tc, resolv_without_stub_ignores_upstream_file);
	tcase_add_test(tc, resolv_only_stub_and_no_upstream_file_is_enoent);
	tcase_add_test(tc, resolv_stub_beside_real_server_tolerates_missing_upstreams);
	tcase_add_test(tc, resolv_empty_file_gives_none);
	tcase_add_test(tc, resolv_missing_file_is_enoent);
	tcase_add_test(tc, resolv_oversized_file_is_efbig);
	tcase_add_test(tc, resolv_rejects_null_count);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return test_run_suite(resolv_suite());
}
