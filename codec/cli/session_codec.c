/* session_codec.c - the session-codec command: JSON <-> compact protobuf.
 *
 * Exit status: 0 ok, 1 invalid input (any item with --lines), 2 usage or
 * I/O trouble.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "send.h"
#include "sessionwire/sessionwire.h"
#include "read_input.h"
#include "sw_version.h" /* SW_VERSION, from the VERSION file */

#define EXIT_INVALID 1
#define EXIT_USAGE 2
#define MAX_WHOLE_INPUT ((size_t)64 << 20)

/* ==== Options ==== */

typedef enum cmd_id {
	CMD_ENCODE,
	CMD_DECODE,
	CMD_CANON,
	CMD_ROUNDTRIP,
	CMD_INSPECT,
	CMD_SIZE
} cmd_id;

typedef struct cmd_info {
	const char *name;
	cmd_id id;
	bool pb_in;  /* reads protobuf (hex with --lines) */
	bool pb_out; /* writes protobuf (hex with --lines or --hex) */
	const char *summary;
} cmd_info;

static const cmd_info commands[] = {
	{ "encode", CMD_ENCODE, false, true,
	  "JSON body -> protobuf bytes" },
	{ "decode", CMD_DECODE, true, false,
	  "protobuf bytes -> canonical JSON" },
	{ "canon", CMD_CANON, false, false,
	  "JSON body -> canonical JSON (what the SDK sends)" },
	{ "roundtrip", CMD_ROUNDTRIP, false, false,
	  "JSON body -> protobuf -> canonical JSON" },
	{ "inspect", CMD_INSPECT, true, false,
	  "protobuf bytes -> readable dump of every field and its form" },
	{ "size", CMD_SIZE, false, false,
	  "JSON body -> json=N protobuf=M ratio=R" },
};

typedef struct opts {
	const cmd_info *cmd;
	const char *in_path;
	const char *out_path;
	bool lines;
	bool hex;
	sw_write_opts write;
	sw_parse_opts parse;
} opts;

static void usage_main(FILE *f)
{
	size_t i;

	fputs("usage: session-codec <command> [options]\n"
	      "Translates orq.ai trace-session updates between the API's JSON\n"
	      "body and sessionwire's compact protobuf (proto/sessionwire.proto).\n"
	      "\ncommands:\n",
	      f);
	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
	fprintf(f, "  %-10s %s\n", "send", CLI_SEND_SUMMARY);
	fputs("\nRun 'session-codec <command> --help' for its options,\n"
	      "'session-codec --version' for the version.\n"
	      "Exit status: 0 ok, 1 invalid input, 2 usage or I/O error.\n",
	      f);
}

static void usage_cmd(FILE *f, const cmd_info *c)
{
	fprintf(f, "usage: session-codec %s [options]\n%s.\n\noptions:\n",
		c->name, c->summary);
	fputs("  --in FILE      read from FILE (default: standard input)\n"
	      "  --out FILE     write to FILE (default: standard output)\n"
	      "  --lines        one item per input line, one output line per\n"
	      "                 item (protobuf as lowercase hex); an invalid\n"
	      "                 item prints 'error: <field path>: <message>'\n"
	      "                 and the exit status is 1 at the end\n",
	      f);
	if (c->pb_out)
		fputs("  --hex          write lowercase hex instead of raw bytes\n",
		      f);
	if (c->pb_in)
		fputs("  --hex          read lowercase hex instead of raw bytes\n",
		      f);
	if (c->id == CMD_DECODE || c->id == CMD_CANON || c->id == CMD_ROUNDTRIP)
		fputs("  --names wire|sdk  key names of the output (default wire:\n"
		      "                 \"external_id\"; sdk: \"externalId\")\n"
		      "  --pretty       indented output (JSON.stringify(x, null, 2))\n",
		      f);
	if (!c->pb_in)
		fputs("  --lenient      skip unknown JSON keys instead of failing\n",
		      f);
	fputs("  --kind update|session  an update body (default) or the API's\n"
	      "                 session response (required fields checked)\n"
	      "  --help         this text\n",
	      f);
}

static const cmd_info *find_cmd(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

/* Returns -1 to go on, else the exit status. */
static int parse_args(int argc, char **argv, opts *o)
{
	int i;

	memset(o, 0, sizeof(*o));
	if (argc < 2) {
		usage_main(stderr);
		return EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
	    !strcmp(argv[1], "help")) {
		usage_main(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version")) {
		puts("session-codec " SW_VERSION);
		return 0;
	}
	o->cmd = find_cmd(argv[1]);
	if (o->cmd == NULL) {
		fprintf(stderr, "session-codec: unknown command '%s'\n", argv[1]);
		usage_main(stderr);
		return EXIT_USAGE;
	}
	for (i = 2; i < argc; i++) {
		const char *a = argv[i];
		bool has_val = i + 1 < argc;

		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage_cmd(stdout, o->cmd);
			return 0;
		} else if (!strcmp(a, "--lines")) {
			o->lines = true;
		} else if (!strcmp(a, "--hex") && (o->cmd->pb_in || o->cmd->pb_out)) {
			o->hex = true;
		} else if (!strcmp(a, "--pretty")) {
			o->write.pretty = true;
		} else if (!strcmp(a, "--lenient")) {
			o->parse.lenient = true;
		} else if (!strcmp(a, "--in") && has_val) {
			o->in_path = argv[++i];
		} else if (!strcmp(a, "--out") && has_val) {
			o->out_path = argv[++i];
		} else if (!strcmp(a, "--names") && has_val) {
			a = argv[++i];
			if (!strcmp(a, "sdk"))
				o->write.names = SW_NAMES_SDK;
			else if (!strcmp(a, "wire"))
				o->write.names = SW_NAMES_WIRE;
			else {
				fprintf(stderr, "session-codec: --names takes 'wire' or 'sdk', not '%s'\n", a);
				return EXIT_USAGE;
			}
		} else if (!strcmp(a, "--kind") && has_val) {
			a = argv[++i];
			if (!strcmp(a, "update"))
				o->parse.kind = SW_KIND_UPDATE;
			else if (!strcmp(a, "session"))
				o->parse.kind = SW_KIND_SESSION;
			else {
				fprintf(stderr, "session-codec: --kind takes 'update' or 'session', not '%s'\n", a);
				return EXIT_USAGE;
			}
		} else {
			fprintf(stderr, "session-codec %s: unknown or incomplete option '%s'\n",
				o->cmd->name, a);
			usage_cmd(stderr, o->cmd);
			return EXIT_USAGE;
		}
	}
	if (o->lines)
		o->hex = true;
	return -1;
}

/* ==== Hex ==== */

static int hex_val(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decodes hex in place; returns the byte count or -1 (offset in *bad). */
static long hex_decode(char *s, size_t n, size_t *bad)
{
	size_t i;

	while (n && (s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\n'))
		n--;
	if (n % 2) {
		*bad = n;
		return -1;
	}
	for (i = 0; i < n; i += 2) {
		int hi = hex_val((unsigned char)s[i]);
		int lo = hex_val((unsigned char)s[i + 1]);

		if (hi < 0 || lo < 0) {
			*bad = hi < 0 ? i : i + 1;
			return -1;
		}
		s[i / 2] = (char)(hi << 4 | lo);
	}
	return (long)(n / 2);
}

static void hex_write(FILE *f, const uint8_t *p, size_t n)
{
	static const char hx[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n; i++) {
		putc(hx[p[i] >> 4], f);
		putc(hx[p[i] & 15], f);
	}
}

/* ==== One item ==== */

typedef struct item_out {
	sw_buf text;     /* JSON or inspect text, or size line */
	uint8_t *pb;     /* protobuf bytes (encode) */
	size_t pb_len;
	size_t pb_cap;
} item_out;

static sw_status encode_update(const sw_update *u, item_out *r, sw_error *err)
{
	size_t need = 0;
	sw_status st = sw_pb_encode(u, NULL, 0, &need, err);

	if (st != SW_OK)
		return st;
	if (need > r->pb_cap) {
		uint8_t *p = realloc(r->pb, need ? need : 1);

		if (p == NULL)
			return sw_error_set(err, SW_ENOMEM, "", (size_t)-1, NULL);
		r->pb = p;
		r->pb_cap = need;
	}
	return sw_pb_encode(u, r->pb, r->pb_cap, &r->pb_len, err);
}

/* Runs the command on one input. Output goes to r. */
static sw_status run_item(const opts *o, const char *in, size_t n, item_out *r,
			  sw_error *err)
{
	sw_update *u = NULL, *u2 = NULL;
	sw_status st;

	sw_buf_reset(&r->text);
	r->pb_len = 0;
	if (o->cmd->id == CMD_INSPECT)
		return sw_pb_inspect((const uint8_t *)in, n, &r->text, err);
	if (o->cmd->pb_in)
		st = sw_pb_decode((const uint8_t *)in, n, &o->parse, &u, err);
	else
		st = sw_json_parse(in, n, &o->parse, &u, err);
	if (st != SW_OK)
		return st;

	switch (o->cmd->id) {
	case CMD_ENCODE:
		st = encode_update(u, r, err);
		break;
	case CMD_DECODE:
	case CMD_CANON:
		st = sw_json_write(u, &o->write, &r->text, err);
		break;
	case CMD_ROUNDTRIP:
		st = encode_update(u, r, err);
		if (st == SW_OK)
			st = sw_pb_decode(r->pb, r->pb_len, &o->parse, &u2, err);
		if (st == SW_OK)
			st = sw_json_write(u2, &o->write, &r->text, err);
		r->pb_len = 0;
		break;
	case CMD_SIZE: {
		char line[96];
		size_t json_len;

		st = sw_json_write(u, &o->write, &r->text, err);
		if (st != SW_OK)
			break;
		json_len = r->text.len;
		st = encode_update(u, r, err);
		if (st != SW_OK)
			break;
		snprintf(line, sizeof(line), "json=%zu protobuf=%zu ratio=%.3f",
			 json_len, r->pb_len,
			 json_len ? (double)r->pb_len / (double)json_len : 0.0);
		sw_buf_reset(&r->text);
		st = sw_buf_append(&r->text, line, strlen(line));
		r->pb_len = 0;
		break;
	}
	case CMD_INSPECT:
		break;
	}
	sw_update_free(u);
	sw_update_free(u2);
	return st;
}

/* ==== Input and output ==== */

static void print_error_line(FILE *f, const char *prefix, const sw_error *e)
{
	fprintf(f, "%serror: %s: %s", prefix, e->path[0] ? e->path : "$",
		e->message[0] ? e->message : sw_strerror(e->code));
	if (e->offset != (size_t)-1)
		fprintf(f, " (at byte %zu)", e->offset);
	fputc('\n', f);
}

static void write_result(const opts *o, FILE *out, const item_out *r)
{
	if (r->pb_len || (o->cmd->pb_out && r->text.len == 0)) {
		if (o->hex)
			hex_write(out, r->pb, r->pb_len);
		else
			fwrite(r->pb, 1, r->pb_len, out);
		if (o->hex)
			putc('\n', out);
		return;
	}
	if (o->lines) {
		/* one line per item: multi-line text is joined with " | " */
		for (size_t i = 0; i < r->text.len; i++) {
			char c = r->text.data[i];

			if (c == '\n') {
				if (i + 1 < r->text.len)
					fputs(" | ", out);
			} else {
				putc(c, out);
			}
		}
		putc('\n', out);
		return;
	}
	fwrite(r->text.data, 1, r->text.len, out);
	if (r->text.len && r->text.data[r->text.len - 1] != '\n')
		putc('\n', out);
}

static int run_lines(const opts *o, FILE *in, FILE *out, item_out *r)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t got;
	int status = 0;

	while ((got = getline(&line, &cap, in)) >= 0) {
		size_t n = (size_t)got;
		sw_error err;
		sw_status st;

		if (n && line[n - 1] == '\n')
			n--;
		if (n && line[n - 1] == '\r')
			n--;
		sw_error_clear(&err);
		if (o->cmd->pb_in) {
			size_t bad = 0;
			long m = hex_decode(line, n, &bad);

			if (m < 0) {
				sw_error_set(&err, SW_EINVAL, "", bad,
					     "expected lowercase hex digits in pairs");
				st = SW_EINVAL;
			} else {
				st = run_item(o, line, (size_t)m, r, &err);
			}
		} else {
			st = run_item(o, line, n, r, &err);
		}
		if (st != SW_OK) {
			print_error_line(out, "", &err);
			status = EXIT_INVALID;
		} else {
			write_result(o, out, r);
		}
	}
	free(line);
	if (ferror(in)) {
		fprintf(stderr, "session-codec: read error: %s\n", strerror(errno));
		return EXIT_USAGE;
	}
	return status;
}

static int run_whole(const opts *o, FILE *in, FILE *out, item_out *r)
{
	size_t n = 0;
	char *buf = cli_read_input(in, MAX_WHOLE_INPUT, &n);
	sw_error err;
	sw_status st;

	if (buf == NULL) {
		fprintf(stderr, "session-codec: cannot read input: %s\n",
			strerror(errno));
		return EXIT_USAGE;
	}
	sw_error_clear(&err);
	if (o->cmd->pb_in && o->hex) {
		size_t bad = 0;
		long m = hex_decode(buf, n, &bad);

		if (m < 0) {
			sw_error_set(&err, SW_EINVAL, "", bad,
				     "expected lowercase hex digits in pairs");
			st = SW_EINVAL;
		} else {
			st = run_item(o, buf, (size_t)m, r, &err);
		}
	} else {
		st = run_item(o, buf, n, r, &err);
	}
	free(buf);
	if (st != SW_OK) {
		print_error_line(stderr, "session-codec: ", &err);
		return EXIT_INVALID;
	}
	write_result(o, out, r);
	return 0;
}

int main(int argc, char **argv)
{
	FILE *in = stdin, *out = stdout;
	item_out r;
	opts o;
	int status;

	if (argc >= 2 && !strcmp(argv[1], "send"))
		return cli_send(argc - 1, argv + 1);
	status = parse_args(argc, argv, &o);
	if (status >= 0)
		return status;
	if (o.in_path && (in = fopen(o.in_path, "rb")) == NULL) {
		fprintf(stderr, "session-codec: cannot open %s: %s\n", o.in_path,
			strerror(errno));
		return EXIT_USAGE;
	}
	if (o.out_path && (out = fopen(o.out_path, "wb")) == NULL) {
		fprintf(stderr, "session-codec: cannot create %s: %s\n",
			o.out_path, strerror(errno));
		if (in != stdin)
			fclose(in);
		return EXIT_USAGE;
	}
	memset(&r, 0, sizeof(r));
	sw_buf_init(&r.text, 0, NULL);
	status = o.lines ? run_lines(&o, in, out, &r) : run_whole(&o, in, out, &r);
	sw_buf_free(&r.text);
	free(r.pb);
	if (in != stdin)
		fclose(in);
	if (fflush(out) != 0 || ferror(out)) {
		fprintf(stderr, "session-codec: write error: %s\n", strerror(errno));
		status = EXIT_USAGE;
	}
	if (out != stdout && fclose(out) != 0)
		status = EXIT_USAGE;
	return status;
}
