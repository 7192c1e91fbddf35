/* HTTP/1.1 server on libuv + llhttp: keep-alive, pipelining in order, size limits and timeouts. */
#ifndef SFU_HTTP_SERVER_H
#define SFU_HTTP_SERVER_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "acceptor.h"
#include "tls.h"

#define HTTP_MAX_HEADERS 64
#define HTTP_HEAD_MAX 8192 /* request line + headers; over it: 431 */
#define HTTP_BODY_MAX 16384 /* request body; over it: 413 */
#define HTTP_PEER_MAX 64
#define HTTP_PIPELINE_MAX 65536 /* bytes buffered behind a request being handled */

struct http_header {
	const char *name, *value;
	size_t name_len, value_len;
};

/* One parsed request. Every pointer is valid until the response is sent. */
struct http_request {
	int method; /* llhttp_method_t */
	const char *target; /* "/path?query", NUL-terminated */
	size_t target_len;
	size_t path_len; /* target[0..path_len) is the path */
	const char *query; /* after '?', NUL-terminated; "" when none */
	size_t query_len;
	bool has_query; /* a '?' was present */
	struct http_header headers[HTTP_MAX_HEADERS];
	size_t n_headers;
	const char *body; /* NUL-terminated copy */
	size_t body_len;
	char peer[HTTP_PEER_MAX]; /* socket peer, IPv4-mapped IPv6 written as plain IPv4 */
	int64_t start_us; /* clock_us() at the request's first byte; 0 before one came */
};

struct http_conn;
struct http_server;

/* Each TLS handshake of a client with the listener, for metrics. */
enum http_server_tls_event { HTTP_SERVER_TLS_FULL, HTTP_SERVER_TLS_RESUMED, HTTP_SERVER_TLS_FAILED };

/* Called once per complete request. The handler must eventually call one of
 * the http_respond* functions for this conn (at once or later, from the loop). */
typedef void (*http_handler_fn)(struct http_conn *c, const struct http_request *req, void *ctx);

struct http_limits {
	uint32_t request_timeout_ms; /* whole request head+body from its first byte */
	uint32_t idle_timeout_ms; /* keep-alive idle between requests */
};

struct http_server {
	uv_loop_t *loop;
	struct acceptor acceptor; /* the listening socket; its max_conns caps n_conns */
	http_handler_fn handler;
	void *ctx;
	struct http_limits limits;
	bool listening;
	bool draining; /* stop: no new requests, close when idle */
	uv_timer_t drain_timer; /* closes connections that never sent a request */
	size_t n_conns; /* open connections */
	size_t n_busy; /* connections with a request being handled */
	struct http_conn *conns; /* list of open connections */
	void (*on_drained)(struct http_server *s); /* called once when draining and n_conns == 0 */
	/* Optional hooks for metrics: each accepted connection, each response. */
	void (*on_accept)(void *ctx);
	void (*on_response)(void *ctx, const struct http_request *req, int status);
	void (*on_tls)(void *ctx, enum http_server_tls_event ev);
	/* The TLS context new connections take (NULL: plain HTTP); see http_server_set_tls. */
	struct ssl_ctx_st *tls_ctx;
};

/* Starts serving on an already bound and listening socket fd (the master's). */
int http_server_start(struct http_server *s, uv_loop_t *loop, int listen_fd,
		      const struct http_limits *limits, http_handler_fn handler, void *ctx);
/* Graceful stop: stops accepting and closes keep-alive connections idle
 * between requests. Requests in flight, partly received, or about to arrive
 * on a connection that has not sent one yet get HTTP_DRAIN_GRACE_MS to
 * finish (their responses carry Connection: close); then on_drained. */
#define HTTP_DRAIN_GRACE_MS 1000
void http_server_drain(struct http_server *s, void (*on_drained)(struct http_server *s));
/* Closes every connection at once (shutdown timeout expired). */
void http_server_close_all(struct http_server *s);

/*
 * Serves HTTPS on connections accepted from now on, with ctx (a reference is
 * taken; NULL goes back to plain HTTP). Open connections keep the context
 * they started with, so a new certificate drops nobody. A TLS connection has
 * request_timeout_ms for its handshake.
 */
void http_server_set_tls(struct http_server *s, struct ssl_ctx_st *ctx);
/*
 * The client certificate of c's TLS connection: 0 with *cert (valid while the
 * request is) when the listener's client CA vouches for it; -EPROTO on a
 * plain connection; -ENOENT when the client sent none; -EACCES when it did not
 * verify (*why says why).
 */
int http_conn_client_cert(const struct http_conn *c, struct x509_st **cert, const char **why);

/* Sends a response. extra_headers: NULL or complete "Name: value\r\n" lines.
 * Content-Length is always set; Connection: close when the request or the
 * server says so. body may be NULL when len is 0. */
void http_respond(struct http_conn *c, int status, const char *content_type,
		  const char *extra_headers, const char *body, size_t len);
/* Like http_respond, but the body is sent from the caller's memory, not
 * copied: it must stay unchanged until done(arg) is called, exactly once,
 * when it is written, failed or dropped (maybe before this returns). For
 * large bodies served again and again (the rendered /metrics). */
void http_respond_borrowed(struct http_conn *c, int status, const char *content_type,
			   const char *body, size_t len, void (*done)(void *arg), void *arg);
/* {"error":"<text>"} with Content-Type application/json; text is escaped. */
void http_respond_error(struct http_conn *c, int status, const char *text,
			const char *extra_headers);
/* Body with Content-Type: application/json. */
void http_respond_json(struct http_conn *c, int status, const char *json, size_t len);

/* Case-insensitive header lookup: the first value, or NULL. */
const struct http_header *http_request_header(const struct http_request *r, const char *name);
/* Reason phrase of a status code ("OK", "Not Found"...). */
const char *http_status_text(int status);

#endif
