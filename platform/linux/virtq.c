/*
 * Split virtqueue, device side (see virtq.h). Barriers follow the virtio
 * memory model: an acquire load of avail->idx before reading entries and
 * descriptors, a release store of used->idx after the used elements, and a
 * full fence between publishing used->idx (or avail_event) and reading the
 * driver's used_event, flags or avail->idx.
 */
#include <endian.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "virtq.h"

static inline uint16_t
ld16(const uint16_t *p)
{
	return le16toh(__atomic_load_n(p, __ATOMIC_RELAXED));
}

static inline void
st16(uint16_t *p, uint16_t v)
{
	__atomic_store_n(p, htole16(v), __ATOMIC_RELAXED);
}

static inline uint16_t
avail_idx_acquire(const struct virtq *vq)
{
	return le16toh(__atomic_load_n(&vq->avail->idx, __ATOMIC_ACQUIRE));
}

static inline uint16_t *
used_event_ptr(const struct virtq *vq)
{
	return &vq->avail->ring[vq->num];
}

static inline uint16_t *
avail_event_ptr(const struct virtq *vq)
{
	return (uint16_t *)(void *)&vq->used->ring[vq->num];
}

void
virtq_init(struct virtq *vq)
{
	memset(vq, 0, sizeof(*vq));
	vq->call_fd = -1;
}

static void
clear_broken(struct virtq *vq)
{
	vq->broken = false;
	vq->broken_reason = NULL;
	vq->broken_unreported = false;
}

static void
unmap_rings(struct virtq *vq)
{
	vq->desc = NULL;
	vq->avail = NULL;
	vq->used = NULL;
}

void
virtq_fini(struct virtq *vq)
{
	virtq_set_call_fd(vq, -1);
	unmap_rings(vq);
	vq->addr_set = false;
	clear_broken(vq);
}

void
virtq_set_call_fd(struct virtq *vq, int fd)
{
	if (vq->call_fd >= 0)
		close(vq->call_fd);
	vq->call_fd = fd;
}

void
virtq_set_addr(struct virtq *vq, uint64_t desc, uint64_t used, uint64_t avail)
{
	unmap_rings(vq);
	vq->desc_uva = desc;
	vq->used_uva = used;
	vq->avail_uva = avail;
	vq->addr_set = true;
	clear_broken(vq);
}

int
virtq_set_num(struct virtq *vq, unsigned num)
{
	if (num == 0 || num > VIRTQ_MAX_SIZE || (num & (num - 1)) != 0)
		return -EINVAL;
	unmap_rings(vq);
	vq->num = num;
	clear_broken(vq);
	return 0;
}

void
virtq_set_base(struct virtq *vq, uint16_t base)
{
	vq->last_avail_idx = base;
	vq->signalled_used_valid = false;
	clear_broken(vq);
}

int
virtq_map(struct virtq *vq, const struct guest_mem *mem, bool reload_used)
{
	void *desc, *avail, *used;
	uint64_t n = vq->num;

	unmap_rings(vq);
	if (n == 0 || !vq->addr_set)
		return -EINVAL;
	/* Whole extents, including used_event and avail_event. */
	desc = uva_to_hva(mem, vq->desc_uva, 16 * n);
	avail = uva_to_hva(mem, vq->avail_uva, 6 + 2 * n);
	used = uva_to_hva(mem, vq->used_uva, 6 + 8 * n);
	if (desc == NULL || avail == NULL || used == NULL)
		return -EFAULT;
	if ((uintptr_t)desc % 16 != 0 || (uintptr_t)avail % 2 != 0 || (uintptr_t)used % 4 != 0)
		return -EINVAL;
	vq->desc = desc;
	vq->avail = avail;
	vq->used = used;
	vq->mem_generation = mem->generation;
	if (reload_used) {
		vq->used_idx = ld16(&vq->used->idx);
		vq->signalled_used_valid = false;
	}
	return 0;
}

bool
virtq_is_mapped(const struct virtq *vq)
{
	return vq->desc != NULL;
}

static int
mark_broken(struct virtq *vq, const char *why)
{
	vq->broken = true;
	vq->broken_reason = why;
	vq->broken_unreported = true;
	return -EIO;
}

const char *
virtq_new_breakage(struct virtq *vq)
{
	if (!vq->broken || !vq->broken_unreported)
		return NULL;
	vq->broken_unreported = false;
	return vq->broken_reason;
}

/* Reads entry i of an indirect table at gpa, wherever it lies. */
static const char *
read_indirect(const struct guest_mem *mem, uint64_t table, unsigned i, struct vring_desc *d)
{
	struct iovec iov[2];
	unsigned n;
	uint64_t gpa;

	if (__builtin_add_overflow(table, (uint64_t)i * 16, &gpa) ||
	    gpa_to_iov(mem, gpa, sizeof(*d), iov, 2, &n) != 0)
		return "indirect table not in guest memory";
	iov_to_buf(iov, n, 0, d, sizeof(*d));
	return NULL;
}

/* Walks the chain at head into elem; NULL, or why it is malformed. */
static const char *
walk_chain(const struct virtq *vq, const struct guest_mem *mem, uint16_t head,
    struct virtq_elem *elem)
{
	struct vring_desc	 d;
	uint64_t		 table = 0, total = 0;
	unsigned		 count = 0, max = vq->num, i = head;
	bool			 indirect = false, seen_write = false;
	const char		*why;

	elem->head = head;
	elem->out_num = elem->in_num = 0;
	elem->out_len = elem->in_len = 0;

	memcpy(&d, &vq->desc[i], sizeof(d));
	if (le16toh(d.flags) & VRING_DESC_F_INDIRECT) {
		uint32_t len = le32toh(d.len);

		if (le16toh(d.flags) & VRING_DESC_F_NEXT)
			return "indirect descriptor also has NEXT";
		if (len == 0 || len % 16 != 0)
			return "indirect table length is not a non-zero multiple of 16";
		if (len / 16 > VIRTQ_MAX_SIZE)
			return "indirect table has more than 32768 entries";
		indirect = true;
		table = le64toh(d.addr);
		max = len / 16;
		i = 0;
		if ((why = read_indirect(mem, table, i, &d)) != NULL)
			return why;
	}
	for (;;) {
		uint16_t flags = le16toh(d.flags);
		uint32_t len = le32toh(d.len);
		uint64_t addr = le64toh(d.addr);
		unsigned n;
		int rc;

		if (++count > max)
			return "descriptor chain loops or is longer than its table";
		if (flags & VRING_DESC_F_INDIRECT)
			return indirect ? "nested indirect descriptor" :
			    "indirect descriptor inside a chain";
		total += len;
		if (total > VIRTQ_MAX_CHAIN_BYTES)
			return "chain longer than VIRTQ_MAX_CHAIN_BYTES";
		if (flags & VRING_DESC_F_WRITE) {
			seen_write = true;
			rc = gpa_to_iov(mem, addr, len, elem->in + elem->in_num,
			    VIRTQ_MAX_IOV - elem->in_num, &n);
			elem->in_num += n;
			elem->in_len += len;
		} else {
			if (seen_write)
				return "readable descriptor after a writable one";
			rc = gpa_to_iov(mem, addr, len, elem->out + elem->out_num,
			    VIRTQ_MAX_IOV - elem->out_num, &n);
			elem->out_num += n;
			elem->out_len += len;
		}
		if (rc == -ENOBUFS)
			return "chain needs more than VIRTQ_MAX_IOV segments";
		if (rc != 0)
			return "buffer address not in guest memory";
		if (!(flags & VRING_DESC_F_NEXT))
			return NULL;
		i = le16toh(d.next);
		if (i >= max)
			return "next index out of range";
		if (indirect) {
			if ((why = read_indirect(mem, table, i, &d)) != NULL)
				return why;
		} else
			memcpy(&d, &vq->desc[i], sizeof(d));
	}
}

int
virtq_pop(struct virtq *vq, const struct guest_mem *mem, struct virtq_elem *elem)
{
	uint16_t avail_idx, pending;

	if (vq->broken)
		return -EIO;
	if (vq->desc == NULL || vq->mem_generation != mem->generation) {
		if (virtq_map(vq, mem, false) != 0)
			return mark_broken(vq, "ring addresses do not translate");
	}
	avail_idx = avail_idx_acquire(vq);
	pending = (uint16_t)(avail_idx - vq->last_avail_idx);
	if (pending > vq->num)
		return mark_broken(vq, "avail index moved more than num ahead");
	/* At most the entries seen now, so a guest cannot keep us here. */
	while (pending-- > 0) {
		uint16_t head = ld16(&vq->avail->ring[vq->last_avail_idx & (vq->num - 1)]);
		const char *why;

		if (head >= vq->num)
			return mark_broken(vq, "avail ring names a descriptor past num");
		vq->last_avail_idx++;
		if (vq->event_idx)
			st16(avail_event_ptr(vq), vq->last_avail_idx);
		if ((why = walk_chain(vq, mem, head, elem)) == NULL)
			return 1;
		vq->dropped++;
		vq->last_error = why;
		virtq_push(vq, head, 0);
	}
	return 0;
}

void
virtq_fill(struct virtq *vq, uint16_t head, uint32_t len)
{
	struct vring_used_elem *e;

	if (vq->used == NULL)
		return;
	e = &vq->used->ring[vq->used_idx & (vq->num - 1)];
	__atomic_store_n(&e->id, htole32((uint32_t)head), __ATOMIC_RELAXED);
	__atomic_store_n(&e->len, htole32(len), __ATOMIC_RELAXED);
	vq->used_idx++;
}

void
virtq_publish(struct virtq *vq)
{
	if (vq->used == NULL)
		return;
	__atomic_store_n(&vq->used->idx, htole16(vq->used_idx), __ATOMIC_RELEASE);
}

void
virtq_push(struct virtq *vq, uint16_t head, uint32_t len)
{
	virtq_fill(vq, head, len);
	virtq_publish(vq);
}

/* linux virtio_ring.h vring_need_event, restated. */
static inline bool
need_event(uint16_t event, uint16_t new_idx, uint16_t old)
{
	return (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old);
}

/* Remembers that the driver has heard about everything up to used_idx. */
static void
mark_signalled(struct virtq *vq)
{
	vq->signalled_used = vq->used_idx;
	vq->signalled_used_valid = true;
}

/*
 * signalled_used only moves once the driver has been told (or has said it
 * does not want to be): advancing it on a missing call fd or a failed write
 * would make need_event() see the driver's used_event as already passed, and
 * with EVENT_IDX no later interrupt would ever go out for it.
 */
int
virtq_notify(struct virtq *vq)
{
	uint16_t old = vq->signalled_used, now = vq->used_idx;
	bool valid = vq->signalled_used_valid;
	uint64_t one = 1;
	ssize_t n;

	if (vq->used == NULL)
		return 0;
	if (valid && old == now)
		return 0;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (vq->event_idx) {
		if (valid && !need_event(ld16(used_event_ptr(vq)), now, old)) {
			mark_signalled(vq);
			return 0;
		}
	} else if (ld16(&vq->avail->flags) & VRING_AVAIL_F_NO_INTERRUPT) {
		mark_signalled(vq);
		return 0;
	}
	if (vq->call_fd < 0)
		return 0;
	do
		n = write(vq->call_fd, &one, sizeof(one));
	while (n < 0 && errno == EINTR);
	/* Not delivered (EAGAIN included): the next notify tries again. */
	if (n != sizeof(one))
		return 0;
	mark_signalled(vq);
	return 1;
}

void
virtq_disable_notify(struct virtq *vq)
{
	if (vq->used == NULL || vq->event_idx)
		return;
	st16(&vq->used->flags, ld16(&vq->used->flags) | VRING_USED_F_NO_NOTIFY);
}

bool
virtq_enable_notify(struct virtq *vq)
{
	if (vq->used == NULL || vq->broken)
		return false;
	if (vq->event_idx)
		st16(avail_event_ptr(vq), vq->last_avail_idx);
	else
		st16(&vq->used->flags,
		    ld16(&vq->used->flags) & (uint16_t)~VRING_USED_F_NO_NOTIFY);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return avail_idx_acquire(vq) != vq->last_avail_idx;
}

bool
virtq_avail_empty(struct virtq *vq)
{
	if (vq->avail == NULL || vq->broken)
		return true;
	return avail_idx_acquire(vq) == vq->last_avail_idx;
}
