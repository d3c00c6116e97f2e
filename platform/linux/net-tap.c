/*
 * TAP devices through the tun driver and rtnetlink (see net-tap.h). Each
 * netlink request is one message on a fresh NETLINK_ROUTE socket, answered
 * by an ACK (or the dump it asked for) before the call returns; the kernel
 * answers these at once, so they may run on the event loop.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <linux/if_addr.h>
#include <linux/if_tun.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fsutil.h"
#include "net-tap.h"

#define NL_BUF 8192

struct nl_msg {
	struct nlmsghdr hdr;
	union {
		struct ifinfomsg ifi;
		struct ifaddrmsg ifa;
	} u;
	char attrs[512];
};

static int
nl_open(void)
{
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);

	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

static void
nl_attr(struct nl_msg *m, unsigned short type, const void *data, size_t len)
{
	struct rtattr *rta = (struct rtattr *)((char *)m + NLMSG_ALIGN(m->hdr.nlmsg_len));
	size_t total = RTA_LENGTH(len);

	if (NLMSG_ALIGN(m->hdr.nlmsg_len) + RTA_ALIGN(total) > sizeof(*m))
		return;		/* callers stay far below the buffer */
	rta->rta_type = type;
	rta->rta_len = (unsigned short)total;
	memcpy(RTA_DATA(rta), data, len);
	m->hdr.nlmsg_len = (unsigned)(NLMSG_ALIGN(m->hdr.nlmsg_len) + RTA_ALIGN(total));
}

/* Sends m and waits for its ACK. 0 or the kernel's -errno. */
static int
nl_call(struct nl_msg *m)
{
	char buf[NL_BUF];
	int fd = nl_open(), r = -EIO;
	ssize_t n;

	if (fd < 0)
		return fd;
	m->hdr.nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
	m->hdr.nlmsg_seq = 1;
	if (send(fd, m, m->hdr.nlmsg_len, 0) < 0) {
		r = -errno;
		goto out;
	}
	for (;;) {
		n = recv(fd, buf, sizeof(buf), 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			r = -errno;
			goto out;
		}
		for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n);
		    h = NLMSG_NEXT(h, n)) {
			if (h->nlmsg_type == NLMSG_ERROR) {
				r = ((struct nlmsgerr *)NLMSG_DATA(h))->error;
				goto out;
			}
		}
	}
out:
	close(fd);
	return r;
}

int
net_tap_create(const char *name, const char *vm, int *fdp)
{
	struct ifreq ifr;
	char alias[64];
	int fd, r;

	if (strlen(name) >= IFNAMSIZ || strlen(name) == 0)
		return -EINVAL;
	if (net_link_exists(name))
		return -EEXIST;
	if ((fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC)) < 0)
		return -errno;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	if (ioctl(fd, TUNSETIFF, &ifr) < 0 || ioctl(fd, TUNSETPERSIST, 1) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	snprintf(alias, sizeof(alias), NET_TAP_ALIAS_PREFIX "%s", vm);
	struct nl_msg m = { 0 };
	m.hdr.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifinfomsg));
	m.hdr.nlmsg_type = RTM_NEWLINK;
	m.u.ifi.ifi_family = AF_UNSPEC;
	m.u.ifi.ifi_index = (int)if_nametoindex(name);
	nl_attr(&m, IFLA_IFALIAS, alias, strlen(alias));
	if (m.u.ifi.ifi_index == 0 || (r = nl_call(&m)) < 0) {
		r = m.u.ifi.ifi_index == 0 ? -ENODEV : r;
		ioctl(fd, TUNSETPERSIST, 0);
		close(fd);
		return r;
	}
	*fdp = fd;
	return 0;
}

int
net_tap_set_owner(int fd, uid_t uid, gid_t gid)
{
	/* The tun driver lets a process attach when its euid is the owner and
	 * it is in the group (both, when both are set), or with CAP_NET_ADMIN. */
	if (ioctl(fd, TUNSETOWNER, (unsigned long)uid) < 0 ||
	    ioctl(fd, TUNSETGROUP, (unsigned long)gid) < 0)
		return -errno;
	return 0;
}

static void
ipv6_off(const char *name)
{
	char path[128];

	snprintf(path, sizeof(path), "/proc/sys/net/ipv6/conf/%s/disable_ipv6", name);
	/* Best effort: without IPv6 in the kernel there is nothing to turn
	 * off, and the firewall drops IPv6 from guests anyway. */
	(void)write_file_text(path, "1");
}

int
net_tap_configure(const char *name, uint32_t addr, unsigned prefix)
{
	unsigned idx = if_nametoindex(name);
	uint32_t be = htonl(addr);
	struct nl_msg m = { 0 };
	int r;

	if (idx == 0)
		return -ENODEV;
	ipv6_off(name);
	m.hdr.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifaddrmsg));
	m.hdr.nlmsg_type = RTM_NEWADDR;
	m.hdr.nlmsg_flags = NLM_F_CREATE | NLM_F_REPLACE;
	m.u.ifa.ifa_family = AF_INET;
	m.u.ifa.ifa_prefixlen = (unsigned char)prefix;
	m.u.ifa.ifa_scope = RT_SCOPE_UNIVERSE;
	m.u.ifa.ifa_index = idx;
	nl_attr(&m, IFA_LOCAL, &be, sizeof(be));
	nl_attr(&m, IFA_ADDRESS, &be, sizeof(be));
	if ((r = nl_call(&m)) < 0)
		return r;

	memset(&m, 0, sizeof(m));
	m.hdr.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifinfomsg));
	m.hdr.nlmsg_type = RTM_NEWLINK;
	m.u.ifi.ifi_family = AF_UNSPEC;
	m.u.ifi.ifi_index = (int)idx;
	m.u.ifi.ifi_flags = IFF_UP;
	m.u.ifi.ifi_change = IFF_UP;
	return nl_call(&m);
}

int
net_tap_delete(const char *name)
{
	unsigned idx = if_nametoindex(name);
	struct nl_msg m = { 0 };

	if (idx == 0)
		return -ENODEV;
	m.hdr.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifinfomsg));
	m.hdr.nlmsg_type = RTM_DELLINK;
	m.u.ifi.ifi_family = AF_UNSPEC;
	m.u.ifi.ifi_index = (int)idx;
	return nl_call(&m);
}

bool
net_link_exists(const char *name)
{
	return if_nametoindex(name) != 0;
}

/* One RTM_NEWLINK of a dump: its name and alias. */
static void
link_attrs(struct nlmsghdr *h, char *name, size_t nlen, char *alias, size_t alen)
{
	struct ifinfomsg *ifi = NLMSG_DATA(h);
	int len = (int)IFLA_PAYLOAD(h);

	name[0] = alias[0] = '\0';
	for (struct rtattr *a = IFLA_RTA(ifi); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
		size_t plen = RTA_PAYLOAD(a);
		if (a->rta_type == IFLA_IFNAME)
			snprintf(name, nlen, "%.*s", (int)strnlen(RTA_DATA(a), plen),
			    (const char *)RTA_DATA(a));
		else if (a->rta_type == IFLA_IFALIAS)
			snprintf(alias, alen, "%.*s", (int)strnlen(RTA_DATA(a), plen),
			    (const char *)RTA_DATA(a));
	}
}

int
net_tap_foreach_ours(void (*fn)(void *ctx, const char *ifname, const char *vm), void *ctx)
{
	struct nl_msg m = { 0 };
	char buf[NL_BUF], name[IFNAMSIZ], alias[256];
	int fd = nl_open(), r = 0;
	ssize_t n;

	if (fd < 0)
		return fd;
	m.hdr.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifinfomsg));
	m.hdr.nlmsg_type = RTM_GETLINK;
	m.hdr.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	m.hdr.nlmsg_seq = 1;
	m.u.ifi.ifi_family = AF_UNSPEC;
	if (send(fd, &m, m.hdr.nlmsg_len, 0) < 0) {
		r = -errno;
		goto out;
	}
	for (;;) {
		n = recv(fd, buf, sizeof(buf), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			r = n < 0 ? -errno : -EIO;
			goto out;
		}
		for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n);
		    h = NLMSG_NEXT(h, n)) {
			if (h->nlmsg_type == NLMSG_DONE)
				goto out;
			if (h->nlmsg_type == NLMSG_ERROR) {
				r = ((struct nlmsgerr *)NLMSG_DATA(h))->error;
				goto out;
			}
			if (h->nlmsg_type != RTM_NEWLINK)
				continue;
			link_attrs(h, name, sizeof(name), alias, sizeof(alias));
			if (name[0] != '\0' && strncmp(alias, NET_TAP_ALIAS_PREFIX,
			    strlen(NET_TAP_ALIAS_PREFIX)) == 0)
				fn(ctx, name, alias + strlen(NET_TAP_ALIAS_PREFIX));
		}
	}
out:
	close(fd);
	return r;
}

#define IP_FORWARD "/proc/sys/net/ipv4/ip_forward"

int
net_ip_forward_get(void)
{
	char c = '0';
	int fd = open(IP_FORWARD, O_RDONLY | O_CLOEXEC), r;

	if (fd < 0)
		return -errno;
	r = read(fd, &c, 1) == 1 ? (c == '1') : -EIO;
	close(fd);
	return r;
}

int
net_ip_forward_enable(void)
{
	return write_file_text(IP_FORWARD, "1");
}
