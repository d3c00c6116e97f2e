/*
 * Opening a path with a client's rights (see platform.h). emberd runs as
 * root, so a path a client names must not be opened with emberd's own
 * rights: a short-lived child takes on the client's groups, gid and uid,
 * resolves the path (symlinks included) and opens it, and hands the open
 * file back over a socketpair with SCM_RIGHTS, or the errno its open got.
 * The parent waits for the answer with a deadline, so a path that hangs
 * (a dead NFS server) costs emberd at most that long; a child that cannot
 * be reaped at once is reaped by a later call.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "platform.h"

struct open_as_reply {
	int err;		/* 0, or the errno the open (or a setup step) got */
	struct stat st;		/* what path named, when it could be looked at */
};

/* Children killed at their deadline that had not exited yet. */
#define OPEN_AS_STUCK_MAX 16
static pid_t stuck[OPEN_AS_STUCK_MAX];

static void
reap_stuck(void)
{
	for (size_t i = 0; i < OPEN_AS_STUCK_MAX; i++)
		if (stuck[i] > 0 && waitpid(stuck[i], NULL, WNOHANG) != 0)
			stuck[i] = 0;	/* reaped, or not ours any more */
}

static bool
remember_stuck(pid_t pid)
{
	for (size_t i = 0; i < OPEN_AS_STUCK_MAX; i++)
		if (stuck[i] == 0) {
			stuck[i] = pid;
			return true;
		}
	return false;
}

static size_t
stuck_count(void)
{
	size_t n = 0;

	for (size_t i = 0; i < OPEN_AS_STUCK_MAX; i++)
		n += stuck[i] > 0;
	return n;
}

/* "/proc/self/fd/<fd>" without stdio (the child only makes system calls). */
static void
proc_fd_path(int fd, char *buf, size_t len)
{
	static const char prefix[] = "/proc/self/fd/";
	char digits[16];
	size_t n = 0, at = sizeof(prefix) - 1;

	do
		digits[n++] = (char)('0' + fd % 10);
	while ((fd /= 10) > 0 && n < sizeof(digits));
	memcpy(buf, prefix, at);
	while (n > 0 && at + 1 < len)
		buf[at++] = digits[--n];
	buf[at] = '\0';
}

static bool
type_wanted(mode_t mode, unsigned flags)
{
	return (flags & PLATFORM_OPEN_DIRECTORY) ? S_ISDIR(mode) : S_ISREG(mode);
}

/* The child: become the caller, look, open, answer, exit. */
static void __attribute__((noreturn))
open_as_child(int sock, const struct platform_caller *c, const char *path, unsigned flags)
{
	struct open_as_reply rep = { 0 };
	char proc[64];
	int pathfd = -1, fd = -1;

	if (setgroups(c->ngroups, c->groups) < 0 || setresgid(c->gid, c->gid, c->gid) < 0 ||
	    setresuid(c->uid, c->uid, c->uid) < 0) {
		rep.err = errno;
		goto answer;
	}
	/* O_PATH looks without opening: nothing a device's open does happens
	 * before the type is known. */
	pathfd = open(path, O_PATH | O_CLOEXEC);
	if (pathfd < 0 || fstat(pathfd, &rep.st) < 0) {
		rep.err = errno;
		goto answer;
	}
	if (!type_wanted(rep.st.st_mode, flags)) {
		rep.err = EINVAL;
		goto answer;
	}
	/* Reopening through /proc checks the file's own permissions as the
	 * caller, exactly as opening the path would. */
	proc_fd_path(pathfd, proc, sizeof(proc));
	fd = open(proc, O_RDONLY | O_NOCTTY | O_CLOEXEC |
	    ((flags & PLATFORM_OPEN_DIRECTORY) ? O_DIRECTORY : 0));
	if (fd < 0)
		rep.err = errno;
answer:;
	struct iovec iov = { .iov_base = &rep, .iov_len = sizeof(rep) };
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} ctl;
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };

	memset(&ctl, 0, sizeof(ctl));
	if (fd >= 0) {
		msg.msg_control = ctl.buf;
		msg.msg_controllen = sizeof(ctl.buf);
		struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	}
	_exit(sendmsg(sock, &msg, MSG_NOSIGNAL) == (ssize_t)sizeof(rep) ? 0 : 1);
}

static long
ms_left(const struct timespec *deadline)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (deadline->tv_sec - now.tv_sec) * 1000 +
	    (deadline->tv_nsec - now.tv_nsec) / 1000000;
}

/* Waits for the child's answer until the deadline; the fd or -errno
 * (*late says the deadline passed, as opposed to an open that failed with
 * ETIMEDOUT itself). */
static int
receive_answer(int sock, const struct timespec *deadline, struct stat *st, bool *late)
{
	struct open_as_reply rep;
	struct iovec iov = { .iov_base = &rep, .iov_len = sizeof(rep) };
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} ctl;
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
	    .msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf) };
	struct pollfd pfd = { .fd = sock, .events = POLLIN };
	int fd = -1, r;
	ssize_t n;

	for (;;) {
		long left = ms_left(deadline);
		if (left <= 0) {
			*late = true;
			return -ETIMEDOUT;
		}
		r = poll(&pfd, 1, (int)left);
		if (r > 0)
			break;
		if (r < 0 && errno != EINTR)
			return -errno;
	}
	do
		n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm != NULL; cm = CMSG_NXTHDR(&msg, cm))
		if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS &&
		    cm->cmsg_len == CMSG_LEN(sizeof(int)))
			memcpy(&fd, CMSG_DATA(cm), sizeof(int));
	if (n != (ssize_t)sizeof(rep) || (msg.msg_flags & MSG_CTRUNC)) {
		if (fd >= 0)
			close(fd);
		return -EIO;	/* the child died before answering */
	}
	if (st != NULL)
		*st = rep.st;
	if (rep.err != 0 || fd < 0) {
		if (fd >= 0)
			close(fd);
		return rep.err != 0 ? -rep.err : -EIO;
	}
	return fd;
}

int
platform_open_as(const struct platform_caller *c, const char *path, unsigned flags,
    int timeout_ms, struct stat *st)
{
	struct timespec deadline;
	sigset_t all, old;
	int sv[2], r, status;
	bool late = false;
	pid_t pid;

	if (st != NULL)
		memset(st, 0, sizeof(*st));
	if (c->groups == NULL)
		return -EPERM;	/* dropping groups can grant (a group denied, others allowed) */
	reap_stuck();
	if (stuck_count() == OPEN_AS_STUCK_MAX)
		return -EAGAIN;	/* too many opens hang already */
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += timeout_ms / 1000;
	deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
	if (deadline.tv_nsec >= 1000000000) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000;
	}
	/* All signals stay blocked in the child: emberd's handlers (libevent's
	 * signal pipe) must never run there. */
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &old);
	pid = fork();
	if (pid == 0) {
		close(sv[0]);
		open_as_child(sv[1], c, path, flags);
	}
	r = pid < 0 ? -errno : 0;
	sigprocmask(SIG_SETMASK, &old, NULL);
	close(sv[1]);
	if (r < 0) {
		close(sv[0]);
		return r;
	}
	r = receive_answer(sv[0], &deadline, st, &late);
	close(sv[0]);
	if (late) {
		/* There was room in the table (checked above). */
		kill(pid, SIGKILL);
		if (waitpid(pid, NULL, WNOHANG) == 0)
			remember_stuck(pid);
		return r;
	}
	/* The child has answered and only exits now. */
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	return r;
}
