/*
 * fc-double: a process-level stand-in for Firecracker v1.16.1, so that
 * ember's Firecracker backend can be tested on machines where no Firecracker
 * binary (or KVM) is available.
 *
 * It takes Firecracker's command line, serves the subset of its HTTP API that
 * ember uses on the --api-sock Unix socket (libevent's evhttp), and validates
 * every body the way Firecracker's serde structs do: required fields, JSON
 * types, integer ranges of the Rust types, enum variants and
 * deny_unknown_fields, answering 400 {"fault_message": ...} with Firecracker's
 * own wording where we know it.  PUT /vsock creates the hybrid-vsock Unix
 * socket; a host connection that says "CONNECT <port>\n" for a port listed in
 * FC_DOUBLE_VSOCK_PORTS gets "OK <hostport>\n" and then an echoing "guest";
 * on a port listed in FC_DOUBLE_AGENT_PORTS the "guest" is a scripted
 * ember-agent instead: one JSON reply line per request line for ping, info,
 * exec (a canned reply: argv joined by spaces as its stdout, exit code 0)
 * and poweroff (answered, then the "guest" shuts down like after
 * SendCtrlAltDel).
 *
 * PUT /network-interfaces/{id} is checked like the others (iface_id equal to
 * the path's id, host_dev_name required, guest_mac six hex bytes) and then
 * as Firecracker would use it: host_dev_name must be an existing TAP that
 * TUNSETIFF (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR) attaches to, so a TAP that
 * is missing, not a TAP, or still held by someone else is refused; the
 * double keeps it open until it exits.
 *
 * Guest-initiated vsock connections: for every port in FC_DOUBLE_G2H_PORTS,
 * on SIGUSR1 (once running) "the guest" connects to port P on the host the way
 * Firecracker does it, by path to <uds_path>_<P> with the double's own
 * credentials, sends "hello from the guest on port P\n", and says on stderr
 * what became of it ("guest connection to port P: ..."): refused with the
 * connect's error, or answered with the first line that came back.
 *
 * At start the double says which uid, gid and groups it runs as.
 *
 * At InstanceStart the double builds the guest's kernel command line the way
 * Firecracker does (boot_args, then " pci=off", the root drive's
 * "root=/dev/vda rw|ro" and one virtio_mmio.device= per device), refuses it
 * past 2047 bytes, and says it on stderr ("kernel command line: ...").
 *
 * Every request is appended to a JSON-lines log (FC_DOUBLE_LOG) so tests can
 * assert what ember sent.  Environment knobs inject shutdown behaviour,
 * crashes and API failures; see usage() and the test in
 * tests/integration/test-fc-double.sh.  Nothing is written to stdout except
 * the --version line; diagnostics go to stderr, which emberd captures.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <net/if.h>
#include <linux/if_tun.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <jansson.h>

#define FC_VERSION "1.16.1"
#define FC_DEFAULT_ID "anonymous-instance"
#define FC_MAX_PAYLOAD 51200		/* Firecracker's default --http-api-max-payload-size */
#define FC_MAX_VCPUS 32
#define FC_DEFAULT_MEM_MIB 128
#define FC_CMDLINE_MAX_SIZE 2048	/* arch::CMDLINE_MAX_SIZE, with the NUL */
#define FC_MMIO32_MEM_START 0xc0000000u
#define FC_GSI_LEGACY_START 5
#define VSOCK_FIRST_HOST_PORT (UINT32_C(1) << 30)
#define VSOCK_CMD_MAX 32		/* Firecracker reads at most 32 bytes of "CONNECT n\n" */
#define ECHO_HIGH_WATER (256 * 1024)
#define G2H_MAX 8			/* FC_DOUBLE_G2H_PORTS at most */
#define G2H_LINE_MAX 256

#define PREBOOT_ONLY "The requested operation is not supported after starting the microVM."
#define POSTBOOT_ONLY "The requested operation is not supported before starting the microVM."
#define SERDE_PREFIX "An error occurred when deserializing the json body of a request: "

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
say(const char *fmt, ...)
{
	va_list ap;

	fputs("fc-double: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* "running as uid U gid G groups A,B": whom emberd made the double run as. */
static void
say_credentials(void)
{
	gid_t groups[64];
	char list[64 * 12] = "";
	size_t used = 0;
	int n = getgroups(64, groups);

	for (int i = 0; i < n && used < sizeof(list); i++)
		used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%u", i ? "," : "",
					 (unsigned)groups[i]);
	say("running as uid %u gid %u groups %s", (unsigned)geteuid(), (unsigned)getegid(),
	    n > 0 ? list : n == 0 ? "(none)" : "(unknown)");
}

/* ---- schemas: the Rust structs behind the OpenAPI definitions ---------- */

enum ftype { T_STRING, T_BOOL, T_U8, T_U32, T_U64, T_USIZE, T_ENUM, T_OBJECT };

enum fpresence {
	F_REQUIRED,	/* plain field: must be present, null is a type error */
	F_DEFAULT,	/* #[serde(default)]: may be absent, null is a type error */
	F_OPTION,	/* Option<T>: may be absent or null */
};

struct schema;

struct field {
	const char *name;
	enum ftype type;
	enum fpresence presence;
	const char *const *variants;	/* T_ENUM */
	const struct schema *object;	/* T_OBJECT */
};

struct schema {
	const char *rust_name;
	const struct field *fields;	/* in Rust declaration order, NULL-terminated */
};

static const char *const cpu_templates[] = { "C3", "T2", "T2S", "T2CL", "T2A", "V1N1", "None", NULL };
static const char *const huge_pages_variants[] = { "None", "2M", NULL };
static const char *const cache_types[] = { "Unsafe", "Writeback", NULL };
static const char *const io_engines[] = { "Sync", "Async", NULL };
static const char *const action_types[] = { "FlushMetrics", "InstanceStart", "SendCtrlAltDel", NULL };
static const char *const vm_states[] = { "Paused", "Resumed", NULL };

static const struct schema machine_config_schema = { "MachineConfig", (const struct field[]){
	{ "vcpu_count", T_U8, F_REQUIRED, NULL, NULL },
	{ "mem_size_mib", T_USIZE, F_REQUIRED, NULL, NULL },
	{ "smt", T_BOOL, F_DEFAULT, NULL, NULL },
	{ "cpu_template", T_ENUM, F_OPTION, cpu_templates, NULL },
	{ "track_dirty_pages", T_BOOL, F_DEFAULT, NULL, NULL },
	{ "huge_pages", T_ENUM, F_DEFAULT, huge_pages_variants, NULL },
	{ NULL, 0, 0, NULL, NULL } } };

static const struct schema machine_config_update_schema = { "MachineConfigUpdate", (const struct field[]){
	{ "vcpu_count", T_U8, F_OPTION, NULL, NULL },
	{ "mem_size_mib", T_USIZE, F_OPTION, NULL, NULL },
	{ "smt", T_BOOL, F_OPTION, NULL, NULL },
	{ "cpu_template", T_ENUM, F_OPTION, cpu_templates, NULL },
	{ "track_dirty_pages", T_BOOL, F_OPTION, NULL, NULL },
	{ "huge_pages", T_ENUM, F_OPTION, huge_pages_variants, NULL },
	{ NULL, 0, 0, NULL, NULL } } };

static const struct schema boot_source_schema = { "BootSourceConfig", (const struct field[]){
	{ "kernel_image_path", T_STRING, F_REQUIRED, NULL, NULL },
	{ "initrd_path", T_STRING, F_OPTION, NULL, NULL },
	{ "boot_args", T_STRING, F_OPTION, NULL, NULL },
	{ NULL, 0, 0, NULL, NULL } } };

static const struct schema token_bucket_schema = { "TokenBucketConfig", (const struct field[]){
	{ "size", T_U64, F_REQUIRED, NULL, NULL },
	{ "one_time_burst", T_U64, F_OPTION, NULL, NULL },
	{ "refill_time", T_U64, F_REQUIRED, NULL, NULL },
	{ NULL, 0, 0, NULL, NULL } } };

static const struct schema rate_limiter_schema = { "RateLimiterConfig", (const struct field[]){
	{ "bandwidth", T_OBJECT, F_OPTION, NULL, &token_bucket_schema },
	{ "ops", T_OBJECT, F_OPTION, NULL, &token_bucket_schema },
	{ NULL, 0, 0, NULL, NULL } } };

static const struct schema drive_schema = { "BlockDeviceConfig", (const struct field[]){
	{ "drive_id", T_STRING, F_REQUIRED, NULL, NULL },
	{ "partuuid", T_STRING, F_OPTION, NULL, NULL },
	{ "is_root_device", T_BOOL, F_REQUIRED, NULL, NULL },
	{ "cache_type", T_ENUM, F_DEFAULT, cache_types, NULL },
	{ "is_read_only", T_BOOL, F_OPTION, NULL, NULL },
	{ "path_on_host", T_STRING, F_OPTION, NULL, NULL },
	{ "rate_limiter", T_OBJECT, F_OPTION, NULL, &rate_limiter_schema },
	{ "io_engine", T_ENUM, F_OPTION, io_engines, NULL },
	{ "socket", T_STRING, F_OPTION, NULL, NULL },
	{ NULL, 0, 0, NULL, NULL } } };

static const struct schema vsock_schema = { "VsockDeviceConfig", (const struct field[]){
	{ "vsock_id", T_STRING, F_OPTION, NULL, NULL },
	{ "guest_cid", T_U32, F_REQUIRED, NULL, NULL },
	{ "uds_path", T_STRING, F_REQUIRED, NULL, NULL },
	{ NULL, 0, 0, NULL, NULL } } };

static const struct schema net_iface_schema = { "NetworkInterfaceConfig", (const struct field[]){
	{ "iface_id", T_STRING, F_REQUIRED, NULL, NULL },
	{ "host_dev_name", T_STRING, F_REQUIRED, NULL, NULL },
	{ "guest_mac", T_STRING, F_OPTION, NULL, NULL },
	{ "mtu", T_U32, F_OPTION, NULL, NULL },
	{ "rx_rate_limiter", T_OBJECT, F_OPTION, NULL, &rate_limiter_schema },
	{ "tx_rate_limiter", T_OBJECT, F_OPTION, NULL, &rate_limiter_schema },
	{ NULL, 0, 0, NULL, NULL } } };

static const struct schema action_schema = { "ActionBody", (const struct field[]){
	{ "action_type", T_ENUM, F_REQUIRED, action_types, NULL },
	{ NULL, 0, 0, NULL, NULL } } };

static const struct schema vm_schema = { "Vm", (const struct field[]){
	{ "state", T_ENUM, F_REQUIRED, vm_states, NULL },
	{ NULL, 0, 0, NULL, NULL } } };

/* serde's "invalid type: <this>" wording for a JSON value. */
static void
describe_value(const json_t *v, char *buf, size_t n)
{
	switch (json_typeof(v)) {
	case JSON_STRING:
		snprintf(buf, n, "string \"%s\"", json_string_value(v));
		break;
	case JSON_INTEGER:
		snprintf(buf, n, "integer `%" JSON_INTEGER_FORMAT "`", json_integer_value(v));
		break;
	case JSON_REAL:
		snprintf(buf, n, "floating point `%g`", json_real_value(v));
		break;
	case JSON_TRUE:
	case JSON_FALSE:
		snprintf(buf, n, "boolean `%s`", json_is_true(v) ? "true" : "false");
		break;
	case JSON_NULL:
		snprintf(buf, n, "null");
		break;
	case JSON_OBJECT:
		snprintf(buf, n, "map");
		break;
	case JSON_ARRAY:
		snprintf(buf, n, "sequence");
		break;
	}
}

/* serde's "one of `a`, `b`" / "`a` or `b`" / "`a`" list. */
static void
name_list(const char *const *names, size_t count, char *buf, size_t n)
{
	size_t used = 0;

	buf[0] = '\0';
	if (count == 0) {
		snprintf(buf, n, "there are no fields");
		return;
	}
	if (count > 2)
		used += snprintf(buf + used, n - used, "one of ");
	for (size_t i = 0; i < count && used < n; i++) {
		const char *sep = i == 0 ? "" : (count == 2 ? " or " : ", ");
		used += snprintf(buf + used, n - used, "%s`%s`", sep, names[i]);
	}
}

static bool
int_fits(const json_t *v, enum ftype t)
{
	json_int_t x = json_integer_value(v);

	if (x < 0)
		return false;
	switch (t) {
	case T_U8:
		return x <= UINT8_MAX;
	case T_U32:
		return x <= (json_int_t)UINT32_MAX;
	default:
		return true;	/* u64/usize: anything jansson could parse that is >= 0 */
	}
}

static const char *
type_name(enum ftype t)
{
	switch (t) {
	case T_STRING:
		return "a string";
	case T_BOOL:
		return "a boolean";
	case T_U8:
		return "u8";
	case T_U32:
		return "u32";
	case T_U64:
		return "u64";
	case T_USIZE:
		return "usize";
	default:
		return "a value";
	}
}

/* Checks v against s like serde with deny_unknown_fields; -1 with msg set on failure. */
static int
check_schema(const struct schema *s, const json_t *v, char *msg, size_t n)
{
	char what[256];
	const char *key;
	json_t *val;

	if (!json_is_object(v)) {
		describe_value(v, what, sizeof(what));
		snprintf(msg, n, "invalid type: %s, expected struct %s", what, s->rust_name);
		return -1;
	}
	json_object_foreach((json_t *)v, key, val) {
		const struct field *f = s->fields;

		while (f->name && strcmp(f->name, key) != 0)
			f++;
		if (!f->name) {
			const char *names[16];
			size_t count = 0;
			char list[512];

			for (f = s->fields; f->name && count < 16; f++)
				names[count++] = f->name;
			name_list(names, count, list, sizeof(list));
			snprintf(msg, n, "unknown field `%s`, expected %s", key, list);
			return -1;
		}
		if (json_is_null(val) && f->presence == F_OPTION)
			continue;
		describe_value(val, what, sizeof(what));
		switch (f->type) {
		case T_STRING:
			if (!json_is_string(val))
				goto bad_type;
			break;
		case T_BOOL:
			if (!json_is_boolean(val))
				goto bad_type;
			break;
		case T_U8:
		case T_U32:
		case T_U64:
		case T_USIZE:
			if (!json_is_integer(val))
				goto bad_type;
			if (!int_fits(val, f->type)) {
				snprintf(msg, n, "invalid value: %s, expected %s", what, type_name(f->type));
				return -1;
			}
			break;
		case T_ENUM: {
			size_t count = 0;
			bool found = false;
			char list[512];

			if (!json_is_string(val)) {
				snprintf(msg, n, "invalid type: %s, expected variant identifier", what);
				return -1;
			}
			for (; f->variants[count]; count++)
				found = found || strcmp(f->variants[count], json_string_value(val)) == 0;
			if (!found) {
				name_list(f->variants, count, list, sizeof(list));
				snprintf(msg, n, "unknown variant `%s`, expected %s",
					 json_string_value(val), list);
				return -1;
			}
			break;
		}
		case T_OBJECT:
			if (check_schema(f->object, val, msg, n) < 0)
				return -1;
			break;
		}
		continue;
bad_type:
		snprintf(msg, n, "invalid type: %s, expected %s", what, type_name(f->type));
		return -1;
	}
	for (const struct field *f = s->fields; f->name; f++) {
		if (f->presence == F_REQUIRED && !json_object_get(v, f->name)) {
			snprintf(msg, n, "missing field `%s`", f->name);
			return -1;
		}
	}
	return 0;
}

/* ---- the double's state ------------------------------------------------ */

enum vm_state { VM_NOT_STARTED, VM_RUNNING, VM_PAUSED };

static const char *const vm_state_names[] = {
	[VM_NOT_STARTED] = "Not started",
	[VM_RUNNING] = "Running",
	[VM_PAUSED] = "Paused",
};

struct fc_double;

/* One host-side connection to the hybrid vsock socket. */
struct vconn {
	struct fc_double *fc;
	struct bufferevent *bev;	/* owns the fd */
	bool connected;			/* "OK" sent; now echoing */
	bool agent;			/* a scripted ember-agent, not an echo */
	bool eof;			/* client shut its side; close once output drains */
	bool throttled;			/* reading paused until the echo drains */
	bool dead;			/* freed by the reaper */
	TAILQ_ENTRY(vconn) entry;
};
TAILQ_HEAD(vconn_list, vconn);

struct drive {
	char *id;
	bool root;
	bool read_only;
	struct drive *next;
};

/* A Unix socket this process bound; removed at exit only if still ours. */
struct owned_socket {
	char *path;
	dev_t dev;
	ino_t ino;
};

/* A PUT /network-interfaces: the TAP is held open as Firecracker holds it. */
struct net_iface {
	char *id;
	char host_dev_name[IFNAMSIZ];
	int tap_fd;
	struct net_iface *next;
};

struct fc_double {
	struct event_base *base;
	struct evhttp *http;
	struct owned_socket api;
	char *id;
	FILE *log;

	enum vm_state state;
	bool have_boot_source;
	char *boot_args;		/* NULL: Firecracker's default */
	bool have_machine_config;
	unsigned vcpu_count;
	uint64_t mem_size_mib;
	bool smt, track_dirty_pages;
	char huge_pages[8];
	char cpu_template[8];
	struct drive *drives;
	struct net_iface *ifaces;

	struct evconnlistener *vsock_listener;	/* owns the fd */
	struct owned_socket vsock;
	uint32_t guest_cid;
	uint32_t next_host_port;
	struct vconn_list conns;
	struct event *reaper;

	struct event *sigterm, *sigint;
	struct event *sigusr1;		/* FC_DOUBLE_G2H_PORTS: the guest connects */
	struct event *shutdown_timer;	/* SendCtrlAltDel */
	bool ctrlaltdel_held;		/* sent while paused: acted on at resume */
	struct event *crash_timer;	/* FC_DOUBLE_EXIT_AFTER_START_MS */
	bool shutting_down;
	int exit_code;

	/* knobs from the environment */
	long ctrlaltdel_ms;		/* -1: never */
	long exit_after_start_ms;	/* -1: off */
	bool ignore_sigterm;
	bool require_machine_config;
	const char *fail_path;
	uint32_t *ports;
	size_t nports;
	uint32_t *agent_ports;		/* FC_DOUBLE_AGENT_PORTS */
	size_t nagent_ports;
	uint32_t *g2h_ports;		/* FC_DOUBLE_G2H_PORTS */
	size_t ng2h_ports;
	struct g2h *g2h[G2H_MAX];	/* those connections, while they last */
};

/* One guest-initiated connection to <uds_path>_<port>. */
struct g2h {
	struct fc_double *fc;
	struct bufferevent *bev;
	uint32_t port;
	size_t slot;
};

static void
fc_quit(struct fc_double *fc, int code, const char *why)
{
	if (fc->shutting_down)
		return;
	fc->shutting_down = true;
	fc->exit_code = code;
	say("exiting with status %d: %s", code, why);
	event_base_loopexit(fc->base, NULL);
}

/* ---- sockets ----------------------------------------------------------- */

/* Binds and listens on a new Unix socket; -errno on failure (existing path: -EADDRINUSE). */
static int
unix_listen(const char *path, struct owned_socket *owned)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct stat st;
	int fd, r;

	if (strlen(path) >= sizeof(sun.sun_path))
		return -ENAMETOOLONG;
	memcpy(sun.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	if (listen(fd, 64) < 0 || stat(path, &st) < 0) {
		r = -errno;
		unlink(path);
		close(fd);
		return r;
	}
	owned->path = strdup(path);
	owned->dev = st.st_dev;
	owned->ino = st.st_ino;
	return fd;
}

static void
owned_socket_remove(struct owned_socket *owned)
{
	struct stat st;

	if (!owned->path)
		return;
	if (lstat(owned->path, &st) == 0 && st.st_dev == owned->dev && st.st_ino == owned->ino)
		unlink(owned->path);
	free(owned->path);
	owned->path = NULL;
}

/* ---- hybrid vsock ------------------------------------------------------ */

static void vconn_process(struct vconn *c);

static void
vconn_kill(struct vconn *c)
{
	if (c->dead)
		return;
	c->dead = true;
	bufferevent_disable(c->bev, EV_READ | EV_WRITE);
	event_active(c->fc->reaper, EV_TIMEOUT, 1);
}

static void
reap_cb(evutil_socket_t fd, short what, void *arg)
{
	struct fc_double *fc = arg;
	struct vconn *c, *next;

	for (c = TAILQ_FIRST(&fc->conns); c; c = next) {
		next = TAILQ_NEXT(c, entry);
		if (!c->dead)
			continue;
		TAILQ_REMOVE(&fc->conns, c, entry);
		bufferevent_free(c->bev);
		free(c);
	}
}

static bool
port_in(const uint32_t *ports, size_t n, uint32_t port)
{
	for (size_t i = 0; i < n; i++)
		if (ports[i] == port)
			return true;
	return false;
}

static bool
port_allowed(const struct fc_double *fc, uint32_t port)
{
	return port_in(fc->ports, fc->nports, port) ||
	    port_in(fc->agent_ports, fc->nagent_ports, port);
}

/* ---- the scripted agent (FC_DOUBLE_AGENT_PORTS) ---------------------------- */

static void arm_timer(struct event *ev, long ms);

static char *
b64_encode(const unsigned char *p, size_t len)
{
	static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char *s = malloc((len + 2) / 3 * 4 + 1), *o = s;
	size_t i;

	if (!s)
		return NULL;
	for (i = 0; i + 2 < len; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
		*o++ = a[v >> 18];
		*o++ = a[(v >> 12) & 63];
		*o++ = a[(v >> 6) & 63];
		*o++ = a[v & 63];
	}
	if (i < len) {
		uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < len ? (uint32_t)p[i + 1] << 8 : 0);
		*o++ = a[v >> 18];
		*o++ = a[(v >> 12) & 63];
		*o++ = i + 1 < len ? a[(v >> 6) & 63] : '=';
		*o++ = '=';
	}
	*o = '\0';
	return s;
}

/* The canned exec reply: stdout is argv joined by spaces. */
static void
agent_exec_reply(json_t *reply, const json_t *req)
{
	const json_t *argv = json_object_get(req, "argv"), *v;
	size_t i, len = 0;
	char *joined, *enc;

	json_array_foreach(argv, i, v)
		len += strlen(json_string_value(v) ? json_string_value(v) : "") + 1;
	joined = calloc(1, len + 1);
	json_array_foreach(argv, i, v) {
		if (i > 0)
			strcat(joined, " ");
		strcat(joined, json_string_value(v) ? json_string_value(v) : "");
	}
	enc = b64_encode((const unsigned char *)joined, strlen(joined));
	json_object_set_new(reply, "exit_code", json_integer(0));
	json_object_set_new(reply, "signal", json_null());
	json_object_set_new(reply, "timed_out", json_false());
	json_object_set_new(reply, "stdout", json_string(enc ? enc : ""));
	json_object_set_new(reply, "stderr", json_string(""));
	json_object_set_new(reply, "truncated", json_false());
	free(enc);
	free(joined);
}

/* Answers one request line the way ember-agent would (a scripted subset). */
static void
agent_answer(struct fc_double *fc, struct evbuffer *out, const char *line, size_t len)
{
	json_t *req = json_loadb(line, len, 0, NULL), *reply = json_object();
	const char *op = json_string_value(json_object_get(req, "op"));
	char *text;

	json_object_set_new(reply, "ok", json_true());
	if (json_object_get(req, "id"))
		json_object_set(reply, "id", json_object_get(req, "id"));
	if (!op) {
		json_object_set_new(reply, "ok", json_false());
		json_object_set_new(reply, "error", json_string("fc-double agent: malformed request"));
	} else if (strcmp(op, "ping") == 0) {
		json_object_set_new(reply, "pong", json_true());
		json_object_set_new(reply, "version", json_string("fc-double"));
	} else if (strcmp(op, "info") == 0) {
		json_object_set_new(reply, "kernel", json_string("fc-double"));
		json_object_set_new(reply, "uptime_s", json_real(1.0));
		json_object_set_new(reply, "cid", json_integer(fc->guest_cid));
		json_object_set_new(reply, "hostname", json_string("fc-double"));
	} else if (strcmp(op, "exec") == 0 && json_is_array(json_object_get(req, "argv"))) {
		agent_exec_reply(reply, req);
	} else if (strcmp(op, "poweroff") == 0) {
		say("agent: poweroff (the guest shuts down as after SendCtrlAltDel)");
		if (fc->ctrlaltdel_ms >= 0 && !evtimer_pending(fc->shutdown_timer, NULL))
			arm_timer(fc->shutdown_timer, fc->ctrlaltdel_ms);
	} else {
		json_object_set_new(reply, "ok", json_false());
		json_object_set_new(reply, "error", json_string("fc-double agent: op not scripted"));
	}
	if (op)
		say("agent: op %s", op);
	text = json_dumps(reply, JSON_COMPACT);
	if (text) {
		evbuffer_add(out, text, strlen(text));
		evbuffer_add(out, "\n", 1);
	}
	free(text);
	json_decref(reply);
	json_decref(req);
}

/* Answers the complete request lines waiting in in. */
static void
agent_process(struct fc_double *fc, struct evbuffer *in, struct evbuffer *out)
{
	char *line;
	size_t len;

	while ((line = evbuffer_readln(in, &len, EVBUFFER_EOL_LF)) != NULL) {
		if (len > 0)
			agent_answer(fc, out, line, len);
		free(line);
	}
}

/* Parses "CONNECT <port>" (keyword case-insensitive, as Firecracker's muxer does). */
static int
parse_connect(char *line, uint32_t *port)
{
	char *p = line, *kw, *end;
	unsigned long v;

	while (isspace((unsigned char)*p))
		p++;
	kw = p;
	while (*p && !isspace((unsigned char)*p))
		p++;
	if (p - kw != 7 || strncasecmp(kw, "connect", 7) != 0)
		return -1;
	while (isspace((unsigned char)*p))
		p++;
	if (!isdigit((unsigned char)*p))
		return -1;
	errno = 0;
	v = strtoul(p, &end, 10);
	if (errno || v > UINT32_MAX)
		return -1;
	while (isspace((unsigned char)*end))
		end++;
	if (*end)
		return -1;
	*port = (uint32_t)v;
	return 0;
}

/* Handshake, then echo; runs only while the "guest" runs. */
static void
vconn_process(struct vconn *c)
{
	struct fc_double *fc = c->fc;
	struct evbuffer *in = bufferevent_get_input(c->bev);
	struct evbuffer *out = bufferevent_get_output(c->bev);

	if (c->dead || fc->state != VM_RUNNING)
		return;
	if (!c->connected) {
		struct evbuffer_ptr nl = evbuffer_search(in, "\n", 1, NULL);
		char line[VSOCK_CMD_MAX + 1];
		uint32_t port;

		if (nl.pos < 0) {
			if (evbuffer_get_length(in) >= VSOCK_CMD_MAX) {
				say("vsock: no newline in the first %d bytes; closing", VSOCK_CMD_MAX);
				vconn_kill(c);
			}
			return;
		}
		if (nl.pos + 1 > VSOCK_CMD_MAX) {
			say("vsock: connect command longer than %d bytes; closing", VSOCK_CMD_MAX);
			vconn_kill(c);
			return;
		}
		evbuffer_remove(in, line, (size_t)nl.pos + 1);
		line[nl.pos] = '\0';
		if (parse_connect(line, &port) < 0) {
			say("vsock: malformed connect command \"%s\"; closing", line);
			vconn_kill(c);
			return;
		}
		if (!port_allowed(fc, port)) {
			say("vsock: nothing listens on guest port %" PRIu32 "; closing", port);
			vconn_kill(c);
			return;
		}
		evbuffer_add_printf(out, "OK %" PRIu32 "\n", fc->next_host_port++);
		c->connected = true;
		c->agent = port_in(fc->agent_ports, fc->nagent_ports, port);
	}
	if (c->agent)
		agent_process(fc, in, out);
	else if (evbuffer_get_length(in) > 0)
		evbuffer_add_buffer(out, in);
	if (evbuffer_get_length(out) >= ECHO_HIGH_WATER && !c->throttled) {
		c->throttled = true;
		bufferevent_disable(c->bev, EV_READ);
	}
	if (c->eof && evbuffer_get_length(out) == 0)
		vconn_kill(c);
}

static void
vconn_read_cb(struct bufferevent *bev, void *arg)
{
	vconn_process(arg);
}

static void
vconn_write_cb(struct bufferevent *bev, void *arg)
{
	struct vconn *c = arg;
	size_t left = evbuffer_get_length(bufferevent_get_output(bev));

	if (c->dead)
		return;
	if (c->eof && left == 0) {
		vconn_kill(c);
		return;
	}
	if (c->throttled && left <= ECHO_HIGH_WATER / 2) {
		c->throttled = false;
		if (c->fc->state == VM_RUNNING && !c->eof)
			bufferevent_enable(bev, EV_READ);
		vconn_process(c);
	}
}

static void
vconn_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct vconn *c = arg;

	if (what & BEV_EVENT_ERROR) {
		vconn_kill(c);
		return;
	}
	if (what & BEV_EVENT_EOF) {
		c->eof = true;
		/* Output drains to 0 before the write callback may close us. */
		bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
		if (!c->connected || evbuffer_get_length(bufferevent_get_output(bev)) == 0)
			vconn_kill(c);
	}
}

/* Pauses or resumes every connection's reading with the guest's vCPUs. */
static void
vsock_set_running(struct fc_double *fc, bool running)
{
	struct vconn *c;

	TAILQ_FOREACH(c, &fc->conns, entry) {
		if (c->dead)
			continue;
		if (running && !c->throttled && !c->eof)
			bufferevent_enable(c->bev, EV_READ);
		else if (!running)
			bufferevent_disable(c->bev, EV_READ);
		if (running)
			vconn_process(c);
	}
}

static void
vsock_accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len, void *arg)
{
	struct fc_double *fc = arg;
	struct vconn *c = calloc(1, sizeof(*c));

	if (!c) {
		close(fd);
		return;
	}
	c->fc = fc;
	c->bev = bufferevent_socket_new(fc->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (!c->bev) {
		close(fd);
		free(c);
		return;
	}
	bufferevent_setcb(c->bev, vconn_read_cb, vconn_write_cb, vconn_event_cb, c);
	bufferevent_setwatermark(c->bev, EV_WRITE, ECHO_HIGH_WATER / 2, 0);
	TAILQ_INSERT_TAIL(&fc->conns, c, entry);
	/* Before InstanceStart or while paused nobody answers: bytes wait in the socket. */
	if (fc->state == VM_RUNNING)
		bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	else
		bufferevent_enable(c->bev, EV_WRITE);
}

static void
vsock_close(struct fc_double *fc)
{
	struct vconn *c;

	TAILQ_FOREACH(c, &fc->conns, entry)
		vconn_kill(c);
	reap_cb(-1, 0, fc);
	if (fc->vsock_listener) {
		evconnlistener_free(fc->vsock_listener);
		fc->vsock_listener = NULL;
	}
	owned_socket_remove(&fc->vsock);
}

/* ---- guest-initiated connections (FC_DOUBLE_G2H_PORTS) ----------------- */

static void
g2h_end(struct g2h *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
g2h_end(struct g2h *g, const char *fmt, ...)
{
	char what[G2H_LINE_MAX + 64];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	say("guest connection to port %" PRIu32 ": %s", g->port, what);
	g->fc->g2h[g->slot] = NULL;
	bufferevent_free(g->bev);
	free(g);
}

static void
g2h_read_cb(struct bufferevent *bev, void *arg)
{
	struct g2h *g = arg;
	char *line = evbuffer_readln(bufferevent_get_input(bev), NULL, EVBUFFER_EOL_LF);

	if (line) {
		g2h_end(g, "answered '%.*s'", G2H_LINE_MAX, line);
		free(line);
	} else if (evbuffer_get_length(bufferevent_get_input(bev)) > G2H_LINE_MAX)
		g2h_end(g, "answered more than %d bytes without a newline", G2H_LINE_MAX);
}

static void
g2h_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct g2h *g = arg;

	if (what & BEV_EVENT_CONNECTED)
		return;
	if (what & BEV_EVENT_ERROR)
		g2h_end(g, "failed: %s", strerror(EVUTIL_SOCKET_ERROR()));
	else if (what & BEV_EVENT_TIMEOUT)
		g2h_end(g, "no answer in time");
	else if (what & BEV_EVENT_EOF)
		g2h_end(g, "closed without an answer");
}

/* "The guest" connects to every FC_DOUBLE_G2H_PORTS port, by path as
 * Firecracker does. */
static void
g2h_connect_all(struct fc_double *fc)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct timeval tv = { 10, 0 };

	for (size_t i = 0; i < fc->ng2h_ports && i < G2H_MAX; i++) {
		uint32_t port = fc->g2h_ports[i];
		struct g2h *g;
		int fd;

		if (fc->state != VM_RUNNING || !fc->vsock.path) {
			say("guest connection to port %" PRIu32 ": %s", port,
			    fc->vsock.path ? "the guest is not running" : "no vsock device");
			continue;
		}
		if (fc->g2h[i]) {
			say("guest connection to port %" PRIu32 ": the last one is still open", port);
			continue;
		}
		if ((size_t)snprintf(sun.sun_path, sizeof(sun.sun_path), "%s_%" PRIu32,
		    fc->vsock.path, port) >= sizeof(sun.sun_path)) {
			say("guest connection to port %" PRIu32 ": path too long", port);
			continue;
		}
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0) {
			say("guest connection to port %" PRIu32 ": socket: %s", port, strerror(errno));
			continue;
		}
		if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
			say("guest connection to port %" PRIu32 ": refused: %s (%s)", port,
			    strerror(errno), sun.sun_path);
			close(fd);
			continue;
		}
		g = calloc(1, sizeof(*g));
		if (!g || !(g->bev = bufferevent_socket_new(fc->base, fd, BEV_OPT_CLOSE_ON_FREE))) {
			say("guest connection to port %" PRIu32 ": out of memory", port);
			close(fd);
			free(g);
			continue;
		}
		g->fc = fc;
		g->port = port;
		g->slot = i;
		fc->g2h[i] = g;
		say("guest connection to port %" PRIu32 ": connected to %s", port, sun.sun_path);
		bufferevent_setcb(g->bev, g2h_read_cb, NULL, g2h_event_cb, g);
		bufferevent_set_timeouts(g->bev, &tv, &tv);
		evbuffer_add_printf(bufferevent_get_output(g->bev),
				    "hello from the guest on port %" PRIu32 "\n", port);
		bufferevent_enable(g->bev, EV_READ | EV_WRITE);
	}
}

static void
g2h_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	g2h_connect_all(arg);
}

static void
g2h_free_all(struct fc_double *fc)
{
	for (size_t i = 0; i < G2H_MAX; i++) {
		if (fc->g2h[i]) {
			bufferevent_free(fc->g2h[i]->bev);
			free(fc->g2h[i]);
			fc->g2h[i] = NULL;
		}
	}
}

/* ---- replies ----------------------------------------------------------- */

struct reply {
	int status;
	json_t *body;	/* owned; NULL for 204 */
};

static void fault(struct reply *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
fault(struct reply *r, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	json_decref(r->body);
	r->status = 400;
	r->body = json_pack("{s:s}", "fault_message", msg);
}

static void
ok(struct reply *r, json_t *body_take)
{
	json_decref(r->body);
	r->status = body_take ? 200 : 204;
	r->body = body_take;
}

/* Deserializes like serde_json::from_slice::<s>(body); false with a 400 on failure. */
static bool
parse_body(struct reply *r, const json_t *body, const char *parse_error, const struct schema *s)
{
	char msg[768];

	if (parse_error) {
		fault(r, SERDE_PREFIX "%s.", parse_error);
		return false;
	}
	if (check_schema(s, body, msg, sizeof(msg)) < 0) {
		fault(r, SERDE_PREFIX "%s.", msg);
		return false;
	}
	return true;
}

/* Firecracker's checked_id(): non-empty, alphanumeric or '_'. */
static bool
check_resource_id(struct reply *r, const char *id)
{
	if (!id || !*id) {
		fault(r, "The ID cannot be empty.");
		return false;
	}
	for (const char *p = id; *p; p++) {
		if (!isalnum((unsigned char)*p) && *p != '_') {
			fault(r, "API Resource IDs can only contain alphanumeric characters and underscores.");
			return false;
		}
	}
	return true;
}

static const char *
jstr(const json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

/* ---- handlers ---------------------------------------------------------- */

static json_t *
machine_config_json(const struct fc_double *fc)
{
	json_t *o = json_pack("{s:I, s:I, s:b, s:b, s:s}",
			      "vcpu_count", (json_int_t)fc->vcpu_count,
			      "mem_size_mib", (json_int_t)fc->mem_size_mib,
			      "smt", fc->smt, "track_dirty_pages", fc->track_dirty_pages,
			      "huge_pages", fc->huge_pages);
	if (fc->cpu_template[0])
		json_object_set_new(o, "cpu_template", json_string(fc->cpu_template));
	return o;
}

/* Applies a (partial) machine config the way VmConfig::update() validates it. */
static void
apply_machine_config(struct fc_double *fc, struct reply *r, const json_t *b)
{
	json_t *v;
	unsigned vcpus = fc->vcpu_count;
	uint64_t mem = fc->mem_size_mib;
	bool smt = fc->smt;
	const char *huge = fc->huge_pages;

	if ((v = json_object_get(b, "vcpu_count")) && !json_is_null(v))
		vcpus = (unsigned)json_integer_value(v);
	if ((v = json_object_get(b, "smt")) && !json_is_null(v))
		smt = json_is_true(v);
	if ((v = json_object_get(b, "mem_size_mib")) && !json_is_null(v))
		mem = (uint64_t)json_integer_value(v);
	if ((v = json_object_get(b, "huge_pages")) && !json_is_null(v))
		huge = json_string_value(v);
	if (vcpus == 0 || vcpus > FC_MAX_VCPUS || (smt && vcpus > 1 && vcpus % 2 == 1)) {
		fault(r, "Machine config error: The number of vCPUs must be greater than 0, less than %d "
			 "and must be 1 or an even number if SMT is enabled.", FC_MAX_VCPUS);
		return;
	}
	if (mem == 0 || (strcmp(huge, "2M") == 0 && mem % 2 != 0)) {
		fault(r, "Machine config error: The memory size (MiB) is either 0, or not a multiple "
			 "of the configured page size.");
		return;
	}
	fc->vcpu_count = vcpus;
	fc->mem_size_mib = mem;
	fc->smt = smt;
	snprintf(fc->huge_pages, sizeof(fc->huge_pages), "%s", huge);
	if ((v = json_object_get(b, "track_dirty_pages")) && !json_is_null(v))
		fc->track_dirty_pages = json_is_true(v);
	if ((v = json_object_get(b, "cpu_template")) && !json_is_null(v))
		snprintf(fc->cpu_template, sizeof(fc->cpu_template), "%s",
			 strcmp(json_string_value(v), "None") == 0 ? "" : json_string_value(v));
	fc->have_machine_config = true;
	ok(r, NULL);
}

static void
patch_machine_config(struct fc_double *fc, struct reply *r, const json_t *b)
{
	if (json_object_size(b) == 0) {
		fault(r, "Empty PATCH request.");
		return;
	}
	apply_machine_config(fc, r, b);
}

static void
put_machine_config(struct fc_double *fc, struct reply *r, const json_t *b)
{
	/* PUT resets the optional fields to their defaults; PATCH keeps them. */
	json_t *full = json_deep_copy(b);

	if (!json_object_get(full, "smt"))
		json_object_set_new(full, "smt", json_false());
	if (!json_object_get(full, "track_dirty_pages"))
		json_object_set_new(full, "track_dirty_pages", json_false());
	if (!json_object_get(full, "huge_pages"))
		json_object_set_new(full, "huge_pages", json_string("None"));
	if (!json_object_get(full, "cpu_template"))
		json_object_set_new(full, "cpu_template", json_string("None"));
	apply_machine_config(fc, r, full);
	json_decref(full);
}

static bool
can_open(const char *path, int flags, int *err)
{
	int fd = open(path, flags | O_CLOEXEC);

	if (fd < 0) {
		*err = errno;
		return false;
	}
	close(fd);
	return true;
}

static size_t
trimmed_len(const char *s)
{
	size_t len;

	while (*s == ' ')
		s++;
	len = strlen(s);
	while (len > 0 && s[len - 1] == ' ')
		len--;
	return len;
}

/* Appends " piece" to line as linux-loader's insert_str does: false (and
 * line unchanged) when the result and its NUL would not fit. */
static bool
cmdline_insert(char *line, const char *piece)
{
	size_t len = strlen(line), add = strlen(piece) + (len > 0);

	if (len + add + 1 > FC_CMDLINE_MAX_SIZE)
		return false;
	snprintf(line + len, FC_CMDLINE_MAX_SIZE - len, "%s%s", len > 0 ? " " : "", piece);
	return true;
}

/* The guest's command line as Firecracker v1.16 builds it on x86 without
 * PCI: boot_args, pci=off, root=/dev/vda rw|ro for the root drive, and a
 * virtio_mmio.device= entry per device (drives, then vsock). */
static bool
build_cmdline(const struct fc_double *fc, char *line)
{
	static const char default_args[] = "reboot=k panic=1 nomodule 8250.nr_uarts=0 "
		"i8042.noaux i8042.nomux i8042.dumbkbd swiotlb=noforce";
	const char *args = fc->boot_args ? fc->boot_args : default_args;
	unsigned slot = 0;
	char piece[96];
	size_t len;

	while (*args == ' ')
		args++;
	len = trimmed_len(args);
	if (len + 1 > FC_CMDLINE_MAX_SIZE)
		return false;
	memcpy(line, args, len);
	line[len] = '\0';
	if (!cmdline_insert(line, "pci=off"))
		return false;
	for (const struct drive *d = fc->drives; d; d = d->next, slot++) {
		if (d->root && (!cmdline_insert(line, "root=/dev/vda") ||
				!cmdline_insert(line, d->read_only ? "ro" : "rw")))
			return false;
		snprintf(piece, sizeof(piece), "virtio_mmio.device=4K@0x%x:%u",
			 FC_MMIO32_MEM_START + (slot + 1) * 0x1000u, FC_GSI_LEGACY_START + slot);
		if (!cmdline_insert(line, piece))
			return false;
	}
	for (const struct net_iface *n = fc->ifaces; n; n = n->next, slot++) {
		snprintf(piece, sizeof(piece), "virtio_mmio.device=4K@0x%x:%u",
			 FC_MMIO32_MEM_START + (slot + 1) * 0x1000u, FC_GSI_LEGACY_START + slot);
		if (!cmdline_insert(line, piece))
			return false;
	}
	if (fc->vsock_listener) {
		snprintf(piece, sizeof(piece), "virtio_mmio.device=4K@0x%x:%u",
			 FC_MMIO32_MEM_START + (slot + 1) * 0x1000u, FC_GSI_LEGACY_START + slot);
		if (!cmdline_insert(line, piece))
			return false;
	}
	return true;
}

static void
put_boot_source(struct fc_double *fc, struct reply *r, const json_t *b)
{
	const char *initrd = jstr(b, "initrd_path");
	const char *args = jstr(b, "boot_args");
	int err;

	if (!can_open(jstr(b, "kernel_image_path"), O_RDONLY, &err)) {
		fault(r, "Boot source error: The kernel file cannot be opened: %s (os error %d)",
		      strerror(err), err);
		return;
	}
	if (initrd && !can_open(initrd, O_RDONLY, &err)) {
		fault(r, "Boot source error: The initrd file cannot be opened due to invalid path or "
			 "invalid permissions. %s (os error %d)", strerror(err), err);
		return;
	}
	/* linux-loader's Cmdline::try_from: the trimmed line plus its NUL. */
	if (args && trimmed_len(args) + 1 > FC_CMDLINE_MAX_SIZE) {
		fault(r, "Boot source error: The kernel command line is invalid: Invalid cmdline "
			 "capacity provided.");
		return;
	}
	free(fc->boot_args);
	fc->boot_args = args ? strdup(args) : NULL;
	fc->have_boot_source = true;
	ok(r, NULL);
}

static void
put_drive(struct fc_double *fc, struct reply *r, const json_t *b)
{
	const char *id = jstr(b, "drive_id");
	const char *path = jstr(b, "path_on_host");
	const char *sock = jstr(b, "socket");
	bool root = json_is_true(json_object_get(b, "is_root_device"));
	bool ro = json_is_true(json_object_get(b, "is_read_only"));
	struct drive *d;
	int err;

	for (d = fc->drives; d; d = d->next) {
		if (root && d->root && strcmp(d->id, id) != 0) {
			fault(r, "Drive config error: A root block device already exists!");
			return;
		}
	}
	if (sock && (path || json_object_get(b, "is_read_only"))) {
		fault(r, "Drive config error: Unable to create the block device: a vhost-user drive "
			 "(socket) takes neither path_on_host nor is_read_only.");
		return;
	}
	if (!sock && !path) {
		fault(r, "Drive config error: Unable to create the block device: path_on_host is "
			 "required for a virtio-block drive.");
		return;
	}
	if (path && !can_open(path, ro ? O_RDONLY : O_RDWR, &err)) {
		fault(r, "Drive config error: Unable to create the virtio block device: Virtio backend "
			 "error: Error manipulating the backing file: %s (os error %d) %s",
		      strerror(err), err, path);
		return;
	}
	for (d = fc->drives; d && strcmp(d->id, id) != 0; d = d->next)
		;
	if (!d) {
		d = calloc(1, sizeof(*d));
		if (!d || !(d->id = strdup(id))) {
			free(d);
			fault(r, "fc-double: out of memory");
			return;
		}
		d->next = fc->drives;
		fc->drives = d;
	}
	d->root = root;
	d->read_only = ro;
	ok(r, NULL);
}

static void
put_vsock(struct fc_double *fc, struct reply *r, const json_t *b)
{
	const char *path = jstr(b, "uds_path");
	json_int_t cid = json_integer_value(json_object_get(b, "guest_cid"));
	int fd;

	if (cid < 3) {
		fault(r, "Vsock config error: Cannot create vsock device: guest_cid %" JSON_INTEGER_FORMAT
			 " is reserved; guest CIDs start at 3.", cid);
		return;
	}
	/* Like VsockBuilder::insert(): the previous device and its socket go first. */
	vsock_close(fc);
	fd = unix_listen(path, &fc->vsock);
	if (fd < 0) {
		if (fd == -ENAMETOOLONG)
			fault(r, "Vsock config error: Cannot create backend for vsock device: Error binding "
				 "to the host-side Unix socket: path must be shorter than SUN_LEN");
		else
			fault(r, "Vsock config error: Cannot create backend for vsock device: Error binding "
				 "to the host-side Unix socket: %s (os error %d)", strerror(-fd), -fd);
		return;
	}
	fc->vsock_listener = evconnlistener_new(fc->base, vsock_accept_cb, fc,
						LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
	if (!fc->vsock_listener) {
		close(fd);
		owned_socket_remove(&fc->vsock);
		fault(r, "fc-double: cannot listen on %s", path);
		return;
	}
	fc->guest_cid = (uint32_t)cid;
	ok(r, NULL);
}

static void
shutdown_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	fc_quit(arg, 0, "guest shut down after SendCtrlAltDel");
}

static void
crash_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	fc_quit(arg, 1, "simulated guest crash (FC_DOUBLE_EXIT_AFTER_START_MS)");
}

static void
arm_timer(struct event *ev, long ms)
{
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };

	evtimer_add(ev, &tv);
}

static void
put_action(struct fc_double *fc, struct reply *r, const json_t *b)
{
	const char *action = jstr(b, "action_type");

	if (strcmp(action, "InstanceStart") == 0) {
		if (fc->state != VM_NOT_STARTED) {
			fault(r, PREBOOT_ONLY);
			return;
		}
		if (!fc->have_boot_source) {
			fault(r, "Start microvm error: Cannot start microvm without kernel configuration.");
			return;
		}
		if (fc->require_machine_config && !fc->have_machine_config) {
			fault(r, "Start microvm error: Cannot start microvm without guest mem_size config.");
			return;
		}
		char cmdline[FC_CMDLINE_MAX_SIZE];
		if (!build_cmdline(fc, cmdline)) {
			fault(r, "Start microvm error: Cannot build the kernel command line: Inserting "
				 "string would make command line too long.");
			return;
		}
		say("kernel command line: %s", cmdline);
		fc->state = VM_RUNNING;
		say("microVM %s started (%u vCPUs, %" PRIu64 " MiB)", fc->id, fc->vcpu_count,
		    fc->mem_size_mib);
		if (fc->exit_after_start_ms >= 0)
			arm_timer(fc->crash_timer, fc->exit_after_start_ms);
		vsock_set_running(fc, true);
		ok(r, NULL);
		return;
	}
	if (fc->state == VM_NOT_STARTED) {
		fault(r, POSTBOOT_ONLY);
		return;
	}
	if (strcmp(action, "SendCtrlAltDel") == 0) {
		if (fc->ctrlaltdel_ms < 0)
			say("SendCtrlAltDel: the guest ignores it (FC_DOUBLE_CTRLALTDEL_DELAY_MS=never)");
		else if (fc->state == VM_PAUSED) {
			/* a paused guest runs no code: the key press waits for a resume */
			say("SendCtrlAltDel: the guest is paused; nothing happens until it resumes");
			fc->ctrlaltdel_held = true;
		} else if (!evtimer_pending(fc->shutdown_timer, NULL))
			arm_timer(fc->shutdown_timer, fc->ctrlaltdel_ms);
	}
	ok(r, NULL);	/* FlushMetrics, SendCtrlAltDel */
}

static void
patch_vm(struct fc_double *fc, struct reply *r, const json_t *b)
{
	bool pause = strcmp(jstr(b, "state"), "Paused") == 0;

	if (fc->state == VM_NOT_STARTED) {
		fault(r, POSTBOOT_ONLY);
		return;
	}
	fc->state = pause ? VM_PAUSED : VM_RUNNING;
	vsock_set_running(fc, !pause);
	if (!pause && fc->ctrlaltdel_held && !evtimer_pending(fc->shutdown_timer, NULL))
		arm_timer(fc->shutdown_timer, fc->ctrlaltdel_ms);
	fc->ctrlaltdel_held = false;
	ok(r, NULL);
}

/* MacAddr's deserializer: six two-digit hex bytes separated by ':'. */
static bool
mac_valid(const char *mac)
{
	if (strlen(mac) != 17)
		return false;
	for (int i = 0; i < 17; i++) {
		if (i % 3 == 2 ? mac[i] != ':' : !isxdigit((unsigned char)mac[i]))
			return false;
	}
	return true;
}

/* PUT /network-interfaces/{id}: the TAP named host_dev_name must exist and
 * be a TAP nobody else holds; it is opened as Firecracker opens it
 * (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR) and kept open until exit. */
static void
put_net_iface(struct fc_double *fc, struct reply *r, const json_t *b)
{
	const char *id = jstr(b, "iface_id"), *dev = jstr(b, "host_dev_name");
	const char *mac = jstr(b, "guest_mac");
	const json_t *mtu = json_object_get(b, "mtu");
	struct net_iface *n;
	struct ifreq ifr;
	int fd;

	if (mac && !mac_valid(mac)) {
		fault(r, SERDE_PREFIX "Invalid MAC address: %s", mac);
		return;
	}
	if (json_is_integer(mtu) && (json_integer_value(mtu) < 68 || json_integer_value(mtu) > 65535)) {
		fault(r, "Could not create the network device: MTU %" JSON_INTEGER_FORMAT
			 " is outside 68 to 65535.", json_integer_value(mtu));
		return;
	}
	if (strlen(dev) >= IFNAMSIZ || if_nametoindex(dev) == 0) {
		fault(r, "Could not create the network device: Open tap device failed: no "
			 "interface %s (fc-double does not create TAPs). Invalid TUN/TAP Backend "
			 "provided by %s. Check our documentation on preparing your tap device.", dev, dev);
		return;
	}
	for (n = fc->ifaces; n; n = n->next) {
		if (strcmp(n->id, id) != 0 && strcmp(n->host_dev_name, dev) == 0) {
			fault(r, "Could not create the network device: The host device name %s is "
				 "already in use.", dev);
			return;
		}
	}
	fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", dev);
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	if (fd < 0 || ioctl(fd, TUNSETIFF, &ifr) < 0) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		fault(r, "Could not create the network device: Open tap device failed: Error while "
			 "creating ifreq structure: %s (os error %d). Invalid TUN/TAP Backend provided "
			 "by %s. Check our documentation on preparing your tap device.", strerror(e), e,
		      dev);
		return;
	}
	for (n = fc->ifaces; n && strcmp(n->id, id) != 0; n = n->next)
		;
	if (!n) {
		n = calloc(1, sizeof(*n));
		if (!n || !(n->id = strdup(id))) {
			free(n);
			close(fd);
			fault(r, "fc-double: out of memory");
			return;
		}
		n->next = fc->ifaces;
		fc->ifaces = n;
	} else
		close(n->tap_fd);
	snprintf(n->host_dev_name, sizeof(n->host_dev_name), "%s", dev);
	n->tap_fd = fd;
	say("network interface %s on TAP %s, guest_mac %s", id, dev, mac ? mac : "(none)");
	ok(r, NULL);
}

/* ---- routing ----------------------------------------------------------- */

struct route {
	enum evhttp_cmd_type method;
	const char *resource;		/* first path segment */
	bool takes_id;			/* /resource/{id} */
	bool preboot_only;
	const struct schema *schema;	/* NULL: GET, no body */
	void (*handler)(struct fc_double *, struct reply *, const json_t *);
	const char *id_field;		/* takes_id: the body's field that must equal it */
};

static void
get_instance(struct fc_double *fc, struct reply *r, const json_t *b)
{
	ok(r, json_pack("{s:s, s:s, s:s, s:s}", "id", fc->id, "state", vm_state_names[fc->state],
			"vmm_version", FC_VERSION, "app_name", "Firecracker"));
}

static void
get_machine_config(struct fc_double *fc, struct reply *r, const json_t *b)
{
	ok(r, machine_config_json(fc));
}

static void
get_version(struct fc_double *fc, struct reply *r, const json_t *b)
{
	ok(r, json_pack("{s:s}", "firecracker_version", FC_VERSION));
}

static const struct route routes[] = {
	{ EVHTTP_REQ_GET, "", false, false, NULL, get_instance, NULL },
	{ EVHTTP_REQ_GET, "machine-config", false, false, NULL, get_machine_config, NULL },
	{ EVHTTP_REQ_GET, "version", false, false, NULL, get_version, NULL },
	{ EVHTTP_REQ_PUT, "machine-config", false, true, &machine_config_schema, put_machine_config, NULL },
	{ EVHTTP_REQ_PATCH, "machine-config", false, true, &machine_config_update_schema, patch_machine_config, NULL },
	{ EVHTTP_REQ_PUT, "boot-source", false, true, &boot_source_schema, put_boot_source, NULL },
	{ EVHTTP_REQ_PUT, "drives", true, true, &drive_schema, put_drive, "drive_id" },
	{ EVHTTP_REQ_PUT, "network-interfaces", true, true, &net_iface_schema, put_net_iface,
	  "iface_id" },
	{ EVHTTP_REQ_PUT, "vsock", false, true, &vsock_schema, put_vsock, NULL },
	{ EVHTTP_REQ_PUT, "actions", false, false, &action_schema, put_action, NULL },
	{ EVHTTP_REQ_PATCH, "vm", false, false, &vm_schema, patch_vm, NULL },
};

static const char *
method_name(enum evhttp_cmd_type m)
{
	switch (m) {
	case EVHTTP_REQ_GET: return "GET";
	case EVHTTP_REQ_PUT: return "PUT";
	case EVHTTP_REQ_PATCH: return "PATCH";
	case EVHTTP_REQ_POST: return "POST";
	case EVHTTP_REQ_DELETE: return "DELETE";
	case EVHTTP_REQ_HEAD: return "HEAD";
	case EVHTTP_REQ_OPTIONS: return "OPTIONS";
	default: return "UNKNOWN";
	}
}

static void
dispatch(struct fc_double *fc, struct reply *r, enum evhttp_cmd_type method, const char *path,
	 bool has_body, const json_t *body, const char *parse_error)
{
	char resource[128] = "", id[128] = "";
	const char *p = path, *slash;
	bool has_id;

	if (fc->fail_path && strcmp(path, fc->fail_path) == 0) {
		fault(r, "fc-double: injected failure");
		return;
	}
	/* Firecracker splits the path: the first segment names the resource, the second the id. */
	while (*p == '/')
		p++;
	slash = strchr(p, '/');
	snprintf(resource, sizeof(resource), "%.*s", (int)(slash ? slash - p : (ptrdiff_t)strlen(p)), p);
	has_id = slash && slash[1];
	if (has_id) {
		const char *idp = slash + 1, *end = strchr(idp, '/');

		snprintf(id, sizeof(id), "%.*s", (int)(end ? end - idp : (ptrdiff_t)strlen(idp)), idp);
	}
	if (method == EVHTTP_REQ_GET && has_body) {
		fault(r, "GET request cannot have a body.");
		return;
	}
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		const struct route *rt = &routes[i];

		if (rt->method != method || strcmp(rt->resource, resource) != 0)
			continue;
		if (!rt->takes_id && has_id)
			break;
		if (rt->schema && !has_body) {
			fault(r, "Empty %s request.", method_name(method));
			return;
		}
		if (rt->takes_id && !check_resource_id(r, has_id ? id : NULL))
			return;
		if (rt->schema && !parse_body(r, body, parse_error, rt->schema))
			return;
		if (rt->takes_id && strcmp(id, jstr(body, rt->id_field)) != 0) {
			fault(r, "The id from the path does not match the id from the body!");
			return;
		}
		if (rt->preboot_only && fc->state != VM_NOT_STARTED) {
			fault(r, PREBOOT_ONLY);
			return;
		}
		rt->handler(fc, r, body);
		return;
	}
	if ((method == EVHTTP_REQ_PUT || method == EVHTTP_REQ_PATCH) && !has_body) {
		fault(r, "Empty %s request.", method_name(method));
		return;
	}
	fault(r, "Invalid request method and/or path: %s %s.", method_name(method), resource);
}

static void
log_request(struct fc_double *fc, const char *method, const char *path, json_t *body, int status)
{
	json_t *line = json_pack("{s:s, s:s, s:O, s:i}", "method", method, "path", path,
				 "body", body ? body : json_null(), "status", status);
	char *text = line ? json_dumps(line, JSON_COMPACT) : NULL;

	if (text) {
		fprintf(fc->log, "%s\n", text);
		fflush(fc->log);
	}
	free(text);
	json_decref(line);
}

static void
request_cb(struct evhttp_request *req, void *arg)
{
	struct fc_double *fc = arg;
	enum evhttp_cmd_type method = evhttp_request_get_command(req);
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	const char *uri = evhttp_request_get_uri(req);
	char path[512], parse_error[256] = "";
	struct reply r = { 500, NULL };
	json_t *body = NULL, *logged;
	json_error_t jerr;
	struct evbuffer *out;

	snprintf(path, sizeof(path), "%.*s", (int)strcspn(uri, "?#"), uri);
	if (len > 0) {
		body = json_loadb((const char *)evbuffer_pullup(in, -1), len,
				  JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
		if (!body)
			snprintf(parse_error, sizeof(parse_error), "%s at line %d column %d",
				 jerr.text, jerr.line, jerr.column);
	}
	dispatch(fc, &r, method, path, len > 0, body, body ? NULL : parse_error);

	out = evbuffer_new();
	evhttp_add_header(evhttp_request_get_output_headers(req), "Server", "Firecracker API");
	if (r.body) {
		char *text = json_dumps(r.body, JSON_COMPACT);

		evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
		if (text)
			evbuffer_add(out, text, strlen(text));
		free(text);
	}
	if (r.status >= 400)
		say("%s %s -> %d %s", method_name(method), path, r.status,
		    json_string_value(json_object_get(r.body, "fault_message")));
	evhttp_send_reply(req, r.status,
			  r.status == 200 ? "OK" : r.status == 204 ? "No Content" : "Bad Request",
			  r.body ? out : NULL);
	evbuffer_free(out);

	/* The log records the body as JSON when it parsed, as the raw text when it did not. */
	if (body)
		logged = json_incref(body);
	else if (len > 0)
		logged = json_stringn((const char *)evbuffer_pullup(in, -1), len);
	else
		logged = NULL;
	log_request(fc, method_name(method), path, logged, r.status);
	json_decref(logged);
	json_decref(body);
	json_decref(r.body);
}

/* ---- setup ------------------------------------------------------------- */

static void
signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct fc_double *fc = arg;

	if (sig == SIGTERM && fc->ignore_sigterm) {
		say("ignoring SIGTERM (FC_DOUBLE_IGNORE_SIGTERM=1)");
		return;
	}
	fc_quit(fc, 0, sig == SIGTERM ? "SIGTERM" : "SIGINT");
}

static int
parse_ms(const char *name, const char *s, long *out)
{
	char *end;

	errno = 0;
	*out = strtol(s, &end, 10);
	if (errno || end == s || *end || *out < 0) {
		say("%s=%s: expected a number of milliseconds", name, s);
		return -1;
	}
	return 0;
}

static int
parse_ports(const char *var, const char *list, uint32_t **ports, size_t *nports)
{
	char *copy = strdup(list), *save = NULL, *tok;

	if (!copy)
		return -1;
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *end;
		unsigned long v;
		uint32_t *grown;

		errno = 0;
		v = strtoul(tok, &end, 10);
		if (errno || end == tok || *end || v > UINT32_MAX) {
			say("%s: \"%s\" is not a port number", var, tok);
			free(copy);
			return -1;
		}
		grown = realloc(*ports, (*nports + 1) * sizeof(*grown));
		if (!grown) {
			free(copy);
			return -1;
		}
		*ports = grown;
		(*ports)[(*nports)++] = (uint32_t)v;
	}
	free(copy);
	return 0;
}

static int
read_env(struct fc_double *fc)
{
	const char *v;

	fc->ctrlaltdel_ms = 100;
	fc->exit_after_start_ms = -1;
	if ((v = getenv("FC_DOUBLE_CTRLALTDEL_DELAY_MS")) && *v) {
		if (strcmp(v, "never") == 0)
			fc->ctrlaltdel_ms = -1;
		else if (parse_ms("FC_DOUBLE_CTRLALTDEL_DELAY_MS", v, &fc->ctrlaltdel_ms) < 0)
			return -1;
	}
	if ((v = getenv("FC_DOUBLE_EXIT_AFTER_START_MS")) && *v &&
	    parse_ms("FC_DOUBLE_EXIT_AFTER_START_MS", v, &fc->exit_after_start_ms) < 0)
		return -1;
	if ((v = getenv("FC_DOUBLE_VSOCK_PORTS")) && *v &&
	    parse_ports("FC_DOUBLE_VSOCK_PORTS", v, &fc->ports, &fc->nports) < 0)
		return -1;
	if ((v = getenv("FC_DOUBLE_AGENT_PORTS")) && *v &&
	    parse_ports("FC_DOUBLE_AGENT_PORTS", v, &fc->agent_ports, &fc->nagent_ports) < 0)
		return -1;
	if ((v = getenv("FC_DOUBLE_G2H_PORTS")) && *v &&
	    parse_ports("FC_DOUBLE_G2H_PORTS", v, &fc->g2h_ports, &fc->ng2h_ports) < 0)
		return -1;
	if (fc->ng2h_ports > G2H_MAX) {
		say("FC_DOUBLE_G2H_PORTS: at most %d ports", G2H_MAX);
		return -1;
	}
	fc->ignore_sigterm = (v = getenv("FC_DOUBLE_IGNORE_SIGTERM")) && strcmp(v, "1") == 0;
	fc->require_machine_config =
		(v = getenv("FC_DOUBLE_REQUIRE_MACHINE_CONFIG")) && strcmp(v, "1") == 0;
	if ((v = getenv("FC_DOUBLE_FAIL_PATH")) && *v)
		fc->fail_path = v;
	return 0;
}

/* Firecracker's instance id rule: 1-64 characters, alphanumeric or '-'. */
static bool
valid_instance_id(const char *id)
{
	size_t n = strlen(id);

	if (n == 0 || n > 64)
		return false;
	for (; *id; id++)
		if (!isalnum((unsigned char)*id) && *id != '-')
			return false;
	return true;
}

static void
usage(FILE *f)
{
	fprintf(f,
		"usage: fc-double --api-sock PATH [--id NAME] [--version]\n"
		"  accepted and ignored: --log-path, --level, --module, --show-level, --show-log-origin,\n"
		"  --boot-timer, --metrics-path, --seccomp-filter, --no-seccomp, --start-time-us,\n"
		"  --start-time-cpu-us, --parent-cpu-time-us, --http-api-max-payload-size,\n"
		"  --mmds-size-limit, --enable-pci\n"
		"environment:\n"
		"  FC_DOUBLE_LOG=PATH                    request log (default <api-sock>.requests.jsonl)\n"
		"  FC_DOUBLE_VSOCK_PORTS=P[,P...]        guest ports that accept CONNECT (echo)\n"
		"  FC_DOUBLE_AGENT_PORTS=P[,P...]        guest ports with a scripted ember-agent\n"
		"                                        (ping, info, exec, poweroff; wins over echo)\n"
		"  FC_DOUBLE_G2H_PORTS=P[,P...]          on SIGUSR1 the running guest connects to host\n"
		"                                        port P (<uds_path>_P) and says what came of it\n"
		"  FC_DOUBLE_CTRLALTDEL_DELAY_MS=N|never exit N ms after SendCtrlAltDel (default 100)\n"
		"  FC_DOUBLE_IGNORE_SIGTERM=1            only SIGKILL stops the process\n"
		"  FC_DOUBLE_EXIT_AFTER_START_MS=N       exit 1 N ms after InstanceStart\n"
		"  FC_DOUBLE_FAIL_PATH=/path             that path always answers 400\n"
		"  FC_DOUBLE_REQUIRE_MACHINE_CONFIG=1    InstanceStart needs PUT /machine-config first\n");
}

enum {
	OPT_API_SOCK = 256, OPT_ID, OPT_VERSION, OPT_CONFIG_FILE, OPT_NO_API, OPT_IGNORED_ARG,
	OPT_IGNORED_FLAG, OPT_HELP,
};

int
main(int argc, char **argv)
{
	static const struct option options[] = {
		{ "api-sock", required_argument, NULL, OPT_API_SOCK },
		{ "id", required_argument, NULL, OPT_ID },
		{ "version", no_argument, NULL, OPT_VERSION },
		{ "help", no_argument, NULL, OPT_HELP },
		{ "config-file", required_argument, NULL, OPT_CONFIG_FILE },
		{ "no-api", no_argument, NULL, OPT_NO_API },
		{ "log-path", required_argument, NULL, OPT_IGNORED_ARG },
		{ "level", required_argument, NULL, OPT_IGNORED_ARG },
		{ "module", required_argument, NULL, OPT_IGNORED_ARG },
		{ "metrics-path", required_argument, NULL, OPT_IGNORED_ARG },
		{ "seccomp-filter", required_argument, NULL, OPT_IGNORED_ARG },
		{ "start-time-us", required_argument, NULL, OPT_IGNORED_ARG },
		{ "start-time-cpu-us", required_argument, NULL, OPT_IGNORED_ARG },
		{ "parent-cpu-time-us", required_argument, NULL, OPT_IGNORED_ARG },
		{ "http-api-max-payload-size", required_argument, NULL, OPT_IGNORED_ARG },
		{ "mmds-size-limit", required_argument, NULL, OPT_IGNORED_ARG },
		{ "show-level", no_argument, NULL, OPT_IGNORED_FLAG },
		{ "show-log-origin", no_argument, NULL, OPT_IGNORED_FLAG },
		{ "boot-timer", no_argument, NULL, OPT_IGNORED_FLAG },
		{ "no-seccomp", no_argument, NULL, OPT_IGNORED_FLAG },
		{ "enable-pci", no_argument, NULL, OPT_IGNORED_FLAG },
		{ NULL, 0, NULL, 0 },
	};
	struct fc_double fc = { .exit_code = 1, .vcpu_count = 1, .mem_size_mib = FC_DEFAULT_MEM_MIB,
				.huge_pages = "None", .next_host_port = VSOCK_FIRST_HOST_PORT };
	const char *api_sock = NULL, *id = FC_DEFAULT_ID, *log_path;
	char *default_log = NULL;
	struct evconnlistener *api_listener;
	int opt, fd;

	TAILQ_INIT(&fc.conns);
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":", options, NULL)) != -1) {
		switch (opt) {
		case OPT_API_SOCK:
			api_sock = optarg;
			break;
		case OPT_ID:
			id = optarg;
			break;
		case OPT_VERSION:
			printf("Firecracker v" FC_VERSION "\n");
			return 0;
		case OPT_HELP:
			usage(stderr);
			return 0;
		case OPT_CONFIG_FILE:
			say("--config-file is not supported by the double (ember configures Firecracker "
			    "through the API only)");
			return 1;
		case OPT_NO_API:
			say("--no-api is not supported by the double: it serves the API only");
			return 1;
		case OPT_IGNORED_ARG:
		case OPT_IGNORED_FLAG:
			break;
		case ':':
			say("option %s needs a value", argv[optind - 1]);
			usage(stderr);
			return 1;
		default:
			say("unknown option %s", argv[optind - 1]);
			usage(stderr);
			return 1;
		}
	}
	if (optind < argc) {
		say("unexpected argument \"%s\"", argv[optind]);
		usage(stderr);
		return 1;
	}
	if (!api_sock || !*api_sock) {
		say("--api-sock PATH is required");
		usage(stderr);
		return 1;
	}
	if (!valid_instance_id(id)) {
		say("Invalid instance ID: \"%s\" (1-64 characters, alphanumeric or '-')", id);
		return 1;
	}
	if (read_env(&fc) < 0)
		return 1;
	signal(SIGPIPE, SIG_IGN);

	log_path = getenv("FC_DOUBLE_LOG");
	if (!log_path || !*log_path) {
		if (asprintf(&default_log, "%s.requests.jsonl", api_sock) < 0)
			return 1;
		log_path = default_log;
	}
	fc.log = fopen(log_path, "ae");
	if (!fc.log) {
		say("cannot open the request log %s: %s", log_path, strerror(errno));
		free(default_log);
		free(fc.ports);
		free(fc.agent_ports);
		free(fc.g2h_ports);
		return 1;
	}
	fc.id = strdup(id);
	fc.base = event_base_new();
	fc.http = fc.base ? evhttp_new(fc.base) : NULL;
	fc.reaper = fc.base ? event_new(fc.base, -1, 0, reap_cb, &fc) : NULL;
	fc.shutdown_timer = fc.base ? evtimer_new(fc.base, shutdown_timer_cb, &fc) : NULL;
	fc.crash_timer = fc.base ? evtimer_new(fc.base, crash_timer_cb, &fc) : NULL;
	fc.sigterm = fc.base ? evsignal_new(fc.base, SIGTERM, signal_cb, &fc) : NULL;
	fc.sigint = fc.base ? evsignal_new(fc.base, SIGINT, signal_cb, &fc) : NULL;
	fc.sigusr1 = fc.base ? evsignal_new(fc.base, SIGUSR1, g2h_signal_cb, &fc) : NULL;
	if (!fc.id || !fc.http || !fc.reaper || !fc.shutdown_timer || !fc.crash_timer || !fc.sigterm ||
	    !fc.sigint || !fc.sigusr1) {
		say("out of memory setting up the event loop");
		goto out;
	}
	evsignal_add(fc.sigterm, NULL);
	evsignal_add(fc.sigint, NULL);
	evsignal_add(fc.sigusr1, NULL);

	/* Firecracker refuses an API socket path that already exists; so do we. */
	fd = unix_listen(api_sock, &fc.api);
	if (fd < 0) {
		say("Failed to open the API socket at %s: %s", api_sock, strerror(-fd));
		goto out;
	}
	api_listener = evconnlistener_new(fc.base, NULL, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
					  -1, fd);
	if (!api_listener || !evhttp_bind_listener(fc.http, api_listener)) {
		say("cannot serve HTTP on %s", api_sock);
		if (api_listener)
			evconnlistener_free(api_listener);
		else
			close(fd);
		goto out;
	}
	evhttp_set_max_body_size(fc.http, FC_MAX_PAYLOAD);
	evhttp_set_allowed_methods(fc.http, EVHTTP_REQ_GET | EVHTTP_REQ_PUT | EVHTTP_REQ_PATCH |
				   EVHTTP_REQ_POST | EVHTTP_REQ_DELETE | EVHTTP_REQ_HEAD | EVHTTP_REQ_OPTIONS);
	evhttp_set_gencb(fc.http, request_cb, &fc);
	say("Firecracker v" FC_VERSION " double: instance %s serving the API on %s (log %s)",
	    fc.id, api_sock, log_path);
	say_credentials();

	fc.exit_code = 0;
	event_base_dispatch(fc.base);

out:
	g2h_free_all(&fc);
	vsock_close(&fc);
	if (fc.http)
		evhttp_free(fc.http);
	owned_socket_remove(&fc.api);
	free(fc.boot_args);
	while (fc.drives) {
		struct drive *d = fc.drives;

		fc.drives = d->next;
		free(d->id);
		free(d);
	}
	if (fc.reaper)
		event_free(fc.reaper);
	if (fc.shutdown_timer)
		event_free(fc.shutdown_timer);
	if (fc.crash_timer)
		event_free(fc.crash_timer);
	if (fc.sigterm)
		event_free(fc.sigterm);
	if (fc.sigint)
		event_free(fc.sigint);
	if (fc.sigusr1)
		event_free(fc.sigusr1);
	if (fc.base)
		event_base_free(fc.base);
	fclose(fc.log);
	free(fc.id);
	free(fc.ports);
	free(fc.agent_ports);
	free(fc.g2h_ports);
	free(default_log);
	return fc.exit_code;
}
