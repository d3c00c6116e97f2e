/*
 * Removing a directory tree without blocking the event loop. A tree is
 * first given a trash name beside it (".trash-*", one rename), which frees
 * its old name at once and marks it for the startup repair; the
 * group-commit writer (durable.h) then syncs the parent and removes the
 * trash after its batch, between later batches, off the loop. Used for a deleted VM's directory,
 * a deleted image, a failed import's staging directory and whatever trash
 * a crash left behind.
 */
#ifndef EMBER_DISCARD_H
#define EMBER_DISCARD_H

#include <stddef.h>

#include "durable.h"
#include "error.h"

struct ember_daemon;

/* Queues the move of dir to trash with the other state writes, so it
 * reaches the disk in submission order (a VM's delete: before cids.json
 * drops its CID), then the sync of both parents and the removal of trash.
 * done(ctx, result) on the loop once the move is durable (may be NULL).
 * Without a writer, does it all here. 0, or -1 with err (nothing queued,
 * done not called). */
int discard_dir_ordered(struct ember_daemon *d, const char *dir, const char *trash,
    durable_done_fn done, void *ctx, struct ember_error *err);
/* Renames dir to a fresh trash name beside it now (on the loop: cheap and
 * atomic, so dir's name is free when this returns) and has the trash
 * removed off the loop. A missing dir is success. 0, or -1 with err when
 * the rename failed (dir left as it was). */
int discard_dir_now(struct ember_daemon *d, const char *dir, struct ember_error *err);
/* discard_dir_now, then done(ctx, result) on the loop once the move is
 * durable (dir's parent synced by the writer; without one, here before
 * returning). A missing dir is done(ctx, 0) at once. 0, or -1 with err
 * when the rename failed (dir left as it was, done not called). */
int discard_dir_now_then(struct ember_daemon *d, const char *dir, durable_done_fn done,
    void *ctx, struct ember_error *err);
/* discard_dir_now for a tree nobody waits on (a failed import's staging
 * directory, a create that never finished): when it cannot be moved, that
 * is logged and it is removed here instead. */
void discard_dir_anyway(struct ember_daemon *d, const char *dir);
/* Has the tree at trash, under a name nothing else will take, removed off
 * the loop (a crash's leftover .trash-* at startup). */
void discard_trash(struct ember_daemon *d, const char *trash);
/* "<parent>/.trash-<base>-<unique>": a trash name for dir that no other
 * discard of this or an earlier emberd uses. 0 or -ENAMETOOLONG. */
int discard_trash_name(const char *dir, char *buf, size_t len);

#endif
