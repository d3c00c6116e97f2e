/*
 * VM specs: the key table for `emberctl vm create -f spec.yaml`, walked by
 * yaml-doc.c, and the mapping from a parsed spec to vm.create parameters
 * (daemon/API.md). Limits match the API: cpus 1..64, memory 16M..1T in
 * whole MiB; disk_size is rounded up to MiB when sent.
 *
 * A backend is one the daemon's registry named (config.h) or "auto"; a
 * client, which registers none, passes any name on and the daemon decides.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "spec.h"
#include "vm-record.h"
#include "yaml-doc.h"

#define MIB	(1024ULL * 1024)

static const char *const networks[] = { "none", "user", "nat", NULL };

static int
set_string(char **field, const char *value)
{
	char *copy;

	if ((copy = strdup(value)) == NULL)
		return -ENOMEM;
	free(*field);
	*field = copy;
	return 0;
}

#define SPEC_STRING(field)						\
static int								\
set_##field(void *obj, const struct ydoc_value *v)			\
{									\
	return set_string(&((struct vm_spec *)obj)->field, v->str);	\
}
SPEC_STRING(image)
SPEC_STRING(kernel)
SPEC_STRING(initrd)
SPEC_STRING(rootfs)
SPEC_STRING(boot_args)
SPEC_STRING(backend)
SPEC_STRING(network)
#undef SPEC_STRING

static int
set_cpus(void *obj, const struct ydoc_value *v)
{
	struct vm_spec *spec = obj;

	spec->cpus = (unsigned)v->u;
	spec->has_cpus = true;
	return 0;
}

static int
set_memory(void *obj, const struct ydoc_value *v)
{
	struct vm_spec *spec = obj;

	spec->memory_mib = v->u;
	spec->has_memory = true;
	return 0;
}

static int
set_disk_size(void *obj, const struct ydoc_value *v)
{
	struct vm_spec *spec = obj;

	spec->disk_size = v->u;
	spec->has_disk_size = true;
	return 0;
}

static int
set_vsock(void *obj, const struct ydoc_value *v)
{
	struct vm_spec *spec = obj;

	spec->vsock = v->b;
	spec->has_vsock = true;
	return 0;
}

/* publish: a list of "[HOSTADDR:]HOSTPORT:GUESTPORT[/tcp|/udp]", checked
 * here so that a bad entry is reported at its line. */
struct spec_parse {
	struct vm_spec spec;	/* first: the other setters take it as obj */
	const struct ydoc *doc;
	struct ember_error *err;
};

static int
set_publish(void *obj, const struct ydoc_value *v)
{
	struct spec_parse *sp = obj;
	struct vm_spec *spec = &sp->spec;
	const struct ydoc_node *seq = v->node;
	struct vm_publish p;
	json_t *arr;

	if (seq->type != YDOC_SEQUENCE || seq->nitems > VM_PUBLISH_MAX) {
		ydoc_error(sp->doc, seq, sp->err, "\"publish\": expected "
		    "a list of at most %d \"[HOSTADDR:]HOSTPORT:GUESTPORT[/tcp|/udp]\"",
		    VM_PUBLISH_MAX);
		return -EINVAL;
	}
	if ((arr = json_array()) == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < seq->nitems; i++) {
		const struct ydoc_node *n = seq->items[i];
		if (n->type != YDOC_SCALAR || strlen(n->value) != n->len ||
		    vm_publish_parse(n->value, &p) < 0) {
			json_decref(arr);
			ydoc_error(sp->doc, n, sp->err, "\"publish\": "
			    "expected \"[HOSTADDR:]HOSTPORT:GUESTPORT[/tcp|/udp]\" with ports "
			    "1-65535");
			return -EINVAL;
		}
		json_array_append_new(arr, json_string(n->value));
	}
	json_decref(spec->publish);
	spec->publish = arr;
	return 0;
}

static const struct ydoc_key spec_keys[] = {
	{ "image", YDOC_STRING, 0, 0, 0, NULL, set_image, NULL },
	{ "kernel", YDOC_STRING, 0, 0, 0, NULL, set_kernel, NULL },
	{ "initrd", YDOC_STRING, 0, 0, 0, NULL, set_initrd, NULL },
	{ "rootfs", YDOC_STRING, 0, 0, 0, NULL, set_rootfs, NULL },
	{ "cpus", YDOC_UINT, 0, VM_SPEC_CPUS_MIN, VM_SPEC_CPUS_MAX, NULL,
	    set_cpus, NULL },
	{ "memory", YDOC_SIZE_MIB, 0, VM_SPEC_MEMORY_MIB_MIN,
	    VM_SPEC_MEMORY_MIB_MAX, NULL, set_memory, NULL },
	{ "disk_size", YDOC_SIZE, 0, MIB, UINT64_MAX, NULL, set_disk_size, NULL },
	{ "boot_args", YDOC_STRING, YDOC_EMPTY_OK, 0, 0, NULL, set_boot_args,
	    NULL },
	{ "vsock", YDOC_BOOL, 0, 0, 0, NULL, set_vsock, NULL },
	{ "backend", YDOC_ENUM, 0, 0, 0, ember_config_backend_choices, set_backend,
	    NULL },
	{ "network", YDOC_ENUM, 0, 0, 0, networks, set_network, NULL },
	{ "publish", YDOC_NODE, 0, 0, 0, NULL, set_publish, NULL },
	{ NULL, 0, 0, 0, 0, NULL, NULL, NULL }
};

void
vm_spec_clear(struct vm_spec *spec)
{
	free(spec->image);
	free(spec->kernel);
	free(spec->initrd);
	free(spec->rootfs);
	free(spec->boot_args);
	free(spec->backend);
	free(spec->network);
	json_decref(spec->publish);
	memset(spec, 0, sizeof(*spec));
}

static int
spec_from_doc(const struct ydoc *doc, struct vm_spec *spec,
    struct ember_error *err)
{
	struct spec_parse walk = { .doc = doc, .err = err };
	struct vm_spec parsed;
	struct ydoc_key keys[sizeof(spec_keys) / sizeof(spec_keys[0])];

	/* Without a registry (a client) any backend name goes to the daemon. */
	memcpy(keys, spec_keys, sizeof(keys));
	for (size_t i = 0; ember_config_backend_count() == 0 && keys[i].name != NULL; i++)
		if (keys[i].set == set_backend)
			keys[i].type = YDOC_STRING;
	if (ydoc_walk(doc, doc->root, keys, &walk, err) != 0) {
		vm_spec_clear(&walk.spec);
		return -1;
	}
	parsed = walk.spec;
	vm_spec_clear(spec);
	*spec = parsed;
	return 0;
}

int
vm_spec_parse(const char *text, size_t len, const char *filename,
    struct vm_spec *spec, struct ember_error *err)
{
	struct ydoc *doc;
	int r;

	if (ydoc_parse(text, len, filename, &doc, err) != 0)
		return -1;
	r = spec_from_doc(doc, spec, err);
	ydoc_free(doc);
	return r;
}

int
vm_spec_load(const char *path, struct vm_spec *spec, struct ember_error *err)
{
	struct ydoc *doc;
	int r;

	if (ydoc_load(path, &doc, err) != 0)
		return -1;
	r = spec_from_doc(doc, spec, err);
	ydoc_free(doc);
	return r;
}

static int
merge_string(char **dst, const char *src)
{
	return src != NULL ? set_string(dst, src) : 0;
}

int
vm_spec_merge(struct vm_spec *dst, const struct vm_spec *src)
{
	if (merge_string(&dst->image, src->image) != 0 ||
	    merge_string(&dst->kernel, src->kernel) != 0 ||
	    merge_string(&dst->initrd, src->initrd) != 0 ||
	    merge_string(&dst->rootfs, src->rootfs) != 0 ||
	    merge_string(&dst->boot_args, src->boot_args) != 0 ||
	    merge_string(&dst->backend, src->backend) != 0 ||
	    merge_string(&dst->network, src->network) != 0)
		return -ENOMEM;
	if (src->publish != NULL) {
		json_decref(dst->publish);
		dst->publish = json_deep_copy(src->publish);
		if (dst->publish == NULL)
			return -ENOMEM;
	}
	if (src->has_cpus) {
		dst->cpus = src->cpus;
		dst->has_cpus = true;
	}
	if (src->has_memory) {
		dst->memory_mib = src->memory_mib;
		dst->has_memory = true;
	}
	if (src->has_disk_size) {
		dst->disk_size = src->disk_size;
		dst->has_disk_size = true;
	}
	if (src->has_vsock) {
		dst->vsock = src->vsock;
		dst->has_vsock = true;
	}
	return 0;
}

static int
params_string(json_t *params, const char *key, const char *value)
{
	if (value == NULL)
		return 0;
	return json_object_set_new(params, key, json_string(value));
}

static int
params_integer(json_t *params, const char *key, bool has, uint64_t value)
{
	if (!has)
		return 0;
	if (value > (uint64_t)INT64_MAX)
		return -1;
	return json_object_set_new(params, key, json_integer((json_int_t)value));
}

json_t *
vm_spec_to_params(const struct vm_spec *spec)
{
	json_t *params;
	uint64_t disk_mib = spec->disk_size / MIB + (spec->disk_size % MIB != 0);

	if ((params = json_object()) == NULL)
		return NULL;
	if (params_string(params, "image", spec->image) != 0 ||
	    params_string(params, "kernel", spec->kernel) != 0 ||
	    params_string(params, "initrd", spec->initrd) != 0 ||
	    params_string(params, "rootfs", spec->rootfs) != 0 ||
	    params_integer(params, "cpus", spec->has_cpus, spec->cpus) != 0 ||
	    params_integer(params, "memory_mib", spec->has_memory,
	    spec->memory_mib) != 0 ||
	    params_integer(params, "disk_size_mib", spec->has_disk_size,
	    disk_mib) != 0 ||
	    params_string(params, "boot_args", spec->boot_args) != 0 ||
	    (spec->has_vsock && json_object_set_new(params, "vsock",
	    json_boolean(spec->vsock)) != 0) ||
	    params_string(params, "backend", spec->backend) != 0 ||
	    params_string(params, "network", spec->network) != 0 ||
	    (spec->publish != NULL && json_object_set_new(params, "publish",
	    json_deep_copy(spec->publish)) != 0)) {
		json_decref(params);
		return NULL;
	}
	return params;
}
