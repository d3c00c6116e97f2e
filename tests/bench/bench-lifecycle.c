/*
 * VM lifecycle benchmark: create (vsock on, booted) -> running -> stopped ->
 * deleted cycles per second through a private emberd whose Firecracker is
 * tests/fakes/fc-double (KVM not required, so it runs without /dev/kvm),
 * with 1 and with 8 concurrent clients. This is the
 * control plane's cost per VM lifecycle: state files, CID allocation, the
 * spawn, five API calls, the CtrlAltDel stop (the double exits at once:
 * FC_DOUBLE_CTRLALTDEL_DELAY_MS=0) and the removal. Clients are processes
 * speaking JSON-RPC directly on the control socket. Prints figures; asserts
 * nothing.
 *
 * usage: bench-lifecycle [-e EMBERD] [-f FC_DOUBLE] [-s SECONDS_PER_RUN]
 * Paths default to $EMBERD and $FC_DOUBLE, else to the build directory that
 * holds this program (<build>/daemon/emberd, <build>/tests/fakes/fc-double).
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libgen.h>
#include <limits.h>
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

#include <jansson.h>

#include "bench-util.h"

#define MAX_CLIENTS	8
#define REPLY_MAX	(1024 * 1024)

static char dir[PATH_MAX];		/* private work directory */
static char sock_path[PATH_MAX];
static pid_t emberd_pid = -1;

static void
cleanup(void)
{
	int st;

	if (emberd_pid > 0) {
		kill(emberd_pid, SIGTERM);
		waitpid(emberd_pid, &st, 0);
		emberd_pid = -1;
	}
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void
die(const char *fmt, ...)
{
	va_list ap;

	fputs("bench-lifecycle: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (dir[0])
		fprintf(stderr, "bench-lifecycle: emberd's log: %s/emberd.log (kept)\n", dir);
	cleanup();
	exit(1);
}

/* ---- blocking JSON-RPC client ---- */

struct conn {
	int fd;
	char *buf;
	size_t len;
	long next_id;
};

static int
conn_open(struct conn *c)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { 60, 0 };

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		return -errno;
	if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		close(c->fd);
		c->fd = -1;
		return -e;
	}
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	c->buf = malloc(REPLY_MAX);
	if (c->buf == NULL)
		die("out of memory");
	c->len = 0;
	c->next_id = 1;
	return 0;
}

static void
conn_close(struct conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	free(c->buf);
	c->buf = NULL;
}

/* Sends one request and returns its reply (owned), or NULL if the
 * connection failed. Requests are not pipelined, so the next line is ours. */
static json_t *
conn_call(struct conn *c, const char *method, json_t *params)
{
	json_t *req = json_pack("{s:s, s:I, s:s, s:o}", "jsonrpc", "2.0", "id",
	    (json_int_t)c->next_id++, "method", method, "params", params);
	char *line = json_dumps(req, JSON_COMPACT);
	size_t off, n;
	ssize_t r;
	char *nl;

	json_decref(req);
	if (line == NULL)
		die("out of memory");
	n = strlen(line);
	line[n++] = '\n';	/* json_dumps' NUL becomes the terminator */
	for (off = 0; off < n; off += (size_t)r) {
		r = send(c->fd, line + off, n - off, MSG_NOSIGNAL);
		if (r < 0) {
			free(line);
			return NULL;
		}
	}
	free(line);
	while ((nl = memchr(c->buf, '\n', c->len)) == NULL) {
		if (c->len == REPLY_MAX)
			return NULL;
		r = recv(c->fd, c->buf + c->len, REPLY_MAX - c->len, 0);
		if (r <= 0)
			return NULL;
		c->len += (size_t)r;
	}
	json_t *reply = json_loadb(c->buf, (size_t)(nl - c->buf), 0, NULL);
	c->len -= (size_t)(nl + 1 - c->buf);
	memmove(c->buf, nl + 1, c->len);
	return reply;
}

/* Calls METHOD; dies unless the result's status is WANT (NULL: any result). */
static void
call_expect(struct conn *c, const char *method, json_t *params, const char *want)
{
	json_t *reply = conn_call(c, method, params);
	json_t *result = json_object_get(reply, "result");
	const char *status = json_string_value(json_object_get(result, "status"));

	if (reply == NULL)
		die("%s: no reply from emberd", method);
	if (result == NULL || (want != NULL && (status == NULL || strcmp(status, want) != 0))) {
		char *text = json_dumps(reply, JSON_COMPACT);
		fprintf(stderr, "bench-lifecycle: %s: unexpected reply %s\n", method, text);
		free(text);
		json_decref(reply);
		exit(1);
	}
	json_decref(reply);
}

/* ---- setup ---- */

static void
write_file(const char *name, size_t size, const char *text)
{
	char path[PATH_MAX];
	FILE *fp;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fp = fopen(path, "w");
	if (fp == NULL)
		die("%s: %s", path, strerror(errno));
	if (text != NULL)
		fputs(text, fp);
	else
		for (size_t i = 0; i < size; i++)
			fputc((int)(i * 2654435761u >> 24), fp);
	if (fclose(fp) != 0)
		die("%s: %s", path, strerror(errno));
}

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
		die("/proc/self/exe: %s (give -e and -f)", strerror(errno));
	exe[n] = '\0';
	build = dirname(dirname(dirname(exe)));	/* <build>/tests/bench/bench-lifecycle */
	snprintf(out, len, "%s/%s", build, rel);
}

static void
start_emberd(const char *emberd)
{
	char state[PATH_MAX], config[PATH_MAX], log[PATH_MAX];
	double deadline;
	int fd;

	snprintf(state, sizeof(state), "%s/state", dir);
	snprintf(config, sizeof(config), "%s/emberd.yaml", dir);
	snprintf(log, sizeof(log), "%s/emberd.log", dir);
	snprintf(sock_path, sizeof(sock_path), "%s/emberd.sock", state);
	/* emberd passes its environment to the doubles it spawns. */
	setenv("FC_DOUBLE_CTRLALTDEL_DELAY_MS", "0", 1);
	setenv("FC_DOUBLE_VSOCK_PORTS", "1024", 1);
	emberd_pid = fork();
	if (emberd_pid < 0)
		die("fork: %s", strerror(errno));
	if (emberd_pid == 0) {
		fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd >= 0) {
			dup2(fd, 2);
			dup2(fd, 1);
		}
		execl(emberd, emberd, "--state-dir", state, "--socket", sock_path, "--config", config,
		    (char *)NULL);
		fprintf(stderr, "exec %s: %s\n", emberd, strerror(errno));
		_exit(127);
	}
	for (deadline = now_s() + 10;;) {
		struct conn c;
		json_t *reply;
		int st;

		if (waitpid(emberd_pid, &st, WNOHANG) == emberd_pid) {
			emberd_pid = -1;
			die("emberd exited during startup");
		}
		if (conn_open(&c) == 0) {
			reply = conn_call(&c, "daemon.info", json_object());
			conn_close(&c);
			if (json_integer_value(json_object_get(json_object_get(reply, "result"), "pid")) ==
			    emberd_pid) {
				json_t *b;
				size_t i;
				bool fc = false;
				json_array_foreach(json_object_get(json_object_get(reply, "result"),
				    "backends"), i, b)
					if (strcmp(json_string_value(json_object_get(b, "name")),
					    "firecracker") == 0 && json_is_true(json_object_get(b, "available")))
						fc = true;
				json_decref(reply);
				if (!fc)
					die("emberd does not see the Firecracker double as available");
				return;
			}
			json_decref(reply);
		}
		if (now_s() > deadline)
			die("emberd did not answer on %s within 10 s", sock_path);
		usleep(20000);	/* poll interval */
	}
}

/* ---- the measured loop ---- */

struct client_result {
	long cycles;
	double t_create, t_stop, t_delete;
};

static void
client_run(int id, double until, int out_fd)
{
	struct client_result res = { 0 };
	struct conn c;
	char name[64];
	double t0, t1, t2, t3;

	if (conn_open(&c) < 0)
		die("client %d: cannot connect to %s", id, sock_path);
	while (now_s() < until) {
		snprintf(name, sizeof(name), "b%d-%ld", id, res.cycles);
		t0 = now_s();
		call_expect(&c, "vm.create", json_pack("{s:s, s:s, s:b}", "name", name, "image",
		    "bench", "vsock", 1), "running");
		t1 = now_s();
		call_expect(&c, "vm.stop", json_pack("{s:s}", "name", name), "stopped");
		t2 = now_s();
		call_expect(&c, "vm.delete", json_pack("{s:s}", "name", name), NULL);
		t3 = now_s();
		res.t_create += t1 - t0;
		res.t_stop += t2 - t1;
		res.t_delete += t3 - t2;
		res.cycles++;
	}
	conn_close(&c);
	if (write(out_fd, &res, sizeof(res)) != (ssize_t)sizeof(res))
		_exit(1);
}

static void
run(int clients, double seconds)
{
	struct client_result sum = { 0 }, r;
	pid_t pids[MAX_CLIENTS];
	int fds[2], st, i;
	double start, elapsed;

	if (pipe(fds) < 0)
		die("pipe: %s", strerror(errno));
	start = now_s();
	for (i = 0; i < clients; i++) {
		pids[i] = fork();
		if (pids[i] < 0)
			die("fork: %s", strerror(errno));
		if (pids[i] == 0) {
			emberd_pid = -1;	/* the parent owns it */
			close(fds[0]);
			client_run(i, start + seconds, fds[1]);
			_exit(0);
		}
	}
	close(fds[1]);
	for (i = 0; i < clients; i++) {
		if (read(fds[0], &r, sizeof(r)) != (ssize_t)sizeof(r))
			die("a client failed (see above)");
		sum.cycles += r.cycles;
		sum.t_create += r.t_create;
		sum.t_stop += r.t_stop;
		sum.t_delete += r.t_delete;
	}
	elapsed = now_s() - start;
	close(fds[0]);
	for (i = 0; i < clients; i++)
		waitpid(pids[i], &st, 0);
	if (sum.cycles == 0)
		die("no cycle completed in %.1f s", elapsed);
	printf("%d client%s: %6ld cycles in %5.2f s = %7.1f cycles/s   "
	    "(mean ms: create %.2f, stop %.2f, delete %.2f)\n",
	    clients, clients == 1 ? " " : "s", sum.cycles, elapsed, (double)sum.cycles / elapsed,
	    1e3 * sum.t_create / (double)sum.cycles, 1e3 * sum.t_stop / (double)sum.cycles,
	    1e3 * sum.t_delete / (double)sum.cycles);
	fflush(stdout);
}

static int
rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path) < 0 && errno != ENOENT ? -1 : 0;
}

int
main(int argc, char **argv)
{
	const char *arg_emberd = NULL, *arg_fc = NULL;
	char emberd[PATH_MAX], fc[PATH_MAX], text[PATH_MAX + 64];
	double seconds = 3;
	int opt;

	while ((opt = getopt(argc, argv, "e:f:s:h")) != -1) {
		switch (opt) {
		case 'e': arg_emberd = optarg; break;
		case 'f': arg_fc = optarg; break;
		case 's': seconds = atof(optarg); break;
		default:
			fprintf(stderr, "usage: %s [-e EMBERD] [-f FC_DOUBLE] [-s SECONDS_PER_RUN]\n",
			    argv[0]);
			return opt == 'h' ? 0 : 2;
		}
	}
	if (seconds <= 0)
		seconds = 3;
	build_path(emberd, sizeof(emberd), "EMBERD", arg_emberd, "daemon/emberd");
	build_path(fc, sizeof(fc), "FC_DOUBLE", arg_fc, "tests/fakes/fc-double");
	if (access(emberd, X_OK) < 0 || access(fc, X_OK) < 0)
		die("need emberd (%s) and fc-double (%s): build them or give -e and -f", emberd, fc);

	snprintf(dir, sizeof(dir), "%s/ember-bench.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (mkdtemp(dir) == NULL)
		die("mkdtemp %s: %s", dir, strerror(errno));
	/* The double needs no KVM; the probe's KVM check is for real Firecracker. */
	snprintf(text, sizeof(text), "firecracker:\n  binary: %s\n  require_kvm: false\n", fc);
	write_file("emberd.yaml", 0, text);
	write_file("kernel", 0, "bzImage\n");
	write_file("vmlinux", 8192, NULL);
	write_file("initrd", 0, "initrd\n");
	write_file("rootfs", 256 * 1024, NULL);
	start_emberd(emberd);

	struct conn c;
	char k[PATH_MAX], v[PATH_MAX], i[PATH_MAX], r[PATH_MAX];
	snprintf(k, sizeof(k), "%s/kernel", dir);
	snprintf(v, sizeof(v), "%s/vmlinux", dir);
	snprintf(i, sizeof(i), "%s/initrd", dir);
	snprintf(r, sizeof(r), "%s/rootfs", dir);
	if (conn_open(&c) < 0)
		die("cannot connect to %s", sock_path);
	call_expect(&c, "image.import", json_pack("{s:s, s:s, s:s, s:s, s:s}", "name", "bench",
	    "kernel", k, "vmlinux", v, "initrd", i, "rootfs", r), NULL);
	conn_close(&c);

	printf("VM lifecycle through emberd + fc-double (create --vsock with a 256 KiB root disk, "
	    "graceful stop, delete), %.1f s per run\n", seconds);
	run(1, seconds);
	run(MAX_CLIENTS, seconds);

	cleanup();
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	return 0;
}
