/*
 * The CONNECT line parser of the hybrid vsock protocol: what Firecracker's
 * host clients send must parse exactly as Firecracker parses it.
 */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../../platform/linux/hybrid-proto.h"
#include "test-util.h"

static int
parse(const char *s, uint32_t *port)
{
	return hybrid_parse_connect(s, strlen(s), port);
}

START_TEST(connect_accepts_plain_and_any_case)
{
	uint32_t port = 0;

	ck_assert_int_eq(parse("CONNECT 52", &port), 0);
	ck_assert_uint_eq(port, 52);
	ck_assert_int_eq(parse("connect 1024", &port), 0);
	ck_assert_uint_eq(port, 1024);
	ck_assert_int_eq(parse("CoNnEcT 7", &port), 0);
	ck_assert_uint_eq(port, 7);
}
END_TEST

START_TEST(connect_tolerates_cr_and_extra_spaces)
{
	uint32_t port = 0;

	ck_assert_int_eq(parse("CONNECT 52\r", &port), 0);
	ck_assert_uint_eq(port, 52);
	ck_assert_int_eq(parse("CONNECT  52 ", &port), 0);
	ck_assert_uint_eq(port, 52);
	ck_assert_int_eq(parse(" CONNECT\t52", &port), 0);
}
END_TEST

START_TEST(connect_accepts_31_byte_line_and_refuses_32)
{
	uint32_t port = 0;
	/* 31 bytes + '\n' = 32, the limit */
	const char *ok = "CONNECT               000000052";
	const char *long_ = "CONNECT                000000052";

	ck_assert_uint_eq(strlen(ok), 31);
	ck_assert_int_eq(parse(ok, &port), 0);
	ck_assert_uint_eq(port, 52);
	ck_assert_int_eq(parse(long_, &port), -EINVAL);
}
END_TEST

START_TEST(connect_rejects_malformed)
{
	static const char *bad[] = {
		"", "CONNECT", "CONNECT ", "CONNECT x", "CONNECT -1", "CONNECT +1",
		"CONNECT 4294967296", "CONNECT 4294967295", "CONNECT 1 2", "HELLO 1",
		"CONNECTX 1", "CONNEC 1", "CONNECT 1x", "CONNECT 0x10",
	};
	uint32_t port = 99;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(parse(bad[i], &port) == -EINVAL, "accepted \"%s\"", bad[i]);
	ck_assert_uint_eq(port, 99);
}
END_TEST

START_TEST(connect_accepts_largest_port)
{
	uint32_t port = 0;

	ck_assert_int_eq(parse("CONNECT 4294967294", &port), 0);
	ck_assert_uint_eq(port, 4294967294u);
}
END_TEST

START_TEST(ok_line_format)
{
	char buf[32];

	ck_assert_int_eq(hybrid_format_ok(1073741824u, buf, sizeof(buf)), 14);
	ck_assert_str_eq(buf, "OK 1073741824\n");
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("hybrid_proto");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, connect_accepts_plain_and_any_case);
	tcase_add_test(tc, connect_tolerates_cr_and_extra_spaces);
	tcase_add_test(tc, connect_accepts_31_byte_line_and_refuses_32);
	tcase_add_test(tc, connect_rejects_malformed);
	tcase_add_test(tc, connect_accepts_largest_port);
	tcase_add_test(tc, ok_line_format);
	suite_add_tcase(s, tc);
	return test_run_suite(s);
}
