/*
 * The daemon configuration file (YAML), e.g. /etc/ember/emberd.yaml:
 *
 *   state_dir: /var/lib/ember        socket: /run/ember/emberd.sock
 *   socket_group: ember              log_level: info
 *   cid_min: 3                       cid_max: 4294967294
 *   default_image: mini
 *   firecracker: { binary: /usr/bin/firecracker, kvm_device: /dev/kvm,
 *                  require_kvm: true }
 *   qemu: { binary: qemu-system-x86_64, accel: auto }
 *   defaults: { cpus: 1, memory: 512M, backend: auto }
 *   vsock: { vm_to_vm: true }
 *
 * Errors carry file:line:column like VM specs; a file that fails to parse
 * leaves cfg as it was. `emberd --check-config`
 * is ember_config_load plus a report.
 */
#ifndef EMBER_CONFIG_H
#define EMBER_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>
#include "error.h"

/* Strings are heap copies or the built-in "auto"; only ember_config_clear
 * and ember_config_parse may replace them. */
struct ember_config {
	char *state_dir;	/* NULL: built-in default */
	char *socket;		/* NULL: built-in default */
	char *socket_group;	/* NULL: the daemon's group */
	int log_level;		/* enum log_level, -1 when unset */
	uint32_t cid_min, cid_max;
	char *default_image;
	char *firecracker_binary;	/* NULL: search PATH */
	char *firecracker_kvm_device;	/* NULL: /dev/kvm */
	/* false only for test doubles: the probe skips the KVM check. */
	bool firecracker_require_kvm;
	char *qemu_binary;		/* NULL: search PATH */
	char *qemu_accel;		/* "auto", "kvm", "tcg" */
	unsigned default_cpus;
	uint64_t default_memory_mib;
	char *default_backend;		/* "auto", "qemu", "firecracker" */
	bool vsock_vm_to_vm;
};

/* Built-in defaults (everything NULL/unset except numbers and "auto"). */
void ember_config_init(struct ember_config *cfg);
void ember_config_clear(struct ember_config *cfg);
/* Parses text over the current contents of cfg. 0 or -1 with EK_INVALID_SPEC
 * and "file:line:column: reason". */
int ember_config_parse(const char *text, size_t len, const char *filename,
    struct ember_config *cfg, struct ember_error *err);
int ember_config_load(const char *path, struct ember_config *cfg,
    struct ember_error *err);
/* Precedence for vm.create: params given by the client win; absent image,
 * cpus, memory_mib and backend come from the config (itself the file over
 * the built-in defaults). 0 or -ENOMEM. */
int ember_config_fill_params(const struct ember_config *cfg, json_t *params);

#endif
