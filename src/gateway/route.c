/* Routes: the one table of the gateway's paths, their methods and handlers. */
#include "route.h"

#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "access.h"
#include "channel.h"
#include "clock.h"
#include "health.h"
#include "heartbeat.h"
#include "log.h"
#include "obscache.h"
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

/* This worker's last rendering of /metrics and its render budget (obscache.h). */
static struct obscache route_metrics_cache;

/* GET /metrics: Prometheus text, summed over every process at this instant
 * (or, under load, at most [observability] max_age_ms ago). */
static void route_metrics(struct handler_ctx *x, struct http_conn *c,
			  const struct http_request *req)
{
	struct obscache *oc = &route_metrics_cache;
	int64_t start = clock_us();

	(void)req;
	if (obscache_must_render(oc, start, x->live->obs_max_age_ms)) {
		const char *names[METRICS_ROUTES_MAX];
		struct strbuf *text = obscache_begin(oc);

		for (size_t i = 0; i <= route_count; i++)
			names[i] = route_name(i);
		if (text == NULL ||
		    prom_render(&x->shm->metrics, &x->shm->registry, &x->shm->regstatus,
				x->live->registry_stale_after_ms, &x->shm->clusterstatus,
				&x->shm->clusterq, names, route_count + 1,
				atomic_load(&x->shm->n_workers), clock_ms(), text) != 0) {
			obscache_abort(oc);
			http_respond_error(c, 503, "out of memory", NULL);
			return;
		}
		obscache_commit(oc, 200, start, clock_us());
	}
	obscache_send(oc, c, "text/plain; version=0.0.4; charset=utf-8");
}

/* Refuses a guarded route's request that [observability] does not allow; true when it did. */
static bool route_refused(struct handler_ctx *x, struct http_conn *c,
			  const struct http_request *req, const struct route *r)
{
	enum access_verdict v = access_check(x->live, req);
	static const char *const why[] = { "", "no token", "wrong token", "address not allowed" };

	if (v == ACCESS_OK)
		return false;
	log_info_limited("observability: refused requests", "observability: refused %s from %s: %s",
			 r->path, req->peer, why[v]);
	if (v == ACCESS_ADDRESS)
		http_respond_error(c, 403, "address not allowed", NULL);
	else
		http_respond_error(c, 401, v == ACCESS_NO_TOKEN ? "missing authorization"
								: "invalid token",
				   "WWW-Authenticate: Bearer realm=\"sfu-gateway\"\r\n");
	return true;
}

const struct route route_table[] = {
	{ "/v1/channel", HTTP_GET, false, false, channel_handle },
	{ "/v1/sfu", HTTP_POST, false, false, heartbeat_handle },
	{ "/v1/health", HTTP_GET, true, true, health_handle },
	{ "/metrics", HTTP_GET, true, true, route_metrics },
	{ "/noop", HTTP_GET, true, false, route_noop },
	{ "/v1/noop", HTTP_GET, true, false, route_v1_noop },
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
	if (r->guarded && route_refused(ctx, c, req, r))
		return;
	if ((int)req->method == r->method || (r->head && req->method == HTTP_HEAD)) {
		r->handle(ctx, c, req);
		return;
	}
	snprintf(allow, sizeof(allow), "Allow: %s%s\r\n", llhttp_method_name(r->method),
		 r->head ? ", HEAD" : "");
	http_respond_error(c, 405, "method not allowed", allow);
}
