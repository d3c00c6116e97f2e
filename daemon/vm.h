/*
 * VMs as emberd holds them: the registry (sorted by name), the lifecycle
 * state machine, durable state (vm.json and cids.json) and the repair pass
 * at startup. Every status change goes through vm_transition(), which logs,
 * persists and notifies. Stop (release the process and its resources) and
 * remove (unlist, delete state, free) are separate steps.
 */
#ifndef EMBER_VM_H
#define EMBER_VM_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <jansson.h>
#include "error.h"
#include "backend.h"
#include "platform.h"
#include "vm-record.h"

struct ember_daemon;
struct backend;
struct vm_agent;
struct agent_call;
struct event;

enum vm_op { VM_OP_NONE, VM_OP_START, VM_OP_STOP, VM_OP_PAUSE, VM_OP_RESUME, VM_OP_DELETE };

/* Completion of an operation: vm is NULL when it no longer exists
 * (create rolled back); result is the record after the call (new ref) or
 * NULL with err set. */
typedef void (*vm_done_fn)(void *ctx, json_t *result, const struct ember_error *err);

struct vm {
	struct vm_record rec;
	struct ember_daemon *daemon;
	struct backend *backend;	/* resolved at first start */
	void *backend_state;		/* the backend's, while a process runs */
	enum vm_op op;			/* operation in progress */
	vm_done_fn op_done;
	void *op_ctx;
	bool op_remove_after;		/* delete after the current stop */
	bool rollback_on_failure;	/* create+start: remove the VM if start fails */
	char *load_error;		/* vm.json could not be read */
	struct vm_agent *agent;		/* vm-agent.c's, NULL until needed */
	bool stop_via_agent;		/* the current stop asked the agent first */
	unsigned stop_timeout_s;
	struct event *stop_timer;
	struct agent_call *stop_call;
};

struct vm_create_args {
	const char *name;
	const char *image, *kernel, *initrd, *rootfs, *boot_args, *backend, *network;
	unsigned cpus;			/* 0: default */
	uint64_t memory_mib;		/* 0: default */
	uint64_t disk_size_mib;		/* 0: image size */
	bool vsock;
	bool start;
	uid_t owner_uid;
	/* Whose rights open kernel, initrd and rootfs (NULL: trusted, used
	 * as given). A non-root caller's files are copied into the VM's
	 * directory in the background; an image's are hard-linked there. */
	const struct platform_caller *caller;
};

/* Loads <state>/vms and <state>/vsock/cids.json and repairs them. */
int vms_load(struct ember_daemon *d, struct ember_error *err);
/* Starts the periodic chores (keeping running VMs' consoles bounded). */
void vms_housekeeping_start(struct ember_daemon *d);
/* Releases backends' per-VM state without touching the VMs (daemon exit). */
void vms_detach_all(struct ember_daemon *d);

struct vm *vm_find(struct ember_daemon *d, const char *name);
/* New reference to the record as the API shows it. */
json_t *vm_to_json(const struct vm *vm);

void vm_create(struct ember_daemon *d, const struct vm_create_args *args,
    vm_done_fn done, void *ctx);
void vm_fork(struct ember_daemon *d, struct vm *source, const char *name,
    int vsock /* -1: as source */, bool start, uid_t owner_uid,
    vm_done_fn done, void *ctx);
void vm_start(struct vm *vm, vm_done_fn done, void *ctx);
void vm_stop(struct vm *vm, bool force, unsigned timeout_s, vm_done_fn done, void *ctx);
void vm_pause(struct vm *vm, vm_done_fn done, void *ctx);
void vm_resume(struct vm *vm, vm_done_fn done, void *ctx);
void vm_delete(struct vm *vm, bool force, vm_done_fn done, void *ctx);

/* The callbacks backends use to report on VMs (vm_ctx is the struct vm). */
extern const struct backend_host vm_backend_host;

/* Writes vsock/cids.json. */
int cids_save(struct ember_daemon *d, struct ember_error *err);

#endif
