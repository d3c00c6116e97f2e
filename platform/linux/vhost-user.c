/*
 * vhost-user backend session (see vhost-user.h). Reading follows QEMU's
 * framing: a 12-byte header with any fds attached as SCM_RIGHTS, then
 * size payload bytes; both halves are buffered across short reads since the
 * socket is non-blocking. Each complete message goes through one dispatch
 * table; fds a handler does not take are closed after it returns. Replies
 * carry flags exactly 0x5, which QEMU checks.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "log.h"
#include "vhost-user.h"
#include "vu-proto.h"

/* Replies QEMU has not read yet; it reads each one synchronously. */
#define VU_OUT_MAX		(64 * 1024)
/* Messages handled per wakeup, so one VM cannot starve the others. */
#define VU_MSGS_PER_WAKEUP	64

struct vu_dev;

struct vu_vring {
	struct vu_dev	*dev;
	unsigned	 index;
	struct virtq	 vq;		/* owns the call fd */
	int		 kick_fd;
	struct event	*kick_ev;
	int		 err_fd;
	bool		 started;	/* has a kick fd */
	bool		 enabled;	/* SET_VRING_ENABLE 1 */
	bool		 running;	/* started && enabled, owner told */
	uint64_t	 kick_gen, call_gen;	/* fd replaced */
};

struct vu_dev {
	struct event_base	*base;
	int			 fd;
	struct event		*read_ev;
	struct event		*write_ev;
	const struct vu_dev_ops	*ops;
	void			*ctx;
	uint64_t		 guest_cid;
	bool			 connected;

	/* The message being read. */
	struct vu_hdr		 hdr;
	size_t			 hdr_got;
	size_t			 payload_got;
	uint8_t			 payload[VU_MAX_PAYLOAD];
	int			 fds[VU_MAX_FDS];
	unsigned		 nfds;
	bool			 fds_lost;	/* MSG_CTRUNC or too many fds */

	uint8_t			 out[VU_OUT_MAX];
	size_t			 out_len;
	const char		*fail;		/* set: end the session */

	uint64_t		 features;
	uint64_t		 protocol_features;
	bool			 owner;
	struct guest_mem	 mem;
	struct vu_vring		 vring[VU_NUM_QUEUES];
	bool			 ever_running;
	uint64_t		 mem_gen;	/* memory table replaced */
	struct event		*restart_ev;	/* a restored session's first pass */
	const char		*last_error;

	int			 busy;		/* inside one of our callbacks */
	bool			 free_pending;
};

static const struct vu_dev_ops null_ops;

static void vu_read_cb(evutil_socket_t fd, short what, void *arg);
static void vu_write_cb(evutil_socket_t fd, short what, void *arg);

/* Callback wrappers: the owner may free dev (deferred) from any of them. */
static void
call_ring(struct vu_dev *dev, void (*fn)(void *, unsigned), unsigned q)
{
	if (fn == NULL || dev->free_pending)
		return;
	dev->busy++;
	fn(dev->ctx, q);
	dev->busy--;
}

static void
call_void(struct vu_dev *dev, void (*fn)(void *))
{
	if (fn == NULL || dev->free_pending)
		return;
	dev->busy++;
	fn(dev->ctx);
	dev->busy--;
}

static void
close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static void
close_msg_fds(struct vu_dev *dev)
{
	for (unsigned i = 0; i < dev->nfds; i++)
		close_fd(&dev->fds[i]);
	dev->nfds = 0;
	dev->fds_lost = false;
}

static bool
any_running(const struct vu_dev *dev)
{
	for (unsigned q = 0; q < VU_NUM_QUEUES; q++)
		if (dev->vring[q].running)
			return true;
	return false;
}

/* Tells the owner when ring q starts or stops running. */
static void
vring_update(struct vu_dev *dev, unsigned q)
{
	struct vu_vring *vr = &dev->vring[q];
	bool want = vr->started && vr->enabled && dev->connected;

	if (want == vr->running)
		return;
	if (!want) {
		vr->running = false;
		call_ring(dev, dev->ops->on_ring_stop, q);
		return;
	}
	if (!virtq_is_mapped(&vr->vq) && virtq_map(&vr->vq, &dev->mem, true) != 0) {
		vr->vq.broken = true;
		vr->vq.broken_reason = "ring addresses do not translate at start";
		dev->last_error = vr->vq.broken_reason;
		log_debug("vhost-user: ring %u not started: %s", q, dev->last_error);
		return;
	}
	if (!any_running(dev) && dev->ever_running) {
		bool fresh = true;

		/* Both rings back at 0 after having run: the driver reset. */
		for (unsigned i = 0; i < VU_NUM_QUEUES; i++) {
			const struct virtq *vq = &dev->vring[i].vq;

			if (vq->last_avail_idx != 0 || vq->used_idx != 0)
				fresh = false;
		}
		if (fresh)
			call_void(dev, dev->ops->on_reset);
	}
	vr->running = true;
	dev->ever_running = true;
	call_ring(dev, dev->ops->on_ring_start, q);
}

static void
kick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct vu_vring *vr = arg;
	struct vu_dev *dev = vr->dev;
	uint64_t v;
	ssize_t n;

	n = read(fd, &v, sizeof(v));
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
		/* Not an eventfd after all: stop watching rather than spin. */
		event_del(vr->kick_ev);
		dev->last_error = "kick fd hung up";
		return;
	}
	if (!vr->running)
		return;
	dev->busy++;
	call_ring(dev, dev->ops->on_kick, vr->index);
	dev->busy--;
	if (dev->free_pending && dev->busy == 0)
		vu_dev_free(dev);
}

static void
vring_close_kick(struct vu_vring *vr)
{
	if (vr->kick_ev != NULL)
		event_free(vr->kick_ev);
	vr->kick_ev = NULL;
	close_fd(&vr->kick_fd);
}

/* Stops ring q (GET_VRING_BASE, teardown): owner told first, fds closed. */
static void
vring_stop(struct vu_dev *dev, unsigned q)
{
	struct vu_vring *vr = &dev->vring[q];

	vr->started = false;
	vr->enabled = false;
	vring_update(dev, q);
	vring_close_kick(vr);
	virtq_set_call_fd(&vr->vq, -1);
	/* Closed: whoever keeps copies for a successor must drop them. */
	vr->kick_gen++;
	vr->call_gen++;
}

/* Ends the session: rings stopped, fds closed, memory unmapped. */
static void
vu_teardown(struct vu_dev *dev, const char *why)
{
	if (!dev->connected)
		return;
	dev->connected = false;
	dev->last_error = why;
	log_debug("vhost-user: session ends: %s", why);
	for (unsigned q = 0; q < VU_NUM_QUEUES; q++) {
		struct vu_vring *vr = &dev->vring[q];

		vring_stop(dev, q);
		close_fd(&vr->err_fd);
		virtq_fini(&vr->vq);
	}
	guest_mem_clear(&dev->mem);
	close_msg_fds(dev);
	if (dev->restart_ev != NULL)
		event_free(dev->restart_ev);
	dev->restart_ev = NULL;
	if (dev->read_ev != NULL)
		event_free(dev->read_ev);
	if (dev->write_ev != NULL)
		event_free(dev->write_ev);
	dev->read_ev = dev->write_ev = NULL;
	close_fd(&dev->fd);
	dev->out_len = 0;
	call_void(dev, dev->ops->on_disconnect);
}

/* Sends what is queued; returns -1 and sets dev->fail when the peer is gone. */
static void
vu_flush(struct vu_dev *dev)
{
	while (dev->out_len > 0) {
		ssize_t n = send(dev->fd, dev->out, dev->out_len, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			event_add(dev->write_ev, NULL);
			return;
		}
		if (n <= 0) {
			dev->fail = "cannot write a reply to the frontend";
			return;
		}
		memmove(dev->out, dev->out + n, dev->out_len - (size_t)n);
		dev->out_len -= (size_t)n;
	}
	event_del(dev->write_ev);
}

static void
vu_reply(struct vu_dev *dev, const void *payload, uint32_t size)
{
	struct vu_hdr h = { .request = dev->hdr.request, .flags = VU_REPLY_FLAGS, .size = size };

	if (dev->fail != NULL)
		return;
	if (sizeof(h) + size > VU_OUT_MAX - dev->out_len) {
		dev->fail = "frontend does not read its replies";
		return;
	}
	memcpy(dev->out + dev->out_len, &h, sizeof(h));
	if (size > 0)
		memcpy(dev->out + dev->out_len + sizeof(h), payload, size);
	dev->out_len += sizeof(h) + size;
	vu_flush(dev);
}

static void
vu_reply_u64(struct vu_dev *dev, uint64_t v)
{
	vu_reply(dev, &v, sizeof(v));
}

static uint64_t
payload_u64(const struct vu_dev *dev)
{
	uint64_t v;

	memcpy(&v, dev->payload, sizeof(v));
	return v;
}

/* Ring index from a vring state payload; -1 when out of range. */
static int
payload_state(const struct vu_dev *dev, struct vu_vring_state *s)
{
	memcpy(s, dev->payload, sizeof(*s));
	return s->index < VU_NUM_QUEUES ? (int)s->index : -1;
}

static int
vu_get_features(struct vu_dev *dev)
{
	vu_reply_u64(dev, VU_OFFERED_FEATURES);
	return 0;
}

static void
apply_features(struct vu_dev *dev, uint64_t v)
{
	dev->features = v;
	for (unsigned q = 0; q < VU_NUM_QUEUES; q++) {
		dev->vring[q].vq.event_idx = (v & (1ull << VIRTIO_RING_F_EVENT_IDX)) != 0;
		dev->vring[q].vq.indirect = (v & (1ull << VIRTIO_RING_F_INDIRECT_DESC)) != 0;
	}
}

static int
vu_set_features(struct vu_dev *dev)
{
	uint64_t v = payload_u64(dev);

	if (v & ~VU_OFFERED_FEATURES)
		return -EINVAL;
	if (!(v & (1ull << VIRTIO_F_VERSION_1)))
		log_debug("vhost-user: VERSION_1 not acked (legacy virtio-mmio?)");
	apply_features(dev, v);
	return 0;
}

static int
vu_set_owner(struct vu_dev *dev)
{
	dev->owner = true;
	return 0;
}

static int
vu_reset_owner(struct vu_dev *dev)
{
	return 0;	/* deprecated; QEMU does not send it */
}

static int
vu_get_protocol_features(struct vu_dev *dev)
{
	vu_reply_u64(dev, VU_OFFERED_PROTOCOL_FEATURES);
	return 0;
}

static int
vu_set_protocol_features(struct vu_dev *dev)
{
	uint64_t v = payload_u64(dev);

	if (v & ~VU_OFFERED_PROTOCOL_FEATURES)
		return -EINVAL;
	dev->protocol_features = v;
	return 0;
}

static int
vu_get_queue_num(struct vu_dev *dev)
{
	vu_reply_u64(dev, VU_NUM_QUEUES);
	return 0;
}

static int
vu_set_mem_table(struct vu_dev *dev)
{
	struct guest_mem_desc	desc[VU_MAX_MEM_REGIONS];
	struct vu_mem_hdr	mh;
	int			rc;

	if (dev->hdr.size < sizeof(mh))
		return -EINVAL;
	memcpy(&mh, dev->payload, sizeof(mh));
	if (mh.nregions == 0 || mh.nregions > VU_MAX_MEM_REGIONS ||
	    dev->hdr.size != sizeof(mh) + mh.nregions * sizeof(struct vu_mem_region) ||
	    dev->nfds != mh.nregions)
		return -EINVAL;
	for (unsigned i = 0; i < mh.nregions; i++) {
		struct vu_mem_region r;

		memcpy(&r, dev->payload + sizeof(mh) + i * sizeof(r), sizeof(r));
		desc[i].gpa = r.gpa;
		desc[i].size = r.size;
		desc[i].uva = r.uva;
		desc[i].mmap_offset = r.mmap_offset;
	}
	/* The fds stay in dev->fds and are closed after dispatch. */
	if ((rc = guest_mem_set_table(&dev->mem, desc, dev->fds, mh.nregions)) != 0)
		return rc;
	dev->mem_gen++;
	for (unsigned q = 0; q < VU_NUM_QUEUES; q++) {
		struct virtq *vq = &dev->vring[q].vq;

		if (vq->addr_set && vq->num != 0)
			(void)virtq_map(vq, &dev->mem, false);
	}
	return 0;
}

static int
vu_set_vring_num(struct vu_dev *dev)
{
	struct vu_vring_state s;
	int q;

	if ((q = payload_state(dev, &s)) < 0)
		return -ERANGE;
	return virtq_set_num(&dev->vring[q].vq, s.num);
}

static int
vu_set_vring_addr(struct vu_dev *dev)
{
	struct vu_vring_addr a;
	struct virtq *vq;

	memcpy(&a, dev->payload, sizeof(a));
	if (a.index >= VU_NUM_QUEUES)
		return -ERANGE;
	vq = &dev->vring[a.index].vq;
	virtq_set_addr(vq, a.desc, a.used, a.avail);
	if (dev->mem.nregions == 0)
		return 0;	/* translated at start */
	return virtq_map(vq, &dev->mem, true);
}

static int
vu_set_vring_base(struct vu_dev *dev)
{
	struct vu_vring_state s;
	int q;

	if ((q = payload_state(dev, &s)) < 0)
		return -ERANGE;
	if (s.num > UINT16_MAX)
		return -EINVAL;
	virtq_set_base(&dev->vring[q].vq, (uint16_t)s.num);
	return 0;
}

static int
vu_get_vring_base(struct vu_dev *dev)
{
	struct vu_vring_state s = { 0, 0 };
	int q = -1;

	if (dev->hdr.size == sizeof(s))
		q = payload_state(dev, &s);
	if (q < 0) {
		s.num = 0;
		vu_reply(dev, &s, sizeof(s));
		return -ERANGE;
	}
	/* The owner pushes what it holds before the index is read. */
	vring_stop(dev, q);
	s.num = dev->vring[q].vq.last_avail_idx;
	vu_reply(dev, &s, sizeof(s));
	return 0;
}

/* Ring index and fd of SET_VRING_KICK/CALL/ERR; the fd is taken. */
static int
payload_vring_fd(struct vu_dev *dev, int *fd)
{
	uint64_t v = payload_u64(dev);

	*fd = -1;
	if (v & ~(uint64_t)(VU_VRING_IDX_MASK | VU_VRING_NOFD))
		return -EINVAL;
	if ((v & VU_VRING_IDX_MASK) >= VU_NUM_QUEUES)
		return -ERANGE;
	if (!(v & VU_VRING_NOFD)) {
		if (dev->nfds != 1)
			return -EINVAL;
		*fd = dev->fds[0];
		dev->fds[0] = -1;
	}
	return (int)(v & VU_VRING_IDX_MASK);
}

static int
vu_set_vring_kick(struct vu_dev *dev)
{
	struct vu_vring *vr;
	int q, fd, flags;

	if ((q = payload_vring_fd(dev, &fd)) < 0)
		return q;
	if (fd < 0)
		return -ENOTSUP;	/* NOFD means polling; QEMU never asks */
	vr = &dev->vring[q];
	if ((flags = fcntl(fd, F_GETFL)) == -1 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) == -1) {
		close(fd);
		return -EINVAL;
	}
	vring_close_kick(vr);
	vr->kick_fd = fd;
	vr->kick_gen++;
	vr->kick_ev = event_new(dev->base, fd, EV_READ | EV_PERSIST, kick_cb, vr);
	if (vr->kick_ev == NULL || event_add(vr->kick_ev, NULL) != 0) {
		vring_close_kick(vr);
		return -ENOMEM;
	}
	vr->started = true;
	/* Without PROTOCOL_FEATURES rings start enabled (vhost-user.rst). */
	if (!(dev->features & (1ull << VHOST_USER_F_PROTOCOL_FEATURES)))
		vr->enabled = true;
	vring_update(dev, q);
	return 0;
}

static int
vu_set_vring_call(struct vu_dev *dev)
{
	int q, fd;

	if ((q = payload_vring_fd(dev, &fd)) < 0)
		return q;
	virtq_set_call_fd(&dev->vring[q].vq, fd);
	dev->vring[q].call_gen++;
	return 0;
}

static int
vu_set_vring_err(struct vu_dev *dev)
{
	int q, fd;

	if ((q = payload_vring_fd(dev, &fd)) < 0)
		return q;
	close_fd(&dev->vring[q].err_fd);
	dev->vring[q].err_fd = fd;
	return 0;
}

static int
vu_set_vring_enable(struct vu_dev *dev)
{
	struct vu_vring_state s;
	int q;

	if ((q = payload_state(dev, &s)) < 0)
		return -ERANGE;
	if (s.num > 1)
		return -EINVAL;
	dev->vring[q].enabled = s.num == 1;
	vring_update(dev, q);
	return 0;
}

/* Checks a GET/SET_CONFIG payload against the 8-byte config space. */
static int
config_hdr(const struct vu_dev *dev, struct vu_config_hdr *c)
{
	if (dev->hdr.size < sizeof(*c))
		return -EINVAL;
	memcpy(c, dev->payload, sizeof(*c));
	if (c->size > VU_MAX_CONFIG_SIZE || dev->hdr.size != sizeof(*c) + c->size)
		return -EINVAL;
	if (c->offset > sizeof(uint64_t) || c->size > sizeof(uint64_t) - c->offset)
		return -EINVAL;
	return 0;
}

static int
vu_get_config(struct vu_dev *dev)
{
	uint8_t			reply[sizeof(struct vu_config_hdr) + sizeof(uint64_t)];
	struct vu_config_hdr	c;
	uint64_t		cid = htole64(dev->guest_cid);

	if (config_hdr(dev, &c) != 0) {
		vu_reply(dev, NULL, 0);		/* size 0: the error reply */
		return -EINVAL;
	}
	memcpy(reply, &c, sizeof(c));
	memcpy(reply + sizeof(c), (uint8_t *)&cid + c.offset, c.size);
	vu_reply(dev, reply, (uint32_t)(sizeof(c) + c.size));
	return 0;
}

static int
vu_set_config(struct vu_dev *dev)
{
	struct vu_config_hdr c;

	/* The vsock config space is read-only: accept and ignore. */
	return config_hdr(dev, &c);
}

#define VU_SIZE_ANY UINT32_MAX

static const struct vu_handler {
	const char	*name;
	int		(*fn)(struct vu_dev *);
	uint32_t	 size;		/* exact payload size, or VU_SIZE_ANY */
	bool		 has_reply;	/* answers itself, even on error */
	bool		 changes;	/* success changes vu_dev_get_state */
} handlers[] = {
	[VU_GET_FEATURES] = { "GET_FEATURES", vu_get_features, VU_SIZE_ANY, true, false },
	[VU_SET_FEATURES] = { "SET_FEATURES", vu_set_features, 8, false, true },
	[VU_SET_OWNER] = { "SET_OWNER", vu_set_owner, VU_SIZE_ANY, false, true },
	[VU_RESET_OWNER] = { "RESET_OWNER", vu_reset_owner, VU_SIZE_ANY, false, false },
	[VU_SET_MEM_TABLE] = { "SET_MEM_TABLE", vu_set_mem_table, VU_SIZE_ANY, false, true },
	[VU_SET_VRING_NUM] = { "SET_VRING_NUM", vu_set_vring_num, 8, false, true },
	[VU_SET_VRING_ADDR] = { "SET_VRING_ADDR", vu_set_vring_addr, 40, false, true },
	[VU_SET_VRING_BASE] = { "SET_VRING_BASE", vu_set_vring_base, 8, false, true },
	[VU_GET_VRING_BASE] = { "GET_VRING_BASE", vu_get_vring_base, VU_SIZE_ANY, true, true },
	[VU_SET_VRING_KICK] = { "SET_VRING_KICK", vu_set_vring_kick, 8, false, true },
	[VU_SET_VRING_CALL] = { "SET_VRING_CALL", vu_set_vring_call, 8, false, true },
	[VU_SET_VRING_ERR] = { "SET_VRING_ERR", vu_set_vring_err, 8, false, false },
	[VU_GET_PROTOCOL_FEATURES] = { "GET_PROTOCOL_FEATURES", vu_get_protocol_features,
	    VU_SIZE_ANY, true, false },
	[VU_SET_PROTOCOL_FEATURES] = { "SET_PROTOCOL_FEATURES", vu_set_protocol_features,
	    8, false, true },
	[VU_GET_QUEUE_NUM] = { "GET_QUEUE_NUM", vu_get_queue_num, VU_SIZE_ANY, true, false },
	[VU_SET_VRING_ENABLE] = { "SET_VRING_ENABLE", vu_set_vring_enable, 8, false, true },
	[VU_GET_CONFIG] = { "GET_CONFIG", vu_get_config, VU_SIZE_ANY, true, false },
	[VU_SET_CONFIG] = { "SET_CONFIG", vu_set_config, VU_SIZE_ANY, false, false },
};

static void
vu_dispatch(struct vu_dev *dev)
{
	const struct vu_handler *h = NULL;
	uint32_t req = dev->hdr.request;
	bool need_reply = (dev->hdr.flags & VU_FLAG_NEED_REPLY) != 0;
	int rc;

	if (req < sizeof(handlers) / sizeof(handlers[0]) && handlers[req].fn != NULL)
		h = &handlers[req];
	if (h == NULL) {
		log_debug("vhost-user: unknown request %u (size %u), ignored", req, dev->hdr.size);
		dev->last_error = "unknown request";
		if (need_reply)
			vu_reply_u64(dev, 1);
		return;
	}
	if (dev->fds_lost && !h->has_reply)
		rc = -EBADMSG;
	else if (h->size != VU_SIZE_ANY && dev->hdr.size != h->size)
		rc = -EINVAL;
	else
		rc = h->fn(dev);
	if (rc != 0) {
		log_debug("vhost-user: %s failed: %s", h->name, strerror(-rc));
		dev->last_error = h->name;
	}
	if (need_reply && !h->has_reply)
		vu_reply_u64(dev, rc == 0 ? 0 : 1);
	if (h->changes && (rc == 0 || req == VU_GET_VRING_BASE))
		call_void(dev, dev->ops->on_change);
}

/* recvmsg into buf, collecting SCM_RIGHTS fds; bytes, 0 at EOF, or -errno. */
static ssize_t
vu_recv(struct vu_dev *dev, void *buf, size_t len)
{
	union {
		struct cmsghdr	align;
		char		buf[CMSG_SPACE(VU_MAX_FDS * sizeof(int))];
	} cbuf;
	struct iovec	 iov = { .iov_base = buf, .iov_len = len };
	struct msghdr	 msg = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = cbuf.buf, .msg_controllen = sizeof(cbuf.buf),
	};
	struct cmsghdr	*cm;
	ssize_t		 n;

	do
		n = recvmsg(dev->fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	for (cm = CMSG_FIRSTHDR(&msg); cm != NULL; cm = CMSG_NXTHDR(&msg, cm)) {
		size_t nfd;

		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS ||
		    cm->cmsg_len < CMSG_LEN(0))
			continue;
		nfd = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < nfd; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(fd));
			if (dev->nfds < VU_MAX_FDS)
				dev->fds[dev->nfds++] = fd;
			else {
				close(fd);
				dev->fds_lost = true;
			}
		}
	}
	if (msg.msg_flags & MSG_CTRUNC)
		dev->fds_lost = true;
	return n;
}

/* Reads what is there of the current message: 1 complete, 0 not yet, -1 end. */
static int
vu_read_msg(struct vu_dev *dev)
{
	ssize_t n;

	while (dev->hdr_got < sizeof(dev->hdr)) {
		n = vu_recv(dev, (uint8_t *)&dev->hdr + dev->hdr_got, sizeof(dev->hdr) - dev->hdr_got);
		if (n == -EAGAIN || n == -EWOULDBLOCK)
			return 0;
		if (n <= 0) {
			dev->fail = n == 0 ? "frontend closed the connection" :
			    "cannot read from the frontend";
			return -1;
		}
		dev->hdr_got += (size_t)n;
		if (dev->hdr_got < sizeof(dev->hdr))
			continue;
		if ((dev->hdr.flags & VU_FLAG_VERSION_MASK) != VU_FLAG_VERSION) {
			dev->fail = "message with a wrong protocol version";
			return -1;
		}
		if (dev->hdr.size > VU_MAX_PAYLOAD) {
			dev->fail = "message payload over 4096 bytes";
			return -1;
		}
	}
	while (dev->payload_got < dev->hdr.size) {
		n = vu_recv(dev, dev->payload + dev->payload_got, dev->hdr.size - dev->payload_got);
		if (n == -EAGAIN || n == -EWOULDBLOCK)
			return 0;
		if (n <= 0) {
			dev->fail = n == 0 ? "frontend closed the connection mid-message" :
			    "cannot read from the frontend";
			return -1;
		}
		dev->payload_got += (size_t)n;
	}
	return 1;
}

static void
vu_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct vu_dev *dev = arg;

	dev->busy++;
	for (int i = 0; i < VU_MSGS_PER_WAKEUP && dev->connected && !dev->free_pending; i++) {
		int rc = vu_read_msg(dev);

		if (rc == 1) {
			/* Payload bytes past size are never read: zero them. */
			memset(dev->payload + dev->hdr.size, 0, VU_MAX_PAYLOAD - dev->hdr.size);
			vu_dispatch(dev);
			close_msg_fds(dev);
			dev->hdr_got = dev->payload_got = 0;
		}
		if (dev->fail != NULL) {
			vu_teardown(dev, dev->fail);
			break;
		}
		if (rc == 0)
			break;
	}
	dev->busy--;
	if (dev->free_pending && dev->busy == 0)
		vu_dev_free(dev);
}

static void
vu_write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct vu_dev *dev = arg;

	vu_flush(dev);
	if (dev->fail != NULL) {
		dev->busy++;
		vu_teardown(dev, dev->fail);
		dev->busy--;
		if (dev->free_pending && dev->busy == 0)
			vu_dev_free(dev);
	}
}

struct vu_dev *
vu_dev_new(struct event_base *base, int fd, uint64_t guest_cid,
    const struct vu_dev_ops *ops, void *ctx)
{
	struct vu_dev *dev;
	int flags;

	if (guest_cid < 3 || guest_cid >= 0xffffffffu) {
		close(fd);
		errno = EINVAL;
		return NULL;
	}
	if ((flags = fcntl(fd, F_GETFL)) == -1 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) == -1 ||
	    fcntl(fd, F_SETFD, FD_CLOEXEC) == -1 || (dev = calloc(1, sizeof(*dev))) == NULL) {
		int saved = errno;

		close(fd);
		errno = saved;
		return NULL;
	}
	dev->base = base;
	dev->fd = fd;
	dev->ops = ops != NULL ? ops : &null_ops;
	dev->ctx = ctx;
	dev->guest_cid = guest_cid;
	for (unsigned i = 0; i < VU_MAX_FDS; i++)
		dev->fds[i] = -1;
	guest_mem_init(&dev->mem);
	for (unsigned q = 0; q < VU_NUM_QUEUES; q++) {
		dev->vring[q].dev = dev;
		dev->vring[q].index = q;
		dev->vring[q].kick_fd = -1;
		dev->vring[q].err_fd = -1;
		virtq_init(&dev->vring[q].vq);
	}
	dev->read_ev = event_new(base, fd, EV_READ | EV_PERSIST, vu_read_cb, dev);
	dev->write_ev = event_new(base, fd, EV_WRITE | EV_PERSIST, vu_write_cb, dev);
	dev->connected = true;
	if (dev->read_ev == NULL || dev->write_ev == NULL || event_add(dev->read_ev, NULL) != 0) {
		dev->ops = &null_ops;
		vu_teardown(dev, "cannot watch the session socket");
		free(dev);
		errno = ENOMEM;
		return NULL;
	}
	return dev;
}

/* ---- a session handed over by an earlier emberd ---- */

/* Whether fd is an eventfd (what QEMU passes for kick and call). */
static bool
fd_is_eventfd(int fd)
{
	char link[64], target[64];
	ssize_t n;

	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, target, sizeof(target) - 1);
	if (n < 0)
		return false;
	target[n] = '\0';
	return strcmp(target, "anon_inode:[eventfd]") == 0;
}

void
vu_dev_state_close(struct vu_dev_state *st)
{
	for (unsigned i = 0; i < GUEST_MEM_MAX_REGIONS; i++)
		close_fd(&st->mem_fd[i]);
	for (unsigned q = 0; q < VU_NUM_QUEUES; q++) {
		close_fd(&st->ring[q].kick_fd);
		close_fd(&st->ring[q].call_fd);
	}
}

/* The first pass of a restored session: rings start as they had, and the
 * guest hears once about whatever was published before the handover. */
static void
restart_cb(evutil_socket_t fd, short what, void *arg)
{
	struct vu_dev *dev = arg;

	dev->busy++;
	for (unsigned q = 0; q < VU_NUM_QUEUES && !dev->free_pending; q++)
		vring_update(dev, q);
	for (unsigned q = 0; q < VU_NUM_QUEUES && !dev->free_pending; q++)
		if (dev->vring[q].running)
			virtq_notify(&dev->vring[q].vq);
	dev->busy--;
	if (dev->free_pending && dev->busy == 0)
		vu_dev_free(dev);
}

/* Rebuilds ring q from st; 0 or -errno. Takes the ring's fds. */
static int
restore_ring(struct vu_dev *dev, unsigned q, struct vu_ring_state *rs)
{
	struct vu_vring *vr = &dev->vring[q];
	int flags, rc;

	if (rs->num != 0 && (rc = virtq_set_num(&vr->vq, rs->num)) != 0)
		return rc;
	if (rs->addr_set)
		virtq_set_addr(&vr->vq, rs->desc, rs->used, rs->avail);
	if (rs->call_fd >= 0) {
		if (!fd_is_eventfd(rs->call_fd))
			return -EBADF;
		virtq_set_call_fd(&vr->vq, rs->call_fd);
		rs->call_fd = -1;
	}
	if (rs->kick_fd >= 0) {
		if (!fd_is_eventfd(rs->kick_fd) || (flags = fcntl(rs->kick_fd, F_GETFL)) == -1 ||
		    fcntl(rs->kick_fd, F_SETFL, flags | O_NONBLOCK) == -1)
			return -EBADF;
		vr->kick_fd = rs->kick_fd;
		rs->kick_fd = -1;
		vr->kick_ev = event_new(dev->base, vr->kick_fd, EV_READ | EV_PERSIST, kick_cb, vr);
		if (vr->kick_ev == NULL || event_add(vr->kick_ev, NULL) != 0)
			return -ENOMEM;
		vr->started = true;
	}
	vr->enabled = rs->enabled;
	if (rs->num != 0 && rs->addr_set && dev->mem.nregions > 0) {
		if ((rc = virtq_map(&vr->vq, &dev->mem, true)) != 0)
			return rc;
		/* Every chain emberd pops goes back within its pass, so what
		 * it had consumed is exactly what it had returned. */
		vr->vq.last_avail_idx = vr->vq.used_idx;
		vr->vq.signalled_used_valid = false;
	}
	return 0;
}

struct vu_dev *
vu_dev_restore(struct event_base *base, int fd, uint64_t guest_cid, struct vu_dev_state *st,
    const struct vu_dev_ops *ops, void *ctx)
{
	struct vu_dev *dev;
	int rc = 0;

	if (st->nregions > GUEST_MEM_MAX_REGIONS ||
	    (st->features & ~VU_OFFERED_FEATURES) != 0 ||
	    (st->protocol_features & ~VU_OFFERED_PROTOCOL_FEATURES) != 0) {
		vu_dev_state_close(st);
		close(fd);
		errno = EINVAL;
		return NULL;
	}
	if ((dev = vu_dev_new(base, fd, guest_cid, ops, ctx)) == NULL) {
		int e = errno;

		vu_dev_state_close(st);
		errno = e;
		return NULL;
	}
	apply_features(dev, st->features);
	dev->protocol_features = st->protocol_features;
	dev->owner = st->owner;
	dev->ever_running = st->ever_running;
	if (st->nregions > 0) {
		rc = guest_mem_set_table(&dev->mem, st->region, st->mem_fd, st->nregions);
		dev->mem_gen++;
	}
	for (unsigned q = 0; q < VU_NUM_QUEUES && rc == 0; q++)
		rc = restore_ring(dev, q, &st->ring[q]);
	vu_dev_state_close(st);
	if (rc == 0) {
		dev->restart_ev = event_new(base, -1, 0, restart_cb, dev);
		if (dev->restart_ev == NULL)
			rc = -ENOMEM;
		else
			event_active(dev->restart_ev, EV_TIMEOUT, 0);
	}
	if (rc != 0) {
		dev->ops = &null_ops;
		vu_dev_free(dev);
		errno = -rc;
		return NULL;
	}
	return dev;
}

void
vu_dev_get_state(const struct vu_dev *dev, struct vu_dev_state *st)
{
	memset(st, 0, sizeof(*st));
	st->features = dev->features;
	st->protocol_features = dev->protocol_features;
	st->owner = dev->owner;
	st->ever_running = dev->ever_running;
	st->nregions = dev->mem.nregions;
	st->mem_gen = dev->mem_gen;
	for (unsigned i = 0; i < GUEST_MEM_MAX_REGIONS; i++) {
		const struct guest_mem_region *r = &dev->mem.region[i];

		st->mem_fd[i] = i < dev->mem.nregions ? r->fd : -1;
		if (i < dev->mem.nregions)
			st->region[i] = (struct guest_mem_desc){ r->gpa, r->size, r->uva,
			    r->mmap_offset };
	}
	for (unsigned q = 0; q < VU_NUM_QUEUES; q++) {
		const struct vu_vring *vr = &dev->vring[q];
		struct vu_ring_state *rs = &st->ring[q];

		rs->num = vr->vq.num;
		rs->desc = vr->vq.desc_uva;
		rs->avail = vr->vq.avail_uva;
		rs->used = vr->vq.used_uva;
		rs->addr_set = vr->vq.addr_set;
		rs->started = vr->started;
		rs->enabled = vr->enabled;
		rs->last_avail_idx = vr->vq.last_avail_idx;
		rs->kick_fd = vr->kick_fd;
		rs->call_fd = vr->vq.call_fd;
		rs->kick_gen = vr->kick_gen;
		rs->call_gen = vr->call_gen;
	}
}

int
vu_dev_fd(const struct vu_dev *dev)
{
	return dev->connected ? dev->fd : -1;
}

bool
vu_dev_mid_message(const struct vu_dev *dev)
{
	return dev->hdr_got > 0 || dev->out_len > 0;
}

void
vu_dev_free(struct vu_dev *dev)
{
	if (dev == NULL)
		return;
	dev->ops = &null_ops;
	if (dev->busy > 0) {
		dev->free_pending = true;
		return;
	}
	vu_teardown(dev, "freed");
	free(dev);
}

struct virtq *
vu_dev_vq(struct vu_dev *dev, unsigned q)
{
	return q < VU_NUM_QUEUES ? &dev->vring[q].vq : NULL;
}

const struct guest_mem *
vu_dev_mem(const struct vu_dev *dev)
{
	return &dev->mem;
}

bool
vu_dev_ring_running(const struct vu_dev *dev, unsigned q)
{
	return q < VU_NUM_QUEUES && dev->vring[q].running;
}

bool
vu_dev_connected(const struct vu_dev *dev)
{
	return dev->connected;
}

uint64_t
vu_dev_features(const struct vu_dev *dev)
{
	return dev->features;
}

const char *
vu_dev_last_error(const struct vu_dev *dev)
{
	return dev->last_error;
}
