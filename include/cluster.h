/* Cluster: the reaper's side of a gateway cluster: accepted heartbeats to etcd, etcd mirrored into the registry, the leases. */
#ifndef SFU_CLUSTER_H
#define SFU_CLUSTER_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "shm.h"

/*
 * One per gateway, in the reaper (so one watcher per gateway however many
 * workers run, and during a binary upgrade only the reaper holding the reaper
 * lease works). What it does, all asynchronously on the reaper's loop:
 *
 *  - Writes: takes what workers accepted from the cluster queue (clusterq.h),
 *    keeps the latest news per SFU, and writes it to etcd in transactions of
 *    up to CLUSTER_TXN_OPS puts and deletes, one per CLUSTER_FLUSH_MS at most
 *    (a lone heartbeat goes at once; a busy fleet's are batched). Registrations are attached to a
 *    lease shared by every registration written within one slice of
 *    CLUSTER_LEASE_SLICE_MS, whose TTL is [registration] stale_after_ms plus
 *    the slice: an SFU vanishes from etcd between stale_after_ms and one
 *    slice more after its last heartbeat, and each heartbeat costs etcd one
 *    put in a batch (no grant, no keep-alive per SFU). What fails to be
 *    written is kept and written again when etcd answers, unless it is older
 *    than stale_after_ms by then.
 *  - Mirror: reads the prefix's registrations once (a range), then watches
 *    the prefix from the next revision, and applies every registration to the
 *    registry with the heartbeat's own rules (heartbeat_apply, reporter
 *    SFU_REPORTER_CLUSTER), every deletion (a sign-off or a lapsed lease) by
 *    removing the SFU, and every issuer claim by filling the local affinity
 *    table. After a disconnection it watches again from the last revision it
 *    applied plus one, or reads the whole prefix again when etcd compacted
 *    that revision away.
 *  - Leases: the registration lease of the current slice, and the claim
 *    lease workers attach issuer claims to (published in clusterstatus).
 *  - Health: a status request every CLUSTER_PING_MS; any failure moves to
 *    the next endpoint, and a whole round of failures makes the state
 *    "degraded" (logged once) until etcd answers again.
 */
#define CLUSTER_TXN_OPS 64
#define CLUSTER_FLUSH_MS 10
#define CLUSTER_LEASE_SLICE_MS 2000
#define CLUSTER_PING_MS 1000
#define CLUSTER_BACKOFF_MAX_MS 5000
/* A watch is one long response; it is made anew this often (from the next
 * revision: nothing is missed), which also bounds the life of a watch on an
 * endpoint that was given up. */
#define CLUSTER_WATCH_MAX_MS 60000
/* The largest answer of a full read (registrations of every SFU). */
#define CLUSTER_RANGE_MAX ((size_t)64 << 20)

struct cluster;

/* A cluster component for loop, working on the segment's registry, affinity
 * table, cluster queue and cluster status. 0 or -ENOMEM. */
int cluster_new(struct cluster **out, uv_loop_t *loop, struct shm_layout *shm);
/* Takes the live tunables (at start and after every reload). New endpoints or
 * a new prefix start over: the whole prefix is read again. No endpoint stops
 * everything and publishes the state off. */
void cluster_configure(struct cluster *c, const struct config_tunables *t, int64_t now_ms);
/* The reaper's tick: working says whether this reaper holds the reaper lease
 * (a reaper standing by leaves etcd alone). Drains the queue, sends what is
 * due, renews leases, logs state changes. */
void cluster_tick(struct cluster *c, bool working, int64_t now_ms);
/* Workers pushed to the queue (the wake-up descriptor fired): send now. */
void cluster_kick(struct cluster *c, int64_t now_ms);

/*
 * The two decisions the mirror makes, pure for tests. Whether a deletion in
 * etcd of a registration whose last value carried prev_seq (0: unknown)
 * removes an SFU the registry holds with hb_seq: not when this gateway has
 * heard a later heartbeat itself (its own write is on its way). And the
 * claim lease's period for an [affinity] ttl_ms: a quarter of it, within
 * [CLUSTER_LEASE_SLICE_MS, 30 s].
 */
bool cluster_delete_applies(uint64_t prev_seq, uint64_t hb_seq);
uint32_t cluster_claim_period_ms(uint32_t affinity_ttl_ms);
/* The TTL in whole seconds of a lease keeping keys at least ms, given that
 * keys are attached to it for up to slice_ms after its grant. */
int64_t cluster_lease_ttl_s(uint32_t ms, uint32_t slice_ms);

#endif
