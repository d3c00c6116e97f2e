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

/* A published port: host_addr:host_port on the host reaches guest_port on
 * the guest (network "nat"). */
#define VM_PUBLISH_MAX 16
/* "ember.net=ADDR/30,GATEWAY,DNS1,DNS2,DNS3" with IPv6 DNS servers at most. */
#define VM_NET_KERNEL_ARG_MAX 200
struct vm_publish {
	uint32_t host_addr;	/* IPv4, host byte order; 0: every address */
	uint16_t host_port, guest_port;
	bool udp;
};

/* A "nat" VM's network. subnet is held from create to delete; tap names
 * the TAP while one exists (a process runs), "" otherwise. */
struct vm_net {
	uint32_t subnet;	/* its /30 (host byte order), 0: none */
	char tap[16];
	char mac[18];		/* "02:eb:0a:64:00:02" */
	struct vm_publish publish[VM_PUBLISH_MAX];
	size_t npublish;
	/* While it starts (not stored): the TAP's fd for a backend that takes
	 * one (-1: none; the daemon closes it once start returns), and
	 * "ember.net=..." for the kernel command line ("" : none). */
	int tap_fd;
	char kernel_arg[VM_NET_KERNEL_ARG_MAX + 1];
};

/* "[HOSTADDR:]HOSTPORT:GUESTPORT[/tcp|/udp]" (ports 1..65535, HOSTADDR a
 * dotted IPv4 address). 0 or -EINVAL. */
int vm_publish_parse(const char *s, struct vm_publish *p);
/* {"host_addr": "0.0.0.0", "host_port": N, "guest_port": N, "proto": "tcp"}. */
json_t *vm_publish_to_json(const struct vm_publish *p);
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
	char *network;		/* "none", "user" or "nat" */
	struct vm_net net;	/* network "nat": what emberd set up for it */
	pid_t pid;		/* 0 when no process */
	uint64_t pid_start_time;	/* /proc/<pid>/stat field 22, 0 when none */
	char created_at[32];	/* RFC 3339 UTC */
	char *parent_vm;
	uid_t owner_uid;
	bool vsock;
	uint32_t guest_cid;	/* valid when vsock */
	char *uds_path;		/* valid when vsock */
	/* An OCI image's workload, as its guest reported it when the VM
	 * last ended: "workload_exit": {"code": N} or {"signal": N}, with
	 * "source" (its agent, or the console: a fallback the workload itself
	 * could have printed) and the guest's "boot_id" (agent only). Cleared
	 * when the VM starts; workload_console_from is where console.log
	 * ended then (the fallback reads only this boot's lines). */
	enum { WORKLOAD_EXIT_NONE, WORKLOAD_EXIT_CODE, WORKLOAD_EXIT_SIGNAL } workload_exit;
	int workload_exit_value;
	enum { WORKLOAD_SOURCE_UNKNOWN, WORKLOAD_SOURCE_AGENT, WORKLOAD_SOURCE_CONSOLE }
	    workload_exit_source;
	char workload_exit_boot_id[37];
	uint64_t workload_console_from;
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
 * types are errors. 0, -EINVAL with a reason in errbuf, or -ENOMEM (the
 * record may be valid: do not call it invalid). */
int vm_record_from_json(struct vm_record *rec, const json_t *json,
    char *errbuf, size_t errlen);

/* Fresh UUID v4 string (from getrandom). 0 or -errno. */
int uuid_generate_v4(char out[37]);
/* Current time as RFC 3339 UTC ("2026-11-29T05:58:49Z"). */
void rfc3339_now(char out[32]);

#endif
