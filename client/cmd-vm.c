/*
 * The `vm` verbs: each builds vm.* params from its arguments, makes one
 * call and prints either the raw result (--json) or a short human form: a
 * one-line confirmation for lifecycle verbs, a table for `vm list`, key:
 * value lines for `vm inspect`. Values are checked only as far as needed
 * to build well-typed params; emberd judges ranges and names.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emberctl.h"
#include "error.h"
#include "size.h"
#include "spec.h"
#include "table.h"

static const char *
rec_str(const json_t *rec, const char *key)
{
	return json_string_value(json_object_get(rec, key));
}

/* "512M" from memory_mib, "-" when absent. */
static const char *
rec_memory(const json_t *rec, char *buf, size_t len)
{
	const json_t *mib = json_object_get(rec, "memory_mib");

	if (!json_is_integer(mib) || json_integer_value(mib) < 0 ||
	    json_integer_value(mib) > (json_int_t)(UINT64_MAX >> 20))
		return "-";
	size_format((uint64_t)json_integer_value(mib) << 20, buf, (int)len);
	return buf;
}

/* The guest CID as text, "-" without vsock. */
static const char *
rec_cid(const json_t *rec, char *buf, size_t len)
{
	const json_t *cid = json_object_get(json_object_get(rec, "vsock"),
	    "guest_cid");

	if (!json_is_integer(cid))
		return "-";
	snprintf(buf, len, "%" JSON_INTEGER_FORMAT, json_integer_value(cid));
	return buf;
}

static const char *
rec_int(const json_t *rec, const char *key, char *buf, size_t len)
{
	const json_t *v = json_object_get(rec, key);

	if (!json_is_integer(v))
		return "-";
	snprintf(buf, len, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
	return buf;
}

/*
 * "web: running", "web: created, running (cid 3)", "web: failed (why)":
 * what the verb did (may be NULL) followed by the state it left behind.
 */
static void
print_confirmation(const json_t *rec, const char *name, const char *did)
{
	const char *status = rec_str(rec, "status");
	const char *reason = rec_str(rec, "reason");
	char cid[32];
	bool has_cid = strcmp(rec_cid(rec, cid, sizeof(cid)), "-") != 0;

	if (rec_str(rec, "name") != NULL)
		name = rec_str(rec, "name");
	if (status == NULL)
		status = "unknown";
	printf("%s: ", name);
	if (did != NULL) {
		printf("%s", did);
		if (strcmp(status, "created") != 0)
			printf(", %s", status);
	} else {
		printf("%s", status);
	}
	if (strcmp(status, "failed") == 0 && reason != NULL)
		printf(" (%s)", reason);
	if (did != NULL && has_cid)
		printf(" (cid %s)", cid);
	printf("\n");
}

/* Calls a vm.* method that answers with a record and confirms it. */
static int
call_lifecycle(struct ctl *ctl, const char *method, json_t *params,
    const char *name, const char *did)
{
	json_t *rec;
	int r = ctl_call(ctl, method, params, &rec);

	if (r != EXIT_OK)
		return r;
	if (ctl->json)
		ctl_print_json(rec);
	else
		print_confirmation(rec, name, did);
	json_decref(rec);
	return EXIT_OK;
}

static int
parse_uint(const char *s, unsigned long max, unsigned long *out)
{
	char *end;

	if (s[0] < '0' || s[0] > '9')
		return -EINVAL;
	errno = 0;
	*out = strtoul(s, &end, 10);
	if (errno != 0 || *end != '\0' || *out > max)
		return -EINVAL;
	return 0;
}

/* --vsock / --no-vsock into params["vsock"]; EXIT_USAGE when both. */
static int
apply_vsock(struct ctl *ctl, struct verb_args *a, json_t *params)
{
	if (OPTARG(a, OPT_VSOCK) != NULL && OPTARG(a, OPT_NO_VSOCK) != NULL)
		return ctl_usage_error(ctl, "--vsock and --no-vsock conflict");
	if (OPTARG(a, OPT_VSOCK) != NULL)
		json_object_set_new(params, "vsock", json_true());
	if (OPTARG(a, OPT_NO_VSOCK) != NULL)
		json_object_set_new(params, "vsock", json_false());
	return EXIT_OK;
}

static int
apply_size(struct ctl *ctl, const char *flag, const char *value,
    const char *key, json_t *params)
{
	uint64_t mib;
	int r;

	if (value == NULL)
		return EXIT_OK;
	r = size_parse_mib(value, &mib);
	if (r < 0 || mib > (uint64_t)INT64_MAX)
		return ctl_usage_error(ctl, "invalid %s '%s': %s", flag, value,
		    r == -ERANGE || r == 0 ? "too large" :
		    "expected a whole number of MiB with a unit, e.g. 512M or 2G");
	json_object_set_new(params, key, json_integer((json_int_t)mib));
	return EXIT_OK;
}

int
cmd_vm_create(struct ctl *ctl, struct verb_args *a)
{
	static const struct { enum opt_id opt; const char *key; } strings[] = {
		{ OPT_IMAGE, "image" }, { OPT_KERNEL, "kernel" },
		{ OPT_INITRD, "initrd" }, { OPT_ROOTFS, "rootfs" },
		{ OPT_BOOT_ARGS, "boot_args" }, { OPT_BACKEND, "backend" },
		{ OPT_NETWORK, "network" },
	};
	const char *name = a->argv[0];
	const char *file = OPTARG(a, OPT_FILE);
	json_t *params;
	int r;

	/* Precedence: emberd's defaults < the -f file < flags. */
	if (file != NULL) {
		struct vm_spec spec;
		struct ember_error err;

		memset(&spec, 0, sizeof(spec));
		ember_error_clear(&err);
		if (vm_spec_load(file, &spec, &err) < 0) {
			/* A bad file is bad input, not bad usage: status 1. */
			ctl_warnx("%s", err.message);
			if (err.hint[0] != '\0')
				fprintf(stderr, "hint: %s\n", err.hint);
			vm_spec_clear(&spec);
			return EXIT_ERROR;
		}
		params = vm_spec_to_params(&spec);
		vm_spec_clear(&spec);
	} else {
		params = json_object();
	}
	if (params == NULL) {
		ctl_warnx("out of memory");
		return EXIT_ERROR;
	}
	json_object_set_new(params, "name", json_string(name));
	for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++)
		if (OPTARG(a, strings[i].opt) != NULL)
			json_object_set_new(params, strings[i].key,
			    json_string(OPTARG(a, strings[i].opt)));
	if (OPTARG(a, OPT_CPUS) != NULL) {
		unsigned long cpus;

		if (parse_uint(OPTARG(a, OPT_CPUS), INT_MAX, &cpus) < 0) {
			r = ctl_usage_error(ctl, "invalid --cpus '%s': expected "
			    "a whole number", OPTARG(a, OPT_CPUS));
			goto fail;
		}
		json_object_set_new(params, "cpus", json_integer((json_int_t)cpus));
	}
	if ((r = apply_size(ctl, "--memory", OPTARG(a, OPT_MEMORY),
	    "memory_mib", params)) != EXIT_OK)
		goto fail;
	if ((r = apply_size(ctl, "--disk-size", OPTARG(a, OPT_DISK_SIZE),
	    "disk_size_mib", params)) != EXIT_OK)
		goto fail;
	if ((r = apply_vsock(ctl, a, params)) != EXIT_OK)
		goto fail;
	if (OPTARG(a, OPT_NO_START) != NULL)
		json_object_set_new(params, "start", json_false());
	return call_lifecycle(ctl, "vm.create", params, name, "created");
fail:
	json_decref(params);
	return r;
}

int
cmd_vm_list(struct ctl *ctl, struct verb_args *a)
{
	static const char *const headers[] = {
		"NAME", "STATUS", "BACKEND", "CPUS", "MEMORY", "CID",
	};
	json_t *result, *vms, *rec;
	struct table *t;
	size_t i;
	int r = ctl_call(ctl, "vm.list", NULL, &result);

	if (r != EXIT_OK)
		return r;
	if (ctl->json) {
		ctl_print_json(result);
		json_decref(result);
		return EXIT_OK;
	}
	vms = json_object_get(result, "vms");
	if (!json_is_array(vms)) {
		ctl_warnx("malformed reply from emberd to vm.list: no \"vms\" array");
		json_decref(result);
		return EXIT_ERROR;
	}
	t = table_new(6, headers);
	json_array_foreach(vms, i, rec) {
		char cpus[32], mem[32], cid[32];
		const char *row[6] = {
			rec_str(rec, "name"), rec_str(rec, "status"),
			rec_str(rec, "backend"),
			rec_int(rec, "cpus", cpus, sizeof(cpus)),
			rec_memory(rec, mem, sizeof(mem)),
			rec_cid(rec, cid, sizeof(cid)),
		};

		if (t != NULL && table_add_row(t, row) < 0) {
			table_free(t);
			t = NULL;
		}
	}
	json_decref(result);
	if (t == NULL) {
		ctl_warnx("out of memory");
		return EXIT_ERROR;
	}
	table_print(t, stdout);
	table_free(t);
	return EXIT_OK;
}

/* One "label:  value" line of `vm inspect`; "-" for an absent value. */
static void
kv(const char *label, const char *value)
{
	int n = printf("%s:", label);

	printf("%*s%s\n", n < 15 ? 15 - n : 1, "", value != NULL ? value : "-");
}

int
cmd_vm_inspect(struct ctl *ctl, struct verb_args *a)
{
	static const struct { const char *label, *key; } strings[] = {
		{ "backend", "backend" }, { "image", "image" },
		{ "kernel", "kernel_path" }, { "initrd", "initrd_path" },
		{ "disk", "disk_path" }, { "boot args", "boot_args" },
		{ "network", "network" },
	};
	char buf[64];
	const char *s;
	json_t *rec, *vsock;
	int r = ctl_call(ctl, "vm.inspect",
	    json_pack("{s:s}", "name", a->argv[0]), &rec);

	if (r != EXIT_OK)
		return r;
	if (ctl->json) {
		ctl_print_json(rec);
		json_decref(rec);
		return EXIT_OK;
	}
	kv("name", rec_str(rec, "name"));
	kv("id", rec_str(rec, "id"));
	kv("status", rec_str(rec, "status"));
	if ((s = rec_str(rec, "reason")) != NULL)
		kv("reason", s);
	for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++)
		kv(strings[i].label, rec_str(rec, strings[i].key));
	kv("cpus", rec_int(rec, "cpus", buf, sizeof(buf)));
	kv("memory", rec_memory(rec, buf, sizeof(buf)));
	s = rec_int(rec, "pid", buf, sizeof(buf));
	kv("pid", strcmp(s, "0") == 0 ? "-" : s);
	kv("created at", rec_str(rec, "created_at"));
	kv("parent vm", rec_str(rec, "parent_vm"));
	kv("owner uid", rec_int(rec, "owner_uid", buf, sizeof(buf)));
	vsock = json_object_get(rec, "vsock");
	kv("vsock cid", rec_cid(rec, buf, sizeof(buf)));
	kv("vsock uds", rec_str(vsock, "uds_path"));
	json_decref(rec);
	return EXIT_OK;
}

static int
name_only(struct ctl *ctl, struct verb_args *a, const char *method)
{
	return call_lifecycle(ctl, method,
	    json_pack("{s:s}", "name", a->argv[0]), a->argv[0], NULL);
}

int
cmd_vm_start(struct ctl *ctl, struct verb_args *a)
{
	return name_only(ctl, a, "vm.start");
}

int
cmd_vm_pause(struct ctl *ctl, struct verb_args *a)
{
	return name_only(ctl, a, "vm.pause");
}

int
cmd_vm_resume(struct ctl *ctl, struct verb_args *a)
{
	return name_only(ctl, a, "vm.resume");
}

int
cmd_vm_stop(struct ctl *ctl, struct verb_args *a)
{
	json_t *params = json_pack("{s:s}", "name", a->argv[0]);

	if (OPTARG(a, OPT_FORCE) != NULL)
		json_object_set_new(params, "force", json_true());
	if (OPTARG(a, OPT_TIMEOUT) != NULL) {
		unsigned long s;

		if (parse_uint(OPTARG(a, OPT_TIMEOUT), INT_MAX / 1000 - 60,
		    &s) < 0) {
			json_decref(params);
			return ctl_usage_error(ctl, "invalid --timeout '%s': "
			    "expected whole seconds", OPTARG(a, OPT_TIMEOUT));
		}
		json_object_set_new(params, "timeout_s", json_integer((json_int_t)s));
		/* Leave emberd time to escalate before giving up on it. */
		if (!ctl->timeout_set && ctl->timeout_ms >= 0 &&
		    ctl->timeout_ms < (int)(s + 60) * 1000)
			ctl->timeout_ms = (int)(s + 60) * 1000;
	}
	return call_lifecycle(ctl, "vm.stop", params, a->argv[0], NULL);
}

int
cmd_vm_delete(struct ctl *ctl, struct verb_args *a)
{
	json_t *params = json_pack("{s:s}", "name", a->argv[0]);
	json_t *rec;
	int r;

	if (OPTARG(a, OPT_FORCE) != NULL)
		json_object_set_new(params, "force", json_true());
	r = ctl_call(ctl, "vm.delete", params, &rec);
	if (r != EXIT_OK)
		return r;
	if (ctl->json)
		ctl_print_json(rec);
	else
		printf("%s: deleted\n", a->argv[0]);
	json_decref(rec);
	return EXIT_OK;
}

int
cmd_vm_fork(struct ctl *ctl, struct verb_args *a)
{
	json_t *params = json_pack("{s:s, s:s}", "source", a->argv[0],
	    "name", a->argv[1]);
	char did[128];
	int r;

	if ((r = apply_vsock(ctl, a, params)) != EXIT_OK) {
		json_decref(params);
		return r;
	}
	if (OPTARG(a, OPT_NO_START) != NULL)
		json_object_set_new(params, "start", json_false());
	snprintf(did, sizeof(did), "forked from %s", a->argv[0]);
	return call_lifecycle(ctl, "vm.fork", params, a->argv[1], did);
}
