/*
 * The optional HTTP listener that serves the Prometheus exposition at
 * /metrics (daemon config metrics.listen; see metrics-http.c).
 */
#ifndef EMBER_METRICS_HTTP_H
#define EMBER_METRICS_HTTP_H

#include "error.h"

struct ember_daemon;
struct metrics_http;

/* Listens on listen_text (ember_listen_parse's forms) on d's loop. NULL
 * with err when the address is wrong or cannot be bound. */
struct metrics_http *metrics_http_new(struct ember_daemon *d, const char *listen_text,
    struct ember_error *err);
/* Stops listening (and removes a Unix socket). NULL is a no-op. */
void metrics_http_free(struct metrics_http *mh);

#endif
