/*
 * JSON-RPC 2.0 codec. rpc_parse_line() turns one received line into a
 * message (a request object or a non-empty batch array) or the error reply
 * for it; rpc_request_parse() checks one request object; the rest build and
 * encode replies. Error replies made here carry the standard message and,
 * in "data": {"reason": ...}, what exactly was wrong, as the transport does
 * for oversize lines.
 *
 * Choices the specification leaves open:
 * - Members other than jsonrpc, method, params and id are ignored, so a
 *   newer client may add some without breaking an older emberd.
 * - Duplicate member names are a parse error (-32700): with two "id"s no
 *   reply could be addressed correctly.
 * - "\u0000" inside a string is a parse error: method names and the params
 *   handlers read are C strings.
 * - Fractional and exponent ids are accepted (the spec says SHOULD NOT).
 * - Method names starting with "rpc." are the dispatcher's to refuse.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "rpc-codec.h"

static const char *
rpc_default_message(int code)
{
	switch (code) {
	case RPC_PARSE_ERROR:
		return "Parse error";
	case RPC_INVALID_REQUEST:
		return "Invalid Request";
	case RPC_METHOD_NOT_FOUND:
		return "Method not found";
	case RPC_INVALID_PARAMS:
		return "Invalid params";
	case RPC_INTERNAL_ERROR:
		return "Internal error";
	}
	if (code >= -32099 && code <= -32000)
		return "Server error";
	return "Error";
}

/* A copy of id for a reply: null when absent. */
static json_t *
rpc_id_copy(json_t *id)
{
	return id != NULL ? json_deep_copy(id) : json_null();
}

static json_t *
rpc_reason(int code, json_t *id, const char *reason)
{
	return rpc_error(id, code, NULL, json_pack("{s:s}", "reason", reason));
}

int
rpc_parse_line(const char *line, size_t len, json_t **msg, json_t **reply)
{
	json_error_t	 jerr;
	json_t		*v;

	*msg = NULL;
	*reply = NULL;
	/* Without JSON_DISABLE_EOF_CHECK, anything after the value fails. */
	v = json_loadb(line, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES,
	    &jerr);
	if (v == NULL) {
		*reply = rpc_reason(RPC_PARSE_ERROR, NULL, jerr.text);
		return -1;
	}
	if (json_is_array(v) && json_array_size(v) == 0) {
		*reply = rpc_reason(RPC_INVALID_REQUEST, NULL, "empty batch");
		json_decref(v);
		return -1;
	}
	if (!json_is_object(v) && !json_is_array(v)) {
		*reply = rpc_reason(RPC_INVALID_REQUEST, NULL,
		    "a message must be a request object or a batch array");
		json_decref(v);
		return -1;
	}
	*msg = v;
	return 0;
}

static bool
rpc_id_valid(const json_t *id)
{
	return json_is_string(id) || json_is_number(id) || json_is_null(id);
}

int
rpc_request_parse(json_t *elem, struct rpc_request *req, json_t **reply)
{
	json_t		*id, *version, *method, *params;
	const char	*reason = NULL;

	memset(req, 0, sizeof(*req));
	*reply = NULL;
	if (!json_is_object(elem)) {
		*reply = rpc_reason(RPC_INVALID_REQUEST, NULL,
		    "a request must be an object");
		return -1;
	}

	id = json_object_get(elem, "id");
	version = json_object_get(elem, "jsonrpc");
	method = json_object_get(elem, "method");
	params = json_object_get(elem, "params");
	if (json_is_null(params))
		params = NULL;

	if (id != NULL && !rpc_id_valid(id)) {
		reason = "\"id\" must be a string, a number or null";
		id = NULL;
	} else if (!json_is_string(version) ||
	    strcmp(json_string_value(version), "2.0") != 0)
		reason = "\"jsonrpc\" must be \"2.0\"";
	else if (!json_is_string(method))
		reason = "\"method\" must be a string";
	else if (strlen(json_string_value(method)) !=
	    json_string_length(method))
		reason = "\"method\" must not contain NUL";
	else if (params != NULL && !json_is_object(params) &&
	    !json_is_array(params))
		reason = "\"params\" must be an object, an array or null";
	if (reason != NULL) {
		*reply = rpc_reason(RPC_INVALID_REQUEST, id, reason);
		return -1;
	}

	req->method = json_string_value(method);
	req->id = id;
	req->params = params;
	return 0;
}

json_t *
rpc_result(json_t *id, json_t *result)
{
	json_t	*r;

	if (result == NULL)
		result = json_null();
	if ((r = json_object()) == NULL) {
		json_decref(result);
		return NULL;
	}
	if (json_object_set_new(r, "jsonrpc", json_string("2.0")) != 0 ||
	    json_object_set_new(r, "result", result) != 0 ||
	    json_object_set_new(r, "id", rpc_id_copy(id)) != 0) {
		json_decref(r);
		return NULL;
	}
	return r;
}

json_t *
rpc_error(json_t *id, int code, const char *message, json_t *data)
{
	json_t	*r, *e;

	if (message == NULL)
		message = rpc_default_message(code);
	r = json_object();
	e = json_pack("{s:i, s:s}", "code", code, "message", message);
	if (r == NULL || e == NULL) {
		json_decref(r);
		json_decref(e);
		json_decref(data);
		return NULL;
	}
	if (data != NULL && json_object_set_new(e, "data", data) != 0) {
		json_decref(r);
		json_decref(e);
		return NULL;
	}
	if (json_object_set_new(r, "jsonrpc", json_string("2.0")) != 0 ||
	    json_object_set_new(r, "error", e) != 0 ||
	    json_object_set_new(r, "id", rpc_id_copy(id)) != 0) {
		json_decref(r);
		return NULL;
	}
	return r;
}

json_t *
rpc_app_error(json_t *id, int code, const char *kind, const char *message,
    const char *hint)
{
	json_t	*data;

	data = json_pack("{s:s}", "kind", kind != NULL ? kind : "internal");
	if (data != NULL && hint != NULL &&
	    json_object_set_new(data, "hint", json_string(hint)) != 0) {
		json_decref(data);
		return NULL;
	}
	if (data == NULL)
		return NULL;
	return rpc_error(id, code, message, data);
}

/* Bytes: rpc_encode's scratch buffer, one per thread. A message that fits
 * is encoded there once and copied into an allocation of its own size; a
 * larger one is encoded again straight into one of the size the first pass
 * reported. (It used to be encoded into a fresh 4 KiB block shrunk with
 * realloc: in a batch of 2,000 creates, whose event lines the events
 * backlog keeps, the shrunk blocks fragmented the heap and malloc became a
 * tenth of the loop's time.) */
#define RPC_ENCODE_SCRATCH	16384

char *
rpc_encode(const json_t *msg, size_t *len)
{
	static _Thread_local char scratch[RPC_ENCODE_SCRATCH];
	const size_t	 flags = JSON_COMPACT | JSON_ENCODE_ANY;
	size_t		 n;
	char		*buf;

	if ((n = json_dumpb(msg, scratch, sizeof(scratch) - 2, flags)) == 0) {
		errno = EINVAL;
		return NULL;
	}
	if ((buf = malloc(n + 2)) == NULL)
		return NULL;
	if (n <= sizeof(scratch) - 2)
		memcpy(buf, scratch, n);
	else if (json_dumpb(msg, buf, n, flags) != n) {
		free(buf);
		errno = EINVAL;
		return NULL;
	}
	if (memchr(buf, '\n', n) != NULL) {
		/* Compact output escapes newlines: this would be a bug. */
		free(buf);
		errno = EINVAL;
		return NULL;
	}
	buf[n] = '\n';
	buf[n + 1] = '\0';
	*len = n + 1;
	return buf;
}

json_t *
rpc_request_new(const char *method, json_t *params, json_t *id)
{
	json_t	*r;

	if ((r = json_object()) == NULL) {
		json_decref(params);
		return NULL;
	}
	if (json_object_set_new(r, "jsonrpc", json_string("2.0")) != 0 ||
	    json_object_set_new(r, "method", json_string(method)) != 0 ||
	    (params != NULL && json_object_set(r, "params", params) != 0) ||
	    (id != NULL && json_object_set_new(r, "id",
	    json_deep_copy(id)) != 0)) {
		json_decref(params);
		json_decref(r);
		return NULL;
	}
	json_decref(params);
	return r;
}
