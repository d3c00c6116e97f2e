/*
 * emberctl: the command-line client of emberd. Global flags come first, then
 * a verb from verbs[]; the row says how many positional arguments the verb
 * takes, which options it accepts and what its usage line is, so argument
 * checking and help text live in one place. Each run connects once, sends
 * one JSON-RPC request (two for `version`), waits for the reply and exits
 * with a status from exit_status_for_error() or EXIT_* (emberctl.h).
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "emberctl.h"
#include "rpc-client.h"
#include "table.h"

#define DEFAULT_TIMEOUT_S 600	/* vm.start and vm.create wait for the boot */

static const enum opt_id create_opts[] = {
	OPT_FILE, OPT_IMAGE, OPT_KERNEL, OPT_INITRD, OPT_ROOTFS, OPT_CPUS,
	OPT_MEMORY, OPT_DISK_SIZE, OPT_BOOT_ARGS, OPT_VSOCK, OPT_NO_VSOCK,
	OPT_BACKEND, OPT_NETWORK, OPT_PUBLISH, OPT_NO_START, OPT_WAIT, OPT_ENV, OPT_WORKDIR,
	OPT_USER, 0
};
static const enum opt_id start_opts[] = { OPT_WAIT, 0 };
static const enum opt_id logs_opts[] = { OPT_FOLLOW, 0 };
static const enum opt_id run_opts[] = {
	OPT_IMAGE, OPT_KERNEL, OPT_INITRD, OPT_ROOTFS, OPT_CPUS, OPT_MEMORY, OPT_DISK_SIZE,
	OPT_BOOT_ARGS, OPT_VSOCK, OPT_NO_VSOCK, OPT_BACKEND, OPT_NETWORK, OPT_PUBLISH, OPT_ENV,
	OPT_WORKDIR, OPT_USER, OPT_RM, 0
};
static const enum opt_id stop_opts[] = { OPT_FORCE, OPT_TIMEOUT, 0 };
static const enum opt_id exec_opts[] = { OPT_TIMEOUT, 0 };
static const enum opt_id delete_opts[] = { OPT_FORCE, 0 };
static const enum opt_id fork_opts[] = { OPT_VSOCK, OPT_NO_VSOCK, OPT_NO_START, 0 };
static const enum opt_id import_opts[] = {
	OPT_KERNEL, OPT_VMLINUX, OPT_INITRD, OPT_ROOTFS, OPT_ROOTFS_DIR,
	OPT_ROOTFS_SIZE, OPT_BOOT_ARGS, OPT_OCI, OPT_NO_TLS_VERIFY, 0
};
static const enum opt_id events_opts[] = { OPT_VM, OPT_TYPE, OPT_SINCE, 0 };
static const enum opt_id stats_opts[] = { OPT_WATCH, 0 };
static const enum opt_id no_opts[] = { 0 };

static const struct verb verbs[] = {
	{ "vm", "create", 1, -1, cmd_vm_create,
	  "NAME [-f SPEC.yaml] [--image I] [--kernel K]\n"
	  "\t[--initrd I] [--rootfs R] [--cpus N] [--memory 512M]\n"
	  "\t[--disk-size 2G] [--boot-args S] [--vsock | --no-vsock]\n"
	  "\t[--backend B] [--network none|user|nat] [--no-start]\n"
	  "\t[--publish [HOSTADDR:]HOSTPORT:GUESTPORT[/tcp|/udp]]...\n"
	  "\t[--wait [SECONDS]] [--env K=V]... [--workdir D] [--user U]\n"
	  "\t[-- CMD [ARGS...]]",
	  "create a VM and boot it (flags override -f, which overrides defaults;\n"
	  "--wait also waits, default 120 s, until its agent answers); with an OCI\n"
	  "image, CMD replaces its Cmd and --env/--workdir/--user its settings",
	  create_opts },
	{ "vm", "list", 0, 0, cmd_vm_list, "",
	  "list VMs: NAME STATUS BACKEND CPUS MEMORY CID", no_opts },
	{ "vm", "inspect", 1, 1, cmd_vm_inspect, "NAME",
	  "show a VM's record", no_opts },
	{ "vm", "stats", 0, 1, cmd_vm_stats, "[NAME] [--watch]",
	  "what VMs use: uptime, hypervisor CPU time and RSS, vsock bytes each way\n"
	  "and connections, disk allocated, agent ping (--watch: every second)",
	  stats_opts },
	{ "vm", "start", 1, 1, cmd_vm_start, "NAME [--wait [SECONDS]]",
	  "boot a created, stopped or failed VM (--wait: until its agent answers)",
	  start_opts },
	{ "vm", "stop", 1, 1, cmd_vm_stop, "NAME [--force] [--timeout S]",
	  "shut a VM down (gracefully for S seconds, default 10)", stop_opts },
	{ "vm", "pause", 1, 1, cmd_vm_pause, "NAME", "pause a running VM",
	  no_opts },
	{ "vm", "resume", 1, 1, cmd_vm_resume, "NAME", "resume a paused VM",
	  no_opts },
	{ "vm", "delete", 1, 1, cmd_vm_delete, "NAME [--force]",
	  "delete a VM, its disk and its CID (--force kills it first)",
	  delete_opts },
	{ "vm", "exec", 2, -1, cmd_vm_exec,
	  "NAME [--timeout S] -- CMD [ARGS...]",
	  "run a command in the guest through its agent (default timeout 60 s);\n"
	  "its output is printed and its status is emberctl's (128+N for signal N,\n"
	  "124 for a timeout)", exec_opts },
	{ "vm", "logs", 1, 1, cmd_vm_logs, "NAME [--follow]",
	  "print a VM's console output (--follow: until the VM stops)", logs_opts },
	{ "vm", "run", 1, -1, cmd_vm_run,
	  "NAME --image OCI-IMAGE [vm create options] [--env K=V]...\n"
	  "\t[--workdir D] [--user U] [--rm] [-- CMD [ARGS...]]",
	  "create and start a VM from an OCI image, print its workload's output and\n"
	  "exit with its status (128+N for signal N); --rm deletes the VM after",
	  run_opts },
	{ "vm", "cp", 2, 2, cmd_vm_cp, "SRC DST",
	  "copy a file into or out of a guest through its agent; one of SRC and\n"
	  "DST is NAME:/path (a path ending in / names a directory)", no_opts },
	{ "vm", "fork", 2, 2, cmd_vm_fork,
	  "SOURCE NAME [--vsock | --no-vsock] [--no-start]",
	  "create NAME as a copy of the stopped VM SOURCE", fork_opts },
	{ "image", "import", 1, 1, cmd_image_import,
	  "NAME --kernel K [--vmlinux V] [--initrd I]\n"
	  "\t[--rootfs FILE | --rootfs-dir DIR [--rootfs-size 1G]]\n"
	  "\t[--boot-args S]\n"
	  "\t| NAME --oci TRANSPORT:REF [--no-tls-verify (docker://)]",
	  "copy a kernel, initrd and root filesystem into the image store "
	  "(--rootfs-dir builds an ext4 image; --oci imports a container image:\n"
	  "oci:DIR[:TAG], oci-archive:FILE, docker-archive:FILE, docker://REF)",
	  import_opts },
	{ "image", "list", 0, 0, cmd_image_list, "",
	  "list images: NAME KERNEL INITRD ROOTFS", no_opts },
	{ "image", "inspect", 1, 1, cmd_image_inspect, "NAME",
	  "show an image's files and boot arguments", no_opts },
	{ "image", "delete", 1, 1, cmd_image_delete, "NAME [--force]",
	  "delete an image (--force even while VMs use it)", delete_opts },
	{ "vsock", "allocations", 0, 0, cmd_vsock_allocations, "",
	  "list allocated vsock CIDs: CID OWNER", no_opts },
	{ "events", NULL, 0, 0, cmd_events, "[--vm NAME]... [--type T]... [--since SEQ] [--json]",
	  "print emberd's events as they happen (status changes, exits, agent,\n"
	  "vsock, progress); --since resumes after a sequence number", events_opts },
	{ "daemon", "info", 0, 0, cmd_daemon_info, "",
	  "show emberd's version, paths and hypervisor backends", no_opts },
	{ "daemon", "upgrade", 0, 0, cmd_daemon_upgrade, "",
	  "re-execute emberd's binary in place; QEMU VMs keep their vsock (root)", no_opts },
	{ "metrics", NULL, 0, 0, cmd_metrics, "",
	  "print emberd's metrics in Prometheus text format", no_opts },
	{ "rpc", NULL, 1, 2, cmd_rpc, "METHOD [JSON-PARAMS]",
	  "call any method and print its raw result", no_opts },
	{ "version", NULL, 0, 0, cmd_version, "",
	  "show the versions of emberctl and emberd", no_opts },
	{ "completion", "bash", 0, 0, cmd_completion_bash, "",
	  "print the bash completion script (source <(emberctl completion bash))",
	  no_opts },
};

#define NVERBS (sizeof(verbs) / sizeof(verbs[0]))

/* Every per-verb option; rows pick from here. */
static const struct {
	enum opt_id id;
	const char *name;
	int has_arg;
	char short_name;	/* 0: long only */
} option_catalogue[] = {
	{ OPT_FILE, "file", required_argument, 'f' },
	{ OPT_IMAGE, "image", required_argument, 0 },
	{ OPT_KERNEL, "kernel", required_argument, 0 },
	{ OPT_INITRD, "initrd", required_argument, 0 },
	{ OPT_ROOTFS, "rootfs", required_argument, 0 },
	{ OPT_CPUS, "cpus", required_argument, 0 },
	{ OPT_MEMORY, "memory", required_argument, 0 },
	{ OPT_DISK_SIZE, "disk-size", required_argument, 0 },
	{ OPT_BOOT_ARGS, "boot-args", required_argument, 0 },
	{ OPT_VSOCK, "vsock", no_argument, 0 },
	{ OPT_NO_VSOCK, "no-vsock", no_argument, 0 },
	{ OPT_BACKEND, "backend", required_argument, 0 },
	{ OPT_NETWORK, "network", required_argument, 0 },
	{ OPT_PUBLISH, "publish", required_argument, 'p' },
	{ OPT_NO_START, "no-start", no_argument, 0 },
	{ OPT_FORCE, "force", no_argument, 0 },
	{ OPT_TIMEOUT, "timeout", required_argument, 0 },
	{ OPT_VMLINUX, "vmlinux", required_argument, 0 },
	{ OPT_ROOTFS_DIR, "rootfs-dir", required_argument, 0 },
	{ OPT_ROOTFS_SIZE, "rootfs-size", required_argument, 0 },
	{ OPT_WAIT, "wait", optional_argument, 0 },
	{ OPT_OCI, "oci", required_argument, 0 },
	{ OPT_NO_TLS_VERIFY, "no-tls-verify", no_argument, 0 },
	{ OPT_ENV, "env", required_argument, 'e' },
	{ OPT_WORKDIR, "workdir", required_argument, 'w' },
	{ OPT_USER, "user", required_argument, 'u' },
	{ OPT_RM, "rm", no_argument, 0 },
	{ OPT_FOLLOW, "follow", no_argument, 0 },
	{ OPT_JSON, "json", no_argument, 0 },
	{ OPT_WATCH, "watch", no_argument, 0 },
	{ OPT_VM, "vm", required_argument, 0 },
	{ OPT_TYPE, "type", required_argument, 0 },
	{ OPT_SINCE, "since", required_argument, 0 },
	{ OPT_HELP, "help", no_argument, 'h' },
};

#define NOPTIONS (sizeof(option_catalogue) / sizeof(option_catalogue[0]))

static const char *progname = "emberctl";

void
ctl_warnx(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", progname);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void
print_verb_usage(FILE *fp, const struct verb *v, const char *lead)
{
	fprintf(fp, "%s%s%s%s%s%s\n", lead, v->group, v->name ? " " : "",
	    v->name ? v->name : "", v->usage[0] ? " " : "", v->usage);
}

/* The synopsis and the verbs; with full, the options and exit statuses. */
static void
usage_all(FILE *fp, bool full)
{
	fprintf(fp,
	    "usage: %s [--socket PATH] [--json] [--timeout S] COMMAND [ARGS]\n"
	    "       %s --version | --help | COMMAND --help\n"
	    "\n"
	    "commands:\n", progname, progname);
	for (size_t i = 0; i < NVERBS; i++)
		print_verb_usage(fp, &verbs[i], "  ");
	if (!full) {
		fprintf(fp, "\nrun '%s --help' for options and exit statuses\n",
		    progname);
		return;
	}
	fprintf(fp,
	    "\n"
	    "global options:\n"
	    "  --socket PATH  emberd's socket (default: $EMBER_SOCKET, else\n"
	    "                 /run/ember/emberd.sock as root, else\n"
	    "                 $XDG_RUNTIME_DIR/ember/emberd.sock, else\n"
	    "                 /run/user/UID/ember/emberd.sock or\n"
	    "                 /tmp/ember-UID/emberd.sock)\n"
	    "  --json         print the raw JSON result (also accepted after\n"
	    "                 the verb)\n"
	    "  --timeout S    seconds to wait for a reply (default %d, 0 waits\n"
	    "                 forever)\n"
	    "  --version      print emberctl's version\n"
	    "\n"
	    "`vm create -f SPEC.yaml` reads image, kernel, initrd, rootfs, cpus,\n"
	    "memory, disk_size, boot_args, vsock, backend and network from YAML;\n"
	    "an error in the file is reported as FILE:LINE:COLUMN with status 1.\n"
	    "\n"
	    "exit status: 0 success; 1 emberd reported an error, the reply timed\n"
	    "out or was malformed, or the -f file is bad; 2 usage error; 3 emberd\n"
	    "cannot be reached.\n", DEFAULT_TIMEOUT_S);
}

/* The usage of every verb in a group. */
static void
usage_group(FILE *fp, const char *group)
{
	fprintf(fp, "usage:\n");
	for (size_t i = 0; i < NVERBS; i++)
		if (strcmp(verbs[i].group, group) == 0)
			print_verb_usage(fp, &verbs[i], "  emberctl ");
}

static void
verb_help(const struct verb *v, FILE *fp)
{
	print_verb_usage(fp, v, "usage: emberctl ");
	fprintf(fp, "%s\n", v->help);
}

int
ctl_usage_error(struct ctl *ctl, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", progname);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (ctl->verb != NULL)
		print_verb_usage(stderr, ctl->verb, "usage: emberctl ");
	return EXIT_USAGE;
}

void
ctl_print_json(const json_t *value)
{
	char *s = json_dumps(value, JSON_INDENT(2) | JSON_ENCODE_ANY);

	if (s == NULL) {
		ctl_warnx("cannot format the result as JSON");
		return;
	}
	printf("%s\n", s);
	free(s);
}

/*
 * The one place where emberd's answers become exit statuses. Every error
 * emberd sends, standard or application, means "the request was refused"
 * and is 1; usage problems are caught before anything is sent (2), and a
 * socket that cannot be reached never produces a JSON-RPC code (3).
 */
static int
exit_status_for_error(int code)
{
	switch (code) {
	case -32700:	/* parse error: we sent something emberd could not read */
	case -32600:	/* invalid request */
	case -32601:	/* method not found (e.g. `rpc` with a typo) */
	case -32602:	/* invalid params */
	case -32603:	/* internal error */
	default:	/* -32001..-32013 application errors, and any future ones */
		return EXIT_ERROR;
	}
}

/* Prints an error object as "emberctl: message[: reason]" and its hint. */
static int
report_error(const json_t *error, const char *method)
{
	const json_t *data = json_object_get(error, "data");
	const char *message = json_string_value(json_object_get(error, "message"));
	const char *reason = json_string_value(json_object_get(data, "reason"));
	const char *hint = json_string_value(json_object_get(data, "hint"));
	int code = (int)json_integer_value(json_object_get(error, "code"));

	if (reason != NULL && reason[0] != '\0')
		ctl_warnx("%s: %s", message, reason);
	else if (code == -32601)	/* say which, for `rpc` typos */
		ctl_warnx("%s: %s", message, method);
	else
		ctl_warnx("%s", message);
	if (hint != NULL && hint[0] != '\0')
		fprintf(stderr, "hint: %s\n", hint);
	return exit_status_for_error(code);
}

static int
report_unreachable(const char *path, int err)
{
	if (err == ENAMETOOLONG) {
		ctl_warnx("cannot reach emberd at %s: the path is too long for a "
		    "Unix socket (%zu bytes, max %zu)", path, strlen(path),
		    sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
		fprintf(stderr, "hint: use a shorter --socket or EMBER_SOCKET\n");
		return EXIT_UNREACHABLE;
	}
	ctl_warnx("cannot reach emberd at %s: %s", path, strerror(err));
	if (err == EACCES || err == EPERM)
		fprintf(stderr, "hint: you may not use that socket; run as root, "
		    "join the group emberd gives it (socket_group), or point "
		    "EMBER_SOCKET / --socket at your own emberd\n");
	else
		fprintf(stderr, "hint: start it with 'emberd --socket %s' or set "
		    "EMBER_SOCKET / --socket\n", path);
	return EXIT_UNREACHABLE;
}

int
ctl_call(struct ctl *ctl, const char *method, json_t *params, json_t **result)
{
	enum rpc_call_status st;
	json_t *error;
	char msg[512];
	int r;

	*result = NULL;
	if (ctl->rpc == NULL) {
		r = rpc_client_connect(ctl->socket, &ctl->rpc);
		if (r < 0) {
			json_decref(params);
			return report_unreachable(ctl->socket, -r);
		}
	}
	st = rpc_client_call(ctl->rpc, method, params, ctl->timeout_ms, result,
	    &error, msg, sizeof(msg));
	switch (st) {
	case RPC_CALL_OK:
		return EXIT_OK;
	case RPC_CALL_ERROR:
		r = report_error(error, method);
		json_decref(error);
		return r;
	case RPC_CALL_FAILED:
	default:
		ctl_warnx("%s", msg);
		return EXIT_ERROR;
	}
}

int
ctl_query(struct ctl *ctl, const char *method, json_t *params, json_t **result)
{
	int r = ctl_call(ctl, method, params, result);

	if (r == EXIT_OK && ctl->json) {
		ctl_print_json(*result);
		json_decref(*result);
		*result = NULL;
	}
	return r;
}

json_t *
ctl_reply_member(json_t *result, const char *method, const char *key, json_type t)
{
	json_t *v = json_object_get(result, key);

	if (v == NULL || json_typeof(v) != t) {
		ctl_warnx("malformed reply from emberd to %s: no \"%s\" %s", method, key,
		    t == JSON_ARRAY ? "array" : "object");
		return NULL;
	}
	return v;
}

int
ctl_print_table(struct table *t)
{
	if (t == NULL) {
		ctl_warnx("out of memory");
		return EXIT_ERROR;
	}
	table_print(t, stdout);
	table_free(t);
	return EXIT_OK;
}

void
ctl_kv(const char *label, const char *value, int width)
{
	int n = printf("%s:", label);

	printf("%*s%s\n", n < width ? width - n : 1, "", value != NULL ? value : "-");
}

/* Mirrors emberd's default: the system socket as root, else per user. */
static const char *
default_socket(char *buf, size_t len)
{
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	unsigned uid = (unsigned)geteuid();
	char run[64];
	struct stat st;

	if (uid == 0)
		return "/run/ember/emberd.sock";
	if (xdg != NULL && xdg[0] != '\0') {
		snprintf(buf, len, "%s/ember/emberd.sock", xdg);
		return buf;
	}
	snprintf(run, sizeof(run), "/run/user/%u", uid);
	if (stat(run, &st) == 0 && S_ISDIR(st.st_mode))
		snprintf(buf, len, "%s/ember/emberd.sock", run);
	else
		snprintf(buf, len, "/tmp/ember-%u/emberd.sock", uid);
	return buf;
}

/* Seconds (fractions allowed) to milliseconds; 0 means forever (-1). */
static int
parse_timeout(const char *s, int *ms)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || !isfinite(v) || v < 0)
		return -EINVAL;
	if (v == 0)
		*ms = -1;
	else if (v * 1000 >= INT_MAX)
		*ms = INT_MAX;
	else
		*ms = v * 1000 < 1 ? 1 : (int)(v * 1000);
	return 0;
}

static const struct verb *
find_verb(const char *group, const char *name, bool *group_known)
{
	*group_known = false;
	for (size_t i = 0; i < NVERBS; i++) {
		const struct verb *v = &verbs[i];

		if (strcmp(v->group, group) != 0)
			continue;
		*group_known = true;
		if (v->name == NULL)
			return v;
		if (name != NULL && strcmp(v->name, name) == 0)
			return v;
	}
	return NULL;
}

/* Parses the verb's options (in any order among its positional arguments)
 * into a. argv[0] is the last verb word. Returns EXIT_OK, EXIT_USAGE, or -1
 * when --help was asked for. */
static int
parse_verb_args(struct ctl *ctl, int argc, char **argv, struct verb_args *a)
{
	const struct verb *v = ctl->verb;
	struct option longopts[NOPTIONS + 1];
	char shortopts[16] = ":";	/* ':' tells missing values apart */
	size_t n = 0, ns = 1;
	int c;

	memset(a, 0, sizeof(*a));
	memset(longopts, 0, sizeof(longopts));
	for (size_t i = 0; i < NOPTIONS; i++) {
		bool ok = option_catalogue[i].id == OPT_JSON ||
		    option_catalogue[i].id == OPT_HELP;

		for (const enum opt_id *o = v->options; !ok && *o != 0; o++)
			ok = *o == option_catalogue[i].id;
		if (!ok)
			continue;
		longopts[n].name = option_catalogue[i].name;
		longopts[n].has_arg = option_catalogue[i].has_arg;
		longopts[n].val = option_catalogue[i].id;
		n++;
		if (option_catalogue[i].short_name != 0 &&
		    ns + 2 < sizeof(shortopts)) {
			shortopts[ns++] = option_catalogue[i].short_name;
			if (option_catalogue[i].has_arg == required_argument)
				shortopts[ns++] = ':';
		}
	}

	optind = 0;	/* GNU: reinitialise after the global pass */
	opterr = 0;
	while ((c = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
		if (c == '?') {
			if (optopt != 0)
				return ctl_usage_error(ctl, "unknown option '-%c'",
				    optopt);
			return ctl_usage_error(ctl, "unknown option '%s'",
			    argv[optind - 1]);
		}
		if (c == ':')
			return ctl_usage_error(ctl, "option '%s' needs a value",
			    argv[optind - 1]);
		for (size_t i = 0; i < NOPTIONS; i++)
			if (option_catalogue[i].short_name == c)
				c = option_catalogue[i].id;
		if (c < OPT_FIRST || c >= OPT_END)
			return ctl_usage_error(ctl, "unexpected option");
		/* An optional value may also be the next word ("--wait 60"),
		 * when that word is a number. */
		for (size_t i = 0; i < NOPTIONS; i++)
			if ((int)option_catalogue[i].id == c &&
			    option_catalogue[i].has_arg == optional_argument &&
			    optarg == NULL && optind < argc &&
			    argv[optind][0] >= '0' && argv[optind][0] <= '9' &&
			    strspn(argv[optind], "0123456789") ==
			    strlen(argv[optind]))
				optarg = argv[optind++];
		a->opt[c - OPT_FIRST] = optarg != NULL ? optarg : "";
		if (c == OPT_ENV && a->nenv == VERB_ENV_MAX)
			return ctl_usage_error(ctl, "at most %d --env options", VERB_ENV_MAX);
		if (c == OPT_ENV)
			a->env[a->nenv++] = optarg;
		if (c == OPT_PUBLISH && a->npublish == VERB_PUBLISH_MAX)
			return ctl_usage_error(ctl, "at most %d --publish options", VERB_PUBLISH_MAX);
		if (c == OPT_PUBLISH)
			a->publish[a->npublish++] = optarg;
		if ((c == OPT_VM && a->nvms == VERB_MULTI_MAX) ||
		    (c == OPT_TYPE && a->ntypes == VERB_MULTI_MAX))
			return ctl_usage_error(ctl, "at most %d --vm and --type options",
			    VERB_MULTI_MAX);
		if (c == OPT_VM)
			a->vms[a->nvms++] = optarg;
		if (c == OPT_TYPE)
			a->types[a->ntypes++] = optarg;
	}
	if (OPTARG(a, OPT_HELP) != NULL)
		return -1;
	if (OPTARG(a, OPT_JSON) != NULL)
		ctl->json = true;
	a->argc = argc - optind;
	a->argv = argv + optind;
	if (a->argc < v->min_args)
		return ctl_usage_error(ctl, "missing argument");
	if (v->max_args >= 0 && a->argc > v->max_args)
		return ctl_usage_error(ctl, "unexpected argument '%s'",
		    a->argv[v->max_args]);
	return EXIT_OK;
}

int
main(int argc, char *argv[])
{
	static const struct option global_opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "timeout", required_argument, NULL, 't' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct ctl ctl = { .timeout_ms = DEFAULT_TIMEOUT_S * 1000 };
	char sockbuf[PATH_MAX];
	struct verb_args args;
	const struct verb *v;
	bool group_known;
	int c, words, r;

	signal(SIGPIPE, SIG_IGN);	/* belt and braces next to MSG_NOSIGNAL */

	opterr = 0;
	while ((c = getopt_long(argc, argv, "+:h", global_opts, NULL)) != -1) {
		switch (c) {
		case 's':
			ctl.socket = optarg;
			break;
		case 'j':
			ctl.json = true;
			break;
		case 't':
			if (parse_timeout(optarg, &ctl.timeout_ms) < 0) {
				ctl_warnx("invalid --timeout '%s': expected "
				    "seconds, e.g. 30 (0 waits forever)", optarg);
				return EXIT_USAGE;
			}
			ctl.timeout_set = true;
			break;
		case 'V':
			printf("emberctl %s\n", EMBER_VERSION);
			return EXIT_OK;
		case 'h':
			usage_all(stdout, true);
			return EXIT_OK;
		case ':':
			ctl_warnx("option '%s' needs a value", argv[optind - 1]);
			usage_all(stderr, false);
			return EXIT_USAGE;
		default:
			if (optopt != 0)
				ctl_warnx("unknown option '-%c'", optopt);
			else
				ctl_warnx("unknown option '%s'", argv[optind - 1]);
			usage_all(stderr, false);
			return EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		usage_all(stderr, false);
		return EXIT_USAGE;
	}
	if (strcmp(argv[optind], "help") == 0) {
		usage_all(stdout, true);
		return EXIT_OK;
	}

	v = find_verb(argv[optind], optind + 1 < argc ? argv[optind + 1] : NULL,
	    &group_known);
	if (v == NULL) {
		if (!group_known) {
			ctl_warnx("unknown command '%s'", argv[optind]);
			usage_all(stderr, false);
			return EXIT_USAGE;
		}
		if (optind + 1 >= argc) {
			ctl_warnx("'%s' needs a subcommand", argv[optind]);
		} else if (strcmp(argv[optind + 1], "--help") == 0 ||
		    strcmp(argv[optind + 1], "-h") == 0) {
			usage_group(stdout, argv[optind]);
			return EXIT_OK;
		} else {
			ctl_warnx("unknown command '%s %s'", argv[optind],
			    argv[optind + 1]);
		}
		usage_group(stderr, argv[optind]);
		return EXIT_USAGE;
	}
	ctl.verb = v;
	words = v->name != NULL ? 2 : 1;
	/* The last verb word stands in for argv[0] in the verb's getopt. */
	r = parse_verb_args(&ctl, argc - optind - words + 1,
	    argv + optind + words - 1, &args);
	if (r == -1) {
		verb_help(v, stdout);
		return EXIT_OK;
	}
	if (r != EXIT_OK)
		return r;

	if (ctl.socket == NULL)
		ctl.socket = getenv("EMBER_SOCKET");
	if (ctl.socket == NULL || ctl.socket[0] == '\0')
		ctl.socket = default_socket(sockbuf, sizeof(sockbuf));

	r = v->handler(&ctl, &args);
	rpc_client_free(ctl.rpc);
	if (fflush(stdout) != 0 && r == EXIT_OK) {
		ctl_warnx("cannot write output: %s", strerror(errno));
		r = EXIT_ERROR;
	}
	return r;
}
