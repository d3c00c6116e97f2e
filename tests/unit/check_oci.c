/*
 * Unit tests for common/oci.c: reading a layout's manifest digest and config
 * (type-checked, bounded, refusing digests that are not sha256 hex), and
 * turning an image config plus a VM's overrides into the workload and its
 * kernel command line word.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base64.h"
#include "fsutil.h"
#include "oci.h"
#include "test-util.h"

#define HEX_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define HEX_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

static char layout[64];

static void
write_text(const char *rel, const char *text)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", layout, rel);
	ck_assert_ptr_nonnull(f = fopen(path, "w"));
	fputs(text, f);
	fclose(f);
}

/* A layout whose manifest (tagged "v1") is HEX_A and whose config is HEX_B. */
static void
make_layout(const char *manifest_digest, const char *config_json)
{
	char path[256], index[512];

	test_tmpdir_new(layout, sizeof(layout), "/tmp/check_oci.XXXXXX");
	snprintf(path, sizeof(path), "%s/blobs/sha256", layout);
	ck_assert_int_eq(mkdir_p(path, 0755), 0);
	snprintf(index, sizeof(index), "{\"schemaVersion\":2,\"manifests\":[{\"digest\":\"%s\","
	    "\"annotations\":{\"org.opencontainers.image.ref.name\":\"v1\"}}]}", manifest_digest);
	write_text("index.json", index);
	write_text("blobs/sha256/" HEX_A, "{\"config\":{\"digest\":\"sha256:" HEX_B "\"}}");
	write_text("blobs/sha256/" HEX_B, config_json);
}

static void
drop_layout(void)
{
	rm_rf(layout);
}

START_TEST(layout_read_keeps_digest_and_typed_config)
{
	json_t *out;
	char err[256];

	make_layout("sha256:" HEX_A, "{\"config\":{\"Entrypoint\":[\"/e\"],\"Cmd\":[\"a\"],"
	    "\"Env\":[\"A=1\"],\"WorkingDir\":\"/w\",\"User\":\"1:2\",\"Labels\":{\"l\":\"v\"},"
	    "\"ExposedPorts\":{\"80/tcp\":{}},\"Volumes\":{\"/v\":{}},\"Cmd2\":1}}");
	ck_assert_int_eq(oci_layout_read(layout, "v1", &out, err, sizeof(err)), 0);
	ck_assert_str_eq(json_string_value(json_object_get(out, "digest")), "sha256:" HEX_A);
	json_t *cfg = json_object_get(out, "config");
	ck_assert_str_eq(json_string_value(json_array_get(json_object_get(cfg, "Entrypoint"), 0)), "/e");
	ck_assert_str_eq(json_string_value(json_object_get(cfg, "User")), "1:2");
	ck_assert_ptr_nonnull(json_object_get(cfg, "ExposedPorts"));
	ck_assert_ptr_null(json_object_get(cfg, "Volumes"));	/* not kept */
	json_decref(out);
	drop_layout();
}
END_TEST

START_TEST(layout_read_drops_members_of_the_wrong_type)
{
	json_t *out;
	char err[256];

	make_layout("sha256:" HEX_A, "{\"config\":{\"Entrypoint\":\"/not-an-array\","
	    "\"Env\":[1,2],\"User\":7}}");
	ck_assert_int_eq(oci_layout_read(layout, "v1", &out, err, sizeof(err)), 0);
	ck_assert_int_eq(json_object_size(json_object_get(out, "config")), 0);
	json_decref(out);
	drop_layout();
}
END_TEST

START_TEST(layout_read_refuses_digests_that_are_not_sha256_hex)
{
	json_t *out;
	char err[256];

	make_layout("sha256:../../../../etc/passwd", "{}");
	ck_assert_int_eq(oci_layout_read(layout, "v1", &out, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_null(out);
	ck_assert_ptr_nonnull(strstr(err, "unsupported digest"));
	drop_layout();
}
END_TEST

START_TEST(layout_read_without_index_fails)
{
	json_t *out;
	char err[256];

	ck_assert_int_lt(oci_layout_read("/nonexistent-layout", "v1", &out, err, sizeof(err)), 0);
	ck_assert_ptr_null(out);
}
END_TEST

static json_t *
config(void)
{
	return json_pack("{s:[s], s:[s,s], s:[s,s], s:s, s:s}", "Entrypoint", "/entry",
	    "Cmd", "a", "b", "Env", "PATH=/bin", "FOO=bar", "WorkingDir", "/work", "User", "app");
}

START_TEST(workload_is_entrypoint_then_cmd_with_image_settings)
{
	json_t *cfg = config(), *w;
	char err[256];

	ck_assert_int_eq(oci_workload(cfg, NULL, NULL, NULL, NULL, &w, err, sizeof(err)), 0);
	ck_assert_int_eq(json_array_size(json_object_get(w, "args")), 3);
	ck_assert_str_eq(json_string_value(json_array_get(json_object_get(w, "args"), 2)), "b");
	ck_assert_str_eq(json_string_value(json_object_get(w, "workdir")), "/work");
	ck_assert_str_eq(json_string_value(json_object_get(w, "user")), "app");
	json_decref(w);
	json_decref(cfg);
}
END_TEST

START_TEST(workload_overrides_replace_cmd_env_workdir_user)
{
	json_t *cfg = config(), *w, *args = json_pack("[s]", "x");
	json_t *env = json_pack("[s,s]", "FOO=baz", "NEW=1");
	char err[256];

	ck_assert_int_eq(oci_workload(cfg, args, env, "/tmp", "0:0", &w, err, sizeof(err)), 0);
	json_t *a = json_object_get(w, "args"), *e = json_object_get(w, "env");
	ck_assert_int_eq(json_array_size(a), 2);	/* the Entrypoint stays */
	ck_assert_str_eq(json_string_value(json_array_get(a, 0)), "/entry");
	ck_assert_str_eq(json_string_value(json_array_get(a, 1)), "x");
	ck_assert_int_eq(json_array_size(e), 3);
	ck_assert_str_eq(json_string_value(json_array_get(e, 1)), "FOO=baz");
	ck_assert_str_eq(json_string_value(json_array_get(e, 2)), "NEW=1");
	ck_assert_str_eq(json_string_value(json_object_get(w, "workdir")), "/tmp");
	ck_assert_str_eq(json_string_value(json_object_get(w, "user")), "0:0");
	json_decref(w);
	json_decref(args);
	json_decref(env);
	json_decref(cfg);
}
END_TEST

START_TEST(workload_with_nothing_to_run_is_einval)
{
	json_t *cfg = json_object(), *w;
	char err[256];

	ck_assert_int_eq(oci_workload(cfg, NULL, NULL, NULL, NULL, &w, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_null(w);
	ck_assert_ptr_nonnull(strstr(err, "no Entrypoint or Cmd"));
	json_decref(cfg);
}
END_TEST

START_TEST(workload_word_round_trips_and_is_bounded)
{
	json_t *w = json_pack("{s:[s], s:[], s:s, s:s}", "args", "/x", "env", "workdir", "/",
	    "user", ""), *back;
	unsigned char *raw;
	size_t len;
	char *word;

	ck_assert_int_eq(oci_workload_word(w, &word), 0);
	ck_assert_int_eq(strncmp(word, "ember.workload=", 15), 0);
	ck_assert_int_eq(base64_decode(word + 15, strlen(word + 15), &raw, &len), 0);
	back = json_loadb((const char *)raw, len, 0, NULL);
	ck_assert(json_equal(back, w));
	free(raw);
	free(word);
	json_decref(back);
	char big[2000];
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	json_array_append_new(json_object_get(w, "args"), json_string(big));
	ck_assert_int_eq(oci_workload_word(w, &word), -E2BIG);
	ck_assert_ptr_null(word);
	json_decref(w);
}
END_TEST

START_TEST(probe_digest_is_the_marked_line_among_warnings)
{
	char d[OCI_DIGEST_LEN];

	ck_assert_int_eq(oci_probe_digest("time=\"x\" level=warning msg=\"ember-digest=sha256:"
	    HEX_B "\"\nember-digest=sha256:" HEX_A "\r\nmore\n", d), 0);
	ck_assert_str_eq(d, "sha256:" HEX_A);
	ck_assert_int_eq(oci_probe_digest("ember-digest=sha256:" HEX_A, d), 0);
	ck_assert_str_eq(d, "sha256:" HEX_A);
}
END_TEST

START_TEST(probe_digest_refuses_anything_but_sha256_hex)
{
	char d[OCI_DIGEST_LEN] = "";

	ck_assert_int_eq(oci_probe_digest("", d), -ENOENT);
	ck_assert_int_eq(oci_probe_digest("ember-digest=\n", d), -ENOENT);
	ck_assert_int_eq(oci_probe_digest("ember-digest=sha512:" HEX_A, d), -ENOENT);
	ck_assert_int_eq(oci_probe_digest("ember-digest=sha256:" HEX_A "0", d), -ENOENT);
	ck_assert_int_eq(oci_probe_digest("ember-digest=sha256:AAAA" HEX_A, d), -ENOENT);
	ck_assert_int_eq(oci_probe_digest(" ember-digest=sha256:" HEX_A, d), -ENOENT);
	ck_assert_str_eq(d, "");
}
END_TEST

static Suite *
oci_suite(void)
{
	Suite *s = suite_create("oci");
	TCase *tc = tcase_create("layout");

	tcase_add_test(tc, layout_read_keeps_digest_and_typed_config);
	tcase_add_test(tc, layout_read_drops_members_of_the_wrong_type);
	tcase_add_test(tc, layout_read_refuses_digests_that_are_not_sha256_hex);
	tcase_add_test(tc, layout_read_without_index_fails);
	suite_add_tcase(s, tc);
	tc = tcase_create("workload");
	tcase_add_test(tc, workload_is_entrypoint_then_cmd_with_image_settings);
	tcase_add_test(tc, workload_overrides_replace_cmd_env_workdir_user);
	tcase_add_test(tc, workload_with_nothing_to_run_is_einval);
	tcase_add_test(tc, workload_word_round_trips_and_is_bounded);
	suite_add_tcase(s, tc);
	tc = tcase_create("probe");
	tcase_add_test(tc, probe_digest_is_the_marked_line_among_warnings);
	tcase_add_test(tc, probe_digest_refuses_anything_but_sha256_hex);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return test_run_suite(oci_suite());
}
