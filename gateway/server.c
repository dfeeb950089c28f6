/* server.c - the running gateway: --threads event loops, each on its own
 * thread with its own listening socket (SO_REUSEPORT: the kernel spreads
 * new connections over them), libmicrohttpd daemon (http.c), curl multi
 * handle (upstream.c) and, in spool mode, its share of the forwarding
 * (spool_forward.c). A request never leaves the loop that accepted it.
 *
 * What the loops share is read-mostly: the configuration, the upstream's
 * header list, a request counter for --max-concurrent and the request
 * ids (atomics), the per-IP connection counts (a mutex, taken when a
 * connection opens or closes, only with --max-connections-per-ip).
 *
 * Device tokens: each loop holds a reference to the set it uses.
 * gw_server_set_tokens posts the new set to every loop, which swaps it on
 * its next pass and drops its reference to the old one; the last
 * reference frees it.
 *
 * Stopping: every loop stops accepting, refuses what is read from then
 * on (503), lets what is at the upstream, in the spool's queue or waiting
 * for an answer finish (a JSON client waiting in spool mode gets its 202
 * at once), stops forwarding new rows, closes its daemon once no request
 * is left, and leaves its loop; then the threads are joined.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gw.h"

#define STOP_CHECK_MS 5
#define STOP_DRAIN_MS 30000 /* then calls backing off end with their answer */
#define LISTEN_BACKLOG 1024
#define IP_BUCKETS 256

typedef struct worker {
	gw_worker w;              /* first: http.c and batch.c see this */
	pthread_t th;
	bool started;
	gw_post stop_post, tok_post;
	gw_tokens *tok_next;      /* under the server's tok_mu */
	bool tok_posted;
	gw_timer stop_timer;
	int64_t stop_since;
	bool hurried;
} worker;

typedef struct ip_count {
	struct ip_count *next;
	size_t len;
	unsigned n;
	unsigned char ip[16];
} ip_count;

struct gw_server {
	const gw_config *c;
	gw_upstream *up;
	gw_store *st;             /* NULL: direct mode */
	bool fwd_open;
	unsigned n;
	worker *w;
	atomic_bool stopping;
	atomic_int inflight;
	atomic_ullong next_id;
	uint16_t port;
	uint16_t coap_port, coaps_port; /* 0: off */
	pthread_mutex_t tok_mu;
	pthread_mutex_t ip_mu;
	ip_count *ips[IP_BUCKETS];
	gw_trace_fn trace;
	void *trace_ud;
};

/* ==== What the ingress asks ==== */

bool gw_server_stopping(const gw_server *s)
{
	return atomic_load_explicit(&s->stopping, memory_order_relaxed);
}

int gw_server_inflight(gw_server *s, int delta)
{
	return atomic_fetch_add_explicit(&s->inflight, delta,
					 memory_order_relaxed) + delta;
}

void gw_server_request_id(gw_server *s, char *out, size_t cap)
{
	snprintf(out, cap, "%llu",
		 (unsigned long long)atomic_fetch_add_explicit(
			 &s->next_id, 1, memory_order_relaxed) + 1);
}

void gw_server_trace(const gw_worker *w, const char *request_id,
		     const char *stage)
{
	if (w->s->trace != NULL)
		w->s->trace(w->s->trace_ud, request_id, stage);
}

void gw_server_set_trace(gw_server *s, gw_trace_fn fn, void *ud)
{
	s->trace = fn;
	s->trace_ud = ud;
}

/* ==== Connections per IP ==== */

static ip_count **ip_slot(gw_server *s, const void *ip, size_t len)
{
	const unsigned char *p = ip;
	unsigned h = 2166136261u;
	ip_count **pp;
	size_t i;

	for (i = 0; i < len; i++)
		h = (h ^ p[i]) * 16777619u;
	for (pp = &s->ips[h % IP_BUCKETS]; *pp != NULL; pp = &(*pp)->next)
		if ((*pp)->len == len && memcmp((*pp)->ip, ip, len) == 0)
			break;
	return pp;
}

bool gw_server_ip_enter(gw_server *s, const void *ip, size_t len)
{
	ip_count **pp, *e;
	bool ok = true;

	if (s->c->max_conns_per_ip == 0 || len > sizeof(e->ip))
		return true;
	pthread_mutex_lock(&s->ip_mu);
	pp = ip_slot(s, ip, len);
	e = *pp;
	if (e == NULL) {
		e = calloc(1, sizeof(*e));
		if (e != NULL) {
			e->len = len;
			memcpy(e->ip, ip, len);
			*pp = e;
		}
	}
	if (e == NULL || e->n >= s->c->max_conns_per_ip)
		ok = false;
	else
		e->n++;
	pthread_mutex_unlock(&s->ip_mu);
	return ok;
}

void gw_server_ip_leave(gw_server *s, const void *ip, size_t len)
{
	ip_count **pp, *e;

	if (s->c->max_conns_per_ip == 0 || len > sizeof(e->ip))
		return;
	pthread_mutex_lock(&s->ip_mu);
	pp = ip_slot(s, ip, len);
	e = *pp;
	if (e != NULL && e->n > 0 && --e->n == 0) {
		*pp = e->next;
		free(e);
	}
	pthread_mutex_unlock(&s->ip_mu);
}

/* ==== Device tokens ==== */

static void on_tokens(void *arg)
{
	worker *k = arg;
	gw_server *s = k->w.s;
	gw_tokens *t, *old;

	pthread_mutex_lock(&s->tok_mu);
	t = k->tok_next;
	k->tok_next = NULL;
	k->tok_posted = false;
	pthread_mutex_unlock(&s->tok_mu);
	old = k->w.tokens;
	k->w.tokens = t;
	gw_tokens_free(old);
}

void gw_server_set_tokens(gw_server *s, gw_tokens *tokens)
{
	unsigned i;

	pthread_mutex_lock(&s->tok_mu);
	for (i = 0; i < s->n; i++) {
		worker *k = &s->w[i];

		gw_tokens_free(k->tok_next); /* a set never switched to */
		k->tok_next = gw_tokens_ref(tokens);
		if (!k->tok_posted) {
			k->tok_posted = true;
			gw_loop_post(k->w.loop, &k->tok_post, on_tokens, k);
		}
	}
	pthread_mutex_unlock(&s->tok_mu);
	gw_tokens_free(tokens); /* the caller's reference: the loops hold it */
}

/* ==== Stopping ==== */

static void stop_check(void *arg)
{
	worker *k = arg;
	gw_worker *w = &k->w;

	if (!k->hurried &&
	    gw_loop_now(w->loop) - k->stop_since >= STOP_DRAIN_MS) {
		gw_log(GW_LOG_WARN, "stopping with requests still in flight",
		       NULL);
		gw_uplink_hurry(w->ul);
		k->hurried = true;
	}
	if (w->busy > 0 || (w->lane && !w->store->ops->lane_idle(w->lane)) ||
	    gw_uplink_busy(w->ul) > 0) {
		gw_timer_start(w->loop, &k->stop_timer, STOP_CHECK_MS);
		return;
	}
	gw_http_stop(w->http);
	w->http = NULL;
	gw_coap_stop(w->coap); /* CoAP exchanges count in busy */
	w->coap = NULL;
	gw_loop_quit(w->loop);
}

static void on_stop(void *arg)
{
	worker *k = arg;
	gw_worker *w = &k->w;

	w->stopping = true;
	k->stop_since = gw_loop_now(w->loop);
	gw_http_quiesce(w->http);
	gw_coap_quiesce(w->coap);
	if (w->lane)
		w->store->ops->lane_stop(w->lane);
	gw_timer_init(&k->stop_timer, stop_check, k);
	stop_check(k);
}

static void *worker_main(void *arg)
{
	worker *k = arg;

	gw_loop_run(k->w.loop);
	/* the loop is over: what is left of it goes on its own thread */
	if (k->w.lane)
		k->w.store->ops->lane_free(k->w.lane);
	k->w.lane = NULL;
	gw_uplink_free(k->w.ul);
	k->w.ul = NULL;
	return NULL;
}

/* ==== Listening sockets ==== */

/* Parses listen_host into ss (port set later). 0 or -1 with err. */
static int listen_addr(const gw_config *c, struct sockaddr_storage *ss,
		       socklen_t *sl, char *err, size_t errlen)
{
	memset(ss, 0, sizeof(*ss));
	if (strchr(c->listen_host, ':')) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;

		a->sin6_family = AF_INET6;
		*sl = sizeof(*a);
		if (inet_pton(AF_INET6, c->listen_host, &a->sin6_addr) == 1)
			return 0;
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)ss;

		a->sin_family = AF_INET;
		*sl = sizeof(*a);
		if (inet_pton(AF_INET, c->listen_host, &a->sin_addr) == 1)
			return 0;
	}
	snprintf(err, errlen, "--listen: \"%s\" is not an IP address",
		 c->listen_host);
	return -1;
}

static void set_port(struct sockaddr_storage *ss, uint16_t port)
{
	if (ss->ss_family == AF_INET6)
		((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
	else
		((struct sockaddr_in *)ss)->sin_port = htons(port);
}

/* A listening socket on ss; reuseport: shares the port with the other
 * loops' sockets. The fd, or -1 with errno. */
static int listen_on(const struct sockaddr_storage *ss, socklen_t sl,
		     bool reuseport)
{
	int one = 1, fd, e;

	fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    (reuseport &&
	     setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) ||
	    (ss->ss_family == AF_INET6 &&
	     setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) != 0) ||
	    bind(fd, (const struct sockaddr *)ss, sl) != 0 ||
	    listen(fd, LISTEN_BACKLOG) != 0) {
		e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

/* n sockets on one port. A fixed port is first bound alone (without
 * SO_REUSEPORT): if another process listens there, that fails, instead
 * of the two sharing its connections. 0 or -1 with err. */
static int listen_all(gw_server *s, int *fds, char *err, size_t errlen)
{
	const gw_config *c = s->c;
	struct sockaddr_storage ss;
	socklen_t sl;
	unsigned i;
	int fd;

	if (listen_addr(c, &ss, &sl, err, errlen) != 0)
		return -1;
	set_port(&ss, c->listen_port);
	if (c->listen_port != 0) {
		fd = listen_on(&ss, sl, false);
		if (fd < 0)
			goto fail;
		close(fd);
	}
	for (i = 0; i < s->n; i++) {
		fds[i] = listen_on(&ss, sl, true);
		if (fds[i] < 0)
			goto fail;
		if (i == 0) {
			struct sockaddr_storage got;
			socklen_t gl = sizeof(got);

			if (getsockname(fds[0], (struct sockaddr *)&got, &gl) != 0)
				goto fail;
			s->port = ntohs(got.ss_family == AF_INET6
					? ((struct sockaddr_in6 *)&got)->sin6_port
					: ((struct sockaddr_in *)&got)->sin_port);
			set_port(&ss, s->port);
		}
	}
	return 0;
fail:
	snprintf(err, errlen, "cannot listen on %s:%u: %s", c->listen_host,
		 c->listen_port, strerror(errno));
	return -1;
}

/* ==== Start and stop ==== */

static void server_free(gw_server *s)
{
	unsigned i;

	for (i = 0; s->w != NULL && i < s->n; i++) {
		gw_worker *w = &s->w[i].w;

		gw_http_stop(w->http);
		gw_coap_stop(w->coap);
		if (w->lane)
			w->store->ops->lane_free(w->lane);
		gw_uplink_free(w->ul);
		gw_tokens_free(w->tokens);
		gw_tokens_free(s->w[i].tok_next);
		gw_loop_free(w->loop);
	}
	free(s->w);
	if (s->fwd_open)
		s->st->ops->fwd_close(s->st);
	for (i = 0; i < IP_BUCKETS; i++) {
		while (s->ips[i] != NULL) {
			ip_count *e = s->ips[i];

			s->ips[i] = e->next;
			free(e);
		}
	}
	pthread_mutex_destroy(&s->ip_mu);
	pthread_mutex_destroy(&s->tok_mu);
	free(s);
}

gw_server *gw_server_start(const gw_config *c, gw_upstream *up,
			   gw_tokens *tokens, char *err, size_t errlen)
{
	return gw_server_start_store(c, up, NULL, tokens, err, errlen);
}

gw_server *gw_server_start_spool(const gw_config *c, gw_upstream *up,
				 gw_spool *sp, gw_tokens *tokens, char *err,
				 size_t errlen)
{
	return gw_server_start_store(c, up, gw_spool_store(sp), tokens, err,
				     errlen);
}

gw_server *gw_server_start_store(const gw_config *c, gw_upstream *up,
				 gw_store *st, gw_tokens *tokens, char *err,
				 size_t errlen)
{
	gw_server *s;
	int *fds = NULL;
	unsigned i;

	if (tokens == NULL && !c->allow_anonymous) {
		snprintf(err, errlen, "no device tokens and --allow-anonymous not given");
		return NULL;
	}
	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->c = c;
	s->up = up;
	s->st = st;
	s->n = c->threads ? c->threads : 1;
	pthread_mutex_init(&s->tok_mu, NULL);
	pthread_mutex_init(&s->ip_mu, NULL);
	s->w = calloc(s->n, sizeof(*s->w));
	fds = malloc(s->n * sizeof(*fds));
	if (s->w == NULL || fds == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	for (i = 0; i < s->n; i++)
		fds[i] = -1;
	if (listen_all(s, fds, err, errlen) != 0)
		goto fail;
	if (st != NULL) {
		if (st->ops->fwd_open(st, s->n, err, errlen) != 0)
			goto fail;
		s->fwd_open = true;
	}
	for (i = 0; i < s->n; i++) {
		gw_worker *w = &s->w[i].w;

		w->s = s;
		w->c = c;
		w->idx = i;
		w->store = st;
		w->loop = gw_loop_new(i, err, errlen);
		if (w->loop == NULL)
			goto fail;
		w->ul = gw_uplink_new(up, w->loop, err, errlen);
		if (w->ul == NULL)
			goto fail;
		if (st != NULL) {
			w->lane = st->ops->lane_new(st, i, w->loop, w->ul, err,
						    errlen);
			if (w->lane == NULL && err[0] != '\0')
				goto fail;
		}
		w->http = gw_http_start(w, fds[i], err, errlen);
		fds[i] = -1; /* taken, also on failure */
		if (w->http == NULL)
			goto fail;
	}
	/* CoAP: one libcoap context, both endpoints, on loop 0 (coap.c says
	 * why one loop) */
	if (c->coap_on || c->coaps_on) {
		gw_worker *w = &s->w[0].w;

		w->coap = gw_coap_start(w, (c->coap_on ? GW_COAP_EP_PLAIN : 0) |
					   (c->coaps_on ? GW_COAP_EP_DTLS : 0),
					&s->coap_port, &s->coaps_port, err, errlen);
		if (w->coap == NULL)
			goto fail;
	}
	for (i = 0; i < s->n; i++) {
		s->w[i].w.tokens = gw_tokens_ref(tokens);
		if (pthread_create(&s->w[i].th, NULL, worker_main, &s->w[i]) != 0) {
			snprintf(err, errlen, "cannot start a loop thread");
			goto fail_threads;
		}
		s->w[i].started = true;
	}
	gw_tokens_free(tokens); /* the loops hold it now */
	free(fds);
	return s;

fail_threads:
	/* the loops' references go with them; the caller keeps its own */
	gw_server_stop(s);
	free(fds);
	return NULL;
fail:
	for (i = 0; fds != NULL && i < s->n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	free(fds);
	server_free(s);
	return NULL;
}

uint16_t gw_server_port(const gw_server *s)
{
	return s ? s->port : 0;
}

uint16_t gw_server_coap_port(const gw_server *s, bool dtls)
{
	return s == NULL ? 0 : dtls ? s->coaps_port : s->coap_port;
}

void gw_server_stop(gw_server *s)
{
	unsigned i;

	if (s == NULL)
		return;
	atomic_store(&s->stopping, true);
	/* no more wake-ups from the store: the lanes stop picking */
	if (s->st != NULL)
		s->st->ops->quiet(s->st);
	for (i = 0; i < s->n; i++)
		if (s->w[i].started)
			gw_loop_post(s->w[i].w.loop, &s->w[i].stop_post, on_stop,
				     &s->w[i]);
	for (i = 0; i < s->n; i++) {
		if (s->w[i].started)
			pthread_join(s->w[i].th, NULL);
		s->w[i].started = false;
	}
	server_free(s);
}
