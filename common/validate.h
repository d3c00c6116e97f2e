/*
 * Validation of names and socket paths. A VM name must match
 * ^[a-z0-9][a-z0-9_.-]{0,62}$. A VM's vsock socket path plus the longest
 * guest-port suffix ("_4294967295") must fit sun_path; this is checked before
 * any CID, directory or file is created.
 */
#ifndef EMBER_VALIDATE_H
#define EMBER_VALIDATE_H

#include <stdbool.h>
#include <stddef.h>
#include "error.h"

#define VM_NAME_MAX 63
#define VSOCK_PORT_SUFFIX_MAX (sizeof("_4294967295") - 1)

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
/* Checks that a Unix socket path fits (used for the control socket). */
int socket_path_check(const char *path, size_t limit, struct ember_error *err);

#endif
