/*
 * Unit tests for common/size.c: units, fractions, whole-MiB sizes, overflow
 * and the strings that must be refused.
 */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "size.h"
#include "test-util.h"

#define KiB ((uint64_t)1 << 10)
#define MiB ((uint64_t)1 << 20)
#define GiB ((uint64_t)1 << 30)
#define TiB ((uint64_t)1 << 40)

static uint64_t
parse_ok(const char *s)
{
	uint64_t bytes = 12345;
	int r = size_parse(s, &bytes);

	ck_assert_msg(r == 0, "size_parse(\"%s\") = %d", s, r);
	return bytes;
}

static void
parse_fails(const char *s, int expect)
{
	uint64_t bytes = 12345;
	int r = size_parse(s, &bytes);

	ck_assert_msg(r == expect, "size_parse(\"%s\") = %d, expected %d", s, r,
	    expect);
	ck_assert_msg(bytes == 12345, "size_parse(\"%s\") wrote a result", s);
}

START_TEST(size_parses_single_letter_units)
{
	ck_assert_uint_eq(parse_ok("512M"), 512 * MiB);
	ck_assert_uint_eq(parse_ok("2G"), 2 * GiB);
	ck_assert_uint_eq(parse_ok("4K"), 4 * KiB);
	ck_assert_uint_eq(parse_ok("1T"), TiB);
}
END_TEST

START_TEST(size_units_are_case_insensitive)
{
	ck_assert_uint_eq(parse_ok("512m"), 512 * MiB);
	ck_assert_uint_eq(parse_ok("2g"), 2 * GiB);
	ck_assert_uint_eq(parse_ok("64mib"), 64 * MiB);
	ck_assert_uint_eq(parse_ok("10gB"), 10 * GiB);
}
END_TEST

START_TEST(size_iec_and_si_suffixes_are_binary)
{
	ck_assert_uint_eq(parse_ok("64MiB"), 64 * MiB);
	ck_assert_uint_eq(parse_ok("1KiB"), KiB);
	ck_assert_uint_eq(parse_ok("3GiB"), 3 * GiB);
	ck_assert_uint_eq(parse_ok("2TiB"), 2 * TiB);
	ck_assert_uint_eq(parse_ok("10GB"), 10 * GiB);
	ck_assert_uint_eq(parse_ok("1KB"), KiB);
	ck_assert_uint_eq(parse_ok("5MB"), 5 * MiB);
	ck_assert_uint_eq(parse_ok("1TB"), TiB);
}
END_TEST

START_TEST(size_accepts_zero)
{
	ck_assert_uint_eq(parse_ok("0M"), 0);
	ck_assert_uint_eq(parse_ok("0.0G"), 0);
}
END_TEST

START_TEST(size_accepts_whole_byte_fractions)
{
	ck_assert_uint_eq(parse_ok("1.5G"), 3 * GiB / 2);
	ck_assert_uint_eq(parse_ok("0.5K"), 512);
	ck_assert_uint_eq(parse_ok("1.25M"), 5 * MiB / 4);
	ck_assert_uint_eq(parse_ok("1.50G"), 3 * GiB / 2);
	ck_assert_uint_eq(parse_ok("2.0M"), 2 * MiB);
	/* 2^-10 of a KiB is exactly one byte. */
	ck_assert_uint_eq(parse_ok("0.0009765625K"), 1);
}
END_TEST

START_TEST(size_rejects_fractions_of_a_byte)
{
	parse_fails("1.3K", -EINVAL);
	parse_fails("0.1M", -EINVAL);
	/* One more binary digit than a KiB has. */
	parse_fails("0.00048828125K", -EINVAL);
}
END_TEST

START_TEST(size_rejects_missing_unit)
{
	parse_fails("512", -EINVAL);
	parse_fails("0", -EINVAL);
	parse_fails("1.5", -EINVAL);
}
END_TEST

START_TEST(size_rejects_unknown_units)
{
	parse_fails("512B", -EINVAL);
	parse_fails("512X", -EINVAL);
	parse_fails("1P", -EINVAL);
	parse_fails("1Mi", -EINVAL);
	parse_fails("1MiBs", -EINVAL);
	parse_fails("1MBB", -EINVAL);
	parse_fails("1iB", -EINVAL);
}
END_TEST

START_TEST(size_rejects_empty_and_null)
{
	uint64_t bytes;

	parse_fails("", -EINVAL);
	parse_fails("M", -EINVAL);
	ck_assert_int_eq(size_parse(NULL, &bytes), -EINVAL);
}
END_TEST

START_TEST(size_rejects_negative_and_signs)
{
	parse_fails("-1M", -EINVAL);
	parse_fails("+1M", -EINVAL);
	parse_fails("-0M", -EINVAL);
}
END_TEST

START_TEST(size_rejects_spaces)
{
	parse_fails("512 M", -EINVAL);
	parse_fails(" 512M", -EINVAL);
	parse_fails("512M ", -EINVAL);
	parse_fails("5 12M", -EINVAL);
	parse_fails("512\tM", -EINVAL);
}
END_TEST

START_TEST(size_rejects_malformed_fractions)
{
	parse_fails(".5G", -EINVAL);
	parse_fails("1.G", -EINVAL);
	parse_fails("1..5G", -EINVAL);
	parse_fails("1.5.0G", -EINVAL);
	parse_fails("1,5G", -EINVAL);
	parse_fails("0x10M", -EINVAL);
	parse_fails("1e3M", -EINVAL);
}
END_TEST

START_TEST(size_rejects_overflow_with_erange)
{
	parse_fails("18446744073709551616K", -ERANGE);
	/* Fits as a number, overflows once multiplied. */
	parse_fails("16777216T", -ERANGE);
	parse_fails("18014398509481984K", -ERANGE);
	parse_fails("99999999999999999999999999999G", -ERANGE);
}
END_TEST

START_TEST(size_accepts_the_largest_value)
{
	/* 2^64 - 1 KiB-rounded: 18014398509481983K is the top whole KiB. */
	ck_assert_uint_eq(parse_ok("18014398509481983K"),
	    UINT64_C(18014398509481983) * KiB);
	ck_assert_uint_eq(parse_ok("16777215T"), UINT64_C(16777215) * TiB);
	/* Adding the fraction overflows only at the very top. */
	ck_assert_uint_eq(parse_ok("16777215.5T"),
	    UINT64_C(16777215) * TiB + TiB / 2);
}
END_TEST

START_TEST(size_rejects_junk_even_when_huge)
{
	/* Syntax is checked before arithmetic: junk is EINVAL, not ERANGE. */
	parse_fails("99999999999999999999999999999", -EINVAL);
	parse_fails("99999999999999999999999999999Q", -EINVAL);
}
END_TEST

START_TEST(size_mib_requires_whole_mib)
{
	uint64_t mib = 7;

	ck_assert_int_eq(size_parse_mib("512M", &mib), 0);
	ck_assert_uint_eq(mib, 512);
	ck_assert_int_eq(size_parse_mib("1.5G", &mib), 0);
	ck_assert_uint_eq(mib, 1536);
	ck_assert_int_eq(size_parse_mib("2G", &mib), 0);
	ck_assert_uint_eq(mib, 2048);
	ck_assert_int_eq(size_parse_mib("1024K", &mib), 0);
	ck_assert_uint_eq(mib, 1);
	ck_assert_int_eq(size_parse_mib("0M", &mib), 0);
	ck_assert_uint_eq(mib, 0);
	mib = 7;
	ck_assert_int_eq(size_parse_mib("1.5M", &mib), -EINVAL);
	ck_assert_int_eq(size_parse_mib("512K", &mib), -EINVAL);
	ck_assert_int_eq(size_parse_mib("512", &mib), -EINVAL);
	ck_assert_int_eq(size_parse_mib("18446744073709551616K", &mib),
	    -ERANGE);
	ck_assert_uint_eq(mib, 7);
}
END_TEST

START_TEST(size_format_uses_the_largest_exact_unit)
{
	char buf[32];

	size_format(512 * MiB, buf, sizeof(buf));
	ck_assert_str_eq(buf, "512M");
	size_format(2 * GiB, buf, sizeof(buf));
	ck_assert_str_eq(buf, "2G");
	size_format(3 * GiB / 2, buf, sizeof(buf));
	ck_assert_str_eq(buf, "1536M");
	size_format(TiB, buf, sizeof(buf));
	ck_assert_str_eq(buf, "1T");
	size_format(1536, buf, sizeof(buf));
	ck_assert_str_eq(buf, "1536");
	size_format(4 * KiB, buf, sizeof(buf));
	ck_assert_str_eq(buf, "4K");
	size_format(0, buf, sizeof(buf));
	ck_assert_str_eq(buf, "0");
	size_format(UINT64_MAX, buf, sizeof(buf));
	ck_assert_str_eq(buf, "18446744073709551615");
}
END_TEST

START_TEST(size_format_truncates_to_buffer)
{
	char buf[4] = "xyz";

	size_format(512 * MiB, buf, sizeof(buf));
	ck_assert_str_eq(buf, "512");
	size_format(512 * MiB, buf, 0);
	ck_assert_str_eq(buf, "512");
}
END_TEST

START_TEST(size_format_output_parses_back)
{
	const uint64_t values[] = { KiB, 3 * KiB, 768 * MiB, 5 * GiB, 7 * TiB,
	    1023 * MiB };
	char buf[32];

	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		size_format(values[i], buf, sizeof(buf));
		ck_assert_uint_eq(parse_ok(buf), values[i]);
	}
}
END_TEST

static Suite *
size_suite(void)
{
	Suite *s = suite_create("size");
	TCase *tc;

	tc = tcase_create("parse");
	tcase_add_test(tc, size_parses_single_letter_units);
	tcase_add_test(tc, size_units_are_case_insensitive);
	tcase_add_test(tc, size_iec_and_si_suffixes_are_binary);
	tcase_add_test(tc, size_accepts_zero);
	tcase_add_test(tc, size_accepts_whole_byte_fractions);
	tcase_add_test(tc, size_rejects_fractions_of_a_byte);
	tcase_add_test(tc, size_rejects_missing_unit);
	tcase_add_test(tc, size_rejects_unknown_units);
	tcase_add_test(tc, size_rejects_empty_and_null);
	tcase_add_test(tc, size_rejects_negative_and_signs);
	tcase_add_test(tc, size_rejects_spaces);
	tcase_add_test(tc, size_rejects_malformed_fractions);
	tcase_add_test(tc, size_rejects_overflow_with_erange);
	tcase_add_test(tc, size_accepts_the_largest_value);
	tcase_add_test(tc, size_rejects_junk_even_when_huge);
	tcase_add_test(tc, size_mib_requires_whole_mib);
	suite_add_tcase(s, tc);

	tc = tcase_create("format");
	tcase_add_test(tc, size_format_uses_the_largest_exact_unit);
	tcase_add_test(tc, size_format_truncates_to_buffer);
	tcase_add_test(tc, size_format_output_parses_back);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return test_run_suite(size_suite());
}
