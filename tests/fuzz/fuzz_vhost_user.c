/*
 * libFuzzer harness for the vhost-user message reader and dispatcher: the
 * input is a byte stream from the frontend (no fds), written into a
 * socketpair and read by the session until EOF. It includes the platform
 * sources directly and stands in a tiny libevent (events are never run;
 * the harness calls the reader itself), so it links with ember-common
 * alone. Replies are drained so the session never sees back-pressure.
 */
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

/* Just enough of libevent for vhost-user.c. */
struct event {
	evutil_socket_t		fd;
	short			what;
	event_callback_fn	cb;
	void			*arg;
};

struct event *
event_new(struct event_base *b, evutil_socket_t fd, short what, event_callback_fn cb, void *arg)
{
	struct event *ev = calloc(1, sizeof(*ev));

	if (ev != NULL) {
		ev->fd = fd;
		ev->what = what;
		ev->cb = cb;
		ev->arg = arg;
	}
	return ev;
}

void
event_free(struct event *ev)
{
	free(ev);
}

int
event_add(struct event *ev, const struct timeval *tv)
{
	return 0;
}

int
event_del(struct event *ev)
{
	return 0;
}

#include "../../platform/linux/guest-mem.c"
#include "../../platform/linux/virtq.c"
#include "../../platform/linux/vhost-user.c"

static void
drain(int fd)
{
	uint8_t buf[4096];

	while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
		;
}

static int
pending(int fd)
{
	int n = 0;

	if (fd < 0 || ioctl(fd, FIONREAD, &n) != 0)
		return 0;
	return n;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vu_dev *dev;
	int sv[2];

	if (size > 128 * 1024)
		return 0;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
		abort();
	/* Big enough buffers that the whole input fits in one write. */
	setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &(int){ 512 * 1024 }, sizeof(int));
	if ((dev = vu_dev_new(NULL, sv[0], 3, NULL, NULL)) == NULL)
		abort();
	if (size > 0 && write(sv[1], data, size) != (ssize_t)size)
		abort();
	shutdown(sv[1], SHUT_WR);
	for (int i = 0; i < 100000 && dev->connected; i++) {
		vu_read_cb(dev->fd, EV_READ, dev);
		drain(sv[1]);
		if (dev->connected && pending(dev->fd) == 0) {
			/* Only EOF is left: one more read sees it. */
			vu_read_cb(dev->fd, EV_READ, dev);
		}
	}
	if (dev->connected)
		abort();	/* EOF must end the session */
	vu_dev_free(dev);
	close(sv[1]);
	return 0;
}
