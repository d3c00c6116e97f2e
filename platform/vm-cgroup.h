/*
 * The cgroup hypervisors run in. A guest is a CPU hog (a TCG guest burns
 * its vCPUs' time even idle at boot), and as siblings of emberd's loop in
 * one scheduling group, eight guests on two cores kept the loop waiting
 * 5-7 ms at the 99th percentile of a vm.inspect (bench-control (d)). In a
 * group of their own ("vms", beside emberd) that weighs an eighth of what
 * emberd's threads weigh, the loop runs first when it has work, and is
 * served within a quarter of a millisecond; the guests get the rest.
 *
 * Only the cgroup v1 hierarchy with the cpu controller is used: <own>/vms
 * is made beside emberd. emberd divides only a cgroup it was given: one it
 * is the only process of (a unit's, with Delegate=), never the root cgroup
 * (the host's), never one it shares with a login session or a test suite,
 * never a read-only cgroupfs. On cgroup v2 nothing is grouped yet (the
 * reason says so): there a cgroup with processes cannot enable +cpu for
 * its children, so emberd would first have to move itself into a leaf
 * (<own>/emberd) and keep working when the service manager starts the
 * next emberd in <own>.
 * Hypervisors an older emberd left in emberd's cgroup do not count as
 * sharing it: they are moved into the group (vm_cgroup_adopt).
 * Otherwise hypervisors stay in emberd's cgroup, and vm_cgroup_reason()
 * says why. Children spawned with child_spawn_opts.join_vm_cgroup join
 * the group themselves before exec; adopted VMs are where they were.
 */
#ifndef EMBER_VM_CGROUP_H
#define EMBER_VM_CGROUP_H

#include <stddef.h>
#include <sys/types.h>

/* Finds or makes the group; once, at startup. 0 when hypervisors will be
 * placed in it, -errno otherwise (vm_cgroup_reason says why; emberd runs
 * on without it). */
int vm_cgroup_init(void);
/* Once the VM records are loaded, with the pids of their hypervisors:
 * where vm_cgroup_init found emberd's cgroup shared only with some of
 * them (VMs an older emberd, which did not group them, left there), makes
 * the group and moves them into it (pids[] is reordered: those found
 * there first). 0 when there is a group. */
int vm_cgroup_adopt(pid_t *pids, size_t n);
/* The group's directory (cgroupfs path), or NULL when there is none. */
const char *vm_cgroup_path(void);
/* Why there is no group ("" when there is one). */
const char *vm_cgroup_reason(void);
/* The group's cgroup.procs, open for writing, or -1. */
int vm_cgroup_procs_fd(void);

#endif
