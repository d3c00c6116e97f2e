/*
 * The YAML layer under VM specs (spec.c) and the daemon configuration
 * (config.c). ydoc_parse() loads one document with libyaml into a tree of
 * nodes that remember their 1-based line and column, and refuses what ember's
 * files never need: several documents, anchors, aliases, tags and a top level
 * that is not a mapping (an empty file is an empty mapping). ydoc_walk() then
 * checks a mapping against a table of known keys, converts each value to the
 * row's type and hands it to the row's setter.
 *
 * Types are strict: booleans are only true/false; integers are plain
 * unsigned decimals (a quoted "4" is a string, not a number); sizes need a
 * unit (size.h). Every error is EK_INVALID_SPEC with a message of the form
 * `file:line:column: "key": expected ..., got "..."`.
 */
#ifndef EMBER_YAML_DOC_H
#define EMBER_YAML_DOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "error.h"

#define YDOC_MAX_DEPTH	32		/* nesting of collections */
#define YDOC_MAX_FILE	(1024 * 1024)	/* ydoc_load refuses larger files */

enum ydoc_node_type { YDOC_SCALAR, YDOC_MAPPING, YDOC_SEQUENCE };

struct ydoc_node {
	enum ydoc_node_type type;
	unsigned line, column;		/* 1-based */
	/* YDOC_SCALAR: NUL-terminated, len excludes the NUL (may hold NULs). */
	char *value;
	size_t len;
	bool plain;			/* unquoted, not a block literal */
	/* Collections: a mapping's items alternate key, value. */
	struct ydoc_node **items;
	size_t nitems, nalloc;
};

struct ydoc {
	char *filename;			/* used in messages only */
	struct ydoc_node *root;		/* always a mapping */
};

/* Parses len bytes of text. 0, or -1 with err set. */
int ydoc_parse(const char *text, size_t len, const char *filename,
    struct ydoc **docp, struct ember_error *err);
/* Reads path (at most YDOC_MAX_FILE bytes) and parses it; messages name path. */
int ydoc_load(const char *path, struct ydoc **docp, struct ember_error *err);
void ydoc_free(struct ydoc *doc);

/* A plain "", "~" or "null": a key with no value. */
bool ydoc_node_is_null(const struct ydoc_node *node);

enum ydoc_type {
	YDOC_STRING,		/* any non-null scalar */
	YDOC_ENUM,		/* a string from choices */
	YDOC_BOOL,		/* true or false, unquoted */
	YDOC_UINT,		/* unquoted decimal in [min, max] */
	YDOC_SIZE,		/* size with unit; bytes in [min, max] */
	YDOC_SIZE_MIB,		/* size with unit, whole MiB; MiB in [min, max] */
	YDOC_MAP,		/* nested mapping walked against keys */
	YDOC_NODE,		/* any node, handed to the setter as is (v->node) */
};

/* Row flags. */
#define YDOC_ABSOLUTE	0x1	/* YDOC_STRING: must start with '/' */
#define YDOC_EMPTY_OK	0x2	/* YDOC_STRING: "" is allowed */

struct ydoc_value {
	const struct ydoc_node *key, *node;
	const char *str;	/* strings and enums; owned by the document */
	bool b;
	uint64_t u;		/* integer, bytes or MiB */
};

struct ydoc_key {
	const char *name;
	enum ydoc_type type;
	int flags;
	uint64_t min, max;
	const char *const *choices;	/* YDOC_ENUM, NULL-terminated */
	/* Stores the value in obj; 0 or -errno (-ENOMEM). Unused for YDOC_MAP. */
	int (*set)(void *obj, const struct ydoc_value *v);
	const struct ydoc_key *keys;	/* YDOC_MAP, ends with a NULL name */
};

/* Walks mapping map (usually doc->root) against table, which ends with a
 * NULL name. Unknown and duplicate keys are errors; the first error in
 * document order wins. 0, or -1 with err set. */
int ydoc_walk(const struct ydoc *doc, const struct ydoc_node *map,
    const struct ydoc_key *table, void *obj, struct ember_error *err);

/* Sets an EK_INVALID_SPEC error "file:line:column: ..." at node; returns -1. */
int ydoc_error(const struct ydoc *doc, const struct ydoc_node *node,
    struct ember_error *err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#endif
