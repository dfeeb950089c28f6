/* testproc.c - a program under test as a child process: started with its
 * stdout and stderr on a pipe, what it writes collected, its port line
 * awaited, its exit reaped (killed after a deadline). */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

/* More than this of a child's output is read and dropped. */
#define PROC_LOG_MAX ((size_t)8 << 20)

/* Appends what fits under PROC_LOG_MAX; the log stays NUL-terminated. */
static void proc_keep(tu_proc *p, const char *s, size_t n)
{
	char *nl;

	if (p->log_len + n >= PROC_LOG_MAX)
		return;
	nl = realloc(p->log, p->log_len + n + 1);
	if (nl == NULL)
		return;
	p->log = nl;
	memcpy(p->log + p->log_len, s, n);
	p->log_len += n;
	p->log[p->log_len] = '\0';
}

int tu_proc_spawn(tu_proc *p, const char *name, const char *const *args,
		  const char *const *env)
{
	char bin[512];
	char *argv[40];
	int fds[2], argc = 0;
	pid_t parent;

	memset(p, 0, sizeof(*p));
	p->out_fd = -1;
	p->log = calloc(1, 1);
	if (p->log == NULL)
		return -1;
	if (name[0] == '/')
		snprintf(bin, sizeof(bin), "%s", name); /* a system program */
	else
		tu_bin(name, bin, sizeof(bin));
	argv[argc++] = bin;
	while (args && *args && argc < 39)
		argv[argc++] = (char *)(uintptr_t)*args++;
	argv[argc] = NULL;
	if (pipe(fds) != 0)
		return -1;
	parent = getpid();
	p->pid = fork();
	if (p->pid < 0) {
		close(fds[0]);
		close(fds[1]);
		return -1;
	}
	if (p->pid == 0) {
		int devnull = open("/dev/null", O_RDWR);

		tu_child_dies_with_parent(parent);
		dup2(devnull, 0);
		dup2(fds[1], 1);
		dup2(fds[1], 2);
		close(fds[0]);
		execve(bin, argv, (char *const *)(uintptr_t)env);
		_exit(127);
	}
	close(fds[1]);
	p->out_fd = fds[0];
	fcntl(p->out_fd, F_SETFL, O_NONBLOCK);
	return 0;
}

void tu_proc_drain(tu_proc *p, double wait_s)
{
	double end = tu_mono() + wait_s;
	char buf[65536];

	for (;;) {
		struct pollfd pf = { p->out_fd, POLLIN, 0 };
		double left = end - tu_mono();
		ssize_t n;

		if (poll(&pf, 1, left > 0 ? (int)(left * 1000) + 1 : 0) <= 0)
			return;
		n = read(p->out_fd, buf, sizeof(buf));
		if (n <= 0)
			return;
		proc_keep(p, buf, (size_t)n);
	}
}

int tu_proc_reap(tu_proc *p, double wait_s)
{
	double end = tu_mono() + wait_s;
	int st;

	while (tu_mono() < end) {
		if (waitpid(p->pid, &st, WNOHANG) == p->pid) {
			tu_proc_drain(p, 0.2);
			close(p->out_fd);
			p->out_fd = -1;
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		}
		tu_proc_drain(p, 0.02);
	}
	kill(p->pid, SIGKILL);
	waitpid(p->pid, &st, 0);
	close(p->out_fd);
	p->out_fd = -1;
	return -1;
}

unsigned tu_proc_port(tu_proc *p, double wait_s)
{
	static const char m[] = "listening on 127.0.0.1:";
	double end = tu_mono() + wait_s;

	while (tu_mono() < end) {
		const char *at = strstr(p->log, m);

		if (at) {
			p->port = (unsigned)strtoul(at + sizeof(m) - 1, NULL, 10);
			return p->port;
		}
		tu_proc_drain(p, 0.05);
	}
	return 0;
}

unsigned tu_proc_port_of(tu_proc *p, const char *prefix, double wait_s)
{
	double end = tu_mono() + wait_s;

	while (tu_mono() < end) {
		const char *at = strstr(p->log, prefix);

		if (at)
			return (unsigned)strtoul(at + strlen(prefix), NULL, 10);
		tu_proc_drain(p, 0.05);
	}
	return 0;
}

void tu_proc_free(tu_proc *p)
{
	free(p->log);
	p->log = NULL;
	p->log_len = 0;
}
