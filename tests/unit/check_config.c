/*
 * The daemon configuration: built-in defaults, the golden files under
 * tests/golden/config, the shipped packaging/emberd.yaml, parsing over an
 * existing configuration, and the vm.create defaults it fills in.
 */
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "config.h"
#include "log.h"
#include "golden-yaml.h"

#define CONFIG_DIR	EMBER_TEST_DATA "/golden/config"
#define SHIPPED_CONFIG	EMBER_TEST_DATA "/../packaging/emberd.yaml"

static int
parse_config(const char *text, size_t len, const char *filename,
    struct ember_error *err)
{
	struct ember_config cfg;
	int r;

	ember_config_init(&cfg);
	r = ember_config_parse(text, len, filename, &cfg, err);
	ember_config_clear(&cfg);
	return r;
}

static int
parse(struct ember_config *cfg, const char *text, struct ember_error *err)
{
	ember_error_clear(err);
	return ember_config_parse(text, strlen(text), "c.yaml", cfg, err);
}

START_TEST(golden_config_files)
{
	int npass, nfail;

	golden_run(CONFIG_DIR, parse_config, &npass, &nfail);
	ck_assert_int_ge(npass, 3);
	ck_assert_int_ge(nfail, 8);
}
END_TEST

START_TEST(config_init_sets_builtin_defaults)
{
	struct ember_config cfg;

	ember_config_init(&cfg);
	ck_assert_ptr_null(cfg.state_dir);
	ck_assert_ptr_null(cfg.socket);
	ck_assert_ptr_null(cfg.socket_group);
	ck_assert_int_eq(cfg.log_level, -1);
	ck_assert_uint_eq(cfg.cid_min, 3);
	ck_assert_uint_eq(cfg.cid_max, 4294967294U);
	ck_assert_ptr_null(cfg.default_image);
	ck_assert_ptr_null(cfg.firecracker_binary);
	ck_assert_ptr_null(cfg.firecracker_kvm_device);
	ck_assert(cfg.firecracker_require_kvm);
	ck_assert_ptr_null(cfg.qemu_binary);
	ck_assert_str_eq(cfg.qemu_accel, "auto");
	ck_assert_uint_eq(cfg.default_cpus, 1);
	ck_assert_uint_eq(cfg.default_memory_mib, 512);
	ck_assert_str_eq(cfg.default_backend, "auto");
	ck_assert(cfg.vsock_vm_to_vm);
	/* Clearing built-in strings must not free them; twice is harmless. */
	ember_config_clear(&cfg);
	ember_config_clear(&cfg);
}
END_TEST

START_TEST(config_full_file_sets_every_field)
{
	struct ember_config cfg;
	struct ember_error err = { 0 };

	ember_config_init(&cfg);
	ck_assert_msg(ember_config_load(CONFIG_DIR "/pass-full.yaml", &cfg,
	    &err) == 0, "%s", err.message);
	ck_assert_str_eq(cfg.state_dir, "/var/lib/ember");
	ck_assert_str_eq(cfg.socket, "/run/ember/emberd.sock");
	ck_assert_str_eq(cfg.socket_group, "ember");
	ck_assert_int_eq(cfg.log_level, LOG_LEVEL_DEBUG);
	ck_assert_uint_eq(cfg.cid_min, 100);
	ck_assert_uint_eq(cfg.cid_max, 200);
	ck_assert_str_eq(cfg.default_image, "mini");
	ck_assert_str_eq(cfg.firecracker_binary, "/usr/bin/firecracker");
	ck_assert_str_eq(cfg.firecracker_kvm_device, "/dev/kvm-other");
	ck_assert(!cfg.firecracker_require_kvm);
	ck_assert_str_eq(cfg.qemu_binary, "qemu-system-x86_64");
	ck_assert_str_eq(cfg.qemu_accel, "kvm");
	ck_assert_uint_eq(cfg.default_cpus, 2);
	ck_assert_uint_eq(cfg.default_memory_mib, 1024);
	ck_assert_str_eq(cfg.default_backend, "qemu");
	ck_assert(!cfg.vsock_vm_to_vm);
	ember_config_clear(&cfg);
}
END_TEST

START_TEST(config_shipped_file_loads)
{
	struct ember_config cfg, builtin;
	struct ember_error err = { 0 };

	ember_config_init(&cfg);
	ember_config_init(&builtin);
	ck_assert_msg(ember_config_load(SHIPPED_CONFIG, &cfg, &err) == 0, "%s",
	    err.message);
	/* It documents the defaults; whatever it sets must agree with them. */
	ck_assert_uint_eq(cfg.cid_min, builtin.cid_min);
	ck_assert_uint_eq(cfg.cid_max, builtin.cid_max);
	ck_assert_uint_eq(cfg.default_cpus, builtin.default_cpus);
	ck_assert_uint_eq(cfg.default_memory_mib, builtin.default_memory_mib);
	ck_assert_str_eq(cfg.default_backend, builtin.default_backend);
	ck_assert_str_eq(cfg.qemu_accel, builtin.qemu_accel);
	ck_assert(cfg.vsock_vm_to_vm);
	ck_assert(cfg.firecracker_require_kvm);
	ck_assert(cfg.firecracker_kvm_device == NULL ||
	    strcmp(cfg.firecracker_kvm_device, "/dev/kvm") == 0);
	ember_config_clear(&cfg);
}
END_TEST

START_TEST(config_file_overrides_only_what_it_sets)
{
	struct ember_config cfg;
	struct ember_error err;

	ember_config_init(&cfg);
	ck_assert_int_eq(parse(&cfg, "state_dir: /srv/ember\ncid_max: 1000\n"
	    "qemu: {accel: tcg}\nfirecracker: {kvm_device: /dev/kvm2}\n", &err), 0);
	ck_assert_int_eq(parse(&cfg, "log_level: warn\ndefaults: {cpus: 3}\n",
	    &err), 0);
	ck_assert_str_eq(cfg.firecracker_kvm_device, "/dev/kvm2");	/* copied over */
	ck_assert_str_eq(cfg.state_dir, "/srv/ember");	/* first file */
	ck_assert_uint_eq(cfg.cid_max, 1000);
	ck_assert_str_eq(cfg.qemu_accel, "tcg");
	ck_assert_int_eq(cfg.log_level, LOG_LEVEL_WARN);	/* second file */
	ck_assert_uint_eq(cfg.default_cpus, 3);
	ck_assert_uint_eq(cfg.default_memory_mib, 512);	/* built-in */
	ck_assert_str_eq(cfg.default_backend, "auto");
	ember_config_clear(&cfg);
}
END_TEST

START_TEST(config_quota_defaults_and_root)
{
	struct ember_config cfg;

	ember_config_init(&cfg);
	ck_assert_ptr_null(ember_config_quota(&cfg, 0));
	ck_assert_uint_eq(ember_config_quota(&cfg, 1000)->vms, QUOTA_DEFAULT_VMS);
	ck_assert_uint_eq(ember_config_quota(&cfg, 1000)->connections,
	    QUOTA_DEFAULT_CONNECTIONS);
	ck_assert_uint_eq(cfg.max_batch, CONFIG_MAX_BATCH_DEFAULT);
	ember_config_clear(&cfg);
}
END_TEST

START_TEST(config_quota_users_inherit_default_in_any_order)
{
	struct ember_config cfg, copy;
	struct ember_error err;
	const struct ember_quota *q;

	ember_config_init(&cfg);
	/* users before default: unset keys still come from the final default */
	ck_assert_int_eq(parse(&cfg, "quotas:\n  users:\n    \"1001\": { vms: 2 }\n"
	    "    nobody: { memory: 2G }\n  default: { vms: 5, cids: 1 }\n"
	    "limits: { max_batch: 7, max_connections: 50, reply_high_water: 1M }\n",
	    &err), 0);
	q = ember_config_quota(&cfg, 1001);
	ck_assert_uint_eq(q->vms, 2);
	ck_assert_uint_eq(q->cids, 1);
	q = ember_config_quota(&cfg, 65534);
	ck_assert_uint_eq(q->memory_mib, 2048);
	ck_assert_uint_eq(q->vms, 5);
	ck_assert_uint_eq(ember_config_quota(&cfg, 42)->vms, 5);
	ck_assert_uint_eq(cfg.max_batch, 7);
	ck_assert_uint_eq(cfg.max_connections, 50);
	ck_assert_uint_eq(cfg.reply_high_water, 1024 * 1024);
	/* a later parse keeps the users (deep copy) unless it sets them */
	ck_assert_int_eq(parse(&cfg, "log_level: debug\n", &err), 0);
	ck_assert_uint_eq(ember_config_quota(&cfg, 1001)->vms, 2);
	ember_config_init(&copy);
	ck_assert_int_eq(parse(&copy, "quotas: { users: {} }\n", &err), 0);
	ck_assert_uint_eq(copy.nquota_users, 0);
	ember_config_clear(&copy);
	ember_config_clear(&cfg);
}
END_TEST

START_TEST(config_quota_users_refused)
{
	struct ember_config cfg;
	struct ember_error err;

	ember_config_init(&cfg);
	ck_assert_int_eq(parse(&cfg, "quotas:\n  users:\n    root: { vms: 1 }\n", &err), -1);
	ck_assert_ptr_nonnull(strstr(err.message, "root has no quota"));
	ck_assert_int_eq(parse(&cfg, "quotas:\n  users:\n    no-such-user-x: {}\n", &err), -1);
	ck_assert_ptr_nonnull(strstr(err.message, "no user"));
	ck_assert_int_eq(parse(&cfg, "quotas:\n  users:\n    \"7\": {}\n    \"7\": {}\n",
	    &err), -1);
	ck_assert_int_eq(parse(&cfg, "quotas:\n  users:\n    \"7\": { bogus: 1 }\n", &err), -1);
	ck_assert_int_eq(parse(&cfg, "limits: { max_batch: 0 }\n", &err), -1);
	ck_assert_int_eq(parse(&cfg, "quotas: { users: [1, 2] }\n", &err), -1);
	ck_assert_uint_eq(cfg.nquota_users, 0);
	ember_config_clear(&cfg);
}
END_TEST

START_TEST(config_failure_leaves_config_untouched)
{
	struct ember_config cfg;
	struct ember_error err;

	ember_config_init(&cfg);
	ck_assert_int_eq(parse(&cfg, "state_dir: /srv/ember\n", &err), 0);
	ck_assert_int_eq(parse(&cfg, "state_dir: /other\ndefaults:\n"
	    "  backend: qemu\n  memory: 512\n", &err), -1);
	ck_assert_str_eq(cfg.state_dir, "/srv/ember");
	ck_assert_str_eq(cfg.default_backend, "auto");
	ember_config_clear(&cfg);
}
END_TEST

START_TEST(config_cid_min_checked_against_existing_max)
{
	struct ember_config cfg;
	struct ember_error err;

	ember_config_init(&cfg);
	ck_assert_int_eq(parse(&cfg, "cid_max: 10\n", &err), 0);
	ck_assert_int_eq(parse(&cfg, "log_level: info\ncid_min: 11\n", &err), -1);
	ck_assert_str_eq(err.message,
	    "c.yaml:2:10: \"cid_min\": must be at most cid_max (10), got 11");
	ck_assert_uint_eq(cfg.cid_min, 3);
	ember_config_clear(&cfg);
}
END_TEST

START_TEST(config_unknown_nested_key_hint)
{
	struct ember_config cfg;
	struct ember_error err;

	ember_config_init(&cfg);
	ck_assert_int_eq(parse(&cfg, "qemu:\n  acel: kvm\n", &err), -1);
	ck_assert_str_eq(err.message, "c.yaml:2:3: unknown key \"acel\" in \"qemu\"");
	ck_assert_str_eq(err.hint, "did you mean \"accel\"?");
	ember_config_clear(&cfg);
}
END_TEST

START_TEST(config_fills_only_absent_params)
{
	struct ember_config cfg;
	struct ember_error err;
	json_t *params;

	ember_config_init(&cfg);
	params = json_pack("{s:s, s:i}", "name", "a", "cpus", 4);
	ck_assert_int_eq(ember_config_fill_params(&cfg, params), 0);
	ck_assert_ptr_null(json_object_get(params, "image"));	/* none set */
	ck_assert_int_eq(json_integer_value(json_object_get(params, "cpus")), 4);
	ck_assert_int_eq(json_integer_value(json_object_get(params,
	    "memory_mib")), 512);
	ck_assert_str_eq(json_string_value(json_object_get(params, "backend")),
	    "auto");
	json_decref(params);

	ck_assert_int_eq(parse(&cfg, "default_image: mini\n"
	    "defaults: {memory: 2G, backend: qemu}\n", &err), 0);
	params = json_pack("{s:s, s:s}", "name", "a", "backend", "firecracker");
	ck_assert_int_eq(ember_config_fill_params(&cfg, params), 0);
	ck_assert_str_eq(json_string_value(json_object_get(params, "image")),
	    "mini");
	ck_assert_int_eq(json_integer_value(json_object_get(params, "cpus")), 1);
	ck_assert_int_eq(json_integer_value(json_object_get(params,
	    "memory_mib")), 2048);
	ck_assert_str_eq(json_string_value(json_object_get(params, "backend")),
	    "firecracker");
	json_decref(params);
	ember_config_clear(&cfg);
}
END_TEST

static Suite *
config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("config");

	tcase_add_test(tc, golden_config_files);
	tcase_add_test(tc, config_init_sets_builtin_defaults);
	tcase_add_test(tc, config_full_file_sets_every_field);
	tcase_add_test(tc, config_shipped_file_loads);
	tcase_add_test(tc, config_file_overrides_only_what_it_sets);
	tcase_add_test(tc, config_failure_leaves_config_untouched);
	tcase_add_test(tc, config_cid_min_checked_against_existing_max);
	tcase_add_test(tc, config_unknown_nested_key_hint);
	tcase_add_test(tc, config_fills_only_absent_params);
	tcase_add_test(tc, config_quota_defaults_and_root);
	tcase_add_test(tc, config_quota_users_inherit_default_in_any_order);
	tcase_add_test(tc, config_quota_users_refused);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(config_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
