/*
 * ember-agent's core: the request/reply protocol and the op table, with no
 * sockets. A request is one JSON object on one line, {"op":NAME, "id":ANY,
 * ...params}; the reply is one JSON object on one line, {"ok":true, ...} or
 * {"ok":false,"error":"what went wrong"}, carrying the request's "id" when
 * it had one. The transport (ember-agent.c) frames lines, bounds their size
 * and owns the connections; agent_handle_line() is all it calls.
 *
 * Ops live in tables (agent-ops.c for ping/info); each row names the op,
 * the json_unpack format its parameters must match (checked strictly before
 * the handler runs) and the handler, which adds its members to the reply.
 */
#ifndef EMBER_AGENT_H
#define EMBER_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "base64.h"

#ifndef EMBER_VERSION
#define EMBER_VERSION "0.0.0"
#endif

/* The vsock port the agent listens on unless told otherwise. */
#define AGENT_PORT		1024
/* The longest request line accepted, without its newline. */
#define AGENT_MAX_LINE		(1024 * 1024)
/* The most ember.echo ports honoured. */
#define AGENT_MAX_ECHO_PORTS	16

struct agent_error {
	char	msg[256];
};

/* Sets err's message (first error wins) and returns -1. */
int agent_error_set(struct agent_error *err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/*
 * One op. fmt is a json_unpack format for the request's members other than
 * "op" and "id", as one object, unpacked with JSON_STRICT (so "{}" takes no
 * parameters); NULL skips the check. run adds members to reply (which
 * already holds "ok" and "id") and returns 0, or returns -1 with err set.
 */
struct agent_op {
	const char	*name;
	const char	*fmt;
	int		(*run)(json_t *params, json_t *reply, struct agent_error *err);
	int		 flags;
};

/* The op may run for long (exec): the transport runs it in a worker process. */
#define AGENT_OP_WORKER		0x1

/* Caps of the exec and file ops. */
#define AGENT_EXEC_OUTPUT_MAX	(256 * 1024)	/* stdout and stderr, each */
#define AGENT_FILE_CHUNK_MAX	(512 * 1024)	/* read_file length, write_file data */
#define AGENT_EXEC_TIMEOUT_MAX	(7 * 86400)

/* The ops of agent-ops.c (ping, info, poweroff), agent-exec.c and
 * agent-files.c, each ending with a row whose name is NULL. */
extern const struct agent_op agent_ops_basic[];
extern const struct agent_op agent_ops_exec[];
extern const struct agent_op agent_ops_files[];
/* workload_status (agent-workload.c). */
extern const struct agent_op agent_ops_workload[];

/*
 * Set by the fuzz harness: ops check their parameters as usual but run no
 * command and touch no file (they answer as if they had done nothing).
 */
extern int agent_dry_run;

/*
 * Set by poweroff once it has answered: the transport flushes the reply and
 * then calls agent_poweroff(). Cleared by agent_poweroff_take().
 */
int agent_poweroff_take(void);

/*
 * Powers the guest off: /sbin/ember-shutdown poweroff when the image has it
 * (ember-mini; it stops the agent, syncs and unmounts), else "systemctl
 * poweroff" under systemd, else sync() and reboot(RB_POWER_OFF). Returns
 * only when that could not be started (-errno), or after starting one of
 * the first two (0).
 */
int agent_poweroff(void);

/* The flags of the op a request line names; 0 when the line is not a
 * well-formed request for a known op (agent_handle_line answers those). */
int agent_line_flags(const char *line, size_t len);

/* The op called name, or NULL. */
const struct agent_op *agent_op_find(const char *name);

/*
 * Handles one request line (len bytes, no newline needed; a trailing "\r" is
 * ignored) and returns the reply as a malloc'd, newline-terminated string
 * whose length (newline included) is stored in *reply_len. Bad input gets an
 * error reply; NULL is returned only for a blank line (which gets no reply)
 * or when memory runs out.
 */
char *agent_handle_line(const char *line, size_t len, size_t *reply_len);

/* An error reply with msg for the request line (carrying its id when it
 * has one), like agent_handle_line; for failures of the transport's own. */
char *agent_error_line(const char *line, size_t len, const char *msg,
    size_t *reply_len);

/* The error reply for a line longer than AGENT_MAX_LINE, like agent_handle_line. */
char *agent_oversize_reply(size_t *reply_len);

/*
 * The vsock ports named by ember.echo=PORT[,PORT...] words on a kernel
 * command line (later words add to earlier ones; duplicates, zero and
 * malformed entries are skipped). Stores at most max ports and returns how
 * many were stored.
 */
size_t agent_parse_echo_ports(const char *cmdline, uint32_t *ports, size_t max);

/* This machine's vsock CID from /dev/vsock, or -errno (-ENODEV: no CID yet). */
int64_t agent_local_cid(void);

/* Network interfaces (agent-net.c), for info. */
#define AGENT_NET_IFACES_MAX	16
#define AGENT_NET_ADDRS_MAX	16
struct ifaddrs;
/* The interfaces of a getifaddrs() list as a JSON array
 * [{"name", "up", "mac", "addresses": [{"family", "address", "prefix"}]}],
 * bounded as above (*truncated says whether anything was dropped); NULL
 * when memory runs out. */
json_t *agent_net_from_ifaddrs(const struct ifaddrs *list, bool *truncated);
/* Adds "interfaces" (and "interfaces_truncated" when bounded) to reply. */
int agent_net_info(json_t *reply, struct agent_error *err);

/* Workloads (agent-workload.c). The workload in a kernel command line's
 * ember.workload= word, checked (new reference), or NULL with err. */
json_t *agent_workload_parse(const char *cmdline, struct agent_error *err);
/* In a child about to exec: chroot into root, the workload's env (and, with
 * as_user, its user) and working directory. 0, or -1 with err. */
int agent_enter_root(const char *root, json_t *workload, bool as_user,
    struct agent_error *err);
/* `ember-agent workload ROOT`: runs the workload, prints its exit line on
 * stderr and signals init to power off. */
int agent_workload_main(const char *root, const char *cmdline);
/* Set by `ember-agent --root DIR`: exec runs commands chrooted into DIR
 * with agent_exec_workload's env (both NULL otherwise). */
extern const char *agent_exec_root;
extern json_t *agent_exec_workload;
/* Where the workload's runner leaves its end for workload_status ("/run";
 * tests point it elsewhere). */
extern const char *agent_workload_run_dir;

#endif
