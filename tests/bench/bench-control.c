/*
 * Control-plane benchmark: starts a private emberd on a temporary state
 * directory and prints
 *  - vm.create + vm.delete pairs per second (vsock on, durable state) with
 *    1 and with 8 concurrent clients,
 *  - vm.inspect round-trip latency (p50, p99) with 1 000 VMs registered,
 *  - emberd's RSS with 1 000 VMs,
 *  - the same CID allocate + release workload done the way the original
 *    ember did it, one process per operation (fork+exec of this program's
 *    hidden "--legacy-op" subcommand) taking an exclusive flock on
 *    cids.json.lock, reading cids.json, picking the lowest free CID and
 *    writing a temp file that is renamed over it, and the ratio of the two,
 *  - what one durable write (temp file, fsync, rename, fsync of the
 *    directory) costs on this file system, since both sides are made of them,
 *  - the fsync and fdatasync calls emberd makes per create+delete pair
 *    with 1 and with 8 clients, counted by strace attached to every thread
 *    of emberd, and how many of them ran on the event loop's thread (none:
 *    the group-commit writer, daemon/durable.c, does them; before it there
 *    were 8 per pair, create 5 and delete 3, all on the loop),
 *  - vm.inspect latency (p50, p99, max) from an idle client while the loop
 *    is busy elsewhere: (a) 8 clients create and delete, (b) a Firecracker
 *    root disk is copied from a 2 GiB file on a filesystem without reflink
 *    (the Firecracker double, tests/fakes/fc-double), (c) a batch of 2 000
 *    vm.create runs (three batches, each deleted before the next, their
 *    samples pooled), (d) 8 QEMU guests boot under TCG and their agents
 *    answer (about 25 s on 2 cores); each beside the Unix-socket round-trip
 *    floor measured in the same run (a child echoing a line of an inspect
 *    reply's size, with the same pause between calls), once idle and once
 *    under each scenario's load (called right after each vm.inspect).
 * Prints figures only; asserts nothing.
 *
 * usage: bench-control [--emberd PATH] [--fc-double PATH] [--seconds N]
 *                      [--disk-mib N] [--qemu-image DIR | --no-qemu]
 *                      [--only LETTERS] [--cgroup PARENT]
 * --cgroup makes PARENT/bench-control.<pid> (PARENT in a cgroup v1 cpu
 * hierarchy, e.g. /sys/fs/cgroup/cpu) and runs emberd alone in it, as a
 * unit with Delegate=yes runs, so emberd puts the hypervisors in its vms
 * group (platform/vm-cgroup.h); without it emberd shares the bench's
 * cgroup and groups nothing. The header says which.
 * --only runs just the vm.inspect scenarios named by letter (i idle, a, b,
 * c, d) and skips every other figure.
 * emberd defaults to $EMBERD, else ../../daemon/emberd or ../daemon/emberd
 * next to this binary; fc-double to $FC_DOUBLE, else ../fakes/fc-double;
 * without it scenario (b) is skipped (and said so). (d) boots the image
 * that packaging/image/build-mini.sh built in --qemu-image DIR, else
 * $EMBER_IMAGE_DIR, else ../../image-mini next to this binary (where the
 * QEMU tests build it); without one, or with --no-qemu, it is skipped (and
 * said so).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <linux/fs.h>
#include <poll.h>
#include <dirent.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "bench-util.h"
#include "fsutil.h"
#include "platform.h"

#define FILL_VMS	1000
#define INSPECTS	5000
#define CLIENTS		8

#define PROBE_SAMPLES	200000	/* vm.inspect latencies kept per scenario */
#define PROBE_GAP_NS	1000000	/* the idle client's pause between calls */
#define BATCH_CREATES	2000
#define BATCH_ROUNDS	3	/* (c) is probed over this many batches */
#define QEMU_GUESTS	8
#define BIG_REPLY_MAX	(64u << 20)

static char state_dir[PATH_MAX], sock_path[PATH_MAX], config_path[PATH_MAX];
/* --cgroup PARENT: emberd runs alone in PARENT/bench-control.<pid>, as in a
 * unit's delegated cgroup, so it may put hypervisors in <that>/vms. */
static char bench_cgroup[PATH_MAX];
static pid_t emberd_pid = -1;
static int in_child;		/* a forked worker: emberd and the directory are not its */

/* CPU seconds (user + system) emberd has used: its event loop's thread
 * (the main one) when loop_only, else every thread; -1 if unreadable. */
static double
emberd_cpu_s(bool loop_only)
{
	char path[64], buf[1024], *p;
	unsigned long long ut, st;
	FILE *f;
	size_t n;

	if (loop_only)
		snprintf(path, sizeof(path), "/proc/%d/task/%d/stat", (int)emberd_pid,
		    (int)emberd_pid);
	else
		snprintf(path, sizeof(path), "/proc/%d/stat", (int)emberd_pid);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* after "(comm)": state is field 3, utime 14 and stime 15 */
	if ((p = strrchr(buf, ')')) == NULL ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return -1;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static void
cleanup(void)
{
	if (in_child)
		return;
	if (emberd_pid > 0) {
		kill(emberd_pid, SIGTERM);
		waitpid(emberd_pid, NULL, 0);
		emberd_pid = -1;
	}
	if (state_dir[0] != '\0')
		rm_rf(state_dir);
	if (bench_cgroup[0] != '\0') {
		char vms[PATH_MAX + 8];

		/* empty once the hypervisors the cleanup killed are reaped */
		snprintf(vms, sizeof(vms), "%s/vms", bench_cgroup);
		for (int i = 0; i < 200 && ((rmdir(vms) < 0 && errno == EBUSY) ||
		    (rmdir(bench_cgroup) < 0 && errno == EBUSY)); i++)
			usleep(50 * 1000);
		bench_cgroup[0] = '\0';
	}
}

static void
die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void
die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "bench-control: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	cleanup();
	exit(1);
}

/* ---- a blocking JSON-RPC client --------------------------------------- */

struct client {
	int fd;
	char buf[1 << 16];
	size_t len;
};

static int
client_connect(struct client *c)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };

	c->len = 0;
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		return -errno;
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", sock_path);
	if (connect(c->fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		int e = errno;
		close(c->fd);
		c->fd = -1;
		return -e;
	}
	return 0;
}

static void
client_send(struct client *c, const char *line, size_t len)
{
	while (len > 0) {
		ssize_t n = write(c->fd, line, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			die("write to emberd: %s", strerror(errno));
		line += n;
		len -= (size_t)n;
	}
}

/* Reads one reply line into out (NUL-terminated, newline dropped). */
static void
client_recv(struct client *c, char *out, size_t outlen)
{
	for (;;) {
		char *nl = memchr(c->buf, '\n', c->len);
		if (nl != NULL) {
			size_t n = (size_t)(nl - c->buf);
			if (n >= outlen)
				die("reply longer than %zu bytes", outlen);
			memcpy(out, c->buf, n);
			out[n] = '\0';
			c->len -= n + 1;
			memmove(c->buf, nl + 1, c->len);
			return;
		}
		if (c->len == sizeof(c->buf))
			die("reply line longer than the client buffer");
		ssize_t r = read(c->fd, c->buf + c->len, sizeof(c->buf) - c->len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			die("emberd closed the connection");
		c->len += (size_t)r;
	}
}

/* One call; dies unless the reply is a result. */
static void
client_call(struct client *c, const char *line)
{
	char reply[1 << 16];

	client_send(c, line, strlen(line));
	client_recv(c, reply, sizeof(reply));
	if (strstr(reply, "\"result\"") == NULL)
		die("%s -> %s", line, reply);
}

/* ---- emberd ------------------------------------------------------------ */

static void
find_emberd(const char *given, char *out, size_t len)
{
	char self[PATH_MAX], *slash;
	const char *rel[] = { "../../daemon/emberd", "../daemon/emberd" };
	ssize_t n;

	if (given == NULL)
		given = getenv("EMBERD");
	if (given != NULL) {
		snprintf(out, len, "%s", given);
		return;
	}
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n < 0)
		die("readlink /proc/self/exe: %s", strerror(errno));
	self[n] = '\0';
	if ((slash = strrchr(self, '/')) != NULL)
		*slash = '\0';
	for (size_t i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
		snprintf(out, len, "%s/%s", self, rel[i]);
		if (access(out, X_OK) == 0)
			return;
	}
	die("cannot find emberd next to %s; pass --emberd or set EMBERD", self);
}

static void
start_emberd(const char *emberd)
{
	struct client c;
	double deadline = now_s() + 10;

	emberd_pid = fork();
	if (emberd_pid < 0)
		die("fork: %s", strerror(errno));
	if (emberd_pid == 0) {
		char log[PATH_MAX];
		snprintf(log, sizeof(log), "%s/emberd.log", state_dir);
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd >= 0)
			dup2(fd, STDERR_FILENO);
		if (bench_cgroup[0] != '\0') {
			char procs[PATH_MAX + 16];
			snprintf(procs, sizeof(procs), "%s/cgroup.procs", bench_cgroup);
			int cg = open(procs, O_WRONLY | O_CLOEXEC);
			if (cg < 0 || write(cg, "0\n", 2) != 2)
				_exit(126);
		}
		execl(emberd, emberd, "--state-dir", state_dir, "--socket", sock_path,
		    "--config", config_path, "--log-level", "warn", (char *)NULL);
		_exit(127);
	}
	/* Poll until it accepts a connection. */
	while (client_connect(&c) < 0) {
		if (waitpid(emberd_pid, NULL, WNOHANG) == emberd_pid) {
			emberd_pid = -1;
			die("emberd exited at startup (see %s/emberd.log)", state_dir);
		}
		if (now_s() > deadline)
			die("emberd did not listen on %s within 10 s", sock_path);
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	client_call(&c, "{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"daemon.info\"}\n");
	close(c.fd);
}

static long
emberd_rss_kib(void)
{
	return platform_process_rss_kib(emberd_pid);
}

/* ---- workloads ---------------------------------------------------------- */

/* create+delete pairs on one connection until `until`; returns the count. */
static long
create_delete_loop(int client_no, double until, long max_pairs)
{
	struct client c;
	char line[512];
	long pairs = 0;

	if (client_connect(&c) < 0)
		die("connect: %s", strerror(errno));
	while (now_s() < until && pairs < max_pairs) {
		snprintf(line, sizeof(line), "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"vm.create\","
		    "\"params\":{\"name\":\"c%d-%ld\",\"vsock\":true,\"start\":false}}\n",
		    client_no, pairs);
		client_call(&c, line);
		snprintf(line, sizeof(line), "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"vm.delete\","
		    "\"params\":{\"name\":\"c%d-%ld\"}}\n", client_no, pairs);
		client_call(&c, line);
		pairs++;
	}
	close(c.fd);
	return pairs;
}

/* n clients in child processes for `seconds`; returns pairs per second. */
static double
bench_create_delete(int n, double seconds, long *total_out)
{
	int fds[2];
	pid_t pids[CLIENTS];
	long total = 0;
	double t0, until;

	if (pipe2(fds, O_CLOEXEC) < 0)
		die("pipe: %s", strerror(errno));
	fflush(stdout);
	t0 = now_s();
	until = t0 + seconds;
	for (int i = 0; i < n; i++) {
		pids[i] = fork();
		if (pids[i] < 0)
			die("fork: %s", strerror(errno));
		if (pids[i] == 0) {
			in_child = 1;
			long pairs = create_delete_loop(i, until, LONG_MAX);
			if (write(fds[1], &pairs, sizeof(pairs)) != sizeof(pairs))
				_exit(1);
			_exit(0);
		}
	}
	close(fds[1]);
	for (int i = 0; i < n; i++) {
		long pairs;
		int status;
		if (read(fds[0], &pairs, sizeof(pairs)) != sizeof(pairs))
			die("a client process failed");
		total += pairs;
		waitpid(pids[i], &status, 0);
	}
	close(fds[0]);
	*total_out = total;
	return (double)total / (now_s() - t0);
}

static void
fill_vms(int count)
{
	struct client c;
	char line[512], reply[1 << 16];
	int sent = 0, got = 0;

	if (client_connect(&c) < 0)
		die("connect: %s", strerror(errno));
	/* Pipelined in windows of 64 so neither side's buffers fill up. */
	while (got < count) {
		while (sent < count && sent - got < 64) {
			snprintf(line, sizeof(line), "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":"
			    "\"vm.create\",\"params\":{\"name\":\"fill%04d\",\"vsock\":true,"
			    "\"start\":false}}\n", sent, sent);
			client_send(&c, line, strlen(line));
			sent++;
		}
		client_recv(&c, reply, sizeof(reply));
		if (strstr(reply, "\"result\"") == NULL)
			die("fill: %s", reply);
		got++;
	}
	close(c.fd);
}

static void
bench_inspect(int count, double *p50, double *p99)
{
	static double lat[INSPECTS];
	struct client c;
	char line[256];

	if (client_connect(&c) < 0)
		die("connect: %s", strerror(errno));
	for (int i = 0; i < INSPECTS; i++) {
		snprintf(line, sizeof(line), "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"vm.inspect\","
		    "\"params\":{\"name\":\"fill%04d\"}}\n", i, (i * 7919) % count);
		double t0 = now_s();
		client_call(&c, line);
		lat[i] = (now_s() - t0) * 1e6;
	}
	close(c.fd);
	qsort(lat, INSPECTS, sizeof(lat[0]), cmp_double);
	*p50 = lat[INSPECTS / 2];
	*p99 = lat[INSPECTS * 99 / 100];
}

/* ---- vm.inspect from an idle client while the daemon is busy ------------ */

/* One call with JSON params; dies unless the reply is a result. */
static void
client_call_json(struct client *c, const char *method, json_t *params)
{
	json_t *req = json_pack("{s:s, s:i, s:s, s:o}", "jsonrpc", "2.0", "id", 1, "method",
	    method, "params", params);
	char *line = json_dumps(req, JSON_COMPACT);

	json_decref(req);
	if (line == NULL)
		die("out of memory");
	size_t n = strlen(line);
	char *framed = malloc(n + 2);
	if (framed == NULL)
		die("out of memory");
	memcpy(framed, line, n);
	framed[n] = '\n';
	framed[n + 1] = '\0';
	free(line);
	client_call(c, framed);
	free(framed);
}

/* Reads one reply line of up to BIG_REPLY_MAX bytes on a connection that has
 * nothing buffered yet (a batch reply); returns it, owned. */
static char *
client_recv_big(struct client *c)
{
	size_t cap = 1 << 20, len = c->len;
	char *buf = malloc(cap), *nl;

	if (buf == NULL)
		die("out of memory");
	memcpy(buf, c->buf, c->len);
	c->len = 0;
	while ((nl = memchr(buf, '\n', len)) == NULL) {
		if (len == cap) {
			if (cap >= BIG_REPLY_MAX)
				die("batch reply longer than %u bytes", BIG_REPLY_MAX);
			cap *= 2;
			if ((buf = realloc(buf, cap)) == NULL)
				die("out of memory");
		}
		ssize_t r = read(c->fd, buf + len, cap - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			die("emberd closed the connection during a batch");
		len += (size_t)r;
	}
	*nl = '\0';
	return buf;
}

static const char probe_request[] =
    "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"vm.inspect\",\"params\":{\"name\":\"probe\"}}\n";

struct latency {
	double p50, p99, max;	/* microseconds */
	long calls;
};

static void
latency_summary(double *lat, long n, struct latency *out)
{
	qsort(lat, (size_t)n, sizeof(lat[0]), cmp_double);
	out->calls = n;
	out->p50 = n > 0 ? lat[n / 2] : 0;
	out->p99 = n > 0 ? lat[n * 99 / 100] : 0;
	out->max = n > 0 ? lat[n - 1] : 0;
}

/* The floor: the same request and a reply of reply_len bytes over a Unix
 * stream socket to a child that only echoes, no daemon in between, paced
 * like the probes (PROBE_GAP_NS between calls): both ends then sleep
 * between calls, and on a loaded machine waking them dominates the p99, so
 * a floor measured back to back would be no floor for the probes. The echo
 * child is started once; each scenario calls it right after each
 * vm.inspect, so every scenario has its floor measured under its own load. */
struct echo_peer {
	pid_t pid;
	int fd;
};

static struct echo_peer floor_peer = { -1, -1 };

static void
echo_peer_start(struct echo_peer *e, size_t reply_len)
{
	char reply[1 << 16], req[sizeof(probe_request)];
	int sv[2];

	if (reply_len < 2 || reply_len > sizeof(reply))
		reply_len = 600;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		die("socketpair: %s", strerror(errno));
	fflush(stdout);
	if ((e->pid = fork()) < 0)
		die("fork: %s", strerror(errno));
	if (e->pid == 0) {
		size_t got = 0;
		memset(reply, 'x', reply_len - 1);
		reply[reply_len - 1] = '\n';
		close(sv[0]);
		for (;;) {
			ssize_t r = read(sv[1], req + got, sizeof(req) - got);
			if (r <= 0)
				_exit(0);
			got += (size_t)r;
			if (memchr(req, '\n', got) == NULL && got < sizeof(req))
				continue;
			got = 0;
			for (size_t off = 0; off < reply_len;) {
				ssize_t w = write(sv[1], reply + off, reply_len - off);
				if (w <= 0)
					_exit(1);
				off += (size_t)w;
			}
		}
	}
	close(sv[1]);
	e->fd = sv[0];
}

static void
echo_peer_stop(struct echo_peer *e)
{
	if (e->fd < 0)
		return;
	close(e->fd);
	waitpid(e->pid, NULL, 0);
	e->fd = -1;
	e->pid = -1;
}

/* One round trip to the echo child, in microseconds. */
static double
echo_peer_call(struct echo_peer *e)
{
	struct client c = { .fd = e->fd };
	char reply[1 << 16];
	double t0 = now_s();

	client_send(&c, probe_request, strlen(probe_request));
	client_recv(&c, reply, sizeof(reply));
	return (now_s() - t0) * 1e6;
}

static void
bench_floor(struct latency *out)
{
	static double lat[INSPECTS];
	struct timespec gap = { 0, PROBE_GAP_NS };

	for (int i = 0; i < INSPECTS; i++) {
		lat[i] = echo_peer_call(&floor_peer);
		nanosleep(&gap, NULL);
	}
	latency_summary(lat, INSPECTS, out);
}

/* A scenario's load: runs in a forked child and returns one figure (its
 * own duration, a rate) that the parent prints. */
typedef double (*load_fn)(void *arg);

struct load {
	pid_t pid;
	int fd;			/* the figure comes back here */
};

static void
load_start(struct load *l, load_fn fn, void *arg)
{
	int fds[2];

	fflush(stdout);
	if (pipe2(fds, O_CLOEXEC) < 0)
		die("pipe: %s", strerror(errno));
	if ((l->pid = fork()) < 0)
		die("fork: %s", strerror(errno));
	if (l->pid == 0) {
		in_child = 1;
		close(fds[0]);
		double figure = fn(arg);
		if (write(fds[1], &figure, sizeof(figure)) != sizeof(figure))
			_exit(1);
		_exit(0);
	}
	close(fds[1]);
	l->fd = fds[0];
}

/* Inspects the VM "probe" from one connection, pausing PROBE_GAP_NS between
 * calls, until the load's process exits or limit_s passes (then the load
 * is killed and the bench stops). Returns the load's figure. The figures
 * in out and floor_out are of this load's samples, and with more set, of
 * those of the loads before it since the last call without (a scenario in
 * rounds). */
static double
probe_during(struct load *l, const char *what, double limit_s, bool more, struct latency *out,
    struct latency *floor_out)
{
	static double lat[PROBE_SAMPLES], floor_during[PROBE_SAMPLES];
	static long kept;
	struct timespec gap = { 0, PROBE_GAP_NS };
	struct client c;
	char reply[1 << 16];
	double deadline = now_s() + limit_s, figure = -1;
	long n = more ? kept : 0;
	int status;

	if (client_connect(&c) < 0)
		die("connect: %s", strerror(errno));
	for (;;) {
		pid_t w = waitpid(l->pid, &status, WNOHANG);
		if (w == l->pid)
			break;
		if (now_s() > deadline) {
			kill(l->pid, SIGKILL);
			waitpid(l->pid, &status, 0);
			die("%s did not finish within %.0f s", what, limit_s);
		}
		double t0 = now_s();
		client_send(&c, probe_request, strlen(probe_request));
		client_recv(&c, reply, sizeof(reply));
		if (strstr(reply, "\"result\"") == NULL)
			die("vm.inspect probe -> %s", reply);
		if (n < PROBE_SAMPLES) {
			lat[n] = (now_s() - t0) * 1e6;
			floor_during[n++] = echo_peer_call(&floor_peer);
		}
		nanosleep(&gap, NULL);
	}
	close(c.fd);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
	    read(l->fd, &figure, sizeof(figure)) != sizeof(figure))
		die("%s failed (see above and %s/emberd.log)", what, state_dir);
	close(l->fd);
	kept = n;
	/* sorted copies: the next round appends to the samples as taken */
	static double sorted[PROBE_SAMPLES];
	memcpy(sorted, lat, (size_t)n * sizeof(double));
	latency_summary(sorted, n, out);
	memcpy(sorted, floor_during, (size_t)n * sizeof(double));
	latency_summary(sorted, n, floor_out);
	return figure;
}

static struct latency floor_lat;

/* A scenario's vm.inspect figures, then the echo child's under the same
 * load (the floor "here"): what the machine's scheduling alone costs a
 * paced round trip while that load runs. */
static void
print_probe(const char *what, const struct latency *l, const struct latency *fl,
    const char *load)
{
	printf("  %-30s p50 %7.1f us  p99 %8.1f us  max %9.1f us  %6ld calls  %s\n", what,
	    l->p50, l->p99, l->max, l->calls, load);
	printf("  %-30s p50 %7.1f us  p99 %8.1f us  max %9.1f us  (echo child, same load)\n",
	    "  floor here", fl->p50, fl->p99, fl->max);
	fflush(stdout);
}

/* idle: the load is a wait of the given seconds */
static double
load_idle(void *arg)
{
	double seconds = *(double *)arg;
	struct timespec ts = { (time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9) };

	nanosleep(&ts, NULL);
	return seconds;
}

/* (a) */
static double
load_create_delete(void *arg)
{
	long total;

	return bench_create_delete(CLIENTS, *(double *)arg, &total);
}

/* (b): one vm.create whose Firecracker root disk is copied from a big file;
 * returns the seconds it took. */
static double
load_disk_copy(void *arg)
{
	struct client c;
	double t0 = now_s();

	if (client_connect(&c) < 0)
		die("connect: %s", strerror(errno));
	client_call_json(&c, "vm.create", json_pack("{s:s, s:s, s:s, s:s, s:b}", "name",
	    "bigdisk", "image", "fc", "backend", "firecracker", "rootfs", (const char *)arg,
	    "start", 0));
	close(c.fd);
	return now_s() - t0;
}

/* (c): one batch of BATCH_CREATES vm.create; returns the seconds to its
 * reply. */
static double
load_batch(void *arg)
{
	size_t cap = (size_t)BATCH_CREATES * 128 + 16, len = 0;
	char *batch = malloc(cap), *reply;
	struct client c;
	double t0;
	json_t *doc;
	size_t i;
	json_t *v;

	(void)arg;
	if (batch == NULL)
		die("out of memory");
	batch[len++] = '[';
	for (int k = 0; k < BATCH_CREATES; k++)
		len += (size_t)snprintf(batch + len, cap - len, "%s{\"jsonrpc\":\"2.0\",\"id\":%d,"
		    "\"method\":\"vm.create\",\"params\":{\"name\":\"batch%04d\",\"vsock\":true,"
		    "\"start\":false}}", k ? "," : "", k, k);
	len += (size_t)snprintf(batch + len, cap - len, "]\n");
	if (client_connect(&c) < 0)
		die("connect: %s", strerror(errno));
	t0 = now_s();
	client_send(&c, batch, len);
	reply = client_recv_big(&c);
	t0 = now_s() - t0;
	close(c.fd);
	doc = json_loads(reply, 0, NULL);
	if (json_array_size(doc) != BATCH_CREATES)
		die("batch reply is not %d replies: %.200s", BATCH_CREATES, reply);
	json_array_foreach(doc, i, v)
		if (json_object_get(v, "result") == NULL)
			die("batch create %zu failed: %.300s", i, reply);
	json_decref(doc);
	free(reply);
	free(batch);
	return t0;
}

/* (d): QEMU_GUESTS creates that boot and wait for the guest agent, one
 * connection each; returns the seconds until the last is up. */
static double
load_qemu_boots(void *arg)
{
	pid_t pids[QEMU_GUESTS];
	double t0 = now_s();
	int status, failed = 0;

	(void)arg;
	for (int i = 0; i < QEMU_GUESTS; i++) {
		if ((pids[i] = fork()) < 0)
			die("fork: %s", strerror(errno));
		if (pids[i] == 0) {
			struct client c;
			char name[16];
			snprintf(name, sizeof(name), "tcg%d", i);
			if (client_connect(&c) < 0)
				die("connect: %s", strerror(errno));
			client_call_json(&c, "vm.create", json_pack("{s:s, s:s, s:s, s:b, s:b, s:i, "
			    "s:i}", "name", name, "image", "mini", "backend", "qemu", "vsock", 1,
			    "wait", 1, "wait_timeout_s", 900, "memory_mib", 256));
			_exit(0);
		}
	}
	for (int i = 0; i < QEMU_GUESTS; i++)
		if (waitpid(pids[i], &status, 0) < 0 || !WIFEXITED(status) ||
		    WEXITSTATUS(status) != 0)
			failed++;
	if (failed)
		die("%d of %d QEMU boots failed", failed, QEMU_GUESTS);
	return now_s() - t0;
}

static void
rpc_simple(const char *method, json_t *params)
{
	struct client c;

	if (client_connect(&c) < 0)
		die("connect: %s", strerror(errno));
	client_call_json(&c, method, params);
	close(c.fd);
}

/* Deletes batch0000..: one batch, unmeasured. */
static void
delete_batch(void)
{
	size_t cap = (size_t)BATCH_CREATES * 96 + 16, len = 0;
	char *batch = malloc(cap), *reply;
	struct client c;

	if (batch == NULL)
		die("out of memory");
	batch[len++] = '[';
	for (int k = 0; k < BATCH_CREATES; k++)
		len += (size_t)snprintf(batch + len, cap - len, "%s{\"jsonrpc\":\"2.0\",\"id\":%d,"
		    "\"method\":\"vm.delete\",\"params\":{\"name\":\"batch%04d\"}}", k ? "," : "",
		    k, k);
	len += (size_t)snprintf(batch + len, cap - len, "]\n");
	if (client_connect(&c) < 0)
		die("connect: %s", strerror(errno));
	client_send(&c, batch, len);
	reply = client_recv_big(&c);
	if (strstr(reply, "\"error\"") != NULL)
		die("batch delete: %.300s", reply);
	close(c.fd);
	free(reply);
	free(batch);
}

/* 1 if dir's filesystem clones files (FICLONE), 0 if not. */
static int
fs_reflinks(const char *dir)
{
	char a[PATH_MAX], b[PATH_MAX];
	int fa, fb, ok;

	snprintf(a, sizeof(a), "%s/reflink-a", dir);
	snprintf(b, sizeof(b), "%s/reflink-b", dir);
	fa = open(a, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	fb = open(b, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fa < 0 || fb < 0)
		die("%s: %s", dir, strerror(errno));
	if (write(fa, "reflink probe\n", 14) != 14 || fsync(fa) < 0)
		die("%s: %s", a, strerror(errno));
	ok = ioctl(fb, FICLONE, fa) == 0;
	close(fa);
	close(fb);
	unlink(a);
	unlink(b);
	return ok;
}

/* A file of mib MiB, every byte written (a repeating pattern, each MiB
 * stamped with its index so no block is a copy of another), synced. */
static void
write_big_file(const char *path, long mib)
{
	size_t chunk = 1 << 20;
	unsigned char *buf = malloc(chunk);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	if (buf == NULL || fd < 0)
		die("%s: %s", path, strerror(errno));
	for (size_t i = 0; i < chunk; i++)
		buf[i] = (unsigned char)(i * 2654435761u >> 24);
	for (long m = 0; m < mib; m++) {
		memcpy(buf, &m, sizeof(m));
		for (size_t off = 0; off < chunk;) {
			ssize_t w = write(fd, buf + off, chunk - off);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				die("write %s: %s", path, strerror(errno));
			off += (size_t)w;
		}
	}
	if (fsync(fd) < 0)
		die("fsync %s: %s", path, strerror(errno));
	close(fd);
	free(buf);
}

static void
write_text(const char *name, const char *text)
{
	char path[PATH_MAX];
	FILE *fp;

	snprintf(path, sizeof(path), "%s/%s", state_dir, name);
	if ((fp = fopen(path, "we")) == NULL || fputs(text, fp) < 0 || fclose(fp) != 0)
		die("%s: %s", path, strerror(errno));
}

/* ---- fsyncs per create+delete, counted by strace ------------------------ */

/* n clients (child processes), each doing `pairs` create+delete pairs. */
static void
run_clients_pairs(int n, long pairs)
{
	pid_t pids[CLIENTS];

	fflush(stdout);
	for (int i = 0; i < n; i++) {
		if ((pids[i] = fork()) < 0)
			die("fork: %s", strerror(errno));
		if (pids[i] == 0) {
			in_child = 1;
			create_delete_loop(100 + i, now_s() + 600, pairs);
			_exit(0);
		}
	}
	for (int i = 0; i < n; i++) {
		int status;
		if (waitpid(pids[i], &status, 0) < 0 || !WIFEXITED(status) ||
		    WEXITSTATUS(status) != 0)
			die("a client process failed");
	}
}

struct fsync_count {
	long calls;		/* fsync + fdatasync + syncfs, every thread */
	long on_loop;		/* of those, on emberd's main (event loop) thread */
};

/* Attaches strace -f to every thread of emberd, runs `pairs` create+delete
 * pairs with each of n clients, and counts fsync, fdatasync and syncfs calls, all
 * and on the loop's thread (whose tid is emberd's pid). -1 without strace. */
static int
count_fsyncs(int n, long pairs, struct fsync_count *c)
{
	char out[PATH_MAX], pidarg[16], line[512], *argv[16];
	int argc = 0, errp[2];
	int npids = 1;
	pid_t pid;

	if (access("/usr/bin/strace", X_OK) != 0)
		return -1;
	snprintf(out, sizeof(out), "%s/strace.out", state_dir);
	/* -f with the process's pid attaches every thread it has (strace says
	 * "attached with N threads" once) and any it makes later. */
	snprintf(pidarg, sizeof(pidarg), "%d", (int)emberd_pid);
	argv[argc++] = "strace";
	argv[argc++] = "-f";
	argv[argc++] = "-e";
	argv[argc++] = "trace=fsync,fdatasync,syncfs";
	argv[argc++] = "-o";
	argv[argc++] = out;
	argv[argc++] = "-p";
	argv[argc++] = pidarg;
	argv[argc] = NULL;
	if (pipe2(errp, O_CLOEXEC) < 0)
		die("pipe: %s", strerror(errno));
	if ((pid = fork()) < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		dup2(errp[1], STDERR_FILENO);
		execv("/usr/bin/strace", argv);
		_exit(127);
	}
	close(errp[1]);
	/* Wait until strace says it attached to all of them. */
	{
		char buf[4096];
		size_t len = 0;
		int attached = 0;
		double deadline = now_s() + 20;
		while (attached < npids) {
			struct pollfd pfd = { .fd = errp[0], .events = POLLIN };
			int left = (int)((deadline - now_s()) * 1000);
			if (left <= 0 || poll(&pfd, 1, left) <= 0)
				die("strace did not attach to emberd within 20 s");
			ssize_t r = read(errp[0], buf + len, sizeof(buf) - 1 - len);
			if (r <= 0)
				die("strace exited before attaching");
			len += (size_t)r;
			buf[len] = '\0';
			char *nl;
			while ((nl = strchr(buf, '\n')) != NULL) {
				if (strstr(buf, "attached") != NULL && nl > strstr(buf, "attached"))
					attached++;
				len -= (size_t)(nl + 1 - buf);
				memmove(buf, nl + 1, len + 1);
			}
			if (len == sizeof(buf) - 1)
				len = 0;
		}
	}
	run_clients_pairs(n, pairs);
	kill(pid, SIGINT);
	waitpid(pid, NULL, 0);
	close(errp[0]);

	/* "TID fsync(7) = 0", or split in two lines when threads overlap:
	 * "TID fsync(7 <unfinished ...>" then "TID <... fsync resumed>) = 0". */
	FILE *fp = fopen(out, "re");
	if (fp == NULL)
		die("%s: %s", out, strerror(errno));
	c->calls = c->on_loop = 0;
	while (fgets(line, sizeof(line), fp) != NULL) {
		long tid;
		int at;
		if (sscanf(line, "%ld %n", &tid, &at) != 1 || strstr(line, "resumed>") != NULL)
			continue;
		if (strncmp(line + at, "fsync(", 6) != 0 && strncmp(line + at, "fdatasync(", 10) != 0 &&
		    strncmp(line + at, "syncfs(", 7) != 0)
			continue;
		c->calls++;
		if (tid == (long)emberd_pid)
			c->on_loop++;
	}
	fclose(fp);
	unlink(out);
	return 0;
}

/* ---- the original way: a process per operation ------------------------- */

static int
cmp_u32(const void *a, const void *b)
{
	unsigned x = *(const unsigned *)a, y = *(const unsigned *)b;

	return x < y ? -1 : x > y;
}

/* --legacy-op DIR alloc|release NAME: one locked read-modify-write of
 * DIR/cids.json, as one short-lived process. */
static int
legacy_op(const char *dir, const char *op, const char *name)
{
	char path[PATH_MAX], lock[PATH_MAX], key[16];
	json_t *doc = NULL, *allocs, *v;
	const char *k;
	unsigned *used, n = 0, cid = 3;
	int fd, r;

	snprintf(path, sizeof(path), "%s/cids.json", dir);
	snprintf(lock, sizeof(lock), "%s/cids.json.lock", dir);
	fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0 || flock(fd, LOCK_EX) < 0)
		return 1;
	r = read_json_file(path, &doc, NULL, 0);
	if (r == -ENOENT)
		doc = json_pack("{s:i, s:{}}", "version", 1, "allocations");
	else if (r < 0)
		return 1;
	allocs = json_object_get(doc, "allocations");
	if (strcmp(op, "alloc") == 0) {
		/* The lowest CID no entry holds: sort the held ones, walk up. */
		used = calloc(json_object_size(allocs) + 1, sizeof(*used));
		json_object_foreach(allocs, k, v)
			used[n++] = (unsigned)strtoul(k, NULL, 10);
		qsort(used, n, sizeof(*used), cmp_u32);
		for (unsigned i = 0; i < n && used[i] <= cid; i++)
			if (used[i] == cid)
				cid++;
		free(used);
		snprintf(key, sizeof(key), "%u", cid);
		json_object_set_new(allocs, key, json_string(name));
	} else {
		void *tmp;
		json_object_foreach_safe(allocs, tmp, k, v)
			if (strcmp(json_string_value(v), name) == 0)
				json_object_del(allocs, k);
	}
	/* Temp file, fsync, rename, fsync of the directory: as durable as
	 * emberd's own writes. */
	r = atomic_write_json(path, doc);
	json_decref(doc);
	close(fd);
	return r < 0 ? 1 : 0;
}

static void
run_legacy(const char *self, const char *dir, const char *op, const char *name)
{
	pid_t pid = fork();
	int status;

	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		execl(self, self, "--legacy-op", dir, op, name, (char *)NULL);
		_exit(127);
	}
	if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		die("legacy %s %s failed", op, name);
}

/* pairs alloc+release, one process each; returns pairs per second. */
static double
bench_legacy(long pairs, int holders)
{
	char self[PATH_MAX], dir[PATH_MAX], name[32];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	double t0;

	if (n < 0)
		die("readlink /proc/self/exe: %s", strerror(errno));
	self[n] = '\0';
	snprintf(dir, sizeof(dir), "%s/legacy", state_dir);
	if (mkdir(dir, 0755) < 0)
		die("mkdir %s: %s", dir, strerror(errno));
	/* The same table size emberd had during its run (none held). */
	for (int i = 0; i < holders; i++) {
		snprintf(name, sizeof(name), "hold%d", i);
		run_legacy(self, dir, "alloc", name);
	}
	t0 = now_s();
	for (long i = 0; i < pairs; i++) {
		snprintf(name, sizeof(name), "l%ld", i);
		run_legacy(self, dir, "alloc", name);
		run_legacy(self, dir, "release", name);
	}
	return (double)pairs / (now_s() - t0);
}

/* Mean milliseconds of one atomic_write_json() of a small table in dir. */
static double
bench_durable_write(const char *dir)
{
	char path[PATH_MAX];
	json_t *doc = json_pack("{s:i, s:{s:s}}", "version", 1, "allocations", "3", "web");
	double t0 = now_s();

	snprintf(path, sizeof(path), "%s/probe.json", dir);
	for (int i = 0; i < 20; i++)
		if (atomic_write_json(path, doc) < 0)
			die("atomic_write_json %s failed", path);
	json_decref(doc);
	return (now_s() - t0) / 20 * 1e3;
}

/* fc-double: given, $FC_DOUBLE, else ../fakes/fc-double next to this binary;
 * empty when there is none. */
static void
find_fc_double(const char *given, char *out, size_t len)
{
	char self[PATH_MAX], *slash;
	ssize_t n;

	if (given == NULL)
		given = getenv("FC_DOUBLE");
	if (given != NULL) {
		snprintf(out, len, "%s", given);
		return;
	}
	out[0] = '\0';
	if ((n = readlink("/proc/self/exe", self, sizeof(self) - 1)) < 0)
		return;
	self[n] = '\0';
	if ((slash = strrchr(self, '/')) != NULL)
		*slash = '\0';
	snprintf(out, len, "%s/../fakes/fc-double", self);
	if (access(out, X_OK) != 0)
		out[0] = '\0';
}

/* The mini image's directory: $EMBER_IMAGE_DIR, else ../../image-mini next
 * to this binary; 0 if it holds an image.json, else -ENOENT. */
static int
find_mini_image(char *out, size_t len)
{
	char self[PATH_MAX], meta[PATH_MAX + 16], *slash;
	ssize_t n;

	if (getenv("EMBER_IMAGE_DIR") != NULL)
		snprintf(out, len, "%s", getenv("EMBER_IMAGE_DIR"));
	else {
		if ((n = readlink("/proc/self/exe", self, sizeof(self) - 1)) < 0)
			return -errno;
		self[n] = '\0';
		if ((slash = strrchr(self, '/')) != NULL)
			*slash = '\0';
		snprintf(out, len, "%s/../../image-mini", self);
	}
	snprintf(meta, sizeof(meta), "%s/image.json", out);
	return access(meta, R_OK) == 0 ? 0 : -ENOENT;
}

/* The Firecracker image "fc" (tiny files; (b) overrides its rootfs). */
static void
import_fc_image(void)
{
	char k[PATH_MAX], v[PATH_MAX], i[PATH_MAX], r[PATH_MAX];

	write_text("fc-kernel", "bzImage\n");
	write_text("fc-vmlinux", "vmlinux\n");
	write_text("fc-initrd", "initrd\n");
	write_text("fc-rootfs", "rootfs\n");
	snprintf(k, sizeof(k), "%s/fc-kernel", state_dir);
	snprintf(v, sizeof(v), "%s/fc-vmlinux", state_dir);
	snprintf(i, sizeof(i), "%s/fc-initrd", state_dir);
	snprintf(r, sizeof(r), "%s/fc-rootfs", state_dir);
	rpc_simple("image.import", json_pack("{s:s, s:s, s:s, s:s, s:s}", "name", "fc",
	    "kernel", k, "vmlinux", v, "initrd", i, "rootfs", r));
}

/* The mini image "mini" from a build-mini.sh directory. */
static void
import_mini_image(const char *dir)
{
	char k[PATH_MAX], i[PATH_MAX], meta[PATH_MAX];
	json_error_t jerr;
	json_t *image;

	snprintf(meta, sizeof(meta), "%s/image.json", dir);
	if ((image = json_load_file(meta, 0, &jerr)) == NULL)
		die("%s: %s (build it with packaging/image/build-mini.sh)", meta, jerr.text);
	snprintf(k, sizeof(k), "%s/vmlinuz", dir);
	snprintf(i, sizeof(i), "%s/initrd.gz", dir);
	rpc_simple("image.import", json_pack("{s:s, s:s, s:s, s:O?}", "name", "mini", "kernel",
	    k, "initrd", i, "boot_args", json_object_get(image, "boot_args")));
	json_decref(image);
}

/* The scenarios --only picked (letters of "iabcd"), or NULL for all of them
 * and the other figures too. */
static const char *only_scenarios;

static int
scenario_wanted(char letter)
{
	return only_scenarios == NULL || strchr(only_scenarios, letter) != NULL;
}

/* The four scenarios of vm.inspect under load, each beside the floor. */
static void
bench_inspect_under_load(double seconds, int have_fc, long disk_mib, const char *qemu_image)
{
	struct latency lat, fl;
	struct load l;
	char load[160], big[PATH_MAX];
	double figure, t0;

	rpc_simple("vm.create", json_pack("{s:s, s:b, s:b}", "name", "probe", "vsock", 1, "start",
	    0));
	{
		/* An inspect reply's size, for the floor's echo. */
		struct client c;
		char reply[1 << 16];
		if (client_connect(&c) < 0)
			die("connect: %s", strerror(errno));
		client_send(&c, probe_request, strlen(probe_request));
		client_recv(&c, reply, sizeof(reply));
		close(c.fd);
		echo_peer_start(&floor_peer, strlen(reply) + 1);
		bench_floor(&floor_lat);
	}
	printf("vm.inspect from an idle client (a %d us pause between calls), each beside the "
	    "Unix-socket round trip floor with the same pause (p50 %.1f us, p99 %.1f us, max %.1f us):\n",
	    PROBE_GAP_NS / 1000, floor_lat.p50, floor_lat.p99, floor_lat.max);

	if (scenario_wanted('i')) {
		load_start(&l, load_idle, &seconds);
		figure = probe_during(&l, "idle", seconds + 60, false, &lat, &fl);
		snprintf(load, sizeof(load), "nothing else for %.1f s", figure);
		print_probe("idle", &lat, &fl, load);
	}

	if (scenario_wanted('a')) {
		load_start(&l, load_create_delete, &seconds);
		figure = probe_during(&l, "(a) create+delete load", seconds + 120, false, &lat, &fl);
		snprintf(load, sizeof(load), "%d clients: %.0f create+delete pairs/s", CLIENTS,
		    figure);
		print_probe("(a) 8 clients create+delete", &lat, &fl, load);
	}

	if (!scenario_wanted('b'))
		;
	else if (!have_fc)
		printf("  %-30s SKIPPED: no fc-double (give --fc-double or build tests/fakes)\n",
		    "(b) 2 GiB disk copy");
	else {
		int reflinks = fs_reflinks(state_dir);
		snprintf(big, sizeof(big), "%s/big-rootfs", state_dir);
		t0 = now_s();
		write_big_file(big, disk_mib);
		printf("  (b) wrote %ld MiB in %.1f s; %s %s reflinks\n", disk_mib, now_s() - t0,
		    state_dir, reflinks ? "DOES (the copy will be a clone, not the case asked for)" :
		    "does not do");
		fflush(stdout);
		load_start(&l, load_disk_copy, big);
		figure = probe_during(&l, "(b) disk copy", 600, false, &lat, &fl);
		snprintf(load, sizeof(load), "vm.create copied %ld MiB in %.1f s (%.0f MiB/s)",
		    disk_mib, figure, (double)disk_mib / figure);
		print_probe("(b) Firecracker disk copy", &lat, &fl, load);
		rpc_simple("vm.delete", json_pack("{s:s}", "name", "bigdisk"));
		unlink(big);
	}

	if (scenario_wanted('c')) {
		/* BATCH_ROUNDS batches, each deleted (unprobed) before the next:
		 * one batch is over in under a second, too few samples for a p99
		 * that means anything (the 99th of 400 is the 4th worst). */
		double loop_s = 0, all_s = 0, fastest = 1e9, slowest = 0;
		for (int round = 0; round < BATCH_ROUNDS; round++) {
			double loop0 = emberd_cpu_s(true), all0 = emberd_cpu_s(false);
			load_start(&l, load_batch, NULL);
			figure = probe_during(&l, "(c) batch of creates", 600, round > 0, &lat, &fl);
			loop_s += emberd_cpu_s(true) - loop0;
			all_s += emberd_cpu_s(false) - all0;
			fastest = figure < fastest ? figure : fastest;
			slowest = figure > slowest ? figure : slowest;
			delete_batch();
		}
		snprintf(load, sizeof(load), "%d batches of %d vm.create, each answered in "
		    "%.2f-%.2f s (%.0f-%.0f creates/s)", BATCH_ROUNDS, BATCH_CREATES, fastest,
		    slowest, BATCH_CREATES / slowest, BATCH_CREATES / fastest);
		print_probe("(c) batch of 2000 creates", &lat, &fl, load);
		/* what the batches cost emberd's CPU, the probes' inspects included
		 * (clock ticks: 10 ms each) */
		printf("  %-30s loop thread %.0f ms (%.0f us a create), other threads %.0f ms\n",
		    "  emberd CPU in (c)", loop_s * 1e3, loop_s * 1e6 / (BATCH_CREATES * BATCH_ROUNDS),
		    (all_s - loop_s) * 1e3);
	}

	if (!scenario_wanted('d'))
		;
	else if (qemu_image == NULL)
		printf("  %-30s SKIPPED: --no-qemu, or no image (give --qemu-image DIR, a "
		    "build-mini.sh output)\n", "(d) 8 QEMU guests boot (TCG)");
	else {
		char name[16];
		import_mini_image(qemu_image);
		load_start(&l, load_qemu_boots, NULL);
		figure = probe_during(&l, "(d) QEMU boots", 1200, false, &lat, &fl);
		snprintf(load, sizeof(load), "%d guests up (agent answering) in %.1f s", QEMU_GUESTS,
		    figure);
		print_probe("(d) 8 QEMU guests boot (TCG)", &lat, &fl, load);
		for (int i = 0; i < QEMU_GUESTS; i++) {
			snprintf(name, sizeof(name), "tcg%d", i);
			rpc_simple("vm.delete", json_pack("{s:s, s:b}", "name", name, "force", 1));
		}
	}
	rpc_simple("vm.delete", json_pack("{s:s}", "name", "probe"));
	echo_peer_stop(&floor_peer);
}

int
main(int argc, char **argv)
{
	const char *given = NULL, *given_fc = NULL, *qemu_image = NULL;
	char emberd[PATH_MAX], fc[PATH_MAX], text[2 * PATH_MAX], tmpl[PATH_MAX];
	double seconds = 3, rate1, rate8, legacy, p50, p99;
	long pairs1, pairs8, legacy_pairs, disk_mib = 2048;
	char image_dir[PATH_MAX];
	int no_qemu = 0;
	const char *cgroup_parent = NULL;

	if (argc == 5 && strcmp(argv[1], "--legacy-op") == 0)
		return legacy_op(argv[2], argv[3], argv[4]);
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--emberd") == 0 && i + 1 < argc)
			given = argv[++i];
		else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
			seconds = atof(argv[++i]);
		else if (strcmp(argv[i], "--fc-double") == 0 && i + 1 < argc)
			given_fc = argv[++i];
		else if (strcmp(argv[i], "--disk-mib") == 0 && i + 1 < argc)
			disk_mib = atol(argv[++i]);
		else if (strcmp(argv[i], "--qemu-image") == 0 && i + 1 < argc)
			qemu_image = argv[++i];
		else if (strcmp(argv[i], "--no-qemu") == 0)
			no_qemu = 1;
		else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
			only_scenarios = argv[++i];
		else if (strcmp(argv[i], "--cgroup") == 0 && i + 1 < argc)
			cgroup_parent = argv[++i];
		else {
			fprintf(stderr, "usage: bench-control [--emberd PATH] [--fc-double PATH] "
			    "[--seconds N] [--disk-mib N] [--qemu-image DIR | --no-qemu] "
			    "[--only iabcd] [--cgroup PARENT]\n");
			return 2;
		}
	}
	if (seconds <= 0 || seconds > 600 || disk_mib < 1 || disk_mib > 64 * 1024) {
		fprintf(stderr, "bench-control: --seconds is 0..600, --disk-mib 1..65536\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	find_emberd(given, emberd, sizeof(emberd));
	find_fc_double(given_fc, fc, sizeof(fc));
	if (no_qemu)
		qemu_image = NULL;
	else if (qemu_image == NULL && find_mini_image(image_dir, sizeof(image_dir)) == 0)
		qemu_image = image_dir;
	/* $TMPDIR picks the file system the state directory is on. */
	snprintf(tmpl, sizeof(tmpl), "%s/bench-control.XXXXXX",
	    getenv("TMPDIR") != NULL && getenv("TMPDIR")[0] != '\0' ? getenv("TMPDIR") : "/tmp");
	if (mkdtemp(tmpl) == NULL)
		die("mkdtemp: %s", strerror(errno));
	snprintf(state_dir, sizeof(state_dir), "%s", tmpl);
	snprintf(sock_path, sizeof(sock_path), "%s/emberd.sock", state_dir);
	snprintf(config_path, sizeof(config_path), "%s/emberd.yaml", state_dir);
	/* The batch scenario needs max_batch 2000 (default 128); the Firecracker
	 * double needs no KVM; image-less creates stay QEMU's (auto would pick
	 * Firecracker once it is available, which wants a kernel). */
	snprintf(text, sizeof(text), "limits:\n  max_batch: %d\ndefaults:\n  backend: qemu\n"
	    "%s%s%s%s", BATCH_CREATES,
	    fc[0] ? "firecracker:\n  binary: " : "", fc, fc[0] ? "\n  require_kvm: false\n" : "",
	    qemu_image != NULL ? "qemu:\n  accel: tcg\n" : "");
	write_text("emberd.yaml", text);
	if (cgroup_parent != NULL) {
		snprintf(bench_cgroup, sizeof(bench_cgroup), "%s/bench-control.%d", cgroup_parent,
		    (int)getpid());
		if (mkdir(bench_cgroup, 0755) < 0) {
			int e = errno;
			bench_cgroup[0] = '\0';
			die("mkdir %s/bench-control.%d: %s", cgroup_parent, (int)getpid(), strerror(e));
		}
	}
	start_emberd(emberd);
	if (fc[0])
		import_fc_image();
	printf("emberd %s, state %s\n", emberd, state_dir);
	{
		static const char req[] = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"daemon.info\"}\n";
		char reply[1 << 16];
		struct client c;

		if (client_connect(&c) < 0)
			die("connect: %s", strerror(errno));
		client_send(&c, req, strlen(req));
		client_recv(&c, reply, sizeof(reply));
		close(c.fd);
		json_t *info = json_loads(reply, 0, NULL);
		json_t *cg = json_object_get(json_object_get(json_object_get(info, "result"),
		    "vm_cgroup"), "path");
		printf("hypervisors' cgroup: %s\n", json_is_string(cg) ? json_string_value(cg) :
		    "none (emberd's own; --cgroup PARENT gives emberd one to divide)");
		json_decref(info);
	}
	printf("one durable write:        %8.2f ms (temp file, fsync, rename, fsync dir)\n",
	    bench_durable_write(state_dir));

	if (only_scenarios != NULL) {
		bench_inspect_under_load(seconds, fc[0] != '\0', disk_mib, qemu_image);
		cleanup();
		return 0;
	}
	rate1 = bench_create_delete(1, seconds, &pairs1);
	printf("create+delete, 1 client:  %8.0f pairs/s (%ld pairs in %.0f s, vsock, durable)\n",
	    rate1, pairs1, seconds);
	fflush(stdout);
	rate8 = bench_create_delete(CLIENTS, seconds, &pairs8);
	printf("create+delete, %d clients: %8.0f pairs/s (%ld pairs in %.0f s)\n", CLIENTS,
	    rate8, pairs8, seconds);
	fflush(stdout);

	struct fsync_count one, eight;
	if (count_fsyncs(1, 200, &one) < 0 || count_fsyncs(CLIENTS, 50, &eight) < 0)
		printf("fsyncs per create+delete:  not counted (no /usr/bin/strace)\n");
	else {
		printf("fsyncs per create+delete: %8.2f with 1 client, %.2f with %d clients "
		    "(fsync, fdatasync and syncfs calls; strace -f on emberd over 200 pairs each)\n",
		    one.calls / 200.0,
		    eight.calls / 200.0, CLIENTS);
		printf("  on the event loop's thread: %ld and %ld (the rest on the durable writer's); "
		    "before group commit: 8 per pair (create 5, delete 3), all on the loop\n",
		    one.on_loop, eight.on_loop);
	}
	fflush(stdout);

	bench_inspect_under_load(seconds, fc[0] != '\0', disk_mib, qemu_image);

	fill_vms(FILL_VMS);
	bench_inspect(FILL_VMS, &p50, &p99);
	printf("vm.inspect, %d VMs:     p50 %.1f us, p99 %.1f us (%d calls, one connection)\n",
	    FILL_VMS, p50, p99, INSPECTS);
	printf("emberd RSS, %d VMs:     %ld KiB\n", FILL_VMS, emberd_rss_kib());
	fflush(stdout);

	legacy_pairs = pairs1 < 1000 ? pairs1 : 1000;
	if (legacy_pairs < 1)
		legacy_pairs = 1;
	legacy = bench_legacy(legacy_pairs, 0);
	printf("process per operation:    %8.0f pairs/s (%ld alloc+release pairs, fork+exec, "
	    "flock, read, rename)\n", legacy, legacy_pairs);
	printf("emberd / process-per-op:  %8.1fx with 1 client, %.1fx with %d clients\n",
	    rate1 / legacy, rate8 / legacy, CLIENTS);
	printf("%d clients / 1 client:     %8.2fx (writes that meet in the queue share their "
	    "fsyncs; target >= 3x; 0.65x before group commit)\n", CLIENTS, rate8 / rate1);
	cleanup();
	return 0;
}
