/*
 * JSON-RPC 2.0 codec: classifies one received line (a request object or a
 * batch array) and builds replies. It knows nothing of sockets or methods:
 * the transport hands it lines, the dispatcher hands it results.
 */
#ifndef EMBER_RPC_CODEC_H
#define EMBER_RPC_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>

#define RPC_PARSE_ERROR		-32700
#define RPC_INVALID_REQUEST	-32600
#define RPC_METHOD_NOT_FOUND	-32601
#define RPC_INVALID_PARAMS	-32602
#define RPC_INTERNAL_ERROR	-32603

#define RPC_MAX_LINE (1024 * 1024)

/* One validated request. Pointers borrow from the parsed message. */
struct rpc_request {
	const char *method;
	json_t *id;		/* NULL for a notification; else string, number or null */
	json_t *params;		/* object or array; NULL when absent or null */
};

/*
 * Parses one line (without its newline). On success *msg is the parsed
 * object or non-empty array and 0 is returned. On failure returns -1 and
 * *reply is the error response to send (-32700 for bad JSON, -32600 for an
 * empty array or a value that is neither object nor array).
 */
int rpc_parse_line(const char *line, size_t len, json_t **msg, json_t **reply);

/*
 * Checks one request object (a whole message or one batch element). On
 * success fills req and returns 0. On failure returns -1 and *reply is the
 * -32600 error, carrying the id whenever it could be read, or NULL when the
 * invalid element was a notification-shaped object that needs no reply
 * (never: JSON-RPC answers invalid requests, so *reply is always set).
 */
int rpc_request_parse(json_t *elem, struct rpc_request *req, json_t **reply);

/* {"jsonrpc":"2.0","result":result,"id":id}; steals result, copies id. */
json_t *rpc_result(json_t *id, json_t *result);
/* Error reply; steals data (may be NULL), copies id (NULL -> null). */
json_t *rpc_error(json_t *id, int code, const char *message, json_t *data);
/* Application error: data = {"kind": kind, "hint": hint} (hint may be NULL). */
json_t *rpc_app_error(json_t *id, int code, const char *kind,
    const char *message, const char *hint);
/* Compact single-line encoding plus '\n'; malloc'd, *len set. */
char *rpc_encode(const json_t *msg, size_t *len);

/* Builds a request; steals params (may be NULL). id NULL -> notification. */
json_t *rpc_request_new(const char *method, json_t *params, json_t *id);

#endif
