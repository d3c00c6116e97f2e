/*
 * vsock-client: the host end of the vsock end-to-end tests
 * (tests/integration/test-vsock-*.sh). It speaks Firecracker's hybrid
 * protocol on a VM's vsock.sock and checks what comes back, so the shell
 * scripts only assert on its exit status and its "vsock-client:" lines.
 *
 *   vsock-client connect SOCK PORT [options]
 *     Opens --conns connections with "CONNECT PORT\n", waits for each
 *     "OK <hostport>\n", then per round sends --bytes bytes of seeded
 *     pseudo-random data and expects the same bytes back (an ember.echo
 *     port), verified byte for byte, with an FNV-1a checksum printed for
 *     each direction. Every connection has its own seed, so crossed streams
 *     are caught.
 *       --conns N        connections at once (default 1)
 *       --bytes N        bytes per round per connection (default 1 MiB)
 *       --rounds N       rounds (default 1)
 *       --wait-stdin     between rounds, wait for a line on stdin
 *       --pause-after N --pause-ms MS
 *                        stop reading for MS once N bytes came back
 *                        (writing goes on while the peer takes it)
 *       --hold           after the last round, keep the connections open
 *                        until emberd closes every one of them
 *       --line TEXT      instead of echo data: send TEXT and a newline and
 *                        print the first line that comes back
 *       --expect-refused no OK must come: succeed when the socket closes
 *       --timeout S      give up after S seconds (default 60)
 *   vsock-client listen PATH [--reply TEXT] [--timeout S]
 *     Listens on PATH (a <vsock.sock>_<port> path) for one guest-initiated
 *     connection, prints what it received once the guest half-closes (or
 *     a newline arrives), answers TEXT and a newline, and closes.
 *
 * Exit status: 0 when everything was verified, 1 otherwise (with a line
 * saying what went wrong), 2 on bad usage.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS	256
#define CHUNK		(64 * 1024)

enum phase { PH_CONNECT, PH_ECHO, PH_ROUND_DONE, PH_HOLD, PH_CLOSED, PH_LINE };

struct conn {
	int fd;
	enum phase phase;
	uint64_t seed;
	char okline[40];
	size_t oklen;
	uint64_t sent, recvd, target;	/* stream positions; target: end of round */
	uint64_t fnv_sent, fnv_recv;
	bool paused_done;
	char line[4096];
	size_t line_len;
};

static struct conn conns[MAX_CONNS];
static int nconns = 1;
static uint64_t round_bytes = 1024 * 1024;
static int rounds = 1;
static bool wait_stdin, hold, expect_refused;
static uint64_t pause_after = UINT64_MAX;
static int pause_ms;
static const char *line_text;
static int timeout_s = 60;

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static double t_start;

static void __attribute__((format(printf, 1, 2)))
say(const char *fmt, ...)
{
	va_list ap;

	printf("vsock-client: ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static void __attribute__((format(printf, 1, 2), noreturn))
die(const char *fmt, ...)
{
	va_list ap;

	printf("vsock-client: FAIL: ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf(" (after %.0f ms)\n", now_ms() - t_start);
	fflush(stdout);
	exit(1);
}

/* The byte at position pos of stream seed: splitmix64 of the 8-byte block. */
static uint8_t
stream_byte(uint64_t seed, uint64_t pos)
{
	uint64_t z = seed * 0x9e3779b97f4a7c15ULL + (pos >> 3) + 1;

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	z ^= z >> 31;
	return (uint8_t)(z >> ((pos & 7) * 8));
}

static void
fill(uint64_t seed, uint64_t pos, uint8_t *buf, size_t n)
{
	for (size_t i = 0; i < n; i++)
		buf[i] = stream_byte(seed, pos + i);
}

static uint64_t
fnv(uint64_t h, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ULL;
	return h;
}

static int
unix_connect(const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(sun.sun_path))
		die("path too long: %s", path);
	memcpy(sun.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0)
		die("connect %s: %s", path, strerror(errno));
	return fd;
}

static void
set_nonblock(int fd)
{
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

static void
check_deadline(double deadline)
{
	if (now_ms() > deadline) {
		for (int i = 0; i < nconns; i++)
			say("conn %d: phase %d, sent %" PRIu64 ", received %" PRIu64
			    " of %" PRIu64, i, conns[i].phase, conns[i].sent, conns[i].recvd,
			    conns[i].target);
		die("timed out after %d s", timeout_s);
	}
}

/* Reads the OK line byte-wise-safe: peek, take up to the newline. */
static void
conn_read_ok(struct conn *c, int i)
{
	char buf[40];
	ssize_t n = recv(c->fd, buf, sizeof(buf) - 1 - c->oklen, MSG_PEEK);

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		if (expect_refused) {
			say("conn %d: closed without OK (%s) after %.0f ms", i,
			    n == 0 ? "EOF" : strerror(errno), now_ms() - t_start);
			c->phase = PH_CLOSED;
			return;
		}
		die("conn %d: closed before OK (%s)", i, n == 0 ? "EOF" : strerror(errno));
	}
	char *nl = memchr(buf, '\n', (size_t)n);
	size_t take = nl ? (size_t)(nl - buf) + 1 : (size_t)n;
	if (recv(c->fd, c->okline + c->oklen, take, 0) != (ssize_t)take)
		die("conn %d: recv", i);
	c->oklen += take;
	if (!nl) {
		if (c->oklen >= sizeof(c->okline) - 1)
			die("conn %d: overlong first line", i);
		return;
	}
	c->okline[c->oklen - 1] = '\0';
	if (expect_refused)
		die("conn %d: got '%s' but expected the socket to close", i, c->okline);
	unsigned long port;
	char extra;
	if (sscanf(c->okline, "OK %lu%c", &port, &extra) != 1 || port < (1ul << 30))
		die("conn %d: bad first line '%s'", i, c->okline);
	if (nconns <= 4)
		say("conn %d: %s", i, c->okline);
	if (line_text != NULL) {
		char msg[4200];
		int len = snprintf(msg, sizeof(msg), "%s\n", line_text);
		if (write(c->fd, msg, (size_t)len) != len)
			die("conn %d: write line: %s", i, strerror(errno));
		c->phase = PH_LINE;
		return;
	}
	c->phase = PH_ECHO;
	c->target = round_bytes;
}

static void
conn_line(struct conn *c, int i)
{
	ssize_t n = read(c->fd, c->line + c->line_len, sizeof(c->line) - 1 - c->line_len);

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0)
		die("conn %d: closed before a reply line (%s)", i, n == 0 ? "EOF" : strerror(errno));
	c->line_len += (size_t)n;
	c->line[c->line_len] = '\0';
	char *nl = strchr(c->line, '\n');
	if (nl == NULL) {
		if (c->line_len == sizeof(c->line) - 1)
			die("conn %d: overlong reply", i);
		return;
	}
	*nl = '\0';
	say("conn %d: reply %s", i, c->line);
	c->phase = PH_CLOSED;
}

static void
conn_send(struct conn *c, int i)
{
	uint8_t buf[CHUNK];
	size_t n = c->target - c->sent;

	if (n > sizeof(buf))
		n = sizeof(buf);
	fill(c->seed, c->sent, buf, n);
	ssize_t w = send(c->fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (w < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return;
		die("conn %d: send at %" PRIu64 ": %s", i, c->sent, strerror(errno));
	}
	c->fnv_sent = fnv(c->fnv_sent, buf, (size_t)w);
	c->sent += (uint64_t)w;
}

static void
conn_recv(struct conn *c, int i)
{
	uint8_t buf[CHUNK];
	ssize_t r = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);

	if (r < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (r <= 0) {
		if (c->phase == PH_HOLD) {
			say("conn %d: closed by emberd (%s) after %.0f ms", i,
			    r == 0 ? "EOF" : strerror(errno), now_ms() - t_start);
			c->phase = PH_CLOSED;
			return;
		}
		die("conn %d: %s after %" PRIu64 " of %" PRIu64 " bytes echoed", i,
		    r == 0 ? "EOF" : strerror(errno), c->recvd, c->target);
	}
	if (c->phase == PH_HOLD)
		die("conn %d: %zd unexpected bytes while holding", i, r);
	if (c->recvd + (uint64_t)r > c->sent)
		die("conn %d: %zd bytes back but only %" PRIu64 " outstanding", i, r,
		    c->sent - c->recvd);
	for (ssize_t k = 0; k < r; k++)
		if (buf[k] != stream_byte(c->seed, c->recvd + (uint64_t)k))
			die("conn %d: byte %" PRIu64 " is 0x%02x, sent 0x%02x", i,
			    c->recvd + (uint64_t)k, buf[k], stream_byte(c->seed, c->recvd + (uint64_t)k));
	c->fnv_recv = fnv(c->fnv_recv, buf, (size_t)r);
	c->recvd += (uint64_t)r;
	if (c->recvd == c->target) {
		c->phase = PH_ROUND_DONE;
		if (c->fnv_recv != c->fnv_sent)
			die("conn %d: checksum mismatch", i);
	}
}

/* Runs every connection until none is in phase `until_not`. */
static void
run(enum phase busy1, enum phase busy2, double deadline)
{
	struct pollfd pfd[MAX_CONNS];
	double pause_end = 0;
	int pause_conn = -1;

	for (;;) {
		int active = 0;
		for (int i = 0; i < nconns; i++) {
			struct conn *c = &conns[i];
			pfd[i].fd = -1;
			pfd[i].events = 0;
			if (c->phase != busy1 && c->phase != busy2)
				continue;
			active++;
			pfd[i].fd = c->fd;
			if (c->phase == PH_ECHO) {
				if (c->sent < c->target)
					pfd[i].events |= POLLOUT;
				if (!c->paused_done && c->recvd >= pause_after && pause_conn < 0) {
					pause_conn = i;
					pause_end = now_ms() + pause_ms;
					say("conn %d: stops reading for %d ms at %" PRIu64 " bytes", i,
					    pause_ms, c->recvd);
				}
				if (pause_conn == i && now_ms() >= pause_end) {
					c->paused_done = true;
					pause_conn = -1;
					say("conn %d: reads again (sent %" PRIu64 " meanwhile)", i,
					    c->sent);
				}
				if (pause_conn != i)
					pfd[i].events |= POLLIN;
			} else
				pfd[i].events |= POLLIN;
		}
		if (active == 0)
			return;
		check_deadline(deadline);
		int r = poll(pfd, (nfds_t)nconns, 100);
		if (r < 0 && errno != EINTR)
			die("poll: %s", strerror(errno));
		for (int i = 0; i < nconns; i++) {
			struct conn *c = &conns[i];
			short re = pfd[i].revents;
			if (pfd[i].fd < 0 || re == 0)
				continue;
			switch (c->phase) {
			case PH_CONNECT:
				conn_read_ok(c, i);
				break;
			case PH_LINE:
				conn_line(c, i);
				break;
			case PH_HOLD:
				conn_recv(c, i);
				break;
			case PH_ECHO:
				if (re & POLLOUT)
					conn_send(c, i);
				if (re & (POLLIN | POLLHUP | POLLERR) && pause_conn != i)
					conn_recv(c, i);
				break;
			default:
				break;
			}
		}
	}
}

static int
cmd_connect(const char *sock, const char *port)
{
	double deadline = now_ms() + timeout_s * 1000.0;
	char line[64];

	for (int i = 0; i < nconns; i++) {
		struct conn *c = &conns[i];
		c->fd = unix_connect(sock);
		c->seed = (uint64_t)getpid() * 1000 + (uint64_t)i + 1;
		c->fnv_sent = c->fnv_recv = 0xcbf29ce484222325ULL;
		int n = snprintf(line, sizeof(line), "CONNECT %s\n", port);
		if (write(c->fd, line, (size_t)n) != n)
			die("conn %d: write CONNECT: %s", i, strerror(errno));
		set_nonblock(c->fd);
	}
	run(PH_CONNECT, PH_CONNECT, deadline);
	if (expect_refused || line_text != NULL) {
		run(PH_LINE, PH_LINE, deadline);
		return 0;
	}
	say("%d connection(s) accepted after %.0f ms", nconns, now_ms() - t_start);
	for (int r = 1; r <= rounds; r++) {
		double t0 = now_ms();
		run(PH_ECHO, PH_ECHO, deadline);
		double ms = now_ms() - t0;
		for (int i = 0; i < nconns; i++) {
			if (nconns <= 4)
				say("conn %d: round %d: %" PRIu64 " bytes sent and echoed, "
				    "fnv sent %016" PRIx64 " received %016" PRIx64, i, r,
				    conns[i].recvd, conns[i].fnv_sent, conns[i].fnv_recv);
		}
		say("round %d ok: %d connection(s), %" PRIu64 " bytes each way on each, "
		    "all verified, in %.0f ms", r, nconns, round_bytes, ms);
		if (r == rounds)
			break;
		if (wait_stdin) {
			say("waiting for a line on stdin");
			char buf[64];
			if (fgets(buf, sizeof(buf), stdin) == NULL)
				die("stdin closed before the next round");
			deadline = now_ms() + timeout_s * 1000.0;
		}
		for (int i = 0; i < nconns; i++) {
			conns[i].phase = PH_ECHO;
			conns[i].target += round_bytes;
		}
	}
	if (hold) {
		for (int i = 0; i < nconns; i++)
			conns[i].phase = PH_HOLD;
		say("holding %d connection(s) open", nconns);
		deadline = now_ms() + timeout_s * 1000.0;
		run(PH_HOLD, PH_HOLD, deadline);
		say("all %d connection(s) closed by emberd", nconns);
	}
	for (int i = 0; i < nconns; i++)
		close(conns[i].fd);
	return 0;
}

static int
cmd_listen(const char *path, const char *reply)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	char buf[4096];
	size_t len = 0;
	int lfd, fd;

	if (strlen(path) >= sizeof(sun.sun_path))
		die("path too long: %s", path);
	memcpy(sun.sun_path, path, strlen(path) + 1);
	unlink(path);
	lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sun, sizeof(sun)) < 0 || listen(lfd, 4) < 0)
		die("listen on %s: %s", path, strerror(errno));
	say("listening on %s", path);
	struct pollfd p = { lfd, POLLIN, 0 };
	if (poll(&p, 1, timeout_s * 1000) != 1)
		die("no connection on %s within %d s", path, timeout_s);
	if ((fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) < 0)
		die("accept: %s", strerror(errno));
	say("accepted a connection after %.0f ms", now_ms() - t_start);
	for (;;) {
		struct pollfd q = { fd, POLLIN, 0 };
		if (poll(&q, 1, timeout_s * 1000) != 1)
			die("nothing from the guest within %d s", timeout_s);
		ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);
		if (n < 0)
			die("read: %s", strerror(errno));
		len += (size_t)n;
		buf[len] = '\0';
		if (n == 0 || strchr(buf, '\n') != NULL || len == sizeof(buf) - 1)
			break;
	}
	buf[strcspn(buf, "\n")] = '\0';
	say("received '%s'", buf);
	if (reply != NULL) {
		int m = snprintf(buf, sizeof(buf), "%s\n", reply);
		if (write(fd, buf, (size_t)m) != m)
			die("write reply: %s", strerror(errno));
		say("answered '%s'", reply);
	}
	close(fd);
	close(lfd);
	unlink(path);
	return 0;
}

static int
usage(void)
{
	fprintf(stderr,
	    "usage: vsock-client connect SOCK PORT [--conns N] [--bytes N] [--rounds N]\n"
	    "           [--wait-stdin] [--pause-after N --pause-ms MS] [--hold]\n"
	    "           [--line TEXT] [--expect-refused] [--timeout S]\n"
	    "       vsock-client listen PATH [--reply TEXT] [--timeout S]\n");
	return 2;
}

int
main(int argc, char **argv)
{
	const char *reply = NULL;
	int a;

	signal(SIGPIPE, SIG_IGN);
	t_start = now_ms();
	if (argc < 3)
		return usage();
	bool is_connect = strcmp(argv[1], "connect") == 0;
	if (!is_connect && strcmp(argv[1], "listen") != 0)
		return usage();
	a = is_connect ? 4 : 3;
	if (is_connect && argc < 4)
		return usage();
	for (; a < argc; a++) {
		const char *o = argv[a], *v = a + 1 < argc ? argv[a + 1] : NULL;
		if (strcmp(o, "--wait-stdin") == 0)
			wait_stdin = true;
		else if (strcmp(o, "--hold") == 0)
			hold = true;
		else if (strcmp(o, "--expect-refused") == 0)
			expect_refused = true;
		else if (v == NULL)
			return usage();
		else if (a++, strcmp(o, "--conns") == 0)
			nconns = atoi(v);
		else if (strcmp(o, "--bytes") == 0)
			round_bytes = strtoull(v, NULL, 0);
		else if (strcmp(o, "--rounds") == 0)
			rounds = atoi(v);
		else if (strcmp(o, "--pause-after") == 0)
			pause_after = strtoull(v, NULL, 0);
		else if (strcmp(o, "--pause-ms") == 0)
			pause_ms = atoi(v);
		else if (strcmp(o, "--line") == 0)
			line_text = v;
		else if (strcmp(o, "--reply") == 0)
			reply = v;
		else if (strcmp(o, "--timeout") == 0)
			timeout_s = atoi(v);
		else
			return usage();
	}
	if (nconns < 1 || nconns > MAX_CONNS || rounds < 1 || round_bytes == 0 || timeout_s < 1)
		return usage();
	return is_connect ? cmd_connect(argv[2], argv[3]) : cmd_listen(argv[2], reply);
}
