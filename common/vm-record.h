/*
 * The VM record as stored in <state>/vms/<name>/vm.json and returned by the
 * API. Field names follow the original ember where they exist. The record is
 * plain data; the daemon's state machine is the only writer of status.
 */
#ifndef EMBER_VM_RECORD_H
#define EMBER_VM_RECORD_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <jansson.h>

#define VM_RECORD_VERSION 1

enum vm_status {
	VM_CREATED,
	VM_STARTING,
	VM_RUNNING,
	VM_PAUSED,
	VM_STOPPING,
	VM_STOPPED,
	VM_FAILED,
	VM_STATUS__COUNT
};

const char *vm_status_name(enum vm_status status);
/* 0 or -EINVAL. */
int vm_status_parse(const char *name, enum vm_status *status);

struct vm_record {
	char name[64];
	char id[37];		/* UUID v4 */
	enum vm_status status;
	char *reason;		/* why failed/stopped, or NULL */
	char *backend;		/* "qemu", "firecracker" */
	char *image;
	unsigned cpus;
	uint64_t memory_mib;
	uint64_t disk_size_mib;	/* root disk size asked for; 0: the image's */
	char *kernel_path;
	char *initrd_path;
	char *disk_path;
	char *boot_args;
	char *network;		/* "none" or "user" */
	pid_t pid;		/* 0 when no process */
	uint64_t pid_start_time;	/* /proc/<pid>/stat field 22, 0 when none */
	char created_at[32];	/* RFC 3339 UTC */
	char *parent_vm;
	uid_t owner_uid;
	bool vsock;
	uint32_t guest_cid;	/* valid when vsock */
	char *uds_path;		/* valid when vsock */
	/* An OCI image's workload, as its guest reported it when the VM
	 * last ended: "workload_exit": {"code": N} or {"signal": N}. */
	enum { WORKLOAD_EXIT_NONE, WORKLOAD_EXIT_CODE, WORKLOAD_EXIT_SIGNAL } workload_exit;
	int workload_exit_value;
};

void vm_record_init(struct vm_record *rec);
/* Frees the strings; leaves rec initialised. */
void vm_record_clear(struct vm_record *rec);
/* Deep copy; 0 or -ENOMEM. */
int vm_record_copy(struct vm_record *dst, const struct vm_record *src);
/* Replaces *field with a copy of value (NULL allowed). 0 or -ENOMEM. */
int vm_record_set_str(char **field, const char *value);

/* New JSON object; "vsock" omitted when off, null strings omitted. */
json_t *vm_record_to_json(const struct vm_record *rec);
/* Fills rec from JSON. Unknown keys are ignored (newer versions), wrong
 * types are errors. 0 or -EINVAL with a reason in errbuf. */
int vm_record_from_json(struct vm_record *rec, const json_t *json,
    char *errbuf, size_t errlen);

/* Fresh UUID v4 string (from getrandom). 0 or -errno. */
int uuid_generate_v4(char out[37]);
/* Current time as RFC 3339 UTC ("2026-11-29T05:58:49Z"). */
void rfc3339_now(char out[32]);

#endif
