/*
 * libFuzzer harness for emberd's whole request path behind the transport:
 * each input line goes through rpc_handle_line, i.e. the codec, the method
 * tables, parameter validation, ownership checks and the handlers, against
 * a real state directory (no hypervisor backend, so lifecycle calls fail
 * cleanly). Callers alternate between root and an ordinary uid. PATH is
 * emptied so that image imports cannot run cp or mkfs.ext4 on arbitrary
 * paths. Nothing a client sends may crash emberd or corrupt its state.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "cid-alloc.h"
#include "control.h"
#include "daemon.h"
#include "fsutil.h"
#include "rpc.h"
#include "vm.h"

static struct ember_daemon d;
static unsigned inputs;

static void
on_line(void *ctx, const struct control_peer *peer, const char *line, size_t len)
{
}

static void
forget(void *ctx, json_t *result, const struct ember_error *err)
{
	json_decref(result);
}

static char dir[] = "/tmp/ember-fuzz-rpc-XXXXXX";

static void
remove_dir(void)
{
	rm_rf(dir);
}

static void
init_once(void)
{
	struct control_callbacks cb = { .on_line = on_line };
	struct ember_error err = { 0 };
	char sock[128];

	if (mkdtemp(dir) == NULL)
		abort();
	atexit(remove_dir);
	setenv("PATH", "/nonexistent", 1);
	d.base = event_base_new();
	ember_config_init(&d.config);
	d.state_dir = strdup(dir);
	snprintf(sock, sizeof(sock), "%s/emberd.sock", dir);
	d.socket_path = strdup(sock);
	d.cids = cid_alloc_new(3, 40);	/* small: exhaustion is reachable */
	d.lock_fd = -1;
	if (d.base == NULL || d.cids == NULL || vms_load(&d, &err) < 0)
		abort();
	d.control = control_new(d.base, sock, -1, (gid_t)-1, &cb, &d, &err);
	if (d.control == NULL)
		abort();
}

/*
 * Keeps the state directory small across a long run. A VM can refuse to go
 * for a while (the source of a fork whose copy or durable write is still
 * under way): the loop then runs in 10 ms turns until that work is done.
 * Stuck for 10 s means emberd would never finish it: that is a bug.
 */
static void
delete_all(void)
{
	const struct timeval turn = { 0, 10000 };
	unsigned idle_turns = 0;

	while (d.nvms > 0) {
		size_t before = d.nvms;

		for (size_t i = d.nvms; i-- > 0;)
			if (i < d.nvms)
				vm_delete(d.vms[i], true, forget, NULL);
		if (d.nvms < before) {
			idle_turns = 0;
			continue;
		}
		if (++idle_turns > 1000)
			abort();
		event_base_loopexit(d.base, &turn);
		event_base_dispatch(d.base);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data, *end = p + size;

	if (d.base == NULL)
		init_once();
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
		char *line = malloc(len + 1);
		struct control_peer peer = { .conn_id = 1, .uid = (len & 1) ? 0 : 1000 };

		memcpy(line, p, len);
		line[len] = '\0';
		rpc_handle_line(&d, &peer, line, len);
		free(line);
		event_base_loop(d.base, EVLOOP_NONBLOCK);
		p += len + 1;
	}
	if (++inputs % 64 == 0 || d.nvms > 32)
		delete_all();
	return 0;
}
