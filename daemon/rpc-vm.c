/*
 * vm.* methods: parameter rows for the dispatcher and thin handlers that
 * turn params into vm.c operations. Every lifecycle method answers with the
 * VM record as it stands after the call.
 */
#include <string.h>

#include "daemon.h"
#include "rpc.h"
#include "vm.h"

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

static struct vm *
rpc_find_vm(struct rpc_call *call, const char *name)
{
	struct ember_error err = { 0 };
	struct vm *vm = vm_find(call->daemon, name);

	if (vm == NULL) {
		ember_error_set(&err, EK_NOT_FOUND, "see 'emberctl vm list'",
		    "VM \"%s\" not found", name);
		rpc_fail(call, &err);
	}
	return vm;
}

static void
rpc_vm_create(struct rpc_call *call, json_t *params)
{
	long long cpus = rpc_param_int(params, "cpus", 0);
	long long memory = rpc_param_int(params, "memory_mib", 0);
	long long disk = rpc_param_int(params, "disk_size_mib", 0);
	struct vm_create_args a = {
		.name = rpc_param_str(params, "name", NULL),
		.image = rpc_param_str(params, "image", NULL),
		.kernel = rpc_param_str(params, "kernel", NULL),
		.initrd = rpc_param_str(params, "initrd", NULL),
		.rootfs = rpc_param_str(params, "rootfs", NULL),
		.boot_args = rpc_param_str(params, "boot_args", NULL),
		.backend = rpc_param_str(params, "backend", NULL),
		.network = rpc_param_str(params, "network", NULL),
		.vsock = rpc_param_bool(params, "vsock", false),
		.start = rpc_param_bool(params, "start", true),
		.owner_uid = call->uid,
	};

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
	vm_create(call->daemon, &a, rpc_vm_done, call);
}

static void
rpc_vm_list(struct rpc_call *call, json_t *params)
{
	struct ember_daemon *d = call->daemon;
	json_t *vms = json_array();

	for (size_t i = 0; i < d->nvms; i++)
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

	if (vm != NULL)
		vm_start(vm, rpc_vm_done, call);
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
	{ "start", JSON_TRUE, 0 },
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
	{ "vm.inspect", p_name, 0, NULL, rpc_vm_inspect },
	{ "vm.fork", p_fork, RPC_MUTATES | RPC_ASYNC, "source", rpc_vm_fork },
	{ "vm.start", p_name, RPC_MUTATES | RPC_ASYNC, "name", rpc_vm_start },
	{ "vm.stop", p_stop, RPC_MUTATES | RPC_ASYNC, "name", rpc_vm_stop },
	{ "vm.pause", p_name, RPC_MUTATES | RPC_ASYNC, "name", rpc_vm_pause },
	{ "vm.resume", p_name, RPC_MUTATES | RPC_ASYNC, "name", rpc_vm_resume },
	{ "vm.delete", p_delete, RPC_MUTATES | RPC_ASYNC, "name", rpc_vm_delete },
	{ NULL, NULL, 0, NULL, NULL },
};
