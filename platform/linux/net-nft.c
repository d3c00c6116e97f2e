/*
 * The nftables scripts of emberd's firewall (see net-nft.h). The policy, in
 * rule order:
 *
 *   input, from a guest's TAP: its own source address only (its chain),
 *     IPv4 only, replies; then only to its own gateway: ping and the
 *     configured host ports; everything else dropped.
 *   forward, from a guest: its own source address, IPv4; to another guest
 *     only replies or an allowed pair (same owner, when the config allows);
 *     out to the world accepted (masqueraded in ember_nat).
 *   forward, to a guest: replies and published ports (DNAT'd) only.
 *
 * Interface names come from emberd ("em-" and hex digits) and addresses
 * are printed from integers, so nothing a client sent is pasted as text.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net-nft.h"

#define IP4(a) (a) >> 24, ((a) >> 16) & 255, ((a) >> 8) & 255, (a) & 255

static void
base_tables(FILE *f, const struct nft_policy *pol)
{
	fprintf(f, "table inet ember {\n"
	    "\tset taps { type ifname; }\n"
	    "\tset gateways { type ipv4_addr . ifname; }\n"
	    "\tset vm_pairs { type ifname . ifname; }\n"
	    "\tmap guest_chain { type ifname : verdict; }\n");
	for (int proto = 0; proto < 2; proto++) {
		bool any = false;
		fprintf(f, "\tset host_%s { type inet_service;", proto ? "udp" : "tcp");
		for (size_t i = 0; i < pol->nhost_ports; i++) {
			const struct ember_host_port *p = &pol->host_ports[i];
			if (proto ? !p->udp : !p->tcp)
				continue;
			fprintf(f, "%s%u", any ? ", " : " elements = { ", (unsigned)p->port);
			any = true;
		}
		fprintf(f, "%s }\n", any ? " }" : "");
	}
	fprintf(f, "\tchain input {\n"
	    "\t\ttype filter hook input priority filter; policy accept;\n"
	    "\t\tiifname @taps jump guest_to_host\n"
	    "\t}\n"
	    "\tchain guest_to_host {\n"
	    "\t\tiifname vmap @guest_chain\n"
	    "\t\tmeta nfproto != ipv4 drop\n"
	    "\t\tct state established,related accept\n"
	    "\t\tip daddr . iifname != @gateways drop\n"
	    "\t\ticmp type echo-request accept\n"
	    "\t\ttcp dport @host_tcp accept\n"
	    "\t\tudp dport @host_udp accept\n"
	    "\t\tdrop\n"
	    "\t}\n"
	    "\tchain forward {\n"
	    "\t\ttype filter hook forward priority filter; policy accept;\n"
	    "\t\tiifname @taps jump from_guest\n"
	    "\t\toifname @taps jump to_guest\n"
	    "\t}\n"
	    "\tchain from_guest {\n"
	    "\t\tiifname vmap @guest_chain\n"
	    "\t\tmeta nfproto != ipv4 drop\n"
	    "\t\toifname @taps jump guest_to_guest\n"
	    "\t\taccept\n"
	    "\t}\n"
	    "\tchain guest_to_guest {\n"
	    "\t\tct state established,related accept\n"
	    "\t\tiifname . oifname @vm_pairs accept\n"
	    "\t\tdrop\n"
	    "\t}\n"
	    "\tchain to_guest {\n"
	    "\t\tct state established,related accept\n"
	    "\t\tct status dnat accept\n"
	    "\t\tdrop\n"
	    "\t}\n"
	    "}\n");
	fprintf(f, "table ip ember_nat {\n"
	    "\tset guests { type ipv4_addr; }\n"
	    "\tmap pub_any { type inet_proto . inet_service : ipv4_addr . inet_service; }\n"
	    "\tmap pub_addr { type ipv4_addr . inet_proto . inet_service : "
	    "ipv4_addr . inet_service; }\n"
	    "\tchain prerouting {\n"
	    "\t\ttype nat hook prerouting priority dstnat; policy accept;\n"
	    "\t\tfib daddr type local dnat ip to ip daddr . meta l4proto . th dport "
	    "map @pub_addr\n"
	    "\t\tfib daddr type local dnat ip to meta l4proto . th dport map @pub_any\n"
	    "\t}\n"
	    "\tchain postrouting {\n"
	    "\t\ttype nat hook postrouting priority srcnat; policy accept;\n"
	    "\t\tip saddr @guests ip daddr != %u.%u.%u.%u/%u masquerade\n"
	    "\t}\n"
	    "}\n", IP4(pol->pool_base), pol->pool_prefix);
}

/* The publish map elements of p: key (and value when with_value). */
static void
publish_elements(FILE *f, const struct nft_vm *vm, bool with_addr, bool with_value)
{
	bool any = false;
	uint32_t guest = vm->subnet + 2;

	for (size_t i = 0; i < vm->npublish; i++) {
		const struct vm_publish *p = &vm->publish[i];
		if ((p->host_addr != 0) != with_addr)
			continue;
		fprintf(f, "%s", any ? ", " : "");
		if (with_addr)
			fprintf(f, "%u.%u.%u.%u . ", IP4(p->host_addr));
		fprintf(f, "%s . %u", p->udp ? "udp" : "tcp", (unsigned)p->host_port);
		if (with_value)
			fprintf(f, " : %u.%u.%u.%u . %u", IP4(guest), (unsigned)p->guest_port);
		any = true;
	}
}

static bool
has_publish(const struct nft_vm *vm, bool with_addr)
{
	for (size_t i = 0; i < vm->npublish; i++)
		if ((vm->publish[i].host_addr != 0) == with_addr)
			return true;
	return false;
}

static void
pairs(FILE *f, const struct nft_vm *vm)
{
	for (size_t i = 0; i < vm->npeers; i++)
		fprintf(f, "%s\"%s\" . \"%s\", \"%s\" . \"%s\"", i ? ", " : "", vm->tap,
		    vm->peers[i], vm->peers[i], vm->tap);
}

static void
vm_add(FILE *f, const struct nft_vm *vm)
{
	fprintf(f, "add element inet ember taps { \"%s\" }\n", vm->tap);
	fprintf(f, "add chain inet ember vm-%s\n", vm->tap);
	fprintf(f, "flush chain inet ember vm-%s\n", vm->tap);
	fprintf(f, "add rule inet ember vm-%s ip saddr != %u.%u.%u.%u drop\n", vm->tap,
	    IP4(vm->subnet + 2));
	fprintf(f, "add element inet ember guest_chain { \"%s\" : jump vm-%s }\n", vm->tap,
	    vm->tap);
	fprintf(f, "add element inet ember gateways { %u.%u.%u.%u . \"%s\" }\n",
	    IP4(vm->subnet + 1), vm->tap);
	fprintf(f, "add element ip ember_nat guests { %u.%u.%u.%u }\n", IP4(vm->subnet + 2));
	for (int with_addr = 0; with_addr < 2; with_addr++) {
		if (!has_publish(vm, with_addr))
			continue;
		fprintf(f, "add element ip ember_nat %s { ", with_addr ? "pub_addr" : "pub_any");
		publish_elements(f, vm, with_addr, true);
		fprintf(f, " }\n");
	}
	if (vm->npeers > 0) {
		fprintf(f, "add element inet ember vm_pairs { ");
		pairs(f, vm);
		fprintf(f, " }\n");
	}
}

/* Closes f and returns its text, or NULL when anything failed. */
static char *
finish(FILE *f, char **text)
{
	bool bad = ferror(f) != 0;

	if (fclose(f) != 0 || bad) {
		free(*text);
		return NULL;
	}
	return *text;
}

char *
nft_script_reset(const struct nft_policy *pol, const struct nft_vm *vms, size_t n)
{
	char *text = NULL;
	size_t len;
	FILE *f = open_memstream(&text, &len);

	if (f == NULL)
		return NULL;
	/* "table X {}" first so that the delete succeeds when it is absent. */
	fprintf(f, "table inet ember {}\ndelete table inet ember\n"
	    "table ip ember_nat {}\ndelete table ip ember_nat\n");
	if (n > 0) {
		base_tables(f, pol);
		for (size_t i = 0; i < n; i++)
			vm_add(f, &vms[i]);
	}
	return finish(f, &text);
}

char *
nft_script_vm_add(const struct nft_vm *vm)
{
	char *text = NULL;
	size_t len;
	FILE *f = open_memstream(&text, &len);

	if (f == NULL)
		return NULL;
	vm_add(f, vm);
	return finish(f, &text);
}

char *
nft_script_vm_del(const struct nft_vm *vm)
{
	char *text = NULL;
	size_t len;
	FILE *f = open_memstream(&text, &len);

	if (f == NULL)
		return NULL;
	fprintf(f, "delete element inet ember guest_chain { \"%s\" }\n", vm->tap);
	fprintf(f, "delete chain inet ember vm-%s\n", vm->tap);
	fprintf(f, "delete element inet ember taps { \"%s\" }\n", vm->tap);
	fprintf(f, "delete element inet ember gateways { %u.%u.%u.%u . \"%s\" }\n",
	    IP4(vm->subnet + 1), vm->tap);
	fprintf(f, "delete element ip ember_nat guests { %u.%u.%u.%u }\n",
	    IP4(vm->subnet + 2));
	for (int with_addr = 0; with_addr < 2; with_addr++) {
		if (!has_publish(vm, with_addr))
			continue;
		fprintf(f, "delete element ip ember_nat %s { ", with_addr ? "pub_addr" : "pub_any");
		publish_elements(f, vm, with_addr, false);
		fprintf(f, " }\n");
	}
	if (vm->npeers > 0) {
		fprintf(f, "delete element inet ember vm_pairs { ");
		pairs(f, vm);
		fprintf(f, " }\n");
	}
	return finish(f, &text);
}
