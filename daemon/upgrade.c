/*
 * emberd re-executing itself (see upgrade.h). The order matters: state is
 * already on disk (records at every change, each vsock device's
 * vsock-dev.json at every negotiation step), so the exec itself only has
 * to lay out the fds and keep the service manager informed (RELOADING=1
 * now, READY=1 from the successor). Once the fds are moved there is no
 * way back: a failed execv is fatal, and a service manager restarts emberd
 * with its fd store, which holds the same fds.
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
#include "fd-keep.h"
#include "log.h"
#include "notify.h"
#include "upgrade.h"

#define UPGRADE_DELAY_MS 200
/* A vhost-user exchange in progress delays the exec by this much, this
 * many times at most (QEMU answers within microseconds). */
#define UPGRADE_RETRY_MS 10
#define UPGRADE_RETRIES 300
#define DELETED_SUFFIX " (deleted)"

static char **saved_argv;
static struct notify *saved_fdstore;
static struct event *ev_upgrade, *ev_sigusr2;
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

static void
on_upgrade(evutil_socket_t fd, short what, void *arg)
{
	struct ember_daemon *d = arg;
	char path[PATH_MAX];
	int r, cfd;

	if ((r = own_binary(path, sizeof(path))) < 0) {
		log_warnx("upgrade: cannot find our binary: %s; not upgrading", strerror(-r));
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
		retries = 0;
		return;
	}
	retries = 0;
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
		return;
	}
	execv(path, saved_argv);
	fatal("upgrade: execv %s", path);
}

int
daemon_upgrade_schedule(struct ember_daemon *d, struct ember_error *err)
{
	struct timeval tv = { 0, UPGRADE_DELAY_MS * 1000 };
	char path[PATH_MAX];
	int r;

	if (saved_argv == NULL)
		return ember_error_set(err, EK_INTERNAL, NULL, "upgrade is not set up");
	if (d->shutting_down)
		return ember_error_set(err, EK_BUSY, NULL, "emberd is shutting down");
	if ((r = own_binary(path, sizeof(path))) < 0)
		return ember_error_set(err, EK_IO, "reinstall emberd",
		    "cannot execute emberd's binary %s: %s", path, strerror(-r));
	if (ev_upgrade == NULL && (ev_upgrade = evtimer_new(d->base, on_upgrade, d)) == NULL)
		return ember_error_set(err, EK_INTERNAL, NULL, "out of memory");
	evtimer_add(ev_upgrade, &tv);
	log_info("upgrade: re-executing %s in %d ms", path, UPGRADE_DELAY_MS);
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
	if (ev_upgrade != NULL)
		event_free(ev_upgrade);
	if (ev_sigusr2 != NULL)
		event_free(ev_sigusr2);
	ev_upgrade = ev_sigusr2 = NULL;
}
