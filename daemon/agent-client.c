/*
 * Agent requests over the hybrid vsock socket (see agent-client.h). A call
 * is a small state machine on a bufferevent: connect, send "CONNECT 1024\n"
 * and the request line together, read the "OK <port>" line, then the reply
 * line; a timer bounds the whole exchange. A connection that ends before
 * "OK" is the guest refusing the port (the hybrid socket's way of passing on
 * a vsock RST), reported with agent_refused_msg so callers can count it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "agent-client.h"
#include "dir-guard.h"
#include "log.h"
#include "platform.h"

static const char agent_refused_msg[] =
    "no agent is listening in the guest (connection closed without OK)";

struct agent_call {
	struct bufferevent *bev;
	struct event *timer;
	int got_ok;
	agent_reply_fn cb;
	void *ctx;
};

static void
agent_call_free(struct agent_call *c)
{
	if (c->bev != NULL)
		bufferevent_free(c->bev);
	if (c->timer != NULL)
		event_free(c->timer);
	free(c);
}

static void
agent_call_finish(struct agent_call *c, json_t *reply, const char *err)
{
	agent_reply_fn cb = c->cb;
	void *ctx = c->ctx;

	agent_call_free(c);
	cb(ctx, reply, err);
}

static void
agent_read_cb(struct bufferevent *bev, void *arg)
{
	struct agent_call *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t len;
	char *line;

	while ((line = evbuffer_readln(in, &len, EVBUFFER_EOL_LF)) != NULL) {
		if (!c->got_ok) {
			c->got_ok = strncmp(line, "OK ", 3) == 0;
			free(line);
			if (!c->got_ok) {
				agent_call_finish(c, NULL, "the vsock socket refused the agent port");
				return;
			}
			continue;
		}
		json_error_t jerr;
		json_t *reply = json_loadb(line, len, 0, &jerr);
		free(line);
		if (!json_is_object(reply)) {
			json_decref(reply);
			agent_call_finish(c, NULL, "the agent sent a malformed reply");
			return;
		}
		agent_call_finish(c, reply, NULL);
		json_decref(reply);
		return;
	}
	if (evbuffer_get_length(in) > AGENT_REPLY_MAX)
		agent_call_finish(c, NULL, "the agent's reply is too large");
}

static void
agent_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct agent_call *c = arg;

	int e = EVUTIL_SOCKET_ERROR();

	if (!c->got_ok && ((what & BEV_EVENT_EOF) ||
	    ((what & BEV_EVENT_ERROR) && (e == ECONNRESET || e == EPIPE))))
		agent_call_finish(c, NULL, agent_refused_msg);
	else if (what & BEV_EVENT_EOF)
		agent_call_finish(c, NULL, "the agent closed the connection");
	else if (what & BEV_EVENT_ERROR)
		agent_call_finish(c, NULL, strerror(e));
}

static void
agent_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct agent_call *c = arg;

	agent_call_finish(c, NULL, c->got_ok ? "the agent did not answer in time" :
	    "the guest did not accept the agent connection in time");
}

struct agent_call *
agent_call_start(struct event_base *base, const char *uds_path, const json_t *request,
    int timeout_ms, agent_reply_fn cb, void *ctx)
{
	struct agent_call *c;
	char *text;
	/* Only a socket of emberd's user: the VM's owner writes in its directory. */
	int fd = guard_unix_connect(uds_path, geteuid());

	if (fd < 0)
		return NULL;
	c = calloc(1, sizeof(*c));
	text = json_dumps(request, JSON_COMPACT);
	if (c == NULL || text == NULL) {
		free(c);
		free(text);
		close(fd);
		return NULL;
	}
	c->cb = cb;
	c->ctx = ctx;
	c->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	c->timer = evtimer_new(base, agent_timeout_cb, c);
	if (c->bev == NULL || c->timer == NULL) {
		if (c->bev == NULL)
			close(fd);
		free(text);
		agent_call_free(c);
		return NULL;
	}
	bufferevent_setcb(c->bev, agent_read_cb, NULL, agent_event_cb, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	/* The request may follow the CONNECT line at once: the hybrid socket
	 * forwards what comes after the newline once the guest accepts. */
	evbuffer_add_printf(bufferevent_get_output(c->bev), "CONNECT %d\n%s\n",
	    AGENT_VSOCK_PORT, text);
	free(text);
	struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
	evtimer_add(c->timer, &tv);
	return c;
}

bool
agent_error_is_refused(const char *err)
{
	return err == agent_refused_msg;
}

void
agent_call_cancel(struct agent_call *c)
{
	if (c != NULL)
		agent_call_free(c);
}
