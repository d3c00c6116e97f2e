/*
 * Unit tests for platform/linux/vhost-user with a fake QEMU 7.2 frontend on
 * a socketpair: the exact init/start/stop sequence of the reference trace
 * with real memfd and eventfd fds, stop/start with a preserved base versus a
 * device reset, EOF teardown without fd leaks, fragmented delivery, unknown
 * and malformed requests, and an oversize payload. The libevent loop runs in
 * non-blocking steps between messages.
 */
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include <check.h>
#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "linux/vhost-user.h"
#include "linux/vu-proto.h"
#include "test-util.h"

#define MEM_SIZE	0x200000
#define R1_UVA		0x7f2e3c0ff000ull	/* region 1: gpa 0x100000, offset 0x100000 */
#define RING_GPA(q)	(0x110000ull + (q) * 0x10000)
#define NUM		256

struct rec {
	int start[2], stop[2], kick[2], reset, disconnect;
	struct vu_dev *dev;
	bool free_on_disconnect;
};

static struct event_base *base;
static struct vu_dev *dev;
static struct rec rec;
static int fe = -1;		/* the frontend's end */
static int memfd = -1;
static uint8_t *mem;		/* memfd seen by the test (the "guest") */
static int kick[2] = { -1, -1 };

static void on_ring_start(void *ctx, unsigned q) { ((struct rec *)ctx)->start[q]++; }
static void on_ring_stop(void *ctx, unsigned q) { ((struct rec *)ctx)->stop[q]++; }
static void on_reset(void *ctx) { ((struct rec *)ctx)->reset++; }

/* Device owner stand-in: drains the ring and returns every chain. */
static void
on_kick(void *ctx, unsigned q)
{
	struct rec *r = ctx;
	struct virtq *vq = vu_dev_vq(r->dev, q);
	struct virtq_elem elem;

	r->kick[q]++;
	while (virtq_pop(vq, vu_dev_mem(r->dev), &elem) == 1)
		virtq_push(vq, elem.head, 0);
	virtq_notify(vq);
}

static void
on_disconnect(void *ctx)
{
	struct rec *r = ctx;

	r->disconnect++;
	if (r->free_on_disconnect) {
		vu_dev_free(r->dev);
		dev = NULL;
	}
}

static const struct vu_dev_ops ops = {
	on_ring_start, on_ring_stop, on_kick, on_reset, on_disconnect, NULL,
};

static int
count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	ck_assert_ptr_nonnull(d);
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static void
step(void)
{
	for (int i = 0; i < 4; i++)
		event_base_loop(base, EVLOOP_NONBLOCK);
}

static void
setup(void)
{
	int sv[2];

	memset(&rec, 0, sizeof(rec));
	base = event_base_new();
	ck_assert_ptr_nonnull(base);
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	fe = sv[1];
	dev = vu_dev_new(base, sv[0], 0x1234, &ops, &rec);
	ck_assert_ptr_nonnull(dev);
	rec.dev = dev;
	memfd = memfd_create("vhost-user-test", MFD_CLOEXEC);
	ck_assert_int_ge(memfd, 0);
	ck_assert_int_eq(ftruncate(memfd, MEM_SIZE), 0);
	mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	ck_assert_ptr_ne(mem, MAP_FAILED);
}

static void
teardown(void)
{
	vu_dev_free(dev);
	dev = NULL;
	if (fe >= 0)
		close(fe);
	fe = -1;
	for (int q = 0; q < 2; q++) {
		if (kick[q] >= 0)
			close(kick[q]);
		kick[q] = -1;
	}
	munmap(mem, MEM_SIZE);
	close(memfd);
	event_base_free(base);
}

static void
send_msg(uint32_t req, uint32_t flags, const void *payload, uint32_t size,
    const int *fds, unsigned nfds)
{
	union {
		struct cmsghdr	align;
		char		buf[CMSG_SPACE(8 * sizeof(int))];
	} cbuf;
	struct vu_hdr h = { req, flags, size };
	struct iovec iov[2] = { { &h, sizeof(h) }, { (void *)payload, size } };
	struct msghdr msg = { .msg_iov = iov, .msg_iovlen = size > 0 ? 2 : 1 };

	if (nfds > 0) {
		struct cmsghdr *cm;

		memset(&cbuf, 0, sizeof(cbuf));
		msg.msg_control = cbuf.buf;
		msg.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
		cm = CMSG_FIRSTHDR(&msg);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(nfds * sizeof(int));
		memcpy(CMSG_DATA(cm), fds, nfds * sizeof(int));
	}
	ck_assert_int_eq(sendmsg(fe, &msg, MSG_NOSIGNAL), (ssize_t)(sizeof(h) + size));
	step();
}

static void
send_u64(uint32_t req, uint32_t flags, uint64_t v)
{
	send_msg(req, flags, &v, sizeof(v), NULL, 0);
}

static void
send_state(uint32_t req, uint32_t index, uint32_t num)
{
	struct vu_vring_state s = { index, num };

	send_msg(req, VU_FLAG_VERSION, &s, sizeof(s), NULL, 0);
}

static bool
readable(void)
{
	struct pollfd p = { .fd = fe, .events = POLLIN };

	return poll(&p, 1, 0) == 1;
}

static void
read_full(void *buf, size_t len)
{
	size_t got = 0;

	while (got < len) {
		struct pollfd p = { .fd = fe, .events = POLLIN };
		ssize_t n;

		ck_assert_int_eq(poll(&p, 1, 2000), 1);
		n = read(fe, (uint8_t *)buf + got, len - got);
		ck_assert_int_gt(n, 0);
		got += (size_t)n;
	}
}

/* Reads one reply and checks its header exactly. */
static void
expect_reply(uint32_t req, void *payload, uint32_t size)
{
	struct vu_hdr h;

	read_full(&h, sizeof(h));
	ck_assert_uint_eq(h.request, req);
	ck_assert_uint_eq(h.flags, 0x5);
	ck_assert_uint_eq(h.size, size);
	if (size > 0)
		read_full(payload, size);
}

static uint64_t
expect_u64(uint32_t req)
{
	uint64_t v;

	expect_reply(req, &v, sizeof(v));
	return v;
}

static void
send_fd(uint32_t req, uint64_t v, int fd)
{
	send_msg(req, VU_FLAG_VERSION, &v, sizeof(v), &fd, 1);
}

/* An eventfd sent and closed on our side, as QEMU keeps its own copy. */
static void
send_eventfd(uint32_t req, unsigned q)
{
	int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

	send_fd(req, q, fd);
	close(fd);
}

static void
send_mem_table(void)
{
	struct {
		struct vu_mem_hdr	h;
		struct vu_mem_region	r[2];
	} __attribute__((packed)) t = {
		{ 2, 0 },
		{ { 0x0, 0xf0000, 0x7f2e3bfff000ull, 0x0 },
		  { 0x100000, 0x100000, R1_UVA, 0x100000 } },
	};
	int fds[2] = { memfd, memfd };

	ck_assert_uint_eq(sizeof(t), 72);
	send_msg(VU_SET_MEM_TABLE, VU_FLAG_VERSION | VU_FLAG_NEED_REPLY, &t, sizeof(t), fds, 2);
	ck_assert_uint_eq(expect_u64(VU_SET_MEM_TABLE), 0);
}

static uint64_t
ring_uva(unsigned q, unsigned part)
{
	/* desc, then avail at +0x1000, used at +0x2000. */
	return R1_UVA + (RING_GPA(q) - 0x100000) + part * 0x1000;
}

static void
setup_ring(unsigned q, uint32_t base_idx)
{
	struct vu_vring_addr a = {
		.index = q, .flags = 0,
		.desc = ring_uva(q, 0), .used = ring_uva(q, 2), .avail = ring_uva(q, 1),
		.log = RING_GPA(q) + 0x2000,
	};

	send_state(VU_SET_VRING_NUM, q, NUM);
	send_state(VU_SET_VRING_BASE, q, base_idx);
	send_msg(VU_SET_VRING_ADDR, VU_FLAG_VERSION, &a, sizeof(a), NULL, 0);
	if (kick[q] >= 0)
		close(kick[q]);
	kick[q] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	send_fd(VU_SET_VRING_KICK, q, kick[q]);
}

/* Guest side: posts count one-descriptor chains on ring q. */
static void
guest_post(unsigned q, unsigned count)
{
	struct vring_desc *desc = (void *)(mem + RING_GPA(q));
	struct vring_avail *avail = (void *)(mem + RING_GPA(q) + 0x1000);
	uint16_t idx = le16toh(avail->idx);

	for (unsigned i = 0; i < count; i++, idx++) {
		unsigned head = idx % NUM;

		desc[head].addr = htole64(0x150000 + head * 64);
		desc[head].len = htole32(64);
		desc[head].flags = 0;
		avail->ring[head] = htole16((uint16_t)head);
	}
	avail->idx = htole16(idx);
}

static void
guest_kick(unsigned q)
{
	uint64_t one = 1;

	ck_assert_int_eq(write(kick[q], &one, sizeof(one)), sizeof(one));
	step();
}

static void
init_sequence(void)
{
	uint8_t cfg[20] = { 0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0 };
	uint8_t reply[20];

	send_msg(VU_GET_FEATURES, VU_FLAG_VERSION, NULL, 0, NULL, 0);
	ck_assert_uint_eq(expect_u64(VU_GET_FEATURES), 0x170000000ull);
	send_msg(VU_GET_PROTOCOL_FEATURES, VU_FLAG_VERSION, NULL, 0, NULL, 0);
	ck_assert_uint_eq(expect_u64(VU_GET_PROTOCOL_FEATURES), 0x209);
	send_u64(VU_SET_PROTOCOL_FEATURES, VU_FLAG_VERSION, 0x209);
	send_msg(VU_GET_QUEUE_NUM, VU_FLAG_VERSION, NULL, 0, NULL, 0);
	ck_assert_uint_eq(expect_u64(VU_GET_QUEUE_NUM), 2);
	send_msg(VU_SET_OWNER, VU_FLAG_VERSION, NULL, 0, NULL, 0);
	send_msg(VU_GET_FEATURES, VU_FLAG_VERSION, NULL, 0, NULL, 0);
	ck_assert_uint_eq(expect_u64(VU_GET_FEATURES), 0x170000000ull);
	for (unsigned q = 0; q < 2; q++) {
		send_eventfd(VU_SET_VRING_CALL, q);
		send_eventfd(VU_SET_VRING_ERR, q);
	}
	send_msg(VU_GET_CONFIG, VU_FLAG_VERSION, cfg, sizeof(cfg), NULL, 0);
	expect_reply(VU_GET_CONFIG, reply, sizeof(reply));
	ck_assert_int_eq(memcmp(reply, cfg, 12), 0);
	ck_assert_uint_eq(reply[12], 0x34);
	ck_assert_uint_eq(reply[13], 0x12);
	for (unsigned i = 14; i < 20; i++)
		ck_assert_uint_eq(reply[i], 0);
	ck_assert(!readable());
}

static void
start_sequence(uint32_t base0, uint32_t base1)
{
	send_eventfd(VU_SET_VRING_CALL, 0);
	send_eventfd(VU_SET_VRING_CALL, 1);
	send_u64(VU_SET_FEATURES, VU_FLAG_VERSION, 0x170000000ull);
	send_mem_table();
	setup_ring(0, base0);
	setup_ring(1, base1);
	ck_assert(!vu_dev_ring_running(dev, 0));
	send_state(VU_SET_VRING_ENABLE, 0, 1);
	send_state(VU_SET_VRING_ENABLE, 1, 1);
	ck_assert(vu_dev_ring_running(dev, 0));
	ck_assert(vu_dev_ring_running(dev, 1));
	send_eventfd(VU_SET_VRING_CALL, 0);
	send_eventfd(VU_SET_VRING_CALL, 1);
	ck_assert(!readable());
}

/* Stop as QEMU does; returns GET_VRING_BASE for ring 1. */
static uint32_t
stop_sequence(void)
{
	struct vu_vring_state s = { 0, 0 }, r;
	uint32_t base1;

	send_state(VU_SET_VRING_ENABLE, 0, 0);
	send_state(VU_SET_VRING_ENABLE, 1, 0);
	ck_assert(!vu_dev_ring_running(dev, 0));
	for (unsigned q = 0; q < 2; q++) {
		s.index = q;
		send_msg(VU_GET_VRING_BASE, VU_FLAG_VERSION, &s, sizeof(s), NULL, 0);
		expect_reply(VU_GET_VRING_BASE, &r, sizeof(r));
		ck_assert_uint_eq(r.index, q);
		if (q == 1)
			base1 = r.num;
	}
	send_eventfd(VU_SET_VRING_CALL, 0);
	send_eventfd(VU_SET_VRING_CALL, 1);
	return base1;
}

START_TEST(qemu72_sequence_start_kick_stop)
{
	struct virtq *vq;

	init_sequence();
	start_sequence(0, 0);
	ck_assert_int_eq(rec.start[0], 1);
	ck_assert_int_eq(rec.start[1], 1);
	ck_assert_int_eq(rec.reset, 0);
	ck_assert_uint_eq(vu_dev_features(dev), 0x170000000ull);
	vq = vu_dev_vq(dev, 1);
	ck_assert_ptr_nonnull(vq);
	ck_assert_ptr_null(vu_dev_vq(dev, 2));
	ck_assert_uint_eq(vq->num, NUM);
	ck_assert(vq->event_idx);
	ck_assert(virtq_is_mapped(vq));

	guest_post(1, 3);
	guest_kick(1);
	ck_assert_int_eq(rec.kick[1], 1);
	ck_assert_uint_eq(vq->last_avail_idx, 3);
	ck_assert_uint_eq(le16toh(((struct vring_used *)(mem + RING_GPA(1) + 0x2000))->idx), 3);

	ck_assert_uint_eq(stop_sequence(), 3);
	ck_assert_int_eq(rec.stop[0], 1);
	ck_assert_int_eq(rec.stop[1], 1);
	/* A kick on a stopped ring reaches nobody (its fd is closed anyway). */
	ck_assert_int_eq(rec.kick[1], 1);
	ck_assert(vu_dev_connected(dev));
}
END_TEST

START_TEST(restart_with_preserved_base_is_not_a_reset)
{
	uint32_t b;

	init_sequence();
	start_sequence(0, 0);
	guest_post(1, 5);
	guest_kick(1);
	b = stop_sequence();
	ck_assert_uint_eq(b, 5);
	/* QMP cont: same rings, same base. */
	start_sequence(0, b);
	ck_assert_int_eq(rec.reset, 0);
	ck_assert_int_eq(rec.start[1], 2);
	ck_assert_uint_eq(vu_dev_vq(dev, 1)->last_avail_idx, 5);
	ck_assert_uint_eq(vu_dev_vq(dev, 1)->used_idx, 5);
	guest_post(1, 1);
	guest_kick(1);
	ck_assert_uint_eq(vu_dev_vq(dev, 1)->last_avail_idx, 6);

	/* Guest driver reset: zeroed rings, base 0. */
	stop_sequence();
	memset(mem + RING_GPA(0), 0, 0x3000);
	memset(mem + RING_GPA(1), 0, 0x3000);
	start_sequence(0, 0);
	ck_assert_int_eq(rec.reset, 1);
	ck_assert_int_eq(rec.start[0], 3);
}
END_TEST

/* A later emberd (vsock-handover.c): the state and copies of the fds of a
 * running session serve the same rings on, from what guest memory says. */
START_TEST(restored_session_continues_from_guest_memory)
{
	struct vu_dev_state st;
	struct vu_dev *old;
	struct vring_used *used = (void *)(mem + RING_GPA(1) + 0x2000);
	int sfd;

	init_sequence();
	start_sequence(0, 0);
	guest_post(1, 4);
	guest_kick(1);
	ck_assert_uint_eq(le16toh(used->idx), 4);
	vu_dev_get_state(dev, &st);
	ck_assert_uint_eq(st.nregions, 2);
	ck_assert(st.ring[1].enabled && st.ring[1].started);
	/* What a service manager would keep: copies of every fd. */
	sfd = fcntl(vu_dev_fd(dev), F_DUPFD_CLOEXEC, 3);
	for (unsigned i = 0; i < st.nregions; i++)
		st.mem_fd[i] = fcntl(st.mem_fd[i], F_DUPFD_CLOEXEC, 3);
	for (unsigned q = 0; q < 2; q++) {
		st.ring[q].kick_fd = fcntl(st.ring[q].kick_fd, F_DUPFD_CLOEXEC, 3);
		st.ring[q].call_fd = fcntl(st.ring[q].call_fd, F_DUPFD_CLOEXEC, 3);
	}
	/* The saved index may be stale (kill -9): used->idx is the truth. */
	st.ring[1].last_avail_idx = 1;
	old = dev;
	dev = NULL;
	vu_dev_free(old);
	memset(&rec, 0, sizeof(rec));
	dev = vu_dev_restore(base, sfd, 0x1234, &st, &ops, &rec);
	ck_assert_ptr_nonnull(dev);
	rec.dev = dev;
	ck_assert_int_eq(st.mem_fd[0], -1);	/* taken */
	step();
	ck_assert(vu_dev_ring_running(dev, 0));
	ck_assert(vu_dev_ring_running(dev, 1));
	ck_assert_int_eq(rec.start[1], 1);
	ck_assert_int_eq(rec.reset, 0);
	ck_assert_uint_eq(vu_dev_vq(dev, 1)->last_avail_idx, 4);
	ck_assert(vu_dev_vq(dev, 1)->event_idx);
	guest_post(1, 2);
	guest_kick(1);
	ck_assert_int_eq(rec.kick[1], 1);
	ck_assert_uint_eq(le16toh(used->idx), 6);
	/* The session socket is the same one: requests still work. */
	send_msg(VU_GET_QUEUE_NUM, VU_FLAG_VERSION, NULL, 0, NULL, 0);
	ck_assert_uint_eq(expect_u64(VU_GET_QUEUE_NUM), 2);
}
END_TEST

START_TEST(restore_refuses_a_kick_fd_that_is_no_eventfd)
{
	struct vu_dev_state st;
	int sv[2], before = count_fds();

	memset(&st, 0, sizeof(st));
	for (unsigned i = 0; i < GUEST_MEM_MAX_REGIONS; i++)
		st.mem_fd[i] = -1;
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	st.ring[0].kick_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	st.ring[0].call_fd = -1;
	st.ring[1].kick_fd = st.ring[1].call_fd = -1;
	ck_assert_ptr_null(vu_dev_restore(base, sv[0], 0x1234, &st, &ops, &rec));
	close(sv[1]);
	ck_assert_int_eq(count_fds(), before);
}
END_TEST

START_TEST(eof_tears_down_and_closes_every_fd)
{
	int before;

	/* Count with this test's own fds settled: they stay open throughout. */
	before = count_fds();
	init_sequence();
	start_sequence(0, 0);
	ck_assert_int_gt(count_fds(), before);
	close(fe);
	fe = -1;
	step();
	ck_assert_int_eq(rec.disconnect, 1);
	ck_assert_int_eq(rec.stop[0], 1);
	ck_assert_int_eq(rec.stop[1], 1);
	ck_assert(!vu_dev_connected(dev));
	ck_assert_uint_eq(vu_dev_mem(dev)->nregions, 0);
	/* The test's kick fds go; so do both socket ends. */
	for (int q = 0; q < 2; q++) {
		close(kick[q]);
		kick[q] = -1;
	}
	ck_assert_int_eq(count_fds(), before - 2);
}
END_TEST

START_TEST(free_from_on_disconnect_is_deferred)
{
	rec.free_on_disconnect = true;
	init_sequence();
	start_sequence(0, 0);
	close(fe);
	fe = -1;
	step();
	ck_assert_int_eq(rec.disconnect, 1);
	ck_assert_ptr_null(dev);
}
END_TEST

START_TEST(fragmented_delivery_is_reassembled)
{
	uint8_t msg[12 + 20] = { 0 };
	struct vu_hdr h = { VU_GET_CONFIG, VU_FLAG_VERSION, 20 };
	uint8_t reply[20];

	memcpy(msg, &h, sizeof(h));
	msg[12 + 4] = 8;
	ck_assert_int_eq(write(fe, msg, 5), 5);
	step();
	ck_assert(!readable());
	ck_assert_int_eq(write(fe, msg + 5, 7), 7);
	step();
	ck_assert(!readable());
	ck_assert_int_eq(write(fe, msg + 12, 10), 10);
	step();
	ck_assert(!readable());
	ck_assert_int_eq(write(fe, msg + 22, 10), 10);
	step();
	expect_reply(VU_GET_CONFIG, reply, sizeof(reply));
	ck_assert_uint_eq(reply[12], 0x34);
}
END_TEST

START_TEST(unknown_request_gets_nack_and_fds_closed)
{
	int before = count_fds();
	int fd = eventfd(0, EFD_CLOEXEC);
	uint64_t junk = 0;

	send_msg(99, VU_FLAG_VERSION | VU_FLAG_NEED_REPLY, &junk, sizeof(junk), &fd, 1);
	close(fd);
	ck_assert_uint_ne(expect_u64(99), 0);
	ck_assert_int_eq(count_fds(), before);
	/* Without NEED_REPLY: silence, and the session goes on. */
	send_msg(VU_SET_LOG_BASE, VU_FLAG_VERSION, &junk, sizeof(junk), NULL, 0);
	ck_assert(!readable());
	send_msg(VU_GET_QUEUE_NUM, VU_FLAG_VERSION, NULL, 0, NULL, 0);
	ck_assert_uint_eq(expect_u64(VU_GET_QUEUE_NUM), 2);
	ck_assert_int_eq(rec.disconnect, 0);
}
END_TEST

START_TEST(bad_requests_are_refused_without_ending_the_session)
{
	const uint32_t ack = VU_FLAG_VERSION | VU_FLAG_NEED_REPLY;
	struct vu_vring_state s = { 2, 256 }, r;
	int before = count_fds();
	int fd;
	uint8_t cfg[12 + 8] = { 4, 0, 0, 0, 8, 0, 0, 0 };

	/* Ring index 2 and up. */
	send_msg(VU_SET_VRING_NUM, ack, &s, sizeof(s), NULL, 0);
	ck_assert_uint_ne(expect_u64(VU_SET_VRING_NUM), 0);
	s.index = 5;
	send_msg(VU_GET_VRING_BASE, VU_FLAG_VERSION, &s, sizeof(s), NULL, 0);
	expect_reply(VU_GET_VRING_BASE, &r, sizeof(r));
	ck_assert_uint_eq(r.index, 5);
	fd = eventfd(0, EFD_CLOEXEC);
	send_fd(VU_SET_VRING_KICK, 3, fd);
	send_fd(VU_SET_VRING_CALL, 0x1ff, fd);
	close(fd);
	/* Bad sizes and values. */
	s.index = 0;
	s.num = 100;
	send_msg(VU_SET_VRING_NUM, ack, &s, sizeof(s), NULL, 0);
	ck_assert_uint_ne(expect_u64(VU_SET_VRING_NUM), 0);
	send_msg(VU_SET_VRING_NUM, ack, &s, 4, NULL, 0);
	ck_assert_uint_ne(expect_u64(VU_SET_VRING_NUM), 0);
	s.num = 0x10000;
	send_msg(VU_SET_VRING_BASE, ack, &s, sizeof(s), NULL, 0);
	ck_assert_uint_ne(expect_u64(VU_SET_VRING_BASE), 0);
	send_u64(VU_SET_FEATURES, ack, 0x170000002ull);
	ck_assert_uint_ne(expect_u64(VU_SET_FEATURES), 0);
	send_u64(VU_SET_PROTOCOL_FEATURES, ack, 0x8209);
	ck_assert_uint_ne(expect_u64(VU_SET_PROTOCOL_FEATURES), 0);
	/* Kick without an fd, memory table with too few fds. */
	send_u64(VU_SET_VRING_KICK, ack, 0);
	ck_assert_uint_ne(expect_u64(VU_SET_VRING_KICK), 0);
	{
		struct { struct vu_mem_hdr h; struct vu_mem_region r; } __attribute__((packed))
		    t = { { 1, 0 }, { 0, 0x1000, 0x1000, 0 } };

		send_msg(VU_SET_MEM_TABLE, ack, &t, sizeof(t), NULL, 0);
		ck_assert_uint_ne(expect_u64(VU_SET_MEM_TABLE), 0);
		t.h.nregions = 9;
		send_msg(VU_SET_MEM_TABLE, ack, &t, sizeof(t), &memfd, 1);
		ck_assert_uint_ne(expect_u64(VU_SET_MEM_TABLE), 0);
		/* Region larger than the memfd. */
		t.h.nregions = 1;
		t.r.size = MEM_SIZE * 2;
		send_msg(VU_SET_MEM_TABLE, ack, &t, sizeof(t), &memfd, 1);
		ck_assert_uint_ne(expect_u64(VU_SET_MEM_TABLE), 0);
	}
	/* Config outside the 8-byte space: a size-0 reply. */
	send_msg(VU_GET_CONFIG, VU_FLAG_VERSION, cfg, sizeof(cfg), NULL, 0);
	expect_reply(VU_GET_CONFIG, NULL, 0);
	/* Ring addresses outside guest memory. */
	send_mem_table();
	{
		struct vu_vring_addr a = { .index = 0, .desc = 0x1000, .used = 0x2000,
		    .avail = 0x3000 };

		send_state(VU_SET_VRING_NUM, 0, 256);
		send_msg(VU_SET_VRING_ADDR, ack, &a, sizeof(a), NULL, 0);
		ck_assert_uint_ne(expect_u64(VU_SET_VRING_ADDR), 0);
	}
	/* The table keeps its own copy of each region's fd (fd-keep.h). */
	ck_assert_int_eq(count_fds(), before + 2);
	ck_assert_int_eq(rec.disconnect, 0);
	send_msg(VU_GET_QUEUE_NUM, VU_FLAG_VERSION, NULL, 0, NULL, 0);
	ck_assert_uint_eq(expect_u64(VU_GET_QUEUE_NUM), 2);
}
END_TEST

START_TEST(ring_with_bad_addresses_does_not_start)
{
	struct vu_vring_addr a = { .index = 0, .desc = 0x1000, .used = 0x2000, .avail = 0x3000 };
	int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

	init_sequence();
	send_u64(VU_SET_FEATURES, VU_FLAG_VERSION, 0x170000000ull);
	send_mem_table();
	send_state(VU_SET_VRING_NUM, 0, 256);
	send_msg(VU_SET_VRING_ADDR, VU_FLAG_VERSION, &a, sizeof(a), NULL, 0);
	send_fd(VU_SET_VRING_KICK, 0, fd);
	send_state(VU_SET_VRING_ENABLE, 0, 1);
	ck_assert(!vu_dev_ring_running(dev, 0));
	ck_assert_int_eq(rec.start[0], 0);
	ck_assert(vu_dev_vq(dev, 0)->broken);
	close(fd);
}
END_TEST

START_TEST(oversize_payload_ends_the_session)
{
	struct vu_hdr h = { VU_SET_MEM_TABLE, VU_FLAG_VERSION, 5000 };
	uint8_t c;

	ck_assert_int_eq(write(fe, &h, sizeof(h)), sizeof(h));
	step();
	ck_assert_int_eq(rec.disconnect, 1);
	ck_assert_int_eq(read(fe, &c, 1), 0);
}
END_TEST

START_TEST(wrong_version_ends_the_session)
{
	struct vu_hdr h = { VU_GET_FEATURES, 0x2, 0 };

	ck_assert_int_eq(write(fe, &h, sizeof(h)), sizeof(h));
	step();
	ck_assert_int_eq(rec.disconnect, 1);
}
END_TEST

START_TEST(bad_cid_is_refused)
{
	int sv[2];

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	ck_assert_ptr_null(vu_dev_new(base, sv[0], 2, &ops, &rec));
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_int_eq(fcntl(sv[0], F_GETFD), -1);	/* taken over and closed */
	close(sv[1]);
}
END_TEST

static Suite *
vhost_user_suite(void)
{
	Suite *s = suite_create("vhost_user");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, qemu72_sequence_start_kick_stop);
	tcase_add_test(tc, restart_with_preserved_base_is_not_a_reset);
	tcase_add_test(tc, restored_session_continues_from_guest_memory);
	tcase_add_test(tc, restore_refuses_a_kick_fd_that_is_no_eventfd);
	tcase_add_test(tc, eof_tears_down_and_closes_every_fd);
	tcase_add_test(tc, free_from_on_disconnect_is_deferred);
	tcase_add_test(tc, fragmented_delivery_is_reassembled);
	tcase_add_test(tc, unknown_request_gets_nack_and_fds_closed);
	tcase_add_test(tc, bad_requests_are_refused_without_ending_the_session);
	tcase_add_test(tc, ring_with_bad_addresses_does_not_start);
	tcase_add_test(tc, oversize_payload_ends_the_session);
	tcase_add_test(tc, wrong_version_ends_the_session);
	tcase_add_test(tc, bad_cid_is_refused);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return test_run_suite(vhost_user_suite());
}
