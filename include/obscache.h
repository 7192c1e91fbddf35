/* Observability answers (/metrics, /v1/health) rendered within a CPU budget: fresh while it lasts, else the last one. */
#ifndef SFU_OBSCACHE_H
#define SFU_OBSCACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "http_server.h"
#include "strbuf.h"

/*
 * Rendering /metrics or /v1/health reads every SFU; with a thousand of them
 * that is a megabyte of text and hundreds of microseconds, and anyone allowed
 * to ask can ask in a loop. Each worker therefore keeps the last rendering of
 * each answer and a budget of render time: OBSCACHE_SHARE_PERCENT of the
 * worker's time, saved up to OBSCACHE_BURST_US. While the budget lasts every
 * request is rendered afresh, so a scrape is exact (any scrape interval an
 * operator would use never touches the budget); once it is spent, requests
 * get the last rendering until it is max_age_ms old, then a fresh one again.
 * A flood thus costs the worker at most about that share of its time in
 * rendering, and no answer is ever older than max_age_ms. A rendering is sent
 * without being copied (http_respond_borrowed): it lives in a page that
 * every response still writing it holds a reference to.
 */
#define OBSCACHE_SHARE_PERCENT 5
#define OBSCACHE_BURST_US 50000

/* One rendering: the body, its status, and who still needs it. */
struct obscache_page {
	unsigned refs; /* the cache's own, plus one per response being written */
	int status;
	struct strbuf text;
};

struct obscache {
	struct obscache_page *page; /* the last rendering, NULL when none */
	int64_t rendered_us; /* clock_us() when it was rendered */
	int64_t budget; /* render time left, in 1/100 us; may go below 0 by one rendering */
	int64_t refill_us; /* clock_us() of the last refill of the budget */
};

/* Whether a request at now_us must be rendered afresh (else the last
 * rendering is served). max_age_ms 0 renders every request. */
bool obscache_must_render(struct obscache *oc, int64_t now_us, uint32_t max_age_ms);
/* An empty text to render into (the cache's page when no response holds it,
 * else a new one); NULL when out of memory. */
struct strbuf *obscache_begin(struct obscache *oc);
/* The rendering begun at start_us is complete with this status at end_us:
 * it is the one to serve, and its time comes off the budget. */
void obscache_commit(struct obscache *oc, int status, int64_t start_us, int64_t end_us);
/* The rendering failed: nothing is kept. */
void obscache_abort(struct obscache *oc);
/* Answers with the last rendering (there must be one). */
void obscache_send(struct obscache *oc, struct http_conn *c, const char *content_type);

#endif
