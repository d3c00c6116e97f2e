/*
 * QMP client (see qmp.h). The monitor speaks one JSON object per line:
 * a greeting, then replies carrying our "id" and events carrying "event".
 * Replies are matched by id, so a reply that arrives after its timeout is
 * recognised and dropped.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "dir-guard.h"
#include "log.h"
#include "platform.h"
#include "qmp.h"

#define QMP_MAX_LINE (4 * 1024 * 1024)

struct qmp_pending {
	TAILQ_ENTRY(qmp_pending) entry;
	struct qmp *q;
	unsigned long id;
	struct event *timer;
	qmp_reply_fn cb;
	void *ctx;
};

enum qmp_state { QMP_IDLE, QMP_CONNECTING, QMP_GREETING, QMP_NEGOTIATING, QMP_READY, QMP_CLOSED };

struct qmp {
	struct event_base *base;
	struct bufferevent *bev;
	enum qmp_state state;
	char path[108];
	struct event *retry;		/* connect retry and deadline */
	struct timeval deadline;
	unsigned long next_id;
	TAILQ_HEAD(, qmp_pending) pending;
	qmp_ready_fn ready;
	void *ready_ctx;
	qmp_event_fn on_event;
	qmp_closed_fn on_closed;
	void *ctx;
};

static void qmp_read_cb(struct bufferevent *bev, void *arg);
static void qmp_event_cb(struct bufferevent *bev, short what, void *arg);

struct qmp *
qmp_new(struct event_base *base, qmp_event_fn on_event, qmp_closed_fn on_closed, void *ctx)
{
	struct qmp *q = calloc(1, sizeof(*q));

	if (q == NULL)
		return NULL;
	q->base = base;
	q->on_event = on_event;
	q->on_closed = on_closed;
	q->ctx = ctx;
	TAILQ_INIT(&q->pending);
	return q;
}

static void
qmp_pending_free(struct qmp_pending *p)
{
	TAILQ_REMOVE(&p->q->pending, p, entry);
	if (p->timer != NULL)
		event_free(p->timer);
	free(p);
}

/* Fails every pending command, then reports the close once. */
static void
qmp_close(struct qmp *q, const char *why)
{
	struct qmp_pending *p;
	enum qmp_state was = q->state;

	q->state = QMP_CLOSED;
	if (q->bev != NULL) {
		bufferevent_free(q->bev);
		q->bev = NULL;
	}
	if (q->retry != NULL) {
		event_free(q->retry);
		q->retry = NULL;
	}
	while ((p = TAILQ_FIRST(&q->pending)) != NULL) {
		qmp_reply_fn cb = p->cb;
		void *ctx = p->ctx;
		qmp_pending_free(p);
		cb(ctx, NULL, why);
	}
	if (was != QMP_READY && q->ready != NULL) {
		qmp_ready_fn ready = q->ready;
		q->ready = NULL;
		ready(q->ready_ctx, why);
		return;
	}
	if (was == QMP_READY && q->on_closed != NULL)
		q->on_closed(q->ctx);
}

void
qmp_free(struct qmp *q)
{
	struct qmp_pending *p;

	if (q == NULL)
		return;
	while ((p = TAILQ_FIRST(&q->pending)) != NULL)
		qmp_pending_free(p);
	if (q->bev != NULL)
		bufferevent_free(q->bev);
	if (q->retry != NULL)
		event_free(q->retry);
	free(q);
}

static int
qmp_send_line(struct qmp *q, json_t *msg)
{
	char *s = json_dumps(msg, JSON_COMPACT);
	int r;

	if (s == NULL)
		return -ENOMEM;
	r = bufferevent_write(q->bev, s, strlen(s));
	if (r == 0)
		r = bufferevent_write(q->bev, "\n", 1);
	free(s);
	return r < 0 ? -EIO : 0;
}

static void
qmp_handle(struct qmp *q, json_t *msg)
{
	json_t *id, *v;

	if (q->state == QMP_GREETING) {
		if (json_object_get(msg, "QMP") == NULL) {
			qmp_close(q, "QEMU did not send a QMP greeting");
			return;
		}
		json_t *caps = json_pack("{s:s, s:s}", "execute", "qmp_capabilities", "id", "caps");
		q->state = QMP_NEGOTIATING;
		if (qmp_send_line(q, caps) < 0)
			qmp_close(q, "cannot write to QMP");
		json_decref(caps);
		return;
	}
	if (q->state == QMP_NEGOTIATING) {
		if (json_object_get(msg, "return") == NULL) {
			if (json_object_get(msg, "event") != NULL)
				return;	/* events may precede the reply */
			qmp_close(q, "QMP capabilities negotiation failed");
			return;
		}
		q->state = QMP_READY;
		if (q->retry != NULL) {
			event_free(q->retry);
			q->retry = NULL;
		}
		qmp_ready_fn ready = q->ready;
		q->ready = NULL;
		if (ready != NULL)
			ready(q->ready_ctx, NULL);
		return;
	}
	if ((v = json_object_get(msg, "event")) != NULL && json_is_string(v)) {
		if (q->on_event != NULL)
			q->on_event(q->ctx, json_string_value(v), json_object_get(msg, "data"));
		return;
	}
	id = json_object_get(msg, "id");
	if (!json_is_integer(id))
		return;
	struct qmp_pending *p;
	TAILQ_FOREACH(p, &q->pending, entry)
		if (p->id == (unsigned long)json_integer_value(id))
			break;
	if (p == NULL)
		return;	/* timed out earlier */
	qmp_reply_fn cb = p->cb;
	void *ctx = p->ctx;
	qmp_pending_free(p);
	if ((v = json_object_get(msg, "return")) != NULL)
		cb(ctx, v, NULL);
	else {
		json_t *e = json_object_get(msg, "error");
		const char *desc = json_string_value(json_object_get(e, "desc"));
		cb(ctx, NULL, desc != NULL ? desc : "QMP error");
	}
}

static void
qmp_read_cb(struct bufferevent *bev, void *arg)
{
	struct qmp *q = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	char *line;
	size_t len;

	while (q->state != QMP_CLOSED &&
	    (line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF)) != NULL) {
		json_error_t jerr;
		json_t *msg = json_loadb(line, len, 0, &jerr);
		free(line);
		if (msg == NULL || !json_is_object(msg)) {
			log_debug("qmp: unparsable line from QEMU: %s", jerr.text);
			json_decref(msg);
			continue;
		}
		qmp_handle(q, msg);
		json_decref(msg);
	}
	if (q->state != QMP_CLOSED && evbuffer_get_length(in) > QMP_MAX_LINE)
		qmp_close(q, "QMP line too long");
}

static void
qmp_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct qmp *q = arg;

	if (what & BEV_EVENT_CONNECTED) {
		q->state = QMP_GREETING;
		return;
	}
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		qmp_close(q, what & BEV_EVENT_EOF ? "QMP connection closed" :
		    "QMP connection failed");
}

static int
qmp_try_connect(struct qmp *q)
{
	/* Only the socket emberd bound: the VM directory is writable by its owner. */
	int fd = guard_unix_connect(q->path, geteuid());

	if (fd < 0)
		return fd;
	q->bev = bufferevent_socket_new(q->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (q->bev == NULL) {
		close(fd);
		return -ENOMEM;
	}
	bufferevent_setcb(q->bev, qmp_read_cb, NULL, qmp_event_cb, q);
	bufferevent_enable(q->bev, EV_READ | EV_WRITE);
	q->state = QMP_GREETING;
	return 0;
}

static void
qmp_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct qmp *q = arg;
	struct timeval now, step = { 0, 20000 };
	int r;

	if (q->state == QMP_CONNECTING) {
		r = qmp_try_connect(q);
		if (r == 0) {
			/* Keep the timer as the handshake deadline. */
			struct timeval left;
			event_base_gettimeofday_cached(q->base, &now);
			evutil_timersub(&q->deadline, &now, &left);
			if (left.tv_sec < 0)
				left = (struct timeval){ 0, 0 };
			evtimer_add(q->retry, &left);
			return;
		}
		event_base_gettimeofday_cached(q->base, &now);
		if (evutil_timercmp(&now, &q->deadline, <) && (r == -ENOENT || r == -ECONNREFUSED)) {
			evtimer_add(q->retry, &step);
			return;
		}
		qmp_close(q, strerror(-r));
		return;
	}
	if (q->state != QMP_READY)
		qmp_close(q, "QMP handshake timed out");
}

int
qmp_connect(struct qmp *q, const char *path, int timeout_ms, qmp_ready_fn ready, void *ctx)
{
	struct timeval now, span = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };

	if (strlen(path) >= sizeof(q->path))
		return -ENAMETOOLONG;
	snprintf(q->path, sizeof(q->path), "%s", path);
	q->ready = ready;
	q->ready_ctx = ctx;
	q->state = QMP_CONNECTING;
	event_base_gettimeofday_cached(q->base, &now);
	evutil_timeradd(&now, &span, &q->deadline);
	q->retry = evtimer_new(q->base, qmp_retry_cb, q);
	if (q->retry == NULL)
		return -ENOMEM;
	{
		struct timeval delay = { 0, 0 };
		evtimer_add(q->retry, &delay);
	}
	return 0;
}

static void
qmp_command_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct qmp_pending *p = arg;
	qmp_reply_fn cb = p->cb;
	void *ctx = p->ctx;

	qmp_pending_free(p);
	cb(ctx, NULL, "QMP command timed out");
}

int
qmp_command(struct qmp *q, const char *cmd, json_t *args, int timeout_ms,
    qmp_reply_fn cb, void *ctx)
{
	struct qmp_pending *p;
	json_t *msg;
	int r;

	if (q->state != QMP_READY) {
		json_decref(args);
		return -ENOTCONN;
	}
	p = calloc(1, sizeof(*p));
	if (p == NULL) {
		json_decref(args);
		return -ENOMEM;
	}
	p->q = q;
	p->id = ++q->next_id;
	p->cb = cb;
	p->ctx = ctx;
	msg = json_pack("{s:s, s:I}", "execute", cmd, "id", (json_int_t)p->id);
	if (args != NULL)
		json_object_set_new(msg, "arguments", args);
	r = qmp_send_line(q, msg);
	json_decref(msg);
	if (r < 0) {
		free(p);
		return r;
	}
	TAILQ_INSERT_TAIL(&q->pending, p, entry);
	p->timer = evtimer_new(q->base, qmp_command_timeout, p);
	struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
	evtimer_add(p->timer, &tv);
	return 0;
}
