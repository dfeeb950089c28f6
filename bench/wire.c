/* wire.c - bytes on the wire per update, transport included: request line,
 * headers and body of the HTTP/1.1 request that carries it.
 *
 * A benchmark program, never a test. Over the updates of typical.jsonl
 * ({"sdk":..,"wire":"<canonical JSON>","session_id":..}) it counts:
 *
 *  - sdk: the official SDK's own request to the API,
 *      PATCH /v2/traces/sessions/<id> HTTP/1.1
 *      Host: my.orq.ai
 *      Content-Type: application/json
 *      Accept: application/json
 *      Authorization: Bearer <key of --key-len characters>
 *      User-Agent: <the TypeScript SDK's, see SDK_UA>
 *      Content-Length: <n>
 *    and the canonical JSON body (the "wire" string). Node's fetch adds
 *    more headers of its own (NODE_FETCH_EXTRA): counted apart.
 *  - patch: a device's protobuf PATCH to the gateway as `session-codec
 *    send` makes it with libcurl (Host: --host, Content-Type and Accept
 *    application/x-protobuf, Authorization: Bearer <--token>,
 *    Content-Length; no User-Agent, no Expect).
 *  - batch10: POST /v1/updates with 10 consecutive updates of one session
 *    (the session of the first; later items inherit the id and the next
 *    seq, as send does), no Accept header.
 *  - batch10_distinct: the same 10 updates each with its own session id
 *    (first item seq 1, later items inherit the next seq: one device's
 *    counter).
 * The patch and batch10 counts are computed here by the same rules
 * libcurl follows; bench/gateway.sh checks them against what send
 * measures, and sends the distinct batches written with --out-dir.
 *
 * Output: one line per figure on stdout, and with --json FILE a flat JSON
 * object of wire.* keys.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "sessionwire/sessionwire.h"

#define MAX_UPDATES 4096
#define BATCH 10
#define PB_MAX 8192
#define BATCH_MAX (BATCH * (PB_MAX + 64))

/* The user agent of the orq.ai TypeScript SDK (Speakeasy's SDK_METADATA of
 * @orq-ai/node 4.2.9), sent as `user-agent` by its HTTP client. */
#define SDK_UA "speakeasy-sdk/typescript 4.2.9 2.799.0 2.0 @orq-ai/node"
/* What Node's fetch (undici) adds to every request by itself. */
#define NODE_FETCH_EXTRA                                                      \
	"connection: keep-alive\r\n"                                          \
	"accept-language: *\r\n"                                              \
	"sec-fetch-mode: cors\r\n"                                            \
	"accept-encoding: gzip, deflate\r\n"

typedef struct item {
	char *sid;           /* session id (text) */
	char *path;          /* /v2/traces/sessions/<encoded id> */
	size_t json_len;     /* canonical JSON body */
	uint8_t *pb;         /* sessionwire protobuf */
	size_t pb_len;
} item;

static item items[MAX_UPDATES];
static size_t n_items;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/* Prints a message and exits: a benchmark never measures errors. */
static void die(const char *fmt, ...)
{
	va_list ap;

	fputs("bench-wire: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

/* strdup that dies. */
static char *xstrdup(const char *s)
{
	char *p = strdup(s);

	if (p == NULL)
		die("out of memory");
	return p;
}

/* Decimal digits of n. */
static size_t digits(size_t n)
{
	size_t d = 1;

	while (n >= 10) {
		n /= 10;
		d++;
	}
	return d;
}

/* Bytes of the header line "name: value\r\n". */
static size_t hdr(const char *name, size_t value_len)
{
	return strlen(name) + 2 + value_len + 2;
}

/* Loads the vectors: each line's canonical JSON, parsed and encoded. */
static void load(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *line = NULL;
	size_t cap = 0;
	ssize_t got;

	if (f == NULL)
		die("cannot open %s: %s", path, strerror(errno));
	while ((got = getline(&line, &cap, f)) >= 0) {
		cJSON *root, *wire, *sid;
		sw_update *u = NULL;
		sw_error err;
		sw_buf p;
		item *it;
		uint8_t buf[PB_MAX];

		if (got <= 1)
			continue;
		if (n_items == MAX_UPDATES)
			die("%s: more than %d updates", path, MAX_UPDATES);
		root = cJSON_ParseWithLength(line, (size_t)got);
		wire = cJSON_GetObjectItemCaseSensitive(root, "wire");
		sid = cJSON_GetObjectItemCaseSensitive(root, "session_id");
		if (!cJSON_IsString(wire) || !cJSON_IsString(sid) ||
		    wire->valuestring == NULL || sid->valuestring == NULL)
			die("%s:%zu: no \"wire\" or \"session_id\" string", path,
			    n_items + 1);
		it = &items[n_items];
		it->sid = xstrdup(sid->valuestring);
		it->json_len = strlen(wire->valuestring);
		sw_error_clear(&err);
		if (sw_json_parse(wire->valuestring, it->json_len, NULL, &u,
				  &err) != SW_OK ||
		    sw_pb_encode(u, buf, sizeof(buf), &it->pb_len, &err) != SW_OK)
			die("%s:%zu: %s: %s", path, n_items + 1, err.path,
			    err.message);
		sw_update_free(u);
		it->pb = malloc(it->pb_len ? it->pb_len : 1);
		if (it->pb == NULL)
			die("out of memory");
		memcpy(it->pb, buf, it->pb_len);
		sw_buf_init(&p, 0, NULL);
		if (sw_session_path(it->sid, strlen(it->sid), &p, &err) != SW_OK)
			die("%s:%zu: session id: %s", path, n_items + 1,
			    err.message);
		it->path = xstrdup(p.data);
		sw_buf_free(&p);
		cJSON_Delete(root);
		n_items++;
	}
	free(line);
	fclose(f);
	if (n_items < BATCH)
		die("%s: fewer than %d updates", path, BATCH);
}

/* Encodes items[first..first+BATCH) as a Batch into out; distinct: each
 * item names its own session, else the first item's session for all. */
static size_t batch(size_t first, bool distinct, uint8_t *out, size_t cap)
{
	uint8_t env[PB_MAX + 64];
	size_t i, len = 0;

	for (i = 0; i < BATCH; i++) {
		const item *it = &items[first + i];
		sw_session_id sid;
		size_t env_len = 0;
		sw_error err;
		const char *id = distinct ? it->sid : items[first].sid;

		sw_error_clear(&err);
		sw_session_id_set(&sid, id, strlen(id));
		if (sw_envelope_encode(distinct || i == 0 ? &sid : NULL, i == 0,
				       1, it->pb, it->pb_len, env, sizeof(env),
				       &env_len, &err) != SW_OK ||
		    sw_batch_append(env, env_len, out, cap, &len, &err) != SW_OK)
			die("batch at update %zu: %s: %s", first + i + 1,
			    err.path, err.message);
	}
	return len;
}

/* Writes n bytes to dir/name. */
static void write_file(const char *dir, const char *name, const void *p,
		       size_t n)
{
	char path[4096];
	FILE *f;

	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >=
	    sizeof(path))
		die("path too long: %s/%s", dir, name);
	f = fopen(path, "wb");
	if (f == NULL || fwrite(p, 1, n, f) != n || fclose(f) != 0)
		die("cannot write %s", path);
}

static void usage(void)
{
	fputs("usage: bench-wire --vectors FILE.jsonl [--host H] [--token T]\n"
	      "                  [--key-len N] [--json FILE] [--out-dir DIR]\n"
	      "Bytes on the wire per update: the SDK's JSON request, a\n"
	      "device's protobuf PATCH and batches of 10 (see wire.c).\n"
	      "  --host H     Host header of the device's requests to the\n"
	      "               gateway (default 127.0.0.1:8080)\n"
	      "  --token T    the device token (default: none)\n"
	      "  --key-len N  characters of the org API key (default 48)\n"
	      "  --json FILE  write the wire.* figures as a JSON object\n"
	      "  --out-dir D  write the batches: D/one-K.pb, D/distinct-K.pb\n",
	      stderr);
	exit(2);
}

int main(int argc, char **argv)
{
	const char *vectors = NULL, *host = "127.0.0.1:8080", *token = NULL;
	const char *json = NULL, *out_dir = NULL;
	static uint8_t body[BATCH_MAX];
	size_t key_len = 48, i, k, n_batches;
	size_t sdk = 0, sdk_body = 0, patch = 0, patch_body = 0;
	size_t one = 0, one_body = 0, dis = 0, dis_body = 0;
	size_t auth_dev, node_extra = strlen(NODE_FETCH_EXTRA);
	FILE *jf;

	for (i = 1; i < (size_t)argc; i++) {
		const char *a = argv[i], *v = i + 1 < (size_t)argc ? argv[i + 1] : NULL;

		if (v == NULL)
			usage();
		if (!strcmp(a, "--vectors"))
			vectors = v;
		else if (!strcmp(a, "--host"))
			host = v;
		else if (!strcmp(a, "--token"))
			token = v;
		else if (!strcmp(a, "--json"))
			json = v;
		else if (!strcmp(a, "--out-dir"))
			out_dir = v;
		else if (!strcmp(a, "--key-len")) {
			char *end;

			errno = 0;
			key_len = strtoul(v, &end, 10);
			if (errno || *end || key_len == 0 || key_len > 4096)
				usage();
		} else
			usage();
		i++;
	}
	if (vectors == NULL)
		usage();
	load(vectors);

	/* "Authorization: Bearer T\r\n" of the device (none without a token) */
	auth_dev = token ? hdr("Authorization", 7 + strlen(token)) : 0;
	for (i = 0; i < n_items; i++) {
		const item *it = &items[i];

		/* the SDK: request line, its headers, the JSON */
		sdk += strlen("PATCH ") + strlen(it->path) + strlen(" HTTP/1.1\r\n") +
		       hdr("Host", strlen("my.orq.ai")) +
		       hdr("Content-Type", strlen("application/json")) +
		       hdr("Accept", strlen("application/json")) +
		       hdr("Authorization", 7 + key_len) +
		       hdr("User-Agent", strlen(SDK_UA)) +
		       hdr("Content-Length", digits(it->json_len)) + 2 +
		       it->json_len;
		sdk_body += it->json_len;
		/* the device's PATCH as libcurl sends it */
		patch += strlen("PATCH ") + strlen(it->path) + strlen(" HTTP/1.1\r\n") +
			 hdr("Host", strlen(host)) +
			 hdr("Content-Type", strlen("application/x-protobuf")) +
			 hdr("Accept", strlen("application/x-protobuf")) +
			 auth_dev + hdr("Content-Length", digits(it->pb_len)) + 2 +
			 it->pb_len;
		patch_body += it->pb_len;
	}
	n_batches = n_items / BATCH;
	for (k = 0; k < n_batches; k++) {
		size_t head = strlen("POST /v1/updates HTTP/1.1\r\n") +
			      hdr("Host", strlen(host)) +
			      hdr("Content-Type", strlen("application/x-protobuf")) +
			      auth_dev + 2;
		size_t n;
		char name[64];

		n = batch(k * BATCH, false, body, sizeof(body));
		one += head + hdr("Content-Length", digits(n)) + n;
		one_body += n;
		if (out_dir) {
			snprintf(name, sizeof(name), "one-%02zu.pb", k + 1);
			write_file(out_dir, name, body, n);
		}
		n = batch(k * BATCH, true, body, sizeof(body));
		dis += head + hdr("Content-Length", digits(n)) + n;
		dis_body += n;
		if (out_dir) {
			snprintf(name, sizeof(name), "distinct-%02zu.pb", k + 1);
			write_file(out_dir, name, body, n);
		}
	}

#define PER(x, n) ((double)(x) / (double)(n))
	printf("updates: %zu (%zu batches of %d)\n", n_items, n_batches, BATCH);
	printf("SDK JSON request (Host: my.orq.ai, %zu-char key, User-Agent): "
	       "%.1f B per update (body %.1f B); with Node fetch's own headers "
	       "%.1f B\n", key_len, PER(sdk, n_items), PER(sdk_body, n_items),
	       PER(sdk, n_items) + (double)node_extra);
	printf("device protobuf PATCH (Host: %s): %.1f B per update (body %.1f B)\n",
	       host, PER(patch, n_items), PER(patch_body, n_items));
	printf("batch of 10, one session: %.1f B per update (body %.1f B)\n",
	       PER(one, n_batches * BATCH), PER(one_body, n_batches * BATCH));
	printf("batch of 10, 10 sessions: %.1f B per update (body %.1f B)\n",
	       PER(dis, n_batches * BATCH), PER(dis_body, n_batches * BATCH));
	if (json) {
		jf = fopen(json, "w");
		if (jf == NULL)
			die("cannot write %s: %s", json, strerror(errno));
		fprintf(jf, "{\n"
			"  \"wire.updates\": %zu,\n"
			"  \"wire.api_key_chars\": %zu,\n"
			"  \"wire.sdk_json_http_bytes_per_update\": %.1f,\n"
			"  \"wire.sdk_json_body_bytes_per_update\": %.1f,\n"
			"  \"wire.sdk_json_http_node_fetch_bytes_per_update\": %.1f,\n"
			"  \"wire.patch_bytes_per_update_computed\": %.1f,\n"
			"  \"wire.patch_body_bytes_per_update\": %.1f,\n"
			"  \"wire.batch10_bytes_per_update_computed\": %.1f,\n"
			"  \"wire.batch10_body_bytes_per_update\": %.1f,\n"
			"  \"wire.batch10_distinct_bytes_per_update_computed\": %.1f,\n"
			"  \"wire.batch10_distinct_body_bytes_per_update\": %.1f\n"
			"}\n",
			n_items, key_len, PER(sdk, n_items),
			PER(sdk_body, n_items),
			PER(sdk, n_items) + (double)node_extra,
			PER(patch, n_items), PER(patch_body, n_items),
			PER(one, n_batches * BATCH),
			PER(one_body, n_batches * BATCH),
			PER(dis, n_batches * BATCH),
			PER(dis_body, n_batches * BATCH));
		if (fclose(jf) != 0)
			die("cannot write %s", json);
	}
	for (i = 0; i < n_items; i++) {
		free(items[i].sid);
		free(items[i].path);
		free(items[i].pb);
	}
	return 0;
}
