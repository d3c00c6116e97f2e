/*
 * The agent's request layer: parses one request line, finds its op in the
 * tables, checks its parameters against the row's format, runs it and
 * encodes the one-line reply. Nothing here touches a socket, so the unit
 * test and the fuzz harness drive it directly.
 *
 * Choices:
 * - Duplicate member names are refused (which "op" or "id" would be meant?)
 *   and so is "\u0000" inside strings (handlers read C strings).
 * - Members other than "op" and "id" are the op's parameters and are
 *   checked strictly: a misspelt parameter is an error, not ignored.
 * - Error texts are ASCII: anything else from the input is shown as '?', so
 *   an error reply can always be encoded.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/vm_sockets.h>

#include "agent.h"

/* Every op table. */
static const struct agent_op *const agent_tables[] = {
	agent_ops_basic,
	agent_ops_exec,
	agent_ops_files,
	agent_ops_workload,
};

int agent_dry_run;

int
agent_error_set(struct agent_error *err, const char *fmt, ...)
{
	va_list	ap;

	if (err->msg[0] != '\0')
		return -1;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	if (err->msg[0] == '\0')
		snprintf(err->msg, sizeof(err->msg), "unknown error");
	return -1;
}

const struct agent_op *
agent_op_find(const char *name)
{
	const struct agent_op	*op;
	size_t			 i;

	for (i = 0; i < sizeof(agent_tables) / sizeof(agent_tables[0]); i++) {
		for (op = agent_tables[i]; op->name != NULL; op++) {
			if (strcmp(op->name, name) == 0)
				return op;
		}
	}
	return NULL;
}

/* Appends the names of all ops, comma separated, for "unknown op" errors. */
static void
agent_op_names(char *buf, size_t size)
{
	const struct agent_op	*op;
	size_t			 i, used = 0;
	int			 n;

	buf[0] = '\0';
	for (i = 0; i < sizeof(agent_tables) / sizeof(agent_tables[0]); i++) {
		for (op = agent_tables[i]; op->name != NULL; op++) {
			n = snprintf(buf + used, size - used, "%s%s",
			    used == 0 ? "" : ", ", op->name);
			if (n < 0 || (size_t)n >= size - used)
				return;
			used += (size_t)n;
		}
	}
}

/* Replaces every byte that is not printable ASCII with '?'. */
static void
agent_ascii(char *s)
{
	for (; *s != '\0'; s++) {
		if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
			*s = '?';
	}
}

/* A new reply object {"ok":ok[,"id":id]}. */
static json_t *
agent_reply_new(int ok, json_t *id)
{
	json_t	*reply;

	if ((reply = json_object()) == NULL)
		return NULL;
	if (json_object_set_new(reply, "ok", json_boolean(ok)) != 0 ||
	    (id != NULL && json_object_set_new(reply, "id",
	    json_deep_copy(id)) != 0)) {
		json_decref(reply);
		return NULL;
	}
	return reply;
}

static json_t *
agent_error_reply(json_t *id, struct agent_error *err)
{
	json_t	*reply;

	agent_ascii(err->msg);
	if ((reply = agent_reply_new(0, id)) == NULL)
		return NULL;
	if (json_object_set_new(reply, "error", json_string(err->msg)) != 0) {
		json_decref(reply);
		return NULL;
	}
	return reply;
}

/* Encodes reply as one newline-terminated line and drops the reference. */
static char *
agent_encode(json_t *reply, size_t *reply_len)
{
	char	*s, *line;
	size_t	 len;

	*reply_len = 0;
	if (reply == NULL)
		return NULL;
	s = json_dumps(reply, JSON_COMPACT | JSON_REAL_PRECISION(10));
	json_decref(reply);
	if (s == NULL)
		return NULL;
	len = strlen(s);
	if ((line = realloc(s, len + 2)) == NULL) {
		free(s);
		return NULL;
	}
	line[len] = '\n';
	line[len + 1] = '\0';
	*reply_len = len + 1;
	return line;
}

/*
 * Runs the request req; returns the reply. On failure err is set and NULL
 * is returned (with the reply built by the caller).
 */
static json_t *
agent_dispatch(json_t *req, json_t *id, struct agent_error *err)
{
	const struct agent_op	*op;
	json_t			*opv, *params = NULL, *reply = NULL;
	json_error_t		 jerr;
	char			 names[256];

	if (!json_is_object(req)) {
		agent_error_set(err, "request is not a JSON object");
		return NULL;
	}
	if ((opv = json_object_get(req, "op")) == NULL) {
		agent_error_set(err, "request has no \"op\" member");
		return NULL;
	}
	if (!json_is_string(opv)) {
		agent_error_set(err, "\"op\" is not a string");
		return NULL;
	}
	if ((op = agent_op_find(json_string_value(opv))) == NULL) {
		agent_op_names(names, sizeof(names));
		agent_error_set(err, "unknown op \"%.64s\" (known: %s)",
		    json_string_value(opv), names);
		return NULL;
	}
	if ((params = json_copy(req)) == NULL) {
		agent_error_set(err, "out of memory");
		return NULL;
	}
	json_object_del(params, "op");
	json_object_del(params, "id");
	if (op->fmt != NULL &&
	    json_unpack_ex(params, &jerr, JSON_STRICT, op->fmt) != 0) {
		agent_error_set(err, "invalid parameters for %s: %s", op->name,
		    jerr.text);
		goto out;
	}
	if ((reply = agent_reply_new(1, id)) == NULL) {
		agent_error_set(err, "out of memory");
		goto out;
	}
	if (op->run(params, reply, err) != 0) {
		agent_error_set(err, "%s failed", op->name);
		json_decref(reply);
		reply = NULL;
	}
out:
	json_decref(params);
	return reply;
}

char *
agent_handle_line(const char *line, size_t len, size_t *reply_len)
{
	struct agent_error	 err = { { 0 } };
	json_error_t		 jerr;
	json_t			*req, *reply, *id = NULL;
	size_t			 i;

	*reply_len = 0;
	while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == '\n'))
		len--;
	for (i = 0; i < len; i++) {
		if (line[i] != ' ' && line[i] != '\t')
			break;
	}
	if (i == len)
		return NULL;

	req = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
	if (req == NULL) {
		agent_error_set(&err, "malformed JSON at column %d: %s",
		    jerr.column, jerr.text);
		return agent_encode(agent_error_reply(NULL, &err), reply_len);
	}
	if (json_is_object(req))
		id = json_object_get(req, "id");
	if ((reply = agent_dispatch(req, id, &err)) == NULL)
		reply = agent_error_reply(id, &err);
	json_decref(req);
	return agent_encode(reply, reply_len);
}

char *
agent_error_line(const char *line, size_t len, const char *msg,
    size_t *reply_len)
{
	struct agent_error	 err = { { 0 } };
	json_t			*req, *reply;

	req = json_loadb(line, len, JSON_REJECT_DUPLICATES, NULL);
	agent_error_set(&err, "%s", msg);
	reply = agent_error_reply(json_is_object(req) ?
	    json_object_get(req, "id") : NULL, &err);
	json_decref(req);
	return agent_encode(reply, reply_len);
}

int
agent_line_flags(const char *line, size_t len)
{
	const struct agent_op	*op;
	json_t			*req;
	int			 flags = 0;

	req = json_loadb(line, len, JSON_REJECT_DUPLICATES, NULL);
	if (json_is_object(req) &&
	    json_is_string(json_object_get(req, "op")) &&
	    (op = agent_op_find(json_string_value(json_object_get(req,
	    "op")))) != NULL)
		flags = op->flags;
	json_decref(req);
	return flags;
}

char *
agent_oversize_reply(size_t *reply_len)
{
	struct agent_error	err = { { 0 } };

	agent_error_set(&err, "request line too long (more than %d bytes); "
	    "closing the connection", AGENT_MAX_LINE);
	return agent_encode(agent_error_reply(NULL, &err), reply_len);
}

/* Parses one decimal port in [s, end); 0 when it is not a valid port. */
static uint32_t
agent_parse_port(const char *s, const char *end)
{
	uint64_t	v = 0;

	if (s == end || end - s > 10)
		return 0;
	for (; s < end; s++) {
		if (*s < '0' || *s > '9')
			return 0;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	/* VMADDR_PORT_ANY (-1U) is not a port one can listen on. */
	if (v >= VMADDR_PORT_ANY)
		return 0;
	return (uint32_t)v;
}

size_t
agent_parse_echo_ports(const char *cmdline, uint32_t *ports, size_t max)
{
	static const char	 key[] = "ember.echo=";
	const char		*p = cmdline, *word, *end, *v, *comma;
	size_t			 n = 0, i;
	uint32_t		 port;

	while (*p != '\0') {
		while (*p != '\0' && isspace((unsigned char)*p))
			p++;
		word = p;
		while (*p != '\0' && !isspace((unsigned char)*p))
			p++;
		end = p;
		if ((size_t)(end - word) < sizeof(key) - 1 ||
		    memcmp(word, key, sizeof(key) - 1) != 0)
			continue;
		for (v = word + sizeof(key) - 1; v < end; v = comma + 1) {
			if ((comma = memchr(v, ',', (size_t)(end - v))) == NULL)
				comma = end;
			port = agent_parse_port(v, comma);
			for (i = 0; i < n && port != 0; i++) {
				if (ports[i] == port)
					port = 0;
			}
			if (port != 0 && n < max)
				ports[n++] = port;
			if (comma == end)
				break;
		}
	}
	return n;
}

int64_t
agent_local_cid(void)
{
	unsigned int	cid = 0;
	int		fd, saved;

	if ((fd = open("/dev/vsock", O_RDONLY | O_CLOEXEC)) == -1)
		return -errno;
	if (ioctl(fd, IOCTL_VM_SOCKETS_GET_LOCAL_CID, &cid) == -1) {
		saved = errno;
		close(fd);
		return -saved;
	}
	close(fd);
	/* What the kernel answers when no transport has a CID (no device). */
	if (cid == VMADDR_CID_ANY)
		return -ENODEV;
	return cid;
}

