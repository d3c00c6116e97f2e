/*
 * Working as root inside a directory that an unprivileged VM owner may
 * write to: granting that owner access by a POSIX ACL, and touching entries
 * there only in ways a name the owner planted cannot redirect (no symlink
 * is followed, no entry the owner made is reused, a socket is connected to
 * only when it is the inode that was checked). The policy, and why, is at
 * the top of linux/dir-guard.c. All functions return 0 (or an fd) or -errno
 * and never log above debug.
 */
#ifndef EMBER_DIR_GUARD_H
#define EMBER_DIR_GUARD_H

#include <sys/types.h>

#define GUARD_R	4
#define GUARD_W	2
#define GUARD_X	1

/* Sets the access ACL of the inode at path (a symlink there is refused,
 * never followed) to its mode's owner/group/other bits plus uid:perm
 * (GUARD_* bits). uid 0 needs no entry: a no-op. -EOPNOTSUPP when the
 * filesystem keeps no ACLs. */
int guard_grant(const char *path, uid_t uid, unsigned perm);
/* The same on an open file. */
int guard_grant_fd(int fd, uid_t uid, unsigned perm);

/* Opens name in dirfd for appending, as a regular file that belongs to
 * emberd's user and has one link: an existing entry that is anything else
 * (a symlink, a FIFO, the owner's file, a hard link) is removed first and a
 * new file is created with O_EXCL. mode for a new file. The fd, or -errno
 * (-EEXIST when something reappeared under the name meanwhile, -EISDIR for
 * a directory in the way). */
int guard_open_append(int dirfd, const char *name, mode_t mode);
/* Opens name in dirfd for reading only when it is a regular file of
 * emberd's user: never a symlink, FIFO or device. The fd or -errno. */
int guard_open_read(int dirfd, const char *name);
/* Whether the entry at dirfd/name (not followed) is one emberd's user may
 * trust: a regular file of its own with one link. */
int guard_is_own_file(int dirfd, const char *name);

/* A non-blocking, close-on-exec stream socket connected to the Unix socket
 * at path, made only when the entry there (not followed) is a socket owned
 * by uid with one link; the connection is made to the very inode checked
 * (through /proc/self/fd), so swapping the entry afterwards changes
 * nothing. -EPERM when the entry is not such a socket, otherwise as
 * platform_unix_connect(). */
int guard_unix_connect(const char *path, uid_t uid);

#endif
