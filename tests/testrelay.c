/* testrelay.c - a lossy UDP relay between one client and a server on
 * 127.0.0.1, on a thread: it loses the data datagrams it is told to (a
 * CoAP message, or a DTLS record of application data), so that tests see
 * a device retransmit over real sockets. Handshake records always pass. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "testutil.h"

struct tu_relay {
	int front, back;          /* the client's side; the server's side */
	uint16_t port;
	uint32_t drop_up, drop_down;
	unsigned n_up, n_down;
	atomic_uint dropped;
	atomic_bool stop;
	struct sockaddr_in client;
	bool have_client;
	pthread_t th;
};

/* A data datagram: CoAP (version 1) or DTLS application data (23). */
static bool is_data(const uint8_t *b, size_t n)
{
	return n > 0 && (b[0] == 23 || (b[0] >> 6) == 1);
}

/* Whether the next data datagram of a direction is to be lost. */
static bool lose(uint32_t mask, unsigned *n, const uint8_t *b, size_t len)
{
	bool drop;

	if (!is_data(b, len))
		return false;
	drop = *n < 32 && (mask >> *n & 1u);
	(*n)++;
	return drop;
}

static void *relay_main(void *arg)
{
	tu_relay *r = arg;
	uint8_t buf[65536];

	while (!atomic_load(&r->stop)) {
		struct pollfd pf[2] = { { r->front, POLLIN, 0 },
					{ r->back, POLLIN, 0 } };
		ssize_t n;

		if (poll(pf, 2, 50) <= 0)
			continue;
		if (pf[0].revents & POLLIN) {
			socklen_t sl = sizeof(r->client);

			n = recvfrom(r->front, buf, sizeof(buf), 0,
				     (struct sockaddr *)&r->client, &sl);
			if (n > 0) {
				r->have_client = true;
				if (lose(r->drop_up, &r->n_up, buf, (size_t)n))
					atomic_fetch_add(&r->dropped, 1);
				else if (send(r->back, buf, (size_t)n, 0) < 0)
					(void)0;
			}
		}
		if (pf[1].revents & POLLIN) {
			n = recv(r->back, buf, sizeof(buf), 0);
			if (n > 0 && r->have_client) {
				if (lose(r->drop_down, &r->n_down, buf, (size_t)n))
					atomic_fetch_add(&r->dropped, 1);
				else if (sendto(r->front, buf, (size_t)n, 0,
						(struct sockaddr *)&r->client,
						sizeof(r->client)) < 0)
					(void)0;
			}
		}
	}
	return NULL;
}

tu_relay *tu_relay_start(uint16_t target, uint32_t drop_up,
			 uint32_t drop_down)
{
	tu_relay *r = calloc(1, sizeof(*r));
	struct sockaddr_in a;
	socklen_t sl = sizeof(a);

	if (r == NULL)
		return NULL;
	r->drop_up = drop_up;
	r->drop_down = drop_down;
	r->front = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	r->back = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (r->front < 0 || r->back < 0 ||
	    bind(r->front, (struct sockaddr *)&a, sizeof(a)) != 0 ||
	    getsockname(r->front, (struct sockaddr *)&a, &sl) != 0)
		goto fail;
	r->port = ntohs(a.sin_port);
	a.sin_port = htons(target);
	if (connect(r->back, (struct sockaddr *)&a, sizeof(a)) != 0 ||
	    pthread_create(&r->th, NULL, relay_main, r) != 0)
		goto fail;
	return r;
fail:
	if (r->front >= 0)
		close(r->front);
	if (r->back >= 0)
		close(r->back);
	free(r);
	return NULL;
}

uint16_t tu_relay_port(const tu_relay *r)
{
	return r->port;
}

unsigned tu_relay_dropped(tu_relay *r)
{
	return atomic_load(&r->dropped);
}

void tu_relay_stop(tu_relay *r)
{
	if (r == NULL)
		return;
	atomic_store(&r->stop, true);
	pthread_join(r->th, NULL);
	close(r->front);
	close(r->back);
	free(r);
}
