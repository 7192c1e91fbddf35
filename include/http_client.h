/* HTTP/1.1 client to the SFUs on libuv + llhttp: keep-alive pool per SFU, connect and response timeouts. */
#ifndef SFU_HTTP_CLIENT_H
#define SFU_HTTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define HTTP_CLIENT_BODY_MAX 65536 /* larger responses are an error (-EMSGSIZE) */

struct http_client;

struct http_client_req {
	const char *method; /* "GET", "POST" */
	const char *target; /* "/v1/channel?x=1" */
	size_t target_len;
	const char *headers; /* extra "Name: value\r\n" lines, or NULL */
	size_t headers_len;
	const char *body; /* or NULL */
	size_t body_len;
	uint32_t connect_timeout_ms; /* bound on connecting (DNS included) */
	uint32_t timeout_ms; /* bound on the whole attempt, connect included */
	/* When set, a 2xx answer's body goes to it piece by piece as it arrives
	 * (ctx is the request's) instead of being collected, with no size limit
	 * but the timeout; res->body is then empty. A non-zero return aborts the
	 * request with UV_EPROTO. Other statuses' bodies are collected as usual. */
	int (*on_body)(void *ctx, const char *at, size_t len);
	/* When set, each response header whose name fits HTTP_CLIENT_HEADER_NAME_MAX
	 * and value HTTP_CLIENT_HEADER_VALUE_MAX bytes is given to it whole, as it
	 * arrives (longer ones are skipped); names are as sent (compare without
	 * case). A non-zero return aborts the request with UV_EPROTO. */
	int (*on_header)(void *ctx, const char *name, size_t name_len, const char *value,
			 size_t value_len);
};

#define HTTP_CLIENT_HEADER_NAME_MAX 64
#define HTTP_CLIENT_HEADER_VALUE_MAX 512

struct http_client_result {
	int error; /* 0, or a libuv error: UV_ETIMEDOUT, UV_ECONNREFUSED, UV_ECONNRESET,
		      UV_EOF (closed before a full response), UV_EPROTO (unparsable,
		      or refused by on_body),
		      UV_EMSGSIZE (body too large), UV_EAI_* (name resolution) */
	bool connect_failed; /* the error happened before the connection was up */
	/* A timeout that fired while this process's loop had stalled (stopped,
	 * frozen, blocked) again and again: the SFU may have answered in time, so
	 * it is not the SFU's failure. Plain stalls are absorbed: an attempt
	 * whose time ran out while the loop was not running gets it back. */
	bool stalled;
	int status; /* HTTP status when error == 0 */
	const char *body; /* valid only during the callback */
	size_t body_len;
};

typedef void (*http_client_cb)(const struct http_client_result *res, void *ctx);

int http_client_new(struct http_client **out, uv_loop_t *loop);
/* Closes idle connections; requests in flight still complete (or time out)
 * and the client is freed after the last one. */
void http_client_free(struct http_client *cl);

/*
 * Sends one request to address ("http://host[:port]", normalised). Host is
 * set from the address; Content-Length when a body is given. Reuses an idle
 * keep-alive connection to that address when there is one; if such a reused
 * connection turns out closed by the server before any byte of the response,
 * the request is sent again once on a new connection (the server never saw
 * it). cb runs exactly once, from the loop, never from inside this call.
 * Returns 0, or -EINVAL for an address it cannot use (https is not yet
 * supported), -ENOMEM.
 */
int http_client_request(struct http_client *cl, const char *address,
			const struct http_client_req *req, http_client_cb cb, void *ctx);

/* Whether the client speaks TLS (https:// addresses). Not yet: config
 * refuses https where it would be used. */
bool http_client_tls(void);

/* What went wrong, in words for a log line: "connect timeout" and "response
 * timeout" tell which bound fired (an SFU that accepts connections but does not
 * answer, such as a stopped process, gives the second), else uv_strerror(). */
const char *http_client_strerror(const struct http_client_result *res);

/* Connections currently open (idle + busy), for tests and metrics. */
size_t http_client_open_count(const struct http_client *cl);
/* Requests that reused an idle connection, since start. */
uint64_t http_client_reuse_count(const struct http_client *cl);

#endif
