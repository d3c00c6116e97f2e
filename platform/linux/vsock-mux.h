/*
 * The host side of one VM's virtio-vsock device, above the rings: the
 * connection table, the per-connection state machine, credit flow control
 * in both directions, and the Unix sockets of Firecracker's hybrid vsock
 * protocol (<dir>/vsock.sock for host-initiated connections, and
 * <dir>/vsock.sock_<port> for guest-initiated ones).
 *
 * The device layer (vsock-dev.c) hands it every packet the guest sends
 * (vsock_mux_guest_packet) and, whenever it has a free rx buffer and
 * vsock_mux_has_rx() says so, asks it for the next packet for the guest
 * (vsock_mux_fill_rx), which reads host data straight into guest memory.
 * Nothing here knows about virtqueues, so tests drive it as a fake guest.
 */
#ifndef EMBER_VSOCK_MUX_H
#define EMBER_VSOCK_MUX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

struct event_base;
struct vsock_mux;

#define VSOCK_HDR_SIZE		44
#define VSOCK_HOST_CID		2
#define VSOCK_TYPE_STREAM	1
enum vsock_op {
	VSOCK_OP_INVALID, VSOCK_OP_REQUEST, VSOCK_OP_RESPONSE, VSOCK_OP_RST,
	VSOCK_OP_SHUTDOWN, VSOCK_OP_RW, VSOCK_OP_CREDIT_UPDATE, VSOCK_OP_CREDIT_REQUEST,
};
#define VSOCK_SHUTDOWN_RCV	1
#define VSOCK_SHUTDOWN_SEND	2
#define VSOCK_MAX_PAYLOAD	(64 * 1024)

/* A header in host byte order (the wire form is 44 little-endian bytes). */
struct vsock_hdr {
	uint64_t src_cid, dst_cid;
	uint32_t src_port, dst_port;
	uint32_t len;
	uint16_t type, op;
	uint32_t flags, buf_alloc, fwd_cnt;
};

void vsock_hdr_decode(const uint8_t raw[VSOCK_HDR_SIZE], struct vsock_hdr *hdr);
void vsock_hdr_encode(const struct vsock_hdr *hdr, uint8_t raw[VSOCK_HDR_SIZE]);

struct vsock_mux_ops {
	/* The mux has packets for the guest: run the rx pump. Called from
	 * the event loop, never from inside a vsock_mux_* call. */
	void (*rx_ready)(void *ctx);
	/* VM to VM: the hybrid socket of the VM holding cid, if the guest may
	 * reach it. 0, or -ENOENT. NULL: never. */
	int (*peer_socket)(void *ctx, uint64_t cid, char *path, size_t len);
	/* A flow got its ports, and went away: a record kept outside the
	 * mux so an emberd that restarts can reset the guest's end
	 * (vsock-dev.c). flow_open returns a slot (>= 0) or -1; flow_close
	 * gets it back. NULL: not recorded. */
	int (*flow_open)(void *ctx, uint64_t local_cid, uint32_t local_port,
	    uint32_t peer_port);
	void (*flow_close)(void *ctx, int slot);
	/* A flow got its ports (opened) or went away (closed); open is how
	 * many have ports now. NULL: nobody is told. */
	void (*flow_changed)(void *ctx, bool opened, uint32_t host_port, uint32_t guest_port,
	    size_t open);
};

struct vsock_mux_config {
	uint64_t guest_cid;
	const char *uds_path;		/* <dir>/vsock.sock */
	uid_t owner_uid;		/* the VM's owner: may connect to uds_path, and
					 * only its own uds_path_<port> sockets are used */
	unsigned request_timeout_ms;	/* 0: 2000 */
	unsigned shutdown_timeout_ms;	/* 0: 2000 */
	unsigned connect_line_timeout_ms;	/* 0: 5000 */
	unsigned max_connections;	/* 0: 1023 */
	uint32_t buf_alloc;		/* 0: 256 KiB; the window advertised by up
					 * to 64 connections at once, the others
					 * min(buf_alloc, 64 KiB) */
	bool take_listen_fd;		/* listen_fd is an earlier emberd's listener
					 * on uds_path: taken, nothing is bound */
	int listen_fd;
};

/* Binds uds_path (replacing a stale socket), 0600 plus an ACL entry for
 * owner_uid. NULL with errno set. */
struct vsock_mux *vsock_mux_new(struct event_base *base, const struct vsock_mux_config *cfg,
    const struct vsock_mux_ops *ops, void *ctx);
/* Closes every connection and the listener, and removes uds_path. */
void vsock_mux_free(struct vsock_mux *mux);
/* Like free, but uds_path stays and flows are not reported closed: a
 * service manager keeps the listener for the next emberd. */
void vsock_mux_detach(struct vsock_mux *mux);
int vsock_mux_listen_fd(const struct vsock_mux *mux);
/* Sends the guest an RST for a flow an earlier emberd had open; 0, or
 * -ENOBUFS while the RST queue is full (try again after an rx pass). */
int vsock_mux_reset_flow(struct vsock_mux *mux, uint64_t local_cid, uint32_t local_port,
    uint32_t peer_port);

/* One packet from the guest; payload is hdr->len bytes (validated by the
 * caller against the chain). */
void vsock_mux_guest_packet(struct vsock_mux *mux, const struct vsock_hdr *hdr,
    const struct iovec *payload, int niov);

/* A guest packet in a batch: what the device took from one tx chain. */
struct vsock_tx_pkt {
	struct vsock_hdr hdr;
	const struct iovec *payload;	/* hdr.len bytes */
	int niov;
};
/* The packets of one tx ring pass, in order. Consecutive data packets of
 * one flow go to its socket in one writev; the payload memory only has to
 * stay valid for the call. */
void vsock_mux_guest_packets(struct vsock_mux *mux, const struct vsock_tx_pkt *pkts, int n);

bool vsock_mux_has_rx(const struct vsock_mux *mux);

/* Where the guest's rx buffers come from during vsock_mux_fill_rx_batch:
 * take() hands out the payload part of the next buffer (after the header
 * the caller writes later) as slot `slot`, or returns -1 when there is
 * none; untake() gives a taken one back, newest first. Giving back the
 * newest must always work; an older one may fail (false), and the mux then
 * puts a CREDIT_UPDATE in it instead. */
struct vsock_rx_source {
	int (*take)(void *ctx, int slot, const struct iovec **iov, int *niov);
	bool (*untake)(void *ctx, int slot);
	void *ctx;
};
/* A packet produced into slot i: its header (len set) and payload bytes. */
struct vsock_rx_done {
	struct vsock_hdr hdr;
	uint32_t len;
};
/* Produces packets for the guest into at most max buffers taken from src;
 * host data is read with one readv across as many buffers as the guest's
 * credit allows. done[i] describes slot i. Returns the number of slots
 * filled (slots 0..n-1; every taken slot is filled or given back). */
int vsock_mux_fill_rx_batch(struct vsock_mux *mux, const struct vsock_rx_source *src,
    struct vsock_rx_done *done, int max);
/* One packet into one buffer of room payload bytes (iov, after the header
 * the caller writes from *hdr). Returns the payload length, or -1 when
 * nothing was produced after all (the caller gives the buffer back). */
int vsock_mux_fill_rx(struct vsock_mux *mux, struct vsock_hdr *hdr, const struct iovec *iov,
    int niov);
/* The guest's driver reset: drop every connection without a word. */
void vsock_mux_reset(struct vsock_mux *mux);
size_t vsock_mux_connection_count(const struct vsock_mux *mux);
/* Stream payload bytes each way since the mux was made, and the
 * connections open now. */
struct vsock_mux_stats {
	uint64_t bytes_from_guest, bytes_to_guest;
	size_t connections;
};
void vsock_mux_stats(const struct vsock_mux *mux, struct vsock_mux_stats *st);

#endif
