/*
 * Agent readiness and requests (see vm-agent.h). Readiness is a ping every
 * AGENT_PROBE_INTERVAL_MS until the agent answers or AGENT_PROBE_WINDOW_S
 * passes; a guest without an agent simply stays "unreachable" and costs a
 * refused connection now and then. The guest resetting the agent port is
 * counted per boot and logged at most every AGENT_RESET_LOG_S, so that a
 * `wait` that times out can say "no agent is listening" rather than guess.
 *
 * An OCI workload's end comes from the agent too: once it is ready, emberd
 * keeps one workload_status call waiting (up to WORKLOAD_WAIT_S in the
 * guest, then again), records the end it answers (vm-workload.h) and then
 * tells the agent it was collected, which lets the guest power off.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#include <event2/event.h>

#include "child.h"
#include "daemon.h"
#include "log.h"
#include "vm-agent.h"
#include "vm-events.h"
#include "vm-workload.h"

#define AGENT_PROBE_INTERVAL_MS	250
#define AGENT_PING_TIMEOUT_MS	2000
#define AGENT_PROBE_WINDOW_S	600
#define AGENT_RESET_LOG_S	30
#define AGENT_LATENCY_STALE_S	5	/* vm.stats re-pings a ready agent this old */
#define WORKLOAD_WAIT_S		300	/* how long one workload_status waits */
#define WORKLOAD_CALL_SLACK_MS	30000	/* its host-side timeout beyond that */
#define WORKLOAD_RETRY_MS	1000	/* after a failed workload_status */
#define WORKLOAD_RETRIES_MAX	30	/* failures in a row before giving up */

enum agent_state { AGENT_DOWN, AGENT_WAITING, AGENT_READY, AGENT_UNREACHABLE };

struct agent_waiter {
	TAILQ_ENTRY(agent_waiter) entry;
	struct vm *vm;
	struct event *timer;
	unsigned timeout_s;
	vm_done_fn done;
	void *ctx;
};

struct vm_agent {
	enum agent_state state;
	json_t *info;
	struct agent_call *probe;
	struct event *probe_timer;
	unsigned probes;
	/* Connections to the agent port the guest closed before "OK", this boot. */
	unsigned long resets;
	unsigned long resets_logged;
	bool last_probe_reset;		/* the latest probe ended that way */
	time_t reset_logged_at;		/* monotonic seconds; 0: never */
	/* Round trip of the last ping answered (vm.stats): the readiness
	 * ping, then one in the background when vm.stats finds it stale. */
	struct timespec ping_sent;
	double latency_ms;		/* < 0: none yet this boot */
	time_t latency_at;		/* monotonic seconds of latency_ms */
	struct agent_call *latency_ping;
	/* The workload's end (a VM with one): the workload_status call in
	 * flight, the retry timer, failures in a row, and whether this boot's
	 * end is recorded and its collection acknowledged by the agent. */
	struct agent_call *workload_call;
	struct event *workload_timer;
	unsigned workload_failures;
	bool workload_recorded, workload_acked;
	TAILQ_HEAD(, agent_waiter) waiters;
	TAILQ_HEAD(, agent_request) requests;
};

/* A client's request to the agent (exec, cp) in flight, so that deleting
 * the VM or stopping emberd answers it rather than leaving it pending. */
struct agent_request {
	TAILQ_ENTRY(agent_request) entry;
	struct vm *vm;
	struct agent_call *call;
	agent_reply_fn cb;
	void *ctx;
};

/* The VM's agent state, made the first time; NULL when out of memory. */
static struct vm_agent *
agent_of(struct vm *vm)
{
	if (vm->agent == NULL) {
		vm->agent = calloc(1, sizeof(*vm->agent));
		if (vm->agent == NULL)
			return NULL;
		TAILQ_INIT(&vm->agent->waiters);
		TAILQ_INIT(&vm->agent->requests);
		vm->agent->latency_ms = -1;
	}
	return vm->agent;
}

static void
waiter_finish(struct agent_waiter *w, const struct ember_error *err)
{
	struct vm_agent *a = w->vm->agent;
	json_t *rec = err == NULL ? vm_to_json(w->vm) : NULL;

	TAILQ_REMOVE(&a->waiters, w, entry);
	event_free(w->timer);
	w->done(w->ctx, rec, err);
	free(w);
}

static void
waiters_fail(struct vm *vm, const char *why)
{
	struct ember_error err = { 0 };
	struct agent_waiter *w;

	if (vm->agent == NULL)
		return;
	ember_error_set(&err, EK_INVALID_STATE, "see its console.log",
	    "VM \"%s\" %s before its agent answered", vm->rec.name, why);
	while ((w = TAILQ_FIRST(&vm->agent->waiters)) != NULL)
		waiter_finish(w, &err);
}

static void probe_schedule(struct vm *vm);

/* Answers every client request in flight with why (the call is dropped). */
static void
requests_fail(struct vm *vm, const char *why)
{
	struct agent_request *r;

	if (vm->agent == NULL)
		return;
	while ((r = TAILQ_FIRST(&vm->agent->requests)) != NULL) {
		TAILQ_REMOVE(&vm->agent->requests, r, entry);
		agent_call_cancel(r->call);
		r->cb(r->ctx, NULL, why);
		free(r);
	}
}

void
vm_agent_fail_pending(struct vm *vm, const struct ember_error *err)
{
	struct agent_waiter *w;

	if (vm->agent == NULL)
		return;
	while ((w = TAILQ_FIRST(&vm->agent->waiters)) != NULL)
		waiter_finish(w, err);
	requests_fail(vm, err->message);
}

static void
info_reply(void *ctx, json_t *reply, const char *err)
{
	struct vm *vm = ctx;
	struct vm_agent *a = vm->agent;
	struct agent_waiter *w;

	a->probe = NULL;
	if (reply != NULL && json_is_true(json_object_get(reply, "ok"))) {
		json_decref(a->info);
		a->info = json_deep_copy(reply);
		json_object_del(a->info, "ok");
		json_object_del(a->info, "id");
	}
	while ((w = TAILQ_FIRST(&a->waiters)) != NULL)
		waiter_finish(w, NULL);
}

static time_t
monotonic_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

/* Counts a reset of the agent port; logs the first and then at most one
 * line per AGENT_RESET_LOG_S with the count since the last line. */
static void
agent_count_reset(struct vm *vm)
{
	struct vm_agent *a = vm->agent;
	time_t now = monotonic_s();

	a->resets++;
	if (a->reset_logged_at != 0 && now - a->reset_logged_at < AGENT_RESET_LOG_S)
		return;
	log_info("vm %s: the guest reset %lu connection%s to port %d (%lu this boot): "
	    "no agent is listening yet", vm->rec.name, a->resets - a->resets_logged,
	    a->resets - a->resets_logged == 1 ? "" : "s", AGENT_VSOCK_PORT, a->resets);
	a->resets_logged = a->resets;
	a->reset_logged_at = now != 0 ? now : 1;
}

/* The round trip of the ping sent at a->ping_sent, just answered. */
static void
agent_note_latency(struct vm_agent *a)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	a->latency_ms = (double)(now.tv_sec - a->ping_sent.tv_sec) * 1e3 +
	    (double)(now.tv_nsec - a->ping_sent.tv_nsec) / 1e6;
	a->latency_at = now.tv_sec;
}

static void workload_ask(struct vm *vm);

static void
workload_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct vm *vm = arg;

	if (vm->agent != NULL && vm->agent->state == AGENT_READY)
		workload_ask(vm);
}

/* A workload_status answer: running (ask again), exited (record it, then
 * say it was collected), none (nothing to watch); a failed call is retried
 * while the agent is ready, WORKLOAD_RETRIES_MAX times in a row. */
static void
workload_reply(void *ctx, json_t *reply, const char *err)
{
	struct vm *vm = ctx;
	struct vm_agent *a = vm->agent;
	struct ember_error rec_err = { 0 };
	struct timeval tv = { 0, WORKLOAD_RETRY_MS * 1000 };
	const char *state = json_string_value(json_object_get(reply, "workload"));
	json_t *code = json_object_get(reply, "code"), *sig = json_object_get(reply, "signal");

	a->workload_call = NULL;
	if (reply == NULL || !json_is_true(json_object_get(reply, "ok")) || state == NULL) {
		const char *why = reply == NULL ? err : json_string_value(json_object_get(reply,
		    "error"));
		if (++a->workload_failures > WORKLOAD_RETRIES_MAX) {
			log_warnx("vm %s: workload_status failed %u times, the last: %s; its "
			    "workload's end will be read from the console", vm->rec.name,
			    WORKLOAD_RETRIES_MAX, why ? why : "no reason");
			return;
		}
		log_debug("vm %s: workload_status: %s", vm->rec.name, why ? why : "failed");
		if (a->workload_timer == NULL)
			a->workload_timer = evtimer_new(vm->daemon->base, workload_retry_cb, vm);
		if (a->workload_timer != NULL)
			evtimer_add(a->workload_timer, &tv);
		return;
	}
	a->workload_failures = 0;
	if (strcmp(state, "none") == 0) {
		log_warnx("vm %s: its agent runs no workload; the workload's end will be read "
		    "from the console", vm->rec.name);
		return;
	}
	if (strcmp(state, "exited") == 0 && !a->workload_recorded) {
		if (vm_workload_record_agent(vm, json_is_integer(code) ? "code" : "signal",
		    json_integer_value(json_is_integer(code) ? code : sig),
		    json_string_value(json_object_get(reply, "boot_id")), &rec_err) < 0) {
			log_warnx("%s", rec_err.message);
			return;
		}
		a->workload_recorded = true;
	} else if (strcmp(state, "exited") == 0 && a->workload_recorded)
		a->workload_acked = true;	/* the answer to collected */
	if (!a->workload_acked)
		workload_ask(vm);
}

/* Sends workload_status: waiting for the end, or, once it is recorded,
 * saying it was collected. */
static void
workload_ask(struct vm *vm)
{
	struct vm_agent *a = vm->agent;
	json_t *req = a->workload_recorded ?
	    json_pack("{s:s, s:b}", "op", "workload_status", "collected", 1) :
	    json_pack("{s:s, s:i}", "op", "workload_status", "wait_s", WORKLOAD_WAIT_S);

	a->workload_call = agent_call_start(vm->daemon->base, vm->rec.uds_path, req,
	    WORKLOAD_WAIT_S * 1000 + WORKLOAD_CALL_SLACK_MS, workload_reply, vm);
	json_decref(req);
	if (a->workload_call == NULL)
		workload_reply(vm, NULL, "cannot reach the agent");
}

static void
workload_watch_stop(struct vm_agent *a)
{
	agent_call_cancel(a->workload_call);
	a->workload_call = NULL;
	if (a->workload_timer != NULL)
		evtimer_del(a->workload_timer);
	a->workload_failures = 0;
	a->workload_recorded = a->workload_acked = false;
}

static void
ping_reply(void *ctx, json_t *reply, const char *err)
{
	struct vm *vm = ctx;
	struct vm_agent *a = vm->agent;

	a->probe = NULL;
	a->last_probe_reset = reply == NULL && agent_error_is_refused(err);
	if (a->last_probe_reset)
		agent_count_reset(vm);
	if (reply == NULL || !json_is_true(json_object_get(reply, "ok"))) {
		probe_schedule(vm);
		return;
	}
	agent_note_latency(a);
	if (a->state != AGENT_READY) {
		log_info("vm %s: agent ready", vm->rec.name);
		a->state = AGENT_READY;
		vm_events_agent_ready(vm);
		if (vm_workload_has(vm) && a->workload_call == NULL && !a->workload_acked)
			workload_ask(vm);
	}
	json_t *req = json_pack("{s:s}", "op", "info");
	a->probe = agent_call_start(vm->daemon->base, vm->rec.uds_path, req,
	    AGENT_PING_TIMEOUT_MS, info_reply, vm);
	json_decref(req);
	if (a->probe == NULL)
		info_reply(vm, NULL, "cannot reach the agent");
}

static void
probe_cb(evutil_socket_t fd, short what, void *arg)
{
	struct vm *vm = arg;
	struct vm_agent *a = vm->agent;
	json_t *req;

	if (a->state != AGENT_WAITING)
		return;
	req = json_pack("{s:s}", "op", "ping");
	clock_gettime(CLOCK_MONOTONIC, &a->ping_sent);
	a->probe = agent_call_start(vm->daemon->base, vm->rec.uds_path, req,
	    AGENT_PING_TIMEOUT_MS, ping_reply, vm);
	json_decref(req);
	if (a->probe == NULL)
		probe_schedule(vm);	/* the socket may not exist yet */
}

static void
probe_schedule(struct vm *vm)
{
	struct vm_agent *a = vm->agent;
	struct timeval tv = { 0, AGENT_PROBE_INTERVAL_MS * 1000 };

	if (++a->probes > AGENT_PROBE_WINDOW_S * 1000 / AGENT_PROBE_INTERVAL_MS) {
		a->state = AGENT_UNREACHABLE;
		log_info("vm %s: no agent answered; giving up probing", vm->rec.name);
		return;
	}
	evtimer_add(a->probe_timer, &tv);
}

/* Probes a running VM's agent unless it is already; 0, or -1 with err
 * when out of memory. */
static int
agent_probe(struct vm *vm, struct ember_error *err)
{
	struct vm_agent *a;

	if (!vm->rec.vsock || vm->rec.uds_path == NULL)
		return 0;
	if ((a = agent_of(vm)) == NULL)
		goto nomem;
	if (a->state == AGENT_READY || a->state == AGENT_WAITING)
		return 0;	/* resumed from a pause */
	if (a->probe_timer == NULL &&
	    (a->probe_timer = evtimer_new(vm->daemon->base, probe_cb, vm)) == NULL)
		goto nomem;
	a->state = AGENT_WAITING;
	a->probes = 0;
	probe_cb(-1, 0, vm);
	return 0;
nomem:
	return ember_error_set(err, EK_INTERNAL, NULL,
	    "out of memory probing the agent of VM \"%s\"", vm->rec.name);
}

void
vm_agent_on_running(struct vm *vm)
{
	struct ember_error err = { 0 };

	if (agent_probe(vm, &err) < 0)
		log_warnx("%s (a wait for the agent probes again)", err.message);
}

static void
agent_stop_probing(struct vm_agent *a)
{
	agent_call_cancel(a->probe);
	a->probe = NULL;
	agent_call_cancel(a->latency_ping);
	a->latency_ping = NULL;
	if (a->probe_timer != NULL)
		evtimer_del(a->probe_timer);
	workload_watch_stop(a);
}

void
vm_agent_on_down(struct vm *vm, const char *why)
{
	struct vm_agent *a = vm->agent;

	if (a == NULL)
		return;
	agent_stop_probing(a);
	if (a->state == AGENT_READY)
		vm_events_agent_lost(vm, why);
	a->state = AGENT_DOWN;
	json_decref(a->info);
	a->info = NULL;
	a->resets = a->resets_logged = 0;
	a->last_probe_reset = false;
	a->reset_logged_at = 0;
	a->latency_ms = -1;
	waiters_fail(vm, why);
}

void
vm_agent_free(struct vm *vm)
{
	struct vm_agent *a = vm->agent;

	if (a == NULL)
		return;
	waiters_fail(vm, "was deleted");
	requests_fail(vm, "the VM was deleted");
	agent_stop_probing(a);
	if (a->probe_timer != NULL)
		event_free(a->probe_timer);
	if (a->workload_timer != NULL)
		event_free(a->workload_timer);
	json_decref(a->info);
	free(a);
	vm->agent = NULL;
}

static void
waiter_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct agent_waiter *w = arg;
	const struct vm_agent *a = w->vm->agent;
	struct ember_error err = { 0 };
	char path[PATH_MAX], tail[1200];

	snprintf(path, sizeof(path), "%s/vms/%s/console.log", w->vm->daemon->state_dir,
	    w->vm->rec.name);
	file_tail(path, 1000, tail, sizeof(tail));
	/* The guest answering with resets is a fact, not a guess: say so. */
	if (a->last_probe_reset)
		ember_error_set(&err, EK_BACKEND_ERROR,
		    "check that its image runs ember-agent and that it did not exit (see the console)",
		    "VM \"%s\" is running but its agent did not answer within %u s: the guest reset "
		    "%lu connection%s to port %d: no agent is listening; last console lines: %s",
		    w->vm->rec.name, w->timeout_s, a->resets, a->resets == 1 ? "" : "s",
		    AGENT_VSOCK_PORT, tail[0] ? tail : "(none)");
	else
		ember_error_set(&err, EK_BACKEND_ERROR,
		    "the guest may still be booting; check that its image runs ember-agent",
		    "VM \"%s\" is running but its agent did not answer within %u s; last console "
		    "lines: %s", w->vm->rec.name, w->timeout_s, tail[0] ? tail : "(none)");
	waiter_finish(w, &err);
}

void
vm_agent_wait(struct vm *vm, unsigned timeout_s, vm_done_fn done, void *ctx)
{
	struct ember_error err = { 0 };
	struct timeval tv = { timeout_s, 0 };
	struct agent_waiter *w;
	struct vm_agent *a;

	if (!vm->rec.vsock) {
		ember_error_set(&err, EK_INVALID_STATE, "create the VM with --vsock to use its agent",
		    "VM \"%s\" has no vsock device, so it has no agent to wait for", vm->rec.name);
		done(ctx, NULL, &err);
		return;
	}
	if ((a = agent_of(vm)) == NULL)
		goto nomem;
	if (a->state == AGENT_READY && a->info != NULL) {
		done(ctx, vm_to_json(vm), NULL);
		return;
	}
	if (a->state == AGENT_DOWN || a->state == AGENT_UNREACHABLE) {
		if (vm->rec.status != VM_RUNNING) {
			ember_error_set(&err, EK_INVALID_STATE, NULL, "VM \"%s\" is %s",
			    vm->rec.name, vm_status_name(vm->rec.status));
			done(ctx, NULL, &err);
			return;
		}
		a->state = AGENT_DOWN;
		if (agent_probe(vm, &err) < 0) {	/* probe again */
			done(ctx, NULL, &err);
			return;
		}
	}
	if ((w = calloc(1, sizeof(*w))) == NULL ||
	    (w->timer = evtimer_new(vm->daemon->base, waiter_timeout, w)) == NULL) {
		free(w);
		goto nomem;
	}
	w->vm = vm;
	w->timeout_s = timeout_s;
	w->done = done;
	w->ctx = ctx;
	TAILQ_INSERT_TAIL(&a->waiters, w, entry);
	evtimer_add(w->timer, &tv);
	return;
nomem:
	ember_error_set(&err, EK_INTERNAL, NULL,
	    "out of memory waiting for the agent of VM \"%s\"", vm->rec.name);
	done(ctx, NULL, &err);
}

bool
vm_agent_ready(const struct vm *vm)
{
	return vm->agent != NULL && vm->agent->state == AGENT_READY;
}

json_t *
vm_agent_json(const struct vm *vm)
{
	static const char *const names[] = {
		[AGENT_DOWN] = "down", [AGENT_WAITING] = "waiting",
		[AGENT_READY] = "ready", [AGENT_UNREACHABLE] = "unreachable",
	};
	const struct vm_agent *a = vm->agent;
	json_t *j;

	if (!vm->rec.vsock || a == NULL || a->state == AGENT_DOWN)
		return NULL;
	j = json_pack("{s:s, s:I}", "state", names[a->state], "resets", (json_int_t)a->resets);
	if (a->info != NULL)
		json_object_set(j, "info", a->info);
	return j;
}

static void
request_reply(void *ctx, json_t *reply, const char *why)
{
	struct agent_request *r = ctx;

	TAILQ_REMOVE(&r->vm->agent->requests, r, entry);
	r->cb(r->ctx, reply, why);
	free(r);
}

int
vm_agent_request(struct vm *vm, const json_t *request, int timeout_ms, agent_reply_fn cb,
    void *ctx, struct agent_call **call, struct ember_error *err)
{
	struct agent_call *c;

	if (!vm->rec.vsock || vm->rec.uds_path == NULL)
		return ember_error_set(err, EK_INVALID_STATE, "create the VM with --vsock",
		    "VM \"%s\" has no vsock device, so no agent", vm->rec.name);
	if (vm->rec.status != VM_RUNNING)
		return ember_error_set(err, EK_INVALID_STATE, NULL, "VM \"%s\" is %s, not running",
		    vm->rec.name, vm_status_name(vm->rec.status));
	if (call != NULL) {	/* the caller tracks and cancels it */
		c = agent_call_start(vm->daemon->base, vm->rec.uds_path, request, timeout_ms,
		    cb, ctx);
		if (c == NULL)
			goto unreachable;
		*call = c;
		return 0;
	}
	struct vm_agent *a = agent_of(vm);
	struct agent_request *r = a != NULL ? calloc(1, sizeof(*r)) : NULL;
	if (r == NULL)
		return ember_error_set(err, EK_INTERNAL, NULL,
		    "out of memory for a request to the agent of VM \"%s\"", vm->rec.name);
	r->vm = vm;
	r->cb = cb;
	r->ctx = ctx;
	r->call = agent_call_start(vm->daemon->base, vm->rec.uds_path, request, timeout_ms,
	    request_reply, r);
	if (r->call == NULL) {
		free(r);
		goto unreachable;
	}
	TAILQ_INSERT_TAIL(&a->requests, r, entry);
	return 0;
unreachable:
	return ember_error_set(err, EK_BACKEND_ERROR, NULL,
	    "cannot reach the vsock socket of VM \"%s\"", vm->rec.name);
}

static void
latency_ping_reply(void *ctx, json_t *reply, const char *err)
{
	struct vm_agent *a = ((struct vm *)ctx)->agent;

	a->latency_ping = NULL;
	if (reply != NULL && json_is_true(json_object_get(reply, "ok")))
		agent_note_latency(a);
}

bool
vm_agent_latency_ms(struct vm *vm, double *ms)
{
	struct vm_agent *a = vm->agent;
	json_t *req;

	if (a == NULL || a->state != AGENT_READY || a->latency_ms < 0)
		return false;
	*ms = a->latency_ms;
	if (a->latency_ping == NULL && monotonic_s() - a->latency_at >= AGENT_LATENCY_STALE_S) {
		req = json_pack("{s:s}", "op", "ping");
		clock_gettime(CLOCK_MONOTONIC, &a->ping_sent);
		a->latency_ping = agent_call_start(vm->daemon->base, vm->rec.uds_path, req,
		    AGENT_PING_TIMEOUT_MS, latency_ping_reply, vm);
		json_decref(req);
	}
	return true;
}
