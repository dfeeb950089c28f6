/* test_cli.c - the session-codec command, run as a user runs it. */
#include <CUnit/CUnit.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

#define TYPICAL                                                               \
	"{\"externalId\":\"dev-a8346607363a\",\"duration\":1358072,"           \
	"\"billing\":{\"inputCost\":0.0004341,\"outputCost\":0.009,"           \
	"\"totalCost\":0.009434099999999999},\"usage\":{\"promptTokens\":2894," \
	"\"completionTokens\":987,\"totalTokens\":3881},\"tracesCount\":171,"  \
	"\"workspaceId\":\"01J42CMDHMMCH68TYCT6BXFB8V\","                      \
	"\"projectId\":\"01JM5C45HMMN30GQ4PJW4YK1YD\","                        \
	"\"startedAt\":\"2025-05-26T17:57:26.708Z\","                          \
	"\"updatedAt\":\"2025-05-26T18:20:04.780Z\"}"
#define TYPICAL_WIRE                                                          \
	"{\"external_id\":\"dev-a8346607363a\",\"duration\":1358072,"          \
	"\"billing\":{\"input_cost\":0.0004341,\"output_cost\":0.009,"         \
	"\"total_cost\":0.009434099999999999},\"usage\":{\"prompt_tokens\":2894," \
	"\"completion_tokens\":987,\"total_tokens\":3881},\"traces_count\":171," \
	"\"workspace_id\":\"01J42CMDHMMCH68TYCT6BXFB8V\","                     \
	"\"project_id\":\"01JM5C45HMMN30GQ4PJW4YK1YD\","                       \
	"\"started_at\":\"2025-05-26T17:57:26.708Z\","                         \
	"\"updated_at\":\"2025-05-26T18:20:04.780Z\"}"

typedef struct run_result {
	int status; /* exit status, or -1 */
	char *out;  /* standard output */
	char *err;  /* standard error */
} run_result;

/* Runs `session-codec ARGS` with input on stdin; captures everything. */
static run_result run_cli(const char *args, const char *input, size_t in_len)
{
	char in_path[] = "/tmp/sw-cli-in-XXXXXX";
	char out_path[] = "/tmp/sw-cli-out-XXXXXX";
	char err_path[] = "/tmp/sw-cli-err-XXXXXX";
	char cmd[4096], cli[512];
	run_result r = { -1, NULL, NULL };
	int fd_in = mkstemp(in_path), fd_out = mkstemp(out_path),
	    fd_err = mkstemp(err_path), rc;

	if (fd_in < 0 || fd_out < 0 || fd_err < 0)
		abort();
	if (in_len && write(fd_in, input, in_len) != (ssize_t)in_len)
		abort();
	close(fd_in);
	close(fd_out);
	close(fd_err);
	snprintf(cmd, sizeof(cmd), "%s %s < %s > %s 2> %s",
		 tu_bin("session-codec", cli, sizeof(cli)), args,
		 in_path, out_path, err_path);
	rc = system(cmd);
	if (rc != -1 && WIFEXITED(rc))
		r.status = WEXITSTATUS(rc);
	r.out = tu_read_file(out_path, NULL);
	r.err = tu_read_file(err_path, NULL);
	unlink(in_path);
	unlink(out_path);
	unlink(err_path);
	return r;
}

static void run_free(run_result *r)
{
	free(r->out);
	free(r->err);
}

static int count_lines(const char *s)
{
	int n = 0;

	for (; s && *s; s++)
		n += *s == '\n';
	return n;
}

static void help_on_command_and_every_subcommand(void)
{
	static const char *const cmds[] = { "", "encode", "decode", "canon",
					    "roundtrip", "inspect", "size" };
	char args[64];
	size_t i;

	for (i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		run_result r;

		snprintf(args, sizeof(args), "%s --help", cmds[i]);
		r = run_cli(args, "", 0);
		CU_ASSERT_EQUAL(r.status, 0);
		CU_ASSERT_PTR_NOT_NULL(r.out);
		if (r.out)
			CU_ASSERT_PTR_NOT_NULL(strstr(r.out, "usage: session-codec"));
		run_free(&r);
	}
}

static void usage_errors_exit_2(void)
{
	run_result r = run_cli("frobnicate", "", 0);

	CU_ASSERT_EQUAL(r.status, 2);
	CU_ASSERT_PTR_NOT_NULL(strstr(r.err, "unknown command"));
	run_free(&r);
	r = run_cli("canon --names camel", "", 0);
	CU_ASSERT_EQUAL(r.status, 2);
	CU_ASSERT_PTR_NOT_NULL(strstr(r.err, "--names"));
	run_free(&r);
	r = run_cli("canon --in /nonexistent/file.json", "", 0);
	CU_ASSERT_EQUAL(r.status, 2);
	CU_ASSERT_PTR_NOT_NULL(strstr(r.err, "/nonexistent/file.json"));
	run_free(&r);
}

/* `session-codec --version` prints the VERSION file's version. */
static void version_prints_the_version_file(void)
{
	char *v = tu_read_file("VERSION", NULL), want[64];
	run_result r = run_cli("--version", "", 0);

	CU_ASSERT_PTR_NOT_NULL_FATAL(v);
	v[strcspn(v, "\n")] = '\0';
	snprintf(want, sizeof(want), "session-codec %s\n", v);
	CU_ASSERT_EQUAL(r.status, 0);
	CU_ASSERT_STRING_EQUAL(r.out, want);
	CU_ASSERT_STRING_EQUAL(r.err, "");
	free(v);
	run_free(&r);
}

static void canon_writes_the_sdk_wire_json(void)
{
	run_result r = run_cli("canon", TYPICAL, strlen(TYPICAL));

	CU_ASSERT_EQUAL(r.status, 0);
	CU_ASSERT_STRING_EQUAL(r.out, TYPICAL_WIRE "\n");
	run_free(&r);
	r = run_cli("canon --names sdk", TYPICAL_WIRE, strlen(TYPICAL_WIRE));
	CU_ASSERT_EQUAL(r.status, 0);
	CU_ASSERT_STRING_EQUAL(r.out, TYPICAL "\n");
	run_free(&r);
}

static void invalid_input_names_the_field_and_exits_1(void)
{
	const char *bad = "{\"billing\":{\"input_cost\":1,\"output_cost\":2}}";
	run_result r = run_cli("encode", bad, strlen(bad));

	CU_ASSERT_EQUAL(r.status, 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(r.err, "billing.total_cost"));
	CU_ASSERT_STRING_EQUAL(r.out, "");
	run_free(&r);
	/* bytes that are not UTF-8: named by the value they are in too */
	bad = "{\"tags\":[\"a\",\"\xe5\"]}";
	r = run_cli("encode", bad, strlen(bad));
	CU_ASSERT_EQUAL(r.status, 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(r.err,
		"error: tags[1]: expected UTF-8 text, found an invalid byte 0xE5"));
	run_free(&r);
}

static void encode_hex_then_decode_gives_canonical_json(void)
{
	run_result enc = run_cli("encode --hex", TYPICAL, strlen(TYPICAL));
	run_result dec;

	CU_ASSERT_EQUAL(enc.status, 0);
	CU_ASSERT(strlen(enc.out) > 10 && strlen(enc.out) < 2 * 120);
	dec = run_cli("decode --hex", enc.out, strlen(enc.out));
	CU_ASSERT_EQUAL(dec.status, 0);
	CU_ASSERT_STRING_EQUAL(dec.out, TYPICAL_WIRE "\n");
	run_free(&dec);
	dec = run_cli("inspect --hex", enc.out, strlen(enc.out));
	CU_ASSERT_EQUAL(dec.status, 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(dec.out, "workspace_id_ulid"));
	CU_ASSERT_PTR_NOT_NULL(strstr(dec.out, "1358072"));
	run_free(&dec);
	run_free(&enc);
}

static void lines_give_one_output_line_per_input_line(void)
{
	const char *in = TYPICAL "\n"
			 "{\"tags\":[\"a\",1]}\n"
			 "\n"
			 "{}\n"
			 "{\"duration\":1.5}\n";
	run_result r = run_cli("roundtrip --lines", in, strlen(in));

	CU_ASSERT_EQUAL(r.status, 1);
	CU_ASSERT_EQUAL(count_lines(r.out), 5);
	CU_ASSERT_PTR_NOT_NULL(strstr(r.out, TYPICAL_WIRE "\nerror: tags[1]: "));
	CU_ASSERT_PTR_NOT_NULL(strstr(r.out, "\n{}\n{\"duration\":1.5}\n"));
	run_free(&r);
}

static void lines_encode_and_decode_hex(void)
{
	const char *in = "{}\n{\"duration\":7}\n";
	run_result enc = run_cli("encode --lines", in, strlen(in));
	run_result dec;

	CU_ASSERT_EQUAL(enc.status, 0);
	CU_ASSERT_EQUAL(count_lines(enc.out), 2);
	CU_ASSERT_STRING_EQUAL(enc.out, "\n200e\n"); /* field 4 sint64 7 */
	dec = run_cli("decode --lines", "200e\nzz\n", 8);
	CU_ASSERT_EQUAL(dec.status, 1);
	CU_ASSERT_STRING_NOT_EQUAL(dec.out, "");
	CU_ASSERT_PTR_NOT_NULL(strstr(dec.out, "{\"duration\":7}\nerror: "));
	run_free(&dec);
	run_free(&enc);
}

static void size_prints_both_sizes_and_ratio(void)
{
	run_result r = run_cli("size", TYPICAL, strlen(TYPICAL));
	unsigned js = 0, pb = 0;
	double ratio = 0;

	CU_ASSERT_EQUAL(r.status, 0);
	CU_ASSERT_EQUAL(sscanf(r.out, "json=%u protobuf=%u ratio=%lf", &js, &pb,
			       &ratio), 3);
	CU_ASSERT_EQUAL(js, strlen(TYPICAL_WIRE));
	CU_ASSERT(pb > 0 && pb < js / 3);
	run_free(&r);
}

static void in_and_out_files(void)
{
	char in_path[] = "/tmp/sw-cli-file-in-XXXXXX";
	char out_path[] = "/tmp/sw-cli-file-out-XXXXXX";
	char args[256];
	int fd = mkstemp(in_path);
	run_result r;
	char *out;

	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT_FATAL(write(fd, TYPICAL, strlen(TYPICAL)) == (ssize_t)strlen(TYPICAL));
	close(fd);
	close(mkstemp(out_path));
	snprintf(args, sizeof(args), "canon --in %s --out %s", in_path, out_path);
	r = run_cli(args, "", 0);
	CU_ASSERT_EQUAL(r.status, 0);
	out = tu_read_file(out_path, NULL);
	CU_ASSERT_PTR_NOT_NULL(out);
	if (out)
		CU_ASSERT_STRING_EQUAL(out, TYPICAL_WIRE "\n");
	free(out);
	run_free(&r);
	unlink(in_path);
	unlink(out_path);
}

int init_cli_tests(void)
{
	CU_pSuite s = CU_add_suite("cli", NULL, NULL);

	if (s == NULL)
		return -1;
	CU_add_test(s, "help_on_command_and_every_subcommand", help_on_command_and_every_subcommand);
	CU_add_test(s, "usage_errors_exit_2", usage_errors_exit_2);
	CU_add_test(s, "version_prints_the_version_file", version_prints_the_version_file);
	CU_add_test(s, "canon_writes_the_sdk_wire_json", canon_writes_the_sdk_wire_json);
	CU_add_test(s, "invalid_input_names_the_field_and_exits_1", invalid_input_names_the_field_and_exits_1);
	CU_add_test(s, "encode_hex_then_decode_gives_canonical_json", encode_hex_then_decode_gives_canonical_json);
	CU_add_test(s, "lines_give_one_output_line_per_input_line", lines_give_one_output_line_per_input_line);
	CU_add_test(s, "lines_encode_and_decode_hex", lines_encode_and_decode_hex);
	CU_add_test(s, "size_prints_both_sizes_and_ratio", size_prints_both_sizes_and_ratio);
	CU_add_test(s, "in_and_out_files", in_and_out_files);
	return 0;
}
