/*
 * struct ember_daemon: the one object that owns emberd's event base and
 * every subsystem. emberd.c only wires these together; each subsystem keeps
 * its own state and reaches the others through this struct.
 */
#ifndef EMBER_DAEMON_H
#define EMBER_DAEMON_H

#include <stdbool.h>
#include <stddef.h>
#include "backend.h"
#include "config.h"

struct event_base;
struct event;
struct control;
struct cid_alloc;
struct notify;
struct vm;

enum { BACKEND_FIRECRACKER, BACKEND_QEMU, BACKEND__COUNT };

struct ember_daemon {
	struct event_base *base;
	struct ember_config config;
	char *config_path;		/* NULL when running on defaults */
	char *state_dir;
	char *socket_path;
	int lock_fd;

	struct control *control;
	struct cid_alloc *cids;

	struct vm **vms;		/* sorted by name */
	size_t nvms, vms_cap;

	struct backend_env backend_env;
	struct backend *backends[BACKEND__COUNT];
	struct backend_info backend_info[BACKEND__COUNT];

	struct event *ev_sigterm, *ev_sigint, *ev_sighup, *ev_shutdown_deadline;
	struct event *ev_housekeeping;	/* vm.c's periodic chores */
	struct notify *notify;		/* the service manager's channel (notify.c) */
	bool shutting_down;
};

/* "N VMs running, M CIDs in use", for STATUS= (notify_status_fn). */
void daemon_status_line(void *ctx, char *buf, size_t len);
/* Tells the service manager (sd_notify STATUS=) what changed: VMs running,
 * CIDs in use. A no-op outside systemd. */
void daemon_status_changed(struct ember_daemon *d);
/* Re-probes every backend (startup and SIGHUP). */
void daemon_probe_backends(struct ember_daemon *d);
/* Backend by name ("qemu", "firecracker"), or NULL. */
struct backend *daemon_backend(struct ember_daemon *d, const char *name,
    const struct backend_info **info);

#endif
