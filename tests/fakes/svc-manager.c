/*
 * svc-manager: the smallest service manager the fd-store tests need. It
 * binds a datagram NOTIFY_SOCKET, runs one service (argv after "--") with
 * NOTIFY_SOCKET set, reads its notifications (READY=1, FDSTORE=1 with
 * FDNAME= and the fds attached, FDSTOREREMOVE=1 with FDNAME=) from the
 * service's pid only, and keeps the stored fds, at most --max (the
 * FileDescriptorStoreMax= of a unit; further fds are closed and counted).
 * Like systemd, it keeps every fd stored under a name (FDSTOREREMOVE drops
 * them all) and keeps an open file once: an fd that is the same open file
 * as one already stored is closed and counted as a duplicate.
 * When the service dies it is started again with the stored fds as
 * LISTEN_FDS/LISTEN_FDNAMES, LISTEN_PID set to the child's pid between
 * fork and exec. SIGUSR1 kills the service with SIGKILL (then it restarts);
 * SIGTERM terminates the service and exits.
 *
 * Progress for the test goes to --status FILE, rewritten on each event:
 *   pid=<service pid> ready=<0|1> starts=<n> stored=<fds held>
 *   refused=<fds over the limit> removed=<FDSTOREREMOVE count>
 *   duplicates=<fds dropped as already stored>
 * Usage: svc-manager --notify PATH --status FILE [--max N] -- CMD ARGS...
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <linux/kcmp.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define NAME_MAX_LEN	255
#define MSG_MAX		4096
#define FDS_PER_MSG	16

struct stored {
	char name[NAME_MAX_LEN + 1];
	int fd;
};

static struct stored *store;
static size_t nstored, max_stored = 4096;
static unsigned long refused, removed, starts, duplicates;
static pid_t child = -1;
static int ready;
static const char *status_path;

static void
write_status(void)
{
	char tmp[4096];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", status_path);
	if ((f = fopen(tmp, "w")) == NULL)
		return;
	fprintf(f, "pid=%d ready=%d starts=%lu stored=%zu refused=%lu removed=%lu "
	    "duplicates=%lu\n", (int)child, ready, starts, nstored, refused, removed, duplicates);
	fclose(f);
	rename(tmp, status_path);
}

static void
store_remove(const char *name)
{
	for (size_t i = 0; i < nstored;) {
		if (strcmp(store[i].name, name) == 0) {
			close(store[i].fd);
			store[i] = store[--nstored];
		} else
			i++;
	}
}

static void
store_add(const char *name, int fd)
{
	if (nstored == max_stored) {
		close(fd);
		refused++;
		return;
	}
	/* systemd's same_fd(): the same open file description (kcmp). */
	for (size_t i = 0; i < nstored; i++)
		if (syscall(SYS_kcmp, getpid(), getpid(), KCMP_FILE, store[i].fd, fd) == 0) {
			close(fd);
			duplicates++;
			return;
		}
	snprintf(store[nstored].name, sizeof(store[nstored].name), "%s", name);
	store[nstored++].fd = fd;
}

/* The value of KEY= in a newline-separated message, or NULL. */
static const char *
field(const char *msg, const char *key, char *buf, size_t len)
{
	size_t kl = strlen(key);

	for (const char *p = msg; p != NULL && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
		if (strncmp(p, key, kl) == 0) {
			snprintf(buf, len, "%.*s", (int)strcspn(p + kl, "\n"), p + kl);
			return buf;
		}
	}
	return NULL;
}

static void
read_notify(int sock)
{
	char msg[MSG_MAX + 1], name[NAME_MAX_LEN + 2], v[16];
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(FDS_PER_MSG * sizeof(int)) + CMSG_SPACE(sizeof(struct ucred))];
	} cbuf;
	struct iovec iov = { msg, MSG_MAX };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf.buf,
	    .msg_controllen = sizeof(cbuf.buf) };
	int fds[FDS_PER_MSG], nfds = 0;
	struct ucred cred = { 0 };
	bool have_cred = false;
	ssize_t n = recvmsg(sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

	if (n < 0)
		return;
	msg[n] = '\0';
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
		if (cm->cmsg_level != SOL_SOCKET)
			continue;
		if (cm->cmsg_type == SCM_RIGHTS) {
			int k = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));

			for (int i = 0; i < k; i++) {
				int fd;

				memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
				if (nfds < FDS_PER_MSG)
					fds[nfds++] = fd;
				else
					close(fd);
			}
		} else if (cm->cmsg_type == SCM_CREDENTIALS) {
			memcpy(&cred, CMSG_DATA(cm), sizeof(cred));
			have_cred = true;
		}
	}
	/* NotifyAccess=main: anything but the service itself is ignored. */
	if (!have_cred || cred.pid != child) {
		for (int i = 0; i < nfds; i++)
			close(fds[i]);
		return;
	}
	if (field(msg, "READY=", v, sizeof(v)) && strcmp(v, "1") == 0)
		ready = 1;
	if (field(msg, "FDSTORE=", v, sizeof(v)) && strcmp(v, "1") == 0) {
		if (!field(msg, "FDNAME=", name, sizeof(name)) || strlen(name) > NAME_MAX_LEN ||
		    strchr(name, ':') != NULL)
			snprintf(name, sizeof(name), "stored");
		for (int i = 0; i < nfds; i++)
			store_add(name, fds[i]);
		nfds = 0;
	}
	if (field(msg, "FDSTOREREMOVE=", v, sizeof(v)) && strcmp(v, "1") == 0 &&
	    field(msg, "FDNAME=", name, sizeof(name))) {
		store_remove(name);
		removed++;
	}
	for (int i = 0; i < nfds; i++)
		close(fds[i]);
	write_status();
}

static void
start_child(char **argv, const char *notify_path)
{
	pid_t pid;

	ready = 0;
	pid = fork();
	if (pid < 0) {
		perror("svc-manager: fork");
		exit(1);
	}
	if (pid == 0) {
		char num[32], *names;
		size_t len = 1;
		sigset_t none;

		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		for (size_t i = 0; i < nstored; i++)
			len += strlen(store[i].name) + 1;
		names = calloc(1, len);
		/* The stored fds become 3, 4, ...: first out of the way. */
		for (size_t i = 0; i < nstored; i++)
			store[i].fd = fcntl(store[i].fd, F_DUPFD_CLOEXEC, (int)(3 + nstored + 64));
		for (size_t i = 0; i < nstored; i++) {
			dup2(store[i].fd, (int)(3 + i));
			if (i > 0)
				strcat(names, ":");
			strcat(names, store[i].name);
		}
		unsetenv("LISTEN_FDS");
		unsetenv("LISTEN_FDNAMES");
		unsetenv("LISTEN_PID");
		if (nstored > 0) {
			snprintf(num, sizeof(num), "%zu", nstored);
			setenv("LISTEN_FDS", num, 1);
			setenv("LISTEN_FDNAMES", names, 1);
			snprintf(num, sizeof(num), "%d", (int)getpid());
			setenv("LISTEN_PID", num, 1);
		}
		setenv("NOTIFY_SOCKET", notify_path, 1);
		execvp(argv[0], argv);
		_exit(127);
	}
	child = pid;
	starts++;
	write_status();
}

int
main(int argc, char **argv)
{
	const char *notify_path = NULL;
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int i, sock, sfd, one = 1;
	sigset_t mask;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--notify") == 0 && i + 1 < argc)
			notify_path = argv[++i];
		else if (strcmp(argv[i], "--status") == 0 && i + 1 < argc)
			status_path = argv[++i];
		else if (strcmp(argv[i], "--max") == 0 && i + 1 < argc)
			max_stored = strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--") == 0) {
			i++;
			break;
		} else
			break;
	}
	if (notify_path == NULL || status_path == NULL || i >= argc ||
	    strlen(notify_path) >= sizeof(sun.sun_path)) {
		fprintf(stderr, "usage: svc-manager --notify PATH --status FILE [--max N] -- CMD...\n");
		return 2;
	}
	store = calloc(max_stored + 1, sizeof(*store));
	sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	strcpy(sun.sun_path, notify_path);
	unlink(notify_path);
	if (store == NULL || sock < 0 || bind(sock, (struct sockaddr *)&sun, sizeof(sun)) < 0 ||
	    setsockopt(sock, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) < 0) {
		perror("svc-manager: notify socket");
		return 1;
	}
	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigaddset(&mask, SIGUSR1);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	sfd = signalfd(-1, &mask, SFD_CLOEXEC);
	start_child(&argv[i], notify_path);
	for (;;) {
		struct pollfd pfd[2] = { { sock, POLLIN, 0 }, { sfd, POLLIN, 0 } };
		struct signalfd_siginfo si;

		if (poll(pfd, 2, -1) < 0 && errno != EINTR)
			return 1;
		if (pfd[0].revents & POLLIN)
			read_notify(sock);
		if (!(pfd[1].revents & POLLIN) || read(sfd, &si, sizeof(si)) != sizeof(si))
			continue;
		if (si.ssi_signo == SIGUSR1 && child > 0) {
			kill(child, SIGKILL);
		} else if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
			if (child > 0) {
				kill(child, SIGTERM);
				waitpid(child, NULL, 0);
			}
			unlink(notify_path);
			return 0;
		} else if (si.ssi_signo == SIGCHLD) {
			pid_t p;
			int st;

			while ((p = waitpid(-1, &st, WNOHANG)) > 0) {
				if (p != child)
					continue;
				/* Notifications it sent before dying still count. */
				while (poll(pfd, 1, 0) > 0 && (pfd[0].revents & POLLIN))
					read_notify(sock);
				start_child(&argv[i], notify_path);
			}
		}
	}
}
