/*
 * One QEMU VM's virtio-vsock device as emberd serves it: a vhost-user
 * session (vhost-user.c) whose two rings carry packets to and from the
 * connection multiplexer (vsock-mux.c), which owns <dir>/vsock.sock. This
 * file is the pump between them: it validates each guest packet header
 * (copied out of guest memory once) and fills rx buffers, a bounded number
 * per pass so one busy guest never stalls the event loop for others.
 */
#ifndef EMBER_VSOCK_DEV_H
#define EMBER_VSOCK_DEV_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct event_base;
struct vsock_dev;

/* VM to VM: the hybrid socket of the VM with cid, when the guest may reach
 * it; 0 or -ENOENT. */
typedef int (*vsock_peer_fn)(void *ctx, uint64_t cid, char *path, size_t len);

struct vsock_dev_stats {
	uint64_t tx_packets, rx_packets, dropped;
	size_t connections;
};

/* Serves the vhost-user session on vu_fd (taken) for guest_cid and listens
 * on uds_path, which owner_uid may connect to (and whose _<port>
 * listeners must be owner_uid's). NULL with errno set. */
struct vsock_dev *vsock_dev_new(struct event_base *base, int vu_fd, uint64_t guest_cid,
    const char *uds_path, uid_t owner_uid, const char *name, vsock_peer_fn peer,
    void *peer_ctx);
/* Closes the session, every connection, and removes uds_path. */
void vsock_dev_free(struct vsock_dev *dev);
void vsock_dev_stats(const struct vsock_dev *dev, struct vsock_dev_stats *st);

#endif
