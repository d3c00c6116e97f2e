/*
 * An LD_PRELOAD library that makes emberd run out of memory on demand, for
 * the tests that check it answers or hangs up on every client and keeps
 * serving (it_control-oom).
 *
 * EMBER_TEST_MALLOC_FAIL names a control file of at least 4 KiB that the
 * test and every emberd process map shared: while its first word (every)
 * is N > 0, every Nth allocation fails with ENOMEM; the second word counts
 * the failures, the third the allocations seen while failing was on, so
 * the test can tell that something did fail. Only processes named
 * "emberd" (and their forks) fail: the hypervisors and helpers emberd
 * executes inherit the environment but allocate as usual.
 *
 * malloc, calloc, realloc and the aligned allocators are replaced; glibc's
 * own functions (strdup, asprintf, ...) allocate through them too, and so
 * does jansson, which answers a failure with NULL. libevent's own calls
 * are left to succeed: libevent 2.1 does not survive every failure inside
 * itself (bufferevent_setwatermark dereferences the callback it could not
 * allocate), so failing them would test libevent, not emberd.
 */
#include <errno.h>
#include <link.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

void *__libc_malloc(size_t);
void *__libc_calloc(size_t, size_t);
void *__libc_realloc(void *, size_t);
void *__libc_memalign(size_t, size_t);

struct fail_control {
	_Atomic uint32_t every;
	_Atomic uint32_t failed;
	_Atomic uint32_t seen;
};

static struct fail_control *control;
/* The executable segments of libevent's libraries. */
struct range {
	uintptr_t start, end;
};
static struct range spared[8];
static int nspared;

static int
find_libevent(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)size;
	(void)arg;
	if (strstr(info->dlpi_name, "/libevent") == NULL)
		return 0;
	for (int i = 0; i < info->dlpi_phnum && nspared < 8; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X))
			spared[nspared++] = (struct range){ info->dlpi_addr + ph->p_vaddr,
			    info->dlpi_addr + ph->p_vaddr + ph->p_memsz };
	}
	return 0;
}

__attribute__((constructor)) static void
fail_init(void)
{
	const char *path = getenv("EMBER_TEST_MALLOC_FAIL");
	char comm[32] = "";
	ssize_t n;
	void *p;
	int fd;

	if (path == NULL || (fd = open("/proc/self/comm", O_RDONLY | O_CLOEXEC)) < 0)
		return;
	n = read(fd, comm, sizeof(comm) - 1);
	close(fd);
	if (n <= 0 || strncmp(comm, "emberd\n", 7) != 0)
		return;
	if ((fd = open(path, O_RDWR | O_CLOEXEC)) < 0)
		return;
	p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (p == MAP_FAILED)
		return;
	dl_iterate_phdr(find_libevent, NULL);
	control = p;
}

/* Whether this allocation, called from caller, fails. */
static bool
fails(const void *caller)
{
	uint32_t every, seen;

	if (control == NULL || (every = atomic_load_explicit(&control->every,
	    memory_order_relaxed)) == 0)
		return false;
	for (int i = 0; i < nspared; i++)
		if ((uintptr_t)caller >= spared[i].start && (uintptr_t)caller < spared[i].end)
			return false;
	seen = atomic_fetch_add_explicit(&control->seen, 1, memory_order_relaxed) + 1;
	if (seen % every != 0)
		return false;
	atomic_fetch_add_explicit(&control->failed, 1, memory_order_relaxed);
	errno = ENOMEM;
	return true;
}

void *
malloc(size_t size)
{
	return fails(__builtin_return_address(0)) ? NULL : __libc_malloc(size);
}

void *
calloc(size_t n, size_t size)
{
	return fails(__builtin_return_address(0)) ? NULL : __libc_calloc(n, size);
}

void *
realloc(void *p, size_t size)
{
	/* A failed realloc leaves p as it was. */
	return size != 0 && fails(__builtin_return_address(0)) ? NULL : __libc_realloc(p, size);
}

int
posix_memalign(void **out, size_t align, size_t size)
{
	void *p;

	if (fails(__builtin_return_address(0)))
		return ENOMEM;
	if ((p = __libc_memalign(align, size)) == NULL)
		return ENOMEM;
	*out = p;
	return 0;
}

void *
aligned_alloc(size_t align, size_t size)
{
	return fails(__builtin_return_address(0)) ? NULL : __libc_memalign(align, size);
}

void *
memalign(size_t align, size_t size)
{
	return fails(__builtin_return_address(0)) ? NULL : __libc_memalign(align, size);
}
