/*
 * Per-user quotas (see quota.h). VMs, CIDs, vCPUs and memory are counted
 * from the registry, which is in memory. Disk is kept as a tally, so a
 * check never reads the image store: each image's size is measured once
 * (at the first check after startup, which walks images/, then when an
 * import stores one) and forgotten when it is deleted; each VM's disk size
 * is measured once and kept with the VM. Work in flight (an import, a
 * create or fork still copying) holds what it was checked for until it is
 * listed or fails, so concurrent requests cannot each pass a limit that
 * their sum exceeds.
 *
 * Disk is counted as what the guest or the store may come to occupy, which
 * is knowable before anything is written: an image counts the apparent size
 * of its files (a sparse root filesystem can be filled up to it); a VM's
 * root disk counts its disk_size_mib when it asked for one, else the size of
 * the root filesystem of its image (a qcow2 overlay or a sparse copy grows
 * up to that), else the apparent size of its own disk file. Blocks actually
 * allocated (st_blocks) would let a user reserve terabytes that stay empty
 * until its guests fill them.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config.h"
#include "control.h"
#include "daemon.h"
#include "fsutil.h"
#include "log.h"
#include "quota.h"
#include "validate.h"
#include "vm.h"

#define MIB (1024ULL * 1024)

static uint64_t
bytes_to_mib(uint64_t bytes)
{
	return bytes / MIB + (bytes % MIB != 0);
}

static uint64_t
file_size(const char *path)
{
	struct stat st;

	return path != NULL && stat(path, &st) == 0 && S_ISREG(st.st_mode) ?
	    (uint64_t)st.st_size : 0;
}

/* The size of the root filesystem image_doc names, in bytes. */
static uint64_t
image_rootfs_bytes(json_t *image_doc)
{
	return file_size(json_string_value(json_object_get(image_doc, "rootfs")));
}

static uint64_t
image_rootfs_bytes_by_name(struct ember_daemon *d, const char *name)
{
	char path[PATH_MAX], errbuf[128];
	json_t *doc = NULL;
	uint64_t bytes = 0;

	if (name == NULL || !image_name_valid(name))
		return 0;
	snprintf(path, sizeof(path), "%s/images/%s/image.json", d->state_dir, name);
	if (read_json_file(path, &doc, errbuf, sizeof(errbuf)) == 0)
		bytes = image_rootfs_bytes(doc);
	json_decref(doc);
	return bytes;
}

/* A VM's disk, measured the first time it is asked for (a VM's disk size
 * does not change) and kept in vm->quota_disk_mib. */
static uint64_t
vm_disk_mib(struct ember_daemon *d, struct vm *vm)
{
	uint64_t bytes;

	if (vm->rec.disk_size_mib != 0)
		return vm->rec.disk_size_mib;
	if (vm->rec.disk_path == NULL)
		return 0;
	if (vm->quota_disk_mib != 0)
		return vm->quota_disk_mib;
	bytes = image_rootfs_bytes_by_name(d, vm->rec.image);
	if (bytes == 0)
		bytes = file_size(vm->rec.disk_path);
	vm->quota_disk_mib = bytes_to_mib(bytes);
	return vm->quota_disk_mib;
}

/* ---- the image tally ---------------------------------------------------- */

struct image_tally {
	char name[64];
	uid_t owner;
	uint64_t mib;
};

/* The images of one daemon (unit tests make several in turn). */
static struct {
	const struct ember_daemon *of;
	struct image_tally *v;
	size_t n, cap;
} images;

/* Apparent size of the files in images/<name>/, or -ENOENT with *owner
 * unset when it holds no readable image.json (-ENOMEM: out of memory). */
static int
image_measure(struct ember_daemon *d, const char *name, uid_t *owner, uint64_t *mib)
{
	char path[PATH_MAX], errbuf[128];
	json_t *doc = NULL, *jowner;
	struct dirent *fe;
	uint64_t bytes = 0;
	DIR *img;
	int r;

	if (!image_name_valid(name))
		return -EINVAL;
	snprintf(path, sizeof(path), "%s/images/%s/image.json", d->state_dir, name);
	if ((r = read_json_file(path, &doc, errbuf, sizeof(errbuf))) < 0)
		return r == -ENOMEM ? r : -ENOENT;
	jowner = json_object_get(doc, "owner_uid");
	*owner = json_is_integer(jowner) ? (uid_t)json_integer_value(jowner) : 0;
	json_decref(doc);
	snprintf(path, sizeof(path), "%s/images/%s", d->state_dir, name);
	if ((img = opendir(path)) == NULL)
		return -errno;
	while ((fe = readdir(img)) != NULL) {
		char file[PATH_MAX];
		if (fe->d_name[0] == '.')
			continue;
		snprintf(file, sizeof(file), "%s/%s", path, fe->d_name);
		bytes += file_size(file);
	}
	closedir(img);
	*mib = bytes_to_mib(bytes);
	return 0;
}

static struct image_tally *
image_tally_find(const char *name)
{
	for (size_t i = 0; i < images.n; i++)
		if (strcmp(images.v[i].name, name) == 0)
			return &images.v[i];
	return NULL;
}

/* 0, or -ENOMEM (the tally then lacks the image). */
static int
image_tally_put(const char *name, uid_t owner, uint64_t mib)
{
	struct image_tally *t = image_tally_find(name);

	if (t == NULL) {
		if (images.n == images.cap) {
			size_t cap = images.cap ? images.cap * 2 : 16;
			struct image_tally *v = realloc(images.v, cap * sizeof(*v));
			if (v == NULL)
				return -ENOMEM;
			images.v = v;
			images.cap = cap;
		}
		t = &images.v[images.n++];
		snprintf(t->name, sizeof(t->name), "%s", name);
	}
	t->owner = owner;
	t->mib = mib;
	return 0;
}

/* The tally of d's images, measured from images/ the first time. -1 when
 * out of memory: the tally is left unloaded, so the next call measures
 * again rather than count too little. */
static int
images_tally_load(struct ember_daemon *d)
{
	char path[PATH_MAX];
	struct dirent *de;
	DIR *dir;
	int r = 0;

	if (images.of == d)
		return 0;
	images.of = d;
	images.n = 0;
	snprintf(path, sizeof(path), "%s/images", d->state_dir);
	if ((dir = opendir(path)) == NULL)
		return 0;
	while (r != -ENOMEM && (de = readdir(dir)) != NULL) {
		uid_t owner;
		uint64_t mib;

		if (de->d_name[0] == '.')
			continue;
		if ((r = image_measure(d, de->d_name, &owner, &mib)) == 0)
			r = image_tally_put(de->d_name, owner, mib);
	}
	closedir(dir);
	if (r == -ENOMEM) {
		images.of = NULL;
		images.n = 0;
		return -1;
	}
	return 0;
}

void
quota_image_stored(struct ember_daemon *d, const char *name)
{
	uid_t owner;
	uint64_t mib;
	int r;

	if (images.of != d)
		return;	/* not loaded yet: the first check measures it with the rest */
	if ((r = image_measure(d, name, &owner, &mib)) == 0)
		r = image_tally_put(name, owner, mib);
	if (r == -ENOMEM) {
		log_warnx("quota: out of memory counting image %s; the next check measures "
		    "images/ again", name);
		images.of = NULL;
	} else if (r < 0)
		log_debug("quota: image %s could not be measured", name);
}

void
quota_image_deleted(struct ember_daemon *d, const char *name)
{
	struct image_tally *t;

	if (images.of != d || (t = image_tally_find(name)) == NULL)
		return;
	*t = images.v[--images.n];
}

static uint64_t
images_mib_of(struct ember_daemon *d, uid_t uid)
{
	uint64_t total = 0;

	(void)images_tally_load(d);	/* see quota_use_of */
	for (size_t i = 0; i < images.n; i++)
		if (images.v[i].owner == uid)
			total += images.v[i].mib;
	return total;
}

void
quota_forget(struct ember_daemon *d)
{
	if (images.of != d)
		return;
	free(images.v);
	memset(&images, 0, sizeof(images));
}

/* ---- work in flight ----------------------------------------------------- */

struct quota_hold {
	struct quota_hold *next;
	uid_t uid;
	struct quota_use use;
};

static struct quota_hold *holds;

static void
holds_add_to(uid_t uid, struct quota_use *use)
{
	for (const struct quota_hold *h = holds; h != NULL; h = h->next) {
		if (h->uid != uid)
			continue;
		use->vms += h->use.vms;
		use->vcpus += h->use.vcpus;
		use->memory_mib += h->use.memory_mib;
		use->disk_mib += h->use.disk_mib;
		use->cids += h->use.cids;
	}
}

void
quota_release(struct quota_hold *hold)
{
	for (struct quota_hold **p = &holds; hold != NULL && *p != NULL; p = &(*p)->next)
		if (*p == hold) {
			*p = hold->next;
			break;
		}
	free(hold);
}

/* ---- use and checks ----------------------------------------------------- */

/* Without the image tally (out of memory) images count for nothing here:
 * quota_check and quota_to_json load it first and fail instead. */
void
quota_use_of(struct ember_daemon *d, uid_t uid, struct quota_use *use)
{
	memset(use, 0, sizeof(*use));
	for (size_t i = 0; i < d->nvms; i++) {
		struct vm *vm = d->vms[i];

		if (vm->rec.owner_uid != uid)
			continue;
		use->vms++;
		if (vm->rec.vsock)
			use->cids++;
		if (vm_status_has_process(vm->rec.status)) {
			use->vcpus += vm->rec.cpus;
			use->memory_mib += vm->rec.memory_mib;
		}
		use->disk_mib += vm_disk_mib(d, vm);
	}
	use->disk_mib += images_mib_of(d, uid);
	holds_add_to(uid, use);
	if (d->control != NULL)
		use->connections = control_user_connection_count(d->control, uid);
}

/* One row per limit: its config key, how it reads, where it lives. */
static const struct {
	const char *key, *what, *unit;
	size_t use_off, max_off;
} quota_rows[] = {
#define ROW(key, what, unit, field) \
	{ key, what, unit, offsetof(struct quota_use, field), offsetof(struct ember_quota, field) }
	ROW("vms", "VMs", "", vms),
	ROW("vcpus", "vCPUs of running VMs", "", vcpus),
	ROW("memory", "memory of running VMs", " MiB", memory_mib),
	ROW("disk", "disk", " MiB", disk_mib),
	ROW("cids", "vsock CIDs", "", cids),
	ROW("connections", "control connections", "", connections),
#undef ROW
};

#define FIELD(ptr, off) (*(const uint64_t *)((const char *)(ptr) + (off)))

int
quota_check(struct ember_daemon *d, uid_t uid, const struct quota_use *more,
    struct ember_error *err)
{
	const struct ember_quota *q = ember_config_quota(&d->config, uid);
	struct quota_use use;

	if (q == NULL)
		return 0;
	if (images_tally_load(d) < 0)
		return ember_error_set(err, EK_INTERNAL, NULL,
		    "out of memory measuring the disk use of uid %u", (unsigned)uid);
	quota_use_of(d, uid, &use);
	for (size_t i = 0; i < sizeof(quota_rows) / sizeof(quota_rows[0]); i++) {
		uint64_t now = FIELD(&use, quota_rows[i].use_off);
		uint64_t add = FIELD(more, quota_rows[i].use_off);
		uint64_t max = FIELD(q, quota_rows[i].max_off);

		if (add == 0 || (now <= max && add <= max - now))
			continue;
		return ember_error_set(err, EK_QUOTA_EXCEEDED,
		    "free some (stop or delete VMs, delete images) or ask the administrator "
		    "to raise quotas in the daemon config",
		    "quota exceeded for uid %u: %s (quota \"%s\"): %llu%s in use + %llu%s "
		    "asked > %llu%s allowed", (unsigned)uid, quota_rows[i].what,
		    quota_rows[i].key, (unsigned long long)now, quota_rows[i].unit,
		    (unsigned long long)add, quota_rows[i].unit, (unsigned long long)max,
		    quota_rows[i].unit);
	}
	return 0;
}

/* quota_check, then holds more for uid until quota_release. */
static int
quota_reserve(struct ember_daemon *d, uid_t uid, const struct quota_use *more,
    struct quota_hold **hold, struct ember_error *err)
{
	struct quota_hold *h;

	*hold = NULL;
	if (quota_check(d, uid, more, err) < 0)
		return -1;
	if ((h = calloc(1, sizeof(*h))) == NULL)
		return ember_error_set(err, EK_INTERNAL, NULL,
		    "out of memory reserving the quota of uid %u", (unsigned)uid);
	h->uid = uid;
	h->use = *more;
	h->use.connections = 0;
	h->next = holds;
	holds = h;
	*hold = h;
	return 0;
}

int
quota_check_create(struct ember_daemon *d, const struct vm_create_args *a,
    unsigned cpus, uint64_t memory_mib, json_t *image_doc, struct quota_hold **hold,
    struct ember_error *err)
{
	struct quota_use more = { .vms = 1, .cids = a->vsock ? 1 : 0 };

	if (a->start) {
		more.vcpus = cpus;
		more.memory_mib = memory_mib;
	}
	more.disk_mib = a->disk_size_mib != 0 ? a->disk_size_mib :
	    bytes_to_mib(image_rootfs_bytes(image_doc));
	return quota_reserve(d, a->owner_uid, &more, hold, err);
}

int
quota_check_fork(struct ember_daemon *d, struct vm *src, uid_t uid, bool vsock,
    bool start, struct quota_hold **hold, struct ember_error *err)
{
	struct quota_use more = { .vms = 1, .cids = vsock ? 1 : 0 };

	if (start) {
		more.vcpus = src->rec.cpus;
		more.memory_mib = src->rec.memory_mib;
	}
	more.disk_mib = vm_disk_mib(d, src);
	return quota_reserve(d, uid, &more, hold, err);
}

int
quota_check_start(struct vm *vm, struct ember_error *err)
{
	struct quota_use more = { .vcpus = vm->rec.cpus, .memory_mib = vm->rec.memory_mib };

	if (vm_status_has_process(vm->rec.status))
		return 0;	/* already counted; vm_start refuses it anyway */
	return quota_check(vm->daemon, vm->rec.owner_uid, &more, err);
}

int
quota_check_import(struct ember_daemon *d, uid_t uid, const int *fds, size_t nfds,
    uint64_t rootfs_mib, struct quota_hold **hold, struct ember_error *err)
{
	struct quota_use more = { .disk_mib = rootfs_mib };
	struct stat st;

	for (size_t i = 0; i < nfds; i++)
		if (fstat(fds[i], &st) == 0 && S_ISREG(st.st_mode))
			more.disk_mib += bytes_to_mib((uint64_t)st.st_size);

	if (more.disk_mib == 0)
		more.disk_mib = 1;	/* an image always takes some room */
	return quota_reserve(d, uid, &more, hold, err);
}

size_t
quota_connection_limit(struct ember_daemon *d, uid_t uid)
{
	const struct ember_quota *q = ember_config_quota(&d->config, uid);

	return q != NULL ? (size_t)q->connections : 0;
}

json_t *
quota_to_json(struct ember_daemon *d, uid_t uid)
{
	const struct ember_quota *q = ember_config_quota(&d->config, uid);
	struct quota_use use;
	json_t *juse, *jmax;

	if (images_tally_load(d) < 0)
		return NULL;	/* no figures rather than wrong ones */
	juse = json_object();
	jmax = q != NULL ? json_object() : NULL;
	if (juse == NULL || (q != NULL && jmax == NULL)) {
		json_decref(juse);
		json_decref(jmax);
		return NULL;
	}
	quota_use_of(d, uid, &use);
	for (size_t i = 0; i < sizeof(quota_rows) / sizeof(quota_rows[0]); i++) {
		const char *key = quota_rows[i].key;
		char name[32];

		/* Sizes carry their unit in the key, as vm records do. */
		snprintf(name, sizeof(name), "%s%s", key,
		    quota_rows[i].unit[0] ? "_mib" : "");
		json_object_set_new(juse, name,
		    json_integer((json_int_t)FIELD(&use, quota_rows[i].use_off)));
		if (jmax != NULL)
			json_object_set_new(jmax, name,
			    json_integer((json_int_t)FIELD(q, quota_rows[i].max_off)));
	}
	json_t *out = json_pack("{s:I, s:b, s:o}", "uid", (json_int_t)uid,
	    "limited", q != NULL, "use", juse);
	if (jmax != NULL)
		json_object_set_new(out, "max", jmax);
	return out;
}
