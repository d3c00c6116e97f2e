/*
 * What vm.c (registry and lifecycle) and vm-store.c (state on disk and the
 * startup repair) share; not for the rest of the daemon, which uses vm.h.
 */
#ifndef EMBER_VM_INTERNAL_H
#define EMBER_VM_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include "durable.h"
#include "error.h"
#include "vm.h"

struct backend;

/* "<state>/vms/<name>" */
void vm_dir(const struct ember_daemon *d, const char *name, char *buf, size_t len);
/* Lets the VM's owner (alone) into its directory: sticky, plus an ACL
 * entry; logs when the filesystem keeps no ACLs. */
void vm_dir_share(struct ember_daemon *d, const char *name, uid_t owner);
/* Queues vm.json's atomic replacement with the record as it is now (never
 * over a record that could not be read) and sets vm->durable_seq. */
int vm_save(struct vm *vm, struct ember_error *err);
/* vm_save, then done(ctx, 0 or -errno) on the loop once vm.json is durable. */
int vm_save_then(struct vm *vm, durable_done_fn done, void *ctx, struct ember_error *err);
/* Queues the sync of <state>/vms (a VM directory was made there). */
int vms_dir_sync(struct ember_daemon *d, struct ember_error *err);
/* The writes queued between plug and unplug go to disk in one batch
 * (durable_plug). */
void vm_store_plug(struct ember_daemon *d);
void vm_store_unplug(struct ember_daemon *d);
/* The sequence number of the last state write queued (durable.h). */
uint64_t vm_store_last_seq(const struct ember_daemon *d);
/* done(ctx, 0) once every state write up to seq is durable. */
int vm_store_wait(struct ember_daemon *d, uint64_t seq, durable_done_fn done, void *ctx,
    struct ember_error *err);
/* Finishes the queued state writes (their callbacks too) and stops the
 * writer; vms_detach_all calls it before freeing anything they name. */
void vm_store_close(struct ember_daemon *d);
struct vm *vm_new(struct ember_daemon *d);
void vm_free(struct vm *vm);
/* The owners a table (cids.json, allocations.json) names that no VM has,
 * collected while the table is walked and released after it. */
struct vm_orphans {
	struct ember_daemon *d;
	char **names;
	size_t n;
	bool nomem;	/* one could not be kept: the caller fails */
};
/* Keeps owner when no VM has that name; true when kept. */
bool vm_orphans_add(struct vm_orphans *o, const char *owner);
void vm_orphans_free(struct vm_orphans *o);
/* Lists vm in name order. */
void vm_list_insert(struct ember_daemon *d, struct vm *vm);
/* starting, running, paused or stopping: a hypervisor process exists. */
bool vm_has_process(const struct vm *vm);
/* The one place a status changes: the event's transition from the VM's
 * status (see vm-lifecycle.h), then log, persist, notify. An event the
 * table does not allow changes nothing and returns -1 with err. */
int vm_transition(struct vm *vm, enum vm_event ev, const char *reason,
    struct ember_error *err);
/* Applies ev to the status alone (no log, no write): a new VM's first
 * status, before its vm.json exists or when it was just read. */
int vm_lifecycle_enter(struct vm *vm, enum vm_event ev, const char *reason,
    struct ember_error *err);
/* vm_transition for events that cannot be refused by construction; a
 * refusal is logged as the bug it is. */
void vm_transition_logged(struct vm *vm, enum vm_event ev, const char *reason);
/* The backend called name ("auto" picks), or NULL with backend_unavailable. */
struct backend *vm_resolve_backend(struct ember_daemon *d, const char *name,
    struct ember_error *err);

#endif
