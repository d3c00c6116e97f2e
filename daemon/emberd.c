/*
 * emberd: the ember daemon's main(). Parses flags and the config file,
 * settles the state directory and socket paths, names the backends, then
 * daemon_new / daemon_run / daemon_free (daemon.c) do the rest.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "daemon.h"
#include "fd-keep.h"
#include "fsutil.h"
#include "log.h"
#include "notify.h"
#include "upgrade.h"
#include "validate.h"

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

static char *
dirname_dup(const char *path)
{
	char *dir = strdup(path), *slash;

	if (dir != NULL && (slash = strrchr(dir, '/')) != NULL)
		*(slash == dir ? slash + 1 : slash) = '\0';
	return dir;
}

/* The hypervisor backends emberd offers (daemon_new calls this once the
 * event base exists). */
static void
install_backends(struct ember_daemon *d)
{
	daemon_backends_new(d);
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
	struct daemon_options o = { .listen_fd = -1, .install_backends = install_backends };
	const char *opt_state = NULL, *opt_socket = NULL, *opt_level = NULL;
	char *def_state = NULL, *def_socket = NULL;
	struct ember_error err = { 0 };
	struct ember_daemon *d;
	struct notify *fdstore = NULL;
	int c, level = LOG_LEVEL_INFO, r;
	size_t dropped;

	log_init("emberd", LOG_LEVEL_INFO);
	/* Before any configuration is parsed: backends own their subtrees. */
	if (backend_types_register_config() < 0)
		fatalx("the backend registry does not fit the configuration");
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 's': opt_state = optarg; break;
		case 'S': opt_socket = optarg; break;
		case 'c': free(o.config_path); o.config_path = strdup(optarg); break;
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

	ember_config_init(&o.config);
	if (o.config_path == NULL && geteuid() == 0 && access(EMBER_CONFIG_FILE, R_OK) == 0)
		o.config_path = strdup(EMBER_CONFIG_FILE);
	if (o.config_path != NULL && ember_config_load(o.config_path, &o.config, &err) < 0) {
		log_warnx("%s", err.message);
		return 1;
	}
	if (o.config.log_level >= 0)
		level = o.config.log_level;
	if (opt_level != NULL && (level = log_level_parse(opt_level)) < 0) {
		log_warnx("unknown log level \"%s\" (use error, warn, info or debug)", opt_level);
		return 2;
	}
	log_set_level((enum log_level)level);

	/* The fd store's channel first: VMs adopted in daemon_new may
	 * already need it. */
	fdstore = notify_fdstore_new();
	if (fdstore != NULL) {
		struct fd_keep_sink sink = { notify_store_fd, notify_remove_fd, fdstore };

		fd_keep_set_sink(&sink);
	}
	upgrade_init(argv, fdstore);
	/* Before anything is spawned: the passed fds become close-on-exec;
	 * a vsock device's go to fd-keep for its VM's adoption. */
	o.listen_fd = notify_take_fds(&err);
	if (o.listen_fd < 0 && ember_error_is_set(&err)) {
		log_warnx("%s — %s", err.message, err.hint);
		return 1;
	}

	default_paths(&def_state, &def_socket);
	o.state_dir = strdup(opt_state ? opt_state : o.config.state_dir ? o.config.state_dir : def_state);
	o.socket_path = strdup(opt_socket ? opt_socket : o.config.socket ? o.config.socket : def_socket);
	free(def_state);
	free(def_socket);
	if (o.listen_fd >= 0) {	/* report the socket we really serve */
		char *inherited = notify_socket_path(o.listen_fd);
		if (inherited != NULL) {
			free(o.socket_path);
			o.socket_path = inherited;
		}
	}
	if (socket_path_check(o.socket_path, sun_path_limit(), &err) < 0) {
		log_warnx("%s", err.message);
		return 1;
	}

	char *sockdir = dirname_dup(o.socket_path);
	if (mkdir_p(o.state_dir, 0750) < 0 || mkdir_p(sockdir, 0755) < 0) {
		log_warn("cannot create %s or %s", o.state_dir, sockdir);
		free(sockdir);
		return 1;
	}
	free(sockdir);
	/* Absolute paths: records and sockets must not depend on our cwd. */
	char real[PATH_MAX];
	if (realpath(o.state_dir, real) != NULL) {
		free(o.state_dir);
		o.state_dir = strdup(real);
	}

	d = daemon_new(&o, &err);
	if (d == NULL) {
		log_warnx("%s%s%s", err.message, err.hint[0] ? " — " : "", err.hint);
		return 1;
	}
	if (notify_fdstore_attach(fdstore, d->base) < 0)
		log_warnx("fd store updates will block the loop: out of memory");
	/* Every VM that could claim its fds has: the rest are stale. */
	if ((dropped = fd_keep_drop_unclaimed()) > 0)
		log_info("closed %zu handed-over fds no running VM claimed", dropped);
	if (upgrade_signal_install(d) < 0)
		log_warnx("cannot watch SIGUSR2; emberctl daemon upgrade still works");
	r = daemon_run(d);
	upgrade_free();
	/* Before the base goes: removals of VMs freed now are sent blocking. */
	notify_fdstore_flush(fdstore);
	daemon_free(d);
	notify_fdstore_flush(fdstore);
	fd_keep_set_sink(NULL);
	notify_free(fdstore);
	if (r == 0)
		log_info("exited cleanly");
	return r == 0 ? 0 : 1;
}
