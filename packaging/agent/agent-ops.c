/*
 * The basic ops: ping (liveness and the agent's version), info (facts
 * about the guest a host wants right after boot, its network interfaces
 * from agent-net.c included) and poweroff. None takes
 * parameters. poweroff only answers and raises a flag: the transport
 * flushes the reply first and then calls agent_poweroff().
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "agent.h"

/* A JSON string for s, or null when s is not valid UTF-8. */
static json_t *
agent_string_or_null(const char *s)
{
	json_t	*v;

	if ((v = json_string(s)) == NULL)
		v = json_null();
	return v;
}

/* Seconds since boot from /proc/uptime, or -1. */
static double
agent_uptime(void)
{
	char	 buf[64], *end;
	ssize_t	 n;
	double	 up;
	int	 fd;

	if ((fd = open("/proc/uptime", O_RDONLY | O_CLOEXEC)) == -1)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	errno = 0;
	up = strtod(buf, &end);
	if (end == buf || errno != 0 || up < 0)
		return -1;
	return up;
}

static int
agent_op_ping(json_t *params, json_t *reply, struct agent_error *err)
{
	if (json_object_set_new(reply, "pong", json_true()) != 0 ||
	    json_object_set_new(reply, "version", json_string(EMBER_VERSION)) != 0)
		return agent_error_set(err, "out of memory");
	return 0;
}

static int
agent_op_info(json_t *params, json_t *reply, struct agent_error *err)
{
	struct utsname	 u;
	char		 host[256];
	double		 up;
	int64_t		 cid;

	if (uname(&u) != 0)
		return agent_error_set(err, "uname: %s", strerror(errno));
	if (gethostname(host, sizeof(host)) != 0)
		host[0] = '\0';
	host[sizeof(host) - 1] = '\0';
	up = agent_uptime();
	cid = agent_local_cid();

	if (json_object_set_new(reply, "kernel",
	    agent_string_or_null(u.release)) != 0 ||
	    json_object_set_new(reply, "uptime_s",
	    up >= 0 ? json_real(up) : json_null()) != 0 ||
	    json_object_set_new(reply, "cid",
	    cid >= 0 ? json_integer(cid) : json_null()) != 0 ||
	    json_object_set_new(reply, "hostname",
	    agent_string_or_null(host)) != 0)
		return agent_error_set(err, "out of memory");
	return agent_net_info(reply, err);
}

static int agent_poweroff_pending;

static int
agent_op_poweroff(json_t *params, json_t *reply, struct agent_error *err)
{
	agent_poweroff_pending = 1;
	return 0;
}

int
agent_poweroff_take(void)
{
	int	pending = agent_poweroff_pending;

	agent_poweroff_pending = 0;
	return pending;
}

/* Starts path with argv in a session of its own (it may signal us). */
static int
agent_spawn_detached(const char *path, char *const argv[])
{
	pid_t	pid;

	if ((pid = fork()) == -1)
		return -errno;
	if (pid == 0) {
		setsid();
		signal(SIGPIPE, SIG_DFL);
		execv(path, argv);
		_exit(127);
	}
	return 0;
}

int
agent_poweroff(void)
{
	static char	*shutdown_argv[] = { "ember-shutdown", "poweroff", NULL };
	static char	*systemctl_argv[] = { "systemctl", "poweroff", NULL };
	struct stat	 st;

	if (access("/sbin/ember-shutdown", X_OK) == 0)
		return agent_spawn_detached("/sbin/ember-shutdown",
		    shutdown_argv);
	if (stat("/run/systemd/system", &st) == 0 && S_ISDIR(st.st_mode)) {
		if (access("/usr/bin/systemctl", X_OK) == 0)
			return agent_spawn_detached("/usr/bin/systemctl",
			    systemctl_argv);
		if (access("/bin/systemctl", X_OK) == 0)
			return agent_spawn_detached("/bin/systemctl",
			    systemctl_argv);
	}
	sync();
	if (reboot(RB_POWER_OFF) == -1)
		return -errno;
	return 0;
}

const struct agent_op agent_ops_basic[] = {
	{ "ping", "{}", agent_op_ping, 0 },
	{ "info", "{}", agent_op_info, 0 },
	{ "poweroff", "{}", agent_op_poweroff, 0 },
	{ NULL, NULL, NULL, 0 },
};
