/*
 * Opening client-named host paths with the client's rights, off the event
 * loop's critical path (see caller-open.h). Each request with paths to
 * open gets one helper (platform_open_as_start); its answers arrive on a
 * socket read by a loop event, a timer bounds the wait, and a pidfd watch
 * reaps the helper, which may outlive the request when it hangs and was
 * killed. Every open in progress is on one list, so the number of helpers
 * is bounded and shutdown can answer them and teardown let go of them.
 * Account lookups (a caller's passwd entry) run in helpers the same way,
 * one per uid at a time, on a list of their own.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>

#include "caller-open.h"
#include "child.h"
#include "log.h"

bool
caller_trusted(const struct platform_caller *c)
{
	return c->uid == 0 || c->uid == geteuid();
}

/* A helper's answers as the loop reads them: its end of the socket, the
 * read event and the deadline. */
struct helper_channel {
	int sock;
	struct event *ev_read, *ev_timer;
};

struct caller_open {
	struct caller_open *next;	/* opens: every one not freed */
	struct event_base *base;
	uid_t uid;
	char *what[CALLER_OPEN_PATHS_MAX], *path[CALLER_OPEN_PATHS_MAX];
	bool dir[CALLER_OPEN_PATHS_MAX];
	int fds[CALLER_OPEN_PATHS_MAX];
	size_t n;
	size_t nhelper;			/* paths the helper opens (before a refused one) */
	size_t got;			/* answers received */
	struct ember_error err;		/* the answer, once set */
	struct ember_error refused;	/* paths[nhelper]'s, refused without opening */
	pid_t pid;
	struct helper_channel ch;
	struct child_watch *watch;	/* the helper, until reaped */
	bool finished;			/* done ran (or cancelled): kept only to reap */
	caller_open_done_fn done;
	void *ctx;
};

static struct caller_open *opens;
/* Shutting down: opens on this base fail at once with why. */
static struct event_base *failing_base;
static struct ember_error failing_why;

/* EMBER_TEST_OPEN_AS_DELAY_MS, for tests only: each helper waits that long
 * before it opens anything, standing in for a filesystem that hangs. */
static unsigned
test_delay_ms(void)
{
	static long delay = -1;

	if (delay < 0) {
		const char *s = getenv("EMBER_TEST_OPEN_AS_DELAY_MS");
		char *end;
		long v = s != NULL ? strtol(s, &end, 10) : 0;
		delay = s != NULL && *end == '\0' && v > 0 && v <= 600000 ? v : 0;
		if (delay > 0)
			log_warnx("EMBER_TEST_OPEN_AS_DELAY_MS: opening a client's path waits %ld ms "
			    "(a test setting)", delay);
	}
	return (unsigned)delay;
}

static size_t
helpers_count(void)
{
	size_t n = 0;

	for (const struct caller_open *op = opens; op != NULL; op = op->next)
		n += op->watch != NULL;
	return n;
}

static const char *
file_type_name(mode_t mode)
{
	if (S_ISDIR(mode))
		return "a directory";
	if (S_ISBLK(mode))
		return "a block device";
	if (S_ISCHR(mode))
		return "a character device";
	if (S_ISFIFO(mode))
		return "a FIFO";
	if (S_ISSOCK(mode))
		return "a socket";
	if (S_ISLNK(mode))
		return "a symbolic link";
	return "not a regular file";
}

/* The error for what/path, which failed with e (st: what it is, when
 * known; NULL for the deadline and the bound on helpers). */
static void
path_error(struct ember_error *err, uid_t uid, const char *what, const char *path, bool dir,
    int e, const struct stat *st)
{
	log_debug("open %s as uid %u: %s", path, (unsigned)uid, strerror(e));
	if (e == EINVAL && st != NULL && st->st_mode != 0) {
		if (dir)
			ember_error_set(err, EK_INVALID_SPEC, "give a directory",
			    "%s %s: Not a directory (it is %s)", what, path,
			    file_type_name(st->st_mode));
		else
			ember_error_set(err, EK_INVALID_SPEC,
			    "give a regular file; only root may name devices, FIFOs or sockets",
			    "%s %s is %s, not a regular file", what, path,
			    file_type_name(st->st_mode));
	} else if (e == ETIMEDOUT && st == NULL)
		ember_error_set(err, EK_IO, "check that its filesystem responds",
		    "%s %s: opening it took longer than %d s", what, path,
		    CALLER_OPEN_TIMEOUT_MS / 1000);
	else if (e == EAGAIN && st == NULL)
		ember_error_set(err, EK_BUSY, "retry later",
		    "%s %s: too many earlier opens still hang", what, path);
	else if (e == ENOMEM)
		ember_error_set(err, EK_INTERNAL, "retry later",
		    "%s %s: cannot be opened: out of memory", what, path);
	else
		ember_error_set(err, e == EACCES || e == EPERM ? EK_PERMISSION_DENIED :
		    EK_INVALID_SPEC, NULL, "%s %s: %s", what, path, strerror(e));
}

static void
open_error(struct caller_open *op, size_t i, int e, const struct stat *st)
{
	path_error(&op->err, op->uid, op->what[i], op->path[i], op->dir[i], e, st);
}

/* Reads ch->sock until the deadline; -ENOMEM when the events cannot be
 * made (ch_close still undoes what was). */
static int
ch_listen(struct helper_channel *ch, struct event_base *base, event_callback_fn on_answer,
    event_callback_fn on_deadline, void *arg, const struct timeval *deadline)
{
	ch->ev_read = event_new(base, ch->sock, EV_READ | EV_PERSIST, on_answer, arg);
	ch->ev_timer = evtimer_new(base, on_deadline, arg);
	if (ch->ev_read == NULL || ch->ev_timer == NULL || event_add(ch->ev_read, NULL) < 0 ||
	    evtimer_add(ch->ev_timer, deadline) < 0)
		return -ENOMEM;
	return 0;
}

/* The loop's hold on the helper's answers (the helper itself may live on). */
static void
ch_close(struct helper_channel *ch)
{
	if (ch->ev_read != NULL)
		event_free(ch->ev_read);
	if (ch->ev_timer != NULL)
		event_free(ch->ev_timer);
	ch->ev_read = ch->ev_timer = NULL;
	if (ch->sock >= 0)
		close(ch->sock);
	ch->sock = -1;
}

static void
op_free(struct caller_open *op)
{
	for (struct caller_open **p = &opens; *p != NULL; p = &(*p)->next)
		if (*p == op) {
			*p = op->next;
			break;
		}
	ch_close(&op->ch);
	child_watch_free(op->watch);
	for (size_t i = 0; i < op->n; i++) {
		if (op->fds[i] >= 0)
			close(op->fds[i]);
		free(op->what[i]);
		free(op->path[i]);
	}
	free(op);
}

/* Answers: done gets the fds (or err); op stays only while its helper
 * has not been reaped. */
static void
op_finish(struct caller_open *op)
{
	int fds[CALLER_OPEN_PATHS_MAX];
	struct ember_error err = op->err;
	bool failed = ember_error_is_set(&op->err);
	caller_open_done_fn done = op->done;
	void *ctx = op->ctx;
	size_t n = op->n;

	ch_close(&op->ch);
	for (size_t i = 0; i < n; i++) {
		if (failed && op->fds[i] >= 0)
			close(op->fds[i]);
		fds[i] = failed ? -1 : op->fds[i];
		op->fds[i] = -1;	/* done's now */
	}
	op->finished = true;
	if (op->watch == NULL)
		op_free(op);
	done(ctx, fds, n, failed ? &err : NULL);
}

static void
op_answer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct caller_open *op = arg;
	struct stat st;
	int result, r;

	while (op->got < op->nhelper) {
		r = platform_open_as_receive(op->ch.sock, &result, &st);
		if (r == 0)
			return;	/* more to come */
		if (r < 0) {
			open_error(op, op->got, -r, &st);	/* the helper died */
			break;
		}
		if (result < 0) {
			open_error(op, op->got, -result, &st);
			break;
		}
		op->fds[op->got++] = result;
	}
	if (!ember_error_is_set(&op->err) && ember_error_is_set(&op->refused))
		op->err = op->refused;
	op_finish(op);
}

static void
op_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct caller_open *op = arg;

	if (!ember_error_is_set(&op->err) && op->got < op->nhelper) {
		/* The helper hangs in an open: killed, reaped when it goes. */
		if (op->watch != NULL)
			child_watch_kill(op->watch, SIGKILL);
		open_error(op, op->got, ETIMEDOUT, NULL);
	}
	op_finish(op);
}

static void
op_reaped_cb(void *ctx, pid_t pid, int wait_status)
{
	struct caller_open *op = ctx;

	child_watch_free(op->watch);
	op->watch = NULL;
	if (op->finished)
		op_free(op);
	/* else its last answers (or the end of file) are still to be read */
}

static int
op_start_helper(struct caller_open *op, const struct platform_caller *c)
{
	struct platform_open_path paths[CALLER_OPEN_PATHS_MAX];
	struct timeval deadline = { CALLER_OPEN_TIMEOUT_MS / 1000,
	    (CALLER_OPEN_TIMEOUT_MS % 1000) * 1000 };
	pid_t pid;

	for (size_t i = 0; i < op->nhelper; i++)
		paths[i] = (struct platform_open_path){ op->path[i],
		    op->dir[i] ? PLATFORM_OPEN_DIRECTORY : 0 };
	pid = platform_open_as_start(c, paths, op->nhelper, test_delay_ms(), &op->ch.sock);
	if (pid < 0)
		return (int)pid;
	op->pid = pid;
	op->watch = child_watch_new(op->base, pid, op_reaped_cb, op);
	if (op->watch == NULL) {
		int e = errno;
		kill(pid, SIGKILL);
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
		return -e;
	}
	if (ch_listen(&op->ch, op->base, op_answer_cb, op_deadline_cb, op, &deadline) < 0) {
		/* Nothing would read its answers: killed now, reaped through
		 * the watch (a blocking wait could hang on a stuck open). */
		child_watch_kill(op->watch, SIGKILL);
		return -ENOMEM;
	}
	return 0;
}

void
caller_open_start(struct event_base *base, const struct platform_caller *c,
    const struct caller_open_path *paths, size_t n, struct caller_open **handle,
    caller_open_done_fn done, void *ctx)
{
	static const int none[CALLER_OPEN_PATHS_MAX] = { -1, -1, -1, -1, -1, -1, -1, -1 };
	struct ember_error err = { 0 }, refused = { 0 };
	struct caller_open *op;
	size_t nhelper;
	int r;

	if (handle != NULL)
		*handle = NULL;	/* before done may run, which may free what holds it */
	if (n > CALLER_OPEN_PATHS_MAX)
		fatalx("caller_open_start: %zu paths", n);
	if (caller_trusted(c) || n == 0) {
		done(ctx, none, n, NULL);	/* used as given */
		return;
	}
	/* What is refused without opening is refused after the paths before
	 * it were opened, as the caller's own opens in turn would be. */
	for (nhelper = 0; nhelper < n; nhelper++) {
		const char *what = paths[nhelper].what, *path = paths[nhelper].path;
		if (path[0] != '/') {
			ember_error_set(&refused, EK_INVALID_SPEC, "give an absolute path",
			    "%s %s: not an absolute path", what, path);
			break;
		}
		if (c->groups == NULL) {
			ember_error_set(&refused, EK_PERMISSION_DENIED,
			    "reconnect; a client in more groups than emberd can take on cannot "
			    "name host paths", "%s %s: cannot act as uid %u: its supplementary "
			    "groups are unknown", what, path, (unsigned)c->uid);
			break;
		}
	}
	if (nhelper == 0) {
		done(ctx, none, n, &refused);
		return;
	}
	if (base == failing_base) {
		done(ctx, none, n, &failing_why);
		return;
	}
	if (helpers_count() >= CALLER_OPEN_HELPERS_MAX) {
		path_error(&err, c->uid, paths[0].what, paths[0].path, paths[0].dir, EAGAIN, NULL);
		done(ctx, none, n, &err);
		return;
	}
	if ((op = calloc(1, sizeof(*op))) == NULL) {
		path_error(&err, c->uid, paths[0].what, paths[0].path, paths[0].dir, ENOMEM, NULL);
		done(ctx, none, n, &err);
		return;
	}
	op->base = base;
	op->uid = c->uid;
	op->ch.sock = -1;
	op->done = done;
	op->ctx = ctx;
	op->nhelper = nhelper;
	op->refused = refused;
	op->next = opens;
	opens = op;
	for (size_t i = 0; i < n; i++) {
		op->n = i + 1;	/* what op_free closes and frees */
		op->fds[i] = -1;
		op->dir[i] = paths[i].dir;
		op->what[i] = strdup(paths[i].what);
		op->path[i] = strdup(paths[i].path);
		if (op->what[i] == NULL || op->path[i] == NULL) {
			r = -ENOMEM;
			goto fail;
		}
	}
	if ((r = op_start_helper(op, c)) < 0)
		goto fail;
	if (handle != NULL)
		*handle = op;
	return;
fail:
	path_error(&err, c->uid, paths[0].what, paths[0].path, paths[0].dir, -r, NULL);
	caller_open_cancel(op);	/* a helper started is killed and reaped */
	done(ctx, none, n, &err);
}

void
caller_open_cancel(struct caller_open *op)
{
	if (op == NULL)
		return;
	ch_close(&op->ch);
	op->finished = true;
	if (op->watch != NULL)
		child_watch_kill(op->watch, SIGKILL);	/* reaped when it goes */
	else
		op_free(op);
}

void
caller_opens_fail(struct event_base *base, const struct ember_error *why)
{
	struct caller_open *op;

	failing_base = base;
	failing_why = *why;
	/* done may free or start anything: look again from the top each time. */
	for (;;) {
		for (op = opens; op != NULL; op = op->next)
			if (op->base == base && !op->finished)
				break;
		if (op == NULL)
			return;
		if (op->watch != NULL)
			child_watch_kill(op->watch, SIGKILL);	/* reaped when it goes */
		if (!ember_error_is_set(&op->err))
			op->err = *why;
		log_debug("open %s as uid %u: answered at shutdown", op->path[0],
		    (unsigned)op->uid);
		op_finish(op);
	}
}

#define HELPER_REAP_WAIT_MS 500

/* Teardown: kills pid (a helper of ours) and reaps it, waiting at most
 * HELPER_REAP_WAIT_MS: one stuck in the kernel is left to init. */
static void
helper_kill_and_reap(struct child_watch *watch, pid_t pid)
{
	child_watch_kill(watch, SIGKILL);
	child_watch_free(watch);
	for (int waited = 0; waited < HELPER_REAP_WAIT_MS; waited += 10) {
		pid_t r = waitpid(pid, NULL, WNOHANG);
		if (r != 0 && !(r < 0 && errno == EINTR))
			return;	/* reaped, or not ours */
		poll(NULL, 0, 10);	/* a killed child's exit, at teardown only */
	}
	log_warnx("helper %d did not exit after SIGKILL; left to init", (int)pid);
}

static void lookups_forget(struct event_base *base);

void
caller_opens_forget(struct event_base *base)
{
	struct caller_open **p = &opens;

	while (*p != NULL) {
		struct caller_open *op = *p;
		if (op->base != base) {
			p = &op->next;
			continue;
		}
		if (op->watch != NULL) {
			helper_kill_and_reap(op->watch, op->pid);
			op->watch = NULL;
		}
		op_free(op);	/* unlinks it */
	}
	lookups_forget(base);
	if (failing_base == base)
		failing_base = NULL;	/* base is about to be freed */
}

int
caller_copy(struct platform_caller *dst, const struct platform_caller *src)
{
	*dst = *src;
	if (src->groups == NULL)
		return 0;
	gid_t *groups = calloc(src->ngroups + 1, sizeof(gid_t));
	if (groups == NULL) {
		dst->groups = NULL;	/* src's are not dst's to free */
		return -ENOMEM;
	}
	memcpy(groups, src->groups, src->ngroups * sizeof(gid_t));
	dst->groups = groups;
	return 0;
}

void
caller_copy_free(struct platform_caller *c)
{
	free((gid_t *)c->groups);
	c->groups = NULL;
}

/* ---- account lookups ---- */

struct caller_lookup {
	struct caller_lookup *next;	/* lookups: every one not freed */
	struct event_base *base;
	uid_t uid;
	pid_t pid;
	struct helper_channel ch;
	struct child_watch *watch;	/* the helper, until reaped */
	bool finished;			/* answered (or cancelled): kept only to reap */
	caller_account_done_fn done;	/* NULL once cancelled */
	void *ctx;
};

static struct caller_lookup *lookups;

/* EMBER_TEST_ACCOUNT_LOOKUP_DELAY_MS, for tests only: each account lookup
 * waits that long first, standing in for an NSS server that hangs. */
static unsigned
test_lookup_delay_ms(void)
{
	static long delay = -1;

	if (delay < 0) {
		const char *s = getenv("EMBER_TEST_ACCOUNT_LOOKUP_DELAY_MS");
		char *end;
		long v = s != NULL ? strtol(s, &end, 10) : 0;
		delay = s != NULL && *end == '\0' && v > 0 && v <= 600000 ? v : 0;
		if (delay > 0)
			log_warnx("EMBER_TEST_ACCOUNT_LOOKUP_DELAY_MS: looking up a client's account "
			    "waits %ld ms (a test setting)", delay);
	}
	return (unsigned)delay;
}

static void
lookup_free(struct caller_lookup *lk)
{
	for (struct caller_lookup **p = &lookups; *p != NULL; p = &(*p)->next)
		if (*p == lk) {
			*p = lk->next;
			break;
		}
	ch_close(&lk->ch);
	child_watch_free(lk->watch);
	free(lk);
}

/* The answer is in (result): kept, and done told; lk stays only while its
 * helper has not been reaped. */
static void
lookup_finish(struct caller_lookup *lk, int result, gid_t gid)
{
	caller_account_done_fn done = lk->done;
	void *ctx = lk->ctx;
	uid_t uid = lk->uid;

	platform_account_remember(uid, result, gid);
	if (result == -ETIMEDOUT)
		log_warnx("uid %u: looking up its passwd entry took longer than %d s (is NSS, "
		    "LDAP or sssd answering?); its requests are served, and Firecracker VMs it "
		    "owns get the group found last, or nogroup; tried again in a minute",
		    (unsigned)uid,
		    CALLER_ACCOUNT_TIMEOUT_MS / 1000);
	else if (result != 0 && result != -ENOENT)
		log_warnx("uid %u: looking up its passwd entry failed: %s; Firecracker VMs it "
		    "owns get the group found last, or nogroup", (unsigned)uid,
		    strerror(-result));
	ch_close(&lk->ch);
	lk->finished = true;
	lk->done = NULL;
	if (lk->watch == NULL)
		lookup_free(lk);
	if (done != NULL)
		done(ctx, uid, result);
}

static void
lookup_answer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct caller_lookup *lk = arg;
	gid_t gid = 0;
	int r = platform_account_receive(lk->ch.sock, &gid);

	if (r == 0)
		return;
	lookup_finish(lk, r > 0 ? 0 : r, gid);
}

static void
lookup_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct caller_lookup *lk = arg;

	if (lk->watch != NULL)
		child_watch_kill(lk->watch, SIGKILL);	/* reaped when it goes */
	lookup_finish(lk, -ETIMEDOUT, 0);
}

static void
lookup_reaped_cb(void *ctx, pid_t pid, int wait_status)
{
	struct caller_lookup *lk = ctx;

	child_watch_free(lk->watch);
	lk->watch = NULL;
	if (lk->finished)
		lookup_free(lk);
	/* else its answer (or the end of file) is still to be read */
}

int
caller_account_resolve(struct event_base *base, uid_t uid, caller_account_done_fn done,
    void *ctx)
{
	const struct platform_caller c = { .uid = uid };
	struct timeval deadline = { CALLER_ACCOUNT_TIMEOUT_MS / 1000,
	    (CALLER_ACCOUNT_TIMEOUT_MS % 1000) * 1000 };
	struct caller_lookup *lk;
	size_t helpers = 0;
	pid_t pid;

	gid_t gid;
	bool known;

	if (caller_trusted(&c) || platform_account_fresh(uid))
		return 1;
	/* An older answer is used while a new one is looked up. */
	known = platform_account_gid(uid, &gid) != -EAGAIN;
	if (known) {
		done = NULL;
		ctx = NULL;
	}
	for (lk = lookups; lk != NULL; lk = lk->next) {
		if (lk->base == base && lk->uid == uid && !lk->finished)
			return known ? 1 : 0;	/* joins it */
		helpers += lk->watch != NULL;
	}
	if (helpers >= CALLER_ACCOUNT_LOOKUPS_MAX && known)
		return 1;
	if (helpers >= CALLER_ACCOUNT_LOOKUPS_MAX)
		return -EBUSY;
	if ((lk = calloc(1, sizeof(*lk))) == NULL)
		return known ? 1 : -ENOMEM;
	lk->base = base;
	lk->uid = uid;
	lk->done = done;
	lk->ctx = ctx;
	pid = platform_account_lookup_start(uid, test_lookup_delay_ms(), &lk->ch.sock);
	if (pid < 0) {
		free(lk);
		return known ? 1 : (int)pid;
	}
	lk->pid = pid;
	lk->watch = child_watch_new(base, pid, lookup_reaped_cb, lk);
	if (lk->watch == NULL) {
		int e = errno;
		kill(pid, SIGKILL);
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
		close(lk->ch.sock);
		free(lk);
		return known ? 1 : -e;
	}
	lk->next = lookups;
	lookups = lk;
	if (ch_listen(&lk->ch, base, lookup_answer_cb, lookup_deadline_cb, lk, &deadline) < 0) {
		/* As op_start_helper: killed, reaped (and lk freed) through
		 * the watch; done never runs. */
		child_watch_kill(lk->watch, SIGKILL);
		ch_close(&lk->ch);
		lk->finished = true;
		lk->done = NULL;
		return known ? 1 : -ENOMEM;
	}
	return known ? 1 : 0;
}

void
caller_accounts_cancel(void *ctx)
{
	for (struct caller_lookup *lk = lookups; lk != NULL; lk = lk->next)
		if (lk->ctx == ctx)
			lk->done = NULL;
}

static void
lookups_forget(struct event_base *base)
{
	struct caller_lookup **p = &lookups;

	while (*p != NULL) {
		struct caller_lookup *lk = *p;
		if (lk->base != base) {
			p = &lk->next;
			continue;
		}
		if (lk->watch != NULL) {
			helper_kill_and_reap(lk->watch, lk->pid);
			lk->watch = NULL;
		}
		lookup_free(lk);	/* unlinks it */
	}
}
