/*
 * The image store: <state>/images/<name>/ holds a kernel (vmlinuz, and
 * optionally an uncompressed vmlinux for Firecracker), an optional initrd
 * and root filesystem, and image.json describing them. Imports copy files
 * (reflink or sparse) or build an ext4 root filesystem from a directory
 * with `mkfs.ext4 -d` (no root, no loop mount) in child processes, in a
 * staging directory renamed into place when complete.
 */
#ifndef EMBER_IMAGE_H
#define EMBER_IMAGE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <jansson.h>
#include "error.h"

struct ember_daemon;

struct image_import_args {
	const char *name;
	const char *kernel, *vmlinux, *initrd, *rootfs, *rootfs_dir, *boot_args;
	uint64_t rootfs_size_mib;	/* 0: fit the directory */
	uid_t owner_uid;
};

typedef void (*image_done_fn)(void *ctx, json_t *result, const struct ember_error *err);

void image_import(struct ember_daemon *d, const struct image_import_args *args,
    image_done_fn done, void *ctx);
/* image.json of an image (new reference) or NULL with not_found. */
json_t *image_load(struct ember_daemon *d, const char *name, struct ember_error *err);
json_t *image_list(struct ember_daemon *d);
/* Refused while a VM uses it, unless force. */
int image_delete(struct ember_daemon *d, const char *name, bool force, uid_t caller,
    json_t **last, struct ember_error *err);
/* Removes imports a crash interrupted. */
void images_cleanup(struct ember_daemon *d);

#endif
