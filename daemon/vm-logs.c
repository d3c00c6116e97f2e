/*
 * vm.logs (see vm-logs.h). console.log is emberd's own file in the VM's
 * directory (console_open); it is opened without following links and read
 * with one bounded pread, which is quick enough for the event loop.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base64.h"
#include "daemon.h"
#include "vm.h"
#include "vm-internal.h"
#include "vm-logs.h"

json_t *
vm_logs_read(struct vm *vm, int64_t offset, size_t max, struct ember_error *err)
{
	char dir[PATH_MAX], path[PATH_MAX], *b64;
	unsigned char *buf;
	struct stat st;
	ssize_t n = 0;
	json_t *out;
	int fd;

	if (max == 0 || max > VM_LOGS_CHUNK_MAX)
		max = VM_LOGS_CHUNK_MAX;
	vm_dir(vm->daemon, vm->rec.name, dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/console.log", dir);
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0 && errno != ENOENT) {
		ember_error_set(err, EK_IO, NULL, "cannot read %s: %s", path, strerror(errno));
		return NULL;
	}
	st.st_size = 0;
	if (fd >= 0 && (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))) {
		close(fd);
		ember_error_set(err, EK_IO, NULL, "%s is not a regular file", path);
		return NULL;
	}
	if (offset < 0)
		offset = -offset > st.st_size ? 0 : st.st_size + offset;
	if (offset > st.st_size)
		offset = 0;	/* trimmed (console_trim) since the last read */
	if ((buf = malloc(max)) == NULL) {
		if (fd >= 0)
			close(fd);
		ember_error_set(err, EK_INTERNAL, NULL, "out of memory");
		return NULL;
	}
	if (fd >= 0) {
		n = pread(fd, buf, max, offset);
		close(fd);
		if (n < 0)
			n = 0;
	}
	b64 = base64_encode(buf, (size_t)n, NULL);
	free(buf);
	out = json_pack("{s:s, s:I, s:I, s:I, s:s}", "data", b64 ? b64 : "",
	    "offset", (json_int_t)offset, "next_offset", (json_int_t)(offset + n),
	    "size", (json_int_t)st.st_size, "status", vm_status_name(vm->rec.status));
	free(b64);
	if (out == NULL)
		ember_error_set(err, EK_INTERNAL, NULL, "out of memory");
	return out;
}
