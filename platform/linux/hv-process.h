/*
 * The hypervisor process, as every Linux backend runs it: spawned in its
 * own session with its console on console.log, watched through a pidfd,
 * identified by pid and start time in the VM record (so a later emberd
 * re-adopts only that very process), stopped by one ladder (ask the guest,
 * then ask the hypervisor or SIGTERM, then SIGKILL), and the operation in
 * flight (start, stop, pause, resume) routed to its done callback exactly
 * once, including when the process dies under it. A backend keeps its
 * control channel (QMP, Firecracker's API) and tells this helper how to
 * ask politely; everything about the process is here.
 */
#ifndef EMBER_HV_PROCESS_H
#define EMBER_HV_PROCESS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "backend.h"

struct event_base;
struct hv_process;

enum hv_op { HV_OP_NONE, HV_OP_START, HV_OP_STOP, HV_OP_PAUSE, HV_OP_RESUME };

struct hv_process_ops {
	const char *label;	/* "QEMU", "Firecracker": messages */
	/* Stop ladder, first rung: asks the guest to shut down (ACPI
	 * powerdown, CtrlAltDel). 0 when asked; < 0 goes on to the next rung
	 * at once. NULL: no such rung. */
	int (*ask_guest)(void *ctx);
	/* Second rung: asks the hypervisor to quit (QMP quit). < 0 or NULL:
	 * SIGTERM instead. */
	int (*ask_quit)(void *ctx);
	/* The start deadline passed (hv_process_start_deadline). */
	void (*start_timeout)(void *ctx);
	/* The process exited: the backend drops its channels and sockets and
	 * may free ctx; it then calls hv_route_exit with what it kept. */
	void (*exited)(void *ctx, pid_t pid, int wait_status);
};

/* Spawns argv in a new session with stdout and stderr on console_fd and
 * keep_fds inherited, records pid and start time in rec and watches it;
 * ctx is the backend's (for ops), vm_ctx the daemon's (for done).
 * 0, or -1 with err (fork failing, no fd left for the pidfd: the process,
 * if any, is killed and reaped). */
int hv_process_spawn(struct event_base *base, const struct hv_process_ops *ops, void *ctx,
    void *vm_ctx, const char *const *argv, int console_fd, const int *keep_fds, size_t nkeep,
    struct vm_record *rec, struct hv_process **out, struct ember_error *err);
/* Whom a hypervisor runs as when not as emberd (root): the VM's owner,
 * so whatever it opens or connects to by path, it does with the owner's
 * rights. groups are all its supplementary groups (none when ngroups is 0). */
struct hv_creds {
	uid_t uid;
	gid_t gid;
	const gid_t *groups;
	size_t ngroups;
	bool own_dev_tun;	/* a private /dev/net/tun uid may open (child.h) */
};
/* hv_process_spawn running argv with creds (NULL: emberd's own), set for
 * good in the child before exec, with PR_SET_NO_NEW_PRIVS; when they cannot
 * be taken on, the process exits 127 before exec with the reason on
 * console_fd. */
int hv_process_spawn_as(struct event_base *base, const struct hv_process_ops *ops, void *ctx,
    void *vm_ctx, const char *const *argv, int console_fd, const int *keep_fds, size_t nkeep,
    const struct hv_creds *creds, struct vm_record *rec, struct hv_process **out,
    struct ember_error *err);
/* Re-attaches to rec->pid when its start time still matches. 0, or -1
 * with err when it is gone (or cannot be watched). */
int hv_process_adopt(struct event_base *base, const struct hv_process_ops *ops, void *ctx,
    void *vm_ctx, struct vm_record *rec, struct hv_process **out, struct ember_error *err);
/* Stops watching; the process is left alone. NULL is a no-op. */
void hv_process_free(struct hv_process *p);
pid_t hv_process_pid(const struct hv_process *p);
/* Signals it through the pidfd (never a recycled pid). */
void hv_process_kill(struct hv_process *p, int sig);

/* The operation in flight. begin refuses a second one (EK_BUSY); finish
 * clears it, cancels the ladder and the start deadline, then calls done. */
int hv_op_begin(struct hv_process *p, enum hv_op op, backend_done_fn done,
    struct ember_error *err);
enum hv_op hv_op_current(const struct hv_process *p);
void hv_op_finish(struct hv_process *p, const struct ember_error *err);
/* Calls ops->start_timeout after ms unless the start finishes first. */
void hv_process_start_deadline(struct hv_process *p, unsigned ms);
/* A repeating tick while starting (polling for an API socket). */
void hv_process_start_tick(struct hv_process *p, unsigned ms, void (*fn)(void *ctx));

/* The stop ladder, as the operation in flight (begin it with HV_OP_STOP
 * first): force sends SIGKILL at once; otherwise ask_guest (skipped when
 * the guest is paused and cannot act on it) and timeout_s to comply, then
 * ask_quit or SIGTERM and grace_s, then SIGKILL. Completes when the
 * process exits. */
void hv_process_stop(struct hv_process *p, bool force, bool paused, unsigned timeout_s,
    unsigned grace_s);

/* What the backend keeps of a process that exited, for hv_route_exit. */
struct hv_exit {
	enum hv_op op;
	backend_done_fn done;
	int wait_status;
};
/* Takes the operation in flight out of p (call from ops->exited before
 * freeing p). */
struct hv_exit hv_process_take_exit(struct hv_process *p, int wait_status);
/* Routes an exit: a start in flight fails with start_error; otherwise the
 * daemon hears host->exited (with reason unless the exit was clean or
 * asked for) and then a stop completes and any other operation fails. */
void hv_route_exit(const struct backend_host *host, void *vm_ctx, const struct hv_exit *x,
    const struct ember_error *start_error, const char *reason, const char *label);

#endif
