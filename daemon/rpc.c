/*
 * JSON-RPC dispatch (see rpc.h). A call owns a copy of its id and a hold on
 * its connection; its reply is routed by connection id, so a reply for a
 * client that has left is dropped. A batch collects its replies in request
 * order, each encoded when its call completes (so a large batch's reply is
 * not encoded in one loop turn), and is sent as one line when the last call
 * completes. Each request is released once dispatched, for the same reason.
 *
 * A batch holds at most config max_batch requests (a larger one is refused
 * whole, before any of it runs) and is dispatched a share of the loop's
 * turn at a time (RPC_BATCH_PER_TURN requests at most, loop-share.h): between two turns the loop serves everybody
 * else, and the connection is deferred (control_defer) so its next line
 * waits for the batch to be dispatched. While the durable writer's queue
 * is half full (durable_crowded) the batch waits for it to drain.
 *
 * Out of memory, a request is answered with an internal error where that
 * reply can still be built; a reply that cannot be built or sent ends the
 * connection (control_close), so no client waits for an answer that will
 * never come, and emberd serves on.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "daemon.h"
#include "durable.h"
#include "log.h"
#include "loop-share.h"
#include "metrics.h"
#include "rpc.h"
#include "rpc-codec.h"
#include "vm.h"
#include "worker.h"

#define RPC_BATCH_PER_TURN 8
#define RPC_BATCH_CROWDED_US 1000	/* the retry while the writer is behind */
/* Lines this long or longer are parsed on the worker thread: jansson takes
 * about 0.5 ms for 32 KiB on this class of machine, 17 ms for 1 MiB. */
#define RPC_PARSE_OFF_LOOP_BYTES (32 * 1024)

struct rpc_batch {
	struct ember_daemon *d;
	struct control_peer peer;
	uint64_t conn_id;
	json_t *requests;	/* the batch array, until all are dispatched */
	size_t next;		/* next request to dispatch */
	struct event *ev_next;	/* dispatches the next requests */
	struct rpc_batch_part {
		char *text;	/* one encoded reply, without its newline; NULL for
				 * a notification or a call still running */
		size_t len;
	} *parts;		/* one per request, in request order */
	size_t nparts;
	size_t pending;
	bool lost;		/* a reply could not be built: end the connection */
};

static const struct rpc_method *const rpc_tables[] = {
	rpc_daemon_methods,
	rpc_vm_methods,
	rpc_image_methods,
	rpc_stats_methods,
	rpc_events_methods,
};

static const struct rpc_method *
rpc_lookup(const char *name)
{
	for (size_t t = 0; t < sizeof(rpc_tables) / sizeof(rpc_tables[0]); t++)
		for (const struct rpc_method *m = rpc_tables[t]; m->name != NULL; m++)
			if (strcmp(m->name, name) == 0)
				return m;
	return NULL;
}

/* The -32603 reply to a request emberd had no memory to take on. */
static json_t *
rpc_out_of_memory(json_t *id)
{
	return rpc_error(id, RPC_INTERNAL_ERROR, "Internal error",
	    json_pack("{s:s}", "reason", "emberd is out of memory"));
}

/* Sends a reply (NULL: it could not be built). */
static void
rpc_send(struct ember_daemon *d, uint64_t conn_id, json_t *msg)
{
	size_t len;
	char *line = msg != NULL ? rpc_encode(msg, &len) : NULL;
	int r;

	if (line == NULL) {
		control_close(d->control, conn_id);
		return;
	}
	if ((r = control_send(d->control, conn_id, line, len)) == -ENOMEM)
		control_close(d->control, conn_id);
	else if (r < 0)
		log_debug("rpc: connection %llu left before its reply",
		    (unsigned long long)conn_id);
	free(line);
}

/* Sends the batch's replies as one JSON array line, notifications' slots
 * left out; nothing when every request was a notification. */
static void
rpc_batch_send(struct ember_daemon *d, struct rpc_batch *b)
{
	size_t total = 2, off = 0, i;
	char *line = NULL;
	int r;

	for (i = 0; i < b->nparts; i++)
		if (b->parts[i].text != NULL)
			total += b->parts[i].len + 1;
	if (b->lost || (total > 2 && (line = malloc(total)) == NULL)) {
		control_close(d->control, b->conn_id);
		return;
	}
	if (total == 2)
		return;
	line[off++] = '[';
	for (i = 0; i < b->nparts; i++) {
		if (b->parts[i].text == NULL)
			continue;
		if (off > 1)
			line[off++] = ',';
		memcpy(line + off, b->parts[i].text, b->parts[i].len);
		off += b->parts[i].len;
	}
	line[off++] = ']';
	line[off++] = '\n';
	if ((r = control_send(d->control, b->conn_id, line, off)) == -ENOMEM)
		control_close(d->control, b->conn_id);
	else if (r < 0)
		log_debug("rpc: connection %llu left before its batch's reply",
		    (unsigned long long)b->conn_id);
	free(line);
}

/* Files a request's reply in its slot; lost when a reply was due but
 * could not be built. */
static void
rpc_batch_put(struct ember_daemon *d, struct rpc_batch *b, size_t slot, json_t *reply,
    bool lost)
{
	b->lost |= lost;
	if (reply != NULL && slot < b->nparts) {
		size_t len;
		char *text = rpc_encode(reply, &len);

		if (text == NULL)
			b->lost = true;
		else {
			free(b->parts[slot].text);
			b->parts[slot].text = text;
			b->parts[slot].len = len - 1;	/* its newline */
		}
	}
	json_decref(reply);
	if (--b->pending > 0)
		return;
	rpc_batch_send(d, b);
	for (size_t i = 0; i < b->nparts; i++)
		free(b->parts[i].text);
	free(b->parts);
	if (b->ev_next != NULL)
		event_free(b->ev_next);
	free(b);
}

/* Delivers a request's reply (taken) in its batch's slot or on its
 * connection. due: the request has an id, so a NULL reply (one that could
 * not be built) ends the connection instead of leaving the client waiting. */
static void
rpc_deliver(struct ember_daemon *d, uint64_t conn_id, struct rpc_batch *batch, size_t slot,
    json_t *reply, bool due)
{
	if (batch != NULL)
		rpc_batch_put(d, batch, slot, reply, reply == NULL && due);
	else if (reply != NULL || due) {
		rpc_send(d, conn_id, reply);
		json_decref(reply);
	}
}

/* What a reply says, for ember_rpc_requests_total: "ok", the protocol
 * error, or the error kind. */
static const char *
rpc_outcome(json_t *reply)
{
	json_t *error = json_object_get(reply, "error");

	if (error == NULL)
		return "ok";
	switch (json_integer_value(json_object_get(error, "code"))) {
	case RPC_PARSE_ERROR: return "parse_error";
	case RPC_INVALID_REQUEST: return "invalid_request";
	case RPC_METHOD_NOT_FOUND: return "method_not_found";
	case RPC_INVALID_PARAMS: return "invalid_params";
	default:
		return ember_error_kind_name(ember_error_kind_from_code(
		    (int)json_integer_value(json_object_get(error, "code"))));
	}
}

/* Delivers a finished reply (NULL for a notification) and frees the call. */
static void
rpc_complete(struct rpc_call *call, json_t *reply)
{
	struct ember_daemon *d = call->daemon;

	metrics_rpc_done(call->method->handler != NULL ? call->method->name : NULL,
	    rpc_outcome(reply), metrics_now() - call->started);

	if (call->id == NULL) {	/* notifications get no reply */
		json_decref(reply);
		reply = NULL;
	}
	rpc_deliver(d, call->conn_id, call->batch, call->batch_slot, reply, call->id != NULL);
	control_release(d->control, call->conn_id);
	json_decref(call->id);
	free(call);
}

/* Every result is a JSON value; NULL is what a builder that ran out of
 * memory hands on, and is answered as that. */
void
rpc_reply(struct rpc_call *call, json_t *result)
{
	struct ember_error err = { 0 };

	if (result == NULL) {
		ember_error_set(&err, EK_INTERNAL, "what it did may have taken effect: look before "
		    "retrying", "emberd ran out of memory building the reply to %s",
		    call->method->name);
		rpc_fail(call, &err);
		return;
	}
	rpc_complete(call, rpc_result(call->id, result));
}

void
rpc_fail(struct rpc_call *call, const struct ember_error *err)
{
	enum ember_error_kind kind = err->kind == EK_NONE ? EK_INTERNAL : err->kind;

	if (kind == EK_INTERNAL)
		log_warnx("rpc: %s: internal error: %s", call->method->name, err->message);
	rpc_complete(call, rpc_app_error(call->id, ember_error_code(kind),
	    ember_error_kind_name(kind), err->message, err->hint[0] ? err->hint : NULL));
}

void
rpc_fail_params(struct rpc_call *call, const char *fmt, ...)
{
	char reason[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	rpc_complete(call, rpc_error(call->id, RPC_INVALID_PARAMS, "Invalid params",
	    json_pack("{s:s}", "reason", reason)));
}

static const char *
json_type_label(json_type t)
{
	switch (t) {
	case JSON_OBJECT: return "an object";
	case JSON_ARRAY: return "an array";
	case JSON_STRING: return "a string";
	case JSON_INTEGER: return "an integer";
	case JSON_REAL: return "a number";
	case JSON_TRUE: case JSON_FALSE: return "a boolean";
	default: return "null";
	}
}

static int
rpc_type_ok(json_type want, json_t *v)
{
	if (want == JSON_TRUE || want == JSON_FALSE)
		return json_is_boolean(v);
	return json_typeof(v) == want;
}

/* Checks params against the row; on failure completes the call with -32602. */
static int
rpc_validate_params(struct rpc_call *call, json_t **params)
{
	const struct rpc_param *p;
	const char *key;
	json_t *v;

	if (*params != NULL && json_is_array(*params)) {
		if (json_array_size(*params) != 0) {
			rpc_fail_params(call, "%s takes named params (an object)",
			    call->method->name);
			return -1;
		}
		*params = NULL;
	}
	json_object_foreach(*params, key, v) {
		for (p = call->method->params; p != NULL && p->name != NULL; p++)
			if (strcmp(p->name, key) == 0)
				break;
		if (p == NULL || p->name == NULL) {
			rpc_fail_params(call, "unknown parameter \"%s\" for %s", key,
			    call->method->name);
			return -1;
		}
		if (json_is_null(v) && !(p->flags & RPC_REQUIRED))
			continue;	/* null means "use the default" */
		if (!rpc_type_ok(p->type, v)) {
			rpc_fail_params(call, "parameter \"%s\" must be %s, not %s", key,
			    json_type_label(p->type), json_type_label(json_typeof(v)));
			return -1;
		}
	}
	for (p = call->method->params; p != NULL && p->name != NULL; p++) {
		if (!(p->flags & RPC_REQUIRED))
			continue;
		v = *params != NULL ? json_object_get(*params, p->name) : NULL;
		if (v == NULL || json_is_null(v)) {
			rpc_fail_params(call, "missing required parameter \"%s\"", p->name);
			return -1;
		}
	}
	return 0;
}

bool
rpc_may_see(const struct rpc_call *call, const struct vm *vm)
{
	return call->uid == 0 || vm->rec.owner_uid == call->uid;
}

void
rpc_fail_vm_not_found(struct rpc_call *call, const char *name)
{
	struct ember_error err = { 0 };

	ember_error_set(&err, EK_NOT_FOUND, "see 'emberctl vm list'", "VM \"%s\" not found", name);
	rpc_fail(call, &err);
}

/* A row naming a VM (owner_param) reaches its handler only for root and the
 * VM's owner. Anybody else gets the very reply a missing VM gets, so that
 * another owner's VMs cannot be told apart from names nobody uses. */
static int
rpc_authorize(struct rpc_call *call, json_t *params)
{
	const char *name;
	struct vm *vm;

	if (call->method->owner_param == NULL)
		return 0;
	name = rpc_param_str(params, call->method->owner_param, NULL);
	vm = name != NULL ? vm_find(call->daemon, name) : NULL;
	if (vm == NULL || rpc_may_see(call, vm))
		return 0;	/* a missing VM is the handler's not_found */
	log_debug("rpc: %s on VM \"%s\" (uid %u) from uid %u: answered as not found",
	    call->method->name, name, (unsigned)vm->rec.owner_uid, (unsigned)call->uid);
	rpc_fail_vm_not_found(call, name);
	return -1;
}

static void
rpc_dispatch(struct ember_daemon *d, const struct control_peer *peer, json_t *elem,
    struct rpc_batch *batch, size_t slot)
{
	struct rpc_request req;
	struct rpc_call *call;
	json_t *reply = NULL;

	if (rpc_request_parse(elem, &req, &reply) < 0) {
		rpc_deliver(d, peer->conn_id, batch, slot, reply, true);
		return;
	}
	if ((call = calloc(1, sizeof(*call))) == NULL) {
		reply = req.id == NULL ? NULL : rpc_out_of_memory(req.id);
		rpc_deliver(d, peer->conn_id, batch, slot, reply, req.id != NULL);
		return;
	}
	call->daemon = d;
	call->conn_id = peer->conn_id;
	call->uid = peer->uid;
	call->gid = peer->gid;
	call->ngroups = peer->ngroups;
	if (peer->ngroups > 0)
		memcpy(call->groups, peer->groups, (size_t)peer->ngroups * sizeof(gid_t));
	call->id = req.id != NULL ? json_deep_copy(req.id) : NULL;
	call->batch = batch;
	call->batch_slot = slot;
	call->started = metrics_now();
	control_hold(d->control, peer->conn_id);

	call->method = rpc_lookup(req.method);
	if (call->method == NULL) {
		static const struct rpc_method unknown = { .name = "?" };
		call->method = &unknown;
		rpc_complete(call, rpc_error(call->id, RPC_METHOD_NOT_FOUND,
		    "Method not found", json_pack("{s:s}", "method", req.method)));
		return;
	}
	json_t *params = req.params;
	if (rpc_validate_params(call, &params) < 0 || rpc_authorize(call, params) < 0)
		return;
	log_debug("rpc: %s from uid %u", call->method->name, (unsigned)call->uid);
	call->method->handler(call, params);
}

/* Dispatches the batch's next requests; once all are, lets the connection
 * deliver its next line and drops the batch's own share of pending. */
static void
rpc_batch_continue(struct rpc_batch *b)
{
	struct ember_daemon *d = b->d;
	size_t n = json_array_size(b->requests);
	struct loop_share share;
	bool crowded = false;

	loop_share_start(&share, RPC_BATCH_PER_TURN);
	while (b->next < n && !(crowded = durable_crowded(d->durable)) &&
	    loop_share_take(&share)) {
		size_t i = b->next++;
		rpc_dispatch(d, &b->peer, json_array_get(b->requests, i), b, i);
		/* Handlers keep what they need (as for a single request, whose
		 * message goes right after dispatch): free it now, not all
		 * 2,000 of a large batch in one turn at the end. */
		json_array_set_new(b->requests, i, json_null());
	}
	if (b->next < n) {
		/* With the writer's queue half full, the rest waits a
		 * millisecond at a time instead of filling it: a full queue
		 * makes the loop wait for the disk (durable.h). */
		struct timeval later = { 0, crowded ? RPC_BATCH_CROWDED_US : 0 };
		control_defer(d->control, b->conn_id);
		evtimer_add(b->ev_next, &later);
		return;
	}
	json_decref(b->requests);
	b->requests = NULL;
	control_resume(d->control, b->conn_id);
	control_release(d->control, b->conn_id);
	rpc_batch_put(d, b, 0, NULL, false);	/* may free b */
}

static void
rpc_batch_next_cb(evutil_socket_t fd, short what, void *arg)
{
	rpc_batch_continue(arg);
}

static void
rpc_batch_start(struct ember_daemon *d, const struct control_peer *peer, json_t *msg)
{
	size_t n = json_array_size(msg), max = d->config.max_batch;
	struct rpc_batch *b;

	if (max == 0)
		max = CONFIG_MAX_BATCH_DEFAULT;
	if (n > max) {
		char reason[128];
		json_t *reply;

		snprintf(reason, sizeof(reason),
		    "a batch holds at most %zu requests, this one %zu; split it", max, n);
		reply = rpc_error(NULL, RPC_INVALID_REQUEST, "Invalid Request",
		    json_pack("{s:s, s:I, s:I}", "reason", reason,
		    "max_batch", (json_int_t)max, "size", (json_int_t)n));
		rpc_send(d, peer->conn_id, reply);
		json_decref(reply);
		return;
	}
	if ((b = calloc(1, sizeof(*b))) == NULL || (b->parts = calloc(n, sizeof(*b->parts))) == NULL ||
	    (b->ev_next = evtimer_new(d->base, rpc_batch_next_cb, b)) == NULL) {
		json_t *reply = rpc_out_of_memory(NULL);

		if (b != NULL)
			free(b->parts);
		free(b);
		rpc_send(d, peer->conn_id, reply);
		json_decref(reply);
		return;
	}
	b->nparts = n;
	b->d = d;
	b->peer = *peer;
	b->conn_id = peer->conn_id;
	b->requests = json_incref(msg);
	b->pending = n + 1;	/* +1 so it completes after dispatch */
	/* Shutdown waits for the whole batch to be dispatched. */
	control_hold(d->control, peer->conn_id);
	rpc_batch_continue(b);
}

static void rpc_release_doc(struct ember_daemon *, json_t *, size_t);

/* Dispatches one parsed message (object or batch array; taken) that came
 * from a line of line_len bytes. */
static void
rpc_handle_message(struct ember_daemon *d, const struct control_peer *peer, json_t *msg,
    size_t line_len)
{
	if (json_is_array(msg))
		rpc_batch_start(d, peer, msg);
	else
		rpc_dispatch(d, peer, msg, NULL, 0);
	rpc_release_doc(d, msg, line_len);
}

/* A line of RPC_PARSE_OFF_LOOP_BYTES or more is parsed on the worker: the
 * connection is deferred (its next line waits) and held (shutdown waits)
 * meanwhile, and the parsed message is dispatched on the loop as if it had
 * been parsed there. */
struct rpc_parse_job {
	struct ember_daemon *d;
	struct control_peer peer;
	char *line;
	size_t len;
	json_t *msg, *reply;	/* rpc_parse_line's result */
};

static void
rpc_parse_work(void *arg)
{
	struct rpc_parse_job *job = arg;

	(void)rpc_parse_line(job->line, job->len, &job->msg, &job->reply);
	free(job->line);
	job->line = NULL;
}

static void
rpc_parse_done(void *arg, bool cancelled)
{
	struct rpc_parse_job *job = arg;
	struct ember_daemon *d = job->d;
	uint64_t conn_id = job->peer.conn_id;

	if (!cancelled) {
		control_resume(d->control, conn_id);
		if (job->msg != NULL)
			rpc_handle_message(d, &job->peer, job->msg, job->len);
		else {
			rpc_send(d, conn_id, job->reply);
			json_decref(job->reply);
		}
		control_release(d->control, conn_id);
	} else {
		json_decref(job->msg);
		json_decref(job->reply);
	}
	free(job->line);
	free(job);
}

static void
rpc_free_doc_work(void *arg)
{
	json_decref(arg);
}

/* Drops the dispatcher's reference to a parsed message: one from a large
 * line on the worker (freeing a megabyte of JSON takes milliseconds).
 * Handlers hold their own references to what they keep, and jansson's
 * reference counts are atomic. A batch's array is already empty here
 * (rpc_batch_continue frees each request once dispatched). */
static void
rpc_release_doc(struct ember_daemon *d, json_t *msg, size_t line_len)
{
	if (line_len >= RPC_PARSE_OFF_LOOP_BYTES && d->worker != NULL && !json_is_array(msg) &&
	    worker_run(d->worker, rpc_free_doc_work, NULL, msg) == 0)
		return;
	json_decref(msg);
}

void
rpc_handle_line(struct ember_daemon *d, const struct control_peer *peer,
    const char *line, size_t len)
{
	json_t *msg = NULL, *reply = NULL;

	if (len >= RPC_PARSE_OFF_LOOP_BYTES && d->worker != NULL) {
		struct rpc_parse_job *job = calloc(1, sizeof(*job));
		if (job != NULL && (job->line = malloc(len)) != NULL) {
			memcpy(job->line, line, len);
			job->len = len;
			job->d = d;
			job->peer = *peer;
			if (worker_run(d->worker, rpc_parse_work, rpc_parse_done, job) == 0) {
				control_defer(d->control, peer->conn_id);
				control_hold(d->control, peer->conn_id);
				return;
			}
			free(job->line);
		}
		free(job);	/* out of memory: parsed here instead */
	}
	if (rpc_parse_line(line, len, &msg, &reply) < 0) {
		rpc_send(d, peer->conn_id, reply);
		json_decref(reply);
		return;
	}
	rpc_handle_message(d, peer, msg, len);
}

char *
rpc_oversize_reply(size_t *len)
{
	json_t *e = rpc_error(NULL, RPC_INVALID_REQUEST, "Invalid Request",
	    json_pack("{s:s}", "reason", "request line longer than 1 MiB; closing"));
	char *line = rpc_encode(e, len);

	json_decref(e);
	return line;
}

struct platform_caller
rpc_caller(const struct rpc_call *call)
{
	struct platform_caller c = { .uid = call->uid, .gid = call->gid,
	    .groups = call->ngroups >= 0 ? call->groups : NULL,
	    .ngroups = call->ngroups > 0 ? (size_t)call->ngroups : 0 };

	return c;
}

char *
rpc_refused_reply(uid_t uid, const char *limit, size_t use, size_t max, size_t *len)
{
	char message[256];
	json_t *e, *data;
	char *line;

	snprintf(message, sizeof(message), "too many connections: %s reached for uid %u "
	    "(%zu open, max %zu)", limit, (unsigned)uid, use, max);
	data = json_pack("{s:s, s:s, s:s, s:I, s:I}", "kind",
	    ember_error_kind_name(EK_QUOTA_EXCEEDED), "hint",
	    "close some connections to emberd and retry", "limit", limit,
	    "use", (json_int_t)use, "max", (json_int_t)max);
	e = rpc_error(NULL, ember_error_code(EK_QUOTA_EXCEEDED), message, data);
	line = e != NULL ? rpc_encode(e, len) : NULL;
	json_decref(e);
	return line;
}

const char *
rpc_param_str(json_t *params, const char *name, const char *dflt)
{
	json_t *v = params != NULL ? json_object_get(params, name) : NULL;

	return json_is_string(v) ? json_string_value(v) : dflt;
}

bool
rpc_param_bool(json_t *params, const char *name, bool dflt)
{
	json_t *v = params != NULL ? json_object_get(params, name) : NULL;

	return json_is_boolean(v) ? json_is_true(v) : dflt;
}

long long
rpc_param_int(json_t *params, const char *name, long long dflt)
{
	json_t *v = params != NULL ? json_object_get(params, name) : NULL;

	return json_is_integer(v) ? (long long)json_integer_value(v) : dflt;
}
