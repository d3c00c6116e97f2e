/*
 * VMs booted from OCI images (see vm-workload.h). The workload's end comes
 * from the guest's agent (vm-agent.c asks it over vsock), which runs
 * outside the workload's root; the workload's own output cannot forge it.
 * Only when the agent did not report it this boot (no vsock, or the guest
 * powered off while emberd was away) is the console's exit line used: guest
 * output like any other console byte, parsed strictly from this boot's part
 * of the last 64 KiB of console.log, and marked "source": "console", since
 * a workload can print such a line itself.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon.h"
#include "image.h"
#include "log.h"
#include "oci.h"
#include "vm.h"
#include "vm-internal.h"
#include "vm-workload.h"

#define WORKLOAD_EXIT_LINE "EMBER-WORKLOAD-EXIT "
#define WORKLOAD_TAIL_BYTES (64 * 1024)

int
vm_workload_prepare(struct ember_daemon *d, const struct vm_create_args *a, json_t **image_doc,
    char **workload_word, struct ember_error *err)
{
	json_t *oci = json_object_get(*image_doc, "oci"), *boot = NULL, *doc, *workload;
	const char *kernel_image = d->config.default_image;
	char reason[256] = "";
	int r;

	*workload_word = NULL;
	if (oci == NULL) {
		if (a->command != NULL || a->env != NULL || a->workdir != NULL || a->user != NULL)
			return ember_error_set(err, EK_INVALID_SPEC,
			    "a command, env, workdir and user go with an OCI image",
			    "image \"%s\" has no workload to override",
			    json_string_value(json_object_get(*image_doc, "name")));
		return 0;
	}
	if ((r = oci_workload(json_object_get(oci, "config"), a->command, a->env, a->workdir,
	    a->user, &workload, reason, sizeof(reason))) < 0)
		return ember_error_set(err, EK_INVALID_SPEC, NULL, "image \"%s\": %s",
		    json_string_value(json_object_get(*image_doc, "name")), reason);
	r = oci_workload_word(workload, workload_word);
	json_decref(workload);
	if (r < 0)
		return ember_error_set(err, EK_INVALID_SPEC,
		    "pass fewer or shorter arguments and environment variables",
		    "the workload is too long for the kernel command line (at most %d bytes "
		    "encoded)", OCI_WORKLOAD_WORD_MAX);
	doc = json_deep_copy(*image_doc);
	if (a->kernel == NULL) {
		/* The kernel, initrd and boot arguments of root's default image. */
		if (kernel_image == NULL || (boot = image_load_any(d, kernel_image, err)) == NULL ||
		    image_doc_owner(boot) != 0 || json_object_get(boot, "kernel") == NULL) {
			json_decref(boot);
			json_decref(doc);
			free(*workload_word);
			*workload_word = NULL;
			ember_error_clear(err);
			return ember_error_set(err, EK_INVALID_SPEC,
			    "set default_image in the daemon config to root's ember-mini image, or "
			    "give --kernel and --initrd",
			    "an OCI image boots with the default image's kernel, and there is none");
		}
		json_object_set(doc, "kernel", json_object_get(boot, "kernel"));
		if (json_object_get(boot, "vmlinux") != NULL)
			json_object_set(doc, "vmlinux", json_object_get(boot, "vmlinux"));
		if (json_object_get(boot, "initrd") != NULL)
			json_object_set(doc, "initrd", json_object_get(boot, "initrd"));
		if (json_object_get(boot, "boot_args") != NULL)
			json_object_set(doc, "boot_args", json_object_get(boot, "boot_args"));
		json_decref(boot);
	}
	json_decref(*image_doc);
	*image_doc = doc;
	return 0;
}

char *
vm_workload_boot_args(const char *args, const char *word)
{
	char *out;

	if (word == NULL)
		return args != NULL ? strdup(args) : NULL;
	if (args == NULL)
		args = "console=ttyS0 reboot=t panic=-1";
	if (asprintf(&out, "%s %s", args, word) < 0)
		return NULL;
	return out;
}

/* The value after "code=" or "signal=" at p: 0..255 / 1..127, or -1. */
static int
exit_value(const char *p, int max)
{
	int v = 0, digits = 0;

	for (; *p >= '0' && *p <= '9' && digits < 4; p++, digits++)
		v = v * 10 + (*p - '0');
	if (digits == 0 || (*p != '\n' && *p != '\r' && *p != '\0') || v > max)
		return -1;
	return v;
}

bool
vm_workload_has(const struct vm *vm)
{
	return vm->rec.boot_args != NULL && strstr(vm->rec.boot_args, "ember.workload=") != NULL;
}

static void
workload_clear(struct vm *vm)
{
	vm->rec.workload_exit = WORKLOAD_EXIT_NONE;
	vm->rec.workload_exit_value = 0;
	vm->rec.workload_exit_source = WORKLOAD_SOURCE_UNKNOWN;
	vm->rec.workload_exit_boot_id[0] = '\0';
}

void
vm_workload_boot_begins(struct vm *vm)
{
	char dir[PATH_MAX], path[PATH_MAX];
	struct stat st;

	workload_clear(vm);
	vm->rec.workload_console_from = 0;
	if (!vm_workload_has(vm))
		return;
	vm_dir(vm->daemon, vm->rec.name, dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/console.log", dir);
	if (lstat(path, &st) == 0 && S_ISREG(st.st_mode))
		vm->rec.workload_console_from = (uint64_t)st.st_size;
}

int
vm_workload_record_agent(struct vm *vm, const char *what, json_int_t value, const char *boot_id,
    struct ember_error *err)
{
	struct ember_error save_err = { 0 };
	bool code = strcmp(what, "code") == 0;

	if ((code && (value < 0 || value > 255)) || (!code && (value < 1 || value > 127)) ||
	    boot_id == NULL || strlen(boot_id) >= sizeof(vm->rec.workload_exit_boot_id) ||
	    strspn(boot_id, "0123456789abcdef-") != strlen(boot_id))
		return ember_error_set(err, EK_BACKEND_ERROR, NULL,
		    "vm %s: the agent reported a malformed workload status", vm->rec.name);
	vm->rec.workload_exit = code ? WORKLOAD_EXIT_CODE : WORKLOAD_EXIT_SIGNAL;
	vm->rec.workload_exit_value = (int)value;
	vm->rec.workload_exit_source = WORKLOAD_SOURCE_AGENT;
	snprintf(vm->rec.workload_exit_boot_id, sizeof(vm->rec.workload_exit_boot_id), "%s",
	    boot_id);
	log_info("vm %s: workload exited with %s %d (from its agent, boot %s)", vm->rec.name,
	    code ? "status" : "signal", (int)value, boot_id[0] ? boot_id : "?");
	if (vm_save(vm, &save_err) < 0)
		log_warnx("vm %s: %s", vm->rec.name, save_err.message);
	return 0;
}

void
vm_workload_collect(struct vm *vm)
{
	char dir[PATH_MAX], path[PATH_MAX], *buf, *line, *last = NULL;
	struct stat st;
	ssize_t n;
	off_t from;
	int fd, v;

	if (!vm_workload_has(vm))
		return;
	if (vm->rec.workload_exit != WORKLOAD_EXIT_NONE &&
	    vm->rec.workload_exit_source == WORKLOAD_SOURCE_AGENT)
		return;	/* this boot's, from the agent */
	workload_clear(vm);
	vm_dir(vm->daemon, vm->rec.name, dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/console.log", dir);
	if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)) < 0)
		return;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (buf = malloc(WORKLOAD_TAIL_BYTES + 1)) ==
	    NULL) {
		close(fd);
		return;
	}
	from = st.st_size > WORKLOAD_TAIL_BYTES ? st.st_size - WORKLOAD_TAIL_BYTES : 0;
	/* Not an earlier boot's lines (a console.log moved aside since is
	 * shorter than where this boot began: all of it is this boot's). */
	if ((uint64_t)st.st_size >= vm->rec.workload_console_from &&
	    (off_t)vm->rec.workload_console_from > from)
		from = (off_t)vm->rec.workload_console_from;
	n = pread(fd, buf, WORKLOAD_TAIL_BYTES, from);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	for (line = buf; (line = strstr(line, WORKLOAD_EXIT_LINE)) != NULL; line++)
		if (line == buf || line[-1] == '\n')
			last = line + strlen(WORKLOAD_EXIT_LINE);
	if (last != NULL && strncmp(last, "code=", 5) == 0 && (v = exit_value(last + 5, 255)) >= 0) {
		vm->rec.workload_exit = WORKLOAD_EXIT_CODE;
		vm->rec.workload_exit_value = v;
	} else if (last != NULL && strncmp(last, "signal=", 7) == 0 &&
	    (v = exit_value(last + 7, 127)) > 0) {
		vm->rec.workload_exit = WORKLOAD_EXIT_SIGNAL;
		vm->rec.workload_exit_value = v;
	}
	if (vm->rec.workload_exit != WORKLOAD_EXIT_NONE) {
		vm->rec.workload_exit_source = WORKLOAD_SOURCE_CONSOLE;
		log_info("vm %s: workload exited with %s %d (its agent did not report it: "
		    "read from the console, which the workload could have written)", vm->rec.name,
		    vm->rec.workload_exit == WORKLOAD_EXIT_CODE ? "status" : "signal",
		    vm->rec.workload_exit_value);
	}
	free(buf);
}
