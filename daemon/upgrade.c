/*
 * emberd re-executing itself (see upgrade.h). First it drains like a
 * shutdown, but keeps its listening socket: no new request is read, the
 * requests in flight are answered (those still waiting after
 * UPGRADE_GRACE_S get "emberd is upgrading"), subscribers get
 * daemon.shutdown with reason "upgrade", and clients connecting meanwhile
 * wait in the socket's backlog for the successor. Then the durable writer
 * is flushed. State is already on disk (records at every change, each
 * vsock device's vsock-dev.json at every negotiation step), so the exec
 * itself only has to lay out the fds and keep the service manager
 * informed (RELOADING=1 now, READY=1 from the successor). Once the fds are
 * moved there is no way back: a failed execv is fatal, and a service
 * manager restarts emberd with its fd store, which holds the same fds.
 * Before that point, a failure resumes serving.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "control.h"
#include "daemon.h"
#include "durable.h"
#include "events.h"
#include "fd-keep.h"
#include "log.h"
#include "notify.h"
#include "upgrade.h"
#include "vm.h"

/* Requests in flight this long after an upgrade began are answered with
 * an error (an agent wait, an exec, a copy may take any time). */
#define UPGRADE_GRACE_S 10
/* And their answers get this long to be sent before the exec goes on. */
#define UPGRADE_FLUSH_S 5
/* A vhost-user exchange in progress delays the exec by this much, this
 * many times at most (QEMU answers within microseconds). */
#define UPGRADE_RETRY_MS 10
#define UPGRADE_RETRIES 300
#define DELETED_SUFFIX " (deleted)"

static char **saved_argv;
static struct notify *saved_fdstore;
static struct event *ev_begin, *ev_upgrade, *ev_sigusr2;
static int retries;

void
upgrade_init(char **argv, struct notify *fdstore)
{
	saved_argv = argv;
	saved_fdstore = fdstore;
}

/* The path our binary was started from; a replaced binary reads as
 * "<path> (deleted)", and the file now at <path> is the new one. */
static int
own_binary(char *buf, size_t len)
{
	ssize_t n = readlink("/proc/self/exe", buf, len - 1);
	size_t sl = strlen(DELETED_SUFFIX);

	if (n < 0)
		return -errno;
	buf[n] = '\0';
	if ((size_t)n > sl && strcmp(buf + n - sl, DELETED_SUFFIX) == 0)
		buf[n - sl] = '\0';
	return access(buf, X_OK) == 0 ? 0 : -errno;
}

/* Drained or not, the upgrade is off: serve again. */
static void
upgrade_abandon(struct ember_daemon *d)
{
	d->upgrading = false;
	retries = 0;
	if (!d->shutting_down) {	/* else the grace is shutdown's */
		daemon_grace_stop(d);
		control_undrain(d->control);
	}
}

/* Every request is answered and its connection gone: re-execute. */
static void
on_upgrade(evutil_socket_t fd, short what, void *arg)
{
	struct ember_daemon *d = arg;
	char path[PATH_MAX];
	int r, cfd;

	(void)fd;
	(void)what;
	if (d->shutting_down)
		return;	/* a SIGTERM came meanwhile: exiting instead */
	if ((r = own_binary(path, sizeof(path))) < 0) {
		log_warnx("upgrade: cannot find our binary: %s; not upgrading", strerror(-r));
		upgrade_abandon(d);
		return;
	}
	if (fd_keep_busy()) {
		struct timeval tv = { 0, UPGRADE_RETRY_MS * 1000 };

		if (++retries <= UPGRADE_RETRIES) {
			evtimer_add(ev_upgrade, &tv);
			return;
		}
		log_warnx("upgrade: a vhost-user exchange is still under way after %d ms; "
		    "not upgrading (try again)", UPGRADE_RETRY_MS * UPGRADE_RETRIES);
		upgrade_abandon(d);
		return;
	}
	retries = 0;
	/* What the writer still holds (a VM's exit recorded, say) is written
	 * before the successor reads the state directory. */
	if (d->durable != NULL)
		durable_flush(d->durable);
	if ((cfd = control_listen_fd(d->control)) >= 0)
		fd_keep_hold("control", cfd, true);
	log_info("upgrade: executing %s with %zu fds handed over", path, fd_keep_held_count());
	notify_reloading(d->notify);
	/* What the manager has not taken yet would be lost with us. */
	notify_fdstore_flush(saved_fdstore);
	notify_export_env(saved_fdstore);
	if ((r = fd_keep_prepare_exec()) < 0) {
		log_warnx("upgrade: cannot hand the fds over: %s; not upgrading", strerror(-r));
		unsetenv("NOTIFY_SOCKET");
		unsetenv("WATCHDOG_USEC");
		unsetenv("WATCHDOG_PID");
		fd_keep_forget("control");
		notify_fdstore_attach(saved_fdstore, d->base);
		notify_ready(d->notify);
		upgrade_abandon(d);
		return;
	}
	execv(path, saved_argv);
	fatal("upgrade: execv %s", path);
}

void
upgrade_drained(struct ember_daemon *d)
{
	struct timeval now = { 0, 0 };

	log_info("upgrade: all requests answered");
	daemon_grace_stop(d);
	evtimer_add(ev_upgrade, &now);
}

/* Starts the drain (from a timer: the daemon.upgrade call that asked is
 * still in its handler). */
static void
on_begin(evutil_socket_t fd, short what, void *arg)
{
	struct ember_daemon *d = arg;

	(void)fd;
	(void)what;
	if (d->shutting_down)
		return;
	log_info("upgrade: no longer reading requests; answering those in flight");
	events_emit(d->events, EVENT_DAEMON_SHUTDOWN, NULL, EVENTS_NO_OWNER,
	    json_pack("{s:s}", "reason", "upgrade"));
	events_flush(d->events);	/* before the drain closes idle subscribers */
	daemon_grace_start(d, UPGRADE_GRACE_S, UPGRADE_FLUSH_S, "upgrade", upgrade_drained);
	control_drain_keep_listener(d->control);
}

int
daemon_upgrade_schedule(struct ember_daemon *d, struct ember_error *err)
{
	struct timeval now = { 0, 0 };
	char path[PATH_MAX];
	int r;

	if (saved_argv == NULL)
		return ember_error_set(err, EK_INTERNAL, NULL, "upgrade is not set up");
	if (d->shutting_down)
		return ember_error_set(err, EK_BUSY, NULL, "emberd is shutting down");
	if (d->upgrading)
		return ember_error_set(err, EK_BUSY, NULL, "an upgrade is already under way");
	if ((r = own_binary(path, sizeof(path))) < 0)
		return ember_error_set(err, EK_IO, "reinstall emberd",
		    "cannot execute emberd's binary %s: %s", path, strerror(-r));
	if (ev_upgrade == NULL && (ev_upgrade = evtimer_new(d->base, on_upgrade, d)) == NULL)
		return ember_error_set(err, EK_INTERNAL, NULL, "out of memory");
	if (ev_begin == NULL && (ev_begin = evtimer_new(d->base, on_begin, d)) == NULL)
		return ember_error_set(err, EK_INTERNAL, NULL, "out of memory");
	d->upgrading = true;
	evtimer_add(ev_begin, &now);
	log_info("upgrade: re-executing %s once the requests in flight are answered", path);
	return 0;
}

static void
on_sigusr2(evutil_socket_t sig, short what, void *arg)
{
	struct ember_error err = { 0 };

	if (daemon_upgrade_schedule(arg, &err) < 0)
		log_warnx("SIGUSR2: %s", err.message);
}

int
upgrade_signal_install(struct ember_daemon *d)
{
	ev_sigusr2 = evsignal_new(d->base, SIGUSR2, on_sigusr2, d);
	if (ev_sigusr2 == NULL || evsignal_add(ev_sigusr2, NULL) < 0)
		return -ENOMEM;
	return 0;
}

void
upgrade_free(void)
{
	if (ev_begin != NULL)
		event_free(ev_begin);
	if (ev_upgrade != NULL)
		event_free(ev_upgrade);
	if (ev_sigusr2 != NULL)
		event_free(ev_sigusr2);
	ev_begin = ev_upgrade = ev_sigusr2 = NULL;
}
