/* test_hostile.c - the gateway in-process (gw_server_start on 127.0.0.1,
 * port 0) in front of the fake upstream, attacked over raw TCP sockets
 * (bytes written by hand, reads bounded by deadlines) and libcurl: lying
 * Content-Length, endless chunked bodies, header floods, slowloris,
 * garbage request lines, path tricks, wrong methods and content types,
 * mutated protobuf, malformed JSON and hostile batch items.
 *
 * For each case: the status libmicrohttpd or the gateway really gives
 * (asserted), a message naming the problem where the gateway answers,
 * never a 5xx for a client's mistake, nothing forwarded upstream for
 * invalid input, and a valid request still served afterwards. */
#define _GNU_SOURCE
#include <CUnit/CUnit.h>
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "fake_upstream.h"
#include "gw.h"
#include "testutil.h"

#define TOKEN "tok-hostile-5d1e0c7a92"
#define AUTH "Authorization: Bearer " TOKEN "\r\n"
#define MAX_BODY 8192u
#define CLIENT_TIMEOUT_S 2u
#define REQUEST_TIMEOUT_S 4u
#define RESP_MAX (256u << 10)

static char org_key[] = "sk-org-hostile-0b7c1f";
static fake_upstream *fu;
static gw_config cfg;
static gw_upstream *up;
static gw_server *srv;
static char tokens_path[256];
static uint8_t *valid_pb;   /* a rich valid update as protobuf */
static size_t valid_pb_len;

/* ==== Raw HTTP over TCP ==== */

typedef struct raw_resp {
	int status;        /* 0: no status line came back */
	bool closed;       /* the gateway closed (EOF or reset) */
	char *data;        /* everything read, NUL-terminated */
	size_t len;
	const char *body;  /* into data, after the blank line */
	size_t body_len;
} raw_resp;

static void raw_free(raw_resp *r)
{
	free(r->data);
	memset(r, 0, sizeof(*r));
}

/* A non-blocking TCP socket connected to the gateway, or -1. */
static int raw_connect(void)
{
	struct sockaddr_in a;
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

	if (fd < 0)
		return -1;
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons(gw_server_port(srv));
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
		close(fd);
		return -1;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	return fd;
}

/* Writes p[0..n) before the deadline. 0, or -1 when the peer cut the
 * connection (or the deadline passed: *timed_out set if given). */
static int send_all(int fd, const void *p, size_t n, double deadline,
		    bool *timed_out)
{
	const char *c = p;

	while (n > 0) {
		struct pollfd pf = { fd, POLLOUT, 0 };
		double left = deadline - tu_mono();
		ssize_t k;

		if (left <= 0) {
			if (timed_out)
				*timed_out = true;
			return -1;
		}
		if (poll(&pf, 1, (int)(left * 1000) + 1) <= 0)
			continue;
		k = send(fd, c, n, MSG_NOSIGNAL);
		if (k < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			return -1;
		}
		c += k;
		n -= (size_t)k;
	}
	return 0;
}

/* The response is complete: headers and Content-Length bytes of body. */
static bool resp_complete(raw_resp *r)
{
	const char *end = strstr(r->data, "\r\n\r\n"), *cl;
	size_t have, want;

	if (end == NULL)
		return false;
	r->body = end + 4;
	have = r->len - (size_t)(r->body - r->data);
	r->body_len = have;
	cl = strcasestr(r->data, "\r\nContent-Length:");
	if (cl == NULL || cl > end)
		return false; /* read until close */
	want = strtoul(cl + 17, NULL, 10);
	if (have < want)
		return false;
	r->body_len = want;
	return true;
}

/* Reads one response (or up to EOF) before the deadline. */
static void read_resp(int fd, double deadline, raw_resp *r)
{
	memset(r, 0, sizeof(*r));
	r->data = calloc(1, RESP_MAX + 1);
	if (r->data == NULL)
		return;
	while (r->len < RESP_MAX) {
		struct pollfd pf = { fd, POLLIN, 0 };
		double left = deadline - tu_mono();
		ssize_t k;

		if (left <= 0)
			break;
		if (poll(&pf, 1, (int)(left * 1000) + 1) <= 0)
			continue;
		k = recv(fd, r->data + r->len, RESP_MAX - r->len, 0);
		if (k < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (k <= 0) {
			r->closed = true;
			break;
		}
		r->len += (size_t)k;
		r->data[r->len] = '\0';
		if (resp_complete(r))
			break;
	}
	resp_complete(r);
	if (r->len > 12 && strncmp(r->data, "HTTP/1.", 7) == 0)
		r->status = atoi(r->data + 9);
}

/* Sends req[0..len) on a new connection and reads one answer within
 * timeout_s. Returns the status (0 when none came). */
static int raw_exchange(const void *req, size_t len, double timeout_s,
			raw_resp *r)
{
	double deadline = tu_mono() + timeout_s;
	int fd = raw_connect();

	memset(r, 0, sizeof(*r));
	if (fd < 0)
		return 0;
	if (send_all(fd, req, len, deadline, NULL) != 0) {
		/* cut while sending: the answer may still be readable */
	}
	read_resp(fd, deadline, r);
	close(fd);
	return r->status;
}

/* A PATCH request text with the given path, headers (each ending in
 * \r\n) and body, into a malloc'd buffer. */
static char *build(const char *method, const char *path, const char *hdrs,
		   const void *body, size_t blen, size_t *len)
{
	size_t cap = strlen(method) + strlen(path) + strlen(hdrs) + blen + 200;
	char *b = malloc(cap);
	int n;

	if (b == NULL)
		return NULL;
	n = snprintf(b, cap, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s"
		     "Content-Length: %zu\r\n\r\n", method, path, hdrs, blen);
	memcpy(b + n, body, blen);
	*len = (size_t)n + blen;
	return b;
}

/* PATCH path with a JSON body and the device token. Returns the status. */
static int raw_patch(const char *path, const char *ctype, const void *body,
		     size_t blen, raw_resp *r)
{
	char hdrs[512];
	size_t len;
	char *req;
	int st;

	snprintf(hdrs, sizeof(hdrs), AUTH "Content-Type: %s\r\n", ctype);
	req = build("PATCH", path, hdrs, body, blen, &len);
	st = raw_exchange(req, len, 10.0, r);
	free(req);
	return st;
}

/* The gateway answered with a JSON error body carrying code and text. */
static bool error_says(const raw_resp *r, const char *code, const char *text)
{
	char want[96];

	if (r->body == NULL)
		return false;
	snprintf(want, sizeof(want), "\"code\":\"%s\"", code);
	if (strstr(r->body, want) == NULL || strstr(r->body, "\"message\":\"") == NULL)
		return false;
	return text == NULL || strstr(r->body, text) != NULL;
}

/* A valid update is still served and forwarded (the gateway keeps
 * serving after whatever came before). */
static bool still_serves(void)
{
	static const char body[] = "{\"duration\":1}";
	size_t before = fu_count(fu);
	raw_resp r;
	int st = raw_patch("/v2/traces/sessions/still-ok", "application/json",
			   body, sizeof(body) - 1, &r);
	bool ok = st == 200 && fu_count(fu) == before + 1;

	if (!ok)
		fprintf(stderr, "\nvalid request after a hostile one: %d %.200s\n",
			st, r.data ? r.data : "");
	raw_free(&r);
	return ok;
}

/* ==== Fixtures ==== */

static long rss_kib(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long v = -1;

	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, "VmRSS:", 6) == 0)
			v = strtol(line + 6, NULL, 10);
	fclose(f);
	return v;
}

/* The largest vector update as protobuf: many fields to mutate. */
static int load_valid_pb(void)
{
	tu_vector *v = NULL;
	int n = tu_vectors_load("typical.jsonl", &v), i, best = -1;
	sw_update *u = NULL;
	size_t len = 0;

	if (n <= 0)
		return -1;
	for (i = 0; i < n; i++)
		if (best < 0 || v[i].wire_len > v[best].wire_len)
			best = i;
	if (sw_json_parse(v[best].wire, v[best].wire_len, NULL, &u, NULL) != SW_OK) {
		tu_vectors_free(v, n);
		return -1;
	}
	tu_vectors_free(v, n);
	if (sw_pb_encode(u, NULL, 0, &len, NULL) != SW_OK && len == 0)
		goto fail;
	valid_pb = malloc(len);
	if (valid_pb == NULL || sw_pb_encode(u, valid_pb, len, &len, NULL) != SW_OK)
		goto fail;
	valid_pb_len = len;
	sw_update_free(u);
	return 0;
fail:
	sw_update_free(u);
	free(valid_pb);
	valid_pb = NULL;
	return -1;
}

static int suite_init(void)
{
	char err[256] = "";
	gw_tokens *t;
	FILE *f;

	gw_log_set_level(GW_LOG_ERROR + 1);
	if (load_valid_pb() != 0)
		return -1;
	snprintf(tokens_path, sizeof(tokens_path), "/tmp/sw-hostile-tokens-%d",
		 (int)getpid());
	f = fopen(tokens_path, "w");
	if (f == NULL)
		return -1;
	fputs("dev-h " TOKEN "\n", f);
	fclose(f);
	t = gw_tokens_load(tokens_path, err, sizeof(err));
	if (t == NULL)
		return -1;
	fu = fu_start(0);
	if (fu == NULL) {
		gw_tokens_free(t);
		return -1;
	}
	tu_gw_config(&cfg, fu_port(fu), org_key);
	cfg.max_body = MAX_BODY;
	cfg.max_batch_items = 8;
	cfg.client_timeout_s = CLIENT_TIMEOUT_S;
	cfg.request_timeout_s = REQUEST_TIMEOUT_S;
	up = gw_upstream_new(&cfg, err, sizeof(err));
	if (up == NULL) {
		gw_tokens_free(t);
		return -1;
	}
	srv = gw_server_start(&cfg, up, t, err, sizeof(err));
	if (srv == NULL) {
		fprintf(stderr, "server: %s\n", err);
		gw_tokens_free(t);
		return -1;
	}
	return 0;
}

static int suite_clean(void)
{
	gw_server_stop(srv);
	gw_upstream_free(up);
	fu_stop(fu);
	unlink(tokens_path);
	free(valid_pb);
	valid_pb = NULL;
	gw_log_set_level(GW_LOG_INFO);
	return 0;
}

/* ==== A table of raw requests ==== */

typedef struct raw_case {
	const char *name;
	const char *req;    /* the bytes sent */
	int status;         /* expected; 0: the connection is closed unanswered */
	const char *code;   /* the gateway's error code, or NULL (MHD's answer) */
	const char *text;   /* a substring of the body, or NULL */
	size_t len;         /* bytes of req; 0: strlen (req without NUL) */
} raw_case;

/* Sends every case on its own connection and checks status, body, that
 * nothing went upstream (one update for an expected 200) and that the
 * gateway still serves. */
static void run_raw(const raw_case *t, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		raw_resp r;
		size_t before = fu_count(fu);
		size_t len = t[i].len ? t[i].len : strlen(t[i].req);
		int st = raw_exchange(t[i].req, len, 5.0, &r);
		/* 505 is libmicrohttpd refusing an HTTP version: the one 5xx
		 * a client's bytes may get, and never from the gateway */
		bool ok = st == t[i].status &&
			  fu_count(fu) == before + (st == 200 &&
						    !strncmp(t[i].req, "PATCH", 5)) &&
			  (t[i].status != 0 || r.closed) &&
			  (st < 500 || (st == 505 && t[i].code == NULL));

		if (ok && t[i].code)
			ok = error_says(&r, t[i].code, t[i].text);
		else if (ok && t[i].text)
			ok = r.body && strstr(r.body, t[i].text);
		CU_ASSERT(ok);
		if (!ok)
			fprintf(stderr, "\n%s: status %d (want %d), closed %d, upstream +%zu: %.300s\n",
				t[i].name, st, t[i].status, r.closed,
				fu_count(fu) - before, r.data ? r.data : "");
		raw_free(&r);
		CU_ASSERT(still_serves());
	}
}

#define PATCH_HDRS(path) "PATCH " path " HTTP/1.1\r\nHost: h\r\n" AUTH
#define JSON_CT "Content-Type: application/json\r\n"

/* ==== Content-Length ==== */

static void content_length_lies_and_garbage_are_refused(void)
{
	static const raw_case t[] = {
		{ "larger than max_body", PATCH_HDRS("/v2/traces/sessions/cl")
		  JSON_CT "Content-Length: 8193\r\n\r\n{}", 413,
		  "payload_too_large", "8193", 0 },
		{ "100 GB", PATCH_HDRS("/v2/traces/sessions/cl")
		  JSON_CT "Content-Length: 100000000000\r\n\r\n", 413,
		  "payload_too_large", NULL, 0 },
		{ "2^64", PATCH_HDRS("/v2/traces/sessions/cl")
		  JSON_CT "Content-Length: 18446744073709551616\r\n\r\n", 413,
		  NULL, NULL, 0 },
		{ "negative", PATCH_HDRS("/v2/traces/sessions/cl")
		  JSON_CT "Content-Length: -1\r\n\r\n{}", 400, NULL, NULL, 0 },
		{ "letters", PATCH_HDRS("/v2/traces/sessions/cl")
		  JSON_CT "Content-Length: abc\r\n\r\n{}", 400, NULL, NULL, 0 },
		{ "hex", PATCH_HDRS("/v2/traces/sessions/cl")
		  JSON_CT "Content-Length: 0x10\r\n\r\n{}", 400, NULL, NULL, 0 },
		{ "trailing junk", PATCH_HDRS("/v2/traces/sessions/cl")
		  JSON_CT "Content-Length: 2x\r\n\r\n{}", 400, NULL, NULL, 0 },
		{ "empty", PATCH_HDRS("/v2/traces/sessions/cl")
		  JSON_CT "Content-Length: \r\n\r\n{}", 400, NULL, NULL, 0 },
		/* libmicrohttpd takes the first Content-Length */
		{ "duplicate, same", PATCH_HDRS("/v2/traces/sessions/cl")
		  JSON_CT "Content-Length: 14\r\nContent-Length: 14\r\n\r\n"
		  "{\"duration\":1}", 200, NULL, NULL, 0 },
		{ "duplicate, different", PATCH_HDRS("/v2/traces/sessions/cl")
		  JSON_CT "Content-Length: 2\r\nContent-Length: 14\r\n\r\n"
		  "{\"duration\":1}", 400, "bad_request", "Content-Length", 0 },
		{ "duplicate, larger first", PATCH_HDRS("/v2/traces/sessions/cl")
		  JSON_CT "Content-Length: 14\r\nContent-Length: 2\r\n\r\n"
		  "{\"duration\":1}", 400, "bad_request", "Content-Length", 0 },
		/* Transfer-Encoding wins over Content-Length (RFC 9112 6.3) */
		{ "with chunked", PATCH_HDRS("/v2/traces/sessions/cl")
		  JSON_CT "Content-Length: 14\r\nTransfer-Encoding: chunked\r\n\r\n"
		  "e\r\n{\"duration\":1}\r\n0\r\n\r\n", 200, NULL, "\"duration\":1", 0 },
		{ "zero, no body", PATCH_HDRS("/v2/traces/sessions/cl")
		  JSON_CT "Content-Length: 0\r\n\r\n", 400, "invalid_body", NULL, 0 },
	};

	fu_clear(fu);
	run_raw(t, sizeof(t) / sizeof(t[0]));
}

/* Content-Length larger than what is sent, then the client closes: nothing
 * is forwarded and no worker is stuck. */
static void content_length_larger_than_sent_then_close(void)
{
	static const char req[] = PATCH_HDRS("/v2/traces/sessions/liar")
		JSON_CT "Content-Length: 1000\r\n\r\n{\"duration\":1}";
	size_t before;
	int k;

	fu_clear(fu);
	before = fu_count(fu);
	for (k = 0; k < 20; k++) {
		int fd = raw_connect();

		CU_ASSERT_FATAL(fd >= 0);
		CU_ASSERT_EQUAL(send_all(fd, req, sizeof(req) - 1, tu_mono() + 2, NULL), 0);
		if (k % 2)
			shutdown(fd, SHUT_WR);
		close(fd);
	}
	CU_ASSERT(still_serves());
	CU_ASSERT_EQUAL(fu_count(fu), before + 1);
}

/* Content-Length larger than what is sent, the connection kept open: the
 * gateway waits client_timeout_s at most, then closes it unanswered and
 * forwards nothing; others are served meanwhile. */
static void content_length_larger_than_sent_times_out(void)
{
	static const char req[] = PATCH_HDRS("/v2/traces/sessions/liar")
		JSON_CT "Content-Length: 1000\r\n\r\n{\"duration\":1}";
	double t0 = tu_mono();
	int fd = raw_connect();
	raw_resp r;

	fu_clear(fu);
	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT_EQUAL(send_all(fd, req, sizeof(req) - 1, t0 + 2, NULL), 0);
	CU_ASSERT(still_serves());
	read_resp(fd, t0 + CLIENT_TIMEOUT_S + 4.0, &r);
	CU_ASSERT(r.closed);
	CU_ASSERT_EQUAL(r.status, 0);
	CU_ASSERT(tu_mono() - t0 >= CLIENT_TIMEOUT_S - 0.5);
	CU_ASSERT(tu_mono() - t0 < CLIENT_TIMEOUT_S + 3.5);
	CU_ASSERT_EQUAL(fu_count(fu), 1); /* only still_serves' */
	raw_free(&r);
	close(fd);
}

/* ==== Chunked bodies ==== */

/* Sends a chunked body of 1 KiB chunks, never ending it, until the
 * gateway cuts the connection or answers, at most max_bytes. Returns the
 * bytes sent; *st the status read afterwards (0: none). */
static size_t endless_chunked(size_t max_bytes, int *st, bool *cut)
{
	static const char head[] = PATCH_HDRS("/v2/traces/sessions/endless")
		JSON_CT "Transfer-Encoding: chunked\r\n\r\n";
	char chunk[1024 + 16];
	size_t sent = 0;
	double deadline = tu_mono() + 10.0;
	int fd = raw_connect();
	raw_resp r;

	*st = 0;
	*cut = false;
	if (fd < 0)
		return 0;
	memcpy(chunk, "400\r\n", 5);
	memset(chunk + 5, 'x', 1024);
	memcpy(chunk + 5 + 1024, "\r\n", 2);
	if (send_all(fd, head, sizeof(head) - 1, deadline, NULL) != 0)
		*cut = true;
	while (!*cut && sent < max_bytes && tu_mono() < deadline) {
		struct pollfd pf = { fd, POLLIN, 0 };

		if (send_all(fd, chunk, 1024 + 7, deadline, NULL) != 0) {
			*cut = true;
			break;
		}
		sent += 1024;
		/* an early answer or close shows as readable */
		if (poll(&pf, 1, 0) == 1)
			break;
	}
	read_resp(fd, tu_mono() + (*cut ? 1.0 : 0.2), &r);
	*st = r.status;
	if (r.closed)
		*cut = true;
	raw_free(&r);
	close(fd);
	return sent;
}

static void endless_chunked_body_is_cut_and_memory_stays_bounded(void)
{
	long rss0, rss1;
	size_t sent;
	int st = 0, k;
	bool cut = false;

	fu_clear(fu);
	/* warm up: the first requests allocate the pools */
	CU_ASSERT(still_serves());
	endless_chunked(64 << 10, &st, &cut);
	rss0 = rss_kib();
	for (k = 0; k < 3; k++) {
		sent = endless_chunked(16u << 20, &st, &cut);
		/* cut after 1 MiB past the cap (DISCARD_MAX) at most, plus
		 * what the socket buffers held */
		CU_ASSERT(cut);
		CU_ASSERT(sent > 10 * MAX_BODY);
		CU_ASSERT(sent < (8u << 20));
		CU_ASSERT(st == 0 || st == 413);
	}
	rss1 = rss_kib();
	fprintf(stderr, "[endless chunked: cut after %zu KiB (status %d), RSS %+ld KiB] ",
		sent >> 10, st, rss1 - rss0);
	CU_ASSERT(rss0 > 0 && rss1 > 0);
	CU_ASSERT(rss1 - rss0 < 4096);
	if (rss1 - rss0 >= 4096)
		fprintf(stderr, "\nRSS grew %ld KiB -> %ld KiB\n", rss0, rss1);
	CU_ASSERT_EQUAL(fu_count(fu), 1);
	CU_ASSERT(still_serves());
}

/* About 10x max_body chunked, then the client stops (neither ends nor
 * closes): nothing forwarded, the connection closed at the idle timeout. */
static void chunked_ten_times_max_body_then_silence(void)
{
	static const char head[] = PATCH_HDRS("/v2/traces/sessions/endless")
		JSON_CT "Transfer-Encoding: chunked\r\n\r\n";
	char chunk[1024 + 16];
	double t0 = tu_mono();
	size_t sent = 0;
	int fd = raw_connect();
	raw_resp r;

	fu_clear(fu);
	CU_ASSERT_FATAL(fd >= 0);
	memcpy(chunk, "400\r\n", 5);
	memset(chunk + 5, 'y', 1024);
	memcpy(chunk + 5 + 1024, "\r\n", 2);
	CU_ASSERT_EQUAL(send_all(fd, head, sizeof(head) - 1, t0 + 5, NULL), 0);
	while (sent < 10 * MAX_BODY &&
	       send_all(fd, chunk, 1024 + 7, t0 + 5, NULL) == 0)
		sent += 1024;
	CU_ASSERT(sent >= 10 * MAX_BODY);
	read_resp(fd, tu_mono() + CLIENT_TIMEOUT_S + 4.0, &r);
	CU_ASSERT(r.closed);
	CU_ASSERT(r.status == 0 || r.status == 413);
	raw_free(&r);
	close(fd);
	CU_ASSERT_EQUAL(fu_count(fu), 0);
	CU_ASSERT(still_serves());
}

/* Bad framing: 400, 413 for a chunk size past 64 bits, and the connection
 * closed unanswered for a coding libmicrohttpd does not know or a chunk
 * that never ends (after client_timeout_s). */
static void bad_chunk_framing_is_refused(void)
{
	static const raw_case t[] = {
		{ "chunk size not hex", PATCH_HDRS("/v2/traces/sessions/ch")
		  JSON_CT "Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
		  400, NULL, NULL, 0 },
		{ "chunk size 2^72", PATCH_HDRS("/v2/traces/sessions/ch")
		  JSON_CT "Transfer-Encoding: chunked\r\n\r\n"
		  "ffffffffffffffffff\r\n{}\r\n0\r\n\r\n", 413, NULL,
		  "chunk size", 0 },
		{ "chunk longer than said", PATCH_HDRS("/v2/traces/sessions/ch")
		  JSON_CT "Transfer-Encoding: chunked\r\n\r\n"
		  "2\r\n{\"duration\":1}\r\n0\r\n\r\n", 400, NULL, NULL, 0 },
		{ "one chunk over max_body", PATCH_HDRS("/v2/traces/sessions/ch")
		  JSON_CT "Transfer-Encoding: chunked\r\n\r\n"
		  "7fffffff\r\n{}", 0, NULL, NULL, 0 },
		{ "unknown transfer coding", PATCH_HDRS("/v2/traces/sessions/ch")
		  JSON_CT "Transfer-Encoding: gzip\r\n\r\n{}", 0, NULL, NULL, 0 },
	};

	fu_clear(fu);
	run_raw(t, sizeof(t) / sizeof(t[0]));
}

/* ==== Headers ==== */

/* A request with n headers "X-Flood-<i>: <vlen bytes>", or one header
 * "<name>: <prefix><vlen bytes>" in place of that header's usual one. */
static char *flood(size_t n, size_t vlen, const char *name,
		   const char *prefix, size_t *len)
{
	size_t cap = n * (vlen + 32) + 512, k;
	char *b = malloc(cap), *p;

	if (b == NULL)
		return NULL;
	p = b + snprintf(b, cap, "PATCH /v2/traces/sessions/flood HTTP/1.1\r\n"
			 "Host: h\r\n%s%s",
			 name && !strcasecmp(name, "Authorization") ? "" : AUTH,
			 name && !strcasecmp(name, "Content-Type") ? "" : JSON_CT);
	for (k = 0; k < n; k++) {
		if (name)
			p += snprintf(p, cap - (size_t)(p - b), "%s: %s", name,
				      prefix ? prefix : "");
		else
			p += snprintf(p, cap - (size_t)(p - b), "X-Flood-%zu: ", k);
		memset(p, 'v', vlen);
		p += vlen;
		memcpy(p, "\r\n", 2);
		p += 2;
	}
	p += snprintf(p, cap - (size_t)(p - b),
		      "Content-Length: 14\r\n\r\n{\"duration\":1}");
	*len = (size_t)(p - b);
	return b;
}

static void header_floods_are_refused_or_bounded(void)
{
	static const struct {
		const char *name;
		size_t n, vlen;
		const char *hname, *prefix;
		int status;
		const char *text;
	} t[] = {
		{ "200 small headers", 200, 8, NULL, NULL, 200, NULL },
		{ "one 9 KiB header", 1, 9 << 10, NULL, NULL, 200, NULL },
		{ "5000 small headers (80 KiB)", 5000, 4, NULL, NULL, 431, NULL },
		{ "one 70 KiB header", 1, 70 << 10, NULL, NULL, 431, NULL },
		{ "a 9 KiB Authorization", 1, 9 << 10, "Authorization", NULL, 401, "Bearer <device token>" },
		{ "a 9 KiB bearer token", 1, 9 << 10, "Authorization", "Bearer ", 401, "unknown device token" },
		{ "a 70 KiB bearer token", 1, 70 << 10, "Authorization", "Bearer ", 431, NULL },
		{ "a 9 KiB Content-Type", 1, 9 << 10, "Content-Type", "text/", 415, "\"text/vvvv" },
	};
	size_t i;

	fu_clear(fu);
	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		size_t len = 0, before = fu_count(fu);
		char *req = flood(t[i].n, t[i].vlen, t[i].hname, t[i].prefix, &len);
		raw_resp r;
		int st;

		CU_ASSERT_FATAL(req != NULL);
		st = raw_exchange(req, len, 5.0, &r);
		CU_ASSERT_EQUAL(st, t[i].status);
		CU_ASSERT_EQUAL(fu_count(fu), before + (t[i].status == 200));
		if (t[i].text) {
			CU_ASSERT_PTR_NOT_NULL(r.body && strstr(r.body, t[i].text));
			/* the message quotes at most 80 bytes of what was sent */
			CU_ASSERT(r.body_len < 400);
		}
		if (st != t[i].status)
			fprintf(stderr, "\n%s: %d %.200s\n", t[i].name, st,
				r.data ? r.data : "");
		raw_free(&r);
		free(req);
		CU_ASSERT(still_serves());
	}
}

static void long_request_lines_are_414(void)
{
	size_t n = 100 << 10, len;
	char *path = malloc(n + 32), *req;
	raw_resp r;

	CU_ASSERT_FATAL(path != NULL);
	fu_clear(fu);
	/* a 100 KiB session id: over the connection's memory */
	memcpy(path, "/v2/traces/sessions/", 20);
	memset(path + 20, 'a', n);
	path[20 + n] = '\0';
	req = build("PATCH", path, AUTH JSON_CT, "{}", 2, &len);
	CU_ASSERT_EQUAL(raw_exchange(req, len, 5.0, &r), 414);
	raw_free(&r);
	free(req);
	/* 10 KiB fits the connection but not the session id limit */
	path[20 + (10 << 10)] = '\0';
	req = build("PATCH", path, AUTH JSON_CT, "{}", 2, &len);
	CU_ASSERT_EQUAL(raw_exchange(req, len, 5.0, &r), 400);
	CU_ASSERT(error_says(&r, "invalid_session_id", "session id"));
	raw_free(&r);
	free(req);
	free(path);
	CU_ASSERT_EQUAL(fu_count(fu), 0);
	CU_ASSERT(still_serves());
}

/* ==== Slow clients ==== */

/* Whether the gateway closed fd (end of stream or reset); never blocks. */
static bool peer_closed(int fd)
{
	struct pollfd pf = { fd, POLLIN, 0 };
	char c;
	ssize_t k;

	if (poll(&pf, 1, 0) != 1)
		return false;
	k = recv(fd, &c, 1, MSG_DONTWAIT);
	return k == 0 || (k < 0 && errno != EAGAIN && errno != EINTR);
}

/* The value of one sample line of /metrics ("name{labels}"), -1 if none. */
static long metric(const char *sample)
{
	static const char req[] = "GET /metrics HTTP/1.1\r\nHost: h\r\n"
				  "Connection: close\r\n\r\n";
	raw_resp r;
	const char *p;
	long v = -1;

	if (raw_exchange(req, sizeof(req) - 1, 5.0, &r) == 200 &&
	    (p = strstr(r.body, sample)) != NULL)
		v = strtol(p + strlen(sample), NULL, 10);
	raw_free(&r);
	return v;
}

/* One connection dripping its headers one byte per 100 ms, one dripping
 * its body, another idle after half a request line: the gateway serves
 * others meanwhile, closes the idle one after client_timeout_s (an idle
 * timeout) and cuts the dripping ones after request_timeout_s (a
 * deadline for the whole request: they are never idle). */
static void slowloris_does_not_block_others(void)
{
	static const char drip[] = "PATCH /v2/traces/sessions/slow HTTP/1.1\r\n"
		"Host: h\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
	double t0 = tu_mono(), worst = 0, idle_at = 0, drip_at = 0, body_at = 0;
	static const char body_head[] = PATCH_HDRS("/v2/traces/sessions/slow")
		JSON_CT "Content-Length: 200\r\n\r\n";
	int fd_drip = raw_connect(), fd_idle = raw_connect();
	int fd_body = raw_connect();
	long cuts0 = metric("sessionwire_rejections_total{reason=\"slow_client\"} ");
	size_t k = 0;
	int served = 0;

	fu_clear(fu);
	CU_ASSERT_FATAL(fd_drip >= 0 && fd_idle >= 0 && fd_body >= 0);
	CU_ASSERT_EQUAL(send_all(fd_idle, "PATCH /v2/tr", 12, t0 + 1, NULL), 0);
	CU_ASSERT_EQUAL(send_all(fd_body, body_head, sizeof(body_head) - 1,
				 t0 + 1, NULL), 0);
	while (tu_mono() - t0 < REQUEST_TIMEOUT_S + 2.5 &&
	       (idle_at == 0 || drip_at == 0 || body_at == 0)) {
		double t1;

		if (drip_at == 0 && k < sizeof(drip) - 1)
			send_all(fd_drip, drip + k++, 1, tu_mono() + 1, NULL);
		if (body_at == 0)
			send_all(fd_body, " ", 1, tu_mono() + 1, NULL);
		t1 = tu_mono();
		if (still_serves())
			served++;
		if (tu_mono() - t1 > worst)
			worst = tu_mono() - t1;
		if (idle_at == 0 && peer_closed(fd_idle))
			idle_at = tu_mono() - t0;
		if (drip_at == 0 && peer_closed(fd_drip))
			drip_at = tu_mono() - t0;
		if (body_at == 0 && peer_closed(fd_body))
			body_at = tu_mono() - t0;
		tu_sleep_ms(100);
	}
	fprintf(stderr, "[slowloris: %d served, worst %.0f ms, idle cut at %.1f s, header drip cut at %.1f s, body drip cut at %.1f s] ",
		served, worst * 1000, idle_at, drip_at, body_at);
	/* others served all along, each quickly */
	CU_ASSERT(served >= 10);
	CU_ASSERT(worst < 1.0);
	/* the idle one was closed after the idle timeout */
	CU_ASSERT(idle_at >= CLIENT_TIMEOUT_S - 0.5);
	CU_ASSERT(idle_at <= CLIENT_TIMEOUT_S + 1.5);
	/* the dripping ones after the request deadline (never idle) */
	CU_ASSERT(drip_at >= REQUEST_TIMEOUT_S - 0.5);
	CU_ASSERT(drip_at <= REQUEST_TIMEOUT_S + 1.5);
	CU_ASSERT(body_at >= REQUEST_TIMEOUT_S - 0.5);
	CU_ASSERT(body_at <= REQUEST_TIMEOUT_S + 1.5);
	CU_ASSERT(metric("sessionwire_rejections_total{reason=\"slow_client\"} ") >=
		  cuts0 + 2);
	close(fd_body);
	close(fd_drip);
	close(fd_idle);
	/* nothing of the slow requests went upstream */
	CU_ASSERT_EQUAL(fu_count(fu), (size_t)served);
}

/* A second gateway with --max-connections-per-ip 2: a third connection
 * from 127.0.0.1 is closed unanswered; once one of the two goes, a new
 * one is served. */
static void per_ip_connection_limit(void)
{
	static const char health[] = "GET /healthz HTTP/1.1\r\nHost: h\r\n"
				     "Connection: close\r\n\r\n";
	static gw_config cfg2;
	gw_server *main_srv = srv, *srv2;
	gw_tokens *t;
	char err[256];
	int a, b, c;
	double t0;
	bool c_closed = false;
	raw_resp r;

	t = gw_tokens_load(tokens_path, err, sizeof(err));
	CU_ASSERT_FATAL(t != NULL);
	cfg2 = cfg;
	cfg2.max_conns_per_ip = 2;
	srv2 = gw_server_start(&cfg2, up, t, err, sizeof(err));
	CU_ASSERT_FATAL(srv2 != NULL);
	srv = srv2; /* raw_connect and raw_exchange talk to srv */
	a = raw_connect();
	b = raw_connect();
	CU_ASSERT(a >= 0 && b >= 0);
	CU_ASSERT_EQUAL(send_all(a, "GET /hea", 8, tu_mono() + 1, NULL), 0);
	CU_ASSERT_EQUAL(send_all(b, "GET /hea", 8, tu_mono() + 1, NULL), 0);
	tu_sleep_ms(200);
	c = raw_connect();
	if (c >= 0) {
		send_all(c, health, sizeof(health) - 1, tu_mono() + 1, NULL);
		for (t0 = tu_mono(); tu_mono() - t0 < 1.5 && !c_closed; tu_sleep_ms(20))
			c_closed = peer_closed(c);
		read_resp(c, tu_mono() + 0.2, &r);
		CU_ASSERT_EQUAL(r.status, 0);
		raw_free(&r);
		close(c);
	} else {
		c_closed = true; /* refused outright: as good */
	}
	CU_ASSERT(c_closed);
	/* the two allowed ones are still open and get answers */
	CU_ASSERT(!peer_closed(a));
	close(a);
	tu_sleep_ms(200);
	CU_ASSERT_EQUAL(raw_exchange(health, sizeof(health) - 1, 5.0, &r), 200);
	raw_free(&r);
	close(b);
	srv = main_srv;
	gw_server_stop(srv2);
}

/* ==== Request lines ==== */

static void garbage_request_lines_are_refused(void)
{
	static const raw_case t[] = {
		/* libmicrohttpd closes without an answer */
		{ "TLS hello", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 0, NULL, NULL, 15 },
		{ "one word", "GARBAGE\r\n\r\n", 0, NULL, NULL, 0 },
		{ "no version", "GET /healthz\r\n\r\n", 400, NULL, NULL, 0 },
		{ "HTTP/0.9", "GET /healthz\r\n", 400, NULL, "syntactically incorrect", 0 },
		{ "HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, NULL, "version", 0 },
		{ "HTTP/9.9", "GET /healthz HTTP/9.9\r\nHost: h\r\n\r\n", 505, NULL, "version", 0 },
		/* libmicrohttpd does not insist on Host */
		{ "HTTP/1.1 without Host", "GET /healthz HTTP/1.1\r\n\r\n", 200, NULL, "ok", 0 },
		{ "lower-case method", "get /healthz HTTP/1.1\r\nHost: h\r\n\r\n", 405, "method_not_allowed", NULL, 0 },
		{ "unknown method", "BREW /healthz HTTP/1.1\r\nHost: h\r\n\r\n", 405, "method_not_allowed", NULL, 0 },
		{ "bare LF", "GET /healthz HTTP/1.1\nHost: h\n\n", 200, NULL, "ok", 0 },
		{ "header without colon", "GET /healthz HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n", 400, NULL, NULL, 0 },
		/* the path ends at the NUL: "/heal" */
		{ "NUL in the path", "GET /heal\0thz HTTP/1.1\r\nHost: h\r\n\r\n", 404, "not_found", NULL, 35 },
		{ "absolute URI", "PATCH http://evil/v2/traces/sessions/x HTTP/1.1\r\nHost: h\r\n" AUTH JSON_CT "Content-Length: 2\r\n\r\n{}", 404, "not_found", NULL, 0 },
		{ "asterisk", "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", 404, "not_found", NULL, 0 },
	};

	fu_clear(fu);
	run_raw(t, sizeof(t) / sizeof(t[0]));
}

/* ==== Paths ==== */

static void path_tricks_are_refused(void)
{
	static const struct {
		const char *path;
		int status;
		const char *code;
	} t[] = {
		{ "/v2/traces/sessions/..", 400, "invalid_session_id" },
		{ "/v2/traces/sessions/.", 400, "invalid_session_id" },
		{ "/v2/traces/sessions/%2e%2e", 400, "invalid_session_id" },
		{ "/v2/traces/sessions/%2E", 400, "invalid_session_id" },
		{ "/v2/traces/sessions/../../admin", 404, "not_found" },
		{ "/v2/traces/sessions/a/../b", 404, "not_found" },
		{ "/v2/traces/sessions//x", 404, "not_found" },
		{ "/v2/traces/sessions/", 404, "not_found" },
		{ "/v2/traces/sessions", 404, "not_found" },
		{ "//v2/traces/sessions/x", 404, "not_found" },
		{ "/V2/traces/sessions/x", 404, "not_found" },
		{ "/v2/traces/sessions/%zz", 400, "invalid_session_id" },
		{ "/v2/traces/sessions/%", 400, "invalid_session_id" },
		{ "/v2/traces/sessions/a%", 400, "invalid_session_id" },
		{ "/v2/traces/sessions/%4", 400, "invalid_session_id" },
		{ "/v2/traces/sessions/%C0%AF", 400, "invalid_session_id" },
		{ "/v2/traces/sessions/%C0%AE%C0%AE", 400, "invalid_session_id" },
		{ "/v2/traces/sessions/%E0%80%AF", 400, "invalid_session_id" },
		{ "/v2/traces/sessions/%ED%A0%80", 400, "invalid_session_id" },
		{ "/v2/traces/sessions/%F4%90%80%80", 400, "invalid_session_id" },
		{ "/v2/traces/sessions/%FF", 400, "invalid_session_id" },
		{ "/v2/traces/sessions/%u002e", 400, "invalid_session_id" },
	};
	size_t i;

	fu_clear(fu);
	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		raw_resp r;
		int st = raw_patch(t[i].path, "application/json",
				   "{\"duration\":1}", 14, &r);
		bool ok = st == t[i].status && error_says(&r, t[i].code, NULL);

		CU_ASSERT(ok);
		if (!ok)
			fprintf(stderr, "\n%s: %d %.300s\n", t[i].path, st,
				r.data ? r.data : "");
		raw_free(&r);
	}
	CU_ASSERT_EQUAL(fu_count(fu), 0);
	CU_ASSERT(still_serves());
}

/* Legal but odd ids reach the upstream as one encoded segment. */
static void odd_but_valid_ids_stay_one_segment(void)
{
	static const struct {
		const char *path, *upstream;
	} t[] = {
		{ "/v2/traces/sessions/a%2Fb", "/v2/traces/sessions/a%2Fb" },
		{ "/v2/traces/sessions/%2F..%2F..%2Fadmin", "/v2/traces/sessions/%2F..%2F..%2Fadmin" },
		{ "/v2/traces/sessions/...", "/v2/traces/sessions/..." },
		{ "/v2/traces/sessions/%00", "/v2/traces/sessions/%00" },
		{ "/v2/traces/sessions/a%3Fb%23c", "/v2/traces/sessions/a%3Fb%23c" },
		{ "/v2/traces/sessions/q?x=%zz", "/v2/traces/sessions/q" },
	};
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		raw_resp r;
		fu_request q;
		int st;

		fu_clear(fu);
		st = raw_patch(t[i].path, "application/json", "{\"duration\":1}",
			       14, &r);
		CU_ASSERT_EQUAL(st, 200);
		CU_ASSERT_EQUAL(fu_count(fu), 1);
		if (fu_get(fu, 0, &q)) {
			CU_ASSERT_STRING_EQUAL(q.path, t[i].upstream);
			if (strcmp(q.path, t[i].upstream))
				fprintf(stderr, "\n%s -> %s\n", t[i].path, q.path);
			fu_request_free(&q);
		}
		raw_free(&r);
	}
}

/* ==== Methods and content types ==== */

#define NUL_TOKEN_REQ "PATCH /v2/traces/sessions/x HTTP/1.1\r\nHost: h\r\n" \
	"Authorization: Bearer tok-hostile\0-5d1e0c7a92\r\n" JSON_CT \
	"Content-Length: 14\r\n\r\n{\"duration\":1}"

/* Wrong methods 405 with Allow, wrong types 415 naming the type, bad or
 * hidden tokens 401 (the first Authorization header counts). */
static void wrong_methods_content_types_and_tokens(void)
{
	static const raw_case t[] = {
		{ "DELETE session", "DELETE /v2/traces/sessions/x HTTP/1.1\r\nHost: h\r\n" AUTH "\r\n", 405, "method_not_allowed", "PATCH", 0 },
		{ "POST session", "POST /v2/traces/sessions/x HTTP/1.1\r\nHost: h\r\n" AUTH JSON_CT "Content-Length: 2\r\n\r\n{}", 405, "method_not_allowed", NULL, 0 },
		{ "GET batch", "GET /v1/updates HTTP/1.1\r\nHost: h\r\n" AUTH "Accept: application/json\r\n\r\n", 405, "method_not_allowed", "POST", 0 },
		{ "PATCH batch", "PATCH /v1/updates HTTP/1.1\r\nHost: h\r\n" AUTH "Content-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n", 405, NULL, NULL, 0 },
		{ "PUT metrics", "PUT /metrics HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", 405, "method_not_allowed", NULL, 0 },
		{ "text/plain", PATCH_HDRS("/v2/traces/sessions/x") "Content-Type: text/plain\r\nContent-Length: 2\r\n\r\n{}", 415, "unsupported_media_type", "text/plain", 0 },
		{ "no type", PATCH_HDRS("/v2/traces/sessions/x") "Content-Length: 2\r\n\r\n{}", 415, "unsupported_media_type", "none", 0 },
		{ "prefix of a type", PATCH_HDRS("/v2/traces/sessions/x") "Content-Type: application/jsonx\r\nContent-Length: 2\r\n\r\n{}", 415, "unsupported_media_type", NULL, 0 },
		{ "json on batch", "POST /v1/updates HTTP/1.1\r\nHost: h\r\n" AUTH JSON_CT "Accept: application/json\r\nContent-Length: 2\r\n\r\n{}", 415, "unsupported_media_type", NULL, 0 },
		{ "multipart", PATCH_HDRS("/v2/traces/sessions/x") "Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 2\r\n\r\n{}", 415, "unsupported_media_type", NULL, 0 },
		{ "form", PATCH_HDRS("/v2/traces/sessions/x") "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 11\r\n\r\nduration=1&", 415, "unsupported_media_type", NULL, 0 },
		{ "no token", "PATCH /v2/traces/sessions/x HTTP/1.1\r\nHost: h\r\n" JSON_CT "Content-Length: 2\r\n\r\n{}", 401, "unauthorized", NULL, 0 },
		{ "Basic auth", "PATCH /v2/traces/sessions/x HTTP/1.1\r\nHost: h\r\nAuthorization: Basic dG9rOg==\r\n" JSON_CT "Content-Length: 2\r\n\r\n{}", 401, "unauthorized", NULL, 0 },
		/* the value ends at the NUL: a token prefix, not the token */
		{ "token cut by a NUL", NUL_TOKEN_REQ, 401, "unauthorized", "unknown device token", sizeof(NUL_TOKEN_REQ) - 1 },
		{ "token then NUL", "PATCH /v2/traces/sessions/x HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer " TOKEN "\0garbage\r\n" JSON_CT "Content-Length: 2\r\n\r\n{}", 200, NULL, NULL,
		  sizeof("PATCH /v2/traces/sessions/x HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer " TOKEN "\0garbage\r\n" JSON_CT "Content-Length: 2\r\n\r\n{}") - 1 },
		{ "a wrong token after a right one", PATCH_HDRS("/v2/traces/sessions/x") "Authorization: Bearer wrong\r\n" JSON_CT "Content-Length: 2\r\n\r\n{}", 200, NULL, NULL, 0 },
		{ "a right token after a wrong one", "PATCH /v2/traces/sessions/x HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer wrong\r\n" AUTH JSON_CT "Content-Length: 2\r\n\r\n{}", 401, "unauthorized", NULL, 0 },
		{ "token prefix", "PATCH /v2/traces/sessions/x HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer tok-hostile\r\n" JSON_CT "Content-Length: 2\r\n\r\n{}", 401, "unauthorized", "unknown device token", 0 },
	};

	fu_clear(fu);
	run_raw(t, sizeof(t) / sizeof(t[0]));
}

/* ==== Mutated protobuf ==== */

/* PATCHes body over a kept-alive curl handle; the status, 0 when none. */
static long curl_patch(CURL *h, const char *ctype, const void *body,
		       size_t len)
{
	static const char url_fmt[] = "http://127.0.0.1:%u/v2/traces/sessions/mut";
	char url[128], ct[128];
	struct curl_slist *hl = NULL;
	long st = 0;

	snprintf(url, sizeof(url), url_fmt, (unsigned)gw_server_port(srv));
	snprintf(ct, sizeof(ct), "Content-Type: %s", ctype);
	hl = curl_slist_append(hl, ct);
	hl = curl_slist_append(hl, "Authorization: Bearer " TOKEN);
	hl = curl_slist_append(hl, "Expect:");
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "PATCH");
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 10000L);
	if (curl_easy_perform(h) == CURLE_OK)
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &st);
	curl_slist_free_all(hl);
	return st;
}

static size_t discard(char *d, size_t s, size_t n, void *u)
{
	(void)d;
	(void)u;
	return s * n;
}

/* Counts of what came back for a series of mutated bodies. */
typedef struct tally {
	size_t ok, bad, other;
} tally;

/* One mutated body: 200 (still a valid update, forwarded once) or 400
 * (nothing forwarded); anything else is counted as other. */
static void try_body(CURL *h, const char *ctype, const void *b, size_t n,
		     tally *t)
{
	size_t before = fu_count(fu);
	long st = curl_patch(h, ctype, b, n);
	size_t fwd = fu_count(fu) - before;

	if (st == 200 && fwd == 1)
		t->ok++;
	else if (st == 400 && fwd == 0)
		t->bad++;
	else {
		if (t->other++ < 5)
			fprintf(stderr, "\nmutated body of %zu bytes: %ld, forwarded %zu\n",
				n, st, fwd);
	}
}

static void truncated_protobuf_at_every_byte(void)
{
	CURL *h = curl_easy_init();
	tally t = { 0, 0, 0 };
	size_t k;

	CU_ASSERT_FATAL(h != NULL);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
	fu_clear(fu);
	for (k = 0; k < valid_pb_len; k++)
		try_body(h, "application/x-protobuf", valid_pb, k, &t);
	CU_ASSERT_EQUAL(t.other, 0);
	/* most cuts land inside a field; some on a field boundary leave a
	 * shorter valid update (forwarded) */
	CU_ASSERT(t.bad > valid_pb_len / 2);
	CU_ASSERT(t.ok + t.bad == valid_pb_len);
	fprintf(stderr, "[%zu truncations: %zu valid, %zu 400] ", valid_pb_len,
		t.ok, t.bad);
	curl_easy_cleanup(h);
	CU_ASSERT(still_serves());
}

static void random_bit_flips_never_5xx(void)
{
	CURL *h = curl_easy_init();
	tally t = { 0, 0, 0 };
	uint8_t *b = malloc(valid_pb_len);
	unsigned long x = 0x9e3779b97f4a7c15ul;
	size_t k, n = tu_quick ? 100 : 1000;

	CU_ASSERT_FATAL(h != NULL && b != NULL);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
	fu_clear(fu);
	for (k = 0; k < n; k++) {
		size_t bit;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		bit = (size_t)(x % (valid_pb_len * 8));
		memcpy(b, valid_pb, valid_pb_len);
		b[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		try_body(h, "application/x-protobuf", b, valid_pb_len, &t);
	}
	CU_ASSERT_EQUAL(t.other, 0);
	CU_ASSERT(t.bad > 0);
	fprintf(stderr, "[%zu bit flips: %zu valid, %zu 400] ", n, t.ok, t.bad);
	free(b);
	curl_easy_cleanup(h);
	CU_ASSERT(still_serves());
}

static void huge_declared_lengths_are_400(void)
{
	static const struct {
		const char *name;
		const uint8_t *b;
		size_t n;
	} t[] = {
		/* field 1 (_id), length 2^64-1 */
		{ "length 2^64-1", (const uint8_t *)"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01x", 12 },
		/* length 2^31 */
		{ "length 2^31", (const uint8_t *)"\x0a\x80\x80\x80\x80\x08x", 7 },
		/* length 8192, 1 byte present */
		{ "length over the body", (const uint8_t *)"\x0a\x80\x40x", 4 },
		/* an 11-byte varint */
		{ "overlong varint", (const uint8_t *)"\x18\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 12 },
		/* tag with field number 0 */
		{ "field 0", (const uint8_t *)"\x02\x01x", 3 },
		/* wire type 7 */
		{ "wire type 7", (const uint8_t *)"\x0f\x01", 2 },
		/* group start */
		{ "group", (const uint8_t *)"\x0b\x0c", 2 },
		/* field number 2^29-1, length-delimited, huge */
		{ "max field number", (const uint8_t *)"\xfa\xff\xff\xff\x0f\xff\xff\xff\xff\x07", 10 },
	};
	CURL *h = curl_easy_init();
	size_t i;

	CU_ASSERT_FATAL(h != NULL);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
	fu_clear(fu);
	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		long st = curl_patch(h, "application/x-protobuf", t[i].b, t[i].n);

		CU_ASSERT_EQUAL(st, 400);
		if (st != 400)
			fprintf(stderr, "\n%s: %ld\n", t[i].name, st);
	}
	curl_easy_cleanup(h);
	CU_ASSERT_EQUAL(fu_count(fu), 0);
	CU_ASSERT(still_serves());
}

/* ==== Malformed JSON ==== */

static void malformed_json_is_400(void)
{
	static const struct {
		const char *name, *body;
		int status;
	} t[] = {
		{ "trailing garbage", "{\"duration\":1} x", 400 },
		{ "two objects", "{\"duration\":1}{}", 400 },
		{ "trailing comma", "{\"duration\":1,}", 400 },
		{ "unterminated", "{\"duration\":1", 400 },
		{ "empty", "", 400 },
		{ "array", "[]", 400 },
		{ "nested", "{\"billing\":{\"input_cost\":{\"a\":1}}}", 400 },
		{ "single quotes", "{'duration':1}", 400 },
		{ "comment", "{\"duration\":1 /* x */}", 400 },
		{ "NaN", "{\"duration\":NaN}", 400 },
		{ "1e999", "{\"duration\":1e999}", 400 },
		{ "lone surrogate", "{\"external_id\":\"\\ud800\"}", 400 },
		{ "bad escape", "{\"external_id\":\"\\x41\"}", 400 },
		{ "raw control char", "{\"external_id\":\"a\x01" "b\"}", 400 },
		{ "invalid UTF-8", "{\"external_id\":\"\xc3\x28\"}", 400 },
		{ "overlong UTF-8", "{\"external_id\":\"\xc0\xaf\"}", 400 },
		{ "UTF-8 past U+10FFFF", "{\"external_id\":\"\xf4\x90\x80\x80\"}", 400 },
		{ "duplicate key", "{\"duration\":1,\"duration\":2}", 400 },
		{ "unknown key", "{\"durations\":1}", 400 },
		{ "wrong type", "{\"duration\":\"1\"}", 400 },
		{ "NUL escaped is fine", "{\"external_id\":\"a\\u0000b\"}", 200 },
		{ "BOM", "\xef\xbb\xbf{\"duration\":1}", 400 },
	};
	size_t i;
	char *deep;
	size_t depth = MAX_BODY / 2 - 8, k;
	raw_resp r;

	fu_clear(fu);
	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		size_t before = fu_count(fu);
		int st = raw_patch("/v2/traces/sessions/js", "application/json",
				   t[i].body, strlen(t[i].body), &r);
		bool ok = st == t[i].status &&
			  fu_count(fu) == before + (st == 200) &&
			  (st == 200 || error_says(&r, "invalid_body", NULL));

		CU_ASSERT(ok);
		if (!ok)
			fprintf(stderr, "\n%s: %d %.300s\n", t[i].name, st,
				r.data ? r.data : "");
		raw_free(&r);
	}
	/* the NUL went upstream escaped */
	{
		fu_request q;

		if (fu_get(fu, fu_count(fu) - 1, &q)) {
			CU_ASSERT_PTR_NOT_NULL(strstr(q.body, "a\\u0000b"));
			fu_request_free(&q);
		}
	}
	/* deep nesting, as deep as the body cap allows */
	deep = malloc(2 * depth + 1);
	CU_ASSERT_FATAL(deep != NULL);
	for (k = 0; k < depth; k++) {
		deep[k] = '[';
		deep[2 * depth - 1 - k] = ']';
	}
	deep[2 * depth] = '\0';
	CU_ASSERT_EQUAL(raw_patch("/v2/traces/sessions/js", "application/json",
				  deep, 2 * depth, &r), 400);
	raw_free(&r);
	for (k = 0; k < depth; k++) {
		deep[k] = k % 2 ? '{' : '[';
		deep[2 * depth - 1 - k] = k % 2 ? '}' : ']';
	}
	memcpy(deep, "{\"billing\":", 11);
	CU_ASSERT_EQUAL(raw_patch("/v2/traces/sessions/js", "application/json",
				  deep, 2 * depth, &r), 400);
	raw_free(&r);
	free(deep);
	CU_ASSERT(still_serves());
}

/* ==== Batches ==== */

/* Appends one envelope (sid text, seq, update bytes) to b. */
static void add_item(uint8_t *b, size_t cap, size_t *len, const char *sid,
		     uint64_t seq, const void *upd, size_t ulen)
{
	sw_session_id id;
	uint8_t env[4096];
	size_t en = 0;

	sw_session_id_set(&id, sid, strlen(sid));
	CU_ASSERT_EQUAL_FATAL(sw_envelope_encode(&id, true, seq, upd, ulen, env,
						 sizeof(env), &en, NULL), SW_OK);
	CU_ASSERT_EQUAL_FATAL(sw_batch_append(env, en, b, cap, len, NULL), SW_OK);
}

/* POSTs a batch; decodes the ack into res (cap items). Returns status. */
static int post_batch(const uint8_t *b, size_t len, sw_result *res,
		      size_t cap, size_t *n, raw_resp *r)
{
	char *req = build("POST", "/v1/updates",
			  AUTH "Content-Type: application/x-protobuf\r\n", b, len,
			  &len);
	int st = raw_exchange(req, len, 10.0, r);

	free(req);
	*n = 0;
	if (st == 200 && sw_ack_decode((const uint8_t *)r->body, r->body_len,
				       res, cap, n, NULL) != SW_OK)
		return -1;
	return st;
}

/* Bad update bytes in an item: that item 400 in the Ack, the others
 * forwarded; bad framing, an id that cannot be addressed or too many
 * items: the whole batch refused, nothing forwarded. */
static void batch_hostile_items_are_refused(void)
{
	uint8_t b[16384];
	size_t len = 0, n = 0;
	sw_result res[16];
	raw_resp r;
	static const uint8_t trunc[] = { 0x0a, 0x05, 'a' };
	static const char good[] = "{\"duration\":7}";
	sw_update *u = NULL;
	uint8_t pb[64];
	size_t pbn = 0;

	CU_ASSERT_FATAL(sw_json_parse(good, sizeof(good) - 1, NULL, &u, NULL) == SW_OK);
	CU_ASSERT_FATAL(sw_pb_encode(u, pb, sizeof(pb), &pbn, NULL) == SW_OK);
	sw_update_free(u);
	fu_clear(fu);
	add_item(b, sizeof(b), &len, "s-good", 1, pb, pbn);
	add_item(b, sizeof(b), &len, "s-trunc", 1, trunc, sizeof(trunc));
	add_item(b, sizeof(b), &len, "s-huge", 1, valid_pb, 1); /* cut tag */
	add_item(b, sizeof(b), &len, "s-good2", 1, pb, pbn);
	CU_ASSERT_EQUAL(post_batch(b, len, res, 16, &n, &r), 200);
	if (n != 4)
		fprintf(stderr, "\nbatch: %.300s\n", r.data);
	CU_ASSERT_EQUAL_FATAL(n, 4);
	CU_ASSERT_EQUAL(res[0].status, 200);
	CU_ASSERT_EQUAL(res[1].status, 400);
	CU_ASSERT_EQUAL(res[2].status, 400);
	CU_ASSERT_EQUAL(res[3].status, 200);
	CU_ASSERT(res[1].message.len > 0 && res[2].message.len > 0);
	raw_free(&r);
	CU_ASSERT_EQUAL(fu_count(fu), 2);

	/* an id that cannot be addressed refuses the whole batch, naming
	 * the item */
	len = 0;
	add_item(b, sizeof(b), &len, "s-good", 1, pb, pbn);
	/* the encoder refuses "..": the envelope by hand */
	{
		uint8_t env[80];
		size_t en = 0;

		memcpy(env, "\x12\x02..\x20\x01\x2a", 7);
		env[7] = (uint8_t)pbn;
		memcpy(env + 8, pb, pbn);
		en = 8 + pbn;
		CU_ASSERT_EQUAL_FATAL(sw_batch_append(env, en, b, sizeof(b), &len,
						      NULL), SW_OK);
	}
	CU_ASSERT_EQUAL(post_batch(b, len, res, 16, &n, &r), 400);
	CU_ASSERT_PTR_NOT_NULL(r.body && memmem(r.body, r.body_len,
						"items[1].session_id_text", 24));
	raw_free(&r);

	/* framing errors refuse the whole batch */
	{
		static const struct {
			const char *name;
			const uint8_t *b;
			size_t n;
			int status;
		} t[] = {
			{ "item length past the end", (const uint8_t *)"\x0a\x7f\x0a", 3, 400 },
			{ "item length 2^64-1", (const uint8_t *)"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 11, 400 },
			{ "not a batch", (const uint8_t *)"GARBAGE!", 8, 400 },
			{ "item without update", (const uint8_t *)"\x0a\x04\x0a\x02id", 6, 400 },
			{ "unknown field", (const uint8_t *)"\x12\x00", 2, 400 },
		};
		size_t i;

		for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
			int st = post_batch(t[i].b, t[i].n, res, 16, &n, &r);

			CU_ASSERT_EQUAL(st, t[i].status);
			if (st != t[i].status)
				fprintf(stderr, "\n%s: %d %.200s\n", t[i].name, st,
					r.data ? r.data : "");
			raw_free(&r);
		}
	}
	/* trailing garbage after good items */
	memcpy(b + len, "\xff", 1);
	CU_ASSERT_EQUAL(post_batch(b, len + 1, res, 16, &n, &r), 400);
	raw_free(&r);
	/* more items than max_batch_items */
	len = 0;
	for (n = 0; n < 9; n++)
		add_item(b, sizeof(b), &len, "s-many", n + 1, pb, pbn);
	CU_ASSERT_EQUAL(post_batch(b, len, res, 16, &n, &r), 413);
	raw_free(&r);
	CU_ASSERT_EQUAL(fu_count(fu), 2);
	CU_ASSERT(still_serves());
}

/* ==== Registration ==== */

int init_hostile_tests(void)
{
	CU_pSuite s = CU_add_suite("hostile", suite_init, suite_clean);

	if (s == NULL)
		return -1;
	CU_add_test(s, "content_length_lies_and_garbage_are_refused", content_length_lies_and_garbage_are_refused);
	CU_add_test(s, "content_length_larger_than_sent_then_close", content_length_larger_than_sent_then_close);
	CU_add_test(s, "content_length_larger_than_sent_times_out", content_length_larger_than_sent_times_out);
	CU_add_test(s, "endless_chunked_body_is_cut_and_memory_stays_bounded", endless_chunked_body_is_cut_and_memory_stays_bounded);
	CU_add_test(s, "chunked_ten_times_max_body_then_silence", chunked_ten_times_max_body_then_silence);
	CU_add_test(s, "bad_chunk_framing_is_refused", bad_chunk_framing_is_refused);
	CU_add_test(s, "header_floods_are_refused_or_bounded", header_floods_are_refused_or_bounded);
	CU_add_test(s, "long_request_lines_are_414", long_request_lines_are_414);
	CU_add_test(s, "slowloris_does_not_block_others", slowloris_does_not_block_others);
	CU_add_test(s, "per_ip_connection_limit", per_ip_connection_limit);
	CU_add_test(s, "garbage_request_lines_are_refused", garbage_request_lines_are_refused);
	CU_add_test(s, "path_tricks_are_refused", path_tricks_are_refused);
	CU_add_test(s, "odd_but_valid_ids_stay_one_segment", odd_but_valid_ids_stay_one_segment);
	CU_add_test(s, "wrong_methods_content_types_and_tokens", wrong_methods_content_types_and_tokens);
	CU_add_test(s, "truncated_protobuf_at_every_byte", truncated_protobuf_at_every_byte);
	CU_add_test(s, "random_bit_flips_never_5xx", random_bit_flips_never_5xx);
	CU_add_test(s, "huge_declared_lengths_are_400", huge_declared_lengths_are_400);
	CU_add_test(s, "malformed_json_is_400", malformed_json_is_400);
	CU_add_test(s, "batch_hostile_items_are_refused", batch_hostile_items_are_refused);
	return 0;
}
