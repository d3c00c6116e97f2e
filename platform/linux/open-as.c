/*
 * Opening paths with a client's rights (see platform.h). emberd runs as
 * root, so a path a client names must not be opened with emberd's own
 * rights: a short-lived child takes on the client's groups, gid and uid,
 * resolves each path (symlinks included) and opens it, and hands each open
 * file back over a socketpair with SCM_RIGHTS, or the errno its open got.
 * platform_open_as_start leaves the waiting to the caller (emberd reads the
 * answers on its event loop, with a deadline of its own);
 * platform_open_as waits here, bounded by a deadline, and a child it
 * killed that could not be reaped at once is reaped by a later call.
 *
 * A user's passwd entry is looked up the same way, in a child (NSS may ask
 * LDAP or sssd, which can hang), and what was found is kept in a small
 * table that the daemon fills and Firecracker's start reads without
 * waiting.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
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

/* One answer: the open file, or the errno that path got. */
static int
send_answer(int sock, const struct open_as_reply *rep, int fd)
{
	struct iovec iov = { .iov_base = (void *)rep, .iov_len = sizeof(*rep) };
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
	return sendmsg(sock, &msg, MSG_NOSIGNAL) == (ssize_t)sizeof(*rep) ? 0 : -1;
}

/* Looks at path and opens it as whoever this process is now; the fd, or -1
 * with rep->err. */
static int
open_one(const char *path, unsigned flags, struct open_as_reply *rep)
{
	char proc[64];
	int pathfd, fd;

	/* O_PATH looks without opening: nothing a device's open does happens
	 * before the type is known. */
	pathfd = open(path, O_PATH | O_CLOEXEC);
	if (pathfd < 0 || fstat(pathfd, &rep->st) < 0) {
		rep->err = errno;
		if (pathfd >= 0)
			close(pathfd);
		return -1;
	}
	if (!type_wanted(rep->st.st_mode, flags)) {
		rep->err = EINVAL;
		close(pathfd);
		return -1;
	}
	/* Reopening through /proc checks the file's own permissions as the
	 * caller, exactly as opening the path would. */
	proc_fd_path(pathfd, proc, sizeof(proc));
	fd = open(proc, O_RDONLY | O_NOCTTY | O_CLOEXEC |
	    ((flags & PLATFORM_OPEN_DIRECTORY) ? O_DIRECTORY : 0));
	if (fd < 0)
		rep->err = errno;
	close(pathfd);
	return fd;
}

/* The child: become the caller, then for each path look, open, answer;
 * the first failure is the last answer. */
static void __attribute__((noreturn))
open_as_child(int sock, const struct platform_caller *c, const struct platform_open_path *paths,
    size_t n, unsigned delay_ms)
{
	struct open_as_reply rep = { 0 };

	if (setgroups(c->ngroups, c->groups) < 0 || setresgid(c->gid, c->gid, c->gid) < 0 ||
	    setresuid(c->uid, c->uid, c->uid) < 0) {
		rep.err = errno;
		_exit(send_answer(sock, &rep, -1) == 0 ? 0 : 1);
	}
	if (delay_ms > 0) {
		struct timespec ts = { delay_ms / 1000, (long)(delay_ms % 1000) * 1000000 };
		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
	}
	for (size_t i = 0; i < n; i++) {
		int fd;

		memset(&rep, 0, sizeof(rep));
		fd = open_one(paths[i].path, paths[i].flags, &rep);
		if (send_answer(sock, &rep, fd) < 0)
			_exit(1);
		if (fd < 0)
			break;
		close(fd);
	}
	_exit(0);
}

pid_t
platform_open_as_start(const struct platform_caller *c, const struct platform_open_path *paths,
    size_t n, unsigned delay_ms, int *sock)
{
	sigset_t all, old;
	int sv[2], r;
	pid_t pid;

	*sock = -1;
	if (c->groups == NULL)
		return -EPERM;	/* dropping groups can grant (a group denied, others allowed) */
	if (n == 0 || n > PLATFORM_OPEN_PATHS_MAX)
		return -EINVAL;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	/* All signals stay blocked in the child: emberd's handlers (libevent's
	 * signal pipe) must never run there. */
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &old);
	pid = fork();
	if (pid == 0) {
		close(sv[0]);
		open_as_child(sv[1], c, paths, n, delay_ms);
	}
	r = pid < 0 ? -errno : 0;
	sigprocmask(SIG_SETMASK, &old, NULL);
	close(sv[1]);
	if (r < 0 || fcntl(sv[0], F_SETFL, O_NONBLOCK) < 0) {
		if (r == 0) {
			r = -errno;
			kill(pid, SIGKILL);
			while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
				;
		}
		close(sv[0]);
		return r;
	}
	*sock = sv[0];
	return pid;
}

int
platform_open_as_receive(int sock, int *result, struct stat *st)
{
	struct open_as_reply rep;
	struct iovec iov = { .iov_base = &rep, .iov_len = sizeof(rep) };
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} ctl;
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
	    .msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf) };
	int fd = -1;
	ssize_t n;

	if (st != NULL)
		memset(st, 0, sizeof(*st));
	do
		n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm != NULL; cm = CMSG_NXTHDR(&msg, cm))
		if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS &&
		    cm->cmsg_len == CMSG_LEN(sizeof(int)))
			memcpy(&fd, CMSG_DATA(cm), sizeof(int));
	if (n != (ssize_t)sizeof(rep) || (msg.msg_flags & MSG_CTRUNC)) {
		if (fd >= 0)
			close(fd);
		return -EIO;	/* the child died before answering (0: end of file) */
	}
	if (st != NULL)
		*st = rep.st;
	if (rep.err != 0 || fd < 0) {
		if (fd >= 0)
			close(fd);
		*result = rep.err != 0 ? -rep.err : -EIO;
	} else
		*result = fd;
	return 1;
}

static long
ms_left(const struct timespec *deadline)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (deadline->tv_sec - now.tv_sec) * 1000 +
	    (deadline->tv_nsec - now.tv_nsec) / 1000000;
}

int
platform_open_as(const struct platform_caller *c, const char *path, unsigned flags,
    int timeout_ms, struct stat *st)
{
	const struct platform_open_path one = { path, flags };
	struct pollfd pfd = { .events = POLLIN };
	struct timespec deadline;
	int sock, r, result = -EIO, status;
	pid_t pid;

	if (st != NULL)
		memset(st, 0, sizeof(*st));
	if (c->groups == NULL)
		return -EPERM;
	reap_stuck();
	if (stuck_count() == OPEN_AS_STUCK_MAX)
		return -EAGAIN;	/* too many opens hang already */
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += timeout_ms / 1000;
	deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
	if (deadline.tv_nsec >= 1000000000) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000;
	}
	pid = platform_open_as_start(c, &one, 1, 0, &sock);
	if (pid < 0)
		return (int)pid;
	pfd.fd = sock;
	for (;;) {
		long left = ms_left(&deadline);
		if (left <= 0) {
			/* There was room in the table (checked above). */
			close(sock);
			kill(pid, SIGKILL);
			if (waitpid(pid, NULL, WNOHANG) == 0)
				remember_stuck(pid);
			return -ETIMEDOUT;
		}
		r = poll(&pfd, 1, (int)left);
		if (r < 0 && errno != EINTR) {
			result = -errno;
			break;
		}
		if (r > 0) {
			r = platform_open_as_receive(sock, &result, st);
			if (r != 0) {
				if (r < 0)
					result = r;
				break;
			}
		}
	}
	close(sock);
	/* The child has answered (or died) and only exits now. */
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	return result;
}

/* ---- accounts ---- */

struct account_reply {
	int err;		/* 0, ENOENT (no entry) or the lookup's errno */
	gid_t gid;
};

static void __attribute__((noreturn))
account_child(int sock, uid_t uid, unsigned delay_ms)
{
	struct account_reply rep = { 0 };
	struct passwd pw, *found = NULL;
	char buf[16384];
	int r;

	if (delay_ms > 0) {
		struct timespec ts = { delay_ms / 1000, (long)(delay_ms % 1000) * 1000000 };
		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
	}
	r = getpwuid_r(uid, &pw, buf, sizeof(buf), &found);
	if (r != 0)
		rep.err = r;
	else if (found == NULL)
		rep.err = ENOENT;
	else
		rep.gid = pw.pw_gid;
	_exit(send(sock, &rep, sizeof(rep), MSG_NOSIGNAL) == (ssize_t)sizeof(rep) ? 0 : 1);
}

pid_t
platform_account_lookup_start(uid_t uid, unsigned delay_ms, int *sock)
{
	sigset_t all, old;
	int sv[2], r;
	pid_t pid;

	*sock = -1;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	sigfillset(&all);	/* as platform_open_as_start */
	sigprocmask(SIG_BLOCK, &all, &old);
	pid = fork();
	if (pid == 0) {
		close(sv[0]);
		account_child(sv[1], uid, delay_ms);
	}
	r = pid < 0 ? -errno : 0;
	sigprocmask(SIG_SETMASK, &old, NULL);
	close(sv[1]);
	if (r < 0 || fcntl(sv[0], F_SETFL, O_NONBLOCK) < 0) {
		if (r == 0) {
			r = -errno;
			kill(pid, SIGKILL);
			while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
				;
		}
		close(sv[0]);
		return r;
	}
	*sock = sv[0];
	return pid;
}

int
platform_account_receive(int sock, gid_t *gid)
{
	struct account_reply rep;
	ssize_t n;

	do
		n = recv(sock, &rep, sizeof(rep), MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
	if (n != (ssize_t)sizeof(rep))
		return -EIO;
	if (rep.err != 0)
		return rep.err > 0 ? -rep.err : -EIO;
	*gid = rep.gid;
	return 1;
}

/* Lookups found: a user's group rarely changes, so an answer is fresh for
 * ACCOUNT_TTL_S (then looked up again when the user next connects) and
 * used until replaced. A failed lookup never replaces an answer; for a uid
 * without one it is kept ACCOUNT_FAILED_TTL_S, so that while NSS hangs
 * not every connection waits for a lookup. The oldest entry goes when the
 * table is full. */
#define ACCOUNTS_MAX 256
#define ACCOUNT_TTL_S 600
#define ACCOUNT_FAILED_TTL_S 60

static bool
account_answered(int result)
{
	return result == 0 || result == -ENOENT;
}

static struct account_entry {
	uid_t uid;
	int result;
	gid_t gid;
	time_t stored;		/* CLOCK_MONOTONIC seconds; 0: unused */
	unsigned long order;	/* when it was stored, among the others */
} accounts[ACCOUNTS_MAX];
static unsigned long accounts_stored;

static time_t
mono_s(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return now.tv_sec + 1;	/* never 0 */
}

void
platform_account_remember(uid_t uid, int result, gid_t gid)
{
	struct account_entry *slot = &accounts[0];

	for (size_t i = 0; i < ACCOUNTS_MAX; i++) {
		if (accounts[i].stored != 0 && accounts[i].uid == uid) {
			if (!account_answered(result) && account_answered(accounts[i].result))
				return;	/* the answer stays */
			slot = &accounts[i];
			break;
		}
		if (slot->stored != 0 && (accounts[i].stored == 0 || accounts[i].order < slot->order))
			slot = &accounts[i];	/* free, or the oldest */
	}
	*slot = (struct account_entry){ uid, result, gid, mono_s(), ++accounts_stored };
}

static const struct account_entry *
account_find(uid_t uid)
{
	for (size_t i = 0; i < ACCOUNTS_MAX; i++)
		if (accounts[i].stored != 0 && accounts[i].uid == uid)
			return &accounts[i];
	return NULL;
}

int
platform_account_gid(uid_t uid, gid_t *gid)
{
	const struct account_entry *e = account_find(uid);

	if (e == NULL || !account_answered(e->result))
		return -EAGAIN;
	if (e->result == 0)
		*gid = e->gid;
	return e->result;
}

int
platform_account_fresh(uid_t uid)
{
	const struct account_entry *e = account_find(uid);

	return e != NULL && mono_s() - e->stored <=
	    (account_answered(e->result) ? ACCOUNT_TTL_S : ACCOUNT_FAILED_TTL_S);
}
