/*
 * Unit tests for the JSON-RPC 2.0 codec. The examples of section 7 of the
 * specification run through a toy dispatcher (the methods the examples
 * call) so whole exchanges, batches included, compare against the replies
 * the specification prints; then the edges: id echo, params, trailing
 * garbage, reply builders and the encoder.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc-codec.h"
#include "test-util.h"

static json_t *
load(const char *s)
{
	json_error_t	 jerr;
	json_t		*v;

	v = json_loads(s, JSON_DECODE_ANY, &jerr);
	if (v == NULL)
		ck_abort_msg("bad expected JSON %s: %s", s, jerr.text);
	return v;
}

/* The example methods of the specification. */
static json_t *
toy_call(const struct rpc_request *req)
{
	json_t		*p = req->params;
	json_int_t	 sum = 0;
	size_t		 i;
	json_t		*v;

	if (strcmp(req->method, "subtract") == 0) {
		if (json_is_array(p))
			return rpc_result(req->id, json_integer(
			    json_integer_value(json_array_get(p, 0)) -
			    json_integer_value(json_array_get(p, 1))));
		return rpc_result(req->id, json_integer(
		    json_integer_value(json_object_get(p, "minuend")) -
		    json_integer_value(json_object_get(p, "subtrahend"))));
	}
	if (strcmp(req->method, "sum") == 0 ||
	    strcmp(req->method, "notify_sum") == 0) {
		json_array_foreach(p, i, v)
			sum += json_integer_value(v);
		return rpc_result(req->id, json_integer(sum));
	}
	if (strcmp(req->method, "get_data") == 0)
		return rpc_result(req->id, json_pack("[s,i]", "hello", 5));
	if (strcmp(req->method, "update") == 0 ||
	    strcmp(req->method, "notify_hello") == 0)
		return rpc_result(req->id, NULL);
	return rpc_error(req->id, RPC_METHOD_NOT_FOUND, NULL, NULL);
}

/* Reply to one element, or NULL for a notification. */
static json_t *
toy_one(json_t *elem)
{
	struct rpc_request	 req;
	json_t			*reply;

	if (rpc_request_parse(elem, &req, &reply) != 0) {
		ck_assert_ptr_nonnull(reply);
		return reply;
	}
	ck_assert_ptr_null(reply);
	reply = toy_call(&req);
	if (req.id == NULL) {
		json_decref(reply);
		return NULL;
	}
	return reply;
}

/*
 * Checks the codec's own error replies carry data.reason, then removes
 * "data" so the reply compares with the specification's examples.
 */
static void
strip_reason(json_t *reply)
{
	json_t	*e = json_object_get(reply, "error");
	json_int_t code;

	if (e == NULL)
		return;
	code = json_integer_value(json_object_get(e, "code"));
	if (code != RPC_PARSE_ERROR && code != RPC_INVALID_REQUEST)
		return;
	ck_assert(json_is_string(json_object_get(
	    json_object_get(e, "data"), "reason")));
	ck_assert(json_string_length(json_object_get(
	    json_object_get(e, "data"), "reason")) > 0);
	json_object_del(e, "data");
}

/* Encodes reply and checks it is one line that decodes to reply. */
static void
check_encoding(const json_t *reply)
{
	json_t	*back;
	size_t	 len;
	char	*s;

	s = rpc_encode(reply, &len);
	ck_assert_ptr_nonnull(s);
	ck_assert_uint_eq(len, strlen(s));
	ck_assert(len >= 2 && s[len - 1] == '\n');
	ck_assert_ptr_eq(memchr(s, '\n', len), s + len - 1);
	back = json_loadb(s, len, 0, NULL);
	ck_assert_ptr_nonnull(back);
	ck_assert(json_equal(back, reply));
	json_decref(back);
	free(s);
}

/* What the daemon would send back for line, or NULL for no reply. */
static json_t *
exchange(const char *line)
{
	json_t	*msg, *reply, *r, *elem;
	size_t	 i;

	if (rpc_parse_line(line, strlen(line), &msg, &reply) != 0) {
		ck_assert_ptr_null(msg);
		ck_assert_ptr_nonnull(reply);
	} else if (json_is_object(msg)) {
		ck_assert_ptr_null(reply);
		reply = toy_one(msg);
	} else {
		ck_assert(json_is_array(msg) && json_array_size(msg) > 0);
		ck_assert_ptr_null(reply);
		reply = json_array();
		json_array_foreach(msg, i, elem) {
			if ((r = toy_one(elem)) != NULL)
				json_array_append_new(reply, r);
		}
		if (json_array_size(reply) == 0) {
			json_decref(reply);
			reply = NULL;
		}
	}
	json_decref(msg);
	if (reply != NULL)
		check_encoding(reply);
	return reply;
}

static void
check_exchange(const char *line, const char *expect)
{
	json_t	*reply, *want, *e;
	size_t	 i;
	char	*got;

	reply = exchange(line);
	if (expect == NULL) {
		if (reply != NULL) {
			got = json_dumps(reply, JSON_COMPACT);
			ck_abort_msg("%s: expected no reply, got %s", line, got);
		}
		return;
	}
	ck_assert_msg(reply != NULL, "%s: no reply", line);
	if (json_is_array(reply)) {
		json_array_foreach(reply, i, e)
			strip_reason(e);
	} else
		strip_reason(reply);
	want = load(expect);
	if (!json_equal(reply, want)) {
		got = json_dumps(reply, JSON_COMPACT);
		ck_abort_msg("%s:\n got %s\nwant %s", line, got, expect);
	}
	json_decref(want);
	json_decref(reply);
}

START_TEST(rpc_spec_positional_params)
{
	check_exchange(
	    "{\"jsonrpc\": \"2.0\", \"method\": \"subtract\", \"params\": [42, 23], \"id\": 1}",
	    "{\"jsonrpc\": \"2.0\", \"result\": 19, \"id\": 1}");
	check_exchange(
	    "{\"jsonrpc\": \"2.0\", \"method\": \"subtract\", \"params\": [23, 42], \"id\": 2}",
	    "{\"jsonrpc\": \"2.0\", \"result\": -19, \"id\": 2}");
}
END_TEST

START_TEST(rpc_spec_named_params)
{
	check_exchange(
	    "{\"jsonrpc\": \"2.0\", \"method\": \"subtract\", \"params\": {\"subtrahend\": 23, \"minuend\": 42}, \"id\": 3}",
	    "{\"jsonrpc\": \"2.0\", \"result\": 19, \"id\": 3}");
	check_exchange(
	    "{\"jsonrpc\": \"2.0\", \"method\": \"subtract\", \"params\": {\"minuend\": 42, \"subtrahend\": 23}, \"id\": 4}",
	    "{\"jsonrpc\": \"2.0\", \"result\": 19, \"id\": 4}");
}
END_TEST

START_TEST(rpc_spec_notification)
{
	struct rpc_request	 req;
	json_t			*msg, *reply;
	const char		*line = "{\"jsonrpc\": \"2.0\", \"method\": \"update\", \"params\": [1,2,3,4,5]}";

	check_exchange(line, NULL);
	check_exchange("{\"jsonrpc\": \"2.0\", \"method\": \"foobar\"}", NULL);

	ck_assert_int_eq(rpc_parse_line(line, strlen(line), &msg, &reply), 0);
	ck_assert_int_eq(rpc_request_parse(msg, &req, &reply), 0);
	ck_assert_str_eq(req.method, "update");
	ck_assert_ptr_null(req.id);
	ck_assert(json_is_array(req.params));
	ck_assert_uint_eq(json_array_size(req.params), 5);
	json_decref(msg);
}
END_TEST

START_TEST(rpc_spec_unknown_method_parses)
{
	struct rpc_request	 req;
	json_t			*msg, *reply;
	const char		*line = "{\"jsonrpc\": \"2.0\", \"method\": \"foobar\", \"id\": \"1\"}";

	/* The codec accepts it; "Method not found" is the dispatcher's. */
	ck_assert_int_eq(rpc_parse_line(line, strlen(line), &msg, &reply), 0);
	ck_assert_int_eq(rpc_request_parse(msg, &req, &reply), 0);
	ck_assert_str_eq(req.method, "foobar");
	ck_assert_str_eq(json_string_value(req.id), "1");
	ck_assert_ptr_null(req.params);
	json_decref(msg);
	check_exchange(line,
	    "{\"jsonrpc\": \"2.0\", \"error\": {\"code\": -32601, \"message\": \"Method not found\"}, \"id\": \"1\"}");
}
END_TEST

START_TEST(rpc_spec_invalid_json)
{
	check_exchange(
	    "{\"jsonrpc\": \"2.0\", \"method\": \"foobar, \"params\": \"bar\", \"baz]",
	    "{\"jsonrpc\": \"2.0\", \"error\": {\"code\": -32700, \"message\": \"Parse error\"}, \"id\": null}");
}
END_TEST

START_TEST(rpc_spec_invalid_request)
{
	check_exchange(
	    "{\"jsonrpc\": \"2.0\", \"method\": 1, \"params\": \"bar\"}",
	    "{\"jsonrpc\": \"2.0\", \"error\": {\"code\": -32600, \"message\": \"Invalid Request\"}, \"id\": null}");
}
END_TEST

START_TEST(rpc_spec_batch_invalid_json)
{
	check_exchange(
	    "[{\"jsonrpc\": \"2.0\", \"method\": \"sum\", \"params\": [1,2,4], \"id\": \"1\"},"
	    "{\"jsonrpc\": \"2.0\", \"method\"]",
	    "{\"jsonrpc\": \"2.0\", \"error\": {\"code\": -32700, \"message\": \"Parse error\"}, \"id\": null}");
}
END_TEST

START_TEST(rpc_spec_empty_batch)
{
	check_exchange("[]",
	    "{\"jsonrpc\": \"2.0\", \"error\": {\"code\": -32600, \"message\": \"Invalid Request\"}, \"id\": null}");
	check_exchange(" [ ] ",
	    "{\"jsonrpc\": \"2.0\", \"error\": {\"code\": -32600, \"message\": \"Invalid Request\"}, \"id\": null}");
}
END_TEST

START_TEST(rpc_spec_invalid_batch)
{
	check_exchange("[1]",
	    "[{\"jsonrpc\": \"2.0\", \"error\": {\"code\": -32600, \"message\": \"Invalid Request\"}, \"id\": null}]");
	check_exchange("[1,2,3]",
	    "[{\"jsonrpc\": \"2.0\", \"error\": {\"code\": -32600, \"message\": \"Invalid Request\"}, \"id\": null},"
	    "{\"jsonrpc\": \"2.0\", \"error\": {\"code\": -32600, \"message\": \"Invalid Request\"}, \"id\": null},"
	    "{\"jsonrpc\": \"2.0\", \"error\": {\"code\": -32600, \"message\": \"Invalid Request\"}, \"id\": null}]");
	/* Nested arrays are not requests either. */
	check_exchange("[[]]",
	    "[{\"jsonrpc\": \"2.0\", \"error\": {\"code\": -32600, \"message\": \"Invalid Request\"}, \"id\": null}]");
}
END_TEST

START_TEST(rpc_spec_mixed_batch)
{
	check_exchange(
	    "[{\"jsonrpc\": \"2.0\", \"method\": \"sum\", \"params\": [1,2,4], \"id\": \"1\"},"
	    " {\"jsonrpc\": \"2.0\", \"method\": \"notify_hello\", \"params\": [7]},"
	    " {\"jsonrpc\": \"2.0\", \"method\": \"subtract\", \"params\": [42,23], \"id\": \"2\"},"
	    " {\"foo\": \"boo\"},"
	    " {\"jsonrpc\": \"2.0\", \"method\": \"foo.get\", \"params\": {\"name\": \"myself\"}, \"id\": \"5\"},"
	    " {\"jsonrpc\": \"2.0\", \"method\": \"get_data\", \"id\": \"9\"}]",
	    "[{\"jsonrpc\": \"2.0\", \"result\": 7, \"id\": \"1\"},"
	    " {\"jsonrpc\": \"2.0\", \"result\": 19, \"id\": \"2\"},"
	    " {\"jsonrpc\": \"2.0\", \"error\": {\"code\": -32600, \"message\": \"Invalid Request\"}, \"id\": null},"
	    " {\"jsonrpc\": \"2.0\", \"error\": {\"code\": -32601, \"message\": \"Method not found\"}, \"id\": \"5\"},"
	    " {\"jsonrpc\": \"2.0\", \"result\": [\"hello\", 5], \"id\": \"9\"}]");
}
END_TEST

START_TEST(rpc_spec_notification_batch)
{
	check_exchange(
	    "[{\"jsonrpc\": \"2.0\", \"method\": \"notify_sum\", \"params\": [1,2,4]},"
	    " {\"jsonrpc\": \"2.0\", \"method\": \"notify_hello\", \"params\": [7]}]",
	    NULL);
}
END_TEST

#define INVALID(id) \
	"{\"jsonrpc\": \"2.0\", \"error\": {\"code\": -32600, \"message\": \"Invalid Request\"}, \"id\": " id "}"

START_TEST(rpc_invalid_request_echoes_id)
{
	check_exchange("{\"jsonrpc\": \"2.0\", \"method\": 1, \"id\": 7}",
	    INVALID("7"));
	check_exchange("{\"jsonrpc\": \"1.0\", \"method\": \"x\", \"id\": \"abc\"}",
	    INVALID("\"abc\""));
	check_exchange("{\"method\": \"x\", \"id\": 1.5}", INVALID("1.5"));
	check_exchange("{\"jsonrpc\": 2.0, \"method\": \"x\", \"id\": -3}",
	    INVALID("-3"));
	check_exchange("{\"jsonrpc\": \"2.00\", \"method\": \"x\", \"id\": 0}",
	    INVALID("0"));
	check_exchange("{\"jsonrpc\": \"2.0\", \"id\": null}", INVALID("null"));
	check_exchange("{\"jsonrpc\": \"2.0\", \"method\": \"x\", \"params\": \"bar\", \"id\": \"p\"}",
	    INVALID("\"p\""));
	check_exchange("{\"jsonrpc\": \"2.0\", \"method\": \"x\", \"params\": 5, \"id\": 9}",
	    INVALID("9"));
	check_exchange("{\"jsonrpc\": \"2.0\", \"method\": \"x\", \"params\": true, \"id\": 9}",
	    INVALID("9"));
	/* An id of the wrong type cannot be echoed. */
	check_exchange("{\"jsonrpc\": \"2.0\", \"method\": \"x\", \"id\": [1]}",
	    INVALID("null"));
	check_exchange("{\"jsonrpc\": \"2.0\", \"method\": \"x\", \"id\": {\"a\": 1}}",
	    INVALID("null"));
	check_exchange("{\"jsonrpc\": \"2.0\", \"method\": \"x\", \"id\": true}",
	    INVALID("null"));
	/* Inside a batch, per element. */
	check_exchange("[{\"jsonrpc\": \"2.0\", \"method\": 3, \"id\": \"a\"},"
	    " {\"jsonrpc\": \"2.0\", \"method\": \"sum\", \"params\": [1], \"id\": \"b\"}, 4]",
	    "[" INVALID("\"a\"") ","
	    " {\"jsonrpc\": \"2.0\", \"result\": 1, \"id\": \"b\"}, "
	    INVALID("null") "]");
}
END_TEST

START_TEST(rpc_id_types_accepted)
{
	check_exchange("{\"jsonrpc\": \"2.0\", \"method\": \"sum\", \"params\": [2], \"id\": null}",
	    "{\"jsonrpc\": \"2.0\", \"result\": 2, \"id\": null}");
	check_exchange("{\"jsonrpc\": \"2.0\", \"method\": \"sum\", \"params\": [2], \"id\": 2.5}",
	    "{\"jsonrpc\": \"2.0\", \"result\": 2, \"id\": 2.5}");
	check_exchange("{\"jsonrpc\": \"2.0\", \"method\": \"sum\", \"params\": [2], \"id\": \"\"}",
	    "{\"jsonrpc\": \"2.0\", \"result\": 2, \"id\": \"\"}");
	check_exchange("{\"jsonrpc\": \"2.0\", \"method\": \"sum\", \"params\": [2], \"id\": -9007199254740993}",
	    "{\"jsonrpc\": \"2.0\", \"result\": 2, \"id\": -9007199254740993}");
}
END_TEST

START_TEST(rpc_params_null_is_absent)
{
	struct rpc_request	 req;
	json_t			*msg, *reply;
	const char		*lines[] = {
		"{\"jsonrpc\": \"2.0\", \"method\": \"vm.list\", \"params\": null, \"id\": 1}",
		"{\"jsonrpc\": \"2.0\", \"method\": \"vm.list\", \"id\": 1}",
		"{\"id\": 1, \"params\": null, \"method\": \"vm.list\", \"jsonrpc\": \"2.0\"}",
	};
	size_t			 i;

	for (i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		ck_assert_int_eq(rpc_parse_line(lines[i], strlen(lines[i]),
		    &msg, &reply), 0);
		ck_assert_int_eq(rpc_request_parse(msg, &req, &reply), 0);
		ck_assert_ptr_null(reply);
		ck_assert_str_eq(req.method, "vm.list");
		ck_assert_ptr_null(req.params);
		ck_assert_int_eq(json_integer_value(req.id), 1);
		json_decref(msg);
	}
	/* Empty containers are params all the same. */
	msg = load("{\"jsonrpc\": \"2.0\", \"method\": \"m\", \"params\": []}");
	ck_assert_int_eq(rpc_request_parse(msg, &req, &reply), 0);
	ck_assert(json_is_array(req.params));
	json_decref(msg);
	msg = load("{\"jsonrpc\": \"2.0\", \"method\": \"m\", \"params\": {}}");
	ck_assert_int_eq(rpc_request_parse(msg, &req, &reply), 0);
	ck_assert(json_is_object(req.params));
	json_decref(msg);
}
END_TEST

START_TEST(rpc_unknown_members_ignored)
{
	struct rpc_request	 req;
	json_t			*msg, *reply;

	msg = load("{\"jsonrpc\": \"2.0\", \"method\": \"rpc.x\", \"id\": 1,"
	    " \"extra\": {\"a\": [1]}, \"result\": 3}");
	ck_assert_int_eq(rpc_request_parse(msg, &req, &reply), 0);
	ck_assert_str_eq(req.method, "rpc.x");	/* reserved: dispatcher's */
	json_decref(msg);
}
END_TEST

START_TEST(rpc_method_with_nul_rejected)
{
	struct rpc_request	 req;
	json_t			*msg, *reply, *want;

	msg = json_pack("{s:s, s:o, s:i}", "jsonrpc", "2.0",
	    "method", json_stringn("vm.\0list", 8), "id", 4);
	ck_assert_int_eq(rpc_request_parse(msg, &req, &reply), -1);
	strip_reason(reply);
	want = load(INVALID("4"));
	ck_assert(json_equal(reply, want));
	json_decref(want);
	json_decref(reply);
	json_decref(msg);
}
END_TEST

#define PARSE_ERROR \
	"{\"jsonrpc\": \"2.0\", \"error\": {\"code\": -32700, \"message\": \"Parse error\"}, \"id\": null}"

START_TEST(rpc_parse_errors)
{
	const char	*bad[] = {
		"",
		"   ",
		"{\"jsonrpc\": \"2.0\", \"method\": \"x\", \"id\": 1} x",
		"{\"jsonrpc\": \"2.0\", \"method\": \"x\", \"id\": 1}{}",
		"{} {}",
		"[1] 2",
		"1 2",
		"{\"jsonrpc\": \"2.0\", \"method\": \"x\", \"id\": 1, \"id\": 2}",
		"{\"jsonrpc\": \"2.0\", \"method\": \"a\\u0000b\", \"id\": 1}",
		"{\"jsonrpc\": \"2.0\", \"method\": \"\xff\", \"id\": 1}",
		"{'jsonrpc': '2.0'}",
		"[1,]",
		"nul",
	};
	json_t		*msg, *reply;
	char		 deep[20001];
	size_t		 i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		check_exchange(bad[i], PARSE_ERROR);

	/* Nesting past the parser's limit is refused, not recursed into. */
	memset(deep, '[', sizeof(deep) - 1);
	deep[sizeof(deep) - 1] = '\0';
	check_exchange(deep, PARSE_ERROR);

	/* The line is taken by length: a NUL byte inside is not an end. */
	ck_assert_int_eq(rpc_parse_line("{}\0{}", 5, &msg, &reply), -1);
	ck_assert_ptr_null(msg);
	json_decref(reply);
	/* Trailing whitespace (a CR from a CRLF line) is fine. */
	ck_assert_int_eq(rpc_parse_line("{} \r\t", 5, &msg, &reply), 0);
	json_decref(msg);
}
END_TEST

START_TEST(rpc_scalar_is_invalid_request)
{
	const char	*scalars[] = { "1", "\"x\"", "null", "true", "-0.5" };
	size_t		 i;

	for (i = 0; i < sizeof(scalars) / sizeof(scalars[0]); i++)
		check_exchange(scalars[i], INVALID("null"));
}
END_TEST

START_TEST(rpc_error_data_only_when_given)
{
	json_t	*id = json_integer(5), *r, *want;

	r = rpc_error(id, RPC_INVALID_PARAMS, NULL, NULL);
	want = load("{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32602,"
	    "\"message\":\"Invalid params\"},\"id\":5}");
	ck_assert(json_equal(r, want));
	json_decref(r);
	json_decref(want);

	r = rpc_error(id, RPC_INVALID_PARAMS, "bad cpus",
	    json_pack("{s:s}", "reason", "cpus: 0 is below 1"));
	want = load("{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32602,"
	    "\"message\":\"bad cpus\",\"data\":{\"reason\":"
	    "\"cpus: 0 is below 1\"}},\"id\":5}");
	ck_assert(json_equal(r, want));
	json_decref(r);
	json_decref(want);

	r = rpc_error(NULL, RPC_INTERNAL_ERROR, NULL, NULL);
	want = load("{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32603,"
	    "\"message\":\"Internal error\"},\"id\":null}");
	ck_assert(json_equal(r, want));
	json_decref(r);
	json_decref(want);

	r = rpc_app_error(id, -32001, "not_found", "no VM named web",
	    "list them with emberctl vm list");
	want = load("{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32001,"
	    "\"message\":\"no VM named web\",\"data\":{\"kind\":\"not_found\","
	    "\"hint\":\"list them with emberctl vm list\"}},\"id\":5}");
	ck_assert(json_equal(r, want));
	json_decref(r);
	json_decref(want);

	r = rpc_app_error(id, -32010, "busy", "web is starting", NULL);
	want = load("{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32010,"
	    "\"message\":\"web is starting\",\"data\":{\"kind\":\"busy\"}},"
	    "\"id\":5}");
	ck_assert(json_equal(r, want));
	json_decref(r);
	json_decref(want);

	/* The id was copied, never taken. */
	ck_assert_int_eq(id->refcount, 1);
	json_decref(id);
}
END_TEST

START_TEST(rpc_result_builds_reply)
{
	json_t	*id = json_string("abc"), *r, *want;

	r = rpc_result(id, json_pack("{s:i}", "vms", 2));
	want = load("{\"jsonrpc\":\"2.0\",\"result\":{\"vms\":2},\"id\":\"abc\"}");
	ck_assert(json_equal(r, want));
	json_decref(r);
	json_decref(want);
	r = rpc_result(id, NULL);
	want = load("{\"jsonrpc\":\"2.0\",\"result\":null,\"id\":\"abc\"}");
	ck_assert(json_equal(r, want));
	json_decref(r);
	json_decref(want);
	ck_assert_int_eq(id->refcount, 1);
	json_decref(id);
}
END_TEST

START_TEST(rpc_encode_one_line)
{
	json_t	*r;
	size_t	 len;
	char	*s;

	r = rpc_result(NULL, json_pack("{s:s}", "log", "line one\nline two\r\n"));
	s = rpc_encode(r, &len);
	ck_assert_ptr_nonnull(s);
	ck_assert_str_eq(s, "{\"jsonrpc\":\"2.0\",\"result\":{\"log\":"
	    "\"line one\\nline two\\r\\n\"},\"id\":null}\n");
	ck_assert_uint_eq(len, strlen(s));
	free(s);
	check_encoding(r);
	json_decref(r);

	r = json_pack("[{s:i},{s:i}]", "a", 1, "b", 2);
	s = rpc_encode(r, &len);
	ck_assert_str_eq(s, "[{\"a\":1},{\"b\":2}]\n");
	ck_assert_uint_eq(len, 18);
	free(s);
	json_decref(r);

	/* Around and past the first buffer's size: the whole message, once. */
	for (size_t body = 4070; body < 4110; body++) {
		char *text = malloc(body + 1);
		ck_assert_ptr_nonnull(text);
		memset(text, 'x', body);
		text[body] = '\0';
		r = json_pack("{s:s}", "t", text);
		s = rpc_encode(r, &len);
		ck_assert_ptr_nonnull(s);
		ck_assert_uint_eq(len, body + strlen("{\"t\":\"\"}\n"));
		ck_assert_uint_eq(strlen(s), len);
		ck_assert_int_eq(s[len - 1], '\n');
		ck_assert_int_eq(strncmp(s + 6, text, body), 0);
		ck_assert_str_eq(s + 6 + body, "\"}\n");
		free(s);
		free(text);
		json_decref(r);
	}
}
END_TEST

START_TEST(rpc_request_new_round_trips)
{
	struct rpc_request	 req;
	json_t			*r, *msg, *reply, *id, *want;
	size_t			 len;
	char			*s;

	id = json_integer(12);
	r = rpc_request_new("vm.start", json_pack("{s:s}", "name", "web"), id);
	want = load("{\"jsonrpc\":\"2.0\",\"method\":\"vm.start\","
	    "\"params\":{\"name\":\"web\"},\"id\":12}");
	ck_assert(json_equal(r, want));
	json_decref(want);
	s = rpc_encode(r, &len);
	ck_assert_int_eq(rpc_parse_line(s, len - 1, &msg, &reply), 0);
	ck_assert_int_eq(rpc_request_parse(msg, &req, &reply), 0);
	ck_assert_str_eq(req.method, "vm.start");
	ck_assert_str_eq(json_string_value(json_object_get(req.params, "name")),
	    "web");
	ck_assert(json_equal(req.id, id));
	json_decref(msg);
	json_decref(r);
	free(s);
	ck_assert_int_eq(id->refcount, 1);
	json_decref(id);

	r = rpc_request_new("daemon.info", NULL, NULL);
	want = load("{\"jsonrpc\":\"2.0\",\"method\":\"daemon.info\"}");
	ck_assert(json_equal(r, want));
	json_decref(want);
	ck_assert_int_eq(rpc_request_parse(r, &req, &reply), 0);
	ck_assert_ptr_null(req.id);
	ck_assert_ptr_null(req.params);
	json_decref(r);
}
END_TEST

static Suite *
rpc_suite(void)
{
	Suite	*s = suite_create("rpc_codec");
	TCase	*spec = tcase_create("spec");
	TCase	*edge = tcase_create("edges");

	tcase_add_test(spec, rpc_spec_positional_params);
	tcase_add_test(spec, rpc_spec_named_params);
	tcase_add_test(spec, rpc_spec_notification);
	tcase_add_test(spec, rpc_spec_unknown_method_parses);
	tcase_add_test(spec, rpc_spec_invalid_json);
	tcase_add_test(spec, rpc_spec_invalid_request);
	tcase_add_test(spec, rpc_spec_batch_invalid_json);
	tcase_add_test(spec, rpc_spec_empty_batch);
	tcase_add_test(spec, rpc_spec_invalid_batch);
	tcase_add_test(spec, rpc_spec_mixed_batch);
	tcase_add_test(spec, rpc_spec_notification_batch);
	suite_add_tcase(s, spec);

	tcase_add_test(edge, rpc_invalid_request_echoes_id);
	tcase_add_test(edge, rpc_id_types_accepted);
	tcase_add_test(edge, rpc_params_null_is_absent);
	tcase_add_test(edge, rpc_unknown_members_ignored);
	tcase_add_test(edge, rpc_method_with_nul_rejected);
	tcase_add_test(edge, rpc_parse_errors);
	tcase_add_test(edge, rpc_scalar_is_invalid_request);
	tcase_add_test(edge, rpc_error_data_only_when_given);
	tcase_add_test(edge, rpc_result_builds_reply);
	tcase_add_test(edge, rpc_encode_one_line);
	tcase_add_test(edge, rpc_request_new_round_trips);
	suite_add_tcase(s, edge);
	return s;
}

int
main(void)
{
	return test_run_suite(rpc_suite());
}
