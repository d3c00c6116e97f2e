/*
 * Unit tests for the vsock CID allocator: the contract cases one by one,
 * then a long randomized run checked step by step against a plain bitmap
 * model, and a 100 000-allocation churn over the full 32-bit range.
 */
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cid-alloc.h"
#include "test-util.h"

/* xorshift64*: fixed seed, same sequence everywhere. */
static uint64_t rng_state;

static void
rng_seed(uint64_t seed)
{
	rng_state = seed != 0 ? seed : 1;
}

static uint32_t
rng_below(uint32_t n)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (uint32_t)((rng_state * 2685821657736338717ULL) >> 32) % n;
}

static void
owner_name(char *buf, size_t len, unsigned i)
{
	snprintf(buf, len, "vm%u", i);
}

START_TEST(cid_first_is_min)
{
	struct cid_alloc	*a;
	uint32_t		 cid;

	a = cid_alloc_new(CID_DEFAULT_MIN, CID_DEFAULT_MAX);
	ck_assert_ptr_nonnull(a);
	ck_assert_uint_eq(cid_alloc_min(a), 3);
	ck_assert_uint_eq(cid_alloc_max(a), 0xFFFFFFFEu);
	ck_assert_uint_eq(cid_alloc_count(a), 0);
	ck_assert_int_eq(cid_alloc_get(a, "web", &cid), 0);
	ck_assert_uint_eq(cid, 3);
	ck_assert_int_eq(cid_alloc_get(a, "db", &cid), 0);
	ck_assert_uint_eq(cid, 4);
	ck_assert_uint_eq(cid_alloc_count(a), 2);
	cid_alloc_free(a);

	a = cid_alloc_new(1000, 2000);
	ck_assert_int_eq(cid_alloc_get(a, "web", &cid), 0);
	ck_assert_uint_eq(cid, 1000);
	cid_alloc_free(a);
}
END_TEST

START_TEST(cid_reuses_lowest_released)
{
	struct cid_alloc	*a;
	uint32_t		 cid;
	char			 name[16];
	unsigned		 i;

	a = cid_alloc_new(3, 100000);
	for (i = 0; i < 10000; i++) {
		owner_name(name, sizeof(name), i);
		ck_assert_int_eq(cid_alloc_get(a, name, &cid), 0);
		ck_assert_uint_eq(cid, 3 + i);
	}
	ck_assert_int_eq(cid_alloc_release(a, "vm5000"), 0);
	ck_assert_int_eq(cid_alloc_release(a, "vm70"), 0);
	ck_assert_int_eq(cid_alloc_release(a, "vm9000"), 0);
	ck_assert_int_eq(cid_alloc_release(a, "vm70"), -ENOENT);
	ck_assert_ptr_null(cid_alloc_owner(a, 73));
	ck_assert_int_eq(cid_alloc_get(a, "x", &cid), 0);
	ck_assert_uint_eq(cid, 73);
	ck_assert_int_eq(cid_alloc_get(a, "y", &cid), 0);
	ck_assert_uint_eq(cid, 5003);
	ck_assert_int_eq(cid_alloc_get(a, "z", &cid), 0);
	ck_assert_uint_eq(cid, 9003);
	ck_assert_int_eq(cid_alloc_get(a, "w", &cid), 0);
	ck_assert_uint_eq(cid, 10003);
	ck_assert_int_eq(cid_alloc_release(a, "nobody"), -ENOENT);
	cid_alloc_free(a);
}
END_TEST

START_TEST(cid_same_owner_gets_same_cid)
{
	struct cid_alloc	*a;
	uint32_t		 cid, again;

	a = cid_alloc_new(CID_DEFAULT_MIN, CID_DEFAULT_MAX);
	ck_assert_int_eq(cid_alloc_get(a, "a", &cid), 0);
	ck_assert_int_eq(cid_alloc_get(a, "b", &cid), 0);
	ck_assert_int_eq(cid_alloc_get(a, "b", &again), 0);
	ck_assert_uint_eq(cid, again);
	ck_assert_uint_eq(cid_alloc_count(a), 2);
	ck_assert(cid_alloc_lookup(a, "b", &again));
	ck_assert_uint_eq(again, 4);
	ck_assert_str_eq(cid_alloc_owner(a, 4), "b");
	ck_assert(!cid_alloc_lookup(a, "c", NULL));
	ck_assert_int_eq(cid_alloc_get(a, "", &cid), -EINVAL);
	ck_assert_int_eq(cid_alloc_get(a, NULL, &cid), -EINVAL);
	cid_alloc_free(a);
}
END_TEST

START_TEST(cid_exhausted_returns_enospc)
{
	struct cid_alloc	*a;
	uint32_t		 cid;
	char			 name[16];
	unsigned		 i, sizes[] = { 1, 5, 64, 65, 4096, 4097, 262144 };
	size_t			 s;

	for (s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		a = cid_alloc_new(10, 10 + sizes[s] - 1);
		ck_assert_ptr_nonnull(a);
		for (i = 0; i < sizes[s]; i++) {
			owner_name(name, sizeof(name), i);
			ck_assert_int_eq(cid_alloc_get(a, name, &cid), 0);
			ck_assert_uint_eq(cid, 10 + i);
		}
		ck_assert_int_eq(cid_alloc_get(a, "late", &cid), -ENOSPC);
		ck_assert(!cid_alloc_lookup(a, "late", NULL));
		ck_assert_uint_eq(cid_alloc_count(a), sizes[s]);
		/* An owner that already holds one still gets it. */
		ck_assert_int_eq(cid_alloc_get(a, "vm0", &cid), 0);
		ck_assert_uint_eq(cid, 10);
		owner_name(name, sizeof(name), sizes[s] / 2);
		ck_assert_int_eq(cid_alloc_release(a, name), 0);
		ck_assert_int_eq(cid_alloc_get(a, "late", &cid), 0);
		ck_assert_uint_eq(cid, 10 + sizes[s] / 2);
		ck_assert_int_eq(cid_alloc_get(a, "later", &cid), -ENOSPC);
		cid_alloc_free(a);
	}
}
END_TEST

START_TEST(cid_claim_conflict)
{
	struct cid_alloc	*a;
	uint32_t		 cid;

	a = cid_alloc_new(CID_DEFAULT_MIN, CID_DEFAULT_MAX);
	ck_assert_int_eq(cid_alloc_claim(a, "web", 42), 0);
	ck_assert_int_eq(cid_alloc_claim(a, "web", 42), 0);
	ck_assert_int_eq(cid_alloc_claim(a, "db", 42), -EEXIST);
	ck_assert_int_eq(cid_alloc_claim(a, "web", 43), -EBUSY);
	ck_assert_int_eq(cid_alloc_claim(a, "db", 2), -ERANGE);
	ck_assert_int_eq(cid_alloc_claim(a, "db", 0xFFFFFFFFu), -ERANGE);
	ck_assert_int_eq(cid_alloc_claim(a, "", 50), -EINVAL);
	ck_assert_str_eq(cid_alloc_owner(a, 42), "web");
	ck_assert(!cid_alloc_lookup(a, "db", NULL));
	ck_assert_uint_eq(cid_alloc_count(a), 1);

	/* get() skips claimed CIDs and fills the hole below them. */
	ck_assert_int_eq(cid_alloc_claim(a, "c3", 3), 0);
	ck_assert_int_eq(cid_alloc_get(a, "db", &cid), 0);
	ck_assert_uint_eq(cid, 4);
	ck_assert_int_eq(cid_alloc_get(a, "web", &cid), 0);
	ck_assert_uint_eq(cid, 42);
	ck_assert_int_eq(cid_alloc_release(a, "web"), 0);
	ck_assert_int_eq(cid_alloc_claim(a, "db2", 42), 0);
	cid_alloc_free(a);
}
END_TEST

START_TEST(cid_range_edges)
{
	struct cid_alloc	*a;
	uint32_t		 cid;

	errno = 0;
	ck_assert_ptr_null(cid_alloc_new(2, 10));
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_ptr_null(cid_alloc_new(0, 10));
	ck_assert_ptr_null(cid_alloc_new(3, 0xFFFFFFFFu));
	ck_assert_ptr_null(cid_alloc_new(11, 10));

	/* The top of the full range. */
	a = cid_alloc_new(CID_DEFAULT_MIN, CID_DEFAULT_MAX);
	ck_assert_int_eq(cid_alloc_claim(a, "top", 0xFFFFFFFEu), 0);
	ck_assert_int_eq(cid_alloc_claim(a, "low", 3), 0);
	ck_assert_int_eq(cid_alloc_claim(a, "x", 0x80000000u), 0);
	ck_assert_int_eq(cid_alloc_get(a, "next", &cid), 0);
	ck_assert_uint_eq(cid, 4);
	ck_assert_str_eq(cid_alloc_owner(a, 0xFFFFFFFEu), "top");
	ck_assert_ptr_null(cid_alloc_owner(a, 0xFFFFFFFFu));
	ck_assert_ptr_null(cid_alloc_owner(a, 0));
	ck_assert_int_eq(cid_alloc_release(a, "top"), 0);
	ck_assert_ptr_null(cid_alloc_owner(a, 0xFFFFFFFEu));
	ck_assert_int_eq(cid_alloc_claim(a, "top2", 0xFFFFFFFEu), 0);
	cid_alloc_free(a);

	/* A range of one at the very top. */
	a = cid_alloc_new(0xFFFFFFFEu, 0xFFFFFFFEu);
	ck_assert_ptr_nonnull(a);
	ck_assert_int_eq(cid_alloc_get(a, "only", &cid), 0);
	ck_assert_uint_eq(cid, 0xFFFFFFFEu);
	ck_assert_int_eq(cid_alloc_get(a, "other", &cid), -ENOSPC);
	ck_assert_int_eq(cid_alloc_claim(a, "other", 0xFFFFFFFDu), -ERANGE);
	ck_assert_int_eq(cid_alloc_release(a, "only"), 0);
	ck_assert_int_eq(cid_alloc_get(a, "other", &cid), 0);
	ck_assert_uint_eq(cid, 0xFFFFFFFEu);
	cid_alloc_free(a);

	/* A range of one at the bottom. */
	a = cid_alloc_new(3, 3);
	ck_assert_int_eq(cid_alloc_get(a, "only", &cid), 0);
	ck_assert_uint_eq(cid, 3);
	ck_assert_int_eq(cid_alloc_get(a, "other", &cid), -ENOSPC);
	ck_assert_int_eq(cid_alloc_claim(a, "other", 4), -ERANGE);
	cid_alloc_free(a);

	/* The last 100 CIDs of the full range, filled from below. */
	a = cid_alloc_new(0xFFFFFFFEu - 99, 0xFFFFFFFEu);
	for (unsigned i = 0; i < 100; i++) {
		char name[16];

		owner_name(name, sizeof(name), i);
		ck_assert_int_eq(cid_alloc_get(a, name, &cid), 0);
		ck_assert_uint_eq(cid, 0xFFFFFFFEu - 99 + i);
	}
	ck_assert_int_eq(cid_alloc_get(a, "more", &cid), -ENOSPC);
	cid_alloc_free(a);
}
END_TEST

START_TEST(cid_json_roundtrip)
{
	struct cid_alloc	*a, *b;
	json_t			*doc, *doc2, *want;
	uint32_t		 cid;
	char			*s;

	a = cid_alloc_new(CID_DEFAULT_MIN, CID_DEFAULT_MAX);
	ck_assert_int_eq(cid_alloc_claim(a, "top", 0xFFFFFFFEu), 0);
	ck_assert_int_eq(cid_alloc_get(a, "web", &cid), 0);
	ck_assert_int_eq(cid_alloc_get(a, "db", &cid), 0);
	ck_assert_int_eq(cid_alloc_claim(a, "mid", 70000), 0);
	doc = cid_alloc_to_json(a);
	ck_assert_ptr_nonnull(doc);
	want = json_loads("{\"version\": 1, \"allocations\": {\"3\": \"web\","
	    " \"4\": \"db\", \"70000\": \"mid\", \"4294967294\": \"top\"}}",
	    0, NULL);
	ck_assert(json_equal(doc, want));
	/* Keys come out in ascending CID order. */
	s = json_dumps(doc, JSON_COMPACT);
	ck_assert_str_eq(s, "{\"version\":1,\"allocations\":{\"3\":\"web\","
	    "\"4\":\"db\",\"70000\":\"mid\",\"4294967294\":\"top\"}}");
	free(s);

	b = cid_alloc_new(CID_DEFAULT_MIN, CID_DEFAULT_MAX);
	ck_assert_int_eq(cid_alloc_load_json(b, doc, NULL, NULL), 0);
	doc2 = cid_alloc_to_json(b);
	ck_assert(json_equal(doc, doc2));
	ck_assert_uint_eq(cid_alloc_count(b), 4);
	ck_assert(cid_alloc_lookup(b, "mid", &cid));
	ck_assert_uint_eq(cid, 70000);
	ck_assert_int_eq(cid_alloc_get(b, "new", &cid), 0);
	ck_assert_uint_eq(cid, 5);
	/* Loading the same document again changes nothing. */
	ck_assert_int_eq(cid_alloc_load_json(a, doc, NULL, NULL), 0);
	ck_assert_uint_eq(cid_alloc_count(a), 4);

	json_decref(doc);
	json_decref(doc2);
	json_decref(want);
	cid_alloc_free(a);
	cid_alloc_free(b);

	/* An empty allocator still writes a whole document. */
	a = cid_alloc_new(3, 3);
	doc = cid_alloc_to_json(a);
	want = json_loads("{\"version\": 1, \"allocations\": {}}", 0, NULL);
	ck_assert(json_equal(doc, want));
	json_decref(doc);
	json_decref(want);
	cid_alloc_free(a);
}
END_TEST

/* cid_alloc_to_text is the state file's text: json_dumps(JSON_COMPACT) of
 * cid_alloc_to_json plus a newline, byte for byte, for owners that need
 * escaping (every control character, quote, backslash, slash, DEL, UTF-8)
 * and with thousands of entries (the buffer grows); it loads back whole. */
START_TEST(cid_text_is_the_json_dump)
{
	struct cid_alloc	*a, *b;
	json_t			*doc, *back;
	char			 owner[32], *want, *text;
	size_t			 len;
	uint32_t		 cid;
	static const char	*odd[] = { "q\"uote", "back\\slash", "sl/ash", "del\x7f",
	    "caf\xc3\xa9", "\xe2\x82\xac-euro", "tab\tnl\ncr\rbs\bff\f" };

	for (int round = 0; round < 2; round++) {
		a = cid_alloc_new(CID_DEFAULT_MIN, CID_DEFAULT_MAX);
		for (unsigned c = 1; c < 0x20 && round == 0; c++) {
			snprintf(owner, sizeof(owner), "c%c%u", (char)c, c);
			ck_assert_int_eq(cid_alloc_get(a, owner, &cid), 0);
		}
		for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++)
			ck_assert_int_eq(cid_alloc_get(a, odd[i], &cid), 0);
		for (unsigned i = 0; i < 5000 * (unsigned)round; i++) {
			snprintf(owner, sizeof(owner), "vm-%u", i);
			ck_assert_int_eq(cid_alloc_get(a, owner, &cid), 0);
		}
		ck_assert_int_eq(cid_alloc_claim(a, "top", 0xFFFFFFFEu), 0);
		ck_assert_int_eq(cid_alloc_release(a, "q\"uote"), 0);	/* a hole */

		doc = cid_alloc_to_json(a);
		want = json_dumps(doc, JSON_COMPACT);
		text = cid_alloc_to_text(a, &len);
		ck_assert_ptr_nonnull(text);
		ck_assert_uint_eq(len, strlen(want) + 1);
		ck_assert_int_eq(text[len - 1], '\n');
		text[len - 1] = '\0';
		ck_assert_str_eq(text, want);

		back = json_loads(text, 0, NULL);
		ck_assert_ptr_nonnull(back);
		b = cid_alloc_new(CID_DEFAULT_MIN, CID_DEFAULT_MAX);
		ck_assert_int_eq(cid_alloc_load_json(b, back, NULL, NULL), 0);
		ck_assert_uint_eq(cid_alloc_count(b), cid_alloc_count(a));
		ck_assert(cid_alloc_lookup(b, "tab\tnl\ncr\rbs\bff\f", &cid));
		json_decref(back);
		json_decref(doc);
		free(want);
		free(text);
		cid_alloc_free(a);
		cid_alloc_free(b);
	}

	a = cid_alloc_new(3, 3);
	text = cid_alloc_to_text(a, &len);
	ck_assert_str_eq(text, "{\"version\":1,\"allocations\":{}}\n");
	ck_assert_uint_eq(len, strlen(text));
	free(text);
	cid_alloc_free(a);
}
END_TEST

/* The text kept between calls is patched at every get, claim and release:
 * after each step of a pseudo-random run (owners that need escaping among
 * them, CIDs taken and given back all over a small range), it is still the
 * dump of the table, byte for byte. Fails when a patch lands in the wrong
 * place, keeps a released entry or loses a comma. */
START_TEST(cid_text_follows_every_change)
{
	struct cid_alloc	*a = cid_alloc_new(3, 3 + 200);
	uint32_t		 rnd = 12345, cid;
	char			 owner[32], *want, *text;
	size_t			 len;
	json_t			*doc;

	ck_assert_ptr_nonnull(a);
	for (int step = 0; step < 3000; step++) {
		rnd = rnd * 1103515245u + 12345u;
		unsigned pick = (rnd >> 8) % 300;
		snprintf(owner, sizeof(owner), pick % 7 == 0 ? "q\"%u\\" : "vm-%u", pick);
		switch ((rnd >> 20) % 4) {
		case 0:
		case 1:
			(void)cid_alloc_get(a, owner, &cid);
			break;
		case 2:
			(void)cid_alloc_release(a, owner);
			break;
		default:
			(void)cid_alloc_claim(a, owner, 3 + (rnd >> 4) % 201);
		}
		if (step % 3 != 0)
			continue;
		doc = cid_alloc_to_json(a);
		want = json_dumps(doc, JSON_COMPACT);
		text = cid_alloc_to_text(a, &len);
		ck_assert_ptr_nonnull(text);
		ck_assert_uint_eq(len, strlen(want) + 1);
		text[len - 1] = '\0';
		ck_assert_str_eq(text, want);
		free(text);
		free(want);
		json_decref(doc);
	}
	ck_assert_uint_gt(cid_alloc_count(a), 0);
	cid_alloc_free(a);
}
END_TEST

static void
record_skip(void *ctx, const char *key, const char *why)
{
	json_t	*skipped = ctx;

	ck_assert_ptr_nonnull(why);
	ck_assert(*why != '\0');
	json_object_set_new(skipped, key, json_string(why));
}

START_TEST(cid_load_skips_bad_entries)
{
	struct cid_alloc	*a;
	json_t			*doc, *skipped, *bad;
	const char		*key;
	json_t			*v;
	uint32_t		 cid;
	const char		*expect[] = { "03", "abc", "", "2", "4294967295",
				    "99999999999", "5", "7", "8", "-1", " 9",
				    "10", "+11", "12 ", "1e3" };
	size_t			 i;

	a = cid_alloc_new(3, 1000000);
	ck_assert_int_eq(cid_alloc_claim(a, "other", 8), 0);
	doc = json_loads("{\"version\": 1, \"allocations\": {"
	    "\"03\": \"a\", \"abc\": \"b\", \"\": \"c\", \"2\": \"d\","
	    " \"4294967295\": \"e\", \"99999999999\": \"f\", \"5\": 7,"
	    " \"6\": \"web\", \"7\": \"web\", \"8\": \"db\", \"-1\": \"x\","
	    " \" 9\": \"y\", \"10\": \"\", \"+11\": \"p\", \"12 \": \"q\","
	    " \"1e3\": \"r\", \"13\": \"db\", \"1000000\": \"edge\"}}",
	    0, NULL);
	ck_assert_ptr_nonnull(doc);
	skipped = json_object();
	ck_assert_int_eq(cid_alloc_load_json(a, doc, record_skip, skipped), 0);
	for (i = 0; i < sizeof(expect) / sizeof(expect[0]); i++) {
		if (json_object_get(skipped, expect[i]) == NULL)
			ck_abort_msg("key \"%s\" was not skipped", expect[i]);
	}
	json_object_foreach(skipped, key, v) {
		for (i = 0; i < sizeof(expect) / sizeof(expect[0]); i++)
			if (strcmp(key, expect[i]) == 0)
				break;
		if (i == sizeof(expect) / sizeof(expect[0]))
			ck_abort_msg("key \"%s\" skipped: %s", key,
			    json_string_value(v));
	}
	ck_assert_uint_eq(cid_alloc_count(a), 4);
	ck_assert(cid_alloc_lookup(a, "web", &cid));
	ck_assert_uint_eq(cid, 6);
	ck_assert(cid_alloc_lookup(a, "db", &cid));
	ck_assert_uint_eq(cid, 13);
	ck_assert(cid_alloc_lookup(a, "edge", &cid));
	ck_assert_uint_eq(cid, 1000000);
	ck_assert_str_eq(cid_alloc_owner(a, 8), "other");
	/* Without a callback the bad entries are skipped silently. */
	ck_assert_int_eq(cid_alloc_load_json(a, doc, NULL, NULL), 0);
	ck_assert_uint_eq(cid_alloc_count(a), 4);
	json_decref(doc);
	json_decref(skipped);

	/* Documents that are not allocation files at all. */
	bad = json_loads("[1]", 0, NULL);
	ck_assert_int_eq(cid_alloc_load_json(a, bad, NULL, NULL), -EINVAL);
	json_decref(bad);
	bad = json_loads("{\"version\": 1}", 0, NULL);
	ck_assert_int_eq(cid_alloc_load_json(a, bad, NULL, NULL), -EINVAL);
	json_decref(bad);
	bad = json_loads("{\"version\": 1, \"allocations\": []}", 0, NULL);
	ck_assert_int_eq(cid_alloc_load_json(a, bad, NULL, NULL), -EINVAL);
	json_decref(bad);
	bad = json_loads("{\"version\": 2, \"allocations\": {\"20\": \"n\"}}",
	    0, NULL);
	ck_assert_int_eq(cid_alloc_load_json(a, bad, NULL, NULL), -EINVAL);
	ck_assert(!cid_alloc_lookup(a, "n", NULL));
	json_decref(bad);
	ck_assert_int_eq(cid_alloc_load_json(a, NULL, NULL, NULL), -EINVAL);
	cid_alloc_free(a);
}
END_TEST

static void
count_one(void *ctx, uint32_t cid, const char *owner)
{
	(*(size_t *)ctx)++;
}

/*
 * CIDs that share tree nodes at every level, released in many orders: a
 * node emptied and freed must never take a neighbour with it.
 */
START_TEST(cid_sparse_release_keeps_neighbours)
{
	static const uint32_t	 at[] = { 0, 1, 63, 64, 127, 4095, 4096,
				    262143, 262144, 1u << 24, 1u << 30,
				    0xFFFFFFFBu };
	enum { K = sizeof(at) / sizeof(at[0]) };
	struct cid_alloc	*a;
	unsigned		 perm[K], round, i, j, t;
	bool			 held[K];
	uint32_t		 cid, want;
	char			 name[16];
	size_t			 n;

	rng_seed(7);
	a = cid_alloc_new(CID_DEFAULT_MIN, CID_DEFAULT_MAX);
	for (round = 0; round < 200; round++) {
		for (i = 0; i < K; i++) {
			owner_name(name, sizeof(name), i);
			ck_assert_int_eq(cid_alloc_claim(a, name, 3 + at[i]),
			    0);
			held[i] = true;
			perm[i] = i;
		}
		for (i = K - 1; i > 0; i--) {
			j = rng_below(i + 1);
			t = perm[i];
			perm[i] = perm[j];
			perm[j] = t;
		}
		for (i = 0; i < K; i++) {
			owner_name(name, sizeof(name), perm[i]);
			ck_assert_int_eq(cid_alloc_release(a, name), 0);
			held[perm[i]] = false;
			for (j = 0; j < K; j++) {
				owner_name(name, sizeof(name), j);
				if (held[j])
					ck_assert_str_eq(cid_alloc_owner(a,
					    3 + at[j]), name);
				else
					ck_assert_ptr_null(cid_alloc_owner(a,
					    3 + at[j]));
			}
			n = 0;
			cid_alloc_foreach(a, count_one, &n);
			ck_assert_uint_eq(n, K - i - 1);
			/* at[] is sorted and starts 0, 1: find the hole. */
			for (want = 0, j = 0; j < K && held[j] &&
			    at[j] == want; j++)
				want++;
			ck_assert_int_eq(cid_alloc_get(a, "probe", &cid), 0);
			ck_assert_uint_eq(cid, 3 + want);
			ck_assert_int_eq(cid_alloc_release(a, "probe"), 0);
		}
	}
	ck_assert_uint_eq(cid_alloc_count(a), 0);
	cid_alloc_free(a);
}
END_TEST

/*
 * The reference model: a plain bitmap over [min, min + span) and an array
 * owner -> CID (0 = none). The allocator may have a wider range than the
 * model as long as the model never fills up.
 */
struct model {
	uint32_t	 min;
	uint32_t	 span;
	uint32_t	 max;		/* the allocator's */
	uint64_t	*bits;
	uint32_t	*held;		/* by owner index */
	int		*owner_of;	/* by CID - min, -1 = free */
	unsigned	 owners;
	size_t		 count;
};

static bool
model_taken(const struct model *m, uint32_t x)
{
	return (m->bits[x / 64] >> (x % 64)) & 1;
}

static void
model_set(struct model *m, unsigned o, uint32_t cid)
{
	uint32_t	x = cid - m->min;

	m->bits[x / 64] |= (uint64_t)1 << (x % 64);
	m->held[o] = cid;
	m->owner_of[x] = (int)o;
	m->count++;
}

static void
model_clear(struct model *m, unsigned o)
{
	uint32_t	x = m->held[o] - m->min;

	m->bits[x / 64] &= ~((uint64_t)1 << (x % 64));
	m->held[o] = 0;
	m->owner_of[x] = -1;
	m->count--;
}

/* Lowest free CID in the model, or 0 when the model is full. */
static uint32_t
model_lowest(const struct model *m)
{
	uint32_t	w;

	for (w = 0; w < (m->span + 63) / 64; w++) {
		if (m->bits[w] != UINT64_MAX) {
			w = w * 64 + (uint32_t)__builtin_ctzll(~m->bits[w]);
			return w < m->span ? m->min + w : 0;
		}
	}
	return 0;
}

static void
model_check_owner(const struct cid_alloc *a, const struct model *m,
    unsigned o)
{
	char		name[16];
	uint32_t	cid;
	bool		found;

	owner_name(name, sizeof(name), o);
	found = cid_alloc_lookup(a, name, &cid);
	ck_assert_int_eq(found, m->held[o] != 0);
	if (found) {
		ck_assert_uint_eq(cid, m->held[o]);
		ck_assert_str_eq(cid_alloc_owner(a, cid), name);
	}
}

static void
model_check_cid(const struct cid_alloc *a, const struct model *m,
    uint32_t cid)
{
	const char	*owner = cid_alloc_owner(a, cid);
	char		 name[16];
	int		 o = m->owner_of[cid - m->min];

	if (o == -1) {
		ck_assert_ptr_null(owner);
		return;
	}
	owner_name(name, sizeof(name), (unsigned)o);
	ck_assert_ptr_nonnull(owner);
	ck_assert_str_eq(owner, name);
}

struct walk {
	const struct model	*m;
	uint32_t		 last;
	size_t			 n;
};

static void
model_walk_one(void *ctx, uint32_t cid, const char *owner)
{
	struct walk	*w = ctx;
	char		 name[16];

	ck_assert(w->n == 0 || cid > w->last);
	ck_assert(cid >= w->m->min && cid < w->m->min + w->m->span);
	ck_assert_int_ne(w->m->owner_of[cid - w->m->min], -1);
	owner_name(name, sizeof(name),
	    (unsigned)w->m->owner_of[cid - w->m->min]);
	ck_assert_str_eq(owner, name);
	w->last = cid;
	w->n++;
}

static void
model_check_all(const struct cid_alloc *a, const struct model *m)
{
	struct walk	w = { m, 0, 0 };
	unsigned	o;
	uint32_t	x;

	for (o = 0; o < m->owners; o++)
		model_check_owner(a, m, o);
	for (x = 0; x < m->span; x++)
		model_check_cid(a, m, m->min + x);
	cid_alloc_foreach(a, model_walk_one, &w);
	ck_assert_uint_eq(w.n, m->count);
}

static void
model_run(uint32_t min, uint32_t span, uint32_t max, unsigned owners,
    unsigned steps, uint64_t seed)
{
	struct cid_alloc	*a;
	struct model		 m;
	char			 name[16];
	unsigned		 step, o, op, grow;
	uint32_t		 cid, want;
	int			 r, expect;

	memset(&m, 0, sizeof(m));
	m.min = min;
	m.span = span;
	m.max = max;
	m.owners = owners;
	m.bits = calloc((span + 63) / 64, sizeof(*m.bits));
	m.held = calloc(owners, sizeof(*m.held));
	m.owner_of = malloc(span * sizeof(*m.owner_of));
	ck_assert(m.bits != NULL && m.held != NULL && m.owner_of != NULL);
	for (cid = 0; cid < span; cid++)
		m.owner_of[cid] = -1;
	a = cid_alloc_new(min, max);
	ck_assert_ptr_nonnull(a);
	rng_seed(seed);

	for (step = 0; step < steps; step++) {
		/*
		 * Alternate growing and shrinking phases to reach both ends:
		 * exhaustion, and words and nodes emptied and freed.
		 */
		grow = (step / 4000) % 2 == 0;
		op = rng_below(100);
		o = rng_below(owners);
		owner_name(name, sizeof(name), o);
		if (op < (grow ? 55u : 8u)) {
			want = m.held[o] != 0 ? m.held[o] : model_lowest(&m);
			r = cid_alloc_get(a, name, &cid);
			if (want == 0) {
				ck_assert_int_eq(r, -ENOSPC);
				ck_assert_uint_eq(max, min + span - 1);
			} else {
				ck_assert_int_eq(r, 0);
				ck_assert_uint_eq(cid, want);
				if (m.held[o] == 0)
					model_set(&m, o, cid);
			}
		} else if (op < (grow ? 80u : 12u)) {
			/* Now and then a CID just outside the model. */
			if (rng_below(50) == 0)
				cid = rng_below(2) ? min - 1 : min + span;
			else
				cid = min + rng_below(span);
			if (cid < min || cid > max)
				expect = -ERANGE;
			else if (cid >= min + span)
				continue;	/* beyond the model */
			else if (m.held[o] != 0)
				expect = m.held[o] == cid ? 0 : -EBUSY;
			else if (model_taken(&m, cid - min))
				expect = -EEXIST;
			else
				expect = 0;
			r = cid_alloc_claim(a, name, cid);
			ck_assert_int_eq(r, expect);
			if (r == 0 && m.held[o] == 0)
				model_set(&m, o, cid);
			if (cid >= min && cid < min + span)
				model_check_cid(a, &m, cid);
		} else {
			r = cid_alloc_release(a, name);
			ck_assert_int_eq(r, m.held[o] != 0 ? 0 : -ENOENT);
			if (r == 0) {
				cid = m.held[o];
				model_clear(&m, o);
				model_check_cid(a, &m, cid);
			}
		}
		model_check_owner(a, &m, o);
		ck_assert_uint_eq(cid_alloc_count(a), m.count);
		if (step % 5000 == 4999)
			model_check_all(a, &m);
	}
	model_check_all(a, &m);
	cid_alloc_free(a);
	free(m.bits);
	free(m.held);
	free(m.owner_of);
}

START_TEST(cid_random_matches_model)
{
	/* Exactly the model's range: exhaustion happens in growing phases. */
	model_run(3, 5000, 3 + 5000 - 1, 7000, 100000, 0x5eed);
}
END_TEST

START_TEST(cid_random_matches_model_full_range)
{
	/* The full range (a deep tree), the model covering its bottom. */
	model_run(3, 5000, CID_DEFAULT_MAX, 4500, 100000, 0xc1d);
	/* And its top. */
	model_run(CID_DEFAULT_MAX - 4999, 5000, CID_DEFAULT_MAX, 7000, 100000,
	    0x70b);
}
END_TEST

struct churn {
	const bool	*gone;
	uint32_t	 last;
	size_t		 n;
};

static void
churn_walk_one(void *ctx, uint32_t cid, const char *owner)
{
	struct churn	*w = ctx;
	char		 name[16];

	ck_assert(w->n == 0 || cid > w->last);
	ck_assert(cid >= 3 && !w->gone[cid - 3]);
	owner_name(name, sizeof(name), cid - 3);
	ck_assert_str_eq(owner, name);
	w->last = cid;
	w->n++;
}

START_TEST(cid_churn_100k)
{
	struct cid_alloc	*a;
	struct churn		 w = { NULL, 0, 0 };
	unsigned		*order, i, j, t;
	uint32_t		 cid;
	char			 name[16];
	enum { N = 100000 };
	static bool		 gone[N];

	a = cid_alloc_new(CID_DEFAULT_MIN, CID_DEFAULT_MAX);
	order = malloc(N * sizeof(*order));
	ck_assert_ptr_nonnull(order);
	for (i = 0; i < N; i++) {
		owner_name(name, sizeof(name), i);
		ck_assert_int_eq(cid_alloc_get(a, name, &cid), 0);
		ck_assert_uint_eq(cid, 3 + i);
		order[i] = i;
	}
	ck_assert_uint_eq(cid_alloc_count(a), N);
	rng_seed(42);
	for (i = N - 1; i > 0; i--) {
		j = rng_below(i + 1);
		t = order[i];
		order[i] = order[j];
		order[j] = t;
	}
	/* Release half, then check what is left and that holes refill. */
	for (i = 0; i < N / 2; i++) {
		owner_name(name, sizeof(name), order[i]);
		ck_assert_int_eq(cid_alloc_release(a, name), 0);
		gone[order[i]] = true;
	}
	w.gone = gone;
	cid_alloc_foreach(a, churn_walk_one, &w);
	ck_assert_uint_eq(w.n, N - N / 2);
	for (i = 0, j = 0; i < N / 2; i++, j++) {
		while (!gone[j])
			j++;
		snprintf(name, sizeof(name), "new%u", i);
		ck_assert_int_eq(cid_alloc_get(a, name, &cid), 0);
		ck_assert_uint_eq(cid, 3 + j);
	}
	for (i = 0; i < N / 2; i++) {
		snprintf(name, sizeof(name), "new%u", i);
		ck_assert_int_eq(cid_alloc_release(a, name), 0);
	}
	for (i = N / 2; i < N; i++) {
		owner_name(name, sizeof(name), order[i]);
		ck_assert_int_eq(cid_alloc_release(a, name), 0);
	}
	ck_assert_uint_eq(cid_alloc_count(a), 0);
	ck_assert_int_eq(cid_alloc_get(a, "again", &cid), 0);
	ck_assert_uint_eq(cid, 3);
	free(order);
	cid_alloc_free(a);
}
END_TEST

static Suite *
cid_suite(void)
{
	Suite	*s = suite_create("cid_alloc");
	TCase	*tc = tcase_create("core");

	tcase_add_test(tc, cid_first_is_min);
	tcase_add_test(tc, cid_reuses_lowest_released);
	tcase_add_test(tc, cid_same_owner_gets_same_cid);
	tcase_add_test(tc, cid_exhausted_returns_enospc);
	tcase_add_test(tc, cid_claim_conflict);
	tcase_add_test(tc, cid_range_edges);
	tcase_add_test(tc, cid_json_roundtrip);
	tcase_add_test(tc, cid_text_is_the_json_dump);
	tcase_add_test(tc, cid_text_follows_every_change);
	tcase_add_test(tc, cid_load_skips_bad_entries);
	tcase_add_test(tc, cid_sparse_release_keeps_neighbours);
	tcase_add_test(tc, cid_random_matches_model);
	tcase_add_test(tc, cid_random_matches_model_full_range);
	tcase_add_test(tc, cid_churn_100k);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return test_run_suite(cid_suite());
}
