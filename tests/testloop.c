/* testloop.c - an event loop with an upstream link on a thread of its
 * own, for the suites that test upstream.c without a server: calls are
 * posted to the loop from the test's thread; tu_up_patch waits for the
 * answer, tu_up_patch_async's done runs on the loop's thread. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "gw.h"
#include "testutil.h"

struct tu_up {
	gw_upstream *up;
	gw_loop *loop;
	gw_uplink *ul;
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int calls;               /* posted, not yet answered */
	gw_post stop_post;
	gw_timer stop_timer;
};

/* One call on its way to the loop. */
typedef struct tu_call {
	tu_up *u;
	gw_post post;
	const char *path, *json;
	size_t len;
	gw_upstream_done_fn done;
	void *ud;
	/* tu_up_patch: the answer, and whether it came */
	gw_response *out;
	bool answered;
} tu_call;

static void *run(void *arg)
{
	tu_up *u = arg;

	gw_loop_run(u->loop);
	gw_uplink_free(u->ul);
	u->ul = NULL;
	return NULL;
}

tu_up *tu_up_new(const gw_config *c, char *err, size_t errlen)
{
	tu_up *u = calloc(1, sizeof(*u));

	if (u == NULL)
		return NULL;
	pthread_mutex_init(&u->mu, NULL);
	pthread_cond_init(&u->cv, NULL);
	u->up = gw_upstream_new(c, err, errlen);
	if (u->up != NULL)
		u->loop = gw_loop_new(0, err, errlen);
	if (u->loop != NULL)
		u->ul = gw_uplink_new(u->up, u->loop, err, errlen);
	if (u->ul == NULL || pthread_create(&u->th, NULL, run, u) != 0) {
		gw_uplink_free(u->ul);
		gw_loop_free(u->loop);
		gw_upstream_free(u->up);
		pthread_cond_destroy(&u->cv);
		pthread_mutex_destroy(&u->mu);
		free(u);
		return NULL;
	}
	return u;
}

static void call_done(void *ud, gw_response *resp)
{
	tu_call *k = ud;
	tu_up *u = k->u;

	if (k->done != NULL) {
		k->done(k->ud, resp);
		free(k);
	} else {
		pthread_mutex_lock(&u->mu);
		*k->out = *resp;
		k->answered = true;
		pthread_mutex_unlock(&u->mu);
	}
	pthread_mutex_lock(&u->mu);
	u->calls--;
	pthread_cond_broadcast(&u->cv);
	pthread_mutex_unlock(&u->mu);
}

static void call_start(void *arg)
{
	tu_call *k = arg;
	gw_response none;

	if (gw_uplink_patch(k->u->ul, k->path, k->json, k->len, true,
			    call_done, k) == 0)
		return;
	memset(&none, 0, sizeof(none));
	none.curl_code = GW_CURL_NOT_STARTED;
	none.retry_after_ms = -1;
	snprintf(none.error, sizeof(none.error), "not started");
	call_done(k, &none);
}

static void post_call(tu_up *u, tu_call *k)
{
	pthread_mutex_lock(&u->mu);
	u->calls++;
	pthread_mutex_unlock(&u->mu);
	gw_loop_post(u->loop, &k->post, call_start, k);
}

int tu_up_patch(tu_up *u, const char *path, const char *json, size_t len,
		gw_response *resp)
{
	tu_call k;

	memset(&k, 0, sizeof(k));
	memset(resp, 0, sizeof(*resp));
	k.u = u;
	k.path = path;
	k.json = json;
	k.len = len;
	k.out = resp;
	post_call(u, &k);
	pthread_mutex_lock(&u->mu);
	while (!k.answered)
		pthread_cond_wait(&u->cv, &u->mu);
	pthread_mutex_unlock(&u->mu);
	return resp->status != 0 ? 0 : -1;
}

int tu_up_patch_async(tu_up *u, const char *path, const char *json,
		      size_t len, gw_upstream_done_fn done, void *ud)
{
	tu_call *k = calloc(1, sizeof(*k));

	if (k == NULL || done == NULL) {
		free(k);
		return -1;
	}
	k->u = u;
	k->path = path;
	k->json = json;
	k->len = len;
	k->done = done;
	k->ud = ud;
	post_call(u, k);
	return 0;
}

/* On the loop: calls backing off end now; the loop ends once none is
 * left at the upstream. */
static void stop_check(void *arg)
{
	tu_up *u = arg;

	gw_uplink_hurry(u->ul);
	if (gw_uplink_busy(u->ul) > 0) {
		gw_timer_start(u->loop, &u->stop_timer, 2);
		return;
	}
	gw_loop_quit(u->loop);
}

void tu_up_free(tu_up *u)
{
	if (u == NULL)
		return;
	/* posted after every call: those start first */
	gw_timer_init(&u->stop_timer, stop_check, u);
	gw_loop_post(u->loop, &u->stop_post, stop_check, u);
	pthread_join(u->th, NULL);
	gw_loop_free(u->loop);
	gw_upstream_free(u->up);
	pthread_cond_destroy(&u->cv);
	pthread_mutex_destroy(&u->mu);
	free(u);
}
