/* Retry budget: a token bucket shared by every worker, so an outage cannot become a retry storm. */
#ifndef SFU_BUDGET_H
#define SFU_BUDGET_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/*
 * In thousandths of a retry: the bucket starts with 3 retries, each channel
 * request earns 0.2, each retry spends 1 (given back when it succeeds), and
 * it holds at most 10. So over any run, failing retries <= 3 + 20% of
 * requests, fleet-wide (Envoy's retry budget, made rate-based): when every
 * SFU is down, upstream attempts stay below 1.2 x requests + 3 instead of
 * tripling, and one bad SFU among good ones never exhausts it.
 */
#define BUDGET_START 3000
#define BUDGET_PER_REQUEST 200
#define BUDGET_PER_RETRY 1000
#define BUDGET_MAX 10000

/* Lives in shared memory. Writers and readers: every worker, with atomic
 * read-modify-writes only; the master initialises it. */
struct budget {
	_Atomic int64_t tokens;
};

void budget_init(struct budget *b);
/* A channel request arrived: earn a fifth of a retry (up to the cap). */
void budget_earn(struct budget *b);
/* Takes one retry; false when the budget is spent (do not retry). */
bool budget_spend(struct budget *b);
/* A retry succeeded: it costs nothing. */
void budget_refund(struct budget *b);
/* Retries left, in thousandths. */
int64_t budget_tokens(const struct budget *b);

#endif
