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
struct vm_networks;
struct durable;
struct notify;
struct metrics_http;
struct metrics_lag_timer;
struct events;
struct vm;

struct child_call;

struct ember_daemon {
	struct event_base *base;
	struct ember_config config;
	char *config_path;		/* NULL when running on defaults */
	char *state_dir;
	char *socket_path;
	int lock_fd;

	struct control *control;
	struct cid_alloc *cids;
	struct vm_networks *net;	/* VM networks: pool, firewall (vm-network.c) */
	struct durable *durable;	/* the state directory's group-commit writer (vm-store.c) */
	struct worker *worker;		/* parses large request lines off the loop (rpc.c) */

	struct vm **vms;		/* sorted by name */
	size_t nvms, vms_cap;
	size_t vms_alive;		/* listed or not; vm_new keeps each a place */

	/* One per registry row (backend.h), in the registry's order. */
	struct backend_env backend_env;
	struct backend *backends[BACKENDS_MAX];
	struct backend_info backend_info[BACKENDS_MAX];
	size_t nbackends;
	struct child_call *probes[BACKENDS_MAX];	/* re-probes under way */

	struct event *ev_sigterm, *ev_sigint, *ev_sighup;
	struct event *ev_housekeeping;	/* vm.c's periodic chores */
	struct vm *reap_list;		/* removed VMs vm.c frees from the loop */
	struct event *ev_reap;
	struct notify *notify;		/* the service manager's channel (notify.c) */
	struct metrics_http *metrics_http;	/* metrics.listen, or NULL */
	struct metrics_lag_timer *lag_timer;	/* ember_event_loop_lag_seconds */
	struct events *events;		/* the event stream (events.c) */
	bool shutting_down;
	bool upgrading;			/* draining before re-executing (upgrade.c) */
	struct daemon_grace {		/* the drain's deadline (daemon_grace_start) */
		struct event *ev;	/* made by daemon_new */
		int grace_s, flush_s;
		bool answered;		/* grace_s passed: waiters were failed */
		const char *what;	/* "shutdown", "upgrade" */
		void (*expired)(struct ember_daemon *);
	} grace;
};

/* What daemon_new() takes (the strings and config are taken: the
 * daemon frees them). */
struct daemon_options {
	struct ember_config config;
	char *config_path;		/* NULL: running on defaults */
	char *state_dir;		/* absolute, exists */
	char *socket_path;
	int listen_fd;			/* inherited control socket, or -1 */
	/* Fills d->backends once the event base exists. */
	void (*install_backends)(struct ember_daemon *d);
};

/* Locks the state directory, loads and repairs state, binds the control
 * socket: a daemon ready to run, or NULL with err. */
struct ember_daemon *daemon_new(struct daemon_options *opts, struct ember_error *err);
/* Serves until SIGTERM/SIGINT. Then no new request is read; those in
 * flight get a grace period to finish, after which whatever still waits
 * (operations, agent waits, exec, cp) is answered with an error; the loop
 * ends once every answer is sent. 0, or -1 when the loop failed. */
int daemon_run(struct ember_daemon *d);
/* Bounds a drain (SIGTERM's, an upgrade's): requests still in flight
 * grace_s from now are answered with an error (vms_fail_pending), the
 * answers get flush_s to go out, then expired() runs whether they did or
 * not. A drain that ends sooner calls daemon_grace_stop. Starting one
 * replaces the one under way (a SIGTERM during an upgrade's drain). */
void daemon_grace_start(struct ember_daemon *d, int grace_s, int flush_s, const char *what,
    void (*expired)(struct ember_daemon *));
void daemon_grace_stop(struct ember_daemon *d);
/* Answers whatever still waits, detaches from running VMs (they keep
 * running, to be adopted), then frees every subsystem. NULL is a no-op. */
void daemon_free(struct ember_daemon *d);

/* "N VMs running, M CIDs in use", for STATUS= (notify_status_fn). */
void daemon_status_line(void *ctx, char *buf, size_t len);
/* Tells the service manager (sd_notify STATUS=) what changed: VMs running,
 * CIDs in use. A no-op outside systemd. */
void daemon_status_changed(struct ember_daemon *d);
/* Makes one backend per registry row (a row that cannot be made, out of
 * memory, is left out with a warning). */
void daemon_backends_new(struct ember_daemon *d);
void daemon_backends_free(struct ember_daemon *d);
/* Probes every backend before the loop serves (startup). */
void daemon_probe_backends(struct ember_daemon *d);
/* Re-probes every backend in child processes (SIGHUP): the loop keeps
 * serving, and each backend's info changes when its probe completes. */
void daemon_reprobe_backends(struct ember_daemon *d);
/* Backend by registry name, or NULL. */
struct backend *daemon_backend(struct ember_daemon *d, const char *name,
    const struct backend_info **info);

#endif
