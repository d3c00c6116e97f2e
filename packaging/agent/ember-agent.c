/*
 * ember-agent: ember's guest agent, a static program that the ember-mini
 * image's /init starts (and that any guest can run as a service). This file
 * is its transport and command line; agent.c answers the requests.
 *
 * Default mode: one single-threaded poll() loop owns every socket. It
 * listens on vsock port 1024 for the agent protocol (one JSON request per
 * line, one reply line each, many connections at once) and, for every
 * ember.echo=PORT[,PORT...] on the kernel command line, runs a byte-for-byte
 * echo service on that vsock port (a diagnostic for tests). Memory per
 * connection is bounded: a request line may be at most AGENT_MAX_LINE
 * bytes (longer: an error reply, then the connection is dropped, after
 * discarding what the client is still sending so that it can read the
 * reply instead of failing on a reset), a
 * connection whose replies are not being read stops being read itself, and
 * an echo connection stops reading while its buffer is full.
 *
 * An op that may run for long (exec, AGENT_OP_WORKER) runs in a worker
 * process forked for that request: it handles the line and writes the
 * reply into a pipe that this loop polls like any socket. Its connection
 * answers nothing else meanwhile (replies stay in order) while other
 * connections are served. A connection that goes away while its worker
 * runs is kept, without its socket, until the worker is reaped.
 *
 * poweroff: once its reply is written (or 2 s have passed), the agent
 * powers the guest off (agent_poweroff(), or --poweroff-command).
 *
 * Tool modes for test scripts in guests: "ember-agent cid" prints the local
 * CID; "ember-agent connect CID PORT" copies stdin to a vsock connection and
 * the connection to stdout.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/vm_sockets.h>

#include "agent.h"

#define MAX_CONNS	128		/* connections of all kinds at once */
#define MAX_LISTENERS	(2 + AGENT_MAX_ECHO_PORTS)
#define OUT_HIGH	(1024 * 1024)	/* pending reply bytes that pause reading */
#define ECHO_BUF	(256 * 1024)	/* echo bytes held per connection */
#define BUF_MIN		4096
#define BIND_RETRY_S	10		/* how long to wait for a vsock transport */
#define DRAIN_MAX	(64 * 1024 * 1024) /* bytes discarded after an oversize line */
#define WORKER_REPLY_MAX (4 * 1024 * 1024) /* a worker's reply line */
#define POWEROFF_FLUSH_MS 2000		/* how long poweroff waits for its reply */

enum conn_kind { CONN_AGENT, CONN_ECHO };

struct listener {
	int		 fd;
	enum conn_kind	 kind;
	char		 desc[128];
};

/*
 * One accepted connection. Bytes read wait in in[in_off, in_len); an agent
 * connection's replies wait in out[out_off, out_len), an echo connection
 * writes straight from in.
 */
struct conn {
	int		 fd;
	enum conn_kind	 kind;
	char		*in;
	size_t		 in_off, in_len, in_cap, in_max;
	size_t		 in_scan;	/* in[in_off, in_scan) holds no newline */
	char		*out;
	size_t		 out_off, out_len, out_cap;
	bool		 eof;		/* the peer will send nothing more */
	bool		 closing;	/* answer nothing more; close once flushed */
	bool		 wr_shut;	/* shutdown(SHUT_WR) done */
	size_t		 drained;	/* bytes discarded while closing */
	pid_t		 worker_pid;	/* a worker runs in[in_off, +worker_len) */
	int		 worker_fd;	/* its reply pipe, or -1 */
	size_t		 worker_len;
	char		*wbuf;		/* the worker's reply so far */
	size_t		 wlen, wcap;
	bool		 dead;		/* socket gone; freed once the worker is */
	bool		 poweroff;	/* power off once our replies are out */
};

static struct listener	listeners[MAX_LISTENERS];
static size_t		nlisteners;
static struct conn	*conns[MAX_CONNS];
static size_t		nconns;
static const char	*poweroff_command;	/* --poweroff-command */
static bool		 poweroff_allowed;	/* not with --listen-unix alone */
static bool		 poweroff_done;
static struct timespec	 poweroff_asked;

static void __attribute__((format(printf, 1, 2)))
logx(const char *fmt, ...)
{
	va_list	ap;

	fputs("ember-agent: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* logx with ": strerror(errno)" appended. */
static void __attribute__((format(printf, 1, 2)))
logw(const char *fmt, ...)
{
	va_list	ap;
	int	saved = errno;

	fputs("ember-agent: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, ": %s\n", strerror(saved));
}

/* --- listeners -------------------------------------------------------- */

static int
listen_fd(int fd, const struct sockaddr *sa, socklen_t salen)
{
	if (bind(fd, sa, salen) == -1 || listen(fd, 64) == -1) {
		int saved = errno;

		close(fd);
		errno = saved;
		return -1;
	}
	return fd;
}

static int
listen_vsock(uint32_t port)
{
	struct sockaddr_vm	svm;
	int			fd;

	fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd == -1)
		return -1;
	memset(&svm, 0, sizeof(svm));
	svm.svm_family = AF_VSOCK;
	svm.svm_cid = VMADDR_CID_ANY;
	svm.svm_port = port;
	return listen_fd(fd, (struct sockaddr *)&svm, sizeof(svm));
}

static int
listen_unix(const char *path)
{
	struct sockaddr_un	sun;
	struct stat		st;
	int			fd;

	if (strlen(path) >= sizeof(sun.sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	/* A stale socket from an earlier run; never remove anything else. */
	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd == -1)
		return -1;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, path, strlen(path) + 1);
	return listen_fd(fd, (struct sockaddr *)&sun, sizeof(sun));
}

/* Listens on vsock port, retrying while no vsock transport is loaded yet. */
static int
listen_vsock_retry(uint32_t port)
{
	struct timespec	ts = { 0, 200 * 1000 * 1000 };
	int		fd, i;

	for (i = 0; i < BIND_RETRY_S * 5; i++) {
		if ((fd = listen_vsock(port)) != -1)
			return fd;
		if (errno != EAFNOSUPPORT && errno != ENODEV &&
		    errno != EADDRNOTAVAIL)
			return -1;
		nanosleep(&ts, NULL);
	}
	return -1;
}

static int
listener_add(int fd, enum conn_kind kind, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int
listener_add(int fd, enum conn_kind kind, const char *fmt, ...)
{
	struct listener	*l;
	va_list		 ap;

	if (nlisteners == MAX_LISTENERS) {
		close(fd);
		return -1;
	}
	l = &listeners[nlisteners++];
	l->fd = fd;
	l->kind = kind;
	va_start(ap, fmt);
	vsnprintf(l->desc, sizeof(l->desc), fmt, ap);
	va_end(ap);
	return 0;
}

/* --- connections ------------------------------------------------------ */

static void
conn_free(struct conn *c)
{
	if (c == NULL)
		return;
	if (c->fd != -1)
		close(c->fd);
	if (c->worker_fd != -1)
		close(c->worker_fd);
	free(c->in);
	free(c->out);
	free(c->wbuf);
	free(c);
}

static void
conn_accept(struct listener *l)
{
	struct conn	*c;
	int		 fd;

	fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (fd == -1) {
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
		    errno != ECONNABORTED)
			logw("accept on %s", l->desc);
		return;
	}
	if (nconns == MAX_CONNS || (c = calloc(1, sizeof(*c))) == NULL) {
		logx("dropping a connection on %s: %zu connections open",
		    l->desc, nconns);
		close(fd);
		return;
	}
	c->fd = fd;
	c->worker_fd = -1;
	c->kind = l->kind;
	c->in_max = l->kind == CONN_AGENT ? AGENT_MAX_LINE + 1 : ECHO_BUF;
	conns[nconns++] = c;
}

/* Makes room to read into c->in; false when the buffer is full. */
static bool
conn_in_room(struct conn *c)
{
	size_t	 cap;
	char	*p;

	if (c->in_off > 0 && c->in_len == c->in_cap) {
		memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
		c->in_len -= c->in_off;
		c->in_scan -= c->in_off;
		c->in_off = 0;
	}
	if (c->in_len < c->in_cap)
		return true;
	if (c->in_cap >= c->in_max)
		return false;
	cap = c->in_cap < BUF_MIN ? BUF_MIN : c->in_cap * 2;
	if (cap > c->in_max)
		cap = c->in_max;
	if ((p = realloc(c->in, cap)) == NULL)
		return false;
	c->in = p;
	c->in_cap = cap;
	return true;
}

static int
conn_out_append(struct conn *c, const char *s, size_t len)
{
	size_t	 need, cap;
	char	*p;

	if (c->out_off > 0 && c->out_off == c->out_len)
		c->out_off = c->out_len = 0;
	need = c->out_len + len;
	if (need > c->out_cap) {
		if (c->out_off > 0) {
			memmove(c->out, c->out + c->out_off,
			    c->out_len - c->out_off);
			c->out_len -= c->out_off;
			c->out_off = 0;
			need = c->out_len + len;
		}
		for (cap = c->out_cap < BUF_MIN ? BUF_MIN : c->out_cap;
		    cap < need; cap *= 2)
			;
		if (cap > c->out_cap) {
			if ((p = realloc(c->out, cap)) == NULL)
				return -1;
			c->out = p;
			c->out_cap = cap;
		}
	}
	memcpy(c->out + c->out_len, s, len);
	c->out_len += len;
	return 0;
}

static size_t
conn_pending(const struct conn *c)
{
	if (c->kind == CONN_ECHO)
		return c->in_len - c->in_off;
	return c->out_len - c->out_off;
}

static bool
conn_wants_read(const struct conn *c)
{
	if (c->eof)
		return false;
	if (c->closing)
		return c->drained < DRAIN_MAX;
	if (c->worker_pid != 0)		/* the next lines wait for its reply */
		return false;
	if (c->kind == CONN_AGENT)
		return conn_pending(c) <= OUT_HIGH;
	return c->in_off > 0 || c->in_len < c->in_max;
}

/* Appends an error reply to the request line in c->in (for worker trouble). */
static int
conn_error_reply(struct conn *c, const char *line, size_t len, const char *fmt,
    ...) __attribute__((format(printf, 4, 5)));

static int
conn_error_reply(struct conn *c, const char *line, size_t len, const char *fmt,
    ...)
{
	char	 msg[256], *reply;
	size_t	 rlen;
	va_list	 ap;
	int	 r;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if ((reply = agent_error_line(line, len, msg, &rlen)) == NULL)
		return -1;
	r = conn_out_append(c, reply, rlen);
	free(reply);
	return r;
}

static void
close_inherited_fds(void)
{
	size_t	i;

	for (i = 0; i < nlisteners; i++)
		close(listeners[i].fd);
	for (i = 0; i < nconns; i++) {
		if (conns[i]->fd != -1)
			close(conns[i]->fd);
		if (conns[i]->worker_fd != -1)
			close(conns[i]->worker_fd);
	}
}

/*
 * Forks a worker for the line at c->in + c->in_off (len bytes), which stays
 * there until the worker's reply is in. Returns -1 with errno set when no
 * worker could be started.
 */
static int
conn_start_worker(struct conn *c, size_t len)
{
	const char	*line = c->in + c->in_off;
	size_t		 rlen, off = 0;
	ssize_t		 n;
	char		*reply;
	pid_t		 pid;
	int		 p[2], saved;

	if (pipe2(p, O_CLOEXEC) == -1)
		return -1;
	if ((pid = fork()) == -1) {
		saved = errno;
		close(p[0]);
		close(p[1]);
		errno = saved;
		return -1;
	}
	if (pid == 0) {
		close(p[0]);
		close_inherited_fds();
		reply = agent_handle_line(line, len, &rlen);
		while (reply != NULL && off < rlen) {
			n = write(p[1], reply + off, rlen - off);
			if (n == -1 && errno == EINTR)
				continue;
			if (n <= 0)
				break;
			off += (size_t)n;
		}
		_exit(reply != NULL && off == rlen ? 0 : 1);
	}
	close(p[1]);
	fcntl(p[0], F_SETFL, O_NONBLOCK);
	c->worker_pid = pid;
	c->worker_fd = p[0];
	c->worker_len = len;
	c->wlen = 0;
	return 0;
}

/*
 * Answers one request line (or the oversize error) into c->out, or starts
 * a worker for it; *consumed says whether the line is done with.
 */
static int
conn_answer(struct conn *c, const char *line, size_t len, bool oversize,
    bool *consumed)
{
	size_t	 rlen;
	char	*reply;
	int	 r;

	*consumed = true;
	if (!oversize && (agent_line_flags(line, len) & AGENT_OP_WORKER)) {
		if (conn_start_worker(c, len) == 0) {
			*consumed = false;
			return 0;
		}
		logw("cannot start a worker");
		return conn_error_reply(c, line, len,
		    "cannot start a worker process: %s", strerror(errno));
	}
	if (oversize)
		reply = agent_oversize_reply(&rlen);
	else
		reply = agent_handle_line(line, len, &rlen);
	if (agent_poweroff_take()) {
		c->poweroff = true;
		clock_gettime(CLOCK_MONOTONIC, &poweroff_asked);
	}
	if (reply == NULL)
		return rlen == 0 ? 0 : -1;
	r = conn_out_append(c, reply, rlen);
	free(reply);
	return r;
}

/* Answers the complete request lines waiting in c->in, while replies drain. */
static int
conn_process(struct conn *c)
{
	char	*nl;
	size_t	 len;
	bool	 consumed;

	while (!c->closing && c->worker_pid == 0 &&
	    conn_pending(c) <= OUT_HIGH) {
		nl = memchr(c->in + c->in_scan, '\n', c->in_len - c->in_scan);
		if (nl != NULL) {
			len = (size_t)(nl - (c->in + c->in_off));
			if (len > AGENT_MAX_LINE)
				goto oversize;
			if (conn_answer(c, c->in + c->in_off, len, false,
			    &consumed) != 0)
				return -1;
			if (!consumed) {
				c->in_scan = c->in_off + len;
				break;
			}
			c->in_off += len + 1;
			c->in_scan = c->in_off;
			continue;
		}
		c->in_scan = c->in_len;
		len = c->in_len - c->in_off;
		if (len > AGENT_MAX_LINE)
			goto oversize;
		if (c->eof && len > 0) {
			/* A last request without its newline. */
			if (conn_answer(c, c->in + c->in_off, len, false,
			    &consumed) != 0)
				return -1;
			if (consumed)
				c->in_off = c->in_len;
		}
		break;
	}
	if (c->in_off == c->in_len)
		c->in_off = c->in_len = c->in_scan = 0;
	return 0;

oversize:
	c->closing = true;
	c->in_off = c->in_len = c->in_scan = 0;
	return conn_answer(c, NULL, 0, true, &consumed);
}

/*
 * Reads the worker's reply; at EOF reaps the worker, queues its reply (or
 * an error when it died without one) and moves past its line. Returns -1
 * when the connection is broken.
 */
static int
conn_worker_event(struct conn *c)
{
	size_t	 cap;
	ssize_t	 n;
	char	*p;
	int	 status = 0, r = 0;

	for (;;) {
		if (c->wlen == c->wcap) {
			cap = c->wcap < BUF_MIN ? BUF_MIN : c->wcap * 2;
			if (cap > WORKER_REPLY_MAX ||
			    (p = realloc(c->wbuf, cap)) == NULL) {
				/* Cannot be a reply of ours: an error instead. */
				kill(c->worker_pid, SIGKILL);
				c->wlen = 0;
				break;
			}
			c->wbuf = p;
			c->wcap = cap;
		}
		n = read(c->worker_fd, c->wbuf + c->wlen, c->wcap - c->wlen);
		if (n > 0) {
			c->wlen += (size_t)n;
			continue;
		}
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		break;	/* EOF or error: the worker is done */
	}
	close(c->worker_fd);
	c->worker_fd = -1;
	while (waitpid(c->worker_pid, &status, 0) == -1 && errno == EINTR)
		;
	c->worker_pid = 0;
	if (c->dead)
		return 0;
	if (c->wlen > 0 && c->wbuf[c->wlen - 1] == '\n' &&
	    WIFEXITED(status) && WEXITSTATUS(status) == 0)
		r = conn_out_append(c, c->wbuf, c->wlen);
	else if (WIFSIGNALED(status))
		r = conn_error_reply(c, c->in + c->in_off, c->worker_len,
		    "the worker process died (signal %d)", WTERMSIG(status));
	else
		r = conn_error_reply(c, c->in + c->in_off, c->worker_len,
		    "the worker process failed (status %d)",
		    WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	free(c->wbuf);
	c->wbuf = NULL;
	c->wlen = c->wcap = 0;
	c->in_off = c->in_off + c->worker_len < c->in_len ?
	    c->in_off + c->worker_len + 1 : c->in_len;
	c->in_scan = c->in_off;
	if (r != 0)
		return -1;
	return conn_process(c);
}

/* Reads once; returns -1 when the connection is broken. */
static int
conn_read(struct conn *c, bool *progress)
{
	ssize_t	n;

	if (c->closing)		/* discard */
		c->in_off = c->in_len = c->in_scan = 0;
	if (!conn_in_room(c))
		return c->kind == CONN_AGENT ? -1 : 0;
	n = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len);
	if (n == -1) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return 0;
		return -1;
	}
	*progress = true;
	if (n == 0)
		c->eof = true;
	else if (c->closing)
		c->drained += (size_t)n;
	else
		c->in_len += (size_t)n;
	return 0;
}

/* Writes what is pending once; returns -1 when the connection is broken. */
static int
conn_write(struct conn *c, bool *progress)
{
	char	*buf;
	size_t	*off, end;
	ssize_t	 n;

	if (c->kind == CONN_ECHO) {
		buf = c->in;
		off = &c->in_off;
		end = c->in_len;
	} else {
		buf = c->out;
		off = &c->out_off;
		end = c->out_len;
	}
	if (*off == end)
		return 0;
	n = write(c->fd, buf + *off, end - *off);
	if (n == -1) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return 0;
		return -1;
	}
	*progress = true;
	*off += (size_t)n;
	if (*off == end) {
		if (c->kind == CONN_ECHO)
			c->in_off = c->in_len = 0;
		else
			c->out_off = c->out_len = 0;
	}
	return 0;
}

/*
 * Handles poll results for c; returns false once c is finished (flushed
 * after EOF or an oversize line, or broken) and must be freed.
 */
static bool
conn_event(struct conn *c, short revents)
{
	bool	progress = false;

	if ((revents & (POLLIN | POLLHUP | POLLERR)) && conn_wants_read(c)) {
		if (conn_read(c, &progress) != 0)
			return false;
	}
	if (c->kind == CONN_AGENT && conn_process(c) != 0)
		return false;
	if (revents & (POLLOUT | POLLERR | POLLHUP)) {
		if (conn_write(c, &progress) != 0)
			return false;
		/* Replies drained: answer lines that waited for room. */
		if (c->kind == CONN_AGENT && conn_process(c) != 0)
			return false;
	}
	if ((c->eof || c->closing) && conn_pending(c) == 0 && !c->wr_shut &&
	    c->worker_pid == 0) {
		shutdown(c->fd, SHUT_WR);
		c->wr_shut = true;
	}
	if (c->wr_shut && (c->eof || c->drained >= DRAIN_MAX))
		return false;
	/* Hung up or failed with nothing we could do: give up on it. */
	if ((revents & (POLLHUP | POLLERR | POLLNVAL)) && !progress)
		return false;
	return true;
}

/* --- the daemon --------------------------------------------------------- */

/* Powers the guest off, once. */
static void
do_poweroff(void)
{
	char	*argv[] = { "sh", "-c", (char *)poweroff_command, NULL };
	pid_t	 pid;
	int	 r;

	if (poweroff_done)
		return;
	poweroff_done = true;
	if (poweroff_command != NULL) {
		logx("poweroff: running %s", poweroff_command);
		if ((pid = fork()) == 0) {
			setsid();
			close_inherited_fds();
			execv("/bin/sh", argv);
			_exit(127);
		}
		if (pid == -1)
			logw("poweroff: fork");
		return;
	}
	if (!poweroff_allowed) {
		logx("poweroff: asked to, but not powering this machine off "
		    "(--listen-unix without --poweroff-command)");
		return;
	}
	logx("powering off");
	if ((r = agent_poweroff()) < 0) {
		errno = -r;
		logw("poweroff");
	}
}

static int64_t
ms_since(const struct timespec *t0)
{
	struct timespec	now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (int64_t)(now.tv_sec - t0->tv_sec) * 1000 +
	    (now.tv_nsec - t0->tv_nsec) / 1000000;
}

/* Removes conns[i] (freeing it, or keeping it socketless for its worker). */
static void
conn_drop(size_t i)
{
	struct conn	*c = conns[i];

	if (c->poweroff)	/* its reply is as flushed as it will be */
		do_poweroff();
	c->poweroff = false;
	if (c->worker_pid != 0) {
		if (c->fd != -1)
			close(c->fd);
		c->fd = -1;
		c->dead = true;
		return;
	}
	conn_free(c);
	conns[i] = conns[--nconns];
	conns[nconns] = NULL;
}

static int
serve(void)
{
	struct pollfd	pfd[MAX_LISTENERS + 2 * MAX_CONNS];
	struct conn	*c;
	size_t		i, n;
	short		re;
	int		timeout;
	bool		asked;

	for (;;) {
		n = 0;
		for (i = 0; i < nlisteners; i++) {
			pfd[n].fd = listeners[i].fd;
			pfd[n].events = nconns < MAX_CONNS ? POLLIN : 0;
			pfd[n++].revents = 0;
		}
		asked = false;
		for (i = 0; i < nconns; i++) {
			c = conns[i];
			pfd[n].fd = c->dead ? -1 : c->fd;
			pfd[n].events = (conn_wants_read(c) ? POLLIN : 0) |
			    (conn_pending(c) > 0 ? POLLOUT : 0);
			pfd[n++].revents = 0;
			pfd[n].fd = c->worker_fd;
			pfd[n].events = POLLIN;
			pfd[n++].revents = 0;
			asked |= c->poweroff;
		}
		timeout = -1;
		if (asked && !poweroff_done) {
			timeout = POWEROFF_FLUSH_MS -
			    (int)ms_since(&poweroff_asked);
			if (timeout < 0)
				timeout = 0;
		}
		if (poll(pfd, n, timeout) == -1) {
			if (errno == EINTR)
				continue;
			logw("poll");
			return 1;
		}
		/* Connections first (the array shrinks), then new ones. */
		for (i = nconns; i-- > 0;) {
			c = conns[i];
			re = pfd[nlisteners + 2 * i + 1].revents;
			if (re != 0 && c->worker_fd != -1 &&
			    conn_worker_event(c) != 0 && !c->dead) {
				conn_drop(i);
				continue;
			}
			if (c->dead) {
				if (c->worker_pid == 0) {
					c->dead = false;	/* now free it */
					conn_drop(i);
				}
				continue;
			}
			re = pfd[nlisteners + 2 * i].revents;
			if (re != 0 && !conn_event(c, re)) {
				conn_drop(i);
				continue;
			}
			if (c->poweroff && conn_pending(c) == 0) {
				c->poweroff = false;
				do_poweroff();
			}
		}
		if (asked && !poweroff_done &&
		    ms_since(&poweroff_asked) >= POWEROFF_FLUSH_MS)
			do_poweroff();
		for (i = 0; i < nlisteners; i++) {
			if (pfd[i].revents & POLLIN)
				conn_accept(&listeners[i]);
		}
	}
}

/* Reads the kernel command line (at most 64 KiB) into a string. */
static char *
read_cmdline(const char *path)
{
	size_t	 len = 0, cap = 65536;
	ssize_t	 r;
	char	*buf;
	int	 fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return NULL;
	if ((buf = malloc(cap + 1)) == NULL) {
		close(fd);
		return NULL;
	}
	while (len < cap && (r = read(fd, buf + len, cap - len)) > 0)
		len += (size_t)r;
	close(fd);
	buf[len] = '\0';
	return buf;
}

static int
usage(FILE *f)
{
	fprintf(f,
	    "usage: ember-agent [--port PORT] [--listen-unix PATH] "
	    "[--echo-unix PATH] [--cmdline FILE]\n"
	    "                   [--poweroff-command CMD] [--root DIR]\n"
	    "       ember-agent cid\n"
	    "       ember-agent workload ROOT\n"
	    "       ember-agent connect CID PORT\n"
	    "       ember-agent --version\n"
	    "Serves the ember agent protocol on vsock port %d (or PATH with "
	    "--listen-unix)\nand an echo service on each port of "
	    "ember.echo=PORT[,PORT...] in FILE\n(default /proc/cmdline). "
	    "The poweroff op runs CMD (sh -c) when given, else\n"
	    "/sbin/ember-shutdown, systemctl poweroff or reboot(2); never with "
	    "--listen-unix alone.\n",
	    AGENT_PORT);
	return f == stderr ? 2 : 0;
}

/* Parses a port number (1..2^32-2); -1 when it is not one. */
static int64_t
parse_port(const char *s)
{
	uint32_t	ports[1];
	char		buf[64];

	snprintf(buf, sizeof(buf), "ember.echo=%s", s);
	if (strlen(s) > 10 || agent_parse_echo_ports(buf, ports, 1) != 1)
		return -1;
	return ports[0];
}

static int
run_daemon(int argc, char **argv)
{
	const char	*unix_path = NULL, *echo_unix = NULL;
	const char	*cmdline_path = "/proc/cmdline";
	uint32_t	 echo_ports[AGENT_MAX_ECHO_PORTS];
	size_t		 necho = 0, i;
	int64_t		 port = AGENT_PORT;
	char		*cmdline;
	int		 fd, a;

	for (a = 1; a < argc; a++) {
		if (strcmp(argv[a], "--help") == 0 || strcmp(argv[a], "-h") == 0)
			return usage(stdout);
		if (a + 1 == argc)
			return usage(stderr);
		if (strcmp(argv[a], "--port") == 0) {
			if ((port = parse_port(argv[++a])) == -1) {
				logx("--port %s: not a vsock port number",
				    argv[a]);
				return 2;
			}
		} else if (strcmp(argv[a], "--listen-unix") == 0)
			unix_path = argv[++a];
		else if (strcmp(argv[a], "--echo-unix") == 0)
			echo_unix = argv[++a];
		else if (strcmp(argv[a], "--cmdline") == 0)
			cmdline_path = argv[++a];
		else if (strcmp(argv[a], "--poweroff-command") == 0)
			poweroff_command = argv[++a];
		else if (strcmp(argv[a], "--root") == 0)
			agent_exec_root = argv[++a];
		else
			return usage(stderr);
	}

	signal(SIGPIPE, SIG_IGN);
	/* Inherited "ignore" would make the kernel reap our children. */
	signal(SIGCHLD, SIG_DFL);
	setvbuf(stderr, NULL, _IOLBF, 0);
	poweroff_allowed = unix_path == NULL;

	if ((cmdline = read_cmdline(cmdline_path)) != NULL) {
		necho = agent_parse_echo_ports(cmdline, echo_ports,
		    AGENT_MAX_ECHO_PORTS);
		if (agent_exec_root != NULL) {
			struct agent_error	werr = { { 0 } };

			agent_exec_workload = agent_workload_parse(cmdline, &werr);
			if (agent_exec_workload == NULL)
				logx("--root %s: %s; exec keeps the root's own environment",
				    agent_exec_root, werr.msg);
		}
		free(cmdline);
	} else if (strcmp(cmdline_path, "/proc/cmdline") != 0) {
		logw("%s", cmdline_path);
		return 1;
	}

	for (i = 0; i < necho; i++) {
		if ((fd = listen_vsock_retry(echo_ports[i])) == -1)
			logw("cannot listen on vsock port %" PRIu32
			    " for ember.echo", echo_ports[i]);
		else if (listener_add(fd, CONN_ECHO, "vsock port %" PRIu32,
		    echo_ports[i]) == 0)
			logx("echo service on vsock port %" PRIu32,
			    echo_ports[i]);
	}
	if (echo_unix != NULL) {
		if ((fd = listen_unix(echo_unix)) == -1) {
			logw("cannot listen on %s", echo_unix);
			return 1;
		}
		listener_add(fd, CONN_ECHO, "%s", echo_unix);
		logx("echo service on %s", echo_unix);
	}
	if (unix_path != NULL) {
		if ((fd = listen_unix(unix_path)) == -1) {
			logw("cannot listen on %s", unix_path);
			return 1;
		}
		listener_add(fd, CONN_AGENT, "%s", unix_path);
		logx("listening on %s", unix_path);
	} else {
		if ((fd = listen_vsock_retry((uint32_t)port)) == -1) {
			logw("cannot listen on vsock port %" PRId64
			    " (is the vsock transport module loaded?)", port);
			return 1;
		}
		listener_add(fd, CONN_AGENT, "vsock port %" PRId64, port);
		logx("listening on vsock port %" PRId64, port);
	}
	return serve();
}

/* --- tool modes --------------------------------------------------------- */

static int
run_cid(int argc, char **argv)
{
	int64_t	cid = agent_local_cid();

	if (cid < 0) {
		errno = (int)-cid;
		logw("cannot read the local CID from /dev/vsock");
		return 1;
	}
	printf("%" PRId64 "\n", cid);
	return 0;
}

static int
write_all(int fd, const char *buf, size_t len)
{
	ssize_t	n;

	while (len > 0) {
		if ((n = write(fd, buf, len)) == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/*
 * Copies stdin to the connection and the connection to stdout. The socket
 * is non-blocking and stdin is read only when the last chunk has been sent,
 * so a peer that writes back while we write (an echo) cannot deadlock us.
 */
static int
run_connect(int argc, char **argv)
{
	struct sockaddr_vm	 svm;
	struct pollfd		 pfd[2];
	static char		 up[65536], down[65536];
	size_t			 up_off = 0, up_len = 0;
	bool			 in_eof = false;
	int64_t			 cid, port;
	ssize_t			 n;
	char			*end;
	int			 fd;

	signal(SIGPIPE, SIG_IGN);
	errno = 0;
	cid = strtoll(argv[2], &end, 10);
	if (errno != 0 || end == argv[2] || *end != '\0' || cid < 0 ||
	    cid > UINT32_MAX) {
		logx("%s: not a CID", argv[2]);
		return 2;
	}
	if ((port = parse_port(argv[3])) == -1) {
		logx("%s: not a vsock port number", argv[3]);
		return 2;
	}
	if ((fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1) {
		logw("vsock socket");
		return 1;
	}
	memset(&svm, 0, sizeof(svm));
	svm.svm_family = AF_VSOCK;
	svm.svm_cid = (unsigned int)cid;
	svm.svm_port = (unsigned int)port;
	if (connect(fd, (struct sockaddr *)&svm, sizeof(svm)) == -1) {
		logw("connect to vsock CID %" PRId64 " port %" PRId64, cid,
		    port);
		close(fd);
		return 1;
	}
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) == -1) {
		logw("fcntl");
		close(fd);
		return 1;
	}
	for (;;) {
		pfd[0].fd = !in_eof && up_len == 0 ? STDIN_FILENO : -1;
		pfd[0].events = POLLIN;
		pfd[1].fd = fd;
		pfd[1].events = POLLIN | (up_len > 0 ? POLLOUT : 0);
		if (poll(pfd, 2, -1) == -1) {
			if (errno == EINTR)
				continue;
			logw("poll");
			break;
		}
		if (pfd[0].revents != 0) {
			n = read(STDIN_FILENO, up, sizeof(up));
			if (n > 0) {
				up_off = 0;
				up_len = (size_t)n;
			} else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
				in_eof = true;
				shutdown(fd, SHUT_WR);
			}
		}
		if (pfd[1].revents & (POLLIN | POLLHUP | POLLERR)) {
			n = read(fd, down, sizeof(down));
			if (n == 0) {
				close(fd);
				return 0;
			}
			if (n > 0 && write_all(STDOUT_FILENO, down,
			    (size_t)n) == -1) {
				logw("stdout");
				break;
			}
			if (n == -1 && errno != EAGAIN && errno != EINTR) {
				logw("read from vsock");
				break;
			}
		}
		if (up_len > 0 && (pfd[1].revents & (POLLOUT | POLLERR))) {
			n = write(fd, up + up_off, up_len);
			if (n > 0) {
				up_off += (size_t)n;
				up_len -= (size_t)n;
			} else if (n == -1 && errno != EAGAIN && errno != EINTR) {
				logw("write to vsock");
				break;
			}
		}
	}
	close(fd);
	return 1;
}

/* ember-agent workload ROOT: the OCI workload of /proc/cmdline. */
static int
run_workload(int argc, char **argv)
{
	char	*cmdline = read_cmdline("/proc/cmdline");
	int	 r;

	if (cmdline == NULL) {
		logw("/proc/cmdline");
		return 1;
	}
	r = agent_workload_main(argv[2], cmdline);
	free(cmdline);
	return r;
}

static const struct {
	const char	*name;
	int		 argc;	/* including argv[0] and the verb */
	int		(*run)(int, char **);
} verbs[] = {
	{ "cid", 2, run_cid },
	{ "connect", 4, run_connect },
	{ "workload", 3, run_workload },
};

int
main(int argc, char **argv)
{
	size_t	i;

	if (argc > 1 && strcmp(argv[1], "--version") == 0) {
		printf("ember-agent %s\n", EMBER_VERSION);
		return 0;
	}
	for (i = 0; argc > 1 && i < sizeof(verbs) / sizeof(verbs[0]); i++) {
		if (strcmp(argv[1], verbs[i].name) != 0)
			continue;
		if (argc != verbs[i].argc)
			return usage(stderr);
		return verbs[i].run(argc, argv);
	}
	return run_daemon(argc, argv);
}
