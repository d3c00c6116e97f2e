/*
 * libFuzzer harness for the vsock connection multiplexer: the input is a
 * stream of guest packets (44-byte headers, each followed by as much payload
 * as the header claims and the input holds), fed to the mux the way the
 * device feeds tx packets, with rx buffers drained between them. A guest
 * port listener exists for port 5000 so REQUESTs can also establish flows.
 * The CONNECT line parser gets the first bytes too. Nothing a guest sends
 * may crash, hang or leak.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/event.h>

#include "fsutil.h"

#include "../../platform/linux/hybrid-proto.c"
#include "../../platform/linux/platform-linux.c"
#include "../../platform/linux/dir-guard.c"
#include "../../platform/linux/vsock-mux.c"

static struct event_base *base;
static struct vsock_mux *mux;
static int listen_fd = -1;

static void
on_rx_ready(void *ctx)
{
}

static int
on_peer(void *ctx, uint64_t cid, char *path, size_t len)
{
	return -ENOENT;
}

static const struct vsock_mux_ops ops = { .rx_ready = on_rx_ready, .peer_socket = on_peer };

static char dir[] = "/tmp/ember-fuzz-mux-XXXXXX";

static void
remove_dir(void)
{
	rm_rf(dir);
}

static void
init_once(void)
{
	char uds[128], port[160];
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct vsock_mux_config cfg = { .guest_cid = 3, .max_connections = 64 };

	if (mkdtemp(dir) == NULL)
		abort();
	atexit(remove_dir);
	snprintf(uds, sizeof(uds), "%s/vsock.sock", dir);
	cfg.uds_path = uds;
	base = event_base_new();
	mux = vsock_mux_new(base, &cfg, &ops, NULL);
	if (base == NULL || mux == NULL)
		abort();
	snprintf(port, sizeof(port), "%s_5000", uds);
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", port);
	listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 ||
	    listen(listen_fd, 256) < 0)
		abort();
}

static void
drain_rx(void)
{
	static uint8_t buf[4096];
	struct vsock_hdr h;

	event_base_loop(base, EVLOOP_NONBLOCK);
	for (int i = 0; i < 64 && vsock_mux_has_rx(mux); i++) {
		struct iovec iov = { buf, sizeof(buf) };
		if (vsock_mux_fill_rx(mux, &h, &iov, 1) < 0)
			break;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t off = 0;
	uint32_t port;
	int fd;

	if (mux == NULL)
		init_once();
	hybrid_parse_connect((const char *)data, size < 40 ? size : 40, &port);
	while (size - off >= VSOCK_HDR_SIZE) {
		struct vsock_hdr h;
		struct iovec iov;

		vsock_hdr_decode(data + off, &h);
		off += VSOCK_HDR_SIZE;
		h.src_cid = 3;	/* the device drops anything else before the mux */
		if (h.len > VSOCK_MAX_PAYLOAD || h.len > size - off)
			h.len = (uint32_t)(size - off);
		iov.iov_base = (void *)(data + off);
		iov.iov_len = h.len;
		vsock_mux_guest_packet(mux, &h, &iov, h.len ? 1 : 0);
		off += h.len;
		drain_rx();
	}
	/* Forget this input's flows and the host ends they opened. */
	vsock_mux_reset(mux);
	while ((fd = accept(listen_fd, NULL, NULL)) >= 0)
		close(fd);
	return 0;
}
