/* Integration tests of the gateway's HTTP server over sockets: routes, limits, timeouts, abuse. */
#include <criterion/criterion.h>

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

/* base64 of the 32 bytes "sfu-gateway-test-key-0123456789!" */
#define HTTP_TEST_KEY "c2Z1LWdhdGV3YXktdGVzdC1rZXktMDEyMzQ1Njc4OSE="

/* The worker's request timeout is 10 s (WORKER_REQUEST_TIMEOUT_MS); a slow
 * client must be cut well before this. */
#define HTTP_SLOW_DEADLINE_MS 15000

/* One client connection and the bytes it received but did not consume yet. */
struct http_client {
	int fd;
	bool eof; /* the peer closed (FIN or RST) */
	size_t len;
	char buf[16384];
};

/* One parsed response. */
struct http_answer {
	int status;
	char head[4096];
	char body[4096];
	size_t body_len;
};

/* A gateway with the test key and these args; fails the test when it does not come up. */
static struct harness_proc *http_gateway_with(const char *const *args)
{
	static const char *const env[] = { "SFU_GATEWAY_KEY=" HTTP_TEST_KEY, NULL };
	return harness_gateway_up(env, args);
}

static struct harness_proc *http_gateway(void)
{
	static const char *const args[] = { "--workers", "1", NULL };

	return http_gateway_with(args);
}

static int http_connect_fd(int port)
{
	struct sockaddr_in sa;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	cr_assert_geq(fd, 0, "socket(): %s", strerror(errno));
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "connect(): %s",
		     strerror(errno));
	/* Small writes must leave at once, so split requests really arrive split. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

/* Clients live in a static pool, so a failed assertion leaks no memory. */
static struct http_client http_clients[4];

static struct http_client *http_open(int port)
{
	for (size_t i = 0; i < sizeof(http_clients) / sizeof(http_clients[0]); i++) {
		struct http_client *c = &http_clients[i];

		if (c->fd > 0)
			continue;
		memset(c, 0, sizeof(*c));
		c->fd = http_connect_fd(port);
		return c;
	}
	cr_assert_fail("no free client slot");
	return NULL;
}

static void http_close(struct http_client *c)
{
	close(c->fd);
	c->fd = 0;
}

/* Sends everything; false when the peer is gone. MSG_NOSIGNAL: a write to a
 * connection the gateway closed must fail, not kill the test with SIGPIPE. */
static bool http_send_fd(int fd, const char *data, size_t len)
{
	while (len > 0) {
		ssize_t n = send(fd, data, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		data += n;
		len -= (size_t)n;
	}
	return true;
}

static void http_send(struct http_client *c, const char *data, size_t len)
{
	cr_assert(http_send_fd(c->fd, data, len), "send(): %s", strerror(errno));
}

static void http_send_str(struct http_client *c, const char *text)
{
	http_send(c, text, strlen(text));
}

/* Moves the first whole response of c->buf into a; false when none is complete.
 * The gateway always sends Content-Length, so no other framing is handled. */
static bool http_take(struct http_client *c, struct http_answer *a)
{
	const char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
	const char *cl;
	size_t hl, bl = 0, used;

	if (end == NULL)
		return false;
	hl = (size_t)(end - c->buf) + 4;
	memset(a, 0, sizeof(*a));
	memcpy(a->head, c->buf, hl < sizeof(a->head) ? hl : sizeof(a->head) - 1);
	cl = strcasestr(a->head, "\r\nContent-Length:");
	if (cl != NULL)
		bl = strtoul(cl + 17, NULL, 10);
	if (c->len < hl + bl)
		return false;
	sscanf(a->head, "HTTP/1.%*d %d", &a->status);
	a->body_len = bl < sizeof(a->body) ? bl : sizeof(a->body) - 1;
	memcpy(a->body, c->buf + hl, a->body_len);
	used = hl + bl;
	memmove(c->buf, c->buf + used, c->len - used);
	c->len -= used;
	return true;
}

/* Reads what is there within at most wait_ms; false when nothing came. */
static bool http_fill(struct http_client *c, int wait_ms)
{
	struct pollfd pf = { c->fd, POLLIN, 0 };
	ssize_t n;

	if (c->eof || poll(&pf, 1, wait_ms < 0 ? 0 : wait_ms) <= 0)
		return false;
	n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
	if (n <= 0) {
		/* EOF or a reset: either way the gateway closed the connection. */
		c->eof = true;
		return true;
	}
	c->len += (size_t)n;
	return true;
}

/* The next response within timeout_ms: 0, -ETIMEDOUT, or -ECONNRESET when the
 * gateway closed the connection first. */
static int http_next(struct http_client *c, struct http_answer *a, int timeout_ms)
{
	int64_t deadline = harness_now_ms() + timeout_ms;

	for (;;) {
		if (http_take(c, a))
			return 0;
		if (c->eof)
			return -ECONNRESET;
		if (c->len == sizeof(c->buf))
			return -EMSGSIZE;
		if (harness_now_ms() >= deadline)
			return -ETIMEDOUT;
		http_fill(c, (int)(deadline - harness_now_ms()));
	}
}

/* True when the gateway closes the connection within timeout_ms without
 * sending anything more. */
static bool http_closed(struct http_client *c, int timeout_ms)
{
	int64_t deadline = harness_now_ms() + timeout_ms;

	while (!c->eof && c->len == 0 && harness_now_ms() < deadline)
		http_fill(c, (int)(deadline - harness_now_ms()));
	return c->eof && c->len == 0;
}

static void http_expect(struct http_client *c, int status, const char *body)
{
	struct http_answer a;
	int rc = http_next(c, &a, 5000);

	cr_assert_eq(rc, 0, "no response (want %d): %s", status, strerror(-rc));
	cr_assert_eq(a.status, status, "status %d, want %d; head:\n%s", a.status, status, a.head);
	if (body != NULL)
		cr_assert_str_eq(a.body, body);
}

static bool http_head_has(const char *head, const char *line)
{
	return strcasestr(head, line) != NULL;
}

/* Sends raw bytes on a new connection: the answer must be `status` with a JSON
 * error body, and the gateway must close the connection after it. */
static void http_expect_fail(int port, const char *raw, size_t len, int status, int what)
{
	struct http_client *c = http_open(port);
	struct http_answer a;
	int rc;

	http_send(c, raw, len);
	rc = http_next(c, &a, 5000);
	cr_assert_eq(rc, 0, "case %d: no response (want %d): %s", what, status, strerror(-rc));
	cr_assert_eq(a.status, status, "case %d: status %d, want %d; head:\n%s", what, a.status,
		     status, a.head);
	cr_assert(http_head_has(a.head, "\r\nContent-Type: application/json\r\n"), "%s", a.head);
	cr_assert(strncmp(a.body, "{\"error\":", 9) == 0, "body: %s", a.body);
	cr_assert(http_head_has(a.head, "\r\nConnection: close\r\n"), "%s", a.head);
	cr_assert(http_closed(c, 3000), "case %d: the connection stayed open after a %d", what,
		  status);
	http_close(c);
}

/* /noop on its own connection answers 200 within a second. */
static void http_assert_prompt_noop(int port)
{
	static struct harness_resp r;
	int64_t t0 = harness_now_ms();
	int rc = harness_get(port, "/noop", NULL, &r);
	int64_t took = harness_now_ms() - t0;

	cr_assert_eq(rc, 0, "/noop failed: %s", strerror(-rc));
	cr_assert_eq(r.status, 200);
	cr_assert_lt(took, 1000, "/noop took %lld ms while another client was slow",
		     (long long)took);
}

/* No worker crashed or exited: the master logs every such event. */
static void http_assert_no_worker_died(const struct harness_proc *p)
{
	const char *log = harness_log(p);

	cr_assert_null(strstr(log, "killed by signal"), "a worker crashed:\n%s", log);
	cr_assert_null(strstr(log, "exited with"), "a worker exited:\n%s", log);
}

Test(http, routes, .fini = harness_cleanup, .timeout = 30)
{
	struct harness_proc *p = http_gateway();
	static struct harness_resp resp;
	struct harness_resp *r = &resp;
	static const char del[] =
		"DELETE /v1/channel HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	char v[256];

	cr_assert_eq(harness_get(p->port, "/noop", NULL, r), 0);
	cr_assert_eq(r->status, 200);
	cr_assert_str_eq(r->body, "{\"status\":\"ok\"}");
	cr_assert(harness_resp_header(r, "Content-Type", v, sizeof(v)));
	cr_assert_str_eq(v, "application/json");

	cr_assert_eq(harness_get(p->port, "/v1/noop", NULL, r), 0);
	cr_assert_eq(r->status, 200);
	cr_assert_str_eq(r->body, "{\"result\":\"ok\"}");
	cr_assert(harness_resp_header(r, "Content-Type", v, sizeof(v)));
	cr_assert_str_eq(v, "application/json");

	/* A query string does not change the route. */
	cr_assert_eq(harness_get(p->port, "/noop?x=1", NULL, r), 0);
	cr_assert_eq(r->status, 200);

	cr_assert_eq(harness_get(p->port, "/nope", NULL, r), 0);
	cr_assert_eq(r->status, 404);
	cr_assert(harness_resp_header(r, "Content-Type", v, sizeof(v)));
	cr_assert_str_eq(v, "application/json");
	cr_assert_neq(harness_json_str(r->body, "error")[0], '\0', "body: %s", r->body);

	/* Prefixes and suffixes of a route are other paths. */
	cr_assert_eq(harness_get(p->port, "/noopx", NULL, r), 0);
	cr_assert_eq(r->status, 404);
	cr_assert_eq(harness_get(p->port, "/v1/noop/", NULL, r), 0);
	cr_assert_eq(r->status, 404);

	cr_assert_eq(harness_post(p->port, "/noop", NULL, "{}", r), 0);
	cr_assert_eq(r->status, 405);
	cr_assert(harness_resp_header(r, "Allow", v, sizeof(v)), "no Allow header:\n%s", r->head);
	cr_assert_str_eq(v, "GET, HEAD");
	cr_assert_neq(harness_json_str(r->body, "error")[0], '\0', "body: %s", r->body);

	cr_assert_eq(harness_raw(p->port, del, sizeof(del) - 1, r, 5000), 0);
	cr_assert_eq(r->status, 405);
	cr_assert(harness_resp_header(r, "Allow", v, sizeof(v)), "no Allow header:\n%s", r->head);
	cr_assert_str_eq(v, "GET");
	cr_assert(harness_resp_header(r, "Content-Type", v, sizeof(v)));
	cr_assert_str_eq(v, "application/json");
}

Test(http, keep_alive, .fini = harness_cleanup, .timeout = 30)
{
	struct harness_proc *p = http_gateway();
	struct http_client *c = http_open(p->port);
	struct http_answer a;

	http_send_str(c, "GET /noop HTTP/1.1\r\nHost: x\r\n\r\n");
	cr_assert_eq(http_next(c, &a, 5000), 0);
	cr_assert_eq(a.status, 200);
	cr_assert_not(http_head_has(a.head, "Connection: close"), "%s", a.head);

	http_send_str(c, "GET /v1/noop HTTP/1.1\r\nHost: x\r\n\r\n");
	cr_assert_eq(http_next(c, &a, 5000), 0);
	cr_assert_eq(a.status, 200);
	cr_assert_str_eq(a.body, "{\"result\":\"ok\"}");

	http_send_str(c, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n");
	cr_assert_eq(http_next(c, &a, 5000), 0);
	cr_assert_eq(a.status, 404);
	cr_assert_not(http_head_has(a.head, "Connection: close"), "%s", a.head);

	/* Still the same connection: a fourth request with close ends it. */
	http_send_str(c, "GET /noop HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
	cr_assert_eq(http_next(c, &a, 5000), 0);
	cr_assert_eq(a.status, 200);
	cr_assert(http_closed(c, 3000));
	http_close(c);
}

Test(http, http10_closes, .fini = harness_cleanup, .timeout = 30)
{
	struct harness_proc *p = http_gateway();
	struct http_client *c = http_open(p->port);
	struct http_answer a;

	http_send_str(c, "GET /noop HTTP/1.0\r\n\r\n");
	cr_assert_eq(http_next(c, &a, 5000), 0);
	cr_assert_eq(a.status, 200);
	cr_assert_str_eq(a.body, "{\"status\":\"ok\"}");
	cr_assert(http_closed(c, 3000), "an HTTP/1.0 connection without keep-alive stayed open");
	http_close(c);
}

Test(http, connection_close, .fini = harness_cleanup, .timeout = 30)
{
	struct harness_proc *p = http_gateway();
	struct http_client *c = http_open(p->port);
	struct http_answer a;

	/* The request behind a Connection: close one is never answered. */
	http_send_str(c, "GET /noop HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
			 "GET /v1/noop HTTP/1.1\r\nHost: x\r\n\r\n");
	cr_assert_eq(http_next(c, &a, 5000), 0);
	cr_assert_eq(a.status, 200);
	cr_assert_str_eq(a.body, "{\"status\":\"ok\"}");
	cr_assert(http_head_has(a.head, "\r\nConnection: close\r\n"), "%s", a.head);
	cr_assert(http_closed(c, 3000), "Connection: close was not honoured");
	http_close(c);
}

Test(http, pipelining, .fini = harness_cleanup, .timeout = 30)
{
	struct harness_proc *p = http_gateway();
	struct http_client *c = http_open(p->port);

	http_send_str(c, "GET /noop HTTP/1.1\r\nHost: x\r\n\r\n"
			 "GET /v1/noop HTTP/1.1\r\nHost: x\r\n\r\n"
			 "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n");
	http_expect(c, 200, "{\"status\":\"ok\"}");
	http_expect(c, 200, "{\"result\":\"ok\"}");
	http_expect(c, 404, NULL);
	/* The connection survives the burst. */
	http_send_str(c, "GET /v1/noop HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
	http_expect(c, 200, "{\"result\":\"ok\"}");
	cr_assert(http_closed(c, 3000));
	http_close(c);
}

Test(http, pipelining_split, .fini = harness_cleanup, .timeout = 30)
{
	static const char three[] = "GET /noop HTTP/1.1\r\nHost: x\r\n\r\n"
				    "GET /v1/noop HTTP/1.1\r\nHost: x\r\nX-Pad: abc\r\n\r\n"
				    "GET /nope?q=1 HTTP/1.1\r\nHost: x\r\n\r\n";
	static const char one[] = "GET /v1/noop?a=b HTTP/1.1\r\nHost: x\r\nX-Long: value\r\n\r\n";
	struct harness_proc *p = http_gateway();
	struct http_client *c = http_open(p->port);
	size_t len = sizeof(three) - 1;

	/* Pieces of 7 bytes cut the requests inside tokens, CRLFs and between
	 * requests; the short pause between writes (pacing only, no waiting on a
	 * result) makes the pieces arrive in separate reads. */
	for (size_t off = 0; off < len; off += 7) {
		http_send(c, three + off, len - off < 7 ? len - off : 7);
		poll(NULL, 0, 1);
	}
	http_expect(c, 200, "{\"status\":\"ok\"}");
	http_expect(c, 200, "{\"result\":\"ok\"}");
	http_expect(c, 404, NULL);

	for (size_t i = 0; i < sizeof(one) - 1; i++) {
		http_send(c, one + i, 1);
		poll(NULL, 0, 1);
	}
	http_expect(c, 200, "{\"result\":\"ok\"}");

	/* A response must not come before the request is whole. */
	http_send_str(c, "GET /noop HTTP/1.1\r\nHost: x\r\n\r");
	cr_assert_not(http_fill(c, 300), "answered or closed before the final LF");
	http_send_str(c, "\n");
	http_expect(c, 200, "{\"status\":\"ok\"}");
	http_close(c);
}

Test(http, head_limits, .fini = harness_cleanup, .timeout = 30)
{
	struct harness_proc *p = http_gateway();
	static char req[16384];
	size_t cap = sizeof(req);
	struct http_client *c;
	int n;

	/* Under the limit: a 7000-byte header is fine. */
	c = http_open(p->port);
	n = snprintf(req, cap, "GET /noop HTTP/1.1\r\nHost: x\r\nX-Big: %0*d\r\n\r\n", 7000, 0);
	http_send(c, req, (size_t)n);
	http_expect(c, 200, "{\"status\":\"ok\"}");
	http_close(c);

	/* Over 8 KiB of head: 431. */
	n = snprintf(req, cap, "GET /noop HTTP/1.1\r\nHost: x\r\nX-Big: %0*d\r\n\r\n", 9000, 0);
	http_expect_fail(p->port, req, (size_t)n, 431, 1);
	/* An over-long target counts too. */
	n = snprintf(req, cap, "GET /noop?q=%0*d HTTP/1.1\r\nHost: x\r\n\r\n", 9000, 0);
	http_expect_fail(p->port, req, (size_t)n, 431, 2);

	/* 62 headers pass, 70 do not. */
	c = http_open(p->port);
	n = snprintf(req, cap, "GET /noop HTTP/1.1\r\nHost: x\r\n");
	for (int i = 0; i < 60; i++)
		n += snprintf(req + n, cap - (size_t)n, "X-H%d: v\r\n", i);
	n += snprintf(req + n, cap - (size_t)n, "Connection: close\r\n\r\n");
	http_send(c, req, (size_t)n);
	http_expect(c, 200, "{\"status\":\"ok\"}");
	http_close(c);

	n = snprintf(req, cap, "GET /noop HTTP/1.1\r\nHost: x\r\n");
	for (int i = 0; i < 70; i++)
		n += snprintf(req + n, cap - (size_t)n, "X-H%d: v\r\n", i);
	n += snprintf(req + n, cap - (size_t)n, "\r\n");
	http_expect_fail(p->port, req, (size_t)n, 431, 3);
	http_assert_prompt_noop(p->port);
}

Test(http, body_limits, .fini = harness_cleanup, .timeout = 30)
{
	struct harness_proc *p = http_gateway();
	static const char big_cl[] =
		"POST /v1/sfu HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
		"Content-Length: 20000\r\n\r\n";
	static const char small_chunked[] =
		"POST /noop HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
		"5\r\nhello\r\n0\r\n\r\n";
	static char req[32768];
	size_t cap = sizeof(req);
	struct http_client *c;
	int64_t t0;
	int n;

	/* Refused from the head alone: the body is never sent, so an answer
	 * within the deadline shows the gateway did not wait for it. */
	t0 = harness_now_ms();
	http_expect_fail(p->port, big_cl, sizeof(big_cl) - 1, 413, 4);
	cr_assert_lt(harness_now_ms() - t0, 5000);

	/* A small chunked body is read and routed (POST /noop: 405). */
	c = http_open(p->port);
	http_send_str(c, small_chunked);
	http_expect(c, 405, NULL);
	http_close(c);

	/* A chunked body over 16 KiB: five chunks of 4000 bytes, one write. */
	n = snprintf(req, cap, "POST /v1/sfu HTTP/1.1\r\nHost: x\r\n"
			       "Transfer-Encoding: chunked\r\n\r\n");
	for (int i = 0; i < 5; i++) {
		n += snprintf(req + n, cap - (size_t)n, "fa0\r\n");
		memset(req + n, 'a', 4000);
		n += 4000;
		n += snprintf(req + n, cap - (size_t)n, "\r\n");
	}
	n += snprintf(req + n, cap - (size_t)n, "0\r\n\r\n");
	http_expect_fail(p->port, req, (size_t)n, 413, 5);
	http_assert_prompt_noop(p->port);
}

Test(http, malformed, .fini = harness_cleanup, .timeout = 30)
{
	static const char *const bad[] = {
		"GET /noop HTTX/1.1\r\nHost: x\r\n\r\n", /* bad version */
		"GET  HTTP/1.1\r\nHost: x\r\n\r\n", /* no target */
		"GET /no op HTTP/1.1\r\nHost: x\r\n\r\n", /* space in the target */
		"GET /noop HTTP/1.1\r\nHost : x\r\n\r\n", /* space before the colon */
		"GET /noop HTTP/1.1\r\nHo\x01st: x\r\n\r\n", /* control byte in a name */
		"hello, world\r\n\r\n", /* not HTTP */
		"POST /v1/sfu HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
		"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", /* TE + CL */
		"POST /v1/sfu HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
		"Content-Length: 6\r\n\r\nhello!", /* two lengths */
		"POST /v1/sfu HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
		"POST /v1/sfu HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
		"zz\r\nhello\r\n0\r\n\r\n", /* bad chunk size */
	};
	/* A TLS ClientHello and raw binary, lengths given (they hold NULs). */
	static const char tls[] = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x00\x00";
	static const char bin[] = "\x00\xff\xfe\x7f\x80\r\n\r\n";
	struct harness_proc *p = http_gateway();

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		http_expect_fail(p->port, bad[i], strlen(bad[i]), 400, (int)i);
	http_expect_fail(p->port, tls, sizeof(tls) - 1, 400, 100);
	http_expect_fail(p->port, bin, sizeof(bin) - 1, 400, 101);

	/* A bad request after a good one on the same connection: the good one
	 * is answered, then the 400, then the close. */
	{
		struct http_client *c = http_open(p->port);

		http_send_str(c, "GET /noop HTTP/1.1\r\nHost: x\r\n\r\nGARBAGE\x01\r\n\r\n");
		http_expect(c, 200, "{\"status\":\"ok\"}");
		http_expect(c, 400, NULL);
		cr_assert(http_closed(c, 3000));
		http_close(c);
	}
	http_assert_prompt_noop(p->port);
	http_assert_no_worker_died(p);
}

/* A header line starting with ':' has an empty name, which llhttp 8 lets
 * through (found by tests/fuzz/fuzz_http): it is a malformed request. */
Test(http, empty_header_name, .fini = harness_cleanup, .timeout = 30)
{
	static const char *const bad[] = {
		"GET /noop HTTP/1.1\r\n: x\r\nHost: x\r\n\r\n",
		"GET /noop HTTP/1.1\r\nHost: x\r\n:\r\n\r\n",
		"GET /noop HTTP/1.1\n:\r\n\n", /* the fuzzer's own, minimised */
	};
	struct harness_proc *p = http_gateway();

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		http_expect_fail(p->port, bad[i], strlen(bad[i]), 400, (int)i);
	http_assert_prompt_noop(p->port);
	http_assert_no_worker_died(p);
}

Test(http, versions, .fini = harness_cleanup, .timeout = 30)
{
	/* Only HTTP/1.x is spoken. A request line without a version is HTTP/0.9,
	 * whose answer would have no status line at all, and "HTTP/2.0" in an
	 * HTTP/1 request line is no HTTP/2: both must be refused (400, or 505 for
	 * a version the server does not support), never answered 200. */
	static const char *const bad[] = {
		"GET /noop\r\nHost: x\r\n\r\n",
		"GET /noop HTTP/2.0\r\nHost: x\r\n\r\n",
		"GET /noop HTTP/1.2\r\nHost: x\r\n\r\n",
		"GET /noop HTTP/0.9\r\nHost: x\r\n\r\n",
	};
	struct harness_proc *p = http_gateway();
	char wrong[1024] = "";
	size_t n = 0;

	/* Every case is tried, so one run names all the wrong answers. */
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct http_client *c = http_open(p->port);
		struct http_answer a;
		int rc;

		http_send_str(c, bad[i]);
		rc = http_next(c, &a, 5000);
		/* Closing without an answer is acceptable too. */
		cr_assert(rc == 0 || rc == -ECONNRESET, "request %zu: %s", i, strerror(-rc));
		if (rc == 0 && a.status != 400 && a.status != 505 && n < sizeof(wrong))
			n += (size_t)snprintf(wrong + n, sizeof(wrong) - n,
					      " [%.*s: %d]", (int)strcspn(bad[i], "\r"), bad[i],
					      a.status);
		cr_assert(http_closed(c, 3000), "request %zu: the connection stayed open", i);
		http_close(c);
	}
	cr_assert_eq(n, 0, "answered other than 400/505:%s", wrong);
}

Test(http, head_has_no_body, .fini = harness_cleanup, .timeout = 30)
{
	/* Whatever the status of a HEAD (200 like GET, or 405), its response
	 * carries no body: a keep-alive client would read body bytes as the start
	 * of the next response. Checked on the bytes, with a pipelined GET behind. */
	struct harness_proc *p = http_gateway();
	struct http_client *c = http_open(p->port);
	int64_t deadline = harness_now_ms() + 5000;
	const char *end, *second;
	int status = 0;

	http_send_str(c, "HEAD /noop HTTP/1.1\r\nHost: x\r\n\r\n"
			 "GET /v1/noop HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
	while (!c->eof && harness_now_ms() < deadline && c->len < sizeof(c->buf) - 1)
		http_fill(c, (int)(deadline - harness_now_ms()));
	c->buf[c->len < sizeof(c->buf) ? c->len : sizeof(c->buf) - 1] = '\0';
	cr_assert(c->eof, "no close after Connection: close; got:\n%s", c->buf);
	sscanf(c->buf, "HTTP/1.1 %d", &status);
	cr_assert(status == 200 || status == 405, "HEAD: status %d\n%s", status, c->buf);
	end = strstr(c->buf, "\r\n\r\n");
	cr_assert_not_null(end, "no response head to HEAD:\n%s", c->buf);
	second = end + 4;
	cr_assert(strncmp(second, "HTTP/1.1 200 ", 13) == 0,
		  "the HEAD response carried a body; the bytes after its head are:\n%s", second);
	cr_assert_not_null(strstr(second, "{\"result\":\"ok\"}"));
	http_close(c);
}

Test(http, half_request_timeout, .fini = harness_cleanup, .timeout = 40)
{
	struct harness_proc *p = http_gateway();
	struct http_client *c = http_open(p->port);
	struct http_answer a;
	int64_t t0, took;
	bool cut = false;

	http_send_str(c, "GET /noop HTTP/1.1\r\nHost: x\r\nX-Half: ");
	t0 = harness_now_ms();
	while (harness_now_ms() - t0 < HTTP_SLOW_DEADLINE_MS) {
		int rc = http_next(c, &a, 1000);

		if (rc == 0) {
			cr_assert_eq(a.status, 408, "head:\n%s", a.head);
			cr_assert(http_closed(c, 3000), "still open after the 408");
			cut = true;
			break;
		}
		if (rc == -ECONNRESET) {
			cut = true;
			break;
		}
		cr_assert_eq(rc, -ETIMEDOUT);
		/* Meanwhile other clients are served as usual. */
		http_assert_prompt_noop(p->port);
	}
	took = harness_now_ms() - t0;
	cr_assert(cut, "a half request was still open after %lld ms", (long long)took);
	/* A slow but honest client must get a few seconds. */
	cr_assert_geq(took, 3000, "cut after only %lld ms", (long long)took);
	http_close(c);
}

Test(http, slowloris, .fini = harness_cleanup, .timeout = 40)
{
	static const char slow[] =
		"GET /noop HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaa";
	struct harness_proc *p = http_gateway();
	struct http_client *c = http_open(p->port);
	struct http_answer a;
	int64_t t0 = harness_now_ms(), took;
	bool cut = false;

	/* One byte a second; each wait is a read with a 1 s timeout, so the cut
	 * is seen the moment it happens. Bounded by the byte count and the clock. */
	for (size_t i = 0; i < sizeof(slow) - 1 && harness_now_ms() - t0 < HTTP_SLOW_DEADLINE_MS;
	     i++) {
		int rc;

		if (!http_send_fd(c->fd, slow + i, 1)) {
			cut = true;
			break;
		}
		rc = http_next(c, &a, 1000);
		if (rc == 0) {
			cr_assert_eq(a.status, 408, "head:\n%s", a.head);
			cr_assert(http_closed(c, 3000), "still open after the 408");
			cut = true;
			break;
		}
		if (rc == -ECONNRESET) {
			cut = true;
			break;
		}
		cr_assert_eq(rc, -ETIMEDOUT);
		http_assert_prompt_noop(p->port);
	}
	took = harness_now_ms() - t0;
	cr_assert(cut, "a client sending a byte a second was still connected after %lld ms",
		  (long long)took);
	cr_assert_lt(took, HTTP_SLOW_DEADLINE_MS);
	cr_assert_geq(took, 3000, "cut after only %lld ms", (long long)took);
	http_close(c);
}

/* Closes with an RST instead of a FIN. */
static void http_reset_close(int fd)
{
	struct linger l = { 1, 0 };

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
	close(fd);
}

Test(http, abrupt_clients, .fini = harness_cleanup, .timeout = 60)
{
	static const char half[] = "GET /noop HTTP/1.1\r\nHost: x\r\n";
	static const char body_half[] =
		"POST /v1/sfu HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"a\":";
	static const char full[] = "GET /noop HTTP/1.1\r\nHost: x\r\n\r\n";
	struct harness_proc *p = http_gateway();
	int fds[200];

	/* All 200 open at once, each left in a different state, then dropped. */
	for (int i = 0; i < 200; i++) {
		fds[i] = http_connect_fd(p->port);
		switch (i % 5) {
		case 0: break;
		case 1: http_send_fd(fds[i], half, sizeof(half) - 1); break;
		case 2: http_send_fd(fds[i], body_half, sizeof(body_half) - 1); break;
		case 3:
			/* Answers the client will never read. */
			for (int k = 0; k < 8; k++)
				http_send_fd(fds[i], full, sizeof(full) - 1);
			break;
		default: http_send_fd(fds[i], full, 10); break;
		}
	}
	for (int i = 0; i < 200; i++) {
		if (i % 2 == 0)
			http_reset_close(fds[i]);
		else
			close(fds[i]);
	}
	http_assert_prompt_noop(p->port);
	http_assert_prompt_noop(p->port);
	http_assert_no_worker_died(p);
}

static uint64_t http_rng = 0x5eed5eed12345678ULL;

/* xorshift64: a fixed seed makes every run send the same bytes. */
static uint32_t http_rand(void)
{
	http_rng ^= http_rng << 13;
	http_rng ^= http_rng >> 7;
	http_rng ^= http_rng << 17;
	return (uint32_t)(http_rng >> 16);
}

/* One fuzz payload: random bytes, real requests with a random tail or random
 * byte changes, or a soup of HTTP tokens. Returns its length. */
static size_t http_fuzz_payload(char *out, size_t cap)
{
	static const char *const seeds[] = {
		"GET /noop HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /v1/sfu HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
		"GET /v1/channel?region=eu-west&x=1 HTTP/1.1\r\nAuthorization: jwt a.b.c\r\n\r\n",
		/* Chunk extension and trailer. */
		("POST /v1/sfu HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n"
		 "0\r\nT: v\r\n\r\n"),
		"GET /v1/noop HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
	};
	static const char *const words[] = {
		"GET ", "POST ", "PUT ", "/", "/noop", "/v1/channel", "?", "&", "=", " HTTP/1.1",
		" HTTP/1.0", " HTTP/2.0", "\r\n", "\n", "\r", ": ", ":", " ", "\t", "Host",
		"Content-Length", "Transfer-Encoding", "chunked", "Connection", "close",
		"keep-alive", "Upgrade", "0", "5", "-1", "99999999999999999999", "ffff", "\x00",
		"\xff", "%00", "%", "Expect", "100-continue", "Authorization", "jwt ",
	};
	size_t n = 0, mode = http_rand() % 4;

	if (mode == 0) {
		n = 1 + http_rand() % 1024;
		for (size_t i = 0; i < n; i++)
			out[i] = (char)http_rand();
	} else if (mode == 1 || mode == 2) {
		/* One to three seeds back to back (pipelined). */
		for (int k = 1 + (int)(http_rand() % 3); k > 0; k--) {
			const char *s = seeds[http_rand() % (sizeof(seeds) / sizeof(seeds[0]))];
			size_t sl = strlen(s);

			if (n + sl > cap / 2)
				break;
			memcpy(out + n, s, sl);
			n += sl;
		}
		if (mode == 1) {
			for (size_t t = http_rand() % 64; t > 0 && n < cap; t--)
				out[n++] = (char)http_rand();
		} else {
			for (int k = 1 + (int)(http_rand() % 6); k > 0; k--)
				out[http_rand() % n] = (char)http_rand();
		}
	} else {
		for (int k = 1 + (int)(http_rand() % 40); k > 0; k--) {
			const char *w = words[http_rand() % (sizeof(words) / sizeof(words[0]))];
			/* "\x00" is one NUL byte, which strlen cannot count. */
			size_t wl = w[0] == '\0' ? 1 : strlen(w);

			if (n + wl > cap)
				break;
			memcpy(out + n, w, wl);
			n += wl;
		}
	}
	return n;
}

Test(http, fuzz, .fini = harness_cleanup, .timeout = 90)
{
	static const char *const args[] = { "--workers", "1", "--log-level", "debug", NULL };
	struct harness_proc *p = http_gateway_with(args);
	char payload[4096];
	int hung = 0;

	for (int i = 0; i < 300; i++) {
		struct http_client *c = http_open(p->port);
		size_t n = http_fuzz_payload(payload, sizeof(payload));
		int64_t deadline;

		http_send_fd(c->fd, payload, n);
		/* Half-close: whatever the bytes were, the gateway must answer what
		 * it can and close once it sees the end of the stream. */
		shutdown(c->fd, SHUT_WR);
		deadline = harness_now_ms() + 3000;
		while (!c->eof && harness_now_ms() < deadline) {
			http_fill(c, (int)(deadline - harness_now_ms()));
			c->len = 0; /* the answers themselves do not matter here */
		}
		if (!c->eof)
			hung++;
		if (i % 2 == 0)
			http_reset_close(c->fd);
		else
			close(c->fd);
		c->fd = 0;
	}
	cr_assert_eq(hung, 0, "%d connections stayed open after the client's FIN", hung);
	http_assert_prompt_noop(p->port);
	http_assert_no_worker_died(p);
}

/* base64 of the 34 bytes "sfu-gateway-test-sfu-key-012345678" */
#define HTTP_SFU_KEY "c2Z1LWdhdGV3YXktdGVzdC1zZnUta2V5LTAxMjM0NTY3OA=="
#define HTTP_HALF_CLOSE_TRIALS 50

/*
 * A client that pipelines requests and half-closes (shutdown(SHUT_WR)) right
 * after them still reads: every request that arrived before the FIN gets its
 * answer, in order, and only then does the gateway close. Channel requests
 * wait on a (slightly slow) mock SFU, so the FIN arrives while the first one
 * is being handled and the others are queued behind it; /noop in the middle
 * is answered at once when its turn comes.
 */
Test(http, pipelined_half_close_answers_every_request, .fini = harness_cleanup, .timeout = 90)
{
	static const char *const slow[] = { "--delay-ms", "5", NULL };
	struct harness_proc *m = harness_mock_start(HTTP_SFU_KEY, slow), *gw;
	char toml[512], req[3][2048];
	int lost = 0, first_bad = -1;

	cr_assert_not_null(m);
	snprintf(toml, sizeof(toml), "[[sfu]]\naddress = \"%s\"\nkey = \"%s\"\n",
		 harness_url(m->port), HTTP_SFU_KEY);
	gw = harness_gateway_keyed(HTTP_TEST_KEY, NULL, 1, toml);
	for (int t = 0; t < HTTP_HALF_CLOSE_TRIALS; t++) {
		struct http_client *c = http_open(gw->port);
		struct http_answer a;
		int got = 0, rc = 0;
		char burst[6144];
		size_t n = 0;

		for (int k = 0; k < 3; k++) {
			/* Odd trials put a /noop in the middle. */
			if (k == 1 && t % 2 == 1)
				snprintf(req[k], sizeof(req[k]), "GET /noop HTTP/1.1\r\nHost: x\r\n\r\n");
			else
				snprintf(req[k], sizeof(req[k]),
					 "GET /v1/channel HTTP/1.1\r\nHost: x\r\nAuthorization: jwt %s\r\n\r\n",
					 harness_odoo_token("https://odoo.test:channel:half-close",
							    HTTP_TEST_KEY));
			memcpy(burst + n, req[k], strlen(req[k]));
			n += strlen(req[k]);
		}
		http_send(c, burst, n);
		cr_assert_eq(shutdown(c->fd, SHUT_WR), 0, "shutdown(): %s", strerror(errno));
		while (got < 3 && (rc = http_next(c, &a, 5000)) == 0) {
			cr_assert_eq(a.status, 200, "trial %d, answer %d: status %d\n%s%s", t, got,
				     a.status, a.head, a.body);
			got++;
		}
		if (got < 3) {
			lost++;
			if (first_bad < 0)
				first_bad = t;
		} else {
			cr_assert(http_closed(c, 3000),
				  "trial %d: the connection stayed open after the last answer", t);
		}
		http_close(c);
	}
	cr_assert_eq(lost, 0, "%d of %d half-closed connections lost answers (first: trial %d)",
		     lost, HTTP_HALF_CLOSE_TRIALS, first_bad);
}
