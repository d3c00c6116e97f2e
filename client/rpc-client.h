/*
 * The blocking half of emberctl: one Unix-socket connection to emberd, one
 * request line out, reply lines in until the one carrying our id. Replies
 * are checked for JSON-RPC shape here; what a result means is the verb's
 * business. No event loop: a deadline and poll() bound every read.
 */
#ifndef EMBER_RPC_CLIENT_H
#define EMBER_RPC_CLIENT_H

#include <stdint.h>
#include <jansson.h>

struct rpc_client;

/* What rpc_client_call produced. */
enum rpc_call_status {
	RPC_CALL_OK,		/* *result set */
	RPC_CALL_ERROR,		/* emberd answered with an error: *error set */
	RPC_CALL_FAILED,	/* no usable reply (timeout, EOF, garbage): msg set */
};

/* Connects to the socket at path. Returns 0 or -errno (-ENAMETOOLONG when
 * path does not fit sun_path). */
int rpc_client_connect(const char *path, struct rpc_client **out);
void rpc_client_free(struct rpc_client *c);

/*
 * Sends one request (ids count up from 1) and waits for its reply, ignoring
 * replies to other ids. Steals params (may be NULL). timeout_ms < 0 waits
 * forever. On RPC_CALL_OK *result is a new reference to the result; on
 * RPC_CALL_ERROR *error is a new reference to the error object (code and
 * message checked); on RPC_CALL_FAILED msg says what went wrong.
 */
enum rpc_call_status rpc_client_call(struct rpc_client *c, const char *method,
    json_t *params, int timeout_ms, json_t **result, json_t **error,
    char *msg, size_t msglen);

/*
 * Reads the next line the daemon sends on its own (a notification of a
 * stream such as events.subscribe) into *msg (an object, new reference).
 * 0, -ETIMEDOUT, -EPIPE when emberd closed the connection, -EBADMSG for a
 * line that is not a JSON object, or -errno.
 */
int rpc_client_next(struct rpc_client *c, int timeout_ms, json_t **msg);

#endif
