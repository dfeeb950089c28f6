/* deadline.c - cuts connections that take too long to send a request.
 *
 * libmicrohttpd's connection timeout is an idle timeout: a client that
 * sends one byte every few seconds (slowloris: the head; or the body)
 * keeps its connection, its memory and a connection slot for as long as
 * it likes. Here every connection has a clock, started when it opens and
 * again after each answer; when a request has not been read in full
 * within --request-timeout seconds, a sweeper thread shuts the socket
 * down (shutdown(2), not close: libmicrohttpd sees the end of the stream
 * on its next read and closes the connection itself, running its usual
 * clean-up). While the gateway works on a request that has arrived (an
 * update with the upstream or the spool) the clock does not run.
 *
 * The server registers connections from libmicrohttpd's connection
 * notifications; a connection is removed, under the lock the sweeper
 * holds while it shuts sockets down, before libmicrohttpd closes its
 * socket, so the sweeper never touches a descriptor that was reused.
 */
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>

#include "gw.h"

#define SWEEP_MS 250

struct gw_conn_clock {
	gw_conn_clock *prev, *next;
	int fd;
	double since;   /* when the current request's clock started */
	bool busy;      /* a request is read in full and being worked on */
	bool cut;
};

struct gw_deadline {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_t thread;
	bool stop;
	double limit_s;
	gw_conn_clock head;  /* sentinel of a circular list */
};

static double mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Shuts down every socket whose request is overdue; how many. Locked. */
static unsigned sweep(gw_deadline *d, double now)
{
	gw_conn_clock *c;
	unsigned n = 0;

	for (c = d->head.next; c != &d->head; c = c->next) {
		if (c->busy || c->cut || now - c->since < d->limit_s)
			continue;
		shutdown(c->fd, SHUT_RDWR);
		c->cut = true;
		n++;
	}
	return n;
}

static void *sweeper(void *arg)
{
	gw_deadline *d = arg;
	struct timespec until;
	unsigned n, i;

	pthread_mutex_lock(&d->mu);
	while (!d->stop) {
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_nsec += SWEEP_MS * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&d->cv, &d->mu, &until);
		if (d->stop)
			break;
		n = sweep(d, mono_s());
		if (n == 0)
			continue;
		pthread_mutex_unlock(&d->mu);
		for (i = 0; i < n; i++)
			gw_metrics_reject("slow_client");
		gw_log(GW_LOG_WARN,
		       n == 1 ? "cut a connection that sent no complete request within --request-timeout"
			      : "cut connections that sent no complete request within --request-timeout",
		       NULL);
		pthread_mutex_lock(&d->mu);
	}
	pthread_mutex_unlock(&d->mu);
	return NULL;
}

gw_deadline *gw_deadline_start(unsigned limit_s)
{
	gw_deadline *d;
	pthread_condattr_t ca;

	if (limit_s == 0)
		return NULL;
	d = calloc(1, sizeof(*d));
	if (d == NULL)
		return NULL;
	d->limit_s = limit_s;
	d->head.next = d->head.prev = &d->head;
	pthread_mutex_init(&d->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&d->cv, &ca);
	pthread_condattr_destroy(&ca);
	if (pthread_create(&d->thread, NULL, sweeper, d) != 0) {
		pthread_cond_destroy(&d->cv);
		pthread_mutex_destroy(&d->mu);
		free(d);
		return NULL;
	}
	return d;
}

void gw_deadline_stop(gw_deadline *d)
{
	gw_conn_clock *c, *next;

	if (d == NULL)
		return;
	pthread_mutex_lock(&d->mu);
	d->stop = true;
	pthread_cond_signal(&d->cv);
	pthread_mutex_unlock(&d->mu);
	pthread_join(d->thread, NULL);
	for (c = d->head.next; c != &d->head; c = next) {
		next = c->next;
		free(c);
	}
	pthread_cond_destroy(&d->cv);
	pthread_mutex_destroy(&d->mu);
	free(d);
}

gw_conn_clock *gw_deadline_open(gw_deadline *d, int fd)
{
	gw_conn_clock *c;

	if (d == NULL)
		return NULL;
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL; /* this connection goes without a deadline */
	c->fd = fd;
	c->since = mono_s();
	pthread_mutex_lock(&d->mu);
	c->next = &d->head;
	c->prev = d->head.prev;
	d->head.prev->next = c;
	d->head.prev = c;
	pthread_mutex_unlock(&d->mu);
	return c;
}

void gw_deadline_close(gw_deadline *d, gw_conn_clock *c)
{
	if (d == NULL || c == NULL)
		return;
	pthread_mutex_lock(&d->mu);
	c->prev->next = c->next;
	c->next->prev = c->prev;
	pthread_mutex_unlock(&d->mu);
	free(c);
}

bool gw_deadline_busy(gw_deadline *d, gw_conn_clock *c, bool busy)
{
	bool cut;

	if (d == NULL || c == NULL)
		return true;
	pthread_mutex_lock(&d->mu);
	cut = c->cut;
	c->busy = busy;
	if (!busy)
		c->since = mono_s();
	pthread_mutex_unlock(&d->mu);
	return !cut;
}
