/*
 * Unit tests for common/vm-record.c: the status table, the record's JSON
 * form as daemon/API.md defines it, copying, UUIDs and timestamps.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vm-record.h"
#include "test-util.h"

#define SAMPLE_ID "0b6f5c1e-3c3e-4d7a-9d1c-2f0e8a3c9b11"

static void
fill_sample(struct vm_record *rec)
{
	vm_record_init(rec);
	snprintf(rec->name, sizeof(rec->name), "web");
	snprintf(rec->id, sizeof(rec->id), SAMPLE_ID);
	rec->status = VM_RUNNING;
	vm_record_set_str(&rec->reason, "exited with status 1");
	vm_record_set_str(&rec->backend, "qemu");
	vm_record_set_str(&rec->image, "mini");
	rec->cpus = 2;
	rec->memory_mib = 512;
	vm_record_set_str(&rec->kernel_path, "/var/lib/ember/images/mini/vmlinuz");
	vm_record_set_str(&rec->initrd_path, "/var/lib/ember/images/mini/initrd.gz");
	vm_record_set_str(&rec->disk_path, "/var/lib/ember/vms/web/disk.qcow2");
	vm_record_set_str(&rec->boot_args, "console=ttyS0");
	vm_record_set_str(&rec->network, "user");
	rec->pid = 4242;
	rec->pid_start_time = 123456789012ULL;
	snprintf(rec->created_at, sizeof(rec->created_at), "2026-11-29T06:10:00Z");
	vm_record_set_str(&rec->parent_vm, "base");
	rec->owner_uid = 1000;
	rec->vsock = true;
	rec->guest_cid = 3;
	vm_record_set_str(&rec->uds_path, "/var/lib/ember/vms/web/vsock.sock");
}

static void
assert_records_equal(const struct vm_record *a, const struct vm_record *b)
{
#define STR_EQ(f) do {							\
	if (a->f == NULL || b->f == NULL)				\
		ck_assert_msg(a->f == b->f, #f " differs in NULL-ness");	\
	else								\
		ck_assert_str_eq(a->f, b->f);				\
} while (0)
	ck_assert_str_eq(a->name, b->name);
	ck_assert_str_eq(a->id, b->id);
	ck_assert_int_eq(a->status, b->status);
	STR_EQ(reason);
	STR_EQ(backend);
	STR_EQ(image);
	ck_assert_uint_eq(a->cpus, b->cpus);
	ck_assert_uint_eq(a->memory_mib, b->memory_mib);
	STR_EQ(kernel_path);
	STR_EQ(initrd_path);
	STR_EQ(disk_path);
	STR_EQ(boot_args);
	STR_EQ(network);
	ck_assert_int_eq(a->pid, b->pid);
	ck_assert_uint_eq(a->pid_start_time, b->pid_start_time);
	ck_assert_str_eq(a->created_at, b->created_at);
	STR_EQ(parent_vm);
	ck_assert_uint_eq(a->owner_uid, b->owner_uid);
	ck_assert_int_eq(a->vsock, b->vsock);
	ck_assert_uint_eq(a->guest_cid, b->guest_cid);
	STR_EQ(uds_path);
#undef STR_EQ
}

/* Parses text as a record; returns the result and leaves errbuf filled. */
static int
from_text(struct vm_record *rec, const char *text, char *errbuf, size_t len)
{
	json_error_t jerr;
	json_t *json = json_loads(text, 0, &jerr);
	int r;

	ck_assert_msg(json != NULL, "bad test JSON: %s", jerr.text);
	r = vm_record_from_json(rec, json, errbuf, len);
	json_decref(json);
	return r;
}

#define MINIMAL "\"name\": \"web\", \"id\": \"" SAMPLE_ID "\", \"status\": \"created\""

START_TEST(status_names_match_the_api)
{
	const char *names[] = { "created", "starting", "running", "paused",
	    "stopping", "stopped", "failed" };
	enum vm_status st;

	for (int i = 0; i < VM_STATUS__COUNT; i++) {
		ck_assert_str_eq(vm_status_name((enum vm_status)i), names[i]);
		ck_assert_int_eq(vm_status_parse(names[i], &st), 0);
		ck_assert_int_eq(st, i);
	}
}
END_TEST

START_TEST(status_parse_rejects_unknown_and_case)
{
	enum vm_status st = VM_FAILED;

	ck_assert_int_eq(vm_status_parse("Running", &st), -EINVAL);
	ck_assert_int_eq(vm_status_parse("", &st), -EINVAL);
	ck_assert_int_eq(vm_status_parse(NULL, &st), -EINVAL);
	ck_assert_int_eq(st, VM_FAILED);
	ck_assert_str_eq(vm_status_name(VM_STATUS__COUNT), "unknown");
}
END_TEST

START_TEST(record_roundtrips_through_json)
{
	struct vm_record rec, back;
	char err[256] = "untouched";
	json_t *json;

	fill_sample(&rec);
	json = vm_record_to_json(&rec);
	ck_assert_ptr_nonnull(json);
	ck_assert_int_eq(vm_record_from_json(&back, json, err, sizeof(err)), 0);
	ck_assert_str_eq(err, "");
	assert_records_equal(&rec, &back);
	json_decref(json);
	vm_record_clear(&rec);
	vm_record_clear(&back);
}
END_TEST

START_TEST(workload_exit_keeps_source_boot_id_and_console_start)
{
	struct vm_record rec, back;
	char err[256] = "";
	json_t *json, *w;

	fill_sample(&rec);
	rec.workload_exit = WORKLOAD_EXIT_SIGNAL;
	rec.workload_exit_value = 9;
	rec.workload_exit_source = WORKLOAD_SOURCE_AGENT;
	snprintf(rec.workload_exit_boot_id, sizeof(rec.workload_exit_boot_id), "%s",
	    "0f5b6a4e-2d1c-4b7a-9e3f-1a2b3c4d5e6f");
	rec.workload_console_from = 123456;
	json = vm_record_to_json(&rec);
	w = json_object_get(json, "workload_exit");
	ck_assert_int_eq(json_integer_value(json_object_get(w, "signal")), 9);
	ck_assert_str_eq(json_string_value(json_object_get(w, "source")), "agent");
	ck_assert_int_eq(vm_record_from_json(&back, json, err, sizeof(err)), 0);
	ck_assert_int_eq(back.workload_exit, WORKLOAD_EXIT_SIGNAL);
	ck_assert_int_eq(back.workload_exit_value, 9);
	ck_assert_int_eq(back.workload_exit_source, WORKLOAD_SOURCE_AGENT);
	ck_assert_str_eq(back.workload_exit_boot_id, rec.workload_exit_boot_id);
	ck_assert_uint_eq(back.workload_console_from, 123456);
	vm_record_clear(&back);
	/* A boot id that is not lowercase hex and dashes, and an unknown
	 * source, are dropped; the status stays. */
	json_object_set_new(w, "boot_id", json_string("../../etc/passwd"));
	json_object_set_new(w, "source", json_string("workload"));
	ck_assert_int_eq(vm_record_from_json(&back, json, err, sizeof(err)), 0);
	ck_assert_int_eq(back.workload_exit, WORKLOAD_EXIT_SIGNAL);
	ck_assert_int_eq(back.workload_exit_source, WORKLOAD_SOURCE_UNKNOWN);
	ck_assert_str_eq(back.workload_exit_boot_id, "");
	vm_record_clear(&back);
	json_decref(json);
	vm_record_clear(&rec);
}
END_TEST

START_TEST(record_json_uses_api_field_names)
{
	const char *keys[] = { "name", "id", "status", "reason", "backend",
	    "image", "cpus", "memory_mib", "kernel_path", "initrd_path",
	    "disk_path", "boot_args", "network", "pid", "pid_start_time",
	    "created_at", "parent_vm", "owner_uid", "vsock" };
	struct vm_record rec;
	json_t *json, *vsock;

	fill_sample(&rec);
	json = vm_record_to_json(&rec);
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		ck_assert_msg(json_object_get(json, keys[i]) != NULL,
		    "missing key %s", keys[i]);
	ck_assert_uint_eq(json_object_size(json), sizeof(keys) / sizeof(keys[0]));
	ck_assert_str_eq(json_string_value(json_object_get(json, "status")),
	    "running");
	ck_assert_int_eq(json_integer_value(json_object_get(json, "memory_mib")),
	    512);
	vsock = json_object_get(json, "vsock");
	ck_assert_uint_eq(json_object_size(vsock), 2);
	ck_assert_int_eq(json_integer_value(json_object_get(vsock, "guest_cid")), 3);
	ck_assert_str_eq(json_string_value(json_object_get(vsock, "uds_path")),
	    "/var/lib/ember/vms/web/vsock.sock");
	json_decref(json);
	vm_record_clear(&rec);
}
END_TEST

START_TEST(record_json_has_no_version)
{
	struct vm_record rec;
	json_t *json;

	fill_sample(&rec);
	json = vm_record_to_json(&rec);
	ck_assert_ptr_null(json_object_get(json, "version"));
	json_decref(json);
	vm_record_clear(&rec);
}
END_TEST

START_TEST(record_without_vsock_omits_key)
{
	struct vm_record rec;
	json_t *json;

	fill_sample(&rec);
	rec.vsock = false;
	json = vm_record_to_json(&rec);
	ck_assert_ptr_null(json_object_get(json, "vsock"));
	json_decref(json);
	vm_record_clear(&rec);
}
END_TEST

START_TEST(record_omits_null_strings)
{
	struct vm_record rec;
	json_t *json;

	vm_record_init(&rec);
	snprintf(rec.name, sizeof(rec.name), "web");
	snprintf(rec.id, sizeof(rec.id), SAMPLE_ID);
	json = vm_record_to_json(&rec);
	ck_assert_ptr_null(json_object_get(json, "reason"));
	ck_assert_ptr_null(json_object_get(json, "parent_vm"));
	ck_assert_ptr_null(json_object_get(json, "kernel_path"));
	ck_assert_ptr_null(json_object_get(json, "created_at"));
	ck_assert_ptr_null(json_object_get(json, "vsock"));
	ck_assert_int_eq(json_integer_value(json_object_get(json, "pid")), 0);
	ck_assert_str_eq(json_string_value(json_object_get(json, "status")),
	    "created");
	json_decref(json);
}
END_TEST

START_TEST(record_from_minimal_json_has_defaults)
{
	struct vm_record rec;
	char err[256];

	ck_assert_int_eq(from_text(&rec, "{" MINIMAL "}", err, sizeof(err)), 0);
	ck_assert_str_eq(rec.name, "web");
	ck_assert_str_eq(rec.id, SAMPLE_ID);
	ck_assert_int_eq(rec.status, VM_CREATED);
	ck_assert_ptr_null(rec.reason);
	ck_assert_int_eq(rec.pid, 0);
	ck_assert(!rec.vsock);
	vm_record_clear(&rec);
}
END_TEST

START_TEST(record_from_json_ignores_version_and_unknown_keys)
{
	struct vm_record rec;
	char err[256];

	ck_assert_int_eq(from_text(&rec, "{" MINIMAL ", \"version\": 1, "
	    "\"future_field\": {\"x\": [1]}}", err, sizeof(err)), 0);
	ck_assert_str_eq(rec.name, "web");
	vm_record_clear(&rec);
}
END_TEST

START_TEST(record_from_json_accepts_null_strings_and_vsock)
{
	struct vm_record rec;
	char err[256];

	ck_assert_int_eq(from_text(&rec, "{" MINIMAL ", \"parent_vm\": null, "
	    "\"vsock\": null}", err, sizeof(err)), 0);
	ck_assert_ptr_null(rec.parent_vm);
	ck_assert(!rec.vsock);
	vm_record_clear(&rec);
}
END_TEST

START_TEST(record_from_json_rejects_wrong_integer_type)
{
	struct vm_record rec;
	char err[256];

	ck_assert_int_eq(from_text(&rec, "{" MINIMAL ", \"cpus\": \"2\"}", err,
	    sizeof(err)), -EINVAL);
	ck_assert_str_eq(err, "field \"cpus\": expected integer");
	ck_assert_int_eq(from_text(&rec, "{" MINIMAL ", \"memory_mib\": 1.5}",
	    err, sizeof(err)), -EINVAL);
	ck_assert_str_eq(err, "field \"memory_mib\": expected integer");
}
END_TEST

START_TEST(record_from_json_rejects_wrong_string_type)
{
	struct vm_record rec;
	char err[256];

	ck_assert_int_eq(from_text(&rec, "{" MINIMAL ", \"backend\": 7}", err,
	    sizeof(err)), -EINVAL);
	ck_assert_str_eq(err, "field \"backend\": expected string");
}
END_TEST

START_TEST(record_from_json_rejects_out_of_range_integers)
{
	struct vm_record rec;
	char err[256];

	ck_assert_int_eq(from_text(&rec, "{" MINIMAL ", \"pid\": -1}", err,
	    sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "field \"pid\""));
	ck_assert_int_eq(from_text(&rec, "{" MINIMAL ", \"owner_uid\": "
	    "4294967296}", err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "field \"owner_uid\""));
}
END_TEST

START_TEST(record_from_json_requires_name_id_status)
{
	struct vm_record rec;
	char err[256];

	ck_assert_int_eq(from_text(&rec, "{\"id\": \"" SAMPLE_ID "\", "
	    "\"status\": \"created\"}", err, sizeof(err)), -EINVAL);
	ck_assert_str_eq(err, "missing field \"name\"");
	ck_assert_int_eq(from_text(&rec, "{\"name\": \"web\", "
	    "\"status\": \"created\"}", err, sizeof(err)), -EINVAL);
	ck_assert_str_eq(err, "missing field \"id\"");
	ck_assert_int_eq(from_text(&rec, "{\"name\": \"web\", "
	    "\"id\": \"" SAMPLE_ID "\"}", err, sizeof(err)), -EINVAL);
	ck_assert_str_eq(err, "missing field \"status\"");
}
END_TEST

START_TEST(record_from_json_rejects_bad_name_id_and_status)
{
	struct vm_record rec;
	char err[256];

	ck_assert_int_eq(from_text(&rec, "{\"name\": \"../x\", \"id\": \""
	    SAMPLE_ID "\", \"status\": \"created\"}", err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "field \"name\""));
	ck_assert_int_eq(from_text(&rec, "{\"name\": \"web\", \"id\": \"1234\", "
	    "\"status\": \"created\"}", err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "field \"id\""));
	ck_assert_int_eq(from_text(&rec, "{\"name\": \"web\", \"id\": \""
	    SAMPLE_ID "\", \"status\": \"exploded\"}", err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "field \"status\""));
}
END_TEST

START_TEST(record_from_json_rejects_bad_vsock)
{
	struct vm_record rec;
	char err[256];

	ck_assert_int_eq(from_text(&rec, "{" MINIMAL ", \"vsock\": 3}", err,
	    sizeof(err)), -EINVAL);
	ck_assert_str_eq(err, "field \"vsock\": expected object");
	ck_assert_int_eq(from_text(&rec, "{" MINIMAL ", \"vsock\": {}}", err,
	    sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "guest_cid"));
	ck_assert_int_eq(from_text(&rec, "{" MINIMAL ", \"vsock\": "
	    "{\"guest_cid\": 3, \"uds_path\": 5}}", err, sizeof(err)), -EINVAL);
	ck_assert_str_eq(err, "field \"vsock.uds_path\": expected string");
}
END_TEST

START_TEST(record_from_json_rejects_non_object)
{
	struct vm_record rec;
	char err[256];

	ck_assert_int_eq(from_text(&rec, "[1, 2]", err, sizeof(err)), -EINVAL);
	ck_assert_str_ne(err, "");
	/* A failed parse leaves the record empty and safe to clear. */
	ck_assert_ptr_null(rec.backend);
	vm_record_clear(&rec);
}
END_TEST

START_TEST(record_from_json_failure_frees_partial_strings)
{
	struct vm_record rec;
	char err[256];

	/* backend is read before cpus fails; the leak checker would see it. */
	ck_assert_int_eq(from_text(&rec, "{" MINIMAL ", \"backend\": \"qemu\", "
	    "\"cpus\": true}", err, sizeof(err)), -EINVAL);
	ck_assert_ptr_null(rec.backend);
}
END_TEST

START_TEST(record_copy_is_deep)
{
	struct vm_record rec, copy;

	fill_sample(&rec);
	ck_assert_int_eq(vm_record_copy(&copy, &rec), 0);
	assert_records_equal(&rec, &copy);
	ck_assert_ptr_ne(rec.backend, copy.backend);
	ck_assert_ptr_ne(rec.uds_path, copy.uds_path);
	vm_record_clear(&rec);
	ck_assert_str_eq(copy.backend, "qemu");
	vm_record_clear(&copy);
}
END_TEST

START_TEST(record_clear_leaves_it_initialised)
{
	struct vm_record rec;

	fill_sample(&rec);
	vm_record_clear(&rec);
	ck_assert_ptr_null(rec.backend);
	ck_assert_str_eq(rec.name, "");
	ck_assert(!rec.vsock);
	vm_record_clear(&rec);
	vm_record_clear(NULL);
}
END_TEST

START_TEST(set_str_replaces_and_clears)
{
	char *field = NULL;

	ck_assert_int_eq(vm_record_set_str(&field, "a"), 0);
	ck_assert_str_eq(field, "a");
	ck_assert_int_eq(vm_record_set_str(&field, "b"), 0);
	ck_assert_str_eq(field, "b");
	ck_assert_int_eq(vm_record_set_str(&field, NULL), 0);
	ck_assert_ptr_null(field);
}
END_TEST

START_TEST(uuid_is_version_4_and_unique)
{
	char a[37], b[37];

	ck_assert_int_eq(uuid_generate_v4(a), 0);
	ck_assert_int_eq(uuid_generate_v4(b), 0);
	ck_assert_uint_eq(strlen(a), 36);
	ck_assert_str_ne(a, b);
	ck_assert_int_eq(a[8], '-');
	ck_assert_int_eq(a[13], '-');
	ck_assert_int_eq(a[18], '-');
	ck_assert_int_eq(a[23], '-');
	ck_assert_int_eq(a[14], '4');
	ck_assert_ptr_nonnull(strchr("89ab", a[19]));
	for (int i = 0; i < 36; i++)
		ck_assert_ptr_nonnull(strchr("0123456789abcdef-", a[i]));
}
END_TEST

START_TEST(uuid_is_accepted_as_record_id)
{
	struct vm_record rec;
	char id[37], text[256], err[256];

	ck_assert_int_eq(uuid_generate_v4(id), 0);
	snprintf(text, sizeof(text), "{\"name\": \"web\", \"id\": \"%s\", "
	    "\"status\": \"stopped\"}", id);
	ck_assert_int_eq(from_text(&rec, text, err, sizeof(err)), 0);
	ck_assert_str_eq(rec.id, id);
	vm_record_clear(&rec);
}
END_TEST

START_TEST(rfc3339_now_is_utc_with_z)
{
	char now[32];
	int y, mo, d, h, mi, s;
	char z;

	rfc3339_now(now);
	ck_assert_uint_eq(strlen(now), 20);
	ck_assert_int_eq(sscanf(now, "%4d-%2d-%2dT%2d:%2d:%2d%c", &y, &mo, &d,
	    &h, &mi, &s, &z), 7);
	ck_assert_int_eq(z, 'Z');
	ck_assert_int_ge(y, 2024);
}
END_TEST

START_TEST(publish_parse_accepts_and_refuses)
{
	static const char *const bad[] = { "", "80", ":80:80", "80:", "0:80", "80:0",
	    "65536:80", "80:80/sctp", "80:80/", "1.2.3:80:80", "1.2.3.4:80:80:80",
	    "01:80", "80:+80", " 80:80", "80::80", "1.2.3.4::80", "80:80/tcp/udp" };
	struct vm_publish p;

	ck_assert_int_eq(vm_publish_parse("8080:80", &p), 0);
	ck_assert_uint_eq(p.host_addr, 0);
	ck_assert_uint_eq(p.host_port, 8080);
	ck_assert_uint_eq(p.guest_port, 80);
	ck_assert(!p.udp);
	ck_assert_int_eq(vm_publish_parse("127.0.0.1:5353:53/udp", &p), 0);
	ck_assert_uint_eq(p.host_addr, 0x7f000001u);
	ck_assert(p.udp);
	ck_assert_int_eq(vm_publish_parse("65535:1/tcp", &p), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(vm_publish_parse(bad[i], &p) == -EINVAL, "accepted \"%s\"", bad[i]);
}
END_TEST

START_TEST(network_nat_roundtrips_and_old_string_reads)
{
	struct vm_record rec, back;
	json_t *json, *net;
	char err[256];

	fill_sample(&rec);
	vm_record_set_str(&rec.network, "nat");
	rec.net.subnet = 0x0a640004u;
	snprintf(rec.net.tap, sizeof(rec.net.tap), "em-0b6f5c1e");
	snprintf(rec.net.mac, sizeof(rec.net.mac), "02:eb:0a:64:00:06");
	vm_publish_parse("127.0.0.1:8080:80", &rec.net.publish[0]);
	vm_publish_parse("5353:53/udp", &rec.net.publish[1]);
	rec.net.npublish = 2;
	json = vm_record_to_json(&rec);
	net = json_object_get(json, "network");
	ck_assert_str_eq(json_string_value(json_object_get(net, "mode")), "nat");
	ck_assert_str_eq(json_string_value(json_object_get(net, "host_addr")), "10.100.0.5/30");
	ck_assert_str_eq(json_string_value(json_object_get(net, "guest_addr")), "10.100.0.6/30");
	ck_assert_uint_eq(json_array_size(json_object_get(net, "publish")), 2);
	ck_assert_int_eq(vm_record_from_json(&back, json, err, sizeof(err)), 0);
	ck_assert_str_eq(back.network, "nat");
	ck_assert_uint_eq(back.net.subnet, rec.net.subnet);
	ck_assert_str_eq(back.net.tap, rec.net.tap);
	ck_assert_int_eq(back.net.tap_fd, -1);
	ck_assert_uint_eq(back.net.npublish, 2);
	ck_assert(back.net.publish[1].udp);
	ck_assert_uint_eq(back.net.publish[0].host_addr, 0x7f000001u);
	vm_record_clear(&back);

	/* a TAP name that is not "em-" and hex could reach a firewall script */
	json_object_set_new(net, "tap", json_string("em-x\"; flush ruleset"));
	ck_assert_int_eq(vm_record_from_json(&back, json, err, sizeof(err)), -EINVAL);
	json_object_set_new(net, "tap", json_string("em-0b6f5c1e"));
	json_object_set_new(net, "host_addr", json_string("10.100.0.6/30"));
	ck_assert_int_eq(vm_record_from_json(&back, json, err, sizeof(err)), -EINVAL);

	/* a record from before "nat": a plain string */
	json_object_set_new(json, "network", json_string("user"));
	ck_assert_int_eq(vm_record_from_json(&back, json, err, sizeof(err)), 0);
	ck_assert_str_eq(back.network, "user");
	ck_assert_uint_eq(back.net.subnet, 0);
	vm_record_clear(&back);
	json_decref(json);
	vm_record_clear(&rec);
}
END_TEST

static Suite *
vm_record_suite(void)
{
	Suite *s = suite_create("vm_record");
	TCase *tc;

	tc = tcase_create("status");
	tcase_add_test(tc, status_names_match_the_api);
	tcase_add_test(tc, status_parse_rejects_unknown_and_case);
	suite_add_tcase(s, tc);

	tc = tcase_create("json");
	tcase_add_test(tc, record_roundtrips_through_json);
	tcase_add_test(tc, record_json_uses_api_field_names);
	tcase_add_test(tc, workload_exit_keeps_source_boot_id_and_console_start);
	tcase_add_test(tc, record_json_has_no_version);
	tcase_add_test(tc, record_without_vsock_omits_key);
	tcase_add_test(tc, record_omits_null_strings);
	tcase_add_test(tc, record_from_minimal_json_has_defaults);
	tcase_add_test(tc, record_from_json_ignores_version_and_unknown_keys);
	tcase_add_test(tc, record_from_json_accepts_null_strings_and_vsock);
	tcase_add_test(tc, record_from_json_rejects_wrong_integer_type);
	tcase_add_test(tc, record_from_json_rejects_wrong_string_type);
	tcase_add_test(tc, record_from_json_rejects_out_of_range_integers);
	tcase_add_test(tc, record_from_json_requires_name_id_status);
	tcase_add_test(tc, record_from_json_rejects_bad_name_id_and_status);
	tcase_add_test(tc, record_from_json_rejects_bad_vsock);
	tcase_add_test(tc, record_from_json_rejects_non_object);
	tcase_add_test(tc, record_from_json_failure_frees_partial_strings);
	suite_add_tcase(s, tc);

	tc = tcase_create("memory");
	tcase_add_test(tc, publish_parse_accepts_and_refuses);
	tcase_add_test(tc, network_nat_roundtrips_and_old_string_reads);
	tcase_add_test(tc, record_copy_is_deep);
	tcase_add_test(tc, record_clear_leaves_it_initialised);
	tcase_add_test(tc, set_str_replaces_and_clears);
	suite_add_tcase(s, tc);

	tc = tcase_create("ids");
	tcase_add_test(tc, uuid_is_version_4_and_unique);
	tcase_add_test(tc, uuid_is_accepted_as_record_id);
	tcase_add_test(tc, rfc3339_now_is_utc_with_z);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return test_run_suite(vm_record_suite());
}
