/*
 * Unit tests for ember-agent's core (packaging/agent/agent.c, agent-ops.c):
 * the request parser, every op, the error replies and the ember.echo
 * command-line parser. Built by packaging/agent/CMakeLists.txt (it links
 * ember-agent-core), run as unit_agent.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>

#include "agent.h"

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

START_TEST(unknown_op_names_the_known_ones)
{
	json_t	*r = ask("{\"op\":\"reboot-the-moon\"}");

	ck_assert(json_object_get(r, "id") == NULL);
	ck_assert_str_eq(json_string_value(json_object_get(r, "error")),
	    "unknown op \"reboot-the-moon\" (known: ping, info)");
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
	ck_assert_ptr_null(agent_op_find(""));
	ck_assert_ptr_null(agent_op_find("PING"));
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
	SRunner	*sr;
	int	 failed;

	tcase_add_test(tc, ping_answers_pong_and_version);
	tcase_add_test(tc, id_is_echoed_whatever_its_type);
	tcase_add_test(tc, id_is_echoed_on_errors);
	tcase_add_test(tc, info_reports_kernel_uptime_cid_hostname);
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
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
