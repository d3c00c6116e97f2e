/*
 * The JSON-RPC dispatcher: joins the method tables of rpc-*.c, validates
 * params against each row before the handler runs, hides every VM but
 * the caller's own (root sees all) for rows that name a VM, and routes replies (single or batch) back to the
 * connection by id. It never touches a socket: lines arrive from control.c
 * and replies leave through control_send().
 */
#ifndef EMBER_RPC_H
#define EMBER_RPC_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <jansson.h>
#include "control.h"
#include "error.h"
#include "platform.h"

struct ember_daemon;
struct rpc_call;
struct rpc_batch;

typedef void (*rpc_handler_fn)(struct rpc_call *call, json_t *params);

#define RPC_REQUIRED	0x1	/* rpc_param flag */

struct rpc_param {
	const char *name;
	json_type type;		/* JSON_TRUE stands for "boolean" */
	unsigned flags;
};

#define RPC_MUTATES	0x1	/* changes state */
#define RPC_ASYNC	0x2	/* may complete after the handler returns */

struct rpc_method {
	const char *name;
	const struct rpc_param *params;	/* NULL-name terminated; NULL: none */
	unsigned flags;
	const char *owner_param;	/* param naming a VM: only its owner and root
					 * get past the dispatcher; others see not_found */
	rpc_handler_fn handler;
};

struct rpc_call {
	struct ember_daemon *daemon;
	uint64_t conn_id;
	uid_t uid;
	gid_t gid;			/* the caller's, for opening paths it names */
	int ngroups;			/* -errno when its groups are unknown */
	gid_t groups[CONTROL_PEER_GROUPS_MAX];
	json_t *id;			/* NULL for a notification */
	const struct rpc_method *method;
	struct rpc_batch *batch;
	size_t batch_slot;
	double started;			/* metrics_now() when it was read */
};

extern const struct rpc_method rpc_daemon_methods[];
extern const struct rpc_method rpc_vm_methods[];
extern const struct rpc_method rpc_image_methods[];
extern const struct rpc_method rpc_stats_methods[];
extern const struct rpc_method rpc_events_methods[];

/* Handles one line from a client (control.c on_line). */
void rpc_handle_line(struct ember_daemon *d, const struct control_peer *peer,
    const char *line, size_t len);
/* The reply sent before closing a connection whose line was too long. */
char *rpc_oversize_reply(size_t *len);
/* The reply sent before closing a connection refused at a connection limit
 * (control.h on_refused): quota_exceeded naming the limit, use and maximum. */
char *rpc_refused_reply(uid_t uid, const char *limit, size_t use, size_t max, size_t *len);

/* Completes a call: exactly one of these, once. Steals result; a NULL
 * result (a builder out of memory) is answered as an internal error. */
void rpc_reply(struct rpc_call *call, json_t *result);
void rpc_fail(struct rpc_call *call, const struct ember_error *err);
void rpc_fail_params(struct rpc_call *call, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

struct vm;
/* Whether the caller may see (and so act on) vm: root, or the VM's owner. */
bool rpc_may_see(const struct rpc_call *call, const struct vm *vm);
/* The one not_found reply for a VM name, also given for another owner's VM. */
void rpc_fail_vm_not_found(struct rpc_call *call, const char *name);

/* The caller's identity for platform_open_as (points into call). */
struct platform_caller rpc_caller(const struct rpc_call *call);

/* Param accessors for handlers (params were validated already). */
const char *rpc_param_str(json_t *params, const char *name, const char *dflt);
bool rpc_param_bool(json_t *params, const char *name, bool dflt);
/* -1 when absent. */
long long rpc_param_int(json_t *params, const char *name, long long dflt);

#endif
