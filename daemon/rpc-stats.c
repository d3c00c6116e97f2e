/*
 * vm.stats and metrics.get: what VMs use and emberd's own measurements
 * (stats.c gathers both). Like every method they show a caller other than
 * root its own VMs only; metrics.get leaves the daemon-wide series (RPC,
 * durable writes, event-loop lag, free CIDs) to root.
 */
#include <stdlib.h>

#include "daemon.h"
#include "rpc.h"
#include "stats.h"
#include "vm.h"

static void
rpc_vm_stats(struct rpc_call *call, json_t *params)
{
	struct ember_daemon *d = call->daemon;
	const char *name = rpc_param_str(params, "name", NULL);
	json_t *vms = json_array();
	struct vm_stats st;

	if (name != NULL) {
		struct vm *vm = vm_find(d, name);

		if (vm == NULL || !rpc_may_see(call, vm)) {
			json_decref(vms);
			rpc_fail_vm_not_found(call, name);
			return;
		}
		vm_stats_collect(vm, &st);
		json_array_append_new(vms, vm_stats_to_json(vm, &st));
	} else {
		for (size_t i = 0; i < d->nvms; i++) {
			if (!rpc_may_see(call, d->vms[i]))
				continue;
			vm_stats_collect(d->vms[i], &st);
			json_array_append_new(vms, vm_stats_to_json(d->vms[i], &st));
		}
	}
	rpc_reply(call, json_pack("{s:o}", "vms", vms));
}

static void
rpc_metrics_get(struct rpc_call *call, json_t *params)
{
	struct ember_error err = { 0 };
	size_t len;
	char *text = stats_exposition(call->daemon, call->uid, &len);

	if (text == NULL) {
		ember_error_set(&err, EK_INTERNAL, NULL,
		    "the metrics text could not be built (out of memory or past %u bytes)",
		    STATS_EXPOSITION_MAX);
		rpc_fail(call, &err);
		return;
	}
	rpc_reply(call, json_pack("{s:s%}", "text", text, len));
	free(text);
}

static const struct rpc_param p_stats[] = {
	{ "name", JSON_STRING, 0 },
	{ NULL, 0, 0 },
};

const struct rpc_method rpc_stats_methods[] = {
	{ "vm.stats", p_stats, 0, "name", rpc_vm_stats },
	{ "metrics.get", NULL, 0, NULL, rpc_metrics_get },
	{ NULL, NULL, 0, NULL, NULL },
};
