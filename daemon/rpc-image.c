/*
 * image.* methods: import, list, inspect and delete images in the store.
 * import and delete answer once what they changed is durable (image.h).
 */
#include "daemon.h"
#include "image.h"
#include "rpc.h"

static void
rpc_image_done(void *ctx, json_t *result, const struct ember_error *err)
{
	struct rpc_call *call = ctx;

	if (err != NULL)
		rpc_fail(call, err);
	else
		rpc_reply(call, result);
}

static void
rpc_image_import(struct rpc_call *call, json_t *params)
{
	long long size = rpc_param_int(params, "rootfs_size_mib", 0);
	struct platform_caller caller = rpc_caller(call);
	struct image_import_args a = {
		.name = rpc_param_str(params, "name", NULL),
		.kernel = rpc_param_str(params, "kernel", NULL),
		.vmlinux = rpc_param_str(params, "vmlinux", NULL),
		.initrd = rpc_param_str(params, "initrd", NULL),
		.rootfs = rpc_param_str(params, "rootfs", NULL),
		.rootfs_dir = rpc_param_str(params, "rootfs_dir", NULL),
		.boot_args = rpc_param_str(params, "boot_args", NULL),
		.oci = rpc_param_str(params, "oci", NULL),
		.skip_tls_verify = !rpc_param_bool(params, "tls_verify", true),
		.caller = &caller,
	};

	if (size < 0 || size > 16 * 1024 * 1024) {
		rpc_fail_params(call, "rootfs_size_mib must be 1 to 16777216");
		return;
	}
	a.rootfs_size_mib = (uint64_t)size;
	if (a.name != NULL && image_name_deleting(a.name)) {
		/* its delete is not durable yet: a new image under the name now
		 * could meet the old one's move on disk */
		struct ember_error err = { 0 };
		ember_error_set(&err, EK_BUSY, "retry once its delete is answered",
		    "image \"%s\" is being deleted", a.name);
		rpc_fail(call, &err);
		return;
	}
	image_import(call->daemon, &a, rpc_image_done, call);
}

static void
rpc_image_list(struct rpc_call *call, json_t *params)
{
	rpc_reply(call, json_pack("{s:o}", "images", image_list(call->daemon, call->uid)));
}

static void
rpc_image_inspect(struct rpc_call *call, json_t *params)
{
	struct ember_error err = { 0 };
	json_t *doc = image_load(call->daemon, rpc_param_str(params, "name", ""), call->uid,
	    &err);

	if (doc == NULL)
		rpc_fail(call, &err);
	else
		rpc_reply(call, doc);
}

static void
rpc_image_delete(struct rpc_call *call, json_t *params)
{
	image_delete(call->daemon, rpc_param_str(params, "name", ""),
	    rpc_param_bool(params, "force", false), call->uid, rpc_image_done, call);
}

static const struct rpc_param p_import[] = {
	{ "name", JSON_STRING, RPC_REQUIRED },
	{ "kernel", JSON_STRING, 0 },		/* required unless oci */
	{ "vmlinux", JSON_STRING, 0 },
	{ "initrd", JSON_STRING, 0 },
	{ "rootfs", JSON_STRING, 0 },
	{ "rootfs_dir", JSON_STRING, 0 },
	{ "rootfs_size_mib", JSON_INTEGER, 0 },
	{ "boot_args", JSON_STRING, 0 },
	{ "oci", JSON_STRING, 0 },
	{ "tls_verify", JSON_TRUE, 0 },		/* docker:// only */
	{ NULL, 0, 0 },
};
static const struct rpc_param p_name[] = {
	{ "name", JSON_STRING, RPC_REQUIRED },
	{ NULL, 0, 0 },
};
static const struct rpc_param p_delete[] = {
	{ "name", JSON_STRING, RPC_REQUIRED },
	{ "force", JSON_TRUE, 0 },
	{ NULL, 0, 0 },
};

const struct rpc_method rpc_image_methods[] = {
	{ "image.import", p_import, RPC_MUTATES | RPC_ASYNC, NULL, rpc_image_import },
	{ "image.list", NULL, 0, NULL, rpc_image_list },
	{ "image.inspect", p_name, 0, NULL, rpc_image_inspect },
	{ "image.delete", p_delete, RPC_MUTATES | RPC_ASYNC, NULL, rpc_image_delete },
	{ NULL, NULL, 0, NULL, NULL },
};
