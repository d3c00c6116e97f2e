/*
 * VM networks (see vm-network.h). The pieces: the /30 pool (common/
 * net-pool.c) and its file <state>/network/allocations.json; TAPs through
 * platform/linux/net-tap.c (kernel calls, quick); published-port sockets
 * (vm-publish.c); and the firewall, whose scripts net-nft.c writes and
 * which this file runs with `nft -f` in a child process, one script at a
 * time in the order they were asked for, so that a VM's removal can never
 * overtake its addition. A per-VM script that fails (the tables were not
 * as expected: deleted by hand, a config reload) is followed by a reset
 * script that rebuilds both tables from the VM table; when the last VM's
 * network goes, the reset drops them, leaving nothing of emberd in the
 * ruleset.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "child.h"
#include "daemon.h"
#include "durable.h"
#include "fsutil.h"
#include "log.h"
#include "net-nft.h"
#include "net-pool.h"
#include "net-tap.h"
#include "resolv.h"
#include "vm.h"
#include "vm-internal.h"
#include "vm-network.h"
#include "vm-publish.h"

#define NFT_JOBS_MAX	1024

struct nft_job {
	char *script;
	char vm[64];			/* whose start waits on it, or "" */
	bool reset_on_failure;
	bool quiet;			/* a failure is logged at debug level only */
	struct nft_job *next;
};

struct vm_networks {
	struct ember_daemon *d;
	struct net_pool *pool;
	bool tables_ready;		/* a reset made both tables */
	struct nft_job *head, *tail;
	size_t njobs;
	bool running;
	int memfd;			/* the running job's script, or -1 */
	struct event *ev_failed;	/* a job nft could not be started for */
};

static void nft_failed_cb(evutil_socket_t fd, short what, void *arg);

struct vm_netstate {
	struct vm_publish_set *publish;
	vm_network_done_fn up_done;	/* non-NULL while the start waits on nft */
	bool taken_down;		/* vm_network_down ran while up_done waited */
};

static bool
is_nat(const struct vm *vm)
{
	return vm->rec.network != NULL && strcmp(vm->rec.network, "nat") == 0;
}

/* ---- allocations.json ------------------------------------------------- */

static void
alloc_path(const struct ember_daemon *d, char *buf, size_t len)
{
	snprintf(buf, len, "%s/network/allocations.json", d->state_dir);
}

/* Through the daemon's group-commit writer (durable.h) when it runs, in
 * order with vm.json and cids.json; at once otherwise (startup, tests). */
static int
allocations_save(struct ember_daemon *d, struct ember_error *err)
{
	char path[PATH_MAX], *text;
	json_t *doc = net_pool_to_json(d->net->pool);
	size_t len;
	int r;

	alloc_path(d, path, sizeof(path));
	if (doc != NULL && d->durable != NULL) {
		text = json_state_text(doc, &len);
		json_decref(doc);
		if (text == NULL)
			return ember_error_set(err, EK_INTERNAL, NULL, "out of memory");
		return durable_write_take(d->durable, path, text, len, 0644, NULL, NULL, err);
	}
	r = doc != NULL ? atomic_write_json(path, doc) : -ENOMEM;
	json_decref(doc);
	if (r < 0)
		return ember_error_set(err, EK_IO, "check the state directory's disk and permissions",
		    "cannot write %s: %s", path, strerror(-r));
	return 0;
}

static void
alloc_skipped(void *ctx, const char *key, const char *why)
{
	log_warnx("repair: allocations.json entry \"%s\" dropped: %s", key, why);
}

static void
allocations_load(struct ember_daemon *d)
{
	char path[PATH_MAX], aside[PATH_MAX + 8], errbuf[256];
	json_t *doc = NULL;
	int r;

	alloc_path(d, path, sizeof(path));
	r = read_json_file(path, &doc, errbuf, sizeof(errbuf));
	if (r == -ENOENT)
		return;
	if (r < 0 || net_pool_load_json(d->net->pool, doc, alloc_skipped, NULL) < 0) {
		snprintf(aside, sizeof(aside), "%s.corrupt", path);
		log_warnx("repair: %s is unreadable (%s); moved to %s, networks are rebuilt "
		    "from VM records", path, r < 0 ? (r == -EBADMSG ? errbuf : strerror(-r)) :
		    "not an allocation table", aside);
		rename(path, aside);
	}
	json_decref(doc);
}

/* The record and allocations.json agree again; true when the pool changed. */
static bool
repair_one(struct vm *vm)
{
	struct ember_daemon *d = vm->daemon;
	struct net_pool *pool = d->net->pool;
	struct ember_error err = { 0 };
	char a[NET_ADDR_STRLEN], b[NET_ADDR_STRLEN];
	uint32_t held;
	bool has = net_pool_lookup(pool, vm->rec.name, &held);

	if (vm->load_error != NULL)
		return false;
	if (!is_nat(vm)) {
		if (!has)
			return false;
		log_warnx("repair: VM \"%s\" has no \"nat\" network but held a /30; released",
		    vm->rec.name);
		net_pool_release(pool, vm->rec.name);
		return true;
	}
	if (has && held == vm->rec.net.subnet)
		return false;
	if (has)
		net_pool_release(pool, vm->rec.name);
	if (vm->rec.net.subnet != 0 && net_pool_claim(pool, vm->rec.name, vm->rec.net.subnet) == 0) {
		net_cidr_format(vm->rec.net.subnet, NET_SUBNET_PREFIX, a, sizeof(a));
		log_warnx("repair: VM \"%s\" gets its network %s back", vm->rec.name, a);
		return true;
	}
	if (vm_has_process(vm) && vm->rec.net.subnet != 0) {
		/* Its guest uses that address: it keeps it until it stops. */
		net_cidr_format(vm->rec.net.subnet, NET_SUBNET_PREFIX, a, sizeof(a));
		log_warnx("repair: VM \"%s\" runs with %s, which the pool cannot give it (taken "
		    "or outside); it gets a new /30 at its next start", vm->rec.name, a);
		return has;
	}
	uint32_t old = vm->rec.net.subnet;
	if (net_pool_get(pool, vm->rec.name, &vm->rec.net.subnet) < 0) {
		log_warnx("repair: VM \"%s\" has no /30 and none is free; its start will fail "
		    "until one is", vm->rec.name);
		vm->rec.net.subnet = 0;
	} else {
		net_cidr_format(old, NET_SUBNET_PREFIX, a, sizeof(a));
		net_cidr_format(vm->rec.net.subnet, NET_SUBNET_PREFIX, b, sizeof(b));
		log_warnx("repair: VM \"%s\" network %s is taken or outside the pool; it now "
		    "has %s", vm->rec.name, old ? a : "(none)", b);
	}
	vm_save(vm, &err);
	return true;
}

static void
collect_orphan(void *ctx, uint32_t subnet, const char *owner)
{
	char a[NET_ADDR_STRLEN];

	/* One that cannot be kept stays held, and could push a listed VM
	 * that records it onto another /30: vm_network_load fails instead. */
	if (!vm_orphans_add(ctx, owner))
		return;
	net_cidr_format(subnet, NET_SUBNET_PREFIX, a, sizeof(a));
	log_warnx("repair: network %s belonged to \"%s\", which does not exist; released", a,
	    owner);
}

int
vm_network_load(struct ember_daemon *d, struct ember_error *err)
{
	char path[PATH_MAX];
	bool changed = false;

	if ((d->net = calloc(1, sizeof(*d->net))) == NULL)
		return ember_error_set(err, EK_INTERNAL, NULL, "out of memory loading VM networks");
	d->net->d = d;
	d->net->memfd = -1;
	if ((d->net->ev_failed = evtimer_new(d->base, nft_failed_cb, d->net)) == NULL)
		return ember_error_set(err, EK_INTERNAL, NULL, "out of memory loading VM networks");
	d->net->pool = net_pool_new(d->config.net_pool_base, d->config.net_pool_prefix);
	if (d->net->pool == NULL)
		return ember_error_set(err, EK_INVALID_SPEC, NULL, "invalid network pool");
	snprintf(path, sizeof(path), "%s/network", d->state_dir);
	if (mkdir_p(path, 0750) < 0)
		return ember_error_set(err, EK_IO, "check the permissions of --state-dir",
		    "cannot create %s: %s", path, strerror(errno));
	allocations_load(d);
	struct vm_orphans o = { .d = d };
	net_pool_foreach(d->net->pool, collect_orphan, &o);
	for (size_t i = 0; i < o.n; i++) {
		net_pool_release(d->net->pool, o.names[i]);
		changed = true;
	}
	vm_orphans_free(&o);
	if (o.nomem)	/* nothing written yet */
		return ember_error_set(err, EK_INTERNAL, NULL,
		    "out of memory repairing %s/network/allocations.json", d->state_dir);
	for (size_t i = 0; i < d->nvms; i++)
		changed |= repair_one(d->vms[i]);
	if (changed && allocations_save(d, err) < 0)
		return -1;
	return 0;
}

/* ---- create and delete -------------------------------------------------- */

static bool
publish_same(const struct vm_publish *a, const struct vm_publish *b)
{
	return a->host_port == b->host_port && a->udp == b->udp &&
	    (a->host_addr == 0 || b->host_addr == 0 || a->host_addr == b->host_addr);
}

int
vm_network_prepare(struct vm *vm, const char *mode, const json_t *publish,
    struct ember_error *err)
{
	struct ember_daemon *d = vm->daemon;
	struct vm_net *net = &vm->rec.net;
	const json_t *e;
	size_t i;

	if (strcmp(mode, "none") != 0 && strcmp(mode, "user") != 0 && strcmp(mode, "nat") != 0)
		return ember_error_set(err, EK_INVALID_SPEC, "use none, user or nat",
		    "unknown network \"%s\"", mode);
	if (publish == NULL || json_array_size(publish) == 0)
		return 0;
	if (strcmp(mode, "nat") != 0)
		return ember_error_set(err, EK_INVALID_SPEC, "add --network nat",
		    "published ports need network \"nat\", not \"%s\"", mode);
	if (!json_is_array(publish) || json_array_size(publish) > VM_PUBLISH_MAX)
		return ember_error_set(err, EK_INVALID_SPEC, NULL,
		    "publish is a list of at most %d ports", VM_PUBLISH_MAX);
	json_array_foreach(publish, i, e) {
		struct vm_publish *p = &net->publish[i];
		const char *s = json_string_value(e);
		char shown[80];
		int r;

		if (s == NULL || vm_publish_parse(s, p) < 0)
			return ember_error_set(err, EK_INVALID_SPEC, "e.g. 8080:80 or "
			    "127.0.0.1:5353:53/udp", "invalid published port %s: expected "
			    "[HOSTADDR:]HOSTPORT:GUESTPORT[/tcp|/udp] with ports 1-65535",
			    s ? s : "(not a string)");
		snprintf(shown, sizeof(shown), "%.64s", s);
		if (p->host_port < 1024 && vm->rec.owner_uid != 0)
			return ember_error_set(err, EK_PERMISSION_DENIED,
			    "publish a host port of 1024 or above",
			    "host port %u of %s is privileged: only root may publish ports "
			    "below 1024", (unsigned)p->host_port, shown);
		for (size_t j = 0; j < i; j++)
			if (publish_same(&net->publish[j], p))
				return ember_error_set(err, EK_INVALID_SPEC, NULL,
				    "host port %u/%s is published twice", (unsigned)p->host_port,
				    p->udp ? "udp" : "tcp");
		for (size_t k = 0; k < d->nvms; k++)
			for (size_t j = 0; j < d->vms[k]->rec.net.npublish; j++)
				if (publish_same(&d->vms[k]->rec.net.publish[j], p))
					return ember_error_set(err, EK_BUSY,
					    "publish another host port, or delete that VM",
					    "host port %u/%s is published by VM \"%s\"",
					    (unsigned)p->host_port, p->udp ? "udp" : "tcp",
					    d->vms[k]->rec.name);
		if ((r = vm_publish_probe(p)) < 0)
			return ember_error_set(err, r == -EADDRINUSE ? EK_BUSY : EK_INVALID_SPEC,
			    r == -EADDRINUSE ? "stop what listens there, or publish another host "
			    "port" : "publish on an address of this host, or give none",
			    "cannot publish %s: host port %u/%s: %s", shown,
			    (unsigned)p->host_port, p->udp ? "udp" : "tcp", strerror(-r));
		net->npublish = i + 1;
	}
	return 0;
}

void
vm_network_forget(struct vm *vm)
{
	int fd = vm->rec.net.tap_fd;

	memset(&vm->rec.net, 0, sizeof(vm->rec.net));
	vm->rec.net.tap_fd = fd;
}

static void
set_mac(struct vm_net *net)
{
	uint32_t g = net->subnet + 2;

	/* locally administered, unicast; the rest is the guest's address */
	snprintf(net->mac, sizeof(net->mac), "02:eb:%02x:%02x:%02x:%02x", g >> 24,
	    (g >> 16) & 255, (g >> 8) & 255, g & 255);
}

int
vm_network_allocate(struct vm *vm, struct ember_error *err)
{
	struct ember_daemon *d = vm->daemon;
	char pool[NET_ADDR_STRLEN];
	int r;

	if (!is_nat(vm))
		return 0;
	if (d->net == NULL)
		return ember_error_set(err, EK_INTERNAL, NULL, "VM networks are not loaded");
	r = net_pool_get(d->net->pool, vm->rec.name, &vm->rec.net.subnet);
	if (r == -ENOSPC) {
		net_pool_describe(d->net->pool, pool, sizeof(pool));
		return ember_error_set(err, EK_BUSY,
		    "delete a \"nat\" VM, or widen network.pool in the daemon config",
		    "no free /30 in the network pool %s (%zu of %zu in use)", pool,
		    net_pool_count(d->net->pool), net_pool_capacity(d->net->pool));
	}
	if (r < 0)
		return ember_error_set(err, EK_INTERNAL, NULL, "network allocation: %s",
		    strerror(-r));
	set_mac(&vm->rec.net);
	if (allocations_save(d, err) < 0) {
		net_pool_release(d->net->pool, vm->rec.name);
		vm->rec.net.subnet = 0;
		return -1;
	}
	return 0;
}

void
vm_network_release(struct vm *vm)
{
	struct ember_daemon *d = vm->daemon;
	struct ember_error err = { 0 };

	if (d->net == NULL || net_pool_release(d->net->pool, vm->rec.name) < 0)
		return;
	if (allocations_save(d, &err) < 0)
		log_warnx("%s", err.message);
}

/* ---- nft, one script at a time ------------------------------------------ */

static void nft_next(struct vm_networks *n);
static int nft_queue_reset(struct vm_networks *n, const char *vm);

static bool
nft_available(void)
{
	const char *path = getenv("PATH");
	char buf[PATH_MAX], *save = NULL, *dir, *copy;
	bool found = false;

	if (path == NULL || (copy = strdup(path)) == NULL)
		return access("/usr/sbin/nft", X_OK) == 0;
	for (dir = strtok_r(copy, ":", &save); dir != NULL && !found;
	    dir = strtok_r(NULL, ":", &save)) {
		snprintf(buf, sizeof(buf), "%s/nft", dir);
		found = access(buf, X_OK) == 0;
	}
	free(copy);
	return found;
}

/* Takes script. 0, or -1 when it could not be queued (logged). */
static int
nft_queue(struct vm_networks *n, char *script, const char *vm, bool reset_on_failure)
{
	struct nft_job *j;

	if (script == NULL) {
		log_warnx("network: out of memory building a firewall script");
		return -1;
	}
	if (n->njobs >= NFT_JOBS_MAX || (j = calloc(1, sizeof(*j))) == NULL) {
		if (n->njobs >= NFT_JOBS_MAX)
			log_warnx("network: %zu firewall changes are waiting; dropping one",
			    n->njobs);
		else
			log_warnx("network: out of memory queueing a firewall script");
		free(script);
		return -1;
	}
	j->script = script;
	snprintf(j->vm, sizeof(j->vm), "%s", vm ? vm : "");
	j->reset_on_failure = reset_on_failure;
	if (n->tail != NULL)
		n->tail->next = j;
	else
		n->head = j;
	n->tail = j;
	n->njobs++;
	nft_next(n);
	return 0;
}

static void
nft_up_finished(struct vm_networks *n, const char *name, const struct ember_error *err)
{
	struct vm *vm = vm_find(n->d, name);
	vm_network_done_fn done;

	struct ember_error gone = { 0 };

	if (vm == NULL || vm->net == NULL || vm->net->up_done == NULL)
		return;
	done = vm->net->up_done;
	vm->net->up_done = NULL;
	if (vm->net->taken_down) {
		/* vm_network_down ran meanwhile: the start fails, nothing is up */
		free(vm->net);
		vm->net = NULL;
		ember_error_set(&gone, EK_INVALID_STATE, NULL,
		    "the network of VM \"%s\" was taken down while it started", vm->rec.name);
		err = &gone;
	}
	done(vm, err);
}

static void
nft_done(void *ctx, int status, const char *output)
{
	struct vm_networks *n = ctx;
	struct nft_job *j = n->head;
	struct ember_error err = { 0 };

	close(n->memfd);
	n->memfd = -1;
	n->running = false;
	n->head = j->next;
	if (n->head == NULL)
		n->tail = NULL;
	n->njobs--;
	if (status != 0) {
		char why[96];
		child_status_text(status, why, sizeof(why));
		if (j->quiet)
			log_debug("network: nft %s: %s", why, output[0] ? output : "(no output)");
		else
			log_warnx("network: nft %s: %s", why, output[0] ? output : "(no output)");
		if (j->reset_on_failure) {
			log_info("network: rebuilding emberd's firewall tables from the VM table");
			if (nft_queue_reset(n, NULL) < 0)
				log_warnx("network: the tables are rebuilt at the next VM start "
				    "instead");
		} else if (j->vm[0] != '\0')
			ember_error_set(&err, EK_BACKEND_ERROR, "see emberd's log for nft's message",
			    "cannot install the firewall rules of VM \"%s\" (nft %s)", j->vm, why);
	}
	if (j->vm[0] != '\0' && !j->reset_on_failure)
		nft_up_finished(n, j->vm, ember_error_is_set(&err) ? &err : NULL);
	free(j->script);
	free(j);
	nft_next(n);
}

static void
nft_next(struct vm_networks *n)
{
	struct nft_job *j = n->head;
	char arg[32];
	size_t len;
	int r;

	if (n->running || j == NULL)
		return;
	len = strlen(j->script);
	n->memfd = memfd_create("ember-nft", MFD_CLOEXEC);
	if (n->memfd < 0 || write(n->memfd, j->script, len) != (ssize_t)len) {
		log_warn("network: cannot stage a firewall script");
		goto fail;
	}
	snprintf(arg, sizeof(arg), "/dev/fd/%d", n->memfd);
	const char *argv[] = { "nft", "-f", arg, NULL };
	n->running = true;
	if ((r = child_run_keep(n->d->base, argv, &n->memfd, 1, nft_done, n)) < 0) {
		log_warnx("network: cannot run nft: %s", strerror(-r));
		n->running = false;
		goto fail;
	}
	return;
fail:
	/* Run it as failed from the loop, not from inside whoever queued it
	 * (the start waiting on it is answered after vm_network_up returns). */
	n->running = true;
	event_active(n->ev_failed, EV_TIMEOUT, 1);
}

static void
nft_failed_cb(evutil_socket_t fd, short what, void *arg)
{
	nft_done(arg, 1 << 8, "");
}

static void
up_vms_free(struct nft_vm *vms, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free((void *)vms[i].peers);
	free(vms);
}

/* The VMs whose network is up, as net-nft.h wants them; peers point into
 * the VMs' records. Free with up_vms_free. *out is NULL when out of
 * memory: the callers' script is then NULL, which nft_queue refuses. */
static size_t
up_vms(struct ember_daemon *d, const struct vm *only, struct nft_vm **out)
{
	struct nft_vm *vms = calloc(d->nvms + 1, sizeof(*vms));
	size_t n = 0;

	*out = NULL;
	if (vms == NULL)
		return 0;
	for (size_t i = 0; i < d->nvms; i++) {
		const struct vm *vm = d->vms[i];
		if (vm->rec.net.tap[0] == '\0' || (only != NULL && vm != only))
			continue;
		const char **peers = calloc(d->nvms, sizeof(*peers));
		if (peers == NULL) {
			up_vms_free(vms, n);
			return 0;
		}
		struct nft_vm *v = &vms[n++];
		*v = (struct nft_vm){ .tap = vm->rec.net.tap, .subnet = vm->rec.net.subnet,
		    .publish = vm->rec.net.publish, .npublish = vm->rec.net.npublish,
		    .peers = peers };
		for (size_t k = 0; d->config.net_allow_same_owner && k < d->nvms; k++) {
			const struct vm *o = d->vms[k];
			/* a pair is added by the later of the two: in a reset, once */
			if (o != vm && o->rec.net.tap[0] != '\0' &&
			    o->rec.owner_uid == vm->rec.owner_uid && (only != NULL || k < i))
				peers[v->npeers++] = o->rec.net.tap;
		}
	}
	*out = vms;
	return n;
}

static struct nft_policy
policy_of(const struct ember_daemon *d)
{
	return (struct nft_policy){
		.pool_base = d->config.net_pool_base,
		.pool_prefix = d->config.net_pool_prefix,
		.host_ports = d->config.net_host_ports,
		.nhost_ports = d->config.net_nhost_ports,
	};
}

/* Rebuilds both tables; vm: the VM whose start waits on it, or NULL.
 * 0 or -1 as nft_queue; after -1 the next VM start tries again. */
static int
nft_queue_reset(struct vm_networks *n, const char *vm)
{
	struct nft_policy pol = policy_of(n->d);
	struct nft_vm *vms;
	size_t count = up_vms(n->d, NULL, &vms);
	int r = nft_queue(n, vms != NULL ? nft_script_reset(&pol, vms, count) : NULL, vm, false);

	n->tables_ready = r == 0 && count > 0;
	up_vms_free(vms, count);
	return r;
}

/* ---- up and down -------------------------------------------------------- */

/* ember.net=GUEST/30,GATEWAY[,DNS...] for the guest's init: the DNS
 * servers are the host's (network.resolv_conf, loopback stubs replaced by
 * their upstreams; the guest has IPv4 only, so IPv6 servers are left out). */
static void
kernel_arg(struct ember_daemon *d, struct vm_net *net, bool with_dns)
{
	/* Candidates beyond glibc's three, so IPv6 servers listed first do not
	 * crowd out the IPv4 ones the guest can use. */
	char g[NET_ADDR_STRLEN], h[NET_ADDR_STRLEN], dns[4 * RESOLV_NAMESERVERS_MAX][INET6_ADDRSTRLEN];
	size_t ndns = 0, nv4 = 0, len;
	int r;

	net_cidr_format(net->subnet + 2, NET_SUBNET_PREFIX, g, sizeof(g));
	net_cidr_format(net->subnet + 1, 32, h, sizeof(h));
	*strchr(h, '/') = '\0';
	len = (size_t)snprintf(net->kernel_arg, sizeof(net->kernel_arg), "ember.net=%s,%s", g, h);
	if (!with_dns)
		return;
	r = resolv_upstreams(d->config.net_resolv_conf, dns, 4 * RESOLV_NAMESERVERS_MAX, &ndns);
	if (r < 0) {
		log_warnx("network: no DNS servers for guests: %s: %s", d->config.net_resolv_conf ?
		    d->config.net_resolv_conf : RESOLV_CONF_DEFAULT, strerror(-r));
		return;
	}
	for (size_t i = 0; i < ndns && nv4 < RESOLV_NAMESERVERS_MAX &&
	    len < sizeof(net->kernel_arg); i++)
		if (strchr(dns[i], ':') == NULL) {
			len += (size_t)snprintf(net->kernel_arg + len, sizeof(net->kernel_arg) - len,
			    ",%s", dns[i]);
			nv4++;
		}
}

/* A name "em-" + 8 hex digits of the VM's id no interface has. */
static int
tap_name(const struct vm *vm, char *buf, size_t len)
{
	char hex[33];
	size_t n = 0;

	for (const char *p = vm->rec.id; *p != '\0' && n < 32; p++)
		if (*p != '-')
			hex[n++] = *p;
	hex[n] = '\0';
	for (size_t k = 0; k + 8 <= n; k += 8) {
		snprintf(buf, len, "em-%.8s", hex + k);
		if (!net_link_exists(buf))
			return 0;
	}
	return -EEXIST;
}

static void
netstate_free(struct vm *vm)
{
	if (vm->net == NULL)
		return;
	vm_publish_close(vm->net->publish);
	free(vm->net);
	vm->net = NULL;
}

/* Undoes a half-made network: sockets, TAP, fd. */
static void
up_undo(struct vm *vm)
{
	if (vm->rec.net.tap_fd >= 0)
		close(vm->rec.net.tap_fd);
	vm->rec.net.tap_fd = -1;
	if (vm->rec.net.tap[0] != '\0')
		net_tap_delete(vm->rec.net.tap);
	vm->rec.net.tap[0] = '\0';
	vm->rec.net.kernel_arg[0] = '\0';
	netstate_free(vm);
}

int
vm_network_up(struct vm *vm, vm_network_done_fn done, struct ember_error *err)
{
	struct ember_daemon *d = vm->daemon;
	struct vm_networks *n = d->net;
	char name[NET_IFNAME_MAX];
	int r;

	if (!is_nat(vm))
		return 1;
	if (n == NULL)
		return ember_error_set(err, EK_INTERNAL, NULL, "VM networks are not loaded");
	if (!nft_available())
		return ember_error_set(err, EK_BACKEND_UNAVAILABLE,
		    "install nftables (apt-get install nftables)",
		    "network \"nat\" needs the nft command, which is not installed");
	if (vm->rec.net.subnet == 0 && vm_network_allocate(vm, err) < 0)
		return -1;
	if (vm->rec.net.mac[0] == '\0')
		set_mac(&vm->rec.net);
	up_undo(vm);
	if ((vm->net = calloc(1, sizeof(*vm->net))) == NULL)
		return ember_error_set(err, EK_INTERNAL, NULL, "out of memory");
	if (vm->rec.net.npublish > 0 &&
	    (vm->net->publish = vm_publish_open(d->base, vm->rec.name, &vm->rec.net, err)) == NULL)
		goto fail;
	if ((r = tap_name(vm, name, sizeof(name))) < 0 ||
	    (r = net_tap_create(name, vm->rec.name, &vm->rec.net.tap_fd)) < 0) {
		ember_error_set(err, r == -EEXIST ? EK_BUSY : EK_IO,
		    r == -EPERM ? "emberd needs CAP_NET_ADMIN for network \"nat\"" : NULL,
		    "cannot create a TAP device for VM \"%s\": %s", vm->rec.name, strerror(-r));
		goto fail;
	}
	snprintf(vm->rec.net.tap, sizeof(vm->rec.net.tap), "%s", name);
	if ((r = net_tap_configure(name, vm->rec.net.subnet + 1, NET_SUBNET_PREFIX)) < 0) {
		ember_error_set(err, EK_IO, NULL, "cannot set up %s: %s", name, strerror(-r));
		goto fail;
	}
	if (net_ip_forward_get() != 1) {
		if ((r = net_ip_forward_enable()) < 0) {
			ember_error_set(err, EK_IO, NULL, "cannot turn on net.ipv4.ip_forward: %s",
			    strerror(-r));
			goto fail;
		}
		log_info("network: net.ipv4.ip_forward turned on (VMs with network \"nat\")");
	}
	kernel_arg(d, &vm->rec.net, true);
	vm->net->up_done = done;
	if (!n->tables_ready) {
		r = nft_queue_reset(n, vm->rec.name);	/* includes this VM: its TAP is named */
	} else {
		struct nft_vm *one;
		size_t c = up_vms(d, vm, &one);
		r = nft_queue(n, one != NULL ? nft_script_vm_add(one) : NULL, vm->rec.name, false);
		up_vms_free(one, c);
	}
	if (r < 0) {
		ember_error_set(err, EK_INTERNAL, "retry in a moment",
		    "cannot build or queue the firewall rules of VM \"%s\" (see emberd's log)",
		    vm->rec.name);
		goto fail;
	}
	log_info("vm %s: network up on %s (%s)", vm->rec.name, name, vm->rec.net.kernel_arg);
	return 0;
fail:
	up_undo(vm);
	return -1;
}

void
vm_network_started(struct vm *vm)
{
	if (vm->rec.net.tap_fd >= 0)
		close(vm->rec.net.tap_fd);
	vm->rec.net.tap_fd = -1;
}

void
vm_network_down(struct vm *vm)
{
	struct ember_daemon *d = vm->daemon;
	struct vm_networks *n = d->net;
	char tap[NET_IFNAME_MAX];
	bool others = false;
	int r;

	if (n == NULL || (vm->rec.net.tap[0] == '\0' && vm->net == NULL))
		return;
	snprintf(tap, sizeof(tap), "%s", vm->rec.net.tap);
	if (tap[0] != '\0') {
		struct nft_vm *one;
		size_t c = up_vms(d, vm, &one);
		for (size_t i = 0; i < d->nvms; i++)
			others |= d->vms[i] != vm && d->vms[i]->rec.net.tap[0] != '\0';
		if (others && n->tables_ready && nft_queue(n, one != NULL ?
		    nft_script_vm_del(one) : NULL, NULL, true) < 0) {
			log_warnx("vm %s: its firewall rules stay until emberd's tables are "
			    "rebuilt at the next VM start", vm->rec.name);
			n->tables_ready = false;
		}
		up_vms_free(one, c);
		if ((r = net_tap_delete(tap)) < 0 && r != -ENODEV)
			log_warnx("vm %s: cannot delete %s: %s", vm->rec.name, tap, strerror(-r));
	}
	vm->rec.net.tap[0] = '\0';
	vm->rec.net.kernel_arg[0] = '\0';
	if (vm->rec.net.tap_fd >= 0)
		close(vm->rec.net.tap_fd);
	vm->rec.net.tap_fd = -1;
	if (vm->net != NULL && vm->net->up_done != NULL) {
		/* its start waits on nft: answered (failed) when nft is done */
		vm_publish_close(vm->net->publish);
		vm->net->publish = NULL;
		vm->net->taken_down = true;
	} else
		netstate_free(vm);
	/* the last one: emberd's tables go */
	if (tap[0] != '\0' && !others && nft_queue_reset(n, NULL) < 0)
		log_warnx("vm %s: emberd's firewall tables stay until the next VM start "
		    "rebuilds them", vm->rec.name);
	if (tap[0] != '\0')
		log_info("vm %s: network down (%s removed)", vm->rec.name, tap);
}

void
vm_network_detach(struct vm *vm)
{
	if (vm->rec.net.tap_fd >= 0)
		close(vm->rec.net.tap_fd);
	vm->rec.net.tap_fd = -1;
	netstate_free(vm);
}

/* ---- startup and exit --------------------------------------------------- */

static void
remove_stray_tap(void *ctx, const char *ifname, const char *owner)
{
	struct ember_daemon *d = ctx;
	struct vm *vm = vm_find(d, owner);
	int r;

	if (vm != NULL && strcmp(vm->rec.net.tap, ifname) == 0)
		return;
	r = net_tap_delete(ifname);
	log_warnx("repair: TAP %s (of VM \"%s\", which has no process) %s", ifname, owner,
	    r < 0 ? strerror(-r) : "removed");
}

void
vm_network_reconcile(struct ember_daemon *d)
{
	struct ember_error err = { 0 };
	bool any = false;

	for (size_t i = 0; i < d->nvms; i++) {
		struct vm *vm = d->vms[i];
		if (vm->rec.net.tap[0] == '\0')
			continue;
		if (!vm_has_process(vm) || !is_nat(vm) || !net_link_exists(vm->rec.net.tap)) {
			if (vm_has_process(vm))
				log_warnx("vm %s: its TAP %s is gone; the guest has no network until "
				    "it is restarted", vm->rec.name, vm->rec.net.tap);
			vm->rec.net.tap[0] = '\0';
			vm_save(vm, &err);
			continue;
		}
		any = true;
		if ((vm->net = calloc(1, sizeof(*vm->net))) == NULL) {
			/* Its TAP and rules stay; vm->net NULL is a network
			 * without published-port sockets. */
			if (vm->rec.net.npublish > 0)
				log_warnx("vm %s: out of memory opening its published ports "
				    "(reachable from elsewhere through DNAT only until it is "
				    "restarted)", vm->rec.name);
			log_info("vm %s: network re-adopted (%s)", vm->rec.name, vm->rec.net.tap);
			continue;
		}
		ember_error_clear(&err);
		if (vm->rec.net.npublish > 0 && (vm->net->publish = vm_publish_open(d->base,
		    vm->rec.name, &vm->rec.net, &err)) == NULL)
			log_warnx("vm %s: %s (reachable from elsewhere through DNAT only)",
			    vm->rec.name, err.message);
		log_info("vm %s: network re-adopted (%s)", vm->rec.name, vm->rec.net.tap);
	}
	if (net_tap_foreach_ours(remove_stray_tap, d) < 0)
		log_warnx("repair: cannot list network interfaces");
	/* Also without a VM up: tables a crash left behind go. Nothing to
	 * report when that fails (an emberd without CAP_NET_ADMIN has none). */
	if (!any && !nft_available())
		return;
	if (nft_queue_reset(d->net, NULL) < 0) {
		if (any)
			log_warnx("network: running VMs keep the firewall rules they had until "
			    "the next VM start rebuilds emberd's tables");
	} else if (!any && d->net->tail != NULL)	/* NULL: it failed already */
		d->net->tail->quiet = true;
}

void
vm_network_free(struct ember_daemon *d)
{
	struct vm_networks *n = d->net;

	if (n == NULL)
		return;
	while (n->head != NULL) {
		struct nft_job *j = n->head;
		n->head = j->next;
		free(j->script);
		free(j);
	}
	if (n->memfd >= 0)
		close(n->memfd);
	if (n->ev_failed != NULL)
		event_free(n->ev_failed);
	net_pool_free(n->pool);
	free(n);
	d->net = NULL;
}
