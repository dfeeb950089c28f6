/* loop.c - one event loop per thread: epoll, a timer min-heap, posts.
 *
 * gw_loop_run is a short list of phases, as libuv's uv_run:
 *   1. timers   every timer whose due time has come, earliest first
 *   2. posts    work posted to this loop (from other threads through an
 *               eventfd, from its own thread without one)
 *   3. poll     epoll_wait until an fd is ready or the next timer is due
 *   4. io       the callbacks of the ready fds
 * Time is the monotonic clock in milliseconds, read once per iteration
 * (gw_loop_now).
 *
 * Timers live in a binary min-heap of pointers (each timer knows its
 * slot, so stopping one is O(log n)); the heap's top is the poll's
 * timeout. Posts are intrusive (the caller owns the gw_post node), so
 * posting never allocates and never fails. A gw_io stopped inside a
 * callback may still be in this pass's list of ready fds: its memory must
 * outlive the pass (free it from a post). Only the post queue is shared
 * between threads (a mutex, taken once per batch by the loop); everything
 * else belongs to the loop's thread.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "gw.h"

#define EVENTS_MAX 128

struct gw_loop {
	unsigned idx;
	int epfd;
	int64_t now;
	uint64_t order;           /* timers armed so far */
	bool quit;
	/* timers: a min-heap on due */
	gw_timer **heap;
	size_t n_timers, cap_timers;
	/* posts from other threads */
	pthread_mutex_t mu;
	gw_post *in_head, **in_tail;
	bool in_signalled;        /* the eventfd was written, not yet read */
	gw_io wake;               /* the eventfd */
	/* posts from the loop's own thread */
	gw_post *own_head, **own_tail;
};

static __thread gw_loop *current;

int64_t gw_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ==== Timers ==== */

static bool before(const gw_timer *a, const gw_timer *b)
{
	return a->due < b->due || (a->due == b->due && a->order < b->order);
}

static void heap_set(gw_loop *l, size_t i, gw_timer *t)
{
	l->heap[i] = t;
	t->slot = i + 1;
}

static void heap_up(gw_loop *l, size_t i)
{
	gw_timer *t = l->heap[i];

	while (i > 0) {
		size_t p = (i - 1) / 2;

		if (!before(t, l->heap[p]))
			break;
		heap_set(l, i, l->heap[p]);
		i = p;
	}
	heap_set(l, i, t);
}

static void heap_down(gw_loop *l, size_t i)
{
	gw_timer *t = l->heap[i];

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= l->n_timers)
			break;
		if (c + 1 < l->n_timers && before(l->heap[c + 1], l->heap[c]))
			c++;
		if (!before(l->heap[c], t))
			break;
		heap_set(l, i, l->heap[c]);
		i = c;
	}
	heap_set(l, i, t);
}

void gw_timer_init(gw_timer *t, gw_timer_fn cb, void *ud)
{
	memset(t, 0, sizeof(*t));
	t->cb = cb;
	t->ud = ud;
}

bool gw_timer_armed(const gw_timer *t)
{
	return t->slot != 0;
}

void gw_timer_stop(gw_loop *l, gw_timer *t)
{
	size_t i;

	if (t->slot == 0)
		return;
	i = t->slot - 1;
	t->slot = 0;
	if (--l->n_timers == i)
		return;
	heap_set(l, i, l->heap[l->n_timers]);
	if (i > 0 && before(l->heap[i], l->heap[(i - 1) / 2]))
		heap_up(l, i);
	else
		heap_down(l, i);
}

int gw_timer_start(gw_loop *l, gw_timer *t, int64_t after_ms)
{
	gw_timer_stop(l, t);
	if (l->n_timers == l->cap_timers) {
		size_t cap = l->cap_timers ? l->cap_timers * 2 : 64;
		gw_timer **h = realloc(l->heap, cap * sizeof(*h));

		if (h == NULL)
			return -1;
		l->heap = h;
		l->cap_timers = cap;
	}
	t->due = l->now + (after_ms > 0 ? after_ms : 0);
	t->order = ++l->order; /* ties fire in arming order */
	heap_set(l, l->n_timers++, t);
	heap_up(l, l->n_timers - 1);
	return 0;
}

/* Runs the timers that are due. A callback may arm or stop any timer;
 * one armed for now runs on the next pass, not in this one. */
static void run_timers(gw_loop *l)
{
	int64_t now = l->now;

	while (l->n_timers > 0 && l->heap[0]->due <= now) {
		gw_timer *t = l->heap[0];

		gw_timer_stop(l, t);
		t->cb(t->ud);
	}
}

/* ==== Posts ==== */

void gw_loop_post(gw_loop *l, gw_post *p, gw_post_fn fn, void *arg)
{
	bool wake;

	p->fn = fn;
	p->arg = arg;
	p->next = NULL;
	if (current == l) {
		*l->own_tail = p;
		l->own_tail = &p->next;
		return;
	}
	pthread_mutex_lock(&l->mu);
	*l->in_tail = p;
	l->in_tail = &p->next;
	wake = !l->in_signalled;
	l->in_signalled = true;
	pthread_mutex_unlock(&l->mu);
	if (wake) {
		uint64_t one = 1;

		/* a full counter means a wake-up is pending anyway */
		if (write(l->wake.fd, &one, sizeof(one)) < 0)
			(void)0;
	}
}

static void run_list(gw_post *p)
{
	while (p != NULL) {
		gw_post *next = p->next;

		/* the node is the caller's again once its fn runs */
		p->fn(p->arg);
		p = next;
	}
}

/* Posts of the loop's own thread, including those their callbacks make. */
static void run_own(gw_loop *l)
{
	while (l->own_head != NULL) {
		gw_post *p = l->own_head;

		l->own_head = NULL;
		l->own_tail = &l->own_head;
		run_list(p);
	}
}

static void on_wake(void *ud, uint32_t events)
{
	gw_loop *l = ud;
	uint64_t v;
	gw_post *p;

	(void)events;
	if (read(l->wake.fd, &v, sizeof(v)) < 0)
		(void)0; /* EAGAIN: another pass read it */
	pthread_mutex_lock(&l->mu);
	p = l->in_head;
	l->in_head = NULL;
	l->in_tail = &l->in_head;
	l->in_signalled = false;
	pthread_mutex_unlock(&l->mu);
	run_list(p);
}

/* ==== File descriptors ==== */

int gw_io_start(gw_loop *l, gw_io *io, int fd, uint32_t events,
		gw_io_fn cb, void *ud)
{
	struct epoll_event ev;

	io->fd = fd;
	io->events = events;
	io->cb = cb;
	io->ud = ud;
	memset(&ev, 0, sizeof(ev));
	ev.events = events;
	ev.data.ptr = io;
	return epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev);
}

int gw_io_modify(gw_loop *l, gw_io *io, uint32_t events)
{
	struct epoll_event ev;

	if (io->events == events)
		return 0;
	memset(&ev, 0, sizeof(ev));
	ev.events = events;
	ev.data.ptr = io;
	if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, io->fd, &ev) != 0)
		return -1;
	io->events = events;
	return 0;
}

void gw_io_stop(gw_loop *l, gw_io *io)
{
	if (io->fd < 0)
		return;
	epoll_ctl(l->epfd, EPOLL_CTL_DEL, io->fd, NULL);
	io->fd = -1;
}

/* ==== The loop ==== */

gw_loop *gw_loop_new(unsigned idx, char *err, size_t errlen)
{
	gw_loop *l = calloc(1, sizeof(*l));
	int efd;

	if (l == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	l->idx = idx;
	l->in_tail = &l->in_head;
	l->own_tail = &l->own_head;
	l->wake.fd = -1;
	l->now = gw_mono_ms();
	pthread_mutex_init(&l->mu, NULL);
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (l->epfd < 0 || efd < 0 ||
	    gw_io_start(l, &l->wake, efd, EPOLLIN, on_wake, l) != 0) {
		snprintf(err, errlen, "cannot create an event loop: %s",
			 strerror(errno));
		if (efd >= 0)
			close(efd);
		gw_loop_free(l);
		return NULL;
	}
	return l;
}

void gw_loop_free(gw_loop *l)
{
	if (l == NULL)
		return;
	if (l->wake.fd >= 0)
		close(l->wake.fd);
	if (l->epfd >= 0)
		close(l->epfd);
	pthread_mutex_destroy(&l->mu);
	free(l->heap);
	free(l);
}

unsigned gw_loop_index(const gw_loop *l)
{
	return l->idx;
}

gw_loop *gw_loop_current(void)
{
	return current;
}

int64_t gw_loop_now(const gw_loop *l)
{
	return l->now;
}

void gw_loop_quit(gw_loop *l)
{
	l->quit = true;
}

void gw_loop_run(gw_loop *l)
{
	struct epoll_event evs[EVENTS_MAX];

	current = l;
	l->quit = false;
	while (!l->quit) {
		int timeout = -1, n, i;

		l->now = gw_mono_ms();
		run_timers(l);
		run_own(l);
		if (l->quit)
			break;
		if (l->n_timers > 0) {
			int64_t d = l->heap[0]->due - gw_mono_ms();

			timeout = d <= 0 ? 0 : d > 60000 ? 60000 : (int)d;
		}
		n = epoll_wait(l->epfd, evs, EVENTS_MAX, timeout);
		if (n < 0 && errno != EINTR)
			break;
		l->now = gw_mono_ms();
		for (i = 0; i < n; i++) {
			gw_io *io = evs[i].data.ptr;

			/* stopped by an earlier callback of this pass (its
			 * memory lives until the posts below) */
			if (io->fd >= 0)
				io->cb(io->ud, evs[i].events);
		}
		run_own(l);
	}
	current = NULL;
}
