/*
 * What one QEMU VM's vsock device leaves behind for the next emberd (see
 * vsock-handover.c for the reasoning): the negotiated vhost-user state in
 * <vm dir>/vsock-dev.json, the device's fds in fd-keep.h's tables under
 * "vsock/<vm>/<role>", and a shared-memory record of the flows open, so
 * the guest's end of each can be reset after the restart.
 */
#ifndef EMBER_VSOCK_HANDOVER_H
#define EMBER_VSOCK_HANDOVER_H

#include <stdbool.h>
#include <stdint.h>

#include "vhost-user.h"

struct vsock_handover;

/* What vsock_handover_adopt recovered; fds taken by the caller. */
struct vsock_handover_fds {
	int vu_fd;
	int listen_fd;
	struct vu_dev_state state;
};

/* One flow an earlier emberd had open. */
struct vsock_flow {
	uint64_t local_cid;
	uint32_t local_port, peer_port;
};

/* A fresh device's record (no state yet). vm_dir holds vsock-dev.json.
 * NULL with errno. */
struct vsock_handover *vsock_handover_new(const char *vm_name, const char *vm_dir);
/*
 * The record an earlier emberd left: the fds handed back (fd_keep_take),
 * checked against vsock-dev.json. 1 with *out filled and the flows that
 * were open in flows/nflows (malloc'd, the caller frees); 0 when nothing
 * was handed over for this VM; -errno when what was is unusable (every fd
 * found is closed then).
 */
int vsock_handover_adopt(const char *vm_name, const char *vm_dir, const char *uds_path,
    struct vsock_handover **hop, struct vsock_handover_fds *out,
    struct vsock_flow **flows, unsigned *nflows);
/* Holds the session socket and the listener (fd-keep) once, at start. */
void vsock_handover_hold_fixed(struct vsock_handover *ho, int vu_fd, int listen_fd,
    bool already_stored);
/* Writes st to vsock-dev.json and holds whatever fds changed. */
void vsock_handover_save(struct vsock_handover *ho, const struct vu_dev_state *st);
/* After a restore: the fds of st are the store's already; records them. */
void vsock_handover_restored(struct vsock_handover *ho, const struct vu_dev_state *st);
/* Flow records (vsock_mux_ops.flow_open/flow_close). */
int vsock_handover_flow_open(struct vsock_handover *ho, uint64_t local_cid,
    uint32_t local_port, uint32_t peer_port);
void vsock_handover_flow_close(struct vsock_handover *ho, int slot);
/* The device is gone for good: releases every fd from the store and
 * removes vsock-dev.json. NULL is a no-op. */
void vsock_handover_free(struct vsock_handover *ho);
/* The device stays for the next emberd: forgets the fds without telling
 * the store, keeps the file. NULL is a no-op. */
void vsock_handover_detach(struct vsock_handover *ho);

#endif
