/*
 * emberctl's connection to emberd: connect, write one request line (looping
 * over partial writes, never raising SIGPIPE), read newline-framed replies
 * under a deadline until the one with our id arrives. Everything blocks in
 * poll(); there is one request in flight at a time.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "rpc-client.h"
#include "rpc-codec.h"

/* Replies are not bound by the daemon's 1 MiB request limit (a long vm.list
 * may exceed it), but a line this long is certainly not emberd talking. */
#define REPLY_MAX_LINE (64 * 1024 * 1024)

struct rpc_client {
	int fd;
	json_int_t next_id;
	char *buf;		/* bytes read but not yet consumed */
	size_t len, cap;
};

int
rpc_client_connect(const char *path, struct rpc_client **out)
{
	struct sockaddr_un sun;
	struct rpc_client *c;
	int fd, flags;

	*out = NULL;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun.sun_path))
		return -ENAMETOOLONG;
	memcpy(sun.sun_path, path, strlen(path) + 1);

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	while (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		int e = errno;

		if (e == EINTR)
			continue;
		close(fd);
		return -e;
	}
	/* Non-blocking from here on so that every wait is a bounded poll(). */
	flags = fcntl(fd, F_GETFL);
	if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
		int e = errno;

		close(fd);
		return -e;
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		close(fd);
		return -ENOMEM;
	}
	c->fd = fd;
	c->next_id = 1;
	*out = c;
	return 0;
}

void
rpc_client_free(struct rpc_client *c)
{
	if (c == NULL)
		return;
	if (c->fd >= 0)
		close(c->fd);
	free(c->buf);
	free(c);
}

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for events on the socket until deadline (-1: forever). Returns 1
 * when ready, 0 on timeout, -errno on failure. */
static int
wait_fd(int fd, short events, int64_t deadline)
{
	struct pollfd pfd = { .fd = fd, .events = events };

	for (;;) {
		int wait_ms = -1, r;

		if (deadline >= 0) {
			int64_t left = deadline - now_ms();

			if (left <= 0)
				return 0;
			wait_ms = left > INT_MAX ? INT_MAX : (int)left;
		}
		r = poll(&pfd, 1, wait_ms);
		if (r > 0)
			return 1;
		if (r < 0 && errno != EINTR)
			return -errno;
	}
}

/* Writes all of buf. 0, -ETIMEDOUT or -errno (EPIPE when emberd left). */
static int
send_all(int fd, const char *buf, size_t len, int64_t deadline)
{
	while (len > 0) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

		if (n >= 0) {
			buf += n;
			len -= (size_t)n;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			int r = wait_fd(fd, POLLOUT, deadline);

			if (r == 0)
				return -ETIMEDOUT;
			if (r < 0)
				return r;
			continue;
		}
		return -errno;
	}
	return 0;
}

/*
 * Reads the next complete line into *line (malloc'd, newline stripped).
 * Returns 0, -ETIMEDOUT, -EPIPE on EOF, -EMSGSIZE for an overlong line or
 * -errno.
 */
static int
read_line(struct rpc_client *c, int64_t deadline, char **line)
{
	size_t scanned = 0;

	for (;;) {
		char *nl = c->len > scanned ?
		    memchr(c->buf + scanned, '\n', c->len - scanned) : NULL;
		ssize_t n;

		if (nl != NULL) {
			size_t linelen = (size_t)(nl - c->buf);

			*line = malloc(linelen + 1);
			if (*line == NULL)
				return -ENOMEM;
			memcpy(*line, c->buf, linelen);
			(*line)[linelen] = '\0';
			c->len -= linelen + 1;
			memmove(c->buf, nl + 1, c->len);
			return 0;
		}
		scanned = c->len;
		if (c->len >= REPLY_MAX_LINE)
			return -EMSGSIZE;
		if (c->cap - c->len < 4096) {
			size_t ncap = c->cap == 0 ? 65536 : c->cap * 2;
			char *nbuf = realloc(c->buf, ncap);

			if (nbuf == NULL)
				return -ENOMEM;
			c->buf = nbuf;
			c->cap = ncap;
		}
		n = read(c->fd, c->buf + c->len, c->cap - c->len);
		if (n > 0) {
			c->len += (size_t)n;
			continue;
		}
		if (n == 0)
			return -EPIPE;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			int r = wait_fd(c->fd, POLLIN, deadline);

			if (r == 0)
				return -ETIMEDOUT;
			if (r < 0)
				return r;
			continue;
		}
		return -errno;
	}
}

/* Is this reply addressed to the request with id? A null id on an error is
 * emberd saying it could not read our id; with one request in flight that
 * error is ours. */
static bool
reply_is_ours(json_t *reply, json_int_t id)
{
	json_t *rid = json_object_get(reply, "id");

	if (json_is_integer(rid))
		return json_integer_value(rid) == id;
	return (rid == NULL || json_is_null(rid)) &&
	    json_object_get(reply, "error") != NULL;
}

/* Checks the JSON-RPC shape of our reply; NULL or what is wrong with it. */
static const char *
reply_problem(json_t *reply)
{
	json_t *ver = json_object_get(reply, "jsonrpc");
	json_t *result = json_object_get(reply, "result");
	json_t *error = json_object_get(reply, "error");

	if (!json_is_string(ver) || strcmp(json_string_value(ver), "2.0") != 0)
		return "\"jsonrpc\" is not \"2.0\"";
	if ((result == NULL) == (error == NULL))
		return "it must have exactly one of \"result\" and \"error\"";
	if (error != NULL) {
		if (!json_is_object(error))
			return "\"error\" is not an object";
		if (!json_is_integer(json_object_get(error, "code")))
			return "\"error.code\" is not an integer";
		if (!json_is_string(json_object_get(error, "message")))
			return "\"error.message\" is not a string";
	}
	return NULL;
}

enum rpc_call_status
rpc_client_call(struct rpc_client *c, const char *method, json_t *params,
    int timeout_ms, json_t **result, json_t **error, char *msg, size_t msglen)
{
	int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
	json_int_t id = c->next_id++;
	json_t *req, *jid;
	char *line;
	size_t len;
	int r;

	*result = NULL;
	*error = NULL;
	/* rpc_request_new steals params but not id (rpc-codec.h). */
	jid = json_integer(id);
	req = jid != NULL ? rpc_request_new(method, params, jid) : NULL;
	line = req != NULL ? rpc_encode(req, &len) : NULL;
	json_decref(req);
	json_decref(jid);
	if (line == NULL) {
		snprintf(msg, msglen, "cannot encode the %s request", method);
		return RPC_CALL_FAILED;
	}
	r = send_all(c->fd, line, len, deadline);
	free(line);
	if (r < 0) {
		if (r == -ETIMEDOUT)
			snprintf(msg, msglen, "timed out sending the %s request "
			    "to emberd", method);
		else
			snprintf(msg, msglen, "cannot send the %s request to "
			    "emberd: %s", method, strerror(-r));
		return RPC_CALL_FAILED;
	}

	for (;;) {
		json_error_t jerr;
		json_t *reply;
		const char *problem;

		r = read_line(c, deadline, &line);
		if (r == -ETIMEDOUT) {
			snprintf(msg, msglen, "no reply from emberd to %s within "
			    "%g s (wait longer with --timeout)", method,
			    timeout_ms / 1000.0);
			return RPC_CALL_FAILED;
		}
		if (r == -EPIPE) {
			snprintf(msg, msglen, "emberd closed the connection "
			    "before answering %s", method);
			return RPC_CALL_FAILED;
		}
		if (r == -EMSGSIZE) {
			snprintf(msg, msglen, "malformed reply from emberd: a "
			    "line longer than %d bytes", REPLY_MAX_LINE);
			return RPC_CALL_FAILED;
		}
		if (r < 0) {
			snprintf(msg, msglen, "cannot read the reply from "
			    "emberd: %s", strerror(-r));
			return RPC_CALL_FAILED;
		}
		reply = json_loads(line, JSON_REJECT_DUPLICATES, &jerr);
		free(line);
		if (reply == NULL) {
			snprintf(msg, msglen, "malformed reply from emberd: %s "
			    "(column %d)", jerr.text, jerr.column);
			return RPC_CALL_FAILED;
		}
		if (!json_is_object(reply) || !reply_is_ours(reply, id)) {
			json_decref(reply);	/* someone else's; keep reading */
			continue;
		}
		problem = reply_problem(reply);
		if (problem != NULL) {
			snprintf(msg, msglen, "malformed reply from emberd to "
			    "%s: %s", method, problem);
			json_decref(reply);
			return RPC_CALL_FAILED;
		}
		*error = json_incref(json_object_get(reply, "error"));
		if (*error == NULL)
			*result = json_incref(json_object_get(reply, "result"));
		json_decref(reply);
		return *error != NULL ? RPC_CALL_ERROR : RPC_CALL_OK;
	}
}

int
rpc_client_next(struct rpc_client *c, int timeout_ms, json_t **msg)
{
	int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
	json_error_t jerr;
	char *line;
	int r;

	*msg = NULL;
	r = read_line(c, deadline, &line);
	if (r < 0)
		return r;
	*msg = json_loads(line, JSON_REJECT_DUPLICATES, &jerr);
	free(line);
	if (*msg == NULL || !json_is_object(*msg)) {
		json_decref(*msg);
		*msg = NULL;
		return -EBADMSG;
	}
	return 0;
}
