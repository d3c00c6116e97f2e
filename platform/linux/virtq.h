/*
 * The device side of a split virtqueue (virtio 1.2 §2.7) in guest memory
 * shared through vhost-user. The driver (the guest) is untrusted: every
 * index, descriptor and address it writes is checked before use, and each
 * shared field is read once into a local copy before it is validated.
 *
 * Bad input policy:
 *  - A malformed chain (bad next index, loop, nested or misplaced indirect,
 *    readable after writable, unmapped or wrapping address, more than
 *    VIRTQ_MAX_CHAIN_BYTES or VIRTQ_MAX_IOV segments) is dropped:
 *    virtq_pop pushes it back as used with length 0, counts it in
 *    vq->dropped, records vq->last_error and moves on to the next chain.
 *  - Damage to the ring itself (a head index >= num, avail->idx more than
 *    num ahead, ring memory that does not translate) marks the queue broken:
 *    vq->broken is set with a reason, and virtq_pop returns -EIO until the
 *    frontend reconfigures the ring. Nothing is pushed on a broken ring.
 *    virtq_new_breakage hands the reason out once per breakage, so
 *    the owner logs it once whichever ring (RX or TX) it was.
 *  - Zero-length buffer descriptors are accepted and contribute no iovec.
 * Either way the VM keeps running; the device owner logs what it reads here.
 */
#ifndef EMBER_VIRTQ_H
#define EMBER_VIRTQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "guest-mem.h"

#define VIRTQ_MAX_SIZE		32768u
/* Segments per direction in one chain; Linux vsock uses at most ~20. */
#define VIRTQ_MAX_IOV		64u
/* Sum of descriptor lengths in one chain: 64 KiB vsock packets with room. */
#define VIRTQ_MAX_CHAIN_BYTES	(1u << 20)

#define VRING_DESC_F_NEXT	1u
#define VRING_DESC_F_WRITE	2u
#define VRING_DESC_F_INDIRECT	4u
#define VRING_AVAIL_F_NO_INTERRUPT 1u
#define VRING_USED_F_NO_NOTIFY	1u

/* Guest-memory layouts; every field little-endian. */
struct vring_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

struct vring_avail {
	uint16_t flags;
	uint16_t idx;
	uint16_t ring[];	/* num entries, then used_event */
};

struct vring_used_elem {
	uint32_t id;
	uint32_t len;
};

struct vring_used {
	uint16_t flags;
	uint16_t idx;
	struct vring_used_elem ring[];	/* num entries, then avail_event */
};

/* One popped chain: readable (out) and writable (in) segments. */
struct virtq_elem {
	uint16_t	head;
	unsigned	out_num;
	unsigned	in_num;
	size_t		out_len;
	size_t		in_len;
	struct iovec	out[VIRTQ_MAX_IOV];
	struct iovec	in[VIRTQ_MAX_IOV];
};

struct virtq {
	unsigned		 num;		/* 0 until SET_VRING_NUM */
	uint64_t		 desc_uva;
	uint64_t		 avail_uva;
	uint64_t		 used_uva;
	bool			 addr_set;
	/* Translated rings; NULL until virtq_map succeeds. */
	struct vring_desc	*desc;
	struct vring_avail	*avail;
	struct vring_used	*used;
	uint64_t		 mem_generation;

	uint16_t		 last_avail_idx;	/* next avail entry to pop */
	uint16_t		 used_idx;		/* shadow of used->idx */
	uint16_t		 signalled_used;
	bool			 signalled_used_valid;
	bool			 event_idx;
	bool			 indirect;		/* INDIRECT_DESC negotiated */

	int			 call_fd;	/* owned; -1 when none */

	bool			 broken;
	bool			 broken_unreported;	/* not yet handed out */
	const char		*broken_reason;
	uint64_t		 dropped;	/* malformed chains pushed with len 0 */
	const char		*last_error;
};

void virtq_init(struct virtq *vq);
/* Closes the call fd and forgets the ring (num and features stay). */
void virtq_fini(struct virtq *vq);
/* Takes ownership of fd (-1 for none), closing the previous one. */
void virtq_set_call_fd(struct virtq *vq, int fd);
/* Records ring addresses (QEMU virtual addresses); unmaps until virtq_map. */
void virtq_set_addr(struct virtq *vq, uint64_t desc, uint64_t used, uint64_t avail);
/* Sets num: a power of two in [1, VIRTQ_MAX_SIZE], else -EINVAL. */
int virtq_set_num(struct virtq *vq, unsigned num);
/* Sets last_avail_idx (SET_VRING_BASE) and clears a broken mark. */
void virtq_set_base(struct virtq *vq, uint16_t base);

/*
 * Translates the rings through mem and checks their full extent and
 * alignment; reads used->idx into used_idx when reload_used. -EINVAL when
 * num or the addresses are not set, -EFAULT when they do not translate.
 */
int virtq_map(struct virtq *vq, const struct guest_mem *mem, bool reload_used);
bool virtq_is_mapped(const struct virtq *vq);

/*
 * Pops the next well-formed chain into elem: 1 when one was popped, 0 when
 * the ring is empty, -EIO when the ring is (or just became) broken.
 * Malformed chains on the way are dropped as described above.
 */
int virtq_pop(struct virtq *vq, const struct guest_mem *mem, struct virtq_elem *elem);
/* The reason the ring broke, the first time it is asked after it broke;
 * NULL when it is not broken or the breakage was already taken. */
const char *virtq_new_breakage(struct virtq *vq);
/* Returns head as used with len bytes written; publishes used->idx. */
void virtq_push(struct virtq *vq, uint16_t head, uint32_t len);
/* Writes a used element without publishing it, so a pass returns all its
 * chains with one used->idx store (virtq_publish). */
void virtq_fill(struct virtq *vq, uint16_t head, uint32_t len);
/* Publishes every element filled so far (release store of used->idx). */
void virtq_publish(struct virtq *vq);
/*
 * Signals the call eventfd if the driver wants to hear about the entries
 * pushed since the last signal (EVENT_IDX used_event, or NO_INTERRUPT).
 * Returns 1 when it signalled, 0 when not.
 */
int virtq_notify(struct virtq *vq);
/* Asks the driver not to kick (no-op with EVENT_IDX). */
void virtq_disable_notify(struct virtq *vq);
/*
 * Asks for kicks again and re-checks: true when buffers arrived meanwhile,
 * so the caller must drain again instead of waiting for a kick.
 */
bool virtq_enable_notify(struct virtq *vq);
/* True when the driver has made no buffers available past last_avail_idx. */
bool virtq_avail_empty(struct virtq *vq);

#endif
