/*
 * What emberd knows of each VM's ember-agent: once a vsock VM runs, emberd
 * pings its agent until it answers (then asks for its info), so that
 * `vm.start`/`vm.create` with `wait` can return when the guest is really
 * ready, `vm.inspect` can show it, and `vm.exec`, `vm.cp` and a graceful
 * `vm.stop` can go through it.
 */
#ifndef EMBER_VM_AGENT_H
#define EMBER_VM_AGENT_H

#include <stdbool.h>
#include <jansson.h>
#include "agent-client.h"
#include "vm.h"

/* Called by vm_transition: the VM started running / stopped running. */
void vm_agent_on_running(struct vm *vm);
void vm_agent_on_down(struct vm *vm, const char *why);
/* Answers every agent waiter and client request of the VM with err
 * (daemon shutdown). */
void vm_agent_fail_pending(struct vm *vm, const struct ember_error *err);
/* Frees the agent state (the VM is being freed). */
void vm_agent_free(struct vm *vm);

/* Completes done with the record once the agent answers, or with an
 * error (and the last console lines) after timeout_s. */
void vm_agent_wait(struct vm *vm, unsigned timeout_s, vm_done_fn done, void *ctx);
bool vm_agent_ready(const struct vm *vm);
/* {"state": "waiting"|"ready"|"unreachable", "info": {...}}, or NULL when
 * the VM has no agent to speak of (not running, or no vsock). */
json_t *vm_agent_json(const struct vm *vm);
/* The round trip of the last ping a ready agent answered, in ms; false
 * when it is not ready. A value older than a few seconds sends another
 * ping in the background, so that the next call sees a fresh one. */
bool vm_agent_latency_ms(struct vm *vm, double *ms);
/* One request to a running VM's agent. 0, or -1 with err (no vsock, not
 * running). */
int vm_agent_request(struct vm *vm, const json_t *request, int timeout_ms,
    agent_reply_fn cb, void *ctx, struct agent_call **call, struct ember_error *err);

#endif
