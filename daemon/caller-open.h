/*
 * Host paths that clients name. emberd runs as root, so a path a non-root
 * client names (a kernel, an initrd, a root filesystem, a directory to
 * build one from) is opened with that client's uid, gid and groups through
 * platform_open_as_start, and emberd then works from the open file only
 * (copying it through /proc/self/fd in a child), never from the path. Root,
 * and the uid emberd itself runs as, are trusted: their paths are used as
 * given.
 *
 * Opening never holds the event loop: caller_open_start forks one helper
 * for all the paths a request names, reads its answers on the loop, and
 * calls done on a later loop turn with the open files or the first error;
 * a path that hangs (an unreachable network filesystem) fails after
 * CALLER_OPEN_TIMEOUT_MS and its helper is killed. A trusted caller goes
 * the same way without a helper (every fd -1: use the path as given), and
 * so does a request refused before anything is opened: done then runs at
 * once, inside caller_open_start (as the request ran before, so a create
 * is listed before the next request of a batch). At most
 * CALLER_OPEN_HELPERS_MAX helpers exist at once, hung ones included.
 */
#ifndef EMBER_CALLER_OPEN_H
#define EMBER_CALLER_OPEN_H

#include <stdbool.h>
#include <stddef.h>
#include "error.h"
#include "platform.h"

struct event_base;

#define CALLER_OPEN_TIMEOUT_MS 5000
#define CALLER_OPEN_HELPERS_MAX 16
#define CALLER_OPEN_PATHS_MAX PLATFORM_OPEN_PATHS_MAX

/* Whether caller's paths are used as given (root, or emberd's own uid). */
bool caller_trusted(const struct platform_caller *c);

struct caller_open_path {
	const char *what;	/* "kernel", "rootfs_dir": how errors name it */
	const char *path;
	bool dir;		/* a directory, not a regular file */
};

/* fds[i] is paths[i] opened (done owns it: keep or close it), or -1 for a
 * trusted caller. On failure err says "<what> <path>: <the caller's own
 * open error>" (permission_denied for EACCES/EPERM, invalid_spec otherwise;
 * device nodes, FIFOs and sockets are refused; io after the deadline, busy
 * when too many helpers hang) and every fd is -1. */
typedef void (*caller_open_done_fn)(void *ctx, const int *fds, size_t n,
    const struct ember_error *err);

struct caller_open;
/* Opens paths[0..n) (n <= CALLER_OPEN_PATHS_MAX; strings are copied) as c
 * and calls done exactly once, unless cancelled first: at once when there
 * is no helper to wait for, else from the loop. *handle (handle may be
 * NULL) is set to NULL before done can run and, while a helper works, to
 * the open in progress, valid until done runs. A caller must not touch
 * what done may free after this returns. */
void caller_open_start(struct event_base *base, const struct platform_caller *c,
    const struct caller_open_path *paths, size_t n, struct caller_open **handle,
    caller_open_done_fn done, void *ctx);
/* done will not run; what was opened is closed, a helper still at work is
 * killed. NULL is a no-op. */
void caller_open_cancel(struct caller_open *op);
/* Daemon teardown, before base is freed: lets go of every open and
 * account lookup on base without calling done (helpers are killed and
 * reaped, waiting at most a moment for each). */
void caller_opens_forget(struct event_base *base);

/* Shutdown: every open still waiting on its helper on base is answered
 * now with why (done runs with it, the helper is killed and reaped on the
 * loop), and opens started on base from now on fail with it at once. */
void caller_opens_fail(struct event_base *base, const struct ember_error *why);

/*
 * A non-root caller's account (its passwd entry's primary group, which a
 * Firecracker emberd runs as the caller gets) is looked up off the loop
 * too: NSS may ask LDAP or sssd, which can hang. caller_account_resolve
 * returns 1 when nothing need be waited for (a trusted caller, a fresh
 * answer or a recent failure is kept: platform_account_gid; an older
 * answer is used while a new lookup runs), 0 when done(ctx, uid, result)
 * will run from the loop once the lookup answers (result 0 or -ENOENT, kept
 * by platform_account_remember), fails, or passes CALLER_ACCOUNT_TIMEOUT_MS
 * (-ETIMEDOUT, logged, kept a minute; the helper is killed), or -EBUSY when
 * CALLER_ACCOUNT_LOOKUPS_MAX lookups are at work already (hung ones
 * included). One lookup per uid runs at a time: a second resolve of the
 * same uid while it runs joins it (done runs once, for the first). done
 * may be NULL: the answer is only kept (emberd looks up its VMs' owners
 * at start, for Firecracker VMs started before their owner connects).
 */
#define CALLER_ACCOUNT_TIMEOUT_MS 5000
#define CALLER_ACCOUNT_LOOKUPS_MAX 16
typedef void (*caller_account_done_fn)(void *ctx, uid_t uid, int result);
int caller_account_resolve(struct event_base *base, uid_t uid, caller_account_done_fn done,
    void *ctx);
/* done(ctx, ...) will not run for any lookup; they go on (their answers
 * are still kept). */
void caller_accounts_cancel(void *ctx);

/* A caller whose groups are copied, for work that outlives the request. */
int caller_copy(struct platform_caller *dst, const struct platform_caller *src);
void caller_copy_free(struct platform_caller *c);

#endif
