/* Reaper: the one process that polls: expires SFUs whose heartbeats went stale, probes, key checks, the external registry. */
#ifndef SFU_REAPER_H
#define SFU_REAPER_H

#include <stdint.h>
#include <sys/types.h>

#include "config.h"
#include "shm.h"

/* Entry point of the reaper process, called right after fork(); master is the
 * forking master's pid (child_start). The reaper works only while it holds
 * the segment's reaper lease (lease.h). */
int reaper_run(struct shm_layout *shm, pid_t master);

/*
 * One sweep step (Redis activeExpireCycle style): examines slots from *cursor
 * on, wrapping, until every slot was seen once or budget_us elapsed; removes
 * registered SFUs whose last report is older than stale_after_ms. Static SFUs
 * are never expired. Returns the number removed.
 */
int reaper_sweep(struct registry *r, uint32_t *cursor, uint32_t stale_after_ms, int64_t now_ms,
		 uint32_t budget_us);

#endif
