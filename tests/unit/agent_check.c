/*
 * Unit tests for ember-agent's core (packaging/agent/agent.c, agent-ops.c,
 * agent-exec.c, agent-files.c, agent-net.c, agent-workload.c): the request parser, every op, the error
 * replies, base64 and the ember.echo command-line parser. exec and the file
 * ops run for real, in a temporary directory. Built by packaging/agent/CMakeLists.txt (it links
 * ember-agent-core), run as unit_agent.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netpacket/packet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "fsutil.h"
#include "test-util.h"

/* Handles line and returns the parsed reply, checking that it is one line. */
static json_t *
ask(const char *line)
{
	json_error_t	 jerr;
	json_t		*reply;
	size_t		 len;
	char		*out;

	out = agent_handle_line(line, strlen(line), &len);
	ck_assert_msg(out != NULL, "no reply to %s", line);
	ck_assert_uint_eq(len, strlen(out));
	ck_assert_msg(len > 0 && out[len - 1] == '\n', "reply not a line: %s", out);
	ck_assert_msg(memchr(out, '\n', len) == out + len - 1,
	    "reply has several lines: %s", out);
	reply = json_loadb(out, len, 0, &jerr);
	ck_assert_msg(reply != NULL, "reply is not JSON (%s): %s", jerr.text, out);
	ck_assert_msg(json_is_object(reply), "reply not an object: %s", out);
	free(out);
	return reply;
}

/* Asserts reply is an error whose message contains what; frees it. */
static void
assert_error(json_t *reply, const char *what)
{
	const char	*msg;

	ck_assert(json_is_false(json_object_get(reply, "ok")));
	msg = json_string_value(json_object_get(reply, "error"));
	ck_assert_msg(msg != NULL, "error reply without error text");
	ck_assert_msg(strstr(msg, what) != NULL, "error '%s' lacks '%s'", msg,
	    what);
	json_decref(reply);
}

START_TEST(ping_answers_pong_and_version)
{
	json_t	*r = ask("{\"op\":\"ping\"}");
	char	*s = json_dumps(r, JSON_COMPACT);

	ck_assert_str_eq(s, "{\"ok\":true,\"pong\":true,\"version\":\""
	    EMBER_VERSION "\"}");
	free(s);
	json_decref(r);
}
END_TEST

START_TEST(id_is_echoed_whatever_its_type)
{
	static const char	*ids[] = { "7", "\"abc\"", "null", "[1,{\"a\":2}]",
				    "1.5" };
	char			 line[128];
	json_t			*r, *want;
	size_t			 i;

	for (i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		snprintf(line, sizeof(line), "{\"id\":%s,\"op\":\"ping\"}",
		    ids[i]);
		r = ask(line);
		want = json_loads(ids[i], JSON_DECODE_ANY, NULL);
		ck_assert_msg(json_equal(json_object_get(r, "id"), want),
		    "id %s not echoed", ids[i]);
		ck_assert(json_is_true(json_object_get(r, "ok")));
		json_decref(want);
		json_decref(r);
	}
}
END_TEST

START_TEST(id_is_echoed_on_errors)
{
	json_t	*r = ask("{\"op\":\"nope\",\"id\":42}");

	ck_assert_int_eq(json_integer_value(json_object_get(r, "id")), 42);
	assert_error(r, "unknown op");
}
END_TEST

START_TEST(info_reports_kernel_uptime_cid_hostname)
{
	struct utsname	 u;
	json_t		*r = ask("{\"op\":\"info\",\"id\":1}");
	json_t		*cid = json_object_get(r, "cid");

	ck_assert_int_eq(uname(&u), 0);
	ck_assert(json_is_true(json_object_get(r, "ok")));
	ck_assert_str_eq(json_string_value(json_object_get(r, "kernel")),
	    u.release);
	ck_assert(json_is_real(json_object_get(r, "uptime_s")));
	ck_assert(json_real_value(json_object_get(r, "uptime_s")) > 0);
	/* No /dev/vsock (or no permission) on a build host gives null. */
	ck_assert(json_is_integer(cid) || json_is_null(cid));
	if (agent_local_cid() >= 0)
		ck_assert_int_eq(json_integer_value(cid), agent_local_cid());
	ck_assert(json_is_string(json_object_get(r, "hostname")));
	json_decref(r);
}
END_TEST

/* The host's own interfaces: lo, when it is up, shows 127.0.0.1/8. */
START_TEST(info_lists_interfaces_and_their_addresses)
{
	json_t	*r = ask("{\"op\":\"info\"}");
	json_t	*ifaces = json_object_get(r, "interfaces"), *i, *a;
	size_t	 k, m;
	int	 saw_lo_v4 = 0, lo_up = 0;

	ck_assert(json_is_array(ifaces));
	ck_assert_uint_le(json_array_size(ifaces), AGENT_NET_IFACES_MAX);
	json_array_foreach(ifaces, k, i) {
		ck_assert(json_is_string(json_object_get(i, "name")));
		ck_assert(json_is_boolean(json_object_get(i, "up")));
		ck_assert(json_is_array(json_object_get(i, "addresses")));
		if (strcmp(json_string_value(json_object_get(i, "name")),
		    "lo") == 0)
			lo_up = json_is_true(json_object_get(i, "up"));
		json_array_foreach(json_object_get(i, "addresses"), m, a) {
			if (strcmp(json_string_value(json_object_get(i,
			    "name")), "lo") == 0 &&
			    strcmp(json_string_value(json_object_get(a,
			    "address")), "127.0.0.1") == 0) {
				ck_assert_str_eq(json_string_value(
				    json_object_get(a, "family")), "inet");
				ck_assert_int_eq(json_integer_value(
				    json_object_get(a, "prefix")), 8);
				saw_lo_v4 = 1;
			}
		}
	}
	/* The kernel gives lo 127.0.0.1/8 when it is brought up. */
	if (lo_up)
		ck_assert_msg(saw_lo_v4, "lo is up without 127.0.0.1/8");
	json_decref(r);
}
END_TEST

/* A made-up getifaddrs list: one interface with a MAC, an IPv4 /30 and an
 * IPv6 /64, then more interfaces and addresses than the bounds allow. */
START_TEST(interfaces_are_reported_with_prefixes_and_bounded)
{
	enum { EXTRA = AGENT_NET_IFACES_MAX + 4, ADDRS = AGENT_NET_ADDRS_MAX + 3 };
	static struct ifaddrs	 nodes[3 + ADDRS + EXTRA];
	static struct sockaddr_ll ll;
	static struct sockaddr_in v4, v4mask, many[ADDRS];
	static struct sockaddr_in6 v6, v6mask;
	static char		 names[EXTRA][IF_NAMESIZE];
	json_t			*ifaces, *eth0, *addrs, *a;
	size_t			 n = 0, i;
	bool			 truncated;

	memset(nodes, 0, sizeof(nodes));
	ll.sll_family = AF_PACKET;
	ll.sll_halen = 6;
	memcpy(ll.sll_addr, "\x52\x54\x00\xab\xcd\xef", 6);
	v4.sin_family = v4mask.sin_family = AF_INET;
	inet_pton(AF_INET, "10.100.0.2", &v4.sin_addr);
	inet_pton(AF_INET, "255.255.255.252", &v4mask.sin_addr);
	v6.sin6_family = v6mask.sin6_family = AF_INET6;
	inet_pton(AF_INET6, "fe80::5054:ff:feab:cdef", &v6.sin6_addr);
	inet_pton(AF_INET6, "ffff:ffff:ffff:ffff::", &v6mask.sin6_addr);
	nodes[n].ifa_name = "eth0";
	nodes[n].ifa_flags = IFF_UP;
	nodes[n++].ifa_addr = (struct sockaddr *)&ll;
	nodes[n].ifa_name = "eth0";
	nodes[n].ifa_addr = (struct sockaddr *)&v4;
	nodes[n++].ifa_netmask = (struct sockaddr *)&v4mask;
	nodes[n].ifa_name = "eth0";
	nodes[n].ifa_addr = (struct sockaddr *)&v6;
	nodes[n++].ifa_netmask = (struct sockaddr *)&v6mask;
	for (i = 0; i < ADDRS; i++) {
		many[i].sin_family = AF_INET;
		many[i].sin_addr.s_addr = htonl(0xc0000200 + (uint32_t)i);
		nodes[n].ifa_name = "eth0";
		nodes[n++].ifa_addr = (struct sockaddr *)&many[i];
	}
	for (i = 0; i < EXTRA; i++) {
		snprintf(names[i], sizeof(names[i]), "dummy%zu", i);
		nodes[n].ifa_name = names[i];
		n++;
	}
	for (i = 0; i + 1 < n; i++)
		nodes[i].ifa_next = &nodes[i + 1];

	ifaces = agent_net_from_ifaddrs(nodes, &truncated);
	ck_assert_ptr_nonnull(ifaces);
	ck_assert(truncated);
	ck_assert_uint_eq(json_array_size(ifaces), AGENT_NET_IFACES_MAX);
	eth0 = json_array_get(ifaces, 0);
	ck_assert_str_eq(json_string_value(json_object_get(eth0, "name")), "eth0");
	ck_assert(json_is_true(json_object_get(eth0, "up")));
	ck_assert_str_eq(json_string_value(json_object_get(eth0, "mac")),
	    "52:54:00:ab:cd:ef");
	addrs = json_object_get(eth0, "addresses");
	ck_assert_uint_eq(json_array_size(addrs), AGENT_NET_ADDRS_MAX);
	a = json_array_get(addrs, 0);
	ck_assert_str_eq(json_string_value(json_object_get(a, "family")), "inet");
	ck_assert_str_eq(json_string_value(json_object_get(a, "address")),
	    "10.100.0.2");
	ck_assert_int_eq(json_integer_value(json_object_get(a, "prefix")), 30);
	a = json_array_get(addrs, 1);
	ck_assert_str_eq(json_string_value(json_object_get(a, "family")), "inet6");
	ck_assert_str_eq(json_string_value(json_object_get(a, "address")),
	    "fe80::5054:ff:feab:cdef");
	ck_assert_int_eq(json_integer_value(json_object_get(a, "prefix")), 64);
	/* No netmask: the prefix is unknown, not 0. */
	ck_assert(json_is_null(json_object_get(json_array_get(addrs, 2),
	    "prefix")));
	a = json_array_get(ifaces, 1);
	ck_assert_str_eq(json_string_value(json_object_get(a, "name")), "dummy0");
	ck_assert(json_is_false(json_object_get(a, "up")));
	ck_assert(json_is_null(json_object_get(a, "mac")));
	json_decref(ifaces);
}
END_TEST

START_TEST(unknown_op_names_the_known_ones)
{
	json_t	*r = ask("{\"op\":\"reboot-the-moon\"}");

	ck_assert(json_object_get(r, "id") == NULL);
	ck_assert_str_eq(json_string_value(json_object_get(r, "error")),
	    "unknown op \"reboot-the-moon\" (known: ping, info, poweroff, "
	    "exec, read_file, write_file, workload_status)");
	json_decref(r);
}
END_TEST

START_TEST(malformed_requests_get_errors)
{
	assert_error(ask("{\"op\":"), "malformed JSON");
	assert_error(ask("not json at all"), "malformed JSON");
	assert_error(ask("{\"op\":\"ping\"} {\"op\":\"ping\"}"), "malformed JSON");
	assert_error(ask("[\"op\",\"ping\"]"), "not a JSON object");
	assert_error(ask("\"ping\""), "malformed JSON");
	assert_error(ask("{}"), "no \"op\"");
	assert_error(ask("{\"op\":7}"), "not a string");
	assert_error(ask("{\"op\":null}"), "not a string");
	assert_error(ask("{\"op\":\"ping\",\"op\":\"info\"}"), "malformed JSON");
	assert_error(ask("{\"op\":\"pi\\u0000ng\"}"), "malformed JSON");
}
END_TEST

START_TEST(parameters_are_checked_strictly)
{
	json_t	*r = ask("{\"op\":\"ping\",\"id\":3,\"extra\":true}");

	ck_assert_int_eq(json_integer_value(json_object_get(r, "id")), 3);
	assert_error(r, "invalid parameters for ping");
	assert_error(ask("{\"op\":\"info\",\"verbose\":1}"),
	    "invalid parameters for info");
}
END_TEST

START_TEST(error_text_is_ascii_even_for_binary_input)
{
	static const char	 bad[] = "\xff\xfe{\"op\":\"\xc3\x28\"}\x01";
	json_t			*r = ask(bad);
	const char		*msg = json_string_value(json_object_get(r, "error"));
	const char		*p;

	for (p = msg; *p != '\0'; p++)
		ck_assert_msg(*p >= 0x20 && *p < 0x7f, "non-ASCII in '%s'", msg);
	assert_error(r, "malformed JSON");

	/* A valid UTF-8 op name comes back as '?'s, cut at 64 bytes. */
	r = ask("{\"op\":\"\xc3\xa9t\xc3\xa9\"}");
	assert_error(r, "unknown op \"??t??\"");
}
END_TEST

START_TEST(blank_lines_get_no_reply_and_cr_is_ignored)
{
	size_t	 len = 99;
	char	*out;

	ck_assert_ptr_null(agent_handle_line("", 0, &len));
	ck_assert_uint_eq(len, 0);
	ck_assert_ptr_null(agent_handle_line(" \t\r", 3, &len));
	ck_assert_uint_eq(len, 0);
	out = agent_handle_line("{\"op\":\"ping\"}\r\n", 15, &len);
	ck_assert_ptr_nonnull(out);
	ck_assert_msg(strstr(out, "\"ok\":true") != NULL, "%s", out);
	free(out);
}
END_TEST

START_TEST(line_is_not_read_past_its_length)
{
	static const char	 buf[] = "{\"op\":\"ping\"}garbage";
	size_t			 len;
	char			*out;

	out = agent_handle_line(buf, 13, &len);
	ck_assert_msg(strstr(out, "\"pong\":true") != NULL, "%s", out);
	free(out);
}
END_TEST

START_TEST(oversize_reply_is_an_error_line)
{
	size_t	 len;
	char	*out = agent_oversize_reply(&len);

	ck_assert_ptr_nonnull(out);
	ck_assert_uint_eq(len, strlen(out));
	ck_assert_msg(strncmp(out, "{\"ok\":false,\"error\":\"request line too long",
	    41) == 0, "%s", out);
	ck_assert(out[len - 1] == '\n');
	free(out);
}
END_TEST

START_TEST(deep_nesting_is_refused_not_crashed)
{
	size_t	 n = 100000, i;
	char	*line = malloc(n * 2 + 1);

	for (i = 0; i < n; i++) {
		line[i] = '[';
		line[n + i] = ']';
	}
	line[2 * n] = '\0';
	assert_error(ask(line), "malformed JSON");
	free(line);
}
END_TEST

START_TEST(op_table_lookup)
{
	ck_assert_ptr_nonnull(agent_op_find("ping"));
	ck_assert_ptr_nonnull(agent_op_find("info"));
	ck_assert_ptr_nonnull(agent_op_find("exec"));
	ck_assert_int_eq(agent_op_find("exec")->flags, AGENT_OP_WORKER);
	ck_assert_int_eq(agent_op_find("read_file")->flags, 0);
	ck_assert_ptr_null(agent_op_find(""));
	ck_assert_ptr_null(agent_op_find("PING"));
}
END_TEST


/* --- base64 ----------------------------------------------------------- */

START_TEST(base64_known_vectors)
{
	static const char	*plain[] = { "", "f", "fo", "foo", "foob",
				    "fooba", "foobar" };
	static const char	*enc[] = { "", "Zg==", "Zm8=", "Zm9v",
				    "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy" };
	unsigned char		*dec;
	size_t			 i, len;
	char			*s;

	for (i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
		s = base64_encode(plain[i], strlen(plain[i]), &len);
		ck_assert_str_eq(s, enc[i]);
		ck_assert_uint_eq(len, strlen(enc[i]));
		free(s);
		ck_assert_int_eq(base64_decode(enc[i], strlen(enc[i]),
		    &dec, &len), 0);
		ck_assert_ptr_nonnull(dec);
		ck_assert_uint_eq(len, strlen(plain[i]));
		ck_assert(memcmp(dec, plain[i], len) == 0);
		free(dec);
	}
}
END_TEST

START_TEST(base64_round_trips_every_byte_value_and_length)
{
	unsigned char	 buf[600], *dec;
	size_t		 n, len, elen;
	char		*s;

	for (n = 0; n < sizeof(buf); n++)
		buf[n] = (unsigned char)(n * 151 + 7);
	for (n = 0; n <= sizeof(buf); n++) {
		s = base64_encode(buf, n, &elen);
		ck_assert_uint_eq(elen, (n + 2) / 3 * 4);
		ck_assert_int_eq(base64_decode(s, elen, &dec, &len), 0);
		ck_assert_uint_eq(len, n);
		ck_assert(len == 0 || memcmp(dec, buf, n) == 0);
		ck_assert_uint_le(len, base64_decoded_max(elen));
		free(dec);
		free(s);
	}
}
END_TEST

START_TEST(base64_decode_takes_missing_padding_and_refuses_junk)
{
	unsigned char	*dec;
	size_t		 len;

	ck_assert_int_eq(base64_decode("Zm8", 3, &dec, &len), 0);
	ck_assert_uint_eq(len, 2);
	ck_assert(memcmp(dec, "fo", 2) == 0);
	free(dec);
	ck_assert_int_eq(base64_decode("Zg", 2, &dec, &len), 0);
	ck_assert_uint_eq(len, 1);
	free(dec);
	ck_assert_int_eq(base64_decode("Z", 1, &dec, &len), -EINVAL);
	ck_assert_int_eq(base64_decode("Zm9v\n", 5, &dec, &len), -EINVAL);
	ck_assert_int_eq(base64_decode("Zm 9", 4, &dec, &len), -EINVAL);
	ck_assert_int_eq(base64_decode("Zg=", 3, &dec, &len), -EINVAL);
	ck_assert_int_eq(base64_decode("Z===", 4, &dec, &len), -EINVAL);
	ck_assert_int_eq(base64_decode("Zg==Zg==", 8, &dec, &len), -EINVAL);
	ck_assert_int_eq(base64_decode("Zm9-", 4, &dec, &len), -EINVAL);
	ck_assert_ptr_null(dec);
}
END_TEST

/* --- exec --------------------------------------------------------------- */

/* A request built with json_pack, handled; returns the reply. */
static json_t *
askj(json_t *req)
{
	char	*line = json_dumps(req, JSON_COMPACT);
	json_t	*r;

	json_decref(req);
	r = ask(line);
	free(line);
	return r;
}

/* The decoded base64 member key of reply, NUL-terminated (malloc'd). */
static char *
b64_member(json_t *reply, const char *key)
{
	const char	*s = json_string_value(json_object_get(reply, key));
	unsigned char	*dec;
	size_t		 len;
	char		*out;

	ck_assert_msg(s != NULL, "no %s", key);
	ck_assert_int_eq(base64_decode(s, strlen(s), &dec, &len), 0);
	out = malloc(len + 1);
	memcpy(out, dec, len);
	out[len] = '\0';
	free(dec);
	return out;
}

static json_t *
run_sh(const char *script, int timeout_s)
{
	return askj(json_pack("{s:s, s:[s,s,s], s:i}", "op", "exec", "argv",
	    "sh", "-c", script, "timeout_s", timeout_s));
}

START_TEST(exec_reports_exit_code_and_both_streams)
{
	json_t	*r = run_sh("echo out; echo err >&2; exit 7", 10);
	char	*o = b64_member(r, "stdout"), *e = b64_member(r, "stderr");

	ck_assert(json_is_true(json_object_get(r, "ok")));
	ck_assert_int_eq(json_integer_value(json_object_get(r, "exit_code")), 7);
	ck_assert(json_is_null(json_object_get(r, "signal")));
	ck_assert(json_is_false(json_object_get(r, "timed_out")));
	ck_assert(json_is_false(json_object_get(r, "truncated")));
	ck_assert_str_eq(o, "out\n");
	ck_assert_str_eq(e, "err\n");
	free(o);
	free(e);
	json_decref(r);
}
END_TEST

START_TEST(exec_reports_the_signal)
{
	json_t	*r = run_sh("kill -TERM $$", 10);

	ck_assert(json_is_null(json_object_get(r, "exit_code")));
	ck_assert_int_eq(json_integer_value(json_object_get(r, "signal")),
	    SIGTERM);
	ck_assert(json_is_false(json_object_get(r, "timed_out")));
	json_decref(r);
}
END_TEST

/* Whether pid exists (and is not a zombie). */
static int
pid_alive(long pid)
{
	char	path[64], buf[512], *p;
	FILE	*f;
	int	alive = 0;

	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	if ((f = fopen(path, "r")) == NULL)
		return 0;
	if (fgets(buf, sizeof(buf), f) != NULL &&
	    (p = strrchr(buf, ')')) != NULL)
		alive = p[2] != 'Z';
	fclose(f);
	return alive;
}

START_TEST(exec_timeout_kills_the_whole_process_group)
{
	struct timespec	 t0, t1;
	char		 pidfile[] = "/tmp/agent-check-pid.XXXXXX", script[256];
	json_t		*r;
	FILE		*f;
	long		 gc = 0;
	int		 fd;

	fd = mkstemp(pidfile);
	ck_assert_int_ge(fd, 0);
	close(fd);
	/* A grandchild that ignores nothing and would live for 100 s. */
	snprintf(script, sizeof(script),
	    "sleep 100 & echo $! >%s; echo started; wait", pidfile);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	r = run_sh(script, 1);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ck_assert(json_is_true(json_object_get(r, "ok")));
	ck_assert(json_is_true(json_object_get(r, "timed_out")));
	ck_assert(json_is_null(json_object_get(r, "exit_code")));
	ck_assert_int_eq(json_integer_value(json_object_get(r, "signal")),
	    SIGKILL);
	ck_assert_msg(t1.tv_sec - t0.tv_sec < 5, "took %ld s",
	    (long)(t1.tv_sec - t0.tv_sec));
	/* Output written before the kill is kept. */
	{
		char *o = b64_member(r, "stdout");
		ck_assert_str_eq(o, "started\n");
		free(o);
	}
	f = fopen(pidfile, "r");
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fscanf(f, "%ld", &gc), 1);
	fclose(f);
	unlink(pidfile);
	/* SIGKILL is immediate, but the grandchild's reaping by init may lag. */
	for (int i = 0; i < 200 && pid_alive(gc); i++)
		usleep(10000);
	ck_assert_msg(!pid_alive(gc), "grandchild %ld survived", gc);
	json_decref(r);
}
END_TEST

START_TEST(exec_takes_env_cwd_and_stdin)
{
	json_t	*r;
	char	*o;
	size_t	 n = 300000, i, len;
	char	*big = malloc(n), *enc;

	r = askj(json_pack("{s:s, s:[s,s,s], s:{s:s,s:s}, s:s, s:s}",
	    "op", "exec", "argv", "sh", "-c",
	    "echo \"$EMBER_T1 $EMBER_T2\"; pwd; cat",
	    "env", "EMBER_T1", "one", "EMBER_T2", "two two",
	    "cwd", "/usr", "stdin", "aGVsbG8K"));
	o = b64_member(r, "stdout");
	ck_assert_str_eq(o, "one two two\n/usr\nhello\n");
	ck_assert_int_eq(json_integer_value(json_object_get(r, "exit_code")), 0);
	free(o);
	json_decref(r);

	/* PATH comes from the agent's environment; a set one overrides it. */
	setenv("EMBER_T3", "inherited", 1);
	r = askj(json_pack("{s:s, s:[s,s,s]}", "op", "exec", "argv", "sh",
	    "-c", "echo $EMBER_T3"));
	o = b64_member(r, "stdout");
	ck_assert_str_eq(o, "inherited\n");
	free(o);
	json_decref(r);

	/* stdin larger than a pipe buffer, while output flows back. */
	for (i = 0; i < n; i++)
		big[i] = (char)('a' + i % 26);
	enc = base64_encode(big, n, &len);
	r = askj(json_pack("{s:s, s:[s], s:s}", "op", "exec", "argv", "wc",
	    "stdin", enc));
	o = b64_member(r, "stdout");
	ck_assert_msg(strstr(o, " 300000") != NULL, "wc said %s", o);
	free(o);
	json_decref(r);

	/* A command that never reads its stdin: no SIGPIPE for us. */
	r = askj(json_pack("{s:s, s:[s,s,s], s:s}", "op", "exec", "argv", "sh",
	    "-c", "exec 0<&-; echo closed", "stdin", enc));
	o = b64_member(r, "stdout");
	ck_assert_str_eq(o, "closed\n");
	ck_assert_int_eq(json_integer_value(json_object_get(r, "exit_code")), 0);
	free(o);
	free(enc);
	free(big);
	json_decref(r);
}
END_TEST

START_TEST(exec_truncates_output_at_256_kib)
{
	json_t		*r = run_sh("head -c 400000 /dev/zero; "
			    "head -c 1000 /dev/zero >&2", 20);
	const char	*s = json_string_value(json_object_get(r, "stdout"));
	unsigned char	*dec;
	size_t		 len;

	ck_assert(json_is_true(json_object_get(r, "truncated")));
	ck_assert_int_eq(json_integer_value(json_object_get(r, "exit_code")), 0);
	ck_assert_int_eq(base64_decode(s, strlen(s), &dec, &len), 0);
	ck_assert_uint_eq(len, AGENT_EXEC_OUTPUT_MAX);
	free(dec);
	s = json_string_value(json_object_get(r, "stderr"));
	ck_assert_uint_eq(strlen(s), 1336);	/* 1000 bytes, whole */
	json_decref(r);
	r = run_sh("head -c 262144 /dev/zero", 20);
	ck_assert(json_is_false(json_object_get(r, "truncated")));
	json_decref(r);
}
END_TEST

START_TEST(exec_does_not_wait_for_a_background_process)
{
	struct timespec	 t0, t1;
	json_t		*r;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	r = run_sh("sleep 3 & echo done", 10);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ck_assert_int_eq(json_integer_value(json_object_get(r, "exit_code")), 0);
	ck_assert(json_is_false(json_object_get(r, "timed_out")));
	ck_assert_msg(t1.tv_sec - t0.tv_sec < 2, "waited %ld s",
	    (long)(t1.tv_sec - t0.tv_sec));
	json_decref(r);
}
END_TEST

START_TEST(exec_errors_are_clear)
{
	assert_error(askj(json_pack("{s:s, s:[s]}", "op", "exec", "argv",
	    "/nonexistent/cmd")), "cannot run \"/nonexistent/cmd\": No such file");
	assert_error(askj(json_pack("{s:s, s:[s], s:s}", "op", "exec", "argv",
	    "true", "cwd", "/nonexistent")), "cannot change to directory");
	assert_error(ask("{\"op\":\"exec\"}"), "invalid parameters for exec");
	assert_error(ask("{\"op\":\"exec\",\"argv\":[]}"), "non-empty array");
	assert_error(ask("{\"op\":\"exec\",\"argv\":\"ls\"}"), "non-empty array");
	assert_error(ask("{\"op\":\"exec\",\"argv\":[\"ls\",1]}"),
	    "argv[1] is not a string");
	assert_error(ask("{\"op\":\"exec\",\"argv\":[\"\"]}"), "argv[0] is empty");
	assert_error(ask("{\"op\":\"exec\",\"argv\":[\"ls\"],\"bogus\":1}"),
	    "invalid parameters for exec");
	assert_error(ask("{\"op\":\"exec\",\"argv\":[\"ls\"],\"timeout_s\":0}"),
	    "timeout_s must be");
	assert_error(ask("{\"op\":\"exec\",\"argv\":[\"ls\"],\"stdin\":\"!!\"}"),
	    "stdin is not valid base64");
	assert_error(ask("{\"op\":\"exec\",\"argv\":[\"ls\"],\"env\":{\"A\":1}}"),
	    "env value");
	assert_error(ask("{\"op\":\"exec\",\"argv\":[\"ls\"],\"env\":{\"A=B\":\"x\"}}"),
	    "env name");
}
END_TEST

/* --- files -------------------------------------------------------------- */

static char	tmpdir[64];

static void
files_setup(void)
{
	test_tmpdir_new(tmpdir, sizeof(tmpdir), "/tmp/agent-check.XXXXXX");
}

static void
files_teardown(void)
{
	ck_assert_int_eq(rm_rf(tmpdir), 0);
}

static json_t *
write_chunk(const char *path, const void *data, size_t len, json_int_t offset,
    int truncate, json_int_t mode)
{
	char	*enc = base64_encode(data, len, NULL);
	json_t	*req = json_pack("{s:s, s:s, s:s, s:I, s:b}", "op", "write_file",
	    "path", path, "data", enc, "offset", offset, "truncate", truncate);

	if (mode >= 0)
		json_object_set_new(req, "mode", json_integer(mode));
	free(enc);
	return askj(req);
}

static json_t *
read_chunk(const char *path, json_int_t offset, json_int_t length)
{
	return askj(json_pack("{s:s, s:s, s:I, s:I}", "op", "read_file",
	    "path", path, "offset", offset, "length", length));
}

START_TEST(files_write_and_read_binary_at_offsets)
{
	unsigned char	 bin[256], *dec;
	char		 path[256];
	const char	*s;
	struct stat	 st;
	json_t		*r;
	size_t		 i, len;

	for (i = 0; i < sizeof(bin); i++)
		bin[i] = (unsigned char)i;
	snprintf(path, sizeof(path), "%s/f", tmpdir);
	r = write_chunk(path, bin, sizeof(bin), 0, 1, -1);
	ck_assert_int_eq(json_integer_value(json_object_get(r, "written")), 256);
	json_decref(r);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_mode & 07777, 0644);	/* the default */
	ck_assert_int_eq(st.st_size, 256);

	/* Overwrite the middle; the rest stays. */
	r = write_chunk(path, "XY", 2, 100, 0, -1);
	json_decref(r);
	r = read_chunk(path, 99, 4);
	ck_assert(json_is_true(json_object_get(r, "ok")));
	s = json_string_value(json_object_get(r, "data"));
	ck_assert_int_eq(base64_decode(s, strlen(s), &dec, &len), 0);
	ck_assert_uint_eq(len, 4);
	ck_assert(dec[0] == 99 && dec[1] == 'X' && dec[2] == 'Y' && dec[3] == 102);
	free(dec);
	ck_assert_int_eq(json_integer_value(json_object_get(r, "size")), 256);
	ck_assert(json_is_false(json_object_get(r, "eof")));
	json_decref(r);

	/* The last bytes: eof; past the end: nothing, eof. */
	r = read_chunk(path, 250, 100);
	ck_assert_str_eq(json_string_value(json_object_get(r, "data")),
	    "+vv8/f7/");
	ck_assert(json_is_true(json_object_get(r, "eof")));
	json_decref(r);
	r = read_chunk(path, 1000, 10);
	ck_assert_str_eq(json_string_value(json_object_get(r, "data")), "");
	ck_assert(json_is_true(json_object_get(r, "eof")));
	json_decref(r);

	/* truncate empties the file first; a write past the end leaves a hole. */
	r = write_chunk(path, "ab", 2, 0, 1, -1);
	json_decref(r);
	r = write_chunk(path, "z", 1, 4, 0, -1);
	json_decref(r);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_size, 5);
	r = read_chunk(path, 0, 5);
	ck_assert_str_eq(json_string_value(json_object_get(r, "data")), "YWIAAHo=");
	json_decref(r);
}
END_TEST

START_TEST(files_mode_applies_when_creating_only)
{
	char		 path[256];
	struct stat	 st;
	mode_t		 old = umask(077);

	snprintf(path, sizeof(path), "%s/m", tmpdir);
	json_decref(write_chunk(path, "x", 1, 0, 1, 0755));
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_mode & 07777, 0755);	/* not masked */
	json_decref(write_chunk(path, "y", 1, 0, 1, 0600));
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_mode & 07777, 0755);
	umask(old);
	assert_error(write_chunk(path, "y", 1, 0, 0, 010000), "not a file mode");
}
END_TEST

START_TEST(files_errors_are_clear)
{
	char	path[256], *big, *enc;
	size_t	n = AGENT_FILE_CHUNK_MAX + 1;

	snprintf(path, sizeof(path), "%s/missing", tmpdir);
	assert_error(read_chunk(path, 0, 10), "No such file or directory");
	assert_error(read_chunk(tmpdir, 0, 10), "is a directory");
	assert_error(read_chunk(path, 0, AGENT_FILE_CHUNK_MAX + 1),
	    "read at most 524288 bytes");
	assert_error(read_chunk(path, -1, 10), "offset must not be negative");
	snprintf(path, sizeof(path), "%s/no/such/dir", tmpdir);
	assert_error(write_chunk(path, "x", 1, 0, 0, -1), "open ");
	big = calloc(1, n);
	enc = base64_encode(big, n, NULL);
	assert_error(askj(json_pack("{s:s, s:s, s:s}", "op", "write_file",
	    "path", path, "data", enc)), "write at most 524288 bytes");
	free(enc);
	free(big);
	assert_error(ask("{\"op\":\"write_file\",\"path\":\"/x\",\"data\":\"%%\"}"),
	    "not valid base64");
	assert_error(ask("{\"op\":\"write_file\",\"path\":\"/x\"}"),
	    "invalid parameters for write_file");
	assert_error(ask("{\"op\":\"read_file\"}"),
	    "invalid parameters for read_file");
}
END_TEST

START_TEST(files_full_chunk_reads_back)
{
	char		 path[256];
	unsigned char	*buf = malloc(AGENT_FILE_CHUNK_MAX), *dec;
	json_t		*r;
	const char	*s;
	size_t		 i, len;

	for (i = 0; i < AGENT_FILE_CHUNK_MAX; i++)
		buf[i] = (unsigned char)(i * 7);
	snprintf(path, sizeof(path), "%s/big", tmpdir);
	r = write_chunk(path, buf, AGENT_FILE_CHUNK_MAX, 0, 1, -1);
	ck_assert_int_eq(json_integer_value(json_object_get(r, "written")),
	    AGENT_FILE_CHUNK_MAX);
	json_decref(r);
	r = read_chunk(path, 0, AGENT_FILE_CHUNK_MAX);
	s = json_string_value(json_object_get(r, "data"));
	ck_assert_int_eq(base64_decode(s, strlen(s), &dec, &len), 0);
	ck_assert_uint_eq(len, AGENT_FILE_CHUNK_MAX);
	ck_assert(memcmp(dec, buf, len) == 0);
	ck_assert(json_is_true(json_object_get(r, "eof")));
	free(dec);
	free(buf);
	json_decref(r);
}
END_TEST

/* --- poweroff ----------------------------------------------------------- */

START_TEST(poweroff_answers_and_raises_the_flag_only)
{
	json_t	*r;

	ck_assert_int_eq(agent_poweroff_take(), 0);
	r = ask("{\"op\":\"poweroff\",\"id\":9}");
	ck_assert(json_is_true(json_object_get(r, "ok")));
	json_decref(r);
	ck_assert_int_eq(agent_poweroff_take(), 1);
	ck_assert_int_eq(agent_poweroff_take(), 0);
	assert_error(ask("{\"op\":\"poweroff\",\"now\":true}"),
	    "invalid parameters for poweroff");
	ck_assert_int_eq(agent_poweroff_take(), 0);
}
END_TEST

START_TEST(line_flags_name_worker_ops)
{
	static const char	exec[] = "{\"op\":\"exec\",\"argv\":[\"x\"]}";
	static const char	ping[] = "{\"op\":\"ping\"}";

	ck_assert_int_eq(agent_line_flags(exec, strlen(exec)), AGENT_OP_WORKER);
	ck_assert_int_eq(agent_line_flags(ping, strlen(ping)), 0);
	ck_assert_int_eq(agent_line_flags("junk", 4), 0);
	ck_assert_int_eq(agent_line_flags("{\"op\":\"nope\"}", 13), 0);
}
END_TEST

START_TEST(dry_run_touches_nothing)
{
	char		 path[256];
	struct stat	 st;
	json_t		*r;

	agent_dry_run = 1;
	snprintf(path, sizeof(path), "%s/dry", tmpdir);
	r = write_chunk(path, "abc", 3, 0, 1, -1);
	ck_assert_int_eq(json_integer_value(json_object_get(r, "written")), 3);
	json_decref(r);
	ck_assert_int_eq(stat(path, &st), -1);
	r = run_sh("touch /tmp/agent-check-dry-run-must-not-exist", 5);
	ck_assert(json_is_true(json_object_get(r, "ok")));
	json_decref(r);
	ck_assert_int_eq(stat("/tmp/agent-check-dry-run-must-not-exist", &st), -1);
	agent_dry_run = 0;
}
END_TEST

START_TEST(workload_status_without_a_workload_is_none)
{
	json_t	*r;

	agent_exec_root = NULL;
	r = ask("{\"op\":\"workload_status\"}");
	ck_assert(json_is_true(json_object_get(r, "ok")));
	ck_assert_str_eq(json_string_value(json_object_get(r, "workload")), "none");
	json_decref(r);
	assert_error(ask("{\"op\":\"workload_status\",\"collected\":true}"),
	    "runs no workload");
	assert_error(ask("{\"op\":\"workload_status\",\"wait_s\":601}"), "wait_s must be");
	assert_error(ask("{\"op\":\"workload_status\",\"wait_s\":-1}"), "wait_s must be");
	assert_error(ask("{\"op\":\"workload_status\",\"wait\":1}"), "invalid parameters");
	assert_error(ask("{\"op\":\"workload_status\",\"collected\":1}"),
	    "invalid parameters");
}
END_TEST

/* Writes the runner's status file in tmpdir. */
static void
write_status(const char *text)
{
	char	 path[256], tmp[256];
	FILE	*f;

	snprintf(tmp, sizeof(tmp), "%s/.status.tmp", tmpdir);
	snprintf(path, sizeof(path), "%s/ember-workload.status", tmpdir);
	ck_assert_ptr_nonnull(f = fopen(tmp, "we"));
	fputs(text, f);
	ck_assert_int_eq(fclose(f), 0);
	ck_assert_int_eq(rename(tmp, path), 0);
}

START_TEST(workload_status_reports_the_end_and_its_collection)
{
	char		 path[256];
	struct stat	 st;
	json_t		*r;

	agent_exec_root = "/";
	agent_workload_run_dir = tmpdir;
	r = ask("{\"op\":\"workload_status\"}");
	ck_assert_str_eq(json_string_value(json_object_get(r, "workload")), "running");
	ck_assert_uint_eq(strlen(json_string_value(json_object_get(r, "boot_id"))), 36);
	json_decref(r);
	assert_error(ask("{\"op\":\"workload_status\",\"collected\":true}"),
	    "still running");
	write_status("{\"signal\": 9}\n");
	r = ask("{\"op\":\"workload_status\"}");
	ck_assert_str_eq(json_string_value(json_object_get(r, "workload")), "exited");
	ck_assert_int_eq(json_integer_value(json_object_get(r, "signal")), 9);
	ck_assert_ptr_null(json_object_get(r, "code"));
	json_decref(r);
	snprintf(path, sizeof(path), "%s/ember-workload.collected", tmpdir);
	ck_assert_int_eq(stat(path, &st), -1);
	r = ask("{\"op\":\"workload_status\",\"collected\":true}");
	ck_assert_str_eq(json_string_value(json_object_get(r, "workload")), "exited");
	json_decref(r);
	ck_assert_int_eq(stat(path, &st), 0);
	write_status("{\"code\": 256}\n");
	assert_error(ask("{\"op\":\"workload_status\"}"), "malformed");
	write_status("EMBER-WORKLOAD-EXIT code=3\n");
	assert_error(ask("{\"op\":\"workload_status\"}"), "malformed");
	agent_exec_root = NULL;
	agent_workload_run_dir = "/run";
}
END_TEST

START_TEST(workload_status_waits_for_the_end)
{
	struct timespec	 t0, t1;
	json_t		*r;
	pid_t		 pid;
	int		 status;

	agent_exec_root = "/";
	agent_workload_run_dir = tmpdir;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	r = ask("{\"op\":\"workload_status\",\"wait_s\":1}");
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ck_assert_str_eq(json_string_value(json_object_get(r, "workload")), "running");
	ck_assert_int_ge(t1.tv_sec - t0.tv_sec, 1);
	json_decref(r);
	/* Written by another process while (or before) the request waits. */
	if ((pid = fork()) == 0) {
		write_status("{\"code\": 4}\n");
		_exit(0);
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	r = ask("{\"op\":\"workload_status\",\"wait_s\":30}");
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_str_eq(json_string_value(json_object_get(r, "workload")), "exited");
	ck_assert_int_eq(json_integer_value(json_object_get(r, "code")), 4);
	ck_assert_int_lt(t1.tv_sec - t0.tv_sec, 30);
	json_decref(r);
	agent_exec_root = NULL;
	agent_workload_run_dir = "/run";
}
END_TEST

START_TEST(error_line_carries_the_id)
{
	size_t	 len;
	char	*out = agent_error_line("{\"op\":\"exec\",\"id\":5}", 20,
		    "worker died", &len);

	ck_assert_str_eq(out, "{\"ok\":false,\"id\":5,\"error\":\"worker died\"}\n");
	free(out);
	out = agent_error_line("garbage", 7, "x", &len);
	ck_assert_str_eq(out, "{\"ok\":false,\"error\":\"x\"}\n");
	free(out);
}
END_TEST

static size_t
echo_ports(const char *cmdline, uint32_t *ports)
{
	return agent_parse_echo_ports(cmdline, ports, AGENT_MAX_ECHO_PORTS);
}

START_TEST(echo_ports_from_the_command_line)
{
	uint32_t	p[AGENT_MAX_ECHO_PORTS];

	ck_assert_uint_eq(echo_ports("console=ttyS0 quiet\n", p), 0);
	ck_assert_uint_eq(echo_ports("", p), 0);
	ck_assert_uint_eq(echo_ports("console=ttyS0 ember.echo=5000 quiet\n", p), 1);
	ck_assert_uint_eq(p[0], 5000);
	ck_assert_uint_eq(echo_ports("ember.echo=1,2,3", p), 3);
	ck_assert_uint_eq(p[0], 1);
	ck_assert_uint_eq(p[2], 3);
	/* Later words add; duplicates and junk are skipped. */
	ck_assert_uint_eq(echo_ports("ember.echo=7 x ember.echo=7,8\tember.echo=9\n",
	    p), 3);
	ck_assert_uint_eq(p[1], 8);
	ck_assert_uint_eq(p[2], 9);
	ck_assert_uint_eq(echo_ports("ember.echo=0,-1,abc,,12x,4294967295,"
	    "99999999999,4294967294,6", p), 2);
	ck_assert_uint_eq(p[0], 4294967294u);
	ck_assert_uint_eq(p[1], 6);
	ck_assert_uint_eq(echo_ports("ember.echo= xember.echo=5 ember.echoes=6 "
	    "ember.echo", p), 0);
}
END_TEST

START_TEST(echo_ports_are_capped)
{
	uint32_t	p[3];

	ck_assert_uint_eq(agent_parse_echo_ports("ember.echo=1,2,3,4,5", p, 3), 3);
	ck_assert_uint_eq(p[2], 3);
}
END_TEST

int
main(void)
{
	Suite	*s = suite_create("agent");
	TCase	*tc = tcase_create("core");

	tcase_add_test(tc, ping_answers_pong_and_version);
	tcase_add_test(tc, id_is_echoed_whatever_its_type);
	tcase_add_test(tc, id_is_echoed_on_errors);
	tcase_add_test(tc, info_reports_kernel_uptime_cid_hostname);
	tcase_add_test(tc, info_lists_interfaces_and_their_addresses);
	tcase_add_test(tc, interfaces_are_reported_with_prefixes_and_bounded);
	tcase_add_test(tc, unknown_op_names_the_known_ones);
	tcase_add_test(tc, malformed_requests_get_errors);
	tcase_add_test(tc, parameters_are_checked_strictly);
	tcase_add_test(tc, error_text_is_ascii_even_for_binary_input);
	tcase_add_test(tc, blank_lines_get_no_reply_and_cr_is_ignored);
	tcase_add_test(tc, line_is_not_read_past_its_length);
	tcase_add_test(tc, oversize_reply_is_an_error_line);
	tcase_add_test(tc, deep_nesting_is_refused_not_crashed);
	tcase_add_test(tc, op_table_lookup);
	tcase_add_test(tc, echo_ports_from_the_command_line);
	tcase_add_test(tc, echo_ports_are_capped);
	tcase_add_test(tc, base64_known_vectors);
	tcase_add_test(tc, base64_round_trips_every_byte_value_and_length);
	tcase_add_test(tc, base64_decode_takes_missing_padding_and_refuses_junk);
	tcase_add_test(tc, poweroff_answers_and_raises_the_flag_only);
	tcase_add_test(tc, line_flags_name_worker_ops);
	tcase_add_test(tc, error_line_carries_the_id);
	suite_add_tcase(s, tc);

	tc = tcase_create("exec");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, exec_reports_exit_code_and_both_streams);
	tcase_add_test(tc, exec_reports_the_signal);
	tcase_add_test(tc, exec_timeout_kills_the_whole_process_group);
	tcase_add_test(tc, exec_takes_env_cwd_and_stdin);
	tcase_add_test(tc, exec_truncates_output_at_256_kib);
	tcase_add_test(tc, exec_does_not_wait_for_a_background_process);
	tcase_add_test(tc, exec_errors_are_clear);
	suite_add_tcase(s, tc);

	tc = tcase_create("files");
	tcase_add_checked_fixture(tc, files_setup, files_teardown);
	tcase_add_test(tc, files_write_and_read_binary_at_offsets);
	tcase_add_test(tc, files_mode_applies_when_creating_only);
	tcase_add_test(tc, files_errors_are_clear);
	tcase_add_test(tc, files_full_chunk_reads_back);
	tcase_add_test(tc, dry_run_touches_nothing);
	suite_add_tcase(s, tc);

	tc = tcase_create("workload");
	tcase_set_timeout(tc, 60);
	tcase_add_checked_fixture(tc, files_setup, files_teardown);
	tcase_add_test(tc, workload_status_without_a_workload_is_none);
	tcase_add_test(tc, workload_status_reports_the_end_and_its_collection);
	tcase_add_test(tc, workload_status_waits_for_the_end);
	suite_add_tcase(s, tc);
	return test_run_suite(s);
}
