/*
 * The lifecycle table (see vm-lifecycle.h). A cell holds the status an
 * event leads to, stored plus one so that an empty cell (0) means "not a
 * transition": those are refused with an error naming the pair.
 */
#include <stdio.h>

#include "vm-lifecycle.h"

#define TO(status)	((unsigned char)((status) + 1))
/* VM_EV_LOAD: the status the record names, whatever it is. */
#define TO_RECORDED	((unsigned char)(VM_STATUS__COUNT + 1))

static const unsigned char lifecycle[VM_STATUS__COUNT + 1][VM_EV__COUNT] = {
	[VM_LIFECYCLE_NEW] = {
		[VM_EV_CREATE] = TO(VM_CREATED),
		[VM_EV_LOAD] = TO_RECORDED,
		[VM_EV_LOAD_UNREADABLE] = TO(VM_FAILED),
	},
	[VM_CREATED] = {
		[VM_EV_START] = TO(VM_STARTING),
	},
	[VM_STARTING] = {
		[VM_EV_STARTED] = TO(VM_RUNNING),
		[VM_EV_START_FAILED] = TO(VM_FAILED),
		[VM_EV_EXITED] = TO(VM_STOPPED),
		[VM_EV_CRASHED] = TO(VM_FAILED),
		[VM_EV_ADOPTED] = TO(VM_RUNNING),
		[VM_EV_ADOPT_FAILED] = TO(VM_FAILED),
	},
	[VM_RUNNING] = {
		[VM_EV_PAUSED] = TO(VM_PAUSED),
		[VM_EV_STOP] = TO(VM_STOPPING),
		[VM_EV_GUEST_SHUTDOWN] = TO(VM_STOPPING),
		[VM_EV_EXITED] = TO(VM_STOPPED),
		[VM_EV_CRASHED] = TO(VM_FAILED),
		[VM_EV_ADOPTED] = TO(VM_RUNNING),
		[VM_EV_ADOPT_FAILED] = TO(VM_FAILED),
	},
	[VM_PAUSED] = {
		[VM_EV_RESUMED] = TO(VM_RUNNING),
		[VM_EV_STOP] = TO(VM_STOPPING),
		[VM_EV_GUEST_SHUTDOWN] = TO(VM_STOPPING),
		[VM_EV_EXITED] = TO(VM_STOPPED),
		[VM_EV_CRASHED] = TO(VM_FAILED),
		[VM_EV_ADOPTED] = TO(VM_PAUSED),
		[VM_EV_ADOPT_FAILED] = TO(VM_FAILED),
	},
	[VM_STOPPING] = {
		[VM_EV_STOPPED] = TO(VM_STOPPED),
		[VM_EV_STOP_FAILED] = TO(VM_RUNNING),
		[VM_EV_STOP_FAILED_PAUSED] = TO(VM_PAUSED),
		[VM_EV_EXITED] = TO(VM_STOPPED),
		[VM_EV_CRASHED] = TO(VM_FAILED),
		[VM_EV_ADOPTED] = TO(VM_RUNNING),
		[VM_EV_ADOPT_FAILED] = TO(VM_FAILED),
	},
	[VM_STOPPED] = {
		[VM_EV_START] = TO(VM_STARTING),
	},
	[VM_FAILED] = {
		[VM_EV_START] = TO(VM_STARTING),
	},
};

static const char *const event_names[VM_EV__COUNT] = {
	[VM_EV_CREATE] = "create",
	[VM_EV_LOAD] = "load",
	[VM_EV_LOAD_UNREADABLE] = "load (unreadable)",
	[VM_EV_START] = "start",
	[VM_EV_STARTED] = "started",
	[VM_EV_START_FAILED] = "start failed",
	[VM_EV_PAUSED] = "paused",
	[VM_EV_RESUMED] = "resumed",
	[VM_EV_STOP] = "stop",
	[VM_EV_GUEST_SHUTDOWN] = "guest shutdown",
	[VM_EV_STOPPED] = "stopped",
	[VM_EV_STOP_FAILED] = "stop failed",
	[VM_EV_STOP_FAILED_PAUSED] = "stop failed (paused)",
	[VM_EV_EXITED] = "process exited",
	[VM_EV_CRASHED] = "process failed",
	[VM_EV_ADOPTED] = "adopted",
	[VM_EV_ADOPT_FAILED] = "adoption failed",
};

static const char *const op_names[] = {
	[VM_OP_NONE] = "none",
	[VM_OP_START] = "start",
	[VM_OP_STOP] = "stop",
	[VM_OP_PAUSE] = "pause",
	[VM_OP_RESUME] = "resume",
	[VM_OP_DELETE] = "delete",
	[VM_OP_CREATE] = "create",
};

const char *
vm_event_name(enum vm_event ev)
{
	return (unsigned)ev < VM_EV__COUNT ? event_names[ev] : "unknown event";
}

const char *
vm_op_name(enum vm_op_kind kind)
{
	return (unsigned)kind < sizeof(op_names) / sizeof(op_names[0]) ? op_names[kind] :
	    "unknown operation";
}

int
vm_lifecycle_next(unsigned from, enum vm_event ev, enum vm_status recorded,
    enum vm_status *to, struct ember_error *err)
{
	unsigned char cell = 0;

	if (from <= VM_LIFECYCLE_NEW && (unsigned)ev < VM_EV__COUNT)
		cell = lifecycle[from][ev];
	if (cell == TO_RECORDED && (unsigned)recorded < VM_STATUS__COUNT) {
		*to = recorded;
		return 0;
	}
	if (cell != 0 && cell != TO_RECORDED) {
		*to = (enum vm_status)(cell - 1);
		return 0;
	}
	return ember_error_set(err, EK_INVALID_STATE, NULL,
	    "no lifecycle transition for \"%s\" from %s", vm_event_name(ev),
	    from == VM_LIFECYCLE_NEW ? "a new VM" :
	    from < VM_STATUS__COUNT ? vm_status_name((enum vm_status)from) : "an unknown status");
}

bool
vm_status_has_process(enum vm_status status)
{
	switch (status) {
	case VM_STARTING:
	case VM_RUNNING:
	case VM_PAUSED:
	case VM_STOPPING:
		return true;
	default:
		return false;
	}
}

int
vm_lifecycle_event_for_report(enum vm_status status)
{
	switch (status) {
	case VM_PAUSED:
		return VM_EV_PAUSED;
	case VM_RUNNING:
		return VM_EV_RESUMED;
	case VM_STOPPING:
		return VM_EV_GUEST_SHUTDOWN;
	default:
		return -1;
	}
}
