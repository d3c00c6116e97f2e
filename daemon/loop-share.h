/*
 * A callback's share of one turn of the event loop. Work that arrives in
 * bulk (a JSON-RPC batch's requests, a connection's pipelined lines, the
 * writer's finished jobs) is done a share at a time: at most a count of
 * items, and no more than LOOP_SHARE_US of the loop's time, whichever ends
 * first; the rest waits for the next turn. So a request arriving meanwhile
 * waits for at most one share of each busy source, not for their backlogs:
 * counts alone let one turn run 0.5-1 ms with 2,000 creates in flight.
 * The first item of a share always runs, so every source moves.
 */
#ifndef EMBER_LOOP_SHARE_H
#define EMBER_LOOP_SHARE_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#define LOOP_SHARE_US	200

struct loop_share {
	uint64_t	 left;		/* items still allowed */
	uint64_t	 deadline_ns;	/* CLOCK_MONOTONIC */
	bool		 started;	/* an item was taken */
};

static inline uint64_t
loop_share_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline void
loop_share_start(struct loop_share *s, uint64_t max_items)
{
	s->left = max_items;
	s->deadline_ns = loop_share_now_ns() + LOOP_SHARE_US * 1000u;
	s->started = false;
}

/* A share without limits, for a caller that must finish (a flush). */
static inline void
loop_share_unlimited(struct loop_share *s)
{
	s->left = UINT64_MAX;
	s->deadline_ns = UINT64_MAX;
	s->started = false;
}

/* True when one more item may run now (and counts it); false when the
 * share is used up, by count or by time. */
static inline bool
loop_share_take(struct loop_share *s)
{
	if (s->left == 0)
		return false;
	if (s->started && loop_share_now_ns() >= s->deadline_ns)
		return false;
	s->started = true;
	s->left--;
	return true;
}

#endif
