/*
 * vsock connection multiplexer (see vsock-mux.h).
 *
 * Each connection pairs one guest flow (local_port on the host CID, the
 * guest's peer_port) with one Unix socket, and is found by a hash on that
 * pair (keyed with a per-mux random seed, since the guest picks the ports).
 * Packets the connection owes the guest are flags in `pending`; connections
 * with something pending wait in a FIFO served one turn at a time, so a busy
 * connection never starves the others. Host data is read from a Unix socket
 * only when the device has rx buffers for it and the guest has credit, with
 * one readv straight into as many guest buffers as the credit covers; a
 * connection whose read filled them all keeps its turn in the FIFO instead
 * of waiting for the event loop. Guest data goes to the Unix socket
 * directly (consecutive packets of one flow in one writev), and what the
 * socket cannot take waits in a buffer bounded by the window (buf_alloc)
 * the connection advertises, so a slow host reader pauses only its own
 * connection; credit goes back a few times per window, not per packet.
 * Each socket is watched edge-triggered for its whole life, so neither a
 * data turn nor a full socket costs an epoll_ctl.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/event.h>

#include "hybrid-proto.h"
#include "dir-guard.h"
#include "log.h"
#include "platform.h"
#include "vsock-mux.h"

/* A CREDIT_UPDATE goes out when the guest is about to run dry, or once
 * it has used half its window and a quarter of it reached the socket: one
 * per few packets, early enough that a guest sending whole windows never
 * waits a round trip for credit. */
#define CREDIT_UPDATE_THRESHOLD	4096
/* The window (buf_alloc) each connection advertises, and so the most it
 * may buffer: cfg.buf_alloc for up to LARGE_WINDOW_CONNS connections at
 * once, SMALL_WINDOW for the rest (a VM's worst case with the defaults:
 * 1023 * 64 KiB + 64 * 192 KiB = 76 MiB). */
#define DEFAULT_WINDOW		(256u * 1024)
#define SMALL_WINDOW		(64u * 1024)
#define LARGE_WINDOW_CONNS	64
#define RST_FIFO_MAX		256
#define LOCAL_PORT_FIRST	(1u << 30)
#define LOCAL_PORT_END		(1u << 31)
#define HASH_BUCKETS_MAX	65536u
/* One readv: segments, buffers, and bytes (the guest's credit is a u32
 * it chooses). */
#define RX_IOV_MAX		256
#define RX_SLOTS_MAX		128
#define RX_READ_MAX		(512u * 1024)
/* One coalesced guest write: segments. */
#define TX_IOV_MAX		256

/* What a connection owes the guest, in the order it is sent. */
#define P_RST		0x01
#define P_RESPONSE	0x02
#define P_REQUEST	0x04
#define P_RW		0x10
#define P_CREDIT	0x20

enum conn_state {
	CS_HOST_LINE,		/* host client is sending CONNECT <port> */
	CS_HOST_REQUESTING,	/* REQUEST sent to the guest, awaiting RESPONSE */
	CS_PEER_LINE,		/* guest asked for another VM: awaiting its OK line */
	CS_GUEST_CONNECTING,	/* we accepted the guest's REQUEST; RESPONSE pending */
	CS_ESTABLISHED,
	CS_CLOSING,		/* both sides shut; waiting for the guest's RST */
};

struct vconn {
	TAILQ_ENTRY(vconn) all;
	TAILQ_ENTRY(vconn) rxq;
	LIST_ENTRY(vconn) by_flow;	/* hashed on (local_port, peer_port) */
	LIST_ENTRY(vconn) by_local;	/* hashed on local_port */
	bool hashed;			/* ports set and in both tables */
	int flow_slot;			/* ops.flow_open's slot, or -1 */
	bool queued;
	struct vsock_mux *mux;
	enum conn_state state;
	uint32_t local_port, peer_port;
	uint64_t local_cid;	/* the CID the guest addressed: 2, or another VM's */
	int fd;			/* the Unix socket; -1 once closed */
	struct event *rev, *wev, *timer;
	char line[HYBRID_LINE_MAX + 1];
	size_t line_len;
	unsigned pending;

	/* guest -> host: what the guest sent, what reached the socket */
	uint32_t buf_alloc;	/* the window we advertise; fixed for the flow */
	uint32_t tx_cnt, fwd_cnt, last_fwd_cnt_sent;
	uint8_t *txbuf;		/* ring of buf_alloc bytes, lazily */
	size_t tx_head, tx_len;
	/* host -> guest */
	uint32_t peer_buf_alloc, peer_fwd_cnt, rx_cnt;

	bool readable;		/* the socket may hold unread bytes (see rev) */
	bool host_closed;	/* rev saw EV_CLOSED: an EOF waits behind the bytes */
	bool host_eof;		/* the socket said EOF; SHUTDOWN(SEND) queued */
	bool guest_no_send, guest_no_recv;
	bool shut_wr_done;
	bool rst_after_flush;
};

struct rst_entry {
	uint64_t local_cid;
	uint32_t local_port, peer_port;
};

struct vsock_mux {
	struct event_base *base;
	struct vsock_mux_config cfg;
	char *uds_path;
	struct vsock_mux_ops ops;
	void *ctx;
	int listen_fd;
	struct event *accept_ev;
	struct event *rx_kick;		/* defers ops.rx_ready out of our own calls */
	TAILQ_HEAD(, vconn) conns;
	TAILQ_HEAD(, vconn) rx_queue;
	LIST_HEAD(conn_bucket, vconn) *flow_hash, *local_hash;
	uint32_t hash_mask, hash_seed;
	size_t nconns;
	size_t nflows;			/* connections with ports (ops.flow_changed) */
	size_t nlarge;			/* connections advertising a window over SMALL_WINDOW */
	uint64_t bytes_from_guest, bytes_to_guest;	/* payload, for stats */
	uint32_t next_local_port;
	struct rst_entry rsts[RST_FIFO_MAX];
	size_t rst_head, rst_count;
};

static void conn_read_cb(evutil_socket_t fd, short what, void *arg);
static void conn_write_cb(evutil_socket_t fd, short what, void *arg);
static void conn_timer_cb(evutil_socket_t fd, short what, void *arg);

/* ---- wire format ---- */

static uint64_t
get_le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static uint32_t
get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint16_t
get_le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static void
put_le(uint8_t *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++, v >>= 8)
		p[i] = (uint8_t)v;
}

void
vsock_hdr_decode(const uint8_t raw[VSOCK_HDR_SIZE], struct vsock_hdr *h)
{
	h->src_cid = get_le64(raw + 0);
	h->dst_cid = get_le64(raw + 8);
	h->src_port = get_le32(raw + 16);
	h->dst_port = get_le32(raw + 20);
	h->len = get_le32(raw + 24);
	h->type = get_le16(raw + 28);
	h->op = get_le16(raw + 30);
	h->flags = get_le32(raw + 32);
	h->buf_alloc = get_le32(raw + 36);
	h->fwd_cnt = get_le32(raw + 40);
}

void
vsock_hdr_encode(const struct vsock_hdr *h, uint8_t raw[VSOCK_HDR_SIZE])
{
	put_le(raw + 0, h->src_cid, 8);
	put_le(raw + 8, h->dst_cid, 8);
	put_le(raw + 16, h->src_port, 4);
	put_le(raw + 20, h->dst_port, 4);
	put_le(raw + 24, h->len, 4);
	put_le(raw + 28, h->type, 2);
	put_le(raw + 30, h->op, 2);
	put_le(raw + 32, h->flags, 4);
	put_le(raw + 36, h->buf_alloc, 4);
	put_le(raw + 40, h->fwd_cnt, 4);
}

/* ---- connection table ---- */

static uint32_t
hash_mix(uint32_t x)
{
	x ^= x >> 16;
	x *= 0x7feb352du;
	x ^= x >> 15;
	x *= 0x846ca68bu;
	x ^= x >> 16;
	return x;
}

static struct conn_bucket *
flow_bucket(const struct vsock_mux *mux, uint32_t local, uint32_t peer)
{
	return &mux->flow_hash[hash_mix(hash_mix(local ^ mux->hash_seed) + peer) & mux->hash_mask];
}

static struct conn_bucket *
local_bucket(const struct vsock_mux *mux, uint32_t local)
{
	return &mux->local_hash[hash_mix(local ^ mux->hash_seed) & mux->hash_mask];
}

static struct vconn *
conn_find(struct vsock_mux *mux, uint32_t local, uint32_t peer)
{
	struct vconn *c;

	LIST_FOREACH(c, flow_bucket(mux, local, peer), by_flow)
		if (c->local_port == local && c->peer_port == peer)
			return c;
	return NULL;
}

static bool
local_port_used(struct vsock_mux *mux, uint32_t port)
{
	struct vconn *c;

	LIST_FOREACH(c, local_bucket(mux, port), by_local)
		if (c->local_port == port)
			return true;
	return false;
}

/* Names the flow and makes it findable; a connection still reading its
 * CONNECT line has no ports and is in neither table. */
static void
conn_set_ports(struct vconn *c, uint32_t local, uint32_t peer)
{
	struct vsock_mux *mux = c->mux;

	c->local_port = local;
	c->peer_port = peer;
	LIST_INSERT_HEAD(flow_bucket(mux, local, peer), c, by_flow);
	LIST_INSERT_HEAD(local_bucket(mux, local), c, by_local);
	c->hashed = true;
	mux->nflows++;
	if (mux->ops.flow_changed != NULL)
		mux->ops.flow_changed(mux->ctx, true, local, peer, mux->nflows);
}

/* Records the flow for a later emberd to reset (ops.flow_open). */
static void
conn_record_flow(struct vconn *c)
{
	struct vsock_mux *mux = c->mux;

	if (mux->ops.flow_open != NULL && c->flow_slot < 0)
		c->flow_slot = mux->ops.flow_open(mux->ctx, c->local_cid, c->local_port,
		    c->peer_port);
}

/* Table sizes: a power of two near max_connections, so chains stay short. */
static int
conn_tables_new(struct vsock_mux *mux)
{
	uint32_t n = 16;

	while (n < mux->cfg.max_connections && n < HASH_BUCKETS_MAX)
		n <<= 1;
	mux->flow_hash = calloc(n, sizeof(*mux->flow_hash));
	mux->local_hash = calloc(n, sizeof(*mux->local_hash));
	if (mux->flow_hash == NULL || mux->local_hash == NULL)
		return -ENOMEM;
	for (uint32_t i = 0; i < n; i++) {
		LIST_INIT(&mux->flow_hash[i]);
		LIST_INIT(&mux->local_hash[i]);
	}
	mux->hash_mask = n - 1;
	if (getrandom(&mux->hash_seed, sizeof(mux->hash_seed), GRND_NONBLOCK) !=
	    sizeof(mux->hash_seed))
		mux->hash_seed = hash_mix((uint32_t)(uintptr_t)mux ^ (uint32_t)getpid());
	return 0;
}

/* Host-initiated flows get local ports round-robin from 2^30, as
 * Firecracker does, so the OK line's port is distinct per connection. */
static uint32_t
alloc_local_port(struct vsock_mux *mux)
{
	for (uint32_t tries = 0; tries < 4096; tries++) {
		uint32_t port = mux->next_local_port++;
		if (mux->next_local_port >= LOCAL_PORT_END)
			mux->next_local_port = LOCAL_PORT_FIRST;
		if (!local_port_used(mux, port))
			return port;
	}
	return 0;
}

static struct vconn *
conn_new(struct vsock_mux *mux, int fd, enum conn_state state)
{
	struct vconn *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->mux = mux;
	c->fd = fd;
	c->state = state;
	c->local_cid = VSOCK_HOST_CID;
	c->flow_slot = -1;
	c->buf_alloc = mux->cfg.buf_alloc;
	if (c->buf_alloc > SMALL_WINDOW) {
		if (mux->nlarge < LARGE_WINDOW_CONNS)
			mux->nlarge++;
		else
			c->buf_alloc = SMALL_WINDOW;
	}
	/* Both edge-triggered and watched for the connection's whole life:
	 * no epoll_ctl per data turn or per full socket (see
	 * conn_update_read; conn_write_cb finds nothing to do when nothing
	 * is buffered). */
	c->rev = event_new(mux->base, fd, EV_READ | EV_PERSIST | EV_ET | EV_CLOSED, conn_read_cb,
	    c);
	c->wev = event_new(mux->base, fd, EV_WRITE | EV_PERSIST | EV_ET, conn_write_cb, c);
	c->timer = evtimer_new(mux->base, conn_timer_cb, c);
	if (c->rev == NULL || c->wev == NULL || c->timer == NULL) {
		if (c->rev != NULL)
			event_free(c->rev);
		if (c->wev != NULL)
			event_free(c->wev);
		if (c->timer != NULL)
			event_free(c->timer);
		free(c);
		return NULL;
	}
	TAILQ_INSERT_TAIL(&mux->conns, c, all);
	mux->nconns++;
	if (c->buf_alloc > SMALL_WINDOW) {
		/* A socket that can hold a whole window takes the guest's
		 * data directly instead of through txbuf (one copy less per
		 * byte while the host reader lags). The kernel doubles it and
		 * caps it at net.core.wmem_max; failing only costs copies. */
		int sndbuf = (int)c->buf_alloc;
		if (setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)) < 0)
			log_debug("vsock: SO_SNDBUF %d: %s", sndbuf, strerror(errno));
	}
	/* Bytes already queued make an edge as rev is added. */
	event_add(c->rev, NULL);
	event_add(c->wev, NULL);
	return c;
}

static void
conn_close_fd(struct vconn *c)
{
	if (c->fd < 0)
		return;
	event_del(c->rev);
	event_del(c->wev);
	close(c->fd);
	c->fd = -1;
}

static void
conn_free(struct vconn *c)
{
	struct vsock_mux *mux = c->mux;

	conn_close_fd(c);
	if (c->flow_slot >= 0 && mux->ops.flow_close != NULL)
		mux->ops.flow_close(mux->ctx, c->flow_slot);
	if (c->queued)
		TAILQ_REMOVE(&mux->rx_queue, c, rxq);
	if (c->hashed) {
		LIST_REMOVE(c, by_flow);
		LIST_REMOVE(c, by_local);
		mux->nflows--;
		if (mux->ops.flow_changed != NULL)
			mux->ops.flow_changed(mux->ctx, false, c->local_port, c->peer_port,
			    mux->nflows);
	}
	TAILQ_REMOVE(&mux->conns, c, all);
	mux->nconns--;
	if (c->buf_alloc > SMALL_WINDOW)
		mux->nlarge--;
	event_free(c->rev);
	event_free(c->wev);
	event_free(c->timer);
	free(c->txbuf);
	free(c);
}

static void
timer_start(struct vconn *c, unsigned ms)
{
	struct timeval tv = { ms / 1000, (long)(ms % 1000) * 1000 };

	evtimer_add(c->timer, &tv);
}

/* Queues packets for the guest and wakes the rx pump. */
static void
conn_owe(struct vconn *c, unsigned what)
{
	struct vsock_mux *mux = c->mux;

	c->pending |= what;
	if (!c->queued) {
		TAILQ_INSERT_TAIL(&mux->rx_queue, c, rxq);
		c->queued = true;
	}
	event_active(mux->rx_kick, EV_TIMEOUT, 0);
}

/* Ends a flow: the guest gets an RST; the socket closes now. */
static void
conn_reset(struct vconn *c)
{
	conn_close_fd(c);
	evtimer_del(c->timer);
	c->pending = 0;
	conn_owe(c, P_RST);
}

/* Answers the guest packet h with an RST from the address it was sent to. */
static void
mux_queue_rst(struct vsock_mux *mux, const struct vsock_hdr *h)
{
	if (mux->rst_count == RST_FIFO_MAX) {
		log_debug("vsock: RST queue full; dropping an RST to port %u", h->src_port);
		return;
	}
	mux->rsts[(mux->rst_head + mux->rst_count) % RST_FIFO_MAX] =
	    (struct rst_entry){ h->dst_cid, h->dst_port, h->src_port };
	mux->rst_count++;
	event_active(mux->rx_kick, EV_TIMEOUT, 0);
}

/* ---- host socket reading ---- */

static uint32_t
peer_credit(const struct vconn *c)
{
	uint32_t in_flight = c->rx_cnt - c->peer_fwd_cnt;

	return in_flight >= c->peer_buf_alloc ? 0 : c->peer_buf_alloc - in_flight;
}

/* Host data is wanted now: the flow is open that way and the guest has
 * credit. */
static bool
conn_wants_host_data(const struct vconn *c)
{
	return c->fd >= 0 && c->state == CS_ESTABLISHED && !c->host_eof && !c->guest_no_recv &&
	    !(c->pending & P_RW) && peer_credit(c) > 0;
}

/*
 * rev is edge-triggered and stays watched, so nothing is armed or disarmed
 * per data turn: an edge marks the socket readable, and a read that got
 * less than it asked for (or nothing) marks it drained; any byte that
 * arrives after that read makes a new edge. When the guest can take data
 * and the socket is readable, the read callback runs again from the loop
 * (never from inside an rx batch, which would spin on a buffer with no
 * room).
 */
static void
conn_update_read(struct vconn *c)
{
	if ((c->readable || c->host_closed) && conn_wants_host_data(c))
		event_active(c->rev, EV_READ, 1);
}

/* ---- host socket writing ---- */

static void
maybe_credit_update(struct vconn *c)
{
	uint32_t seen_free = c->buf_alloc - (c->tx_cnt - c->last_fwd_cnt_sent);
	uint32_t unsent = c->fwd_cnt - c->last_fwd_cnt_sent;

	if (unsent == 0 || (c->pending & P_CREDIT))
		return;
	if (seen_free < CREDIT_UPDATE_THRESHOLD ||
	    (seen_free < c->buf_alloc / 2 && unsent >= c->buf_alloc / 4))
		conn_owe(c, P_CREDIT);
}

static void
conn_after_flush(struct vconn *c)
{
	if (c->tx_len > 0)
		return;
	if (c->guest_no_send && !c->shut_wr_done && c->fd >= 0) {
		shutdown(c->fd, SHUT_WR);
		c->shut_wr_done = true;
	}
	if (c->rst_after_flush)
		conn_reset(c);
}

static int
tx_append(struct vconn *c, const struct iovec *iov, int niov, size_t skip)
{
	size_t cap = c->buf_alloc;

	if (c->txbuf == NULL && (c->txbuf = malloc(cap)) == NULL)
		return -ENOMEM;
	for (int i = 0; i < niov; i++) {
		const uint8_t *p = iov[i].iov_base;
		size_t n = iov[i].iov_len;
		if (skip >= n) {
			skip -= n;
			continue;
		}
		p += skip;
		n -= skip;
		skip = 0;
		if (c->tx_len + n > cap)
			return -ENOBUFS;	/* the guest ignored our credit */
		/* At most two pieces: up to the end of the ring, then from 0. */
		size_t tail = (c->tx_head + c->tx_len) % cap;
		size_t first = n < cap - tail ? n : cap - tail;
		memcpy(c->txbuf + tail, p, first);
		memcpy(c->txbuf, p + first, n - first);
		c->tx_len += n;
	}
	return 0;
}

static void
conn_flush(struct vconn *c)
{
	size_t cap = c->buf_alloc;

	while (c->tx_len > 0 && c->fd >= 0) {
		size_t chunk = c->tx_len;
		if (c->tx_head + chunk > cap)
			chunk = cap - c->tx_head;
		ssize_t n = send(c->fd, c->txbuf + c->tx_head, chunk, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			if (errno == EAGAIN)
				break;	/* wev's next edge brings us back */
			conn_reset(c);
			return;
		}
		c->tx_head = (c->tx_head + (size_t)n) % cap;
		c->tx_len -= (size_t)n;
		c->fwd_cnt += (uint32_t)n;
	}
	maybe_credit_update(c);
	conn_after_flush(c);
}

/* Guest data for the host socket: straight through while nothing waits,
 * then into the buffer. */
static void
conn_write_guest(struct vconn *c, const struct iovec *iov, int niov, uint32_t len)
{
	size_t sent = 0;

	c->tx_cnt += len;
	c->mux->bytes_from_guest += len;
	if (c->fd < 0)
		return;
	if (c->tx_len == 0) {
		struct msghdr msg = { .msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)niov };
		ssize_t n;
		do
			n = sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
		while (n < 0 && errno == EINTR);
		if (n < 0 && errno != EAGAIN) {
			conn_reset(c);
			return;
		}
		sent = n > 0 ? (size_t)n : 0;
		c->fwd_cnt += (uint32_t)sent;
	}
	if (sent < len) {
		if (tx_append(c, iov, niov, sent) < 0) {
			log_debug("vsock: port %u: guest overran its credit; resetting", c->local_port);
			conn_reset(c);
			return;
		}
		/* The next edge on wev (room in the socket) flushes it. */
	}
	maybe_credit_update(c);
}

static void
conn_write_cb(evutil_socket_t fd, short what, void *arg)
{
	conn_flush(arg);
}

/* ---- CONNECT / OK lines ---- */

/* Reads up to and including '\n' without consuming what follows, so bytes
 * a client pipelines after its line stay in the socket for the guest.
 * 1 when a line is complete, 0 to wait, -1 on EOF, error or overlong. */
static int
conn_read_line(struct vconn *c)
{
	/* Until the socket is empty: rev is edge-triggered, so an EOF
	 * behind a partial line makes no edge of its own. */
	for (;;) {
		char peek[HYBRID_LINE_MAX];
		size_t room = HYBRID_LINE_MAX - c->line_len;
		ssize_t n = recv(c->fd, peek, room, MSG_PEEK | MSG_DONTWAIT);
		char *nl;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN ? 0 : -1;
		if (n == 0)
			return -1;
		nl = memchr(peek, '\n', (size_t)n);
		size_t peeked = (size_t)n;
		size_t take = nl != NULL ? (size_t)(nl - peek) + 1 : peeked;
		n = recv(c->fd, c->line + c->line_len, take, MSG_DONTWAIT);
		if (n != (ssize_t)take)
			return -1;
		c->line_len += take;
		if (nl != NULL) {
			if (peeked > take)
				c->readable = true;	/* bytes pipelined after it */
			c->line[c->line_len - 1] = '\0';
			c->line_len--;
			return 1;
		}
		if (c->line_len >= HYBRID_LINE_MAX)
			return -1;
	}
}

static void
conn_host_line(struct vconn *c)
{
	uint32_t port;
	int r = conn_read_line(c);

	if (r == 0)
		return;
	if (r < 0 || hybrid_parse_connect(c->line, c->line_len, &port) < 0) {
		log_debug("vsock: bad or missing CONNECT line; closing");
		conn_free(c);
		return;
	}
	uint32_t local = alloc_local_port(c->mux);
	if (local == 0) {
		conn_free(c);
		return;
	}
	conn_set_ports(c, local, port);
	conn_record_flow(c);
	c->state = CS_HOST_REQUESTING;	/* nothing more is read before the guest accepts */
	timer_start(c, c->mux->cfg.request_timeout_ms);
	conn_owe(c, P_REQUEST);
}

static void
conn_peer_line(struct vconn *c)
{
	int r = conn_read_line(c);

	if (r == 0)
		return;
	if (r < 0 || c->line_len < 3 || strncmp(c->line, "OK ", 3) != 0) {
		conn_reset(c);	/* the other VM refused */
		return;
	}
	evtimer_del(c->timer);
	c->state = CS_GUEST_CONNECTING;
	conn_owe(c, P_RESPONSE);
}

static void
conn_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct vconn *c = arg;

	if (what & EV_CLOSED)
		c->host_closed = true;	/* sticky: edges do not repeat */
	switch (c->state) {
	case CS_HOST_LINE:
		conn_host_line(c);
		return;
	case CS_PEER_LINE:
		conn_peer_line(c);
		return;
	default:
		/* Host data: read it when the device has an rx buffer and the
		 * guest credit; until the flow is open, only noted. */
		c->readable = true;
		if (conn_wants_host_data(c))
			conn_owe(c, P_RW);
		return;
	}
}

static void
conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct vconn *c = arg;

	switch (c->state) {
	case CS_HOST_LINE:
		log_debug("vsock: no CONNECT line in time; closing");
		conn_free(c);
		return;
	case CS_HOST_REQUESTING:
		log_debug("vsock: guest did not answer a connection to port %u", c->peer_port);
		conn_reset(c);
		return;
	default:
		conn_reset(c);
		return;
	}
}

/* ---- accepting host clients ---- */

static void
mux_accept_cb(evutil_socket_t lfd, short what, void *arg)
{
	struct vsock_mux *mux = arg;
	struct vconn *c;
	int fd;

	while ((fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK)) >= 0) {
		if (mux->nconns >= mux->cfg.max_connections ||
		    (c = conn_new(mux, fd, CS_HOST_LINE)) == NULL) {
			log_debug("vsock: connection limit reached; refusing a host client");
			close(fd);
			continue;
		}
		timer_start(c, mux->cfg.connect_line_timeout_ms);
	}
}

/* ---- guest packets ---- */

static void
guest_request(struct vsock_mux *mux, const struct vsock_hdr *h)
{
	char path[256];
	struct vconn *c;
	bool to_peer = h->dst_cid != VSOCK_HOST_CID;
	uid_t expect;
	int fd;

	if (mux->nconns >= mux->cfg.max_connections) {
		mux_queue_rst(mux, h);
		return;
	}
	if (to_peer) {
		if (mux->ops.peer_socket == NULL ||
		    mux->ops.peer_socket(mux->ctx, h->dst_cid, path, sizeof(path)) < 0) {
			mux_queue_rst(mux, h);
			return;
		}
	} else
		snprintf(path, sizeof(path), "%s_%u", mux->uds_path, h->dst_port);
	/* Non-blocking: nobody listening means an immediate reset. The VM's
	 * owner may write in the directory: a guest reaches only a socket the
	 * owner bound there itself, and another VM only through the socket
	 * emberd's user bound (see dir-guard.c). */
	expect = to_peer ? geteuid() : mux->cfg.owner_uid;
	fd = guard_unix_connect(path, expect);
	if (fd < 0) {
		if (fd == -EPERM)
			log_debug("vsock: guest connection to %s refused: not a socket of uid %u",
			    path, (unsigned)expect);
		else
			log_debug("vsock: guest connection to %s: %s", path, strerror(-fd));
		mux_queue_rst(mux, h);
		return;
	}
	c = conn_new(mux, fd, to_peer ? CS_PEER_LINE : CS_GUEST_CONNECTING);
	if (c == NULL) {
		close(fd);
		mux_queue_rst(mux, h);
		return;
	}
	conn_set_ports(c, h->dst_port, h->src_port);
	c->local_cid = h->dst_cid;	/* a guest drops packets from any other CID */
	conn_record_flow(c);
	c->peer_buf_alloc = h->buf_alloc;
	c->peer_fwd_cnt = h->fwd_cnt;
	if (to_peer) {
		char line[HYBRID_LINE_MAX];
		int n = snprintf(line, sizeof(line), "CONNECT %u\n", h->dst_port);
		if (send(fd, line, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) != n) {
			conn_reset(c);
			return;
		}
		timer_start(c, mux->cfg.request_timeout_ms);
		return;
	}
	conn_owe(c, P_RESPONSE);
}

static void
guest_shutdown(struct vconn *c, uint32_t flags)
{
	if (flags & VSOCK_SHUTDOWN_SEND)
		c->guest_no_send = true;
	if (flags & VSOCK_SHUTDOWN_RCV) {
		c->guest_no_recv = true;
		c->pending &= ~(unsigned)P_RW;
	}
	if (c->guest_no_send && (c->guest_no_recv || c->host_eof)) {
		/* The guest is done both ways: RST once its data is out. */
		if (c->tx_len == 0)
			conn_reset(c);
		else {
			c->rst_after_flush = true;
			c->state = CS_CLOSING;
			timer_start(c, c->mux->cfg.shutdown_timeout_ms);
		}
		return;
	}
	conn_after_flush(c);	/* half-close the socket once drained */
	conn_update_read(c);
}

void
vsock_mux_guest_packet(struct vsock_mux *mux, const struct vsock_hdr *h,
    const struct iovec *payload, int niov)
{
	struct vconn *c = conn_find(mux, h->dst_port, h->src_port);

	if (h->type != VSOCK_TYPE_STREAM) {
		if (h->op != VSOCK_OP_RST)
			mux_queue_rst(mux, h);
		return;
	}
	if (c == NULL) {
		if (h->op == VSOCK_OP_REQUEST)
			guest_request(mux, h);
		else if (h->op != VSOCK_OP_RST)
			mux_queue_rst(mux, h);
		return;
	}
	if (c->pending & P_RST)
		return;	/* already being reset */
	c->peer_buf_alloc = h->buf_alloc;
	c->peer_fwd_cnt = h->fwd_cnt;

	switch (h->op) {
	case VSOCK_OP_RST:
		conn_free(c);
		return;
	case VSOCK_OP_RESPONSE:
		if (c->state != CS_HOST_REQUESTING) {
			conn_reset(c);
			return;
		}
		evtimer_del(c->timer);
		c->state = CS_ESTABLISHED;
		{
			/* The OK line goes out before any guest byte. A fresh
			 * socket always has room for 14 bytes; if not, give up. */
			char ok[32];
			int n = hybrid_format_ok(c->local_port, ok, sizeof(ok));
			if (send(c->fd, ok, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) != n) {
				conn_reset(c);
				return;
			}
		}
		break;
	case VSOCK_OP_REQUEST:
		conn_reset(c);	/* a second REQUEST on a live flow */
		return;
	case VSOCK_OP_RW:
		if (c->state != CS_ESTABLISHED && c->state != CS_CLOSING) {
			conn_reset(c);
			return;
		}
		if (h->len > 0 && !c->guest_no_send)
			conn_write_guest(c, payload, niov, h->len);
		break;
	case VSOCK_OP_SHUTDOWN:
		guest_shutdown(c, h->flags);
		return;
	case VSOCK_OP_CREDIT_REQUEST:
		conn_owe(c, P_CREDIT);
		break;
	case VSOCK_OP_CREDIT_UPDATE:
	default:
		break;
	}
	conn_update_read(c);
}

/* A data packet that may share a writev with the one before it. */
static bool
same_flow_data(const struct vsock_hdr *a, const struct vsock_hdr *b)
{
	return b->op == VSOCK_OP_RW && b->type == VSOCK_TYPE_STREAM && b->len > 0 &&
	    a->dst_port == b->dst_port && a->src_port == b->src_port &&
	    a->dst_cid == b->dst_cid && a->src_cid == b->src_cid;
}

/*
 * Consecutive data packets of one flow are one write of their summed
 * length, carrying the last packet's credit fields: per packet, nothing in
 * between could change the outcome (a failed write resets the flow, and a
 * flow being reset ignores the rest of the run either way).
 */
void
vsock_mux_guest_packets(struct vsock_mux *mux, const struct vsock_tx_pkt *pkts, int n)
{
	struct iovec vec[TX_IOV_MAX];

	for (int i = 0; i < n;) {
		const struct vsock_hdr *first = &pkts[i].hdr;
		struct vsock_hdr merged;
		int j = i + 1, nvec;

		if (first->op != VSOCK_OP_RW || first->type != VSOCK_TYPE_STREAM ||
		    first->len == 0 || j == n || !same_flow_data(first, &pkts[j].hdr)) {
			vsock_mux_guest_packet(mux, first, pkts[i].payload, pkts[i].niov);
			i = j;
			continue;
		}
		merged = *first;
		merged.len = 0;
		nvec = 0;
		for (j = i; j < n && same_flow_data(first, &pkts[j].hdr) &&
		    nvec + pkts[j].niov <= TX_IOV_MAX &&
		    merged.len + pkts[j].hdr.len >= merged.len; j++) {
			memcpy(vec + nvec, pkts[j].payload, (size_t)pkts[j].niov * sizeof(*vec));
			nvec += pkts[j].niov;
			merged.len += pkts[j].hdr.len;
			merged.buf_alloc = pkts[j].hdr.buf_alloc;
			merged.fwd_cnt = pkts[j].hdr.fwd_cnt;
			merged.flags = pkts[j].hdr.flags;
		}
		if (j == i) {	/* one packet with more segments than fit */
			vsock_mux_guest_packet(mux, first, pkts[i].payload, pkts[i].niov);
			j = i + 1;
		} else
			vsock_mux_guest_packet(mux, &merged, vec, nvec);
		i = j;
	}
}

/* ---- packets for the guest ---- */

bool
vsock_mux_has_rx(const struct vsock_mux *mux)
{
	return mux->rst_count > 0 || !TAILQ_EMPTY(&mux->rx_queue);
}

static void
hdr_for(const struct vsock_mux *mux, const struct vconn *c, uint32_t local, uint32_t peer,
    struct vsock_hdr *h, uint16_t op)
{
	memset(h, 0, sizeof(*h));
	h->src_cid = c != NULL ? c->local_cid : VSOCK_HOST_CID;
	h->dst_cid = mux->cfg.guest_cid;
	h->src_port = local;
	h->dst_port = peer;
	h->type = VSOCK_TYPE_STREAM;
	h->op = op;
	if (c != NULL) {
		h->buf_alloc = c->buf_alloc;
		h->fwd_cnt = c->fwd_cnt;
	}
}

static void
done_ctl(struct vsock_mux *mux, struct vconn *c, struct vsock_rx_done *d, uint16_t op)
{
	hdr_for(mux, c, c->local_port, c->peer_port, &d->hdr, op);
	d->len = 0;
}

/*
 * Gives back the taken slots [from, to) of a data turn that carried no
 * data, last first. A slot the source cannot take back (the device only
 * guarantees that for the latest) carries a CREDIT_UPDATE instead, and so
 * do the slots before it. Returns how many slots from `from` were filled.
 */
static int
give_back(struct vsock_mux *mux, struct vconn *c, const struct vsock_rx_source *src,
    struct vsock_rx_done *done, int from, int to)
{
	int k = to;

	while (k > from && src->untake(src->ctx, k - 1))
		k--;
	for (int i = from; i < k; i++)
		done_ctl(mux, c, &done[i], VSOCK_OP_CREDIT_UPDATE);
	return k - from;
}

/*
 * A data turn: one readv from c's socket into the payload parts of the
 * buffer in slot `first` and of as many more as the guest's credit covers
 * (taken from src as needed), then one RW packet per buffer that got
 * bytes. *rr is readv's result (-1 would block, -2 failed, 0 EOF); returns
 * the slots filled from `first`, 0 when none (slot `first` is still taken,
 * the ones after it were given back).
 */
static int
conn_rx_data(struct vsock_mux *mux, struct vconn *c, const struct vsock_rx_source *src,
    struct vsock_rx_done *done, int first, int max, const struct iovec *iov, int niov,
    ssize_t *rr)
{
	static struct iovec vec[RX_IOV_MAX];	/* the loop is single-threaded */
	size_t room[RX_SLOTS_MAX];
	size_t want = peer_credit(c), got = 0, left;
	int nvec = 0, slots = 0, k;
	ssize_t r;

	if (want > RX_READ_MAX)
		want = RX_READ_MAX;
	if (max - first > RX_SLOTS_MAX)
		max = first + RX_SLOTS_MAX;
	for (;;) {
		size_t slot_room = 0;

		for (int i = 0; i < niov && nvec < RX_IOV_MAX && got < want &&
		    slot_room < VSOCK_MAX_PAYLOAD; i++) {
			size_t len = iov[i].iov_len;
			if (len > want - got)
				len = want - got;
			if (len > VSOCK_MAX_PAYLOAD - slot_room)
				len = VSOCK_MAX_PAYLOAD - slot_room;
			if (len == 0)
				continue;
			vec[nvec++] = (struct iovec){ iov[i].iov_base, len };
			got += len;
			slot_room += len;
		}
		if (slot_room == 0 && slots > 0) {
			/* A buffer with no payload room ends the run; it is
			 * the latest taken, so it always goes back. */
			src->untake(src->ctx, first + slots);
			break;
		}
		if (slot_room == 0) {
			/* No room (or no credit) in the first: no data turn. */
			*rr = -1;
			return 0;
		}
		room[slots++] = slot_room;
		if (got >= want || nvec >= RX_IOV_MAX || first + slots >= max ||
		    src->take(src->ctx, first + slots, &iov, &niov) < 0)
			break;
	}
	if (got == 0) {
		*rr = -1;
		return 0;
	}
	do
		r = readv(c->fd, vec, nvec);
	while (r < 0 && errno == EINTR);
	*rr = r < 0 ? (errno == EAGAIN ? -1 : -2) : r;
	/* Drained: the next byte makes an edge. Not so an EOF that came
	 * with the bytes just read (one edge for both): then the next read
	 * finds it. */
	if (*rr == -1 || (r > 0 && (size_t)r < got && !c->host_closed))
		c->readable = false;
	if (r <= 0) {
		/* Nothing read: slot `first` may still carry SHUTDOWN or RST. */
		k = give_back(mux, c, src, done, first + 1, first + slots);
		if (k > 0 || (*rr == -1 && slots > 1)) {
			/* Stuck slots after `first`: it must be filled too. So
			 * must it when the ones after it went back: a chain the
			 * device dropped between them means `first` is no
			 * longer the latest it can take back. */
			done_ctl(mux, c, &done[first], VSOCK_OP_CREDIT_UPDATE);
			*rr = -3;
			return k + 1;
		}
		return 0;
	}
	left = (size_t)r;
	mux->bytes_to_guest += (uint64_t)r;
	for (k = 0; k < slots && left > 0; k++) {
		size_t len = left < room[k] ? left : room[k];
		done_ctl(mux, c, &done[first + k], VSOCK_OP_RW);
		done[first + k].hdr.len = (uint32_t)len;
		done[first + k].len = (uint32_t)len;
		c->rx_cnt += (uint32_t)len;
		left -= len;
	}
	k += give_back(mux, c, src, done, first + k, first + slots);
	/* All it asked for: more is likely waiting; keep the turn. */
	if ((size_t)r == got && peer_credit(c) > 0)
		c->pending |= P_RW;
	return k;
}

/* Fills slot n (and, for host data, the slots after it) with the next
 * packets for the guest. Returns the slots filled; 0 when nothing was
 * produced after all (slot n is still taken). */
static int
mux_rx_next(struct vsock_mux *mux, const struct vsock_rx_source *src, struct vsock_rx_done *done,
    int n, int max, const struct iovec *iov, int niov)
{
	struct vconn *c;

	if (mux->rst_count > 0) {
		struct rst_entry e = mux->rsts[mux->rst_head];
		mux->rst_head = (mux->rst_head + 1) % RST_FIFO_MAX;
		mux->rst_count--;
		hdr_for(mux, NULL, e.local_port, e.peer_port, &done[n].hdr, VSOCK_OP_RST);
		done[n].hdr.src_cid = e.local_cid;
		done[n].len = 0;
		return 1;
	}
	while ((c = TAILQ_FIRST(&mux->rx_queue)) != NULL) {
		struct vsock_rx_done *d = &done[n];
		int filled = 0;

		TAILQ_REMOVE(&mux->rx_queue, c, rxq);
		c->queued = false;
		if (c->pending & P_RST) {
			done_ctl(mux, c, d, VSOCK_OP_RST);
			conn_free(c);
			return 1;
		}
		if (c->pending & P_RESPONSE) {
			c->pending &= ~(unsigned)P_RESPONSE;
			done_ctl(mux, c, d, VSOCK_OP_RESPONSE);
			c->state = CS_ESTABLISHED;
			filled = 1;
		} else if (c->pending & P_REQUEST) {
			c->pending &= ~(unsigned)P_REQUEST;
			done_ctl(mux, c, d, VSOCK_OP_REQUEST);
			filled = 1;
		} else if (c->pending & P_RW) {
			ssize_t r = -1;

			c->pending &= ~(unsigned)P_RW;
			if (c->fd >= 0)
				filled = conn_rx_data(mux, c, src, done, n, max, iov, niov, &r);
			if (filled > 0) {
				/* data, or credit updates in slots that could not go back */
			} else if (r == 0 && c->guest_no_send && c->tx_len == 0) {
				/* Both directions are finished: end the flow. */
				done_ctl(mux, c, d, VSOCK_OP_RST);
				conn_free(c);
				return 1;
			} else if (r == 0) {
				/* Host EOF: tell the guest we send no more. */
				c->host_eof = true;
				done_ctl(mux, c, d, VSOCK_OP_SHUTDOWN);
				d->hdr.flags = VSOCK_SHUTDOWN_SEND;
				filled = 1;
			} else if (r == -2) {
				conn_reset(c);
				continue;
			}
		} else if (c->pending & P_CREDIT) {
			c->pending &= ~(unsigned)P_CREDIT;
			done_ctl(mux, c, d, VSOCK_OP_CREDIT_UPDATE);
			filled = 1;
		}
		if (filled > 0)
			c->pending &= ~(unsigned)P_CREDIT;	/* these packets carry fwd_cnt too */
		if (c->pending != 0) {
			TAILQ_INSERT_TAIL(&mux->rx_queue, c, rxq);
			c->queued = true;
		}
		if (filled > 0)
			c->last_fwd_cnt_sent = c->fwd_cnt;
		conn_update_read(c);
		if (filled > 0)
			return filled;
	}
	return 0;
}

int
vsock_mux_fill_rx_batch(struct vsock_mux *mux, const struct vsock_rx_source *src,
    struct vsock_rx_done *done, int max)
{
	int n = 0;

	while (n < max && vsock_mux_has_rx(mux)) {
		const struct iovec *iov;
		int niov, k;

		if (src->take(src->ctx, n, &iov, &niov) < 0)
			break;
		k = mux_rx_next(mux, src, done, n, max, iov, niov);
		if (k == 0) {
			src->untake(src->ctx, n);	/* the latest: always possible */
			break;
		}
		n += k;
	}
	return n;
}

/* A source of exactly one buffer, for vsock_mux_fill_rx. */
struct one_buffer {
	const struct iovec *iov;
	int niov;
	bool taken;
};

static int
one_take(void *ctx, int slot, const struct iovec **iov, int *niov)
{
	struct one_buffer *b = ctx;

	if (b->taken)
		return -1;
	b->taken = true;
	*iov = b->iov;
	*niov = b->niov;
	return 0;
}

static bool
one_untake(void *ctx, int slot)
{
	struct one_buffer *b = ctx;

	b->taken = false;
	return true;
}

int
vsock_mux_fill_rx(struct vsock_mux *mux, struct vsock_hdr *h, const struct iovec *iov, int niov)
{
	struct one_buffer b = { iov, niov, false };
	struct vsock_rx_source src = { one_take, one_untake, &b };
	struct vsock_rx_done done;

	if (vsock_mux_fill_rx_batch(mux, &src, &done, 1) != 1)
		return -1;
	*h = done.hdr;
	return (int)done.len;
}

/* ---- lifetime ---- */

static void
mux_rx_kick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct vsock_mux *mux = arg;

	if (vsock_mux_has_rx(mux))
		mux->ops.rx_ready(mux->ctx);
}

static int
mux_listen(struct vsock_mux *mux)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	mode_t old;
	int fd, r;

	if (mux->cfg.take_listen_fd) {
		/* An earlier emberd's listener: clients queued in its backlog
		 * meanwhile are served now. */
		mux->listen_fd = mux->cfg.listen_fd;
		return 0;
	}
	if (strlen(mux->uds_path) >= sizeof(sun.sun_path))
		return -ENAMETOOLONG;
	memcpy(sun.sun_path, mux->uds_path, strlen(mux->uds_path) + 1);
	unlink(mux->uds_path);	/* a stale socket of an earlier run */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	old = umask(0177);
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 || listen(fd, 128) < 0) {
		int e = errno;
		umask(old);
		close(fd);
		return -e;
	}
	umask(old);
	/* Still root's (the owner cannot swap it in the sticky directory);
	 * the owner connects through its ACL entry. */
	if ((r = guard_grant(mux->uds_path, mux->cfg.owner_uid, GUARD_R | GUARD_W)) < 0)
		log_debug("vsock: cannot let uid %u connect to %s: %s",
		    (unsigned)mux->cfg.owner_uid, mux->uds_path, strerror(-r));
	mux->listen_fd = fd;
	return 0;
}

struct vsock_mux *
vsock_mux_new(struct event_base *base, const struct vsock_mux_config *cfg,
    const struct vsock_mux_ops *ops, void *ctx)
{
	struct vsock_mux *mux = calloc(1, sizeof(*mux));
	int r;

	if (mux == NULL)
		return NULL;
	mux->base = base;
	mux->cfg = *cfg;
	if (mux->cfg.request_timeout_ms == 0)
		mux->cfg.request_timeout_ms = 2000;
	if (mux->cfg.shutdown_timeout_ms == 0)
		mux->cfg.shutdown_timeout_ms = 2000;
	if (mux->cfg.connect_line_timeout_ms == 0)
		mux->cfg.connect_line_timeout_ms = 5000;
	if (mux->cfg.max_connections == 0)
		mux->cfg.max_connections = 1023;
	if (mux->cfg.buf_alloc == 0)
		mux->cfg.buf_alloc = DEFAULT_WINDOW;
	mux->uds_path = strdup(cfg->uds_path);
	mux->cfg.uds_path = mux->uds_path;
	mux->ops = *ops;
	mux->ctx = ctx;
	mux->listen_fd = -1;
	mux->next_local_port = LOCAL_PORT_FIRST;
	TAILQ_INIT(&mux->conns);
	TAILQ_INIT(&mux->rx_queue);
	if (mux->uds_path == NULL || (r = conn_tables_new(mux)) < 0 ||
	    (r = mux_listen(mux)) < 0) {
		r = mux->uds_path == NULL ? -ENOMEM : r;
		free(mux->flow_hash);
		free(mux->local_hash);
		free(mux->uds_path);
		free(mux);
		errno = -r;
		return NULL;
	}
	mux->accept_ev = event_new(base, mux->listen_fd, EV_READ | EV_PERSIST, mux_accept_cb, mux);
	mux->rx_kick = event_new(base, -1, 0, mux_rx_kick_cb, mux);
	event_add(mux->accept_ev, NULL);
	return mux;
}

void
vsock_mux_reset(struct vsock_mux *mux)
{
	struct vconn *c;

	while ((c = TAILQ_FIRST(&mux->conns)) != NULL)
		conn_free(c);
	mux->rst_count = 0;
}

int
vsock_mux_reset_flow(struct vsock_mux *mux, uint64_t local_cid, uint32_t local_port,
    uint32_t peer_port)
{
	struct vsock_hdr h = { .src_cid = mux->cfg.guest_cid, .dst_cid = local_cid,
	    .src_port = peer_port, .dst_port = local_port };

	if (mux->rst_count == RST_FIFO_MAX)
		return -ENOBUFS;
	mux_queue_rst(mux, &h);
	return 0;
}

int
vsock_mux_listen_fd(const struct vsock_mux *mux)
{
	return mux->listen_fd;
}

/* Resets every connection and frees mux; unlinks its socket path only when
 * the listener is not handed on to the next emberd. */
static void
mux_release(struct vsock_mux *mux, bool remove_socket)
{
	vsock_mux_reset(mux);
	if (mux->accept_ev != NULL)
		event_free(mux->accept_ev);
	if (mux->rx_kick != NULL)
		event_free(mux->rx_kick);
	if (mux->listen_fd >= 0)
		close(mux->listen_fd);
	if (remove_socket)
		unlink(mux->uds_path);
	free(mux->flow_hash);
	free(mux->local_hash);
	free(mux->uds_path);
	free(mux);
}

void
vsock_mux_detach(struct vsock_mux *mux)
{
	struct vconn *c;

	if (mux == NULL)
		return;
	/* The flows stay recorded: the next emberd resets them. */
	TAILQ_FOREACH(c, &mux->conns, all)
		c->flow_slot = -1;
	mux_release(mux, false);
}

void
vsock_mux_free(struct vsock_mux *mux)
{
	if (mux == NULL)
		return;
	mux_release(mux, true);
}

size_t
vsock_mux_connection_count(const struct vsock_mux *mux)
{
	return mux->nconns;
}

void
vsock_mux_stats(const struct vsock_mux *mux, struct vsock_mux_stats *st)
{
	st->bytes_from_guest = mux->bytes_from_guest;
	st->bytes_to_guest = mux->bytes_to_guest;
	st->connections = mux->nconns;
}
