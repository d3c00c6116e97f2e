/*
 * vsock connection multiplexer (see vsock-mux.h).
 *
 * Each connection pairs one guest flow (local_port on the host CID, the
 * guest's peer_port) with one Unix socket. Packets the connection owes the
 * guest are flags in `pending`; connections with something pending wait in
 * a FIFO served one packet at a time, so a busy connection never starves
 * the others. Host data is read from a Unix socket only when the device
 * has an rx buffer for it and the guest has credit, straight into guest
 * memory; guest data goes to the Unix socket directly, and what the socket
 * cannot take waits in a buffer bounded by our advertised buf_alloc, so a
 * slow host reader pauses only its own connection.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
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

#define CREDIT_UPDATE_THRESHOLD	4096
#define RST_FIFO_MAX		256
#define LOCAL_PORT_FIRST	(1u << 30)
#define LOCAL_PORT_END		(1u << 31)

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
	uint32_t tx_cnt, fwd_cnt, last_fwd_cnt_sent;
	uint8_t *txbuf;		/* ring of mux->buf_alloc bytes, lazily */
	size_t tx_head, tx_len;
	/* host -> guest */
	uint32_t peer_buf_alloc, peer_fwd_cnt, rx_cnt;

	bool read_armed;	/* rev is active */
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
	size_t nconns;
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

static struct vconn *
conn_find(struct vsock_mux *mux, uint32_t local, uint32_t peer)
{
	struct vconn *c;

	TAILQ_FOREACH(c, &mux->conns, all)
		if (c->local_port == local && c->peer_port == peer)
			return c;
	return NULL;
}

static bool
local_port_used(struct vsock_mux *mux, uint32_t port)
{
	struct vconn *c;

	TAILQ_FOREACH(c, &mux->conns, all)
		if (c->local_port == port)
			return true;
	return false;
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
	c->rev = event_new(mux->base, fd, EV_READ | EV_PERSIST, conn_read_cb, c);
	c->wev = event_new(mux->base, fd, EV_WRITE | EV_PERSIST, conn_write_cb, c);
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
	return c;
}

static void
conn_close_fd(struct vconn *c)
{
	if (c->fd < 0)
		return;
	event_del(c->rev);
	event_del(c->wev);
	c->read_armed = false;
	close(c->fd);
	c->fd = -1;
}

static void
conn_free(struct vconn *c)
{
	struct vsock_mux *mux = c->mux;

	conn_close_fd(c);
	if (c->queued)
		TAILQ_REMOVE(&mux->rx_queue, c, rxq);
	TAILQ_REMOVE(&mux->conns, c, all);
	mux->nconns--;
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

/* Watches the socket for host data when the guest can take some. */
static void
conn_update_read(struct vconn *c)
{
	bool want = c->fd >= 0 && c->state == CS_ESTABLISHED && !c->host_eof &&
	    !c->guest_no_recv && !(c->pending & P_RW) && peer_credit(c) > 0;

	if (want && !c->read_armed)
		event_add(c->rev, NULL);
	else if (!want && c->read_armed)
		event_del(c->rev);
	c->read_armed = want;
}

/* ---- host socket writing ---- */

static void
maybe_credit_update(struct vconn *c)
{
	uint32_t seen_free = c->mux->cfg.buf_alloc - (c->tx_cnt - c->last_fwd_cnt_sent);

	if (seen_free < CREDIT_UPDATE_THRESHOLD && c->fwd_cnt != c->last_fwd_cnt_sent)
		conn_owe(c, P_CREDIT);
}

static void
conn_after_flush(struct vconn *c)
{
	if (c->tx_len > 0)
		return;
	event_del(c->wev);
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
	size_t cap = c->mux->cfg.buf_alloc;

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
		for (size_t k = 0; k < n; k++)
			c->txbuf[(c->tx_head + c->tx_len + k) % cap] = p[k];
		c->tx_len += n;
	}
	return 0;
}

static void
conn_flush(struct vconn *c)
{
	size_t cap = c->mux->cfg.buf_alloc;

	while (c->tx_len > 0 && c->fd >= 0) {
		size_t chunk = c->tx_len;
		if (c->tx_head + chunk > cap)
			chunk = cap - c->tx_head;
		ssize_t n = send(c->fd, c->txbuf + c->tx_head, chunk, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				break;
			conn_reset(c);
			return;
		}
		c->tx_head = (c->tx_head + (size_t)n) % cap;
		c->tx_len -= (size_t)n;
		c->fwd_cnt += (uint32_t)n;
	}
	if (c->tx_len > 0)
		event_add(c->wev, NULL);
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
	if (c->fd < 0)
		return;
	if (c->tx_len == 0) {
		struct msghdr msg = { .msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)niov };
		ssize_t n = sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno != EAGAIN && errno != EINTR) {
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
		event_add(c->wev, NULL);
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
	char peek[HYBRID_LINE_MAX];
	size_t room = HYBRID_LINE_MAX - c->line_len;
	ssize_t n = recv(c->fd, peek, room, MSG_PEEK | MSG_DONTWAIT);
	char *nl;

	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -1;
	if (n == 0)
		return -1;
	nl = memchr(peek, '\n', (size_t)n);
	size_t take = nl != NULL ? (size_t)(nl - peek) + 1 : (size_t)n;
	n = recv(c->fd, c->line + c->line_len, take, MSG_DONTWAIT);
	if (n != (ssize_t)take)
		return -1;
	c->line_len += take;
	if (nl != NULL) {
		c->line[c->line_len - 1] = '\0';
		c->line_len--;
		return 1;
	}
	return c->line_len >= HYBRID_LINE_MAX ? -1 : 0;
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
	c->local_port = alloc_local_port(c->mux);
	c->peer_port = port;
	if (c->local_port == 0) {
		conn_free(c);
		return;
	}
	event_del(c->rev);	/* nothing more is read before the guest accepts */
	c->read_armed = false;
	c->state = CS_HOST_REQUESTING;
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
	event_del(c->rev);
	c->read_armed = false;
	evtimer_del(c->timer);
	c->state = CS_GUEST_CONNECTING;
	conn_owe(c, P_RESPONSE);
}

static void
conn_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct vconn *c = arg;

	switch (c->state) {
	case CS_HOST_LINE:
		conn_host_line(c);
		return;
	case CS_PEER_LINE:
		conn_peer_line(c);
		return;
	case CS_ESTABLISHED:
		/* Host data: read it when the device has an rx buffer. */
		event_del(c->rev);
		c->read_armed = false;
		conn_owe(c, P_RW);
		return;
	default:
		event_del(c->rev);
		c->read_armed = false;
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
		event_add(c->rev, NULL);
		c->read_armed = true;
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
	c->local_port = h->dst_port;
	c->peer_port = h->src_port;
	c->local_cid = h->dst_cid;	/* a guest drops packets from any other CID */
	c->peer_buf_alloc = h->buf_alloc;
	c->peer_fwd_cnt = h->fwd_cnt;
	if (to_peer) {
		char line[HYBRID_LINE_MAX];
		int n = snprintf(line, sizeof(line), "CONNECT %u\n", h->dst_port);
		if (send(fd, line, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) != n) {
			conn_reset(c);
			return;
		}
		event_add(c->rev, NULL);
		c->read_armed = true;
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

/* ---- packets for the guest ---- */

bool
vsock_mux_has_rx(const struct vsock_mux *mux)
{
	return mux->rst_count > 0 || !TAILQ_EMPTY(&mux->rx_queue);
}

/* Reads host data into the guest buffer (at most the guest's credit).
 * Returns bytes, 0 at EOF, -1 when nothing is there after all. */
static ssize_t
conn_read_host(struct vconn *c, const struct iovec *iov, int niov)
{
	struct iovec lim[16];
	size_t want = peer_credit(c), got = 0;
	int n = 0;
	ssize_t r;

	if (want > VSOCK_MAX_PAYLOAD)
		want = VSOCK_MAX_PAYLOAD;
	for (int i = 0; i < niov && n < 16 && got < want; i++) {
		size_t len = iov[i].iov_len;
		if (len > want - got)
			len = want - got;
		lim[n++] = (struct iovec){ iov[i].iov_base, len };
		got += len;
	}
	if (got == 0)
		return -1;
	do
		r = readv(c->fd, lim, n);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return errno == EAGAIN ? -1 : -2;
	return r;
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
		h->buf_alloc = mux->cfg.buf_alloc;
		h->fwd_cnt = c->fwd_cnt;
	}
}

int
vsock_mux_fill_rx(struct vsock_mux *mux, struct vsock_hdr *h, const struct iovec *iov, int niov)
{
	struct vconn *c;

	if (mux->rst_count > 0) {
		struct rst_entry e = mux->rsts[mux->rst_head];
		mux->rst_head = (mux->rst_head + 1) % RST_FIFO_MAX;
		mux->rst_count--;
		hdr_for(mux, NULL, e.local_port, e.peer_port, h, VSOCK_OP_RST);
		h->src_cid = e.local_cid;
		return 0;
	}
	while ((c = TAILQ_FIRST(&mux->rx_queue)) != NULL) {
		int len = -1;

		TAILQ_REMOVE(&mux->rx_queue, c, rxq);
		c->queued = false;
		if (c->pending & P_RST) {
			hdr_for(mux, c, c->local_port, c->peer_port, h, VSOCK_OP_RST);
			conn_free(c);
			return 0;
		}
		if (c->pending & P_RESPONSE) {
			c->pending &= ~(unsigned)P_RESPONSE;
			hdr_for(mux, c, c->local_port, c->peer_port, h, VSOCK_OP_RESPONSE);
			c->state = CS_ESTABLISHED;
			len = 0;
		} else if (c->pending & P_REQUEST) {
			c->pending &= ~(unsigned)P_REQUEST;
			hdr_for(mux, c, c->local_port, c->peer_port, h, VSOCK_OP_REQUEST);
			len = 0;
		} else if (c->pending & P_RW) {
			ssize_t r = c->fd >= 0 ? conn_read_host(c, iov, niov) : -1;
			c->pending &= ~(unsigned)P_RW;
			if (r > 0) {
				hdr_for(mux, c, c->local_port, c->peer_port, h, VSOCK_OP_RW);
				h->len = (uint32_t)r;
				c->rx_cnt += (uint32_t)r;
				len = (int)r;
			} else if (r == 0 && c->guest_no_send && c->tx_len == 0) {
				/* Both directions are finished: end the flow. */
				hdr_for(mux, c, c->local_port, c->peer_port, h, VSOCK_OP_RST);
				conn_free(c);
				return 0;
			} else if (r == 0) {
				/* Host EOF: tell the guest we send no more. */
				c->host_eof = true;
				hdr_for(mux, c, c->local_port, c->peer_port, h, VSOCK_OP_SHUTDOWN);
				h->flags = VSOCK_SHUTDOWN_SEND;
				len = 0;
			} else if (r == -2) {
				conn_reset(c);
				continue;
			}
		} else if (c->pending & P_CREDIT) {
			c->pending &= ~(unsigned)P_CREDIT;
			hdr_for(mux, c, c->local_port, c->peer_port, h, VSOCK_OP_CREDIT_UPDATE);
			len = 0;
		}
		if (c->pending & P_CREDIT && len >= 0)
			c->pending &= ~(unsigned)P_CREDIT;	/* this packet carries fwd_cnt too */
		if (c->pending != 0) {
			TAILQ_INSERT_TAIL(&mux->rx_queue, c, rxq);
			c->queued = true;
		}
		if (len >= 0) {
			c->last_fwd_cnt_sent = c->fwd_cnt;
			conn_update_read(c);
			return len;
		}
		conn_update_read(c);
	}
	return -1;
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
		mux->cfg.buf_alloc = 64 * 1024;
	mux->uds_path = strdup(cfg->uds_path);
	mux->cfg.uds_path = mux->uds_path;
	mux->ops = *ops;
	mux->ctx = ctx;
	mux->listen_fd = -1;
	mux->next_local_port = LOCAL_PORT_FIRST;
	TAILQ_INIT(&mux->conns);
	TAILQ_INIT(&mux->rx_queue);
	if (mux->uds_path == NULL || (r = mux_listen(mux)) < 0) {
		r = mux->uds_path == NULL ? -ENOMEM : r;
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

void
vsock_mux_free(struct vsock_mux *mux)
{
	if (mux == NULL)
		return;
	vsock_mux_reset(mux);
	if (mux->accept_ev != NULL)
		event_free(mux->accept_ev);
	if (mux->rx_kick != NULL)
		event_free(mux->rx_kick);
	if (mux->listen_fd >= 0)
		close(mux->listen_fd);
	unlink(mux->uds_path);
	free(mux->uds_path);
	free(mux);
}

size_t
vsock_mux_connection_count(const struct vsock_mux *mux)
{
	return mux->nconns;
}
