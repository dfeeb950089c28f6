/* fleet.c - `fleet`: a simulated fleet for `make run-cluster`
 * (tests/cluster.sh), and the tally of what reached the stand-in API.
 *
 *   fleet send --gateways URL[,URL...] --sessions N --seconds S --out FILE
 *       N devices, one session each, PATCH protobuf updates of their
 *       session ({"traces_count": n}, n = 1, 2, ...) to the gateways in
 *       turn for S seconds; an update not answered 202 is sent again
 *       (to the next gateway) until it is. Writes FILE: one line per
 *       session "SESSION SENT ACKED" (requests made, highest counter
 *       acknowledged).
 *   fleet check --acked FILE --upstream LOG
 *       Reads fake-upstream's --log (METHOD PATH BODY per request) and
 *       prints sent, acknowledged, delivered, duplicated, lost and
 *       whether every session's order was kept; exit 1 when anything
 *       acknowledged is lost or a session went out of order.
 */
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sessionwire/sessionwire.h"

#define SESSIONS_MAX 4096
#define GATEWAYS_MAX 8

static const char *gateways[GATEWAYS_MAX];
static int n_gateways;
static double until;
static long sent[SESSIONS_MAX], acked[SESSIONS_MAX];

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(FILE *f)
{
	fputs("usage: fleet send --gateways URL[,URL...] --sessions N --seconds S --out FILE\n"
	      "       fleet check --acked FILE --upstream LOG\n", f);
}

static size_t discard(char *p, size_t sz, size_t nm, void *ud)
{
	(void)p;
	(void)ud;
	return sz * nm;
}

/* The protobuf Session of {"traces_count": n} into buf; its length, 0 on
 * failure. */
static size_t encode(long n, uint8_t *buf, size_t cap)
{
	char js[64];
	sw_update *u = NULL;
	size_t len = 0;

	snprintf(js, sizeof(js), "{\"traces_count\":%ld}", n);
	if (sw_json_parse(js, strlen(js), NULL, &u, NULL) != SW_OK ||
	    sw_pb_encode(u, buf, cap, &len, NULL) != SW_OK)
		len = 0;
	sw_update_free(u);
	return len;
}

static void *device(void *arg)
{
	long k = (long)(intptr_t)arg, n = 1, turn = k;
	CURL *h = curl_easy_init();
	struct curl_slist *hl = NULL;
	uint8_t body[64];
	char url[512];
	size_t len;

	if (h == NULL)
		return NULL;
	hl = curl_slist_append(hl, "Content-Type: application/x-protobuf");
	hl = curl_slist_append(hl, "Accept: application/x-protobuf");
	hl = curl_slist_append(hl, "Expect:");
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "PATCH");
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 10000L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 1000L);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
	len = encode(n, body, sizeof(body));
	while (now_s() < until && len > 0) {
		long status = 0;

		snprintf(url, sizeof(url), "%s/v2/traces/sessions/fleet-%ld",
			 gateways[turn++ % n_gateways], k);
		curl_easy_setopt(h, CURLOPT_URL, url);
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
		sent[k]++;
		if (curl_easy_perform(h) == CURLE_OK)
			curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
		if (status == 202) {
			acked[k] = n++;
			len = encode(n, body, sizeof(body));
		} else {
			usleep(10000); /* not acknowledged: again, elsewhere */
		}
	}
	curl_slist_free_all(hl);
	curl_easy_cleanup(h);
	return NULL;
}

static int cmd_send(int argc, char **argv)
{
	const char *out = NULL;
	char *list = NULL, *save = NULL, *g;
	long sessions = 16, k;
	double seconds = 30;
	pthread_t th[SESSIONS_MAX];
	FILE *f;
	int i;

	for (i = 2; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--gateways"))
			list = argv[i + 1];
		else if (!strcmp(argv[i], "--sessions"))
			sessions = strtol(argv[i + 1], NULL, 10);
		else if (!strcmp(argv[i], "--seconds"))
			seconds = strtod(argv[i + 1], NULL);
		else if (!strcmp(argv[i], "--out"))
			out = argv[i + 1];
		else
			break;
	}
	if (i != argc || list == NULL || out == NULL || sessions < 1 ||
	    sessions > SESSIONS_MAX || !(seconds > 0)) {
		usage(stderr);
		return 2;
	}
	for (g = strtok_r(list, ",", &save); g && n_gateways < GATEWAYS_MAX;
	     g = strtok_r(NULL, ",", &save))
		gateways[n_gateways++] = g;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	until = now_s() + seconds;
	for (k = 0; k < sessions; k++)
		if (pthread_create(&th[k], NULL, device, (void *)(intptr_t)k) != 0)
			return 1;
	for (k = 0; k < sessions; k++)
		pthread_join(th[k], NULL);
	curl_global_cleanup();
	f = fopen(out, "w");
	if (f == NULL) {
		fprintf(stderr, "fleet: %s: %s\n", out, strerror(errno));
		return 1;
	}
	for (k = 0; k < sessions; k++)
		fprintf(f, "fleet-%ld %ld %ld\n", k, sent[k], acked[k]);
	return fclose(f) == 0 ? 0 : 1;
}

static int cmd_check(int argc, char **argv)
{
	const char *acked_path = NULL, *log_path = NULL;
	static long last[SESSIONS_MAX];
	static unsigned char *have[SESSIONS_MAX];
	long n_sessions = 0, total_sent = 0, total_acked = 0, delivered = 0;
	long dups = 0, lost = 0, order = 0, k;
	char line[8192];
	FILE *f;
	int i;

	for (i = 2; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--acked"))
			acked_path = argv[i + 1];
		else if (!strcmp(argv[i], "--upstream"))
			log_path = argv[i + 1];
		else
			break;
	}
	if (i != argc || acked_path == NULL || log_path == NULL) {
		usage(stderr);
		return 2;
	}
	f = fopen(acked_path, "r");
	if (f == NULL) {
		fprintf(stderr, "fleet: %s: %s\n", acked_path, strerror(errno));
		return 2;
	}
	while (fgets(line, sizeof(line), f) && n_sessions < SESSIONS_MAX) {
		long s, a;

		if (sscanf(line, "fleet-%ld %ld %ld", &k, &s, &a) != 3 || k < 0 ||
		    k >= SESSIONS_MAX || a < 0)
			continue;
		sent[k] = s;
		acked[k] = a;
		have[k] = calloc((size_t)a + 2, 1);
		total_sent += s;
		total_acked += a;
		if (k + 1 > n_sessions)
			n_sessions = k + 1;
	}
	fclose(f);
	f = fopen(log_path, "r");
	if (f == NULL) {
		fprintf(stderr, "fleet: %s: %s\n", log_path, strerror(errno));
		return 2;
	}
	while (fgets(line, sizeof(line), f)) {
		const char *p = strstr(line, "/sessions/fleet-");
		const char *v = strstr(line, "\"traces_count\":");
		long n;

		if (p == NULL || v == NULL)
			continue;
		k = strtol(p + 16, NULL, 10);
		n = strtol(v + 15, NULL, 10);
		if (k < 0 || k >= n_sessions || have[k] == NULL || n < 1)
			continue;
		delivered++;
		if (n < last[k] && ++order <= 5)
			fprintf(stderr, "fleet: session fleet-%ld: %ld after %ld (upstream request %ld)\n",
				k, n, last[k], delivered);
		else if (n == last[k])
			dups++;
		last[k] = n;
		if (n <= acked[k])
			have[k][n] = 1;
	}
	fclose(f);
	for (k = 0; k < n_sessions; k++) {
		long n;

		for (n = 1; have[k] && n <= acked[k]; n++)
			if (!have[k][n])
				lost++;
		free(have[k]);
	}
	printf("sessions      %ld\n", n_sessions);
	printf("sent          %ld requests\n", total_sent);
	printf("acknowledged  %ld updates (202)\n", total_acked);
	printf("delivered     %ld upstream requests\n", delivered);
	printf("duplicated    %ld (at least once: a repeat, never after a later update)\n",
	       dups);
	printf("lost          %ld\n", lost);
	printf("order         %s (%ld violations)\n",
	       order == 0 ? "kept in every session" : "BROKEN", order);
	return lost == 0 && order == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "send"))
		return cmd_send(argc, argv);
	if (argc >= 2 && !strcmp(argv[1], "check"))
		return cmd_check(argc, argv);
	usage(argc >= 2 && !strcmp(argv[1], "--help") ? stdout : stderr);
	return argc >= 2 && !strcmp(argv[1], "--help") ? 0 : 2;
}
