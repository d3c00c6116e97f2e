/*
 * The control socket transport: a listening Unix socket, one bufferevent per
 * client, newline framing with a 1 MiB line limit, peer credentials from the
 * kernel, and the bounds that keep one client from starving the others:
 * a connection limit (global, kept below the fd limit, and per user), a
 * high-water mark on unsent replies past which a client is not read, a
 * bounded number of lines delivered per connection per loop turn, and a
 * paced accept that backs off when the process runs out of descriptors.
 * It never looks inside a line: complete lines go to the on_line callback,
 * replies come back by connection id, so a reply for a client that has left
 * is simply dropped.
 */
#ifndef EMBER_CONTROL_H
#define EMBER_CONTROL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "error.h"

struct event_base;
struct control;

#define CONTROL_PEER_GROUPS_MAX 64

struct control_peer {
	uint64_t conn_id;
	uid_t uid;
	gid_t gid;
	pid_t pid;
	int ngroups;		/* supplementary groups; -errno when unknown */
	gid_t groups[CONTROL_PEER_GROUPS_MAX];
};

struct control_callbacks {
	/* One complete line (without '\n', NUL-terminated for convenience).
	 * Blank and whitespace-only lines are never delivered. */
	void (*on_line)(void *ctx, const struct control_peer *peer,
	    const char *line, size_t len);
	/* A line exceeded the limit; return the bytes to send before the
	 * connection is closed (malloc'd, taken), or NULL. */
	char *(*on_oversize)(void *ctx, const struct control_peer *peer, size_t *len);
	/* The last connection finished after control_drain(). */
	void (*on_drained)(void *ctx);
	/* How many connections uid may hold at once (0: no limit). NULL: no
	 * per-user limit. */
	size_t (*user_connection_limit)(void *ctx, uid_t uid);
	/* A connection is refused because limit ("connections" or
	 * "max_connections") is reached with use connections open; return the
	 * bytes to send before it is closed (malloc'd, taken), or NULL. */
	char *(*on_refused)(void *ctx, const struct control_peer *peer,
	    const char *limit, size_t use, size_t max, size_t *len);
	/* A connection has gone (NULL: not told). No control_* call on it
	 * from here. */
	void (*on_closed)(void *ctx, uint64_t conn_id);
	/* A connection marked with control_watch_output() wrote out its
	 * pending output (NULL: not told). */
	void (*on_writable)(void *ctx, uint64_t conn_id);
};

/* Bounds on the work one connection may cause (see control_set_limits). */
struct control_limits {
	size_t max_connections;		/* all users together; 0: default */
	size_t reply_high_water;	/* unsent reply bytes; 0: default */
	unsigned lines_per_turn;	/* 0: default */
};

#define CONTROL_MAX_CONNECTIONS_DEFAULT	1024
#define CONTROL_REPLY_HIGH_WATER_DEFAULT	(4u * 1024 * 1024)
#define CONTROL_LINES_PER_TURN_DEFAULT	16
/* Connections only root may open once the others have reached the global
 * limit, so the administrator can still reach a flooded emberd. */
#define CONTROL_ROOT_RESERVE		8
/* Descriptors never given to connections: VMs, their sockets and logs. */
#define CONTROL_FD_RESERVE_MIN		256

/* Binds path (replacing a stale socket, refusing a live one), mode 0660,
 * group gid unless (gid_t)-1. listen_fd >= 0 uses an inherited socket. */
struct control *control_new(struct event_base *base, const char *path,
    int listen_fd, gid_t group, const struct control_callbacks *cb, void *ctx,
    struct ember_error *err);
/* The listening socket (kept across an in-place upgrade), or -1. */
int control_listen_fd(const struct control *ctl);
/* Closes the listener and all connections; removes the socket file when
 * emberd created it. */
void control_free(struct control *ctl);
/* Applies limits (zero fields take the defaults). max_connections is
 * lowered to leave a quarter of RLIMIT_NOFILE (at least
 * CONTROL_FD_RESERVE_MIN) for everything else; the value in effect is
 * returned. Existing connections are kept. */
size_t control_set_limits(struct control *ctl, const struct control_limits *lim);
/* Queues bytes for a connection; 0, or -ENOENT when it has gone. */
int control_send(struct control *ctl, uint64_t conn_id, const char *buf, size_t len);
/* Ends a connection whose reply could not be built (out of memory): it
 * reads no more lines and closes once its calls in flight are done and
 * its output is written, so the client sees the end instead of waiting. */
void control_close(struct control *ctl, uint64_t conn_id);
/* Bytes queued for a connection and not yet written, or -ENOENT. */
long long control_pending_output(struct control *ctl, uint64_t conn_id);
/* Calls on_writable each time the connection's output drains (a stream
 * that writes only while the client keeps up). */
void control_watch_output(struct control *ctl, uint64_t conn_id);
/* Stops accepting and reading new requests; on_drained fires once every
 * connection has no pending calls (control_hold/release) and output left.
 * control_drain closes the listening socket; control_drain_keep_listener
 * keeps it open, not accepting, so connections made meanwhile wait in its
 * backlog for whoever holds its fd next (an upgrade's successor). */
void control_drain(struct control *ctl);
void control_drain_keep_listener(struct control *ctl);
/* After control_drain_keep_listener: accepts and reads again. */
void control_undrain(struct control *ctl);
/* Counts calls in flight on a connection so drain waits for them. */
void control_hold(struct control *ctl, uint64_t conn_id);
void control_release(struct control *ctl, uint64_t conn_id);
/* The consumer is not finished with the line it was just given (e.g. a
 * batch dispatched over several loop turns): no further line of this
 * connection is delivered until control_resume(). */
void control_defer(struct control *ctl, uint64_t conn_id);
void control_resume(struct control *ctl, uint64_t conn_id);
size_t control_connection_count(const struct control *ctl);
size_t control_user_connection_count(const struct control *ctl, uid_t uid);

#endif
