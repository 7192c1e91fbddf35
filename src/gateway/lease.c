/* Lease: one holder at a time among processes sharing the segment, taken over when it stops renewing. */
#include "lease.h"

bool lease_hold(struct lease *l, int32_t pid, int64_t now_ms, uint32_t ttl_ms)
{
	int32_t h = atomic_load(&l->holder);

	if (h == pid) {
		atomic_store(&l->renewed_ms, now_ms);
		return true;
	}
	if (h != 0 && now_ms - atomic_load(&l->renewed_ms) <= (int64_t)ttl_ms)
		return false;
	/* Free, or its holder went quiet: the renewal time is written after the
	 * swap, so a third contender may still find it old and take the lease
	 * from us; we would see that at our next call. */
	if (!atomic_compare_exchange_strong(&l->holder, &h, pid))
		return false;
	atomic_store(&l->renewed_ms, now_ms);
	return true;
}

void lease_release(struct lease *l, int32_t pid)
{
	int32_t h = pid;

	atomic_compare_exchange_strong(&l->holder, &h, 0);
}

int32_t lease_holder(const struct lease *l)
{
	return atomic_load(&l->holder);
}
