/*
 * Published ports' host side (see vm-publish.h). A spliced connection is a
 * bridge of two bufferevents: each side's input is moved to the other's
 * output; when that output passes VM_PUBLISH_HIGH_WATER the side feeding it
 * stops being read, and resumes once it drains below half. EOF on one side
 * is passed on as shutdown(SHUT_WR) once its data is flushed; the bridge is
 * freed when both directions are done or either side fails.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "log.h"
#include "vm-publish.h"

struct splice;

struct vm_publish_set {
	struct event_base *base;
	char vm[64];
	uint32_t guest;
	struct evconnlistener *lis[VM_PUBLISH_MAX];	/* TCP */
	uint16_t lis_guest_port[VM_PUBLISH_MAX];
	int udp_fd[VM_PUBLISH_MAX];			/* reserved, -1: none */
	size_t n;
	struct splice *conns;
	size_t nconns;
};

struct splice {
	struct vm_publish_set *set;
	struct bufferevent *side[2];	/* 0: host client, 1: guest */
	bool eof[2];			/* side i sent EOF */
	struct splice *next, **prevp;
};

static void
sin_of(uint32_t addr, uint16_t port, struct sockaddr_in *sin)
{
	memset(sin, 0, sizeof(*sin));
	sin->sin_family = AF_INET;
	sin->sin_addr.s_addr = htonl(addr);
	sin->sin_port = htons(port);
}

static void
splice_free(struct splice *sp)
{
	for (int i = 0; i < 2; i++)
		if (sp->side[i] != NULL)
			bufferevent_free(sp->side[i]);
	*sp->prevp = sp->next;
	if (sp->next != NULL)
		sp->next->prevp = sp->prevp;
	sp->set->nconns--;
	free(sp);
}

static int
side_index(struct splice *sp, struct bufferevent *bev)
{
	return sp->side[0] == bev ? 0 : 1;
}

/* Done when both sides sent EOF and every byte reached its peer. */
static void
splice_maybe_done(struct splice *sp)
{
	if (sp->eof[0] && sp->eof[1] &&
	    evbuffer_get_length(bufferevent_get_output(sp->side[0])) == 0 &&
	    evbuffer_get_length(bufferevent_get_output(sp->side[1])) == 0)
		splice_free(sp);
}

static void
splice_read(struct bufferevent *bev, void *arg)
{
	struct splice *sp = arg;
	int i = side_index(sp, bev);
	struct bufferevent *peer = sp->side[1 - i];
	struct evbuffer *out = bufferevent_get_output(peer);

	evbuffer_add_buffer(out, bufferevent_get_input(bev));
	if (evbuffer_get_length(out) >= VM_PUBLISH_HIGH_WATER)
		bufferevent_disable(bev, EV_READ);
}

/* peer's output drained below the low watermark: read its source again. */
static void
splice_write(struct bufferevent *bev, void *arg)
{
	struct splice *sp = arg;
	int i = side_index(sp, bev);
	struct bufferevent *src = sp->side[1 - i];

	if (!sp->eof[1 - i])
		bufferevent_enable(src, EV_READ);
	if (sp->eof[1 - i] && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		shutdown(bufferevent_getfd(bev), SHUT_WR);
	splice_maybe_done(sp);
}

static void
splice_event(struct bufferevent *bev, short what, void *arg)
{
	struct splice *sp = arg;
	int i = side_index(sp, bev);
	struct bufferevent *peer = sp->side[1 - i];

	if (what & BEV_EVENT_CONNECTED) {
		bufferevent_enable(sp->side[0], EV_READ);
		return;
	}
	if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR)) {
		splice_read(bev, sp);	/* whatever came with the EOF */
		sp->eof[i] = true;
		bufferevent_disable(bev, EV_READ);
		if (evbuffer_get_length(bufferevent_get_output(peer)) == 0)
			shutdown(bufferevent_getfd(peer), SHUT_WR);
		splice_maybe_done(sp);
		return;
	}
	splice_free(sp);	/* an error or a refused connect: both go */
}

static void
publish_accept(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa,
    int salen, void *arg)
{
	struct vm_publish_set *s = arg;
	struct sockaddr_in guest;
	struct splice *sp;
	size_t k;

	for (k = 0; k < s->n && s->lis[k] != lis; k++)
		;
	if (k == s->n || s->nconns >= VM_PUBLISH_CONNS_MAX ||
	    (sp = calloc(1, sizeof(*sp))) == NULL) {
		if (k < s->n)
			log_warnx("vm %s: refusing a connection to a published port: %d "
			    "connections are spliced already", s->vm, VM_PUBLISH_CONNS_MAX);
		close(fd);
		return;
	}
	sp->set = s;
	sp->side[0] = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
	sp->side[1] = bufferevent_socket_new(s->base, -1, BEV_OPT_CLOSE_ON_FREE);
	sp->next = s->conns;
	sp->prevp = &s->conns;
	if (s->conns != NULL)
		s->conns->prevp = &sp->next;
	s->conns = sp;
	s->nconns++;
	if (sp->side[0] == NULL || sp->side[1] == NULL) {
		if (sp->side[0] == NULL)
			close(fd);
		splice_free(sp);
		return;
	}
	for (int i = 0; i < 2; i++) {
		bufferevent_setcb(sp->side[i], splice_read, splice_write, splice_event, sp);
		bufferevent_setwatermark(sp->side[i], EV_WRITE, VM_PUBLISH_HIGH_WATER / 2, 0);
	}
	bufferevent_disable(sp->side[0], EV_READ);	/* until the guest answers */
	bufferevent_enable(sp->side[1], EV_READ);
	sin_of(s->guest, s->lis_guest_port[k], &guest);
	if (bufferevent_socket_connect(sp->side[1], (struct sockaddr *)&guest,
	    sizeof(guest)) < 0)
		splice_free(sp);
}

static int
bind_socket(const struct vm_publish *p, int *fdp)
{
	struct sockaddr_in sin;
	int one = 1, fd;

	fd = socket(AF_INET, (p->udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC | SOCK_NONBLOCK,
	    0);
	if (fd < 0)
		return -errno;
	if (!p->udp)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	sin_of(p->host_addr, p->host_port, &sin);
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
	    (!p->udp && listen(fd, 64) < 0)) {
		int e = errno;
		close(fd);
		return -e;
	}
	*fdp = fd;
	return 0;
}

int
vm_publish_probe(const struct vm_publish *p)
{
	int fd, r = bind_socket(p, &fd);

	if (r == 0)
		close(fd);
	return r;
}

struct vm_publish_set *
vm_publish_open(struct event_base *base, const char *vm_name, const struct vm_net *net,
    struct ember_error *err)
{
	struct vm_publish_set *s = calloc(1, sizeof(*s));

	if (s == NULL) {
		ember_error_set(err, EK_INTERNAL, NULL, "out of memory");
		return NULL;
	}
	s->base = base;
	snprintf(s->vm, sizeof(s->vm), "%s", vm_name);
	s->guest = net->subnet + 2;
	for (size_t i = 0; i < VM_PUBLISH_MAX; i++)
		s->udp_fd[i] = -1;
	for (size_t i = 0; i < net->npublish; i++) {
		const struct vm_publish *p = &net->publish[i];
		int fd, r = bind_socket(p, &fd);

		s->n = i + 1;
		if (r < 0) {
			char a[16];
			inet_ntop(AF_INET, &(struct in_addr){ htonl(p->host_addr) }, a, sizeof(a));
			ember_error_set(err, r == -EADDRINUSE ? EK_BUSY : EK_IO,
			    r == -EADDRINUSE ? "stop what listens there, or publish another "
			    "host port" : NULL, "cannot bind published port %s:%u/%s: %s", a,
			    (unsigned)p->host_port, p->udp ? "udp" : "tcp", strerror(-r));
			vm_publish_close(s);
			return NULL;
		}
		if (p->udp) {
			s->udp_fd[i] = fd;
			continue;
		}
		s->lis_guest_port[i] = p->guest_port;
		s->lis[i] = evconnlistener_new(base, publish_accept, s,
		    LEV_OPT_CLOSE_ON_FREE, -1, fd);
		if (s->lis[i] == NULL) {
			close(fd);
			ember_error_set(err, EK_INTERNAL, NULL, "out of memory");
			vm_publish_close(s);
			return NULL;
		}
	}
	return s;
}

void
vm_publish_close(struct vm_publish_set *s)
{
	if (s == NULL)
		return;
	while (s->conns != NULL)
		splice_free(s->conns);
	for (size_t i = 0; i < s->n; i++) {
		if (s->lis[i] != NULL)
			evconnlistener_free(s->lis[i]);
		if (s->udp_fd[i] >= 0)
			close(s->udp_fd[i]);
	}
	free(s);
}
