/*
 * daemon.* and vsock.* methods: what emberd is and what it holds. A caller
 * other than root is told only about its own VMs (counts and CIDs
 * included), as everywhere in the API.
 */
#include <unistd.h>

#include "cid-alloc.h"
#include "daemon.h"
#include "quota.h"
#include "rpc.h"
#include "upgrade.h"
#include "vm.h"
#include "vm-cgroup.h"

/* How many VMs, and vsock CIDs held by VMs, the caller may see. */
static void
count_visible(const struct rpc_call *call, size_t *vms, size_t *cids)
{
	struct ember_daemon *d = call->daemon;

	*vms = *cids = 0;
	for (size_t i = 0; i < d->nvms; i++) {
		uint32_t cid;
		if (!rpc_may_see(call, d->vms[i]))
			continue;
		(*vms)++;
		if (cid_alloc_lookup(d->cids, d->vms[i]->rec.name, &cid))
			(*cids)++;
	}
}

static void
rpc_daemon_info(struct rpc_call *call, json_t *params)
{
	struct ember_daemon *d = call->daemon;
	json_t *backends = json_array();
	size_t nvms = d->nvms, ncids = cid_alloc_count(d->cids);

	for (size_t i = 0; i < d->nbackends; i++) {
		const struct backend_info *info = &d->backend_info[i];
		json_t *b;

		if (d->backends[i] == NULL)
			continue;
		b = json_pack("{s:s, s:b}", "name", d->backends[i]->name,
		    "available", info->available);
		if (info->available)
			json_object_set_new(b, "version", json_string(info->version));
		if (info->binary[0])
			json_object_set_new(b, "binary", json_string(info->binary));
		if (!info->available)
			json_object_set_new(b, "reason", json_string(info->reason));
		if (info->available && info->note[0])
			json_object_set_new(b, "note", json_string(info->note));
		json_array_append_new(backends, b);
	}
	if (call->uid != 0)
		count_visible(call, &nvms, &ncids);
	rpc_reply(call, json_pack("{s:s, s:i, s:i, s:s, s:s, s:I, s:I, s:o, s:o, s:o}",
	    "version", EMBER_VERSION, "api_version", 1, "pid", (int)getpid(),
	    "state_dir", d->state_dir, "socket", d->socket_path,
	    "vms", (json_int_t)nvms, "cids_in_use", (json_int_t)ncids,
	    "backends", backends, "quota", quota_to_json(d, call->uid),
	    "vm_cgroup", vm_cgroup_path() != NULL ?
	    json_pack("{s:s}", "path", vm_cgroup_path()) :
	    json_pack("{s:n, s:s}", "path", "reason", vm_cgroup_reason())));
}

/* A user's quota and use: its own for anyone, any user's for root. */
static void
rpc_quota_get(struct rpc_call *call, json_t *params)
{
	struct ember_error err = { 0 };
	long long uid = rpc_param_int(params, "uid", (long long)call->uid);

	if (uid < 0 || uid > 0xfffffffeLL) {
		rpc_fail_params(call, "uid must be 0 to 4294967294, not %lld", uid);
		return;
	}
	if (call->uid != 0 && (uid_t)uid != call->uid) {
		ember_error_set(&err, EK_PERMISSION_DENIED, "leave out uid to see your own",
		    "only root may see the quota of another user (uid %lld)", uid);
		rpc_fail(call, &err);
		return;
	}
	rpc_reply(call, quota_to_json(call->daemon, (uid_t)uid));
}

static const struct rpc_param quota_get_params[] = {
	{ "uid", JSON_INTEGER, 0 },
	{ NULL, 0, 0 },
};

static void
rpc_vsock_allocations(struct rpc_call *call, json_t *params)
{
	struct ember_daemon *d = call->daemon;
	json_t *doc = cid_alloc_to_json(d->cids);
	json_t *all = json_object_get(doc, "allocations"), *mine = json_object(), *v;
	const char *cid;

	json_object_foreach(all, cid, v) {
		struct vm *vm = vm_find(d, json_string_value(v));
		/* Root sees every entry, even one no listed VM names. */
		if (call->uid == 0 || (vm != NULL && rpc_may_see(call, vm)))
			json_object_set(mine, cid, v);
	}
	json_decref(doc);
	rpc_reply(call, json_pack("{s:I, s:I, s:I, s:o}",
	    "cid_min", (json_int_t)cid_alloc_min(d->cids),
	    "cid_max", (json_int_t)cid_alloc_max(d->cids),
	    "count", (json_int_t)json_object_size(mine),
	    "allocations", mine));
}

/* Re-executes emberd in place (upgrade.c); the reply goes out first. */
static void
rpc_daemon_upgrade(struct rpc_call *call, json_t *params)
{
	struct ember_error err = { 0 };

	if (call->uid != 0) {
		ember_error_set(&err, EK_PERMISSION_DENIED, "run it as root",
		    "only root may upgrade emberd");
		rpc_fail(call, &err);
		return;
	}
	if (daemon_upgrade_schedule(call->daemon, &err) < 0) {
		rpc_fail(call, &err);
		return;
	}
	rpc_reply(call, json_pack("{s:i}", "pid", (int)getpid()));
}

const struct rpc_method rpc_daemon_methods[] = {
	{ "daemon.upgrade", NULL, RPC_MUTATES, NULL, rpc_daemon_upgrade },
	{ "daemon.info", NULL, 0, NULL, rpc_daemon_info },
	{ "vsock.allocations", NULL, 0, NULL, rpc_vsock_allocations },
	{ "quota.get", quota_get_params, 0, NULL, rpc_quota_get },
	{ NULL, NULL, 0, NULL, NULL },
};
