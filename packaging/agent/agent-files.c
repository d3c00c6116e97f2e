/*
 * The file ops: read_file and write_file move one chunk of a file (at most
 * AGENT_FILE_CHUNK_MAX bytes, base64 in the JSON) at an offset, so that a
 * host copies a file of any size in chunks while every line stays under
 * AGENT_MAX_LINE. Binary-safe; no path rules beyond the agent's own
 * permissions (it runs as root in ember-mini).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"

static int
agent_op_read_file(json_t *params, json_t *reply, struct agent_error *err)
{
	json_error_t	 jerr;
	const char	*path;
	json_int_t	 offset = 0, length = AGENT_FILE_CHUNK_MAX;
	struct stat	 st;
	unsigned char	*buf = NULL;
	size_t		 got = 0, enc_len;
	ssize_t		 n;
	char		*enc;
	bool		 eof;
	int		 fd = -1, rc = -1;

	if (json_unpack_ex(params, &jerr, JSON_STRICT, "{s:s, s?I, s?I}",
	    "path", &path, "offset", &offset, "length", &length) != 0)
		return agent_error_set(err, "invalid parameters for read_file: %s",
		    jerr.text);
	if (offset < 0)
		return agent_error_set(err, "offset must not be negative");
	if (length < 0 || length > AGENT_FILE_CHUNK_MAX)
		return agent_error_set(err, "length %" JSON_INTEGER_FORMAT
		    " is out of range: read at most %d bytes at a time",
		    length, AGENT_FILE_CHUNK_MAX);
	if (agent_dry_run) {
		memset(&st, 0, sizeof(st));
		eof = true;
		goto reply;
	}
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)) == -1)
		return agent_error_set(err, "open %.200s: %s", path,
		    strerror(errno));
	if (fstat(fd, &st) == -1) {
		agent_error_set(err, "stat %.200s: %s", path, strerror(errno));
		goto out;
	}
	if (S_ISDIR(st.st_mode)) {
		agent_error_set(err, "%.200s is a directory", path);
		goto out;
	}
	if ((buf = malloc((size_t)length + 1)) == NULL) {
		agent_error_set(err, "out of memory");
		goto out;
	}
	while (got < (size_t)length) {
		n = pread(fd, buf + got, (size_t)length - got,
		    (off_t)offset + (off_t)got);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			agent_error_set(err, "read %.200s: %s", path,
			    strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	/* A regular file knows its size; /proc files say 0 and end short. */
	if (S_ISREG(st.st_mode) && st.st_size > 0)
		eof = offset + (json_int_t)got >= (json_int_t)st.st_size;
	else
		eof = got < (size_t)length;
reply:
	if ((enc = base64_encode(buf, got, &enc_len)) == NULL) {
		agent_error_set(err, "out of memory");
		goto out;
	}
	if (json_object_set_new(reply, "data", json_stringn(enc, enc_len)) != 0 ||
	    json_object_set_new(reply, "size",
	    json_integer((json_int_t)st.st_size)) != 0 ||
	    json_object_set_new(reply, "eof", json_boolean(eof)) != 0)
		agent_error_set(err, "out of memory");
	else
		rc = 0;
	free(enc);
out:
	free(buf);
	if (fd != -1)
		close(fd);
	return rc;
}

static int
agent_op_write_file(json_t *params, json_t *reply, struct agent_error *err)
{
	json_error_t	 jerr;
	const char	*path, *data;
	size_t		 data_len, len, done = 0;
	json_int_t	 offset = 0, mode = 0644;
	unsigned char	*buf = NULL;
	ssize_t		 n;
	int		 truncate = 0, fd = -1, rc = -1, flags;
	bool		 created = false;

	if (json_unpack_ex(params, &jerr, JSON_STRICT, "{s:s, s:s%, s?I, s?b, s?I}",
	    "path", &path, "data", &data, &data_len, "offset", &offset,
	    "truncate", &truncate, "mode", &mode) != 0)
		return agent_error_set(err, "invalid parameters for write_file: %s",
		    jerr.text);
	if (offset < 0)
		return agent_error_set(err, "offset must not be negative");
	if (mode < 0 || mode > 07777)
		return agent_error_set(err, "mode %" JSON_INTEGER_FORMAT
		    " is not a file mode (0 to 07777, e.g. 420 for 0644)", mode);
	if (data_len > (AGENT_FILE_CHUNK_MAX + 2) / 3 * 4)
		goto too_big;
	if (base64_decode(data, data_len, &buf, &len) != 0)
		return agent_error_set(err, "data is not valid base64");
	if (len > AGENT_FILE_CHUNK_MAX) {
		free(buf);
too_big:
		return agent_error_set(err, "data is more than %d bytes; write "
		    "at most %d bytes at a time", AGENT_FILE_CHUNK_MAX,
		    AGENT_FILE_CHUNK_MAX);
	}
	if (agent_dry_run) {
		done = len;
		goto reply;
	}
	/* O_NONBLOCK: a FIFO without a reader fails instead of blocking us. */
	flags = O_WRONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK |
	    (truncate ? O_TRUNC : 0);
	/* Created: mode exactly (not masked by our umask); else left alone. */
	if ((fd = open(path, flags | O_CREAT | O_EXCL, (mode_t)mode)) != -1)
		created = true;
	else if (errno == EEXIST)
		fd = open(path, flags);
	if (fd == -1) {
		agent_error_set(err, "open %.200s: %s", path, strerror(errno));
		goto out;
	}
	if (created && fchmod(fd, (mode_t)mode) == -1) {
		agent_error_set(err, "chmod %.200s: %s", path, strerror(errno));
		goto out;
	}
	while (done < len) {
		n = pwrite(fd, buf + done, len - done, (off_t)offset +
		    (off_t)done);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			agent_error_set(err, "write %.200s: %s", path,
			    strerror(errno));
			goto out;
		}
		done += (size_t)n;
	}
	if (close(fd) == -1) {
		fd = -1;
		agent_error_set(err, "close %.200s: %s", path, strerror(errno));
		goto out;
	}
	fd = -1;
reply:
	if (json_object_set_new(reply, "written",
	    json_integer((json_int_t)done)) != 0)
		agent_error_set(err, "out of memory");
	else
		rc = 0;
out:
	free(buf);
	if (fd != -1)
		close(fd);
	return rc;
}

const struct agent_op agent_ops_files[] = {
	/* Parameters are checked by the handlers (they need arguments). */
	{ "read_file", NULL, agent_op_read_file, 0 },
	{ "write_file", NULL, agent_op_write_file, 0 },
	{ NULL, NULL, NULL, 0 },
};
