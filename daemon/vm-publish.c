/*
 * Published ports' host side (see vm-publish.h). A spliced connection is a
 * bridge of two bufferevents: each side's input is moved to the other's
 * output; when that output passes VM_PUBLISH_HIGH_WATER the side feeding it
 * stops being read, and resumes once it drains below half. EOF on one side
 * is passed on as shutdown(SHUT_WR) once its data is flushed; the bridge is
 * freed when both directions are done or either side fails.
 *
 * A UDP port is relayed per client (flow): a datagram from a client not
 * seen before gets it a socket of its own connected to the guest's port, so
 * the kernel sorts the guest's replies by client and drops anything else the
 * guest sends; a reply goes back from the published socket, from the very
 * address the client sent to (IP_PKTINFO). Flows are a fixed table, the one
 * idle longest giving way when it is full, and a timer forgets those idle
 * for VM_PUBLISH_UDP_IDLE_S (looking every sixth of that). Datagrams are read into one buffer of the
 * largest UDP size, at most VM_PUBLISH_UDP_BURST per callback, and sent
 * without waiting: one that cannot be sent now is dropped, as UDP may be.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "log.h"
#include "vm-publish.h"

/* The largest UDP payload a datagram can carry, and so the relay's buffer. */
#define UDP_DGRAM_MAX	65535

struct splice;
struct udp_flow;

/* One published UDP port. */
struct udp_port {
	struct vm_publish_set *set;
	int fd;				/* bound to HOSTADDR:HOSTPORT, -1: none */
	struct event *ev;
	uint16_t guest_port;
};

struct vm_publish_set {
	struct event_base *base;
	char vm[64];
	uint32_t guest;
	struct evconnlistener *lis[VM_PUBLISH_MAX];	/* TCP */
	uint16_t lis_guest_port[VM_PUBLISH_MAX];
	struct udp_port udp[VM_PUBLISH_MAX];
	size_t n;
	struct splice *conns;
	size_t nconns;
	struct udp_flow *flows[VM_PUBLISH_UDP_FLOWS_MAX];
	size_t nflows;
	struct event *sweep;		/* pending while nflows > 0 */
	unsigned udp_idle_ms;		/* VM_PUBLISH_UDP_IDLE_S, unless a test shortens it */
	unsigned char *dgram;		/* UDP_DGRAM_MAX bytes, when a UDP port is published */
};

/* One UDP client of a published port. */
struct udp_flow {
	struct udp_port *port;
	struct sockaddr_in client;
	struct in_addr local;		/* where the client sent to; 0: unknown */
	int fd;				/* connected to guest:guest_port */
	struct event *ev;
	int64_t last;			/* monotonic ms of the last datagram */
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

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Removes flow k from the table (the last takes its slot) and frees it. */
static void
udp_flow_free(struct vm_publish_set *s, size_t k)
{
	struct udp_flow *f = s->flows[k];

	s->flows[k] = s->flows[--s->nflows];
	s->flows[s->nflows] = NULL;
	event_free(f->ev);
	close(f->fd);
	free(f);
}

/* A reply from the guest: back to the client, from the address it used. */
static void
udp_flow_read(evutil_socket_t fd, short what, void *arg)
{
	struct udp_flow *f = arg;
	struct vm_publish_set *s = f->port->set;
	union {
		char buf[CMSG_SPACE(sizeof(struct in_pktinfo))];
		struct cmsghdr align;
	} ctl;

	for (int i = 0; i < VM_PUBLISH_UDP_BURST; i++) {
		ssize_t n = recv(fd, s->dgram, UDP_DGRAM_MAX, MSG_DONTWAIT);
		struct iovec iov;
		struct msghdr mh = { 0 };

		if (n < 0)
			break;	/* EAGAIN, or the guest's ICMP error (port closed) */
		f->last = now_ms();
		iov.iov_base = s->dgram;
		iov.iov_len = (size_t)n;
		mh.msg_name = &f->client;
		mh.msg_namelen = sizeof(f->client);
		mh.msg_iov = &iov;
		mh.msg_iovlen = 1;
		if (f->local.s_addr != INADDR_ANY) {
			struct cmsghdr *cm;
			struct in_pktinfo pi = { 0 };

			memset(&ctl, 0, sizeof(ctl));
			mh.msg_control = ctl.buf;
			mh.msg_controllen = sizeof(ctl.buf);
			cm = CMSG_FIRSTHDR(&mh);
			cm->cmsg_level = IPPROTO_IP;
			cm->cmsg_type = IP_PKTINFO;
			cm->cmsg_len = CMSG_LEN(sizeof(pi));
			pi.ipi_spec_dst = f->local;
			memcpy(CMSG_DATA(cm), &pi, sizeof(pi));
		}
		(void)sendmsg(f->port->fd, &mh, MSG_DONTWAIT);	/* dropped if it cannot go now */
	}
}

/* Forgets the flows idle for udp_idle_ms; stops once none is left. */
static void
udp_sweep(evutil_socket_t fd, short what, void *arg)
{
	struct vm_publish_set *s = arg;
	int64_t now = now_ms();

	for (size_t k = s->nflows; k-- > 0;)
		if (now - s->flows[k]->last >= s->udp_idle_ms)
			udp_flow_free(s, k);
	if (s->nflows == 0)
		event_del(s->sweep);
}

/* The flow of client on port, made (a connected socket to the guest) when
 * new. NULL when no socket can be had. */
static struct udp_flow *
udp_flow_get(struct udp_port *up, const struct sockaddr_in *client, struct in_addr local)
{
	struct vm_publish_set *s = up->set;
	struct sockaddr_in guest;
	struct udp_flow *f;
	size_t k, oldest = 0;

	for (k = 0; k < s->nflows; k++) {
		f = s->flows[k];
		if (f->port == up && f->client.sin_addr.s_addr == client->sin_addr.s_addr &&
		    f->client.sin_port == client->sin_port)
			return f;
		if (f->last < s->flows[oldest]->last)
			oldest = k;
	}
	if (s->nflows == VM_PUBLISH_UDP_FLOWS_MAX) {
		log_debug("vm %s: %d UDP clients are relayed already; forgetting the one "
		    "idle longest", s->vm, VM_PUBLISH_UDP_FLOWS_MAX);
		udp_flow_free(s, oldest);
	}
	if ((f = calloc(1, sizeof(*f))) == NULL)
		return NULL;
	f->port = up;
	f->client = *client;
	f->local = local;
	f->last = now_ms();
	f->fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	sin_of(s->guest, up->guest_port, &guest);
	if (f->fd < 0 || connect(f->fd, (struct sockaddr *)&guest, sizeof(guest)) < 0 ||
	    (f->ev = event_new(s->base, f->fd, EV_READ | EV_PERSIST, udp_flow_read, f)) == NULL ||
	    event_add(f->ev, NULL) < 0) {
		log_debug("vm %s: cannot relay a UDP client to the guest: %s", s->vm,
		    strerror(errno));
		if (f->ev != NULL)
			event_free(f->ev);
		if (f->fd >= 0)
			close(f->fd);
		free(f);
		return NULL;
	}
	s->flows[s->nflows++] = f;
	if (!event_pending(s->sweep, EV_TIMEOUT, NULL))
		event_add(s->sweep, &(struct timeval){ .tv_sec = s->udp_idle_ms / 6 / 1000,
		    .tv_usec = s->udp_idle_ms / 6 % 1000 * 1000 });
	return f;
}

/* Datagrams from host clients: each to the guest on its client's flow. */
static void
udp_port_read(evutil_socket_t fd, short what, void *arg)
{
	struct udp_port *up = arg;
	struct vm_publish_set *s = up->set;
	union {
		char buf[CMSG_SPACE(sizeof(struct in_pktinfo))];
		struct cmsghdr align;
	} ctl;

	for (int i = 0; i < VM_PUBLISH_UDP_BURST; i++) {
		struct sockaddr_in client;
		struct iovec iov = { .iov_base = s->dgram, .iov_len = UDP_DGRAM_MAX };
		struct msghdr mh = {
			.msg_name = &client, .msg_namelen = sizeof(client),
			.msg_iov = &iov, .msg_iovlen = 1,
			.msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf),
		};
		struct in_addr local = { INADDR_ANY };
		struct udp_flow *f;
		ssize_t n = recvmsg(fd, &mh, MSG_DONTWAIT);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (mh.msg_namelen != sizeof(client) || client.sin_family != AF_INET ||
		    (mh.msg_flags & MSG_TRUNC))
			continue;
		for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm != NULL; cm = CMSG_NXTHDR(&mh, cm))
			if (cm->cmsg_level == IPPROTO_IP && cm->cmsg_type == IP_PKTINFO &&
			    cm->cmsg_len >= CMSG_LEN(sizeof(struct in_pktinfo))) {
				struct in_pktinfo pi;

				memcpy(&pi, CMSG_DATA(cm), sizeof(pi));
				local = pi.ipi_addr;
			}
		if ((f = udp_flow_get(up, &client, local)) == NULL)
			continue;
		f->last = now_ms();
		(void)send(f->fd, s->dgram, (size_t)n, MSG_DONTWAIT);	/* dropped if it cannot go now */
	}
}

/* Relays the bound UDP socket fd (taken) to guest_port. */
static int
udp_port_open(struct vm_publish_set *s, struct udp_port *up, int fd, uint16_t guest_port)
{
	int one = 1;

	up->set = s;
	up->fd = fd;
	up->guest_port = guest_port;
	if (setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one)) < 0)
		return -errno;
	if (s->dgram == NULL && (s->dgram = malloc(UDP_DGRAM_MAX)) == NULL)
		return -ENOMEM;
	if (s->sweep == NULL && (s->sweep = event_new(s->base, -1, EV_PERSIST, udp_sweep, s)) == NULL)
		return -ENOMEM;
	if ((up->ev = event_new(s->base, fd, EV_READ | EV_PERSIST, udp_port_read, up)) == NULL ||
	    event_add(up->ev, NULL) < 0)
		return -ENOMEM;
	return 0;
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

size_t
vm_publish_udp_flows(const struct vm_publish_set *s)
{
	return s->nflows;
}

void
vm_publish_set_udp_idle(struct vm_publish_set *s, unsigned idle_ms)
{
	s->udp_idle_ms = idle_ms > 0 ? idle_ms : 1;
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
	s->udp_idle_ms = VM_PUBLISH_UDP_IDLE_S * 1000;
	for (size_t i = 0; i < VM_PUBLISH_MAX; i++)
		s->udp[i].fd = -1;
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
			r = udp_port_open(s, &s->udp[i], fd, p->guest_port);
			if (r < 0) {
				ember_error_set(err, EK_INTERNAL, NULL,
				    "cannot relay published UDP port %u: %s",
				    (unsigned)p->host_port, strerror(-r));
				vm_publish_close(s);
				return NULL;
			}
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
	while (s->nflows > 0)
		udp_flow_free(s, s->nflows - 1);
	if (s->sweep != NULL)
		event_free(s->sweep);
	for (size_t i = 0; i < s->n; i++) {
		if (s->lis[i] != NULL)
			evconnlistener_free(s->lis[i]);
		if (s->udp[i].ev != NULL)
			event_free(s->udp[i].ev);
		if (s->udp[i].fd >= 0)
			close(s->udp[i].fd);
	}
	free(s->dgram);
	free(s);
}
