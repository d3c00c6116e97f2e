/*
 * VMs booted from OCI images (image.h): which kernel boots them, the
 * workload word their kernel command line carries to the guest (oci.h), and
 * the workload's exit status read back from the console when the VM ends.
 */
#ifndef EMBER_VM_WORKLOAD_H
#define EMBER_VM_WORKLOAD_H

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

/* The VM's process ended: records the exit line its guest agent printed
 * last on the console ("EMBER-WORKLOAD-EXIT code=N|signal=N"), or clears
 * the record when there is none. Only VMs with a workload are looked at. */
void vm_workload_collect(struct vm *vm);

#endif
