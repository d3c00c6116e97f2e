/*
 * The vsock CID allocator. Which CIDs are taken lives in a sparse 64-ary
 * bitmap tree over (cid - min): an internal node has 64 children and two
 * masks, "full" (that child has no free slot) and "used" (that child has at
 * least one taken slot); the bottom nodes hold their 64 leaf words inline.
 * An absent child is all free, a subtree whose last slot is released is
 * freed, and the lowest free slot is found by following the lowest clear bit
 * of "full" from the root, so every operation touches at most six nodes even
 * over the whole 2^32 range. Who holds what lives in two jansson objects
 * used as hash tables: owner -> CID (integer) and decimal CID -> owner.
 *
 * Slots past the end of the range (the tree spans a power of 64) are never
 * set, so they can only show up as the lowest free slot once everything in
 * range is taken: that is how exhaustion is detected.
 *
 * The state file's text (cids.json) is written whole at every group commit
 * that changes a CID, on the event loop. So once it has been asked for, the
 * text of its entries is kept, in CID order, and each change patches it: a
 * pass over the entries' lengths to find its place, and a memmove of the
 * entries after it, instead of a walk of every CID, a hash lookup for each
 * owner and its escaping, per commit. A
 * patch that fails (out of memory) drops the kept text; the next request
 * builds it again from the table.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cid-alloc.h"

#define CID_FANOUT	64
#define CID_ALL		UINT64_MAX
#define CID_MAX_DEPTH	6	/* 64^6 = 2^36 covers any 32-bit range */

struct cid_node {
	uint64_t		 full;
	uint64_t		 used;
	union {
		struct cid_node	*child[CID_FANOUT];
		uint64_t	 word[CID_FANOUT];	/* bottom level */
	} u;
};

/* cid_alloc_to_text's growing buffer; a failed growth sticks. */
struct cid_text {
	char	*buf;
	size_t	 len, cap;
	bool	 failed;
};

/* One entry of the kept text: its CID and the length of its text. */
struct cid_text_entry {
	uint32_t	 cid;
	uint32_t	 len;
};

/* The kept text: ,"CID":"owner" for every allocation, in CID order, and
 * each entry's CID and length (to find where one goes). */
struct cid_text_index {
	bool			 valid;
	struct cid_text		 text;
	struct cid_text_entry	*entry;
	size_t			 n, cap;
};

struct cid_alloc {
	uint32_t		 min;
	uint32_t		 max;
	uint64_t		 size;		/* max - min + 1 */
	int			 depth;		/* levels of nodes, >= 1 */
	struct cid_node		*root;
	json_t			*by_owner;	/* owner -> CID */
	json_t			*by_cid;	/* "CID" -> owner */
	struct cid_text_index	 index;
};

static void cid_index_insert(struct cid_alloc *a, uint32_t cid, const char *owner);
static void cid_index_remove(struct cid_alloc *a, uint32_t cid);
static void cid_index_drop(struct cid_alloc *a);

/* Bit position of the child index at node height h (0 = bottom level). */
static inline unsigned
cid_shift(int h)
{
	return 6 * (unsigned)(h + 1);
}

static void
cid_node_free(struct cid_node *n, int h)
{
	uint64_t	used;

	if (n == NULL)
		return;
	if (h > 0) {
		for (used = n->used; used != 0; used &= used - 1)
			cid_node_free(n->u.child[__builtin_ctzll(used)], h - 1);
	}
	free(n);
}

struct cid_alloc *
cid_alloc_new(uint32_t min, uint32_t max)
{
	struct cid_alloc	*a;
	uint64_t		 span;

	if (min < CID_DEFAULT_MIN || max > CID_DEFAULT_MAX || min > max) {
		errno = EINVAL;
		return NULL;
	}
	if ((a = calloc(1, sizeof(*a))) == NULL)
		return NULL;
	a->min = min;
	a->max = max;
	a->size = (uint64_t)max - min + 1;
	a->depth = 1;
	for (span = (uint64_t)CID_FANOUT * CID_FANOUT; span < a->size;
	    span *= CID_FANOUT)
		a->depth++;
	a->by_owner = json_object();
	a->by_cid = json_object();
	if (a->by_owner == NULL || a->by_cid == NULL) {
		cid_alloc_free(a);
		errno = ENOMEM;
		return NULL;
	}
	return a;
}

void
cid_alloc_free(struct cid_alloc *a)
{
	if (a == NULL)
		return;
	cid_node_free(a->root, a->depth - 1);
	json_decref(a->by_owner);
	json_decref(a->by_cid);
	cid_index_drop(a);
	free(a);
}

/* Lowest clear slot in the tree; may be past the end of the range. */
static uint64_t
cid_tree_lowest_free(const struct cid_alloc *a)
{
	const struct cid_node	*n = a->root;
	uint64_t		 x = 0;
	unsigned		 i;
	int			 h;

	for (h = a->depth - 1; n != NULL; h--) {
		if (n->full == CID_ALL)		/* only possible at the root */
			return UINT64_MAX;
		i = __builtin_ctzll(~n->full);
		x |= (uint64_t)i << cid_shift(h);
		if (h == 0)
			return x | __builtin_ctzll(~n->u.word[i]);
		n = n->u.child[i];
	}
	return x;
}

static bool
cid_tree_test(const struct cid_alloc *a, uint64_t x)
{
	const struct cid_node	*n = a->root;
	int			 h;

	for (h = a->depth - 1; h > 0 && n != NULL; h--)
		n = n->u.child[(x >> cid_shift(h)) & 63];
	if (n == NULL)
		return false;
	return (n->u.word[(x >> 6) & 63] >> (x & 63)) & 1;
}

/* Marks slot x taken. 0 or -ENOMEM; the tree is unchanged on failure. */
static int
cid_tree_set(struct cid_alloc *a, uint64_t x)
{
	struct cid_node	*path[CID_MAX_DEPTH] = { NULL }, **slot = &a->root, *n;
	unsigned	 idx[CID_MAX_DEPTH] = { 0 }, i;
	int		 h, created = -1;

	for (h = a->depth - 1; h >= 0; h--) {
		if (*slot == NULL) {
			if ((*slot = calloc(1, sizeof(**slot))) == NULL)
				goto fail;
			if (created == -1)
				created = h;
		}
		n = path[h] = *slot;
		i = idx[h] = (x >> cid_shift(h)) & 63;
		if (h > 0)
			slot = &n->u.child[i];
	}

	n = path[0];
	i = idx[0];
	n->u.word[i] |= (uint64_t)1 << (x & 63);
	for (h = 0; h < a->depth; h++) {
		n = path[h];
		i = idx[h];
		n->used |= (uint64_t)1 << i;
		if (h == 0 ? n->u.word[i] == CID_ALL :
		    path[h - 1]->full == CID_ALL)
			n->full |= (uint64_t)1 << i;
	}
	return 0;

fail:
	/* Undo the nodes made on the way down: each links only the next. */
	if (created != -1) {
		if (created == a->depth - 1)
			a->root = NULL;
		else
			path[created + 1]->u.child[idx[created + 1]] = NULL;
		for (; created > h; created--)
			free(path[created]);
	}
	return -ENOMEM;
}

/* Marks slot x free, freeing nodes left empty. */
static void
cid_tree_clear(struct cid_alloc *a, uint64_t x)
{
	struct cid_node	*path[CID_MAX_DEPTH] = { NULL }, *n = a->root;
	unsigned	 idx[CID_MAX_DEPTH] = { 0 }, i;
	int		 h;
	bool		 emptied;

	for (h = a->depth - 1; h >= 0; h--) {
		if (n == NULL)
			return;
		path[h] = n;
		i = idx[h] = (x >> cid_shift(h)) & 63;
		if (h > 0)
			n = n->u.child[i];
	}

	n = path[0];
	i = idx[0];
	n->u.word[i] &= ~((uint64_t)1 << (x & 63));
	emptied = n->u.word[i] == 0;
	for (h = 0; h < a->depth; h++) {
		n = path[h];
		i = idx[h];
		n->full &= ~((uint64_t)1 << i);
		if (emptied) {
			if (h > 0) {
				free(n->u.child[i]);
				n->u.child[i] = NULL;
			}
			n->used &= ~((uint64_t)1 << i);
			emptied = n->used == 0;
		}
	}
	if (emptied) {
		free(a->root);
		a->root = NULL;
	}
}

/*
 * cid in decimal into buf (at least CID_KEY_LEN bytes), NUL-terminated;
 * returns the digits written. By hand rather than snprintf: cids.json is
 * written whole at every group commit that changes it, a key per entry,
 * and snprintf was most of that cost (on the event loop).
 */
#define CID_KEY_LEN	11	/* 4294967295 and its NUL */

static size_t
cid_key(char *buf, uint32_t cid)
{
	char	 rev[CID_KEY_LEN];
	size_t	 n = 0;

	do {
		rev[n++] = (char)('0' + cid % 10);
		cid /= 10;
	} while (cid != 0);
	for (size_t i = 0; i < n; i++)
		buf[i] = rev[n - 1 - i];
	buf[n] = '\0';
	return n;
}

/* Records owner <-> cid in both maps. 0, -EINVAL or -ENOMEM. */
static int
cid_map_add(struct cid_alloc *a, const char *owner, uint32_t cid)
{
	json_t	*o;
	char	 key[CID_KEY_LEN];

	cid_key(key, cid);
	if ((o = json_string(owner)) == NULL)
		return -EINVAL;		/* not UTF-8 */
	if (json_object_set_new(a->by_cid, key, o) != 0)
		return -ENOMEM;
	if (json_object_set_new(a->by_owner, owner, json_integer(cid)) != 0) {
		json_object_del(a->by_cid, key);
		return -ENOMEM;
	}
	cid_index_insert(a, cid, owner);
	return 0;
}

static bool
cid_owner_valid(const char *owner)
{
	return owner != NULL && *owner != '\0';
}

int
cid_alloc_get(struct cid_alloc *a, const char *owner, uint32_t *cid)
{
	uint64_t	x;
	uint32_t	c;
	int		r;

	if (!cid_owner_valid(owner))
		return -EINVAL;
	if (cid_alloc_lookup(a, owner, cid))
		return 0;
	if ((x = cid_tree_lowest_free(a)) >= a->size)
		return -ENOSPC;
	if ((r = cid_tree_set(a, x)) != 0)
		return r;
	c = a->min + (uint32_t)x;
	if ((r = cid_map_add(a, owner, c)) != 0) {
		cid_tree_clear(a, x);
		return r;
	}
	*cid = c;
	return 0;
}

int
cid_alloc_claim(struct cid_alloc *a, const char *owner, uint32_t cid)
{
	uint64_t	x;
	uint32_t	held;
	int		r;

	if (!cid_owner_valid(owner))
		return -EINVAL;
	if (cid < a->min || cid > a->max)
		return -ERANGE;
	if (cid_alloc_lookup(a, owner, &held))
		return held == cid ? 0 : -EBUSY;
	x = cid - a->min;
	if (cid_tree_test(a, x))
		return -EEXIST;
	if ((r = cid_tree_set(a, x)) != 0)
		return r;
	if ((r = cid_map_add(a, owner, cid)) != 0) {
		cid_tree_clear(a, x);
		return r;
	}
	return 0;
}

int
cid_alloc_release(struct cid_alloc *a, const char *owner)
{
	uint32_t	cid;
	char		key[CID_KEY_LEN];

	if (owner == NULL || !cid_alloc_lookup(a, owner, &cid))
		return -ENOENT;
	cid_tree_clear(a, cid - a->min);
	cid_index_remove(a, cid);
	cid_key(key, cid);
	json_object_del(a->by_cid, key);
	json_object_del(a->by_owner, owner);
	return 0;
}

bool
cid_alloc_lookup(const struct cid_alloc *a, const char *owner, uint32_t *cid)
{
	json_t	*v;

	if (owner == NULL || (v = json_object_get(a->by_owner, owner)) == NULL)
		return false;
	if (cid != NULL)
		*cid = (uint32_t)json_integer_value(v);
	return true;
}

const char *
cid_alloc_owner(const struct cid_alloc *a, uint32_t cid)
{
	char	key[CID_KEY_LEN];

	cid_key(key, cid);
	return json_string_value(json_object_get(a->by_cid, key));
}

size_t
cid_alloc_count(const struct cid_alloc *a)
{
	return json_object_size(a->by_owner);
}

uint32_t
cid_alloc_min(const struct cid_alloc *a)
{
	return a->min;
}

uint32_t
cid_alloc_max(const struct cid_alloc *a)
{
	return a->max;
}

static void
cid_walk(const struct cid_alloc *a, const struct cid_node *n, int h,
    uint64_t base, void (*fn)(void *, uint32_t, const char *), void *ctx)
{
	uint64_t	used, word, x;
	uint32_t	cid;
	unsigned	i;

	for (used = n->used; used != 0; used &= used - 1) {
		i = __builtin_ctzll(used);
		x = base | (uint64_t)i << cid_shift(h);
		if (h > 0) {
			cid_walk(a, n->u.child[i], h - 1, x, fn, ctx);
			continue;
		}
		for (word = n->u.word[i]; word != 0; word &= word - 1) {
			cid = a->min + (uint32_t)(x | __builtin_ctzll(word));
			fn(ctx, cid, cid_alloc_owner(a, cid));
		}
	}
}

void
cid_alloc_foreach(const struct cid_alloc *a,
    void (*fn)(void *ctx, uint32_t cid, const char *owner), void *ctx)
{
	if (a->root != NULL)
		cid_walk(a, a->root, a->depth - 1, 0, fn, ctx);
}

static void
cid_to_json_one(void *ctx, uint32_t cid, const char *owner)
{
	json_t	*allocs = ctx;
	char	 key[CID_KEY_LEN];

	cid_key(key, cid);
	json_object_set_new(allocs, key, json_string(owner));
}

json_t *
cid_alloc_to_json(const struct cid_alloc *a)
{
	json_t	*doc, *allocs;

	if ((allocs = json_object()) == NULL)
		return NULL;
	cid_alloc_foreach(a, cid_to_json_one, allocs);
	if (json_object_size(allocs) != cid_alloc_count(a)) {
		json_decref(allocs);		/* out of memory on the way */
		return NULL;
	}
	doc = json_pack("{s:i, s:o}", "version", 1, "allocations", allocs);
	return doc;
}

static void
cid_text_put(struct cid_text *t, const char *s, size_t n)
{
	if (t->failed)
		return;
	if (t->len + n + 1 > t->cap) {
		size_t	 cap = t->cap;
		char	*grown;

		while (t->len + n + 1 > cap)
			cap *= 2;
		if ((grown = realloc(t->buf, cap)) == NULL) {
			t->failed = true;
			return;
		}
		t->buf = grown;
		t->cap = cap;
	}
	memcpy(t->buf + t->len, s, n);
	t->len += n;
	t->buf[t->len] = '\0';
}

/* A JSON string as jansson's compact dump writes it: '"', '\\' and control
 * characters escaped, other bytes (UTF-8, which an owner is) as they are. */
static void
cid_text_put_string(struct cid_text *t, const char *s)
{
	const char	*run = s;
	char		 esc[8];

	cid_text_put(t, "\"", 1);
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		cid_text_put(t, run, (size_t)(s - run));
		switch (c) {
		case '"': cid_text_put(t, "\\\"", 2); break;
		case '\\': cid_text_put(t, "\\\\", 2); break;
		case '\b': cid_text_put(t, "\\b", 2); break;
		case '\f': cid_text_put(t, "\\f", 2); break;
		case '\n': cid_text_put(t, "\\n", 2); break;
		case '\r': cid_text_put(t, "\\r", 2); break;
		case '\t': cid_text_put(t, "\\t", 2); break;
		default:
			snprintf(esc, sizeof(esc), "\\u%04X", c);
			cid_text_put(t, esc, 6);
		}
		run = s + 1;
	}
	cid_text_put(t, run, (size_t)(s - run));
	cid_text_put(t, "\"", 1);
}

/* Appends ,"CID":"owner" to t. */
static void
cid_text_put_entry(struct cid_text *t, uint32_t cid, const char *owner)
{
	char	 key[CID_KEY_LEN + 4];	/* ,"CID": */
	size_t	 n = 0;

	key[n++] = ',';
	key[n++] = '"';
	n += cid_key(key + n, cid);
	key[n++] = '"';
	key[n++] = ':';
	cid_text_put(t, key, n);
	cid_text_put_string(t, owner);
}

static void
cid_index_drop(struct cid_alloc *a)
{
	struct cid_text_index	*ix = &a->index;

	free(ix->text.buf);
	free(ix->entry);
	memset(ix, 0, sizeof(*ix));
}

/* Room for one more entry; false when out of memory. */
static bool
cid_index_reserve(struct cid_text_index *ix)
{
	size_t			 cap = ix->cap == 0 ? 64 : ix->cap * 2;
	struct cid_text_entry	*grown;

	if (ix->n < ix->cap)
		return true;
	if ((grown = realloc(ix->entry, cap * sizeof(*grown))) == NULL)
		return false;
	ix->entry = grown;
	ix->cap = cap;
	return true;
}

/* The first entry whose CID is >= cid, and where its text starts. */
static size_t
cid_index_find(const struct cid_text_index *ix, uint32_t cid, size_t *offset)
{
	size_t	 i, off = 0;

	for (i = 0; i < ix->n && ix->entry[i].cid < cid; i++)
		off += ix->entry[i].len;
	*offset = off;
	return i;
}

static void
cid_index_insert(struct cid_alloc *a, uint32_t cid, const char *owner)
{
	struct cid_text_index	*ix = &a->index;
	struct cid_text		 entry = { NULL, 0, 64, false };
	size_t			 i, off;

	if (!ix->valid)
		return;
	if ((entry.buf = malloc(entry.cap)) == NULL)
		goto fail;
	cid_text_put_entry(&entry, cid, owner);
	if (entry.failed || !cid_index_reserve(ix))
		goto fail;
	/* Grow the text by the entry's length (its bytes are overwritten). */
	size_t tail = ix->text.len;
	cid_text_put(&ix->text, entry.buf, entry.len);
	if (ix->text.failed)
		goto fail;
	i = cid_index_find(ix, cid, &off);
	memmove(ix->text.buf + off + entry.len, ix->text.buf + off, tail - off);
	memcpy(ix->text.buf + off, entry.buf, entry.len);
	memmove(ix->entry + i + 1, ix->entry + i, (ix->n - i) * sizeof(*ix->entry));
	ix->entry[i] = (struct cid_text_entry){ cid, (uint32_t)entry.len };
	ix->n++;
	free(entry.buf);
	return;
fail:
	free(entry.buf);
	cid_index_drop(a);
}

static void
cid_index_remove(struct cid_alloc *a, uint32_t cid)
{
	struct cid_text_index	*ix = &a->index;
	size_t			 i, off, n;

	if (!ix->valid)
		return;
	i = cid_index_find(ix, cid, &off);
	if (i == ix->n || ix->entry[i].cid != cid) {
		cid_index_drop(a);	/* cannot happen: rebuild rather than trust it */
		return;
	}
	n = ix->entry[i].len;
	memmove(ix->text.buf + off, ix->text.buf + off + n, ix->text.len - off - n);
	ix->text.len -= n;
	ix->text.buf[ix->text.len] = '\0';
	memmove(ix->entry + i, ix->entry + i + 1, (ix->n - i - 1) * sizeof(*ix->entry));
	ix->n--;
}

static void
cid_index_add_one(void *ctx, uint32_t cid, const char *owner)
{
	struct cid_text_index	*ix = ctx;
	size_t			 before = ix->text.len;

	if (ix->text.failed)
		return;
	if (!cid_index_reserve(ix)) {
		ix->text.failed = true;
		return;
	}
	cid_text_put_entry(&ix->text, cid, owner);
	ix->entry[ix->n++] = (struct cid_text_entry){ cid, (uint32_t)(ix->text.len - before) };
}

/* Builds the kept text from the table; false when out of memory. */
static bool
cid_index_build(struct cid_alloc *a)
{
	struct cid_text_index	*ix = &a->index;

	cid_index_drop(a);
	ix->text.cap = 64 + 32 * cid_alloc_count(a);
	if ((ix->text.buf = malloc(ix->text.cap)) == NULL) {
		cid_index_drop(a);
		return false;
	}
	ix->text.buf[0] = '\0';
	cid_alloc_foreach(a, cid_index_add_one, ix);
	if (ix->text.failed) {
		cid_index_drop(a);
		return false;
	}
	ix->valid = true;
	return true;
}

char *
cid_alloc_to_text(struct cid_alloc *a, size_t *lenp)
{
	static const char	 head[] = "{\"version\":1,\"allocations\":{";
	static const char	 tail[] = "}}\n";
	const struct cid_text	*entries = &a->index.text;
	size_t			 skip, len;
	char			*text;

	if (!a->index.valid && !cid_index_build(a))
		return NULL;
	skip = entries->len > 0 ? 1 : 0;	/* the first entry's comma */
	len = sizeof(head) - 1 + entries->len - skip + sizeof(tail) - 1;
	if ((text = malloc(len + 1)) == NULL)
		return NULL;
	memcpy(text, head, sizeof(head) - 1);
	memcpy(text + sizeof(head) - 1, entries->buf + skip, entries->len - skip);
	memcpy(text + len - (sizeof(tail) - 1), tail, sizeof(tail));	/* and the NUL */
	*lenp = len;
	return text;
}

/* Strict decimal: no sign, no leading zero, no spaces, fits 32 bits. */
static bool
cid_parse_key(const char *key, uint32_t *cid)
{
	uint64_t	v = 0;
	size_t		n;

	for (n = 0; key[n] != '\0'; n++) {
		if (key[n] < '0' || key[n] > '9' || n >= 10)
			return false;
		v = v * 10 + (uint64_t)(key[n] - '0');
	}
	if (n == 0 || (key[0] == '0' && n > 1) || v > UINT32_MAX)
		return false;
	*cid = (uint32_t)v;
	return true;
}

/*
 * A present "version" other than 1 is refused (-EINVAL): the file was
 * written by a newer emberd and guessing at its meaning could hand a CID
 * out twice.
 */
int
cid_alloc_load_json(struct cid_alloc *a, const json_t *doc,
    void (*skipped)(void *ctx, const char *key, const char *why), void *ctx)
{
	const json_t	*allocs, *version, *v;
	const char	*key, *owner, *holder;
	char		 why[128];
	uint32_t	 cid, held;
	int		 r;

	if (!json_is_object(doc))
		return -EINVAL;
	version = json_object_get(doc, "version");
	if (version != NULL && (!json_is_integer(version) ||
	    json_integer_value(version) != 1))
		return -EINVAL;
	allocs = json_object_get(doc, "allocations");
	if (!json_is_object(allocs))
		return -EINVAL;

	json_object_foreach((json_t *)allocs, key, v) {
		why[0] = '\0';
		owner = json_string_value(v);
		if (!cid_parse_key(key, &cid))
			snprintf(why, sizeof(why), "not a CID in decimal");
		else if (owner == NULL || *owner == '\0')
			snprintf(why, sizeof(why), "owner is not a name");
		else if ((r = cid_alloc_claim(a, owner, cid)) == 0)
			continue;
		else if (r == -ERANGE)
			snprintf(why, sizeof(why),
			    "CID outside [%" PRIu32 ", %" PRIu32 "]",
			    a->min, a->max);
		else if (r == -EBUSY && cid_alloc_lookup(a, owner, &held))
			snprintf(why, sizeof(why),
			    "%s already holds CID %" PRIu32, owner, held);
		else if (r == -EEXIST && (holder = cid_alloc_owner(a, cid)))
			snprintf(why, sizeof(why), "CID held by %s", holder);
		else
			snprintf(why, sizeof(why), "%s", strerror(-r));
		if (skipped != NULL)
			skipped(ctx, key, why);
	}
	return 0;
}
