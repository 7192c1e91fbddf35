/* Mock odoo/sfu for tests, the demo and benchmarks: the SFU's HTTP contract, faults, heartbeats. */
/*
 * This program deliberately shares no code with src/ (only the logger): it is a second,
 * independent reading of the odoo/sfu contract, so that it catches the gateway's mistakes
 * instead of repeating them.
 *
 * One libuv loop serves HTTP/1.1 with llhttp.  Requests are parsed into a per-connection
 * buffer; the parser pauses after every message so that responses go out in order even
 * when one of them is delayed (pipelining).  Faults apply to GET /v1/channel (and to
 * /v1/noop and /v1/stats when "all" is set); the /mock/ control routes are never faulted.
 *
 * With --tls-cert and --tls-key the same port also speaks HTTPS: a connection whose first
 * byte is a TLS handshake record goes through OpenSSL over memory BIOs, others stay plain
 * HTTP (so the test harness keeps reaching the /mock/ routes without TLS).
 */
#include "log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <json.h>
#include <llhttp.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <uv.h>

/* Node's default max header size is 16 KiB; the SFU answers 431 above it. */
#define MOCK_HEAD_MAX 16384
#define MOCK_MAX_HEADERS 100
#define MOCK_BODY_MAX 65536
/* Above this much unsent output a connection stops reading (a pipelining client that
 * does not read its answers must not make us buffer without bound). */
#define MOCK_OUT_HIGH (1024 * 1024)
#define MOCK_READ_SIZE 65536
#define MOCK_KEY_MAX 1024
#define MOCK_HB_TIMEOUT_MS 2000
#define MOCK_HB_DOWN_TIMEOUT_MS 1000

struct mock_buf {
	char *p;
	size_t len;
	size_t cap;
};

/* A header as offsets into mock_req.head (the request's bytes, copied as they arrive). */
struct mock_hdr {
	uint16_t name_off;
	uint16_t name_len;
	uint16_t val_off;
	uint16_t val_len;
};

struct mock_req {
	size_t used;
	size_t url_len;
	unsigned nhdr;
	int in_field;
	int error_status;
	int method;
	int keep_alive;
	int upgrade;
	struct mock_hdr hdr[MOCK_MAX_HEADERS];
	char head[MOCK_HEAD_MAX];
	struct mock_buf body;
};

struct mock_conn {
	uv_tcp_t tcp;
	uv_timer_t timer;
	uv_write_t wreq;
	llhttp_t parser;
	struct mock_conn *prev;
	struct mock_conn *next;
	int open_handles;
	unsigned closing : 1;
	unsigned reading : 1;
	unsigned writing : 1;
	unsigned waiting : 1;
	unsigned hung : 1;
	unsigned close_after : 1;
	unsigned feeding_stash : 1;
	/* Responses are appended to *resp: normally out, or held while a delay runs. */
	struct mock_buf *resp;
	struct mock_buf out;
	struct mock_buf wbuf;
	struct mock_buf held;
	struct mock_buf pending;
	char peer[INET6_ADDRSTRLEN + 1];
	struct mock_req req;
	/* TLS: 0 until the first byte tells, then 1 plain or 2 TLS (ssl set). */
	int tls_state;
	SSL *ssl;
	BIO *tls_in, *tls_out;
};

enum mock_mode {
	MOCK_OK = 0,
	MOCK_STATUS,
	MOCK_DELAY,
	MOCK_HANG,
	MOCK_RESET,
	MOCK_GARBAGE,
	MOCK_GARBAGE_BYTES,
};

static const char *const mock_mode_names[] = {
	"ok", "status", "delay", "hang", "reset", "garbage", "garbage-bytes",
};

struct mock_channel {
	char uuid[37];
	char created[32];
	int webrtc;
	char *remote;
	/* "<remote>::<iss>", exactly the SFU's idempotency key. */
	char *ikey;
	size_t ikey_len;
};

/* The outcome of checking a /v1/channel request, before any fault is applied. */
struct mock_check {
	int status;
	const char *token;
	size_t token_len;
	const char *remote;
	size_t remote_len;
	const char *iss;
	size_t iss_len;
	struct json_object *claims;
};

/* A copy of the last /v1/channel request, for GET /mock/last. */
struct mock_last {
	int valid;
	int method;
	size_t url_len;
	unsigned nhdr;
	int has_token;
	int has_iss;
	int verified;
	int status;
	struct mock_hdr hdr[MOCK_MAX_HEADERS];
	char head[MOCK_HEAD_MAX];
	struct mock_buf token;
	struct mock_buf remote;
	struct mock_buf iss;
};

struct mock_hb_req {
	uv_tcp_t tcp;
	uv_timer_t timer;
	uv_connect_t connect;
	uv_write_t wreq;
	llhttp_t parser;
	struct mock_buf out;
	int open_handles;
	int done;
	int down;
	int exit_after;
	int status;
};

static struct {
	const char *bind;
	int port;
	int proxy;
	int quiet;
	int verbose;
	char scheme[8];
	char host[512];
	const char *key_b64;
	unsigned char key[MOCK_KEY_MAX];
	size_t key_len;
	enum mock_mode mode;
	int fail_status;
	unsigned delay_ms;
	long fault_count;
	int fault_all;
	uint64_t sessions;
	double cpu;
	double memory;
	long max_sessions;
	int stats_trailing; /* /v1/stats answers its array followed by junk */
	const char *hb_url;
	unsigned hb_interval_ms;
	int hb_enabled;
	const char *region;
	unsigned char reg_key[MOCK_KEY_MAX];
	size_t reg_key_len;
	char advertise[1024];
	char hb_hostport[512];
	char hb_path[512];
	struct sockaddr_storage hb_addr;
	const char *tls_cert, *tls_key;
} mock_cfg;

static struct {
	uint64_t requests;
	uint64_t connections;
	uint64_t channel_requests;
	uint64_t channels_created;
	uint64_t noop;
	uint64_t stats;
	uint64_t failed;
	uint64_t disconnect;
	uint64_t disconnect_rejected;
	uint64_t disconnect_matched;
	uint64_t bad_requests;
	uint64_t hb_sent;
	uint64_t hb_ok;
	uint64_t hb_failed;
	int hb_last_status;
	uint64_t tls_handshakes; /* completed, resumed ones included */
	uint64_t tls_resumed;
	uint64_t tls_failed;
} mock_stats;

static SSL_CTX *mock_tls_ctx; /* NULL without --tls-cert */

static struct {
	struct mock_channel *v;
	size_t n;
	size_t cap;
	/* Open addressing over ikey; a slot holds index + 1, 0 is empty. */
	uint32_t *slots;
	size_t nslots;
} mock_chans;

static uv_loop_t *mock_loop;
static uv_tcp_t mock_server;
static uv_signal_t mock_sigterm;
static uv_signal_t mock_sigint;
static uv_timer_t mock_hb_timer;
static int mock_hb_timer_active;
static struct mock_hb_req *mock_hb_cur;
static int mock_stopping;
static int mock_finished;
static struct mock_conn *mock_conns;
static llhttp_settings_t mock_settings;
static llhttp_settings_t mock_hb_settings;
static EVP_MAC_CTX *mock_mac;
static EVP_MAC_CTX *mock_reg_mac;
static json_tokener *mock_tok;
static struct mock_last mock_last;
static struct mock_buf mock_scratch;
static char mock_readbuf[MOCK_READ_SIZE];

static void mock_conn_close(struct mock_conn *c, int reset);
static void mock_conn_feed(struct mock_conn *c, const char *data, size_t len);
static void mock_shutdown_finish(void);

/* ---- growable buffers; out of memory ends the program (a test tool cannot limp on) */

static void mock_buf_reserve(struct mock_buf *b, size_t extra)
{
	size_t cap;
	char *p;

	if (b->cap - b->len >= extra)
		return;
	cap = b->cap ? b->cap : 512;
	while (cap - b->len < extra)
		cap *= 2;
	p = realloc(b->p, cap);
	if (p == NULL)
		fatal("out of memory");
	b->p = p;
	b->cap = cap;
}

static void mock_buf_add(struct mock_buf *b, const void *data, size_t len)
{
	mock_buf_reserve(b, len + 1);
	if (len)
		memcpy(b->p + b->len, data, len);
	b->len += len;
	b->p[b->len] = '\0';
}

static void mock_buf_str(struct mock_buf *b, const char *s)
{
	mock_buf_add(b, s, strlen(s));
}

static void mock_buf_printf(struct mock_buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void mock_buf_printf(struct mock_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	mock_buf_reserve(b, 128);
	va_start(ap, fmt);
	n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= b->cap - b->len) {
		mock_buf_reserve(b, (size_t)n + 1);
		va_start(ap, fmt);
		vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
	}
	b->len += (size_t)n;
}

/* Appends s JSON-escaped, without quotes.  Bytes >= 0x80 become \u00XX (read them back
 * as Latin-1) so the output stays valid JSON whatever a client sent us. */
static void mock_buf_json_raw(struct mock_buf *b, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	size_t i;

	mock_buf_reserve(b, len * 6 + 1);
	for (i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch == '"' || ch == '\\') {
			b->p[b->len++] = '\\';
			b->p[b->len++] = (char)ch;
		} else if (ch < 0x20 || ch >= 0x7f) {
			memcpy(b->p + b->len, "\\u00", 4);
			b->p[b->len + 4] = hex[ch >> 4];
			b->p[b->len + 5] = hex[ch & 15];
			b->len += 6;
		} else {
			b->p[b->len++] = (char)ch;
		}
	}
	b->p[b->len] = '\0';
}

/* Appends a quoted JSON string. */
static void mock_buf_json(struct mock_buf *b, const char *s, size_t len)
{
	mock_buf_add(b, "\"", 1);
	mock_buf_json_raw(b, s, len);
	mock_buf_add(b, "\"", 1);
}

static void mock_buf_free(struct mock_buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = 0;
	b->cap = 0;
}

/* ---- base64, HMAC and JWT, written the way odoo/sfu's auth.ts does it */

static int mock_b64_value(unsigned char ch)
{
	if (ch >= 'A' && ch <= 'Z')
		return ch - 'A';
	if (ch >= 'a' && ch <= 'z')
		return ch - 'a' + 26;
	if (ch >= '0' && ch <= '9')
		return ch - '0' + 52;
	if (ch == '+' || ch == '-')
		return 62;
	if (ch == '/' || ch == '_')
		return 63;
	return -1;
}

/*
 * Decodes like Node's Buffer.from(s, "base64"): both alphabets, padding optional, the
 * first '=' ends the data and any other foreign byte is skipped.  out must hold
 * len * 3 / 4 + 1 bytes.  Returns the decoded length.
 */
static size_t mock_b64_decode(const char *s, size_t len, unsigned char *out)
{
	uint32_t acc = 0;
	unsigned bits = 0;
	size_t i, n = 0;

	for (i = 0; i < len && s[i] != '='; i++) {
		int v = mock_b64_value((unsigned char)s[i]);

		if (v < 0)
			continue;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[n++] = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	return n;
}

/* A configured key must be clean base64 (either alphabet, padding optional): a typo in a
 * test's key should fail loudly, not be skipped over as Node would. */
static int mock_b64_key(const char *s, unsigned char *out, size_t max, size_t *out_len)
{
	size_t i, len = strlen(s), pad = 0;

	while (pad < len && s[len - 1 - pad] == '=')
		pad++;
	if (pad > 2 || len == pad || (len - pad) * 3 / 4 > max)
		return -EINVAL;
	for (i = 0; i < len - pad; i++)
		if (mock_b64_value((unsigned char)s[i]) < 0)
			return -EINVAL;
	*out_len = mock_b64_decode(s, len, out);
	return *out_len ? 0 : -EINVAL;
}

static size_t mock_b64url_encode(const unsigned char *in, size_t len, char *out)
{
	static const char tab[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t i, n = 0;

	for (i = 0; i + 2 < len; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];

		out[n++] = tab[v >> 18];
		out[n++] = tab[(v >> 12) & 63];
		out[n++] = tab[(v >> 6) & 63];
		out[n++] = tab[v & 63];
	}
	if (len - i == 1) {
		out[n++] = tab[in[i] >> 2];
		out[n++] = tab[(in[i] & 3) << 4];
	} else if (len - i == 2) {
		uint32_t v = (uint32_t)in[i] << 8 | in[i + 1];

		out[n++] = tab[v >> 10];
		out[n++] = tab[(v >> 4) & 63];
		out[n++] = tab[(v << 2) & 63];
	}
	out[n] = '\0';
	return n;
}

static EVP_MAC_CTX *mock_mac_new(const unsigned char *key, size_t len)
{
	char digest[] = "SHA256";
	OSSL_PARAM params[2];
	EVP_MAC_CTX *ctx = NULL;
	EVP_MAC *mac;

	mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	if (mac == NULL)
		return NULL;
	ctx = EVP_MAC_CTX_new(mac);
	EVP_MAC_free(mac);
	if (ctx == NULL)
		return NULL;
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0);
	params[1] = OSSL_PARAM_construct_end();
	if (!EVP_MAC_init(ctx, key, len, params)) {
		EVP_MAC_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

/* Re-initialising a keyed context is much cheaper than keying a new one per request. */
static int mock_hmac(EVP_MAC_CTX *ctx, const void *data, size_t len, unsigned char out[32])
{
	size_t outl = 0;

	if (!EVP_MAC_init(ctx, NULL, 0, NULL) || !EVP_MAC_update(ctx, data, len) ||
	    !EVP_MAC_final(ctx, out, &outl, 32) || outl != 32)
		return -EIO;
	return 0;
}

/*
 * Parses like JSON.parse: the whole text must be one JSON value (whitespace around it
 * allowed).  text must be NUL-terminated at text[len].  *out may be NULL for "null".
 */
static int mock_json_parse(const char *text, size_t len, struct json_object **out)
{
	struct json_object *obj;
	size_t end;

	json_tokener_reset(mock_tok);
	/* Including the NUL tells json-c the input is complete (a bare number needs it). */
	obj = json_tokener_parse_ex(mock_tok, text, (int)len + 1);
	if (json_tokener_get_error(mock_tok) != json_tokener_success) {
		json_object_put(obj);
		return -EINVAL;
	}
	for (end = json_tokener_get_parse_end(mock_tok); end < len; end++) {
		if (!strchr(" \t\r\n", text[end]) || text[end] == '\0') {
			json_object_put(obj);
			return -EINVAL;
		}
	}
	*out = obj;
	return 0;
}

/* JavaScript's `claims.x && claims.x OP n`: gives the number when the value is truthy and
 * converts to a number; NaN (objects, junk strings) makes every comparison false. */
static int mock_js_number(struct json_object *claims, const char *name, double *out)
{
	struct json_object *v;
	const char *s;
	char *end;

	if (!json_object_object_get_ex(claims, name, &v) || v == NULL)
		return 0;
	switch (json_object_get_type(v)) {
	case json_type_int:
	case json_type_double:
		*out = json_object_get_double(v);
		return *out != 0 && !isnan(*out);
	case json_type_boolean:
		*out = 1;
		return json_object_get_boolean(v);
	case json_type_string:
		s = json_object_get_string(v);
		if (s[0] == '\0')
			return 0;
		while (strchr(" \t\r\n", *s) && *s)
			s++;
		if (*s == '\0') {
			*out = 0;
			return 1;
		}
		*out = strtod(s, &end);
		while (*end && strchr(" \t\r\n", *end))
			end++;
		return *end == '\0';
	default:
		return 0;
	}
}

/*
 * Verifies a token as auth.verify does: three dot-separated parts, header and claims JSON,
 * alg HS256, HMAC-SHA256 of the first two parts' text compared in constant time, then
 * exp/nbf/iat.  On success *claims is the parsed claims (may be a non-object; NULL for
 * "null", which the SFU then trips over).  Returns 0 or -EINVAL / -EACCES.
 */
static int mock_jwt_verify(EVP_MAC_CTX *mac, const char *tok, size_t len,
			   struct json_object **claims)
{
	static unsigned char dec[MOCK_HEAD_MAX + 1];
	struct json_object *header = NULL, *alg, *cl = NULL;
	unsigned char want[32], sig[MOCK_HEAD_MAX];
	const char *dot1, *dot2;
	size_t n, siglen;
	double now = (double)time(NULL), v;
	int err = -EINVAL;

	*claims = NULL;
	/* The decode buffers are sized for a token that fits in the header limit; a longer
	 * one (a /v1/disconnect body may be up to MOCK_BODY_MAX) is refused. */
	if (len > MOCK_HEAD_MAX)
		return -EINVAL;
	dot1 = memchr(tok, '.', len);
	if (dot1 == NULL)
		return -EINVAL;
	dot2 = memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - tok));
	if (dot2 == NULL || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - tok)))
		return -EINVAL;
	n = mock_b64_decode(tok, (size_t)(dot1 - tok), dec);
	dec[n] = '\0';
	if (mock_json_parse((char *)dec, n, &header) < 0)
		goto out;
	n = mock_b64_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), dec);
	dec[n] = '\0';
	if (mock_json_parse((char *)dec, n, &cl) < 0)
		goto out;
	siglen = mock_b64_decode(dot2 + 1, len - (size_t)(dot2 + 1 - tok), sig);
	if (header == NULL || !json_object_object_get_ex(header, "alg", &alg) ||
	    !json_object_is_type(alg, json_type_string) ||
	    strcmp(json_object_get_string(alg), "HS256") != 0)
		goto out;
	if (mock_hmac(mac, tok, (size_t)(dot2 - tok), want) < 0)
		goto out;
	if (siglen != sizeof(want) || CRYPTO_memcmp(sig, want, sizeof(want)) != 0)
		goto out;
	/* `null.exp` throws in the SFU: a failure like any other. */
	if (cl == NULL)
		goto out;
	if (json_object_is_type(cl, json_type_object)) {
		err = -EACCES;
		if (mock_js_number(cl, "exp", &v) && v < now)
			goto out;
		if (mock_js_number(cl, "nbf", &v) && v > now)
			goto out;
		if (mock_js_number(cl, "iat", &v) && v > now + 60)
			goto out;
	}
	*claims = cl;
	cl = NULL;
	err = 0;
out:
	json_object_put(header);
	json_object_put(cl);
	return err;
}

/* ---- channels */

static uint64_t mock_hash(const char *s, size_t len)
{
	uint64_t h = 1469598103934665603ull;
	size_t i;

	for (i = 0; i < len; i++) {
		h ^= (unsigned char)s[i];
		h *= 1099511628211ull;
	}
	return h;
}

static void mock_chans_rehash(size_t nslots)
{
	uint32_t *slots = calloc(nslots, sizeof(*slots));
	size_t i;

	if (slots == NULL)
		fatal("out of memory");
	for (i = 0; i < mock_chans.n; i++) {
		struct mock_channel *ch = &mock_chans.v[i];
		size_t s = mock_hash(ch->ikey, ch->ikey_len) & (nslots - 1);

		while (slots[s])
			s = (s + 1) & (nslots - 1);
		slots[s] = (uint32_t)i + 1;
	}
	free(mock_chans.slots);
	mock_chans.slots = slots;
	mock_chans.nslots = nslots;
}

static void mock_uuid4(char out[37])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char b[16];
	int i, n = 0;

	if (RAND_bytes(b, sizeof(b)) != 1)
		fatal("RAND_bytes failed");
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
	for (i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[n++] = '-';
		out[n++] = hex[b[i] >> 4];
		out[n++] = hex[b[i] & 15];
	}
	out[n] = '\0';
}

/* Channel.create: the same (remote address, iss) pair gets the same channel back. */
static struct mock_channel *mock_channel_get(const char *remote, size_t rlen, const char *iss,
					     size_t ilen, int webrtc)
{
	static struct mock_buf key;
	struct mock_channel *ch;
	struct tm tm;
	time_t now;
	size_t s = 0;

	key.len = 0;
	mock_buf_add(&key, remote, rlen);
	mock_buf_add(&key, "::", 2);
	mock_buf_add(&key, iss, ilen);
	if (mock_chans.nslots) {
		s = mock_hash(key.p, key.len) & (mock_chans.nslots - 1);
		while (mock_chans.slots[s]) {
			ch = &mock_chans.v[mock_chans.slots[s] - 1];
			if (ch->ikey_len == key.len && memcmp(ch->ikey, key.p, key.len) == 0)
				return ch;
			s = (s + 1) & (mock_chans.nslots - 1);
		}
	}
	if (mock_chans.n == mock_chans.cap) {
		size_t cap = mock_chans.cap ? mock_chans.cap * 2 : 16;
		struct mock_channel *v = realloc(mock_chans.v, cap * sizeof(*v));

		if (v == NULL)
			fatal("out of memory");
		mock_chans.v = v;
		mock_chans.cap = cap;
	}
	ch = &mock_chans.v[mock_chans.n++];
	memset(ch, 0, sizeof(*ch));
	mock_uuid4(ch->uuid);
	now = time(NULL);
	gmtime_r(&now, &tm);
	strftime(ch->created, sizeof(ch->created), "%Y-%m-%dT%H:%M:%S.000Z", &tm);
	ch->webrtc = webrtc;
	ch->remote = strndup(remote, rlen);
	ch->ikey = malloc(key.len + 1);
	if (ch->remote == NULL || ch->ikey == NULL)
		fatal("out of memory");
	memcpy(ch->ikey, key.p, key.len + 1);
	ch->ikey_len = key.len;
	/* Keep the table at most half full; growing rehashes, else take the free slot found. */
	if (mock_chans.n * 2 > mock_chans.nslots)
		mock_chans_rehash(mock_chans.nslots ? mock_chans.nslots * 2 : 64);
	else
		mock_chans.slots[s] = (uint32_t)(mock_chans.n - 1) + 1;
	mock_stats.channels_created++;
	return ch;
}

static void mock_chans_clear(void)
{
	size_t i;

	for (i = 0; i < mock_chans.n; i++) {
		free(mock_chans.v[i].remote);
		free(mock_chans.v[i].ikey);
	}
	free(mock_chans.v);
	free(mock_chans.slots);
	memset(&mock_chans, 0, sizeof(mock_chans));
}

/* ---- request helpers */

static int mock_hdr_is(const struct mock_req *r, const struct mock_hdr *h, const char *name)
{
	size_t n = strlen(name);

	return h->name_len == n && strncasecmp(r->head + h->name_off, name, n) == 0;
}

/* The first header of that name (Node keeps the first Authorization and joins repeated
 * X-Forwarded-* values with ", ", so "first value" always means the first header). */
static const char *mock_req_header(const struct mock_req *r, const char *name, size_t *len)
{
	unsigned i;

	for (i = 0; i < r->nhdr; i++) {
		if (mock_hdr_is(r, &r->hdr[i], name)) {
			*len = r->hdr[i].val_len;
			return r->head + r->hdr[i].val_off;
		}
	}
	return NULL;
}

/* `value.split(",")[0]`, untrimmed as in the SFU: "a , b" gives "a " (Node has already
 * stripped the whole value's outer whitespace). */
static void mock_first_entry(const char *v, size_t len, const char **out, size_t *out_len)
{
	const char *comma = memchr(v, ',', len);

	if (comma)
		len = (size_t)(comma - v);
	*out = v;
	*out_len = len;
}

/* Splits the request target into path and query (absolute-form targets lose their
 * scheme and authority, as new URL() would drop them). */
static void mock_req_target(const struct mock_req *r, const char **path, size_t *plen,
			    const char **query, size_t *qlen)
{
	const char *u = r->head, *q, *hash;
	size_t len = r->url_len;

	if (len > 7 && (strncasecmp(u, "http://", 7) == 0 || strncasecmp(u, "https://", 8) == 0)) {
		const char *p = memchr(u + 8, '/', len - 8);
		const char *qm = memchr(u + 8, '?', len - 8);

		if (p == NULL || (qm && qm < p))
			p = qm ? qm : u + len;
		len -= (size_t)(p - u);
		u = p;
	}
	hash = memchr(u, '#', len);
	if (hash)
		len = (size_t)(hash - u);
	q = memchr(u, '?', len);
	*path = u;
	*plen = q ? (size_t)(q - u) : len;
	*query = q ? q + 1 : u + len;
	*qlen = q ? len - *plen - 1 : 0;
	if (*plen == 0) {
		*path = "/";
		*plen = 1;
	}
}

/* The first value of a query parameter, undecoded (the mock's values never need it). */
static int mock_query_get(const char *q, size_t qlen, const char *name, const char **val,
			  size_t *vlen)
{
	size_t n = strlen(name);

	while (qlen) {
		const char *amp = memchr(q, '&', qlen);
		size_t plen = amp ? (size_t)(amp - q) : qlen;

		if (plen >= n && memcmp(q, name, n) == 0 && (plen == n || q[n] == '=')) {
			*val = plen == n ? q + n : q + n + 1;
			*vlen = plen == n ? 0 : plen - n - 1;
			return 1;
		}
		if (amp == NULL)
			break;
		qlen -= plen + 1;
		q = amp + 1;
	}
	return 0;
}

static int mock_parse_long(const char *s, size_t len, long min, long max, long *out)
{
	char tmp[32], *end;
	long v;

	if (len == 0 || len >= sizeof(tmp))
		return -EINVAL;
	memcpy(tmp, s, len);
	tmp[len] = '\0';
	errno = 0;
	v = strtol(tmp, &end, 10);
	if (errno || *end || v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

static int mock_parse_double(const char *s, size_t len, double min, double max, double *out)
{
	char tmp[32], *end;
	double v;

	if (len == 0 || len >= sizeof(tmp))
		return -EINVAL;
	memcpy(tmp, s, len);
	tmp[len] = '\0';
	errno = 0;
	v = strtod(tmp, &end);
	if (errno || *end || !(v >= min && v <= max))
		return -EINVAL;
	*out = v;
	return 0;
}

/* The SFU's remoteAddress: the socket peer, or with PROXY the first X-Forwarded-For entry. */
static void mock_remote(const struct mock_conn *c, const char **out, size_t *len)
{
	const char *v;
	size_t vlen;

	if (mock_cfg.proxy && (v = mock_req_header(&c->req, "x-forwarded-for", &vlen)) &&
	    vlen) {
		mock_first_entry(v, vlen, out, len);
		return;
	}
	*out = c->peer;
	*len = strlen(c->peer);
}

/* ---- responses */

static const char *mock_reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 409: return "Conflict";
	case 413: return "Payload Too Large";
	case 422: return "Unprocessable Entity";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	default: return "Status";
	}
}

static void mock_respond(struct mock_conn *c, int status, const char *ctype, const char *body,
			 size_t len)
{
	struct mock_buf *b = c->resp;

	mock_buf_printf(b, "HTTP/1.1 %d %s\r\n", status, mock_reason(status));
	if (ctype)
		mock_buf_printf(b, "Content-Type: %s\r\n", ctype);
	mock_buf_printf(b, "Content-Length: %zu\r\n", len);
	if (!c->req.keep_alive)
		mock_buf_str(b, "Connection: close\r\n");
	mock_buf_add(b, "\r\n", 2);
	mock_buf_add(b, body, len);
	if (!c->req.keep_alive)
		c->close_after = 1;
}

static void mock_respond_json(struct mock_conn *c, int status, const struct mock_buf *body)
{
	mock_respond(c, status, "application/json", body->p, body->len);
}

static void mock_respond_error(struct mock_conn *c, int status, const char *msg)
{
	mock_scratch.len = 0;
	mock_buf_str(&mock_scratch, "{\"error\":");
	mock_buf_json(&mock_scratch, msg, strlen(msg));
	mock_buf_str(&mock_scratch, "}");
	mock_respond_json(c, status, &mock_scratch);
}

/* ---- faults */

/* The fault for this request, if any; a limited count runs out and returns to "ok". */
static enum mock_mode mock_fault_take(int channel_route)
{
	enum mock_mode m = mock_cfg.mode;

	if (m == MOCK_OK || (!channel_route && !mock_cfg.fault_all))
		return MOCK_OK;
	if (mock_cfg.fault_count > 0 && --mock_cfg.fault_count == 0) {
		mock_cfg.mode = MOCK_OK;
		mock_cfg.fault_count = -1;
	}
	return m;
}

static void mock_on_delay(uv_timer_t *t);

/* Applies a fault.  Returns 1 when the request is finished (answered, hung or reset);
 * 0 when it should be handled normally (delay sends that answer later). */
static int mock_fault_apply(struct mock_conn *c, enum mock_mode m)
{
	static const char garbage[] = "\x01\xff<html>not json\x00\x7f}{";

	switch (m) {
	case MOCK_OK:
		return 0;
	case MOCK_STATUS:
		mock_respond(c, mock_cfg.fail_status, NULL, "", 0);
		return 1;
	case MOCK_DELAY:
		c->waiting = 1;
		c->resp = &c->held;
		uv_update_time(mock_loop);
		uv_timer_start(&c->timer, mock_on_delay, mock_cfg.delay_ms, 0);
		return 0;
	case MOCK_HANG:
		c->hung = 1;
		return 1;
	case MOCK_RESET:
		mock_conn_close(c, 1);
		return 1;
	case MOCK_GARBAGE:
		mock_respond(c, 200, "application/json", "{\"nope\":1}", 10);
		return 1;
	case MOCK_GARBAGE_BYTES:
		mock_respond(c, 200, "application/json", garbage, sizeof(garbage) - 1);
		return 1;
	}
	return 0;
}

/* ---- SFU routes */

static void mock_route_noop(struct mock_conn *c)
{
	static const char body[] = "{\"result\":\"ok\"}";

	mock_stats.noop++;
	if (mock_fault_apply(c, mock_fault_take(0)))
		return;
	mock_respond(c, 200, "application/json", body, sizeof(body) - 1);
}

static void mock_route_stats(struct mock_conn *c)
{
	struct mock_buf *b = &mock_scratch;
	size_t i, n = mock_chans.n;
	uint64_t total = mock_cfg.sessions;

	mock_stats.stats++;
	if (mock_fault_apply(c, mock_fault_take(0)))
		return;
	b->len = 0;
	mock_buf_str(b, "[");
	/* Synthetic sessions need somewhere to live even before any channel exists. */
	for (i = 0; i < (n ? n : (total ? 1 : 0)); i++) {
		const struct mock_channel *ch = n ? &mock_chans.v[i] : NULL;
		uint64_t count = total / (n ? n : 1) + (i < total % (n ? n : 1) ? 1 : 0);

		mock_buf_printf(b, "%s{\"createDate\":\"%s\",\"uuid\":\"%s\",\"remoteAddress\":",
				i ? "," : "", ch ? ch->created : "1970-01-01T00:00:00.000Z",
				ch ? ch->uuid : "00000000-0000-4000-8000-000000000000");
		if (ch)
			mock_buf_json(b, ch->remote, strlen(ch->remote));
		else
			mock_buf_str(b, "\"mock\"");
		/* Channel.getStats(): these members, in this order. */
		mock_buf_printf(b, ",\"sessionsStats\":{\"count\":%" PRIu64 ",\"cameraCount\":0,"
				"\"screenCount\":0,\"incomingBitRate\":{\"audio\":0,\"camera\":0,"
				"\"screen\":0,\"total\":0}},\"webRtcEnabled\":%s}", count,
				ch && !ch->webrtc ? "false" : "true");
	}
	mock_buf_str(b, "]");
	if (mock_cfg.stats_trailing)
		mock_buf_str(b, " {\"more\":1}");
	mock_respond_json(c, 200, b);
}

/* JavaScript truthiness of claims[name]. */
static int mock_js_truthy(struct json_object *claims, const char *name)
{
	struct json_object *v;

	if (!json_object_object_get_ex(claims, name, &v) || v == NULL)
		return 0;
	switch (json_object_get_type(v)) {
	case json_type_boolean:
		return json_object_get_boolean(v);
	case json_type_int:
	case json_type_double:
		return json_object_get_double(v) != 0 && !isnan(json_object_get_double(v));
	case json_type_string:
		return json_object_get_string_len(v) != 0;
	default:
		return 1;
	}
}

/* A number as JavaScript's Number.prototype.toString writes it: the shortest digits that
 * read back to the same double, in plain notation from 1e-7 (excluded) to 1e21. */
static void mock_js_number_text(struct mock_buf *b, double v)
{
	char e[40], digits[24];
	int p, k = 0, n;
	const char *c;

	if (v == 0) {
		mock_buf_str(b, "0");
		return;
	}
	if (v < 0) {
		mock_buf_str(b, "-");
		v = -v;
	}
	for (p = 1; p <= 17; p++) {
		snprintf(e, sizeof(e), "%.*e", p - 1, v);
		if (strtod(e, NULL) == v)
			break;
	}
	for (c = e; *c != 'e'; c++)
		if (*c >= '0' && *c <= '9')
			digits[k++] = *c;
	while (k > 1 && digits[k - 1] == '0')
		k--;
	digits[k] = '\0';
	n = atoi(c + 1) + 1; /* v = 0.digits * 10^n */
	if (k <= n && n <= 21) {
		mock_buf_str(b, digits);
		for (p = k; p < n; p++)
			mock_buf_str(b, "0");
	} else if (0 < n && n <= 21) {
		mock_buf_printf(b, "%.*s.%s", n, digits, digits + n);
	} else if (-6 < n && n <= 0) {
		mock_buf_str(b, "0.");
		for (p = n; p < 0; p++)
			mock_buf_str(b, "0");
		mock_buf_str(b, digits);
	} else {
		mock_buf_printf(b, "%c%s%se%c%d", digits[0], k > 1 ? "." : "", digits + 1,
				n - 1 < 0 ? '-' : '+', abs(n - 1));
	}
}

/* A JSON value as JavaScript's String() writes it: arrays join their elements with ","
 * (null as nothing), objects are "[object Object]". */
static void mock_js_string(struct mock_buf *b, struct json_object *v)
{
	size_t i;

	switch (json_object_get_type(v)) {
	case json_type_null:
		mock_buf_str(b, "null");
		break;
	case json_type_boolean:
		mock_buf_str(b, json_object_get_boolean(v) ? "true" : "false");
		break;
	case json_type_int:
		mock_buf_printf(b, "%" PRId64, json_object_get_int64(v));
		break;
	case json_type_double:
		mock_js_number_text(b, json_object_get_double(v));
		break;
	case json_type_string:
		mock_buf_add(b, json_object_get_string(v), (size_t)json_object_get_string_len(v));
		break;
	case json_type_array:
		for (i = 0; i < json_object_array_length(v); i++) {
			struct json_object *el = json_object_array_get_idx(v, i);

			if (i)
				mock_buf_str(b, ",");
			if (el != NULL)
				mock_js_string(b, el);
		}
		break;
	case json_type_object:
		mock_buf_str(b, "[object Object]");
		break;
	}
}

/* The checks of http.ts's /v1/channel handler, without creating anything yet. */
static void mock_channel_check(struct mock_conn *c, struct mock_check *chk)
{
	const char *auth, *sp, *sp2;
	struct json_object *iss;
	size_t alen;

	memset(chk, 0, sizeof(*chk));
	mock_remote(c, &chk->remote, &chk->remote_len);
	/* `authorization.split(" ")[1]`: the text between the first and second space. */
	auth = mock_req_header(&c->req, "authorization", &alen);
	sp = auth ? memchr(auth, ' ', alen) : NULL;
	if (sp == NULL || sp + 1 == auth + alen || sp[1] == ' ') {
		chk->status = 401;
		return;
	}
	chk->token = sp + 1;
	sp2 = memchr(chk->token, ' ', alen - (size_t)(chk->token - auth));
	chk->token_len = sp2 ? (size_t)(sp2 - chk->token) : alen - (size_t)(chk->token - auth);
	if (mock_jwt_verify(mock_mac, chk->token, chk->token_len, &chk->claims) < 0) {
		chk->status = 500;
		return;
	}
	/* `!claims.iss`: absent, null, false, 0 and "" all mean no issuer. */
	if (!json_object_is_type(chk->claims, json_type_object) ||
	    !mock_js_truthy(chk->claims, "iss")) {
		chk->status = 403;
		return;
	}
	json_object_object_get_ex(chk->claims, "iss", &iss);
	if (json_object_is_type(iss, json_type_string)) {
		chk->iss = json_object_get_string(iss);
		chk->iss_len = (size_t)json_object_get_string_len(iss);
	} else {
		/* The SFU keys channels on `${remoteAddress}::${issuer}`: JavaScript's text. */
		static struct mock_buf text;

		text.len = 0;
		mock_js_string(&text, iss);
		mock_buf_add(&text, "", 0);
		chk->iss = text.p;
		chk->iss_len = text.len;
	}
	chk->status = 200;
}

static void mock_last_record(const struct mock_conn *c, const struct mock_check *chk)
{
	const struct mock_req *r = &c->req;

	mock_last.valid = 1;
	mock_last.method = r->method;
	mock_last.url_len = r->url_len;
	mock_last.nhdr = r->nhdr;
	memcpy(mock_last.hdr, r->hdr, r->nhdr * sizeof(r->hdr[0]));
	memcpy(mock_last.head, r->head, r->used);
	mock_last.has_token = chk->token != NULL;
	mock_last.token.len = 0;
	mock_buf_add(&mock_last.token, chk->token ? chk->token : "", chk->token_len);
	mock_last.remote.len = 0;
	mock_buf_add(&mock_last.remote, chk->remote, chk->remote_len);
	mock_last.verified = chk->status == 200 || chk->status == 403;
	mock_last.has_iss = chk->iss != NULL;
	mock_last.iss.len = 0;
	mock_buf_add(&mock_last.iss, chk->iss ? chk->iss : "", chk->iss_len);
	mock_last.status = 0;
}

static void mock_route_channel(struct mock_conn *c)
{
	static const char *const http = "http", *const https = "https";
	const char *path, *query, *val, *host = mock_cfg.host, *scheme = mock_cfg.scheme;
	size_t plen, qlen, vlen, hlen = strlen(mock_cfg.host);
	struct mock_channel *ch;
	struct mock_check chk;
	struct mock_buf *b = &mock_scratch;
	enum mock_mode m;
	int webrtc;

	mock_stats.channel_requests++;
	mock_channel_check(c, &chk);
	mock_last_record(c, &chk);
	m = mock_fault_take(1);
	if (mock_fault_apply(c, m)) {
		mock_stats.failed++;
		mock_last.status = m == MOCK_STATUS ? mock_cfg.fail_status :
				   (m == MOCK_GARBAGE || m == MOCK_GARBAGE_BYTES) ? 200 : 0;
		goto out;
	}
	mock_last.status = chk.status;
	if (chk.status != 200) {
		mock_stats.failed++;
		mock_respond(c, chk.status, NULL, "", 0);
		goto out;
	}
	/* Query parameters other than webRTC are ignored, as the SFU does. */
	mock_req_target(&c->req, &path, &plen, &query, &qlen);
	webrtc = !(mock_query_get(query, qlen, "webRTC", &val, &vlen) && vlen == 5 &&
		   memcmp(val, "false", 5) == 0);
	ch = mock_channel_get(chk.remote, chk.remote_len, chk.iss, chk.iss_len, webrtc);
	if (mock_cfg.proxy) {
		if ((val = mock_req_header(&c->req, "x-forwarded-host", &vlen)) && vlen)
			mock_first_entry(val, vlen, &host, &hlen);
		if ((val = mock_req_header(&c->req, "x-forwarded-proto", &vlen)) && vlen) {
			mock_first_entry(val, vlen, &val, &vlen);
			scheme = vlen == 5 && memcmp(val, "https", 5) == 0 ? https : http;
		}
	}
	b->len = 0;
	mock_buf_printf(b, "{\"uuid\":\"%s\",\"url\":\"", ch->uuid);
	mock_buf_json_raw(b, scheme, strlen(scheme));
	mock_buf_str(b, "://");
	mock_buf_json_raw(b, host, hlen);
	mock_buf_str(b, "\"");
	mock_buf_str(b, "}");
	mock_respond_json(c, 200, b);
out:
	json_object_put(chk.claims);
}

/*
 * POST /v1/disconnect, as http.ts runs it: the body is a bare JWT checked with the SFU's
 * key; then `Object.entries(claims.sessionIdsByChannel)` (absent or null throws: 422; any
 * other non-object gives entries no channel matches: 200), and for each known channel the
 * caller created, `for (id of sessionIds)` (not a list or a string throws: 422). The mock
 * has no sessions to close: it counts the channels a caller was allowed to act on. The
 * SFU's 400 for a body that is no string cannot happen: a body always reads as a string.
 */
static void mock_route_disconnect(struct mock_conn *c)
{
	struct json_object *claims = NULL, *byc;
	const char *remote;
	size_t rlen, i;
	int status = 200;

	mock_stats.disconnect++;
	mock_remote(c, &remote, &rlen);
	if (mock_jwt_verify(mock_mac, c->req.body.p ? c->req.body.p : "", c->req.body.len,
			    &claims) < 0 || !json_object_is_type(claims, json_type_object) ||
	    !json_object_object_get_ex(claims, "sessionIdsByChannel", &byc) || byc == NULL) {
		status = 422;
		goto out;
	}
	if (!json_object_is_type(byc, json_type_object))
		goto out;
	json_object_object_foreach(byc, uuid, ids) {
		for (i = 0; i < mock_chans.n && status == 200; i++) {
			struct mock_channel *ch = &mock_chans.v[i];

			/* Only the channel's creator may disconnect its sessions. */
			if (strcmp(ch->uuid, uuid) != 0 || strlen(ch->remote) != rlen ||
			    memcmp(ch->remote, remote, rlen) != 0)
				continue;
			if (!json_object_is_type(ids, json_type_array) &&
			    !json_object_is_type(ids, json_type_string))
				status = 422;
			else
				mock_stats.disconnect_matched++;
		}
	}
out:
	if (status != 200)
		mock_stats.disconnect_rejected++;
	mock_respond(c, status, NULL, "", 0);
	json_object_put(claims);
}

/* ---- control routes (/mock/...) */

static int mock_hb_send(int down, unsigned timeout_ms, int exit_after);

static void mock_fault_state(struct mock_buf *b)
{
	mock_buf_printf(b, "{\"mode\":\"%s\",\"status\":%d,\"delay_ms\":%u,\"count\":%ld,"
			"\"all\":%s,\"sessions\":%" PRIu64 ",\"cpu\":%g,\"memory\":%g,"
			"\"max_sessions\":%ld,\"heartbeat\":%s,\"trailing\":%s}",
			mock_mode_names[mock_cfg.mode], mock_cfg.fail_status, mock_cfg.delay_ms,
			mock_cfg.fault_count, mock_cfg.fault_all ? "true" : "false",
			mock_cfg.sessions, mock_cfg.cpu, mock_cfg.memory, mock_cfg.max_sessions,
			mock_cfg.hb_enabled ? "true" : "false",
			mock_cfg.stats_trailing ? "true" : "false");
}

static void mock_route_fault_get(struct mock_conn *c, const char *q, size_t qlen)
{
	(void)q;
	(void)qlen;
	mock_scratch.len = 0;
	mock_fault_state(&mock_scratch);
	mock_respond_json(c, 200, &mock_scratch);
}

/* POST /mock/fault?mode=..&status=N&delay_ms=N&count=N&all=0|1&sessions=N&cpu=F&memory=F
 * &max_sessions=N&heartbeat=on|off&trailing=0|1 (junk after the /v1/stats array).
 * Everything is checked before anything changes.
 * status= or delay_ms= alone also select their mode. */
static void mock_route_fault(struct mock_conn *c, const char *q, size_t qlen)
{
	long mode = -1, status = mock_cfg.fail_status, delay = mock_cfg.delay_ms;
	long count = -2, all = mock_cfg.fault_all, sessions = (long)mock_cfg.sessions;
	long max_sessions = mock_cfg.max_sessions, hb = mock_cfg.hb_enabled;
	long trailing = mock_cfg.stats_trailing;
	double cpu = mock_cfg.cpu, memory = mock_cfg.memory;
	const char *v, *bad = NULL;
	size_t vlen, i;

	if (mock_query_get(q, qlen, "mode", &v, &vlen)) {
		for (i = 0; i < sizeof(mock_mode_names) / sizeof(mock_mode_names[0]); i++)
			if (strlen(mock_mode_names[i]) == vlen &&
			    memcmp(mock_mode_names[i], v, vlen) == 0)
				mode = (long)i;
		if (mode < 0)
			bad = "mode";
	}
	if (mock_query_get(q, qlen, "status", &v, &vlen)) {
		if (mock_parse_long(v, vlen, 200, 599, &status) < 0)
			bad = "status";
		else if (mode < 0)
			mode = MOCK_STATUS;
	}
	if (mock_query_get(q, qlen, "delay_ms", &v, &vlen)) {
		if (mock_parse_long(v, vlen, 0, 3600000, &delay) < 0)
			bad = "delay_ms";
		else if (mode < 0)
			mode = MOCK_DELAY;
	}
	if (mock_query_get(q, qlen, "count", &v, &vlen) &&
	    (mock_parse_long(v, vlen, -1, LONG_MAX, &count) < 0 || count == 0))
		bad = "count";
	if (mock_query_get(q, qlen, "all", &v, &vlen) && mock_parse_long(v, vlen, 0, 1, &all) < 0)
		bad = "all";
	if (mock_query_get(q, qlen, "trailing", &v, &vlen) &&
	    mock_parse_long(v, vlen, 0, 1, &trailing) < 0)
		bad = "trailing";
	if (mock_query_get(q, qlen, "sessions", &v, &vlen) &&
	    mock_parse_long(v, vlen, 0, LONG_MAX, &sessions) < 0)
		bad = "sessions";
	if (mock_query_get(q, qlen, "max_sessions", &v, &vlen) &&
	    mock_parse_long(v, vlen, -1, LONG_MAX, &max_sessions) < 0)
		bad = "max_sessions";
	if (mock_query_get(q, qlen, "cpu", &v, &vlen) &&
	    mock_parse_double(v, vlen, 0, 1, &cpu) < 0)
		bad = "cpu";
	if (mock_query_get(q, qlen, "memory", &v, &vlen) &&
	    mock_parse_double(v, vlen, 0, 1, &memory) < 0)
		bad = "memory";
	if (mock_query_get(q, qlen, "heartbeat", &v, &vlen)) {
		if (vlen == 2 && memcmp(v, "on", 2) == 0)
			hb = 1;
		else if (vlen == 3 && memcmp(v, "off", 3) == 0)
			hb = 0;
		else
			bad = "heartbeat";
	}
	if (bad) {
		char msg[64];

		snprintf(msg, sizeof(msg), "bad %s", bad);
		mock_respond_error(c, 400, msg);
		return;
	}
	if (mode >= 0) {
		mock_cfg.mode = (enum mock_mode)mode;
		mock_cfg.fault_count = count == -2 ? -1 : count;
	} else if (count != -2) {
		mock_cfg.fault_count = count;
	}
	mock_cfg.fail_status = (int)status;
	mock_cfg.delay_ms = (unsigned)delay;
	mock_cfg.fault_all = (int)all;
	mock_cfg.sessions = (uint64_t)sessions;
	mock_cfg.max_sessions = max_sessions;
	mock_cfg.cpu = cpu;
	mock_cfg.memory = memory;
	mock_cfg.hb_enabled = (int)hb;
	mock_cfg.stats_trailing = (int)trailing;
	mock_route_fault_get(c, q, qlen);
}

static void mock_route_mock_stats(struct mock_conn *c, const char *q, size_t qlen)
{
	struct mock_buf *b = &mock_scratch;

	(void)q;
	(void)qlen;
	b->len = 0;
	mock_buf_printf(b, "{\"channel_requests\":%" PRIu64 ",\"channels_created\":%" PRIu64
			",\"noop\":%" PRIu64 ",\"stats\":%" PRIu64 ",\"failed\":%" PRIu64
			",\"channels\":%zu,\"requests\":%" PRIu64 ",\"connections\":%" PRIu64
			",\"bad_requests\":%" PRIu64 ",\"disconnect\":%" PRIu64
			",\"disconnect_rejected\":%" PRIu64 ",\"disconnect_matched\":%" PRIu64
			",\"heartbeats_sent\":%" PRIu64 ",\"heartbeats_ok\":%" PRIu64
			",\"heartbeats_failed\":%" PRIu64 ",\"heartbeat_last_status\":%d,"
			"\"tls_handshakes\":%" PRIu64 ",\"tls_resumed\":%" PRIu64
			",\"tls_failed\":%" PRIu64 ",\"fault\":",
			mock_stats.channel_requests, mock_stats.channels_created, mock_stats.noop,
			mock_stats.stats, mock_stats.failed, mock_chans.n, mock_stats.requests,
			mock_stats.connections, mock_stats.bad_requests, mock_stats.disconnect,
			mock_stats.disconnect_rejected, mock_stats.disconnect_matched,
			mock_stats.hb_sent, mock_stats.hb_ok, mock_stats.hb_failed,
			mock_stats.hb_last_status, mock_stats.tls_handshakes, mock_stats.tls_resumed,
			mock_stats.tls_failed);
	mock_fault_state(b);
	mock_buf_str(b, "}");
	mock_respond_json(c, 200, b);
}

static void mock_route_last(struct mock_conn *c, const char *q, size_t qlen)
{
	struct mock_buf *b = &mock_scratch;
	unsigned i;

	(void)q;
	(void)qlen;
	if (!mock_last.valid) {
		mock_respond_error(c, 404, "no /v1/channel request yet");
		return;
	}
	b->len = 0;
	mock_buf_printf(b, "{\"method\":\"%s\",\"target\":",
			llhttp_method_name((llhttp_method_t)mock_last.method));
	mock_buf_json(b, mock_last.head, mock_last.url_len);
	mock_buf_str(b, ",\"headers\":[");
	for (i = 0; i < mock_last.nhdr; i++) {
		const struct mock_hdr *h = &mock_last.hdr[i];

		mock_buf_str(b, i ? ",[" : "[");
		mock_buf_json(b, mock_last.head + h->name_off, h->name_len);
		mock_buf_str(b, ",");
		mock_buf_json(b, mock_last.head + h->val_off, h->val_len);
		mock_buf_str(b, "]");
	}
	mock_buf_str(b, "],\"token\":");
	if (mock_last.has_token)
		mock_buf_json(b, mock_last.token.p, mock_last.token.len);
	else
		mock_buf_str(b, "null");
	mock_buf_str(b, ",\"remote\":");
	mock_buf_json(b, mock_last.remote.p, mock_last.remote.len);
	mock_buf_printf(b, ",\"verified\":%s,\"iss\":", mock_last.verified ? "true" : "false");
	if (mock_last.has_iss)
		mock_buf_json(b, mock_last.iss.p, mock_last.iss.len);
	else
		mock_buf_str(b, "null");
	if (mock_last.status)
		mock_buf_printf(b, ",\"status\":%d}", mock_last.status);
	else
		mock_buf_str(b, ",\"status\":null}");
	mock_respond_json(c, 200, b);
}

static void mock_route_reset_stats(struct mock_conn *c, const char *q, size_t qlen)
{
	(void)q;
	(void)qlen;
	memset(&mock_stats, 0, sizeof(mock_stats));
	mock_last.valid = 0;
	mock_respond(c, 200, "application/json", "{\"status\":\"ok\"}", 15);
}

static void mock_route_clear_channels(struct mock_conn *c, const char *q, size_t qlen)
{
	(void)q;
	(void)qlen;
	mock_chans_clear();
	mock_respond(c, 200, "application/json", "{\"status\":\"ok\"}", 15);
}

/* POST /mock/heartbeat?status=up|down: one heartbeat now (a "down" does not exit). */
static void mock_route_heartbeat(struct mock_conn *c, const char *q, size_t qlen)
{
	const char *v;
	size_t vlen;
	int down = 0, err;

	if (mock_query_get(q, qlen, "status", &v, &vlen)) {
		if (vlen == 4 && memcmp(v, "down", 4) == 0) {
			down = 1;
		} else if (!(vlen == 2 && memcmp(v, "up", 2) == 0)) {
			mock_respond_error(c, 400, "bad status");
			return;
		}
	}
	err = mock_hb_send(down, MOCK_HB_TIMEOUT_MS, 0);
	if (err == -ENOTCONN)
		mock_respond_error(c, 409, "no --heartbeat configured");
	else if (err < 0)
		mock_respond_error(c, 409, "a heartbeat is in flight");
	else
		mock_respond(c, 202, "application/json", "{\"status\":\"sent\"}", 17);
}

/* ---- dispatch */

static void mock_route_sfu_channel(struct mock_conn *c, const char *q, size_t qlen)
{
	(void)q;
	(void)qlen;
	mock_route_channel(c);
}

static void mock_route_sfu_noop(struct mock_conn *c, const char *q, size_t qlen)
{
	(void)q;
	(void)qlen;
	mock_route_noop(c);
}

static void mock_route_sfu_stats(struct mock_conn *c, const char *q, size_t qlen)
{
	(void)q;
	(void)qlen;
	mock_route_stats(c);
}

static void mock_route_sfu_disconnect(struct mock_conn *c, const char *q, size_t qlen)
{
	(void)q;
	(void)qlen;
	mock_route_disconnect(c);
}

struct mock_route {
	int method;
	const char *path;
	void (*fn)(struct mock_conn *c, const char *q, size_t qlen);
};

static const struct mock_route mock_routes[] = {
	{ HTTP_GET, "/v1/channel", mock_route_sfu_channel },
	{ HTTP_GET, "/v1/noop", mock_route_sfu_noop },
	{ HTTP_GET, "/v1/stats", mock_route_sfu_stats },
	{ HTTP_POST, "/v1/disconnect", mock_route_sfu_disconnect },
	{ HTTP_GET, "/mock/stats", mock_route_mock_stats },
	{ HTTP_GET, "/mock/last", mock_route_last },
	{ HTTP_GET, "/mock/fault", mock_route_fault_get },
	{ HTTP_POST, "/mock/fault", mock_route_fault },
	{ HTTP_POST, "/mock/reset-stats", mock_route_reset_stats },
	{ HTTP_POST, "/mock/clear-channels", mock_route_clear_channels },
	{ HTTP_POST, "/mock/heartbeat", mock_route_heartbeat },
};

/* Routes a complete request.  Like the SFU's RouteListener: methods other than GET, POST
 * and OPTIONS get 405, and a path not registered for that method gets 404. */
static void mock_dispatch(struct mock_conn *c)
{
	struct mock_req *r = &c->req;
	const char *path, *query;
	size_t plen, qlen, i;

	mock_stats.requests++;
	/* The mock speaks no WebSocket: answer, then close rather than switch protocols. */
	if (r->upgrade)
		r->keep_alive = 0;
	c->resp = &c->out;
	mock_req_target(r, &path, &plen, &query, &qlen);
	if (mock_cfg.verbose)
		log_debug("request method=%s target=%.*s peer=%s",
			  llhttp_method_name((llhttp_method_t)r->method), (int)r->url_len,
			  r->head, c->peer);
	if (r->method != HTTP_GET && r->method != HTTP_POST && r->method != HTTP_OPTIONS) {
		mock_respond(c, 405, NULL, "", 0);
		goto out;
	}
	for (i = 0; i < sizeof(mock_routes) / sizeof(mock_routes[0]); i++) {
		const struct mock_route *rt = &mock_routes[i];

		if (rt->method == r->method && strlen(rt->path) == plen &&
		    memcmp(rt->path, path, plen) == 0) {
			rt->fn(c, query, qlen);
			goto out;
		}
	}
	mock_respond(c, 404, NULL, "", 0);
out:
	c->resp = &c->out;
}

/* ---- llhttp callbacks: copy the request into mock_req.head, enforcing the limits */

static int mock_req_append(struct mock_req *r, const char *at, size_t len)
{
	if (len > MOCK_HEAD_MAX - r->used) {
		r->error_status = 431;
		return -1;
	}
	memcpy(r->head + r->used, at, len);
	r->used += len;
	return 0;
}

static int mock_on_message_begin(llhttp_t *p)
{
	struct mock_req *r = &((struct mock_conn *)p->data)->req;

	r->used = 0;
	r->url_len = 0;
	r->nhdr = 0;
	r->in_field = 0;
	r->error_status = 0;
	r->upgrade = 0;
	r->keep_alive = 0;
	r->body.len = 0;
	return 0;
}

static int mock_on_url(llhttp_t *p, const char *at, size_t len)
{
	struct mock_req *r = &((struct mock_conn *)p->data)->req;

	if (mock_req_append(r, at, len) < 0) {
		r->error_status = 414;
		return -1;
	}
	r->url_len += len;
	return 0;
}

static int mock_on_header_field(llhttp_t *p, const char *at, size_t len)
{
	struct mock_req *r = &((struct mock_conn *)p->data)->req;
	struct mock_hdr *h;

	if (!r->in_field) {
		if (r->nhdr == MOCK_MAX_HEADERS) {
			r->error_status = 431;
			return -1;
		}
		h = &r->hdr[r->nhdr];
		h->name_off = (uint16_t)r->used;
		h->name_len = 0;
		h->val_off = (uint16_t)r->used;
		h->val_len = 0;
		r->in_field = 1;
	}
	h = &r->hdr[r->nhdr];
	if (mock_req_append(r, at, len) < 0)
		return -1;
	h->name_len = (uint16_t)(h->name_len + len);
	return 0;
}

static int mock_on_header_field_complete(llhttp_t *p)
{
	struct mock_req *r = &((struct mock_conn *)p->data)->req;

	r->in_field = 0;
	r->hdr[r->nhdr].val_off = (uint16_t)r->used;
	r->hdr[r->nhdr].val_len = 0;
	return 0;
}

static int mock_on_header_value(llhttp_t *p, const char *at, size_t len)
{
	struct mock_req *r = &((struct mock_conn *)p->data)->req;

	if (mock_req_append(r, at, len) < 0)
		return -1;
	r->hdr[r->nhdr].val_len = (uint16_t)(r->hdr[r->nhdr].val_len + len);
	return 0;
}

static int mock_on_header_value_complete(llhttp_t *p)
{
	struct mock_req *r = &((struct mock_conn *)p->data)->req;
	struct mock_hdr *h = &r->hdr[r->nhdr];

	/* llhttp strips leading whitespace only; Node strips both ends. */
	while (h->val_len && (r->head[h->val_off + h->val_len - 1] == ' ' ||
			      r->head[h->val_off + h->val_len - 1] == '\t'))
		h->val_len--;
	r->nhdr++;
	return 0;
}

static int mock_on_headers_complete(llhttp_t *p)
{

	struct mock_conn *c = p->data;
	struct mock_req *r = &c->req;
	const char *v;
	size_t vlen;

	r->method = p->method;
	r->keep_alive = llhttp_should_keep_alive(p);
	r->upgrade = p->upgrade;
	/* Node answers Expect: 100-continue by itself; curl waits a second without it. */
	v = mock_req_header(r, "expect", &vlen);
	if (v && vlen == 12 && strncasecmp(v, "100-continue", 12) == 0 &&
	    (p->content_length || (p->flags & F_CHUNKED)))
		mock_buf_str(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
	return 0;
}

static int mock_on_body(llhttp_t *p, const char *at, size_t len)
{
	struct mock_req *r = &((struct mock_conn *)p->data)->req;

	if (len > MOCK_BODY_MAX - r->body.len) {
		r->error_status = 413;
		return -1;
	}
	mock_buf_add(&r->body, at, len);
	return 0;
}

/* Pausing after every message lets mock_conn_feed answer it before parsing the next. */
static int mock_on_message_complete(llhttp_t *p)
{
	(void)p;
	return HPE_PAUSED;
}

/* ---- connections */

static void mock_on_conn_closed(uv_handle_t *h)
{
	struct mock_conn *c = h->data;

	if (--c->open_handles)
		return;
	mock_buf_free(&c->out);
	mock_buf_free(&c->wbuf);
	mock_buf_free(&c->held);
	mock_buf_free(&c->pending);
	mock_buf_free(&c->req.body);
	SSL_free(c->ssl);
	free(c);
}

static void mock_conn_close(struct mock_conn *c, int reset)
{
	if (c->closing)
		return;
	c->closing = 1;
	if (c->prev)
		c->prev->next = c->next;
	else
		mock_conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->prev = c->next = NULL;
	uv_close((uv_handle_t *)&c->timer, mock_on_conn_closed);
	/* uv_tcp_close_reset sets SO_LINGER 0 so that close() sends RST instead of FIN. */
	if (!reset || uv_tcp_close_reset(&c->tcp, mock_on_conn_closed) != 0)
		uv_close((uv_handle_t *)&c->tcp, mock_on_conn_closed);
}

static void mock_on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	/* One loop, and every read is consumed (or copied) before the callback returns. */
	(void)h;
	(void)suggested;
	*buf = uv_buf_init(mock_readbuf, sizeof(mock_readbuf));
}

static void mock_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void mock_on_write(uv_write_t *w, int status);

static void mock_conn_update_reading(struct mock_conn *c)
{
	int want = !c->closing && !c->close_after && !c->waiting &&
		   c->out.len + c->wbuf.len < MOCK_OUT_HIGH;

	if (want && !c->reading) {
		if (uv_read_start((uv_stream_t *)&c->tcp, mock_on_alloc, mock_on_read) == 0)
			c->reading = 1;
	} else if (!want && c->reading && !c->closing) {
		uv_read_stop((uv_stream_t *)&c->tcp);
		c->reading = 0;
	}
}

/* TLS: the answers collected in out are encrypted, and everything OpenSSL
 * wrote (handshake messages too) goes out as one write. */
static void mock_tls_flush(struct mock_conn *c)
{
	size_t n;
	uv_buf_t buf;

	if (c->out.len > 0) {
		if (SSL_write(c->ssl, c->out.p, (int)c->out.len) != (int)c->out.len) {
			ERR_clear_error();
			mock_conn_close(c, 0);
			return;
		}
		c->out.len = 0;
	}
	n = BIO_ctrl_pending(c->tls_out);
	if (n == 0) {
		if (c->close_after && !c->waiting)
			mock_conn_close(c, 0);
		return;
	}
	c->wbuf.len = 0;
	mock_buf_reserve(&c->wbuf, n);
	if (BIO_read(c->tls_out, c->wbuf.p, (int)n) != (int)n)
		fatal("BIO_read of %zu pending bytes failed", n);
	c->wbuf.len = n;
	buf = uv_buf_init(c->wbuf.p, (unsigned)c->wbuf.len);
	if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &buf, 1, mock_on_write) != 0) {
		mock_conn_close(c, 0);
		return;
	}
	c->writing = 1;
}

static void mock_conn_flush(struct mock_conn *c)
{
	struct mock_buf tmp;
	uv_buf_t buf;

	if (c->closing || c->writing)
		return;
	if (c->ssl != NULL) {
		mock_tls_flush(c);
		return;
	}
	if (c->out.len == 0) {
		if (c->close_after && !c->waiting)
			mock_conn_close(c, 0);
		return;
	}
	/* Double buffering: new responses collect in out while wbuf is on the wire. */
	tmp = c->wbuf;
	c->wbuf = c->out;
	c->out = tmp;
	c->out.len = 0;
	buf = uv_buf_init(c->wbuf.p, (unsigned)c->wbuf.len);
	if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &buf, 1, mock_on_write) != 0) {
		mock_conn_close(c, 0);
		return;
	}
	c->writing = 1;
}

static void mock_on_write(uv_write_t *w, int status)
{
	struct mock_conn *c = w->data;

	c->writing = 0;
	c->wbuf.len = 0;
	if (status < 0 || c->closing) {
		mock_conn_close(c, 0);
		return;
	}
	mock_conn_flush(c);
	mock_conn_update_reading(c);
}

/* Keeps the bytes after a delayed request until its answer has gone out. */
static void mock_conn_stash(struct mock_conn *c, const char *data, size_t len)
{
	if (c->feeding_stash) {
		/* data already lies inside pending: move it to the front. */
		memmove(c->pending.p, data, len);
		c->pending.len = len;
	} else {
		c->pending.len = 0;
		mock_buf_add(&c->pending, data, len);
	}
}

static void mock_conn_bad(struct mock_conn *c)
{
	int status = c->req.error_status ? c->req.error_status : 400;

	mock_stats.bad_requests++;
	c->req.keep_alive = 0;
	c->resp = &c->out;
	mock_respond_error(c, status, status == 400 ?
			   llhttp_errno_name(llhttp_get_errno(&c->parser)) : mock_reason(status));
}

static void mock_conn_feed(struct mock_conn *c, const char *data, size_t len)
{
	while (len > 0 && !c->closing) {
		llhttp_errno_t err = llhttp_execute(&c->parser, data, len);
		size_t used;

		if (err == HPE_OK)
			return;
		if (err != HPE_PAUSED && err != HPE_PAUSED_UPGRADE) {
			mock_conn_bad(c);
			return;
		}
		used = (size_t)(llhttp_get_error_pos(&c->parser) - data);
		data += used;
		len -= used;
		mock_dispatch(c);
		if (c->closing || c->hung || c->close_after)
			return;
		if (c->waiting) {
			mock_conn_stash(c, data, len);
			return;
		}
		llhttp_resume(&c->parser);
	}
}

static void mock_on_delay(uv_timer_t *t)
{
	struct mock_conn *c = t->data;
	size_t len;

	c->waiting = 0;
	mock_buf_add(&c->out, c->held.p, c->held.len);
	c->held.len = 0;
	if (!c->close_after) {
		llhttp_resume(&c->parser);
		len = c->pending.len;
		c->feeding_stash = 1;
		mock_conn_feed(c, c->pending.p, len);
		c->feeding_stash = 0;
		if (!c->waiting)
			c->pending.len = 0;
	}
	mock_conn_flush(c);
	mock_conn_update_reading(c);
}

/* Decides, at the first byte, whether the connection speaks TLS; 0 or -1 (closed). */
static int mock_tls_detect(struct mock_conn *c, const char *data)
{
	c->tls_state = 1;
	if (mock_tls_ctx == NULL || (unsigned char)data[0] != 0x16)
		return 0;
	c->ssl = SSL_new(mock_tls_ctx);
	c->tls_in = BIO_new(BIO_s_mem());
	c->tls_out = BIO_new(BIO_s_mem());
	if (c->ssl == NULL || c->tls_in == NULL || c->tls_out == NULL)
		fatal("out of memory for a TLS connection");
	BIO_set_mem_eof_return(c->tls_in, -1);
	SSL_set_bio(c->ssl, c->tls_in, c->tls_out);
	SSL_set_accept_state(c->ssl);
	c->tls_state = 2;
	return 0;
}

/* TLS bytes in: every complete record is decrypted and parsed as plain bytes are. */
static void mock_tls_read(struct mock_conn *c, const char *data, size_t len)
{
	static char plain[16384];
	int was_done = SSL_is_init_finished(c->ssl);

	if (BIO_write(c->tls_in, data, (int)len) != (int)len)
		fatal("BIO_write of %zu bytes failed", len);
	while (!c->closing && !c->hung && !c->close_after) {
		int n = SSL_read(c->ssl, plain, sizeof(plain));
		int e;

		if (!was_done && SSL_is_init_finished(c->ssl)) {
			was_done = 1;
			mock_stats.tls_handshakes++;
			mock_stats.tls_resumed += SSL_session_reused(c->ssl) == 1;
		}
		if (n > 0 && c->waiting) {
			/* Behind a delayed answer, like the rest of its read (mock_conn_stash). */
			mock_buf_add(&c->pending, plain, (size_t)n);
			continue;
		}
		if (n > 0) {
			mock_conn_feed(c, plain, (size_t)n);
			continue;
		}
		e = SSL_get_error(c->ssl, n);
		if (e == SSL_ERROR_WANT_READ)
			break;
		if (e == SSL_ERROR_ZERO_RETURN) {
			c->close_after = 1;
			break;
		}
		if (!was_done) {
			mock_stats.tls_failed++;
			log_info("TLS handshake from %s failed: %s", c->peer,
				 ERR_reason_error_string(ERR_peek_last_error()) ?
				 ERR_reason_error_string(ERR_peek_last_error()) : "?");
		}
		ERR_clear_error();
		/* The alert, if OpenSSL wrote one, then the end. */
		c->close_after = 1;
		c->out.len = 0;
		break;
	}
	ERR_clear_error();
}

static void mock_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct mock_conn *c = s->data;

	if (nread > 0 && c->tls_state == 0)
		mock_tls_detect(c, buf->base);
	if (nread > 0 && c->ssl != NULL && !c->hung && !c->close_after) {
		mock_tls_read(c, buf->base, (size_t)nread);
		mock_conn_flush(c);
		mock_conn_update_reading(c);
		return;
	}

	if (nread == UV_EOF && !c->hung) {
		/* The client is done sending; answers still owed go out first. */
		c->close_after = 1;
		mock_conn_update_reading(c);
		mock_conn_flush(c);
		return;
	}
	if (nread < 0) {
		mock_conn_close(c, 0);
		return;
	}
	if (nread == 0 || c->hung || c->close_after)
		return;
	mock_conn_feed(c, buf->base, (size_t)nread);
	mock_conn_flush(c);
	mock_conn_update_reading(c);
}

static void mock_addr_str(const struct sockaddr_storage *ss, char *out, size_t len)
{
	const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;

	if (ss->ss_family == AF_INET) {
		inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, out,
			  (socklen_t)len);
	} else if (ss->ss_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
		/* The SFU must see the same dotted quad Odoo later calls it from. */
		inet_ntop(AF_INET, &s6->sin6_addr.s6_addr[12], out, (socklen_t)len);
	} else if (ss->ss_family == AF_INET6) {
		inet_ntop(AF_INET6, &s6->sin6_addr, out, (socklen_t)len);
	} else {
		snprintf(out, len, "unknown");
	}
}

static void mock_on_connection(uv_stream_t *server, int status)
{
	struct sockaddr_storage ss;
	int sl = (int)sizeof(ss);
	struct mock_conn *c;

	if (status < 0) {
		log_warn("accept failed err=%s", uv_strerror(status));
		return;
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		fatal("out of memory");
	uv_tcp_init(mock_loop, &c->tcp);
	uv_timer_init(mock_loop, &c->timer);
	c->tcp.data = c;
	c->timer.data = c;
	c->wreq.data = c;
	c->open_handles = 2;
	c->resp = &c->out;
	c->next = mock_conns;
	if (mock_conns)
		mock_conns->prev = c;
	mock_conns = c;
	if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
		mock_conn_close(c, 0);
		return;
	}
	mock_stats.connections++;
	uv_tcp_nodelay(&c->tcp, 1);
	if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sl) == 0)
		mock_addr_str(&ss, c->peer, sizeof(c->peer));
	else
		snprintf(c->peer, sizeof(c->peer), "unknown");
	llhttp_init(&c->parser, HTTP_REQUEST, &mock_settings);
	c->parser.data = c;
	mock_conn_update_reading(c);
}

/* ---- heartbeat client: one request at a time, a connection per request */

static void mock_hb_closed(uv_handle_t *h)
{
	struct mock_hb_req *q = h->data;

	if (--q->open_handles)
		return;
	mock_buf_free(&q->out);
	free(q);
}

static void mock_hb_finish(struct mock_hb_req *q, int result)
{
	if (q->done)
		return;
	q->done = 1;
	if (mock_hb_cur == q)
		mock_hb_cur = NULL;
	mock_stats.hb_last_status = result;
	if (result >= 200 && result < 300) {
		mock_stats.hb_ok++;
		log_debug("heartbeat status=%s result=%d", q->down ? "down" : "up", result);
	} else {
		mock_stats.hb_failed++;
		log_warn("heartbeat failed status=%s result=%d%s%s", q->down ? "down" : "up",
			 result, result < 0 ? " err=" : "", result < 0 ? uv_strerror(result) : "");
	}
	uv_close((uv_handle_t *)&q->tcp, mock_hb_closed);
	uv_close((uv_handle_t *)&q->timer, mock_hb_closed);
	if (q->exit_after)
		mock_shutdown_finish();
}

static int mock_hb_on_complete(llhttp_t *p)
{
	struct mock_hb_req *q = p->data;

	/* A 1xx is a message of its own; only a final status ends the exchange. */
	if (p->status_code < 200)
		return 0;
	q->status = p->status_code;
	return HPE_PAUSED;
}

static void mock_hb_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct mock_hb_req *q = s->data;
	llhttp_errno_t err = HPE_OK;

	if (q->done)
		return;
	if (nread == UV_EOF)
		err = llhttp_finish(&q->parser);
	else if (nread < 0)
		mock_hb_finish(q, (int)nread);
	else if (nread > 0)
		err = llhttp_execute(&q->parser, buf->base, (size_t)nread);
	if (q->done)
		return;
	if (q->status)
		mock_hb_finish(q, q->status);
	else if (nread == UV_EOF || (err != HPE_OK && err != HPE_PAUSED))
		mock_hb_finish(q, -EPROTO);
}

static void mock_hb_on_write(uv_write_t *w, int status)
{
	struct mock_hb_req *q = w->data;

	if (!q->done && status < 0)
		mock_hb_finish(q, status);
}

static void mock_hb_on_connect(uv_connect_t *req, int status)
{
	struct mock_hb_req *q = req->data;
	uv_buf_t buf;
	int err;

	if (q->done)
		return;
	if (status < 0) {
		mock_hb_finish(q, status);
		return;
	}
	buf = uv_buf_init(q->out.p, (unsigned)q->out.len);
	err = uv_write(&q->wreq, (uv_stream_t *)&q->tcp, &buf, 1, mock_hb_on_write);
	if (err == 0)
		err = uv_read_start((uv_stream_t *)&q->tcp, mock_on_alloc, mock_hb_on_read);
	if (err < 0)
		mock_hb_finish(q, err);
}

static void mock_hb_on_timeout(uv_timer_t *t)
{
	mock_hb_finish(t->data, -ETIMEDOUT);
}

/* The request: the heartbeat JSON of POST /v1/sfu, and a Bearer JWT (HS256, registration
 * key) in heartbeat wire format v2: its address claim matches the body, its sha256 claim
 * names the body's exact bytes and its seq grows with every heartbeat (ms since the
 * epoch, or one more than the last). */
static void mock_hb_build(struct mock_hb_req *q)
{
	static const char jwt_header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
	static uint64_t last_seq;
	struct mock_buf claims = { 0 }, jwt = { 0 }, body = { 0 };
	unsigned char mac[32], digest[SHA256_DIGEST_LENGTH];
	char enc[1024 * 2];
	struct timespec ts;
	uint64_t wall_ms;
	long now;

	mock_buf_printf(&body, "{\"status\":\"%s\",\"address\":", q->down ? "down" : "up");
	mock_buf_json(&body, mock_cfg.advertise, strlen(mock_cfg.advertise));
	if (mock_cfg.region) {
		mock_buf_str(&body, ",\"region\":");
		mock_buf_json(&body, mock_cfg.region, strlen(mock_cfg.region));
	}
	mock_buf_str(&body, ",\"key\":");
	mock_buf_json(&body, mock_cfg.key_b64, strlen(mock_cfg.key_b64));
	mock_buf_printf(&body, ",\"channels\":%zu,\"sessions\":%" PRIu64
			",\"cpuUsage\":%.4f,\"memoryUsage\":%.4f", mock_chans.n,
			mock_cfg.sessions, mock_cfg.cpu, mock_cfg.memory);
	if (mock_cfg.max_sessions >= 0)
		mock_buf_printf(&body, ",\"maxSessions\":%ld", mock_cfg.max_sessions);
	mock_buf_str(&body, "}");

	clock_gettime(CLOCK_REALTIME, &ts);
	now = (long)ts.tv_sec;
	wall_ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
	last_seq = wall_ms > last_seq ? wall_ms : last_seq + 1;
	if (SHA256((const unsigned char *)body.p, body.len, digest) == NULL)
		fatal("SHA256 failed");
	mock_buf_str(&claims, "{\"address\":");
	mock_buf_json(&claims, mock_cfg.advertise, strlen(mock_cfg.advertise));
	mock_b64url_encode(digest, sizeof(digest), enc);
	mock_buf_printf(&claims, ",\"exp\":%ld,\"iat\":%ld,\"sha256\":\"%s\",\"seq\":%" PRIu64 "}",
			now + 60, now, enc, last_seq);
	mock_b64url_encode((const unsigned char *)jwt_header, sizeof(jwt_header) - 1, enc);
	mock_buf_str(&jwt, enc);
	mock_buf_str(&jwt, ".");
	mock_b64url_encode((const unsigned char *)claims.p, claims.len, enc);
	mock_buf_str(&jwt, enc);
	if (mock_hmac(mock_reg_mac, jwt.p, jwt.len, mac) < 0)
		fatal("HMAC failed");
	mock_b64url_encode(mac, sizeof(mac), enc);
	mock_buf_str(&jwt, ".");
	mock_buf_str(&jwt, enc);

	mock_buf_printf(&q->out, "POST %s/v1/sfu HTTP/1.1\r\nHost: %s\r\n"
			"Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
			"Content-Length: %zu\r\nConnection: close\r\n\r\n",
			mock_cfg.hb_path, mock_cfg.hb_hostport, jwt.p, body.len);
	mock_buf_add(&q->out, body.p, body.len);
	mock_buf_free(&claims);
	mock_buf_free(&jwt);
	mock_buf_free(&body);
}

/* Starts a heartbeat.  A "down" replaces one in flight; an "up" is skipped (-EBUSY). */
static int mock_hb_send(int down, unsigned timeout_ms, int exit_after)
{
	struct mock_hb_req *q;
	int err;

	if (mock_cfg.hb_url == NULL)
		return -ENOTCONN;
	if (mock_hb_cur) {
		if (!down)
			return -EBUSY;
		mock_hb_finish(mock_hb_cur, -ECANCELED);
	}
	q = calloc(1, sizeof(*q));
	if (q == NULL)
		fatal("out of memory");
	q->down = down;
	q->exit_after = exit_after;
	mock_hb_build(q);
	uv_tcp_init(mock_loop, &q->tcp);
	uv_timer_init(mock_loop, &q->timer);
	q->tcp.data = q;
	q->timer.data = q;
	q->connect.data = q;
	q->wreq.data = q;
	q->open_handles = 2;
	llhttp_init(&q->parser, HTTP_RESPONSE, &mock_hb_settings);
	q->parser.data = q;
	mock_hb_cur = q;
	mock_stats.hb_sent++;
	uv_update_time(mock_loop);
	uv_timer_start(&q->timer, mock_hb_on_timeout, timeout_ms, 0);
	err = uv_tcp_connect(&q->connect, &q->tcp, (const struct sockaddr *)&mock_cfg.hb_addr,
			     mock_hb_on_connect);
	if (err < 0)
		mock_hb_finish(q, err);
	return 0;
}

static void mock_hb_tick(uv_timer_t *t)
{
	(void)t;
	if (mock_cfg.hb_enabled && !mock_stopping)
		mock_hb_send(0, MOCK_HB_TIMEOUT_MS, 0);
}

/* ---- start and stop */

static void mock_close_handle(uv_handle_t *h)
{
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

/* Closes everything still open so that uv_run returns and main can exit 0. */
static void mock_shutdown_finish(void)
{
	if (mock_finished)
		return;
	mock_finished = 1;
	if (mock_hb_cur)
		mock_hb_finish(mock_hb_cur, -ECANCELED);
	while (mock_conns)
		mock_conn_close(mock_conns, 0);
	mock_close_handle((uv_handle_t *)&mock_server);
	mock_close_handle((uv_handle_t *)&mock_sigterm);
	mock_close_handle((uv_handle_t *)&mock_sigint);
	mock_close_handle((uv_handle_t *)&mock_hb_timer);
}

/* First signal: stop accepting, sign off (bounded by MOCK_HB_DOWN_TIMEOUT_MS), exit.
 * A second signal skips the sign-off. */
static void mock_on_signal(uv_signal_t *s, int signum)
{
	(void)s;
	log_info("stopping signal=%d", signum);
	if (mock_stopping) {
		mock_shutdown_finish();
		return;
	}
	mock_stopping = 1;
	mock_close_handle((uv_handle_t *)&mock_server);
	if (mock_cfg.hb_url) {
		if (mock_hb_timer_active)
			uv_timer_stop(&mock_hb_timer);
		if (mock_hb_send(1, MOCK_HB_DOWN_TIMEOUT_MS, 1) == 0)
			return;
	}
	mock_shutdown_finish();
}

static void mock_usage(FILE *f)
{
	fprintf(f,
		"usage: mock-sfu --key BASE64 [options]\n"
		"  --port N                 listen port (0 = ephemeral; default 0)\n"
		"  --bind ADDR              listen address (default 127.0.0.1; ::1 works)\n"
		"  --public-url URL         url /v1/channel returns (default http://ADDR:PORT)\n"
		"  --proxy                  take the remote address from X-Forwarded-For and the\n"
		"                           url host from X-Forwarded-Host, as PROXY=1 does\n"
		"  --sessions N             synthetic session total spread over /v1/stats\n"
		"  --fail-status N          answer /v1/channel with status N, empty body\n"
		"  --delay-ms N             answer /v1/channel after N ms\n"
		"  --hang                   read /v1/channel requests, never answer\n"
		"  --reset                  reset the connection instead of answering\n"
		"  --garbage                answer 200 {\"nope\":1}\n"
		"  --garbage-bytes          answer 200 with bytes that are not JSON\n"
		"  --fault-count N          the fault hits only the next N requests\n"
		"  --fault-all              faults also hit /v1/noop and /v1/stats\n"
		"  --heartbeat URL          gateway base URL to POST /v1/sfu heartbeats to\n"
		"  --heartbeat-interval-ms N  (default 10000)\n"
		"  --region R  --registration-key BASE64  --advertise URL\n"
		"  --cpu F  --memory F  --max-sessions N   load reported in heartbeats\n"
		"  --tls-cert FILE --tls-key FILE  also serve HTTPS on the port (PEM; a connection\n"
		"                           starting with a TLS record speaks TLS)\n"
		"  --quiet  --verbose  --help\n"
		"control: POST /mock/fault?mode=ok|status|delay|hang|reset|garbage|garbage-bytes\n"
		"  &status=N&delay_ms=N&count=N&all=0|1&sessions=N&cpu=F&memory=F&max_sessions=N\n"
		"  &heartbeat=on|off&trailing=0|1; GET /mock/fault, /mock/stats, /mock/last;\n"
		"  POST /mock/reset-stats, /mock/clear-channels, /mock/heartbeat?status=up|down\n");
}

static long mock_arg_long(const char *name, const char *v, long min, long max)
{
	long out;

	if (mock_parse_long(v, strlen(v), min, max, &out) < 0)
		fatal("bad value for --%s: %s", name, v);
	return out;
}

static double mock_arg_double(const char *name, const char *v)
{
	double out;

	if (mock_parse_double(v, strlen(v), 0, 1, &out) < 0)
		fatal("bad value for --%s (0..1): %s", name, v);
	return out;
}

/* Splits "scheme://authority[/path]" into its parts; the path loses a trailing '/'. */
static int mock_split_url(const char *url, char *scheme, size_t slen, char *auth, size_t alen,
			  char *path, size_t plen)
{
	const char *sep = strstr(url, "://"), *a, *slash;
	size_t n;

	if (sep == NULL || (size_t)(sep - url) >= slen)
		return -EINVAL;
	memcpy(scheme, url, (size_t)(sep - url));
	scheme[sep - url] = '\0';
	a = sep + 3;
	slash = strchr(a, '/');
	n = slash ? (size_t)(slash - a) : strlen(a);
	if (n == 0 || n >= alen)
		return -EINVAL;
	memcpy(auth, a, n);
	auth[n] = '\0';
	snprintf(path, plen, "%s", slash ? slash : "");
	n = strlen(path);
	while (n && path[n - 1] == '/')
		path[--n] = '\0';
	return 0;
}

static void mock_setup_heartbeat(void)
{
	char scheme[16], path[512], host[512], port[16] = "80";
	struct addrinfo hints = { 0 }, *res = NULL;
	char *colon;
	int err;

	if (mock_split_url(mock_cfg.hb_url, scheme, sizeof(scheme), mock_cfg.hb_hostport,
			   sizeof(mock_cfg.hb_hostport), path, sizeof(path)) < 0 ||
	    strcmp(scheme, "http") != 0)
		fatal("--heartbeat wants http://host[:port][/path]: %s", mock_cfg.hb_url);
	snprintf(mock_cfg.hb_path, sizeof(mock_cfg.hb_path), "%s", path);
	snprintf(host, sizeof(host), "%s", mock_cfg.hb_hostport);
	if (host[0] == '[') {
		char *end = strchr(host, ']');

		if (end == NULL)
			fatal("bad --heartbeat host: %s", mock_cfg.hb_url);
		*end = '\0';
		if (end[1] == ':')
			snprintf(port, sizeof(port), "%s", end + 2);
		memmove(host, host + 1, strlen(host + 1) + 1);
	} else if ((colon = strrchr(host, ':')) != NULL) {
		*colon = '\0';
		snprintf(port, sizeof(port), "%s", colon + 1);
	}
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	/* Resolved once at start: the gateway's address does not move during a test. */
	err = getaddrinfo(host, port, &hints, &res);
	if (err != 0 || res == NULL)
		fatal("cannot resolve --heartbeat host %s: %s", host, gai_strerror(err));
	memcpy(&mock_cfg.hb_addr, res->ai_addr, res->ai_addrlen);
	freeaddrinfo(res);
	if (mock_cfg.reg_key_len == 0)
		fatal("--heartbeat needs --registration-key");
	mock_reg_mac = mock_mac_new(mock_cfg.reg_key, mock_cfg.reg_key_len);
	if (mock_reg_mac == NULL)
		fatal("cannot set up HMAC");
}

enum {
	OPT_PORT = 256, OPT_BIND, OPT_KEY, OPT_PUBLIC_URL, OPT_PROXY, OPT_SESSIONS,
	OPT_FAIL_STATUS, OPT_DELAY_MS, OPT_HANG, OPT_RESET, OPT_GARBAGE, OPT_GARBAGE_BYTES,
	OPT_FAULT_COUNT, OPT_FAULT_ALL, OPT_HEARTBEAT, OPT_HB_INTERVAL, OPT_REGION,
	OPT_REG_KEY, OPT_ADVERTISE, OPT_CPU, OPT_MEMORY, OPT_MAX_SESSIONS, OPT_QUIET,
	OPT_VERBOSE, OPT_HELP, OPT_TLS_CERT, OPT_TLS_KEY,
};

static const struct option mock_options[] = {
	{ "port", required_argument, NULL, OPT_PORT },
	{ "bind", required_argument, NULL, OPT_BIND },
	{ "key", required_argument, NULL, OPT_KEY },
	{ "public-url", required_argument, NULL, OPT_PUBLIC_URL },
	{ "proxy", no_argument, NULL, OPT_PROXY },
	{ "sessions", required_argument, NULL, OPT_SESSIONS },
	{ "fail-status", required_argument, NULL, OPT_FAIL_STATUS },
	{ "delay-ms", required_argument, NULL, OPT_DELAY_MS },
	{ "hang", no_argument, NULL, OPT_HANG },
	{ "reset", no_argument, NULL, OPT_RESET },
	{ "garbage", no_argument, NULL, OPT_GARBAGE },
	{ "garbage-bytes", no_argument, NULL, OPT_GARBAGE_BYTES },
	{ "fault-count", required_argument, NULL, OPT_FAULT_COUNT },
	{ "fault-all", no_argument, NULL, OPT_FAULT_ALL },
	{ "heartbeat", required_argument, NULL, OPT_HEARTBEAT },
	{ "heartbeat-interval-ms", required_argument, NULL, OPT_HB_INTERVAL },
	{ "region", required_argument, NULL, OPT_REGION },
	{ "registration-key", required_argument, NULL, OPT_REG_KEY },
	{ "advertise", required_argument, NULL, OPT_ADVERTISE },
	{ "cpu", required_argument, NULL, OPT_CPU },
	{ "memory", required_argument, NULL, OPT_MEMORY },
	{ "max-sessions", required_argument, NULL, OPT_MAX_SESSIONS },
	{ "tls-cert", required_argument, NULL, OPT_TLS_CERT },
	{ "tls-key", required_argument, NULL, OPT_TLS_KEY },
	{ "quiet", no_argument, NULL, OPT_QUIET },
	{ "verbose", no_argument, NULL, OPT_VERBOSE },
	{ "help", no_argument, NULL, OPT_HELP },
	{ NULL, 0, NULL, 0 },
};

static void mock_parse_args(int argc, char **argv, const char **public_url)
{
	int opt;

	mock_cfg.bind = "127.0.0.1";
	mock_cfg.fail_status = 500;
	mock_cfg.fault_count = -1;
	mock_cfg.hb_interval_ms = 10000;
	mock_cfg.hb_enabled = 1;
	mock_cfg.max_sessions = -1;
	while ((opt = getopt_long(argc, argv, "", mock_options, NULL)) != -1) {
		switch (opt) {
		case OPT_PORT:
			mock_cfg.port = (int)mock_arg_long("port", optarg, 0, 65535);
			break;
		case OPT_BIND:
			mock_cfg.bind = optarg;
			break;
		case OPT_KEY:
			mock_cfg.key_b64 = optarg;
			if (mock_b64_key(optarg, mock_cfg.key, sizeof(mock_cfg.key),
					 &mock_cfg.key_len) < 0)
				fatal("--key is not valid base64");
			break;
		case OPT_PUBLIC_URL:
			*public_url = optarg;
			break;
		case OPT_PROXY:
			mock_cfg.proxy = 1;
			break;
		case OPT_SESSIONS:
			mock_cfg.sessions =
				(uint64_t)mock_arg_long("sessions", optarg, 0, LONG_MAX);
			break;
		case OPT_FAIL_STATUS:
			mock_cfg.fail_status = (int)mock_arg_long("fail-status", optarg, 200, 599);
			mock_cfg.mode = MOCK_STATUS;
			break;
		case OPT_DELAY_MS:
			mock_cfg.delay_ms = (unsigned)mock_arg_long("delay-ms", optarg, 0, 3600000);
			mock_cfg.mode = MOCK_DELAY;
			break;
		case OPT_HANG:
			mock_cfg.mode = MOCK_HANG;
			break;
		case OPT_RESET:
			mock_cfg.mode = MOCK_RESET;
			break;
		case OPT_GARBAGE:
			mock_cfg.mode = MOCK_GARBAGE;
			break;
		case OPT_GARBAGE_BYTES:
			mock_cfg.mode = MOCK_GARBAGE_BYTES;
			break;
		case OPT_FAULT_COUNT:
			mock_cfg.fault_count = mock_arg_long("fault-count", optarg, 1, LONG_MAX);
			break;
		case OPT_FAULT_ALL:
			mock_cfg.fault_all = 1;
			break;
		case OPT_HEARTBEAT:
			mock_cfg.hb_url = optarg;
			break;
		case OPT_HB_INTERVAL:
			mock_cfg.hb_interval_ms = (unsigned)mock_arg_long(
				"heartbeat-interval-ms", optarg, 1, 86400000);
			break;
		case OPT_REGION:
			mock_cfg.region = optarg;
			break;
		case OPT_REG_KEY:
			if (mock_b64_key(optarg, mock_cfg.reg_key, sizeof(mock_cfg.reg_key),
					 &mock_cfg.reg_key_len) < 0)
				fatal("--registration-key is not valid base64");
			break;
		case OPT_ADVERTISE:
			snprintf(mock_cfg.advertise, sizeof(mock_cfg.advertise), "%s", optarg);
			break;
		case OPT_CPU:
			mock_cfg.cpu = mock_arg_double("cpu", optarg);
			break;
		case OPT_MEMORY:
			mock_cfg.memory = mock_arg_double("memory", optarg);
			break;
		case OPT_MAX_SESSIONS:
			mock_cfg.max_sessions = mock_arg_long("max-sessions", optarg, 0, LONG_MAX);
			break;
		case OPT_TLS_CERT:
			mock_cfg.tls_cert = optarg;
			break;
		case OPT_TLS_KEY:
			mock_cfg.tls_key = optarg;
			break;
		case OPT_QUIET:
			mock_cfg.quiet = 1;
			break;
		case OPT_VERBOSE:
			mock_cfg.verbose = 1;
			break;
		case OPT_HELP:
			mock_usage(stdout);
			exit(0);
		default:
			mock_usage(stderr);
			exit(2);
		}
	}
	if (optind < argc) {
		mock_usage(stderr);
		exit(2);
	}
	if (mock_cfg.key_b64 == NULL)
		fatal("--key BASE64 is required");
	if ((mock_cfg.tls_cert == NULL) != (mock_cfg.tls_key == NULL))
		fatal("--tls-cert and --tls-key go together");
}

/* --tls-cert/--tls-key: a server context, whatever the certificate says (expired, for
 * another host, self-signed: tests want the gateway to see exactly that). */
static void mock_tls_setup(void)
{
	if (mock_cfg.tls_cert == NULL)
		return;
	mock_tls_ctx = SSL_CTX_new(TLS_server_method());
	if (mock_tls_ctx == NULL ||
	    SSL_CTX_use_certificate_chain_file(mock_tls_ctx, mock_cfg.tls_cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(mock_tls_ctx, mock_cfg.tls_key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(mock_tls_ctx) != 1)
		fatal("--tls-cert %s / --tls-key %s: %s", mock_cfg.tls_cert, mock_cfg.tls_key,
		      ERR_reason_error_string(ERR_peek_last_error()) ?
		      ERR_reason_error_string(ERR_peek_last_error()) : "cannot be loaded");
	SSL_CTX_set_min_proto_version(mock_tls_ctx, TLS1_2_VERSION);
}

/* The url /v1/channel returns: --public-url, else the listening address and port. */
static void mock_setup_public_url(const char *public_url)
{
	char path[512];

	if (public_url) {
		if (mock_split_url(public_url, mock_cfg.scheme, sizeof(mock_cfg.scheme),
				   mock_cfg.host, sizeof(mock_cfg.host), path, sizeof(path)) < 0)
			fatal("--public-url wants scheme://host[:port]: %s", public_url);
	} else {
		const char *h = mock_cfg.bind;

		if (strcmp(h, "0.0.0.0") == 0 || strcmp(h, "::") == 0)
			h = "127.0.0.1";
		snprintf(mock_cfg.scheme, sizeof(mock_cfg.scheme), mock_tls_ctx ? "https" : "http");
		snprintf(mock_cfg.host, sizeof(mock_cfg.host), strchr(h, ':') ? "[%s]:%d" : "%s:%d",
			 h, mock_cfg.port);
	}
	if (mock_cfg.advertise[0] == '\0')
		snprintf(mock_cfg.advertise, sizeof(mock_cfg.advertise), "%s://%s",
			 mock_cfg.scheme, mock_cfg.host);
}

static void mock_listen(void)
{
	struct sockaddr_storage ss;
	int sl = (int)sizeof(ss), err;

	if (uv_ip4_addr(mock_cfg.bind, mock_cfg.port, (struct sockaddr_in *)&ss) != 0 &&
	    uv_ip6_addr(mock_cfg.bind, mock_cfg.port, (struct sockaddr_in6 *)&ss) != 0)
		fatal("--bind wants an IPv4 or IPv6 address: %s", mock_cfg.bind);
	uv_tcp_init(mock_loop, &mock_server);
	err = uv_tcp_bind(&mock_server, (const struct sockaddr *)&ss, 0);
	if (err == 0)
		err = uv_listen((uv_stream_t *)&mock_server, 1024, mock_on_connection);
	if (err == 0)
		err = uv_tcp_getsockname(&mock_server, (struct sockaddr *)&ss, &sl);
	if (err != 0)
		fatal("cannot listen on %s:%d: %s", mock_cfg.bind, mock_cfg.port, uv_strerror(err));
	mock_cfg.port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port :
			      ((struct sockaddr_in6 *)&ss)->sin6_port);
}

static void mock_settings_init(void)
{
	llhttp_settings_init(&mock_settings);
	mock_settings.on_message_begin = mock_on_message_begin;
	mock_settings.on_url = mock_on_url;
	mock_settings.on_header_field = mock_on_header_field;
	mock_settings.on_header_field_complete = mock_on_header_field_complete;
	mock_settings.on_header_value = mock_on_header_value;
	mock_settings.on_header_value_complete = mock_on_header_value_complete;
	mock_settings.on_headers_complete = mock_on_headers_complete;
	mock_settings.on_body = mock_on_body;
	mock_settings.on_message_complete = mock_on_message_complete;
	llhttp_settings_init(&mock_hb_settings);
	mock_hb_settings.on_message_complete = mock_hb_on_complete;
}

int main(int argc, char **argv)
{
	const char *public_url = NULL;

	log_set_role("mock");
	mock_parse_args(argc, argv, &public_url);
	if (mock_cfg.quiet)
		log_set_level(LOG_LEVEL_ERROR);
	else if (mock_cfg.verbose)
		log_set_level(LOG_LEVEL_DEBUG);
	/* A write to a peer that reset must fail with EPIPE, not kill the mock. */
	signal(SIGPIPE, SIG_IGN);
	mock_mac = mock_mac_new(mock_cfg.key, mock_cfg.key_len);
	mock_tok = json_tokener_new();
	if (mock_mac == NULL || mock_tok == NULL)
		fatal("cannot set up HMAC or JSON");
	json_tokener_set_flags(mock_tok, JSON_TOKENER_STRICT);
	mock_settings_init();
	mock_tls_setup();
	mock_loop = uv_default_loop();
	mock_listen();
	mock_setup_public_url(public_url);
	if (mock_cfg.hb_url)
		mock_setup_heartbeat();
	uv_signal_init(mock_loop, &mock_sigterm);
	uv_signal_init(mock_loop, &mock_sigint);
	uv_signal_start(&mock_sigterm, mock_on_signal, SIGTERM);
	uv_signal_start(&mock_sigint, mock_on_signal, SIGINT);
	uv_timer_init(mock_loop, &mock_hb_timer);
	if (mock_cfg.hb_url) {
		/* Register at once, then every interval (as an SFU-side sender does on start). */
		uv_timer_start(&mock_hb_timer, mock_hb_tick, 0, mock_cfg.hb_interval_ms);
		mock_hb_timer_active = 1;
	}
	log_info("listening address=%s port=%d url=%s://%s proxy=%d mode=%s", mock_cfg.bind,
		 mock_cfg.port, mock_cfg.scheme, mock_cfg.host, mock_cfg.proxy,
		 mock_mode_names[mock_cfg.mode]);
	printf("PORT %d\n", mock_cfg.port);
	fflush(stdout);
	uv_run(mock_loop, UV_RUN_DEFAULT);
	if (uv_loop_close(mock_loop) != 0)
		log_warn("loop closed with handles still open");
	mock_chans_clear();
	mock_buf_free(&mock_scratch);
	mock_buf_free(&mock_last.token);
	mock_buf_free(&mock_last.remote);
	mock_buf_free(&mock_last.iss);
	json_tokener_free(mock_tok);
	EVP_MAC_CTX_free(mock_mac);
	EVP_MAC_CTX_free(mock_reg_mac);
	SSL_CTX_free(mock_tls_ctx);
	log_info("stopped");
	return 0;
}
