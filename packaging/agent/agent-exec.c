/*
 * The exec op: runs a command in the guest and answers with its exit
 * status and output. The command is forked into a session of its own (so
 * that a timeout kills it and everything it started with one kill of the
 * process group), its stdin is fed from the request and its stdout and
 * stderr are collected, each up to AGENT_EXEC_OUTPUT_MAX bytes (the rest is
 * read and dropped, and "truncated" says so). This op blocks until the
 * command is done; the transport runs it in a worker process
 * (AGENT_OP_WORKER) so that other connections are still served.
 *
 * Once the command itself has exited, its output pipes are drained for a
 * short grace period only: a background process it left behind may hold
 * them open for ever, and the command's own output is already in them.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"

#define EXEC_ARGV_MAX		4096
#define EXEC_GRACE_MS		200	/* draining after the command exited */
#define EXEC_TICK_MS		20	/* exit checks without a pidfd */

/* One output stream of the command. */
struct exec_out {
	int		 fd;
	unsigned char	*buf;
	size_t		 len;
	bool		 truncated;
};

/* The parsed request. */
struct exec_req {
	char		**argv;
	json_t		 *env;		/* borrowed; NULL: inherit only */
	const char	 *cwd;
	unsigned char	 *in;
	size_t		  in_len;
	json_int_t	  timeout_s;
};

static int64_t
now_ms(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
exec_req_clear(struct exec_req *r)
{
	free(r->argv);
	free(r->in);
}

static int
exec_parse(json_t *params, struct exec_req *r, struct agent_error *err)
{
	json_t		*argv, *v;
	json_error_t	 jerr;
	const char	*key, *in = NULL;
	size_t		 i, n;

	memset(r, 0, sizeof(*r));
	r->timeout_s = 60;
	if (json_unpack_ex(params, &jerr, JSON_STRICT,
	    "{s:o, s?o, s?s, s?s, s?I}", "argv", &argv, "env", &r->env, "cwd",
	    &r->cwd, "stdin", &in, "timeout_s", &r->timeout_s) != 0)
		return agent_error_set(err, "invalid parameters for exec: %s",
		    jerr.text);
	n = json_array_size(argv);
	if (!json_is_array(argv) || n == 0)
		return agent_error_set(err,
		    "argv must be a non-empty array of strings");
	if (n > EXEC_ARGV_MAX)
		return agent_error_set(err, "argv has %zu words (max %d)", n,
		    EXEC_ARGV_MAX);
	if (r->env != NULL && json_is_null(r->env))
		r->env = NULL;
	if (r->env != NULL && !json_is_object(r->env))
		return agent_error_set(err, "env must be an object of strings");
	if (r->env != NULL) {
		json_object_foreach(r->env, key, v) {
			if (!json_is_string(v))
				return agent_error_set(err,
				    "env value of \"%.64s\" is not a string",
				    key);
			if (key[0] == '\0' || strchr(key, '=') != NULL)
				return agent_error_set(err,
				    "env name \"%.64s\" is empty or has '='",
				    key);
		}
	}
	if (r->timeout_s < 1 || r->timeout_s > AGENT_EXEC_TIMEOUT_MAX)
		return agent_error_set(err, "timeout_s must be 1 to %d",
		    AGENT_EXEC_TIMEOUT_MAX);
	if ((r->argv = calloc(n + 1, sizeof(*r->argv))) == NULL)
		return agent_error_set(err, "out of memory");
	json_array_foreach(argv, i, v) {
		if (!json_is_string(v))
			return agent_error_set(err, "argv[%zu] is not a string",
			    i);
		r->argv[i] = (char *)json_string_value(v);
	}
	if (r->argv[0][0] == '\0')
		return agent_error_set(err, "argv[0] is empty");
	if (in != NULL && base64_decode(in, strlen(in), &r->in,
	    &r->in_len) != 0)
		return agent_error_set(err, "stdin is not valid base64");
	return 0;
}

/* In the child: the command's environment, stdio and signals; then exec. */
static void __attribute__((noreturn))
exec_child(const struct exec_req *r, int in, int out, int errfd, int report)
{
	const char	*key;
	json_t		*v;
	sigset_t	 none;
	int		 sig, e;

	setsid();
	for (sig = 1; sig < NSIG; sig++) {
		if (sig != SIGKILL && sig != SIGSTOP)
			signal(sig, SIG_DFL);
	}
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (dup2(in, 0) == -1 || dup2(out, 1) == -1 || dup2(errfd, 2) == -1)
		goto fail;
	if (agent_exec_root != NULL) {
		/* An OCI image's VM: inside the image's root, with its Env. */
		struct agent_error aerr = { { 0 } };
		if (agent_enter_root(agent_exec_root, agent_exec_workload, false, &aerr) != 0) {
			e = EACCES;
			fprintf(stderr, "%s\n", aerr.msg);
			(void)!write(report, &e, sizeof(e));
			_exit(127);
		}
	}
	if (r->env != NULL) {
		json_object_foreach(r->env, key, v) {
			if (setenv(key, json_string_value(v), 1) != 0)
				goto fail;
		}
	}
	if (r->cwd != NULL && chdir(r->cwd) != 0) {
		e = -errno;	/* negative: chdir failed */
		(void)!write(report, &e, sizeof(e));
		_exit(127);
	}
	execvp(r->argv[0], r->argv);
fail:
	e = errno;
	(void)!write(report, &e, sizeof(e));
	_exit(127);
}

/* Reads what o->fd has; closes it at EOF. */
static void
exec_out_read(struct exec_out *o)
{
	unsigned char	scratch[16384];
	size_t		room;
	ssize_t		n;

	for (;;) {
		room = AGENT_EXEC_OUTPUT_MAX - o->len;
		if (room > 0)
			n = read(o->fd, o->buf + o->len, room);
		else
			n = read(o->fd, scratch, sizeof(scratch));
		if (n > 0) {
			if (room > 0)
				o->len += (size_t)n;
			else
				o->truncated = true;
			continue;
		}
		if (n == -1 && errno == EINTR)
			continue;
		if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
			close(o->fd);
			o->fd = -1;
		}
		return;
	}
}

static int
pidfd_for(pid_t pid)
{
#ifdef SYS_pidfd_open
	return (int)syscall(SYS_pidfd_open, pid, 0);
#else
	errno = ENOSYS;
	return -1;
#endif
}

/* Result of running the command. */
struct exec_result {
	int		status;
	bool		timed_out;
	struct exec_out	out, err;
};

/*
 * Feeds stdin, collects output, enforces the timeout and reaps the child.
 * Closes in (the write end of its stdin) and the output fds.
 */
static void
exec_supervise(const struct exec_req *r, pid_t pid, int in,
    struct exec_result *res)
{
	struct pollfd	 pfd[4];
	int64_t		 deadline, grace = -1, t;
	size_t		 in_off = 0;
	ssize_t		 n;
	bool		 exited = false;
	int		 pidfd, np, wait_ms, i;

	deadline = now_ms() + (int64_t)r->timeout_s * 1000;
	pidfd = pidfd_for(pid);
	if (r->in_len == 0) {
		close(in);
		in = -1;
	}
	for (;;) {
		if (!exited && waitpid(pid, &res->status, WNOHANG) == pid) {
			exited = true;
			grace = now_ms() + EXEC_GRACE_MS;
			if (in != -1) {
				close(in);
				in = -1;
			}
		}
		if (res->out.fd == -1 && res->err.fd == -1 && exited)
			break;
		t = now_ms();
		if (exited && t >= grace)
			break;
		if (!exited && t >= deadline) {
			kill(-pid, SIGKILL);
			kill(pid, SIGKILL);
			while (waitpid(pid, &res->status, 0) == -1 &&
			    errno == EINTR)
				;
			res->timed_out = true;
			exited = true;
			grace = now_ms() + EXEC_GRACE_MS;
			if (in != -1) {
				close(in);
				in = -1;
			}
			continue;
		}
		np = 0;
		pfd[np].fd = res->out.fd;
		pfd[np++].events = POLLIN;
		pfd[np].fd = res->err.fd;
		pfd[np++].events = POLLIN;
		pfd[np].fd = in;
		pfd[np++].events = POLLOUT;
		pfd[np].fd = exited ? -1 : pidfd;
		pfd[np++].events = POLLIN;
		wait_ms = (int)((exited ? grace : deadline) - t);
		if (!exited && pidfd == -1 && wait_ms > EXEC_TICK_MS)
			wait_ms = EXEC_TICK_MS;
		for (i = 0; i < np; i++)
			pfd[i].revents = 0;
		if (poll(pfd, (nfds_t)np, wait_ms) == -1 && errno != EINTR)
			break;
		if (pfd[0].revents != 0)
			exec_out_read(&res->out);
		if (pfd[1].revents != 0)
			exec_out_read(&res->err);
		if (in != -1 && pfd[2].revents != 0) {
			n = write(in, r->in + in_off, r->in_len - in_off);
			if (n > 0)
				in_off += (size_t)n;
			if ((n == -1 && errno != EAGAIN && errno != EINTR) ||
			    in_off == r->in_len) {
				close(in);	/* all fed, or the child closed it */
				in = -1;
			}
		}
	}
	if (!exited) {
		kill(-pid, SIGKILL);
		while (waitpid(pid, &res->status, 0) == -1 && errno == EINTR)
			;
	}
	if (in != -1)
		close(in);
	if (pidfd != -1)
		close(pidfd);
	if (res->out.fd != -1) {
		close(res->out.fd);
		res->out.fd = -1;
	}
	if (res->err.fd != -1) {
		close(res->err.fd);
		res->err.fd = -1;
	}
}

/* Sets key to the base64 of o's bytes. */
static int
exec_set_output(json_t *reply, const char *key, const struct exec_out *o)
{
	size_t	 len;
	char	*s;

	if ((s = base64_encode(o->buf, o->len, &len)) == NULL)
		return -1;
	if (json_object_set_new(reply, key, json_stringn(s, len)) != 0) {
		free(s);
		return -1;
	}
	free(s);
	return 0;
}

static void
close_pair(int p[2])
{
	if (p[0] != -1)
		close(p[0]);
	if (p[1] != -1)
		close(p[1]);
	p[0] = p[1] = -1;
}

static int
agent_op_exec(json_t *params, json_t *reply, struct agent_error *err)
{
	struct exec_req		r;
	struct exec_result	res;
	int			pin[2] = { -1, -1 }, pout[2] = { -1, -1 };
	int			perr[2] = { -1, -1 }, prep[2] = { -1, -1 };
	struct sigaction	ign, old_pipe;
	int			e = 0, rc = -1;
	ssize_t			n;
	pid_t			pid;

	/* A command that closes its stdin early must not kill us. */
	memset(&ign, 0, sizeof(ign));
	ign.sa_handler = SIG_IGN;
	sigemptyset(&ign.sa_mask);
	sigaction(SIGPIPE, &ign, &old_pipe);
	memset(&res, 0, sizeof(res));
	res.out.fd = res.err.fd = -1;
	if (exec_parse(params, &r, err) != 0)
		goto out;
	if (agent_dry_run) {
		res.status = 0;
		goto reply;
	}
	if ((res.out.buf = malloc(AGENT_EXEC_OUTPUT_MAX)) == NULL ||
	    (res.err.buf = malloc(AGENT_EXEC_OUTPUT_MAX)) == NULL) {
		agent_error_set(err, "out of memory");
		goto out;
	}
	if (pipe2(pin, O_CLOEXEC) == -1 || pipe2(pout, O_CLOEXEC) == -1 ||
	    pipe2(perr, O_CLOEXEC) == -1 || pipe2(prep, O_CLOEXEC) == -1) {
		agent_error_set(err, "pipe: %s", strerror(errno));
		goto out;
	}
	if ((pid = fork()) == -1) {
		agent_error_set(err, "fork: %s", strerror(errno));
		goto out;
	}
	if (pid == 0)
		exec_child(&r, pin[0], pout[1], perr[1], prep[1]);
	/* The child's setsid() has run once the report pipe says exec. */
	close(pin[0]);
	close(pout[1]);
	close(perr[1]);
	close(prep[1]);
	pin[0] = pout[1] = perr[1] = prep[1] = -1;

	/* The child reports a failed chdir or exec, else EOF at exec. */
	do
		n = read(prep[0], &e, sizeof(e));
	while (n == -1 && errno == EINTR);
	if (n == (ssize_t)sizeof(e)) {
		while (waitpid(pid, NULL, 0) == -1 && errno == EINTR)
			;
		if (e < 0)
			agent_error_set(err, "cannot change to directory %.128s: %s",
			    r.cwd, strerror(-e));
		else
			agent_error_set(err, "cannot run \"%.128s\": %s",
			    r.argv[0], strerror(e));
		goto out;
	}
	fcntl(pin[1], F_SETFL, O_NONBLOCK);
	fcntl(pout[0], F_SETFL, O_NONBLOCK);
	fcntl(perr[0], F_SETFL, O_NONBLOCK);
	res.out.fd = pout[0];
	res.err.fd = perr[0];
	pout[0] = perr[0] = -1;
	exec_supervise(&r, pid, pin[1], &res);
	pin[1] = -1;

reply:
	if (json_object_set_new(reply, "exit_code",
	    WIFEXITED(res.status) ? json_integer(WEXITSTATUS(res.status)) :
	    json_null()) != 0 ||
	    json_object_set_new(reply, "signal",
	    WIFSIGNALED(res.status) ? json_integer(WTERMSIG(res.status)) :
	    json_null()) != 0 ||
	    json_object_set_new(reply, "timed_out",
	    json_boolean(res.timed_out)) != 0 ||
	    exec_set_output(reply, "stdout", &res.out) != 0 ||
	    exec_set_output(reply, "stderr", &res.err) != 0 ||
	    json_object_set_new(reply, "truncated",
	    json_boolean(res.out.truncated || res.err.truncated)) != 0) {
		agent_error_set(err, "out of memory");
		goto out;
	}
	rc = 0;
out:
	close_pair(pin);
	close_pair(pout);
	close_pair(perr);
	close_pair(prep);
	free(res.out.buf);
	free(res.err.buf);
	exec_req_clear(&r);
	sigaction(SIGPIPE, &old_pipe, NULL);
	return rc;
}

const struct agent_op agent_ops_exec[] = {
	/* Parameters are checked by exec_parse (they need arguments). */
	{ "exec", NULL, agent_op_exec, AGENT_OP_WORKER },
	{ NULL, NULL, NULL, 0 },
};
