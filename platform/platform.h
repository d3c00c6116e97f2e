/*
 * OS facts the daemon needs, one implementation per OS (linux/).
 */
#ifndef EMBER_PLATFORM_H
#define EMBER_PLATFORM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

/* A non-blocking, close-on-exec stream socket connected to the Unix socket
 * at path (a connection still in progress counts). The fd, or -errno
 * (-ENAMETOOLONG, -ENOENT, -ECONNREFUSED, -EAGAIN when the backlog is full). */
int platform_unix_connect(const char *path);
/* Credentials of the peer of a connected Unix socket. 0 or -errno. */
int platform_peer_creds(int fd, uid_t *uid, gid_t *gid, pid_t *pid);
/* Supplementary groups of the peer of a connected Unix socket
 * (SO_PEERGROUPS) into groups[max]: how many, or -errno (-ERANGE when
 * there are more than max). */
int platform_peer_groups(int fd, gid_t *groups, size_t max);
/* Start time of pid in clock ticks since boot (/proc/<pid>/stat field 22).
 * 0 or -errno (-ESRCH when gone). */
int platform_process_start_time(pid_t pid, uint64_t *start_time);
/* Parent of pid (/proc/<pid>/stat field 4). 0 or -errno (-ESRCH when gone). */
int platform_process_parent(pid_t pid, pid_t *ppid);
/* What a process has used: CPU time (user plus system, /proc/<pid>/stat)
 * and how long it has run. 0 or -errno (-ESRCH when gone or a zombie). */
struct platform_process_usage {
	double cpu_seconds;
	double uptime_seconds;
};
int platform_process_usage(pid_t pid, struct platform_process_usage *u);
/* True when pid is alive and started at start_time. */
int platform_process_matches(pid_t pid, uint64_t start_time);
/* A client emberd acts for when it opens a path the client named. */
struct platform_caller {
	uid_t uid;
	gid_t gid;
	const gid_t *groups;	/* supplementary groups; NULL: unknown */
	size_t ngroups;
};

#define PLATFORM_OPEN_DIRECTORY 0x1	/* want a directory, not a regular file */

/* Opens path read-only with the caller's uid, gid and groups (a short-lived
 * child takes them on, opens, and passes the fd back), so it resolves and
 * is permitted exactly as the caller's own open would be. Returns the fd
 * (close-on-exec) or that open's -errno. Anything but a regular file (a
 * directory with PLATFORM_OPEN_DIRECTORY) is refused with -EINVAL before it
 * is opened, and *st (when not NULL) says what it is; *st is zero when the
 * path could not be looked at. Callers whose groups are unknown are
 * refused (-EPERM) without trying. Waits at most timeout_ms: -ETIMEDOUT then
 * (the child is killed), -EAGAIN while too many killed children hang. */
int platform_open_as(const struct platform_caller *c, const char *path, unsigned flags,
    int timeout_ms, struct stat *st);
/* The same without waiting, for several paths at once: starts the child,
 * which opens paths[0..n) in turn (after sleeping delay_ms, for tests) and
 * answers each on *sock (emberd's end, close-on-exec and non-blocking),
 * stopping after the first that fails. Returns the child's pid (the caller
 * reaps it) or -errno. */
#define PLATFORM_OPEN_PATHS_MAX 8
struct platform_open_path {
	const char *path;
	unsigned flags;
};
pid_t platform_open_as_start(const struct platform_caller *c,
    const struct platform_open_path *paths, size_t n, unsigned delay_ms, int *sock);
/* Takes the next answer from sock: 1 with *result the fd or the open's
 * -errno (*st as for platform_open_as), 0 when none has arrived yet,
 * -EIO when the child ended without answering, or another -errno. */
int platform_open_as_receive(int sock, int *result, struct stat *st);
/* A user's primary group from its passwd entry (NSS: files, LDAP, sssd),
 * looked up in a child so that a lookup that hangs holds nobody: the child
 * (after sleeping delay_ms, for tests) answers once on *sock (emberd's end,
 * close-on-exec and non-blocking). Returns the child's pid (the caller
 * reaps it) or -errno. */
pid_t platform_account_lookup_start(uid_t uid, unsigned delay_ms, int *sock);
/* Takes the answer from sock: 1 with *gid, -ENOENT when uid has no passwd
 * entry, 0 when none has arrived yet, -EIO when the child ended without
 * answering, or another -errno. */
int platform_account_receive(int sock, gid_t *gid);
/* What lookups found, kept for this process (a bounded table): result is
 * 0 (gid is the primary group), -ENOENT (no entry), or the -errno of a
 * lookup that failed (-ETIMEDOUT), which never replaces an answer. */
void platform_account_remember(uid_t uid, int result, gid_t gid);
/* Never blocks: the last answer kept for uid, however old: 0 with *gid,
 * -ENOENT when uid has no passwd entry, -EAGAIN when none (never looked
 * up, or every lookup failed). */
int platform_account_gid(uid_t uid, gid_t *gid);
/* Whether uid's answer (or failure, for a shorter time) is recent enough
 * not to be looked up again. */
int platform_account_fresh(uid_t uid);
/* Resident set size of this process in KiB, or -errno. */
long platform_self_rss_kib(void);
/* The same for another process (0: this one), or -errno. */
long platform_process_rss_kib(pid_t pid);

#endif
