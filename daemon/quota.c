/*
 * Per-user quotas (see quota.h). Use is recomputed from the registry and
 * the image store at each check: a user holds at most a few dozen VMs and
 * images, and one walk cannot disagree with the records it reads.
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
#include <string.h>
#include <sys/stat.h>

#include "config.h"
#include "control.h"
#include "daemon.h"
#include "fsutil.h"
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

static uint64_t
vm_disk_mib(struct ember_daemon *d, const struct vm *vm)
{
	uint64_t bytes;

	if (vm->rec.disk_size_mib != 0)
		return vm->rec.disk_size_mib;
	if (vm->rec.disk_path == NULL)
		return 0;
	bytes = image_rootfs_bytes_by_name(d, vm->rec.image);
	if (bytes == 0)
		bytes = file_size(vm->rec.disk_path);
	return bytes_to_mib(bytes);
}

/* Apparent size of the files of the images uid imported. */
static uint64_t
images_mib_of(struct ember_daemon *d, uid_t uid)
{
	char path[PATH_MAX], errbuf[128];
	struct dirent *de, *fe;
	uint64_t total = 0;
	DIR *dir, *img;

	snprintf(path, sizeof(path), "%s/images", d->state_dir);
	if ((dir = opendir(path)) == NULL)
		return 0;
	while ((de = readdir(dir)) != NULL) {
		json_t *doc = NULL, *owner;
		uint64_t bytes = 0;

		if (de->d_name[0] == '.' || !image_name_valid(de->d_name))
			continue;
		snprintf(path, sizeof(path), "%s/images/%s/image.json", d->state_dir,
		    de->d_name);
		if (read_json_file(path, &doc, errbuf, sizeof(errbuf)) < 0)
			continue;
		owner = json_object_get(doc, "owner_uid");
		bool mine = json_is_integer(owner) && (uid_t)json_integer_value(owner) == uid;
		json_decref(doc);	/* owner belonged to doc */
		if (!mine)
			continue;
		snprintf(path, sizeof(path), "%s/images/%s", d->state_dir, de->d_name);
		if ((img = opendir(path)) == NULL)
			continue;
		while ((fe = readdir(img)) != NULL) {
			char file[PATH_MAX];
			if (fe->d_name[0] == '.')
				continue;
			snprintf(file, sizeof(file), "%s/%s", path, fe->d_name);
			bytes += file_size(file);
		}
		closedir(img);
		total += bytes_to_mib(bytes);
	}
	closedir(dir);
	return total;
}

void
quota_use_of(struct ember_daemon *d, uid_t uid, struct quota_use *use)
{
	memset(use, 0, sizeof(*use));
	for (size_t i = 0; i < d->nvms; i++) {
		const struct vm *vm = d->vms[i];

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

int
quota_check_create(struct ember_daemon *d, const struct vm_create_args *a,
    unsigned cpus, uint64_t memory_mib, json_t *image_doc, struct ember_error *err)
{
	struct quota_use more = { .vms = 1, .cids = a->vsock ? 1 : 0 };

	if (a->start) {
		more.vcpus = cpus;
		more.memory_mib = memory_mib;
	}
	more.disk_mib = a->disk_size_mib != 0 ? a->disk_size_mib :
	    bytes_to_mib(image_rootfs_bytes(image_doc));
	return quota_check(d, a->owner_uid, &more, err);
}

int
quota_check_fork(struct ember_daemon *d, const struct vm *src, uid_t uid, bool vsock,
    bool start, struct ember_error *err)
{
	struct quota_use more = { .vms = 1, .cids = vsock ? 1 : 0 };

	if (start) {
		more.vcpus = src->rec.cpus;
		more.memory_mib = src->rec.memory_mib;
	}
	more.disk_mib = vm_disk_mib(d, src);
	return quota_check(d, uid, &more, err);
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
    uint64_t rootfs_mib, struct ember_error *err)
{
	struct quota_use more = { .disk_mib = rootfs_mib };
	struct stat st;

	for (size_t i = 0; i < nfds; i++)
		if (fstat(fds[i], &st) == 0 && S_ISREG(st.st_mode))
			more.disk_mib += bytes_to_mib((uint64_t)st.st_size);

	if (more.disk_mib == 0)
		more.disk_mib = 1;	/* an image always takes some room */
	return quota_check(d, uid, &more, err);
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
	json_t *juse = json_object(), *jmax = q != NULL ? json_object() : NULL;

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
