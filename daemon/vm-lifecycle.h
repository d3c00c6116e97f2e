/*
 * The VM lifecycle as one table: which event moves a VM from which status
 * to which. Every status change in emberd — a new VM, a record loaded at
 * startup, a re-adopted process, an operation's steps, what a backend
 * reports by itself — is one of these events, and vm_lifecycle_next()
 * refuses a pair the table does not list rather than guess. struct vm_op
 * is the one operation in flight on a VM (at most one at a time).
 */
#ifndef EMBER_VM_LIFECYCLE_H
#define EMBER_VM_LIFECYCLE_H

#include <stdbool.h>
#include <time.h>
#include <jansson.h>
#include "error.h"
#include "vm-record.h"

/* The row of a VM that has no status yet (being created or loaded). */
#define VM_LIFECYCLE_NEW VM_STATUS__COUNT

enum vm_event {
	VM_EV_CREATE,		/* new -> created */
	VM_EV_LOAD,		/* new -> the status its vm.json records */
	VM_EV_LOAD_UNREADABLE,	/* new -> failed (vm.json cannot be read) */
	VM_EV_START,		/* created, stopped, failed -> starting */
	VM_EV_STARTED,		/* starting -> running */
	VM_EV_START_FAILED,	/* starting -> failed */
	VM_EV_PAUSED,		/* running -> paused (asked, or the hypervisor did) */
	VM_EV_RESUMED,		/* paused -> running */
	VM_EV_STOP,		/* running, paused -> stopping */
	VM_EV_GUEST_SHUTDOWN,	/* running, paused -> stopping (the guest began it) */
	VM_EV_STOPPED,		/* stopping -> stopped */
	VM_EV_STOP_FAILED,	/* stopping -> running (the process is still there) */
	VM_EV_STOP_FAILED_PAUSED, /* stopping -> paused (it was paused before) */
	VM_EV_EXITED,		/* a process state -> stopped (exit status 0) */
	VM_EV_CRASHED,		/* a process state -> failed */
	VM_EV_ADOPTED,		/* starting, running, stopping -> running; paused -> paused */
	VM_EV_ADOPT_FAILED,	/* a process state -> failed (its process is gone) */
	VM_EV__COUNT
};

/* The operations a client can have in flight on a VM. */
enum vm_op_kind {
	VM_OP_NONE, VM_OP_START, VM_OP_STOP, VM_OP_PAUSE, VM_OP_RESUME, VM_OP_DELETE,
	VM_OP_CREATE		/* listed, its record not yet durable (vm.c) */
};

/* Completion of an operation: result is the record after the call (new
 * ref) or NULL with err set. */
typedef void (*vm_done_fn)(void *ctx, json_t *result, const struct ember_error *err);

/* The operation in flight on a VM, and everything that only lives as long
 * as it does. done is NULL once the client was answered early (daemon
 * shutdown): the operation still runs to its end, silently. */
struct vm_op {
	enum vm_op_kind kind;
	vm_done_fn done;
	void *ctx;
	enum vm_status prior;		/* status when it began (a failed stop returns there) */
	bool remove_after;		/* delete once stopped (vm.delete with force) */
	bool rollback_on_failure;	/* create+start: remove the VM if start fails */
	bool via_agent;			/* stop: the agent was asked to power off */
	bool resuming;			/* stop of a paused VM: resuming it first */
	bool force;			/* stop: kill at once */
	struct timespec deadline;	/* stop: CLOCK_MONOTONIC end of the graceful part */
};

const char *vm_event_name(enum vm_event ev);
const char *vm_op_name(enum vm_op_kind kind);

/* The status event ev leads to from `from` (a status, or VM_LIFECYCLE_NEW).
 * recorded is the status a loaded vm.json names (VM_EV_LOAD only). 0, or
 * -1 with err (invalid_state) when the table has no such transition. */
int vm_lifecycle_next(unsigned from, enum vm_event ev, enum vm_status recorded,
    enum vm_status *to, struct ember_error *err);

/* True for the statuses in which a hypervisor process exists (starting,
 * running, paused, stopping): what runs, and what counts as running. */
bool vm_status_has_process(enum vm_status status);

/* The event a backend's unprompted report of `status` means, or -1. */
int vm_lifecycle_event_for_report(enum vm_status status);

#endif
