/* Prometheus text exposition of the shared counters and of every SFU in the registry. */
#ifndef SFU_PROM_H
#define SFU_PROM_H

#include <stddef.h>
#include <stdint.h>

#include "metrics.h"
#include "registry.h"
#include "clusterq.h"
#include "clusterstatus.h"
#include "regstatus.h"
#include "strbuf.h"

/* Appends the Prometheus text exposition (version 0.0.4) of every counter,
 * summed over processes, plus per-worker connection counts, per-SFU gauges
 * from the registry (one view of the set) and the external registry source's
 * state (rs, judged stale after stale_after_ms), the cluster's (cs, cq), to out. route_names[i]
 * labels route index i (n_routes of them). Returns 0, or -ENOMEM (out is then
 * incomplete). */
int prom_render(const struct metrics *ms, const struct registry *reg,
		const struct regstatus *rs, uint32_t stale_after_ms,
		const struct clusterstatus *cs, const struct clusterq *cq,
		const char *const *route_names, size_t n_routes, unsigned n_workers, int64_t now_ms,
		struct strbuf *out);

#endif
