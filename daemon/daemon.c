/*
 * The daemon's lifetime and the services its subsystems share.
 * daemon_new() builds every subsystem in order (lock, event base, backends,
 * state, transport, signals), daemon_run() serves until SIGTERM/SIGINT has
 * answered every request, daemon_free() tears down in the reverse order:
 * whatever still waits on a VM is answered before the transport goes, and
 * VMs are released before anything they call into. It also holds the
 * backend table and what emberd tells the service manager about itself.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <unistd.h>

#include <event2/event.h>

#include "caller-open.h"
#include "child.h"
#include "cid-alloc.h"
#include "control.h"
#include "daemon.h"
#include "events.h"
#include "image.h"
#include "log.h"
#include "metrics.h"
#include "metrics-http.h"
#include "notify.h"
#include "quota.h"
#include "rpc.h"
#include "upgrade.h"
#include "vm.h"
#include "vm-cgroup.h"
#include "worker.h"

#define SHUTDOWN_GRACE_S 30
#define SHUTDOWN_FLUSH_S 5

/* ---- backends: one per registry row ---- */

void
daemon_backends_new(struct ember_daemon *d)
{
	const struct backend_type *const *types;
	size_t n;

	types = backend_types(&n);
	for (size_t i = 0; i < n && i < BACKENDS_MAX; i++) {
		struct backend *be = types[i]->create(&d->backend_env);

		if (be == NULL) {
			log_warnx("backend %s: out of memory; it stays unavailable", types[i]->name);
			continue;
		}
		be->type = types[i];
		be->name = types[i]->name;
		be->info = &d->backend_info[d->nbackends];
		d->backends[d->nbackends++] = be;
	}
}

void
daemon_backends_free(struct ember_daemon *d)
{
	for (size_t i = 0; i < d->nbackends; i++) {
		child_call_cancel(d->probes[i]);
		d->probes[i] = NULL;
		d->backends[i]->free(d->backends[i]);
		d->backends[i] = NULL;
	}
	d->nbackends = 0;
}

static void
daemon_backend_probed(struct ember_daemon *d, size_t i, const struct backend_info *info)
{
	const char *name = d->backends[i]->name;

	d->backend_info[i] = *info;
	if (info->available && info->note[0])
		log_warnx("backend %s: %s (%s): %s", name, info->version, info->binary, info->note);
	else if (info->available)
		log_info("backend %s: %s (%s)", name, info->version, info->binary);
	else
		log_info("backend %s: unavailable: %s", name, info->reason);
}

void
daemon_probe_backends(struct ember_daemon *d)
{
	for (size_t i = 0; i < d->nbackends; i++) {
		struct backend_info info = { 0 };

		d->backends[i]->type->probe(&d->config, &info);
		daemon_backend_probed(d, i, &info);
	}
}

/* A re-probe runs in a forked child, reading the configuration as it was
 * at the fork, and writes its backend_info back. */
struct probe_job {
	struct ember_daemon *d;
	size_t index;
};

static struct probe_job probe_jobs[BACKENDS_MAX];

static void
probe_in_child(void *arg, void *out, size_t len)
{
	struct probe_job *job = arg;
	struct backend_info *info = out;

	job->d->backends[job->index]->type->probe(&job->d->config, info);
	info->version[sizeof(info->version) - 1] = '\0';
	info->binary[sizeof(info->binary) - 1] = '\0';
	info->helper[sizeof(info->helper) - 1] = '\0';
	info->reason[sizeof(info->reason) - 1] = '\0';
	info->note[sizeof(info->note) - 1] = '\0';
}

static void
probe_done(void *ctx, int status, const void *out, size_t len)
{
	struct probe_job *job = ctx;
	struct ember_daemon *d = job->d;
	struct backend_info info = { 0 };
	char how[128];

	d->probes[job->index] = NULL;
	if (len == sizeof(info) && status == 0) {
		memcpy(&info, out, sizeof(info));
	} else {
		/* Keep what the last probe found: a backend that ran a VM a
		 * moment ago does not vanish because a probe process died. */
		log_warnx("backend %s: re-probe failed (the probe process %s); keeping the last result",
		    d->backends[job->index]->name, child_status_text(status, how, sizeof(how)));
		return;
	}
	daemon_backend_probed(d, job->index, &info);
}

void
daemon_reprobe_backends(struct ember_daemon *d)
{
	for (size_t i = 0; i < d->nbackends; i++) {
		if (d->probes[i] != NULL) {
			/* The configuration may have changed since it started. */
			child_call_cancel(d->probes[i]);
			d->probes[i] = NULL;
		}
		probe_jobs[i] = (struct probe_job){ d, i };
		d->probes[i] = child_call_start(d->base, probe_in_child, &probe_jobs[i],
		    sizeof(struct backend_info), probe_done, &probe_jobs[i]);
		if (d->probes[i] == NULL)
			log_warn("backend %s: cannot re-probe; keeping the last result",
			    d->backends[i]->name);
	}
}

struct backend *
daemon_backend(struct ember_daemon *d, const char *name, const struct backend_info **info)
{
	for (size_t i = 0; i < d->nbackends; i++)
		if (strcmp(d->backends[i]->name, name) == 0) {
			if (info != NULL)
				*info = &d->backend_info[i];
			return d->backends[i];
		}
	if (info != NULL)
		*info = NULL;
	return NULL;
}

void
daemon_status_line(void *ctx, char *buf, size_t len)
{
	struct ember_daemon *d = ctx;
	size_t running = 0, cids = cid_alloc_count(d->cids);

	for (size_t i = 0; i < d->nvms; i++)
		if (d->vms[i]->rec.status == VM_RUNNING)
			running++;
	snprintf(buf, len, "%zu VM%s running, %zu CID%s in use", running,
	    running == 1 ? "" : "s", cids, cids == 1 ? "" : "s");
}

void
daemon_status_changed(struct ember_daemon *d)
{
	char line[128];

	if (d->notify == NULL || !notify_enabled(d->notify))
		return;
	daemon_status_line(d, line, sizeof(line));
	notify_send(d->notify, "STATUS=%s", line);
}

/* ---- lifetime ------------------------------------------------------------ */

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

static void
on_closed(void *ctx, uint64_t conn_id)
{
	struct ember_daemon *d = ctx;

	events_unsubscribe(d->events, conn_id);
}

static void
on_writable(void *ctx, uint64_t conn_id)
{
	struct ember_daemon *d = ctx;

	events_writable(d->events, conn_id);
}

/* events.c's sink: subscriber lines go out through the transport. */
static int
events_sink_send(void *ctx, uint64_t conn_id, const char *buf, size_t len)
{
	struct ember_daemon *d = ctx;

	return d->control != NULL ? control_send(d->control, conn_id, buf, len) : -ENOENT;
}

static long long
events_sink_pending(void *ctx, uint64_t conn_id)
{
	struct ember_daemon *d = ctx;

	return d->control != NULL ? control_pending_output(d->control, conn_id) : -ENOENT;
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

	if (d->upgrading && !d->shutting_down) {
		upgrade_drained(d);
		return;
	}
	log_info("all requests answered; exiting");
	event_base_loopexit(d->base, NULL);
}

/* ---- signals ---- */

/* The drain's grace ended (see daemon_grace_start). Nobody is left waiting
 * on what outlives the drain: operations, agent waits, exec and cp are
 * answered now, while the transport can send it; the operations
 * themselves are left to the hypervisors (adopted at the next start). */
static void
on_grace(evutil_socket_t fd, short what, void *arg)
{
	struct ember_daemon *d = arg;
	struct daemon_grace *g = &d->grace;
	struct timeval flush = { g->flush_s, 0 };

	(void)fd;
	(void)what;
	if (g->answered) {
		log_warnx("%s: answers still unsent %d s after failing the requests in flight; "
		    "going on", g->what, g->flush_s);
		g->expired(d);
		return;
	}
	log_warnx("%s: requests still in flight after %d s; answering them with an error",
	    g->what, g->grace_s);
	g->answered = true;
	vms_fail_pending(d);
	evtimer_add(g->ev, &flush);
}

void
daemon_grace_start(struct ember_daemon *d, int grace_s, int flush_s, const char *what,
    void (*expired)(struct ember_daemon *))
{
	struct daemon_grace *g = &d->grace;
	struct timeval tv = { grace_s, 0 };

	g->grace_s = grace_s;
	g->flush_s = flush_s;
	g->what = what;
	g->expired = expired;
	g->answered = false;
	evtimer_add(g->ev, &tv);
}

void
daemon_grace_stop(struct ember_daemon *d)
{
	evtimer_del(d->grace.ev);
	d->grace.answered = false;
}

static void
shutdown_expired(struct ember_daemon *d)
{
	event_base_loopexit(d->base, NULL);
}

static void
on_terminate(evutil_socket_t sig, short what, void *arg)
{
	struct ember_daemon *d = arg;

	if (d->shutting_down)
		return;
	d->shutting_down = true;
	log_info("%s: no longer accepting requests; answering those in flight",
	    strsignal((int)sig));
	notify_stopping(d->notify, "stopping: answering requests in flight");
	events_emit(d->events, EVENT_DAEMON_SHUTDOWN, NULL, EVENTS_NO_OWNER,
	    json_pack("{s:s}", "signal", sig == SIGINT ? "SIGINT" : "SIGTERM"));
	events_flush(d->events);	/* before the drain closes idle subscribers */
	daemon_grace_start(d, SHUTDOWN_GRACE_S, SHUTDOWN_FLUSH_S, "shutdown", shutdown_expired);
	/* A request still waiting for its client's paths to be opened has
	 * made nothing yet: answered now, its helper killed (caller-open.h). */
	struct ember_error why = { 0 };
	ember_error_set(&why, EK_BUSY, "retry once emberd has restarted",
	    "emberd is shutting down");
	caller_opens_fail(d->base, &why);
	/* What is in flight may finish within the grace period (a create
	 * --wait whose agent comes up); see on_grace. */
	control_drain(d->control);
}

/* SIGHUP's configuration load runs on the worker (worker.h): reading the
 * file and resolving quotas.users' names (getpwnam, which may ask LDAP)
 * must not hold the loop. One load at a time; a SIGHUP during one is
 * loaded again when it ends. */
struct reload_job {
	struct ember_daemon *d;
	char *path;
	struct ember_config cfg;
	struct ember_error err;
	int r;
};

static struct reload_job *reload_running;
static bool reload_again;

static void reload_begin(struct ember_daemon *d);

static void
reload_finish(struct ember_daemon *d)
{
	events_emit(d->events, EVENT_DAEMON_RELOAD, NULL, EVENTS_NO_OWNER,
	    json_pack("{s:b}", "config", d->config_path != NULL));
	notify_ready(d->notify);
}

/* Applies a loaded configuration (the loop's part of a reload). */
static void
reload_apply(struct ember_daemon *d, struct ember_config *cfg)
{
	if (cfg->cid_min != d->config.cid_min || cfg->cid_max != d->config.cid_max)
		log_warnx("SIGHUP: cid_min/cid_max changes take effect at the next start");
	if ((cfg->metrics_listen == NULL) != (d->config.metrics_listen == NULL) ||
	    (cfg->metrics_listen != NULL &&
	    strcmp(cfg->metrics_listen, d->config.metrics_listen) != 0))
		log_warnx("SIGHUP: metrics.listen changes take effect at the next start");
	if (cfg->log_level >= 0)
		log_set_level((enum log_level)cfg->log_level);
	/* state_dir and socket stay as they are until a restart. */
	ember_config_clear(&d->config);
	d->config = *cfg;
	ember_config_init(cfg);
	apply_limits(d);
	log_info("SIGHUP: configuration reloaded from %s", d->config_path);
}

static void
reload_work(void *arg)
{
	struct reload_job *job = arg;

	job->r = ember_config_load(job->path, &job->cfg, &job->err);
}

static void
reload_done(void *arg, bool cancelled)
{
	struct reload_job *job = arg;
	struct ember_daemon *d = job->d;

	reload_running = NULL;
	if (!cancelled) {
		if (job->r < 0)
			log_warnx("SIGHUP: keeping the old configuration: %s", job->err.message);
		else
			reload_apply(d, &job->cfg);
		daemon_reprobe_backends(d);
	}
	ember_config_clear(&job->cfg);
	free(job->path);
	free(job);
	if (cancelled) {
		reload_again = false;
		return;
	}
	if (reload_again) {
		reload_again = false;
		reload_begin(d);
		return;
	}
	reload_finish(d);
}

static void
reload_begin(struct ember_daemon *d)
{
	struct reload_job *job;

	if (d->config_path == NULL) {
		log_info("SIGHUP: no config file; re-probing backends");
		daemon_reprobe_backends(d);
		reload_finish(d);
		return;
	}
	if (reload_running != NULL) {
		reload_again = true;
		return;
	}
	if ((job = calloc(1, sizeof(*job))) == NULL || (job->path = strdup(d->config_path)) == NULL) {
		free(job);
		log_warnx("SIGHUP: out of memory; keeping the old configuration");
		reload_finish(d);
		return;
	}
	job->d = d;
	ember_config_init(&job->cfg);
	if (d->worker == NULL || worker_run(d->worker, reload_work, reload_done, job) < 0) {
		reload_work(job);	/* no worker (out of memory): here */
		reload_done(job, false);
		return;
	}
	reload_running = job;
}

static void
on_reload(evutil_socket_t sig, short what, void *arg)
{
	struct ember_daemon *d = arg;

	notify_reloading(d->notify);
	reload_begin(d);
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


/* Hypervisors an older emberd left in emberd's cgroup (it did not group
 * them) do not keep the group from being made: they are moved into it. */
static void
adopt_into_vm_cgroup(struct ember_daemon *d)
{
	pid_t *pids = d->nvms > 0 ? calloc(d->nvms, sizeof(*pids)) : NULL;
	size_t n = 0;

	for (size_t i = 0; pids != NULL && i < d->nvms; i++)
		if (d->vms[i]->rec.pid > 0)
			pids[n++] = d->vms[i]->rec.pid;
	if (vm_cgroup_adopt(pids, n) < 0)
		log_info("hypervisors run in emberd's own cgroup: %s", vm_cgroup_reason());
	free(pids);
}

struct ember_daemon *
daemon_new(struct daemon_options *o, struct ember_error *err)
{
	struct control_callbacks cb = { on_line, on_oversize, on_drained,
	    on_user_connection_limit, on_refused, on_closed, on_writable };
	struct ember_daemon *d = calloc(1, sizeof(*d));

	if (d == NULL) {
		ember_error_set(err, EK_INTERNAL, NULL, "out of memory");
		return NULL;
	}
	d->lock_fd = -1;
	d->config = o->config;
	ember_config_init(&o->config);
	d->config_path = o->config_path;
	d->state_dir = o->state_dir;
	d->socket_path = o->socket_path;
	o->config_path = o->state_dir = o->socket_path = NULL;
	if (take_lock(d) < 0) {
		ember_error_set(err, EK_BUSY, NULL, "cannot lock the state directory %s",
		    d->state_dir);
		goto fail;
	}
	signal(SIGPIPE, SIG_IGN);
	raise_fd_limit();
	(void)vm_cgroup_init();	/* vm_cgroup_adopt says how it ends, once VMs are loaded */
	event_set_log_callback(NULL);
	if ((d->base = event_base_new()) == NULL) {
		ember_error_set(err, EK_INTERNAL, NULL, "cannot create the event loop");
		goto fail;
	}
	d->notify = notify_new(d->base, daemon_status_line, d);
	{
		struct events_limits elim = { .ring_events = d->config.events_ring };
		struct events_sink sink = { events_sink_send, events_sink_pending, d };
		if ((d->events = events_new(d->base, &elim, &sink)) == NULL) {
			ember_error_set(err, EK_INTERNAL, NULL, "out of memory for the event log");
			goto fail;
		}
	}

	if ((d->worker = worker_new(d->base, err)) == NULL)
		goto fail;
	d->cids = cid_alloc_new(d->config.cid_min, d->config.cid_max);
	if (d->cids == NULL) {
		ember_error_set(err, EK_INVALID_SPEC, NULL, "invalid CID range [%u, %u]",
		    d->config.cid_min, d->config.cid_max);
		goto fail;
	}
	d->backend_env = (struct backend_env){
		.base = d->base, .config = &d->config, .state_dir = d->state_dir,
		.host = &vm_backend_host,
	};
	if (o->install_backends != NULL)
		o->install_backends(d);
	daemon_probe_backends(d);

	if (vms_load(d, err) < 0)
		goto fail;
	adopt_into_vm_cgroup(d);
	for (size_t i = 0; i < d->nvms; i++)	/* off the loop, kept (caller-open.h) */
		(void)caller_account_resolve(d->base, d->vms[i]->rec.owner_uid, NULL, NULL);
	images_cleanup(d);	/* after vms_load started the writer, which removes trash */
	vms_housekeeping_start(d);
	d->control = control_new(d->base, d->socket_path, o->listen_fd, socket_group(&d->config),
	    &cb, d, err);
	if (d->control == NULL)
		goto fail;
	apply_limits(d);
	if (d->config.metrics_listen != NULL &&
	    (d->metrics_http = metrics_http_new(d, d->config.metrics_listen, err)) == NULL)
		goto fail;
	d->lag_timer = metrics_lag_timer_new(d->base);

	d->ev_sigterm = evsignal_new(d->base, SIGTERM, on_terminate, d);
	d->ev_sigint = evsignal_new(d->base, SIGINT, on_terminate, d);
	d->ev_sighup = evsignal_new(d->base, SIGHUP, on_reload, d);
	if ((d->grace.ev = evtimer_new(d->base, on_grace, d)) == NULL) {
		ember_error_set(err, EK_INTERNAL, NULL, "out of memory");
		goto fail;
	}
	evsignal_add(d->ev_sigterm, NULL);
	evsignal_add(d->ev_sigint, NULL);
	evsignal_add(d->ev_sighup, NULL);
	if (o->listen_fd >= 0)
		log_info("using the control socket inherited from the service manager "
		    "(socket activation, fd %d)", o->listen_fd);
	return d;
fail:
	daemon_free(d);
	return NULL;
}

int
daemon_run(struct ember_daemon *d)
{
	log_info("emberd %s serving %s (state %s, pid %d)", EMBER_VERSION, d->socket_path,
	    d->state_dir, (int)getpid());
	notify_ready(d->notify);
	return event_base_dispatch(d->base) < 0 ? -1 : 0;
}

void
daemon_free(struct ember_daemon *d)
{
	struct ember_error err = { 0 };

	if (d == NULL)
		return;
	if (d->cids != NULL) {
		/* Anyone still waiting is answered while the transport exists
		 * (a no-op after a SIGTERM already did it). */
		vms_fail_pending(d);
		/* State is persisted at every change; write the CID table once
		 * more so a clean exit always leaves it current. */
		if (d->control != NULL && cids_save(d, &err) < 0)
			log_warnx("%s", err.message);
	}
	/* VMs before the transport: releasing one may still answer a client. */
	vms_detach_all(d);
	metrics_http_free(d->metrics_http);
	metrics_lag_timer_free(d->lag_timer);
	worker_free(d->worker);	/* before the transport: parses under way are dropped */
	d->worker = NULL;
	control_free(d->control);
	d->control = NULL;
	events_free(d->events);
	notify_free(d->notify);
	daemon_backends_free(d);
	if (d->ev_sigterm != NULL)
		event_free(d->ev_sigterm);
	if (d->ev_sigint != NULL)
		event_free(d->ev_sigint);
	if (d->ev_sighup != NULL)
		event_free(d->ev_sighup);
	if (d->grace.ev != NULL)
		event_free(d->grace.ev);
	if (d->ev_housekeeping != NULL)
		event_free(d->ev_housekeeping);
	cid_alloc_free(d->cids);
	if (d->base != NULL) {
		caller_opens_forget(d->base);
		child_runs_forget(d->base);
		event_base_free(d->base);
	}
	quota_forget(d);
	ember_config_clear(&d->config);
	free(d->state_dir);
	free(d->socket_path);
	free(d->config_path);
	if (d->lock_fd >= 0)
		close(d->lock_fd);
	free(d);
}
