/*
 * The hypervisor process shared by the Linux backends (see hv-process.h):
 * spawn, pidfd watch, pid and start-time identity, the stop ladder and the
 * routing of the operation in flight.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>

#include "child.h"
#include "hv-process.h"
#include "log.h"
#include "platform.h"

struct hv_process {
	struct event_base *base;
	const struct hv_process_ops *ops;
	void *ctx;
	pid_t pid;
	struct child_watch *watch;
	struct event *timer;		/* start deadline, or the ladder's next rung */
	struct event *tick;		/* the backend's polling while starting */
	void (*tick_fn)(void *ctx);
	unsigned tick_ms;
	enum hv_op op;
	backend_done_fn done;
	void *vm_ctx;
	int stop_stage;			/* 0 asked the guest, 1 asked to quit, 2 SIGKILL */
	unsigned grace_s;
};

static void hv_timer_cb(evutil_socket_t fd, short what, void *arg);
static void hv_tick_cb(evutil_socket_t fd, short what, void *arg);

static void
hv_exit_cb(void *arg, pid_t pid, int status)
{
	struct hv_process *p = arg;

	p->ops->exited(p->ctx, pid, status);
}

static struct hv_process *
hv_new(struct event_base *base, const struct hv_process_ops *ops, void *ctx, void *vm_ctx,
    pid_t pid)
{
	struct hv_process *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return NULL;
	p->base = base;
	p->ops = ops;
	p->ctx = ctx;
	p->vm_ctx = vm_ctx;
	p->pid = pid;
	p->timer = evtimer_new(base, hv_timer_cb, p);
	p->tick = evtimer_new(base, hv_tick_cb, p);
	if (p->timer == NULL || p->tick == NULL) {
		hv_process_free(p);
		return NULL;
	}
	return p;
}

void
hv_process_free(struct hv_process *p)
{
	if (p == NULL)
		return;
	child_watch_free(p->watch);
	if (p->timer != NULL)
		event_free(p->timer);
	if (p->tick != NULL)
		event_free(p->tick);
	free(p);
}

pid_t
hv_process_pid(const struct hv_process *p)
{
	return p->pid;
}

int
hv_process_spawn(struct event_base *base, const struct hv_process_ops *ops, void *ctx,
    void *vm_ctx, const char *const *argv, int console_fd, const int *keep_fds, size_t nkeep,
    struct vm_record *rec, struct hv_process **out, struct ember_error *err)
{
	return hv_process_spawn_as(base, ops, ctx, vm_ctx, argv, console_fd, keep_fds, nkeep, NULL,
	    rec, out, err);
}

int
hv_process_spawn_as(struct event_base *base, const struct hv_process_ops *ops, void *ctx,
    void *vm_ctx, const char *const *argv, int console_fd, const int *keep_fds, size_t nkeep,
    const struct hv_creds *creds, struct vm_record *rec, struct hv_process **out,
    struct ember_error *err)
{
	struct child_spawn_opts o = {
		.argv = argv, .stdout_fd = console_fd, .stderr_fd = console_fd,
		.keep_fds = keep_fds, .nkeep = nkeep, .new_session = true,
		.join_vm_cgroup = true,
	};
	struct hv_process *p = hv_new(base, ops, ctx, vm_ctx, 0);
	pid_t pid;
	int e;

	if (p == NULL)
		return ember_error_set(err, EK_BACKEND_ERROR, "retry when emberd has memory to spare",
		    "cannot start %s: out of memory", ops->label);
	if (creds != NULL) {
		o.drop_creds = true;
		o.uid = creds->uid;
		o.gid = creds->gid;
		o.groups = creds->groups;
		o.ngroups = creds->ngroups;
		o.own_dev_tun = creds->own_dev_tun;
	}
	pid = child_spawn(&o);
	if (pid < 0) {
		hv_process_free(p);
		return ember_error_set(err, EK_BACKEND_ERROR,
		    pid == -EAGAIN || pid == -ENOMEM ? "the host is out of processes or memory" : NULL,
		    "cannot start %s (%s): %s", ops->label, argv[0], strerror((int)-pid));
	}
	p->pid = pid;
	p->watch = child_watch_new(base, pid, hv_exit_cb, p);
	if (p->watch == NULL) {
		/* Without a pidfd we could not tell when it ends: do not let it run. */
		e = errno;
		kill(pid, SIGKILL);
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
		hv_process_free(p);
		return ember_error_set(err, EK_BACKEND_ERROR,
		    e == EMFILE || e == ENFILE ? "emberd is out of file descriptors; "
		    "stop some VMs or raise its limit (LimitNOFILE)" : NULL,
		    "cannot watch %s (pid %d): %s", ops->label, (int)pid, strerror(e));
	}
	rec->pid = pid;
	if (platform_process_start_time(pid, &rec->pid_start_time) < 0)
		rec->pid_start_time = 0;
	*out = p;
	return 0;
}

int
hv_process_adopt(struct event_base *base, const struct hv_process_ops *ops, void *ctx,
    void *vm_ctx, struct vm_record *rec, struct hv_process **out, struct ember_error *err)
{
	struct hv_process *p;

	if (rec->pid <= 0 || platform_process_matches(rec->pid, rec->pid_start_time) != 1)
		return ember_error_set(err, EK_BACKEND_ERROR, NULL,
		    "%s (pid %d) is gone; it ended while emberd was not running", ops->label,
		    (int)rec->pid);
	if ((p = hv_new(base, ops, ctx, vm_ctx, rec->pid)) == NULL)
		return ember_error_set(err, EK_BACKEND_ERROR, NULL,
		    "cannot re-adopt %s (pid %d): out of memory", ops->label, (int)rec->pid);
	p->watch = child_watch_new(base, rec->pid, hv_exit_cb, p);
	if (p->watch == NULL) {
		int e = errno;
		hv_process_free(p);
		return ember_error_set(err, EK_BACKEND_ERROR, NULL, "%s (pid %d) %s", ops->label,
		    (int)rec->pid, e == ESRCH ? "is gone" : strerror(e));
	}
	*out = p;
	return 0;
}

void
hv_process_kill(struct hv_process *p, int sig)
{
	if (child_watch_kill(p->watch, sig) < 0 && errno != ESRCH)
		log_warn("%s: kill %d", p->ops->label, (int)p->pid);
}

/* ---- the operation in flight ---- */

int
hv_op_begin(struct hv_process *p, enum hv_op op, backend_done_fn done,
    struct ember_error *err)
{
	if (p->op != HV_OP_NONE)
		return ember_error_set(err, EK_BUSY, "wait for it to finish and retry",
		    "%s is busy with another operation", p->ops->label);
	p->op = op;
	p->done = done;
	return 0;
}

enum hv_op
hv_op_current(const struct hv_process *p)
{
	return p->op;
}

void
hv_op_finish(struct hv_process *p, const struct ember_error *err)
{
	backend_done_fn done = p->done;
	void *vm_ctx = p->vm_ctx;

	p->op = HV_OP_NONE;
	p->done = NULL;
	evtimer_del(p->timer);
	evtimer_del(p->tick);
	if (done != NULL)
		done(vm_ctx, err);
}

void
hv_process_start_deadline(struct hv_process *p, unsigned ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	evtimer_add(p->timer, &tv);
}

void
hv_process_start_tick(struct hv_process *p, unsigned ms, void (*fn)(void *ctx))
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	p->tick_fn = fn;
	p->tick_ms = ms;
	evtimer_add(p->tick, &tv);
}

static void
hv_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct hv_process *p = arg;

	if (p->op == HV_OP_START && p->tick_fn != NULL)
		p->tick_fn(p->ctx);
}

/* ---- the stop ladder ---- */

static void
hv_ladder_at(struct hv_process *p, unsigned s)
{
	struct timeval tv = { s, 0 };

	evtimer_add(p->timer, &tv);
}

static void
hv_rung_quit(struct hv_process *p)
{
	p->stop_stage = 1;
	if (p->ops->ask_quit == NULL || p->ops->ask_quit(p->ctx) < 0)
		hv_process_kill(p, SIGTERM);
	hv_ladder_at(p, p->grace_s);
}

void
hv_process_stop(struct hv_process *p, bool force, bool paused, unsigned timeout_s,
    unsigned grace_s)
{
	evtimer_del(p->tick);
	evtimer_del(p->timer);
	p->grace_s = grace_s;
	if (force || timeout_s == 0) {
		p->stop_stage = 2;
		hv_process_kill(p, SIGKILL);
		return;
	}
	/* A paused guest cannot act on a shutdown request: waiting for it
	 * would only spend the whole timeout. */
	if (!paused && p->ops->ask_guest != NULL && p->ops->ask_guest(p->ctx) == 0) {
		p->stop_stage = 0;
		hv_ladder_at(p, timeout_s);
		return;
	}
	hv_rung_quit(p);
}

static void
hv_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct hv_process *p = arg;

	if (p->op == HV_OP_START) {
		if (p->ops->start_timeout != NULL)
			p->ops->start_timeout(p->ctx);
		return;
	}
	if (p->op != HV_OP_STOP)
		return;
	if (p->stop_stage == 0) {
		log_info("%s (pid %d) did not shut down in time; asking it to quit", p->ops->label,
		    (int)p->pid);
		hv_rung_quit(p);
		return;
	}
	p->stop_stage = 2;
	log_info("%s (pid %d) still running; killing it", p->ops->label, (int)p->pid);
	hv_process_kill(p, SIGKILL);
}

/* ---- exits ---- */

struct hv_exit
hv_process_take_exit(struct hv_process *p, int wait_status)
{
	struct hv_exit x = { p->op, p->done, wait_status };

	p->op = HV_OP_NONE;
	p->done = NULL;
	evtimer_del(p->timer);
	evtimer_del(p->tick);
	return x;
}

void
hv_route_exit(const struct backend_host *host, void *vm_ctx, const struct hv_exit *x,
    const struct ember_error *start_error, const char *reason, const char *label)
{
	if (x->op == HV_OP_START) {
		if (x->done != NULL)
			x->done(vm_ctx, start_error);
		return;
	}
	host->exited(vm_ctx, x->wait_status,
	    x->wait_status == 0 || x->op == HV_OP_STOP ? NULL : reason);
	/* A stop is done; any other operation was cut short by the exit. */
	if (x->done != NULL && x->op == HV_OP_STOP)
		x->done(vm_ctx, NULL);
	else if (x->done != NULL) {
		struct ember_error err = { 0 };
		ember_error_set(&err, EK_BACKEND_ERROR, NULL, "%s exited during the operation",
		    label);
		x->done(vm_ctx, &err);
	}
}
