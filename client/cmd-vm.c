/*
 * The `vm` verbs: each builds vm.* params from its arguments, makes one
 * call and prints either the raw result (--json) or a short human form: a
 * one-line confirmation for lifecycle verbs, a table for `vm list`, key:
 * value lines for `vm inspect`. Values are checked only as far as needed
 * to build well-typed params; emberd judges ranges and names.
 *
 * `vm exec` and `vm cp` go through the guest's agent: exec writes the
 * command's decoded output to our stdout and stderr and exits with its
 * status; cp moves a file in CP_CHUNK pieces (one vm.cp call each), so a
 * file of any size fits emberd's 1 MiB request lines.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base64.h"
#include "emberctl.h"
#include "error.h"
#include "size.h"
#include "spec.h"
#include "table.h"

#define VM_KV_WIDTH 15	/* where inspect's values start */

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
	struct ctl_progress *progress = NULL;
	int r;

	/* A boot, a disk copy or an agent wait may take a while: a progress
	 * line on a terminal, and plain progress lines for --wait elsewhere. */
	if ((strcmp(method, "vm.create") == 0 || strcmp(method, "vm.start") == 0 ||
	    strcmp(method, "vm.fork") == 0) &&
	    (isatty(STDERR_FILENO) || json_is_true(json_object_get(params, "wait"))) &&
	    !json_is_false(json_object_get(params, "start")))
		progress = ctl_progress_start(ctl, name, NULL);
	r = ctl_call(ctl, method, params, &rec);
	ctl_progress_stop(progress);
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

#define WAIT_DEFAULT_S 120

/* --wait [SECONDS] into params (wait, wait_timeout_s); makes sure our own
 * reply timeout outlasts it. */
static int
apply_wait(struct ctl *ctl, struct verb_args *a, json_t *params)
{
	const char *v = OPTARG(a, OPT_WAIT);
	unsigned long s = WAIT_DEFAULT_S;

	if (v == NULL)
		return EXIT_OK;
	if (v[0] != '\0' && (parse_uint(v, 3600, &s) < 0 || s == 0))
		return ctl_usage_error(ctl, "invalid --wait '%s': expected whole "
		    "seconds from 1 to 3600", v);
	json_object_set_new(params, "wait", json_true());
	json_object_set_new(params, "wait_timeout_s", json_integer((json_int_t)s));
	/* The boot itself comes first, then up to s seconds for the agent. */
	if (!ctl->timeout_set && ctl->timeout_ms >= 0 &&
	    ctl->timeout_ms < (int)(s + 600) * 1000)
		ctl->timeout_ms = (int)(s + 600) * 1000;
	return EXIT_OK;
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

/* An OCI image's workload overrides: the words after NAME (the command),
 * every --env, --workdir and --user. */
static void
apply_workload(struct verb_args *a, json_t *params)
{
	if (a->argc > 1) {
		json_t *cmd = json_array();
		for (int i = 1; i < a->argc; i++)
			json_array_append_new(cmd, json_string(a->argv[i]));
		json_object_set_new(params, "command", cmd);
	}
	if (a->nenv > 0) {
		json_t *env = json_array();
		for (int i = 0; i < a->nenv; i++)
			json_array_append_new(env, json_string(a->env[i]));
		json_object_set_new(params, "env", env);
	}
	if (a->npublish > 0) {
		json_t *pub = json_array();
		for (int i = 0; i < a->npublish; i++)
			json_array_append_new(pub, json_string(a->publish[i]));
		json_object_set_new(params, "publish", pub);
	}
	if (OPTARG(a, OPT_WORKDIR) != NULL)
		json_object_set_new(params, "workdir", json_string(OPTARG(a, OPT_WORKDIR)));
	if (OPTARG(a, OPT_USER) != NULL)
		json_object_set_new(params, "user", json_string(OPTARG(a, OPT_USER)));
}

/* vm.create's parameters from the options (vm create, vm run); EXIT_OK with
 * *out, or a printed error. */
static int
create_params(struct ctl *ctl, struct verb_args *a, json_t **out)
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
	if ((r = apply_wait(ctl, a, params)) != EXIT_OK)
		goto fail;
	apply_workload(a, params);
	*out = params;
	return EXIT_OK;
fail:
	json_decref(params);
	return r;
}

int
cmd_vm_create(struct ctl *ctl, struct verb_args *a)
{
	json_t *params;
	int r = create_params(ctl, a, &params);

	if (r != EXIT_OK)
		return r;
	return call_lifecycle(ctl, "vm.create", params, a->argv[0], "created");
}

/* "10.100.0.2 8080->80/tcp,..." for a nat VM, NULL otherwise. */
static const char *
rec_network(const json_t *rec, char *buf, size_t len)
{
	const json_t *net = json_object_get(rec, "network"), *p;
	const char *addr = rec_str(net, "guest_addr");
	size_t i, n;

	if (!json_is_object(net) || addr == NULL)
		return NULL;
	n = (size_t)snprintf(buf, len, "%.*s", (int)strcspn(addr, "/"), addr);
	json_array_foreach(json_object_get(net, "publish"), i, p) {
		if (n >= len)
			break;
		n += (size_t)snprintf(buf + n, len - n, "%s%lld->%lld/%s", i == 0 ? " " : ",",
		    (long long)json_integer_value(json_object_get(p, "host_port")),
		    (long long)json_integer_value(json_object_get(p, "guest_port")),
		    rec_str(p, "proto") ? rec_str(p, "proto") : "tcp");
	}
	return buf;
}

int
cmd_vm_list(struct ctl *ctl, struct verb_args *a)
{
	static const char *const headers[] = {
		"NAME", "STATUS", "BACKEND", "CPUS", "MEMORY", "CID", "NETWORK",
	};
	json_t *result, *vms, *rec;
	struct table *t;
	size_t i;
	int ncols = 6;
	char scratch[160];
	int r = ctl_query(ctl, "vm.list", NULL, &result);

	if (r != EXIT_OK || result == NULL)
		return r;
	if ((vms = ctl_reply_member(result, "vm.list", "vms", JSON_ARRAY)) == NULL) {
		json_decref(result);
		return EXIT_ERROR;
	}
	/* The NETWORK column (address, published ports) only when a VM has one. */
	json_array_foreach(vms, i, rec)
		if (rec_network(rec, scratch, sizeof(scratch)) != NULL)
			ncols = 7;
	t = table_new(ncols, headers);
	json_array_foreach(vms, i, rec) {
		char cpus[32], mem[32], cid[32], net[160];
		const char *row[7] = {
			rec_str(rec, "name"), rec_str(rec, "status"),
			rec_str(rec, "backend"),
			rec_int(rec, "cpus", cpus, sizeof(cpus)),
			rec_memory(rec, mem, sizeof(mem)),
			rec_cid(rec, cid, sizeof(cid)),
			rec_network(rec, net, sizeof(net)),
		};

		if (row[6] == NULL)
			row[6] = "-";
		if (t != NULL && table_add_row(t, row) < 0) {
			table_free(t);
			t = NULL;
		}
	}
	json_decref(result);
	return ctl_print_table(t);
}

/* The network lines of vm inspect: the mode (a string in records from
 * before "nat"), then a nat VM's TAP, addresses, MAC and published ports. */
static void
inspect_network(const json_t *net)
{
	const json_t *pub, *p;
	char line[96];
	size_t i;

	if (json_is_string(net) || net == NULL) {
		ctl_kv("network", json_string_value(net), VM_KV_WIDTH);
		return;
	}
	ctl_kv("network", rec_str(net, "mode"), VM_KV_WIDTH);
	if (rec_str(net, "guest_addr") == NULL)
		return;
	ctl_kv("tap", rec_str(net, "tap") ? rec_str(net, "tap") : "- (not running)",
	    VM_KV_WIDTH);
	ctl_kv("host addr", rec_str(net, "host_addr"), VM_KV_WIDTH);
	ctl_kv("guest addr", rec_str(net, "guest_addr"), VM_KV_WIDTH);
	ctl_kv("mac", rec_str(net, "mac"), VM_KV_WIDTH);
	pub = json_object_get(net, "publish");
	json_array_foreach(pub, i, p) {
		snprintf(line, sizeof(line), "%s:%lld -> %lld/%s", rec_str(p, "host_addr"),
		    (long long)json_integer_value(json_object_get(p, "host_port")),
		    (long long)json_integer_value(json_object_get(p, "guest_port")),
		    rec_str(p, "proto") ? rec_str(p, "proto") : "tcp");
		ctl_kv("publish", line, VM_KV_WIDTH);
	}
}

int
cmd_vm_inspect(struct ctl *ctl, struct verb_args *a)
{
	static const struct { const char *label, *key; } strings[] = {
		{ "backend", "backend" }, { "image", "image" },
		{ "kernel", "kernel_path" }, { "initrd", "initrd_path" },
		{ "disk", "disk_path" }, { "boot args", "boot_args" },
	};
	char buf[64];
	const char *s;
	json_t *rec, *vsock;
	int r = ctl_query(ctl, "vm.inspect",
	    json_pack("{s:s}", "name", a->argv[0]), &rec);

	if (r != EXIT_OK || rec == NULL)
		return r;
	ctl_kv("name", rec_str(rec, "name"), VM_KV_WIDTH);
	ctl_kv("id", rec_str(rec, "id"), VM_KV_WIDTH);
	ctl_kv("status", rec_str(rec, "status"), VM_KV_WIDTH);
	if ((s = rec_str(rec, "reason")) != NULL)
		ctl_kv("reason", s, VM_KV_WIDTH);
	for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++)
		ctl_kv(strings[i].label, rec_str(rec, strings[i].key), VM_KV_WIDTH);
	inspect_network(json_object_get(rec, "network"));
	ctl_kv("cpus", rec_int(rec, "cpus", buf, sizeof(buf)), VM_KV_WIDTH);
	ctl_kv("memory", rec_memory(rec, buf, sizeof(buf)), VM_KV_WIDTH);
	s = rec_int(rec, "pid", buf, sizeof(buf));
	ctl_kv("pid", strcmp(s, "0") == 0 ? "-" : s, VM_KV_WIDTH);
	ctl_kv("created at", rec_str(rec, "created_at"), VM_KV_WIDTH);
	ctl_kv("parent vm", rec_str(rec, "parent_vm"), VM_KV_WIDTH);
	ctl_kv("owner uid", rec_int(rec, "owner_uid", buf, sizeof(buf)), VM_KV_WIDTH);
	vsock = json_object_get(rec, "vsock");
	ctl_kv("vsock cid", rec_cid(rec, buf, sizeof(buf)), VM_KV_WIDTH);
	ctl_kv("vsock uds", rec_str(vsock, "uds_path"), VM_KV_WIDTH);
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
	json_t *params = json_pack("{s:s}", "name", a->argv[0]);
	int r;

	if ((r = apply_wait(ctl, a, params)) != EXIT_OK) {
		json_decref(params);
		return r;
	}
	return call_lifecycle(ctl, "vm.start", params, a->argv[0], NULL);
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

/* --- vm exec, vm cp ------------------------------------------------------ */

#define CP_CHUNK (512 * 1024)	/* the agent's limit per read_file/write_file */

static int
write_all(int fd, const unsigned char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Writes the decoded base64 member key of result to fd. */
static int
write_b64_member(const json_t *result, const char *key, int fd)
{
	const char *s = json_string_value(json_object_get(result, key));
	unsigned char *buf;
	size_t len;
	int r;

	if (s == NULL || base64_decode(s, strlen(s), &buf, &len) < 0) {
		ctl_warnx("malformed reply from emberd to vm.exec: bad \"%s\"", key);
		return -1;
	}
	r = write_all(fd, buf, len);
	free(buf);
	return r;
}

int
cmd_vm_exec(struct ctl *ctl, struct verb_args *a)
{
	unsigned long timeout_s = 60;
	json_t *params, *argv, *result, *code, *sig;
	int r;

	if (OPTARG(a, OPT_TIMEOUT) != NULL &&
	    (parse_uint(OPTARG(a, OPT_TIMEOUT), 86400, &timeout_s) < 0 ||
	    timeout_s == 0))
		return ctl_usage_error(ctl, "invalid --timeout '%s': expected "
		    "whole seconds from 1 to 86400", OPTARG(a, OPT_TIMEOUT));
	argv = json_array();
	for (int i = 1; i < a->argc; i++)
		json_array_append_new(argv, json_string(a->argv[i]));
	params = json_pack("{s:s, s:o, s:I}", "name", a->argv[0], "argv", argv,
	    "timeout_s", (json_int_t)timeout_s);
	/* emberd allows the agent timeout_s + 15 s; we allow a bit more. */
	if (!ctl->timeout_set && ctl->timeout_ms >= 0 &&
	    ctl->timeout_ms < (int)(timeout_s + 30) * 1000)
		ctl->timeout_ms = (int)(timeout_s + 30) * 1000;
	if ((r = ctl_call(ctl, "vm.exec", params, &result)) != EXIT_OK)
		return r;
	if (ctl->json) {
		ctl_print_json(result);
	} else {
		fflush(stdout);
		if (write_b64_member(result, "stdout", STDOUT_FILENO) < 0 ||
		    write_b64_member(result, "stderr", STDERR_FILENO) < 0) {
			json_decref(result);
			return EXIT_ERROR;
		}
	}
	if (json_is_true(json_object_get(result, "truncated")))
		ctl_warnx("the command's output was cut at 256 KiB per stream");
	code = json_object_get(result, "exit_code");
	sig = json_object_get(result, "signal");
	if (json_is_true(json_object_get(result, "timed_out"))) {
		ctl_warnx("the command ran past its %lu s timeout and was killed "
		    "(with its process group)", timeout_s);
		r = 124;
	} else if (json_is_integer(code)) {
		r = (int)(json_integer_value(code) & 255);
	} else if (json_is_integer(sig)) {
		r = 128 + (int)(json_integer_value(sig) & 127);
	} else {
		ctl_warnx("malformed reply from emberd to vm.exec: no exit_code or signal");
		r = EXIT_ERROR;
	}
	json_decref(result);
	return r;
}

/* Splits "NAME:/path" (NAME has no '/'); false for a local path. */
static bool
split_remote(const char *arg, char *name, size_t name_len, const char **path)
{
	const char *colon = strchr(arg, ':');

	if (colon == NULL || colon == arg || memchr(arg, '/', (size_t)(colon - arg)) != NULL ||
	    (size_t)(colon - arg) >= name_len)
		return false;
	memcpy(name, arg, (size_t)(colon - arg));
	name[colon - arg] = '\0';
	*path = colon + 1;
	return true;
}

/* dir + "/" + the last component of src, when dir names a directory. */
static char *
join_basename(const char *dir, const char *src)
{
	const char *base = strrchr(src, '/');
	size_t dl = strlen(dir);
	char *s;

	base = base != NULL ? base + 1 : src;
	while (dl > 1 && dir[dl - 1] == '/')
		dl--;
	if (asprintf(&s, "%.*s/%s", (int)dl, dir, base) < 0)
		return NULL;
	return s;
}

static int
cp_in(struct ctl *ctl, const char *local, const char *name, const char *path)
{
	unsigned char *buf = NULL;
	char *dest = NULL;
	struct stat st;
	uint64_t offset = 0;
	int fd, r = EXIT_ERROR;
	bool first = true;

	if ((fd = open(local, O_RDONLY | O_CLOEXEC)) < 0 || fstat(fd, &st) < 0) {
		ctl_warnx("cannot read %s: %s", local, strerror(errno));
		if (fd >= 0)
			close(fd);
		return EXIT_ERROR;
	}
	if (S_ISDIR(st.st_mode)) {
		ctl_warnx("%s is a directory; vm cp copies single files", local);
		goto out;
	}
	if (path[0] != '\0' && path[strlen(path) - 1] == '/')
		path = dest = join_basename(path, local);
	if ((buf = malloc(CP_CHUNK)) == NULL || path == NULL) {
		ctl_warnx("out of memory");
		goto out;
	}
	for (;;) {
		size_t got = 0;
		ssize_t n;
		json_t *params, *result;
		char *data;

		while (got < CP_CHUNK) {
			n = read(fd, buf + got, CP_CHUNK - got);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0) {
				ctl_warnx("cannot read %s: %s", local, strerror(errno));
				goto out;
			}
			if (n == 0)
				break;
			got += (size_t)n;
		}
		if (got == 0 && !first)
			break;
		if ((data = base64_encode(buf, got, NULL)) == NULL) {
			ctl_warnx("out of memory");
			goto out;
		}
		params = json_pack("{s:s, s:s, s:s, s:s, s:I, s:b}", "name", name,
		    "path", path, "direction", "in", "data", data,
		    "offset", (json_int_t)offset, "truncate", first);
		free(data);
		if (first)
			json_object_set_new(params, "mode",
			    json_integer((json_int_t)(st.st_mode & 07777)));
		if ((r = ctl_call(ctl, "vm.cp", params, &result)) != EXIT_OK)
			goto out;
		r = EXIT_ERROR;
		if (json_integer_value(json_object_get(result, "written")) != (json_int_t)got) {
			ctl_warnx("%s:%s: the guest wrote %" JSON_INTEGER_FORMAT " of %zu bytes",
			    name, path, json_integer_value(json_object_get(result, "written")), got);
			json_decref(result);
			goto out;
		}
		json_decref(result);
		offset += got;
		first = false;
		if (got < CP_CHUNK)
			break;
	}
	r = EXIT_OK;
out:
	free(buf);
	free(dest);
	close(fd);
	return r;
}

static int
cp_out(struct ctl *ctl, const char *name, const char *path, const char *local)
{
	char *dest = NULL;
	struct stat st;
	uint64_t offset = 0;
	int fd, r = EXIT_ERROR;

	if (stat(local, &st) == 0 && S_ISDIR(st.st_mode)) {
		if ((dest = join_basename(local, path)) == NULL) {
			ctl_warnx("out of memory");
			return EXIT_ERROR;
		}
		local = dest;
	}
	/* The local file is created once the guest has sent a first chunk. */
	fd = -1;
	for (;;) {
		json_t *params, *result;
		unsigned char *data;
		size_t len;
		bool eof;

		params = json_pack("{s:s, s:s, s:s, s:I, s:i}", "name", name, "path", path,
		    "direction", "out", "offset", (json_int_t)offset, "length", CP_CHUNK);
		if ((r = ctl_call(ctl, "vm.cp", params, &result)) != EXIT_OK)
			goto out;
		r = EXIT_ERROR;
		const char *b64 = json_string_value(json_object_get(result, "data"));
		if (b64 == NULL || base64_decode(b64, strlen(b64), &data, &len) < 0) {
			ctl_warnx("malformed reply from emberd to vm.cp: bad \"data\"");
			json_decref(result);
			goto out;
		}
		eof = json_is_true(json_object_get(result, "eof"));
		json_decref(result);
		if (fd < 0 && (fd = open(local, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
		    0666)) < 0) {
			ctl_warnx("cannot create %s: %s", local, strerror(errno));
			free(data);
			goto out;
		}
		if (write_all(fd, data, len) < 0) {
			ctl_warnx("cannot write %s: %s", local, strerror(errno));
			free(data);
			goto out;
		}
		free(data);
		offset += len;
		if (eof || len == 0)
			break;
	}
	r = EXIT_OK;
out:
	if (fd >= 0 && close(fd) < 0 && r == EXIT_OK) {
		ctl_warnx("cannot write %s: %s", local, strerror(errno));
		r = EXIT_ERROR;
	}
	free(dest);
	return r;
}

int
cmd_vm_cp(struct ctl *ctl, struct verb_args *a)
{
	char src_vm[256], dst_vm[256];
	const char *src_path, *dst_path;
	bool src_remote = split_remote(a->argv[0], src_vm, sizeof(src_vm), &src_path);
	bool dst_remote = split_remote(a->argv[1], dst_vm, sizeof(dst_vm), &dst_path);

	if (src_remote == dst_remote)
		return ctl_usage_error(ctl, "exactly one of SRC and DST must be "
		    "NAME:/path (a path in a guest)");
	if ((src_remote ? src_path : dst_path)[0] != '/')
		return ctl_usage_error(ctl, "the guest path '%s' must be absolute",
		    src_remote ? src_path : dst_path);
	if (src_remote)
		return cp_out(ctl, src_vm, src_path, a->argv[1]);
	return cp_in(ctl, a->argv[0], dst_vm, dst_path);
}

/* ---- vm logs, vm run -------------------------------------------------- */

#define LOGS_POLL_MS 200	/* between reads of a log that has not grown */
#define LOGS_LINE_MAX 4096	/* vm run: longer lines are cut into pieces */

/* What vm run prints of the console: the workload's lines only, between
 * the agent's START and EXIT lines, without carriage returns. */
struct logs_filter {
	bool on, workload_only, done;
	char line[LOGS_LINE_MAX];
	size_t len;
};

static void
logs_filter_line(struct logs_filter *f)
{
	f->line[f->len] = '\0';
	if (strncmp(f->line, "EMBER-WORKLOAD-START", 20) == 0)
		f->on = true;
	else if (strncmp(f->line, "EMBER-WORKLOAD-EXIT", 19) == 0) {
		f->on = false;
		f->done = true;
	} else if (f->on) {
		fwrite(f->line, 1, f->len, stdout);
		fputc('\n', stdout);
	}
	f->len = 0;
}

static void
logs_write(struct logs_filter *f, const unsigned char *data, size_t len)
{
	if (!f->workload_only) {
		fwrite(data, 1, len, stdout);
		return;
	}
	for (size_t i = 0; i < len; i++) {
		if (data[i] == '\r')
			continue;
		if (data[i] == '\n' || f->len == sizeof(f->line) - 1) {
			logs_filter_line(f);
			if (data[i] == '\n')
				continue;
		}
		f->line[f->len++] = (char)data[i];
	}
	fflush(stdout);
}

/* Prints name's console from offset; with follow, until the VM is no
 * longer starting, running, paused or stopping and everything is read. */
static int
logs_stream(struct ctl *ctl, const char *name, int64_t offset, bool follow,
    struct logs_filter *f)
{
	for (;;) {
		json_t *res;
		unsigned char *data = NULL;
		size_t len = 0;
		const char *b64, *status;
		int r = ctl_call(ctl, "vm.logs", json_pack("{s:s, s:I}", "name", name,
		    "offset", (json_int_t)offset), &res);

		if (r != EXIT_OK)
			return r;
		b64 = json_string_value(json_object_get(res, "data"));
		status = json_string_value(json_object_get(res, "status"));
		if (b64 == NULL || status == NULL ||
		    base64_decode(b64, strlen(b64), &data, &len) < 0) {
			json_decref(res);
			ctl_warnx("malformed reply from emberd to vm.logs");
			return EXIT_ERROR;
		}
		logs_write(f, data, len);
		free(data);
		offset = json_integer_value(json_object_get(res, "next_offset"));
		bool live = strcmp(status, "starting") == 0 || strcmp(status, "running") == 0 ||
		    strcmp(status, "paused") == 0 || strcmp(status, "stopping") == 0;
		json_decref(res);
		fflush(stdout);
		if (len > 0)
			continue;
		if (!follow || !live)
			return EXIT_OK;
		poll(NULL, 0, LOGS_POLL_MS);	/* the log has not grown: ask again soon */
	}
}

int
cmd_vm_logs(struct ctl *ctl, struct verb_args *a)
{
	struct logs_filter f = { 0 };

	return logs_stream(ctl, a->argv[0], 0, OPTARG(a, OPT_FOLLOW) != NULL, &f);
}

/* vm run: create and start, print the workload's output while it runs,
 * exit with its status (128+N for signal N); --rm deletes the VM after. */
int
cmd_vm_run(struct ctl *ctl, struct verb_args *a)
{
	const char *name = a->argv[0];
	struct logs_filter f = { .workload_only = true };
	json_t *params, *rec = NULL, *wexit;
	int r = create_params(ctl, a, &params), status = EXIT_ERROR;

	if (r != EXIT_OK)
		return r;
	json_object_del(params, "wait");
	/* With vsock the workload's status comes from the guest's agent, not
	 * from its console (which the workload itself can write). */
	if (json_object_get(params, "vsock") == NULL)
		json_object_set_new(params, "vsock", json_true());
	r = ctl_call(ctl, "vm.create", params, &rec);
	if (r != EXIT_OK)
		return r;
	json_decref(rec);
	r = logs_stream(ctl, name, 0, true, &f);
	if (f.len > 0)
		logs_filter_line(&f);
	if (r == EXIT_OK && (r = ctl_call(ctl, "vm.inspect", json_pack("{s:s}", "name", name),
	    &rec)) == EXIT_OK) {
		wexit = json_object_get(rec, "workload_exit");
		if (json_is_integer(json_object_get(wexit, "code")))
			status = (int)json_integer_value(json_object_get(wexit, "code"));
		else if (json_is_integer(json_object_get(wexit, "signal")))
			status = 128 + (int)json_integer_value(json_object_get(wexit, "signal"));
		else
			ctl_warnx("%s: %s without a workload exit status (%s)", name,
			    json_string_value(json_object_get(rec, "status")),
			    json_string_value(json_object_get(rec, "reason")) ?
			    json_string_value(json_object_get(rec, "reason")) : "no reason");
		json_decref(rec);
	} else
		status = r;
	if (OPTARG(a, OPT_RM) != NULL) {
		if (ctl_call(ctl, "vm.delete", json_pack("{s:s, s:b}", "name", name, "force", 1),
		    &rec) == EXIT_OK)
			json_decref(rec);
		else if (status == EXIT_OK)
			status = EXIT_ERROR;
	}
	return status;
}
