/* HTTP/1.1 server on libuv + llhttp: keep-alive, in-order pipelining, limits, timeouts. */
#include "http_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

/*
 * Life of a connection: bytes from the socket go through llhttp, which we
 * pause at the end of every request. The request is handed to the handler
 * and reading stops until its response is fully written; bytes that arrived
 * behind it (pipelining) wait in c->pending. So responses always leave in
 * request order and one connection never holds more than one request in
 * flight. Data callbacks of llhttp point into the read buffer and come in
 * pieces, so the head (target and headers) is copied into c->head as it
 * arrives, and the body into c->body.
 *
 * A client may half-close (send its FIN) right after pipelining requests and
 * still read: EOF then only marks the connection (c->eof). Every request
 * received before it is answered in turn, the last one with Connection:
 * close, and the connection closes once nothing complete is left.
 *
 * On a TLS listener the socket's bytes go through the connection's memory
 * BIOs (tls.h) first: every record that arrived is decrypted at once and the
 * plaintext takes the path above, so OpenSSL never holds data the parser has
 * not seen; a response is encrypted (head and a small body in one record) and
 * its ciphertext written like a plain response. A close_notify counts as EOF.
 */

enum hdr_state { HDR_NONE, HDR_FIELD, HDR_VALUE };

struct hdr_span {
	uint32_t name_off, name_len, value_off, value_len;
};

struct http_conn {
	uv_tcp_t tcp;
	uv_timer_t timer;
	uint64_t deadline; /* loop ms: the idle or request timeout; UINT64_MAX while busy */
	struct http_server *srv;
	struct http_conn *prev, *next;
	llhttp_t parser;
	int handles_open; /* tcp + timer: the conn is freed when both closed */

	/* The request being received or handled. */
	char head[HTTP_HEAD_MAX + 1];
	size_t head_len;
	uint32_t target_off, target_len;
	struct hdr_span hdr[HTTP_MAX_HEADERS];
	size_t n_hdr;
	enum hdr_state hdr_state;
	bool in_url;
	char *body; /* grown on demand up to HTTP_BODY_MAX + 1 */
	size_t body_len, body_cap;
	int err_status; /* 431/413 decided by a callback, else 0 */
	bool in_message; /* first byte of a request seen, not yet complete */
	struct http_request req;

	/* Pipelined bytes that arrived behind the request being handled: the
	 * pending_len of them from pending + pending_off are still to parse. The
	 * parser reads them in place and moves the offset; they are moved to the
	 * front only when more arrive, so a pipeline costs no copy per request. */
	char *pending;
	size_t pending_off, pending_len;

	bool tls_on; /* a TLS connection: tls below is set up */
	bool tls_counted; /* its handshake's outcome went to on_tls */
	struct tls_conn tls;

	bool busy; /* a request is with the handler or its response is being written */
	bool reading;
	bool eof; /* the client half-closed: answer what arrived, then close */
	bool closing;
	bool pumping;
	bool keep_alive;
	uint32_t served; /* responses sent on this connection */
	char peer[HTTP_PEER_MAX];

	char *wbuf;
	size_t wcap;
	uv_write_t wreq;
	/* A borrowed body being written (http_respond_borrowed): returned by
	 * calling body_done(body_arg) once the write is over. */
	void (*body_done)(void *arg);
	void *body_arg;
};

/* One read buffer per process: libuv calls alloc_cb and read_cb back to back
 * on the loop thread, and read_cb consumes or copies every byte. */
static char http_server_rbuf[65536];
/* Decrypted bytes, one TLS record at most at a time (same reasoning). */
static char http_server_plain[16384];

static llhttp_settings_t http_server_settings;
static int http_server_settings_ready;

static void conn_pump(struct http_conn *c);
static void conn_close(struct http_conn *c);
static void conn_start_read(struct http_conn *c);
static void conn_on_timeout(uv_timer_t *t);
static void conn_arm_timer(struct http_conn *c);

const char *http_status_text(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 411: return "Length Required";
	case 413: return "Payload Too Large";
	case 422: return "Unprocessable Entity";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	default: return "Unknown";
	}
}

/* Appends a piece of the head; false (431) when the head would grow too big. */
static bool conn_head_append(struct http_conn *c, const char *at, size_t len)
{
	if (len > HTTP_HEAD_MAX - c->head_len) {
		c->err_status = 431;
		return false;
	}
	memcpy(c->head + c->head_len, at, len);
	c->head_len += len;
	return true;
}

static bool conn_head_terminate(struct http_conn *c)
{
	return conn_head_append(c, "", 1);
}

static int on_message_begin(llhttp_t *p)
{
	struct http_conn *c = p->data;

	c->in_message = true;
	c->req.start_us = clock_us();
	/* The request clock starts at its first byte and is never pushed back by
	 * later bytes, so a client trickling one byte at a time still times out. */
	c->deadline = uv_now(c->srv->loop) + c->srv->limits.request_timeout_ms;
	conn_arm_timer(c);
	return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
	struct http_conn *c = p->data;

	if (!c->in_url) {
		c->in_url = true;
		c->target_off = (uint32_t)c->head_len;
	}
	return conn_head_append(c, at, len) ? 0 : -1;
}

static int on_url_complete(llhttp_t *p)
{
	struct http_conn *c = p->data;

	if (!c->in_url)
		c->target_off = (uint32_t)c->head_len;
	c->target_len = (uint32_t)(c->head_len - c->target_off);
	c->in_url = false;
	return conn_head_terminate(c) ? 0 : -1;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
	struct http_conn *c = p->data;

	if (c->hdr_state != HDR_FIELD) {
		if (c->n_hdr >= HTTP_MAX_HEADERS) {
			c->err_status = 431;
			return -1;
		}
		c->hdr_state = HDR_FIELD;
		c->hdr[c->n_hdr].name_off = (uint32_t)c->head_len;
	}
	return conn_head_append(c, at, len) ? 0 : -1;
}

static int on_header_field_complete(llhttp_t *p)
{
	struct http_conn *c = p->data;
	struct hdr_span *h = &c->hdr[c->n_hdr];

	if (c->hdr_state != HDR_FIELD)
		return -1;
	h->name_len = (uint32_t)(c->head_len - h->name_off);
	/* A name is one or more token characters, but llhttp 8 passes a line
	 * starting with ':' as an empty one: refuse it (400) rather than hand
	 * the handler a header that a proxy in front may have read otherwise. */
	if (h->name_len == 0)
		return -1;
	c->hdr_state = HDR_NONE;
	return conn_head_terminate(c) ? 0 : -1;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
	struct http_conn *c = p->data;

	if (c->hdr_state != HDR_VALUE) {
		c->hdr_state = HDR_VALUE;
		c->hdr[c->n_hdr].value_off = (uint32_t)c->head_len;
	}
	return conn_head_append(c, at, len) ? 0 : -1;
}

static int on_header_value_complete(llhttp_t *p)
{
	struct http_conn *c = p->data;
	struct hdr_span *h = &c->hdr[c->n_hdr];

	/* An empty value produces no on_header_value call at all. */
	if (c->hdr_state != HDR_VALUE)
		h->value_off = (uint32_t)c->head_len;
	h->value_len = (uint32_t)(c->head_len - h->value_off);
	/* llhttp strips leading whitespace but keeps trailing whitespace. */
	while (h->value_len > 0 && (c->head[h->value_off + h->value_len - 1] == ' ' ||
				    c->head[h->value_off + h->value_len - 1] == '\t'))
		h->value_len--;
	c->head_len = h->value_off + h->value_len;
	c->hdr_state = HDR_NONE;
	c->n_hdr++;
	return conn_head_terminate(c) ? 0 : -1;
}

/* True when the head being parsed has header name with exactly value. */
static bool conn_head_has(const struct http_conn *c, const char *name, const char *value)
{
	size_t nl = strlen(name), vl = strlen(value);

	for (size_t i = 0; i < c->n_hdr; i++)
		if (c->hdr[i].name_len == nl && c->hdr[i].value_len == vl &&
		    strncasecmp(c->head + c->hdr[i].name_off, name, nl) == 0 &&
		    strncasecmp(c->head + c->hdr[i].value_off, value, vl) == 0)
			return true;
	return false;
}

static int on_headers_complete(llhttp_t *p)
{
	struct http_conn *c = p->data;

	/* llhttp accepts HTTP/0.9 and 2.0 request lines; we speak 1.0 and 1.1. */
	if (p->http_major != 1) {
		c->err_status = 505;
		return -1;
	}
	if ((p->flags & F_CONTENT_LENGTH) && p->content_length > HTTP_BODY_MAX) {
		c->err_status = 413;
		return -1;
	}
	/* A client that waits for 100 Continue before sending its body (curl
	 * does for large POSTs) would otherwise stall for a second. */
	if (p->http_minor == 1 && (p->flags & F_CONTENT_LENGTH) && p->content_length > 0 &&
	    conn_head_has(c, "Expect", "100-continue")) {
		static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
		uv_buf_t b = uv_buf_init((char *)cont, sizeof(cont) - 1);

		/* An interim answer that does not fit the socket buffer at once is
		 * dropped: the client sends its body after a timeout anyway. */
		if (c->tls_on) {
			if (tls_conn_write(&c->tls, cont, sizeof(cont) - 1) == 0)
				(void)tls_conn_flush(&c->tls, (uv_stream_t *)&c->tcp, NULL, NULL);
		} else {
			(void)uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
		}
	}
	return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
	struct http_conn *c = p->data;

	if (len > HTTP_BODY_MAX - c->body_len) {
		c->err_status = 413;
		return -1;
	}
	if (c->body_cap < c->body_len + len + 1) {
		size_t cap = c->body_cap ? c->body_cap : 1024;
		char *nb;

		while (cap < c->body_len + len + 1)
			cap *= 2;
		if (cap > HTTP_BODY_MAX + 1)
			cap = HTTP_BODY_MAX + 1;
		nb = realloc(c->body, cap);
		if (nb == NULL) {
			c->err_status = 503;
			return -1;
		}
		c->body = nb;
		c->body_cap = cap;
	}
	memcpy(c->body + c->body_len, at, len);
	c->body_len += len;
	return 0;
}

static int on_message_complete(llhttp_t *p)
{
	struct http_conn *c = p->data;

	c->in_message = false;
	/* We upgrade to nothing: answer the request, then close, since the
	 * bytes after an Upgrade request belong to another protocol. */
	c->keep_alive = llhttp_should_keep_alive(p) != 0 && !p->upgrade;
	/* Stop here: the rest of the buffer waits until this request is answered. */
	return HPE_PAUSED;
}

static void http_server_settings_init(void)
{
	if (http_server_settings_ready)
		return;
	llhttp_settings_init(&http_server_settings);
	http_server_settings.on_message_begin = on_message_begin;
	http_server_settings.on_url = on_url;
	http_server_settings.on_url_complete = on_url_complete;
	http_server_settings.on_header_field = on_header_field;
	http_server_settings.on_header_field_complete = on_header_field_complete;
	http_server_settings.on_header_value = on_header_value;
	http_server_settings.on_header_value_complete = on_header_value_complete;
	http_server_settings.on_headers_complete = on_headers_complete;
	http_server_settings.on_body = on_body;
	http_server_settings.on_message_complete = on_message_complete;
	http_server_settings_ready = 1;
}

static void conn_reset_request(struct http_conn *c)
{
	c->head_len = 0;
	c->target_off = c->target_len = 0;
	c->n_hdr = 0;
	c->hdr_state = HDR_NONE;
	c->in_url = false;
	c->body_len = 0;
	c->err_status = 0;
	c->in_message = false;
	/* Until the next request is complete, responses (408, 400...) belong to
	 * no route: make that visible to the on_response hook. */
	c->req.target = c->req.query = "";
	c->req.target_len = c->req.path_len = c->req.query_len = 0;
	c->req.n_headers = 0;
	c->req.method = -1;
	c->req.start_us = 0;
}

static void conn_build_request(struct http_conn *c)
{
	struct http_request *r = &c->req;
	const char *q;

	r->method = c->parser.method;
	r->target = c->head + c->target_off;
	r->target_len = c->target_len;
	q = memchr(r->target, '?', r->target_len);
	if (q != NULL) {
		r->path_len = (size_t)(q - r->target);
		r->query = q + 1;
		r->query_len = r->target_len - r->path_len - 1;
		r->has_query = true;
	} else {
		r->path_len = r->target_len;
		r->query = r->target + r->target_len; /* the NUL */
		r->query_len = 0;
		r->has_query = false;
	}
	for (size_t i = 0; i < c->n_hdr; i++) {
		r->headers[i].name = c->head + c->hdr[i].name_off;
		r->headers[i].name_len = c->hdr[i].name_len;
		r->headers[i].value = c->head + c->hdr[i].value_off;
		r->headers[i].value_len = c->hdr[i].value_len;
	}
	r->n_headers = c->n_hdr;
	if (c->body != NULL)
		c->body[c->body_len] = '\0';
	r->body = c->body != NULL ? c->body : "";
	r->body_len = c->body_len;
	memcpy(r->peer, c->peer, sizeof(r->peer));
}

const struct http_header *http_request_header(const struct http_request *r, const char *name)
{
	size_t n = strlen(name);

	for (size_t i = 0; i < r->n_headers; i++)
		if (r->headers[i].name_len == n && strncasecmp(r->headers[i].name, name, n) == 0)
			return &r->headers[i];
	return NULL;
}

static void conn_free_if_done(struct http_conn *c)
{
	if (c->handles_open > 0 || c->busy)
		return;
	if (c->tls_on)
		tls_conn_free(&c->tls);
	free(c->body);
	free(c->pending);
	free(c->wbuf);
	free(c);
}

static void conn_on_handle_closed(uv_handle_t *h)
{
	struct http_conn *c = h->data;

	c->handles_open--;
	conn_free_if_done(c);
}

static void conn_unlink(struct http_conn *c)
{
	struct http_server *s = c->srv;

	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	c->prev = c->next = NULL;
	s->n_conns--;
	if (c->busy)
		s->n_busy--;
	if (s->listening)
		acceptor_resume(&s->acceptor);
	if (s->draining && s->n_conns == 0 && s->on_drained != NULL) {
		void (*cb)(struct http_server *) = s->on_drained;

		s->on_drained = NULL;
		cb(s);
	}
}

static void conn_close(struct http_conn *c)
{
	if (c->closing)
		return;
	/* A close_notify, so that the client can tell the end from a cut; sent
	 * only if the socket takes it at once (nothing waits for it). */
	if (c->tls_on && c->tls.established &&
	    uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) == 0) {
		tls_conn_shutdown(&c->tls);
		(void)tls_conn_flush(&c->tls, (uv_stream_t *)&c->tcp, NULL, NULL);
	}
	c->closing = true;
	uv_timer_stop(&c->timer);
	uv_close((uv_handle_t *)&c->tcp, conn_on_handle_closed);
	uv_close((uv_handle_t *)&c->timer, conn_on_handle_closed);
	conn_unlink(c);
}

/* The response of the current request has left (or failed to). */
static void conn_response_done(struct http_conn *c, int status)
{
	bool keep = c->keep_alive && !c->srv->draining && status == 0;

	c->busy = false;
	c->srv->n_busy--;
	c->served++;
	if (c->closing) {
		conn_free_if_done(c);
		return;
	}
	if (!keep) {
		conn_close(c);
		return;
	}
	conn_reset_request(c);
	c->deadline = uv_now(c->srv->loop) + c->srv->limits.idle_timeout_ms;
	conn_arm_timer(c);
	conn_pump(c);
}

/* Gives a borrowed body back, at most once. */
static void conn_return_body(struct http_conn *c)
{
	void (*done)(void *arg) = c->body_done;

	c->body_done = NULL;
	if (done != NULL)
		done(c->body_arg);
}

static void conn_on_write(uv_write_t *req, int status)
{
	struct http_conn *c = req->data;

	conn_return_body(c);
	conn_response_done(c, status);
}

/*
 * Timeouts are lazy: requests move c->deadline, and the timer, armed for the
 * idle period, re-arms itself for whatever is left when it fires early. So a
 * request costs no timer-heap operation (three per request before), only a
 * connection that really waits does. The timer never sleeps longer than the
 * shorter timeout, so a new request's deadline (now + request timeout) is
 * never earlier than the wake-up already set, and nothing needs re-arming.
 */
static uint64_t conn_timer_step(const struct http_conn *c)
{
	const struct http_limits *l = &c->srv->limits;

	return l->request_timeout_ms < l->idle_timeout_ms ? l->request_timeout_ms
							  : l->idle_timeout_ms;
}

static void conn_arm_timer(struct http_conn *c)
{
	uint64_t now = uv_now(c->srv->loop);
	uint64_t left;

	if (c->deadline == UINT64_MAX)
		return;
	left = c->deadline > now ? c->deadline - now : 0;
	if (!uv_is_active((uv_handle_t *)&c->timer) || uv_timer_get_due_in(&c->timer) > left)
		uv_timer_start(&c->timer, conn_on_timeout, left < conn_timer_step(c) ? left
										    : conn_timer_step(c),
			       0);
}

static void conn_on_timeout(uv_timer_t *t)
{
	struct http_conn *c = t->data;
	uint64_t now = uv_now(c->srv->loop);

	if (c->busy || c->deadline == UINT64_MAX || now < c->deadline) {
		/* Early (a request moved the deadline) or busy (the handler's own
		 * timeouts bound it): look again later. */
		uint64_t wait = c->busy || c->deadline == UINT64_MAX ? conn_timer_step(c)
								     : c->deadline - now;

		if (wait > conn_timer_step(c))
			wait = conn_timer_step(c);
		uv_timer_start(&c->timer, conn_on_timeout, wait, 0);
		return;
	}
	if (c->in_message) {
		/* A request started but did not finish in time: tell the client. */
		c->busy = true;
		c->srv->n_busy++;
		c->keep_alive = false;
		http_respond_error(c, 408, "request timeout", NULL);
		return;
	}
	conn_close(c);
}

static void conn_tls_on_response_written(void *arg, int status)
{
	conn_response_done(arg, status);
}

/* A response over TLS: encrypted now (so a borrowed body is given back at
 * once), its ciphertext written like a plain response. */
static void conn_send_tls(struct http_conn *c, const uv_buf_t *bufs, unsigned nbufs)
{
	int rc = 0;

	for (unsigned i = 0; i < nbufs && rc == 0; i++)
		if (bufs[i].len > 0)
			rc = tls_conn_write(&c->tls, bufs[i].base, bufs[i].len);
	conn_return_body(c);
	if (rc != 0) {
		conn_response_done(c, -EIO);
		return;
	}
	rc = tls_conn_flush(&c->tls, (uv_stream_t *)&c->tcp, conn_tls_on_response_written, c);
	if (rc == 1)
		conn_response_done(c, 0);
	else if (rc < 0)
		conn_response_done(c, rc);
}

/*
 * Sends a response: the head (and a small body) from c->wbuf, a borrowed body
 * (done != NULL) straight from the caller's memory, which is given back with
 * done(arg) once written, failed or dropped.
 */
static void conn_send(struct http_conn *c, int status, const char *content_type,
		      const char *extra_headers, const char *body, size_t len,
		      void (*done)(void *arg), void *arg)
{
	bool keep = c->keep_alive && !c->srv->draining;
	size_t need, copied;
	uv_buf_t bufs[2];
	unsigned nbufs;
	int n;

	c->body_done = done;
	c->body_arg = arg;
	if (c->closing) {
		/* The client went away while the handler worked: drop the answer. */
		conn_return_body(c);
		c->busy = false;
		c->srv->n_busy--;
		conn_free_if_done(c);
		return;
	}
	if (c->srv->on_response != NULL)
		c->srv->on_response(c->srv->ctx, &c->req, status);
	copied = done == NULL ? len : 0;
	need = 256 + (extra_headers ? strlen(extra_headers) : 0) +
	       (content_type ? strlen(content_type) : 0) + copied;
	if (c->wcap < need) {
		char *nb = realloc(c->wbuf, need);

		if (nb == NULL) {
			log_warn_limited("http: responses out of memory",
					 "http: realloc() failed for a response of %zu bytes", need);
			conn_return_body(c);
			conn_response_done(c, -ENOMEM);
			return;
		}
		c->wbuf = nb;
		c->wcap = need;
	}
	n = snprintf(c->wbuf, c->wcap,
		     "HTTP/1.1 %d %s\r\n%s%s%sContent-Length: %zu\r\n%s%s\r\n", status,
		     http_status_text(status), content_type ? "Content-Type: " : "",
		     content_type ? content_type : "", content_type ? "\r\n" : "", len,
		     extra_headers ? extra_headers : "",
		     keep ? "" : "Connection: close\r\n");
	if (n < 0 || (size_t)n + copied > c->wcap) {
		conn_return_body(c);
		conn_response_done(c, -ENOSPC);
		return;
	}
	/* A HEAD answer is the GET answer's head: same Content-Length, no body. */
	if (c->req.method == HTTP_HEAD)
		len = copied = 0;
	if (copied > 0)
		memcpy(c->wbuf + n, body, copied);
	c->keep_alive = keep;
	bufs[0] = uv_buf_init(c->wbuf, (unsigned)((size_t)n + copied));
	nbufs = 1;
	if (len > copied)
		bufs[nbufs++] = uv_buf_init((char *)body, (unsigned)len);
	if (c->tls_on) {
		conn_send_tls(c, bufs, nbufs);
		return;
	}
	/* Most responses fit the socket buffer: try the direct write first and
	 * queue only the rest, which saves a loop iteration per request. */
	{
		int w = uv_try_write((uv_stream_t *)&c->tcp, bufs, nbufs);
		unsigned first = 0;

		if (w == UV_EAGAIN)
			w = 0;
		if (w < 0) {
			conn_return_body(c);
			conn_response_done(c, w);
			return;
		}
		while (first < nbufs && (size_t)w >= bufs[first].len) {
			w -= (int)bufs[first].len;
			first++;
		}
		if (first == nbufs) {
			conn_return_body(c);
			conn_response_done(c, 0);
			return;
		}
		bufs[first].base += w;
		bufs[first].len -= (unsigned)w;
		c->wreq.data = c;
		if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, bufs + first, nbufs - first,
			     conn_on_write) != 0) {
			conn_return_body(c);
			conn_response_done(c, -EIO);
		}
	}
}

void http_respond(struct http_conn *c, int status, const char *content_type,
		  const char *extra_headers, const char *body, size_t len)
{
	conn_send(c, status, content_type, extra_headers, body, len, NULL, NULL);
}

void http_respond_borrowed(struct http_conn *c, int status, const char *content_type,
			   const char *body, size_t len, void (*done)(void *arg), void *arg)
{
	conn_send(c, status, content_type, NULL, body, len, done, arg);
}

void http_respond_json(struct http_conn *c, int status, const char *json, size_t len)
{
	http_respond(c, status, "application/json", NULL, json, len);
}

void http_respond_error(struct http_conn *c, int status, const char *text,
			const char *extra_headers)
{
	char body[512];
	size_t n = 0;

	/* The text is ours, but it may quote what a client sent (a field name,
	 * a rule with quotes): escape it, so the body is always valid JSON. */
	memcpy(body, "{\"error\":\"", 10);
	n = 10;
	for (const char *p = text; *p != '\0' && n < sizeof(body) - 16; p++) {
		unsigned char ch = (unsigned char)*p;

		if (ch == '"' || ch == '\\') {
			body[n++] = '\\';
			body[n++] = (char)ch;
		} else if (ch < 0x20) {
			n += (size_t)snprintf(body + n, sizeof(body) - n, "\\u%04x", ch);
		} else {
			body[n++] = (char)ch;
		}
	}
	memcpy(body + n, "\"}", 2);
	n += 2;
	http_respond(c, status, "application/json", extra_headers, body, n);
}

/* A request could not be parsed: answer with the right status and close. */
static void conn_fail(struct http_conn *c, llhttp_errno_t rc)
{
	int status = c->err_status ? c->err_status : 400;

	if (status == 400)
		log_debug_limited("http: bad requests", "http: bad request from %s: %s", c->peer,
				  llhttp_errno_name(rc));
	c->busy = true;
	c->srv->n_busy++;
	c->keep_alive = false;
	if (c->reading) {
		uv_read_stop((uv_stream_t *)&c->tcp);
		c->reading = false;
	}
	switch (status) {
	case 431: http_respond_error(c, 431, "request headers too large", NULL); break;
	case 413: http_respond_error(c, 413, "request body too large", NULL); break;
	case 503: http_respond_error(c, 503, "out of memory", NULL); break;
	case 505: http_respond_error(c, 505, "HTTP version not supported", NULL); break;
	default: http_respond_error(c, 400, "malformed request", NULL); break;
	}
}

/* Keeps bytes that arrived behind the request being handled. Past
 * HTTP_PIPELINE_MAX the socket is no longer read until they are consumed. */
static void conn_save_pending(struct http_conn *c, const char *data, size_t len)
{
	char *nb;

	if (len == 0)
		return;
	if (c->pending_off > 0) {
		memmove(c->pending, c->pending + c->pending_off, c->pending_len);
		c->pending_off = 0;
	}
	nb = realloc(c->pending, c->pending_len + len);
	if (nb == NULL) {
		log_warn_limited("http: pipelined bytes out of memory",
				 "http: realloc() failed for %zu pipelined bytes", c->pending_len + len);
		c->keep_alive = false; /* answer this request, then close */
		return;
	}
	memcpy(nb + c->pending_len, data, len);
	c->pending = nb;
	c->pending_len += len;
	if (c->pending_len > HTTP_PIPELINE_MAX && c->reading) {
		uv_read_stop((uv_stream_t *)&c->tcp);
		c->reading = false;
	}
}

/* Feeds bytes to the parser; dispatches at most one complete request. queued:
 * data is the connection's own pending bytes, consumed in place; otherwise what
 * follows a complete request is kept in them. */
static void conn_feed(struct http_conn *c, const char *data, size_t len, bool queued)
{
	llhttp_errno_t rc = llhttp_execute(&c->parser, data, len);
	size_t used = len;

	if (rc == HPE_PAUSED)
		used = (size_t)(llhttp_get_error_pos(&c->parser) - data);
	if (queued) {
		c->pending_off += used;
		c->pending_len -= used;
	}
	if (rc == HPE_OK)
		return;
	if (rc == HPE_PAUSED) {
		llhttp_resume(&c->parser);
		if (!queued)
			conn_save_pending(c, data + used, len - used);
		/* The client half-closed and nothing follows this request: it is
		 * the last, and its answer says so. */
		if (c->eof && c->pending_len == 0)
			c->keep_alive = false;
		/* The socket stays in the loop while the request is handled: most
		 * clients send nothing more, and stopping and restarting the read
		 * would cost two epoll_ctl() calls per request. */
		c->deadline = UINT64_MAX;
		conn_build_request(c);
		c->busy = true;
		c->srv->n_busy++;
		c->srv->handler(c, &c->req, c->srv->ctx);
		return;
	}
	conn_fail(c, rc);
}

/* Runs what is waiting once the connection is free: pipelined bytes first,
 * then the socket again. Re-entrant calls (a handler that answered at once)
 * return and let the outer loop continue, so depth stays bounded. */
static void conn_pump(struct http_conn *c)
{
	if (c->pumping)
		return;
	c->pumping = true;
	/* No read callback runs inside this loop (they come from the event loop),
	 * so nothing appends to pending while the parser reads it in place. */
	while (!c->busy && !c->closing && c->pending_len > 0)
		conn_feed(c, c->pending + c->pending_off, c->pending_len, true);
	if (c->pending_len == 0 && c->pending != NULL) {
		free(c->pending);
		c->pending = NULL;
		c->pending_off = 0;
	}
	if (!c->busy && !c->closing && !c->reading && c->keep_alive && !c->eof)
		conn_start_read(c);
	c->pumping = false;
	/* Half-closed and no complete request left to answer: done. */
	if (c->eof && !c->busy && !c->closing)
		conn_close(c);
}

static void conn_on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	(void)h;
	(void)suggested;
	*buf = uv_buf_init(http_server_rbuf, sizeof(http_server_rbuf));
}

/* The client's end of the stream (EOF, or its close_notify). */
static void conn_on_eof(struct http_conn *c)
{
	/* A client that half-closes after its requests still gets every answer
	 * (see the top of this file); an idle connection's EOF drops it. */
	if (c->busy) {
		if (c->reading) {
			uv_read_stop((uv_stream_t *)&c->tcp);
			c->reading = false;
		}
		c->eof = true;
		/* Nothing queued behind the request being handled: its answer is
		 * the last. */
		if (c->pending_len == 0)
			c->keep_alive = false;
		return;
	}
	conn_close(c);
}

/* Request bytes (plaintext): parsed now, or kept behind the request being handled. */
static void conn_deliver(struct http_conn *c, const char *data, size_t n)
{
	if (c->busy)
		conn_save_pending(c, data, n);
	else
		conn_feed(c, data, n, false);
}

/* Handshake messages, tickets and alerts OpenSSL wants sent. */
static void conn_tls_on_aux_written(void *arg, int status)
{
	struct http_conn *c = arg;

	if (status != 0 && !c->closing)
		conn_close(c);
}

static void conn_tls_counted(struct http_conn *c, enum http_server_tls_event ev)
{
	c->tls_counted = true;
	if (c->srv->on_tls != NULL)
		c->srv->on_tls(c->srv->ctx, ev);
}

/* The handshake completed: from now on the idle timeout applies. */
static void conn_tls_established(struct http_conn *c)
{
	conn_tls_counted(c, tls_conn_resumed(&c->tls) ? HTTP_SERVER_TLS_RESUMED
						      : HTTP_SERVER_TLS_FULL);
	if (!c->in_message && !c->busy)
		c->deadline = uv_now(c->srv->loop) + c->srv->limits.idle_timeout_ms;
}

/* Ciphertext from the socket: every complete record is decrypted and delivered. */
static void conn_tls_read(struct http_conn *c, const char *data, size_t n)
{
	if (tls_conn_feed(&c->tls, data, n) != 0) {
		conn_close(c);
		return;
	}
	for (;;) {
		int r = tls_conn_read(&c->tls, http_server_plain, sizeof(http_server_plain));

		if (r > 0) {
			if (!c->tls_counted)
				conn_tls_established(c);
			conn_deliver(c, http_server_plain, (size_t)r);
			if (c->closing)
				return;
			if (!tls_conn_more(&c->tls))
				break;
			continue;
		}
		if (r == 0)
			break;
		if (r == TLS_CLOSED) {
			conn_on_eof(c);
			return;
		}
		if (!c->tls_counted) {
			conn_tls_counted(c, HTTP_SERVER_TLS_FAILED);
			log_info_limited("http: TLS handshakes failed",
					 "http: TLS handshake from %s failed: %s", c->peer,
					 tls_failure_text(c->tls.failure));
		}
		/* The alert OpenSSL wrote, if the socket takes it. */
		(void)tls_conn_flush(&c->tls, (uv_stream_t *)&c->tcp, NULL, NULL);
		c->tls.established = false;
		conn_close(c);
		return;
	}
	if (!c->tls_counted && c->tls.established)
		conn_tls_established(c);
	if (tls_conn_flush(&c->tls, (uv_stream_t *)&c->tcp, conn_tls_on_aux_written, c) < 0)
		conn_close(c);
}

static void conn_on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct http_conn *c = s->data;

	if (n < 0) {
		if (n == UV_EOF)
			conn_on_eof(c);
		else
			conn_close(c);
		return;
	}
	if (n == 0)
		return;
	if (c->tls_on) {
		conn_tls_read(c, buf->base, (size_t)n);
		return;
	}
	conn_deliver(c, buf->base, (size_t)n);
}

static void conn_start_read(struct http_conn *c)
{
	if (uv_read_start((uv_stream_t *)&c->tcp, conn_on_alloc, conn_on_read) == 0)
		c->reading = true;
	else
		conn_close(c);
}

static void conn_format_peer(struct http_conn *c)
{
	struct sockaddr_storage ss;
	int len = sizeof(ss);

	snprintf(c->peer, sizeof(c->peer), "unknown");
	if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) != 0)
		return;
	if (ss.ss_family == AF_INET) {
		inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, c->peer, sizeof(c->peer));
	} else if (ss.ss_family == AF_INET6) {
		struct in6_addr *a = &((struct sockaddr_in6 *)&ss)->sin6_addr;

		/* The SFU compares creator addresses as strings; Odoo will later reach
		 * it over IPv4, so an IPv4-mapped peer is written as plain IPv4. */
		if (IN6_IS_ADDR_V4MAPPED(a))
			inet_ntop(AF_INET, &a->s6_addr[12], c->peer, sizeof(c->peer));
		else
			inet_ntop(AF_INET6, a, c->peer, sizeof(c->peer));
	}
}

/* A connection the acceptor took: adopt its socket into the loop. */
static void server_on_fd(struct acceptor *a, int fd, void *ctx)
{
	struct http_server *s = ctx;
	struct http_conn *c;

	(void)a;
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		log_warn_limited("http: connections out of memory",
				 "http: calloc() failed for a connection");
		close(fd);
		return;
	}
	c->srv = s;
	uv_tcp_init(s->loop, &c->tcp);
	uv_timer_init(s->loop, &c->timer);
	c->tcp.data = c->timer.data = c;
	c->handles_open = 2;
	c->next = s->conns;
	if (s->conns != NULL)
		s->conns->prev = c;
	s->conns = c;
	s->n_conns++;
	if (uv_tcp_open(&c->tcp, fd) != 0) {
		close(fd);
		conn_close(c);
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	conn_format_peer(c);
	if (s->on_accept != NULL)
		s->on_accept(s->ctx);
	llhttp_init(&c->parser, HTTP_REQUEST, &http_server_settings);
	c->parser.data = c;
	conn_reset_request(c);
	c->deadline = uv_now(s->loop) + s->limits.idle_timeout_ms;
	/* on_accept may have installed a new context (a reload): it applies here. */
	if (s->tls_ctx != NULL) {
		if (tls_conn_server(&c->tls, s->tls_ctx, c) != 0) {
			log_warn_limited("http: TLS connections out of memory",
					 "http: SSL_new() failed for a connection");
			conn_close(c);
			return;
		}
		c->tls_on = true;
		/* The handshake must be over within the request timeout. */
		c->deadline = uv_now(s->loop) + s->limits.request_timeout_ms;
	}
	conn_arm_timer(c);
	conn_start_read(c);
}

int http_server_start(struct http_server *s, uv_loop_t *loop, int listen_fd,
		      const struct http_limits *limits, http_handler_fn handler, void *ctx)
{
	int rc;

	http_server_settings_init();
	memset(s, 0, sizeof(*s));
	s->loop = loop;
	s->handler = handler;
	s->ctx = ctx;
	s->limits = *limits;
	rc = acceptor_start(&s->acceptor, loop, listen_fd, &s->n_conns, server_on_fd, s);
	if (rc != 0)
		return rc;
	s->listening = true;
	return 0;
}

/* The grace period of a drain is over: whoever has not started a request is
 * closed; requests being handled still finish. */
static void server_on_drain_timeout(uv_timer_t *t)
{
	struct http_server *s = t->data;
	struct http_conn *c, *next;

	for (c = s->conns; c != NULL; c = next) {
		next = c->next;
		if (!c->busy)
			conn_close(c);
	}
}

void http_server_drain(struct http_server *s, void (*on_drained)(struct http_server *s))
{
	struct http_conn *c, *next;

	s->draining = true;
	s->on_drained = on_drained;
	if (s->listening) {
		acceptor_stop(&s->acceptor);
		s->listening = false;
	}
	/* Only connections idle between requests close now: their clients know
	 * a keep-alive connection may close. A connection that has not sent its
	 * first request yet, or is sending one, gets the grace period. */
	for (c = s->conns; c != NULL; c = next) {
		next = c->next;
		if (!c->busy && !c->in_message && c->served > 0)
			conn_close(c);
	}
	if (s->n_conns == 0 && s->on_drained != NULL) {
		s->on_drained = NULL;
		on_drained(s);
		return;
	}
	uv_timer_init(s->loop, &s->drain_timer);
	s->drain_timer.data = s;
	uv_timer_start(&s->drain_timer, server_on_drain_timeout, HTTP_DRAIN_GRACE_MS, 0);
}

void http_server_set_tls(struct http_server *s, struct ssl_ctx_st *ctx)
{
	if (ctx != NULL)
		tls_ctx_ref(ctx);
	if (s->tls_ctx != NULL)
		tls_ctx_free(s->tls_ctx);
	s->tls_ctx = ctx;
}

int http_conn_client_cert(const struct http_conn *c, struct x509_st **cert, const char **why)
{
	if (!c->tls_on)
		return -EPROTO;
	return tls_conn_peer_cert(&c->tls, cert, why);
}

void http_server_close_all(struct http_server *s)
{
	struct http_conn *c, *next;

	for (c = s->conns; c != NULL; c = next) {
		next = c->next;
		conn_close(c);
	}
}
