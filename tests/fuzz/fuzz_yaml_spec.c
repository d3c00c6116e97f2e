/*
 * libFuzzer harness for the YAML layer: arbitrary bytes through
 * vm_spec_parse and then ember_config_parse. Either may reject the input;
 * neither may crash, leak or leave an error without a message.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "config.h"
#include "spec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vm_spec spec = { 0 };
	struct ember_config cfg;
	struct ember_error err = { 0 };
	json_t *params;

	if (vm_spec_parse((const char *)data, size, "fuzz.yaml", &spec,
	    &err) == 0) {
		if ((params = vm_spec_to_params(&spec)) == NULL)
			abort();
		json_decref(params);
	} else if (err.kind != EK_INVALID_SPEC || err.message[0] == '\0')
		abort();
	vm_spec_clear(&spec);

	ember_error_clear(&err);
	ember_config_init(&cfg);
	if (ember_config_parse((const char *)data, size, "fuzz.yaml", &cfg,
	    &err) == 0) {
		if (cfg.cid_min > cfg.cid_max)
			abort();
	} else if (err.kind != EK_INVALID_SPEC || err.message[0] == '\0')
		abort();
	ember_config_clear(&cfg);
	return 0;
}
