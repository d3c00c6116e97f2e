/*
 * Discarding directory trees (see discard.h): the rename on the loop or in
 * the writer's order, the removal always in the group-commit writer's
 * thread after its batch, between later ones (durable.c, step 4). Without a writer (a daemon
 * not fully started) everything happens here, synchronously.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"
#include "discard.h"
#include "fsutil.h"
#include "log.h"

static unsigned discard_counter;

int
discard_trash_name(const char *dir, char *buf, size_t len)
{
	char parent[PATH_MAX];
	const char *base = strrchr(dir, '/');
	struct timespec now;
	int r, n;

	if ((r = path_parent(dir, parent, sizeof(parent))) < 0)
		return r;
	base = base != NULL ? base + 1 : dir;
	/* pid and wall-clock time keep names apart across restarts, the
	 * counter within one emberd */
	clock_gettime(CLOCK_REALTIME, &now);
	n = snprintf(buf, len, "%s/.trash-%.64s-%d-%lld%09ld-%u", parent, base, (int)getpid(),
	    (long long)now.tv_sec, now.tv_nsec, ++discard_counter);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int
discard_dir_ordered(struct ember_daemon *d, const char *dir, const char *trash,
    durable_done_fn done, void *ctx, struct ember_error *err)
{
	char parent[PATH_MAX];
	int r = 0;

	if (d->durable != NULL)
		return durable_rename_dir(d->durable, dir, trash, true, done, ctx, err);
	if (rename(dir, trash) == 0)
		r = path_parent(dir, parent, sizeof(parent)) < 0 ? -ENAMETOOLONG :
		    fsync_dir(parent);
	else if (errno != ENOENT)
		r = -errno;
	rm_rf(trash);
	rm_rf(dir);
	if (done != NULL)
		done(ctx, r);
	return 0;
}

void
discard_trash(struct ember_daemon *d, const char *trash)
{
	struct ember_error err = { 0 };

	if (d->durable != NULL && durable_remove_dir(d->durable, trash, NULL, NULL, &err) == 0)
		return;
	if (ember_error_is_set(&err))
		log_warnx("%s (removing it now)", err.message);
	rm_rf(trash);
}

int
discard_dir_now_then(struct ember_daemon *d, const char *dir, durable_done_fn done, void *ctx,
    struct ember_error *err)
{
	char trash[PATH_MAX], parent[PATH_MAX];
	struct ember_error queue_err = { 0 };
	int r;

	if ((r = discard_trash_name(dir, trash, sizeof(trash))) < 0)
		return ember_error_set(err, EK_IO, "use a shorter --state-dir",
		    "cannot name the trash for %s: %s", dir, strerror(-r));
	if (rename(dir, trash) < 0) {
		if (errno != ENOENT)
			return ember_error_set(err, EK_IO, NULL, "cannot move %s away: %s", dir,
			    strerror(errno));
		if (done != NULL)
			done(ctx, 0);
		return 0;
	}
	if (d->durable != NULL &&
	    durable_remove_dir(d->durable, trash, done, ctx, &queue_err) == 0)
		return 0;
	if (ember_error_is_set(&queue_err))
		log_warnx("%s (removing it now)", queue_err.message);
	r = path_parent(dir, parent, sizeof(parent)) < 0 ? -ENAMETOOLONG : fsync_dir(parent);
	rm_rf(trash);
	if (done != NULL)
		done(ctx, r);
	return 0;
}

int
discard_dir_now(struct ember_daemon *d, const char *dir, struct ember_error *err)
{
	return discard_dir_now_then(d, dir, NULL, NULL, err);
}

void
discard_dir_anyway(struct ember_daemon *d, const char *dir)
{
	struct ember_error err = { 0 };

	if (discard_dir_now(d, dir, &err) < 0) {
		log_warnx("%s (removing it in place)", err.message);
		rm_rf(dir);
	}
}
