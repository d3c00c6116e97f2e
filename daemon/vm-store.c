/*
 * VM state on disk: writing vm.json and cids.json, and the pass at startup
 * that loads both and makes them agree again after whatever a crash left
 * (see vm.c for the write ordering this relies on). Every repair is logged.
 * The writes go to the group-commit writer (durable.c), which vms_load
 * starts and vm_store_close stops: the loop queues snapshots and never
 * fsyncs.
 * It also sets who may reach what: <state> and vms/ can be passed through
 * by anyone (0711, never listed), each VM directory is sticky and open to
 * its owner alone through an ACL entry (the reasoning is in
 * platform/linux/dir-guard.c).
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cid-alloc.h"
#include "daemon.h"
#include "dir-guard.h"
#include "discard.h"
#include "durable.h"
#include "fsutil.h"
#include "log.h"
#include "metrics.h"
#include "validate.h"
#include "vm.h"
#include "vm-agent.h"
#include "vm-internal.h"
#include "vm-network.h"

/* ---- who may reach a VM's directory ------------------------------------ */

void
vm_dir_share(struct ember_daemon *d, const char *name, uid_t owner)
{
	char dir[PATH_MAX];
	int r;

	vm_dir(d, name, dir, sizeof(dir));
	if (chmod(dir, owner == 0 ? 0750 : 01750) < 0) {
		log_warn("vm %s: chmod %s", name, dir);
		return;
	}
	r = guard_grant(dir, owner, GUARD_R | GUARD_W | GUARD_X);
	if (r == -EOPNOTSUPP)
		log_warnx("vm %s: the filesystem of %s keeps no POSIX ACLs, so only root can "
		    "reach its vsock.sock and console.log (mount it with ACL support to let "
		    "uid %u in)", name, dir, (unsigned)owner);
	else if (r < 0)
		log_warnx("vm %s: cannot give uid %u access to %s: %s", name, (unsigned)owner,
		    dir, strerror(-r));
}

/* Anyone may pass through path to a name it knows; nobody but root lists it. */
static int
dir_passable(const char *path, struct ember_error *err)
{
	struct stat st;

	if (stat(path, &st) < 0)
		return ember_error_set(err, EK_IO, NULL, "cannot stat %s: %s", path, strerror(errno));
	if ((st.st_mode & 0011) == 0011)
		return 0;
	if (chmod(path, (st.st_mode & 07777) | 0011) < 0)
		return ember_error_set(err, EK_IO, "check the permissions of --state-dir",
		    "cannot chmod %s: %s", path, strerror(errno));
	return 0;
}

/* ---- writing ------------------------------------------------------------ */

/* Through the group-commit writer (durable.c) when there is one; without
 * one (unit tests build a daemon by hand) at once, on the calling thread.
 * done, when given, gets 0 or -errno once the write is durable. */
static int
state_write_json(struct ember_daemon *d, const char *path, json_t *doc,
    durable_done_fn done, void *ctx, struct ember_error *err)
{
	char *text;
	size_t len;
	int r;

	if (doc == NULL)
		return ember_error_set(err, EK_INTERNAL, NULL, "out of memory");
	if (d->durable == NULL) {
		r = atomic_write_json(path, doc);
		json_decref(doc);
		if (done != NULL)
			done(ctx, r);
		if (r < 0)
			return ember_error_set(err, EK_IO,
			    "check the state directory's disk and permissions",
			    "cannot write %s: %s", path, strerror(-r));
		return 0;
	}
	text = json_state_text(doc, &len);
	json_decref(doc);
	if (text == NULL)
		return ember_error_set(err, EK_INTERNAL, NULL, "out of memory");
	return durable_write_take(d->durable, path, text, len, 0644, done, ctx, err);
}

int
vm_save_then(struct vm *vm, durable_done_fn done, void *ctx, struct ember_error *err)
{
	char path[PATH_MAX];
	json_t *doc;

	if (vm->load_error != NULL) {
		if (done != NULL)
			done(ctx, 0);
		return 0;	/* never overwrite a record we could not read */
	}
	snprintf(path, sizeof(path), "%s/vms/%s/vm.json", vm->daemon->state_dir, vm->rec.name);
	doc = vm_record_to_json(&vm->rec);
	if (doc != NULL)
		json_object_set_new(doc, "version", json_integer(VM_RECORD_VERSION));
	if (state_write_json(vm->daemon, path, doc, done, ctx, err) < 0)
		return -1;
	vm->durable_seq = vm_store_last_seq(vm->daemon);
	return 0;
}

int
vm_save(struct vm *vm, struct ember_error *err)
{
	return vm_save_then(vm, NULL, NULL, err);
}

/* cids.json's contents from the table as it is now: compact (the table is
 * rewritten whole, and jq reads it as well as the loader does), CIDs in
 * ascending order, one newline at the end. NULL when out of memory. */
static char *
cids_text(void *ctx, size_t *lenp)
{
	struct ember_daemon *d = ctx;

	return cid_alloc_to_text(d->cids, lenp);
}

/* The table is serialised when the writer can take it, once for all the
 * saves since it last did (durable_write_deferred), not at every create
 * and delete: a batch of n creates costs O(n), not O(n^2). Where the write
 * stands among vm.json writes and directory moves is durable.c's header. */
int
cids_save(struct ember_daemon *d, struct ember_error *err)
{
	char path[PATH_MAX];
	json_t *doc;

	snprintf(path, sizeof(path), "%s/vsock/cids.json", d->state_dir);
	if (d->durable != NULL)
		return durable_write_deferred(d->durable, path, 0644, cids_text, d, NULL, NULL,
		    err);
	doc = cid_alloc_to_json(d->cids);
	return state_write_json(d, path, doc, NULL, NULL, err);
}

int
vms_dir_sync(struct ember_daemon *d, struct ember_error *err)
{
	char vms[PATH_MAX];
	int r;

	snprintf(vms, sizeof(vms), "%s/vms", d->state_dir);
	if (d->durable != NULL)
		return durable_sync_dir(d->durable, vms, NULL, NULL, err);
	if ((r = fsync_dir(vms)) < 0)
		return ember_error_set(err, EK_IO, NULL, "cannot sync %s: %s", vms, strerror(-r));
	return 0;
}

void
vm_store_plug(struct ember_daemon *d)
{
	if (d->durable != NULL)
		durable_plug(d->durable);
}

void
vm_store_unplug(struct ember_daemon *d)
{
	if (d->durable != NULL)
		durable_unplug(d->durable);
}

uint64_t
vm_store_last_seq(const struct ember_daemon *d)
{
	return d->durable != NULL ? durable_last_seq(d->durable) : 0;
}

int
vm_store_wait(struct ember_daemon *d, uint64_t seq, durable_done_fn done, void *ctx,
    struct ember_error *err)
{
	if (d->durable == NULL) {
		done(ctx, 0);
		return 0;
	}
	return durable_wait(d->durable, seq, done, ctx, err);
}

void
vm_store_close(struct ember_daemon *d)
{
	durable_free(d->durable);	/* finishes what is queued, callbacks included */
	d->durable = NULL;
}

/* ---- startup: load and repair ------------------------------------------ */

static void
cids_skipped(void *ctx, const char *key, const char *why)
{
	log_warnx("repair: cids.json entry \"%s\" dropped: %s", key, why);
}

/* 0, or -1 with err when out of memory (a good file is not moved aside). */
static int
cids_load(struct ember_daemon *d, struct ember_error *err)
{
	char path[PATH_MAX], errbuf[256];
	json_t *doc = NULL;
	int r;

	snprintf(path, sizeof(path), "%s/vsock/cids.json", d->state_dir);
	r = read_json_file(path, &doc, errbuf, sizeof(errbuf));
	if (r == -ENOENT)
		return 0;
	if (r == -ENOMEM)
		return ember_error_set(err, EK_INTERNAL, NULL, "out of memory reading %s", path);
	if (r < 0 || cid_alloc_load_json(d->cids, doc, cids_skipped, NULL) < 0) {
		char aside[PATH_MAX];
		snprintf(aside, sizeof(aside), "%s.corrupt", path);
		log_warnx("repair: %s is unreadable (%s); moved to %s, CIDs are rebuilt from VM records",
		    path, r < 0 ? (r == -EBADMSG ? errbuf : strerror(-r)) : "not an allocation table",
		    aside);
		rename(path, aside);
	}
	json_decref(doc);
	return 0;
}

/* A VM whose vm.json cannot be read still lists, as failed, so the
 * user sees it and can delete it. NULL when out of memory. */
static struct vm *
vm_placeholder(struct ember_daemon *d, const char *name, const char *why)
{
	struct vm *vm = vm_new(d);
	struct ember_error err = { 0 };

	if (vm == NULL)
		return NULL;
	snprintf(vm->rec.name, sizeof(vm->rec.name), "%s", name);
	/* without load_error it would pass for a readable record */
	if ((vm->load_error = strdup(why)) == NULL) {
		vm_free(vm);
		return NULL;
	}
	if (vm_lifecycle_enter(vm, VM_EV_LOAD_UNREADABLE, why, &err) < 0)
		fatalx("%s", err.message);	/* the table lists this one */
	log_warnx("repair: VM \"%s\": %s; listed as failed", name, why);
	return vm;
}

/* The VM of vms/<name>, or a placeholder; NULL when out of memory. */
static struct vm *
vm_load_one(struct ember_daemon *d, const char *name)
{
	char path[PATH_MAX], errbuf[256], why[512];
	json_t *doc = NULL;
	struct vm *vm;
	int r;

	snprintf(path, sizeof(path), "%s/vms/%s/vm.json", d->state_dir, name);
	r = read_json_file(path, &doc, errbuf, sizeof(errbuf));
	if (r == -ENOMEM)
		return NULL;	/* not the record's fault: no placeholder */
	if (r < 0) {
		snprintf(why, sizeof(why), "cannot read vm.json: %s",
		    r == -EBADMSG ? errbuf : strerror(-r));
		return vm_placeholder(d, name, why);
	}
	if ((vm = vm_new(d)) == NULL) {
		json_decref(doc);
		return NULL;
	}
	r = vm_record_from_json(&vm->rec, doc, errbuf, sizeof(errbuf));
	json_decref(doc);
	if (r == -ENOMEM) {
		vm_free(vm);
		return NULL;	/* as for read_json_file: no placeholder */
	}
	if (r < 0 || strcmp(vm->rec.name, name) != 0) {
		snprintf(why, sizeof(why), "invalid vm.json: %s",
		    r < 0 ? errbuf : "its name does not match its directory");
		vm_free(vm);
		return vm_placeholder(d, name, why);
	}
	/* The status vm.json records becomes the VM's through the table too. */
	struct ember_error err = { 0 };
	if (vm_lifecycle_enter(vm, VM_EV_LOAD, NULL, &err) < 0) {
		snprintf(why, sizeof(why), "invalid vm.json: %s", err.message);
		vm_free(vm);
		return vm_placeholder(d, name, why);
	}
	return vm;
}

/* Makes cids.json and the VM records agree; returns true when cids changed. */
static bool
vm_repair_cid(struct vm *vm)
{
	struct ember_daemon *d = vm->daemon;
	struct ember_error err = { 0 };
	uint32_t held;
	bool has = cid_alloc_lookup(d->cids, vm->rec.name, &held);
	char uds[PATH_MAX];

	if (vm->load_error != NULL)
		return false;	/* keep whatever it held until it is repaired or deleted */
	if (!vm->rec.vsock) {
		if (!has)
			return false;
		log_warnx("repair: VM \"%s\" has no vsock but held CID %u; released",
		    vm->rec.name, held);
		cid_alloc_release(d->cids, vm->rec.name);
		return true;
	}
	if (vsock_path_build(d->state_dir, vm->rec.name, sun_path_limit(), uds,
	    sizeof(uds), &err) == 0 &&
	    (vm->rec.uds_path == NULL || strcmp(vm->rec.uds_path, uds) != 0)) {
		if (vm_record_set_str(&vm->rec.uds_path, uds) < 0)
			log_warnx("repair: VM \"%s\" keeps vsock path %s: out of memory",
			    vm->rec.name, vm->rec.uds_path ? vm->rec.uds_path : "(none)");
		else {
			log_warnx("repair: VM \"%s\" vsock path set to %s", vm->rec.name, uds);
			vm_save(vm, &err);
		}
	}
	if (has && held == vm->rec.guest_cid)
		return false;
	if (has) {
		log_warnx("repair: VM \"%s\" records CID %u but cids.json gave it %u; using %u",
		    vm->rec.name, vm->rec.guest_cid, held, vm->rec.guest_cid);
		cid_alloc_release(d->cids, vm->rec.name);
	}
	if (cid_alloc_claim(d->cids, vm->rec.name, vm->rec.guest_cid) == 0) {
		if (!has)
			log_warnx("repair: VM \"%s\" gets its CID %u back", vm->rec.name,
			    vm->rec.guest_cid);
		return true;
	}
	uint32_t old = vm->rec.guest_cid;
	if (cid_alloc_get(d->cids, vm->rec.name, &vm->rec.guest_cid) < 0) {
		log_warnx("repair: VM \"%s\" lost CID %u and no CID is free", vm->rec.name, old);
		vm->rec.vsock = false;
	} else
		log_warnx("repair: VM \"%s\" CID %u is taken (by \"%s\") or out of range; "
		    "it now has CID %u", vm->rec.name, old,
		    cid_alloc_owner(d->cids, old) ? cid_alloc_owner(d->cids, old) : "nobody",
		    vm->rec.guest_cid);
	vm_save(vm, &err);
	return true;
}

bool
vm_orphans_add(struct vm_orphans *o, const char *owner)
{
	char **names;

	if (o->nomem || vm_find(o->d, owner) != NULL)
		return false;
	if ((names = realloc(o->names, (o->n + 1) * sizeof(*o->names))) != NULL)
		o->names = names;
	if (names == NULL || (names[o->n] = strdup(owner)) == NULL) {
		o->nomem = true;
		return false;
	}
	o->n++;
	return true;
}

void
vm_orphans_free(struct vm_orphans *o)
{
	for (size_t i = 0; i < o->n; i++)
		free(o->names[i]);
	free(o->names);
	o->names = NULL;
	o->n = 0;
}

static void
collect_orphan(void *ctx, uint32_t cid, const char *owner)
{
	if (vm_orphans_add(ctx, owner))
		log_warnx("repair: CID %u belonged to \"%s\", which does not exist; released",
		    cid, owner);
}

/* A process recorded as running: adopt it, or record that it is gone. */
static void
vm_reattach(struct vm *vm)
{
	struct ember_daemon *d = vm->daemon;
	struct ember_error err = { 0 };
	char dir[PATH_MAX];

	if (vm->load_error != NULL || !vm_has_process(vm))
		return;
	vm->backend = vm_resolve_backend(d, vm->rec.backend, &err);
	vm_dir(d, vm->rec.name, dir, sizeof(dir));
	if (vm->backend != NULL && vm->backend->adopt != NULL &&
	    vm->backend->adopt(vm->backend, &vm->rec, dir, &vm->backend_state, vm, &err) == 0) {
		log_info("vm %s: re-adopted (pid %d)", vm->rec.name, (int)vm->rec.pid);
		/* starting or stopping when emberd went: running now; a running
		 * VM's agent is probed again by the transition */
		vm_transition_logged(vm, VM_EV_ADOPTED, NULL);
		return;
	}
	vm->rec.pid = 0;
	vm->rec.pid_start_time = 0;
	vm_transition_logged(vm, VM_EV_ADOPT_FAILED, err.message[0] ? err.message :
	    "emberd restarted and the hypervisor process was gone");
}

/* Removes ".<base>.tmp.*" files that a crash inside atomic_write_file()
 * left in dir (the rename never happened, so they hold nothing current). */
static void
remove_temp_files(const char *dir, const char *base)
{
	char prefix[64], path[PATH_MAX];
	struct dirent *de;
	DIR *dp = opendir(dir);

	if (dp == NULL)
		return;
	snprintf(prefix, sizeof(prefix), ".%s.tmp.", base);
	while ((de = readdir(dp)) != NULL) {
		if (strncmp(de->d_name, prefix, strlen(prefix)) != 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		log_warnx("repair: removing %s, left by an interrupted write", path);
		unlink(path);
	}
	closedir(dp);
}

int
vms_load(struct ember_daemon *d, struct ember_error *err)
{
	char path[PATH_MAX];
	struct dirent *de;
	bool cids_changed = false;
	DIR *dir;

	if (d->durable == NULL && (d->durable = durable_new(d->base, err)) == NULL)
		return -1;
	snprintf(path, sizeof(path), "%s/vms", d->state_dir);
	if (mkdir_p(path, 0711) < 0)
		return ember_error_set(err, EK_IO, "check the permissions of --state-dir",
		    "cannot create %s: %s", path, strerror(errno));
	if (chmod(path, 0711) < 0 || dir_passable(d->state_dir, err) < 0)
		return ember_error_set(err, EK_IO, "check the permissions of --state-dir",
		    "cannot make %s passable: %s", path, strerror(errno));
	snprintf(path, sizeof(path), "%s/vsock", d->state_dir);
	if (mkdir_p(path, 0750) < 0)
		return ember_error_set(err, EK_IO, "check the permissions of --state-dir",
		    "cannot create %s: %s", path, strerror(errno));
	remove_temp_files(path, "cids.json");
	if (cids_load(d, err) < 0)
		return -1;

	snprintf(path, sizeof(path), "%s/vms", d->state_dir);
	dir = opendir(path);
	if (dir == NULL)
		return ember_error_set(err, EK_IO, NULL, "cannot read %s: %s", path, strerror(errno));
	while ((de = readdir(dir)) != NULL) {
		char sub[PATH_MAX], json[PATH_MAX];
		struct stat st;

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name);
		if (strncmp(de->d_name, ".trash-", 7) == 0) {
			log_warnx("repair: finishing an interrupted delete (%s)", de->d_name);
			discard_trash(d, sub);	/* off the loop */
			continue;
		}
		if (strncmp(de->d_name, ".create-", 8) == 0) {
			log_warnx("repair: removing %s, a create that never finished", sub);
			discard_dir_anyway(d, sub);
			continue;
		}
		if (lstat(sub, &st) < 0 || !S_ISDIR(st.st_mode) || !vm_name_valid(de->d_name)) {
			log_warnx("repair: ignoring %s (not a VM directory)", sub);
			continue;
		}
		remove_temp_files(sub, "vm.json");
		snprintf(json, sizeof(json), "%s/vm.json", sub);
		if (access(json, F_OK) < 0 && errno == ENOENT) {
			log_warnx("repair: removing %s, a create that never finished", sub);
			discard_dir_anyway(d, sub);
			continue;
		}
		struct vm *vm = vm_load_one(d, de->d_name);
		if (vm == NULL) {
			ember_error_set(err, EK_INTERNAL, NULL, "out of memory loading VM \"%s\"",
			    de->d_name);
			closedir(dir);	/* frees de */
			return -1;
		}
		if (vm->load_error == NULL)
			vm_dir_share(d, vm->rec.name, vm->rec.owner_uid);
		vm_list_insert(d, vm);
	}
	closedir(dir);

	/* Orphans first: a CID held by a VM that does not exist must not
	 * push a listed VM that records it onto a fresh CID. */
	struct vm_orphans scan = { .d = d };
	cid_alloc_foreach(d->cids, collect_orphan, &scan);
	for (size_t i = 0; i < scan.n; i++) {
		cid_alloc_release(d->cids, scan.names[i]);
		cids_changed = true;
	}
	vm_orphans_free(&scan);
	if (scan.nomem)
		return ember_error_set(err, EK_INTERNAL, NULL,
		    "out of memory finding the CIDs of VMs that do not exist");
	for (size_t i = 0; i < d->nvms; i++)
		if (vm_repair_cid(d->vms[i]))
			cids_changed = true;
	if (cids_changed && cids_save(d, err) < 0)
		return -1;
	if (vm_network_load(d, err) < 0)	/* network/allocations.json, repaired alike */
		return -1;
	for (size_t i = 0; i < d->nvms; i++)
		vm_reattach(d->vms[i]);
	vm_network_reconcile(d);	/* TAPs and rules of what runs now, nothing else */
	log_info("loaded %zu VMs, %zu vsock CIDs in use", d->nvms, cid_alloc_count(d->cids));
	return 0;
}
