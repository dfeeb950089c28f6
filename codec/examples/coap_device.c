/* coap_device.c - a device that reports trace-session updates to a
 * session-gateway over CoAP and DTLS with a pre-shared key: what a
 * firmware team would start from (the tests build it and run it against
 * the gateway, through a relay that loses datagrams).
 *
 *   coap-device coaps://HOST:PORT IDENTITY KEY_HEX SESSION_ID COUNT [SEQ]
 *
 * Each update is built field by field with the heap-free encoder
 * (sessionwire/sw_device.h), wrapped in an Envelope (session id, seq,
 * update) and POSTed to /u as a confirmable message with libcoap's client
 * API. One DTLS session carries every update (its handshake, about a
 * kilobyte, is paid once). libcoap retransmits a message that gets no
 * ACK (2 to 3 s, doubling, 4 times); when it gives up, the same envelope
 * goes again in a new message: the gateway knows it by (device, session,
 * seq) and answers it once. The answer: 2.04 with a Result (done: delete
 * the update), 4.xx with an Error (the update is wrong: log it, delete
 * it), 5.03 with Max-Age (keep it, send it again after that long).
 *
 * Exit status: 0 every update confirmed, 1 some refused, 2 usage or no
 * connection.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <coap3/coap.h>

#include "sessionwire/sw_device.h"
#include "sessionwire/sw_pb.h"
#include "sessionwire/sw_envelope.h"

#define RESENDS 3               /* new messages for one envelope */
#define WAIT_MS 30000           /* for an answer, libcoap's retries included */

/* What the response handler saw for the message in flight. */
static struct {
	uint8_t token;
	int done;               /* 0 waiting, 1 answered, -1 given up */
	int code;               /* c*100+dd */
	long max_age;
	uint8_t payload[512];
	size_t len;
} cur;

static coap_response_t on_response(coap_session_t *s, const coap_pdu_t *sent,
				   const coap_pdu_t *rcvd, const coap_mid_t mid)
{
	coap_bin_const_t tok = coap_pdu_get_token(rcvd);
	coap_opt_iterator_t it;
	coap_opt_t *opt;
	const uint8_t *data;
	size_t len;
	int code = (int)coap_pdu_get_code(rcvd);

	(void)s;
	(void)sent;
	(void)mid;
	if (tok.length != 1 || tok.s[0] != cur.token)
		return COAP_RESPONSE_OK; /* not ours (a late answer) */
	cur.code = (code >> 5) * 100 + (code & 31);
	cur.max_age = -1;
	opt = coap_check_option(rcvd, COAP_OPTION_MAXAGE, &it);
	if (opt != NULL)
		cur.max_age = (long)coap_decode_var_bytes(coap_opt_value(opt),
							  coap_opt_length(opt));
	cur.len = 0;
	if (coap_get_data(rcvd, &len, &data) && len <= sizeof(cur.payload)) {
		memcpy(cur.payload, data, len);
		cur.len = len;
	}
	cur.done = 1;
	return COAP_RESPONSE_OK;
}

/* libcoap gave up on a message (no ACK after its retransmissions). */
static void on_nack(coap_session_t *s, const coap_pdu_t *sent,
		    const coap_nack_reason_t reason, const coap_mid_t mid)
{
	(void)s;
	(void)sent;
	(void)mid;
	if (!cur.done)
		cur.done = -1;
	if (reason == COAP_NACK_TLS_FAILED)
		fprintf(stderr, "coap-device: the DTLS session failed (key?)\n");
}

/* One update, the way firmware would fill it: integers only. */
static int build_update(uint64_t seq, uint8_t *buf, size_t cap, size_t *len)
{
	static const sw_str tags[] = { { "edge", 4 }, { "fw:2.1.0", 8 } };
	int64_t t0 = 1748282246708 + (int64_t)seq * 60000;
	sw_dev w;

	sw_dev_begin(&w, buf, cap);
	sw_dev_time(&w, SW_DEV_STARTED_AT, t0);
	sw_dev_id(&w, SW_DEV_EXTERNAL_ID, "dev-a8346607363a", 16);
	sw_dev_count(&w, SW_DEV_DURATION, 1358 + (int64_t)seq);
	sw_dev_trio(&w, SW_DEV_USAGE, 2894, 987, SW_DEV_SUM);
	sw_dev_count(&w, SW_DEV_TRACES_COUNT, (int64_t)seq);
	sw_dev_list(&w, SW_DEV_TAGS, tags, 2);
	sw_dev_time(&w, SW_DEV_UPDATED_AT, t0 + 1358 + (int64_t)seq);
	if (sw_dev_end(&w, len) != SW_OK) {
		fprintf(stderr, "coap-device: update: error %d at field %d\n",
			(int)w.status, w.field);
		return -1;
	}
	return 0;
}

/* POSTs env to /u and waits for the answer (cur). 0 answered, -1 not. */
static int post(coap_context_t *ctx, coap_session_t *s, const uint8_t *env,
		size_t n)
{
	coap_pdu_t *pdu;
	int waited = 0;

	cur.token++;
	cur.done = 0;
	pdu = coap_pdu_init(COAP_MESSAGE_CON, COAP_REQUEST_CODE_POST,
			    coap_new_message_id(s), coap_session_max_pdu_size(s));
	if (pdu == NULL || !coap_add_token(pdu, 1, &cur.token) ||
	    !coap_add_option(pdu, COAP_OPTION_URI_PATH, 1, (const uint8_t *)"u") ||
	    !coap_add_data(pdu, n, env)) {
		coap_delete_pdu(pdu);
		return -1;
	}
	if (coap_send(s, pdu) == COAP_INVALID_MID)
		return -1;
	while (cur.done == 0 && waited < WAIT_MS) {
		int r = coap_io_process(ctx, 250);

		if (r < 0)
			return -1;
		waited += r > 0 ? r : 1;
	}
	return cur.done == 1 ? 0 : -1;
}

static int hex_key(const char *hex, uint8_t *key, size_t cap, size_t *len)
{
	size_t n = strlen(hex), i;

	if (n == 0 || n % 2 || n / 2 > cap)
		return -1;
	for (i = 0; i < n / 2; i++) {
		unsigned v;

		if (sscanf(hex + 2 * i, "%2x", &v) != 1)
			return -1;
		key[i] = (uint8_t)v;
	}
	*len = n / 2;
	return 0;
}

int main(int argc, char **argv)
{
	coap_context_t *ctx = NULL;
	coap_session_t *s = NULL;
	coap_dtls_cpsk_t psk;
	coap_address_t dst;
	coap_uri_t uri;
	sw_session_id sid;
	uint8_t key[64];
	size_t key_len;
	uint64_t seq, first = 1, count;
	int status = 0, i;

	if (argc < 6 || argc > 7) {
		fprintf(stderr, "usage: coap-device coaps://HOST:PORT IDENTITY KEY_HEX SESSION_ID COUNT [FIRST_SEQ]\n");
		return 2;
	}
	count = strtoull(argv[5], NULL, 10);
	if (argc == 7)
		first = strtoull(argv[6], NULL, 10);
	if (hex_key(argv[3], key, sizeof(key), &key_len) != 0 ||
	    coap_split_uri((const uint8_t *)argv[1], strlen(argv[1]), &uri) < 0 ||
	    uri.scheme != COAP_URI_SCHEME_COAPS) {
		fprintf(stderr, "coap-device: expected coaps://HOST:PORT and a hex key\n");
		return 2;
	}
	coap_startup();
	coap_set_log_level(LOG_EMERG);
	coap_dtls_set_log_level(LOG_EMERG);
	/* the gateway's address (an IP address: no resolver on the device) */
	coap_address_init(&dst);
	{
		char host[64];

		snprintf(host, sizeof(host), "%.*s", (int)uri.host.length,
			 (const char *)uri.host.s);
		dst.addr.sin.sin_family = AF_INET;
		dst.addr.sin.sin_port = htons(uri.port);
		dst.size = sizeof(dst.addr.sin);
		if (inet_pton(AF_INET, host, &dst.addr.sin.sin_addr) != 1) {
			fprintf(stderr, "coap-device: %s is not an IPv4 address\n", host);
			return 2;
		}
	}
	memset(&psk, 0, sizeof(psk));
	psk.version = COAP_DTLS_CPSK_SETUP_VERSION;
	psk.psk_info.identity.s = (const uint8_t *)argv[2];
	psk.psk_info.identity.length = strlen(argv[2]);
	psk.psk_info.key.s = key;
	psk.psk_info.key.length = key_len;
	ctx = coap_new_context(NULL);
	if (ctx != NULL)
		s = coap_new_client_session_psk2(ctx, NULL, &dst, COAP_PROTO_DTLS,
						 &psk);
	if (s == NULL) {
		fprintf(stderr, "coap-device: cannot set up the DTLS session\n");
		coap_free_context(ctx);
		return 2;
	}
	coap_register_response_handler(ctx, on_response);
	coap_register_nack_handler(ctx, on_nack);
	sw_session_id_set(&sid, argv[4], strlen(argv[4]));
	for (seq = first; seq < first + count; seq++) {
		uint8_t upd[SW_PB_MAX_SIZE(32, 0, 2)], env[sizeof(upd) + 40];
		size_t ul, el;

		if (build_update(seq, upd, sizeof(upd), &ul) != 0 ||
		    sw_envelope_encode(&sid, true, seq, upd, ul, env, sizeof(env),
				       &el, NULL) != SW_OK) {
			status = 2;
			break;
		}
		for (i = 0; i <= RESENDS; i++) {
			if (post(ctx, s, env, el) != 0) {
				/* no answer: the same envelope, a new message */
				fprintf(stderr, "coap-device: seq %llu: no answer, sending it again\n",
					(unsigned long long)seq);
				continue;
			}
			if (cur.code == 503) {
				long wait = cur.max_age > 0 ? cur.max_age : 5;

				printf("seq %llu: 5.03, again in %ld s\n",
				       (unsigned long long)seq, wait);
				sleep((unsigned)wait);
				continue;
			}
			break;
		}
		if (i > RESENDS) {
			printf("seq %llu: given up (kept for later)\n",
			       (unsigned long long)seq);
			status = 2;
			continue;
		}
		if (cur.code / 100 == 2) {
			sw_result r;

			if (sw_result_decode(cur.payload, cur.len, &r, NULL) == SW_OK)
				printf("seq %llu: %d.%02d status=%u\n",
				       (unsigned long long)seq, cur.code / 100,
				       cur.code % 100, (unsigned)r.status);
		} else {
			sw_error_msg e;

			if (sw_error_msg_decode(cur.payload, cur.len, &e, NULL) == SW_OK)
				printf("seq %llu: %d.%02d %.*s\n",
				       (unsigned long long)seq, cur.code / 100,
				       cur.code % 100, (int)e.message.len,
				       e.message.ptr);
			status = status ? status : 1;
		}
	}
	coap_session_release(s);
	coap_free_context(ctx);
	coap_cleanup();
	return status;
}
