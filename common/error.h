/*
 * struct ember_error: the one error value daemon-level code passes up. It is
 * fixed size and caller owned; the first error set wins and callers may add
 * context on the way up. Only the RPC layer turns it into a JSON-RPC error,
 * whose code and data.kind come from the kind table here.
 */
#ifndef EMBER_ERROR_H
#define EMBER_ERROR_H

#include <stdbool.h>

enum ember_error_kind {
	EK_NONE = 0,
	EK_NOT_FOUND,
	EK_ALREADY_EXISTS,
	EK_INVALID_STATE,
	EK_INVALID_NAME,
	EK_PATH_TOO_LONG,
	EK_CIDS_EXHAUSTED,
	EK_PERMISSION_DENIED,
	EK_BACKEND_UNAVAILABLE,
	EK_BACKEND_ERROR,
	EK_BUSY,
	EK_INVALID_SPEC,	/* a YAML file or parameter value is wrong */
	EK_IO,			/* the state directory or a file could not be used */
	EK_INTERNAL,
	EK_QUOTA_EXCEEDED,	/* a per-user limit of the daemon config */
	EK__COUNT
};

struct ember_error {
	enum ember_error_kind kind;
	char message[512];
	char hint[256];
};

/* Sets err (unless already set) and returns -1 so callers can `return ember_error_set(...)`. */
int ember_error_set(struct ember_error *err, enum ember_error_kind kind,
    const char *hint, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Prefixes "context: " to an error already set. */
void ember_error_prefix(struct ember_error *err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void ember_error_clear(struct ember_error *err);
bool ember_error_is_set(const struct ember_error *err);

/* "not_found", ... */
const char *ember_error_kind_name(enum ember_error_kind kind);
/* JSON-RPC application code in -32000..-32099 for a kind. */
int ember_error_code(enum ember_error_kind kind);
/* Inverse of ember_error_code; EK_INTERNAL for unknown codes. */
enum ember_error_kind ember_error_kind_from_code(int code);

#endif
