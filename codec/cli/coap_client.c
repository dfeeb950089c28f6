/* coap_client.c - the CoAP client of session-codec send --coap (see
 * coap_client.h): messages built and parsed by hand (RFC 7252 section 3),
 * confirmable requests retransmitted (section 4.2), separate responses
 * acknowledged (5.2.2), Block1 for large bodies (RFC 7959), over a
 * connected UDP socket or OpenSSL's DTLS 1.2 with a pre-shared key.
 *
 * Bytes: every datagram this client writes or reads is counted at the
 * socket (for DTLS through a BIO callback: records, headers and tags
 * included), so the figures are the UDP payload on the wire.
 *
 * Cipher suites offered, in order: PSK-CHACHA20-POLY1305 (29 bytes of
 * record overhead: 13 header + 16 tag, no explicit nonce), then the
 * AES-GCM ones (37: an 8-byte explicit nonce more). AES-128-CCM-8 (the
 * CoAP mandatory one, 29 bytes too) is below OpenSSL's default security
 * level on Debian and is not offered.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include "coap_client.h"

#define ACK_TIMEOUT_MS 2000
#define MAX_RETRANSMIT 4
#define BLOCK_SZX 6               /* 1024-byte blocks */
#define HANDSHAKE_MS 10000       /* the default; cc_set_handshake_ms */
#define DGRAM_MAX 1500
#define CIPHERS "PSK-CHACHA20-POLY1305:PSK-AES128-GCM-SHA256:" \
	"ECDHE-PSK-CHACHA20-POLY1305:PSK-AES256-GCM-SHA384"

/* Option numbers used here. */
enum {
	OPT_URI_PATH = 11, OPT_CONTENT_FORMAT = 12, OPT_MAX_AGE = 14,
	OPT_BLOCK1 = 27, OPT_SIZE1 = 60
};

struct cc_conn {
	int fd;
	SSL_CTX *ctx;
	SSL *ssl;                 /* NULL: plain CoAP */
	char identity[129];
	uint8_t key[64];
	size_t key_len;
	uint16_t mid;
	uint8_t token;
	size_t up, down;          /* every datagram */
	size_t hs_up, hs_down;    /* the handshake's */
};

static long handshake_ms = HANDSHAKE_MS;

void cc_set_handshake_ms(long ms)
{
	handshake_ms = ms > 0 ? ms : HANDSHAKE_MS;
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ==== Messages ==== */

static int opt_cmp(const void *a, const void *b)
{
	const cc_opt *x = a, *y = b;

	return (int)x->num - (int)y->num;
}

/* The 4-bit field and its extension bytes for v (delta or length). */
static size_t ext_of(size_t v, uint8_t *nib, uint8_t ext[2])
{
	if (v < 13) {
		*nib = (uint8_t)v;
		return 0;
	}
	if (v < 269) {
		*nib = 13;
		ext[0] = (uint8_t)(v - 13);
		return 1;
	}
	*nib = 14;
	ext[0] = (uint8_t)((v - 269) >> 8);
	ext[1] = (uint8_t)(v - 269);
	return 2;
}

size_t cc_build(uint8_t *buf, size_t cap, int type, int code, uint16_t mid,
		const uint8_t *token, size_t token_len, const cc_opt *opts,
		size_t n_opts, const uint8_t *payload, size_t len)
{
	cc_opt sorted[16];
	size_t pos = 4, i;
	unsigned last = 0;

	if (token_len > 8 || n_opts > 16 || cap < 4 + token_len)
		return 0;
	buf[0] = (uint8_t)(0x40 | (type & 3) << 4 | token_len);
	buf[1] = (uint8_t)((code / 100) << 5 | (code % 100));
	buf[2] = (uint8_t)(mid >> 8);
	buf[3] = (uint8_t)mid;
	if (token_len)
		memcpy(buf + pos, token, token_len);
	pos += token_len;
	if (n_opts) {
		memcpy(sorted, opts, n_opts * sizeof(*opts));
		qsort(sorted, n_opts, sizeof(*sorted), opt_cmp);
	}
	for (i = 0; i < n_opts; i++) {
		uint8_t dn, ln, de[2], le[2];
		size_t dl = ext_of(sorted[i].num - last, &dn, de);
		size_t ll = ext_of(sorted[i].len, &ln, le);

		if (pos + 1 + dl + ll + sorted[i].len > cap)
			return 0;
		buf[pos++] = (uint8_t)(dn << 4 | ln);
		memcpy(buf + pos, de, dl);
		pos += dl;
		memcpy(buf + pos, le, ll);
		pos += ll;
		if (sorted[i].len)
			memcpy(buf + pos, sorted[i].val, sorted[i].len);
		pos += sorted[i].len;
		last = sorted[i].num;
	}
	if (len > 0) {
		if (pos + 1 + len > cap)
			return 0;
		buf[pos++] = 0xff;
		memcpy(buf + pos, payload, len);
		pos += len;
	}
	return pos;
}

/* A uint option value (0-4 bytes, big-endian). */
static long opt_uint(const uint8_t *v, size_t n)
{
	long x = 0;
	size_t i;

	for (i = 0; i < n && i < 4; i++)
		x = x << 8 | v[i];
	return x;
}

int cc_parse(const uint8_t *buf, size_t n, cc_msg *m)
{
	size_t pos = 4, tkl;
	unsigned num = 0;

	memset(m, 0, sizeof(*m));
	m->max_age = m->block1 = m->size1 = m->content_format = -1;
	if (n < 4 || (buf[0] >> 6) != 1)
		return -1;
	tkl = buf[0] & 15;
	if (tkl > 8 || pos + tkl > n)
		return -1;
	m->type = buf[0] >> 4 & 3;
	m->code = (buf[1] >> 5) * 100 + (buf[1] & 31);
	m->mid = (uint16_t)(buf[2] << 8 | buf[3]);
	m->token_len = tkl;
	memcpy(m->token, buf + pos, tkl);
	pos += tkl;
	while (pos < n && buf[pos] != 0xff) {
		size_t d = buf[pos] >> 4, l = buf[pos] & 15;

		pos++;
		if (d == 15 || l == 15)
			return -1;
		if (d == 13 || d == 14) {
			if (pos + (d - 12) > n)
				return -1;
			d = d == 13 ? 13u + buf[pos] : 269u + (size_t)(buf[pos] << 8 | buf[pos + 1]);
			pos += d < 269 ? 1 : 2;
		}
		if (l == 13 || l == 14) {
			if (pos + (l - 12) > n)
				return -1;
			l = l == 13 ? 13u + buf[pos] : 269u + (size_t)(buf[pos] << 8 | buf[pos + 1]);
			pos += l < 269 ? 1 : 2;
		}
		if (pos + l > n)
			return -1;
		num += (unsigned)d;
		if (num == OPT_MAX_AGE)
			m->max_age = opt_uint(buf + pos, l);
		else if (num == OPT_BLOCK1)
			m->block1 = opt_uint(buf + pos, l);
		else if (num == OPT_SIZE1)
			m->size1 = opt_uint(buf + pos, l);
		else if (num == OPT_CONTENT_FORMAT)
			m->content_format = opt_uint(buf + pos, l);
		pos += l;
	}
	if (pos < n) {
		pos++; /* the payload marker */
		if (pos == n)
			return -1; /* a marker with no payload */
		m->payload = buf + pos;
		m->len = n - pos;
	}
	return 0;
}

/* ==== The transport ==== */

/* OpenSSL's BIO_callback_fn_ex: the signature is OpenSSL's, processed
 * cannot be const. */
static long count_bio(BIO *b, int oper, const char *argp, size_t len,
		      /* cppcheck-suppress constParameter */
		      int argi, long argl, int ret, size_t *processed)
{
	cc_conn *c = (cc_conn *)BIO_get_callback_arg(b);

	(void)argp;
	(void)len;
	(void)argi;
	(void)argl;
	if (c != NULL && ret > 0 && processed != NULL) {
		if (oper == (BIO_CB_WRITE | BIO_CB_RETURN))
			c->up += *processed;
		else if (oper == (BIO_CB_READ | BIO_CB_RETURN))
			c->down += *processed;
	}
	return ret;
}

static unsigned int psk_client(SSL *ssl, const char *hint, char *identity,
			       unsigned int max_identity_len,
			       unsigned char *psk, unsigned int max_psk_len)
{
	cc_conn *c = SSL_get_app_data(ssl);

	(void)hint;
	if (c == NULL || strlen(c->identity) >= max_identity_len ||
	    c->key_len > max_psk_len)
		return 0;
	memcpy(identity, c->identity, strlen(c->identity) + 1);
	memcpy(psk, c->key, c->key_len);
	return (unsigned int)c->key_len;
}

/* OpenSSL's first error as text into err. */
static void ssl_error(char *err, size_t errlen, const char *what)
{
	unsigned long e = ERR_get_error();
	char buf[256];

	ERR_error_string_n(e, buf, sizeof(buf));
	snprintf(err, errlen, "%s: %s", what, e ? buf : "no answer");
	ERR_clear_error();
}

/* host[:port] of coap://host:port into the address. 0 or -1. */
static int parse_url(const char *url, bool *dtls, struct sockaddr_storage *ss,
		     socklen_t *sl, char *err, size_t errlen)
{
	const char *p, *end;
	char host[64];
	size_t hl;
	long port;

	if (!strncmp(url, "coaps://", 8)) {
		*dtls = true;
		p = url + 8;
		port = 5684;
	} else if (!strncmp(url, "coap://", 7)) {
		*dtls = false;
		p = url + 7;
		port = 5683;
	} else {
		snprintf(err, errlen, "expected a coap:// or coaps:// URL, found \"%.80s\"", url);
		return -1;
	}
	if (*p == '[') {
		end = strchr(p, ']');
		if (end == NULL)
			goto bad;
		hl = (size_t)(end - p - 1);
		if (hl >= sizeof(host))
			goto bad;
		memcpy(host, p + 1, hl);
		end++;
	} else {
		end = p + strcspn(p, ":/");
		hl = (size_t)(end - p);
		if (hl == 0 || hl >= sizeof(host))
			goto bad;
		memcpy(host, p, hl);
	}
	host[hl] = '\0';
	if (*end == ':') {
		char *e;

		port = strtol(end + 1, &e, 10);
		if (e == end + 1 || port < 1 || port > 65535 ||
		    (*e != '\0' && strcmp(e, "/") != 0))
			goto bad;
	} else if (*end != '\0' && strcmp(end, "/") != 0) {
		goto bad;
	}
	memset(ss, 0, sizeof(*ss));
	if (strchr(host, ':')) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;

		a->sin6_family = AF_INET6;
		a->sin6_port = htons((uint16_t)port);
		*sl = sizeof(*a);
		if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1)
			goto bad;
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)ss;

		a->sin_family = AF_INET;
		a->sin_port = htons((uint16_t)port);
		*sl = sizeof(*a);
		if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
			goto bad;
	}
	return 0;
bad:
	snprintf(err, errlen, "expected coap[s]://ADDRESS[:PORT] with an IP address, found \"%.80s\"", url);
	return -1;
}

/* The DTLS handshake, non-blocking with OpenSSL's own retransmission
 * timer, within HANDSHAKE_MS. 0 or -1. */
static int handshake(cc_conn *c, char *err, size_t errlen)
{
	int64_t end = mono_ms() + handshake_ms;

	for (;;) {
		struct timeval tv;
		struct pollfd pf = { c->fd, POLLIN, 0 };
		long wait;
		int r = SSL_connect(c->ssl), e;

		if (r == 1)
			return 0;
		e = SSL_get_error(c->ssl, r);
		if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
			ssl_error(err, errlen, "DTLS handshake failed");
			return -1;
		}
		wait = DTLSv1_get_timeout(c->ssl, &tv) > 0
			       ? (long)tv.tv_sec * 1000 + tv.tv_usec / 1000 : 1000;
		if (wait > end - mono_ms())
			wait = (long)(end - mono_ms());
		if (wait < 0)
			wait = 0;
		if (poll(&pf, 1, (int)wait) == 0) {
			if (mono_ms() >= end) {
				snprintf(err, errlen, "DTLS handshake: no answer in %.1f s (a wrong key, or nothing listening)",
					 (double)handshake_ms / 1000);
				return -1;
			}
			DTLSv1_handle_timeout(c->ssl);
		}
	}
}

cc_conn *cc_open(const char *url, const char *identity, const uint8_t *key,
		 size_t key_len, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	bool dtls;
	cc_conn *c;
	BIO *bio;

	if (parse_url(url, &dtls, &ss, &sl, err, errlen) != 0)
		return NULL;
	if (dtls && (identity == NULL || key == NULL || key_len == 0 ||
		     key_len > 64 || strlen(identity) > 128)) {
		snprintf(err, errlen, "coaps:// needs a PSK identity (at most 128 bytes) and a key of 1 to 64 bytes");
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (RAND_bytes((unsigned char *)&c->mid, sizeof(c->mid)) != 1 ||
	    RAND_bytes(&c->token, 1) != 1)
		c->mid = (uint16_t)mono_ms();
	c->fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&ss, sl) != 0) {
		snprintf(err, errlen, "%s: %s", url, strerror(errno));
		cc_close(c);
		return NULL;
	}
	fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
	if (!dtls)
		return c;
	snprintf(c->identity, sizeof(c->identity), "%s", identity);
	memcpy(c->key, key, key_len);
	c->key_len = key_len;
	c->ctx = SSL_CTX_new(DTLS_client_method());
	if (c->ctx == NULL ||
	    !SSL_CTX_set_min_proto_version(c->ctx, DTLS1_2_VERSION) ||
	    !SSL_CTX_set_max_proto_version(c->ctx, DTLS1_2_VERSION) ||
	    !SSL_CTX_set_cipher_list(c->ctx, CIPHERS)) {
		ssl_error(err, errlen, "DTLS set-up");
		cc_close(c);
		return NULL;
	}
	SSL_CTX_set_psk_client_callback(c->ctx, psk_client);
	c->ssl = SSL_new(c->ctx);
	bio = BIO_new_dgram(c->fd, BIO_NOCLOSE);
	if (c->ssl == NULL || bio == NULL) {
		BIO_free(bio);
		ssl_error(err, errlen, "DTLS set-up");
		cc_close(c);
		return NULL;
	}
	BIO_ctrl(bio, BIO_CTRL_DGRAM_SET_CONNECTED, 0, &ss);
	BIO_set_callback_ex(bio, count_bio);
	BIO_set_callback_arg(bio, (char *)c);
	SSL_set_bio(c->ssl, bio, bio);
	SSL_set_app_data(c->ssl, c);
	if (handshake(c, err, errlen) != 0) {
		cc_close(c);
		return NULL;
	}
	c->hs_up = c->up;
	c->hs_down = c->down;
	return c;
}

void cc_close(cc_conn *c)
{
	if (c == NULL)
		return;
	if (c->ssl != NULL) {
		SSL_shutdown(c->ssl); /* close_notify: after the counts */
		SSL_free(c->ssl);
	}
	SSL_CTX_free(c->ctx);
	if (c->fd >= 0)
		close(c->fd);
	OPENSSL_cleanse(c->key, sizeof(c->key));
	free(c);
}

void cc_handshake_bytes(const cc_conn *c, size_t *up, size_t *down)
{
	*up = c->hs_up;
	*down = c->hs_down;
}

void cc_total_bytes(const cc_conn *c, size_t *up, size_t *down)
{
	*up = c->up;
	*down = c->down;
}

const char *cc_cipher(const cc_conn *c)
{
	return c->ssl ? SSL_get_cipher_name(c->ssl) : "";
}

int cc_fd(const cc_conn *c)
{
	return c->fd;
}

uint16_t cc_next_mid(cc_conn *c)
{
	return ++c->mid;
}

int cc_send_raw(cc_conn *c, const uint8_t *buf, size_t n)
{
	if (c->ssl != NULL)
		return SSL_write(c->ssl, buf, (int)n) == (int)n ? 0 : -1;
	if (send(c->fd, buf, n, 0) != (ssize_t)n)
		return -1;
	c->up += n;
	return 0;
}

long cc_recv_raw(cc_conn *c, uint8_t *buf, size_t cap, long timeout_ms)
{
	int64_t end = mono_ms() + timeout_ms;

	for (;;) {
		struct pollfd pf = { c->fd, POLLIN, 0 };
		long left = (long)(end - mono_ms());
		ssize_t n;

		if (c->ssl == NULL || SSL_pending(c->ssl) == 0) {
			if (poll(&pf, 1, left > 0 ? (int)left : 0) <= 0)
				return 0;
		}
		if (c->ssl != NULL) {
			int r = SSL_read(c->ssl, buf, (int)cap), e;

			if (r > 0)
				return r;
			e = SSL_get_error(c->ssl, r);
			if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
				return -1;
			if (mono_ms() >= end)
				return 0;
			continue; /* a record that was no data */
		}
		n = recv(c->fd, buf, cap, 0);
		if (n > 0) {
			c->down += (size_t)n;
			return (long)n;
		}
		if (n < 0 && errno != EAGAIN && errno != EINTR)
			return -1; /* e.g. ECONNREFUSED: nothing listens */
		if (mono_ms() >= end)
			return 0;
	}
}

/* ==== Exchanges ==== */

void cc_answer_free(cc_answer *a)
{
	if (a == NULL)
		return;
	free(a->payload);
	a->payload = NULL;
	a->len = 0;
}

/* Acknowledges a separate (confirmable) response. */
static void ack(cc_conn *c, uint16_t mid)
{
	uint8_t b[4];
	size_t n = cc_build(b, sizeof(b), CC_ACK, 0, mid, NULL, 0, NULL, 0,
			    NULL, 0);

	cc_send_raw(c, b, n);
}

/* Sends one request datagram and waits for its answer (retransmitting;
 * a separate response after an empty ACK). 0 with *m (pointing into
 * buf), or -1 with err. */
static int exchange(cc_conn *c, const uint8_t *req, size_t rn, uint16_t mid,
		    const uint8_t *tok, size_t tkl, long wait_ms,
		    uint8_t *buf, size_t cap, cc_msg *m, cc_answer *a,
		    char *err, size_t errlen)
{
	unsigned char r = 0;
	long timeout;
	int64_t due, sep_end = 0;
	bool acked = false;

	RAND_bytes(&r, 1);
	timeout = ACK_TIMEOUT_MS + (long)r * (ACK_TIMEOUT_MS / 2) / 255;
	a->retransmits = 0;
	if (cc_send_raw(c, req, rn) != 0) {
		snprintf(err, errlen, "cannot send: %s", strerror(errno));
		return -1;
	}
	due = mono_ms() + timeout;
	for (;;) {
		int64_t end = acked ? sep_end : due;
		long n = cc_recv_raw(c, buf, cap, (long)(end - mono_ms()));

		if (n < 0) {
			snprintf(err, errlen, "receive failed: %s",
				 errno ? strerror(errno) : "DTLS error");
			return -1;
		}
		if (n == 0) {
			if (acked) {
				snprintf(err, errlen, "an empty ACK, then no separate response within %ld ms",
					 wait_ms);
				return -1;
			}
			if (a->retransmits == MAX_RETRANSMIT) {
				snprintf(err, errlen, "no answer after %d retransmissions",
					 MAX_RETRANSMIT);
				return -1;
			}
			a->retransmits++;
			timeout *= 2;
			cc_send_raw(c, req, rn);
			due = mono_ms() + timeout;
			continue;
		}
		if (cc_parse(buf, (size_t)n, m) != 0)
			continue;
		if (m->type == CC_RST && m->mid == mid) {
			snprintf(err, errlen, "the gateway reset the exchange (RST)");
			return -1;
		}
		if (m->type == CC_ACK && m->mid == mid) {
			if (m->code == 0) {
				acked = true; /* the answer comes separately */
				a->separate = true;
				sep_end = mono_ms() + wait_ms;
				continue;
			}
			if (m->token_len == tkl && !memcmp(m->token, tok, tkl))
				return 0;
			continue;
		}
		if ((m->type == CC_CON || m->type == CC_NON) && m->code >= 200 &&
		    m->token_len == tkl && !memcmp(m->token, tok, tkl)) {
			if (m->type == CC_CON)
				ack(c, m->mid);
			a->separate = true;
			return 0;
		}
		if (m->type == CC_CON)
			ack(c, m->mid); /* a stray confirmable: acknowledged */
	}
}

int cc_post(cc_conn *c, const char *path, const uint8_t *body, size_t len,
	    long wait_ms, cc_answer *a, char *err, size_t errlen)
{
	size_t bs = (size_t)1 << (BLOCK_SZX + 4);
	size_t nblocks = len > bs ? (len + bs - 1) / bs : 1, i;
	size_t up0 = c->up, down0 = c->down;
	uint8_t *req = NULL, buf[DGRAM_MAX];
	cc_msg m;
	int rc = -1;

	memset(a, 0, sizeof(*a));
	memset(&m, 0, sizeof(m));
	a->max_age = a->block1 = a->size1 = -1;
	req = malloc(bs + 128);
	if (req == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (i = 0; i < nblocks; i++) {
		cc_opt o[3];
		uint8_t b1[3], s1[4], tok = ++c->token;
		uint16_t mid = cc_next_mid(c);
		size_t no = 0, off = i * bs, n = len - off < bs ? len - off : bs;
		size_t rn;
		unsigned v;

		o[no++] = (cc_opt){ OPT_URI_PATH, (const uint8_t *)path, strlen(path) };
		if (nblocks > 1) {
			size_t k = 0;

			v = (unsigned)(i << 4 | (i + 1 < nblocks ? 8u : 0u) | BLOCK_SZX);
			if (v > 0xffff)
				b1[k++] = (uint8_t)(v >> 16);
			if (v > 0xff)
				b1[k++] = (uint8_t)(v >> 8);
			b1[k++] = (uint8_t)v;
			o[no++] = (cc_opt){ OPT_BLOCK1, b1, k };
			if (i == 0) {
				s1[0] = (uint8_t)(len >> 24);
				s1[1] = (uint8_t)(len >> 16);
				s1[2] = (uint8_t)(len >> 8);
				s1[3] = (uint8_t)len;
				o[no++] = (cc_opt){ OPT_SIZE1, s1, 4 };
			}
		}
		rn = cc_build(req, bs + 128, CC_CON, CC_POST, mid, &tok, 1, o, no,
			      body + off, n);
		if (rn == 0) {
			snprintf(err, errlen, "the request does not fit a datagram");
			goto done;
		}
		a->blocks++;
		if (exchange(c, req, rn, mid, &tok, 1, wait_ms, buf, sizeof(buf),
			     &m, a, err, errlen) != 0)
			goto done;
		if (i + 1 < nblocks && m.code == 231)
			continue;
		break;
	}
	a->code = m.code;
	a->max_age = m.max_age;
	a->block1 = m.block1;
	a->size1 = m.size1;
	if (m.len > 0) {
		a->payload = malloc(m.len);
		if (a->payload == NULL) {
			snprintf(err, errlen, "out of memory");
			goto done;
		}
		memcpy(a->payload, m.payload, m.len);
		a->len = m.len;
	}
	rc = 0;
done:
	a->up = c->up - up0;
	a->down = c->down - down0;
	free(req);
	return rc;
}
