/*
 * What a VM uses, gathered when asked (vm.stats, metrics.get, the HTTP
 * listener): its hypervisor's CPU time, RSS and uptime from /proc/<pid>
 * (a few small reads), the vsock bytes and connections its backend counts,
 * the disk blocks of its own files (two stats), and its agent's last ping
 * round trip. Nothing here walks a tree or waits, so it runs on the loop.
 * Also the whole Prometheus exposition: VMs by status, CIDs, the per-VM
 * series and metrics.c's daemon series.
 */
#ifndef EMBER_STATS_H
#define EMBER_STATS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <jansson.h>

struct ember_daemon;
struct vm;

struct vm_stats {
	bool process;			/* a hypervisor process was measured */
	double cpu_seconds, uptime_seconds;
	uint64_t rss_bytes;
	bool vsock_counted;		/* the backend counts vsock (emberd's own device) */
	uint64_t vsock_bytes_to_guest, vsock_bytes_from_guest, vsock_connections;
	bool disk_known;
	uint64_t disk_bytes;		/* allocated blocks of the VM's own disk files */
	bool agent;			/* the agent is ready and was pinged */
	double agent_latency_ms;
};

void vm_stats_collect(struct vm *vm, struct vm_stats *st);
/* {"name", "status", "uptime_s", "cpu_seconds", "rss_bytes", "vsock": {...},
 * "disk_allocated_bytes", "agent_latency_ms"}; unknown values are null. */
json_t *vm_stats_to_json(const struct vm *vm, const struct vm_stats *st);

/* The exposition as viewer may see it: root (0) everything; another uid
 * its own VMs only, counted and listed, without the daemon-wide series.
 * NUL-terminated text (caller frees), or NULL when out of memory or past
 * STATS_EXPOSITION_MAX. */
#define STATS_EXPOSITION_MAX (16u << 20)
char *stats_exposition(struct ember_daemon *d, uid_t viewer, size_t *len);

#endif
