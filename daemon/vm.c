/*
 * VM registry and lifecycle (see vm.h); writing state and the repair at
 * startup are in vm-store.c.
 *
 * On-disk ordering is what makes a kill -9 at any point recoverable. The
 * writes are queued to the group-commit writer (durable.c keeps them in
 * this order on disk) and a reply waits until its operation's last write
 * is durable:
 *  - create: vms/<name>/ (made on the loop) -> cids.json (with the new
 *    CID) -> vm.json -> sync of vms/; listed at once (busy with its
 *    create, so nothing else may act on it) and answered once durable. A
 *    directory without vm.json is a create that never finished; startup
 *    removes it and releases the CID nobody names.
 *  - delete: vms/<name> is renamed to vms/.trash-<id> (one atomic step),
 *    then the CID is released in cids.json, then the tree is removed. The
 *    CID is free in memory at once (a create reusing it writes its vm.json
 *    after this rename); the name stays taken until the rename is durable.
 *    Startup finishes any of these steps that a crash interrupted.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <event2/event.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "caller-open.h"
#include "child.h"
#include "cid-alloc.h"
#include "daemon.h"
#include "discard.h"
#include "durable.h"
#include "fsutil.h"
#include "image.h"
#include "log.h"
#include "quota.h"
#include "validate.h"
#include "vm.h"
#include "vm-events.h"
#include "vm-workload.h"
#include "vm-agent.h"
#include "vm-internal.h"
#include "vm-network.h"

#define VM_CPUS_MAX		64
#define VM_MEMORY_MIN_MIB	16
#define VM_MEMORY_MAX_MIB	(1024u * 1024)

static void vm_start_done(void *vm_ctx, const struct ember_error *err);
static void vm_stop_done(void *vm_ctx, const struct ember_error *err);
static void vm_stop_backend(struct vm *vm);
static void vm_stop_agent_reply(void *ctx, json_t *reply, const char *why);
static void vm_stop_agent_timeout(evutil_socket_t fd, short what, void *arg);
static void vm_remove(struct vm *vm);
static void vm_reap_later(struct vm *vm);
static void vm_done_ignore(void *ctx, json_t *result, const struct ember_error *err);
static void vm_created(struct vm *vm, bool start, vm_done_fn done, void *ctx);
static void vm_start_op(struct vm *vm, bool rollback_on_failure, vm_done_fn done,
    void *ctx);

/* ---- paths -------------------------------------------------------------- */

void
vm_dir(const struct ember_daemon *d, const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "%s/vms/%s", d->state_dir, name);
}

/* ---- registry ------------------------------------------------------- */

static int
vm_cmp_name(const void *key, const void *elem)
{
	return strcmp(key, (*(struct vm *const *)elem)->rec.name);
}

struct vm *
vm_find(struct ember_daemon *d, const char *name)
{
	struct vm **p;

	if (d->nvms == 0)
		return NULL;	/* bsearch must not see a NULL array */
	p = bsearch(name, d->vms, d->nvms, sizeof(*d->vms), vm_cmp_name);

	return p != NULL ? *p : NULL;
}

static size_t
vm_index_for(struct ember_daemon *d, const char *name)
{
	size_t lo = 0, hi = d->nvms;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (strcmp(d->vms[mid]->rec.name, name) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

void
vm_list_insert(struct ember_daemon *d, struct vm *vm)
{
	size_t i;

	if (d->nvms == d->vms_cap)
		fatalx("%s: no place kept for VM \"%s\" (vm_new keeps one)", __func__,
		    vm->rec.name);
	i = vm_index_for(d, vm->rec.name);
	memmove(&d->vms[i + 1], &d->vms[i], (d->nvms - i) * sizeof(*d->vms));
	d->vms[i] = vm;
	d->nvms++;
}

static void
vm_list_remove(struct ember_daemon *d, struct vm *vm)
{
	size_t i = vm_index_for(d, vm->rec.name);

	if (i < d->nvms && d->vms[i] == vm) {
		memmove(&d->vms[i], &d->vms[i + 1], (d->nvms - i - 1) * sizeof(*d->vms));
		d->nvms--;
	}
}

/* A VM and its place in d's table, kept from now on so that listing it
 * (often past the point where undoing is easy) needs no memory; NULL when
 * out of memory. */
struct vm *
vm_new(struct ember_daemon *d)
{
	struct vm *vm;

	if (d->vms_alive >= d->vms_cap) {
		size_t cap = d->vms_cap ? d->vms_cap * 2 : 64;
		struct vm **n;
		if ((n = realloc(d->vms, cap * sizeof(*n))) == NULL)
			return NULL;
		d->vms = n;
		d->vms_cap = cap;
	}
	if ((vm = calloc(1, sizeof(*vm))) == NULL)
		return NULL;
	d->vms_alive++;
	vm_record_init(&vm->rec);
	vm->daemon = d;
	return vm;
}

void
vm_free(struct vm *vm)
{
	if (vm == NULL)
		return;
	vm_agent_free(vm);
	vm_network_detach(vm);
	agent_call_cancel(vm->stop_call);
	if (vm->stop_timer != NULL)
		event_free(vm->stop_timer);
	vm_record_clear(&vm->rec);
	free(vm->load_error);
	vm->daemon->vms_alive--;
	free(vm);
}

json_t *
vm_to_json(const struct vm *vm)
{
	json_t *j = vm_record_to_json(&vm->rec), *agent = vm_agent_json(vm);

	if (j != NULL && agent != NULL)
		json_object_set_new(j, "agent", agent);
	else
		json_decref(agent);
	return j;
}

/* ---- state machine ---------------------------------------------------- */

bool
vm_has_process(const struct vm *vm)
{
	return vm->has_status && vm_status_has_process(vm->rec.status);
}

int
vm_lifecycle_enter(struct vm *vm, enum vm_event ev, const char *reason,
    struct ember_error *err)
{
	unsigned from = vm->has_status ? (unsigned)vm->rec.status : VM_LIFECYCLE_NEW;
	enum vm_status to;

	if (vm_lifecycle_next(from, ev, vm->rec.status, &to, err) < 0) {
		ember_error_prefix(err, "VM \"%s\"", vm->rec.name);
		return -1;
	}
	vm->has_status = true;
	vm->rec.status = to;
	if (reason != NULL || to == VM_RUNNING || to == VM_CREATED)
		vm_record_set_str(&vm->rec.reason, reason);
	if (ev != VM_EV_LOAD)	/* loading at startup changes nothing */
		vm_events_status(vm, from, ev, reason);
	return 0;
}

int
vm_transition(struct vm *vm, enum vm_event ev, const char *reason, struct ember_error *err)
{
	struct ember_error save_err = { 0 };
	enum vm_status old = vm->rec.status;

	if (vm_lifecycle_enter(vm, ev, reason, err) < 0) {
		log_warnx("%s", err->message);
		return -1;
	}
	if (reason != NULL)
		log_info("vm %s: %s -> %s (%s): %s", vm->rec.name, vm_status_name(old),
		    vm_status_name(vm->rec.status), vm_event_name(ev), reason);
	else
		log_info("vm %s: %s -> %s (%s)", vm->rec.name, vm_status_name(old),
		    vm_status_name(vm->rec.status), vm_event_name(ev));
	if (!vm_status_has_process(vm->rec.status))
		vm_network_down(vm);	/* no process: its TAP and rules go (saved below) */
	if (vm_save(vm, &save_err) < 0)
		log_warnx("vm %s: %s", vm->rec.name, save_err.message);
	if (vm->rec.status == VM_RUNNING)
		vm_agent_on_running(vm);
	else if (vm->rec.status != VM_PAUSED && vm->rec.status != VM_STARTING)
		vm_agent_on_down(vm, vm_status_name(vm->rec.status));
	daemon_status_changed(vm->daemon);
	return 0;
}

void
vm_transition_logged(struct vm *vm, enum vm_event ev, const char *reason)
{
	struct ember_error err = { 0 };

	(void)vm_transition(vm, ev, reason, &err);	/* vm_transition logged the refusal */
}

/* An answer held until the state it reports is durable. */
struct vm_answer {
	vm_done_fn done;
	void *ctx;
	json_t *result;
	bool failed;
	struct ember_error err;
};

static void
vm_answer_now(void *arg, int ignored)
{
	struct vm_answer *a = arg;

	a->done(a->ctx, a->result, a->failed ? &a->err : NULL);
	free(a);
}

/* Answers (result taken, or err) once every state write up to seq, the
 * operation's last, is durable: never before. */
static void
vm_answer(struct ember_daemon *d, uint64_t seq, vm_done_fn done, void *ctx, json_t *result,
    const struct ember_error *err)
{
	struct ember_error wait_err = { 0 };
	struct vm_answer *a = calloc(1, sizeof(*a));

	if (a == NULL) {
		json_decref(result);
		ember_error_set(&wait_err, EK_INTERNAL, NULL, "out of memory");
		done(ctx, NULL, &wait_err);
		return;
	}
	*a = (struct vm_answer){ .done = done, .ctx = ctx, .result = result };
	if (err != NULL && ember_error_is_set(err)) {
		a->failed = true;
		a->err = *err;
	}
	if (vm_store_wait(d, seq, vm_answer_now, a, &wait_err) < 0) {
		json_decref(result);
		done(ctx, NULL, &wait_err);
		free(a);
	}
}

/* Finishes the operation in flight and answers its client, if one still
 * waits, once the VM's state is durable. */
static void
vm_op_finish(struct vm *vm, const struct ember_error *err)
{
	vm_done_fn done = vm->op.done;
	void *ctx = vm->op.ctx;

	memset(&vm->op, 0, sizeof(vm->op));
	if (done == NULL)
		return;
	if (err != NULL && ember_error_is_set(err))
		vm_answer(vm->daemon, vm->durable_seq, done, ctx, NULL, err);
	else
		vm_answer(vm->daemon, vm->durable_seq, done, ctx, vm_to_json(vm), NULL);
}

static int
vm_op_begin(struct vm *vm, enum vm_op_kind kind, vm_done_fn done, void *ctx,
    struct ember_error *err)
{
	if (vm->op.kind != VM_OP_NONE)
		return ember_error_set(err, EK_BUSY, "wait for it to finish and retry",
		    "VM \"%s\" is busy with another operation (%s)", vm->rec.name,
		    vm_op_name(vm->op.kind));
	if (vm->load_error != NULL)
		return ember_error_set(err, EK_INVALID_STATE,
		    "repair or delete the VM (delete works on unreadable records)",
		    "VM \"%s\" has an unreadable record: %s", vm->rec.name, vm->load_error);
	if (vm->daemon->shutting_down)
		return ember_error_set(err, EK_BUSY, "start emberd again",
		    "emberd is shutting down");
	memset(&vm->op, 0, sizeof(vm->op));
	vm->op.kind = kind;
	vm->op.done = done;
	vm->op.ctx = ctx;
	vm->op.prior = vm->rec.status;
	return 0;
}

/* Refuses an operation before it begins: answers, leaves the VM as it was. */
static void
vm_op_refuse(struct vm *vm, struct ember_error *err)
{
	vm_done_fn done = vm->op.done;
	void *ctx = vm->op.ctx;

	memset(&vm->op, 0, sizeof(vm->op));
	if (done != NULL)
		done(ctx, NULL, err);
}

static void vm_stop_finish(struct vm *vm, const struct ember_error *err);

/* backend_host.exited: the hypervisor process is gone. */
static void
vm_backend_exited(void *vm_ctx, int wait_status, const char *reason)
{
	struct vm *vm = vm_ctx;
	char why[256], full[768];
	/* An adopted process's status cannot be known: call it stopped, and
	 * say so in the reason. */
	bool clean = wait_status == -1 ||
	    (WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0);

	vm->backend_state = NULL;
	vm->rec.pid = 0;
	vm->rec.pid_start_time = 0;
	vm_workload_collect(vm);	/* persisted by the transition below */
	child_status_text(wait_status, why, sizeof(why));
	snprintf(full, sizeof(full), "hypervisor %s%s%s", why, reason ? ": " : "",
	    reason ? reason : "");
	vm_events_exited(vm, wait_status, reason);
	if (vm->op.kind == VM_OP_START)
		return;	/* the start's done() reports it */
	if (vm->op.kind == VM_OP_STOP && vm->op.via_agent) {
		vm_transition_logged(vm, VM_EV_EXITED, "powered off by its agent");
		vm_stop_finish(vm, NULL);	/* no backend operation will report it */
	} else if (vm->op.kind == VM_OP_STOP)
		/* the backend's stop (or the resume before it) reports next */
		vm_transition_logged(vm, VM_EV_EXITED, "stopped on request");
	else
		vm_transition_logged(vm, clean ? VM_EV_EXITED : VM_EV_CRASHED, full);
}

/* backend_host.status: the hypervisor changed state by itself. While an
 * operation of ours is in flight its outcome decides; a report the table
 * does not allow (a resume seen while stopping) is dropped. */
static void
vm_backend_status(void *vm_ctx, enum vm_status status, const char *reason)
{
	struct vm *vm = vm_ctx;
	struct ember_error err = { 0 };
	int ev = vm_lifecycle_event_for_report(status);
	enum vm_status to;

	if (ev < 0 || vm->rec.status == status)
		return;
	if (vm_lifecycle_next(vm->rec.status, (enum vm_event)ev, status, &to, &err) < 0) {
		log_debug("vm %s: ignoring the hypervisor's report of %s: %s", vm->rec.name,
		    vm_status_name(status), err.message);
		return;
	}
	vm_transition_logged(vm, (enum vm_event)ev, reason);
}

/* backend_host.vsock_peer: a guest may reach another running VM of the
 * same owner by its CID, unless the daemon config turns that off. */
static int
vm_backend_vsock_peer(void *vm_ctx, uint64_t cid, char *path, size_t len)
{
	struct vm *from = vm_ctx;
	struct ember_daemon *d = from->daemon;

	if (!d->config.vsock_vm_to_vm || cid > UINT32_MAX)
		return -ENOENT;
	for (size_t i = 0; i < d->nvms; i++) {
		struct vm *to = d->vms[i];
		if (to == from || !to->rec.vsock || to->rec.guest_cid != (uint32_t)cid)
			continue;
		if (to->rec.owner_uid != from->rec.owner_uid ||
		    (to->rec.status != VM_RUNNING && to->rec.status != VM_PAUSED) ||
		    to->rec.uds_path == NULL)
			return -ENOENT;
		snprintf(path, len, "%s", to->rec.uds_path);
		return 0;
	}
	return -ENOENT;
}

static void vm_backend_disk_progress(void *vm_ctx, uint64_t done, uint64_t total);

/* backend_host.vsock_flow: a connection through the VM's vsock device. */
static void
vm_backend_vsock_flow(void *vm_ctx, bool opened, uint32_t host_port, uint32_t guest_port,
    size_t open)
{
	vm_events_vsock(vm_ctx, opened, host_port, guest_port, open);
}

const struct backend_host vm_backend_host = {
	.exited = vm_backend_exited,
	.status = vm_backend_status,
	.vsock_peer = vm_backend_vsock_peer,
	.disk_progress = vm_backend_disk_progress,
	.vsock_flow = vm_backend_vsock_flow,
};

/* ---- backends -------------------------------------------------------- */

static bool
backend_name_valid(struct ember_daemon *d, const char *name)
{
	return strcmp(name, "auto") == 0 || daemon_backend(d, name, NULL) != NULL;
}

/* The backend a VM runs on; "auto" takes the available one with the
 * highest "auto" priority (backend.h). */
struct backend *
vm_resolve_backend(struct ember_daemon *d, const char *name, struct ember_error *err)
{
	const struct backend_info *info;
	struct backend *be;

	if (strcmp(name, "auto") != 0) {
		be = daemon_backend(d, name, &info);
		if (be != NULL && info->available)
			return be;
		ember_error_set(err, EK_BACKEND_UNAVAILABLE,
		    "install it, or set its binary in the daemon config and send SIGHUP",
		    "the %s backend is unavailable: %s", name,
		    be != NULL ? info->reason : "unknown backend");
		return NULL;
	}
	be = NULL;
	for (size_t i = 0; i < d->nbackends; i++) {
		const struct backend_type *t = d->backends[i]->type;
		if (d->backend_info[i].available && t->auto_priority > 0 &&
		    (be == NULL || t->auto_priority > be->type->auto_priority))
			be = d->backends[i];
	}
	if (be != NULL)
		return be;
	char reasons[sizeof(err->message)];
	size_t n = 0;
	reasons[0] = '\0';
	for (size_t i = 0; i < d->nbackends && n < sizeof(reasons); i++)
		n += (size_t)snprintf(reasons + n, sizeof(reasons) - n, "%s%s: %s", i ? "; " : "",
		    d->backends[i]->name, d->backend_info[i].reason);
	ember_error_set(err, EK_BACKEND_UNAVAILABLE,
	    "install a hypervisor, or point the daemon config at it and send SIGHUP",
	    "no backend is available (%s)", d->nbackends ? reasons : "none built");
	return NULL;
}

/* ---- create, fork ----------------------------------------------------- */

/* A trusted caller's file, used where it is: resolved, a regular file or
 * a block device. */
static int
check_file(const char *what, const char *path, char **out, struct ember_error *err)
{
	char resolved[PATH_MAX];
	struct stat st;

	if (path == NULL) {
		*out = NULL;
		return 0;
	}
	if (realpath(path, resolved) == NULL || stat(resolved, &st) < 0)
		return ember_error_set(err, EK_INVALID_SPEC, "give an existing file's path",
		    "%s file %s: %s", what, path, strerror(errno));
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
		return ember_error_set(err, EK_INVALID_SPEC, "give a regular file",
		    "%s %s is not a regular file", what, path);
	*out = strdup(resolved);
	return *out != NULL ? 0 : ember_error_set(err, EK_INTERNAL, NULL, "out of memory");
}

/*
 * What a new VM boots from lives in its own directory, so that deleting
 * the image (or the source VM of a fork) never takes it away: an image's
 * files are hard-linked there (the state directory is one filesystem), and
 * files a non-root caller named are copied there from the files opened
 * with the caller's rights (in a child process, off the loop). The files
 * are gathered in a staging directory, vms/.create-<name>-<n>, which
 * becomes the VM's directory; a name being created is taken meanwhile.
 */
#define VM_OWN_FILES_MAX 3

struct vm_own_file {
	const char *name;	/* in the VM's directory */
	char **field;		/* the record's path, pointed there at the end */
	char *link_from;	/* an image's (or source VM's) file: hard-linked */
	int fd;			/* a caller's open file: copied; -1 otherwise */
};

struct vm_create_op {
	struct vm *vm;
	const struct vm *source;	/* fork only; read until the backend's fork call returns */
	struct vm_own_file files[VM_OWN_FILES_MAX];
	size_t nfiles;
	size_t copying;			/* index of the file being copied */
	char *staging;			/* the VM's own files gathered here; NULL until made */
	char *uds;			/* its vsock.sock ("" without vsock) */
	bool start;
	bool durable_wait;		/* listed; waiting for its record to be durable */
	bool dir_queued;		/* its directory is the writer's to make (durable_make_dir) */
	bool dir_made;			/* ... and the writer made it */
	bool removed;			/* deleted meanwhile: unlisted, freed by the callback */
	struct quota_hold *quota_hold;	/* its quota until the VM is listed */
	/* A create's kernel, initrd and root disk while the caller's paths
	 * are opened (caller-open.h): the paths it named (copies), the
	 * image's (in image_doc), and whether its paths are used as given. */
	struct caller_open *opening;
	char *flag_path[VM_OWN_FILES_MAX];
	const char *image_path[VM_OWN_FILES_MAX];
	json_t *image_doc;
	bool trusted;
	vm_done_fn done;
	void *ctx;
	bool pending;			/* on creates_unlisted or creates_listed */
	LIST_ENTRY(vm_create_op) entry;
};

/* Creates not listed yet (their paths being opened, their files copied,
 * their disk prepared); their names are taken. One copying holds open
 * files and a cp process, so a user may have only a few at once. */
#define VM_PENDING_PER_OWNER_MAX 4
LIST_HEAD(vm_create_ops, vm_create_op);
static struct vm_create_ops creates_unlisted = LIST_HEAD_INITIALIZER(creates_unlisted);
/* Creates whose VM is listed, its record not durable yet (vm->creating).
 * Apart from the others so that a batch of thousands of creates costs no
 * walk of them per create: names are found among the listed VMs. */
static struct vm_create_ops creates_listed = LIST_HEAD_INITIALIZER(creates_listed);
static unsigned staging_counter;
static bool vms_detaching;	/* vms_detach_all runs: no new backend work */

static size_t
vm_pending_count(uid_t owner)
{
	struct vm_create_op *op;
	size_t n = 0;

	LIST_FOREACH(op, &creates_unlisted, entry)
		n += op->vm->rec.owner_uid == owner;
	return n;
}

/* A fork whose disk the backend is still copying reads its source's: the
 * source may neither start nor go away meanwhile (until the fork is
 * listed). -1 with err when busy. */
static int
vm_fork_source_check(const struct vm *vm, struct ember_error *err)
{
	struct vm_create_op *op;

	LIST_FOREACH(op, &creates_unlisted, entry)
		if (op->source == vm)
			return ember_error_set(err, EK_BUSY, "wait for the fork to finish and retry",
			    "VM \"%s\" is being forked to \"%s\"", vm->rec.name, op->vm->rec.name);
	return 0;
}

static bool vm_name_deleting(const char *name);

/* A name taken by no listed VM may still be taken by a create not listed
 * yet or by a delete under way. */
static bool
vm_name_pending(const char *name)
{
	struct vm_create_op *op;

	LIST_FOREACH(op, &creates_unlisted, entry)
		if (strcmp(op->vm->rec.name, name) == 0)
			return true;
	return vm_name_deleting(name);
}

/* The create of a listed VM whose record is not durable yet, or NULL. */
static struct vm_create_op *
vm_create_op_listed(const struct vm *vm)
{
	return vm->creating;
}

/* NULL when out of memory. */
static struct vm_create_op *
create_op_new(struct vm *vm, const struct vm *source, const char *uds, bool start,
    vm_done_fn done, void *ctx)
{
	struct vm_create_op *op = calloc(1, sizeof(*op));

	if (op == NULL || (op->uds = strdup(uds)) == NULL) {
		free(op);
		return NULL;
	}
	op->vm = vm;
	op->source = source;
	op->start = start;
	op->done = done;
	op->ctx = ctx;
	return op;
}

static void
create_op_free(struct vm_create_op *op)
{
	if (op->pending)
		LIST_REMOVE(op, entry);
	quota_release(op->quota_hold);
	caller_open_cancel(op->opening);
	json_decref(op->image_doc);
	free(op->staging);
	free(op->uds);
	for (size_t i = 0; i < VM_OWN_FILES_MAX; i++)
		free(op->flag_path[i]);
	for (size_t i = 0; i < op->nfiles; i++) {
		free(op->files[i].link_from);
		if (op->files[i].fd >= 0)
			close(op->files[i].fd);
	}
	free(op);
}

/* Adds a file the VM keeps: linked from link_from, or copied from fd
 * (taken). The record's field points at its place in the VM's directory
 * at once, so checks see the final paths. */
static int
create_op_add(struct vm_create_op *op, const char *name, char **field, const char *link_from,
    int fd, struct ember_error *err)
{
	struct vm_own_file *f = &op->files[op->nfiles++];
	char path[PATH_MAX];
	int n;

	f->name = name;
	f->field = field;
	f->fd = fd;
	f->link_from = link_from != NULL ? strdup(link_from) : NULL;
	vm_dir(op->vm->daemon, op->vm->rec.name, path, sizeof(path));
	n = (int)strlen(path);
	snprintf(path + n, sizeof(path) - (size_t)n, "/%s", name);
	if ((link_from != NULL && f->link_from == NULL) || vm_record_set_str(field, path) < 0)
		return ember_error_set(err, EK_INTERNAL, NULL, "out of memory");
	return 0;
}

/* Where a new VM's kernel, initrd or root disk comes from: a trusted
 * caller's path is used where it is (as ever); a non-root caller's was
 * opened with its rights (fd, taken) and is copied; an image's file is
 * linked. */
static int
create_op_take(struct vm_create_op *op, const char *what, const char *own_name, char **field,
    const char *flag_path, int fd, const char *image_path, struct ember_error *err)
{
	if (flag_path != NULL && op->trusted)
		return check_file(what, flag_path, field, err);
	if (flag_path != NULL)
		return create_op_add(op, own_name, field, NULL, fd, err);
	if (image_path != NULL)
		return create_op_add(op, own_name, field, image_path, -1, err);
	*field = NULL;
	return 0;
}

/* A create's own files, in create_op's flag_path[] and image_path[] order. */
static const struct {
	const char *what, *own_name;
	size_t field_off;
} create_sources[VM_OWN_FILES_MAX] = {
	{ "kernel", "kernel", offsetof(struct vm_record, kernel_path) },
	{ "initrd", "initrd", offsetof(struct vm_record, initrd_path) },
	{ "rootfs", BACKEND_OWN_BASE_DISK, offsetof(struct vm_record, disk_path) },
};

/* On creates_unlisted (its name taken) unless it is already. */
static void
create_op_pend(struct vm_create_op *op)
{
	if (op->pending)
		return;
	LIST_INSERT_HEAD(&creates_unlisted, op, entry);
	op->pending = true;
}

static int vm_backend_check(const struct vm *vm, struct ember_error *err);
static void create_op_run(struct vm_create_op *op);
static void create_op_fail(struct vm_create_op *op, struct ember_error *err);

/* vm.create once the caller's paths are open: the VM's own files, the
 * last checks, then create_op_run. */
static void
create_op_opened(void *ctx, const int *fds, size_t nfds, const struct ember_error *open_err)
{
	struct vm_create_op *op = ctx;
	struct vm *vm = op->vm;
	struct ember_error err = { 0 };
	int fd[VM_OWN_FILES_MAX];
	size_t k = 0;

	op->opening = NULL;
	if (open_err != NULL) {
		err = *open_err;
		create_op_fail(op, &err);
		return;
	}
	for (size_t i = 0; i < VM_OWN_FILES_MAX; i++)
		fd[i] = op->flag_path[i] != NULL && k < nfds ? fds[k++] : -1;
	for (size_t i = 0; i < VM_OWN_FILES_MAX; i++) {
		char **field = (char **)((char *)&vm->rec + create_sources[i].field_off);
		if (create_op_take(op, create_sources[i].what, create_sources[i].own_name, field,
		    op->flag_path[i], fd[i], op->image_path[i], &err) < 0) {
			for (size_t j = i + 1; j < VM_OWN_FILES_MAX; j++)
				if (fd[j] >= 0)
					close(fd[j]);
			create_op_fail(op, &err);
			return;
		}
	}
	if (vm->rec.disk_size_mib != 0 && vm->rec.disk_path == NULL) {
		ember_error_set(&err, EK_INVALID_SPEC, "give --rootfs or an image with a root filesystem",
		    "disk_size_mib needs a root disk to size");
		create_op_fail(op, &err);
		return;
	}
	if (vm_backend_check(vm, &err) < 0) {
		create_op_fail(op, &err);
		return;
	}
	json_decref(op->image_doc);
	op->image_doc = NULL;
	create_op_run(op);
}

/* Name, existence and vsock path checks shared by create and fork; runs
 * before anything is allocated. */
static int
vm_check_new_name(struct ember_daemon *d, const char *name, bool vsock,
    char *uds, size_t udslen, struct ember_error *err)
{
	if (vm_name_check(name, err) < 0)
		return -1;
	if (vm_find(d, name) != NULL || vm_name_pending(name))
		return ember_error_set(err, EK_ALREADY_EXISTS, "choose another name or delete it first",
		    "VM \"%s\" already exists", name);
	uds[0] = '\0';
	if (!vsock)
		return 0;	/* no vsock.sock, so its length does not matter */
	return vsock_path_build(d->state_dir, name, sun_path_limit(), uds, udslen, err);
}

/* What the hypervisor would refuse (cpus, kernel command line, ...) is
 * refused before anything is allocated or spawned. */
static int
vm_backend_check(const struct vm *vm, struct ember_error *err)
{
	struct backend *be = vm->backend;

	return be == NULL || be->check == NULL ? 0 : be->check(be, &vm->rec, err);
}

/* What runs once a backend has prepared a VM's disk (err NULL: done). */
typedef void (*vm_disk_ready_fn)(struct vm *vm, void *arg, const struct ember_error *err);

struct vm_disk_prep {
	struct vm *vm;
	vm_disk_ready_fn then;
	void *arg;
};

static void
vm_disk_prepared(void *ctx, const struct ember_error *err)
{
	struct vm_disk_prep *p = ctx;
	struct vm *vm = p->vm;
	vm_disk_ready_fn then = p->then;
	void *arg = p->arg;

	free(p);
	then(vm, arg, err != NULL && ember_error_is_set(err) ? err : NULL);
}

/* backend_host.disk_progress: vm_ctx is the vm_disk_prep of the copy. */
static void
vm_backend_disk_progress(void *vm_ctx, uint64_t done, uint64_t total)
{
	struct vm_disk_prep *p = vm_ctx;

	vm_events_disk_progress(p->vm, done, total);
}

/* Whether the backend may have files to make for a new VM (a create's own
 * disk, a fork's copy of its source's): never without a disk (backend.h). */
static bool
vm_disk_prep_needed(const struct vm *vm, const struct vm *source)
{
	const struct backend *be = vm->backend;

	return be != NULL && (source != NULL ? source->rec.disk_path != NULL && be->fork != NULL :
	    vm->rec.disk_path != NULL && be->create != NULL);
}

/* Lets the backend prepare the new VM's files in the background (a fork
 * copies the source's disk, a create makes its own: the loop never waits
 * for a copy); then() runs exactly once, at once when there is nothing to
 * prepare or no backend. */
static void
vm_prepare_disk(struct vm *vm, const struct vm *source, const char *dir,
    vm_disk_ready_fn then, void *arg)
{
	struct backend *be = vm->backend;
	struct ember_error err = { 0 };
	struct vm_disk_prep *p;
	int r = 1;

	if (vm_disk_prep_needed(vm, source)) {
		if ((p = calloc(1, sizeof(*p))) == NULL) {
			ember_error_set(&err, EK_INTERNAL, NULL, "out of memory");
			then(vm, arg, &err);
			return;
		}
		*p = (struct vm_disk_prep){ vm, then, arg };
		r = source != NULL ?
		    be->fork(be, &source->rec, &vm->rec, dir, p, vm_disk_prepared, &err) :
		    be->create(be, &vm->rec, dir, p, vm_disk_prepared, &err);
		if (r == 0)
			return;
		free(p);
	}
	then(vm, arg, r < 0 ? &err : NULL);
}

/* A directory the writer has yet to make (durable_make_dir) is discarded
 * behind that job, in the writer's order: removing it here would come
 * first and the directory would be made after all. */
static void
vm_dir_discard_queued(struct ember_daemon *d, const char *dir)
{
	struct ember_error err = { 0 };
	char trash[PATH_MAX];

	if (discard_trash_name(dir, trash, sizeof(trash)) < 0 ||
	    discard_dir_ordered(d, dir, trash, NULL, NULL, &err) < 0)
		log_warnx("cannot discard %s: %s (the next start removes it)", dir,
		    err.message[0] ? err.message : strerror(ENAMETOOLONG));
}

/* A failed materialize: the directory (or staging), then the CID. */
static void
vm_materialize_undo(struct vm *vm, const char *dir, const char *staging)
{
	struct ember_daemon *d = vm->daemon;

	if (dir != NULL)
		rm_rf(dir);
	if (staging != NULL)
		rm_rf(staging);
	vm_network_release(vm);
	if (vm->rec.vsock && cid_alloc_release(d->cids, vm->rec.name) == 0) {
		struct ember_error ignored = { 0 };
		if (cids_save(d, &ignored) < 0)
			log_warnx("%s", ignored.message);
	}
}

static void create_op_fail(struct vm_create_op *op, struct ember_error *err);
static void vm_start_refused(struct vm *vm, struct ember_error *err);
static void vm_start_disk_ready(struct vm *vm, void *arg, const struct ember_error *disk_err);
static void vm_start_boot(struct vm *vm);
static void create_op_created(struct vm_create_op *op);
static void vm_materialize_disk_ready(struct vm *vm, void *arg, const struct ember_error *err);
static int vm_materialize_queued(struct vm_create_op *op, const char *dir, const char *staging,
    struct ember_error *err);

/* A VM listed before the writer made its directory gets the owner's access
 * once it has (durable_make_dir's callback), unless it is gone by then. */
struct vm_dir_share_later {
	struct ember_daemon *d;
	uid_t owner;
	char name[VM_NAME_MAX + 1];
};

static void
vm_dir_made_share(void *ctx, int result)
{
	struct vm_dir_share_later *later = ctx;
	struct vm *vm = vm_find(later->d, later->name);

	if (result < 0)
		log_warnx("vm %s: cannot make its directory: %s", later->name, strerror(-result));
	else if (vm != NULL && vm->rec.owner_uid == later->owner)
		vm_dir_share(later->d, later->name, later->owner);
	free(later);
}

/* The writer made the directory of a create whose backend prepares files
 * in it: that comes next. At shutdown the create is abandoned instead (its
 * client was answered; the next start removes the directory). */
static void
vm_materialize_dir_made(void *arg, int result)
{
	struct vm_create_op *op = arg;
	struct vm *vm = op->vm;
	struct ember_daemon *d = vm->daemon;
	struct ember_error err = { 0 };
	char dir[PATH_MAX];

	vm_dir(d, vm->rec.name, dir, sizeof(dir));
	op->dir_made = result == 0;
	if (result < 0)
		ember_error_set(&err, EK_IO, "check the state directory's permissions",
		    "cannot create %s: %s", dir, strerror(-result));
	else if (d->shutting_down || vms_detaching)
		ember_error_set(&err, EK_BUSY, NULL, "emberd is shutting down");
	else {
		vm_prepare_disk(vm, op->source, dir, vm_materialize_disk_ready, op);
		return;
	}
	vm_materialize_undo(vm, result < 0 ? NULL : dir, op->nfiles > 0 ? op->staging : NULL);
	create_op_fail(op, &err);
}

/* vm_materialize with a writer: the directory is made (or staging moved
 * into place) by the writer, off the loop. A backend that prepares files
 * in it waits for that; otherwise the VM is listed at once, as without a
 * writer, its record and the CID table queued behind the directory. */
static int
vm_materialize_queued(struct vm_create_op *op, const char *dir, const char *staging,
    struct ember_error *err)
{
	struct vm *vm = op->vm;
	struct ember_daemon *d = vm->daemon;
	struct vm_dir_share_later *later;

	op->dir_queued = true;
	if (vm_disk_prep_needed(vm, op->source)) {
		if (durable_make_dir(d->durable, dir, staging, 0750, vm_materialize_dir_made, op,
		    err) < 0)
			goto undo;
		return 0;
	}
	if ((later = calloc(1, sizeof(*later))) == NULL) {
		ember_error_set(err, EK_INTERNAL, NULL, "out of memory");
		goto undo;
	}
	later->d = d;
	later->owner = vm->rec.owner_uid;
	snprintf(later->name, sizeof(later->name), "%s", vm->rec.name);
	if (durable_make_dir(d->durable, dir, staging, 0750, vm_dir_made_share, later, err) < 0) {
		free(later);
		goto undo;
	}
	vm_materialize_disk_ready(vm, op, NULL);	/* answers a failure itself */
	return 0;
undo:
	op->dir_queued = false;
	vm_materialize_undo(vm, NULL, staging);
	return -1;
}

/* Allocates the CID, creates the directory (or renames staging, holding
 * the VM's own files, into place) and has the backend prepare disks; then
 * vm_materialize_disk_ready writes vm.json and lists the VM. On failure
 * everything done so far is undone, staging included. 0, or -1 with err. */
static int
vm_materialize(struct vm_create_op *op, struct ember_error *err)
{
	struct vm *vm = op->vm;
	const struct vm *source = op->source;
	const char *uds = op->uds;
	const char *staging = op->nfiles > 0 ? op->staging : NULL;
	struct ember_daemon *d = vm->daemon;
	char dir[PATH_MAX];
	int r;

	vm_dir(d, vm->rec.name, dir, sizeof(dir));
	if (vm->rec.vsock) {
		r = cid_alloc_get(d->cids, vm->rec.name, &vm->rec.guest_cid);
		if (r == -ENOSPC)
			return ember_error_set(err, EK_CIDS_EXHAUSTED,
			    "delete a vsock VM or widen cid_min/cid_max in the daemon config",
			    "no free vsock CID in [%u, %u]", cid_alloc_min(d->cids),
			    cid_alloc_max(d->cids));
		if (r < 0)
			return ember_error_set(err, EK_INTERNAL, NULL, "CID allocation: %s",
			    strerror(-r));
		/* cids.json is queued with vm.json, once the disk is ready */
		if (vm_record_set_str(&vm->rec.uds_path, uds) < 0) {
			ember_error_set(err, EK_INTERNAL, NULL, "out of memory");
			goto undo_cid;
		}
	}
	if (vm_network_allocate(vm, err) < 0)
		goto undo_cid;
	/* The name stays taken while the directory is made and the backend
	 * works on the disk. */
	create_op_pend(op);
	if (d->durable != NULL)
		return vm_materialize_queued(op, dir, staging, err) < 0 ? -1 : 0;
	/* A leftover directory of this name is not a VM (it is not listed). */
	rm_rf(dir);
	r = staging != NULL ? rename(staging, dir) : mkdir(dir, 0750);
	if (r < 0) {
		ember_error_set(err, EK_IO, "check the state directory's permissions",
		    "cannot create %s: %s", dir, strerror(errno));
		goto undo_cid;
	}
	vm_prepare_disk(vm, source, dir, vm_materialize_disk_ready, op);
	return 0;

undo_cid:
	vm_materialize_undo(vm, NULL, staging);
	return -1;
}

static void vm_materialize_durable(void *arg, int result);

static void
vm_materialize_disk_ready(struct vm *vm, void *arg, const struct ember_error *disk_err)
{
	struct vm_create_op *op = arg;
	struct ember_daemon *d = vm->daemon;
	struct ember_error err = { 0 };
	char dir[PATH_MAX];
	int r;

	vm_dir(d, vm->rec.name, dir, sizeof(dir));
	if (disk_err != NULL) {
		err = *disk_err;
		goto undo_dir;
	}
	if (vm_lifecycle_enter(vm, VM_EV_CREATE, NULL, &err) < 0)
		goto undo_dir;
	/* Only now, with root's files in place, may the owner write there
	 * (once the writer made the directory: vm_dir_made_share). */
	if (!op->dir_queued || op->dir_made)
		vm_dir_share(d, vm->rec.name, vm->rec.owner_uid);
	/* The CID, then the record, then the directory's entry in vms/. The
	 * VM is listed at once (requests after this one see it), busy with
	 * its create until all three are durable; then it is answered. */
	vm_store_plug(d);
	r = (vm->rec.vsock && cids_save(d, &err) < 0) || vms_dir_sync(d, &err) < 0 ||
	    vm_save_then(vm, vm_materialize_durable, op, &err) < 0 ? -1 : 0;
	vm_store_unplug(d);
	if (r < 0)
		goto undo_dir;
	op->durable_wait = true;
	if (op->pending)
		LIST_REMOVE(op, entry);
	LIST_INSERT_HEAD(&creates_listed, op, entry);
	op->pending = true;
	vm->creating = op;
	vm->op.kind = VM_OP_CREATE;
	vm_list_insert(d, vm);
	quota_release(op->quota_hold);	/* the listed VM counts itself */
	op->quota_hold = NULL;
	daemon_status_changed(d);
	return;

undo_dir:
	if (op->dir_queued && !op->dir_made) {
		vm_dir_discard_queued(d, dir);	/* not made yet: behind its making */
		vm_materialize_undo(vm, NULL, NULL);
	} else
		vm_materialize_undo(vm, dir, NULL);
	create_op_fail(op, &err);
}

static void
vm_materialize_durable(void *arg, int result)
{
	struct vm_create_op *op = arg;
	struct vm *vm = op->vm;
	struct ember_daemon *d = vm->daemon;
	struct ember_error err = { 0 };
	char dir[PATH_MAX];

	memset(&vm->op, 0, sizeof(vm->op));
	vm->creating = NULL;
	if (op->removed) {
		/* deleted before this: answered as created (or failed), then
		 * freed; the delete's own answer waits for its later writes */
		vm_done_fn done = op->done != NULL ? op->done : vm_done_ignore;
		void *ctx = op->ctx;
		create_op_free(op);
		if (result < 0) {
			ember_error_set(&err, EK_IO, "check the state directory's disk and permissions",
			    "cannot write the record of VM \"%s\": %s", vm->rec.name,
			    strerror(-result));
			done(ctx, NULL, &err);
		} else
			done(ctx, vm_to_json(vm), NULL);
		vm_reap_later(vm);
		return;
	}
	if (result < 0) {
		vm_dir(d, vm->rec.name, dir, sizeof(dir));
		ember_error_set(&err, EK_IO, "check the state directory's disk and permissions",
		    "cannot write %s/vm.json: %s", dir, strerror(-result));
		vm_list_remove(d, vm);
		vm_materialize_undo(vm, dir, NULL);
		daemon_status_changed(d);
		create_op_fail(op, &err);
		return;
	}
	create_op_created(op);
}

/* ---- a new VM's own files --------------------------------------------- */

static void
vm_done_ignore(void *ctx, json_t *result, const struct ember_error *err)
{
	json_decref(result);
}

static void
create_op_fail(struct vm_create_op *op, struct ember_error *err)
{
	vm_done_fn done = op->done;
	void *ctx = op->ctx;

	if (op->staging != NULL)
		rm_rf(op->staging);
	vm_free(op->vm);
	create_op_free(op);
	if (done != NULL)
		done(ctx, NULL, err);
}

/* Every file is in staging: point the record there and make the VM. */
static void
create_op_finish(struct vm_create_op *op)
{
	struct ember_error err = { 0 };

	if (vm_materialize(op, &err) < 0)
		create_op_fail(op, &err);	/* staging too, unless it was moved */
}

/* The VM is listed: answer, or start it. */
static void
create_op_created(struct vm_create_op *op)
{
	struct vm *vm = op->vm;
	bool start = op->start;
	/* a client answered at shutdown no longer waits for it */
	vm_done_fn done = op->done != NULL ? op->done : vm_done_ignore;
	void *ctx = op->ctx;
	create_op_free(op);
	vm_created(vm, start, done, ctx);
}

static void create_op_copy_next(struct vm_create_op *op);

static void
create_op_copy_done(void *ctx, int status, const char *output)
{
	struct vm_create_op *op = ctx;
	struct vm_own_file *f = &op->files[op->copying];
	struct ember_error err = { 0 };

	if (status != 0) {
		ember_error_set(&err, EK_IO, NULL, "cannot copy the %s into the VM's directory: %s",
		    f->name, output[0] ? output : "cp failed");
		create_op_fail(op, &err);
		return;
	}
	close(f->fd);
	f->fd = -1;
	op->copying++;
	create_op_copy_next(op);
}

/* Copies the caller's files one after another, each in a child (cp, which
 * reflinks or keeps holes) reading the open file emberd holds. */
static void
create_op_copy_next(struct vm_create_op *op)
{
	struct ember_error err = { 0 };
	char src[64], dst[PATH_MAX];
	int r;

	while (op->copying < op->nfiles && op->files[op->copying].fd < 0)
		op->copying++;
	if (op->copying == op->nfiles) {
		create_op_finish(op);
		return;
	}
	struct vm_own_file *f = &op->files[op->copying];
	snprintf(src, sizeof(src), "/proc/self/fd/%d", f->fd);
	snprintf(dst, sizeof(dst), "%s/%s", op->staging, f->name);
	const char *argv[] = { "cp", "--reflink=auto", "--sparse=always", "--", src, dst, NULL };
	r = child_run_keep(op->vm->daemon->base, argv, &f->fd, 1, create_op_copy_done, op);
	if (r < 0) {
		ember_error_set(&err, EK_IO, NULL, "cannot run cp: %s", strerror(-r));
		create_op_fail(op, &err);
	}
}

/* Gathers the VM's own files in a staging directory (links at once,
 * copies in the background), then makes the VM. Takes op. */
static void
create_op_run(struct vm_create_op *op)
{
	struct ember_daemon *d = op->vm->daemon;
	struct ember_error err = { 0 };
	bool copies = false;
	char dst[PATH_MAX];

	if (op->nfiles == 0) {
		create_op_finish(op);
		return;
	}
	for (size_t i = 0; i < op->nfiles; i++)
		copies |= op->files[i].link_from == NULL;
	if (copies && vm_pending_count(op->vm->rec.owner_uid) - op->pending >=
	    VM_PENDING_PER_OWNER_MAX) {
		ember_error_set(&err, EK_BUSY, "wait for them to finish and retry",
		    "uid %u already has %d creates copying files", (unsigned)op->vm->rec.owner_uid,
		    VM_PENDING_PER_OWNER_MAX);
		create_op_fail(op, &err);
		return;
	}
	snprintf(dst, sizeof(dst), "%s/vms/.create-%s-%d-%u", d->state_dir, op->vm->rec.name,
	    (int)getpid(), ++staging_counter);
	rm_rf(dst);
	if (mkdir(dst, 0750) < 0) {
		ember_error_set(&err, EK_IO, "check the state directory's permissions",
		    "cannot create %s: %s", dst, strerror(errno));
		create_op_fail(op, &err);
		return;
	}
	if ((op->staging = strdup(dst)) == NULL) {
		rm_rf(dst);
		ember_error_set(&err, EK_INTERNAL, NULL, "out of memory");
		create_op_fail(op, &err);
		return;
	}
	for (size_t i = 0; i < op->nfiles; i++) {
		struct vm_own_file *f = &op->files[i];
		if (f->link_from == NULL)
			continue;
		snprintf(dst, sizeof(dst), "%s/%s", op->staging, f->name);
		if (link(f->link_from, dst) < 0) {
			ember_error_set(&err, errno == ENOENT ? EK_INVALID_SPEC : EK_IO,
			    errno == EXDEV ? "keep images/ and vms/ on one filesystem" :
			    "delete the image and import it again",
			    "cannot link the %s %s into the VM's directory: %s", f->name,
			    f->link_from, strerror(errno));
			create_op_fail(op, &err);
			return;
		}
	}
	if (!copies) {
		create_op_finish(op);
		return;
	}
	create_op_pend(op);
	create_op_copy_next(op);
}

static void
vm_created(struct vm *vm, bool start, vm_done_fn done, void *ctx)
{
	if (vm->rec.vsock)
		log_info("vm %s: created (cid %u, %s)", vm->rec.name, vm->rec.guest_cid,
		    vm->rec.uds_path);
	else
		log_info("vm %s: created", vm->rec.name);
	if (!start) {
		vm_answer(vm->daemon, vm->durable_seq, done, ctx, vm_to_json(vm), NULL);
		return;
	}
	vm_start_op(vm, true, done, ctx);
}

void
vm_create(struct ember_daemon *d, const struct vm_create_args *a, vm_done_fn done, void *ctx)
{
	struct ember_error err = { 0 };
	const struct ember_config *cfg = &d->config;
	char uds[PATH_MAX];
	json_t *image_doc = NULL;
	const char *backend = a->backend ? a->backend : cfg->default_backend;
	const char *image = a->image ? a->image : cfg->default_image;
	unsigned cpus = a->cpus ? a->cpus : cfg->default_cpus;
	uint64_t memory = a->memory_mib ? a->memory_mib : cfg->default_memory_mib;
	const char *network = a->network ? a->network : "none";
	char *workload_word = NULL;	/* an OCI image's workload (vm-workload.h) */
	struct vm *vm;

	if (vm_check_new_name(d, a->name, a->vsock, uds, sizeof(uds), &err) < 0)
		goto fail;
	if (cpus < 1 || cpus > VM_CPUS_MAX) {
		ember_error_set(&err, EK_INVALID_SPEC, NULL, "cpus must be 1 to %d, not %u",
		    VM_CPUS_MAX, cpus);
		goto fail;
	}
	if (memory < VM_MEMORY_MIN_MIB || memory > VM_MEMORY_MAX_MIB) {
		ember_error_set(&err, EK_INVALID_SPEC, "e.g. 512 for 512 MiB",
		    "memory_mib must be %u to %u, not %llu", VM_MEMORY_MIN_MIB,
		    VM_MEMORY_MAX_MIB, (unsigned long long)memory);
		goto fail;
	}
	if (!backend_name_valid(d, backend)) {
		ember_error_set(&err, EK_INVALID_SPEC, "use auto or a backend `emberctl info` lists",
		    "unknown backend \"%s\"", backend);
		goto fail;
	}
	if (image != NULL) {
		image_doc = image_load(d, image, a->owner_uid, &err);
		if (image_doc != NULL && a->image == NULL && image_doc_owner(image_doc) != 0) {
			/* The configured default is root's: an image another user
			 * gave that name (before it was reserved) is not it. */
			log_warnx("image %s: the default_image is owned by uid %u, not root; "
			    "ignoring it", image, (unsigned)image_doc_owner(image_doc));
			json_decref(image_doc);
			image_doc = NULL;
			ember_error_set(&err, EK_NOT_FOUND, NULL, "default image not root's");
		}
		if (image_doc == NULL && a->image == NULL) {
			/* A configured default that is not imported (yet): no image. */
			ember_error_clear(&err);
			image = NULL;
		} else if (image_doc == NULL)
			goto fail;
	}
	if (image_doc != NULL && vm_workload_prepare(d, a, &image_doc, &workload_word, &err) < 0)
		goto fail;
	if (image_doc == NULL && (a->command || a->env || a->workdir || a->user)) {
		ember_error_set(&err, EK_INVALID_SPEC, "use --image with an OCI image",
		    "a command, env, workdir or user needs an OCI image");
		goto fail;
	}
	struct quota_hold *hold;
	if (quota_check_create(d, a, cpus, memory, image_doc, &hold, &err) < 0)
		goto fail;
	if ((vm = vm_new(d)) == NULL) {
		ember_error_set(&err, EK_INTERNAL, NULL, "out of memory creating VM \"%s\"",
		    a->name);
		quota_release(hold);
		goto fail;
	}
	snprintf(vm->rec.name, sizeof(vm->rec.name), "%s", a->name);
	if (uuid_generate_v4(vm->rec.id) < 0) {
		ember_error_set(&err, EK_INTERNAL, NULL, "cannot generate a VM id");
		quota_release(hold);
		vm_free(vm);
		goto fail;
	}
	vm->rec.cpus = cpus;
	vm->rec.memory_mib = memory;
	vm->rec.disk_size_mib = a->disk_size_mib;
	vm->rec.owner_uid = a->owner_uid;
	vm->rec.vsock = a->vsock;
	rfc3339_now(vm->rec.created_at);
	/* Resolve now when possible so the backend can prepare disks; a VM
	 * created without a backend resolves at its first start. */
	struct ember_error ignored = { 0 };
	vm->backend = vm_resolve_backend(d, backend, &ignored);
	/* Flags win over the image; Firecracker boots the image's vmlinux. */
	const char *boot_args = a->boot_args;
	if (image_doc != NULL && boot_args == NULL)
		boot_args = json_string_value(json_object_get(image_doc, "boot_args"));
	char *boot_args_own = vm_workload_boot_args(boot_args, workload_word);
	bool boot_args_lost = boot_args_own == NULL && (boot_args != NULL || workload_word != NULL);
	free(workload_word);
	workload_word = NULL;
	boot_args = boot_args_own;
	struct vm_create_op *op = create_op_new(vm, NULL, uds, a->start, done, ctx);
	if (op == NULL) {
		free(boot_args_own);
		ember_error_set(&err, EK_INTERNAL, NULL, "out of memory creating VM \"%s\"",
		    a->name);
		quota_release(hold);
		vm_free(vm);
		goto fail;
	}
	op->quota_hold = hold;	/* the op's now */
	const char *image_kernel = NULL, *image_initrd = NULL, *image_rootfs = NULL;
	if (image_doc != NULL) {
		bool needs_vmlinux = vm->backend != NULL && vm->backend->type != NULL &&
		    (vm->backend->type->needs & BACKEND_NEEDS_VMLINUX);
		const char *vmlinux = json_string_value(json_object_get(image_doc, "vmlinux"));
		image_kernel = needs_vmlinux && vmlinux ? vmlinux :
		    json_string_value(json_object_get(image_doc, "kernel"));
		image_initrd = json_string_value(json_object_get(image_doc, "initrd"));
		image_rootfs = json_string_value(json_object_get(image_doc, "rootfs"));
	}
	if (boot_args_lost || vm_record_set_str(&vm->rec.backend, backend) < 0 ||
	    vm_record_set_str(&vm->rec.image, image) < 0 ||
	    vm_record_set_str(&vm->rec.boot_args, boot_args) < 0 ||
	    vm_record_set_str(&vm->rec.network, network) < 0) {
		free(boot_args_own);
		ember_error_set(&err, EK_INTERNAL, NULL, "out of memory");
		goto fail_op;
	}
	free(boot_args_own);
	if (vm_network_prepare(vm, network, a->publish, &err) < 0)
		goto fail_op;
	/* The paths the caller named are opened off the loop (caller-open.h);
	 * the name is taken meanwhile. create_op_opened goes on (at once for
	 * a trusted caller). */
	static const struct platform_caller as_given = { 0, 0, NULL, 0 };
	const struct platform_caller *c = a->caller != NULL ? a->caller : &as_given;
	const char *flags[VM_OWN_FILES_MAX] = { a->kernel, a->initrd, a->rootfs };
	const char *images[VM_OWN_FILES_MAX] = { image_kernel, image_initrd, image_rootfs };
	struct caller_open_path paths[VM_OWN_FILES_MAX];
	size_t npaths = 0;
	op->trusted = caller_trusted(c);
	for (size_t i = 0; i < VM_OWN_FILES_MAX; i++) {
		op->image_path[i] = images[i];
		if (flags[i] == NULL)
			continue;
		if ((op->flag_path[i] = strdup(flags[i])) == NULL) {
			ember_error_set(&err, EK_INTERNAL, NULL,
			    "out of memory creating VM \"%s\"", a->name);
			goto fail_op;
		}
		paths[npaths++] = (struct caller_open_path){ create_sources[i].what, flags[i], false };
	}
	op->image_doc = image_doc;	/* holds image_path[] */
	create_op_pend(op);
	caller_open_start(d->base, c, paths, npaths, &op->opening, create_op_opened, op);
	return;
fail_op:
	vm_free(vm);
	create_op_free(op);
fail:
	json_decref(image_doc);
	free(workload_word);
	done(ctx, NULL, &err);
}

/* Links the source VM's own file name into the fork's directory when the
 * source has one; field (may be NULL) then points at the fork's link. */
static int
fork_take(struct vm_create_op *op, const struct vm *src, const char *name, char **field,
    struct ember_error *err)
{
	char path[PATH_MAX];
	struct stat st;
	char *ignored = NULL;

	vm_dir(src->daemon, src->rec.name, path, sizeof(path));
	snprintf(path + strlen(path), sizeof(path) - strlen(path), "/%s", name);
	if (lstat(path, &st) < 0 || !S_ISREG(st.st_mode))
		return 0;
	if (field != NULL && (*field == NULL || strcmp(*field, path) != 0))
		return 0;	/* the source boots from elsewhere */
	int r = create_op_add(op, name, field != NULL ? field : &ignored, path, -1, err);
	free(ignored);
	return r;
}

void
vm_fork(struct ember_daemon *d, struct vm *src, const char *name, int vsock, bool start,
    uid_t owner_uid, vm_done_fn done, void *ctx)
{
	struct ember_error err = { 0 };
	char uds[PATH_MAX];
	bool want_vsock = vsock < 0 ? src->rec.vsock : vsock != 0;
	struct vm *vm;

	if (vm_check_new_name(d, name, want_vsock, uds, sizeof(uds), &err) < 0)
		goto fail;
	if (src->load_error != NULL || vm_has_process(src) || src->op.kind != VM_OP_NONE) {
		ember_error_set(&err, EK_INVALID_STATE, "stop it first",
		    "VM \"%s\" must be stopped to be forked (it is %s)", src->rec.name,
		    src->load_error ? "unreadable" : vm_status_name(src->rec.status));
		goto fail;
	}
	struct quota_hold *hold;
	if (quota_check_fork(d, src, owner_uid, want_vsock, start, &hold, &err) < 0)
		goto fail;
	if ((vm = vm_new(d)) == NULL) {
		ember_error_set(&err, EK_INTERNAL, NULL, "out of memory forking VM \"%s\"",
		    src->rec.name);
		quota_release(hold);
		goto fail;
	}
	if (vm_record_copy(&vm->rec, &src->rec) < 0 || uuid_generate_v4(vm->rec.id) < 0) {
		ember_error_set(&err, EK_INTERNAL, NULL, "cannot copy the VM record");
		quota_release(hold);
		vm_free(vm);
		goto fail;
	}
	snprintf(vm->rec.name, sizeof(vm->rec.name), "%s", name);
	vm->rec.pid = 0;
	vm->rec.pid_start_time = 0;
	vm->rec.owner_uid = owner_uid;
	vm->rec.vsock = want_vsock;
	vm->rec.guest_cid = 0;
	rfc3339_now(vm->rec.created_at);
	vm_record_set_str(&vm->rec.reason, NULL);
	vm_record_set_str(&vm->rec.uds_path, NULL);
	vm_record_set_str(&vm->rec.disk_path, NULL);
	vm_network_forget(vm);
	if (vm_record_set_str(&vm->rec.parent_vm, src->rec.name) < 0) {
		ember_error_set(&err, EK_INTERNAL, NULL, "out of memory");
		quota_release(hold);
		vm_free(vm);
		goto fail;
	}
	vm->backend = src->backend;
	if (src->rec.disk_path != NULL) {
		if (vm->backend == NULL)
			vm->backend = vm_resolve_backend(d, src->rec.backend, &err);
		if (vm->backend == NULL || vm->backend->fork == NULL) {
			ember_error_set(&err, EK_BACKEND_UNAVAILABLE, NULL,
			    "cannot copy the root disk of \"%s\" without its backend", src->rec.name);
			quota_release(hold);
			vm_free(vm);
			goto fail;
		}
	}
	/* What the source keeps in its own directory the fork keeps in its
	 * own, so deleting the source leaves it whole. */
	struct vm_create_op *op = create_op_new(vm, src, uds, start, done, ctx);
	if (op == NULL) {
		ember_error_set(&err, EK_INTERNAL, NULL, "out of memory forking VM \"%s\"",
		    src->rec.name);
		quota_release(hold);
		vm_free(vm);
		goto fail;
	}
	op->quota_hold = hold;
	if (fork_take(op, src, "kernel", &vm->rec.kernel_path, &err) < 0 ||
	    fork_take(op, src, "initrd", &vm->rec.initrd_path, &err) < 0 ||
	    fork_take(op, src, BACKEND_OWN_BASE_DISK, NULL, &err) < 0) {
		vm_free(vm);
		create_op_free(op);
		goto fail;
	}
	create_op_run(op);	/* links at once; the backend copies the disk in the background */
	return;
fail:
	done(ctx, NULL, &err);
}

/* ---- start, stop, pause, resume -------------------------------------- */

/* A start that failed: a create+start leaves nothing behind, any other
 * VM is marked failed. */
static void
vm_fail_start(struct vm *vm, const struct ember_error *err)
{
	vm_done_fn done = vm->op.done;
	void *ctx = vm->op.ctx;
	bool rollback = vm->op.rollback_on_failure;

	memset(&vm->op, 0, sizeof(vm->op));
	if (rollback) {
		log_info("vm %s: start failed, rolling back the create: %s", vm->rec.name,
		    err->message);
		vm_remove(vm);
	} else if (vm->rec.status == VM_STARTING)
		vm_transition_logged(vm, VM_EV_START_FAILED, err->message);
	if (done != NULL)
		vm_answer(vm->daemon, vm->durable_seq, done, ctx, NULL, err);
}

static void
vm_start_op(struct vm *vm, bool rollback_on_failure, vm_done_fn done, void *ctx)
{
	struct ember_daemon *d = vm->daemon;
	struct ember_error err = { 0 };
	enum vm_status next;
	char dir[PATH_MAX];

	if (vm_fork_source_check(vm, &err) < 0 || quota_check_start(vm, &err) < 0 ||
	    vm_op_begin(vm, VM_OP_START, done, ctx, &err) < 0) {
		done(ctx, NULL, &err);
		return;
	}
	vm->op.rollback_on_failure = rollback_on_failure;
	if (vm_lifecycle_next(vm->rec.status, VM_EV_START, vm->rec.status, &next, &err) < 0) {
		ember_error_clear(&err);
		ember_error_set(&err, EK_INVALID_STATE, NULL, "VM \"%s\" is already %s",
		    vm->rec.name, vm_status_name(vm->rec.status));
		vm_op_refuse(vm, &err);
		return;
	}
	if (vm->backend == NULL) {
		/* Created while its backend was unavailable: its disk is
		 * prepared now, in the background. */
		vm->backend = vm_resolve_backend(d, vm->rec.backend, &err);
		if (vm->backend == NULL) {
			vm_start_refused(vm, &err);
			return;
		}
		vm_dir(d, vm->rec.name, dir, sizeof(dir));
		vm_prepare_disk(vm, NULL, dir, vm_start_disk_ready, NULL);
		return;
	}
	vm_start_boot(vm);
}

/* A start that could not even try: a create's start rolls back, any
 * other leaves the VM's status as it was. */
static void
vm_start_refused(struct vm *vm, struct ember_error *err)
{
	if (vm->op.rollback_on_failure) {
		vm_fail_start(vm, err);
		return;
	}
	vm_op_refuse(vm, err);
}

static void
vm_start_disk_ready(struct vm *vm, void *arg, const struct ember_error *disk_err)
{
	if (disk_err != NULL) {
		struct ember_error err = *disk_err;
		vm->backend = NULL;
		vm_start_refused(vm, &err);
		return;
	}
	vm_start_boot(vm);
}

static void vm_start_launch(struct vm *vm, const struct ember_error *net_err);

static void
vm_start_boot(struct vm *vm)
{
	struct ember_error err = { 0 };
	int r;

	if (vm_record_set_str(&vm->rec.backend, vm->backend->name) < 0) {
		ember_error_set(&err, EK_INTERNAL, NULL, "out of memory starting VM \"%s\"",
		    vm->rec.name);
		vm_start_refused(vm, &err);
		return;
	}
	vm_workload_boot_begins(vm);	/* saved by the transition */
	if (vm_transition(vm, VM_EV_START, NULL, &err) < 0) {
		vm_op_refuse(vm, &err);
		return;
	}
	/* network "nat": TAP, address and rules before the hypervisor */
	if (vm_backend_check(vm, &err) < 0 ||
	    (r = vm_network_up(vm, vm_start_launch, &err)) < 0) {
		vm_fail_start(vm, &err);
		return;
	}
	if (r == 1)
		vm_start_launch(vm, NULL);
}

/* The VM's network is up (or it has none): the hypervisor goes. */
static void
vm_start_launch(struct vm *vm, const struct ember_error *net_err)
{
	struct ember_daemon *d = vm->daemon;
	struct ember_error err = { 0 };
	char dir[PATH_MAX];
	int r;

	if (net_err != NULL) {
		err = *net_err;
		vm_fail_start(vm, &err);
		return;
	}
	vm_dir(d, vm->rec.name, dir, sizeof(dir));
	r = vm->backend->start(vm->backend, &vm->rec, dir, &vm->backend_state, vm,
	    vm_start_done, &err);
	vm_network_started(vm);
	if (r < 0) {
		vm_fail_start(vm, &err);
		return;
	}
	/* The process exists now: record its pid and start time at once, so an
	 * emberd killed before the boot completes can still find and adopt it. */
	if (vm->rec.pid > 0 && vm->op.kind == VM_OP_START && vm_save(vm, &err) < 0)
		log_warnx("vm %s: %s", vm->rec.name, err.message);
}

/* An operation asked of a VM whose create is not durable yet (listed at
 * once, answered a few ms later): it waits for the create's record
 * instead of answering busy, then runs on the VM of that name and id (a
 * VM deleted meanwhile is not found). vms_fail_pending answers those
 * still waiting at shutdown. */
struct vm_deferred_op {
	struct ember_daemon *d;
	char name[sizeof(((struct vm_record *)0)->name)];
	char id[sizeof(((struct vm_record *)0)->id)];
	enum vm_op_kind kind;
	bool force;
	unsigned timeout_s;
	vm_done_fn done;		/* NULL once answered at shutdown */
	void *ctx;
	struct vm_deferred_op *next;
};
static struct vm_deferred_op *deferred_ops;

static void vm_stop_op(struct vm *vm, bool force, unsigned timeout_s, bool remove_after,
    vm_done_fn done, void *ctx);
static void vm_pause_resume(struct vm *vm, bool pause, vm_done_fn done, void *ctx);

static void
vm_deferred_run(void *arg, int ignored)
{
	struct vm_deferred_op *x = arg;
	struct ember_error err = { 0 };
	struct vm *vm;

	for (struct vm_deferred_op **p = &deferred_ops; *p != NULL; p = &(*p)->next)
		if (*p == x) {
			*p = x->next;
			break;
		}
	vm = x->done != NULL ? vm_find(x->d, x->name) : NULL;
	if (x->done != NULL && (vm == NULL || strcmp(vm->rec.id, x->id) != 0)) {
		ember_error_set(&err, EK_NOT_FOUND, NULL, "VM \"%s\" not found (its create failed or "
		    "it was deleted)", x->name);
		x->done(x->ctx, NULL, &err);
	} else if (x->done != NULL && x->kind == VM_OP_START)
		vm_start_op(vm, false, x->done, x->ctx);
	else if (x->done != NULL && x->kind == VM_OP_STOP)
		vm_stop_op(vm, x->force, x->timeout_s, false, x->done, x->ctx);
	else if (x->done != NULL)
		vm_pause_resume(vm, x->kind == VM_OP_PAUSE, x->done, x->ctx);
	free(x);
}

/* True when vm's create is not durable yet and the operation was queued
 * behind it (or answered, out of memory). */
static bool
vm_op_defer(struct vm *vm, enum vm_op_kind kind, bool force, unsigned timeout_s,
    vm_done_fn done, void *ctx)
{
	struct ember_error err = { 0 };
	struct vm_deferred_op *x;

	if (vm_create_op_listed(vm) == NULL)
		return false;
	if ((x = calloc(1, sizeof(*x))) == NULL) {
		ember_error_set(&err, EK_INTERNAL, NULL, "out of memory");
		done(ctx, NULL, &err);
		return true;
	}
	*x = (struct vm_deferred_op){ .d = vm->daemon, .kind = kind, .force = force,
	    .timeout_s = timeout_s, .done = done, .ctx = ctx, .next = deferred_ops };
	snprintf(x->name, sizeof(x->name), "%s", vm->rec.name);
	snprintf(x->id, sizeof(x->id), "%s", vm->rec.id);
	if (vm_store_wait(vm->daemon, vm->durable_seq, vm_deferred_run, x, &err) < 0) {
		free(x);
		done(ctx, NULL, &err);
		return true;
	}
	deferred_ops = x;
	return true;
}

void
vm_start(struct vm *vm, vm_done_fn done, void *ctx)
{
	if (!vm_op_defer(vm, VM_OP_START, false, 0, done, ctx))
		vm_start_op(vm, false, done, ctx);
}

static void
vm_start_done(void *vm_ctx, const struct ember_error *err)
{
	struct vm *vm = vm_ctx;

	if (err != NULL && ember_error_is_set(err)) {
		vm->backend_state = NULL;
		vm->rec.pid = 0;
		vm->rec.pid_start_time = 0;
		vm_fail_start(vm, err);
		return;
	}
	vm_transition_logged(vm, VM_EV_STARTED, NULL);
	vm_op_finish(vm, NULL);
}

/* Whole seconds left of the stop's graceful part (0: none left). */
static unsigned
vm_stop_remaining_s(const struct vm *vm)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	if (now.tv_sec > vm->op.deadline.tv_sec ||
	    (now.tv_sec == vm->op.deadline.tv_sec && now.tv_nsec >= vm->op.deadline.tv_nsec))
		return 0;
	time_t left = vm->op.deadline.tv_sec - now.tv_sec;
	if (vm->op.deadline.tv_nsec > now.tv_nsec)
		left++;
	return (unsigned)left;
}

static void vm_stop_resumed(void *vm_ctx, const struct ember_error *err);

/* A stop, and a delete's kill (remove_after: then the VM is removed). */
static void
vm_stop_op(struct vm *vm, bool force, unsigned timeout_s, bool remove_after, vm_done_fn done,
    void *ctx)
{
	struct ember_error err = { 0 };

	if (vm_op_begin(vm, VM_OP_STOP, done, ctx, &err) < 0) {
		done(ctx, NULL, &err);
		return;
	}
	vm->op.remove_after = remove_after;
	if (!vm_has_process(vm) || vm->backend == NULL || vm->rec.status == VM_STARTING ||
	    vm->rec.status == VM_STOPPING) {
		ember_error_set(&err, EK_INVALID_STATE,
		    vm->rec.status == VM_STARTING ? "wait for the start to finish" : NULL,
		    "VM \"%s\" is not running (%s)", vm->rec.name, vm_status_name(vm->rec.status));
		vm_op_refuse(vm, &err);
		return;
	}
	vm->op.force = force || timeout_s == 0;
	clock_gettime(CLOCK_MONOTONIC, &vm->op.deadline);
	vm->op.deadline.tv_sec += timeout_s;
	/* A paused guest can act on no request to power off: it is resumed
	 * first, then stopped gracefully within what is left of timeout_s. */
	if (!vm->op.force && vm->rec.status == VM_PAUSED && vm->backend_state != NULL) {
		if (vm_transition(vm, VM_EV_STOP, NULL, &err) < 0) {
			vm_op_refuse(vm, &err);
			return;
		}
		vm->op.resuming = true;
		log_info("vm %s: resuming it so that it can shut down", vm->rec.name);
		if (vm->backend->resume(vm->backend, &vm->rec, vm->backend_state,
		    vm_stop_resumed, &err) < 0)
			vm_stop_resumed(vm, &err);
		return;
	}
	/* A guest with an agent powers itself off cleanly; the backend's own
	 * graceful path and then a kill remain behind it, all within
	 * timeout_s. */
	if (!vm->op.force && vm_agent_ready(vm)) {
		json_t *req = json_pack("{s:s}", "op", "poweroff");
		int r;
		if (vm->stop_timer == NULL)
			vm->stop_timer = evtimer_new(vm->daemon->base, vm_stop_agent_timeout, vm);
		if (req == NULL || vm->stop_timer == NULL)
			r = ember_error_set(&err, EK_INTERNAL, NULL, "out of memory");
		else
			r = vm_agent_request(vm, req, 3000, vm_stop_agent_reply, vm,
			    &vm->stop_call, &err);
		json_decref(req);
		if (r == 0) {
			struct timeval tv = { timeout_s, 0 };
			vm->op.via_agent = true;
			evtimer_add(vm->stop_timer, &tv);
			vm_transition_logged(vm, VM_EV_STOP, NULL);
			log_info("vm %s: asked its agent to power off", vm->rec.name);
			return;
		}
		log_info("vm %s: %s; stopping through the backend", vm->rec.name, err.message);
		ember_error_clear(&err);
	}
	if (vm_transition(vm, VM_EV_STOP, NULL, &err) < 0) {
		vm_op_refuse(vm, &err);
		return;
	}
	vm_stop_backend(vm);
}

void
vm_stop(struct vm *vm, bool force, unsigned timeout_s, vm_done_fn done, void *ctx)
{
	if (!vm_op_defer(vm, VM_OP_STOP, force, timeout_s, done, ctx))
		vm_stop_op(vm, force, timeout_s, false, done, ctx);
}

/* The backend's stop: graceful for what is left of the timeout, then
 * harder; at once when forced or no time is left. */
static void
vm_stop_backend(struct vm *vm)
{
	struct ember_error err = { 0 };
	unsigned left = vm->op.force ? 0 : vm_stop_remaining_s(vm);

	vm->op.via_agent = false;
	if (vm->backend_state == NULL) {
		vm_stop_finish(vm, NULL);	/* it already exited */
		return;
	}
	if (vm->backend->stop(vm->backend, &vm->rec, vm->backend_state, left == 0, left,
	    vm_stop_done, &err) < 0)
		vm_stop_finish(vm, &err);
}

/* Stop of a paused VM: the resume before the graceful stop is done. */
static void
vm_stop_resumed(void *vm_ctx, const struct ember_error *err)
{
	struct vm *vm = vm_ctx;

	vm->op.resuming = false;
	if (vm->backend_state == NULL) {
		vm_stop_finish(vm, NULL);	/* it exited meanwhile (exited() said so) */
		return;
	}
	if (err != NULL && ember_error_is_set(err)) {
		log_info("vm %s: cannot resume it to shut down (%s); killing it", vm->rec.name,
		    err->message);
		vm->op.force = true;
	} else
		vm->op.prior = VM_RUNNING;	/* a failed stop leaves it running now */
	vm_stop_backend(vm);
}

static void
vm_stop_agent_reply(void *ctx, json_t *reply, const char *why)
{
	struct vm *vm = ctx;

	vm->stop_call = NULL;
	if (reply != NULL && json_is_true(json_object_get(reply, "ok")))
		return;	/* now wait for the process to exit */
	log_info("vm %s: agent could not power off (%s); stopping through the backend",
	    vm->rec.name, why ? why : json_string_value(json_object_get(reply, "error")));
	if (vm->stop_timer != NULL)
		evtimer_del(vm->stop_timer);
	vm_stop_backend(vm);
}

static void
vm_stop_agent_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct vm *vm = arg;

	if (vm->op.kind != VM_OP_STOP || !vm->op.via_agent)
		return;
	log_info("vm %s: still running after the agent's poweroff and the whole timeout; "
	    "killing it", vm->rec.name);
	agent_call_cancel(vm->stop_call);
	vm->stop_call = NULL;
	vm->op.force = true;
	vm_stop_backend(vm);
}

/* backend stop's completion */
static void
vm_stop_done(void *vm_ctx, const struct ember_error *err)
{
	vm_stop_finish(vm_ctx, err);
}

static void
vm_stop_finish(struct vm *vm, const struct ember_error *err)
{
	vm->op.via_agent = false;
	agent_call_cancel(vm->stop_call);
	vm->stop_call = NULL;
	if (vm->stop_timer != NULL)
		evtimer_del(vm->stop_timer);

	if (err != NULL && ember_error_is_set(err)) {
		log_warnx("vm %s: stop failed: %s", vm->rec.name, err->message);
		if (vm->rec.status == VM_STOPPING)
			vm_transition_logged(vm, vm->backend_state == NULL ? VM_EV_CRASHED :
			    vm->op.prior == VM_PAUSED ? VM_EV_STOP_FAILED_PAUSED : VM_EV_STOP_FAILED,
			    err->message);
		vm_op_finish(vm, err);
		return;
	}
	if (vm->rec.status == VM_STOPPING)	/* exited() not seen: trust done() */
		vm_transition_logged(vm, VM_EV_STOPPED, "stopped on request");
	if (vm->op.remove_after) {
		vm_done_fn done = vm->op.done;
		void *ctx = vm->op.ctx;
		json_t *last = vm_to_json(vm);
		memset(&vm->op, 0, sizeof(vm->op));
		vm_remove(vm);
		if (done != NULL)
			vm_answer(vm->daemon, vm->durable_seq, done, ctx, last, NULL);
		else
			json_decref(last);
		return;
	}
	vm_op_finish(vm, NULL);
}

static void
vm_pause_resume_done(void *vm_ctx, const struct ember_error *err)
{
	struct vm *vm = vm_ctx;
	struct ember_error refused = { 0 };

	if (err == NULL || !ember_error_is_set(err)) {
		/* The process may have exited meanwhile: then the exit decided. */
		if (vm_transition(vm, vm->op.kind == VM_OP_PAUSE ? VM_EV_PAUSED : VM_EV_RESUMED,
		    NULL, &refused) < 0)
			err = &refused;
	}
	vm_op_finish(vm, err);
}

static void
vm_pause_resume(struct vm *vm, bool pause, vm_done_fn done, void *ctx)
{
	struct ember_error err = { 0 };
	enum vm_status need = pause ? VM_RUNNING : VM_PAUSED;
	int r;

	if (vm_op_begin(vm, pause ? VM_OP_PAUSE : VM_OP_RESUME, done, ctx, &err) < 0) {
		done(ctx, NULL, &err);
		return;
	}
	if (vm->rec.status != need || vm->backend == NULL || vm->backend_state == NULL) {
		ember_error_set(&err, EK_INVALID_STATE, NULL, "VM \"%s\" is %s, not %s",
		    vm->rec.name, vm_status_name(vm->rec.status), vm_status_name(need));
		vm_op_refuse(vm, &err);
		return;
	}
	if (pause)
		r = vm->backend->pause(vm->backend, &vm->rec, vm->backend_state,
		    vm_pause_resume_done, &err);
	else
		r = vm->backend->resume(vm->backend, &vm->rec, vm->backend_state,
		    vm_pause_resume_done, &err);
	if (r < 0)
		vm_op_finish(vm, &err);
}

void
vm_pause(struct vm *vm, vm_done_fn done, void *ctx)
{
	if (!vm_op_defer(vm, VM_OP_PAUSE, false, 0, done, ctx))
		vm_pause_resume(vm, true, done, ctx);
}

void
vm_resume(struct vm *vm, vm_done_fn done, void *ctx)
{
	if (!vm_op_defer(vm, VM_OP_RESUME, false, 0, done, ctx))
		vm_pause_resume(vm, false, done, ctx);
}

/* ---- delete ------------------------------------------------------------ */

/* Frees the VMs vm_remove() unlisted, from the loop: never inside the
 * callback (a backend's, an agent's) that led to the removal. */
static void
vm_reap_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ember_daemon *d = arg;

	while (d->reap_list != NULL) {
		struct vm *vm = d->reap_list;
		d->reap_list = vm->reap_next;
		vm_free(vm);
	}
}

/* A deleted VM's name until its directory's move is durable. */
struct vm_deleting {
	char name[sizeof(((struct vm_record *)0)->name)];
	LIST_ENTRY(vm_deleting) entry;
};
static LIST_HEAD(, vm_deleting) deleting = LIST_HEAD_INITIALIZER(deleting);

static bool
vm_name_deleting(const char *name)
{
	struct vm_deleting *x;

	LIST_FOREACH(x, &deleting, entry)
		if (strcmp(x->name, name) == 0)
			return true;
	return false;
}

static void
vm_dir_discarded(void *arg, int result)
{
	struct vm_deleting *x = arg;

	if (result < 0)
		log_warnx("vm %s: cannot move its directory away: %s (it was removed instead)",
		    x->name, strerror(-result));
	LIST_REMOVE(x, entry);
	free(x);
}

static void
vm_reap_later(struct vm *vm)
{
	struct ember_daemon *d = vm->daemon;

	vm->reap_next = d->reap_list;
	d->reap_list = vm;
	if (d->ev_reap == NULL)
		d->ev_reap = event_new(d->base, -1, 0, vm_reap_cb, d);
	if (d->ev_reap != NULL)
		event_active(d->ev_reap, EV_TIMEOUT, 0);
}

/* Unlists the VM, deletes its state and CID; it is freed from the loop
 * soon after. Crash-safe order, kept by the writer: rename the directory
 * away, then release the CID in cids.json, then remove the tree. */
static void
vm_remove(struct vm *vm)
{
	struct ember_daemon *d = vm->daemon;
	struct ember_error err = { 0 };
	char dir[PATH_MAX], trash[PATH_MAX];
	struct vm_deleting *x;

	vm_dir(d, vm->rec.name, dir, sizeof(dir));
	vm_network_down(vm);
	vm_network_release(vm);
	if (vm->backend != NULL && vm->backend->remove != NULL &&
	    vm->backend->remove(vm->backend, &vm->rec, dir, &err) < 0)
		log_warnx("vm %s: %s (removing the directory anyway)", vm->rec.name, err.message);
	snprintf(trash, sizeof(trash), "%s/vms/.trash-%s-%s", d->state_dir, vm->rec.name,
	    vm->rec.id[0] ? vm->rec.id : "x");
	ember_error_clear(&err);
	vm_store_plug(d);	/* the move and cids.json in one batch */
	if ((x = calloc(1, sizeof(*x))) == NULL) {
		/* cannot keep the name taken: move it away here and now */
		if (rename(dir, trash) < 0 && errno != ENOENT)
			log_warn("vm %s: rename %s", vm->rec.name, dir);
		rm_rf(trash);
		rm_rf(dir);
	} else {
		snprintf(x->name, sizeof(x->name), "%s", vm->rec.name);
		LIST_INSERT_HEAD(&deleting, x, entry);
		if (discard_dir_ordered(d, dir, trash, vm_dir_discarded, x, &err) < 0)
			log_warnx("vm %s: %s", vm->rec.name, err.message);
	}
	if (cid_alloc_release(d->cids, vm->rec.name) == 0) {
		ember_error_clear(&err);
		if (cids_save(d, &err) < 0)
			log_warnx("%s", err.message);
	}
	vm_store_unplug(d);
	vm->durable_seq = vm_store_last_seq(d);
	vm_list_remove(d, vm);
	log_info("vm %s: deleted", vm->rec.name);
	vm_events_deleted(vm);
	/* Its agent's waiters and requests are answered now, while the VM
	 * is still whole; the memory goes at the next turn of the loop. */
	vm_agent_free(vm);
	/* A create whose record is not durable yet still names the VM: its
	 * callback answers it and frees the VM (vm_materialize_durable). */
	struct vm_create_op *creating = vm_create_op_listed(vm);
	if (creating != NULL)
		creating->removed = true;
	else
		vm_reap_later(vm);
	daemon_status_changed(d);
}

void
vm_delete(struct vm *vm, bool force, vm_done_fn done, void *ctx)
{
	struct ember_error err = { 0 };

	if (vm_fork_source_check(vm, &err) < 0) {
		done(ctx, NULL, &err);
		return;
	}
	if (vm->op.kind != VM_OP_NONE && vm->op.kind != VM_OP_CREATE) {
		ember_error_set(&err, EK_BUSY, "wait for it to finish and retry",
		    "VM \"%s\" is busy with another operation (%s)", vm->rec.name,
		    vm_op_name(vm->op.kind));
		done(ctx, NULL, &err);
		return;
	}
	/* A create not yet durable may be deleted (a client pipelining create
	 * and delete): the writer keeps the two in order on disk and the
	 * create is answered first. */
	if (vm_has_process(vm) && vm->load_error == NULL) {
		if (!force) {
			ember_error_set(&err, EK_INVALID_STATE,
			    "stop it first, or pass force to kill it",
			    "VM \"%s\" is %s", vm->rec.name, vm_status_name(vm->rec.status));
			done(ctx, NULL, &err);
			return;
		}
		if (vm->backend != NULL && vm->backend_state != NULL) {
			vm_stop_op(vm, true, 0, true, done, ctx);
			return;
		}
	}
	json_t *last = vm_to_json(vm);
	vm_remove(vm);
	vm_answer(vm->daemon, vm->durable_seq, done, ctx, last, NULL);
}

#define HOUSEKEEPING_INTERVAL_S 10

static void
vms_housekeeping_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ember_daemon *d = arg;
	char dir[PATH_MAX];

	for (size_t i = 0; i < d->nvms; i++) {
		struct vm *vm = d->vms[i];
		if (vm->backend_state == NULL)
			continue;
		vm_dir(d, vm->rec.name, dir, sizeof(dir));
		if (console_trim(dir) == 1)
			log_info("vm %s: console.log passed %d MiB; its last %d MiB moved to "
			    "console.log.1", vm->rec.name, CONSOLE_MAX_BYTES >> 20,
			    CONSOLE_KEEP_BYTES >> 20);
	}
}

void
vms_housekeeping_start(struct ember_daemon *d)
{
	struct timeval tv = { HOUSEKEEPING_INTERVAL_S, 0 };

	d->ev_housekeeping = event_new(d->base, -1, EV_PERSIST, vms_housekeeping_cb, d);
	if (d->ev_housekeeping == NULL) {
		log_warnx("out of memory: console.log files are not trimmed this run");
		return;
	}
	event_add(d->ev_housekeeping, &tv);
}

/* Answers every create on list with err (the creates themselves go on). */
static void
creates_answer(struct vm_create_ops *list, const struct ember_error *err)
{
	struct vm_create_op *op;

	LIST_FOREACH(op, list, entry) {
		if (op->done != NULL)
			op->done(op->ctx, NULL, err);
		op->done = NULL;
	}
}

void
vms_fail_pending(struct ember_daemon *d)
{
	struct ember_error err = { 0 };
	const char *why = d->upgrading && !d->shutting_down ? "emberd is upgrading" :
	    "emberd is shutting down";

	if (d->upgrading && !d->shutting_down)
		ember_error_set(&err, EK_BUSY, "retry in a moment: emberd re-executes in place "
		    "and adopts the VMs still running", "%s", why);
	else
		ember_error_set(&err, EK_BUSY, "start emberd again: it adopts the VMs still "
		    "running and lists the others as they are", "%s", why);
	/* Creates: their clients are answered now (one still copying files
	 * never appears: startup removes its staging directory). */
	creates_answer(&creates_unlisted, &err);
	creates_answer(&creates_listed, &err);
	/* Operations waiting for a create: freed when the wait ends. */
	for (struct vm_deferred_op *x = deferred_ops; x != NULL; x = x->next) {
		if (x->done != NULL)
			x->done(x->ctx, NULL, &err);
		x->done = NULL;
	}
	for (size_t i = 0; i < d->nvms; i++) {
		struct vm *vm = d->vms[i];
		if (vm->op.done != NULL) {
			struct ember_error op_err = { 0 };
			ember_error_set(&op_err, EK_BUSY, err.hint,
			    "%s: the %s of VM \"%s\" was not finished (it is %s)", why,
			    vm_op_name(vm->op.kind), vm->rec.name, vm_status_name(vm->rec.status));
			vm_done_fn done = vm->op.done;
			vm->op.done = NULL;	/* the operation itself runs on */
			done(vm->op.ctx, NULL, &op_err);
		}
		vm_agent_fail_pending(vm, &err);
	}
}

void
vms_detach_all(struct ember_daemon *d)
{
	vms_detaching = true;
	/* Queued state writes first: their callbacks name creates and
	 * deletes still pending here. */
	vm_store_close(d);
	struct vm_create_op *op;
	while ((op = LIST_FIRST(&creates_unlisted)) != NULL) {
		/* its cp child is left to finish into a staging directory the
		 * next start removes */
		vm_free(op->vm);
		create_op_free(op);
	}
	while ((op = LIST_FIRST(&creates_listed)) != NULL) {
		op->vm->creating = NULL;	/* the VM is freed with the list */
		create_op_free(op);
	}
	vm_reap_cb(-1, 0, d);
	if (d->ev_reap != NULL)
		event_free(d->ev_reap);
	d->ev_reap = NULL;
	for (size_t i = 0; i < d->nvms; i++) {
		struct vm *vm = d->vms[i];
		if (vm->backend != NULL && vm->backend_state != NULL)
			vm->backend->release(vm->backend, vm->backend_state, true);
		vm->backend_state = NULL;
		vm_free(vm);
	}
	free(d->vms);
	d->vms = NULL;
	d->nvms = d->vms_cap = 0;
	vm_network_free(d);
	vms_detaching = false;	/* a later daemon in this process (tests) */
}
