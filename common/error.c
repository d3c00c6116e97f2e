/*
 * struct ember_error and the table that maps each error kind to its
 * JSON-RPC application code and wire name.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "error.h"

static const struct {
	const char *name;
	int code;
} error_kinds[EK__COUNT] = {
	[EK_NONE] = { "none", 0 },
	[EK_NOT_FOUND] = { "not_found", -32001 },
	[EK_ALREADY_EXISTS] = { "already_exists", -32002 },
	[EK_INVALID_STATE] = { "invalid_state", -32003 },
	[EK_INVALID_NAME] = { "invalid_name", -32004 },
	[EK_PATH_TOO_LONG] = { "path_too_long", -32005 },
	[EK_CIDS_EXHAUSTED] = { "cids_exhausted", -32006 },
	[EK_PERMISSION_DENIED] = { "permission_denied", -32007 },
	[EK_BACKEND_UNAVAILABLE] = { "backend_unavailable", -32008 },
	[EK_BACKEND_ERROR] = { "backend_error", -32009 },
	[EK_BUSY] = { "busy", -32010 },
	[EK_INVALID_SPEC] = { "invalid_spec", -32011 },
	[EK_IO] = { "io_error", -32012 },
	[EK_INTERNAL] = { "internal", -32013 },
	[EK_QUOTA_EXCEEDED] = { "quota_exceeded", -32014 },
};

int
ember_error_set(struct ember_error *err, enum ember_error_kind kind,
    const char *hint, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || err->kind != EK_NONE)
		return -1;
	err->kind = kind == EK_NONE ? EK_INTERNAL : kind;
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
	snprintf(err->hint, sizeof(err->hint), "%s", hint != NULL ? hint : "");
	return -1;
}

void
ember_error_prefix(struct ember_error *err, const char *fmt, ...)
{
	char prefix[256], old[sizeof(err->message)];
	va_list ap;

	if (err == NULL || err->kind == EK_NONE)
		return;
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	memcpy(old, err->message, sizeof(old));
	snprintf(err->message, sizeof(err->message), "%s: %s", prefix, old);
}

void
ember_error_clear(struct ember_error *err)
{
	err->kind = EK_NONE;
	err->message[0] = '\0';
	err->hint[0] = '\0';
}

bool
ember_error_is_set(const struct ember_error *err)
{
	return err != NULL && err->kind != EK_NONE;
}

const char *
ember_error_kind_name(enum ember_error_kind kind)
{
	if ((unsigned)kind >= EK__COUNT)
		return "internal";
	return error_kinds[kind].name;
}

int
ember_error_code(enum ember_error_kind kind)
{
	if ((unsigned)kind >= EK__COUNT || kind == EK_NONE)
		return error_kinds[EK_INTERNAL].code;
	return error_kinds[kind].code;
}

enum ember_error_kind
ember_error_kind_from_code(int code)
{
	for (int k = EK_NOT_FOUND; k < EK__COUNT; k++)
		if (error_kinds[k].code == code)
			return (enum ember_error_kind)k;
	return EK_INTERNAL;
}
