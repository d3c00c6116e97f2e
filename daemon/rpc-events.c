/*
 * events.subscribe: turns the caller's connection into a stream of "event"
 * notifications (events.c). The reply comes first ({seq, oldest, stream});
 * every later line on the connection is a notification. The caller's uid
 * is the filter's: its own VMs' and imports' events, or all for root, and
 * daemon-wide ones. Names and types are checked here, strictly, before
 * the bus sees them.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "daemon.h"
#include "events.h"
#include "rpc.h"
#include "validate.h"

/* Fills f from params; on failure completes the call with -32602. */
static int
filter_from_params(struct rpc_call *call, json_t *params, struct events_filter *f,
    const char **names)
{
	json_t *vms = params != NULL ? json_object_get(params, "vms") : NULL;
	json_t *types = params != NULL ? json_object_get(params, "types") : NULL;
	json_t *v;
	size_t i;

	f->uid = call->uid;
	if (json_is_array(vms)) {
		if (json_array_size(vms) > EVENTS_FILTER_VMS_MAX) {
			rpc_fail_params(call, "vms names at most %d VMs, not %zu",
			    EVENTS_FILTER_VMS_MAX, json_array_size(vms));
			return -1;
		}
		json_array_foreach(vms, i, v) {
			if (!json_is_string(v) || !vm_name_valid(json_string_value(v))) {
				rpc_fail_params(call, "vms[%zu] is not a valid VM name", i);
				return -1;
			}
			names[f->nvms++] = json_string_value(v);
		}
		f->vms = names;
	}
	if (json_is_array(types)) {
		if (json_array_size(types) > EVENT__COUNT) {
			rpc_fail_params(call, "types names at most %d types", EVENT__COUNT);
			return -1;
		}
		json_array_foreach(types, i, v) {
			int t = json_is_string(v) ? event_type_from_name(json_string_value(v)) : -1;
			if (t < 0 || t == EVENT_EVENTS_DROPPED) {
				rpc_fail_params(call, "types[%zu] is not an event type (see "
				    "daemon/API.md: vm.status, vm.exited, agent.ready, ...)", i);
				return -1;
			}
			f->types |= 1u << t;
		}
	}
	return 0;
}

static void
rpc_events_subscribe(struct rpc_call *call, json_t *params)
{
	struct ember_daemon *d = call->daemon;
	struct ember_error err = { 0 };
	struct events_filter f = { 0 };
	const char *names[EVENTS_FILTER_VMS_MAX];
	json_t *since_v = params != NULL ? json_object_get(params, "since") : NULL;
	bool has_since = json_is_integer(since_v);
	long long since = has_since ? (long long)json_integer_value(since_v) : 0;
	uint64_t conn_id = call->conn_id;
	int r;

	if (call->batch != NULL || call->id == NULL) {
		rpc_fail_params(call, "events.subscribe must be a single request with an id "
		    "(not in a batch, not a notification)");
		return;
	}
	if (has_since && since < 0) {
		rpc_fail_params(call, "since must be 0 or more, not %lld", since);
		return;
	}
	if (filter_from_params(call, params, &f, names) < 0)
		return;
	r = events_subscribe(d->events, conn_id, &f, has_since, (uint64_t)since);
	if (r == -ERANGE) {
		ember_error_set(&err, EK_INVALID_STATE,
		    "emberd restarted (its stream id changed): subscribe without since and "
		    "read the VMs' status with vm.list",
		    "since %lld is ahead of this stream's last event (%llu)", since,
		    (unsigned long long)events_last_seq(d->events));
		rpc_fail(call, &err);
		return;
	}
	if (r < 0) {
		ember_error_set(&err, EK_INTERNAL, NULL, "cannot subscribe: %s", strerror(-r));
		rpc_fail(call, &err);
		return;
	}
	/* The reply is queued before the pump (a later loop turn) sends any
	 * event, so it is the stream's first line. */
	control_watch_output(d->control, conn_id);
	rpc_reply(call, json_pack("{s:I, s:I, s:s}",
	    "seq", (json_int_t)events_last_seq(d->events),
	    "oldest", (json_int_t)events_oldest_seq(d->events),
	    "stream", events_stream_id(d->events)));
}

static const struct rpc_param subscribe_params[] = {
	{ "vms", JSON_ARRAY, 0 },
	{ "types", JSON_ARRAY, 0 },
	{ "since", JSON_INTEGER, 0 },
	{ NULL, 0, 0 },
};

const struct rpc_method rpc_events_methods[] = {
	{ "events.subscribe", subscribe_params, 0, NULL, rpc_events_subscribe },
	{ NULL, NULL, 0, NULL, NULL },
};
