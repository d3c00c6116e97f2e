/*
 * Opening client-named host paths with the client's rights (see
 * caller-open.h).
 */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "caller-open.h"
#include "log.h"

bool
caller_trusted(const struct platform_caller *c)
{
	return c->uid == 0 || c->uid == geteuid();
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

int
caller_open(const struct platform_caller *c, const char *what, const char *path, bool dir,
    struct ember_error *err)
{
	struct stat st;
	int fd;

	if (path[0] != '/')
		return ember_error_set(err, EK_INVALID_SPEC, "give an absolute path",
		    "%s %s: not an absolute path", what, path);
	if (c->groups == NULL)
		return ember_error_set(err, EK_PERMISSION_DENIED,
		    "reconnect; a client in more groups than emberd can take on cannot name host paths",
		    "%s %s: cannot act as uid %u: its supplementary groups are unknown", what, path,
		    (unsigned)c->uid);
	fd = platform_open_as(c, path, dir ? PLATFORM_OPEN_DIRECTORY : 0, CALLER_OPEN_TIMEOUT_MS,
	    &st);
	if (fd >= 0)
		return fd;
	log_debug("open %s as uid %u: %s", path, (unsigned)c->uid, strerror(-fd));
	if (fd == -EINVAL && st.st_mode != 0) {
		if (dir)
			return ember_error_set(err, EK_INVALID_SPEC, "give a directory",
			    "%s %s: Not a directory (it is %s)", what, path, file_type_name(st.st_mode));
		return ember_error_set(err, EK_INVALID_SPEC,
		    "give a regular file; only root may name devices, FIFOs or sockets",
		    "%s %s is %s, not a regular file", what, path, file_type_name(st.st_mode));
	}
	if (fd == -ETIMEDOUT)
		return ember_error_set(err, EK_IO, "check that its filesystem responds",
		    "%s %s: opening it took longer than %d s", what, path,
		    CALLER_OPEN_TIMEOUT_MS / 1000);
	if (fd == -EAGAIN)
		return ember_error_set(err, EK_BUSY, "retry later",
		    "%s %s: too many earlier opens still hang", what, path);
	return ember_error_set(err, fd == -EACCES || fd == -EPERM ? EK_PERMISSION_DENIED :
	    EK_INVALID_SPEC, NULL, "%s %s: %s", what, path, strerror(-fd));
}
