/*
 * Daemon-wide services the subsystems share: the backend table and what
 * emberd tells the service manager about itself. emberd.c creates these;
 * this file answers questions about them.
 */
#include <stdio.h>
#include <string.h>

#include "cid-alloc.h"
#include "daemon.h"
#include "log.h"
#include "notify.h"
#include "vm.h"

void
daemon_probe_backends(struct ember_daemon *d)
{
	for (int i = 0; i < BACKEND__COUNT; i++) {
		struct backend_info *info = &d->backend_info[i];

		memset(info, 0, sizeof(*info));
		if (d->backends[i] == NULL)
			continue;
		d->backends[i]->probe(d->backends[i], info);
		if (info->available && info->note[0])
			log_warnx("backend %s: %s (%s): %s", d->backends[i]->name, info->version,
			    info->binary, info->note);
		else if (info->available)
			log_info("backend %s: %s (%s)", d->backends[i]->name, info->version,
			    info->binary);
		else
			log_info("backend %s: unavailable: %s", d->backends[i]->name, info->reason);
	}
}

struct backend *
daemon_backend(struct ember_daemon *d, const char *name, const struct backend_info **info)
{
	for (int i = 0; i < BACKEND__COUNT; i++)
		if (d->backends[i] != NULL && strcmp(d->backends[i]->name, name) == 0) {
			if (info != NULL)
				*info = &d->backend_info[i];
			return d->backends[i];
		}
	if (info != NULL)
		*info = NULL;
	return NULL;
}

void
daemon_status_line(void *ctx, char *buf, size_t len)
{
	struct ember_daemon *d = ctx;
	size_t running = 0, cids = cid_alloc_count(d->cids);

	for (size_t i = 0; i < d->nvms; i++)
		if (d->vms[i]->rec.status == VM_RUNNING)
			running++;
	snprintf(buf, len, "%zu VM%s running, %zu CID%s in use", running,
	    running == 1 ? "" : "s", cids, cids == 1 ? "" : "s");
}

void
daemon_status_changed(struct ember_daemon *d)
{
	char line[128];

	if (d->notify == NULL || !notify_enabled(d->notify))
		return;
	daemon_status_line(d, line, sizeof(line));
	notify_send(d->notify, "STATUS=%s", line);
}
