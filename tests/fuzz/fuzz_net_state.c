/*
 * libFuzzer harness for the two parsers of VM network state that read
 * bytes from outside: network/allocations.json (a file in the state
 * directory someone may have edited) through net_pool_load_json, and a
 * client's published-port string through vm_publish_parse. Invariants: the
 * pool never holds more than its capacity or an address outside it, every
 * owner's /30 is owned by it, the pool's own JSON loads back to the same
 * table; a publish string that parses has ports 1..65535 and a protocol.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "net-pool.h"
#include "vm-record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct check {
	struct net_pool *p;
	size_t seen;
};

static void
check_one(void *ctx, uint32_t subnet, const char *owner)
{
	struct check *c = ctx;
	uint32_t held;

	c->seen++;
	if (owner == NULL || (subnet & 3) != 0 || subnet < 0x0a640000u ||
	    subnet > 0x0a6403fcu)		/* 10.100.0.0/22 */
		abort();
	if (!net_pool_lookup(c->p, owner, &held) || held != subnet)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vm_publish pub;
	char text[80];

	if (size < sizeof(text)) {
		memcpy(text, data, size);
		text[size] = '\0';
		if (vm_publish_parse(text, &pub) == 0 &&
		    (pub.host_port == 0 || pub.guest_port == 0))
			abort();
	}

	json_t *doc = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
	if (doc == NULL)
		return 0;
	struct net_pool *p = net_pool_new(0x0a640000u, 22), *q;
	struct check c = { .p = p };
	net_pool_load_json(p, doc, NULL, NULL);
	json_decref(doc);
	if (net_pool_count(p) > net_pool_capacity(p))
		abort();
	net_pool_foreach(p, check_one, &c);
	if (c.seen != net_pool_count(p))
		abort();
	/* what the pool writes, it reads back the same */
	doc = net_pool_to_json(p);
	q = net_pool_new(0x0a640000u, 22);
	if (doc == NULL || net_pool_load_json(q, doc, NULL, NULL) != 0 ||
	    net_pool_count(q) != net_pool_count(p))
		abort();
	json_decref(doc);
	net_pool_free(q);
	net_pool_free(p);
	return 0;
}
