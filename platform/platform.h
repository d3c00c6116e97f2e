/*
 * OS facts the daemon needs, one implementation per OS (linux/).
 */
#ifndef EMBER_PLATFORM_H
#define EMBER_PLATFORM_H

#include <stdint.h>
#include <sys/types.h>

/* A non-blocking, close-on-exec stream socket connected to the Unix socket
 * at path (a connection still in progress counts). The fd, or -errno
 * (-ENAMETOOLONG, -ENOENT, -ECONNREFUSED, -EAGAIN when the backlog is full). */
int platform_unix_connect(const char *path);
/* Credentials of the peer of a connected Unix socket. 0 or -errno. */
int platform_peer_creds(int fd, uid_t *uid, gid_t *gid, pid_t *pid);
/* Start time of pid in clock ticks since boot (/proc/<pid>/stat field 22).
 * 0 or -errno (-ESRCH when gone). */
int platform_process_start_time(pid_t pid, uint64_t *start_time);
/* True when pid is alive and started at start_time. */
int platform_process_matches(pid_t pid, uint64_t start_time);
/* Resident set size of this process in KiB, or -errno. */
long platform_self_rss_kib(void);

#endif
