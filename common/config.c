/*
 * The daemon configuration: built-in defaults, the key table for
 * emberd.yaml (walked by yaml-doc.c) and the helper that fills vm.create
 * parameters from the configured defaults. A file is parsed into a copy of
 * the current configuration, which replaces it only when the whole file is
 * valid, so a bad reload leaves the running configuration alone.
 *
 * String fields either point at the built-in "auto" below or are heap
 * copies; config_free_string() knows which is which.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "net-pool.h"
#include "spec.h"
#include "yaml-doc.h"

#define CID_MIN	3
#define CID_MAX	4294967294U	/* VMADDR_CID_ANY - 1 */

static char builtin_auto[] = "auto";

static const char *const log_levels[] = { "error", "warn", "info", "debug",
    NULL };

const char *ember_config_backend_choices[EMBER_CONFIG_BACKENDS_MAX + 2] = { "auto", NULL };
static struct ember_config_backend registered[EMBER_CONFIG_BACKENDS_MAX];
static size_t nregistered;

static void
config_free_string(char **field)
{
	if (*field != builtin_auto)
		free(*field);
	*field = NULL;
}

static int
config_set_string(char **field, const char *value)
{
	char *copy = NULL;

	if (value != NULL && (copy = strdup(value)) == NULL)
		return -ENOMEM;
	config_free_string(field);
	*field = copy;
	return 0;
}

void
ember_config_init(struct ember_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->log_level = -1;
	cfg->cid_min = CID_MIN;
	cfg->cid_max = CID_MAX;
	cfg->default_cpus = 1;
	cfg->default_memory_mib = 512;
	cfg->default_backend = builtin_auto;
	cfg->vsock_vm_to_vm = true;
	net_cidr_parse(NET_POOL_DEFAULT, &cfg->net_pool_base, &cfg->net_pool_prefix);
	cfg->max_batch = CONFIG_MAX_BATCH_DEFAULT;
	cfg->quota_default = (struct ember_quota){
		.vms = QUOTA_DEFAULT_VMS, .vcpus = QUOTA_DEFAULT_VCPUS,
		.memory_mib = QUOTA_DEFAULT_MEMORY_MIB,
		.disk_mib = QUOTA_DEFAULT_DISK_MIB, .cids = QUOTA_DEFAULT_CIDS,
		.connections = QUOTA_DEFAULT_CONNECTIONS,
	};
}

void
ember_config_clear(struct ember_config *cfg)
{
	config_free_string(&cfg->state_dir);
	config_free_string(&cfg->socket);
	config_free_string(&cfg->socket_group);
	config_free_string(&cfg->default_image);
	config_free_string(&cfg->default_backend);
	config_free_string(&cfg->metrics_listen);
	config_free_string(&cfg->net_resolv_conf);
	json_decref(cfg->backend_sections);
	free(cfg->quota_users);
	memset(cfg, 0, sizeof(*cfg));
	cfg->log_level = -1;
}

/* Deep copy; built-in strings stay shared. */
static int
config_copy(struct ember_config *dst, const struct ember_config *src)
{
	char **dfields[] = { &dst->state_dir, &dst->socket, &dst->socket_group,
	    &dst->default_image, &dst->default_backend, &dst->metrics_listen,
	    &dst->net_resolv_conf };
	char *const sfields[] = { src->state_dir, src->socket,
	    src->socket_group, src->default_image, src->default_backend,
	    src->metrics_listen, src->net_resolv_conf };

	*dst = *src;
	for (size_t i = 0; i < sizeof(dfields) / sizeof(dfields[0]); i++)
		*dfields[i] = NULL;
	dst->quota_users = NULL;
	dst->backend_sections = NULL;
	if (src->backend_sections != NULL &&
	    (dst->backend_sections = json_deep_copy(src->backend_sections)) == NULL) {
		dst->nquota_users = 0;
		ember_config_clear(dst);
		return -ENOMEM;
	}
	if (src->nquota_users > 0) {
		dst->quota_users = calloc(src->nquota_users, sizeof(*dst->quota_users));
		if (dst->quota_users == NULL) {
			dst->nquota_users = 0;
			ember_config_clear(dst);
			return -ENOMEM;
		}
		memcpy(dst->quota_users, src->quota_users,
		    src->nquota_users * sizeof(*dst->quota_users));
	}
	for (size_t i = 0; i < sizeof(dfields) / sizeof(dfields[0]); i++) {
		if (sfields[i] == builtin_auto)
			*dfields[i] = sfields[i];
		else if (config_set_string(dfields[i], sfields[i]) != 0) {
			ember_config_clear(dst);
			return -ENOMEM;
		}
	}
	return 0;
}

struct config_parse {
	struct ember_config *cfg;
	const struct ydoc_node *cid_min, *cid_max;	/* where they were set */
	const struct ydoc *doc;
	struct ember_error *err;
	struct ember_quota *quota;	/* the quota being walked */
};

#define CONFIG_STRING(name, field)					\
static int								\
set_##name(void *obj, const struct ydoc_value *v)			\
{									\
	return config_set_string(&((struct config_parse *)obj)->cfg->field, \
	    v->str);							\
}
CONFIG_STRING(state_dir, state_dir)
CONFIG_STRING(socket, socket)
CONFIG_STRING(socket_group, socket_group)
CONFIG_STRING(default_image, default_image)
CONFIG_STRING(default_backend, default_backend)
#undef CONFIG_STRING

int
ember_listen_parse(const char *text, struct ember_listen_addr *out)
{
	char host[64], *end;
	const char *colon;
	unsigned long port;
	size_t n;

	memset(out, 0, sizeof(*out));
	if (strncmp(text, "unix:", 5) == 0) {
		text += 5;
		if (text[0] != '/' || strlen(text) >= sizeof(out->path))
			return -EINVAL;
		out->family = AF_UNIX;
		snprintf(out->path, sizeof(out->path), "%s", text);
		return 0;
	}
	if ((colon = strrchr(text, ':')) == NULL || colon[1] < '0' || colon[1] > '9')
		return -EINVAL;
	errno = 0;
	port = strtoul(colon + 1, &end, 10);
	if (errno != 0 || *end != '\0' || port < 1 || port > 65535)
		return -EINVAL;
	n = (size_t)(colon - text);
	if (n >= 2 && text[0] == '[' && text[n - 1] == ']') {
		text++;
		n -= 2;
		out->family = AF_INET6;
	} else {
		out->family = AF_INET;
	}
	if (n == 0 || n >= sizeof(host))
		return -EINVAL;
	memcpy(host, text, n);
	host[n] = '\0';
	if (inet_pton(out->family, host, out->addr) != 1)
		return -EINVAL;
	out->port = (unsigned)port;
	return 0;
}

static int
set_metrics_listen(void *obj, const struct ydoc_value *v)
{
	struct config_parse *cp = obj;
	struct ember_listen_addr addr;

	if (ember_listen_parse(v->str, &addr) < 0) {
		ydoc_error(cp->doc, v->node, cp->err, "\"metrics.listen\": \"%s\" is not "
		    "ADDRESS:PORT with a numeric IPv4 or [IPv6] address, nor unix:/ABSOLUTE/PATH "
		    "(at most 107 bytes)", v->str);
		return -EINVAL;
	}
	return config_set_string(&cp->cfg->metrics_listen, v->str);
}

static const struct ydoc_key metrics_keys[] = {
	{ "listen", YDOC_STRING, 0, 0, 0, NULL, set_metrics_listen, NULL },
	{ NULL, 0, 0, 0, 0, NULL, NULL, NULL }
};

static int
set_log_level(void *obj, const struct ydoc_value *v)
{
	struct config_parse *cp = obj;

	cp->cfg->log_level = log_level_parse(v->str);
	return cp->cfg->log_level == -1 ? -EINVAL : 0;
}

static int
set_cid_min(void *obj, const struct ydoc_value *v)
{
	struct config_parse *cp = obj;

	cp->cfg->cid_min = (uint32_t)v->u;
	cp->cid_min = v->node;
	return 0;
}

static int
set_cid_max(void *obj, const struct ydoc_value *v)
{
	struct config_parse *cp = obj;

	cp->cfg->cid_max = (uint32_t)v->u;
	cp->cid_max = v->node;
	return 0;
}

static int
set_default_cpus(void *obj, const struct ydoc_value *v)
{
	((struct config_parse *)obj)->cfg->default_cpus = (unsigned)v->u;
	return 0;
}

static int
set_default_memory(void *obj, const struct ydoc_value *v)
{
	((struct config_parse *)obj)->cfg->default_memory_mib = v->u;
	return 0;
}

static int
set_vm_to_vm(void *obj, const struct ydoc_value *v)
{
	((struct config_parse *)obj)->cfg->vsock_vm_to_vm = v->b;
	return 0;
}

static const struct ydoc_key defaults_keys[] = {
	{ "cpus", YDOC_UINT, 0, VM_SPEC_CPUS_MIN, VM_SPEC_CPUS_MAX, NULL,
	    set_default_cpus, NULL },
	{ "memory", YDOC_SIZE_MIB, 0, VM_SPEC_MEMORY_MIB_MIN,
	    VM_SPEC_MEMORY_MIB_MAX, NULL, set_default_memory, NULL },
	{ "backend", YDOC_ENUM, 0, 0, 0, ember_config_backend_choices,
	    set_default_backend, NULL },
	{ NULL, 0, 0, 0, 0, NULL, NULL, NULL }
};

static const struct ydoc_key vsock_keys[] = {
	{ "vm_to_vm", YDOC_BOOL, 0, 0, 0, NULL, set_vm_to_vm, NULL },
	{ NULL, 0, 0, 0, 0, NULL, NULL, NULL }
};

static int
set_net_pool(void *obj, const struct ydoc_value *v)
{
	struct config_parse *cp = obj;

	if (net_cidr_parse(v->str, &cp->cfg->net_pool_base, &cp->cfg->net_pool_prefix) < 0) {
		ydoc_error(cp->doc, v->node, cp->err, "\"network.pool\": expected an IPv4 "
		    "network A.B.C.D/P with P from %d to %d and no host bits, got \"%.64s\"",
		    NET_POOL_PREFIX_MIN, NET_POOL_PREFIX_MAX, v->str);
		return -EINVAL;
	}
	return 0;
}

static int
set_net_same_owner(void *obj, const struct ydoc_value *v)
{
	((struct config_parse *)obj)->cfg->net_allow_same_owner = v->b;
	return 0;
}

static int
set_net_resolv_conf(void *obj, const struct ydoc_value *v)
{
	return config_set_string(&((struct config_parse *)obj)->cfg->net_resolv_conf, v->str);
}

/* allow_host_ports: a list of ports, each N (TCP and UDP), N/tcp or N/udp. */
static int
set_net_host_ports(void *obj, const struct ydoc_value *v)
{
	struct config_parse *cp = obj;
	struct ember_config *cfg = cp->cfg;
	const struct ydoc_node *seq = v->node;

	cfg->net_nhost_ports = 0;
	if (ydoc_node_is_null(seq))
		return 0;
	if (seq->type != YDOC_SEQUENCE) {
		ydoc_error(cp->doc, seq, cp->err,
		    "\"network.allow_host_ports\": expected a list of ports");
		return -EINVAL;
	}
	if (seq->nitems > CONFIG_HOST_PORTS_MAX) {
		ydoc_error(cp->doc, seq, cp->err,
		    "\"network.allow_host_ports\": at most %d ports", CONFIG_HOST_PORTS_MAX);
		return -EINVAL;
	}
	for (size_t i = 0; i < seq->nitems; i++) {
		const struct ydoc_node *n = seq->items[i];
		struct ember_host_port *hp = &cfg->net_host_ports[i];
		unsigned long port = 0;
		size_t d = 0;

		if (n->type != YDOC_SCALAR)
			goto bad;
		for (; d < n->len && d < 6 && n->value[d] >= '0' && n->value[d] <= '9'; d++)
			port = port * 10 + (unsigned long)(n->value[d] - '0');
		if (d == 0 || d > 5 || n->value[0] == '0' || port < 1 || port > 65535)
			goto bad;
		hp->port = (uint16_t)port;
		hp->tcp = hp->udp = true;
		if (strcmp(n->value + d, "/tcp") == 0)
			hp->udp = false;
		else if (strcmp(n->value + d, "/udp") == 0)
			hp->tcp = false;
		else if (n->value[d] != '\0' || !n->plain)
			goto bad;
		cfg->net_nhost_ports = i + 1;
		continue;
bad:
		ydoc_error(cp->doc, n, cp->err, "\"network.allow_host_ports\": expected a "
		    "port 1-65535, optionally with /tcp or /udp");
		return -EINVAL;
	}
	return 0;
}

static const struct ydoc_key network_keys[] = {
	{ "pool", YDOC_STRING, 0, 0, 0, NULL, set_net_pool, NULL },
	{ "allow_same_owner", YDOC_BOOL, 0, 0, 0, NULL, set_net_same_owner, NULL },
	{ "allow_host_ports", YDOC_NODE, 0, 0, 0, NULL, set_net_host_ports, NULL },
	{ "resolv_conf", YDOC_STRING, YDOC_ABSOLUTE, 0, 0, NULL, set_net_resolv_conf, NULL },
	{ NULL, 0, 0, 0, 0, NULL, NULL, NULL }
};

static int
set_max_connections(void *obj, const struct ydoc_value *v)
{
	((struct config_parse *)obj)->cfg->max_connections = (unsigned)v->u;
	return 0;
}

static int
set_max_batch(void *obj, const struct ydoc_value *v)
{
	((struct config_parse *)obj)->cfg->max_batch = (unsigned)v->u;
	return 0;
}

static int
set_reply_high_water(void *obj, const struct ydoc_value *v)
{
	((struct config_parse *)obj)->cfg->reply_high_water = v->u;
	return 0;
}

static int
set_events_ring(void *obj, const struct ydoc_value *v)
{
	((struct config_parse *)obj)->cfg->events_ring = (unsigned)v->u;
	return 0;
}

static const struct ydoc_key limits_keys[] = {
	{ "max_connections", YDOC_UINT, 0, 1, 1000000, NULL, set_max_connections,
	    NULL },
	{ "max_batch", YDOC_UINT, 0, 1, CONFIG_MAX_BATCH_MAX, NULL, set_max_batch,
	    NULL },
	{ "reply_high_water", YDOC_SIZE, 0, 64 * 1024, 1024ULL * 1024 * 1024,
	    NULL, set_reply_high_water, NULL },
	{ "events_ring", YDOC_UINT, 0, 16, 1048576, NULL, set_events_ring, NULL },
	{ NULL, 0, 0, 0, 0, NULL, NULL, NULL }
};

#define QUOTA_SETTER(name, field)					\
static int								\
set_quota_##name(void *obj, const struct ydoc_value *v)		\
{									\
	((struct config_parse *)obj)->quota->field = v->u;		\
	return 0;							\
}
QUOTA_SETTER(vms, vms)
QUOTA_SETTER(vcpus, vcpus)
QUOTA_SETTER(memory, memory_mib)
QUOTA_SETTER(disk, disk_mib)
QUOTA_SETTER(cids, cids)
QUOTA_SETTER(connections, connections)
#undef QUOTA_SETTER

static const struct ydoc_key quota_keys[] = {
	{ "vms", YDOC_UINT, 0, 0, 1000000, NULL, set_quota_vms, NULL },
	{ "vcpus", YDOC_UINT, 0, 0, 1000000, NULL, set_quota_vcpus, NULL },
	{ "memory", YDOC_SIZE_MIB, 0, 0, UINT64_MAX, NULL, set_quota_memory,
	    NULL },
	{ "disk", YDOC_SIZE_MIB, 0, 0, UINT64_MAX, NULL, set_quota_disk, NULL },
	{ "cids", YDOC_UINT, 0, 0, 4294967295ULL, NULL, set_quota_cids, NULL },
	{ "connections", YDOC_UINT, 0, 1, 1000000, NULL, set_quota_connections,
	    NULL },
	{ NULL, 0, 0, 0, 0, NULL, NULL, NULL }
};

/* A key of quotas.users: a user name or a numeric uid. */
static int
quota_user_uid(struct config_parse *cp, const struct ydoc_node *key, uid_t *uid)
{
	char *end;
	unsigned long n;
	struct passwd *pw;

	if (key->type != YDOC_SCALAR || key->len == 0 || strlen(key->value) != key->len)
		return ydoc_error(cp->doc, key, cp->err,
		    "\"quotas.users\": expected a user name or uid as the key");
	errno = 0;
	n = strtoul(key->value, &end, 10);
	if (key->value[0] >= '0' && key->value[0] <= '9' && *end == '\0' && errno == 0 &&
	    n <= 0xfffffffeUL)
		*uid = (uid_t)n;
	else if ((pw = getpwnam(key->value)) != NULL)
		*uid = pw->pw_uid;
	else
		return ydoc_error(cp->doc, key, cp->err,
		    "\"quotas.users\": no user \"%s\" on this host", key->value);
	if (*uid == 0)
		return ydoc_error(cp->doc, key, cp->err,
		    "\"quotas.users\": root has no quota; remove \"%s\"", key->value);
	return 0;
}

/* quotas.users replaces the whole list; unset keys are UINT64_MAX until
 * config_from_doc fills them from quotas.default. */
static int
set_quota_users(void *obj, const struct ydoc_value *v)
{
	struct config_parse *cp = obj;
	struct ember_config *cfg = cp->cfg;
	const struct ydoc_node *map = v->node;
	size_t n;

	free(cfg->quota_users);
	cfg->quota_users = NULL;
	cfg->nquota_users = 0;
	if (ydoc_node_is_null(map))
		return 0;
	if (map->type != YDOC_MAPPING) {
		ydoc_error(cp->doc, map, cp->err,
		    "\"quotas.users\": expected a mapping of user names to quotas");
		return -EINVAL;
	}
	n = map->nitems / 2;
	if (n > CONFIG_QUOTA_USERS_MAX) {
		ydoc_error(cp->doc, map, cp->err,
		    "\"quotas.users\": at most %d users", CONFIG_QUOTA_USERS_MAX);
		return -EINVAL;
	}
	if (n == 0)
		return 0;
	if ((cfg->quota_users = calloc(n, sizeof(*cfg->quota_users))) == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		struct ember_user_quota *u = &cfg->quota_users[i];
		const struct ydoc_node *key = map->items[2 * i];
		const struct ydoc_node *val = map->items[2 * i + 1];

		if (quota_user_uid(cp, key, &u->uid) < 0)
			return -EINVAL;
		for (size_t j = 0; j < i; j++)
			if (cfg->quota_users[j].uid == u->uid) {
				ydoc_error(cp->doc, key, cp->err, "\"quotas.users\": "
				    "uid %u is listed twice", (unsigned)u->uid);
				return -EINVAL;
			}
		memset(&u->quota, 0xff, sizeof(u->quota));
		cfg->nquota_users = i + 1;
		if (ydoc_node_is_null(val))
			continue;
		cp->quota = &u->quota;
		if (ydoc_walk(cp->doc, val, quota_keys, cp, cp->err) != 0)
			return -EINVAL;
	}
	cp->quota = &cfg->quota_default;	/* for a later "default:" */
	return 0;
}

static const struct ydoc_key quotas_keys[] = {
	{ "default", YDOC_MAP, 0, 0, 0, NULL, NULL, quota_keys },
	{ "users", YDOC_NODE, 0, 0, 0, NULL, set_quota_users, NULL },
	{ NULL, 0, 0, 0, 0, NULL, NULL, NULL }
};

static const struct ydoc_key config_keys[] = {
	{ "state_dir", YDOC_STRING, YDOC_ABSOLUTE, 0, 0, NULL, set_state_dir,
	    NULL },
	{ "socket", YDOC_STRING, YDOC_ABSOLUTE, 0, 0, NULL, set_socket, NULL },
	{ "socket_group", YDOC_STRING, 0, 0, 0, NULL, set_socket_group, NULL },
	{ "log_level", YDOC_ENUM, 0, 0, 0, log_levels, set_log_level, NULL },
	{ "cid_min", YDOC_UINT, 0, CID_MIN, CID_MAX, NULL, set_cid_min, NULL },
	{ "cid_max", YDOC_UINT, 0, CID_MIN, CID_MAX, NULL, set_cid_max, NULL },
	{ "default_image", YDOC_STRING, 0, 0, 0, NULL, set_default_image, NULL },
	{ "defaults", YDOC_MAP, 0, 0, 0, NULL, NULL, defaults_keys },
	{ "vsock", YDOC_MAP, 0, 0, 0, NULL, NULL, vsock_keys },
	{ "network", YDOC_MAP, 0, 0, 0, NULL, NULL, network_keys },
	{ "limits", YDOC_MAP, 0, 0, 0, NULL, NULL, limits_keys },
	{ "quotas", YDOC_MAP, 0, 0, 0, NULL, NULL, quotas_keys },
	{ "metrics", YDOC_MAP, 0, 0, 0, NULL, NULL, metrics_keys },
	{ NULL, 0, 0, 0, 0, NULL, NULL, NULL }
};

/* Keys a quotas.users entry left out come from quotas.default. */
static void
config_resolve_user_quotas(struct ember_config *cfg)
{
	const struct ember_quota *d = &cfg->quota_default;

	for (size_t i = 0; i < cfg->nquota_users; i++) {
		struct ember_quota *q = &cfg->quota_users[i].quota;
		if (q->vms == UINT64_MAX) q->vms = d->vms;
		if (q->vcpus == UINT64_MAX) q->vcpus = d->vcpus;
		if (q->memory_mib == UINT64_MAX) q->memory_mib = d->memory_mib;
		if (q->disk_mib == UINT64_MAX) q->disk_mib = d->disk_mib;
		if (q->cids == UINT64_MAX) q->cids = d->cids;
		if (q->connections == UINT64_MAX) q->connections = d->connections;
	}
}

#define CONFIG_KEYS_COUNT	(sizeof(config_keys) / sizeof(config_keys[0]) - 1)

int
ember_config_register_backends(const struct ember_config_backend *rows, size_t n)
{
	if (n > EMBER_CONFIG_BACKENDS_MAX)
		return -E2BIG;
	for (size_t i = 0; i < n; i++) {
		if (strcmp(rows[i].name, "auto") == 0)
			return -EINVAL;
		for (size_t k = 0; k < CONFIG_KEYS_COUNT; k++)
			if (strcmp(rows[i].name, config_keys[k].name) == 0)
				return -EINVAL;
		for (size_t j = 0; j < i; j++)
			if (strcmp(rows[i].name, rows[j].name) == 0)
				return -EINVAL;
	}
	for (size_t i = 0; i < n; i++) {
		registered[i] = rows[i];
		ember_config_backend_choices[i + 1] = rows[i].name;
	}
	ember_config_backend_choices[n + 1] = NULL;
	nregistered = n;
	return 0;
}

size_t
ember_config_backend_count(void)
{
	return nregistered;
}

int
ember_config_backend_set(void *walk, const char *backend, const char *key, json_t *value)
{
	struct ember_config *cfg = ((struct config_parse *)walk)->cfg;
	json_t *section;

	if (value == NULL)
		return -ENOMEM;
	if (cfg->backend_sections == NULL &&
	    (cfg->backend_sections = json_object()) == NULL)
		goto nomem;
	section = json_object_get(cfg->backend_sections, backend);
	if (section == NULL) {
		if ((section = json_object()) == NULL ||
		    json_object_set_new(cfg->backend_sections, backend, section) != 0)
			goto nomem;
	}
	return json_object_set_new(section, key, value) == 0 ? 0 : -ENOMEM;
nomem:
	json_decref(value);
	return -ENOMEM;
}

static const json_t *
config_backend_value(const struct ember_config *cfg, const char *backend, const char *key)
{
	if (cfg->backend_sections == NULL)
		return NULL;
	return json_object_get(json_object_get(cfg->backend_sections, backend), key);
}

const char *
ember_config_backend_string(const struct ember_config *cfg, const char *backend,
    const char *key)
{
	return json_string_value(config_backend_value(cfg, backend, key));
}

bool
ember_config_backend_bool(const struct ember_config *cfg, const char *backend,
    const char *key, bool dflt)
{
	const json_t *v = config_backend_value(cfg, backend, key);

	return json_is_boolean(v) ? json_is_true(v) : dflt;
}

static int
config_from_doc(const struct ydoc *doc, struct ember_config *cfg,
    struct ember_error *err)
{
	struct ember_config next;
	struct config_parse cp = { .cfg = &next, .doc = doc, .err = err };
	struct ydoc_key keys[CONFIG_KEYS_COUNT + EMBER_CONFIG_BACKENDS_MAX + 1];
	size_t nkeys = CONFIG_KEYS_COUNT;

	/* The fixed keys, then one mapping per backend that has a subtree. */
	memcpy(keys, config_keys, CONFIG_KEYS_COUNT * sizeof(keys[0]));
	for (size_t i = 0; i < nregistered; i++)
		if (registered[i].keys != NULL)
			keys[nkeys++] = (struct ydoc_key){ registered[i].name, YDOC_MAP, 0, 0, 0,
			    NULL, NULL, registered[i].keys };
	keys[nkeys] = (struct ydoc_key){ NULL, 0, 0, 0, 0, NULL, NULL, NULL };

	if (config_copy(&next, cfg) != 0)
		return ember_error_set(err, EK_INVALID_SPEC, NULL,
		    "%s: out of memory", doc->filename);
	/* quotas.default is walked with the quota pointer at the default. */
	cp.quota = &next.quota_default;
	if (ydoc_walk(doc, doc->root, keys, &cp, err) != 0)
		goto fail;
	config_resolve_user_quotas(&next);
	if (next.cid_min > next.cid_max) {
		/* Blame the key the file set; cid_max when it set both. */
		if (cp.cid_max != NULL)
			ydoc_error(doc, cp.cid_max, err,
			    "\"cid_max\": must be at least cid_min (%u), got %u",
			    next.cid_min, next.cid_max);
		else
			ydoc_error(doc, cp.cid_min, err,
			    "\"cid_min\": must be at most cid_max (%u), got %u",
			    next.cid_max, next.cid_min);
		goto fail;
	}
	ember_config_clear(cfg);
	*cfg = next;
	return 0;

fail:
	ember_config_clear(&next);
	return -1;
}

int
ember_config_parse(const char *text, size_t len, const char *filename,
    struct ember_config *cfg, struct ember_error *err)
{
	struct ydoc *doc;
	int r;

	if (ydoc_parse(text, len, filename, &doc, err) != 0)
		return -1;
	r = config_from_doc(doc, cfg, err);
	ydoc_free(doc);
	return r;
}

int
ember_config_load(const char *path, struct ember_config *cfg,
    struct ember_error *err)
{
	struct ydoc *doc;
	int r;

	if (ydoc_load(path, &doc, err) != 0)
		return -1;
	r = config_from_doc(doc, cfg, err);
	ydoc_free(doc);
	return r;
}

const struct ember_quota *
ember_config_quota(const struct ember_config *cfg, uid_t uid)
{
	if (uid == 0)
		return NULL;
	for (size_t i = 0; i < cfg->nquota_users; i++)
		if (cfg->quota_users[i].uid == uid)
			return &cfg->quota_users[i].quota;
	return &cfg->quota_default;
}

int
ember_config_fill_params(const struct ember_config *cfg, json_t *params)
{
	if (cfg->default_image != NULL &&
	    json_object_get(params, "image") == NULL &&
	    json_object_set_new(params, "image",
	    json_string(cfg->default_image)) != 0)
		return -ENOMEM;
	if (json_object_get(params, "cpus") == NULL &&
	    json_object_set_new(params, "cpus",
	    json_integer(cfg->default_cpus)) != 0)
		return -ENOMEM;
	if (json_object_get(params, "memory_mib") == NULL &&
	    json_object_set_new(params, "memory_mib",
	    json_integer((json_int_t)cfg->default_memory_mib)) != 0)
		return -ENOMEM;
	if (cfg->default_backend != NULL &&
	    json_object_get(params, "backend") == NULL &&
	    json_object_set_new(params, "backend",
	    json_string(cfg->default_backend)) != 0)
		return -ENOMEM;
	return 0;
}
