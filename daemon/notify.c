/*
 * sd_notify(3) and sd_listen_fds(3), written from their documented protocol
 * (see notify.h). A notification is one AF_UNIX datagram of "KEY=value"
 * lines sent to the address in $NOTIFY_SOCKET: a path, or "@name" for the
 * abstract namespace. The manager learns who sent it from the kernel's
 * credentials, so nothing else is needed. Sends never block: the socket is
 * non-blocking and a manager that cannot keep up loses a ping, not emberd.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "fd-keep.h"
#include "log.h"
#include "notify.h"

#define LISTEN_FDS_START 3	/* SD_LISTEN_FDS_START */
#define NOTIFY_MAX 4096		/* longest datagram we send */

struct notify {
	struct event_base *base;
	int fd;				/* datagram socket, -1 without a manager */
	struct sockaddr_un addr;
	socklen_t addrlen;
	struct event *ev_watchdog;	/* NULL without a watchdog */
	uint64_t watchdog_usec;
	notify_status_fn status_fn;
	void *status_ctx;
	char last_status[256];
	char *env_socket, *env_watchdog_usec;	/* for an exec of our successor */
};

/* Parses a decimal unsigned value; 0 or -EINVAL. */
static int
parse_u64(const char *s, uint64_t *v)
{
	char *end;
	unsigned long long x;

	if (s == NULL || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	x = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return -EINVAL;
	*v = x;
	return 0;
}

/* The address in $NOTIFY_SOCKET; 0, or -EINVAL for one we cannot use. */
static int
notify_address(const char *s, struct sockaddr_un *sun, socklen_t *len)
{
	size_t n = strlen(s);

	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	if ((s[0] != '/' && s[0] != '@') || n < 2 || n >= sizeof(sun->sun_path))
		return -EINVAL;
	memcpy(sun->sun_path, s, n);
	if (s[0] == '@') {
		/* Abstract: a leading NUL, and the length counts exactly the
		 * name's bytes (no terminator). */
		sun->sun_path[0] = '\0';
		*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
	} else
		*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
	return 0;
}

static void
notify_refresh_status(struct notify *n, bool force)
{
	char status[sizeof(n->last_status)];

	if (n->status_fn == NULL || n->fd < 0)
		return;
	status[0] = '\0';
	n->status_fn(n->status_ctx, status, sizeof(status));
	status[strcspn(status, "\n")] = '\0';	/* one assignment per line */
	if (!force && strcmp(status, n->last_status) == 0)
		return;
	if (notify_send(n, "STATUS=%s", status) == 0)
		memcpy(n->last_status, status, sizeof(status));
}

static void
on_watchdog(evutil_socket_t fd, short what, void *arg)
{
	struct notify *n = arg;

	notify_send(n, "WATCHDOG=1");
	notify_refresh_status(n, false);
}

/* WATCHDOG_USEC asks for pings; WATCHDOG_PID, when set, says for whom. */
static void
notify_setup_watchdog(struct notify *n, const char *usec_s, const char *pid_s)
{
	uint64_t usec, pid;
	struct timeval tv;

	if (usec_s == NULL)
		return;
	if (parse_u64(usec_s, &usec) < 0 || usec == 0) {
		log_warnx("ignoring WATCHDOG_USEC=\"%s\": not a positive number of "
		    "microseconds", usec_s);
		return;
	}
	if (pid_s != NULL) {
		if (parse_u64(pid_s, &pid) < 0) {
			log_warnx("ignoring WATCHDOG_PID=\"%s\": not a pid", pid_s);
			return;
		}
		if (pid != (uint64_t)getpid()) {
			log_debug("watchdog is for pid %s, not us", pid_s);
			return;
		}
	}
	if (n->fd < 0) {
		log_warnx("WATCHDOG_USEC is set but NOTIFY_SOCKET is not; no "
		    "watchdog pings will be sent");
		return;
	}
	n->watchdog_usec = usec;
	n->ev_watchdog = event_new(n->base, -1, EV_PERSIST, on_watchdog, n);
	if (n->ev_watchdog == NULL) {
		log_warnx("cannot create the watchdog timer");
		return;
	}
	/* Half the interval, as sd_watchdog_enabled(3) recommends. */
	usec /= 2;
	if (usec == 0)
		usec = 1;
	tv.tv_sec = (time_t)(usec / 1000000);
	tv.tv_usec = (suseconds_t)(usec % 1000000);
	evtimer_add(n->ev_watchdog, &tv);
	log_info("watchdog: pinging the service manager every %" PRIu64 " ms",
	    usec / 1000);
}

struct notify *
notify_new(struct event_base *base, notify_status_fn status, void *ctx)
{
	struct notify *n = calloc(1, sizeof(*n));
	const char *sock, *wd_usec, *wd_pid;
	char *usec_copy = NULL, *pid_copy = NULL;

	if (n == NULL)
		return NULL;
	n->base = base;
	n->fd = -1;
	n->status_fn = status;
	n->status_ctx = ctx;

	sock = getenv("NOTIFY_SOCKET");
	if (sock != NULL && sock[0] != '\0') {
		if (notify_address(sock, &n->addr, &n->addrlen) < 0)
			log_warnx("ignoring NOTIFY_SOCKET=\"%s\": not a socket path or "
			    "@abstract name", sock);
		else if ((n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
		    0)) < 0)
			log_warn("cannot create a socket for NOTIFY_SOCKET");
		else
			log_debug("notify: service manager at %s", sock);
	}
	wd_usec = getenv("WATCHDOG_USEC");
	wd_pid = getenv("WATCHDOG_PID");
	if (wd_usec != NULL)
		usec_copy = strdup(wd_usec);
	if (wd_pid != NULL)
		pid_copy = strdup(wd_pid);
	/* Children (hypervisors) must not talk to the manager as us. */
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
	notify_setup_watchdog(n, usec_copy, pid_copy);
	free(usec_copy);
	free(pid_copy);
	return n;
}

void
notify_free(struct notify *n)
{
	if (n == NULL)
		return;
	if (n->ev_watchdog != NULL)
		event_free(n->ev_watchdog);
	if (n->fd >= 0)
		close(n->fd);
	free(n->env_socket);
	free(n->env_watchdog_usec);
	free(n);
}

bool
notify_enabled(const struct notify *n)
{
	return n != NULL && n->fd >= 0;
}

int
notify_send(struct notify *n, const char *fmt, ...)
{
	char buf[NOTIFY_MAX];
	va_list ap;
	int len;
	ssize_t r;
	int flags = 0;

	if (!notify_enabled(n))
		return 0;
	va_start(ap, fmt);
	len = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (len < 0 || (size_t)len >= sizeof(buf))
		return -EMSGSIZE;
#ifdef MSG_NOSIGNAL
	flags |= MSG_NOSIGNAL;
#endif
	do
		r = sendto(n->fd, buf, (size_t)len, flags, (struct sockaddr *)&n->addr,
		    n->addrlen);
	while (r < 0 && errno == EINTR);
	if (r < 0) {
		int e = errno;

		/* A lost ping is harmless; a lost READY=1 shows up as a
		 * start-up timeout in the manager, so say why here. */
		log_warnx("cannot notify the service manager (%.*s): %s",
		    (int)strcspn(buf, "\n"), buf, strerror(e));
		return -e;
	}
	log_debug("notify: %.*s", (int)strcspn(buf, "\n"), buf);
	return 0;
}

void
notify_ready(struct notify *n)
{
	if (!notify_enabled(n))
		return;
	notify_send(n, "READY=1");
	notify_refresh_status(n, true);
}

void
notify_reloading(struct notify *n)
{
	struct timespec ts;
	uint64_t usec = 0;

	if (!notify_enabled(n))
		return;
	if (clock_gettime(CLOCK_MONOTONIC, &ts) == 0)
		usec = (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
	notify_send(n, "RELOADING=1\nMONOTONIC_USEC=%" PRIu64 "\nSTATUS=reloading the configuration",
	    usec);
	n->last_status[0] = '\0';
}

void
notify_stopping(struct notify *n, const char *why)
{
	if (!notify_enabled(n))
		return;
	notify_send(n, "STOPPING=1\nSTATUS=%s", why);
	/* Keep the stopping status: later pings must not overwrite it. */
	n->status_fn = NULL;
}

/* Whether fd is a listening AF_UNIX stream socket; 0 or an error. */
static int
check_listener(int fd, struct ember_error *err)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int type = 0, listening = 0;
	socklen_t ol = sizeof(type);

	if (fcntl(fd, F_GETFD) < 0)
		return ember_error_set(err, EK_IO, "check the socket unit",
		    "socket activation: fd %d is not open", fd);
	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return ember_error_set(err, EK_IO, "pass a ListenStream= Unix socket",
		    "socket activation: fd %d is not a socket: %s", fd, strerror(errno));
	if (ss.ss_family != AF_UNIX)
		return ember_error_set(err, EK_IO, "pass a ListenStream= Unix socket",
		    "socket activation: fd %d is not a Unix socket (family %d)", fd,
		    (int)ss.ss_family);
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &ol) < 0 || type != SOCK_STREAM)
		return ember_error_set(err, EK_IO, "use ListenStream=, not ListenDatagram=",
		    "socket activation: fd %d is not a stream socket", fd);
	ol = sizeof(listening);
	if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &ol) < 0 || !listening)
		return ember_error_set(err, EK_IO, "set Accept=no in the socket unit",
		    "socket activation: fd %d is not listening (an accepted connection?)", fd);
	return 0;
}

char *
notify_socket_path(int fd)
{
	struct sockaddr_un sun;
	socklen_t len = sizeof(sun);
	size_t n;

	memset(&sun, 0, sizeof(sun));
	if (getsockname(fd, (struct sockaddr *)&sun, &len) < 0 || sun.sun_family != AF_UNIX ||
	    len <= offsetof(struct sockaddr_un, sun_path) || sun.sun_path[0] == '\0')
		return NULL;
	n = len - offsetof(struct sockaddr_un, sun_path);
	if (n > sizeof(sun.sun_path))
		n = sizeof(sun.sun_path);
	return strndup(sun.sun_path, n);
}

/* ---- the fd store ---- */

/*
 * A burst of store updates (a VM's device: about a dozen datagrams) can
 * exceed the manager's receive queue (net.unix.max_dgram_qlen, often 10),
 * and a lost FDSTOREREMOVE leaves a stale fd in the store. So the channel
 * is a connected socket, whose writability follows the manager's queue,
 * and what does not fit waits in a bounded queue, in order, sent when the
 * socket is writable; never blocking the loop. Before the loop exists
 * (start-up) and before an exec or exit, the queue is flushed with a
 * deadline instead.
 */
#define FDSTORE_QUEUE_MAX	8192
#define FDSTORE_FLUSH_MS	2000

struct fdstore_msg {
	char	*text;
	int	 fd;		/* our copy, -1 for none */
};

struct fdstore_queue {
	struct fdstore_msg	*m;
	size_t			 head, len;
	struct event		*wev;
};

static struct fdstore_queue fsq;

struct notify *
notify_fdstore_new(void)
{
	const char *sock = getenv("NOTIFY_SOCKET"), *wd = getenv("WATCHDOG_USEC");
	struct notify *n;

	if (sock == NULL || sock[0] == '\0' || (n = calloc(1, sizeof(*n))) == NULL)
		return NULL;
	n->fd = -1;
	if (notify_address(sock, &n->addr, &n->addrlen) < 0 ||
	    (n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0 ||
	    connect(n->fd, (struct sockaddr *)&n->addr, n->addrlen) < 0 ||
	    (n->env_socket = strdup(sock)) == NULL ||
	    (fsq.m = calloc(FDSTORE_QUEUE_MAX, sizeof(*fsq.m))) == NULL) {
		notify_free(n);
		return NULL;
	}
	if (wd != NULL)
		n->env_watchdog_usec = strdup(wd);
	return n;
}

/* One datagram, with fd attached when >= 0: 0, -EAGAIN, or -errno. */
static int
send_with_fd(struct notify *n, const char *text, int fd)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int))];
	} cbuf;
	struct iovec iov = { .iov_base = (void *)text, .iov_len = strlen(text) };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	ssize_t r;

	if (fd >= 0) {
		struct cmsghdr *cm;

		memset(&cbuf, 0, sizeof(cbuf));
		msg.msg_control = cbuf.buf;
		msg.msg_controllen = sizeof(cbuf.buf);
		cm = CMSG_FIRSTHDR(&msg);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	}
	do
		r = sendmsg(n->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
	while (r < 0 && errno == EINTR);
	return r < 0 ? -errno : 0;
}

static void
queue_pop(void)
{
	struct fdstore_msg *m = &fsq.m[fsq.head];

	free(m->text);
	if (m->fd >= 0)
		close(m->fd);
	m->text = NULL;
	m->fd = -1;
	fsq.head = (fsq.head + 1) % FDSTORE_QUEUE_MAX;
	fsq.len--;
}

/* Sends what is queued while the manager takes it; 0, -EAGAIN, -errno. */
static int
queue_drain(struct notify *n)
{
	while (fsq.len > 0) {
		struct fdstore_msg *m = &fsq.m[fsq.head];
		int r = send_with_fd(n, m->text, m->fd);

		if (r == -EAGAIN)
			return r;
		if (r < 0)
			log_warnx("service manager fd store (%.*s): %s",
			    (int)strcspn(m->text, "\n"), m->text, strerror(-r));
		queue_pop();
	}
	return 0;
}

static void
on_writable(evutil_socket_t fd, short what, void *arg)
{
	if (queue_drain(arg) == 0)
		event_del(fsq.wev);
}

/* Waits for the queue to empty, at most ms (no loop needed). */
static void
queue_flush_blocking(struct notify *n, int ms)
{
	struct timespec t0, t;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (queue_drain(n) == -EAGAIN) {
		struct pollfd pfd = { n->fd, POLLOUT, 0 };
		long spent;

		clock_gettime(CLOCK_MONOTONIC, &t);
		spent = (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
		if (spent >= ms) {
			log_warnx("the service manager did not take %zu fd store updates "
			    "within %d ms", fsq.len, ms);
			return;
		}
		poll(&pfd, 1, (int)(ms - spent));
	}
}

/* Queues (or sends at once) one update; fd is copied. */
static int
fdstore_send(struct notify *n, const char *text, int fd)
{
	struct fdstore_msg *m;
	int r;

	if (fsq.len == 0 && (r = send_with_fd(n, text, fd)) != -EAGAIN)
		return r;
	if (fsq.len == FDSTORE_QUEUE_MAX)
		return -ENOBUFS;
	m = &fsq.m[(fsq.head + fsq.len) % FDSTORE_QUEUE_MAX];
	m->fd = fd >= 0 ? fcntl(fd, F_DUPFD_CLOEXEC, 3) : -1;
	if ((m->text = strdup(text)) == NULL || (fd >= 0 && m->fd < 0)) {
		free(m->text);
		m->text = NULL;
		if (m->fd >= 0)
			close(m->fd);
		return -ENOMEM;
	}
	fsq.len++;
	if (fsq.wev != NULL)
		event_add(fsq.wev, NULL);
	else
		queue_flush_blocking(n, FDSTORE_FLUSH_MS);	/* start-up: no loop yet */
	return 0;
}

int
notify_fdstore_attach(struct notify *n, struct event_base *base)
{
	if (n == NULL)
		return 0;
	fsq.wev = event_new(base, n->fd, EV_WRITE | EV_PERSIST, on_writable, n);
	return fsq.wev != NULL ? 0 : -ENOMEM;
}

void
notify_fdstore_flush(struct notify *n)
{
	if (n == NULL)
		return;
	if (fsq.wev != NULL)
		event_del(fsq.wev);
	queue_flush_blocking(n, FDSTORE_FLUSH_MS);
	while (fsq.len > 0)
		queue_pop();
	if (fsq.wev != NULL)
		event_free(fsq.wev);
	fsq.wev = NULL;
}

int
notify_store_fd(void *ctx, const char *name, int fd)
{
	struct notify *n = ctx;
	char text[64 + FD_KEEP_NAME_MAX];
	int r;

	snprintf(text, sizeof(text), "FDSTORE=1\nFDNAME=%s", name);
	if ((r = fdstore_send(n, text, fd)) < 0)
		log_warnx("cannot hand %s to the service manager's fd store: %s", name,
		    strerror(-r));
	else
		log_debug("notify: FDSTORE %s (fd %d)", name, fd);
	return r;
}

void
notify_remove_fd(void *ctx, const char *name)
{
	struct notify *n = ctx;
	char text[64 + FD_KEEP_NAME_MAX];
	int r;

	snprintf(text, sizeof(text), "FDSTOREREMOVE=1\nFDNAME=%s", name);
	if ((r = fdstore_send(n, text, -1)) < 0)
		log_warnx("cannot remove %s from the service manager's fd store: %s", name,
		    strerror(-r));
}

void
notify_export_env(const struct notify *n)
{
	char pid[32];

	if (n == NULL || n->env_socket == NULL)
		return;
	setenv("NOTIFY_SOCKET", n->env_socket, 1);
	if (n->env_watchdog_usec != NULL) {
		snprintf(pid, sizeof(pid), "%d", (int)getpid());
		setenv("WATCHDOG_USEC", n->env_watchdog_usec, 1);
		setenv("WATCHDOG_PID", pid, 1);
	}
}

/* The i-th name of LISTEN_FDNAMES ("" when absent). */
static void
fd_name(const char *names, uint64_t i, char *buf, size_t len)
{
	const char *p = names;

	buf[0] = '\0';
	if (names == NULL)
		return;
	for (uint64_t k = 0; k < i; k++) {
		p = strchr(p, ':');
		if (p == NULL)
			return;
		p++;
	}
	snprintf(buf, len, "%.*s", (int)strcspn(p, ":"), p);
}

int
notify_take_fds(struct ember_error *err)
{
	const char *pid_s = getenv("LISTEN_PID"), *fds_s = getenv("LISTEN_FDS");
	const char *names = getenv("LISTEN_FDNAMES");
	uint64_t pid, nfds, kept = 0;
	int control = -1;

	if (pid_s == NULL && fds_s == NULL)
		return -1;
	if (parse_u64(pid_s, &pid) < 0 || pid != (uint64_t)getpid()) {
		log_debug("ignoring LISTEN_FDS: LISTEN_PID is %s, we are %d",
		    pid_s ? pid_s : "unset", (int)getpid());
		goto out;
	}
	if (parse_u64(fds_s, &nfds) < 0 || nfds > FD_KEEP_MAX + 16) {
		ember_error_set(err, EK_IO, "check the socket unit",
		    "LISTEN_FDS=\"%s\" is not a count (at most %d)", fds_s ? fds_s : "",
		    FD_KEEP_MAX + 16);
		goto out;
	}
	for (uint64_t i = 0; i < nfds; i++) {
		int fd = LISTEN_FDS_START + (int)i, flags = fcntl(fd, F_GETFD);
		char name[FD_KEEP_NAME_MAX + 2];
		struct ember_error lerr = { 0 };

		if (flags < 0)
			continue;
		/* Ours now: none of them may leak into a hypervisor. */
		fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
		fd_name(names, i, name, sizeof(name));
		if (strncmp(name, "vsock/", 6) == 0) {
			if (fd_keep_inherit(name, fd) == 0)
				kept++;
			continue;
		}
		if (control < 0) {
			/* The control socket: "control" across our exec, or
			 * the socket unit's (named after it, or unnamed).
			 * Only plain socket activation (no names) makes an
			 * unusable fd 3 fatal; a stale store entry must not. */
			if (check_listener(fd, names == NULL && i == 0 ? err : &lerr) == 0) {
				control = fd;
				continue;
			}
		}
		log_warnx("closing inherited fd %d (\"%s\"): not one emberd knows", fd, name);
		close(fd);
	}
	if (kept > 0)
		log_info("%" PRIu64 " fds handed over by the previous emberd", kept);
	if (control >= 0 && ember_error_is_set(err))
		memset(err, 0, sizeof(*err));
out:
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	return control;
}
