/* coap_client.h - a small CoAP client (RFC 7252, Block1 of RFC 7959) over
 * UDP or DTLS 1.2 with a pre-shared key (OpenSSL), written for
 * `session-codec send --coap` (send.c) and reused by the tests and the
 * CoAP bench. It counts every datagram's bytes (the UDP payload, DTLS
 * records included), the handshake apart. Independent of libcoap on
 * purpose: the gateway's ingress is tested against a second
 * implementation. One exchange at a time per connection, except through
 * the raw calls. */
#ifndef SW_CLI_COAP_CLIENT_H
#define SW_CLI_COAP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct cc_conn cc_conn;

/* Message types and the codes used here (c*100+dd). */
enum { CC_CON = 0, CC_NON = 1, CC_ACK = 2, CC_RST = 3 };
enum { CC_POST = 2 };

/* One option to send (in any order: cc_build sorts them). */
typedef struct cc_opt {
	uint16_t num;
	const uint8_t *val;
	size_t len;
} cc_opt;

/* A parsed message; pointers into the datagram. */
typedef struct cc_msg {
	int type, code;           /* code as c*100+dd (0: empty) */
	uint16_t mid;
	uint8_t token[8];
	size_t token_len;
	long max_age, block1, size1, content_format; /* -1: absent */
	const uint8_t *payload;
	size_t len;
} cc_msg;

/* An exchange's outcome. */
typedef struct cc_answer {
	int code;                 /* 204, 231, 400, 503 ... */
	long max_age, block1, size1;
	uint8_t *payload;         /* heap (cc_answer_free) */
	size_t len;
	bool separate;            /* a separate response after an empty ACK */
	unsigned retransmits;     /* of the last request datagram */
	size_t up, down;          /* bytes of the exchange's datagrams */
	unsigned blocks;          /* request datagrams (Block1: more than 1) */
} cc_answer;

/* Opens coap://HOST:PORT or coaps://HOST:PORT (HOST an IPv4 or IPv6
 * address; default ports 5683 and 5684); coaps needs identity and key and
 * does the DTLS handshake here. NULL with err. */
cc_conn *cc_open(const char *url, const char *identity, const uint8_t *key,
		 size_t key_len, char *err, size_t errlen);
void cc_close(cc_conn *c);
/* How long cc_open waits for the DTLS handshake (default 10 s; a wrong
 * key gets no answer at all: DTLS drops what it cannot verify). */
void cc_set_handshake_ms(long ms);
/* Bytes of the DTLS handshake (0 for coap://), and of everything so far. */
void cc_handshake_bytes(const cc_conn *c, size_t *up, size_t *down);
void cc_total_bytes(const cc_conn *c, size_t *up, size_t *down);
/* The cipher suite in use, or "" (plain CoAP). */
const char *cc_cipher(const cc_conn *c);

/* A confirmable POST of body to /path (one segment, e.g. "u"), Block1
 * blocks of 1024 bytes when it is larger; retransmitted (ACK_TIMEOUT 2 s,
 * random factor 1.5, 4 retransmissions); an empty ACK then waits up to
 * wait_ms for the separate response, which is acknowledged. 0 with *a
 * filled, or -1 with err (no answer). */
int cc_post(cc_conn *c, const char *path, const uint8_t *body, size_t len,
	    long wait_ms, cc_answer *a, char *err, size_t errlen);
void cc_answer_free(cc_answer *a);

/* ==== Raw messages (tests, the bench's load client) ==== */

/* Encodes a message into buf[0..cap); its length, or 0 when it does not
 * fit. code as c*100+dd. */
size_t cc_build(uint8_t *buf, size_t cap, int type, int code, uint16_t mid,
		const uint8_t *token, size_t token_len, const cc_opt *opts,
		size_t n_opts, const uint8_t *payload, size_t len);
/* Parses a datagram; 0, or -1 when it is not CoAP. */
int cc_parse(const uint8_t *buf, size_t n, cc_msg *m);
/* Sends one datagram (through DTLS on coaps). 0 or -1. */
int cc_send_raw(cc_conn *c, const uint8_t *buf, size_t n);
/* Receives one datagram (decrypted on coaps) within timeout_ms: its
 * length, 0 on timeout, -1 on an error. */
long cc_recv_raw(cc_conn *c, uint8_t *buf, size_t cap, long timeout_ms);
/* The connection's socket (poll it before cc_recv_raw). */
int cc_fd(const cc_conn *c);
/* A fresh message id. */
uint16_t cc_next_mid(cc_conn *c);

#endif
