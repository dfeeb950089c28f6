/* testutil.h - shared helpers of the CUnit suites. */
#ifndef SW_TESTUTIL_H
#define SW_TESTUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "sessionwire/sessionwire.h"

extern const char *tu_vectors_dir; /* tests/vectors */
extern const char *tu_data_dir;    /* tests/data */
extern const char *tu_bin_dir;     /* build: the programs under test */
extern int tu_quick;               /* smaller loops (valgrind) */

/* tu_bin_dir/name into out (session-codec, session-gateway, ...). */
const char *tu_bin(const char *name, char *out, size_t cap);

/* Reads a whole file; NULL on error. Free with free(). */
char *tu_read_file(const char *path, size_t *len);

/* One line of an SDK vectors file (tests/vectors/NAME.jsonl). */
typedef struct tu_vector {
	char *sdk;        /* the "sdk" member, as JSON text */
	char *wire;       /* the "wire" string, decoded */
	size_t wire_len;
	char *session_id; /* decoded */
	size_t session_id_len;
	char *path;       /* the "path" string */
	int line;
} tu_vector;

/* Loads every line of VECTORS/<name>; returns the count, -1 on error.
 * Free with tu_vectors_free. */
int tu_vectors_load(const char *name, tu_vector **out);
void tu_vectors_free(tu_vector *v, int n);

/* An allocator that fails the Nth allocation (0-based) and counts live
 * blocks, for allocation-failure tests. fail_at < 0: never fail. */
typedef struct tu_failalloc {
	long fail_at;
	long calls;
	long live;
} tu_failalloc;
sw_alloc tu_failalloc_hook(tu_failalloc *fa);

/* Removes path and everything under it (no shell). 0, or -1 with a
 * message on stderr. */
int tu_rmrf(const char *path);

/* In a child right after fork() from the runner's main thread: the child
 * gets SIGKILL when the runner dies (a killed or crashed run leaves no
 * gateway or nats-server behind). parent: getpid() before the fork. */
void tu_child_dies_with_parent(int parent);

/* Lowercase hex of bytes into a malloc'd string. */
char *tu_hex(const uint8_t *p, size_t n);

/* A gateway config for the in-process suites (testgw.c): defaults,
 * 127.0.0.1 on any free port, upstream http://127.0.0.1:<upstream_port>,
 * api_key (borrowed), 4 threads, 1 s connect and 3 s attempt timeouts,
 * 1-5 ms backoff, warnings only. */
struct gw_config;
void tu_gw_config(struct gw_config *c, uint16_t upstream_port, char *api_key);
/* A sample's value in this process's metrics (a "name value" line), -1
 * when there is none. */
double tu_gw_metric(const char *name);

/* ==== The upstream on a loop of its own (testloop.c) ==== */

struct gw_response;
typedef struct tu_up tu_up;
/* gw_upstream_new(c) with a gw_uplink on a loop thread. NULL with err. */
tu_up *tu_up_new(const struct gw_config *c, char *err, size_t errlen);
/* gw_uplink_patch with retries, waited for: 0 when an HTTP answer came
 * back (resp->status), -1 when none did (resp->error). */
int tu_up_patch(tu_up *u, const char *path, const char *json, size_t len,
		struct gw_response *resp);
/* The same without waiting: done(ud, resp) on the loop's thread. */
int tu_up_patch_async(tu_up *u, const char *path, const char *json,
		      size_t len, void (*done)(void *ud, struct gw_response *resp),
		      void *ud);
/* Calls backing off end with their last answer, the rest finish; then
 * everything is freed. NULL is fine. */
void tu_up_free(tu_up *u);

/* ==== One HTTP request (testhttp.c) ==== */

typedef struct tu_http_res {
	long status;               /* 0: no answer */
	char *body;                /* NUL-terminated, heap */
	size_t body_len;
	char content_type[128];
	char retry_after[32];
	char preference_applied[64];
} tu_http_res;

/* method path to 127.0.0.1:port with headers (NULL-terminated, "Name:
 * value") and body; waits at most timeout_s. The status (0: none);
 * free res with tu_http_free. */
long tu_http(unsigned port, const char *method, const char *path,
	     const char *const *headers, const void *body, size_t len,
	     double timeout_s, tu_http_res *res);
void tu_http_free(tu_http_res *res);

/* Seconds on the monotonic clock; a sleep of ms milliseconds. */
double tu_mono(void);
void tu_sleep_ms(long ms);

/* ==== A program under test as a child (testproc.c) ==== */

typedef struct tu_proc {
	pid_t pid;
	int out_fd;      /* the read end of its stdout and stderr */
	char *log;       /* what it wrote so far, NUL-terminated (8 MiB cap) */
	size_t log_len;
	unsigned port;   /* from tu_proc_port */
} tu_proc;

/* Starts tu_bin(name) (name itself when it starts with '/') with args
 * and env (NULL-terminated lists; stdin /dev/null). 0 or -1. p->log is "" from here on: free it with
 * tu_proc_free, also after tu_proc_reap. */
int tu_proc_spawn(tu_proc *p, const char *name, const char *const *args,
		  const char *const *env);
/* Reads what the child wrote, waiting up to wait_s for more. */
void tu_proc_drain(tu_proc *p, double wait_s);
/* Waits up to wait_s for the exit: its status (128 + signal when killed
 * by one), or -1 after a SIGKILL because it did not exit. */
int tu_proc_reap(tu_proc *p, double wait_s);
/* Waits for "listening on 127.0.0.1:PORT"; the port, 0 when none came. */
unsigned tu_proc_port(tu_proc *p, double wait_s);
/* Waits for prefix followed by a number in its output ("coap listening
 * on udp 127.0.0.1:"); the number, 0 when none came. */
unsigned tu_proc_port_of(tu_proc *p, const char *prefix, double wait_s);

/* ==== A lossy UDP relay (testrelay.c) ==== */

typedef struct tu_relay tu_relay;
/* Relays datagrams between one client (who sends to tu_relay_port) and
 * 127.0.0.1:target on a thread. Data datagrams (CoAP, or DTLS
 * application data) are numbered from 0 per direction; bit i of drop_up
 * / drop_down drops the i-th. NULL on failure. */
tu_relay *tu_relay_start(uint16_t target, uint32_t drop_up,
			 uint32_t drop_down);
uint16_t tu_relay_port(const tu_relay *r);
/* Datagrams dropped so far. */
unsigned tu_relay_dropped(tu_relay *r);
void tu_relay_stop(tu_relay *r);
void tu_proc_free(tu_proc *p);

/* ==== nats-server clusters on loopback (testnats.c) ==== */

typedef struct tu_nats tu_nats;
/* n nodes (one, or a cluster of n) on free loopback ports, configs, data
 * and logs under dir; waits (30 s at most) until JetStream answers. NULL
 * on failure. */
tu_nats *tu_nats_start(int n, const char *dir);
/* "nats://127.0.0.1:P1,nats://...", and node i's URL. */
const char *tu_nats_urls(const tu_nats *c);
const char *tu_nats_url(const tu_nats *c, int i);
int tu_nats_nodes(const tu_nats *c);
bool tu_nats_running(const tu_nats *c, int i);
/* Node i: SIGKILL (or sig) and reaped; started again on its ports and
 * data (0 or -1). */
void tu_nats_kill(tu_nats *c, int i);
void tu_nats_signal(tu_nats *c, int i, int sig);
int tu_nats_restart(tu_nats *c, int i);
/* sig to every running node at once, then each reaped. */
void tu_nats_signal_all(tu_nats *c, int sig);
/* Waits until JetStream answers on the running nodes. 0 or -1. */
int tu_nats_wait_ready(tu_nats *c, double wait_s);
/* The node leading stream (a running one), or -1 after wait_s. */
int tu_nats_leader(tu_nats *c, const char *stream, double wait_s);
/* fn(jsCtx *, ud) on a fresh connection: its result, -1 without one. */
int tu_nats_exec(tu_nats *c, int (*fn)(void *js, void *ud), void *ud);
/* SIGTERM to every node, waited for (10 s, then SIGKILL); frees c. */
void tu_nats_stop(tu_nats *c);

/* init_<name>_tests() of every tests/test_<name>.c (list generated by
 * the Makefile). */
#define SW_TEST_SUITE(name) int init_##name##_tests(void);
#include "test_list.h"
#undef SW_TEST_SUITE

#endif
