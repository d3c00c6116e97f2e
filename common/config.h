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
 *   limits: { max_connections: 1024, max_batch: 128, reply_high_water: 4M }
 *   quotas: { default: { vms: 16, vcpus: 16, memory: 16G, disk: 128G,
 *                        cids: 16, connections: 32 },
 *             users: { alice: { vms: 64 }, "1001": { cids: 0 } } }
 *
 * Errors carry file:line:column like VM specs; a file that fails to parse
 * leaves cfg as it was. `emberd --check-config`
 * is ember_config_load plus a report.
 */
#ifndef EMBER_CONFIG_H
#define EMBER_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <jansson.h>
#include "error.h"

/* What one user other than root may hold (root has no quota). */
struct ember_quota {
	uint64_t vms;		/* VM records, in any state */
	uint64_t vcpus;		/* of VMs with a process (starting to stopping) */
	uint64_t memory_mib;	/* likewise */
	uint64_t disk_mib;	/* images' files plus VMs' root disks (see quota.c) */
	uint64_t cids;		/* vsock VMs */
	uint64_t connections;	/* control connections open at once */
};

#define QUOTA_DEFAULT_VMS		16
#define QUOTA_DEFAULT_VCPUS		16
#define QUOTA_DEFAULT_MEMORY_MIB	(16 * 1024)
#define QUOTA_DEFAULT_DISK_MIB		(128 * 1024)
#define QUOTA_DEFAULT_CIDS		16
#define QUOTA_DEFAULT_CONNECTIONS	32
#define CONFIG_MAX_BATCH_DEFAULT	128
#define CONFIG_MAX_BATCH_MAX		100000
#define CONFIG_QUOTA_USERS_MAX		1024

/* A quotas.users entry: keys it does not give come from quotas.default. */
struct ember_user_quota {
	uid_t uid;
	struct ember_quota quota;
};

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
	/* limits: bounds on what one control connection may cause. */
	unsigned max_connections;	/* 0: the transport's default */
	unsigned max_batch;		/* requests in one batch */
	uint64_t reply_high_water;	/* bytes; 0: the transport's default */
	/* quotas: */
	struct ember_quota quota_default;
	struct ember_user_quota *quota_users;	/* heap array */
	size_t nquota_users;
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
/* The quota that applies to uid; NULL for root (no quota). */
const struct ember_quota *ember_config_quota(const struct ember_config *cfg,
    uid_t uid);
/* Precedence for vm.create: params given by the client win; absent image,
 * cpus, memory_mib and backend come from the config (itself the file over
 * the built-in defaults). 0 or -ENOMEM. */
int ember_config_fill_params(const struct ember_config *cfg, json_t *params);

#endif
