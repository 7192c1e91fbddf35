/* Unit tests of the HTTP client's response headers: given whole whatever the split, long ones skipped, abort. */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "http_client.h"

/* A one-shot server thread: accepts one connection, reads the request head, writes the
 * answer `piece` bytes at a time. */
struct hc_server {
	int fd, port;
	const char *answer;
	size_t piece;
	pthread_t thread;
};

static void *hc_serve(void *arg)
{
	struct hc_server *s = arg;
	int c = accept(s->fd, NULL, NULL), one = 1;
	char buf[4096];
	size_t got = 0, len = strlen(s->answer);

	if (c < 0)
		return NULL;
	setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	while (got < sizeof(buf) - 1) {
		ssize_t n = read(c, buf + got, sizeof(buf) - 1 - got);

		if (n <= 0)
			break;
		got += (size_t)n;
		buf[got] = '\0';
		if (strstr(buf, "\r\n\r\n") != NULL)
			break;
	}
	for (size_t o = 0; o < len; o += s->piece) {
		size_t n = len - o < s->piece ? len - o : s->piece;

		if (write(c, s->answer + o, n) < 0)
			break;
		if (s->piece < 16)
			usleep(200); /* separate reads on the client's side */
	}
	close(c);
	return NULL;
}

static void hc_server_start(struct hc_server *s, const char *answer, size_t piece)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t al = sizeof(a);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	s->fd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_geq(s->fd, 0);
	cr_assert_eq(bind(s->fd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(listen(s->fd, 1), 0);
	cr_assert_eq(getsockname(s->fd, (struct sockaddr *)&a, &al), 0);
	s->port = ntohs(a.sin_port);
	s->answer = answer;
	s->piece = piece;
	cr_assert_eq(pthread_create(&s->thread, NULL, hc_serve, s), 0);
}

static void hc_server_stop(struct hc_server *s)
{
	pthread_join(s->thread, NULL);
	close(s->fd);
}

struct hc_seen {
	char etag[HTTP_CLIENT_HEADER_VALUE_MAX + 1];
	char cache[HTTP_CLIENT_HEADER_VALUE_MAX + 1];
	int headers, long_seen;
	bool abort_on_etag;
	char body[256];
	size_t body_len;
	bool done;
	int error, status;
};

static int hc_on_header(void *ctx, const char *name, size_t nlen, const char *value, size_t vlen)
{
	struct hc_seen *s = ctx;

	s->headers++;
	if (nlen == 4 && strncasecmp(name, "etag", 4) == 0) {
		snprintf(s->etag, sizeof(s->etag), "%.*s", (int)vlen, value);
		if (s->abort_on_etag)
			return -1;
	} else if (nlen == 13 && strncasecmp(name, "cache-control", 13) == 0) {
		snprintf(s->cache, sizeof(s->cache), "%.*s", (int)vlen, value);
	} else if (nlen == 6 && strncasecmp(name, "x-long", 6) == 0) {
		s->long_seen++;
	}
	return 0;
}

static int hc_on_body(void *ctx, const char *at, size_t len)
{
	struct hc_seen *s = ctx;

	if (len > sizeof(s->body) - s->body_len)
		return -1;
	memcpy(s->body + s->body_len, at, len);
	s->body_len += len;
	return 0;
}

static void hc_done(const struct http_client_result *res, void *ctx)
{
	struct hc_seen *s = ctx;

	s->done = true;
	s->error = res->error;
	s->status = res->status;
}

/* One GET against an answer served piece bytes at a time. */
static void hc_get(const char *answer, size_t piece, struct hc_seen *seen)
{
	struct hc_server srv;
	uv_loop_t loop;
	struct http_client *cl;
	struct http_client_req req = { .method = "GET", .target = "/list", .target_len = 5,
				       .timeout_ms = 5000, .connect_timeout_ms = 5000,
				       .on_body = hc_on_body, .on_header = hc_on_header };
	char address[64];

	hc_server_start(&srv, answer, piece);
	cr_assert_eq(uv_loop_init(&loop), 0);
	cr_assert_eq(http_client_new(&cl, &loop), 0);
	snprintf(address, sizeof(address), "http://127.0.0.1:%d", srv.port);
	cr_assert_eq(http_client_request(cl, address, &req, hc_done, seen), 0);
	while (!seen->done)
		uv_run(&loop, UV_RUN_ONCE);
	http_client_free(cl);
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
	hc_server_stop(&srv);
}

static char *hc_answer(void)
{
	static char a[2048];
	char longv[HTTP_CLIENT_HEADER_VALUE_MAX + 10];

	memset(longv, 'x', sizeof(longv) - 1);
	longv[sizeof(longv) - 1] = '\0';
	snprintf(a, sizeof(a),
		 "HTTP/1.1 200 OK\r\nETag: W/\"v42-abc\"\r\nX-Long: %s\r\n"
		 "Cache-Control: public, max-age=30\r\nContent-Length: 11\r\n\r\n{\"sfu\":[ ]}",
		 longv);
	return a;
}

Test(http_client, headers_are_given_whole_in_any_split, .timeout = 30)
{
	static const size_t pieces[] = { 1, 3, 7, 64, 4096 };

	for (size_t k = 0; k < sizeof(pieces) / sizeof(pieces[0]); k++) {
		struct hc_seen seen;

		memset(&seen, 0, sizeof(seen));
		hc_get(hc_answer(), pieces[k], &seen);
		cr_assert_eq(seen.error, 0, "piece %zu: %d", pieces[k], seen.error);
		cr_assert_eq(seen.status, 200);
		cr_assert_str_eq(seen.etag, "W/\"v42-abc\"", "piece %zu", pieces[k]);
		cr_assert_str_eq(seen.cache, "public, max-age=30", "piece %zu", pieces[k]);
		cr_assert_eq(seen.long_seen, 0, "a header over the bound was given");
		cr_assert_eq(seen.headers, 3, "piece %zu: %d headers", pieces[k], seen.headers);
		cr_assert_eq(seen.body_len, 11);
	}
}

Test(http_client, a_header_callback_can_abort, .timeout = 30)
{
	struct hc_seen seen;

	memset(&seen, 0, sizeof(seen));
	seen.abort_on_etag = true;
	hc_get(hc_answer(), 4096, &seen);
	cr_assert_eq(seen.error, UV_EPROTO);
	cr_assert_eq(seen.body_len, 0);
}
