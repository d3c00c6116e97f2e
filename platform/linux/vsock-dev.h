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

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct event_base;
struct vsock_dev;

/* VM to VM: the hybrid socket of the VM with cid, when the guest may reach
 * it; 0 or -ENOENT. */
typedef int (*vsock_peer_fn)(void *ctx, uint64_t cid, char *path, size_t len);
/* A vsock connection got its ports (opened) or went away; open is how
 * many the VM has now (vsock_dev_set_flow_hook). */
typedef void (*vsock_flow_fn)(void *ctx, bool opened, uint32_t host_port, uint32_t guest_port,
    size_t open);

struct vsock_dev_stats {
	uint64_t tx_packets, rx_packets, dropped;
	uint64_t bytes_from_guest, bytes_to_guest;	/* stream payload */
	size_t connections;
};

/* Serves the vhost-user session on vu_fd (taken) for guest_cid and listens
 * on uds_path, which owner_uid may connect to (and whose _<port>
 * listeners must be owner_uid's). NULL with errno set. */
struct vsock_dev *vsock_dev_new(struct event_base *base, int vu_fd, uint64_t guest_cid,
    const char *uds_path, uid_t owner_uid, const char *name, vsock_peer_fn peer,
    void *peer_ctx);
/*
 * Serves again the device an earlier emberd served for this VM, from the
 * fds it handed over (fd-keep.h) and its vsock-dev.json (see
 * vsock-handover.c); every connection it had open is reset towards the
 * guest. NULL with errno ENOENT when nothing was handed over, another
 * errno when what was is unusable (then it is closed and dropped).
 */
struct vsock_dev *vsock_dev_adopt(struct event_base *base, uint64_t guest_cid,
    const char *uds_path, uid_t owner_uid, const char *name, vsock_peer_fn peer,
    void *peer_ctx);
/* Closes the session, every connection, and removes uds_path. */
void vsock_dev_free(struct vsock_dev *dev);
/* emberd is going but the VM stays: when a service manager keeps the
 * device's fds (fd_keep_persistent), closes ours and leaves the session,
 * the listener and vsock-dev.json to the next emberd; otherwise frees. */
void vsock_dev_detach(struct vsock_dev *dev);
void vsock_dev_stats(const struct vsock_dev *dev, struct vsock_dev_stats *st);
/* Tells fn of every connection opened and closed (fn NULL: nobody). */
void vsock_dev_set_flow_hook(struct vsock_dev *dev, vsock_flow_fn fn, void *ctx);

#endif
