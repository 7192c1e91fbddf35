/* Benchmark of select_best() at 10/100/1000 SFUs, and a simulation of bursts between heartbeats. */
/*
 * Build (from the top of the tree, after make):
 *   cc -std=c11 -D_GNU_SOURCE -O2 -Iinclude bench/bench_select.c build/libsfugw.a \
 *      $(pkg-config --libs libuv json-c openssl) -lpthread -lrt -lm -o build/bench-select
 * Run: build/bench-select [time|sim|all]   (default all)
 *
 * "time": microseconds per select_best() call on a registry in MAP_SHARED anonymous
 * memory (as the daemon's shm segment), with mixed regions and loads, for both
 * strategies, with and without a region hint.
 * "sim": K SFUs report their loads; R channel requests arrive before the next
 * report. Compares (a) lowest score ignoring what was sent since the report,
 * (b) lowest score counting it (select.c's slot.assigned), (c) power of two
 * choices counting it. Three worlds: one gateway whose estimate is exact (one
 * session per channel), one gateway with channels of 1 to 9 sessions (the
 * estimate counts one), and four gateways each counting only its own channels.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "config.h"
#include "log.h"
#include "region.h"
#include "registry.h"
#include "select.h"

/* The selection state a worker owns; one is enough for this single-threaded program. */
static struct select_snapshot *bench_sn;

#define BENCH_MAX_K 1000
#define BENCH_MAX_GW 4
#define BENCH_SAMPLES 20000
#define BENCH_BATCHES 2000

/* xorshift64*: reproducible runs without libc's rand() state. */
static uint64_t bench_rng = 0x9e3779b97f4a7c15ULL;

static uint64_t bench_rand(void)
{
	bench_rng ^= bench_rng >> 12;
	bench_rng ^= bench_rng << 25;
	bench_rng ^= bench_rng >> 27;
	return bench_rng * 2685821657736338717ULL;
}

/* Uniform in [0, n). */
static uint32_t bench_below(uint32_t n)
{
	return (uint32_t)((bench_rand() >> 32) * n >> 32);
}

static double bench_unit(void)
{
	return (double)(bench_rand() >> 11) / 9007199254740992.0;
}

static int64_t bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The daemon's defaults for what selection reads. */
static void bench_tunables(struct config_tunables *t, enum config_strategy s)
{
	memset(t, 0, sizeof(*t));
	t->strategy = s;
	t->max_sessions = 100;
	t->w_sessions = 0.5;
	t->w_cpu = 0.3;
	t->w_memory = 0.2;
	t->max_load_score = 1.0;
	t->max_cpu = 0.95;
	t->max_memory = 0.95;
	t->affinity_ttl_ms = 60000;
}

/* A registry of capacity slots in shared anonymous memory, like the segment. */
static struct registry *bench_registry(uint32_t capacity)
{
	size_t size = registry_size(capacity);
	struct registry *r = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
				  -1, 0);

	if (r == MAP_FAILED) {
		perror("mmap");
		exit(1);
	}
	if (registry_init(r, capacity) != 0) {
		fprintf(stderr, "registry_init failed\n");
		exit(1);
	}
	return r;
}

static void bench_unmap(struct registry *r)
{
	munmap(r, registry_size(r->capacity));
}

/* One SFU: address from its index, the given region and load. */
static void bench_add(struct registry *r, uint32_t i, const char *region, bool has_load,
		      uint32_t sessions, double cpu, double memory)
{
	struct sfu_record rec;
	int rc;

	memset(&rec, 0, sizeof(rec));
	rec.hot.source = has_load ? SFU_SOURCE_REGISTERED : SFU_SOURCE_STATIC;
	rec.hot.has_load = has_load;
	rec.hot.sessions = sessions;
	rec.hot.channels = sessions / 4;
	rec.hot.max_sessions = 100;
	rec.hot.cpu = cpu;
	rec.hot.memory = memory;
	snprintf(rec.cold.address, sizeof(rec.cold.address), "http://10.%u.%u.%u:8070",
		 (i >> 16) & 255, (i >> 8) & 255, i & 255);
	snprintf(rec.cold.region, sizeof(rec.cold.region), "%s", region);
	memset(rec.cold.key, 0x5a, 32);
	rec.cold.key_len = 32;
	rc = registry_upsert(r, &rec, true, NULL, NULL);
	if (rc != 0) {
		fprintf(stderr, "registry_upsert: %s\n", strerror(-rc));
		exit(1);
	}
}

/* ---- timing */

/* A fleet of n SFUs: most in Europe and the US, some in the other known
 * regions, one in ten in an on-premise region the gateway does not know; one
 * in five static without a load report. */
static struct registry *bench_fleet(uint32_t n)
{
	static const char *const regions[] = { "eu-west", "eu-west", "eu-central", "us-east",
					       "us-east", "eu-north", "ap-southeast", "sa-east",
					       "ap-northeast", "onprem-a" };
	struct registry *r = bench_registry(n);

	for (uint32_t i = 0; i < n; i++) {
		uint32_t s = 5 + bench_below(80);

		bench_add(r, i, regions[bench_below(10)], bench_below(5) != 0, s,
			  0.1 + 0.7 * s / 100.0 + 0.05 * bench_unit(), 0.2 + 0.5 * bench_unit());
	}
	return r;
}

static int bench_cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

/*
 * The machine may be shared, so wall-clock means would mostly measure the
 * scheduler: the typical cost is the median of many timed batches of 64
 * calls, and the tail comes from individually timed calls (p50, p99). Each
 * selection counts as an assignment, as a forwarded channel does.
 */
static void bench_time_one(struct registry *r, const struct config_tunables *t,
			   const struct select_query *q, double out[3])
{
	static int64_t samples[BENCH_SAMPLES], batches[BENCH_BATCHES];
	/* Fewer rounds on big registries keep every row near a second. */
	int nb = r->capacity >= 1000 ? BENCH_BATCHES / 10 : BENCH_BATCHES;
	int ns = r->capacity >= 1000 ? BENCH_SAMPLES / 4 : BENCH_SAMPLES;
	struct select_choice c;

	for (int k = 0; k < 1000; k++)
		select_best(bench_sn, r, t, q, NULL, 0, 0, &c);
	for (int b = 0; b < nb; b++) {
		int64_t t0 = bench_now_ns();

		for (int k = 0; k < 64; k++) {
			if (select_best(bench_sn, r, t, q, NULL, 0, 0, &c) != 0) {
				fprintf(stderr, "select_best failed\n");
				exit(1);
			}
			atomic_fetch_add_explicit(&r->slots[c.slot].assigned, 1,
						  memory_order_relaxed);
		}
		batches[b] = bench_now_ns() - t0;
	}
	for (int k = 0; k < ns; k++) {
		int64_t t0 = bench_now_ns();

		select_best(bench_sn, r, t, q, NULL, 0, 0, &c);
		samples[k] = bench_now_ns() - t0;
		atomic_fetch_add_explicit(&r->slots[c.slot].assigned, 1, memory_order_relaxed);
	}
	qsort(batches, (size_t)nb, sizeof(batches[0]), bench_cmp_i64);
	qsort(samples, (size_t)ns, sizeof(samples[0]), bench_cmp_i64);
	out[0] = (double)batches[nb / 2] / 64.0 / 1000.0;
	out[1] = (double)samples[ns / 2] / 1000.0;
	out[2] = (double)samples[ns * 99 / 100] / 1000.0;
}

static void bench_time(void)
{
	static const uint32_t sizes[] = { 10, 100, 1000 };
	static const struct {
		const char *name;
		struct select_query q;
	} hints[] = {
		{ "none", { NULL, 0, NULL, 0 } },
		{ "region=eu-west", { "eu-west", 7, NULL, 0 } },
		{ "country=JP", { NULL, 0, "JP", 2 } },
		{ "region=onprem-a", { "onprem-a", 8, NULL, 0 } },
	};
	static const char *const strategies[] = { "load", "round-robin" };

	double load1 = 0;
	FILE *f = fopen("/proc/loadavg", "r");

	if (f != NULL) {
		if (fscanf(f, "%lf", &load1) != 1)
			load1 = -1;
		fclose(f);
	}
	printf("select_best: us per selection; typical = median of %d batches of 64 calls "
	       "(%d at 1000 SFUs);\np50/p99 of %d single calls (%d at 1000), each with "
	       "~0.02 us of clock_gettime; load average %.2f\n",
	       BENCH_BATCHES, BENCH_BATCHES / 10, BENCH_SAMPLES, BENCH_SAMPLES / 4, load1);
	printf("%6s  %-12s %-16s %10s %10s %10s\n", "sfus", "strategy", "hint", "typical",
	       "p50", "p99");
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		struct registry *r = bench_fleet(sizes[s]);

		for (int st = 0; st < 2; st++) {
			struct config_tunables t;

			bench_tunables(&t, st == 0 ? STRATEGY_LOAD : STRATEGY_ROUND_ROBIN);
			for (size_t h = 0; h < sizeof(hints) / sizeof(hints[0]); h++) {
				double us[3];

				bench_time_one(r, &t, &hints[h].q, us);
				printf("%6u  %-12s %-16s %10.3f %10.3f %10.3f\n", sizes[s],
				       strategies[st], hints[h].name, us[0], us[1], us[2]);
			}
		}
		bench_unmap(r);
	}
}

/* ---- simulation of bursts between heartbeats */

enum sim_strategy { SIM_PLAIN, SIM_ASSIGNED, SIM_TWO_CHOICES, SIM_WEIGHTED, SIM_ORACLE,
		   SIM__COUNT };

/* One world: how many gateways (each its own registry and assignment counts)
 * and how many sessions a channel really brings (1..max_channel, uniform). */
struct sim_world {
	const char *name;
	int gateways;
	int max_channel;
};

struct sim_result {
	double max_load; /* mean over trials of the highest final sessions */
	double mean_load; /* mean over trials of the mean final sessions */
	double max_new; /* mean over trials of the most channels one SFU got */
	double idlest_most; /* share of trials where the idlest-reported got the most */
};

/* Power of two choices: two distinct SFUs at random, the lower score (counting
 * assignments) wins; the first on a tie. */
static uint32_t sim_two_choices(struct registry *r, const struct config_tunables *t, uint32_t k)
{
	uint32_t a = bench_below(k), b = bench_below(k - 1);
	struct sfu_hot ha, hb;
	double sa, sb;

	if (b >= a)
		b++;
	registry_read_hot(r, a, &ha);
	registry_read_hot(r, b, &hb);
	sa = select_score(t, &ha, atomic_load(&r->slots[a].assigned));
	sb = select_score(t, &hb, atomic_load(&r->slots[b].assigned));
	return sb < sa ? b : a;
}

/* Lowest score where SFU i counts extra[i] sessions on top of its report; the
 * first on a tie (the model strategies d and o, which select.c does not have). */
static uint32_t sim_lowest(struct registry *r, const struct config_tunables *t, uint32_t k,
			   const uint64_t *extra)
{
	uint32_t best = 0;
	double best_score = INFINITY;

	for (uint32_t i = 0; i < k; i++) {
		struct sfu_hot h;
		double sc;

		registry_read_hot(r, i, &h);
		sc = select_score(t, &h, extra[i]);
		if (sc < best_score) {
			best_score = sc;
			best = i;
		}
	}
	return best;
}

/* One trial: fresh reports, R requests spread round-robin over the gateways. */
static void sim_trial(const struct sim_world *w, enum sim_strategy s, uint32_t k, uint32_t reqs,
		      struct registry **regs, struct sim_result *acc)
{
	struct config_tunables t;
	uint32_t sessions[BENCH_MAX_K], got[BENCH_MAX_K] = { 0 }, load[BENCH_MAX_K];
	double cpu[BENCH_MAX_K], mem[BENCH_MAX_K];
	uint64_t extra[BENCH_MAX_K];
	uint32_t idlest = 0, max_load = 0, max_got = 0;
	double idlest_score = INFINITY, total = 0;

	bench_tunables(&t, STRATEGY_LOAD);
	for (uint32_t i = 0; i < k; i++) {
		struct sfu_hot h = { 0 };
		double sc;

		sessions[i] = 20 + bench_below(41);
		cpu[i] = 0.1 + 0.6 * sessions[i] / 100.0 + 0.1 * bench_unit();
		mem[i] = 0.3 + 0.2 * bench_unit();
		h.has_load = 1;
		h.sessions = sessions[i];
		h.max_sessions = 100;
		h.cpu = cpu[i];
		h.memory = mem[i];
		sc = select_score(&t, &h, 0);
		if (sc < idlest_score) {
			idlest_score = sc;
			idlest = i;
		}
		load[i] = sessions[i];
	}
	/* Every gateway receives the same report (a heartbeat resets assigned). */
	for (int g = 0; g < w->gateways; g++)
		for (uint32_t i = 0; i < k; i++)
			bench_add(regs[g], i, "eu-west", true, sessions[i], cpu[i], mem[i]);
	for (uint32_t q = 0; q < reqs; q++) {
		struct registry *r = regs[q % (uint32_t)w->gateways];
		struct select_choice c;
		uint32_t slot = 0, size;

		switch (s) {
		case SIM_PLAIN:
		case SIM_ASSIGNED:
			if (select_best(bench_sn, r, &t, NULL, NULL, 0, 0, &c) != 0) {
				fprintf(stderr, "select_best failed\n");
				exit(1);
			}
			slot = c.slot;
			break;
		case SIM_TWO_CHOICES:
			slot = sim_two_choices(r, &t, k);
			break;
		case SIM_WEIGHTED:
			/* The reports give sessions and channels, so the mean
			 * channel size is known: count it per assignment. */
			for (uint32_t i = 0; i < k; i++)
				extra[i] = atomic_load(&r->slots[i].assigned) *
					   (uint64_t)(w->max_channel + 1) / 2;
			slot = sim_lowest(r, &t, k, extra);
			break;
		case SIM_ORACLE:
			for (uint32_t i = 0; i < k; i++)
				extra[i] = load[i] - sessions[i];
			slot = sim_lowest(r, &t, k, extra);
			break;
		default:
			break;
		}
		if (s != SIM_PLAIN)
			atomic_fetch_add_explicit(&r->slots[slot].assigned, 1,
						  memory_order_relaxed);
		size = 1 + (w->max_channel > 1 ? bench_below((uint32_t)w->max_channel) : 0);
		got[slot]++;
		load[slot] += size;
	}
	for (uint32_t i = 0; i < k; i++) {
		if (load[i] > max_load)
			max_load = load[i];
		if (got[i] > max_got)
			max_got = got[i];
		total += load[i];
	}
	acc->max_load += max_load;
	acc->mean_load += total / k;
	acc->max_new += max_got;
	acc->idlest_most += got[idlest] == max_got;
}

static void bench_sim(void)
{
	static const struct sim_world worlds[] = {
		{ "1 gateway, 1 session/channel", 1, 1 },
		{ "1 gateway, 1-9 sessions/channel", 1, 9 },
		{ "4 gateways, 1 session/channel", 4, 1 },
	};
	static const struct {
		uint32_t k, r;
	} shapes[] = { { 10, 50 }, { 10, 200 }, { 100, 100 }, { 100, 1000 } };
	static const char *const names[] = { "a lowest, no count", "b lowest+assigned",
					     "c two-choices+assigned", "d lowest+assigned*size",
					     "o oracle (true load)" };
	const int trials = 200;

	printf("\nbursts between heartbeats: reported sessions uniform 20..60 of 100, cpu and "
	       "memory correlated;\n%d trials each; max/mean = final sessions of the busiest "
	       "SFU and the fleet mean;\nmost_new = channels to the SFU that got the most; "
	       "idlest_most = share of trials in which\nthe SFU that reported the lowest score "
	       "got the most channels\n",
	       trials);
	printf("%-32s %5s %5s  %-23s %8s %8s %8s %8s\n", "world", "K", "R", "strategy", "max",
	       "mean", "most_new", "idlest");
	for (size_t wi = 0; wi < sizeof(worlds) / sizeof(worlds[0]); wi++) {
		const struct sim_world *w = &worlds[wi];

		for (size_t si = 0; si < sizeof(shapes) / sizeof(shapes[0]); si++) {
			uint32_t k = shapes[si].k, reqs = shapes[si].r;

			for (int s = SIM_PLAIN; s < SIM__COUNT; s++) {
				struct registry *regs[BENCH_MAX_GW];
				struct sim_result acc = { 0 };

				bench_rng = 0x243f6a8885a308d3ULL ^ (si * 7919 + wi * 104729);
				for (int g = 0; g < w->gateways; g++)
					regs[g] = bench_registry(k);
				for (int tr = 0; tr < trials; tr++)
					sim_trial(w, (enum sim_strategy)s, k, reqs, regs, &acc);
				for (int g = 0; g < w->gateways; g++)
					bench_unmap(regs[g]);
				printf("%-32s %5u %5u  %-23s %8.1f %8.1f %8.1f %7.0f%%\n", w->name,
				       k, reqs, names[s], acc.max_load / trials,
				       acc.mean_load / trials, acc.max_new / trials,
				       100.0 * acc.idlest_most / trials);
			}
		}
	}
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "all";

	log_set_level(LOG_LEVEL_ERROR);
	bench_sn = select_snapshot_new(true);
	if (bench_sn == NULL)
		return 1;
	if (strcmp(mode, "time") != 0 && strcmp(mode, "sim") != 0 && strcmp(mode, "all") != 0) {
		fprintf(stderr, "usage: %s [time|sim|all]\n", argv[0]);
		return 2;
	}
	if (strcmp(mode, "sim") != 0)
		bench_time();
	if (strcmp(mode, "time") != 0)
		bench_sim();
	return 0;
}
