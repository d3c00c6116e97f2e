/*
 * emberctl's verb table and the helpers verb handlers share. emberctl.c
 * parses global flags, finds the row, parses the row's options into a
 * struct verb_args and checks the positional count; a handler only builds
 * params, makes one call and prints. cmd-*.c hold the handlers.
 */
#ifndef EMBER_EMBERCTL_H
#define EMBER_EMBERCTL_H

#include <stdbool.h>
#include <jansson.h>

/* Exit statuses; documented in the help text. */
enum {
	EXIT_OK = 0,
	EXIT_ERROR = 1,		/* emberd said no, or no usable reply, or bad -f file */
	EXIT_USAGE = 2,
	EXIT_UNREACHABLE = 3,	/* cannot connect to the socket */
};

/* Per-verb options. Values start above any short option character. */
enum opt_id {
	OPT_FIRST = 256,
	OPT_IMAGE = OPT_FIRST,
	OPT_KERNEL,
	OPT_INITRD,
	OPT_ROOTFS,
	OPT_CPUS,
	OPT_MEMORY,
	OPT_DISK_SIZE,
	OPT_BOOT_ARGS,
	OPT_VSOCK,
	OPT_NO_VSOCK,
	OPT_BACKEND,
	OPT_NETWORK,
	OPT_PUBLISH,
	OPT_NO_START,
	OPT_FILE,
	OPT_FORCE,
	OPT_TIMEOUT,
	OPT_VMLINUX,
	OPT_ROOTFS_DIR,
	OPT_ROOTFS_SIZE,
	OPT_WAIT,
	OPT_OCI,
	OPT_NO_TLS_VERIFY,
	OPT_ENV,
	OPT_WORKDIR,
	OPT_USER,
	OPT_RM,
	OPT_FOLLOW,
	OPT_JSON,
	OPT_VM,
	OPT_TYPE,
	OPT_SINCE,
	OPT_WATCH,
	OPT_HELP,
	OPT_END
};

#define VERB_ENV_MAX 64	/* --env options a command takes */
#define VERB_PUBLISH_MAX 16	/* --publish options (VM_PUBLISH_MAX) */
#define VERB_MULTI_MAX 64	/* --vm or --type options a command takes */

struct verb_args {
	int argc;			/* positional arguments after the verb words */
	char **argv;
	const char *opt[OPT_END - OPT_FIRST];	/* NULL absent, "" for a flag */
	const char *env[VERB_ENV_MAX];	/* every --env K=V, in order */
	int nenv;
	const char *publish[VERB_PUBLISH_MAX];	/* every --publish, in order */
	int npublish;
	const char *vms[VERB_MULTI_MAX];	/* every --vm NAME */
	int nvms;
	const char *types[VERB_MULTI_MAX];	/* every --type T */
	int ntypes;
};

#define OPTARG(a, id) ((a)->opt[(id) - OPT_FIRST])

struct ctl;

struct verb {
	const char *group;	/* "vm" */
	const char *name;	/* "create", or NULL for a one-word verb */
	int min_args, max_args;	/* positional arguments; max -1: no limit */
	int (*handler)(struct ctl *, struct verb_args *);
	const char *usage;	/* what follows the verb words */
	const char *help;	/* one line */
	const enum opt_id *options;	/* accepted options, 0-terminated */
};

struct ctl {
	const char *socket;
	bool json;		/* print raw results */
	int timeout_ms;		/* reply timeout, -1 forever */
	bool timeout_set;	/* given with --timeout */
	const struct verb *verb;	/* the verb being run */
	struct rpc_client *rpc;	/* connected on the first call */
};

/*
 * Calls method (steals params) and waits for the reply. On success *result
 * is a new reference and EXIT_OK is returned; otherwise the failure has been
 * printed and the exit status to use is returned.
 */
int ctl_call(struct ctl *ctl, const char *method, json_t *params,
    json_t **result);
/*
 * ctl_call for verbs that print a result: with --json the result is
 * printed as it is and *result is NULL (the caller is done); otherwise the
 * caller formats *result.
 */
int ctl_query(struct ctl *ctl, const char *method, json_t *params,
    json_t **result);
/* result's member key of type t, or NULL after saying the reply is
 * malformed (the caller then returns EXIT_ERROR). */
json_t *ctl_reply_member(json_t *result, const char *method, const char *key,
    json_type t);
/* Prints and frees a table built row by row; NULL (a row that could not be
 * added) is reported as out of memory. An EXIT_* status. */
struct table;
int ctl_print_table(struct table *t);
/* One "label:  value" line of an inspect verb, values aligned at column
 * width; "-" for an absent value. */
void ctl_kv(const char *label, const char *value, int width);
/* Prints the verb's usage line after "emberctl: <why>"; returns EXIT_USAGE. */
int ctl_usage_error(struct ctl *ctl, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Prints "emberctl: <msg>" to stderr. */
void ctl_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Pretty-prints any JSON value on stdout. */
void ctl_print_json(const json_t *value);

/* Handlers (cmd-vm.c, cmd-image.c, cmd-misc.c). */
int cmd_vm_create(struct ctl *, struct verb_args *);
int cmd_vm_list(struct ctl *, struct verb_args *);
int cmd_vm_inspect(struct ctl *, struct verb_args *);
int cmd_vm_start(struct ctl *, struct verb_args *);
int cmd_vm_stop(struct ctl *, struct verb_args *);
int cmd_vm_pause(struct ctl *, struct verb_args *);
int cmd_vm_resume(struct ctl *, struct verb_args *);
int cmd_vm_delete(struct ctl *, struct verb_args *);
int cmd_vm_fork(struct ctl *, struct verb_args *);
int cmd_vm_exec(struct ctl *, struct verb_args *);
int cmd_vm_logs(struct ctl *, struct verb_args *);
int cmd_vm_run(struct ctl *, struct verb_args *);
int cmd_vm_cp(struct ctl *, struct verb_args *);
int cmd_image_import(struct ctl *, struct verb_args *);
int cmd_image_list(struct ctl *, struct verb_args *);
int cmd_image_inspect(struct ctl *, struct verb_args *);
int cmd_image_delete(struct ctl *, struct verb_args *);
int cmd_vsock_allocations(struct ctl *, struct verb_args *);
int cmd_daemon_info(struct ctl *, struct verb_args *);
int cmd_daemon_upgrade(struct ctl *, struct verb_args *);
int cmd_vm_stats(struct ctl *, struct verb_args *);	/* cmd-stats.c */
int cmd_metrics(struct ctl *, struct verb_args *);
int cmd_rpc(struct ctl *, struct verb_args *);
int cmd_version(struct ctl *, struct verb_args *);
int cmd_completion_bash(struct ctl *, struct verb_args *);
int cmd_events(struct ctl *, struct verb_args *);

/* A progress line for a long operation (cmd-events.c): a child process
 * subscribed on its own connection prints image.progress, disk.progress
 * and, on a terminal, the VM's status and agent events to stderr (one
 * line rewritten with \r on a terminal, plain lines otherwise). vm and
 * image may be NULL. NULL when it could not start: the operation goes on
 * without it. */
struct ctl_progress;
struct ctl_progress *ctl_progress_start(struct ctl *ctl, const char *vm, const char *image);
void ctl_progress_stop(struct ctl_progress *p);

#endif
