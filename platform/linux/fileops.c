/*
 * Sparse and reflink file copies (see fileops.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileops.h"

static int
copy_range(int in, int out, off_t off, off_t len)
{
	while (len > 0) {
		loff_t ioff = off, ooff = off;
		ssize_t n = copy_file_range(in, &ioff, out, &ooff, (size_t)len, 0);
		if (n < 0 && (errno == EXDEV || errno == ENOSYS || errno == EINVAL)) {
			char buf[65536];
			n = pread(in, buf, len < (off_t)sizeof(buf) ? (size_t)len : sizeof(buf), off);
			if (n > 0 && pwrite(out, buf, (size_t)n, off) != n)
				return -EIO;
		}
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;	/* file shrank under us */
		off += n;
		len -= n;
	}
	return 0;
}

int
file_copy_sparse(const char *src, const char *dst, mode_t mode, int *reflinked)
{
	struct stat st;
	int in, out, r = 0;
	off_t data, hole;

	*reflinked = 0;
	in = open(src, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return -errno;
	if (fstat(in, &st) < 0) {
		r = -errno;
		close(in);
		return r;
	}
	out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	if (out < 0) {
		r = -errno;
		close(in);
		return r;
	}
	if (ioctl(out, FICLONE, in) == 0) {
		*reflinked = 1;
		goto done;
	}
	if (ftruncate(out, st.st_size) < 0) {
		r = -errno;
		goto done;
	}
	for (data = 0; data < st.st_size; data = hole) {
		data = lseek(in, data, SEEK_DATA);
		if (data < 0) {
			if (errno != ENXIO)
				r = -errno;
			break;	/* ENXIO: only a hole is left */
		}
		hole = lseek(in, data, SEEK_HOLE);
		if (hole < 0) {
			r = -errno;
			break;
		}
		r = copy_range(in, out, data, hole - data);
		if (r < 0)
			break;
	}
done:
	if (r == 0 && fsync(out) < 0)
		r = -errno;
	close(in);
	close(out);
	if (r < 0)
		unlink(dst);
	return r;
}
