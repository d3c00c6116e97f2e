/*
 * Unit tests for daemon/metrics.c: histogram buckets (bounds inclusive,
 * cumulative output, +Inf), the exposition text (HELP/TYPE lines, label
 * escaping, value spelling), the writer's size bound, the RPC series'
 * fixed method slots and outcomes, and the metrics.listen address parser.
 */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "config.h"
#include "metrics.h"
#include "test-util.h"

static char *
render_sample(const char *name, const char *const *labels, double v)
{
	struct metrics_text t;

	metrics_text_init(&t, 1 << 20);
	metrics_text_sample(&t, name, labels, v);
	return metrics_text_take(&t, NULL);
}

START_TEST(histogram_bounds_are_inclusive_upper_limits)
{
	static const double b[] = { 0.1, 1, 10 };
	struct metrics_histogram h;

	metrics_histogram_init(&h, b, 3);
	metrics_histogram_observe(&h, 0.1);	/* le 0.1 */
	metrics_histogram_observe(&h, 0.5);	/* le 1 */
	metrics_histogram_observe(&h, 1);	/* le 1 */
	metrics_histogram_observe(&h, 11);	/* +Inf */
	metrics_histogram_observe(&h, NAN);	/* ignored */
	ck_assert_uint_eq(h.counts[0], 1);
	ck_assert_uint_eq(h.counts[1], 2);
	ck_assert_uint_eq(h.counts[2], 0);
	ck_assert_uint_eq(h.counts[3], 1);
	ck_assert_uint_eq(h.count, 4);
	ck_assert(h.sum > 12.6 - 1e-9 && h.sum < 12.6 + 1e-9);
}
END_TEST

START_TEST(histogram_text_is_cumulative_with_inf_sum_and_count)
{
	static const double b[] = { 0.005, 0.5 };
	const char *labels[] = { "method", "vm.list", NULL };
	struct metrics_histogram h;
	struct metrics_text t;
	char *s;

	metrics_histogram_init(&h, b, 2);
	metrics_histogram_observe(&h, 0.001);
	metrics_histogram_observe(&h, 0.25);
	metrics_histogram_observe(&h, 3);
	metrics_text_init(&t, 1 << 20);
	metrics_text_histogram(&t, "x_seconds", labels, &h);
	s = metrics_text_take(&t, NULL);
	ck_assert_str_eq(s,
	    "x_seconds_bucket{method=\"vm.list\",le=\"0.005\"} 1\n"
	    "x_seconds_bucket{method=\"vm.list\",le=\"0.5\"} 2\n"
	    "x_seconds_bucket{method=\"vm.list\",le=\"+Inf\"} 3\n"
	    "x_seconds_sum{method=\"vm.list\"} 3.251\n"
	    "x_seconds_count{method=\"vm.list\"} 3\n");
	free(s);
}
END_TEST

START_TEST(histogram_without_labels_has_only_le)
{
	static const double b[] = { 1 };
	struct metrics_histogram h;
	struct metrics_text t;
	char *s;

	metrics_histogram_init(&h, b, 1);
	metrics_text_init(&t, 1 << 20);
	metrics_text_histogram(&t, "y", NULL, &h);
	s = metrics_text_take(&t, NULL);
	ck_assert_str_eq(s, "y_bucket{le=\"1\"} 0\ny_bucket{le=\"+Inf\"} 0\ny_sum 0\ny_count 0\n");
	free(s);
}
END_TEST

START_TEST(family_writes_help_and_type_with_help_escaped)
{
	struct metrics_text t;
	char *s;

	metrics_text_init(&t, 1 << 20);
	metrics_text_family(&t, "ember_vms", "gauge", "VMs \\ by\nstatus \"quoted\"");
	s = metrics_text_take(&t, NULL);
	/* HELP escapes backslash and newline, not quotes. */
	ck_assert_str_eq(s, "# HELP ember_vms VMs \\\\ by\\nstatus \"quoted\"\n"
	    "# TYPE ember_vms gauge\n");
	free(s);
}
END_TEST

START_TEST(label_values_escape_backslash_quote_and_newline)
{
	const char *labels[] = { "vm", "a\"b\\c\nd", "direction", "to_guest", NULL };
	char *s = render_sample("ember_vm_vsock_bytes_total", labels, 42);

	ck_assert_str_eq(s, "ember_vm_vsock_bytes_total{vm=\"a\\\"b\\\\c\\nd\","
	    "direction=\"to_guest\"} 42\n");
	free(s);
}
END_TEST

START_TEST(sample_values_are_spelled_as_prometheus_reads_them)
{
	char *s;

	s = render_sample("a", NULL, 0);
	ck_assert_str_eq(s, "a 0\n");
	free(s);
	s = render_sample("a", NULL, 1234567890123.0);
	ck_assert_str_eq(s, "a 1234567890123\n");
	free(s);
	s = render_sample("a", NULL, 0.25);
	ck_assert_str_eq(s, "a 0.25\n");
	free(s);
	s = render_sample("a", NULL, INFINITY);
	ck_assert_str_eq(s, "a +Inf\n");
	free(s);
	s = render_sample("a", NULL, NAN);
	ck_assert_str_eq(s, "a NaN\n");
	free(s);
}
END_TEST

START_TEST(writer_fails_past_its_bound_instead_of_growing)
{
	struct metrics_text t;
	size_t len = 99;

	metrics_text_init(&t, 64);
	for (int i = 0; i < 10; i++)
		metrics_text_sample(&t, "some_long_metric_name", NULL, i);
	ck_assert(t.failed);
	ck_assert_ptr_null(metrics_text_take(&t, &len));
	ck_assert_uint_eq(len, 0);
}
END_TEST

START_TEST(empty_writer_gives_empty_text)
{
	struct metrics_text t;
	size_t len = 99;
	char *s;

	metrics_text_init(&t, 64);
	s = metrics_text_take(&t, &len);
	ck_assert_ptr_nonnull(s);
	ck_assert_str_eq(s, "");
	ck_assert_uint_eq(len, 0);
	free(s);
}
END_TEST

/* The daemon's text, for the RPC series. */
static char *
daemon_text(void)
{
	struct metrics_text t;

	metrics_text_init(&t, 4 << 20);
	metrics_write_daemon(&t);
	return metrics_text_take(&t, NULL);
}

START_TEST(rpc_requests_are_counted_by_method_and_outcome)
{
	char *s;

	metrics_reset();
	metrics_rpc_done("vm.list", "ok", 0.002);
	metrics_rpc_done("vm.list", "ok", 0.003);
	metrics_rpc_done("vm.inspect", "not_found", 0.001);
	metrics_rpc_done(NULL, "method_not_found", 0.0001);
	metrics_rpc_done("vm.list", "no such outcome", 0.001);
	s = daemon_text();
	ck_assert_ptr_nonnull(strstr(s, "# TYPE ember_rpc_requests_total counter\n"));
	ck_assert_ptr_nonnull(strstr(s,
	    "ember_rpc_requests_total{method=\"vm.list\",outcome=\"ok\"} 2\n"));
	ck_assert_ptr_nonnull(strstr(s,
	    "ember_rpc_requests_total{method=\"vm.inspect\",outcome=\"not_found\"} 1\n"));
	ck_assert_ptr_nonnull(strstr(s,
	    "ember_rpc_requests_total{method=\"unknown\",outcome=\"method_not_found\"} 1\n"));
	/* An outcome nobody listed counts as internal (a bug), not a new label. */
	ck_assert_ptr_nonnull(strstr(s,
	    "ember_rpc_requests_total{method=\"vm.list\",outcome=\"internal\"} 1\n"));
	ck_assert_ptr_null(strstr(s, "no such outcome"));
	/* vm.list took 0.002, 0.003 and 0.001 s. */
	ck_assert_ptr_nonnull(strstr(s,
	    "ember_rpc_duration_seconds_bucket{method=\"vm.list\",le=\"0.001\"} 1\n"));
	ck_assert_ptr_nonnull(strstr(s,
	    "ember_rpc_duration_seconds_bucket{method=\"vm.list\",le=\"0.0025\"} 2\n"));
	ck_assert_ptr_nonnull(strstr(s,
	    "ember_rpc_duration_seconds_bucket{method=\"vm.list\",le=\"0.005\"} 3\n"));
	ck_assert_ptr_nonnull(strstr(s,
	    "ember_rpc_duration_seconds_count{method=\"vm.list\"} 3\n"));
	ck_assert_ptr_nonnull(strstr(s, "# TYPE ember_durable_write_duration_seconds histogram\n"));
	ck_assert_ptr_nonnull(strstr(s, "# TYPE ember_event_loop_lag_seconds histogram\n"));
	free(s);
}
END_TEST

START_TEST(rpc_method_slots_are_bounded)
{
	char name[64][16], *s;

	metrics_reset();
	for (int i = 0; i < 64; i++) {
		snprintf(name[i], sizeof(name[i]), "m%d", i);
		metrics_rpc_done(name[i], "ok", 0);
		metrics_rpc_done(name[i], "ok", 0);
	}
	s = daemon_text();
	ck_assert_ptr_nonnull(strstr(s, "{method=\"m62\",outcome=\"ok\"} 2\n"));
	/* The 64th name and later share the last slot. */
	ck_assert_ptr_null(strstr(s, "method=\"m63\""));
	ck_assert_ptr_nonnull(strstr(s, "{method=\"other\",outcome=\"ok\"} 2\n"));
	free(s);
}
END_TEST

START_TEST(durable_writes_feed_their_histogram)
{
	char *s;

	metrics_reset();
	metrics_observe_durable_write(0.003);
	s = daemon_text();
	ck_assert_ptr_nonnull(strstr(s,
	    "ember_durable_write_duration_seconds_bucket{le=\"0.0025\"} 0\n"));
	ck_assert_ptr_nonnull(strstr(s,
	    "ember_durable_write_duration_seconds_bucket{le=\"0.005\"} 1\n"));
	ck_assert_ptr_nonnull(strstr(s, "ember_durable_write_duration_seconds_count 1\n"));
	free(s);
}
END_TEST

START_TEST(listen_addresses_are_numeric_or_unix)
{
	struct ember_listen_addr a;

	ck_assert_int_eq(ember_listen_parse("127.0.0.1:9464", &a), 0);
	ck_assert_int_eq(a.family, AF_INET);
	ck_assert_uint_eq(a.port, 9464);
	ck_assert_int_eq(ember_listen_parse("[::1]:80", &a), 0);
	ck_assert_int_eq(a.family, AF_INET6);
	ck_assert_int_eq(ember_listen_parse("unix:/run/ember/metrics.sock", &a), 0);
	ck_assert_int_eq(a.family, AF_UNIX);
	ck_assert_str_eq(a.path, "/run/ember/metrics.sock");
	ck_assert_int_lt(ember_listen_parse("localhost:9464", &a), 0);	/* no resolving */
	ck_assert_int_lt(ember_listen_parse("127.0.0.1", &a), 0);
	ck_assert_int_lt(ember_listen_parse("127.0.0.1:0", &a), 0);
	ck_assert_int_lt(ember_listen_parse("127.0.0.1:65536", &a), 0);
	ck_assert_int_lt(ember_listen_parse("127.0.0.1:80x", &a), 0);
	ck_assert_int_lt(ember_listen_parse("::1:80", &a), 0);
	ck_assert_int_lt(ember_listen_parse("unix:relative", &a), 0);
	ck_assert_int_lt(ember_listen_parse("unix:/" "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", &a), 0);
}
END_TEST

static Suite *
metrics_suite(void)
{
	Suite *s = suite_create("metrics");
	TCase *tc = tcase_create("histogram");

	tcase_add_test(tc, histogram_bounds_are_inclusive_upper_limits);
	tcase_add_test(tc, histogram_text_is_cumulative_with_inf_sum_and_count);
	tcase_add_test(tc, histogram_without_labels_has_only_le);
	suite_add_tcase(s, tc);

	tc = tcase_create("exposition");
	tcase_add_test(tc, family_writes_help_and_type_with_help_escaped);
	tcase_add_test(tc, label_values_escape_backslash_quote_and_newline);
	tcase_add_test(tc, sample_values_are_spelled_as_prometheus_reads_them);
	tcase_add_test(tc, writer_fails_past_its_bound_instead_of_growing);
	tcase_add_test(tc, empty_writer_gives_empty_text);
	suite_add_tcase(s, tc);

	tc = tcase_create("daemon");
	tcase_add_test(tc, rpc_requests_are_counted_by_method_and_outcome);
	tcase_add_test(tc, rpc_method_slots_are_bounded);
	tcase_add_test(tc, durable_writes_feed_their_histogram);
	tcase_add_test(tc, listen_addresses_are_numeric_or_unix);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return test_run_suite(metrics_suite());
}
