/*
 * Does one io_uring submission for a ring pass's sends beat one sendmsg
 * per send? Prints figures; asserts nothing.
 *
 * The question comes from the vsock device with many connections
 * (bench-vsock, guest->host): a pass of up to 128 guest packets goes to as
 * many host sockets, one sendmsg each, where one connection's packets go
 * out merged. Here, with no device in between, n Unix socketpairs are fed
 * SIZE bytes each in turn, 128 sends to a group, by one thread, while a
 * reader thread waits in epoll and drains whatever is ready (64 KiB
 * reads): once with a sendmsg per send, once with one io_uring_enter per
 * group of IORING_OP_SENDMSG (MSG_DONTWAIT, so a full socket answers
 * EAGAIN as sendmsg does, and is tried again in a later group). Each round
 * runs both, sendmsg first; the median of the rounds' MiB/s and CPU
 * seconds per GiB (the whole process) is printed for each, with the
 * syscalls made. Raw io_uring syscalls (linux/io_uring.h); where io_uring
 * is off (a seccomp profile, kernel.io_uring_disabled) it says so and
 * prints the sendmsg figure alone.
 *
 * usage: bench-send-batch [-m MIB] [-k PAIRS] [-s SIZE] [-r ROUNDS]
 */
#include <errno.h>
#include <linux/io_uring.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "bench-util.h"

#define GROUP		128
#define SIZE_MAX_BYTES	(256 * 1024)
#define ROUNDS_MAX	15
#define READ_BYTES	(64 * 1024)

struct pairs {
	int n;
	int *wfd, *rfd;
	size_t each;
};

struct uring {
	int fd;
	unsigned *sq_tail, *sq_mask, *sq_array, *cq_head, *cq_tail, *cq_mask;
	struct io_uring_sqe *sqes;
	struct io_uring_cqe *cqes;
};

static void
die(const char *what)
{
	fprintf(stderr, "bench-send-batch: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int
uring_open(struct uring *u)
{
	struct io_uring_params p = { 0 };
	size_t sq_len, cq_len;
	char *ring;

	u->fd = (int)syscall(__NR_io_uring_setup, 2 * GROUP, &p);
	if (u->fd < 0)
		return -errno;
	sq_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
	cq_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
	ring = mmap(NULL, sq_len > cq_len ? sq_len : cq_len, PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_POPULATE, u->fd, IORING_OFF_SQ_RING);
	u->sqes = mmap(NULL, p.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_POPULATE, u->fd, IORING_OFF_SQES);
	if (ring == MAP_FAILED || u->sqes == MAP_FAILED)
		return -errno;
	u->sq_tail = (unsigned *)(ring + p.sq_off.tail);
	u->sq_mask = (unsigned *)(ring + p.sq_off.ring_mask);
	u->sq_array = (unsigned *)(ring + p.sq_off.array);
	u->cq_head = (unsigned *)(ring + p.cq_off.head);
	u->cq_tail = (unsigned *)(ring + p.cq_off.tail);
	u->cq_mask = (unsigned *)(ring + p.cq_off.ring_mask);
	u->cqes = (struct io_uring_cqe *)(ring + p.cq_off.cqes);
	return 0;
}

/* The reader: drains every ready socket until each has given its share. */
static void *
reader_main(void *arg)
{
	struct pairs *pp = arg;
	static char buf[READ_BYTES];
	struct epoll_event ev[256];
	size_t total = 0, want = pp->each * (size_t)pp->n;
	int ep = epoll_create1(EPOLL_CLOEXEC);

	if (ep < 0)
		die("epoll_create1");
	for (int i = 0; i < pp->n; i++) {
		struct epoll_event e = { .events = EPOLLIN | EPOLLET, .data.u32 = (uint32_t)i };
		if (epoll_ctl(ep, EPOLL_CTL_ADD, pp->rfd[i], &e) < 0)
			die("epoll_ctl");
	}
	while (total < want) {
		int k = epoll_wait(ep, ev, 256, 10000);
		if (k <= 0 && errno != EINTR)
			die("epoll_wait (nothing for 10 s?)");
		for (int j = 0; j < k; j++) {
			ssize_t r;
			while ((r = read(pp->rfd[ev[j].data.u32], buf, sizeof(buf))) > 0)
				total += (size_t)r;
		}
	}
	close(ep);
	return NULL;
}

struct figure {
	double mibs, cpu_per_gib;
	size_t calls;
};

/* One run: every pair gets pp->each bytes, in groups of GROUP sends to
 * successive pairs; through u when u is not NULL. */
static struct figure
run(struct pairs *pp, size_t size, struct uring *u)
{
	static char data[SIZE_MAX_BYTES];
	struct iovec iov[GROUP];
	struct msghdr msg[GROUP];
	int who[GROUP], next = 0;
	size_t *left = calloc((size_t)pp->n, sizeof(*left)), sent = 0;
	size_t want = pp->each * (size_t)pp->n, calls = 0;
	double t0, c0;
	pthread_t reader;

	if (left == NULL)
		die("calloc");
	for (int i = 0; i < pp->n; i++)
		left[i] = pp->each;
	memset(data, 0xa5, size);
	c0 = process_cpu_s();
	t0 = now_s();
	pthread_create(&reader, NULL, reader_main, pp);
	while (sent < want) {
		int np = 0;
		for (int tries = 0; tries < pp->n && np < GROUP; tries++) {
			int i = next;
			next = (next + 1) % pp->n;
			if (left[i] == 0)
				continue;
			iov[np] = (struct iovec){ data, left[i] < size ? left[i] : size };
			msg[np] = (struct msghdr){ .msg_iov = &iov[np], .msg_iovlen = 1 };
			who[np++] = i;
		}
		if (u == NULL) {
			for (int k = 0; k < np; k++, calls++) {
				ssize_t r = sendmsg(pp->wfd[who[k]], &msg[k], MSG_DONTWAIT | MSG_NOSIGNAL);
				if (r > 0) {
					left[who[k]] -= (size_t)r;
					sent += (size_t)r;
				} else if (r < 0 && errno != EAGAIN)
					die("sendmsg");
			}
			continue;
		}
		unsigned tail = *u->sq_tail;
		for (int k = 0; k < np; k++, tail++) {
			unsigned idx = tail & *u->sq_mask;
			struct io_uring_sqe *e = &u->sqes[idx];
			memset(e, 0, sizeof(*e));
			e->opcode = IORING_OP_SENDMSG;
			e->fd = pp->wfd[who[k]];
			e->addr = (uint64_t)(uintptr_t)&msg[k];
			e->len = 1;
			e->msg_flags = MSG_DONTWAIT | MSG_NOSIGNAL;
			e->user_data = (uint64_t)k;
			u->sq_array[idx] = idx;
		}
		__atomic_store_n(u->sq_tail, tail, __ATOMIC_RELEASE);
		if (syscall(__NR_io_uring_enter, u->fd, np, np, IORING_ENTER_GETEVENTS, NULL, 0) < 0)
			die("io_uring_enter");
		calls++;
		unsigned head = *u->cq_head, end = __atomic_load_n(u->cq_tail, __ATOMIC_ACQUIRE);
		for (; head != end; head++) {
			const struct io_uring_cqe *c = &u->cqes[head & *u->cq_mask];
			if (c->res > 0) {
				left[who[c->user_data]] -= (size_t)c->res;
				sent += (size_t)c->res;
			} else if (c->res < 0 && c->res != -EAGAIN) {
				errno = -c->res;
				die("IORING_OP_SENDMSG");
			}
		}
		__atomic_store_n(u->cq_head, head, __ATOMIC_RELEASE);
	}
	pthread_join(reader, NULL);
	free(left);
	return (struct figure){ (double)want / (1 << 20) / (now_s() - t0),
		(process_cpu_s() - c0) / ((double)want / (1 << 30)), calls };
}

static void
print_median(const char *what, const struct figure *f, int rounds)
{
	double mibs[ROUNDS_MAX], cpu[ROUNDS_MAX];
	size_t calls = 0;

	for (int i = 0; i < rounds; i++) {
		mibs[i] = f[i].mibs;
		cpu[i] = f[i].cpu_per_gib;
		calls += f[i].calls;
	}
	qsort(mibs, (size_t)rounds, sizeof(double), cmp_double);
	qsort(cpu, (size_t)rounds, sizeof(double), cmp_double);
	printf("%-34s %6.0f MiB/s (%.0f-%.0f), %.3f CPU s/GiB (%.3f-%.3f), %zu calls a run\n",
	    what, mibs[rounds / 2], mibs[0], mibs[rounds - 1], cpu[rounds / 2], cpu[0],
	    cpu[rounds - 1], calls / (size_t)rounds);
}

int
main(int argc, char **argv)
{
	size_t mib = 1024, size = 64 * 1024;
	int n = 1000, rounds = 5, opt, r;
	struct figure plain[ROUNDS_MAX], batched[ROUNDS_MAX];
	struct pairs pp;
	struct uring u;

	while ((opt = getopt(argc, argv, "m:k:s:r:")) != -1) {
		switch (opt) {
		case 'm': mib = strtoul(optarg, NULL, 10); break;
		case 'k': n = atoi(optarg); break;
		case 's': size = strtoul(optarg, NULL, 10); break;
		case 'r': rounds = atoi(optarg); break;
		default:
			fprintf(stderr, "usage: bench-send-batch [-m MIB] [-k PAIRS] [-s SIZE] "
			    "[-r ROUNDS]\n");
			return 2;
		}
	}
	if (mib == 0 || n < 1 || n > 4096 || size == 0 || size > SIZE_MAX_BYTES || rounds < 1 ||
	    rounds > ROUNDS_MAX) {
		fprintf(stderr, "bench-send-batch: -m > 0, -k 1-4096, -s 1-%d, -r 1-%d\n",
		    SIZE_MAX_BYTES, ROUNDS_MAX);
		return 2;
	}
	pp = (struct pairs){ n, calloc((size_t)n, sizeof(int)), calloc((size_t)n, sizeof(int)),
		(mib << 20) / (size_t)n };
	if (pp.wfd == NULL || pp.rfd == NULL)
		die("calloc");
	for (int i = 0; i < n; i++) {
		int sv[2];
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
			die("socketpair");
		pp.wfd[i] = sv[0];
		pp.rfd[i] = sv[1];
	}
	r = uring_open(&u);
	printf("== %d Unix socketpairs, %zu MiB in %zu-byte sends, %d to a group; a reader thread "
	    "on epoll; median of %d rounds (range) ==\n", n, mib, size, GROUP, rounds);
	if (r < 0)
		printf("io_uring is not available here (%s): the sendmsg figure alone\n",
		    strerror(-r));
	for (int i = 0; i < rounds; i++) {
		plain[i] = run(&pp, size, NULL);
		if (r == 0)
			batched[i] = run(&pp, size, &u);
	}
	print_median("one sendmsg per send", plain, rounds);
	if (r == 0)
		print_median("one io_uring_enter per group", batched, rounds);
	return 0;
}
