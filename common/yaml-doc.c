/*
 * libyaml's event parser turned into a small positioned node tree, and the
 * table-driven walk that spec.c and config.c use to read it. See yaml-doc.h
 * for what is accepted; everything here reports through struct ember_error
 * and never logs.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <yaml.h>

#include "size.h"
#include "yaml-doc.h"

#define SHOW_MAX	48	/* bytes of a value quoted in a message */
#define KEYS_MAX	64	/* rows in one key table */
#define PATH_MAX_KEY	128	/* "qemu.accel" */

static const char tag_prefix[] = "tag:yaml.org,2002:";

static int __attribute__((format(printf, 6, 0)))
ydoc_verror(const char *filename, unsigned line, unsigned column,
    struct ember_error *err, const char *hint, const char *fmt, va_list ap)
{
	char msg[sizeof(err->message)];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	return ember_error_set(err, EK_INVALID_SPEC, hint, "%s:%u:%u: %s",
	    filename, line, column, msg);
}

static int __attribute__((format(printf, 6, 7)))
error_at(const char *filename, unsigned line, unsigned column,
    struct ember_error *err, const char *hint, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	ydoc_verror(filename, line, column, err, hint, fmt, ap);
	va_end(ap);
	return -1;
}

int
ydoc_error(const struct ydoc *doc, const struct ydoc_node *node,
    struct ember_error *err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	ydoc_verror(doc->filename, node->line, node->column, err, NULL, fmt, ap);
	va_end(ap);
	return -1;
}

static int __attribute__((format(printf, 5, 6)))
node_error(const struct ydoc *doc, const struct ydoc_node *node,
    struct ember_error *err, const char *hint, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	ydoc_verror(doc->filename, node->line, node->column, err, hint, fmt, ap);
	va_end(ap);
	return -1;
}

/* Quotes s for a message: escapes controls, cuts long values at a UTF-8 boundary. */
static const char *
show(char *buf, size_t size, const char *s, size_t len)
{
	size_t n = 0, i, max = len;
	unsigned char c;

	if (max > SHOW_MAX) {
		max = SHOW_MAX;
		while (max > 0 && ((unsigned char)s[max] & 0xc0) == 0x80)
			max--;
	}
	buf[n++] = '"';
	for (i = 0; i < max && n + 8 < size; i++) {
		c = (unsigned char)s[i];
		if (c == '"' || c == '\\')
			n += snprintf(buf + n, size - n, "\\%c", c);
		else if (c == '\n')
			n += snprintf(buf + n, size - n, "\\n");
		else if (c == '\t')
			n += snprintf(buf + n, size - n, "\\t");
		else if (c < 0x20 || c == 0x7f)
			n += snprintf(buf + n, size - n, "\\x%02x", c);
		else
			buf[n++] = (char)c;
	}
	if (i < len)
		n += snprintf(buf + n, size - n, "...");
	snprintf(buf + n, size - n, "\"");
	return buf;
}

bool
ydoc_node_is_null(const struct ydoc_node *node)
{
	if (node->type != YDOC_SCALAR || !node->plain)
		return false;
	return node->len == 0 || strcmp(node->value, "~") == 0 ||
	    strcmp(node->value, "null") == 0 || strcmp(node->value, "Null") == 0 ||
	    strcmp(node->value, "NULL") == 0;
}

/* What a node is, for "got ...". */
static const char *
describe(char *buf, size_t size, const struct ydoc_node *node, bool quoted_note)
{
	char tmp[SHOW_MAX * 4 + 16];

	if (node->type == YDOC_MAPPING)
		snprintf(buf, size, "a mapping");
	else if (node->type == YDOC_SEQUENCE)
		snprintf(buf, size, "a list");
	else if (ydoc_node_is_null(node))
		snprintf(buf, size, "no value");
	if (node->type != YDOC_SCALAR || ydoc_node_is_null(node))
		return buf;
	show(tmp, sizeof(tmp), node->value, node->len);
	if (quoted_note && !node->plain)
		snprintf(buf, size, "the quoted string %s", tmp);
	else
		snprintf(buf, size, "%s", tmp);
	return buf;
}

static void
node_free(struct ydoc_node *node)
{
	if (node == NULL)
		return;
	for (size_t i = 0; i < node->nitems; i++)
		node_free(node->items[i]);
	free(node->items);
	free(node->value);
	free(node);
}

void
ydoc_free(struct ydoc *doc)
{
	if (doc == NULL)
		return;
	node_free(doc->root);
	free(doc->filename);
	free(doc);
}

static struct ydoc_node *
node_new(enum ydoc_node_type type, const yaml_mark_t *mark)
{
	struct ydoc_node *node;

	if ((node = calloc(1, sizeof(*node))) == NULL)
		return NULL;
	node->type = type;
	node->line = (unsigned)mark->line + 1;
	node->column = (unsigned)mark->column + 1;
	return node;
}

static int
node_append(struct ydoc_node *parent, struct ydoc_node *child)
{
	struct ydoc_node **items;
	size_t n;

	if (parent->nitems == parent->nalloc) {
		n = parent->nalloc == 0 ? 8 : parent->nalloc * 2;
		if ((items = reallocarray(parent->items, n, sizeof(*items))) == NULL)
			return -ENOMEM;
		parent->items = items;
		parent->nalloc = n;
	}
	parent->items[parent->nitems++] = child;
	return 0;
}

/* libyaml's reader errors carry a byte offset, not a mark. */
static void
offset_position(const char *text, size_t len, size_t offset, unsigned *line,
    unsigned *column)
{
	size_t i, start = 0;

	*line = 1;
	if (offset > len)
		offset = len;
	for (i = 0; i < offset; i++) {
		if (text[i] == '\n') {
			(*line)++;
			start = i + 1;
		}
	}
	*column = (unsigned)(offset - start) + 1;
}

static int
syntax_error(const struct ydoc *doc, const yaml_parser_t *p, const char *text,
    size_t len, struct ember_error *err)
{
	const char *problem = p->problem != NULL ? p->problem : "syntax error";
	char hint[256] = "";
	unsigned line, column;

	switch (p->error) {
	case YAML_MEMORY_ERROR:
		return ember_error_set(err, EK_INVALID_SPEC, NULL,
		    "%s: out of memory while parsing", doc->filename);
	case YAML_READER_ERROR:
		offset_position(text, len, p->problem_offset, &line, &column);
		if (p->problem_value != -1)
			return error_at(doc->filename, line, column, err, NULL,
			    "%s (byte 0x%02x)", problem, (unsigned)p->problem_value);
		return error_at(doc->filename, line, column, err, NULL, "%s",
		    problem);
	default:
		if (p->context != NULL)
			snprintf(hint, sizeof(hint), "%s at line %zu column %zu",
			    p->context, p->context_mark.line + 1,
			    p->context_mark.column + 1);
		return error_at(doc->filename, (unsigned)p->problem_mark.line + 1,
		    (unsigned)p->problem_mark.column + 1, err, hint, "%s", problem);
	}
}

/* "!!str" for "tag:yaml.org,2002:str". */
static const char *
short_tag(char *buf, size_t size, const yaml_char_t *tag)
{
	const char *s = (const char *)tag;

	if (strncmp(s, tag_prefix, sizeof(tag_prefix) - 1) == 0)
		snprintf(buf, size, "!!%s", s + sizeof(tag_prefix) - 1);
	else
		snprintf(buf, size, "%s", s);
	return buf;
}

/* Anchors, aliases and explicit tags are refused wherever they appear.
 * libyaml limits anchor names to [A-Za-z0-9_-] and tags to URI characters,
 * so they are printed as they are. */
static int
check_properties(const struct ydoc *doc, const yaml_event_t *ev,
    struct ember_error *err)
{
	const yaml_char_t *anchor = NULL, *tag = NULL;
	char tagbuf[128];
	unsigned line = (unsigned)ev->start_mark.line + 1;
	unsigned column = (unsigned)ev->start_mark.column + 1;
	const char *hint = "repeat the value instead";

	switch (ev->type) {
	case YAML_ALIAS_EVENT:
		anchor = ev->data.alias.anchor;
		return error_at(doc->filename, line, column, err, hint,
		    "anchors and aliases are not supported (*%.*s)", SHOW_MAX,
		    (const char *)anchor);
	case YAML_SCALAR_EVENT:
		anchor = ev->data.scalar.anchor;
		tag = ev->data.scalar.tag;
		break;
	case YAML_SEQUENCE_START_EVENT:
		anchor = ev->data.sequence_start.anchor;
		tag = ev->data.sequence_start.tag;
		break;
	case YAML_MAPPING_START_EVENT:
		anchor = ev->data.mapping_start.anchor;
		tag = ev->data.mapping_start.tag;
		break;
	default:
		return 0;
	}
	if (anchor != NULL)
		return error_at(doc->filename, line, column, err, hint,
		    "anchors and aliases are not supported (&%.*s)", SHOW_MAX,
		    (const char *)anchor);
	if (tag != NULL) {
		short_tag(tagbuf, sizeof(tagbuf), tag);
		return error_at(doc->filename, line, column, err,
		    "write the value without a tag; quote it to make it a string",
		    "tags are not supported (%.*s)", SHOW_MAX, tagbuf);
	}
	return 0;
}

struct builder {
	struct ydoc *doc;
	struct ydoc_node *stack[YDOC_MAX_DEPTH];
	int depth;
	int documents;
	struct ember_error *err;
};

static int
top_level_check(struct builder *b, const struct ydoc_node *node)
{
	char buf[SHOW_MAX * 4 + 32];

	if (node->type == YDOC_MAPPING || ydoc_node_is_null(node))
		return 0;
	return node_error(b->doc, node, b->err, NULL,
	    "expected a mapping of keys at the top level, got %s",
	    describe(buf, sizeof(buf), node, false));
}

/* Adds a new node under the open collection (or as the root). */
static int
builder_add(struct builder *b, struct ydoc_node *node)
{
	if (b->depth == 0) {
		if (b->doc->root != NULL) {
			node_free(node);
			return ember_error_set(b->err, EK_INTERNAL, NULL,
			    "%s: second root node", b->doc->filename);
		}
		b->doc->root = node;
		return top_level_check(b, node);
	}
	if (node_append(b->stack[b->depth - 1], node) != 0) {
		node_free(node);
		return ember_error_set(b->err, EK_INVALID_SPEC, NULL,
		    "%s: out of memory while parsing", b->doc->filename);
	}
	return 0;
}

static int
builder_event(struct builder *b, const yaml_event_t *ev)
{
	struct ydoc_node *node;
	enum ydoc_node_type type;

	if (check_properties(b->doc, ev, b->err) != 0)
		return -1;
	switch (ev->type) {
	case YAML_DOCUMENT_START_EVENT:
		if (b->documents++ > 0)
			return error_at(b->doc->filename,
			    (unsigned)ev->start_mark.line + 1,
			    (unsigned)ev->start_mark.column + 1, b->err,
			    "put each document in its own file",
			    "more than one document in the file");
		return 0;
	case YAML_SCALAR_EVENT:
		if ((node = node_new(YDOC_SCALAR, &ev->start_mark)) == NULL ||
		    (node->value = malloc(ev->data.scalar.length + 1)) == NULL) {
			node_free(node);
			return ember_error_set(b->err, EK_INVALID_SPEC, NULL,
			    "%s: out of memory while parsing", b->doc->filename);
		}
		memcpy(node->value, ev->data.scalar.value, ev->data.scalar.length);
		node->value[ev->data.scalar.length] = '\0';
		node->len = ev->data.scalar.length;
		node->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
		return builder_add(b, node);
	case YAML_SEQUENCE_START_EVENT:
	case YAML_MAPPING_START_EVENT:
		if (b->depth == YDOC_MAX_DEPTH)
			return error_at(b->doc->filename,
			    (unsigned)ev->start_mark.line + 1,
			    (unsigned)ev->start_mark.column + 1, b->err, NULL,
			    "nested more than %d levels deep", YDOC_MAX_DEPTH);
		type = ev->type == YAML_MAPPING_START_EVENT ? YDOC_MAPPING :
		    YDOC_SEQUENCE;
		if ((node = node_new(type, &ev->start_mark)) == NULL)
			return ember_error_set(b->err, EK_INVALID_SPEC, NULL,
			    "%s: out of memory while parsing", b->doc->filename);
		if (builder_add(b, node) != 0)
			return -1;
		b->stack[b->depth++] = node;
		return 0;
	case YAML_SEQUENCE_END_EVENT:
	case YAML_MAPPING_END_EVENT:
		if (b->depth > 0)
			b->depth--;
		return 0;
	default:
		return 0;
	}
}

int
ydoc_parse(const char *text, size_t len, const char *filename,
    struct ydoc **docp, struct ember_error *err)
{
	struct builder b = { .err = err };
	yaml_parser_t parser;
	yaml_event_t ev;
	yaml_mark_t start = { 0, 0, 0 };
	struct ydoc *doc;
	bool done = false;
	int r = 0;

	*docp = NULL;
	if ((doc = calloc(1, sizeof(*doc))) == NULL ||
	    (doc->filename = strdup(filename != NULL ? filename : "-")) == NULL) {
		free(doc);
		return ember_error_set(err, EK_INVALID_SPEC, NULL,
		    "%s: out of memory", filename);
	}
	b.doc = doc;
	if (!yaml_parser_initialize(&parser)) {
		ydoc_free(doc);
		return ember_error_set(err, EK_INVALID_SPEC, NULL,
		    "%s: out of memory", filename);
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	while (!done && r == 0) {
		if (!yaml_parser_parse(&parser, &ev)) {
			r = syntax_error(doc, &parser, text, len, err);
			break;
		}
		r = builder_event(&b, &ev);
		done = ev.type == YAML_STREAM_END_EVENT;
		yaml_event_delete(&ev);
	}
	yaml_parser_delete(&parser);
	if (r == 0 && (doc->root == NULL || ydoc_node_is_null(doc->root))) {
		/* An empty file, or "---" alone: no keys. */
		if (doc->root != NULL)
			start.line = doc->root->line - 1;
		node_free(doc->root);
		if ((doc->root = node_new(YDOC_MAPPING, &start)) == NULL)
			r = ember_error_set(err, EK_INVALID_SPEC, NULL,
			    "%s: out of memory", filename);
	}
	if (r != 0) {
		ydoc_free(doc);
		return -1;
	}
	*docp = doc;
	return 0;
}

int
ydoc_load(const char *path, struct ydoc **docp, struct ember_error *err)
{
	struct stat st;
	char *text;
	size_t len = 0;
	ssize_t n;
	int fd, r;

	*docp = NULL;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return ember_error_set(err, EK_INVALID_SPEC, NULL,
		    "cannot open %s: %s", path, strerror(errno));
	if (fstat(fd, &st) == -1) {
		r = errno;
		close(fd);
		return ember_error_set(err, EK_INVALID_SPEC, NULL,
		    "cannot read %s: %s", path, strerror(r));
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return ember_error_set(err, EK_INVALID_SPEC, NULL,
		    "cannot read %s: %s", path, S_ISDIR(st.st_mode) ?
		    strerror(EISDIR) : "not a regular file");
	}
	if ((text = malloc(YDOC_MAX_FILE + 1)) == NULL) {
		close(fd);
		return ember_error_set(err, EK_INVALID_SPEC, NULL,
		    "cannot read %s: %s", path, strerror(ENOMEM));
	}
	for (;;) {
		n = read(fd, text + len, YDOC_MAX_FILE + 1 - len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			r = errno;
			close(fd);
			free(text);
			return ember_error_set(err, EK_INVALID_SPEC, NULL,
			    "cannot read %s: %s", path, strerror(r));
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > YDOC_MAX_FILE) {
			close(fd);
			free(text);
			return ember_error_set(err, EK_INVALID_SPEC, NULL,
			    "%s: file is larger than %d KiB", path,
			    YDOC_MAX_FILE / 1024);
		}
	}
	close(fd);
	r = ydoc_parse(text, len, path, docp, err);
	free(text);
	return r;
}

/* Levenshtein distance, capped: only short names are compared. */
static size_t
edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), row[PATH_MAX_KEY + 1];
	size_t i, j, prev, cur;

	if (la > PATH_MAX_KEY || lb > PATH_MAX_KEY)
		return (size_t)-1;
	for (j = 0; j <= lb; j++)
		row[j] = j;
	for (i = 1; i <= la; i++) {
		prev = row[0];
		row[0] = i;
		for (j = 1; j <= lb; j++) {
			cur = row[j];
			row[j] = prev + (a[i - 1] != b[j - 1]);
			if (row[j - 1] + 1 < row[j])
				row[j] = row[j - 1] + 1;
			if (cur + 1 < row[j])
				row[j] = cur + 1;
			prev = cur;
		}
	}
	return row[lb];
}

/* "did you mean ..." for a near miss, else the list of known keys. */
static void
unknown_key_hint(char *buf, size_t size, const char *name,
    const struct ydoc_key *table)
{
	const struct ydoc_key *row, *best = NULL;
	size_t d, best_d = 3, n;

	for (row = table; row->name != NULL; row++) {
		d = edit_distance(name, row->name);
		if (d < best_d) {
			best_d = d;
			best = row;
		}
	}
	if (best != NULL) {
		snprintf(buf, size, "did you mean \"%s\"?", best->name);
		return;
	}
	n = (size_t)snprintf(buf, size, "known keys:");
	for (row = table; row->name != NULL && n < size; row++)
		n += (size_t)snprintf(buf + n, size - n, "%s %s",
		    row == table ? "" : ",", row->name);
}

static bool
parse_uint(const char *s, size_t len, uint64_t *out)
{
	uint64_t v = 0;
	unsigned d;

	if (len == 0 || (s[0] == '0' && len > 1))
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		d = (unsigned)(s[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*out = v;
	return true;
}

/* Sizes in messages: "16M", "1T", or bytes when not a whole KiB. */
static const char *
size_text(char *buf, size_t size, uint64_t n)
{
	static const char units[] = "KMGTPE";
	int u = -1;

	while (n != 0 && n % 1024 == 0 && u < 5) {
		n /= 1024;
		u++;
	}
	if (u < 0)
		snprintf(buf, size, "%llu", (unsigned long long)n);
	else
		snprintf(buf, size, "%llu%c", (unsigned long long)n, units[u]);
	return buf;
}

static int
range_error(const struct ydoc *doc, const struct ydoc_node *node,
    const struct ydoc_key *row, const char *path, const char *got,
    struct ember_error *err)
{
	char lo[32], hi[32];
	uint64_t scale = row->type == YDOC_SIZE_MIB ? 1024 * 1024 : 1;

	if (row->type == YDOC_UINT) {
		if (row->max == UINT64_MAX)
			return node_error(doc, node, err, NULL,
			    "\"%s\": expected an integer of at least %llu, got %s",
			    path, (unsigned long long)row->min, got);
		return node_error(doc, node, err, NULL,
		    "\"%s\": expected an integer from %llu to %llu, got %s", path,
		    (unsigned long long)row->min, (unsigned long long)row->max,
		    got);
	}
	size_text(lo, sizeof(lo), row->min * scale);
	if (row->max == UINT64_MAX || row->max > UINT64_MAX / scale)
		return node_error(doc, node, err, NULL,
		    "\"%s\": expected a size of at least %s, got %s", path, lo, got);
	size_text(hi, sizeof(hi), row->max * scale);
	return node_error(doc, node, err, NULL,
	    "\"%s\": expected a size from %s to %s, got %s", path, lo, hi, got);
}

static bool
is_yaml11_bool(const char *s)
{
	static const char *const words[] = { "yes", "no", "on", "off", "y", "n",
	    "Yes", "No", "On", "Off", "YES", "NO", "ON", "OFF", "True", "False",
	    "TRUE", "FALSE", "Y", "N", NULL };

	for (size_t i = 0; words[i] != NULL; i++)
		if (strcmp(s, words[i]) == 0)
			return true;
	return false;
}

static int walk(const struct ydoc *, const struct ydoc_node *,
    const struct ydoc_key *, const char *, void *, struct ember_error *);

/* Converts one value to its row's type and calls the setter. */
static int
convert(const struct ydoc *doc, const struct ydoc_key *row, const char *path,
    const struct ydoc_node *key, const struct ydoc_node *node, void *obj,
    struct ember_error *err)
{
	struct ydoc_value v = { .key = key, .node = node };
	char got[SHOW_MAX * 4 + 32], list[256];
	uint64_t bytes;
	size_t n;
	int r;

	if (row->type == YDOC_MAP) {
		if (ydoc_node_is_null(node))
			return 0;	/* "qemu:" with every subkey commented out */
		if (node->type != YDOC_MAPPING)
			return node_error(doc, node, err, NULL,
			    "\"%s\": expected a mapping, got %s", path,
			    describe(got, sizeof(got), node, false));
		return walk(doc, node, row->keys, path, obj, err);
	}
	describe(got, sizeof(got), node,
	    row->type == YDOC_BOOL || row->type == YDOC_UINT);
	if (node->type == YDOC_SCALAR && strlen(node->value) != node->len)
		return node_error(doc, node, err, NULL,
		    "\"%s\": NUL characters are not allowed, got %s", path, got);

	switch (row->type) {
	case YDOC_STRING:
		if (node->type != YDOC_SCALAR || ydoc_node_is_null(node))
			return node_error(doc, node, err, NULL,
			    "\"%s\": expected a string, got %s", path, got);
		if (node->len == 0 && !(row->flags & YDOC_EMPTY_OK))
			return node_error(doc, node, err, NULL,
			    "\"%s\": expected a non-empty string, got %s", path, got);
		if ((row->flags & YDOC_ABSOLUTE) && node->value[0] != '/')
			return node_error(doc, node, err, NULL,
			    "\"%s\": expected an absolute path, got %s", path, got);
		v.str = node->value;
		break;
	case YDOC_ENUM:
		for (n = 0; node->type == YDOC_SCALAR && row->choices[n] != NULL; n++)
			if (strcmp(node->value, row->choices[n]) == 0)
				break;
		if (node->type != YDOC_SCALAR || row->choices[n] == NULL) {
			list[0] = '\0';
			for (size_t i = 0, off = 0; row->choices[i] != NULL &&
			    off < sizeof(list); i++)
				off += (size_t)snprintf(list + off, sizeof(list) - off,
				    "%s%s", i == 0 ? "" : ", ", row->choices[i]);
			return node_error(doc, node, err, NULL,
			    "\"%s\": expected one of %s, got %s", path, list, got);
		}
		v.str = row->choices[n];
		break;
	case YDOC_BOOL:
		if (node->type == YDOC_SCALAR && node->plain &&
		    strcmp(node->value, "true") == 0)
			v.b = true;
		else if (node->type == YDOC_SCALAR && node->plain &&
		    strcmp(node->value, "false") == 0)
			v.b = false;
		else if (node->type == YDOC_SCALAR && node->plain &&
		    is_yaml11_bool(node->value))
			return node_error(doc, node, err,
			    "ember reads YAML 1.2: write true or false",
			    "\"%s\": expected true or false, got %s (only true and "
			    "false are booleans)", path, got);
		else
			return node_error(doc, node, err, NULL,
			    "\"%s\": expected true or false, got %s", path, got);
		break;
	case YDOC_UINT:
		if (node->type != YDOC_SCALAR || !node->plain ||
		    !parse_uint(node->value, node->len, &v.u) ||
		    v.u < row->min || v.u > row->max)
			return range_error(doc, node, row, path, got, err);
		break;
	case YDOC_SIZE:
	case YDOC_SIZE_MIB:
		if (node->type != YDOC_SCALAR || ydoc_node_is_null(node))
			return node_error(doc, node, err, NULL,
			    "\"%s\": expected a size such as 512M or 2G, got %s",
			    path, got);
		r = size_parse(node->value, &bytes);
		if (r == -ERANGE)
			return range_error(doc, node, row, path, got, err);
		if (r != 0)
			return node_error(doc, node, err,
			    "units are K, M, G and T (binary multiples)",
			    "\"%s\": expected a size with a unit such as 512M or "
			    "2G, got %s", path, got);
		v.u = bytes;
		if (row->type == YDOC_SIZE_MIB) {
			if (bytes % (1024 * 1024) != 0)
				return node_error(doc, node, err, NULL,
				    "\"%s\": expected a whole number of MiB, got %s",
				    path, got);
			v.u = bytes / (1024 * 1024);
		}
		if (v.u < row->min || v.u > row->max)
			return range_error(doc, node, row, path, got, err);
		break;
	case YDOC_MAP:
	case YDOC_NODE:
		break;
	}
	if (row->set != NULL && (r = row->set(obj, &v)) != 0)
		return node_error(doc, node, err, NULL, "\"%s\": %s", path,
		    strerror(-r));
	return 0;
}

static int
walk(const struct ydoc *doc, const struct ydoc_node *map,
    const struct ydoc_key *table, const char *prefix, void *obj,
    struct ember_error *err)
{
	const struct ydoc_node *seen[KEYS_MAX] = { NULL }, *key, *value;
	const struct ydoc_key *row;
	char path[PATH_MAX_KEY], buf[SHOW_MAX * 4 + 32], hint[256];
	size_t i, nrows;

	for (nrows = 0; table[nrows].name != NULL; nrows++)
		;
	if (nrows > KEYS_MAX)
		return ember_error_set(err, EK_INTERNAL, NULL,
		    "key table has more than %d rows", KEYS_MAX);
	if (map->type != YDOC_MAPPING)
		return node_error(doc, map, err, NULL, "expected a mapping, got %s",
		    describe(buf, sizeof(buf), map, false));

	for (i = 0; i + 1 < map->nitems; i += 2) {
		key = map->items[i];
		value = map->items[i + 1];
		if (key->type != YDOC_SCALAR)
			return node_error(doc, key, err, NULL,
			    "expected a key name, got %s",
			    describe(buf, sizeof(buf), key, false));
		for (row = table; row->name != NULL; row++)
			if (strlen(row->name) == key->len &&
			    strcmp(row->name, key->value) == 0)
				break;
		show(buf, sizeof(buf), key->value, key->len);
		if (row->name == NULL) {
			unknown_key_hint(hint, sizeof(hint), key->value, table);
			if (prefix != NULL)
				return node_error(doc, key, err, hint,
				    "unknown key %s in \"%s\"", buf, prefix);
			return node_error(doc, key, err, hint, "unknown key %s", buf);
		}
		if (seen[row - table] != NULL)
			return node_error(doc, key, err, "remove one of them",
			    "duplicate key %s (first at line %u)", buf,
			    seen[row - table]->line);
		seen[row - table] = key;
		if (prefix != NULL)
			snprintf(path, sizeof(path), "%s.%s", prefix, row->name);
		else
			snprintf(path, sizeof(path), "%s", row->name);
		if (convert(doc, row, path, key, value, obj, err) != 0)
			return -1;
	}
	return 0;
}

int
ydoc_walk(const struct ydoc *doc, const struct ydoc_node *map,
    const struct ydoc_key *table, void *obj, struct ember_error *err)
{
	return walk(doc, map, table, NULL, obj, err);
}
