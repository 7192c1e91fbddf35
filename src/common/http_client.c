/* HTTP/1.1 client to the SFUs on libuv + llhttp: keep-alive pool per SFU, connect and response timeouts. */
#include "http_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <llhttp.h>
#include <netdb.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "tls.h"

/*
 * One pool per SFU address holds its idle keep-alive connections. A request
 * takes an idle connection or opens a new one; when the response ends and
 * both sides allow keep-alive, the connection goes back to the pool. Node's
 * http server (odoo/sfu) closes idle sockets after 5 s, so ours give up
 * after HTTP_CLIENT_IDLE_MS, and a request on a connection the server closed
 * in the same instant is sent again once on a fresh one.
 */
#define HTTP_CLIENT_IDLE_MS 4000
#define HTTP_CLIENT_MAX_IDLE 512 /* per pool: below the in-flight peak, connections would churn */
#define HTTP_CLIENT_DNS_TTL_MS 30000
#define HTTP_CLIENT_BUCKETS 256

/*
 * Our own stalls are not the SFU's fault. When this process is stopped
 * (SIGSTOP, a frozen VM, swapping) or its loop blocked, the SFU may well have
 * answered in time: its answer waits unread in the socket, or our request never
 * left because the connect callback did not run. On resume libuv runs expired
 * timers before it reads sockets (and a stopped epoll_wait() returns EINTR
 * without events), so every attempt in flight would time out and count
 * against a healthy SFU. So an attempt's timer that fires HTTP_CLIENT_STALL_MS
 * or more after it was due means the loop was not running when the time ran
 * out: the attempt gets back the part of its time that the stall took (from
 * when the loop last went to wait, or the attempt began if later, to the old
 * due time; at least HTTP_CLIENT_STALL_GRACE_MS, enough to read what is
 * already in the socket), and only a timeout with the loop running is the
 * SFU's. After HTTP_CLIENT_STALL_MAX such extensions the attempt ends with
 * res->stalled set, which callers must not hold against the SFU.
 */
#define HTTP_CLIENT_STALL_MS 250
#define HTTP_CLIENT_STALL_GRACE_MS 100
#define HTTP_CLIENT_STALL_MAX 3

struct pool;

/*
 * https pools speak TLS through memory BIOs (tls.h): after the TCP connect
 * the handshake runs (UC_HANDSHAKE, still within the connect bound), then the
 * request is encrypted and the answer decrypted before llhttp sees it. Each
 * pool keeps the last session the SFU gave (a TLS 1.3 ticket or a TLS 1.2
 * session), so a new connection resumes instead of a full handshake, and an
 * idle connection is taken before any handshake at all: a warm request costs
 * none. Verification is per client (CA options) and per pool (an SFU may be
 * explicitly unverified); a pool is one address with one such choice.
 */
enum uconn_state { UC_RESOLVING, UC_CONNECTING, UC_HANDSHAKE, UC_BUSY, UC_IDLE, UC_CLOSING };

struct uconn {
	uv_tcp_t tcp;
	uv_timer_t timer;
	uv_connect_t creq;
	uv_write_t wreq;
	uv_getaddrinfo_t gai;
	llhttp_t parser;
	struct pool *pool;
	struct http_client *cl;
	struct uconn *prev, *next; /* in pool->idle while idle */
	enum uconn_state state;
	int handles_open;
	bool tcp_inited;
	bool tls_on; /* tls below is set up (https pool, connected) */
	struct tls_conn tls;
	bool tls_verdict; /* this attempt's handshake concluded (res->tls_handshake) */
	bool reading; /* stays on from the first send to the close: an idle
		       * connection must see the server close it, and toggling
		       * would cost epoll_ctl() calls per request */

	/* The request in flight (NULL cb when idle). */
	http_client_cb cb;
	void *ctx;
	int (*sink)(void *ctx, const char *at, size_t len); /* req->on_body */
	bool sink_failed; /* the sink refused the body (or a header) */
	/* req->on_header, and the header being received (NULL hsink: not kept) */
	int (*hsink)(void *ctx, const char *name, size_t name_len, const char *value,
		     size_t value_len);
	char hname[HTTP_CLIENT_HEADER_NAME_MAX];
	char hvalue[HTTP_CLIENT_HEADER_VALUE_MAX];
	size_t hname_len, hvalue_len;
	bool htoo_long; /* this header does not fit: skipped */
	char *wbuf;
	size_t wlen, wcap;
	uint64_t deadline; /* loop time (ms) by which the whole attempt must end */
	uint64_t started; /* loop time the attempt began (or was sent again on a fresh connection) */
	uint64_t timer_due; /* loop time the attempt's timer is set for */
	unsigned stalls; /* times the timer fired late because the loop had stalled */
	uint32_t connect_timeout_ms;
	bool reused; /* this attempt runs on a connection taken from the pool */
	bool got_bytes; /* some response bytes arrived */
	bool complete;
	bool keep_alive;
	int status;
	char *body;
	size_t body_len, body_cap;
	int pending_error; /* error to deliver from the timer (never from the caller's stack) */
};

struct pool {
	struct pool *next; /* hash chain */
	char address[256];
	bool tls; /* https */
	bool insecure; /* https without verification (the caller's explicit choice) */
	SSL_SESSION *session; /* the latest resumable session the SFU gave, or NULL */
	char host[256];
	char authority[280]; /* Host header: host[:port] as in the address */
	uint16_t port;
	struct sockaddr_storage addr;
	bool resolved;
	uint64_t resolved_at;
	struct uconn *idle;
	unsigned n_idle;
};

struct http_client {
	uv_loop_t *loop;
	uv_prepare_t prepare; /* notes wait_start before every poll */
	uint64_t wait_start; /* loop time when the loop last went to wait for I/O */
	struct pool *buckets[HTTP_CLIENT_BUCKETS];
	size_t n_open;
	bool freeing;
	/* TLS: the options, and the contexts built from them (verified, and
	 * unverified for pools that asked); NULL until first needed. */
	char ca_file[TLS_PATH_MAX], ca_path[TLS_PATH_MAX];
	char cert_file[TLS_PATH_MAX], key_file[TLS_PATH_MAX];
	SSL_CTX *ctx_verify, *ctx_insecure;
	void (*on_tls)(void *ctx, enum http_client_tls_event ev);
	void *on_tls_ctx;
};

static llhttp_settings_t uc_settings;
static bool uc_settings_ready;

static void uc_start(struct uconn *u);
static void uc_finish(struct uconn *u, int error);
static void uc_close(struct uconn *u);

static uint32_t pool_hash(const char *s)
{
	uint32_t h = 2166136261u;

	while (*s)
		h = (h ^ (uint8_t)*s++) * 16777619u;
	return h;
}

/* Splits "http(s)://host[:port]" into its parts. */
static int pool_parse(struct pool *p, const char *address)
{
	const char *h, *end, *colon;
	size_t hl;
	unsigned long port = 80;

	if (strncmp(address, "http://", 7) == 0) {
		h = address + 7;
	} else if (strncmp(address, "https://", 8) == 0) {
		h = address + 8;
		p->tls = true;
		port = 443;
	} else {
		return -EINVAL;
	}
	end = h + strlen(h);
	if (*h == '[') {
		const char *rb = strchr(h, ']');

		if (rb == NULL)
			return -EINVAL;
		hl = (size_t)(rb - h - 1);
		if (hl == 0 || hl >= sizeof(p->host))
			return -EINVAL;
		memcpy(p->host, h + 1, hl);
		colon = rb[1] == ':' ? rb + 1 : NULL;
	} else {
		colon = strrchr(h, ':');
		hl = colon ? (size_t)(colon - h) : (size_t)(end - h);
		if (hl == 0 || hl >= sizeof(p->host))
			return -EINVAL;
		memcpy(p->host, h, hl);
	}
	p->host[hl] = '\0';
	if (colon != NULL) {
		char *e;

		port = strtoul(colon + 1, &e, 10);
		if (*e != '\0' || port == 0 || port > 65535)
			return -EINVAL;
	}
	p->port = (uint16_t)port;
	snprintf(p->address, sizeof(p->address), "%s", address);
	snprintf(p->authority, sizeof(p->authority), "%s", h);
	/* Numeric hosts need no resolver round trip. */
	memset(&p->addr, 0, sizeof(p->addr));
	if (inet_pton(AF_INET, p->host, &((struct sockaddr_in *)&p->addr)->sin_addr) == 1) {
		((struct sockaddr_in *)&p->addr)->sin_family = AF_INET;
		((struct sockaddr_in *)&p->addr)->sin_port = htons(p->port);
		p->resolved = true;
		p->resolved_at = UINT64_MAX / 2;
	} else if (inet_pton(AF_INET6, p->host, &((struct sockaddr_in6 *)&p->addr)->sin6_addr) ==
		   1) {
		((struct sockaddr_in6 *)&p->addr)->sin6_family = AF_INET6;
		((struct sockaddr_in6 *)&p->addr)->sin6_port = htons(p->port);
		p->resolved = true;
		p->resolved_at = UINT64_MAX / 2;
	}
	return 0;
}

static struct pool *pool_get(struct http_client *cl, const char *address, bool insecure)
{
	uint32_t b = pool_hash(address) % HTTP_CLIENT_BUCKETS;
	struct pool *p;

	for (p = cl->buckets[b]; p != NULL; p = p->next)
		if (p->insecure == insecure && strcmp(p->address, address) == 0)
			return p;
	if (strlen(address) >= sizeof(p->address))
		return NULL;
	p = calloc(1, sizeof(*p));
	if (p == NULL)
		return NULL;
	if (pool_parse(p, address) != 0) {
		free(p);
		return NULL;
	}
	p->insecure = insecure;
	p->next = cl->buckets[b];
	cl->buckets[b] = p;
	return p;
}

static void pool_unlink_idle(struct uconn *u)
{
	struct pool *p = u->pool;

	if (u->prev != NULL)
		u->prev->next = u->next;
	else if (p->idle == u)
		p->idle = u->next;
	if (u->next != NULL)
		u->next->prev = u->prev;
	u->prev = u->next = NULL;
	p->n_idle--;
}

static int on_status_code(llhttp_t *p)
{
	(void)p;
	return 0;
}

/* Header pieces may be split across reads: gathered, then given whole. */
static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
	struct uconn *u = p->data;

	if (u->hsink == NULL)
		return 0;
	if (len > sizeof(u->hname) - u->hname_len) {
		u->htoo_long = true;
		return 0;
	}
	memcpy(u->hname + u->hname_len, at, len);
	u->hname_len += len;
	return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
	struct uconn *u = p->data;

	if (u->hsink == NULL)
		return 0;
	if (len > sizeof(u->hvalue) - u->hvalue_len) {
		u->htoo_long = true;
		return 0;
	}
	memcpy(u->hvalue + u->hvalue_len, at, len);
	u->hvalue_len += len;
	return 0;
}

static int on_header_value_complete(llhttp_t *p)
{
	struct uconn *u = p->data;
	int rc = 0;

	if (u->hsink == NULL)
		return 0;
	if (!u->htoo_long && u->hsink(u->ctx, u->hname, u->hname_len, u->hvalue,
				      u->hvalue_len) != 0) {
		u->sink_failed = true;
		rc = -1;
	}
	u->hname_len = u->hvalue_len = 0;
	u->htoo_long = false;
	return rc;
}

static int on_headers_complete(llhttp_t *p)
{
	struct uconn *u = p->data;

	/* 204/304 and 1xx have no body whatever Content-Length says (llhttp waits
	 * for one otherwise). */
	if (p->status_code == 204 || p->status_code == 304 || p->status_code < 200)
		return 1;
	(void)u;
	return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
	struct uconn *u = p->data;

	if (u->sink != NULL && p->status_code >= 200 && p->status_code < 300) {
		if (u->sink(u->ctx, at, len) == 0)
			return 0;
		u->sink_failed = true;
		return -1;
	}
	if (len > HTTP_CLIENT_BODY_MAX - u->body_len)
		return -1;
	if (u->body_cap < u->body_len + len + 1) {
		size_t cap = u->body_cap ? u->body_cap : 512;
		char *nb;

		while (cap < u->body_len + len + 1)
			cap *= 2;
		nb = realloc(u->body, cap);
		if (nb == NULL)
			return -1;
		u->body = nb;
		u->body_cap = cap;
	}
	memcpy(u->body + u->body_len, at, len);
	u->body_len += len;
	return 0;
}

static int on_message_complete(llhttp_t *p)
{
	struct uconn *u = p->data;

	/* A 100 Continue is a message of its own: the real answer follows. */
	if (p->status_code < 200) {
		u->body_len = 0;
		return 0;
	}
	u->status = p->status_code;
	u->keep_alive = llhttp_should_keep_alive(p) != 0;
	u->complete = true;
	return HPE_PAUSED;
}

static void uc_settings_init(void)
{
	if (uc_settings_ready)
		return;
	llhttp_settings_init(&uc_settings);
	uc_settings.on_status_complete = on_status_code;
	uc_settings.on_header_field = on_header_field;
	uc_settings.on_header_value = on_header_value;
	uc_settings.on_header_value_complete = on_header_value_complete;
	uc_settings.on_headers_complete = on_headers_complete;
	uc_settings.on_body = on_body;
	uc_settings.on_message_complete = on_message_complete;
	uc_settings_ready = true;
}

/* Drops one reference (a handle or the resolver request); frees at zero. */
static void uc_unref(struct uconn *u)
{
	if (--u->handles_open > 0)
		return;
	if (u->tls_on)
		tls_conn_free(&u->tls);
	free(u->wbuf);
	free(u->body);
	free(u);
}

static void uc_on_closed(uv_handle_t *h)
{
	uc_unref(h->data);
}

static void uc_close(struct uconn *u)
{
	if (u->state == UC_CLOSING)
		return;
	if (u->state == UC_IDLE)
		pool_unlink_idle(u);
	u->state = UC_CLOSING;
	u->cl->n_open--;
	uv_timer_stop(&u->timer);
	uv_close((uv_handle_t *)&u->timer, uc_on_closed);
	if (u->tcp_inited)
		uv_close((uv_handle_t *)&u->tcp, uc_on_closed);
}

static void uc_on_idle_timeout(uv_timer_t *t)
{
	uc_close(t->data);
}

static void uc_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	static char rbuf[65536];

	(void)h;
	(void)suggested;
	*buf = uv_buf_init(rbuf, sizeof(rbuf));
}

/* Decrypted bytes: one TLS record at most per tls_conn_read. */
static char uc_plain[16384];

/* Feeds response bytes to the parser: 1 when the response is complete, 0
 * when more is needed, else the error to end the attempt with. */
static int uc_parse(struct uconn *u, const char *data, size_t n)
{
	llhttp_errno_t rc;

	u->got_bytes = true;
	rc = llhttp_execute(&u->parser, data, n);
	if (rc == HPE_PAUSED && u->complete) {
		/* Bytes after the response would be a protocol error from an SFU
		 * answering one request at a time: do not reuse such a connection. */
		if (llhttp_get_error_pos(&u->parser) != data + n)
			u->keep_alive = false;
		return 1;
	}
	if (rc != HPE_OK)
		return rc == HPE_USER && !u->sink_failed ? UV_EMSGSIZE : UV_EPROTO;
	return 0;
}

/* The connection ended (EOF, or the peer's close_notify) while an answer was awaited. */
static void uc_on_end(struct uconn *u)
{
	/* A body delimited by the end of the connection ends here. */
	if (u->got_bytes && llhttp_message_needs_eof(&u->parser) &&
	    llhttp_finish(&u->parser) == HPE_OK && u->complete) {
		u->keep_alive = false;
		uc_finish(u, 0);
		return;
	}
	uc_finish(u, UV_EOF);
}

static void uc_send(struct uconn *u);
static void uc_on_tls_written(void *arg, int status);

/* Sends what TLS has to say (handshake messages, alerts); false when the
 * attempt ended on a write error. */
static bool uc_tls_flush(struct uconn *u)
{
	int rc = tls_conn_flush(&u->tls, (uv_stream_t *)&u->tcp, uc_on_tls_written, u);

	if (rc >= 0)
		return true;
	uc_finish(u, rc);
	return false;
}

/* The handshake ended: counted, and its verdict kept for the result. */
static void uc_tls_concluded(struct uconn *u, bool ok)
{
	struct http_client *cl = u->cl;
	enum http_client_tls_event ev;

	u->tls_verdict = true;
	if (!ok) {
		ev = HTTP_CLIENT_TLS_FAILED;
		/* The session may be what the SFU refused: start afresh next time. */
		if (u->pool->session != NULL) {
			SSL_SESSION_free(u->pool->session);
			u->pool->session = NULL;
		}
	} else if (tls_conn_resumed(&u->tls)) {
		ev = HTTP_CLIENT_TLS_RESUMED;
	} else {
		ev = HTTP_CLIENT_TLS_FULL;
	}
	if (cl->on_tls != NULL)
		cl->on_tls(cl->on_tls_ctx, ev);
}

static void uc_on_handshake_read(struct uconn *u, ssize_t n, const char *data)
{
	int r;

	if (n < 0) {
		if (n == UV_EOF) {
			/* Closed in the middle: a TLS matter too (a server that refuses
			 * us without an alert, or no TLS server at all). */
			u->tls.failure = TLS_FAILURE_EOF;
			uc_tls_concluded(u, false);
			uc_finish(u, UV_EPROTO);
			return;
		}
		uc_finish(u, (int)n);
		return;
	}
	if (tls_conn_feed(&u->tls, data, (size_t)n) != 0) {
		uc_finish(u, UV_ENOMEM);
		return;
	}
	r = tls_conn_handshake(&u->tls);
	if (r == 1) {
		uc_tls_concluded(u, true);
		/* The client's last handshake message leaves with the request. */
		uc_send(u);
		return;
	}
	if (r < 0) {
		uc_tls_concluded(u, false);
		/* An alert for the server, when OpenSSL wrote one. */
		(void)tls_conn_flush(&u->tls, (uv_stream_t *)&u->tcp, NULL, NULL);
		uc_finish(u, UV_EPROTO);
		return;
	}
	uc_tls_flush(u);
}

/* Ciphertext of an answer: decrypted record by record into the parser. */
static void uc_on_tls_read(struct uconn *u, const char *data, size_t n)
{
	if (tls_conn_feed(&u->tls, data, n) != 0) {
		uc_finish(u, UV_ENOMEM);
		return;
	}
	for (;;) {
		int r = tls_conn_read(&u->tls, uc_plain, sizeof(uc_plain));

		if (r == 0)
			break;
		if (r == TLS_CLOSED) {
			uc_on_end(u);
			return;
		}
		if (r < 0) {
			uc_finish(u, UV_EPROTO);
			return;
		}
		r = uc_parse(u, uc_plain, (size_t)r);
		if (r == 1) {
			/* Complete: a record after it is as wrong as trailing bytes. It
			 * is looked for now, since the callback may reuse the connection. */
			if (tls_conn_more(&u->tls) &&
			    tls_conn_read(&u->tls, uc_plain, sizeof(uc_plain)) != 0)
				u->keep_alive = false;
			uc_finish(u, 0);
			return;
		}
		if (r != 0) {
			uc_finish(u, r);
			return;
		}
		if (!tls_conn_more(&u->tls))
			break;
	}
	uc_tls_flush(u);
}

/* An idle TLS connection may still receive session tickets; anything else
 * (data, an alert, the end) closes it. */
static void uc_on_idle_tls_read(struct uconn *u, const char *data, size_t n)
{
	if (tls_conn_feed(&u->tls, data, n) != 0 ||
	    tls_conn_read(&u->tls, uc_plain, sizeof(uc_plain)) != 0)
		uc_close(u);
}

static void uc_on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct uconn *u = s->data;
	int r;

	if (u->state == UC_IDLE) {
		/* The server closed (or sent junk on) an idle connection. */
		if (u->tls_on && n > 0)
			uc_on_idle_tls_read(u, buf->base, (size_t)n);
		else if (n != 0)
			uc_close(u);
		return;
	}
	if (u->state == UC_HANDSHAKE) {
		if (n != 0)
			uc_on_handshake_read(u, n, buf->base);
		return;
	}
	if (u->state != UC_BUSY)
		return;
	if (n == UV_EOF) {
		uc_on_end(u);
		return;
	}
	if (n < 0) {
		uc_finish(u, (int)n);
		return;
	}
	if (n == 0)
		return;
	if (u->tls_on) {
		uc_on_tls_read(u, buf->base, (size_t)n);
		return;
	}
	r = uc_parse(u, buf->base, (size_t)n);
	if (r != 0)
		uc_finish(u, r == 1 ? 0 : r);
}

static void uc_on_attempt_timeout(uv_timer_t *t);

/* (Re)arms the attempt's timer for delay ms from now. */
static void uc_arm(struct uconn *u, uint64_t delay)
{
	u->timer_due = uv_now(u->cl->loop) + delay;
	uv_timer_start(&u->timer, uc_on_attempt_timeout, delay, 0);
}

static void uc_on_attempt_timeout(uv_timer_t *t)
{
	struct uconn *u = t->data;
	uint64_t now = uv_now(u->cl->loop);

	if (u->pending_error != 0) {
		int e = u->pending_error;

		u->pending_error = 0;
		uc_finish(u, e);
		return;
	}
	if (now >= u->timer_due + HTTP_CLIENT_STALL_MS) {
		/* The loop stalled across the due time (see the top of this file). */
		uint64_t since = u->cl->wait_start > u->started ? u->cl->wait_start : u->started;
		uint64_t left = u->timer_due > since ? u->timer_due - since : 0;

		if (left < HTTP_CLIENT_STALL_GRACE_MS)
			left = HTTP_CLIENT_STALL_GRACE_MS;
		if (u->stalls++ < HTTP_CLIENT_STALL_MAX) {
			u->deadline += now + left - u->timer_due;
			uc_arm(u, left);
			return;
		}
	}
	uc_finish(u, UV_ETIMEDOUT);
}

/* Delivers the result; recycles or closes the connection. */
static void uc_finish(struct uconn *u, int error)
{
	struct http_client_result res;
	http_client_cb cb = u->cb;
	bool retry = error != 0 && u->reused && !u->got_bytes &&
		     (error == UV_EOF || error == UV_ECONNRESET || error == UV_EPIPE);

	if (cb == NULL)
		return;
	if (retry) {
		/* The server closed the pooled connection before it saw our request:
		 * send it again on a fresh connection, within the same deadline. */
		struct uconn *fresh = calloc(1, sizeof(*fresh));

		if (fresh != NULL) {
			fresh->cl = u->cl;
			fresh->pool = u->pool;
			fresh->cb = u->cb;
			fresh->ctx = u->ctx;
			fresh->sink = u->sink;
			fresh->hsink = u->hsink;
			fresh->wbuf = u->wbuf;
			fresh->wlen = u->wlen;
			fresh->wcap = u->wcap;
			fresh->deadline = u->deadline;
			fresh->started = uv_now(u->cl->loop);
			fresh->stalls = u->stalls;
			fresh->connect_timeout_ms = u->connect_timeout_ms;
			u->wbuf = NULL;
			u->cb = NULL;
			uc_close(u);
			uc_start(fresh);
			return;
		}
	}
	u->cb = NULL;
	memset(&res, 0, sizeof(res));
	res.error = error;
	res.connect_failed = error != 0 && (u->state == UC_CONNECTING || u->state == UC_RESOLVING ||
					    u->state == UC_HANDSHAKE);
	res.stalled = error == UV_ETIMEDOUT && u->stalls > HTTP_CLIENT_STALL_MAX;
	res.tls_handshake = u->tls_verdict;
	res.tls_failure = u->tls_verdict ? u->tls.failure : 0;
	u->tls_verdict = false;
	if (error == 0) {
		res.status = u->status;
		if (u->body != NULL)
			u->body[u->body_len] = '\0';
		res.body = u->body != NULL ? u->body : "";
		res.body_len = u->body_len;
	}
	cb(&res, u->ctx);
	if (error == 0 && u->keep_alive && !u->cl->freeing &&
	    u->pool->n_idle < HTTP_CLIENT_MAX_IDLE && u->state == UC_BUSY) {
		u->state = UC_IDLE;
		u->body_len = 0;
		u->complete = false;
		u->got_bytes = false;
		u->reused = false;
		u->next = u->pool->idle;
		u->prev = NULL;
		if (u->pool->idle != NULL)
			u->pool->idle->prev = u;
		u->pool->idle = u;
		u->pool->n_idle++;
		uv_timer_start(&u->timer, uc_on_idle_timeout, HTTP_CLIENT_IDLE_MS, 0);
		return;
	}
	uc_close(u);
}

static void uc_on_write(uv_write_t *w, int status)
{
	struct uconn *u = w->data;

	if (status != 0 && u->state == UC_BUSY)
		uc_finish(u, status);
}

static void uc_on_tls_written(void *arg, int status)
{
	struct uconn *u = arg;

	if (status != 0 && (u->state == UC_BUSY || u->state == UC_HANDSHAKE))
		uc_finish(u, status);
}

/* The request, encrypted; its ciphertext leaves with whatever the handshake
 * still had to send. 0 or an error. */
static int uc_send_tls(struct uconn *u)
{
	int rc = tls_conn_write(&u->tls, u->wbuf, u->wlen);

	if (rc != 0)
		return UV_EPROTO;
	rc = tls_conn_flush(&u->tls, (uv_stream_t *)&u->tcp, uc_on_tls_written, u);
	return rc < 0 ? rc : 0;
}

/* The connection is up: send the request and wait for the answer. */
static void uc_send(struct uconn *u)
{
	uv_buf_t b = uv_buf_init(u->wbuf, (unsigned)u->wlen);
	uint64_t now = uv_now(u->cl->loop);
	int rc;

	u->state = UC_BUSY;
	llhttp_init(&u->parser, HTTP_RESPONSE, &uc_settings);
	u->parser.data = u;
	uc_arm(u, u->deadline > now ? u->deadline - now : 0);
	rc = 0;
	if (!u->reading) {
		rc = uv_read_start((uv_stream_t *)&u->tcp, uc_alloc, uc_on_read);
		u->reading = rc == 0;
	}
	if (rc == 0 && u->tls_on) {
		rc = uc_send_tls(u);
	} else if (rc == 0) {
		/* A request fits the socket buffer almost always: write it directly
		 * and queue only a remainder (uv_write would add loop work). */
		int w = uv_try_write((uv_stream_t *)&u->tcp, &b, 1);

		if (w == (int)b.len)
			return;
		if (w > 0) {
			b.base += w;
			b.len -= (unsigned)w;
		} else if (w != UV_EAGAIN) {
			rc = w;
		}
		if (rc == 0) {
			u->wreq.data = u;
			rc = uv_write(&u->wreq, (uv_stream_t *)&u->tcp, &b, 1, uc_on_write);
		}
	}
	if (rc != 0) {
		u->pending_error = rc;
		uc_arm(u, 0);
	}
}

static SSL_CTX *http_client_ctx(struct http_client *cl, bool insecure);

/* TCP is up on an https pool: the handshake starts, still within the
 * connect bound. */
static void uc_tls_start(struct uconn *u)
{
	SSL_CTX *ctx = http_client_ctx(u->cl, u->pool->insecure);
	int rc;

	if (ctx == NULL) {
		uc_finish(u, UV_EPROTO);
		return;
	}
	rc = tls_conn_client(&u->tls, ctx, u->pool->host, u, u->pool->session);
	if (rc != 0) {
		uc_finish(u, rc == -ENOMEM ? UV_ENOMEM : UV_EPROTO);
		return;
	}
	u->tls_on = true;
	u->state = UC_HANDSHAKE;
	rc = uv_read_start((uv_stream_t *)&u->tcp, uc_alloc, uc_on_read);
	u->reading = rc == 0;
	if (rc != 0) {
		uc_finish(u, rc);
		return;
	}
	rc = tls_conn_handshake(&u->tls);
	if (rc < 0) {
		uc_tls_concluded(u, false);
		uc_finish(u, UV_EPROTO);
		return;
	}
	uc_tls_flush(u);
}

static void uc_on_connect(uv_connect_t *req, int status)
{
	struct uconn *u = req->data;

	if (u->state != UC_CONNECTING)
		return; /* timed out meanwhile */
	if (status != 0) {
		uc_finish(u, status);
		return;
	}
	uv_tcp_nodelay(&u->tcp, 1);
	if (u->pool->tls)
		uc_tls_start(u);
	else
		uc_send(u);
}

static void uc_connect(struct uconn *u)
{
	int rc;

	u->state = UC_CONNECTING;
	rc = uv_tcp_init(u->cl->loop, &u->tcp);
	if (rc == 0) {
		u->tcp_inited = true;
		u->handles_open++;
		u->tcp.data = u;
		u->creq.data = u;
		rc = uv_tcp_connect(&u->creq, &u->tcp, (struct sockaddr *)&u->pool->addr,
				    uc_on_connect);
	}
	if (rc != 0) {
		u->pending_error = rc;
		uc_arm(u, 0);
	}
}

static void uc_on_resolved(uv_getaddrinfo_t *g, int status, struct addrinfo *res)
{
	struct uconn *u = g->data;
	struct pool *p = u->pool;

	if (u->state != UC_RESOLVING) {
		/* Timed out meanwhile: the conn stayed alive only for this callback. */
		uv_freeaddrinfo(res);
		uc_unref(u);
		return;
	}
	u->handles_open--;
	if (status != 0 || res == NULL) {
		uv_freeaddrinfo(res);
		uc_finish(u, status != 0 ? status : UV_EAI_NONAME);
		return;
	}
	memset(&p->addr, 0, sizeof(p->addr));
	memcpy(&p->addr, res->ai_addr, res->ai_addrlen);
	if (p->addr.ss_family == AF_INET)
		((struct sockaddr_in *)&p->addr)->sin_port = htons(p->port);
	else
		((struct sockaddr_in6 *)&p->addr)->sin6_port = htons(p->port);
	p->resolved = true;
	p->resolved_at = uv_now(u->cl->loop);
	uv_freeaddrinfo(res);
	uc_connect(u);
}

/* Starts an attempt on a new connection (resolve if needed, connect, send). */
static void uc_start(struct uconn *u)
{
	struct http_client *cl = u->cl;
	struct pool *p = u->pool;
	uint64_t now = uv_now(cl->loop);
	uint64_t ct = u->connect_timeout_ms;
	int rc;

	uv_timer_init(cl->loop, &u->timer);
	u->timer.data = u;
	u->handles_open = 1;
	cl->n_open++;
	/* Until connected, the tighter of the connect bound and the deadline. */
	if (u->deadline < now + ct)
		ct = u->deadline > now ? u->deadline - now : 0;
	uc_arm(u, ct);
	if (p->resolved && now - p->resolved_at < HTTP_CLIENT_DNS_TTL_MS) {
		uc_connect(u);
		return;
	}
	if (p->resolved_at == UINT64_MAX / 2) { /* numeric address */
		uc_connect(u);
		return;
	}
	{
		struct addrinfo hints;
		char port[8];

		memset(&hints, 0, sizeof(hints));
		hints.ai_family = AF_UNSPEC;
		hints.ai_socktype = SOCK_STREAM;
		snprintf(port, sizeof(port), "%u", p->port);
		u->state = UC_RESOLVING;
		u->gai.data = u;
		/* The getaddrinfo request keeps the conn alive until its callback. */
		u->handles_open++;
		rc = uv_getaddrinfo(cl->loop, &u->gai, uc_on_resolved, p->host, port, &hints);
		if (rc != 0) {
			u->handles_open--;
			u->pending_error = rc;
			uc_arm(u, 0);
		}
	}
}

static int uc_build(struct uconn *u, const struct pool *p, const struct http_client_req *req)
{
	size_t need = strlen(req->method) + req->target_len + strlen(p->authority) +
		      req->headers_len + req->body_len + 128;
	int n;

	if (u->wcap < need) {
		char *nb = realloc(u->wbuf, need);

		if (nb == NULL)
			return -ENOMEM;
		u->wbuf = nb;
		u->wcap = need;
	}
	n = snprintf(u->wbuf, u->wcap, "%s %.*s HTTP/1.1\r\nHost: %s\r\n", req->method,
		     (int)req->target_len, req->target, p->authority);
	if (req->headers_len > 0) {
		memcpy(u->wbuf + n, req->headers, req->headers_len);
		n += (int)req->headers_len;
	}
	if (req->body != NULL)
		n += snprintf(u->wbuf + n, u->wcap - (size_t)n, "Content-Length: %zu\r\n",
			      req->body_len);
	memcpy(u->wbuf + n, "\r\n", 2);
	n += 2;
	if (req->body_len > 0) {
		memcpy(u->wbuf + n, req->body, req->body_len);
		n += (int)req->body_len;
	}
	u->wlen = (size_t)n;
	return 0;
}

int http_client_request(struct http_client *cl, const char *address,
			const struct http_client_req *req, http_client_cb cb, void *ctx)
{
	bool https = strncmp(address, "https://", 8) == 0;
	struct pool *p = pool_get(cl, address, https && req->tls_insecure);
	struct uconn *u;
	uint64_t now = uv_now(cl->loop);

	if (p == NULL)
		return -EINVAL;
	/* Without a context (its CA file cannot be read) no https request can go out. */
	if (p->tls && http_client_ctx(cl, p->insecure) == NULL)
		return -EPROTO;
	uc_settings_init();
	if (p->idle != NULL) {
		u = p->idle;
		pool_unlink_idle(u);
		u->reused = true;
	} else {
		u = calloc(1, sizeof(*u));
		if (u == NULL)
			return -ENOMEM;
		u->cl = cl;
		u->pool = p;
	}
	u->cb = cb;
	u->ctx = ctx;
	u->sink = req->on_body;
	u->sink_failed = false;
	u->hsink = req->on_header;
	u->hname_len = u->hvalue_len = 0;
	u->htoo_long = false;
	u->deadline = now + req->timeout_ms;
	u->started = now;
	u->stalls = 0;
	u->connect_timeout_ms = req->connect_timeout_ms;
	u->status = 0;
	u->body_len = 0;
	u->complete = false;
	u->got_bytes = false;
	u->keep_alive = false;
	if (uc_build(u, p, req) != 0) {
		if (u->reused) {
			u->cb = NULL;
			uc_close(u);
		} else {
			free(u->wbuf);
			free(u);
		}
		return -ENOMEM;
	}
	if (u->reused) {
		uv_timer_stop(&u->timer);
		uc_send(u);
	} else {
		uc_start(u);
	}
	return 0;
}

/* Runs before every poll for I/O: when a stall shows, it began no earlier. */
static void http_client_on_prepare(uv_prepare_t *p)
{
	struct http_client *cl = p->data;

	cl->wait_start = uv_now(cl->loop);
}

int http_client_new(struct http_client **out, uv_loop_t *loop)
{
	struct http_client *cl = calloc(1, sizeof(*cl));
	int rc;

	if (cl == NULL)
		return -ENOMEM;
	cl->loop = loop;
	rc = uv_prepare_init(loop, &cl->prepare);
	if (rc != 0) {
		free(cl);
		return rc;
	}
	cl->prepare.data = cl;
	uv_prepare_start(&cl->prepare, http_client_on_prepare);
	/* It must not keep the loop alive on its own. */
	uv_unref((uv_handle_t *)&cl->prepare);
	uc_settings_init();
	*out = cl;
	return 0;
}

/* Closes the idle connections of every https pool and forgets their sessions:
 * what was verified under the old options is verified again. */
static void http_client_drop_tls(struct http_client *cl)
{
	for (size_t b = 0; b < HTTP_CLIENT_BUCKETS; b++)
		for (struct pool *p = cl->buckets[b]; p != NULL; p = p->next) {
			if (!p->tls)
				continue;
			while (p->idle != NULL)
				uc_close(p->idle);
			if (p->session != NULL) {
				SSL_SESSION_free(p->session);
				p->session = NULL;
			}
		}
}

/* OpenSSL hands over each session a server gives (a TLS 1.3 ticket arrives
 * after the handshake): the pool keeps a copy of the newest for its next
 * connections. A copy, because the object is the connection's own, which
 * OpenSSL goes on changing (a resumption writes its new secrets into it):
 * shared by connections at once, it resumed some of them and spoiled others
 * (tls_conn_client gives each connection its own copy in turn). */
static int http_client_on_session(SSL *ssl, SSL_SESSION *sess)
{
	struct uconn *u = SSL_get_app_data(ssl);
	SSL_SESSION *copy;

	if (u == NULL || u->state == UC_CLOSING)
		return 0;
	copy = SSL_SESSION_dup(sess);
	if (copy == NULL)
		return 0;
	if (u->pool->session != NULL)
		SSL_SESSION_free(u->pool->session);
	u->pool->session = copy;
	return 0;
}

/* Builds a context from the client's options. NULL with err set on failure. */
static SSL_CTX *http_client_ctx_build(struct http_client *cl, bool insecure, char *err,
				      size_t errlen)
{
	struct tls_client_opts o = {
		.ca_file = cl->ca_file,
		.ca_path = cl->ca_path,
		.cert_file = cl->cert_file,
		.key_file = cl->key_file,
		.verify = !insecure,
	};
	SSL_CTX *ctx = NULL;

	if (tls_client_ctx_new(&ctx, &o, err, errlen) != 0)
		return NULL;
	SSL_CTX_sess_set_new_cb(ctx, http_client_on_session);
	return ctx;
}

static SSL_CTX *http_client_ctx(struct http_client *cl, bool insecure)
{
	SSL_CTX **slot = insecure ? &cl->ctx_insecure : &cl->ctx_verify;
	char err[TLS_PATH_MAX + 128];

	if (cl->freeing)
		return NULL;

	if (*slot == NULL) {
		*slot = http_client_ctx_build(cl, insecure, err, sizeof(err));
		if (*slot == NULL)
			log_warn_limited("http_client: TLS contexts failing",
					 "http_client: https is unavailable: %s", err);
	}
	return *slot;
}

static bool http_client_opt_eq(const char *cur, const char *want)
{
	return strcmp(cur, want != NULL ? want : "") == 0;
}

int http_client_set_tls(struct http_client *cl, const struct http_client_tls *o, char *err,
			size_t errlen)
{
	const char *v[4] = { o->ca_file, o->ca_path, o->cert_file, o->key_file };
	char *dst[4] = { cl->ca_file, cl->ca_path, cl->cert_file, cl->key_file };
	bool same = true;

	for (int i = 0; i < 4; i++) {
		if (v[i] != NULL && strlen(v[i]) >= TLS_PATH_MAX) {
			snprintf(err, errlen, "%s: path too long", v[i]);
			return -ENAMETOOLONG;
		}
		same = same && http_client_opt_eq(dst[i], v[i]);
	}
	if (same)
		return 0;
	for (int i = 0; i < 4; i++)
		snprintf(dst[i], TLS_PATH_MAX, "%s", v[i] != NULL ? v[i] : "");
	/* Built again when an https request first needs them: a gateway without
	 * https SFUs never loads a CA, and the options were checked already
	 * (the configuration, the agent's flags). */
	SSL_CTX_free(cl->ctx_verify);
	SSL_CTX_free(cl->ctx_insecure);
	cl->ctx_verify = cl->ctx_insecure = NULL;
	http_client_drop_tls(cl);
	return 0;
}

void http_client_on_tls(struct http_client *cl, void (*fn)(void *ctx, enum http_client_tls_event ev),
			void *ctx)
{
	cl->on_tls = fn;
	cl->on_tls_ctx = ctx;
}

void http_client_free(struct http_client *cl)
{
	if (cl == NULL)
		return;
	cl->freeing = true;
	uv_close((uv_handle_t *)&cl->prepare, NULL);
	for (size_t b = 0; b < HTTP_CLIENT_BUCKETS; b++) {
		struct pool *p = cl->buckets[b];

		while (p != NULL) {
			struct pool *next = p->next;

			while (p->idle != NULL)
				uc_close(p->idle);
			p = next;
		}
	}
	/* Connections in flight hold their own references to the contexts. */
	SSL_CTX_free(cl->ctx_verify);
	SSL_CTX_free(cl->ctx_insecure);
	cl->ctx_verify = cl->ctx_insecure = NULL;
	/* Pools and the client stay allocated while requests may still reference
	 * them; the process exits right after, so they are left to it. */
}

const char *http_client_strerror(const struct http_client_result *res)
{
	static char buf[192];

	if (res->tls_failure != 0) {
		snprintf(buf, sizeof(buf), "TLS handshake failed: %s",
			 tls_failure_text(res->tls_failure));
		return buf;
	}
	if (res->error == UV_ETIMEDOUT)
		return res->connect_failed ? "connect timeout" : "response timeout";
	return uv_strerror(res->error);
}
