/* HTTP/1.1 client to the SFUs on libuv + llhttp, over TLS for https: keep-alive pool per SFU, timeouts. */
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
	uint32_t connect_timeout_ms; /* bound on connecting (DNS and TLS handshake included) */
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
	/* https only: the server's certificate is not checked at all. Only for an
	 * SFU the configuration explicitly marks so; its connections and
	 * sessions are never shared with verified ones. */
	bool tls_insecure;
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
	/* https: this attempt made a TLS handshake (a new connection; a pooled one
	 * has none), and its verdict: tls_failure 0 when it succeeded, else why it
	 * failed (tls_failure_text: "certificate has expired", "hostname
	 * mismatch"...), with error UV_EPROTO and connect_failed set. */
	bool tls_handshake;
	int64_t tls_failure;
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
 * TLS options of the client (every https pool): CAs to verify servers with
 * (both NULL or "": the system store) and a client certificate to present when
 * a server asks (NULL: none). The contexts are built when an https request
 * first needs them (a client that speaks only http never loads a CA), so
 * options that do not load show then: the request fails (-EPROTO) and the
 * reason is logged; callers check their options beforehand (tls.h). Changed
 * options close idle https connections and forget their sessions. 0, or
 * -ENAMETOOLONG with err. Without a call, https uses the system store and no
 * client certificate.
 */
struct http_client_tls {
	const char *ca_file, *ca_path;
	const char *cert_file, *key_file;
};
int http_client_set_tls(struct http_client *cl, const struct http_client_tls *o, char *err,
			size_t errlen);

/* Each TLS handshake's outcome, for metrics. */
enum http_client_tls_event { HTTP_CLIENT_TLS_FULL, HTTP_CLIENT_TLS_RESUMED, HTTP_CLIENT_TLS_FAILED };
void http_client_on_tls(struct http_client *cl, void (*fn)(void *ctx, enum http_client_tls_event ev),
			void *ctx);

/*
 * Sends one request to address ("http(s)://host[:port]", normalised). Host is
 * set from the address; Content-Length when a body is given. Reuses an idle
 * keep-alive connection to that address when there is one; if such a reused
 * connection turns out closed by the server before any byte of the response,
 * the request is sent again once on a new connection (the server never saw
 * it). cb runs exactly once, from the loop, never from inside this call.
 * An https address is reached over TLS: the certificate verified for the
 * address's host (SNI sent for a name), TLS 1.2 at least; a new connection
 * resumes the pool's last session when it can.
 * Returns 0, or -EINVAL for an address it cannot use, -EPROTO when https is
 * unavailable (the CA options cannot be loaded; logged), -ENOMEM.
 */
int http_client_request(struct http_client *cl, const char *address,
			const struct http_client_req *req, http_client_cb cb, void *ctx);

/* What went wrong, in words for a log line: "connect timeout" and "response
 * timeout" tell which bound fired (an SFU that accepts connections but does not
 * answer, such as a stopped process, gives the second), "TLS handshake failed:
 * <why>", else uv_strerror(). */
const char *http_client_strerror(const struct http_client_result *res);

#endif
