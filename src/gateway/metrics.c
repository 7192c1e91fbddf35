/* Metrics: per-process counters in shared memory, summed over all workers at scrape time. */
#include "metrics.h"

#include <stdbool.h>
#include <stddef.h>
#include <string.h>


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

/* How many blocks readers sum: the workers' ever used [0, high), then the reaper's. */
static size_t metrics_blocks(const struct metrics *ms)
{
	uint32_t high = atomic_load_explicit(&ms->procs_high, memory_order_acquire);

	return (high < METRICS_REAPER_SLOT ? high : METRICS_REAPER_SLOT) + 1;
}

/* The k-th of them (k < metrics_blocks()). */
static const struct metrics_proc *metrics_block(const struct metrics *ms, size_t k, size_t n)
{
	return &ms->procs[k + 1 < n ? k : METRICS_REAPER_SLOT];
}

void metrics_totals(const struct metrics *ms, struct metrics_totals *out)
{
	size_t n = metrics_blocks(ms);

	memset(out, 0, sizeof(*out));
	for (size_t k = 0; k < n; k++) {
		const struct metrics_proc *p = metrics_block(ms, k, n);

		for (int c = 0; c < M__COUNT; c++)
			out->c[c] += atomic_load_explicit(&p->c[c], memory_order_relaxed);
		for (int r = 0; r < METRICS_ROUTES_MAX; r++)
			for (int s = 0; s < METRICS_STATUS__COUNT; s++)
				out->requests[r][s] += atomic_load_explicit(&p->requests[r][s],
									    memory_order_relaxed);
		for (int b = 0; b < METRICS_LATENCY__COUNT; b++)
			out->latency_bucket[b] += atomic_load_explicit(&p->latency_bucket[b],
								       memory_order_relaxed);
		out->latency_sum_us += atomic_load_explicit(&p->latency_sum_us, memory_order_relaxed);
		out->latency_count += atomic_load_explicit(&p->latency_count, memory_order_relaxed);
	}
}

struct metrics_proc *metrics_proc_claim(struct metrics *ms, unsigned index)
{
	uint32_t high = atomic_load(&ms->procs_high);

	if (index >= METRICS_REAPER_SLOT)
		index = 0;
	while (high < index + 1 && !atomic_compare_exchange_weak(&ms->procs_high, &high, index + 1))
		;
	return &ms->procs[index];
}
