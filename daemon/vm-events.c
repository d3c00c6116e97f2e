/*
 * The VM facts sent to the event stream (see vm-events.h): the payloads of
 * vm.*, agent.*, vsock.* and disk.progress events, built in one place so
 * their fields stay the ones daemon/API.md lists.
 */
#include <string.h>
#include <time.h>
#include <sys/wait.h>

#include "child.h"
#include "daemon.h"
#include "events.h"
#include "vm.h"
#include "vm-events.h"

static void
emit(struct vm *vm, enum event_type type, json_t *data)
{
	events_emit(vm->daemon->events, type, vm->rec.name, (int64_t)vm->rec.owner_uid, data);
}

void
vm_events_status(struct vm *vm, unsigned from, enum vm_event ev, const char *reason)
{
	json_t *data = json_pack("{s:s, s:s}", "to", vm_status_name(vm->rec.status),
	    "event", vm_event_name(ev));

	if (data == NULL)
		return;
	json_object_set_new(data, "from", from < VM_STATUS__COUNT ?
	    json_string(vm_status_name((enum vm_status)from)) : json_null());
	if (reason != NULL)
		json_object_set_new(data, "reason", json_string(reason));
	emit(vm, EVENT_VM_STATUS, data);
}

void
vm_events_exited(struct vm *vm, int wait_status, const char *reason)
{
	char text[128];
	json_t *data = json_object();

	if (data == NULL)
		return;
	if (wait_status == -1)
		json_object_set_new(data, "status", json_string("unknown (adopted process)"));
	else {
		child_status_text(wait_status, text, sizeof(text));
		json_object_set_new(data, "status", json_string(text));
		if (WIFEXITED(wait_status))
			json_object_set_new(data, "code", json_integer(WEXITSTATUS(wait_status)));
		else if (WIFSIGNALED(wait_status)) {
			const char *abbrev = sigabbrev_np(WTERMSIG(wait_status));
			json_object_set_new(data, "signal", json_integer(WTERMSIG(wait_status)));
			if (abbrev != NULL)
				json_object_set_new(data, "signal_name", json_string(abbrev));
		}
	}
	if (reason != NULL)
		json_object_set_new(data, "reason", json_string(reason));
	emit(vm, EVENT_VM_EXITED, data);
}

void
vm_events_deleted(struct vm *vm)
{
	emit(vm, EVENT_VM_DELETED, NULL);
}

void
vm_events_agent_ready(struct vm *vm)
{
	emit(vm, EVENT_AGENT_READY, NULL);
}

void
vm_events_agent_lost(struct vm *vm, const char *reason)
{
	emit(vm, EVENT_AGENT_LOST, json_pack("{s:s}", "reason", reason ? reason : "unknown"));
}

void
vm_events_vsock(struct vm *vm, bool opened, uint32_t host_port, uint32_t guest_port,
    size_t open)
{
	struct vm_events_rate *rate = &vm->vsock_events;
	struct timespec now;
	json_t *data;

	clock_gettime(CLOCK_MONOTONIC, &now);
	if (now.tv_sec != rate->second) {
		rate->second = now.tv_sec;
		rate->sent = 0;
	}
	if (rate->sent >= VM_EVENTS_VSOCK_PER_S) {
		rate->suppressed++;
		return;
	}
	rate->sent++;
	data = json_pack("{s:I, s:I, s:I}", "host_port", (json_int_t)host_port,
	    "guest_port", (json_int_t)guest_port, "open", (json_int_t)open);
	if (data != NULL && rate->suppressed > 0)
		json_object_set_new(data, "suppressed", json_integer((json_int_t)rate->suppressed));
	rate->suppressed = 0;
	emit(vm, opened ? EVENT_VSOCK_OPENED : EVENT_VSOCK_CLOSED, data);
}

void
vm_events_disk_progress(struct vm *vm, uint64_t done, uint64_t total)
{
	json_t *data = json_pack("{s:I, s:I}", "done_bytes", (json_int_t)done,
	    "total_bytes", (json_int_t)total);

	if (data != NULL && total > 0)
		json_object_set_new(data, "percent",
		    json_integer((json_int_t)(done >= total ? 100 : done * 100 / total)));
	emit(vm, EVENT_DISK_PROGRESS, data);
}
