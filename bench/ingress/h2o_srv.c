/* bench/ingress/h2o_srv.c - libh2o-evloop 2.2 (HTTP/1.1, plain TCP), one
 * thread: bench/ingress.sh's h2o server. usage: h2o_srv PORT sync|async
 *   sync   respond in the handler (h2o_send_inline)
 *   async  respond from a 0 ms h2o_timeout entry (later in the same
 *          h2o_evloop_run pass), as an answer from an upstream would */
#define H2O_USE_LIBUV 0
#define H2O_USE_EPOLL 1
#include <h2o.h>
#include <h2o/http1.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include "common.h"

static h2o_globalconf_t config;
static h2o_context_t ctx;
static h2o_accept_ctx_t accept_ctx;
static h2o_timeout_t zero_timeout;
static int async_mode;

typedef struct {
	h2o_timeout_entry_t te; /* first member */
	h2o_req_t *req;
} pending_t;

static void respond(h2o_req_t *req)
{
	req->res.status = 200;
	req->res.reason = "OK";
	req->res.content_length = RESP_LEN;
	h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
		       H2O_STRLIT("application/json"));
	h2o_send_inline(req, RESP_BODY, RESP_LEN);
}

static void on_zero_timeout(h2o_timeout_entry_t *te)
{
	pending_t *p = (pending_t *)te;
	h2o_req_t *req = p->req;

	p->req = NULL;
	respond(req);
}

static void pending_dispose(void *arg)
{
	pending_t *p = arg;
	/* the request went away before the timer fired */
	if (h2o_timeout_is_linked(&p->te))
		h2o_timeout_unlink(&p->te);
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
	(void)self;
	/* h2o 2.2 buffers the whole request body before calling the handler:
	 * it is req->entity here */
	if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("PATCH")) ||
	    req->path_normalized.len < sizeof(PATH_PREFIX) - 1 ||
	    memcmp(req->path_normalized.base, PATH_PREFIX, sizeof(PATH_PREFIX) - 1) != 0)
		return -1; /* falls through to 404 */
	if (req->entity.base == NULL)
		return -1;
	if (!async_mode) {
		respond(req);
		return 0;
	}
	{
		pending_t *p = h2o_mem_alloc_shared(&req->pool, sizeof(*p), pending_dispose);
		memset(p, 0, sizeof(*p));
		p->te.cb = on_zero_timeout;
		p->req = req;
		h2o_timeout_link(ctx.loop, &zero_timeout, &p->te);
	}
	return 0;
}

static void on_accept(h2o_socket_t *listener, const char *err)
{
	h2o_socket_t *sock;

	if (err != NULL)
		return;
	if ((sock = h2o_evloop_socket_accept(listener)) == NULL)
		return;
	h2o_accept(&accept_ctx, sock);
}

static int create_listener(int port)
{
	struct sockaddr_in addr;
	int fd, on = 1;
	h2o_socket_t *sock;

	memset(&addr, 0, sizeof(addr));
	addr.sin_family = AF_INET;
	addr.sin_addr.s_addr = htonl(0x7f000001);
	addr.sin_port = htons(port);
	if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 ||
	    bind(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 ||
	    listen(fd, SOMAXCONN) != 0)
		return -1;
	sock = h2o_evloop_socket_create(ctx.loop, fd, H2O_SOCKET_FLAG_DONT_READ);
	h2o_socket_read_start(sock, on_accept);
	return 0;
}

int main(int argc, char **argv)
{
	h2o_hostconf_t *hostconf;
	h2o_pathconf_t *pathconf;
	h2o_handler_t *handler;
	int port;

	if (argc < 3) {
		fprintf(stderr, "usage: %s PORT sync|async\n", argv[0]);
		return 2;
	}
	port = atoi(argv[1]);
	async_mode = strcmp(argv[2], "async") == 0;
	signal(SIGPIPE, SIG_IGN);

	h2o_config_init(&config);
	hostconf = h2o_config_register_host(&config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
	pathconf = h2o_config_register_path(hostconf, "/", 0);
	handler = h2o_create_handler(pathconf, sizeof(*handler));
	handler->on_req = on_req;

	h2o_context_init(&ctx, h2o_evloop_create(), &config);
	h2o_timeout_init(ctx.loop, &zero_timeout, 0);
	accept_ctx.ctx = &ctx;
	accept_ctx.hosts = config.hosts;
	if (create_listener(port) != 0) {
		perror("listen");
		return 1;
	}
	fprintf(stderr, "h2o %s %s listening on 127.0.0.1:%d\n", H2O_VERSION,
		async_mode ? "async" : "sync", port);
	for (;;) {
		/* returns -1 on EINTR (e.g. when strace attaches): keep going */
		if (h2o_evloop_run(ctx.loop, INT32_MAX) != 0 && errno != EINTR) {
			perror("h2o_evloop_run");
			return 1;
		}
	}
	return 0;
}
