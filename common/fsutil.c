/*
 * File-system helpers for the state directory. A state file is replaced, never
 * rewritten in place: the new contents go to ".<name>.tmp.XXXXXX" beside it,
 * are fsync'd and given their mode, then renamed over the old file, and the
 * directory is fsync'd so the rename itself survives a crash. The steps are
 * also exported one by one (atomic_temp_write, atomic_temp_sync, rename,
 * fsync_dir) for a writer that shares the fsyncs of many files (the daemon's
 * group commit, daemon/durable.c). rm_rf walks
 * with openat/unlinkat and never follows a symbolic link out of the tree.
 */
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fsutil.h"

/* State files are small; anything larger than this is not one of ours. */
#define JSON_FILE_MAX (64 * 1024 * 1024)

int
fsync_dir(const char *dir)
{
	int fd, r = 0;

	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd == -1)
		return -errno;
	/* Some file systems cannot sync a directory; that is not our failure. */
	if (fsync(fd) == -1 && errno != EINVAL && errno != EROFS)
		r = -errno;
	close(fd);
	return r;
}

static int
mkdir_one(const char *path, mode_t mode)
{
	struct stat st;

	if (mkdir(path, mode) == 0)
		return 0;
	if (errno != EEXIST)
		return -errno;
	if (stat(path, &st) == -1)
		return -errno;
	if (!S_ISDIR(st.st_mode))
		return -ENOTDIR;
	return 0;
}

int
mkdir_p(const char *path, mode_t mode)
{
	char *copy, *p;
	int r;

	if (path == NULL || *path == '\0')
		return -EINVAL;
	if ((copy = strdup(path)) == NULL)
		return -ENOMEM;
	for (p = copy + 1; *p != '\0'; p++) {
		if (*p != '/' || p[-1] == '/')
			continue;
		*p = '\0';
		r = mkdir_one(copy, mode);
		*p = '/';
		if (r < 0) {
			free(copy);
			return r;
		}
	}
	r = mkdir_one(copy, mode);
	free(copy);
	return r;
}

/* Empties the directory open as dfd (which this function closes). */
static int
rm_contents(int dfd)
{
	struct dirent *de;
	struct stat st;
	DIR *d;
	int r = 0, sub;

	if ((d = fdopendir(dfd)) == NULL) {
		r = -errno;
		close(dfd);
		return r;
	}
	for (;;) {
		errno = 0;
		if ((de = readdir(d)) == NULL) {
			if (errno != 0 && r == 0)
				r = -errno;
			break;
		}
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == -1) {
			if (errno != ENOENT && r == 0)
				r = -errno;
			continue;
		}
		if (S_ISDIR(st.st_mode)) {
			sub = openat(dirfd(d), de->d_name,
			    O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub == -1) {
				if (errno != ENOENT && r == 0)
					r = -errno;
				continue;
			}
			if ((sub = rm_contents(sub)) < 0 && r == 0)
				r = sub;
			if (unlinkat(dirfd(d), de->d_name, AT_REMOVEDIR) == -1 &&
			    errno != ENOENT && r == 0)
				r = -errno;
		} else if (unlinkat(dirfd(d), de->d_name, 0) == -1 &&
		    errno != ENOENT && r == 0)
			r = -errno;
	}
	closedir(d);
	return r;
}

int
rm_rf(const char *path)
{
	struct stat st;
	int fd, r;

	if (path == NULL || *path == '\0')
		return -EINVAL;
	if (lstat(path, &st) == -1)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISDIR(st.st_mode)) {
		if (unlink(path) == -1 && errno != ENOENT)
			return -errno;
		return 0;
	}
	fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd == -1)
		return errno == ENOENT ? 0 : -errno;
	if ((r = rm_contents(fd)) < 0)
		return r;
	if (rmdir(path) == -1 && errno != ENOENT)
		return -errno;
	return 0;
}

static int
write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	ssize_t n;

	while (len > 0) {
		n = write(fd, p, len);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int
path_parent(const char *path, char *dir, size_t len)
{
	const char *slash;

	if (path == NULL || len < 2)
		return -EINVAL;
	slash = strrchr(path, '/');
	if (slash == NULL) {
		strcpy(dir, ".");
		return 0;
	}
	if (slash[1] == '\0')
		return -EISDIR;
	if (slash == path) {
		strcpy(dir, "/");
		return 0;
	}
	if ((size_t)(slash - path) >= len)
		return -ENAMETOOLONG;
	memcpy(dir, path, (size_t)(slash - path));
	dir[slash - path] = '\0';
	return 0;
}

int
atomic_temp_write(const char *path, const void *buf, size_t len, mode_t mode,
    char *tmp, size_t tmplen)
{
	const char *base;
	char dir[PATH_MAX];
	int fd, r;

	if (path == NULL || tmp == NULL || (buf == NULL && len != 0))
		return -EINVAL;
	if ((r = path_parent(path, dir, sizeof(dir))) < 0)
		return r;
	base = strrchr(path, '/');
	base = base != NULL ? base + 1 : path;
	r = snprintf(tmp, tmplen, "%s/.%s.tmp.XXXXXX", dir, base);
	if (r < 0 || (size_t)r >= tmplen)
		return -ENAMETOOLONG;
	if ((fd = mkostemp(tmp, O_CLOEXEC)) == -1)
		return -errno;
	if ((r = write_all(fd, buf, len)) < 0)
		goto fail;
	if (fchmod(fd, mode) == -1) {
		r = -errno;
		goto fail;
	}
	return fd;

fail:
	close(fd);
	unlink(tmp);
	return r;
}

int
atomic_temp_sync(int fd, const char *tmp)
{
	int r = 0;

	if (fsync(fd) == -1)
		r = -errno;
	if (close(fd) == -1 && r == 0)
		r = -errno;
	if (r < 0)
		unlink(tmp);
	return r;
}

int
atomic_write_file(const char *path, const void *buf, size_t len, mode_t mode)
{
	char dir[PATH_MAX], tmp[PATH_MAX];
	int fd, r;

	if (path == NULL)
		return -EINVAL;
	if ((r = path_parent(path, dir, sizeof(dir))) < 0)
		return r;
	if ((fd = atomic_temp_write(path, buf, len, mode, tmp, sizeof(tmp))) < 0)
		return fd;
	if ((r = atomic_temp_sync(fd, tmp)) < 0)
		return r;
	if (rename(tmp, path) == -1) {
		r = -errno;
		unlink(tmp);
		return r;
	}
	return fsync_dir(dir);
}

char *
json_state_text(const json_t *json, size_t *lenp)
{
	char *text, *grown;
	size_t len;

	if (json == NULL)
		return NULL;
	text = json_dumps(json, JSON_INDENT(2) | JSON_SORT_KEYS);
	if (text == NULL)
		return NULL;
	len = strlen(text);
	/* json_dumps allocates exactly; make room for the newline. */
	if ((grown = realloc(text, len + 2)) == NULL) {
		free(text);
		return NULL;
	}
	text = grown;
	text[len++] = '\n';
	text[len] = '\0';
	*lenp = len;
	return text;
}

int
atomic_write_json(const char *path, const json_t *json)
{
	char *text;
	size_t len;
	int r;

	if (json == NULL)
		return -EINVAL;
	if ((text = json_state_text(json, &len)) == NULL)
		return -ENOMEM;
	r = atomic_write_file(path, text, len, 0644);
	free(text);
	return r;
}

int
read_file(const char *path, size_t max, char **out, size_t *lenp)
{
	char *buf = NULL, *grown;
	size_t len = 0, cap = 0;
	ssize_t n;
	int fd, r;

	if (path == NULL || out == NULL)
		return -EINVAL;
	*out = NULL;
	if (max > SIZE_MAX / 4)
		max = SIZE_MAX / 4;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return -errno;
	for (;;) {
		/* Read up to max + 1 bytes so an over-long file is noticed. */
		if (len == cap) {
			if (cap > max) {
				r = -EFBIG;
				goto fail;
			}
			cap = cap == 0 ? 4096 : cap * 2;
			if (cap > max + 1)
				cap = max + 1;
			if ((grown = realloc(buf, cap + 1)) == NULL) {
				r = -ENOMEM;
				goto fail;
			}
			buf = grown;
		}
		n = read(fd, buf + len, cap - len);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			r = -errno;
			goto fail;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (len > max) {
		r = -EFBIG;
		goto fail;
	}
	if (buf == NULL && (buf = malloc(1)) == NULL) {
		r = -ENOMEM;
		goto fail;
	}
	buf[len] = '\0';
	close(fd);
	*out = buf;
	if (lenp != NULL)
		*lenp = len;
	return 0;

fail:
	free(buf);
	close(fd);
	return r;
}

int
read_json_file(const char *path, json_t **out, char *errbuf, size_t errlen)
{
	json_error_t jerr;
	json_t *json;
	char *text;
	size_t len;
	int r;

	if (out == NULL)
		return -EINVAL;
	*out = NULL;
	if (errbuf != NULL && errlen > 0)
		errbuf[0] = '\0';
	if ((r = read_file(path, JSON_FILE_MAX, &text, &len)) < 0) {
		if (errbuf != NULL && errlen > 0)
			snprintf(errbuf, errlen, "%s", strerror(-r));
		return r;
	}
	/* Duplicate keys in a state file mean it was edited or corrupted. */
	json = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	free(text);
	if (json == NULL) {
		if (errbuf != NULL && errlen > 0)
			snprintf(errbuf, errlen, "%d:%d: %s", jerr.line,
			    jerr.column, jerr.text);
		return -EBADMSG;
	}
	*out = json;
	return 0;
}

int
write_file_text(const char *path, const char *text)
{
	size_t len = strlen(text);
	ssize_t n;
	int fd, r = 0;

	if ((fd = open(path, O_WRONLY | O_CLOEXEC)) < 0)
		return -errno;
	do
		n = write(fd, text, len);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		r = -errno;
	else if ((size_t)n != len)
		r = -EIO;
	close(fd);
	return r;
}
