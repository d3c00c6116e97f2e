/*
 * Unit tests for the VM lifecycle (daemon/vm-lifecycle.c and the operations
 * in daemon/vm.c) against a fake backend whose every completion, failure
 * and process exit the test triggers by hand: the table itself, start and
 * its failures, stop and its failures (of a paused VM too), exits in the
 * middle of operations, operations refused while another is in flight,
 * pause/resume races, delete, and daemon shutdown with operations and
 * agent waiters pending (every client is answered exactly once).
 */
#include <check.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>

#include "cid-alloc.h"
#include "daemon.h"
#include "fsutil.h"
#include "vm.h"
#include "vm-agent.h"
#include "vm-internal.h"
#include "vm-lifecycle.h"
#include "test-daemon.h"
#include "test-util.h"

/* ---- the fake backend ---------------------------------------------------- */

enum fake_call { FAKE_NONE, FAKE_START, FAKE_STOP, FAKE_PAUSE, FAKE_RESUME };

struct fake {
	enum fake_call pending;		/* the operation whose done is held */
	backend_done_fn done;
	void *vm_ctx;
	int fail_next_sync;		/* the next call returns -1 at once */
	bool last_stop_force;
	unsigned last_stop_timeout;
	unsigned starts, stops, pauses, resumes, releases;
};

static struct fake fake;

static int
fake_begin(enum fake_call call, void *vm_ctx, backend_done_fn done, struct ember_error *err)
{
	if (fake.fail_next_sync) {
		fake.fail_next_sync = 0;
		return ember_error_set(err, EK_BACKEND_ERROR, NULL, "fake: refused at once");
	}
	ck_assert_int_eq(fake.pending, FAKE_NONE);	/* one at a time, as backend.h says */
	fake.pending = call;
	fake.done = done;
	fake.vm_ctx = vm_ctx;
	return 0;
}

static int
fake_start(struct backend *be, struct vm_record *rec, const char *vm_dir, void **vmstate,
    void *vm_ctx, backend_done_fn done, struct ember_error *err)
{
	fake.starts++;
	if (fake_begin(FAKE_START, vm_ctx, done, err) < 0)
		return -1;
	*vmstate = vm_ctx;	/* the VM itself: later calls know whose they are */
	rec->pid = 4242;
	return 0;
}

static int
fake_stop(struct backend *be, struct vm_record *rec, void *vmstate, bool force,
    unsigned timeout_s, backend_done_fn done, struct ember_error *err)
{
	fake.stops++;
	fake.last_stop_force = force;
	fake.last_stop_timeout = timeout_s;
	return fake_begin(FAKE_STOP, vmstate, done, err);
}

static int
fake_pause(struct backend *be, struct vm_record *rec, void *vmstate, backend_done_fn done,
    struct ember_error *err)
{
	fake.pauses++;
	return fake_begin(FAKE_PAUSE, vmstate, done, err);
}

static int
fake_resume(struct backend *be, struct vm_record *rec, void *vmstate, backend_done_fn done,
    struct ember_error *err)
{
	fake.resumes++;
	return fake_begin(FAKE_RESUME, vmstate, done, err);
}

static void
fake_release(struct backend *be, void *vmstate, bool detach)
{
	fake.releases++;
}

static struct backend fake_backend = {
	.name = "qemu",
	.start = fake_start,
	.stop = fake_stop,
	.pause = fake_pause,
	.resume = fake_resume,
	.release = fake_release,
};

/* Completes the held operation (err NULL: success). */
static void
fake_complete(enum fake_call expect, const char *failure)
{
	struct ember_error err = { 0 };
	backend_done_fn done = fake.done;

	ck_assert_int_eq(fake.pending, expect);
	fake.pending = FAKE_NONE;
	fake.done = NULL;
	if (failure != NULL)
		ember_error_set(&err, EK_BACKEND_ERROR, NULL, "fake: %s", failure);
	done(fake.vm_ctx, failure != NULL ? &err : NULL);
}

/* The process exits (as a backend reports it: exited, then the held
 * operation's done: a stop succeeds, anything else fails). */
static void
fake_exit(int wait_status)
{
	enum fake_call held = fake.pending;

	vm_backend_host.exited(fake.vm_ctx, wait_status, wait_status == 0 ? NULL : "crashed");
	if (held == FAKE_STOP)
		fake_complete(FAKE_STOP, NULL);
	else if (held != FAKE_NONE && held != FAKE_START)
		fake_complete(held, "exited during the operation");
}

/* ---- a daemon without a transport ---------------------------------------- */

static struct ember_daemon *d;

struct answer {
	unsigned calls;
	enum ember_error_kind kind;	/* EK_NONE: success */
	char message[512];
	enum vm_status status;		/* of the result, on success */
};

static void
answer_cb(void *ctx, json_t *result, const struct ember_error *err)
{
	struct answer *a = ctx;

	a->calls++;
	if (err != NULL) {
		a->kind = err->kind;
		snprintf(a->message, sizeof(a->message), "%s", err->message);
	} else {
		a->kind = EK_NONE;
		ck_assert_ptr_nonnull(result);
		ck_assert_int_eq(vm_status_parse(json_string_value(json_object_get(result,
		    "status")), &a->status), 0);
	}
	json_decref(result);
}

static void
setup(void)
{
	memset(&fake, 0, sizeof(fake));
	d = test_daemon_new("/tmp/check-lifecycle-XXXXXX", (const char *[]){ "vms", "vsock", NULL });
}

static void
teardown(void)
{
	vms_fail_pending(d);
	test_daemon_free(d);
}

/* A listed VM in status created, on the fake backend. */
static struct vm *
make_vm(const char *name)
{
	struct ember_error err = { 0 };
	char dir[PATH_MAX];
	struct vm *vm = vm_new(d);

	snprintf(vm->rec.name, sizeof(vm->rec.name), "%s", name);
	snprintf(vm->rec.id, sizeof(vm->rec.id), "00000000-0000-4000-8000-000000000001");
	vm->rec.cpus = 1;
	vm->rec.memory_mib = 64;
	vm_record_set_str(&vm->rec.backend, "qemu");
	vm->backend = &fake_backend;
	vm_dir(d, name, dir, sizeof(dir));
	ck_assert_int_eq(mkdir(dir, 0700), 0);
	ck_assert_int_eq(vm_lifecycle_enter(vm, VM_EV_CREATE, NULL, &err), 0);
	ck_assert_int_eq(vm->rec.status, VM_CREATED);
	vm_list_insert(d, vm);
	return vm;
}

static struct vm *
make_running(const char *name)
{
	struct answer a = { 0 };
	struct vm *vm = make_vm(name);

	vm_start(vm, answer_cb, &a);
	fake_complete(FAKE_START, NULL);
	ck_assert_uint_eq(a.calls, 1);
	ck_assert_int_eq(vm->rec.status, VM_RUNNING);
	return vm;
}

static struct vm *
make_paused(const char *name)
{
	struct answer a = { 0 };
	struct vm *vm = make_running(name);

	vm_pause(vm, answer_cb, &a);
	fake_complete(FAKE_PAUSE, NULL);
	ck_assert_uint_eq(a.calls, 1);
	ck_assert_int_eq(vm->rec.status, VM_PAUSED);
	return vm;
}

/* ---- the table ------------------------------------------------------------- */

START_TEST(table_lists_exactly_the_legal_transitions)
{
	static const struct { unsigned from; enum vm_event ev; enum vm_status to; } legal[] = {
		{ VM_LIFECYCLE_NEW, VM_EV_CREATE, VM_CREATED },
		{ VM_LIFECYCLE_NEW, VM_EV_LOAD_UNREADABLE, VM_FAILED },
		{ VM_CREATED, VM_EV_START, VM_STARTING },
		{ VM_STOPPED, VM_EV_START, VM_STARTING },
		{ VM_FAILED, VM_EV_START, VM_STARTING },
		{ VM_STARTING, VM_EV_STARTED, VM_RUNNING },
		{ VM_STARTING, VM_EV_START_FAILED, VM_FAILED },
		{ VM_RUNNING, VM_EV_PAUSED, VM_PAUSED },
		{ VM_PAUSED, VM_EV_RESUMED, VM_RUNNING },
		{ VM_RUNNING, VM_EV_STOP, VM_STOPPING },
		{ VM_PAUSED, VM_EV_STOP, VM_STOPPING },
		{ VM_RUNNING, VM_EV_GUEST_SHUTDOWN, VM_STOPPING },
		{ VM_PAUSED, VM_EV_GUEST_SHUTDOWN, VM_STOPPING },
		{ VM_STOPPING, VM_EV_STOPPED, VM_STOPPED },
		{ VM_STOPPING, VM_EV_STOP_FAILED, VM_RUNNING },
		{ VM_STOPPING, VM_EV_STOP_FAILED_PAUSED, VM_PAUSED },
		{ VM_STARTING, VM_EV_EXITED, VM_STOPPED },
		{ VM_RUNNING, VM_EV_EXITED, VM_STOPPED },
		{ VM_PAUSED, VM_EV_EXITED, VM_STOPPED },
		{ VM_STOPPING, VM_EV_EXITED, VM_STOPPED },
		{ VM_STARTING, VM_EV_CRASHED, VM_FAILED },
		{ VM_RUNNING, VM_EV_CRASHED, VM_FAILED },
		{ VM_PAUSED, VM_EV_CRASHED, VM_FAILED },
		{ VM_STOPPING, VM_EV_CRASHED, VM_FAILED },
		{ VM_STARTING, VM_EV_ADOPTED, VM_RUNNING },
		{ VM_RUNNING, VM_EV_ADOPTED, VM_RUNNING },
		{ VM_PAUSED, VM_EV_ADOPTED, VM_PAUSED },
		{ VM_STOPPING, VM_EV_ADOPTED, VM_RUNNING },
		{ VM_STARTING, VM_EV_ADOPT_FAILED, VM_FAILED },
		{ VM_RUNNING, VM_EV_ADOPT_FAILED, VM_FAILED },
		{ VM_PAUSED, VM_EV_ADOPT_FAILED, VM_FAILED },
		{ VM_STOPPING, VM_EV_ADOPT_FAILED, VM_FAILED },
	};
	size_t nlegal = sizeof(legal) / sizeof(legal[0]), found = 0;

	for (unsigned from = 0; from <= VM_LIFECYCLE_NEW; from++)
		for (int ev = 0; ev < VM_EV__COUNT; ev++) {
			struct ember_error err = { 0 };
			enum vm_status to = VM_STATUS__COUNT;
			int r;

			if (ev == VM_EV_LOAD)
				continue;	/* below */
			r = vm_lifecycle_next(from, (enum vm_event)ev, VM_CREATED, &to, &err);
			size_t i;
			for (i = 0; i < nlegal; i++)
				if (legal[i].from == from && legal[i].ev == (enum vm_event)ev)
					break;
			if (i < nlegal) {
				ck_assert_msg(r == 0, "%u/%s refused", from, vm_event_name(ev));
				ck_assert_int_eq(to, legal[i].to);
				found++;
			} else {
				ck_assert_msg(r == -1, "%u/%s allowed", from, vm_event_name(ev));
				ck_assert_int_eq(err.kind, EK_INVALID_STATE);
				ck_assert_ptr_nonnull(strstr(err.message, "no lifecycle transition"));
			}
		}
	ck_assert_uint_eq(found, nlegal);
}
END_TEST

START_TEST(table_load_takes_the_recorded_status_once)
{
	struct ember_error err = { 0 };
	enum vm_status to;

	for (int s = 0; s < VM_STATUS__COUNT; s++) {
		ck_assert_int_eq(vm_lifecycle_next(VM_LIFECYCLE_NEW, VM_EV_LOAD, (enum vm_status)s,
		    &to, &err), 0);
		ck_assert_int_eq(to, s);
		/* a VM with a status is never loaded again */
		ck_assert_int_eq(vm_lifecycle_next((unsigned)s, VM_EV_LOAD, (enum vm_status)s, &to,
		    &err), -1);
	}
	ck_assert_int_eq(vm_lifecycle_next(VM_LIFECYCLE_NEW, VM_EV_LOAD, VM_STATUS__COUNT, &to,
	    &err), -1);
}
END_TEST

START_TEST(illegal_transition_is_refused_and_changes_nothing)
{
	struct ember_error err = { 0 };
	struct vm *vm = make_vm("v1");

	ck_assert_int_eq(vm_transition(vm, VM_EV_STOPPED, "no", &err), -1);
	ck_assert_int_eq(err.kind, EK_INVALID_STATE);
	ck_assert_ptr_nonnull(strstr(err.message, "v1"));
	ck_assert_int_eq(vm->rec.status, VM_CREATED);
	ck_assert_int_eq(vm_lifecycle_enter(vm, VM_EV_CREATE, NULL, &err), -1);
}
END_TEST

/* ---- start ------------------------------------------------------------------ */

START_TEST(start_completes_once)
{
	struct answer a = { 0 };
	struct vm *vm = make_vm("v1");

	vm_start(vm, answer_cb, &a);
	ck_assert_int_eq(vm->rec.status, VM_STARTING);
	ck_assert_uint_eq(a.calls, 0);
	fake_complete(FAKE_START, NULL);
	ck_assert_uint_eq(a.calls, 1);
	ck_assert_int_eq(a.kind, EK_NONE);
	ck_assert_int_eq(a.status, VM_RUNNING);
	ck_assert_int_eq(vm->op.kind, VM_OP_NONE);
}
END_TEST

START_TEST(start_of_a_running_vm_is_refused)
{
	struct answer a = { 0 };
	struct vm *vm = make_running("v1");

	vm_start(vm, answer_cb, &a);
	ck_assert_uint_eq(a.calls, 1);
	ck_assert_int_eq(a.kind, EK_INVALID_STATE);
	ck_assert_int_eq(vm->rec.status, VM_RUNNING);
	ck_assert_uint_eq(fake.starts, 1);
}
END_TEST

START_TEST(backend_error_mid_start_marks_failed)
{
	struct answer a = { 0 };
	struct vm *vm = make_vm("v1");

	vm_start(vm, answer_cb, &a);
	fake_complete(FAKE_START, "QEMU did not start");
	ck_assert_uint_eq(a.calls, 1);
	ck_assert_int_eq(a.kind, EK_BACKEND_ERROR);
	ck_assert_int_eq(vm->rec.status, VM_FAILED);
	ck_assert_ptr_nonnull(strstr(vm->rec.reason, "QEMU did not start"));
	/* and a failed VM starts again */
	memset(&a, 0, sizeof(a));
	vm_start(vm, answer_cb, &a);
	fake_complete(FAKE_START, NULL);
	ck_assert_int_eq(a.status, VM_RUNNING);
}
END_TEST

START_TEST(backend_refusing_start_at_once_marks_failed)
{
	struct answer a = { 0 };
	struct vm *vm = make_vm("v1");

	fake.fail_next_sync = 1;
	vm_start(vm, answer_cb, &a);
	ck_assert_uint_eq(a.calls, 1);
	ck_assert_int_eq(a.kind, EK_BACKEND_ERROR);
	ck_assert_int_eq(vm->rec.status, VM_FAILED);
	ck_assert_int_eq(vm->op.kind, VM_OP_NONE);
}
END_TEST

START_TEST(stop_during_start_is_refused_and_start_completes)
{
	struct answer start = { 0 }, stop = { 0 }, forced = { 0 };
	struct vm *vm = make_vm("v1");

	vm_start(vm, answer_cb, &start);
	vm_stop(vm, false, 10, answer_cb, &stop);
	vm_stop(vm, true, 0, answer_cb, &forced);
	ck_assert_uint_eq(stop.calls, 1);
	ck_assert_int_eq(stop.kind, EK_BUSY);
	ck_assert_uint_eq(forced.calls, 1);
	ck_assert_int_eq(forced.kind, EK_BUSY);
	ck_assert_uint_eq(fake.stops, 0);	/* never reached the backend */
	ck_assert_int_eq(vm->rec.status, VM_STARTING);
	fake_complete(FAKE_START, NULL);
	ck_assert_uint_eq(start.calls, 1);
	ck_assert_int_eq(start.status, VM_RUNNING);
}
END_TEST

START_TEST(delete_while_starting_is_refused)
{
	struct answer start = { 0 }, del = { 0 }, del_force = { 0 };
	struct vm *vm = make_vm("v1");

	vm_start(vm, answer_cb, &start);
	vm_delete(vm, false, answer_cb, &del);
	vm_delete(vm, true, answer_cb, &del_force);
	ck_assert_uint_eq(del.calls, 1);
	ck_assert_int_eq(del.kind, EK_BUSY);
	ck_assert_uint_eq(del_force.calls, 1);
	ck_assert_int_eq(del_force.kind, EK_BUSY);
	ck_assert_ptr_eq(vm_find(d, "v1"), vm);
	fake_complete(FAKE_START, NULL);
	ck_assert_int_eq(start.status, VM_RUNNING);
}
END_TEST

START_TEST(exit_during_start_reports_through_start)
{
	struct answer a = { 0 };
	struct vm *vm = make_vm("v1");

	vm_start(vm, answer_cb, &a);
	/* as the backends do: exited() is not called during a start, its done is */
	vm->backend_state = NULL;
	fake_complete(FAKE_START, "exited while starting");
	ck_assert_uint_eq(a.calls, 1);
	ck_assert_int_eq(vm->rec.status, VM_FAILED);
	ck_assert_int_eq(vm->rec.pid, 0);
}
END_TEST

/* ---- stop ------------------------------------------------------------------- */

START_TEST(stop_completes)
{
	struct answer a = { 0 };
	struct vm *vm = make_running("v1");

	vm_stop(vm, false, 10, answer_cb, &a);
	ck_assert_int_eq(vm->rec.status, VM_STOPPING);
	ck_assert(!fake.last_stop_force);
	ck_assert_uint_le(fake.last_stop_timeout, 10);
	ck_assert_uint_ge(fake.last_stop_timeout, 9);
	fake_exit(0);
	ck_assert_uint_eq(a.calls, 1);
	ck_assert_int_eq(a.kind, EK_NONE);
	ck_assert_int_eq(a.status, VM_STOPPED);
	ck_assert_int_eq(vm->rec.status, VM_STOPPED);
}
END_TEST

START_TEST(exit_during_stop_with_failure_status)
{
	struct answer a = { 0 };
	struct vm *vm = make_running("v1");

	vm_stop(vm, true, 0, answer_cb, &a);
	ck_assert(fake.last_stop_force);
	fake_exit(W_EXITCODE(0, 9));
	ck_assert_uint_eq(a.calls, 1);
	ck_assert_int_eq(a.status, VM_STOPPED);	/* we killed it: a stop, not a crash */
}
END_TEST

START_TEST(failed_stop_of_running_vm_leaves_it_running)
{
	struct answer a = { 0 };
	struct vm *vm = make_running("v1");

	vm_stop(vm, false, 10, answer_cb, &a);
	fake_complete(FAKE_STOP, "cannot stop");
	ck_assert_uint_eq(a.calls, 1);
	ck_assert_int_eq(a.kind, EK_BACKEND_ERROR);
	ck_assert_int_eq(vm->rec.status, VM_RUNNING);
}
END_TEST

/* Issue 12, bug 1: a failed stop of a paused VM marked it running. */
START_TEST(failed_stop_of_paused_vm_leaves_it_paused)
{
	struct answer a = { 0 }, b = { 0 };
	struct vm *vm = make_paused("v1");

	vm_stop(vm, true, 0, answer_cb, &a);		/* forced: no resume first */
	ck_assert_uint_eq(fake.resumes, 0);
	fake_complete(FAKE_STOP, "cannot kill");
	ck_assert_uint_eq(a.calls, 1);
	ck_assert_int_eq(a.kind, EK_BACKEND_ERROR);
	ck_assert_int_eq(vm->rec.status, VM_PAUSED);
	/* refused at once by the backend: the same */
	fake.fail_next_sync = 1;
	vm_stop(vm, true, 0, answer_cb, &b);
	ck_assert_uint_eq(b.calls, 1);
	ck_assert_int_eq(vm->rec.status, VM_PAUSED);
}
END_TEST

/* Issue 12, bug 4: a paused guest cannot act on a power-off request; it is
 * resumed first and stopped gracefully within the one timeout. */
START_TEST(graceful_stop_of_paused_vm_resumes_it_first)
{
	struct answer a = { 0 };
	struct vm *vm = make_paused("v1");

	vm_stop(vm, false, 30, answer_cb, &a);
	ck_assert_int_eq(vm->rec.status, VM_STOPPING);
	ck_assert_uint_eq(fake.stops, 0);
	fake_complete(FAKE_RESUME, NULL);
	ck_assert_int_eq(vm->rec.status, VM_STOPPING);	/* not back to running */
	ck_assert_uint_eq(fake.stops, 1);
	ck_assert(!fake.last_stop_force);
	ck_assert_uint_le(fake.last_stop_timeout, 30);
	/* the stop then fails: the VM runs now, so it says running */
	fake_complete(FAKE_STOP, "cannot stop");
	ck_assert_int_eq(a.kind, EK_BACKEND_ERROR);
	ck_assert_int_eq(vm->rec.status, VM_RUNNING);
}
END_TEST

START_TEST(paused_vm_that_cannot_resume_is_killed)
{
	struct answer a = { 0 };
	struct vm *vm = make_paused("v1");

	vm_stop(vm, false, 30, answer_cb, &a);
	fake_complete(FAKE_RESUME, "cannot resume");
	ck_assert_uint_eq(fake.stops, 1);
	ck_assert(fake.last_stop_force);
	fake_exit(W_EXITCODE(0, 9));
	ck_assert_int_eq(a.status, VM_STOPPED);
}
END_TEST

START_TEST(paused_vm_exiting_while_resumed_for_stop)
{
	struct answer a = { 0 };
	struct vm *vm = make_paused("v1");

	vm_stop(vm, false, 30, answer_cb, &a);
	fake_exit(0);		/* exited, then the resume's done fails */
	ck_assert_uint_eq(a.calls, 1);
	ck_assert_int_eq(a.kind, EK_NONE);
	ck_assert_int_eq(a.status, VM_STOPPED);
	ck_assert_uint_eq(fake.stops, 0);
}
END_TEST

START_TEST(stop_of_stopped_vm_is_refused)
{
	struct answer a = { 0 };
	struct vm *vm = make_vm("v1");

	vm_stop(vm, false, 10, answer_cb, &a);
	ck_assert_uint_eq(a.calls, 1);
	ck_assert_int_eq(a.kind, EK_INVALID_STATE);
	ck_assert_int_eq(vm->rec.status, VM_CREATED);
	ck_assert_int_eq(vm->op.kind, VM_OP_NONE);
}
END_TEST

/* ---- pause, resume, reports ------------------------------------------------ */

START_TEST(pause_resume_races)
{
	struct answer p1 = { 0 }, p2 = { 0 }, r1 = { 0 }, s1 = { 0 };
	struct vm *vm = make_running("v1");

	vm_pause(vm, answer_cb, &p1);
	vm_pause(vm, answer_cb, &p2);
	vm_resume(vm, answer_cb, &r1);
	vm_stop(vm, false, 10, answer_cb, &s1);
	ck_assert_int_eq(p2.kind, EK_BUSY);
	ck_assert_int_eq(r1.kind, EK_BUSY);
	ck_assert_int_eq(s1.kind, EK_BUSY);
	ck_assert_uint_eq(fake.pauses, 1);
	fake_complete(FAKE_PAUSE, NULL);
	ck_assert_int_eq(p1.status, VM_PAUSED);
	/* resume of a running VM, pause of a paused one: refused */
	memset(&p2, 0, sizeof(p2));
	vm_pause(vm, answer_cb, &p2);
	ck_assert_int_eq(p2.kind, EK_INVALID_STATE);
	memset(&r1, 0, sizeof(r1));
	vm_resume(vm, answer_cb, &r1);
	fake_complete(FAKE_RESUME, NULL);
	ck_assert_int_eq(r1.status, VM_RUNNING);
}
END_TEST

START_TEST(exit_during_pause_wins_over_its_completion)
{
	struct answer a = { 0 };
	struct vm *vm = make_running("v1");

	vm_pause(vm, answer_cb, &a);
	fake_exit(W_EXITCODE(1, 0));
	ck_assert_uint_eq(a.calls, 1);
	ck_assert_int_eq(a.kind, EK_BACKEND_ERROR);
	ck_assert_int_eq(vm->rec.status, VM_FAILED);
}
END_TEST

START_TEST(hypervisor_reports_go_through_the_table)
{
	struct answer a = { 0 };
	struct vm *vm = make_running("v1");

	vm_backend_host.status(vm, VM_PAUSED, "paused by QEMU");
	ck_assert_int_eq(vm->rec.status, VM_PAUSED);
	vm_backend_host.status(vm, VM_RUNNING, NULL);
	ck_assert_int_eq(vm->rec.status, VM_RUNNING);
	vm_stop(vm, false, 10, answer_cb, &a);
	/* a resume report while stopping is no transition: dropped */
	vm_backend_host.status(vm, VM_RUNNING, NULL);
	ck_assert_int_eq(vm->rec.status, VM_STOPPING);
	vm_backend_host.status(vm, VM_CREATED, NULL);
	ck_assert_int_eq(vm->rec.status, VM_STOPPING);
	fake_exit(0);
	ck_assert_int_eq(a.status, VM_STOPPED);
}
END_TEST

START_TEST(crash_while_running_marks_failed)
{
	struct vm *vm = make_running("v1");

	fake_exit(W_EXITCODE(1, 0));
	ck_assert_int_eq(vm->rec.status, VM_FAILED);
	ck_assert_ptr_nonnull(strstr(vm->rec.reason, "crashed"));
	ck_assert_int_eq(vm->rec.pid, 0);
}
END_TEST

/* ---- delete ------------------------------------------------------------------ */

START_TEST(delete_force_kills_then_removes)
{
	struct answer a = { 0 }, b = { 0 };
	struct vm *vm = make_running("v1");

	vm_delete(vm, false, answer_cb, &b);
	ck_assert_int_eq(b.kind, EK_INVALID_STATE);
	vm_delete(vm, true, answer_cb, &a);
	ck_assert(fake.last_stop_force);
	ck_assert_ptr_eq(vm_find(d, "v1"), vm);
	fake_exit(W_EXITCODE(0, 9));
	ck_assert_uint_eq(a.calls, 1);
	ck_assert_int_eq(a.status, VM_STOPPED);
	ck_assert_ptr_null(vm_find(d, "v1"));
	/* freed from the loop, not inside the backend's callback */
	ck_assert_ptr_eq(d->reap_list, vm);
	event_base_loop(d->base, EVLOOP_NONBLOCK);
	ck_assert_ptr_null(d->reap_list);
}
END_TEST

START_TEST(delete_of_stopped_vm)
{
	struct answer a = { 0 };
	char dir[PATH_MAX];
	struct stat st;

	make_vm("v1");
	vm_dir(d, "v1", dir, sizeof(dir));
	vm_delete(vm_find(d, "v1"), false, answer_cb, &a);
	ck_assert_uint_eq(a.calls, 1);
	ck_assert_int_eq(a.status, VM_CREATED);
	ck_assert_ptr_null(vm_find(d, "v1"));
	ck_assert_int_eq(stat(dir, &st), -1);
}
END_TEST

/* ---- load and adoption ------------------------------------------------------- */

START_TEST(load_and_adopt_through_the_table)
{
	struct ember_error err = { 0 };
	struct vm *vm = vm_new(d);

	snprintf(vm->rec.name, sizeof(vm->rec.name), "v1");
	vm->rec.status = VM_STOPPING;	/* as vm.json recorded it */
	ck_assert_int_eq(vm_lifecycle_enter(vm, VM_EV_LOAD, NULL, &err), 0);
	ck_assert_int_eq(vm->rec.status, VM_STOPPING);
	ck_assert(vm_has_process(vm));
	ck_assert_int_eq(vm_lifecycle_enter(vm, VM_EV_ADOPTED, NULL, &err), 0);
	ck_assert_int_eq(vm->rec.status, VM_RUNNING);
	ck_assert_int_eq(vm_lifecycle_enter(vm, VM_EV_ADOPT_FAILED, "gone", &err), 0);
	ck_assert_int_eq(vm->rec.status, VM_FAILED);
	ck_assert_int_eq(vm_lifecycle_enter(vm, VM_EV_ADOPTED, NULL, &err), -1);
	vm_free(vm);
}
END_TEST

/* ---- daemon shutdown ------------------------------------------------------- */

START_TEST(shutdown_answers_pending_operations_once)
{
	struct answer start = { 0 }, stop = { 0 }, pause = { 0 };
	struct vm *a = make_vm("a"), *b = make_running("b"), *c = make_running("c");
	struct fake held;

	vm_start(a, answer_cb, &start);
	held = fake;			/* the fake holds one operation at a time */
	fake.pending = FAKE_NONE;
	vm_stop(b, false, 10, answer_cb, &stop);
	struct fake held_stop = fake;
	fake.pending = FAKE_NONE;
	vm_pause(c, answer_cb, &pause);

	d->shutting_down = true;
	vms_fail_pending(d);
	ck_assert_uint_eq(start.calls, 1);
	ck_assert_uint_eq(stop.calls, 1);
	ck_assert_uint_eq(pause.calls, 1);
	ck_assert_int_eq(start.kind, EK_BUSY);
	ck_assert_ptr_nonnull(strstr(start.message, "shutting down"));
	ck_assert_ptr_nonnull(strstr(stop.message, "stop of VM \"b\""));
	/* nothing new begins */
	struct answer late = { 0 };
	vm_resume(c, answer_cb, &late);
	ck_assert_int_eq(late.kind, EK_BUSY);
	vm_start(vm_find(d, "b"), answer_cb, &late);
	ck_assert_uint_eq(late.calls, 2);

	/* the operations run on, silently: no second answer */
	fake_complete(FAKE_PAUSE, NULL);
	ck_assert_int_eq(c->rec.status, VM_PAUSED);
	fake = held_stop;
	fake_exit(0);
	ck_assert_int_eq(b->rec.status, VM_STOPPED);
	fake = held;
	fake_complete(FAKE_START, NULL);
	ck_assert_int_eq(a->rec.status, VM_RUNNING);
	ck_assert_uint_eq(start.calls, 1);
	ck_assert_uint_eq(stop.calls, 1);
	ck_assert_uint_eq(pause.calls, 1);
	/* a second pass (daemon_free's) answers nobody twice */
	vms_fail_pending(d);
	ck_assert_uint_eq(start.calls + stop.calls + pause.calls, 3);
}
END_TEST

START_TEST(shutdown_answers_agent_waiters)
{
	struct answer w1 = { 0 }, w2 = { 0 };
	char uds[PATH_MAX];
	struct vm *vm = make_vm("v1");

	vm->rec.vsock = true;
	snprintf(uds, sizeof(uds), "%s/vms/v1/vsock.sock", d->state_dir);	/* nobody listens */
	vm_record_set_str(&vm->rec.uds_path, uds);
	struct answer st = { 0 };
	vm_start(vm, answer_cb, &st);
	fake_complete(FAKE_START, NULL);
	vm_agent_wait(vm, 600, answer_cb, &w1);
	vm_agent_wait(vm, 600, answer_cb, &w2);
	ck_assert_uint_eq(w1.calls + w2.calls, 0);
	vms_fail_pending(d);
	ck_assert_uint_eq(w1.calls, 1);
	ck_assert_uint_eq(w2.calls, 1);
	ck_assert_ptr_nonnull(strstr(w1.message, "shutting down"));
	/* freeing the VM afterwards answers nobody again */
	vms_detach_all(d);
	ck_assert_uint_eq(w1.calls + w2.calls, 2);
}
END_TEST

static Suite *
lifecycle_suite(void)
{
	Suite *s = suite_create("daemon_lifecycle");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, table_lists_exactly_the_legal_transitions);
	tcase_add_test(tc, table_load_takes_the_recorded_status_once);
	tcase_add_test(tc, illegal_transition_is_refused_and_changes_nothing);
	tcase_add_test(tc, start_completes_once);
	tcase_add_test(tc, start_of_a_running_vm_is_refused);
	tcase_add_test(tc, backend_error_mid_start_marks_failed);
	tcase_add_test(tc, backend_refusing_start_at_once_marks_failed);
	tcase_add_test(tc, stop_during_start_is_refused_and_start_completes);
	tcase_add_test(tc, delete_while_starting_is_refused);
	tcase_add_test(tc, exit_during_start_reports_through_start);
	tcase_add_test(tc, stop_completes);
	tcase_add_test(tc, exit_during_stop_with_failure_status);
	tcase_add_test(tc, failed_stop_of_running_vm_leaves_it_running);
	tcase_add_test(tc, failed_stop_of_paused_vm_leaves_it_paused);
	tcase_add_test(tc, graceful_stop_of_paused_vm_resumes_it_first);
	tcase_add_test(tc, paused_vm_that_cannot_resume_is_killed);
	tcase_add_test(tc, paused_vm_exiting_while_resumed_for_stop);
	tcase_add_test(tc, stop_of_stopped_vm_is_refused);
	tcase_add_test(tc, pause_resume_races);
	tcase_add_test(tc, exit_during_pause_wins_over_its_completion);
	tcase_add_test(tc, hypervisor_reports_go_through_the_table);
	tcase_add_test(tc, crash_while_running_marks_failed);
	tcase_add_test(tc, delete_force_kills_then_removes);
	tcase_add_test(tc, delete_of_stopped_vm);
	tcase_add_test(tc, load_and_adopt_through_the_table);
	tcase_add_test(tc, shutdown_answers_pending_operations_once);
	tcase_add_test(tc, shutdown_answers_agent_waiters);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return test_run_suite(lifecycle_suite());
}
