/*
 * The Firecracker backend: spawns `firecracker --api-sock <vm>/firecracker.sock
 * --id <name>` in its own session, configures it through its HTTP API
 * (machine-config, boot-source, the root drive, vsock) and starts it, all
 * through libcurl's multi interface on the event loop (fc-http.c).
 * Firecracker serves the VM's hybrid vsock socket itself, so a client of
 * <vm>/vsock.sock cannot tell a Firecracker VM from a QEMU one.
 *
 * Root disks are private copies of the image's root filesystem (reflink
 * where the filesystem can, else sparse): Firecracker has no overlays. The
 * copy runs in a child process (it may take minutes for a large disk on a
 * filesystem without reflinks) and completes through create's done.
 *
 * A VM whose owner is not root gets a Firecracker running as that owner
 * (see "running as the VM's owner" below): what it opens or connects to by
 * path, such as a guest's connection to vsock.sock_<port>, it reaches with
 * the owner's rights only.
 *
 * The process itself (spawn, watch, stop ladder, adoption, the operation
 * in flight) is hv-process.c's, shared with QEMU. Configuration subtree:
 * firecracker: { binary, kvm_device, require_kvm }.
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
#include <sys/xattr.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "backend.h"
#include "child.h"
#include "config.h"
#include "fc-http.h"
#include "fileops.h"
#include "hv-process.h"
#include "dir-guard.h"
#include "log.h"
#include "net-tap.h"
#include "platform.h"
#include "probe.h"
#include "validate.h"
#include "yaml-doc.h"

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

#define FC_NAME			"firecracker"

struct fc_backend {
	struct backend be;
	const struct backend_env *env;
	struct fc_http *http;
};

struct fc_vm {
	struct fc_backend *fb;
	struct vm_record *rec;
	void *vm_ctx;
	char dir[PATH_MAX];
	char api[PATH_MAX];
	struct hv_process *proc;
	int api_pfd;		/* O_PATH of the checked API socket, or -1 */
	char api_via[32];	/* "/proc/self/fd/<api_pfd>": what curl connects to */
	int step;		/* index into the start sequence */
	const char *step_name;	/* "PUT /boot-source", for error messages */
	unsigned api_retries;	/* waiting for the API socket to appear */
	bool paused;		/* a stop need not ask a guest that cannot act */
	bool as_owner;		/* Firecracker runs as the VM's owner, not root */
	struct timeval api_deadline;
	char fault[512];	/* first failure while starting */
};

static const struct hv_process_ops fc_process_ops;

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
	const char *dev = ember_config_backend_string(cfg, FC_NAME, "kvm_device");

	if (dev == NULL)
		dev = "/dev/kvm";
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
fc_probe(const struct ember_config *cfg, struct backend_info *info)
{
	const char *binary = ember_config_backend_string(cfg, FC_NAME, "binary");
	int r;

	info->available = false;
	r = probe_find_binary(binary, "firecracker", info->binary, sizeof(info->binary));
	if (r < 0) {
		snprintf(info->reason, sizeof(info->reason), "%s not found%s",
		    binary ? binary : "firecracker", binary ? "" : " in PATH");
		return;
	}
	if (probe_binary_version(info->binary, info->version, sizeof(info->version)) < 0) {
		snprintf(info->reason, sizeof(info->reason), "%s --version failed", info->binary);
		return;
	}
	if (!ember_config_backend_bool(cfg, FC_NAME, "require_kvm", true))
		snprintf(info->note, sizeof(info->note),
		    "KVM not checked (firecracker.require_kvm: false, for test doubles)");
	else if (fc_probe_kvm(cfg, info) < 0)
		return;
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
	if (j == NULL) {
		/* NULL is also out of memory: the same string unchecked tells. */
		if ((j = json_string_nocheck(s)) == NULL)
			return ember_error_set(err, EK_INTERNAL, NULL,
			    "out of memory checking the %s path", what);
		json_decref(j);
		return ember_error_set(err, EK_INVALID_SPEC, "use a path that is valid UTF-8",
		    "the %s path is not valid UTF-8, which Firecracker's API cannot carry", what);
	}
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
	if (rec->network != NULL && strcmp(rec->network, "nat") == 0)
		appended += FC_CMDLINE_PER_DEVICE + 1 + VM_NET_KERNEL_ARG_MAX;
	return kernel_cmdline_check(args, appended, "Firecracker", err);
}

/* ---- disks ---- */

/* A root disk copy, done in a child process: what it is given and what it
 * writes back. */
struct fc_copy_job {
	char src[PATH_MAX];
	char dst[PATH_MAX];
	uint64_t size_mib;		/* grow to this; 0: keep the image's size */
};

struct fc_copy_result {
	int r;				/* 0 or -errno */
	int reflinked;
	bool too_small;			/* size_mib is below the image's size */
	char what[64];			/* the step that failed */
};

struct fc_copy {
	struct fc_copy_job job;
	struct vm_record *rec;
	void *vm_ctx;
	backend_done_fn done;
	const struct backend_host *host;
	struct event *tick;		/* measures the copy for disk_progress */
	uint64_t total;			/* the source's allocated bytes */
	int last_percent;
};

#define FC_COPY_TICK_MS 250

/* The copy's progress: what the destination holds of what the source does
 * (both allocated bytes, so a sparse copy counts what it writes). */
static void
fc_copy_tick(evutil_socket_t fd, short what, void *arg)
{
	struct fc_copy *c = arg;
	struct stat st;
	uint64_t done;
	int percent;

	if (stat(c->job.dst, &st) < 0 || c->total == 0)
		return;
	done = (uint64_t)st.st_blocks * 512;
	if (done > c->total)
		done = c->total;
	percent = (int)(done * 100 / c->total);
	if (percent == c->last_percent)
		return;
	c->last_percent = percent;
	c->host->disk_progress(c->vm_ctx, done, c->total);
}

static void
fc_copy_watch(struct fc_copy *c, struct event_base *base)
{
	struct timeval tv = { 0, FC_COPY_TICK_MS * 1000 };
	struct stat st;

	if (c->host == NULL || c->host->disk_progress == NULL || stat(c->job.src, &st) < 0)
		return;
	c->total = (uint64_t)st.st_blocks * 512;
	c->last_percent = -1;
	c->tick = event_new(base, -1, EV_PERSIST, fc_copy_tick, c);
	if (c->tick != NULL) {
		c->host->disk_progress(c->vm_ctx, 0, c->total);
		evtimer_add(c->tick, &tv);
	}
}

/* In the child: copy (reflink or sparse, made durable), then grow. */
static void
fc_copy_in_child(void *arg, void *out, size_t len)
{
	const struct fc_copy_job *job = arg;
	struct fc_copy_result *res = out;
	struct stat st;

	unlink(job->dst);
	res->r = file_copy_sparse(job->src, job->dst, 0640, &res->reflinked);
	if (res->r < 0) {
		snprintf(res->what, sizeof(res->what), "copy");
		return;
	}
	/* A larger disk_size grows the file; the guest can grow its
	 * filesystem into it (resize2fs). */
	if (job->size_mib != 0 && stat(job->dst, &st) == 0) {
		off_t want = (off_t)(job->size_mib * 1024 * 1024);
		if (want < st.st_size) {
			unlink(job->dst);
			res->too_small = true;
			res->r = -EINVAL;
			return;
		}
		if (truncate(job->dst, want) < 0) {
			res->r = -errno;
			unlink(job->dst);
			snprintf(res->what, sizeof(res->what), "grow");
		}
	}
}

static void
fc_copy_done(void *ctx, int status, const void *out, size_t len)
{
	struct fc_copy *c = ctx;
	const struct fc_copy_result *res = out;
	struct ember_error err = { 0 };
	char how[128];

	if (len != sizeof(*res) || status != 0) {
		unlink(c->job.dst);
		ember_error_set(&err, EK_IO, NULL, "cannot copy root disk %s: the copying process %s",
		    c->job.src, child_status_text(status, how, sizeof(how)));
	} else if (res->too_small)
		ember_error_set(&err, EK_INVALID_SPEC, "ask for at least the image's size",
		    "disk_size_mib %llu is smaller than the root filesystem %s",
		    (unsigned long long)c->job.size_mib, c->job.src);
	else if (res->r < 0)
		ember_error_set(&err, EK_IO, NULL, "cannot %s root disk %s to %s: %s", res->what,
		    c->job.src, c->job.dst, strerror(-res->r));
	else {
		char *path = strdup(c->job.dst);
		if (path == NULL) {
			unlink(c->job.dst);
			ember_error_set(&err, EK_INTERNAL, NULL, "out of memory");
		} else {
			log_debug("firecracker: %s: root disk %s%s", c->rec->name, c->job.dst,
			    res->reflinked ? " (reflink)" : "");
			free(c->rec->disk_path);
			c->rec->disk_path = path;
		}
	}
	backend_done_fn done = c->done;
	void *vm_ctx = c->vm_ctx;
	if (c->tick != NULL) {
		event_free(c->tick);
		if (!err.message[0] && c->last_percent != 100)
			c->host->disk_progress(vm_ctx, c->total, c->total);
	}
	free(c);
	done(vm_ctx, err.message[0] ? &err : NULL);
}

/* Starts copying src to <vm_dir>/rootfs.img for rec in a child process. */
static int
fc_copy_disk(struct fc_backend *fb, const char *src, struct vm_record *rec, const char *vm_dir,
    void *vm_ctx, backend_done_fn done, struct ember_error *err)
{
	struct fc_copy *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return ember_error_set(err, EK_INTERNAL, NULL, "out of memory");
	snprintf(c->job.src, sizeof(c->job.src), "%s", src);
	snprintf(c->job.dst, sizeof(c->job.dst), "%s/rootfs.img", vm_dir);
	c->job.size_mib = rec->disk_size_mib;
	c->rec = rec;
	c->vm_ctx = vm_ctx;
	c->done = done;
	c->host = fb->env->host;
	if (child_call_start(fb->env->base, fc_copy_in_child, &c->job,
	    sizeof(struct fc_copy_result), fc_copy_done, c) == NULL) {
		int e = errno;
		free(c);
		return ember_error_set(err, EK_IO,
		    e == EAGAIN || e == EMFILE || e == ENFILE ? "retry when the host is less busy" : NULL,
		    "cannot start copying root disk %s: %s", src, strerror(e));
	}
	fc_copy_watch(c, fb->env->base);
	return 0;
}

static int
fc_create(struct backend *be, struct vm_record *rec, const char *vm_dir, void *vm_ctx,
    backend_done_fn done, struct ember_error *err)
{
	char own[PATH_MAX];

	snprintf(own, sizeof(own), "%s/rootfs.img", vm_dir);
	if (rec->disk_path == NULL || strcmp(rec->disk_path, own) == 0)
		return 1;
	return fc_copy_disk(fb_of(be), rec->disk_path, rec, vm_dir, vm_ctx, done, err);
}

static int
fc_fork(struct backend *be, const struct vm_record *src, struct vm_record *child,
    const char *vm_dir, void *vm_ctx, backend_done_fn done, struct ember_error *err)
{
	if (src->disk_path == NULL)
		return 1;
	return fc_copy_disk(fb_of(be), src->disk_path, child, vm_dir, vm_ctx, done, err);
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
	hv_process_free(fv->proc);
	if (fv->api_pfd >= 0)
		close(fv->api_pfd);
	free(fv);
}

static void
fc_release(struct backend *be, void *vmstate, bool detach)
{
	fc_vm_free(vmstate);
}

static void
fc_vm_exited(void *ctx, pid_t pid, int status)
{
	struct fc_vm *fv = ctx;
	const struct backend_host *host = fv->fb->env->host;
	void *vm_ctx = fv->vm_ctx;
	struct hv_exit x = hv_process_take_exit(fv->proc, status);
	struct ember_error err = { 0 };
	char reason[800];

	console_reason(fv->dir, reason, sizeof(reason));
	log_info("firecracker: %s (pid %d) exited (wait status %d)", fv->rec->name, (int)pid, status);
	if (fv->fault[0])
		ember_error_set(&err, EK_BACKEND_ERROR, NULL, "%s", fv->fault);
	else
		ember_error_set(&err, EK_BACKEND_ERROR, "see console.log in the VM's directory",
		    "Firecracker exited while starting; %s", reason);
	fc_remove_sockets(fv->dir);
	fv->rec->pid = 0;
	fv->rec->pid_start_time = 0;
	fc_vm_free(fv);
	hv_route_exit(host, vm_ctx, &x, &err, reason, "Firecracker");
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

/* ---- running as the VM's owner ---- */

/*
 * Firecracker opens every file it is given by path and connects a guest's
 * connection to <uds_path>_<port> by path itself, and the VM's owner may
 * plant any name in its VM directory (dir-guard.c): a vsock.sock_<port>
 * symlink to a root-only socket would be reached with Firecracker's rights.
 * So, like Firecracker's jailer, a VM whose owner is not root gets a
 * Firecracker running as that owner (its uid, its primary group, and the
 * group of firecracker.kvm_device so it can open KVM; emberd keeps no
 * record of the owner's other groups, so it has none of them): whatever a
 * planted name points at, it is reached with the owner's rights only.
 * emberd makes what that Firecracker needs the owner's to use, and nothing
 * beyond the VM: its root disk copy (an ACL), kernel and initrd in the VM
 * directory (read), its TAP (TUNSETOWNER); the sockets it binds there are
 * checked before emberd speaks to them. Root's VMs run as root as before.
 */

/* Whether the VM directory lets its owner in (the ACL dir-guard.c sets).
 * On a filesystem without ACLs the owner can plant nothing there, and
 * Firecracker keeps root's credentials as it could not use the directory
 * as the owner. */
static bool
fc_dir_open_to_owner(const char *dir)
{
	return getxattr(dir, "system.posix_acl_access", NULL, 0) > 0;
}

/* The owner's primary group from its passwd entry, as emberd looked it up
 * off the loop when the owner connected (platform_account_gid; NSS is
 * never asked here, it may hang); "nogroup" (the kernel's overflow gid)
 * when it has none or it is not known. */
static gid_t
fc_owner_gid(uid_t uid)
{
	gid_t gid;

	if (platform_account_gid(uid, &gid) == 0)
		return gid;
	return 65534;
}

struct fc_owner_creds {
	struct hv_creds c;
	gid_t groups[1];	/* the KVM device's group */
};

/* Whether the owner's Firecracker, with c's credentials, may open the
 * device node at path for reading and writing, by its mode bits. */
static bool
fc_owner_may_open(const char *path, const struct hv_creds *c)
{
	struct stat st;
	bool in_group = false;

	if (stat(path, &st) < 0)
		return false;
	if (st.st_uid == c->uid)
		return (st.st_mode & (S_IRUSR | S_IWUSR)) == (S_IRUSR | S_IWUSR);
	in_group = st.st_gid == c->gid;
	for (size_t i = 0; i < c->ngroups; i++)
		in_group |= st.st_gid == c->groups[i];
	if (in_group)
		return (st.st_mode & (S_IRGRP | S_IWGRP)) == (S_IRGRP | S_IWGRP);
	return (st.st_mode & (S_IROTH | S_IWOTH)) == (S_IROTH | S_IWOTH);
}

/* 1 with oc filled when Firecracker runs as rec's owner, 0 when as root. */
static int
fc_owner_creds(const struct fc_backend *fb, const struct vm_record *rec, const char *dir,
    struct fc_owner_creds *oc)
{
	const char *kvm = ember_config_backend_string(fb->env->config, FC_NAME, "kvm_device");
	struct stat st;

	if (rec->owner_uid == 0 || rec->owner_uid == geteuid())
		return 0;
	if (!fc_dir_open_to_owner(dir)) {
		log_debug("firecracker: %s: %s has no ACL for uid %u; Firecracker runs as root",
		    rec->name, dir, (unsigned)rec->owner_uid);
		return 0;
	}
	memset(oc, 0, sizeof(*oc));
	oc->c.uid = rec->owner_uid;
	oc->c.gid = fc_owner_gid(rec->owner_uid);
	oc->c.groups = oc->groups;
	if (kvm == NULL)
		kvm = "/dev/kvm";
	/* Never root's group: a device of group 0 stays out of reach. */
	if (stat(kvm, &st) == 0 && S_ISCHR(st.st_mode) && st.st_gid != 0 && st.st_gid != oc->c.gid)
		oc->groups[oc->c.ngroups++] = st.st_gid;
	/* Firecracker opens /dev/net/tun for its TAP (TUNSETOWNER decides
	 * which TAP). Where only root may open the host's node, it gets a
	 * node of its own in a private mount namespace, as the jailer does. */
	oc->c.own_dev_tun = rec->net.tap[0] != '\0' && !fc_owner_may_open("/dev/net/tun", &oc->c);
	return 1;
}

/* Lets uid use path with perm (GUARD_* bits) when it is one of the VM's own
 * files: directly in dir, a regular file of emberd's (never a symlink or a
 * file the owner made), with one link when it is to be written. A file
 * others may read already needs nothing for GUARD_R. Paths elsewhere are
 * left to the owner's own rights. 0 or -errno. */
static int
fc_grant_vm_file(const char *dir, const char *path, uid_t uid, unsigned perm)
{
	size_t n = strlen(dir);
	struct stat st;
	int fd, r;

	if (path == NULL || strncmp(path, dir, n) != 0 || path[n] != '/' ||
	    strchr(path + n + 1, '/') != NULL)
		return 0;
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid() ||
	    ((perm & GUARD_W) && st.st_nlink != 1))
		r = -EPERM;
	else if (perm == GUARD_R && (st.st_mode & S_IROTH))
		r = 0;
	else
		r = guard_grant_fd(fd, uid, perm);
	close(fd);
	return r;
}

/* Before spawning Firecracker as the owner: its disk, kernel and initrd and
 * its TAP become usable by the owner. 0, or -1 with err. */
static int
fc_prepare_for_owner(struct fc_vm *fv, const struct hv_creds *c, struct ember_error *err)
{
	const struct vm_record *rec = fv->rec;
	const struct { const char *what, *path; unsigned perm; } files[] = {
		{ "root disk", rec->disk_path, GUARD_R | GUARD_W },
		{ "kernel", rec->kernel_path, GUARD_R },
		{ "initrd", rec->initrd_path, GUARD_R },
	};
	int r;

	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		if ((r = fc_grant_vm_file(fv->dir, files[i].path, c->uid, files[i].perm)) < 0)
			return ember_error_set(err, EK_IO, r == -EPERM ? "delete the VM and create it "
			    "again" : NULL, "cannot let uid %u (the VM's owner, whom Firecracker runs "
			    "as) use the %s %s: %s", (unsigned)c->uid, files[i].what, files[i].path,
			    r == -EPERM ? "it is not a file of emberd's" : strerror(-r));
	}
	if (rec->net.tap_fd >= 0 && (r = net_tap_set_owner(rec->net.tap_fd, c->uid, c->gid)) < 0)
		return ember_error_set(err, EK_IO, NULL,
		    "cannot let uid %u (the VM's owner, whom Firecracker runs as) attach TAP %s: %s",
		    (unsigned)c->uid, rec->net.tap, strerror(-r));
	return 0;
}

/* What curl connects to for the API: the socket at <dir>/firecracker.sock,
 * checked once (a socket, not a symlink, with one link, of the owner or of
 * emberd's user) and from then on always that inode through
 * /proc/self/fd, so nothing the owner puts under that name later is ever
 * spoken to. NULL with errno ENOENT (not there yet) or EPERM (not
 * Firecracker's). */
static const char *
fc_api_target(struct fc_vm *fv)
{
	struct stat st;
	int fd;

	if (fv->api_pfd >= 0)
		return fv->api_via;
	if ((fd = open(fv->api, O_PATH | O_NOFOLLOW | O_CLOEXEC)) < 0)
		return NULL;
	if (fstat(fd, &st) < 0 || !S_ISSOCK(st.st_mode) || st.st_nlink != 1 ||
	    (st.st_uid != geteuid() && st.st_uid != fv->rec->owner_uid)) {
		close(fd);
		errno = EPERM;
		return NULL;
	}
	fv->api_pfd = fd;
	snprintf(fv->api_via, sizeof(fv->api_via), "/proc/self/fd/%d", fd);
	return fv->api_via;
}

/* Firecracker, as the owner, bound vsock.sock as the owner's at PUT /vsock.
 * It becomes emberd's, 0600 plus user:<owner>:rw, as with QEMU: the owner
 * can no longer swap it (the directory is sticky), and emberd's agent
 * client, which connects only to sockets of its own user, reaches it. 0 or
 * -errno (-EPERM: not a socket of the owner's with one link, -ESTALE: the
 * name changed hands meanwhile). */
static int
fc_claim_vsock(const char *path, uid_t owner)
{
	struct stat st, now;
	char via[32];
	int fd, r;

	if ((fd = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC)) < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || !S_ISSOCK(st.st_mode) || st.st_nlink != 1 ||
	    (st.st_uid != owner && st.st_uid != geteuid())) {
		close(fd);
		return -EPERM;
	}
	snprintf(via, sizeof(via), "/proc/self/fd/%d", fd);
	if (fchownat(fd, "", geteuid(), getegid(), AT_EMPTY_PATH) < 0 || chmod(via, 0600) < 0)
		r = -errno;
	/* emberd's now, in a sticky directory: the name can no longer change
	 * hands, so when it still names this inode the ACL goes on by name. */
	else if (lstat(path, &now) < 0 || now.st_dev != st.st_dev || now.st_ino != st.st_ino)
		r = -ESTALE;
	else
		r = guard_grant(path, owner, GUARD_R | GUARD_W);
	close(fd);
	return r;
}

/* ---- start ---- */

static void fc_start_step(struct fc_vm *fv);

static void
fc_start_tick(void *ctx)
{
	fc_start_step(ctx);
}

/* A start that went wrong: kill the process; its exit reports the fault. */
static void
fc_start_fail(struct fc_vm *fv, const char *fault)
{
	if (!fv->fault[0])
		snprintf(fv->fault, sizeof(fv->fault), "%s", fault);
	log_warnx("firecracker: %s: %s", fv->rec->name, fv->fault);
	hv_process_kill(fv->proc, SIGKILL);
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
			hv_process_start_tick(fv->proc, (unsigned)(delay.tv_usec / 1000), fc_start_tick);
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
	const char *method = "PUT", *path = NULL, *via;
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
			{
				char args[4096];
				snprintf(args, sizeof(args), "%s%s%s",
				    rec->boot_args ? rec->boot_args : FC_DEFAULT_BOOT_ARGS,
				    rec->net.kernel_arg[0] ? " " : "", rec->net.kernel_arg);
				body = json_pack("{s:s, s:s}", "kernel_image_path",
				    rec->kernel_path, "boot_args", args);
			}
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
			/* network "nat": the TAP emberd made, by name */
			if (rec->net.tap[0] == '\0') {
				fv->step++;
				continue;
			}
			path = "/network-interfaces/eth0";
			body = json_pack("{s:s, s:s, s:s}", "iface_id", "eth0",
			    "host_dev_name", rec->net.tap, "guest_mac", rec->net.mac);
			break;
		case 5:
			/* Firecracker bound vsock.sock at PUT /vsock: let the VM's
			 * owner connect to it, as with QEMU (dir-guard.c). */
			if (rec->vsock && rec->uds_path != NULL && fv->as_owner &&
			    (r = fc_claim_vsock(rec->uds_path, rec->owner_uid)) < 0) {
				char what[PATH_MAX + 128];
				snprintf(what, sizeof(what), "cannot take over %s from uid %u: %s",
				    rec->uds_path, (unsigned)rec->owner_uid, r == -EPERM ?
				    "it is not a socket Firecracker bound" : strerror(-r));
				fc_start_fail(fv, what);
				return;
			}
			if (rec->vsock && rec->uds_path != NULL && !fv->as_owner &&
			    guard_grant(rec->uds_path, rec->owner_uid, GUARD_R | GUARD_W) < 0)
				log_debug("firecracker: %s: uid %u cannot be let into %s",
				    rec->name, (unsigned)rec->owner_uid, rec->uds_path);
			path = "/actions";
			body = json_pack("{s:s}", "action_type", "InstanceStart");
			break;
		default:
			log_info("firecracker: %s running (pid %d)", rec->name,
			    (int)hv_process_pid(fv->proc));
			hv_op_finish(fv->proc, NULL);
			return;
		}
		break;
	}
	fv->step_name = path;
	if ((via = fc_api_target(fv)) == NULL) {
		int e = errno;
		char what[PATH_MAX + 160];

		json_decref(body);
		if (e == ENOENT && fv->step == 0) {
			fc_start_reply(fv, 0, "", "the API socket is not there yet");
			return;
		}
		if (e == EPERM)
			snprintf(what, sizeof(what), "%s is not Firecracker's API socket (a socket of "
			    "uid %u or root, with one link); not connecting to it", fv->api,
			    (unsigned)rec->owner_uid);
		else
			snprintf(what, sizeof(what), "%s: %s", fv->api, strerror(e));
		fc_start_fail(fv, what);
		return;
	}
	text = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	r = text != NULL ? fc_http_request(fv->fb->http, via, method, path, text,
	    FC_API_TIMEOUT_MS, fc_start_reply, fv) : -ENOMEM;
	free(text);
	if (r < 0)
		fc_start_fail(fv, "cannot send a request to the Firecracker API");
}

static int
fc_start(struct backend *be, struct vm_record *rec, const char *vm_dir, void **vmstate,
    void *vm_ctx, backend_done_fn done, struct ember_error *err)
{
	struct fc_backend *fb = fb_of(be);
	struct fc_owner_creds oc;
	struct fc_vm *fv;
	int console_fd;

	/* The daemon ran fc_check (backend.check) just before. */
	if ((fv = calloc(1, sizeof(*fv))) == NULL)
		return ember_error_set(err, EK_INTERNAL, NULL, "cannot start Firecracker: out of memory");
	fv->fb = fb;
	fv->rec = rec;
	fv->vm_ctx = vm_ctx;
	fv->api_pfd = -1;
	snprintf(fv->dir, sizeof(fv->dir), "%s", vm_dir);
	snprintf(fv->api, sizeof(fv->api), "%s/firecracker.sock", vm_dir);
	fv->as_owner = fc_owner_creds(fb, rec, vm_dir, &oc) == 1;
	if (fv->as_owner && fc_prepare_for_owner(fv, &oc.c, err) < 0) {
		free(fv);
		return -1;
	}
	fc_remove_sockets(vm_dir);	/* stale ones from an earlier run */
	console_fd = console_open(vm_dir, rec->owner_uid, err);
	if (console_fd < 0) {
		free(fv);
		return -1;
	}
	const char *argv[] = { be->info->binary, "--api-sock", fv->api, "--id", rec->name, NULL };
	int r = hv_process_spawn_as(fb->env->base, &fc_process_ops, fv, vm_ctx, argv, console_fd,
	    NULL, 0, fv->as_owner ? &oc.c : NULL, rec, &fv->proc, err);
	close(console_fd);
	if (r < 0) {
		free(fv);
		return -1;
	}
	hv_op_begin(fv->proc, HV_OP_START, done, err);
	struct timeval now, span = { FC_SOCKET_WAIT_MS / 1000, (FC_SOCKET_WAIT_MS % 1000) * 1000 };
	event_base_gettimeofday_cached(fb->env->base, &now);
	evutil_timeradd(&now, &span, &fv->api_deadline);
	*vmstate = fv;
	if (fv->as_owner)
		log_info("firecracker: %s spawned (pid %d) as uid %u gid %u", rec->name, (int)rec->pid,
		    (unsigned)oc.c.uid, (unsigned)oc.c.gid);
	else
		log_info("firecracker: %s spawned (pid %d)", rec->name, (int)rec->pid);
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

/* The stop ladder's first rung: Ctrl+Alt+Del, which the guest turns into
 * a reboot and Firecracker (reboot=k) into an exit. */
static int
fc_ask_guest(void *ctx)
{
	struct fc_vm *fv = ctx;
	const char *via = fc_api_target(fv);

	if (via == NULL)
		return -1;	/* the next rung: SIGTERM */
	return fc_http_request(fv->fb->http, via, "PUT", "/actions",
	    "{\"action_type\":\"SendCtrlAltDel\"}", FC_API_TIMEOUT_MS, fc_ignore_reply, fv);
}

static int
fc_stop(struct backend *be, struct vm_record *rec, void *vmstate, bool force,
    unsigned timeout_s, backend_done_fn done, struct ember_error *err)
{
	struct fc_vm *fv = vmstate;

	if (hv_op_begin(fv->proc, HV_OP_STOP, done, err) < 0)
		return -1;
	hv_process_stop(fv->proc, force, fv->paused, timeout_s, FC_TERM_GRACE_S);
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
		hv_op_finish(fv->proc, &err);
		return;
	}
	fv->paused = hv_op_current(fv->proc) == HV_OP_PAUSE;
	hv_op_finish(fv->proc, NULL);
}

static int
fc_set_state(struct fc_vm *fv, enum hv_op op, const char *state, backend_done_fn done,
    struct ember_error *err)
{
	const char *via;
	char body[64];

	if (hv_op_begin(fv->proc, op, done, err) < 0)
		return -1;
	snprintf(body, sizeof(body), "{\"state\":\"%s\"}", state);
	if ((via = fc_api_target(fv)) == NULL || fc_http_request(fv->fb->http, via, "PATCH", "/vm",
	    body, FC_API_TIMEOUT_MS, fc_state_reply, fv) < 0) {
		hv_process_take_exit(fv->proc, 0);	/* forget the operation, not the process */
		return ember_error_set(err, EK_BACKEND_ERROR, NULL, "cannot reach the Firecracker API");
	}
	return 0;
}

static int
fc_pause(struct backend *be, struct vm_record *rec, void *vmstate, backend_done_fn done,
    struct ember_error *err)
{
	return fc_set_state(vmstate, HV_OP_PAUSE, "Paused", done, err);
}

static int
fc_resume(struct backend *be, struct vm_record *rec, void *vmstate, backend_done_fn done,
    struct ember_error *err)
{
	return fc_set_state(vmstate, HV_OP_RESUME, "Resumed", done, err);
}

/* ---- adopt ---- */

static int
fc_adopt(struct backend *be, struct vm_record *rec, const char *vm_dir, void **vmstate,
    void *vm_ctx, struct ember_error *err)
{
	struct fc_backend *fb = fb_of(be);
	struct fc_vm *fv = calloc(1, sizeof(*fv));

	if (fv == NULL)
		return ember_error_set(err, EK_INTERNAL, NULL, "cannot re-adopt: out of memory");
	fv->fb = fb;
	fv->rec = rec;
	fv->vm_ctx = vm_ctx;
	fv->paused = rec->status == VM_PAUSED;
	fv->api_pfd = -1;
	snprintf(fv->dir, sizeof(fv->dir), "%s", vm_dir);
	snprintf(fv->api, sizeof(fv->api), "%s/firecracker.sock", vm_dir);
	if (hv_process_adopt(fb->env->base, &fc_process_ops, fv, vm_ctx, rec, &fv->proc, err) < 0) {
		free(fv);
		fc_remove_sockets(vm_dir);	/* it died without removing them */
		return -1;
	}
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

static const struct hv_process_ops fc_process_ops = {
	.label = "Firecracker",
	.ask_guest = fc_ask_guest,
	.exited = fc_vm_exited,
};

static struct backend *
fc_new(const struct backend_env *env)
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
		.name = FC_NAME,
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

/* ---- configuration and registry row ---- */

static int
fc_set_binary(void *walk, const struct ydoc_value *v)
{
	return ember_config_backend_set(walk, FC_NAME, "binary", json_string(v->str));
}

static int
fc_set_kvm_device(void *walk, const struct ydoc_value *v)
{
	return ember_config_backend_set(walk, FC_NAME, "kvm_device", json_string(v->str));
}

/* false only for test doubles: the probe skips the KVM check. */
static int
fc_set_require_kvm(void *walk, const struct ydoc_value *v)
{
	return ember_config_backend_set(walk, FC_NAME, "require_kvm", json_boolean(v->b));
}

static const struct ydoc_key fc_config_keys[] = {
	{ "binary", YDOC_STRING, 0, 0, 0, NULL, fc_set_binary, NULL },
	{ "kvm_device", YDOC_STRING, YDOC_ABSOLUTE, 0, 0, NULL, fc_set_kvm_device, NULL },
	{ "require_kvm", YDOC_BOOL, 0, 0, 0, NULL, fc_set_require_kvm, NULL },
	{ NULL, 0, 0, 0, 0, NULL, NULL, NULL }
};

const struct backend_type backend_type_firecracker = {
	.name = FC_NAME,
	.auto_priority = 20,
	.needs = BACKEND_NEEDS_VMLINUX,
	.config_keys = fc_config_keys,
	.probe = fc_probe,
	.create = fc_new,
};
