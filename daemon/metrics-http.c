/*
 * The optional Prometheus listener (daemon config metrics.listen): libevent's
 * HTTP server on emberd's loop, answering GET (and HEAD) /metrics with
 * root's view of stats_exposition() and 404 to any other path. It is
 * unauthenticated, so requests are kept small (headers, no body, a short
 * timeout) and the socket is made here, close-on-exec and non-blocking,
 * from a numeric address or a Unix path (mode 0600: root's to share).
 * libevent 2.1's evhttp cannot cap open connections (it has no hook when it
 * frees one, and counting through a filter bufferevent made by
 * evhttp_set_bevcb breaks its request limits and crashed 2.1.12 on a
 * refused request), so idle ones are only bounded by the timeout.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>

#include "config.h"
#include "daemon.h"
#include "log.h"
#include "metrics-http.h"
#include "stats.h"

#define HTTP_MAX_HEADERS	8192
#define HTTP_MAX_BODY		0
#define HTTP_TIMEOUT_S		5
#define HTTP_BACKLOG		16

struct metrics_http {
	struct ember_daemon *d;
	struct evhttp *http;
	char unix_path[108];		/* removed at free; "" for TCP */
};

static void
metrics_http_request(struct evhttp_request *req, void *arg)
{
	struct metrics_http *mh = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
	struct evbuffer *body;
	size_t len;
	char *text;

	if (path == NULL || strcmp(path, "/metrics") != 0) {
		evhttp_send_error(req, HTTP_NOTFOUND, "only /metrics is served here");
		return;
	}
	text = stats_exposition(mh->d, 0, &len);
	if (text == NULL) {
		evhttp_send_error(req, HTTP_INTERNAL, "the metrics could not be built");
		return;
	}
	body = evbuffer_new();
	if (body == NULL || evbuffer_add(body, text, len) < 0) {
		free(text);
		evbuffer_free(body);
		evhttp_send_error(req, HTTP_INTERNAL, "out of memory");
		return;
	}
	free(text);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
	    "text/plain; version=0.0.4; charset=utf-8");
	evhttp_send_reply(req, HTTP_OK, "OK", body);
	evbuffer_free(body);
}

/* A listening socket for addr: close-on-exec, non-blocking. fd or -errno. */
static int
metrics_http_socket(const struct ember_listen_addr *addr)
{
	struct sockaddr_storage ss = { 0 };
	socklen_t sslen;
	int fd, one = 1, r;

	if (addr->family == AF_UNIX) {
		struct sockaddr_un *sun = (struct sockaddr_un *)&ss;
		struct stat st;

		sun->sun_family = AF_UNIX;
		snprintf(sun->sun_path, sizeof(sun->sun_path), "%s", addr->path);
		sslen = sizeof(*sun);
		/* A socket left by an emberd that died; never anything else. */
		if (lstat(addr->path, &st) == 0 && S_ISSOCK(st.st_mode))
			unlink(addr->path);
	} else if (addr->family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)addr->port);
		memcpy(&sin->sin_addr, addr->addr, 4);
		sslen = sizeof(*sin);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)addr->port);
		memcpy(&sin6->sin6_addr, addr->addr, 16);
		sslen = sizeof(*sin6);
	}
	fd = socket(addr->family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	if (addr->family != AF_UNIX)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (addr->family == AF_UNIX) {
		mode_t old = umask(0177);	/* 0600 from birth */
		r = bind(fd, (struct sockaddr *)&ss, sslen);
		umask(old);
	} else {
		r = bind(fd, (struct sockaddr *)&ss, sslen);
	}
	if (r < 0 || listen(fd, HTTP_BACKLOG) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	return fd;
}

struct metrics_http *
metrics_http_new(struct ember_daemon *d, const char *listen_text, struct ember_error *err)
{
	struct ember_listen_addr addr;
	struct metrics_http *mh;
	struct evconnlistener *lis;
	int fd;

	if (ember_listen_parse(listen_text, &addr) < 0) {
		ember_error_set(err, EK_INVALID_SPEC,
		    "use \"127.0.0.1:9464\", \"[::1]:9464\" or \"unix:/run/ember/metrics.sock\"",
		    "metrics.listen \"%s\" is not a numeric address:port or unix:PATH", listen_text);
		return NULL;
	}
	if ((mh = calloc(1, sizeof(*mh))) == NULL) {
		ember_error_set(err, EK_INTERNAL, NULL, "out of memory");
		return NULL;
	}
	mh->d = d;
	if ((fd = metrics_http_socket(&addr)) < 0) {
		ember_error_set(err, EK_IO, "choose another metrics.listen address or free it",
		    "cannot listen on metrics.listen %s: %s", listen_text, strerror(-fd));
		free(mh);
		return NULL;
	}
	if (addr.family == AF_UNIX)
		snprintf(mh->unix_path, sizeof(mh->unix_path), "%s", addr.path);
	mh->http = evhttp_new(d->base);
	lis = mh->http != NULL ? evconnlistener_new(d->base, NULL, NULL,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd) : NULL;
	if (lis == NULL || evhttp_bind_listener(mh->http, lis) == NULL) {
		if (lis != NULL)
			evconnlistener_free(lis);
		else
			close(fd);
		ember_error_set(err, EK_INTERNAL, NULL, "cannot serve metrics.listen %s", listen_text);
		metrics_http_free(mh);
		return NULL;
	}
	evhttp_set_max_headers_size(mh->http, HTTP_MAX_HEADERS);
	evhttp_set_max_body_size(mh->http, HTTP_MAX_BODY);
	evhttp_set_timeout(mh->http, HTTP_TIMEOUT_S);
	evhttp_set_allowed_methods(mh->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
	evhttp_set_gencb(mh->http, metrics_http_request, mh);
	log_info("metrics: serving /metrics on %s (unauthenticated)", listen_text);
	return mh;
}

void
metrics_http_free(struct metrics_http *mh)
{
	if (mh == NULL)
		return;
	if (mh->http != NULL)
		evhttp_free(mh->http);
	if (mh->unix_path[0] != '\0')
		unlink(mh->unix_path);
	free(mh);
}
