/* Unit tests of the registry poller's pure parts: Cache-Control max-age and the next fetch's delay. */
#include <criterion/criterion.h>

#include <string.h>

#include "regpoll.h"

static int64_t rp_age(const char *v)
{
	return regpoll_max_age(v, strlen(v));
}

Test(regpoll, max_age_is_read_from_cache_control)
{
	cr_assert_eq(rp_age("max-age=60"), 60000);
	cr_assert_eq(rp_age("public, max-age=5, must-revalidate"), 5000);
	cr_assert_eq(rp_age("  MAX-AGE=7  "), 7000);
	cr_assert_eq(rp_age("max-age=\"3\""), 3000);
	cr_assert_eq(rp_age("max-age=0"), 0);
	cr_assert_eq(rp_age("no-cache"), -1);
	cr_assert_eq(rp_age("s-maxage=10"), -1);
	cr_assert_eq(rp_age("max-age="), -1);
	cr_assert_eq(rp_age("max-age=abc"), -1);
	cr_assert_eq(rp_age("max-age=-1"), -1);
	cr_assert_eq(rp_age(""), -1);
	/* Absurd values saturate instead of wrapping. */
	cr_assert_geq(rp_age("max-age=99999999999999999999999"), 366LL * 86400 * 1000);
}

static struct config_tunables rp_tunables(uint32_t poll, uint32_t floor, uint32_t stale)
{
	struct config_tunables t;

	memset(&t, 0, sizeof(t));
	t.registry_poll_ms = poll;
	t.registry_min_poll_ms = floor;
	t.registry_stale_after_ms = stale;
	return t;
}

Test(regpoll, delay_after_a_success)
{
	struct config_tunables t = rp_tunables(5000, 1000, 60000);

	cr_assert_eq(regpoll_delay(&t, -1, 0, 0), 5000, "no max-age: poll_ms");
	cr_assert_eq(regpoll_delay(&t, 20000, 0, 0), 20000, "max-age lengthens");
	cr_assert_eq(regpoll_delay(&t, 2000, 0, 0), 2000, "max-age shortens");
	cr_assert_eq(regpoll_delay(&t, 0, 0, 0), 1000, "never below the floor");
	cr_assert_eq(regpoll_delay(&t, 3600000, 0, 0), 30000, "never so long the list goes stale");
	t = rp_tunables(120000, 1000, 60000);
	cr_assert_eq(regpoll_delay(&t, 3600000, 0, 0), 120000, "poll_ms above stale/2 stands");
	t = rp_tunables(100, 500, 60000);
	cr_assert_eq(regpoll_delay(&t, -1, 0, 0), 500, "poll_ms below the floor");
}

Test(regpoll, delay_after_failures_backs_off_with_jitter)
{
	struct config_tunables t = rp_tunables(1000, 100, 60000);
	uint32_t prev_top = 0;

	for (uint32_t f = 1; f <= 12; f++) {
		uint32_t lo = UINT32_MAX, hi = 0;

		for (uint32_t rnd = 0; rnd < 5000; rnd += 7) {
			uint32_t d = regpoll_delay(&t, 5000, f, rnd * 2654435761u);

			lo = d < lo ? d : lo;
			hi = d > hi ? d : hi;
		}
		/* Jittered within [top/2, top]; top doubles up to the cap. */
		cr_assert_leq(hi, REGPOLL_BACKOFF_MAX_MS, "failure %u", f);
		cr_assert_geq(lo, hi / 2 - 1, "failure %u: %u..%u", f, lo, hi);
		cr_assert_lt(lo, hi, "failure %u: no jitter", f);
		cr_assert_geq(hi + 1, prev_top, "failure %u: the backoff shrank", f);
		prev_top = hi;
	}
	cr_assert_geq(prev_top, REGPOLL_BACKOFF_MAX_MS * 9 / 10, "the backoff never reached its cap");
	cr_assert_leq(regpoll_delay(&t, -1, 1, 0), 1000);
	cr_assert_geq(regpoll_delay(&t, -1, 1, 0), 500);
	/* The floor holds under jitter too. */
	t = rp_tunables(1000, 900, 60000);
	for (uint32_t rnd = 0; rnd < 1000; rnd++)
		cr_assert_geq(regpoll_delay(&t, -1, 1, rnd), 900);
}
