/*
 * The image store (see image.h). An import is a short chain of child
 * processes (cp, du, mkfs.ext4) run one after another from the event loop;
 * each step's completion starts the next, so a large root filesystem never
 * blocks other requests. For a non-root caller the files are opened as the
 * caller (caller-open.h) and copied from those open files; a directory is
 * measured and built into ext4 by du and mkfs.ext4 running with the
 * caller's rights (setpriv), into a file only emberd can name, which is
 * then copied to a root-owned one.
 *
 * An OCI import (image.h) runs skopeo, umoci, du and mkfs.ext4 the same
 * way, in a staging directory nobody else can list (0711: the caller's
 * skopeo reaches its own output file through it) whose unpacked bundle is
 * root's alone (an image's layers may hold setuid files). A trusted caller's source is copied
 * by skopeo straight into an OCI layout. Anyone else's is copied by skopeo
 * running as the caller (setpriv, so it reads only what the caller may)
 * into an oci-archive file emberd created and handed over as an open file;
 * that file is copied to a root-owned one (the caller's processes may still
 * hold it open) before a root skopeo turns it into the layout. umoci unpacks
 * rootless, so no device node or foreign ownership reaches the host.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "caller-open.h"
#include "child.h"
#include "daemon.h"
#include "discard.h"
#include "durable.h"
#include "events.h"
#include "fsutil.h"
#include "image.h"
#include "log.h"
#include "oci.h"
#include "quota.h"
#include "validate.h"
#include "vm.h"

#define IMAGE_STEPS_MAX 10
#define IMAGE_STEP_ARGS 24
#define IMAGE_FDS_MAX 5

struct image_import {
	struct ember_daemon *d;
	char name[64];
	char staging[PATH_MAX];
	char final[PATH_MAX];
	json_t *doc;			/* image.json being built */
	char *steps[IMAGE_STEPS_MAX][IMAGE_STEP_ARGS];	/* argv of each child step */
	int nsteps, step;
	int fds[IMAGE_FDS_MAX];		/* the caller's files, inherited by the steps */
	size_t nfds;
	/* A directory measured as the caller: du's two answers size mkfs. */
	int du_bytes_step, du_inodes_step, mkfs_step, mkfs_size_arg;
	uint64_t du_bytes, du_inodes;
	/* OCI: oci_probe_step asks skopeo for the source's manifest digest
	 * (cheap), so that the same digest again is answered without a copy;
	 * after oci_layout_step the layout is read into doc's "oci". */
	int oci_probe_step, oci_layout_step;
	char source_digest[OCI_DIGEST_LEN];
	/* An OCI image already under this name: its layout's digest and the
	 * source digest the probe saw when it was imported ("" : unknown). */
	char existing_digest[80];
	char existing_source_digest[OCI_DIGEST_LEN];
	bool skip_tls_verify;		/* docker:// over plain HTTP or unverified TLS */
	struct timespec started;
	image_done_fn done;
	void *ctx;
	/* A copy step's progress (image.progress with bytes): what it copies
	 * to, the source's allocated bytes, the last percentage sent. */
	struct event *copy_tick;
	char copy_dst[PATH_MAX];
	uint64_t copy_total;
	int copy_percent;
	/* The files written, queued to be synced before image.json
	 * (durable_sync_file): those not done yet and the first failure. A
	 * failed import is freed once none is pending (their callbacks name
	 * it). */
	unsigned syncs_pending;
	int sync_result;
	bool failed;
	bool nomem;			/* a step or key is missing: fails before a step runs */
	struct quota_hold *quota_hold;	/* its quota until the image is stored */
};

#define IMAGE_COPY_TICK_MS 250

static unsigned import_counter;

/* image.progress for the importing user (and root): phase is the step's
 * tool, or "done" / "failed". */
static void
import_progress(struct image_import *im, const char *phase, json_t *extra)
{
	json_t *data = json_pack("{s:s, s:s, s:i, s:i}", "image", im->name, "phase", phase,
	    "step", im->step, "steps", im->nsteps);

	if (data != NULL && extra != NULL)
		json_object_update(data, extra);
	json_decref(extra);
	events_emit(im->d->events, EVENT_IMAGE_PROGRESS, NULL,
	    (int64_t)image_doc_owner(im->doc), data);
}

static void
image_path(struct ember_daemon *d, const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "%s/images/%s", d->state_dir, name);
}

uid_t
image_doc_owner(json_t *doc)
{
	json_t *owner = json_object_get(doc, "owner_uid");

	return json_is_integer(owner) ? (uid_t)json_integer_value(owner) : 0;
}

/* Root uses every image; others their own and root's (shared) ones. */
static bool
image_visible(json_t *doc, uid_t caller)
{
	uid_t owner = image_doc_owner(doc);

	return caller == 0 || owner == 0 || owner == caller;
}

static json_t *
image_not_found(const char *name, struct ember_error *err)
{
	ember_error_set(err, EK_NOT_FOUND, "import it with 'emberctl image import'",
	    "image \"%s\" not found", name);
	return NULL;
}

json_t *
image_load(struct ember_daemon *d, const char *name, uid_t caller, struct ember_error *err)
{
	json_t *doc = image_load_any(d, name, err);

	if (doc != NULL && !image_visible(doc, caller)) {
		json_decref(doc);
		return image_not_found(name, err);
	}
	return doc;
}

json_t *
image_load_any(struct ember_daemon *d, const char *name, struct ember_error *err)
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
	if (r == -ENOENT)
		return image_not_found(name, err);
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

/* NULL when out of memory (logged): no list rather than part of one. */
json_t *
image_list(struct ember_daemon *d, uid_t caller)
{
	char path[PATH_MAX];
	json_t *out = json_array();
	struct dirent *de;
	char **names = NULL, **more;
	size_t n = 0;
	bool nomem = out == NULL;
	DIR *dir;

	snprintf(path, sizeof(path), "%s/images", d->state_dir);
	dir = nomem ? NULL : opendir(path);
	while (dir != NULL && (de = readdir(dir)) != NULL) {
		if (de->d_name[0] == '.' || !image_name_valid(de->d_name))
			continue;
		if ((more = realloc(names, (n + 1) * sizeof(*names))) != NULL)
			names = more;
		if (more == NULL || (names[n] = strdup(de->d_name)) == NULL) {
			nomem = true;
			break;
		}
		n++;
	}
	if (dir != NULL)
		closedir(dir);
	if (n > 0 && !nomem)
		qsort(names, n, sizeof(*names), name_cmp);
	for (size_t i = 0; i < n; i++) {
		struct ember_error err = { 0 };
		json_t *doc = nomem ? NULL : image_load_any(d, names[i], &err);
		if (!nomem && doc == NULL && caller == 0 && (doc = json_pack("{s:s, s:s}",
		    "name", names[i], "error", err.message)) == NULL)
			nomem = true;
		if (doc != NULL && image_visible(doc, caller) && json_array_append(out, doc) < 0)
			nomem = true;
		json_decref(doc);
		free(names[i]);
	}
	free(names);
	if (nomem) {
		log_warnx("image.list: out of memory listing %s", path);
		json_decref(out);
		return NULL;
	}
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

/* A deleted image's name from its move to trash until that move is
 * durable: the delete is answered then, and an import of the name is
 * refused meanwhile (image_name_deleting). */
struct image_deleting {
	char name[64];
	image_done_fn done;
	void *ctx;
	json_t *last;			/* the answer: the image as it was */
	struct image_deleting *next;
};
static struct image_deleting *deleting;

bool
image_name_deleting(const char *name)
{
	for (struct image_deleting *x = deleting; x != NULL; x = x->next)
		if (strcmp(x->name, name) == 0)
			return true;
	return false;
}

static void
image_delete_durable(void *arg, int result)
{
	struct image_deleting *x = arg;
	struct ember_error err = { 0 };

	for (struct image_deleting **p = &deleting; *p != NULL; p = &(*p)->next)
		if (*p == x) {
			*p = x->next;
			break;
		}
	if (result < 0) {
		/* moved away (the name is free), but the move may not survive a
		 * crash: say so rather than answer success */
		ember_error_set(&err, EK_IO, "check the state directory's disk; delete it again "
		    "if it is back after a restart", "image \"%s\": its move to trash is not "
		    "durable: %s", x->name, strerror(-result));
		json_decref(x->last);
		x->done(x->ctx, NULL, &err);
	} else
		x->done(x->ctx, x->last, NULL);
	free(x);
}

void
image_delete(struct ember_daemon *d, const char *name, bool force, uid_t caller,
    image_done_fn done, void *ctx)
{
	struct ember_error err = { 0 };
	struct image_deleting *x;
	char path[PATH_MAX], gone[sizeof(x->name)];
	json_t *doc = image_load(d, name, caller, &err);
	const char *user;

	if (doc == NULL)
		goto fail;
	if (caller != 0 && image_doc_owner(doc) != caller) {
		ember_error_set(&err, EK_PERMISSION_DENIED, "only root may change a shared image",
		    "image \"%s\" is root's (shared)", name);
		goto fail;
	}
	if (!force && (user = image_user(d, name)) != NULL) {
		ember_error_set(&err, EK_INVALID_STATE,
		    "delete the VMs that use it first, or pass force",
		    "image \"%s\" is used by VM \"%s\"", name, user);
		goto fail;
	}
	if ((x = calloc(1, sizeof(*x))) == NULL) {
		ember_error_set(&err, EK_INTERNAL, NULL, "out of memory");
		goto fail;
	}
	snprintf(gone, sizeof(gone), "%s", name);
	snprintf(x->name, sizeof(x->name), "%s", name);
	x->done = done;
	x->ctx = ctx;
	x->last = doc;
	/* Renamed to trash here (gone from the store at once), answered once
	 * the writer synced images/, the tree removed off the loop: a big
	 * rootfs takes long to unlink. */
	image_path(d, name, path, sizeof(path));
	x->next = deleting;
	deleting = x;
	if (discard_dir_now_then(d, path, image_delete_durable, x, &err) < 0) {
		deleting = x->next;
		free(x);
		goto fail;
	}
	/* x may be answered already (no writer); gone is the name's copy */
	quota_image_deleted(d, gone);
	log_info("image %s: deleted", gone);
	return;
fail:
	json_decref(doc);
	done(ctx, NULL, &err);
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
		char sub[PATH_MAX];
		snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name);
		/* Removed off the loop (discard.h); an import's staging name is
		 * first moved to trash, since a new import may reuse it. */
		if (strncmp(de->d_name, ".trash-", 7) == 0) {
			log_warnx("repair: removing %s, an interrupted image delete", sub);
			discard_trash(d, sub);
		} else if (strncmp(de->d_name, ".import-", 8) == 0) {
			log_warnx("repair: removing %s, an interrupted image import", sub);
			discard_dir_anyway(d, sub);
		}
	}
	if (dir != NULL)
		closedir(dir);
}

/* ---- import ---- */

/* The size mkfs.ext4 gets for a directory's contents: half as much again,
 * plus 64 MiB. */
static uint64_t
fit_mib(uint64_t bytes)
{
	return bytes * 3 / 2 / (1024 * 1024) + 64;
}

static void
import_free(struct image_import *im)
{
	for (int i = 0; i < im->nsteps; i++)
		for (int j = 0; im->steps[i][j] != NULL; j++)
			free(im->steps[i][j]);
	for (size_t i = 0; i < im->nfds; i++)
		close(im->fds[i]);
	if (im->copy_tick != NULL)
		event_free(im->copy_tick);
	quota_release(im->quota_hold);
	json_decref(im->doc);
	free(im);
}

/* Frees a failed import, or leaves that to the last of its file syncs. */
static void
import_release(struct image_import *im)
{
	im->failed = true;
	if (im->syncs_pending == 0)
		import_free(im);
}

/* A copy step's bytes so far, sent when the percentage changed. */
static void
import_copy_tick(evutil_socket_t fd, short what, void *arg)
{
	struct image_import *im = arg;
	struct stat st;
	uint64_t done;
	int percent;

	if (stat(im->copy_dst, &st) < 0)
		return;
	done = (uint64_t)st.st_blocks * 512;
	if (done > im->copy_total)
		done = im->copy_total;
	percent = (int)(done * 100 / im->copy_total);
	if (percent == im->copy_percent)
		return;
	im->copy_percent = percent;
	import_progress(im, "cp", json_pack("{s:I, s:I, s:i}", "done_bytes", (json_int_t)done,
	    "total_bytes", (json_int_t)im->copy_total, "percent", percent));
}

/* Measures the step starting now when it is a copy (cp SRC DST). */
static void
import_copy_watch(struct image_import *im)
{
	char *const *argv = im->steps[im->step];
	struct timeval tv = { 0, IMAGE_COPY_TICK_MS * 1000 };
	struct stat st;

	if (strcmp(argv[0], "cp") != 0 || argv[4] == NULL || argv[5] == NULL ||
	    stat(argv[4], &st) < 0 || st.st_blocks == 0)
		return;
	snprintf(im->copy_dst, sizeof(im->copy_dst), "%s", argv[5]);
	im->copy_total = (uint64_t)st.st_blocks * 512;
	im->copy_percent = 0;
	if (im->copy_tick == NULL)
		im->copy_tick = event_new(im->d->base, -1, EV_PERSIST, import_copy_tick, im);
	if (im->copy_tick != NULL)
		event_add(im->copy_tick, &tv);
}

static void
import_fail(struct image_import *im, struct ember_error *err)
{
	log_warnx("image %s: import failed: %s", im->name, err->message);
	import_progress(im, "failed", json_pack("{s:s}", "error", err->message));
	discard_dir_anyway(im->d, im->staging);
	im->done(im->ctx, NULL, err);
	import_release(im);
}

static void import_next(struct image_import *im);

/* du -s prints "<number>\t<path>"; the number, or -1. */
static int
parse_du(const char *output, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(output, &end, 10);
	if (errno != 0 || end == output || *end != '\t')
		return -1;
	*out = v;
	return 0;
}

static void import_finish(struct image_import *im);

/* The program the current step runs (steps run as the caller go through
 * setpriv: the word after its "--"). */
static const char *
step_tool(const struct image_import *im)
{
	char *const *argv = im->steps[im->step];

	for (int j = 0; strcmp(argv[0], "setpriv") == 0 && argv[j] != NULL; j++)
		if (strcmp(argv[j], "--") == 0 && argv[j + 1] != NULL)
			return argv[j + 1];
	return argv[0];
}

/* The name already holds digest: answers with the stored record marked
 * "unchanged" and ends the import. 1, or -1 with err set. */
static int
import_unchanged(struct image_import *im, const char *digest, struct ember_error *err)
{
	struct ember_error none = { 0 };
	json_t *doc = image_load_any(im->d, im->name, &none);

	log_info("image %s: already imported (same digest %s), nothing copied", im->name, digest);
	discard_dir_anyway(im->d, im->staging);
	if (doc == NULL) {
		*err = none;
		return -1;
	}
	json_object_set_new(doc, "unchanged", json_true());
	im->done(im->ctx, doc, NULL);
	import_free(im);
	return 1;
}

/* The source's digest, from skopeo inspect: the same as the image under
 * this name is "unchanged" at once, another known one is refused before
 * anything is copied. Returns 0 to go on, 1 when it finished the import,
 * -1 with err set. */
static int
oci_probe_done(struct image_import *im, const char *output, struct ember_error *err)
{
	if (oci_probe_digest(output, im->source_digest) < 0)
		return ember_error_set(err, EK_IO, NULL,
		    "image \"%s\": skopeo inspect printed no digest: %.200s", im->name, output);
	if (im->existing_digest[0] == '\0')
		return 0;
	if (strcmp(im->source_digest, im->existing_digest) == 0 ||
	    strcmp(im->source_digest, im->existing_source_digest) == 0)
		return import_unchanged(im, im->source_digest, err);
	if (im->existing_source_digest[0] != '\0')
		return ember_error_set(err, EK_ALREADY_EXISTS, "delete it first or choose another name",
		    "image \"%s\" already exists with another digest (%s; this one is %s)",
		    im->name, im->existing_source_digest, im->source_digest);
	return 0;	/* imported before probes: the layout's digest decides */
}

/* Reads the layout skopeo wrote into doc's "oci". Returns 0 to go on, 1
 * when it finished the import (the name already holds this digest), -1
 * with err set. */
static int
oci_layout_done(struct image_import *im, struct ember_error *err)
{
	char layout[PATH_MAX], reason[256] = "";
	json_t *oci = NULL;
	const char *digest;
	int r;

	snprintf(layout, sizeof(layout), "%s/layout", im->staging);
	if ((r = oci_layout_read(layout, "ember", &oci, reason, sizeof(reason))) < 0)
		return ember_error_set(err, EK_IO, NULL, "image \"%s\": %s: %s", im->name,
		    reason, strerror(-r));
	digest = json_string_value(json_object_get(oci, "digest"));
	if (im->existing_digest[0] != '\0' && strcmp(digest, im->existing_digest) == 0) {
		r = import_unchanged(im, digest, err);
		json_decref(oci);
		return r;
	}
	if (im->existing_digest[0] != '\0') {
		ember_error_set(err, EK_ALREADY_EXISTS, "delete it first or choose another name",
		    "image \"%s\" already exists with another digest (%s; this one is %s)",
		    im->name, im->existing_digest, digest);
		json_decref(oci);
		return -1;
	}
	json_object_set_new(oci, "source", json_object_get(im->doc, "oci_source") ?
	    json_incref(json_object_get(im->doc, "oci_source")) : json_null());
	if (im->source_digest[0] != '\0' &&
	    json_object_set_new(oci, "source_digest", json_string(im->source_digest)) < 0) {
		json_decref(oci);
		return ember_error_set(err, EK_INTERNAL, NULL,
		    "out of memory importing image \"%s\"", im->name);
	}
	json_object_del(im->doc, "oci_source");
	if (json_object_set_new(im->doc, "oci", oci) < 0)	/* takes oci either way */
		return ember_error_set(err, EK_INTERNAL, NULL,
		    "out of memory importing image \"%s\"", im->name);
	return 0;
}

static void
import_step_done(void *ctx, int status, const char *output)
{
	struct image_import *im = ctx;
	struct ember_error err = { 0 };
	const char *tool = step_tool(im);

	if (im->copy_tick != NULL)
		event_del(im->copy_tick);

	if (status != 0) {
		/* skopeo logs 'time=... level=fatal msg="..."': keep the message. */
		const char *msg = strcmp(tool, "skopeo") == 0 ? strstr(output, "msg=\"") : NULL;
		if (msg != NULL) {
			const char *end = strrchr(msg + 5, '"');
			ember_error_set(&err, EK_INVALID_SPEC,
			    "check the source (oci:DIR[:TAG], oci-archive:FILE, docker-archive:FILE)",
			    "cannot read the OCI image: %.*s", (int)(end ? end - msg - 5 :
			    (long)strlen(msg + 5)), msg + 5);
		} else
			ember_error_set(&err, EK_IO, NULL, "%s failed: %s", tool,
			    output[0] ? output : "no output");
		import_fail(im, &err);
		return;
	}
	if ((im->step == im->du_bytes_step && parse_du(output, &im->du_bytes) < 0) ||
	    (im->step == im->du_inodes_step && parse_du(output, &im->du_inodes) < 0)) {
		ember_error_set(&err, EK_IO, NULL, "du printed no size: %s", output);
		import_fail(im, &err);
		return;
	}
	if (im->step == im->oci_probe_step && oci_probe_done(im, output, &err) != 0) {
		if (err.message[0] != '\0')
			import_fail(im, &err);
		return;
	}
	if (im->step == im->oci_layout_step && oci_layout_done(im, &err) != 0) {
		if (err.message[0] != '\0')
			import_fail(im, &err);
		return;
	}
	if (im->step == im->du_inodes_step) {
		char size[32], *arg;
		snprintf(size, sizeof(size), "%lluM", (unsigned long long)
		    fit_mib(im->du_bytes + im->du_inodes * 4096));
		if ((arg = strdup(size)) == NULL) {
			ember_error_set(&err, EK_INTERNAL, NULL,
			    "out of memory importing image \"%s\"", im->name);
			import_fail(im, &err);
			return;
		}
		free(im->steps[im->mkfs_step][im->mkfs_size_arg]);
		im->steps[im->mkfs_step][im->mkfs_size_arg] = arg;
	}
	im->step++;
	import_next(im);
}

/* The last step of an import, once images/ naming it is durable: the
 * caller is answered. */
static void
import_stored(void *ctx, int result)
{
	struct image_import *im = ctx;

	if (result < 0)
		log_warnx("image %s: imported, but syncing %s/images failed: %s (it may not "
		    "survive a power loss)", im->name, im->d->state_dir, strerror(-result));
	log_info("image %s: imported", im->name);
	import_progress(im, "done", NULL);
	json_t *reply = json_deep_copy(im->doc);
	if (reply == NULL) {
		struct ember_error err = { 0 };
		ember_error_set(&err, EK_INTERNAL, "see 'emberctl image inspect'",
		    "image \"%s\" is imported, but emberd ran out of memory answering", im->name);
		im->done(im->ctx, NULL, &err);
		import_free(im);
		return;
	}
	if (json_object_get(im->doc, "oci") != NULL) {
		/* Size and time of an OCI import, for the caller only. */
		struct timespec now;
		struct stat st;
		char rootfs[PATH_MAX];
		clock_gettime(CLOCK_MONOTONIC, &now);
		snprintf(rootfs, sizeof(rootfs), "%s/rootfs.ext4", im->final);
		json_object_set_new(reply, "import_seconds", json_real(
		    (double)(now.tv_sec - im->started.tv_sec) +
		    (double)(now.tv_nsec - im->started.tv_nsec) / 1e9));
		if (stat(rootfs, &st) == 0)
			json_object_set_new(reply, "disk_bytes",
			    json_integer((json_int_t)st.st_blocks * 512));
	}
	im->done(im->ctx, reply, NULL);
	import_free(im);
}

/* Once the staging directory's image.json is durable: the directory is
 * renamed to its final name and images/ synced (through the writer when
 * one runs). The order is what startup relies on: a directory under its
 * final name always holds a durable image.json; a .import-* one is
 * removed. */
static void
import_record_written(void *ctx, int result)
{
	struct image_import *im = ctx;
	struct ember_error err = { 0 };
	char images[PATH_MAX];
	int r = result;

	/* The files' syncs ran in this batch or an earlier one. */
	if (r == 0 && im->sync_result < 0) {
		ember_error_set(&err, EK_IO, "check the disk of the state directory",
		    "cannot sync the files of image \"%s\": %s", im->name,
		    strerror(-im->sync_result));
		import_fail(im, &err);
		return;
	}

	/* An OCI import's staging was not listable while layers were unpacked. */
	if (r == 0 && chmod(im->staging, 0755) < 0)
		r = -errno;
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
	quota_image_stored(im->d, im->name);	/* counted by its files from now on */
	quota_release(im->quota_hold);
	im->quota_hold = NULL;
	snprintf(images, sizeof(images), "%s/images", im->d->state_dir);
	if (im->d->durable == NULL) {
		import_stored(im, fsync_dir(images));
		return;
	}
	if (durable_sync_dir(im->d->durable, images, import_stored, im, &err) < 0) {
		log_warnx("image %s: %s", im->name, err.message);
		import_stored(im, -EIO);
	}
}

static void
import_file_synced(void *ctx, int result)
{
	struct image_import *im = ctx;

	im->syncs_pending--;
	if (result < 0 && im->sync_result == 0)
		im->sync_result = result;
	if (im->failed && im->syncs_pending == 0)
		import_free(im);
}

/* The file each of image.json's file keys names, in the staging directory
 * (the record names it where it will be, under images/<name>). */
static int
import_file_staged(const struct image_import *im, const char *key, char *buf, size_t len)
{
	const char *final = json_string_value(json_object_get(im->doc, key));
	size_t n = strlen(im->final);

	if (final == NULL || strncmp(final, im->final, n) != 0 || final[n] != '/')
		return -1;
	return snprintf(buf, len, "%s%s", im->staging, final + n) < (int)len ? 0 : -1;
}

/* Queues the sync of every file the import wrote, ahead of image.json
 * (durable.c's order: their data reaches the disk before the record's
 * rename). Without a writer they are synced here. 0, or -1 with err. */
static int
import_sync_files(struct image_import *im, struct ember_error *err)
{
	static const char *const keys[] = { "kernel", "vmlinux", "initrd", "rootfs" };
	char path[PATH_MAX];

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		if (import_file_staged(im, keys[i], path, sizeof(path)) < 0)
			continue;
		if (im->d->durable == NULL) {
			int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
			int r = fd < 0 || fdatasync(fd) < 0 ? -errno : 0;
			if (fd >= 0)
				close(fd);
			if (r < 0 && im->sync_result == 0)
				im->sync_result = r;
			continue;
		}
		if (durable_sync_file(im->d->durable, path, import_file_synced, im, err) < 0)
			return -1;
		im->syncs_pending++;
	}
	return 0;
}

/* Syncs the files written, then writes image.json into the staging
 * directory, off the loop when the group-commit writer runs (durable.h,
 * one batch), then import_record_written. */
static void
import_finish(struct image_import *im)
{
	struct ember_error err = { 0 };
	char json[PATH_MAX], build[PATH_MAX], *text;
	size_t len;
	int r;

	/* The caller's own build output, when there was one, is copied by now. */
	snprintf(build, sizeof(build), "%s/rootfs.build", im->staging);
	unlink(build);
	snprintf(json, sizeof(json), "%s/image.json", im->staging);
	if (im->d->durable == NULL) {
		(void)import_sync_files(im, &err);	/* synced here: cannot fail */
		import_record_written(im, im->sync_result < 0 ? im->sync_result :
		    atomic_write_json(json, im->doc));
		return;
	}
	if ((text = json_state_text(im->doc, &len)) == NULL) {
		import_record_written(im, -ENOMEM);
		return;
	}
	durable_plug(im->d->durable);
	r = import_sync_files(im, &err);
	if (r == 0)
		r = durable_write_take(im->d->durable, json, text, len, 0644,
		    import_record_written, im, &err);
	else
		free(text);
	durable_unplug(im->d->durable);
	if (r < 0) {
		ember_error_prefix(&err, "image \"%s\"", im->name);
		import_fail(im, &err);
	}
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
	/* Progress, for the log: a large OCI image takes a while. */
	log_info("image %s: step %d of %d: %s", im->name, im->step + 1, im->nsteps,
	    step_tool(im));
	import_progress(im, step_tool(im), NULL);
	import_copy_watch(im);
	r = child_run_keep(im->d->base, (const char *const *)im->steps[im->step], im->fds, im->nfds,
	    import_step_done, im);
	if (r < 0) {
		ember_error_set(&err, EK_IO, NULL, "cannot run %s: %s", im->steps[im->step][0],
		    strerror(-r));
		import_fail(im, &err);
	}
}

/* Appends a step: prefix (may be NULL) then argv; returns its index. A
 * word that cannot be copied sets im->nomem (the import then fails before
 * any step runs). */
static int
add_step(struct image_import *im, char *const *prefix, const char *const *argv)
{
	char **step = im->steps[im->nsteps];
	int j = 0;

	for (int i = 0; prefix != NULL && prefix[i] != NULL && j < IMAGE_STEP_ARGS - 1; i++)
		if ((step[j] = strdup(prefix[i])) != NULL)
			j++;
		else
			im->nomem = true;
	for (int i = 0; argv[i] != NULL && j < IMAGE_STEP_ARGS - 1; i++)
		if ((step[j] = strdup(argv[i])) != NULL)
			j++;
		else
			im->nomem = true;
	step[j] = NULL;
	return im->nsteps++;
}

/* Sets a string in the record being built; im->nomem when it cannot. */
static void
doc_set(struct image_import *im, const char *key, const char *value)
{
	if (json_object_set_new(im->doc, key, json_string(value)) < 0)
		im->nomem = true;
}

/* "setpriv --reuid=U --regid=G --groups=... --no-new-privs --": runs the
 * rest of a step with the caller's rights. prefix[] holds 6 strings. */
static void
caller_prefix(const struct platform_caller *c, char **prefix, char *bufs, size_t buflen)
{
	size_t at = 0, each = buflen / 3;
	char *uid = bufs, *gid = bufs + each, *groups = bufs + 2 * each;

	snprintf(uid, each, "--reuid=%u", (unsigned)c->uid);
	snprintf(gid, each, "--regid=%u", (unsigned)c->gid);
	if (c->ngroups == 0)
		snprintf(groups, each, "--clear-groups");
	else {
		at = (size_t)snprintf(groups, each, "--groups=");
		for (size_t i = 0; i < c->ngroups && at < each; i++)
			at += (size_t)snprintf(groups + at, each - at, "%s%u", i ? "," : "",
			    (unsigned)c->groups[i]);
	}
	prefix[0] = "setpriv";
	prefix[1] = uid;
	prefix[2] = gid;
	prefix[3] = groups;
	prefix[4] = "--no-new-privs";
	prefix[5] = "--";
	prefix[6] = NULL;
}

/* A copy step for src into the staging dir as dst_name; records it in doc.
 * A trusted caller's path is copied as given; anyone else's was opened as
 * the caller (fd, taken) and is copied from that open file. */
static int
add_copy(struct image_import *im, const struct platform_caller *c, const char *key,
    const char *src, int fd, const char *dst_name, struct ember_error *err)
{
	char resolved[PATH_MAX], dst[PATH_MAX];
	struct stat st;

	if (src == NULL)
		return 0;
	if (caller_trusted(c)) {
		if (realpath(src, resolved) == NULL || stat(resolved, &st) < 0)
			return ember_error_set(err, EK_INVALID_SPEC, NULL, "%s %s: %s", key, src,
			    strerror(errno));
		if (!S_ISREG(st.st_mode))
			return ember_error_set(err, EK_INVALID_SPEC, NULL,
			    "%s %s is not a regular file", key, src);
	} else {
		im->fds[im->nfds++] = fd;
		snprintf(resolved, sizeof(resolved), "/proc/self/fd/%d", fd);
	}
	snprintf(dst, sizeof(dst), "%s/%s", im->staging, dst_name);
	const char *argv[] = { "cp", "--reflink=auto", "--sparse=always", "--", resolved, dst, NULL };
	add_step(im, NULL, argv);
	snprintf(dst, sizeof(dst), "%s/%s", im->final, dst_name);
	doc_set(im, key, dst);
	return 0;
}

/* Steps that build rootfs.ext4 from a directory with mkfs.ext4 -d. A
 * trusted caller's directory is measured here and read by mkfs as root;
 * anyone else's is measured (du) and read (mkfs) with the caller's rights,
 * mkfs writing into a file emberd created for the caller and passes as an
 * open file, which is then copied to a root-owned rootfs.ext4. */
static int
add_mkfs(struct image_import *im, const struct platform_caller *c, const char *dir,
    uint64_t size_mib, struct ember_error *err)
{
	char resolved[PATH_MAX], dst[PATH_MAX], size[32], bufs[3 * 1024], *prefix[7];
	struct stat st;

	snprintf(dst, sizeof(dst), "%s/rootfs.ext4", im->staging);
	if (caller_trusted(c)) {
		if (realpath(dir, resolved) == NULL || stat(resolved, &st) < 0 ||
		    !S_ISDIR(st.st_mode))
			return ember_error_set(err, EK_INVALID_SPEC, NULL,
			    "rootfs_dir %s is not a directory", dir);
		/* Measured by du in a child like anyone else's: a big tree
		 * is never walked on the event loop. */
		if (size_mib == 0) {
			const char *du_bytes[] = { "du", "-s", "-B1", "--", resolved, NULL };
			const char *du_inodes[] = { "du", "-s", "--inodes", "--", resolved, NULL };
			im->du_bytes_step = add_step(im, NULL, du_bytes);
			im->du_inodes_step = add_step(im, NULL, du_inodes);
		}
		snprintf(size, sizeof(size), "%lluM",
		    (unsigned long long)(size_mib ? size_mib : 1));
		const char *argv[] = { "mkfs.ext4", "-q", "-F", "-L", "ember-root", "-E",
		    "root_owner=0:0", "-d", resolved, dst, size, NULL };
		im->mkfs_step = add_step(im, NULL, argv);
		im->mkfs_size_arg = 10;	/* argv[10], the size */
		return 0;
	}
	/* The open (image_import's, as the caller) proved the caller may read
	 * the directory; du and mkfs then read it as the caller. */
	caller_prefix(c, prefix, bufs, sizeof(bufs));
	if (size_mib == 0) {
		const char *du_bytes[] = { "du", "-s", "-B1", "--", dir, NULL };
		const char *du_inodes[] = { "du", "-s", "--inodes", "--", dir, NULL };
		im->du_bytes_step = add_step(im, prefix, du_bytes);
		im->du_inodes_step = add_step(im, prefix, du_inodes);
	}
	snprintf(size, sizeof(size), "%lluM", (unsigned long long)(size_mib ? size_mib : 1));
	char build[PATH_MAX], build_fd[32];
	snprintf(build, sizeof(build), "%s/rootfs.build", im->staging);
	int out = open(build, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (out < 0)
		return ember_error_set(err, EK_IO, NULL, "cannot create %s: %s", build,
		    strerror(errno));
	if (fchown(out, c->uid, c->gid) < 0) {
		int e = errno;
		close(out);
		return ember_error_set(err, EK_IO, NULL, "cannot hand %s to uid %u: %s", build,
		    (unsigned)c->uid, strerror(e));
	}
	im->fds[im->nfds++] = out;
	snprintf(build_fd, sizeof(build_fd), "/proc/self/fd/%d", out);
	const char *mkfs[] = { "mkfs.ext4", "-q", "-F", "-L", "ember-root", "-E", "root_owner=0:0",
	    "-d", dir, build_fd, size, NULL };
	im->mkfs_step = add_step(im, prefix, mkfs);
	im->mkfs_size_arg = 6 + 10;	/* after the 6 setpriv words, mkfs[10] */
	/* The caller may still hold the build file open: copy it to a file of
	 * emberd's own. */
	const char *copy[] = { "cp", "--reflink=auto", "--sparse=always", "--", build, dst, NULL };
	add_step(im, NULL, copy);
	return 0;
}

/* The transports an OCI source may name (skopeo's syntax). */
static bool
oci_source_valid(const char *src)
{
	static const char *const transports[] = { "oci:", "oci-archive:", "docker-archive:",
	    "docker://" };

	for (size_t i = 0; i < sizeof(transports) / sizeof(transports[0]); i++) {
		size_t n = strlen(transports[i]);
		if (strncmp(src, transports[i], n) == 0 && src[n] != '\0' && src[n] != '-')
			return strlen(src) < 1024 && strpbrk(src, "\n\r") == NULL;
	}
	return false;
}

/* caller_prefix with --reset-env: skopeo as the caller gets the caller's
 * HOME (its own registries.conf and auth.json, never root's) and a plain
 * environment. prefix[] holds 8 strings. */
static void
oci_caller_prefix(const struct platform_caller *c, char **prefix, char *bufs, size_t buflen)
{
	caller_prefix(c, prefix, bufs, buflen);
	prefix[5] = "--reset-env";
	prefix[6] = "--";
	prefix[7] = NULL;
}

/* Steps that turn an OCI source into rootfs.ext4 (see the top of the file):
 * skopeo into layout/ (as the caller, through an archive, for an untrusted
 * one), umoci into bundle/, du twice, mkfs.ext4, then layout/ and bundle/
 * removed. */
static int
add_oci(struct image_import *im, const struct platform_caller *c, const char *src,
    struct ember_error *err)
{
	/* skopeo's source options: TLS as asked (docker:// only). */
	bool skip_tls = im->skip_tls_verify;
	const char *src_tls = skip_tls ? "--src-tls-verify=false" : "--quiet";
	char layout[PATH_MAX], bundle[PATH_MAX], rootfs[PATH_MAX], dst[PATH_MAX];
	char archive[PATH_MAX], archive_own[PATH_MAX], archive_fd[PATH_MAX + 16], bufs[3 * 1024];
	char *prefix[8];

	snprintf(layout, sizeof(layout), "oci:%s/layout:ember", im->staging);
	/* The source's digest first (its manifest and config only), read as
	 * the copy below reads it. */
	const char *probe[] = { "skopeo", "inspect", "--no-tags", "--format", OCI_PROBE_FORMAT,
	    skip_tls ? "--tls-verify=false" : "--", skip_tls ? "--" : src, skip_tls ? src : NULL,
	    NULL };
	if (caller_trusted(c))
		im->oci_probe_step = add_step(im, NULL, probe);
	else {
		oci_caller_prefix(c, prefix, bufs, sizeof(bufs));
		im->oci_probe_step = add_step(im, prefix, probe);
	}
	if (caller_trusted(c)) {
		const char *copy[] = { "skopeo", "copy", "--quiet", src_tls, "--", src, layout, NULL };
		im->oci_layout_step = add_step(im, NULL, copy);
	} else {
		snprintf(archive, sizeof(archive), "%s/source.build", im->staging);
		int out = open(archive, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (out < 0)
			return ember_error_set(err, EK_IO, NULL, "cannot create %s: %s", archive,
			    strerror(errno));
		if (fchown(out, c->uid, c->gid) < 0) {
			int e = errno;
			close(out);
			return ember_error_set(err, EK_IO, NULL, "cannot hand %s to uid %u: %s",
			    archive, (unsigned)c->uid, strerror(e));
		}
		im->fds[im->nfds++] = out;
		snprintf(archive_fd, sizeof(archive_fd), "oci-archive:/proc/self/fd/%d", out);
		oci_caller_prefix(c, prefix, bufs, sizeof(bufs));
		const char *as_caller[] = { "skopeo", "copy", "--quiet", src_tls, "--", src, archive_fd,
		    NULL };
		add_step(im, prefix, as_caller);
		snprintf(archive_own, sizeof(archive_own), "%s/source.tar", im->staging);
		const char *own[] = { "cp", "--", archive, archive_own, NULL };
		add_step(im, NULL, own);
		snprintf(archive_fd, sizeof(archive_fd), "oci-archive:%s", archive_own);
		const char *copy[] = { "skopeo", "copy", "--quiet", "--", archive_fd, layout, NULL };
		im->oci_layout_step = add_step(im, NULL, copy);
	}
	snprintf(layout, sizeof(layout), "%s/layout:ember", im->staging);
	snprintf(bundle, sizeof(bundle), "%s/bundle", im->staging);
	const char *unpack[] = { "umoci", "unpack", "--rootless", "--image", layout, bundle, NULL };
	add_step(im, NULL, unpack);
	snprintf(rootfs, sizeof(rootfs), "%s/rootfs", bundle);
	const char *du_bytes[] = { "du", "-s", "-B1", "--", rootfs, NULL };
	const char *du_inodes[] = { "du", "-s", "--inodes", "--", rootfs, NULL };
	im->du_bytes_step = add_step(im, NULL, du_bytes);
	im->du_inodes_step = add_step(im, NULL, du_inodes);
	snprintf(dst, sizeof(dst), "%s/rootfs.ext4", im->staging);
	const char *mkfs[] = { "mkfs.ext4", "-q", "-F", "-L", "ember-root", "-E",
	    "root_owner=0:0", "-d", rootfs, dst, "1M", NULL };
	im->mkfs_step = add_step(im, NULL, mkfs);
	im->mkfs_size_arg = 10;
	snprintf(layout, sizeof(layout), "%s/layout", im->staging);
	snprintf(archive, sizeof(archive), "%s/source.build", im->staging);
	snprintf(archive_own, sizeof(archive_own), "%s/source.tar", im->staging);
	const char *cleanup[] = { "rm", "-rf", "--", layout, bundle, archive, archive_own, NULL };
	add_step(im, NULL, cleanup);
	snprintf(dst, sizeof(dst), "%s/rootfs.ext4", im->final);
	doc_set(im, "rootfs", dst);
	doc_set(im, "oci_source", src);
	return 0;
}

/* The paths an import names, in the order they are opened. */
enum { IMPORT_KERNEL, IMPORT_VMLINUX, IMPORT_INITRD, IMPORT_ROOTFS, IMPORT_ROOTFS_DIR, IMPORT_OCI,
    IMPORT_SOURCES };
static const struct {
	const char *key, *dst_name;
} import_sources[IMPORT_SOURCES] = {
	[IMPORT_KERNEL] = { "kernel", "vmlinuz" },
	[IMPORT_VMLINUX] = { "vmlinux", "vmlinux" },
	[IMPORT_INITRD] = { "initrd", "initrd" },
	[IMPORT_ROOTFS] = { "rootfs", "rootfs.img" },
	[IMPORT_ROOTFS_DIR] = { "rootfs_dir", NULL },
	[IMPORT_OCI] = { "oci", NULL },
};

/* An import while the caller's paths are opened: what it goes on with. */
struct import_opening {
	struct image_import *im;
	struct platform_caller caller;	/* its groups copied */
	char *src[IMPORT_SOURCES];
	uint64_t rootfs_size_mib;
};

static void import_opened(void *ctx, const int *fds, size_t nfds,
    const struct ember_error *open_err);

static void
import_opening_free(struct import_opening *o)
{
	for (size_t i = 0; i < IMPORT_SOURCES; i++)
		free(o->src[i]);
	caller_copy_free(&o->caller);
	free(o);
}

void
image_import(struct ember_daemon *d, const struct image_import_args *a, image_done_fn done,
    void *ctx)
{
	const struct platform_caller *c = a->caller;
	struct ember_error err = { 0 };
	struct image_import *im;
	const char *reserved = d->config.default_image;
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
	if (a->oci != NULL && (a->rootfs != NULL || a->rootfs_dir != NULL)) {
		ember_error_set(&err, EK_INVALID_SPEC, NULL, "give oci or a root filesystem, not both");
		goto fail;
	}
	if (a->oci == NULL && a->kernel == NULL) {
		ember_error_set(&err, EK_INVALID_SPEC, "give kernel (and a root filesystem) or oci",
		    "an image needs a kernel unless it is an OCI image");
		goto fail;
	}
	if (a->oci != NULL && !oci_source_valid(a->oci)) {
		ember_error_set(&err, EK_INVALID_SPEC,
		    "oci:DIR[:TAG], oci-archive:FILE, docker-archive:FILE or docker://REF",
		    "unsupported OCI source \"%.200s\"", a->oci);
		goto fail;
	}
	if (a->skip_tls_verify && (a->oci == NULL || strncmp(a->oci, "docker://", 9) != 0)) {
		ember_error_set(&err, EK_INVALID_SPEC, "leave tls_verify out for a local source",
		    "tls_verify applies to a docker:// source only");
		goto fail;
	}
	if (c->uid != 0 && reserved != NULL && strcmp(a->name, reserved) == 0) {
		ember_error_set(&err, EK_PERMISSION_DENIED, "choose another name",
		    "image name \"%s\" is the daemon's default_image, reserved for root", a->name);
		goto fail;
	}
	im = calloc(1, sizeof(*im));
	if (im == NULL) {
		ember_error_set(&err, EK_INTERNAL, NULL, "out of memory importing image \"%s\"",
		    a->name);
		goto fail;
	}
	im->d = d;
	im->done = done;
	im->ctx = ctx;
	im->du_bytes_step = im->du_inodes_step = im->mkfs_step = im->oci_layout_step = -1;
	im->oci_probe_step = -1;
	im->skip_tls_verify = a->skip_tls_verify;
	clock_gettime(CLOCK_MONOTONIC, &im->started);
	snprintf(im->name, sizeof(im->name), "%s", a->name);
	image_path(d, a->name, im->final, sizeof(im->final));
	if (a->oci != NULL && access(im->final, F_OK) == 0) {
		/* The same digest again is a no-op: known once skopeo inspect
		 * has run. */
		struct ember_error none = { 0 };
		json_t *old = image_load_any(d, a->name, &none);
		json_t *old_oci = json_object_get(old, "oci");
		const char *digest = json_string_value(json_object_get(old_oci, "digest"));
		const char *source = json_string_value(json_object_get(old_oci, "source_digest"));
		if (digest != NULL && image_doc_owner(old) == c->uid) {
			snprintf(im->existing_digest, sizeof(im->existing_digest), "%s", digest);
			if (source != NULL && strlen(source) < sizeof(im->existing_source_digest))
				snprintf(im->existing_source_digest,
				    sizeof(im->existing_source_digest), "%s", source);
		}
		json_decref(old);
	}
	if (access(im->final, F_OK) == 0 && im->existing_digest[0] == '\0') {
		ember_error_set(&err, EK_ALREADY_EXISTS, "delete it first or choose another name",
		    "image \"%s\" already exists", a->name);
		import_free(im);
		goto fail;
	}
	rfc3339_now(created);
	im->doc = json_pack("{s:i, s:s, s:s, s:I}", "version", 1, "name", a->name,
	    "created_at", created, "owner_uid", (json_int_t)c->uid);
	if (im->doc == NULL)
		goto nomem;
	if (a->boot_args != NULL)
		doc_set(im, "boot_args", a->boot_args);
	snprintf(im->staging, sizeof(im->staging), "%s/images/.import-%s-%d-%u", d->state_dir,
	    a->name, (int)getpid(), ++import_counter);
	/* What it builds is held from now on (quota.h), so imports at once
	 * cannot pass a quota together; import_opened adds the files' sizes. */
	if (quota_check_import(d, c->uid, NULL, 0, a->rootfs_size_mib, &im->quota_hold, &err) < 0) {
		import_free(im);
		goto fail;
	}
	/* The caller's paths are opened (caller-open.h) before anything is
	 * created, off the loop; import_opened goes on. */
	struct import_opening *o = calloc(1, sizeof(*o));
	if (o == NULL || caller_copy(&o->caller, c) < 0) {
		free(o);	/* caller_copy left it no groups */
		goto nomem;
	}
	o->im = im;
	o->rootfs_size_mib = a->rootfs_size_mib;
	const char *srcs[IMPORT_SOURCES] = { a->kernel, a->vmlinux, a->initrd, a->rootfs,
	    a->rootfs_dir, a->oci };
	struct caller_open_path paths[IMPORT_SOURCES];
	size_t npaths = 0;
	for (size_t i = 0; i < IMPORT_SOURCES; i++) {
		if (srcs[i] != NULL && (o->src[i] = strdup(srcs[i])) == NULL) {
			import_opening_free(o);
			goto nomem;
		}
		if (srcs[i] != NULL && i != IMPORT_OCI)
			paths[npaths++] = (struct caller_open_path){ import_sources[i].key,
			    srcs[i], i == IMPORT_ROOTFS_DIR };
	}
	caller_open_start(d->base, c, paths, npaths, NULL, import_opened, o);
	return;
nomem:
	ember_error_set(&err, EK_INTERNAL, NULL, "out of memory importing image \"%s\"", a->name);
	import_free(im);	/* and its quota hold; nothing is on disk yet */
fail:
	done(ctx, NULL, &err);
}

/* image_import once the caller's paths are open (fds, in import_sources
 * order, for those it named; all -1 for a trusted caller). */
static void
import_opened(void *ctx, const int *fds, size_t nfds, const struct ember_error *open_err)
{
	struct import_opening *o = ctx;
	struct image_import *im = o->im;
	struct ember_daemon *d = im->d;
	const struct platform_caller *c = &o->caller;
	struct ember_error err = { 0 };
	int fd[IMPORT_SOURCES];
	size_t k = 0;

	if (open_err != NULL) {
		err = *open_err;
		goto fail;
	}
	for (size_t i = 0; i < IMPORT_SOURCES; i++)
		fd[i] = o->src[i] != NULL && i != IMPORT_OCI && k < nfds ? fds[k++] : -1;
	/* The directory's open only proved the caller may read it. */
	if (fd[IMPORT_ROOTFS_DIR] >= 0)
		close(fd[IMPORT_ROOTFS_DIR]);
	fd[IMPORT_ROOTFS_DIR] = -1;
	for (size_t i = 0; i < IMPORT_ROOTFS_DIR; i++) {
		int r = add_copy(im, c, import_sources[i].key, o->src[i], fd[i],
		    import_sources[i].dst_name, &err);
		fd[i] = -1;	/* taken */
		if (r < 0) {
			for (size_t j = i + 1; j < IMPORT_ROOTFS_DIR; j++)
				if (fd[j] >= 0)
					close(fd[j]);
			goto fail;
		}
	}
	quota_release(im->quota_hold);	/* checked again with the files */
	im->quota_hold = NULL;
	if (quota_check_import(d, c->uid, im->fds, im->nfds, o->rootfs_size_mib, &im->quota_hold,
	    &err) < 0)
		goto fail;
	if (mkdir_p(im->staging, o->src[IMPORT_OCI] != NULL ? 0711 : 0755) < 0) {
		ember_error_set(&err, EK_IO, NULL, "cannot create %s: %s", im->staging, strerror(errno));
		goto fail;
	}
	if (o->src[IMPORT_ROOTFS_DIR] != NULL) {
		char dst[PATH_MAX];
		if (add_mkfs(im, c, o->src[IMPORT_ROOTFS_DIR], o->rootfs_size_mib, &err) < 0) {
			rm_rf(im->staging);
			goto fail;
		}
		snprintf(dst, sizeof(dst), "%s/rootfs.ext4", im->final);
		doc_set(im, "rootfs", dst);
	}
	if (o->src[IMPORT_OCI] != NULL && add_oci(im, c, o->src[IMPORT_OCI], &err) < 0) {
		rm_rf(im->staging);
		goto fail;
	}
	if (im->nomem) {
		ember_error_set(&err, EK_INTERNAL, NULL, "out of memory importing image \"%s\"",
		    im->name);
		rm_rf(im->staging);
		goto fail;
	}
	log_info("image %s: importing for uid %u", im->name, (unsigned)c->uid);
	import_opening_free(o);
	import_next(im);
	return;
fail:;
	image_done_fn done = im->done;
	void *done_ctx = im->ctx;
	import_opening_free(o);
	import_free(im);
	done(done_ctx, NULL, &err);
}
