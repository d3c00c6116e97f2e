/*
 * The image store (see image.h). An import is a short chain of child
 * processes (cp, mkfs.ext4) run one after another from the event loop;
 * each step's completion starts the next, so a large root filesystem never
 * blocks other requests.
 */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "child.h"
#include "daemon.h"
#include "fsutil.h"
#include "image.h"
#include "log.h"
#include "validate.h"
#include "vm.h"

#define IMAGE_STEPS_MAX 5

struct image_import {
	struct ember_daemon *d;
	char name[64];
	char staging[PATH_MAX];
	char final[PATH_MAX];
	json_t *doc;			/* image.json being built */
	char *steps[IMAGE_STEPS_MAX][12];	/* argv of each child step */
	int nsteps, step;
	image_done_fn done;
	void *ctx;
};

static unsigned import_counter;

static void
image_path(struct ember_daemon *d, const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "%s/images/%s", d->state_dir, name);
}

json_t *
image_load(struct ember_daemon *d, const char *name, struct ember_error *err)
{
	char path[PATH_MAX], errbuf[256];
	json_t *doc = NULL;
	int r;

	if (!image_name_valid(name)) {
		ember_error_set(err, EK_INVALID_NAME, "an image name follows the VM name rules",
		    "invalid image name \"%s\"", name);
		return NULL;
	}
	snprintf(path, sizeof(path), "%s/images/%s/image.json", d->state_dir, name);
	r = read_json_file(path, &doc, errbuf, sizeof(errbuf));
	if (r == -ENOENT) {
		ember_error_set(err, EK_NOT_FOUND, "import it with 'emberctl image import'",
		    "image \"%s\" not found", name);
		return NULL;
	}
	if (r < 0 || !json_is_object(doc)) {
		ember_error_set(err, EK_IO, "delete and import it again",
		    "image \"%s\" has an unreadable image.json: %s", name,
		    r == -EBADMSG ? errbuf : strerror(r < 0 ? -r : EINVAL));
		json_decref(doc);
		return NULL;
	}
	return doc;
}

static int
name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

json_t *
image_list(struct ember_daemon *d)
{
	char path[PATH_MAX];
	json_t *out = json_array();
	struct dirent *de;
	char **names = NULL;
	size_t n = 0;
	DIR *dir;

	snprintf(path, sizeof(path), "%s/images", d->state_dir);
	dir = opendir(path);
	while (dir != NULL && (de = readdir(dir)) != NULL) {
		if (de->d_name[0] == '.' || !image_name_valid(de->d_name))
			continue;
		names = realloc(names, (n + 1) * sizeof(*names));
		if (names == NULL)
			fatalx("out of memory");
		names[n++] = strdup(de->d_name);
	}
	if (dir != NULL)
		closedir(dir);
	if (n > 0)
		qsort(names, n, sizeof(*names), name_cmp);
	for (size_t i = 0; i < n; i++) {
		struct ember_error err = { 0 };
		json_t *doc = image_load(d, names[i], &err);
		if (doc == NULL)
			doc = json_pack("{s:s, s:s}", "name", names[i], "error", err.message);
		json_array_append_new(out, doc);
		free(names[i]);
	}
	free(names);
	return out;
}

static const char *
image_user(struct ember_daemon *d, const char *name)
{
	for (size_t i = 0; i < d->nvms; i++)
		if (d->vms[i]->rec.image != NULL && strcmp(d->vms[i]->rec.image, name) == 0)
			return d->vms[i]->rec.name;
	return NULL;
}

int
image_delete(struct ember_daemon *d, const char *name, bool force, uid_t caller,
    json_t **last, struct ember_error *err)
{
	char path[PATH_MAX], trash[PATH_MAX];
	json_t *doc = image_load(d, name, err);
	const char *user;

	if (doc == NULL)
		return -1;
	json_t *owner = json_object_get(doc, "owner_uid");
	if (caller != 0 && json_is_integer(owner) && (uid_t)json_integer_value(owner) != caller) {
		json_decref(doc);
		return ember_error_set(err, EK_PERMISSION_DENIED, "only its owner or root may delete it",
		    "image \"%s\" belongs to uid %lld", name, (long long)json_integer_value(owner));
	}
	if (!force && (user = image_user(d, name)) != NULL) {
		json_decref(doc);
		return ember_error_set(err, EK_INVALID_STATE,
		    "delete the VMs that use it first, or pass force",
		    "image \"%s\" is used by VM \"%s\"", name, user);
	}
	image_path(d, name, path, sizeof(path));
	snprintf(trash, sizeof(trash), "%s/images/.trash-%s-%u", d->state_dir, name,
	    ++import_counter);
	if (rename(path, trash) < 0) {
		json_decref(doc);
		return ember_error_set(err, EK_IO, NULL, "cannot remove %s: %s", path, strerror(errno));
	}
	rm_rf(trash);
	log_info("image %s: deleted", name);
	*last = doc;
	return 0;
}

void
images_cleanup(struct ember_daemon *d)
{
	char path[PATH_MAX];
	struct dirent *de;
	DIR *dir;

	snprintf(path, sizeof(path), "%s/images", d->state_dir);
	mkdir_p(path, 0755);
	dir = opendir(path);
	while (dir != NULL && (de = readdir(dir)) != NULL) {
		if (strncmp(de->d_name, ".import-", 8) == 0 || strncmp(de->d_name, ".trash-", 7) == 0) {
			char sub[PATH_MAX];
			snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name);
			log_warnx("repair: removing %s, an interrupted image import or delete", sub);
			rm_rf(sub);
		}
	}
	if (dir != NULL)
		closedir(dir);
}

/* ---- import ---- */

static uint64_t dir_bytes;

static int
add_size(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	dir_bytes += (uint64_t)st->st_blocks * 512 + 4096;	/* + an inode's share */
	return 0;
}

static void
import_free(struct image_import *im)
{
	for (int i = 0; i < im->nsteps; i++)
		for (int j = 0; im->steps[i][j] != NULL; j++)
			free(im->steps[i][j]);
	json_decref(im->doc);
	free(im);
}

static void
import_fail(struct image_import *im, struct ember_error *err)
{
	log_warnx("image %s: import failed: %s", im->name, err->message);
	rm_rf(im->staging);
	im->done(im->ctx, NULL, err);
	import_free(im);
}

static void import_next(struct image_import *im);

static void
import_step_done(void *ctx, int status, const char *output)
{
	struct image_import *im = ctx;
	struct ember_error err = { 0 };

	if (status != 0) {
		ember_error_set(&err, EK_IO, NULL, "%s failed: %s", im->steps[im->step][0],
		    output[0] ? output : "no output");
		import_fail(im, &err);
		return;
	}
	im->step++;
	import_next(im);
}

static void
import_finish(struct image_import *im)
{
	struct ember_error err = { 0 };
	char json[PATH_MAX], images[PATH_MAX];
	int r;

	snprintf(json, sizeof(json), "%s/image.json", im->staging);
	r = atomic_write_json(json, im->doc);
	if (r == 0 && access(im->final, F_OK) == 0)
		r = -EEXIST;	/* imported meanwhile by another request */
	if (r == 0 && rename(im->staging, im->final) < 0)
		r = -errno;
	if (r < 0) {
		ember_error_set(&err, r == -EEXIST ? EK_ALREADY_EXISTS : EK_IO, NULL,
		    "cannot store image \"%s\": %s", im->name, strerror(-r));
		import_fail(im, &err);
		return;
	}
	snprintf(images, sizeof(images), "%s/images", im->d->state_dir);
	fsync_dir(images);
	log_info("image %s: imported", im->name);
	im->done(im->ctx, json_incref(im->doc), NULL);
	import_free(im);
}

static void
import_next(struct image_import *im)
{
	struct ember_error err = { 0 };
	int r;

	if (im->step == im->nsteps) {
		import_finish(im);
		return;
	}
	r = child_run(im->d->base, (const char *const *)im->steps[im->step], import_step_done, im);
	if (r < 0) {
		ember_error_set(&err, EK_IO, NULL, "cannot run %s: %s", im->steps[im->step][0],
		    strerror(-r));
		import_fail(im, &err);
	}
}

static void
add_step(struct image_import *im, const char *const *argv)
{
	int j;

	for (j = 0; j < 11 && argv[j] != NULL; j++)
		im->steps[im->nsteps][j] = strdup(argv[j]);
	im->steps[im->nsteps][j] = NULL;
	im->nsteps++;
}

/* A copy step for src into the staging dir as dst_name; records it in doc. */
static int
add_copy(struct image_import *im, const char *key, const char *src, const char *dst_name,
    struct ember_error *err)
{
	char resolved[PATH_MAX], dst[PATH_MAX];
	struct stat st;

	if (src == NULL)
		return 0;
	if (realpath(src, resolved) == NULL || stat(resolved, &st) < 0)
		return ember_error_set(err, EK_INVALID_SPEC, NULL, "%s %s: %s", key, src,
		    strerror(errno));
	if (!S_ISREG(st.st_mode))
		return ember_error_set(err, EK_INVALID_SPEC, NULL, "%s %s is not a regular file",
		    key, src);
	snprintf(dst, sizeof(dst), "%s/%s", im->staging, dst_name);
	const char *argv[] = { "cp", "--reflink=auto", "--sparse=always", "--", resolved, dst, NULL };
	add_step(im, argv);
	snprintf(dst, sizeof(dst), "%s/%s", im->final, dst_name);
	json_object_set_new(im->doc, key, json_string(dst));
	return 0;
}

void
image_import(struct ember_daemon *d, const struct image_import_args *a, image_done_fn done,
    void *ctx)
{
	struct ember_error err = { 0 };
	struct image_import *im;
	char created[32];

	if (!image_name_valid(a->name)) {
		ember_error_set(&err, EK_INVALID_NAME, "an image name follows the VM name rules",
		    "invalid image name \"%s\"", a->name);
		goto fail;
	}
	if (a->rootfs != NULL && a->rootfs_dir != NULL) {
		ember_error_set(&err, EK_INVALID_SPEC, NULL, "give rootfs or rootfs_dir, not both");
		goto fail;
	}
	im = calloc(1, sizeof(*im));
	if (im == NULL)
		fatalx("out of memory");
	im->d = d;
	im->done = done;
	im->ctx = ctx;
	snprintf(im->name, sizeof(im->name), "%s", a->name);
	image_path(d, a->name, im->final, sizeof(im->final));
	if (access(im->final, F_OK) == 0) {
		ember_error_set(&err, EK_ALREADY_EXISTS, "delete it first or choose another name",
		    "image \"%s\" already exists", a->name);
		import_free(im);
		goto fail;
	}
	rfc3339_now(created);
	im->doc = json_pack("{s:i, s:s, s:s, s:I}", "version", 1, "name", a->name,
	    "created_at", created, "owner_uid", (json_int_t)a->owner_uid);
	if (a->boot_args != NULL)
		json_object_set_new(im->doc, "boot_args", json_string(a->boot_args));
	snprintf(im->staging, sizeof(im->staging), "%s/images/.import-%s-%d-%u", d->state_dir,
	    a->name, (int)getpid(), ++import_counter);
	if (add_copy(im, "kernel", a->kernel, "vmlinuz", &err) < 0 ||
	    add_copy(im, "vmlinux", a->vmlinux, "vmlinux", &err) < 0 ||
	    add_copy(im, "initrd", a->initrd, "initrd", &err) < 0 ||
	    add_copy(im, "rootfs", a->rootfs, "rootfs.img", &err) < 0) {
		import_free(im);
		goto fail;
	}
	if (a->rootfs_dir != NULL) {
		char resolved[PATH_MAX], dst[PATH_MAX], size[32];
		struct stat st;
		if (realpath(a->rootfs_dir, resolved) == NULL || stat(resolved, &st) < 0 ||
		    !S_ISDIR(st.st_mode)) {
			ember_error_set(&err, EK_INVALID_SPEC, NULL, "rootfs_dir %s is not a directory",
			    a->rootfs_dir);
			import_free(im);
			goto fail;
		}
		uint64_t mib = a->rootfs_size_mib;
		if (mib == 0) {
			dir_bytes = 0;
			nftw(resolved, add_size, 32, FTW_PHYS);
			mib = dir_bytes * 3 / 2 / (1024 * 1024) + 64;
		}
		snprintf(size, sizeof(size), "%lluM", (unsigned long long)mib);
		snprintf(dst, sizeof(dst), "%s/rootfs.ext4", im->staging);
		const char *argv[] = { "mkfs.ext4", "-q", "-F", "-L", "ember-root", "-E",
		    "root_owner=0:0", "-d", resolved, dst, size, NULL };
		add_step(im, argv);
		snprintf(dst, sizeof(dst), "%s/rootfs.ext4", im->final);
		json_object_set_new(im->doc, "rootfs", json_string(dst));
	}
	if (mkdir_p(im->staging, 0755) < 0) {
		ember_error_set(&err, EK_IO, NULL, "cannot create %s: %s", im->staging, strerror(errno));
		import_free(im);
		goto fail;
	}
	log_info("image %s: importing", a->name);
	import_next(im);
	return;
fail:
	done(ctx, NULL, &err);
}
