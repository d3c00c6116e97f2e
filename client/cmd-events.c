/*
 * `emberctl events` and the progress line of long operations. Both read
 * the stream events.subscribe turns a connection into (daemon/API.md):
 * `events` prints it as it comes (one human line, or with --json one JSON
 * object, per event); a long operation runs a child process that keeps its
 * own subscription and shows progress on stderr while the parent waits for
 * the operation's reply, so a subscription that fails costs nothing but
 * the progress line.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "emberctl.h"
#include "rpc-client.h"

#define PROGRESS_READY_MS 3000	/* how long an operation waits for its progress line */

static const char *
str(json_t *obj, const char *key, const char *dflt)
{
	const char *s = json_string_value(json_object_get(obj, key));

	return s != NULL ? s : dflt;
}

static long long
num(json_t *obj, const char *key)
{
	return (long long)json_integer_value(json_object_get(obj, key));
}

/* "12.3 MiB" */
static void
human_bytes(long long n, char *buf, size_t len)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)n;
	size_t u = 0;

	while (v >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
		v /= 1024;
		u++;
	}
	snprintf(buf, len, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
}

/* What an event says, without its number, time and VM. */
static void
describe(json_t *ev, char *buf, size_t len)
{
	const char *type = str(ev, "type", "?");
	json_t *data = json_object_get(ev, "data");
	const char *reason = str(data, "reason", NULL);
	char a[32], b[32];

	if (strcmp(type, "vm.status") == 0)
		snprintf(buf, len, "%s -> %s (%s)%s%s", str(data, "from", "new"),
		    str(data, "to", "?"), str(data, "event", "?"), reason ? ": " : "",
		    reason ? reason : "");
	else if (strcmp(type, "vm.exited") == 0)
		snprintf(buf, len, "hypervisor %s%s%s", str(data, "status", "exited"),
		    reason ? ": " : "", reason ? reason : "");
	else if (strcmp(type, "vm.deleted") == 0)
		snprintf(buf, len, "deleted");
	else if (strcmp(type, "agent.ready") == 0)
		snprintf(buf, len, "agent ready");
	else if (strcmp(type, "agent.lost") == 0)
		snprintf(buf, len, "agent lost: %s", reason ? reason : "?");
	else if (strcmp(type, "vsock.opened") == 0 || strcmp(type, "vsock.closed") == 0)
		snprintf(buf, len, "connection %s (host port %lld, guest port %lld), %lld open",
		    type + 6, num(data, "host_port"), num(data, "guest_port"), num(data, "open"));
	else if (strcmp(type, "image.progress") == 0) {
		const char *phase = str(data, "phase", "?");
		if (strcmp(phase, "done") == 0 || strcmp(phase, "failed") == 0)
			snprintf(buf, len, "image %s: %s%s%s", str(data, "image", "?"), phase,
			    json_object_get(data, "error") ? ": " : "", str(data, "error", ""));
		else if (json_object_get(data, "percent") != NULL) {
			human_bytes(num(data, "done_bytes"), a, sizeof(a));
			human_bytes(num(data, "total_bytes"), b, sizeof(b));
			snprintf(buf, len, "image %s: step %lld of %lld: %s %lld%% (%s of %s)",
			    str(data, "image", "?"), num(data, "step") + 1, num(data, "steps"), phase,
			    num(data, "percent"), a, b);
		} else
			snprintf(buf, len, "image %s: step %lld of %lld: %s", str(data, "image", "?"),
			    num(data, "step") + 1, num(data, "steps"), phase);
	} else if (strcmp(type, "disk.progress") == 0) {
		human_bytes(num(data, "done_bytes"), a, sizeof(a));
		human_bytes(num(data, "total_bytes"), b, sizeof(b));
		snprintf(buf, len, "disk copy %lld%% (%s of %s)", num(data, "percent"), a, b);
	} else if (strcmp(type, "events.dropped") == 0)
		snprintf(buf, len, "%lld events missed (seq %lld to %lld): read faster or "
		    "filter with --vm/--type", num(data, "count"), num(data, "first_seq"),
		    num(data, "last_seq"));
	else {
		char *j = data != NULL ? json_dumps(data, JSON_COMPACT) : NULL;
		snprintf(buf, len, "%s", j != NULL && strcmp(j, "{}") != 0 ? j : "");
		free(j);
	}
}

static void
print_event(json_t *ev, bool as_json)
{
	char what[1024];
	const char *time = str(ev, "time", "");
	const char *vm = str(ev, "vm", NULL);

	if (as_json) {
		char *j = json_dumps(ev, JSON_COMPACT);
		if (j != NULL)
			printf("%s\n", j);
		free(j);
	} else {
		describe(ev, what, sizeof(what));
		/* the time of day is enough on a terminal: 21:04:05.123 */
		printf("%-6lld %s %-15s %s%s%s\n", num(ev, "seq"),
		    strlen(time) >= 23 ? time + 11 : time, str(ev, "type", "?"),
		    vm ? vm : "", vm ? " " : "", what);
	}
	fflush(stdout);
}

/* The events.subscribe params of the command line; NULL after a usage error. */
static json_t *
subscribe_params(struct verb_args *a, const char *since)
{
	json_t *p = json_object(), *vms = json_array(), *types = json_array();

	for (int i = 0; i < a->nvms; i++)
		json_array_append_new(vms, json_string(a->vms[i]));
	for (int i = 0; i < a->ntypes; i++)
		json_array_append_new(types, json_string(a->types[i]));
	if (a->nvms > 0)
		json_object_set(p, "vms", vms);
	if (a->ntypes > 0)
		json_object_set(p, "types", types);
	json_decref(vms);
	json_decref(types);
	if (since != NULL) {
		char *end;
		errno = 0;
		long long v = strtoll(since, &end, 10);
		if (errno != 0 || end == since || *end != '\0' || v < 0) {
			json_decref(p);
			return NULL;
		}
		json_object_set_new(p, "since", json_integer(v));
	}
	return p;
}

int
cmd_events(struct ctl *ctl, struct verb_args *a)
{
	json_t *params = subscribe_params(a, OPTARG(a, OPT_SINCE)), *result = NULL, *msg;
	bool shutdown_seen = false;
	int r;

	if (params == NULL)
		return ctl_usage_error(ctl, "--since takes a sequence number (0 or more)");
	r = ctl_call(ctl, "events.subscribe", params, &result);
	if (r != EXIT_OK)
		return r;
	if (!ctl->json)
		fprintf(stderr, "following events after seq %lld (stream %s); ^C to stop\n",
		    num(result, "seq"), str(result, "stream", "?"));
	json_decref(result);
	for (;;) {
		r = rpc_client_next(ctl->rpc, -1, &msg);
		if (r == -EPIPE) {
			if (shutdown_seen)
				return EXIT_OK;
			ctl_warnx("emberd closed the event stream\n");
			return EXIT_ERROR;
		}
		if (r < 0) {
			ctl_warnx("cannot read the event stream: %s\n", strerror(-r));
			return EXIT_ERROR;
		}
		json_t *ev = json_object_get(msg, "params");
		if (json_is_object(ev) && strcmp(str(msg, "method", ""), "event") == 0) {
			shutdown_seen |= strcmp(str(ev, "type", ""), "daemon.shutdown") == 0;
			print_event(ev, ctl->json);
		}
		json_decref(msg);
	}
}

/* ---- progress line ---- */

struct ctl_progress {
	pid_t pid;
	bool tty;
};

/* In the child: follows the stream until killed or emberd closes it. */
static void
progress_child(const char *socket, const char *vm, const char *image, bool tty, int ready_fd)
{
	struct rpc_client *rpc = NULL;
	json_t *params, *result = NULL, *error = NULL, *msg;
	char err[256], what[1024];

	if (rpc_client_connect(socket, &rpc) < 0)
		_exit(0);
	params = json_pack("{s:[s,s]}", "types", "image.progress", "disk.progress");
	if (tty && vm != NULL) {
		json_array_append_new(json_object_get(params, "types"), json_string("vm.status"));
		json_array_append_new(json_object_get(params, "types"), json_string("agent.ready"));
	}
	if (vm != NULL)
		json_object_set_new(params, "vms", json_pack("[s]", vm));
	if (rpc_client_call(rpc, "events.subscribe", params, 5000, &result, &error, err,
	    sizeof(err)) != RPC_CALL_OK)
		_exit(0);
	if (write(ready_fd, "1", 1) < 0)
		_exit(0);
	close(ready_fd);
	while (rpc_client_next(rpc, -1, &msg) == 0) {
		json_t *ev = json_object_get(msg, "params");
		const char *type = str(ev, "type", "");
		/* an image's progress: only the one being imported */
		if (strcmp(type, "image.progress") == 0 &&
		    (image == NULL || strcmp(str(json_object_get(ev, "data"), "image", ""), image) != 0))
			type = "";
		if (type[0] != '\0' && strcmp(type, "events.dropped") != 0) {
			describe(ev, what, sizeof(what));
			if (tty)
				fprintf(stderr, "\r%s%s%s\033[K", vm ? vm : "", vm ? ": " : "", what);
			else
				fprintf(stderr, "%s%s%s\n", vm ? vm : "", vm ? ": " : "", what);
			fflush(stderr);
		}
		json_decref(msg);
	}
	_exit(0);
}

struct ctl_progress *
ctl_progress_start(struct ctl *ctl, const char *vm, const char *image)
{
	struct ctl_progress *p = calloc(1, sizeof(*p));
	struct pollfd pfd;
	int fds[2];
	char c;

	if (p == NULL)
		return NULL;
	/* The operation's own connection first: at a per-user connection
	 * limit it is the progress line that goes without. */
	if (ctl->rpc == NULL && rpc_client_connect(ctl->socket, &ctl->rpc) < 0) {
		free(p);
		return NULL;	/* ctl_call says why */
	}
	p->tty = isatty(STDERR_FILENO);
	if (pipe2(fds, O_CLOEXEC) < 0) {
		free(p);
		return NULL;
	}
	fflush(stdout);
	fflush(stderr);
	p->pid = fork();
	if (p->pid == 0) {
		close(fds[0]);
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		signal(SIGTERM, SIG_DFL);
		signal(SIGINT, SIG_IGN);	/* ^C reaches the parent, which stops us */
		progress_child(ctl->socket, vm, image, p->tty, fds[1]);
	}
	close(fds[1]);
	if (p->pid < 0) {
		close(fds[0]);
		free(p);
		return NULL;
	}
	/* The operation starts once the child is subscribed (or gave up), so
	 * its first progress is not missed. */
	pfd = (struct pollfd){ .fd = fds[0], .events = POLLIN };
	if (poll(&pfd, 1, PROGRESS_READY_MS) <= 0 || read(fds[0], &c, 1) != 1) {
		close(fds[0]);
		ctl_progress_stop(p);
		return NULL;
	}
	close(fds[0]);
	return p;
}

void
ctl_progress_stop(struct ctl_progress *p)
{
	if (p == NULL)
		return;
	kill(p->pid, SIGTERM);
	while (waitpid(p->pid, NULL, 0) < 0 && errno == EINTR)
		;
	if (p->tty) {
		fprintf(stderr, "\r\033[K");
		fflush(stderr);
	}
	free(p);
}
