/* Tests of select.c: region hints, proximity fallback, round-robin, exclusion and load scoring. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "region.h"
#include "registry.h"
#include "select.h"

#define TEST_SELECT_CAP 64

/* Each test maps its own registry in shared memory, as the gateway does. */
static struct registry *test_select_reg;
static size_t test_select_size;
static struct select_snapshot *test_select_sn;

static void test_select_setup(void)
{
	void *p;

	test_select_size = registry_size(TEST_SELECT_CAP);
	p = mmap(NULL, test_select_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1,
		 0);
	cr_assert_neq(p, MAP_FAILED);
	test_select_reg = p;
	cr_assert_eq(registry_init(test_select_reg, TEST_SELECT_CAP), 0);
	test_select_sn = select_snapshot_new(true);
	cr_assert_not_null(test_select_sn);
}

static void test_select_teardown(void)
{
	munmap(test_select_reg, test_select_size);
	test_select_reg = NULL;
	select_snapshot_free(test_select_sn);
	test_select_sn = NULL;
}

/* Tunables as the defaults give them: load, 0.5/0.3/0.2, no distance weight. */
static struct config_tunables test_select_tunables(enum config_strategy strategy)
{
	struct config_tunables t;

	memset(&t, 0, sizeof(t));
	t.strategy = strategy;
	t.max_sessions = 100;
	t.w_sessions = 0.5;
	t.w_cpu = 0.3;
	t.w_memory = 0.2;
	t.w_distance = 0.0;
	/* The [overload] defaults: no test SFU here is meant to be overloaded. */
	t.max_load_score = 1.0;
	t.max_cpu = 0.95;
	t.max_memory = 0.95;
	return t;
}

struct test_select_sfu {
	const char *region;
	bool has_load;
	uint32_t sessions, max_sessions;
	double cpu, memory;
};

/* Adds SFU number n (address http://10.0.0.<n>:8070) and returns its slot. */
static uint32_t test_select_add(int n, const struct test_select_sfu *s)
{
	struct sfu_record rec;
	uint32_t slot = UINT32_MAX;
	bool created = false;

	memset(&rec, 0, sizeof(rec));
	snprintf(rec.cold.address, sizeof(rec.cold.address), "http://10.0.0.%d:8070", n);
	snprintf(rec.cold.region, sizeof(rec.cold.region), "%s", s->region);
	rec.cold.key_len = 32;
	memset(rec.cold.key, 'a' + n % 26, 32);
	rec.hot.source = SFU_SOURCE_REGISTERED;
	rec.hot.has_load = s->has_load;
	rec.hot.sessions = s->sessions;
	rec.hot.max_sessions = s->max_sessions;
	rec.hot.cpu = s->cpu;
	rec.hot.memory = s->memory;
	cr_assert_eq(registry_upsert(test_select_reg, &rec, true, &slot, &created), 0);
	cr_assert(created);
	cr_assert_lt(slot, TEST_SELECT_CAP);
	return slot;
}

/* Adds an SFU that never reported load, in region. */
static uint32_t test_select_add_region(int n, const char *region)
{
	struct test_select_sfu s = { .region = region };

	return test_select_add(n, &s);
}

static const struct select_query test_select_noquery = { NULL, 0, NULL, 0 };

static struct select_query test_select_region(const char *region)
{
	struct select_query q = { region, strlen(region), NULL, 0 };

	return q;
}

/* Selects once, asserts success and a coherent copy, and returns the slot. */
static uint32_t test_select_pick(const struct config_tunables *t, const struct select_query *q,
				 const uint32_t *exclude, size_t nexclude)
{
	struct select_choice c;
	struct sfu_record want;
	int rc;

	memset(&c, 0xa5, sizeof(c));
	rc = select_best(test_select_sn, test_select_reg, t, q, exclude, nexclude, 0, &c);
	cr_assert_eq(rc, 0, "select_best: %d", rc);
	cr_assert_eq(registry_read(test_select_reg, c.slot, &want), 0);
	cr_assert_eq(c.rec.hot.in_use, 1);
	cr_assert_str_eq(c.rec.cold.address, want.cold.address);
	cr_assert_str_eq(c.rec.cold.region, want.cold.region);
	cr_assert_eq(c.rec.cold.key_len, want.cold.key_len);
	cr_assert_arr_eq(c.rec.cold.key, want.cold.key, want.cold.key_len);
	return c.slot;
}

/* Selects n times and counts how often each slot came up. */
static void test_select_count(const struct config_tunables *t, const struct select_query *q,
			      int n, unsigned *hits)
{
	memset(hits, 0, sizeof(unsigned) * TEST_SELECT_CAP);
	for (int i = 0; i < n; i++)
		hits[test_select_pick(t, q, NULL, 0)]++;
}

TestSuite(select, .init = test_select_setup, .fini = test_select_teardown, .timeout = 10.0);

Test(select, region_hint_exact)
{
	struct config_tunables t = test_select_tunables(STRATEGY_ROUND_ROBIN);
	uint32_t a = test_select_add_region(1, "eu-west");
	uint32_t b = test_select_add_region(2, "us-east");
	uint32_t c = test_select_add_region(3, "eu-central");
	uint32_t d = test_select_add_region(4, "us-east");
	struct select_query q = test_select_region("us-east");
	unsigned hits[TEST_SELECT_CAP];

	test_select_count(&t, &q, 10, hits);
	cr_assert_eq(hits[b], 5);
	cr_assert_eq(hits[d], 5);
	cr_assert_eq(hits[a] + hits[c], 0);
	q = test_select_region("eu-central");
	cr_assert_eq(test_select_pick(&t, &q, NULL, 0), c);
}

Test(select, region_without_sfu_goes_to_nearest)
{
	struct config_tunables t = test_select_tunables(STRATEGY_ROUND_ROBIN);
	uint32_t us = test_select_add_region(1, "us-east");
	uint32_t central = test_select_add_region(2, "eu-central");
	uint32_t custom = test_select_add_region(3, "dc-1");
	struct select_query q = test_select_region("eu-west");

	/* eu-west's order: eu-central (883 km), eu-south, eu-north, me-south, us-east. */
	for (int i = 0; i < 4; i++)
		cr_assert_eq(test_select_pick(&t, &q, NULL, 0), central);
	/* sa-west's order: sa-east (none here), then us-east. */
	q = test_select_region("sa-west");
	for (int i = 0; i < 4; i++)
		cr_assert_eq(test_select_pick(&t, &q, NULL, 0), us);
	/* Without the eu-central SFU, eu-west falls through to us-east, never to
	 * the SFU of an unknown region while a known region has one. */
	q = test_select_region("eu-west");
	for (int i = 0; i < 4; i++)
		cr_assert_eq(test_select_pick(&t, &q, &central, 1), us);
	(void)custom;
}

Test(select, country_hint)
{
	struct config_tunables t = test_select_tunables(STRATEGY_ROUND_ROBIN);
	uint32_t west = test_select_add_region(1, "eu-west");
	uint32_t east = test_select_add_region(2, "ap-east");
	uint32_t us = test_select_add_region(3, "us-east");
	struct select_query q = { NULL, 0, "de", 2 };
	unsigned hits[TEST_SELECT_CAP];

	/* DE is in the contract's eu-west list. */
	cr_assert_eq(test_select_pick(&t, &q, NULL, 0), west);
	q.country = "JP"; /* ap-northeast: none, nearest is ap-east */
	cr_assert_eq(test_select_pick(&t, &q, NULL, 0), east);
	q.country = "Mx";
	cr_assert_eq(test_select_pick(&t, &q, NULL, 0), us);
	/* The region hint wins over the country. */
	q.region = "ap-east";
	q.region_len = 7;
	q.country = "FR";
	cr_assert_eq(test_select_pick(&t, &q, NULL, 0), east);
	/* An empty region hint counts as none: the country applies. */
	q.region_len = 0;
	cr_assert_eq(test_select_pick(&t, &q, NULL, 0), west);
	/* Unknown country: no hint, all SFUs. */
	q.country = "XX";
	test_select_count(&t, &q, 3, hits);
	cr_assert_eq(hits[west] + hits[east] + hits[us], 3);
	cr_assert(hits[west] == 1 && hits[east] == 1 && hits[us] == 1);
}

Test(select, unknown_region_string_matches_exactly)
{
	struct config_tunables t = test_select_tunables(STRATEGY_ROUND_ROBIN);
	uint32_t p1 = test_select_add_region(1, "dc-paris-1");
	uint32_t p2 = test_select_add_region(2, "dc-paris-2");
	uint32_t west = test_select_add_region(3, "eu-west");
	struct select_query q = test_select_region("dc-paris-2");

	for (int i = 0; i < 4; i++)
		cr_assert_eq(test_select_pick(&t, &q, NULL, 0), p2);
	/* The hint need not be NUL-terminated: its length bounds it. */
	q.region = "dc-paris-1/extra";
	q.region_len = 10;
	for (int i = 0; i < 4; i++)
		cr_assert_eq(test_select_pick(&t, &q, NULL, 0), p1);
	/* Case matters for region strings. */
	q = test_select_region("DC-PARIS-1");
	{
		unsigned hits[TEST_SELECT_CAP];

		test_select_count(&t, &q, 3, hits);
		cr_assert(hits[p1] == 1 && hits[p2] == 1 && hits[west] == 1);
	}
}

Test(select, nothing_matches_gives_all)
{
	struct config_tunables t = test_select_tunables(STRATEGY_ROUND_ROBIN);
	uint32_t a = test_select_add_region(1, "dc-1");
	uint32_t b = test_select_add_region(2, "");
	uint32_t c = test_select_add_region(3, "dc-2");
	struct select_query q = test_select_region("mars-1");
	char longhint[200];
	unsigned hits[TEST_SELECT_CAP];

	test_select_count(&t, &q, 6, hits);
	cr_assert(hits[a] == 2 && hits[b] == 2 && hits[c] == 2);
	/* A known region with no SFU in any known region: all SFUs. */
	q = test_select_region("eu-west");
	test_select_count(&t, &q, 3, hits);
	cr_assert(hits[a] == 1 && hits[b] == 1 && hits[c] == 1);
	/* A hint longer than any region string can be. */
	memset(longhint, 'x', sizeof(longhint) - 1);
	longhint[sizeof(longhint) - 1] = '\0';
	q = test_select_region(longhint);
	test_select_count(&t, &q, 3, hits);
	cr_assert(hits[a] == 1 && hits[b] == 1 && hits[c] == 1);
	/* No query at all. */
	test_select_count(&t, NULL, 3, hits);
	cr_assert(hits[a] == 1 && hits[b] == 1 && hits[c] == 1);
}

Test(select, round_robin_in_slot_order)
{
	struct config_tunables t = test_select_tunables(STRATEGY_ROUND_ROBIN);
	uint32_t slots[5];

	for (int i = 0; i < 5; i++)
		slots[i] = test_select_add_region(i + 1, "eu-west");
	for (int i = 1; i < 5; i++)
		cr_assert_gt(slots[i], slots[i - 1], "test assumes slots fill in order");
	/* Start the shared sequence somewhere odd: it is the counter, modulo n. */
	atomic_store(&test_select_reg->rr_counter, 7);
	for (int round = 0; round < 3; round++) {
		for (int k = 0; k < 5; k++) {
			uint32_t got = test_select_pick(&t, &test_select_noquery, NULL, 0);

			cr_assert_eq(got, slots[(7 + round * 5 + k) % 5], "round %d call %d: slot %u",
				     round, k, got);
		}
	}
	cr_assert_eq(atomic_load(&test_select_reg->rr_counter), 7 + 15);
}

Test(select, exclude_list)
{
	struct config_tunables t = test_select_tunables(STRATEGY_ROUND_ROBIN);
	uint32_t s[4], ex[2];
	unsigned hits[TEST_SELECT_CAP] = { 0 };

	for (int i = 0; i < 4; i++)
		s[i] = test_select_add_region(i + 1, "eu-west");
	ex[0] = s[1];
	ex[1] = s[3];
	for (int i = 0; i < 6; i++)
		hits[test_select_pick(&t, &test_select_noquery, ex, 2)]++;
	cr_assert_eq(hits[s[0]], 3);
	cr_assert_eq(hits[s[2]], 3);
	cr_assert_eq(hits[s[1]] + hits[s[3]], 0);
	/* Excluding the whole hinted region falls back to the next nearest. */
	{
		uint32_t central = test_select_add_region(9, "eu-central");
		struct select_query q = test_select_region("eu-west");
		uint32_t all_west[4] = { s[0], s[1], s[2], s[3] };

		cr_assert_eq(test_select_pick(&t, &q, all_west, 4), central);
	}
}

Test(select, empty_or_all_excluded_is_enoent)
{
	struct config_tunables t = test_select_tunables(STRATEGY_LOAD);
	struct select_choice c;
	uint32_t a, b, ex[2];

	cr_assert_eq(select_best(test_select_sn, test_select_reg, &t, NULL, NULL, 0, 0, &c), -ENOENT);
	t.strategy = STRATEGY_ROUND_ROBIN;
	cr_assert_eq(select_best(test_select_sn, test_select_reg, &t, NULL, NULL, 0, 0, &c), -ENOENT);
	a = test_select_add_region(1, "eu-west");
	b = test_select_add_region(2, "us-east");
	ex[0] = a;
	ex[1] = b;
	cr_assert_eq(select_best(test_select_sn, test_select_reg, &t, NULL, ex, 2, 0, &c), -ENOENT);
	t.strategy = STRATEGY_LOAD;
	cr_assert_eq(select_best(test_select_sn, test_select_reg, &t, NULL, ex, 2, 0, &c), -ENOENT);
	cr_assert_eq(select_best(test_select_sn, test_select_reg, &t, NULL, ex, 1, 0, &c), 0);
	cr_assert_eq(c.slot, b);
	/* Removed SFUs are no candidates either. */
	cr_assert_eq(registry_remove(test_select_reg, "http://10.0.0.1:8070"), 0);
	cr_assert_eq(registry_remove(test_select_reg, "http://10.0.0.2:8070"), 0);
	cr_assert_eq(select_best(test_select_sn, test_select_reg, &t, NULL, NULL, 0, 0, &c), -ENOENT);
}

/* A writer that died mid-write leaves the slot's sequence odd: unreadable. */
Test(select, unreadable_slots_give_eagain)
{
	struct config_tunables t = test_select_tunables(STRATEGY_LOAD);
	struct select_choice c;
	uint32_t a = test_select_add_region(1, "eu-west");
	uint32_t b;
	uint64_t seq = atomic_load(&test_select_reg->slots[a].seq);

	atomic_store(&test_select_reg->slots[a].seq, seq | 1);
	cr_assert_eq(select_best(test_select_sn, test_select_reg, &t, NULL, NULL, 0, 0, &c), -EAGAIN);
	b = test_select_add_region(2, "eu-west");
	cr_assert_eq(select_best(test_select_sn, test_select_reg, &t, NULL, NULL, 0, 0, &c), 0);
	cr_assert_eq(c.slot, b);
	/* With the readable one excluded, the torn one is still a candidate
	 * that could not be read: "try again", not "none". */
	cr_assert_eq(select_best(test_select_sn, test_select_reg, &t, NULL, &b, 1, 0, &c), -EAGAIN);
	atomic_store(&test_select_reg->slots[a].seq, seq);
}

/* A region hash that collides must not route to the wrong region: forge one by
 * rewriting a slot's hot.region_hash under its seqlock. */
Test(select, region_hash_collision_is_confirmed)
{
	struct config_tunables t = test_select_tunables(STRATEGY_ROUND_ROBIN);
	uint32_t fake = test_select_add_region(1, "dc-y");
	uint32_t west = test_select_add_region(2, "eu-west");
	struct registry_slot *s = &test_select_reg->slots[fake];
	struct select_query q = test_select_region("dc-x");
	struct sfu_hot h;
	unsigned hits[TEST_SELECT_CAP];
	uint32_t real;

	cr_assert_eq(registry_read_hot(test_select_reg, fake, &h), 0);
	h.region_hash = registry_hash("dc-x");
	seqlock_write_begin(&s->seq);
	seqlock_copy_in(s->hot, &h, SFU_HOT_WORDS);
	seqlock_write_end(&s->seq);
	/* No SFU really is in dc-x: all SFUs, the forged one included. */
	test_select_count(&t, &q, 4, hits);
	cr_assert_eq(hits[fake] + hits[west], 4);
	cr_assert_gt(hits[west], 0);
	cr_assert_gt(hits[fake], 0);
	/* With a real dc-x SFU, only it is chosen. */
	real = test_select_add_region(3, "dc-x");
	test_select_count(&t, &q, 6, hits);
	cr_assert_eq(hits[real], 6);
}

Test(select, score_formula)
{
	struct config_tunables t = test_select_tunables(STRATEGY_LOAD);
	struct sfu_hot h;

	memset(&h, 0, sizeof(h));
	/* No load report: assigned / config max only. */
	cr_assert_float_eq(select_score(&t, &h, 0), 0.0, 1e-12);
	cr_assert_float_eq(select_score(&t, &h, 10), 0.5 * 10 / 100, 1e-12);
	h.cpu = 0.9; /* ignored without has_load */
	h.sessions = 50;
	cr_assert_float_eq(select_score(&t, &h, 10), 0.05, 1e-12);
	h.has_load = 1;
	h.memory = 0.4;
	cr_assert_float_eq(select_score(&t, &h, 10), 0.5 * 60 / 100 + 0.3 * 0.9 + 0.2 * 0.4,
			   1e-12);
	/* The record's max wins over the config's. */
	h.max_sessions = 200;
	cr_assert_float_eq(select_score(&t, &h, 10), 0.5 * 60 / 200 + 0.3 * 0.9 + 0.2 * 0.4,
			   1e-12);
	/* A zeroed tunables block must not produce inf or NaN. */
	t.max_sessions = 0;
	h.max_sessions = 0;
	cr_assert(select_score(&t, &h, 10) < 1e9);
}

Test(select, load_idlest_wins)
{
	struct config_tunables t = test_select_tunables(STRATEGY_LOAD);
	struct test_select_sfu busy = { "eu-west", true, 80, 100, 0.7, 0.5 };
	struct test_select_sfu mid = { "eu-west", true, 40, 100, 0.3, 0.3 };
	struct test_select_sfu idle = { "eu-west", true, 5, 100, 0.1, 0.1 };
	uint32_t i, m;

	test_select_add(1, &busy);
	m = test_select_add(2, &mid);
	i = test_select_add(3, &idle);
	test_select_add(4, &busy);
	for (int k = 0; k < 5; k++)
		cr_assert_eq(test_select_pick(&t, &test_select_noquery, NULL, 0), i);
	/* The idlest excluded (a retry): the next best. */
	cr_assert_eq(test_select_pick(&t, &test_select_noquery, &i, 1), m);
}

Test(select, load_weights_change_the_winner)
{
	struct config_tunables t = test_select_tunables(STRATEGY_LOAD);
	struct test_select_sfu few_hot = { "eu-west", true, 10, 100, 0.9, 0.2 };
	struct test_select_sfu many_cool = { "eu-west", true, 70, 100, 0.1, 0.2 };
	uint32_t a = test_select_add(1, &few_hot);
	uint32_t b = test_select_add(2, &many_cool);

	/* Defaults: a = 0.05+0.27+0.04 = 0.36, b = 0.35+0.03+0.04 = 0.42. */
	cr_assert_eq(test_select_pick(&t, &test_select_noquery, NULL, 0), a);
	t.w_sessions = 0.1;
	t.w_cpu = 0.8; /* a = 0.01+0.72, b = 0.07+0.08 */
	cr_assert_eq(test_select_pick(&t, &test_select_noquery, NULL, 0), b);
	t.w_sessions = 1.0;
	t.w_cpu = 0.0;
	cr_assert_eq(test_select_pick(&t, &test_select_noquery, NULL, 0), a);
}

Test(select, load_assigned_counts_shift_the_winner)
{
	struct config_tunables t = test_select_tunables(STRATEGY_LOAD);
	struct test_select_sfu s1 = { "eu-west", true, 10, 100, 0.0, 0.0 };
	struct test_select_sfu s2 = { "eu-west", true, 20, 100, 0.0, 0.0 };
	uint32_t a = test_select_add(1, &s1);
	uint32_t b = test_select_add(2, &s2);
	uint32_t c = test_select_add_region(3, "eu-west"); /* no load report */

	/* c has no report and nothing assigned: score 0, it wins. */
	cr_assert_eq(test_select_pick(&t, &test_select_noquery, NULL, 0), c);
	atomic_store(&test_select_reg->slots[c].assigned, 30); /* 30 / 100 */
	cr_assert_eq(test_select_pick(&t, &test_select_noquery, NULL, 0), a);
	atomic_store(&test_select_reg->slots[a].assigned, 15); /* 25 sessions vs b's 20 */
	cr_assert_eq(test_select_pick(&t, &test_select_noquery, NULL, 0), b);
	/* A burst onto b, as the workers would count it, moves on to a again. */
	atomic_store(&test_select_reg->slots[b].assigned, 6);
	cr_assert_eq(test_select_pick(&t, &test_select_noquery, NULL, 0), a);
	/* select_best itself only reads the counters. */
	cr_assert_eq(atomic_load(&test_select_reg->slots[a].assigned), 15);
}

Test(select, load_max_sessions_record_vs_config)
{
	struct config_tunables t = test_select_tunables(STRATEGY_LOAD);
	struct test_select_sfu big = { "eu-west", true, 50, 1000, 0.0, 0.0 };
	struct test_select_sfu small = { "eu-west", true, 10, 0, 0.0, 0.0 };
	uint32_t a = test_select_add(1, &big);
	uint32_t b = test_select_add(2, &small);

	/* a: 50/1000 = 0.05 from its record; b: 10/100 from the config. */
	cr_assert_eq(test_select_pick(&t, &test_select_noquery, NULL, 0), a);
	t.max_sessions = 1000; /* b: 10/1000 */
	cr_assert_eq(test_select_pick(&t, &test_select_noquery, NULL, 0), b);
}

Test(select, load_exact_ties_alternate)
{
	struct config_tunables t = test_select_tunables(STRATEGY_LOAD);
	struct test_select_sfu idle = { "eu-west", true, 3, 100, 0.2, 0.1 };
	struct test_select_sfu busy = { "eu-west", true, 30, 100, 0.2, 0.1 };
	uint32_t a = test_select_add(1, &idle);
	uint32_t x = test_select_add(2, &busy);
	uint32_t b = test_select_add(3, &idle);
	uint32_t prev = UINT32_MAX;
	unsigned hits[TEST_SELECT_CAP] = { 0 };

	for (int i = 0; i < 10; i++) {
		uint32_t got = test_select_pick(&t, &test_select_noquery, NULL, 0);

		cr_assert(got == a || got == b, "slot %u is not one of the tied", got);
		cr_assert_neq(got, prev, "call %d repeated slot %u", i, got);
		prev = got;
		hits[got]++;
	}
	cr_assert_eq(hits[a], 5);
	cr_assert_eq(hits[b], 5);
	cr_assert_eq(hits[x], 0);
}

Test(select, distance_weight)
{
	struct config_tunables t = test_select_tunables(STRATEGY_LOAD);
	struct test_select_sfu central = { "eu-central", true, 80, 100, 0.0, 0.0 };
	struct test_select_sfu south = { "eu-south", true, 0, 100, 0.0, 0.0 };
	struct test_select_sfu us = { "us-east", true, 0, 100, 0.0, 0.0 };
	struct test_select_sfu custom = { "dc-1", true, 0, 100, 0.0, 0.0 };
	struct select_query q = test_select_region("eu-west");
	uint32_t c = test_select_add(1, &central);
	uint32_t s = test_select_add(2, &south);
	uint32_t u = test_select_add(3, &us);
	uint32_t x = test_select_add(4, &custom);

	/* No weight: the nearest region with an SFU (eu-central, 883 km) whatever
	 * its load. */
	cr_assert_eq(test_select_pick(&t, &q, NULL, 0), c);
	/* With a weight, distance trades against load: eu-central 0.40 + 0.044 vs
	 * the idle eu-south 0 + 0.055 vs us-east 0 + 0.308. Never the SFU outside
	 * the known regions. */
	t.w_distance = 1.0;
	cr_assert_eq(test_select_pick(&t, &q, NULL, 0), s);
	/* A heavy weight makes distance dominate: eu-central 0.40 + 2.21 vs
	 * eu-south 0 + 2.76. */
	t.w_distance = 50.0;
	cr_assert_eq(test_select_pick(&t, &q, NULL, 0), c);
	/* eu-central unavailable: eu-south (1105 km) before us-east (6155 km). */
	cr_assert_eq(test_select_pick(&t, &q, &c, 1), s);
	/* Without a hint the weight has no effect: idlest (ties round-robin). */
	{
		uint32_t got = test_select_pick(&t, &test_select_noquery, NULL, 0);

		cr_assert(got == s || got == u || got == x, "slot %u", got);
	}
	/* Round-robin ignores the weight and keeps the proximity walk. */
	t.strategy = STRATEGY_ROUND_ROBIN;
	for (int i = 0; i < 3; i++)
		cr_assert_eq(test_select_pick(&t, &q, NULL, 0), c);
}

/* ---- the fast paths against the scan */

/* A small deterministic generator, so a failing seed can be replayed. */
static uint64_t test_select_rand(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

#define TEST_SELECT_NOW 1000000

/* A random fleet: known and unknown regions, some without load, some full (with and
 * without a stated capacity), hot CPUs, stale reports, open and half-open circuits,
 * probe failures and assignments, with exact ties among them. */
static void test_select_random_fleet(uint64_t *seed, const struct config_tunables *t, int max)
{
	static const char *const regions[] = { "eu-west", "eu-central", "us-east", "ap-south",
						"lab-1", "lab-2", "" };
	struct config_tunables open1 = *t;
	struct metrics_proc m;
	int n = 1 + (int)(test_select_rand(seed) % (uint64_t)max);

	memset(&m, 0, sizeof(m));
	open1.failure_threshold = 1;
	open1.open_ms = 1000;
	for (int i = 0; i < n; i++) {
		struct sfu_record rec;
		uint32_t slot;
		bool created;
		uint64_t r = test_select_rand(seed);

		memset(&rec, 0, sizeof(rec));
		snprintf(rec.cold.address, sizeof(rec.cold.address), "http://10.1.%d.%d:8070", i / 200,
			 i % 200);
		snprintf(rec.cold.region, sizeof(rec.cold.region), "%s",
			 regions[r % (sizeof(regions) / sizeof(regions[0]))]);
		rec.cold.key_len = 16;
		rec.hot.source = (r >> 8) % 3 == 0 ? SFU_SOURCE_STATIC : SFU_SOURCE_REGISTERED;
		rec.hot.has_load = (r >> 10) % 4 != 0;
		/* Few distinct values, so exact ties happen. */
		rec.hot.sessions = (uint32_t)((r >> 12) % 5) * 30;
		rec.hot.channels = (uint32_t)((r >> 15) % 3);
		rec.hot.max_sessions = (r >> 17) % 3 == 0 ? 100 : 0;
		rec.hot.cpu = (double)((r >> 19) % 5) * 0.24;
		rec.hot.memory = (double)((r >> 22) % 3) * 0.3;
		rec.hot.last_report_ms = TEST_SELECT_NOW - (int64_t)((r >> 24) % 45000);
		cr_assert_eq(registry_upsert(test_select_reg, &rec, true, &slot, &created), 0);
		atomic_store(&test_select_reg->slots[slot].assigned, (r >> 30) % 3);
		atomic_store(&test_select_reg->slots[slot].probe_down, (r >> 33) % 9 == 0);
		if ((r >> 36) % 3 == 0) /* open, its period over (half-open) or not */
			circuit_failure(&test_select_reg->slots[slot].cb,
					&test_select_reg->health_epoch, &open1,
					TEST_SELECT_NOW - (int64_t)((r >> 40) % 2000), &m);
	}
}

/* The snapshot paths (strategy load without a distance weight, and round-robin) must
 * answer exactly as the scan does: the same SFU, or the same error, for every fleet,
 * hint, strategy and exclusion list, when both draw the same round-robin ticket. */
Test(select, fast_paths_agree_with_the_scan, .timeout = 60)
{
	struct select_snapshot *slow = select_snapshot_new(false);
	static const char *const hints[] = { "", "eu-west", "ap-south", "lab-1", "lab-9", "sa-east" };
	uint64_t seed = 0x9e3779b97f4a7c15ULL;
	int compared = 0, chosen = 0;

	cr_assert_not_null(slow);
	for (int fleet = 0; fleet < 600; fleet++) {
		struct config_tunables t = test_select_tunables(
			fleet % 2 ? STRATEGY_ROUND_ROBIN : STRATEGY_LOAD);

		t.stale_after_ms = 30000;
		t.max_sessions = fleet % 3 == 0 ? 120 : 0;
		cr_assert_eq(registry_init(test_select_reg, TEST_SELECT_CAP), 0);
		/* Small fleets too, where every SFU may be unusable for mixed reasons. */
		test_select_random_fleet(&seed, &t, fleet % 4 == 0 ? 60 : 4);
		for (size_t h = 0; h < sizeof(hints) / sizeof(hints[0]); h++) {
			for (int ex = 0; ex < 3; ex++) {
				struct select_query q = { hints[h], strlen(hints[h]), NULL, 0 };
				uint32_t exclude[2] = { (uint32_t)(test_select_rand(&seed) % 8), 3 };
				uint64_t ticket = test_select_rand(&seed) % 1000;
				struct select_choice a, b;
				int ra, rb;

				if (h == 0 && ex == 1) { /* a country hint instead */
					q.region_len = 0;
					q.country = "de";
					q.country_len = 2;
				}
				atomic_store(&test_select_reg->rr_counter, ticket);
				ra = select_best(test_select_sn, test_select_reg, &t, &q, exclude,
						 (size_t)ex % 3, TEST_SELECT_NOW, &a);
				atomic_store(&test_select_reg->rr_counter, ticket);
				rb = select_best(slow, test_select_reg, &t, &q, exclude, (size_t)ex % 3,
						 TEST_SELECT_NOW, &b);
				cr_assert_eq(ra, rb,
					     "fleet %d hint '%s' exclude %d strategy %u: fast %d, scan %d",
					     fleet, hints[h], ex, t.strategy, ra, rb);
				if (ra == 0) {
					cr_assert_eq(a.slot, b.slot,
						     "fleet %d hint '%s' exclude %d strategy %u: fast "
						     "slot %u, scan slot %u",
						     fleet, hints[h], ex, t.strategy, a.slot, b.slot);
					chosen++;
				}
				compared++;
			}
		}
	}
	/* The fleets must exercise both answers, or the comparison proves little. */
	cr_assert_gt(chosen, compared / 4, "%d of %d chose an SFU", chosen, compared);
	cr_assert_lt(chosen, compared, "no case ended without an SFU");
	select_snapshot_free(slow);
}
