/*
 * emberd's side of ember-agent: one request to a VM's agent through the
 * VM's hybrid vsock socket (`CONNECT 1024`, then one JSON line each way),
 * entirely on the event loop. The same code serves QEMU and Firecracker
 * VMs, since both expose the same vsock.sock.
 */
#ifndef EMBER_AGENT_CLIENT_H
#define EMBER_AGENT_CLIENT_H

#include <stdbool.h>
#include <jansson.h>

struct event_base;
struct agent_call;

#define AGENT_VSOCK_PORT 1024
#define AGENT_REPLY_MAX (64 * 1024 * 1024)

/* reply: the agent's reply object (borrowed) when it answered, else NULL
 * with err saying why (connect refused, no OK, timeout, bad reply). */
typedef void (*agent_reply_fn)(void *ctx, json_t *reply, const char *err);

/* Sends request (borrowed) to the agent behind uds_path. The returned
 * handle may be cancelled until the callback runs; NULL when the request
 * could not even be sent (cb is then not called). */
struct agent_call *agent_call_start(struct event_base *base, const char *uds_path,
    const json_t *request, int timeout_ms, agent_reply_fn cb, void *ctx);
/* True when err (from an agent_reply_fn) says the guest closed or reset
 * the connection to the agent port before accepting it: nothing listens on
 * port AGENT_VSOCK_PORT in the guest (yet). */
bool agent_error_is_refused(const char *err);
/* Drops a call in flight; its callback never runs. */
void agent_call_cancel(struct agent_call *call);

#endif
