/* coap.c - the CoAP benchmark's two tools (bench/coap.sh runs them). A
 * benchmark program, never a test.
 *
 *   bench-coap pcap FILE --port P --updates N [--tcp] [--json OUT --key K]
 *       Counts the UDP payload of every IPv4 datagram to or from port P in
 *       a tcpdump capture (linktypes EN10MB, LINUX_SLL, LINUX_SLL2), by
 *       direction (to P: up) and, for DTLS, by what the datagram carries:
 *       handshake (record types 20 and 22), application data (23), alerts
 *       (21, the close_notify at the end). Per update: the data bytes / N.
 *       With --tcp, the TCP payload instead (HTTP: request and response,
 *       no TCP or IP headers, as no UDP or IP headers for CoAP). With
 *       --json, appends "wire.K_bytes_per_update", "_up_", "_down_",
 *       "wire.K_handshake_bytes" members.
 *
 *   bench-coap load URL [--psk-identity I --psk-key HEX] --pb FILE
 *       --sid PREFIX22 [--conns C] [--window W] [--seconds S]
 *       A load client: C connections (DTLS sessions with coaps://), each
 *       keeping W confirmable POST /u in flight; every request is an
 *       Envelope of the update in FILE for one of 1000 sessions (PREFIX22
 *       + 4 digits: ULIDs, sent as 16 bytes) with its own seq, so none is
 *       a duplicate. A request without an answer in 2 s is counted lost
 *       (not retransmitted). Prints one JSON object: requests, rps, p50 and
 *       p99 ms, non-2.04 answers, lost.
 */
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../codec/cli/coap_client.h"
#include "sessionwire/sessionwire.h"

/* ==== pcap ==== */

typedef struct tally {
	unsigned long up, down;           /* every datagram */
	unsigned long up_n, down_n;
	unsigned long hs_up, hs_down;     /* DTLS handshake */
	unsigned long data_up, data_down; /* CoAP, or DTLS application data */
	unsigned long alert;              /* DTLS alerts */
} tally;

static uint32_t rd32(const uint8_t *p, bool swap)
{
	uint32_t v = (uint32_t)p[0] | (uint32_t)p[1] << 8 |
		     (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;

	return swap ? __builtin_bswap32(v) : v;
}

/* What a UDP payload is: 'h' handshake, 'd' data, 'a' alert. */
static char kind_of(const uint8_t *p, size_t n)
{
	if (n > 0 && (p[0] >> 6) == 1)
		return 'd'; /* CoAP version 1 */
	if (n > 0 && p[0] == 23)
		return 'd';
	if (n > 0 && p[0] == 21)
		return 'a';
	return 'h';
}

static int cmd_pcap(int argc, char **argv)
{
	const char *file = NULL, *json = NULL, *key = "coap";
	long port = 0, updates = 1;
	bool tcp = false;
	tally t;
	uint8_t gh[24], rh[16], *pkt = NULL;
	FILE *f;
	bool swap;
	uint32_t link;
	int i;

	memset(&t, 0, sizeof(t));
	for (i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--port") && i + 1 < argc)
			port = strtol(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--updates") && i + 1 < argc)
			updates = strtol(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--json") && i + 1 < argc)
			json = argv[++i];
		else if (!strcmp(argv[i], "--key") && i + 1 < argc)
			key = argv[++i];
		else if (!strcmp(argv[i], "--tcp"))
			tcp = true;
		else
			file = argv[i];
	}
	if (file == NULL || port <= 0 || updates <= 0) {
		fprintf(stderr, "usage: bench-coap pcap FILE --port P --updates N [--json OUT --key K]\n");
		return 2;
	}
	f = fopen(file, "rb");
	if (f == NULL || fread(gh, 1, 24, f) != 24) {
		fprintf(stderr, "bench-coap: cannot read %s\n", file);
		if (f)
			fclose(f);
		return 1;
	}
	swap = rd32(gh, false) == 0xd4c3b2a1u;
	link = rd32(gh + 20, swap);
	pkt = malloc(262144);
	if (pkt == NULL) {
		fclose(f);
		return 1;
	}
	while (fread(rh, 1, 16, f) == 16) {
		uint32_t incl = rd32(rh + 8, swap);
		size_t l2, ihl, ulen;
		const uint8_t *ip, *udp;
		unsigned sport, dport;
		char k;

		if (incl > 262144 || fread(pkt, 1, incl, f) != incl)
			break;
		l2 = link == 1 ? 14 : link == 113 ? 16 : link == 276 ? 20 : 0;
		if (link == 1 && (incl < 14 || pkt[12] != 0x08 || pkt[13] != 0x00))
			continue;
		if (incl < l2 + 28)
			continue;
		ip = pkt + l2;
		if ((ip[0] >> 4) != 4 || ip[9] != (tcp ? 6 : 17))
			continue;
		ihl = (size_t)(ip[0] & 15) * 4;
		if (incl < l2 + ihl + (tcp ? 20 : 8))
			continue;
		udp = ip + ihl;
		sport = (unsigned)(udp[0] << 8 | udp[1]);
		dport = (unsigned)(udp[2] << 8 | udp[3]);
		if (tcp) {
			size_t total = (size_t)(ip[2] << 8 | ip[3]);
			size_t doff = (size_t)(udp[12] >> 4) * 4;

			if (total < ihl + doff)
				continue;
			ulen = total - ihl - doff;
			if (ulen == 0)
				continue; /* a bare ACK, SYN or FIN */
			k = 'd';
		} else {
			ulen = (size_t)(udp[4] << 8 | udp[5]);
			if (ulen < 8)
				continue;
			ulen -= 8; /* the UDP payload as sent, whatever was captured */
			k = kind_of(udp + 8, incl - l2 - ihl - 8);
		}
		if (dport == (unsigned)port) {
			t.up += ulen;
			t.up_n++;
			if (k == 'd')
				t.data_up += ulen;
			else if (k == 'h')
				t.hs_up += ulen;
			else
				t.alert += ulen;
		} else if (sport == (unsigned)port) {
			t.down += ulen;
			t.down_n++;
			if (k == 'd')
				t.data_down += ulen;
			else if (k == 'h')
				t.hs_down += ulen;
			else
				t.alert += ulen;
		}
	}
	fclose(f);
	free(pkt);
	printf("%s: %lu datagrams up (%lu B), %lu down (%lu B); per update (%ld): %.1f up + %.1f down = %.1f B; handshake %lu up + %lu down = %lu B; alerts %lu B\n",
	       key, t.up_n, t.up, t.down_n, t.down, updates,
	       (double)t.data_up / (double)updates,
	       (double)t.data_down / (double)updates,
	       (double)(t.data_up + t.data_down) / (double)updates, t.hs_up,
	       t.hs_down, t.hs_up + t.hs_down, t.alert);
	if (json != NULL) {
		FILE *o = fopen(json, "a");

		if (o == NULL)
			return 1;
		fprintf(o, "  \"wire.%s_bytes_per_update\": %.1f,\n", key,
			(double)(t.data_up + t.data_down) / (double)updates);
		fprintf(o, "  \"wire.%s_up_bytes_per_update\": %.1f,\n", key,
			(double)t.data_up / (double)updates);
		fprintf(o, "  \"wire.%s_down_bytes_per_update\": %.1f,\n", key,
			(double)t.data_down / (double)updates);
		fprintf(o, "  \"wire.%s_data_bytes\": %lu,\n", key,
			t.data_up + t.data_down);
		fprintf(o, "  \"wire.%s_%s\": %lu,\n", key,
			tcp ? "segments" : "datagrams", t.up_n + t.down_n);
		if (t.hs_up + t.hs_down > 0)
			fprintf(o, "  \"wire.%s_handshake_bytes\": %lu,\n", key,
				t.hs_up + t.hs_down);
		fclose(o);
	}
	return 0;
}

/* ==== load ==== */

#define SLOTS_MAX 256
#define SESSIONS 1000
#define LOST_MS 2000

typedef struct slot {
	bool busy, acked;
	uint16_t mid, tok;
	double t0;
} slot;

typedef struct conn {
	cc_conn *c;
	slot s[SLOTS_MAX];
	uint16_t tok;
} conn;

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int dbl_cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static uint8_t pb[4096];
static size_t pb_len;
static char sid_prefix[32];
static uint64_t next_seq[SESSIONS];
static unsigned next_session;

/* Sends a new request in slot s of connection k. */
static void fire(conn *cn, slot *s)
{
	uint8_t env[4200], req[4400], tok[2];
	char sid[40];
	sw_session_id id;
	size_t en = 0, rn;
	unsigned k = next_session++ % SESSIONS;
	cc_opt path = { 11, (const uint8_t *)"u", 1 };

	snprintf(sid, sizeof(sid), "%s%04u", sid_prefix, k);
	sw_session_id_set(&id, sid, strlen(sid));
	if (sw_envelope_encode(&id, true, ++next_seq[k], pb, pb_len, env,
			       sizeof(env), &en, NULL) != SW_OK)
		return;
	s->tok = ++cn->tok;
	tok[0] = (uint8_t)(s->tok >> 8);
	tok[1] = (uint8_t)s->tok;
	s->mid = cc_next_mid(cn->c);
	rn = cc_build(req, sizeof(req), CC_CON, CC_POST, s->mid, tok, 2, &path,
		      1, env, en);
	s->busy = true;
	s->acked = false;
	s->t0 = now_s();
	cc_send_raw(cn->c, req, rn);
}

static int cmd_load(int argc, char **argv)
{
	const char *url = NULL, *id = NULL, *keyhex = NULL, *pbfile = NULL;
	int conns = 4, window = 8, i, j;
	double secs = 5, t_end, t_start;
	uint8_t key[64];
	size_t key_len = 0;
	conn *cs;
	double *lat;
	size_t n_lat = 0, cap_lat = 4000000;
	unsigned long done = 0, not204 = 0, lost = 0;
	char err[256];
	FILE *f;

	for (i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--psk-identity") && i + 1 < argc)
			id = argv[++i];
		else if (!strcmp(argv[i], "--psk-key") && i + 1 < argc)
			keyhex = argv[++i];
		else if (!strcmp(argv[i], "--pb") && i + 1 < argc)
			pbfile = argv[++i];
		else if (!strcmp(argv[i], "--sid") && i + 1 < argc)
			snprintf(sid_prefix, sizeof(sid_prefix), "%.22s", argv[++i]);
		else if (!strcmp(argv[i], "--conns") && i + 1 < argc)
			conns = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--window") && i + 1 < argc)
			window = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
			secs = atof(argv[++i]);
		else
			url = argv[i];
	}
	if (url == NULL || pbfile == NULL || conns < 1 || conns > 64 ||
	    window < 1 || window > SLOTS_MAX || strlen(sid_prefix) != 22) {
		fprintf(stderr, "usage: bench-coap load URL [--psk-identity I --psk-key HEX] --pb FILE --sid PREFIX22 [--conns C] [--window W] [--seconds S]\n");
		return 2;
	}
	if (keyhex != NULL) {
		size_t n = strlen(keyhex);

		for (key_len = 0; key_len < n / 2 && key_len < sizeof(key); key_len++) {
			unsigned v;

			if (sscanf(keyhex + 2 * key_len, "%2x", &v) != 1)
				return 2;
			key[key_len] = (uint8_t)v;
		}
	}
	f = fopen(pbfile, "rb");
	if (f == NULL)
		return 2;
	pb_len = fread(pb, 1, sizeof(pb), f);
	fclose(f);
	cs = calloc((size_t)conns, sizeof(*cs));
	lat = malloc(cap_lat * sizeof(*lat));
	if (cs == NULL || lat == NULL)
		return 1;
	for (i = 0; i < conns; i++) {
		cs[i].c = cc_open(url, id, key, key_len, err, sizeof(err));
		if (cs[i].c == NULL) {
			fprintf(stderr, "bench-coap: %s: %s\n", url, err);
			return 1;
		}
	}
	t_start = now_s();
	t_end = t_start + secs;
	for (i = 0; i < conns; i++)
		for (j = 0; j < window; j++)
			fire(&cs[i], &cs[i].s[j]);
	while (now_s() < t_end) {
		struct pollfd pf[64];

		for (i = 0; i < conns; i++) {
			pf[i].fd = cc_fd(cs[i].c);
			pf[i].events = POLLIN;
			pf[i].revents = 0;
		}
		poll(pf, (nfds_t)conns, 50);
		for (i = 0; i < conns; i++) {
			conn *cn = &cs[i];
			double now = now_s();

			/* lost ones make room */
			for (j = 0; j < window; j++)
				if (cn->s[j].busy && now - cn->s[j].t0 > LOST_MS / 1000.0) {
					lost++;
					fire(cn, &cn->s[j]);
				}
			if (!(pf[i].revents & POLLIN))
				continue;
			for (;;) {
				uint8_t buf[1500];
				cc_msg m;
				long n = cc_recv_raw(cn->c, buf, sizeof(buf), 0);

				if (n <= 0)
					break;
				if (cc_parse(buf, (size_t)n, &m) != 0)
					continue;
				if (m.type == CC_CON) {
					uint8_t ack[4];

					cc_send_raw(cn->c, ack, cc_build(ack, 4, CC_ACK, 0,
									 m.mid, NULL, 0,
									 NULL, 0, NULL, 0));
				}
				for (j = 0; j < window; j++) {
					slot *s = &cn->s[j];

					if (!s->busy)
						continue;
					if (m.type == CC_ACK && m.mid == s->mid && m.code == 0) {
						s->acked = true; /* separate answer follows */
						break;
					}
					if (m.code != 0 && m.token_len == 2 &&
					    (uint16_t)(m.token[0] << 8 | m.token[1]) == s->tok) {
						done++;
						if (m.code != 204)
							not204++;
						if (n_lat < cap_lat)
							lat[n_lat++] = (now_s() - s->t0) * 1000;
						s->busy = false;
						if (now_s() < t_end)
							fire(cn, s);
						break;
					}
				}
			}
		}
	}
	secs = now_s() - t_start;
	qsort(lat, n_lat, sizeof(*lat), dbl_cmp);
	printf("{\"requests\": %lu, \"seconds\": %.2f, \"rps\": %.0f, \"p50_ms\": %.3f, \"p99_ms\": %.3f, \"non_204\": %lu, \"lost\": %lu, \"conns\": %d, \"window\": %d}\n",
	       done, secs, (double)done / secs,
	       n_lat ? lat[n_lat / 2] : 0.0,
	       n_lat ? lat[(size_t)((double)n_lat * 0.99)] : 0.0, not204, lost,
	       conns, window);
	for (i = 0; i < conns; i++)
		cc_close(cs[i].c);
	free(cs);
	free(lat);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "pcap"))
		return cmd_pcap(argc, argv);
	if (argc >= 2 && !strcmp(argv[1], "load"))
		return cmd_load(argc, argv);
	fprintf(stderr, "usage: bench-coap pcap ... | bench-coap load ... (see bench/coap.c)\n");
	return 2;
}
