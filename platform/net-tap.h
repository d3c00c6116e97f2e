/*
 * A VM's TAP device on the host, made and unmade with kernel calls alone
 * (the tun ioctls and rtnetlink, each quick enough for the event loop): no
 * `ip` process. The TAP is persistent so that Firecracker can open it by
 * name and so that it outlives an emberd killed while its VM runs; each one
 * carries the alias "ember:<vm name>", which is how a restarted emberd tells
 * its own devices (to adopt or remove) from anything else on the host.
 * Addresses are IPv4 in host byte order. Functions return 0 or -errno.
 */
#ifndef EMBER_NET_TAP_H
#define EMBER_NET_TAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define NET_IFNAME_MAX		16	/* IFNAMSIZ, NUL included */
#define NET_TAP_ALIAS_PREFIX	"ember:"

/* Creates the persistent TAP name (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR),
 * aliased "ember:<vm>", and returns an fd attached to it (O_CLOEXEC) in
 * *fd. -EEXIST when an interface of that name exists already (nothing is
 * touched then). */
int net_tap_create(const char *name, const char *vm, int *fd);
/* Lets only uid, in group gid, attach to the TAP fd is attached to (besides
 * CAP_NET_ADMIN, which may always): a hypervisor running as a VM's owner
 * opens its TAP by name. Nobody else can, and the owner reaches no other
 * TAP. */
int net_tap_set_owner(int fd, uid_t uid, gid_t gid);
/* Gives the device addr/prefix, turns off IPv6 on it and sets it up. */
int net_tap_configure(const char *name, uint32_t addr, unsigned prefix);
/* Deletes the interface; -ENODEV when there is none. */
int net_tap_delete(const char *name);
bool net_link_exists(const char *name);

/* Every interface whose alias starts with "ember:": fn(ctx, ifname, vm). */
int net_tap_foreach_ours(void (*fn)(void *ctx, const char *ifname, const char *vm),
    void *ctx);

/* net.ipv4.ip_forward of emberd's network namespace: 1 when it is on. */
int net_ip_forward_get(void);
int net_ip_forward_enable(void);

#endif
