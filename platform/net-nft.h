/*
 * emberd's firewall as nftables scripts (text for `nft -f`), built from what
 * emberd knows; running them is the daemon's (off the loop). emberd owns two
 * tables and never names anything outside them:
 *
 *   table inet ember     filter: what guests may send to the host (input)
 *                        and through it (forward), per-VM anti-spoofing
 *                        chains, and the sets that name each VM's TAP,
 *                        gateway and allowed same-owner peers;
 *   table ip ember_nat   masquerade for guests going out, DNAT maps for
 *                        published ports.
 *
 * A VM's own rules are set elements plus one chain named after its TAP, so
 * adding or removing a VM touches nothing of another's; the reset script
 * rebuilds both tables from scratch in one transaction (startup, and the
 * fallback when a per-VM script fails on state it did not expect).
 */
#ifndef EMBER_NET_NFT_H
#define EMBER_NET_NFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "config.h"
#include "vm-record.h"

/* Pool-wide policy (from the daemon config). */
struct nft_policy {
	uint32_t pool_base;
	unsigned pool_prefix;
	const struct ember_host_port *host_ports;
	size_t nhost_ports;
};

/* One VM whose network is up. */
struct nft_vm {
	const char *tap;
	uint32_t subnet;			/* its /30 */
	const struct vm_publish *publish;
	size_t npublish;
	const char *const *peers;		/* TAPs it may exchange traffic with */
	size_t npeers;
};

/* Each returns a malloc'd script, or NULL (out of memory). */
/* Drops both tables and, when n > 0, makes them again holding vms. */
char *nft_script_reset(const struct nft_policy *pol, const struct nft_vm *vms, size_t n);
char *nft_script_vm_add(const struct nft_vm *vm);
char *nft_script_vm_del(const struct nft_vm *vm);

#endif
