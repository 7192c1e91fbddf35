/* Registry poller: the reaper fetches an external registry's SFU list and applies it in one batch. */
#ifndef SFU_REGPOLL_H
#define SFU_REGPOLL_H

#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "registry.h"
#include "regstatus.h"

/* Failures back off exponentially from [registry] poll_ms up to this (or poll_ms
 * when larger), with jitter, never below [registry] min_poll_ms. */
#define REGPOLL_BACKOFF_MAX_MS 30000

struct regpoll;

/*
 * One poller per reaper: a timer on loop, one request in flight at most, so
 * however many workers run, the registry sees one request per period. It
 * writes the registry (registry_apply_source) and the status block.
 */
int regpoll_new(struct regpoll **out, uv_loop_t *loop, struct registry *r,
		struct regstatus *status);
/*
 * Takes the [registry] settings (at start and after every reload). A new URL
 * switches sources: answers still coming from the old one are dropped, the
 * new one is fetched at once without If-None-Match, and the SFUs of the last
 * list stay until the new source answers 200 (then they are replaced in one
 * batch); an empty URL removes the registry's SFUs. A new token is used from
 * the next fetch, which is made at once. The last good list is applied again
 * in any case: a reload may have taken a static SFU out of the config that
 * the list names.
 */
void regpoll_configure(struct regpoll *p, const struct config_tunables *t, int64_t now_ms);
/* Logs a change of state that time alone makes (ok or failing to stale). */
void regpoll_tick(struct regpoll *p, int64_t now_ms);
void regpoll_free(struct regpoll *p);

/*
 * The next fetch's delay (pure, for tests): after a success, max_age_ms
 * (-1 when the answer had no Cache-Control max-age) clamped to [min_poll_ms,
 * the larger of poll_ms and stale_after_ms / 2], else poll_ms; after
 * `failures` consecutive failures, poll_ms doubled per failure up to
 * REGPOLL_BACKOFF_MAX_MS, then jittered down by up to half with rnd (any
 * value), never below min_poll_ms.
 */
uint32_t regpoll_delay(const struct config_tunables *t, int64_t max_age_ms, uint32_t failures,
		       uint32_t rnd);
/* Cache-Control's max-age in ms, or -1 when value has none (pure, for tests). */
int64_t regpoll_max_age(const char *value, size_t len);

#endif
