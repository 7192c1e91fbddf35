/* Cluster status: the etcd connection's state in shared memory, written by the reaper, read by workers, health and metrics. */
#ifndef SFU_CLUSTERSTATUS_H
#define SFU_CLUSTERSTATUS_H

#include <stdatomic.h>
#include <stdint.h>

#include "address.h"
#include "seqlock.h"

#define CLUSTERSTATUS_ERROR_MAX 192

/*
 * The cluster's state, as health and metrics name it:
 *  off         no [cluster] etcd: the gateway runs alone;
 *  connecting  configured, the first read of etcd's state not done yet;
 *  ok          the registry mirrors etcd and the watch is open;
 *  degraded    etcd cannot be reached: the gateway serves from its last view
 *              and its own heartbeats, and catches up when etcd is back.
 */
enum cluster_state {
	CLUSTER_OFF = 0,
	CLUSTER_CONNECTING = 1,
	CLUSTER_OK = 2,
	CLUSTER_DEGRADED = 3,
};

/* Counters of the reaper's work with etcd, in struct clusterstatus.counters. */
enum clusterstatus_counter {
	CLUSTER_C_PUTS, /* registrations written to etcd */
	CLUSTER_C_DELETES, /* sign-offs written to etcd */
	CLUSTER_C_TXNS, /* write transactions that succeeded (each holds puts and deletes) */
	CLUSTER_C_TXN_FAILURES, /* write transactions that failed (their writes are retried) */
	CLUSTER_C_STALE_DROPPED, /* writes dropped unwritten: older than stale_after_ms */
	CLUSTER_C_EVENTS, /* watch events applied */
	CLUSTER_C_MIRRORED, /* registrations of other gateways applied to the registry */
	CLUSTER_C_REMOVED, /* SFUs removed because etcd deleted them (lease, sign-off) */
	CLUSTER_C_REFUSED, /* entries of etcd refused (invalid, or against the address policy) */
	CLUSTER_C_RESYNCS, /* full reads of etcd's state (start, reconnect after compaction) */
	CLUSTER_C_ENDPOINT_SWITCHES, /* moves to the next endpoint after a failure */
	CLUSTER_C_LEASES, /* leases granted */
	CLUSTER_C__COUNT
};

/* What the reaper publishes on every change. Plain data, whole words; times
 * are CLOCK_MONOTONIC ms, 0 = never. */
struct clusterstatus_data {
	uint32_t state; /* enum cluster_state */
	uint32_t endpoint; /* index in [cluster] etcd of the endpoint in use */
	int64_t since_ms; /* when the state began */
	int64_t last_ok_ms; /* last successful exchange with etcd */
	int64_t revision; /* the last etcd revision the registry mirrors */
	/* The lease workers attach their affinity claims to (0 = none) and the
	 * time after which it must not be used any more (it may have expired). */
	int64_t claim_lease;
	int64_t claim_lease_until_ms;
	uint64_t config_gen; /* bumped when endpoints or prefix change */
	char endpoint_url[ADDRESS_MAX]; /* the endpoint in use */
	char last_error[CLUSTERSTATUS_ERROR_MAX]; /* "" = none */
};

#define CLUSTERSTATUS_WORDS (sizeof(struct clusterstatus_data) / 8)
_Static_assert(sizeof(struct clusterstatus_data) % 8 == 0, "cluster status must be whole words");

/*
 * In the shared segment. Writer: the reaper holding the reaper lease, which
 * publishes the whole block under seq. Readers: workers (before an affinity
 * claim), health and metrics, with a bounded seqlock read. The counters are
 * atomics the reaper adds to and readers load.
 */
struct clusterstatus {
	seqlock_word seq;
	seqlock_word words[CLUSTERSTATUS_WORDS];
	_Atomic uint64_t counters[CLUSTER_C__COUNT];
};

/* Reaper: publishes d (a block left odd by a reaper that died inside a
 * publish is closed first: there is no other writer). */
void clusterstatus_publish(struct clusterstatus *s, const struct clusterstatus_data *d);
/* Readers: a consistent copy. 0, or -EAGAIN when torn too often. */
int clusterstatus_read(const struct clusterstatus *s, struct clusterstatus_data *out);
const char *clusterstatus_state_name(enum cluster_state st);
static inline void clusterstatus_count(struct clusterstatus *s, enum clusterstatus_counter c,
				       uint64_t n)
{
	atomic_fetch_add_explicit(&s->counters[c], n, memory_order_relaxed);
}

#endif
