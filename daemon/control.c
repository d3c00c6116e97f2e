/*
 * Control socket transport (see control.h). Each connection owns one
 * bufferevent; lines are cut with evbuffer_search_eol so a request split
 * across reads is reassembled and pipelined requests are delivered in
 * order. What bounds a connection:
 *
 * - its input: the bufferevent reads no further than one line limit ahead
 *   (a read high-water mark), so a client that writes faster than it is
 *   served waits in its own socket buffer;
 * - its output: once its unsent replies pass the high-water mark it is not
 *   read until they drain to a quarter of it, so a client that never reads
 *   only slows itself down;
 * - its share of the loop: at most lines_per_turn lines, and no more than
 *   a share of the turn's time (loop-share.h), are delivered per loop
 *   turn; the rest wait on the ready list, served round-robin from a zero
 *   timeout (so the loop polls every socket between two turns), and a
 *   consumer that needs several turns for one line (a batch) defers the
 *   connection until it is done.
 *
 * Accepting is paced the same way (a bounded number per turn), refuses
 * clients past the global or per-user connection limit with one reply line,
 * and when the process runs out of descriptors pauses with a growing
 * back-off instead of spinning, logging once per interval.
 */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "caller-open.h"
#include "control.h"
#include "log.h"
#include "loop-share.h"
#include "platform.h"
#include "rpc-codec.h"

#define ACCEPTS_PER_TURN	64
#define ACCEPT_BACKOFF_MIN_MS	50
#define ACCEPT_BACKOFF_MAX_MS	2000
#define REPORT_INTERVAL_S	10	/* refusals and accept errors */
/* A connection whose buffers held this much gives memory back when it goes. */
#define CONN_BIG_BYTES		(256u * 1024)

struct control_conn {
	TAILQ_ENTRY(control_conn) entry;
	TAILQ_ENTRY(control_conn) ready_entry;
	struct control *ctl;
	struct bufferevent *bev;
	struct control_peer peer;
	unsigned in_flight;	/* calls not yet answered */
	int closing;		/* close once output is flushed */
	int eof;		/* the peer sent EOF; what it sent is still served */
	int read_paused;	/* by back-pressure */
	int deferred;		/* the consumer is still busy with a line */
	int on_ready;		/* has lines waiting for the next turn */
	int big;		/* its buffers grew past CONN_BIG_BYTES */
	int watch_output;	/* on_writable when its output drains */
	int awaiting_account;	/* not read until its uid's account is looked up */
};

struct control_user {
	uid_t uid;
	size_t count;
};

/* Rate-limited reporting of one kind of event. */
struct control_report {
	time_t last;
	unsigned long unreported;
};

struct control {
	struct event_base *base;
	struct evconnlistener *listener;
	char *path;		/* NULL when the socket was inherited */
	struct control_callbacks cb;
	void *ctx;
	struct control_limits lim;
	TAILQ_HEAD(, control_conn) conns;
	TAILQ_HEAD(, control_conn) ready;
	size_t nconns, nready;
	struct control_user *users;	/* one row per connected uid */
	size_t nusers, users_cap;
	uint64_t next_id;
	int draining;
	struct event *drain_check;
	struct event *ev_ready;		/* serves the ready list */
	struct event *ev_accept;	/* re-enables a paused listener */
	unsigned accepts_this_turn;
	unsigned accept_backoff_ms;
	struct control_report refusals, accept_errors;
};

static void conn_read_cb(struct bufferevent *bev, void *arg);
static void conn_write_cb(struct bufferevent *bev, void *arg);
static void conn_event_cb(struct bufferevent *bev, short what, void *arg);

/* Whether to log now; counts what is not logged. */
static int
report_due(struct control_report *r, unsigned long *suppressed)
{
	time_t now = time(NULL);

	if (r->last != 0 && now - r->last < REPORT_INTERVAL_S) {
		r->unreported++;
		return 0;
	}
	*suppressed = r->unreported;
	r->unreported = 0;
	r->last = now;
	return 1;
}

static struct control_user *
user_row(struct control *ctl, uid_t uid)
{
	for (size_t i = 0; i < ctl->nusers; i++)
		if (ctl->users[i].uid == uid)
			return &ctl->users[i];
	return NULL;
}

static int
user_add(struct control *ctl, uid_t uid)
{
	struct control_user *u = user_row(ctl, uid);

	if (u == NULL) {
		if (ctl->nusers == ctl->users_cap) {
			size_t cap = ctl->users_cap ? ctl->users_cap * 2 : 8;
			struct control_user *n = realloc(ctl->users, cap * sizeof(*n));
			if (n == NULL)
				return -ENOMEM;
			ctl->users = n;
			ctl->users_cap = cap;
		}
		u = &ctl->users[ctl->nusers++];
		u->uid = uid;
		u->count = 0;
	}
	u->count++;
	return 0;
}

static void
user_remove(struct control *ctl, uid_t uid)
{
	struct control_user *u = user_row(ctl, uid);

	if (u == NULL || --u->count > 0)
		return;
	*u = ctl->users[--ctl->nusers];
}

static struct control_conn *
conn_find(struct control *ctl, uint64_t id)
{
	struct control_conn *c;

	TAILQ_FOREACH(c, &ctl->conns, entry)
		if (c->peer.conn_id == id)
			return c;
	return NULL;
}

static size_t
conn_output_len(struct control_conn *c)
{
	return evbuffer_get_length(bufferevent_get_output(c->bev));
}

static void
control_schedule_reap(struct control *ctl)
{
	if (ctl->drain_check != NULL)
		event_active(ctl->drain_check, EV_TIMEOUT, 0);
}

/* Unlinks and frees a connection; only from libevent callbacks, never
 * while on_line runs for it. */
static void
conn_destroy(struct control_conn *c)
{
	struct control *ctl = c->ctl;

	log_debug("control: connection %llu closed", (unsigned long long)c->peer.conn_id);
	TAILQ_REMOVE(&ctl->conns, c, entry);
	if (c->on_ready) {
		TAILQ_REMOVE(&ctl->ready, c, ready_entry);
		ctl->nready--;
	}
	ctl->nconns--;
	user_remove(ctl, c->peer.uid);
	if (ctl->cb.on_closed != NULL)
		ctl->cb.on_closed(ctl->ctx, c->peer.conn_id);
	bufferevent_free(c->bev);
	/* glibc keeps freed arenas; a client that made us buffer megabytes
	 * should not leave them held after it has gone. */
	if (c->big)
		malloc_trim(0);
	free(c);
}

static void
conn_free(struct control_conn *c)
{
	struct control *ctl = c->ctl;

	conn_destroy(c);
	control_schedule_reap(ctl);
}

/* Whether a connection may be closed now: nothing in flight and, when we
 * are closing it, all output written. */
static int
conn_finished(struct control_conn *c)
{
	return c->in_flight == 0 && !c->deferred && conn_output_len(c) == 0;
}

/* Reads no more; whoever runs next for it (conn_service, the write
 * callback, the reap) frees it once it is finished. Never frees it here:
 * the callers still use it. */
static void
conn_mark_closing(struct control_conn *c)
{
	c->closing = 1;
	bufferevent_disable(c->bev, EV_READ);
}

static void
conn_mark_ready(struct control_conn *c)
{
	struct control *ctl = c->ctl;

	if (c->on_ready)
		return;
	c->on_ready = 1;
	TAILQ_INSERT_TAIL(&ctl->ready, c, ready_entry);
	ctl->nready++;
	if (!evtimer_pending(ctl->ev_ready, NULL)) {
		struct timeval now = { 0, 0 };
		evtimer_add(ctl->ev_ready, &now);
	}
}

static void
conn_pause_reading(struct control_conn *c)
{
	if (c->read_paused)
		return;
	c->read_paused = 1;
	bufferevent_disable(c->bev, EV_READ);
	bufferevent_setwatermark(c->bev, EV_WRITE, c->ctl->lim.reply_high_water / 4, 0);
}

static int
line_is_blank(const char *line, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (line[i] != ' ' && line[i] != '\t' && line[i] != '\r')
			return 0;
	return 1;
}

/* Delivers a share of the turn's lines (at most lines_per_turn, within the
 * share's time); leaves the rest for the next turn.
 * After EOF, bytes without a final newline are the last line. */
static void
conn_deliver_lines(struct control_conn *c)
{
	struct control *ctl = c->ctl;
	struct evbuffer *in = bufferevent_get_input(c->bev);
	struct loop_share share;

	loop_share_start(&share, ctl->lim.lines_per_turn);
	if (evbuffer_get_length(in) >= CONN_BIG_BYTES)
		c->big = 1;
	while (!c->closing && !c->deferred && !ctl->draining) {
		size_t eol_len = 0, len;
		struct evbuffer_ptr eol;

		if (conn_output_len(c) > ctl->lim.reply_high_water) {
			c->big = 1;
			conn_pause_reading(c);
			return;
		}
		if (evbuffer_get_length(in) == 0)
			return;
		if (!loop_share_take(&share)) {
			conn_mark_ready(c);
			return;
		}
		eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_LF);
		if (eol.pos < 0) {
			len = evbuffer_get_length(in);
			if (len > RPC_MAX_LINE)
				goto oversize;
			if (!c->eof)
				return;	/* the rest of the line is still coming */
		} else if ((size_t)eol.pos > RPC_MAX_LINE)
			goto oversize;
		else
			len = (size_t)eol.pos;

		char *line = malloc(len + 1);
		if (line == NULL) {
			log_warnx("control: out of memory reading a request");
			conn_mark_closing(c);
			return;
		}
		evbuffer_remove(in, line, len);
		evbuffer_drain(in, eol_len);
		line[len] = '\0';
		/* The callback may send replies on this connection; it cannot
		 * free it (frees only happen from libevent callbacks). */
		if (!line_is_blank(line, len))
			ctl->cb.on_line(ctl->ctx, &c->peer, line, len);
		free(line);
	}
	return;

oversize:
	log_warnx("control: connection %llu (uid %u) sent a line over %u bytes; closing it",
	    (unsigned long long)c->peer.conn_id, (unsigned)c->peer.uid, RPC_MAX_LINE);
	evbuffer_drain(in, evbuffer_get_length(in));
	if (ctl->cb.on_oversize != NULL) {
		size_t rlen = 0;
		char *reply = ctl->cb.on_oversize(ctl->ctx, &c->peer, &rlen);
		if (reply != NULL)
			bufferevent_write(c->bev, reply, rlen);
		free(reply);
	}
	conn_mark_closing(c);
}

/* Serves a connection's buffered lines, then closes it when its peer is
 * done and everything is answered. May free c. */
static void
conn_service(struct control_conn *c)
{
	conn_deliver_lines(c);
	if (c->eof && !c->deferred && !c->on_ready && !c->read_paused &&
	    evbuffer_get_length(bufferevent_get_input(c->bev)) == 0)
		c->closing = 1;
	if ((c->closing || c->ctl->draining) && conn_finished(c))
		conn_free(c);
}

/* One turn for each connection that was waiting when the turn began. */
static void
control_ready_cb(evutil_socket_t fd, short what, void *arg)
{
	struct control *ctl = arg;
	size_t n = ctl->nready;

	while (n-- > 0) {
		struct control_conn *c = TAILQ_FIRST(&ctl->ready);
		if (c == NULL)
			break;
		TAILQ_REMOVE(&ctl->ready, c, ready_entry);
		ctl->nready--;
		c->on_ready = 0;
		conn_service(c);
	}
}

static void
conn_read_cb(struct bufferevent *bev, void *arg)
{
	struct control_conn *c = arg;

	if (c->on_ready)
		return;	/* its turn comes from the ready list */
	conn_service(c);
}

static void
conn_write_cb(struct bufferevent *bev, void *arg)
{
	struct control_conn *c = arg;
	struct control *ctl = c->ctl;

	if (c->read_paused && conn_output_len(c) <= ctl->lim.reply_high_water / 4) {
		c->read_paused = 0;
		bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
		if (!c->closing && !c->eof && !ctl->draining && !c->awaiting_account)
			bufferevent_enable(bev, EV_READ);
		conn_mark_ready(c);	/* lines that arrived while paused */
	}
	if (c->watch_output && ctl->cb.on_writable != NULL)
		ctl->cb.on_writable(ctl->ctx, c->peer.conn_id);
	if ((c->closing || ctl->draining) && conn_finished(c))
		conn_free(c);
}

static void
conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct control_conn *c = arg;

	if (what & BEV_EVENT_EOF) {
		/* Serve what arrived before EOF, including a last line
		 * without a newline; the client may have half-closed and
		 * still waits for the replies. */
		c->eof = 1;
		if (!c->on_ready)
			conn_service(c);
		return;
	}
	if (what & BEV_EVENT_ERROR) {
		log_debug("control: connection %llu: %s", (unsigned long long)c->peer.conn_id,
		    strerror(EVUTIL_SOCKET_ERROR()));
		/* Nobody can read the replies any more: drop the connection;
		 * replies to its calls in flight will find no connection. */
		c->in_flight = 0;
		c->deferred = 0;
		conn_free(c);
	}
}

/* Sends the refusal (a fresh socket's buffer takes one line) and closes. */
static void
control_refuse(struct control *ctl, int fd, const struct control_peer *peer,
    const char *limit, size_t use, size_t max)
{
	unsigned long suppressed = 0;

	if (report_due(&ctl->refusals, &suppressed))
		log_warnx("control: refused a connection from uid %u: %s reached "
		    "(%zu open, max %zu)%s", (unsigned)peer->uid, limit, use, max,
		    suppressed ? " (and others since the last report)" : "");
	if (ctl->cb.on_refused != NULL) {
		size_t len = 0;
		char *reply = ctl->cb.on_refused(ctl->ctx, peer, limit, use, max, &len);
		if (reply != NULL && write(fd, reply, len) < 0)
			log_debug("control: cannot send the refusal: %s", strerror(errno));
		free(reply);
	}
	shutdown(fd, SHUT_WR);
	close(fd);
}

static void
control_pause_accepting(struct control *ctl, unsigned ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	if (ctl->listener == NULL)
		return;
	evconnlistener_disable(ctl->listener);
	evtimer_add(ctl->ev_accept, &tv);
}

static void
control_accept_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct control *ctl = arg;

	ctl->accepts_this_turn = 0;
	if (ctl->listener != NULL && !ctl->draining)
		evconnlistener_enable(ctl->listener);
}

/* Root may use the last few connections the others cannot. */
static size_t
control_root_reserve(const struct control *ctl)
{
	size_t r = ctl->lim.max_connections / 8;

	return r < CONTROL_ROOT_RESERVE ? r : CONTROL_ROOT_RESERVE;
}

/* The lookup of uid's account has answered (or failed): its connections
 * are read from now on. */
static void
control_account_done(void *ctx, uid_t uid, int result)
{
	struct control *ctl = ctx;
	struct control_conn *c;

	TAILQ_FOREACH(c, &ctl->conns, entry) {
		if (!c->awaiting_account || c->peer.uid != uid)
			continue;
		c->awaiting_account = 0;
		if (!c->closing && !c->eof && !ctl->draining && !c->read_paused)
			bufferevent_enable(c->bev, EV_READ);
	}
}

static void
control_accept_cb(struct evconnlistener *listener, evutil_socket_t fd,
    struct sockaddr *sa, int socklen, void *arg)
{
	struct control *ctl = arg;
	struct control_peer peer = { 0 };
	struct control_conn *c;
	size_t max, ulimit;
	int r;

	ctl->accept_backoff_ms = 0;
	if (++ctl->accepts_this_turn >= ACCEPTS_PER_TURN)
		control_pause_accepting(ctl, 0);	/* let the others be served */
	if (ctl->draining) {
		close(fd);
		return;
	}
	if (platform_peer_creds(fd, &peer.uid, &peer.gid, &peer.pid) < 0) {
		log_warnx("control: cannot read peer credentials; refusing client");
		close(fd);
		return;
	}
	peer.ngroups = platform_peer_groups(fd, peer.groups, CONTROL_PEER_GROUPS_MAX);
	max = ctl->lim.max_connections;
	if (peer.uid != 0)
		max -= control_root_reserve(ctl);
	if (ctl->nconns >= max) {
		control_refuse(ctl, fd, &peer, "max_connections", ctl->nconns, max);
		return;
	}
	ulimit = ctl->cb.user_connection_limit != NULL ?
	    ctl->cb.user_connection_limit(ctl->ctx, peer.uid) : 0;
	if (ulimit > 0 && control_user_connection_count(ctl, peer.uid) >= ulimit) {
		control_refuse(ctl, fd, &peer, "connections",
		    control_user_connection_count(ctl, peer.uid), ulimit);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL || user_add(ctl, peer.uid) < 0) {
		log_warnx("control: out of memory accepting a client");
		free(c);
		close(fd);
		return;
	}
	c->ctl = ctl;
	c->peer = peer;
	c->peer.conn_id = ++ctl->next_id;
	c->bev = bufferevent_socket_new(ctl->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL) {
		user_remove(ctl, peer.uid);
		free(c);
		close(fd);
		return;
	}
	bufferevent_setcb(c->bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
	/* Read at most one line limit ahead of what has been served. */
	bufferevent_setwatermark(c->bev, EV_READ, 0, RPC_MAX_LINE + 2);
	/* A non-root peer's account is looked up once, off the loop, before
	 * its first request is read (caller-open.h); other clients are served
	 * meanwhile. A lookup that fails or hangs is logged there, and the
	 * connection is then served all the same. */
	r = caller_account_resolve(ctl->base, peer.uid, control_account_done, ctl);
	if (r < 0)
		log_warnx("control: uid %u: cannot look up its account: %s", (unsigned)peer.uid,
		    strerror(-r));
	c->awaiting_account = r == 0;
	bufferevent_enable(c->bev, c->awaiting_account ? EV_WRITE : EV_READ | EV_WRITE);
	TAILQ_INSERT_TAIL(&ctl->conns, c, entry);
	ctl->nconns++;
	log_debug("control: connection %llu from uid %u pid %d",
	    (unsigned long long)c->peer.conn_id, (unsigned)c->peer.uid, (int)c->peer.pid);
}

static void
control_accept_error_cb(struct evconnlistener *listener, void *arg)
{
	struct control *ctl = arg;
	int e = EVUTIL_SOCKET_ERROR();
	unsigned long suppressed = 0;
	unsigned ms;

	/* Out of descriptors (or memory): the listening socket stays readable,
	 * so retrying at once would spin. Pause, doubling up to a ceiling,
	 * and keep serving the clients we have. */
	ms = ctl->accept_backoff_ms == 0 ? ACCEPT_BACKOFF_MIN_MS : ctl->accept_backoff_ms * 2;
	if (ms > ACCEPT_BACKOFF_MAX_MS)
		ms = ACCEPT_BACKOFF_MAX_MS;
	ctl->accept_backoff_ms = ms;
	if (report_due(&ctl->accept_errors, &suppressed))
		log_warnx("control: accept: %s; pausing new connections for %u ms "
		    "(%zu open; %lu more failures since the last report)", strerror(e), ms,
		    ctl->nconns, suppressed);
	control_pause_accepting(ctl, ms);
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
		if ((c->closing || ctl->draining) && conn_finished(c))
			conn_destroy(c);
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

int
control_listen_fd(const struct control *ctl)
{
	return ctl != NULL && ctl->listener != NULL ?
	    (int)evconnlistener_get_fd(ctl->listener) : -1;
}

struct control *
control_new(struct event_base *base, const char *path, int listen_fd, gid_t group,
    const struct control_callbacks *cb, void *ctx, struct ember_error *err)
{
	struct control *ctl = calloc(1, sizeof(*ctl));
	static const struct control_limits defaults = { 0 };

	if (ctl == NULL) {
		ember_error_set(err, EK_INTERNAL, NULL, "out of memory");
		return NULL;
	}
	ctl->base = base;
	ctl->cb = *cb;
	ctl->ctx = ctx;
	TAILQ_INIT(&ctl->conns);
	TAILQ_INIT(&ctl->ready);
	control_set_limits(ctl, &defaults);
	if (listen_fd < 0) {
		listen_fd = control_bind(path, group, err);
		if (listen_fd < 0) {
			free(ctl);
			return NULL;
		}
		ctl->path = strdup(path);
	} else
		evutil_make_socket_nonblocking(listen_fd);
	/* Backlog 0: the socket listens already (control_bind's 512, or the
	 * service manager's); -1 would make libevent shrink it to 128. */
	ctl->listener = evconnlistener_new(base, control_accept_cb, ctl,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, listen_fd);
	ctl->drain_check = event_new(base, -1, 0, control_reap_cb, ctl);
	ctl->ev_ready = evtimer_new(base, control_ready_cb, ctl);
	ctl->ev_accept = evtimer_new(base, control_accept_resume_cb, ctl);
	if (ctl->listener == NULL || ctl->drain_check == NULL || ctl->ev_ready == NULL ||
	    ctl->ev_accept == NULL) {
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
	caller_accounts_cancel(ctl);
	if (ctl->listener != NULL)
		evconnlistener_free(ctl->listener);
	while ((c = TAILQ_FIRST(&ctl->conns)) != NULL) {
		TAILQ_REMOVE(&ctl->conns, c, entry);
		bufferevent_free(c->bev);
		free(c);
	}
	if (ctl->drain_check != NULL)
		event_free(ctl->drain_check);
	if (ctl->ev_ready != NULL)
		event_free(ctl->ev_ready);
	if (ctl->ev_accept != NULL)
		event_free(ctl->ev_accept);
	if (ctl->path != NULL) {
		unlink(ctl->path);
		free(ctl->path);
	}
	free(ctl->users);
	free(ctl);
}

size_t
control_set_limits(struct control *ctl, const struct control_limits *lim)
{
	struct rlimit rl;
	size_t max = lim->max_connections ? lim->max_connections :
	    CONTROL_MAX_CONNECTIONS_DEFAULT;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
		size_t fds = (size_t)rl.rlim_cur, reserve = fds / 4;
		if (reserve < CONTROL_FD_RESERVE_MIN)
			reserve = CONTROL_FD_RESERVE_MIN;
		if (reserve > fds / 2)
			reserve = fds / 2;
		if (max > fds - reserve) {
			log_info("control: max_connections %zu lowered to %zu to stay below "
			    "the open file limit (%zu)", max, fds - reserve, fds);
			max = fds - reserve;
		}
	}
	ctl->lim.max_connections = max > 0 ? max : 1;
	ctl->lim.reply_high_water = lim->reply_high_water ? lim->reply_high_water :
	    CONTROL_REPLY_HIGH_WATER_DEFAULT;
	ctl->lim.lines_per_turn = lim->lines_per_turn ? lim->lines_per_turn :
	    CONTROL_LINES_PER_TURN_DEFAULT;
	return ctl->lim.max_connections;
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
control_close(struct control *ctl, uint64_t conn_id)
{
	struct control_conn *c = conn_find(ctl, conn_id);

	if (c == NULL || c->closing)
		return;
	log_warnx("control: connection %llu closed: a reply to it could not be built",
	    (unsigned long long)conn_id);
	conn_mark_closing(c);
	control_schedule_reap(ctl);
}

long long
control_pending_output(struct control *ctl, uint64_t conn_id)
{
	struct control_conn *c = conn_find(ctl, conn_id);

	return c != NULL ? (long long)conn_output_len(c) : -ENOENT;
}

void
control_watch_output(struct control *ctl, uint64_t conn_id)
{
	struct control_conn *c = conn_find(ctl, conn_id);

	if (c != NULL)
		c->watch_output = 1;
}

static void
control_drain_as(struct control *ctl, bool keep_listener)
{
	struct control_conn *c;

	if (ctl->draining) {
		if (!keep_listener && ctl->listener != NULL) {
			evconnlistener_free(ctl->listener);
			ctl->listener = NULL;
		}
		return;
	}
	ctl->draining = 1;
	if (ctl->listener != NULL) {
		if (keep_listener)
			evconnlistener_disable(ctl->listener);
		else {
			evconnlistener_free(ctl->listener);
			ctl->listener = NULL;
		}
	}
	TAILQ_FOREACH(c, &ctl->conns, entry)
		bufferevent_disable(c->bev, EV_READ);
	control_schedule_reap(ctl);
}

void
control_drain(struct control *ctl)
{
	control_drain_as(ctl, false);
}

void
control_drain_keep_listener(struct control *ctl)
{
	control_drain_as(ctl, true);
}

void
control_undrain(struct control *ctl)
{
	struct control_conn *c;

	if (ctl == NULL || !ctl->draining)
		return;
	ctl->draining = 0;
	if (ctl->listener != NULL)
		evconnlistener_enable(ctl->listener);
	TAILQ_FOREACH(c, &ctl->conns, entry)
		if (!c->closing && !c->eof && !c->awaiting_account)
			bufferevent_enable(c->bev, EV_READ);
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
	if (c->in_flight == 0 && (c->closing || c->eof || ctl->draining))
		control_schedule_reap(ctl);
}

void
control_defer(struct control *ctl, uint64_t conn_id)
{
	struct control_conn *c = conn_find(ctl, conn_id);

	if (c != NULL)
		c->deferred = 1;
}

void
control_resume(struct control *ctl, uint64_t conn_id)
{
	struct control_conn *c = conn_find(ctl, conn_id);

	if (c == NULL || !c->deferred)
		return;
	c->deferred = 0;
	/* Served from the ready list: we may be inside its callbacks. */
	conn_mark_ready(c);
}

size_t
control_connection_count(const struct control *ctl)
{
	return ctl->nconns;
}

size_t
control_user_connection_count(const struct control *ctl, uid_t uid)
{
	for (size_t i = 0; i < ctl->nusers; i++)
		if (ctl->users[i].uid == uid)
			return ctl->users[i].count;
	return 0;
}
