/* Metrics: per-process counters in shared memory, summed over all workers at scrape time. */
#ifndef SFU_METRICS_H
#define SFU_METRICS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define METRICS_MAX_PROCS 1028 /* workers (index 0..1023), then the reaper */
#define METRICS_REAPER_SLOT 1024

/* Routes counted one by one (the route table's rows, then "other"). */
#define METRICS_ROUTES_MAX 16

/* The statuses counted one by one; anything else lands in "other". */
#define METRICS_STATUSES 200, 400, 401, 403, 404, 405, 408, 409, 413, 429, 431, 500, 502, 503, 504
enum { METRICS_STATUS__COUNT = 16 }; /* the 15 above + other */

/* Upstream latency histogram bounds, in milliseconds (+Inf implied). */
#define METRICS_LATENCY_BOUNDS_MS 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000
enum { METRICS_LATENCY__COUNT = 13 };

enum metrics_counter {
	M_CONNECTIONS, /* connections accepted */
	M_UPSTREAM_REQUESTS, /* attempts sent to an SFU */
	M_UPSTREAM_FAILURES, /* attempts that failed (channel.c: connect, timeout, 5xx...) */
	M_RETRIES, /* attempts beyond the first of a request */
	M_FAILOVERS, /* requests answered by an SFU other than the first tried */
	M_RETRY_BUDGET_EXHAUSTED,
	M_ORPHAN_CHANNELS, /* a retry may have left a channel on the SFU tried before */
	M_CIRCUIT_OPENED,
	M_CIRCUIT_HALF_OPENED,
	M_CIRCUIT_CLOSED,
	M_HEARTBEATS_REGISTERED,
	M_HEARTBEATS_UPDATED,
	M_HEARTBEATS_REMOVED,
	M_HEARTBEATS_REJECTED,
	M_EXPIRED, /* SFUs removed by the reaper */
	M_PROBES_OK,
	M_PROBES_FAILED,
	M_AFFINITY_HITS,
	M_OVERLOAD_REJECTED,
	M_ACCEPT_PAUSED_CAP, /* a worker stopped accepting: at max_connections */
	M_ACCEPT_PAUSED_EMFILE, /* a worker stopped accepting: out of descriptors */
	M_TLS_UPSTREAM_FULL, /* TLS handshakes with SFUs (and gateways): full */
	M_TLS_UPSTREAM_RESUMED, /* ... resumed from a session */
	M_TLS_UPSTREAM_FAILED, /* ... failed (certificate refused, protocol error) */
	M_TLS_LISTENER_FULL, /* TLS handshakes of clients with the listener: full */
	M_TLS_LISTENER_RESUMED,
	M_TLS_LISTENER_FAILED,
	M_CLAIMS_WON, /* an issuer's first request claimed our choice in etcd (claim.h) */
	M_CLAIMS_LOST, /* ... found another gateway's claim, and followed it */
	M_CLAIMS_REPLACED, /* ... found a claim whose SFU is unusable here, and replaced it */
	M_CLAIMS_FALLBACK, /* ... could not claim (etcd unreachable, a timeout): chose alone */
	M__COUNT
};

/*
 * One block per process. Writer: only the process owning the slot (a worker
 * by its index, the reaper in METRICS_REAPER_SLOT), so plain relaxed
 * load+store would do; we still use fetch_add to survive a respawned worker
 * racing its dead predecessor's last store. Readers: whoever renders
 * /metrics or /v1/health, summing every slot. Counters survive worker
 * restarts because they live in the segment.
 */
struct metrics_proc {
	_Atomic uint64_t c[M__COUNT];
	_Atomic uint64_t requests[METRICS_ROUTES_MAX][METRICS_STATUS__COUNT];
	_Atomic uint64_t latency_bucket[METRICS_LATENCY__COUNT];
	_Atomic uint64_t latency_sum_us;
	_Atomic uint64_t latency_count;
} __attribute__((aligned(64)));

struct metrics {
	struct metrics_proc procs[METRICS_MAX_PROCS];
	/* Worker blocks [0, procs_high) have been used: readers sum those and the
	 * reaper's, not all METRICS_MAX_PROCS (a scrape would read 300,000 words).
	 * Writer: each worker raises it (metrics_proc_claim) before its first count. */
	_Atomic uint32_t procs_high;
};

/* Every counter summed over the processes, read in one pass (for /metrics). */
struct metrics_totals {
	uint64_t c[M__COUNT];
	uint64_t requests[METRICS_ROUTES_MAX][METRICS_STATUS__COUNT];
	uint64_t latency_bucket[METRICS_LATENCY__COUNT];
	uint64_t latency_sum_us;
	uint64_t latency_count;
};

static inline void metrics_add(struct metrics_proc *m, enum metrics_counter c, uint64_t n)
{
	atomic_fetch_add_explicit(&m->c[c], n, memory_order_relaxed);
}

/* Index of a status code in the requests[][] table. */
int metrics_status_index(int status);
/* Counts one answered request of route index route (< METRICS_ROUTES_MAX). */
void metrics_request(struct metrics_proc *m, size_t route, int status);
/* Records one upstream round trip. */
void metrics_latency(struct metrics_proc *m, uint64_t us);
/* Every counter summed over every process. */
void metrics_totals(const struct metrics *ms, struct metrics_totals *out);
/* A worker's block (index < METRICS_REAPER_SLOT), counted in by readers from now on. */
struct metrics_proc *metrics_proc_claim(struct metrics *ms, unsigned index);


/* The status code counted at index (0 for "other"), and the upper bound of
 * latency bucket index in ms (UINT64_MAX for +Inf): for the exposition. */
int metrics_status_code(int index);
uint64_t metrics_latency_bound_ms(int index);

#endif
