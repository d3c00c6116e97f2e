/*
 * Names and socket paths, checked before anything is allocated. The name
 * pattern ^[a-z0-9][a-z0-9_.-]{0,62}$ is coded by hand so there is no regex
 * engine on the request path. The vsock check counts the longest port suffix
 * the hypervisor may append ("_4294967295"), because a path that fits today
 * but not with the suffix fails only when the guest first connects. A kernel
 * command line too long for the guest is otherwise refused by the hypervisor
 * only at boot (Firecracker) or silently cut by the kernel.
 */
#include <sys/socket.h>
#include <sys/un.h>

#include <stdio.h>
#include <string.h>

#include "validate.h"

#define NAME_PATTERN "^[a-z0-9][a-z0-9_.-]{0,62}$"

size_t
sun_path_limit(void)
{
	return sizeof(((struct sockaddr_un *)0)->sun_path) - 1;
}

static bool
name_first_ok(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool
name_rest_ok(char c)
{
	return name_first_ok(c) || c == '_' || c == '.' || c == '-';
}

bool
vm_name_valid(const char *name)
{
	size_t i;

	if (name == NULL || !name_first_ok(name[0]))
		return false;
	for (i = 1; name[i] != '\0'; i++)
		if (i >= VM_NAME_MAX || !name_rest_ok(name[i]))
			return false;
	return true;
}

bool
image_name_valid(const char *name)
{
	return vm_name_valid(name);
}

/* A short printable copy of untrusted text for an error message. */
static void
name_quote(const char *name, char *out, size_t outlen)
{
	size_t i, n = 0;

	for (i = 0; name[i] != '\0' && n + 4 < outlen; i++) {
		unsigned char c = (unsigned char)name[i];

		out[n++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
	}
	if (name[i] != '\0')
		n += (size_t)snprintf(out + n, outlen - n, "...");
	out[n] = '\0';
}

int
vm_name_check(const char *name, struct ember_error *err)
{
	const char *hint = "a VM name must match " NAME_PATTERN;
	char quoted[80], bad[8];
	size_t len, i;
	unsigned char c;

	if (vm_name_valid(name))
		return 0;
	if (name == NULL || name[0] == '\0')
		return ember_error_set(err, EK_INVALID_NAME, hint,
		    "invalid VM name \"\": the name is empty");
	name_quote(name, quoted, sizeof(quoted));
	len = strlen(name);
	if (len > VM_NAME_MAX)
		return ember_error_set(err, EK_INVALID_NAME, hint,
		    "invalid VM name \"%s\": %zu characters, max %d", quoted,
		    len, VM_NAME_MAX);
	if (!name_first_ok(name[0]))
		return ember_error_set(err, EK_INVALID_NAME, hint,
		    "invalid VM name \"%s\": must start with a lowercase letter "
		    "or a digit", quoted);
	for (i = 1; name_rest_ok(name[i]); i++)
		;
	c = (unsigned char)name[i];
	if (c > 0x20 && c < 0x7f && c != '\'' && c != '\\')
		snprintf(bad, sizeof(bad), "'%c'", c);
	else
		snprintf(bad, sizeof(bad), "0x%02x", c);
	return ember_error_set(err, EK_INVALID_NAME, hint,
	    "invalid VM name \"%s\": %s at position %zu is not allowed",
	    quoted, bad, i + 1);
}

int
vsock_path_build(const char *state_dir, const char *name, size_t limit,
    char *out, size_t outlen, struct ember_error *err)
{
	size_t dirlen, len;

	if (state_dir == NULL || name == NULL || out == NULL || outlen == 0)
		return ember_error_set(err, EK_INTERNAL, NULL,
		    "vsock_path_build: missing argument");
	/* "/state/" and "/state" name the same directory. */
	dirlen = strlen(state_dir);
	while (dirlen > 1 && state_dir[dirlen - 1] == '/')
		dirlen--;
	if (dirlen == 1 && state_dir[0] == '/')
		dirlen = 0;
	len = dirlen + strlen("/vms/") + strlen(name) + strlen("/vsock.sock");
	if (len + VSOCK_PORT_SUFFIX_MAX > limit)
		return ember_error_set(err, EK_PATH_TOO_LONG,
		    "use a shorter --state-dir or VM name",
		    "vsock UDS path is too long (%zu bytes with the port "
		    "suffix, max %zu): %.*s/vms/%s/vsock.sock",
		    len + VSOCK_PORT_SUFFIX_MAX, limit, (int)dirlen, state_dir,
		    name);
	if (len >= outlen)
		return ember_error_set(err, EK_INTERNAL, NULL,
		    "vsock_path_build: buffer of %zu bytes is too small", outlen);
	snprintf(out, outlen, "%.*s/vms/%s/vsock.sock", (int)dirlen, state_dir,
	    name);
	return 0;
}

int
socket_path_check(const char *path, size_t limit, struct ember_error *err)
{
	size_t len;

	if (path == NULL || path[0] == '\0')
		return ember_error_set(err, EK_INVALID_SPEC,
		    "give the control socket a path", "socket path is empty");
	len = strlen(path);
	if (len > limit)
		return ember_error_set(err, EK_PATH_TOO_LONG,
		    "use a shorter --socket path",
		    "socket path is too long (%zu bytes, max %zu): %s", len,
		    limit, path);
	return 0;
}

int
kernel_cmdline_check(const char *boot_args, size_t appended, const char *appender,
    struct ember_error *err)
{
	const size_t max = KERNEL_CMDLINE_MAX - 1;	/* without the NUL */
	size_t len, i;

	if (boot_args == NULL)
		return 0;
	for (i = 0; boot_args[i] != '\0'; i++) {
		unsigned char c = (unsigned char)boot_args[i];

		if (c < 0x20 || c > 0x7e)
			return ember_error_set(err, EK_INVALID_SPEC,
			    "a kernel command line is printable ASCII, spaces between parameters",
			    "boot_args has byte 0x%02x at position %zu", c, i + 1);
	}
	len = i;
	if (appended > max || len > max - appended)
		return ember_error_set(err, EK_INVALID_SPEC,
		    appended < max ? "shorten boot_args" : NULL,
		    "boot_args is too long for a kernel command line: %zu bytes, and %s adds "
		    "up to %zu, over the limit of %zu (%d with the NUL); boot_args may have at "
		    "most %zu bytes here", len, appender, appended, max, KERNEL_CMDLINE_MAX,
		    appended < max ? max - appended : 0);
	return 0;
}
