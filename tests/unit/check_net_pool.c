/*
 * Unit tests for the VM network allocator (common/net-pool.c): pool
 * parsing, lowest-free-first and reuse after release, exhaustion of a
 * one-/30 pool, claims, and the allocations.json round trip with a
 * tampered file's entries skipped.
 */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "net-pool.h"
#include "test-util.h"

#define A(a, b, c, d) (((uint32_t)(a) << 24) | ((b) << 16) | ((c) << 8) | (d))

START_TEST(cidr_parse_strict)
{
	uint32_t base;
	unsigned prefix;

	ck_assert_int_eq(net_cidr_parse("10.100.0.0/16", &base, &prefix), 0);
	ck_assert_uint_eq(base, A(10, 100, 0, 0));
	ck_assert_uint_eq(prefix, 16);
	ck_assert_int_eq(net_cidr_parse("192.0.2.4/30", &base, &prefix), 0);
	ck_assert_int_eq(net_cidr_parse("10.100.0.1/16", &base, &prefix), -EINVAL);
	ck_assert_int_eq(net_cidr_parse("10.100.0.0/31", &base, &prefix), -EINVAL);
	ck_assert_int_eq(net_cidr_parse("10.0.0.0/7", &base, &prefix), -EINVAL);
	ck_assert_int_eq(net_cidr_parse("10.100.0.0/016", &base, &prefix), -EINVAL);
	ck_assert_int_eq(net_cidr_parse("10.100.0.0", &base, &prefix), -EINVAL);
	ck_assert_int_eq(net_cidr_parse("10.100.0.0/", &base, &prefix), -EINVAL);
	ck_assert_int_eq(net_cidr_parse("/16", &base, &prefix), -EINVAL);
	ck_assert_int_eq(net_cidr_parse("host/16", &base, &prefix), -EINVAL);
	ck_assert_int_eq(net_cidr_parse("10.100.0.0/16 ", &base, &prefix), -EINVAL);
}
END_TEST

START_TEST(pool_lowest_first_and_reuse)
{
	struct net_pool *p = net_pool_new(A(10, 100, 0, 0), 16);
	uint32_t s;

	ck_assert_ptr_nonnull(p);
	ck_assert_uint_eq(net_pool_capacity(p), 16384);
	ck_assert_int_eq(net_pool_get(p, "a", &s), 0);
	ck_assert_uint_eq(s, A(10, 100, 0, 0));
	ck_assert_uint_eq(net_subnet_host(s), A(10, 100, 0, 1));
	ck_assert_uint_eq(net_subnet_guest(s), A(10, 100, 0, 2));
	ck_assert_int_eq(net_pool_get(p, "b", &s), 0);
	ck_assert_uint_eq(s, A(10, 100, 0, 4));
	ck_assert_int_eq(net_pool_get(p, "c", &s), 0);
	ck_assert_uint_eq(s, A(10, 100, 0, 8));
	ck_assert_int_eq(net_pool_get(p, "a", &s), 0);	/* same owner, same /30 */
	ck_assert_uint_eq(s, A(10, 100, 0, 0));
	ck_assert_int_eq(net_pool_release(p, "b"), 0);
	ck_assert_int_eq(net_pool_release(p, "b"), -ENOENT);
	ck_assert_int_eq(net_pool_get(p, "d", &s), 0);
	ck_assert_uint_eq(s, A(10, 100, 0, 4));
	ck_assert_str_eq(net_pool_owner(p, A(10, 100, 0, 4)), "d");
	ck_assert_uint_eq(net_pool_count(p), 3);
	net_pool_free(p);
}
END_TEST

START_TEST(pool_of_one_refuses_second)
{
	struct net_pool *p = net_pool_new(A(192, 0, 2, 0), 30);
	uint32_t s = 0;

	ck_assert_int_eq(net_pool_get(p, "first", &s), 0);
	ck_assert_uint_eq(s, A(192, 0, 2, 0));
	s = 7;
	ck_assert_int_eq(net_pool_get(p, "second", &s), -ENOSPC);
	ck_assert_uint_eq(s, 7);
	ck_assert(!net_pool_lookup(p, "second", NULL));
	ck_assert_uint_eq(net_pool_count(p), 1);
	net_pool_release(p, "first");
	ck_assert_int_eq(net_pool_get(p, "second", &s), 0);
	net_pool_free(p);
}
END_TEST

START_TEST(pool_fills_exactly)
{
	struct net_pool *p = net_pool_new(A(10, 0, 0, 0), 22);	/* 256 /30s */
	char name[16];
	uint32_t s;

	for (int i = 0; i < 256; i++) {
		snprintf(name, sizeof(name), "vm%d", i);
		ck_assert_int_eq(net_pool_get(p, name, &s), 0);
		ck_assert_uint_eq(s, A(10, 0, 0, 0) + 4u * (uint32_t)i);
	}
	ck_assert_int_eq(net_pool_get(p, "extra", &s), -ENOSPC);
	net_pool_release(p, "vm130");
	ck_assert_int_eq(net_pool_get(p, "extra", &s), 0);
	ck_assert_uint_eq(s, A(10, 0, 0, 0) + 4u * 130);
	net_pool_free(p);
}
END_TEST

START_TEST(pool_claim_rules)
{
	struct net_pool *p = net_pool_new(A(10, 100, 0, 0), 24);

	ck_assert_int_eq(net_pool_claim(p, "a", A(10, 100, 0, 8)), 0);
	ck_assert_int_eq(net_pool_claim(p, "a", A(10, 100, 0, 8)), 0);
	ck_assert_int_eq(net_pool_claim(p, "a", A(10, 100, 0, 12)), -EBUSY);
	ck_assert_int_eq(net_pool_claim(p, "b", A(10, 100, 0, 8)), -EEXIST);
	ck_assert_int_eq(net_pool_claim(p, "b", A(10, 100, 1, 0)), -ERANGE);
	ck_assert_int_eq(net_pool_claim(p, "b", A(10, 100, 0, 6)), -ERANGE);
	ck_assert_int_eq(net_pool_claim(p, "b", A(10, 99, 255, 252)), -ERANGE);
	ck_assert_int_eq(net_pool_claim(p, "", A(10, 100, 0, 0)), -EINVAL);
	net_pool_free(p);
}
END_TEST

static int nskipped;

static void
count_skipped(void *ctx, const char *key, const char *why)
{
	nskipped++;
}

START_TEST(pool_json_roundtrip_and_tampering)
{
	struct net_pool *p = net_pool_new(A(10, 100, 0, 0), 16), *q;
	json_t *doc;
	uint32_t s;

	net_pool_get(p, "a", &s);
	net_pool_get(p, "b", &s);
	net_pool_release(p, "a");
	doc = net_pool_to_json(p);
	ck_assert_ptr_nonnull(doc);
	ck_assert_str_eq(json_string_value(json_object_get(doc, "pool")), "10.100.0.0/16");
	q = net_pool_new(A(10, 100, 0, 0), 16);
	ck_assert_int_eq(net_pool_load_json(q, doc, NULL, NULL), 0);
	ck_assert(net_pool_lookup(q, "b", &s));
	ck_assert_uint_eq(s, A(10, 100, 0, 4));
	ck_assert_uint_eq(net_pool_count(q), 1);
	json_decref(doc);
	net_pool_free(q);

	doc = json_loads("{\"version\":1,\"allocations\":{"
	    "\"10.100.0.8/30\":\"c\", \"10.100.0.9/30\":\"d\", \"10.100.0.12/29\":\"e\","
	    "\"010.100.0.16/30\":\"f\", \"10.101.0.0/30\":\"g\", \"10.100.0.20/30\":\"b\","
	    "\"10.100.0.24/30\":7, \"10.100.0.28/30\":\"\", \"x\":\"h\"}}", 0, NULL);
	ck_assert_ptr_nonnull(doc);
	nskipped = 0;
	ck_assert_int_eq(net_pool_load_json(p, doc, count_skipped, NULL), 0);
	ck_assert_int_eq(nskipped, 8);		/* only c is taken; b keeps its own */
	ck_assert_str_eq(net_pool_owner(p, A(10, 100, 0, 8)), "c");
	ck_assert_uint_eq(net_pool_count(p), 2);
	json_decref(doc);

	doc = json_loads("{\"version\":2,\"allocations\":{}}", 0, NULL);
	ck_assert_int_eq(net_pool_load_json(p, doc, NULL, NULL), -EINVAL);
	json_decref(doc);
	doc = json_loads("[1]", 0, NULL);
	ck_assert_int_eq(net_pool_load_json(p, doc, NULL, NULL), -EINVAL);
	json_decref(doc);
	net_pool_free(p);
}
END_TEST

static Suite *
net_pool_suite(void)
{
	Suite *s = suite_create("net_pool");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, cidr_parse_strict);
	tcase_add_test(tc, pool_lowest_first_and_reuse);
	tcase_add_test(tc, pool_of_one_refuses_second);
	tcase_add_test(tc, pool_fills_exactly);
	tcase_add_test(tc, pool_claim_rules);
	tcase_add_test(tc, pool_json_roundtrip_and_tampering);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return test_run_suite(net_pool_suite());
}
