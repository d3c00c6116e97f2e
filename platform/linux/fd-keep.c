/*
 * The process's table of fds that outlive it (see fd-keep.h). Both tables
 * are small arrays searched linearly: a few fds per VM, touched when a
 * device is negotiated, restored or removed, never per packet.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fd-keep.h"
#include "log.h"

/* One environment string's limit (MAX_ARG_STRLEN). */
#define FDNAMES_ENV_MAX	(128 * 1024)

struct fd_entry {
	char	*name;
	int	 fd;
};

struct fd_table {
	struct fd_entry	*e;
	size_t		 n, cap;
};

struct busy_check {
	fd_keep_busy_fn	 fn;
	void		*ctx;
};

static struct fd_table inherited, held;
static struct busy_check *busy;
static size_t nbusy, busy_cap;
static struct fd_keep_sink sink;
static bool have_sink;

void
fd_keep_set_sink(const struct fd_keep_sink *s)
{
	have_sink = s != NULL;
	if (s != NULL)
		sink = *s;
	else
		memset(&sink, 0, sizeof(sink));
}

bool
fd_keep_persistent(void)
{
	return have_sink;
}

bool
fd_keep_name_valid(const char *name)
{
	size_t len = strlen(name);

	if (len == 0 || len > FD_KEEP_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if (name[i] < 0x21 || name[i] > 0x7e || name[i] == ':')
			return false;
	return true;
}

static ssize_t
table_find(const struct fd_table *t, const char *name)
{
	for (size_t i = 0; i < t->n; i++)
		if (strcmp(t->e[i].name, name) == 0)
			return (ssize_t)i;
	return -1;
}

static void
table_remove(struct fd_table *t, size_t i)
{
	free(t->e[i].name);
	memmove(&t->e[i], &t->e[i + 1], (t->n - i - 1) * sizeof(t->e[0]));
	t->n--;
}

static int
table_add(struct fd_table *t, const char *name, int fd)
{
	char *copy;

	if (t->n == FD_KEEP_MAX)
		return -EMFILE;
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 32;
		struct fd_entry *e = realloc(t->e, cap * sizeof(*e));

		if (e == NULL)
			return -ENOMEM;
		t->e = e;
		t->cap = cap;
	}
	if ((copy = strdup(name)) == NULL)
		return -ENOMEM;
	t->e[t->n++] = (struct fd_entry){ copy, fd };
	return 0;
}

int
fd_keep_inherit(const char *name, int fd)
{
	ssize_t old;
	int r;

	if (!fd_keep_name_valid(name)) {
		close(fd);
		return -EINVAL;
	}
	/* A name twice: the later fd wins, the earlier is stale. */
	if ((old = table_find(&inherited, name)) >= 0) {
		close(inherited.e[old].fd);
		table_remove(&inherited, (size_t)old);
	}
	if ((r = table_add(&inherited, name, fd)) < 0)
		close(fd);
	return r;
}

int
fd_keep_take(const char *name)
{
	ssize_t i = table_find(&inherited, name);
	int fd;

	if (i < 0)
		return -ENOENT;
	fd = inherited.e[i].fd;
	table_remove(&inherited, (size_t)i);
	return fd;
}

bool
fd_keep_inherited_prefix(const char *prefix)
{
	size_t len = strlen(prefix);

	for (size_t i = 0; i < inherited.n; i++)
		if (strncmp(inherited.e[i].name, prefix, len) == 0)
			return true;
	return false;
}

size_t
fd_keep_drop_unclaimed(void)
{
	size_t n = inherited.n;

	while (inherited.n > 0) {
		struct fd_entry *e = &inherited.e[inherited.n - 1];

		log_debug("fd-keep: closing unclaimed fd %d (%s)", e->fd, e->name);
		close(e->fd);
		if (have_sink && sink.remove != NULL)
			sink.remove(sink.ctx, e->name);
		table_remove(&inherited, inherited.n - 1);
	}
	return n;
}

int
fd_keep_hold(const char *name, int fd, bool already_stored)
{
	ssize_t i;
	int r;

	if (!fd_keep_name_valid(name) || fd < 0)
		return -EINVAL;
	if ((i = table_find(&held, name)) >= 0) {
		held.e[i].fd = fd;
		/* The store keeps every fd sent under a name: drop the old. */
		if (have_sink && sink.remove != NULL && !already_stored)
			sink.remove(sink.ctx, name);
	} else if ((r = table_add(&held, name, fd)) < 0)
		return r;
	if (have_sink && !already_stored && sink.store != NULL)
		return sink.store(sink.ctx, name, fd);
	return 0;
}

void
fd_keep_forget(const char *name)
{
	ssize_t i = table_find(&held, name);

	if (i >= 0)
		table_remove(&held, (size_t)i);
}

void
fd_keep_release(const char *name)
{
	ssize_t i = table_find(&held, name);

	/* Told even when not held here: it may have come back from the
	 * store and been found unusable. */
	if (i >= 0)
		table_remove(&held, (size_t)i);
	if (have_sink && sink.remove != NULL)
		sink.remove(sink.ctx, name);
}

int
fd_keep_add_busy_check(fd_keep_busy_fn fn, void *ctx)
{
	if (nbusy == FD_KEEP_MAX)
		return -EMFILE;
	if (nbusy == busy_cap) {
		size_t cap = busy_cap ? busy_cap * 2 : 16;
		struct busy_check *b = realloc(busy, cap * sizeof(*b));

		if (b == NULL)
			return -ENOMEM;
		busy = b;
		busy_cap = cap;
	}
	busy[nbusy++] = (struct busy_check){ fn, ctx };
	return 0;
}

void
fd_keep_remove_busy_check(void *ctx)
{
	for (size_t i = 0; i < nbusy; i++)
		if (busy[i].ctx == ctx) {
			busy[i] = busy[--nbusy];
			return;
		}
}

bool
fd_keep_busy(void)
{
	for (size_t i = 0; i < nbusy; i++)
		if (busy[i].fn(busy[i].ctx))
			return true;
	return false;
}

size_t
fd_keep_held_count(void)
{
	return held.n;
}

/* close_range's fallback: every open fd >= first becomes close-on-exec. */
static void
mark_cloexec_from(int first)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;

	if (d == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		int fd = atoi(de->d_name), flags;

		if (de->d_name[0] < '0' || de->d_name[0] > '9' || fd < first || fd == dirfd(d))
			continue;
		if ((flags = fcntl(fd, F_GETFD)) >= 0)
			fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
	}
	closedir(d);
}

int
fd_keep_prepare_exec(void)
{
	size_t n = held.n, len = 0;
	char *names, num[32];
	int *tmp, r = 0;

	if (n > FD_KEEP_MAX)
		return -EMFILE;
	for (size_t i = 0; i < n; i++)
		len += strlen(held.e[i].name) + 1;
	if (len > FDNAMES_ENV_MAX)
		return -E2BIG;
	names = calloc(1, len + 1);
	tmp = calloc(n + 1, sizeof(*tmp));
	if (names == NULL || tmp == NULL) {
		free(names);
		free(tmp);
		return -ENOMEM;
	}
	/* First every fd above the target range, so placing one never
	 * overwrites another that is still to be placed. */
	for (size_t i = 0; i < n; i++) {
		tmp[i] = fcntl(held.e[i].fd, F_DUPFD_CLOEXEC, (int)(3 + n));
		if (tmp[i] < 0) {
			r = -errno;
			while (i-- > 0)
				close(tmp[i]);
			goto out;
		}
	}
	for (size_t i = 0; i < n; i++) {
		/* dup2 leaves the target inheritable. */
		if (dup2(tmp[i], (int)(3 + i)) < 0)
			r = -errno;
		close(tmp[i]);
		if (i > 0)
			strcat(names, ":");
		strcat(names, held.e[i].name);
	}
	if (r < 0)
		goto out;
	/* The successor gets the handed-over fds and nothing else, even
	 * from libraries that open fds without O_CLOEXEC (libcurl's wakeup
	 * socketpair is one). */
	if (close_range((unsigned)(3 + n), ~0u, CLOSE_RANGE_CLOEXEC) < 0)
		mark_cloexec_from((int)(3 + n));
	snprintf(num, sizeof(num), "%zu", n);
	setenv("LISTEN_FDS", num, 1);
	setenv("LISTEN_FDNAMES", names, 1);
	snprintf(num, sizeof(num), "%d", (int)getpid());
	setenv("LISTEN_PID", num, 1);
out:
	free(names);
	free(tmp);
	return r;
}
