/*
 * Per-user quotas: what a user other than root may hold, from the daemon
 * config's quotas section (config.h). VMs, CIDs, vCPUs, memory and
 * connections are counted from the registry; disk from a tally of image
 * sizes (measured once at the first check, then kept up to date by
 * quota_image_stored/_deleted) and of VM disk sizes (measured once per VM),
 * so a check never walks the image store. Checks run before anything is
 * allocated and refuse with quota_exceeded, naming the limit, the use,
 * what was asked for and the maximum. A check for work that takes a while
 * (an import, a create or fork copying files) also returns a hold: what
 * was asked for counts as used until the hold is released, which the work
 * does when it fails or when what it made is counted by itself (the VM
 * listed, the image stored).
 */
#ifndef EMBER_QUOTA_H
#define EMBER_QUOTA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <jansson.h>
#include "error.h"

struct ember_daemon;
struct vm;
struct vm_create_args;

struct quota_use {
	uint64_t vms, vcpus, memory_mib, disk_mib, cids, connections;
};

/* What work in flight holds (quota_check_create, _fork, _import). */
struct quota_hold;

/* What uid holds now. */
void quota_use_of(struct ember_daemon *d, uid_t uid, struct quota_use *use);
/* Refuses when uid's use plus more passes a limit (root always passes).
 * 0, or -1 with EK_QUOTA_EXCEEDED. */
int quota_check(struct ember_daemon *d, uid_t uid, const struct quota_use *more,
    struct ember_error *err);
/* vm.create: one VM, its CID, its disk, and its vCPUs and memory when it
 * starts at once. image_doc is the image it boots (may be NULL). On
 * success *hold holds all that until quota_release. */
int quota_check_create(struct ember_daemon *d, const struct vm_create_args *a,
    unsigned cpus, uint64_t memory_mib, json_t *image_doc, struct quota_hold **hold,
    struct ember_error *err);
/* vm.fork of src into a VM owned by uid; *hold as for create. */
int quota_check_fork(struct ember_daemon *d, struct vm *src, uid_t uid,
    bool vsock, bool start, struct quota_hold **hold, struct ember_error *err);
/* vm.start: the VM's vCPUs and memory join its owner's running total. */
int quota_check_start(struct vm *vm, struct ember_error *err);
/* image.import: the open files it copies plus a root filesystem of
 * rootfs_mib it builds (0 when sized later to fit a directory); *hold as
 * for create. */
int quota_check_import(struct ember_daemon *d, uid_t uid, const int *fds, size_t nfds,
    uint64_t rootfs_mib, struct quota_hold **hold, struct ember_error *err);
/* Ends a hold (NULL: no-op). */
void quota_release(struct quota_hold *hold);
/* images/<name> was stored (measured now) or deleted. */
void quota_image_stored(struct ember_daemon *d, const char *name);
void quota_image_deleted(struct ember_daemon *d, const char *name);
/* Frees d's tally (daemon teardown; the next check measures again). */
void quota_forget(struct ember_daemon *d);
/* Connections uid may hold (control.h user_connection_limit; 0: none). */
size_t quota_connection_limit(struct ember_daemon *d, uid_t uid);
/* {"uid", "limited", "use": {...}, "max": {...} (absent for root)}. */
json_t *quota_to_json(struct ember_daemon *d, uid_t uid);

#endif
