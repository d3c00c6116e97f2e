/*
 * The one interface hypervisor backends implement. emberd owns the VM
 * records and the state machine; a backend owns the hypervisor process and
 * its control channel (Firecracker's HTTP API, QEMU's QMP) and runs entirely
 * on the daemon's event base. Long operations complete through a callback;
 * process exits and hypervisor events are reported through backend_host.
 *
 * Every operation gets the VM record (read/write for pid, paths, status
 * reason is the daemon's) and an opaque per-VM pointer the backend owns
 * (*vmstate), created by start/adopt and freed by release.
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

/* A VM's root disk base kept in its own directory (a link to the image's,
 * or a copy of a non-root caller's file): a fork gets its own link, and a
 * backend's fork points the child's disk at that rather than the source's,
 * so deleting the source or the image leaves every VM whole. */
#define BACKEND_OWN_BASE_DISK "rootfs.base"

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
};

/* Completion of an asynchronous operation: err is NULL on success. */
typedef void (*backend_done_fn)(void *vm_ctx, const struct ember_error *err);

struct backend_env {
	struct event_base *base;
	const struct ember_config *config;
	const char *state_dir;
	const struct backend_host *host;
};

struct backend_info {
	bool available;
	char version[128];	/* "Firecracker v1.16.1", "QEMU emulator version 7.2.22" */
	char binary[256];	/* resolved path */
	char reason[256];	/* why unavailable */
	char note[128];		/* when available: a caveat ("KVM not checked") */
};

struct backend {
	const char *name;	/* "qemu", "firecracker" */
	void *priv;

	/* Refreshes availability (binary found and runnable, /dev/kvm, ...). */
	void (*probe)(struct backend *be, struct backend_info *info);
	/* Refuses, before anything is allocated or spawned, a record the
	 * hypervisor would refuse (limits, kernel command line). Optional. */
	int (*check)(struct backend *be, const struct vm_record *rec,
	    struct ember_error *err);
	/* Prepares a new VM's files (root disk overlay, ...) in vm_dir.
	 * Synchronous and quick. */
	int (*create)(struct backend *be, struct vm_record *rec,
	    const char *vm_dir, struct ember_error *err);
	/* Prepares a fork's disk in vm_dir from the stopped source. */
	int (*fork)(struct backend *be, const struct vm_record *source,
	    struct vm_record *child, const char *vm_dir, struct ember_error *err);
	/* Boots the VM; done() once it runs or failed (rolled back). */
	int (*start)(struct backend *be, struct vm_record *rec, const char *vm_dir,
	    void **vmstate, void *vm_ctx, backend_done_fn done, struct ember_error *err);
	/* Graceful stop within timeout_s, then harder; force kills at once. */
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
	void (*free)(struct backend *be);
};

/* Constructors; each returns a backend even when its hypervisor is missing
 * (probe says why). */
struct backend *backend_qemu_new(const struct backend_env *env);
struct backend *backend_firecracker_new(const struct backend_env *env);

#endif
