/*
 * In-place upgrade: emberd re-executes its binary (the file now at the
 * path it was started from, so a package upgrade's new binary runs) and
 * hands itself, through the sd_listen_fds convention, every fd a running
 * VM's vsock device needs (platform/linux/fd-keep.h) and the control
 * socket, so neither QEMU nor a client connecting meanwhile sees a gap.
 * Started by the daemon.upgrade method (root only) or SIGUSR2.
 */
#ifndef EMBER_UPGRADE_H
#define EMBER_UPGRADE_H

#include "error.h"

struct ember_daemon;
struct notify;

/* Remembers argv (for the exec) and the fd store channel (whose
 * environment the successor needs); call once from main. */
void upgrade_init(char **argv, struct notify *fdstore);
/* Checks that an upgrade can run and starts it: emberd drains (requests in
 * flight answered, the listening socket kept, see upgrade.c), then
 * re-executes; 0, or -1 with err. */
int daemon_upgrade_schedule(struct ember_daemon *d, struct ember_error *err);
/* The drain of an upgrade is complete (daemon.c's on_drained). */
void upgrade_drained(struct ember_daemon *d);
/* Installs SIGUSR2 as a trigger for daemon_upgrade_schedule. */
int upgrade_signal_install(struct ember_daemon *d);
void upgrade_free(void);

#endif
