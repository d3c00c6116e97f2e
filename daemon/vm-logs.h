/*
 * vm.logs: a VM's console output read through emberd, so that its owner
 * needs no access to the state directory. Reads are bounded and
 * offset-based; a client follows by asking again from next_offset.
 */
#ifndef EMBER_VM_LOGS_H
#define EMBER_VM_LOGS_H

#include <stdint.h>
#include <jansson.h>
#include "error.h"

struct vm;

/* The most bytes one vm.logs call returns. */
#define VM_LOGS_CHUNK_MAX (64 * 1024)

/*
 * Up to max bytes (at most VM_LOGS_CHUNK_MAX) of console.log from offset:
 * {"data": base64, "offset": where they start, "next_offset", "size",
 * "status"}. An offset past the end (the log was trimmed meanwhile) reads
 * from the start of what is kept, with "offset" saying so; a negative
 * offset counts back from the end. NULL with err on failure.
 */
json_t *vm_logs_read(struct vm *vm, int64_t offset, size_t max, struct ember_error *err);

#endif
