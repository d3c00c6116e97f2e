/*
 * The hypervisors' cgroup (see vm-cgroup.h). emberd's place in the cpu
 * controller's hierarchy comes from /proc/self/cgroup, the hierarchy's
 * mount from /proc/self/mountinfo; nothing is taken from a client. The
 * group is made once at startup and kept (a running VM may be in it
 * across emberd's restarts); only its cgroup.procs stays open, and each
 * spawned hypervisor writes "0" (itself) into it before exec.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "fsutil.h"
#include "log.h"
#include "platform.h"
#include "vm-cgroup.h"

#define VMS_GROUP "vms"
/* The group's cpu.shares against emberd's threads, whose cgroup has the
 * default 1024: on contention emberd runs first, and the guests get the
 * rest. emberd cannot take more than its few busy threads (one loop, one
 * writer, one worker) however often it runs first. Measured with 8 TCG
 * guests booting on 2 cores (bench-control (d), vm.inspect p99): 1024
 * gave 1.0-1.6 ms, 256 gave 0.5-0.8 ms, 128 gives 0.23-0.25 ms, and the
 * guests booted within 10% of the time they took at 1024. */
#define VMS_CPU_SHARES "128\n"

static char group_path[PATH_MAX];
static char no_group_reason[256] = "not set up";
static int group_procs_fd = -1;

/* Whether the comma-separated list holds word. */
static bool
list_has(const char *list, size_t len, const char *word)
{
	size_t wlen = strlen(word);

	for (const char *p = list, *end = list + len; p < end;) {
		const char *comma = memchr(p, ',', (size_t)(end - p));
		size_t n = comma != NULL ? (size_t)(comma - p) : (size_t)(end - p);

		if (n == wlen && memcmp(p, word, n) == 0)
			return true;
		p += n + 1;
	}
	return false;
}

/* emberd's cgroup in the v1 hierarchy that has the cpu controller
 * ("N:cpu,cpuacct:/path"). 0, or -ENOENT when there is no such line. */
static int
own_cpu_cgroup_v1(char *path, size_t len)
{
	FILE *f = fopen("/proc/self/cgroup", "re");
	char line[PATH_MAX + 64];
	int r = -ENOENT;

	if (f == NULL)
		return -errno;
	while (r == -ENOENT && fgets(line, sizeof(line), f) != NULL) {
		char *c1 = strchr(line, ':'), *c2 = c1 != NULL ? strchr(c1 + 1, ':') : NULL;
		size_t n;

		if (c2 == NULL || !list_has(c1 + 1, (size_t)(c2 - c1 - 1), "cpu"))
			continue;
		n = strcspn(c2 + 1, "\n");
		if (n == 0 || n >= len)
			r = -ENAMETOOLONG;
		else {
			memcpy(path, c2 + 1, n);
			path[n] = '\0';
			r = 0;
		}
	}
	fclose(f);
	return r;
}

/* The mount of the v1 cgroup hierarchy with cpu: its mount point and the
 * hierarchy path mounted there ("/" unless a container mounted a subtree).
 * 0, or -ENOENT. Mount points with escaped characters are not used. */
static int
cpu_mount_v1(char *mnt, size_t mlen, char *root, size_t rlen)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char line[2 * PATH_MAX];
	int r = -ENOENT;

	if (f == NULL)
		return -errno;
	while (r == -ENOENT && fgets(line, sizeof(line), f) != NULL) {
		char *field[6], *save = NULL, *dash, *fstype, *opts;
		int i = 0;

		if ((dash = strstr(line, " - ")) == NULL)
			continue;
		*dash = '\0';
		fstype = strtok_r(dash + 3, " \n", &save);
		(void)strtok_r(NULL, " \n", &save);	/* source */
		opts = strtok_r(NULL, " \n", &save);
		if (fstype == NULL || opts == NULL || strcmp(fstype, "cgroup") != 0 ||
		    !list_has(opts, strlen(opts), "cpu"))
			continue;
		save = NULL;
		for (char *t = strtok_r(line, " ", &save); t != NULL && i < 6;
		    t = strtok_r(NULL, " ", &save))
			field[i++] = t;
		if (i < 5 || strchr(field[3], '\\') != NULL || strchr(field[4], '\\') != NULL)
			continue;
		if (strlen(field[4]) >= mlen || strlen(field[3]) >= rlen)
			continue;
		strcpy(mnt, field[4]);
		strcpy(root, field[3]);
		r = 0;
	}
	fclose(f);
	return r;
}

/* Records why there is no group: what, and for r other than the refusals
 * (-ENOTSUP, -EPERM), the system's word for it. */
static int
no_group(int r, const char *what, const char *path)
{
	snprintf(no_group_reason, sizeof(no_group_reason), "%s%s%s%s%s", what,
	    path != NULL ? " " : "", path != NULL ? path : "",
	    r != -ENOTSUP && r != -EPERM ? ": " : "",
	    r != -ENOTSUP && r != -EPERM ? strerror(-r) : "");
	group_path[0] = '\0';
	return r;
}

/* Whether pid is a child of emberd's (a probe, a helper it runs). */
static bool
child_of_ours(long pid)
{
	pid_t ppid;
	int r = platform_process_parent((pid_t)pid, &ppid);

	if (r == -ESRCH)
		return true;	/* gone: it keeps nobody out */
	return r == 0 && ppid == getpid();
}

/* Whether emberd is the only process in the cgroup directory dir, apart
 * from its own children and the hypervisors in allowed[] (those of its VM
 * records); in a login
 * session's or the test suite's cgroup it is not, and dividing that one
 * would leave a group behind in someone else's tree. The allowed ones
 * found there are moved to the front of allowed[], their count in *found. */
static bool
alone_in(const char *dir, pid_t *allowed, size_t nallowed, size_t *found)
{
	char path[PATH_MAX], line[32];
	FILE *f;
	bool alone = true;

	*found = 0;
	if ((size_t)snprintf(path, sizeof(path), "%s/cgroup.procs", dir) >= sizeof(path) ||
	    (f = fopen(path, "re")) == NULL)
		return false;
	while (alone && fgets(line, sizeof(line), f) != NULL) {
		long pid = strtol(line, NULL, 10);
		size_t i;

		if (pid == (long)getpid())
			continue;
		for (i = *found; i < nallowed && (long)allowed[i] != pid; i++)
			;
		if (i == nallowed) {
			alone = child_of_ours(pid);
			continue;
		}
		allowed[i] = allowed[*found];
		allowed[(*found)++] = (pid_t)pid;
	}
	fclose(f);
	return alone;
}

/* vm_cgroup_init and vm_cgroup_adopt: finds emberd's cgroup, and makes
 * the group where emberd is alone there but for allowed[], which are then
 * moved into it. */
static int
set_up(pid_t *allowed, size_t nallowed)
{
	char own[PATH_MAX], mnt[PATH_MAX], root[PATH_MAX], procs[PATH_MAX], shares[PATH_MAX];
	const char *rel;
	size_t rootlen, found;
	char buf[32];
	int r, n;

	if (group_procs_fd >= 0)
		return 0;
	if (own_cpu_cgroup_v1(own, sizeof(own)) < 0 ||
	    cpu_mount_v1(mnt, sizeof(mnt), root, sizeof(root)) < 0)
		return no_group(-ENOTSUP, "no cgroup v1 hierarchy with the cpu controller "
		    "(on cgroup v2, hypervisors are not yet grouped)", NULL);
	rootlen = strcmp(root, "/") == 0 ? 0 : strlen(root);
	if (strncmp(own, root, rootlen) != 0 || (own[rootlen] != '/' && own[rootlen] != '\0'))
		return no_group(-ENOTSUP, "the mounted cpu hierarchy does not hold emberd's cgroup",
		    own);
	rel = own + rootlen;
	if (rel[0] == '\0' || strcmp(rel, "/") == 0)
		return no_group(-EPERM, "emberd runs in the root cpu cgroup, which is the "
		    "host's to divide (under systemd, the unit's Delegate= gives it one)", NULL);
	if ((size_t)snprintf(procs, sizeof(procs), "%s%s", mnt, rel) >= sizeof(procs))
		return no_group(-ENAMETOOLONG, "the cgroup path is too long for", own);
	if (!alone_in(procs, allowed, nallowed, &found))
		return no_group(-EPERM, "emberd shares its cpu cgroup with other processes, so it "
		    "is not emberd's to divide (under systemd, the unit's Delegate= gives it one):",
		    own);
	if ((size_t)snprintf(group_path, sizeof(group_path), "%s%s/%s", mnt, rel, VMS_GROUP) >=
	    sizeof(group_path) ||
	    (size_t)snprintf(procs, sizeof(procs), "%s/cgroup.procs", group_path) >= sizeof(procs))
		return no_group(-ENAMETOOLONG, "the cgroup path is too long for", own);
	if (mkdir(group_path, 0755) < 0 && errno != EEXIST) {
		r = -errno;
		return no_group(r, "cannot make", group_path);
	}
	if ((size_t)snprintf(shares, sizeof(shares), "%s/cpu.shares", group_path) < sizeof(shares) &&
	    (r = write_file_text(shares, VMS_CPU_SHARES)) < 0)
		log_warnx("cannot set %s: %s (guests weigh as much as emberd)", shares,
		    strerror(-r));
	if ((group_procs_fd = open(procs, O_WRONLY | O_CLOEXEC)) < 0) {
		r = -errno;
		return no_group(r, "cannot open", procs);
	}
	no_group_reason[0] = '\0';
	log_info("hypervisors run in the cgroup %s", group_path);
	for (size_t i = 0; i < found; i++) {
		/* an older emberd's, left beside it: each that fails stays */
		n = snprintf(buf, sizeof(buf), "%ld\n", (long)allowed[i]);
		if (write(group_procs_fd, buf, (size_t)n) < 0)
			log_warnx("cannot move the hypervisor %ld into %s: %s", (long)allowed[i],
			    group_path, strerror(errno));
		else
			log_info("moved the hypervisor %ld into %s", (long)allowed[i], group_path);
	}
	return 0;
}

int
vm_cgroup_init(void)
{
	return set_up(NULL, 0);
}

int
vm_cgroup_adopt(pid_t *pids, size_t n)
{
	if (n == 0)	/* nothing to move: vm_cgroup_init's outcome stands */
		return group_procs_fd >= 0 ? 0 : -ENOENT;
	return set_up(pids, n);
}

const char *
vm_cgroup_path(void)
{
	return group_procs_fd >= 0 ? group_path : NULL;
}

const char *
vm_cgroup_reason(void)
{
	return no_group_reason;
}

int
vm_cgroup_procs_fd(void)
{
	return group_procs_fd;
}
