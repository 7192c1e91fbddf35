/* Active probes: the reaper checks SFUs that send no heartbeats (GET /v1/noop, then /v1/stats). */
#ifndef SFU_PROBE_H
#define SFU_PROBE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "metrics.h"
#include "registry.h"

struct prober;

int prober_new(struct prober **out, uv_loop_t *loop, struct registry *r, struct metrics_proc *m);
/* Starts the probes that are due: every SFU in the registry whose load does
 * not come from fresh heartbeats, at most once per interval_ms each. */
void prober_tick(struct prober *p, const struct config_tunables *t, int64_t now_ms);
void prober_free(struct prober *p);

#endif
