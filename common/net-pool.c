/*
 * The VM network allocator (see net-pool.h). Which /30s are taken is a
 * plain bitmap, one bit per /30 (at most 2^22 bits, 512 KiB, for a /8); the
 * lowest free one is found a 64-bit word at a time. Who holds what lives in
 * two jansson objects used as hash tables, owner -> slot and "A.B.C.D/30"
 * -> owner, as in cid-alloc.c.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net-pool.h"

struct net_pool {
	uint32_t	 base;
	unsigned	 prefix;
	size_t		 nslots;	/* /30s in the pool */
	uint64_t	*bits;		/* nslots bits, 1: taken */
	json_t		*by_owner;	/* owner -> slot index */
	json_t		*by_key;	/* "A.B.C.D/30" -> owner */
};

int
net_cidr_parse(const char *s, uint32_t *base, unsigned *prefix)
{
	char addr[INET_ADDRSTRLEN];
	const char *slash;
	struct in_addr in;
	unsigned p = 0;
	size_t n;

	if (s == NULL || (slash = strchr(s, '/')) == NULL)
		return -EINVAL;
	n = (size_t)(slash - s);
	if (n == 0 || n >= sizeof(addr))
		return -EINVAL;
	memcpy(addr, s, n);
	addr[n] = '\0';
	if (inet_pton(AF_INET, addr, &in) != 1)
		return -EINVAL;
	/* one or two digits, no sign, no leading zero */
	if (slash[1] < '1' || slash[1] > '9')
		return -EINVAL;
	for (n = 1; slash[n] != '\0'; n++) {
		if (slash[n] < '0' || slash[n] > '9' || n > 2)
			return -EINVAL;
		p = p * 10 + (unsigned)(slash[n] - '0');
	}
	if (p < NET_POOL_PREFIX_MIN || p > NET_POOL_PREFIX_MAX)
		return -EINVAL;
	uint32_t a = ntohl(in.s_addr);
	if (a & ((1u << (32 - p)) - 1))
		return -EINVAL;		/* host bits set */
	*base = a;
	*prefix = p;
	return 0;
}

void
net_cidr_format(uint32_t addr, unsigned prefix, char *buf, size_t len)
{
	snprintf(buf, len, "%u.%u.%u.%u/%u", addr >> 24, (addr >> 16) & 255,
	    (addr >> 8) & 255, addr & 255, prefix);
}

struct net_pool *
net_pool_new(uint32_t base, unsigned prefix)
{
	struct net_pool *p;

	if (prefix < NET_POOL_PREFIX_MIN || prefix > NET_POOL_PREFIX_MAX ||
	    (base & ((1u << (32 - prefix)) - 1)) != 0) {
		errno = EINVAL;
		return NULL;
	}
	if ((p = calloc(1, sizeof(*p))) == NULL)
		return NULL;
	p->base = base;
	p->prefix = prefix;
	p->nslots = (size_t)1 << (NET_SUBNET_PREFIX - prefix);
	p->bits = calloc((p->nslots + 63) / 64, sizeof(*p->bits));
	p->by_owner = json_object();
	p->by_key = json_object();
	if (p->bits == NULL || p->by_owner == NULL || p->by_key == NULL) {
		net_pool_free(p);
		errno = ENOMEM;
		return NULL;
	}
	return p;
}

void
net_pool_free(struct net_pool *p)
{
	if (p == NULL)
		return;
	free(p->bits);
	json_decref(p->by_owner);
	json_decref(p->by_key);
	free(p);
}

static uint32_t
slot_subnet(const struct net_pool *p, size_t slot)
{
	return p->base + (uint32_t)slot * 4;
}

static void
subnet_key(uint32_t subnet, char *buf, size_t len)
{
	net_cidr_format(subnet, NET_SUBNET_PREFIX, buf, len);
}

static bool
slot_taken(const struct net_pool *p, size_t slot)
{
	return (p->bits[slot / 64] >> (slot % 64)) & 1;
}

/* Lowest free slot, or nslots when the pool is full. */
static size_t
slot_lowest_free(const struct net_pool *p)
{
	for (size_t w = 0; w < (p->nslots + 63) / 64; w++) {
		if (p->bits[w] == UINT64_MAX)
			continue;
		size_t slot = w * 64 + (size_t)__builtin_ctzll(~p->bits[w]);
		return slot < p->nslots ? slot : p->nslots;
	}
	return p->nslots;
}

static int
slot_take(struct net_pool *p, const char *owner, size_t slot)
{
	char key[NET_ADDR_STRLEN];
	json_t *o;

	subnet_key(slot_subnet(p, slot), key, sizeof(key));
	if ((o = json_string(owner)) == NULL)
		return -EINVAL;		/* not UTF-8 */
	if (json_object_set_new(p->by_key, key, o) != 0)
		return -ENOMEM;
	if (json_object_set_new(p->by_owner, owner, json_integer((json_int_t)slot)) != 0) {
		json_object_del(p->by_key, key);
		return -ENOMEM;
	}
	p->bits[slot / 64] |= (uint64_t)1 << (slot % 64);
	return 0;
}

int
net_pool_get(struct net_pool *p, const char *owner, uint32_t *subnet)
{
	size_t slot;
	int r;

	if (owner == NULL || *owner == '\0')
		return -EINVAL;
	if (net_pool_lookup(p, owner, subnet))
		return 0;
	if ((slot = slot_lowest_free(p)) >= p->nslots)
		return -ENOSPC;
	if ((r = slot_take(p, owner, slot)) != 0)
		return r;
	*subnet = slot_subnet(p, slot);
	return 0;
}

int
net_pool_claim(struct net_pool *p, const char *owner, uint32_t subnet)
{
	uint32_t held;
	size_t slot;

	if (owner == NULL || *owner == '\0')
		return -EINVAL;
	if (subnet < p->base || (subnet & 3) != 0 ||
	    (size_t)((subnet - p->base) / 4) >= p->nslots)
		return -ERANGE;
	if (net_pool_lookup(p, owner, &held))
		return held == subnet ? 0 : -EBUSY;
	slot = (subnet - p->base) / 4;
	if (slot_taken(p, slot))
		return -EEXIST;
	return slot_take(p, owner, slot);
}

int
net_pool_release(struct net_pool *p, const char *owner)
{
	char key[NET_ADDR_STRLEN];
	uint32_t subnet;
	size_t slot;

	if (owner == NULL || !net_pool_lookup(p, owner, &subnet))
		return -ENOENT;
	slot = (subnet - p->base) / 4;
	p->bits[slot / 64] &= ~((uint64_t)1 << (slot % 64));
	subnet_key(subnet, key, sizeof(key));
	json_object_del(p->by_key, key);
	json_object_del(p->by_owner, owner);
	return 0;
}

bool
net_pool_lookup(const struct net_pool *p, const char *owner, uint32_t *subnet)
{
	json_t *v;

	if (owner == NULL || (v = json_object_get(p->by_owner, owner)) == NULL)
		return false;
	if (subnet != NULL)
		*subnet = slot_subnet(p, (size_t)json_integer_value(v));
	return true;
}

const char *
net_pool_owner(const struct net_pool *p, uint32_t subnet)
{
	char key[NET_ADDR_STRLEN];

	subnet_key(subnet, key, sizeof(key));
	return json_string_value(json_object_get(p->by_key, key));
}

size_t
net_pool_count(const struct net_pool *p)
{
	return json_object_size(p->by_owner);
}

size_t
net_pool_capacity(const struct net_pool *p)
{
	return p->nslots;
}

void
net_pool_describe(const struct net_pool *p, char *buf, size_t len)
{
	net_cidr_format(p->base, p->prefix, buf, len);
}

void
net_pool_foreach(const struct net_pool *p,
    void (*fn)(void *ctx, uint32_t subnet, const char *owner), void *ctx)
{
	for (size_t w = 0; w < (p->nslots + 63) / 64; w++)
		for (uint64_t bits = p->bits[w]; bits != 0; bits &= bits - 1) {
			uint32_t subnet = slot_subnet(p, w * 64 + (size_t)__builtin_ctzll(bits));
			fn(ctx, subnet, net_pool_owner(p, subnet));
		}
}

static void
to_json_one(void *ctx, uint32_t subnet, const char *owner)
{
	char key[NET_ADDR_STRLEN];

	subnet_key(subnet, key, sizeof(key));
	json_object_set_new(ctx, key, json_string(owner));
}

json_t *
net_pool_to_json(const struct net_pool *p)
{
	char pool[NET_ADDR_STRLEN];
	json_t *allocs = json_object();

	if (allocs == NULL)
		return NULL;
	net_pool_foreach(p, to_json_one, allocs);
	if (json_object_size(allocs) != net_pool_count(p)) {
		json_decref(allocs);	/* out of memory on the way */
		return NULL;
	}
	net_pool_describe(p, pool, sizeof(pool));
	return json_pack("{s:i, s:s, s:o}", "version", 1, "pool", pool, "allocations", allocs);
}

/* "A.B.C.D/30" exactly as net_cidr_format writes it. */
static bool
key_parse(const char *key, uint32_t *subnet)
{
	char canon[NET_ADDR_STRLEN];
	char addr[INET_ADDRSTRLEN];
	const char *slash = strchr(key, '/');
	struct in_addr in;

	if (slash == NULL || (size_t)(slash - key) >= sizeof(addr) ||
	    strcmp(slash, "/30") != 0)
		return false;
	memcpy(addr, key, (size_t)(slash - key));
	addr[slash - key] = '\0';
	if (inet_pton(AF_INET, addr, &in) != 1)
		return false;
	*subnet = ntohl(in.s_addr);
	subnet_key(*subnet, canon, sizeof(canon));
	return strcmp(canon, key) == 0 && (*subnet & 3) == 0;
}

int
net_pool_load_json(struct net_pool *p, const json_t *doc,
    void (*skipped)(void *ctx, const char *key, const char *why), void *ctx)
{
	const json_t *allocs, *version, *v;
	const char *key, *owner, *holder;
	char why[160], pool[NET_ADDR_STRLEN];
	uint32_t subnet, held;
	int r;

	if (!json_is_object(doc))
		return -EINVAL;
	version = json_object_get(doc, "version");
	if (version != NULL && (!json_is_integer(version) || json_integer_value(version) != 1))
		return -EINVAL;
	allocs = json_object_get(doc, "allocations");
	if (!json_is_object(allocs))
		return -EINVAL;
	net_pool_describe(p, pool, sizeof(pool));
	json_object_foreach((json_t *)allocs, key, v) {
		owner = json_string_value(v);
		if (!key_parse(key, &subnet))
			snprintf(why, sizeof(why), "not a /30 network address");
		else if (owner == NULL || *owner == '\0')
			snprintf(why, sizeof(why), "owner is not a name");
		else if ((r = net_pool_claim(p, owner, subnet)) == 0)
			continue;
		else if (r == -ERANGE)
			snprintf(why, sizeof(why), "outside the pool %s", pool);
		else if (r == -EBUSY && net_pool_lookup(p, owner, &held)) {
			char h[NET_ADDR_STRLEN];
			subnet_key(held, h, sizeof(h));
			snprintf(why, sizeof(why), "%.64s already holds %s", owner, h);
		} else if (r == -EEXIST && (holder = net_pool_owner(p, subnet)))
			snprintf(why, sizeof(why), "held by %.64s", holder);
		else
			snprintf(why, sizeof(why), "%s", strerror(-r));
		if (skipped != NULL)
			skipped(ctx, key, why);
	}
	return 0;
}
