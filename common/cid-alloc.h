/*
 * The vsock CID allocator: hands each owner (a VM name) the lowest free CID
 * in [min, max] (by default [3, 0xFFFFFFFE]). An owner holds at most one CID;
 * asking again returns the same one. Free CIDs are found through a sparse
 * 64-ary bitmap tree, so allocate, claim and release are O(log64 range);
 * owner lookups go through hash tables. Pure data structure: persistence is
 * the caller's (cid_alloc_to_json or _to_text, cid_alloc_load_json).
 */
#ifndef EMBER_CID_ALLOC_H
#define EMBER_CID_ALLOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#define CID_DEFAULT_MIN 3u
#define CID_DEFAULT_MAX 0xFFFFFFFEu

struct cid_alloc;

/* min >= 3, max <= 0xFFFFFFFE, min <= max; NULL otherwise (errno EINVAL). */
struct cid_alloc *cid_alloc_new(uint32_t min, uint32_t max);
void cid_alloc_free(struct cid_alloc *a);

/* Lowest free CID for owner, or owner's existing one. 0 or -ENOSPC. */
int cid_alloc_get(struct cid_alloc *a, const char *owner, uint32_t *cid);
/* Gives owner exactly cid. 0 (also when owner already holds cid), -EEXIST when
 * another owner holds it, -EBUSY when owner holds a different CID, -ERANGE
 * when cid is outside [min, max]. */
int cid_alloc_claim(struct cid_alloc *a, const char *owner, uint32_t cid);
/* Releases owner's CID. 0 or -ENOENT. */
int cid_alloc_release(struct cid_alloc *a, const char *owner);

bool cid_alloc_lookup(const struct cid_alloc *a, const char *owner, uint32_t *cid);
/* Owner of cid, or NULL. */
const char *cid_alloc_owner(const struct cid_alloc *a, uint32_t cid);
size_t cid_alloc_count(const struct cid_alloc *a);
uint32_t cid_alloc_min(const struct cid_alloc *a);
uint32_t cid_alloc_max(const struct cid_alloc *a);

/* {"version": 1, "allocations": {"3": "web", ...}} (new reference). */
json_t *cid_alloc_to_json(const struct cid_alloc *a);
/* The same document as compact JSON text ending in a newline, the bytes
 * json_dumps(JSON_COMPACT) gives plus "\n" (the state file's contents).
 * The first call builds the text from the table and keeps it; every change
 * after that patches it, so a later call costs a copy (it matters on the
 * loop with thousands of CIDs). Malloc'd, its length in *lenp; NULL when
 * out of memory. */
char *cid_alloc_to_text(struct cid_alloc *a, size_t *lenp);
/* Claims every allocation in such an object (allocations already in a are
 * kept). Entries that are malformed, out of range or conflicting are skipped
 * and reported through skipped(ctx, key, why) when given. 0 or -EINVAL when
 * the document is not an object with an "allocations" object. */
int cid_alloc_load_json(struct cid_alloc *a, const json_t *doc,
    void (*skipped)(void *ctx, const char *key, const char *why), void *ctx);
/* Calls fn for every allocation in ascending CID order. */
void cid_alloc_foreach(const struct cid_alloc *a,
    void (*fn)(void *ctx, uint32_t cid, const char *owner), void *ctx);

#endif
