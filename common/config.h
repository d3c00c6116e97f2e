/*
 * The daemon configuration file (YAML), e.g. /etc/ember/emberd.yaml:
 *
 *   state_dir: /var/lib/ember        socket: /run/ember/emberd.sock
 *   socket_group: ember              log_level: info
 *   cid_min: 3                       cid_max: 4294967294
 *   default_image: mini
 *   <backend>: { ... }               (each backend's own subtree)
 *   defaults: { cpus: 1, memory: 512M, backend: auto }
 *   vsock: { vm_to_vm: true }
 *   network: { pool: 10.100.0.0/16, allow_same_owner: false,
 *              allow_host_ports: [53, 8125/udp], resolv_conf: /etc/resolv.conf }
 *   limits: { max_connections: 1024, max_batch: 128, reply_high_water: 4M,
 *             events_ring: 4096 }
 *   metrics: { listen: "127.0.0.1:9464" }   (or "unix:/run/ember/metrics.sock")
 *   quotas: { default: { vms: 16, vcpus: 16, memory: 16G, disk: 128G,
 *                        cids: 16, connections: 32 },
 *             users: { alice: { vms: 64 }, "1001": { cids: 0 } } }
 *
 * The configuration names no backend: the platform's registry tells it once,
 * before any file is parsed, which backends exist and the key table of each
 * one's own subtree (ember_config_register_backends). A subtree's values are
 * kept as a JSON object that only its backend reads.
 *
 * Errors carry file:line:column like VM specs; a file that fails to parse
 * leaves cfg as it was. `emberd --check-config`
 * is ember_config_load plus a report.
 */
#ifndef EMBER_CONFIG_H
#define EMBER_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <jansson.h>
#include "error.h"

/* What one user other than root may hold (root has no quota). */
struct ember_quota {
	uint64_t vms;		/* VM records, in any state */
	uint64_t vcpus;		/* of VMs with a process (starting to stopping) */
	uint64_t memory_mib;	/* likewise */
	uint64_t disk_mib;	/* images' files plus VMs' root disks (see quota.c) */
	uint64_t cids;		/* vsock VMs */
	uint64_t connections;	/* control connections open at once */
};

#define QUOTA_DEFAULT_VMS		16
#define QUOTA_DEFAULT_VCPUS		16
#define QUOTA_DEFAULT_MEMORY_MIB	(16 * 1024)
#define QUOTA_DEFAULT_DISK_MIB		(128 * 1024)
#define QUOTA_DEFAULT_CIDS		16
#define QUOTA_DEFAULT_CONNECTIONS	32
#define CONFIG_MAX_BATCH_DEFAULT	128
#define CONFIG_MAX_BATCH_MAX		100000
#define CONFIG_QUOTA_USERS_MAX		1024
#define CONFIG_HOST_PORTS_MAX		64

/* A quotas.users entry: keys it does not give come from quotas.default. */
struct ember_user_quota {
	uid_t uid;
	struct ember_quota quota;
};

/* Strings are heap copies or the built-in "auto"; only ember_config_clear
 * and ember_config_parse may replace them. */
struct ember_config {
	char *state_dir;	/* NULL: built-in default */
	char *socket;		/* NULL: built-in default */
	char *socket_group;	/* NULL: the daemon's group */
	int log_level;		/* enum log_level, -1 when unset */
	uint32_t cid_min, cid_max;
	char *default_image;
	/* Backends' subtrees: { "<backend>": { "<key>": value } }, as their
	 * setters stored them; NULL while no file set any. */
	json_t *backend_sections;
	unsigned default_cpus;
	uint64_t default_memory_mib;
	char *default_backend;		/* "auto" or a registered backend */
	bool vsock_vm_to_vm;
	/* network: VMs with network "nat" (vm-network.c). */
	uint32_t net_pool_base;		/* IPv4, host byte order */
	unsigned net_pool_prefix;
	bool net_allow_same_owner;	/* a guest may reach its owner's other guests */
	struct ember_host_port {
		uint16_t port;
		bool tcp, udp;
	} net_host_ports[CONFIG_HOST_PORTS_MAX];	/* host ports guests may reach */
	size_t net_nhost_ports;
	char *net_resolv_conf;		/* NULL: /etc/resolv.conf */
	/* limits: bounds on what one control connection may cause. */
	unsigned max_connections;	/* 0: the transport's default */
	unsigned max_batch;		/* requests in one batch */
	uint64_t reply_high_water;	/* bytes; 0: the transport's default */
	char *metrics_listen;		/* metrics.listen; NULL: no HTTP listener */
	unsigned events_ring;		/* events kept for resume; 0: the default */
	/* quotas: */
	struct ember_quota quota_default;
	struct ember_user_quota *quota_users;	/* heap array */
	size_t nquota_users;
};

/* A backend as the configuration knows it: its name (the key of its
 * subtree, a value of defaults.backend) and its subtree's keys, whose
 * setters get the walk's object and store through ember_config_backend_set. */
#define EMBER_CONFIG_BACKENDS_MAX 8
struct ydoc_key;
struct ember_config_backend {
	const char *name;
	const struct ydoc_key *keys;	/* NULL: the backend has no subtree */
};

/* Registers the backends (once, at startup, before parsing). 0, or -E2BIG
 * past EMBER_CONFIG_BACKENDS_MAX, -EINVAL for a duplicate or a name a
 * top-level key already has. */
int ember_config_register_backends(const struct ember_config_backend *rows, size_t n);
/* "auto" and every registered name, NULL-terminated: the choices of
 * defaults.backend and of a spec's backend. */
extern const char *ember_config_backend_choices[EMBER_CONFIG_BACKENDS_MAX + 2];
/* How many backends are registered (0 in a client, which takes any name
 * and lets the daemon decide). */
size_t ember_config_backend_count(void);
/* For a backend's key setters: stores value (taken) as <backend>.<key> in
 * the configuration being parsed (walk is the setter's obj). 0 or -ENOMEM. */
int ember_config_backend_set(void *walk, const char *backend, const char *key,
    json_t *value);
/* What a file set for <backend>.<key>, or NULL. */
const char *ember_config_backend_string(const struct ember_config *cfg,
    const char *backend, const char *key);
bool ember_config_backend_bool(const struct ember_config *cfg, const char *backend,
    const char *key, bool dflt);

/* Built-in defaults (everything NULL/unset except numbers and "auto"). */
void ember_config_init(struct ember_config *cfg);
void ember_config_clear(struct ember_config *cfg);
/* Parses text over the current contents of cfg. 0 or -1 with EK_INVALID_SPEC
 * and "file:line:column: reason". */
int ember_config_parse(const char *text, size_t len, const char *filename,
    struct ember_config *cfg, struct ember_error *err);
int ember_config_load(const char *path, struct ember_config *cfg,
    struct ember_error *err);
/* A metrics.listen address: "unix:/absolute/path", "a.b.c.d:port" or
 * "[v6]:port" (numeric only: nothing is resolved). */
struct ember_listen_addr {
	int family;			/* AF_UNIX, AF_INET, AF_INET6 */
	char path[108];			/* AF_UNIX */
	unsigned char addr[16];		/* AF_INET (4 bytes), AF_INET6 */
	unsigned port;
};
/* 0 or -EINVAL. */
int ember_listen_parse(const char *text, struct ember_listen_addr *out);
/* The quota that applies to uid; NULL for root (no quota). */
const struct ember_quota *ember_config_quota(const struct ember_config *cfg,
    uid_t uid);
/* Precedence for vm.create: params given by the client win; absent image,
 * cpus, memory_mib and backend come from the config (itself the file over
 * the built-in defaults). 0 or -ENOMEM. */
int ember_config_fill_params(const struct ember_config *cfg, json_t *params);

#endif
