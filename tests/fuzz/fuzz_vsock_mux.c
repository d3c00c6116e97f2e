/*
 * libFuzzer harness for the vsock connection multiplexer: the input is a
 * stream of guest packets (44-byte headers, each followed by as much payload
 * as the header claims and the input holds), fed to the mux in batches the
 * way the device feeds a tx ring pass, with rx buffers drained in batches
 * between them (some refused on give-back, as a real ring may). A guest
 * port listener exists for port 5000 so REQUESTs can also establish flows.
 * The CONNECT line parser gets the first bytes too. Nothing a guest sends
 * may crash, hang or leak.
 */
#include <stdbool.h>
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

/* A fake rx ring for fill_rx_batch: buffers of mixed sizes; when refuse is
 * set, only the newest buffer taken can go back (as on a real ring with a
 * dropped chain in between). */
struct ring {
	uint8_t mem[8][4096];
	struct iovec iov[8];
	int taken, untakes;
	bool refuse;
};

static int
ring_take(void *ctx, int slot, const struct iovec **iov, int *niov)
{
	struct ring *r = ctx;

	if (slot >= 8)
		return -1;
	r->iov[slot] = (struct iovec){ r->mem[slot], slot % 3 == 2 ? 60 : 4096 };
	*iov = &r->iov[slot];
	*niov = 1;
	r->taken = slot + 1;
	r->untakes = 0;
	return 0;
}

static bool
ring_untake(void *ctx, int slot)
{
	struct ring *r = ctx;

	if (slot != r->taken - 1)
		abort();	/* the mux gives back newest first */
	if (r->refuse && r->untakes > 0)
		return false;
	r->taken--;
	r->untakes++;
	return true;
}

static void
drain_rx(bool refuse)
{
	static struct ring r;
	struct vsock_rx_source src = { ring_take, ring_untake, &r };
	struct vsock_rx_done done[8];

	r.refuse = refuse;
	event_base_loop(base, EVLOOP_NONBLOCK);
	for (int i = 0; i < 16 && vsock_mux_has_rx(mux); i++) {
		int n = vsock_mux_fill_rx_batch(mux, &src, done, 8);
		if (n != r.taken)
			abort();	/* every taken buffer is filled or given back */
		for (int k = 0; k < n; k++)
			if (done[k].len > r.iov[k].iov_len || done[k].len != done[k].hdr.len)
				abort();
		if (n == 0)
			break;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vsock_tx_pkt pkts[8];
	struct iovec iov[8];
	size_t off = 0;
	uint32_t port;
	bool refuse = size > 0 && (data[0] & 1);
	int np = 0, fd;

	if (mux == NULL)
		init_once();
	hybrid_parse_connect((const char *)data, size < 40 ? size : 40, &port);
	/* Packets go in batches of up to 8, as a tx ring pass hands them over. */
	while (size - off >= VSOCK_HDR_SIZE) {
		struct vsock_hdr *h = &pkts[np].hdr;

		vsock_hdr_decode(data + off, h);
		off += VSOCK_HDR_SIZE;
		h->src_cid = 3;	/* the device drops anything else before the mux */
		if (h->len > VSOCK_MAX_PAYLOAD || h->len > size - off)
			h->len = (uint32_t)(size - off);
		iov[np] = (struct iovec){ (void *)(data + off), h->len };
		pkts[np].payload = &iov[np];
		pkts[np].niov = h->len ? 1 : 0;
		off += h->len;
		if (++np == 8 || size - off < VSOCK_HDR_SIZE || (h->flags & 0x80000000u)) {
			vsock_mux_guest_packets(mux, pkts, np);
			np = 0;
			drain_rx(refuse);
		}
	}
	/* Forget this input's flows and the host ends they opened. */
	vsock_mux_reset(mux);
	while ((fd = accept(listen_fd, NULL, NULL)) >= 0)
		close(fd);
	return 0;
}
