/* Retry budget: a token bucket shared by every worker, so an outage cannot become a retry storm. */
#include "budget.h"

void budget_init(struct budget *b)
{
	atomic_store(&b->tokens, BUDGET_START);
}

void budget_earn(struct budget *b)
{
	/* A racing earn may pass the cap by a few requests' worth: harmless,
	 * and cheaper than a CAS loop on every request. */
	if (atomic_load_explicit(&b->tokens, memory_order_relaxed) < BUDGET_MAX)
		atomic_fetch_add_explicit(&b->tokens, BUDGET_PER_REQUEST, memory_order_relaxed);
}

bool budget_spend(struct budget *b)
{
	int64_t v = atomic_load_explicit(&b->tokens, memory_order_relaxed);

	/* The CAS makes two workers racing for the last retry take it once. */
	while (v >= BUDGET_PER_RETRY)
		if (atomic_compare_exchange_weak_explicit(&b->tokens, &v, v - BUDGET_PER_RETRY,
							  memory_order_relaxed, memory_order_relaxed))
			return true;
	return false;
}

void budget_refund(struct budget *b)
{
	atomic_fetch_add_explicit(&b->tokens, BUDGET_PER_RETRY, memory_order_relaxed);
}

int64_t budget_tokens(const struct budget *b)
{
	return atomic_load_explicit(&b->tokens, memory_order_relaxed);
}
