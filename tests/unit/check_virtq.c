/*
 * Unit tests for platform/linux/virtq with a fake guest driver. One memfd
 * is mapped twice: once as "QEMU" (its addresses are the uvas the rings are
 * given by) and once through guest_mem as two regions that meet at gpa
 * 0x80000, the way QEMU splits RAM. The driver lays out desc/avail/used at
 * fixed gpas and posts chains; the tests check what virtq_pop returns, what
 * lands in the used ring and when the call eventfd fires.
 */
#include <sys/eventfd.h>
#include <sys/mman.h>

#include <check.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "linux/virtq.h"
#include "test-util.h"

#define MEM_SIZE	0x100000
#define DESC_GPA	0x1000
#define AVAIL_GPA	0x9000
#define USED_GPA	0xa000

struct drv {
	int			 memfd;
	uint8_t			*qemu;
	struct guest_mem	 mem;
	struct virtq		 vq;
	unsigned		 num;
	struct vring_desc	*desc;
	struct vring_avail	*avail;
	struct vring_used	*used;
	uint16_t		 avail_idx;
	int			 call;		/* the test's end of the call eventfd */
};

static struct drv d;

static void *
gp(uint64_t gpa)
{
	return d.qemu + gpa;
}

static void
drv_setup(unsigned num, uint16_t start)
{
	struct guest_mem_desc regions[2] = {
		{ .gpa = 0, .size = 0x80000, .mmap_offset = 0 },
		{ .gpa = 0x80000, .size = 0x80000, .mmap_offset = 0x80000 },
	};
	int fds[2];

	memset(&d, 0, sizeof(d));
	d.memfd = memfd_create("virtq-test", MFD_CLOEXEC);
	ck_assert_int_ge(d.memfd, 0);
	ck_assert_int_eq(ftruncate(d.memfd, MEM_SIZE), 0);
	d.qemu = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, d.memfd, 0);
	ck_assert_ptr_ne(d.qemu, MAP_FAILED);
	regions[0].uva = (uintptr_t)d.qemu;
	regions[1].uva = (uintptr_t)d.qemu + 0x80000;
	fds[0] = fds[1] = d.memfd;
	guest_mem_init(&d.mem);
	ck_assert_int_eq(guest_mem_set_table(&d.mem, regions, fds, 2), 0);

	d.num = num;
	d.desc = gp(DESC_GPA);
	d.avail = gp(AVAIL_GPA);
	d.used = gp(USED_GPA);
	d.avail_idx = start;
	d.avail->idx = htole16(start);
	d.used->idx = htole16(start);

	virtq_init(&d.vq);
	ck_assert_int_eq(virtq_set_num(&d.vq, num), 0);
	virtq_set_addr(&d.vq, (uintptr_t)gp(DESC_GPA), (uintptr_t)gp(USED_GPA),
	    (uintptr_t)gp(AVAIL_GPA));
	virtq_set_base(&d.vq, start);
	ck_assert_int_eq(virtq_map(&d.vq, &d.mem, true), 0);
	ck_assert_uint_eq(d.vq.used_idx, start);

	d.call = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	ck_assert_int_ge(d.call, 0);
	virtq_set_call_fd(&d.vq, dup(d.call));
}

static void
drv_teardown(void)
{
	virtq_fini(&d.vq);
	guest_mem_clear(&d.mem);
	munmap(d.qemu, MEM_SIZE);
	close(d.memfd);
	close(d.call);
}

static void
set_desc(struct vring_desc *table, unsigned i, uint64_t addr, uint32_t len,
    uint16_t flags, uint16_t next)
{
	table[i].addr = htole64(addr);
	table[i].len = htole32(len);
	table[i].flags = htole16(flags);
	table[i].next = htole16(next);
}

static void
post(uint16_t head)
{
	d.avail->ring[d.avail_idx % d.num] = htole16(head);
	d.avail_idx++;
	__atomic_store_n(&d.avail->idx, htole16(d.avail_idx), __ATOMIC_RELEASE);
}

static bool
called(void)
{
	uint64_t v;

	return read(d.call, &v, sizeof(v)) == sizeof(v);
}

static struct virtq_elem elem;

START_TEST(direct_writable_buffer)
{
	drv_setup(16, 0);
	set_desc(d.desc, 3, 0x10000, 3776, VRING_DESC_F_WRITE, 0);
	post(3);
	ck_assert_int_eq(virtq_pop(&d.vq, &d.mem, &elem), 1);
	ck_assert_uint_eq(elem.head, 3);
	ck_assert_uint_eq(elem.out_num, 0);
	ck_assert_uint_eq(elem.in_num, 1);
	ck_assert_uint_eq(elem.in_len, 3776);
	ck_assert_ptr_eq(elem.in[0].iov_base, gpa_to_hva(&d.mem, 0x10000, 1));
	ck_assert_uint_eq(buf_to_iov(elem.in, elem.in_num, 0, "hi", 2), 2);
	ck_assert_int_eq(memcmp(gp(0x10000), "hi", 2), 0);
	virtq_push(&d.vq, elem.head, 60);
	ck_assert_uint_eq(le16toh(d.used->idx), 1);
	ck_assert_uint_eq(le32toh(d.used->ring[0].id), 3);
	ck_assert_uint_eq(le32toh(d.used->ring[0].len), 60);
	ck_assert_int_eq(virtq_pop(&d.vq, &d.mem, &elem), 0);
	ck_assert_int_eq(virtq_notify(&d.vq), 1);
	ck_assert(called());
	drv_teardown();
}
END_TEST

START_TEST(header_split_4_plus_40_then_payload)
{
	uint8_t hdr[44], got[44];
	char payload[17];

	for (unsigned i = 0; i < sizeof(hdr); i++)
		hdr[i] = (uint8_t)(0xa0 + i);
	drv_setup(16, 0);
	memcpy(gp(0x10000), hdr, 4);
	memcpy(gp(0x10100), hdr + 4, 40);
	memcpy(gp(0x10200), "hello-from-guest", 16);
	set_desc(d.desc, 0, 0x10000, 4, VRING_DESC_F_NEXT, 5);
	set_desc(d.desc, 5, 0x10100, 40, VRING_DESC_F_NEXT, 2);
	set_desc(d.desc, 2, 0x10200, 16, 0, 0);
	post(0);
	ck_assert_int_eq(virtq_pop(&d.vq, &d.mem, &elem), 1);
	ck_assert_uint_eq(elem.out_num, 3);
	ck_assert_uint_eq(elem.out_len, 60);
	ck_assert_uint_eq(iov_to_buf(elem.out, elem.out_num, 0, got, sizeof(got)), 44);
	ck_assert_int_eq(memcmp(got, hdr, 44), 0);
	memset(payload, 0, sizeof(payload));
	ck_assert_uint_eq(iov_to_buf(elem.out, elem.out_num, 44, payload, 16), 16);
	ck_assert_str_eq(payload, "hello-from-guest");
	virtq_push(&d.vq, elem.head, 0);
	drv_teardown();
}
END_TEST

START_TEST(indirect_table_like_linux_tx)
{
	struct vring_desc *table;

	drv_setup(16, 0);
	table = gp(0x20000);
	set_desc(table, 0, 0x21000, 44, VRING_DESC_F_NEXT, 1);
	set_desc(table, 1, 0x22000, 16, 0, 0);
	set_desc(d.desc, 7, 0x20000, 32, VRING_DESC_F_INDIRECT, 0);
	post(7);
	ck_assert_int_eq(virtq_pop(&d.vq, &d.mem, &elem), 1);
	ck_assert_uint_eq(elem.head, 7);
	ck_assert_uint_eq(elem.out_num, 2);
	ck_assert_uint_eq(elem.out_len, 60);
	ck_assert_ptr_eq(elem.out[1].iov_base, gpa_to_hva(&d.mem, 0x22000, 1));
	drv_teardown();
}
END_TEST

START_TEST(buffer_and_indirect_table_straddle_regions)
{
	struct vring_desc *table;

	drv_setup(16, 0);
	table = gp(0x7fff0);
	set_desc(table, 0, 0x7ff00, 0x200, VRING_DESC_F_WRITE, 0);
	set_desc(d.desc, 0, 0x7fff0, 16, VRING_DESC_F_INDIRECT, 0);
	post(0);
	ck_assert_int_eq(virtq_pop(&d.vq, &d.mem, &elem), 1);
	ck_assert_uint_eq(elem.in_num, 2);
	ck_assert_uint_eq(elem.in[0].iov_len, 0x100);
	ck_assert_uint_eq(elem.in[1].iov_len, 0x100);
	ck_assert_uint_eq(elem.in_len, 0x200);
	drv_teardown();
}
END_TEST

START_TEST(indices_wrap_at_65535)
{
	drv_setup(16, 65534);
	for (unsigned i = 0; i < 3; i++) {
		set_desc(d.desc, i, 0x10000 + 0x1000 * i, 64, VRING_DESC_F_WRITE, 0);
		post((uint16_t)i);
	}
	ck_assert_uint_eq(d.avail_idx, 1);
	for (unsigned i = 0; i < 3; i++) {
		ck_assert_int_eq(virtq_pop(&d.vq, &d.mem, &elem), 1);
		ck_assert_uint_eq(elem.head, i);
		virtq_push(&d.vq, elem.head, i);
	}
	ck_assert_int_eq(virtq_pop(&d.vq, &d.mem, &elem), 0);
	ck_assert_uint_eq(d.vq.last_avail_idx, 1);
	ck_assert_uint_eq(le16toh(d.used->idx), 1);
	ck_assert_uint_eq(le32toh(d.used->ring[14].id), 0);
	ck_assert_uint_eq(le32toh(d.used->ring[15].id), 1);
	ck_assert_uint_eq(le32toh(d.used->ring[0].id), 2);
	ck_assert_uint_eq(le32toh(d.used->ring[0].len), 2);
	drv_teardown();
}
END_TEST

static void
push_one(uint16_t head)
{
	set_desc(d.desc, head, 0x10000, 64, VRING_DESC_F_WRITE, 0);
	post(head);
	ck_assert_int_eq(virtq_pop(&d.vq, &d.mem, &elem), 1);
	virtq_push(&d.vq, elem.head, 44);
}

START_TEST(event_idx_signals_only_past_used_event)
{
	uint16_t *used_event, *avail_event;

	drv_setup(16, 0);
	d.vq.event_idx = true;
	used_event = &d.avail->ring[16];
	avail_event = (uint16_t *)(void *)&d.used->ring[16];
	/* First notification after (re)start always goes out. */
	push_one(0);
	ck_assert_uint_eq(le16toh(*avail_event), 1);
	ck_assert_int_eq(virtq_notify(&d.vq), 1);
	ck_assert(called());
	/* Nothing new: no signal. */
	ck_assert_int_eq(virtq_notify(&d.vq), 0);
	/* Driver asks for a signal once entry 1 is used. */
	*used_event = htole16(1);
	push_one(1);
	ck_assert_int_eq(virtq_notify(&d.vq), 1);
	ck_assert(called());
	/* Driver asks to hear only at entry 10. */
	*used_event = htole16(10);
	push_one(2);
	ck_assert_int_eq(virtq_notify(&d.vq), 0);
	ck_assert(!called());
	/* A batch that crosses 10 signals once. */
	for (uint16_t h = 3; h < 12; h++)
		push_one(h);
	ck_assert_int_eq(virtq_notify(&d.vq), 1);
	ck_assert(called());
	drv_teardown();
}
END_TEST

/* A pass's chains become visible to the driver together: fill writes the
 * elements, only publish moves used->idx, and one interrupt covers them. */
START_TEST(filled_entries_appear_at_publish_with_one_interrupt)
{
	uint16_t *used_event;

	drv_setup(16, 0);
	d.vq.event_idx = true;
	used_event = &d.avail->ring[16];
	*used_event = htole16(0);
	for (uint16_t h = 0; h < 5; h++) {
		set_desc(d.desc, h, 0x20000 + h * 0x100u, 0x100, VRING_DESC_F_WRITE, 0);
		post(h);
	}
	for (int i = 0; i < 5; i++) {
		ck_assert_int_eq(virtq_pop(&d.vq, &d.mem, &elem), 1);
		virtq_fill(&d.vq, elem.head, 44 + (uint32_t)i);
		ck_assert_uint_eq(le16toh(d.used->idx), 0);	/* not yet visible */
	}
	virtq_publish(&d.vq);
	ck_assert_uint_eq(le16toh(d.used->idx), 5);
	for (uint16_t i = 0; i < 5; i++) {
		ck_assert_uint_eq(le32toh(d.used->ring[i].id), i);
		ck_assert_uint_eq(le32toh(d.used->ring[i].len), 44u + i);
	}
	ck_assert_int_eq(virtq_notify(&d.vq), 1);
	ck_assert(called());
	ck_assert(!called());
	drv_teardown();
}
END_TEST

START_TEST(no_interrupt_flag_is_honoured)
{
	drv_setup(16, 0);
	d.avail->flags = htole16(VRING_AVAIL_F_NO_INTERRUPT);
	push_one(0);
	ck_assert_int_eq(virtq_notify(&d.vq), 0);
	ck_assert(!called());
	d.avail->flags = 0;
	push_one(1);
	ck_assert_int_eq(virtq_notify(&d.vq), 1);
	ck_assert(called());
	drv_teardown();
}
END_TEST

/* With EVENT_IDX the driver is owed an interrupt for entry 0; a notify
 * that could not deliver it (no call fd yet) must not count as sent. */
START_TEST(notify_without_call_fd_is_not_counted_as_sent)
{
	drv_setup(16, 0);
	d.vq.event_idx = true;
	d.avail->ring[16] = htole16(0);		/* used_event: tell me at entry 0 */
	virtq_set_call_fd(&d.vq, -1);
	push_one(0);
	ck_assert_int_eq(virtq_notify(&d.vq), 0);
	virtq_set_call_fd(&d.vq, dup(d.call));
	ck_assert_int_eq(virtq_notify(&d.vq), 1);
	ck_assert(called());
	drv_teardown();
}
END_TEST

/* A call fd whose write fails (here: opened read-only) loses nothing: once
 * a working fd is set, the next notify still signals although used_event
 * was passed meanwhile. */
START_TEST(failed_call_write_is_not_counted_as_sent)
{
	int rdonly = open("/dev/null", O_RDONLY | O_CLOEXEC);

	ck_assert_int_ge(rdonly, 0);
	drv_setup(16, 0);
	d.vq.event_idx = true;
	d.avail->ring[16] = htole16(0);
	virtq_set_call_fd(&d.vq, rdonly);
	push_one(0);
	ck_assert_int_eq(virtq_notify(&d.vq), 0);
	virtq_set_call_fd(&d.vq, dup(d.call));
	push_one(1);
	ck_assert_int_eq(virtq_notify(&d.vq), 1);
	ck_assert(called());
	/* Delivered now: nothing new, no second signal. */
	ck_assert_int_eq(virtq_notify(&d.vq), 0);
	ck_assert(!called());
	drv_teardown();
}
END_TEST

/* The same holds without EVENT_IDX once the driver clears NO_INTERRUPT. */
START_TEST(notify_without_event_idx_is_retried_after_no_call_fd)
{
	drv_setup(16, 0);
	virtq_set_call_fd(&d.vq, -1);
	push_one(0);
	ck_assert_int_eq(virtq_notify(&d.vq), 0);
	virtq_set_call_fd(&d.vq, dup(d.call));
	ck_assert_int_eq(virtq_notify(&d.vq), 1);
	ck_assert(called());
	drv_teardown();
}
END_TEST

START_TEST(enable_notify_rechecks_for_new_buffers)
{
	drv_setup(16, 0);
	virtq_disable_notify(&d.vq);
	ck_assert_uint_eq(le16toh(d.used->flags) & VRING_USED_F_NO_NOTIFY, 1);
	ck_assert(!virtq_enable_notify(&d.vq));
	ck_assert_uint_eq(le16toh(d.used->flags) & VRING_USED_F_NO_NOTIFY, 0);
	set_desc(d.desc, 0, 0x10000, 64, VRING_DESC_F_WRITE, 0);
	post(0);
	ck_assert(!virtq_avail_empty(&d.vq));
	ck_assert(virtq_enable_notify(&d.vq));
	ck_assert_int_eq(virtq_pop(&d.vq, &d.mem, &elem), 1);
	ck_assert(virtq_avail_empty(&d.vq));
	/* With EVENT_IDX, avail_event asks for the next index. */
	d.vq.event_idx = true;
	ck_assert(!virtq_enable_notify(&d.vq));
	{
		uint16_t avail_event_le;	/* after the 16 used entries */
		memcpy(&avail_event_le, &d.used->ring[16], sizeof(avail_event_le));
		ck_assert_uint_eq(le16toh(avail_event_le), 1);
	}
	drv_teardown();
}
END_TEST

/* Posts head, expects it dropped (pushed with len 0) with a reason. */
static void
expect_dropped(uint16_t head, const char *why_part)
{
	uint64_t dropped = d.vq.dropped;
	uint16_t used = le16toh(d.used->idx);

	post(head);
	ck_assert_int_eq(virtq_pop(&d.vq, &d.mem, &elem), 0);
	ck_assert(!d.vq.broken);
	ck_assert_uint_eq(d.vq.dropped, dropped + 1);
	ck_assert_ptr_nonnull(d.vq.last_error);
	ck_assert_msg(strstr(d.vq.last_error, why_part) != NULL, "%s", d.vq.last_error);
	ck_assert_uint_eq(le16toh(d.used->idx), (uint16_t)(used + 1));
	ck_assert_uint_eq(le32toh(d.used->ring[used % d.num].id), head);
	ck_assert_uint_eq(le32toh(d.used->ring[used % d.num].len), 0);
}

START_TEST(malformed_chains_are_dropped)
{
	struct vring_desc *table;

	drv_setup(128, 0);
	table = gp(0x20000);
	/* Loop 0 -> 1 -> 0 (empty buffers, so only the loop guard stops it). */
	set_desc(d.desc, 0, 0x10000, 0, VRING_DESC_F_NEXT, 1);
	set_desc(d.desc, 1, 0x10000, 0, VRING_DESC_F_NEXT, 0);
	expect_dropped(0, "loop");
	/* next past num. */
	set_desc(d.desc, 2, 0x10000, 8, VRING_DESC_F_NEXT, 200);
	expect_dropped(2, "next index");
	/* Readable after writable. */
	set_desc(d.desc, 3, 0x10000, 8, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 4);
	set_desc(d.desc, 4, 0x10000, 8, 0, 0);
	expect_dropped(3, "readable descriptor after");
	/* Nested indirect. */
	set_desc(table, 0, 0x21000, 16, VRING_DESC_F_INDIRECT, 0);
	set_desc(d.desc, 5, 0x20000, 16, VRING_DESC_F_INDIRECT, 0);
	expect_dropped(5, "nested indirect");
	/* Indirect with NEXT, with a bad length, and in the middle of a chain. */
	set_desc(d.desc, 6, 0x20000, 16, VRING_DESC_F_INDIRECT | VRING_DESC_F_NEXT, 7);
	expect_dropped(6, "NEXT");
	set_desc(d.desc, 7, 0x20000, 17, VRING_DESC_F_INDIRECT, 0);
	expect_dropped(7, "multiple of 16");
	set_desc(d.desc, 8, 0x10000, 8, VRING_DESC_F_NEXT, 9);
	set_desc(d.desc, 9, 0x20000, 16, VRING_DESC_F_INDIRECT, 0);
	expect_dropped(8, "indirect descriptor inside");
	/* Loop inside an indirect table. */
	set_desc(table, 0, 0x21000, 16, VRING_DESC_F_NEXT, 1);
	set_desc(table, 1, 0x21000, 16, VRING_DESC_F_NEXT, 0);
	set_desc(d.desc, 10, 0x20000, 32, VRING_DESC_F_INDIRECT, 0);
	expect_dropped(10, "loop");
	/* Indirect table outside guest memory. */
	set_desc(d.desc, 11, 0x400000, 32, VRING_DESC_F_INDIRECT, 0);
	expect_dropped(11, "indirect table not in guest memory");
	/* Buffer outside guest memory, and one that wraps. */
	set_desc(d.desc, 12, 0x200000, 16, 0, 0);
	expect_dropped(12, "not in guest memory");
	set_desc(d.desc, 13, UINT64_MAX - 4, 16, 0, 0);
	expect_dropped(13, "not in guest memory");
	/* Huge lengths. */
	set_desc(d.desc, 14, 0, 0xffffffff, 0, 0);
	expect_dropped(14, "longer than");
	set_desc(d.desc, 15, 0, 0x80000, VRING_DESC_F_NEXT, 16);
	set_desc(d.desc, 16, 0x80000, 0x80001, 0, 0);
	expect_dropped(15, "longer than");
	/* More segments than VIRTQ_MAX_IOV. */
	for (unsigned i = 0; i < VIRTQ_MAX_IOV + 1; i++)
		set_desc(d.desc, 20 + i, 0x30000 + i, 1, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT,
		    (uint16_t)(21 + i));
	d.desc[20 + VIRTQ_MAX_IOV].flags = htole16(VRING_DESC_F_WRITE);
	expect_dropped(20, "segments");

	/* A good chain after bad ones in the same pass is still delivered. */
	set_desc(d.desc, 100, 0x10000, 8, 0, 0);
	post(0);
	post(100);
	ck_assert_int_eq(virtq_pop(&d.vq, &d.mem, &elem), 1);
	ck_assert_uint_eq(elem.head, 100);
	drv_teardown();
}
END_TEST

START_TEST(zero_length_descriptor_is_accepted_empty)
{
	drv_setup(16, 0);
	set_desc(d.desc, 0, 0xdead00000000, 0, VRING_DESC_F_NEXT, 1);
	set_desc(d.desc, 1, 0x10000, 44, VRING_DESC_F_WRITE, 0);
	post(0);
	ck_assert_int_eq(virtq_pop(&d.vq, &d.mem, &elem), 1);
	ck_assert_uint_eq(elem.out_num, 0);
	ck_assert_uint_eq(elem.in_num, 1);
	drv_teardown();
}
END_TEST

START_TEST(bad_head_breaks_the_ring_until_reconfigured)
{
	drv_setup(16, 0);
	post(16);
	ck_assert_int_eq(virtq_pop(&d.vq, &d.mem, &elem), -EIO);
	ck_assert(d.vq.broken);
	ck_assert_ptr_nonnull(d.vq.broken_reason);
	ck_assert_uint_eq(le16toh(d.used->idx), 0);
	ck_assert_int_eq(virtq_pop(&d.vq, &d.mem, &elem), -EIO);
	/* The frontend restarts the ring at the next entry. */
	set_desc(d.desc, 2, 0x10000, 8, 0, 0);
	post(2);
	virtq_set_base(&d.vq, 1);
	ck_assert_int_eq(virtq_pop(&d.vq, &d.mem, &elem), 1);
	ck_assert_uint_eq(elem.head, 2);
	drv_teardown();
}
END_TEST

/* Each breakage is handed out once for the device to log, whichever ring. */
START_TEST(breakage_is_reported_once_per_break)
{
	drv_setup(16, 0);
	ck_assert_ptr_null(virtq_new_breakage(&d.vq));
	post(16);
	ck_assert_int_eq(virtq_pop(&d.vq, &d.mem, &elem), -EIO);
	ck_assert_str_eq(virtq_new_breakage(&d.vq), "avail ring names a descriptor past num");
	ck_assert_ptr_null(virtq_new_breakage(&d.vq));
	ck_assert_int_eq(virtq_pop(&d.vq, &d.mem, &elem), -EIO);
	ck_assert_ptr_null(virtq_new_breakage(&d.vq));
	/* Reconfigured, then broken again: reported again. */
	virtq_set_base(&d.vq, 0);
	ck_assert_ptr_null(virtq_new_breakage(&d.vq));
	ck_assert_int_eq(virtq_pop(&d.vq, &d.mem, &elem), -EIO);
	ck_assert_ptr_nonnull(virtq_new_breakage(&d.vq));
	drv_teardown();
}
END_TEST

START_TEST(avail_index_too_far_ahead_breaks_the_ring)
{
	drv_setup(16, 0);
	d.avail->idx = htole16(17);
	ck_assert_int_eq(virtq_pop(&d.vq, &d.mem, &elem), -EIO);
	ck_assert(d.vq.broken);
	drv_teardown();
}
END_TEST

START_TEST(untranslatable_or_misaligned_rings_fail)
{
	drv_setup(16, 0);
	virtq_set_addr(&d.vq, 0x1000, (uintptr_t)gp(USED_GPA), (uintptr_t)gp(AVAIL_GPA));
	ck_assert_int_eq(virtq_map(&d.vq, &d.mem, true), -EFAULT);
	ck_assert_int_eq(virtq_pop(&d.vq, &d.mem, &elem), -EIO);
	ck_assert(d.vq.broken);
	/* The used ring runs past the end of guest memory. */
	virtq_set_addr(&d.vq, (uintptr_t)gp(DESC_GPA), (uintptr_t)gp(MEM_SIZE - 64),
	    (uintptr_t)gp(AVAIL_GPA));
	ck_assert_int_eq(virtq_map(&d.vq, &d.mem, true), -EFAULT);
	virtq_set_addr(&d.vq, (uintptr_t)gp(DESC_GPA + 8), (uintptr_t)gp(USED_GPA),
	    (uintptr_t)gp(AVAIL_GPA));
	ck_assert_int_eq(virtq_map(&d.vq, &d.mem, true), -EINVAL);
	ck_assert_int_eq(virtq_set_num(&d.vq, 24), -EINVAL);
	ck_assert_int_eq(virtq_set_num(&d.vq, 65536), -EINVAL);
	ck_assert_int_eq(virtq_set_num(&d.vq, 0), -EINVAL);
	/* Nothing mapped: push and notify are harmless. */
	virtq_push(&d.vq, 0, 0);
	ck_assert_int_eq(virtq_notify(&d.vq), 0);
	drv_teardown();
}
END_TEST

START_TEST(memory_table_change_is_followed)
{
	struct guest_mem_desc one = { .gpa = 0, .size = MEM_SIZE, .mmap_offset = 0 };

	drv_setup(16, 0);
	one.uva = (uintptr_t)d.qemu;
	ck_assert_int_eq(guest_mem_set_table(&d.mem, &one, &d.memfd, 1), 0);
	set_desc(d.desc, 0, 0x10000, 8, 0, 0);
	post(0);
	ck_assert_int_eq(virtq_pop(&d.vq, &d.mem, &elem), 1);
	ck_assert_uint_eq(d.vq.mem_generation, d.mem.generation);
	drv_teardown();
}
END_TEST

static Suite *
virtq_suite(void)
{
	Suite *s = suite_create("virtq");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, direct_writable_buffer);
	tcase_add_test(tc, header_split_4_plus_40_then_payload);
	tcase_add_test(tc, indirect_table_like_linux_tx);
	tcase_add_test(tc, buffer_and_indirect_table_straddle_regions);
	tcase_add_test(tc, indices_wrap_at_65535);
	tcase_add_test(tc, event_idx_signals_only_past_used_event);
	tcase_add_test(tc, no_interrupt_flag_is_honoured);
	tcase_add_test(tc, filled_entries_appear_at_publish_with_one_interrupt);
	tcase_add_test(tc, notify_without_call_fd_is_not_counted_as_sent);
	tcase_add_test(tc, failed_call_write_is_not_counted_as_sent);
	tcase_add_test(tc, notify_without_event_idx_is_retried_after_no_call_fd);
	tcase_add_test(tc, enable_notify_rechecks_for_new_buffers);
	tcase_add_test(tc, malformed_chains_are_dropped);
	tcase_add_test(tc, zero_length_descriptor_is_accepted_empty);
	tcase_add_test(tc, bad_head_breaks_the_ring_until_reconfigured);
	tcase_add_test(tc, breakage_is_reported_once_per_break);
	tcase_add_test(tc, avail_index_too_far_ahead_breaks_the_ring);
	tcase_add_test(tc, untranslatable_or_misaligned_rings_fail);
	tcase_add_test(tc, memory_table_change_is_followed);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return test_run_suite(virtq_suite());
}
