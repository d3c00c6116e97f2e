/*
 * A QEMU VM's vsock device across an emberd restart (see vsock-handover.h).
 *
 * QEMU 7.2 never reconnects a vhost-user device, so the device must never
 * look disconnected: our end of the session socket, the guest-memory
 * memfds, the kick/call eventfds and the vsock.sock listener are handed
 * to the service manager's fd store (or kept across exec), and a new
 * emberd serves the same session as if nothing happened.
 *
 * What guest memory cannot tell is written to <vm dir>/vsock-dev.json
 * (versioned) at each negotiation step, which happens at boot and after
 * a guest driver reset only: features, protocol features, the memory
 * table (gpa, size, QEMU address, offset per region), each ring's size,
 * addresses and enable flag. It is replaced atomically (temp file and
 * rename) but not fsynced: it describes a QEMU process, which a host
 * crash takes with it, so only the page cache has to outlive emberd.
 *
 * What guest memory does tell is read back from it, not saved: a ring's
 * last_avail_idx is its used->idx, because the device returns every chain
 * it pops within the pass that popped it (tx chains after their packets
 * went to the mux, rx chains filled or handed back) and publishes used->idx
 * at the end of each pass. After kill -9 the saved index could be older
 * than what emberd had reached; used->idx never is. A pass cut short
 * between pop and publish is done again: its packets go to a mux that
 * knows no flows and answers each with an RST, which the guest expects
 * for a flow that was reset anyway.
 *
 * The flows open when emberd died live in a memfd shared through the
 * store as well (a fixed table of FLOW_SLOTS records, written as flows
 * open and close: a store to memory, no system call). The next emberd
 * resets each one towards the guest, so a guest reading a stream whose
 * host end died sees ECONNRESET rather than waiting forever. A session id
 * in both the table and the JSON ties them together: a stale file next
 * to fds of another boot of the VM is refused.
 *
 * The VM's owner may write in the VM directory, so the JSON is only read
 * when it is root's own regular file with one link, opened without
 * following a symlink, and written under a mkostemp name. Its contents
 * are checked again where they are used: regions against the memfds'
 * sizes, rings against the mapped regions.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <jansson.h>

#include "fd-keep.h"
#include "log.h"
#include "vsock-handover.h"

#define STATE_FILE	"vsock-dev.json"
#define STATE_VERSION	1
#define STATE_MAX	(64 * 1024)
#define FLOW_SLOTS	1024u
#define FLOW_MAGIC	0x454d424552564631ull	/* "EMBERVF1" */
#define NAME_LEN	(FD_KEEP_NAME_MAX + 1)

struct flow_rec {
	uint64_t local_cid;
	uint32_t local_port, peer_port;
	uint32_t used;
	uint32_t pad;
};

struct flow_table {
	uint64_t magic;
	uint64_t session;
	struct flow_rec rec[FLOW_SLOTS];
};

struct vsock_handover {
	char		 prefix[NAME_LEN];	/* "vsock/<vm>/" */
	char		*state_path;
	uint64_t	 session;
	int		 flows_fd;
	struct flow_table *flows;
	uint16_t	 free_slots[FLOW_SLOTS];
	unsigned	 nfree;
	/* What the store has, by generation; UINT64_MAX: nothing yet. */
	uint64_t	 mem_gen, kick_gen[VU_NUM_QUEUES], call_gen[VU_NUM_QUEUES];
	unsigned	 mem_held;
};

static void
role_name(const struct vsock_handover *ho, char *buf, const char *role, int idx)
{
	if (idx < 0)
		snprintf(buf, NAME_LEN, "%s%s", ho->prefix, role);
	else
		snprintf(buf, NAME_LEN, "%s%s%d", ho->prefix, role, idx);
}

static void
hold(const struct vsock_handover *ho, const char *role, int idx, int fd, bool stored)
{
	char name[NAME_LEN];
	int r;

	role_name(ho, name, role, idx);
	if (fd < 0) {
		fd_keep_release(name);
		return;
	}
	if ((r = fd_keep_hold(name, fd, stored)) < 0)
		log_debug("vsock handover: cannot keep %s: %s", name, strerror(-r));
}

static void
reset_free_slots(struct vsock_handover *ho)
{
	ho->nfree = 0;
	for (unsigned i = FLOW_SLOTS; i-- > 0;)
		ho->free_slots[ho->nfree++] = (uint16_t)i;
}

static struct vsock_handover *
handover_alloc(const char *vm_name, const char *vm_dir)
{
	struct vsock_handover *ho = calloc(1, sizeof(*ho));

	if (ho == NULL)
		return NULL;
	ho->flows_fd = -1;
	snprintf(ho->prefix, sizeof(ho->prefix), "vsock/%s/", vm_name);
	if (asprintf(&ho->state_path, "%s/%s", vm_dir, STATE_FILE) < 0) {
		free(ho);
		return NULL;
	}
	ho->mem_gen = UINT64_MAX;
	for (unsigned q = 0; q < VU_NUM_QUEUES; q++)
		ho->kick_gen[q] = ho->call_gen[q] = UINT64_MAX;
	reset_free_slots(ho);
	return ho;
}

static int
map_flows(struct vsock_handover *ho)
{
	void *p = mmap(NULL, sizeof(struct flow_table), PROT_READ | PROT_WRITE, MAP_SHARED,
	    ho->flows_fd, 0);

	if (p == MAP_FAILED)
		return -errno;
	ho->flows = p;
	return 0;
}

struct vsock_handover *
vsock_handover_new(const char *vm_name, const char *vm_dir)
{
	struct vsock_handover *ho = handover_alloc(vm_name, vm_dir);
	int e;

	if (ho == NULL) {
		errno = ENOMEM;
		return NULL;
	}
	if (getrandom(&ho->session, sizeof(ho->session), GRND_NONBLOCK) != sizeof(ho->session))
		ho->session = (uint64_t)getpid() << 32 ^ (uint64_t)(uintptr_t)ho;
	ho->flows_fd = memfd_create("ember-vsock-flows", MFD_CLOEXEC);
	if (ho->flows_fd < 0 || ftruncate(ho->flows_fd, sizeof(struct flow_table)) < 0 ||
	    (e = map_flows(ho)) < 0) {
		e = errno;
		vsock_handover_detach(ho);
		errno = e;
		return NULL;
	}
	ho->flows->magic = FLOW_MAGIC;
	ho->flows->session = ho->session;
	/* A file of an earlier boot of this VM must not meet our fds. */
	unlink(ho->state_path);
	hold(ho, "flows", -1, ho->flows_fd, false);
	return ho;
}

void
vsock_handover_hold_fixed(struct vsock_handover *ho, int vu_fd, int listen_fd,
    bool already_stored)
{
	if (ho == NULL)
		return;
	hold(ho, "vu", -1, vu_fd, already_stored);
	hold(ho, "listen", -1, listen_fd, already_stored);
	if (already_stored)
		hold(ho, "flows", -1, ho->flows_fd, true);
}

/* ---- the JSON file ---- */

/* The earlier region whose fd is the same file as region i's, or -1.
 * QEMU sends one fd per region, and regions of one memory backend are
 * one memfd; systemd's fd store keeps a file once (a second FDSTORE of
 * the same open file is dropped), so such a region is recorded as
 * sharing ("fd_of") and given a dup of the earlier one's fd on adoption. */
static int
mem_shares(const struct vu_dev_state *st, unsigned i)
{
	struct stat a, b;

	if (st->mem_fd[i] < 0 || fstat(st->mem_fd[i], &a) < 0)
		return -1;
	for (unsigned k = 0; k < i; k++)
		if (st->mem_fd[k] >= 0 && fstat(st->mem_fd[k], &b) == 0 &&
		    a.st_dev == b.st_dev && a.st_ino == b.st_ino)
			return (int)k;
	return -1;
}

static json_t *
hex(uint64_t v)
{
	char buf[24];

	snprintf(buf, sizeof(buf), "0x%" PRIx64, v);
	return json_string(buf);
}

static int
unhex(json_t *j, uint64_t *v)
{
	const char *s = json_string_value(j);
	char *end;

	if (s == NULL || strncmp(s, "0x", 2) != 0 || s[2] == '\0')
		return -EINVAL;
	errno = 0;
	*v = strtoull(s + 2, &end, 16);
	return errno != 0 || *end != '\0' ? -EINVAL : 0;
}

static json_t *
state_to_json(const struct vsock_handover *ho, const struct vu_dev_state *st)
{
	json_t *j = json_object(), *regions = json_array(), *rings = json_array();

	json_object_set_new(j, "version", json_integer(STATE_VERSION));
	json_object_set_new(j, "session", hex(ho->session));
	json_object_set_new(j, "features", hex(st->features));
	json_object_set_new(j, "protocol_features", hex(st->protocol_features));
	json_object_set_new(j, "owner", json_boolean(st->owner));
	json_object_set_new(j, "ever_running", json_boolean(st->ever_running));
	for (unsigned i = 0; i < st->nregions; i++) {
		json_t *r = json_pack("{s:o, s:o, s:o, s:o}",
		    "gpa", hex(st->region[i].gpa), "size", hex(st->region[i].size),
		    "uva", hex(st->region[i].uva), "mmap_offset", hex(st->region[i].mmap_offset));
		int k = mem_shares(st, i);

		if (k >= 0)
			json_object_set_new(r, "fd_of", json_integer(k));
		json_array_append_new(regions, r);
	}
	for (unsigned q = 0; q < VU_NUM_QUEUES; q++) {
		const struct vu_ring_state *r = &st->ring[q];

		json_array_append_new(rings, json_pack("{s:i, s:o, s:o, s:o, s:b, s:b, s:b, s:i}",
		    "num", (int)r->num, "desc", hex(r->desc), "avail", hex(r->avail),
		    "used", hex(r->used), "addr_set", r->addr_set, "started", r->started,
		    "enabled", r->enabled, "last_avail_idx", (int)r->last_avail_idx));
	}
	json_object_set_new(j, "regions", regions);
	json_object_set_new(j, "rings", rings);
	return j;
}

/* Fills st (fds -1) from the file's JSON, and fd_of[i] with the earlier
 * region whose fd region i shares (-1: its own); 0 or -EINVAL. */
static int
state_from_json(json_t *j, uint64_t *session, struct vu_dev_state *st,
    int fd_of[GUEST_MEM_MAX_REGIONS])
{
	json_t *jsession, *jfeat, *jpfeat, *regions, *rings, *v;
	int version, owner, ever;
	size_t i;

	memset(st, 0, sizeof(*st));
	for (i = 0; i < GUEST_MEM_MAX_REGIONS; i++)
		st->mem_fd[i] = fd_of[i] = -1;
	for (i = 0; i < VU_NUM_QUEUES; i++)
		st->ring[i].kick_fd = st->ring[i].call_fd = -1;
	if (json_unpack(j, "{s:i, s:o, s:o, s:o, s:b, s:b, s:o, s:o}", "version", &version,
	    "session", &jsession, "features", &jfeat, "protocol_features", &jpfeat,
	    "owner", &owner, "ever_running", &ever, "regions", &regions, "rings", &rings) != 0 ||
	    version != STATE_VERSION || !json_is_array(regions) || !json_is_array(rings) ||
	    json_array_size(regions) > GUEST_MEM_MAX_REGIONS ||
	    json_array_size(rings) != VU_NUM_QUEUES || unhex(jsession, session) < 0 ||
	    unhex(jfeat, &st->features) < 0 || unhex(jpfeat, &st->protocol_features) < 0)
		return -EINVAL;
	st->owner = owner;
	st->ever_running = ever;
	json_array_foreach(regions, i, v) {
		json_t *g, *s, *u, *o;
		json_int_t of = -1;

		if (json_unpack(v, "{s:o, s:o, s:o, s:o, s?I}", "gpa", &g, "size", &s, "uva", &u,
		    "mmap_offset", &o, "fd_of", &of) != 0 || unhex(g, &st->region[i].gpa) < 0 ||
		    unhex(s, &st->region[i].size) < 0 || unhex(u, &st->region[i].uva) < 0 ||
		    unhex(o, &st->region[i].mmap_offset) < 0 || of < -1 || of >= (json_int_t)i ||
		    (of >= 0 && fd_of[of] >= 0))
			return -EINVAL;
		fd_of[i] = (int)of;
	}
	st->nregions = (unsigned)json_array_size(regions);
	json_array_foreach(rings, i, v) {
		struct vu_ring_state *r = &st->ring[i];
		json_t *d, *a, *u;
		int num, addr_set, started, enabled, last;

		if (json_unpack(v, "{s:i, s:o, s:o, s:o, s:b, s:b, s:b, s:i}", "num", &num,
		    "desc", &d, "avail", &a, "used", &u, "addr_set", &addr_set,
		    "started", &started, "enabled", &enabled, "last_avail_idx", &last) != 0 ||
		    num < 0 || num > 32768 || last < 0 || last > UINT16_MAX ||
		    unhex(d, &r->desc) < 0 || unhex(a, &r->avail) < 0 || unhex(u, &r->used) < 0)
			return -EINVAL;
		r->num = (unsigned)num;
		r->addr_set = addr_set;
		r->started = started;
		r->enabled = enabled;
		r->last_avail_idx = (uint16_t)last;
	}
	return 0;
}

/* Replaces path atomically, without fsync (see the top of the file). */
static int
write_state(const char *path, const char *text)
{
	char tmp[4096];
	size_t len = strlen(text), off = 0;
	int fd, r = 0;

	if (snprintf(tmp, sizeof(tmp), "%s.XXXXXX", path) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	if ((fd = mkostemp(tmp, O_CLOEXEC)) < 0)
		return -errno;
	while (off < len) {
		ssize_t n = write(fd, text + off, len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			r = n < 0 ? -errno : -EIO;
			break;
		}
		off += (size_t)n;
	}
	if (fchmod(fd, 0600) < 0 && r == 0)
		r = -errno;
	close(fd);
	if (r == 0 && rename(tmp, path) < 0)
		r = -errno;
	if (r < 0)
		unlink(tmp);
	return r;
}

/* The file, if it is root's own (see the top of the file). */
static int
read_state(const char *path, json_t **out)
{
	struct stat sb;
	json_error_t jerr;
	char *buf;
	ssize_t n;
	int fd;

	if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)) < 0)
		return -errno;
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode) || sb.st_uid != geteuid() ||
	    sb.st_nlink != 1 || sb.st_size > STATE_MAX) {
		close(fd);
		return -EPERM;
	}
	if ((buf = malloc((size_t)sb.st_size + 1)) == NULL) {
		close(fd);
		return -ENOMEM;
	}
	n = read(fd, buf, (size_t)sb.st_size);
	close(fd);
	if (n != sb.st_size) {
		free(buf);
		return -EIO;
	}
	*out = json_loadb(buf, (size_t)n, JSON_REJECT_DUPLICATES, &jerr);
	free(buf);
	return *out != NULL ? 0 : -EINVAL;
}

/* Holds whatever fds of st changed since the last call; stored: they
 * came back from the store and are in it already. A region whose memfd
 * an earlier region has (mem_shares) is not held: the JSON says so. */
static void
hold_changed(struct vsock_handover *ho, const struct vu_dev_state *st, bool stored)
{
	if (st->mem_gen != ho->mem_gen) {
		for (unsigned i = 0; i < GUEST_MEM_MAX_REGIONS; i++)
			if (i < st->nregions && mem_shares(st, i) >= 0) {
				if (i < ho->mem_held)
					hold(ho, "mem", (int)i, -1, stored);
			} else if (i < st->nregions || i < ho->mem_held)
				hold(ho, "mem", (int)i, i < st->nregions ? st->mem_fd[i] : -1,
				    stored);
		ho->mem_held = st->nregions;
		ho->mem_gen = st->mem_gen;
	}
	for (unsigned q = 0; q < VU_NUM_QUEUES; q++) {
		if (st->ring[q].kick_gen != ho->kick_gen[q]) {
			hold(ho, "kick", (int)q, st->ring[q].kick_fd, stored);
			ho->kick_gen[q] = st->ring[q].kick_gen;
		}
		if (st->ring[q].call_gen != ho->call_gen[q]) {
			hold(ho, "call", (int)q, st->ring[q].call_fd, stored);
			ho->call_gen[q] = st->ring[q].call_gen;
		}
	}
}

void
vsock_handover_restored(struct vsock_handover *ho, const struct vu_dev_state *st)
{
	hold_changed(ho, st, true);
}

void
vsock_handover_save(struct vsock_handover *ho, const struct vu_dev_state *st)
{
	json_t *j = state_to_json(ho, st);
	char *text = j != NULL ? json_dumps(j, JSON_INDENT(1) | JSON_SORT_KEYS) : NULL;
	int r = text != NULL ? write_state(ho->state_path, text) : -ENOMEM;

	if (r < 0)
		log_warnx("vsock: cannot write %s: %s (the device will not survive an emberd "
		    "restart)", ho->state_path, strerror(-r));
	free(text);
	json_decref(j);
	hold_changed(ho, st, false);
}

/* ---- flows ---- */

int
vsock_handover_flow_open(struct vsock_handover *ho, uint64_t local_cid, uint32_t local_port,
    uint32_t peer_port)
{
	unsigned slot;

	if (ho->flows == NULL || ho->nfree == 0)
		return -1;
	slot = ho->free_slots[--ho->nfree];
	ho->flows->rec[slot] = (struct flow_rec){ local_cid, local_port, peer_port, 1, 0 };
	return (int)slot;
}

void
vsock_handover_flow_close(struct vsock_handover *ho, int slot)
{
	if (ho->flows == NULL || slot < 0 || (unsigned)slot >= FLOW_SLOTS ||
	    !ho->flows->rec[slot].used)
		return;
	ho->flows->rec[slot].used = 0;
	ho->free_slots[ho->nfree++] = (uint16_t)slot;
}

/* ---- adoption ---- */

static int
take(const struct vsock_handover *ho, const char *role, int idx)
{
	char name[NAME_LEN];

	role_name(ho, name, role, idx);
	return fd_keep_take(name);
}

static bool
is_unix_stream(int fd, bool listening)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss), ol;
	int type = 0, acc = 0;

	ol = sizeof(type);
	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0 || ss.ss_family != AF_UNIX ||
	    getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &ol) < 0 || type != SOCK_STREAM)
		return false;
	ol = sizeof(acc);
	if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &ol) < 0)
		return false;
	return (acc != 0) == listening;
}

static bool
bound_to(int fd, const char *path)
{
	struct sockaddr_un sun;
	socklen_t len = sizeof(sun);

	memset(&sun, 0, sizeof(sun));
	if (getsockname(fd, (struct sockaddr *)&sun, &len) < 0 || sun.sun_family != AF_UNIX)
		return false;
	return strncmp(sun.sun_path, path, sizeof(sun.sun_path)) == 0;
}

static void
close_out(struct vsock_handover_fds *out)
{
	if (out->vu_fd >= 0)
		close(out->vu_fd);
	if (out->listen_fd >= 0)
		close(out->listen_fd);
	out->vu_fd = out->listen_fd = -1;
	for (unsigned i = 0; i < GUEST_MEM_MAX_REGIONS; i++)
		if (out->state.mem_fd[i] >= 0) {
			close(out->state.mem_fd[i]);
			out->state.mem_fd[i] = -1;
		}
	for (unsigned q = 0; q < VU_NUM_QUEUES; q++) {
		if (out->state.ring[q].kick_fd >= 0)
			close(out->state.ring[q].kick_fd);
		if (out->state.ring[q].call_fd >= 0)
			close(out->state.ring[q].call_fd);
		out->state.ring[q].kick_fd = out->state.ring[q].call_fd = -1;
	}
}

/* Takes every fd of this VM into ho/out; the JSON and flows checked. */
static int
adopt_fds(struct vsock_handover *ho, const char *uds_path, struct vsock_handover_fds *out,
    struct vsock_flow **flows, unsigned *nflows)
{
	struct stat sb;
	json_t *j = NULL;
	uint64_t session;
	int r;

	out->vu_fd = take(ho, "vu", -1);
	out->listen_fd = take(ho, "listen", -1);
	ho->flows_fd = take(ho, "flows", -1);
	for (unsigned i = 0; i < GUEST_MEM_MAX_REGIONS; i++)
		out->state.mem_fd[i] = take(ho, "mem", (int)i);
	for (unsigned q = 0; q < VU_NUM_QUEUES; q++) {
		out->state.ring[q].kick_fd = take(ho, "kick", (int)q);
		out->state.ring[q].call_fd = take(ho, "call", (int)q);
	}
	if (out->vu_fd < 0 || out->listen_fd < 0 || ho->flows_fd < 0)
		return -ENOENT;
	if (!is_unix_stream(out->vu_fd, false) || !is_unix_stream(out->listen_fd, true) ||
	    !bound_to(out->listen_fd, uds_path))
		return -EBADF;
	if (fstat(ho->flows_fd, &sb) < 0 || !S_ISREG(sb.st_mode) ||
	    sb.st_size != (off_t)sizeof(struct flow_table) || (r = map_flows(ho)) < 0)
		return -EBADF;
	if ((r = read_state(ho->state_path, &j)) < 0)
		return r;
	int fd_of[GUEST_MEM_MAX_REGIONS];
	{
		/* state_from_json resets fds: keep the ones taken. */
		struct vu_dev_state taken = out->state;

		r = state_from_json(j, &session, &out->state, fd_of);
		json_decref(j);
		memcpy(out->state.mem_fd, taken.mem_fd, sizeof(taken.mem_fd));
		for (unsigned q = 0; q < VU_NUM_QUEUES; q++) {
			out->state.ring[q].kick_fd = taken.ring[q].kick_fd;
			out->state.ring[q].call_fd = taken.ring[q].call_fd;
		}
	}
	if (r < 0)
		return r;
	for (unsigned i = 0; i < out->state.nregions; i++) {
		int *fd = &out->state.mem_fd[i], src = fd_of[i] >= 0 ? out->state.mem_fd[fd_of[i]] : -1;

		if (fd_of[i] < 0 || src < 0)
			continue;
		if (*fd >= 0)
			close(*fd);	/* a store that kept both: one is enough */
		if ((*fd = fcntl(src, F_DUPFD_CLOEXEC, 0)) < 0)
			return -errno;
	}
	if (ho->flows->magic != FLOW_MAGIC || ho->flows->session != session)
		return -ESTALE;
	for (unsigned i = 0; i < GUEST_MEM_MAX_REGIONS; i++)
		if ((i < out->state.nregions) != (out->state.mem_fd[i] >= 0))
			return -ENOENT;
	ho->session = session;
	*nflows = 0;
	*flows = calloc(FLOW_SLOTS, sizeof(**flows));
	if (*flows == NULL)
		return -ENOMEM;
	for (unsigned i = 0; i < FLOW_SLOTS; i++) {
		struct flow_rec rec = ho->flows->rec[i];

		if (rec.used)
			(*flows)[(*nflows)++] = (struct vsock_flow){ rec.local_cid, rec.local_port,
			    rec.peer_port };
	}
	/* Those are reset now; the table records this emberd's flows. */
	memset(ho->flows->rec, 0, sizeof(ho->flows->rec));
	reset_free_slots(ho);
	return 0;
}

int
vsock_handover_adopt(const char *vm_name, const char *vm_dir, const char *uds_path,
    struct vsock_handover **hop, struct vsock_handover_fds *out,
    struct vsock_flow **flows, unsigned *nflows)
{
	struct vsock_handover *ho;
	int r;

	*hop = NULL;
	*flows = NULL;
	memset(out, 0, sizeof(*out));
	out->vu_fd = out->listen_fd = -1;
	for (unsigned i = 0; i < GUEST_MEM_MAX_REGIONS; i++)
		out->state.mem_fd[i] = -1;
	for (unsigned q = 0; q < VU_NUM_QUEUES; q++)
		out->state.ring[q].kick_fd = out->state.ring[q].call_fd = -1;
	if ((ho = handover_alloc(vm_name, vm_dir)) == NULL)
		return -ENOMEM;
	if (!fd_keep_inherited_prefix(ho->prefix)) {
		vsock_handover_detach(ho);
		return 0;
	}
	if ((r = adopt_fds(ho, uds_path, out, flows, nflows)) < 0) {
		close_out(out);
		free(*flows);
		*flows = NULL;
		/* Not usable: the store must not keep them either. */
		vsock_handover_free(ho);
		return r;
	}
	*hop = ho;
	return 1;
}

/* ---- end ---- */

static void
handover_close(struct vsock_handover *ho, bool release)
{
	char name[NAME_LEN];
	static const char *const fixed[] = { "vu", "listen", "flows" };

	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
		role_name(ho, name, fixed[i], -1);
		release ? fd_keep_release(name) : fd_keep_forget(name);
	}
	for (unsigned i = 0; i < GUEST_MEM_MAX_REGIONS; i++) {
		role_name(ho, name, "mem", (int)i);
		release ? fd_keep_release(name) : fd_keep_forget(name);
	}
	for (unsigned q = 0; q < VU_NUM_QUEUES; q++) {
		role_name(ho, name, "kick", (int)q);
		release ? fd_keep_release(name) : fd_keep_forget(name);
		role_name(ho, name, "call", (int)q);
		release ? fd_keep_release(name) : fd_keep_forget(name);
	}
	if (ho->flows != NULL)
		munmap(ho->flows, sizeof(*ho->flows));
	if (ho->flows_fd >= 0)
		close(ho->flows_fd);
	free(ho->state_path);
	free(ho);
}

void
vsock_handover_free(struct vsock_handover *ho)
{
	if (ho == NULL)
		return;
	unlink(ho->state_path);
	handover_close(ho, true);
}

void
vsock_handover_detach(struct vsock_handover *ho)
{
	if (ho == NULL)
		return;
	handover_close(ho, false);
}
