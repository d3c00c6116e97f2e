/*
 * The vhost-user backend session of one VM's virtio-vsock device. emberd
 * holds one end of the socket (a socketpair whose other end QEMU inherits
 * as -chardev socket,fd=N, or an accepted connection); this module reads
 * QEMU's messages on the daemon's event base, answers them, maps guest
 * memory and keeps the two rings QEMU hands over (0 rx, 1 tx; the event
 * queue stays in QEMU). It knows nothing of vsock packets: the device
 * owner gets the rings through vu_dev_vq() and is told when they start,
 * stop, are kicked, and when the guest reset the device.
 *
 * Nothing QEMU sends can crash emberd: a malformed request gets an error
 * reply (or is ignored when no reply is expected) and the session goes on;
 * only broken framing (bad version bits, a payload over 4096 bytes, a peer
 * that does not read its replies) ends the session, as EOF does.
 */
#ifndef EMBER_VHOST_USER_H
#define EMBER_VHOST_USER_H

#include <stdbool.h>
#include <stdint.h>

#include "guest-mem.h"
#include "virtq.h"

#define VU_NUM_QUEUES 2

struct event_base;
struct vu_dev;

/*
 * Callbacks into the device owner; any may be NULL. A ring is "running"
 * once it has a kick fd and is enabled; on_ring_start is the moment to do
 * one processing pass, since buffers may already be queued. on_reset runs
 * before on_ring_start when the rings restart from index 0 after having
 * run (a guest driver reset, not a QMP stop/cont), so per-guest state such
 * as vsock connections must go. on_disconnect runs once after EOF or a
 * fatal protocol error; every ring has been stopped and memory unmapped.
 * vu_dev_free may be called from any callback; the free is then deferred.
 */
struct vu_dev_ops {
	void	(*on_ring_start)(void *ctx, unsigned q);
	void	(*on_ring_stop)(void *ctx, unsigned q);
	void	(*on_kick)(void *ctx, unsigned q);
	void	(*on_reset)(void *ctx);
	void	(*on_disconnect)(void *ctx);
	/* Negotiated state changed (features, memory table, a ring's
	 * size, addresses, fds or enable): what vu_dev_get_state returns
	 * is different. Runs after the request was handled. */
	void	(*on_change)(void *ctx);
};

/*
 * What a later emberd needs to serve the same session without QEMU
 * noticing (see vsock-dev.c for how it is kept): everything QEMU told us
 * that guest memory cannot tell. fds are borrowed from the session by
 * vu_dev_get_state and taken by vu_dev_restore; the *_gen counters move
 * whenever the matching fd is replaced, so a holder knows to re-store it.
 */
struct vu_ring_state {
	unsigned	num;
	uint64_t	desc, avail, used;	/* QEMU virtual addresses */
	bool		addr_set, started, enabled;
	uint16_t	last_avail_idx;
	int		kick_fd, call_fd;
	uint64_t	kick_gen, call_gen;
};

struct vu_dev_state {
	uint64_t		features, protocol_features;
	bool			owner, ever_running;
	unsigned		nregions;
	struct guest_mem_desc	region[GUEST_MEM_MAX_REGIONS];
	int			mem_fd[GUEST_MEM_MAX_REGIONS];
	uint64_t		mem_gen;
	struct vu_ring_state	ring[VU_NUM_QUEUES];
};

/*
 * Starts serving the session on fd, which it takes over (even on failure:
 * it is closed) and makes non-blocking and close-on-exec. guest_cid is the
 * config space (>= 3, below 0xffffffff). NULL with errno on failure.
 */
struct vu_dev *vu_dev_new(struct event_base *base, int fd, uint64_t guest_cid,
    const struct vu_dev_ops *ops, void *ctx);
/*
 * Serves a session an earlier emberd negotiated: fd is its socket, st what
 * it had agreed (fds taken, closed on failure too). The memory table is
 * mapped again and each ring rebuilt from guest memory: last_avail_idx is
 * used->idx, since emberd returns every chain it pops within the pass that
 * popped it (a pass cut short by kill -9 is simply done again). The rings
 * start, and the guest is interrupted once, from the loop after this
 * returns. NULL with errno when the state does not fit the memory.
 */
struct vu_dev *vu_dev_restore(struct event_base *base, int fd, uint64_t guest_cid,
    struct vu_dev_state *st, const struct vu_dev_ops *ops, void *ctx);
/* Closes the fds in st (those >= 0) and marks them -1. */
void vu_dev_state_close(struct vu_dev_state *st);
/* The session's state, fds borrowed (valid until the next request). */
void vu_dev_get_state(const struct vu_dev *dev, struct vu_dev_state *st);
/* The session socket, or -1 after the session ended. */
int vu_dev_fd(const struct vu_dev *dev);
/* Whether a request is half read or a reply half sent: an exec now would
 * cut a message in two. */
bool vu_dev_mid_message(const struct vu_dev *dev);
/* Closes the session and every fd, unmaps memory; no callbacks. NULL is ok. */
void vu_dev_free(struct vu_dev *dev);

/* Ring q (0 or 1), or NULL. Valid until vu_dev_free; only use it running. */
struct virtq *vu_dev_vq(struct vu_dev *dev, unsigned q);
const struct guest_mem *vu_dev_mem(const struct vu_dev *dev);
bool vu_dev_ring_running(const struct vu_dev *dev, unsigned q);
bool vu_dev_connected(const struct vu_dev *dev);
/* Acked virtio features (SET_FEATURES), 0 until then. Without
 * VIRTIO_F_VERSION_1 the guest uses legacy virtio-mmio, which works on x86
 * but deserves a warning from the owner. */
uint64_t vu_dev_features(const struct vu_dev *dev);
/* Why the session ended or the last request failed, for the owner's log. */
const char *vu_dev_last_error(const struct vu_dev *dev);

#endif
