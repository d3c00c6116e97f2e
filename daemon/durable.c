/*
 * The group-commit writer (see durable.h). The loop queues jobs under a
 * mutex; one writer thread takes the whole queue as a batch, runs it and
 * posts it back through a pipe, and the loop runs the callbacks. The loop
 * never fsyncs; the writer never touches daemon state, only the paths and
 * bytes a job carries (snapshots taken on the loop, which stays the
 * authority: a later change of the same file is a later job).
 *
 * A batch runs in four steps, after a step 0 that makes the new
 * directories of its durable_make_dir jobs (whatever the loop queued
 * before them cannot involve those names: the loop holds a name until its
 * directory is made or gone):
 *   1. every file's contents go to a temp file beside it, and every temp
 *      file and every file to sync (durable_sync_file) is synced (written
 *      all first, then synced, so the file system commits them together:
 *      fsync for a temp file, fdatasync for a file to sync; from
 *      DURABLE_SYNCFS_MIN files on, one syncfs per file system instead);
 *   2. in submission order: each temp file is renamed over its file, each
 *      directory rename (a delete moving vms/<name> to .trash-*) is done;
 *   3. every distinct directory touched (the files' parents, the renames'
 *      parents, directories the loop asked to sync) is fsync'd once (or,
 *      from DURABLE_SYNCFS_MIN on, one syncfs per file system);
 *   4. the batch is posted to the loop, which sets the completed sequence
 *      number, runs each job's callbacks (a share of a turn at a time:
 *      at most DURABLE_CALLBACKS_PER_TURN, loop-share.h) and answers
 *      durable_wait()s; then
 *      the writer removes the trees of renamed directories marked so and
 *      of durable_remove_dir's directories (the loop never unlinks a
 *      big tree), one tree at a time and only while no batch is ready:
 *      a batch queued meanwhile goes first (trash_queue).
 * A write of a path still queued is replaced and moved to the tail, so
 * step 2 equals the submission order with superseded versions of a file
 * left out. Batches run strictly one after another.
 *
 * A deferred write (durable_write_deferred: cids.json) is queued without
 * contents; saves of its path join it until its contents are made (a save
 * after that queues a new one), and while one is unmade the writer takes
 * nothing. The loop makes the contents once (on_fill, at a turn when
 * the writer is idle), from the state after every save that joined, so a
 * burst of k creates costs one serialisation per batch instead of k. A
 * joining save leaves it where it is, since its contents already cover the
 * joiner's change and it stays ahead of every job queued after its place
 * (a create's vm.json). Only when a directory was renamed or removed after
 * its place (a delete) does it move to the tail, so it stays behind the
 * rename it must follow. Its sequence number is the latest joiner's.
 *
 * What crash recovery relies on (vm.c and vm-store.c name the files):
 *  - Killed at any point, the disk holds a prefix of the submitted changes
 *    in submission order (minus superseded writes) plus temp files, which
 *    startup removes. So the orders vm.c submits in are kept on disk:
 *    create: cids.json with the new CID, then vm.json, then the sync of
 *    vms/ (the directory itself was made on the loop; without vm.json it
 *    is a create that never finished); delete: vms/<name> renamed to
 *    .trash-*, then cids.json without the CID.
 *  - A reply waits (durable_wait) for its operation's last job; every
 *    earlier job is in the same batch or an earlier one, whose fsyncs are
 *    done by then. So an acknowledged create or delete survives power
 *    loss too.
 *  - The loop releases a deleted VM's CID at once. A later create reusing
 *    it writes its vm.json after the delete's rename, in the same batch or
 *    a later one, so two records never name one CID on disk.
 *  - vm.c keeps a name taken until its delete is durable, so no job for a
 *    new VM of that name can meet the old one's queued rename; the VM's
 *    own vm.json still queued when the rename is (its last status) is
 *    skipped, not written into a directory its batch moves away.
 *  - image import (image.c): every file the import wrote (rootfs, kernel,
 *    initrd) is queued with durable_sync_file before image.json's write,
 *    so step 1 syncs their data no later than image.json's temp file and
 *    before its rename (step 2); the staging directory's own sync (step 3,
 *    image.json's parent) makes their names durable; only then is the
 *    staging directory renamed to images/<name> and images/ synced. A
 *    directory under its final name thus always holds a durable record
 *    and durable data.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "durable.h"
#include "fsutil.h"
#include "log.h"
#include "loop-share.h"
#include "metrics.h"
#include "worker.h"

/* Jobs whose callbacks run in one turn of the loop (complete_done). */
#define DURABLE_CALLBACKS_PER_TURN 64
/* Temp files open at once in step 1 (the rest wait for the next round). */
#define DURABLE_OPEN_MAX 64
/* From this many files (step 1) or directories (step 3) on, one syncfs per
 * file system replaces their fsyncs: it costs about one fsync here, and a
 * batch of k creates would otherwise make 2k + 3 of them. */
#define DURABLE_SYNCFS_MIN 4
/* Buckets of the index of queued jobs by kind and path (a power of two):
 * a save finds the job it joins without walking the queue. */
#define DURABLE_INDEX_BUCKETS 1024
/* Counters of the directories that hold queued writes and directory
 * syncs (each job counts in every ancestor's bucket): a directory moved to
 * trash whose bucket is 0 has nothing queued under it, and supersede_under
 * need not walk the queue. Buckets are shared, so a count can be another
 * directory's (a walk for nothing), never missing. */
#define DURABLE_UNDER_BUCKETS 4096

enum durable_kind {
	DJ_WRITE,
	DJ_SYNC_FILE,
	DJ_SYNC_DIR,
	DJ_RENAME_DIR,
	DJ_REMOVE_DIR,
	DJ_MAKE_DIR,
};

struct durable_cb {
	durable_done_fn done;
	void *ctx;
	struct durable_cb *next;
};

struct durable_job {
	enum durable_kind kind;
	char *path;			/* the file, the directory or the rename's source */
	char *to;			/* DJ_RENAME_DIR; DJ_MAKE_DIR: what to move there, or NULL */
	char *text;			/* DJ_WRITE */
	size_t len;
	mode_t mode;
	bool remove_after;		/* DJ_RENAME_DIR: remove `to` after the batch */
	bool moved;			/* DJ_RENAME_DIR: the source existed */
	bool superseded;		/* inside a directory moved to trash: skipped, reported 0 */
	uint64_t seq;
	uint64_t placed_seq;		/* the sequence number it took its place with */
	/* DJ_WRITE made later on the loop (durable_write_deferred); while
	 * unfilled, it is on the durable's unfilled list and has no text */
	durable_fill_fn fill;
	void *fill_ctx;
	bool unfilled;
	struct durable_job *unfilled_next;
	struct durable_job *index_next;	/* the chain of its bucket while queued */
	double submitted;		/* durable_now() at the last submission */
	int result;
	/* the writer's, during a batch */
	int fd;
	char *tmp;
	size_t dir[2];			/* indexes into the batch's directories */
	size_t ndirs;
	struct durable_cb *cbs, **cbs_tail;
	struct durable_job *prev, *next;
};

struct durable_wait_rec {
	uint64_t seq;
	durable_done_fn done;
	void *ctx;
	struct durable_wait_rec *next;
};

struct durable {
	struct event_base *base;
	pthread_t thread;
	bool thread_started;
	pthread_mutex_t lock;
	pthread_cond_t wake;		/* the writer: work queued, or stop */
	pthread_cond_t room;		/* the loop: the writer took the queue or went idle */
	/* under lock */
	struct durable_job *pending_head, *pending_tail;
	struct durable_job *index[DURABLE_INDEX_BUCKETS];	/* of the queued jobs */
	uint32_t under[DURABLE_UNDER_BUCKETS];	/* see DURABLE_UNDER_BUCKETS */
	size_t npending, pending_bytes;
	bool busy;			/* the writer holds a batch */
	unsigned plugged;		/* durable_plug depth: the writer waits */
	/* deferred writes without contents yet (changed by the loop alone):
	 * the writer waits while there is one */
	struct durable_job *unfilled;
	size_t nunfilled;
	uint64_t moved_seq;		/* the last directory rename or removal */
	bool stopping;
	struct durable_job *done_head, *done_tail;
	struct durable_stats stats;
	/* the loop's */
	int pipe_rd, pipe_wr;
	struct event *ev;
	uint64_t last_seq, completed_seq;
	/* jobs posted back whose callbacks have not run yet, and the highest
	 * number among those that ran */
	struct durable_job *ready_head, *ready_tail;
	uint64_t reported_seq;
	struct event *ev_more;		/* the next slice of ready_head */
	struct event *ev_fill;		/* make the deferred writes' contents */
	struct durable_wait_rec *waits, **waits_tail;	/* in the order asked */
	bool warned_full;
};

static double
durable_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
job_free(struct durable_job *j)
{
	while (j->cbs != NULL) {
		struct durable_cb *cb = j->cbs;
		j->cbs = cb->next;
		free(cb);
	}
	free(j->path);
	free(j->to);
	free(j->text);
	free(j->tmp);
	free(j);
}

/* ---- the writer thread -------------------------------------------------- */

struct dir_set {
	char **names;
	int *results;
	size_t n, cap;
};

/* Index of dir in the set, added when new; SIZE_MAX when out of memory. */
static size_t
dir_set_add(struct dir_set *s, const char *dir)
{
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->names[i], dir) == 0)
			return i;
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 16;
		char **names = realloc(s->names, cap * sizeof(*names));
		if (names == NULL)
			return SIZE_MAX;
		s->names = names;
		int *results = realloc(s->results, cap * sizeof(*results));
		if (results == NULL)
			return SIZE_MAX;
		s->results = results;
		s->cap = cap;
	}
	if ((s->names[s->n] = strdup(dir)) == NULL)
		return SIZE_MAX;
	s->results[s->n] = 0;
	return s->n++;
}

static void
job_add_dir(struct dir_set *s, struct durable_job *j, const char *path, bool is_dir)
{
	char dir[PATH_MAX];
	size_t i;
	int r = is_dir ? 0 : path_parent(path, dir, sizeof(dir));

	if (r == 0 && (i = dir_set_add(s, is_dir ? path : dir)) != SIZE_MAX)
		j->dir[j->ndirs++] = i;
	else if (j->result == 0)
		j->result = r < 0 ? r : -ENOMEM;
}

/* Syncs the file systems of fds[0..n): one syncfs per distinct one; each
 * results[i] gets its file system's outcome. Returns the syncfs calls. */
static uint64_t
sync_by_fs(const int *fds, int *results, size_t n)
{
	dev_t devs[DURABLE_OPEN_MAX];
	int dev_result[DURABLE_OPEN_MAX];
	size_t ndevs = 0, k;
	struct stat st;

	for (size_t i = 0; i < n; i++) {
		if (fstat(fds[i], &st) < 0) {
			results[i] = -errno;
			continue;
		}
		for (k = 0; k < ndevs && devs[k] != st.st_dev; k++)
			;
		if (k == ndevs) {
			devs[ndevs] = st.st_dev;
			dev_result[ndevs++] = syncfs(fds[i]) < 0 ? -errno : 0;
		}
		results[i] = dev_result[k];
	}
	return ndevs;
}

/* Step 3 for dirs[from..from+n), n <= DURABLE_OPEN_MAX, through syncfs. */
static uint64_t
sync_dirs_by_fs(struct dir_set *dirs, size_t from, size_t n)
{
	int fds[DURABLE_OPEN_MAX] = { 0 }, results[DURABLE_OPEN_MAX];
	size_t idx[DURABLE_OPEN_MAX], nopen = 0;
	uint64_t calls;

	for (size_t i = from; i < from + n; i++) {
		int fd = open(dirs->names[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0) {
			dirs->results[i] = -errno;
			continue;
		}
		idx[nopen] = i;
		fds[nopen++] = fd;
	}
	calls = sync_by_fs(fds, results, nopen);
	for (size_t i = 0; i < nopen; i++) {
		dirs->results[idx[i]] = results[i];
		close(fds[i]);
	}
	return calls;
}

/* fdatasync, then close: 0 or -errno of the first that failed. */
static int
sync_file_close(int fd)
{
	int r = fdatasync(fd) < 0 ? -errno : 0;

	if (close(fd) < 0 && r == 0)
		r = -errno;
	return r;
}

/* Step 1 for up to DURABLE_OPEN_MAX files from *from on; returns where
 * the next round starts. */
static struct durable_job *
write_temps(struct durable *dw, struct durable_job *from)
{
	struct durable_job *j, *opened[DURABLE_OPEN_MAX];
	size_t n = 0;
	uint64_t synced = 0;

	for (j = from; j != NULL && n < DURABLE_OPEN_MAX; j = j->next) {
		if (j->kind == DJ_SYNC_FILE) {
			j->fd = open(j->path, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC);
			if (j->fd < 0)
				j->result = -errno;
			else
				opened[n++] = j;
			continue;
		}
		if (j->kind != DJ_WRITE || j->result < 0 || j->superseded)
			continue;
		size_t tmplen = strlen(j->path) + 32;
		if ((j->tmp = malloc(tmplen)) == NULL) {
			j->result = -ENOMEM;
			continue;
		}
		j->fd = atomic_temp_write(j->path, j->text, j->len, j->mode, j->tmp, tmplen);
		if (j->fd < 0) {
			j->result = j->fd;
			free(j->tmp);
			j->tmp = NULL;
			continue;
		}
		opened[n++] = j;
	}
	if (n >= DURABLE_SYNCFS_MIN) {
		int fds[DURABLE_OPEN_MAX] = { 0 }, results[DURABLE_OPEN_MAX];
		for (size_t i = 0; i < n; i++)
			fds[i] = opened[i]->fd;
		synced += sync_by_fs(fds, results, n);
		for (size_t i = 0; i < n; i++) {
			opened[i]->result = results[i];
			if (close(opened[i]->fd) < 0 && opened[i]->result == 0)
				opened[i]->result = -errno;
			opened[i]->fd = -1;
			if (opened[i]->result < 0 && opened[i]->tmp != NULL)
				unlink(opened[i]->tmp);
		}
	} else
		for (size_t i = 0; i < n; i++) {
			if (opened[i]->kind == DJ_SYNC_FILE)
				opened[i]->result = sync_file_close(opened[i]->fd);
			else
				opened[i]->result = atomic_temp_sync(opened[i]->fd, opened[i]->tmp);
			opened[i]->fd = -1;
			synced++;
		}
	for (size_t i = 0; i < n; i++)
		if (opened[i]->result < 0) {
			free(opened[i]->tmp);
			opened[i]->tmp = NULL;
		}
	pthread_mutex_lock(&dw->lock);
	dw->stats.fsyncs += synced;
	pthread_mutex_unlock(&dw->lock);
	return j;
}

static void
run_batch(struct durable *dw, struct durable_job *head)
{
	struct dir_set dirs = { 0 };
	struct durable_job *j;
	uint64_t synced = 0;

	/* 0. new directories, so that this batch's files can go in them */
	for (j = head; j != NULL; j = j->next)
		if (j->kind == DJ_MAKE_DIR) {
			/* whatever is there is no VM's: the loop holds the name */
			rm_rf(j->path);
			if ((j->to != NULL ? rename(j->to, j->path) : mkdir(j->path, j->mode)) < 0)
				j->result = -errno;
		}
	/* 1. contents */
	for (j = head; j != NULL; )
		j = write_temps(dw, j);
	/* 2. names, in submission order */
	for (j = head; j != NULL; j = j->next) {
		if (j->superseded)
			continue;
		switch (j->kind) {
		case DJ_WRITE:
			if (j->result < 0)
				break;
			if (rename(j->tmp, j->path) < 0) {
				j->result = -errno;
				unlink(j->tmp);
				break;
			}
			job_add_dir(&dirs, j, j->path, false);
			break;
		case DJ_RENAME_DIR:
			if (rename(j->path, j->to) == 0) {
				j->moved = true;
				job_add_dir(&dirs, j, j->path, false);
				job_add_dir(&dirs, j, j->to, false);
			} else if (errno != ENOENT)
				j->result = -errno;
			break;
		case DJ_SYNC_DIR:
			job_add_dir(&dirs, j, j->path, true);
			break;
		case DJ_REMOVE_DIR:
			job_add_dir(&dirs, j, j->path, false);
			break;
		case DJ_SYNC_FILE:
		case DJ_MAKE_DIR:
			break;
		}
	}
	/* 3. directories, once each */
	if (dirs.n >= DURABLE_SYNCFS_MIN)
		for (size_t i = 0; i < dirs.n; i += DURABLE_OPEN_MAX)
			synced += sync_dirs_by_fs(&dirs, i, dirs.n - i < DURABLE_OPEN_MAX ?
			    dirs.n - i : DURABLE_OPEN_MAX);
	else
		for (size_t i = 0; i < dirs.n; i++) {
			dirs.results[i] = fsync_dir(dirs.names[i]);
			synced++;
		}
	for (j = head; j != NULL; j = j->next)
		for (size_t k = 0; k < j->ndirs && j->result == 0; k++)
			j->result = dirs.results[j->dir[k]];
	for (size_t i = 0; i < dirs.n; i++)
		free(dirs.names[i]);
	free(dirs.names);
	free(dirs.results);
	pthread_mutex_lock(&dw->lock);
	dw->stats.fsyncs += synced;
	pthread_mutex_unlock(&dw->lock);
}

/* The tree a job leaves to remove after its batch, or NULL. */
static const char *
job_removal(const struct durable_job *j)
{
	if (j->kind == DJ_REMOVE_DIR)
		return j->path;
	if (j->kind == DJ_RENAME_DIR && j->remove_after && j->moved)
		return j->to;
	return NULL;
}

/* The trees batches left to remove, the writer's own (no lock): removed
 * one at a time between batches, oldest first, and only while no batch is
 * ready. Removing 2,000 deleted VMs' directories took the writer 150 ms
 * in one piece after their batch; the creates queued meanwhile filled the
 * queue, and the loop waited for room (bench-control (c), a batch of
 * creates after a batch of deletes). */
struct trash_queue {
	char **paths;
	size_t next, n, cap;
};

static void
trash_add(struct trash_queue *tq, const char *path)
{
	char *copy = NULL;

	if (tq->n == tq->cap) {
		size_t cap = tq->cap != 0 ? tq->cap * 2 : 64;
		char **grown = realloc(tq->paths, cap * sizeof(*grown));
		if (grown != NULL) {
			tq->paths = grown;
			tq->cap = cap;
		}
	}
	if (tq->n == tq->cap || (copy = strdup(path)) == NULL) {
		rm_rf(path);	/* out of memory: at once, as before */
		return;
	}
	tq->paths[tq->n++] = copy;
}

static void
trash_remove_one(struct trash_queue *tq)
{
	char *path = tq->paths[tq->next++];

	rm_rf(path);
	free(path);
	if (tq->next == tq->n)
		tq->next = tq->n = 0;
}

/* Queues the trees batch leaves to remove. A directory that could not be
 * moved away is removed at once, where it is. */
static void
collect_removals(struct durable_job *batch, struct trash_queue *tq)
{
	const char *path;

	for (struct durable_job *j = batch; j != NULL; j = j->next) {
		if (j->kind == DJ_RENAME_DIR && j->remove_after && !j->moved && j->result < 0)
			rm_rf(j->path);
		if ((path = job_removal(j)) != NULL)
			trash_add(tq, path);
	}
}

/* Under lock: whether the writer may take the queue now. Stopping, a
 * plugged queue goes too; an unmade deferred write never does (what is
 * left then is answered by durable_free). */
static bool
batch_ready(const struct durable *dw)
{
	return dw->pending_head != NULL && dw->nunfilled == 0 &&
	    (dw->plugged == 0 || dw->stopping);
}

static void *
writer_main(void *arg)
{
	struct durable *dw = arg;
	struct trash_queue trash = { 0 };

	pthread_mutex_lock(&dw->lock);
	for (;;) {
		while (!batch_ready(dw) && !dw->stopping && trash.n == 0)
			pthread_cond_wait(&dw->wake, &dw->lock);
		if (!batch_ready(dw)) {
			if (trash.n == 0)
				break;	/* stopping, and nothing left to do */
			pthread_mutex_unlock(&dw->lock);
			trash_remove_one(&trash);
			pthread_mutex_lock(&dw->lock);
			continue;
		}
		struct durable_job *batch = dw->pending_head, *tail = dw->pending_tail;
		dw->pending_head = dw->pending_tail = NULL;
		memset(dw->index, 0, sizeof(dw->index));
		memset(dw->under, 0, sizeof(dw->under));
		dw->npending = dw->pending_bytes = 0;
		dw->busy = true;
		pthread_cond_broadcast(&dw->room);
		pthread_mutex_unlock(&dw->lock);

		run_batch(dw, batch);
		/* What to remove once the loop has the batch (it frees the jobs). */
		collect_removals(batch, &trash);
		pthread_mutex_lock(&dw->lock);
		batch->prev = dw->done_tail;
		if (dw->done_tail != NULL)
			dw->done_tail->next = batch;
		else
			dw->done_head = batch;
		dw->done_tail = tail;
		dw->stats.batches++;
		dw->busy = false;
		pthread_cond_broadcast(&dw->room);
		pthread_mutex_unlock(&dw->lock);
		/* A full pipe already holds a wake-up. */
		char one = 1;
		ssize_t ignored = write(dw->pipe_wr, &one, 1);
		(void)ignored;
		pthread_mutex_lock(&dw->lock);
	}
	pthread_mutex_unlock(&dw->lock);
	free(trash.paths);
	return NULL;
}

/* ---- the loop's side ---------------------------------------------------- */

static void
run_ready_waits(struct durable *dw)
{
	struct durable_wait_rec *ready = NULL, **tail = &ready, **p = &dw->waits;

	while (*p != NULL) {
		struct durable_wait_rec *w = *p;
		if (w->seq <= dw->completed_seq) {
			*p = w->next;
			w->next = NULL;
			*tail = w;
			tail = &w->next;
		} else
			p = &w->next;
	}
	dw->waits_tail = p;
	while (ready != NULL) {
		struct durable_wait_rec *w = ready;
		ready = w->next;
		w->done(w->ctx, 0);
		free(w);
	}
}

static void
job_report(struct durable_job *j)
{
	static const char *const whats[] = {
		[DJ_WRITE] = "write", [DJ_SYNC_FILE] = "sync the file",
		[DJ_SYNC_DIR] = "sync the directory", [DJ_RENAME_DIR] = "move away",
		[DJ_REMOVE_DIR] = "sync the parent of", [DJ_MAKE_DIR] = "make the directory",
	};
	const char *what = whats[j->kind];

	if (j->result < 0 && j->cbs == NULL)
		log_warnx("durable state: cannot %s %s: %s", what, j->path, strerror(-j->result));
	while (j->cbs != NULL) {
		struct durable_cb *cb = j->cbs;
		j->cbs = cb->next;
		cb->done(cb->ctx, j->result);
		free(cb);
	}
}

/* Runs the callbacks of the batches the writer finished: a share of the
 * loop's turn (the rest at the next turn: a batch of a thousand creates is
 * answered over several turns, and other clients are served between them),
 * or, for a flush, all of them. */
static void
complete_done(struct durable *dw, bool share_only)
{
	struct durable_job *list, *tail, *j;
	uint64_t completed, left_min = UINT64_MAX;
	struct loop_share share;

	pthread_mutex_lock(&dw->lock);
	list = dw->done_head;
	tail = dw->done_tail;
	dw->done_head = dw->done_tail = NULL;
	pthread_mutex_unlock(&dw->lock);
	if (list != NULL) {
		double now = durable_now();
		for (j = list; j != NULL; j = j->next)
			metrics_observe_durable_write(now - j->submitted);
		if (dw->ready_tail != NULL)
			dw->ready_tail->next = list;
		else
			dw->ready_head = list;
		dw->ready_tail = tail;
	}
	if (share_only)
		loop_share_start(&share, DURABLE_CALLBACKS_PER_TURN);
	else
		loop_share_unlimited(&share);
	while (dw->ready_head != NULL && loop_share_take(&share)) {
		j = dw->ready_head;
		if ((dw->ready_head = j->next) == NULL)
			dw->ready_tail = NULL;
		if (j->seq > dw->reported_seq)
			dw->reported_seq = j->seq;
		job_report(j);
		job_free(j);
	}
	/* Whole batches are durable, but a waiter is answered only after the
	 * callbacks of every job up to its number ran (a create's callback
	 * before the operations queued behind it): up to just below the
	 * lowest number still to report. */
	for (j = dw->ready_head; j != NULL; j = j->next)
		if (j->seq < left_min)
			left_min = j->seq;
	completed = dw->reported_seq < left_min ? dw->reported_seq : left_min - 1;
	if (completed > dw->completed_seq)
		dw->completed_seq = completed;
	run_ready_waits(dw);
	if (dw->ready_head != NULL && dw->ev_more != NULL) {
		/* a timer, not event_active: the loop polls for I/O first */
		struct timeval zero = { 0, 0 };
		evtimer_add(dw->ev_more, &zero);
	}
}

static void
on_more(evutil_socket_t fd, short what, void *arg)
{
	complete_done(arg, true);
}

/* Makes the contents of every deferred write, on the loop; called with
 * the lock held, which it drops around each fill. The writer takes nothing
 * while one is unfilled, and only the loop changes the unfilled list, so
 * the job stays put meanwhile. */
static void
fill_deferred_locked(struct durable *dw)
{
	while (dw->unfilled != NULL) {
		struct durable_job *j = dw->unfilled;
		size_t len = 0;
		char *text;

		pthread_mutex_unlock(&dw->lock);
		text = j->fill(j->fill_ctx, &len);
		pthread_mutex_lock(&dw->lock);
		dw->unfilled = j->unfilled_next;
		j->unfilled_next = NULL;
		j->unfilled = false;
		dw->nunfilled--;
		dw->stats.fills++;
		if (text == NULL) {
			j->result = -ENOMEM;	/* reported to its callbacks */
			continue;
		}
		j->text = text;
		j->len = len;
		dw->pending_bytes += len;
	}
	if (dw->pending_head != NULL)
		pthread_cond_signal(&dw->wake);
}

/* At a turn of the loop after the saves: the contents are made once the
 * writer is idle; while it is busy, more saves may join, and the wake-up
 * of its batch arms this again. */
static void
on_fill(evutil_socket_t fd, short what, void *arg)
{
	struct durable *dw = arg;

	pthread_mutex_lock(&dw->lock);
	if (!dw->busy)
		fill_deferred_locked(dw);
	pthread_mutex_unlock(&dw->lock);
}

static void
arm_fill(struct durable *dw)
{
	struct timeval zero = { 0, 0 };

	/* a timer, not event_active: the requests read in this turn join first */
	if (dw->ev_fill != NULL && !evtimer_pending(dw->ev_fill, NULL))
		evtimer_add(dw->ev_fill, &zero);
}

static void
on_wakeup(evutil_socket_t fd, short what, void *arg)
{
	struct durable *dw = arg;
	char buf[64];

	while (read(fd, buf, sizeof(buf)) > 0)
		;
	complete_done(dw, true);
	if (dw->unfilled != NULL)
		arm_fill(dw);
}

struct durable *
durable_new(struct event_base *base, struct ember_error *err)
{
	struct durable *dw = calloc(1, sizeof(*dw));
	int fds[2];

	if (dw == NULL) {
		ember_error_set(err, EK_INTERNAL, NULL, "out of memory");
		return NULL;
	}
	dw->base = base;
	dw->pipe_rd = dw->pipe_wr = -1;
	dw->waits_tail = &dw->waits;
	pthread_mutex_init(&dw->lock, NULL);
	pthread_cond_init(&dw->wake, NULL);
	pthread_cond_init(&dw->room, NULL);
	if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) < 0) {
		ember_error_set(err, EK_INTERNAL, NULL, "cannot make the durable writer's pipe: %s",
		    strerror(errno));
		goto fail;
	}
	dw->pipe_rd = fds[0];
	dw->pipe_wr = fds[1];
	dw->ev = event_new(base, dw->pipe_rd, EV_READ | EV_PERSIST, on_wakeup, dw);
	dw->ev_more = evtimer_new(base, on_more, dw);
	dw->ev_fill = evtimer_new(base, on_fill, dw);
	if (dw->ev == NULL || dw->ev_more == NULL || dw->ev_fill == NULL ||
	    event_add(dw->ev, NULL) < 0) {
		ember_error_set(err, EK_INTERNAL, NULL, "cannot watch the durable writer's pipe");
		goto fail;
	}
	if (daemon_thread_start(&dw->thread, writer_main, dw, "emberd-writer",
	    "durable writer", err) < 0)
		goto fail;
	dw->thread_started = true;
	return dw;
fail:
	durable_free(dw);
	return NULL;
}

void
durable_flush(struct durable *dw)
{
	if (dw == NULL || !dw->thread_started)
		return;
	for (;;) {
		pthread_mutex_lock(&dw->lock);
		fill_deferred_locked(dw);
		while (dw->pending_head != NULL || dw->busy)
			pthread_cond_wait(&dw->room, &dw->lock);
		bool more = dw->done_head != NULL || dw->ready_head != NULL;
		pthread_mutex_unlock(&dw->lock);
		if (!more)
			break;
		complete_done(dw, false);	/* callbacks may queue more */
	}
	run_ready_waits(dw);
}

void
durable_free(struct durable *dw)
{
	if (dw == NULL)
		return;
	if (dw->thread_started) {
		durable_flush(dw);
		pthread_mutex_lock(&dw->lock);
		dw->stopping = true;
		pthread_cond_signal(&dw->wake);
		pthread_mutex_unlock(&dw->lock);
		pthread_join(dw->thread, NULL);
		/* A callback run by the flush cannot queue after it: nothing does
		 * at shutdown, but never leave a job unanswered. */
		complete_done(dw, false);
		dw->unfilled = NULL;
		dw->nunfilled = 0;
		memset(dw->index, 0, sizeof(dw->index));
		memset(dw->under, 0, sizeof(dw->under));
		while (dw->pending_head != NULL) {
			struct durable_job *j = dw->pending_head;
			dw->pending_head = j->next;
			j->result = -ESHUTDOWN;
			job_report(j);
			job_free(j);
		}
		dw->completed_seq = dw->last_seq;
		run_ready_waits(dw);
	}
	if (dw->ev != NULL)
		event_free(dw->ev);
	if (dw->ev_more != NULL)
		event_free(dw->ev_more);
	if (dw->ev_fill != NULL)
		event_free(dw->ev_fill);
	if (dw->pipe_rd >= 0)
		close(dw->pipe_rd);
	if (dw->pipe_wr >= 0)
		close(dw->pipe_wr);
	pthread_cond_destroy(&dw->wake);
	pthread_cond_destroy(&dw->room);
	pthread_mutex_destroy(&dw->lock);
	free(dw);
}

/* Called with the lock held: waits while the queue is full. */
static void
wait_for_room(struct durable *dw, size_t bytes)
{
	if (dw->plugged > 0 || (dw->npending < DURABLE_PENDING_MAX &&
	    dw->pending_bytes + bytes <= DURABLE_PENDING_BYTES_MAX))
		return;	/* plugged: a few jobs past the bound, never a deadlock */
	dw->stats.waited_for_room++;
	/* the writer takes nothing while a deferred write is unmade */
	fill_deferred_locked(dw);
	if (!dw->warned_full) {
		dw->warned_full = true;
		log_warnx("durable state: %zu writes queued; the loop waits for the disk "
		    "(logged once)", dw->npending);
	}
	while (dw->pending_head != NULL && (dw->npending >= DURABLE_PENDING_MAX ||
	    dw->pending_bytes + bytes > DURABLE_PENDING_BYTES_MAX))
		pthread_cond_wait(&dw->room, &dw->lock);
}

static int
job_add_cb(struct durable_job *j, durable_done_fn done, void *ctx)
{
	struct durable_cb *cb;

	if (done == NULL)
		return 0;
	if ((cb = calloc(1, sizeof(*cb))) == NULL)
		return -ENOMEM;
	cb->done = done;
	cb->ctx = ctx;
	*j->cbs_tail = cb;
	j->cbs_tail = &cb->next;
	return 0;
}

static void
pending_unlink(struct durable *dw, struct durable_job *j)
{
	if (j->prev != NULL)
		j->prev->next = j->next;
	else
		dw->pending_head = j->next;
	if (j->next != NULL)
		j->next->prev = j->prev;
	else
		dw->pending_tail = j->prev;
	j->prev = j->next = NULL;
}

static void
pending_append(struct durable *dw, struct durable_job *j)
{
	j->prev = dw->pending_tail;
	j->next = NULL;
	if (dw->pending_tail != NULL)
		dw->pending_tail->next = j;
	else
		dw->pending_head = j;
	dw->pending_tail = j;
}

/* Takes j off the unfilled list (it is on it). */
static void
unfilled_remove(struct durable *dw, struct durable_job *j)
{
	struct durable_job **p = &dw->unfilled;

	while (*p != j)
		p = &(*p)->unfilled_next;
	*p = j->unfilled_next;
	j->unfilled_next = NULL;
	j->unfilled = false;
	dw->nunfilled--;
}

/* The unfilled deferred write of path, or NULL (the list is short: one
 * per file saved this way). */
static struct durable_job *
unfilled_find(struct durable *dw, const char *path)
{
	for (struct durable_job *j = dw->unfilled; j != NULL; j = j->unfilled_next)
		if (strcmp(j->path, path) == 0)
			return j;
	return NULL;
}

static size_t
index_bucket(enum durable_kind kind, const char *path)
{
	uint32_t h = 2166136261u ^ (uint32_t)kind;	/* FNV-1a */

	for (const unsigned char *p = (const unsigned char *)path; *p != '\0'; p++)
		h = (h ^ *p) * 16777619u;
	return h & (DURABLE_INDEX_BUCKETS - 1);
}

/* A queued job of kind for path that a new one may join, or NULL. */
static struct durable_job *
pending_find(struct durable *dw, enum durable_kind kind, const char *path)
{
	for (struct durable_job *j = dw->index[index_bucket(kind, path)]; j != NULL;
	    j = j->index_next)
		if (j->kind == kind && strcmp(j->path, path) == 0)
			return j;
	return NULL;
}

/* FNV-1a of the directory path p[0..len), for under[]. */
static size_t
under_bucket(const char *p, size_t len)
{
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char)p[i]) * 16777619u;
	return h & (DURABLE_UNDER_BUCKETS - 1);
}

/* Counts a write or directory sync of path in the buckets of path itself
 * and of each directory above it. */
static void
under_count(struct durable *dw, const char *path)
{
	size_t len = strlen(path);

	for (size_t i = 1; i < len; i++)
		if (path[i] == '/')
			dw->under[under_bucket(path, i)]++;
	dw->under[under_bucket(path, len)]++;
}

/* Queues j (new) at the tail, indexed. */
static void
pending_add(struct durable *dw, struct durable_job *j)
{
	size_t b = index_bucket(j->kind, j->path);

	pending_append(dw, j);
	j->index_next = dw->index[b];
	dw->index[b] = j;
	if (j->kind == DJ_WRITE || j->kind == DJ_SYNC_DIR)
		under_count(dw, j->path);
	dw->npending++;
}

static int
submit_failed(struct ember_error *err, const char *path, int r)
{
	return ember_error_set(err, r == -ESHUTDOWN ? EK_BUSY : EK_INTERNAL, NULL,
	    "cannot queue the durable write of %s: %s", path,
	    r == -ESHUTDOWN ? "emberd is shutting down" : strerror(-r));
}

/* Queues j (or joins a queued job for the same path when join is set). */
static int
submit(struct durable *dw, struct durable_job *j, bool join, durable_done_fn done, void *ctx,
    struct ember_error *err)
{
	struct durable_job *q;
	int r = 0;

	j->cbs_tail = &j->cbs;
	j->fd = -1;
	j->submitted = durable_now();
	pthread_mutex_lock(&dw->lock);
	if (dw->stopping || !dw->thread_started) {
		pthread_mutex_unlock(&dw->lock);
		r = submit_failed(err, j->path, -ESHUTDOWN);
		job_free(j);
		return r;
	}
	wait_for_room(dw, j->len);
	if (join && (q = pending_find(dw, j->kind, j->path)) != NULL) {
		if ((r = job_add_cb(q, done, ctx)) == 0) {
			dw->stats.coalesced++;
			q->seq = ++dw->last_seq;
			q->submitted = j->submitted;
			if (j->kind == DJ_WRITE) {
				/* the latest contents, at the latest position */
				if (q->unfilled)
					unfilled_remove(dw, q);
				q->placed_seq = q->seq;
				q->superseded = false;
				dw->pending_bytes += j->len;
				dw->pending_bytes -= q->len;
				free(q->text);
				q->text = j->text;
				q->len = j->len;
				q->mode = j->mode;
				j->text = NULL;
				pending_unlink(dw, q);
				pending_append(dw, q);
			}
		}
		pthread_mutex_unlock(&dw->lock);
		job_free(j);
		return r < 0 ? submit_failed(err, "a state file", r) : 0;
	}
	if ((r = job_add_cb(j, done, ctx)) < 0) {
		pthread_mutex_unlock(&dw->lock);
		job_free(j);
		return submit_failed(err, "a state file", r);
	}
	j->seq = j->placed_seq = ++dw->last_seq;
	if (j->kind == DJ_RENAME_DIR || j->kind == DJ_REMOVE_DIR)
		dw->moved_seq = j->seq;
	pending_add(dw, j);
	dw->pending_bytes += j->len;
	dw->stats.jobs++;
	pthread_cond_signal(&dw->wake);
	pthread_mutex_unlock(&dw->lock);
	return 0;
}

static struct durable_job *
job_new(enum durable_kind kind, const char *path, struct ember_error *err)
{
	struct durable_job *j = calloc(1, sizeof(*j));

	if (j == NULL || (j->path = strdup(path)) == NULL) {
		free(j);
		ember_error_set(err, EK_INTERNAL, NULL, "out of memory queueing a state write");
		return NULL;
	}
	j->kind = kind;
	return j;
}

int
durable_write_take(struct durable *dw, const char *path, char *text, size_t len, mode_t mode,
    durable_done_fn done, void *ctx, struct ember_error *err)
{
	struct durable_job *j = job_new(DJ_WRITE, path, err);

	if (j == NULL) {
		free(text);
		return -1;
	}
	j->text = text;
	j->len = len;
	j->mode = mode;
	return submit(dw, j, true, done, ctx, err);
}

int
durable_write_deferred(struct durable *dw, const char *path, mode_t mode,
    durable_fill_fn fill, void *fill_ctx, durable_done_fn done, void *ctx,
    struct ember_error *err)
{
	struct durable_job *j = job_new(DJ_WRITE, path, err), *q;
	bool arm = false;
	int r;

	if (j == NULL)
		return -1;
	j->cbs_tail = &j->cbs;
	j->fd = -1;
	j->mode = mode;
	j->fill = fill;
	j->fill_ctx = fill_ctx;
	j->submitted = durable_now();
	pthread_mutex_lock(&dw->lock);
	if (dw->stopping || !dw->thread_started) {
		pthread_mutex_unlock(&dw->lock);
		r = submit_failed(err, path, -ESHUTDOWN);
		job_free(j);
		return r;
	}
	wait_for_room(dw, 0);
	/* Only an unmade one is joined: one already made (or a whole write)
	 * is the writer's to take, and the new state follows it. */
	if ((q = unfilled_find(dw, path)) != NULL) {
		if ((r = job_add_cb(q, done, ctx)) == 0) {
			dw->stats.coalesced++;
			q->seq = ++dw->last_seq;
			q->submitted = j->submitted;
			q->fill = fill;
			q->fill_ctx = fill_ctx;
			q->mode = mode;
			if (dw->moved_seq > q->placed_seq) {
				/* behind the rename a delete's table must follow */
				pending_unlink(dw, q);
				pending_append(dw, q);
				q->placed_seq = q->seq;
			}
		}
	} else if ((r = job_add_cb(j, done, ctx)) == 0) {
		j->seq = j->placed_seq = ++dw->last_seq;
		j->unfilled = true;
		j->unfilled_next = dw->unfilled;
		dw->unfilled = j;
		dw->nunfilled++;
		pending_add(dw, j);
		dw->stats.jobs++;
		j = NULL;
		arm = true;
	}
	pthread_mutex_unlock(&dw->lock);
	if (j != NULL)
		job_free(j);
	if (arm)
		arm_fill(dw);
	return r < 0 ? submit_failed(err, path, r) : 0;
}

int
durable_sync_dir(struct durable *dw, const char *dir, durable_done_fn done, void *ctx,
    struct ember_error *err)
{
	struct durable_job *j = job_new(DJ_SYNC_DIR, dir, err);

	return j != NULL ? submit(dw, j, true, done, ctx, err) : -1;
}

int
durable_sync_file(struct durable *dw, const char *path, durable_done_fn done, void *ctx,
    struct ember_error *err)
{
	struct durable_job *j = job_new(DJ_SYNC_FILE, path, err);

	return j != NULL ? submit(dw, j, true, done, ctx, err) : -1;
}

int
durable_remove_dir(struct durable *dw, const char *dir, durable_done_fn done, void *ctx,
    struct ember_error *err)
{
	struct durable_job *j = job_new(DJ_REMOVE_DIR, dir, err);

	return j != NULL ? submit(dw, j, false, done, ctx, err) : -1;
}

/* A directory moved to trash takes the queued writes and directory syncs
 * inside it along: they are skipped (reported 0, in their place), since
 * in the batch of the move their directory's sync would find it gone (a
 * deleted VM's last vm.json). A write of such a path queued later is
 * written (and fails where the directory is gone). */
static void
supersede_under(struct durable *dw, const char *dir)
{
	size_t n = strlen(dir);

	pthread_mutex_lock(&dw->lock);
	if (dw->under[under_bucket(dir, n)] == 0) {
		pthread_mutex_unlock(&dw->lock);
		return;	/* nothing queued under dir */
	}
	for (struct durable_job *j = dw->pending_head; j != NULL; j = j->next) {
		if ((j->kind != DJ_WRITE && j->kind != DJ_SYNC_DIR) || j->unfilled ||
		    strncmp(j->path, dir, n) != 0 || (j->path[n] != '/' && j->path[n] != '\0'))
			continue;
		j->superseded = true;
		dw->pending_bytes -= j->len;
		free(j->text);
		j->text = NULL;
		j->len = 0;
	}
	pthread_mutex_unlock(&dw->lock);
}

int
durable_rename_dir(struct durable *dw, const char *from, const char *to, bool remove_after,
    durable_done_fn done, void *ctx, struct ember_error *err)
{
	struct durable_job *j = job_new(DJ_RENAME_DIR, from, err);

	if (j == NULL)
		return -1;
	if (remove_after)
		supersede_under(dw, from);
	if ((j->to = strdup(to)) == NULL) {
		job_free(j);
		return ember_error_set(err, EK_INTERNAL, NULL, "out of memory queueing a state write");
	}
	j->remove_after = remove_after;
	return submit(dw, j, false, done, ctx, err);
}

int
durable_make_dir(struct durable *dw, const char *dir, const char *from, mode_t mode,
    durable_done_fn done, void *ctx, struct ember_error *err)
{
	struct durable_job *j = job_new(DJ_MAKE_DIR, dir, err);

	if (j == NULL)
		return -1;
	if (from != NULL && (j->to = strdup(from)) == NULL) {
		job_free(j);
		return ember_error_set(err, EK_INTERNAL, NULL, "out of memory queueing a state write");
	}
	j->mode = mode;
	return submit(dw, j, false, done, ctx, err);
}

void
durable_plug(struct durable *dw)
{
	pthread_mutex_lock(&dw->lock);
	dw->plugged++;
	pthread_mutex_unlock(&dw->lock);
}

void
durable_unplug(struct durable *dw)
{
	pthread_mutex_lock(&dw->lock);
	if (dw->plugged > 0 && --dw->plugged == 0 && dw->pending_head != NULL)
		pthread_cond_signal(&dw->wake);
	pthread_mutex_unlock(&dw->lock);
}

bool
durable_crowded(struct durable *dw)
{
	bool crowded;

	if (dw == NULL)
		return false;
	pthread_mutex_lock(&dw->lock);
	crowded = dw->npending >= DURABLE_PENDING_MAX / 2 ||
	    dw->pending_bytes >= DURABLE_PENDING_BYTES_MAX / 2;
	pthread_mutex_unlock(&dw->lock);
	return crowded;
}

uint64_t
durable_last_seq(const struct durable *dw)
{
	return dw->last_seq;
}

int
durable_wait(struct durable *dw, uint64_t seq, durable_done_fn done, void *ctx,
    struct ember_error *err)
{
	struct durable_wait_rec *w;

	if (seq <= dw->completed_seq) {
		done(ctx, 0);
		return 0;
	}
	if ((w = calloc(1, sizeof(*w))) == NULL)
		return ember_error_set(err, EK_INTERNAL, NULL, "out of memory");
	w->seq = seq;
	w->done = done;
	w->ctx = ctx;
	if (dw->waits_tail == NULL)
		dw->waits_tail = &dw->waits;
	*dw->waits_tail = w;
	dw->waits_tail = &w->next;
	return 0;
}

void
durable_get_stats(struct durable *dw, struct durable_stats *out)
{
	pthread_mutex_lock(&dw->lock);
	*out = dw->stats;
	pthread_mutex_unlock(&dw->lock);
}
