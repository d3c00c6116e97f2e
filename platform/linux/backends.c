/*
 * The Linux backend registry: one row per hypervisor backend (see
 * backend.h). The daemon walks these rows and never names a backend; a new
 * backend is a new file here and one line below. The order is the one
 * messages list them in; "auto" goes by each row's priority instead
 * (Firecracker, with next to no device emulation, before QEMU).
 */
#include <errno.h>

#include "backend.h"
#include "config.h"

extern const struct backend_type backend_type_firecracker;
extern const struct backend_type backend_type_qemu;

static const struct backend_type *const types[] = {
	&backend_type_qemu,
	&backend_type_firecracker,
};

#define NTYPES (sizeof(types) / sizeof(types[0]))
_Static_assert(NTYPES <= BACKENDS_MAX, "more backends than BACKENDS_MAX");
_Static_assert(BACKENDS_MAX <= EMBER_CONFIG_BACKENDS_MAX,
    "the configuration cannot hold every backend");

const struct backend_type *const *
backend_types(size_t *n)
{
	*n = NTYPES;
	return types;
}

int
backend_types_register_config(void)
{
	struct ember_config_backend rows[NTYPES];

	for (size_t i = 0; i < NTYPES; i++)
		rows[i] = (struct ember_config_backend){ types[i]->name, types[i]->config_keys };
	return ember_config_register_backends(rows, NTYPES);
}
