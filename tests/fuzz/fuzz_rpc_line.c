/*
 * libFuzzer harness for the JSON-RPC line codec: every input is one line
 * as the transport would hand it over. Parses it, checks each request the
 * way the dispatcher would, builds and encodes every reply, and aborts if
 * an encoded reply is not exactly one line.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rpc-codec.h"

static void
encode_one(const json_t *reply)
{
	size_t	 len;
	char	*s;

	if (reply == NULL)
		return;
	if ((s = rpc_encode(reply, &len)) == NULL)
		abort();
	if (len == 0 || s[len - 1] != '\n' || memchr(s, '\n', len) != s + len - 1)
		abort();
	free(s);
}

/* What a dispatcher would answer for one element: echo method and params. */
static json_t *
answer(json_t *elem)
{
	struct rpc_request	 req;
	json_t			*reply;

	if (rpc_request_parse(elem, &req, &reply) != 0) {
		if (reply == NULL)
			abort();
		return reply;
	}
	if (req.method == NULL || reply != NULL)
		abort();
	if (strncmp(req.method, "rpc.", 4) == 0)
		return rpc_error(req.id, RPC_METHOD_NOT_FOUND, NULL, NULL);
	if (req.params != NULL && json_is_array(req.params))
		return rpc_app_error(req.id, -32011, "invalid_spec",
		    req.method, json_array_size(req.params) ? "hint" : NULL);
	return rpc_result(req.id, json_pack("{s:s, s:O?}", "method",
	    req.method, "params", req.params));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t	*msg, *reply, *batch, *elem, *r;
	size_t	 i;

	if (size > RPC_MAX_LINE)
		return 0;
	if (rpc_parse_line((const char *)data, size, &msg, &reply) != 0) {
		if (msg != NULL || reply == NULL)
			abort();
		encode_one(reply);
		json_decref(reply);
		return 0;
	}
	if (json_is_object(msg)) {
		r = answer(msg);
		encode_one(r);
		json_decref(r);
	} else {
		if (!json_is_array(msg) || json_array_size(msg) == 0)
			abort();
		batch = json_array();
		json_array_foreach(msg, i, elem)
			json_array_append_new(batch, answer(elem));
		encode_one(batch);
		json_decref(batch);
	}
	json_decref(msg);
	return 0;
}
