/* Lease: one holder at a time among processes sharing the segment, taken over when it stops renewing. */
#ifndef SFU_LEASE_H
#define SFU_LEASE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/*
 * Lives in shared memory. Writers: the processes competing for it (the
 * reapers of the masters sharing a segment) and a master releasing it for
 * its dead reaper. Readers: the same. holder is a pid, 0 when free.
 */
struct lease {
	_Atomic int32_t holder;
	uint32_t pad;
	_Atomic int64_t renewed_ms; /* CLOCK_MONOTONIC ms of the holder's last renewal */
};

/* How long a holder may go without renewing before another may take over. */
#define LEASE_TTL_MS 2000

/*
 * Called by pid about every tick: renews the lease when pid holds it, takes it
 * when it is free or its holder has not renewed it for ttl_ms. True when pid
 * holds it now (and may do the work it guards). Two contenders that race for
 * an expired lease both compare-and-swap the holder, so one wins; the loser
 * sees it at its next call. A holder that was taken over because it stalled
 * learns it at its next call too, so at most one tick of work overlaps.
 */
bool lease_hold(struct lease *l, int32_t pid, int64_t now_ms, uint32_t ttl_ms);
/* Frees the lease if pid holds it (its holder stops, or died). */
void lease_release(struct lease *l, int32_t pid);
/* The holder's pid, 0 when free. */
int32_t lease_holder(const struct lease *l);

#endif
