/*
 * Validation of names and socket paths. A VM name must match
 * ^[a-z0-9][a-z0-9_.-]{0,62}$. A VM's vsock socket path plus the longest
 * guest-port suffix ("_4294967295") must fit sun_path; this is checked before
 * any CID, directory or file is created. A kernel command line must be
 * printable ASCII and fit the architecture's limit with what the backend
 * and its hypervisor append.
 */
#ifndef EMBER_VALIDATE_H
#define EMBER_VALIDATE_H

#include <stdbool.h>
#include <stddef.h>
#include "error.h"

#define VM_NAME_MAX 63
#define VSOCK_PORT_SUFFIX_MAX (sizeof("_4294967295") - 1)
/* Bytes of a kernel command line with its NUL: COMMAND_LINE_SIZE on x86,
 * and Firecracker's CMDLINE_MAX_SIZE on x86_64 and aarch64. */
#define KERNEL_CMDLINE_MAX 2048

/* Usable sun_path bytes (without the NUL): 107 on Linux, 103 on macOS. */
size_t sun_path_limit(void);

bool vm_name_valid(const char *name);
/* Same rules for image names. */
bool image_name_valid(const char *name);
/* invalid_name error with a hint naming the pattern; returns 0 when valid. */
int vm_name_check(const char *name, struct ember_error *err);

/* Fills out with "<state_dir>/vms/<name>/vsock.sock". Returns 0, or -1 with
 * path_too_long naming the path, its length (with the port suffix) and the
 * limit, and suggesting a shorter state directory or name. */
int vsock_path_build(const char *state_dir, const char *name, size_t limit,
    char *out, size_t outlen, struct ember_error *err);
/* Checks boot_args as the start of a kernel command line to which
 * appender ("Firecracker", "QEMU") adds up to appended bytes: printable ASCII
 * only, and the whole line plus its NUL within KERNEL_CMDLINE_MAX. 0, or -1
 * with invalid_spec giving the sizes and how far to shorten it. */
int kernel_cmdline_check(const char *boot_args, size_t appended, const char *appender,
    struct ember_error *err);
/* Checks that a Unix socket path fits (used for the control socket). */
int socket_path_check(const char *path, size_t limit, struct ember_error *err);

#endif
