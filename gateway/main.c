/* main.c - session-gateway: configuration, then the server (its event
 * loops, server.c), then signals handled synchronously in the main thread
 * (sigwaitinfo):
 *   SIGHUP           reload --device-tokens and its CoAP PSKs (keep the
 *                    old set on error)
 *   SIGTERM, SIGINT  stop accepting, finish requests in flight, exit 0
 * With --spool DIR the spool is opened first (its writer thread), then the
 * server, whose loops also forward the spool; they stop in the reverse
 * order: no new requests, forwarding stopped (an upstream call in flight
 * finishes and is marked), commits in flight finished, the database
 * closed.
 * With --queue nats://... the queue (queue.c) is opened instead: its
 * connection, stream and consumers are ready before the server starts,
 * and it is closed (buffered acks flushed) after the server stopped.
 * `session-gateway spool ...` is the spool admin command (spool_admin.c),
 * `session-gateway queue ...` the queue's (queue_admin.c).
 * Exit status 2 for a configuration error, 1 when the server cannot start. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "gw.h"

/* Logs a configuration error and returns 2. */
static int config_error(const char *err)
{
	gw_log_fields f = GW_LOG_FIELDS_INIT;

	f.error = err;
	gw_log(GW_LOG_ERROR, "configuration error", &f);
	fprintf(stderr, "session-gateway: %s\n", err);
	return 2;
}

int main(int argc, char **argv)
{
	gw_config c;
	gw_tokens *tokens = NULL;
	gw_upstream *up = NULL;
	gw_server *srv = NULL;
	gw_spool *sp = NULL;
	gw_queue *q = NULL;
	char err[1400], msg[600];
	sigset_t set;
	int rc;

	if (argc >= 2 && strcmp(argv[1], "spool") == 0)
		return gw_spool_admin(argc - 1, argv + 1, stdout, stderr);
	if (argc >= 2 && strcmp(argv[1], "queue") == 0)
		return gw_queue_admin(argc - 1, argv + 1, stdout, stderr);
	gw_config_defaults(&c);
	rc = gw_config_parse_args(&c, argc, argv, err, sizeof(err));
	if (rc == 1)
		return 0;
	if (rc != 0) {
		rc = config_error(err);
		goto out;
	}
	gw_log_set_level(c.log_level);
	if (gw_config_finish(&c, err, sizeof(err)) != 0) {
		rc = config_error(err);
		goto out;
	}
	if (c.device_tokens[0] != '\0') {
		tokens = gw_tokens_load_psk(c.device_tokens, c.coaps_on, err,
					    sizeof(err));
		if (tokens == NULL) {
			rc = config_error(err);
			goto out;
		}
	}

	/* block the signals before any thread starts: every thread inherits
	 * the mask and only sigtimedwait below receives them */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGPIPE);
	if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0) {
		rc = config_error("cannot block signals");
		goto out;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		rc = config_error("curl_global_init failed");
		goto out;
	}
	up = gw_upstream_new(&c, err, sizeof(err));
	if (up == NULL) {
		rc = config_error(err);
		goto out_curl;
	}
	if (c.spool_dir[0] != '\0') {
		sp = gw_spool_open(&c, err, sizeof(err));
		if (sp == NULL) {
			gw_log_fields f = GW_LOG_FIELDS_INIT;

			f.error = err;
			gw_log(GW_LOG_ERROR, "cannot open the spool", &f);
			fprintf(stderr, "session-gateway: %s\n", err);
			rc = 1;
			goto out_spool;
		}
	}
	if (c.queue_urls[0] != '\0') {
		q = gw_queue_open(&c, err, sizeof(err));
		if (q == NULL) {
			gw_log_fields f = GW_LOG_FIELDS_INIT;

			f.error = err;
			gw_log(GW_LOG_ERROR, "cannot open the queue", &f);
			fprintf(stderr, "session-gateway: %s\n", err);
			rc = 1;
			goto out_spool;
		}
	}
	if (q != NULL)
		srv = gw_server_start_store(&c, up, gw_queue_store(q), tokens,
					    err, sizeof(err));
	else
		srv = gw_server_start_spool(&c, up, sp, tokens, err, sizeof(err));
	if (srv == NULL) {
		gw_log_fields f = GW_LOG_FIELDS_INIT;

		f.error = err;
		gw_log(GW_LOG_ERROR, "cannot start", &f);
		fprintf(stderr, "session-gateway: %s\n", err);
		rc = 1;
		goto out_spool;
	}
	tokens = NULL; /* the server owns it now */
	snprintf(msg, sizeof(msg), "listening on %s%s%s:%u",
		 strchr(c.listen_host, ':') ? "[" : "", c.listen_host,
		 strchr(c.listen_host, ':') ? "]" : "", gw_server_port(srv));
	/* scripts read the port from this line: print it at any log level */
	gw_log_set_level(GW_LOG_INFO);
	gw_log(GW_LOG_INFO, msg, NULL);
	/* CoAP: "coap listening on udp HOST:PORT" (scripts read the port) */
	if (c.coap_on) {
		snprintf(msg, sizeof(msg), "coap listening on udp %s%s%s:%u (plain, devices coap-anonymous)",
			 strchr(c.coap_host, ':') ? "[" : "", c.coap_host,
			 strchr(c.coap_host, ':') ? "]" : "",
			 gw_server_coap_port(srv, false));
		gw_log(GW_LOG_INFO, msg, NULL);
	}
	if (c.coaps_on) {
		snprintf(msg, sizeof(msg), "coaps listening on udp %s%s%s:%u (DTLS 1.2, PSK)",
			 strchr(c.coaps_host, ':') ? "[" : "", c.coaps_host,
			 strchr(c.coaps_host, ':') ? "]" : "",
			 gw_server_coap_port(srv, true));
		gw_log(GW_LOG_INFO, msg, NULL);
	}
	snprintf(msg, sizeof(msg), "forwarding to %s", c.upstream);
	gw_log(GW_LOG_INFO, msg, NULL);
	if (sp != NULL) {
		long long depth = 0, bytes = 0;

		gw_spool_usage(sp, &depth, &bytes);
		snprintf(msg, sizeof(msg),
			 "spool %s: %lld updates waiting, %lld of %zu bytes used",
			 c.spool_dir, depth, bytes, c.spool_max_bytes);
		gw_log(GW_LOG_INFO, msg, NULL);
	}
	gw_log_set_level(c.log_level);

	for (;;) {
		siginfo_t si;
		int sig = sigwaitinfo(&set, &si);

		if (sig < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (sig == SIGPIPE)
			continue;
		if (sig == SIGHUP) {
			gw_tokens *t;
			gw_log_fields f = GW_LOG_FIELDS_INIT;

			if (c.device_tokens[0] == '\0') {
				gw_log(GW_LOG_INFO, "SIGHUP: no --device-tokens file to reload", NULL);
				continue;
			}
			t = gw_tokens_load_psk(c.device_tokens, c.coaps_on, err,
					       sizeof(err));
			if (t == NULL) {
				f.error = err;
				gw_log(GW_LOG_ERROR, "SIGHUP: device tokens not reloaded, keeping the old set", &f);
				continue;
			}
			gw_server_set_tokens(srv, t);
			gw_log(GW_LOG_INFO, "SIGHUP: device tokens reloaded", NULL);
			continue;
		}
		gw_log(GW_LOG_INFO, sig == SIGTERM ? "SIGTERM: draining" : "SIGINT: draining", NULL);
		break;
	}
	gw_server_stop(srv);
	gw_spool_close(sp);
	sp = NULL;
	gw_queue_close(q);
	q = NULL;
	gw_log(GW_LOG_INFO, "stopped", NULL);
	rc = 0;
out_spool:
	gw_spool_close(sp);
	gw_queue_close(q);

	gw_upstream_free(up);
out_curl:
	curl_global_cleanup();
out:
	gw_tokens_free(tokens);
	gw_config_free(&c);
	return rc;
}
