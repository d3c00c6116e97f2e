/*
 * The QEMU backend: runs each VM as a qemu-system-x86_64 process on the
 * microvm machine and drives it through QMP on <vm>/qmp.sock, entirely on
 * the daemon's event loop.
 *
 * emberd binds the QMP socket itself and hands QEMU the listening fd, so
 * the socket exists before QEMU runs (no polling for it) and stays at its
 * path for a later emberd to reconnect after a restart. Guest RAM is a
 * shared memfd, which the vhost-user vsock device needs. The VM's owner
 * may write in the VM directory (see dir-guard.c), so QEMU is given
 * console.log as an inherited fd and no path there that it would open by
 * name, and a root disk made later than the create is made in a private
 * subdirectory and renamed into place. Root disks are
 * qcow2 overlays on the image's root filesystem, so creating and forking a
 * VM is instant and costs no space.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>

#include "backend.h"
#include "child.h"
#include "config.h"
#include "dir-guard.h"
#include "fileops.h"
#include "log.h"
#include "platform.h"
#include "probe.h"
#include "qmp.h"
#include "validate.h"
#include "vsock-dev.h"

#define QEMU_START_TIMEOUT_MS	60000
#define QEMU_QMP_TIMEOUT_MS	10000
#define QEMU_QUIT_GRACE_S	5
#define QEMU_DEFAULT_BOOT_ARGS	"console=ttyS0 reboot=t panic=-1"

enum qemu_op { QOP_NONE, QOP_START, QOP_STOP, QOP_PAUSE, QOP_RESUME };

struct qemu_backend {
	struct backend be;
	const struct backend_env *env;
	char binary[PATH_MAX];
	char qemu_img[PATH_MAX];
};

struct qemu_vm {
	struct qemu_backend *qb;
	struct vm_record *rec;
	void *vm_ctx;
	char dir[PATH_MAX];
	pid_t pid;
	struct child_watch *watch;
	struct qmp *qmp;
	struct vsock_dev *vsock;	/* emberd's vhost-user-vsock device */
	struct event *timer;
	enum qemu_op op;
	backend_done_fn done;
	char fault[256];	/* why a start is being abandoned */
	int stop_stage;		/* 0 powerdown, 1 quit, 2 SIGKILL */
	bool adopted;
};

static void qemu_vm_exited(void *ctx, pid_t pid, int status);

static struct qemu_backend *
qb_of(struct backend *be)
{
	return (struct qemu_backend *)be;
}

/* ---- probe ---- */

static void
qemu_probe(struct backend *be, struct backend_info *info)
{
	struct qemu_backend *qb = qb_of(be);
	const struct ember_config *cfg = qb->env->config;
	int r = probe_find_binary(cfg->qemu_binary, "qemu-system-x86_64", info->binary,
	    sizeof(info->binary));

	info->available = false;
	if (r < 0) {
		snprintf(info->reason, sizeof(info->reason), "%s not found%s (install qemu-system-x86)",
		    cfg->qemu_binary ? cfg->qemu_binary : "qemu-system-x86_64",
		    cfg->qemu_binary ? "" : " in PATH");
		return;
	}
	if (probe_binary_version(info->binary, info->version, sizeof(info->version)) < 0) {
		snprintf(info->reason, sizeof(info->reason), "%s --version failed", info->binary);
		return;
	}
	if (probe_find_binary(NULL, "qemu-img", qb->qemu_img, sizeof(qb->qemu_img)) < 0) {
		snprintf(info->reason, sizeof(info->reason),
		    "qemu-img not found in PATH (install qemu-utils)");
		return;
	}
	snprintf(qb->binary, sizeof(qb->binary), "%s", info->binary);
	info->available = true;
}

/* ---- disks ---- */

/* Runs a short helper (qemu-img) to completion. Disk preparation is part of
 * create/fork, which the daemon runs synchronously; qemu-img create on an
 * overlay takes milliseconds. */
static int
run_sync(const char *const *argv, char *out, size_t outlen)
{
	int pipefd[2], status;
	struct child_spawn_opts o = { .argv = argv };
	pid_t pid;
	size_t got = 0;
	ssize_t n;

	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return -errno;
	o.stdout_fd = o.stderr_fd = pipefd[1];
	pid = child_spawn(&o);
	close(pipefd[1]);
	if (pid < 0) {
		close(pipefd[0]);
		return (int)pid;
	}
	while ((n = read(pipefd[0], out + got, outlen - 1 - got)) > 0 && got + (size_t)n < outlen - 1)
		got += (size_t)n;
	if (n > 0)
		got += (size_t)n;
	out[got] = '\0';
	out[strcspn(out, "\n")] = '\0';
	close(pipefd[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EIO;
}

/* qemu-img opens its target by name and follows symlinks, and the VM's
 * owner may plant names in vm_dir: the overlay is made in a fresh 0700
 * directory of root's and renamed over whatever is at disk.qcow2. */
static int
qemu_make_overlay(struct qemu_backend *qb, struct vm_record *rec, const char *base,
    const char *vm_dir, uint64_t size_mib, struct ember_error *err)
{
	char overlay[PATH_MAX], tmpdir[PATH_MAX], tmp[PATH_MAX], size[32], out[1024];
	const char *argv[] = { qb->qemu_img, "create", "-q", "-f", "qcow2", "-F", "raw", "-b",
	    base, tmp, size_mib ? size : NULL, NULL };
	int r;

	snprintf(overlay, sizeof(overlay), "%s/disk.qcow2", vm_dir);
	snprintf(tmpdir, sizeof(tmpdir), "%s/.disk-XXXXXX", vm_dir);
	if (mkdtemp(tmpdir) == NULL)
		return ember_error_set(err, EK_IO, NULL, "cannot create a directory in %s: %s",
		    vm_dir, strerror(errno));
	snprintf(tmp, sizeof(tmp), "%s/disk.qcow2", tmpdir);
	snprintf(size, sizeof(size), "%lluM", (unsigned long long)size_mib);
	r = run_sync(argv, out, sizeof(out));
	if (r == 0 && rename(tmp, overlay) < 0) {
		snprintf(out, sizeof(out), "cannot rename it to %s: %s", overlay, strerror(errno));
		r = -EIO;
	}
	unlink(tmp);
	rmdir(tmpdir);
	if (r < 0)
		return ember_error_set(err, EK_BACKEND_ERROR, "check that the root filesystem is readable",
		    "qemu-img could not create an overlay on %s: %s", base, out);
	free(rec->disk_path);
	rec->disk_path = strdup(overlay);
	return 0;
}

static bool
is_own_overlay(const char *disk, const char *dir)
{
	size_t n = strlen(dir);

	return disk != NULL && strncmp(disk, dir, n) == 0 && strcmp(disk + n, "/disk.qcow2") == 0;
}

static int
qemu_create(struct backend *be, struct vm_record *rec, const char *vm_dir,
    struct ember_error *err)
{
	struct stat st;

	if (rec->disk_path == NULL || is_own_overlay(rec->disk_path, vm_dir))
		return 0;
	char base[PATH_MAX];
	snprintf(base, sizeof(base), "%s", rec->disk_path);
	/* An overlay may grow the disk, never shrink it under the filesystem. */
	if (rec->disk_size_mib != 0 && stat(base, &st) == 0 &&
	    (uint64_t)st.st_size > rec->disk_size_mib * 1024 * 1024)
		return ember_error_set(err, EK_INVALID_SPEC, "ask for at least the image's size",
		    "disk_size_mib %llu is smaller than the root filesystem %s (%lld MiB)",
		    (unsigned long long)rec->disk_size_mib, base,
		    (long long)((st.st_size + 1024 * 1024 - 1) / (1024 * 1024)));
	return qemu_make_overlay(qb_of(be), rec, base, vm_dir, rec->disk_size_mib, err);
}

static int
qemu_fork(struct backend *be, const struct vm_record *src, struct vm_record *child,
    const char *vm_dir, struct ember_error *err)
{
	char dst[PATH_MAX], src_dir[PATH_MAX];
	const char *slash = src->disk_path ? strrchr(src->disk_path, '/') : NULL;
	int reflinked, r;

	if (src->disk_path == NULL)
		return 0;
	snprintf(src_dir, sizeof(src_dir), "%.*s", slash ? (int)(slash - src->disk_path) : 0,
	    src->disk_path);
	/* The child's own link to the base, when the daemon made one, is what
	 * its disk stands on (see BACKEND_OWN_BASE_DISK). */
	char own_base[PATH_MAX];
	snprintf(own_base, sizeof(own_base), "%s/" BACKEND_OWN_BASE_DISK, vm_dir);
	bool has_own_base = access(own_base, F_OK) == 0;
	if (!is_own_overlay(src->disk_path, src_dir) || strcmp(slash, "/disk.qcow2") != 0) {
		char base[PATH_MAX];
		snprintf(base, sizeof(base), "%s", has_own_base ? own_base : src->disk_path);
		return qemu_make_overlay(qb_of(be), child, base, vm_dir, 0, err);
	}
	/* The source's overlay holds everything it wrote; a copy of it over
	 * the same base is a disk equal to the source's at this moment. */
	snprintf(dst, sizeof(dst), "%s/disk.qcow2", vm_dir);
	r = file_copy_sparse(src->disk_path, dst, 0640, &reflinked);
	if (r < 0)
		return ember_error_set(err, EK_IO, NULL, "cannot copy %s to %s: %s",
		    src->disk_path, dst, strerror(-r));
	if (has_own_base) {
		char out[1024];
		const char *argv[] = { qb_of(be)->qemu_img, "rebase", "-u", "-f", "qcow2", "-F", "raw",
		    "-b", own_base, dst, NULL };
		if (run_sync(argv, out, sizeof(out)) < 0) {
			unlink(dst);
			return ember_error_set(err, EK_BACKEND_ERROR, NULL,
			    "qemu-img could not point %s at %s: %s", dst, own_base, out);
		}
	}
	log_debug("qemu: forked disk %s -> %s%s", src->disk_path, dst,
	    reflinked ? " (reflink)" : "");
	free(child->disk_path);
	child->disk_path = strdup(dst);
	return 0;
}

/* ---- per-VM state ---- */

static void
qemu_vm_free(struct qemu_vm *qv)
{
	if (qv == NULL)
		return;
	child_watch_free(qv->watch);
	qmp_free(qv->qmp);
	vsock_dev_free(qv->vsock);
	if (qv->timer != NULL)
		event_free(qv->timer);
	free(qv);
}

static void
qemu_release(struct backend *be, void *vmstate, bool detach)
{
	qemu_vm_free(vmstate);
}

static void
qemu_finish_op(struct qemu_vm *qv, const struct ember_error *err)
{
	backend_done_fn done = qv->done;

	qv->op = QOP_NONE;
	qv->done = NULL;
	if (qv->timer != NULL)
		evtimer_del(qv->timer);
	if (done != NULL)
		done(qv->vm_ctx, err);
}

static void
qemu_vm_exited(void *ctx, pid_t pid, int status)
{
	struct qemu_vm *qv = ctx;
	char how[128], reason[800];
	const struct backend_host *host = qv->qb->env->host;
	void *vm_ctx = qv->vm_ctx;
	enum qemu_op op = qv->op;
	backend_done_fn done = qv->done;
	struct vm_record *rec = qv->rec;
	char fault[sizeof(qv->fault)];

	memcpy(fault, qv->fault, sizeof(fault));
	child_status_text(status, how, sizeof(how));
	console_reason(qv->dir, reason, sizeof(reason));
	log_info("qemu: %s (pid %d) %s", rec->name, (int)pid, how);
	rec->pid = 0;
	rec->pid_start_time = 0;
	qemu_vm_free(qv);	/* the daemon's pointer to it is cleared by the callbacks */

	if (op == QOP_START) {
		struct ember_error err = { 0 };
		if (fault[0])
			ember_error_set(&err, EK_BACKEND_ERROR, "see console.log in the VM's directory",
			    "QEMU did not start: %s (QEMU %s); %s", fault, how, reason);
		else
			ember_error_set(&err, EK_BACKEND_ERROR, "see console.log in the VM's directory",
			    "QEMU %s while starting; %s", how, reason);
		done(vm_ctx, &err);
		return;
	}
	host->exited(vm_ctx, status, status == 0 || op == QOP_STOP ? NULL : reason);
	/* A stop is done; any other operation was cut short by the exit. */
	if (done != NULL && op == QOP_STOP)
		done(vm_ctx, NULL);
	else if (done != NULL) {
		struct ember_error err = { 0 };
		ember_error_set(&err, EK_BACKEND_ERROR, NULL, "QEMU exited during the operation");
		done(vm_ctx, &err);
	}
}

static void
qemu_kill(struct qemu_vm *qv, int sig)
{
	/* Through the pidfd: never a recycled pid. */
	if (child_watch_kill(qv->watch, sig) < 0 && errno != ESRCH)
		log_warn("qemu: kill %d", (int)qv->pid);
}

/* ---- QMP events ---- */

static void
qemu_qmp_event(void *ctx, const char *event, json_t *data)
{
	struct qemu_vm *qv = ctx;
	const struct backend_host *host = qv->qb->env->host;

	log_debug("qemu: %s: QMP event %s", qv->rec->name, event);
	if (qv->op != QOP_NONE)
		return;	/* our own operation reports the outcome */
	if (strcmp(event, "STOP") == 0)
		host->status(qv->vm_ctx, VM_PAUSED, "paused by QEMU");
	else if (strcmp(event, "RESUME") == 0)
		host->status(qv->vm_ctx, VM_RUNNING, NULL);
	else if (strcmp(event, "SHUTDOWN") == 0)
		host->status(qv->vm_ctx, VM_STOPPING, "guest shut down");
}

static void
qemu_qmp_closed(void *ctx)
{
	struct qemu_vm *qv = ctx;

	/* QEMU exiting closes QMP first; the pidfd reports the exit. */
	log_debug("qemu: %s: QMP connection closed", qv->rec->name);
}

/* ---- start ---- */

static void
qemu_start_fail(struct qemu_vm *qv, const char *why)
{
	/* Kill it and report from its exit: the daemon must not hear of the
	 * failure while this VM state (and its watch) still exists. */
	if (qv->fault[0] == '\0')
		snprintf(qv->fault, sizeof(qv->fault), "%s", why);
	log_warnx("qemu: %s did not start: %s", qv->rec->name, why);
	qemu_kill(qv, SIGKILL);
}

static void
qemu_status_reply(void *ctx, json_t *ret, const char *err)
{
	struct qemu_vm *qv = ctx;
	const char *status = json_string_value(json_object_get(ret, "status"));

	if (err != NULL) {
		qemu_start_fail(qv, err);
		return;
	}
	if (status == NULL || (strcmp(status, "running") != 0 && strcmp(status, "paused") != 0)) {
		qemu_start_fail(qv, status ? status : "no status in query-status");
		return;
	}
	qemu_finish_op(qv, NULL);
}

static void
qemu_qmp_ready(void *ctx, const char *err)
{
	struct qemu_vm *qv = ctx;

	if (err != NULL) {
		if (qv->op == QOP_START)
			qemu_start_fail(qv, err);
		else
			log_warnx("qemu: %s: QMP: %s", qv->rec->name, err);
		return;
	}
	if (qv->op == QOP_START &&
	    qmp_command(qv->qmp, "query-status", NULL, QEMU_QMP_TIMEOUT_MS,
	    qemu_status_reply, qv) < 0)
		qemu_start_fail(qv, "cannot send query-status");
}

static void
qemu_timer_cb(evutil_socket_t fd, short what, void *arg);

static int
bind_qmp_socket(const char *path, struct ember_error *err)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(sun.sun_path))
		return ember_error_set(err, EK_PATH_TOO_LONG, "use a shorter --state-dir or VM name",
		    "QMP socket path is too long: %s", path);
	memcpy(sun.sun_path, path, strlen(path) + 1);
	unlink(path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 || listen(fd, 4) < 0) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		return ember_error_set(err, EK_IO, NULL, "cannot create %s: %s", path, strerror(e));
	}
	chmod(path, 0600);
	return fd;
}

static const char *
qemu_accel(const struct ember_config *cfg)
{
	const char *want = cfg->qemu_accel ? cfg->qemu_accel : "auto";
	int fd;

	if (strcmp(want, "auto") != 0)
		return want;
	fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return "tcg";
	close(fd);
	return "kvm";
}

/*
 * The host's TSC rate in kHz, 0 when unknown. Under TCG the guest's TSC
 * ticks at the host's rate, but the guest kernel calibrates it against the
 * PIT, which fails when the host is busy; the kernel then marks the TSC
 * unstable and can hang early in the boot. tsc_early_khz skips that.
 */
static unsigned long
host_tsc_khz(void)
{
	FILE *fp = fopen("/proc/cpuinfo", "re");
	char line[256];
	double mhz = 0;

	while (fp != NULL && fgets(line, sizeof(line), fp) != NULL)
		if (sscanf(line, "cpu MHz : %lf", &mhz) == 1)
			break;
	if (fp != NULL)
		fclose(fp);
	return mhz > 0 && mhz < 100000 ? (unsigned long)(mhz * 1000) : 0;
}

#define ARGV_MAX 64

struct argv_buf {
	const char *argv[ARGV_MAX];
	char strs[16][PATH_MAX + 128];
	int n, ns;
};

static void
arg(struct argv_buf *a, const char *s)
{
	if (a->n < ARGV_MAX - 1)
		a->argv[a->n++] = s;
}

static const char *
argf(struct argv_buf *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static const char *
argf(struct argv_buf *a, const char *fmt, ...)
{
	va_list ap;
	char *s;

	if (a->ns >= 16)
		fatalx("qemu: argv scratch space exhausted");
	s = a->strs[a->ns++];
	va_start(ap, fmt);
	vsnprintf(s, sizeof(a->strs[0]), fmt, ap);
	va_end(ap);
	arg(a, s);
	return s;
}

/* The QEMU command line for a VM (also used by bench-boot for the by-hand
 * comparison, through `emberd`'s log at debug level). */
static void
qemu_build_argv(struct qemu_backend *qb, const struct vm_record *rec, int console_fd,
    int qmp_fd, int vsock_fd, struct argv_buf *a)
{
	const char *accel = qemu_accel(qb->env->config);
	const char *boot = rec->boot_args ? rec->boot_args : QEMU_DEFAULT_BOOT_ARGS;
	bool has_root = rec->disk_path != NULL;

	arg(a, qb->binary);
	arg(a, "-name");
	argf(a, "%s,debug-threads=off", rec->name);
	arg(a, "-M");
	arg(a, "microvm,memory-backend=mem");
	arg(a, "-accel");
	arg(a, accel);
	arg(a, "-cpu");
	arg(a, strcmp(accel, "kvm") == 0 ? "host" : "max");
	arg(a, "-smp");
	argf(a, "%u", rec->cpus);
	arg(a, "-m");
	argf(a, "%lluM", (unsigned long long)rec->memory_mib);
	arg(a, "-object");
	argf(a, "memory-backend-memfd,id=mem,size=%lluM,share=on",
	    (unsigned long long)rec->memory_mib);
	arg(a, "-nodefaults");
	arg(a, "-no-user-config");
	arg(a, "-nographic");
	arg(a, "-no-reboot");
	arg(a, "-global");
	arg(a, "virtio-mmio.force-legacy=false");
	arg(a, "-chardev");
	/* The fd emberd opened, reopened through /dev/fd: the same inode,
	 * whatever the VM's owner does to the name console.log meanwhile. */
	argf(a, "file,id=console,path=/dev/fd/%d,append=on", console_fd);
	arg(a, "-serial");
	arg(a, "chardev:console");
	arg(a, "-chardev");
	argf(a, "socket,id=qmp,fd=%d,server=on,wait=off", qmp_fd);
	arg(a, "-mon");
	arg(a, "chardev=qmp,mode=control");
	arg(a, "-kernel");
	arg(a, rec->kernel_path);
	if (rec->initrd_path != NULL) {
		arg(a, "-initrd");
		arg(a, rec->initrd_path);
	}
	if (has_root) {
		arg(a, "-drive");
		argf(a, "file=%s,if=none,id=root,format=%s", rec->disk_path,
		    strstr(rec->disk_path, ".qcow2") ? "qcow2" : "raw");
		arg(a, "-device");
		arg(a, "virtio-blk-device,drive=root");
	}
	if (rec->network != NULL && strcmp(rec->network, "user") == 0) {
		arg(a, "-netdev");
		arg(a, "user,id=net0");
		arg(a, "-device");
		arg(a, "virtio-net-device,netdev=net0");
	}
	if (vsock_fd >= 0) {
		/* The CID reaches the guest through GET_CONFIG from emberd. */
		arg(a, "-chardev");
		argf(a, "socket,id=vsock,fd=%d", vsock_fd);
		arg(a, "-device");
		arg(a, "vhost-user-vsock-device,chardev=vsock");
	}
	unsigned long tsc_khz = strcmp(accel, "tcg") == 0 &&
	    strstr(boot, "tsc_early_khz=") == NULL ? host_tsc_khz() : 0;
	char tsc[48] = "";
	if (tsc_khz > 0)
		snprintf(tsc, sizeof(tsc), " tsc_early_khz=%lu", tsc_khz);
	arg(a, "-append");
	argf(a, "%s%s%s", boot, has_root && strstr(boot, "root=") == NULL ? " root=/dev/vda rw" : "",
	    tsc);
	a->argv[a->n] = NULL;
}

/* The vsock device asks the daemon which VM holds a CID. */
static int
qemu_vsock_peer(void *ctx, uint64_t cid, char *path, size_t len)
{
	struct qemu_vm *qv = ctx;
	const struct backend_host *host = qv->qb->env->host;

	return host->vsock_peer != NULL ? host->vsock_peer(qv->vm_ctx, cid, path, len) : -ENOENT;
}

/* Serves the VM's vhost-user-vsock device on one end of a socketpair and
 * returns the end QEMU inherits, or -1 with err. */
static int
qemu_vsock_setup(struct qemu_vm *qv, struct ember_error *err)
{
	const struct vm_record *rec = qv->rec;
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return ember_error_set(err, EK_IO, NULL, "socketpair: %s", strerror(errno));
	qv->vsock = vsock_dev_new(qv->qb->env->base, sv[0], rec->guest_cid, rec->uds_path,
	    rec->owner_uid, rec->name, qemu_vsock_peer, qv);
	if (qv->vsock == NULL) {
		int e = errno;
		close(sv[1]);
		return ember_error_set(err, EK_IO, "check the VM directory's permissions",
		    "cannot serve vsock on %s: %s", rec->uds_path, strerror(e));
	}
	return sv[1];
}

static void
qemu_log_argv(const char *name, const char *const *argv)
{
	char cmdline[4096] = "";

	for (int i = 0; argv[i] != NULL; i++) {
		strncat(cmdline, argv[i], sizeof(cmdline) - strlen(cmdline) - 2);
		strncat(cmdline, " ", sizeof(cmdline) - strlen(cmdline) - 1);
	}
	log_debug("qemu: %s: %s", name, cmdline);
}

static int
qemu_start(struct backend *be, struct vm_record *rec, const char *vm_dir, void **vmstate,
    void *vm_ctx, backend_done_fn done, struct ember_error *err)
{
	struct qemu_backend *qb = qb_of(be);
	struct qemu_vm *qv;
	struct argv_buf *a = NULL;
	char qmp_path[PATH_MAX], hdr[256];
	int qmp_fd = -1, console_fd = -1, vsock_fd = -1, keep[3], n;
	pid_t pid;

	if (rec->kernel_path == NULL)
		return ember_error_set(err, EK_INVALID_SPEC, "create it with --image or --kernel",
		    "VM \"%s\" has no kernel", rec->name);
	if (access(rec->kernel_path, R_OK) < 0)
		return ember_error_set(err, EK_INVALID_SPEC, NULL, "kernel %s: %s",
		    rec->kernel_path, strerror(errno));
	if (rec->initrd_path != NULL && access(rec->initrd_path, R_OK) < 0)
		return ember_error_set(err, EK_INVALID_SPEC, NULL, "initrd %s: %s",
		    rec->initrd_path, strerror(errno));
	qv = calloc(1, sizeof(*qv));
	if (qv == NULL)
		fatalx("out of memory");
	qv->qb = qb;
	qv->rec = rec;
	qv->vm_ctx = vm_ctx;
	snprintf(qv->dir, sizeof(qv->dir), "%s", vm_dir);

	snprintf(qmp_path, sizeof(qmp_path), "%s/qmp.sock", vm_dir);
	if ((qmp_fd = bind_qmp_socket(qmp_path, err)) < 0 ||
	    (console_fd = console_open(vm_dir, rec->owner_uid, err)) < 0)
		goto fail;
	if (rec->vsock && rec->uds_path != NULL && (vsock_fd = qemu_vsock_setup(qv, err)) < 0)
		goto fail;
	a = calloc(1, sizeof(*a));
	if (a == NULL)
		fatalx("out of memory");
	qemu_build_argv(qb, rec, console_fd, qmp_fd, vsock_fd, a);
	qemu_log_argv(rec->name, a->argv);
	n = snprintf(hdr, sizeof(hdr), "--- emberd: starting %s ---\n", rec->name);
	if (write(console_fd, hdr, (size_t)n) < 0)
		log_debug("qemu: cannot write to console.log");
	keep[0] = qmp_fd;
	keep[1] = console_fd;
	keep[2] = vsock_fd;
	struct child_spawn_opts o = {
		.argv = a->argv, .stdout_fd = console_fd, .stderr_fd = console_fd,
		.keep_fds = keep, .nkeep = vsock_fd >= 0 ? 3 : 2, .new_session = true,
	};
	pid = child_spawn(&o);
	if (pid < 0) {
		ember_error_set(err, EK_BACKEND_ERROR, NULL, "cannot start %s: %s", qb->binary,
		    strerror((int)-pid));
		goto fail;
	}
	/* QEMU holds its ends now; ours close. */
	free(a);
	close(console_fd);
	close(qmp_fd);
	if (vsock_fd >= 0)
		close(vsock_fd);

	qv->pid = pid;
	qv->op = QOP_START;
	qv->done = done;
	rec->pid = pid;
	if (platform_process_start_time(pid, &rec->pid_start_time) < 0)
		rec->pid_start_time = 0;
	qv->watch = child_watch_new(qb->env->base, pid, qemu_vm_exited, qv);
	if (qv->watch == NULL)
		fatal("qemu: cannot watch our own child %d", (int)pid);
	qv->timer = evtimer_new(qb->env->base, qemu_timer_cb, qv);
	struct timeval deadline = { QEMU_START_TIMEOUT_MS / 1000, 0 };
	evtimer_add(qv->timer, &deadline);
	qv->qmp = qmp_new(qb->env->base, qemu_qmp_event, qemu_qmp_closed, qv);
	qmp_connect(qv->qmp, qmp_path, QEMU_START_TIMEOUT_MS, qemu_qmp_ready, qv);
	*vmstate = qv;
	log_info("qemu: %s started (pid %d, accel %s)", rec->name, (int)pid,
	    qemu_accel(qb->env->config));
	return 0;

fail:
	free(a);
	if (console_fd >= 0)
		close(console_fd);
	if (qmp_fd >= 0) {
		close(qmp_fd);
		unlink(qmp_path);
	}
	if (vsock_fd >= 0)
		close(vsock_fd);
	qemu_vm_free(qv);
	return -1;
}

/* ---- stop, pause, resume ---- */

static void
qemu_ignore_reply(void *ctx, json_t *ret, const char *err)
{
	struct qemu_vm *qv = ctx;

	if (err != NULL)
		log_debug("qemu: %s: %s", qv->rec->name, err);
}

/* Escalates a stop: powerdown -> quit -> SIGKILL; also the start deadline. */
static void
qemu_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct qemu_vm *qv = arg;

	if (qv->op == QOP_START) {
		qemu_start_fail(qv, "timed out waiting for QMP");
		return;
	}
	if (qv->op != QOP_STOP)
		return;
	if (qv->stop_stage == 0) {
		qv->stop_stage = 1;
		log_info("qemu: %s did not power off in time; asking QEMU to quit", qv->rec->name);
		if (qv->qmp == NULL ||
		    qmp_command(qv->qmp, "quit", NULL, QEMU_QMP_TIMEOUT_MS, qemu_ignore_reply, qv) < 0)
			qemu_kill(qv, SIGTERM);
		{
		struct timeval delay = { QEMU_QUIT_GRACE_S, 0 };
		evtimer_add(qv->timer, &delay);
	}
		return;
	}
	qv->stop_stage = 2;
	log_info("qemu: %s still running; killing it", qv->rec->name);
	qemu_kill(qv, SIGKILL);
}

static int
qemu_stop(struct backend *be, struct vm_record *rec, void *vmstate, bool force,
    unsigned timeout_s, backend_done_fn done, struct ember_error *err)
{
	struct qemu_vm *qv = vmstate;

	if (qv->op != QOP_NONE && qv->op != QOP_START)
		return ember_error_set(err, EK_BUSY, NULL, "QEMU is busy");
	qv->op = QOP_STOP;
	qv->done = done;
	if (force || timeout_s == 0) {
		qv->stop_stage = 2;
		qemu_kill(qv, SIGKILL);
		return 0;
	}
	qv->stop_stage = 0;
	if (qv->qmp == NULL || qmp_command(qv->qmp, "system_powerdown", NULL,
	    QEMU_QMP_TIMEOUT_MS, qemu_ignore_reply, qv) < 0) {
		qv->stop_stage = 1;
		qemu_kill(qv, SIGTERM);
		timeout_s = QEMU_QUIT_GRACE_S;
	}
	if (qv->timer == NULL)
		qv->timer = evtimer_new(qv->qb->env->base, qemu_timer_cb, qv);
	{
		struct timeval delay = { timeout_s, 0 };
		evtimer_add(qv->timer, &delay);
	}
	return 0;
}

static void
qemu_simple_reply(void *ctx, json_t *ret, const char *qerr)
{
	struct qemu_vm *qv = ctx;
	struct ember_error err = { 0 };

	if (qerr != NULL)
		ember_error_set(&err, EK_BACKEND_ERROR, NULL, "QEMU: %s", qerr);
	qemu_finish_op(qv, qerr != NULL ? &err : NULL);
}

static int
qemu_simple_command(struct qemu_vm *qv, enum qemu_op op, const char *cmd,
    backend_done_fn done, struct ember_error *err)
{
	if (qv->op != QOP_NONE)
		return ember_error_set(err, EK_BUSY, NULL, "QEMU is busy");
	if (qv->qmp == NULL)
		return ember_error_set(err, EK_BACKEND_ERROR, NULL, "no QMP connection to QEMU");
	qv->op = op;
	qv->done = done;
	if (qmp_command(qv->qmp, cmd, NULL, QEMU_QMP_TIMEOUT_MS, qemu_simple_reply, qv) < 0) {
		qv->op = QOP_NONE;
		qv->done = NULL;
		return ember_error_set(err, EK_BACKEND_ERROR, NULL, "QMP is not connected");
	}
	return 0;
}

static int
qemu_pause(struct backend *be, struct vm_record *rec, void *vmstate, backend_done_fn done,
    struct ember_error *err)
{
	return qemu_simple_command(vmstate, QOP_PAUSE, "stop", done, err);
}

static int
qemu_resume(struct backend *be, struct vm_record *rec, void *vmstate, backend_done_fn done,
    struct ember_error *err)
{
	return qemu_simple_command(vmstate, QOP_RESUME, "cont", done, err);
}

/* ---- adopt after an emberd restart ---- */

static void
qemu_adopt_ready(void *ctx, const char *err)
{
	struct qemu_vm *qv = ctx;

	if (err != NULL)
		log_warnx("qemu: %s: re-adopted without QMP: %s (stop will use signals)",
		    qv->rec->name, err);
}

static int
qemu_adopt(struct backend *be, struct vm_record *rec, const char *vm_dir, void **vmstate,
    void *vm_ctx, struct ember_error *err)
{
	struct qemu_backend *qb = qb_of(be);
	struct qemu_vm *qv;
	char qmp_path[PATH_MAX];

	if (rec->pid <= 0 || platform_process_matches(rec->pid, rec->pid_start_time) != 1)
		return ember_error_set(err, EK_BACKEND_ERROR, NULL,
		    "QEMU (pid %d) is gone; it ended while emberd was not running", (int)rec->pid);
	qv = calloc(1, sizeof(*qv));
	if (qv == NULL)
		fatalx("out of memory");
	qv->qb = qb;
	qv->rec = rec;
	qv->vm_ctx = vm_ctx;
	qv->pid = rec->pid;
	qv->adopted = true;
	snprintf(qv->dir, sizeof(qv->dir), "%s", vm_dir);
	qv->watch = child_watch_new(qb->env->base, rec->pid, qemu_vm_exited, qv);
	if (qv->watch == NULL) {
		free(qv);
		return ember_error_set(err, EK_BACKEND_ERROR, NULL, "QEMU (pid %d) is gone",
		    (int)rec->pid);
	}
	qv->timer = evtimer_new(qb->env->base, qemu_timer_cb, qv);
	if (rec->vsock && rec->uds_path != NULL) {
		/* QEMU 7.2 never reconnects a vhost-user backend: this VM's vsock
		 * device died with the previous emberd. Say so, don't pretend. */
		unlink(rec->uds_path);
		log_warnx("qemu: %s: vsock is unavailable until the VM restarts "
		    "(QEMU cannot reconnect its vhost-user device to a new emberd)", rec->name);
	}
	snprintf(qmp_path, sizeof(qmp_path), "%s/qmp.sock", vm_dir);
	qv->qmp = qmp_new(qb->env->base, qemu_qmp_event, qemu_qmp_closed, qv);
	qmp_connect(qv->qmp, qmp_path, QEMU_QMP_TIMEOUT_MS, qemu_adopt_ready, qv);
	*vmstate = qv;
	return 0;
}

static int
qemu_remove(struct backend *be, struct vm_record *rec, const char *vm_dir,
    struct ember_error *err)
{
	return 0;	/* everything lives in vm_dir, which the daemon removes */
}

static void
qemu_free(struct backend *be)
{
	free(qb_of(be));
}

/* The kernel command line qemu_build_argv appends to, with the most it adds:
 * " root=/dev/vda rw", " tsc_early_khz=<10 digits>" under TCG, and, when the
 * microvm runs without ACPI, " virtio_mmio.device=512@0xfeb00e00:NN" for
 * each of the (at most three) virtio devices. */
static int
qemu_check(struct backend *be, const struct vm_record *rec, struct ember_error *err)
{
	const size_t per_device = sizeof(" virtio_mmio.device=512@0xfeb00e00:99") - 1;
	size_t appended = sizeof(" tsc_early_khz=4294967295") - 1;

	if (rec->disk_path != NULL)
		appended += sizeof(" root=/dev/vda rw") - 1 + per_device;
	appended += (rec->network != NULL && strcmp(rec->network, "user") == 0) * per_device;
	appended += rec->vsock * per_device;
	return kernel_cmdline_check(rec->boot_args ? rec->boot_args : QEMU_DEFAULT_BOOT_ARGS,
	    appended, "QEMU", err);
}

struct backend *
backend_qemu_new(const struct backend_env *env)
{
	struct qemu_backend *qb = calloc(1, sizeof(*qb));

	if (qb == NULL)
		return NULL;
	qb->env = env;
	qb->be = (struct backend){
		.name = "qemu",
		.probe = qemu_probe,
		.check = qemu_check,
		.create = qemu_create,
		.fork = qemu_fork,
		.start = qemu_start,
		.stop = qemu_stop,
		.pause = qemu_pause,
		.resume = qemu_resume,
		.adopt = qemu_adopt,
		.release = qemu_release,
		.remove = qemu_remove,
		.free = qemu_free,
	};
	return &qb->be;
}
