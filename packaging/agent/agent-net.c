/*
 * The guest's network interfaces for the info op: each interface's name,
 * whether it is up, its MAC and its IPv4/IPv6 addresses with their prefix
 * lengths, read with getifaddrs(3) (netlink; works in the static agent).
 * The host learns from this what address the guest really has, which is
 * how a test or a user checks that ember.net= was applied. Bounded: at most
 * AGENT_NET_IFACES_MAX interfaces and AGENT_NET_ADDRS_MAX addresses each;
 * anything beyond is dropped and "truncated" says so.
 */
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netpacket/packet.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "agent.h"

/* Bits set in a netmask of len bytes. */
static int
prefix_length(const unsigned char *mask, size_t len)
{
	int bits = 0;

	for (size_t i = 0; i < len; i++)
		bits += __builtin_popcount(mask[i]);
	return bits;
}

/* The entry for name in ifaces, created (when there is room) if missing. */
static json_t *
iface_entry(json_t *ifaces, const char *name, bool *truncated)
{
	json_t *entry;
	size_t i;

	json_array_foreach(ifaces, i, entry) {
		if (strcmp(json_string_value(json_object_get(entry, "name")),
		    name) == 0)
			return entry;
	}
	if (json_array_size(ifaces) >= AGENT_NET_IFACES_MAX) {
		*truncated = true;
		return NULL;
	}
	entry = json_pack("{s:s, s:b, s:n, s:[]}", "name", name, "up", 0,
	    "mac", "addresses");
	if (entry == NULL || json_array_append_new(ifaces, entry) != 0)
		return NULL;
	return entry;
}

static int
add_mac(json_t *entry, const struct sockaddr_ll *ll)
{
	char mac[18];

	if (ll->sll_halen != 6)
		return 0;
	snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x",
	    ll->sll_addr[0], ll->sll_addr[1], ll->sll_addr[2],
	    ll->sll_addr[3], ll->sll_addr[4], ll->sll_addr[5]);
	return json_object_set_new(entry, "mac", json_string(mac));
}

static int
add_address(json_t *entry, const struct ifaddrs *ifa, bool *truncated)
{
	json_t *addrs = json_object_get(entry, "addresses");
	char text[INET6_ADDRSTRLEN];
	const void *addr, *mask = NULL;
	size_t mask_len;
	int family = ifa->ifa_addr->sa_family;

	if (json_array_size(addrs) >= AGENT_NET_ADDRS_MAX) {
		*truncated = true;
		return 0;
	}
	if (family == AF_INET) {
		addr = &((const struct sockaddr_in *)(const void *)
		    ifa->ifa_addr)->sin_addr;
		if (ifa->ifa_netmask != NULL)
			mask = &((const struct sockaddr_in *)(const void *)
			    ifa->ifa_netmask)->sin_addr;
		mask_len = 4;
	} else {
		addr = &((const struct sockaddr_in6 *)(const void *)
		    ifa->ifa_addr)->sin6_addr;
		if (ifa->ifa_netmask != NULL)
			mask = &((const struct sockaddr_in6 *)(const void *)
			    ifa->ifa_netmask)->sin6_addr;
		mask_len = 16;
	}
	if (inet_ntop(family, addr, text, sizeof(text)) == NULL)
		return 0;
	return json_array_append_new(addrs, json_pack("{s:s, s:s, s:o}",
	    "family", family == AF_INET ? "inet" : "inet6", "address", text,
	    "prefix", mask != NULL ?
	    json_integer(prefix_length(mask, mask_len)) : json_null()));
}

json_t *
agent_net_from_ifaddrs(const struct ifaddrs *list, bool *truncated)
{
	json_t *ifaces = json_array(), *entry, *probe;
	char name[IF_NAMESIZE];
	const struct ifaddrs *ifa;
	int r;

	*truncated = false;
	if (ifaces == NULL)
		return NULL;
	for (ifa = list; ifa != NULL; ifa = ifa->ifa_next) {
		if (ifa->ifa_name == NULL || ifa->ifa_name[0] == '\0' ||
		    strnlen(ifa->ifa_name, sizeof(name)) == sizeof(name))
			continue;
		/* Interface names are bytes; JSON wants UTF-8. */
		if ((probe = json_string(ifa->ifa_name)) == NULL)
			continue;
		json_decref(probe);
		if ((entry = iface_entry(ifaces, ifa->ifa_name, truncated)) == NULL) {
			if (*truncated)
				continue;
			goto nomem;
		}
		if (ifa->ifa_flags & IFF_UP)
			json_object_set_new(entry, "up", json_true());
		if (ifa->ifa_addr == NULL)
			continue;
		switch (ifa->ifa_addr->sa_family) {
		case AF_PACKET:
			r = add_mac(entry, (const struct sockaddr_ll *)
			    (const void *)ifa->ifa_addr);
			break;
		case AF_INET:
		case AF_INET6:
			r = add_address(entry, ifa, truncated);
			break;
		default:
			r = 0;
		}
		if (r != 0)
			goto nomem;
	}
	return ifaces;
nomem:
	json_decref(ifaces);
	return NULL;
}

int
agent_net_info(json_t *reply, struct agent_error *err)
{
	struct ifaddrs *list;
	json_t *ifaces;
	bool truncated;

	if (getifaddrs(&list) != 0)
		/* No network stack facts is not a failed info. */
		return json_object_set_new(reply, "interfaces", json_null()) ?
		    agent_error_set(err, "out of memory") : 0;
	ifaces = agent_net_from_ifaddrs(list, &truncated);
	freeifaddrs(list);
	if (ifaces == NULL ||
	    json_object_set_new(reply, "interfaces", ifaces) != 0 ||
	    (truncated && json_object_set_new(reply, "interfaces_truncated",
	    json_true()) != 0))
		return agent_error_set(err, "out of memory");
	return 0;
}
