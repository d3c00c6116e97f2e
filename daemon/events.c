/*
 * The event bus (see events.h). The ring is an array indexed by sequence
 * number modulo its size; a slot holds the encoded line and what the
 * filters look at (type, VM, owner). Evicting the oldest event walks the
 * subscribers once: those whose cursor still points at it and would have
 * seen it count it as dropped and move past it. The pump is one libevent
 * event made active by emit, so an emit inside any callback only records
 * and returns.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/random.h>
#include <time.h>

#include <event2/event.h>

#include "events.h"
#include "rpc-codec.h"

static const char *const type_names[EVENT__COUNT] = {
	[EVENT_VM_STATUS] = "vm.status",
	[EVENT_VM_DELETED] = "vm.deleted",
	[EVENT_VM_EXITED] = "vm.exited",
	[EVENT_AGENT_READY] = "agent.ready",
	[EVENT_AGENT_LOST] = "agent.lost",
	[EVENT_VSOCK_OPENED] = "vsock.opened",
	[EVENT_VSOCK_CLOSED] = "vsock.closed",
	[EVENT_IMAGE_PROGRESS] = "image.progress",
	[EVENT_DISK_PROGRESS] = "disk.progress",
	[EVENT_DAEMON_RELOAD] = "daemon.reload",
	[EVENT_DAEMON_SHUTDOWN] = "daemon.shutdown",
	[EVENT_EVENTS_DROPPED] = "events.dropped",
};

struct ev_rec {
	uint64_t seq;		/* 0: empty slot */
	enum event_type type;
	int64_t owner;
	char *vm;		/* NULL: names no VM */
	char *line;		/* the notification, '\n'-terminated */
	size_t len;
};

struct ev_sub {
	TAILQ_ENTRY(ev_sub) entry;
	uint64_t conn_id;
	uid_t uid;
	uint32_t types;
	char **vms;
	size_t nvms;
	uint64_t cursor;	/* the next sequence number it wants */
	uint64_t dropped;	/* events it lost since it was last told */
	uint64_t dropped_first, dropped_last;
	bool dead;		/* its connection has gone */
};

struct events {
	struct event_base *base;
	struct events_sink sink;
	size_t cap, max_bytes, window;
	struct ev_rec *ring;
	uint64_t first_seq;	/* oldest in the ring */
	uint64_t next_seq;	/* the next to give */
	size_t bytes;
	TAILQ_HEAD(, ev_sub) subs;
	size_t nsubs;
	struct event *ev_pump;
	char *out;		/* what one pump writes to one subscriber */
	size_t out_cap;
	char stream_id[17];
};

const char *
event_type_name(enum event_type type)
{
	return (unsigned)type < EVENT__COUNT ? type_names[type] : "unknown";
}

int
event_type_from_name(const char *name)
{
	for (int i = 0; i < EVENT__COUNT; i++)
		if (strcmp(type_names[i], name) == 0)
			return i;
	return -1;
}

static void events_pump_cb(evutil_socket_t fd, short what, void *arg);

struct events *
events_new(struct event_base *base, const struct events_limits *lim,
    const struct events_sink *sink)
{
	struct events *ev = calloc(1, sizeof(*ev));
	uint64_t id = 0;

	if (ev == NULL)
		return NULL;
	ev->base = base;
	ev->sink = *sink;
	ev->cap = lim != NULL && lim->ring_events ? lim->ring_events : EVENTS_RING_DEFAULT;
	if (ev->cap < EVENTS_RING_MIN)
		ev->cap = EVENTS_RING_MIN;
	if (ev->cap > EVENTS_RING_MAX)
		ev->cap = EVENTS_RING_MAX;
	ev->max_bytes = lim != NULL && lim->ring_bytes ? lim->ring_bytes :
	    ev->cap * EVENTS_RING_BYTES_PER_EVENT;
	ev->window = lim != NULL && lim->window_bytes ? lim->window_bytes :
	    EVENTS_WINDOW_DEFAULT;
	ev->first_seq = ev->next_seq = 1;
	TAILQ_INIT(&ev->subs);
	ev->ring = calloc(ev->cap, sizeof(*ev->ring));
	ev->ev_pump = event_new(base, -1, 0, events_pump_cb, ev);
	ev->out_cap = ev->window + 2 * EVENTS_LINE_MAX;
	ev->out = malloc(ev->out_cap);
	if (ev->ring == NULL || ev->ev_pump == NULL || ev->out == NULL) {
		events_free(ev);
		return NULL;
	}
	if (getrandom(&id, sizeof(id), GRND_NONBLOCK) != sizeof(id))
		id = (uint64_t)time(NULL) ^ ((uint64_t)(uintptr_t)ev << 16);
	snprintf(ev->stream_id, sizeof(ev->stream_id), "%016llx", (unsigned long long)id);
	return ev;
}

static void
sub_free(struct ev_sub *s)
{
	for (size_t i = 0; i < s->nvms; i++)
		free(s->vms[i]);
	free(s->vms);
	free(s);
}

static void
rec_clear(struct ev_rec *r)
{
	free(r->vm);
	free(r->line);
	memset(r, 0, sizeof(*r));
}

void
events_free(struct events *ev)
{
	struct ev_sub *s;

	if (ev == NULL)
		return;
	while ((s = TAILQ_FIRST(&ev->subs)) != NULL) {
		TAILQ_REMOVE(&ev->subs, s, entry);
		sub_free(s);
	}
	if (ev->ring != NULL)
		for (size_t i = 0; i < ev->cap; i++)
			rec_clear(&ev->ring[i]);
	free(ev->ring);
	if (ev->ev_pump != NULL)
		event_free(ev->ev_pump);
	free(ev->out);
	free(ev);
}

static struct ev_rec *
slot(struct events *ev, uint64_t seq)
{
	return &ev->ring[seq % ev->cap];
}

/* Whether subscriber s is shown event r (events.dropped is its own). */
static bool
sub_sees(const struct ev_sub *s, const struct ev_rec *r)
{
	if (s->types != 0 && !(s->types & (1u << r->type)))
		return false;
	if (s->uid != 0 && r->owner != EVENTS_NO_OWNER && r->owner != (int64_t)s->uid)
		return false;
	if (s->nvms == 0)
		return true;
	if (r->vm == NULL)
		return r->owner == EVENTS_NO_OWNER;
	for (size_t i = 0; i < s->nvms; i++)
		if (strcmp(s->vms[i], r->vm) == 0)
			return true;
	return false;
}

static void
sub_count_dropped(struct ev_sub *s, uint64_t first, uint64_t last, uint64_t count)
{
	if (count == 0)
		return;
	if (s->dropped == 0)
		s->dropped_first = first;
	s->dropped_last = last;
	s->dropped += count;
}

/* Removes the oldest event; subscribers that had not been sent it lose it. */
static void
ring_evict_oldest(struct events *ev)
{
	struct ev_rec *r = slot(ev, ev->first_seq);
	struct ev_sub *s;

	TAILQ_FOREACH(s, &ev->subs, entry) {
		if (s->cursor != ev->first_seq)
			continue;
		if (sub_sees(s, r))
			sub_count_dropped(s, r->seq, r->seq, 1);
		s->cursor++;
	}
	ev->bytes -= r->len;
	rec_clear(r);
	ev->first_seq++;
}

static void
schedule_pump(struct events *ev)
{
	if (ev->nsubs > 0)
		event_active(ev->ev_pump, EV_TIMEOUT, 0);
}

/* "2026-12-03T21:04:05.123Z" */
static void
format_now(char *buf, size_t len)
{
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
	    tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
}

/* Cuts every string value of data to fit a line (reasons may be long). */
static void
data_shorten(json_t *data, size_t max)
{
	const char *key;
	json_t *v;

	json_object_foreach(data, key, v) {
		if (json_is_string(v) && json_string_length(v) > max) {
			char buf[1024];
			size_t n = max < sizeof(buf) - 4 ? max : sizeof(buf) - 4;
			memcpy(buf, json_string_value(v), n);
			/* do not leave half a UTF-8 sequence */
			while (n > 0 && ((unsigned char)buf[n - 1] & 0xc0) == 0x80)
				n--;
			if (n > 0 && ((unsigned char)buf[n - 1] & 0xc0) == 0xc0)
				n--;
			memcpy(buf + n, "...", 4);
			json_string_set(v, buf);
		}
	}
}

/* The notification line for an event; NULL when out of memory. */
static char *
encode_line(uint64_t seq, enum event_type type, const char *vm, int64_t owner,
    json_t *data, size_t *len)
{
	char now[40], *line;
	json_t *params, *msg;

	format_now(now, sizeof(now));
	params = json_pack("{s:I, s:s, s:s}", "seq", (json_int_t)seq, "time", now,
	    "type", event_type_name(type));
	if (params == NULL)
		return NULL;
	if (vm != NULL)
		json_object_set_new(params, "vm", json_string(vm));
	if (owner != EVENTS_NO_OWNER)
		json_object_set_new(params, "owner", json_integer(owner));
	json_object_set(params, "data", data != NULL ? data : json_object());
	msg = json_pack("{s:s, s:s, s:o}", "jsonrpc", "2.0", "method", "event", "params", params);
	if (msg == NULL)
		return NULL;
	line = rpc_encode(msg, len);
	json_decref(msg);
	return line;
}

uint64_t
events_emit(struct events *ev, enum event_type type, const char *vm, int64_t owner,
    json_t *data)
{
	struct ev_rec rec = { 0 };

	if (ev == NULL || (unsigned)type >= EVENT__COUNT) {
		json_decref(data);
		return 0;
	}
	if (data == NULL)
		data = json_object();
	rec.line = encode_line(ev->next_seq, type, vm, owner, data, &rec.len);
	if (rec.line != NULL && rec.len > EVENTS_LINE_MAX) {
		free(rec.line);
		data_shorten(data, 256);
		rec.line = encode_line(ev->next_seq, type, vm, owner, data, &rec.len);
	}
	if (rec.line != NULL && rec.len > EVENTS_LINE_MAX) {	/* many long fields */
		free(rec.line);
		json_decref(data);
		data = json_pack("{s:b}", "truncated", 1);
		rec.line = encode_line(ev->next_seq, type, vm, owner, data, &rec.len);
	}
	json_decref(data);
	if (rec.line == NULL)
		return 0;
	if (vm != NULL && (rec.vm = strdup(vm)) == NULL) {
		free(rec.line);
		return 0;
	}
	rec.seq = ev->next_seq;
	rec.type = type;
	rec.owner = owner;
	while (ev->next_seq - ev->first_seq >= ev->cap ||
	    (ev->first_seq < ev->next_seq && ev->bytes + rec.len > ev->max_bytes))
		ring_evict_oldest(ev);
	*slot(ev, rec.seq) = rec;
	ev->bytes += rec.len;
	ev->next_seq++;
	schedule_pump(ev);
	return rec.seq;
}

/* The events.dropped line telling s what it lost; NULL when out of memory. */
static char *
dropped_line(const struct ev_sub *s, size_t *len)
{
	json_t *data = json_pack("{s:I, s:I, s:I}", "count", (json_int_t)s->dropped,
	    "first_seq", (json_int_t)s->dropped_first, "last_seq", (json_int_t)s->dropped_last);
	char *line = data != NULL ? encode_line(s->dropped_last, EVENT_EVENTS_DROPPED, NULL,
	    EVENTS_NO_OWNER, data, len) : NULL;

	json_decref(data);
	return line;
}

/* Writes what s has not been sent, in one piece, while its connection
 * holds less than the window; nothing moves unless the write succeeds. */
static void
sub_pump(struct events *ev, struct ev_sub *s)
{
	uint64_t cursor = s->cursor;
	bool told_dropped = false;
	size_t used = 0;
	long long pending;
	int r;

	if (s->dead)
		return;
	pending = ev->sink.pending(ev->sink.ctx, s->conn_id);
	if (pending < 0) {
		s->dead = true;
		return;
	}
	while ((size_t)pending + used < ev->window) {
		const char *line;
		char *own = NULL;
		size_t len = 0;

		if (s->dropped > 0 && !told_dropped) {
			if ((line = own = dropped_line(s, &len)) == NULL)
				break;
			told_dropped = true;
		} else if (cursor < ev->next_seq) {
			struct ev_rec *rec = slot(ev, cursor++);
			if (!sub_sees(s, rec))
				continue;
			line = rec->line;
			len = rec->len;
		} else
			break;
		if (used + len > ev->out_cap) {	/* cannot happen: lines are bounded */
			free(own);
			break;
		}
		memcpy(ev->out + used, line, len);
		used += len;
		free(own);
	}
	if (used == 0) {
		s->cursor = cursor;	/* past events it does not see */
		return;
	}
	r = ev->sink.send(ev->sink.ctx, s->conn_id, ev->out, used);
	if (r == -ENOENT)
		s->dead = true;
	if (r < 0)
		return;	/* out of memory: the same again at the next pump */
	s->cursor = cursor;
	if (told_dropped)
		s->dropped = 0;
}

static void
events_pump_all(struct events *ev)
{
	struct ev_sub *s, *tmp;

	for (s = TAILQ_FIRST(&ev->subs); s != NULL; s = tmp) {
		tmp = TAILQ_NEXT(s, entry);
		sub_pump(ev, s);
		if (s->dead) {
			TAILQ_REMOVE(&ev->subs, s, entry);
			ev->nsubs--;
			sub_free(s);
		}
	}
}

static void
events_pump_cb(evutil_socket_t fd, short what, void *arg)
{
	events_pump_all(arg);
}

void
events_flush(struct events *ev)
{
	if (ev != NULL)
		events_pump_all(ev);
}

uint64_t
events_last_seq(const struct events *ev)
{
	return ev->next_seq - 1;
}

uint64_t
events_oldest_seq(const struct events *ev)
{
	return ev->first_seq;
}

const char *
events_stream_id(const struct events *ev)
{
	return ev->stream_id;
}

static struct ev_sub *
sub_find(struct events *ev, uint64_t conn_id)
{
	struct ev_sub *s;

	TAILQ_FOREACH(s, &ev->subs, entry)
		if (s->conn_id == conn_id)
			return s;
	return NULL;
}

int
events_subscribe(struct events *ev, uint64_t conn_id, const struct events_filter *f,
    bool has_since, uint64_t since)
{
	struct ev_sub *s;

	if (has_since && since > events_last_seq(ev))
		return -ERANGE;
	if (f->nvms > EVENTS_FILTER_VMS_MAX || (f->types >> EVENT__COUNT) != 0)
		return -EINVAL;
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return -ENOMEM;
	s->conn_id = conn_id;
	s->uid = f->uid;
	s->types = f->types;
	if (f->nvms > 0 && (s->vms = calloc(f->nvms, sizeof(*s->vms))) == NULL) {
		free(s);
		return -ENOMEM;
	}
	for (size_t i = 0; i < f->nvms; i++, s->nvms++)
		if ((s->vms[i] = strdup(f->vms[i])) == NULL) {
			sub_free(s);
			return -ENOMEM;
		}
	s->cursor = has_since ? since + 1 : ev->next_seq;
	if (s->cursor < ev->first_seq) {
		/* Gone before we could tell whether it would have seen them:
		 * counted as sequence numbers missed. */
		sub_count_dropped(s, s->cursor, ev->first_seq - 1, ev->first_seq - s->cursor);
		s->cursor = ev->first_seq;
	}
	events_unsubscribe(ev, conn_id);
	TAILQ_INSERT_TAIL(&ev->subs, s, entry);
	ev->nsubs++;
	schedule_pump(ev);
	return 0;
}

void
events_unsubscribe(struct events *ev, uint64_t conn_id)
{
	struct ev_sub *s;

	if (ev == NULL || (s = sub_find(ev, conn_id)) == NULL)
		return;
	TAILQ_REMOVE(&ev->subs, s, entry);
	ev->nsubs--;
	sub_free(s);
}

void
events_writable(struct events *ev, uint64_t conn_id)
{
	struct ev_sub *s;

	if (ev == NULL || (s = sub_find(ev, conn_id)) == NULL)
		return;
	sub_pump(ev, s);
	if (s->dead)
		events_unsubscribe(ev, conn_id);
}

size_t
events_subscriber_count(const struct events *ev)
{
	return ev->nsubs;
}
