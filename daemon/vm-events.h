/*
 * What a VM's life sends to the event stream (events.h): one function per
 * kind of fact, called from the one place that decides it (the lifecycle
 * step in vm.c, the hypervisor's exit, the agent's state, the vsock
 * device, a disk copy). Each names the VM and its owner so subscribers
 * only see their own.
 */
#ifndef EMBER_VM_EVENTS_H
#define EMBER_VM_EVENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include "vm-lifecycle.h"

struct vm;

/* vsock.opened/closed a VM may send per second: a guest opening and
 * closing connections in a loop must not flush everybody's events out of
 * the ring. Those over it are counted and reported as "suppressed" in the
 * VM's next vsock event. */
#define VM_EVENTS_VSOCK_PER_S	20

struct vm_events_rate {
	time_t second;		/* CLOCK_MONOTONIC second being counted */
	unsigned sent;		/* events sent in it */
	unsigned long suppressed;	/* not sent since the last one that was */
};

/* vm.status: from (a status, or VM_LIFECYCLE_NEW) to the VM's status now. */
void vm_events_status(struct vm *vm, unsigned from, enum vm_event ev, const char *reason);
/* vm.exited: wait_status as from waitpid, -1 when unknown (adopted). */
void vm_events_exited(struct vm *vm, int wait_status, const char *reason);
void vm_events_deleted(struct vm *vm);
void vm_events_agent_ready(struct vm *vm);
void vm_events_agent_lost(struct vm *vm, const char *reason);
/* vsock.opened / vsock.closed, with the VM's open connections after it. */
void vm_events_vsock(struct vm *vm, bool opened, uint32_t host_port, uint32_t guest_port,
    size_t open);
/* disk.progress of the VM's disk copy; throttled by the caller. */
void vm_events_disk_progress(struct vm *vm, uint64_t done, uint64_t total);

#endif
