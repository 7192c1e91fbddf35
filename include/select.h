/* Selection: which SFU gets the next channel (region hint, proximity, health, load or round-robin). */
#ifndef SFU_SELECT_H
#define SFU_SELECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "registry.h"

/* The hint of one request, already percent-decoded; pointers may be NULL. */
struct select_query {
	const char *region;
	size_t region_len;
	const char *country;
	size_t country_len;
};

/* One worker's selection state: the scan's buffer and the snapshot that the
 * fast paths search (see select.c). Owned by its worker, never shared. */
struct select_snapshot;

struct select_choice {
	uint32_t slot;
	struct sfu_record rec; /* full copy of the chosen slot (address and key included) */
};

/*
 * Chooses an SFU, lock-free, reading the registry through its seqlocks:
 * 1. Candidates: slots in use, not in exclude[0..nexclude) (slot indexes already
 *    tried by this request), readable (a torn slot is skipped).
 * 2. Region hint: q->region if non-empty, else the region of q->country. For a
 *    known region: the first region in region_proximity() order that has a
 *    candidate; SFUs match on hot.region_id. For an unknown hint string: SFUs
 *    whose region string equals it exactly. No match: all candidates.
 * 3. Strategy round-robin: candidates in slot order, pick index
 *    fetch_add(r->rr_counter) % n (one sequence shared by all workers).
 *    Strategy load: score = w_sessions*s/max + w_cpu*cpu + w_memory*mem
 *    (+ w_distance*distance_km/20000 to the hinted region), where s = reported
 *    sessions + slot.assigned × (reported sessions per channel, at least 1)
 *    and max = select_capacity(), else 100 (sessions rank SFUs whose
 *    capacity nobody stated but never make them overloaded); SFUs without load
 *    reports score by assigned alone. slot.assigned counts channels sent to
 *    the SFU since its last report (counted when sent, taken back on failure).
 *    Lowest wins; exact ties broken round-robin via rr_counter.
 * Health and overload (see select_usable in select.c): SFUs whose circuit is
 * open (unless their half-open probe is due), that probes find down, whose
 * heartbeats went stale, or that pass an [overload] threshold are skipped.
 * Returns 0 with *out filled; -ENOENT when no SFU is in the registry at all
 * (or all are excluded); -EBUSY when some were skipped only for overload;
 * -EHOSTDOWN when every remaining SFU is unhealthy; -EAGAIN when candidates
 * exist but none could be read.
 */
int select_best(struct select_snapshot *sn, struct registry *r, const struct config_tunables *t,
		const struct select_query *q, const uint32_t *exclude, size_t nexclude,
		int64_t now_ms, struct select_choice *out);

/* A worker's selection state (candidate buffer and snapshot, a few MB of
 * zero pages until used). fast = false makes select_best always scan, the
 * reference the fast paths must agree with (tests and benchmarks). NULL when
 * out of memory. */
struct select_snapshot *select_snapshot_new(bool fast);
void select_snapshot_free(struct select_snapshot *sn);

/* Issuer affinity: the SFU in slot, if it still holds generation and is
 * healthy (same health rules as select_best; overload does not refuse a
 * repeat, which joins a running call). 0 with *out filled, or -ENOENT. */
int select_pinned(struct registry *r, const struct config_tunables *t, uint32_t slot,
		  uint64_t generation, int64_t now_ms, struct select_choice *out);

/* Why a readable slot is not a candidate (or that it is one). */
enum select_verdict { SELECT_USABLE, SELECT_FREE, SELECT_UNHEALTHY, SELECT_OVERLOADED };

/* The health and overload rules every selection applies to one SFU (also
 * what /v1/health reports). */
enum select_verdict select_usable(const struct registry_slot *slot, const struct sfu_hot *h,
				  const struct config_tunables *t, int64_t now_ms);

/* The capacity someone stated for an SFU: its heartbeat's maxSessions or
 * [[sfu]] max_sessions, else [balancing] max_sessions; 0 = nobody did. */
uint32_t select_capacity(const struct config_tunables *t, const struct sfu_hot *h);
/* Whether the SFU's last report passes an [overload] threshold (sessions
 * only against a stated capacity). */
bool select_overloaded(const struct config_tunables *t, const struct sfu_hot *h);
/* CLOCK_MONOTONIC ms from which a registered SFU's report is stale;
 * INT64_MAX for SFUs that heartbeats do not expire. */
int64_t select_stale_at(const struct config_tunables *t, const struct sfu_hot *h);
/*
 * How long after its last report a registered SFU goes stale (and the reaper
 * expires it): [registration] stale_after_ms; in a cluster ([cluster] etcd
 * set) [cluster] hold_ms more, since there etcd's lease expires registered
 * SFUs (its deletion reaches every gateway) and this deadline only says how
 * long a gateway that cannot reach etcd keeps serving from its last view.
 */
uint32_t select_expire_after_ms(const struct config_tunables *t);

/* The load score used by strategy "load" for one SFU (exposed for health and tests). */
double select_score(const struct config_tunables *t, const struct sfu_hot *h, uint64_t assigned);

#endif
