/*
 * The image store: <state>/images/<name>/ holds a kernel (vmlinuz, and
 * optionally an uncompressed vmlinux for Firecracker), an optional initrd
 * and root filesystem, and image.json describing them. Imports copy files
 * (reflink or sparse) or build an ext4 root filesystem from a directory
 * with `mkfs.ext4 -d` (no root, no loop mount) in child processes, in a
 * staging directory renamed into place when complete.
 *
 * An image belongs to the uid that imported it. Root's images are shared:
 * every client may boot them, only root may delete them. Other users'
 * images are private: usable and deletable by their owner (and root) only.
 * Names are one namespace, first come first served, except that the
 * daemon config's default_image is reserved for root.
 *
 * An OCI image (oci = "TRANSPORT:REF", as skopeo takes it) is copied with
 * skopeo into a local OCI layout, unpacked with umoci and built into
 * rootfs.ext4; its manifest digest and the config a workload needs are kept
 * in image.json under "oci". It has no kernel of its own: VMs boot it with
 * the default image's. Importing the digest a name already holds is a no-op.
 */
#ifndef EMBER_IMAGE_H
#define EMBER_IMAGE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <jansson.h>
#include "error.h"
#include "platform.h"

struct ember_daemon;

struct image_import_args {
	const char *name;
	const char *kernel, *vmlinux, *initrd, *rootfs, *rootfs_dir, *boot_args;
	const char *oci;		/* "oci:DIR[:TAG]", "oci-archive:FILE", ... */
	/* docker:// only: plain HTTP or an unverified certificate (skopeo's
	 * tls-verify=false). skopeo reads the source as a non-root caller, so
	 * that is the caller's own business. */
	bool skip_tls_verify;
	uint64_t rootfs_size_mib;	/* 0: fit the directory */
	const struct platform_caller *caller;	/* owner; whose rights read the paths */
};

typedef void (*image_done_fn)(void *ctx, json_t *result, const struct ember_error *err);

void image_import(struct ember_daemon *d, const struct image_import_args *args,
    image_done_fn done, void *ctx);
/* image.json of an image caller may use (new reference), or NULL with
 * not_found: root uses every image, others root's (shared) ones and their
 * own, and another user's image looks like no image at all. */
json_t *image_load(struct ember_daemon *d, const char *name, uid_t caller,
    struct ember_error *err);
/* image_load whoever owns it. */
json_t *image_load_any(struct ember_daemon *d, const char *name, struct ember_error *err);
/* Owner of an image.json (root when it names none). */
uid_t image_doc_owner(json_t *doc);
/* The images caller may use. */
json_t *image_list(struct ember_daemon *d, uid_t caller);
/* Root deletes any image, others their own. Refused while a VM uses it,
 * unless force; a VM keeps its own links to what it boots from, so even a
 * forced delete leaves it bootable. The image leaves the store at once;
 * done gets the image as it was once its removal is durable (until then
 * image_name_deleting holds its name). */
void image_delete(struct ember_daemon *d, const char *name, bool force, uid_t caller,
    image_done_fn done, void *ctx);
/* True while a delete of name is not durable yet: an import of the name
 * waits for it to be answered (refused busy). */
bool image_name_deleting(const char *name);
/* Removes imports a crash interrupted. */
void images_cleanup(struct ember_daemon *d);

#endif
