/*
 * libFuzzer harness for the split-virtqueue walker: the input becomes guest
 * memory holding the descriptor table, avail and used rings and indirect
 * tables, after a few bytes that pick num, the starting index and
 * EVENT_IDX. Guest memory is two regions that meet in the middle, so
 * chains can straddle them. Everything is popped, touched and pushed;
 * any out-of-bounds access crashes under ASan or faults on the mapping.
 */
#include <sys/mman.h>

#include <endian.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../platform/linux/guest-mem.c"
#include "../../platform/linux/virtq.c"

#define FUZZ_MEM	0x10000

static int		 memfd = -1;
static uint8_t		*qemu;
static struct guest_mem	 mem;

static void
init_once(void)
{
	struct guest_mem_desc d[2] = {
		{ .gpa = 0, .size = 0x8000, .mmap_offset = 0 },
		{ .gpa = 0x8000, .size = 0x8000, .mmap_offset = 0x8000 },
	};
	int fds[2];

	if (memfd >= 0)
		return;
	memfd = memfd_create("fuzz-virtq", MFD_CLOEXEC);
	if (memfd < 0 || ftruncate(memfd, FUZZ_MEM) != 0)
		abort();
	qemu = mmap(NULL, FUZZ_MEM, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	if (qemu == MAP_FAILED)
		abort();
	d[0].uva = (uintptr_t)qemu;
	d[1].uva = (uintptr_t)qemu + 0x8000;
	fds[0] = fds[1] = memfd;
	guest_mem_init(&mem);
	if (guest_mem_set_table(&mem, d, fds, 2) != 0)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct virtq_elem elem;
	struct virtq vq;
	unsigned num;
	uint16_t base;
	volatile uint8_t sink = 0;

	if (size < 4)
		return 0;
	init_once();
	num = 1u << (data[0] % 9);		/* 1 .. 256 */
	base = (uint16_t)(data[1] | data[2] << 8);
	memset(qemu, 0, FUZZ_MEM);
	memcpy(qemu, data + 4, size - 4 < FUZZ_MEM ? size - 4 : FUZZ_MEM);

	virtq_init(&vq);
	vq.event_idx = data[3] & 1;
	if (virtq_set_num(&vq, num) != 0)
		abort();
	/* desc at 0, avail at 0x1000, used at 0x2000 (or wherever byte 3 says). */
	virtq_set_addr(&vq, (uintptr_t)qemu + ((data[3] >> 1) & 7) * 0x10,
	    (uintptr_t)qemu + 0x2000, (uintptr_t)qemu + 0x1000);
	virtq_set_base(&vq, base);
	if (virtq_map(&vq, &mem, true) != 0) {
		virtq_fini(&vq);
		return 0;
	}
	for (unsigned i = 0; i < 70000; i++) {
		int rc = virtq_pop(&vq, &mem, &elem);

		if (rc != 1)
			break;
		if (elem.out_num > VIRTQ_MAX_IOV || elem.in_num > VIRTQ_MAX_IOV ||
		    elem.out_len > VIRTQ_MAX_CHAIN_BYTES || elem.in_len > VIRTQ_MAX_CHAIN_BYTES)
			abort();
		for (unsigned j = 0; j < elem.out_num; j++) {
			const uint8_t *p = elem.out[j].iov_base;

			if (elem.out[j].iov_len > 0)
				sink ^= p[0] ^ p[elem.out[j].iov_len - 1];
		}
		for (unsigned j = 0; j < elem.in_num; j++) {
			uint8_t *p = elem.in[j].iov_base;

			if (elem.in[j].iov_len > 0) {
				p[0] = 0xee;
				p[elem.in[j].iov_len - 1] = 0xee;
			}
		}
		/* Batched as the vsock pump does: fill, publish every 8th. */
		virtq_fill(&vq, elem.head, (uint32_t)elem.in_len);
		if (i % 8 == 7)
			virtq_publish(&vq);
	}
	virtq_publish(&vq);
	if (virtq_is_mapped(&vq) && le16toh(vq.used->idx) != vq.used_idx)
		abort();	/* everything filled is published */
	virtq_notify(&vq);
	(void)virtq_enable_notify(&vq);
	virtq_disable_notify(&vq);
	(void)virtq_avail_empty(&vq);
	virtq_fini(&vq);
	(void)sink;
	return 0;
}
