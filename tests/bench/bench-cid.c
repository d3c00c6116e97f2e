/*
 * CID allocator benchmark: nanoseconds per get (a new allocation), release
 * and claim with 1 000, 10 000 and 100 000 CIDs already allocated over the
 * full default range, plus claims scattered over the whole 32-bit range
 * (the sparse tree's worst case). Prints figures; asserts nothing.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "cid-alloc.h"

#define ROUNDS	100
#define BATCH	1000

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint32_t
rng32(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (uint32_t)((rng_state * 2685821657736338717ULL) >> 32);
}

static double
now_ns(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void
die(const char *what)
{
	fprintf(stderr, "bench-cid: %s failed\n", what);
	exit(1);
}

static void
bench(unsigned n)
{
	struct cid_alloc	*a;
	char			(*names)[16];
	uint32_t		*cids, cid;
	unsigned		 i, r, *pick;
	double			 t, t_get = 0, t_rel = 0, t_claim = 0, t_sparse;

	a = cid_alloc_new(CID_DEFAULT_MIN, CID_DEFAULT_MAX);
	names = malloc((size_t)n * sizeof(*names));
	cids = malloc((size_t)n * sizeof(*cids));
	pick = malloc(BATCH * sizeof(*pick));
	if (a == NULL || names == NULL || cids == NULL || pick == NULL)
		die("allocation");
	for (i = 0; i < n; i++) {
		snprintf(names[i], sizeof(names[i]), "vm%u", i);
		if (cid_alloc_get(a, names[i], &cids[i]) != 0)
			die("fill");
	}

	for (r = 0; r < ROUNDS; r++) {
		/* BATCH distinct owners, scattered over the allocated ones. */
		for (i = 0; i < BATCH; i++)
			pick[i] = (unsigned)(((uint64_t)i * n / BATCH +
			    rng32() % (n / BATCH)) % n);

		t = now_ns();
		for (i = 0; i < BATCH; i++)
			if (cid_alloc_release(a, names[pick[i]]) != 0)
				die("release");
		t_rel += now_ns() - t;

		t = now_ns();
		for (i = 0; i < BATCH; i++)
			if (cid_alloc_claim(a, names[pick[i]],
			    cids[pick[i]]) != 0)
				die("claim");
		t_claim += now_ns() - t;

		for (i = 0; i < BATCH; i++)
			cid_alloc_release(a, names[pick[i]]);
		t = now_ns();
		for (i = 0; i < BATCH; i++)
			if (cid_alloc_get(a, names[pick[i]], &cid) != 0)
				die("get");
		t_get += now_ns() - t;
		/* Holes refill lowest first, so owners may swap CIDs. */
		for (i = 0; i < BATCH; i++)
			cid_alloc_lookup(a, names[pick[i]], &cids[pick[i]]);
	}
	cid_alloc_free(a);

	/* n claims at random CIDs anywhere in [3, 0xFFFFFFFE]. */
	a = cid_alloc_new(CID_DEFAULT_MIN, CID_DEFAULT_MAX);
	t = now_ns();
	for (i = 0; i < n; i++) {
		cid = CID_DEFAULT_MIN + rng32() % (CID_DEFAULT_MAX - 2);
		if (cid_alloc_claim(a, names[i], cid) == -ENOMEM)
			die("sparse claim");
	}
	t_sparse = now_ns() - t;
	cid_alloc_free(a);

	printf("%7u allocated: get %6.0f ns/op  release %6.0f ns/op  "
	    "claim %6.0f ns/op  sparse claim %6.0f ns/op\n", n,
	    t_get / (ROUNDS * BATCH), t_rel / (ROUNDS * BATCH),
	    t_claim / (ROUNDS * BATCH), t_sparse / n);
	free(names);
	free(cids);
	free(pick);
}

int
main(void)
{
	bench(1000);
	bench(10000);
	bench(100000);
	return 0;
}
