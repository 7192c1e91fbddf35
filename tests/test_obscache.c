/* Unit tests of the render budget behind /metrics and /v1/health: fresh while it lasts, never older than max_age. */
#include <criterion/criterion.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "obscache.h"

/* A rendering of cost_us at now_us. */
static void oc_render(struct obscache *oc, int64_t now_us, int64_t cost_us)
{
	struct strbuf *t = obscache_begin(oc);

	cr_assert_not_null(t);
	strbuf_puts(t, "body");
	obscache_commit(oc, 200, now_us, now_us + cost_us);
}

Test(obscache, renders_every_request_within_the_budget)
{
	struct obscache oc = { 0 };
	int64_t t = 1000000;

	/* A scrape every 15 s, or even ten a second, of a 2 ms rendering: always fresh. */
	for (int i = 0; i < 100; i++, t += 100000) {
		cr_assert(obscache_must_render(&oc, t, 1000), "request %d served a saved answer", i);
		oc_render(&oc, t, 2000);
	}
	obscache_abort(&oc);
}

Test(obscache, flood_gets_the_saved_rendering_within_max_age)
{
	struct obscache oc = { 0 };
	int64_t t = 1000000, rendered_at = 0, busy = 0, start = t;
	int renders = 0, requests = 0;

	/* One request every 50 us for 10 s, each rendering costing 500 us. */
	for (; t < start + 10000000; t += 50) {
		requests++;
		if (obscache_must_render(&oc, t, 1000)) {
			oc_render(&oc, t, 500);
			rendered_at = t;
			busy += 500;
			renders++;
		}
		/* The answer served is never older than max_age. */
		cr_assert_leq(t - rendered_at, 1000 * 1000);
	}
	/* Rendering took about the budget's share of the time: 5 %, plus the first burst. */
	cr_assert_leq(busy, (t - start) * OBSCACHE_SHARE_PERCENT / 100 + OBSCACHE_BURST_US + 500,
		      "%lld us of rendering in %lld us", (long long)busy, (long long)(t - start));
	cr_assert_lt(renders, requests / 50, "%d renders for %d requests", renders, requests);
	obscache_abort(&oc);
}

Test(obscache, renderings_older_than_max_age_are_replaced)
{
	struct obscache oc = { 0 };
	int64_t t = 1000000;

	/* A rendering so slow it spends the whole budget at once. */
	cr_assert(obscache_must_render(&oc, t, 300));
	oc_render(&oc, t, 10 * OBSCACHE_BURST_US);
	cr_assert_not(obscache_must_render(&oc, t + 1000, 300));
	cr_assert_not(obscache_must_render(&oc, t + 299999, 300));
	cr_assert(obscache_must_render(&oc, t + 300000, 300));
	/* max_age_ms 0: every request renders. */
	cr_assert(obscache_must_render(&oc, t + 300001, 0));
	obscache_abort(&oc);
}

Test(obscache, pages_written_are_kept_until_done)
{
	struct obscache oc = { 0 };
	struct obscache_page *first;
	struct strbuf *t;

	t = obscache_begin(&oc);
	strbuf_puts(t, "one");
	obscache_commit(&oc, 200, 1, 2);
	first = oc.page;
	/* No response holds it: the next rendering reuses its memory. */
	cr_assert_eq(obscache_begin(&oc), &first->text);
	strbuf_puts(&first->text, "two");
	obscache_commit(&oc, 503, 3, 4);
	cr_assert_eq(oc.page->status, 503);
	/* A response is writing it (as obscache_send takes it): a new page, the old one stays. */
	first->refs++;
	t = obscache_begin(&oc);
	cr_assert_neq(t, &first->text);
	cr_assert_str_eq(first->text.buf, "two");
	cr_assert_eq(first->refs, 1, "the cache let go of the page the response holds");
	/* The response is done with it. */
	strbuf_free(&first->text);
	first->refs--;
	free(first);
	obscache_abort(&oc);
	cr_assert_null(oc.page);
}
