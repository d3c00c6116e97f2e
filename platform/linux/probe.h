/*
 * Helpers backends use to find and identify their hypervisor binaries and
 * check the KVM device they need.
 * A probe blocks (it runs `binary --version`, up to 5 s): it runs before
 * the loop serves at startup, and on SIGHUP in a child process
 * (child_call_start) that hands its backend_info back to the loop; it is
 * never done per request.
 */
#ifndef EMBER_PROBE_H
#define EMBER_PROBE_H

#include <stddef.h>

/* configured (a path or a bare name) or name, resolved through PATH into
 * out. 0 or -ENOENT / -EACCES. */
int probe_find_binary(const char *configured, const char *name, char *out, size_t len);
/* First line of `binary --version` (stdout), with a 5 s deadline. 0 or -errno. */
int probe_binary_version(const char *binary, char *out, size_t len);
/* The stable KVM API every KVM since Linux 2.6.22 reports. */
#define PROBE_KVM_API_VERSION	12

/* path is a character device that opens read-write and answers
 * KVM_GET_API_VERSION with the stable API version (12). 0, -errno from
 * stat/open/ioctl, -ENODEV when it is not a character device (or changed
 * between stat and open), -EPROTO for another API version (in *version). */
int probe_kvm_device(const char *path, int *version);

#endif
