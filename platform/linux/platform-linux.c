/*
 * Linux OS facts: peer credentials from SO_PEERCRED and SO_PEERGROUPS,
 * process identity and CPU time from /proc/<pid>/stat and memory from
 * /proc/<pid>/statm. A pid alone can be reused, so a process is named by
 * its pid and its start time (field 22 of stat, clock ticks since boot),
 * which no reuse can repeat.
 */
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fsutil.h"
#include "platform.h"

#define STAT_FILE_MAX 4096

int
platform_peer_creds(int fd, uid_t *uid, gid_t *gid, pid_t *pid)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == -1)
		return -errno;
	if (len != sizeof(cred))
		return -EIO;
	if (uid != NULL)
		*uid = cred.uid;
	if (gid != NULL)
		*gid = cred.gid;
	if (pid != NULL)
		*pid = cred.pid;
	return 0;
}

int
platform_peer_groups(int fd, gid_t *groups, size_t max)
{
	socklen_t len = (socklen_t)(max * sizeof(gid_t));

	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0)
		return -errno;	/* ERANGE: more than max */
	return (int)(len / sizeof(gid_t));
}

/*
 * Reads the state letter (field 3), the parent (field 4; ppid may be NULL),
 * user plus system CPU time (fields 14 and 15, clock ticks; cpu_ticks may
 * be NULL) and start time (field 22) of pid. comm (field 2) is in parentheses and may itself hold spaces and ')',
 * so the fields are counted from the last ')' in the line.
 */
static int
proc_stat(pid_t pid, char *state, pid_t *ppid, uint64_t *cpu_ticks, uint64_t *start_time)
{
	char path[64], *text, *p, *end;
	unsigned long long v, cpu = 0, parent = 0;
	int r, field;

	if (pid <= 0)
		return -EINVAL;
	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	if ((r = read_file(path, STAT_FILE_MAX, &text, NULL)) < 0)
		return r == -ENOENT ? -ESRCH : r;
	if ((p = strrchr(text, ')')) == NULL)
		goto bad;
	p++;
	/* After ')' come fields 3, 4, ...: skip to field 22. */
	for (field = 3; field < 22; field++) {
		while (*p == ' ')
			p++;
		if (*p == '\0')
			goto bad;
		if (field == 3)
			*state = *p;
		if (field == 4 || field == 14 || field == 15) {
			errno = 0;
			v = strtoull(p, &end, 10);
			if (errno != 0 || end == p)
				goto bad;
			if (field == 4)
				parent = v;
			else
				cpu += v;
		}
		while (*p != ' ' && *p != '\0')
			p++;
	}
	while (*p == ' ')
		p++;
	if (*p < '0' || *p > '9')
		goto bad;
	errno = 0;
	v = strtoull(p, &end, 10);
	if (errno != 0 || (*end != ' ' && *end != '\n' && *end != '\0'))
		goto bad;
	free(text);
	*start_time = v;
	if (cpu_ticks != NULL)
		*cpu_ticks = cpu;
	if (ppid != NULL)
		*ppid = (pid_t)parent;
	return 0;

bad:
	free(text);
	return -EBADMSG;
}

int
platform_process_start_time(pid_t pid, uint64_t *start_time)
{
	char state;

	return proc_stat(pid, &state, NULL, NULL, start_time);
}

int
platform_process_parent(pid_t pid, pid_t *ppid)
{
	uint64_t start;
	char state;

	return proc_stat(pid, &state, ppid, NULL, &start);
}

int
platform_process_matches(pid_t pid, uint64_t start_time)
{
	uint64_t actual;
	char state = '?';

	if (pid <= 0 || start_time == 0)
		return 0;
	if (proc_stat(pid, &state, NULL, NULL, &actual) < 0)
		return 0;
	/* A zombie has finished; only its exit status is left. */
	if (state == 'Z' || state == 'X' || state == 'x')
		return 0;
	return actual == start_time;
}

int
platform_process_usage(pid_t pid, struct platform_process_usage *u)
{
	uint64_t ticks, start;
	struct timespec now;
	long hz = sysconf(_SC_CLK_TCK);
	char state;
	int r;

	if (hz <= 0)
		return -EINVAL;
	if ((r = proc_stat(pid, &state, NULL, &ticks, &start)) < 0)
		return r;
	if (state == 'Z' || state == 'X' || state == 'x')
		return -ESRCH;
	u->cpu_seconds = (double)ticks / (double)hz;
	u->uptime_seconds = 0;
	if (clock_gettime(CLOCK_BOOTTIME, &now) == 0) {
		double up = (double)now.tv_sec + (double)now.tv_nsec / 1e9 - (double)start / (double)hz;
		u->uptime_seconds = up > 0 ? up : 0;
	}
	return 0;
}

long
platform_self_rss_kib(void)
{
	return platform_process_rss_kib(0);
}

long
platform_process_rss_kib(pid_t pid)
{
	unsigned long long size, resident;
	char path[64], *text;
	long page;
	int r;

	if (pid == 0)
		snprintf(path, sizeof(path), "/proc/self/statm");
	else
		snprintf(path, sizeof(path), "/proc/%d/statm", (int)pid);
	if ((r = read_file(path, STAT_FILE_MAX, &text, NULL)) < 0)
		return r;
	r = sscanf(text, "%llu %llu", &size, &resident);
	free(text);
	if (r != 2)
		return -EBADMSG;
	if ((page = sysconf(_SC_PAGESIZE)) <= 0)
		return -EINVAL;
	return (long)(resident * (unsigned long long)page / 1024);
}

int
platform_unix_connect(const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(sun.sun_path))
		return -ENAMETOOLONG;
	memcpy(sun.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 && errno != EINPROGRESS) {
		int e = errno;
		close(fd);
		return -e;
	}
	return fd;
}
