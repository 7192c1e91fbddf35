/* Unit tests of the circuit breaker on a simulated clock, and of its shared state across processes. */
#include <criterion/criterion.h>

#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "circuit.h"

static struct config_tunables ct_t;
static struct metrics_proc ct_m;
static _Atomic uint64_t ct_epoch;

static void ct_setup(void)
{
	memset(&ct_t, 0, sizeof(ct_t));
	memset(&ct_m, 0, sizeof(ct_m));
	ct_t.failure_threshold = 5;
	ct_t.open_ms = 1000;
	atomic_store(&ct_epoch, 0);
}

TestSuite(circuit_unit, .init = ct_setup);

/* Like Envoy's outlier test: 4 failures change nothing, the 5th opens. */
Test(circuit_unit, threshold_opens)
{
	struct circuit c = { 0 };

	for (int i = 0; i < 4; i++)
		circuit_failure(&c, &ct_epoch, &ct_t, 0, &ct_m);
	cr_assert(circuit_closed(&c));
	cr_assert_eq(circuit_failures(&c), 4);
	cr_assert_eq(atomic_load(&ct_epoch), 0, "no usability change yet");
	circuit_failure(&c, &ct_epoch, &ct_t, 0, &ct_m);
	cr_assert_not(circuit_closed(&c));
	cr_assert_eq(circuit_effective_state(&c, 0), CIRCUIT_OPEN);
	cr_assert_eq(atomic_load(&ct_m.c[M_CIRCUIT_OPENED]), 1);
	cr_assert_gt(atomic_load(&ct_epoch), 0);
	/* A success in between resets the count. */
	circuit_reset(&c);
	for (int i = 0; i < 4; i++)
		circuit_failure(&c, &ct_epoch, &ct_t, 0, &ct_m);
	circuit_success(&c, &ct_epoch, &ct_m);
	for (int i = 0; i < 4; i++)
		circuit_failure(&c, &ct_epoch, &ct_t, 0, &ct_m);
	cr_assert(circuit_closed(&c));
}

/* Open for open_ms (+ at most 10%), then exactly one probe claim; its success closes. */
Test(circuit_unit, open_period_probe_and_close)
{
	struct circuit c = { 0 };
	int64_t until;

	for (int i = 0; i < 5; i++)
		circuit_failure(&c, &ct_epoch, &ct_t, 100, &ct_m);
	until = circuit_next_change(&c, 100);
	cr_assert_geq(until, 1100);
	cr_assert_leq(until, 1200);
	cr_assert_not(circuit_probe_ready(&c, until - 1));
	cr_assert_eq(circuit_effective_state(&c, until - 1), CIRCUIT_OPEN);
	cr_assert(circuit_probe_ready(&c, until));
	/* Health shows the state selection acts on. */
	cr_assert_eq(circuit_effective_state(&c, until), CIRCUIT_HALF_OPEN);
	cr_assert(circuit_claim_probe(&c, &ct_epoch, until, 500, &ct_m));
	cr_assert_not(circuit_claim_probe(&c, &ct_epoch, until, 500, &ct_m), "second claim");
	cr_assert_not(circuit_probe_ready(&c, until + 499));
	cr_assert_eq(circuit_next_change(&c, until + 1), until + 500);
	cr_assert_eq(atomic_load(&ct_m.c[M_CIRCUIT_HALF_OPENED]), 1);
	circuit_success(&c, &ct_epoch, &ct_m);
	cr_assert(circuit_closed(&c));
	cr_assert_eq(circuit_failures(&c), 0);
	cr_assert_eq(circuit_next_change(&c, until), INT64_MAX);
	cr_assert_eq(atomic_load(&ct_m.c[M_CIRCUIT_CLOSED]), 1);
}

/* A failed probe reopens at once for longer; openings grow the period up to 8x. */
Test(circuit_unit, failed_probe_reopens_longer)
{
	struct circuit c = { 0 };
	int64_t now = 0, prev = 0;

	for (int i = 0; i < 5; i++)
		circuit_failure(&c, &ct_epoch, &ct_t, now, &ct_m);
	for (int k = 1; k <= 10; k++) {
		int64_t until = circuit_next_change(&c, now);
		int64_t len = until - now;
		int64_t base = 1000 * (k < CIRCUIT_MAX_MULTIPLIER ? k : CIRCUIT_MAX_MULTIPLIER);

		cr_assert_geq(len, base, "opening %d lasts %lld", k, (long long)len);
		cr_assert_leq(len, base + base / 10, "opening %d lasts %lld", k, (long long)len);
		if (k <= CIRCUIT_MAX_MULTIPLIER)
			cr_assert_geq(len, prev, "opening %d is shorter than the one before", k);
		prev = len;
		now = until;
		cr_assert(circuit_claim_probe(&c, &ct_epoch, now, 100, &ct_m));
		circuit_failure(&c, &ct_epoch, &ct_t, now, &ct_m);
		cr_assert_not(circuit_probe_ready(&c, now));
	}
}

/* A claim given back lets the next request probe at once, and says so to caches. */
Test(circuit_unit, released_claim)
{
	struct circuit c = { 0 };
	uint64_t e;

	for (int i = 0; i < 5; i++)
		circuit_failure(&c, &ct_epoch, &ct_t, 0, &ct_m);
	cr_assert(circuit_claim_probe(&c, &ct_epoch, 2000, 5000, &ct_m));
	cr_assert_not(circuit_probe_ready(&c, 2001));
	e = atomic_load(&ct_epoch);
	circuit_release_probe(&c, &ct_epoch);
	cr_assert_gt(atomic_load(&ct_epoch), e);
	cr_assert(circuit_probe_ready(&c, 2001));
	/* On a closed circuit there is nothing to give back. */
	circuit_reset(&c);
	e = atomic_load(&ct_epoch);
	circuit_release_probe(&c, &ct_epoch);
	cr_assert_eq(atomic_load(&ct_epoch), e);
}

/* Exactly one of many processes racing for the half-open probe gets it. */
Test(circuit_unit, one_probe_across_processes, .timeout = 20)
{
	struct shared {
		struct circuit c;
		_Atomic uint64_t epoch;
		_Atomic int go, won;
	} *sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	pid_t kids[8];

	cr_assert_neq(sh, MAP_FAILED);
	memset(sh, 0, sizeof(*sh));
	for (int round = 0; round < 50; round++) {
		circuit_reset(&sh->c);
		for (int i = 0; i < 5; i++)
			circuit_failure(&sh->c, &sh->epoch, &ct_t, 0, &ct_m);
		atomic_store(&sh->go, 0);
		atomic_store(&sh->won, 0);
		for (int k = 0; k < 8; k++) {
			kids[k] = fork();
			cr_assert_geq(kids[k], 0);
			if (kids[k] == 0) {
				struct metrics_proc m;

				memset(&m, 0, sizeof(m));
				while (!atomic_load(&sh->go))
					;
				if (circuit_claim_probe(&sh->c, &sh->epoch, 5000, 1000, &m))
					atomic_fetch_add(&sh->won, 1);
				_exit(0);
			}
		}
		atomic_store(&sh->go, 1);
		for (int k = 0; k < 8; k++)
			waitpid(kids[k], NULL, 0);
		cr_assert_eq(atomic_load(&sh->won), 1, "round %d: %d probes", round,
			     atomic_load(&sh->won));
	}
	munmap(sh, sizeof(*sh));
}
