/*
 * libcurl multi on libevent (see fc-http.h). curl tells us which sockets
 * to watch (socket callback) and when to call it back (timer callback);
 * libevent tells curl when they are ready. Finished transfers are collected
 * from curl_multi_info_read after each action.
 *
 * Every request also has a deadline of its own on the loop, a little past
 * curl's timeout: whatever happens inside curl (a socket we could not
 * watch for lack of memory, an action that failed half way), the caller is
 * answered. A socket that cannot be watched fails its own request through
 * that deadline at once, instead of failing the callback, which would make
 * curl abort every transfer of the multi handle.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <curl/curl.h>
#include <event2/event.h>

#include "fc-http.h"
#include "log.h"

#define FC_HTTP_MAX_BODY (1024 * 1024)
/* The deadline's margin over curl's own timeout. */
#define FC_HTTP_DEADLINE_MARGIN_MS	1000

struct fc_http;

struct fc_req {
	TAILQ_ENTRY(fc_req) entry;
	struct fc_http *h;
	struct event *deadline;
	const char *fail_why;		/* set: the deadline fails it with this */
	CURL *easy;
	struct curl_slist *headers;
	char *body;			/* request body (owned) */
	char *resp;
	size_t resp_len;
	char errbuf[CURL_ERROR_SIZE];
	fc_http_done_fn done;
	void *ctx;
};

struct fc_sock {
	struct event *ev;
	curl_socket_t fd;
};

struct fc_http {
	struct event_base *base;
	CURLM *multi;
	struct event *timer;
	TAILQ_HEAD(, fc_req) reqs;
};

static void
fc_req_free(struct fc_http *h, struct fc_req *r)
{
	TAILQ_REMOVE(&h->reqs, r, entry);
	if (r->deadline != NULL)
		event_free(r->deadline);
	curl_multi_remove_handle(h->multi, r->easy);
	curl_easy_cleanup(r->easy);
	curl_slist_free_all(r->headers);
	free(r->body);
	free(r->resp);
	free(r);
}

static void
fc_http_check_done(struct fc_http *h)
{
	CURLMsg *msg;
	int left;

	while ((msg = curl_multi_info_read(h->multi, &left)) != NULL) {
		struct fc_req *r = NULL;
		long status = 0;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
		if (r == NULL)
			continue;
		CURLcode code = msg->data.result;
		if (code == CURLE_OK)
			curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
		fc_http_done_fn done = r->done;
		void *ctx = r->ctx;
		char *resp = r->resp != NULL ? r->resp : strdup("");
		char err[CURL_ERROR_SIZE + 64];
		snprintf(err, sizeof(err), "%s", r->errbuf[0] ? r->errbuf : curl_easy_strerror(code));
		r->resp = NULL;
		fc_req_free(h, r);
		done(ctx, code == CURLE_OK ? status : 0, resp ? resp : "", code == CURLE_OK ? NULL : err);
		free(resp);
	}
}

static void
fc_http_event_cb(evutil_socket_t fd, short what, void *arg)
{
	struct fc_http *h = arg;
	int running, flags = 0;

	if (what & EV_READ)
		flags |= CURL_CSELECT_IN;
	if (what & EV_WRITE)
		flags |= CURL_CSELECT_OUT;
	curl_multi_socket_action(h->multi, fd, flags, &running);
	fc_http_check_done(h);
}

static void
fc_http_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct fc_http *h = arg;
	int running;

	curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	fc_http_check_done(h);
}

/* The request on easy fails from the loop, soon, with why. */
static void
fc_req_fail_soon(CURL *easy, const char *why)
{
	struct fc_req *r = NULL;
	struct timeval now = { 0, 0 };

	curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&r);
	if (r == NULL)
		return;
	r->fail_why = why;
	evtimer_add(r->deadline, &now);
}

static int
fc_http_socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	struct fc_http *h = userp;
	struct fc_sock *fs = socketp;
	short kind = (what & CURL_POLL_IN ? EV_READ : 0) | (what & CURL_POLL_OUT ? EV_WRITE : 0);

	if (what == CURL_POLL_REMOVE) {
		if (fs != NULL) {
			if (fs->ev != NULL)
				event_free(fs->ev);
			free(fs);
		}
		curl_multi_assign(h->multi, s, NULL);
		return 0;
	}
	if (fs == NULL) {
		if ((fs = calloc(1, sizeof(*fs))) == NULL) {
			fc_req_fail_soon(easy, "out of memory watching the API socket");
			return 0;
		}
		fs->fd = s;
		curl_multi_assign(h->multi, s, fs);
	} else if (fs->ev != NULL)
		event_free(fs->ev);
	fs->ev = event_new(h->base, s, kind | EV_PERSIST, fc_http_event_cb, h);
	if (fs->ev == NULL || event_add(fs->ev, NULL) < 0)
		fc_req_fail_soon(easy, "out of memory watching the API socket");
	return 0;
}

/* A request's deadline: curl did not finish it in time, or it could not
 * be driven (fail_why). Answered from here, removed from curl. */
static void
fc_req_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct fc_req *r = arg;
	fc_http_done_fn done = r->done;
	void *ctx = r->ctx;
	const char *why = r->fail_why != NULL ? r->fail_why :
	    "no answer before the request's deadline";

	fc_req_free(r->h, r);
	done(ctx, 0, "", why);
}

static int
fc_http_timerfn(CURLM *multi, long timeout_ms, void *userp)
{
	struct fc_http *h = userp;

	if (timeout_ms < 0) {
		evtimer_del(h->timer);
		return 0;
	}
	struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
	evtimer_add(h->timer, &tv);
	return 0;
}

static size_t
fc_http_write_cb(char *data, size_t size, size_t n, void *userp)
{
	struct fc_req *r = userp;
	size_t len = size * n;

	if (r->resp_len + len > FC_HTTP_MAX_BODY)
		return 0;	/* aborts the transfer: Firecracker never sends this much */
	char *p = realloc(r->resp, r->resp_len + len + 1);
	if (p == NULL)
		return 0;
	memcpy(p + r->resp_len, data, len);
	r->resp = p;
	r->resp_len += len;
	r->resp[r->resp_len] = '\0';
	return len;
}

struct fc_http *
fc_http_new(struct event_base *base)
{
	static int curl_ready;
	struct fc_http *h;

	if (!curl_ready) {
		if (curl_global_init(CURL_GLOBAL_NOTHING) != 0)
			return NULL;
		curl_ready = 1;
	}
	h = calloc(1, sizeof(*h));
	if (h == NULL)
		return NULL;
	h->base = base;
	TAILQ_INIT(&h->reqs);
	h->multi = curl_multi_init();
	h->timer = evtimer_new(base, fc_http_timer_cb, h);
	if (h->multi == NULL || h->timer == NULL) {
		fc_http_free(h);
		return NULL;
	}
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, fc_http_socket_cb);
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, fc_http_timerfn);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
	return h;
}

void
fc_http_free(struct fc_http *h)
{
	struct fc_req *r;

	if (h == NULL)
		return;
	while ((r = TAILQ_FIRST(&h->reqs)) != NULL)
		fc_req_free(h, r);
	if (h->multi != NULL)
		curl_multi_cleanup(h->multi);
	if (h->timer != NULL)
		event_free(h->timer);
	free(h);
}

static bool
fc_req_header(struct fc_req *r, const char *line)
{
	struct curl_slist *l = curl_slist_append(r->headers, line);

	if (l == NULL)
		return false;
	r->headers = l;
	return true;
}

int
fc_http_request(struct fc_http *h, const char *sock_path, const char *method, const char *path,
    const char *body, long timeout_ms, fc_http_done_fn done, void *ctx)
{
	struct fc_req *r = calloc(1, sizeof(*r));
	long deadline_ms = timeout_ms + FC_HTTP_DEADLINE_MARGIN_MS;
	struct timeval deadline = { deadline_ms / 1000, (deadline_ms % 1000) * 1000 };
	char url[512];
	bool ok;

	if (r == NULL)
		return -ENOMEM;
	r->h = h;
	r->done = done;
	r->ctx = ctx;
	if ((r->easy = curl_easy_init()) == NULL ||
	    (r->deadline = evtimer_new(h->base, fc_req_deadline_cb, r)) == NULL) {
		if (r->easy != NULL)
			curl_easy_cleanup(r->easy);
		free(r);
		return -ENOMEM;
	}
	TAILQ_INSERT_TAIL(&h->reqs, r, entry);
	snprintf(url, sizeof(url), "http://localhost%s", path);
	/* The options curl copies can fail for lack of memory. */
	ok = curl_easy_setopt(r->easy, CURLOPT_URL, url) == CURLE_OK &&
	    curl_easy_setopt(r->easy, CURLOPT_UNIX_SOCKET_PATH, sock_path) == CURLE_OK &&
	    curl_easy_setopt(r->easy, CURLOPT_CUSTOMREQUEST, method) == CURLE_OK &&
	    fc_req_header(r, "Accept: application/json") &&
	    /* No "Expect: 100-continue" round trip. */
	    fc_req_header(r, "Expect:");
	if (ok && body != NULL)
		ok = (r->body = strdup(body)) != NULL &&
		    fc_req_header(r, "Content-Type: application/json");
	if (!ok) {
		fc_req_free(h, r);
		return -ENOMEM;
	}
	curl_easy_setopt(r->easy, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(r->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(r->easy, CURLOPT_ERRORBUFFER, r->errbuf);
	curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, fc_http_write_cb);
	curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(r->easy, CURLOPT_PRIVATE, r);
	if (r->body != NULL) {
		curl_easy_setopt(r->easy, CURLOPT_POSTFIELDS, r->body);
		curl_easy_setopt(r->easy, CURLOPT_POSTFIELDSIZE, (long)strlen(r->body));
	}
	curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, r->headers);
	/* Before curl sees it: a socket that cannot be watched from here on
	 * moves the deadline to now, and nothing moves it back. */
	evtimer_add(r->deadline, &deadline);
	if (curl_multi_add_handle(h->multi, r->easy) != CURLM_OK) {
		fc_req_free(h, r);
		return -EIO;
	}
	return 0;
}

void
fc_http_cancel(struct fc_http *h, void *ctx)
{
	struct fc_req *r, *next;

	for (r = TAILQ_FIRST(&h->reqs); r != NULL; r = next) {
		next = TAILQ_NEXT(r, entry);
		if (r->ctx == ctx)
			fc_req_free(h, r);
	}
}
