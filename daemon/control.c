/*
 * Control socket transport (see control.h). Each connection owns one
 * bufferevent; lines are cut with evbuffer_search_eol so a request split
 * across reads is reassembled and many pipelined requests in one read are
 * delivered in order. A client that stops reading its replies stops being
 * read once its output passes CONTROL_OUTPUT_HIGH, so it can only slow
 * itself down.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "control.h"
#include "log.h"
#include "platform.h"
#include "rpc-codec.h"

#define CONTROL_OUTPUT_HIGH	(4u * 1024 * 1024)
#define CONTROL_OUTPUT_LOW	(1u * 1024 * 1024)

struct control_conn {
	TAILQ_ENTRY(control_conn) entry;
	struct control *ctl;
	struct bufferevent *bev;
	struct control_peer peer;
	unsigned in_flight;	/* calls not yet answered */
	int closing;		/* close once output is flushed */
	int read_paused;	/* by back-pressure */
};

struct control {
	struct event_base *base;
	struct evconnlistener *listener;
	char *path;		/* NULL when the socket was inherited */
	struct control_callbacks cb;
	void *ctx;
	TAILQ_HEAD(, control_conn) conns;
	size_t nconns;
	uint64_t next_id;
	int draining;
	struct event *drain_check;
};

static void conn_read_cb(struct bufferevent *bev, void *arg);
static void conn_write_cb(struct bufferevent *bev, void *arg);
static void conn_event_cb(struct bufferevent *bev, short what, void *arg);

static struct control_conn *
conn_find(struct control *ctl, uint64_t id)
{
	struct control_conn *c;

	TAILQ_FOREACH(c, &ctl->conns, entry)
		if (c->peer.conn_id == id)
			return c;
	return NULL;
}

static void
control_schedule_reap(struct control *ctl)
{
	if (ctl->drain_check != NULL)
		event_active(ctl->drain_check, EV_TIMEOUT, 0);
}

static void
conn_free(struct control_conn *c)
{
	struct control *ctl = c->ctl;

	log_debug("control: connection %llu closed", (unsigned long long)c->peer.conn_id);
	TAILQ_REMOVE(&ctl->conns, c, entry);
	ctl->nconns--;
	bufferevent_free(c->bev);
	free(c);
	control_schedule_reap(ctl);
}

/* Whether a connection may be closed now: nothing in flight and, when we
 * are closing it, all output written. */
static int
conn_finished(struct control_conn *c)
{
	return c->in_flight == 0 &&
	    evbuffer_get_length(bufferevent_get_output(c->bev)) == 0;
}

static void
conn_close_when_flushed(struct control_conn *c)
{
	c->closing = 1;
	bufferevent_disable(c->bev, EV_READ);
	if (conn_finished(c))
		conn_free(c);
}

static void
conn_deliver_lines(struct control_conn *c)
{
	struct control *ctl = c->ctl;
	struct evbuffer *in = bufferevent_get_input(c->bev);

	while (!c->closing && !c->read_paused && !ctl->draining) {
		size_t eol_len = 0;
		struct evbuffer_ptr eol = evbuffer_search_eol(in, NULL, &eol_len,
		    EVBUFFER_EOL_LF);

		if (eol.pos < 0) {
			if (evbuffer_get_length(in) > RPC_MAX_LINE)
				goto oversize;
			return;
		}
		if ((size_t)eol.pos > RPC_MAX_LINE)
			goto oversize;

		char *line = malloc((size_t)eol.pos + 1);
		if (line == NULL) {
			log_warnx("control: out of memory reading a request");
			conn_close_when_flushed(c);
			return;
		}
		evbuffer_remove(in, line, (size_t)eol.pos);
		evbuffer_drain(in, eol_len);
		line[eol.pos] = '\0';
		/* The callback may send replies on this connection; it cannot
		 * free it (frees only happen from libevent callbacks below). */
		ctl->cb.on_line(ctl->ctx, &c->peer, line, (size_t)eol.pos);
		free(line);
	}
	return;

oversize:
	log_warnx("control: connection %llu (uid %u) sent a line over %u bytes; closing it",
	    (unsigned long long)c->peer.conn_id, (unsigned)c->peer.uid, RPC_MAX_LINE);
	evbuffer_drain(in, evbuffer_get_length(in));
	if (ctl->cb.on_oversize != NULL) {
		size_t len = 0;
		char *reply = ctl->cb.on_oversize(ctl->ctx, &c->peer, &len);
		if (reply != NULL)
			bufferevent_write(c->bev, reply, len);
		free(reply);
	}
	conn_close_when_flushed(c);
}

static void
conn_read_cb(struct bufferevent *bev, void *arg)
{
	struct control_conn *c = arg;

	conn_deliver_lines(c);
	if (evbuffer_get_length(bufferevent_get_output(bev)) > CONTROL_OUTPUT_HIGH &&
	    !c->read_paused) {
		c->read_paused = 1;
		bufferevent_disable(bev, EV_READ);
		bufferevent_setwatermark(bev, EV_WRITE, CONTROL_OUTPUT_LOW, 0);
	}
	if (c->closing && conn_finished(c))
		conn_free(c);
}

static void
conn_write_cb(struct bufferevent *bev, void *arg)
{
	struct control_conn *c = arg;

	if (c->read_paused &&
	    evbuffer_get_length(bufferevent_get_output(bev)) <= CONTROL_OUTPUT_LOW) {
		c->read_paused = 0;
		bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
		if (!c->closing && !c->ctl->draining)
			bufferevent_enable(bev, EV_READ);
		conn_deliver_lines(c);	/* lines that arrived while paused */
	}
	if ((c->closing || c->ctl->draining) && conn_finished(c))
		conn_free(c);
}

static void
conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct control_conn *c = arg;

	if (what & BEV_EVENT_EOF) {
		/* Deliver what arrived before EOF; the client may have
		 * half-closed and still waits for the replies. */
		conn_deliver_lines(c);
		c->closing = 1;
		if (conn_finished(c))
			conn_free(c);
		return;
	}
	if (what & BEV_EVENT_ERROR) {
		log_debug("control: connection %llu: %s", (unsigned long long)c->peer.conn_id,
		    strerror(EVUTIL_SOCKET_ERROR()));
		/* Nobody can read the replies any more: drop the connection;
		 * replies to its calls in flight will find no connection. */
		c->in_flight = 0;
		conn_free(c);
	}
}

static void
control_accept_cb(struct evconnlistener *listener, evutil_socket_t fd,
    struct sockaddr *sa, int socklen, void *arg)
{
	struct control *ctl = arg;
	struct control_conn *c;

	if (ctl->draining) {
		close(fd);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		log_warnx("control: out of memory accepting a client");
		close(fd);
		return;
	}
	c->ctl = ctl;
	c->peer.conn_id = ++ctl->next_id;
	if (platform_peer_creds(fd, &c->peer.uid, &c->peer.gid, &c->peer.pid) < 0) {
		log_warnx("control: cannot read peer credentials; refusing client");
		free(c);
		close(fd);
		return;
	}
	c->peer.ngroups = platform_peer_groups(fd, c->peer.groups, CONTROL_PEER_GROUPS_MAX);
	c->bev = bufferevent_socket_new(ctl->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL) {
		free(c);
		close(fd);
		return;
	}
	bufferevent_setcb(c->bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	TAILQ_INSERT_TAIL(&ctl->conns, c, entry);
	ctl->nconns++;
	log_debug("control: connection %llu from uid %u pid %d",
	    (unsigned long long)c->peer.conn_id, (unsigned)c->peer.uid, (int)c->peer.pid);
}

static void
control_accept_error_cb(struct evconnlistener *listener, void *arg)
{
	int e = EVUTIL_SOCKET_ERROR();

	/* EMFILE and friends: keep serving the clients we have. */
	log_warnx("control: accept: %s", strerror(e));
}

/* Frees connections that finished while a callback of theirs was running,
 * then reports a completed drain. */
static void
control_reap_cb(evutil_socket_t fd, short what, void *arg)
{
	struct control *ctl = arg;
	struct control_conn *c, *tmp;

	for (c = TAILQ_FIRST(&ctl->conns); c != NULL; c = tmp) {
		tmp = TAILQ_NEXT(c, entry);
		if ((c->closing || ctl->draining) && conn_finished(c)) {
			TAILQ_REMOVE(&ctl->conns, c, entry);
			ctl->nconns--;
			bufferevent_free(c->bev);
			free(c);
		}
	}
	if (ctl->draining && ctl->nconns == 0 && ctl->cb.on_drained != NULL)
		ctl->cb.on_drained(ctl->ctx);
}

/* Refuses to replace a socket someone still answers on. */
static int
control_remove_stale(const char *path, struct ember_error *err)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct stat st;
	int fd, r;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : ember_error_set(err, EK_IO, NULL,
		    "cannot stat control socket %s: %s", path, strerror(errno));
	if (!S_ISSOCK(st.st_mode))
		return ember_error_set(err, EK_IO, "remove it or choose another --socket",
		    "%s exists and is not a socket", path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return ember_error_set(err, EK_IO, NULL, "socket: %s", strerror(errno));
	memcpy(sun.sun_path, path, strlen(path) + 1);
	r = connect(fd, (struct sockaddr *)&sun, sizeof(sun));
	close(fd);
	if (r == 0)
		return ember_error_set(err, EK_BUSY,
		    "stop the other emberd or choose another --socket",
		    "another emberd is already serving %s", path);
	log_info("removing stale control socket %s", path);
	if (unlink(path) < 0 && errno != ENOENT)
		return ember_error_set(err, EK_IO, NULL, "cannot remove stale socket %s: %s",
		    path, strerror(errno));
	return 0;
}

static int
control_bind(const char *path, gid_t group, struct ember_error *err)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	mode_t old_umask;
	int fd;

	if (strlen(path) >= sizeof(sun.sun_path))
		return ember_error_set(err, EK_PATH_TOO_LONG, "choose a shorter --socket",
		    "control socket path is too long (%zu bytes, max %zu): %s",
		    strlen(path), sizeof(sun.sun_path) - 1, path);
	if (control_remove_stale(path, err) < 0)
		return -1;
	memcpy(sun.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return ember_error_set(err, EK_IO, NULL, "socket: %s", strerror(errno));
	/* Create the socket 0660 from the start: no window where it is wider. */
	old_umask = umask(0117);
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		int e = errno;
		umask(old_umask);
		close(fd);
		return ember_error_set(err, EK_IO, NULL, "cannot bind control socket %s: %s",
		    path, strerror(e));
	}
	umask(old_umask);
	if (group != (gid_t)-1 && chown(path, (uid_t)-1, group) < 0)
		log_warn("cannot give control socket %s to group %u", path, (unsigned)group);
	if (chmod(path, 0660) < 0)
		log_warn("chmod %s", path);
	if (listen(fd, 512) < 0) {
		int e = errno;
		close(fd);
		unlink(path);
		return ember_error_set(err, EK_IO, NULL, "listen on %s: %s", path, strerror(e));
	}
	return fd;
}

struct control *
control_new(struct event_base *base, const char *path, int listen_fd, gid_t group,
    const struct control_callbacks *cb, void *ctx, struct ember_error *err)
{
	struct control *ctl = calloc(1, sizeof(*ctl));

	if (ctl == NULL) {
		ember_error_set(err, EK_INTERNAL, NULL, "out of memory");
		return NULL;
	}
	ctl->base = base;
	ctl->cb = *cb;
	ctl->ctx = ctx;
	TAILQ_INIT(&ctl->conns);
	if (listen_fd < 0) {
		listen_fd = control_bind(path, group, err);
		if (listen_fd < 0) {
			free(ctl);
			return NULL;
		}
		ctl->path = strdup(path);
	} else
		evutil_make_socket_nonblocking(listen_fd);
	ctl->listener = evconnlistener_new(base, control_accept_cb, ctl,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, listen_fd);
	ctl->drain_check = event_new(base, -1, 0, control_reap_cb, ctl);
	if (ctl->listener == NULL || ctl->drain_check == NULL) {
		ember_error_set(err, EK_INTERNAL, NULL, "cannot watch the control socket");
		if (ctl->listener == NULL)
			close(listen_fd);
		control_free(ctl);
		return NULL;
	}
	evconnlistener_set_error_cb(ctl->listener, control_accept_error_cb);
	return ctl;
}

void
control_free(struct control *ctl)
{
	struct control_conn *c;

	if (ctl == NULL)
		return;
	if (ctl->listener != NULL)
		evconnlistener_free(ctl->listener);
	while ((c = TAILQ_FIRST(&ctl->conns)) != NULL) {
		TAILQ_REMOVE(&ctl->conns, c, entry);
		bufferevent_free(c->bev);
		free(c);
	}
	if (ctl->drain_check != NULL)
		event_free(ctl->drain_check);
	if (ctl->path != NULL) {
		unlink(ctl->path);
		free(ctl->path);
	}
	free(ctl);
}

int
control_send(struct control *ctl, uint64_t conn_id, const char *buf, size_t len)
{
	struct control_conn *c = conn_find(ctl, conn_id);

	if (c == NULL)
		return -ENOENT;
	if (bufferevent_write(c->bev, buf, len) < 0)
		return -ENOMEM;
	return 0;
}

void
control_drain(struct control *ctl)
{
	struct control_conn *c;

	if (ctl->draining)
		return;
	ctl->draining = 1;
	if (ctl->listener != NULL) {
		evconnlistener_free(ctl->listener);
		ctl->listener = NULL;
	}
	TAILQ_FOREACH(c, &ctl->conns, entry)
		bufferevent_disable(c->bev, EV_READ);
	control_schedule_reap(ctl);
}

void
control_hold(struct control *ctl, uint64_t conn_id)
{
	struct control_conn *c = conn_find(ctl, conn_id);

	if (c != NULL)
		c->in_flight++;
}

void
control_release(struct control *ctl, uint64_t conn_id)
{
	struct control_conn *c = conn_find(ctl, conn_id);

	if (c == NULL || c->in_flight == 0)
		return;
	c->in_flight--;
	/* Freed from the write callback or the drain check, never here: we
	 * may be inside this connection's read callback. */
	if (c->in_flight == 0 && (c->closing || ctl->draining))
		control_schedule_reap(ctl);
}

size_t
control_connection_count(const struct control *ctl)
{
	return ctl->nconns;
}
