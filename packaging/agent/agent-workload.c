/*
 * The workload of a VM booted from an OCI image: the image's Entrypoint+Cmd
 * with its Env, WorkingDir and User, chosen by emberd (common/oci.h) and
 * passed on the kernel command line as ember.workload=<base64 JSON>. The
 * mini initramfs mounts the image's root disk and runs `ember-agent
 * workload ROOT`, which starts the workload chrooted into ROOT with its
 * output on the console, waits for it, prints one line emberd reads back
 * ("EMBER-WORKLOAD-EXIT code=N" or "... signal=N") and powers the guest
 * off. The agent's exec op uses agent_enter_root() too, so that `vm exec`
 * runs inside the image's root with the image's Env.
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
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent.h"

#define WORKLOAD_WORD		"ember.workload="
#define WORKLOAD_ARGS_MAX	1024

const char *agent_exec_root;
json_t *agent_exec_workload;

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

/* Prints the exit line and asks init (PID 1) to power off. */
static void
workload_end(const char *what, int n)
{
	fprintf(stderr, "EMBER-WORKLOAD-EXIT %s=%d\n", what, n);
	fflush(stderr);
	sync();
	kill(1, SIGUSR2);
}

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
