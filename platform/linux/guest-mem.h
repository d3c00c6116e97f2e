/*
 * A vhost-user frontend's memory table, mapped into emberd: up to eight
 * regions, each an fd (memfd, /dev/shm or hugetlbfs file) that QEMU shares
 * with the guest. Descriptor buffers are guest-physical addresses (gpa);
 * ring addresses from SET_VRING_ADDR are QEMU's own virtual addresses (uva).
 * Both are translated here, with every range checked against one region so
 * nothing a guest or QEMU writes can make emberd touch memory outside the
 * mappings. The generation counter changes whenever the table is replaced,
 * so holders of translated pointers know to translate again. Each region
 * keeps its own copy of the file descriptor, so the table can be handed
 * to a later emberd (fd-keep.h) and mapped again there.
 */
#ifndef EMBER_GUEST_MEM_H
#define EMBER_GUEST_MEM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define GUEST_MEM_MAX_REGIONS 8

/* One region as SET_MEM_TABLE describes it. */
struct guest_mem_desc {
	uint64_t gpa;
	uint64_t size;
	uint64_t uva;
	uint64_t mmap_offset;
};

struct guest_mem_region {
	uint64_t	 gpa;
	uint64_t	 size;
	uint64_t	 uva;
	uint64_t	 mmap_offset;
	void		*map;		/* mmap result, map_len bytes */
	size_t		 map_len;
	uint8_t		*hva;		/* map + mmap_offset */
	int		 fd;		/* owned copy; -1 when unused */
};

struct guest_mem {
	struct guest_mem_region	region[GUEST_MEM_MAX_REGIONS];
	unsigned		nregions;
	uint64_t		generation;
};

void guest_mem_init(struct guest_mem *mem);
/*
 * Replaces the table: maps each fds[i] (borrowed; the caller closes them,
 * the table keeps its own close-on-exec copy) with MAP_SHARED from offset
 * 0 for size + mmap_offset bytes. Checks that
 * regions are non-empty, do not wrap, do not overlap in gpa, and fit in
 * their file. On failure the previous table stays in place and -errno is
 * returned; on success the old regions are unmapped and generation moves.
 */
int guest_mem_set_table(struct guest_mem *mem, const struct guest_mem_desc *desc,
    const int *fds, unsigned n);
/* Unmaps everything and closes the fds (teardown); generation moves. */
void guest_mem_clear(struct guest_mem *mem);

/*
 * Translates [gpa, gpa+len) into at most max iovecs, one per region it
 * crosses; *n receives the count. len 0 gives *n = 0. -EFAULT when any byte
 * is unmapped or gpa+len wraps, -ENOBUFS when more than max are needed.
 */
int gpa_to_iov(const struct guest_mem *mem, uint64_t gpa, uint64_t len,
    struct iovec *iov, unsigned max, unsigned *n);
/* A host pointer to [gpa, gpa+len) when it lies inside one region, or NULL. */
void *gpa_to_hva(const struct guest_mem *mem, uint64_t gpa, uint64_t len);
/* A host pointer to QEMU's [uva, uva+len) when inside one region, or NULL. */
void *uva_to_hva(const struct guest_mem *mem, uint64_t uva, uint64_t len);

/* Copies from scatter lists, starting off bytes in; returns bytes copied. */
size_t iov_to_buf(const struct iovec *iov, unsigned n, size_t off, void *buf, size_t len);
size_t buf_to_iov(const struct iovec *iov, unsigned n, size_t off, const void *buf,
    size_t len);
size_t iov_length(const struct iovec *iov, unsigned n);

#endif
