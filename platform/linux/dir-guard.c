/*
 * Root inside a directory an unprivileged owner can write (see dir-guard.h).
 *
 * Why it is laid out this way. emberd runs as root and serves the members
 * of its socket group. The owner of a VM must reach that VM's vsock.sock,
 * create and remove vsock.sock_<port> listeners for guest-initiated
 * connections, and read console.log; nobody else may do any of that. So:
 *
 *  - <state> and <state>/vms are 0711: anyone may pass through to a VM
 *    directory whose name it knows, nobody but root may list them.
 *  - <state>/vms/<name>/ stays root's, mode 01770 (sticky) with an ACL
 *    entry user:<owner>:rwx, group and others nothing. The owner may create
 *    entries there; the sticky bit means it may remove or rename only its
 *    own, never root's vm.json, console.log, qmp.sock or vsock.sock. An ACL
 *    rather than a chown, because a directory (or socket) the owner owned
 *    would let it swap root's entries; rather than a group, because an
 *    owner's groups are shared with other users. The ACL is written as the
 *    kernel's binary xattr (system.posix_acl_access): no libacl.
 *  - vsock.sock stays root's, 0600 plus user:<owner>:rw (connecting needs
 *    write permission), console.log root's 0640 plus user:<owner>:r.
 *  - A filesystem without ACLs (EOPNOTSUPP) leaves VMs reachable by root
 *    only; emberd says so in its log when it prepares such a directory.
 *
 * The owner can therefore plant any name that emberd or a hypervisor will
 * later use in that directory. Whatever root creates there by name is
 * created with O_NOFOLLOW|O_EXCL after removing whatever was there
 * (guard_open_append; atomic writes use mkostemp names), sockets are bound
 * (bind never follows a symlink and fails on an existing name), console.log
 * reaches QEMU as an inherited fd rather than a path, and emberd connects
 * to a socket in the directory only through guard_unix_connect: the entry,
 * opened with O_PATH|O_NOFOLLOW, must be a socket of the expected user with
 * one link, and the connection goes to that same inode through
 * /proc/self/fd/<n>, so no swap between the check and the connect can
 * redirect it. For vsock.sock_<port> the expected user is the VM's owner: a
 * guest connection reaches only a socket the owner itself bound, never a
 * symlink or hard link to another service's socket (a root-owned entry is
 * refused too, as a hard link is indistinguishable from a bind). A
 * listener the owner runs can forward anywhere, but only with the owner's
 * own rights.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "dir-guard.h"

#define ACL_XATTR		"system.posix_acl_access"
#define ACL_XATTR_VERSION	2
#define ACL_TAG_USER_OBJ	0x01
#define ACL_TAG_USER		0x02
#define ACL_TAG_GROUP_OBJ	0x04
#define ACL_TAG_MASK		0x10
#define ACL_TAG_OTHER		0x20
#define ACL_NO_ID		0xffffffffu

struct acl_xattr_entry {
	uint16_t tag, perm;
	uint32_t id;
} __attribute__((packed));

struct acl_xattr {
	uint32_t version;
	struct acl_xattr_entry e[5];
} __attribute__((packed));

static void
acl_entry(struct acl_xattr_entry *e, uint16_t tag, unsigned perm, uint32_t id)
{
	e->tag = htole16(tag);
	e->perm = htole16((uint16_t)(perm & 7));
	e->id = htole32(id);
}

/* The ACL equal to mode plus uid:perm; entries sorted by tag as the kernel
 * wants them. The mask lets the named entry through. */
static void
acl_build(struct acl_xattr *acl, mode_t mode, uid_t uid, unsigned perm)
{
	acl->version = htole32(ACL_XATTR_VERSION);
	acl_entry(&acl->e[0], ACL_TAG_USER_OBJ, (mode >> 6) & 7, ACL_NO_ID);
	acl_entry(&acl->e[1], ACL_TAG_USER, perm, (uint32_t)uid);
	acl_entry(&acl->e[2], ACL_TAG_GROUP_OBJ, (mode >> 3) & 7, ACL_NO_ID);
	acl_entry(&acl->e[3], ACL_TAG_MASK, ((mode >> 3) & 7) | perm, ACL_NO_ID);
	acl_entry(&acl->e[4], ACL_TAG_OTHER, mode & 7, ACL_NO_ID);
}

int
guard_grant(const char *path, uid_t uid, unsigned perm)
{
	struct acl_xattr acl;
	struct stat st;

	if (uid == 0)
		return 0;
	if (lstat(path, &st) < 0)
		return -errno;
	if (S_ISLNK(st.st_mode))
		return -ELOOP;
	acl_build(&acl, st.st_mode, uid, perm);
	return lsetxattr(path, ACL_XATTR, &acl, sizeof(acl), 0) < 0 ? -errno : 0;
}

int
guard_grant_fd(int fd, uid_t uid, unsigned perm)
{
	struct acl_xattr acl;
	struct stat st;

	if (uid == 0)
		return 0;
	if (fstat(fd, &st) < 0)
		return -errno;
	acl_build(&acl, st.st_mode, uid, perm);
	return fsetxattr(fd, ACL_XATTR, &acl, sizeof(acl), 0) < 0 ? -errno : 0;
}

static int
is_own_file(const struct stat *st)
{
	return S_ISREG(st->st_mode) && st->st_uid == geteuid() && st->st_nlink == 1;
}

int
guard_is_own_file(int dirfd, const char *name)
{
	struct stat st;

	return fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && is_own_file(&st);
}

int
guard_open_append(int dirfd, const char *name, mode_t mode)
{
	struct stat st;
	int fd, flags = O_WRONLY | O_APPEND | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC;

	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && !is_own_file(&st)) {
		if (S_ISDIR(st.st_mode))
			return -EISDIR;
		if (unlinkat(dirfd, name, 0) < 0 && errno != ENOENT)
			return -errno;
	}
	fd = openat(dirfd, name, flags);	/* emberd's own file, if still there */
	if (fd < 0 && errno == ENOENT)
		fd = openat(dirfd, name, flags | O_CREAT | O_EXCL, mode);
	if (fd < 0)
		return errno == ELOOP ? -EEXIST : -errno;
	/* Between the check and the open the name may have changed hands. */
	if (fstat(fd, &st) < 0 || !is_own_file(&st)) {
		close(fd);
		return -EEXIST;
	}
	fcntl(fd, F_SETFL, O_WRONLY | O_APPEND);	/* drop O_NONBLOCK */
	return fd;
}

int
guard_open_read(int dirfd, const char *name)
{
	struct stat st;
	int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid()) {
		close(fd);
		return -EPERM;
	}
	return fd;
}

int
guard_unix_connect(const char *path, uid_t uid)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct stat st;
	int pfd, fd, e;

	pfd = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (pfd < 0)
		return -errno;
	if (fstat(pfd, &st) < 0 || !S_ISSOCK(st.st_mode) || st.st_uid != uid ||
	    st.st_nlink != 1) {
		close(pfd);
		return -EPERM;
	}
	snprintf(sun.sun_path, sizeof(sun.sun_path), "/proc/self/fd/%d", pfd);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		e = errno;
		close(pfd);
		return -e;
	}
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 && errno != EINPROGRESS) {
		e = errno;
		close(fd);
		close(pfd);
		return -e;
	}
	close(pfd);
	return fd;
}
