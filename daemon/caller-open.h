/*
 * Host paths that clients name. emberd runs as root, so a path a non-root
 * client names (a kernel, an initrd, a root filesystem, a directory to
 * build one from) is opened with that client's uid, gid and groups through
 * platform_open_as, and emberd then works from the open file only (copying
 * it through /proc/self/fd in a child), never from the path. Root, and the
 * uid emberd itself runs as, are trusted: their paths are used as given.
 *
 * The open is synchronous on the event loop: a fork, an open and the
 * answer, about a millisecond, bounded by CALLER_OPEN_TIMEOUT_MS for paths
 * that hang (an unreachable network filesystem).
 */
#ifndef EMBER_CALLER_OPEN_H
#define EMBER_CALLER_OPEN_H

#include <stdbool.h>
#include "error.h"
#include "platform.h"

#define CALLER_OPEN_TIMEOUT_MS 5000

/* Whether caller's paths are used as given (root, or emberd's own uid). */
bool caller_trusted(const struct platform_caller *c);
/* Opens path as caller: a regular file, or a directory when dir. The fd,
 * or -1 with err saying "<what> <path>: <the caller's own open error>"
 * (permission_denied for EACCES/EPERM, invalid_spec otherwise). Device
 * nodes, FIFOs and sockets are refused. */
int caller_open(const struct platform_caller *c, const char *what, const char *path,
    bool dir, struct ember_error *err);

#endif
