/*
 * emberd's own measurements and the Prometheus text exposition format
 * (version 0.0.4) they are written in. Two parts:
 *
 *  - Primitives: fixed-bucket histograms (observing one value is a few
 *    compares and adds, no allocation) and a bounded text writer that
 *    emits HELP/TYPE lines, samples with escaped label values, and a
 *    histogram's _bucket/_sum/_count series.
 *  - The daemon's series that code on hot paths feeds without a daemon
 *    pointer: RPC requests by method and outcome with their latency,
 *    durable-write latency and event-loop lag. They are process-wide (one
 *    emberd per process); stats.c adds the VM series when it writes the
 *    exposition.
 */
#ifndef EMBER_METRICS_H
#define EMBER_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;

#define METRICS_BUCKETS_MAX 20

/* Upper bounds ascending; counts[i] counts values <= bounds[i] and above
 * bounds[i-1] (not cumulative), counts[nbounds] the rest (+Inf). */
struct metrics_histogram {
	const double *bounds;
	size_t nbounds;			/* <= METRICS_BUCKETS_MAX */
	uint64_t counts[METRICS_BUCKETS_MAX + 1];
	uint64_t count;
	double sum;
};

/* bounds must outlive h; n is cut to METRICS_BUCKETS_MAX. */
void metrics_histogram_init(struct metrics_histogram *h, const double *bounds, size_t n);
void metrics_histogram_observe(struct metrics_histogram *h, double value);

/* Exposition text in a buffer that stops growing at max bytes: past it
 * the writer only records that it overflowed. */
struct metrics_text {
	char *buf;
	size_t len, cap, max;
	bool failed;			/* out of memory or past max */
};

void metrics_text_init(struct metrics_text *t, size_t max);
/* The text (NUL-terminated, caller frees) or NULL when it failed; t is
 * empty afterwards. */
char *metrics_text_take(struct metrics_text *t, size_t *len);
void metrics_text_free(struct metrics_text *t);
/* "# HELP name help\n# TYPE name type\n"; type is counter, gauge or
 * histogram. Once per metric family, before its samples. */
void metrics_text_family(struct metrics_text *t, const char *name, const char *type,
    const char *help);
/* One sample. labels: NULL, or name/value pairs ending with a NULL name;
 * values are escaped (backslash, double quote, newline). */
void metrics_text_sample(struct metrics_text *t, const char *name,
    const char *const *labels, double value);
/* name_bucket{...,le="..."} cumulative per bound and +Inf, then name_sum
 * and name_count, all with labels. */
void metrics_text_histogram(struct metrics_text *t, const char *name,
    const char *const *labels, const struct metrics_histogram *h);

/* ---- the daemon's series ---- */

/* One finished RPC: method is the table's name (NULL for a request that
 * named no known method), outcome "ok" or an error kind. */
void metrics_rpc_done(const char *method, const char *outcome, double seconds);
/* One durable write (temp file, fsync, rename, fsync of the directory),
 * from start to the directory's fsync. */
void metrics_observe_durable_write(double seconds);
/* Writes the RPC, durable-write and event-loop-lag families. */
void metrics_write_daemon(struct metrics_text *t);
/* Forgets every observation (unit tests). */
void metrics_reset(void);

/* A timer that wakes every interval and records how late it woke
 * (ember_event_loop_lag_seconds). NULL when out of memory. */
struct metrics_lag_timer;
struct metrics_lag_timer *metrics_lag_timer_new(struct event_base *base);
void metrics_lag_timer_free(struct metrics_lag_timer *lt);

/* Seconds between two CLOCK_MONOTONIC readings in the caller's hands. */
double metrics_now(void);

#endif
