/*
 * udp-echo: a UDP echo server small enough to copy into a guest whose
 * busybox has no UDP server (it_net-guest's published UDP port). Every
 * datagram to PORT goes back to its sender as "echo:" followed by its bytes
 * (cut to fit one datagram). Linked statically: ember-mini has no shared
 * libraries. With -d it detaches (daemon(3)) once the port is bound, so
 * the caller knows it listens when it returns.
 *
 * With -q it is the client instead: it sends MSG to ADDR:PORT and prints
 * the first reply, sending again each second without one (a first datagram
 * may be lost while ARP resolves), for at most TRIES seconds; exit 1 when
 * none came.
 *
 * usage: udp-echo [-d] PORT
 *        udp-echo -q ADDR PORT MSG TRIES
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PREFIX		"echo:"
#define DGRAM_MAX	65507	/* the largest IPv4 UDP payload */

static long
parse_num(const char *arg, long min, long max)
{
	char *end;
	long v = strtol(arg, &end, 10);

	return *end != '\0' || end == arg || v < min || v > max ? -1 : v;
}

static int
query(const char *addr, const char *port_arg, const char *msg, const char *tries_arg)
{
	static char reply[DGRAM_MAX + 1];
	struct sockaddr_in to = { .sin_family = AF_INET };
	long port = parse_num(port_arg, 1, 65535), tries = parse_num(tries_arg, 1, 600);
	int fd;

	if (port < 0 || tries < 0 || inet_pton(AF_INET, addr, &to.sin_addr) != 1) {
		fprintf(stderr, "udp-echo: bad address, port or tries\n");
		return 2;
	}
	to.sin_port = htons((uint16_t)port);
	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&to, sizeof(to)) < 0) {
		fprintf(stderr, "udp-echo: %s:%ld: %s\n", addr, port, strerror(errno));
		return 1;
	}
	for (long i = 0; i < tries; i++) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		ssize_t n;

		(void)send(fd, msg, strlen(msg), 0);
		if (poll(&pfd, 1, 1000) <= 0)
			continue;
		n = recv(fd, reply, DGRAM_MAX, 0);
		if (n < 0)
			continue;	/* ECONNREFUSED: nobody there yet */
		reply[n] = '\0';
		printf("%s\n", reply);
		return 0;
	}
	fprintf(stderr, "udp-echo: no reply from %s:%ld in %ld s\n", addr, port, tries);
	return 1;
}

int
main(int argc, char **argv)
{
	static char in[DGRAM_MAX], out[DGRAM_MAX];
	struct sockaddr_in sin = { .sin_family = AF_INET };
	int detach = argc == 3 && strcmp(argv[1], "-d") == 0;
	const char *port_arg = argv[argc - 1];
	long port;
	int fd;

	if (argc == 6 && strcmp(argv[1], "-q") == 0)
		return query(argv[2], argv[3], argv[4], argv[5]);
	if (argc != 2 + detach) {
		fprintf(stderr, "usage: udp-echo [-d] PORT | -q ADDR PORT MSG TRIES\n");
		return 2;
	}
	port = parse_num(port_arg, 1, 65535);
	if (port < 0) {
		fprintf(stderr, "udp-echo: bad port %s\n", port_arg);
		return 2;
	}
	sin.sin_port = htons((uint16_t)port);
	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
		fprintf(stderr, "udp-echo: port %ld: %s\n", port, strerror(errno));
		return 1;
	}
	if (detach && daemon(0, 0) < 0) {
		fprintf(stderr, "udp-echo: daemon: %s\n", strerror(errno));
		return 1;
	}
	memcpy(out, PREFIX, strlen(PREFIX));
	for (;;) {
		struct sockaddr_in from;
		socklen_t fromlen = sizeof(from);
		ssize_t n = recvfrom(fd, in, sizeof(in), 0, (struct sockaddr *)&from, &fromlen);
		size_t len;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return 1;
		}
		len = (size_t)n;
		if (len > sizeof(out) - strlen(PREFIX))
			len = sizeof(out) - strlen(PREFIX);
		memcpy(out + strlen(PREFIX), in, len);
		(void)sendto(fd, out, strlen(PREFIX) + len, 0, (struct sockaddr *)&from, fromlen);
	}
}
