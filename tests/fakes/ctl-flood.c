/*
 * ctl-flood: the abusive control-socket clients of the bounds tests. It
 * never checks emberd's answers itself; the tests ask emberd (quota.get,
 * daemon.info) and the kernel (/proc) what the abuse cost.
 *
 *   ctl-flood conns SOCK N      open N connections one after another (those
 *                               emberd refuses and closes are closed here
 *                               too), print "opened K failed F", hold the
 *                               rest until stdin reaches EOF
 *   ctl-flood pipeline SOCK MB  write MB MiB of pipelined vm.list requests
 *                               without reading a reply (stops when emberd
 *                               stops reading for 2 s), print "wrote BYTES",
 *                               hold the connection until stdin reaches EOF
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int
connect_to(const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(sun.sun_path))
		return -ENAMETOOLONG;
	memcpy(sun.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

static void
hold_until_stdin_eof(void)
{
	char buf[256];

	while (read(STDIN_FILENO, buf, sizeof(buf)) > 0)
		;
}

/* Closes the connections emberd refused (answered and hung up), so the
 * client's own descriptors last for many more attempts than it holds. */
static void
close_refused(int *fds, long *n)
{
	long kept = 0;

	for (long i = 0; i < *n; i++) {
		struct pollfd p = { .fd = fds[i], .events = POLLIN };
		if (poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLIN | POLLERR))) {
			close(fds[i]);
			continue;
		}
		fds[kept++] = fds[i];
	}
	*n = kept;
}

static int
flood_conns(const char *path, long n)
{
	long opened = 0, failed = 0, held = 0;
	int last_err = 0, *fds = calloc((size_t)n + 1, sizeof(int));

	if (fds == NULL)
		return 1;
	for (long i = 0; i < n; i++) {
		int fd = connect_to(path);
		if (fd < 0 && (-fd == EMFILE || -fd == ENFILE) && held > 0) {
			close_refused(fds, &held);
			fd = connect_to(path);
		}
		if (fd < 0) {
			failed++;
			last_err = -fd;
			if (-fd == EMFILE || -fd == ENFILE)
				break;	/* our own limit: report what we have */
			continue;
		}
		opened++;
		fds[held++] = fd;
		if (held % 1024 == 0)
			close_refused(fds, &held);
	}
	printf("opened %ld failed %ld%s%s\n", opened, failed, last_err ? " last " : "",
	    last_err ? strerror(last_err) : "");
	fflush(stdout);
	hold_until_stdin_eof();
	for (long i = 0; i < held; i++)
		close(fds[i]);
	free(fds);
	return 0;
}

static int
flood_pipeline(const char *path, long mib)
{
	static const char req[] = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"vm.list\"}\n";
	char chunk[64 * 1024];
	size_t per = sizeof(chunk) / (sizeof(req) - 1), clen = per * (sizeof(req) - 1);
	long long total = 0, want = (long long)mib * 1024 * 1024;
	int fd = connect_to(path);

	if (fd < 0) {
		fprintf(stderr, "ctl-flood: connect %s: %s\n", path, strerror(-fd));
		return 1;
	}
	for (size_t i = 0; i < per; i++)
		memcpy(chunk + i * (sizeof(req) - 1), req, sizeof(req) - 1);
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	while (total < want) {
		struct pollfd p = { .fd = fd, .events = POLLOUT };
		ssize_t w;

		if (poll(&p, 1, 2000) == 0)
			break;	/* emberd stopped reading us: throttled */
		w = write(fd, chunk + (total % (long long)clen), clen - (size_t)(total % (long long)clen));
		if (w < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (w < 0) {
			fprintf(stderr, "ctl-flood: write: %s\n", strerror(errno));
			break;
		}
		total += w;
	}
	printf("wrote %lld\n", total);
	fflush(stdout);
	hold_until_stdin_eof();
	close(fd);
	return 0;
}

int
main(int argc, char **argv)
{
	if (argc == 4 && strcmp(argv[1], "conns") == 0)
		return flood_conns(argv[2], strtol(argv[3], NULL, 10));
	if (argc == 4 && strcmp(argv[1], "pipeline") == 0)
		return flood_pipeline(argv[2], strtol(argv[3], NULL, 10));
	fprintf(stderr, "usage: ctl-flood conns SOCK N | pipeline SOCK MIB\n");
	return 2;
}
