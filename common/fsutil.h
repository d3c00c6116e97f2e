/*
 * File-system helpers for durable state: atomic replacement (temp file in the
 * same directory, fsync, rename, fsync the directory), JSON files, directory
 * creation and removal. All return 0 or -errno and never log above debug.
 */
#ifndef EMBER_FSUTIL_H
#define EMBER_FSUTIL_H

#include <stddef.h>
#include <sys/types.h>
#include <jansson.h>

int fsync_dir(const char *dir);
/* Creates path and its parents with mode (existing directories are fine). */
int mkdir_p(const char *path, mode_t mode);
/* Removes a file or directory tree; a missing path is success. */
int rm_rf(const char *path);
int atomic_write_file(const char *path, const void *buf, size_t len, mode_t mode);
/* The directory part of path ("." without a slash, "/" at the root). */
int path_parent(const char *path, char *dir, size_t len);
/* atomic_write_file's first step: writes buf to a new ".<name>.tmp.XXXXXX"
 * beside path (its name in tmp) with mode, not yet synced. Returns the open
 * fd (O_CLOEXEC) or -errno, leaving no temp file on failure. */
int atomic_temp_write(const char *path, const void *buf, size_t len, mode_t mode,
    char *tmp, size_t tmplen);
/* Second step: fsyncs and closes fd; on failure unlinks tmp. 0 or -errno.
 * Then rename(tmp, path) and fsync_dir(the parent) finish the write. */
int atomic_temp_sync(int fd, const char *tmp);
/* json as a state file holds it (pretty, sorted keys, trailing newline),
 * malloc'd, or NULL when out of memory. */
char *json_state_text(const json_t *json, size_t *len);
/* Writes json (pretty, sorted keys, trailing newline) atomically with mode 0644. */
int atomic_write_json(const char *path, const json_t *json);
/* Reads a JSON file into *out. On a parse failure returns -EBADMSG and, when
 * errbuf is given, fills it with "line:column: reason". */
int read_json_file(const char *path, json_t **out, char *errbuf, size_t errlen);
/* Reads a whole file (max bytes) into a NUL-terminated malloc'd buffer. */
int read_file(const char *path, size_t max, char **out, size_t *len);
/* Writes text into the existing file path in one write, as a /proc, /sys
 * or cgroup file takes a value: 0, or -errno (-EIO for a short write). */
int write_file_text(const char *path, const char *text);

#endif
