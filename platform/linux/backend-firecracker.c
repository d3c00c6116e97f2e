/*
 * The firecracker backend. This build only probes for the binary: the lifecycle
 * (issue "firecracker backend") is not implemented yet, so the backend reports
 * itself unavailable and says why.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "config.h"
#include "probe.h"

static void
firecracker_probe(struct backend *be, struct backend_info *info)
{
	const struct backend_env *env = be->priv;
	int r = probe_find_binary(env->config->firecracker_binary, "firecracker", info->binary,
	    sizeof(info->binary));

	info->available = false;
	if (r < 0) {
		snprintf(info->reason, sizeof(info->reason), "%s not found%s",
		    env->config->firecracker_binary ? env->config->firecracker_binary : "firecracker",
		    env->config->firecracker_binary ? "" : " in PATH");
		return;
	}
	if (probe_binary_version(info->binary, info->version, sizeof(info->version)) < 0)
		snprintf(info->version, sizeof(info->version), "unknown version");
	snprintf(info->reason, sizeof(info->reason),
	    "found %s (%s), but this emberd does not implement the firecracker backend yet",
	    info->binary, info->version);
}

static void
firecracker_free(struct backend *be)
{
	free(be);
}

struct backend *
backend_firecracker_new(const struct backend_env *env)
{
	struct backend *be = calloc(1, sizeof(*be));

	if (be == NULL)
		return NULL;
	be->name = "firecracker";
	be->priv = (void *)env;
	be->probe = firecracker_probe;
	be->free = firecracker_free;
	return be;
}
