/*
 * The service manager's side channels, spoken without libsystemd: readiness
 * and status datagrams to $NOTIFY_SOCKET (READY=1, RELOADING=1, STOPPING=1,
 * STATUS=, WATCHDOG=1 on a timer), the fd store (FDSTORE=1 with FDNAME=,
 * FDSTOREREMOVE=1), and the fds handed over at start ($LISTEN_PID,
 * $LISTEN_FDS, $LISTEN_FDNAMES from fd 3: the control socket of socket
 * activation, and what the fd store or our own exec kept). They read their
 * variables once and remove them from the environment so the hypervisors
 * emberd spawns never see them. Without a service manager every call here
 * is a cheap no-op, so emberd calls them unconditionally.
 */
#ifndef EMBER_NOTIFY_H
#define EMBER_NOTIFY_H

#include <stdbool.h>
#include "error.h"

struct event_base;
struct notify;

/* Fills buf with a one-line status (for STATUS=). */
typedef void (*notify_status_fn)(void *ctx, char *buf, size_t len);

/*
 * Reads and unsets NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID. Returns
 * an object even when there is no manager (then it sends nothing); NULL
 * only when out of memory. When the watchdog is asked for (and meant for
 * this process), WATCHDOG=1 is sent every WATCHDOG_USEC/2 from base.
 * status, when not NULL, is asked for a fresh STATUS= line with every
 * watchdog ping and at notify_ready(); it is sent only when it changed.
 */
struct notify *notify_new(struct event_base *base, notify_status_fn status, void *ctx);
void notify_free(struct notify *n);
/* Whether NOTIFY_SOCKET named a socket we can send to. */
bool notify_enabled(const struct notify *n);
/* Sends one datagram of newline-separated assignments; 0 or -errno. */
int notify_send(struct notify *n, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* READY=1 with the current STATUS= (start-up done, or a reload finished). */
void notify_ready(struct notify *n);
/* RELOADING=1 with MONOTONIC_USEC= (the reload's start). */
void notify_reloading(struct notify *n);
/* STOPPING=1 with a STATUS= saying why. */
void notify_stopping(struct notify *n, const char *why);

/* The filesystem path a listening Unix socket is bound to (malloc'd), or
 * NULL for an abstract or unnamed one. */
char *notify_socket_path(int fd);

/*
 * The fd store (sd_pid_notify_with_fds(3) FDSTORE=1). notify_fdstore_new
 * reads $NOTIFY_SOCKET (and the watchdog variables) without unsetting
 * them, before daemon_new, so VMs adopted at start can already talk to
 * the store; NULL when there is no manager. It is the fd_keep sink
 * (platform/linux/fd-keep.h): store sends "FDSTORE=1\nFDNAME=<name>" with
 * the fd attached, remove "FDSTOREREMOVE=1\nFDNAME=<name>".
 */
struct notify *notify_fdstore_new(void);
int notify_store_fd(void *n, const char *name, int fd);
void notify_remove_fd(void *n, const char *name);
/* Sends what waits from base's loop from now on (before: blocking, with
 * a deadline, as at start-up). 0 or -ENOMEM. */
int notify_fdstore_attach(struct notify *n, struct event_base *base);
/* Sends what still waits, within a deadline, and detaches from the loop:
 * before an exec or exit. NULL is a no-op. */
void notify_fdstore_flush(struct notify *n);
/* Puts NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID (our pid) back in
 * the environment for an exec of our successor. NULL is a no-op. */
void notify_export_env(const struct notify *n);

/*
 * The fds handed over at start (sd_listen_fds_with_names(3)), when
 * LISTEN_PID is our pid: those named "vsock/..." go to fd_keep_inherit
 * (for their VM's adoption); the first other one that is a listening
 * AF_UNIX stream socket (named "control" after our own exec, or after the
 * socket unit) is the control socket, returned; anything else is closed.
 * Every fd is made close-on-exec. -1 with err clear when no control socket
 * was passed, -1 with err set when fd 3 is not one emberd can use. Unsets
 * LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES.
 */
int notify_take_fds(struct ember_error *err);

#endif
