/*
 * Abuse benchmark: starts a private emberd on a temporary state directory
 * and prints, for each attack, emberd's RSS before, during and after it and
 * the vm.inspect round-trip latency (p50, p99) of a well-behaved client
 * while it runs:
 *  - batch amplification: 4 connections each sending, over and over, one
 *    1 MiB line holding a batch of ~23,800 vm.list calls, never reading;
 *    plus one connection pipelining vm.list lines without reading;
 *  - 20,000 idle connections opened one after another and held.
 * As root the attackers run as uid 65534 (quotas apply to them, as to any
 * member of the socket group); otherwise as the caller. Prints figures
 * only; asserts nothing.
 *
 * usage: bench-abuse [--emberd PATH]
 * emberd defaults to $EMBERD, else ../../daemon/emberd next to this binary.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench-util.h"
#include "platform.h"

#define PROBES		300
#define IDLE_CONNS	20000

static char dir[] = "/tmp/ember-bench-abuse-XXXXXX";
static char sock_path[PATH_MAX];
static pid_t emberd_pid;

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int
connect_sock(void)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", sock_path);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Sends one line and reads one reply line; 0 or -1. */
static int
roundtrip(int fd, const char *line)
{
	char buf[65536];
	size_t len = strlen(line);
	ssize_t n;

	if (write(fd, line, len) != (ssize_t)len)
		return -1;
	for (;;) {
		n = read(fd, buf, sizeof(buf));
		if (n <= 0)
			return -1;
		if (memchr(buf, '\n', (size_t)n) != NULL)
			return 0;
	}
}

static long
rss_kib(void)
{
	return platform_process_rss_kib(emberd_pid);
}

/* vm.inspect latency of a well-behaved client; also samples peak RSS. */
static void
probe(const char *label, long *peak_rss)
{
	static const char req[] =
	    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"vm.inspect\",\"params\":{\"name\":\"probe\"}}\n";
	double lat[PROBES];
	int fd = connect_sock(), n = 0;

	for (int i = 0; fd >= 0 && i < PROBES; i++) {
		double t0 = now_ms();
		if (roundtrip(fd, req) < 0)
			break;
		lat[n++] = now_ms() - t0;
		if (peak_rss != NULL && i % 10 == 0) {
			long r = rss_kib();
			if (r > *peak_rss)
				*peak_rss = r;
		}
	}
	if (fd >= 0)
		close(fd);
	if (n == 0) {
		printf("  %-34s vm.inspect: no answer\n", label);
		return;
	}
	qsort(lat, (size_t)n, sizeof(lat[0]), cmp_double);
	printf("  %-34s vm.inspect p50 %.2f ms, p99 %.2f ms (%d calls)\n", label,
	    lat[n / 2], lat[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1], n);
}

static void
drop_privileges(void)
{
	if (geteuid() != 0)
		return;
	if (setgroups(0, NULL) < 0 || setresgid(65534, 65534, 65534) < 0 ||
	    setresuid(65534, 65534, 65534) < 0)
		_exit(1);
}

/* Child: sends the amplification batch over and over on a few sockets. */
static void
attack_batch(void)
{
	static const char one[] = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"vm.list\"},";
	size_t n = (1024 * 1024 - 2) / (sizeof(one) - 1), len = n * (sizeof(one) - 1) + 1;
	char *line = malloc(len + 1);
	int fds[4];

	drop_privileges();
	line[0] = '[';
	for (size_t i = 0; i < n; i++)
		memcpy(line + 1 + i * (sizeof(one) - 1), one, sizeof(one) - 1);
	line[len - 1] = ']';
	line[len] = '\n';
	for (int i = 0; i < 4; i++) {
		fds[i] = connect_sock();
		if (fds[i] >= 0)
			fcntl(fds[i], F_SETFL, O_NONBLOCK);
	}
	for (;;) {
		for (int i = 0; i < 4; i++) {
			if (fds[i] < 0)
				continue;
			struct pollfd p = { .fd = fds[i], .events = POLLOUT };
			if (poll(&p, 1, 10) == 1 && write(fds[i], line, len + 1) < 0 &&
			    errno != EAGAIN) {
				close(fds[i]);
				fds[i] = connect_sock();
				if (fds[i] >= 0)
					fcntl(fds[i], F_SETFL, O_NONBLOCK);
			}
		}
	}
}

/* Child: pipelines vm.list lines without reading. */
static void
attack_pipeline(void)
{
	static const char req[] = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"vm.list\"}\n";
	char chunk[sizeof(req) * 1000];
	int fd;

	drop_privileges();
	for (int i = 0; i < 1000; i++)
		memcpy(chunk + i * (sizeof(req) - 1), req, sizeof(req) - 1);
	fd = connect_sock();
	while (fd >= 0 && write(fd, chunk, 1000 * (sizeof(req) - 1)) > 0)
		;
	pause();
	_exit(0);
}

/* Child: opens IDLE_CONNS connections and holds those emberd keeps. */
static void
attack_idle(int ready_fd)
{
	struct rlimit rl;
	long opened = 0;

	drop_privileges();
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	for (int i = 0; i < IDLE_CONNS; i++) {
		int fd = connect_sock();
		if (fd < 0 && (errno == EMFILE || errno == ENFILE)) {
			/* close what emberd refused (readable: reply + EOF) */
			for (int f = 3; f < (int)rl.rlim_cur; f++) {
				struct pollfd p = { .fd = f, .events = POLLIN };
				if (f != ready_fd && poll(&p, 1, 0) == 1 && !(p.revents & POLLNVAL))
					close(f);
			}
			fd = connect_sock();
		}
		opened += fd >= 0;
	}
	dprintf(ready_fd, "%ld\n", opened);
	pause();
	_exit(0);
}

static pid_t
spawn(void (*fn)(void))
{
	pid_t pid = fork();

	if (pid == 0) {
		fn();
		_exit(0);
	}
	return pid;
}

static void
stop_child(pid_t pid)
{
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

/* RSS once the attackers' connections are gone (emberd frees on EOF). */
static long
rss_after(void)
{
	double deadline = now_ms() + 5000;
	long r = rss_kib(), prev = -1;

	while (now_ms() < deadline && r != prev) {	/* until it settles */
		struct timespec ts = { 0, 200 * 1000 * 1000 };
		nanosleep(&ts, NULL);	/* sampling interval */
		prev = r;
		r = rss_kib();
	}
	return r;
}

static void
cleanup(void)
{
	char cmd[PATH_MAX + 16];

	if (emberd_pid > 0) {
		kill(emberd_pid, SIGKILL);
		waitpid(emberd_pid, NULL, 0);
	}
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "bench-abuse: cannot remove %s\n", dir);
}

int
main(int argc, char **argv)
{
	const char *emberd = getenv("EMBERD");
	char def[PATH_MAX], state[PATH_MAX], log[PATH_MAX];
	long before, peak, after;
	int fd, pipefd[2];
	pid_t a, b;

	if (argc == 3 && strcmp(argv[1], "--emberd") == 0)
		emberd = argv[2];
	if (emberd == NULL) {
		char self[PATH_MAX];
		ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
		self[n > 0 ? n : 0] = '\0';
		*strrchr(self, '/') = '\0';
		snprintf(def, sizeof(def), "%s/../../daemon/emberd", self);
		emberd = def;
	}
	if (mkdtemp(dir) == NULL)
		return 1;
	atexit(cleanup);
	chmod(dir, 0711);
	snprintf(state, sizeof(state), "%s/state", dir);
	snprintf(sock_path, sizeof(sock_path), "%s/emberd.sock", dir);
	snprintf(log, sizeof(log), "%s/emberd.log", dir);
	emberd_pid = fork();
	if (emberd_pid == 0) {
		int l = open(log, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
		dup2(l, 2);
		execl(emberd, emberd, "--state-dir", state, "--socket", sock_path, (char *)NULL);
		_exit(127);
	}
	for (double deadline = now_ms() + 10000; (fd = connect_sock()) < 0;) {
		struct timespec ts = { 0, 20 * 1000 * 1000 };
		if (now_ms() > deadline) {
			fprintf(stderr, "bench-abuse: %s did not start (see its log)\n", emberd);
			return 1;
		}
		nanosleep(&ts, NULL);	/* poll interval */
	}
	chmod(sock_path, 0666);	/* the attackers run as uid 65534 */
	roundtrip(fd, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"vm.create\","
	    "\"params\":{\"name\":\"probe\",\"start\":false}}\n");
	close(fd);

	printf("bench-abuse: emberd %s, attackers as uid %u\n", emberd,
	    geteuid() == 0 ? 65534u : (unsigned)geteuid());
	before = rss_kib();
	probe("idle:", NULL);

	printf("batch amplification (4 x 1 MiB batches of 23,800 vm.list, resent; "
	    "1 pipelining client; none read):\n");
	a = spawn(attack_batch);
	b = spawn(attack_pipeline);
	peak = before;
	probe("during:", &peak);
	stop_child(a);
	stop_child(b);
	after = rss_after();
	printf("  RSS before %ld KiB, peak during %ld KiB, after %ld KiB\n", before, peak, after);

	printf("%d idle connections:\n", IDLE_CONNS);
	before = rss_kib();
	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return 1;
	a = fork();
	if (a == 0) {
		close(pipefd[0]);
		attack_idle(pipefd[1]);
	}
	close(pipefd[1]);
	char buf[32] = "";
	ssize_t n = read(pipefd[0], buf, sizeof(buf) - 1);
	buf[n > 0 ? n : 0] = '\0';
	close(pipefd[0]);
	printf("  the attacker opened %ld connections\n", strtol(buf, NULL, 10));
	peak = rss_kib();
	probe("during:", &peak);
	stop_child(a);
	after = rss_after();
	printf("  RSS before %ld KiB, during %ld KiB, after %ld KiB\n", before, peak, after);
	return 0;
}
