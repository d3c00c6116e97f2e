/*
 * The loop's CPU worker (see worker.h). The loop appends items to a queue
 * under a mutex; the thread takes them one at a time, runs each, moves it
 * to a done list and writes a byte to a pipe; the loop, woken by the pipe,
 * runs the done callbacks of at most WORKER_DONE_PER_TURN items per turn.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "worker.h"

#define WORKER_DONE_PER_TURN 16

struct worker_item {
	worker_work_fn work;
	worker_done_fn done;
	void *arg;
	struct worker_item *next;
};

struct worker {
	pthread_t thread;
	bool thread_started;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	/* under lock */
	struct worker_item *queue_head, **queue_tail;
	struct worker_item *done_head, **done_tail;
	unsigned long backlog;
	bool stopping;
	/* the loop's */
	int pipe_rd, pipe_wr;
	struct event *ev;
	struct event *ev_more;		/* reports the rest in a later turn */
};

static void *
worker_main(void *arg)
{
	struct worker *w = arg;

	pthread_mutex_lock(&w->lock);
	for (;;) {
		while (w->queue_head == NULL && !w->stopping)
			pthread_cond_wait(&w->wake, &w->lock);
		struct worker_item *it = w->queue_head;
		if (it == NULL)
			break;	/* stopping, and nothing is left to run */
		if ((w->queue_head = it->next) == NULL)
			w->queue_tail = &w->queue_head;
		pthread_mutex_unlock(&w->lock);

		it->work(it->arg);

		pthread_mutex_lock(&w->lock);
		it->next = NULL;
		*w->done_tail = it;
		w->done_tail = &it->next;
		/* A full pipe already holds a wake-up. */
		char one = 1;
		ssize_t ignored = write(w->pipe_wr, &one, 1);
		(void)ignored;
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

/* Takes up to max finished items off the done list. */
static struct worker_item *
take_done(struct worker *w, unsigned max, bool *more)
{
	struct worker_item *head, **cut;

	pthread_mutex_lock(&w->lock);
	head = w->done_head;
	cut = &w->done_head;
	while (*cut != NULL && max-- > 0)
		cut = &(*cut)->next;
	w->done_head = *cut;
	*cut = NULL;
	if (w->done_head == NULL)
		w->done_tail = &w->done_head;
	*more = w->done_head != NULL;
	pthread_mutex_unlock(&w->lock);
	return head;
}

static void
report(struct worker *w, struct worker_item *list, bool cancelled)
{
	while (list != NULL) {
		struct worker_item *it = list;
		list = it->next;
		if (it->done != NULL)
			it->done(it->arg, cancelled);
		free(it);
		pthread_mutex_lock(&w->lock);
		w->backlog--;
		pthread_mutex_unlock(&w->lock);
	}
}

static void
report_some(struct worker *w)
{
	struct timeval now = { 0, 0 };
	bool more;

	report(w, take_done(w, WORKER_DONE_PER_TURN, &more), false);
	if (more)	/* a timer: an activated event would run in this turn */
		evtimer_add(w->ev_more, &now);
}

static void
on_more(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	report_some(arg);
}

static void
on_wakeup(evutil_socket_t fd, short what, void *arg)
{
	char buf[64];

	(void)what;
	while (read(fd, buf, sizeof(buf)) > 0)
		;
	report_some(arg);
}

int
daemon_thread_start(pthread_t *thread, void *(*fn)(void *), void *arg, const char *name,
    const char *what, struct ember_error *err)
{
	sigset_t all, old;
	int r;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	r = pthread_create(thread, NULL, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r != 0)
		return ember_error_set(err, EK_INTERNAL, "raise the process's thread limit",
		    "cannot start the %s thread: %s", what, strerror(r));
	(void)pthread_setname_np(*thread, name);	/* a name only: no failure */
	return 0;
}

struct worker *
worker_new(struct event_base *base, struct ember_error *err)
{
	struct worker *w = calloc(1, sizeof(*w));
	int fds[2];

	if (w == NULL) {
		ember_error_set(err, EK_INTERNAL, NULL, "out of memory");
		return NULL;
	}
	w->pipe_rd = w->pipe_wr = -1;
	w->queue_tail = &w->queue_head;
	w->done_tail = &w->done_head;
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->wake, NULL);
	if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) < 0) {
		ember_error_set(err, EK_INTERNAL, NULL, "cannot make the worker's pipe: %s",
		    strerror(errno));
		goto fail;
	}
	w->pipe_rd = fds[0];
	w->pipe_wr = fds[1];
	w->ev = event_new(base, w->pipe_rd, EV_READ | EV_PERSIST, on_wakeup, w);
	w->ev_more = evtimer_new(base, on_more, w);
	if (w->ev == NULL || w->ev_more == NULL || event_add(w->ev, NULL) < 0) {
		ember_error_set(err, EK_INTERNAL, NULL, "cannot watch the worker's pipe");
		goto fail;
	}
	if (daemon_thread_start(&w->thread, worker_main, w, "emberd-worker", "worker", err) < 0)
		goto fail;
	w->thread_started = true;
	return w;
fail:
	worker_free(w);
	return NULL;
}

void
worker_free(struct worker *w)
{
	bool more;

	if (w == NULL)
		return;
	if (w->thread_started) {
		pthread_mutex_lock(&w->lock);
		w->stopping = true;
		pthread_cond_signal(&w->wake);
		pthread_mutex_unlock(&w->lock);
		pthread_join(w->thread, NULL);
	}
	/* The thread ran everything queued; report it all as cancelled. */
	report(w, take_done(w, ~0u, &more), true);
	if (w->ev != NULL)
		event_free(w->ev);
	if (w->ev_more != NULL)
		event_free(w->ev_more);
	if (w->pipe_rd >= 0)
		close(w->pipe_rd);
	if (w->pipe_wr >= 0)
		close(w->pipe_wr);
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->wake);
	free(w);
}

int
worker_run(struct worker *w, worker_work_fn work, worker_done_fn done, void *arg)
{
	struct worker_item *it = calloc(1, sizeof(*it));

	if (it == NULL)
		return -1;
	it->work = work;
	it->done = done;
	it->arg = arg;
	pthread_mutex_lock(&w->lock);
	*w->queue_tail = it;
	w->queue_tail = &it->next;
	w->backlog++;
	pthread_cond_signal(&w->wake);
	pthread_mutex_unlock(&w->lock);
	return 0;
}

unsigned long
worker_backlog(const struct worker *w)
{
	struct worker *mw = (struct worker *)w;
	unsigned long n;

	pthread_mutex_lock(&mw->lock);
	n = mw->backlog;
	pthread_mutex_unlock(&mw->lock);
	return n;
}
