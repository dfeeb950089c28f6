/* fake_upstream_main.c - `fake-upstream`: the tests' stand-in for the
 * orq.ai API as a program, for the `make run` demo and the benchmarks.
 * Answers every request with 200 and a session (tests/fake_upstream.c)
 * until SIGTERM or SIGINT, then exits 0.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../fake_upstream.h"

static void usage(FILE *f)
{
	fputs("usage: fake-upstream [--port N] [--log FILE]\n"
	      "A stand-in for the orq.ai API on 127.0.0.1: answers every\n"
	      "request with 200 and a session JSON body. Prints\n"
	      "'listening on 127.0.0.1:PORT' once ready; stops on SIGTERM or\n"
	      "SIGINT (exit 0).\n"
	      "  --port N    port to listen on (default 0: any free port)\n"
	      "  --log FILE  append one line per request: METHOD PATH BODY\n"
	      "              (control bytes as \\xNN); '-' for standard output\n"
	      "  --help      this text\n",
	      f);
}

/* Parses a port number 0..65535; -1 when it is not one. */
static long parse_port(const char *s)
{
	long v = 0;

	if (*s == '\0')
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		v = v * 10 + (*s - '0');
		if (v > 65535)
			return -1;
	}
	return v;
}

int main(int argc, char **argv)
{
	const char *log_path = NULL;
	FILE *log = NULL;
	fake_upstream *fu;
	sigset_t set;
	long port = 0;
	int i, sig = 0;

	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			usage(stdout);
			return 0;
		} else if (!strcmp(argv[i], "--port") && i + 1 < argc) {
			port = parse_port(argv[++i]);
			if (port < 0) {
				fprintf(stderr, "fake-upstream: --port takes 0..65535, not '%s'\n",
					argv[i]);
				return 2;
			}
		} else if (!strcmp(argv[i], "--log") && i + 1 < argc) {
			log_path = argv[++i];
		} else {
			fprintf(stderr, "fake-upstream: unknown or incomplete option '%s'\n",
				argv[i]);
			usage(stderr);
			return 2;
		}
	}
	if (log_path) {
		log = strcmp(log_path, "-") ? fopen(log_path, "a") : stdout;
		if (log == NULL) {
			fprintf(stderr, "fake-upstream: cannot open %s: %s\n",
				log_path, strerror(errno));
			return 2;
		}
	}
	/* block the signals before any thread starts; wait for them below */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	fu = fu_start((uint16_t)port);
	if (fu == NULL) {
		fprintf(stderr, "fake-upstream: cannot listen on 127.0.0.1:%ld\n",
			port);
		if (log && log != stdout)
			fclose(log);
		return 2;
	}
	/* a long-running process keeps no requests in memory */
	fu_set_log(fu, log, false);
	printf("listening on 127.0.0.1:%u\n", (unsigned)fu_port(fu));
	fflush(stdout);
	while (sigwait(&set, &sig) != 0)
		;
	fu_stop(fu);
	if (log && log != stdout && fclose(log) != 0)
		return 1;
	return 0;
}
