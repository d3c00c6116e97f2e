/*
 * The Firecracker backend: spawns `firecracker --api-sock <vm>/firecracker.sock
 * --id <name>` in its own session, configures it through its HTTP API
 * (machine-config, boot-source, the root drive, vsock) and starts it, all
 * through libcurl's multi interface on the event loop (fc-http.c).
 * Firecracker serves the VM's hybrid vsock socket itself, so a client of
 * <vm>/vsock.sock cannot tell a Firecracker VM from a QEMU one.
 *
 * Root disks are private copies of the image's root filesystem (reflink
 * where the filesystem can, else sparse): Firecracker has no overlays.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "backend.h"
#include "child.h"
#include "config.h"
#include "fc-http.h"
#include "fileops.h"
#include "dir-guard.h"
#include "log.h"
#include "platform.h"
#include "probe.h"
#include "validate.h"

#define FC_API_TIMEOUT_MS	5000
#define FC_SOCKET_WAIT_MS	5000
#define FC_TERM_GRACE_S		3
/* Firecracker adds pci=off itself when PCI is off (it is: no --enable-pci). */
#define FC_DEFAULT_BOOT_ARGS	"console=ttyS0 reboot=k panic=1"
/* Firecracker's MachineConfig limit (MAX_SUPPORTED_VCPUS, the OpenAPI maximum). */
#define FC_MAX_VCPUS		32
/* The OpenAPI file's VsockDeviceConfig.guest_cid minimum. */
#define FC_MIN_GUEST_CID	3
/* What Firecracker v1.16 appends to boot_args on x86: " pci=off", the root
 * drive's " root=/dev/vda rw", and for every virtio-mmio device
 * " virtio_mmio.device=4K@0xc0001000:23" (addresses below 4 GiB, IRQs 5-23). */
#define FC_CMDLINE_PCI_OFF	(sizeof(" pci=off") - 1)
#define FC_CMDLINE_ROOT		(sizeof(" root=/dev/vda rw") - 1)
#define FC_CMDLINE_PER_DEVICE	(sizeof(" virtio_mmio.device=4K@0xc0001000:23") - 1)

enum fc_op { FOP_NONE, FOP_START, FOP_STOP, FOP_PAUSE, FOP_RESUME };

struct fc_backend {
	struct backend be;
	const struct backend_env *env;
	struct fc_http *http;
	char binary[PATH_MAX];
};

struct fc_vm {
	struct fc_backend *fb;
	struct vm_record *rec;
	void *vm_ctx;
	char dir[PATH_MAX];
	char api[PATH_MAX];
	pid_t pid;
	struct child_watch *watch;
	struct event *timer;
	enum fc_op op;
	backend_done_fn done;
	int step;		/* index into the start sequence */
	const char *step_name;	/* "PUT /boot-source", for error messages */
	unsigned api_retries;	/* waiting for the API socket to appear */
	int stop_stage;		/* 0 CtrlAltDel, 1 SIGTERM, 2 SIGKILL */
	struct timeval api_deadline;
	char fault[512];	/* first failure while starting */
};

static struct fc_backend *
fb_of(struct backend *be)
{
	return (struct fc_backend *)be;
}

/* ---- probe ---- */

/* The same check whatever firecracker.kvm_device names: a character
 * device answering KVM_GET_API_VERSION with 12. 0, or -1 with the reason. */
static int
fc_probe_kvm(const struct ember_config *cfg, struct backend_info *info)
{
	const char *dev = cfg->firecracker_kvm_device ? cfg->firecracker_kvm_device : "/dev/kvm";
	int version, r;

	r = probe_kvm_device(dev, &version);
	if (r == 0)
		return 0;
	if (r == -ENODEV)
		snprintf(info->reason, sizeof(info->reason),
		    "%s is not a character device (Firecracker needs KVM)", dev);
	else if (r == -EPROTO)
		snprintf(info->reason, sizeof(info->reason),
		    "%s: KVM API version %d, Firecracker needs %d", dev, version, PROBE_KVM_API_VERSION);
	else if (r == -ENOTTY || r == -EINVAL)
		snprintf(info->reason, sizeof(info->reason),
		    "%s is not a KVM device (KVM_GET_API_VERSION: %s)", dev, strerror(-r));
	else
		snprintf(info->reason, sizeof(info->reason), "%s: %s (Firecracker needs KVM)", dev,
		    strerror(-r));
	return -1;
}

static void
fc_probe(struct backend *be, struct backend_info *info)
{
	struct fc_backend *fb = fb_of(be);
	const struct ember_config *cfg = fb->env->config;
	int r;

	info->available = false;
	r = probe_find_binary(cfg->firecracker_binary, "firecracker", info->binary,
	    sizeof(info->binary));
	if (r < 0) {
		snprintf(info->reason, sizeof(info->reason), "%s not found%s",
		    cfg->firecracker_binary ? cfg->firecracker_binary : "firecracker",
		    cfg->firecracker_binary ? "" : " in PATH");
		return;
	}
	if (probe_binary_version(info->binary, info->version, sizeof(info->version)) < 0) {
		snprintf(info->reason, sizeof(info->reason), "%s --version failed", info->binary);
		return;
	}
	if (!cfg->firecracker_require_kvm)
		snprintf(info->note, sizeof(info->note),
		    "KVM not checked (firecracker.require_kvm: false, for test doubles)");
	else if (fc_probe_kvm(cfg, info) < 0)
		return;
	snprintf(fb->binary, sizeof(fb->binary), "%s", info->binary);
	info->available = true;
}

/* ---- checks ---- */

/* Whether s can go into a JSON string at all (Firecracker's API is UTF-8). */
static int
fc_check_utf8(const char *what, const char *s, struct ember_error *err)
{
	json_t *j;

	if (s == NULL)
		return 0;
	j = json_string(s);
	if (j == NULL)
		return ember_error_set(err, EK_INVALID_SPEC, "use a path that is valid UTF-8",
		    "the %s path is not valid UTF-8, which Firecracker's API cannot carry", what);
	json_decref(j);
	return 0;
}

/* Everything the start sequence will send, against the OpenAPI file's
 * constraints and Firecracker's own checks, so that nothing is spawned
 * only to be refused with a 400. */
static int
fc_check(struct backend *be, const struct vm_record *rec, struct ember_error *err)
{
	const char *args = rec->boot_args ? rec->boot_args : FC_DEFAULT_BOOT_ARGS;
	size_t appended = FC_CMDLINE_PCI_OFF;

	if (rec->cpus < 1 || rec->cpus > FC_MAX_VCPUS)
		return ember_error_set(err, EK_INVALID_SPEC,
		    "use at most 32 cpus with Firecracker, or the qemu backend",
		    "cpus %u is outside Firecracker's range (vcpu_count 1 to %d)", rec->cpus,
		    FC_MAX_VCPUS);
	if (rec->memory_mib == 0)
		return ember_error_set(err, EK_INVALID_SPEC, NULL,
		    "Firecracker needs a memory size above 0 MiB");
	if (rec->kernel_path == NULL)
		return ember_error_set(err, EK_INVALID_SPEC, "create it with --image or --kernel",
		    "VM \"%s\" has no kernel", rec->name);
	/* guest_cid is 0 until the CID is allocated (after this check on create). */
	if (rec->vsock && rec->guest_cid != 0 && rec->guest_cid < FC_MIN_GUEST_CID)
		return ember_error_set(err, EK_INTERNAL, NULL,
		    "guest CID %u is reserved; Firecracker takes CIDs from %d", rec->guest_cid,
		    FC_MIN_GUEST_CID);
	if (fc_check_utf8("kernel", rec->kernel_path, err) < 0 ||
	    fc_check_utf8("initrd", rec->initrd_path, err) < 0 ||
	    fc_check_utf8("root disk", rec->disk_path, err) < 0 ||
	    fc_check_utf8("vsock socket", rec->vsock ? rec->uds_path : NULL, err) < 0)
		return -1;
	if (rec->disk_path != NULL)
		appended += FC_CMDLINE_ROOT + FC_CMDLINE_PER_DEVICE;
	if (rec->vsock)
		appended += FC_CMDLINE_PER_DEVICE;
	return kernel_cmdline_check(args, appended, "Firecracker", err);
}

/* ---- disks ---- */

static int
fc_copy_disk(const char *src, struct vm_record *rec, const char *vm_dir,
    struct ember_error *err)
{
	char dst[PATH_MAX];
	int reflinked, r;

	snprintf(dst, sizeof(dst), "%s/rootfs.img", vm_dir);
	unlink(dst);
	r = file_copy_sparse(src, dst, 0640, &reflinked);
	if (r < 0)
		return ember_error_set(err, EK_IO, NULL, "cannot copy root disk %s: %s", src,
		    strerror(-r));
	/* A larger disk_size grows the file; the guest can grow its
	 * filesystem into it (resize2fs). */
	struct stat st;
	if (rec->disk_size_mib != 0 && stat(dst, &st) == 0) {
		off_t want = (off_t)(rec->disk_size_mib * 1024 * 1024);
		if (want < st.st_size) {
			unlink(dst);
			return ember_error_set(err, EK_INVALID_SPEC, "ask for at least the image's size",
			    "disk_size_mib %llu is smaller than the root filesystem %s",
			    (unsigned long long)rec->disk_size_mib, src);
		}
		if (truncate(dst, want) < 0) {
			int e = errno;
			unlink(dst);
			return ember_error_set(err, EK_IO, NULL, "cannot grow %s: %s", dst, strerror(e));
		}
	}
	log_debug("firecracker: %s: root disk %s%s", rec->name, dst, reflinked ? " (reflink)" : "");
	free(rec->disk_path);
	rec->disk_path = strdup(dst);
	return 0;
}

static int
fc_create(struct backend *be, struct vm_record *rec, const char *vm_dir,
    struct ember_error *err)
{
	char own[PATH_MAX];

	snprintf(own, sizeof(own), "%s/rootfs.img", vm_dir);
	if (rec->disk_path == NULL || strcmp(rec->disk_path, own) == 0)
		return 0;
	char src[PATH_MAX];
	snprintf(src, sizeof(src), "%s", rec->disk_path);
	return fc_copy_disk(src, rec, vm_dir, err);
}

static int
fc_fork(struct backend *be, const struct vm_record *src, struct vm_record *child,
    const char *vm_dir, struct ember_error *err)
{
	return src->disk_path == NULL ? 0 : fc_copy_disk(src->disk_path, child, vm_dir, err);
}

/* ---- per-VM state ---- */

/* Removes the API socket and the vsock sockets Firecracker left. */
static void
fc_remove_sockets(const char *dir)
{
	char path[PATH_MAX];
	struct dirent *de;
	DIR *d;

	snprintf(path, sizeof(path), "%s/firecracker.sock", dir);
	unlink(path);
	d = opendir(dir);
	while (d != NULL && (de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, "vsock.sock") == 0 ||
		    strncmp(de->d_name, "vsock.sock_", 11) == 0) {
			snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
			unlink(path);
		}
	}
	if (d != NULL)
		closedir(d);
}

static void
fc_vm_free(struct fc_vm *fv)
{
	if (fv == NULL)
		return;
	fc_http_cancel(fv->fb->http, fv);
	child_watch_free(fv->watch);
	if (fv->timer != NULL)
		event_free(fv->timer);
	free(fv);
}

static void
fc_release(struct backend *be, void *vmstate, bool detach)
{
	fc_vm_free(vmstate);
}

static void
fc_kill(struct fc_vm *fv, int sig)
{
	/* Through the pidfd: never a recycled pid. */
	if (child_watch_kill(fv->watch, sig) < 0 && errno != ESRCH)
		log_warn("firecracker: kill %d", (int)fv->pid);
}

static void
fc_vm_exited(void *ctx, pid_t pid, int status)
{
	struct fc_vm *fv = ctx;
	const struct backend_host *host = fv->fb->env->host;
	void *vm_ctx = fv->vm_ctx;
	enum fc_op op = fv->op;
	backend_done_fn done = fv->done;
	char reason[800], fault[512];

	console_reason(fv->dir, reason, sizeof(reason));
	snprintf(fault, sizeof(fault), "%s", fv->fault);
	log_info("firecracker: %s (pid %d) exited (wait status %d)", fv->rec->name, (int)pid, status);
	fc_remove_sockets(fv->dir);
	fv->rec->pid = 0;
	fv->rec->pid_start_time = 0;
	fc_vm_free(fv);

	if (op == FOP_START) {
		struct ember_error err = { 0 };
		if (fault[0])
			ember_error_set(&err, EK_BACKEND_ERROR, NULL, "%s", fault);
		else
			ember_error_set(&err, EK_BACKEND_ERROR, "see console.log in the VM's directory",
			    "Firecracker exited while starting; %s", reason);
		done(vm_ctx, &err);
		return;
	}
	host->exited(vm_ctx, status, status == 0 || op == FOP_STOP ? NULL : reason);
	/* A stop is done; any other operation was cut short by the exit. */
	if (done != NULL && op == FOP_STOP)
		done(vm_ctx, NULL);
	else if (done != NULL) {
		struct ember_error err = { 0 };
		ember_error_set(&err, EK_BACKEND_ERROR, NULL, "Firecracker exited during the operation");
		done(vm_ctx, &err);
	}
}

static void
fc_finish_op(struct fc_vm *fv, const struct ember_error *err)
{
	backend_done_fn done = fv->done;

	fv->op = FOP_NONE;
	fv->done = NULL;
	evtimer_del(fv->timer);
	if (done != NULL)
		done(fv->vm_ctx, err);
}

/* Firecracker's error bodies are {"fault_message": "..."}. */
static void
fc_fault_text(long status, const char *body, const char *curl_err, char *out, size_t len)
{
	json_t *doc;
	const char *fault;

	if (curl_err != NULL) {
		snprintf(out, len, "no answer from the Firecracker API: %s", curl_err);
		return;
	}
	doc = json_loads(body, 0, NULL);
	fault = json_string_value(json_object_get(doc, "fault_message"));
	snprintf(out, len, "Firecracker answered %ld: %s", status,
	    fault != NULL ? fault : (body[0] ? body : "(no body)"));
	json_decref(doc);
}

/* ---- start ---- */

static void fc_start_step(struct fc_vm *fv);

/* A start that went wrong: kill the process; its exit reports the fault. */
static void
fc_start_fail(struct fc_vm *fv, const char *fault)
{
	if (!fv->fault[0])
		snprintf(fv->fault, sizeof(fv->fault), "%s", fault);
	log_warnx("firecracker: %s: %s", fv->rec->name, fv->fault);
	fc_kill(fv, SIGKILL);
}

static void
fc_start_reply(void *ctx, long status, const char *body, const char *curl_err)
{
	struct fc_vm *fv = ctx;
	char fault[512];
	struct timeval now;

	if (curl_err != NULL && fv->step == 0) {
		/* The API socket may not be up yet: retry until the deadline,
		 * soon at first (it usually appears within milliseconds). */
		event_base_gettimeofday_cached(fv->fb->env->base, &now);
		if (evutil_timercmp(&now, &fv->api_deadline, <)) {
			long us = 1000L << (fv->api_retries < 5 ? fv->api_retries : 5);
			struct timeval delay = { 0, us > 20000 ? 20000 : us };
			fv->api_retries++;
			evtimer_add(fv->timer, &delay);
			return;
		}
	}
	if (curl_err != NULL || status < 200 || status > 299) {
		char what[600];
		fc_fault_text(status, body, curl_err, fault, sizeof(fault));
		snprintf(what, sizeof(what), "%s: %s", fv->step_name, fault);
		fc_start_fail(fv, what);
		return;
	}
	fv->step++;
	fc_start_step(fv);
}

/* The configuration sequence, one request per step; each answer starts the
 * next. Bodies follow Firecracker's OpenAPI schema exactly. */
static void
fc_start_step(struct fc_vm *fv)
{
	const struct vm_record *rec = fv->rec;
	const char *method = "PUT", *path = NULL;
	json_t *body = NULL;
	char *text;
	int r;

	for (;;) {
		switch (fv->step) {
		case 0:
			path = "/machine-config";
			body = json_pack("{s:I, s:I}", "vcpu_count", (json_int_t)rec->cpus,
			    "mem_size_mib", (json_int_t)rec->memory_mib);
			break;
		case 1:
			/* No root=: Firecracker appends "root=/dev/vda rw" for the
			 * root drive itself (fc_check counts it). */
			path = "/boot-source";
			body = json_pack("{s:s, s:s}", "kernel_image_path", rec->kernel_path,
			    "boot_args", rec->boot_args ? rec->boot_args : FC_DEFAULT_BOOT_ARGS);
			if (rec->initrd_path != NULL)
				json_object_set_new(body, "initrd_path", json_string(rec->initrd_path));
			break;
		case 2:
			if (rec->disk_path == NULL) {
				fv->step++;
				continue;
			}
			path = "/drives/rootfs";
			body = json_pack("{s:s, s:s, s:b, s:b}", "drive_id", "rootfs",
			    "path_on_host", rec->disk_path, "is_root_device", 1, "is_read_only", 0);
			break;
		case 3:
			if (!rec->vsock || rec->uds_path == NULL) {
				fv->step++;
				continue;
			}
			path = "/vsock";
			body = json_pack("{s:I, s:s}", "guest_cid", (json_int_t)rec->guest_cid,
			    "uds_path", rec->uds_path);
			break;
		case 4:
			/* Firecracker bound vsock.sock (as root) at PUT /vsock: let
			 * the VM's owner connect to it, as with QEMU (dir-guard.c). */
			if (rec->vsock && rec->uds_path != NULL &&
			    guard_grant(rec->uds_path, rec->owner_uid, GUARD_R | GUARD_W) < 0)
				log_debug("firecracker: %s: uid %u cannot be let into %s",
				    rec->name, (unsigned)rec->owner_uid, rec->uds_path);
			path = "/actions";
			body = json_pack("{s:s}", "action_type", "InstanceStart");
			break;
		default:
			log_info("firecracker: %s running (pid %d)", rec->name, (int)fv->pid);
			fc_finish_op(fv, NULL);
			return;
		}
		break;
	}
	fv->step_name = path;
	text = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	r = text != NULL ? fc_http_request(fv->fb->http, fv->api, method, path, text,
	    FC_API_TIMEOUT_MS, fc_start_reply, fv) : -ENOMEM;
	free(text);
	if (r < 0)
		fc_start_fail(fv, "cannot send a request to the Firecracker API");
}

static void fc_timer_cb(evutil_socket_t fd, short what, void *arg);

static int
fc_start(struct backend *be, struct vm_record *rec, const char *vm_dir, void **vmstate,
    void *vm_ctx, backend_done_fn done, struct ember_error *err)
{
	struct fc_backend *fb = fb_of(be);
	struct fc_vm *fv;
	char api[PATH_MAX];
	int console_fd;
	pid_t pid;

	/* The daemon ran fc_check (backend.check) just before. */
	snprintf(api, sizeof(api), "%s/firecracker.sock", vm_dir);
	fc_remove_sockets(vm_dir);	/* stale ones from an earlier run */
	console_fd = console_open(vm_dir, rec->owner_uid, err);
	if (console_fd < 0)
		return -1;
	const char *argv[] = { fb->binary, "--api-sock", api, "--id", rec->name, NULL };
	struct child_spawn_opts o = {
		.argv = argv, .stdout_fd = console_fd, .stderr_fd = console_fd, .new_session = true,
	};
	pid = child_spawn(&o);
	close(console_fd);
	if (pid < 0)
		return ember_error_set(err, EK_BACKEND_ERROR, NULL, "cannot start %s: %s",
		    fb->binary, strerror((int)-pid));
	fv = calloc(1, sizeof(*fv));
	if (fv == NULL)
		fatalx("out of memory");
	fv->fb = fb;
	fv->rec = rec;
	fv->vm_ctx = vm_ctx;
	fv->pid = pid;
	fv->op = FOP_START;
	fv->done = done;
	snprintf(fv->dir, sizeof(fv->dir), "%s", vm_dir);
	snprintf(fv->api, sizeof(fv->api), "%s", api);
	rec->pid = pid;
	if (platform_process_start_time(pid, &rec->pid_start_time) < 0)
		rec->pid_start_time = 0;
	fv->watch = child_watch_new(fb->env->base, pid, fc_vm_exited, fv);
	if (fv->watch == NULL)
		fatal("firecracker: cannot watch our own child %d", (int)pid);
	fv->timer = evtimer_new(fb->env->base, fc_timer_cb, fv);
	struct timeval now, span = { FC_SOCKET_WAIT_MS / 1000, (FC_SOCKET_WAIT_MS % 1000) * 1000 };
	event_base_gettimeofday_cached(fb->env->base, &now);
	evutil_timeradd(&now, &span, &fv->api_deadline);
	*vmstate = fv;
	log_info("firecracker: %s spawned (pid %d)", rec->name, (int)pid);
	fc_start_step(fv);
	return 0;
}

/* ---- stop, pause, resume ---- */

static void
fc_ignore_reply(void *ctx, long status, const char *body, const char *curl_err)
{
	struct fc_vm *fv = ctx;
	char fault[512];

	if (curl_err != NULL || status < 200 || status > 299) {
		fc_fault_text(status, body, curl_err, fault, sizeof(fault));
		log_info("firecracker: %s: PUT /actions SendCtrlAltDel: %s", fv->rec->name, fault);
	}
}

/* Start: the API-socket retry tick. Stop: CtrlAltDel -> SIGTERM -> SIGKILL. */
static void
fc_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct fc_vm *fv = arg;

	if (fv->op == FOP_START) {
		fc_start_step(fv);
		return;
	}
	if (fv->op != FOP_STOP)
		return;
	if (fv->stop_stage == 0) {
		fv->stop_stage = 1;
		log_info("firecracker: %s did not shut down in time; sending SIGTERM", fv->rec->name);
		fc_kill(fv, SIGTERM);
		struct timeval delay = { FC_TERM_GRACE_S, 0 };
		evtimer_add(fv->timer, &delay);
		return;
	}
	fv->stop_stage = 2;
	log_info("firecracker: %s still running; killing it", fv->rec->name);
	fc_kill(fv, SIGKILL);
}

static int
fc_stop(struct backend *be, struct vm_record *rec, void *vmstate, bool force,
    unsigned timeout_s, backend_done_fn done, struct ember_error *err)
{
	struct fc_vm *fv = vmstate;

	if (fv->op != FOP_NONE)
		return ember_error_set(err, EK_BUSY, NULL, "Firecracker is busy");
	fv->op = FOP_STOP;
	fv->done = done;
	if (force || timeout_s == 0) {
		fv->stop_stage = 2;
		fc_kill(fv, SIGKILL);
		return 0;
	}
	fv->stop_stage = 0;
	if (fc_http_request(fv->fb->http, fv->api, "PUT", "/actions",
	    "{\"action_type\":\"SendCtrlAltDel\"}", FC_API_TIMEOUT_MS, fc_ignore_reply, fv) < 0) {
		fv->stop_stage = 1;
		fc_kill(fv, SIGTERM);
		timeout_s = FC_TERM_GRACE_S;
	}
	struct timeval delay = { timeout_s, 0 };
	evtimer_add(fv->timer, &delay);
	return 0;
}

static void
fc_state_reply(void *ctx, long status, const char *body, const char *curl_err)
{
	struct fc_vm *fv = ctx;
	struct ember_error err = { 0 };
	char fault[512];

	if (curl_err != NULL || status < 200 || status > 299) {
		fc_fault_text(status, body, curl_err, fault, sizeof(fault));
		ember_error_set(&err, EK_BACKEND_ERROR, NULL, "PATCH /vm: %s", fault);
		fc_finish_op(fv, &err);
		return;
	}
	fc_finish_op(fv, NULL);
}

static int
fc_set_state(struct fc_vm *fv, enum fc_op op, const char *state, backend_done_fn done,
    struct ember_error *err)
{
	char body[64];

	if (fv->op != FOP_NONE)
		return ember_error_set(err, EK_BUSY, NULL, "Firecracker is busy");
	snprintf(body, sizeof(body), "{\"state\":\"%s\"}", state);
	fv->op = op;
	fv->done = done;
	if (fc_http_request(fv->fb->http, fv->api, "PATCH", "/vm", body, FC_API_TIMEOUT_MS,
	    fc_state_reply, fv) < 0) {
		fv->op = FOP_NONE;
		fv->done = NULL;
		return ember_error_set(err, EK_BACKEND_ERROR, NULL, "cannot reach the Firecracker API");
	}
	return 0;
}

static int
fc_pause(struct backend *be, struct vm_record *rec, void *vmstate, backend_done_fn done,
    struct ember_error *err)
{
	return fc_set_state(vmstate, FOP_PAUSE, "Paused", done, err);
}

static int
fc_resume(struct backend *be, struct vm_record *rec, void *vmstate, backend_done_fn done,
    struct ember_error *err)
{
	return fc_set_state(vmstate, FOP_RESUME, "Resumed", done, err);
}

/* ---- adopt ---- */

static int
fc_adopt(struct backend *be, struct vm_record *rec, const char *vm_dir, void **vmstate,
    void *vm_ctx, struct ember_error *err)
{
	struct fc_backend *fb = fb_of(be);
	struct fc_vm *fv;

	if (rec->pid <= 0 || platform_process_matches(rec->pid, rec->pid_start_time) != 1) {
		fc_remove_sockets(vm_dir);	/* it died without removing them */
		return ember_error_set(err, EK_BACKEND_ERROR, NULL,
		    "Firecracker (pid %d) is gone; it ended while emberd was not running", (int)rec->pid);
	}
	fv = calloc(1, sizeof(*fv));
	if (fv == NULL)
		fatalx("out of memory");
	fv->fb = fb;
	fv->rec = rec;
	fv->vm_ctx = vm_ctx;
	fv->pid = rec->pid;
	snprintf(fv->dir, sizeof(fv->dir), "%s", vm_dir);
	snprintf(fv->api, sizeof(fv->api), "%s/firecracker.sock", vm_dir);
	fv->watch = child_watch_new(fb->env->base, rec->pid, fc_vm_exited, fv);
	if (fv->watch == NULL) {
		free(fv);
		return ember_error_set(err, EK_BACKEND_ERROR, NULL, "Firecracker (pid %d) is gone",
		    (int)rec->pid);
	}
	fv->timer = evtimer_new(fb->env->base, fc_timer_cb, fv);
	*vmstate = fv;
	return 0;
}

static int
fc_remove(struct backend *be, struct vm_record *rec, const char *vm_dir,
    struct ember_error *err)
{
	fc_remove_sockets(vm_dir);
	return 0;
}

static void
fc_free(struct backend *be)
{
	struct fc_backend *fb = fb_of(be);

	fc_http_free(fb->http);
	free(fb);
}

struct backend *
backend_firecracker_new(const struct backend_env *env)
{
	struct fc_backend *fb = calloc(1, sizeof(*fb));

	if (fb == NULL)
		return NULL;
	fb->env = env;
	fb->http = fc_http_new(env->base);
	if (fb->http == NULL) {
		free(fb);
		return NULL;
	}
	fb->be = (struct backend){
		.name = "firecracker",
		.probe = fc_probe,
		.check = fc_check,
		.create = fc_create,
		.fork = fc_fork,
		.start = fc_start,
		.stop = fc_stop,
		.pause = fc_pause,
		.resume = fc_resume,
		.adopt = fc_adopt,
		.release = fc_release,
		.remove = fc_remove,
		.free = fc_free,
	};
	return &fb->be;
}
