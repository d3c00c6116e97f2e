/*
 * Boot-time benchmark for the QEMU backend: for the same kernel and
 * initramfs (an ember-mini build), the time from the vm.start call to the
 * readiness line on the console through a private emberd, and the same for
 * qemu-system-x86_64 started by hand with the very arguments emberd used
 * (taken from its debug log, with the QMP socket and console redirected to
 * files of our own), and the ratio of the medians. Runs alternate between
 * the two so that a change in host load affects both alike. Prints
 * figures; asserts nothing.
 *
 * usage: bench-boot [-n RUNS] [IMAGE_DIR]
 *   IMAGE_DIR  build-mini.sh output (default: $EMBER_IMAGE_DIR, else
 *              <build>/image-mini next to this program's build tree)
 *   EMBERD     emberd binary (default: <build>/daemon/emberd)
 *   BENCH_ACCEL  qemu.accel for emberd (default tcg)
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
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

#define RUNS_DEFAULT	5
#define RUNS_MAX	50
#define READY		"EMBER-MINI READY"
#define BOOT_TIMEOUT_S	60	/* a TCG boot that hangs is retried once */
#define VM		"bench"

static char tmpdir[PATH_MAX], sock_path[PATH_MAX], log_path[PATH_MAX];
static pid_t emberd_pid = -1;

static void
cleanup(void)
{
	char cmd[PATH_MAX + 16];
	int status;

	if (emberd_pid > 0) {
		kill(emberd_pid, SIGTERM);
		waitpid(emberd_pid, &status, 0);
		emberd_pid = -1;
	}
	if (tmpdir[0] != '\0') {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
		if (system(cmd) != 0)
			fprintf(stderr, "bench-boot: cannot remove %s\n", tmpdir);
	}
}

static void __attribute__((noreturn, format(printf, 1, 2)))
die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "bench-boot: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (log_path[0] != '\0')
		fprintf(stderr, "bench-boot: emberd's log was %s (removed)\n", log_path);
	cleanup();
	exit(1);
}

static void
sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static off_t
file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? st.st_size : 0;
}

/* Whether READY appears in path after offset. */
static int
console_ready(const char *path, off_t offset)
{
	static char buf[1 << 20];
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return 0;
	n = pread(fd, buf, sizeof(buf) - 1, offset);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	/* The console may hold NULs; search line by line. */
	for (char *p = buf; p < buf + n; p += strlen(p) + 1)
		if (strstr(p, READY) != NULL)
			return 1;
	return 0;
}

/* Polls the console every millisecond; seconds from t0, or -1 on timeout. */
static double
wait_ready(const char *console, off_t offset, double t0)
{
	while (now_s() - t0 < BOOT_TIMEOUT_S) {
		if (console_ready(console, offset))
			return now_s() - t0;
		sleep_ms(1);
	}
	return -1;
}

/* One JSON-RPC call on a fresh connection; the result (new reference). */
static json_t *
rpc(const char *method, json_t *params)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	json_t *req = json_pack("{s:s, s:i, s:s, s:o}", "jsonrpc", "2.0", "id", 1,
	    "method", method, "params", params);
	char *line = json_dumps(req, JSON_COMPACT);
	static char buf[1 << 16];
	size_t got = 0;
	ssize_t n;
	json_t *reply, *result;
	json_error_t jerr;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	json_decref(req);
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", sock_path);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0)
		die("cannot connect to %s: %s", sock_path, strerror(errno));
	if (write(fd, line, strlen(line)) < 0 || write(fd, "\n", 1) < 0)
		die("cannot send %s: %s", method, strerror(errno));
	free(line);
	while (got < sizeof(buf) - 1 && (n = read(fd, buf + got, sizeof(buf) - 1 - got)) > 0) {
		got += (size_t)n;
		if (memchr(buf, '\n', got) != NULL)
			break;
	}
	close(fd);
	buf[got] = '\0';
	reply = json_loads(buf, 0, &jerr);
	if (reply == NULL)
		die("%s: unreadable reply: %s", method, buf);
	result = json_object_get(reply, "result");
	if (result == NULL) {
		char *s = json_dumps(json_object_get(reply, "error"), JSON_COMPACT);
		die("%s failed: %s", method, s ? s : "?");
	}
	json_incref(result);
	json_decref(reply);
	return result;
}

static void
start_emberd(const char *emberd, const char *config)
{
	int fd;

	emberd_pid = fork();
	if (emberd_pid < 0)
		die("fork: %s", strerror(errno));
	if (emberd_pid == 0) {
		fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execl(emberd, emberd, "--state-dir", tmpdir, "--socket", sock_path,
		    "--config", config, "--log-level", "debug", (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 1000; i++) {
		struct sockaddr_un sun = { .sun_family = AF_UNIX };
		int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

		snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", sock_path);
		if (connect(s, (struct sockaddr *)&sun, sizeof(sun)) == 0) {
			close(s);
			return;
		}
		close(s);
		if (waitpid(emberd_pid, NULL, WNOHANG) == emberd_pid) {
			emberd_pid = -1;
			die("emberd (%s) exited at startup", emberd);
		}
		sleep_ms(10);
	}
	die("emberd did not listen on %s within 10 s", sock_path);
}

/* emberd's command line for the VM, from its debug log line
 * "qemu: bench: ARGV...", where the last argument (after -append) may hold
 * spaces. The QMP fd and the console path are replaced by our own. */
static char **
hand_argv(const char *hand_console, const char *hand_qmp)
{
	static char line[8192];
	char pattern[64], *found = NULL, *p, **argv;
	FILE *fp = fopen(log_path, "r");
	int n = 0;

	if (fp == NULL)
		die("cannot read %s", log_path);
	snprintf(pattern, sizeof(pattern), "qemu: %s: /", VM);
	while (fgets(line, sizeof(line), fp) != NULL)
		if ((p = strstr(line, pattern)) != NULL)
			found = strdup(p + strlen(pattern) - 1);
	fclose(fp);
	if (found == NULL)
		die("emberd logged no QEMU command line for %s", VM);
	found[strcspn(found, "\n")] = '\0';
	argv = calloc(128, sizeof(*argv));
	for (p = found; p != NULL && *p != '\0' && n < 126;) {
		char *sp;

		if (n > 0 && strcmp(argv[n - 1], "-append") == 0) {
			size_t len = strlen(p);
			while (len > 0 && p[len - 1] == ' ')
				p[--len] = '\0';
			argv[n++] = p;
			break;
		}
		sp = strchr(p, ' ');
		if (sp != NULL)
			*sp++ = '\0';
		argv[n++] = p;
		p = sp;
	}
	for (int i = 0; i < n; i++) {
		char buf[PATH_MAX + 128];

		if (strncmp(argv[i], "socket,id=qmp,fd=", 17) == 0) {
			snprintf(buf, sizeof(buf), "socket,id=qmp,path=%s,server=on,wait=off",
			    hand_qmp);
			argv[i] = strdup(buf);
		} else if (strncmp(argv[i], "file,id=console,", 16) == 0) {
			snprintf(buf, sizeof(buf), "file,id=console,path=%s,append=on",
			    hand_console);
			argv[i] = strdup(buf);
		}
	}
	if (n < 2 || strcmp(argv[n - 2], "-append") != 0)
		die("cannot parse emberd's QEMU command line: %s", found);
	return argv;
}

/* One boot by hand; seconds to READY or -1. */
static double
hand_boot(char **argv, const char *console)
{
	off_t offset = file_size(console);
	double t0 = now_s(), t;
	int status, fd;
	pid_t pid = fork();

	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		fd = open("/dev/null", O_RDWR);
		dup2(fd, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		setsid();
		execv(argv[0], argv);
		_exit(127);
	}
	t = wait_ready(console, offset, t0);
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	return t;
}

/* One boot through emberd; seconds from the vm.start call to READY or -1. */
static double
emberd_boot(const char *console)
{
	off_t offset = file_size(console);
	double t0 = now_s(), t;

	json_decref(rpc("vm.start", json_pack("{s:s}", "name", VM)));
	t = wait_ready(console, offset, t0);
	json_decref(rpc("vm.stop", json_pack("{s:s, s:b}", "name", VM, "force", 1)));
	return t;
}

static double
median(const double *v, int n)
{
	double s[RUNS_MAX];

	memcpy(s, v, (size_t)n * sizeof(*v));
	qsort(s, (size_t)n, sizeof(*s), cmp_double);
	return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

/* A boot, retried once if it hangs (TCG boots hang now and then). */
static double
timed(double (*boot)(void *), void *arg, const char *what, int run)
{
	double t = boot(arg);

	if (t < 0) {
		fprintf(stderr, "bench-boot: %s run %d: no readiness line within %d s; "
		    "retrying once\n", what, run, BOOT_TIMEOUT_S);
		t = boot(arg);
	}
	if (t < 0)
		die("%s run %d: no readiness line within %d s, twice", what, run, BOOT_TIMEOUT_S);
	return t;
}

struct hand_arg {
	char **argv;
	const char *console;
};

static double
boot_emberd(void *arg)
{
	return emberd_boot(arg);
}

static double
boot_hand(void *arg)
{
	struct hand_arg *h = arg;

	return hand_boot(h->argv, h->console);
}

int
main(int argc, char **argv)
{
	char exe[PATH_MAX], build[PATH_MAX], emberd[PATH_MAX], image_dir[PATH_MAX];
	char config[PATH_MAX], path[PATH_MAX], console[PATH_MAX], hand_console[PATH_MAX];
	char hand_qmp[PATH_MAX];
	double te[RUNS_MAX], th[RUNS_MAX], me, mh;
	const char *accel = getenv("BENCH_ACCEL") ? getenv("BENCH_ACCEL") : "tcg";
	json_t *image, *boot_args;
	json_error_t jerr;
	struct hand_arg ha;
	int runs = RUNS_DEFAULT, c;
	ssize_t n;
	FILE *fp;

	while ((c = getopt(argc, argv, "n:h")) != -1) {
		if (c == 'n' && atoi(optarg) > 0 && atoi(optarg) <= RUNS_MAX) {
			runs = atoi(optarg);
			continue;
		}
		fprintf(stderr, "usage: bench-boot [-n RUNS (1-%d)] [IMAGE_DIR]\n", RUNS_MAX);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);

	/* <build>/tests/bench/bench-boot -> <build> */
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	exe[n > 0 ? n : 0] = '\0';
	snprintf(build, sizeof(build), "%s", exe);
	for (int i = 0; i < 3; i++)
		if (strrchr(build, '/') != NULL)
			*strrchr(build, '/') = '\0';
	if (getenv("EMBERD") != NULL)
		snprintf(emberd, sizeof(emberd), "%s", getenv("EMBERD"));
	else
		snprintf(emberd, sizeof(emberd), "%s/daemon/emberd", build);
	if (optind < argc)
		snprintf(image_dir, sizeof(image_dir), "%s", argv[optind]);
	else if (getenv("EMBER_IMAGE_DIR") != NULL)
		snprintf(image_dir, sizeof(image_dir), "%s", getenv("EMBER_IMAGE_DIR"));
	else
		snprintf(image_dir, sizeof(image_dir), "%s/image-mini", build);
	if (realpath(image_dir, path) == NULL)
		die("image directory %s: %s (build it with packaging/image/build-mini.sh)",
		    image_dir, strerror(errno));
	snprintf(image_dir, sizeof(image_dir), "%s", path);
	if (access(emberd, X_OK) < 0)
		die("emberd %s: %s (set EMBERD)", emberd, strerror(errno));

	snprintf(path, sizeof(path), "%s/image.json", image_dir);
	image = json_load_file(path, 0, &jerr);
	if (image == NULL)
		die("%s: %s", path, jerr.text);
	boot_args = json_object_get(image, "boot_args");

	snprintf(tmpdir, sizeof(tmpdir), "/tmp/bench-boot.XXXXXX");
	if (mkdtemp(tmpdir) == NULL)
		die("mkdtemp: %s", strerror(errno));
	snprintf(sock_path, sizeof(sock_path), "%s/emberd.sock", tmpdir);
	snprintf(log_path, sizeof(log_path), "%s/emberd.log", tmpdir);
	snprintf(config, sizeof(config), "%s/emberd.yaml", tmpdir);
	snprintf(console, sizeof(console), "%s/vms/%s/console.log", tmpdir, VM);
	snprintf(hand_console, sizeof(hand_console), "%s/hand-console.log", tmpdir);
	snprintf(hand_qmp, sizeof(hand_qmp), "%s/hand-qmp.sock", tmpdir);
	fp = fopen(config, "w");
	if (fp == NULL)
		die("%s: %s", config, strerror(errno));
	fprintf(fp, "qemu:\n  accel: %s\ndefaults:\n  backend: qemu\n", accel);
	fclose(fp);

	start_emberd(emberd, config);
	{
		char k[PATH_MAX], i[PATH_MAX];

		snprintf(k, sizeof(k), "%s/vmlinuz", image_dir);
		snprintf(i, sizeof(i), "%s/initrd.gz", image_dir);
		json_decref(rpc("image.import", json_pack("{s:s, s:s, s:s, s:O?}", "name",
		    "mini", "kernel", k, "initrd", i, "boot_args", boot_args)));
	}
	json_decref(rpc("vm.create", json_pack("{s:s, s:s, s:b}", "name", VM, "image",
	    "mini", "start", 0)));

	printf("bench-boot: %s, accel %s, %d runs each, alternating\n", image_dir, accel, runs);
	ha.console = hand_console;
	ha.argv = NULL;
	for (int r = 0; r < runs; r++) {
		te[r] = timed(boot_emberd, console, "emberd", r + 1);
		if (ha.argv == NULL)
			ha.argv = hand_argv(hand_console, hand_qmp);
		th[r] = timed(boot_hand, &ha, "by hand", r + 1);
		printf("run %d: emberd %.3f s, by hand %.3f s\n", r + 1, te[r], th[r]);
		fflush(stdout);
	}
	me = median(te, runs);
	mh = median(th, runs);
	printf("median: emberd %.3f s, by hand %.3f s\n", me, mh);
	printf("ratio (emberd / by hand): %.3f (%+.1f%%)\n", me / mh, (me / mh - 1) * 100);
	json_decref(image);
	cleanup();
	return 0;
}
