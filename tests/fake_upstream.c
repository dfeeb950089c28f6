/* fake_upstream.c - a stand-in for the orq.ai API on 127.0.0.1, built on
 * libmicrohttpd (one thread per connection, so a delayed answer holds up
 * nobody else). Every request is recorded before it is answered; the
 * answer follows the script, then FU_OK.
 */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "fake_upstream.h"
#include "sessionwire/sessionwire.h"

#define FU_BODY_MAX ((size_t)16 << 20)

typedef struct fu_owned_step {
	fu_step step;
	char *body;
	char *retry_after;
	char *path;
	bool used;
} fu_owned_step;

struct fake_upstream {
	struct MHD_Daemon *d;
	uint16_t port;
	pthread_mutex_t mu;
	fu_request *reqs;
	size_t n_reqs, cap_reqs;
	fu_owned_step *steps;
	size_t n_steps, cap_steps, next_step;
	size_t connections;
	FILE *log;
	bool record;
	volatile int stopping;
};

/* What one request collects while its body arrives. */
typedef struct fu_conn_req {
	char *body;
	size_t len;
	bool too_big;
} fu_conn_req;

/* ==== Helpers ==== */

static double mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void copy_str(char *out, size_t cap, const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (n >= cap)
		n = cap - 1;
	if (n)
		memcpy(out, s, n);
	out[n] = '\0';
}

static char *dup_str(const char *s)
{
	return s ? strdup(s) : NULL;
}

/* Writes s[0..n) with control bytes, DEL and backslash as \xNN. */
static void log_bytes(FILE *f, const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c == 0x7f || c == '\\')
			fprintf(f, "\\x%02x", c);
		else
			putc(c, f);
	}
}

/* ==== The answer ==== */

static enum MHD_Result send_answer(struct MHD_Connection *conn, int status,
				   const char *body, size_t len,
				   const char *retry_after)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	r = MHD_create_response_from_buffer(len, (void *)(uintptr_t)body,
					    MHD_RESPMEM_MUST_COPY);
	if (r == NULL)
		return MHD_NO;
	MHD_add_response_header(r, "Content-Type", "application/json");
	if (retry_after)
		MHD_add_response_header(r, "Retry-After", retry_after);
	ret = MHD_queue_response(conn, (unsigned)status, r);
	MHD_destroy_response(r);
	return ret;
}

/* The session of docs/wire-format.md section 3: the update merged over
 * defaults for every required field, `_id` the decoded id of the path. */
static enum MHD_Result answer_session(struct MHD_Connection *conn,
				      const char *path, const char *body,
				      size_t len)
{
	static const char prefix[] = SW_SESSION_PATH_PREFIX;
	sw_update *parsed = NULL, u;
	sw_buf id, out;
	enum MHD_Result ret;
	const char *seg = "";

	sw_buf_init(&id, 0, NULL);
	sw_buf_init(&out, 0, NULL);
	if (strncmp(path, prefix, sizeof(prefix) - 1) == 0)
		seg = path + sizeof(prefix) - 1;
	if (sw_uri_decode(seg, strlen(seg), &id, NULL) != SW_OK ||
	    id.len == 0) {
		sw_buf_reset(&id);
		if (sw_buf_append(&id, "unknown", 7) != SW_OK)
			goto fail;
	}
	if (len && sw_json_parse(body, len, NULL, &parsed, NULL) == SW_OK)
		u = *parsed;
	else
		sw_update_init(&u);
	sw_update_set_id(&u, id.data, id.len);
	if (!(u.has & SW_F_EXTERNAL_ID))
		sw_update_set_external_id(&u, "", 0);
	if (!(u.has & SW_F_DURATION))
		sw_update_set_duration(&u, 0);
	if (!(u.has & SW_F_CONTACT_IDS))
		sw_update_set_contact_ids(&u, NULL, 0);
	if (!(u.has & SW_F_BILLING))
		sw_update_set_billing(&u, 0, 0, 0);
	if (!(u.has & SW_F_USAGE))
		sw_update_set_usage(&u, 0, 0, 0);
	if (!(u.has & SW_F_TRACES_COUNT))
		sw_update_set_traces_count(&u, 0);
	if (!(u.has & SW_F_TAGS))
		sw_update_set_tags(&u, NULL, 0);
	if (!(u.has & SW_F_WORKSPACE_ID))
		sw_update_set_workspace_id(&u, "fake-workspace", 14);
	if (sw_json_write(&u, NULL, &out, NULL) != SW_OK)
		goto fail;
	ret = send_answer(conn, 200, out.data, out.len, NULL);
	sw_update_free(parsed);
	sw_buf_free(&id);
	sw_buf_free(&out);
	return ret;
fail:
	sw_update_free(parsed);
	sw_buf_free(&id);
	sw_buf_free(&out);
	return MHD_NO;
}

/* ==== The request handler ==== */

static size_t no_unescape(void *cls, struct MHD_Connection *c, char *s)
{
	(void)cls;
	(void)c;
	return strlen(s);
}

static void on_connection(void *cls, struct MHD_Connection *c, void **sock,
			  enum MHD_ConnectionNotificationCode toe)
{
	fake_upstream *fu = cls;

	(void)c;
	(void)sock;
	if (toe != MHD_CONNECTION_NOTIFY_STARTED)
		return;
	pthread_mutex_lock(&fu->mu);
	fu->connections++;
	pthread_mutex_unlock(&fu->mu);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	fu_conn_req *cr = *con_cls;

	(void)cls;
	(void)c;
	(void)toe;
	if (cr) {
		free(cr->body);
		free(cr);
		*con_cls = NULL;
	}
}

/* Records the request and takes the next step: a copy whose strings are
 * the caller's to free (fu_clear may run while it is answered). */
static fu_step record(fake_upstream *fu, struct MHD_Connection *conn,
		      const char *method, const char *url, fu_conn_req *cr)
{
	fu_step step = { FU_OK, 200, NULL, NULL, 0 };
	fu_request r;
	size_t i;

	memset(&r, 0, sizeof(r));
	copy_str(r.method, sizeof(r.method), method);
	copy_str(r.path, sizeof(r.path), url);
	copy_str(r.content_type, sizeof(r.content_type),
		 MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
					     "Content-Type"));
	copy_str(r.accept, sizeof(r.accept),
		 MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Accept"));
	copy_str(r.authorization, sizeof(r.authorization),
		 MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
					     "Authorization"));
	r.at = mono_s();

	pthread_mutex_lock(&fu->mu);
	if (fu->log) {
		fprintf(fu->log, "%s ", r.method);
		log_bytes(fu->log, url, strlen(url));
		putc(' ', fu->log);
		log_bytes(fu->log, cr->body ? cr->body : "", cr->len);
		putc('\n', fu->log);
		fflush(fu->log);
	}
	if (fu->record) {
		if (fu->n_reqs == fu->cap_reqs) {
			size_t cap = fu->cap_reqs ? fu->cap_reqs * 2 : 16;
			fu_request *nr = realloc(fu->reqs, cap * sizeof(*nr));

			if (nr) {
				fu->reqs = nr;
				fu->cap_reqs = cap;
			}
		}
		if (fu->n_reqs < fu->cap_reqs) {
			r.body = malloc(cr->len + 1);
			if (r.body) {
				if (cr->len)
					memcpy(r.body, cr->body, cr->len);
				r.body[cr->len] = '\0';
				r.body_len = cr->len;
			}
			fu->reqs[fu->n_reqs++] = r;
		}
	}
	for (i = fu->next_step; i < fu->n_steps; i++) {
		fu_owned_step *o = &fu->steps[i];

		if (o->used || (o->path && !strstr(url, o->path)))
			continue;
		o->used = true;
		step = o->step;
		step.body = dup_str(step.body);
		step.retry_after = dup_str(step.retry_after);
		break;
	}
	while (fu->next_step < fu->n_steps && fu->steps[fu->next_step].used)
		fu->next_step++;
	pthread_mutex_unlock(&fu->mu);
	return step;
}

/* Sleeps ms, waking early when the fake is being stopped. */
static void fu_sleep(fake_upstream *fu, long ms)
{
	double until = mono_s() + (double)ms / 1000.0;

	while (!fu->stopping && mono_s() < until) {
		struct timespec ts = { 0, 5 * 1000 * 1000 };

		nanosleep(&ts, NULL);
	}
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn,
				  const char *url, const char *method,
				  const char *version, const char *upload,
				  size_t *upload_size, void **con_cls)
{
	fake_upstream *fu = cls;
	fu_conn_req *cr = *con_cls;
	fu_step step;

	(void)version;
	if (cr == NULL) {
		cr = calloc(1, sizeof(*cr));
		if (cr == NULL)
			return MHD_NO;
		*con_cls = cr;
		return MHD_YES;
	}
	if (*upload_size) {
		size_t n = *upload_size;

		if (!cr->too_big && n <= FU_BODY_MAX - cr->len) {
			char *nb = realloc(cr->body, cr->len + n + 1);

			if (nb == NULL)
				return MHD_NO;
			memcpy(nb + cr->len, upload, n);
			cr->len += n;
			nb[cr->len] = '\0';
			cr->body = nb;
		} else {
			cr->too_big = true;
		}
		*upload_size = 0;
		return MHD_YES;
	}
	if (cr->too_big) {
		static const char msg[] = "{\"message\":\"fake upstream: body too big\"}";

		return send_answer(conn, 413, msg, sizeof(msg) - 1, NULL);
	}

	step = record(fu, conn, method, url, cr);
	if (step.action != FU_STATUS) {
		free((void *)(uintptr_t)step.body);
		free((void *)(uintptr_t)step.retry_after);
	}
	switch (step.action) {
	case FU_STATUS: {
		char def[96];
		const char *b = step.body;
		enum MHD_Result ret;

		if (b == NULL) {
			snprintf(def, sizeof(def),
				 "{\"message\":\"fake upstream: status %d\"}",
				 step.status);
			b = def;
		}
		ret = send_answer(conn, step.status, b, strlen(b),
				  step.retry_after);
		free((void *)(uintptr_t)step.body);
		free((void *)(uintptr_t)step.retry_after);
		return ret;
	}
	case FU_RESET:
		return MHD_NO;
	case FU_DELAY:
		fu_sleep(fu, step.delay_ms);
		break;
	case FU_OK:
		break;
	}
	return answer_session(conn, url, cr->body ? cr->body : "", cr->len);
}

/* ==== Public API ==== */

fake_upstream *fu_start(uint16_t port)
{
	fake_upstream *fu = calloc(1, sizeof(*fu));
	struct sockaddr_in sa;
	const union MHD_DaemonInfo *info;

	if (fu == NULL)
		return NULL;
	pthread_mutex_init(&fu->mu, NULL);
	fu->record = true;
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons(port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fu->d = MHD_start_daemon(
		MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION,
		port, NULL, NULL, on_request, fu,
		MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
		MHD_OPTION_UNESCAPE_CALLBACK, no_unescape, NULL,
		MHD_OPTION_NOTIFY_CONNECTION, on_connection, fu,
		MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
		MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)60,
		MHD_OPTION_END);
	if (fu->d == NULL)
		goto fail;
	info = MHD_get_daemon_info(fu->d, MHD_DAEMON_INFO_BIND_PORT);
	if (info == NULL || info->port == 0)
		goto fail;
	fu->port = info->port;
	return fu;
fail:
	fu_stop(fu);
	return NULL;
}

uint16_t fu_port(const fake_upstream *fu)
{
	return fu->port;
}

void fu_script(fake_upstream *fu, const fu_step *steps, size_t n)
{
	fu_script_for(fu, NULL, steps, n);
}

void fu_script_for(fake_upstream *fu, const char *path, const fu_step *steps,
		   size_t n)
{
	size_t i;

	pthread_mutex_lock(&fu->mu);
	for (i = 0; i < n; i++) {
		fu_owned_step *s;

		if (fu->n_steps == fu->cap_steps) {
			size_t cap = fu->cap_steps ? fu->cap_steps * 2 : 16;
			fu_owned_step *ns = realloc(fu->steps, cap * sizeof(*ns));

			if (ns == NULL)
				break;
			fu->steps = ns;
			fu->cap_steps = cap;
		}
		s = &fu->steps[fu->n_steps++];
		s->step = steps[i];
		s->body = dup_str(steps[i].body);
		s->retry_after = dup_str(steps[i].retry_after);
		s->path = dup_str(path);
		s->used = false;
		s->step.body = s->body;
		s->step.retry_after = s->retry_after;
	}
	pthread_mutex_unlock(&fu->mu);
}

size_t fu_count(fake_upstream *fu)
{
	size_t n;

	pthread_mutex_lock(&fu->mu);
	n = fu->n_reqs;
	pthread_mutex_unlock(&fu->mu);
	return n;
}

size_t fu_wait_count(fake_upstream *fu, size_t n, double wait_s)
{
	double end = mono_s() + wait_s;
	struct timespec ts = { 0, 2 * 1000 * 1000 };

	while (fu_count(fu) < n && mono_s() < end)
		nanosleep(&ts, NULL);
	return fu_count(fu);
}

size_t fu_connections(fake_upstream *fu)
{
	size_t n;

	pthread_mutex_lock(&fu->mu);
	n = fu->connections;
	pthread_mutex_unlock(&fu->mu);
	return n;
}

int fu_get(fake_upstream *fu, size_t i, fu_request *out)
{
	int ok = 0;

	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&fu->mu);
	if (i < fu->n_reqs) {
		const fu_request *r = &fu->reqs[i];

		*out = *r;
		out->body = malloc(r->body_len + 1);
		if (out->body) {
			if (r->body_len)
				memcpy(out->body, r->body, r->body_len);
			out->body[r->body_len] = '\0';
			ok = 1;
		} else {
			out->body_len = 0;
		}
	}
	pthread_mutex_unlock(&fu->mu);
	return ok;
}

void fu_request_free(fu_request *r)
{
	if (r == NULL)
		return;
	free(r->body);
	r->body = NULL;
	r->body_len = 0;
}

/* Frees recorded requests and steps. Under fu->mu. */
static void forget(fake_upstream *fu)
{
	size_t i;

	for (i = 0; i < fu->n_reqs; i++)
		free(fu->reqs[i].body);
	fu->n_reqs = 0;
	for (i = 0; i < fu->n_steps; i++) {
		free(fu->steps[i].body);
		free(fu->steps[i].retry_after);
		free(fu->steps[i].path);
	}
	fu->n_steps = 0;
	fu->next_step = 0;
}

/* Steps already taken by a request in flight may still be borrowed: the
 * caller clears between tests, when nothing is in flight. */
void fu_clear(fake_upstream *fu)
{
	pthread_mutex_lock(&fu->mu);
	forget(fu);
	pthread_mutex_unlock(&fu->mu);
}

void fu_set_log(fake_upstream *fu, FILE *log, bool record)
{
	pthread_mutex_lock(&fu->mu);
	fu->log = log;
	fu->record = record;
	pthread_mutex_unlock(&fu->mu);
}

void fu_stop(fake_upstream *fu)
{
	if (fu == NULL)
		return;
	fu->stopping = 1;
	if (fu->d)
		MHD_stop_daemon(fu->d);
	forget(fu);
	free(fu->reqs);
	free(fu->steps);
	pthread_mutex_destroy(&fu->mu);
	free(fu);
}
