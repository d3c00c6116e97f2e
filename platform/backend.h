/*
 * The one interface hypervisor backends implement, and the registry that
 * lists them. emberd owns the VM records and the state machine; a backend
 * owns the hypervisor process and its control channel (Firecracker's HTTP
 * API, QEMU's QMP) and runs entirely on the daemon's event base. The daemon
 * and common/ never spell a backend's name: they walk backend_types(), one
 * row per backend (name, probe, "auto" priority, needs, config subtree,
 * constructor). Adding a backend is a new file under platform/<os>/ and one
 * row in that OS's registry (platform/linux/backends.c).
 *
 * Every operation gets the VM record (read/write for pid, paths; status and
 * reason are the daemon's) and an opaque per-VM pointer the backend owns
 * (*vmstate), created by start/adopt and freed by release.
 *
 * Contracts every backend honours:
 *  - Never block the event loop. Anything slow (disk copies, qemu-img,
 *    probes that exec the hypervisor) runs in a child process or is
 *    asynchronous, and completes through a callback on the loop.
 *  - An asynchronous operation (create, fork, start, stop, pause, resume)
 *    either returns -1 with err set and never calls done, or returns 0 and
 *    calls done exactly once, later, from the loop (never from within the
 *    call). After calling done or host->exited for a VM the backend touches
 *    neither the record nor vm_ctx again until the daemon calls it anew.
 *  - The daemon has at most one of start, stop, pause, resume in flight per
 *    VM and waits for its done before the next; a backend refuses a second
 *    one with EK_BUSY rather than dropping the first one's done.
 *  - A VM with rec->vsock serves Firecracker-style hybrid vsock at
 *    rec->uds_path: host→guest "CONNECT <port>\n" answered "OK <n>\n", and
 *    guest→host connections to <uds_path>_<port>. daemon/agent-client.c
 *    dials it; VM-to-VM goes through host->vsock_peer.
 *  - The hypervisor's console and messages go to <vm_dir>/console.log
 *    through the fd console_open() (child.h) gives; nothing else is opened
 *    by name in vm_dir, which the VM's owner may write in.
 *  - The process's pid and start time are stored in the record; adopt
 *    reattaches only when both match (platform_process_matches).
 *  - Resource exhaustion (EMFILE, ENOMEM, fork failing) fails the
 *    operation with a clear error; it never ends the daemon.
 */
#ifndef EMBER_BACKEND_H
#define EMBER_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "error.h"
#include "vm-record.h"

struct event_base;
struct ember_config;
struct ydoc_key;

/* A VM's root disk base kept in its own directory (a link to the image's,
 * or a copy of a non-root caller's file): a fork gets its own link, and a
 * backend's fork points the child's disk at that rather than the source's,
 * so deleting the source or the image leaves every VM whole. */
#define BACKEND_OWN_BASE_DISK "rootfs.base"

/* Rows in the registry, at most (config.h's bound). */
#define BACKENDS_MAX 8

/* What the daemon tells a backend about a VM outside any call. */
struct backend_host {
	/* The hypervisor process exited; wait_status as from waitpid. The
	 * backend has already released its sockets; the daemon decides the
	 * new status. */
	void (*exited)(void *vm_ctx, int wait_status, const char *reason);
	/* The hypervisor changed state by itself (guest paused, resumed,
	 * began shutting down). */
	void (*status)(void *vm_ctx, enum vm_status status, const char *reason);
	/* VM to VM vsock: the hybrid socket of the VM holding cid, if the
	 * guest of vm_ctx may reach it. 0, or -ENOENT. */
	int (*vsock_peer)(void *vm_ctx, uint64_t cid, char *path, size_t len);
	/* A disk copy made progress (bytes done of total), at most every
	 * 250 ms and once at its end. NULL: nobody is told. */
	void (*disk_progress)(void *vm_ctx, uint64_t done, uint64_t total);
	/* A vsock connection through emberd's device got its ports (opened)
	 * or went away; open is how many the VM has now. NULL: not told. */
	void (*vsock_flow)(void *vm_ctx, bool opened, uint32_t host_port, uint32_t guest_port,
	    size_t open);
};

/* Completion of an asynchronous operation: err is NULL on success. */
typedef void (*backend_done_fn)(void *vm_ctx, const struct ember_error *err);

struct backend_env {
	struct event_base *base;
	/* The daemon's configuration; a backend reads its own subtree with
	 * ember_config_backend_string/_bool under its name, at use time (a
	 * SIGHUP reload changes it in place). */
	const struct ember_config *config;
	const char *state_dir;
	const struct backend_host *host;
};

struct backend_info {
	bool available;
	char version[128];	/* "Firecracker v1.16.1", "QEMU emulator version 7.2.22" */
	char binary[256];	/* resolved path */
	char helper[256];	/* a second tool the backend runs (qemu-img), or "" */
	char reason[256];	/* why unavailable */
	char note[128];		/* when available: a caveat ("KVM not checked") */
};

/* What a backend needs from what a VM boots. */
#define BACKEND_NEEDS_VMLINUX	0x1	/* an uncompressed kernel (an image's "vmlinux") */

struct backend;

/* What a backend counts for a running VM beyond its process (vm.stats). */
struct backend_vm_stats {
	bool vsock_counted;	/* the backend serves vsock itself and counts it */
	uint64_t vsock_bytes_to_guest, vsock_bytes_from_guest;
	uint64_t vsock_connections;
};

/* One registry row. */
struct backend_type {
	const char *name;	/* the record's backend, the config subtree's key */
	/* "auto" tries the available backends from the highest priority
	 * down; 0 never chosen by "auto". */
	int auto_priority;
	unsigned needs;		/* BACKEND_NEEDS_* */
	/* The keys of the backend's own config subtree (<name>: {...}), whose
	 * setters validate and store through ember_config_backend_set; NULL
	 * when it has none. */
	const struct ydoc_key *config_keys;
	/* Whether the hypervisor can run (binary found and runnable, /dev/kvm,
	 * ...), from the configuration alone. It may block (it runs
	 * `binary --version`), so the daemon runs it in a child process
	 * once the loop is serving; it must touch nothing but info. */
	void (*probe)(const struct ember_config *cfg, struct backend_info *info);
	/* Returns a backend even when its hypervisor is missing; NULL only
	 * when out of memory. */
	struct backend *(*create)(const struct backend_env *env);
};

/* The registry: this OS's backend types. */
const struct backend_type *const *backend_types(size_t *n);
/* Tells the configuration layer which backends exist and their subtrees'
 * keys; call once before any configuration is parsed. 0 or -errno. */
int backend_types_register_config(void);

struct backend {
	const char *name;	/* type->name */
	const struct backend_type *type;
	/* What the last probe found, kept current by the daemon: the binary
	 * to run is info->binary. */
	const struct backend_info *info;
	void *priv;

	/* Refuses, before anything is allocated or spawned, a record the
	 * hypervisor would refuse (limits, kernel command line). Optional;
	 * synchronous and quick. */
	int (*check)(struct backend *be, const struct vm_record *rec,
	    struct ember_error *err);
	/* Prepares a new VM's files (root disk overlay or copy) in vm_dir, in
	 * the background; done(vm_ctx, err) when they are in place. May update
	 * rec->disk_path before calling done. Returns 1, without calling done,
	 * when there is nothing to prepare; it must when rec (a fork: the
	 * source) has no disk_path, which emberd relies on to list such a VM
	 * before its directory exists (the writer thread makes it). Optional. */
	int (*create)(struct backend *be, struct vm_record *rec, const char *vm_dir,
	    void *vm_ctx, backend_done_fn done, struct ember_error *err);
	/* Prepares a fork's disk in vm_dir from the stopped source, in the
	 * background, like create (1: nothing to do). source must stay
	 * unchanged until done. Optional. */
	int (*fork)(struct backend *be, const struct vm_record *source,
	    struct vm_record *child, const char *vm_dir, void *vm_ctx,
	    backend_done_fn done, struct ember_error *err);
	/* Boots the VM; done() once it runs or failed (rolled back). */
	int (*start)(struct backend *be, struct vm_record *rec, const char *vm_dir,
	    void **vmstate, void *vm_ctx, backend_done_fn done, struct ember_error *err);
	/* Asks the guest to shut down and waits timeout_s (not when it is
	 * paused: it could not act), then asks the hypervisor to quit and
	 * waits a short grace, then SIGKILL; force kills at once. done once
	 * the process is gone. */
	int (*stop)(struct backend *be, struct vm_record *rec, void *vmstate,
	    bool force, unsigned timeout_s, backend_done_fn done, struct ember_error *err);
	int (*pause)(struct backend *be, struct vm_record *rec, void *vmstate,
	    backend_done_fn done, struct ember_error *err);
	int (*resume)(struct backend *be, struct vm_record *rec, void *vmstate,
	    backend_done_fn done, struct ember_error *err);
	/* Re-attaches to a VM that was running before emberd restarted. 0 when
	 * adopted (vmstate set); -1 with err when the process is gone. */
	int (*adopt)(struct backend *be, struct vm_record *rec, const char *vm_dir,
	    void **vmstate, void *vm_ctx, struct ember_error *err);
	/* Drops the backend's per-VM state (no process left, or daemon exit
	 * without touching the VM when detach is true). */
	void (*release)(struct backend *be, void *vmstate, bool detach);
	/* Removes backend files of a stopped VM (sockets, disks) before the
	 * daemon removes the directory. */
	int (*remove)(struct backend *be, struct vm_record *rec, const char *vm_dir,
	    struct ember_error *err);
	/* Fills st for a VM whose process runs (vmstate); synchronous and
	 * cheap (it runs on the loop for every vm.stats). Optional. */
	void (*stats)(struct backend *be, void *vmstate, struct backend_vm_stats *st);
	void (*free)(struct backend *be);
};

#endif
