/*
 * HTTP over Unix sockets on the event loop, for Firecracker's API: libcurl's
 * multi interface driven by libevent (socket and timer callbacks), one
 * request per easy handle, each with its own timeout. No call blocks.
 */
#ifndef EMBER_FC_HTTP_H
#define EMBER_FC_HTTP_H

struct event_base;
struct fc_http;

/* status: HTTP status, or 0 with curl_err when no answer came. body is
 * the response body (NUL-terminated, possibly empty). */
typedef void (*fc_http_done_fn)(void *ctx, long status, const char *body,
    const char *curl_err);

struct fc_http *fc_http_new(struct event_base *base);
void fc_http_free(struct fc_http *h);
/* body may be NULL. 0 or -errno. */
int fc_http_request(struct fc_http *h, const char *sock_path, const char *method,
    const char *path, const char *body, long timeout_ms, fc_http_done_fn done, void *ctx);
/* Drops every request made with ctx; their callbacks never run. */
void fc_http_cancel(struct fc_http *h, void *ctx);

#endif
