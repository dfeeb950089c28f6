/* test_secrets.c - the org key and the device tokens stay secret: the real
 * build/session-gateway (tu_bin) runs in front of the fake upstream with a
 * recognisable key (from ORQ_API_KEY, then from --api-key-file) and
 * device tokens (plain and sha256), --log-bodies on and off, direct and
 * spool mode. Valid and invalid requests, upstream errors, /metrics; then
 * neither the key nor a token (nor its SHA-256 hex) may appear in stderr,
 * response headers or bodies, metrics, the spool's files or the process's
 * command line, and no device token (nor its digest) goes upstream. */
#define _GNU_SOURCE
#include <CUnit/CUnit.h>
#include <curl/curl.h>
#include <dirent.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fake_upstream.h"
#include "testutil.h"

#define KEY_ENV "sk-orq-ENVKEY-4e1f9a77c2d8"
#define KEY_FILE "sk-orq-FILEKEY-90b3d1e5aa61"
#define TOK_PLAIN "devtok-PLAIN-7c1d33aa0e5b"
#define TOK_HASHED "devtok-HASHED-e2b8f04c1937"
#define TOK_WRONG "devtok-WRONG-5a5a5a5a5a5a"

static fake_upstream *fu;
static char dir[256];          /* this suite's files */
static char tokens_path[300], key_path[300];

/* Everything a device or an operator saw: responses and metrics. */
static char *seen;
static size_t seen_len;

static void sha256_hex(const char *s, char out[65])
{
	unsigned char d[32];
	unsigned int n = 0;
	char *hx;

	EVP_Digest(s, strlen(s), d, &n, EVP_sha256(), NULL);
	hx = tu_hex(d, 32);
	memcpy(out, hx, 65);
	free(hx);
}

static void append(char **buf, size_t *len, const char *p, size_t n)
{
	char *nb = realloc(*buf, *len + n + 1);

	if (nb == NULL)
		return;
	memcpy(nb + *len, p, n);
	*len += n;
	nb[*len] = '\0';
	*buf = nb;
}

/* ==== The secrets and where they must not be ==== */

typedef struct secret {
	const char *what;
	char text[80];
} secret;

enum { N_SECRETS = 9 };

/* The key, every token, their digests, and the distinctive tails of
 * both (a key cut or masked as "sk-orq-EN..." still shows its tail). */
static void secrets_list(secret s[N_SECRETS])
{
	static const char *const names[] = {
		"ORQ_API_KEY", "key file", "plain token", "hashed token",
		"wrong token"
	};
	static const char *const vals[] = {
		KEY_ENV, KEY_FILE, TOK_PLAIN, TOK_HASHED, TOK_WRONG
	};
	char hx[65];
	int i;

	for (i = 0; i < 5; i++) {
		s[i].what = names[i];
		/* the last 12 characters: present in any partial print */
		snprintf(s[i].text, sizeof(s[i].text), "%s",
			 vals[i] + strlen(vals[i]) - 12);
	}
	sha256_hex(TOK_PLAIN, hx);
	s[5].what = "sha256 of the plain token";
	snprintf(s[5].text, sizeof(s[5].text), "%.16s", hx);
	sha256_hex(TOK_HASHED, hx);
	s[6].what = "sha256 of the hashed token";
	snprintf(s[6].text, sizeof(s[6].text), "%.16s", hx);
	sha256_hex(TOK_WRONG, hx);
	s[7].what = "sha256 of the wrong token";
	snprintf(s[7].text, sizeof(s[7].text), "%.16s", hx);
	sha256_hex(KEY_ENV, hx);
	s[8].what = "sha256 of the key";
	snprintf(s[8].text, sizeof(s[8].text), "%.16s", hx);
}

/* Counts (and prints) the secrets found in text[0..n), skipping the
 * first `from`. */
static int leaks(const char *where, const char *text, size_t n, int from)
{
	secret s[N_SECRETS];
	int i, found = 0;

	if (text == NULL)
		return 0;
	secrets_list(s);
	for (i = from; i < N_SECRETS; i++) {
		const char *p = memmem(text, n, s[i].text, strlen(s[i].text));

		if (p != NULL) {
			size_t off = (size_t)(p - text), a = off > 80 ? off - 80 : 0;

			fprintf(stderr, "\n%s holds the %s: ...%.*s...\n", where,
				s[i].what, (int)(off + 40 - a < n - a ? off + 40 - a : n - a),
				text + a);
			found++;
		}
	}
	return found;
}

/* ==== Requests ==== */

static size_t keep(char *d, size_t s, size_t n, void *u)
{
	(void)u;
	append(&seen, &seen_len, d, s * n);
	return s * n;
}

/* One request; its response headers and body go into `seen`. Returns
 * the status (0: no answer). */
static long req(unsigned port, const char *method, const char *path,
		const char *auth, const char *ctype, const void *body,
		size_t len, const char *accept)
{
	CURL *h = curl_easy_init();
	struct curl_slist *hl = NULL;
	char url[512], hv[512];
	long st = 0;

	if (h == NULL)
		return 0;
	snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", port, path);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 15000L);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, keep);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, keep);
	hl = curl_slist_append(hl, "Expect:");
	if (auth) {
		snprintf(hv, sizeof(hv), "Authorization: %s", auth);
		hl = curl_slist_append(hl, hv);
	}
	if (ctype) {
		snprintf(hv, sizeof(hv), "Content-Type: %s", ctype);
		hl = curl_slist_append(hl, hv);
	}
	if (accept) {
		snprintf(hv, sizeof(hv), "Accept: %s", accept);
		hl = curl_slist_append(hl, hv);
	}
	if (body) {
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	}
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
	if (curl_easy_perform(h) == CURLE_OK)
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &st);
	curl_slist_free_all(hl);
	curl_easy_cleanup(h);
	return st;
}

/* The protobuf bytes of a JSON update into out; the length (0: error). */
static size_t pb_of(const char *json, uint8_t *out, size_t cap)
{
	sw_update *u = NULL;
	size_t n = 0;

	if (sw_json_parse(json, strlen(json), NULL, &u, NULL) != SW_OK)
		return 0;
	if (sw_pb_encode(u, out, cap, &n, NULL) != SW_OK)
		n = 0;
	sw_update_free(u);
	return n;
}

/* A batch of one good update and one of garbage bytes. */
static size_t batch_of_two(uint8_t *b, size_t cap)
{
	static const uint8_t garbage[] = { 0xff, 0xff, 0xff };
	uint8_t pb[128], env[256];
	size_t pn = pb_of("{\"duration\":5}", pb, sizeof(pb)), en = 0, len = 0;
	sw_session_id sid;

	sw_session_id_set(&sid, "s-batch", 7);
	if (sw_envelope_encode(&sid, true, 1, pb, pn, env, sizeof(env), &en,
			       NULL) != SW_OK ||
	    sw_batch_append(env, en, b, cap, &len, NULL) != SW_OK ||
	    sw_envelope_encode(NULL, false, 0, garbage, sizeof(garbage), env,
			       sizeof(env), &en, NULL) != SW_OK ||
	    sw_batch_append(env, en, b, cap, &len, NULL) != SW_OK)
		return 0;
	return len;
}

/* Drives one gateway through valid and invalid requests. ok_status is
 * what a device's valid protobuf update gets (200 direct, 202 spooled);
 * a JSON client gets the API's 200 in both modes (spool mode: once the
 * update is stored and forwarded). */
static void exercise(unsigned port, long ok_status, bool direct)
{
	static const char json[] = "{\"external_id\":\"marker-4242\",\"duration\":4242}";
	uint8_t pb[128], batch[512];
	size_t pn = pb_of("{\"duration\":77}", pb, sizeof(pb));
	size_t bn = batch_of_two(batch, sizeof(batch));
	long st;

	CU_ASSERT_FATAL(pn > 0 && bn > 0);
	/* valid: plain token (JSON), hashed token (protobuf) */
	CU_ASSERT_EQUAL(req(port, "PATCH", "/v2/traces/sessions/s-1",
			    "Bearer " TOK_PLAIN, "application/json", json,
			    sizeof(json) - 1, NULL), 200);
	CU_ASSERT_EQUAL(req(port, "PATCH", "/v2/traces/sessions/s-2",
			    "Bearer " TOK_HASHED, "application/x-protobuf", pb,
			    pn, "application/x-protobuf"), ok_status);
	/* wrong, missing, org key as device token, Basic, lower-case */
	CU_ASSERT_EQUAL(req(port, "PATCH", "/v2/traces/sessions/s-3",
			    "Bearer " TOK_WRONG, "application/json", json,
			    sizeof(json) - 1, NULL), 401);
	CU_ASSERT_EQUAL(req(port, "PATCH", "/v2/traces/sessions/s-3",
			    "Bearer " TOK_WRONG, "application/x-protobuf", pb,
			    pn, "application/x-protobuf"), 401);
	CU_ASSERT_EQUAL(req(port, "PATCH", "/v2/traces/sessions/s-3", NULL,
			    "application/json", json, sizeof(json) - 1, NULL), 401);
	CU_ASSERT_EQUAL(req(port, "PATCH", "/v2/traces/sessions/s-3",
			    "Bearer " KEY_ENV, "application/json", json,
			    sizeof(json) - 1, NULL), 401);
	CU_ASSERT_EQUAL(req(port, "PATCH", "/v2/traces/sessions/s-3",
			    "Bearer " KEY_FILE, "application/json", json,
			    sizeof(json) - 1, NULL), 401);
	CU_ASSERT_EQUAL(req(port, "PATCH", "/v2/traces/sessions/s-3",
			    "Basic " TOK_PLAIN, "application/json", json,
			    sizeof(json) - 1, NULL), 401);
	CU_ASSERT_EQUAL(req(port, "PATCH", "/v2/traces/sessions/s-3",
			    TOK_PLAIN, "application/json", json,
			    sizeof(json) - 1, NULL), 401);
	/* a wrong token on a request that is wrong in other ways too */
	CU_ASSERT_EQUAL(req(port, "PATCH", "/v2/traces/sessions/%zz",
			    "Bearer " TOK_WRONG, "text/plain", "x", 1, NULL), 401);
	/* valid token, invalid bodies, ids, types */
	CU_ASSERT_EQUAL(req(port, "PATCH", "/v2/traces/sessions/s-4",
			    "Bearer " TOK_PLAIN, "application/json",
			    "{\"duration\":\"x\"}", 16, NULL), 400);
	CU_ASSERT_EQUAL(req(port, "PATCH", "/v2/traces/sessions/s-4",
			    "Bearer " TOK_HASHED, "application/x-protobuf",
			    "\xff\xff", 2, "application/x-protobuf"), 400);
	CU_ASSERT_EQUAL(req(port, "PATCH", "/v2/traces/sessions/%zz",
			    "Bearer " TOK_PLAIN, "application/json", json,
			    sizeof(json) - 1, NULL), 400);
	CU_ASSERT_EQUAL(req(port, "PATCH", "/v2/traces/sessions/s-4",
			    "Bearer " TOK_PLAIN, "text/plain", json,
			    sizeof(json) - 1, NULL), 415);
	/* a batch with a good and a bad item */
	CU_ASSERT_EQUAL(req(port, "POST", "/v1/updates", "Bearer " TOK_PLAIN,
			    "application/x-protobuf", batch, bn, NULL), 200);
	if (direct) {
		/* upstream errors: 401 (the key refused), 500, 403, resets
		 * (two: libcurl itself retries once when a reused connection
		 * dies) */
		fu_step steps[] = {
			{ FU_STATUS, 401, "{\"code\":\"unauthorized\",\"message\":\"invalid API key\"}", NULL, 0 },
			{ FU_STATUS, 500, NULL, NULL, 0 },
			{ FU_STATUS, 403, NULL, NULL, 0 },
			{ FU_RESET, 0, NULL, NULL, 0 },
			{ FU_RESET, 0, NULL, NULL, 0 },
		};

		fu_script(fu, steps, 5);
		CU_ASSERT_EQUAL(req(port, "PATCH", "/v2/traces/sessions/s-5",
				    "Bearer " TOK_PLAIN, "application/json",
				    json, sizeof(json) - 1, NULL), 401);
		CU_ASSERT_EQUAL(req(port, "PATCH", "/v2/traces/sessions/s-5",
				    "Bearer " TOK_PLAIN, "application/json",
				    json, sizeof(json) - 1, NULL), 500);
		CU_ASSERT_EQUAL(req(port, "PATCH", "/v2/traces/sessions/s-5",
				    "Bearer " TOK_HASHED, "application/x-protobuf",
				    pb, pn, "application/x-protobuf"), 403);
		CU_ASSERT_EQUAL(req(port, "PATCH", "/v2/traces/sessions/s-5",
				    "Bearer " TOK_HASHED, "application/x-protobuf",
				    pb, pn, "application/x-protobuf"), 502);
		/* a reset left over (a fresh connection is not retried) */
		st = req(port, "PATCH", "/v2/traces/sessions/s-5",
			 "Bearer " TOK_PLAIN, "application/json", json,
			 sizeof(json) - 1, NULL);
		CU_ASSERT(st == 200 || st == 502);
	}
	/* what an operator reads */
	CU_ASSERT_EQUAL(req(port, "GET", "/metrics", NULL, NULL, NULL, 0, NULL), 200);
	CU_ASSERT_EQUAL(req(port, "GET", "/healthz", NULL, NULL, NULL, 0, NULL), 200);
	CU_ASSERT_EQUAL(req(port, "GET", "/readyz", NULL, NULL, NULL, 0, NULL), 200);
	CU_ASSERT_EQUAL(req(port, "GET", "/nothing", "Bearer " TOK_PLAIN, NULL,
			    NULL, 0, NULL), 404);
}

/* Reads /proc/PID/cmdline (NULs as spaces). */
static char *cmdline_of(pid_t pid, size_t *n)
{
	char path[64], *s;
	size_t i;

	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	s = tu_read_file(path, n);
	for (i = 0; s && i < *n; i++)
		if (s[i] == '\0')
			s[i] = ' ';
	return s;
}

/* No device token or digest in any request the upstream got; every
 * request carried exactly the expected key. */
static void check_upstream(const char *key)
{
	size_t i, n = fu_count(fu);
	char want[128];

	snprintf(want, sizeof(want), "Bearer %s", key);
	CU_ASSERT(n > 0);
	for (i = 0; i < n; i++) {
		fu_request r;

		if (!fu_get(fu, i, &r))
			continue;
		CU_ASSERT_STRING_EQUAL(r.authorization, want);
		/* from 2: tokens and digests (the key is expected here) */
		CU_ASSERT_EQUAL(leaks("upstream path", r.path, strlen(r.path), 2), 0);
		CU_ASSERT_EQUAL(leaks("upstream body", r.body, r.body_len, 2), 0);
		CU_ASSERT_EQUAL(leaks("upstream content type", r.content_type,
				      strlen(r.content_type), 2), 0);
		CU_ASSERT_EQUAL(leaks("upstream accept", r.accept,
				      strlen(r.accept), 2), 0);
		fu_request_free(&r);
	}
}

/* Leaks in every file under d (the spool). */
static int leaks_in_dir(const char *d)
{
	DIR *dp = opendir(d);
	struct dirent *e;
	int found = 0;

	if (dp == NULL)
		return 0;
	while ((e = readdir(dp)) != NULL) {
		char path[600];
		size_t n = 0;
		char *text;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", d, e->d_name);
		text = tu_read_file(path, &n);
		found += leaks(path, text, n, 0);
		free(text);
	}
	closedir(dp);
	return found;
}

static void rm_rf(const char *d)
{
	DIR *dp = opendir(d);
	struct dirent *e;

	if (dp == NULL)
		return;
	while ((e = readdir(dp)) != NULL) {
		char path[600];

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", d, e->d_name);
		unlink(path);
	}
	closedir(dp);
	rmdir(d);
}

/* ==== Tests ==== */

/* One gateway run: start, exercise, SIGHUP, SIGTERM; then look for the
 * secrets everywhere. */
static void run_gateway(bool key_from_file, bool log_bodies, bool spool)
{
	char up[64], spool_dir[300];
	const char *args[24];
	const char *env_key[] = { "ORQ_API_KEY=" KEY_ENV, NULL };
	size_t n = 0, cl = 0, seen0;
	tu_proc p;
	char *cmd;
	int k = 0;

	snprintf(up, sizeof(up), "http://127.0.0.1:%u", (unsigned)fu_port(fu));
	snprintf(spool_dir, sizeof(spool_dir), "%s/spool", dir);
	args[k++] = "--listen";
	args[k++] = "127.0.0.1:0";
	args[k++] = "--upstream";
	args[k++] = up;
	args[k++] = "--device-tokens";
	args[k++] = tokens_path;
	args[k++] = "--max-attempts";
	args[k++] = "1";
	args[k++] = "--threads";
	args[k++] = "2";
	args[k++] = "--log-level";
	args[k++] = "debug";
	if (key_from_file) {
		/* ORQ_API_KEY is set too: the file wins, the env key
		 * must not show anywhere either */
		args[k++] = "--api-key-file";
		args[k++] = key_path;
	}
	if (log_bodies)
		args[k++] = "--log-bodies";
	if (spool) {
		args[k++] = "--spool";
		args[k++] = spool_dir;
	}
	args[k] = NULL;
	fu_clear(fu);
	seen0 = seen_len;
	CU_ASSERT_FATAL(tu_proc_spawn(&p, "session-gateway", args, env_key) == 0);
	tu_proc_port(&p, 20.0);
	CU_ASSERT_FATAL(p.port != 0);
	cmd = cmdline_of(p.pid, &cl);
	CU_ASSERT_PTR_NOT_NULL(cmd);
	CU_ASSERT_EQUAL(leaks("/proc/PID/cmdline", cmd, cl, 0), 0);
	free(cmd);
	exercise(p.port, spool ? 202 : 200, !spool);
	/* a reload logs too */
	kill(p.pid, SIGHUP);
	tu_proc_drain(&p, 0.3);
	CU_ASSERT_EQUAL(req(p.port, "PATCH", "/v2/traces/sessions/s-6",
			    "Bearer " TOK_PLAIN, "application/json",
			    "{\"duration\":6}", 14, NULL), 200);
	if (spool) {
		/* let the forwarders deliver before stopping */
		double end = tu_mono() + 10;

		while (fu_count(fu) < 4 && tu_mono() < end)
			tu_proc_drain(&p, 0.05);
	}
	kill(p.pid, SIGTERM);
	CU_ASSERT_EQUAL(tu_proc_reap(&p, 30.0), 0);
	n = p.log_len;
	/* the checks can fail: the log and the answers hold what they
	 * should (bodies only with --log-bodies) */
	CU_ASSERT(n > 0);
	CU_ASSERT_PTR_NOT_NULL(memmem(seen + seen0, seen_len - seen0,
				      "unknown device token", 20));
	CU_ASSERT_EQUAL(strstr(p.log, "marker-4242") != NULL, log_bodies);
	/* the secrets */
	CU_ASSERT_EQUAL(leaks("the gateway's stderr/stdout", p.log, n, 0), 0);
	CU_ASSERT_EQUAL(leaks("responses and /metrics", seen + seen0,
			      seen_len - seen0, 0), 0);
	check_upstream(key_from_file ? KEY_FILE : KEY_ENV);
	if (spool) {
		CU_ASSERT(fu_count(fu) >= 4);
		CU_ASSERT_EQUAL(leaks_in_dir(spool_dir), 0);
		rm_rf(spool_dir);
	}
	tu_proc_free(&p);
}

static void env_key_with_log_bodies_leaks_nothing(void)
{
	run_gateway(false, true, false);
}

static void key_file_without_log_bodies_leaks_nothing(void)
{
	run_gateway(true, false, false);
}

static void spool_mode_leaks_nothing_to_disk(void)
{
	run_gateway(true, true, true);
}

/* An upstream that quotes the key back in its error body: the device
 * must not get it. */
static void upstream_echoing_the_key_does_not_reach_the_device(void)
{
	char up[64];
	const char *args[] = { "--listen", "127.0.0.1:0", "--upstream", up,
			       "--device-tokens", tokens_path, "--max-attempts",
			       "1", NULL };
	const char *env_key[] = { "ORQ_API_KEY=" KEY_ENV, NULL };
	fu_step steps[] = {
		{ FU_STATUS, 401, "{\"message\":\"invalid API key " KEY_ENV "\"}", NULL, 0 },
		{ FU_STATUS, 401, "{\"message\":\"invalid API key " KEY_ENV "\"}", NULL, 0 },
		{ FU_STATUS, 401, "{\"message\":\"invalid API key " KEY_ENV "\"}", NULL, 0 },
	};
	static const char json[] = "{\"duration\":1}";
	uint8_t batch[512];
	size_t bn = batch_of_two(batch, sizeof(batch)), seen0 = seen_len;
	tu_proc p;

	snprintf(up, sizeof(up), "http://127.0.0.1:%u", (unsigned)fu_port(fu));
	fu_clear(fu);
	CU_ASSERT_FATAL(tu_proc_spawn(&p, "session-gateway", args, env_key) == 0);
	tu_proc_port(&p, 20.0);
	CU_ASSERT_FATAL(p.port != 0);
	fu_script(fu, steps, 3);
	CU_ASSERT_EQUAL(req(p.port, "PATCH", "/v2/traces/sessions/e", "Bearer " TOK_PLAIN,
			    "application/json", json, sizeof(json) - 1, NULL), 401);
	CU_ASSERT_EQUAL(req(p.port, "PATCH", "/v2/traces/sessions/e", "Bearer " TOK_PLAIN,
			    "application/json", json, sizeof(json) - 1,
			    "application/x-protobuf"), 401);
	CU_ASSERT_EQUAL(req(p.port, "POST", "/v1/updates", "Bearer " TOK_PLAIN,
			    "application/x-protobuf", batch, bn, NULL), 200);
	kill(p.pid, SIGTERM);
	CU_ASSERT_EQUAL(tu_proc_reap(&p, 30.0), 0);
	CU_ASSERT_EQUAL(fu_count(fu), 3);
	CU_ASSERT_EQUAL(leaks("answers relaying the upstream", seen + seen0,
			      seen_len - seen0, 0), 0);
	CU_ASSERT_EQUAL(leaks("the gateway's stderr", p.log, p.log_len, 0), 0);
	tu_proc_free(&p);
}

/* The key is never a flag or a config key, and the refusal does not
 * print it. */
static void key_as_flag_or_config_key_is_refused_unprinted(void)
{
	char conf[300];
	const char *flag1[] = { "--api-key", KEY_ENV, "--allow-anonymous", NULL };
	const char *flag2[] = { "--api-key=" KEY_ENV, "--allow-anonymous", NULL };
	const char *file[] = { "--config", conf, "--allow-anonymous", NULL };
	const char *const *runs[] = { flag1, flag2, file };
	const char *env_none[] = { NULL };
	FILE *f;
	size_t i;

	snprintf(conf, sizeof(conf), "%s/gw.conf", dir);
	f = fopen(conf, "w");
	CU_ASSERT_FATAL(f != NULL);
	fputs("# the key must not be read from here\napi-key = " KEY_ENV "\n", f);
	fclose(f);
	for (i = 0; i < 3; i++) {
		tu_proc p;

		CU_ASSERT_FATAL(tu_proc_spawn(&p, "session-gateway", runs[i], env_none) == 0);
		CU_ASSERT_EQUAL(tu_proc_reap(&p, 20.0), 2);
		CU_ASSERT(p.log_len > 0);
		CU_ASSERT_EQUAL(leaks("a refusal", p.log, p.log_len, 0), 0);
		tu_proc_free(&p);
	}
	unlink(conf);
}

/* ==== Registration ==== */

static int suite_init(void)
{
	char hx[65];
	FILE *f;

	snprintf(dir, sizeof(dir), "/tmp/sw-secrets-%d", (int)getpid());
	if (mkdir(dir, 0700) != 0)
		return -1;
	snprintf(tokens_path, sizeof(tokens_path), "%s/tokens", dir);
	snprintf(key_path, sizeof(key_path), "%s/key", dir);
	sha256_hex(TOK_HASHED, hx);
	f = fopen(tokens_path, "w");
	if (f == NULL)
		return -1;
	fprintf(f, "# devices\ndev-plain %s\ndev-hashed sha256:%s\n", TOK_PLAIN, hx);
	fclose(f);
	f = fopen(key_path, "w");
	if (f == NULL)
		return -1;
	fputs(KEY_FILE "\n", f);
	fclose(f);
	fu = fu_start(0);
	return fu ? 0 : -1;
}

static int suite_clean(void)
{
	fu_stop(fu);
	unlink(tokens_path);
	unlink(key_path);
	rm_rf(dir);
	free(seen);
	seen = NULL;
	seen_len = 0;
	return 0;
}

int init_secrets_tests(void)
{
	CU_pSuite s = CU_add_suite("secrets", suite_init, suite_clean);

	if (s == NULL)
		return -1;
	CU_add_test(s, "env_key_with_log_bodies_leaks_nothing", env_key_with_log_bodies_leaks_nothing);
	CU_add_test(s, "key_file_without_log_bodies_leaks_nothing", key_file_without_log_bodies_leaks_nothing);
	CU_add_test(s, "spool_mode_leaks_nothing_to_disk", spool_mode_leaks_nothing_to_disk);
	CU_add_test(s, "upstream_echoing_the_key_does_not_reach_the_device", upstream_echoing_the_key_does_not_reach_the_device);
	CU_add_test(s, "key_as_flag_or_config_key_is_refused_unprinted", key_as_flag_or_config_key_is_refused_unprinted);
	return 0;
}
