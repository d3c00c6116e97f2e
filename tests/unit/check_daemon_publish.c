/*
 * Unit tests for published ports' UDP relay (daemon/vm-publish.c), on
 * loopback only: the "guest" is a socket on 127.0.0.2 (a VM whose subnet is
 * 127.0.0.0/30), the published port is on 127.0.0.1. Datagrams go to the
 * guest and replies come back to the right client from the published
 * address, each client has a flow of its own, the table of flows stays
 * bounded, an idle flow is forgotten (the idle time shortened), and a guest port where nothing listens costs nothing.
 */
#include <check.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "vm-publish.h"
#include "test-util.h"

#define LOOPBACK	0x7f000001u	/* 127.0.0.1 */
#define GUEST_SUBNET	0x7f000000u	/* guest 127.0.0.2 */
#define DEADLINE_MS	5000

static struct event_base *base;
static struct vm_publish_set *set;
static int guest_fd = -1;
static uint16_t host_port, guest_port;

static struct sockaddr_in
sin_at(uint32_t addr, uint16_t port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };

	sin.sin_addr.s_addr = htonl(addr);
	sin.sin_port = htons(port);
	return sin;
}

/* A UDP socket bound to addr:0; *port gets its port. */
static int
udp_bound(uint32_t addr, uint16_t *port)
{
	struct sockaddr_in sin = sin_at(addr, 0);
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	if (port != NULL)
		*port = ntohs(sin.sin_port);
	return fd;
}

static long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Runs the loop until fd has a datagram (true) or the deadline passes. */
static bool
pump_until_readable(int fd)
{
	long end = now_ms() + DEADLINE_MS;

	while (now_ms() < end) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };

		event_base_loop(base, EVLOOP_NONBLOCK);
		if (poll(&pfd, 1, 10) > 0)
			return true;
	}
	return false;
}

/* The next datagram on fd, NUL-terminated, and where it came from. */
static void
recv_text(int fd, char *buf, size_t size, struct sockaddr_in *from)
{
	socklen_t len = sizeof(*from);
	ssize_t n;

	ck_assert_msg(pump_until_readable(fd), "no datagram within %d ms", DEADLINE_MS);
	n = recvfrom(fd, buf, size - 1, 0, (struct sockaddr *)from, &len);
	ck_assert_int_ge(n, 0);
	buf[n] = '\0';
}

static void
send_text(int fd, const char *text, const struct sockaddr_in *to)
{
	ck_assert_int_eq(sendto(fd, text, strlen(text), 0, (const struct sockaddr *)to,
	    sizeof(*to)), (ssize_t)strlen(text));
}

static void
open_set(uint16_t to_guest_port)
{
	struct vm_net net = { .subnet = GUEST_SUBNET, .npublish = 1, .tap_fd = -1 };
	struct ember_error err = { 0 };
	int probe = udp_bound(LOOPBACK, &host_port);

	close(probe);	/* a free port; nothing else binds ports here */
	net.publish[0] = (struct vm_publish){ .host_addr = LOOPBACK, .host_port = host_port,
		.guest_port = to_guest_port, .udp = true };
	set = vm_publish_open(base, "t", &net, &err);
	ck_assert_msg(set != NULL, "vm_publish_open: %s", err.message);
}

static void
setup(void)
{
	base = event_base_new();
	ck_assert_ptr_nonnull(base);
	guest_fd = udp_bound(GUEST_SUBNET + 2, &guest_port);
	open_set(guest_port);
}

static void
teardown(void)
{
	vm_publish_close(set);
	set = NULL;
	close(guest_fd);
	guest_fd = -1;
	event_base_free(base);
}

START_TEST(udp_relays_both_ways)
{
	struct sockaddr_in published = sin_at(LOOPBACK, host_port), from, relay;
	int client = udp_bound(LOOPBACK, NULL);
	char buf[64];

	send_text(client, "ping", &published);
	recv_text(guest_fd, buf, sizeof(buf), &relay);
	ck_assert_str_eq(buf, "ping");
	ck_assert_uint_eq(vm_publish_udp_flows(set), 1);
	send_text(guest_fd, "pong", &relay);
	recv_text(client, buf, sizeof(buf), &from);
	ck_assert_str_eq(buf, "pong");
	ck_assert_uint_eq(ntohl(from.sin_addr.s_addr), LOOPBACK);
	ck_assert_uint_eq(ntohs(from.sin_port), host_port);
	close(client);
}
END_TEST

START_TEST(udp_each_client_has_its_own_flow)
{
	struct sockaddr_in published = sin_at(LOOPBACK, host_port), from, relay[2];
	int client[2] = { udp_bound(LOOPBACK, NULL), udp_bound(LOOPBACK, NULL) };
	char buf[64];

	send_text(client[0], "zero", &published);
	recv_text(guest_fd, buf, sizeof(buf), &relay[0]);
	ck_assert_str_eq(buf, "zero");
	send_text(client[1], "one", &published);
	recv_text(guest_fd, buf, sizeof(buf), &relay[1]);
	ck_assert_str_eq(buf, "one");
	ck_assert_uint_ne(relay[0].sin_port, relay[1].sin_port);
	ck_assert_uint_eq(vm_publish_udp_flows(set), 2);
	/* A second datagram of client 0 takes its flow again. */
	send_text(client[0], "zero-again", &published);
	recv_text(guest_fd, buf, sizeof(buf), &from);
	ck_assert_str_eq(buf, "zero-again");
	ck_assert_uint_eq(from.sin_port, relay[0].sin_port);
	ck_assert_uint_eq(vm_publish_udp_flows(set), 2);
	/* Replies reach their own client only. */
	send_text(guest_fd, "to-one", &relay[1]);
	send_text(guest_fd, "to-zero", &relay[0]);
	recv_text(client[1], buf, sizeof(buf), &from);
	ck_assert_str_eq(buf, "to-one");
	recv_text(client[0], buf, sizeof(buf), &from);
	ck_assert_str_eq(buf, "to-zero");
	close(client[0]);
	close(client[1]);
}
END_TEST

START_TEST(udp_flow_table_is_bounded)
{
	enum { CLIENTS = VM_PUBLISH_UDP_FLOWS_MAX + 44 };
	struct sockaddr_in published = sin_at(LOOPBACK, host_port), from;
	int client[CLIENTS];
	char buf[64];
	int seen = 0;

	for (int i = 0; i < CLIENTS; i++) {
		char text[16];

		client[i] = udp_bound(LOOPBACK, NULL);
		snprintf(text, sizeof(text), "c%d", i);
		send_text(client[i], text, &published);
		/* One at a time, so that no socket buffer drops any. */
		recv_text(guest_fd, buf, sizeof(buf), &from);
		ck_assert_str_eq(buf, text);
		seen++;
		ck_assert_uint_le(vm_publish_udp_flows(set), VM_PUBLISH_UDP_FLOWS_MAX);
	}
	ck_assert_int_eq(seen, CLIENTS);
	ck_assert_uint_eq(vm_publish_udp_flows(set), VM_PUBLISH_UDP_FLOWS_MAX);
	/* The newest client is relayed both ways. */
	send_text(guest_fd, "newest", &from);
	recv_text(client[CLIENTS - 1], buf, sizeof(buf), &from);
	ck_assert_str_eq(buf, "newest");
	for (int i = 0; i < CLIENTS; i++)
		close(client[i]);
}
END_TEST

START_TEST(udp_idle_flow_is_forgotten)
{
	struct sockaddr_in published = sin_at(LOOPBACK, host_port), from;
	int client = udp_bound(LOOPBACK, NULL);
	long end = now_ms() + DEADLINE_MS;
	char buf[64];

	vm_publish_set_udp_idle(set, 300);
	send_text(client, "hello", &published);
	recv_text(guest_fd, buf, sizeof(buf), &from);
	ck_assert_uint_eq(vm_publish_udp_flows(set), 1);
	while (vm_publish_udp_flows(set) > 0 && now_ms() < end) {
		/* The loop runs 50 ms at a time: the sweep timer fires in there. */
		event_base_loopexit(base, &(struct timeval){ .tv_usec = 50000 });
		event_base_dispatch(base);
	}
	ck_assert_uint_eq(vm_publish_udp_flows(set), 0);
	/* The client comes back: a new flow, relayed as before. */
	send_text(client, "again", &published);
	recv_text(guest_fd, buf, sizeof(buf), &from);
	ck_assert_str_eq(buf, "again");
	ck_assert_uint_eq(vm_publish_udp_flows(set), 1);
	close(client);
}
END_TEST

/* Nothing listens on the guest's port: the guest's ICMP error is read and
 * dropped, and the relay keeps serving. */
START_TEST(udp_guest_port_closed_is_harmless)
{
	struct sockaddr_in published, from;
	uint16_t closed_port;
	int client = udp_bound(LOOPBACK, NULL), probe = udp_bound(GUEST_SUBNET + 2, &closed_port);
	char buf[64];
	struct pollfd pfd = { .fd = client, .events = POLLIN };

	close(probe);
	vm_publish_close(set);
	open_set(closed_port);
	published = sin_at(LOOPBACK, host_port);
	for (int i = 0; i < 3; i++) {
		send_text(client, "anyone?", &published);
		for (int k = 0; k < 20; k++)
			event_base_loop(base, EVLOOP_NONBLOCK);
	}
	ck_assert_int_eq(poll(&pfd, 1, 0), 0);	/* no reply, no error to the client */
	ck_assert_uint_eq(vm_publish_udp_flows(set), 1);
	/* Published again towards a port that answers, it relays. */
	vm_publish_close(set);
	open_set(guest_port);
	published = sin_at(LOOPBACK, host_port);
	send_text(client, "now", &published);
	recv_text(guest_fd, buf, sizeof(buf), &from);
	ck_assert_str_eq(buf, "now");
	close(client);
}
END_TEST

static Suite *
publish_suite(void)
{
	Suite *s = suite_create("vm-publish");
	TCase *tc = tcase_create("udp");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, udp_relays_both_ways);
	tcase_add_test(tc, udp_each_client_has_its_own_flow);
	tcase_add_test(tc, udp_flow_table_is_bounded);
	tcase_add_test(tc, udp_idle_flow_is_forgotten);
	tcase_add_test(tc, udp_guest_port_closed_is_harmless);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return test_run_suite(publish_suite());
}
