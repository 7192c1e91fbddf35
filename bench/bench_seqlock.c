/* Benchmark of the registry's seqlocked reads across processes: reads/s, torn reads, find cost. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "registry.h"

/*
 * Usage: bench_seqlock [readers [writers [target_reads [max_seconds]]]]
 * Defaults: 2 readers, 1 writer, 10^8 reads, 20 s. The registry holds
 * BENCH_SFUS SFUs; writers rewrite BENCH_HOT of them as fast as they can (the
 * contended case) and every other write goes to a random one (heartbeats).
 * Readers scan all slots like selection does (hot part), read every 16th
 * slot whole, and check every copy for consistency. Exit status 1 when any
 * copy was torn or the writers could not write.
 */
#define BENCH_SFUS 1000
#define BENCH_HOT 4
#define BENCH_MAX_PROCS 64

struct bench_shared {
	_Atomic uint32_t counter;
	_Atomic uint32_t readers_done;
	uint64_t target_per_reader;
	int64_t hard_deadline_ns;
	struct {
		_Atomic uint64_t reads, torn, eagain, ns;
	} rd[BENCH_MAX_PROCS];
	struct {
		_Atomic uint64_t writes, errors;
	} wr[BENCH_MAX_PROCS];
};

static int64_t bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Every field follows from the slot's id k and the write's counter u. */
static void bench_record(struct sfu_record *rec, uint32_t k, uint32_t u)
{
	memset(rec, 0, sizeof(*rec));
	snprintf(rec->cold.address, sizeof(rec->cold.address), "http://10.0.%" PRIu32 ".%" PRIu32
		 ":8070", k / 250, k % 250);
	snprintf(rec->cold.region, sizeof(rec->cold.region), "r%" PRIu32, u);
	rec->cold.key_len = 1 + u % CONFIG_KEY_MAX;
	memset(rec->cold.key, (int)(u & 0xff), rec->cold.key_len);
	rec->cold.flags = u ^ 0xdeadbeefU;
	rec->hot.source = SFU_SOURCE_REGISTERED;
	rec->hot.has_load = 1;
	rec->hot.sessions = u;
	rec->hot.channels = u * 3;
	rec->hot.max_sessions = k;
	rec->hot.pad1 = u ^ 0xa5a5a5a5U;
	rec->hot.cpu = u / 1e9;
	rec->hot.memory = (u % 1000) / 1000.0;
	rec->hot.last_report_ms = (int64_t)u * 7;
}

static int bench_hot_ok(const struct sfu_hot *h)
{
	uint32_t u = h->sessions;

	return h->in_use == 1 && h->channels == u * 3 && h->pad1 == (u ^ 0xa5a5a5a5U) &&
	       h->cpu == u / 1e9 && h->last_report_ms == (int64_t)u * 7;
}

static int bench_record_ok(const struct sfu_record *r)
{
	uint32_t u = r->hot.sessions;
	char region[CONFIG_REGION_MAX];

	if (!bench_hot_ok(&r->hot) || r->cold.flags != (u ^ 0xdeadbeefU) ||
	    r->cold.key_len != 1 + u % CONFIG_KEY_MAX)
		return 0;
	for (uint32_t i = 0; i < CONFIG_KEY_MAX; i++) {
		if (r->cold.key[i] != (i < r->cold.key_len ? (u & 0xff) : 0))
			return 0;
	}
	snprintf(region, sizeof(region), "r%" PRIu32, u);
	return strcmp(region, r->cold.region) == 0 &&
	       r->hot.region_hash == registry_hash(r->cold.region) &&
	       r->hot.address_hash == registry_hash(r->cold.address);
}

static void bench_writer(struct registry *r, struct bench_shared *sh, int id, uint32_t readers)
{
	struct sfu_record rec;
	uint64_t writes = 0, errors = 0;
	uint32_t seed = (uint32_t)id * 2654435761U + 1;

	for (uint64_t n = 0;; n++) {
		uint32_t u = atomic_fetch_add(&sh->counter, 1) + 1, k;

		if ((n & 63) == 0 && (atomic_load(&sh->readers_done) == readers ||
				      bench_now_ns() >= sh->hard_deadline_ns))
			break;
		seed = seed * 1103515245U + 12345U;
		k = (n & 1) ? (seed >> 8) % BENCH_SFUS : u % BENCH_HOT;
		bench_record(&rec, k, u);
		if (registry_upsert(r, &rec, true, NULL, NULL) == 0)
			writes++;
		else
			errors++;
	}
	atomic_store(&sh->wr[id].writes, writes);
	atomic_store(&sh->wr[id].errors, errors);
}

static void bench_reader(struct registry *r, struct bench_shared *sh, int id)
{
	uint64_t reads = 0, torn = 0, eagain = 0;
	int64_t t0 = bench_now_ns();
	struct sfu_record rec;
	struct sfu_hot hot;

	while (reads < sh->target_per_reader && bench_now_ns() < sh->hard_deadline_ns) {
		/* One selection-like pass over every slot, plus extra passes over
		 * the contended ones. */
		for (uint32_t i = 0; i < BENCH_SFUS + 4 * BENCH_HOT; i++) {
			uint32_t slot = i < BENCH_SFUS ? i : i % BENCH_HOT;
			int err;

			if ((i & 15) == 0) {
				err = registry_read(r, slot, &rec);
				if (err == 0 && !bench_record_ok(&rec))
					torn++;
			} else {
				err = registry_read_hot(r, slot, &hot);
				if (err == 0 && !bench_hot_ok(&hot))
					torn++;
			}
			if (err == -EAGAIN)
				eagain++;
			else if (err != 0)
				torn++; /* every slot is in use: ENOENT is wrong */
			reads++;
		}
	}
	atomic_store(&sh->rd[id].ns, (uint64_t)(bench_now_ns() - t0));
	atomic_store(&sh->rd[id].reads, reads);
	atomic_store(&sh->rd[id].torn, torn);
	atomic_store(&sh->rd[id].eagain, eagain);
	atomic_fetch_add(&sh->readers_done, 1);
}

/* Lookup cost with BENCH_SFUS SFUs: the address in the last slot (a full
 * scan) and one that is absent (also a full scan). */
static void bench_find(const struct registry *r)
{
	const int rounds = 20000;
	char last[64];
	int64_t t0;
	int hits = 0;

	snprintf(last, sizeof(last), "http://10.0.%d.%d:8070", (BENCH_SFUS - 1) / 250,
		 (BENCH_SFUS - 1) % 250);
	t0 = bench_now_ns();
	for (int n = 0; n < rounds; n++)
		hits += registry_find(r, (n & 1) ? last : "http://192.0.2.1:8070") >= 0;
	printf("registry_find over %d SFUs: %.0f ns per lookup (%d hits)\n", BENCH_SFUS,
	       (double)(bench_now_ns() - t0) / rounds, hits);
}

int main(int argc, char **argv)
{
	uint32_t readers = argc > 1 ? (uint32_t)atoi(argv[1]) : 2;
	uint32_t writers = argc > 2 ? (uint32_t)atoi(argv[2]) : 1;
	uint64_t target = argc > 3 ? strtoull(argv[3], NULL, 10) : 100000000ULL;
	int max_s = argc > 4 ? atoi(argv[4]) : 20;
	uint64_t reads = 0, torn = 0, eagain = 0, writes = 0, errors = 0, ns_max = 0;
	pid_t pids[2 * BENCH_MAX_PROCS];
	struct bench_shared *sh;
	struct sfu_record rec;
	struct registry *r;
	int n = 0, status, failed = 0;

	if (readers < 1 || readers > BENCH_MAX_PROCS || writers > BENCH_MAX_PROCS || max_s < 1) {
		fprintf(stderr, "usage: %s [readers 1..64 [writers 0..64 [target_reads "
			"[max_seconds]]]]\n", argv[0]);
		return 2;
	}
	r = mmap(NULL, registry_size(BENCH_SFUS), PROT_READ | PROT_WRITE,
		 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (r == MAP_FAILED || sh == MAP_FAILED || registry_init(r, BENCH_SFUS) != 0) {
		perror("bench_seqlock: setup");
		return 1;
	}
	for (uint32_t k = 0; k < BENCH_SFUS; k++) {
		bench_record(&rec, k, k + 1);
		if (registry_upsert(r, &rec, false, NULL, NULL) != 0) {
			fprintf(stderr, "bench_seqlock: fill failed\n");
			return 1;
		}
	}
	atomic_store(&sh->counter, BENCH_SFUS + 1);
	bench_find(r);

	sh->target_per_reader = (target + readers - 1) / readers;
	sh->hard_deadline_ns = bench_now_ns() + (int64_t)max_s * 1000000000;
	for (uint32_t k = 0; k < readers + writers; k++) {
		pid_t pid = fork();

		if (pid < 0) {
			perror("fork");
			return 1;
		}
		if (pid == 0) {
			if (k < readers)
				bench_reader(r, sh, (int)k);
			else
				bench_writer(r, sh, (int)(k - readers), readers);
			_exit(0);
		}
		pids[n++] = pid;
	}
	for (int k = 0; k < n; k++) {
		if (waitpid(pids[k], &status, 0) != pids[k] || !WIFEXITED(status) ||
		    WEXITSTATUS(status) != 0)
			failed = 1;
	}
	for (uint32_t k = 0; k < readers; k++) {
		reads += sh->rd[k].reads;
		torn += sh->rd[k].torn;
		eagain += sh->rd[k].eagain;
		if (sh->rd[k].ns > ns_max)
			ns_max = sh->rd[k].ns;
	}
	for (uint32_t k = 0; k < writers; k++) {
		writes += sh->wr[k].writes;
		errors += sh->wr[k].errors;
	}
	printf("seqlock reads: %u reader(s), %u writer(s), %ld CPU(s): %" PRIu64 " reads in "
	       "%.2f s = %.1f M reads/s (%.1f M/s per reader)\n",
	       readers, writers, sysconf(_SC_NPROCESSORS_ONLN), reads, ns_max / 1e9,
	       reads / (ns_max / 1e3), reads / (ns_max / 1e3) / readers);
	printf("torn reads: %" PRIu64 "; gave up (EAGAIN): %" PRIu64 " (%.4f%%); writes: %" PRIu64
	       " (%.2f M/s), write errors: %" PRIu64 "\n",
	       torn, eagain, 100.0 * (double)eagain / (double)(reads ? reads : 1), writes,
	       writes / (ns_max / 1e3), errors);
	if (reads < target)
		printf("note: stopped at the %d s limit before %" PRIu64 " reads\n", max_s, target);
	return torn || failed || (writers && (writes == 0 || errors)) ? 1 : 0;
}
