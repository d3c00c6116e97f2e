/*
 * File descriptors that outlive one emberd process. A QEMU VM's vsock
 * device is a set of fds (the vhost-user socket, guest-memory memfds,
 * kick and call eventfds, the vsock.sock listener); as long as somebody
 * holds them, QEMU never sees the device go away, and a later emberd can
 * pick them up again. Two holders exist: the service manager's fd store
 * (sd_notify FDSTORE=1 / FDNAME=, handed back through LISTEN_FDS and
 * LISTEN_FDNAMES at the next start, kill -9 included), and emberd itself
 * across execve for an in-place upgrade (the same LISTEN_FDS convention,
 * with LISTEN_PID our own pid since exec keeps it).
 *
 * Two tables, one per direction:
 *  - "inherited": what the previous process handed us, by name, until the
 *    code that recognises a name takes it (fd_keep_take); whatever nobody
 *    claims once start-up is done is closed and removed from the store.
 *  - "held": live fds, owned by their device, that a successor needs. Each
 *    is announced to the sink (the service manager) when held and removed
 *    from it when released; fd_keep_prepare_exec lays them out from fd 3.
 *
 * Names are at most FD_KEEP_NAME_MAX printable characters without ':'
 * (LISTEN_FDNAMES separates with it); each table holds at most
 * FD_KEEP_MAX entries, the bound the shipped unit's
 * FileDescriptorStoreMax= matches. One table per process, like the fd
 * table it mirrors. Functions return 0 or -errno and do not log above
 * debug.
 */
#ifndef EMBER_FD_KEEP_H
#define EMBER_FD_KEEP_H

#include <stdbool.h>
#include <stddef.h>

#define FD_KEEP_MAX		4096
#define FD_KEEP_NAME_MAX	255

/* Where held fds are announced: the service manager's fd store. */
struct fd_keep_sink {
	/* Stores a copy of fd under name; 0 or -errno. */
	int	(*store)(void *ctx, const char *name, int fd);
	/* Drops every fd stored under name. */
	void	(*remove)(void *ctx, const char *name);
	void	*ctx;
};

/* Sets (or, with NULL, clears) the sink. */
void fd_keep_set_sink(const struct fd_keep_sink *sink);
/* Whether held fds survive this process: a sink exists (kill -9 and
 * restart keep them) — a graceful stop then detaches devices rather than
 * tearing them down. */
bool fd_keep_persistent(void);
/* Whether name is acceptable as an FDNAME. */
bool fd_keep_name_valid(const char *name);

/* Records an fd handed over at start (taken: closed on any failure). */
int fd_keep_inherit(const char *name, int fd);
/* Takes the inherited fd called name: the fd, or -ENOENT. */
int fd_keep_take(const char *name);
/* Whether any inherited fd not yet taken starts with prefix. */
bool fd_keep_inherited_prefix(const char *prefix);
/* Closes every inherited fd nobody took and removes its name from the
 * sink; returns how many. */
size_t fd_keep_drop_unclaimed(void);

/*
 * Holds fd (borrowed: its owner keeps it open until fd_keep_release) under
 * name, replacing what name held; announces it to the sink unless
 * already_stored (an fd that came back from the store under that name).
 */
int fd_keep_hold(const char *name, int fd, bool already_stored);
/* Forgets name (if held) and removes it from the sink. */
void fd_keep_release(const char *name);
/* Forgets name without telling the sink (a device detaching while the
 * store keeps its fds for the next emberd). */
void fd_keep_forget(const char *name);
size_t fd_keep_held_count(void);

/* A holder in the middle of an exchange an exec would cut in two (a
 * vhost-user request half read, a reply half sent): true while busy. */
typedef bool (*fd_keep_busy_fn)(void *ctx);
/* Registers (ctx unique) and unregisters such a check; 0 or -errno. */
int fd_keep_add_busy_check(fd_keep_busy_fn fn, void *ctx);
void fd_keep_remove_busy_check(void *ctx);
/* Whether any registered holder is busy now: an exec should wait. */
bool fd_keep_busy(void);

/*
 * Before execve of a successor: moves every held fd to 3, 4, ... in the
 * order held, inheritable, and sets LISTEN_FDS, LISTEN_FDNAMES and
 * LISTEN_PID (getpid()). Afterwards only execve may follow: the fd table
 * is rearranged under everyone's feet. 0 or -errno (nothing was moved).
 */
int fd_keep_prepare_exec(void);

#endif
