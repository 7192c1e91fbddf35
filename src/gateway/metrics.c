/* Metrics: per-process counters in shared memory, summed over all workers at scrape time. */
#include "metrics.h"

#include <stdbool.h>
#include <stddef.h>


static const int metrics_statuses[] = { METRICS_STATUSES };
static const uint64_t metrics_bounds_ms[] = { METRICS_LATENCY_BOUNDS_MS };

_Static_assert(sizeof(metrics_statuses) / sizeof(metrics_statuses[0]) + 1 ==
		       METRICS_STATUS__COUNT,
	       "status table and count disagree");
_Static_assert(sizeof(metrics_bounds_ms) / sizeof(metrics_bounds_ms[0]) + 1 ==
		       METRICS_LATENCY__COUNT,
	       "latency bounds and count disagree");

int metrics_status_index(int status)
{
	for (size_t i = 0; i < sizeof(metrics_statuses) / sizeof(metrics_statuses[0]); i++)
		if (metrics_statuses[i] == status)
			return (int)i;
	return METRICS_STATUS__COUNT - 1;
}

void metrics_request(struct metrics_proc *m, size_t route, int status)
{
	if (route >= METRICS_ROUTES_MAX)
		route = METRICS_ROUTES_MAX - 1;
	atomic_fetch_add_explicit(&m->requests[route][metrics_status_index(status)], 1,
				  memory_order_relaxed);
}

void metrics_latency(struct metrics_proc *m, uint64_t us)
{
	size_t i = 0;

	while (i < METRICS_LATENCY__COUNT - 1 && us > metrics_bounds_ms[i] * 1000)
		i++;
	atomic_fetch_add_explicit(&m->latency_bucket[i], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&m->latency_sum_us, us, memory_order_relaxed);
	atomic_fetch_add_explicit(&m->latency_count, 1, memory_order_relaxed);
}

int metrics_status_code(int index)
{
	return index < METRICS_STATUS__COUNT - 1 ? metrics_statuses[index] : 0;
}

uint64_t metrics_latency_bound_ms(int index)
{
	return index < METRICS_LATENCY__COUNT - 1 ? metrics_bounds_ms[index] : UINT64_MAX;
}

uint64_t metrics_sum(const struct metrics *ms, enum metrics_counter c)
{
	uint64_t s = 0;

	for (size_t i = 0; i < METRICS_MAX_PROCS; i++)
		s += atomic_load_explicit(&ms->procs[i].c[c], memory_order_relaxed);
	return s;
}
