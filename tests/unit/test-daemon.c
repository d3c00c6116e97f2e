/*
 * A daemon without a transport for unit suites (see test-daemon.h). It is
 * torn down in daemon_free()'s order, so the modules see the same end as in
 * emberd.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <event2/event.h>

#include "cid-alloc.h"
#include "fsutil.h"
#include "quota.h"
#include "test-daemon.h"
#include "test-util.h"
#include "vm.h"

struct ember_daemon *
test_daemon_new(const char *tmpl, const char *const subdirs[])
{
	char state_dir[PATH_MAX], path[PATH_MAX];
	struct ember_daemon *d;

	test_tmpdir_new(state_dir, sizeof(state_dir), tmpl);
	d = calloc(1, sizeof(*d));
	d->lock_fd = -1;
	ember_config_init(&d->config);
	d->state_dir = strdup(state_dir);
	d->base = event_base_new();
	d->cids = cid_alloc_new(3, 100);
	for (size_t i = 0; subdirs[i] != NULL; i++) {
		snprintf(path, sizeof(path), "%s/%s", state_dir, subdirs[i]);
		ck_assert_int_eq(mkdir(path, 0700), 0);
	}
	return d;
}

void
test_daemon_free(struct ember_daemon *d)
{
	vms_detach_all(d);
	cid_alloc_free(d->cids);
	event_base_free(d->base);
	quota_forget(d);
	ember_config_clear(&d->config);
	rm_rf(d->state_dir);
	free(d->state_dir);
	free(d);
}
