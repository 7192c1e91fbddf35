/* Handler: what a route's handler is given (the worker's state it may use), and its type. */
#ifndef SFU_HANDLER_H
#define SFU_HANDLER_H

#include "config.h"
#include "http_client.h"
#include "http_server.h"
#include "metrics.h"
#include "shm.h"

struct select_snapshot;

/*
 * What a handler that forwarded the request tells the access log about the
 * response it is about to send: set right before http_respond* (whose
 * response hook reads it during that call) and cleared right after, so it
 * never outlives the one response it describes.
 */
struct handler_upstream {
	const char *sfu; /* the SFU that answered or was tried last; NULL: none */
	unsigned attempts;
	int64_t upstream_us; /* waiting on SFUs, all attempts together */
};

/*
 * The narrow view of a worker that handlers work with. The worker owns it
 * (it outlives every request) and refreshes live from shared memory before
 * each dispatch, so a handler and the callbacks of its upstream requests
 * always read a whole, current config.
 */
struct handler_ctx {
	struct shm_layout *shm;
	const struct config_tunables *live;
	struct metrics_proc *metrics; /* this process's block in shared memory */
	struct http_client *client; /* to the SFUs */
	struct select_snapshot *snap; /* this worker's selection snapshot */
	struct handler_upstream upstream; /* see struct handler_upstream */
};

typedef void (*handler_fn)(struct handler_ctx *ctx, struct http_conn *c,
			   const struct http_request *req);

#endif
