/* test_gateway_config.c - session-gateway's configuration (flags, file,
 * environment, --help, the key never printed) and the program itself as a
 * subprocess: refusing to start, /healthz, SIGHUP reload, SIGTERM drain. */
#include <CUnit/CUnit.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fake_upstream.h"
#include "gw.h"
#include "testutil.h"

#define KEY "sk-org-NEVER-PRINT-5d1e"

static char dir[128];

/* Writes text to dir/name and returns the path (static buffer per call
 * site: copy it if needed). */
static const char *write_file(const char *name, const char *text, char *path,
			      size_t cap)
{
	FILE *f;

	snprintf(path, cap, "%s/%s", dir, name);
	f = fopen(path, "w");
	if (f == NULL)
		return NULL;
	fputs(text, f);
	fclose(f);
	return path;
}

/* Runs gw_config_parse_args on a NULL-terminated list of arguments. */
static int parse(gw_config *c, const char *const *args, char *err, size_t n)
{
	char *argv[64];
	int argc = 0;

	argv[argc++] = (char *)(uintptr_t)"session-gateway";
	while (args && *args && argc < 63)
		argv[argc++] = (char *)(uintptr_t)*args++;
	argv[argc] = NULL;
	err[0] = '\0';
	return gw_config_parse_args(c, argc, argv, err, n);
}

/* ==== In-process: flags, file, environment ==== */

static void defaults_are_the_documented_ones(void)
{
	gw_config c;

	gw_config_defaults(&c);
	CU_ASSERT_STRING_EQUAL(c.listen_host, "127.0.0.1");
	CU_ASSERT_EQUAL(c.listen_port, 8080);
	CU_ASSERT_STRING_EQUAL(c.upstream, "https://my.orq.ai");
	CU_ASSERT_PTR_NULL(c.api_key);
	CU_ASSERT_EQUAL(c.max_body, 65536);
	CU_ASSERT_EQUAL(c.max_batch_items, 100);
	CU_ASSERT_EQUAL(c.max_concurrent, 256);
	{
		long cpus = sysconf(_SC_NPROCESSORS_ONLN);

		CU_ASSERT_EQUAL(c.threads, cpus < 2 ? 2u : cpus > 64 ? 64u : (unsigned)cpus);
	}
	CU_ASSERT_EQUAL(c.client_timeout_s, 10);
	CU_ASSERT_EQUAL(c.request_timeout_s, 60);
	CU_ASSERT_EQUAL(c.max_conns_per_ip, 0);
	CU_ASSERT_EQUAL(c.connect_timeout_ms, 2000);
	CU_ASSERT_EQUAL(c.upstream_timeout_ms, 10000);
	CU_ASSERT_EQUAL(c.max_attempts, 4);
	CU_ASSERT_EQUAL(c.retry_budget_ms, 30000);
	CU_ASSERT_EQUAL(c.backoff_base_ms, 100);
	CU_ASSERT_EQUAL(c.backoff_max_ms, 5000);
	CU_ASSERT_FALSE(c.allow_anonymous);
	CU_ASSERT_FALSE(c.log_bodies);
	CU_ASSERT_EQUAL(c.log_level, GW_LOG_INFO);
}

static void every_flag_sets_its_member(void)
{
	static const char *const args[] = {
		"--listen", "0.0.0.0:9000", "--upstream", "http://10.0.0.1:81/",
		"--api-key-file", "/k", "--device-tokens", "/t",
		"--allow-anonymous", "--max-body=1234", "--max-batch-items", "7",
		"--max-concurrent", "9", "--threads", "3", "--client-timeout", "4",
		"--connect-timeout-ms", "50", "--upstream-timeout-ms", "60",
		"--max-attempts", "2", "--retry-budget-ms", "70",
		"--backoff-base-ms", "5", "--backoff-max-ms", "6", "--log-bodies",
		"--log-level", "debug", NULL
	};
	gw_config c;
	char err[256];

	gw_config_defaults(&c);
	CU_ASSERT_EQUAL_FATAL(parse(&c, args, err, sizeof(err)), 0);
	CU_ASSERT_STRING_EQUAL(c.listen_host, "0.0.0.0");
	CU_ASSERT_EQUAL(c.listen_port, 9000);
	CU_ASSERT_STRING_EQUAL(c.upstream, "http://10.0.0.1:81");
	CU_ASSERT_STRING_EQUAL(c.api_key_file, "/k");
	CU_ASSERT_STRING_EQUAL(c.device_tokens, "/t");
	CU_ASSERT_TRUE(c.allow_anonymous);
	CU_ASSERT_EQUAL(c.max_body, 1234);
	CU_ASSERT_EQUAL(c.max_batch_items, 7);
	CU_ASSERT_EQUAL(c.max_concurrent, 9);
	CU_ASSERT_EQUAL(c.threads, 3);
	CU_ASSERT_EQUAL(c.client_timeout_s, 4);
	CU_ASSERT_EQUAL(c.connect_timeout_ms, 50);
	CU_ASSERT_EQUAL(c.upstream_timeout_ms, 60);
	CU_ASSERT_EQUAL(c.max_attempts, 2);
	CU_ASSERT_EQUAL(c.retry_budget_ms, 70);
	CU_ASSERT_EQUAL(c.backoff_base_ms, 5);
	CU_ASSERT_EQUAL(c.backoff_max_ms, 6);
	CU_ASSERT_TRUE(c.log_bodies);
	CU_ASSERT_EQUAL(c.log_level, GW_LOG_DEBUG);
	gw_config_free(&c);
}

static void flags_override_the_config_file_whatever_the_order(void)
{
	char path[256], arg[300];
	const char *args[4];
	gw_config c;
	char err[256];

	write_file("a.conf",
		   "# example\n"
		   "max-body = 1000\n"
		   "  threads=2\n"
		   "\n"
		   "listen = 127.0.0.1:7000  \n"
		   "allow-anonymous = yes\n"
		   "log-level = warn\n",
		   path, sizeof(path));
	args[0] = "--max-body";
	args[1] = "2000";
	snprintf(arg, sizeof(arg), "--config=%s", path);
	args[2] = arg;
	args[3] = NULL;
	gw_config_defaults(&c);
	CU_ASSERT_EQUAL_FATAL(parse(&c, args, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(c.max_body, 2000);     /* flag wins */
	CU_ASSERT_EQUAL(c.threads, 2);         /* file over default */
	CU_ASSERT_EQUAL(c.listen_port, 7000);
	CU_ASSERT_TRUE(c.allow_anonymous);
	CU_ASSERT_EQUAL(c.log_level, GW_LOG_WARN);
	CU_ASSERT_EQUAL(c.max_batch_items, 100); /* untouched default */
}

static void config_file_errors_name_file_line_and_key(void)
{
	static const struct {
		const char *text;
		const char *want[3];
	} t[] = {
		{ "threads = 2\nbogus = 1\n", { ":2:", "bogus", NULL } },
		{ "\n\nmax-body = lots\n", { ":3:", "max-body", "lots" } },
		{ "just words\n", { ":1:", "key = value", NULL } },
		{ "api-key = " KEY "\n", { ":1:", "api-key-file", NULL } },
		{ "log-level = loud\n", { ":1:", "log-level", "loud" } },
	};
	char path[256], err[512];
	size_t i, k;
	gw_config c;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		write_file("bad.conf", t[i].text, path, sizeof(path));
		gw_config_defaults(&c);
		err[0] = '\0';
		CU_ASSERT_EQUAL(gw_config_load_file(&c, path, err, sizeof(err)), -1);
		for (k = 0; k < 3 && t[i].want[k]; k++)
			CU_ASSERT_PTR_NOT_NULL(strstr(err, t[i].want[k]));
		CU_ASSERT_PTR_NULL(strstr(err, KEY));
	}
	err[0] = '\0';
	CU_ASSERT_EQUAL(gw_config_load_file(&c, "/nonexistent.conf", err, sizeof(err)), -1);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "/nonexistent.conf"));
}

static void bad_values_name_the_option(void)
{
	static const struct {
		const char *a, *b;
		const char *want;
	} t[] = {
		{ "--max-body", "abc", "--max-body" },
		{ "--max-body", "0", "--max-body" },
		{ "--max-body", "-5", "--max-body" },
		{ "--max-body", "99999999999999999999999", "--max-body" },
		{ "--max-body", "12k", "--max-body" },
		{ "--threads", "99999", "--threads" },
		{ "--max-attempts", "0", "--max-attempts" },
		{ "--client-timeout", "", "--client-timeout" },
		{ "--listen", "1.2.3.4", "--listen" },
		{ "--listen", "localhost:80", "--listen" },
		{ "--listen", "127.0.0.1:70000", "--listen" },
		{ "--upstream", "ftp://x", "--upstream" },
		{ "--log-level", "loud", "--log-level" },
		{ "--allow-anonymous=maybe", NULL, "--allow-anonymous" },
		{ "--nope", NULL, "--nope" },
		{ "--threads", NULL, "--threads" },
		{ "stray", NULL, "stray" },
		{ "--api-key", KEY, "--api-key-file" },
		{ "--api-key=" KEY, NULL, "--api-key-file" },
	};
	const char *args[3];
	char err[512];
	size_t i;
	gw_config c;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		args[0] = t[i].a;
		args[1] = t[i].b;
		args[2] = NULL;
		gw_config_defaults(&c);
		CU_ASSERT_EQUAL(parse(&c, args, err, sizeof(err)), -1);
		CU_ASSERT_PTR_NOT_NULL(strstr(err, t[i].want));
		if (!strstr(err, t[i].want))
			fprintf(stderr, "\n%s %s: %s\n", t[i].a, t[i].b ? t[i].b : "", err);
		CU_ASSERT_PTR_NULL(strstr(err, KEY));
	}
}

static void key_file_wins_over_env_and_is_never_printed(void)
{
	char kpath[256], err[512];
	gw_config c;

	setenv("ORQ_API_KEY", "sk-from-env-0001", 1);
	/* env alone */
	gw_config_defaults(&c);
	c.allow_anonymous = true;
	CU_ASSERT_EQUAL(gw_config_finish(&c, err, sizeof(err)), 0);
	CU_ASSERT_STRING_EQUAL(c.api_key ? c.api_key : "", "sk-from-env-0001");
	gw_config_free(&c);
	CU_ASSERT_PTR_NULL(c.api_key);
	/* the file wins; surrounding whitespace is dropped */
	write_file("key", "  " KEY "\n\n", kpath, sizeof(kpath));
	gw_config_defaults(&c);
	c.allow_anonymous = true;
	snprintf(c.api_key_file, sizeof(c.api_key_file), "%s", kpath);
	CU_ASSERT_EQUAL(gw_config_finish(&c, err, sizeof(err)), 0);
	CU_ASSERT_STRING_EQUAL(c.api_key ? c.api_key : "", KEY);
	gw_config_free(&c);
	/* a key with a space is refused without being echoed */
	write_file("key", KEY " tail\n", kpath, sizeof(kpath));
	gw_config_defaults(&c);
	c.allow_anonymous = true;
	snprintf(c.api_key_file, sizeof(c.api_key_file), "%s", kpath);
	CU_ASSERT_EQUAL(gw_config_finish(&c, err, sizeof(err)), -1);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "--api-key-file"));
	CU_ASSERT_PTR_NULL(strstr(err, KEY));
	gw_config_free(&c);
	/* empty and missing key files */
	write_file("key", "\n", kpath, sizeof(kpath));
	gw_config_defaults(&c);
	c.allow_anonymous = true;
	snprintf(c.api_key_file, sizeof(c.api_key_file), "%s", kpath);
	CU_ASSERT_EQUAL(gw_config_finish(&c, err, sizeof(err)), -1);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "empty"));
	snprintf(c.api_key_file, sizeof(c.api_key_file), "%s/none", dir);
	CU_ASSERT_EQUAL(gw_config_finish(&c, err, sizeof(err)), -1);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "/none"));
	gw_config_free(&c);
	/* no key at all */
	unsetenv("ORQ_API_KEY");
	gw_config_defaults(&c);
	c.allow_anonymous = true;
	CU_ASSERT_EQUAL(gw_config_finish(&c, err, sizeof(err)), -1);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "ORQ_API_KEY"));
	/* a key but neither tokens nor anonymous */
	setenv("ORQ_API_KEY", "sk-from-env-0001", 1);
	gw_config_defaults(&c);
	CU_ASSERT_EQUAL(gw_config_finish(&c, err, sizeof(err)), -1);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "--device-tokens"));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "--allow-anonymous"));
	gw_config_free(&c);
	/* a request deadline inside the idle timeout would cut idle
	 * keep-alive connections as slow clients; 0 turns it off */
	setenv("ORQ_API_KEY", "sk-from-env-0001", 1);
	gw_config_defaults(&c);
	c.allow_anonymous = true;
	c.client_timeout_s = 30;
	c.request_timeout_s = 30;
	CU_ASSERT_EQUAL(gw_config_finish(&c, err, sizeof(err)), -1);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "--request-timeout (30 s)"));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "--client-timeout"));
	c.request_timeout_s = 0;
	CU_ASSERT_EQUAL(gw_config_finish(&c, err, sizeof(err)), 0);
	gw_config_free(&c);
	unsetenv("ORQ_API_KEY");
}

static const char *const all_flags[] = {
	"--listen", "--upstream", "--api-key-file", "--device-tokens",
	"--allow-anonymous", "--max-body", "--max-batch-items",
	"--max-concurrent", "--threads", "--client-timeout", "--request-timeout",
	"--max-connections-per-ip",
	"--connect-timeout-ms", "--upstream-timeout-ms", "--max-attempts",
	"--retry-budget-ms", "--backoff-base-ms", "--backoff-max-ms",
	"--log-bodies", "--log-level", "--config", "--help", NULL
};

static void help_lists_every_option_with_its_default(void)
{
	char *text = NULL;
	size_t len = 0, i;
	FILE *f = open_memstream(&text, &len);

	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	gw_config_usage(f);
	fclose(f);
	for (i = 0; all_flags[i]; i++) {
		const char *p = strstr(text, all_flags[i]);

		CU_ASSERT_PTR_NOT_NULL(p);
		if (p && strcmp(all_flags[i], "--help") && strcmp(all_flags[i], "--config")) {
			const char *eol = strchr(p, '\n');
			const char *d = strstr(p, "(default: ");

			CU_ASSERT(d != NULL && eol != NULL && d < eol);
		}
	}
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "(default: 65536)"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "(default: 127.0.0.1:8080)"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "ORQ_API_KEY"));
	free(text);
}

/* ==== The program ==== */

static size_t sink(char *d, size_t s, size_t n, void *u)
{
	(void)d;
	(void)u;
	return s * n;
}

static long get_status(unsigned port, const char *method, const char *path,
		       const char *auth)
{
	CURL *h = curl_easy_init();
	struct curl_slist *hl = NULL;
	char url[256], a[256];
	long st = 0;

	snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", port, path);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 15000L);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink);
	if (!strcmp(method, "PATCH")) {
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "PATCH");
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, "{\"duration\":1}");
		hl = curl_slist_append(hl, "Content-Type: application/json");
		if (auth) {
			snprintf(a, sizeof(a), "Authorization: Bearer %s", auth);
			hl = curl_slist_append(hl, a);
		}
		curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
	}
	if (curl_easy_perform(h) == CURLE_OK)
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &st);
	curl_slist_free_all(hl);
	curl_easy_cleanup(h);
	return st;
}

static void program_refuses_to_start_without_tokens_or_key(void)
{
	static const char *const env_key[] = { "ORQ_API_KEY=" KEY, NULL };
	static const char *const env_none[] = { NULL };
	static const char *const no_tokens[] = { "--listen", "127.0.0.1:0", NULL };
	static const char *const anon[] = { "--listen", "127.0.0.1:0",
					    "--allow-anonymous", NULL };
	static const char *const bad[] = { "--max-body", "huge", NULL };
	tu_proc p;

	CU_ASSERT_EQUAL_FATAL(tu_proc_spawn(&p, "session-gateway", no_tokens, env_key), 0);
	CU_ASSERT_EQUAL(tu_proc_reap(&p, 10), 2);
	CU_ASSERT_PTR_NOT_NULL(strstr(p.log, "--allow-anonymous"));
	CU_ASSERT_PTR_NULL(strstr(p.log, KEY));
	tu_proc_free(&p);

	CU_ASSERT_EQUAL_FATAL(tu_proc_spawn(&p, "session-gateway", anon, env_none), 0);
	CU_ASSERT_EQUAL(tu_proc_reap(&p, 10), 2);
	CU_ASSERT_PTR_NOT_NULL(strstr(p.log, "ORQ_API_KEY"));
	tu_proc_free(&p);

	CU_ASSERT_EQUAL_FATAL(tu_proc_spawn(&p, "session-gateway", bad, env_key), 0);
	CU_ASSERT_EQUAL(tu_proc_reap(&p, 10), 2);
	CU_ASSERT_PTR_NOT_NULL(strstr(p.log, "--max-body"));
	CU_ASSERT_PTR_NULL(strstr(p.log, KEY));
	tu_proc_free(&p);
}

static void program_help_lists_every_option(void)
{
	static const char *const help[] = { "--help", NULL };
	static const char *const env_key[] = { "ORQ_API_KEY=" KEY, NULL };
	char bin[512], cmd[700], out[16384];
	FILE *f;
	size_t n, i;

	tu_bin("session-gateway", bin, sizeof(bin));
	snprintf(cmd, sizeof(cmd), "ORQ_API_KEY=%s %s --help", KEY, bin);
	f = popen(cmd, "r");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	n = fread(out, 1, sizeof(out) - 1, f);
	out[n] = '\0';
	CU_ASSERT_EQUAL(pclose(f), 0);
	for (i = 0; all_flags[i]; i++)
		CU_ASSERT_PTR_NOT_NULL(strstr(out, all_flags[i]));
	CU_ASSERT_PTR_NULL(strstr(out, KEY));
	(void)help;
	(void)env_key;
}

/* `session-gateway --version` prints the VERSION file's version and
 * exits 0 before anything else (no key, no tokens needed). */
static void program_version_prints_the_version_file(void)
{
	char *v = tu_read_file("VERSION", NULL), bin[512], cmd[700], out[256],
	     want[64];
	FILE *f;
	size_t n;

	CU_ASSERT_PTR_NOT_NULL_FATAL(v);
	v[strcspn(v, "\n")] = '\0';
	snprintf(want, sizeof(want), "session-gateway %s\n", v);
	tu_bin("session-gateway", bin, sizeof(bin));
	snprintf(cmd, sizeof(cmd), "env -u ORQ_API_KEY %s --version", bin);
	f = popen(cmd, "r");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	n = fread(out, 1, sizeof(out) - 1, f);
	out[n] = '\0';
	CU_ASSERT_EQUAL(pclose(f), 0);
	CU_ASSERT_STRING_EQUAL(out, want);
	free(v);
}

typedef struct slow_arg {
	unsigned port;
	long status;
} slow_arg;

static void *slow_patch(void *v)
{
	slow_arg *a = v;

	a->status = get_status(a->port, "PATCH", "/v2/traces/sessions/slow", NULL);
	return NULL;
}

static void program_serves_and_drains_on_sigterm(void)
{
	fake_upstream *fu = fu_start(0);
	char upstream[64];
	const char *args[] = { "--listen", "127.0.0.1:0", "--allow-anonymous",
			       "--upstream", upstream, "--log-level", "debug",
			       NULL };
	static const char *const env[] = { "ORQ_API_KEY=" KEY, NULL };
	fu_step step = { FU_DELAY, 0, NULL, NULL, 1500 };
	slow_arg a;
	pthread_t th;
	tu_proc p;

	CU_ASSERT_PTR_NOT_NULL_FATAL(fu);
	snprintf(upstream, sizeof(upstream), "http://127.0.0.1:%u",
		 (unsigned)fu_port(fu));
	CU_ASSERT_EQUAL_FATAL(tu_proc_spawn(&p, "session-gateway", args, env), 0);
	a.port = tu_proc_port(&p, 10);
	CU_ASSERT_FATAL(a.port > 0);
	CU_ASSERT_EQUAL(get_status(a.port, "GET", "/healthz", NULL), 200);
	CU_ASSERT_EQUAL(get_status(a.port, "GET", "/readyz", NULL), 200);
	fu_script(fu, &step, 1);
	a.status = -1;
	pthread_create(&th, NULL, slow_patch, &a);
	CU_ASSERT_EQUAL(fu_wait_count(fu, 1, 10), 1);
	kill(p.pid, SIGTERM);
	pthread_join(th, NULL);
	CU_ASSERT_EQUAL(a.status, 200); /* in flight when SIGTERM came */
	CU_ASSERT_EQUAL(tu_proc_reap(&p, 20), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(p.log, "\"msg\":\"stopped\""));
	CU_ASSERT_PTR_NULL(strstr(p.log, KEY));
	tu_proc_free(&p);
	fu_stop(fu);
}

static void program_reloads_tokens_on_sighup(void)
{
	fake_upstream *fu = fu_start(0);
	char upstream[64], tpath[256];
	const char *args[] = { "--listen", "127.0.0.1:0", "--device-tokens",
			       tpath, "--upstream", upstream, NULL };
	static const char *const env[] = { "ORQ_API_KEY=" KEY, NULL };
	unsigned port;
	double end;
	long st = 0;
	tu_proc p;

	CU_ASSERT_PTR_NOT_NULL_FATAL(fu);
	snprintf(upstream, sizeof(upstream), "http://127.0.0.1:%u",
		 (unsigned)fu_port(fu));
	write_file("tokens", "dev1 first-token-0123456789\n", tpath, sizeof(tpath));
	CU_ASSERT_EQUAL_FATAL(tu_proc_spawn(&p, "session-gateway", args, env), 0);
	port = tu_proc_port(&p, 10);
	CU_ASSERT_FATAL(port > 0);
	CU_ASSERT_EQUAL(get_status(port, "PATCH", "/v2/traces/sessions/t", "first-token-0123456789"), 200);
	CU_ASSERT_EQUAL(get_status(port, "PATCH", "/v2/traces/sessions/t", "second-token-0123456789"), 401);
	/* a broken file keeps the old set */
	write_file("tokens", "dev2\n", tpath, sizeof(tpath));
	kill(p.pid, SIGHUP);
	end = tu_mono() + 10;
	while (!strstr(p.log, "not reloaded") && tu_mono() < end)
		tu_proc_drain(&p, 0.05);
	CU_ASSERT_PTR_NOT_NULL(strstr(p.log, "not reloaded"));
	CU_ASSERT_EQUAL(get_status(port, "PATCH", "/v2/traces/sessions/t", "first-token-0123456789"), 200);
	/* a good one replaces it */
	write_file("tokens", "dev2 second-token-0123456789\n", tpath, sizeof(tpath));
	kill(p.pid, SIGHUP);
	end = tu_mono() + 10;
	while (tu_mono() < end) {
		st = get_status(port, "PATCH", "/v2/traces/sessions/t", "second-token-0123456789");
		if (st == 200)
			break;
		usleep(10000);
	}
	CU_ASSERT_EQUAL(st, 200);
	CU_ASSERT_EQUAL(get_status(port, "PATCH", "/v2/traces/sessions/t", "first-token-0123456789"), 401);
	kill(p.pid, SIGINT);
	CU_ASSERT_EQUAL(tu_proc_reap(&p, 20), 0);
	CU_ASSERT_PTR_NULL(strstr(p.log, KEY));
	CU_ASSERT_PTR_NULL(strstr(p.log, "first-token"));
	CU_ASSERT_PTR_NULL(strstr(p.log, "second-token"));
	tu_proc_free(&p);
	fu_stop(fu);
}

static int suite_init(void)
{
	snprintf(dir, sizeof(dir), "/tmp/sw-gwcfg-%d", (int)getpid());
	if (mkdir(dir, 0700) != 0 && errno != EEXIST)
		return -1;
	return 0;
}

static int suite_clean(void)
{
	return tu_rmrf(dir);
}

int init_gateway_config_tests(void)
{
	CU_pSuite s = CU_add_suite("gateway_config", suite_init, suite_clean);

	if (s == NULL)
		return -1;
	CU_add_test(s, "defaults_are_the_documented_ones", defaults_are_the_documented_ones);
	CU_add_test(s, "every_flag_sets_its_member", every_flag_sets_its_member);
	CU_add_test(s, "flags_override_the_config_file_whatever_the_order", flags_override_the_config_file_whatever_the_order);
	CU_add_test(s, "config_file_errors_name_file_line_and_key", config_file_errors_name_file_line_and_key);
	CU_add_test(s, "bad_values_name_the_option", bad_values_name_the_option);
	CU_add_test(s, "key_file_wins_over_env_and_is_never_printed", key_file_wins_over_env_and_is_never_printed);
	CU_add_test(s, "help_lists_every_option_with_its_default", help_lists_every_option_with_its_default);
	CU_add_test(s, "program_refuses_to_start_without_tokens_or_key", program_refuses_to_start_without_tokens_or_key);
	CU_add_test(s, "program_help_lists_every_option", program_help_lists_every_option);
	CU_add_test(s, "program_version_prints_the_version_file", program_version_prints_the_version_file);
	CU_add_test(s, "program_serves_and_drains_on_sigterm", program_serves_and_drains_on_sigterm);
	CU_add_test(s, "program_reloads_tokens_on_sighup", program_reloads_tokens_on_sighup);
	return 0;
}
