/* config.c - defaults, then a `key = value` file (--config), then flags,
 * then the environment for the secret.
 *
 * The API key: --api-key-file FILE (from a flag or the config file) wins
 * over the environment variable ORQ_API_KEY; without a key file the
 * variable is used. The key itself is never accepted on the command line
 * or in the config file (it would show in `ps` and in backups), and it is
 * never printed: not in --help, not in an error message. */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "gw.h"
#include "sw_version.h" /* SW_VERSION, from the VERSION file */

/* ==== The option table ==== */

typedef enum opt_type {
	OPT_LISTEN,   /* HOST:PORT */
	OPT_URL,      /* http(s)://... into a char[] */
	OPT_PATH,     /* a file name into a char[] */
	OPT_BOOL,
	OPT_SIZE,     /* size_t */
	OPT_UINT,     /* unsigned */
	OPT_LONG,     /* long */
	OPT_LEVEL,    /* debug|info|warn|error */
	OPT_CONFIG,   /* --config FILE: handled by gw_config_parse_args */
	OPT_HELP,
	OPT_VERSION,
	OPT_COAP,     /* HOST[:PORT] of --coap-listen (5683) */
	OPT_COAPS     /* HOST[:PORT] of --coaps-listen (5684) */
} opt_type;

typedef struct opt {
	const char *name; /* the long flag without -- (also the file key) */
	opt_type type;
	size_t off;       /* offset in gw_config */
	size_t cap;       /* char[] size for strings */
	long long min, max;
	const char *arg;  /* metavariable for --help */
	const char *help;
} opt;

#define OFF(m) offsetof(gw_config, m)
#define CAP(m) sizeof(((gw_config *)0)->m)

static const opt opts[] = {
	{ "listen", OPT_LISTEN, 0, 0, 0, 0, "HOST:PORT",
	  "address to listen on (port 0: any free port)" },
	{ "coap-listen", OPT_COAP, 0, 0, 0, 0, "HOST[:PORT]",
	  "CoAP over plain UDP (port 5683 unless given); needs --coap-anonymous" },
	{ "coaps-listen", OPT_COAPS, 0, 0, 0, 0, "HOST[:PORT]",
	  "CoAP over DTLS 1.2 with pre-shared keys from --device-tokens (port 5684 unless given)" },
	{ "coap-anonymous", OPT_BOOL, OFF(coap_anonymous), 0, 0, 0, NULL,
	  "accept plain CoAP: the link layer authenticates devices (a private APN, a LoRaWAN network server); logged as coap-anonymous" },
	{ "coap-dedup-seconds", OPT_UINT, OFF(coap_dedup_s), 0, 1, 86400,
	  "SECONDS", "CoAP: a resent envelope (same device, session, seq) gets the first answer this long" },
	{ "coap-source-rate", OPT_UINT, OFF(coap_source_rate), 0, 0, 1000000,
	  "N", "CoAP: requests per second one source address may start while over half of --max-concurrent are in flight (5.03 above; 0: no limit)" },
	{ "coap-max-sessions", OPT_UINT, OFF(coap_max_sessions), 0, 1, 10000000,
	  "N", "CoAP: sessions (DTLS or not) kept per endpoint; above it the longest idle is closed" },
	{ "coap-session-timeout", OPT_UINT, OFF(coap_session_timeout_s), 0, 1,
	  86400, "SECONDS", "CoAP: an idle session (and its DTLS state) is closed after this" },
	{ "upstream", OPT_URL, OFF(upstream), CAP(upstream), 0, 0, "URL",
	  "base URL of the orq.ai API" },
	{ "api-key-file", OPT_PATH, OFF(api_key_file), CAP(api_key_file), 0, 0,
	  "FILE", "file holding the org API key (wins over env ORQ_API_KEY)" },
	{ "device-tokens", OPT_PATH, OFF(device_tokens), CAP(device_tokens), 0,
	  0, "FILE", "`NAME TOKEN` / `NAME sha256:HEX` / `NAME psk:HEX` lines (reloaded on SIGHUP)" },
	{ "allow-anonymous", OPT_BOOL, OFF(allow_anonymous), 0, 0, 0, NULL,
	  "accept devices without a token (no --device-tokens needed)" },
	{ "max-body", OPT_SIZE, OFF(max_body), 0, 1, 64LL << 20, "BYTES",
	  "largest request body accepted (413 above)" },
	{ "max-batch-items", OPT_SIZE, OFF(max_batch_items), 0, 1, 10000, "N",
	  "most updates in one POST /v1/updates (413 above)" },
	{ "max-concurrent", OPT_UINT, OFF(max_concurrent), 0, 1, 100000, "N",
	  "requests in flight before 503" },
	{ "threads", OPT_UINT, OFF(threads), 0, 1, 1024, "N",
	  "event loops, each on its own thread with its own listening socket (default: one per CPU)" },
	{ "client-timeout", OPT_UINT, OFF(client_timeout_s), 0, 1, 3600, "SECONDS",
	  "idle client connections are closed after this" },
	{ "request-timeout", OPT_UINT, OFF(request_timeout_s), 0, 0, 3600,
	  "SECONDS", "a request (head and body) not received in full this long after the connection opened or its last answer: connection cut (0: never)" },
	{ "max-connections-per-ip", OPT_UINT, OFF(max_conns_per_ip), 0, 0,
	  1000000, "N", "connections from one IP address at once (0: no limit; devices behind one NAT share an address)" },
	{ "connect-timeout-ms", OPT_LONG, OFF(connect_timeout_ms), 0, 1, 600000,
	  "MS", "upstream connect timeout" },
	{ "upstream-timeout-ms", OPT_LONG, OFF(upstream_timeout_ms), 0, 1,
	  600000, "MS", "upstream timeout per attempt" },
	{ "max-attempts", OPT_UINT, OFF(max_attempts), 0, 1, 100, "N",
	  "upstream attempts in all (1: no retries)" },
	{ "retry-budget-ms", OPT_LONG, OFF(retry_budget_ms), 0, 0, 3600000, "MS",
	  "no new upstream attempt after this long" },
	{ "backoff-base-ms", OPT_LONG, OFF(backoff_base_ms), 0, 0, 600000, "MS",
	  "first retry backoff cap (full jitter, doubling)" },
	{ "backoff-max-ms", OPT_LONG, OFF(backoff_max_ms), 0, 0, 3600000, "MS",
	  "largest backoff" },
	{ "log-bodies", OPT_BOOL, OFF(log_bodies), 0, 0, 0, NULL,
	  "log request bodies (debugging only)" },
	{ "log-level", OPT_LEVEL, OFF(log_level), 0, 0, 0, "LEVEL",
	  "debug, info, warn or error" },
	{ "spool", OPT_PATH, OFF(spool_dir), CAP(spool_dir), 0, 0, "DIR",
	  "store-and-forward: 202 once an update is on disk in DIR/spool.db, forwarded in order after" },
	{ "spool-max-bytes", OPT_SIZE, OFF(spool_max_bytes), 0, 4096,
	  1LL << 50, "BYTES", "spooled updates and dead letters above this: 507" },
	{ "spool-forwarders", OPT_UINT, OFF(spool_forwarders), 0, 1, 1024, "N",
	  "spooled updates at the upstream at once (sessions sent concurrently, split between the loops)" },
	{ "sync-wait-ms", OPT_LONG, OFF(sync_wait_ms), 0, 0, 600000, "MS",
	  "spool mode: a JSON request without `Prefer: respond-async` waits this long for the API's answer, then 202 (0: 202 at once)" },
	{ "queue", OPT_PATH, OFF(queue_urls), CAP(queue_urls), 0, 0,
	  "nats://HOST:PORT[,...]",
	  "store-and-forward on a NATS JetStream cluster: 202 once JetStream acknowledged the update (instead of --spool)" },
	{ "queue-stream", OPT_PATH, OFF(queue_stream), CAP(queue_stream), 0, 0,
	  "NAME", "the JetStream stream (created or checked at start; dead letters in NAME_DEAD)" },
	{ "queue-replicas", OPT_UINT, OFF(queue_replicas), 0, 1, 5, "N",
	  "replicas of the stream and its consumers" },
	{ "queue-partitions", OPT_UINT, OFF(queue_partitions), 0, 1, 4096, "N",
	  "subjects NAME.0 .. NAME.N-1, one durable consumer each; the same on every gateway" },
	{ "queue-max-age", OPT_LONG, OFF(queue_max_age_s), 0, 60, 315360000,
	  "SECONDS", "the stream keeps updates this long (forwarded or not: updates older are dropped)" },
	{ "queue-dedup-window", OPT_LONG, OFF(queue_dedup_s), 0, 1, 86400,
	  "SECONDS", "JetStream drops an update whose message id (session and seq, or request) it stored this recently" },
	{ "queue-ack-timeout-ms", OPT_LONG, OFF(queue_ack_timeout_ms), 0, 100,
	  600000, "MS", "no JetStream acknowledgement by then: 503 with Retry-After" },
	{ "queue-creds", OPT_PATH, OFF(queue_creds), CAP(queue_creds), 0, 0,
	  "FILE", "NATS user credentials (JWT and NKey seed, a .creds file)" },
	{ "queue-tls-ca", OPT_PATH, OFF(queue_tls_ca), CAP(queue_tls_ca), 0, 0,
	  "FILE", "CA certificates (PEM) to verify the NATS servers; implies TLS" },
	{ "queue-accept-only", OPT_BOOL, OFF(queue_accept_only), 0, 0, 0, NULL,
	  "store updates but forward none: other gateways on the stream forward them" },
	{ "config", OPT_CONFIG, 0, 0, 0, 0, "FILE",
	  "read `key = value` lines first (keys as these flags, without --)" },
	{ "help", OPT_HELP, 0, 0, 0, 0, NULL, "print this help and exit" },
	{ "version", OPT_VERSION, 0, 0, 0, 0, NULL,
	  "print `session-gateway VERSION` and exit" },
};
#define N_OPTS (sizeof(opts) / sizeof(opts[0]))

static const char *const level_names[] = { "debug", "info", "warn", "error" };

/* One event loop per CPU: nothing on a loop waits on the upstream or
 * the disk, so more loops than CPUs would only take turns. */
static unsigned default_threads(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n < 1 ? 1 : n > 64 ? 64 : (unsigned)n;
}

void gw_config_defaults(gw_config *c)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->listen_host, sizeof(c->listen_host), "127.0.0.1");
	c->listen_port = 8080;
	snprintf(c->upstream, sizeof(c->upstream), "https://my.orq.ai");
	c->max_body = 65536;
	c->max_batch_items = 100;
	c->max_concurrent = 256;
	c->threads = default_threads();
	c->client_timeout_s = 10;
	c->request_timeout_s = 60;
	c->connect_timeout_ms = 2000;
	c->upstream_timeout_ms = 10000;
	c->max_attempts = 4;
	c->retry_budget_ms = 30000;
	c->backoff_base_ms = 100;
	c->backoff_max_ms = 5000;
	c->log_level = GW_LOG_INFO;
	c->spool_max_bytes = (size_t)256 << 20;
	c->spool_forwarders = 16;
	c->sync_wait_ms = 15000;
	snprintf(c->coap_host, sizeof(c->coap_host), "127.0.0.1");
	c->coap_port = 5683;
	snprintf(c->coaps_host, sizeof(c->coaps_host), "127.0.0.1");
	c->coaps_port = 5684;
	c->coap_dedup_s = 600;
	c->coap_source_rate = 100;
	c->coap_max_sessions = 10000;
	c->coap_session_timeout_s = 300;
	snprintf(c->queue_stream, sizeof(c->queue_stream), "SESSIONWIRE");
	c->queue_replicas = 3;
	c->queue_partitions = 64;
	c->queue_max_age_s = 86400;
	c->queue_dedup_s = 120;
	c->queue_ack_timeout_ms = 5000;
}

static const opt *find_opt(const char *name, size_t n)
{
	size_t i;

	for (i = 0; i < N_OPTS; i++)
		if (strlen(opts[i].name) == n && !strncmp(opts[i].name, name, n))
			return &opts[i];
	return NULL;
}

/* ==== Values ==== */

/* Parses a whole decimal integer within [min, max]. */
static int parse_int(const char *v, long long min, long long max,
		     long long *out)
{
	char *end;
	long long x;

	if (*v == '\0' || *v == ' ' || *v == '+')
		return -1;
	errno = 0;
	x = strtoll(v, &end, 10);
	if (errno != 0 || *end != '\0' || x < min || x > max)
		return -1;
	*out = x;
	return 0;
}

/* HOST:PORT (or HOST alone when default_port >= 0) into host[hcap] and
 * *port; an IPv6 address may be in brackets. 0, or -1 with err. */
static int parse_addr(const char *v, char *host, size_t hcap,
		      uint16_t *port, long default_port, char *err,
		      size_t errlen, const char *where)
{
	const char *colon = strrchr(v, ':'), *end;
	char h[64];
	size_t hlen;
	long long p = default_port;
	unsigned char tmp[16];

	/* no port: "HOST", "[v6]", or a bare IPv6 address (two colons) */
	if (default_port >= 0 &&
	    (colon == NULL || v[strlen(v) - 1] == ']' ||
	     (v[0] != '[' && strchr(v, ':') != colon)))
		colon = NULL;
	else if (colon == NULL) {
		snprintf(err, errlen, "%s: expected HOST:PORT, found \"%s\"", where, v);
		return -1;
	}
	end = colon ? colon : v + strlen(v);
	hlen = (size_t)(end - v);
	if (hlen >= 2 && v[0] == '[' && v[hlen - 1] == ']') {
		v++;
		hlen -= 2;
	}
	if (hlen == 0 || hlen >= sizeof(h) || hlen >= hcap) {
		snprintf(err, errlen, "%s: expected HOST:PORT with an IP address, found \"%s\"",
			 where, v);
		return -1;
	}
	memcpy(h, v, hlen);
	h[hlen] = '\0';
	if (inet_pton(AF_INET, h, tmp) != 1 && inet_pton(AF_INET6, h, tmp) != 1) {
		snprintf(err, errlen, "%s: \"%s\" is not an IPv4 or IPv6 address",
			 where, h);
		return -1;
	}
	if (colon != NULL && parse_int(colon + 1, 0, 65535, &p) != 0) {
		snprintf(err, errlen, "%s: port must be 0..65535, found \"%s\"",
			 where, colon + 1);
		return -1;
	}
	memcpy(host, h, hlen + 1);
	*port = (uint16_t)p;
	return 0;
}

static int parse_listen(gw_config *c, const char *v, char *err, size_t errlen,
			const char *where)
{
	return parse_addr(v, c->listen_host, sizeof(c->listen_host),
			  &c->listen_port, -1, err, errlen, where);
}

static int parse_bool(const char *v, bool *out)
{
	if (!strcasecmp(v, "true") || !strcasecmp(v, "yes") ||
	    !strcmp(v, "1") || !strcasecmp(v, "on"))
		*out = true;
	else if (!strcasecmp(v, "false") || !strcasecmp(v, "no") ||
		 !strcmp(v, "0") || !strcasecmp(v, "off"))
		*out = false;
	else
		return -1;
	return 0;
}

/* Sets one option from its text value (v NULL: a flag without a value,
 * only for booleans). where is "--max-body" or "FILE:LINE: max-body". */
static int set_opt(gw_config *c, const opt *o, const char *v, char *err,
		   size_t errlen, const char *where)
{
	char *base = (char *)c;
	long long x;

	if (v == NULL && o->type != OPT_BOOL) {
		snprintf(err, errlen, "%s: needs a value (%s)", where, o->arg);
		return -1;
	}
	switch (o->type) {
	case OPT_LISTEN:
		return parse_listen(c, v, err, errlen, where);
	case OPT_COAP:
		c->coap_on = true;
		return parse_addr(v, c->coap_host, sizeof(c->coap_host),
				  &c->coap_port, 5683, err, errlen, where);
	case OPT_COAPS:
		c->coaps_on = true;
		return parse_addr(v, c->coaps_host, sizeof(c->coaps_host),
				  &c->coaps_port, 5684, err, errlen, where);
	case OPT_URL: {
		size_t n = strlen(v);

		if (strncmp(v, "http://", 7) && strncmp(v, "https://", 8)) {
			snprintf(err, errlen, "%s: expected an http:// or https:// URL, found \"%s\"",
				 where, v);
			return -1;
		}
		while (n > 0 && v[n - 1] == '/')
			n--;
		if (n >= o->cap) {
			snprintf(err, errlen, "%s: URL longer than %zu bytes",
				 where, o->cap - 1);
			return -1;
		}
		if (strpbrk(v, " \t\r\n?#")) {
			snprintf(err, errlen, "%s: the URL must be a base URL without spaces, query or fragment",
				 where);
			return -1;
		}
		memcpy(base + o->off, v, n);
		base[o->off + n] = '\0';
		return 0;
	}
	case OPT_PATH: {
		size_t n = strlen(v);

		if (n >= o->cap) {
			snprintf(err, errlen, "%s: file name longer than %zu bytes",
				 where, o->cap - 1);
			return -1;
		}
		memcpy(base + o->off, v, n + 1);
		return 0;
	}
	case OPT_BOOL: {
		bool b = true;

		if (v != NULL && parse_bool(v, &b) != 0) {
			snprintf(err, errlen, "%s: expected true or false, found \"%s\"",
				 where, v);
			return -1;
		}
		*(bool *)(base + o->off) = b;
		return 0;
	}
	case OPT_SIZE:
	case OPT_UINT:
	case OPT_LONG:
		if (parse_int(v, o->min, o->max, &x) != 0) {
			snprintf(err, errlen, "%s: expected a whole number %lld..%lld (%s), found \"%s\"",
				 where, o->min, o->max, o->arg, v);
			return -1;
		}
		if (o->type == OPT_SIZE)
			*(size_t *)(base + o->off) = (size_t)x;
		else if (o->type == OPT_UINT)
			*(unsigned *)(base + o->off) = (unsigned)x;
		else
			*(long *)(base + o->off) = (long)x;
		return 0;
	case OPT_LEVEL: {
		int i;

		for (i = 0; i < 4; i++) {
			if (!strcasecmp(v, level_names[i])) {
				c->log_level = i;
				return 0;
			}
		}
		snprintf(err, errlen, "%s: expected debug, info, warn or error, found \"%s\"",
			 where, v);
		return -1;
	}
	case OPT_CONFIG:
	case OPT_HELP:
	case OPT_VERSION:
		break;
	}
	snprintf(err, errlen, "%s: not allowed here", where);
	return -1;
}

/* ==== The config file ==== */

static char *trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' ||
			 e[-1] == '\n'))
		*--e = '\0';
	return s;
}

int gw_config_load_file(gw_config *c, const char *path, char *err,
			size_t errlen)
{
	FILE *f = fopen(path, "r");
	char line[1024], where[600];
	int lineno = 0, rc = 0;

	if (f == NULL) {
		snprintf(err, errlen, "--config %s: %s", path, strerror(errno));
		return -1;
	}
	while (rc == 0 && fgets(line, sizeof(line), f)) {
		char *k, *v, *eq;
		const opt *o;
		size_t len = strlen(line);

		lineno++;
		if (len == sizeof(line) - 1 && line[len - 1] != '\n' && !feof(f)) {
			snprintf(err, errlen, "%s:%d: line longer than %zu bytes",
				 path, lineno, sizeof(line) - 2);
			rc = -1;
			break;
		}
		k = trim(line);
		if (*k == '\0' || *k == '#')
			continue;
		eq = strchr(k, '=');
		if (eq == NULL) {
			snprintf(err, errlen, "%s:%d: expected `key = value`",
				 path, lineno);
			rc = -1;
			break;
		}
		*eq = '\0';
		v = trim(eq + 1);
		k = trim(k);
		if (!strcmp(k, "api-key") || !strcmp(k, "api_key")) {
			snprintf(err, errlen, "%s:%d: api-key: the key is not read from the config file; use api-key-file or ORQ_API_KEY",
				 path, lineno);
			rc = -1;
			break;
		}
		o = find_opt(k, strlen(k));
		if (o == NULL || o->type == OPT_CONFIG || o->type == OPT_HELP ||
		    o->type == OPT_VERSION) {
			snprintf(err, errlen, "%s:%d: unknown key \"%.64s\" (see --help)",
				 path, lineno, k);
			rc = -1;
			break;
		}
		snprintf(where, sizeof(where), "%s:%d: %s", path, lineno, o->name);
		rc = set_opt(c, o, v, err, errlen, where);
	}
	fclose(f);
	return rc;
}

/* ==== Flags ==== */

int gw_config_parse_args(gw_config *c, int argc, char **argv, char *err,
			 size_t errlen)
{
	int i, pass;

	/* pass 0: --help and --config; pass 1: everything else */
	for (pass = 0; pass < 2; pass++) {
		for (i = 1; i < argc; i++) {
			const char *a = argv[i], *v = NULL, *eq;
			char where[80];
			const opt *o;
			size_t n;

			if (strncmp(a, "--", 2) != 0) {
				snprintf(err, errlen, "unexpected argument \"%.64s\" (options start with --; see --help)",
					 a);
				return -1;
			}
			a += 2;
			eq = strchr(a, '=');
			n = eq ? (size_t)(eq - a) : strlen(a);
			if ((n == 7 && !strncmp(a, "api-key", 7))) {
				snprintf(err, errlen, "--api-key: the key is not taken on the command line; use --api-key-file FILE or ORQ_API_KEY");
				return -1;
			}
			o = find_opt(a, n);
			if (o == NULL) {
				snprintf(err, errlen, "unknown option --%.*s (see --help)",
					 (int)(n > 64 ? 64 : n), a);
				return -1;
			}
			if (eq)
				v = eq + 1;
			else if (o->type != OPT_BOOL && o->type != OPT_HELP &&
				 o->type != OPT_VERSION) {
				if (i + 1 >= argc) {
					snprintf(err, errlen, "--%s: needs a value (%s)",
						 o->name, o->arg);
					return -1;
				}
				v = argv[++i];
			}
			if (o->type == OPT_HELP || o->type == OPT_VERSION) {
				if (pass != 0)
					continue;
				if (o->type == OPT_HELP)
					gw_config_usage(stdout);
				else
					puts("session-gateway " SW_VERSION);
				return 1;
			}
			if (o->type == OPT_CONFIG) {
				if (pass == 0 && gw_config_load_file(c, v, err, errlen) != 0)
					return -1;
				continue;
			}
			if (pass == 0)
				continue;
			snprintf(where, sizeof(where), "--%s", o->name);
			if (set_opt(c, o, v, err, errlen, where) != 0)
				return -1;
		}
	}
	return 0;
}

/* ==== The key and the whole ==== */

/* A key goes into an HTTP header: printable ASCII without spaces. */
static int key_ok(const char *k)
{
	if (*k == '\0')
		return 0;
	for (; *k; k++)
		if ((unsigned char)*k <= 0x20 || (unsigned char)*k >= 0x7f)
			return 0;
	return 1;
}

static void key_free(gw_config *c)
{
	if (c->api_key) {
		explicit_bzero(c->api_key, strlen(c->api_key));
		free(c->api_key);
		c->api_key = NULL;
	}
}

/* Reads the key file: its content without surrounding whitespace. */
static int read_key_file(gw_config *c, char *err, size_t errlen)
{
	FILE *f = fopen(c->api_key_file, "r");
	char buf[4096];
	size_t n;
	char *s, *e;

	if (f == NULL) {
		snprintf(err, errlen, "--api-key-file %s: %s", c->api_key_file,
			 strerror(errno));
		return -1;
	}
	n = fread(buf, 1, sizeof(buf) - 1, f);
	if (ferror(f) || (n == sizeof(buf) - 1 && fgetc(f) != EOF)) {
		fclose(f);
		explicit_bzero(buf, sizeof(buf));
		snprintf(err, errlen, "--api-key-file %s: unreadable or larger than %zu bytes",
			 c->api_key_file, sizeof(buf) - 1);
		return -1;
	}
	fclose(f);
	buf[n] = '\0';
	s = buf;
	while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' ||
			 e[-1] == '\n'))
		*--e = '\0';
	if (!key_ok(s)) {
		explicit_bzero(buf, sizeof(buf));
		snprintf(err, errlen, "--api-key-file %s: %s", c->api_key_file,
			 *s ? "the key must be one line of printable ASCII without spaces"
			    : "the file is empty");
		return -1;
	}
	key_free(c);
	c->api_key = strdup(s);
	explicit_bzero(buf, sizeof(buf));
	if (c->api_key == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

int gw_config_finish(gw_config *c, char *err, size_t errlen)
{
	const char *env = getenv("ORQ_API_KEY");

	if (c->api_key_file[0] != '\0') {
		if (read_key_file(c, err, errlen) != 0)
			return -1;
	} else if (env != NULL && env[0] != '\0') {
		if (!key_ok(env)) {
			snprintf(err, errlen, "ORQ_API_KEY: the key must be printable ASCII without spaces");
			return -1;
		}
		key_free(c);
		c->api_key = strdup(env);
		if (c->api_key == NULL) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
	}
	if (c->api_key == NULL) {
		snprintf(err, errlen, "no API key: set ORQ_API_KEY or give --api-key-file FILE");
		return -1;
	}
	if (c->device_tokens[0] == '\0' && !c->allow_anonymous) {
		snprintf(err, errlen, "no device tokens: give --device-tokens FILE, or --allow-anonymous to accept any device");
		return -1;
	}
	if (c->backoff_base_ms > c->backoff_max_ms) {
		snprintf(err, errlen, "--backoff-base-ms (%ld) is larger than --backoff-max-ms (%ld)",
			 c->backoff_base_ms, c->backoff_max_ms);
		return -1;
	}
	if (c->coap_on && !c->coap_anonymous) {
		snprintf(err, errlen, "--coap-listen: plain CoAP carries no device credential; give --coap-anonymous if the link layer authenticates devices (a private APN, a LoRaWAN network server), or use --coaps-listen (DTLS with a PSK per device)");
		return -1;
	}
	if (c->coaps_on && c->device_tokens[0] == '\0') {
		snprintf(err, errlen, "--coaps-listen: the devices' pre-shared keys come from --device-tokens FILE (`NAME psk:HEX` or `NAME TOKEN` lines); none given");
		return -1;
	}
	if (c->coap_on && c->coaps_on && c->coap_port != 0 &&
	    c->coap_port == c->coaps_port && !strcmp(c->coap_host, c->coaps_host)) {
		snprintf(err, errlen, "--coap-listen and --coaps-listen are both %s:%u",
			 c->coap_host, c->coap_port);
		return -1;
	}
	if (c->queue_urls[0] != '\0' && gw_config__check_queue(c, err, errlen) != 0)
		return -1;
	if (c->request_timeout_s != 0 && c->request_timeout_s <= c->client_timeout_s) {
		/* an idle keep-alive connection runs the request clock too */
		snprintf(err, errlen, "--request-timeout (%u s) must be longer than --client-timeout (%u s), or 0",
			 c->request_timeout_s, c->client_timeout_s);
		return -1;
	}
	return 0;
}

/* ==== --queue ==== */

/* Whether s is a nats:// or tls:// URL list HOST:PORT[,...]. */
static bool queue_urls_ok(const char *s)
{
	while (*s) {
		const char *end = strchr(s, ',');
		size_t n = end ? (size_t)(end - s) : strlen(s), k;

		if (n > 7 && !strncmp(s, "nats://", 7))
			k = 7;
		else if (n > 6 && !strncmp(s, "tls://", 6))
			k = 6;
		else
			return false;
		for (; k < n; k++)
			if ((unsigned char)s[k] <= 0x20 || s[k] == '/' ||
			    (unsigned char)s[k] >= 0x7f)
				return false;
		if (end == NULL)
			break;
		s = end + 1;
	}
	return true;
}

int gw_config__check_queue(const gw_config *c, char *err, size_t errlen)
{
	const char *p;

	if (c->spool_dir[0] != '\0') {
		snprintf(err, errlen, "--queue and --spool exclude each other: give one store");
		return -1;
	}
	if (!queue_urls_ok(c->queue_urls)) {
		snprintf(err, errlen, "--queue: expected nats://HOST:PORT or tls://HOST:PORT, comma-separated, found \"%.200s\"",
			 c->queue_urls);
		return -1;
	}
	if (c->queue_stream[0] == '\0' || strlen(c->queue_stream) > 24) {
		snprintf(err, errlen, "--queue-stream: a name of 1 to 24 characters");
		return -1;
	}
	for (p = c->queue_stream; *p; p++) {
		if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
		      (*p >= '0' && *p <= '9') || *p == '_' || *p == '-')) {
			snprintf(err, errlen, "--queue-stream: \"%s\": only letters, digits, _ and - (it names subjects too)",
				 c->queue_stream);
			return -1;
		}
	}
	if (c->queue_dedup_s > c->queue_max_age_s) {
		snprintf(err, errlen, "--queue-dedup-window (%ld s) is longer than --queue-max-age (%ld s)",
			 c->queue_dedup_s, c->queue_max_age_s);
		return -1;
	}
	return 0;
}

/* ==== Help ==== */

/* The default of o as text (from a fresh defaults struct). */
static void default_text(const opt *o, const gw_config *d, char *out,
			 size_t cap)
{
	const char *base = (const char *)d;

	switch (o->type) {
	case OPT_LISTEN:
		snprintf(out, cap, "%s:%u", d->listen_host, d->listen_port);
		break;
	case OPT_COAP:
	case OPT_COAPS:
		snprintf(out, cap, "off");
		break;
	case OPT_URL:
	case OPT_PATH:
		snprintf(out, cap, "%s", base[o->off] ? base + o->off : "none");
		break;
	case OPT_BOOL:
		snprintf(out, cap, "%s", *(const bool *)(base + o->off) ? "on" : "off");
		break;
	case OPT_SIZE:
		snprintf(out, cap, "%zu", *(const size_t *)(base + o->off));
		break;
	case OPT_UINT:
		snprintf(out, cap, "%u", *(const unsigned *)(base + o->off));
		break;
	case OPT_LONG:
		snprintf(out, cap, "%ld", *(const long *)(base + o->off));
		break;
	case OPT_LEVEL:
		snprintf(out, cap, "%s", level_names[d->log_level]);
		break;
	case OPT_CONFIG:
	case OPT_HELP:
	case OPT_VERSION:
		snprintf(out, cap, "none");
		break;
	}
}

void gw_config_usage(FILE *f)
{
	gw_config d;
	size_t i;

	gw_config_defaults(&d);
	fputs("usage: session-gateway [OPTIONS]\n"
	      "Receives protobuf or JSON session updates from devices and\n"
	      "forwards them to the orq.ai API as the official SDK's JSON.\n\n"
	      "Options (a --config file is read first, flags override it):\n", f);
	for (i = 0; i < N_OPTS; i++) {
		char left[64], def[160];

		snprintf(left, sizeof(left), "--%s%s%s", opts[i].name,
			 opts[i].arg ? " " : "", opts[i].arg ? opts[i].arg : "");
		default_text(&opts[i], &d, def, sizeof(def));
		if (opts[i].type == OPT_HELP || opts[i].type == OPT_CONFIG ||
		    opts[i].type == OPT_VERSION)
			fprintf(f, "  %-30s %s\n", left, opts[i].help);
		else
			fprintf(f, "  %-30s %s (default: %s)\n", left,
				opts[i].help, def);
	}
	fputs("\nEnvironment:\n"
	      "  ORQ_API_KEY                    the org API key, used when no\n"
	      "                                 --api-key-file is given\n"
	      "The key is never accepted as a flag or config key, never logged\n"
	      "and never sent to devices.\n"
	      "Signals: SIGHUP reloads --device-tokens (the CoAP PSKs too);\n"
	      "SIGTERM/SIGINT stop accepting, finish requests in flight and exit 0.\n"
	      "With --spool, `session-gateway spool --help` shows the admin\n"
	      "command (stats, list, retry, drop on the spool directory);\n"
	      "with --queue, `session-gateway queue --help` (the same on the\n"
	      "JetStream stream).\n", f);
}

void gw_config_free(gw_config *c)
{
	if (c == NULL)
		return;
	key_free(c);
}
