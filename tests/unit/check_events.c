/*
 * Unit tests for the event bus (daemon/events.c) against a fake sink: a
 * connection is a byte count the test drains by hand and a list of the
 * lines it was sent. Sequence numbers, the ring's count and byte bounds,
 * filters (owner, VM, type), resume from a sequence number, a subscriber
 * that stops reading (its output stays within the window, it gets one
 * events.dropped with the right count and then the stream goes on), and a
 * connection that went away, a write that fails (retried, nothing lost),
 * and the per-VM bound on vsock events.
 */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <jansson.h>

#include "daemon.h"
#include "events.h"
#include "vm.h"
#include "vm-events.h"
#include "test-util.h"

#define MAX_LINES 20000

struct fake_conn {
	bool gone;
	int fail_sends;		/* refuse this many writes (-ENOMEM) */
	long long pending;	/* bytes "not yet written" */
	size_t nlines;
	json_t *lines[MAX_LINES];
};

static struct fake_conn conns[4];
static struct event_base *base;

/* A write holds one or more whole lines. */
static int
fake_send(void *ctx, uint64_t id, const char *buf, size_t len)
{
	struct fake_conn *c = &conns[id];
	json_error_t jerr;
	size_t at = 0;

	if (c->gone)
		return -ENOENT;
	if (c->fail_sends > 0) {
		c->fail_sends--;
		return -ENOMEM;
	}
	ck_assert_msg(len > 0 && buf[len - 1] == '\n', "a write ends with a newline");
	while (at < len) {
		const char *nl = memchr(buf + at, '\n', len - at);
		ck_assert_uint_lt(c->nlines, MAX_LINES);
		c->lines[c->nlines] = json_loadb(buf + at, (size_t)(nl - (buf + at)), 0, &jerr);
		ck_assert_msg(c->lines[c->nlines] != NULL, "line is JSON: %s", jerr.text);
		c->nlines++;
		at = (size_t)(nl - buf) + 1;
	}
	c->pending += (long long)len;
	return 0;
}

static long long
fake_pending(void *ctx, uint64_t id)
{
	return conns[id].gone ? -ENOENT : conns[id].pending;
}

static const struct events_sink sink = { fake_send, fake_pending, NULL };

static void
setup(void)
{
	base = event_base_new();
	memset(conns, 0, sizeof(conns));
}

static void
teardown(void)
{
	for (size_t i = 0; i < 4; i++)
		for (size_t j = 0; j < conns[i].nlines; j++)
			json_decref(conns[i].lines[j]);
	event_base_free(base);
}

/* Runs the loop until nothing is active (the pump ran). */
static void
turn(void)
{
	event_base_loop(base, EVLOOP_NONBLOCK);
}

/* The client reads everything, as often as the bus has more for it. */
static void
read_all(struct events *ev, size_t conn)
{
	do {
		conns[conn].pending = 0;
		events_writable(ev, conn);
	} while (conns[conn].pending > 0);
}

static json_t *
params(size_t conn, size_t i)
{
	ck_assert_uint_lt(i, conns[conn].nlines);
	ck_assert_str_eq(json_string_value(json_object_get(conns[conn].lines[i], "method")),
	    "event");
	return json_object_get(conns[conn].lines[i], "params");
}

static long long
seq_of(size_t conn, size_t i)
{
	return (long long)json_integer_value(json_object_get(params(conn, i), "seq"));
}

static const char *
type_of(size_t conn, size_t i)
{
	return json_string_value(json_object_get(params(conn, i), "type"));
}

START_TEST(events_numbers_from_one_and_delivers_after_subscribe)
{
	struct events *ev = events_new(base, NULL, &sink);
	struct events_filter all = { .uid = 0 };

	ck_assert_uint_eq(events_last_seq(ev), 0);
	ck_assert_uint_eq(events_emit(ev, EVENT_DAEMON_RELOAD, NULL, EVENTS_NO_OWNER, NULL), 1);
	ck_assert_int_eq(events_subscribe(ev, 1, &all, false, 0), 0);
	ck_assert_uint_eq(events_emit(ev, EVENT_VM_STATUS, "a", 0,
	    json_pack("{s:s}", "to", "created")), 2);
	ck_assert_uint_eq(conns[1].nlines, 0);	/* never inside emit */
	turn();
	ck_assert_uint_eq(conns[1].nlines, 1);	/* not the one before subscribing */
	ck_assert_int_eq(seq_of(1, 0), 2);
	ck_assert_str_eq(type_of(1, 0), "vm.status");
	ck_assert_str_eq(json_string_value(json_object_get(params(1, 0), "vm")), "a");
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(params(1, 0),
	    "data"), "to")), "created");
	ck_assert_int_eq(events_subscribe(ev, 2, &all, true, events_last_seq(ev) + 1), -ERANGE);
	events_free(ev);
}
END_TEST

START_TEST(events_filter_hides_other_owners_and_vms_and_types)
{
	struct events *ev = events_new(base, NULL, &sink);
	struct events_filter mine = { .uid = 1000 };
	const char *only_b[] = { "b" };
	struct events_filter vm_b = { .uid = 0, .vms = only_b, .nvms = 1 };
	struct events_filter exits = { .uid = 0, .types = 1u << EVENT_VM_EXITED };

	ck_assert_int_eq(events_subscribe(ev, 1, &mine, false, 0), 0);
	ck_assert_int_eq(events_subscribe(ev, 2, &vm_b, false, 0), 0);
	ck_assert_int_eq(events_subscribe(ev, 3, &exits, false, 0), 0);
	events_emit(ev, EVENT_VM_STATUS, "a", 0, NULL);		/* root's a */
	events_emit(ev, EVENT_VM_STATUS, "b", 1000, NULL);	/* 1000's b */
	events_emit(ev, EVENT_VM_EXITED, "a", 0, NULL);
	events_emit(ev, EVENT_IMAGE_PROGRESS, NULL, 0, NULL);	/* root's import */
	events_emit(ev, EVENT_DAEMON_SHUTDOWN, NULL, EVENTS_NO_OWNER, NULL);
	turn();
	ck_assert_uint_eq(conns[1].nlines, 2);
	ck_assert_int_eq(seq_of(1, 0), 2);
	ck_assert_str_eq(type_of(1, 1), "daemon.shutdown");
	ck_assert_uint_eq(conns[2].nlines, 2);
	ck_assert_int_eq(seq_of(2, 0), 2);
	ck_assert_int_eq(seq_of(2, 1), 5);
	ck_assert_uint_eq(conns[3].nlines, 1);
	ck_assert_str_eq(type_of(3, 0), "vm.exited");
	events_free(ev);
}
END_TEST

START_TEST(events_resume_replays_the_ring_and_reports_what_is_gone)
{
	struct events_limits lim = { .ring_events = 16 };
	struct events *ev = events_new(base, &lim, &sink);
	struct events_filter all = { .uid = 0 };

	for (int i = 0; i < 40; i++)
		events_emit(ev, EVENT_VM_STATUS, "a", 0, NULL);
	ck_assert_uint_eq(events_oldest_seq(ev), 25);
	ck_assert_int_eq(events_subscribe(ev, 1, &all, true, 30), 0);
	ck_assert_int_eq(events_subscribe(ev, 2, &all, true, 10), 0);
	turn();
	ck_assert_uint_eq(conns[1].nlines, 10);
	ck_assert_int_eq(seq_of(1, 0), 31);
	ck_assert_int_eq(seq_of(1, 9), 40);
	/* 11..24 fell off the ring: one events.dropped, then 25..40 */
	ck_assert_uint_eq(conns[2].nlines, 17);
	ck_assert_str_eq(type_of(2, 0), "events.dropped");
	ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(params(2, 0),
	    "data"), "count")), 14);
	ck_assert_int_eq(seq_of(2, 0), 24);
	ck_assert_int_eq(seq_of(2, 1), 25);
	events_free(ev);
}
END_TEST

START_TEST(events_slow_subscriber_gets_one_dropped_then_continues)
{
	struct events_limits lim = { .ring_events = 64, .window_bytes = 2048 };
	struct events *ev = events_new(base, &lim, &sink);
	struct events_filter all = { .uid = 0 }, mine = { .uid = 7 };
	long long max_pending = 0;

	ck_assert_int_eq(events_subscribe(ev, 1, &all, false, 0), 0);
	ck_assert_int_eq(events_subscribe(ev, 2, &mine, false, 0), 0);
	for (int i = 0; i < 1000; i++) {
		events_emit(ev, EVENT_VM_STATUS, i % 2 ? "x" : "y", i % 2 ? 7 : 0, NULL);
		turn();
		if (conns[1].pending > max_pending)
			max_pending = conns[1].pending;
	}
	/* it stopped at the window: a line past it at most */
	ck_assert_int_le(max_pending, 2048 + EVENTS_LINE_MAX);
	size_t before = conns[1].nlines;
	ck_assert_uint_lt(before, 100);
	long long last_seen = seq_of(1, before - 1);
	/* it reads everything: one events.dropped, then the ring */
	read_all(ev, 1);
	ck_assert_str_eq(type_of(1, before), "events.dropped");
	json_t *d = json_object_get(params(1, before), "data");
	long long first = json_integer_value(json_object_get(d, "first_seq"));
	long long last = json_integer_value(json_object_get(d, "last_seq"));
	ck_assert_int_eq(first, last_seen + 1);
	ck_assert_int_eq(json_integer_value(json_object_get(d, "count")), last - first + 1);
	ck_assert_int_eq(seq_of(1, before + 1), last + 1);
	ck_assert_int_eq(seq_of(1, conns[1].nlines - 1), 1000);
	/* only one notice */
	for (size_t i = before + 1; i < conns[1].nlines; i++)
		ck_assert_str_ne(type_of(1, i), "events.dropped");
	/* the second subscriber, also not reading, counts only what it would see */
	size_t before2 = conns[2].nlines;
	read_all(ev, 2);
	d = json_object_get(params(2, before2), "data");
	ck_assert_str_eq(type_of(2, before2), "events.dropped");
	first = json_integer_value(json_object_get(d, "first_seq"));
	last = json_integer_value(json_object_get(d, "last_seq"));
	ck_assert_int_eq(json_integer_value(json_object_get(d, "count")), (last - first) / 2 + 1);
	/* and the stream goes on */
	events_emit(ev, EVENT_VM_STATUS, "x", 7, NULL);
	turn();
	ck_assert_int_eq(seq_of(2, conns[2].nlines - 1), 1001);
	events_free(ev);
}
END_TEST

START_TEST(events_ring_keeps_its_byte_budget)
{
	struct events_limits lim = { .ring_events = 1000, .ring_bytes = 8192 };
	struct events *ev = events_new(base, &lim, &sink);
	char big[2000];

	memset(big, 'r', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	for (int i = 0; i < 100; i++)
		events_emit(ev, EVENT_VM_STATUS, "a", 0, json_pack("{s:s}", "reason", big));
	/* about 2 KiB each: at most four fit */
	ck_assert_uint_ge(events_oldest_seq(ev), 96);
	ck_assert_uint_eq(events_last_seq(ev), 100);
	events_free(ev);
}
END_TEST

START_TEST(events_long_payload_strings_are_cut)
{
	struct events *ev = events_new(base, NULL, &sink);
	struct events_filter all = { .uid = 0 };
	char *huge = malloc(20000);

	memset(huge, 'h', 19999);
	huge[19999] = '\0';
	ck_assert_int_eq(events_subscribe(ev, 1, &all, false, 0), 0);
	events_emit(ev, EVENT_VM_EXITED, "a", 0, json_pack("{s:s}", "reason", huge));
	turn();
	ck_assert_uint_eq(conns[1].nlines, 1);
	const char *r = json_string_value(json_object_get(json_object_get(params(1, 0), "data"),
	    "reason"));
	ck_assert_uint_lt(strlen(r), 300);
	free(huge);
	events_free(ev);
}
END_TEST

START_TEST(events_forgets_a_subscriber_whose_connection_went)
{
	struct events *ev = events_new(base, NULL, &sink);
	struct events_filter all = { .uid = 0 };

	ck_assert_int_eq(events_subscribe(ev, 1, &all, false, 0), 0);
	ck_assert_int_eq(events_subscribe(ev, 2, &all, false, 0), 0);
	ck_assert_int_eq(events_subscribe(ev, 2, &all, false, 0), 0);	/* replaces */
	ck_assert_uint_eq(events_subscriber_count(ev), 2);
	conns[1].gone = true;
	events_emit(ev, EVENT_VM_DELETED, "a", 0, NULL);
	turn();
	ck_assert_uint_eq(events_subscriber_count(ev), 1);
	ck_assert_uint_eq(conns[2].nlines, 1);
	events_unsubscribe(ev, 2);
	ck_assert_uint_eq(events_subscriber_count(ev), 0);
	events_free(ev);
}
END_TEST

START_TEST(events_vsock_of_one_vm_are_rate_limited)
{
	struct ember_daemon d = { 0 };
	struct vm vm = { 0 };
	struct events_filter all = { .uid = 0 };
	size_t sent;
	long long suppressed;

	d.events = events_new(base, NULL, &sink);
	vm.daemon = &d;
	snprintf(vm.rec.name, sizeof(vm.rec.name), "g");
	vm.rec.owner_uid = 1000;
	ck_assert_int_eq(events_subscribe(d.events, 1, &all, false, 0), 0);
	for (int i = 0; i < 50; i++)
		vm_events_vsock(&vm, i % 2 == 0, 1024, (uint32_t)(3000 + i), (size_t)(i % 2));
	turn();
	sent = conns[1].nlines;
	/* at most the limit per second (the loop may cross one boundary) */
	ck_assert_uint_ge(sent, VM_EVENTS_VSOCK_PER_S);
	ck_assert_uint_le(sent, 2 * VM_EVENTS_VSOCK_PER_S);
	vm.vsock_events.second = 0;	/* a later second */
	vm_events_vsock(&vm, false, 1024, 4000, 0);
	turn();
	ck_assert_uint_eq(conns[1].nlines, sent + 1);
	suppressed = json_integer_value(json_object_get(json_object_get(params(1, sent), "data"),
	    "suppressed"));
	ck_assert_int_eq((long long)sent + suppressed, 50);
	ck_assert_str_eq(type_of(1, sent), "vsock.closed");
	events_free(d.events);
}
END_TEST

START_TEST(events_a_failed_write_loses_nothing)
{
	struct events *ev = events_new(base, NULL, &sink);
	struct events_filter all = { .uid = 0 };

	ck_assert_int_eq(events_subscribe(ev, 1, &all, false, 0), 0);
	conns[1].fail_sends = 1;
	events_emit(ev, EVENT_VM_STATUS, "a", 0, NULL);
	events_emit(ev, EVENT_VM_DELETED, "a", 0, NULL);
	turn();
	ck_assert_uint_eq(conns[1].nlines, 0);
	events_emit(ev, EVENT_DAEMON_RELOAD, NULL, EVENTS_NO_OWNER, NULL);
	turn();
	ck_assert_uint_eq(conns[1].nlines, 3);
	ck_assert_int_eq(seq_of(1, 0), 1);
	ck_assert_int_eq(seq_of(1, 2), 3);
	events_free(ev);
}
END_TEST

START_TEST(events_type_names_round_trip)
{
	for (int t = 0; t < EVENT__COUNT; t++)
		ck_assert_int_eq(event_type_from_name(event_type_name((enum event_type)t)), t);
	ck_assert_int_eq(event_type_from_name("vm.nonsense"), -1);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("events");
	TCase *tc = tcase_create("bus");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, events_numbers_from_one_and_delivers_after_subscribe);
	tcase_add_test(tc, events_filter_hides_other_owners_and_vms_and_types);
	tcase_add_test(tc, events_resume_replays_the_ring_and_reports_what_is_gone);
	tcase_add_test(tc, events_slow_subscriber_gets_one_dropped_then_continues);
	tcase_add_test(tc, events_ring_keeps_its_byte_budget);
	tcase_add_test(tc, events_long_payload_strings_are_cut);
	tcase_add_test(tc, events_forgets_a_subscriber_whose_connection_went);
	tcase_add_test(tc, events_vsock_of_one_vm_are_rate_limited);
	tcase_add_test(tc, events_a_failed_write_loses_nothing);
	tcase_add_test(tc, events_type_names_round_trip);
	suite_add_tcase(s, tc);
	return test_run_suite(s);
}
