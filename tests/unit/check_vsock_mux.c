/*
 * The vsock connection multiplexer driven by a fake guest: packets go in
 * through vsock_mux_guest_packet(s), packets for the guest come out of
 * vsock_mux_fill_rx(_batch) into plain buffers, and real Unix sockets stand
 * on the host side.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "../../platform/linux/vsock-mux.h"
#include "fsutil.h"
#include "test-util.h"

#define GUEST_CID 7

static struct event_base *base;
static struct vsock_mux *mux;
static char dir[64], uds[128];
static int rx_ready_calls;

static void
on_rx_ready(void *ctx)
{
	rx_ready_calls++;
}

/* VM to VM: CID 9 is "another VM" whose hybrid socket the test serves. */
static char peer_path[160];

static int
on_peer_socket(void *ctx, uint64_t cid, char *path, size_t len)
{
	if (cid != 9 || peer_path[0] == '\0')
		return -ENOENT;
	snprintf(path, len, "%s", peer_path);
	return 0;
}

static const struct vsock_mux_ops ops = { .rx_ready = on_rx_ready,
	.peer_socket = on_peer_socket };

static void
setup_with(unsigned request_timeout_ms, unsigned max_conns)
{
	struct vsock_mux_config cfg = {
		.guest_cid = GUEST_CID, .request_timeout_ms = request_timeout_ms,
		.max_connections = max_conns,
	};

	test_tmpdir_new(dir, sizeof(dir), "/tmp/ember-mux-XXXXXX");
	snprintf(uds, sizeof(uds), "%s/vsock.sock", dir);
	cfg.uds_path = uds;
	base = event_base_new();
	mux = vsock_mux_new(base, &cfg, &ops, NULL);
	ck_assert_ptr_nonnull(mux);
	rx_ready_calls = 0;
}

static void
setup(void)
{
	setup_with(0, 0);
}

static void
teardown(void)
{
	vsock_mux_free(mux);
	event_base_free(base);
	ck_assert_int_eq(rm_rf(dir), 0);
}

static void
pump(void)
{
	for (int i = 0; i < 5; i++)
		event_base_loop(base, EVLOOP_NONBLOCK);
}

static int
connect_to(const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	return fd;
}

static int
listen_at(const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	ck_assert_int_eq(listen(fd, 8), 0);
	return fd;
}

static void
guest_send(uint16_t op, uint32_t src_port, uint32_t dst_port, const void *data, uint32_t len,
    uint32_t flags, uint32_t buf_alloc, uint32_t fwd_cnt)
{
	struct vsock_hdr h = {
		.src_cid = GUEST_CID, .dst_cid = VSOCK_HOST_CID, .src_port = src_port,
		.dst_port = dst_port, .len = len, .type = VSOCK_TYPE_STREAM, .op = op,
		.flags = flags, .buf_alloc = buf_alloc, .fwd_cnt = fwd_cnt,
	};
	struct iovec iov = { (void *)data, len };

	vsock_mux_guest_packet(mux, &h, &iov, len ? 1 : 0);
}

/* Next packet for the guest, pumping the loop until one is there (or the
 * deadline passes: then h->op is VSOCK_OP_INVALID). */
static int
guest_recv_within(struct vsock_hdr *h, void *buf, size_t room, int ms)
{
	struct timespec start, now;

	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		pump();
		if (vsock_mux_has_rx(mux)) {
			struct iovec iov = { buf, room };
			int n = vsock_mux_fill_rx(mux, h, &iov, 1);
			if (n >= 0)
				return n;
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
		if ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000 > ms)
			break;
		struct timeval tv = { 0, 5000 };
		event_base_loopexit(base, &tv);
		event_base_dispatch(base);
	}
	memset(h, 0, sizeof(*h));
	return -1;
}

static int
guest_recv(struct vsock_hdr *h, void *buf, size_t room)
{
	return guest_recv_within(h, buf, room, 2000);
}

/* Reads exactly n bytes from fd while pumping the loop. */
static void
host_read_exact(int fd, char *buf, size_t n)
{
	size_t got = 0;

	for (int tries = 0; got < n && tries < 2000; tries++) {
		struct pollfd p = { fd, POLLIN, 0 };
		pump();
		if (poll(&p, 1, 1) == 1) {
			ssize_t r = read(fd, buf + got, n - got);
			ck_assert_int_gt(r, 0);
			got += (size_t)r;
		}
	}
	ck_assert_uint_eq(got, n);
}

/* The window (buf_alloc) the mux advertised in the last REQUEST. */
static uint32_t request_buf_alloc;

/* Host connects with CONNECT port; returns the client fd and the local
 * port the mux chose (REQUEST seen, RESPONSE given). */
static int
host_connect(uint32_t port, uint32_t *local, const char *extra)
{
	char line[64], buf[64];
	struct vsock_hdr h;
	int fd = connect_to(uds);
	int n = snprintf(line, sizeof(line), "CONNECT %u\n%s", port, extra ? extra : "");

	ck_assert_int_eq(write(fd, line, (size_t)n), n);
	ck_assert_int_eq(guest_recv(&h, buf, sizeof(buf)), 0);
	ck_assert_uint_eq(h.op, VSOCK_OP_REQUEST);
	ck_assert_uint_eq(h.dst_port, port);
	ck_assert_uint_eq(h.dst_cid, GUEST_CID);
	*local = h.src_port;
	request_buf_alloc = h.buf_alloc;
	guest_send(VSOCK_OP_RESPONSE, port, h.src_port, NULL, 0, 0, 65536, 0);
	return fd;
}

START_TEST(host_connect_gets_ok_after_guest_response)
{
	uint32_t local;
	char buf[64];
	int fd = host_connect(1024, &local, NULL);

	ck_assert_uint_eq(local, 1u << 30);
	host_read_exact(fd, buf, 14);
	ck_assert_int_eq(memcmp(buf, "OK 1073741824\n", 14), 0);
	close(fd);
}
END_TEST

START_TEST(bytes_after_connect_line_are_forwarded)
{
	struct vsock_hdr h;
	uint32_t local;
	char buf[64];
	int fd = host_connect(1024, &local, "hello");

	host_read_exact(fd, buf, 14);
	ck_assert_int_eq(guest_recv(&h, buf, sizeof(buf)), 5);
	ck_assert_uint_eq(h.op, VSOCK_OP_RW);
	ck_assert_int_eq(memcmp(buf, "hello", 5), 0);
	close(fd);
}
END_TEST

START_TEST(stats_count_payload_each_way_and_open_connections)
{
	struct vsock_mux_stats st;
	struct vsock_hdr h;
	uint32_t local;
	char buf[64];
	int fd;

	vsock_mux_stats(mux, &st);
	ck_assert_uint_eq(st.bytes_to_guest + st.bytes_from_guest + st.connections, 0);
	fd = host_connect(1024, &local, "hello");
	host_read_exact(fd, buf, 14);	/* the OK line: not payload */
	ck_assert_int_eq(guest_recv(&h, buf, sizeof(buf)), 5);
	guest_send(VSOCK_OP_RW, 1024, local, "world!", 6, 0, 65536, 0);
	host_read_exact(fd, buf, 6);
	vsock_mux_stats(mux, &st);
	ck_assert_uint_eq(st.bytes_to_guest, 5);	/* the CONNECT line is not counted */
	ck_assert_uint_eq(st.bytes_from_guest, 6);
	ck_assert_uint_eq(st.connections, 1);
	close(fd);
}
END_TEST

START_TEST(each_host_connection_gets_its_own_port)
{
	uint32_t a, b;
	int fa = host_connect(1024, &a, NULL), fb = host_connect(1024, &b, NULL);

	ck_assert_uint_ne(a, b);
	close(fa);
	close(fb);
}
END_TEST

START_TEST(guest_rst_closes_host_socket_without_ok)
{
	struct vsock_hdr h;
	char buf[64];
	int fd = connect_to(uds);

	ck_assert_int_eq(write(fd, "connect 9999\n", 13), 13);
	ck_assert_int_eq(guest_recv(&h, buf, sizeof(buf)), 0);
	ck_assert_uint_eq(h.op, VSOCK_OP_REQUEST);
	guest_send(VSOCK_OP_RST, 9999, h.src_port, NULL, 0, 0, 0, 0);
	pump();
	ck_assert_int_eq(read(fd, buf, sizeof(buf)), 0);
	close(fd);
}
END_TEST

START_TEST(bad_connect_line_closes_socket)
{
	char buf[8];
	int fd = connect_to(uds);

	ck_assert_int_eq(write(fd, "HELLO 1\n", 8), 8);
	pump();
	ck_assert_int_eq(read(fd, buf, sizeof(buf)), 0);
	ck_assert_int_eq(vsock_mux_has_rx(mux), 0);
	close(fd);
}
END_TEST

/* The socket is edge-triggered: an EOF right behind a partial CONNECT line
 * (one edge for both) still closes the client at once, not when the line's
 * 5 s timeout runs out. */
START_TEST(eof_behind_a_partial_connect_line_closes_at_once)
{
	char buf[8];
	ssize_t r = -1;
	int fd = connect_to(uds);

	ck_assert_int_eq(write(fd, "CONNECT 10", 10), 10);
	ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
	for (int tries = 0; tries < 100 && r < 0; tries++) {	/* about 1 s */
		struct pollfd p = { fd, POLLIN, 0 };
		pump();
		if (poll(&p, 1, 10) == 1)
			r = read(fd, buf, sizeof(buf));
	}
	ck_assert_int_eq(r, 0);
	ck_assert_int_eq(vsock_mux_has_rx(mux), 0);
	ck_assert_uint_eq(vsock_mux_connection_count(mux), 0);
	close(fd);
}
END_TEST

/* The host writes its last bytes and closes before the mux looks (one
 * edge on the socket for both): the guest still gets the bytes, then the
 * SHUTDOWN. */
START_TEST(host_bytes_then_close_at_once_reach_the_guest_then_eof)
{
	struct vsock_hdr h;
	char buf[64];
	uint32_t local;
	int n, got = 0, fd = host_connect(1024, &local, NULL);

	host_read_exact(fd, buf, 14);
	ck_assert_int_eq(write(fd, "bye", 3), 3);
	close(fd);
	while ((n = guest_recv(&h, buf, sizeof(buf))) >= 0 && h.op == VSOCK_OP_RW)
		got += n;
	ck_assert_int_eq(got, 3);
	ck_assert_uint_eq(h.op, VSOCK_OP_SHUTDOWN);
	ck_assert_uint_eq(h.flags & VSOCK_SHUTDOWN_SEND, VSOCK_SHUTDOWN_SEND);
}
END_TEST

START_TEST(unanswered_request_times_out_with_rst)
{
	struct vsock_hdr h;
	char buf[64];
	int fd;

	teardown();
	setup_with(100, 0);
	fd = connect_to(uds);
	ck_assert_int_eq(write(fd, "CONNECT 5\n", 10), 10);
	ck_assert_int_eq(guest_recv(&h, buf, sizeof(buf)), 0);
	ck_assert_uint_eq(h.op, VSOCK_OP_REQUEST);
	ck_assert_int_eq(guest_recv_within(&h, buf, sizeof(buf), 3000), 0);
	ck_assert_uint_eq(h.op, VSOCK_OP_RST);
	ck_assert_int_eq(read(fd, buf, sizeof(buf)), 0);
	close(fd);
}
END_TEST

START_TEST(guest_connect_without_listener_is_reset_at_once)
{
	struct vsock_hdr h;
	char buf[64];

	guest_send(VSOCK_OP_REQUEST, 40000, 5000, NULL, 0, 0, 262144, 0);
	ck_assert_int_eq(guest_recv_within(&h, buf, sizeof(buf), 100), 0);
	ck_assert_uint_eq(h.op, VSOCK_OP_RST);
	ck_assert_uint_eq(h.dst_port, 40000);
	ck_assert_uint_eq(h.src_port, 5000);
}
END_TEST

START_TEST(guest_connect_reaches_port_listener_both_ways)
{
	char path[160], buf[64];
	struct vsock_hdr h;
	int lfd, sfd;

	snprintf(path, sizeof(path), "%s_5000", uds);
	lfd = listen_at(path);
	guest_send(VSOCK_OP_REQUEST, 40000, 5000, NULL, 0, 0, 262144, 0);
	ck_assert_int_eq(guest_recv(&h, buf, sizeof(buf)), 0);
	ck_assert_uint_eq(h.op, VSOCK_OP_RESPONSE);
	sfd = accept(lfd, NULL, NULL);
	ck_assert_int_ge(sfd, 0);
	guest_send(VSOCK_OP_RW, 40000, 5000, "ping", 4, 0, 262144, 0);
	host_read_exact(sfd, buf, 4);
	ck_assert_int_eq(memcmp(buf, "ping", 4), 0);
	ck_assert_int_eq(write(sfd, "pong", 4), 4);
	ck_assert_int_eq(guest_recv(&h, buf, sizeof(buf)), 4);
	ck_assert_uint_eq(h.op, VSOCK_OP_RW);
	ck_assert_int_eq(memcmp(buf, "pong", 4), 0);
	/* Host closes: the guest hears SHUTDOWN(SEND), then ends the flow. */
	close(sfd);
	ck_assert_int_eq(guest_recv(&h, buf, sizeof(buf)), 0);
	ck_assert_uint_eq(h.op, VSOCK_OP_SHUTDOWN);
	ck_assert_uint_eq(h.flags, VSOCK_SHUTDOWN_SEND);
	guest_send(VSOCK_OP_SHUTDOWN, 40000, 5000, NULL, 0, 3, 262144, 4);
	ck_assert_int_eq(guest_recv(&h, buf, sizeof(buf)), 0);
	ck_assert_uint_eq(h.op, VSOCK_OP_RST);
	ck_assert_uint_eq(vsock_mux_connection_count(mux), 0);
	close(lfd);
}
END_TEST

START_TEST(host_to_guest_respects_guest_credit)
{
	static char big[20000], buf[65536];
	struct vsock_hdr h;
	uint32_t local, total = 0;
	int fd = host_connect(1024, &local, NULL);

	/* The guest gave only 8 KiB of credit with its RESPONSE... */
	guest_send(VSOCK_OP_CREDIT_UPDATE, 1024, local, NULL, 0, 0, 8192, 0);
	host_read_exact(fd, buf, 14);
	memset(big, 'x', sizeof(big));
	ck_assert_int_eq(write(fd, big, sizeof(big)), (int)sizeof(big));
	for (;;) {
		int n = guest_recv_within(&h, buf, sizeof(buf), 200);
		if (n < 0)
			break;
		ck_assert_uint_eq(h.op, VSOCK_OP_RW);
		total += (uint32_t)n;
	}
	ck_assert_uint_eq(total, 8192);
	/* ...and more once it has read them. */
	guest_send(VSOCK_OP_CREDIT_UPDATE, 1024, local, NULL, 0, 0, 8192, 8192);
	for (;;) {
		int n = guest_recv_within(&h, buf, sizeof(buf), 200);
		if (n < 0)
			break;
		total += (uint32_t)n;
	}
	ck_assert_uint_eq(total, 16384);
	close(fd);
}
END_TEST

/* A guest that sends 4 KiB at a time, twice the window, to a host that
 * reads at once: it never runs out of credit, and the updates that keep it
 * going are a few per window, not one per packet. */
START_TEST(host_sends_credit_updates_as_it_forwards)
{
	static char chunk[4096], buf[65536];
	struct vsock_hdr h;
	uint32_t local, window, fwd_seen = 0, sent = 0;
	int updates = 0, fd = host_connect(1024, &local, NULL);

	window = request_buf_alloc;
	ck_assert_uint_ge(window, 65536);
	host_read_exact(fd, buf, 14);
	memset(chunk, 'y', sizeof(chunk));
	for (uint32_t i = 0; i < 2 * window / sizeof(chunk); i++) {
		ck_assert_uint_ge(window - (sent - fwd_seen), sizeof(chunk));
		guest_send(VSOCK_OP_RW, 1024, local, chunk, sizeof(chunk), 0, 65536, 0);
		sent += sizeof(chunk);
		host_read_exact(fd, buf, sizeof(chunk));
		while (guest_recv_within(&h, buf, sizeof(buf), 0) >= 0)
			if (h.op == VSOCK_OP_CREDIT_UPDATE) {
				updates++;
				ck_assert_uint_gt(h.fwd_cnt, fwd_seen);
				ck_assert_uint_eq(h.buf_alloc, window);
				fwd_seen = h.fwd_cnt;
			}
	}
	ck_assert_int_ge(updates, 2);
	ck_assert_int_le(updates, 2 * 4 + 1);	/* at most one per quarter window */
	close(fd);
}
END_TEST

START_TEST(guest_half_close_reaches_host_as_eof)
{
	char buf[64];
	struct vsock_hdr h;
	uint32_t local;
	int fd = host_connect(1024, &local, NULL);

	host_read_exact(fd, buf, 14);
	guest_send(VSOCK_OP_RW, 1024, local, "abc", 3, 0, 65536, 0);
	guest_send(VSOCK_OP_SHUTDOWN, 1024, local, NULL, 0, VSOCK_SHUTDOWN_SEND, 65536, 0);
	host_read_exact(fd, buf, 3);
	pump();
	ck_assert_int_eq(read(fd, buf, sizeof(buf)), 0);
	/* The host may still answer. */
	ck_assert_int_eq(write(fd, "reply", 5), 5);
	ck_assert_int_eq(guest_recv(&h, buf, sizeof(buf)), 5);
	ck_assert_uint_eq(h.op, VSOCK_OP_RW);
	close(fd);
}
END_TEST

START_TEST(unknown_flow_gets_rst_but_rst_gets_nothing)
{
	struct vsock_hdr h;
	char buf[64];

	guest_send(VSOCK_OP_RST, 1, 2, NULL, 0, 0, 0, 0);
	ck_assert_int_eq(guest_recv_within(&h, buf, sizeof(buf), 50), -1);
	guest_send(VSOCK_OP_RW, 1, 2, "z", 1, 0, 0, 0);
	ck_assert_int_eq(guest_recv(&h, buf, sizeof(buf)), 0);
	ck_assert_uint_eq(h.op, VSOCK_OP_RST);
	ck_assert_uint_eq(h.src_port, 2);
	ck_assert_uint_eq(h.dst_port, 1);
}
END_TEST

/* An emberd that restarted resets the flows its predecessor had open:
 * RSTs from the host's address, as many as the bounded queue takes. */
START_TEST(old_flows_are_reset_as_the_queue_allows)
{
	struct vsock_hdr h;
	char buf[64];
	int queued = 0;

	while (vsock_mux_reset_flow(mux, VSOCK_HOST_CID, 1073741824u + (uint32_t)queued,
	    5000) == 0)
		queued++;
	ck_assert_int_eq(queued, 256);
	ck_assert_int_eq(guest_recv(&h, buf, sizeof(buf)), 0);
	ck_assert_uint_eq(h.op, VSOCK_OP_RST);
	ck_assert_uint_eq(h.src_cid, VSOCK_HOST_CID);
	ck_assert_uint_eq(h.dst_cid, GUEST_CID);
	ck_assert_uint_eq(h.src_port, 1073741824u);
	ck_assert_uint_eq(h.dst_port, 5000);
	/* One sent: room for one more. */
	ck_assert_int_eq(vsock_mux_reset_flow(mux, VSOCK_HOST_CID, 7, 8), 0);
	ck_assert_int_eq(vsock_mux_reset_flow(mux, VSOCK_HOST_CID, 7, 9), -ENOBUFS);
}
END_TEST

START_TEST(non_stream_type_gets_rst)
{
	struct vsock_hdr in = {
		.src_cid = GUEST_CID, .dst_cid = 2, .src_port = 9, .dst_port = 10,
		.type = 2, .op = VSOCK_OP_REQUEST,
	}, h;
	char buf[64];

	vsock_mux_guest_packet(mux, &in, NULL, 0);
	ck_assert_int_eq(guest_recv(&h, buf, sizeof(buf)), 0);
	ck_assert_uint_eq(h.op, VSOCK_OP_RST);
}
END_TEST

START_TEST(connection_limit_refuses_more)
{
	char path[160], buf[64];
	struct vsock_hdr h;
	int lfd;

	teardown();
	setup_with(0, 2);
	snprintf(path, sizeof(path), "%s_7", uds);
	lfd = listen_at(path);
	for (uint32_t p = 1; p <= 3; p++)
		guest_send(VSOCK_OP_REQUEST, p, 7, NULL, 0, 0, 65536, 0);
	int responses = 0, rsts = 0;
	while (guest_recv_within(&h, buf, sizeof(buf), 50) >= 0) {
		responses += h.op == VSOCK_OP_RESPONSE;
		rsts += h.op == VSOCK_OP_RST;
	}
	ck_assert_int_eq(responses, 2);
	ck_assert_int_eq(rsts, 1);
	close(lfd);
}
END_TEST

static int
count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	while (readdir(d) != NULL)
		n++;
	closedir(d);
	return n;
}

START_TEST(reset_drops_every_connection_and_fd)
{
	uint32_t local;
	int before = count_fds();
	int fds[4];

	for (int i = 0; i < 4; i++)
		fds[i] = host_connect(1024, &local, NULL);
	ck_assert_uint_eq(vsock_mux_connection_count(mux), 4);
	vsock_mux_reset(mux);
	ck_assert_uint_eq(vsock_mux_connection_count(mux), 0);
	for (int i = 0; i < 4; i++)
		close(fds[i]);
	ck_assert_int_eq(count_fds(), before);
}
END_TEST

START_TEST(vm_to_vm_replies_come_from_the_addressed_cid)
{
	struct vsock_hdr in = {
		.src_cid = GUEST_CID, .dst_cid = 9, .src_port = 41000, .dst_port = 5000,
		.type = VSOCK_TYPE_STREAM, .op = VSOCK_OP_REQUEST, .buf_alloc = 65536,
	}, h;
	char buf[64];
	int lfd, pfd;

	snprintf(peer_path, sizeof(peer_path), "%s/peer.sock", dir);
	lfd = listen_at(peer_path);
	vsock_mux_guest_packet(mux, &in, NULL, 0);
	pump();
	pfd = accept(lfd, NULL, NULL);
	ck_assert_int_ge(pfd, 0);
	host_read_exact(pfd, buf, 13);
	ck_assert_int_eq(memcmp(buf, "CONNECT 5000\n", 13), 0);
	ck_assert_int_eq(write(pfd, "OK 1073741824\n", 14), 14);
	ck_assert_int_eq(guest_recv(&h, buf, sizeof(buf)), 0);
	ck_assert_uint_eq(h.op, VSOCK_OP_RESPONSE);
	ck_assert_uint_eq(h.src_cid, 9);
	ck_assert_uint_eq(h.src_port, 5000);
	ck_assert_uint_eq(h.dst_port, 41000);
	/* A CID nobody holds: reset at once, from that CID. */
	in.dst_cid = 10;
	in.src_port = 41001;
	vsock_mux_guest_packet(mux, &in, NULL, 0);
	ck_assert_int_eq(guest_recv(&h, buf, sizeof(buf)), 0);
	ck_assert_uint_eq(h.op, VSOCK_OP_RST);
	ck_assert_uint_eq(h.src_cid, 10);
	peer_path[0] = '\0';
	close(pfd);
	close(lfd);
}
END_TEST

/* ---- batches: one readv across buffers, coalesced writes, partial writes ---- */

/* A fake rx ring of n buffers of size bytes each, for fill_rx_batch. */
struct ring {
	uint8_t *mem;
	size_t size;
	int n, taken, untaken;
	struct iovec iov[64];
};

static int
ring_take(void *ctx, int slot, const struct iovec **iov, int *niov)
{
	struct ring *r = ctx;

	if (slot >= r->n)
		return -1;
	r->iov[slot] = (struct iovec){ r->mem + (size_t)slot * r->size, r->size };
	*iov = &r->iov[slot];
	*niov = 1;
	r->taken = slot + 1;
	return 0;
}

static bool
ring_untake(void *ctx, int slot)
{
	struct ring *r = ctx;

	r->taken = slot;
	r->untaken++;
	return true;
}

/* A ring where a chain was dropped between the first two buffers: once
 * the second went back, the first cannot. */
static bool
ring_untake_only_newest(void *ctx, int slot)
{
	struct ring *r = ctx;

	if (slot == 0 && r->untaken > 0)
		return false;
	return ring_untake(ctx, slot);
}

/* A data turn that finds the socket empty after taking two buffers gives
 * the second back and still fills the first (a CREDIT_UPDATE), rather than
 * leaving it taken and unfilled when it cannot go back. */
START_TEST(an_empty_data_turn_leaves_no_buffer_taken_and_unfilled)
{
	static uint8_t mem[2 * 4096], data[4096];
	struct ring r = { mem, 4096, 2, 0, 0, { { 0 } } };
	struct vsock_rx_source src = { ring_take, ring_untake, &r };
	struct vsock_rx_done done[2];
	char ok[64];
	uint32_t local;
	int n, fd = host_connect(5000, &local, NULL);

	host_read_exact(fd, ok, 14);
	/* 4 KiB of credit, exactly what the host writes: one read takes it
	 * all, so the socket may still hold more as far as the mux knows. */
	guest_send(VSOCK_OP_CREDIT_UPDATE, 5000, local, NULL, 0, 0, 4096, 0);
	ck_assert_int_eq(write(fd, data, sizeof(data)), (int)sizeof(data));
	pump();
	n = vsock_mux_fill_rx_batch(mux, &src, done, 2);
	ck_assert_int_eq(n, 1);
	ck_assert_uint_eq(done[0].hdr.op, VSOCK_OP_RW);
	ck_assert_uint_eq(done[0].len, 4096);
	/* More credit: a data turn takes both buffers, finds nothing. */
	guest_send(VSOCK_OP_CREDIT_UPDATE, 5000, local, NULL, 0, 0, 65536, 4096);
	pump();
	ck_assert(vsock_mux_has_rx(mux));
	r = (struct ring){ mem, 4096, 2, 0, 0, { { 0 } } };
	src.untake = ring_untake_only_newest;
	n = vsock_mux_fill_rx_batch(mux, &src, done, 2);
	ck_assert_int_eq(n, r.taken);
	ck_assert_int_eq(n, 1);
	ck_assert_uint_eq(done[0].hdr.op, VSOCK_OP_CREDIT_UPDATE);
	ck_assert_uint_eq(done[0].len, 0);
	ck_assert(!vsock_mux_has_rx(mux));
	close(fd);
}
END_TEST

static uint8_t
pattern(size_t i)
{
	return (uint8_t)(i % 251);
}

START_TEST(one_read_fills_several_guest_buffers_in_order)
{
	static uint8_t data[10000], mem[4 * 4096];
	struct ring r = { mem, 4096, 4, 0, 0, { { 0 } } };
	struct vsock_rx_source src = { ring_take, ring_untake, &r };
	struct vsock_rx_done done[4];
	uint32_t local;
	int fd = host_connect(5000, &local, NULL), n;
	char ok[64];

	ck_assert_int_gt(read(fd, ok, sizeof(ok)), 0);
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = pattern(i);
	ck_assert_int_eq(write(fd, data, sizeof(data)), (int)sizeof(data));
	for (int tries = 0; tries < 200 && !vsock_mux_has_rx(mux); tries++) {
		struct pollfd p = { fd, POLLOUT, 0 };
		pump();
		poll(&p, 1, 1);
	}
	n = vsock_mux_fill_rx_batch(mux, &src, done, 4);
	ck_assert_int_eq(n, 3);
	ck_assert_uint_eq(done[0].len, 4096);
	ck_assert_uint_eq(done[1].len, 4096);
	ck_assert_uint_eq(done[2].len, 10000 - 8192);
	for (int i = 0; i < 3; i++) {
		ck_assert_uint_eq(done[i].hdr.op, VSOCK_OP_RW);
		ck_assert_uint_eq(done[i].hdr.len, done[i].len);
		ck_assert_uint_eq(done[i].hdr.src_port, local);
		ck_assert_uint_eq(done[i].hdr.dst_port, 5000);
	}
	ck_assert_int_eq(memcmp(mem, data, sizeof(data)), 0);
	ck_assert_int_eq(r.taken, 3);	/* the fourth went back */
	close(fd);
}
END_TEST

START_TEST(host_data_stops_at_guest_credit_across_buffers)
{
	static uint8_t data[20000], mem[8 * 4096];
	struct ring r = { mem, 4096, 8, 0, 0, { { 0 } } };
	struct vsock_rx_source src = { ring_take, ring_untake, &r };
	struct vsock_rx_done done[8];
	uint32_t local, total = 0;
	int fd = connect_to(uds), n;
	struct vsock_hdr h;
	char buf[64];

	/* The guest grants 6000 bytes only. */
	ck_assert_int_eq(write(fd, "CONNECT 5000\n", 13), 13);
	ck_assert_int_eq(guest_recv(&h, buf, sizeof(buf)), 0);
	local = h.src_port;
	guest_send(VSOCK_OP_RESPONSE, 5000, local, NULL, 0, 0, 6000, 0);
	ck_assert_int_gt(read(fd, buf, sizeof(buf)), 0);
	ck_assert_int_eq(write(fd, data, sizeof(data)), (int)sizeof(data));
	for (int tries = 0; tries < 200 && !vsock_mux_has_rx(mux); tries++) {
		struct pollfd p = { fd, POLLOUT, 0 };
		pump();
		poll(&p, 1, 1);
	}
	n = vsock_mux_fill_rx_batch(mux, &src, done, 8);
	for (int i = 0; i < n; i++)
		total += done[i].len;
	ck_assert_int_eq(n, 2);
	ck_assert_uint_eq(total, 6000);
	pump();
	ck_assert_int_eq(vsock_mux_fill_rx_batch(mux, &src, done, 8), 0);
	close(fd);
}
END_TEST

/* The host reader stops reading: what the socket cannot take is kept and
 * goes out later, in order and whole, while credit holds the guest back. */
START_TEST(guest_data_the_socket_cannot_take_is_kept_in_order)
{
	enum { TOTAL = 1 << 20, PKT = 3001, HOLD = 777 };
	static uint8_t stream[TOTAL], got[TOTAL];
	struct vsock_tx_pkt pkts[16];
	struct iovec iov[16];
	uint32_t local, host_fwd = 0, buf_alloc, window;
	size_t sent = 0, recvd = 0;
	int fd = host_connect(5000, &local, NULL), stalls = 0;
	char ok[64];
	struct vsock_hdr h;

	ck_assert_int_gt(read(fd, ok, sizeof(ok)), 0);
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	buf_alloc = window = request_buf_alloc;
	for (size_t i = 0; i < TOTAL; i++)
		stream[i] = pattern(i);
	while (recvd < TOTAL) {
		uint32_t credit = buf_alloc - (uint32_t)(sent - host_fwd);
		int np = 0;

		/* The guest keeps HOLD bytes of credit unused, so the buffer is
		 * never exactly full and wraps at odd offsets. */
		while (np < 16 && credit > HOLD && sent < TOTAL) {
			size_t len = PKT < credit - HOLD ? PKT : credit - HOLD;
			if (len > TOTAL - sent)
				len = TOTAL - sent;
			iov[np] = (struct iovec){ stream + sent, len };
			pkts[np] = (struct vsock_tx_pkt){ { .src_cid = GUEST_CID,
			    .dst_cid = VSOCK_HOST_CID, .src_port = 5000, .dst_port = local,
			    .len = (uint32_t)len, .type = VSOCK_TYPE_STREAM, .op = VSOCK_OP_RW,
			    .buf_alloc = 65536 }, &iov[np], 1 };
			sent += len;
			credit -= (uint32_t)len;
			np++;
		}
		if (np > 0)
			vsock_mux_guest_packets(mux, pkts, np);
		if (credit <= HOLD && sent < TOTAL) {
			char b[64];
			/* Out of credit: a CREDIT_UPDATE comes once the socket took
			 * some; none while the host reads nothing. */
			if (guest_recv_within(&h, b, sizeof(b), 20) >= 0) {
				ck_assert_uint_eq(h.op, VSOCK_OP_CREDIT_UPDATE);
				host_fwd = h.fwd_cnt;
				buf_alloc = h.buf_alloc;
				continue;
			}
			stalls++;
		} else if (sent < TOTAL)
			continue;
		/* The host reads a little, only when the guest is stuck (or
		 * has sent everything). */
		for (int k = 0; k < 8 && recvd < TOTAL; k++) {
			ssize_t n = read(fd, got + recvd, 16384);
			if (n <= 0)
				break;
			recvd += (size_t)n;
		}
		pump();
		ck_assert_uint_le(sent - host_fwd, window);
	}
	ck_assert_int_gt(stalls, 0);	/* the socket really was full */
	ck_assert_int_eq(memcmp(got, stream, TOTAL), 0);
	close(fd);
}
END_TEST

/* Hundreds of flows at once, each found by its own (local, peer) pair:
 * interleaved guest packets reach the right sockets, host bytes come back
 * from the right ports. */
START_TEST(many_connections_keep_their_bytes_apart)
{
	enum { N = 300 };
	static int fd[N];
	static uint32_t local[N];
	struct vsock_tx_pkt pkts[2 * N];
	char msg[2 * N][16];
	struct iovec iov[2 * N];
	int np = 0;

	for (int i = 0; i < N; i++) {
		char ok[64];
		fd[i] = host_connect(5000, &local[i], NULL);
		ck_assert_int_gt(read(fd[i], ok, sizeof(ok)), 0);
	}
	ck_assert_uint_eq(vsock_mux_connection_count(mux), N);
	/* Two packets per flow, the second run in reverse order. */
	for (int pass = 0; pass < 2; pass++) {
		for (int k = 0; k < N; k++) {
			int i = pass == 0 ? k : N - 1 - k;
			int len = snprintf(msg[np], sizeof(msg[np]), "%c%05d;", pass ? 'b' : 'a', i);
			iov[np] = (struct iovec){ msg[np], (size_t)len };
			pkts[np] = (struct vsock_tx_pkt){ { .src_cid = GUEST_CID,
			    .dst_cid = VSOCK_HOST_CID, .src_port = 5000, .dst_port = local[i],
			    .len = (uint32_t)len, .type = VSOCK_TYPE_STREAM, .op = VSOCK_OP_RW,
			    .buf_alloc = 65536 }, &iov[np], 1 };
			np++;
		}
	}
	vsock_mux_guest_packets(mux, pkts, np);
	for (int i = 0; i < N; i++) {
		char want[32], buf[32];
		snprintf(want, sizeof(want), "a%05d;b%05d;", i, i);
		host_read_exact(fd[i], buf, strlen(want));
		ck_assert_int_eq(memcmp(buf, want, strlen(want)), 0);
	}
	/* Host to guest: every flow's bytes arrive from its own port. */
	for (int i = 0; i < N; i++) {
		char b[16];
		int len = snprintf(b, sizeof(b), "h%05d", i);
		ck_assert_int_eq(write(fd[i], b, (size_t)len), len);
	}
	for (int seen = 0; seen < N;) {
		struct vsock_hdr h;
		char buf[64];
		int n = guest_recv(&h, buf, sizeof(buf)), i;

		ck_assert_int_eq(n, 6);
		ck_assert_uint_eq(h.op, VSOCK_OP_RW);
		buf[n] = '\0';
		i = atoi(buf + 1);
		ck_assert_int_lt(i, N);
		ck_assert_uint_eq(h.src_port, local[i]);
		seen++;
	}
	for (int i = 0; i < N; i++)
		close(fd[i]);
}
END_TEST

START_TEST(header_roundtrips_little_endian)
{
	struct vsock_hdr in = {
		.src_cid = 3, .dst_cid = 2, .src_port = 0x11223344, .dst_port = 1024,
		.len = 60, .type = 1, .op = 5, .flags = 3, .buf_alloc = 262144, .fwd_cnt = 77,
	}, out;
	uint8_t raw[VSOCK_HDR_SIZE];

	vsock_hdr_encode(&in, raw);
	ck_assert_uint_eq(raw[16], 0x44);
	ck_assert_uint_eq(raw[19], 0x11);
	vsock_hdr_decode(raw, &out);
	/* Field by field: the struct has padding memcmp would compare. */
	ck_assert_uint_eq(out.src_cid, in.src_cid);
	ck_assert_uint_eq(out.dst_cid, in.dst_cid);
	ck_assert_uint_eq(out.src_port, in.src_port);
	ck_assert_uint_eq(out.dst_port, in.dst_port);
	ck_assert_uint_eq(out.len, in.len);
	ck_assert_uint_eq(out.type, in.type);
	ck_assert_uint_eq(out.op, in.op);
	ck_assert_uint_eq(out.flags, in.flags);
	ck_assert_uint_eq(out.buf_alloc, in.buf_alloc);
	ck_assert_uint_eq(out.fwd_cnt, in.fwd_cnt);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("vsock_mux");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 20);
	tcase_add_test(tc, host_connect_gets_ok_after_guest_response);
	tcase_add_test(tc, bytes_after_connect_line_are_forwarded);
	tcase_add_test(tc, each_host_connection_gets_its_own_port);
	tcase_add_test(tc, stats_count_payload_each_way_and_open_connections);
	tcase_add_test(tc, guest_rst_closes_host_socket_without_ok);
	tcase_add_test(tc, bad_connect_line_closes_socket);
	tcase_add_test(tc, eof_behind_a_partial_connect_line_closes_at_once);
	tcase_add_test(tc, host_bytes_then_close_at_once_reach_the_guest_then_eof);
	tcase_add_test(tc, unanswered_request_times_out_with_rst);
	tcase_add_test(tc, guest_connect_without_listener_is_reset_at_once);
	tcase_add_test(tc, guest_connect_reaches_port_listener_both_ways);
	tcase_add_test(tc, host_to_guest_respects_guest_credit);
	tcase_add_test(tc, host_sends_credit_updates_as_it_forwards);
	tcase_add_test(tc, guest_half_close_reaches_host_as_eof);
	tcase_add_test(tc, unknown_flow_gets_rst_but_rst_gets_nothing);
	tcase_add_test(tc, old_flows_are_reset_as_the_queue_allows);
	tcase_add_test(tc, non_stream_type_gets_rst);
	tcase_add_test(tc, connection_limit_refuses_more);
	tcase_add_test(tc, reset_drops_every_connection_and_fd);
	tcase_add_test(tc, vm_to_vm_replies_come_from_the_addressed_cid);
	tcase_add_test(tc, header_roundtrips_little_endian);
	tcase_add_test(tc, one_read_fills_several_guest_buffers_in_order);
	tcase_add_test(tc, host_data_stops_at_guest_credit_across_buffers);
	tcase_add_test(tc, an_empty_data_turn_leaves_no_buffer_taken_and_unfilled);
	tcase_add_test(tc, guest_data_the_socket_cannot_take_is_kept_in_order);
	tcase_add_test(tc, many_connections_keep_their_bytes_apart);
	suite_add_tcase(s, tc);
	return test_run_suite(s);
}
