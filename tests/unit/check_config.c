/*
 * The daemon configuration: built-in defaults, the golden files under
 * tests/golden/config, the shipped packaging/emberd.yaml, parsing over an
 * existing configuration, and the vm.create defaults it fills in.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "backend.h"
#include "config.h"
#include "yaml-doc.h"
#include "log.h"
#include "golden-yaml.h"
#include "test-util.h"

/* Backends' subtrees, as the registry's rows stored them. */
#define FC_STR(c, key)		ember_config_backend_string(&(c), "firecracker", key)
#define FC_BOOL(c, key)		ember_config_backend_bool(&(c), "firecracker", key, true)
#define QEMU_STR(c, key)	ember_config_backend_string(&(c), "qemu", key)

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
	ck_assert_ptr_null(FC_STR(cfg, "binary"));
	ck_assert_ptr_null(FC_STR(cfg, "kvm_device"));
	ck_assert(FC_BOOL(cfg, "require_kvm"));
	ck_assert_ptr_null(QEMU_STR(cfg, "binary"));
	ck_assert_ptr_null(QEMU_STR(cfg, "accel"));	/* the backend's default, auto */
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
	ck_assert_str_eq(FC_STR(cfg, "binary"), "/usr/bin/firecracker");
	ck_assert_str_eq(FC_STR(cfg, "kvm_device"), "/dev/kvm-other");
	ck_assert(!FC_BOOL(cfg, "require_kvm"));
	ck_assert_str_eq(QEMU_STR(cfg, "binary"), "qemu-system-x86_64");
	ck_assert_str_eq(QEMU_STR(cfg, "accel"), "kvm");
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
	ck_assert(QEMU_STR(cfg, "accel") == NULL ||
	    strcmp(QEMU_STR(cfg, "accel"), "auto") == 0);	/* the backend's default */
	ck_assert(cfg.vsock_vm_to_vm);
	ck_assert(FC_BOOL(cfg, "require_kvm"));
	ck_assert(FC_STR(cfg, "kvm_device") == NULL ||
	    strcmp(FC_STR(cfg, "kvm_device"), "/dev/kvm") == 0);
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
	ck_assert_str_eq(FC_STR(cfg, "kvm_device"), "/dev/kvm2");	/* copied over */
	ck_assert_str_eq(cfg.state_dir, "/srv/ember");	/* first file */
	ck_assert_uint_eq(cfg.cid_max, 1000);
	ck_assert_str_eq(QEMU_STR(cfg, "accel"), "tcg");
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

/* A backend the configuration has never heard of: registering it is all
 * it takes for its subtree and its name to be accepted. */
static int
set_fake_depth(void *walk, const struct ydoc_value *v)
{
	return ember_config_backend_set(walk, "fake", "depth", json_integer((json_int_t)v->u));
}

static const struct ydoc_key fake_keys[] = {
	{ "depth", YDOC_UINT, 0, 1, 9, NULL, set_fake_depth, NULL },
	{ NULL, 0, 0, 0, 0, NULL, NULL, NULL }
};

START_TEST(config_backend_subtrees_come_from_the_registry)
{
	const struct ember_config_backend rows[] = { { "fake", fake_keys }, { "bare", NULL } };
	const struct ember_config_backend dup[] = { { "fake", NULL }, { "fake", NULL } };
	const struct ember_config_backend clash[] = { { "quotas", NULL } };
	const struct ember_config_backend automatic[] = { { "auto", NULL } };
	struct ember_config cfg;
	struct ember_error err;

	ck_assert_int_eq(ember_config_register_backends(dup, 2), -EINVAL);
	ck_assert_int_eq(ember_config_register_backends(clash, 1), -EINVAL);
	ck_assert_int_eq(ember_config_register_backends(automatic, 1), -EINVAL);
	ck_assert_int_eq(ember_config_register_backends(rows, 2), 0);
	ember_config_init(&cfg);
	ck_assert_int_eq(parse(&cfg, "fake: {depth: 3}\ndefaults: {backend: bare}\n", &err), 0);
	ck_assert_str_eq(cfg.default_backend, "bare");
	ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(
	    cfg.backend_sections, "fake"), "depth")), 3);
	/* the subtree's own validation, with the position and the path */
	ck_assert_int_eq(parse(&cfg, "fake:\n  depth: 10\n", &err), -1);
	ck_assert_ptr_nonnull(strstr(err.message, "c.yaml:2:10: \"fake.depth\""));
	/* a failed parse left the subtree alone; a later one copies it over */
	ck_assert_int_eq(parse(&cfg, "log_level: warn\n", &err), 0);
	ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(
	    cfg.backend_sections, "fake"), "depth")), 3);
	/* unregistered backends are unknown, in both places */
	ck_assert_int_eq(parse(&cfg, "qemu: {accel: kvm}\n", &err), -1);
	ck_assert_str_eq(err.message, "c.yaml:1:1: unknown key \"qemu\"");
	ck_assert_int_eq(parse(&cfg, "defaults: {backend: qemu}\n", &err), -1);
	ck_assert_ptr_nonnull(strstr(err.message, "expected one of auto, fake, bare"));
	ck_assert_int_eq(parse(&cfg, "bare: {x: 1}\n", &err), -1);
	ember_config_clear(&cfg);
	ck_assert_int_eq(backend_types_register_config(), 0);
}
END_TEST

START_TEST(config_backend_values_read_back)
{
	struct ember_config cfg;
	struct ember_error err;

	ember_config_init(&cfg);
	ck_assert_ptr_null(cfg.backend_sections);
	ck_assert(ember_config_backend_bool(&cfg, "firecracker", "require_kvm", true));
	ck_assert(!ember_config_backend_bool(&cfg, "firecracker", "require_kvm", false));
	ck_assert_int_eq(parse(&cfg, "firecracker: {require_kvm: false}\n", &err), 0);
	ck_assert(!FC_BOOL(cfg, "require_kvm"));
	ck_assert_ptr_null(FC_STR(cfg, "binary"));
	ck_assert_ptr_null(QEMU_STR(cfg, "binary"));
	ember_config_clear(&cfg);
}
END_TEST

static Suite *
config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("config");

	tcase_add_test(tc, golden_config_files);
	tcase_add_test(tc, config_backend_subtrees_come_from_the_registry);
	tcase_add_test(tc, config_backend_values_read_back);
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
	if (backend_types_register_config() != 0)
		return EXIT_FAILURE;
	return test_run_suite(config_suite());
}
