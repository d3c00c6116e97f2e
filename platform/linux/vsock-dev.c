/*
 * The vsock device pump (see vsock-dev.h).
 *
 * tx (ring 1, guest -> host): pop up to BATCH chains, copy each 44-byte
 * header out of guest memory, check it (size, source CID, destination,
 * payload length against the chain), give the headers and payload iovecs
 * to the mux in one call, return the chains with length 0.
 * rx (ring 0, host -> guest): while the mux has something to say and the
 * guest has posted buffers, let the mux fill the payload parts in place
 * (one readv may span many buffers), write the headers in front, return
 * the chains with 44 + payload bytes.
 * Either way a batch's chains become visible with one used->idx store, and
 * the guest is interrupted at most once per pass (EVENT_IDX permitting).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "fd-keep.h"
#include "log.h"
#include "vhost-user.h"
#include "virtq.h"
#include "vsock-dev.h"
#include "vsock-handover.h"
#include "vsock-mux.h"

#define RX_QUEUE 0
#define TX_QUEUE 1
#define PASS_BUDGET 256		/* chains per pump pass before yielding */
#define BATCH 128		/* chains handed to the mux at once */

struct vsock_dev {
	struct event_base *base;
	struct vu_dev *vu;
	struct vsock_mux *mux;
	uint64_t guest_cid;
	char *name;
	vsock_peer_fn peer;
	void *peer_ctx;
	struct event *tx_again, *rx_again;	/* continue a pass that hit its budget */
	struct vsock_dev_stats st;
	bool warned_legacy;
	struct vsock_handover *ho;	/* what the next emberd needs; may be NULL */
	vsock_flow_fn flow_hook;	/* vsock_dev_set_flow_hook */
	void *flow_hook_ctx;
	/* Flows an earlier emberd had open, still to be reset (the mux's
	 * RST queue is bounded; more go after each rx pass). */
	struct vsock_flow *old_flows;
	unsigned nold_flows, old_flows_done;
};

/* The payload part of a chain's segments: everything after the header. */
static int
iov_skip(const struct iovec *in, unsigned n, size_t skip, struct iovec *out, unsigned max)
{
	unsigned k = 0;

	for (unsigned i = 0; i < n && k < max; i++) {
		if (skip >= in[i].iov_len) {
			skip -= in[i].iov_len;
			continue;
		}
		out[k].iov_base = (char *)in[i].iov_base + skip;
		out[k].iov_len = in[i].iov_len - skip;
		skip = 0;
		k++;
	}
	return (int)k;
}

/* Trims iov to len bytes; returns the count of segments used. */
static int
iov_trim(struct iovec *iov, int n, size_t len)
{
	int k;

	for (k = 0; k < n && len > 0; k++) {
		if (iov[k].iov_len > len)
			iov[k].iov_len = len;
		len -= iov[k].iov_len;
	}
	return k;
}

/* Checks the chain's packet (header copied out of guest memory once) into
 * pkt, its payload segments into payload; false when it is dropped. */
static bool
dev_tx_decode(struct vsock_dev *dev, const struct virtq_elem *e, struct vsock_tx_pkt *pkt,
    struct iovec *payload)
{
	uint8_t raw[VSOCK_HDR_SIZE];
	struct vsock_hdr *h = &pkt->hdr;
	int n;

	if (e->out_len < VSOCK_HDR_SIZE ||
	    iov_to_buf(e->out, e->out_num, 0, raw, sizeof(raw)) != sizeof(raw)) {
		dev->st.dropped++;
		return false;
	}
	vsock_hdr_decode(raw, h);	/* our copy: the guest can't change it now */
	if (h->len > VSOCK_MAX_PAYLOAD || h->len > e->out_len - VSOCK_HDR_SIZE ||
	    h->src_cid != dev->guest_cid) {
		dev->st.dropped++;
		log_debug("vsock %s: dropped a malformed packet (op %u, len %u, src cid %llu)",
		    dev->name, h->op, h->len, (unsigned long long)h->src_cid);
		return false;
	}
	/* Another CID: the mux asks on_mux_peer, and resets a REQUEST that
	 * reaches nobody at once rather than letting connect() time out. */
	n = iov_skip(e->out, e->out_num, VSOCK_HDR_SIZE, payload, VIRTQ_MAX_IOV);
	pkt->payload = payload;
	pkt->niov = iov_trim(payload, n, h->len);
	dev->st.tx_packets++;
	return true;
}

/* Logs a ring's breakage once, whichever ring it is (the ring stays dead
 * until the driver reconfigures it, and every kick would log again). */
static void
dev_log_broken(struct vsock_dev *dev, struct virtq *vq, const char *ring)
{
	const char *why = virtq_new_breakage(vq);

	if (why != NULL)
		log_warnx("vsock %s: %s ring broken: %s", dev->name, ring, why);
}

/* One tx batch: pop up to BATCH chains, hand their packets to the mux in
 * one call (a flow's consecutive data goes out in one writev), then return
 * every chain with one used->idx update. Returns the chains popped; *r is
 * virtq_pop's last result. */
static int
dev_tx_batch(struct vsock_dev *dev, struct virtq *vq, const struct guest_mem *mem, int max,
    int *r)
{
	static struct virtq_elem e[BATCH];	/* large; the loop is single-threaded */
	static struct vsock_tx_pkt pkts[BATCH];
	static struct iovec payload[BATCH][VIRTQ_MAX_IOV];
	int n = 0, np = 0;

	if (max > BATCH)
		max = BATCH;
	while (n < max && (*r = virtq_pop(vq, mem, &e[n])) == 1)
		n++;
	for (int i = 0; i < n; i++)
		if (dev_tx_decode(dev, &e[i], &pkts[np], payload[np]))
			np++;
	if (np > 0)
		vsock_mux_guest_packets(dev->mux, pkts, np);
	for (int i = 0; i < n; i++)
		virtq_fill(vq, e[i].head, 0);
	virtq_publish(vq);
	return n;
}

static void
dev_tx_pump(struct vsock_dev *dev)
{
	struct virtq *vq = vu_dev_vq(dev->vu, TX_QUEUE);
	const struct guest_mem *mem = vu_dev_mem(dev->vu);
	int budget = PASS_BUDGET, r = 0;

	if (vq == NULL || !vu_dev_ring_running(dev->vu, TX_QUEUE))
		return;
	do {
		virtq_disable_notify(vq);
		while (budget > 0) {
			int n = dev_tx_batch(dev, vq, mem, budget, &r);
			budget -= n;
			if (r != 1)
				break;
		}
		if (vq->broken) {
			dev_log_broken(dev, vq, "tx");
			break;
		}
		if (budget == 0) {
			event_active(dev->tx_again, EV_TIMEOUT, 0);
			break;
		}
	} while (virtq_enable_notify(vq));
	virtq_notify(vq);
}

/* The rx ring as the mux's buffer source during one batch. */
struct rx_batch {
	struct vsock_dev *dev;
	struct virtq *vq;
	const struct guest_mem *mem;
	bool ring_error;
};

static struct virtq_elem rx_elem[BATCH];
static uint16_t rx_pos[BATCH];		/* last_avail_idx right after the pop */
static struct iovec rx_payload[BATCH][VIRTQ_MAX_IOV];

static int
rx_take(void *ctx, int slot, const struct iovec **iov, int *niov)
{
	struct rx_batch *b = ctx;
	struct virtq_elem *e = &rx_elem[slot];

	if (slot >= BATCH)
		return -1;
	for (;;) {
		int r = virtq_pop(b->vq, b->mem, e);
		if (r == 0 && virtq_enable_notify(b->vq))
			continue;	/* the guest posted buffers meanwhile */
		if (r != 1) {
			/* No buffer: the guest kicks when it posts one. */
			b->ring_error = r < 0;
			return -1;
		}
		if (e->in_len >= VSOCK_HDR_SIZE)
			break;
		virtq_push(b->vq, e->head, 0);
		b->dev->st.dropped++;
	}
	rx_pos[slot] = b->vq->last_avail_idx;
	*niov = iov_skip(e->in, e->in_num, VSOCK_HDR_SIZE, rx_payload[slot], VIRTQ_MAX_IOV);
	*iov = rx_payload[slot];
	return 0;
}

/* Only a chain popped last can go back on the avail ring (one dropped
 * after it would be popped twice). */
static bool
rx_untake(void *ctx, int slot)
{
	struct rx_batch *b = ctx;

	if (rx_pos[slot] != b->vq->last_avail_idx)
		return false;
	b->vq->last_avail_idx--;
	return true;
}

/* Queues RSTs for the flows of the previous emberd, as room allows. */
static void
dev_reset_old_flows(struct vsock_dev *dev)
{
	while (dev->old_flows_done < dev->nold_flows) {
		const struct vsock_flow *f = &dev->old_flows[dev->old_flows_done];

		if (vsock_mux_reset_flow(dev->mux, f->local_cid, f->local_port, f->peer_port) < 0)
			return;
		dev->old_flows_done++;
	}
	free(dev->old_flows);
	dev->old_flows = NULL;
	dev->nold_flows = dev->old_flows_done = 0;
}

static void
dev_rx_pump(struct vsock_dev *dev)
{
	struct virtq *vq = vu_dev_vq(dev->vu, RX_QUEUE);
	struct rx_batch b = { dev, vq, vu_dev_mem(dev->vu), false };
	struct vsock_rx_source src = { rx_take, rx_untake, &b };
	static struct vsock_rx_done done[BATCH];
	uint8_t raw[VSOCK_HDR_SIZE];
	int budget = PASS_BUDGET, pushed = 0;

	if (vq == NULL || !vu_dev_ring_running(dev->vu, RX_QUEUE))
		return;
	while (budget > 0 && vsock_mux_has_rx(dev->mux)) {
		int n = vsock_mux_fill_rx_batch(dev->mux, &src, done,
		    budget < BATCH ? budget : BATCH);
		for (int i = 0; i < n; i++) {
			vsock_hdr_encode(&done[i].hdr, raw);
			buf_to_iov(rx_elem[i].in, rx_elem[i].in_num, 0, raw, sizeof(raw));
			virtq_fill(vq, rx_elem[i].head, VSOCK_HDR_SIZE + done[i].len);
		}
		virtq_publish(vq);
		dev->st.rx_packets += (uint64_t)n;
		pushed += n;
		budget -= n;
		if (b.ring_error) {
			dev_log_broken(dev, vq, "rx");
			break;
		}
		if (n == 0 || n < BATCH)
			break;	/* out of buffers or of things to say */
	}
	if (budget <= 0 && vsock_mux_has_rx(dev->mux))
		event_active(dev->rx_again, EV_TIMEOUT, 0);
	if (pushed > 0)
		virtq_notify(vq);
	if (dev->nold_flows > 0)
		dev_reset_old_flows(dev);
}

static void
on_tx_again(evutil_socket_t fd, short what, void *arg)
{
	dev_tx_pump(arg);
}

static void
on_rx_again(evutil_socket_t fd, short what, void *arg)
{
	dev_rx_pump(arg);
}

/* ---- vhost-user callbacks ---- */

static void
on_ring_start(void *ctx, unsigned q)
{
	struct vsock_dev *dev = ctx;

	if (!dev->warned_legacy && !(vu_dev_features(dev->vu) & (1ull << 32))) {
		log_warnx("vsock %s: guest did not negotiate VIRTIO_F_VERSION_1 (legacy virtio-mmio); "
		    "continuing", dev->name);
		dev->warned_legacy = true;
	}
	if (q == TX_QUEUE)
		dev_tx_pump(dev);
	else
		dev_rx_pump(dev);
}

static void
on_kick(void *ctx, unsigned q)
{
	struct vsock_dev *dev = ctx;

	if (q == TX_QUEUE) {
		dev_tx_pump(dev);
		dev_rx_pump(dev);	/* replies are usually waiting */
	} else
		dev_rx_pump(dev);
}

static void
on_reset(void *ctx)
{
	struct vsock_dev *dev = ctx;

	log_info("vsock %s: guest driver reset; dropping %zu connections", dev->name,
	    vsock_mux_connection_count(dev->mux));
	vsock_mux_reset(dev->mux);
}

static void
on_disconnect(void *ctx)
{
	struct vsock_dev *dev = ctx;

	log_info("vsock %s: vhost-user session ended: %s", dev->name,
	    vu_dev_last_error(dev->vu) ? vu_dev_last_error(dev->vu) : "EOF");
	vsock_mux_reset(dev->mux);
	/* Nothing left for a successor: its fds are closed (and the numbers
	 * may be reused), so the store and our table let them go. */
	fd_keep_remove_busy_check(dev);
	vsock_handover_free(dev->ho);
	dev->ho = NULL;
}

/* Negotiation moved on: the next emberd must know (vsock-handover.c). */
static void
on_change(void *ctx)
{
	struct vsock_dev *dev = ctx;
	struct vu_dev_state st;

	if (dev->ho == NULL || dev->vu == NULL)
		return;
	vu_dev_get_state(dev->vu, &st);
	vsock_handover_save(dev->ho, &st);
}

static const struct vu_dev_ops dev_vu_ops = {
	.on_ring_start = on_ring_start,
	.on_kick = on_kick,
	.on_reset = on_reset,
	.on_disconnect = on_disconnect,
	.on_change = on_change,
};

static void
on_mux_rx_ready(void *ctx)
{
	dev_rx_pump(ctx);
}

static int
on_mux_peer(void *ctx, uint64_t cid, char *path, size_t len)
{
	struct vsock_dev *dev = ctx;

	if (dev->peer == NULL || cid == dev->guest_cid)
		return -ENOENT;
	return dev->peer(dev->peer_ctx, cid, path, len);
}

static int
on_flow_open(void *ctx, uint64_t local_cid, uint32_t local_port, uint32_t peer_port)
{
	struct vsock_dev *dev = ctx;

	return dev->ho != NULL ? vsock_handover_flow_open(dev->ho, local_cid, local_port,
	    peer_port) : -1;
}

static void
on_flow_close(void *ctx, int slot)
{
	struct vsock_dev *dev = ctx;

	if (dev->ho != NULL)
		vsock_handover_flow_close(dev->ho, slot);
}

static void
on_flow_changed(void *ctx, bool opened, uint32_t host_port, uint32_t guest_port, size_t open)
{
	struct vsock_dev *dev = ctx;

	if (dev->flow_hook != NULL)
		dev->flow_hook(dev->flow_hook_ctx, opened, host_port, guest_port, open);
}

static const struct vsock_mux_ops dev_mux_ops = {
	.rx_ready = on_mux_rx_ready,
	.peer_socket = on_mux_peer,
	.flow_open = on_flow_open,
	.flow_close = on_flow_close,
	.flow_changed = on_flow_changed,
};

/* An exec now would cut a vhost-user message in two (fd_keep_busy). */
static bool
dev_mid_message(void *ctx)
{
	struct vsock_dev *dev = ctx;

	return dev->vu != NULL && vu_dev_mid_message(dev->vu);
}

/* <dir> of <dir>/vsock.sock, in buf. */
static void
vm_dir_of(const char *uds_path, char *buf, size_t len)
{
	const char *slash = strrchr(uds_path, '/');
	size_t n = slash != NULL ? (size_t)(slash - uds_path) : 0;

	if (slash == NULL)
		snprintf(buf, len, ".");
	else
		snprintf(buf, len, "%.*s", (int)n, uds_path);
}

/* What a new and an adopted device set up alike. */
static void
dev_fill(struct vsock_dev *dev, struct event_base *base, uint64_t guest_cid,
    const char *name, vsock_peer_fn peer, void *peer_ctx)
{
	dev->base = base;
	dev->guest_cid = guest_cid;
	dev->name = strdup(name);
	dev->peer = peer;
	dev->peer_ctx = peer_ctx;
	dev->tx_again = event_new(base, -1, 0, on_tx_again, dev);
	dev->rx_again = event_new(base, -1, 0, on_rx_again, dev);
}

/* An upgrade waits while this device is mid vhost-user message. */
static void
dev_watch_mid_message(struct vsock_dev *dev)
{
	if (fd_keep_add_busy_check(dev_mid_message, dev) < 0)
		log_debug("vsock %s: an upgrade will not wait for vhost-user messages", dev->name);
}

struct vsock_dev *
vsock_dev_new(struct event_base *base, int vu_fd, uint64_t guest_cid, const char *uds_path,
    uid_t owner_uid, const char *name, vsock_peer_fn peer, void *peer_ctx)
{
	struct vsock_dev *dev = calloc(1, sizeof(*dev));
	struct vsock_mux_config cfg = { .guest_cid = guest_cid, .uds_path = uds_path,
	    .owner_uid = owner_uid };
	int e;

	if (dev == NULL) {
		close(vu_fd);
		errno = ENOMEM;
		return NULL;
	}
	dev_fill(dev, base, guest_cid, name, peer, peer_ctx);
	{
		char dir[4096];

		vm_dir_of(uds_path, dir, sizeof(dir));
		if ((dev->ho = vsock_handover_new(name, dir)) == NULL)
			log_warn("vsock %s: the device will not survive an emberd restart", name);
	}
	dev->mux = vsock_mux_new(base, &cfg, &dev_mux_ops, dev);
	if (dev->mux == NULL) {
		e = errno;
		close(vu_fd);
		vsock_dev_free(dev);
		errno = e;
		return NULL;
	}
	dev->vu = vu_dev_new(base, vu_fd, guest_cid, &dev_vu_ops, dev);
	if (dev->vu == NULL) {
		e = errno;
		vsock_dev_free(dev);
		errno = e;
		return NULL;
	}
	vsock_handover_hold_fixed(dev->ho, vu_dev_fd(dev->vu), vsock_mux_listen_fd(dev->mux),
	    false);
	dev_watch_mid_message(dev);
	return dev;
}

struct vsock_dev *
vsock_dev_adopt(struct event_base *base, uint64_t guest_cid, const char *uds_path,
    uid_t owner_uid, const char *name, vsock_peer_fn peer, void *peer_ctx)
{
	struct vsock_mux_config cfg = { .guest_cid = guest_cid, .uds_path = uds_path,
	    .owner_uid = owner_uid, .take_listen_fd = true };
	struct vsock_handover_fds fds;
	struct vsock_flow *flows = NULL;
	struct vsock_dev *dev;
	char dir[4096];
	unsigned nflows = 0;
	int r, e;

	vm_dir_of(uds_path, dir, sizeof(dir));
	if ((dev = calloc(1, sizeof(*dev))) == NULL) {
		errno = ENOMEM;
		return NULL;
	}
	r = vsock_handover_adopt(name, dir, uds_path, &dev->ho, &fds, &flows, &nflows);
	if (r <= 0) {
		free(dev);
		errno = r == 0 ? ENOENT : -r;
		return NULL;
	}
	dev_fill(dev, base, guest_cid, name, peer, peer_ctx);
	cfg.listen_fd = fds.listen_fd;
	dev->mux = vsock_mux_new(base, &cfg, &dev_mux_ops, dev);
	if (dev->mux == NULL) {
		e = errno;
		close(fds.listen_fd);
		close(fds.vu_fd);
		fds.listen_fd = fds.vu_fd = -1;
		vu_dev_state_close(&fds.state);
		free(flows);
		vsock_dev_free(dev);
		errno = e;
		return NULL;
	}
	dev->vu = vu_dev_restore(base, fds.vu_fd, guest_cid, &fds.state, &dev_vu_ops, dev);
	if (dev->vu == NULL) {
		e = errno;
		free(flows);
		vsock_dev_free(dev);
		errno = e;
		return NULL;
	}
	vsock_handover_hold_fixed(dev->ho, vu_dev_fd(dev->vu), vsock_mux_listen_fd(dev->mux),
	    true);
	dev_watch_mid_message(dev);
	/* The store has these fds already; record their numbers here. */
	{
		struct vu_dev_state st;

		vu_dev_get_state(dev->vu, &st);
		vsock_handover_restored(dev->ho, &st);
	}
	if (nflows > 0)
		log_info("vsock %s: resetting %u connection%s open before the restart", name,
		    nflows, nflows == 1 ? "" : "s");
	dev->old_flows = flows;
	dev->nold_flows = nflows;
	dev_reset_old_flows(dev);
	return dev;
}

void
vsock_dev_detach(struct vsock_dev *dev)
{
	if (dev == NULL)
		return;
	if (dev->ho == NULL || !fd_keep_persistent()) {
		vsock_dev_free(dev);
		return;
	}
	on_change(dev);
	vsock_handover_detach(dev->ho);
	dev->ho = NULL;
	vu_dev_free(dev->vu);
	dev->vu = NULL;
	vsock_mux_detach(dev->mux);
	dev->mux = NULL;
	vsock_dev_free(dev);
}

void
vsock_dev_free(struct vsock_dev *dev)
{
	if (dev == NULL)
		return;
	fd_keep_remove_busy_check(dev);
	vu_dev_free(dev->vu);
	dev->vu = NULL;
	vsock_handover_free(dev->ho);
	dev->ho = NULL;
	free(dev->old_flows);
	vsock_mux_free(dev->mux);
	if (dev->tx_again != NULL)
		event_free(dev->tx_again);
	if (dev->rx_again != NULL)
		event_free(dev->rx_again);
	free(dev->name);
	free(dev);
}

void
vsock_dev_stats(const struct vsock_dev *dev, struct vsock_dev_stats *st)
{
	struct vsock_mux_stats ms;

	*st = dev->st;
	vsock_mux_stats(dev->mux, &ms);
	st->connections = ms.connections;
	st->bytes_from_guest = ms.bytes_from_guest;
	st->bytes_to_guest = ms.bytes_to_guest;
}

void
vsock_dev_set_flow_hook(struct vsock_dev *dev, vsock_flow_fn fn, void *ctx)
{
	dev->flow_hook = fn;
	dev->flow_hook_ctx = ctx;
}
