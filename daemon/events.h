/*
 * The event bus: what happened in emberd (a VM changed status, its
 * hypervisor exited, its agent came up, an import made progress, the
 * daemon reloaded), numbered and kept for subscribers. Every event gets
 * the next sequence number and is encoded once, as the JSON-RPC
 * notification line subscribers receive, into a bounded ring (a count and
 * a byte budget) of the latest events.
 *
 * A subscriber is a connection id, a filter and a cursor: the sequence
 * number of the next event it wants. Nothing is copied per subscriber; a
 * pump run from the loop (never inside emit) writes the lines at its
 * cursor through the sink while the connection holds less than a small
 * window of unsent bytes, and continues when the sink reports it writable.
 * A subscriber whose cursor falls off the ring loses those events: the
 * next thing it is sent is one events.dropped with their count, and the
 * stream goes on. So a subscriber costs its cursor, its filter and at most
 * a window of output, whatever it reads or not.
 *
 * It knows nothing of sockets or VMs: the sink writes lines and measures
 * a connection's unsent output; the caller says whom an event concerns.
 */
#ifndef EMBER_EVENTS_H
#define EMBER_EVENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <jansson.h>

struct event_base;
struct events;

enum event_type {
	EVENT_VM_STATUS,	/* {from, to, event, reason} */
	EVENT_VM_DELETED,	/* {} */
	EVENT_VM_EXITED,	/* {code | signal, status, reason} */
	EVENT_AGENT_READY,	/* {} */
	EVENT_AGENT_LOST,	/* {reason} */
	EVENT_VSOCK_OPENED,	/* {port, open} */
	EVENT_VSOCK_CLOSED,	/* {open} */
	EVENT_IMAGE_PROGRESS,	/* {image, phase, step, steps, done_bytes?, total_bytes?} */
	EVENT_DISK_PROGRESS,	/* {done_bytes, total_bytes, percent} */
	EVENT_DAEMON_RELOAD,	/* {} */
	EVENT_DAEMON_SHUTDOWN,	/* {} */
	EVENT_EVENTS_DROPPED,	/* {count, first_seq, last_seq} (per subscriber) */
	EVENT__COUNT
};

/* An event that concerns nobody in particular (daemon.*): every subscriber. */
#define EVENTS_NO_OWNER		((int64_t)-1)

#define EVENTS_RING_DEFAULT	4096
#define EVENTS_RING_MIN		16
#define EVENTS_RING_MAX		1048576
/* The ring's byte budget: older events go first when it is passed. */
#define EVENTS_RING_BYTES_PER_EVENT	512
/* Unsent bytes a subscriber's connection may hold before the pump waits. */
#define EVENTS_WINDOW_DEFAULT	(64u * 1024)
/* A line's size: longer payload strings are cut to fit. */
#define EVENTS_LINE_MAX		4096
#define EVENTS_FILTER_VMS_MAX	64

/* Where subscriber lines go (control.c in emberd, a fake in tests). */
struct events_sink {
	/* Queues len bytes for conn_id: 0, or -errno (-ENOENT: it has gone). */
	int (*send)(void *ctx, uint64_t conn_id, const char *buf, size_t len);
	/* Bytes queued and not yet written to conn_id, or -ENOENT. */
	long long (*pending)(void *ctx, uint64_t conn_id);
	void *ctx;
};

struct events_limits {
	size_t ring_events;	/* 0: EVENTS_RING_DEFAULT */
	size_t ring_bytes;	/* 0: ring_events * EVENTS_RING_BYTES_PER_EVENT */
	size_t window_bytes;	/* 0: EVENTS_WINDOW_DEFAULT */
};

/* What a subscriber sees: events of its own (uid's) VMs and imports, or
 * all for uid 0, and events that concern nobody in particular. types: a
 * bit per enum event_type, 0 for all. vms: only these VMs' events (events
 * naming no VM still come when they concern nobody in particular). */
struct events_filter {
	uid_t uid;
	uint32_t types;
	const char *const *vms;
	size_t nvms;
};

const char *event_type_name(enum event_type type);
/* The type named name, or -1. */
int event_type_from_name(const char *name);

/* NULL when out of memory. */
struct events *events_new(struct event_base *base, const struct events_limits *lim,
    const struct events_sink *sink);
void events_free(struct events *ev);

/* Records an event and schedules the pump; never blocks, never writes.
 * vm may be NULL; owner is the uid it concerns or EVENTS_NO_OWNER; data
 * (an object, or NULL) is taken. Returns its sequence number (0 when it
 * could not be recorded: out of memory). NULL ev is a no-op. */
uint64_t events_emit(struct events *ev, enum event_type type, const char *vm,
    int64_t owner, json_t *data);
/* Runs the pump now (e.g. before the connections are closed at shutdown). */
void events_flush(struct events *ev);

/* The last sequence number given (0: none yet), the oldest still in the
 * ring (last + 1 when the ring is empty), and this run's stream id (a
 * random hex string: sequence numbers start again at 1 with each emberd). */
uint64_t events_last_seq(const struct events *ev);
uint64_t events_oldest_seq(const struct events *ev);
const char *events_stream_id(const struct events *ev);

/* Makes conn_id a subscriber (replacing its previous subscription).
 * has_since: replay the ring's events after since first; those already
 * gone from the ring are announced by one events.dropped. 0, -ERANGE when
 * since is ahead of the last sequence number, -EINVAL for a bad filter,
 * -ENOMEM. */
int events_subscribe(struct events *ev, uint64_t conn_id, const struct events_filter *f,
    bool has_since, uint64_t since);
void events_unsubscribe(struct events *ev, uint64_t conn_id);
/* The sink's connection drained its output: pump it again. */
void events_writable(struct events *ev, uint64_t conn_id);
size_t events_subscriber_count(const struct events *ev);

#endif
