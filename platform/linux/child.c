/*
 * Spawning and watching child processes (see child.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>

#include <sys/xattr.h>

#include "child.h"
#include "dir-guard.h"
#include "error.h"
#include "log.h"
#include "vm-cgroup.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

struct child_watch {
	struct event *ev;
	int pidfd;
	pid_t pid;
	child_exit_fn fn;
	void *ctx;
};

static int
pidfd_open_compat(pid_t pid)
{
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

/* In the child before exec, when taking on o's credentials failed at
 * step: the reason on stderr, and exit 127 before anything runs. */
static void __attribute__((__noreturn__))
child_creds_fail(const struct child_spawn_opts *o, const char *step)
{
	char msg[200];
	int e = errno, n;

	n = snprintf(msg, sizeof(msg), "emberd: cannot run as uid %u gid %u: %s: %s\n",
	    (unsigned)o->uid, (unsigned)o->gid, step, strerror(e));
	if (n > 0 && write(STDERR_FILENO, msg, (size_t)n) < 0)
		_exit(127);
	_exit(127);
}

/* A private mount namespace (nothing propagates back to the host) whose
 * /dev/net is a small tmpfs holding one node: the host's tun device, 0600,
 * owned by o->uid. */
static void
child_own_dev_tun(const struct child_spawn_opts *o)
{
	struct stat st;

	if (stat("/dev/net/tun", &st) < 0 || !S_ISCHR(st.st_mode))
		child_creds_fail(o, "/dev/net/tun is not a character device");
	if (unshare(CLONE_NEWNS) < 0)
		child_creds_fail(o, "unshare(CLONE_NEWNS)");
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		child_creds_fail(o, "making its mounts private");
	if (mount("tmpfs", "/dev/net", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=16k") < 0)
		child_creds_fail(o, "mounting a tmpfs on /dev/net");
	if (mknod("/dev/net/tun", S_IFCHR | 0600, st.st_rdev) < 0)
		child_creds_fail(o, "mknod /dev/net/tun");
	if (chown("/dev/net/tun", o->uid, o->gid) < 0)
		child_creds_fail(o, "chown /dev/net/tun");
}

/* In the child before exec: takes on o's uid, gid and groups for good (real,
 * effective and saved) and forbids regaining privileges through exec;
 * exits 127 with the reason on stderr when any step fails, so nothing ever
 * runs with credentials half dropped. */
static void
child_drop_creds(const struct child_spawn_opts *o)
{
	if (o->own_dev_tun)
		child_own_dev_tun(o);
	/* System calls, not libc's wrappers: those change every thread of
	 * the process they believe they are in, which is emberd's. */
	if (syscall(SYS_setgroups, o->ngroups, o->ngroups > 0 ? o->groups : NULL) < 0)
		child_creds_fail(o, "setgroups");
	if (syscall(SYS_setresgid, o->gid, o->gid, o->gid) < 0)
		child_creds_fail(o, "setresgid");
	if (syscall(SYS_setresuid, o->uid, o->uid, o->uid) < 0)
		child_creds_fail(o, "setresuid");
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		child_creds_fail(o, "PR_SET_NO_NEW_PRIVS");
	if (o->uid != 0 && syscall(SYS_setresuid, 0, 0, 0) == 0) {
		errno = EPERM;
		child_creds_fail(o, "root could be regained");
	}
}

/* The child's side of child_spawn, up to exec. It shares emberd's memory
 * (CLONE_VM) while emberd's thread waits (CLONE_VFORK), so it writes
 * nothing but its own stack: async-signal-safe calls and system calls
 * only. */
static int
child_spawn_main(void *arg)
{
	const struct child_spawn_opts *o = arg;
	sigset_t none;

	/* Its own copy of the handler table (no CLONE_SIGHAND): resetting
	 * it leaves emberd's alone. */
	for (int s = 1; s < NSIG; s++)
		signal(s, SIG_DFL);
	if (o->new_session)
		setsid();
	int devnull = open("/dev/null", O_RDWR);
	dup2(devnull, STDIN_FILENO);
	dup2(o->stdout_fd >= 0 ? o->stdout_fd : devnull, STDOUT_FILENO);
	dup2(o->stderr_fd >= 0 ? o->stderr_fd : devnull, STDERR_FILENO);
	for (size_t i = 0; i < o->nkeep; i++) {
		int flags = fcntl(o->keep_fds[i], F_GETFD);
		if (flags >= 0)
			fcntl(o->keep_fds[i], F_SETFD, flags & ~FD_CLOEXEC);
	}
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (o->join_vm_cgroup && vm_cgroup_procs_fd() >= 0 &&
	    write(vm_cgroup_procs_fd(), "0\n", 2) < 0) {
		/* it stays in emberd's cgroup, as where there is no group */
	}
	if (o->drop_creds)
		child_drop_creds(o);
	execvp(o->argv[0], (char *const *)o->argv);
	{
		char msg[512];
		int n = snprintf(msg, sizeof(msg), "emberd: cannot execute %s: %s\n",
		    o->argv[0], strerror(errno));
		if (n > 0 && write(STDERR_FILENO, msg, (size_t)n) < 0)
			_exit(127);
	}
	_exit(127);
}

#define SPAWN_STACK_SIZE (256 * 1024)
#define SPAWN_GUARD_SIZE (64 * 1024)

/* The children's stack: one, made once and kept (a child uses it only
 * until its exec, while the spawning thread waits, and the lock keeps
 * two threads from spawning at once); below it a guard no one may touch. */
static pthread_mutex_t spawn_lock = PTHREAD_MUTEX_INITIALIZER;
static char *spawn_stack_top;

/* clone(CLONE_VM | CLONE_VFORK) rather than fork: emberd's page tables are
 * not copied, and its pages do not turn copy-on-write (each later write a
 * fault and a TLB flush on every CPU). With eight guests starting, fork
 * was half of the loop's time. */
pid_t
child_spawn(const struct child_spawn_opts *o)
{
	sigset_t all, old;
	pid_t pid;
	int e;

	pthread_mutex_lock(&spawn_lock);
	if (spawn_stack_top == NULL) {
		char *m = mmap(NULL, SPAWN_GUARD_SIZE + SPAWN_STACK_SIZE, PROT_NONE,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

		if (m == MAP_FAILED || mprotect(m + SPAWN_GUARD_SIZE, SPAWN_STACK_SIZE,
		    PROT_READ | PROT_WRITE) < 0) {
			e = errno;
			if (m != MAP_FAILED)
				munmap(m, SPAWN_GUARD_SIZE + SPAWN_STACK_SIZE);
			pthread_mutex_unlock(&spawn_lock);
			return -e;
		}
		spawn_stack_top = m + SPAWN_GUARD_SIZE + SPAWN_STACK_SIZE;
	}
	/* Signals blocked across the clone so the child cannot run our
	 * handlers (libevent's signal pipe) before it resets them. */
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &old);
	pid = clone(child_spawn_main, spawn_stack_top, CLONE_VM | CLONE_VFORK | SIGCHLD,
	    (void *)o);
	e = errno;
	sigprocmask(SIG_SETMASK, &old, NULL);
	pthread_mutex_unlock(&spawn_lock);
	return pid < 0 ? -e : pid;
}

static void
child_watch_cb(evutil_socket_t fd, short what, void *arg)
{
	struct child_watch *w = arg;
	int status = -1;
	pid_t r;

	do
		r = waitpid(w->pid, &status, WNOHANG);
	while (r < 0 && errno == EINTR);
	if (r == 0)
		return;	/* spurious: not exited yet */
	if (r < 0)
		status = -1;	/* not our child: an adopted process */
	event_del(w->ev);
	w->fn(w->ctx, w->pid, status);
}

struct child_watch *
child_watch_new(struct event_base *base, pid_t pid, child_exit_fn fn, void *ctx)
{
	struct child_watch *w;
	int fd = pidfd_open_compat(pid);

	if (fd < 0)
		return NULL;
	fcntl(fd, F_SETFD, FD_CLOEXEC);
	w = calloc(1, sizeof(*w));
	if (w == NULL) {
		close(fd);
		errno = ENOMEM;
		return NULL;
	}
	w->pidfd = fd;
	w->pid = pid;
	w->fn = fn;
	w->ctx = ctx;
	w->ev = event_new(base, fd, EV_READ | EV_PERSIST, child_watch_cb, w);
	if (w->ev == NULL || event_add(w->ev, NULL) < 0) {
		child_watch_free(w);
		errno = ENOMEM;
		return NULL;
	}
	return w;
}

int
child_watch_kill(struct child_watch *w, int sig)
{
	if (w == NULL || w->pidfd < 0) {
		errno = ESRCH;
		return -1;
	}
	return (int)syscall(SYS_pidfd_send_signal, w->pidfd, sig, NULL, 0);
}

void
child_watch_free(struct child_watch *w)
{
	if (w == NULL)
		return;
	if (w->ev != NULL)
		event_free(w->ev);
	if (w->pidfd >= 0)
		close(w->pidfd);
	free(w);
}

/* ---- child_run ---- */

struct child_run {
	struct event_base *base;
	struct event *out_ev;
	struct child_watch *watch;
	int out_fd;
	char output[4096];
	size_t len;
	int status;
	bool exited, eof;
	child_run_fn done;
	void *ctx;
	struct child_run *prev, *next;	/* in running_helpers */
};

/* Every child_run not finished yet, so teardown can let go of them. */
static struct child_run *running_helpers;

static void
child_run_release(struct child_run *r)
{
	if (r->prev != NULL)
		r->prev->next = r->next;
	else
		running_helpers = r->next;
	if (r->next != NULL)
		r->next->prev = r->prev;
	event_free(r->out_ev);
	close(r->out_fd);
	child_watch_free(r->watch);
	free(r);
}

static void
child_run_finish(struct child_run *r)
{
	if (!r->exited || !r->eof)
		return;
	r->output[r->len] = '\0';
	r->done(r->ctx, r->status, r->output);
	child_run_release(r);
}

void
child_runs_forget(struct event_base *base)
{
	struct child_run *r = running_helpers, *next;

	for (; r != NULL; r = next) {
		next = r->next;
		if (r->base == base)
			child_run_release(r);
	}
}

static void
child_run_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct child_run *r = arg;
	char buf[4096];
	ssize_t n = read(fd, buf, sizeof(buf));

	if (n > 0) {
		/* Keep the last bytes: errors come at the end. */
		size_t room = sizeof(r->output) - 1;
		if ((size_t)n >= room) {
			memcpy(r->output, buf + n - room, room);
			r->len = room;
		} else {
			if (r->len + (size_t)n > room) {
				size_t drop = r->len + (size_t)n - room;
				memmove(r->output, r->output + drop, r->len - drop);
				r->len -= drop;
			}
			memcpy(r->output + r->len, buf, (size_t)n);
			r->len += (size_t)n;
		}
		return;
	}
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	r->eof = true;
	event_del(r->out_ev);
	child_run_finish(r);
}

static void
child_run_exit_cb(void *ctx, pid_t pid, int status)
{
	struct child_run *r = ctx;

	r->exited = true;
	r->status = status;
	child_run_finish(r);
}

int
child_run(struct event_base *base, const char *const *argv, child_run_fn done, void *ctx)
{
	return child_run_keep(base, argv, NULL, 0, done, ctx);
}

int
child_run_keep(struct event_base *base, const char *const *argv, const int *keep_fds,
    size_t nkeep, child_run_fn done, void *ctx)
{
	struct child_spawn_opts o = { .argv = argv, .keep_fds = keep_fds, .nkeep = nkeep };
	struct child_run *r;
	int pipefd[2];
	pid_t pid;

	if ((r = calloc(1, sizeof(*r))) == NULL)
		return -ENOMEM;
	if (pipe2(pipefd, O_CLOEXEC | O_NONBLOCK) < 0) {
		int e = errno;
		free(r);
		return -e;
	}
	o.stdout_fd = pipefd[1];
	o.stderr_fd = pipefd[1];
	pid = child_spawn(&o);
	close(pipefd[1]);
	if (pid < 0) {
		close(pipefd[0]);
		free(r);
		return (int)pid;
	}
	r->base = base;
	r->out_fd = pipefd[0];
	r->done = done;
	r->ctx = ctx;
	r->next = running_helpers;
	if (running_helpers != NULL)
		running_helpers->prev = r;
	running_helpers = r;
	r->out_ev = event_new(base, r->out_fd, EV_READ | EV_PERSIST, child_run_read_cb, r);
	event_add(r->out_ev, NULL);
	r->watch = child_watch_new(base, pid, child_run_exit_cb, r);
	if (r->watch == NULL) {
		/* Exited and reaped before we could watch: impossible for our
		 * own unreaped child, so this is a real error. */
		log_warn("cannot watch helper process %d", (int)pid);
		kill(pid, SIGKILL);
		waitpid(pid, &r->status, 0);
		r->exited = true;
		child_run_finish(r);
	}
	return 0;
}

/* ---- child_call ---- */

struct child_call {
	struct event *out_ev;
	struct child_watch *watch;
	pid_t pid;
	int out_fd;
	unsigned char out[CHILD_CALL_MAX];
	size_t len, max;
	int status;
	bool exited, eof;
	child_call_done_fn done;
	void *ctx;
};

static void
child_call_free(struct child_call *c)
{
	if (c->out_ev != NULL)
		event_free(c->out_ev);
	if (c->out_fd >= 0)
		close(c->out_fd);
	child_watch_free(c->watch);
	free(c);
}

static void
child_call_finish(struct child_call *c)
{
	if (!c->exited || !c->eof)
		return;
	c->done(c->ctx, c->status, c->out, c->len);
	child_call_free(c);
}

static void
child_call_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct child_call *c = arg;
	unsigned char discard[512];
	ssize_t n;

	if (c->len < c->max)
		n = read(fd, c->out + c->len, c->max - c->len);
	else
		n = read(fd, discard, sizeof(discard));	/* more than promised: dropped */
	if (n > 0) {
		if (c->len < c->max)
			c->len += (size_t)n;
		return;
	}
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	c->eof = true;
	event_del(c->out_ev);
	child_call_finish(c);
}

static void
child_call_exit_cb(void *ctx, pid_t pid, int status)
{
	struct child_call *c = ctx;

	c->exited = true;
	c->status = status;
	child_call_finish(c);
}

struct child_call *
child_call_start(struct event_base *base, child_call_fn fn, void *arg, size_t len,
    child_call_done_fn done, void *ctx)
{
	struct child_call *c;
	sigset_t all, old;
	int pipefd[2], e;

	if (len > CHILD_CALL_MAX) {
		errno = EINVAL;
		return NULL;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return NULL;
	c->out_fd = -1;
	c->max = len;
	c->done = done;
	c->ctx = ctx;
	if (pipe2(pipefd, O_CLOEXEC | O_NONBLOCK) < 0) {
		e = errno;
		free(c);
		errno = e;
		return NULL;
	}
	c->out_fd = pipefd[0];
	/* As in child_spawn: no handler of ours may run in the child. */
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &old);
	c->pid = fork();
	if (c->pid == 0) {
		unsigned char *out = calloc(1, len > 0 ? len : 1);
		size_t off = 0;

		for (int sig = 1; sig < NSIG; sig++)
			signal(sig, SIG_DFL);
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		if (out == NULL)
			_exit(70);
		/* Hold none of emberd's connections open meanwhile: only the
		 * pipe back (close_range is best effort; fn opens its own). */
		syscall(SYS_close_range, 3, (unsigned)pipefd[1] - 1, 0);
		syscall(SYS_close_range, (unsigned)pipefd[1] + 1, ~0U, 0);
		fcntl(pipefd[1], F_SETFL, 0);	/* blocking writes in the child */
		fn(arg, out, len);
		while (off < len) {
			ssize_t n = write(pipefd[1], out + off, len - off);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				_exit(71);
			off += (size_t)n;
		}
		_exit(0);
	}
	e = errno;
	sigprocmask(SIG_SETMASK, &old, NULL);
	close(pipefd[1]);
	if (c->pid < 0) {
		child_call_free(c);
		errno = e;
		return NULL;
	}
	c->out_ev = event_new(base, c->out_fd, EV_READ | EV_PERSIST, child_call_read_cb, c);
	c->watch = child_watch_new(base, c->pid, child_call_exit_cb, c);
	if (c->out_ev == NULL || event_add(c->out_ev, NULL) < 0 || c->watch == NULL) {
		e = c->watch == NULL ? errno : ENOMEM;
		kill(c->pid, SIGKILL);
		while (waitpid(c->pid, NULL, 0) < 0 && errno == EINTR)
			;
		child_call_free(c);
		errno = e;
		return NULL;
	}
	return c;
}

void
child_call_cancel(struct child_call *c)
{
	if (c == NULL)
		return;
	if (!c->exited) {
		child_watch_kill(c->watch, SIGKILL);
		while (waitpid(c->pid, NULL, 0) < 0 && errno == EINTR)
			;
	}
	child_call_free(c);
}

void
file_tail(const char *path, size_t max, char *out, size_t outlen)
{
	/* Only a regular file of emberd's own: a name planted in a VM's
	 * directory (a symlink to a secret, a FIFO) is never read. */
	int fd = guard_open_read(AT_FDCWD, path);
	FILE *f = fd >= 0 ? fdopen(fd, "re") : NULL;
	long size, start;
	size_t n;

	out[0] = '\0';
	if (f == NULL) {
		if (fd >= 0)
			close(fd);
		return;
	}
	if (max >= outlen)
		max = outlen - 1;
	fseek(f, 0, SEEK_END);
	size = ftell(f);
	start = size > (long)max ? size - (long)max : 0;
	fseek(f, start, SEEK_SET);
	n = fread(out, 1, max, f);
	out[n] = '\0';
	fclose(f);
	/* Start at a line boundary and drop control characters. */
	if (start > 0) {
		char *nl = strchr(out, '\n');
		if (nl != NULL)
			memmove(out, nl + 1, strlen(nl + 1) + 1);
	}
	for (char *p = out; *p; p++)
		if ((unsigned char)*p < 0x20 && *p != '\n')
			*p = ' ';
	n = strlen(out);
	while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == ' '))
		out[--n] = '\0';
}

const char *
child_status_text(int status, char *buf, size_t len)
{
	if (status == -1)
		snprintf(buf, len, "exited (status unknown: emberd re-adopted it after a restart)");
	else if (WIFEXITED(status))
		snprintf(buf, len, "exited with status %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, len, "killed by signal %d (%s)", WTERMSIG(status),
		    strsignal(WTERMSIG(status)));
	else
		snprintf(buf, len, "ended (wait status 0x%x)", (unsigned)status);
	return buf;
}

static int
open_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	return fd < 0 ? -errno : fd;
}

/* The VM directory is writable by the VM's owner (see dir-guard.c): every
 * name here is opened relative to the directory, never followed, and
 * created afresh (O_EXCL) when what is there is not emberd's own file. */
int
console_open(const char *dir, uid_t reader, struct ember_error *err)
{
	struct stat st;
	int dfd, fd, r;

	if ((dfd = open_dir(dir)) < 0)
		return ember_error_set(err, EK_IO, NULL, "cannot open %s: %s", dir, strerror(-dfd));
	if (fstatat(dfd, "console.log", &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	    guard_is_own_file(dfd, "console.log") && st.st_size > CONSOLE_MAX_BYTES)
		renameat(dfd, "console.log", dfd, "console.log.1");
	fd = guard_open_append(dfd, "console.log", 0640);
	close(dfd);
	if (fd < 0)
		return ember_error_set(err, EK_IO, "remove whatever is in the way and start again",
		    "cannot open %s/console.log: %s", dir,
		    fd == -EEXIST ? "something else took its place while it was created" :
		    strerror(-fd));
	if ((r = guard_grant_fd(fd, reader, GUARD_R)) < 0)
		log_debug("console: cannot let uid %u read %s/console.log: %s",
		    (unsigned)reader, dir, strerror(-r));
	return fd;
}

/* The ACL of from (the owner's read access) onto to. */
static void
copy_acl(int from, int to)
{
	char acl[256];
	ssize_t n = fgetxattr(from, "system.posix_acl_access", acl, sizeof(acl));

	if (n > 0 && fsetxattr(to, "system.posix_acl_access", acl, (size_t)n, 0) < 0)
		log_debug("console: cannot copy the console's ACL: %s", strerror(errno));
}

int
console_trim(const char *dir)
{
	struct stat st;
	int dfd, in = -1, out = -1, r = 0;

	if ((dfd = open_dir(dir)) < 0)
		return dfd;
	if (fstatat(dfd, "console.log", &st, AT_SYMLINK_NOFOLLOW) < 0) {
		r = errno == ENOENT ? 0 : -errno;
		goto done;
	}
	if (!guard_is_own_file(dfd, "console.log") || st.st_size <= CONSOLE_MAX_BYTES)
		goto done;	/* not emberd's: the next start replaces it */
	in = openat(dfd, "console.log", O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	out = guard_open_append(dfd, "console.log.1", 0640);
	if (in < 0 || out < 0 || ftruncate(out, 0) < 0) {
		r = in < 0 ? -errno : out < 0 ? out : -errno;
		goto done;
	}
	copy_acl(in, out);
	/* Keep the newest part for whoever reads the logs later. */
	off_t from = st.st_size - CONSOLE_KEEP_BYTES;
	char buf[65536];
	ssize_t n;
	while ((n = pread(in, buf, sizeof(buf), from)) > 0) {
		if (write(out, buf, (size_t)n) != n) {
			r = -EIO;
			goto done;
		}
		from += n;
	}
	if (ftruncate(in, 0) < 0)
		r = -errno;
	else
		r = 1;
done:
	if (in >= 0)
		close(in);
	if (out >= 0)
		close(out);
	close(dfd);
	return r;
}

void
console_reason(const char *dir, char *out, size_t len)
{
	char path[PATH_MAX], tail[600];

	snprintf(path, sizeof(path), "%s/console.log", dir);
	file_tail(path, 400, tail, sizeof(tail));
	snprintf(out, len, "last console lines: %s", tail[0] ? tail : "(none)");
}
