/*
 * One thread for CPU work the event loop must not do itself: parsing a
 * large request line, freeing a large document. Work runs in the order it
 * was given; its completion runs on the loop. The queue is bounded by its
 * callers (a connection waits for its line's parse before the next one is
 * read), not here.
 */
#ifndef EMBER_WORKER_H
#define EMBER_WORKER_H

#include <pthread.h>
#include <stdbool.h>

#include "error.h"

struct event_base;
struct worker;

/* Runs on the worker's thread; must not touch the loop's state. */
typedef void (*worker_work_fn)(void *arg);
/* Runs on the loop after work(arg); cancelled when the worker was freed
 * first (then only free what arg owns). */
typedef void (*worker_done_fn)(void *arg, bool cancelled);

struct worker *worker_new(struct event_base *base, struct ember_error *err);
/* Lets queued work finish, joins the thread, then calls the done of every
 * item not yet reported with cancelled set. */
void worker_free(struct worker *w);

/* Queues work(arg), then done(arg, false) on the loop (done may be NULL).
 * Returns -1 (nothing queued) when out of memory. */
int worker_run(struct worker *w, worker_work_fn work, worker_done_fn done, void *arg);

/* Starts a thread of the daemon's (this worker, the durable writer) with
 * every signal blocked, so signals stay with the loop's thread; name (at
 * most 15 bytes) is what top -H, perf and /proc/PID/task/TID/comm show,
 * what names it in the error. 0, or -1 with err. */
int daemon_thread_start(pthread_t *thread, void *(*fn)(void *), void *arg, const char *name,
    const char *what, struct ember_error *err);

/* Items queued or finished but not yet reported: for tests. */
unsigned long worker_backlog(const struct worker *w);

#endif
