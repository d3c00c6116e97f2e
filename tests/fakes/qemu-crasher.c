/*
 * A stand-in for qemu-system-x86_64 that fails the way a broken host makes
 * real QEMU fail (for example KVM refusing an MSR on a nested host): it
 * answers --version, accepts emberd's QMP connection on the inherited
 * listening socket, hangs up without a greeting, and aborts a moment later.
 * emberd must report the failed start, clean up, and keep serving.
 *
 * Usage as QEMU: qemu-crasher [QEMU ARGS...]. A VM whose name (-name)
 * contains "exit" makes it exit 1 at once instead, before touching QMP.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* The fd of "-chardev socket,id=qmp,fd=N,...", or -1. */
static int
qmp_fd(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *p = strstr(argv[i], "id=qmp,fd=");
		if (p != NULL)
			return atoi(p + strlen("id=qmp,fd="));
	}
	return -1;
}

/* Whether the -name argument contains word. */
static int
name_has(int argc, char **argv, const char *word)
{
	for (int i = 1; i + 1 < argc; i++)
		if (strcmp(argv[i], "-name") == 0)
			return strstr(argv[i + 1], word) != NULL;
	return 0;
}

int
main(int argc, char **argv)
{
	struct timespec pause = { 0, 300 * 1000 * 1000 };
	int lfd, c;

	if (argc > 1 && strcmp(argv[1], "--version") == 0) {
		printf("QEMU emulator version 7.2.99 (qemu-crasher test double)\n");
		return 0;
	}
	fprintf(stderr, "qemu-crasher: failing as asked\n");
	if (name_has(argc, argv, "exit"))
		return 1;
	lfd = qmp_fd(argc, argv);
	if (lfd >= 0 && (c = accept(lfd, NULL, NULL)) >= 0)
		close(c);	/* QMP: connected, then EOF, no greeting */
	nanosleep(&pause, NULL);
	abort();
}
