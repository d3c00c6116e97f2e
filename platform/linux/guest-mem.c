/*
 * Guest memory table (see guest-mem.h). Regions are mapped like
 * libvhost-user does: from file offset 0 for size + mmap_offset bytes, so
 * hugetlbfs's alignment rules hold, and the region starts mmap_offset in.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "guest-mem.h"

void
guest_mem_init(struct guest_mem *mem)
{
	memset(mem, 0, sizeof(*mem));
	for (unsigned i = 0; i < GUEST_MEM_MAX_REGIONS; i++)
		mem->region[i].fd = -1;
}

static void
unmap_regions(struct guest_mem_region *r, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		if (r[i].map != NULL)
			munmap(r[i].map, r[i].map_len);
		r[i].map = NULL;
		r[i].hva = NULL;
		if (r[i].fd >= 0)
			close(r[i].fd);
		r[i].fd = -1;
	}
}

void
guest_mem_clear(struct guest_mem *mem)
{
	unmap_regions(mem->region, mem->nregions);
	memset(mem->region, 0, sizeof(mem->region));
	for (unsigned i = 0; i < GUEST_MEM_MAX_REGIONS; i++)
		mem->region[i].fd = -1;
	mem->nregions = 0;
	mem->generation++;
}

static int
check_desc(const struct guest_mem_desc *d, const struct guest_mem_desc *all, unsigned i)
{
	uint64_t end;

	if (d->size == 0)
		return -EINVAL;
	if (__builtin_add_overflow(d->gpa, d->size - 1, &end) ||
	    __builtin_add_overflow(d->uva, d->size - 1, &end) ||
	    __builtin_add_overflow(d->mmap_offset, d->size, &end) || end > SIZE_MAX)
		return -EINVAL;
	for (unsigned j = 0; j < i; j++) {
		/* Both ranges are known not to wrap. */
		if (d->gpa <= all[j].gpa + (all[j].size - 1) &&
		    all[j].gpa <= d->gpa + (d->size - 1))
			return -EINVAL;
	}
	return 0;
}

int
guest_mem_set_table(struct guest_mem *mem, const struct guest_mem_desc *desc,
    const int *fds, unsigned n)
{
	struct guest_mem_region	 r[GUEST_MEM_MAX_REGIONS];
	struct stat		 st;
	int			 rc;

	if (n > GUEST_MEM_MAX_REGIONS)
		return -E2BIG;
	memset(r, 0, sizeof(r));
	for (unsigned i = 0; i < GUEST_MEM_MAX_REGIONS; i++)
		r[i].fd = -1;
	for (unsigned i = 0; i < n; i++) {
		size_t len;

		if ((rc = check_desc(&desc[i], desc, i)) != 0)
			goto fail;
		len = (size_t)(desc[i].size + desc[i].mmap_offset);
		/* Mapping past the end of a file would SIGBUS on first touch. */
		if (fstat(fds[i], &st) == -1) {
			rc = -errno;
			goto fail;
		}
		if (!S_ISREG(st.st_mode) || st.st_size < 0 || (uint64_t)st.st_size < len) {
			rc = -EINVAL;
			goto fail;
		}
		r[i].map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE,
		    fds[i], 0);
		if (r[i].map == MAP_FAILED) {
			rc = -errno;
			r[i].map = NULL;
			goto fail;
		}
		r[i].map_len = len;
		if ((r[i].fd = fcntl(fds[i], F_DUPFD_CLOEXEC, 3)) < 0) {
			rc = -errno;
			goto fail;
		}
		r[i].hva = (uint8_t *)r[i].map + desc[i].mmap_offset;
		r[i].gpa = desc[i].gpa;
		r[i].size = desc[i].size;
		r[i].uva = desc[i].uva;
		r[i].mmap_offset = desc[i].mmap_offset;
	}
	unmap_regions(mem->region, mem->nregions);
	memcpy(mem->region, r, sizeof(r));
	mem->nregions = n;
	mem->generation++;
	return 0;
fail:
	unmap_regions(r, n);
	return rc;
}

static const struct guest_mem_region *
find_gpa(const struct guest_mem *mem, uint64_t gpa)
{
	for (unsigned i = 0; i < mem->nregions; i++) {
		const struct guest_mem_region *r = &mem->region[i];

		if (gpa >= r->gpa && gpa - r->gpa < r->size)
			return r;
	}
	return NULL;
}

int
gpa_to_iov(const struct guest_mem *mem, uint64_t gpa, uint64_t len,
    struct iovec *iov, unsigned max, unsigned *n)
{
	uint64_t last;
	unsigned i = 0;

	*n = 0;
	if (len == 0)
		return 0;
	if (__builtin_add_overflow(gpa, len - 1, &last))
		return -EFAULT;
	while (len > 0) {
		const struct guest_mem_region *r = find_gpa(mem, gpa);
		uint64_t off, chunk;

		if (r == NULL)
			return -EFAULT;
		if (i == max)
			return -ENOBUFS;
		off = gpa - r->gpa;
		chunk = r->size - off;
		if (chunk > len)
			chunk = len;
		iov[i].iov_base = r->hva + off;
		iov[i].iov_len = (size_t)chunk;
		i++;
		gpa += chunk;
		len -= chunk;
	}
	*n = i;
	return 0;
}

void *
gpa_to_hva(const struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
	const struct guest_mem_region *r = find_gpa(mem, gpa);

	if (r == NULL || len > r->size - (gpa - r->gpa))
		return NULL;
	return r->hva + (gpa - r->gpa);
}

void *
uva_to_hva(const struct guest_mem *mem, uint64_t uva, uint64_t len)
{
	for (unsigned i = 0; i < mem->nregions; i++) {
		const struct guest_mem_region *r = &mem->region[i];

		if (uva >= r->uva && uva - r->uva < r->size) {
			if (len > r->size - (uva - r->uva))
				return NULL;
			return r->hva + (uva - r->uva);
		}
	}
	return NULL;
}

size_t
iov_to_buf(const struct iovec *iov, unsigned n, size_t off, void *buf, size_t len)
{
	size_t done = 0;

	for (unsigned i = 0; i < n && done < len; i++) {
		size_t chunk;

		if (off >= iov[i].iov_len) {
			off -= iov[i].iov_len;
			continue;
		}
		chunk = iov[i].iov_len - off;
		if (chunk > len - done)
			chunk = len - done;
		memcpy((uint8_t *)buf + done, (const uint8_t *)iov[i].iov_base + off, chunk);
		done += chunk;
		off = 0;
	}
	return done;
}

size_t
buf_to_iov(const struct iovec *iov, unsigned n, size_t off, const void *buf, size_t len)
{
	size_t done = 0;

	for (unsigned i = 0; i < n && done < len; i++) {
		size_t chunk;

		if (off >= iov[i].iov_len) {
			off -= iov[i].iov_len;
			continue;
		}
		chunk = iov[i].iov_len - off;
		if (chunk > len - done)
			chunk = len - done;
		memcpy((uint8_t *)iov[i].iov_base + off, (const uint8_t *)buf + done, chunk);
		done += chunk;
		off = 0;
	}
	return done;
}

size_t
iov_length(const struct iovec *iov, unsigned n)
{
	size_t len = 0;

	for (unsigned i = 0; i < n; i++)
		len += iov[i].iov_len;
	return len;
}
