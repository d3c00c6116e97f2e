/*
 * Helpers backends use to find and identify their hypervisor binaries.
 * Probing runs at startup and on SIGHUP only, so running `binary --version`
 * synchronously there is acceptable; it is never done per request.
 */
#ifndef EMBER_PROBE_H
#define EMBER_PROBE_H

#include <stddef.h>

/* configured (a path or a bare name) or name, resolved through PATH into
 * out. 0 or -ENOENT / -EACCES. */
int probe_find_binary(const char *configured, const char *name, char *out, size_t len);
/* First line of `binary --version` (stdout), with a 5 s deadline. 0 or -errno. */
int probe_binary_version(const char *binary, char *out, size_t len);

#endif
