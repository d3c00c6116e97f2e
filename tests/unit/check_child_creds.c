/*
 * child_spawn with drop_creds, as a hypervisor of a VM owner that is not
 * root is started: the process runs with exactly the uid, gid and groups
 * asked for (real, effective and saved) and no_new_privs; when a step
 * fails, nothing is executed, the exit status is 127 and the reason is on
 * stderr. Needs root (skipped otherwise).
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "child.h"
#include "test-util.h"

#define OWNER_UID 65534
#define OWNER_GID 65534

/* Runs argv with o's credentials; its stdout and stderr (up to len) in out.
 * Returns the wait status. */
static int
run(struct child_spawn_opts *o, const char *const *argv, char *out, size_t len)
{
	int p[2], status = -1;
	size_t got = 0;
	ssize_t n;
	pid_t pid;

	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	o->argv = argv;
	o->stdout_fd = p[1];
	o->stderr_fd = p[1];
	pid = child_spawn(o);
	ck_assert_int_gt(pid, 0);
	close(p[1]);
	while (got + 1 < len && (n = read(p[0], out + got, len - 1 - got)) > 0)
		got += (size_t)n;
	out[got] = '\0';
	close(p[0]);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	return status;
}

/* The value after "key:" in /proc/<pid>/status text, whitespace squeezed. */
static void
status_field(const char *text, const char *key, char *out, size_t len)
{
	const char *p = strstr(text, key);
	size_t o = 0;

	out[0] = '\0';
	if (p == NULL)
		return;
	p += strlen(key);
	while (*p == ' ' || *p == '\t')
		p++;
	for (; *p && *p != '\n' && o + 1 < len; p++) {
		if ((*p == ' ' || *p == '\t') && (o == 0 || out[o - 1] == ' '))
			continue;
		out[o++] = *p == '\t' ? ' ' : *p;
	}
	while (o > 0 && out[o - 1] == ' ')
		o--;
	out[o] = '\0';
}

START_TEST(runs_with_exactly_the_ids_asked_for)
{
	static const gid_t groups[] = { 4242 };
	const char *const argv[] = { "cat", "/proc/self/status", NULL };
	struct child_spawn_opts o = { .drop_creds = true, .uid = OWNER_UID, .gid = OWNER_GID,
				      .groups = groups, .ngroups = 1 };
	char out[8192], v[128];
	int status;

	status = run(&o, argv, out, sizeof(out));
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d: %s", status, out);
	status_field(out, "\nUid:", v, sizeof(v));
	ck_assert_str_eq(v, "65534 65534 65534 65534");
	status_field(out, "\nGid:", v, sizeof(v));
	ck_assert_str_eq(v, "65534 65534 65534 65534");
	status_field(out, "\nGroups:", v, sizeof(v));
	ck_assert_str_eq(v, "4242");
	status_field(out, "\nNoNewPrivs:", v, sizeof(v));
	ck_assert_str_eq(v, "1");
	status_field(out, "\nCapEff:", v, sizeof(v));
	ck_assert_str_eq(v, "0000000000000000");
}
END_TEST

START_TEST(no_groups_means_none)
{
	const char *const argv[] = { "cat", "/proc/self/status", NULL };
	struct child_spawn_opts o = { .drop_creds = true, .uid = OWNER_UID, .gid = OWNER_GID };
	char out[8192], v[128];
	int status;

	status = run(&o, argv, out, sizeof(out));
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d: %s", status, out);
	status_field(out, "\nGroups:", v, sizeof(v));
	ck_assert_str_eq(v, "");
}
END_TEST

START_TEST(a_step_that_fails_runs_nothing)
{
	/* More groups than the kernel takes (NGROUPS_MAX is 65536): setgroups
	 * fails with EINVAL, and the command must never run. */
	size_t n = 70000;
	gid_t *groups = calloc(n, sizeof(*groups));
	char marker[] = "/tmp/check_child_creds.XXXXXX";
	const char *const argv[] = { "rm", "-f", marker, NULL };
	struct child_spawn_opts o = { .drop_creds = true, .uid = OWNER_UID, .gid = OWNER_GID,
				      .groups = groups, .ngroups = n };
	struct stat st;
	char out[1024];
	int fd, status;

	ck_assert_ptr_nonnull(groups);
	fd = mkstemp(marker);
	ck_assert_int_ge(fd, 0);
	close(fd);
	status = run(&o, argv, out, sizeof(out));
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 127, "status %d", status);
	ck_assert_msg(strstr(out, "cannot run as uid 65534 gid 65534: setgroups") != NULL, "%s", out);
	ck_assert_int_eq(stat(marker, &st), 0);	/* rm never ran */
	unlink(marker);
	free(groups);
}
END_TEST

START_TEST(without_drop_creds_it_keeps_emberds)
{
	const char *const argv[] = { "cat", "/proc/self/status", NULL };
	struct child_spawn_opts o = { 0 };
	char out[8192], v[128], want[64];
	int status;

	status = run(&o, argv, out, sizeof(out));
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d: %s", status, out);
	status_field(out, "\nUid:", v, sizeof(v));
	snprintf(want, sizeof(want), "%u %u %u %u", (unsigned)getuid(), (unsigned)geteuid(),
		 (unsigned)geteuid(), (unsigned)geteuid());
	ck_assert_str_eq(v, want);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("child_creds");
	TCase *tc = tcase_create("core");

	if (geteuid() != 0) {
		printf("SKIP: needs root (changes uid)\n");
		return 77;
	}
	tcase_add_test(tc, runs_with_exactly_the_ids_asked_for);
	tcase_add_test(tc, no_groups_means_none);
	tcase_add_test(tc, a_step_that_fails_runs_nothing);
	tcase_add_test(tc, without_drop_creds_it_keeps_emberds);
	suite_add_tcase(s, tc);
	return test_run_suite(s);
}
