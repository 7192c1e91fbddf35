/* Routes: the one table of the gateway's paths, their methods and handlers. */
#ifndef SFU_ROUTE_H
#define SFU_ROUTE_H

#include <stdbool.h>
#include <stddef.h>

#include "handler.h"
#include "http_server.h"

/*
 * One row per route. A new route is one row here and its handler; the
 * dispatcher, the 405's Allow header and the metrics label all come from it.
 */
struct route {
	const char *path; /* exact path; also the route label in /metrics */
	int method; /* llhttp's HTTP_GET or HTTP_POST */
	/* GET routes also answer HEAD as GET without the body, except where a GET
	 * does work nobody would read (a channel nobody joins). */
	bool head;
	/* An operators' route (/metrics, /v1/health): only peers and bearers that
	 * [observability] allows may read it (access.h). */
	bool guarded;
	handler_fn handle;
};

/* The table; route_count rows, in the order of their metrics index. */
extern const struct route route_table[];
extern const size_t route_count;

/* The label of route index i, route_count being every other path ("other"). */
const char *route_name(size_t i);
/* The metrics index of a request's path: its row, or route_count. */
size_t route_index(const struct http_request *req);
/* Answers a request: its route's handler, 403/401 for a guarded route the
 * request may not read, 405 with Allow, or 404. */
void route_dispatch(struct handler_ctx *ctx, struct http_conn *c, const struct http_request *req);

#endif
