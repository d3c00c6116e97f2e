/*
 * The workload of a VM booted from an OCI image: the image's Entrypoint+Cmd
 * with its Env, WorkingDir and User, chosen by emberd (common/oci.h) and
 * passed on the kernel command line as ember.workload=<base64 JSON>. The
 * mini initramfs mounts the image's root disk and runs `ember-agent
 * workload ROOT`, which starts the workload chrooted into ROOT with its
 * output on the console and waits for it. Its end goes to emberd through
 * the agent, not through the workload's own output: the runner writes it
 * into /run (outside the workload's root), the agent's workload_status op
 * answers it (waiting for it when asked to), and the runner powers the
 * guest off once emberd has said it has it ("collected"), or after
 * WORKLOAD_COLLECT_WAIT_S when it never does. The line it also prints on
 * the console ("EMBER-WORKLOAD-EXIT code=N" or "... signal=N") is only
 * emberd's fallback for a guest whose agent it could not reach. The
 * agent's exec op uses agent_enter_root() too, so that `vm exec` runs
 * inside the image's root with the image's Env.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"

#define WORKLOAD_WORD		"ember.workload="
#define WORKLOAD_ARGS_MAX	1024
/* The workload's end, for the agent, and emberd's receipt of it; in the
 * initramfs's /run (agent_workload_run_dir), which the chrooted workload
 * cannot reach. */
#define WORKLOAD_STATUS_NAME	"ember-workload.status"
#define WORKLOAD_COLLECTED_NAME	"ember-workload.collected"
/* How long the runner waits for emberd to collect the end. */
#define WORKLOAD_COLLECT_WAIT_S	30
/* The longest wait_s of workload_status. */
#define WORKLOAD_WAIT_MAX_S	600
#define WORKLOAD_STATUS_MAX	256

const char *agent_exec_root;
json_t *agent_exec_workload;
const char *agent_workload_run_dir = "/run";

json_t *
agent_workload_parse(const char *cmdline, struct agent_error *err)
{
	const char *p = cmdline, *end;
	unsigned char *raw = NULL;
	size_t rawlen;
	json_error_t jerr;
	json_t *doc, *args, *env, *v;
	const char *workdir, *user;
	size_t i;

	while ((p = strstr(p, WORKLOAD_WORD)) != NULL && p != cmdline && p[-1] != ' ')
		p++;
	if (p == NULL) {
		agent_error_set(err, "no %s on the kernel command line", WORKLOAD_WORD);
		return NULL;
	}
	p += strlen(WORKLOAD_WORD);
	end = p + strcspn(p, " \n");
	if (base64_decode(p, (size_t)(end - p), &raw, &rawlen) != 0) {
		agent_error_set(err, "%s is not base64", WORKLOAD_WORD);
		return NULL;
	}
	doc = json_loadb((const char *)raw, rawlen, 0, &jerr);
	free(raw);
	if (doc == NULL || json_unpack_ex(doc, &jerr, JSON_STRICT, "{s:o, s:o, s:s, s:s}",
	    "args", &args, "env", &env, "workdir", &workdir, "user", &user) != 0 ||
	    !json_is_array(args) || json_array_size(args) == 0 ||
	    json_array_size(args) > WORKLOAD_ARGS_MAX || !json_is_array(env)) {
		agent_error_set(err, "malformed workload: %s", jerr.text);
		json_decref(doc);
		return NULL;
	}
	json_array_foreach(args, i, v)
		if (!json_is_string(v))
			goto bad;
	json_array_foreach(env, i, v)
		if (!json_is_string(v) || strchr(json_string_value(v), '=') == NULL)
			goto bad;
	return doc;
bad:
	agent_error_set(err, "malformed workload: args and env must be strings (env K=V)");
	json_decref(doc);
	return NULL;
}

/* name or number in a passwd/group file's first and third fields: the
 * number (and, for passwd, the fourth field in *gid), or -1. */
static long
lookup_id(const char *file, const char *name, gid_t *gid)
{
	char line[1024], *fields[4], *save, *end;
	long id = -1, v;
	FILE *f;

	v = strtol(name, &end, 10);
	if (*name != '\0' && *end == '\0' && v >= 0 && v < 0x7fffffff && gid == NULL)
		return v;
	if ((f = fopen(file, "re")) == NULL)
		return -1;
	while (id == -1 && fgets(line, sizeof(line), f) != NULL) {
		int n = 0;
		for (char *t = strtok_r(line, ":\n", &save); t != NULL && n < 4;
		    t = strtok_r(NULL, ":\n", &save))
			fields[n++] = t;
		if (n < 3 || strcmp(fields[0], name) != 0)
			continue;
		id = strtol(fields[2], NULL, 10);
		if (gid != NULL && n >= 4)
			*gid = (gid_t)strtol(fields[3], NULL, 10);
	}
	fclose(f);
	return id;
}

/* user is "", "uid", "uid:gid", "name" or "name:group" (names from the
 * current root's /etc/passwd and /etc/group); 0 or -1 with err. */
static int
switch_user(const char *user, struct agent_error *err)
{
	char u[256], *colon, *end;
	long uid, gid = -1;
	gid_t pw_gid = 0;

	if (user[0] == '\0')
		return 0;
	snprintf(u, sizeof(u), "%s", user);
	if ((colon = strchr(u, ':')) != NULL)
		*colon++ = '\0';
	uid = strtol(u, &end, 10);
	if (*u == '\0' || *end != '\0' || uid < 0) {
		if ((uid = lookup_id("/etc/passwd", u, &pw_gid)) < 0)
			return agent_error_set(err, "user %s: not in the image's /etc/passwd", u);
		gid = pw_gid;
	} else
		gid = uid == 0 ? 0 : lookup_id("/etc/passwd", u, &pw_gid) >= 0 ? (long)pw_gid : uid;
	if (colon != NULL && (gid = lookup_id("/etc/group", colon, NULL)) < 0)
		return agent_error_set(err, "group %s: not in the image's /etc/group", colon);
	if (setgroups(0, NULL) != 0 || setgid((gid_t)gid) != 0 || setuid((uid_t)uid) != 0)
		return agent_error_set(err, "cannot become %s: %s", user, strerror(errno));
	return 0;
}

int
agent_enter_root(const char *root, json_t *workload, bool as_user, struct agent_error *err)
{
	json_t *env = json_object_get(workload, "env"), *v;
	const char *workdir = json_string_value(json_object_get(workload, "workdir"));
	size_t i;

	if (chroot(root) != 0 || chdir("/") != 0)
		return agent_error_set(err, "cannot enter %s: %s", root, strerror(errno));
	clearenv();
	setenv("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", 1);
	json_array_foreach(env, i, v) {
		const char *kv = json_string_value(v), *eq = strchr(kv, '=');
		char key[256];
		if (eq == NULL || eq == kv || (size_t)(eq - kv) >= sizeof(key))
			continue;
		snprintf(key, sizeof(key), "%.*s", (int)(eq - kv), kv);
		setenv(key, eq + 1, 1);
	}
	if (as_user && switch_user(json_string_value(json_object_get(workload, "user")),
	    err) != 0)
		return -1;
	if (workdir != NULL && chdir(workdir) != 0)
		return agent_error_set(err, "working directory %s: %s", workdir, strerror(errno));
	return 0;
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Waits until agent_workload_run_dir/name exists or timeout_s passes; 1 when it
 * exists. */
static int
run_file_wait(const char *name, double timeout_s)
{
	char path[PATH_MAX], ev[4096] __attribute__((aligned(8)));
	double deadline = now_s() + timeout_s;
	int fd, found = 0;

	snprintf(path, sizeof(path), "%s/%s", agent_workload_run_dir, name);
	if ((fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK)) == -1)
		return access(path, F_OK) == 0;
	if (inotify_add_watch(fd, agent_workload_run_dir, IN_CREATE | IN_MOVED_TO) == -1) {
		close(fd);
		return access(path, F_OK) == 0;
	}
	for (;;) {
		double left = deadline - now_s();
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		if ((found = access(path, F_OK) == 0) || left <= 0)
			break;
		if (poll(&pfd, 1, (int)(left * 1000) + 1) == -1 && errno != EINTR)
			break;
		while (read(fd, ev, sizeof(ev)) > 0)
			;
	}
	close(fd);
	return found;
}

/* The workload's end as the runner left it: 1 with *what ("code" or
 * "signal") and *n, 0 when there is none (yet), -1 when the file is
 * malformed. */
static int
status_read(const char **what, int *n)
{
	char path[PATH_MAX], buf[WORKLOAD_STATUS_MAX + 1];
	json_t *doc, *v;
	ssize_t len;
	int fd, r = -1;

	snprintf(path, sizeof(path), "%s/%s", agent_workload_run_dir, WORKLOAD_STATUS_NAME);
	if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) == -1)
		return errno == ENOENT ? 0 : -1;
	len = read(fd, buf, WORKLOAD_STATUS_MAX);
	close(fd);
	if (len <= 0 || (doc = json_loadb(buf, (size_t)len, 0, NULL)) == NULL)
		return -1;
	if (json_is_integer(v = json_object_get(doc, "code")) && json_integer_value(v) >= 0 &&
	    json_integer_value(v) <= 255) {
		*what = "code";
		*n = (int)json_integer_value(v);
		r = 1;
	} else if (json_is_integer(v = json_object_get(doc, "signal")) &&
	    json_integer_value(v) >= 1 && json_integer_value(v) <= 127) {
		*what = "signal";
		*n = (int)json_integer_value(v);
		r = 1;
	}
	json_decref(doc);
	return r;
}

/* Leaves {"code": N} or {"signal": N} for the agent (renamed into place,
 * so that it is read whole or not at all). */
static void
status_write(const char *what, int n)
{
	char tmp[PATH_MAX], path[PATH_MAX], text[64];
	int fd, len;

	snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", agent_workload_run_dir, WORKLOAD_STATUS_NAME);
	snprintf(path, sizeof(path), "%s/%s", agent_workload_run_dir, WORKLOAD_STATUS_NAME);
	len = snprintf(text, sizeof(text), "{\"%s\": %d}\n", what, n);
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600)) == -1) {
		fprintf(stderr, "ember-workload: %s: %s\n", tmp, strerror(errno));
		return;
	}
	if (write(fd, text, (size_t)len) != len || close(fd) != 0 || rename(tmp, path) != 0)
		fprintf(stderr, "ember-workload: %s: %s\n", path, strerror(errno));
}

/* The workload ended: its end for the agent, the console's fallback line,
 * a wait for emberd to collect it (when a vsock device could carry it),
 * then init (PID 1) is asked to power off. */
static void
workload_end(const char *what, int n)
{
	status_write(what, n);
	fprintf(stderr, "EMBER-WORKLOAD-EXIT %s=%d\n", what, n);
	fflush(stderr);
	if (agent_local_cid() > 0 && !run_file_wait(WORKLOAD_COLLECTED_NAME,
	    WORKLOAD_COLLECT_WAIT_S))
		fprintf(stderr, "ember-workload: emberd did not collect the exit status "
		    "within %d s; powering off\n", WORKLOAD_COLLECT_WAIT_S);
	sync();
	kill(1, SIGUSR2);
}

/* This boot's /proc/sys/kernel/random/boot_id, or "". */
static void
boot_id(char *out, size_t len)
{
	ssize_t n = -1;
	int fd;

	if ((fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC)) != -1) {
		n = read(fd, out, len - 1);
		close(fd);
	}
	out[n > 0 ? n : 0] = '\0';
	out[strspn(out, "0123456789abcdef-")] = '\0';
}

/*
 * workload_status {"wait_s": N, "collected": B}: whether this guest has a
 * workload ("workload": "none", "running" or "exited", with "code" or
 * "signal" once exited) and this boot's "boot_id". With wait_s it waits
 * that long for a running workload to end; with collected (once exited)
 * it tells the runner that emberd has the status, so the guest powers off.
 */
static int
agent_op_workload_status(json_t *params, json_t *reply, struct agent_error *err)
{
	json_int_t wait_s = 0;
	int collected = 0, n = 0, r;
	const char *what = NULL;
	json_error_t jerr;
	char id[64], path[PATH_MAX];

	if (json_unpack_ex(params, &jerr, JSON_STRICT, "{s?I, s?b}", "wait_s", &wait_s,
	    "collected", &collected) != 0)
		return agent_error_set(err, "invalid parameters for workload_status: %s",
		    jerr.text);
	if (wait_s < 0 || wait_s > WORKLOAD_WAIT_MAX_S)
		return agent_error_set(err, "wait_s must be 0..%d", WORKLOAD_WAIT_MAX_S);
	if (agent_dry_run || agent_exec_root == NULL) {
		if (collected)
			return agent_error_set(err, "this guest runs no workload");
		return json_object_set_new(reply, "workload", json_string("none")) != 0 ?
		    agent_error_set(err, "out of memory") : 0;
	}
	boot_id(id, sizeof(id));
	if ((r = status_read(&what, &n)) == 0 && wait_s > 0 && !collected &&
	    run_file_wait(WORKLOAD_STATUS_NAME, (double)wait_s))
		r = status_read(&what, &n);
	if (r < 0)
		return agent_error_set(err, "the workload's status file is malformed");
	if (collected && r == 0)
		return agent_error_set(err, "the workload is still running: nothing to collect");
	if (collected) {
		snprintf(path, sizeof(path), "%s/%s", agent_workload_run_dir, WORKLOAD_COLLECTED_NAME);
		int fd = open(path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd == -1)
			return agent_error_set(err, "%s: %s", path, strerror(errno));
		close(fd);
	}
	if (json_object_set_new(reply, "workload", json_string(r ? "exited" : "running")) != 0 ||
	    json_object_set_new(reply, "boot_id", json_string(id)) != 0 ||
	    (r && json_object_set_new(reply, what, json_integer(n)) != 0))
		return agent_error_set(err, "out of memory");
	return 0;
}

const struct agent_op agent_ops_workload[] = {
	/* Parameters are checked by the handler; it may wait (wait_s). */
	{ "workload_status", NULL, agent_op_workload_status, AGENT_OP_WORKER },
	{ NULL, NULL, NULL, 0 },
};

int
agent_workload_main(const char *root, const char *cmdline)
{
	struct agent_error err = { { 0 } };
	json_t *w = agent_workload_parse(cmdline, &err), *args, *v;
	char *argv[WORKLOAD_ARGS_MAX + 1];
	int status, devnull;
	size_t i;
	pid_t pid;

	if (w == NULL) {
		fprintf(stderr, "ember-workload: %s\n", err.msg);
		workload_end("code", 127);
		return 1;
	}
	args = json_object_get(w, "args");
	json_array_foreach(args, i, v)
		argv[i] = (char *)json_string_value(v);
	argv[json_array_size(args)] = NULL;
	fprintf(stderr, "EMBER-WORKLOAD-START %s\n", argv[0]);
	if ((pid = fork()) == -1) {
		fprintf(stderr, "ember-workload: fork: %s\n", strerror(errno));
		workload_end("code", 127);
		return 1;
	}
	if (pid == 0) {
		sigset_t none;
		for (int sig = 1; sig < NSIG; sig++)
			if (sig != SIGKILL && sig != SIGSTOP)
				signal(sig, SIG_DFL);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		setsid();
		if ((devnull = open("/dev/null", O_RDONLY | O_CLOEXEC)) != -1)
			dup2(devnull, 0);
		if (agent_enter_root(root, w, true, &err) != 0) {
			fprintf(stderr, "ember-workload: %s\n", err.msg);
			_exit(127);
		}
		execvp(argv[0], argv);
		fprintf(stderr, "ember-workload: cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(errno == ENOENT ? 127 : 126);
	}
	while (waitpid(pid, &status, 0) == -1 && errno == EINTR)
		;
	json_decref(w);
	if (WIFSIGNALED(status))
		workload_end("signal", WTERMSIG(status));
	else
		workload_end("code", WEXITSTATUS(status));
	return 0;
}
