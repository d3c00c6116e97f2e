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
 * VM is instant and costs no space; qemu-img and the copy of a fork's
 * overlay run in child processes, completing through create's and fork's
 * done.
 *
 * The process itself (spawn, watch, stop ladder, adoption, the operation
 * in flight) is hv-process.c's, shared with Firecracker. Configuration
 * subtree: qemu: { binary, accel }.
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
#include "hv-process.h"
#include "log.h"
#include "platform.h"
#include "probe.h"
#include "qmp.h"
#include "validate.h"
#include "vsock-dev.h"
#include "yaml-doc.h"

#define QEMU_START_TIMEOUT_MS	60000
#define QEMU_QMP_TIMEOUT_MS	10000
#define QEMU_QUIT_GRACE_S	5
#define QEMU_DEFAULT_BOOT_ARGS	"console=ttyS0 reboot=t panic=-1"

#define QEMU_NAME		"qemu"

struct qemu_backend {
	struct backend be;
	const struct backend_env *env;
};

struct qemu_vm {
	struct qemu_backend *qb;
	struct vm_record *rec;
	void *vm_ctx;
	char dir[PATH_MAX];
	struct hv_process *proc;
	struct qmp *qmp;
	struct vsock_dev *vsock;	/* emberd's vhost-user-vsock device */
	char fault[256];	/* why a start is being abandoned */
	bool paused;		/* a stop need not ask a guest that cannot act */
	bool adopted;
};

static const struct hv_process_ops qemu_process_ops;

static struct qemu_backend *
qb_of(struct backend *be)
{
	return (struct qemu_backend *)be;
}

/* ---- probe ---- */

static void
qemu_probe(const struct ember_config *cfg, struct backend_info *info)
{
	const char *binary = ember_config_backend_string(cfg, QEMU_NAME, "binary");
	int r = probe_find_binary(binary, "qemu-system-x86_64", info->binary,
	    sizeof(info->binary));

	info->available = false;
	if (r < 0) {
		snprintf(info->reason, sizeof(info->reason), "%s not found%s (install qemu-system-x86)",
		    binary ? binary : "qemu-system-x86_64", binary ? "" : " in PATH");
		return;
	}
	if (probe_binary_version(info->binary, info->version, sizeof(info->version)) < 0) {
		snprintf(info->reason, sizeof(info->reason), "%s --version failed", info->binary);
		return;
	}
	if (probe_find_binary(NULL, "qemu-img", info->helper, sizeof(info->helper)) < 0) {
		snprintf(info->reason, sizeof(info->reason),
		    "qemu-img not found in PATH (install qemu-utils)");
		return;
	}
	info->available = true;
}

/* ---- disks ---- */

/* A create's or fork's disk, prepared in the background: qemu-img (and,
 * for a fork of an overlay, a copy of it) runs in child processes. */
struct qemu_disk_op {
	struct qemu_backend *qb;
	struct vm_record *rec;
	void *vm_ctx;
	backend_done_fn done;
	char base[PATH_MAX];		/* what the overlay stands on */
	char tmpdir[PATH_MAX];		/* root's private directory for qemu-img's output */
	char tmp[PATH_MAX];
	char dst[PATH_MAX];		/* <vm_dir>/disk.qcow2 */
	char src[PATH_MAX];		/* fork: the source's overlay to copy */
	bool rebase;			/* fork: point the copy at base */
};

static void
qemu_disk_finish(struct qemu_disk_op *op, const struct ember_error *err)
{
	backend_done_fn done = op->done;
	void *vm_ctx = op->vm_ctx;

	if (op->tmp[0])
		unlink(op->tmp);
	if (op->tmpdir[0])
		rmdir(op->tmpdir);
	if (err == NULL) {
		char *path = strdup(op->dst);
		if (path == NULL) {
			struct ember_error oom = { 0 };
			ember_error_set(&oom, EK_INTERNAL, NULL, "out of memory");
			unlink(op->dst);
			free(op);
			done(vm_ctx, &oom);
			return;
		}
		free(op->rec->disk_path);
		op->rec->disk_path = path;
	}
	free(op);
	done(vm_ctx, err);
}

static void
qemu_overlay_made(void *ctx, int status, const char *output)
{
	struct qemu_disk_op *op = ctx;
	struct ember_error err = { 0 };
	char out[1024];

	snprintf(out, sizeof(out), "%s", output);
	out[strcspn(out, "\n")] = '\0';
	if (status == 0 && rename(op->tmp, op->dst) < 0) {
		snprintf(out, sizeof(out), "cannot rename it to %s: %s", op->dst, strerror(errno));
		status = -1;
	}
	if (status != 0) {
		ember_error_set(&err, EK_BACKEND_ERROR, "check that the root filesystem is readable",
		    "qemu-img could not create an overlay on %s: %s", op->base, out);
		qemu_disk_finish(op, &err);
		return;
	}
	qemu_disk_finish(op, NULL);
}

/* qemu-img opens its target by name and follows symlinks, and the VM's
 * owner may plant names in vm_dir: the overlay is made in a fresh 0700
 * directory of root's and renamed over whatever is at disk.qcow2. */
static int
qemu_make_overlay(struct qemu_disk_op *op, const char *vm_dir, uint64_t size_mib,
    struct ember_error *err)
{
	char size[32];
	int r;

	snprintf(op->dst, sizeof(op->dst), "%s/disk.qcow2", vm_dir);
	snprintf(op->tmpdir, sizeof(op->tmpdir), "%s/.disk-XXXXXX", vm_dir);
	if (mkdtemp(op->tmpdir) == NULL) {
		int e = errno;
		op->tmpdir[0] = '\0';
		return ember_error_set(err, EK_IO, NULL, "cannot create a directory in %s: %s",
		    vm_dir, strerror(e));
	}
	snprintf(op->tmp, sizeof(op->tmp), "%s/disk.qcow2", op->tmpdir);
	snprintf(size, sizeof(size), "%lluM", (unsigned long long)size_mib);
	const char *argv[] = { op->qb->be.info->helper, "create", "-q", "-f", "qcow2", "-F", "raw",
	    "-b", op->base, op->tmp, size_mib ? size : NULL, NULL };
	r = child_run(op->qb->env->base, argv, qemu_overlay_made, op);
	if (r < 0) {
		rmdir(op->tmpdir);
		op->tmpdir[0] = op->tmp[0] = '\0';
		return ember_error_set(err, EK_BACKEND_ERROR, NULL, "cannot run qemu-img: %s",
		    strerror(-r));
	}
	return 0;
}

static struct qemu_disk_op *
qemu_disk_op_new(struct backend *be, struct vm_record *rec, void *vm_ctx,
    backend_done_fn done, struct ember_error *err)
{
	struct qemu_disk_op *op = calloc(1, sizeof(*op));

	if (op == NULL) {
		ember_error_set(err, EK_INTERNAL, NULL, "out of memory");
		return NULL;
	}
	op->qb = qb_of(be);
	op->rec = rec;
	op->vm_ctx = vm_ctx;
	op->done = done;
	return op;
}

static bool
is_own_overlay(const char *disk, const char *dir)
{
	size_t n = strlen(dir);

	return disk != NULL && strncmp(disk, dir, n) == 0 && strcmp(disk + n, "/disk.qcow2") == 0;
}

static int
qemu_create(struct backend *be, struct vm_record *rec, const char *vm_dir, void *vm_ctx,
    backend_done_fn done, struct ember_error *err)
{
	struct qemu_disk_op *op;
	struct stat st;

	if (rec->disk_path == NULL || is_own_overlay(rec->disk_path, vm_dir))
		return 1;
	/* An overlay may grow the disk, never shrink it under the filesystem. */
	if (rec->disk_size_mib != 0 && stat(rec->disk_path, &st) == 0 &&
	    (uint64_t)st.st_size > rec->disk_size_mib * 1024 * 1024)
		return ember_error_set(err, EK_INVALID_SPEC, "ask for at least the image's size",
		    "disk_size_mib %llu is smaller than the root filesystem %s (%lld MiB)",
		    (unsigned long long)rec->disk_size_mib, rec->disk_path,
		    (long long)((st.st_size + 1024 * 1024 - 1) / (1024 * 1024)));
	if ((op = qemu_disk_op_new(be, rec, vm_ctx, done, err)) == NULL)
		return -1;
	snprintf(op->base, sizeof(op->base), "%s", rec->disk_path);
	if (qemu_make_overlay(op, vm_dir, rec->disk_size_mib, err) < 0) {
		free(op);
		return -1;
	}
	return 0;
}

static void
qemu_rebased(void *ctx, int status, const char *output)
{
	struct qemu_disk_op *op = ctx;
	struct ember_error err = { 0 };

	if (status != 0) {
		unlink(op->dst);
		ember_error_set(&err, EK_BACKEND_ERROR, NULL, "qemu-img could not point %s at %s: %s",
		    op->dst, op->base, output);
		qemu_disk_finish(op, &err);
		return;
	}
	qemu_disk_finish(op, NULL);
}

/* In the child: the source's overlay copied (reflink or sparse). */
static void
qemu_copy_in_child(void *arg, void *out, size_t len)
{
	const struct qemu_disk_op *op = arg;
	int *res = out;		/* r, reflinked */

	res[0] = file_copy_sparse(op->src, op->dst, 0640, &res[1]);
}

static void
qemu_copied(void *ctx, int status, const void *out, size_t len)
{
	struct qemu_disk_op *op = ctx;
	struct ember_error err = { 0 };
	const int *res = out;
	char how[128];
	int r;

	if (len != 2 * sizeof(int) || status != 0) {
		unlink(op->dst);
		ember_error_set(&err, EK_IO, NULL, "cannot copy %s: the copying process %s", op->src,
		    child_status_text(status, how, sizeof(how)));
		qemu_disk_finish(op, &err);
		return;
	}
	if (res[0] < 0) {
		ember_error_set(&err, EK_IO, NULL, "cannot copy %s to %s: %s", op->src, op->dst,
		    strerror(-res[0]));
		qemu_disk_finish(op, &err);
		return;
	}
	log_debug("qemu: forked disk %s -> %s%s", op->src, op->dst, res[1] ? " (reflink)" : "");
	if (!op->rebase) {
		qemu_disk_finish(op, NULL);
		return;
	}
	const char *argv[] = { op->qb->be.info->helper, "rebase", "-u", "-f", "qcow2", "-F", "raw",
	    "-b", op->base, op->dst, NULL };
	if ((r = child_run(op->qb->env->base, argv, qemu_rebased, op)) < 0) {
		unlink(op->dst);
		ember_error_set(&err, EK_BACKEND_ERROR, NULL, "cannot run qemu-img: %s", strerror(-r));
		qemu_disk_finish(op, &err);
	}
}

static int
qemu_fork(struct backend *be, const struct vm_record *src, struct vm_record *child,
    const char *vm_dir, void *vm_ctx, backend_done_fn done, struct ember_error *err)
{
	char src_dir[PATH_MAX], own_base[PATH_MAX];
	const char *slash = src->disk_path ? strrchr(src->disk_path, '/') : NULL;
	struct qemu_disk_op *op;

	if (src->disk_path == NULL)
		return 1;
	if ((op = qemu_disk_op_new(be, child, vm_ctx, done, err)) == NULL)
		return -1;
	snprintf(src_dir, sizeof(src_dir), "%.*s", slash ? (int)(slash - src->disk_path) : 0,
	    src->disk_path);
	/* The child's own link to the base, when the daemon made one, is what
	 * its disk stands on (see BACKEND_OWN_BASE_DISK). */
	snprintf(own_base, sizeof(own_base), "%s/" BACKEND_OWN_BASE_DISK, vm_dir);
	bool has_own_base = access(own_base, F_OK) == 0;
	if (!is_own_overlay(src->disk_path, src_dir) || strcmp(slash, "/disk.qcow2") != 0) {
		snprintf(op->base, sizeof(op->base), "%s", has_own_base ? own_base : src->disk_path);
		if (qemu_make_overlay(op, vm_dir, 0, err) < 0) {
			free(op);
			return -1;
		}
		return 0;
	}
	/* The source's overlay holds everything it wrote; a copy of it over
	 * the same base is a disk equal to the source's at this moment. */
	snprintf(op->src, sizeof(op->src), "%s", src->disk_path);
	snprintf(op->dst, sizeof(op->dst), "%s/disk.qcow2", vm_dir);
	snprintf(op->base, sizeof(op->base), "%s", own_base);
	op->rebase = has_own_base;
	if (child_call_start(op->qb->env->base, qemu_copy_in_child, op, 2 * sizeof(int),
	    qemu_copied, op) == NULL) {
		int e = errno;
		free(op);
		return ember_error_set(err, EK_IO, NULL, "cannot start copying %s: %s",
		    src->disk_path, strerror(e));
	}
	return 0;
}

/* ---- per-VM state ---- */

static void
qemu_vm_free(struct qemu_vm *qv)
{
	if (qv == NULL)
		return;
	qmp_free(qv->qmp);
	vsock_dev_free(qv->vsock);
	hv_process_free(qv->proc);
	free(qv);
}

static void
qemu_release(struct backend *be, void *vmstate, bool detach)
{
	struct qemu_vm *qv = vmstate;

	/* emberd goes, the VM stays: a service manager may keep the vsock
	 * device's fds for the next emberd (vsock-handover.c). */
	if (qv != NULL && detach) {
		vsock_dev_detach(qv->vsock);
		qv->vsock = NULL;
	}
	qemu_vm_free(qv);
}

static void
qemu_vm_exited(void *ctx, pid_t pid, int status)
{
	struct qemu_vm *qv = ctx;
	char how[128], reason[800];
	const struct backend_host *host = qv->qb->env->host;
	void *vm_ctx = qv->vm_ctx;
	struct vm_record *rec = qv->rec;
	struct hv_exit x = hv_process_take_exit(qv->proc, status);
	struct ember_error err = { 0 };

	child_status_text(status, how, sizeof(how));
	console_reason(qv->dir, reason, sizeof(reason));
	log_info("qemu: %s (pid %d) %s", rec->name, (int)pid, how);
	if (qv->fault[0])
		ember_error_set(&err, EK_BACKEND_ERROR, "see console.log in the VM's directory",
		    "QEMU did not start: %s (QEMU %s); %s", qv->fault, how, reason);
	else
		ember_error_set(&err, EK_BACKEND_ERROR, "see console.log in the VM's directory",
		    "QEMU %s while starting; %s", how, reason);
	rec->pid = 0;
	rec->pid_start_time = 0;
	qemu_vm_free(qv);	/* the daemon's pointer to it is cleared by the callbacks */
	hv_route_exit(host, vm_ctx, &x, &err, reason, "QEMU");
}

/* ---- QMP events ---- */

static void
qemu_qmp_event(void *ctx, const char *event, json_t *data)
{
	struct qemu_vm *qv = ctx;
	const struct backend_host *host = qv->qb->env->host;

	log_debug("qemu: %s: QMP event %s", qv->rec->name, event);
	if (hv_op_current(qv->proc) != HV_OP_NONE)
		return;	/* our own operation reports the outcome */
	if (strcmp(event, "STOP") == 0) {
		qv->paused = true;
		host->status(qv->vm_ctx, VM_PAUSED, "paused by QEMU");
	} else if (strcmp(event, "RESUME") == 0) {
		qv->paused = false;
		host->status(qv->vm_ctx, VM_RUNNING, NULL);
	}
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
	hv_process_kill(qv->proc, SIGKILL);
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
	qv->paused = strcmp(status, "paused") == 0;
	hv_op_finish(qv->proc, NULL);
}

static void
qemu_qmp_ready(void *ctx, const char *err)
{
	struct qemu_vm *qv = ctx;

	if (err != NULL) {
		if (hv_op_current(qv->proc) == HV_OP_START)
			qemu_start_fail(qv, err);
		else
			log_warnx("qemu: %s: QMP: %s", qv->rec->name, err);
		return;
	}
	if (hv_op_current(qv->proc) == HV_OP_START &&
	    qmp_command(qv->qmp, "query-status", NULL, QEMU_QMP_TIMEOUT_MS,
	    qemu_status_reply, qv) < 0)
		qemu_start_fail(qv, "cannot send query-status");
}

static void
qemu_start_timeout(void *ctx)
{
	qemu_start_fail(ctx, "timed out waiting for QMP");
}

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
	const char *want = ember_config_backend_string(cfg, QEMU_NAME, "accel");
	int fd;

	if (want != NULL && strcmp(want, "auto") != 0)
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

	arg(a, qb->be.info->binary);
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
	if (rec->net.tap_fd >= 0) {
		/* network "nat": the TAP emberd made, inherited as an fd */
		arg(a, "-netdev");
		argf(a, "tap,id=net0,fd=%d", rec->net.tap_fd);
		arg(a, "-device");
		argf(a, "virtio-net-device,netdev=net0,mac=%s", rec->net.mac);
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
	argf(a, "%s%s%s%s%s", boot, has_root && strstr(boot, "root=") == NULL ?
	    " root=/dev/vda rw" : "", tsc, rec->net.kernel_arg[0] ? " " : "", rec->net.kernel_arg);
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

/* The vsock device's connections opened and closed, for the daemon. */
static void
qemu_vsock_flow(void *ctx, bool opened, uint32_t host_port, uint32_t guest_port, size_t open)
{
	struct qemu_vm *qv = ctx;
	const struct backend_host *host = qv->qb->env->host;

	if (host->vsock_flow != NULL)
		host->vsock_flow(qv->vm_ctx, opened, host_port, guest_port, open);
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
	if (qv->vsock != NULL)
		vsock_dev_set_flow_hook(qv->vsock, qemu_vsock_flow, qv);
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
	int qmp_fd = -1, console_fd = -1, vsock_fd = -1, keep[4], nkeep, n;

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
		return ember_error_set(err, EK_INTERNAL, NULL, "cannot start QEMU: out of memory");
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
	if (a == NULL) {
		ember_error_set(err, EK_INTERNAL, NULL, "cannot start QEMU: out of memory");
		goto fail;
	}
	qemu_build_argv(qb, rec, console_fd, qmp_fd, vsock_fd, a);
	qemu_log_argv(rec->name, a->argv);
	n = snprintf(hdr, sizeof(hdr), "--- emberd: starting %s ---\n", rec->name);
	if (write(console_fd, hdr, (size_t)n) < 0)
		log_debug("qemu: cannot write to console.log");
	keep[0] = qmp_fd;
	keep[1] = console_fd;
	nkeep = 2;
	if (vsock_fd >= 0)
		keep[nkeep++] = vsock_fd;
	if (rec->net.tap_fd >= 0)
		keep[nkeep++] = rec->net.tap_fd;	/* the daemon closes its own copy */
	if (hv_process_spawn(qb->env->base, &qemu_process_ops, qv, vm_ctx, a->argv, console_fd,
	    keep, (size_t)nkeep, rec, &qv->proc, err) < 0)
		goto fail;
	/* QEMU holds its ends now; ours close. */
	free(a);
	close(console_fd);
	close(qmp_fd);
	if (vsock_fd >= 0)
		close(vsock_fd);

	hv_op_begin(qv->proc, HV_OP_START, done, err);
	hv_process_start_deadline(qv->proc, QEMU_START_TIMEOUT_MS);
	qv->qmp = qmp_new(qb->env->base, qemu_qmp_event, qemu_qmp_closed, qv);
	if (qv->qmp == NULL)
		qemu_start_fail(qv, "out of memory for the QMP connection");
	else
		qmp_connect(qv->qmp, qmp_path, QEMU_START_TIMEOUT_MS, qemu_qmp_ready, qv);
	*vmstate = qv;
	log_info("qemu: %s started (pid %d, accel %s)", rec->name, (int)rec->pid,
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

/* The stop ladder's rungs: ACPI powerdown for the guest, then quit. */
static int
qemu_ask_guest(void *ctx)
{
	struct qemu_vm *qv = ctx;

	return qv->qmp == NULL ? -ENOTCONN : qmp_command(qv->qmp, "system_powerdown", NULL,
	    QEMU_QMP_TIMEOUT_MS, qemu_ignore_reply, qv);
}

static int
qemu_ask_quit(void *ctx)
{
	struct qemu_vm *qv = ctx;

	return qv->qmp == NULL ? -ENOTCONN : qmp_command(qv->qmp, "quit", NULL,
	    QEMU_QMP_TIMEOUT_MS, qemu_ignore_reply, qv);
}

static int
qemu_stop(struct backend *be, struct vm_record *rec, void *vmstate, bool force,
    unsigned timeout_s, backend_done_fn done, struct ember_error *err)
{
	struct qemu_vm *qv = vmstate;

	if (hv_op_begin(qv->proc, HV_OP_STOP, done, err) < 0)
		return -1;
	hv_process_stop(qv->proc, force, qv->paused, timeout_s, QEMU_QUIT_GRACE_S);
	return 0;
}

static void
qemu_simple_reply(void *ctx, json_t *ret, const char *qerr)
{
	struct qemu_vm *qv = ctx;
	struct ember_error err = { 0 };

	if (qerr != NULL)
		ember_error_set(&err, EK_BACKEND_ERROR, NULL, "QEMU: %s", qerr);
	else
		qv->paused = hv_op_current(qv->proc) == HV_OP_PAUSE;
	hv_op_finish(qv->proc, qerr != NULL ? &err : NULL);
}

static int
qemu_simple_command(struct qemu_vm *qv, enum hv_op op, const char *cmd,
    backend_done_fn done, struct ember_error *err)
{
	if (qv->qmp == NULL)
		return ember_error_set(err, EK_BACKEND_ERROR, NULL, "no QMP connection to QEMU");
	if (hv_op_begin(qv->proc, op, done, err) < 0)
		return -1;
	if (qmp_command(qv->qmp, cmd, NULL, QEMU_QMP_TIMEOUT_MS, qemu_simple_reply, qv) < 0) {
		hv_process_take_exit(qv->proc, 0);	/* forget the operation, not the process */
		return ember_error_set(err, EK_BACKEND_ERROR, NULL, "QMP is not connected");
	}
	return 0;
}

static int
qemu_pause(struct backend *be, struct vm_record *rec, void *vmstate, backend_done_fn done,
    struct ember_error *err)
{
	return qemu_simple_command(vmstate, HV_OP_PAUSE, "stop", done, err);
}

static int
qemu_resume(struct backend *be, struct vm_record *rec, void *vmstate, backend_done_fn done,
    struct ember_error *err)
{
	return qemu_simple_command(vmstate, HV_OP_RESUME, "cont", done, err);
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

	qv = calloc(1, sizeof(*qv));
	if (qv == NULL)
		return ember_error_set(err, EK_INTERNAL, NULL, "cannot re-adopt QEMU: out of memory");
	qv->qb = qb;
	qv->rec = rec;
	qv->vm_ctx = vm_ctx;
	qv->adopted = true;
	qv->paused = rec->status == VM_PAUSED;
	snprintf(qv->dir, sizeof(qv->dir), "%s", vm_dir);
	if (hv_process_adopt(qb->env->base, &qemu_process_ops, qv, vm_ctx, rec, &qv->proc,
	    err) < 0) {
		free(qv);
		return -1;
	}
	if (rec->vsock && rec->uds_path != NULL) {
		/* QEMU 7.2 never reconnects a vhost-user backend: the device
		 * lives on only if the previous emberd handed its fds over
		 * (service manager's fd store, or exec). */
		qv->vsock = vsock_dev_adopt(qb->env->base, rec->guest_cid, rec->uds_path,
		    rec->owner_uid, rec->name, qemu_vsock_peer, qv);
		if (qv->vsock != NULL) {
			vsock_dev_set_flow_hook(qv->vsock, qemu_vsock_flow, qv);
			log_info("qemu: %s: vsock device taken over from the previous emberd",
			    rec->name);
		}
		else {
			if (errno != ENOENT)
				log_warnx("qemu: %s: cannot take over the vsock device: %s",
				    rec->name, strerror(errno));
			unlink(rec->uds_path);
			log_warnx("qemu: %s: vsock is unavailable until the VM restarts "
			    "(QEMU cannot reconnect its vhost-user device to a new emberd)",
			    rec->name);
		}
	}
	snprintf(qmp_path, sizeof(qmp_path), "%s/qmp.sock", vm_dir);
	qv->qmp = qmp_new(qb->env->base, qemu_qmp_event, qemu_qmp_closed, qv);
	if (qv->qmp != NULL)
		qmp_connect(qv->qmp, qmp_path, QEMU_QMP_TIMEOUT_MS, qemu_adopt_ready, qv);
	else
		log_warnx("qemu: %s: re-adopted without QMP: out of memory (stop will use signals)",
		    rec->name);
	*vmstate = qv;
	return 0;
}

static int
qemu_remove(struct backend *be, struct vm_record *rec, const char *vm_dir,
    struct ember_error *err)
{
	return 0;	/* everything lives in vm_dir, which the daemon removes */
}

/* vsock counters of emberd's own device (QEMU has no other vsock). */
static void
qemu_stats(struct backend *be, void *vmstate, struct backend_vm_stats *st)
{
	struct qemu_vm *qv = vmstate;
	struct vsock_dev_stats ds;

	if (qv == NULL || qv->vsock == NULL)
		return;
	vsock_dev_stats(qv->vsock, &ds);
	st->vsock_counted = true;
	st->vsock_bytes_to_guest = ds.bytes_to_guest;
	st->vsock_bytes_from_guest = ds.bytes_from_guest;
	st->vsock_connections = ds.connections;
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
	if (rec->network != NULL && strcmp(rec->network, "nat") == 0)
		appended += per_device + 1 + VM_NET_KERNEL_ARG_MAX;
	appended += rec->vsock * per_device;
	return kernel_cmdline_check(rec->boot_args ? rec->boot_args : QEMU_DEFAULT_BOOT_ARGS,
	    appended, "QEMU", err);
}

static const struct hv_process_ops qemu_process_ops = {
	.label = "QEMU",
	.ask_guest = qemu_ask_guest,
	.ask_quit = qemu_ask_quit,
	.start_timeout = qemu_start_timeout,
	.exited = qemu_vm_exited,
};

static struct backend *
qemu_new(const struct backend_env *env)
{
	struct qemu_backend *qb = calloc(1, sizeof(*qb));

	if (qb == NULL)
		return NULL;
	qb->env = env;
	qb->be = (struct backend){
		.name = QEMU_NAME,
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
		.stats = qemu_stats,
		.free = qemu_free,
	};
	return &qb->be;
}

/* ---- configuration and registry row ---- */

static const char *const qemu_accels[] = { "auto", "kvm", "tcg", NULL };

static int
qemu_set_binary(void *walk, const struct ydoc_value *v)
{
	return ember_config_backend_set(walk, QEMU_NAME, "binary", json_string(v->str));
}

static int
qemu_set_accel(void *walk, const struct ydoc_value *v)
{
	return ember_config_backend_set(walk, QEMU_NAME, "accel", json_string(v->str));
}

static const struct ydoc_key qemu_config_keys[] = {
	{ "binary", YDOC_STRING, 0, 0, 0, NULL, qemu_set_binary, NULL },
	{ "accel", YDOC_ENUM, 0, 0, 0, qemu_accels, qemu_set_accel, NULL },
	{ NULL, 0, 0, 0, 0, NULL, NULL, NULL }
};

const struct backend_type backend_type_qemu = {
	.name = QEMU_NAME,
	.auto_priority = 10,
	.needs = 0,
	.config_keys = qemu_config_keys,
	.probe = qemu_probe,
	.create = qemu_new,
};
