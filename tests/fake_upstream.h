/* fake_upstream.h - a stand-in for the orq.ai API on 127.0.0.1
 * (libmicrohttpd), for the tests and the `make run` demo. It records every
 * request and can be told to fail. Thread-safe. */
#ifndef FAKE_UPSTREAM_H
#define FAKE_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct fu_request {
	char method[16];
	char path[2048];          /* as received, still percent-encoded */
	char content_type[128];
	char accept[128];
	char authorization[512];
	char *body;               /* heap, NUL-terminated */
	size_t body_len;
	double at;                /* CLOCK_MONOTONIC seconds when received */
} fu_request;

/* What to do with one upcoming request. */
typedef enum fu_action {
	FU_OK = 0,      /* 200 with a session JSON body (wire-format.md 3) */
	FU_STATUS = 1,  /* answer `status` with `body` (and Retry-After) */
	FU_RESET = 2,   /* close the connection without an answer */
	FU_DELAY = 3    /* wait delay_ms, then answer 200 */
} fu_action;

typedef struct fu_step {
	fu_action action;
	int status;              /* FU_STATUS */
	const char *body;        /* FU_STATUS; NULL: {"message":"..."} */
	const char *retry_after; /* FU_STATUS: Retry-After header or NULL */
	long delay_ms;           /* FU_DELAY */
} fu_step;

typedef struct fake_upstream fake_upstream;

/* Listens on 127.0.0.1:port (0: any free port). NULL on failure. */
fake_upstream *fu_start(uint16_t port);
uint16_t fu_port(const fake_upstream *fu);
/* Queues steps for the next requests, in order; once they are used up
 * every request gets FU_OK. */
void fu_script(fake_upstream *fu, const fu_step *steps, size_t n);
/* The same, the steps only for requests whose path contains path (a
 * request takes the first unused step meant for it). */
void fu_script_for(fake_upstream *fu, const char *path, const fu_step *steps,
		   size_t n);
/* Requests received so far (recorded before answering, whatever the step). */
size_t fu_count(fake_upstream *fu);
/* Waits up to wait_s for n requests; the count then. */
size_t fu_wait_count(fake_upstream *fu, size_t n, double wait_s);
/* A copy of request i (free with fu_request_free); 0 if no such request. */
int fu_get(fake_upstream *fu, size_t i, fu_request *out);
void fu_request_free(fu_request *r);
/* Forgets recorded requests and queued steps. */
void fu_clear(fake_upstream *fu);
/* TCP connections accepted so far (connection reuse tests). */
size_t fu_connections(fake_upstream *fu);
/* Writes one line per request to log ("METHOD PATH BODY", control bytes
 * as \xNN; NULL: no log), and with record false keeps no requests in
 * memory (long runs: fu_count stays 0). Defaults: no log, record. */
void fu_set_log(fake_upstream *fu, FILE *log, bool record);
/* Stops and frees. NULL is fine. */
void fu_stop(fake_upstream *fu);

#endif
