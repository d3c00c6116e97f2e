/*
 * The VM network allocator: hands each owner (a VM name) the lowest free /30
 * of an IPv4 pool (by default 10.100.0.0/16). In a /30 at network address N,
 * N+1 is the host end (the TAP's address, the guest's gateway) and N+2 the
 * guest. An owner holds at most one /30; asking again returns the same one.
 * Pure data structure like cid-alloc.h: persistence is the caller's
 * (net_pool_to_json / net_pool_load_json). Addresses are host byte order.
 */
#ifndef EMBER_NET_POOL_H
#define EMBER_NET_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#define NET_POOL_DEFAULT	"10.100.0.0/16"
#define NET_POOL_PREFIX_MIN	8	/* at most 2^22 /30s */
#define NET_POOL_PREFIX_MAX	30	/* one /30 */
#define NET_SUBNET_PREFIX	30
#define NET_ADDR_STRLEN		20	/* "255.255.255.255/30" */

struct net_pool;

/* "A.B.C.D/P" with P in [NET_POOL_PREFIX_MIN, NET_POOL_PREFIX_MAX] and no
 * host bits set. 0 or -EINVAL. */
int net_cidr_parse(const char *s, uint32_t *base, unsigned *prefix);
/* "A.B.C.D/P" into buf (NET_ADDR_STRLEN bytes are enough). */
void net_cidr_format(uint32_t addr, unsigned prefix, char *buf, size_t len);
/* The host end (gateway) and guest end of the /30 at subnet. */
static inline uint32_t net_subnet_host(uint32_t subnet) { return subnet + 1; }
static inline uint32_t net_subnet_guest(uint32_t subnet) { return subnet + 2; }

/* NULL with errno EINVAL for a bad base/prefix, ENOMEM. */
struct net_pool *net_pool_new(uint32_t base, unsigned prefix);
void net_pool_free(struct net_pool *p);

/* Lowest free /30 for owner, or owner's existing one. 0, -EINVAL (no
 * owner), -ENOSPC or -ENOMEM. */
int net_pool_get(struct net_pool *p, const char *owner, uint32_t *subnet);
/* Gives owner exactly subnet. 0 (also when it holds it already), -EEXIST
 * when another owner holds it, -EBUSY when owner holds another, -ERANGE
 * when subnet is not a /30 of the pool. */
int net_pool_claim(struct net_pool *p, const char *owner, uint32_t subnet);
/* 0 or -ENOENT. */
int net_pool_release(struct net_pool *p, const char *owner);

bool net_pool_lookup(const struct net_pool *p, const char *owner, uint32_t *subnet);
/* Owner of subnet, or NULL. */
const char *net_pool_owner(const struct net_pool *p, uint32_t subnet);
size_t net_pool_count(const struct net_pool *p);
/* How many /30s the pool has. */
size_t net_pool_capacity(const struct net_pool *p);
/* The pool as "A.B.C.D/P". */
void net_pool_describe(const struct net_pool *p, char *buf, size_t len);
/* Calls fn for every allocation in ascending address order. */
void net_pool_foreach(const struct net_pool *p,
    void (*fn)(void *ctx, uint32_t subnet, const char *owner), void *ctx);

/* {"version": 1, "pool": "10.100.0.0/16",
 *  "allocations": {"10.100.0.0/30": "web", ...}} (new reference). */
json_t *net_pool_to_json(const struct net_pool *p);
/* Claims every allocation of such a document (the file may have been
 * tampered with: anything malformed, outside the pool or conflicting is
 * skipped and reported through skipped(ctx, key, why)). 0, or -EINVAL when
 * doc is not an object with an "allocations" object or names another
 * version. */
int net_pool_load_json(struct net_pool *p, const json_t *doc,
    void (*skipped)(void *ctx, const char *key, const char *why), void *ctx);

#endif
