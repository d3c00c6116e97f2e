/*
 * VM specs: the golden files under tests/golden/spec, the values a valid
 * spec yields, vm_spec_merge precedence and the vm.create parameters
 * built by vm_spec_to_params.
 */
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "backend.h"
#include "config.h"
#include "spec.h"
#include "golden-yaml.h"
#include "test-util.h"

#define SPEC_DIR	EMBER_TEST_DATA "/golden/spec"

static int
parse_spec(const char *text, size_t len, const char *filename,
    struct ember_error *err)
{
	struct vm_spec spec = { 0 };
	int r;

	r = vm_spec_parse(text, len, filename, &spec, err);
	vm_spec_clear(&spec);
	return r;
}

static void
parse_ok(const char *text, struct vm_spec *spec)
{
	struct ember_error err = { 0 };

	ck_assert_msg(vm_spec_parse(text, strlen(text), "t.yaml", spec,
	    &err) == 0, "%s", err.message);
}

static const char *
parse_fails(const char *text)
{
	static struct ember_error err;
	struct vm_spec spec = { 0 };

	ember_error_clear(&err);
	ck_assert_int_eq(vm_spec_parse(text, strlen(text), "t.yaml", &spec,
	    &err), -1);
	ck_assert_int_eq(err.kind, EK_INVALID_SPEC);
	vm_spec_clear(&spec);
	return err.message;
}

START_TEST(golden_spec_files)
{
	int npass, nfail;

	golden_run(SPEC_DIR, parse_spec, &npass, &nfail);
	ck_assert_int_ge(npass, 3);
	ck_assert_int_ge(nfail, 8);
}
END_TEST

START_TEST(spec_full_file_sets_every_field)
{
	struct vm_spec spec = { 0 };
	struct ember_error err = { 0 };

	ck_assert_int_eq(vm_spec_load(SPEC_DIR "/pass-full.yaml", &spec, &err),
	    0);
	ck_assert_str_eq(spec.image, "mini");
	ck_assert_str_eq(spec.kernel, "/var/lib/ember/images/mini/vmlinux");
	ck_assert_str_eq(spec.initrd, "/var/lib/ember/images/mini/initrd.img");
	ck_assert_str_eq(spec.rootfs, "/var/lib/ember/images/mini/rootfs.ext4");
	ck_assert(spec.has_cpus);
	ck_assert_uint_eq(spec.cpus, 2);
	ck_assert(spec.has_memory);
	ck_assert_uint_eq(spec.memory_mib, 1024);
	ck_assert(spec.has_disk_size);
	ck_assert_uint_eq(spec.disk_size, 4ULL << 30);
	ck_assert_str_eq(spec.boot_args, "console=ttyS0 reboot=k panic=1");
	ck_assert(spec.has_vsock && spec.vsock);
	ck_assert_str_eq(spec.backend, "firecracker");
	ck_assert_str_eq(spec.network, "user");
	vm_spec_clear(&spec);
}
END_TEST

START_TEST(spec_empty_file_sets_nothing)
{
	struct vm_spec spec = { 0 };

	parse_ok("", &spec);
	ck_assert_ptr_null(spec.image);
	ck_assert(!spec.has_cpus && !spec.has_memory && !spec.has_disk_size &&
	    !spec.has_vsock);
	parse_ok("# only a comment\n", &spec);
	parse_ok("---\n...\n", &spec);
	vm_spec_clear(&spec);
}
END_TEST

START_TEST(spec_quoted_size_and_plain_number_string)
{
	struct vm_spec spec = { 0 };

	parse_ok("memory: \"2G\"\nimage: 123\nvsock: false\n", &spec);
	ck_assert_uint_eq(spec.memory_mib, 2048);
	ck_assert_str_eq(spec.image, "123");
	ck_assert(spec.has_vsock && !spec.vsock);
	vm_spec_clear(&spec);
}
END_TEST

START_TEST(spec_limits_are_inclusive)
{
	struct vm_spec spec = { 0 };

	parse_ok("cpus: 1\nmemory: 16M\n", &spec);
	ck_assert_uint_eq(spec.cpus, 1);
	ck_assert_uint_eq(spec.memory_mib, 16);
	parse_ok("cpus: 64\nmemory: 1T\ndisk_size: 1M\n", &spec);
	ck_assert_uint_eq(spec.cpus, 64);
	ck_assert_uint_eq(spec.memory_mib, 1024 * 1024);
	ck_assert_uint_eq(spec.disk_size, 1024 * 1024);
	vm_spec_clear(&spec);
}
END_TEST

START_TEST(spec_failure_leaves_spec_untouched)
{
	struct vm_spec spec = { 0 };
	struct ember_error err = { 0 };
	const char *bad = "image: other\ncpus: 2\nmemory: 512\n";

	parse_ok("image: mini\n", &spec);
	ck_assert_int_eq(vm_spec_parse(bad, strlen(bad), "t.yaml", &spec, &err),
	    -1);
	ck_assert_str_eq(spec.image, "mini");
	ck_assert(!spec.has_cpus);
	vm_spec_clear(&spec);
}
END_TEST

START_TEST(spec_errors_carry_position)
{
	ck_assert_str_eq(parse_fails("image: mini\n\ncpus:   many\n"),
	    "t.yaml:3:9: \"cpus\": expected an integer from 1 to 64, got \"many\"");
	ck_assert_str_eq(parse_fails("cpus: 2\nmemroy: 1G\n"),
	    "t.yaml:2:1: unknown key \"memroy\"");
	ck_assert_str_eq(parse_fails("cpus:\n"),
	    "t.yaml:1:6: \"cpus\": expected an integer from 1 to 64, got no value");
}
END_TEST

START_TEST(spec_unknown_key_hint_suggests)
{
	struct vm_spec spec = { 0 };
	struct ember_error err = { 0 };

	ck_assert_int_eq(vm_spec_parse("memroy: 1G", 10, "t.yaml", &spec, &err),
	    -1);
	ck_assert_str_eq(err.hint, "did you mean \"memory\"?");
	ember_error_clear(&err);
	ck_assert_int_eq(vm_spec_parse("colour: red", 11, "t.yaml", &spec,
	    &err), -1);
	ck_assert_ptr_nonnull(strstr(err.hint, "known keys: image, kernel"));
}
END_TEST

START_TEST(spec_long_values_are_cut_and_escaped)
{
	const char *msg;

	msg = parse_fails("backend: \"a\\tb\\x01\"\n");
	ck_assert_str_eq(msg, "t.yaml:1:10: \"backend\": expected one of auto, "
	    "qemu, firecracker, got \"a\\tb\\x01\"");
	msg = parse_fails("backend: "
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n");
	ck_assert_ptr_nonnull(strstr(msg, "aaaa...\""));
}
END_TEST

START_TEST(spec_deep_nesting_is_refused)
{
	char text[256];
	size_t n = 0;

	n += (size_t)snprintf(text, sizeof(text), "image: ");
	for (int i = 0; i < 40; i++)
		text[n++] = '[';
	text[n] = '\0';
	ck_assert_str_eq(parse_fails(text),
	    "t.yaml:1:39: nested more than 32 levels deep");
}
END_TEST

START_TEST(spec_load_missing_file_names_it)
{
	struct vm_spec spec = { 0 };
	struct ember_error err = { 0 };

	ck_assert_int_eq(vm_spec_load(SPEC_DIR "/does-not-exist.yaml", &spec,
	    &err), -1);
	ck_assert_int_eq(err.kind, EK_INVALID_SPEC);
	ck_assert_ptr_nonnull(strstr(err.message, "does-not-exist.yaml"));
	ck_assert_ptr_nonnull(strstr(err.message, "No such file"));
	ember_error_clear(&err);
	ck_assert_int_eq(vm_spec_load(SPEC_DIR, &spec, &err), -1);
	ck_assert_ptr_nonnull(strstr(err.message, "Is a directory"));
}
END_TEST

START_TEST(spec_load_messages_name_the_path)
{
	struct vm_spec spec = { 0 };
	struct ember_error err = { 0 };

	ck_assert_int_eq(vm_spec_load(SPEC_DIR "/fail-cpus-word.yaml", &spec,
	    &err), -1);
	ck_assert_str_eq(err.message, SPEC_DIR "/fail-cpus-word.yaml:2:7: "
	    "\"cpus\": expected an integer from 1 to 64, got \"many\"");
}
END_TEST

START_TEST(spec_to_params_renames_and_rounds)
{
	struct vm_spec spec = { 0 };
	json_t *params;

	parse_ok("image: mini\ncpus: 2\nmemory: 1G\ndisk_size: 1537K\n"
	    "boot_args: quiet\nvsock: false\nbackend: qemu\nnetwork: user\n"
	    "kernel: /k\ninitrd: /i\nrootfs: /r\n", &spec);
	ck_assert_ptr_nonnull(params = vm_spec_to_params(&spec));
	ck_assert_str_eq(json_string_value(json_object_get(params, "image")),
	    "mini");
	ck_assert_int_eq(json_integer_value(json_object_get(params, "cpus")), 2);
	ck_assert_int_eq(json_integer_value(json_object_get(params,
	    "memory_mib")), 1024);
	/* 1537K is 1.5 MiB and a bit: rounded up to 2. */
	ck_assert_int_eq(json_integer_value(json_object_get(params,
	    "disk_size_mib")), 2);
	ck_assert(json_is_false(json_object_get(params, "vsock")));
	ck_assert_str_eq(json_string_value(json_object_get(params, "backend")),
	    "qemu");
	ck_assert_str_eq(json_string_value(json_object_get(params, "network")),
	    "user");
	ck_assert_str_eq(json_string_value(json_object_get(params,
	    "boot_args")), "quiet");
	ck_assert_str_eq(json_string_value(json_object_get(params, "kernel")),
	    "/k");
	ck_assert_str_eq(json_string_value(json_object_get(params, "initrd")),
	    "/i");
	ck_assert_str_eq(json_string_value(json_object_get(params, "rootfs")),
	    "/r");
	ck_assert_ptr_null(json_object_get(params, "memory"));
	ck_assert_ptr_null(json_object_get(params, "disk_size"));
	ck_assert_uint_eq(json_object_size(params), 11);
	json_decref(params);
	vm_spec_clear(&spec);
}
END_TEST

START_TEST(spec_to_params_only_present_fields)
{
	struct vm_spec spec = { 0 };
	json_t *params;

	ck_assert_ptr_nonnull(params = vm_spec_to_params(&spec));
	ck_assert_uint_eq(json_object_size(params), 0);
	json_decref(params);

	parse_ok("disk_size: 4G\n", &spec);
	ck_assert_ptr_nonnull(params = vm_spec_to_params(&spec));
	ck_assert_uint_eq(json_object_size(params), 1);
	ck_assert_int_eq(json_integer_value(json_object_get(params,
	    "disk_size_mib")), 4096);
	json_decref(params);
	vm_spec_clear(&spec);
}
END_TEST

START_TEST(spec_merge_flags_override_file)
{
	struct vm_spec file = { 0 }, flags = { 0 };

	parse_ok("image: mini\ncpus: 2\nmemory: 1G\nvsock: true\n", &file);
	parse_ok("cpus: 4\nvsock: false\nbackend: qemu\n", &flags);
	ck_assert_int_eq(vm_spec_merge(&file, &flags), 0);
	ck_assert_str_eq(file.image, "mini");		/* file only */
	ck_assert_uint_eq(file.cpus, 4);		/* flag wins */
	ck_assert_uint_eq(file.memory_mib, 1024);
	ck_assert(file.has_vsock && !file.vsock);	/* false still wins */
	ck_assert_str_eq(file.backend, "qemu");		/* flag only */
	ck_assert(!file.has_disk_size);
	vm_spec_clear(&file);
	vm_spec_clear(&flags);
}
END_TEST

START_TEST(spec_backend_is_free_text_without_a_registry)
{
	struct vm_spec spec = { 0 };
	struct ember_error err = { 0 };
	const char *text = "backend: cloud-hypervisor\n";

	ck_assert_int_eq(ember_config_register_backends(NULL, 0), 0);
	ck_assert_msg(vm_spec_parse(text, strlen(text), "t.yaml", &spec, &err) == 0, "%s",
	    err.message);
	ck_assert_str_eq(spec.backend, "cloud-hypervisor");
	vm_spec_clear(&spec);
	ck_assert_int_eq(backend_types_register_config(), 0);
	ck_assert_int_eq(vm_spec_parse(text, strlen(text), "t.yaml", &spec, &err), -1);
	vm_spec_clear(&spec);
}
END_TEST

static Suite *
spec_suite(void)
{
	Suite *s = suite_create("spec");
	TCase *tc = tcase_create("spec");

	tcase_add_test(tc, golden_spec_files);
	tcase_add_test(tc, spec_full_file_sets_every_field);
	tcase_add_test(tc, spec_empty_file_sets_nothing);
	tcase_add_test(tc, spec_quoted_size_and_plain_number_string);
	tcase_add_test(tc, spec_limits_are_inclusive);
	tcase_add_test(tc, spec_failure_leaves_spec_untouched);
	tcase_add_test(tc, spec_errors_carry_position);
	tcase_add_test(tc, spec_unknown_key_hint_suggests);
	tcase_add_test(tc, spec_long_values_are_cut_and_escaped);
	tcase_add_test(tc, spec_backend_is_free_text_without_a_registry);
	tcase_add_test(tc, spec_deep_nesting_is_refused);
	tcase_add_test(tc, spec_load_missing_file_names_it);
	tcase_add_test(tc, spec_load_messages_name_the_path);
	tcase_add_test(tc, spec_to_params_renames_and_rounds);
	tcase_add_test(tc, spec_to_params_only_present_fields);
	tcase_add_test(tc, spec_merge_flags_override_file);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	/* As in emberd; emberctl registers none (see the test below). */
	if (backend_types_register_config() != 0)
		return EXIT_FAILURE;
	return test_run_suite(spec_suite());
}
