/*
 * vsock throughput benchmark. Prints figures; asserts nothing.
 *
 * 1. The device alone: emberd's connection multiplexer (vsock-mux.c, the
 *    part of the device that runs per packet) driven in-process by a fake
 *    guest, the way tests/unit/check_vsock_mux.c does: a host client on the
 *    real vsock.sock (CONNECT/OK), packets in through
 *    vsock_mux_guest_packet, packets out through vsock_mux_fill_rx into
 *    plain buffers, credit kept by the fake guest as a Linux guest keeps it
 *    (buf_alloc 256 KiB, a CREDIT_UPDATE when half of it is consumed).
 *    host->guest: a thread writes into the host socket, the fake guest
 *    takes rx packets of 4 KiB (a Linux 6.1 guest posts 4 KiB rx buffers)
 *    and of 64 KiB. guest->host: the fake guest sends RW packets of 4 KiB
 *    and 64 KiB, cut to its credit as Linux does; a thread reads the host
 *    socket. Next to it: the same bytes through a plain Unix socketpair
 *    (writer thread, reader with a 64 KiB buffer), and the ratio. The ring
 *    walking and the eventfd kicks of a real device are not in these
 *    figures.
 * 2. Through a real guest (QEMU under TCG, ember-mini with ember-agent, one
 *    stream each way): emberd runs a VM whose root disk's ember-rc runs
 *    "ember-agent connect 2 7001 </dev/null >/dev/null" (host->guest sink:
 *    the host listener on vsock.sock_7001 writes N MiB; timed from accept
 *    to the last write, so at most a socket buffer is still in flight) and
 *    "dd if=/dev/zero bs=64k count=N*16 | ember-agent connect 2 7002"
 *    (guest->host: timed from accept to EOF on vsock.sock_7002). Under TCG
 *    the guest's emulated CPU is the limit, not emberd.
 *
 * usage: bench-vsock [-m MIB_DEVICE] [-g MIB_GUEST] [-e EMBERD] [-c EMBERCTL]
 *                    [-i IMAGE_DIR] [-n]   (-n: the device part only)
 * Paths default to $EMBERD, $EMBERCTL and <build>/image-mini (built by
 * the QEMU integration tests, e.g. ctest -R it_vsock).
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "../../platform/linux/vsock-mux.h"

#define GUEST_CID	3
#define GUEST_PORT	5000	/* the port the host client CONNECTs to */
#define GUEST_BUF_ALLOC	(256 * 1024)
#define CHUNK		(64 * 1024)

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static char workdir[PATH_MAX];
static pid_t emberd_pid = -1;
static char ctl_cmd[PATH_MAX * 2];

static void
cleanup(void)
{
	char cmd[PATH_MAX + 64];

	if (emberd_pid > 0) {
		snprintf(cmd, sizeof(cmd), "%s vm stop --force bench >/dev/null 2>&1", ctl_cmd);
		if (system(cmd) != 0) {
			/* nothing to stop */
		}
		kill(emberd_pid, SIGTERM);
		waitpid(emberd_pid, NULL, 0);
		emberd_pid = -1;
	}
	if (workdir[0] != '\0') {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", workdir);
		if (system(cmd) != 0)
			fprintf(stderr, "bench-vsock: could not remove %s\n", workdir);
		workdir[0] = '\0';
	}
}

static void
die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "bench-vsock: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	cleanup();
	exit(1);
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
unix_connect(const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0)
		die("connect %s: %s", path, strerror(errno));
	return fd;
}

static int
unix_listen(const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 || listen(fd, 4) < 0)
		die("listen %s: %s", path, strerror(errno));
	return fd;
}

/* ---- byte pumps on threads ---- */

struct pump {
	int fd;
	size_t bytes;
};

static void *
writer_thread(void *arg)
{
	struct pump *p = arg;
	static char buf[CHUNK];
	size_t left = p->bytes;

	memset(buf, 0x5a, sizeof(buf));
	while (left > 0) {
		ssize_t n = write(p->fd, buf, left < sizeof(buf) ? left : sizeof(buf));
		if (n <= 0)
			die("writer: %s", n == 0 ? "short write" : strerror(errno));
		left -= (size_t)n;
	}
	return NULL;
}

static void *
reader_thread(void *arg)
{
	struct pump *p = arg;
	static char buf[CHUNK];
	size_t left = p->bytes;

	while (left > 0) {
		ssize_t n = read(p->fd, buf, sizeof(buf));
		if (n <= 0)
			die("reader: %s after %zu bytes", n == 0 ? "EOF" : strerror(errno),
			    p->bytes - left);
		left -= (size_t)n;
	}
	return NULL;
}

/* The plain Unix socketpair: a writer thread, a reader. MiB/s. */
static double
bench_socketpair(size_t bytes)
{
	int sv[2];
	pthread_t t;
	struct pump w;
	static char buf[CHUNK];
	size_t left = bytes;
	double t0;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		die("socketpair: %s", strerror(errno));
	w = (struct pump){ sv[0], bytes };
	t0 = now_s();
	pthread_create(&t, NULL, writer_thread, &w);
	while (left > 0) {
		ssize_t n = read(sv[1], buf, sizeof(buf));
		if (n <= 0)
			die("socketpair read: %s", strerror(errno));
		left -= (size_t)n;
	}
	pthread_join(t, NULL);
	double mibs = (double)bytes / (1 << 20) / (now_s() - t0);
	close(sv[0]);
	close(sv[1]);
	return mibs;
}

/* ---- the device alone ---- */

struct fake {
	struct event_base *base;
	struct vsock_mux *mux;
	struct event *tick;
	char dir[64], uds[128];
	uint32_t local_port;		/* the host side's port of the flow */
	/* guest receive side */
	uint32_t rx_fwd, rx_fwd_sent;
	/* guest send side */
	uint32_t tx_cnt, host_buf_alloc, host_fwd;
	size_t packets;
};

static void
on_rx_ready(void *ctx)
{
}

static void
on_tick(evutil_socket_t fd, short what, void *arg)
{
}

static const struct vsock_mux_ops fake_ops = { .rx_ready = on_rx_ready };

static void
guest_send(struct fake *f, uint16_t op, const void *data, uint32_t len)
{
	struct vsock_hdr h = {
		.src_cid = GUEST_CID, .dst_cid = VSOCK_HOST_CID, .src_port = GUEST_PORT,
		.dst_port = f->local_port, .len = len, .type = VSOCK_TYPE_STREAM, .op = op,
		.buf_alloc = GUEST_BUF_ALLOC, .fwd_cnt = f->rx_fwd,
	};
	struct iovec iov = { (void *)data, len };

	vsock_mux_guest_packet(f->mux, &h, &iov, len ? 1 : 0);
	f->rx_fwd_sent = f->rx_fwd;
	if (op == VSOCK_OP_RW)
		f->tx_cnt += len;
}

/* One packet for the guest into buf (room bytes); -1 when none. */
static int
guest_take(struct fake *f, struct vsock_hdr *h, void *buf, size_t room)
{
	struct iovec iov = { buf, room };
	int n;

	if (!vsock_mux_has_rx(f->mux))
		return -1;
	n = vsock_mux_fill_rx(f->mux, h, &iov, 1);
	if (n >= 0) {
		f->host_buf_alloc = h->buf_alloc;
		f->host_fwd = h->fwd_cnt;
		f->packets++;
	}
	return n;
}

/* Sets up a mux with an established host-initiated flow; returns the
 * host client's fd (the OK line read). */
static int
fake_open(struct fake *f)
{
	struct vsock_mux_config cfg = { .guest_cid = GUEST_CID };
	struct timeval tv = { 0, 100 * 1000 };
	struct vsock_hdr h;
	char buf[64];
	int fd, n;

	memset(f, 0, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "/tmp/ember-bench-vsock.XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		die("mkdtemp: %s", strerror(errno));
	snprintf(f->uds, sizeof(f->uds), "%s/vsock.sock", f->dir);
	cfg.uds_path = f->uds;
	f->base = event_base_new();
	f->mux = vsock_mux_new(f->base, &cfg, &fake_ops, f);
	if (f->base == NULL || f->mux == NULL)
		die("vsock_mux_new: %s", strerror(errno));
	/* Keeps EVLOOP_ONCE from sleeping forever if we got the logic wrong. */
	f->tick = event_new(f->base, -1, EV_PERSIST, on_tick, NULL);
	event_add(f->tick, &tv);
	fd = unix_connect(f->uds);
	if (write(fd, "CONNECT 5000\n", 13) != 13)
		die("write CONNECT: %s", strerror(errno));
	for (n = -1; n < 0;) {
		event_base_loop(f->base, EVLOOP_ONCE);
		n = guest_take(f, &h, buf, sizeof(buf));
	}
	if (h.op != VSOCK_OP_REQUEST)
		die("expected a REQUEST, got op %u", h.op);
	f->local_port = h.src_port;
	guest_send(f, VSOCK_OP_RESPONSE, NULL, 0);
	n = (int)read(fd, buf, sizeof(buf) - 1);
	if (n < 3 || strncmp(buf, "OK ", 3) != 0)
		die("no OK line from the mux");
	return fd;
}

static void
fake_close(struct fake *f, int fd)
{
	char cmd[128];

	close(fd);
	vsock_mux_free(f->mux);
	event_free(f->tick);
	event_base_free(f->base);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	if (system(cmd) != 0)
		fprintf(stderr, "bench-vsock: could not remove %s\n", f->dir);
}

/* host -> guest: a thread writes into the host socket; the fake guest takes
 * rx packets of rxbuf bytes. Returns MiB/s; *pkts: packets taken. */
static double
bench_mux_h2g(size_t bytes, size_t rxbuf, size_t *pkts)
{
	static char buf[CHUNK];
	struct fake f;
	struct vsock_hdr h;
	struct pump w;
	pthread_t t;
	size_t got = 0;
	int fd = fake_open(&f);
	double t0 = now_s();

	w = (struct pump){ fd, bytes };
	pthread_create(&t, NULL, writer_thread, &w);
	while (got < bytes) {
		int n = guest_take(&f, &h, buf, rxbuf);
		if (n < 0) {
			event_base_loop(f.base, EVLOOP_ONCE);
			continue;
		}
		if (h.op != VSOCK_OP_RW)
			continue;
		got += (size_t)n;
		f.rx_fwd += (uint32_t)n;	/* the guest application read it at once */
		if (f.rx_fwd - f.rx_fwd_sent >= GUEST_BUF_ALLOC / 2)
			guest_send(&f, VSOCK_OP_CREDIT_UPDATE, NULL, 0);
	}
	double mibs = (double)bytes / (1 << 20) / (now_s() - t0);
	pthread_join(t, NULL);
	*pkts = f.packets;
	fake_close(&f, fd);
	return mibs;
}

/* guest -> host: the fake guest sends RW packets of pkt bytes within the
 * credit the mux grants; a thread reads the host socket. */
static double
bench_mux_g2h(size_t bytes, size_t pkt, size_t *pkts)
{
	static char data[CHUNK], buf[256];
	struct fake f;
	struct vsock_hdr h;
	struct pump r;
	pthread_t t;
	size_t sent = 0, npk = 0;
	int fd = fake_open(&f);
	double t0 = now_s();

	memset(data, 0xa5, sizeof(data));
	r = (struct pump){ fd, bytes };
	pthread_create(&t, NULL, reader_thread, &r);
	while (sent < bytes) {
		/* As a Linux guest does: a packet of at most pkt bytes, cut to
		 * the credit there is. */
		uint32_t in_flight = f.tx_cnt - f.host_fwd;
		size_t credit = in_flight < f.host_buf_alloc ? f.host_buf_alloc - in_flight : 0;
		size_t len = bytes - sent < pkt ? bytes - sent : pkt;
		if (len > credit)
			len = credit;
		if (len > 0) {
			guest_send(&f, VSOCK_OP_RW, data, (uint32_t)len);
			sent += len;
			npk++;
			continue;
		}
		/* Out of credit: let the mux flush and send its CREDIT_UPDATE. */
		if (guest_take(&f, &h, buf, sizeof(buf)) < 0)
			event_base_loop(f.base, EVLOOP_ONCE);
	}
	pthread_join(t, NULL);
	double mibs = (double)bytes / (1 << 20) / (now_s() - t0);
	*pkts = npk;
	fake_close(&f, fd);
	return mibs;
}

static void
device_alone(size_t mib)
{
	size_t bytes = mib << 20, pk;
	double sp, m;

	printf("== the device alone: vsock-mux driven by a fake guest, %zu MiB per run ==\n", mib);
	sp = bench_socketpair(bytes);
	printf("%-44s %9.0f MiB/s\n", "plain Unix socketpair (64 KiB reads)", sp);
	m = bench_mux_h2g(bytes, 4096, &pk);
	printf("%-44s %9.0f MiB/s  %.2fx socketpair  (%zu packets, %.2f us each)\n",
	    "host->guest, 4 KiB rx buffers", m, m / sp, pk, (double)bytes / (1 << 20) / m * 1e6 / (double)pk);
	m = bench_mux_h2g(bytes, CHUNK, &pk);
	printf("%-44s %9.0f MiB/s  %.2fx socketpair  (%zu packets, %.2f us each)\n",
	    "host->guest, 64 KiB rx buffers", m, m / sp, pk, (double)bytes / (1 << 20) / m * 1e6 / (double)pk);
	m = bench_mux_g2h(bytes, 4096, &pk);
	printf("%-44s %9.0f MiB/s  %.2fx socketpair  (%zu packets, %.2f us each)\n",
	    "guest->host, 4 KiB packets", m, m / sp, pk, (double)bytes / (1 << 20) / m * 1e6 / (double)pk);
	m = bench_mux_g2h(bytes, CHUNK, &pk);
	printf("%-44s %9.0f MiB/s  %.2fx socketpair  (%zu packets, %.2f us each)\n",
	    "guest->host, 64 KiB packets", m, m / sp, pk, (double)bytes / (1 << 20) / m * 1e6 / (double)pk);
}

/* ---- through a real guest ---- */

static void
build_path(char *out, size_t len, const char *env, const char *arg, const char *rel)
{
	char exe[PATH_MAX], *build;
	ssize_t n;

	if (arg != NULL || (arg = getenv(env)) != NULL) {
		snprintf(out, len, "%s", arg);
		return;
	}
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n < 0)
		die("/proc/self/exe: %s", strerror(errno));
	exe[n] = '\0';
	build = dirname(dirname(dirname(exe)));	/* <build>/tests/bench/bench-vsock */
	snprintf(out, len, "%s/%s", build, rel);
}

static void __attribute__((format(printf, 1, 2)))
ctl(const char *fmt, ...)
{
	char args[PATH_MAX * 3], cmd[PATH_MAX * 6];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(args, sizeof(args), fmt, ap);
	va_end(ap);
	snprintf(cmd, sizeof(cmd), "%s %s >/dev/null", ctl_cmd, args);
	if (system(cmd) != 0)
		die("emberctl %s failed", args);
}

static void
write_file(const char *path, const char *text, mode_t mode)
{
	FILE *fp = fopen(path, "w");

	if (fp == NULL || fputs(text, fp) < 0 || fclose(fp) != 0)
		die("%s: %s", path, strerror(errno));
	chmod(path, mode);
}

static int
accept_within(int lfd, int seconds, const char *what)
{
	struct pollfd p = { lfd, POLLIN, 0 };
	int fd;

	if (poll(&p, 1, seconds * 1000) != 1)
		die("the guest did not connect to %s within %d s (see %s/state/vms/bench/console.log)",
		    what, seconds, workdir);
	if ((fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) < 0)
		die("accept: %s", strerror(errno));
	return fd;
}

static void
real_guest(size_t mib, const char *emberd, const char *emberctl, const char *image)
{
	char state[PATH_MAX], sock[PATH_MAX], path[PATH_MAX], vs[PATH_MAX], rc[1024];
	static char buf[CHUNK];
	double deadline, t0, h2g, g2h;
	struct stat st;
	int lfd1, lfd2, fd;

	printf("== through a real guest: QEMU under TCG, ember-mini + ember-agent, %zu MiB "
	    "each way, one stream ==\n", mib);
	snprintf(path, sizeof(path), "%s/image.json", image);
	if (stat(path, &st) < 0 || access(emberd, X_OK) < 0 || access(emberctl, X_OK) < 0 ||
	    system("command -v qemu-system-x86_64 >/dev/null") != 0) {
		printf("skipped: needs %s (ctest -R it_vsock builds it), emberd, emberctl and "
		    "qemu-system-x86_64\n", path);
		return;
	}
	snprintf(workdir, sizeof(workdir), "%s/ember-bench-vsock.XXXXXX",
	    getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (mkdtemp(workdir) == NULL)
		die("mkdtemp: %s", strerror(errno));
	snprintf(state, sizeof(state), "%s/state", workdir);
	snprintf(sock, sizeof(sock), "%s/emberd.sock", state);
	snprintf(ctl_cmd, sizeof(ctl_cmd), "'%s' --socket '%s'", emberctl, sock);
	snprintf(path, sizeof(path), "%s/emberd.yaml", workdir);
	write_file(path, "qemu:\n  accel: tcg\ndefaults:\n  backend: qemu\n  memory: 256M\n", 0644);

	emberd_pid = fork();
	if (emberd_pid < 0)
		die("fork: %s", strerror(errno));
	if (emberd_pid == 0) {
		char log[PATH_MAX];
		snprintf(log, sizeof(log), "%s/emberd.log", workdir);
		int lf = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (lf >= 0) {
			dup2(lf, 1);
			dup2(lf, 2);
		}
		execl(emberd, emberd, "--state-dir", state, "--socket", sock, "--config", path,
		    (char *)NULL);
		_exit(127);
	}
	deadline = now_s() + 15;
	for (;;) {
		char cmd[PATH_MAX * 3];
		snprintf(cmd, sizeof(cmd), "%s daemon info >/dev/null 2>&1", ctl_cmd);
		if (system(cmd) == 0)
			break;
		if (now_s() > deadline)
			die("emberd did not come up (see %s/emberd.log)", workdir);
		usleep(50 * 1000);	/* poll interval */
	}

	snprintf(path, sizeof(path), "%s/rootdir", workdir);
	mkdir(path, 0755);
	snprintf(rc, sizeof(rc),
	    "#!/bin/sh\n"
	    "( ember-agent connect 2 7001 </dev/null >/dev/null\n"
	    "  dd if=/dev/zero bs=65536 count=%zu 2>/dev/null | ember-agent connect 2 7002 >/dev/null\n"
	    ") >/dev/console 2>&1 &\n", mib * 16);
	snprintf(path, sizeof(path), "%s/rootdir/ember-rc", workdir);
	write_file(path, rc, 0755);
	{
		char boot[1024] = "console=ttyS0 reboot=t panic=-1 quiet";
		FILE *fp;
		snprintf(path, sizeof(path), "jq -r .boot_args '%s/image.json'", image);
		if ((fp = popen(path, "r")) != NULL) {
			if (fgets(boot, sizeof(boot), fp) != NULL)
				boot[strcspn(boot, "\n")] = '\0';
			pclose(fp);
		}
		ctl("image import bench --kernel '%s/vmlinuz' --initrd '%s/initrd.gz' "
		    "--boot-args '%s' --rootfs-dir '%s/rootdir' --rootfs-size 16M",
		    image, image, boot, workdir);
	}
	ctl("vm create bench --image bench --vsock --no-start");
	snprintf(vs, sizeof(vs), "%s/vms/bench/vsock.sock", state);
	snprintf(path, sizeof(path), "%s_7001", vs);
	lfd1 = unix_listen(path);
	snprintf(path, sizeof(path), "%s_7002", vs);
	lfd2 = unix_listen(path);
	ctl("vm start bench");

	fd = accept_within(lfd1, 120, "vsock.sock_7001");
	t0 = now_s();
	struct pump w = { fd, mib << 20 };
	writer_thread(&w);
	h2g = (double)mib / (now_s() - t0);
	close(fd);
	printf("%-44s %9.1f MiB/s\n", "host->guest (guest reads to /dev/null)", h2g);

	fd = accept_within(lfd2, 60, "vsock.sock_7002");
	t0 = now_s();
	size_t got = 0;
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n < 0)
			die("read from the guest: %s", strerror(errno));
		if (n == 0)
			break;
		got += (size_t)n;
	}
	g2h = (double)got / (1 << 20) / (now_s() - t0);
	close(fd);
	if (got != mib << 20)
		die("the guest sent %zu bytes, expected %zu", got, mib << 20);
	printf("%-44s %9.1f MiB/s\n", "guest->host (dd from /dev/zero)", g2h);
	close(lfd1);
	close(lfd2);
	cleanup();
}

int
main(int argc, char **argv)
{
	char emberd[PATH_MAX], emberctl[PATH_MAX], image[PATH_MAX];
	const char *e = NULL, *c = NULL, *i = NULL;
	size_t mib_dev = 256, mib_guest = 64;
	bool device_only = false;
	int opt;

	while ((opt = getopt(argc, argv, "m:g:e:c:i:nh")) != -1) {
		switch (opt) {
		case 'm': mib_dev = strtoul(optarg, NULL, 10); break;
		case 'g': mib_guest = strtoul(optarg, NULL, 10); break;
		case 'e': e = optarg; break;
		case 'c': c = optarg; break;
		case 'i': i = optarg; break;
		case 'n': device_only = true; break;
		default:
			fprintf(stderr, "usage: %s [-m MIB_DEVICE] [-g MIB_GUEST] [-e EMBERD] "
			    "[-c EMBERCTL] [-i IMAGE_DIR] [-n]\n", argv[0]);
			return 2;
		}
	}
	if (mib_dev == 0 || mib_guest == 0)
		die("sizes must be positive");
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	build_path(emberd, sizeof(emberd), "EMBERD", e, "daemon/emberd");
	build_path(emberctl, sizeof(emberctl), "EMBERCTL", c, "client/emberctl");
	build_path(image, sizeof(image), "EMBER_IMAGE_DIR", i, "image-mini");
	device_alone(mib_dev);
	if (!device_only)
		real_guest(mib_guest, emberd, emberctl, image);
	return 0;
}
