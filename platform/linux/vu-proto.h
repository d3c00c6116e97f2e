/*
 * The vhost-user wire protocol as QEMU 7.2 speaks it to a virtio-vsock
 * backend: message ids, header flags, payload layouts and feature bits
 * (QEMU docs/interop/vhost-user.rst). Everything is host-endian on the
 * socket; the virtio config space inside GET_CONFIG is little-endian.
 */
#ifndef EMBER_VU_PROTO_H
#define EMBER_VU_PROTO_H

#include <stdint.h>

enum vu_request {
	VU_GET_FEATURES = 1,
	VU_SET_FEATURES = 2,
	VU_SET_OWNER = 3,
	VU_RESET_OWNER = 4,
	VU_SET_MEM_TABLE = 5,
	VU_SET_LOG_BASE = 6,
	VU_SET_LOG_FD = 7,
	VU_SET_VRING_NUM = 8,
	VU_SET_VRING_ADDR = 9,
	VU_SET_VRING_BASE = 10,
	VU_GET_VRING_BASE = 11,
	VU_SET_VRING_KICK = 12,
	VU_SET_VRING_CALL = 13,
	VU_SET_VRING_ERR = 14,
	VU_GET_PROTOCOL_FEATURES = 15,
	VU_SET_PROTOCOL_FEATURES = 16,
	VU_GET_QUEUE_NUM = 17,
	VU_SET_VRING_ENABLE = 18,
	VU_GET_CONFIG = 24,
	VU_SET_CONFIG = 25,
};

/* Header flags: bits 0-1 version, then REPLY and NEED_REPLY. */
#define VU_FLAG_VERSION_MASK	0x3u
#define VU_FLAG_VERSION		0x1u
#define VU_FLAG_REPLY		0x4u
#define VU_FLAG_NEED_REPLY	0x8u
/* QEMU accepts a reply only with exactly these flags. */
#define VU_REPLY_FLAGS		(VU_FLAG_VERSION | VU_FLAG_REPLY)

#define VU_MAX_PAYLOAD		4096u
#define VU_MAX_FDS		8u
#define VU_MAX_MEM_REGIONS	8u
#define VU_MAX_CONFIG_SIZE	256u

/* SET_VRING_KICK/CALL/ERR u64 payload. */
#define VU_VRING_IDX_MASK	0xffu
#define VU_VRING_NOFD		0x100u

/* Virtio and vhost-user feature bits (SET/GET_FEATURES). */
#define VIRTIO_RING_F_INDIRECT_DESC	28
#define VIRTIO_RING_F_EVENT_IDX		29
#define VHOST_USER_F_PROTOCOL_FEATURES	30
#define VIRTIO_F_VERSION_1		32

/* Protocol feature bits (SET/GET_PROTOCOL_FEATURES). */
#define VU_PROTOCOL_F_MQ		0
#define VU_PROTOCOL_F_REPLY_ACK		3
#define VU_PROTOCOL_F_CONFIG		9

/* What ember offers: 0x170000000 and 0x209. */
#define VU_OFFERED_FEATURES						\
	((1ull << VIRTIO_F_VERSION_1) | (1ull << VHOST_USER_F_PROTOCOL_FEATURES) | \
	 (1ull << VIRTIO_RING_F_EVENT_IDX) | (1ull << VIRTIO_RING_F_INDIRECT_DESC))
#define VU_OFFERED_PROTOCOL_FEATURES					\
	((1ull << VU_PROTOCOL_F_MQ) | (1ull << VU_PROTOCOL_F_REPLY_ACK) | \
	 (1ull << VU_PROTOCOL_F_CONFIG))

struct vu_hdr {
	uint32_t request;
	uint32_t flags;
	uint32_t size;
} __attribute__((packed));

struct vu_vring_state {
	uint32_t index;
	uint32_t num;
} __attribute__((packed));

/* Note the order: desc, used, avail. All three are frontend (QEMU) virtual
 * addresses; log is the guest-physical address of the used ring. */
struct vu_vring_addr {
	uint32_t index;
	uint32_t flags;
	uint64_t desc;
	uint64_t used;
	uint64_t avail;
	uint64_t log;
} __attribute__((packed));

struct vu_mem_region {
	uint64_t gpa;
	uint64_t size;
	uint64_t uva;
	uint64_t mmap_offset;
} __attribute__((packed));

/* SET_MEM_TABLE payload: this, then nregions vu_mem_region. */
struct vu_mem_hdr {
	uint32_t nregions;
	uint32_t padding;
} __attribute__((packed));

/* GET/SET_CONFIG payload: this, then size bytes of config space. */
struct vu_config_hdr {
	uint32_t offset;
	uint32_t size;
	uint32_t flags;
} __attribute__((packed));

_Static_assert(sizeof(struct vu_hdr) == 12, "vhost-user header is 12 bytes");
_Static_assert(sizeof(struct vu_vring_state) == 8, "vring state is 8 bytes");
_Static_assert(sizeof(struct vu_vring_addr) == 40, "vring addr is 40 bytes");
_Static_assert(sizeof(struct vu_mem_region) == 32, "memory region is 32 bytes");
_Static_assert(sizeof(struct vu_mem_hdr) == 8, "memory table header is 8 bytes");
_Static_assert(sizeof(struct vu_config_hdr) == 12, "config header is 12 bytes");

#endif
