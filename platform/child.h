/*
 * Child processes on the event loop. Hypervisors are spawned in their own
 * session (so a terminal's signals and emberd's own death leave them
 * running) and watched through a pidfd, which also works for processes
 * emberd re-adopts after a restart and therefore did not spawn. Helper
 * commands (qemu-img, mkfs.ext4, cp) run the same way with a completion
 * callback, so nothing blocks the loop.
 */
#ifndef EMBER_CHILD_H
#define EMBER_CHILD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct event_base;
struct child_watch;

/* wait_status as from waitpid, or -1 when the process was not our child
 * (adopted) and its status cannot be known. */
typedef void (*child_exit_fn)(void *ctx, pid_t pid, int wait_status);

struct child_spawn_opts {
	const char *const *argv;
	int stdout_fd;		/* -1: /dev/null */
	int stderr_fd;		/* -1: /dev/null */
	const int *keep_fds;	/* inherited without CLOEXEC, same numbers */
	size_t nkeep;
	bool new_session;
	/* Runs as uid/gid with exactly groups[ngroups] (none when 0) and
	 * PR_SET_NO_NEW_PRIVS; false: emberd's own credentials. */
	bool drop_creds;
	uid_t uid;
	gid_t gid;
	const gid_t *groups;
	size_t ngroups;
	/* With drop_creds: runs in a private mount namespace where
	 * /dev/net/tun is a fresh node of the host's device, 0600 and uid's,
	 * for a TAP opened by name on a host whose node only root may open. */
	bool own_dev_tun;
	/* Joins the hypervisors' cgroup (vm-cgroup.h) before exec, where
	 * there is one; a failure to join leaves it in emberd's. */
	bool join_vm_cgroup;
};

/* fork+exec; returns the pid or -errno. exec failures, and failures to
 * take on drop_creds' credentials, show up as exit status 127 with a
 * message on stderr_fd (nothing runs with credentials half dropped). */
pid_t child_spawn(const struct child_spawn_opts *opts);

/* Watches pid (ours or adopted) and calls fn once when it exits. NULL with
 * errno ESRCH when it is already gone. */
struct child_watch *child_watch_new(struct event_base *base, pid_t pid,
    child_exit_fn fn, void *ctx);
/* Sends sig to the watched process through its pidfd, so a pid the
 * system has reused is never hit. 0 or -1 with errno. */
int child_watch_kill(struct child_watch *w, int sig);
/* Stops watching (the process is left alone). */
void child_watch_free(struct child_watch *w);

/* Runs argv to completion in the background; output (stdout+stderr, last
 * 4 KiB) is handed to done with the wait status. */
typedef void (*child_run_fn)(void *ctx, int wait_status, const char *output);
int child_run(struct event_base *base, const char *const *argv,
    child_run_fn done, void *ctx);
/* child_run with keep_fds inherited (same numbers), e.g. for a helper that
 * reads a file emberd opened through /proc/self/fd/N. */
int child_run_keep(struct event_base *base, const char *const *argv,
    const int *keep_fds, size_t nkeep, child_run_fn done, void *ctx);
/* At teardown, before base is freed: lets go of every child_run on base
 * without calling its done; the processes themselves run on (an nft
 * transaction completes, a copy is cleaned up at the next start). */
void child_runs_forget(struct event_base *base);

/* Runs fn(arg, out, len) in a forked copy of emberd (no exec: fn must only
 * compute and write into out, up to len bytes, then return) and hands what
 * it wrote to done on the loop, with the child's wait status; for work that
 * may block (a probe running `binary --version`, a disk copy and its
 * fsync). done gets len 0 when the child died or wrote nothing. Returns a
 * handle, or NULL with errno (EAGAIN, EMFILE, ENOMEM: the caller fails its
 * operation). len is at most CHILD_CALL_MAX. */
#define CHILD_CALL_MAX 4096
struct child_call;
typedef void (*child_call_fn)(void *arg, void *out, size_t len);
typedef void (*child_call_done_fn)(void *ctx, int wait_status, const void *out, size_t len);
struct child_call *child_call_start(struct event_base *base, child_call_fn fn, void *arg,
    size_t len, child_call_done_fn done, void *ctx);
/* Kills and reaps the child; done is not called. NULL is a no-op. */
void child_call_cancel(struct child_call *c);

/* Last lines of a text file (at most max bytes), for error messages; only
 * a regular file of emberd's own user is read (else out is ""). */
void file_tail(const char *path, size_t max, char *out, size_t outlen);

/* "exited with status 1", "killed by signal 9 (Killed)", or, for -1 (an
 * adopted process), that the status is unknown. Returns buf. */
const char *child_status_text(int wait_status, char *buf, size_t len);

/* Opens <dir>/console.log for appending, where a hypervisor's console and
 * messages go; a log past CONSOLE_MAX_BYTES moves to console.log.1 first.
 * Only emberd's own file is reused: anything else under that name (the VM
 * owner may write in dir) is replaced by a new file. reader (the VM's
 * owner) may read it. The fd, or -1 with err. */
#define CONSOLE_MAX_BYTES (8 * 1024 * 1024)
struct ember_error;
int console_open(const char *dir, uid_t reader, struct ember_error *err);
/* Keeps a running VM's console.log under CONSOLE_MAX_BYTES: when it is
 * larger, its last CONSOLE_KEEP_BYTES go to console.log.1 and the file is
 * truncated; the hypervisor appends (O_APPEND), so it carries on at the new
 * end. Returns 1 when it trimmed, 0 when not needed, -errno on failure. */
#define CONSOLE_KEEP_BYTES (1024 * 1024)
int console_trim(const char *dir);
/* "last console lines: ..." from <dir>/console.log, for failure reasons. */
void console_reason(const char *dir, char *out, size_t len);

#endif
