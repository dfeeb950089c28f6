/* bench/ingress/mhd_srv.c - libmicrohttpd in external-epoll mode on its
 * own epoll loop, as the gateway drives it: bench/ingress.sh's MHD server.
 * usage: mhd_srv PORT sync|async
 *   sync   answer in the access handler once the upload is complete
 *   async  suspend then, resume right after MHD_run returns, answer on
 *          the re-entry: the gateway's path while its upstream call is out */
#include <netinet/in.h>
#include <arpa/inet.h>
#include <microhttpd.h>
#include <sys/epoll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "common.h"

typedef struct req {
	struct MHD_Connection *conn;
	struct req *next;
	size_t got;
	int resumed;
	char body[2048];
} req;

static int async_mode;
static req *pending;
static volatile sig_atomic_t stop;

static void on_sig(int s) { (void)s; stop = 1; }

static size_t no_unescape(void *cls, struct MHD_Connection *c, char *s)
{
	(void)cls; (void)c;
	return strlen(s);
}

static enum MHD_Result answer(struct MHD_Connection *c, unsigned status)
{
	struct MHD_Response *resp = MHD_create_response_from_buffer(
		RESP_LEN, (void *)RESP_BODY, MHD_RESPMEM_PERSISTENT);
	enum MHD_Result ret;

	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	ret = MHD_queue_response(c, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c,
				  const char *url, const char *method,
				  const char *version, const char *upload_data,
				  size_t *upload_data_size, void **con_cls)
{
	req *r = *con_cls;

	(void)cls; (void)version;
	if (r == NULL) {
		if (strcmp(method, "PATCH") != 0 ||
		    strncmp(url, PATH_PREFIX, sizeof(PATH_PREFIX) - 1) != 0)
			return answer(c, 404);
		r = malloc(sizeof(*r));
		if (r == NULL)
			return MHD_NO;
		r->conn = c;
		r->got = 0;
		r->resumed = 0;
		r->next = NULL;
		*con_cls = r;
		return MHD_YES;
	}
	if (*upload_data_size != 0) {
		size_t n = *upload_data_size;
		if (r->got + n > sizeof(r->body))
			return MHD_NO;
		memcpy(r->body + r->got, upload_data, n);
		r->got += n;
		*upload_data_size = 0;
		return MHD_YES;
	}
	/* upload complete */
	if (r->got == 0)
		return answer(c, 400);
	if (async_mode && !r->resumed) {
		r->resumed = 1;
		MHD_suspend_connection(c);
		r->next = pending;
		pending = r;
		return MHD_YES;
	}
	return answer(c, 200);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	(void)cls; (void)c; (void)toe;
	free(*con_cls);
	*con_cls = NULL;
}

int main(int argc, char **argv)
{
	struct MHD_Daemon *d;
	const union MHD_DaemonInfo *info;
	struct epoll_event ev, evs[16];
	int ep, port;

	if (argc < 3) {
		fprintf(stderr, "usage: %s PORT sync|async\n", argv[0]);
		return 2;
	}
	port = atoi(argv[1]);
	async_mode = strcmp(argv[2], "async") == 0;
	signal(SIGPIPE, SIG_IGN);
	signal(SIGTERM, on_sig);
	signal(SIGINT, on_sig);
	{
		struct sockaddr_in sa = {0};
		sa.sin_family = AF_INET;
		sa.sin_port = htons(port);
		sa.sin_addr.s_addr = htonl(0x7f000001);
		d = MHD_start_daemon(MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG,
			(uint16_t)port, NULL, NULL, on_request, NULL,
			MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
			MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30,
			MHD_OPTION_CONNECTION_LIMIT, (unsigned)1024,
			MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)24576,
			MHD_OPTION_UNESCAPE_CALLBACK, no_unescape, NULL,
			MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
			MHD_OPTION_END);
	}
	if (d == NULL) {
		fprintf(stderr, "MHD_start_daemon failed\n");
		return 1;
	}
	info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_EPOLL_FD);
	ep = epoll_create1(EPOLL_CLOEXEC);
	ev.events = EPOLLIN;
	ev.data.ptr = d;
	if (info == NULL || ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, info->epoll_fd, &ev) != 0) {
		perror("epoll");
		return 1;
	}
	fprintf(stderr, "mhd %s %s listening on 127.0.0.1:%d\n", MHD_get_version(),
		async_mode ? "async" : "sync", port);
	while (!stop) {
		MHD_UNSIGNED_LONG_LONG t;
		int to = -1;

		if (MHD_get_timeout(d, &t) == MHD_YES)
			to = t > 60000 ? 60000 : (int)t;
		if (epoll_wait(ep, evs, 16, to) < 0 && !stop)
			continue;
		MHD_run(d);
		/* 0-delay completion path: resume everything suspended during
		 * this run, then let MHD answer them in one more run */
		while (pending != NULL) {
			req *r = pending;
			pending = NULL;
			for (; r != NULL; r = r->next)
				MHD_resume_connection(r->conn);
			MHD_run(d);
		}
	}
	MHD_stop_daemon(d);
	return 0;
}
