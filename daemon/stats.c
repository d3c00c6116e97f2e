/*
 * Per-VM stats and the exposition (see stats.h). A VM's disk is the file
 * its record names plus its own base disk (BACKEND_OWN_BASE_DISK) when that
 * is a private copy rather than a link to an image, counted by allocated
 * blocks (what it really takes on the host), never by apparent size.
 */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cid-alloc.h"
#include "daemon.h"
#include "metrics.h"
#include "platform.h"
#include "stats.h"
#include "vm.h"
#include "vm-agent.h"
#include "vm-internal.h"

/* Allocated bytes of a regular file, not following a symlink; 0 when it
 * is missing or not a regular file. */
static uint64_t
allocated_bytes(const char *path, bool only_private)
{
	struct stat st;

	if (path == NULL || lstat(path, &st) < 0 || !S_ISREG(st.st_mode))
		return 0;
	if (only_private && st.st_nlink > 1)
		return 0;	/* shared with an image: the image's blocks */
	return (uint64_t)st.st_blocks * 512u;
}

void
vm_stats_collect(struct vm *vm, struct vm_stats *st)
{
	struct platform_process_usage use;
	char dir[PATH_MAX], base[PATH_MAX + 32];
	long rss;

	memset(st, 0, sizeof(*st));
	if (vm_status_has_process(vm->rec.status) && vm->rec.pid > 0 &&
	    platform_process_matches(vm->rec.pid, vm->rec.pid_start_time) &&
	    platform_process_usage(vm->rec.pid, &use) == 0) {
		st->process = true;
		st->cpu_seconds = use.cpu_seconds;
		st->uptime_seconds = use.uptime_seconds;
		rss = platform_process_rss_kib(vm->rec.pid);
		st->rss_bytes = rss > 0 ? (uint64_t)rss * 1024u : 0;
	}
	if (vm->backend != NULL && vm->backend->stats != NULL && vm->backend_state != NULL) {
		struct backend_vm_stats bs = { 0 };

		vm->backend->stats(vm->backend, vm->backend_state, &bs);
		st->vsock_counted = bs.vsock_counted;
		st->vsock_bytes_to_guest = bs.vsock_bytes_to_guest;
		st->vsock_bytes_from_guest = bs.vsock_bytes_from_guest;
		st->vsock_connections = bs.vsock_connections;
	}
	vm_dir(vm->daemon, vm->rec.name, dir, sizeof(dir));
	snprintf(base, sizeof(base), "%s/%s", dir, BACKEND_OWN_BASE_DISK);
	st->disk_known = vm->load_error == NULL;
	st->disk_bytes = allocated_bytes(vm->rec.disk_path, false) + allocated_bytes(base, true);
	st->agent = vm_agent_latency_ms(vm, &st->agent_latency_ms);
}

json_t *
vm_stats_to_json(const struct vm *vm, const struct vm_stats *st)
{
	json_t *o = json_pack("{s:s, s:s}", "name", vm->rec.name,
	    "status", vm_status_name(vm->rec.status));

	json_object_set_new(o, "pid", st->process ? json_integer(vm->rec.pid) : json_null());
	json_object_set_new(o, "uptime_s", st->process ? json_real(st->uptime_seconds) : json_null());
	json_object_set_new(o, "cpu_seconds", st->process ? json_real(st->cpu_seconds) : json_null());
	json_object_set_new(o, "rss_bytes", st->process ?
	    json_integer((json_int_t)st->rss_bytes) : json_null());
	json_object_set_new(o, "vsock", !st->vsock_counted ? json_null() :
	    json_pack("{s:I, s:I, s:I}",
	    "bytes_to_guest", (json_int_t)st->vsock_bytes_to_guest,
	    "bytes_from_guest", (json_int_t)st->vsock_bytes_from_guest,
	    "connections", (json_int_t)st->vsock_connections));
	json_object_set_new(o, "disk_allocated_bytes", st->disk_known ?
	    json_integer((json_int_t)st->disk_bytes) : json_null());
	json_object_set_new(o, "agent_latency_ms", st->agent ?
	    json_real(st->agent_latency_ms) : json_null());
	return o;
}

static bool
may_see(uid_t viewer, const struct vm *vm)
{
	return viewer == 0 || vm->rec.owner_uid == viewer;
}

/* One family with a sample per visible VM that has the value. */
enum vm_series { S_CPU, S_RSS, S_UPTIME, S_VSOCK_CONNS, S_DISK, S_AGENT, S_VSOCK_BYTES };

static void
write_vm_family(struct metrics_text *t, struct ember_daemon *d, uid_t viewer,
    const struct vm_stats *all, enum vm_series which, const char *name, const char *type,
    const char *help)
{
	metrics_text_family(t, name, type, help);
	for (size_t i = 0; i < d->nvms; i++) {
		const struct vm *vm = d->vms[i];
		const struct vm_stats *st = &all[i];
		const char *labels[] = { "vm", vm->rec.name, NULL, NULL, NULL };

		if (!may_see(viewer, vm))
			continue;
		switch (which) {
		case S_CPU:
			if (st->process)
				metrics_text_sample(t, name, labels, st->cpu_seconds);
			break;
		case S_RSS:
			if (st->process)
				metrics_text_sample(t, name, labels, (double)st->rss_bytes);
			break;
		case S_UPTIME:
			if (st->process)
				metrics_text_sample(t, name, labels, st->uptime_seconds);
			break;
		case S_VSOCK_CONNS:
			if (st->vsock_counted)
				metrics_text_sample(t, name, labels, (double)st->vsock_connections);
			break;
		case S_DISK:
			if (st->disk_known)
				metrics_text_sample(t, name, labels, (double)st->disk_bytes);
			break;
		case S_AGENT:
			if (st->agent)
				metrics_text_sample(t, name, labels, st->agent_latency_ms / 1000.0);
			break;
		case S_VSOCK_BYTES:
			if (!st->vsock_counted)
				break;
			labels[2] = "direction";
			labels[3] = "to_guest";
			metrics_text_sample(t, name, labels, (double)st->vsock_bytes_to_guest);
			labels[3] = "from_guest";
			metrics_text_sample(t, name, labels, (double)st->vsock_bytes_from_guest);
			break;
		}
	}
}

char *
stats_exposition(struct ember_daemon *d, uid_t viewer, size_t *len)
{
	struct metrics_text t;
	struct vm_stats *all = calloc(d->nvms ? d->nvms : 1, sizeof(*all));
	size_t by_status[VM_STATUS__COUNT] = { 0 }, cids = 0;
	uint64_t range;
	char *out;

	if (all == NULL)
		return NULL;
	for (size_t i = 0; i < d->nvms; i++) {
		uint32_t cid;

		if (!may_see(viewer, d->vms[i]))
			continue;
		vm_stats_collect(d->vms[i], &all[i]);
		by_status[d->vms[i]->rec.status]++;
		if (cid_alloc_lookup(d->cids, d->vms[i]->rec.name, &cid))
			cids++;
	}
	if (viewer == 0)
		cids = cid_alloc_count(d->cids);	/* entries no VM names too */
	metrics_text_init(&t, STATS_EXPOSITION_MAX);
	metrics_text_family(&t, "ember_vms", "gauge", "VMs by status.");
	for (int s = 0; s < VM_STATUS__COUNT; s++) {
		const char *labels[] = { "status", vm_status_name((enum vm_status)s), NULL };
		metrics_text_sample(&t, "ember_vms", labels, (double)by_status[s]);
	}
	metrics_text_family(&t, "ember_vsock_cids_in_use", "gauge", "vsock guest CIDs allocated.");
	metrics_text_sample(&t, "ember_vsock_cids_in_use", NULL, (double)cids);
	if (viewer == 0) {
		range = (uint64_t)cid_alloc_max(d->cids) - cid_alloc_min(d->cids) + 1;
		metrics_text_family(&t, "ember_vsock_cids_free", "gauge",
		    "vsock guest CIDs still free in [cid_min, cid_max].");
		metrics_text_sample(&t, "ember_vsock_cids_free", NULL, (double)(range - cids));
	}
	write_vm_family(&t, d, viewer, all, S_CPU, "ember_vm_cpu_seconds_total", "counter",
	    "CPU time (user and system) of the VM's hypervisor process.");
	write_vm_family(&t, d, viewer, all, S_RSS, "ember_vm_rss_bytes", "gauge",
	    "Resident memory of the VM's hypervisor process.");
	write_vm_family(&t, d, viewer, all, S_UPTIME, "ember_vm_uptime_seconds", "gauge",
	    "How long the VM's hypervisor process has run.");
	write_vm_family(&t, d, viewer, all, S_VSOCK_BYTES, "ember_vm_vsock_bytes_total", "counter",
	    "vsock stream payload bytes through emberd's device, by direction.");
	write_vm_family(&t, d, viewer, all, S_VSOCK_CONNS, "ember_vm_vsock_connections", "gauge",
	    "vsock connections open through emberd's device.");
	write_vm_family(&t, d, viewer, all, S_DISK, "ember_vm_disk_allocated_bytes", "gauge",
	    "Bytes allocated on the host to the VM's own disk files.");
	write_vm_family(&t, d, viewer, all, S_AGENT, "ember_vm_agent_latency_seconds", "gauge",
	    "Round trip of the last ping the VM's agent answered.");
	if (viewer == 0)
		metrics_write_daemon(&t);
	free(all);
	out = metrics_text_take(&t, len);
	return out;
}
