/*
 * Histograms, the exposition writer and the daemon's process-wide series
 * (see metrics.h). Every series has a fixed place: RPC methods get one of
 * METRICS_METHODS_MAX slots on their first call (the names are the method
 * tables' own strings, so a client cannot add label values), outcomes are
 * a fixed list, so recording an observation never allocates.
 */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "error.h"
#include "metrics.h"

#define METRICS_METHODS_MAX	64
#define LAG_INTERVAL_MS		500

/* ---- histograms ---- */

void
metrics_histogram_init(struct metrics_histogram *h, const double *bounds, size_t n)
{
	memset(h, 0, sizeof(*h));
	h->bounds = bounds;
	h->nbounds = n < METRICS_BUCKETS_MAX ? n : METRICS_BUCKETS_MAX;
}

void
metrics_histogram_observe(struct metrics_histogram *h, double value)
{
	size_t i = 0;

	if (isnan(value))
		return;
	while (i < h->nbounds && value > h->bounds[i])
		i++;
	h->counts[i]++;
	h->count++;
	h->sum += value;
}

/* ---- the text writer ---- */

void
metrics_text_init(struct metrics_text *t, size_t max)
{
	memset(t, 0, sizeof(*t));
	t->max = max;
}

void
metrics_text_free(struct metrics_text *t)
{
	free(t->buf);
	memset(t, 0, sizeof(*t));
}

char *
metrics_text_take(struct metrics_text *t, size_t *len)
{
	char *out = t->failed ? NULL : t->buf;

	if (out == NULL && !t->failed)
		out = strdup("");
	else if (out == NULL)
		free(t->buf);
	if (len != NULL)
		*len = out != NULL ? t->len : 0;
	memset(t, 0, sizeof(*t));
	return out;
}

static bool
text_reserve(struct metrics_text *t, size_t more)
{
	size_t want = t->len + more + 1, cap;
	char *p;

	if (t->failed)
		return false;
	if (want > t->max) {
		t->failed = true;
		return false;
	}
	if (want <= t->cap)
		return true;
	cap = t->cap ? t->cap : 4096;
	while (cap < want)
		cap *= 2;
	if (cap > t->max)
		cap = t->max;
	if ((p = realloc(t->buf, cap)) == NULL) {
		t->failed = true;
		return false;
	}
	t->buf = p;
	t->cap = cap;
	return true;
}

static void
text_put(struct metrics_text *t, const char *s, size_t n)
{
	if (!text_reserve(t, n))
		return;
	memcpy(t->buf + t->len, s, n);
	t->len += n;
	t->buf[t->len] = '\0';
}

static void
text_puts(struct metrics_text *t, const char *s)
{
	text_put(t, s, strlen(s));
}

static void __attribute__((format(printf, 2, 3)))
text_printf(struct metrics_text *t, const char *fmt, ...)
{
	char small[128];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0) {
		t->failed = true;
		return;
	}
	if ((size_t)n < sizeof(small)) {
		text_put(t, small, (size_t)n);
		return;
	}
	if (!text_reserve(t, (size_t)n))
		return;
	va_start(ap, fmt);
	vsnprintf(t->buf + t->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	t->len += (size_t)n;
}

/* A label value or HELP text: backslash and newline escaped, and double
 * quotes too inside a label value. */
static void
text_escaped(struct metrics_text *t, const char *s, bool quote)
{
	for (; *s != '\0'; s++) {
		if (*s == '\\')
			text_put(t, "\\\\", 2);
		else if (*s == '\n')
			text_put(t, "\\n", 2);
		else if (*s == '"' && quote)
			text_put(t, "\\\"", 2);
		else
			text_put(t, s, 1);
	}
}

/* A sample value: integers exactly, others with enough digits to read
 * back, and Prometheus's spellings of infinity and NaN. */
static void
text_value(struct metrics_text *t, double v)
{
	if (isnan(v))
		text_puts(t, "NaN");
	else if (isinf(v))
		text_puts(t, v > 0 ? "+Inf" : "-Inf");
	else if (v > -9007199254740992.0 && v < 9007199254740992.0 && v == (double)(long long)v)
		text_printf(t, "%.0f", v);
	else
		text_printf(t, "%.9g", v);
}

void
metrics_text_family(struct metrics_text *t, const char *name, const char *type,
    const char *help)
{
	text_printf(t, "# HELP %s ", name);
	text_escaped(t, help, false);
	text_printf(t, "\n# TYPE %s %s\n", name, type);
}

/* {a="x",b="y"} plus an optional last label, or nothing without labels. */
static void
text_labels(struct metrics_text *t, const char *const *labels, const char *extra_name,
    const char *extra_value)
{
	bool any = false;

	for (size_t i = 0; labels != NULL && labels[i] != NULL; i += 2) {
		text_puts(t, any ? "," : "{");
		text_puts(t, labels[i]);
		text_puts(t, "=\"");
		text_escaped(t, labels[i + 1] != NULL ? labels[i + 1] : "", true);
		text_puts(t, "\"");
		any = true;
	}
	if (extra_name != NULL) {
		text_puts(t, any ? "," : "{");
		text_puts(t, extra_name);
		text_puts(t, "=\"");
		text_escaped(t, extra_value, true);
		text_puts(t, "\"");
		any = true;
	}
	if (any)
		text_puts(t, "}");
}

void
metrics_text_sample(struct metrics_text *t, const char *name, const char *const *labels,
    double value)
{
	text_puts(t, name);
	text_labels(t, labels, NULL, NULL);
	text_puts(t, " ");
	text_value(t, value);
	text_puts(t, "\n");
}

void
metrics_text_histogram(struct metrics_text *t, const char *name, const char *const *labels,
    const struct metrics_histogram *h)
{
	uint64_t cumulative = 0;
	char le[32];

	for (size_t i = 0; i <= h->nbounds; i++) {
		cumulative += h->counts[i];
		if (i < h->nbounds)
			snprintf(le, sizeof(le), "%g", h->bounds[i]);
		else
			snprintf(le, sizeof(le), "+Inf");
		text_printf(t, "%s_bucket", name);
		text_labels(t, labels, "le", le);
		text_printf(t, " %" PRIu64 "\n", cumulative);
	}
	text_printf(t, "%s_sum", name);
	text_labels(t, labels, NULL, NULL);
	text_puts(t, " ");
	text_value(t, h->sum);
	text_puts(t, "\n");
	text_printf(t, "%s_count", name);
	text_labels(t, labels, NULL, NULL);
	text_printf(t, " %" PRIu64 "\n", h->count);
}

/* ---- the daemon's series ---- */

static const double rpc_bounds[] = {
	0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
	1, 2.5, 5, 10, 30, 60, 120,
};
static const double durable_bounds[] = {
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
	0.25, 0.5, 1, 2.5,
};
static const double lag_bounds[] = {
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
};

/* The outcomes an RPC is counted under: "ok", the JSON-RPC protocol
 * errors, and every error kind (filled from error.h at first use). */
enum { OUTCOME_OK, OUTCOME_PARSE_ERROR, OUTCOME_INVALID_REQUEST,
	OUTCOME_METHOD_NOT_FOUND, OUTCOME_INVALID_PARAMS, OUTCOME_KINDS };
#define OUTCOMES_MAX (OUTCOME_KINDS + EK__COUNT)

struct method_slot {
	const char *method;
	uint64_t outcomes[OUTCOMES_MAX];
	struct metrics_histogram duration;
};

static struct {
	bool ready;
	const char *outcome_names[OUTCOMES_MAX];
	size_t noutcomes;
	struct method_slot methods[METRICS_METHODS_MAX];
	size_t nmethods;
	struct metrics_histogram durable;
	struct metrics_histogram lag;
} m;

static void
metrics_setup(void)
{
	if (m.ready)
		return;
	m.outcome_names[OUTCOME_OK] = "ok";
	m.outcome_names[OUTCOME_PARSE_ERROR] = "parse_error";
	m.outcome_names[OUTCOME_INVALID_REQUEST] = "invalid_request";
	m.outcome_names[OUTCOME_METHOD_NOT_FOUND] = "method_not_found";
	m.outcome_names[OUTCOME_INVALID_PARAMS] = "invalid_params";
	m.noutcomes = OUTCOME_KINDS;
	for (int k = EK_NONE + 1; k < EK__COUNT; k++)
		m.outcome_names[m.noutcomes++] = ember_error_kind_name((enum ember_error_kind)k);
	metrics_histogram_init(&m.durable, durable_bounds,
	    sizeof(durable_bounds) / sizeof(durable_bounds[0]));
	metrics_histogram_init(&m.lag, lag_bounds, sizeof(lag_bounds) / sizeof(lag_bounds[0]));
	m.ready = true;
}

void
metrics_reset(void)
{
	memset(&m, 0, sizeof(m));
	metrics_setup();
}

/* The slot of a method: its own (found by the table's pointer, else by
 * name), a new one, or the last slot, "other", when all are taken. */
static struct method_slot *
method_slot(const char *method)
{
	struct method_slot *s;

	if (method == NULL)
		method = "unknown";
	for (size_t i = 0; i < m.nmethods; i++)
		if (m.methods[i].method == method || strcmp(m.methods[i].method, method) == 0)
			return &m.methods[i];
	if (m.nmethods == METRICS_METHODS_MAX - 1)
		method = "other";
	if (m.nmethods == METRICS_METHODS_MAX)
		return &m.methods[METRICS_METHODS_MAX - 1];
	s = &m.methods[m.nmethods++];
	s->method = method;
	metrics_histogram_init(&s->duration, rpc_bounds, sizeof(rpc_bounds) / sizeof(rpc_bounds[0]));
	return s;
}

void
metrics_rpc_done(const char *method, const char *outcome, double seconds)
{
	struct method_slot *s;
	size_t o;

	metrics_setup();
	s = method_slot(method);
	for (o = 0; o < m.noutcomes; o++)
		if (strcmp(m.outcome_names[o], outcome) == 0)
			break;
	if (o == m.noutcomes)
		o = OUTCOME_KINDS + EK_INTERNAL - 1;	/* not a known outcome: a bug */
	s->outcomes[o]++;
	metrics_histogram_observe(&s->duration, seconds);
}

void
metrics_observe_durable_write(double seconds)
{
	metrics_setup();
	metrics_histogram_observe(&m.durable, seconds);
}

void
metrics_write_daemon(struct metrics_text *t)
{
	metrics_setup();
	metrics_text_family(t, "ember_rpc_requests_total", "counter",
	    "JSON-RPC requests answered, by method and outcome (ok or the error kind).");
	for (size_t i = 0; i < m.nmethods; i++)
		for (size_t o = 0; o < m.noutcomes; o++) {
			const char *labels[] = { "method", m.methods[i].method,
			    "outcome", m.outcome_names[o], NULL };
			if (m.methods[i].outcomes[o] > 0)
				metrics_text_sample(t, "ember_rpc_requests_total", labels,
				    (double)m.methods[i].outcomes[o]);
		}
	metrics_text_family(t, "ember_rpc_duration_seconds", "histogram",
	    "Time from reading a JSON-RPC request to sending its answer, by method.");
	for (size_t i = 0; i < m.nmethods; i++) {
		const char *labels[] = { "method", m.methods[i].method, NULL };
		metrics_text_histogram(t, "ember_rpc_duration_seconds", labels,
		    &m.methods[i].duration);
	}
	metrics_text_family(t, "ember_durable_write_duration_seconds", "histogram",
	    "Time of one durable state write (write, fsync, rename, fsync of the directory).");
	metrics_text_histogram(t, "ember_durable_write_duration_seconds", NULL, &m.durable);
	metrics_text_family(t, "ember_event_loop_lag_seconds", "histogram",
	    "How late a periodic timer of the event loop fired (the loop was busy).");
	metrics_text_histogram(t, "ember_event_loop_lag_seconds", NULL, &m.lag);
}

double
metrics_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- event-loop lag ---- */

struct metrics_lag_timer {
	struct event *ev;
	double due;		/* metrics_now() when it should fire */
};

static void
lag_arm(struct metrics_lag_timer *lt)
{
	struct timeval tv = { 0, LAG_INTERVAL_MS * 1000 };

	lt->due = metrics_now() + LAG_INTERVAL_MS / 1000.0;
	evtimer_add(lt->ev, &tv);
}

static void
lag_cb(evutil_socket_t fd, short what, void *arg)
{
	struct metrics_lag_timer *lt = arg;
	double late = metrics_now() - lt->due;

	metrics_setup();
	metrics_histogram_observe(&m.lag, late > 0 ? late : 0);
	lag_arm(lt);
}

struct metrics_lag_timer *
metrics_lag_timer_new(struct event_base *base)
{
	struct metrics_lag_timer *lt = calloc(1, sizeof(*lt));

	if (lt == NULL)
		return NULL;
	lt->ev = evtimer_new(base, lag_cb, lt);
	if (lt->ev == NULL) {
		free(lt);
		return NULL;
	}
	lag_arm(lt);
	return lt;
}

void
metrics_lag_timer_free(struct metrics_lag_timer *lt)
{
	if (lt == NULL)
		return;
	event_free(lt->ev);
	free(lt);
}
