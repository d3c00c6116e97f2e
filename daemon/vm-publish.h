/*
 * A running "nat" VM's published ports on the host side. For each one
 * emberd binds HOSTADDR:HOSTPORT itself while the VM runs: that refuses a
 * port already taken before anything starts, and serves connections made
 * from the host (127.0.0.1 included, which the DNAT of ember_nat cannot
 * see) by splicing them to the guest's port. Connections from elsewhere
 * never reach the socket: prerouting DNAT sends them to the guest first.
 * A UDP port is relayed the same way, per client: each distinct client
 * address and port gets a socket connected to the guest's port, and the
 * guest's replies on it go back to that client from the published socket.
 */
#ifndef EMBER_VM_PUBLISH_H
#define EMBER_VM_PUBLISH_H

#include <stddef.h>
#include <stdint.h>
#include "error.h"
#include "vm-record.h"

struct event_base;
struct vm_publish_set;

/* Connections spliced at once per VM; more are refused (closed). */
#define VM_PUBLISH_CONNS_MAX	256
/* Bytes buffered per direction before the sending side stops being read. */
#define VM_PUBLISH_HIGH_WATER	(64 * 1024)
/* UDP clients relayed at once per VM; a new one beyond this takes the place
 * of the one idle longest. */
#define VM_PUBLISH_UDP_FLOWS_MAX	256
/* Seconds without a datagram either way after which a UDP client is forgotten. */
#define VM_PUBLISH_UDP_IDLE_S	60
/* Datagrams read per readiness callback, so that one busy socket cannot
 * hold the loop. */
#define VM_PUBLISH_UDP_BURST	32

/* Binds every published port of net (guest at net->subnet + 2). NULL with
 * err naming the port that is taken. */
struct vm_publish_set *vm_publish_open(struct event_base *base, const char *vm_name,
    const struct vm_net *net, struct ember_error *err);
/* Closes the listeners and every spliced connection. NULL is a no-op. */
void vm_publish_close(struct vm_publish_set *s);
/* UDP clients relayed now (flows), for inspection and tests. */
size_t vm_publish_udp_flows(const struct vm_publish_set *s);
/* How long a UDP client may stay idle, in ms (tests shorten
 * VM_PUBLISH_UDP_IDLE_S); applies from the next flow made. */
void vm_publish_set_udp_idle(struct vm_publish_set *s, unsigned idle_ms);
/* Whether host_addr:port/proto can be bound now (create's early check):
 * 0, or -errno from bind (EADDRINUSE). */
int vm_publish_probe(const struct vm_publish *p);

#endif
