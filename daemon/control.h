/*
 * The control socket transport: a listening Unix socket, one bufferevent per
 * client, newline framing with a 1 MiB line limit, peer credentials from the
 * kernel, back-pressure for clients that do not read. It never looks inside
 * a line: complete lines go to the on_line callback, replies come back by
 * connection id, so a reply for a client that has left is simply dropped.
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
	/* One complete line (without '\n', NUL-terminated for convenience). */
	void (*on_line)(void *ctx, const struct control_peer *peer,
	    const char *line, size_t len);
	/* A line exceeded the limit; return the bytes to send before the
	 * connection is closed (malloc'd, taken), or NULL. */
	char *(*on_oversize)(void *ctx, const struct control_peer *peer, size_t *len);
	/* The last connection finished after control_drain(). */
	void (*on_drained)(void *ctx);
};

/* Binds path (replacing a stale socket, refusing a live one), mode 0660,
 * group gid unless (gid_t)-1. listen_fd >= 0 uses an inherited socket. */
struct control *control_new(struct event_base *base, const char *path,
    int listen_fd, gid_t group, const struct control_callbacks *cb, void *ctx,
    struct ember_error *err);
/* Closes the listener and all connections; removes the socket file when
 * emberd created it. */
void control_free(struct control *ctl);
/* Queues bytes for a connection; 0, or -ENOENT when it has gone. */
int control_send(struct control *ctl, uint64_t conn_id, const char *buf, size_t len);
/* Stops accepting and reading new requests; on_drained fires once every
 * connection has no pending calls (control_hold/release) and output left. */
void control_drain(struct control *ctl);
/* Counts calls in flight on a connection so drain waits for them. */
void control_hold(struct control *ctl, uint64_t conn_id);
void control_release(struct control *ctl, uint64_t conn_id);
size_t control_connection_count(const struct control *ctl);

#endif
