/* send.c - `session-codec send`: a device simulator. Reads JSON updates,
 * encodes them as a device would (compact protobuf), sends them to a
 * session-gateway and prints the status, the decoded answer and the bytes
 * the request cost on the wire.
 *
 *   single: PATCH {gateway}/v2/traces/sessions/{id}, body a Session
 *   --batch: POST {gateway}/v1/updates, body a Batch of Envelopes
 *   --coap URL: CoAP (coap_client.c), POST /u with one Envelope per
 *          update (--lines: one per input line, one DTLS session), or
 *          --batch: POST /b with the Batch (Block1 when large)
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

#include "coap_client.h"
#include "send.h"
#include "sessionwire/sessionwire.h"
#include "read_input.h"

#define EXIT_NOT_OK 1
#define EXIT_USAGE 2
#define SEND_MAX_INPUT ((size_t)16 << 20)
#define SEND_MAX_ANSWER ((size_t)16 << 20)
#define SEND_MAX_ITEMS 100000
#define SEND_TIMEOUT_MS 60000L

/* ==== Options ==== */

typedef struct send_opts {
	const char *gateway;
	const char *token;
	const char *session;
	const char *batch;
	uint64_t seq;
	bool json;
	const char *coap;         /* coap[s]://HOST:PORT */
	const char *psk_identity;
	const char *psk_key;      /* hex */
	bool lines;               /* --coap: one /u per input line */
} send_opts;

static void send_usage(FILE *f)
{
	fputs("usage: session-codec send --gateway URL --session ID [--token T]\n"
	      "                          [--batch FILE.jsonl [--seq N]] [--json]\n"
	      "                          < update.json\n"
	      "       session-codec send --coap coap[s]://HOST[:PORT] --session ID\n"
	      "                          [--psk-identity NAME --psk-key HEX]\n"
	      "                          [--seq N] [--lines | --batch FILE.jsonl]\n"
	      "                          < update.json\n"
	      CLI_SEND_SUMMARY ".\n"
	      "Without --batch: reads one JSON update on standard input and\n"
	      "sends PATCH URL/v2/traces/sessions/{ID} with the protobuf\n"
	      "Session (Content-Type and Accept application/x-protobuf).\n"
	      "With --batch: one JSON update per line of FILE ('-': standard\n"
	      "input), sent as one POST URL/v1/updates with a protobuf Batch of\n"
	      "Envelopes (session ID, sequence numbers N, N+1, ...).\n"
	      "Prints the HTTP status, the answer (a session as canonical JSON,\n"
	      "one 'seq=N status=S [retry_after_ms=R] [message]' line per\n"
	      "acknowledged item, or the error message) and\n"
	      "'bytes on the wire: request line + headers = H, body = B,\n"
	      "total = T' as libcurl sent them.\n"
	      "\noptions:\n"
	      "  --gateway URL  the gateway, e.g. http://127.0.0.1:8080\n"
	      "  --session ID   the session id (any text; ULIDs and UUIDs travel\n"
	      "                 as 16 bytes in a batch)\n"
	      "  --token T      device token, sent as 'Authorization: Bearer T'\n"
	      "                 (default: none, for --allow-anonymous gateways)\n"
	      "  --batch FILE   send every line of FILE as one batch\n"
	      "  --seq N        first sequence number of a batch (default 1;\n"
	      "                 a single PATCH carries none)\n"
	      "  --json         single update only: send the canonical JSON\n"
	      "                 (application/json) instead of protobuf\n"
	      "  --coap URL     send over CoAP instead (coap://: plain UDP, port\n"
	      "                 5683; coaps://: DTLS 1.2 with a pre-shared key,\n"
	      "                 port 5684): POST /u with one Envelope (session,\n"
	      "                 seq N, update) per update, or with --batch POST /b\n"
	      "                 (Block1 blocks when larger than 1024 bytes);\n"
	      "                 prints 'CoAP c.dd', the answer (a Result, an\n"
	      "                 Error or the Ack's lines) and 'bytes on the\n"
	      "                 wire: up = U, down = D, total = T' per message\n"
	      "                 (UDP payload, DTLS records included; the\n"
	      "                 handshake on a line of its own)\n"
	      "  --psk-identity NAME, --psk-key HEX\n"
	      "                 coaps://: the device's name and its key (the\n"
	      "                 gateway's `NAME psk:HEX` line; a plain token's\n"
	      "                 bytes as hex work too)\n"
	      "  --lines        --coap: standard input holds one JSON update per\n"
	      "                 line, each sent as its own message (seq N, N+1,\n"
	      "                 ...) over one connection\n"
	      "  --help         this text\n"
	      "Exit status: 0 the answer is 2xx (and every batch item 2xx),\n"
	      "1 otherwise or invalid input, 2 usage or transport error.\n",
	      f);
}

/* Decimal digits only, no overflow. */
static bool parse_u64(const char *s, uint64_t *out)
{
	uint64_t v = 0;

	if (*s == '\0')
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return false;
		if (v > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
			return false;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*out = v;
	return true;
}

/* Returns -1 to go on, else the exit status. */
static int send_parse_args(int argc, char **argv, send_opts *o)
{
	int i;

	memset(o, 0, sizeof(*o));
	o->seq = 1;
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];
		bool has_val = i + 1 < argc;

		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			send_usage(stdout);
			return 0;
		} else if (!strcmp(a, "--json")) {
			o->json = true;
		} else if (!strcmp(a, "--lines")) {
			o->lines = true;
		} else if (!strcmp(a, "--coap") && has_val) {
			o->coap = argv[++i];
		} else if (!strcmp(a, "--psk-identity") && has_val) {
			o->psk_identity = argv[++i];
		} else if (!strcmp(a, "--psk-key") && has_val) {
			o->psk_key = argv[++i];
		} else if (!strcmp(a, "--gateway") && has_val) {
			o->gateway = argv[++i];
		} else if (!strcmp(a, "--token") && has_val) {
			o->token = argv[++i];
		} else if (!strcmp(a, "--session") && has_val) {
			o->session = argv[++i];
		} else if (!strcmp(a, "--batch") && has_val) {
			o->batch = argv[++i];
		} else if (!strcmp(a, "--seq") && has_val) {
			if (!parse_u64(argv[++i], &o->seq)) {
				fprintf(stderr, "session-codec send: --seq takes a "
					"number 0..18446744073709551615, not '%s'\n",
					argv[i]);
				return EXIT_USAGE;
			}
		} else {
			fprintf(stderr, "session-codec send: unknown or incomplete "
				"option '%s'\n", a);
			send_usage(stderr);
			return EXIT_USAGE;
		}
	}
	if ((o->gateway == NULL) == (o->coap == NULL) || o->session == NULL) {
		fprintf(stderr, "session-codec send: --session and one of "
			"--gateway or --coap are required\n");
		send_usage(stderr);
		return EXIT_USAGE;
	}
	if (o->coap == NULL && (o->lines || o->psk_identity || o->psk_key)) {
		fputs("session-codec send: --lines, --psk-identity and --psk-key "
		      "are for --coap\n", stderr);
		return EXIT_USAGE;
	}
	if (o->coap != NULL && (o->json || o->token)) {
		fputs("session-codec send: --coap sends protobuf envelopes and "
		      "authenticates with a PSK (--psk-identity, --psk-key), "
		      "not --json or --token\n", stderr);
		return EXIT_USAGE;
	}
	if (o->lines && o->batch) {
		fputs("session-codec send: --lines or --batch, not both\n", stderr);
		return EXIT_USAGE;
	}
	if (o->coap != NULL && !strncmp(o->coap, "coaps://", 8) &&
	    (o->psk_identity == NULL || o->psk_key == NULL)) {
		fputs("session-codec send: coaps:// needs --psk-identity and "
		      "--psk-key\n", stderr);
		return EXIT_USAGE;
	}
	if (o->json && o->batch) {
		fputs("session-codec send: --json is for a single update, not "
		      "--batch (batches are protobuf only)\n", stderr);
		return EXIT_USAGE;
	}
	if (o->token && strpbrk(o->token, "\r\n")) {
		fputs("session-codec send: --token must not contain line "
		      "breaks\n", stderr);
		return EXIT_USAGE;
	}
	return -1;
}

/* ==== Building the body ==== */

static void print_sw_error(const char *where, const sw_error *e)
{
	fprintf(stderr, "session-codec send: %s%serror: %s: %s", where,
		where[0] ? ": " : "", e->path[0] ? e->path : "$",
		e->message[0] ? e->message : sw_strerror(e->code));
	if (e->offset != (size_t)-1)
		fprintf(stderr, " (at byte %zu)", e->offset);
	fputc('\n', stderr);
}

/* Appends the protobuf Session of u to out. */
static sw_status append_pb(const sw_update *u, sw_buf *out, sw_error *err)
{
	size_t need = 0, got = 0;
	sw_status st = sw_pb_encode(u, NULL, 0, &need, err);
	char *p;

	if (st != SW_OK)
		return st;
	p = sw_buf_reserve(out, need, &st);
	if (p == NULL)
		return sw_error_set(err, st, "", (size_t)-1,
				    "no room for %zu protobuf bytes", need);
	st = sw_pb_encode(u, (uint8_t *)p, need, &got, err);
	if (st == SW_OK)
		sw_buf_commit(out, got);
	return st;
}

/* The single update: protobuf Session or canonical JSON. Returns 0, or
 * the exit status. */
static int build_single(const send_opts *o, sw_buf *body)
{
	sw_update *u = NULL;
	sw_error err;
	size_t n = 0;
	char *in = cli_read_input(stdin, SEND_MAX_INPUT, &n);
	sw_status st;

	if (in == NULL) {
		fprintf(stderr, "session-codec send: cannot read the update: %s\n",
			strerror(errno));
		return EXIT_USAGE;
	}
	sw_error_clear(&err);
	st = sw_json_parse(in, n, NULL, &u, &err);
	free(in);
	if (st == SW_OK)
		st = o->json ? sw_json_write(u, NULL, body, &err)
			     : append_pb(u, body, &err);
	sw_update_free(u);
	if (st != SW_OK) {
		print_sw_error("", &err);
		return EXIT_NOT_OK;
	}
	return 0;
}

/* One envelope per non-empty line of the batch file, appended to body.
 * *items gets the count. Returns 0, or the exit status. */
static int build_batch(const send_opts *o, sw_buf *body, size_t *items)
{
	FILE *f = strcmp(o->batch, "-") ? fopen(o->batch, "rb") : stdin;
	sw_session_id sid;
	sw_buf pb, env;
	char *line = NULL;
	size_t cap = 0, lineno = 0;
	ssize_t got;
	uint64_t seq = o->seq;
	int status = 0;

	*items = 0;
	if (f == NULL) {
		fprintf(stderr, "session-codec send: cannot open %s: %s\n",
			o->batch, strerror(errno));
		return EXIT_USAGE;
	}
	sw_session_id_set(&sid, o->session, strlen(o->session));
	sw_buf_init(&pb, 0, NULL);
	sw_buf_init(&env, 0, NULL);
	while ((got = getline(&line, &cap, f)) >= 0) {
		size_t n = (size_t)got, env_len = 0, blen;
		sw_update *u = NULL;
		sw_error err;
		sw_status st;
		char where[48];
		char *p = NULL;

		lineno++;
		while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			n--;
		if (n == 0)
			continue;
		snprintf(where, sizeof(where), "%s:%zu", o->batch, lineno);
		if (*items >= SEND_MAX_ITEMS) {
			fprintf(stderr, "session-codec send: %s: more than %d "
				"updates\n", where, SEND_MAX_ITEMS);
			status = EXIT_USAGE;
			break;
		}
		sw_error_clear(&err);
		sw_buf_reset(&pb);
		sw_buf_reset(&env);
		st = sw_json_parse(line, n, NULL, &u, &err);
		if (st == SW_OK)
			st = append_pb(u, &pb, &err);
		sw_update_free(u);
		/* One session, consecutive seqs: only the first item carries
		 * them; the others inherit (see Batch in the .proto). */
		if (st == SW_OK)
			st = sw_envelope_encode(*items ? NULL : &sid, *items == 0,
						seq, (const uint8_t *)pb.data,
						pb.len, NULL, 0, &env_len, &err);
		if (st == SW_OK) {
			p = sw_buf_reserve(&env, env_len, &st);
			if (p != NULL)
				st = sw_envelope_encode(*items ? NULL : &sid,
							*items == 0, seq,
							(const uint8_t *)pb.data,
							pb.len, (uint8_t *)p,
							env_len, &env_len, &err);
			else
				sw_error_set(&err, st, "", (size_t)-1,
					     "no room for the envelope");
		}
		if (st == SW_OK) {
			blen = 0;
			st = sw_batch_append((const uint8_t *)p, env_len, NULL,
					     0, &blen, &err);
		}
		if (st == SW_OK) {
			char *q = sw_buf_reserve(body, blen, &st);
			size_t at = 0;

			if (q != NULL)
				st = sw_batch_append((const uint8_t *)p, env_len,
						     (uint8_t *)q, blen, &at,
						     &err);
			else
				sw_error_set(&err, st, "", (size_t)-1,
					     "batch larger than its cap");
			if (st == SW_OK)
				sw_buf_commit(body, at);
		}
		if (st != SW_OK) {
			print_sw_error(where, &err);
			status = EXIT_NOT_OK;
			continue;
		}
		(*items)++;
		seq++;
	}
	if (status == 0 && ferror(f)) {
		fprintf(stderr, "session-codec send: read error on %s: %s\n",
			o->batch, strerror(errno));
		status = EXIT_USAGE;
	}
	if (status == 0 && *items == 0) {
		fprintf(stderr, "session-codec send: %s holds no update\n",
			o->batch);
		status = EXIT_USAGE;
	}
	free(line);
	sw_buf_free(&pb);
	sw_buf_free(&env);
	if (f != stdin)
		fclose(f);
	return status;
}

/* ==== The request ==== */

typedef struct exchange {
	size_t head_out; /* request line and headers, as sent */
	size_t body_out; /* body bytes, as sent */
	sw_buf answer;
	bool too_big;
} exchange;

static int on_debug(CURL *h, curl_infotype type, char *data, size_t n,
		    void *ud)
{
	exchange *x = ud;

	(void)h;
	(void)data;
	if (type == CURLINFO_HEADER_OUT)
		x->head_out += n;
	else if (type == CURLINFO_DATA_OUT)
		x->body_out += n;
	return 0;
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *ud)
{
	exchange *x = ud;
	size_t n = size * nmemb;

	if (sw_buf_append(&x->answer, data, n) != SW_OK) {
		x->too_big = true;
		return 0;
	}
	return n;
}

/* Appends a header line "name: value" to list; NULL on failure (list is
 * freed). */
static struct curl_slist *add_header(struct curl_slist *l, const char *name,
				     const char *value)
{
	struct curl_slist *t;
	sw_buf b;

	sw_buf_init(&b, 0, NULL);
	if (sw_buf_append(&b, name, strlen(name)) != SW_OK ||
	    sw_buf_append(&b, value, strlen(value)) != SW_OK) {
		sw_buf_free(&b);
		curl_slist_free_all(l);
		return NULL;
	}
	t = curl_slist_append(l, b.data);
	sw_buf_free(&b);
	if (t == NULL)
		curl_slist_free_all(l);
	return t;
}

/* ==== Printing the answer ==== */

static bool is_protobuf(const char *ct)
{
	return ct && !strncasecmp(ct, "application/x-protobuf", 22);
}

static void print_error_msg(const sw_error_msg *e)
{
	printf("error: status=%" PRIu32, e->status);
	if (e->code.len)
		printf(" code=%.*s", (int)e->code.len, e->code.ptr);
	if (e->field.len)
		printf(" field=%.*s", (int)e->field.len, e->field.ptr);
	if (e->message.len)
		printf(" message=%.*s", (int)e->message.len, e->message.ptr);
	putchar('\n');
}

/* Prints a protobuf answer; false when it could not be decoded. *all_ok
 * is cleared when an acknowledged item is not 2xx. */
static bool print_protobuf(bool batch, long status, const uint8_t *p,
			   size_t n, size_t items, bool *all_ok)
{
	sw_error err;
	sw_status st;

	sw_error_clear(&err);
	if (status < 200 || status > 299) {
		sw_error_msg e;

		st = sw_error_msg_decode(p, n, &e, &err);
		if (st == SW_OK)
			print_error_msg(&e);
	} else if (batch) {
		size_t cap = items + 16, got = 0, i;
		sw_result *r = calloc(cap, sizeof(*r));

		if (r == NULL)
			return false;
		st = sw_ack_decode(p, n, r, cap, &got, &err);
		for (i = 0; st == SW_OK && i < got; i++) {
			printf("seq=%" PRIu64 " status=%" PRIu32, r[i].seq,
			       r[i].status);
			if (r[i].has_retry_after)
				printf(" retry_after_ms=%" PRIu32,
				       r[i].retry_after_ms);
			if (r[i].message.len)
				printf(" %.*s", (int)r[i].message.len,
				       r[i].message.ptr);
			putchar('\n');
			if (r[i].status < 200 || r[i].status > 299)
				*all_ok = false;
		}
		if (st == SW_OK && got != items) {
			printf("acknowledged %zu of %zu updates\n", got, items);
			*all_ok = false;
		}
		free(r);
	} else {
		sw_parse_opts po = { .kind = SW_KIND_SESSION };
		sw_update *u = NULL;
		sw_buf out;

		sw_buf_init(&out, 0, NULL);
		st = sw_pb_decode(p, n, &po, &u, &err);
		if (st == SW_OK)
			st = sw_json_write(u, NULL, &out, &err);
		if (st == SW_OK)
			printf("%s\n", out.data ? out.data : "");
		sw_update_free(u);
		sw_buf_free(&out);
	}
	if (st != SW_OK) {
		print_sw_error("answer", &err);
		return false;
	}
	return true;
}

/* Prints a text answer as it came, ending with a newline. */
static void print_text(const sw_buf *b)
{
	if (b->len == 0)
		return;
	fwrite(b->data, 1, b->len, stdout);
	if (b->data[b->len - 1] != '\n')
		putchar('\n');
}

/* ==== CoAP ==== */

#define COAP_WAIT_MS 60000L /* a separate response may take this long */

/* Hex into key[0..cap); its length, or 0 when it is not hex. */
static size_t parse_hex_key(const char *hex, uint8_t *key, size_t cap)
{
	size_t n = strlen(hex), i;

	if (n == 0 || n % 2 != 0 || n / 2 > cap)
		return 0;
	for (i = 0; i < n / 2; i++) {
		unsigned v;

		if (sscanf(hex + 2 * i, "%2x", &v) != 1 ||
		    !strchr("0123456789abcdefABCDEF", hex[2 * i]) ||
		    !strchr("0123456789abcdefABCDEF", hex[2 * i + 1]))
			return 0;
		key[i] = (uint8_t)v;
	}
	return n / 2;
}

/* One Envelope (session, seq, the update in pb) into env. */
static sw_status coap_envelope(const send_opts *o, uint64_t seq,
			       const sw_buf *pb, sw_buf *env, sw_error *err)
{
	sw_session_id sid;
	size_t n = 0;
	sw_status st;
	char *p;

	sw_session_id_set(&sid, o->session, strlen(o->session));
	st = sw_envelope_encode(&sid, true, seq, (const uint8_t *)pb->data,
				pb->len, NULL, 0, &n, err);
	if (st != SW_OK)
		return st;
	p = sw_buf_reserve(env, n, &st);
	if (p == NULL)
		return sw_error_set(err, st, "", (size_t)-1,
				    "no room for the envelope");
	st = sw_envelope_encode(&sid, true, seq, (const uint8_t *)pb->data,
				pb->len, (uint8_t *)p, n, &n, err);
	if (st == SW_OK)
		sw_buf_commit(env, n);
	return st;
}

/* Prints one CoAP answer; false when it is not a success (2.xx, and
 * every batch item 2xx). */
static bool print_coap(bool batch, const cc_answer *a, size_t items)
{
	bool ok = a->code >= 200 && a->code < 300;
	sw_error err;

	printf("CoAP %d.%02d%s\n", a->code / 100, a->code % 100,
	       a->separate ? " (separate response)" : "");
	sw_error_clear(&err);
	if (a->code >= 400 && a->code < 500) {
		sw_error_msg e;

		if (a->len > 0 &&
		    sw_error_msg_decode(a->payload, a->len, &e, &err) == SW_OK)
			print_error_msg(&e);
		else if (a->len > 0)
			printf("%.*s\n", (int)a->len, (const char *)a->payload);
		return false;
	}
	if (batch && ok) {
		if (!print_protobuf(true, 200, a->payload, a->len, items, &ok))
			ok = false;
	} else if (a->len > 0) {
		sw_result r;

		if (sw_result_decode(a->payload, a->len, &r, &err) == SW_OK) {
			printf("status=%" PRIu32, r.status);
			if (r.has_retry_after)
				printf(" retry_after_ms=%" PRIu32, r.retry_after_ms);
			if (r.message.len)
				printf(" %.*s", (int)r.message.len, r.message.ptr);
			putchar('\n');
		} else {
			print_sw_error("answer", &err);
			ok = false;
		}
	}
	if (a->max_age >= 0)
		printf("max-age=%ld\n", a->max_age);
	return ok;
}

/* Sends body to /path and prints the outcome. 0 (2.xx), 1 (an answer
 * that is not), 2 (no answer). */
static int coap_one(cc_conn *c, const char *path, const sw_buf *body,
		    size_t items)
{
	cc_answer a;
	char err[256];
	bool ok;

	if (cc_post(c, path, (const uint8_t *)body->data, body->len,
		    COAP_WAIT_MS, &a, err, sizeof(err)) != 0) {
		fprintf(stderr, "session-codec send: %s\n", err);
		printf("bytes on the wire: up = %zu, down = %zu, total = %zu\n",
		       a.up, a.down, a.up + a.down);
		return EXIT_USAGE;
	}
	ok = print_coap(path[0] == 'b', &a, items);
	printf("bytes on the wire: up = %zu, down = %zu, total = %zu",
	       a.up, a.down, a.up + a.down);
	if (a.blocks > 1)
		printf(" (%u blocks)", a.blocks);
	if (a.retransmits)
		printf(" (%u retransmissions)", a.retransmits);
	putchar('\n');
	cc_answer_free(&a);
	return ok ? 0 : EXIT_NOT_OK;
}

static int send_coap(const send_opts *o)
{
	uint8_t key[64];
	size_t key_len = 0, items = 0, hs_up, hs_down;
	char err[256];
	cc_conn *c = NULL;
	sw_buf body, pb;
	int ret = 0, r;

	if (o->psk_key != NULL) {
		key_len = parse_hex_key(o->psk_key, key, sizeof(key));
		if (key_len == 0) {
			fputs("session-codec send: --psk-key takes 2 to 128 hex "
			      "digits (a key of 1 to 64 bytes)\n", stderr);
			return EXIT_USAGE;
		}
	}
	sw_buf_init(&body, SEND_MAX_INPUT, NULL);
	sw_buf_init(&pb, 0, NULL);
	if (o->batch) {
		ret = build_batch(o, &body, &items);
		if (ret != 0)
			goto done;
	}
	c = cc_open(o->coap, o->psk_identity, key, key_len, err, sizeof(err));
	OPENSSL_cleanse(key, sizeof(key));
	if (c == NULL) {
		fprintf(stderr, "session-codec send: %s: %s\n", o->coap, err);
		ret = EXIT_USAGE;
		goto done;
	}
	cc_handshake_bytes(c, &hs_up, &hs_down);
	if (hs_up + hs_down > 0)
		printf("DTLS handshake (%s): up = %zu, down = %zu, total = %zu\n",
		       cc_cipher(c), hs_up, hs_down, hs_up + hs_down);
	if (o->batch) {
		ret = coap_one(c, "b", &body, items);
		goto done;
	}
	if (!o->lines) {
		/* one update on standard input */
		sw_buf one;

		sw_buf_init(&one, SEND_MAX_INPUT, NULL);
		ret = build_single(o, &one);
		if (ret == 0) {
			sw_error e;

			sw_error_clear(&e);
			if (coap_envelope(o, o->seq, &one, &body, &e) != SW_OK) {
				print_sw_error("", &e);
				ret = EXIT_NOT_OK;
			} else {
				ret = coap_one(c, "u", &body, 1);
			}
		}
		sw_buf_free(&one);
		goto done;
	}
	{
		char *line = NULL;
		size_t cap = 0, lineno = 0;
		uint64_t seq = o->seq;
		ssize_t got;

		while ((got = getline(&line, &cap, stdin)) >= 0) {
			size_t n = (size_t)got;
			sw_update *u = NULL;
			sw_error e;
			sw_status st;

			lineno++;
			while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
				n--;
			if (n == 0)
				continue;
			sw_error_clear(&e);
			sw_buf_reset(&pb);
			sw_buf_reset(&body);
			st = sw_json_parse(line, n, NULL, &u, &e);
			if (st == SW_OK)
				st = append_pb(u, &pb, &e);
			sw_update_free(u);
			if (st == SW_OK)
				st = coap_envelope(o, seq, &pb, &body, &e);
			if (st != SW_OK) {
				char where[32];

				snprintf(where, sizeof(where), "line %zu", lineno);
				print_sw_error(where, &e);
				ret = EXIT_NOT_OK;
				continue;
			}
			printf("seq %" PRIu64 ": ", seq);
			r = coap_one(c, "u", &body, 1);
			if (r > ret)
				ret = r;
			seq++;
			if (r == EXIT_USAGE)
				break;
		}
		free(line);
	}
done:
	if (c != NULL) {
		size_t up, down;

		cc_total_bytes(c, &up, &down);
		if (o->lines)
			printf("bytes on the wire in all (handshake included): up = %zu, down = %zu, total = %zu\n",
			       up, down, up + down);
		cc_close(c);
	}
	sw_buf_free(&body);
	sw_buf_free(&pb);
	if (fflush(stdout) != 0)
		ret = EXIT_USAGE;
	return ret;
}

/* ==== The command ==== */

int cli_send(int argc, char **argv)
{
	send_opts o;
	sw_buf body, url;
	exchange x;
	struct curl_slist *hdr = NULL;
	CURL *h = NULL;
	CURLcode rc;
	char errbuf[CURL_ERROR_SIZE] = "";
	const char *ctype = NULL, *mime;
	size_t items = 0, glen;
	long status = 0;
	bool all_ok = true;
	int ret;

	ret = send_parse_args(argc, argv, &o);
	if (ret >= 0)
		return ret;
	if (o.coap != NULL)
		return send_coap(&o);
	sw_buf_init(&body, SEND_MAX_INPUT, NULL);
	sw_buf_init(&url, 0, NULL);
	memset(&x, 0, sizeof(x));
	sw_buf_init(&x.answer, SEND_MAX_ANSWER, NULL);

	ret = o.batch ? build_batch(&o, &body, &items) : build_single(&o, &body);
	if (ret != 0)
		goto done;

	/* the URL: gateway without trailing slashes, then the path */
	glen = strlen(o.gateway);
	while (glen && o.gateway[glen - 1] == '/')
		glen--;
	ret = EXIT_USAGE;
	if (sw_buf_append(&url, o.gateway, glen) != SW_OK)
		goto done;
	if (o.batch) {
		if (sw_buf_append(&url, "/v1/updates", 11) != SW_OK)
			goto done;
	} else {
		sw_error err;

		sw_error_clear(&err);
		if (sw_session_path(o.session, strlen(o.session), &url, &err) !=
		    SW_OK) {
			print_sw_error("--session", &err);
			goto done;
		}
	}

	mime = o.json ? "application/json" : "application/x-protobuf";
	hdr = add_header(NULL, "Content-Type: ", mime);
	/* /v1/updates answers protobuf unless asked otherwise: no Accept */
	if (hdr)
		hdr = o.batch ? add_header(hdr, "Accept:", "") /* no curl default */
			      : add_header(hdr, "Accept: ", mime);
	if (hdr && o.token)
		hdr = add_header(hdr, "Authorization: Bearer ", o.token);
	if (hdr)
		hdr = add_header(hdr, "Expect:", "");
	if (hdr == NULL) {
		fputs("session-codec send: out of memory\n", stderr);
		goto done;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK ||
	    (h = curl_easy_init()) == NULL) {
		fputs("session-codec send: cannot initialise libcurl\n", stderr);
		goto done;
	}
	curl_easy_setopt(h, CURLOPT_URL, url.data);
	if (!o.batch)
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "PATCH");
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, body.data ? body.data : "");
	curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body.len);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, SEND_TIMEOUT_MS);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &x);
	curl_easy_setopt(h, CURLOPT_DEBUGFUNCTION, on_debug);
	curl_easy_setopt(h, CURLOPT_DEBUGDATA, &x);
	curl_easy_setopt(h, CURLOPT_VERBOSE, 1L);
	rc = curl_easy_perform(h);
	if (rc != CURLE_OK) {
		fprintf(stderr, "session-codec send: %s: %s\n", url.data,
			x.too_big ? "answer too big"
				  : errbuf[0] ? errbuf : curl_easy_strerror(rc));
		goto done;
	}
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &ctype);

	printf("HTTP %ld\n", status);
	if (is_protobuf(ctype)) {
		if (!print_protobuf(o.batch != NULL, status,
				    (const uint8_t *)x.answer.data,
				    x.answer.len, items, &all_ok))
			all_ok = false;
	} else {
		print_text(&x.answer);
		/* a batch answer that is no Ack confirms nothing */
		if (o.batch)
			all_ok = false;
	}
	printf("bytes on the wire: request line + headers = %zu, body = %zu, "
	       "total = %zu\n", x.head_out, x.body_out,
	       x.head_out + x.body_out);
	ret = status >= 200 && status <= 299 && all_ok ? 0 : EXIT_NOT_OK;
	if (fflush(stdout) != 0)
		ret = EXIT_USAGE;
done:
	if (h)
		curl_easy_cleanup(h);
	curl_slist_free_all(hdr);
	sw_buf_free(&body);
	sw_buf_free(&url);
	sw_buf_free(&x.answer);
	return ret;
}
