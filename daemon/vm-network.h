/*
 * VM networks (network "nat"): a routed /30 per VM from the pool of the
 * daemon config, a TAP per running VM, emberd's nftables tables, published
 * ports. What lives how long:
 *
 *   the /30 and the MAC     from create to delete (allocations.json, kept
 *                           durably beside cids.json and repaired the same
 *                           way at startup);
 *   TAP, address, rules,    while a hypervisor process exists: made before
 *   published-port sockets  it is launched, removed when the VM's status
 *                           leaves the process states (stop, exit, crash,
 *                           failed start or adoption).
 *
 * After emberd restarts (even from kill -9) vm_network_reconcile adopts the
 * TAPs of VMs still running, deletes every other TAP carrying emberd's alias,
 * and rebuilds emberd's tables from the VM table.
 */
#ifndef EMBER_VM_NETWORK_H
#define EMBER_VM_NETWORK_H

#include <jansson.h>
#include <stdbool.h>
#include <sys/types.h>
#include "error.h"

struct ember_daemon;
struct vm;

/* Startup, once the VM records are listed: the pool and allocations.json,
 * made to agree with the records. -1 with err when the state directory
 * cannot be used. */
int vm_network_load(struct ember_daemon *d, struct ember_error *err);
/* Startup, once running VMs are re-adopted: TAPs, sockets and firewall
 * brought in line with the VM table. */
void vm_network_reconcile(struct ember_daemon *d);
/* Daemon exit: frees everything, leaving running VMs' networks as they are. */
void vm_network_free(struct ember_daemon *d);

/* vm.create: checks mode ("none", "user", "nat") and publish (an array of
 * "[HOSTADDR:]HOSTPORT:GUESTPORT[/tcp|/udp]" strings, or NULL) and stores
 * them in vm->rec. A host port below 1024 for an owner other than root, one
 * another VM publishes or one that cannot be bound now is refused. */
int vm_network_prepare(struct vm *vm, const char *mode, const json_t *publish,
    struct ember_error *err);
/* A fork of a "nat" VM gets a /30 of its own and publishes nothing. */
void vm_network_forget(struct vm *vm);
/* Create (when the CID is allocated): the VM's /30, written to
 * allocations.json. A no-op unless its network is "nat". */
int vm_network_allocate(struct vm *vm, struct ember_error *err);
/* Delete (or a create undone): gives the /30 back. */
void vm_network_release(struct vm *vm);

/* Start, before the hypervisor is launched: published-port sockets, TAP,
 * address and rules. 1: nothing to do (not "nat"); 0: done(vm, err) is
 * called later from the loop (err NULL on success); -1 with err. */
typedef void (*vm_network_done_fn)(struct vm *vm, const struct ember_error *err);
int vm_network_up(struct vm *vm, vm_network_done_fn done, struct ember_error *err);
/* The backend's start returned: the daemon's copy of the TAP fd closes. */
void vm_network_started(struct vm *vm);
/* No hypervisor process any more: rules, TAP and sockets go. Idempotent. */
void vm_network_down(struct vm *vm);
/* Frees the VM's runtime network state without touching the host (daemon
 * exit with the VM left running, or the VM being freed). */
void vm_network_detach(struct vm *vm);

#endif
