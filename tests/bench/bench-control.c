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
 *    directory) costs on this file system, since both sides are made of them.
 * Prints figures only; asserts nothing.
 *
 * usage: bench-control [--emberd PATH] [--seconds N]
 * emberd defaults to $EMBERD, else ../../daemon/emberd or ../daemon/emberd
 * next to this binary.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "fsutil.h"

#define FILL_VMS	1000
#define INSPECTS	5000
#define CLIENTS		8

static char state_dir[PATH_MAX], sock_path[PATH_MAX];
static pid_t emberd_pid = -1;

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
cleanup(void)
{
	if (emberd_pid > 0) {
		kill(emberd_pid, SIGTERM);
		waitpid(emberd_pid, NULL, 0);
		emberd_pid = -1;
	}
	if (state_dir[0] != '\0')
		rm_rf(state_dir);
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
		execl(emberd, emberd, "--state-dir", state_dir, "--socket", sock_path,
		    "--log-level", "warn", (char *)NULL);
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
	char path[64], line[256];
	long kib = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)emberd_pid);
	if ((f = fopen(path, "re")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
			break;
	fclose(f);
	return kib;
}

/* ---- workloads ---------------------------------------------------------- */

/* create+delete pairs on one connection until `until`; returns the count. */
static long
create_delete_loop(int client_no, double until)
{
	struct client c;
	char line[512];
	long pairs = 0;

	if (client_connect(&c) < 0)
		die("connect: %s", strerror(errno));
	while (now_s() < until) {
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
	t0 = now_s();
	until = t0 + seconds;
	for (int i = 0; i < n; i++) {
		pids[i] = fork();
		if (pids[i] < 0)
			die("fork: %s", strerror(errno));
		if (pids[i] == 0) {
			long pairs = create_delete_loop(i, until);
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

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
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

int
main(int argc, char **argv)
{
	const char *given = NULL;
	char emberd[PATH_MAX], tmpl[] = "/tmp/bench-control.XXXXXX";
	double seconds = 3, rate1, rate8, legacy, p50, p99;
	long pairs1, pairs8, legacy_pairs;

	if (argc == 5 && strcmp(argv[1], "--legacy-op") == 0)
		return legacy_op(argv[2], argv[3], argv[4]);
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--emberd") == 0 && i + 1 < argc)
			given = argv[++i];
		else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
			seconds = atof(argv[++i]);
		else {
			fprintf(stderr, "usage: bench-control [--emberd PATH] [--seconds N]\n");
			return 2;
		}
	}
	signal(SIGPIPE, SIG_IGN);
	find_emberd(given, emberd, sizeof(emberd));
	if (mkdtemp(tmpl) == NULL)
		die("mkdtemp: %s", strerror(errno));
	snprintf(state_dir, sizeof(state_dir), "%s", tmpl);
	snprintf(sock_path, sizeof(sock_path), "%s/emberd.sock", state_dir);
	start_emberd(emberd);
	printf("emberd %s, state %s\n", emberd, state_dir);
	printf("one durable write:        %8.2f ms (temp file, fsync, rename, fsync dir)\n",
	    bench_durable_write(state_dir));

	rate1 = bench_create_delete(1, seconds, &pairs1);
	printf("create+delete, 1 client:  %8.0f pairs/s (%ld pairs in %.0f s, vsock, durable)\n",
	    rate1, pairs1, seconds);
	fflush(stdout);
	rate8 = bench_create_delete(CLIENTS, seconds, &pairs8);
	printf("create+delete, %d clients: %8.0f pairs/s (%ld pairs in %.0f s)\n", CLIENTS,
	    rate8, pairs8, seconds);
	fflush(stdout);

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
	cleanup();
	return 0;
}
