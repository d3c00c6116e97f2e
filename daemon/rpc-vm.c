/*
 * vm.* methods: parameter rows for the dispatcher and thin handlers that
 * turn params into vm.c operations. Every lifecycle method answers with the
 * VM record as it stands after the call.
 */
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "rpc.h"
#include "vm.h"
#include "vm-agent.h"
#include "vm-logs.h"

/* vm_done_fn adapter: the call is the context. */
static void
rpc_vm_done(void *ctx, json_t *result, const struct ember_error *err)
{
	struct rpc_call *call = ctx;

	if (err != NULL)
		rpc_fail(call, err);
	else
		rpc_reply(call, result);
}

/* create/start with "wait": once running, wait for the agent too. */
struct rpc_wait {
	struct rpc_call *call;
	char name[64];
	unsigned timeout_s;
};

static void
rpc_vm_wait_done(void *ctx, json_t *result, const struct ember_error *err)
{
	struct rpc_wait *w = ctx;
	struct rpc_call *call = w->call;
	struct vm *vm = err == NULL ? vm_find(call->daemon, w->name) : NULL;
	unsigned timeout_s = w->timeout_s;

	free(w);
	if (err != NULL) {
		rpc_fail(call, err);
		return;
	}
	json_decref(result);
	if (vm == NULL) {
		struct ember_error gone = { 0 };
		ember_error_set(&gone, EK_NOT_FOUND, NULL, "the VM was deleted while starting");
		rpc_fail(call, &gone);
		return;
	}
	vm_agent_wait(vm, timeout_s, rpc_vm_done, call);
}

/* Refuses "wait" that cannot work before anything is created or started:
 * no vsock (so no agent) or a wait_timeout_s out of range. */
static bool
rpc_wait_refused(struct rpc_call *call, json_t *params, bool vsock)
{
	long long timeout = rpc_param_int(params, "wait_timeout_s", 120);

	if (!rpc_param_bool(params, "wait", false))
		return false;
	if (!vsock) {
		rpc_fail_params(call, "wait needs vsock (the agent is reached over vsock)");
		return true;
	}
	if (timeout < 1 || timeout > 3600) {
		rpc_fail_params(call, "wait_timeout_s must be 1 to 3600, not %lld", timeout);
		return true;
	}
	return false;
}

/* The completion to use for a create/start: plain, or waiting for the agent. */
static vm_done_fn
rpc_wait_setup(struct rpc_call *call, json_t *params, const char *name, void **ctx)
{
	long long timeout = rpc_param_int(params, "wait_timeout_s", 120);
	struct rpc_wait *w;

	*ctx = call;
	if (!rpc_param_bool(params, "wait", false))
		return rpc_vm_done;
	w = calloc(1, sizeof(*w));
	if (w == NULL)
		return rpc_vm_done;
	w->call = call;
	snprintf(w->name, sizeof(w->name), "%s", name);
	w->timeout_s = timeout > 0 && timeout <= 3600 ? (unsigned)timeout : 120;
	*ctx = w;
	return rpc_vm_wait_done;
}

/* The VM called name if the caller may see it; otherwise the call fails
 * with not_found whether or not another owner has a VM of that name. */
static struct vm *
rpc_find_vm(struct rpc_call *call, const char *name)
{
	struct vm *vm = vm_find(call->daemon, name);

	if (vm == NULL || !rpc_may_see(call, vm)) {
		rpc_fail_vm_not_found(call, name);
		return NULL;
	}
	return vm;
}

/* NULL, or an array of at most 256 strings (with kv, each "K=V", K not empty). */
static bool
rpc_strings_ok(json_t *array, bool kv)
{
	json_t *v;
	size_t i;

	if (array == NULL)
		return true;
	if (json_array_size(array) > 256)
		return false;
	json_array_foreach(array, i, v) {
		const char *s = json_string_value(v);
		if (s == NULL || (kv && (s[0] == '=' || strchr(s, '=') == NULL)))
			return false;
	}
	return true;
}

static void
rpc_vm_create(struct rpc_call *call, json_t *params)
{
	long long cpus = rpc_param_int(params, "cpus", 0);
	long long memory = rpc_param_int(params, "memory_mib", 0);
	long long disk = rpc_param_int(params, "disk_size_mib", 0);
	struct platform_caller caller = rpc_caller(call);
	struct vm_create_args a = {
		.name = rpc_param_str(params, "name", NULL),
		.image = rpc_param_str(params, "image", NULL),
		.kernel = rpc_param_str(params, "kernel", NULL),
		.initrd = rpc_param_str(params, "initrd", NULL),
		.rootfs = rpc_param_str(params, "rootfs", NULL),
		.boot_args = rpc_param_str(params, "boot_args", NULL),
		.backend = rpc_param_str(params, "backend", NULL),
		.network = rpc_param_str(params, "network", NULL),
		.publish = json_object_get(params, "publish"),
		.vsock = rpc_param_bool(params, "vsock", false),
		.start = rpc_param_bool(params, "start", true),
		.owner_uid = call->uid,
		.caller = &caller,
		.command = json_object_get(params, "command"),
		.env = json_object_get(params, "env"),
		.workdir = rpc_param_str(params, "workdir", NULL),
		.user = rpc_param_str(params, "user", NULL),
	};

	if (!rpc_strings_ok(a.command, false) || !rpc_strings_ok(a.env, true)) {
		rpc_fail_params(call, "command and env are arrays of at most 256 strings "
		    "(env entries K=V)");
		return;
	}
	if (json_object_get(params, "cpus") != NULL && !json_is_null(json_object_get(params, "cpus")) &&
	    (cpus < 1 || cpus > 64)) {
		rpc_fail_params(call, "cpus must be 1 to 64, not %lld", cpus);
		return;
	}
	if (memory < 0 || memory > 1024 * 1024 || (memory > 0 && memory < 16) ||
	    (memory == 0 && json_is_integer(json_object_get(params, "memory_mib")))) {
		rpc_fail_params(call, "memory_mib must be 16 to 1048576, not %lld", memory);
		return;
	}
	if (disk < 0) {
		rpc_fail_params(call, "disk_size_mib must be positive");
		return;
	}
	a.cpus = (unsigned)cpus;
	a.memory_mib = (uint64_t)memory;
	a.disk_size_mib = (uint64_t)disk;
	if (rpc_param_bool(params, "wait", false) && !a.start) {
		rpc_fail_params(call, "wait needs start");
		return;
	}
	if (rpc_wait_refused(call, params, a.vsock))
		return;
	void *ctx;
	vm_done_fn done = rpc_wait_setup(call, params, a.name, &ctx);
	vm_create(call->daemon, &a, done, ctx);
}

static void
rpc_vm_list(struct rpc_call *call, json_t *params)
{
	struct ember_daemon *d = call->daemon;
	json_t *vms = json_array();

	for (size_t i = 0; i < d->nvms; i++)
		if (rpc_may_see(call, d->vms[i]))
			json_array_append_new(vms, vm_to_json(d->vms[i]));
	rpc_reply(call, json_pack("{s:o}", "vms", vms));
}

static void
rpc_vm_inspect(struct rpc_call *call, json_t *params)
{
	struct vm *vm = rpc_find_vm(call, rpc_param_str(params, "name", ""));

	if (vm != NULL)
		rpc_reply(call, vm_to_json(vm));
}

static void
rpc_vm_logs(struct rpc_call *call, json_t *params)
{
	struct vm *vm = rpc_find_vm(call, rpc_param_str(params, "name", ""));
	long long max = rpc_param_int(params, "max_bytes", VM_LOGS_CHUNK_MAX);
	struct ember_error err = { 0 };
	json_t *out;

	if (vm == NULL)
		return;
	if (max < 1 || max > VM_LOGS_CHUNK_MAX) {
		rpc_fail_params(call, "max_bytes must be 1 to %d", VM_LOGS_CHUNK_MAX);
		return;
	}
	out = vm_logs_read(vm, rpc_param_int(params, "offset", 0), (size_t)max, &err);
	if (out == NULL)
		rpc_fail(call, &err);
	else
		rpc_reply(call, out);
}

static void
rpc_vm_fork(struct rpc_call *call, json_t *params)
{
	struct vm *src = rpc_find_vm(call, rpc_param_str(params, "source", ""));
	json_t *vsock = json_object_get(params, "vsock");

	if (src == NULL)
		return;
	vm_fork(call->daemon, src, rpc_param_str(params, "name", ""),
	    json_is_boolean(vsock) ? json_is_true(vsock) : -1,
	    rpc_param_bool(params, "start", true), call->uid, rpc_vm_done, call);
}

static void
rpc_vm_start(struct rpc_call *call, json_t *params)
{
	struct vm *vm = rpc_find_vm(call, rpc_param_str(params, "name", ""));
	void *ctx;

	if (vm == NULL || rpc_wait_refused(call, params, vm->rec.vsock))
		return;
	vm_done_fn done = rpc_wait_setup(call, params, vm->rec.name, &ctx);
	vm_start(vm, done, ctx);
}

static void
rpc_vm_stop(struct rpc_call *call, json_t *params)
{
	struct vm *vm = rpc_find_vm(call, rpc_param_str(params, "name", ""));
	long long timeout = rpc_param_int(params, "timeout_s", 10);

	if (vm == NULL)
		return;
	if (timeout < 0 || timeout > 3600) {
		rpc_fail_params(call, "timeout_s must be 0 to 3600, not %lld", timeout);
		return;
	}
	vm_stop(vm, rpc_param_bool(params, "force", false), (unsigned)timeout, rpc_vm_done, call);
}

static void
rpc_vm_pause(struct rpc_call *call, json_t *params)
{
	struct vm *vm = rpc_find_vm(call, rpc_param_str(params, "name", ""));

	if (vm != NULL)
		vm_pause(vm, rpc_vm_done, call);
}

static void
rpc_vm_resume(struct rpc_call *call, json_t *params)
{
	struct vm *vm = rpc_find_vm(call, rpc_param_str(params, "name", ""));

	if (vm != NULL)
		vm_resume(vm, rpc_vm_done, call);
}

static void
rpc_vm_delete(struct rpc_call *call, json_t *params)
{
	struct vm *vm = rpc_find_vm(call, rpc_param_str(params, "name", ""));

	if (vm != NULL)
		vm_delete(vm, rpc_param_bool(params, "force", false), rpc_vm_done, call);
}

/* An agent's reply becomes the method's result (without "ok"), or a
 * backend_error carrying the agent's own message. */
static void
rpc_agent_reply(void *ctx, json_t *reply, const char *why)
{
	struct rpc_call *call = ctx;
	struct ember_error err = { 0 };

	if (reply == NULL) {
		ember_error_set(&err, EK_BACKEND_ERROR, "is ember-agent running in the guest?",
		    "agent: %s", why);
		rpc_fail(call, &err);
		return;
	}
	if (!json_is_true(json_object_get(reply, "ok"))) {
		const char *msg = json_string_value(json_object_get(reply, "error"));
		ember_error_set(&err, EK_BACKEND_ERROR, NULL, "agent: %s", msg ? msg : "request failed");
		rpc_fail(call, &err);
		return;
	}
	json_t *result = json_deep_copy(reply);
	json_object_del(result, "ok");
	json_object_del(result, "id");
	rpc_reply(call, result);
}

static void
rpc_agent_forward(struct rpc_call *call, struct vm *vm, json_t *req, int timeout_ms)
{
	struct ember_error err = { 0 };

	if (vm_agent_request(vm, req, timeout_ms, rpc_agent_reply, call, NULL, &err) < 0)
		rpc_fail(call, &err);
	json_decref(req);
}

static void
rpc_vm_exec(struct rpc_call *call, json_t *params)
{
	struct vm *vm = rpc_find_vm(call, rpc_param_str(params, "name", ""));
	json_t *argv = json_object_get(params, "argv");
	long long timeout = rpc_param_int(params, "timeout_s", 60);
	size_t i;
	json_t *v;

	if (vm == NULL)
		return;
	if (json_array_size(argv) == 0) {
		rpc_fail_params(call, "argv must be a non-empty array of strings");
		return;
	}
	json_array_foreach(argv, i, v)
		if (!json_is_string(v)) {
			rpc_fail_params(call, "argv[%zu] must be a string", i);
			return;
		}
	if (timeout < 1 || timeout > 86400) {
		rpc_fail_params(call, "timeout_s must be 1 to 86400");
		return;
	}
	json_t *req = json_pack("{s:s, s:O, s:I}", "op", "exec", "argv", argv,
	    "timeout_s", (json_int_t)timeout);
	const char *keys[] = { "env", "cwd", "stdin" };
	for (size_t k = 0; k < 3; k++) {
		json_t *x = json_object_get(params, keys[k]);
		if (x != NULL && !json_is_null(x))
			json_object_set(req, keys[k], x);
	}
	/* The agent kills the command at timeout_s; allow it time to say so. */
	rpc_agent_forward(call, vm, req, (int)(timeout + 15) * 1000);
}

static void
rpc_vm_cp(struct rpc_call *call, json_t *params)
{
	struct vm *vm = rpc_find_vm(call, rpc_param_str(params, "name", ""));
	const char *dir = rpc_param_str(params, "direction", "");
	json_t *req;

	if (vm == NULL)
		return;
	if (strcmp(dir, "in") == 0) {
		if (json_object_get(params, "data") == NULL) {
			rpc_fail_params(call, "direction \"in\" needs data (base64)");
			return;
		}
		req = json_pack("{s:s, s:O, s:O, s:I, s:b}", "op", "write_file",
		    "path", json_object_get(params, "path"), "data", json_object_get(params, "data"),
		    "offset", (json_int_t)rpc_param_int(params, "offset", 0),
		    "truncate", rpc_param_bool(params, "truncate", false));
		if (json_is_integer(json_object_get(params, "mode")))
			json_object_set(req, "mode", json_object_get(params, "mode"));
	} else if (strcmp(dir, "out") == 0) {
		req = json_pack("{s:s, s:O, s:I, s:I}", "op", "read_file",
		    "path", json_object_get(params, "path"),
		    "offset", (json_int_t)rpc_param_int(params, "offset", 0),
		    "length", (json_int_t)rpc_param_int(params, "length", 512 * 1024));
	} else {
		rpc_fail_params(call, "direction must be \"in\" or \"out\"");
		return;
	}
	rpc_agent_forward(call, vm, req, 60000);
}

static const struct rpc_param p_exec[] = {
	{ "name", JSON_STRING, RPC_REQUIRED },
	{ "argv", JSON_ARRAY, RPC_REQUIRED },
	{ "env", JSON_OBJECT, 0 },
	{ "cwd", JSON_STRING, 0 },
	{ "stdin", JSON_STRING, 0 },
	{ "timeout_s", JSON_INTEGER, 0 },
	{ NULL, 0, 0 },
};
static const struct rpc_param p_cp[] = {
	{ "name", JSON_STRING, RPC_REQUIRED },
	{ "path", JSON_STRING, RPC_REQUIRED },
	{ "direction", JSON_STRING, RPC_REQUIRED },
	{ "data", JSON_STRING, 0 },
	{ "offset", JSON_INTEGER, 0 },
	{ "length", JSON_INTEGER, 0 },
	{ "mode", JSON_INTEGER, 0 },
	{ "truncate", JSON_TRUE, 0 },
	{ NULL, 0, 0 },
};
static const struct rpc_param p_start[] = {
	{ "name", JSON_STRING, RPC_REQUIRED },
	{ "wait", JSON_TRUE, 0 },
	{ "wait_timeout_s", JSON_INTEGER, 0 },
	{ NULL, 0, 0 },
};

static const struct rpc_param p_create[] = {
	{ "name", JSON_STRING, RPC_REQUIRED },
	{ "image", JSON_STRING, 0 },
	{ "kernel", JSON_STRING, 0 },
	{ "initrd", JSON_STRING, 0 },
	{ "rootfs", JSON_STRING, 0 },
	{ "cpus", JSON_INTEGER, 0 },
	{ "memory_mib", JSON_INTEGER, 0 },
	{ "disk_size_mib", JSON_INTEGER, 0 },
	{ "boot_args", JSON_STRING, 0 },
	{ "vsock", JSON_TRUE, 0 },
	{ "backend", JSON_STRING, 0 },
	{ "network", JSON_STRING, 0 },
	{ "publish", JSON_ARRAY, 0 },		/* "[HOSTADDR:]HOSTPORT:GUESTPORT[/tcp|/udp]" */
	{ "start", JSON_TRUE, 0 },
	{ "wait", JSON_TRUE, 0 },
	{ "wait_timeout_s", JSON_INTEGER, 0 },
	{ "command", JSON_ARRAY, 0 },		/* an OCI image's workload overrides */
	{ "env", JSON_ARRAY, 0 },
	{ "workdir", JSON_STRING, 0 },
	{ "user", JSON_STRING, 0 },
	{ NULL, 0, 0 },
};
static const struct rpc_param p_logs[] = {
	{ "name", JSON_STRING, RPC_REQUIRED },
	{ "offset", JSON_INTEGER, 0 },		/* negative: from the end */
	{ "max_bytes", JSON_INTEGER, 0 },
	{ NULL, 0, 0 },
};
static const struct rpc_param p_name[] = {
	{ "name", JSON_STRING, RPC_REQUIRED },
	{ NULL, 0, 0 },
};
static const struct rpc_param p_fork[] = {
	{ "source", JSON_STRING, RPC_REQUIRED },
	{ "name", JSON_STRING, RPC_REQUIRED },
	{ "vsock", JSON_TRUE, 0 },
	{ "start", JSON_TRUE, 0 },
	{ NULL, 0, 0 },
};
static const struct rpc_param p_stop[] = {
	{ "name", JSON_STRING, RPC_REQUIRED },
	{ "force", JSON_TRUE, 0 },
	{ "timeout_s", JSON_INTEGER, 0 },
	{ NULL, 0, 0 },
};
static const struct rpc_param p_delete[] = {
	{ "name", JSON_STRING, RPC_REQUIRED },
	{ "force", JSON_TRUE, 0 },
	{ NULL, 0, 0 },
};

const struct rpc_method rpc_vm_methods[] = {
	{ "vm.create", p_create, RPC_MUTATES | RPC_ASYNC, NULL, rpc_vm_create },
	{ "vm.list", NULL, 0, NULL, rpc_vm_list },
	{ "vm.inspect", p_name, 0, "name", rpc_vm_inspect },
	{ "vm.logs", p_logs, 0, "name", rpc_vm_logs },
	{ "vm.fork", p_fork, RPC_MUTATES | RPC_ASYNC, "source", rpc_vm_fork },
	{ "vm.start", p_start, RPC_MUTATES | RPC_ASYNC, "name", rpc_vm_start },
	{ "vm.stop", p_stop, RPC_MUTATES | RPC_ASYNC, "name", rpc_vm_stop },
	{ "vm.pause", p_name, RPC_MUTATES | RPC_ASYNC, "name", rpc_vm_pause },
	{ "vm.resume", p_name, RPC_MUTATES | RPC_ASYNC, "name", rpc_vm_resume },
	{ "vm.delete", p_delete, RPC_MUTATES | RPC_ASYNC, "name", rpc_vm_delete },
	{ "vm.exec", p_exec, RPC_MUTATES | RPC_ASYNC, "name", rpc_vm_exec },
	{ "vm.cp", p_cp, RPC_MUTATES | RPC_ASYNC, "name", rpc_vm_cp },
	{ NULL, NULL, 0, NULL, NULL },
};
