/*
 * VM specs from YAML (`emberctl vm create NAME -f spec.yaml`). Keys: image,
 * kernel, initrd, rootfs, cpus, memory ("512M"), disk_size, boot_args, vsock,
 * backend, network (none, user, nat), publish (a list of
 * "[HOSTADDR:]HOSTPORT:GUESTPORT[/tcp|/udp]"). Unknown keys, wrong types and bad sizes are errors
 * that carry file:line:column. Built on yaml-doc.h.
 */
#ifndef EMBER_SPEC_H
#define EMBER_SPEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "error.h"

#define VM_SPEC_CPUS_MIN	1
#define VM_SPEC_CPUS_MAX	64
#define VM_SPEC_MEMORY_MIB_MIN	16
#define VM_SPEC_MEMORY_MIB_MAX	(1024 * 1024)	/* 1T, as vm.create */

struct vm_spec {
	char *image, *kernel, *initrd, *rootfs, *boot_args, *backend, *network;
	unsigned cpus;		bool has_cpus;
	uint64_t memory_mib;	bool has_memory;
	uint64_t disk_size;	bool has_disk_size;	/* bytes */
	bool vsock;		bool has_vsock;
	json_t *publish;	/* array of strings, NULL: not given */
};

void vm_spec_clear(struct vm_spec *spec);
/* Parses YAML text; filename is only used in messages. 0 or -1 with
 * EK_INVALID_SPEC and a message starting "file:line:column: ". On success
 * *spec is replaced (its old strings freed); on failure it is untouched. */
int vm_spec_parse(const char *text, size_t len, const char *filename,
    struct vm_spec *spec, struct ember_error *err);
int vm_spec_load(const char *path, struct vm_spec *spec, struct ember_error *err);
/* Precedence: fields present in src (command-line flags) replace those in
 * dst (the spec file). 0 or -ENOMEM. */
int vm_spec_merge(struct vm_spec *dst, const struct vm_spec *src);
/* vm.create params for the fields present (memory -> memory_mib,
 * disk_size -> disk_size_mib); new reference. */
json_t *vm_spec_to_params(const struct vm_spec *spec);

#endif
