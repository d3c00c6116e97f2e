/*
 * emberd: the ember daemon. Parses flags and the config file, takes the
 * state directory's lock, loads and repairs state, binds the control socket
 * and runs the event loop. Everything else lives in the subsystems that
 * struct ember_daemon wires together.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "cid-alloc.h"
#include "config.h"
#include "control.h"
#include "daemon.h"
#include "fsutil.h"
#include "image.h"
#include "log.h"
#include "notify.h"
#include "quota.h"
#include "rpc.h"
#include "validate.h"
#include "vm.h"

#define SHUTDOWN_GRACE_S 30

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: emberd [--state-dir DIR] [--socket PATH] [--config FILE]\n"
	    "              [--log-level error|warn|info|debug]\n"
	    "       emberd --check-config FILE\n"
	    "       emberd --version\n");
}

/* Default state directory and socket for this user (see README). */
static void
default_paths(char **state_dir, char **socket_path)
{
	const char *xdg_state = getenv("XDG_STATE_HOME");
	const char *xdg_run = getenv("XDG_RUNTIME_DIR");
	const char *home = getenv("HOME");
	char buf[PATH_MAX], rundir[PATH_MAX];
	struct stat st;

	if (geteuid() == 0) {
		*state_dir = strdup("/var/lib/ember");
		*socket_path = strdup("/run/ember/emberd.sock");
		return;
	}
	if (xdg_state != NULL && xdg_state[0] == '/')
		snprintf(buf, sizeof(buf), "%s/ember", xdg_state);
	else if (home != NULL && home[0] == '/')
		snprintf(buf, sizeof(buf), "%s/.local/state/ember", home);
	else
		snprintf(buf, sizeof(buf), "/tmp/ember-%u/state", (unsigned)getuid());
	*state_dir = strdup(buf);

	snprintf(rundir, sizeof(rundir), "/run/user/%u", (unsigned)getuid());
	if (xdg_run != NULL && xdg_run[0] == '/')
		snprintf(buf, sizeof(buf), "%s/ember/emberd.sock", xdg_run);
	else if (stat(rundir, &st) == 0 && S_ISDIR(st.st_mode))
		snprintf(buf, sizeof(buf), "%s/ember/emberd.sock", rundir);
	else
		snprintf(buf, sizeof(buf), "/tmp/ember-%u/emberd.sock", (unsigned)getuid());
	*socket_path = strdup(buf);
}

static int
take_lock(struct ember_daemon *d)
{
	char path[PATH_MAX], pid[32];
	int fd;

	snprintf(path, sizeof(path), "%s/emberd.lock", d->state_dir);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0) {
		log_warn("cannot open lock file %s", path);
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		ssize_t n = pread(fd, pid, sizeof(pid) - 1, 0);
		pid[n > 0 ? n : 0] = '\0';
		pid[strcspn(pid, "\n")] = '\0';
		log_warnx("another emberd%s%s%s is already using state directory %s; "
		    "stop it or choose another --state-dir", pid[0] ? " (pid " : "", pid,
		    pid[0] ? ")" : "", d->state_dir);
		close(fd);
		return -1;
	}
	if (ftruncate(fd, 0) == 0) {
		int n = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
		if (pwrite(fd, pid, (size_t)n, 0) != n)
			log_warn("cannot write pid to %s", path);
	}
	d->lock_fd = fd;
	return 0;
}

static void
raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			log_debug("cannot raise the open file limit");
	}
}



/* ---- control socket callbacks ---- */

static void
on_line(void *ctx, const struct control_peer *peer, const char *line, size_t len)
{
	rpc_handle_line(ctx, peer, line, len);
}

static char *
on_oversize(void *ctx, const struct control_peer *peer, size_t *len)
{
	return rpc_oversize_reply(len);
}

static size_t
on_user_connection_limit(void *ctx, uid_t uid)
{
	return quota_connection_limit(ctx, uid);
}

static char *
on_refused(void *ctx, const struct control_peer *peer, const char *limit, size_t use,
    size_t max, size_t *len)
{
	return rpc_refused_reply(peer->uid, limit, use, max, len);
}

/* The config's limits section, applied to the transport. */
static void
apply_limits(struct ember_daemon *d)
{
	struct control_limits lim = {
		.max_connections = d->config.max_connections,
		.reply_high_water = (size_t)d->config.reply_high_water,
	};

	log_debug("control: at most %zu connections", control_set_limits(d->control, &lim));
}

static void
on_drained(void *ctx)
{
	struct ember_daemon *d = ctx;

	log_info("all requests answered; exiting");
	event_base_loopexit(d->base, NULL);
}

/* ---- signals ---- */

static void
on_shutdown_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct ember_daemon *d = arg;

	log_warnx("requests still in flight after %d s; exiting anyway", SHUTDOWN_GRACE_S);
	event_base_loopexit(d->base, NULL);
}

static void
on_terminate(evutil_socket_t sig, short what, void *arg)
{
	struct ember_daemon *d = arg;
	struct timeval grace = { SHUTDOWN_GRACE_S, 0 };

	if (d->shutting_down)
		return;
	d->shutting_down = true;
	log_info("%s: no longer accepting requests; answering those in flight",
	    strsignal((int)sig));
	notify_stopping(d->notify, "stopping: answering requests in flight");
	d->ev_shutdown_deadline = evtimer_new(d->base, on_shutdown_deadline, d);
	evtimer_add(d->ev_shutdown_deadline, &grace);
	control_drain(d->control);
}

static void
reload_config(struct ember_daemon *d)
{
	struct ember_config cfg;
	struct ember_error err = { 0 };

	if (d->config_path == NULL) {
		log_info("SIGHUP: no config file; re-probing backends");
		daemon_probe_backends(d);
		return;
	}
	ember_config_init(&cfg);
	if (ember_config_load(d->config_path, &cfg, &err) < 0) {
		log_warnx("SIGHUP: keeping the old configuration: %s", err.message);
		ember_config_clear(&cfg);
		return;
	}
	if (cfg.cid_min != d->config.cid_min || cfg.cid_max != d->config.cid_max)
		log_warnx("SIGHUP: cid_min/cid_max changes take effect at the next start");
	if (cfg.log_level >= 0)
		log_set_level((enum log_level)cfg.log_level);
	/* state_dir and socket stay as they are until a restart. */
	ember_config_clear(&d->config);
	d->config = cfg;
	apply_limits(d);
	log_info("SIGHUP: configuration reloaded from %s", d->config_path);
	daemon_probe_backends(d);
}

static void
on_reload(evutil_socket_t sig, short what, void *arg)
{
	struct ember_daemon *d = arg;

	notify_reloading(d->notify);
	reload_config(d);
	notify_ready(d->notify);
}



static int
check_config(const char *path)
{
	struct ember_config cfg;
	struct ember_error err = { 0 };
	int r;

	ember_config_init(&cfg);
	r = ember_config_load(path, &cfg, &err);
	if (r < 0)
		fprintf(stderr, "%s\n", err.message);
	else
		printf("%s: ok\n", path);
	ember_config_clear(&cfg);
	return r < 0 ? 1 : 0;
}

static gid_t
socket_group(const struct ember_config *cfg)
{
	struct group *gr;

	if (cfg->socket_group == NULL)
		return (gid_t)-1;
	gr = getgrnam(cfg->socket_group);
	if (gr == NULL) {
		log_warnx("socket_group \"%s\" does not exist; the socket keeps emberd's group",
		    cfg->socket_group);
		return (gid_t)-1;
	}
	return gr->gr_gid;
}

static char *
dirname_dup(const char *path)
{
	char *dir = strdup(path), *slash;

	if (dir != NULL && (slash = strrchr(dir, '/')) != NULL)
		*(slash == dir ? slash + 1 : slash) = '\0';
	return dir;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "state-dir", required_argument, NULL, 's' },
		{ "socket", required_argument, NULL, 'S' },
		{ "config", required_argument, NULL, 'c' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "check-config", required_argument, NULL, 'C' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct ember_daemon daemon = { .lock_fd = -1 }, *d = &daemon;
	const char *opt_state = NULL, *opt_socket = NULL, *opt_level = NULL;
	char *def_state = NULL, *def_socket = NULL;
	struct ember_error err = { 0 };
	struct control_callbacks cb = { on_line, on_oversize, on_drained,
	    on_user_connection_limit, on_refused };
	int c, level = LOG_LEVEL_INFO, listen_fd;

	log_init("emberd", LOG_LEVEL_INFO);
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 's': opt_state = optarg; break;
		case 'S': opt_socket = optarg; break;
		case 'c': d->config_path = strdup(optarg); break;
		case 'l': opt_level = optarg; break;
		case 'C': return check_config(optarg);
		case 'V': printf("emberd %s (api 1)\n", EMBER_VERSION); return 0;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}

	ember_config_init(&d->config);
	if (d->config_path == NULL && geteuid() == 0 && access(EMBER_CONFIG_FILE, R_OK) == 0)
		d->config_path = strdup(EMBER_CONFIG_FILE);
	if (d->config_path != NULL && ember_config_load(d->config_path, &d->config, &err) < 0) {
		log_warnx("%s", err.message);
		return 1;
	}
	if (d->config.log_level >= 0)
		level = d->config.log_level;
	if (opt_level != NULL && (level = log_level_parse(opt_level)) < 0) {
		log_warnx("unknown log level \"%s\" (use error, warn, info or debug)", opt_level);
		return 2;
	}
	log_set_level((enum log_level)level);

	/* Before anything is spawned: the passed fds become close-on-exec. */
	listen_fd = notify_listen_fd(&err);
	if (listen_fd < 0 && ember_error_is_set(&err)) {
		log_warnx("%s — %s", err.message, err.hint);
		return 1;
	}

	default_paths(&def_state, &def_socket);
	d->state_dir = strdup(opt_state ? opt_state : d->config.state_dir ? d->config.state_dir : def_state);
	d->socket_path = strdup(opt_socket ? opt_socket : d->config.socket ? d->config.socket : def_socket);
	free(def_state);
	free(def_socket);
	if (listen_fd >= 0) {	/* report the socket we really serve */
		char *inherited = notify_socket_path(listen_fd);
		if (inherited != NULL) {
			free(d->socket_path);
			d->socket_path = inherited;
		}
	}
	if (socket_path_check(d->socket_path, sun_path_limit(), &err) < 0) {
		log_warnx("%s", err.message);
		return 1;
	}

	char *sockdir = dirname_dup(d->socket_path);
	if (mkdir_p(d->state_dir, 0750) < 0 || mkdir_p(sockdir, 0755) < 0) {
		log_warn("cannot create %s or %s", d->state_dir, sockdir);
		free(sockdir);
		return 1;
	}
	free(sockdir);
	/* Absolute paths: records and sockets must not depend on our cwd. */
	char real[PATH_MAX];
	if (realpath(d->state_dir, real) != NULL) {
		free(d->state_dir);
		d->state_dir = strdup(real);
	}
	if (take_lock(d) < 0)
		return 1;

	signal(SIGPIPE, SIG_IGN);
	raise_fd_limit();
	event_set_log_callback(NULL);
	d->base = event_base_new();
	if (d->base == NULL)
		fatalx("cannot create the event base");
	d->notify = notify_new(d->base, daemon_status_line, d);

	d->cids = cid_alloc_new(d->config.cid_min, d->config.cid_max);
	if (d->cids == NULL) {
		log_warnx("invalid CID range [%u, %u]", d->config.cid_min, d->config.cid_max);
		return 1;
	}
	d->backend_env = (struct backend_env){
		.base = d->base, .config = &d->config, .state_dir = d->state_dir,
		.host = &vm_backend_host,
	};
	d->backends[BACKEND_FIRECRACKER] = backend_firecracker_new(&d->backend_env);
	d->backends[BACKEND_QEMU] = backend_qemu_new(&d->backend_env);
	daemon_probe_backends(d);

	images_cleanup(d);
	if (vms_load(d, &err) < 0) {
		log_warnx("%s", err.message);
		return 1;
	}
	vms_housekeeping_start(d);
	d->control = control_new(d->base, d->socket_path, listen_fd, socket_group(&d->config), &cb,
	    d, &err);
	if (d->control == NULL) {
		log_warnx("%s%s%s", err.message, err.hint[0] ? " — " : "", err.hint);
		return 1;
	}
	apply_limits(d);

	d->ev_sigterm = evsignal_new(d->base, SIGTERM, on_terminate, d);
	d->ev_sigint = evsignal_new(d->base, SIGINT, on_terminate, d);
	d->ev_sighup = evsignal_new(d->base, SIGHUP, on_reload, d);
	evsignal_add(d->ev_sigterm, NULL);
	evsignal_add(d->ev_sigint, NULL);
	evsignal_add(d->ev_sighup, NULL);

	if (listen_fd >= 0)
		log_info("using the control socket inherited from the service manager "
		    "(socket activation, fd %d)", listen_fd);
	log_info("emberd %s serving %s (state %s, pid %d)", EMBER_VERSION, d->socket_path,
	    d->state_dir, (int)getpid());
	notify_ready(d->notify);
	event_base_dispatch(d->base);

	/* State is persisted at every change; write the CID table once more so
	 * a clean exit always leaves it current. */
	ember_error_clear(&err);
	if (cids_save(d, &err) < 0)
		log_warnx("%s", err.message);
	control_free(d->control);
	vms_detach_all(d);
	notify_free(d->notify);
	for (int i = 0; i < BACKEND__COUNT; i++)
		if (d->backends[i] != NULL)
			d->backends[i]->free(d->backends[i]);
	event_free(d->ev_sigterm);
	event_free(d->ev_sigint);
	event_free(d->ev_sighup);
	if (d->ev_shutdown_deadline != NULL)
		event_free(d->ev_shutdown_deadline);
	if (d->ev_housekeeping != NULL)
		event_free(d->ev_housekeeping);
	cid_alloc_free(d->cids);
	event_base_free(d->base);
	ember_config_clear(&d->config);
	free(d->state_dir);
	free(d->socket_path);
	free(d->config_path);
	close(d->lock_fd);
	log_info("exited cleanly");
	return 0;
}
