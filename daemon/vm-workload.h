/*
 * VMs booted from OCI images (image.h): which kernel boots them, the
 * workload word their kernel command line carries to the guest (oci.h), and
 * the workload's exit status: from its agent over vsock, or read back from
 * the console when the VM ends without the agent having reported it.
 */
#ifndef EMBER_VM_WORKLOAD_H
#define EMBER_VM_WORKLOAD_H

#include <stdbool.h>
#include <jansson.h>
#include "error.h"

struct ember_daemon;
struct vm;
struct vm_create_args;

/*
 * For an OCI image, replaces *image_doc with a copy that boots: kernel,
 * vmlinux and initrd from the daemon's default_image (root's) unless the
 * caller gives a kernel, that image's boot_args, and *workload_word set to
 * the "ember.workload=..." word (malloc'd) for the image's config with the
 * caller's overrides. Any other image is left alone (*workload_word NULL).
 * 0, or -1 with err.
 */
int vm_workload_prepare(struct ember_daemon *d, const struct vm_create_args *a,
    json_t **image_doc, char **workload_word, struct ember_error *err);

/* "ARGS WORD" (malloc'd), or a copy of args when word is NULL. */
char *vm_workload_boot_args(const char *args, const char *word);

/* Whether the VM boots an OCI workload (its boot args carry one). */
bool vm_workload_has(const struct vm *vm);

/* A boot begins (before the start transition saves the record): the last
 * boot's workload_exit is cleared and the console's current end noted. */
void vm_workload_boot_begins(struct vm *vm);

/* The agent reported this boot's workload end (what is "code" or
 * "signal"; boot_id the guest's): recorded with source "agent" and
 * saved. 0, or -1 with err when the values are out of range. */
int vm_workload_record_agent(struct vm *vm, const char *what, json_int_t value,
    const char *boot_id, struct ember_error *err);

/* The VM's process ended: unless the agent reported the workload's end
 * this boot, falls back to the exit line the guest printed last on the
 * console this boot ("EMBER-WORKLOAD-EXIT code=N|signal=N", source
 * "console"). Only VMs with a workload are looked at. */
void vm_workload_collect(struct vm *vm);

#endif
