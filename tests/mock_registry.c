/* Mock external registry for tests and benchmarks: serves an SFU list with ETag/304, counts requests, injects faults. */
/*
 * Like the mock SFU, it shares no code with src/ but the logger: it is a second,
 * independent reading of HTTP, so that it catches the gateway's mistakes instead of
 * repeating them.
 *
 * Any GET outside /mock/ is the list. It answers 304 when If-None-Match names the
 * current ETag ("v<version>"), else 200 with the document; the version moves each time
 * the document is replaced. With --token, a list request without "Authorization: Bearer
 * <token>" gets 401. Faults apply to list requests only:
 *   status    answer with status N and a short body
 *   garbage   200 with a body that is not JSON
 *   oversized 200 with a valid document padded to N bytes
 *   hang      read the request, never answer
 *   delay     answer after N ms
 *   close     close the connection without an answer
 * Control: POST /mock/doc (body: the new document), POST /mock/fault?mode=M&status=N
 * &ms=N&bytes=N&count=N (count 0: until changed), POST /mock/cache?max_age=N (-1: none),
 * POST /mock/etag?on=0|1, POST /mock/reset-stats, GET /mock/stats.
 */
#include "log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <llhttp.h>
#include <uv.h>

#define MR_URL_MAX 2048
#define MR_HDR_MAX 1024
#define MR_BODY_MAX (64 << 20)

enum mr_mode { MR_OK, MR_STATUS, MR_GARBAGE, MR_OVERSIZED, MR_HANG, MR_DELAY, MR_CLOSE };
static const char *const mr_mode_names[] = { "ok",   "status", "garbage", "oversized",
					     "hang", "delay",  "close" };

struct mr_conn {
	uv_tcp_t tcp;
	uv_timer_t timer;
	llhttp_t parser;
	int handles;
	int closing;
	int method;
	int keep_alive;
	char url[MR_URL_MAX];
	size_t url_len;
	char hname[64];
	size_t hname_len;
	char hval[MR_HDR_MAX];
	size_t hval_len;
	int hskip;
	char inm[MR_HDR_MAX];
	int has_inm;
	char auth[MR_HDR_MAX];
	int has_auth;
	char *body;
	size_t body_len, body_cap;
	int complete;
	char *pending; /* a delayed answer */
	size_t pending_len;
};

static struct {
	const char *bind;
	int port;
	const char *token;
	int quiet;
} mr_cfg = { "127.0.0.1", 0, NULL, 0 };

static struct {
	char *doc;
	size_t doc_len;
	uint64_t version;
	int etag_on;
	long max_age; /* -1: no Cache-Control */
	enum mr_mode mode;
	int fail_status;
	long delay_ms;
	long bytes;
	long count; /* faulted requests left; 0 = until changed */
} mr_state = { NULL, 0, 1, 1, -1, MR_OK, 500, 0, 0, 0 };

static struct {
	uint64_t requests, ok, not_modified, faulted, unauthorized, control;
	uint64_t delayed_sent; /* delayed answers written so far */
	char last_inm[MR_HDR_MAX];
	int has_last_inm;
	int last_authorized;
} mr_stats;

static uv_loop_t *mr_loop;
static uv_tcp_t mr_server;
static llhttp_settings_t mr_settings;
static uv_signal_t mr_sigterm, mr_sigint;

static void mr_conn_close(struct mr_conn *c);

static void mr_set_doc(const char *text, size_t len)
{
	char *d = malloc(len + 1);

	if (d == NULL)
		fatal("out of memory");
	memcpy(d, text, len);
	d[len] = '\0';
	free(mr_state.doc);
	mr_state.doc = d;
	mr_state.doc_len = len;
	mr_state.version++;
}

/* ---- writing answers */

struct mr_write {
	uv_write_t req;
	char *buf;
	int close_after;
	struct mr_conn *c;
};

static void mr_on_written(uv_write_t *w, int status)
{
	struct mr_write *mw = (struct mr_write *)w;

	(void)status;
	if (mw->close_after)
		mr_conn_close(mw->c);
	free(mw->buf);
	free(mw);
}

static void mr_send_raw(struct mr_conn *c, char *buf, size_t len, int close_after)
{
	struct mr_write *mw = calloc(1, sizeof(*mw));
	uv_buf_t b = uv_buf_init(buf, (unsigned)len);

	if (mw == NULL || c->closing) {
		free(buf);
		free(mw);
		return;
	}
	mw->buf = buf;
	mw->close_after = close_after;
	mw->c = c;
	if (uv_write(&mw->req, (uv_stream_t *)&c->tcp, &b, 1, mr_on_written) != 0) {
		free(buf);
		free(mw);
		mr_conn_close(c);
	}
}

/* Builds "HTTP/1.1 status" with extra header lines and a body into a heap buffer. */
static char *mr_build(int status, const char *headers, const char *body, size_t body_len,
		      size_t *out_len)
{
	size_t hl = headers ? strlen(headers) : 0, cap = hl + body_len + 256;
	char *buf = malloc(cap);
	int n;

	if (buf == NULL)
		fatal("out of memory");
	n = snprintf(buf, cap, "HTTP/1.1 %d %s\r\n%sContent-Length: %zu\r\n\r\n", status,
		     status == 200 ? "OK" : status == 304 ? "Not Modified" : "Status",
		     headers ? headers : "", status == 304 ? (size_t)0 : body_len);
	if (status != 304 && body_len > 0) {
		memcpy(buf + n, body, body_len);
		n += (int)body_len;
	}
	*out_len = (size_t)n;
	return buf;
}

static void mr_respond(struct mr_conn *c, int status, const char *headers, const char *body,
		       size_t body_len)
{
	size_t len;
	char *buf = mr_build(status, headers, body, body_len, &len);

	mr_send_raw(c, buf, len, !c->keep_alive);
}

static void mr_respond_json(struct mr_conn *c, const char *json)
{
	mr_respond(c, 200, "Content-Type: application/json\r\n", json, strlen(json));
}

/* ---- the list */

static void mr_cache_headers(char *out, size_t outlen)
{
	size_t n = 0;

	out[0] = '\0';
	if (mr_state.etag_on)
		n += (size_t)snprintf(out + n, outlen - n, "ETag: \"v%" PRIu64 "\"\r\n",
				      mr_state.version);
	if (mr_state.max_age >= 0)
		snprintf(out + n, outlen - n, "Cache-Control: max-age=%ld\r\n", mr_state.max_age);
}

static void mr_on_delay(uv_timer_t *t)
{
	struct mr_conn *c = t->data;

	if (c->pending != NULL) {
		mr_send_raw(c, c->pending, c->pending_len, !c->keep_alive);
		c->pending = NULL;
		mr_stats.delayed_sent++;
	}
}

static void mr_list(struct mr_conn *c)
{
	char headers[512], etag[64];
	enum mr_mode mode = mr_state.mode;

	mr_stats.requests++;
	mr_stats.has_last_inm = c->has_inm;
	snprintf(mr_stats.last_inm, sizeof(mr_stats.last_inm), "%s", c->has_inm ? c->inm : "");
	if (mr_cfg.token != NULL) {
		char want[MR_HDR_MAX];

		snprintf(want, sizeof(want), "Bearer %s", mr_cfg.token);
		mr_stats.last_authorized = c->has_auth && strcmp(c->auth, want) == 0;
		if (!mr_stats.last_authorized) {
			mr_stats.unauthorized++;
			mr_respond(c, 401, "Content-Type: application/json\r\n",
				   "{\"error\":\"unauthorized\"}", 24);
			return;
		}
	}
	if (mode != MR_OK) {
		mr_stats.faulted++;
		if (mr_state.count > 0 && --mr_state.count == 0)
			mr_state.mode = MR_OK;
	}
	mr_cache_headers(headers, sizeof(headers));
	switch (mode) {
	case MR_STATUS:
		mr_respond(c, mr_state.fail_status, "Content-Type: text/plain\r\n", "failing\n", 8);
		return;
	case MR_GARBAGE:
		mr_respond(c, 200, headers, "{\"sfu\": [ this is not JSON", 26);
		return;
	case MR_OVERSIZED: {
		size_t n = (size_t)mr_state.bytes < 16 ? 16 : (size_t)mr_state.bytes;
		char *body = malloc(n);

		if (body == NULL)
			fatal("out of memory");
		/* A valid, empty list: only its size is wrong. */
		memset(body, ' ', n);
		memcpy(body, "{\"sfu\":[]", 9);
		body[n - 1] = '}';
		mr_respond(c, 200, headers, body, n);
		free(body);
		return;
	}
	case MR_HANG:
		return;
	case MR_CLOSE:
		mr_conn_close(c);
		return;
	case MR_DELAY:
	case MR_OK:
		break;
	}
	snprintf(etag, sizeof(etag), "\"v%" PRIu64 "\"", mr_state.version);
	if (mr_state.etag_on && c->has_inm && strcmp(c->inm, etag) == 0) {
		mr_stats.not_modified++;
		if (mode == MR_DELAY) {
			c->pending = mr_build(304, headers, NULL, 0, &c->pending_len);
			uv_timer_start(&c->timer, mr_on_delay, (uint64_t)mr_state.delay_ms, 0);
			return;
		}
		mr_respond(c, 304, headers, NULL, 0);
		return;
	}
	mr_stats.ok++;
	strncat(headers, "Content-Type: application/json\r\n", sizeof(headers) - strlen(headers) - 1);
	if (mode == MR_DELAY) {
		c->pending = mr_build(200, headers, mr_state.doc, mr_state.doc_len, &c->pending_len);
		uv_timer_start(&c->timer, mr_on_delay, (uint64_t)mr_state.delay_ms, 0);
		return;
	}
	mr_respond(c, 200, headers, mr_state.doc, mr_state.doc_len);
}

/* ---- control */

/* The value of name in query q ("a=1&b=2"), into out; 0 when absent. */
static int mr_query(const char *q, const char *name, char *out, size_t outlen)
{
	size_t nl = strlen(name);

	while (q != NULL && *q != '\0') {
		const char *amp = strchr(q, '&');
		size_t len = amp ? (size_t)(amp - q) : strlen(q);

		if (len > nl && strncmp(q, name, nl) == 0 && q[nl] == '=') {
			snprintf(out, outlen, "%.*s", (int)(len - nl - 1), q + nl + 1);
			return 1;
		}
		q = amp ? amp + 1 : NULL;
	}
	return 0;
}

static void mr_control(struct mr_conn *c, const char *path, const char *query)
{
	char v[64], buf[MR_HDR_MAX + 512];

	mr_stats.control++;
	if (c->method == HTTP_POST && strcmp(path, "/mock/doc") == 0) {
		mr_set_doc(c->body ? c->body : "", c->body_len);
		snprintf(buf, sizeof(buf), "{\"version\":%" PRIu64 ",\"etag\":\"\\\"v%" PRIu64 "\\\"\"}",
			 mr_state.version, mr_state.version);
		mr_respond_json(c, buf);
	} else if (c->method == HTTP_POST && strcmp(path, "/mock/fault") == 0) {
		enum mr_mode m = MR_OK;

		if (mr_query(query, "mode", v, sizeof(v))) {
			size_t i;

			for (i = 0; i < sizeof(mr_mode_names) / sizeof(mr_mode_names[0]); i++)
				if (strcmp(v, mr_mode_names[i]) == 0)
					break;
			if (i == sizeof(mr_mode_names) / sizeof(mr_mode_names[0])) {
				mr_respond(c, 400, NULL, "unknown mode\n", 13);
				return;
			}
			m = (enum mr_mode)i;
		}
		mr_state.mode = m;
		mr_state.count = mr_query(query, "count", v, sizeof(v)) ? atol(v) : 0;
		if (mr_query(query, "status", v, sizeof(v)))
			mr_state.fail_status = atoi(v);
		if (mr_query(query, "ms", v, sizeof(v)))
			mr_state.delay_ms = atol(v);
		if (mr_query(query, "bytes", v, sizeof(v)))
			mr_state.bytes = atol(v);
		mr_respond_json(c, "{\"status\":\"ok\"}");
	} else if (c->method == HTTP_POST && strcmp(path, "/mock/cache") == 0) {
		mr_state.max_age = mr_query(query, "max_age", v, sizeof(v)) ? atol(v) : -1;
		mr_respond_json(c, "{\"status\":\"ok\"}");
	} else if (c->method == HTTP_POST && strcmp(path, "/mock/etag") == 0) {
		mr_state.etag_on = !(mr_query(query, "on", v, sizeof(v)) && strcmp(v, "0") == 0);
		mr_respond_json(c, "{\"status\":\"ok\"}");
	} else if (c->method == HTTP_POST && strcmp(path, "/mock/reset-stats") == 0) {
		memset(&mr_stats, 0, sizeof(mr_stats));
		mr_respond_json(c, "{\"status\":\"ok\"}");
	} else if (c->method == HTTP_GET && strcmp(path, "/mock/stats") == 0) {
		int n = snprintf(buf, sizeof(buf),
				 "{\"requests\":%" PRIu64 ",\"ok\":%" PRIu64
				 ",\"not_modified\":%" PRIu64 ",\"faulted\":%" PRIu64
				 ",\"unauthorized\":%" PRIu64 ",\"delayed_sent\":%" PRIu64
				 ",\"version\":%" PRIu64
				 ",\"last_authorized\":%s,\"last_if_none_match\":",
				 mr_stats.requests, mr_stats.ok, mr_stats.not_modified,
				 mr_stats.faulted, mr_stats.unauthorized, mr_stats.delayed_sent,
				 mr_state.version,
				 mr_stats.last_authorized ? "true" : "false");

		/* ETags here are ours ("v<n>") or echoes of them: quotes escaped only. */
		if (mr_stats.has_last_inm) {
			buf[n++] = '"';
			for (const char *p = mr_stats.last_inm;
			     *p && (size_t)n + 4 < sizeof(buf); p++) {
				if (*p == '"' || *p == '\\')
					buf[n++] = '\\';
				buf[n++] = *p;
			}
			buf[n++] = '"';
			buf[n] = '\0';
		} else {
			n += snprintf(buf + n, sizeof(buf) - (size_t)n, "null");
		}
		snprintf(buf + n, sizeof(buf) - (size_t)n, "}");
		mr_respond_json(c, buf);
	} else {
		mr_respond(c, 404, NULL, "not found\n", 10);
	}
}

static void mr_dispatch(struct mr_conn *c)
{
	char path[MR_URL_MAX], *q;

	snprintf(path, sizeof(path), "%.*s", (int)c->url_len, c->url);
	q = strchr(path, '?');
	if (q != NULL)
		*q++ = '\0';
	if (strncmp(path, "/mock/", 6) == 0) {
		mr_control(c, path, q);
		return;
	}
	if (c->method != HTTP_GET) {
		mr_respond(c, 405, "Allow: GET\r\n", "", 0);
		return;
	}
	mr_list(c);
}

/* ---- llhttp callbacks */

static int mr_on_message_begin(llhttp_t *p)
{
	struct mr_conn *c = p->data;

	c->url_len = c->hname_len = c->hval_len = 0;
	c->has_inm = c->has_auth = 0;
	c->body_len = 0;
	c->complete = 0;
	return 0;
}

static int mr_on_url(llhttp_t *p, const char *at, size_t len)
{
	struct mr_conn *c = p->data;

	if (len > sizeof(c->url) - c->url_len)
		return -1;
	memcpy(c->url + c->url_len, at, len);
	c->url_len += len;
	return 0;
}

static int mr_on_header_field(llhttp_t *p, const char *at, size_t len)
{
	struct mr_conn *c = p->data;

	if (len > sizeof(c->hname) - 1 - c->hname_len) {
		c->hskip = 1;
		return 0;
	}
	memcpy(c->hname + c->hname_len, at, len);
	c->hname_len += len;
	return 0;
}

static int mr_on_header_value(llhttp_t *p, const char *at, size_t len)
{
	struct mr_conn *c = p->data;

	if (len > sizeof(c->hval) - 1 - c->hval_len) {
		c->hskip = 1;
		return 0;
	}
	memcpy(c->hval + c->hval_len, at, len);
	c->hval_len += len;
	return 0;
}

static int mr_on_header_value_complete(llhttp_t *p)
{
	struct mr_conn *c = p->data;

	c->hname[c->hname_len] = '\0';
	c->hval[c->hval_len] = '\0';
	if (!c->hskip && strcasecmp(c->hname, "If-None-Match") == 0) {
		memcpy(c->inm, c->hval, c->hval_len + 1);
		c->has_inm = 1;
	} else if (!c->hskip && strcasecmp(c->hname, "Authorization") == 0) {
		memcpy(c->auth, c->hval, c->hval_len + 1);
		c->has_auth = 1;
	}
	c->hname_len = c->hval_len = 0;
	c->hskip = 0;
	return 0;
}

static int mr_on_body(llhttp_t *p, const char *at, size_t len)
{
	struct mr_conn *c = p->data;

	if (len > MR_BODY_MAX - c->body_len)
		return -1;
	if (c->body_len + len + 1 > c->body_cap) {
		size_t cap = c->body_cap ? c->body_cap : 4096;
		char *nb;

		while (cap < c->body_len + len + 1)
			cap *= 2;
		nb = realloc(c->body, cap);
		if (nb == NULL)
			return -1;
		c->body = nb;
		c->body_cap = cap;
	}
	memcpy(c->body + c->body_len, at, len);
	c->body_len += len;
	return 0;
}

static int mr_on_message_complete(llhttp_t *p)
{
	struct mr_conn *c = p->data;

	c->method = (int)llhttp_get_method(p);
	c->keep_alive = llhttp_should_keep_alive(p);
	c->complete = 1;
	return HPE_PAUSED;
}

/* ---- connections */

static void mr_on_closed(uv_handle_t *h)
{
	struct mr_conn *c = h->data;

	if (--c->handles > 0)
		return;
	free(c->body);
	free(c->pending);
	free(c);
}

static void mr_conn_close(struct mr_conn *c)
{
	if (c->closing)
		return;
	c->closing = 1;
	uv_timer_stop(&c->timer);
	uv_close((uv_handle_t *)&c->timer, mr_on_closed);
	uv_close((uv_handle_t *)&c->tcp, mr_on_closed);
}

static void mr_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	static char rbuf[65536];

	(void)h;
	(void)suggested;
	*buf = uv_buf_init(rbuf, sizeof(rbuf));
}

static void mr_on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct mr_conn *c = s->data;
	const char *at = buf->base;
	size_t left = n > 0 ? (size_t)n : 0;

	if (n < 0) {
		mr_conn_close(c);
		return;
	}
	/* One request at a time per connection is all a poller sends; the answer
	 * to each goes out before the next is parsed. */
	while (left > 0 && !c->closing) {
		llhttp_errno_t rc = llhttp_execute(&c->parser, at, left);
		size_t used = left;

		if (rc == HPE_PAUSED) {
			used = (size_t)(llhttp_get_error_pos(&c->parser) - at);
			llhttp_resume(&c->parser);
		} else if (rc != HPE_OK) {
			mr_conn_close(c);
			return;
		}
		at += used;
		left -= used;
		if (c->complete) {
			c->complete = 0;
			mr_dispatch(c);
		}
	}
}

static void mr_on_connection(uv_stream_t *server, int status)
{
	struct mr_conn *c;

	if (status != 0)
		return;
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return;
	uv_tcp_init(mr_loop, &c->tcp);
	uv_timer_init(mr_loop, &c->timer);
	c->tcp.data = c;
	c->timer.data = c;
	c->handles = 2;
	if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
		mr_conn_close(c);
		return;
	}
	llhttp_init(&c->parser, HTTP_REQUEST, &mr_settings);
	c->parser.data = c;
	uv_read_start((uv_stream_t *)&c->tcp, mr_alloc, mr_on_read);
}

static void mr_on_signal(uv_signal_t *s, int signum)
{
	(void)s;
	(void)signum;
	uv_stop(mr_loop);
}

static void mr_usage(FILE *f)
{
	fputs("usage: mock-registry [--port N] [--bind ADDR] [--token T] [--doc JSON]\n"
	      "                     [--max-age N] [--quiet]\n"
	      "Serves an SFU list at any GET outside /mock/ with ETag and 304; see the\n"
	      "control routes at the top of tests/mock_registry.c.\n",
	      f);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "port", required_argument, NULL, 'p' },  { "bind", required_argument, NULL, 'b' },
		{ "token", required_argument, NULL, 't' }, { "doc", required_argument, NULL, 'd' },
		{ "max-age", required_argument, NULL, 'm' }, { "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },	  { NULL, 0, NULL, 0 },
	};
	struct sockaddr_storage ss;
	struct sockaddr_storage got;
	int namelen = sizeof(got), opt;
	const char *doc = "{\"sfu\":[]}";

	while ((opt = getopt_long(argc, argv, "p:b:t:d:m:qh", opts, NULL)) != -1) {
		switch (opt) {
		case 'p': mr_cfg.port = atoi(optarg); break;
		case 'b': mr_cfg.bind = optarg; break;
		case 't': mr_cfg.token = optarg; break;
		case 'd': doc = optarg; break;
		case 'm': mr_state.max_age = atol(optarg); break;
		case 'q': mr_cfg.quiet = 1; break;
		case 'h': mr_usage(stdout); return 0;
		default: mr_usage(stderr); return 2;
		}
	}
	log_set_role("mock-registry");
	if (mr_cfg.quiet)
		log_set_level(LOG_LEVEL_WARN);
	signal(SIGPIPE, SIG_IGN);
	mr_set_doc(doc, strlen(doc));
	mr_state.version = 1;
	llhttp_settings_init(&mr_settings);
	mr_settings.on_message_begin = mr_on_message_begin;
	mr_settings.on_url = mr_on_url;
	mr_settings.on_header_field = mr_on_header_field;
	mr_settings.on_header_value = mr_on_header_value;
	mr_settings.on_header_value_complete = mr_on_header_value_complete;
	mr_settings.on_body = mr_on_body;
	mr_settings.on_message_complete = mr_on_message_complete;
	mr_loop = uv_default_loop();
	memset(&ss, 0, sizeof(ss));
	if (uv_ip4_addr(mr_cfg.bind, mr_cfg.port, (struct sockaddr_in *)&ss) != 0 &&
	    uv_ip6_addr(mr_cfg.bind, mr_cfg.port, (struct sockaddr_in6 *)&ss) != 0)
		fatal("--bind %s is not an IP address", mr_cfg.bind);
	uv_tcp_init(mr_loop, &mr_server);
	if (uv_tcp_bind(&mr_server, (struct sockaddr *)&ss, 0) != 0 ||
	    uv_listen((uv_stream_t *)&mr_server, 512, mr_on_connection) != 0)
		fatal("cannot listen on %s port %d", mr_cfg.bind, mr_cfg.port);
	uv_tcp_getsockname(&mr_server, (struct sockaddr *)&got, &namelen);
	printf("PORT %d\n", ntohs(((struct sockaddr_in *)&got)->sin_port));
	fflush(stdout);
	uv_signal_init(mr_loop, &mr_sigterm);
	uv_signal_start(&mr_sigterm, mr_on_signal, SIGTERM);
	uv_signal_init(mr_loop, &mr_sigint);
	uv_signal_start(&mr_sigint, mr_on_signal, SIGINT);
	uv_run(mr_loop, UV_RUN_DEFAULT);
	log_info("stopping");
	return 0;
}
