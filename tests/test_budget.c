/* Unit tests of the shared retry budget: its arithmetic, its cap, and racing spenders. */
#include <criterion/criterion.h>

#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "budget.h"

Test(budget, starts_with_three_retries)
{
	struct budget b;

	budget_init(&b);
	for (int i = 0; i < 3; i++)
		cr_assert(budget_spend(&b), "retry %d", i);
	cr_assert_not(budget_spend(&b));
	cr_assert_eq(budget_tokens(&b), 0);
}

/* Five requests earn one retry; a successful retry is refunded. */
Test(budget, earn_spend_refund)
{
	struct budget b;

	budget_init(&b);
	while (budget_spend(&b))
		;
	for (int i = 0; i < 4; i++)
		budget_earn(&b);
	cr_assert_not(budget_spend(&b), "4 requests earned a whole retry");
	budget_earn(&b);
	cr_assert(budget_spend(&b));
	budget_refund(&b);
	cr_assert(budget_spend(&b), "the refund did not come back");
	cr_assert_not(budget_spend(&b));
}

/* Saved retries are capped: a long quiet period does not allow a storm later. */
Test(budget, capped)
{
	struct budget b;
	int spent = 0;

	budget_init(&b);
	for (int i = 0; i < 100000; i++)
		budget_earn(&b);
	cr_assert_leq(budget_tokens(&b), BUDGET_MAX + BUDGET_PER_REQUEST);
	while (budget_spend(&b))
		spent++;
	cr_assert_eq(spent, BUDGET_MAX / BUDGET_PER_RETRY);
}

/* Over any sequence, failing retries <= 3 + 20% of requests: the outage bound. */
Test(budget, outage_bound)
{
	struct budget b;
	int retries = 0;

	budget_init(&b);
	for (int req = 1; req <= 10000; req++) {
		budget_earn(&b);
		while (budget_spend(&b))
			retries++;
		cr_assert_leq(retries, 3 + req / 5, "after %d requests, %d retries", req, retries);
	}
}

/* Processes racing for the last retries never take more than there are. */
Test(budget, racing_spenders, .timeout = 20)
{
	struct shared {
		struct budget b;
		_Atomic int go, taken;
	} *sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	pid_t kids[6];

	cr_assert_neq(sh, MAP_FAILED);
	for (int round = 0; round < 30; round++) {
		memset(sh, 0, sizeof(*sh));
		budget_init(&sh->b);
		for (int k = 0; k < 6; k++) {
			kids[k] = fork();
			cr_assert_geq(kids[k], 0);
			if (kids[k] == 0) {
				while (!atomic_load(&sh->go))
					;
				while (budget_spend(&sh->b))
					atomic_fetch_add(&sh->taken, 1);
				_exit(0);
			}
		}
		atomic_store(&sh->go, 1);
		for (int k = 0; k < 6; k++)
			waitpid(kids[k], NULL, 0);
		cr_assert_eq(atomic_load(&sh->taken), 3, "round %d", round);
		cr_assert_eq(budget_tokens(&sh->b), 0);
	}
	munmap(sh, sizeof(*sh));
}
