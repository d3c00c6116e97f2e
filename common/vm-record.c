/*
 * The VM record and its JSON form (daemon/API.md, "The VM record"). The same
 * object is the API answer and, with "version" added by the daemon, the
 * contents of vm.json. Reading is strict about types and lenient about keys:
 * a newer ember may add fields, but a field we know must have the right type.
 */
#include <arpa/inet.h>
#include <sys/random.h>

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "validate.h"
#include "vm-record.h"

static const char *const vm_status_names[VM_STATUS__COUNT] = {
	[VM_CREATED] = "created",
	[VM_STARTING] = "starting",
	[VM_RUNNING] = "running",
	[VM_PAUSED] = "paused",
	[VM_STOPPING] = "stopping",
	[VM_STOPPED] = "stopped",
	[VM_FAILED] = "failed",
};

const char *
vm_status_name(enum vm_status status)
{
	if ((unsigned)status >= VM_STATUS__COUNT)
		return "unknown";
	return vm_status_names[status];
}

int
vm_status_parse(const char *name, enum vm_status *status)
{
	if (name == NULL)
		return -EINVAL;
	for (int i = 0; i < VM_STATUS__COUNT; i++) {
		if (strcmp(name, vm_status_names[i]) == 0) {
			if (status != NULL)
				*status = (enum vm_status)i;
			return 0;
		}
	}
	return -EINVAL;
}

/* The optional strings, so clear, copy and JSON cannot miss one. */
static const struct {
	const char *key;
	size_t off;
} str_fields[] = {
	{ "reason", offsetof(struct vm_record, reason) },
	{ "backend", offsetof(struct vm_record, backend) },
	{ "image", offsetof(struct vm_record, image) },
	{ "kernel_path", offsetof(struct vm_record, kernel_path) },
	{ "initrd_path", offsetof(struct vm_record, initrd_path) },
	{ "disk_path", offsetof(struct vm_record, disk_path) },
	{ "boot_args", offsetof(struct vm_record, boot_args) },
	{ "network", offsetof(struct vm_record, network) },
	{ "parent_vm", offsetof(struct vm_record, parent_vm) },
	/* Last: it lives inside "vsock", not at the top level. */
	{ "uds_path", offsetof(struct vm_record, uds_path) },
};
#define N_STR_FIELDS (sizeof(str_fields) / sizeof(str_fields[0]))
#define STR_AT(rec, i) (*(char **)((char *)(rec) + str_fields[i].off))
#define CSTR_AT(rec, i) \
	(*(const char *const *)((const char *)(rec) + str_fields[i].off))

void
vm_record_init(struct vm_record *rec)
{
	memset(rec, 0, sizeof(*rec));
	rec->status = VM_CREATED;
	rec->net.tap_fd = -1;
}

void
vm_record_clear(struct vm_record *rec)
{
	if (rec == NULL)
		return;
	for (size_t i = 0; i < N_STR_FIELDS; i++)
		free(STR_AT(rec, i));
	vm_record_init(rec);
}

int
vm_record_set_str(char **field, const char *value)
{
	char *copy = NULL;

	if (value != NULL && (copy = strdup(value)) == NULL)
		return -ENOMEM;
	free(*field);
	*field = copy;
	return 0;
}

/* dst is overwritten, not freed: pass an initialised or cleared record. */
int
vm_record_copy(struct vm_record *dst, const struct vm_record *src)
{
	if (dst == src)
		return 0;
	memcpy(dst, src, sizeof(*dst));
	dst->net.tap_fd = -1;		/* the source's, never shared */
	for (size_t i = 0; i < N_STR_FIELDS; i++)
		STR_AT(dst, i) = NULL;
	for (size_t i = 0; i < N_STR_FIELDS; i++) {
		if (CSTR_AT(src, i) == NULL)
			continue;
		if ((STR_AT(dst, i) = strdup(CSTR_AT(src, i))) == NULL) {
			vm_record_clear(dst);
			return -ENOMEM;
		}
	}
	return 0;
}

static int
set_str(json_t *obj, const char *key, const char *value)
{
	if (value == NULL)
		return 0;
	return json_object_set_new(obj, key, json_string(value));
}

static int
set_int(json_t *obj, const char *key, json_int_t value)
{
	return json_object_set_new(obj, key, json_integer(value));
}

int
vm_publish_parse(const char *s, struct vm_publish *p)
{
	char buf[64], *parts[3], *proto, *save = NULL, *tok;
	size_t n = 0;
	unsigned long v[2];
	struct in_addr in;

	if (s == NULL || strlen(s) >= sizeof(buf))
		return -EINVAL;
	snprintf(buf, sizeof(buf), "%s", s);
	memset(p, 0, sizeof(*p));
	if ((proto = strchr(buf, '/')) != NULL) {
		*proto++ = '\0';
		if (strcmp(proto, "udp") == 0)
			p->udp = true;
		else if (strcmp(proto, "tcp") != 0)
			return -EINVAL;
	}
	for (tok = strtok_r(buf, ":", &save); tok != NULL; tok = strtok_r(NULL, ":", &save)) {
		if (n == 3)
			return -EINVAL;
		parts[n++] = tok;
	}
	if (n < 2 || buf[0] == ':' || strstr(s, "::") != NULL)
		return -EINVAL;
	if (n == 3) {
		if (inet_pton(AF_INET, parts[0], &in) != 1)
			return -EINVAL;
		p->host_addr = ntohl(in.s_addr);
	}
	for (size_t i = 0; i < 2; i++) {
		const char *d = parts[n - 2 + i];
		char *end;
		if (d[0] < '1' || d[0] > '9' || strlen(d) > 5)
			return -EINVAL;
		v[i] = strtoul(d, &end, 10);
		if (*end != '\0' || v[i] < 1 || v[i] > 65535)
			return -EINVAL;
	}
	p->host_port = (uint16_t)v[0];
	p->guest_port = (uint16_t)v[1];
	return 0;
}

static void
ipv4_text(uint32_t a, char *buf, size_t len)
{
	snprintf(buf, len, "%u.%u.%u.%u", a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255);
}

json_t *
vm_publish_to_json(const struct vm_publish *p)
{
	char addr[16];

	ipv4_text(p->host_addr, addr, sizeof(addr));
	return json_pack("{s:s, s:i, s:i, s:s}", "host_addr", addr, "host_port",
	    (int)p->host_port, "guest_port", (int)p->guest_port, "proto", p->udp ? "udp" : "tcp");
}

/* "network": {"mode": ..., and for "nat" tap (while up), mac, addresses,
 * publish}. */
static json_t *
net_to_json(const struct vm_record *rec)
{
	json_t *o = json_pack("{s:s}", "mode", rec->network ? rec->network : "none"), *pub;
	char a[24];

	if (o == NULL || rec->net.subnet == 0)
		return o;
	if (rec->net.tap[0] != '\0')
		json_object_set_new(o, "tap", json_string(rec->net.tap));
	if (rec->net.mac[0] != '\0')
		json_object_set_new(o, "mac", json_string(rec->net.mac));
	ipv4_text(rec->net.subnet + 1, a, sizeof(a));
	strcat(a, "/30");
	json_object_set_new(o, "host_addr", json_string(a));
	ipv4_text(rec->net.subnet + 2, a, sizeof(a));
	strcat(a, "/30");
	json_object_set_new(o, "guest_addr", json_string(a));
	if ((pub = json_array()) != NULL) {
		for (size_t i = 0; i < rec->net.npublish; i++)
			json_array_append_new(pub, vm_publish_to_json(&rec->net.publish[i]));
		json_object_set_new(o, "publish", pub);
	}
	return o;
}

/* Reads net_to_json's object back (a record from before "nat" has a plain
 * string). Malformed parts are errors: the file is emberd's own. */
static int
net_from_json(struct vm_record *rec, const json_t *o, const char **mode, char *errbuf,
    size_t errlen)
{
	const char *tap, *mac, *addr;
	const json_t *pub, *e;
	struct in_addr in;
	size_t i;

	*mode = json_string_value(json_object_get(o, "mode"));
	if (*mode == NULL) {
		snprintf(errbuf, errlen, "field \"network.mode\": expected string");
		return -1;
	}
	tap = json_string_value(json_object_get(o, "tap"));
	mac = json_string_value(json_object_get(o, "mac"));
	addr = json_string_value(json_object_get(o, "host_addr"));
	/* the name goes into firewall scripts: "em-" and hex digits only */
	if (tap != NULL && (strlen(tap) >= sizeof(rec->net.tap) || strncmp(tap, "em-", 3) != 0 ||
	    strlen(tap) == 3 || strspn(tap + 3, "0123456789abcdef") != strlen(tap) - 3)) {
		snprintf(errbuf, errlen, "field \"network.tap\": not an ember TAP name");
		return -1;
	}
	if (mac != NULL && (strlen(mac) != 17 || strspn(mac, "0123456789abcdef:") != 17)) {
		snprintf(errbuf, errlen, "field \"network.mac\": not a MAC address");
		return -1;
	}
	if (addr != NULL) {
		char buf[20];
		snprintf(buf, sizeof(buf), "%s", addr);
		char *slash = strchr(buf, '/');
		if (slash == NULL || strcmp(slash, "/30") != 0)
			goto bad_addr;
		*slash = '\0';
		if (inet_pton(AF_INET, buf, &in) != 1 || (ntohl(in.s_addr) & 3) != 1)
			goto bad_addr;
		rec->net.subnet = ntohl(in.s_addr) - 1;
	}
	snprintf(rec->net.tap, sizeof(rec->net.tap), "%s", tap ? tap : "");
	snprintf(rec->net.mac, sizeof(rec->net.mac), "%s", mac ? mac : "");
	pub = json_object_get(o, "publish");
	json_array_foreach(pub, i, e) {
		struct vm_publish *p = &rec->net.publish[rec->net.npublish];
		const char *ha = json_string_value(json_object_get(e, "host_addr"));
		json_int_t hp = json_integer_value(json_object_get(e, "host_port"));
		json_int_t gp = json_integer_value(json_object_get(e, "guest_port"));
		const char *proto = json_string_value(json_object_get(e, "proto"));
		if (i >= VM_PUBLISH_MAX || ha == NULL || inet_pton(AF_INET, ha, &in) != 1 ||
		    hp < 1 || hp > 65535 || gp < 1 || gp > 65535 || proto == NULL ||
		    (strcmp(proto, "tcp") != 0 && strcmp(proto, "udp") != 0)) {
			snprintf(errbuf, errlen, "field \"network.publish\": entry %zu is invalid", i);
			return -1;
		}
		p->host_addr = ntohl(in.s_addr);
		p->host_port = (uint16_t)hp;
		p->guest_port = (uint16_t)gp;
		p->udp = strcmp(proto, "udp") == 0;
		rec->net.npublish++;
	}
	return 0;
bad_addr:
	snprintf(errbuf, errlen, "field \"network.host_addr\": not the host end of a /30");
	return -1;
}

json_t *
vm_record_to_json(const struct vm_record *rec)
{
	json_t *obj, *vsock;
	int r = 0;

	if ((obj = json_object()) == NULL)
		return NULL;
	r |= set_str(obj, "name", rec->name);
	r |= set_str(obj, "id", rec->id);
	r |= set_str(obj, "status", vm_status_name(rec->status));
	r |= set_str(obj, "reason", rec->reason);
	r |= set_str(obj, "backend", rec->backend);
	r |= set_str(obj, "image", rec->image);
	r |= set_int(obj, "cpus", rec->cpus);
	r |= set_int(obj, "memory_mib", (json_int_t)rec->memory_mib);
	if (rec->disk_size_mib != 0)
		r |= set_int(obj, "disk_size_mib", (json_int_t)rec->disk_size_mib);
	r |= set_str(obj, "kernel_path", rec->kernel_path);
	r |= set_str(obj, "initrd_path", rec->initrd_path);
	r |= set_str(obj, "disk_path", rec->disk_path);
	r |= set_str(obj, "boot_args", rec->boot_args);
	r |= json_object_set_new(obj, "network", net_to_json(rec));
	r |= set_int(obj, "pid", rec->pid);
	r |= set_int(obj, "pid_start_time", (json_int_t)rec->pid_start_time);
	if (rec->created_at[0] != '\0')
		r |= set_str(obj, "created_at", rec->created_at);
	r |= set_str(obj, "parent_vm", rec->parent_vm);
	r |= set_int(obj, "owner_uid", rec->owner_uid);
	if (rec->vsock) {
		if ((vsock = json_object()) == NULL)
			r = -1;
		else {
			r |= set_int(vsock, "guest_cid", rec->guest_cid);
			r |= set_str(vsock, "uds_path", rec->uds_path);
			r |= json_object_set_new(obj, "vsock", vsock);
		}
	}
	if (rec->workload_exit != WORKLOAD_EXIT_NONE) {
		json_t *w = json_pack("{s:i}", rec->workload_exit == WORKLOAD_EXIT_CODE ?
		    "code" : "signal", rec->workload_exit_value);
		if (w != NULL && rec->workload_exit_source != WORKLOAD_SOURCE_UNKNOWN)
			r |= set_str(w, "source", rec->workload_exit_source ==
			    WORKLOAD_SOURCE_AGENT ? "agent" : "console");
		if (w != NULL && rec->workload_exit_boot_id[0] != '\0')
			r |= set_str(w, "boot_id", rec->workload_exit_boot_id);
		r |= json_object_set_new(obj, "workload_exit", w);
	}
	if (rec->workload_console_from != 0)
		r |= json_object_set_new(obj, "workload_console_from",
		    json_integer((json_int_t)rec->workload_console_from));
	if (r != 0) {
		json_decref(obj);
		return NULL;
	}
	return obj;
}

/* The key in its object: "vsock.guest_cid" is "guest_cid" in "vsock". */
static const char *
leaf(const char *key)
{
	const char *dot = strrchr(key, '.');

	return dot != NULL ? dot + 1 : key;
}

/* Fills *out from key in obj; absent keys leave *out alone. -1 on a wrong type. */
static int
get_uint(const json_t *obj, const char *key, uint64_t max, uint64_t *out,
    char *errbuf, size_t errlen)
{
	json_t *v = json_object_get(obj, leaf(key));
	json_int_t n;

	if (v == NULL)
		return 0;
	if (!json_is_integer(v)) {
		snprintf(errbuf, errlen, "field \"%s\": expected integer", key);
		return -1;
	}
	n = json_integer_value(v);
	if (n < 0 || (uint64_t)n > max) {
		snprintf(errbuf, errlen, "field \"%s\": %lld is out of range "
		    "(0..%llu)", key, (long long)n, (unsigned long long)max);
		return -1;
	}
	*out = (uint64_t)n;
	return 0;
}

static int
get_str(const json_t *obj, const char *key, bool required, const char **out,
    char *errbuf, size_t errlen)
{
	json_t *v = json_object_get(obj, leaf(key));

	*out = NULL;
	if (v == NULL || json_is_null(v)) {
		if (!required)
			return 0;
		snprintf(errbuf, errlen, "missing field \"%s\"", key);
		return -1;
	}
	if (!json_is_string(v)) {
		snprintf(errbuf, errlen, "field \"%s\": expected string", key);
		return -1;
	}
	*out = json_string_value(v);
	return 0;
}

static bool
uuid_valid(const char *s)
{
	if (strlen(s) != 36)
		return false;
	for (int i = 0; i < 36; i++) {
		char c = s[i];

		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (c != '-')
				return false;
		} else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
		    (c >= 'A' && c <= 'F')))
			return false;
	}
	return true;
}

static int
from_json(struct vm_record *rec, const json_t *json, char *errbuf,
    size_t errlen)
{
	const json_t *vsock;
	const char *s;
	uint64_t n;

	if (!json_is_object(json)) {
		snprintf(errbuf, errlen, "expected a JSON object");
		return -1;
	}

	if (get_str(json, "name", true, &s, errbuf, errlen) < 0)
		return -1;
	if (!vm_name_valid(s)) {
		snprintf(errbuf, errlen, "field \"name\": invalid VM name");
		return -1;
	}
	snprintf(rec->name, sizeof(rec->name), "%s", s);

	if (get_str(json, "id", true, &s, errbuf, errlen) < 0)
		return -1;
	if (!uuid_valid(s)) {
		snprintf(errbuf, errlen, "field \"id\": expected a UUID");
		return -1;
	}
	snprintf(rec->id, sizeof(rec->id), "%s", s);

	if (get_str(json, "status", true, &s, errbuf, errlen) < 0)
		return -1;
	if (vm_status_parse(s, &rec->status) < 0) {
		snprintf(errbuf, errlen, "field \"status\": unknown status "
		    "\"%.32s\"", s);
		return -1;
	}

	if (get_str(json, "created_at", false, &s, errbuf, errlen) < 0)
		return -1;
	if (s != NULL) {
		if (strlen(s) >= sizeof(rec->created_at)) {
			snprintf(errbuf, errlen, "field \"created_at\": too long");
			return -1;
		}
		snprintf(rec->created_at, sizeof(rec->created_at), "%s", s);
	}

	for (size_t i = 0; i < N_STR_FIELDS - 1; i++) {
		const json_t *net = json_object_get(json, "network");
		if (str_fields[i].off == offsetof(struct vm_record, network) &&
		    json_is_object(net)) {
			if (net_from_json(rec, net, &s, errbuf, errlen) < 0)
				return -1;
		} else if (get_str(json, str_fields[i].key, false, &s, errbuf,
		    errlen) < 0)
			return -1;
		if (vm_record_set_str(&STR_AT(rec, i), s) < 0)
			goto nomem;
	}

	n = 0;
	if (get_uint(json, "cpus", UINT_MAX, &n, errbuf, errlen) < 0)
		return -1;
	rec->cpus = (unsigned)n;
	if (get_uint(json, "memory_mib", INT64_MAX, &rec->memory_mib, errbuf,
	    errlen) < 0)
		return -1;
	if (get_uint(json, "disk_size_mib", INT64_MAX, &rec->disk_size_mib, errbuf,
	    errlen) < 0)
		return -1;
	n = 0;
	if (get_uint(json, "pid", INT_MAX, &n, errbuf, errlen) < 0)
		return -1;
	rec->pid = (pid_t)n;
	if (get_uint(json, "pid_start_time", INT64_MAX, &rec->pid_start_time,
	    errbuf, errlen) < 0)
		return -1;
	n = 0;
	if (get_uint(json, "owner_uid", UINT32_MAX, &n, errbuf, errlen) < 0)
		return -1;
	rec->owner_uid = (uid_t)n;

	vsock = json_object_get(json, "vsock");
	if (vsock != NULL && !json_is_null(vsock)) {
		if (!json_is_object(vsock)) {
			snprintf(errbuf, errlen, "field \"vsock\": expected object");
			return -1;
		}
		if (json_object_get(vsock, "guest_cid") == NULL) {
			snprintf(errbuf, errlen, "missing field \"vsock.guest_cid\"");
			return -1;
		}
		n = 0;
		if (get_uint(vsock, "vsock.guest_cid", UINT32_MAX, &n, errbuf,
		    errlen) < 0)
			return -1;
		rec->guest_cid = (uint32_t)n;
		if (get_str(vsock, "vsock.uds_path", false, &s, errbuf, errlen) < 0)
			return -1;
		if (vm_record_set_str(&rec->uds_path, s) < 0)
			goto nomem;
		rec->vsock = true;
	}
	const json_t *wexit = json_object_get(json, "workload_exit");
	if (json_is_object(wexit)) {
		const json_t *code = json_object_get(wexit, "code");
		const json_t *sig = json_object_get(wexit, "signal");
		if (json_is_integer(code) && json_integer_value(code) >= 0 &&
		    json_integer_value(code) <= 255) {
			rec->workload_exit = WORKLOAD_EXIT_CODE;
			rec->workload_exit_value = (int)json_integer_value(code);
		} else if (json_is_integer(sig) && json_integer_value(sig) > 0 &&
		    json_integer_value(sig) < 128) {
			rec->workload_exit = WORKLOAD_EXIT_SIGNAL;
			rec->workload_exit_value = (int)json_integer_value(sig);
		}
		const char *src = json_string_value(json_object_get(wexit, "source"));
		const char *boot = json_string_value(json_object_get(wexit, "boot_id"));
		if (src != NULL && strcmp(src, "agent") == 0)
			rec->workload_exit_source = WORKLOAD_SOURCE_AGENT;
		else if (src != NULL && strcmp(src, "console") == 0)
			rec->workload_exit_source = WORKLOAD_SOURCE_CONSOLE;
		if (boot != NULL && strlen(boot) < sizeof(rec->workload_exit_boot_id) &&
		    strspn(boot, "0123456789abcdef-") == strlen(boot))
			snprintf(rec->workload_exit_boot_id, sizeof(rec->workload_exit_boot_id),
			    "%s", boot);
	}
	if (get_uint(json, "workload_console_from", INT64_MAX, &rec->workload_console_from,
	    errbuf, errlen) < 0)
		return -1;
	return 0;

nomem:
	snprintf(errbuf, errlen, "out of memory");
	return -ENOMEM;
}

/*
 * rec is overwritten, not freed: pass an initialised or cleared record. On
 * failure rec is left initialised (empty).
 */
int
vm_record_from_json(struct vm_record *rec, const json_t *json, char *errbuf,
    size_t errlen)
{
	char dummy[1];
	int r;

	if (errbuf == NULL || errlen == 0) {
		errbuf = dummy;
		errlen = sizeof(dummy);
	}
	errbuf[0] = '\0';
	vm_record_init(rec);
	if ((r = from_json(rec, json, errbuf, errlen)) < 0) {
		vm_record_clear(rec);
		return r == -ENOMEM ? -ENOMEM : -EINVAL;
	}
	return 0;
}

int
uuid_generate_v4(char out[37])
{
	unsigned char b[16];
	size_t got = 0;
	ssize_t n;

	while (got < sizeof(b)) {
		n = getrandom(b + got, sizeof(b) - got, 0);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		got += (size_t)n;
	}
	b[6] = (b[6] & 0x0f) | 0x40;	/* version 4 */
	b[8] = (b[8] & 0x3f) | 0x80;	/* RFC 4122 variant */
	snprintf(out, 37,
	    "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
	    "%02x%02x%02x%02x%02x%02x",
	    b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
	    b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
	return 0;
}

void
rfc3339_now(char out[32])
{
	struct tm tm;
	time_t now;

	now = time(NULL);
	if (gmtime_r(&now, &tm) == NULL ||
	    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(out, 32, "1970-01-01T00:00:00Z");
}
