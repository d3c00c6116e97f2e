/*
 * VMs as emberd holds them: the registry (sorted by name), the lifecycle
 * (whose table is vm-lifecycle.c), durable state (vm.json and cids.json) and
 * the repair pass at startup. Every status change is an event through
 * vm_transition(), which checks it against the table, logs, persists and
 * notifies. Stop (release the process and its resources) and remove
 * (unlist, delete state, free) are separate steps.
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
#include "vm-lifecycle.h"
#include "vm-events.h"

struct ember_daemon;
struct backend;
struct vm_agent;
struct agent_call;
struct event;
struct vm_netstate;

struct vm {
	struct vm_record rec;
	struct ember_daemon *daemon;
	struct backend *backend;	/* resolved at first start */
	void *backend_state;		/* the backend's, while a process runs */
	bool has_status;		/* false until its first lifecycle event */
	struct vm_op op;		/* the operation in flight (kind VM_OP_NONE: none) */
	struct vm_create_op *creating;	/* listed, its create not durable yet (vm.c) */
	char *load_error;		/* vm.json could not be read */
	struct vm_agent *agent;		/* vm-agent.c's, NULL until needed */
	struct event *stop_timer;	/* stop: the agent's time is up */
	struct vm *reap_next;		/* removed, waiting to be freed (vm.c) */
	struct agent_call *stop_call;
	struct vm_events_rate vsock_events;	/* vm-events.c's bound on vsock.* */
	struct vm_netstate *net;	/* vm-network.c's, while its network is up */
	uint64_t durable_seq;		/* its last state write (vm-store.c, durable.h) */
	uint64_t quota_disk_mib;	/* quota.c's measure of its disk, 0 until taken */
};

struct vm_create_args {
	const char *name;
	const char *image, *kernel, *initrd, *rootfs, *boot_args, *backend, *network;
	unsigned cpus;			/* 0: default */
	uint64_t memory_mib;		/* 0: default */
	uint64_t disk_size_mib;		/* 0: image size */
	json_t *publish;		/* network "nat": array of strings, or NULL */
	bool vsock;
	bool start;
	uid_t owner_uid;
	/* Whose rights open kernel, initrd and rootfs (NULL: trusted, used
	 * as given). A non-root caller's files are copied into the VM's
	 * directory in the background; an image's are hard-linked there. */
	const struct platform_caller *caller;
	/* An OCI image's workload overrides (vm-workload.h); NULL: the image's. */
	json_t *command, *env;		/* arrays of strings (env "K=V") */
	const char *workdir, *user;
};

/* Loads <state>/vms and <state>/vsock/cids.json and repairs them. */
int vms_load(struct ember_daemon *d, struct ember_error *err);
/* Starts the periodic chores (keeping running VMs' consoles bounded). */
void vms_housekeeping_start(struct ember_daemon *d);
/* Daemon shutdown: answers every client waiting on a VM (operations,
 * agent waits, exec and cp, creates still copying) with an error saying
 * emberd is stopping. Operations already handed to a backend run on
 * without a client; the VMs are left as they are, to be adopted again. */
void vms_fail_pending(struct ember_daemon *d);
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
