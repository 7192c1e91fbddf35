/* Fuzz target: the HTTP/1.1 server (llhttp settings, callbacks, pipelining, limits) over a socket. */
#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <llhttp.h>

#include "fuzz.h"
#include "http_server.h"
#include "log.h"

/*
 * The input is what one client sends on one connection. The server is the
 * daemon's own, started with http_server_start on a listening socket, so the
 * bytes take the daemon's path: accept, read, llhttp with the server's
 * settings and callbacks, request limits, pipelining, responses and close.
 * The socket is an abstract AF_UNIX one: no file, no port, and no TIME_WAIT
 * after millions of connections. Each input is sent in up to four pieces,
 * cut where a hash of the input says, so requests also arrive split inside a
 * request line, a header or a body; the client then half-closes and reads
 * until the server closes. The handler answers at once or from a timer
 * (the daemon answers channel requests later, after the SFU did), and checks
 * what http_server promises about a request.
 */

#define FUZZ_MAX_ITER 200000
#define FUZZ_MAX_DEFER 64

/* What a request gets: /x... a 404 error, /big... more than the socket buffer
 * takes at once (so the write completes later, in conn_on_write), anything
 * else a small JSON answer. */
enum fuzz_answer { FUZZ_OK, FUZZ_ERROR, FUZZ_BIG };

static uv_loop_t fuzz_loop;
static struct http_server fuzz_srv;
static struct sockaddr_un fuzz_addr;
static socklen_t fuzz_addr_len;
static uv_timer_t fuzz_defer_timer;
static struct http_conn *fuzz_deferred[FUZZ_MAX_DEFER];
static enum fuzz_answer fuzz_deferred_what[FUZZ_MAX_DEFER];
static size_t fuzz_n_deferred;
static bool fuzz_accepted;
static size_t fuzz_handled, fuzz_responses;

static void fuzz_check_request(const struct http_request *r)
{
	const struct http_header *cl, *te;
	unsigned sum = 0;

	FUZZ_CHECK(r->target != NULL && r->target[r->target_len] == '\0');
	FUZZ_CHECK(r->path_len <= r->target_len);
	FUZZ_CHECK(memchr(r->target, '?', r->path_len) == NULL);
	if (r->has_query) {
		FUZZ_CHECK(r->target[r->path_len] == '?' && r->query == r->target + r->path_len + 1);
		FUZZ_CHECK(r->query_len == r->target_len - r->path_len - 1);
	} else {
		FUZZ_CHECK(r->path_len == r->target_len && r->query_len == 0);
	}
	FUZZ_CHECK(r->query[r->query_len] == '\0');
	FUZZ_CHECK(r->n_headers <= HTTP_MAX_HEADERS);
	for (size_t i = 0; i < r->n_headers; i++) {
		const struct http_header *h = &r->headers[i];

		FUZZ_CHECK(h->name_len > 0 && h->name[h->name_len] == '\0');
		FUZZ_CHECK(h->value[h->value_len] == '\0');
		/* Values come trimmed on both sides. */
		if (h->value_len > 0) {
			FUZZ_CHECK(h->value[0] != ' ' && h->value[0] != '\t');
			FUZZ_CHECK(h->value[h->value_len - 1] != ' ' &&
				   h->value[h->value_len - 1] != '\t');
		}
		for (size_t j = 0; j < h->name_len; j++)
			sum += (unsigned char)h->name[j];
		for (size_t j = 0; j < h->value_len; j++)
			sum += (unsigned char)h->value[j];
	}
	FUZZ_CHECK(r->body != NULL && r->body_len <= HTTP_BODY_MAX && r->body[r->body_len] == '\0');
	for (size_t j = 0; j < r->body_len; j++)
		sum += (unsigned char)r->body[j];
	/* The body the handler sees is the one Content-Length announced: the
	 * length the server framed the request with (no smuggling through a
	 * second reading of the head). */
	cl = http_request_header(r, "Content-Length");
	te = http_request_header(r, "Transfer-Encoding");
	if (cl != NULL && te == NULL)
		FUZZ_CHECK(strtoull(cl->value, NULL, 10) == r->body_len);
	if (cl == NULL && te == NULL)
		FUZZ_CHECK(r->body_len == 0);
	(void)sum;
}

static void fuzz_answer(struct http_conn *c, enum fuzz_answer what)
{
	static const char body[] = "{\"uuid\":\"6c3e9a2b-1f4d-4e8a-9b7c-5d2e1f0a3b4c\"}";
	static char big[1 << 20];

	switch (what) {
	case FUZZ_ERROR:
		http_respond_error(c, 404, "not found", NULL);
		break;
	case FUZZ_BIG:
		if (big[0] == '\0')
			memset(big, 'b', sizeof(big));
		http_respond(c, 200, "text/plain", NULL, big, sizeof(big));
		break;
	case FUZZ_OK:
		http_respond(c, 200, "application/json", "X-Fuzz: 1\r\n", body, sizeof(body) - 1);
		break;
	}
}

static enum fuzz_answer fuzz_answer_for(const struct http_request *req)
{
	if (req->path_len >= 2 && req->target[1] == 'x')
		return FUZZ_ERROR;
	if (req->path_len >= 4 && memcmp(req->target, "/big", 4) == 0)
		return FUZZ_BIG;
	return FUZZ_OK;
}

static void fuzz_on_defer(uv_timer_t *t)
{
	(void)t;
	/* Answering may feed the next pipelined request, which may be
	 * deferred in turn: take the list as it is now. */
	while (fuzz_n_deferred > 0) {
		struct http_conn *c = fuzz_deferred[0];
		enum fuzz_answer what = fuzz_deferred_what[0];

		fuzz_n_deferred--;
		memmove(fuzz_deferred, fuzz_deferred + 1, fuzz_n_deferred * sizeof(*fuzz_deferred));
		memmove(fuzz_deferred_what, fuzz_deferred_what + 1,
			fuzz_n_deferred * sizeof(*fuzz_deferred_what));
		fuzz_answer(c, what);
	}
}

static void fuzz_handler(struct http_conn *c, const struct http_request *req, void *ctx)
{
	(void)ctx;
	fuzz_handled++;
	fuzz_check_request(req);
	/* Odd targets are answered later, from the loop, as a proxied request. */
	if ((req->target_len & 1) && fuzz_n_deferred < FUZZ_MAX_DEFER) {
		fuzz_deferred_what[fuzz_n_deferred] = fuzz_answer_for(req);
		fuzz_deferred[fuzz_n_deferred++] = c;
		uv_timer_start(&fuzz_defer_timer, fuzz_on_defer, 0, 0);
		return;
	}
	fuzz_answer(c, fuzz_answer_for(req));
}

static void fuzz_on_accept(void *ctx)
{
	(void)ctx;
	fuzz_accepted = true;
}

static void fuzz_on_response(void *ctx, const struct http_request *req, int status)
{
	(void)ctx;
	(void)req;
	fuzz_responses++;
	FUZZ_CHECK(strcmp(http_status_text(status), "Unknown") != 0);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct http_limits lim = { 10000, 60000 }; /* the worker's */
	int fd;

	(void)argc;
	(void)argv;
	log_set_level(LOG_LEVEL_ERROR);
	FUZZ_CHECK(uv_loop_init(&fuzz_loop) == 0);
	FUZZ_CHECK(uv_timer_init(&fuzz_loop, &fuzz_defer_timer) == 0);
	memset(&fuzz_addr, 0, sizeof(fuzz_addr));
	fuzz_addr.sun_family = AF_UNIX;
	/* Abstract namespace: sun_path starts with a NUL, nothing in the file system. */
	fuzz_addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 +
				    (size_t)snprintf(fuzz_addr.sun_path + 1,
						     sizeof(fuzz_addr.sun_path) - 1,
						     "sfu-gateway-fuzz-http-%d", (int)getpid()));
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	FUZZ_CHECK(fd >= 0);
	FUZZ_CHECK(bind(fd, (struct sockaddr *)&fuzz_addr, fuzz_addr_len) == 0);
	FUZZ_CHECK(listen(fd, 64) == 0);
	FUZZ_CHECK(http_server_start(&fuzz_srv, &fuzz_loop, fd, &lim, fuzz_handler, NULL) == 0);
	fuzz_srv.on_accept = fuzz_on_accept;
	fuzz_srv.on_response = fuzz_on_response;
	return 0;
}

/* FNV-1a: where the input is cut, the same for the same input. */
static uint64_t fuzz_hash(const uint8_t *data, size_t size)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (size_t i = 0; i < size; i++)
		h = (h ^ data[i]) * 0x100000001b3ULL;
	return h;
}

static int fuzz_cmp_size(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;

	return x < y ? -1 : x > y;
}

/* Reads what the server sent; the first bytes must be a status line. */
static bool fuzz_client_read(int fd, size_t *got, char *first, size_t first_cap)
{
	char buf[65536];

	for (;;) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);

		if (n > 0) {
			if (*got < first_cap)
				memcpy(first + *got, buf,
				       (size_t)n < first_cap - *got ? (size_t)n : first_cap - *got);
			*got += (size_t)n;
			continue;
		}
		if (n == 0 || (errno != EAGAIN && errno != EINTR))
			return true; /* EOF, or the server reset the connection */
		if (errno == EAGAIN)
			return false;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint64_t h = fuzz_hash(data, size);
	size_t cuts[5], n_cuts = 1 + h % 4, piece = 0, sent = 0, got = 0;
	char first[16];
	bool shut = false, eof = false;
	int fd;

	if (size > 1 << 20)
		return 0;
	cuts[0] = 0;
	for (size_t i = 1; i < n_cuts; i++)
		cuts[i] = (size_t)((h >> (16 * i)) % (size + 1));
	qsort(cuts + 1, n_cuts - 1, sizeof(cuts[0]), fuzz_cmp_size);
	cuts[n_cuts] = size;

	fuzz_accepted = false;
	fuzz_handled = fuzz_responses = 0;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	FUZZ_CHECK(fd >= 0);
	FUZZ_CHECK(connect(fd, (struct sockaddr *)&fuzz_addr, fuzz_addr_len) == 0);

	for (int iter = 0;; iter++) {
		/* The server must answer and close within a bounded number of turns
		 * once the client is done: a hang here is a bug. */
		FUZZ_CHECK(iter < FUZZ_MAX_ITER);
		if (sent < size) {
			while (piece < n_cuts && sent >= cuts[piece + 1])
				piece++;
			if (piece < n_cuts) {
				ssize_t n = send(fd, data + sent, cuts[piece + 1] - sent, MSG_NOSIGNAL);

				if (n > 0)
					sent += (size_t)n;
				else if (n < 0 && errno != EAGAIN && errno != EINTR)
					sent = size; /* the server closed: stop sending */
			}
		}
		if (sent == size && !shut) {
			shutdown(fd, SHUT_WR);
			shut = true;
		}
		if (!eof)
			eof = fuzz_client_read(fd, &got, first, sizeof(first));
		uv_run(&fuzz_loop, UV_RUN_NOWAIT);
		if (fuzz_accepted && fuzz_srv.n_conns == 0 && fuzz_n_deferred == 0)
			break;
	}
	while (!eof)
		eof = fuzz_client_read(fd, &got, first, sizeof(first));
	close(fd);
	/* Close callbacks free the connection. */
	uv_run(&fuzz_loop, UV_RUN_NOWAIT);
	FUZZ_CHECK(fuzz_srv.n_busy == 0);
	if (got > 0)
		FUZZ_CHECK(memcmp(first, "HTTP/1.1 ", got < 9 ? got : 9) == 0);
	FUZZ_CHECK(fuzz_responses <= fuzz_handled + 1);
	return 0;
}
