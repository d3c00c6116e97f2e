/*
 * Finding hypervisor binaries, reading their versions and checking the KVM
 * device (see probe.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/kvm.h>

#include "probe.h"

_Static_assert(PROBE_KVM_API_VERSION == KVM_API_VERSION, "KVM's stable API version");

extern char **environ;

static int
is_executable(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

int
probe_find_binary(const char *configured, const char *name, char *out, size_t len)
{
	const char *want = configured != NULL ? configured : name;
	const char *path = getenv("PATH");
	char *copy, *dir, *save = NULL;

	if (strchr(want, '/') != NULL) {
		if (!is_executable(want))
			return access(want, F_OK) == 0 ? -EACCES : -ENOENT;
		snprintf(out, len, "%s", want);
		return 0;
	}
	copy = strdup(path != NULL ? path : "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin");
	if (copy == NULL)
		return -ENOMEM;
	for (dir = strtok_r(copy, ":", &save); dir != NULL; dir = strtok_r(NULL, ":", &save)) {
		snprintf(out, len, "%s/%s", dir[0] ? dir : ".", want);
		if (is_executable(out)) {
			free(copy);
			return 0;
		}
	}
	free(copy);
	out[0] = '\0';
	return -ENOENT;
}

int
probe_binary_version(const char *binary, char *out, size_t len)
{
	char *const argv[] = { (char *)binary, "--version", NULL };
	posix_spawn_file_actions_t fa;
	char buf[512];
	size_t got = 0;
	int pipefd[2], status, r;
	pid_t pid;
	struct timespec start, now;

	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return -errno;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, pipefd[1], STDOUT_FILENO);
	posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
	r = posix_spawn(&pid, binary, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(pipefd[1]);
	if (r != 0) {
		close(pipefd[0]);
		return -r;
	}
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		struct pollfd pfd = { .fd = pipefd[0], .events = POLLIN };
		ssize_t n;

		clock_gettime(CLOCK_MONOTONIC, &now);
		long left = 5000 - ((now.tv_sec - start.tv_sec) * 1000 +
		    (now.tv_nsec - start.tv_nsec) / 1000000);
		if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
			break;
		n = read(pipefd[0], buf + got, sizeof(buf) - 1 - got);
		if (n <= 0)
			break;
		got += (size_t)n;
		if (got == sizeof(buf) - 1)
			break;
	}
	close(pipefd[0]);
	kill(pid, SIGKILL);	/* harmless when it already exited */
	waitpid(pid, &status, 0);
	buf[got] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	if (buf[0] == '\0')
		return -EIO;
	snprintf(out, len, "%s", buf);
	return 0;
}

int
probe_kvm_device(const char *path, int *version)
{
	struct stat before, after;
	int fd, v, r = 0;

	*version = -1;
	/* Look before opening: opening an arbitrary device can have effects. */
	if (stat(path, &before) < 0)
		return -errno;
	if (!S_ISCHR(before.st_mode))
		return -ENODEV;
	fd = open(path, O_RDWR | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &after) < 0)
		r = -errno;
	else if (!S_ISCHR(after.st_mode) || after.st_rdev != before.st_rdev)
		r = -ENODEV;
	else if ((v = ioctl(fd, KVM_GET_API_VERSION, 0)) < 0)
		r = -errno;
	else if ((*version = v) != PROBE_KVM_API_VERSION)
		r = -EPROTO;
	close(fd);
	return r;
}
