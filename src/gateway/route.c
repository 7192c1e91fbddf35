/* Routes: the one table of the gateway's paths, their methods and handlers. */
#include "route.h"

#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "channel.h"
#include "clock.h"
#include "health.h"
#include "heartbeat.h"
#include "prom.h"

/* GET /noop: the liveness answer of the gateway this one replaces. */
static void route_noop(struct handler_ctx *x, struct http_conn *c, const struct http_request *req)
{
	static const char body[] = "{\"status\":\"ok\"}";

	(void)x;
	(void)req;
	http_respond_json(c, 200, body, sizeof(body) - 1);
}

/* GET /v1/noop: the SFU's own liveness answer, so SFU health checks work here. */
static void route_v1_noop(struct handler_ctx *x, struct http_conn *c,
			  const struct http_request *req)
{
	static const char body[] = "{\"result\":\"ok\"}";

	(void)x;
	(void)req;
	http_respond_json(c, 200, body, sizeof(body) - 1);
}

/* GET /metrics: Prometheus text, summed over every process at this instant. */
static void route_metrics(struct handler_ctx *x, struct http_conn *c,
			  const struct http_request *req)
{
	const char *names[METRICS_ROUTES_MAX];
	size_t cap = 65536;

	(void)req;
	for (size_t i = 0; i <= route_count; i++)
		names[i] = route_name(i);
	for (;;) {
		char *buf = malloc(cap);
		int n;

		if (buf == NULL) {
			http_respond_error(c, 503, "out of memory", NULL);
			return;
		}
		n = prom_render(&x->shm->metrics, &x->shm->registry, names, route_count + 1,
				   atomic_load(&x->shm->n_workers), clock_ms(), buf, cap);
		if (n >= 0) {
			http_respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", NULL, buf,
				     (size_t)n);
			free(buf);
			return;
		}
		free(buf);
		if (cap >= (64u << 20)) {
			http_respond_error(c, 503, "metrics too large", NULL);
			return;
		}
		cap *= 4;
	}
}

const struct route route_table[] = {
	{ "/v1/channel", HTTP_GET, false, channel_handle },
	{ "/v1/sfu", HTTP_POST, false, heartbeat_handle },
	{ "/v1/health", HTTP_GET, true, health_handle },
	{ "/metrics", HTTP_GET, true, route_metrics },
	{ "/noop", HTTP_GET, true, route_noop },
	{ "/v1/noop", HTTP_GET, true, route_v1_noop },
};

const size_t route_count = sizeof(route_table) / sizeof(route_table[0]);

_Static_assert(sizeof(route_table) / sizeof(route_table[0]) < METRICS_ROUTES_MAX,
	       "metrics count fewer routes than the table has (plus \"other\")");

const char *route_name(size_t i)
{
	return i < route_count ? route_table[i].path : "other";
}

size_t route_index(const struct http_request *req)
{
	for (size_t i = 0; i < route_count; i++) {
		size_t n = strlen(route_table[i].path);

		if (req->path_len == n && memcmp(req->target, route_table[i].path, n) == 0)
			return i;
	}
	return route_count;
}

void route_dispatch(struct handler_ctx *ctx, struct http_conn *c, const struct http_request *req)
{
	size_t i = route_index(req);
	const struct route *r;
	char allow[64];

	if (i == route_count) {
		http_respond_error(c, 404, "not found", NULL);
		return;
	}
	r = &route_table[i];
	if ((int)req->method == r->method || (r->head && req->method == HTTP_HEAD)) {
		r->handle(ctx, c, req);
		return;
	}
	snprintf(allow, sizeof(allow), "Allow: %s%s\r\n", llhttp_method_name(r->method),
		 r->head ? ", HEAD" : "");
	http_respond_error(c, 405, "method not allowed", allow);
}
