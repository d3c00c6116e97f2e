/*
 * Group-committed durable writes: the event loop hands "make this state
 * durable" jobs (replace a file, sync a file or a directory, move a
 * directory away, remove a tree) to one writer thread, which takes everything queued as one batch, shares
 * the batch's fsyncs and completes each job through a callback on the loop.
 * The ordering rules are in durable.c's header.
 *
 * Every job gets a sequence number; durable_wait(seq) answers once every
 * job up to seq is durable, which is how a reply is held back until the
 * state its operation changed is on disk.
 */
#ifndef EMBER_DURABLE_H
#define EMBER_DURABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "error.h"

struct event_base;
struct durable;

/* Jobs queued and not yet taken by the writer; past this (or
 * DURABLE_PENDING_BYTES_MAX bytes of file contents) a submission waits for
 * the writer to take the queue: back-pressure instead of unbounded memory. */
#define DURABLE_PENDING_MAX		4096
#define DURABLE_PENDING_BYTES_MAX	(64u << 20)

/* result: 0, or -errno of the step that failed. Runs on the loop. */
typedef void (*durable_done_fn)(void *ctx, int result);

struct durable *durable_new(struct event_base *base, struct ember_error *err);
/* Finishes every job queued (running their callbacks, which may queue
 * more), then stops the writer. NULL is a no-op. */
void durable_free(struct durable *dw);

/* Replaces path with the len bytes at text (taken: freed by durable) and
 * mode: temp file, fsync, rename, fsync of the directory. A write of the
 * same path still queued is replaced (the latest contents win, every
 * waiter is answered). done may be NULL; a failure is then logged. */
int durable_write_take(struct durable *dw, const char *path, char *text, size_t len,
    mode_t mode, durable_done_fn done, void *ctx, struct ember_error *err);
/* Makes a deferred write's contents on the loop: a malloc'd text (taken
 * by durable) with its length in *len, or NULL when out of memory. It must
 * not call into durable. */
typedef char *(*durable_fill_fn)(void *ctx, size_t *len);

/* A write of path whose contents are made later, once for every save of
 * path since the writer last took it: fill(fill_ctx) runs on the loop when
 * the writer could take the queue (a later turn of the loop, or when the
 * writer finishes its batch), in durable_flush, or when the queue is full;
 * until then the writer takes nothing. So a table saved at every change of
 * a burst is serialised once per batch, not once per change. A save that
 * joins a queued one keeps its place in the order, unless a directory was
 * renamed or removed behind it: then it moves to the tail (durable.c's
 * header says why). fill_ctx must outlive the fill (at the latest
 * durable_flush or durable_free). done may be NULL, as for a write. */
int durable_write_deferred(struct durable *dw, const char *path, mode_t mode,
    durable_fill_fn fill, void *fill_ctx, durable_done_fn done, void *ctx,
    struct ember_error *err);
/* Makes the entries of dir (created or renamed on the loop) durable. */
int durable_sync_dir(struct durable *dw, const char *dir, durable_done_fn done, void *ctx,
    struct ember_error *err);
/* Flushes the data of the file at path (written by a child process, say
 * an import's cp) with fdatasync, or the file system's syncfs in a batch
 * of many files. It is synced in step 1 of its batch, before any rename of
 * that batch or a later one: a record written after it (image.json) never
 * reaches the disk before the data it names. */
int durable_sync_file(struct durable *dw, const char *path, durable_done_fn done, void *ctx,
    struct ember_error *err);
/* Removes the tree at dir once its batch is acknowledged, after syncing
 * dir's parent: for a directory the loop already renamed there (a trash
 * name), so the rename becomes durable and the slow removal runs off the
 * loop. done(ctx, result) once the parent is synced (not the removal). */
int durable_remove_dir(struct durable *dw, const char *dir, durable_done_fn done, void *ctx,
    struct ember_error *err);
/* Renames the directory from to `to` (a missing from is success), syncs
 * their parents, and when remove_after, removes `to` once the batch is
 * acknowledged. */
int durable_rename_dir(struct durable *dw, const char *from, const char *to,
    bool remove_after, durable_done_fn done, void *ctx, struct ember_error *err);

/* Makes the directory dir (mode, as the umask leaves it), or moves from
 * there when from is not NULL, after removing whatever tree is at dir: the
 * loop must hold the name. It runs first in its batch (before any file is
 * written), so writes into dir may be queued right after it. dir's parent
 * is not synced by it: a later durable_sync_dir does that. For a new VM's
 * directory, whose mkdir ext4 can make slow (an inode search past recently
 * freed ones: half the loop's time in a batch of creates, perf). */
int durable_make_dir(struct durable *dw, const char *dir, const char *from, mode_t mode,
    durable_done_fn done, void *ctx, struct ember_error *err);

/* Between plug and unplug the writer takes nothing new, so the jobs of one
 * change (a create's cids.json, vm.json and directory sync) go to disk in
 * one batch rather than the first alone. Nests; never across a return to
 * the loop. */
void durable_plug(struct durable *dw);
void durable_unplug(struct durable *dw);

/* True when the queue holds half of what it may: bulk submitters (a
 * JSON-RPC batch) hold back until the writer takes it, so that the loop
 * does not reach the bound and wait for the disk. NULL: false. */
bool durable_crowded(struct durable *dw);

/* The sequence number of the last job submitted (0: none yet). */
uint64_t durable_last_seq(const struct durable *dw);
/* Calls done(ctx, 0) once every job up to seq is durable: at once when it
 * already is, else from the loop when its batch completes. 0, or -1 with
 * err (out of memory; nothing is called). */
int durable_wait(struct durable *dw, uint64_t seq, durable_done_fn done, void *ctx,
    struct ember_error *err);
/* Blocks until everything queued is durable and runs the callbacks
 * (shutdown, tests). */
void durable_flush(struct durable *dw);

/* Batches and fsyncs (syncfs calls included) so far (benchmarks, tests). */
struct durable_stats {
	uint64_t jobs, batches, fsyncs, coalesced, waited_for_room;
	uint64_t fills;		/* deferred writes' contents made */
};
void durable_get_stats(struct durable *dw, struct durable_stats *out);

#endif
